//! Environments, the audit log and admin accounts.

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use askama::Template;
use serde::Deserialize;

use super::context::{Ctx, Form, Layout};
use super::paging::{page_param, query_string, Paging};
use super::{redirect, render, render_with_status};
use crate::admins::{self, role_of, Role};
use crate::audit::{self, describe_change, AuditFilter};
use crate::environments::{self, EnvironmentInput, PALETTE};
use crate::error::{AppError, FieldErrors};
use crate::ids::human_time;
use crate::models::{AuditEvent, Environment};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/environments", web::get().to(environments_page))
        .route("/environments", web::post().to(create_environment))
        .route("/environments/{slug}", web::post().to(update_environment))
        .route(
            "/environments/{slug}/move",
            web::post().to(move_environment),
        )
        .route("/audit", web::get().to(audit_page))
        .route("/admins", web::get().to(admins_page))
        .route("/admins", web::post().to(create_admin))
        .route("/admins/{id}/role", web::post().to(change_role))
        .route("/admins/{id}/delete", web::post().to(delete_admin));
}

/// An audit event as a table row.
pub struct AuditRow {
    pub when: String,
    pub actor: String,
    pub action: String,
    pub object_type: String,
    pub object_label: String,
    pub flag_slug: Option<String>,
    pub environment: Option<Environment>,
    pub summary: String,
}

pub fn audit_rows(events: Vec<AuditEvent>, envs: &[Environment]) -> Vec<AuditRow> {
    events
        .into_iter()
        .map(|e| AuditRow {
            when: human_time(&e.created_at),
            summary: describe_change(e.before_state.as_deref(), e.after_state.as_deref()),
            environment: e
                .environment_id
                .as_ref()
                .and_then(|id| envs.iter().find(|env| &env.id == id).cloned()),
            flag_slug: e.flag_id.as_ref().map(|_| e.object_label.clone()),
            actor: e.actor,
            action: e.action,
            object_type: e.object_type,
            object_label: e.object_label,
        })
        .collect()
}

#[derive(Template)]
#[template(path = "environments.html")]
struct EnvironmentsPage {
    layout: Layout,
    palette: &'static [(&'static str, &'static str)],
    new_name: String,
    new_slug: String,
    new_color: String,
    new_confirm: bool,
    errors: FieldErrors,
    /// Which environment's edit form the errors belong to, if not the new one.
    errors_for: String,
}

async fn environments_page(ctx: Ctx) -> Result<HttpResponse, AppError> {
    render(&EnvironmentsPage {
        layout: ctx.layout("Environments", "environments"),
        palette: PALETTE,
        new_name: String::new(),
        new_slug: String::new(),
        new_color: PALETTE[1].1.to_string(),
        new_confirm: false,
        errors: FieldErrors::default(),
        errors_for: String::new(),
    })
}

fn environment_input(form: &Form) -> EnvironmentInput {
    EnvironmentInput {
        name: form.get("name"),
        slug: form.get("slug"),
        color: form.get("color"),
        require_confirmation: form.checkbox("require_confirmation"),
    }
}

