//! Environments, the audit log and admin accounts.

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use askama::Template;
use serde::Deserialize;

use super::context::{Ctx, Form, Layout};
use super::paging::{load_clamped, page_param, query_string, Paging};
use super::{redirect, render, render_with_status};
use crate::admins::{self, role_of, Role};
use crate::audit::{self, describe_change, AuditFilter};
use crate::environments::{self, EnvironmentInput, PALETTE};
use crate::error::{AppError, FieldErrors};
use crate::ids::human_time;
use crate::keys::SigningAlgorithm;
use crate::models::{AuditEvent, Environment};
use crate::{api_keys, signing};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/environments", web::get().to(environments_page))
        .route("/environments", web::post().to(create_environment))
        .route("/environments/{slug}", web::post().to(update_environment))
        .route(
            "/environments/{slug}/move",
            web::post().to(move_environment),
        )
        .route(
            "/environments/{slug}/api-keys",
            web::post().to(create_api_key),
        )
        .route(
            "/environments/{slug}/api-keys/{id}/revoke",
            web::post().to(revoke_api_key),
        )
        .route(
            "/environments/{slug}/signing-key",
            web::post().to(rotate_signing_key),
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

/// An environment with its credentials, as the Environments page shows it.
struct EnvironmentDetails {
    env: Environment,
    api_keys: Vec<ApiKeyRow>,
    signing_kid: String,
    signing_algorithm: String,
    signing_since: String,
}

struct ApiKeyRow {
    id: String,
    name: String,
    prefix: String,
    created: String,
    created_by: String,
    last_used: String,
    revoked: bool,
}

/// The secret of a key just created, shown once.
struct NewSecret {
    env_name: String,
    name: String,
    secret: String,
}

#[derive(Template)]
#[template(path = "environments.html")]
struct EnvironmentsPage {
    layout: Layout,
    details: Vec<EnvironmentDetails>,
    palette: &'static [(&'static str, &'static str)],
    algorithms: Vec<&'static str>,
    jwks_url: String,
    sdk: SdkOptions,
    new_name: String,
    new_slug: String,
    new_color: String,
    new_confirm: bool,
    errors: FieldErrors,
    /// Which environment's edit form the errors belong to, if not the new one.
    errors_for: String,
    new_secret: Option<NewSecret>,
}

/// How a WorkOS SDK client reaches this Flagpole: its options besides the
/// key and the client id.
struct SdkOptions {
    hostname: String,
    port: Option<u16>,
    https: bool,
}

impl SdkOptions {
    fn of(public_url: &str) -> SdkOptions {
        let url = reqwest::Url::parse(public_url).ok();
        SdkOptions {
            hostname: url
                .as_ref()
                .and_then(|u| u.host_str().map(str::to_string))
                .unwrap_or_else(|| "localhost".into()),
            port: url.as_ref().and_then(|u| u.port()),
            https: url.is_some_and(|u| u.scheme() == "https"),
        }
    }
}

/// What the page shows besides the environments themselves.
#[derive(Default)]
struct EnvironmentsView {
    new_name: String,
    new_slug: String,
    new_color: Option<String>,
    new_confirm: bool,
    errors: FieldErrors,
    errors_for: String,
    new_secret: Option<NewSecret>,
}

async fn render_environments(ctx: &Ctx, view: EnvironmentsView) -> Result<HttpResponse, AppError> {
    let state = ctx.state.clone();
    let envs = ctx.environments.clone();
    let details = ctx
        .state
        .db(move |conn| {
            let mut out = Vec::with_capacity(envs.len());
            for env in envs {
                let key = signing::active_key(conn, &state.sealer, &env.id)?;
                let api_keys = api_keys::list(conn, &env.id)?
                    .into_iter()
                    .map(|k| ApiKeyRow {
                        created: human_time(&k.created_at),
                        last_used: k
                            .last_used_at
                            .as_deref()
                            .map(human_time)
                            .unwrap_or_else(|| "never".into()),
                        revoked: k.revoked_at.is_some(),
                        id: k.id,
                        name: k.name,
                        prefix: k.prefix,
                        created_by: k.created_by,
                    })
                    .collect();
                out.push(EnvironmentDetails {
                    signing_kid: key.id,
                    signing_algorithm: key.algorithm,
                    signing_since: human_time(&key.created_at),
                    api_keys,
                    env,
                });
            }
            Ok(out)
        })
        .await?;
    let status = if view.errors.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    render_with_status(
        &EnvironmentsPage {
            layout: ctx.layout("Environments", "environments"),
            details,
            palette: PALETTE,
            algorithms: SigningAlgorithm::ALL.iter().map(|a| a.as_str()).collect(),
            jwks_url: format!("{}/.well-known/jwks.json", ctx.state.config.public_url),
            sdk: SdkOptions::of(&ctx.state.config.public_url),
            new_name: view.new_name,
            new_slug: view.new_slug,
            new_color: view.new_color.unwrap_or_else(|| PALETTE[1].1.to_string()),
            new_confirm: view.new_confirm,
            errors: view.errors,
            errors_for: view.errors_for,
            new_secret: view.new_secret,
        },
        status,
    )
}

async fn environments_page(ctx: Ctx) -> Result<HttpResponse, AppError> {
    render_environments(&ctx, EnvironmentsView::default()).await
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
    let view = EnvironmentsView {
        new_name: input.name.clone(),
        new_slug: input.slug.clone(),
        new_color: Some(input.color.clone()),
        new_confirm: input.require_confirmation,
        ..Default::default()
    };
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
        Err(AppError::Invalid(errors)) => {
            render_environments(&ctx, EnvironmentsView { errors, ..view }).await
        }
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
        Err(AppError::Invalid(errors)) => {
            let view = EnvironmentsView {
                errors,
                errors_for: env.slug,
                ..Default::default()
            };
            render_environments(&ctx, view).await
        }
        Err(other) => Err(other),
    }
}

