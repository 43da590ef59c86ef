//! Users: created, changed and deleted, listed and searched.

use diesel::prelude::*;
use serde_json::json;

use super::{user_unique_field, User};
use crate::audit::{Actor, Change};
use crate::changes::{changed, Changed};
use crate::db::schema::{memberships, users};
use crate::db::{contains_pattern, lower, on_unique_violation, Db, DbConn};
use crate::error::{Entity, FieldErrors, OrNotFound, Result};
use crate::ids::UserId;
use crate::paging::{Cursor, Page};
use crate::time::Timestamp;
use crate::validate::{self, Email};

/// What creating a user takes.
#[derive(Debug, Clone, Default)]
pub struct NewUser {
    pub email: String,
    pub first_name: String,
    pub last_name: String,
    pub external_id: String,
}

/// The fields to change; the others keep their value. An empty
/// `external_id` removes it.
#[derive(Debug, Clone, Default)]
pub struct UserPatch {
    pub email: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub external_id: Option<String>,
}

pub(crate) fn state(u: &User) -> serde_json::Value {
    json!({"email": u.email, "first_name": u.first_name, "last_name": u.last_name, "external_id": u.external_id})
}

pub(crate) fn check_email(errors: &mut FieldErrors, field: &str, email: &str) -> Email {
    errors.check(field, validate::email(email))
}

pub(crate) fn check_person_name(
    errors: &mut FieldErrors,
    field: &str,
    what: &str,
    name: &str,
) -> String {
    errors.check(field, validate::line(name, what, 100))
}

pub fn get(conn: &mut DbConn, id: &UserId) -> Result<User> {
    users::table
        .find(id)
        .select(User::as_select())
        .first(conn)
        .or_not_found(Entity::User)
}

/// The user a caller named by Flagpole id or external id.
pub fn named(conn: &mut DbConn, key: &str) -> Result<User> {
    super::find_user(conn, key)?.or_not_found(Entity::User)
}

pub fn create(conn: &mut DbConn, actor: &Actor, input: &NewUser) -> Result<User> {
    let mut errors = FieldErrors::default();
    let email = check_email(&mut errors, "email", &input.email);
    let first_name = check_person_name(&mut errors, "first_name", "first name", &input.first_name);
    let last_name = check_person_name(&mut errors, "last_name", "last name", &input.last_name);
    let external_id = errors.check("external_id", validate::external_id(&input.external_id));
    errors.into_result()?;
    crate::db::write_transaction(conn, |conn| {
        let at = Timestamp::now();
        let user = User {
            id: UserId::generate(),
            email: email.clone(),
            first_name: first_name.clone(),
            last_name: last_name.clone(),
            external_id: external_id.clone(),
            created_at: at,
            updated_at: at,
        };
        insert(conn, &user)?;
        Change::new("user.created", "user", &user.id, user.email.as_str())
            .after(state(&user))
            .record(conn, actor)?;
        Ok(user)
    })
}

pub(crate) fn insert(conn: &mut DbConn, user: &User) -> Result<()> {
    // On the connection itself, not through the multi-backend layer: its
    // statement is then prepared once and cached, which a bulk sync of a
    // thousand rows a request feels.
    crate::with_backend!(conn, |c| diesel::insert_into(users::table)
        .values(user)
        .execute(c))
    .map_err(|e| on_unique_violation(e, user_unique_field))?;
    Ok(())
}

/// Changes a user; the current values are read and merged inside the
/// write, so two changes of different fields made at once both last.
pub fn update(conn: &mut DbConn, actor: &Actor, id: &UserId, patch: &UserPatch) -> Result<User> {
    let mut errors = FieldErrors::default();
    let email = patch
        .email
        .as_deref()
        .map(|e| check_email(&mut errors, "email", e));
    let first_name = patch
        .first_name
        .as_deref()
        .map(|n| check_person_name(&mut errors, "first_name", "first name", n));
    let last_name = patch
        .last_name
        .as_deref()
        .map(|n| check_person_name(&mut errors, "last_name", "last name", n));
    let external_id = patch
        .external_id
        .as_deref()
        .map(|e| errors.check("external_id", validate::external_id(e)));
    errors.into_result()?;
    crate::db::write_transaction(conn, |conn| {
        // Lock the row before reading it, so a concurrent change of another
        // field waits and is merged, not overwritten.
        diesel::update(users::table.find(id))
            .set(users::updated_at.eq(users::updated_at))
            .execute(conn)?;
        let before = get(conn, id)?;
        let after = User {
            email: email.clone().unwrap_or_else(|| before.email.clone()),
            first_name: first_name
                .clone()
                .unwrap_or_else(|| before.first_name.clone()),
            last_name: last_name
                .clone()
                .unwrap_or_else(|| before.last_name.clone()),
            external_id: external_id
                .clone()
                .unwrap_or_else(|| before.external_id.clone()),
            updated_at: Timestamp::now(),
            ..before.clone()
        };
        if state(&after) == state(&before) {
            return Ok(before);
        }
        diesel::update(users::table.find(id))
            .set((
                users::email.eq(&after.email),
                users::first_name.eq(&after.first_name),
                users::last_name.eq(&after.last_name),
                users::external_id.eq(&after.external_id),
                users::updated_at.eq(after.updated_at),
            ))
            .execute(conn)
            .map_err(|e| on_unique_violation(e, user_unique_field))?;
        if after.external_id != before.external_id {
            changed(conn, Changed::Subject(id.as_str()))?;
        }
        Change::new("user.updated", "user", id, after.email.as_str())
            .before(state(&before))
            .after(state(&after))
            .record(conn, actor)?;
        Ok(after)
    })
}

/// Deletes a user with their memberships and every flag target naming them.
pub fn delete(conn: &mut DbConn, actor: &Actor, id: &UserId) -> Result<()> {
    crate::db::write_transaction(conn, |conn| {
        let before = get(conn, id)?;
        crate::flags::targets::forget_subject(conn, id.as_str())?;
        diesel::delete(memberships::table.filter(memberships::user_id.eq(id))).execute(conn)?;
        diesel::delete(users::table.find(id)).execute(conn)?;
        changed(conn, Changed::Subject(id.as_str()))?;
        Change::new("user.deleted", "user", id, before.email.as_str())
            .before(state(&before))
            .record(conn, actor)?;
        Ok(())
    })
}

/// Users whose email, name, or external id contains `q`, or whose id is `q` (all when `q` is
/// blank), unordered, for lists to sort and page.
fn matching<'a>(q: &str) -> users::BoxedQuery<'a, Db> {
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
                .or(lower(users::id).eq(q.trim().to_lowercase())),
        );
    }
    query
}

/// One numbered page, by email.
pub fn page(conn: &mut DbConn, q: &str, page: i64, per_page: i64) -> Result<(Vec<User>, i64)> {
    let total = matching(q).count().get_result(conn)?;
    let rows = matching(q)
        .order((users::email.asc(), users::id.asc()))
        .limit(per_page)
        .offset((page.max(1) - 1) * per_page)
        .select(User::as_select())
        .load(conn)?;
    Ok((rows, total))
}

/// One cursor page, for the API.
pub fn list(conn: &mut DbConn, q: &str, cursor: &Cursor) -> Result<Page<User>> {
    Ok(crate::paginate!(
        matching(q),
        users::id,
        cursor,
        conn,
        User,
        |u: &User| u.id.to_string()
    ))
}
