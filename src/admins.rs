//! Dashboard accounts: argon2id password hashes and roles.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use diesel::prelude::*;
use serde_json::json;

use crate::audit::{self, Change};
use crate::db::schema::admins;
use crate::db::{is_unique_violation, DbConn};
use crate::error::{AppError, FieldErrors};
use crate::ids::{new_id, now};
use crate::models::Admin;
use crate::validate;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    Viewer,
    Editor,
    Owner,
}

impl Role {
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "owner" => Some(Role::Owner),
            "editor" => Some(Role::Editor),
            "viewer" => Some(Role::Viewer),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Editor => "editor",
            Role::Viewer => "viewer",
        }
    }
}

pub fn role_of(admin: &Admin) -> Role {
    Role::parse(&admin.role).unwrap_or(Role::Viewer)
}

pub fn hash_password(password: &str) -> Result<String, AppError> {
    let salt = SaltString::generate(&mut rand::rngs::OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| AppError::Internal(anyhow::anyhow!("hashing a password: {e}")))
}

/// A hash of a throwaway password, checked when the email is unknown so that
/// a wrong email costs as much time as a wrong password.
static DUMMY_HASH: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| hash_password("flagpole-timing-equalizer").unwrap_or_default());

fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash)
        .map(|parsed| {
            Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        })
        .unwrap_or(false)
}

pub fn count(conn: &mut DbConn) -> QueryResult<i64> {
    admins::table.count().get_result(conn)
}

pub fn get(conn: &mut DbConn, id: &str) -> QueryResult<Admin> {
    admins::table
        .find(id)
        .select(Admin::as_select())
        .first(conn)
}

pub fn list(conn: &mut DbConn) -> QueryResult<Vec<Admin>> {
    admins::table
        .order(admins::email.asc())
        .select(Admin::as_select())
        .load(conn)
}

/// The admin with this email and password, if both match.
pub fn authenticate(conn: &mut DbConn, email: &str, password: &str) -> QueryResult<Option<Admin>> {
    let email = email.trim().to_lowercase();
    let admin = admins::table
        .filter(admins::email.eq(&email))
        .select(Admin::as_select())
        .first(conn)
        .optional()?;
    Ok(match admin {
        Some(admin) if verify_password(password, &admin.password_hash) => Some(admin),
        Some(_) => None,
        None => {
            verify_password(password, &DUMMY_HASH);
            None
        }
    })
}

pub fn create(
    conn: &mut DbConn,
    actor: &str,
    email: &str,
    password: &str,
    role: Role,
) -> Result<Admin, AppError> {
    let mut errors = FieldErrors::default();
    let email = validate::email(email).unwrap_or_else(|e| {
        errors.add("email", e);
        String::new()
    });
    if let Err(e) = validate::password(password) {
        errors.add("password", e);
    }
    errors.into_result()?;
    let password_hash = hash_password(password)?;
    crate::db::write_transaction(conn, |conn| {
        let at = now();
        let admin = Admin {
            id: new_id("admin"),
            email,
            password_hash,
            role: role.as_str().into(),
            created_at: at.clone(),
            updated_at: at,
        };
        diesel::insert_into(admins::table)
            .values(&admin)
            .execute(conn)
            .map_err(|e| {
                if is_unique_violation(&e) {
                    AppError::Invalid(FieldErrors::conflict(
                        "email",
                        "An admin with this email already exists.",
                    ))
                } else {
                    e.into()
                }
            })?;
        audit::record(
            conn,
            actor,
            Change {
                action: "admin.created",
                object_type: "admin",
                object_id: &admin.id,
                object_label: &admin.email,
                flag_id: None,
                environment_id: None,
                before: None,
                after: Some(json!({"email": admin.email, "role": admin.role})),
            },
        )?;
        Ok(admin)
    })
}

/// Creates the first owner, only while there is no admin at all.
pub fn create_first_owner(
    conn: &mut DbConn,
    email: &str,
    password: &str,
) -> Result<Admin, AppError> {
    crate::db::write_transaction(conn, |conn| {
        if count(conn)? > 0 {
            return Err(AppError::Forbidden(
                "An admin already exists: sign in instead.".into(),
            ));
        }
        create(conn, "setup", email, password, Role::Owner)
    })
}

/// Changes an admin's role, keeping at least one owner.
pub fn set_role(conn: &mut DbConn, actor: &str, id: &str, role: Role) -> Result<Admin, AppError> {
    crate::db::write_transaction(conn, |conn| {
        let before = get(conn, id)?;
        if role_of(&before) == Role::Owner && role != Role::Owner {
            ensure_other_owner(conn, id)?;
        }
        diesel::update(admins::table.find(id))
            .set((admins::role.eq(role.as_str()), admins::updated_at.eq(now())))
            .execute(conn)?;
        audit::record(
            conn,
            actor,
            Change {
                action: "admin.role_changed",
                object_type: "admin",
                object_id: id,
                object_label: &before.email,
                flag_id: None,
                environment_id: None,
                before: Some(json!({"role": before.role})),
                after: Some(json!({"role": role.as_str()})),
            },
        )?;
        Ok(get(conn, id)?)
    })
}

fn ensure_other_owner(conn: &mut DbConn, id: &str) -> Result<(), AppError> {
    let owners: i64 = admins::table
        .filter(admins::role.eq("owner"))
        .filter(admins::id.ne(id))
        .count()
        .get_result(conn)?;
    if owners == 0 {
        return Err(AppError::BadRequest(
            "Flagpole needs at least one owner: make someone else owner first.".into(),
        ));
    }
    Ok(())
}

pub fn delete(conn: &mut DbConn, actor: &str, id: &str) -> Result<(), AppError> {
    crate::db::write_transaction(conn, |conn| {
        let before = get(conn, id)?;
        if role_of(&before) == Role::Owner {
            ensure_other_owner(conn, id)?;
        }
        diesel::delete(admins::table.find(id)).execute(conn)?;
        audit::record(
            conn,
            actor,
            Change {
                action: "admin.deleted",
                object_type: "admin",
                object_id: id,
                object_label: &before.email,
                flag_id: None,
                environment_id: None,
                before: Some(json!({"email": before.email, "role": before.role})),
                after: None,
            },
        )?;
        Ok(())
    })
}
