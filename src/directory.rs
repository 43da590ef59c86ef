//! Organizations, users and memberships: who a flag can be given to.

use diesel::prelude::*;
use serde_json::json;

use crate::audit::{self, Change};
use crate::db::schema::{memberships, organizations, targets, users};
use crate::db::{contains_pattern, is_unique_violation, lower, DbConn};
use crate::error::{AppError, FieldErrors};
use crate::ids::{new_id, now};
use crate::models::{Membership, Organization, User};
use crate::validate;

pub struct OrganizationInput {
    pub name: String,
    pub external_id: String,
}

pub struct UserInput {
    pub email: String,
    pub first_name: String,
    pub last_name: String,
    pub external_id: String,
}

fn take<T: Default>(errors: &mut FieldErrors, field: &str, result: Result<T, String>) -> T {
    result.unwrap_or_else(|e| {
        errors.add(field, e);
        T::default()
    })
}

/// Maps a unique violation on insert or update to the field that must change.
fn unique_error(
    err: diesel::result::Error,
    field_of: impl Fn(&str) -> (&'static str, &'static str),
) -> AppError {
    if is_unique_violation(&err) {
        let detail = match &err {
            diesel::result::Error::DatabaseError(_, info) => info.message().to_string(),
            _ => String::new(),
        };
        let (field, message) = field_of(&detail);
        AppError::Invalid(FieldErrors::conflict(field, message))
    } else {
        err.into()
    }
}

fn org_state(o: &Organization) -> serde_json::Value {
    json!({"name": o.name, "external_id": o.external_id})
}

fn user_state(u: &User) -> serde_json::Value {
    json!({"email": u.email, "first_name": u.first_name, "last_name": u.last_name, "external_id": u.external_id})
}

const EXTERNAL_ID_TAKEN: &str = "Another object already has this external id.";

pub fn get_org(conn: &mut DbConn, id: &str) -> QueryResult<Organization> {
    organizations::table
        .find(id)
        .select(Organization::as_select())
        .first(conn)
}

pub fn get_user(conn: &mut DbConn, id: &str) -> QueryResult<User> {
    users::table.find(id).select(User::as_select()).first(conn)
}

/// Organizations whose name, id or external id contains `q`, by name, with member counts.
pub fn list_orgs(
    conn: &mut DbConn,
    q: &str,
    page: i64,
    per_page: i64,
) -> QueryResult<(Vec<(Organization, i64)>, i64)> {
    let build = || {
        let mut query = organizations::table.into_boxed();
        if !q.trim().is_empty() {
            let p = contains_pattern(q.trim());
            query = query.filter(
                lower(organizations::name)
                    .like(p.clone())
                    .escape('\\')
                    .or(lower(organizations::external_id.assume_not_null())
                        .like(p.clone())
                        .escape('\\'))
                    .or(lower(organizations::id).like(p).escape('\\')),
            );
        }
        query
    };
    let total = build().count().get_result(conn)?;
    let orgs: Vec<Organization> = build()
        .order((organizations::name.asc(), organizations::id.asc()))
        .limit(per_page)
        .offset((page.max(1) - 1) * per_page)
        .select(Organization::as_select())
        .load(conn)?;
    let ids: Vec<&str> = orgs.iter().map(|o| o.id.as_str()).collect();
    let counts: Vec<(String, i64)> = memberships::table
        .filter(memberships::organization_id.eq_any(&ids))
        .group_by(memberships::organization_id)
        .select((memberships::organization_id, diesel::dsl::count_star()))
        .load(conn)?;
    let rows = orgs
        .into_iter()
        .map(|o| {
            let n = counts
                .iter()
                .find(|(id, _)| *id == o.id)
                .map_or(0, |(_, n)| *n);
            (o, n)
        })
        .collect();
    Ok((rows, total))
}

