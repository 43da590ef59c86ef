//! Secret API keys (`sk_…`): each belongs to one environment and decides the
//! environment of every call made with it.
//!
//! A key is 32 random bytes, so it cannot be guessed or brute-forced from its
//! hash: a fast SHA-256 is enough at rest, and checking a key costs
//! microseconds on every API call (argon2 would cost tens of milliseconds each).

use diesel::prelude::*;
use serde_json::json;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::audit::{self, Change};
use crate::db::schema::{api_keys, environments};
use crate::db::DbConn;
use crate::error::{AppError, FieldErrors};
use crate::ids::{new_id, now, random_token};
use crate::models::{ApiKey, Environment};
use crate::validate;

fn hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Creates a key and returns it with its secret, which is never stored.
pub fn create(
    conn: &mut DbConn,
    actor: &str,
    environment_id: &str,
    name: &str,
) -> Result<(ApiKey, String), AppError> {
    let name = validate::name(name, "name", 60)
        .map_err(|e| AppError::Invalid(FieldErrors::single("name", e)))?;
    let secret = format!("sk_{}", random_token(32));
    crate::db::write_transaction(conn, |conn| {
        let env: Environment = environments::table
            .find(environment_id)
            .select(Environment::as_select())
            .first(conn)?;
        let key = ApiKey {
            id: new_id("key"),
            environment_id: env.id.clone(),
            name,
            prefix: secret[..11].to_string(),
            secret_hash: hash(&secret),
            created_by: actor.to_string(),
            created_at: now(),
            last_used_at: None,
            revoked_at: None,
        };
        diesel::insert_into(api_keys::table)
            .values(&key)
            .execute(conn)?;
        audit::record(
            conn,
            actor,
            Change {
                action: "api_key.created",
                object_type: "api_key",
                object_id: &key.id,
                object_label: &key.name,
                flag_id: None,
                environment_id: Some(&env.id),
                before: None,
                after: Some(json!({"name": key.name, "prefix": key.prefix})),
            },
        )?;
        Ok((key, secret.clone()))
    })
}

pub fn list(conn: &mut DbConn, environment_id: &str) -> QueryResult<Vec<ApiKey>> {
    api_keys::table
        .filter(api_keys::environment_id.eq(environment_id))
        .order(api_keys::created_at.desc())
        .select(ApiKey::as_select())
        .load(conn)
}

/// Revokes a key; calls made with it fail from now on.
pub fn revoke(conn: &mut DbConn, actor: &str, id: &str) -> Result<ApiKey, AppError> {
    crate::db::write_transaction(conn, |conn| {
        let key: ApiKey = api_keys::table
            .find(id)
            .select(ApiKey::as_select())
            .first(conn)?;
        if key.revoked_at.is_none() {
            diesel::update(api_keys::table.find(id))
                .set(api_keys::revoked_at.eq(now()))
                .execute(conn)?;
            audit::record(
                conn,
                actor,
                Change {
                    action: "api_key.revoked",
                    object_type: "api_key",
                    object_id: &key.id,
                    object_label: &key.name,
                    flag_id: None,
                    environment_id: Some(&key.environment_id),
                    before: Some(json!({"revoked": false})),
                    after: Some(json!({"revoked": true})),
                },
            )?;
        }
        Ok(key)
    })
}

/// The live key behind `secret`, with its environment.
pub fn authenticate(conn: &mut DbConn, secret: &str) -> QueryResult<Option<(ApiKey, Environment)>> {
    if !secret.starts_with("sk_") || secret.len() > 200 {
        return Ok(None);
    }
    let digest = hash(secret);
    let found: Option<(ApiKey, Environment)> = api_keys::table
        .inner_join(environments::table)
        .filter(api_keys::secret_hash.eq(&digest))
        .filter(api_keys::revoked_at.is_null())
        .select((ApiKey::as_select(), Environment::as_select()))
        .first(conn)
        .optional()?;
    let Some((key, env)) = found else {
        return Ok(None);
    };
    // The lookup used an index; this comparison keeps the final check
    // independent of where the two hashes first differ.
    if !bool::from(key.secret_hash.as_bytes().ct_eq(digest.as_bytes())) {
        return Ok(None);
    }
    // Record use at most once a minute per key, not on every call.
    let stale = key
        .last_used_at
        .as_deref()
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .is_none_or(|t| chrono::Utc::now().signed_duration_since(t).num_seconds() > 60);
    if stale {
        diesel::update(api_keys::table.find(&key.id))
            .set(api_keys::last_used_at.eq(now()))
            .execute(conn)?;
    }
    Ok(Some((key, env)))
}
