//! What the live model must learn of. A service that writes something an
//! answer depends on (a rule, its targets, a flag's slug or archived state,
//! an environment, a deleted user or organization that targets name, a
//! key) says so with [`changed`], in its own transaction; creating a user
//! or a membership changes no answer and says nothing. This is separate
//! from the audit trail, which records everything.

use diesel::prelude::*;

use crate::db::schema::revisions;
use crate::db::DbConn;
use crate::error::Result;
use crate::ids::{EnvironmentId, FlagId};

/// What was changed, as the model will need to know it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Changed<'a> {
    /// A rule: its mode, switch or targets.
    Rule(&'a FlagId, &'a EnvironmentId),
    /// A flag as a whole: created, archived, brought back or deleted.
    Flag(&'a FlagId),
    /// An environment: created or changed.
    Environment(&'a EnvironmentId),
    /// A user or an organization that targets may name was deleted, or its
    /// external id changed.
    Subject(&'a str),
    /// An environment's API keys or signing keys.
    Credentials(&'a EnvironmentId),
}

/// Records, in the caller's transaction, that something an answer depends
/// on changed: the revision goes up, and every instance's model follows.
pub fn changed(conn: &mut DbConn, _what: Changed<'_>) -> Result<()> {
    diesel::update(revisions::table.find(1))
        .set(revisions::revision.eq(revisions::revision + 1))
        .execute(conn)?;
    Ok(())
}

/// The revision of everything the model is built from.
pub fn revision(conn: &mut DbConn) -> Result<i64> {
    Ok(revisions::table
        .find(1)
        .select(revisions::revision)
        .first(conn)?)
}
