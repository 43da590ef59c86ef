//! A flag's rule in one environment: its mode, its switch and its targets,
//! changed only through these services, each one transaction with an
//! optimistic version check, an audit row, a webhook event and a change the
//! model follows.

use std::collections::{BTreeSet, HashMap};

use diesel::prelude::*;
use serde_json::{json, Value};

use super::events::announce;
use super::targets::{describe_targets, TargetView};
use super::Flag;
use crate::audit::{Actor, Change};
use crate::changes::{changed, Changed};
use crate::db::schema::{rules, targets};
use crate::db::DbConn;
use crate::directory::{self, Subject};
use crate::environments::Environment;
use crate::error::{Entity, Error, FieldErrors, OrNotFound, Result};
use crate::evaluation::{Mode, TargetKind};
use crate::ids::{EnvironmentId, FlagId};
use crate::time::Timestamp;
use crate::webhooks::outbox::Scope;

/// The most targets one change may name.
pub const MAX_TARGETS_PER_CHANGE: usize = 10_000;

#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable, Insertable)]
#[diesel(table_name = rules)]
pub struct RuleRow {
    pub flag_id: FlagId,
    pub environment_id: EnvironmentId,
    pub mode: Mode,
    pub enabled: bool,
    pub version: i32,
    pub updated_by: Option<String>,
    pub updated_at: Timestamp,
}

impl RuleRow {
    /// The rule a new flag or a new environment starts with: None, off.
    pub fn new(flag_id: FlagId, environment_id: EnvironmentId, at: Timestamp) -> Self {
        RuleRow {
            flag_id,
            environment_id,
            mode: Mode::None,
            enabled: false,
            version: 1,
            updated_by: None,
            updated_at: at,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Queryable, Selectable, Insertable)]
#[diesel(table_name = targets)]
struct TargetRow<'a> {
    flag_id: &'a FlagId,
    environment_id: &'a EnvironmentId,
    target_type: TargetKind,
    target_id: &'a str,
    created_at: Timestamp,
}

pub fn rule(conn: &mut DbConn, flag_id: &FlagId, env_id: &EnvironmentId) -> Result<RuleRow> {
    rules::table
        .find((flag_id, env_id))
        .select(RuleRow::as_select())
        .first(conn)
        .or_not_found(Entity::Rule)
}

/// The rules of `flag_ids` in one environment, by flag id.
pub fn rules_in(
    conn: &mut DbConn,
    env_id: &EnvironmentId,
    flag_ids: &[&FlagId],
) -> Result<HashMap<FlagId, RuleRow>> {
    Ok(rules::table
        .filter(rules::environment_id.eq(env_id))
        .filter(rules::flag_id.eq_any(flag_ids))
        .select(RuleRow::as_select())
        .load(conn)?
        .into_iter()
        .map(|r| (r.flag_id.clone(), r))
        .collect())
}

/// A rule with every target, organizations first then users, each in the
/// order they were added: what the API answers.
pub struct RuleDetails {
    pub rule: RuleRow,
    pub targets: Vec<TargetView>,
}

pub fn details(conn: &mut DbConn, flag_id: &FlagId, env_id: &EnvironmentId) -> Result<RuleDetails> {
    let rule = rule(conn, flag_id, env_id)?;
    let ids = target_ids(conn, flag_id, env_id)?;
    Ok(RuleDetails {
        rule,
        targets: describe_targets(conn, &ids)?,
    })
}

/// Every target id of a rule, organizations first, in the order added.
pub fn target_ids(
    conn: &mut DbConn,
    flag_id: &FlagId,
    env_id: &EnvironmentId,
) -> Result<Vec<String>> {
    Ok(targets::table
        .filter(targets::flag_id.eq(flag_id))
        .filter(targets::environment_id.eq(env_id))
        .order((
            targets::target_type.asc(),
            targets::created_at.asc(),
            targets::target_id.asc(),
        ))
        .select(targets::target_id)
        .load(conn)?)
}

