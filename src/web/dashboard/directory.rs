//! Organizations and users pages, with memberships.

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use askama::Template;
use serde::Deserialize;

use super::context::{Ctx, Form, Layout};
use super::paging::{load_clamped, page_param, query_string, Paging};
use crate::directory::organizations::{self, NewOrganization, OrganizationPatch};
use crate::directory::users::{self, NewUser, UserPatch};
use crate::directory::{self, memberships, Organization, User};
use crate::error::{Entity, Error, FieldErrors, Result};
use crate::ids::{OrgId, SessionId, UserId};
use crate::tokens::sessions;
use crate::web::routes::Routes;
use crate::web::{redirect, render, render_with_status, Surface};

pub fn routes(cfg: &mut web::ServiceConfig) {
    Routes::new(cfg, "", Surface::Dashboard)
        .get("/organizations", list_orgs)
        .post("/organizations", create_org)
        .get("/organizations/new", new_org)
        .get("/organizations/{id}", show_org)
        .post("/organizations/{id}", update_org)
        .post("/organizations/{id}/delete", delete_org)
        .post("/organizations/{id}/members", add_member)
        .post(
            "/organizations/{id}/members/{user_id}/remove",
            remove_member,
        )
        .get("/users", list_users)
        .post("/users", create_user)
        .get("/users/new", new_user)
        .get("/users/{id}", show_user)
        .post("/users/{id}", update_user)
        .post("/users/{id}/delete", delete_user)
        .post(
            "/users/{id}/sessions/{session_id}/revoke",
            revoke_user_session,
        );
}

fn org_id(text: &str) -> Result<OrgId> {
    OrgId::parse(text).ok_or(Error::NotFound(Entity::Organization))
}

fn user_id(text: &str) -> Result<UserId> {
    UserId::parse(text).ok_or(Error::NotFound(Entity::User))
}

/// What the organization form sends: every field, so the patch is whole.
struct OrgFields {
    name: String,
    external_id: String,
}

struct UserFields {
    email: String,
    first_name: String,
    last_name: String,
    external_id: String,
}

const PER_PAGE: i64 = 25;

#[derive(Deserialize)]
struct ListQuery {
    q: Option<String>,
    page: Option<String>,
}

struct OrgRow {
    org: Organization,
    members: i64,
}

#[derive(Template)]
#[template(path = "directory/organizations.html")]
struct OrgListPage {
    layout: Layout,
    rows: Vec<OrgRow>,
    q: String,
    paging: Paging,
}

async fn list_orgs(ctx: Ctx, query: web::Query<ListQuery>) -> Result<HttpResponse> {
    let q = query.q.clone().unwrap_or_default();
    let page = page_param(query.page.as_deref());
    let needle = q.clone();
    let (rows, total) = ctx
        .state
        .read(move |conn| {
            load_clamped(page, PER_PAGE, |p| {
                organizations::page(conn, &needle, p, PER_PAGE)
            })
        })
        .await?;
    render(&OrgListPage {
        layout: ctx.layout("Organizations", "organizations"),
        rows: rows
            .into_iter()
            .map(|(org, members)| OrgRow { org, members })
            .collect(),
        paging: Paging::new(page, PER_PAGE, total, query_string(&[("q", &q)])),
        q,
    })
}

#[derive(Template)]
#[template(path = "directory/organization_form.html")]
struct OrgFormPage {
    layout: Layout,
    /// `None` when creating.
    org: Option<Organization>,
    name: String,
    external_id: String,
    errors: FieldErrors,
    members: Vec<User>,
    member_key: String,
    member_error: Option<String>,
    created_at: String,
}

async fn new_org(ctx: Ctx) -> Result<HttpResponse> {
    ctx.require_editor()?;
    render(&OrgFormPage {
        layout: ctx.layout("New organization", "organizations"),
        org: None,
        name: String::new(),
        external_id: String::new(),
        errors: FieldErrors::default(),
        members: Vec::new(),
        member_key: String::new(),
        member_error: None,
        created_at: String::new(),
    })
}

fn org_fields(form: &Form) -> OrgFields {
    OrgFields {
        name: form.get("name"),
        external_id: form.get("external_id"),
    }
}

