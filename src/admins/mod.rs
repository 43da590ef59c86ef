//! Dashboard accounts: argon2id password hashes and roles, the one-time
//! setup of the first owner, and the sign-in throttle.

pub mod hashing;
pub mod sessions;
pub mod setup;
pub mod throttle;
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

/// The admin with this email, if any (the password is checked by the
/// hasher, off the database connection).
pub fn find_by_email(conn: &mut DbConn, email: &str) -> Result<Option<Admin>> {
    let email = email.trim().to_lowercase();
    if email.len() > 254 {
        return Ok(None);
    }
    Ok(admins::table
        .filter(admins::email.eq(&email))
        .select(Admin::as_select())
        .first(conn)
        .optional()?)
}

/// Checks a new admin's email and password; the email as it is stored.
pub fn check_new(email: &str, password: &str) -> Result<Email> {
    let mut errors = FieldErrors::default();
    let email = errors.check("email", validate::email(email));
    errors.check("password", validate::password(password));
    errors.into_result()?;
    Ok(email)
}

/// Creates an admin, hashing the password here (for the command line and
/// the tests; the server hashes on its hashing threads and calls [`insert`]).
pub fn create(
    conn: &mut DbConn,
    actor: &Actor,
    email: &str,
    password: &str,
    role: Role,
) -> Result<Admin> {
    let email = check_new(email, password)?;
    let password_hash = hashing::hash(&hashing::HashCost::default(), password)?;
    insert(conn, actor, &email, &password_hash, role)
}

/// Adds an admin whose password is already hashed.
pub fn insert(
    conn: &mut DbConn,
    actor: &Actor,
    email: &Email,
    password_hash: &str,
    role: Role,
) -> Result<Admin> {
    crate::db::write_transaction(conn, |conn| {
        let at = Timestamp::now();
        let admin = Admin {
            id: AdminId::generate(),
            email: email.clone(),
            password_hash: password_hash.to_string(),
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

/// Sets an admin's password (already hashed) and ends their other
/// sessions: every session but `keep` (the one that changed it).
pub fn set_password(
    conn: &mut DbConn,
    actor: &Actor,
    id: &AdminId,
    password_hash: &str,
    keep: Option<&str>,
) -> Result<usize> {
    crate::db::write_transaction(conn, |conn| {
        let admin = get(conn, id)?;
        diesel::update(admins::table.find(id))
            .set((
                admins::password_hash.eq(password_hash),
                admins::updated_at.eq(Timestamp::now()),
            ))
            .execute(conn)?;
        let ended = sessions::end_all(conn, id, keep)?;
        Change::new("admin.password_changed", "admin", id, admin.email.as_str())
            .after(json!({"sessions_ended": ended}))
            .record(conn, actor)?;
        Ok(ended)
    })
}

/// Ends every session of an admin (signing out everywhere), recorded.
pub fn sign_out_everywhere(conn: &mut DbConn, actor: &Actor, id: &AdminId) -> Result<usize> {
    crate::db::write_transaction(conn, |conn| {
        let admin = get(conn, id)?;
        let ended = sessions::end_all(conn, id, None)?;
        Change::new(
            "admin.signed_out_everywhere",
            "admin",
            id,
            admin.email.as_str(),
        )
        .after(json!({"sessions_ended": ended}))
        .record(conn, actor)?;
        Ok(ended)
    })
}

/// Creates the first owner with a one-time setup token, only while there
/// is no admin at all. The token is spent in the same transaction, so two
/// submissions cannot both create an owner, and an invalid form spends
/// nothing.
pub fn create_first_owner(
    conn: &mut DbConn,
    token: &str,
    email: &Email,
    password_hash: &str,
) -> Result<Admin> {
    crate::db::write_transaction(conn, |conn| {
        if !setup::spend(conn, token)? {
            return Err(Error::forbidden(
                "This setup link is not valid: it was used, or it expired. Run `flagpole admin setup-link` for a new one.",
            ));
        }
        if count(conn)? > 0 {
            return Err(Error::forbidden(
                "An admin already exists: sign in instead.",
            ));
        }
        insert(
            conn,
            &Actor::system("setup"),
            email,
            password_hash,
            Role::Owner,
        )
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
