//! Bulk upserts: up to [`BULK_LIMIT`] users or organizations, matched by
//! `external_id`, in one transaction: all of them or, when any is invalid
//! or conflicts with another object, none. Objects whose fields already
//! match are left alone (not counted as updated, not audited), so a
//! repeated request changes nothing.

use std::collections::HashMap;

use diesel::prelude::*;

use super::organizations::check_name;
use super::users::{check_email, check_person_name, state as user_state};
use super::{Organization, User};
use crate::audit::{record_many, Actor, Change};
use crate::db::schema::{organizations, users};
use crate::db::DbConn;
use crate::error::{Error, FieldErrors, Refusal, Result};
use crate::ids::{OrgId, UserId};
use crate::time::Timestamp;
use crate::validate::{self, Email, ExternalId};

/// The most objects one bulk request may create or update.
pub const BULK_LIMIT: usize = 1_000;

/// One user of a bulk upsert. An absent field keeps its current value when
/// the user exists; a new user needs an email.
#[derive(Debug, Clone, Default)]
pub struct BulkUser {
    pub external_id: String,
    pub email: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
}

/// One organization of a bulk upsert. A new organization needs a name.
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

/// The field of the `i`th object, as the API names it.
fn field(i: usize, name: &str) -> String {
    format!("data[{i}].{name}")
}

/// Renames a validation error or a conflict to the `i`th object's field.
fn at_index(err: Error, i: usize) -> Error {
    match err {
        Error::Invalid(errors) => Error::Invalid(errors.prefixed(|f| field(i, f))),
        Error::Conflict {
            field: f,
            code,
            message,
        } => Error::Conflict {
            field: field(i, &f),
            code,
            message,
        },
        other => other,
    }
}

/// Runs a bulk write, and once more when it conflicts: a concurrent request
/// may have created one of the same external ids after this one looked, and
/// the second attempt then updates it instead. A real conflict (an email
/// another user has) fails again and is reported.
fn retry_on_conflict<T>(mut write: impl FnMut() -> Result<T>) -> Result<T> {
    match write() {
        Err(Error::Conflict { .. }) => write(),
        other => other,
    }
}

pub fn check_size(n: usize) -> Result<()> {
    if n > BULK_LIMIT {
        return Err(Error::Refused(Refusal::TooManyObjects {
            message: format!(
                "A bulk request takes at most {BULK_LIMIT} objects and this one has {n}; nothing \
                 was saved. Split it into several requests."
            ),
        }));
    }
    Ok(())
}

/// The external id of the `i`th object: required, valid, and not repeated.
fn external_id(
    errors: &mut FieldErrors,
    seen: &mut HashMap<ExternalId, usize>,
    i: usize,
    raw: &str,
) -> ExternalId {
    let name = field(i, "external_id");
    match validate::external_id(raw) {
        Err(e) => errors.add(&name, e),
        Ok(None) => errors.add(
            &name,
            "Give each object an external_id: bulk requests match objects by it.",
        ),
        Ok(Some(id)) => {
            if let Some(first) = seen.get(&id) {
                errors.add(
                    &name,
                    format!("The external_id {id:?} appears twice in this request (also data[{first}])."),
                );
            } else {
                seen.insert(id.clone(), i);
            }
            return id;
        }
    }
    ExternalId::default()
}