fn target_count(conn: &mut DbConn, flag_id: &FlagId, env_id: &EnvironmentId) -> Result<i64> {
    Ok(targets::table
        .filter(targets::flag_id.eq(flag_id))
        .filter(targets::environment_id.eq(env_id))
        .count()
        .get_result(conn)?)
}

fn audit_state(rule: &RuleRow, target_count: i64) -> Value {
    json!({"mode": rule.mode, "enabled": rule.enabled, "targets": target_count})
}

/// Bumps the rule's version if it is still `expected` (the current one when
/// `None`); a concurrent change makes this fail with `Stale` and the
/// transaction roll back.
fn claim_version(
    conn: &mut DbConn,
    rule: &RuleRow,
    expected: Option<i32>,
    actor: &Actor,
) -> Result<()> {
    let expected = expected.unwrap_or(rule.version);
    // Any other version is stale already; checking here also keeps a forged
    // one (such as i32::MAX) from overflowing below.
    if expected != rule.version {
        return Err(Error::Stale(Entity::Rule));
    }
    let updated = diesel::update(
        rules::table
            .find((&rule.flag_id, &rule.environment_id))
            .filter(rules::version.eq(expected)),
    )
    .set((
        rules::version.eq(expected.saturating_add(1)),
        rules::updated_by.eq(actor.label()),
        rules::updated_at.eq(Timestamp::now()),
    ))
    .execute(conn)?;
    if updated == 0 {
        return Err(Error::Stale(Entity::Rule));
    }
    Ok(())
}

/// Turns a flag on or off in one environment.
pub fn set_enabled(
    conn: &mut DbConn,
    actor: &Actor,
    flag: &Flag,
    env: &Environment,
    enabled: bool,
    expected_version: Option<i32>,
) -> Result<RuleRow> {
    crate::db::write_transaction(conn, |conn| {
        let before = rule(conn, &flag.id, &env.id)?;
        claim_version(conn, &before, expected_version, actor)?;
        diesel::update(rules::table.find((&flag.id, &env.id)))
            .set(rules::enabled.eq(enabled))
            .execute(conn)?;
        let after = rule(conn, &flag.id, &env.id)?;
        if before.enabled != enabled {
            changed(conn, Changed::Rule(&flag.id, &env.id))?;
            let count = target_count(conn, &flag.id, &env.id)?;
            let action = if enabled {
                "rule.enabled"
            } else {
                "rule.disabled"
            };
            Change::new(action, "flag", &flag.id, flag.slug.as_str())
                .flag(&flag.id)
                .environment(&env.id)
                .before(audit_state(&before, count))
                .after(audit_state(&after, count))
                .record(conn, actor)?;
            announce(
                conn,
                "flag.updated",
                flag,
                Scope::In(&env.id),
                actor,
                json!({"previous_attributes": {"data": {"enabled": before.enabled}}}),
            )?;
        }
        Ok(after)
    })
}

/// A change of a rule: any of its mode, its switch and its targets.
#[derive(Debug, Clone, Default)]
pub struct RuleChange {
    pub mode: Option<Mode>,
    pub enabled: Option<bool>,
    pub targets: TargetChange,
    /// The version the change was based on; `None` applies it to whatever
    /// the rule is now.
    pub expected_version: Option<i32>,
}

/// What happens to a rule's targets.
#[derive(Debug, Clone, Default)]
pub enum TargetChange {
    #[default]
    Keep,
    /// Add these and remove those (Flagpole ids), as the editor saves.
    Edit {
        add: Vec<String>,
        remove: Vec<String>,
    },
    /// Exactly these (as the API names them: ids or external ids): the
    /// others are removed.
    Replace(Vec<TargetRef>),
}

/// A target as the API names it: a Flagpole id, or an external id with its kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetRef {
    pub kind: Option<TargetKind>,
    pub id: String,
    /// The request field it came from, e.g. `targets[2]`, for errors.
    pub field: String,
}

