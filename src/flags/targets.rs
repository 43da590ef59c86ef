//! The users and organizations a rule can target, as the rule editor and
//! the APIs show them: described, paged and searched.

use std::collections::HashMap;

use diesel::prelude::*;

use crate::db::schema::{organizations, targets, users};
use crate::db::{contains_pattern, lower, DbConn};
use crate::directory::{Organization, User};
use crate::error::Result;
use crate::evaluation::TargetKind;
use crate::ids::{EnvironmentId, FlagId, OrgId, UserId};

/// A user or an organization as the rule editor lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetView {
    pub kind: TargetKind,
    pub id: String,
    /// The user's name (or email) or the organization's name.
    pub label: String,
    /// The user's email and external id, or the organization's external id.
    pub detail: String,
    /// The user's email; `None` for an organization.
    pub email: Option<String>,
}

impl TargetView {
    pub fn of_user(u: User) -> Self {
        let detail = match &u.external_id {
            Some(ext) => format!("{} · {}", u.email, ext),
            None => u.email.to_string(),
        };
        TargetView {
            kind: TargetKind::User,
            label: u.display_name(),
            email: Some(u.email.to_string()),
            id: u.id.into_string(),
            detail,
        }
    }

    pub fn of_org(o: Organization) -> Self {
        TargetView {
            kind: TargetKind::Organization,
            detail: o
                .external_id
                .as_ref()
                .map(|e| e.to_string())
                .unwrap_or_default(),
            label: o.name,
            email: None,
            id: o.id.into_string(),
        }
    }

    /// The organization's name, or the user's email.
    pub fn name(&self) -> &str {
        self.email.as_deref().unwrap_or(&self.label)
    }
}

/// Names and details of the users and organizations behind `ids`, in the
/// order given; unknown ids are left out.
pub fn describe_targets(conn: &mut DbConn, ids: &[String]) -> Result<Vec<TargetView>> {
    let user_ids: Vec<UserId> = ids.iter().filter_map(|i| UserId::parse(i)).collect();
    let org_ids: Vec<OrgId> = ids.iter().filter_map(|i| OrgId::parse(i)).collect();
    let mut out = Vec::with_capacity(ids.len());
    for chunk in user_ids.chunks(500) {
        out.extend(
            users::table
                .filter(users::id.eq_any(chunk))
                .select(User::as_select())
                .load(conn)?
                .into_iter()
                .map(TargetView::of_user),
        );
    }
    for chunk in org_ids.chunks(500) {
        out.extend(
            organizations::table
                .filter(organizations::id.eq_any(chunk))
                .select(Organization::as_select())
                .load(conn)?
                .into_iter()
                .map(TargetView::of_org),
        );
    }
    let order: HashMap<&String, usize> = ids.iter().enumerate().map(|(i, id)| (id, i)).collect();
    out.sort_by_key(|v| order.get(&v.id).copied().unwrap_or(usize::MAX));
    Ok(out)
}

/// One page of a rule's targets: organizations first, then users, each in
/// the order they were added.
pub fn page(
    conn: &mut DbConn,
    flag_id: &FlagId,
    env_id: &EnvironmentId,
    page: i64,
    per_page: i64,
) -> Result<(Vec<TargetView>, i64)> {
    let base = || {
        targets::table
            .filter(targets::flag_id.eq(flag_id))
            .filter(targets::environment_id.eq(env_id))
    };
    let total: i64 = base().count().get_result(conn)?;
    let ids: Vec<String> = base()
        .order((
            targets::target_type.asc(),
            targets::created_at.asc(),
            targets::target_id.asc(),
        ))
        .limit(per_page)
        .offset((page.max(1) - 1) * per_page)
        .select(targets::target_id)
        .load(conn)?;
    Ok((describe_targets(conn, &ids)?, total))
}

/// Users (by name, email or external id) and organizations (by name or
/// external id) matching `q`.
pub fn search(conn: &mut DbConn, q: &str, limit: i64) -> Result<Vec<TargetView>> {
    let q = q.trim();
    if q.is_empty() {
        return Ok(Vec::new());
    }
    let pattern = contains_pattern(q);
    let orgs = organizations::table
        .filter(
            lower(organizations::name)
                .like(pattern.clone())
                .escape('\\')
                .or(organizations::external_id.eq(q))
                .or(organizations::id.eq(q)),
        )
        .order(organizations::name.asc())
        .limit(limit)
        .select(Organization::as_select())
        .load(conn)?;
    let found_users = users::table
        .filter(
            lower(users::email)
                .like(pattern.clone())
                .escape('\\')
                .or(lower(users::first_name).like(pattern.clone()).escape('\\'))
                .or(lower(users::last_name).like(pattern).escape('\\'))
                .or(users::external_id.eq(q))
                .or(users::id.eq(q)),
        )
        .order(users::email.asc())
        .limit(limit)
        .select(User::as_select())
        .load(conn)?;
    Ok(orgs
        .into_iter()
        .map(TargetView::of_org)
        .chain(found_users.into_iter().map(TargetView::of_user))
        .collect())
}

/// Whether any rule, in any environment, targets `subject` (a Flagpole id).
pub fn is_targeted(conn: &mut DbConn, subject: &str) -> Result<bool> {
    Ok(diesel::select(diesel::dsl::exists(
        targets::table.filter(targets::target_id.eq(subject)),
    ))
    .get_result(conn)?)
}

/// Removes `subject` (a user or an organization being deleted) from every
/// rule that targets it, in the caller's transaction, and tells the model
/// which rules changed. Returns how many targets went.
pub fn forget_subject(conn: &mut DbConn, subject: &str) -> Result<usize> {
    let rules: Vec<(FlagId, EnvironmentId)> = targets::table
        .filter(targets::target_id.eq(subject))
        .select((targets::flag_id, targets::environment_id))
        .load(conn)?;
    let removed =
        diesel::delete(targets::table.filter(targets::target_id.eq(subject))).execute(conn)?;
    for (flag, env) in &rules {
        crate::changes::changed(conn, crate::changes::Changed::Rule(flag, env))?;
    }
    Ok(removed)
}
