//! The directory: organizations, users and memberships, the subjects a flag
//! can be given to. Applications name them by Flagpole id or by their own
//! external id; forms also by email.

pub mod bulk;
pub mod memberships;
pub mod organizations;
pub mod users;

use diesel::prelude::*;

use crate::db::schema::{
    memberships as memberships_table, organizations as orgs, users as users_table,
};
use crate::db::DbConn;
use crate::error::Result;
use crate::evaluation::TargetKind;
use crate::ids::{OrgId, UserId};
use crate::time::Timestamp;
use crate::validate::{Email, ExternalId};

pub use memberships::Membership;

#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable, Insertable)]
#[diesel(table_name = orgs)]
pub struct Organization {
    pub id: OrgId,
    pub name: String,
    pub external_id: Option<ExternalId>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable, Insertable)]
#[diesel(table_name = users_table)]
pub struct User {
    pub id: UserId,
    pub email: Email,
    pub first_name: String,
    pub last_name: String,
    pub external_id: Option<ExternalId>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl User {
    /// "Ada Lovelace", or the email when the user has no name.
    pub fn display_name(&self) -> String {
        let name = format!("{} {}", self.first_name, self.last_name);
        let name = name.trim();
        if name.is_empty() {
            self.email.to_string()
        } else {
            name.to_string()
        }
    }
}

/// A user or an organization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    User(User),
    Organization(Organization),
}

impl Subject {
    pub fn id(&self) -> &str {
        match self {
            Subject::User(u) => u.id.as_str(),
            Subject::Organization(o) => o.id.as_str(),
        }
    }
}

/// The subject of `kind` named by a Flagpole id or an external id.
pub fn resolve_subject(conn: &mut DbConn, kind: TargetKind, key: &str) -> Result<Option<Subject>> {
    Ok(match kind {
        TargetKind::User => find_user(conn, key)?.map(Subject::User),
        TargetKind::Organization => find_org(conn, key)?.map(Subject::Organization),
    })
}

/// Finds a user by Flagpole id or external id: how applications name users.
pub fn find_user(conn: &mut DbConn, key: &str) -> Result<Option<User>> {
    let key = key.trim();
    Ok(users_table::table
        .filter(users_table::id.eq(key).or(users_table::external_id.eq(key)))
        .select(User::as_select())
        .first(conn)
        .optional()?)
}

/// Finds a user by id, external id or email: how people name users in forms.
pub fn find_user_by_any(conn: &mut DbConn, key: &str) -> Result<Option<User>> {
    let key = key.trim();
    Ok(users_table::table
        .filter(
            users_table::id
                .eq(key)
                .or(users_table::external_id.eq(key))
                .or(users_table::email.eq(key.to_lowercase())),
        )
        .select(User::as_select())
        .first(conn)
        .optional()?)
}

/// Finds an organization by Flagpole id or external id.
pub fn find_org(conn: &mut DbConn, key: &str) -> Result<Option<Organization>> {
    let key = key.trim();
    Ok(orgs::table
        .filter(orgs::id.eq(key).or(orgs::external_id.eq(key)))
        .select(Organization::as_select())
        .first(conn)
        .optional()?)
}

/// Whether the user belongs to the organization: the one membership check.
pub fn is_member(conn: &mut DbConn, user_id: &UserId, org_id: &OrgId) -> Result<bool> {
    let n: i64 = memberships_table::table
        .filter(memberships_table::user_id.eq(user_id))
        .filter(memberships_table::organization_id.eq(org_id))
        .count()
        .get_result(conn)?;
    Ok(n > 0)
}

/// The organizations a user belongs to, by name.
pub fn organizations_of(conn: &mut DbConn, user_id: &UserId) -> Result<Vec<Organization>> {
    Ok(memberships_table::table
        .inner_join(orgs::table)
        .filter(memberships_table::user_id.eq(user_id))
        .order(orgs::name.asc())
        .select(Organization::as_select())
        .load(conn)?)
}

/// The members of an organization, by email.
pub fn members_of(conn: &mut DbConn, org_id: &OrgId) -> Result<Vec<User>> {
    Ok(memberships_table::table
        .inner_join(users_table::table)
        .filter(memberships_table::organization_id.eq(org_id))
        .order(users_table::email.asc())
        .select(User::as_select())
        .load(conn)?)
}

/// Fields a unique violation on users can be about.
pub(crate) fn user_unique_field(detail: &str) -> (&'static str, &'static str) {
    if detail.contains("email") {
        ("email", "Another user already has this email address.")
    } else {
        ("external_id", EXTERNAL_ID_TAKEN)
    }
}

pub(crate) const EXTERNAL_ID_TAKEN: &str = "Another object already has this external id.";
