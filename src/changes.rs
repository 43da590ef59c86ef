//! The change log: what the live model must learn of. A service that writes
//! something an answer depends on (a rule, its targets, a flag, an
//! environment, a deleted or renamed target, keys, a membership of a
//! targeted organization) says so with [`changed`], in its own transaction;
//! creating a user or an untargeted membership changes no answer and says
//! nothing. This is separate from the audit trail, which records everything.
//!
//! Each change takes the next revision under the row lock of `revisions`,
//! so changes commit in revision order: a reader that sees revision `n`
//! sees every change up to `n`. On PostgreSQL the commit also notifies
//! every instance listening on [`CHANNEL`].

use diesel::prelude::*;

use crate::db::schema::{changes, revisions};
use crate::db::DbConn;
use crate::error::Result;
use crate::ids::{EnvironmentId, FlagId, UserId};
use crate::time::Timestamp;

/// The PostgreSQL channel that carries "the change log grew".
pub const CHANNEL: &str = "flagpole_changes";

/// What was changed, as the model will need to know it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Changed<'a> {
    /// A rule: its mode, switch or targets.
    Rule(&'a FlagId, &'a EnvironmentId),
    /// A flag as a whole: created, renamed, tagged, archived, brought back
    /// or deleted.
    Flag(&'a FlagId),
    /// An environment: created or changed.
    Environment(&'a EnvironmentId),
    /// A user or an organization that targets may name was deleted, or its
    /// external id changed.
    Subject(&'a str),
    /// An environment's API keys or signing keys.
    Credentials(&'a EnvironmentId),
    /// A user joined or left an organization that rules target.
    Membership(&'a UserId),
    /// Anything at all (a bulk load): every instance builds its model afresh.
    Everything,
}

impl Changed<'_> {
    fn row(&self, revision: i64) -> ChangeRow {
        let (kind, flag, env, subject) = match *self {
            Changed::Rule(f, e) => (Kind::Rule, Some(f), Some(e), None),
            Changed::Flag(f) => (Kind::Flag, Some(f), None, None),
            Changed::Environment(e) => (Kind::Environment, None, Some(e), None),
            Changed::Subject(s) => (Kind::Subject, None, None, Some(s.to_string())),
            Changed::Credentials(e) => (Kind::Credentials, None, Some(e), None),
            Changed::Membership(u) => (Kind::Membership, None, None, Some(u.to_string())),
            Changed::Everything => (Kind::Everything, None, None, None),
        };
        ChangeRow {
            revision,
            kind,
            flag_id: flag.cloned(),
            environment_id: env.cloned(),
            subject_id: subject,
            created_at: Timestamp::now(),
        }
    }
}

crate::text_enum! {
    /// The kind of a logged change.
    pub enum Kind {
        Rule = "rule",
        Flag = "flag",
        Environment = "environment",
        Subject = "subject",
        Credentials = "credentials",
        Membership = "membership",
        Everything = "everything",
    }
}

/// One row of the change log.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable, Insertable)]
#[diesel(table_name = changes)]
pub struct ChangeRow {
    pub revision: i64,
    pub kind: Kind,
    pub flag_id: Option<FlagId>,
    pub environment_id: Option<EnvironmentId>,
    pub subject_id: Option<String>,
    pub created_at: Timestamp,
}

thread_local! {
    /// Whether this thread recorded a change since [`take_recorded`].
    static RECORDED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Whether the work run on this thread since the last call recorded a
/// change (whose revision the model must then reach); resets the mark.
pub fn take_recorded() -> bool {
    RECORDED.with(|r| r.replace(false))
}

/// Records, in the caller's transaction, that something an answer depends
/// on changed; returns the revision it took.
pub fn changed(conn: &mut DbConn, what: Changed<'_>) -> Result<i64> {
    RECORDED.with(|r| r.set(true));
    diesel::update(revisions::table.find(1))
        .set(revisions::revision.eq(revisions::revision + 1))
        .execute(conn)?;
    let revision = revision(conn)?;
    diesel::insert_into(changes::table)
        .values(what.row(revision))
        .execute(conn)?;
    if let DbConn::Pg(pg) = conn {
        // Delivered when the transaction commits; repeats within one
        // transaction are folded into one.
        diesel::sql_query(format!("NOTIFY {CHANNEL}")).execute(pg)?;
    }
    Ok(revision)
}

/// Takes, until the caller's transaction ends, the lock that every change
/// takes: a read after it sees every change committed before, and no change
/// commits until the transaction ends.
pub fn wait_for_changes(conn: &mut DbConn) -> Result<()> {
    diesel::update(revisions::table.find(1))
        .set(revisions::revision.eq(revisions::revision))
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

/// The logged changes after revision `after`, up to `upto`, in order.
pub fn since(conn: &mut DbConn, after: i64, upto: i64) -> Result<Vec<ChangeRow>> {
    Ok(changes::table
        .filter(changes::revision.gt(after))
        .filter(changes::revision.le(upto))
        .order(changes::revision.asc())
        .select(ChangeRow::as_select())
        .load(conn)?)
}

/// Forgets the changes logged before `before`: an instance further behind
/// than that builds its model afresh.
pub fn prune(conn: &mut DbConn, before: Timestamp) -> Result<usize> {
    Ok(diesel::delete(changes::table.filter(changes::created_at.lt(before))).execute(conn)?)
}
