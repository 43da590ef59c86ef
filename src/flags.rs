//! Feature flags, their rule in each environment, and the rules' targets.

use std::collections::HashMap;

use diesel::prelude::*;
use serde_json::json;

use crate::audit::{self, Change};
use crate::db::schema::{environments, flag_tags, flags, organizations, rules, targets, users};
use crate::db::{contains_pattern, is_unique_violation, lower, Db, DbConn};
use crate::error::{AppError, FieldErrors};
use crate::ids::{new_id, now};
use crate::models::{Environment, Flag, FlagTag, Organization, Rule, Target, User};
use crate::validate;
use crate::webhooks::{self, Scope};

/// Who gets a flag in one environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    None,
    Some,
    All,
}

impl Mode {
    pub fn parse(s: &str) -> Option<Mode> {
        match s {
            "none" => Some(Mode::None),
            "some" => Some(Mode::Some),
            "all" => Some(Mode::All),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::None => "none",
            Mode::Some => "some",
            Mode::All => "all",
        }
    }
    pub fn label(self) -> &'static str {
        match self {
            Mode::None => "None",
            Mode::Some => "Some",
            Mode::All => "All",
        }
    }
}

/// A mode read back from the database, where the CHECK constraint keeps it valid.
pub fn mode_of(rule: &Rule) -> Mode {
    Mode::parse(&rule.mode).unwrap_or(Mode::None)
}

pub struct FlagInput {
    pub name: String,
    pub slug: String,
    pub description: String,
    pub tags: String,
}

struct ValidFlag {
    name: String,
    slug: String,
    description: String,
    tags: Vec<String>,
}

fn validate_input(input: &FlagInput, check_slug: bool) -> Result<ValidFlag, AppError> {
    let mut errors = FieldErrors::default();
    let mut take = |field: &str, result: Result<String, String>| {
        result.unwrap_or_else(|e| {
            errors.add(field, e);
            String::new()
        })
    };
    let name = take("name", validate::name(&input.name, "name", 100));
    let slug = if check_slug {
        take("slug", validate::slug(&input.slug))
    } else {
        input.slug.clone()
    };
    let description = take(
        "description",
        validate::text(&input.description, "description", 1000),
    );
    let tags = match validate::tags(&input.tags) {
        Ok(tags) => tags,
        Err(e) => {
            errors.add("tags", e);
            Vec::new()
        }
    };
    errors.into_result()?;
    Ok(ValidFlag {
        name,
        slug,
        description,
        tags,
    })
}

fn flag_state(flag: &Flag, tags: &[String]) -> serde_json::Value {
    json!({
        "name": flag.name,
        "description": flag.description,
        "tags": tags.join(", "),
        "archived": flag.archived,
    })
}

/// Creates a flag with a rule (None, disabled) in every environment, in one transaction.
pub fn create(conn: &mut DbConn, actor: &str, input: &FlagInput) -> Result<Flag, AppError> {
    let valid = validate_input(input, true)?;
    crate::db::write_transaction(conn, |conn| {
        crate::db::lock_flags_and_environments(conn)?;
        let at = now();
        let flag = Flag {
            id: new_id("flag"),
            slug: valid.slug.clone(),
            name: valid.name.clone(),
            description: valid.description.clone(),
            archived: false,
            created_at: at.clone(),
            updated_at: at.clone(),
        };
        diesel::insert_into(flags::table)
            .values(&flag)
            .execute(conn)
            .map_err(|e| {
                if is_unique_violation(&e) {
                    AppError::Invalid(FieldErrors::conflict(
                        "slug",
                        "A flag with this slug already exists. Choose another slug.",
                    ))
                } else {
                    e.into()
                }
            })?;
        replace_tags(conn, &flag.id, &valid.tags)?;
        let env_ids: Vec<String> = environments::table.select(environments::id).load(conn)?;
        let new_rules: Vec<Rule> = env_ids
            .into_iter()
            .map(|environment_id| Rule {
                flag_id: flag.id.clone(),
                environment_id,
                mode: Mode::None.as_str().into(),
                enabled: false,
                version: 1,
                updated_by: None,
                updated_at: at.clone(),
            })
            .collect();
        crate::with_backend!(conn, |c| diesel::insert_into(rules::table)
            .values(&new_rules)
            .execute(c))?;
        let mut after = flag_state(&flag, &valid.tags);
        after["slug"] = json!(flag.slug);
        audit::record(
            conn,
            actor,
            Change {
                action: "flag.created",
                object_type: "flag",
                object_id: &flag.id,
                object_label: &flag.slug,
                flag_id: Some(&flag.id),
                environment_id: None,
                before: None,
                after: Some(after),
            },
        )?;
        webhooks::enqueue(conn, "flag.created", &flag.id, Scope::Everywhere, actor)?;
        Ok(flag)
    })
}