async fn create_org(ctx: Ctx, form: Form) -> Result<HttpResponse> {
    ctx.require_editor()?;
    let input = NewOrganization {
        name: form.get("name"),
        external_id: form.get("external_id"),
    };
    let (name, external_id) = (input.name.clone(), input.external_id.clone());
    let actor = ctx.actor();
    match ctx
        .state
        .write(move |conn| organizations::create(conn, &actor, &input))
        .await
    {
        Ok(org) => {
            ctx.flash(format!("Created {}. Add its members below.", org.name));
            Ok(redirect(&format!("/organizations/{}", org.id)))
        }
        Err(error) if error.field_errors().is_some() => render_with_status(
            &OrgFormPage {
                layout: ctx.layout("New organization", "organizations"),
                org: None,
                name,
                external_id,
                errors: error.field_errors().unwrap_or_default(),
                members: Vec::new(),
                member_key: String::new(),
                member_error: None,
                created_at: String::new(),
            },
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        Err(other) => Err(other),
    }
}

/// The organization page, optionally with a rejected edit or membership form.
async fn org_page(
    ctx: &Ctx,
    id: OrgId,
    edit: Option<(OrgFields, FieldErrors)>,
    member: Option<(String, String)>,
) -> Result<HttpResponse> {
    let (org, members) = ctx
        .state
        .read(move |conn| {
            let org = organizations::get(conn, &id)?;
            let members = directory::members_of(conn, &org.id)?;
            Ok((org, members))
        })
        .await?;
    let status = if edit.is_some() || member.is_some() {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    let (name, external_id, errors) = match edit {
        Some((input, errors)) => (input.name, input.external_id, errors),
        None => (
            org.name.clone(),
            org.external_id
                .as_ref()
                .map(|e| e.to_string())
                .unwrap_or_default(),
            FieldErrors::default(),
        ),
    };
    let (member_key, member_error) = match member {
        Some((key, error)) => (key, Some(error)),
        None => (String::new(), None),
    };
    render_with_status(
        &OrgFormPage {
            layout: ctx.layout(org.name.clone(), "organizations"),
            created_at: org.created_at.human(),
            org: Some(org),
            name,
            external_id,
            errors,
            members,
            member_key,
            member_error,
        },
        status,
    )
}

async fn show_org(ctx: Ctx, path: web::Path<String>) -> Result<HttpResponse> {
    org_page(&ctx, org_id(&path)?, None, None).await
}

async fn update_org(ctx: Ctx, path: web::Path<String>, form: Form) -> Result<HttpResponse> {
    ctx.require_editor()?;
    let id = org_id(&path)?;
    let fields = org_fields(&form);
    let patch = OrganizationPatch {
        name: Some(fields.name.clone()),
        external_id: Some(fields.external_id.clone()),
    };
    let actor = ctx.actor();
    let target = id.clone();
    match ctx
        .state
        .write(move |conn| organizations::update(conn, &actor, &target, &patch))
        .await
    {
        Ok(org) => {
            ctx.flash(format!("Saved {}.", org.name));
            Ok(redirect(&format!("/organizations/{}", org.id)))
        }
        Err(error) => match error.field_errors() {
            Some(errors) => org_page(&ctx, id, Some((fields, errors)), None).await,
            None => Err(error),
        },
    }
}

async fn delete_org(ctx: Ctx, path: web::Path<String>, _form: Form) -> Result<HttpResponse> {
    ctx.require_editor()?;
    let id = org_id(&path)?;
    let actor = ctx.actor();
    ctx.state
        .write(move |conn| organizations::delete(conn, &actor, &id))
        .await?;
    ctx.flash("Deleted the organization, its memberships and the flag targets that named it.");
    Ok(redirect("/organizations"))
}

async fn add_member(ctx: Ctx, path: web::Path<String>, form: Form) -> Result<HttpResponse> {
    ctx.require_editor()?;
    let id = org_id(&path)?;
    let key = form.get("user");
    let actor = ctx.actor();
    let (target, k) = (id.clone(), key.clone());
    match ctx
        .state
        .write(move |conn| {
            let org = organizations::get(conn, &target)?;
            let Some(user) = directory::find_user_by_any(conn, &k)? else {
                return Err(Error::invalid(
                    "user",
                    "No user has this email, id or external id.",
                ));
            };
            memberships::add(conn, &actor, &org, &user, "user")?;
            Ok(user)
        })
        .await
    {
        Ok(user) => {
            ctx.flash(format!("Added {} to the organization.", user.email));
            Ok(redirect(&format!("/organizations/{id}")))
        }
        Err(error) => match error.field_errors() {
            Some(errors) => {
                let message = errors.get("user").unwrap_or("Check the user.").to_string();
                org_page(&ctx, id, None, Some((key, message))).await
            }
            None => Err(error),
        },
    }
}

async fn remove_member(
    ctx: Ctx,
    path: web::Path<(String, String)>,
    form: Form,
) -> Result<HttpResponse> {
    ctx.require_editor()?;
    let (org_key, user_key) = path.into_inner();
    let (org, user) = (org_id(&org_key)?, user_id(&user_key)?);
    let actor = ctx.actor();
    let (o, u) = (org.clone(), user.clone());
    ctx.state
        .write(move |conn| {
            let org = organizations::get(conn, &o)?;
            let user = users::get(conn, &u)?;
            memberships::remove(conn, &actor, &org, &user)
        })
        .await?;
    let (org_id, user_id) = (org, user);
    ctx.flash("Removed the membership.");
    let back = if form.get("return_to") == "user" {
        format!("/users/{user_id}")
    } else {
        format!("/organizations/{org_id}")
    };
    Ok(redirect(&back))
}

#[derive(Template)]
#[template(path = "directory/users.html")]
struct UserListPage {
    layout: Layout,
    rows: Vec<User>,
    q: String,
    paging: Paging,
}

async fn list_users(ctx: Ctx, query: web::Query<ListQuery>) -> Result<HttpResponse> {
    let q = query.q.clone().unwrap_or_default();
    let page = page_param(query.page.as_deref());
    let needle = q.clone();
    let (rows, total) = ctx
        .state
        .read(move |conn| load_clamped(page, PER_PAGE, |p| users::page(conn, &needle, p, PER_PAGE)))
        .await?;
    render(&UserListPage {
        layout: ctx.layout("Users", "users"),
        rows,
        paging: Paging::new(page, PER_PAGE, total, query_string(&[("q", &q)])),
        q,
    })
}

#[derive(Template)]
#[template(path = "directory/user_form.html")]
struct UserFormPage {
    layout: Layout,
    user: Option<User>,
    email: String,
    first_name: String,
    last_name: String,
    external_id: String,
    errors: FieldErrors,
    organizations: Vec<Organization>,
    created_at: String,
    sessions: Vec<SessionRow>,
}

/// A user's active token session, as the user page lists it.
struct SessionRow {
    id: SessionId,
    environment: String,
    organization: String,
    started: String,
    last_refreshed: String,
}

fn user_fields(form: &Form) -> UserFields {
    UserFields {
        email: form.get("email"),
        first_name: form.get("first_name"),
        last_name: form.get("last_name"),
        external_id: form.get("external_id"),
    }
}

async fn new_user(ctx: Ctx) -> Result<HttpResponse> {
    ctx.require_editor()?;
    render(&UserFormPage {
        layout: ctx.layout("New user", "users"),
        user: None,
        email: String::new(),
        first_name: String::new(),
        last_name: String::new(),
        external_id: String::new(),
        errors: FieldErrors::default(),
        organizations: Vec::new(),
        created_at: String::new(),
        sessions: Vec::new(),
    })
}

async fn create_user(ctx: Ctx, form: Form) -> Result<HttpResponse> {
    ctx.require_editor()?;
    let copy = user_fields(&form);
    let input = NewUser {
        email: copy.email.clone(),
        first_name: copy.first_name.clone(),
        last_name: copy.last_name.clone(),
        external_id: copy.external_id.clone(),
    };
    let actor = ctx.actor();
    match ctx
        .state
        .write(move |conn| users::create(conn, &actor, &input))
        .await
    {
        Ok(user) => {
            ctx.flash(format!("Created {}.", user.email));
            Ok(redirect(&format!("/users/{}", user.id)))
        }
        Err(error) if error.field_errors().is_some() => render_with_status(
            &UserFormPage {
                layout: ctx.layout("New user", "users"),
                user: None,
                email: copy.email,
                first_name: copy.first_name,
                last_name: copy.last_name,
                external_id: copy.external_id,
                errors: error.field_errors().unwrap_or_default(),
                organizations: Vec::new(),
                created_at: String::new(),
                sessions: Vec::new(),
            },
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        Err(other) => Err(other),
    }
}

async fn user_page(
    ctx: &Ctx,
    id: UserId,
    edit: Option<(UserFields, FieldErrors)>,
) -> Result<HttpResponse> {
    let (user, organizations, active) = ctx
        .state
        .read(move |conn| {
            let user = users::get(conn, &id)?;
            let orgs = directory::organizations_of(conn, &user.id)?;
            let active = sessions::active_sessions(conn, &user.id)?;
            Ok((user, orgs, active))
        })
        .await?;
    let session_rows = active
        .into_iter()
        .map(|s| SessionRow {
            environment: ctx
                .environments
                .iter()
                .find(|e| e.id == s.environment_id)
                .map_or_else(|| s.environment_id.to_string(), |e| e.name.clone()),
            organization: s
                .organization_id
                .as_ref()
                .and_then(|o| organizations.iter().find(|org| &org.id == o))
                .map_or_else(
                    || {
                        s.organization_id
                            .as_ref()
                            .map(|o| o.to_string())
                            .unwrap_or_default()
                    },
                    |o| o.name.clone(),
                ),
            started: s.created_at.human(),
            last_refreshed: s.last_refreshed_at.human(),
            id: s.id,
        })
        .collect();
    let (status, input, errors) = match edit {
        Some((input, errors)) => (StatusCode::UNPROCESSABLE_ENTITY, input, errors),
        None => (
            StatusCode::OK,
            UserFields {
                email: user.email.to_string(),
                first_name: user.first_name.clone(),
                last_name: user.last_name.clone(),
                external_id: user
                    .external_id
                    .as_ref()
                    .map(|e| e.to_string())
                    .unwrap_or_default(),
            },
            FieldErrors::default(),
        ),
    };
    render_with_status(
        &UserFormPage {
            layout: ctx.layout(user.display_name(), "users"),
            created_at: user.created_at.human(),
            user: Some(user),
            email: input.email,
            first_name: input.first_name,
            last_name: input.last_name,
            external_id: input.external_id,
            errors,
            organizations,
            sessions: session_rows,
        },
        status,
    )
}

async fn show_user(ctx: Ctx, path: web::Path<String>) -> Result<HttpResponse> {
    user_page(&ctx, user_id(&path)?, None).await
}

async fn update_user(ctx: Ctx, path: web::Path<String>, form: Form) -> Result<HttpResponse> {
    ctx.require_editor()?;
    let id = user_id(&path)?;
    let copy = user_fields(&form);
    let patch = UserPatch {
        email: Some(copy.email.clone()),
        first_name: Some(copy.first_name.clone()),
        last_name: Some(copy.last_name.clone()),
        external_id: Some(copy.external_id.clone()),
    };
    let actor = ctx.actor();
    let target = id.clone();
    match ctx
        .state
        .write(move |conn| users::update(conn, &actor, &target, &patch))
        .await
    {
        Ok(user) => {
            ctx.flash(format!("Saved {}.", user.email));
            Ok(redirect(&format!("/users/{}", user.id)))
        }
        Err(error) => match error.field_errors() {
            Some(errors) => user_page(&ctx, id, Some((copy, errors))).await,
            None => Err(error),
        },
    }
}

async fn delete_user(ctx: Ctx, path: web::Path<String>, _form: Form) -> Result<HttpResponse> {
    ctx.require_editor()?;
    let id = user_id(&path)?;
    let actor = ctx.actor();
    ctx.state
        .write(move |conn| users::delete(conn, &actor, &id))
        .await?;
    ctx.flash("Deleted the user, their memberships and the flag targets that named them.");
    Ok(redirect("/users"))
}

async fn revoke_user_session(
    ctx: Ctx,
    path: web::Path<(String, String)>,
    _form: Form,
) -> Result<HttpResponse> {
    ctx.require_editor()?;
    let (user_key, session_key) = path.into_inner();
    let user_id = user_id(&user_key)?;
    let session_id = SessionId::parse(&session_key).ok_or(Error::NotFound(Entity::Session))?;
    let actor = ctx.actor();
    let uid = user_id.clone();
    ctx.state
        .write(move |conn| {
            let active = sessions::active_sessions(conn, &uid)?;
            if !active.iter().any(|s| s.id == session_id) {
                return Err(Error::NotFound(Entity::Session));
            }
            sessions::revoke_by_admin(conn, &actor, &session_id)
        })
        .await?;
    ctx.flash("Revoked the session: its refresh token no longer works. Its current access token expires within minutes.");
    Ok(redirect(&format!("/users/{user_id}")))
}
