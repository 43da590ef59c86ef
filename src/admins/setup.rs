//! The one-time links that create the first owner while no admin exists.
//! A link's token is random and kept only as its SHA-256, in the database
//! (so `flagpole admin setup-link` can issue one to a running server, and
//! every instance agrees); it works once, and for an hour.

use std::time::Duration;

use diesel::prelude::*;
use sha2::{Digest, Sha256};

use crate::db::schema::setup_tokens;
use crate::db::DbConn;
use crate::error::Result;
use crate::time::Timestamp;

/// How long a setup link works.
pub const LIFETIME: Duration = Duration::from_secs(60 * 60);

fn hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Makes a new setup token and returns it; earlier unused ones stop working.
pub fn issue(conn: &mut DbConn) -> Result<String> {
    let token = crate::ids::random_token(24);
    let now = Timestamp::now();
    crate::db::write_transaction(conn, |conn| -> Result<()> {
        diesel::update(setup_tokens::table.filter(setup_tokens::used_at.is_null()))
            .set(setup_tokens::expires_at.eq(now))
            .execute(conn)?;
        diesel::insert_into(setup_tokens::table)
            .values((
                setup_tokens::token_hash.eq(hash(&token)),
                setup_tokens::created_at.eq(now),
                setup_tokens::expires_at.eq(now.plus(LIFETIME)),
            ))
            .execute(conn)?;
        Ok(())
    })?;
    Ok(token)
}

/// Whether `token` is a setup token that is unused and has not expired.
pub fn is_valid(conn: &mut DbConn, token: &str) -> Result<bool> {
    if token.is_empty() || token.len() > 100 {
        return Ok(false);
    }
    Ok(diesel::select(diesel::dsl::exists(
        setup_tokens::table
            .filter(setup_tokens::token_hash.eq(hash(token)))
            .filter(setup_tokens::used_at.is_null())
            .filter(setup_tokens::expires_at.gt(Timestamp::now())),
    ))
    .get_result(conn)?)
}

/// Spends `token` in the caller's transaction; false when it is not valid.
pub fn spend(conn: &mut DbConn, token: &str) -> Result<bool> {
    if token.is_empty() || token.len() > 100 {
        return Ok(false);
    }
    let spent = diesel::update(
        setup_tokens::table
            .filter(setup_tokens::token_hash.eq(hash(token)))
            .filter(setup_tokens::used_at.is_null())
            .filter(setup_tokens::expires_at.gt(Timestamp::now())),
    )
    .set(setup_tokens::used_at.eq(Timestamp::now()))
    .execute(conn)?;
    Ok(spent == 1)
}