fn replace_tags(conn: &mut DbConn, flag_id: &str, tags: &[String]) -> QueryResult<()> {
    diesel::delete(flag_tags::table.filter(flag_tags::flag_id.eq(flag_id))).execute(conn)?;
    let rows: Vec<FlagTag> = tags
        .iter()
        .map(|tag| FlagTag {
            flag_id: flag_id.to_string(),
            tag: tag.clone(),
        })
        .collect();
    if !rows.is_empty() {
        crate::with_backend!(conn, |c| diesel::insert_into(flag_tags::table)
            .values(&rows)
            .execute(c))?;
    }
    Ok(())
}

/// Changes a flag's name, description and tags; the slug never changes.
pub fn update(
    conn: &mut DbConn,
    actor: &str,
    flag_id: &str,
    input: &FlagInput,
) -> Result<Flag, AppError> {
    let valid = validate_input(input, false)?;
    crate::db::write_transaction(conn, |conn| {
        let before = get(conn, flag_id)?;
        let before_tags = tags_of(conn, flag_id)?;
        diesel::update(flags::table.find(flag_id))
            .set((
                flags::name.eq(&valid.name),
                flags::description.eq(&valid.description),
                flags::updated_at.eq(now()),
            ))
            .execute(conn)?;
        replace_tags(conn, flag_id, &valid.tags)?;
        let after = get(conn, flag_id)?;
        // Read back sorted, like `before_tags`, so a reordering is no change.
        let after_tags = tags_of(conn, flag_id)?;
        audit::record(
            conn,
            actor,
            Change {
                action: "flag.updated",
                object_type: "flag",
                object_id: flag_id,
                object_label: &after.slug,
                flag_id: Some(flag_id),
                environment_id: None,
                before: Some(flag_state(&before, &before_tags)),
                after: Some(flag_state(&after, &after_tags)),
            },
        )?;
        webhooks::enqueue(conn, "flag.updated", flag_id, Scope::Everywhere, actor)?;
        Ok(after)
    })
}

/// Archives a flag (off everywhere, hidden from the default list) or brings it back.
pub fn set_archived(
    conn: &mut DbConn,
    actor: &str,
    flag_id: &str,
    archived: bool,
) -> Result<Flag, AppError> {
    crate::db::write_transaction(conn, |conn| {
        let before = get(conn, flag_id)?;
        if before.archived == archived {
            return Ok(before);
        }
        diesel::update(flags::table.find(flag_id))
            .set((flags::archived.eq(archived), flags::updated_at.eq(now())))
            .execute(conn)?;
        audit::record(
            conn,
            actor,
            Change {
                action: if archived {
                    "flag.archived"
                } else {
                    "flag.unarchived"
                },
                object_type: "flag",
                object_id: flag_id,
                object_label: &before.slug,
                flag_id: Some(flag_id),
                environment_id: None,
                before: Some(json!({"archived": before.archived})),
                after: Some(json!({"archived": archived})),
            },
        )?;
        webhooks::enqueue(conn, "flag.updated", flag_id, Scope::Everywhere, actor)?;
        Ok(get(conn, flag_id)?)
    })
}