fn valid_org(input: &OrganizationInput) -> Result<(String, Option<String>), AppError> {
    let mut errors = FieldErrors::default();
    let name = take(
        &mut errors,
        "name",
        validate::name(&input.name, "name", 100),
    );
    let external_id = take(
        &mut errors,
        "external_id",
        validate::external_id(&input.external_id),
    );
    errors.into_result()?;
    Ok((name, external_id))
}

pub fn create_org(
    conn: &mut DbConn,
    actor: &str,
    input: &OrganizationInput,
) -> Result<Organization, AppError> {
    let (name, external_id) = valid_org(input)?;
    conn.transaction(|conn| {
        let at = now();
        let org = Organization {
            id: new_id("org"),
            name,
            external_id,
            created_at: at.clone(),
            updated_at: at,
        };
        diesel::insert_into(organizations::table)
            .values(&org)
            .execute(conn)
            .map_err(|e| unique_error(e, |_| ("external_id", EXTERNAL_ID_TAKEN)))?;
        audit::record(
            conn,
            actor,
            Change {
                action: "organization.created",
                object_type: "organization",
                object_id: &org.id,
                object_label: &org.name,
                flag_id: None,
                environment_id: None,
                before: None,
                after: Some(org_state(&org)),
            },
        )?;
        Ok(org)
    })
}

pub fn update_org(
    conn: &mut DbConn,
    actor: &str,
    id: &str,
    input: &OrganizationInput,
) -> Result<Organization, AppError> {
    let (name, external_id) = valid_org(input)?;
    conn.transaction(|conn| {
        let before = get_org(conn, id)?;
        diesel::update(organizations::table.find(id))
            .set((
                organizations::name.eq(&name),
                organizations::external_id.eq(&external_id),
                organizations::updated_at.eq(now()),
            ))
            .execute(conn)
            .map_err(|e| unique_error(e, |_| ("external_id", EXTERNAL_ID_TAKEN)))?;
        let after = get_org(conn, id)?;
        audit::record(
            conn,
            actor,
            Change {
                action: "organization.updated",
                object_type: "organization",
                object_id: id,
                object_label: &after.name,
                flag_id: None,
                environment_id: None,
                before: Some(org_state(&before)),
                after: Some(org_state(&after)),
            },
        )?;
        Ok(after)
    })
}

/// Deletes an organization with its memberships and every flag target naming it.
pub fn delete_org(conn: &mut DbConn, actor: &str, id: &str) -> Result<(), AppError> {
    conn.transaction(|conn| {
        let before = get_org(conn, id)?;
        diesel::delete(targets::table.filter(targets::target_id.eq(id))).execute(conn)?;
        diesel::delete(memberships::table.filter(memberships::organization_id.eq(id)))
            .execute(conn)?;
        diesel::delete(organizations::table.find(id)).execute(conn)?;
        audit::record(
            conn,
            actor,
            Change {
                action: "organization.deleted",
                object_type: "organization",
                object_id: id,
                object_label: &before.name,
                flag_id: None,
                environment_id: None,
                before: Some(org_state(&before)),
                after: None,
            },
        )?;
        Ok(())
    })
}

/// Users whose email, name, id or external id contains `q`, by email.
pub fn list_users(
    conn: &mut DbConn,
    q: &str,
    page: i64,
    per_page: i64,
) -> QueryResult<(Vec<User>, i64)> {
    let build = || {
        let mut query = users::table.into_boxed();
        if !q.trim().is_empty() {
            let p = contains_pattern(q.trim());
            query = query.filter(
                lower(users::email)
                    .like(p.clone())
                    .escape('\\')
                    .or(lower(users::first_name).like(p.clone()).escape('\\'))
                    .or(lower(users::last_name).like(p.clone()).escape('\\'))
                    .or(lower(users::external_id.assume_not_null())
                        .like(p.clone())
                        .escape('\\'))
                    .or(lower(users::id).like(p).escape('\\')),
            );
        }
        query
    };
    let total = build().count().get_result(conn)?;
    let rows = build()
        .order((users::email.asc(), users::id.asc()))
        .limit(per_page)
        .offset((page.max(1) - 1) * per_page)
        .select(User::as_select())
        .load(conn)?;
    Ok((rows, total))
}