async fn create_api_key(
    ctx: Ctx,
    path: web::Path<String>,
    form: Form,
) -> Result<HttpResponse, AppError> {
    ctx.require_editor()?;
    let env = ctx.environment_by_slug(&path)?;
    let name = form.get("name");
    let actor = ctx.actor();
    let env_id = env.id.clone();
    match ctx
        .state
        .db(move |conn| api_keys::create(conn, &actor, &env_id, &name))
        .await
    {
        Ok((key, secret)) => {
            let view = EnvironmentsView {
                new_secret: Some(NewSecret {
                    env_name: env.name,
                    name: key.name,
                    secret,
                }),
                ..Default::default()
            };
            render_environments(&ctx, view).await
        }
        Err(AppError::Invalid(errors)) => {
            let errors = FieldErrors::single(
                "key_name",
                errors.get("name").unwrap_or("Name the key.").to_string(),
            );
            let view = EnvironmentsView {
                errors,
                errors_for: env.slug,
                ..Default::default()
            };
            render_environments(&ctx, view).await
        }
        Err(other) => Err(other),
    }
}

async fn revoke_api_key(
    ctx: Ctx,
    path: web::Path<(String, String)>,
    _form: Form,
) -> Result<HttpResponse, AppError> {
    ctx.require_editor()?;
    let (slug, id) = path.into_inner();
    let env = ctx.environment_by_slug(&slug)?;
    let actor = ctx.actor();
    let key = ctx
        .state
        .db(move |conn| {
            let key = api_keys::list(conn, &env.id)?
                .into_iter()
                .find(|k| k.id == id)
                .ok_or(AppError::NotFound)?;
            api_keys::revoke(conn, &actor, &key.id)
        })
        .await?;
    ctx.flash(format!(
        "Revoked the key {}. Calls made with it fail from now on.",
        key.name
    ));
    Ok(redirect("/environments"))
}

async fn rotate_signing_key(
    ctx: Ctx,
    path: web::Path<String>,
    form: Form,
) -> Result<HttpResponse, AppError> {
    ctx.require_editor()?;
    let env = ctx.environment_by_slug(&path)?;
    let algorithm = SigningAlgorithm::parse(&form.get("algorithm"))
        .ok_or_else(|| AppError::BadRequest("Choose ES256, RS256 or EdDSA.".into()))?;
    let actor = ctx.actor();
    let state = ctx.state.clone();
    let env_id = env.id.clone();
    let key = ctx
        .state
        .db(move |conn| {
            signing::rotate(
                conn,
                &state.sealer,
                &actor,
                &env_id,
                Some(algorithm),
                state.config.access_token_ttl,
            )
        })
        .await?;
    ctx.state.signers.forget(&env.id);
    ctx.flash(format!(
        "{} now signs with a new {} key ({}). The old public key stays in the JWKS until its tokens expire.",
        env.name, key.algorithm, key.id
    ));
    Ok(redirect("/environments"))
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
        .db(move |conn| {
            Ok(load_clamped(page, PER_PAGE, |p| {
                audit::list(conn, &filter, p, PER_PAGE)
            })?)
        })
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
