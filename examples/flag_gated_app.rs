//! An example "customer application" that gates a feature with Flagpole, the
//! way the WorkOS feature-flags guide does in its step 4:
//!
//! - `POST /login` starts a Flagpole session for a demo user (created on the
//!   fly, with their organization) and keeps the Flagpole tokens in a sealed
//!   cookie, `app-session` (encrypted and authenticated with a key derived
//!   from `COOKIE_PASSWORD`; the browser cannot read or change what is in it).
//! - `GET /api/feature-flags` opens that cookie, refreshes the session through
//!   Flagpole (which evaluates the flags again and rotates the refresh token),
//!   sets the updated cookie and answers `{"featureFlags": [...]}`.
//! - `GET /` is a page whose script (`/app.js`, no inline script) fetches
//!   `/api/feature-flags` and shows the "New reports" section only when the
//!   [`NEW_REPORTS_FLAG`] flag (`new-reports`) is on for the user.
//!
//! Run it against a Flagpole on 127.0.0.1:8080:
//!
//! ```sh
//! export FLAGPOLE_API_KEY=$(cargo run -q -- api-key create --environment production --name example)
//! export COOKIE_PASSWORD=$(openssl rand -hex 32)
//! cargo run --example flag_gated_app
//! ```
//!
//! Settings (environment variables): `FLAGPOLE_URL` (default
//! `http://127.0.0.1:8080`), `FLAGPOLE_API_KEY` (an `sk_…` secret key; its
//! environment is the one whose rules apply), `COOKIE_PASSWORD` (at least 32
//! characters) and `EXAMPLE_BIND` (default `127.0.0.1:3000`).

use std::time::Duration;

use actix_web::cookie::{self, Cookie, CookieJar, Key, SameSite};
use actix_web::http::{header, StatusCode};
use actix_web::{web, App, Either, HttpRequest, HttpResponse, HttpServer};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// The name of the sealed session cookie.
pub const SESSION_COOKIE: &str = "app-session";

/// The flag that shows the "New reports" section: create a flag with this
/// slug in Flagpole, target the organization, and turn it on.
pub const NEW_REPORTS_FLAG: &str = "new-reports";

/// How the app reaches Flagpole and seals its cookie.
#[derive(Clone)]
pub struct Settings {
    /// Flagpole's base URL, without a trailing slash.
    pub flagpole_url: String,
    /// An environment's secret key, `sk_…`.
    pub api_key: String,
    /// Encrypts and authenticates the session cookie.
    pub cookie_key: Key,
}

impl Settings {
    pub fn new(flagpole_url: &str, api_key: &str, cookie_password: &str) -> Result<Self, String> {
        let flagpole_url = flagpole_url.trim().trim_end_matches('/').to_string();
        if !flagpole_url.starts_with("http://") && !flagpole_url.starts_with("https://") {
            return Err(format!(
                "FLAGPOLE_URL must start with http:// or https://, not {flagpole_url:?}"
            ));
        }
        let api_key = api_key.trim().to_string();
        if !api_key.starts_with("sk_") {
            return Err(
                "FLAGPOLE_API_KEY must be a secret key (sk_…). Create one with \
                 `flagpole api-key create --environment production --name example`."
                    .into(),
            );
        }
        if cookie_password.len() < 32 {
            return Err("COOKIE_PASSWORD must be at least 32 characters \
                 (for example the output of `openssl rand -hex 32`)."
                .into());
        }
        Ok(Settings {
            flagpole_url,
            api_key,
            cookie_key: Key::derive_from(cookie_password.as_bytes()),
        })
    }

    /// The settings and the address to listen on, from the environment.
    #[allow(dead_code)]
    pub fn from_env() -> Result<(Self, String), String> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        let url = var("FLAGPOLE_URL").unwrap_or_else(|| "http://127.0.0.1:8080".into());
        let key = var("FLAGPOLE_API_KEY").ok_or(
            "Set FLAGPOLE_API_KEY to a secret key: \
             FLAGPOLE_API_KEY=$(cargo run -q -- api-key create --environment production --name example)",
        )?;
        let password = var("COOKIE_PASSWORD").ok_or(
            "Set COOKIE_PASSWORD to at least 32 characters, for example COOKIE_PASSWORD=$(openssl rand -hex 32)",
        )?;
        let bind = var("EXAMPLE_BIND").unwrap_or_else(|| "127.0.0.1:3000".into());
        Ok((Settings::new(&url, &key, &password)?, bind))
    }
}

/// What the sealed cookie holds: the Flagpole tokens of the user's session.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Tokens {
    pub access_token: String,
    pub refresh_token: String,
}

