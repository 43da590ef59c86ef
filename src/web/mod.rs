//! HTTP: the route table, middleware, static assets and health checks.

pub mod api;
pub mod auth;
pub mod context;
pub mod dashboard;
pub mod directory;
pub mod flags;
pub mod paging;
pub mod webhooks;
pub mod workos;

use std::net::TcpListener;

use actix_session::config::{CookieContentSecurity, PersistentSession};
use actix_session::storage::CookieSessionStore;
use actix_session::SessionMiddleware;
use actix_web::cookie::{time::Duration as CookieDuration, Key, SameSite};
use actix_web::dev::Server;
use actix_web::http::{header, StatusCode};
use actix_web::middleware::{Compress, DefaultHeaders};
use actix_web::{web, App, HttpResponse, HttpServer, Responder};
use askama::Template;
use sha2::{Digest, Sha512};

use crate::error::{render_error_page, AppError};
use crate::AppState;

pub fn server(state: web::Data<AppState>, listener: TcpListener) -> anyhow::Result<Server> {
    let key = Key::from(&Sha512::digest(
        [&state.config.secret_key[..], b"flagpole cookies"].concat(),
    ));
    let secure = state.config.secure_cookies();
    let workers = state.config.http_workers;
    let server = HttpServer::new(move || {
        let session = SessionMiddleware::builder(CookieSessionStore::default(), key.clone())
            .cookie_name("flagpole_session".into())
            .cookie_content_security(CookieContentSecurity::Private)
            .cookie_http_only(true)
            .cookie_same_site(SameSite::Lax)
            .cookie_secure(secure)
            .session_lifecycle(PersistentSession::default().session_ttl(CookieDuration::hours(12)))
            .build();
        App::new()
            .app_data(state.clone())
            .app_data(web::QueryConfig::default().error_handler(|err, _| {
                AppError::BadRequest(format!("The address has an invalid query: {err}")).into()
            }))
            .app_data(web::PathConfig::default().error_handler(|err, _| {
                AppError::BadRequest(format!("The address is invalid: {err}")).into()
            }))
            .wrap(session)
            .wrap(security_headers())
            .wrap(Compress::default())
            .configure(routes)
            .default_service(web::to(not_found))
    })
    .listen(listener)?;
    let server = match workers {
        Some(n) => server.workers(n),
        None => server,
    }
    .run();
    Ok(server)
}

fn security_headers() -> DefaultHeaders {
    DefaultHeaders::new()
        .add((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .add((header::X_FRAME_OPTIONS, "DENY"))
        .add((header::REFERRER_POLICY, "same-origin"))
        .add((
            header::CONTENT_SECURITY_POLICY,
            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; \
             form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ))
}

/// Every route of the service, in one table.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", web::get().to(healthz))
        .route("/readyz", web::get().to(readyz))
        .route("/static/{file}", web::get().to(static_file))
        .route("/", web::get().to(home))
        .configure(api::routes)
        .configure(workos::routes)
        .configure(auth::routes)
        .configure(flags::routes)
        .configure(dashboard::routes)
        .configure(directory::routes)
        .configure(webhooks::routes);
}

async fn home() -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, "/flags"))
        .finish()
}

async fn healthz() -> impl Responder {
    HttpResponse::Ok().json(serde_json::json!({"status": "ok"}))
}

async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let result = state
        .db(|conn| {
            use diesel::connection::SimpleConnection;
            conn.batch_execute("SELECT 1")?;
            Ok(())
        })
        .await;
    match result {
        Ok(()) => HttpResponse::Ok().json(serde_json::json!({"status": "ready"})),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed");
            HttpResponse::ServiceUnavailable()
                .json(serde_json::json!({"status": "database unreachable"}))
        }
    }
}

/// Assets are compiled into the binary, so it runs from any folder.
async fn static_file(path: web::Path<String>) -> HttpResponse {
    let (body, content_type): (&'static [u8], &str) = match path.as_str() {
        "app.css" => (
            include_bytes!("../../static/app.css"),
            "text/css; charset=utf-8",
        ),
        "app.js" => (
            include_bytes!("../../static/app.js"),
            "text/javascript; charset=utf-8",
        ),
        "favicon.svg" => (include_bytes!("../../static/favicon.svg"), "image/svg+xml"),
        _ => return render_error_page(StatusCode::NOT_FOUND, "Not found", "No such file."),
    };
    HttpResponse::Ok()
        .content_type(content_type)
        .insert_header((header::CACHE_CONTROL, "public, max-age=3600"))
        .body(body)
}

async fn not_found() -> Result<HttpResponse, AppError> {
    Err(AppError::NotFound)
}

/// Renders an askama page as an HTML response.
pub fn render<T: Template>(page: &T) -> Result<HttpResponse, AppError> {
    render_with_status(page, StatusCode::OK)
}

pub fn render_with_status<T: Template>(
    page: &T,
    status: StatusCode,
) -> Result<HttpResponse, AppError> {
    let html = page
        .render()
        .map_err(|e| AppError::Internal(anyhow::anyhow!("rendering a page: {e}")))?;
    Ok(HttpResponse::build(status)
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(html))
}

/// A 303 to `location`, the answer to every successful form post.
pub fn redirect(location: &str) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, location))
        .finish()
}

/// A local path to return to after a form post; anything else falls back.
pub fn safe_return(path: &str, fallback: &str) -> String {
    if path.starts_with('/') && !path.starts_with("//") && !path.contains('\\') {
        path.to_string()
    } else {
        fallback.to_string()
    }
}
