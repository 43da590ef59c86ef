//! Where the live model comes from: the rules, targets, flags, environments,
//! keys and the memberships of targeted organizations in the database,
//! read whole for a full build or piece by piece for a patch.

use std::collections::HashMap;

use diesel::prelude::*;

use crate::db::schema::{
    api_keys, environments, flags, memberships, organizations, rules, targets, users,
};
use crate::db::DbConn;
use crate::environments::api_keys::ApiKey;
use crate::environments::Environment;
use crate::error::Result;
use crate::evaluation::{FlagRule, Mode, Rule, TargetKind};
use crate::flags::{Flag, FlagWithTags};
use crate::ids::{EnvironmentId, FlagId, OrgId, UserId};
use crate::validate::Slug;

/// How many ids one `IN (…)` list carries: far below either backend's
/// limit on parameters.
const CHUNK: usize = 1000;

/// Which rules to read.
#[derive(Debug, Clone, Copy)]
pub enum Scope<'a> {
    All,
    /// Every rule of these flags, in every environment.
    Flags(&'a [FlagId]),
    /// Every rule of one environment.
    Environment(&'a EnvironmentId),
}

/// Rules with their targets, and the external ids of the subjects they name.
#[derive(Debug, Default)]
pub struct Rules {
    pub rules: Vec<(EnvironmentId, FlagRule)>,
    /// (Flagpole id, external id) of every targeted subject that has one.
    pub external_ids: Vec<(String, String)>,
}

type RuleColumns = (FlagId, EnvironmentId, Mode, bool, Slug, bool);
type TargetColumns = (
    FlagId,
    EnvironmentId,
    TargetKind,
    String,
    Option<String>,
    Option<String>,
);

/// The rules in `scope`, with their targets.
pub fn rules(conn: &mut DbConn, scope: Scope<'_>) -> Result<Rules> {
    let mut rows: Vec<RuleColumns> = Vec::new();
    let mut target_rows: Vec<TargetColumns> = Vec::new();
    let rule_query = || {
        rules::table.inner_join(flags::table).select((
            rules::flag_id,
            rules::environment_id,
            rules::mode,
            rules::enabled,
            flags::slug,
            flags::archived,
        ))
    };
    let target_query = || {
        targets::table
            .left_join(users::table.on(users::id.eq(targets::target_id)))
            .left_join(organizations::table.on(organizations::id.eq(targets::target_id)))
            .select((
                targets::flag_id,
                targets::environment_id,
                targets::target_type,
                targets::target_id,
                users::external_id.nullable(),
                organizations::external_id.nullable(),
            ))
    };
    match scope {
        Scope::All => {
            rows = rule_query().load(conn)?;
            target_rows = target_query().load(conn)?;
        }
        Scope::Flags(ids) => {
            for chunk in ids.chunks(CHUNK) {
                rows.extend(
                    rule_query()
                        .filter(rules::flag_id.eq_any(chunk))
                        .load::<RuleColumns>(conn)?,
                );
                target_rows.extend(
                    target_query()
                        .filter(targets::flag_id.eq_any(chunk))
                        .load::<TargetColumns>(conn)?,
                );
            }
        }
        Scope::Environment(env) => {
            rows = rule_query()
                .filter(rules::environment_id.eq(env))
                .load(conn)?;
            target_rows = target_query()
                .filter(targets::environment_id.eq(env))
                .load(conn)?;
        }
    }
    let mut by_rule: HashMap<(FlagId, EnvironmentId), Rule> = HashMap::with_capacity(rows.len());
    let mut external_ids = Vec::new();
    for (flag_id, env_id, kind, id, user_external, org_external) in target_rows {
        let rule = by_rule.entry((flag_id, env_id)).or_default();
        let external = match kind {
            TargetKind::User => {
                let Some(user) = UserId::parse(&id) else {
                    continue;
                };
                rule.users.insert(user);
                user_external
            }
            TargetKind::Organization => {
                let Some(org) = OrgId::parse(&id) else {
                    continue;
                };
                rule.organizations.insert(org);
                org_external
            }
        };
        if let Some(external) = external {
            external_ids.push((id, external));
        }
    }
    let rules = rows
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
        .collect();
    Ok(Rules {
        rules,
        external_ids,
    })
}

/// Flags with their tags: all of them, or those of `only` that exist.
pub fn flags(conn: &mut DbConn, only: Option<&[FlagId]>) -> Result<Vec<FlagWithTags>> {
    let found: Vec<Flag> = match only {
        None => flags::table.select(Flag::as_select()).load(conn)?,
        Some(ids) => {
            let mut found = Vec::with_capacity(ids.len());
            for chunk in ids.chunks(CHUNK) {
                found.extend(
                    flags::table
                        .filter(flags::id.eq_any(chunk))
                        .select(Flag::as_select())
                        .load::<Flag>(conn)?,
                );
            }
            found
        }
    };
    crate::flags::attach_tags(conn, found)
}

/// Environments: all of them, or those of `only` that exist.
pub fn environments(conn: &mut DbConn, only: Option<&[EnvironmentId]>) -> Result<Vec<Environment>> {
    let mut query = environments::table.into_boxed();
    if let Some(ids) = only {
        query = query.filter(environments::id.eq_any(ids));
    }
    Ok(query.select(Environment::as_select()).load(conn)?)
}

/// The live (not revoked) API keys of every environment, or of `only`.
pub fn keys(conn: &mut DbConn, only: Option<&[EnvironmentId]>) -> Result<Vec<ApiKey>> {
    let mut query = api_keys::table
        .filter(api_keys::revoked_at.is_null())
        .into_boxed();
    if let Some(ids) = only {
        query = query.filter(api_keys::environment_id.eq_any(ids));
    }
    Ok(query.select(ApiKey::as_select()).load(conn)?)
}

/// A membership: the user and the organization.
pub type Member = (UserId, OrgId);

/// The members of organizations: of `only`, or of every organization that
/// some rule targets.
pub fn members(conn: &mut DbConn, only: Option<&[OrgId]>) -> Result<Vec<Member>> {
    let query = || memberships::table.select((memberships::user_id, memberships::organization_id));
    match only {
        None => {
            let targeted = targets::table
                .filter(targets::target_type.eq(TargetKind::Organization))
                .select(targets::target_id);
            Ok(query()
                .filter(memberships::organization_id.eq_any(targeted))
                .load(conn)?)
        }
        Some(orgs) => {
            let mut found = Vec::new();
            for chunk in orgs.chunks(CHUNK) {
                found.extend(
                    query()
                        .filter(memberships::organization_id.eq_any(chunk))
                        .load::<Member>(conn)?,
                );
            }
            Ok(found)
        }
    }
}

/// Every membership of these users.
pub fn memberships_of(conn: &mut DbConn, users: &[UserId]) -> Result<Vec<Member>> {
    let mut found = Vec::new();
    for chunk in users.chunks(CHUNK) {
        found.extend(
            memberships::table
                .filter(memberships::user_id.eq_any(chunk))
                .select((memberships::user_id, memberships::organization_id))
                .load::<Member>(conn)?,
        );
    }
    Ok(found)
}

/// A user's or an organization's external id: `None` when the subject no
/// longer exists, `Some(None)` when it has none.
pub fn external_id(conn: &mut DbConn, id: &str) -> Result<Option<Option<String>>> {
    Ok(match TargetKind::of_id(id) {
        Some(TargetKind::User) => users::table
            .find(id)
            .select(users::external_id)
            .first(conn)
            .optional()?,
        Some(TargetKind::Organization) => organizations::table
            .find(id)
            .select(organizations::external_id)
            .first(conn)
            .optional()?,
        None => None,
    })
}