/// Encrypts the tokens into the value of the session cookie.
pub fn seal(key: &Key, tokens: &Tokens) -> String {
    let plain = serde_json::to_string(tokens).expect("tokens serialize");
    let mut jar = CookieJar::new();
    jar.private_mut(key).add(Cookie::new(SESSION_COOKIE, plain));
    jar.get(SESSION_COOKIE)
        .expect("the sealed cookie is in the jar")
        .value()
        .to_string()
}

/// Decrypts a session cookie's value; `None` when it was not sealed with `key`
/// or was changed.
pub fn unseal(key: &Key, value: &str) -> Option<Tokens> {
    let jar = CookieJar::new();
    let cookie = jar
        .private(key)
        .decrypt(Cookie::new(SESSION_COOKIE, value.to_string()))?;
    serde_json::from_str(cookie.value()).ok()
}

/// Whether `host` (a Host header, perhaps with a port) is this machine, where
/// the app is served over plain HTTP and so cannot use `Secure` cookies.
pub fn is_local_host(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or_default()
    } else {
        host.split(':').next().unwrap_or_default()
    };
    let name = name.to_ascii_lowercase();
    name == "localhost" || name.ends_with(".localhost") || name == "127.0.0.1" || name == "::1"
}

fn secure_for(req: &HttpRequest) -> bool {
    !is_local_host(req.connection_info().host())
}

/// The session cookie: httpOnly, sameSite=lax, and secure outside localhost.
fn session_cookie(value: String, secure: bool) -> Cookie<'static> {
    Cookie::build(SESSION_COOKIE, value)
        .path("/")
        .http_only(true)
        .same_site(SameSite::Lax)
        .secure(secure)
        .finish()
}

/// A cookie that makes the browser forget the session cookie.
fn removal_cookie(secure: bool) -> Cookie<'static> {
    let mut cookie = session_cookie(String::new(), secure);
    cookie.set_max_age(cookie::time::Duration::ZERO);
    cookie
}

struct AppData {
    settings: Settings,
    http: reqwest::Client,
}

/// Mounts the example's routes; `HttpServer::new(move || App::new().configure(app_config(settings.clone())))`.
pub fn app_config(settings: Settings) -> impl FnOnce(&mut web::ServiceConfig) {
    move |cfg| {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .expect("an HTTP client");
        cfg.app_data(web::Data::new(AppData { settings, http }))
            .route("/", web::get().to(index))
            .route("/app.js", web::get().to(script))
            .route("/app.css", web::get().to(stylesheet))
            .route("/login", web::post().to(login))
            .route("/logout", web::post().to(logout))
            .route("/api/feature-flags", web::get().to(feature_flags));
    }
}

/// A demo user to sign in as: sent as a form or as JSON.
#[derive(Deserialize)]
pub struct LoginInput {
    pub external_id: String,
    pub email: String,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub organization_external_id: Option<String>,
    pub organization_name: Option<String>,
}

/// What the app reads from Flagpole's session answers.
#[derive(Deserialize)]
struct SessionAnswer {
    access_token: String,
    refresh_token: String,
    feature_flags: Vec<String>,
}

enum FlagpoleError {
    /// Flagpole answered with an error: the session or the request is not valid.
    Rejected { status: u16, body: Value },
    /// Flagpole could not be reached or failed.
    Unavailable(String),
}

impl AppData {
    /// Posts to one of Flagpole's session endpoints.
    async fn session_call(
        &self,
        path: &str,
        body: Value,
        with_key: bool,
    ) -> Result<SessionAnswer, FlagpoleError> {
        let mut request = self
            .http
            .post(format!("{}{path}", self.settings.flagpole_url))
            .json(&body);
        if with_key {
            request = request.bearer_auth(&self.settings.api_key);
        }
        let response = request
            .send()
            .await
            .map_err(|e| FlagpoleError::Unavailable(e.to_string()))?;
        let status = response.status();
        if status.is_server_error() {
            return Err(FlagpoleError::Unavailable(format!(
                "Flagpole answered {status}"
            )));
        }
        if !status.is_success() {
            let body = response.json().await.unwrap_or(Value::Null);
            return Err(FlagpoleError::Rejected {
                status: status.as_u16(),
                body,
            });
        }
        response
            .json()
            .await
            .map_err(|e| FlagpoleError::Unavailable(format!("unexpected answer: {e}")))
    }
}

fn error_json(status: StatusCode, code: &str, message: &str) -> HttpResponse {
    HttpResponse::build(status)
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(json!({"error": {"code": code, "message": message}}))
}

