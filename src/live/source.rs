//! Where the live model comes from: the rules, targets and keys in the
//! database.

use std::collections::HashMap;

use diesel::prelude::*;

use crate::db::schema::{api_keys, environments, flags, rules, targets};
use crate::db::DbConn;
use crate::environments::api_keys::ApiKey;
use crate::environments::Environment;
use crate::error::Result;
use crate::evaluation::{FlagRule, Mode, Rule, TargetKind};
use crate::ids::{EnvironmentId, FlagId, OrgId, UserId};
use crate::validate::Slug;

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

/// Every live (not revoked) API key with its environment.
pub fn load_keys(conn: &mut DbConn) -> Result<Vec<(ApiKey, Environment)>> {
    Ok(api_keys::table
        .inner_join(environments::table)
        .filter(api_keys::revoked_at.is_null())
        .select((ApiKey::as_select(), Environment::as_select()))
        .load(conn)?)
}
