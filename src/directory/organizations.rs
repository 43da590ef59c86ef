//! Organizations: created, changed and deleted, listed and searched.

use std::collections::HashMap;

use diesel::prelude::*;
use serde_json::json;

use super::{Organization, EXTERNAL_ID_TAKEN};
use crate::audit::{Actor, Change};
use crate::changes::{changed, Changed};
use crate::db::schema::{memberships, organizations};
use crate::db::{contains_pattern, lower, on_unique_violation, Db, DbConn};
use crate::error::{Entity, FieldErrors, OrNotFound, Result};
use crate::ids::OrgId;
use crate::paging::{Cursor, Page};
use crate::time::Timestamp;
use crate::validate::{self, ExternalId};

/// What creating an organization takes.
#[derive(Debug, Clone, Default)]
pub struct NewOrganization {
    pub name: String,
    pub external_id: String,
}

/// The fields to change; the others keep their value. An empty
/// `external_id` removes it.
#[derive(Debug, Clone, Default)]
pub struct OrganizationPatch {
    pub name: Option<String>,
    pub external_id: Option<String>,
}

fn state(o: &Organization) -> serde_json::Value {
    json!({"name": o.name, "external_id": o.external_id})
}

pub(crate) fn check_name(errors: &mut FieldErrors, field: &str, name: &str) -> String {
    errors.check(field, validate::name(name, "name", 100))
}

pub(crate) fn check_external_id(
    errors: &mut FieldErrors,
    field: &str,
    id: &str,
) -> Option<ExternalId> {
    errors.check(field, validate::external_id(id))
}

pub fn get(conn: &mut DbConn, id: &OrgId) -> Result<Organization> {
    organizations::table
        .find(id)
        .select(Organization::as_select())
        .first(conn)
        .or_not_found(Entity::Organization)
}

/// The organization a caller named by Flagpole id or external id.
pub fn named(conn: &mut DbConn, key: &str) -> Result<Organization> {
    super::find_org(conn, key)?.or_not_found(Entity::Organization)
}

pub fn create(conn: &mut DbConn, actor: &Actor, input: &NewOrganization) -> Result<Organization> {
    let mut errors = FieldErrors::default();
    let name = check_name(&mut errors, "name", &input.name);
    let external_id = check_external_id(&mut errors, "external_id", &input.external_id);
    errors.into_result()?;
    crate::db::write_transaction(conn, |conn| {
        let at = Timestamp::now();
        let org = Organization {
            id: OrgId::generate(),
            name: name.clone(),
            external_id: external_id.clone(),
            created_at: at,
            updated_at: at,
        };
        insert(conn, &org)?;
        Change::new("organization.created", "organization", &org.id, &org.name)
            .after(state(&org))
            .record(conn, actor)?;
        Ok(org)
    })
}

pub(crate) fn insert(conn: &mut DbConn, org: &Organization) -> Result<()> {
    // On the connection itself, not through the multi-backend layer: its
    // statement is then prepared once and cached, which a bulk sync of a
    // thousand rows a request feels.
    crate::with_backend!(conn, |c| diesel::insert_into(organizations::table)
        .values(org)
        .execute(c))
    .map_err(|e| on_unique_violation(e, |_| ("external_id", EXTERNAL_ID_TAKEN)))?;
    Ok(())
}

/// Changes an organization; the current values are read and merged inside
/// the write, so two changes of different fields made at once both last.
pub fn update(
    conn: &mut DbConn,
    actor: &Actor,
    id: &OrgId,
    patch: &OrganizationPatch,
) -> Result<Organization> {
    let mut errors = FieldErrors::default();
    let name = patch
        .name
        .as_deref()
        .map(|n| check_name(&mut errors, "name", n));
    let external_id = patch
        .external_id
        .as_deref()
        .map(|e| check_external_id(&mut errors, "external_id", e));
    errors.into_result()?;
    crate::db::write_transaction(conn, |conn| {
        // Lock the row before reading it, so a concurrent change of another
        // field waits and is merged, not overwritten.
        diesel::update(organizations::table.find(id))
            .set(organizations::updated_at.eq(organizations::updated_at))
            .execute(conn)?;
        let before = get(conn, id)?;
        let name = name.clone().unwrap_or_else(|| before.name.clone());
        let external_id = external_id
            .clone()
            .unwrap_or_else(|| before.external_id.clone());
        if name == before.name && external_id == before.external_id {
            return Ok(before);
        }
        diesel::update(organizations::table.find(id))
            .set((
                organizations::name.eq(&name),
                organizations::external_id.eq(&external_id),
                organizations::updated_at.eq(Timestamp::now()),
            ))
            .execute(conn)
            .map_err(|e| on_unique_violation(e, |_| ("external_id", EXTERNAL_ID_TAKEN)))?;
        let after = get(conn, id)?;
        if after.external_id != before.external_id {
            changed(conn, Changed::Subject(id.as_str()))?;
        }
        Change::new("organization.updated", "organization", id, &after.name)
            .before(state(&before))
            .after(state(&after))
            .record(conn, actor)?;
        Ok(after)
    })
}

/// Deletes an organization with its memberships and every flag target naming it.
pub fn delete(conn: &mut DbConn, actor: &Actor, id: &OrgId) -> Result<()> {
    crate::db::write_transaction(conn, |conn| {
        let before = get(conn, id)?;
        crate::flags::targets::forget_subject(conn, id.as_str())?;
        diesel::delete(memberships::table.filter(memberships::organization_id.eq(id)))
            .execute(conn)?;
        diesel::delete(organizations::table.find(id)).execute(conn)?;
        changed(conn, Changed::Subject(id.as_str()))?;
        Change::new("organization.deleted", "organization", id, &before.name)
            .before(state(&before))
            .record(conn, actor)?;
        Ok(())
    })
}

/// Organizations whose name or external id contains `q`, or whose id is `q` (all when `q`
/// is blank), unordered, for lists to sort and page.
fn matching<'a>(q: &str) -> organizations::BoxedQuery<'a, Db> {
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
                .or(lower(organizations::id).eq(q.trim().to_lowercase())),
        );
    }
    query
}

/// One numbered page by name, each with its number of members.
pub fn page(
    conn: &mut DbConn,
    q: &str,
    page: i64,
    per_page: i64,
) -> Result<(Vec<(Organization, i64)>, i64)> {
    let total = matching(q).count().get_result(conn)?;
    let orgs: Vec<Organization> = matching(q)
        .order((organizations::name.asc(), organizations::id.asc()))
        .limit(per_page)
        .offset((page.max(1) - 1) * per_page)
        .select(Organization::as_select())
        .load(conn)?;
    let ids: Vec<&OrgId> = orgs.iter().map(|o| &o.id).collect();
    let counts: HashMap<OrgId, i64> = memberships::table
        .filter(memberships::organization_id.eq_any(&ids))
        .group_by(memberships::organization_id)
        .select((memberships::organization_id, diesel::dsl::count_star()))
        .load::<(OrgId, i64)>(conn)?
        .into_iter()
        .collect();
    let rows = orgs
        .into_iter()
        .map(|o| {
            let n = counts.get(&o.id).copied().unwrap_or(0);
            (o, n)
        })
        .collect();
    Ok((rows, total))
}

/// One cursor page, for the API.
pub fn list(conn: &mut DbConn, q: &str, cursor: &Cursor) -> Result<Page<Organization>> {
    Ok(crate::paginate!(
        matching(q),
        organizations::id,
        cursor,
        conn,
        Organization,
        |o: &Organization| o.id.to_string()
    ))
}
