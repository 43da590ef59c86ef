//! Dashboard accounts: argon2id password hashes and roles, the one-time
//! setup of the first owner, and the sign-in throttle.

pub mod setup;
pub mod throttle;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use diesel::prelude::*;
use serde_json::json;

use crate::audit::{Actor, Change};
use crate::db::schema::admins;
use crate::db::{on_unique_violation, DbConn};
use crate::error::{Entity, Error, FieldErrors, OrNotFound, Refusal, Result};
use crate::ids::AdminId;
use crate::time::Timestamp;
use crate::validate::{self, Email};

crate::text_enum! {
    /// What an admin may do: viewers look, editors change flags and the
    /// directory, owners also manage admins.
    pub enum Role {
        Viewer = "viewer",
        Editor = "editor",
        Owner = "owner",
    }
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = admins)]
pub struct Admin {
    pub id: AdminId,
    pub email: Email,
    pub password_hash: String,
    pub role: Role,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl Admin {
    pub fn actor(&self) -> Actor {
        Actor::Admin {
            id: self.id.clone(),
            email: self.email.to_string(),
        }
    }
}

pub fn hash_password(password: &str) -> Result<String> {
    let salt = SaltString::generate(&mut rand::rngs::OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| Error::internal(anyhow::anyhow!("hashing a password: {e}")))
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

pub fn count(conn: &mut DbConn) -> Result<i64> {
    Ok(admins::table.count().get_result(conn)?)
}

pub fn get(conn: &mut DbConn, id: &AdminId) -> Result<Admin> {
    admins::table
        .find(id)
        .select(Admin::as_select())
        .first(conn)
        .or_not_found(Entity::Admin)
}

pub fn list(conn: &mut DbConn) -> Result<Vec<Admin>> {
    Ok(admins::table
        .order(admins::email.asc())
        .select(Admin::as_select())
        .load(conn)?)
}

/// The admin with this email and password, if both match.
pub fn authenticate(conn: &mut DbConn, email: &str, password: &str) -> Result<Option<Admin>> {
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
    actor: &Actor,
    email: &str,
    password: &str,
    role: Role,
) -> Result<Admin> {
    let mut errors = FieldErrors::default();
    let email = errors.check("email", validate::email(email));
    errors.check("password", validate::password(password));
    errors.into_result()?;
    let password_hash = hash_password(password)?;
    crate::db::write_transaction(conn, |conn| {
        let at = Timestamp::now();
        let admin = Admin {
            id: AdminId::generate(),
            email: email.clone(),
            password_hash: password_hash.clone(),
            role,
            created_at: at,
            updated_at: at,
        };
        diesel::insert_into(admins::table)
            .values(&admin)
            .execute(conn)
            .map_err(|e| {
                on_unique_violation(e, |_| ("email", "An admin with this email already exists."))
            })?;
        Change::new("admin.created", "admin", &admin.id, admin.email.as_str())
            .after(json!({"email": admin.email, "role": admin.role}))
            .record(conn, actor)?;
        Ok(admin)
    })
}

/// Creates the first owner, only while there is no admin at all.
pub fn create_first_owner(conn: &mut DbConn, email: &str, password: &str) -> Result<Admin> {
    crate::db::write_transaction(conn, |conn| {
        if count(conn)? > 0 {
            return Err(Error::forbidden(
                "An admin already exists: sign in instead.",
            ));
        }
        create(conn, &Actor::system("setup"), email, password, Role::Owner)
    })
}

/// Changes an admin's role, keeping at least one owner.
pub fn set_role(conn: &mut DbConn, actor: &Actor, id: &AdminId, role: Role) -> Result<Admin> {
    crate::db::write_transaction(conn, |conn| {
        let before = get(conn, id)?;
        if before.role == Role::Owner && role != Role::Owner {
            ensure_other_owner(conn, id)?;
        }
        diesel::update(admins::table.find(id))
            .set((
                admins::role.eq(role),
                admins::updated_at.eq(Timestamp::now()),
            ))
            .execute(conn)?;
        Change::new("admin.role_changed", "admin", id, before.email.as_str())
            .before(json!({"role": before.role}))
            .after(json!({"role": role}))
            .record(conn, actor)?;
        get(conn, id)
    })
}

fn ensure_other_owner(conn: &mut DbConn, id: &AdminId) -> Result<()> {
    let owners: i64 = admins::table
        .filter(admins::role.eq(Role::Owner))
        .filter(admins::id.ne(id))
        .count()
        .get_result(conn)?;
    if owners == 0 {
        return Err(Error::Refused(Refusal::LastOwner));
    }
    Ok(())
}

pub fn delete(conn: &mut DbConn, actor: &Actor, id: &AdminId) -> Result<()> {
    crate::db::write_transaction(conn, |conn| {
        let before = get(conn, id)?;
        if before.role == Role::Owner {
            ensure_other_owner(conn, id)?;
        }
        diesel::delete(admins::table.find(id)).execute(conn)?;
        Change::new("admin.deleted", "admin", id, before.email.as_str())
            .before(json!({"email": before.email, "role": before.role}))
            .record(conn, actor)?;
        Ok(())
    })
}