/// Refuses a cross-site POST: when the browser says where the form came from,
/// it must be this app.
fn same_origin(req: &HttpRequest) -> bool {
    let Some(origin) = req.headers().get(header::ORIGIN) else {
        return true;
    };
    let Ok(origin) = origin.to_str() else {
        return false;
    };
    let origin_host = origin
        .split_once("://")
        .map(|(_, rest)| rest.trim_end_matches('/'));
    origin_host == Some(req.connection_info().host())
}

fn non_empty(value: Option<String>) -> Option<String> {
    value
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

async fn login(
    req: HttpRequest,
    data: web::Data<AppData>,
    input: Either<web::Json<LoginInput>, web::Form<LoginInput>>,
) -> HttpResponse {
    if !same_origin(&req) {
        return error_json(
            StatusCode::FORBIDDEN,
            "cross_site_request",
            "Sign in from this app's own page.",
        );
    }
    let input = match input {
        Either::Left(json) => json.into_inner(),
        Either::Right(form) => form.into_inner(),
    };
    let mut body = json!({
        "user": {
            "external_id": input.external_id,
            "email": input.email,
            "first_name": input.first_name.unwrap_or_default(),
            "last_name": input.last_name.unwrap_or_default(),
        }
    });
    if let Some(external_id) = non_empty(input.organization_external_id) {
        let name = non_empty(input.organization_name).unwrap_or_else(|| external_id.clone());
        body["organization"] = json!({"external_id": external_id, "name": name});
    }
    match data.session_call("/api/v1/sessions", body, true).await {
        Ok(answer) => {
            let tokens = Tokens {
                access_token: answer.access_token,
                refresh_token: answer.refresh_token,
            };
            let sealed = seal(&data.settings.cookie_key, &tokens);
            HttpResponse::SeeOther()
                .insert_header((header::LOCATION, "/"))
                .cookie(session_cookie(sealed, secure_for(&req)))
                .finish()
        }
        Err(FlagpoleError::Rejected { status, body }) => {
            // Flagpole's message says what was wrong with the user or organization.
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
            HttpResponse::build(status).json(body)
        }
        Err(FlagpoleError::Unavailable(why)) => {
            eprintln!("sign-in: Flagpole unavailable: {why}");
            error_json(
                StatusCode::BAD_GATEWAY,
                "flagpole_unavailable",
                "Flagpole could not be reached; try again.",
            )
        }
    }
}

async fn logout(req: HttpRequest, data: web::Data<AppData>) -> HttpResponse {
    if !same_origin(&req) {
        return error_json(
            StatusCode::FORBIDDEN,
            "cross_site_request",
            "Sign out from this app's own page.",
        );
    }
    let tokens = req
        .cookie(SESSION_COOKIE)
        .and_then(|c| unseal(&data.settings.cookie_key, c.value()));
    if let Some(tokens) = tokens {
        // Revoke the session in Flagpole too; the answer is 204, not a session.
        let revoked = data
            .http
            .post(format!(
                "{}/api/v1/sessions/revoke",
                data.settings.flagpole_url
            ))
            .bearer_auth(&data.settings.api_key)
            .json(&json!({"refresh_token": tokens.refresh_token}))
            .send()
            .await;
        if let Err(e) = revoked {
            eprintln!("sign-out: could not revoke the Flagpole session: {e}");
        }
    }
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, "/"))
        .cookie(removal_cookie(secure_for(&req)))
        .finish()
}

/// The seed's server-side snippet: load the sealed session, refresh it, set
/// the updated cookie, return the flags.
async fn feature_flags(req: HttpRequest, data: web::Data<AppData>) -> HttpResponse {
    let secure = secure_for(&req);
    let cookie = req.cookie(SESSION_COOKIE);
    let tokens = cookie
        .as_ref()
        .and_then(|c| unseal(&data.settings.cookie_key, c.value()));
    let Some(tokens) = tokens else {
        let mut response = error_json(
            StatusCode::UNAUTHORIZED,
            "no_session",
            "Sign in first: POST /login.",
        );
        if cookie.is_some() {
            // A cookie this app did not seal (or sealed with another password).
            let _ = response.add_cookie(&removal_cookie(secure));
        }
        return response;
    };
    let body = json!({"refresh_token": tokens.refresh_token});
    match data
        .session_call("/api/v1/sessions/refresh", body, false)
        .await
    {
        Ok(answer) => {
            let sealed = seal(
                &data.settings.cookie_key,
                &Tokens {
                    access_token: answer.access_token,
                    refresh_token: answer.refresh_token,
                },
            );
            HttpResponse::Ok()
                .insert_header((header::CACHE_CONTROL, "no-store"))
                .cookie(session_cookie(sealed, secure))
                .json(json!({"featureFlags": answer.feature_flags}))
        }
        Err(FlagpoleError::Rejected { body, .. }) => {
            // Expired, revoked or reused: the session is over.
            let code = body["error"]["code"].as_str().unwrap_or("session_invalid");
            let mut response = error_json(
                StatusCode::UNAUTHORIZED,
                code,
                "The session ended; sign in again.",
            );
            let _ = response.add_cookie(&removal_cookie(secure));
            response
        }
        Err(FlagpoleError::Unavailable(why)) => {
            eprintln!("refresh: Flagpole unavailable: {why}");
            error_json(
                StatusCode::BAD_GATEWAY,
                "flagpole_unavailable",
                "Flagpole could not be reached; try again.",
            )
        }
    }
}