/// Saves a rule change, refusing if the rule changed since
/// `expected_version` was read. Targets are kept whatever the mode.
pub fn save_rule(
    conn: &mut DbConn,
    actor: &Actor,
    flag: &Flag,
    env: &Environment,
    change: &RuleChange,
) -> Result<RuleRow> {
    crate::db::write_transaction(conn, |conn| {
        let before = rule(conn, &flag.id, &env.id)?;
        let before_count = target_count(conn, &flag.id, &env.id)?;
        claim_version(conn, &before, change.expected_version, actor)?;
        let existing = target_ids(conn, &flag.id, &env.id)?;
        let (add, remove) = match &change.targets {
            TargetChange::Keep => (Vec::new(), Vec::new()),
            TargetChange::Edit { add, remove } => {
                let add = add
                    .iter()
                    .filter(|id| !existing.contains(id) && !remove.contains(id))
                    .cloned()
                    .collect();
                let remove = remove
                    .iter()
                    .filter(|id| existing.contains(id))
                    .cloned()
                    .collect();
                (add, remove)
            }
            TargetChange::Replace(wanted) => {
                let mut ids: Vec<String> = Vec::with_capacity(wanted.len());
                for target in wanted {
                    let id = resolve_target(conn, target)?;
                    // Naming a target twice is naming it once.
                    if !ids.contains(&id) {
                        ids.push(id);
                    }
                }
                let add = ids
                    .iter()
                    .filter(|id| !existing.contains(id))
                    .cloned()
                    .collect();
                let remove = existing
                    .iter()
                    .filter(|id| !ids.contains(id))
                    .cloned()
                    .collect();
                (add, remove)
            }
        };
        if add.len() > MAX_TARGETS_PER_CHANGE {
            return Err(Error::invalid(
                "targets",
                format!("A change adds at most {MAX_TARGETS_PER_CHANGE} targets."),
            ));
        }
        let added = describe_targets(conn, &add)?;
        if let Some(unknown) = add.iter().find(|id| !added.iter().any(|v| &v.id == *id)) {
            return Err(Error::Invalid(FieldErrors::single(
                "targets",
                format!("{unknown} is neither a user nor an organization that exists."),
            )));
        }
        let at = Timestamp::now();
        let rows: Vec<TargetRow> = added
            .iter()
            .map(|v| TargetRow {
                flag_id: &flag.id,
                environment_id: &env.id,
                target_type: v.kind,
                target_id: &v.id,
                created_at: at,
            })
            .collect();
        for chunk in rows.chunks(500) {
            crate::with_backend!(conn, |c| diesel::insert_into(targets::table)
                .values(chunk)
                .execute(c))?;
        }
        let removed = describe_targets(conn, &remove)?;
        for chunk in remove.chunks(500) {
            diesel::delete(
                targets::table
                    .filter(targets::flag_id.eq(&flag.id))
                    .filter(targets::environment_id.eq(&env.id))
                    .filter(targets::target_id.eq_any(chunk)),
            )
            .execute(conn)?;
        }
        diesel::update(rules::table.find((&flag.id, &env.id)))
            .set((
                rules::mode.eq(change.mode.unwrap_or(before.mode)),
                rules::enabled.eq(change.enabled.unwrap_or(before.enabled)),
            ))
            .execute(conn)?;
        let after = rule(conn, &flag.id, &env.id)?;
        changed(conn, Changed::Rule(&flag.id, &env.id))?;
        let after_count = target_count(conn, &flag.id, &env.id)?;
        let mut after_state = audit_state(&after, after_count);
        let named = |views: &[TargetView]| {
            views
                .iter()
                .map(|v| format!("{} ({})", v.label, v.id))
                .collect::<Vec<_>>()
                .join(", ")
        };
        if !added.is_empty() {
            after_state["added"] = json!(named(&added));
        }
        if !removed.is_empty() {
            after_state["removed"] = json!(named(&removed));
        }
        Change::new("rule.updated", "flag", &flag.id, flag.slug.as_str())
            .flag(&flag.id)
            .environment(&env.id)
            .before(audit_state(&before, before_count))
            .after(after_state)
            .record(conn, actor)?;
        let targets_changed = !added.is_empty() || !removed.is_empty();
        let previous_targets = targets_changed.then_some(existing.as_slice());
        let context =
            rule_event_context(conn, &flag.id, &env.id, &before, &after, previous_targets)?;
        announce(
            conn,
            "flag.rule_updated",
            flag,
            Scope::In(&env.id),
            actor,
            context,
        )?;
        if before.enabled != after.enabled {
            announce(
                conn,
                "flag.updated",
                flag,
                Scope::In(&env.id),
                actor,
                json!({"previous_attributes": {"data": {"enabled": before.enabled}}}),
            )?;
        }
        Ok(after)
    })
}