/// Deletes an archived flag for good: its rules, targets and tags go with
/// it. Endpoints hear `flag.deleted` with the flag as it was. A flag still in
/// use must be archived first, so nobody deletes a live flag by mistake.
pub fn delete(conn: &mut DbConn, actor: &str, flag_id: &str) -> Result<Flag, AppError> {
    crate::db::write_transaction(conn, |conn| {
        crate::db::lock_flags_and_environments(conn)?;
        let flag = get(conn, flag_id)?;
        if !flag.archived {
            return Err(AppError::BadRequest(format!(
                "{} is not archived. Archive it first (it is then off everywhere), then delete it.",
                flag.name
            )));
        }
        let tags = tags_of(conn, flag_id)?;
        webhooks::enqueue(conn, "flag.deleted", flag_id, Scope::Everywhere, actor)?;
        diesel::delete(targets::table.filter(targets::flag_id.eq(flag_id))).execute(conn)?;
        diesel::delete(rules::table.filter(rules::flag_id.eq(flag_id))).execute(conn)?;
        diesel::delete(flag_tags::table.filter(flag_tags::flag_id.eq(flag_id))).execute(conn)?;
        diesel::delete(flags::table.find(flag_id)).execute(conn)?;
        let mut before = flag_state(&flag, &tags);
        before["slug"] = json!(flag.slug);
        audit::record(
            conn,
            actor,
            Change {
                action: "flag.deleted",
                object_type: "flag",
                object_id: &flag.id,
                object_label: &flag.slug,
                flag_id: Some(&flag.id),
                environment_id: None,
                before: Some(before),
                after: None,
            },
        )?;
        Ok(flag)
    })
}

pub fn get(conn: &mut DbConn, flag_id: &str) -> QueryResult<Flag> {
    flags::table
        .find(flag_id)
        .select(Flag::as_select())
        .first(conn)
}

pub fn by_slug(conn: &mut DbConn, slug: &str) -> QueryResult<Flag> {
    flags::table
        .filter(flags::slug.eq(slug))
        .select(Flag::as_select())
        .first(conn)
}

pub fn tags_of(conn: &mut DbConn, flag_id: &str) -> QueryResult<Vec<String>> {
    flag_tags::table
        .filter(flag_tags::flag_id.eq(flag_id))
        .order(flag_tags::tag.asc())
        .select(flag_tags::tag)
        .load(conn)
}

pub fn all_tags(conn: &mut DbConn) -> QueryResult<Vec<String>> {
    flag_tags::table
        .select(flag_tags::tag)
        .distinct()
        .order(flag_tags::tag.asc())
        .load(conn)
}

#[derive(Debug, Clone, Default)]
pub struct FlagQuery {
    pub q: String,
    pub tag: Option<String>,
    pub archived: bool,
    pub page: i64,
    pub per_page: i64,
}

pub struct FlagListItem {
    pub flag: Flag,
    pub tags: Vec<String>,
    pub rule: Rule,
    pub target_count: i64,
}

/// Flags whose name, slug or description contains `q`, with `tag` if given,
/// archived or not: the one search of the dashboard and the API.
pub fn matching<'a>(q: &str, tag: Option<&str>, archived: bool) -> flags::BoxedQuery<'a, Db> {
    let mut query = flags::table
        .filter(flags::archived.eq(archived))
        .into_boxed();
    let needle = q.trim();
    if !needle.is_empty() {
        let pattern = contains_pattern(needle);
        query = query.filter(
            lower(flags::name)
                .like(pattern.clone())
                .escape('\\')
                .or(lower(flags::slug).like(pattern.clone()).escape('\\'))
                .or(lower(flags::description).like(pattern).escape('\\')),
        );
    }
    if let Some(tag) = tag {
        query = query.filter(
            flags::id.eq_any(
                flag_tags::table
                    .filter(flag_tags::tag.eq(tag.to_string()))
                    .select(flag_tags::flag_id),
            ),
        );
    }
    query
}

/// Tags of several flags at once.
pub fn tags_by_flag(conn: &mut DbConn, ids: &[&str]) -> QueryResult<HashMap<String, Vec<String>>> {
    let mut tags: HashMap<String, Vec<String>> = HashMap::new();
    for t in flag_tags::table
        .filter(flag_tags::flag_id.eq_any(ids))
        .order(flag_tags::tag.asc())
        .select(FlagTag::as_select())
        .load(conn)?
    {
        tags.entry(t.flag_id).or_default().push(t.tag);
    }
    Ok(tags)
}

