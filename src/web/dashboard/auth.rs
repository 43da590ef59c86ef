//! Signing in and out, the first admin's one-time setup, and the environment switcher.

use actix_session::Session;
use std::net::{IpAddr, SocketAddr};

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;
use serde::Deserialize;

use super::context::{csrf_token, Ctx, Form, SESSION_CSRF, SESSION_ENV, SESSION_TOKEN};
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
        .get::<String>(SESSION_TOKEN)
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

/// The address sign-in attempts are counted by: the connection's, or with
/// `FLAGPOLE_TRUST_PROXY`, the one the proxy says it forwarded for.
pub fn client_address(req: &HttpRequest, state: &AppState) -> IpAddr {
    let forwarded = state
        .config
        .trust_proxy
        .then(|| {
            req.connection_info()
                .realip_remote_addr()
                .map(str::to_string)
        })
        .flatten()
        .and_then(|a| {
            a.parse::<IpAddr>()
                .ok()
                .or_else(|| a.parse::<SocketAddr>().ok().map(|s| s.ip()))
        });
    forwarded
        .or_else(|| req.peer_addr().map(|a| a.ip()))
        .unwrap_or(IpAddr::from([0, 0, 0, 0]))
}

/// Starts a server-side session for `admin` in this browser.
async fn sign_in(
    state: &web::Data<AppState>,
    session: &Session,
    req: &HttpRequest,
    admin: &admins::Admin,
) -> Result<()> {
    let id = admin.id.clone();
    let agent = req
        .headers()
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let token = state
        .write(move |conn| admins::sessions::start(conn, &id, &agent))
        .await?;
    session.renew();
    let _ = session.insert(SESSION_TOKEN, token);
    let _ = session.insert(SESSION_CSRF, random_token(32));
    Ok(())
}

async fn login(
    state: web::Data<AppState>,
    session: Session,
    req: HttpRequest,
    form: Form,
) -> Result<HttpResponse> {
    let email = form.get("email").trim().to_lowercase();
    let password = form.get("password");
    let next = safe_return(&form.get("next"), "/flags");
    let client = client_address(&req, &state);
    let shown_email: String = email.chars().take(254).collect();
    let page = |error: &str| LoginPage {
        csrf: csrf_token(&session).unwrap_or_default(),
        email: shown_email.clone(),
        next: next.clone(),
        error: Some(error.to_string()),
    };
    if let Some(wait) = state.login_throttle.wait_for(&email, client) {
        let seconds = wait.as_secs().max(1);
        let mut response = render_with_status(
            &page(&format!(
                "Too many failed sign-ins for this email from your address. Wait {seconds} second(s) and try again."
            )),
            StatusCode::TOO_MANY_REQUESTS,
        )?;
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from(seconds));
        return Ok(response);
    }
    // The account is read and its hash checked on a hashing thread, a few
    // at a time; the connection is given back before the hash starts.
    let (e, pool) = (email.clone(), state.pool.clone());
    let find = move || {
        let mut conn = pool.get()?;
        admins::find_by_email(&mut conn, &e)
    };
    let admin = state
        .hasher
        .verify_account(password, find, |a: &admins::Admin| &a.password_hash)
        .await?;
    let Some(admin) = admin else {
        state.login_throttle.failed(&email, client);
        return render_with_status(
            &page("That email and password do not match an admin account."),
            StatusCode::UNAUTHORIZED,
        );
    };
    state.login_throttle.succeeded(&email, client);
    sign_in(&state, &session, &req, &admin).await?;
    Ok(redirect(&next))
}

/// Signs out: this browser's session ends on the server, for good.
async fn logout(state: web::Data<AppState>, session: Session, _form: Form) -> Result<HttpResponse> {
    if let Some(token) = session.get::<String>(SESSION_TOKEN).ok().flatten() {
        state
            .write(move |conn| admins::sessions::end(conn, &token))
            .await?;
    }
    session.purge();
    Ok(redirect("/login"))
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
        "This setup link is not valid: it was already used, or it expired (a link works for an hour). \
         Run `flagpole admin setup-link` for a new one; if an admin exists, sign in instead.",
    )
}

async fn setup_page(
    state: web::Data<AppState>,
    session: Session,
    query: web::Query<SetupQuery>,
) -> Result<HttpResponse> {
    let token = query.token.clone().unwrap_or_default();
    let t = token.clone();
    if !state
        .read(move |conn| admins::setup::is_valid(conn, &t))
        .await?
    {
        return Err(invalid_setup_link());
    }
    render(&SetupPage {
        csrf: csrf_token(&session)?,
        token,
        email: String::new(),
        errors: FieldErrors::default(),
    })
}

async fn setup(
    state: web::Data<AppState>,
    session: Session,
    req: HttpRequest,
    form: Form,
) -> Result<HttpResponse> {
    let token = form.get("token");
    let email = form.get("email");
    let password = form.get("password");
    let t = token.clone();
    if !state
        .read(move |conn| admins::setup::is_valid(conn, &t))
        .await?
    {
        return Err(invalid_setup_link());
    }
    let checked = admins::check_new(&email, &password).and_then(|email| {
        if password == form.get("password_confirmation") {
            Ok(email)
        } else {
            Err(Error::invalid(
                "password_confirmation",
                "The two passwords differ.",
            ))
        }
    });
    let result = match checked {
        Ok(valid) => {
            let hash = state.hasher.hash(password).await?;
            let t = token.clone();
            state
                .write(move |conn| admins::create_first_owner(conn, &t, &valid, &hash))
                .await
        }
        Err(e) => Err(e),
    };
    match result {
        Ok(admin) => {
            sign_in(&state, &session, &req, &admin).await?;
            super::context::flash(
                &session,
                "Welcome to Flagpole. Create your first feature flag.",
            );
            Ok(redirect("/flags"))
        }
        Err(error) if error.field_errors().is_some() => {
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
