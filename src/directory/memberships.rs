//! Memberships: a user belongs to organizations.

use std::collections::HashMap;

use diesel::prelude::*;
use serde_json::json;

use super::{Organization, User};
use crate::audit::{Actor, Change};
use crate::changes::{changed, Changed};
use crate::db::schema::{memberships, users};
use crate::db::{is_unique_violation, DbConn};
use crate::error::{Entity, Error, OrNotFound, Result};
use crate::ids::{OrgId, UserId};
use crate::paging::{Cursor, Page};
use crate::time::Timestamp;

#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable, Insertable)]
#[diesel(table_name = memberships)]
pub struct Membership {
    pub user_id: UserId,
    pub organization_id: OrgId,
    pub created_at: Timestamp,
}

/// Makes `user` a member of `org`; a second time is a conflict on `field`.
pub fn add(
    conn: &mut DbConn,
    actor: &Actor,
    org: &Organization,
    user: &User,
    field: &str,
) -> Result<Membership> {
    crate::db::write_transaction(conn, |conn| {
        let already = || {
            Error::duplicate(
                field,
                format!("{} is already a member of {}.", user.email, org.name),
            )
        };
        if super::is_member(conn, &user.id, &org.id)? {
            return Err(already());
        }
        let membership = Membership {
            user_id: user.id.clone(),
            organization_id: org.id.clone(),
            created_at: Timestamp::now(),
        };
        insert(conn, &membership).map_err(|e| match e {
            Error::Conflict { .. } => already(),
            other => other,
        })?;
        Change::new("membership.added", "organization", &org.id, &org.name)
            .after(json!({"member": user.email}))
            .record(conn, actor)?;
        Ok(membership)
    })
}

pub(crate) fn insert(conn: &mut DbConn, membership: &Membership) -> Result<()> {
    // On the connection itself, not through the multi-backend layer: its
    // statement is then prepared once and cached, which a bulk sync of a
    // thousand rows a request feels.
    crate::with_backend!(conn, |c| diesel::insert_into(memberships::table)
        .values(membership)
        .execute(c))
    .map_err(|e| {
        if is_unique_violation(&e) {
            Error::duplicate("user_id", "The user is already a member.")
        } else {
            e.into()
        }
    })?;
    announce_to_model(conn, &membership.user_id, &membership.organization_id)
}

/// A membership changes an answer only when rules target the organization
/// (the per-user lists include its flags); only then is the model told.
/// The check waits for changes being made meanwhile, so an organization
/// targeted at this very moment either is seen targeted here or has its
/// members read by the model after this membership is committed.
fn announce_to_model(conn: &mut DbConn, user: &UserId, org: &OrgId) -> Result<()> {
    crate::changes::wait_for_changes(conn)?;
    if crate::flags::targets::is_targeted(conn, org.as_str())? {
        changed(conn, Changed::Membership(user))?;
    }
    Ok(())
}

/// Ends a membership; `NotFound(Membership)` when there is none.
pub fn remove(conn: &mut DbConn, actor: &Actor, org: &Organization, user: &User) -> Result<()> {
    crate::db::write_transaction(conn, |conn| {
        let removed = diesel::delete(
            memberships::table
                .filter(memberships::user_id.eq(&user.id))
                .filter(memberships::organization_id.eq(&org.id)),
        )
        .execute(conn)?;
        if removed == 0 {
            return Err(Error::NotFound(Entity::Membership));
        }
        announce_to_model(conn, &user.id, &org.id)?;
        Change::new("membership.removed", "organization", &org.id, &org.name)
            .before(json!({"member": user.email}))
            .record(conn, actor)?;
        Ok(())
    })
}

pub fn get(conn: &mut DbConn, org_id: &OrgId, user_id: &UserId) -> Result<Membership> {
    memberships::table
        .filter(memberships::organization_id.eq(org_id))
        .filter(memberships::user_id.eq(user_id))
        .select(Membership::as_select())
        .first(conn)
        .or_not_found(Entity::Membership)
}

/// One cursor page of an organization's memberships, each with its user. A
/// user belongs to an organization once, so the user id is the cursor.
pub fn list(
    conn: &mut DbConn,
    org_id: &OrgId,
    cursor: &Cursor,
) -> Result<Page<(Membership, Option<User>)>> {
    let page = crate::paginate!(
        memberships::table
            .filter(memberships::organization_id.eq(org_id.clone()))
            .into_boxed(),
        memberships::user_id,
        cursor,
        conn,
        Membership,
        |m: &Membership| m.user_id.to_string()
    );
    let ids: Vec<&UserId> = page.data.iter().map(|m| &m.user_id).collect();
    let mut members: HashMap<UserId, User> = users::table
        .filter(users::id.eq_any(&ids))
        .select(User::as_select())
        .load(conn)?
        .into_iter()
        .map(|u| (u.id.clone(), u))
        .collect();
    Ok(page.map(|m| {
        let user = members.remove(&m.user_id);
        (m, user)
    }))
}