async fn create_environment(ctx: Ctx, form: Form) -> Result<HttpResponse, AppError> {
    ctx.require_editor()?;
    let input = environment_input(&form);
    let actor = ctx.actor();
    let (name, slug, color, confirm) = (
        input.name.clone(),
        input.slug.clone(),
        input.color.clone(),
        input.require_confirmation,
    );
    match ctx
        .state
        .db(move |conn| environments::create(conn, &actor, &input))
        .await
    {
        Ok(env) => {
            ctx.flash(format!(
                "Added {}. Every flag has a rule there: None, off.",
                env.name
            ));
            Ok(redirect("/environments"))
        }
        Err(AppError::Invalid(errors)) => render_with_status(
            &EnvironmentsPage {
                layout: ctx.layout("Environments", "environments"),
                palette: PALETTE,
                new_name: name,
                new_slug: slug,
                new_color: color,
                new_confirm: confirm,
                errors,
                errors_for: String::new(),
            },
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        Err(other) => Err(other),
    }
}

async fn update_environment(
    ctx: Ctx,
    path: web::Path<String>,
    form: Form,
) -> Result<HttpResponse, AppError> {
    ctx.require_editor()?;
    let env = ctx.environment_by_slug(&path)?;
    let input = environment_input(&form);
    let actor = ctx.actor();
    let id = env.id.clone();
    match ctx
        .state
        .db(move |conn| environments::update(conn, &actor, &id, &input))
        .await
    {
        Ok(env) => {
            ctx.flash(format!("Saved {}.", env.name));
            Ok(redirect("/environments"))
        }
        Err(AppError::Invalid(errors)) => render_with_status(
            &EnvironmentsPage {
                layout: ctx.layout("Environments", "environments"),
                palette: PALETTE,
                new_name: String::new(),
                new_slug: String::new(),
                new_color: PALETTE[1].1.to_string(),
                new_confirm: false,
                errors,
                errors_for: env.slug,
            },
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        Err(other) => Err(other),
    }
}

async fn move_environment(
    ctx: Ctx,
    path: web::Path<String>,
    form: Form,
) -> Result<HttpResponse, AppError> {
    ctx.require_editor()?;
    let env = ctx.environment_by_slug(&path)?;
    let up = form.get("direction") == "up";
    let actor = ctx.actor();
    ctx.state
        .db(move |conn| environments::move_by_one(conn, &actor, &env.id, up))
        .await?;
    Ok(redirect("/environments"))
}

#[derive(Deserialize)]
struct AuditQuery {
    environment: Option<String>,
    actor: Option<String>,
    page: Option<String>,
}

#[derive(Template)]
#[template(path = "audit.html")]
struct AuditPage {
    layout: Layout,
    rows: Vec<AuditRow>,
    environment: String,
    actor: String,
    paging: Paging,
}

async fn audit_page(ctx: Ctx, query: web::Query<AuditQuery>) -> Result<HttpResponse, AppError> {
    const PER_PAGE: i64 = 50;
    let environment = query.environment.clone().unwrap_or_default();
    let actor = query.actor.clone().unwrap_or_default();
    let filter = AuditFilter {
        flag_id: None,
        environment_id: ctx
            .environments
            .iter()
            .find(|e| e.slug == environment)
            .map(|e| e.id.clone()),
        actor: Some(actor.trim().to_string()).filter(|a| !a.is_empty()),
    };
    let page = page_param(query.page.as_deref());
    let (events, total) = ctx
        .state
        .db(move |conn| Ok(audit::list(conn, &filter, page, PER_PAGE)?))
        .await?;
    render(&AuditPage {
        layout: ctx.layout("Audit log", "audit"),
        rows: audit_rows(events, &ctx.environments),
        paging: Paging::new(
            page,
            PER_PAGE,
            total,
            query_string(&[("environment", &environment), ("actor", &actor)]),
        ),
        environment,
        actor,
    })
}

struct AdminRow {
    id: String,
    email: String,
    role: &'static str,
    created_at: String,
    is_self: bool,
}

#[derive(Template)]
#[template(path = "admins.html")]
struct AdminsPage {
    layout: Layout,
    rows: Vec<AdminRow>,
    email: String,
    role: String,
    errors: FieldErrors,
}

async fn admins_page_with(
    ctx: &Ctx,
    email: String,
    role: String,
    errors: FieldErrors,
) -> Result<HttpResponse, AppError> {
    let list = ctx.state.db(|conn| Ok(admins::list(conn)?)).await?;
    let status = if errors.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    let rows = list
        .into_iter()
        .map(|a| AdminRow {
            is_self: a.id == ctx.admin.id,
            role: role_of(&a).as_str(),
            created_at: human_time(&a.created_at),
            id: a.id,
            email: a.email,
        })
        .collect();
    render_with_status(
        &AdminsPage {
            layout: ctx.layout("Admins", "admins"),
            rows,
            email,
            role,
            errors,
        },
        status,
    )
}

async fn admins_page(ctx: Ctx) -> Result<HttpResponse, AppError> {
    admins_page_with(&ctx, String::new(), "editor".into(), FieldErrors::default()).await
}

async fn create_admin(ctx: Ctx, form: Form) -> Result<HttpResponse, AppError> {
    ctx.require_owner()?;
    let email = form.get("email");
    let password = form.get("password");
    let role_text = form.get("role");
    let Some(role) = Role::parse(&role_text) else {
        return admins_page_with(
            &ctx,
            email,
            role_text,
            FieldErrors::single("role", "Choose owner, editor or viewer."),
        )
        .await;
    };
    let actor = ctx.actor();
    let e = email.clone();
    match ctx
        .state
        .db(move |conn| admins::create(conn, &actor, &e, &password, role))
        .await
    {
        Ok(admin) => {
            ctx.flash(format!(
                "Added {} as {}. Give them their password in person.",
                admin.email, admin.role
            ));
            Ok(redirect("/admins"))
        }
        Err(AppError::Invalid(errors)) => admins_page_with(&ctx, email, role_text, errors).await,
        Err(other) => Err(other),
    }
}

async fn change_role(
    ctx: Ctx,
    path: web::Path<String>,
    form: Form,
) -> Result<HttpResponse, AppError> {
    ctx.require_owner()?;
    let role = Role::parse(&form.get("role"))
        .ok_or_else(|| AppError::BadRequest("Choose owner, editor or viewer.".into()))?;
    let actor = ctx.actor();
    let id = path.into_inner();
    let admin = ctx
        .state
        .db(move |conn| admins::set_role(conn, &actor, &id, role))
        .await?;
    ctx.flash(format!("{} is now {}.", admin.email, admin.role));
    Ok(redirect("/admins"))
}

async fn delete_admin(
    ctx: Ctx,
    path: web::Path<String>,
    _form: Form,
) -> Result<HttpResponse, AppError> {
    ctx.require_owner()?;
    let id = path.into_inner();
    if id == ctx.admin.id {
        return Err(AppError::BadRequest(
            "You cannot remove your own account. Ask another owner.".into(),
        ));
    }
    let actor = ctx.actor();
    ctx.state
        .db(move |conn| admins::delete(conn, &actor, &id))
        .await?;
    ctx.flash("Removed the admin. Their sessions end at their next click.");
    Ok(redirect("/admins"))
}
