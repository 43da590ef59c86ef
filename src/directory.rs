//! Organizations, users and memberships: who a flag can be given to.

use std::collections::HashMap;

use diesel::prelude::*;
use serde_json::json;

use crate::audit::{self, Change};
use crate::db::schema::{memberships, organizations, targets, users};
use crate::db::{contains_pattern, is_unique_violation, lower, Db, DbConn};
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

/// Organizations whose name, id or external id contains `q` (all when `q`
/// is blank), unordered, for lists to sort and page.
pub fn orgs_matching<'a>(q: &str) -> organizations::BoxedQuery<'a, Db> {
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
}

/// Users whose email, name, id or external id contains `q` (all when `q` is
/// blank), unordered, for lists to sort and page.
pub fn users_matching<'a>(q: &str) -> users::BoxedQuery<'a, Db> {
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
}

/// Organizations whose name, id or external id contains `q`, by name, with member counts.
pub fn list_orgs(
    conn: &mut DbConn,
    q: &str,
    page: i64,
    per_page: i64,
) -> QueryResult<(Vec<(Organization, i64)>, i64)> {
    let build = || orgs_matching(q);
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
    crate::db::write_transaction(conn, |conn| {
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
    crate::db::write_transaction(conn, |conn| {
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
    crate::db::write_transaction(conn, |conn| {
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
    let build = || users_matching(q);
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
    crate::db::write_transaction(conn, |conn| {
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
    crate::db::write_transaction(conn, |conn| {
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
    crate::db::write_transaction(conn, |conn| {
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
    crate::db::write_transaction(conn, |conn| {
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
        let already = || {
            AppError::Invalid(FieldErrors::conflict(
                "user",
                format!("{} is already a member of {}.", user.email, org.name),
            ))
        };
        if exists > 0 {
            return Err(already());
        }
        diesel::insert_into(memberships::table)
            .values(&Membership {
                user_id: user.id.clone(),
                organization_id: org.id.clone(),
                created_at: now(),
            })
            .execute(conn)
            .map_err(|e| {
                if is_unique_violation(&e) {
                    already()
                } else {
                    e.into()
                }
            })?;
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
    crate::db::write_transaction(conn, |conn| {
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

/// The membership of a user in an organization, if there is one.
pub fn membership(
    conn: &mut DbConn,
    org_id: &str,
    user_id: &str,
) -> QueryResult<Option<Membership>> {
    memberships::table
        .filter(memberships::organization_id.eq(org_id))
        .filter(memberships::user_id.eq(user_id))
        .select(Membership::as_select())
        .first(conn)
        .optional()
}

/// The most objects one bulk request may create or update.
pub const BULK_LIMIT: usize = 1_000;

/// One user of a bulk upsert, matched by `external_id`. An absent field
/// keeps its current value when the user exists; a new user needs an email.
#[derive(Debug, Clone, Default)]
pub struct BulkUser {
    pub external_id: String,
    pub email: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
}

/// One organization of a bulk upsert, matched by `external_id`. A new
/// organization needs a name.
#[derive(Debug, Clone, Default)]
pub struct BulkOrganization {
    pub external_id: String,
    pub name: Option<String>,
}

/// What a bulk upsert did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BulkCounts {
    pub created: usize,
    pub updated: usize,
    pub unchanged: usize,
}

/// The field of the `i`th object of a bulk request, as the API names it.
fn bulk_field(i: usize, field: &str) -> String {
    format!("data[{i}].{field}")
}

/// Renames the fields of a validation error to those of the `i`th object.
fn at_index(err: AppError, i: usize) -> AppError {
    match err {
        AppError::Invalid(FieldErrors(fields, conflict)) => AppError::Invalid(FieldErrors(
            fields
                .into_iter()
                .map(|(field, message)| (bulk_field(i, &field), message))
                .collect(),
            conflict,
        )),
        other => other,
    }
}

/// Runs a bulk write, and once more when it conflicts: a concurrent request
/// may have created one of the same external ids after this one looked, and
/// the second attempt then updates it instead. A real conflict (an email
/// another user has) fails again and is reported.
fn retry_on_conflict<T>(mut write: impl FnMut() -> Result<T, AppError>) -> Result<T, AppError> {
    match write() {
        Err(AppError::Invalid(errors)) if errors.is_conflict() => write(),
        other => other,
    }
}

fn check_bulk_size(n: usize) -> Result<(), AppError> {
    if n > BULK_LIMIT {
        return Err(AppError::Invalid(FieldErrors::single(
            "data",
            format!("A bulk request takes at most {BULK_LIMIT} objects; split it into several."),
        )));
    }
    Ok(())
}

/// The external id of the `i`th object: required, valid, and not repeated.
fn bulk_external_id(
    errors: &mut FieldErrors,
    seen: &mut HashMap<String, usize>,
    i: usize,
    raw: &str,
) -> String {
    let field = bulk_field(i, "external_id");
    match validate::external_id(raw) {
        Err(e) => errors.add(&field, e),
        Ok(None) => errors.add(
            &field,
            "Give each object an external_id: bulk requests match objects by it.",
        ),
        Ok(Some(id)) => {
            if let Some(first) = seen.get(&id) {
                errors.add(
                    &field,
                    format!("The external_id {id:?} appears twice in this request (also data[{first}])."),
                );
            } else {
                seen.insert(id.clone(), i);
            }
            return id;
        }
    }
    String::new()
}

/// Loads the rows of `table` whose external id is one of `ids`, by external id.
macro_rules! by_external_ids {
    ($conn:expr, $table:ident, $model:ty, $ids:expr) => {{
        let mut found: HashMap<String, $model> = HashMap::new();
        for chunk in $ids.chunks(500) {
            let rows: Vec<$model> = $table::table
                .filter($table::external_id.eq_any(chunk))
                .select(<$model>::as_select())
                .load($conn)?;
            for row in rows {
                if let Some(ext) = row.external_id.clone() {
                    found.insert(ext, row);
                }
            }
        }
        found
    }};
}

/// A user of a bulk request with its present fields checked.
struct ValidBulkUser {
    external_id: String,
    email: Option<String>,
    first_name: Option<String>,
    last_name: Option<String>,
}

/// Creates or updates up to [`BULK_LIMIT`] users by external id in one
/// transaction: all of them or, when any is invalid or conflicts with
/// another user, none. Users whose fields already match are left alone
/// (not counted as updated, not audited), so a repeated request changes
/// nothing. Each created or updated user is audited like a single change.
pub fn bulk_upsert_users(
    conn: &mut DbConn,
    actor: &str,
    items: &[BulkUser],
) -> Result<BulkCounts, AppError> {
    check_bulk_size(items.len())?;
    let mut errors = FieldErrors::default();
    let mut seen_ids = HashMap::new();
    let mut seen_emails: HashMap<String, usize> = HashMap::new();
    let mut valid = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let external_id = bulk_external_id(&mut errors, &mut seen_ids, i, &item.external_id);
        let email = match item.email.as_deref().map(validate::email) {
            None => None,
            Some(Err(e)) => {
                errors.add(&bulk_field(i, "email"), e);
                None
            }
            Some(Ok(email)) => {
                if let Some(first) = seen_emails.get(&email) {
                    errors.add(
                        &bulk_field(i, "email"),
                        format!("Two users of this request have this email (also data[{first}])."),
                    );
                } else {
                    seen_emails.insert(email.clone(), i);
                }
                Some(email)
            }
        };
        let mut name = |field: &str, what: &str, value: &Option<String>| {
            value.as_deref().and_then(|v| {
                validate::text(v, what, 100)
                    .map_err(|e| errors.add(&bulk_field(i, field), e))
                    .ok()
            })
        };
        let first_name = name("first_name", "first name", &item.first_name);
        let last_name = name("last_name", "last name", &item.last_name);
        valid.push(ValidBulkUser {
            external_id,
            email,
            first_name,
            last_name,
        });
    }
    errors.into_result()?;
    retry_on_conflict(|| upsert_users(conn, actor, &valid))
}

fn upsert_users(
    conn: &mut DbConn,
    actor: &str,
    valid: &[ValidBulkUser],
) -> Result<BulkCounts, AppError> {
    crate::db::write_transaction(conn, |conn| {
        let ids: Vec<String> = valid.iter().map(|v| v.external_id.clone()).collect();
        let existing = by_external_ids!(conn, users, User, ids);
        let mut counts = BulkCounts::default();
        let mut changed: Vec<(Option<User>, User)> = Vec::new();
        let at = now();
        for (i, v) in valid.iter().enumerate() {
            let unique = |e| at_index(unique_error(e, user_unique_field), i);
            match existing.get(&v.external_id) {
                None => {
                    let Some(email) = v.email.clone() else {
                        return Err(AppError::Invalid(FieldErrors::single(
                            &bulk_field(i, "email"),
                            "Give an email: there is no user with this external_id yet, and a new user needs one.",
                        )));
                    };
                    let user = User {
                        id: new_id("user"),
                        email,
                        first_name: v.first_name.clone().unwrap_or_default(),
                        last_name: v.last_name.clone().unwrap_or_default(),
                        external_id: Some(v.external_id.clone()),
                        created_at: at.clone(),
                        updated_at: at.clone(),
                    };
                    diesel::insert_into(users::table)
                        .values(&user)
                        .execute(conn)
                        .map_err(unique)?;
                    counts.created += 1;
                    changed.push((None, user));
                }
                Some(current) => {
                    let mut user = current.clone();
                    user.email = v.email.clone().unwrap_or(user.email);
                    user.first_name = v.first_name.clone().unwrap_or(user.first_name);
                    user.last_name = v.last_name.clone().unwrap_or(user.last_name);
                    if user_state(&user) == user_state(current) {
                        counts.unchanged += 1;
                        continue;
                    }
                    user.updated_at = at.clone();
                    diesel::update(users::table.find(&user.id))
                        .set((
                            users::email.eq(&user.email),
                            users::first_name.eq(&user.first_name),
                            users::last_name.eq(&user.last_name),
                            users::updated_at.eq(&user.updated_at),
                        ))
                        .execute(conn)
                        .map_err(unique)?;
                    counts.updated += 1;
                    changed.push((Some(current.clone()), user));
                }
            }
        }
        audit::record_many(
            conn,
            actor,
            changed
                .iter()
                .map(|(before, after)| Change {
                    action: if before.is_some() {
                        "user.updated"
                    } else {
                        "user.created"
                    },
                    object_type: "user",
                    object_id: &after.id,
                    object_label: &after.email,
                    flag_id: None,
                    environment_id: None,
                    before: before.as_ref().map(user_state),
                    after: Some(user_state(after)),
                })
                .collect(),
        )?;
        Ok(counts)
    })
}

/// Creates or updates up to [`BULK_LIMIT`] organizations by external id in
/// one transaction, all or nothing, idempotently, like [`bulk_upsert_users`].
pub fn bulk_upsert_orgs(
    conn: &mut DbConn,
    actor: &str,
    items: &[BulkOrganization],
) -> Result<BulkCounts, AppError> {
    check_bulk_size(items.len())?;
    let mut errors = FieldErrors::default();
    let mut seen_ids = HashMap::new();
    let mut valid = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let external_id = bulk_external_id(&mut errors, &mut seen_ids, i, &item.external_id);
        let name = item.name.as_deref().and_then(|n| {
            validate::name(n, "name", 100)
                .map_err(|e| errors.add(&bulk_field(i, "name"), e))
                .ok()
        });
        valid.push((external_id, name));
    }
    errors.into_result()?;
    retry_on_conflict(|| upsert_orgs(conn, actor, &valid))
}

fn upsert_orgs(
    conn: &mut DbConn,
    actor: &str,
    valid: &[(String, Option<String>)],
) -> Result<BulkCounts, AppError> {
    crate::db::write_transaction(conn, |conn| {
        let ids: Vec<String> = valid.iter().map(|(ext, _)| ext.clone()).collect();
        let existing = by_external_ids!(conn, organizations, Organization, ids);
        let mut counts = BulkCounts::default();
        let mut changed: Vec<(Option<Organization>, Organization)> = Vec::new();
        let at = now();
        for (i, (external_id, name)) in valid.iter().enumerate() {
            let unique = |e| at_index(unique_error(e, |_| ("external_id", EXTERNAL_ID_TAKEN)), i);
            match existing.get(external_id) {
                None => {
                    let Some(name) = name.clone() else {
                        return Err(AppError::Invalid(FieldErrors::single(
                            &bulk_field(i, "name"),
                            "Give a name: there is no organization with this external_id yet, and a new organization needs one.",
                        )));
                    };
                    let org = Organization {
                        id: new_id("org"),
                        name,
                        external_id: Some(external_id.clone()),
                        created_at: at.clone(),
                        updated_at: at.clone(),
                    };
                    diesel::insert_into(organizations::table)
                        .values(&org)
                        .execute(conn)
                        .map_err(unique)?;
                    counts.created += 1;
                    changed.push((None, org));
                }
                Some(current) => {
                    let mut org = current.clone();
                    org.name = name.clone().unwrap_or(org.name);
                    if org.name == current.name {
                        counts.unchanged += 1;
                        continue;
                    }
                    org.updated_at = at.clone();
                    diesel::update(organizations::table.find(&org.id))
                        .set((
                            organizations::name.eq(&org.name),
                            organizations::updated_at.eq(&org.updated_at),
                        ))
                        .execute(conn)
                        .map_err(unique)?;
                    counts.updated += 1;
                    changed.push((Some(current.clone()), org));
                }
            }
        }
        audit::record_many(
            conn,
            actor,
            changed
                .iter()
                .map(|(before, after)| Change {
                    action: if before.is_some() {
                        "organization.updated"
                    } else {
                        "organization.created"
                    },
                    object_type: "organization",
                    object_id: &after.id,
                    object_label: &after.name,
                    flag_id: None,
                    environment_id: None,
                    before: before.as_ref().map(org_state),
                    after: Some(org_state(after)),
                })
                .collect(),
        )?;
        Ok(counts)
    })
}