/// WorkOS's `configured_targets` of the targets `ids`: organizations with
/// their names, users with their emails.
fn configured_targets(conn: &mut DbConn, ids: &[String]) -> Result<Value> {
    let views = describe_targets(conn, ids)?;
    let of_kind = |kind: TargetKind, key: &str| -> Vec<Value> {
        views
            .iter()
            .filter(|v| v.kind == kind)
            .map(|v| {
                let mut entry = json!({"id": v.id});
                entry[key] = json!(v.name());
                entry
            })
            .collect()
    };
    Ok(json!({
        "organizations": of_kind(TargetKind::Organization, "name"),
        "users": of_kind(TargetKind::User, "email"),
    }))
}

/// What WorkOS's `flag.rule_updated` tells besides the flag: who the rule
/// gives it to now, and what changed: the previous mode, switch and (when
/// they changed, `previous_targets`) targets.
fn rule_event_context(
    conn: &mut DbConn,
    flag_id: &FlagId,
    env_id: &EnvironmentId,
    before: &RuleRow,
    after: &RuleRow,
    previous_targets: Option<&[String]>,
) -> Result<Value> {
    let ids = target_ids(conn, flag_id, env_id)?;
    let mut previous = json!({});
    if before.mode != after.mode {
        previous["context"]["access_type"] = json!(before.mode);
    }
    if let Some(previous_targets) = previous_targets {
        previous["context"]["configured_targets"] = configured_targets(conn, previous_targets)?;
    }
    if before.enabled != after.enabled {
        previous["data"] = json!({"enabled": before.enabled});
    }
    Ok(json!({
        "access_type": after.mode,
        "configured_targets": configured_targets(conn, &ids)?,
        "previous_attributes": previous,
    }))
}

/// The Flagpole id of a target named by id or by external id.
pub fn resolve_target(conn: &mut DbConn, target: &TargetRef) -> Result<String> {
    let id = target.id.trim();
    if id.is_empty() {
        return Err(Error::invalid(&target.field, "Each target needs an id."));
    }
    let kind = match target.kind.or_else(|| TargetKind::of_id(id)) {
        Some(kind) => kind,
        None => {
            return Err(Error::invalid(
                &target.field,
                "Say whether the target is a \"user\" or an \"organization\" when giving an external id.",
            ))
        }
    };
    match directory::resolve_subject(conn, kind, id)? {
        Some(Subject::User(user)) => Ok(user.id.into_string()),
        Some(Subject::Organization(org)) => Ok(org.id.into_string()),
        None => Err(Error::NotFound(match kind {
            TargetKind::User => Entity::User,
            TargetKind::Organization => Entity::Organization,
        })),
    }
}