struct ValidUser {
    email: String,
    first_name: String,
    last_name: String,
    external_id: Option<String>,
}

fn valid_user(input: &UserInput) -> Result<ValidUser, AppError> {
    let mut errors = FieldErrors::default();
    let email = take(&mut errors, "email", validate::email(&input.email));
    let first_name = take(
        &mut errors,
        "first_name",
        validate::text(&input.first_name, "first name", 100),
    );
    let last_name = take(
        &mut errors,
        "last_name",
        validate::text(&input.last_name, "last name", 100),
    );
    let external_id = take(
        &mut errors,
        "external_id",
        validate::external_id(&input.external_id),
    );
    errors.into_result()?;
    Ok(ValidUser {
        email,
        first_name,
        last_name,
        external_id,
    })
}

fn user_unique_field(detail: &str) -> (&'static str, &'static str) {
    if detail.contains("email") {
        ("email", "Another user already has this email address.")
    } else {
        ("external_id", EXTERNAL_ID_TAKEN)
    }
}

pub fn create_user(conn: &mut DbConn, actor: &str, input: &UserInput) -> Result<User, AppError> {
    let v = valid_user(input)?;
    conn.transaction(|conn| {
        let at = now();
        let user = User {
            id: new_id("user"),
            email: v.email,
            first_name: v.first_name,
            last_name: v.last_name,
            external_id: v.external_id,
            created_at: at.clone(),
            updated_at: at,
        };
        diesel::insert_into(users::table)
            .values(&user)
            .execute(conn)
            .map_err(|e| unique_error(e, user_unique_field))?;
        audit::record(
            conn,
            actor,
            Change {
                action: "user.created",
                object_type: "user",
                object_id: &user.id,
                object_label: &user.email,
                flag_id: None,
                environment_id: None,
                before: None,
                after: Some(user_state(&user)),
            },
        )?;
        Ok(user)
    })
}

pub fn update_user(
    conn: &mut DbConn,
    actor: &str,
    id: &str,
    input: &UserInput,
) -> Result<User, AppError> {
    let v = valid_user(input)?;
    conn.transaction(|conn| {
        let before = get_user(conn, id)?;
        diesel::update(users::table.find(id))
            .set((
                users::email.eq(&v.email),
                users::first_name.eq(&v.first_name),
                users::last_name.eq(&v.last_name),
                users::external_id.eq(&v.external_id),
                users::updated_at.eq(now()),
            ))
            .execute(conn)
            .map_err(|e| unique_error(e, user_unique_field))?;
        let after = get_user(conn, id)?;
        audit::record(
            conn,
            actor,
            Change {
                action: "user.updated",
                object_type: "user",
                object_id: id,
                object_label: &after.email,
                flag_id: None,
                environment_id: None,
                before: Some(user_state(&before)),
                after: Some(user_state(&after)),
            },
        )?;
        Ok(after)
    })
}

/// Deletes a user with their memberships and every flag target naming them.
pub fn delete_user(conn: &mut DbConn, actor: &str, id: &str) -> Result<(), AppError> {
    conn.transaction(|conn| {
        let before = get_user(conn, id)?;
        diesel::delete(targets::table.filter(targets::target_id.eq(id))).execute(conn)?;
        diesel::delete(memberships::table.filter(memberships::user_id.eq(id))).execute(conn)?;
        diesel::delete(users::table.find(id)).execute(conn)?;
        audit::record(
            conn,
            actor,
            Change {
                action: "user.deleted",
                object_type: "user",
                object_id: id,
                object_label: &before.email,
                flag_id: None,
                environment_id: None,
                before: Some(user_state(&before)),
                after: None,
            },
        )?;
        Ok(())
    })
}

