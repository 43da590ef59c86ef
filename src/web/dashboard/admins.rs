//! The Admins page, for owners: add admins, change roles, sign them out
//! everywhere, remove them; and every admin's own account page: the
//! sessions they have open, a password change, signing out everywhere.

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use askama::Template;

use super::context::{Ctx, Form, Layout};
use crate::admins::{self, Role};
use crate::error::{Entity, Error, FieldErrors, Result};
use crate::ids::AdminId;
use crate::web::routes::Routes;
use crate::web::{redirect, render_with_status, Surface};

pub fn routes(cfg: &mut web::ServiceConfig) {
    Routes::new(cfg, "", Surface::Dashboard)
        .get("/admins", admins_page)
        .post("/admins", create_admin)
        .post("/admins/{id}/role", change_role)
        .post("/admins/{id}/delete", delete_admin)
        .post("/admins/{id}/sign-out", sign_out_admin)
        .get("/account", account_page)
        .post("/account/password", change_password)
        .post("/account/sign-out-everywhere", sign_out_everywhere);
}

struct AdminRow {
    id: AdminId,
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
) -> Result<HttpResponse> {
    let list = ctx.state.read(admins::list).await?;
    let status = if errors.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    let rows = list
        .into_iter()
        .map(|a| AdminRow {
            is_self: a.id == ctx.admin.id,
            role: a.role.as_str(),
            created_at: a.created_at.human(),
            id: a.id,
            email: a.email.to_string(),
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

async fn admins_page(ctx: Ctx) -> Result<HttpResponse> {
    admins_page_with(&ctx, String::new(), "editor".into(), FieldErrors::default()).await
}

fn admin_id(text: &str) -> Result<AdminId> {
    AdminId::parse(text).ok_or(Error::NotFound(Entity::Admin))
}

async fn create_admin(ctx: Ctx, form: Form) -> Result<HttpResponse> {
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
    let checked = admins::check_new(&email, &password);
    let created = match checked {
        Ok(valid) => {
            let hash = ctx.state.hasher.hash(password).await?;
            ctx.state
                .write(move |conn| admins::insert(conn, &actor, &valid, &hash, role))
                .await
        }
        Err(e) => Err(e),
    };
    match created {
        Ok(admin) => {
            ctx.flash(format!(
                "Added {} as {}. Give them their password in person.",
                admin.email, admin.role
            ));
            Ok(redirect("/admins"))
        }
        Err(error) => match error.field_errors() {
            Some(errors) => admins_page_with(&ctx, email, role_text, errors).await,
            None => Err(error),
        },
    }
}

async fn change_role(ctx: Ctx, path: web::Path<String>, form: Form) -> Result<HttpResponse> {
    ctx.require_owner()?;
    let role = Role::parse(&form.get("role"))
        .ok_or_else(|| Error::malformed("form", "Choose owner, editor or viewer."))?;
    let actor = ctx.actor();
    let id = admin_id(&path)?;
    let admin = ctx
        .state
        .write(move |conn| admins::set_role(conn, &actor, &id, role))
        .await?;
    ctx.flash(format!("{} is now {}.", admin.email, admin.role));
    Ok(redirect("/admins"))
}

async fn delete_admin(ctx: Ctx, path: web::Path<String>, _form: Form) -> Result<HttpResponse> {
    ctx.require_owner()?;
    let id = admin_id(&path)?;
    if id == ctx.admin.id {
        return Err(Error::Refused(crate::error::Refusal::NotPossible {
            message: "You cannot remove your own account. Ask another owner.".into(),
        }));
    }
    let actor = ctx.actor();
    ctx.state
        .write(move |conn| admins::delete(conn, &actor, &id))
        .await?;
    ctx.flash("Removed the admin. Their sessions end at their next click.");
    Ok(redirect("/admins"))
}

/// Ends every session of another admin (or of oneself): owners only.
async fn sign_out_admin(ctx: Ctx, path: web::Path<String>, _form: Form) -> Result<HttpResponse> {
    ctx.require_owner()?;
    let id = admin_id(&path)?;
    let actor = ctx.actor();
    let me = id == ctx.admin.id;
    let target = id.clone();
    let ended = ctx
        .state
        .write(move |conn| admins::sign_out_everywhere(conn, &actor, &target))
        .await?;
    if me {
        ctx.session.purge();
        return Ok(redirect("/login"));
    }
    ctx.flash(format!(
        "Ended {ended} session(s). They must sign in again."
    ));
    Ok(redirect("/admins"))
}

struct SessionRow {
    started: String,
    last_seen: String,
    device: String,
    current: bool,
}

#[derive(Template)]
#[template(path = "account.html")]
struct AccountPage {
    layout: Layout,
    email: String,
    role: &'static str,
    sessions: Vec<SessionRow>,
    errors: FieldErrors,
    idle_hours: u64,
    max_days: u64,
}

async fn account_page_with(ctx: &Ctx, errors: FieldErrors) -> Result<HttpResponse> {
    let id = ctx.admin.id.clone();
    let timeouts = ctx.state.config.session_timeouts;
    let sessions = ctx
        .state
        .read(move |conn| admins::sessions::list(conn, &id, &timeouts))
        .await?
        .into_iter()
        .map(|s| SessionRow {
            started: s.created_at.human(),
            last_seen: s.last_seen_at.human(),
            device: if s.user_agent.is_empty() {
                "Unknown browser".into()
            } else {
                s.user_agent.clone()
            },
            current: s.token_hash == ctx.session_hash,
        })
        .collect();
    let status = if errors.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    render_with_status(
        &AccountPage {
            layout: ctx.layout("Your account", "account"),
            email: ctx.admin.email.to_string(),
            role: ctx.role.as_str(),
            sessions,
            errors,
            idle_hours: timeouts.idle.as_secs() / 3600,
            max_days: timeouts.absolute.as_secs() / 86_400,
        },
        status,
    )
}

async fn account_page(ctx: Ctx) -> Result<HttpResponse> {
    account_page_with(&ctx, FieldErrors::default()).await
}

/// Changes one's own password (the current one is required) and ends every
/// other session of the account.
async fn change_password(ctx: Ctx, form: Form) -> Result<HttpResponse> {
    let current = form.get("current_password");
    let new = form.get("new_password");
    let mut errors = FieldErrors::default();
    if !ctx
        .state
        .hasher
        .verify(current, Some(ctx.admin.password_hash.clone()))
        .await?
    {
        errors.add("current_password", "This is not your current password.");
    }
    if let Err(message) = crate::validate::password(&new) {
        errors.add("new_password", message);
    }
    if new != form.get("new_password_confirmation") {
        errors.add("new_password_confirmation", "The two passwords differ.");
    }
    if !errors.is_empty() {
        return account_page_with(&ctx, errors).await;
    }
    let hash = ctx.state.hasher.hash(new).await?;
    let (actor, id, keep) = (ctx.actor(), ctx.admin.id.clone(), ctx.session_hash.clone());
    let ended = ctx
        .state
        .write(move |conn| admins::set_password(conn, &actor, &id, &hash, Some(&keep)))
        .await?;
    ctx.flash(format!(
        "Your password is changed. {ended} other session(s) ended; this one goes on."
    ));
    Ok(redirect("/account"))
}

/// Ends every session of one's own account, this one included.
async fn sign_out_everywhere(ctx: Ctx, _form: Form) -> Result<HttpResponse> {
    let (actor, id) = (ctx.actor(), ctx.admin.id.clone());
    ctx.state
        .write(move |conn| admins::sign_out_everywhere(conn, &actor, &id))
        .await?;
    ctx.session.purge();
    Ok(redirect("/login"))
}