macro_rules! by_external_ids {
    ($conn:expr, $table:ident, $model:ty, $ids:expr) => {{
        let mut found: HashMap<ExternalId, $model> = HashMap::new();
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

struct ValidUser {
    external_id: ExternalId,
    email: Option<Email>,
    first_name: Option<String>,
    last_name: Option<String>,
}

/// Creates or updates users by external id; see the module's rules.
pub fn upsert_users(conn: &mut DbConn, actor: &Actor, items: &[BulkUser]) -> Result<BulkCounts> {
    check_size(items.len())?;
    let mut errors = FieldErrors::default();
    let mut seen_ids = HashMap::new();
    let mut seen_emails: HashMap<Email, usize> = HashMap::new();
    let mut valid = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let external_id = external_id(&mut errors, &mut seen_ids, i, &item.external_id);
        let email = item
            .email
            .as_deref()
            .map(|e| check_email(&mut errors, &field(i, "email"), e));
        if let Some(email) = &email {
            if let Some(first) = seen_emails.get(email) {
                errors.add(
                    field(i, "email"),
                    format!("Two users of this request have this email (also data[{first}])."),
                );
            } else if !email.as_str().is_empty() {
                seen_emails.insert(email.clone(), i);
            }
        }
        let first_name = item
            .first_name
            .as_deref()
            .map(|n| check_person_name(&mut errors, &field(i, "first_name"), "first name", n));
        let last_name = item
            .last_name
            .as_deref()
            .map(|n| check_person_name(&mut errors, &field(i, "last_name"), "last name", n));
        valid.push(ValidUser {
            external_id,
            email,
            first_name,
            last_name,
        });
    }
    errors.into_result()?;
    retry_on_conflict(|| write_users(conn, actor, &valid))
}

fn write_users(conn: &mut DbConn, actor: &Actor, valid: &[ValidUser]) -> Result<BulkCounts> {
    crate::db::write_transaction(conn, |conn| {
        let ids: Vec<ExternalId> = valid.iter().map(|v| v.external_id.clone()).collect();
        let existing = by_external_ids!(conn, users, User, ids);
        let mut counts = BulkCounts::default();
        let mut changes = Vec::new();
        let at = Timestamp::now();
        for (i, v) in valid.iter().enumerate() {
            match existing.get(&v.external_id) {
                None => {
                    let Some(email) = v.email.clone() else {
                        return Err(Error::invalid(
                            field(i, "email"),
                            "Give an email: there is no user with this external_id yet, and a new user needs one.",
                        ));
                    };
                    let user = User {
                        id: UserId::generate(),
                        email,
                        first_name: v.first_name.clone().unwrap_or_default(),
                        last_name: v.last_name.clone().unwrap_or_default(),
                        external_id: Some(v.external_id.clone()),
                        created_at: at,
                        updated_at: at,
                    };
                    super::users::insert(conn, &user).map_err(|e| at_index(e, i))?;
                    counts.created += 1;
                    changes.push(
                        Change::new("user.created", "user", &user.id, user.email.as_str())
                            .after(user_state(&user)),
                    );
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
                    user.updated_at = at;
                    diesel::update(users::table.find(&user.id))
                        .set((
                            users::email.eq(&user.email),
                            users::first_name.eq(&user.first_name),
                            users::last_name.eq(&user.last_name),
                            users::updated_at.eq(user.updated_at),
                        ))
                        .execute(conn)
                        .map_err(|e| {
                            at_index(
                                crate::db::on_unique_violation(e, super::user_unique_field),
                                i,
                            )
                        })?;
                    counts.updated += 1;
                    changes.push(
                        Change::new("user.updated", "user", &user.id, user.email.as_str())
                            .before(user_state(current))
                            .after(user_state(&user)),
                    );
                }
            }
        }
        record_many(conn, actor, changes)?;
        Ok(counts)
    })
}

/// Creates or updates organizations by external id; see the module's rules.
pub fn upsert_organizations(
    conn: &mut DbConn,
    actor: &Actor,
    items: &[BulkOrganization],
) -> Result<BulkCounts> {
    check_size(items.len())?;
    let mut errors = FieldErrors::default();
    let mut seen_ids = HashMap::new();
    let mut valid = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let external_id = external_id(&mut errors, &mut seen_ids, i, &item.external_id);
        let name = item
            .name
            .as_deref()
            .map(|n| check_name(&mut errors, &field(i, "name"), n));
        valid.push((external_id, name));
    }
    errors.into_result()?;
    retry_on_conflict(|| write_organizations(conn, actor, &valid))
}

fn org_state(o: &Organization) -> serde_json::Value {
    serde_json::json!({"name": o.name, "external_id": o.external_id})
}

fn write_organizations(
    conn: &mut DbConn,
    actor: &Actor,
    valid: &[(ExternalId, Option<String>)],
) -> Result<BulkCounts> {
    crate::db::write_transaction(conn, |conn| {
        let ids: Vec<ExternalId> = valid.iter().map(|(ext, _)| ext.clone()).collect();
        let existing = by_external_ids!(conn, organizations, Organization, ids);
        let mut counts = BulkCounts::default();
        let mut changes = Vec::new();
        let at = Timestamp::now();
        for (i, (external_id, name)) in valid.iter().enumerate() {
            match existing.get(external_id) {
                None => {
                    let Some(name) = name.clone() else {
                        return Err(Error::invalid(
                            field(i, "name"),
                            "Give a name: there is no organization with this external_id yet, and a new organization needs one.",
                        ));
                    };
                    let org = Organization {
                        id: OrgId::generate(),
                        name,
                        external_id: Some(external_id.clone()),
                        created_at: at,
                        updated_at: at,
                    };
                    super::organizations::insert(conn, &org).map_err(|e| at_index(e, i))?;
                    counts.created += 1;
                    changes.push(
                        Change::new("organization.created", "organization", &org.id, &org.name)
                            .after(org_state(&org)),
                    );
                }
                Some(current) => {
                    let name = name.clone().unwrap_or_else(|| current.name.clone());
                    if name == current.name {
                        counts.unchanged += 1;
                        continue;
                    }
                    let org = Organization {
                        name,
                        updated_at: at,
                        ..current.clone()
                    };
                    diesel::update(organizations::table.find(&org.id))
                        .set((
                            organizations::name.eq(&org.name),
                            organizations::updated_at.eq(org.updated_at),
                        ))
                        .execute(conn)?;
                    counts.updated += 1;
                    changes.push(
                        Change::new("organization.updated", "organization", &org.id, &org.name)
                            .before(org_state(current))
                            .after(org_state(&org)),
                    );
                }
            }
        }
        record_many(conn, actor, changes)?;
        Ok(counts)
    })
}
