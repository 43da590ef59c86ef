//! Signing in and out, the first admin's one-time setup, and the environment switcher.

use actix_session::Session;
use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use askama::Template;
use serde::Deserialize;

use super::context::{csrf_token, Ctx, Form, SESSION_ADMIN, SESSION_CSRF, SESSION_ENV};
use crate::admins;
use crate::error::{Error, FieldErrors, Result};
use crate::ids::random_token;
use crate::web::routes::Routes;
use crate::web::{redirect, render, render_with_status, safe_return, Surface};
use crate::AppState;

pub fn routes(cfg: &mut web::ServiceConfig) {
    Routes::new(cfg, "", Surface::Dashboard)
        .get("/login", login_page)
        .post("/login", login)
        .post("/logout", logout)
        .get("/setup", setup_page)
        .post("/setup", setup)
        .post("/switch-environment", switch_environment);
}

#[derive(Template)]
#[template(path = "auth/login.html")]
struct LoginPage {
    csrf: String,
    email: String,
    next: String,
    error: Option<String>,
}

#[derive(Deserialize)]
struct LoginQuery {
    next: Option<String>,
}

async fn login_page(session: Session, query: web::Query<LoginQuery>) -> Result<HttpResponse> {
    if session
        .get::<String>(SESSION_ADMIN)
        .ok()
        .flatten()
        .is_some()
    {
        return Ok(redirect("/flags"));
    }
    render(&LoginPage {
        csrf: csrf_token(&session)?,
        email: String::new(),
        next: safe_return(query.next.as_deref().unwrap_or(""), ""),
        error: None,
    })
}

async fn login(state: web::Data<AppState>, session: Session, form: Form) -> Result<HttpResponse> {
    let email = form.get("email").trim().to_lowercase();
    let password = form.get("password");
    let next = safe_return(&form.get("next"), "/flags");
    let page = |error: &str| LoginPage {
        csrf: csrf_token(&session).unwrap_or_default(),
        email: email.clone(),
        next: next.clone(),
        error: Some(error.to_string()),
    };
    if let Some(wait) = state.login_throttle.locked_for(&email) {
        let minutes = wait.as_secs().div_ceil(60);
        return render_with_status(
            &page(&format!(
                "Too many failed sign-ins for this email. Try again in {minutes} minute(s)."
            )),
            StatusCode::TOO_MANY_REQUESTS,
        );
    }
    let (e, p) = (email.clone(), password.clone());
    let admin = state
        .read(move |conn| admins::authenticate(conn, &e, &p))
        .await?;
    let Some(admin) = admin else {
        state.login_throttle.record_failure(&email);
        return render_with_status(
            &page("That email and password do not match an admin account."),
            StatusCode::UNAUTHORIZED,
        );
    };
    state.login_throttle.record_success(&email);
    session.renew();
    let _ = session.insert(SESSION_ADMIN, admin.id.as_str());
    let _ = session.insert(SESSION_CSRF, random_token(32));
    Ok(redirect(&next))
}

async fn logout(session: Session, _form: Form) -> HttpResponse {
    session.purge();
    redirect("/login")
}

#[derive(Template)]
#[template(path = "auth/setup.html")]
struct SetupPage {
    csrf: String,
    token: String,
    email: String,
    errors: FieldErrors,
}

#[derive(Deserialize)]
struct SetupQuery {
    token: Option<String>,
}

fn invalid_setup_link() -> Error {
    Error::forbidden(
        "This setup link is not valid: it was already used, or the server restarted and printed a new one. \
         If an admin exists, sign in instead.",
    )
}

async fn setup_page(
    state: web::Data<AppState>,
    session: Session,
    query: web::Query<SetupQuery>,
) -> Result<HttpResponse> {
    let token = query.token.clone().unwrap_or_default();
    if !state.setup.matches(&token) {
        return Err(invalid_setup_link());
    }
    render(&SetupPage {
        csrf: csrf_token(&session)?,
        token,
        email: String::new(),
        errors: FieldErrors::default(),
    })
}

async fn setup(state: web::Data<AppState>, session: Session, form: Form) -> Result<HttpResponse> {
    let token = form.get("token");
    // Spent now, so two submissions cannot both create an owner; given back
    // if the form was invalid.
    if !state.setup.take(&token) {
        return Err(invalid_setup_link());
    }
    let email = form.get("email");
    let password = form.get("password");
    let mut errors = FieldErrors::default();
    if password != form.get("password_confirmation") {
        errors.add("password_confirmation", "The two passwords differ.");
    }
    let result = if errors.is_empty() {
        let (e, p) = (email.clone(), password.clone());
        state
            .write(move |conn| admins::create_first_owner(conn, &e, &p))
            .await
    } else {
        Err(Error::Invalid(errors))
    };
    match result {
        Ok(admin) => {
            session.renew();
            let _ = session.insert(SESSION_ADMIN, admin.id.as_str());
            let _ = session.insert(SESSION_CSRF, random_token(32));
            super::context::flash(
                &session,
                "Welcome to Flagpole. Create your first feature flag.",
            );
            Ok(redirect("/flags"))
        }
        Err(error) if error.field_errors().is_some() => {
            state.setup.restore(&token);
            let errors = error.field_errors().unwrap_or_default();
            render_with_status(
                &SetupPage {
                    csrf: csrf_token(&session)?,
                    token,
                    email,
                    errors,
                },
                StatusCode::UNPROCESSABLE_ENTITY,
            )
        }
        Err(other) => Err(other),
    }
}

async fn switch_environment(ctx: Ctx, form: Form) -> Result<HttpResponse> {
    let env = ctx.environment_by_slug(&form.get("environment"))?;
    let _ = ctx.session.insert(SESSION_ENV, env.id.as_str());
    Ok(redirect(&safe_return(&form.get("return_to"), "/flags")))
}
