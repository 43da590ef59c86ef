//! Environments (Staging, Production, …): each flag has one rule in each,
//! and each has its client id and its secret API keys.

pub mod api_keys;

use diesel::prelude::*;
use serde_json::json;

use crate::audit::{Actor, Change};
use crate::changes::{changed, Changed};
use crate::db::schema::{environments, flags, rules};
use crate::db::{on_unique_violation, DbConn};
use crate::error::{Entity, FieldErrors, OrNotFound, Result};
use crate::evaluation::Mode;
use crate::ids::{ClientId, EnvironmentId, FlagId};
use crate::time::Timestamp;
use crate::validate::{self, Slug};

#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable, Insertable)]
#[diesel(table_name = environments)]
pub struct Environment {
    pub id: EnvironmentId,
    pub slug: Slug,
    pub name: String,
    pub position: i32,
    pub color: String,
    pub require_confirmation: bool,
    pub client_id: ClientId,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// Browser origins (`https://app.example.com`) allowed to call this
    /// environment with its keys, comma-separated.
    pub allowed_origins: String,
}

impl Environment {
    /// The allowed browser origins, one by one.
    pub fn origins(&self) -> impl Iterator<Item = &str> {
        self.allowed_origins.split(',').filter(|o| !o.is_empty())
    }

    /// Whether a browser on `origin` may call this environment.
    pub fn allows_origin(&self, origin: &str) -> bool {
        self.origins().any(|o| o == origin)
    }
}

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

impl Environment {
    /// The CSS class that gives this environment its colour everywhere.
    pub fn color_class(&self) -> &'static str {
        PALETTE
            .iter()
            .find(|(_, hex)| *hex == self.color)
            .map_or("env-slate", |(name, _)| match *name {
                "Teal" => "env-teal",
                "Blue" => "env-blue",
                "Violet" => "env-violet",
                "Amber" => "env-amber",
                "Red" => "env-red",
                "Green" => "env-green",
                _ => "env-slate",
            })
    }

    fn state(&self) -> serde_json::Value {
        json!({
            "name": self.name,
            "color": self.color,
            "require_confirmation": self.require_confirmation,
            "allowed_origins": self.allowed_origins,
        })
    }
}

/// Every environment, in switcher order.
pub fn list(conn: &mut DbConn) -> Result<Vec<Environment>> {
    Ok(environments::table
        .order((environments::position.asc(), environments::created_at.asc()))
        .select(Environment::as_select())
        .load(conn)?)
}

pub fn get(conn: &mut DbConn, id: &EnvironmentId) -> Result<Environment> {
    environments::table
        .find(id)
        .select(Environment::as_select())
        .first(conn)
        .or_not_found(Entity::Environment)
}

pub fn by_slug(conn: &mut DbConn, slug: &str) -> Result<Environment> {
    environments::table
        .filter(environments::slug.eq(slug))
        .select(Environment::as_select())
        .first(conn)
        .or_not_found(Entity::Environment)
}

pub fn by_client_id(conn: &mut DbConn, client_id: &str) -> Result<Option<Environment>> {
    Ok(environments::table
        .filter(environments::client_id.eq(client_id))
        .select(Environment::as_select())
        .first(conn)
        .optional()?)
}

/// Creates Staging and Production when there is no environment at all.
pub fn ensure_defaults(conn: &mut DbConn) -> Result<()> {
    crate::db::write_transaction(conn, |conn| {
        let count: i64 = environments::table.count().get_result(conn)?;
        if count > 0 {
            return Ok(());
        }
        insert(
            conn,
            &Actor::system("system"),
            "Staging",
            slug_of("staging"),
            "#0f766e",
            false,
        )?;
        insert(
            conn,
            &Actor::system("system"),
            "Production",
            slug_of("production"),
            "#b42318",
            true,
        )?;
        Ok(())
    })
}

fn slug_of(text: &str) -> Slug {
    validate::slug(text).unwrap_or_default()
}

/// What the environment forms ask for.
pub struct EnvironmentInput {
    pub name: String,
    pub slug: String,
    pub color: String,
    pub require_confirmation: bool,
    /// Browser origins, separated by commas, spaces or lines (`None`:
    /// unchanged).
    pub allowed_origins: Option<String>,
}

/// At most this many browser origins per environment.
pub const MAX_ORIGINS: usize = 20;

/// Browser origins as typed (separated by commas, spaces or lines), checked
/// and normalized: each is `http` or `https`, a host and optionally a port,
/// nothing else (no path, no credentials, no wildcard), as a browser sends
/// it in `Origin`. Answers them comma-separated.
pub fn parse_origins(text: &str) -> std::result::Result<String, String> {
    let mut origins: Vec<String> = Vec::new();
    for item in text
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|s| !s.is_empty())
    {
        let bad = || {
            format!(
                "{item:?} is not an origin: give the scheme, the host and the port if any, as in https://app.example.com or http://localhost:3000."
            )
        };
        if item.len() > 200 {
            return Err(bad());
        }
        let url = url::Url::parse(item).map_err(|_| bad())?;
        if !matches!(url.scheme(), "http" | "https")
            || url.host_str().is_none()
            || !url.username().is_empty()
            || url.password().is_some()
            || url.query().is_some()
            || url.fragment().is_some()
            || url.path() != "/"
        {
            return Err(bad());
        }
        let origin = url.origin().ascii_serialization();
        if !origins.contains(&origin) {
            origins.push(origin);
        }
    }
    if origins.len() > MAX_ORIGINS {
        return Err(format!("At most {MAX_ORIGINS} origins."));
    }
    Ok(origins.join(","))
}

