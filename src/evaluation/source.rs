//! Where the model comes from: the rules and targets in the database, and
//! the revision that says when they changed.
//!
//! Invalidation is separate from the audit trail: a service that writes
//! something an answer depends on (a rule, its targets, a flag's slug or
//! archived state, an environment, a deleted user or organization, a key)
//! says so with [`changed`], in its own transaction. Creating a user or a
//! membership changes no answer and says nothing.

use std::collections::HashMap;

use diesel::prelude::*;

use super::{FlagRule, Mode, Rule, TargetKind};
use crate::db::schema::{flags, revisions, rules, targets};
use crate::db::DbConn;
use crate::error::Result;
use crate::ids::{EnvironmentId, FlagId, OrgId, UserId};
use crate::validate::Slug;

/// What was changed, as the model will need to know it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Changed<'a> {
    /// A rule: its mode, switch or targets.
    Rule(&'a FlagId, &'a EnvironmentId),
    /// A flag as a whole: created, archived, brought back or deleted.
    Flag(&'a FlagId),
    /// An environment: created or changed.
    Environment(&'a EnvironmentId),
    /// A user or an organization that targets may name was deleted.
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

/// Every flag's rule in every environment, with the targets of the rules.
pub fn load_all(conn: &mut DbConn) -> Result<Vec<(EnvironmentId, FlagRule)>> {
    let rows: Vec<(FlagId, EnvironmentId, Mode, bool, Slug, bool)> = rules::table
        .inner_join(flags::table)
        .select((
            rules::flag_id,
            rules::environment_id,
            rules::mode,
            rules::enabled,
            flags::slug,
            flags::archived,
        ))
        .load(conn)?;
    let mut by_rule: HashMap<(FlagId, EnvironmentId), Rule> = HashMap::with_capacity(rows.len());
    for t in targets::table
        .select((
            targets::flag_id,
            targets::environment_id,
            targets::target_type,
            targets::target_id,
        ))
        .load::<(FlagId, EnvironmentId, TargetKind, String)>(conn)?
    {
        let (flag_id, env_id, kind, id) = t;
        let rule = by_rule.entry((flag_id, env_id)).or_default();
        match kind {
            TargetKind::User => {
                if let Some(id) = UserId::parse(&id) {
                    rule.users.insert(id);
                }
            }
            TargetKind::Organization => {
                if let Some(id) = OrgId::parse(&id) {
                    rule.organizations.insert(id);
                }
            }
        }
    }
    Ok(rows
        .into_iter()
        .map(|(flag_id, env_id, mode, enabled, slug, archived)| {
            let mut rule = by_rule
                .remove(&(flag_id.clone(), env_id.clone()))
                .unwrap_or_default();
            rule.mode = mode;
            rule.enabled = enabled;
            (
                env_id,
                FlagRule {
                    id: flag_id,
                    slug,
                    archived,
                    rule,
                },
            )
        })
        .collect())
}