/// Adds one target to a rule. With `promote_none`, a rule of mode None
/// becomes Some, so the target gets the flag (WorkOS's behaviour); without
/// it the mode stays. Adding a current target changes nothing.
pub fn add_target(
    conn: &mut DbConn,
    actor: &Actor,
    flag: &Flag,
    env: &Environment,
    target: &TargetRef,
    promote_none: bool,
    expected_version: Option<i32>,
) -> Result<RuleRow> {
    crate::db::write_transaction(conn, |conn| {
        let id = resolve_target(conn, target)?;
        let current = rule(conn, &flag.id, &env.id)?;
        let is_target = target_ids(conn, &flag.id, &env.id)?.contains(&id);
        let mode = match current.mode {
            Mode::None if promote_none => Mode::Some,
            mode => mode,
        };
        if is_target && mode == current.mode && expected_version.is_none() {
            return Ok(current);
        }
        save_rule(
            conn,
            actor,
            flag,
            env,
            &RuleChange {
                mode: Some(mode),
                targets: TargetChange::Edit {
                    add: vec![id],
                    remove: Vec::new(),
                },
                expected_version,
                ..Default::default()
            },
        )
    })
}

/// Removes one target, named by Flagpole id or external id. A key that names
/// no current target is `NotFound(Target)`, or, with `missing_ok`, no change.
pub fn remove_target(
    conn: &mut DbConn,
    actor: &Actor,
    flag: &Flag,
    env: &Environment,
    key: &str,
    missing_ok: bool,
    expected_version: Option<i32>,
) -> Result<RuleRow> {
    crate::db::write_transaction(conn, |conn| {
        let existing: BTreeSet<String> = target_ids(conn, &flag.id, &env.id)?.into_iter().collect();
        let id = if existing.contains(key) {
            Some(key.to_string())
        } else {
            [TargetKind::User, TargetKind::Organization]
                .into_iter()
                .filter_map(|kind| directory::resolve_subject(conn, kind, key).transpose())
                .collect::<Result<Vec<_>>>()?
                .into_iter()
                .map(|s| s.id().to_string())
                .find(|id| existing.contains(id))
        };
        let Some(id) = id else {
            return if missing_ok {
                rule(conn, &flag.id, &env.id)
            } else {
                Err(Error::NotFound(Entity::Target))
            };
        };
        save_rule(
            conn,
            actor,
            flag,
            env,
            &RuleChange {
                targets: TargetChange::Edit {
                    add: Vec::new(),
                    remove: vec![id],
                },
                expected_version,
                ..Default::default()
            },
        )
    })
}

/// A flag's rule in one environment, as an environment's card shows it.
pub struct RuleSummary {
    pub environment: Environment,
    pub rule: RuleRow,
    pub users: i64,
    pub organizations: i64,
    /// The first few targets, organizations first.
    pub preview: Vec<TargetView>,
}

/// The flag's rule in every environment, in switcher order.
pub fn summaries(conn: &mut DbConn, flag_id: &FlagId) -> Result<Vec<RuleSummary>> {
    let environments = crate::environments::list(conn)?;
    let rules: HashMap<EnvironmentId, RuleRow> = rules::table
        .filter(rules::flag_id.eq(flag_id))
        .select(RuleRow::as_select())
        .load(conn)?
        .into_iter()
        .map(|r| (r.environment_id.clone(), r))
        .collect();
    let counts: Vec<(EnvironmentId, TargetKind, i64)> = targets::table
        .filter(targets::flag_id.eq(flag_id))
        .group_by((targets::environment_id, targets::target_type))
        .select((
            targets::environment_id,
            targets::target_type,
            diesel::dsl::count_star(),
        ))
        .load(conn)?;
    let mut out = Vec::with_capacity(environments.len());
    for environment in environments {
        let Some(rule) = rules.get(&environment.id).cloned() else {
            continue;
        };
        let count = |kind: TargetKind| {
            counts
                .iter()
                .find(|(env, k, _)| *env == environment.id && *k == kind)
                .map_or(0, |(_, _, n)| *n)
        };
        let (preview, _) = super::targets::page(conn, flag_id, &environment.id, 1, 3)?;
        out.push(RuleSummary {
            users: count(TargetKind::User),
            organizations: count(TargetKind::Organization),
            preview,
            rule,
            environment,
        });
    }
    Ok(out)
}