/// One page of flags, newest first, each with its rule in `env_id`.
pub fn list(
    conn: &mut DbConn,
    env_id: &str,
    query: &FlagQuery,
) -> QueryResult<(Vec<FlagListItem>, i64)> {
    let build = || matching(&query.q, query.tag.as_deref(), query.archived);
    let total: i64 = build().count().get_result(conn)?;
    let page: Vec<Flag> = build()
        .order((flags::created_at.desc(), flags::id.desc()))
        .limit(query.per_page)
        .offset((query.page.max(1) - 1) * query.per_page)
        .select(Flag::as_select())
        .load(conn)?;
    let ids: Vec<&str> = page.iter().map(|f| f.id.as_str()).collect();
    let mut rules_by_flag = rules_in(conn, env_id, &ids)?;
    let counts: HashMap<String, i64> = targets::table
        .filter(targets::environment_id.eq(env_id))
        .filter(targets::flag_id.eq_any(&ids))
        .group_by(targets::flag_id)
        .select((targets::flag_id, diesel::dsl::count_star()))
        .load::<(String, i64)>(conn)?
        .into_iter()
        .collect();
    let mut tags = tags_by_flag(conn, &ids)?;
    let items = page
        .into_iter()
        .filter_map(|flag| {
            let rule = rules_by_flag.remove(&flag.id)?;
            Some(FlagListItem {
                tags: tags.remove(&flag.id).unwrap_or_default(),
                target_count: counts.get(&flag.id).copied().unwrap_or(0),
                rule,
                flag,
            })
        })
        .collect();
    Ok((items, total))
}

/// The rules of `flag_ids` in one environment, by flag id.
pub fn rules_in(
    conn: &mut DbConn,
    env_id: &str,
    flag_ids: &[&str],
) -> QueryResult<HashMap<String, Rule>> {
    Ok(rules::table
        .filter(rules::environment_id.eq(env_id))
        .filter(rules::flag_id.eq_any(flag_ids))
        .select(Rule::as_select())
        .load(conn)?
        .into_iter()
        .map(|r| (r.flag_id.clone(), r))
        .collect())
}

pub fn rule(conn: &mut DbConn, flag_id: &str, env_id: &str) -> QueryResult<Rule> {
    rules::table
        .find((flag_id, env_id))
        .select(Rule::as_select())
        .first(conn)
}

/// A flag's rule in one environment, as a card shows it.
pub struct RuleSummary {
    pub environment: Environment,
    pub rule: Rule,
    pub users: i64,
    pub organizations: i64,
    /// The first few targets' names, for the card.
    pub preview: Vec<TargetView>,
}

pub fn rules_of(conn: &mut DbConn, flag_id: &str) -> QueryResult<Vec<RuleSummary>> {
    let rows: Vec<(Rule, Environment)> = rules::table
        .inner_join(environments::table)
        .filter(rules::flag_id.eq(flag_id))
        .order((environments::position.asc(), environments::created_at.asc()))
        .select((Rule::as_select(), Environment::as_select()))
        .load(conn)?;
    let counts: Vec<(String, String, i64)> = targets::table
        .filter(targets::flag_id.eq(flag_id))
        .group_by((targets::environment_id, targets::target_type))
        .select((
            targets::environment_id,
            targets::target_type,
            diesel::dsl::count_star(),
        ))
        .load(conn)?;
    let mut out = Vec::with_capacity(rows.len());
    for (rule, environment) in rows {
        let count = |kind: &str| {
            counts
                .iter()
                .find(|(env, t, _)| *env == environment.id && t == kind)
                .map_or(0, |(_, _, n)| *n)
        };
        let (preview, _) = targets_page(conn, flag_id, &environment.id, 1, 3)?;
        out.push(RuleSummary {
            users: count("user"),
            organizations: count("organization"),
            preview,
            rule,
            environment,
        });
    }
    Ok(out)
}

fn rule_state(rule: &Rule, target_count: i64) -> serde_json::Value {
    json!({"mode": rule.mode, "enabled": rule.enabled, "targets": target_count})
}

fn target_count(conn: &mut DbConn, flag_id: &str, env_id: &str) -> QueryResult<i64> {
    targets::table
        .filter(targets::flag_id.eq(flag_id))
        .filter(targets::environment_id.eq(env_id))
        .count()
        .get_result(conn)
}