pub fn members_of(conn: &mut DbConn, org_id: &str) -> QueryResult<Vec<User>> {
    memberships::table
        .inner_join(users::table)
        .filter(memberships::organization_id.eq(org_id))
        .order(users::email.asc())
        .select(User::as_select())
        .load(conn)
}

pub fn organizations_of(conn: &mut DbConn, user_id: &str) -> QueryResult<Vec<Organization>> {
    memberships::table
        .inner_join(organizations::table)
        .filter(memberships::user_id.eq(user_id))
        .order(organizations::name.asc())
        .select(Organization::as_select())
        .load(conn)
}

/// Finds a user by id, external id or email: how people name users in forms.
pub fn find_user(conn: &mut DbConn, key: &str) -> QueryResult<Option<User>> {
    let key = key.trim();
    users::table
        .filter(
            users::id
                .eq(key)
                .or(users::external_id.eq(key))
                .or(users::email.eq(key.to_lowercase())),
        )
        .select(User::as_select())
        .first(conn)
        .optional()
}

/// Finds an organization by id or external id.
pub fn find_org(conn: &mut DbConn, key: &str) -> QueryResult<Option<Organization>> {
    let key = key.trim();
    organizations::table
        .filter(
            organizations::id
                .eq(key)
                .or(organizations::external_id.eq(key)),
        )
        .select(Organization::as_select())
        .first(conn)
        .optional()
}

pub fn add_membership(
    conn: &mut DbConn,
    actor: &str,
    org_id: &str,
    user_key: &str,
) -> Result<User, AppError> {
    conn.transaction(|conn| {
        let org = get_org(conn, org_id)?;
        let user = find_user(conn, user_key)?.ok_or_else(|| {
            AppError::Invalid(FieldErrors::single(
                "user",
                "No user has this email, id or external id.",
            ))
        })?;
        let exists: i64 = memberships::table
            .filter(memberships::user_id.eq(&user.id))
            .filter(memberships::organization_id.eq(&org.id))
            .count()
            .get_result(conn)?;
        if exists > 0 {
            return Err(AppError::Invalid(FieldErrors::single(
                "user",
                format!("{} is already a member of {}.", user.email, org.name),
            )));
        }
        diesel::insert_into(memberships::table)
            .values(&Membership {
                user_id: user.id.clone(),
                organization_id: org.id.clone(),
                created_at: now(),
            })
            .execute(conn)?;
        audit::record(
            conn,
            actor,
            Change {
                action: "membership.added",
                object_type: "organization",
                object_id: &org.id,
                object_label: &org.name,
                flag_id: None,
                environment_id: None,
                before: None,
                after: Some(json!({"member": user.email})),
            },
        )?;
        Ok(user)
    })
}

pub fn remove_membership(
    conn: &mut DbConn,
    actor: &str,
    org_id: &str,
    user_id: &str,
) -> Result<(), AppError> {
    conn.transaction(|conn| {
        let org = get_org(conn, org_id)?;
        let user = get_user(conn, user_id)?;
        let removed = diesel::delete(
            memberships::table
                .filter(memberships::user_id.eq(user_id))
                .filter(memberships::organization_id.eq(org_id)),
        )
        .execute(conn)?;
        if removed == 0 {
            return Err(AppError::NotFound);
        }
        audit::record(
            conn,
            actor,
            Change {
                action: "membership.removed",
                object_type: "organization",
                object_id: &org.id,
                object_label: &org.name,
                flag_id: None,
                environment_id: None,
                before: Some(json!({"member": user.email})),
                after: None,
            },
        )?;
        Ok(())
    })
}

/// Finds a user by Flagpole id or external id: how applications name users.
pub fn find_user_by_id_or_external(conn: &mut DbConn, key: &str) -> QueryResult<Option<User>> {
    users::table
        .filter(users::id.eq(key).or(users::external_id.eq(key)))
        .select(User::as_select())
        .first(conn)
        .optional()
}