const PAGE: &str = r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Example app</title>
<link rel="stylesheet" href="/app.css">
<script src="/app.js" defer></script>
</head>
<body>
<main>
<h1>Example app</h1>
<p id="status" role="status">Loading your feature flags…</p>
<noscript><p>This page needs JavaScript to load your feature flags.</p></noscript>

<section id="sign-in" hidden>
<h2>Sign in as a demo user</h2>
<form method="post" action="/login">
<label>User external id <input name="external_id" value="demo-ada" required></label>
<label>Email <input name="email" type="email" value="ada@acme.example" required></label>
<label>Organization external id <input name="organization_external_id" value="demo-acme"></label>
<label>Organization name <input name="organization_name" value="Acme Inc"></label>
<button>Sign in</button>
</form>
</section>

<section id="home" hidden>
<h2>Home</h2>
<p>Everyone who signs in sees this. Your flags: <span id="flags"></span></p>
<p><button type="button" id="check">Check the flags again</button></p>
<form method="post" action="/logout"><button>Sign out</button></form>
</section>

<section id="new-reports" hidden>
<h2>New reports</h2>
<p>You see this section because the <code>new-reports</code> flag is on for you.</p>
</section>
</main>
</body>
</html>
"#;

const SCRIPT: &str = r#"// Fetches the feature flags from this app's server, as in the seed's
// client-side snippet, and shows the sections they turn on.
const NEW_REPORTS = "__NEW_REPORTS_FLAG__";

function show(id, visible) {
  document.getElementById(id).hidden = !visible;
}

async function loadFlags() {
  const status = document.getElementById("status");
  let response;
  try {
    response = await fetch("/api/feature-flags", { headers: { accept: "application/json" } });
  } catch (e) {
    status.textContent = "Could not reach the server.";
    return;
  }
  if (response.status === 401) {
    status.textContent = "Sign in to see your feature flags.";
    show("sign-in", true);
    show("home", false);
    show("new-reports", false);
    return;
  }
  if (!response.ok) {
    status.textContent = "Could not load the feature flags (HTTP " + response.status + ").";
    return;
  }
  const { featureFlags } = await response.json();
  status.textContent = "Signed in.";
  document.getElementById("flags").textContent =
    featureFlags.length ? featureFlags.join(", ") : "none";
  show("sign-in", false);
  show("home", true);
  show("new-reports", featureFlags.includes(NEW_REPORTS));
}

document.addEventListener("DOMContentLoaded", () => {
  document.getElementById("check").addEventListener("click", loadFlags);
  loadFlags();
});
"#;

const STYLESHEET: &str = "body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 40rem; padding: 0 1rem; }
label { display: block; margin: 0.5rem 0; }
section { border: 1px solid #ccc; border-radius: 6px; padding: 0 1rem 1rem; margin: 1rem 0; }
#new-reports { border-color: #2a7; background: #effaf3; }
";

fn asset(content_type: &str, body: String) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, content_type))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .body(body)
}

async fn index() -> HttpResponse {
    let mut response = asset("text/html; charset=utf-8", PAGE.to_string());
    // Everything the page loads is its own: no inline script or style.
    response.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        header::HeaderValue::from_static(
            "default-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
        ),
    );
    response
}

async fn script() -> HttpResponse {
    asset(
        "text/javascript; charset=utf-8",
        SCRIPT.replace("__NEW_REPORTS_FLAG__", NEW_REPORTS_FLAG),
    )
}

async fn stylesheet() -> HttpResponse {
    asset("text/css; charset=utf-8", STYLESHEET.to_string())
}

#[allow(dead_code)]
#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let (settings, bind) = match Settings::from_env() {
        Ok(found) => found,
        Err(message) => {
            eprintln!("{message}");
            std::process::exit(2);
        }
    };
    println!(
        "Example app on http://{bind} (Flagpole at {}; the flag it looks for is {NEW_REPORTS_FLAG:?})",
        settings.flagpole_url
    );
    HttpServer::new(move || App::new().configure(app_config(settings.clone())))
        .bind(&bind)?
        .run()
        .await
}