fn check_color(color: &str, errors: &mut FieldErrors) {
    if !PALETTE.iter().any(|(_, hex)| *hex == color) {
        errors.add("color", "Choose one of the listed colours.");
    }
}

/// Adds an environment at the end of the switcher; every flag gets a rule
/// (None, disabled) in it, all in one transaction.
pub fn create(conn: &mut DbConn, actor: &Actor, input: &EnvironmentInput) -> Result<Environment> {
    let mut errors = FieldErrors::default();
    let name = errors.check("name", validate::name(&input.name, "name", 60));
    let slug = errors.check("slug", validate::slug(&input.slug));
    check_color(&input.color, &mut errors);
    errors.into_result()?;
    crate::db::write_transaction(conn, |conn| {
        insert(
            conn,
            actor,
            &name,
            slug.clone(),
            &input.color,
            input.require_confirmation,
        )
    })
}

fn insert(
    conn: &mut DbConn,
    actor: &Actor,
    name: &str,
    slug: Slug,
    color: &str,
    require_confirmation: bool,
) -> Result<Environment> {
    crate::db::lock_flags_and_environments(conn)?;
    let max: Option<i32> = environments::table
        .select(diesel::dsl::max(environments::position))
        .first(conn)?;
    let at = Timestamp::now();
    let env = Environment {
        id: EnvironmentId::generate(),
        slug,
        name: name.to_string(),
        position: max.map_or(0, |m| m + 1),
        color: color.to_string(),
        require_confirmation,
        client_id: ClientId::generate(),
        created_at: at,
        updated_at: at,
        allowed_origins: String::new(),
    };
    diesel::insert_into(environments::table)
        .values(&env)
        .execute(conn)
        .map_err(|e| {
            on_unique_violation(e, |_| {
                ("slug", "An environment with this slug already exists.")
            })
        })?;
    let flag_ids: Vec<FlagId> = flags::table.select(flags::id).load(conn)?;
    let new_rules: Vec<_> = flag_ids
        .into_iter()
        .map(|flag_id| {
            (
                rules::flag_id.eq(flag_id),
                rules::environment_id.eq(env.id.clone()),
                rules::mode.eq(Mode::None),
                rules::enabled.eq(false),
                rules::version.eq(1),
                rules::updated_at.eq(at),
            )
        })
        .collect();
    for chunk in new_rules.chunks(500) {
        crate::with_backend!(conn, |c| diesel::insert_into(rules::table)
            .values(chunk)
            .execute(c))?;
    }
    changed(conn, Changed::Environment(&env.id))?;
    Change::new("environment.created", "environment", &env.id, &env.name)
        .environment(&env.id)
        .after(json!({"name": env.name, "slug": env.slug, "require_confirmation": require_confirmation}))
        .record(conn, actor)?;
    Ok(env)
}

/// Renames an environment or changes its colour or confirmation; the slug stays.
pub fn update(
    conn: &mut DbConn,
    actor: &Actor,
    id: &EnvironmentId,
    input: &EnvironmentInput,
) -> Result<Environment> {
    let mut errors = FieldErrors::default();
    let name = errors.check("name", validate::name(&input.name, "name", 60));
    check_color(&input.color, &mut errors);
    let origins: Option<String> = input
        .allowed_origins
        .as_deref()
        .map(|text| errors.check("allowed_origins", parse_origins(text)));
    errors.into_result()?;
    crate::db::write_transaction(conn, |conn| {
        let before = get(conn, id)?;
        let origins = origins
            .clone()
            .unwrap_or_else(|| before.allowed_origins.clone());
        diesel::update(environments::table.find(id))
            .set((
                environments::name.eq(&name),
                environments::color.eq(&input.color),
                environments::require_confirmation.eq(input.require_confirmation),
                environments::allowed_origins.eq(&origins),
                environments::updated_at.eq(Timestamp::now()),
            ))
            .execute(conn)?;
        let after = get(conn, id)?;
        changed(conn, Changed::Environment(id))?;
        Change::new("environment.updated", "environment", id, &after.name)
            .environment(id)
            .before(before.state())
            .after(after.state())
            .record(conn, actor)?;
        Ok(after)
    })
}

/// Moves an environment one place up (earlier) or down in the switcher.
pub fn move_by_one(conn: &mut DbConn, actor: &Actor, id: &EnvironmentId, up: bool) -> Result<()> {
    crate::db::write_transaction(conn, |conn| {
        let all = list(conn)?;
        let index = all
            .iter()
            .position(|e| &e.id == id)
            .or_not_found(Entity::Environment)?;
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
        Change::new("environment.reordered", "environment", id, &all[index].name)
            .environment(id)
            .before(json!({"position": index + 1}))
            .after(json!({"position": other + 1}))
            .record(conn, actor)?;
        Ok(())
    })
}
