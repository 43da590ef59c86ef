//! Organizations and users pages, with memberships.

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use askama::Template;
use serde::Deserialize;

use super::context::{Ctx, Form, Layout};
use super::paging::{load_clamped, page_param, query_string, Paging};
use super::{redirect, render, render_with_status};
use crate::directory::{self, OrganizationInput, UserInput};
use crate::error::{AppError, FieldErrors};
use crate::ids::human_time;
use crate::models::{Organization, User};
use crate::sessions;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/organizations", web::get().to(list_orgs))
        .route("/organizations", web::post().to(create_org))
        .route("/organizations/new", web::get().to(new_org))
        .route("/organizations/{id}", web::get().to(show_org))
        .route("/organizations/{id}", web::post().to(update_org))
        .route("/organizations/{id}/delete", web::post().to(delete_org))
        .route("/organizations/{id}/members", web::post().to(add_member))
        .route(
            "/organizations/{id}/members/{user_id}/remove",
            web::post().to(remove_member),
        )
        .route("/users", web::get().to(list_users))
        .route("/users", web::post().to(create_user))
        .route("/users/new", web::get().to(new_user))
        .route("/users/{id}", web::get().to(show_user))
        .route("/users/{id}", web::post().to(update_user))
        .route("/users/{id}/delete", web::post().to(delete_user))
        .route(
            "/users/{id}/sessions/{session_id}/revoke",
            web::post().to(revoke_user_session),
        );
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