/// Bumps the rule's version if it is still `expected`; a concurrent change
/// makes this fail with `Stale` and the transaction roll back.
fn claim_version(
    conn: &mut DbConn,
    rule: &Rule,
    expected: Option<i32>,
    actor: &str,
) -> Result<(), AppError> {
    let stale = || {
        AppError::Stale(
            "Someone else changed this rule after you opened it. Nothing was saved: \
             look at the rule as it is now and make your change again."
                .into(),
        )
    };
    let expected = expected.unwrap_or(rule.version);
    // Any other version is stale already; checking here also keeps a forged
    // one (such as i32::MAX) from overflowing below.
    if expected != rule.version {
        return Err(stale());
    }
    let updated = diesel::update(
        rules::table
            .find((&rule.flag_id, &rule.environment_id))
            .filter(rules::version.eq(expected)),
    )
    .set((
        rules::version.eq(expected.saturating_add(1)),
        rules::updated_by.eq(actor),
        rules::updated_at.eq(now()),
    ))
    .execute(conn)?;
    if updated == 0 {
        return Err(stale());
    }
    Ok(())
}

/// Turns a flag on or off in one environment.
pub fn set_enabled(
    conn: &mut DbConn,
    actor: &str,
    flag: &Flag,
    env: &Environment,
    enabled: bool,
    expected_version: Option<i32>,
) -> Result<Rule, AppError> {
    crate::db::write_transaction(conn, |conn| {
        let before = rule(conn, &flag.id, &env.id)?;
        claim_version(conn, &before, expected_version, actor)?;
        diesel::update(rules::table.find((&flag.id, &env.id)))
            .set(rules::enabled.eq(enabled))
            .execute(conn)?;
        let after = rule(conn, &flag.id, &env.id)?;
        if before.enabled != enabled {
            let count = target_count(conn, &flag.id, &env.id)?;
            audit::record(
                conn,
                actor,
                Change {
                    action: if enabled {
                        "rule.enabled"
                    } else {
                        "rule.disabled"
                    },
                    object_type: "flag",
                    object_id: &flag.id,
                    object_label: &flag.slug,
                    flag_id: Some(&flag.id),
                    environment_id: Some(&env.id),
                    before: Some(rule_state(&before, count)),
                    after: Some(rule_state(&after, count)),
                },
            )?;
            webhooks::enqueue(conn, "flag.updated", &flag.id, Scope::In(&env.id), actor)?;
        }
        Ok(after)
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetKind {
    User,
    Organization,
}

impl TargetKind {
    /// Users and organizations are told apart by their id's prefix.
    pub fn of_id(id: &str) -> Option<TargetKind> {
        if id.starts_with("user_") {
            Some(TargetKind::User)
        } else if id.starts_with("org_") {
            Some(TargetKind::Organization)
        } else {
            None
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            TargetKind::User => "user",
            TargetKind::Organization => "organization",
        }
    }
}

/// The whole of one save of the rule editor.
#[derive(Debug, Clone)]
pub struct RuleChange {
    pub mode: Mode,
    pub add: Vec<String>,
    pub remove: Vec<String>,
    pub expected_version: i32,
}

/// Saves mode and target changes together, refusing if the rule changed since
/// `expected_version` was read. Targets are kept whatever the mode.
pub fn save_rule(
    conn: &mut DbConn,
    actor: &str,
    flag: &Flag,
    env: &Environment,
    change: &RuleChange,
) -> Result<Rule, AppError> {
    crate::db::write_transaction(conn, |conn| {
        let before = rule(conn, &flag.id, &env.id)?;
        let before_count = target_count(conn, &flag.id, &env.id)?;
        claim_version(conn, &before, Some(change.expected_version), actor)?;
        diesel::update(rules::table.find((&flag.id, &env.id)))
            .set(rules::mode.eq(change.mode.as_str()))
            .execute(conn)?;

        let existing: Vec<String> = targets::table
            .filter(targets::flag_id.eq(&flag.id))
            .filter(targets::environment_id.eq(&env.id))
            .filter(targets::target_id.eq_any(&change.add))
            .select(targets::target_id)
            .load(conn)?;
        let to_add: Vec<&String> = change
            .add
            .iter()
            .filter(|id| !existing.contains(id) && !change.remove.contains(id))
            .collect();
        let known = describe_targets(
            conn,
            &to_add.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        )?;
        let at = now();
        let mut rows = Vec::with_capacity(to_add.len());
        for id in to_add {
            let view = known.iter().find(|v| &v.id == id).ok_or_else(|| {
                AppError::Invalid(FieldErrors::single(
                    "targets",
                    format!("{id} is neither a user nor an organization that exists."),
                ))
            })?;
            rows.push(Target {
                flag_id: flag.id.clone(),
                environment_id: env.id.clone(),
                target_type: view.kind.to_string(),
                target_id: id.clone(),
                created_at: at.clone(),
            });
        }
        for chunk in rows.chunks(500) {
            crate::with_backend!(conn, |c| diesel::insert_into(targets::table)
                .values(chunk)
                .execute(c))?;
        }
        let really_removed: Vec<String> = targets::table
            .filter(targets::flag_id.eq(&flag.id))
            .filter(targets::environment_id.eq(&env.id))
            .filter(targets::target_id.eq_any(&change.remove))
            .select(targets::target_id)
            .load(conn)?;
        let removed_views = describe_targets(conn, &really_removed)?;
        let removed = diesel::delete(
            targets::table
                .filter(targets::flag_id.eq(&flag.id))
                .filter(targets::environment_id.eq(&env.id))
                .filter(targets::target_id.eq_any(&change.remove)),
        )
        .execute(conn)?;
        let after = rule(conn, &flag.id, &env.id)?;
        let after_count = target_count(conn, &flag.id, &env.id)?;
        let mut after_state = rule_state(&after, after_count);
        let named = |views: &[&TargetView]| {
            views
                .iter()
                .map(|v| format!("{} ({})", v.label, v.id))
                .collect::<Vec<_>>()
                .join(", ")
        };
        if !rows.is_empty() {
            let added: Vec<&TargetView> = known
                .iter()
                .filter(|v| rows.iter().any(|r| r.target_id == v.id))
                .collect();
            after_state["added"] = json!(named(&added));
        }
        if removed > 0 {
            after_state["removed"] = json!(named(&removed_views.iter().collect::<Vec<_>>()));
        }
        audit::record(
            conn,
            actor,
            Change {
                action: "rule.updated",
                object_type: "flag",
                object_id: &flag.id,
                object_label: &flag.slug,
                flag_id: Some(&flag.id),
                environment_id: Some(&env.id),
                before: Some(rule_state(&before, before_count)),
                after: Some(after_state),
            },
        )?;
        webhooks::enqueue(
            conn,
            "flag.rule_updated",
            &flag.id,
            Scope::In(&env.id),
            actor,
        )?;
        Ok(after)
    })
}

/// A user or organization as the rule editor lists it.
#[derive(Debug, Clone)]
pub struct TargetView {
    pub kind: &'static str,
    pub id: String,
    pub label: String,
    pub detail: String,
}

impl TargetView {
    fn of_user(u: User) -> Self {
        let detail = match &u.external_id {
            Some(ext) => format!("{} · {}", u.email, ext),
            None => u.email.clone(),
        };
        TargetView {
            kind: "user",
            label: u.display_name(),
            id: u.id,
            detail,
        }
    }
    fn of_org(o: Organization) -> Self {
        TargetView {
            kind: "organization",
            detail: o.external_id.clone().unwrap_or_default(),
            label: o.name,
            id: o.id,
        }
    }
}

/// Names and details of the users and organizations behind `ids`; unknown ids are left out.
pub fn describe_targets(conn: &mut DbConn, ids: &[String]) -> QueryResult<Vec<TargetView>> {
    let user_ids: Vec<&String> = ids.iter().filter(|i| i.starts_with("user_")).collect();
    let org_ids: Vec<&String> = ids.iter().filter(|i| i.starts_with("org_")).collect();
    let mut out = Vec::new();
    if !user_ids.is_empty() {
        out.extend(
            users::table
                .filter(users::id.eq_any(user_ids))
                .select(User::as_select())
                .load(conn)?
                .into_iter()
                .map(TargetView::of_user),
        );
    }
    if !org_ids.is_empty() {
        out.extend(
            organizations::table
                .filter(organizations::id.eq_any(org_ids))
                .select(Organization::as_select())
                .load(conn)?
                .into_iter()
                .map(TargetView::of_org),
        );
    }
    let order: HashMap<&String, usize> = ids.iter().enumerate().map(|(i, id)| (id, i)).collect();
    out.sort_by_key(|v| order.get(&v.id).copied().unwrap_or(usize::MAX));
    Ok(out)
}

/// One page of a rule's targets: organizations first, then users, each in the order they were added.
pub fn targets_page(
    conn: &mut DbConn,
    flag_id: &str,
    env_id: &str,
    page: i64,
    per_page: i64,
) -> QueryResult<(Vec<TargetView>, i64)> {
    let base = || {
        targets::table
            .filter(targets::flag_id.eq(flag_id))
            .filter(targets::environment_id.eq(env_id))
    };
    let total: i64 = base().count().get_result(conn)?;
    let ids: Vec<String> = base()
        .order((
            targets::target_type.asc(),
            targets::created_at.asc(),
            targets::target_id.asc(),
        ))
        .limit(per_page)
        .offset((page.max(1) - 1) * per_page)
        .select(targets::target_id)
        .load(conn)?;
    Ok((describe_targets(conn, &ids)?, total))
}

/// Users (by name, email or external id) and organizations (by name or external id) matching `q`.
pub fn search_targetables(conn: &mut DbConn, q: &str, limit: i64) -> QueryResult<Vec<TargetView>> {
    let q = q.trim();
    if q.is_empty() {
        return Ok(Vec::new());
    }
    let pattern = contains_pattern(q);
    let orgs = organizations::table
        .filter(
            lower(organizations::name)
                .like(pattern.clone())
                .escape('\\')
                .or(organizations::external_id.eq(q))
                .or(organizations::id.eq(q)),
        )
        .order(organizations::name.asc())
        .limit(limit)
        .select(Organization::as_select())
        .load(conn)?;
    let found_users = users::table
        .filter(
            lower(users::email)
                .like(pattern.clone())
                .escape('\\')
                .or(lower(users::first_name).like(pattern.clone()).escape('\\'))
                .or(lower(users::last_name).like(pattern).escape('\\'))
                .or(users::external_id.eq(q))
                .or(users::id.eq(q)),
        )
        .order(users::email.asc())
        .limit(limit)
        .select(User::as_select())
        .load(conn)?;
    Ok(orgs
        .into_iter()
        .map(TargetView::of_org)
        .chain(found_users.into_iter().map(TargetView::of_user))
        .collect())
}

/// Every rule with its flag's slug and archived state, and the targets of
/// those that can turn a flag on by target (enabled, mode Some, flag not
/// archived): what the evaluation index is built from. The index keeps the
/// other rules only to say why a flag is off.
pub fn rule_facts(conn: &mut DbConn) -> QueryResult<Vec<crate::evaluation::RuleFacts>> {
    let rows: Vec<(Rule, String, bool)> = rules::table
        .inner_join(flags::table)
        .select((Rule::as_select(), flags::slug, flags::archived))
        .load(conn)?;
    let mut by_rule: HashMap<(String, String), (Vec<String>, Vec<String>)> = rows
        .iter()
        .filter(|(r, _, archived)| r.mode == "some" && r.enabled && !archived)
        .map(|(r, _, _)| {
            (
                (r.flag_id.clone(), r.environment_id.clone()),
                Default::default(),
            )
        })
        .collect();
    if !by_rule.is_empty() {
        for t in targets::table.select(Target::as_select()).load(conn)? {
            if let Some(entry) = by_rule.get_mut(&(t.flag_id, t.environment_id)) {
                if t.target_type == "user" {
                    entry.0.push(t.target_id);
                } else {
                    entry.1.push(t.target_id);
                }
            }
        }
    }
    Ok(rows
        .into_iter()
        .map(|(rule, slug, archived)| {
            let (user_targets, organization_targets) = by_rule
                .remove(&(rule.flag_id.clone(), rule.environment_id.clone()))
                .unwrap_or_default();
            crate::evaluation::RuleFacts {
                environment_id: rule.environment_id,
                slug,
                enabled: rule.enabled,
                archived,
                mode: rule.mode,
                user_targets,
                organization_targets,
            }
        })
        .collect())
}
