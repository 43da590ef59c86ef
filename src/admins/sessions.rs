//! Dashboard sessions, kept on the server. The browser's (signed, encrypted)
//! cookie holds a random token; the table holds its SHA-256 with the admin,
//! when it started and when it was last used. A session ends when its admin
//! signs out, after `idle` without a request, `absolute` after it started,
//! when the admin signs out everywhere or changes their password (the other
//! sessions end), or when an owner signs the admin out or deletes them.

use std::time::Duration;

use diesel::prelude::*;
use sha2::{Digest, Sha256};

use super::Admin;
use crate::db::schema::{admin_sessions, admins};
use crate::db::DbConn;
use crate::error::Result;
use crate::ids::{random_token, AdminId};
use crate::time::Timestamp;

/// How long a session may last.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Ended after this long without a request.
    pub idle: Duration,
    /// Ended this long after sign-in, whatever happens.
    pub absolute: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            idle: Duration::from_secs(12 * 60 * 60),
            absolute: Duration::from_secs(7 * 24 * 60 * 60),
        }
    }
}

/// A request is counted as activity at most this often, so a busy admin
/// does not write on every page.
const TOUCH_EVERY: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = admin_sessions)]
pub struct AdminSession {
    pub token_hash: String,
    pub admin_id: AdminId,
    pub created_at: Timestamp,
    pub last_seen_at: Timestamp,
    pub revoked_at: Option<Timestamp>,
    pub user_agent: String,
}

pub fn hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Starts a session for `admin`; returns the token for the cookie.
pub fn start(conn: &mut DbConn, admin: &AdminId, user_agent: &str) -> Result<String> {
    let token = random_token(32);
    let now = Timestamp::now();
    let agent: String = user_agent
        .chars()
        .filter(|c| !c.is_control())
        .take(200)
        .collect();
    diesel::insert_into(admin_sessions::table)
        .values(&AdminSession {
            token_hash: hash(&token),
            admin_id: admin.clone(),
            created_at: now,
            last_seen_at: now,
            revoked_at: None,
            user_agent: agent,
        })
        .execute(conn)?;
    Ok(token)
}

/// The admin whose live session `token` is, with the session; `None` when
/// it is unknown, ended or timed out.
pub fn check(
    conn: &mut DbConn,
    token: &str,
    timeouts: &Timeouts,
) -> Result<Option<(Admin, AdminSession)>> {
    let found: Option<(AdminSession, Admin)> = admin_sessions::table
        .inner_join(admins::table)
        .filter(admin_sessions::token_hash.eq(hash(token)))
        .select((AdminSession::as_select(), Admin::as_select()))
        .first(conn)
        .optional()?;
    let Some((session, admin)) = found else {
        return Ok(None);
    };
    let live = session.revoked_at.is_none()
        && session.last_seen_at.elapsed() < timeouts.idle
        && session.created_at.elapsed() < timeouts.absolute;
    if !live {
        return Ok(None);
    }
    if session.last_seen_at.elapsed() >= TOUCH_EVERY {
        diesel::update(admin_sessions::table.find(&session.token_hash))
            .set(admin_sessions::last_seen_at.eq(Timestamp::now()))
            .execute(conn)?;
    }
    Ok(Some((admin, session)))
}

/// Ends one session (signing out).
pub fn end(conn: &mut DbConn, token: &str) -> Result<()> {
    diesel::update(
        admin_sessions::table
            .find(hash(token))
            .filter(admin_sessions::revoked_at.is_null()),
    )
    .set(admin_sessions::revoked_at.eq(Timestamp::now()))
    .execute(conn)?;
    Ok(())
}

/// Ends every live session of `admin`, but the one whose token hash is
/// `keep`; returns how many ended.
pub fn end_all(conn: &mut DbConn, admin: &AdminId, keep: Option<&str>) -> Result<usize> {
    let mut query = diesel::update(admin_sessions::table)
        .filter(admin_sessions::admin_id.eq(admin))
        .filter(admin_sessions::revoked_at.is_null())
        .into_boxed();
    if let Some(keep) = keep {
        query = query.filter(admin_sessions::token_hash.ne(keep.to_string()));
    }
    Ok(query
        .set(admin_sessions::revoked_at.eq(Timestamp::now()))
        .execute(conn)?)
}

/// The live sessions of `admin`, newest first.
pub fn list(conn: &mut DbConn, admin: &AdminId, timeouts: &Timeouts) -> Result<Vec<AdminSession>> {
    let sessions: Vec<AdminSession> = admin_sessions::table
        .filter(admin_sessions::admin_id.eq(admin))
        .filter(admin_sessions::revoked_at.is_null())
        .order(admin_sessions::created_at.desc())
        .select(AdminSession::as_select())
        .load(conn)?;
    Ok(sessions
        .into_iter()
        .filter(|s| {
            s.last_seen_at.elapsed() < timeouts.idle && s.created_at.elapsed() < timeouts.absolute
        })
        .collect())
}

/// Forgets sessions that ended (or timed out) more than a day ago.
pub fn prune(conn: &mut DbConn, timeouts: &Timeouts) -> Result<usize> {
    let day = Duration::from_secs(24 * 60 * 60);
    let ended_before = Timestamp::now().minus(day);
    let idle_before = Timestamp::now().minus(timeouts.idle + day);
    let started_before = Timestamp::now().minus(timeouts.absolute + day);
    Ok(diesel::delete(
        admin_sessions::table.filter(
            admin_sessions::revoked_at
                .lt(ended_before)
                .or(admin_sessions::last_seen_at.lt(idle_before))
                .or(admin_sessions::created_at.lt(started_before)),
        ),
    )
    .execute(conn)?)
}