async fn list_orgs(ctx: Ctx, query: web::Query<ListQuery>) -> Result<HttpResponse, AppError> {
    let q = query.q.clone().unwrap_or_default();
    let page = page_param(query.page.as_deref());
    let needle = q.clone();
    let (rows, total) = ctx
        .state
        .db(move |conn| {
            Ok(load_clamped(page, PER_PAGE, |p| {
                directory::list_orgs(conn, &needle, p, PER_PAGE)
            })?)
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

async fn new_org(ctx: Ctx) -> Result<HttpResponse, AppError> {
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

fn org_input(form: &Form) -> OrganizationInput {
    OrganizationInput {
        name: form.get("name"),
        external_id: form.get("external_id"),
    }
}

async fn create_org(ctx: Ctx, form: Form) -> Result<HttpResponse, AppError> {
    ctx.require_editor()?;
    let input = org_input(&form);
    let (name, external_id) = (input.name.clone(), input.external_id.clone());
    let actor = ctx.actor();
    match ctx
        .state
        .db(move |conn| directory::create_org(conn, &actor, &input))
        .await
    {
        Ok(org) => {
            ctx.flash(format!("Created {}. Add its members below.", org.name));
            Ok(redirect(&format!("/organizations/{}", org.id)))
        }
        Err(AppError::Invalid(errors)) => render_with_status(
            &OrgFormPage {
                layout: ctx.layout("New organization", "organizations"),
                org: None,
                name,
                external_id,
                errors,
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
    id: String,
    edit: Option<(OrganizationInput, FieldErrors)>,
    member: Option<(String, String)>,
) -> Result<HttpResponse, AppError> {
    let (org, members) = ctx
        .state
        .db(move |conn| {
            let org = directory::get_org(conn, &id)?;
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
            org.external_id.clone().unwrap_or_default(),
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
            created_at: human_time(&org.created_at),
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

async fn show_org(ctx: Ctx, path: web::Path<String>) -> Result<HttpResponse, AppError> {
    org_page(&ctx, path.into_inner(), None, None).await
}

async fn update_org(
    ctx: Ctx,
    path: web::Path<String>,
    form: Form,
) -> Result<HttpResponse, AppError> {
    ctx.require_editor()?;
    let id = path.into_inner();
    let input = org_input(&form);
    let copy = org_input(&form);
    let actor = ctx.actor();
    let org_id = id.clone();
    match ctx
        .state
        .db(move |conn| directory::update_org(conn, &actor, &org_id, &input))
        .await
    {
        Ok(org) => {
            ctx.flash(format!("Saved {}.", org.name));
            Ok(redirect(&format!("/organizations/{}", org.id)))
        }
        Err(AppError::Invalid(errors)) => org_page(&ctx, id, Some((copy, errors)), None).await,
        Err(other) => Err(other),
    }
}

async fn delete_org(
    ctx: Ctx,
    path: web::Path<String>,
    _form: Form,
) -> Result<HttpResponse, AppError> {
    ctx.require_editor()?;
    let id = path.into_inner();
    let actor = ctx.actor();
    ctx.state
        .db(move |conn| directory::delete_org(conn, &actor, &id))
        .await?;
    ctx.flash("Deleted the organization, its memberships and the flag targets that named it.");
    Ok(redirect("/organizations"))
}

async fn add_member(
    ctx: Ctx,
    path: web::Path<String>,
    form: Form,
) -> Result<HttpResponse, AppError> {
    ctx.require_editor()?;
    let id = path.into_inner();
    let key = form.get("user");
    let actor = ctx.actor();
    let (org_id, k) = (id.clone(), key.clone());
    match ctx
        .state
        .db(move |conn| directory::add_membership(conn, &actor, &org_id, &k))
        .await
    {
        Ok(user) => {
            ctx.flash(format!("Added {} to the organization.", user.email));
            Ok(redirect(&format!("/organizations/{id}")))
        }
        Err(AppError::Invalid(errors)) => {
            let message = errors.get("user").unwrap_or("Check the user.").to_string();
            org_page(&ctx, id, None, Some((key, message))).await
        }
        Err(other) => Err(other),
    }
}

async fn remove_member(
    ctx: Ctx,
    path: web::Path<(String, String)>,
    form: Form,
) -> Result<HttpResponse, AppError> {
    ctx.require_editor()?;
    let (org_id, user_id) = path.into_inner();
    let actor = ctx.actor();
    let (o, u) = (org_id.clone(), user_id.clone());
    ctx.state
        .db(move |conn| directory::remove_membership(conn, &actor, &o, &u))
        .await?;
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

async fn list_users(ctx: Ctx, query: web::Query<ListQuery>) -> Result<HttpResponse, AppError> {
    let q = query.q.clone().unwrap_or_default();
    let page = page_param(query.page.as_deref());
    let needle = q.clone();
    let (rows, total) = ctx
        .state
        .db(move |conn| {
            Ok(load_clamped(page, PER_PAGE, |p| {
                directory::list_users(conn, &needle, p, PER_PAGE)
            })?)
        })
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
    id: String,
    environment: String,
    organization: String,
    started: String,
    last_refreshed: String,
}

fn user_input(form: &Form) -> UserInput {
    UserInput {
        email: form.get("email"),
        first_name: form.get("first_name"),
        last_name: form.get("last_name"),
        external_id: form.get("external_id"),
    }
}

async fn new_user(ctx: Ctx) -> Result<HttpResponse, AppError> {
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

async fn create_user(ctx: Ctx, form: Form) -> Result<HttpResponse, AppError> {
    ctx.require_editor()?;
    let input = user_input(&form);
    let copy = user_input(&form);
    let actor = ctx.actor();
    match ctx
        .state
        .db(move |conn| directory::create_user(conn, &actor, &input))
        .await
    {
        Ok(user) => {
            ctx.flash(format!("Created {}.", user.email));
            Ok(redirect(&format!("/users/{}", user.id)))
        }
        Err(AppError::Invalid(errors)) => render_with_status(
            &UserFormPage {
                layout: ctx.layout("New user", "users"),
                user: None,
                email: copy.email,
                first_name: copy.first_name,
                last_name: copy.last_name,
                external_id: copy.external_id,
                errors,
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
    id: String,
    edit: Option<(UserInput, FieldErrors)>,
) -> Result<HttpResponse, AppError> {
    let (user, organizations, active) = ctx
        .state
        .db(move |conn| {
            let user = directory::get_user(conn, &id)?;
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
                .map_or_else(|| s.environment_id.clone(), |e| e.name.clone()),
            organization: s
                .organization_id
                .as_ref()
                .and_then(|o| organizations.iter().find(|org| &org.id == o))
                .map_or_else(
                    || s.organization_id.clone().unwrap_or_default(),
                    |o| o.name.clone(),
                ),
            started: human_time(&s.created_at),
            last_refreshed: human_time(&s.last_refreshed_at),
            id: s.id,
        })
        .collect();
    let (status, input, errors) = match edit {
        Some((input, errors)) => (StatusCode::UNPROCESSABLE_ENTITY, input, errors),
        None => (
            StatusCode::OK,
            UserInput {
                email: user.email.clone(),
                first_name: user.first_name.clone(),
                last_name: user.last_name.clone(),
                external_id: user.external_id.clone().unwrap_or_default(),
            },
            FieldErrors::default(),
        ),
    };
    render_with_status(
        &UserFormPage {
            layout: ctx.layout(user.display_name(), "users"),
            created_at: human_time(&user.created_at),
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

async fn show_user(ctx: Ctx, path: web::Path<String>) -> Result<HttpResponse, AppError> {
    user_page(&ctx, path.into_inner(), None).await
}

async fn update_user(
    ctx: Ctx,
    path: web::Path<String>,
    form: Form,
) -> Result<HttpResponse, AppError> {
    ctx.require_editor()?;
    let id = path.into_inner();
    let input = user_input(&form);
    let copy = user_input(&form);
    let actor = ctx.actor();
    let user_id = id.clone();
    match ctx
        .state
        .db(move |conn| directory::update_user(conn, &actor, &user_id, &input))
        .await
    {
        Ok(user) => {
            ctx.flash(format!("Saved {}.", user.email));
            Ok(redirect(&format!("/users/{}", user.id)))
        }
        Err(AppError::Invalid(errors)) => user_page(&ctx, id, Some((copy, errors))).await,
        Err(other) => Err(other),
    }
}

async fn delete_user(
    ctx: Ctx,
    path: web::Path<String>,
    _form: Form,
) -> Result<HttpResponse, AppError> {
    ctx.require_editor()?;
    let id = path.into_inner();
    let actor = ctx.actor();
    ctx.state
        .db(move |conn| directory::delete_user(conn, &actor, &id))
        .await?;
    ctx.flash("Deleted the user, their memberships and the flag targets that named them.");
    Ok(redirect("/users"))
}

async fn revoke_user_session(
    ctx: Ctx,
    path: web::Path<(String, String)>,
    _form: Form,
) -> Result<HttpResponse, AppError> {
    ctx.require_editor()?;
    let (user_id, session_id) = path.into_inner();
    let actor = ctx.actor();
    let uid = user_id.clone();
    ctx.state
        .db(move |conn| {
            let active = sessions::active_sessions(conn, &uid)?;
            if !active.iter().any(|s| s.id == session_id) {
                return Err(AppError::NotFound);
            }
            sessions::revoke_by_admin(conn, &actor, &session_id)
        })
        .await?;
    ctx.flash("Revoked the session: its refresh token no longer works. Its current access token expires within minutes.");
    Ok(redirect(&format!("/users/{user_id}")))
}
