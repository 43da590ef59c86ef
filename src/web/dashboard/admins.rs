//! The Admins page, for owners: add admins, change roles, remove them.

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
        .post("/admins/{id}/delete", delete_admin);
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
    let e = email.clone();
    match ctx
        .state
        .write(move |conn| admins::create(conn, &actor, &e, &password, role))
        .await
    {
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
