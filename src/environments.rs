//! Environments (Staging, Production, …): each flag has one rule in each.

use diesel::prelude::*;
use serde_json::json;

use crate::audit::{self, Change};
use crate::db::schema::{environments, flags, rules};
use crate::db::{is_unique_violation, DbConn};
use crate::error::{AppError, FieldErrors};
use crate::ids::{new_id, now};
use crate::models::{Environment, Rule};
use crate::validate;

/// The colours an environment can wear in the header: (name, hex).
pub const PALETTE: &[(&str, &str)] = &[
    ("Teal", "#0f766e"),
    ("Blue", "#1d4ed8"),
    ("Violet", "#6d28d9"),
    ("Amber", "#b45309"),
    ("Red", "#b42318"),
    ("Green", "#15803d"),
    ("Slate", "#475569"),
];

pub fn list(conn: &mut DbConn) -> QueryResult<Vec<Environment>> {
    environments::table
        .order((environments::position.asc(), environments::created_at.asc()))
        .select(Environment::as_select())
        .load(conn)
}

pub fn get(conn: &mut DbConn, id: &str) -> QueryResult<Environment> {
    environments::table
        .find(id)
        .select(Environment::as_select())
        .first(conn)
}

pub fn by_slug(conn: &mut DbConn, slug: &str) -> QueryResult<Environment> {
    environments::table
        .filter(environments::slug.eq(slug))
        .select(Environment::as_select())
        .first(conn)
}

/// Creates Staging and Production when there is no environment at all.
pub fn ensure_defaults(conn: &mut DbConn) -> Result<(), AppError> {
    crate::db::write_transaction(conn, |conn| {
        let count: i64 = environments::table.count().get_result(conn)?;
        if count > 0 {
            return Ok(());
        }
        insert(conn, "system", "Staging", "staging", "#0f766e", false)?;
        insert(conn, "system", "Production", "production", "#b42318", true)?;
        Ok(())
    })
}

pub struct EnvironmentInput {
    pub name: String,
    pub slug: String,
    pub color: String,
    pub require_confirmation: bool,
}

fn check_color(color: &str, errors: &mut FieldErrors) {
    if !PALETTE.iter().any(|(_, hex)| *hex == color) {
        errors.add("color", "Choose one of the listed colours.");
    }
}

/// Adds an environment at the end of the switcher; every flag gets a rule
/// (None, disabled) in it, all in one transaction.
pub fn create(
    conn: &mut DbConn,
    actor: &str,
    input: &EnvironmentInput,
) -> Result<Environment, AppError> {
    let mut errors = FieldErrors::default();
    let name = validate::name(&input.name, "name", 60).unwrap_or_else(|e| {
        errors.add("name", e);
        String::new()
    });
    let slug = validate::slug(&input.slug).unwrap_or_else(|e| {
        errors.add("slug", e);
        String::new()
    });
    check_color(&input.color, &mut errors);
    errors.into_result()?;
    crate::db::write_transaction(conn, |conn| {
        insert(
            conn,
            actor,
            &name,
            &slug,
            &input.color,
            input.require_confirmation,
        )
    })
}

fn insert(
    conn: &mut DbConn,
    actor: &str,
    name: &str,
    slug: &str,
    color: &str,
    require_confirmation: bool,
) -> Result<Environment, AppError> {
    crate::db::lock_flags_and_environments(conn)?;
    let max: Option<i32> = environments::table
        .select(diesel::dsl::max(environments::position))
        .first(conn)?;
    let at = now();
    let env = Environment {
        id: new_id("env"),
        slug: slug.to_string(),
        name: name.to_string(),
        position: max.map_or(0, |m| m + 1),
        color: color.to_string(),
        require_confirmation,
        client_id: new_id("client"),
        created_at: at.clone(),
        updated_at: at.clone(),
    };
    diesel::insert_into(environments::table)
        .values(&env)
        .execute(conn)
        .map_err(|e| {
            if is_unique_violation(&e) {
                AppError::Invalid(FieldErrors::conflict(
                    "slug",
                    "An environment with this slug already exists.",
                ))
            } else {
                e.into()
            }
        })?;
    let flag_ids: Vec<String> = flags::table.select(flags::id).load(conn)?;
    let new_rules: Vec<Rule> = flag_ids
        .into_iter()
        .map(|flag_id| Rule {
            flag_id,
            environment_id: env.id.clone(),
            mode: "none".into(),
            enabled: false,
            version: 1,
            updated_by: None,
            updated_at: at.clone(),
        })
        .collect();
    for chunk in new_rules.chunks(500) {
        crate::with_backend!(conn, |c| diesel::insert_into(rules::table)
            .values(chunk)
            .execute(c))?;
    }
    audit::record(
        conn,
        actor,
        Change {
            action: "environment.created",
            object_type: "environment",
            object_id: &env.id,
            object_label: &env.name,
            flag_id: None,
            environment_id: Some(&env.id),
            before: None,
            after: Some(
                json!({"name": env.name, "slug": env.slug, "require_confirmation": require_confirmation}),
            ),
        },
    )?;
    Ok(env)
}

/// Renames an environment or changes its colour or confirmation; the slug stays.
pub fn update(
    conn: &mut DbConn,
    actor: &str,
    id: &str,
    input: &EnvironmentInput,
) -> Result<Environment, AppError> {
    let mut errors = FieldErrors::default();
    let name = validate::name(&input.name, "name", 60).unwrap_or_else(|e| {
        errors.add("name", e);
        String::new()
    });
    check_color(&input.color, &mut errors);
    errors.into_result()?;
    crate::db::write_transaction(conn, |conn| {
        let before = get(conn, id)?;
        diesel::update(environments::table.find(id))
            .set((
                environments::name.eq(&name),
                environments::color.eq(&input.color),
                environments::require_confirmation.eq(input.require_confirmation),
                environments::updated_at.eq(now()),
            ))
            .execute(conn)?;
        let after = get(conn, id)?;
        audit::record(
            conn,
            actor,
            Change {
                action: "environment.updated",
                object_type: "environment",
                object_id: id,
                object_label: &after.name,
                flag_id: None,
                environment_id: Some(id),
                before: Some(
                    json!({"name": before.name, "color": before.color, "require_confirmation": before.require_confirmation}),
                ),
                after: Some(
                    json!({"name": after.name, "color": after.color, "require_confirmation": after.require_confirmation}),
                ),
            },
        )?;
        Ok(after)
    })
}

/// Moves an environment one place up (earlier) or down in the switcher.
pub fn move_by_one(conn: &mut DbConn, actor: &str, id: &str, up: bool) -> Result<(), AppError> {
    crate::db::write_transaction(conn, |conn| {
        let all = list(conn)?;
        let index = all
            .iter()
            .position(|e| e.id == id)
            .ok_or(AppError::NotFound)?;
        let other = if up {
            index.checked_sub(1)
        } else {
            Some(index + 1).filter(|i| *i < all.len())
        };
        let Some(other) = other else {
            return Ok(());
        };
        let mut order: Vec<&Environment> = all.iter().collect();
        order.swap(index, other);
        for (position, env) in order.iter().enumerate() {
            diesel::update(environments::table.find(&env.id))
                .set(environments::position.eq(position as i32))
                .execute(conn)?;
        }
        audit::record(
            conn,
            actor,
            Change {
                action: "environment.reordered",
                object_type: "environment",
                object_id: id,
                object_label: &all[index].name,
                flag_id: None,
                environment_id: Some(id),
                before: Some(json!({"position": index + 1})),
                after: Some(json!({"position": other + 1})),
            },
        )?;
        Ok(())
    })
}
