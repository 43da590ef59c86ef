//! Feature flags: a name, an immutable slug, a description and tags, with a
//! rule in every environment ([`rules`]) whose targets are users and
//! organizations ([`targets`]).

mod events;
pub mod rules;
pub mod targets;

use std::collections::HashMap;

use diesel::prelude::*;
use serde_json::{json, Value};

use crate::audit::{Actor, Change};
use crate::changes::{changed, Changed};
use crate::db::schema::{
    environments, flag_tags, flags, rules as rules_table, targets as targets_table,
};
use crate::db::{contains_pattern, lower, on_unique_violation, Db, DbConn};
use crate::error::{Entity, Error, FieldErrors, OrNotFound, Refusal, Result};
use crate::evaluation::Mode;
use crate::ids::{EnvironmentId, FlagId};
use crate::paging::{Cursor, Page};
use crate::time::Timestamp;
use crate::validate::{self, Slug};
use crate::webhooks::outbox::Scope;
use events::announce;

pub use rules::RuleRow;

#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable, Insertable)]
#[diesel(table_name = flags)]
pub struct Flag {
    pub id: FlagId,
    pub slug: Slug,
    pub name: String,
    pub description: String,
    pub archived: bool,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// A flag with its tags, as every surface shows one.
#[derive(Debug, Clone)]
pub struct FlagWithTags {
    pub flag: Flag,
    pub tags: Vec<String>,
}

/// What creating a flag takes, as typed in a form or sent by the API.
#[derive(Debug, Clone, Default)]
pub struct NewFlag {
    pub name: String,
    pub slug: String,
    pub description: String,
    pub tags: Vec<String>,
}

/// What changing a flag takes: the fields to change; the others keep their
/// value. The slug never changes.
#[derive(Debug, Clone, Default)]
pub struct FlagPatch {
    pub name: Option<String>,
    pub description: Option<String>,
    pub tags: Option<Vec<String>>,
}

fn state(flag: &Flag, tags: &[String]) -> Value {
    json!({
        "name": flag.name,
        "description": flag.description,
        "tags": tags.join(", "),
        "archived": flag.archived,
    })
}

fn check_name(errors: &mut FieldErrors, name: &str) -> String {
    errors.check("name", validate::name(name, "name", 100))
}

fn check_description(errors: &mut FieldErrors, description: &str) -> String {
    errors.check(
        "description",
        validate::text(description, "description", 1000),
    )
}

fn check_tags(errors: &mut FieldErrors, tags: &[String]) -> Vec<String> {
    errors
        .check("tags", validate::tag_list(tags.iter().map(String::as_str)))
        .into_iter()
        .map(Slug::into_string)
        .collect()
}

/// Creates a flag with a rule (None, disabled) in every environment, in one
/// transaction.
pub fn create(conn: &mut DbConn, actor: &Actor, input: &NewFlag) -> Result<Flag> {
    let mut errors = FieldErrors::default();
    let name = check_name(&mut errors, &input.name);
    let slug = errors.check("slug", validate::slug(&input.slug));
    let description = check_description(&mut errors, &input.description);
    let tags = check_tags(&mut errors, &input.tags);
    errors.into_result()?;
    crate::db::write_transaction(conn, |conn| {
        crate::db::lock_flags_and_environments(conn)?;
        let at = Timestamp::now();
        let flag = Flag {
            id: FlagId::generate(),
            slug: slug.clone(),
            name: name.clone(),
            description: description.clone(),
            archived: false,
            created_at: at,
            updated_at: at,
        };
        diesel::insert_into(flags::table)
            .values(&flag)
            .execute(conn)
            .map_err(|e| {
                on_unique_violation(e, |_| {
                    (
                        "slug",
                        "A flag with this slug already exists. Choose another slug.",
                    )
                })
            })?;
        replace_tags(conn, &flag.id, &tags)?;
        let env_ids: Vec<EnvironmentId> =
            environments::table.select(environments::id).load(conn)?;
        let new_rules: Vec<RuleRow> = env_ids
            .into_iter()
            .map(|env| RuleRow::new(flag.id.clone(), env, at))
            .collect();
        crate::with_backend!(conn, |c| diesel::insert_into(rules_table::table)
            .values(&new_rules)
            .execute(c))?;
        changed(conn, Changed::Flag(&flag.id))?;
        let mut after = state(&flag, &tags);
        after["slug"] = json!(flag.slug);
        Change::new("flag.created", "flag", &flag.id, flag.slug.as_str())
            .flag(&flag.id)
            .after(after)
            .record(conn, actor)?;
        announce(
            conn,
            "flag.created",
            &flag,
            Scope::Everywhere,
            actor,
            json!({}),
        )?;
        Ok(flag)
    })
}

fn replace_tags(conn: &mut DbConn, flag_id: &FlagId, tags: &[String]) -> Result<()> {
    diesel::delete(flag_tags::table.filter(flag_tags::flag_id.eq(flag_id))).execute(conn)?;
    let rows: Vec<_> = tags
        .iter()
        .map(|tag| (flag_tags::flag_id.eq(flag_id), flag_tags::tag.eq(tag)))
        .collect();
    if !rows.is_empty() {
        crate::with_backend!(conn, |c| diesel::insert_into(flag_tags::table)
            .values(&rows)
            .execute(c))?;
    }
    Ok(())
}

/// Changes a flag's name, description or tags. The current values are read
/// and merged inside the write, so two changes of different fields made at
/// once both last.
pub fn update(
    conn: &mut DbConn,
    actor: &Actor,
    flag_id: &FlagId,
    patch: &FlagPatch,
) -> Result<Flag> {
    let mut errors = FieldErrors::default();
    let name = patch.name.as_deref().map(|n| check_name(&mut errors, n));
    let description = patch
        .description
        .as_deref()
        .map(|d| check_description(&mut errors, d));
    let tags = patch.tags.as_deref().map(|t| check_tags(&mut errors, t));
    errors.into_result()?;
    crate::db::write_transaction(conn, |conn| {
        // Lock the row before reading it, so a concurrent change of another
        // field waits and is merged, not overwritten.
        diesel::update(flags::table.find(flag_id))
            .set(flags::updated_at.eq(flags::updated_at))
            .execute(conn)?;
        let before = get(conn, flag_id)?;
        let before_tags = tags_of(conn, flag_id)?;
        diesel::update(flags::table.find(flag_id))
            .set((
                flags::name.eq(name.as_ref().unwrap_or(&before.name)),
                flags::description.eq(description.as_ref().unwrap_or(&before.description)),
                flags::updated_at.eq(Timestamp::now()),
            ))
            .execute(conn)?;
        if let Some(tags) = &tags {
            replace_tags(conn, flag_id, tags)?;
        }
        let after = get(conn, flag_id)?;
        // Read back sorted, like `before_tags`, so a reordering is no change.
        let after_tags = tags_of(conn, flag_id)?;
        changed(conn, Changed::Flag(flag_id))?;
        Change::new("flag.updated", "flag", flag_id, after.slug.as_str())
            .flag(flag_id)
            .before(state(&before, &before_tags))
            .after(state(&after, &after_tags))
            .record(conn, actor)?;
        let previous = json!({"previous_attributes": {"data": {
            "name": before.name,
            "description": before.description,
            "tags": before_tags,
        }}});
        announce(
            conn,
            "flag.updated",
            &after,
            Scope::Everywhere,
            actor,
            previous,
        )?;
        Ok(after)
    })
}

/// Archives a flag (off everywhere, hidden from the default list) or brings it back.
pub fn set_archived(
    conn: &mut DbConn,
    actor: &Actor,
    flag_id: &FlagId,
    archived: bool,
) -> Result<Flag> {
    crate::db::write_transaction(conn, |conn| {
        let before = get(conn, flag_id)?;
        if before.archived == archived {
            return Ok(before);
        }
        diesel::update(flags::table.find(flag_id))
            .set((
                flags::archived.eq(archived),
                flags::updated_at.eq(Timestamp::now()),
            ))
            .execute(conn)?;
        changed(conn, Changed::Flag(flag_id))?;
        let action = if archived {
            "flag.archived"
        } else {
            "flag.unarchived"
        };
        Change::new(action, "flag", flag_id, before.slug.as_str())
            .flag(flag_id)
            .before(json!({"archived": before.archived}))
            .after(json!({"archived": archived}))
            .record(conn, actor)?;
        let after = get(conn, flag_id)?;
        announce(
            conn,
            "flag.updated",
            &after,
            Scope::Everywhere,
            actor,
            json!({}),
        )?;
        Ok(after)
    })
}

/// Deletes an archived flag for good: its rules, targets and tags go with
/// it. Endpoints hear `flag.deleted` with the flag as it was. A flag still in
/// use must be archived first, so nobody deletes a live flag by mistake.
pub fn delete(conn: &mut DbConn, actor: &Actor, flag_id: &FlagId) -> Result<Flag> {
    crate::db::write_transaction(conn, |conn| {
        crate::db::lock_flags_and_environments(conn)?;
        let flag = get(conn, flag_id)?;
        if !flag.archived {
            return Err(Error::Refused(Refusal::FlagNotArchived {
                name: flag.name.clone(),
            }));
        }
        let tags = tags_of(conn, flag_id)?;
        announce(
            conn,
            "flag.deleted",
            &flag,
            Scope::Everywhere,
            actor,
            json!({}),
        )?;
        diesel::delete(targets_table::table.filter(targets_table::flag_id.eq(flag_id)))
            .execute(conn)?;
        diesel::delete(rules_table::table.filter(rules_table::flag_id.eq(flag_id)))
            .execute(conn)?;
        diesel::delete(flag_tags::table.filter(flag_tags::flag_id.eq(flag_id))).execute(conn)?;
        diesel::delete(flags::table.find(flag_id)).execute(conn)?;
        changed(conn, Changed::Flag(flag_id))?;
        let mut before = state(&flag, &tags);
        before["slug"] = json!(flag.slug);
        Change::new("flag.deleted", "flag", &flag.id, flag.slug.as_str())
            .flag(&flag.id)
            .before(before)
            .record(conn, actor)?;
        Ok(flag)
    })
}

pub fn get(conn: &mut DbConn, flag_id: &FlagId) -> Result<Flag> {
    flags::table
        .find(flag_id)
        .select(Flag::as_select())
        .first(conn)
        .or_not_found(Entity::Flag)
}

pub fn by_slug(conn: &mut DbConn, slug: &str) -> Result<Flag> {
    flags::table
        .filter(flags::slug.eq(slug))
        .select(Flag::as_select())
        .first(conn)
        .or_not_found(Entity::Flag)
}

/// A flag that is not archived: archived flags do not exist for the WorkOS
/// surface, which has no archive.
pub fn live_by_slug(conn: &mut DbConn, slug: &str) -> Result<Flag> {
    by_slug(conn, slug).and_then(|flag| {
        if flag.archived {
            Err(Error::NotFound(Entity::Flag))
        } else {
            Ok(flag)
        }
    })
}

pub fn with_tags(conn: &mut DbConn, flag: Flag) -> Result<FlagWithTags> {
    let tags = tags_of(conn, &flag.id)?;
    Ok(FlagWithTags { flag, tags })
}

pub fn tags_of(conn: &mut DbConn, flag_id: &FlagId) -> Result<Vec<String>> {
    Ok(flag_tags::table
        .filter(flag_tags::flag_id.eq(flag_id))
        .order(flag_tags::tag.asc())
        .select(flag_tags::tag)
        .load(conn)?)
}

pub fn all_tags(conn: &mut DbConn) -> Result<Vec<String>> {
    Ok(flag_tags::table
        .select(flag_tags::tag)
        .distinct()
        .order(flag_tags::tag.asc())
        .load(conn)?)
}

/// Tags of several flags at once.
fn tags_by_flag(conn: &mut DbConn, ids: &[&FlagId]) -> Result<HashMap<FlagId, Vec<String>>> {
    let mut tags: HashMap<FlagId, Vec<String>> = HashMap::new();
    for (flag_id, tag) in flag_tags::table
        .filter(flag_tags::flag_id.eq_any(ids))
        .order(flag_tags::tag.asc())
        .select((flag_tags::flag_id, flag_tags::tag))
        .load::<(FlagId, String)>(conn)?
    {
        tags.entry(flag_id).or_default().push(tag);
    }
    Ok(tags)
}

pub(crate) fn attach_tags(conn: &mut DbConn, flags: Vec<Flag>) -> Result<Vec<FlagWithTags>> {
    let ids: Vec<&FlagId> = flags.iter().map(|f| &f.id).collect();
    let mut tags = tags_by_flag(conn, &ids)?;
    Ok(flags
        .into_iter()
        .map(|flag| FlagWithTags {
            tags: tags.remove(&flag.id).unwrap_or_default(),
            flag,
        })
        .collect())
}

/// Which flags a list shows: those whose name, slug or description contains
/// `q`, with `tag` if given, archived or not, and (for the lists of what is
/// on for someone) only those whose slug is in `slugs`.
#[derive(Debug, Clone, Default)]
pub struct FlagFilter {
    pub q: String,
    pub tag: Option<String>,
    pub archived: bool,
    pub slugs: Option<Vec<String>>,
}

fn matching<'a>(filter: &FlagFilter) -> flags::BoxedQuery<'a, Db> {
    let mut query = flags::table
        .filter(flags::archived.eq(filter.archived))
        .into_boxed();
    let needle = filter.q.trim();
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
    if let Some(tag) = &filter.tag {
        query = query.filter(
            flags::id.eq_any(
                flag_tags::table
                    .filter(flag_tags::tag.eq(tag.clone()))
                    .select(flag_tags::flag_id),
            ),
        );
    }
    if let Some(slugs) = &filter.slugs {
        query = query.filter(flags::slug.eq_any(slugs.clone()));
    }
    query
}

/// One cursor page of flags with their tags, for the APIs.
pub fn list(conn: &mut DbConn, filter: &FlagFilter, cursor: &Cursor) -> Result<Page<FlagWithTags>> {
    let page = crate::paginate!(
        matching(filter),
        flags::id,
        cursor,
        conn,
        Flag,
        |f: &Flag| f.id.to_string()
    );
    let data = attach_tags(conn, page.data)?;
    Ok(Page {
        data,
        before: page.before,
        after: page.after,
    })
}

/// A flag as the dashboard's list shows it in one environment.
pub struct FlagListItem {
    pub flag: Flag,
    pub tags: Vec<String>,
    pub rule: RuleRow,
    pub target_count: i64,
}

/// One numbered page of flags, newest first, each with its rule in `env_id`.
pub fn page(
    conn: &mut DbConn,
    env_id: &EnvironmentId,
    filter: &FlagFilter,
    page: i64,
    per_page: i64,
) -> Result<(Vec<FlagListItem>, i64)> {
    let total: i64 = matching(filter).count().get_result(conn)?;
    let found: Vec<Flag> = matching(filter)
        .order((flags::created_at.desc(), flags::id.desc()))
        .limit(per_page)
        .offset((page.max(1) - 1) * per_page)
        .select(Flag::as_select())
        .load(conn)?;
    let ids: Vec<&FlagId> = found.iter().map(|f| &f.id).collect();
    let mut rules_by_flag = rules::rules_in(conn, env_id, &ids)?;
    let counts: HashMap<FlagId, i64> = targets_table::table
        .filter(targets_table::environment_id.eq(env_id))
        .filter(targets_table::flag_id.eq_any(&ids))
        .group_by(targets_table::flag_id)
        .select((targets_table::flag_id, diesel::dsl::count_star()))
        .load::<(FlagId, i64)>(conn)?
        .into_iter()
        .collect();
    let mut tags = tags_by_flag(conn, &ids)?;
    let items = found
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

/// Flags with their rule in one environment, for the WorkOS objects.
pub fn with_rules_in(
    conn: &mut DbConn,
    env_id: &EnvironmentId,
    flags: Vec<FlagWithTags>,
) -> Result<Vec<(FlagWithTags, RuleRow)>> {
    let ids: Vec<&FlagId> = flags.iter().map(|f| &f.flag.id).collect();
    let mut rules = rules::rules_in(conn, env_id, &ids)?;
    Ok(flags
        .into_iter()
        .filter_map(|f| {
            let rule = rules.remove(&f.flag.id)?;
            Some((f, rule))
        })
        .collect())
}

impl FlagWithTags {
    /// The flag in one environment as WorkOS's `feature_flag` object:
    /// `enabled` is the environment's switch (off for an archived flag, which
    /// is off everywhere) and `default_value` what a context that no target
    /// names gets while it is on.
    pub fn workos_object(&self, rule: &RuleRow) -> crate::workos::FeatureFlag {
        self.workos_object_with(rule.enabled, rule.mode)
    }

    /// [`FlagWithTags::workos_object`] from the rule as the model has it.
    pub fn workos_object_in(
        &self,
        rule: &crate::evaluation::FlagRule,
    ) -> crate::workos::FeatureFlag {
        self.workos_object_with(rule.rule.enabled, rule.rule.mode)
    }

    fn workos_object_with(&self, enabled: bool, mode: Mode) -> crate::workos::FeatureFlag {
        crate::workos::FeatureFlag {
            object: "feature_flag",
            id: self.flag.id.clone(),
            slug: self.flag.slug.to_string(),
            name: self.flag.name.clone(),
            description: Some(self.flag.description.clone()),
            owner: None,
            tags: self.tags.clone(),
            enabled: enabled && !self.flag.archived,
            default_value: crate::evaluation::value_for_anyone(mode),
            created_at: self.flag.created_at,
            updated_at: self.flag.updated_at,
        }
    }
}

/// The slugs of flags, by id (flags since deleted are left out).
pub fn slugs_of(conn: &mut DbConn, ids: &[FlagId]) -> Result<HashMap<FlagId, String>> {
    Ok(flags::table
        .filter(flags::id.eq_any(ids))
        .select((flags::id, flags::slug))
        .load::<(FlagId, String)>(conn)?
        .into_iter()
        .collect())
}
