//! HTTP: the server, its middleware, and every surface's routes: the
//! dashboard (HTML), `/api/v1`, OFREP and the WorkOS-compatible API.
//! Handlers parse their input, call one service and render the answer;
//! nothing here touches the database schema.

pub mod api;
pub mod cors;
pub mod dashboard;
pub mod errors;
pub mod json;
pub mod metrics;
pub mod ofrep;
pub mod routes;
pub mod workos;

use std::net::TcpListener;

use actix_session::config::{CookieContentSecurity, PersistentSession};
use actix_session::storage::CookieSessionStore;
use actix_session::SessionMiddleware;
use actix_web::cookie::{time::Duration as CookieDuration, Key, SameSite};
use actix_web::dev::Server;
use actix_web::http::{header, StatusCode};
use actix_web::middleware::{Compress, DefaultHeaders};
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use askama::Template;
use sha2::{Digest, Sha512};

use crate::error::{Entity, Error, Result};
use crate::AppState;
use errors::Surface;
use routes::Routes;

/// How long an idle connection stays open for its next request. Longer
/// than HTTP clients keep idle connections for reuse (httpx and Node's
/// agents: 4–5 s; nginx's own default is 75 s): with actix-web's 5 s, a
/// client reusing a connection just as the server closed it got no answer
/// to a request it had sent. Slow or silent clients are still cut off by the
/// request-head timeout, and each worker bounds its connections.
const KEEP_ALIVE: std::time::Duration = std::time::Duration::from_secs(75);

pub fn server(state: web::Data<AppState>, listener: TcpListener) -> anyhow::Result<Server> {
    let key = Key::from(&Sha512::digest(
        [&state.config.secret_key[..], b"flagpole cookies"].concat(),
    ));
    let secure = state.config.secure_cookies();
    let cookie_ttl = CookieDuration::seconds(
        state
            .config
            .session_timeouts
            .absolute
            .as_secs()
            .min(i64::MAX as u64) as i64,
    );
    let workers = state.config.http_workers;
    let server = HttpServer::new(move || {
        let session = SessionMiddleware::builder(CookieSessionStore::default(), key.clone())
            .cookie_name("flagpole_session".into())
            .cookie_content_security(CookieContentSecurity::Private)
            .cookie_http_only(true)
            .cookie_same_site(SameSite::Lax)
            .cookie_secure(secure)
            .session_lifecycle(PersistentSession::default().session_ttl(cookie_ttl))
            .build();
        App::new()
            .app_data(state.clone())
            .app_data(web::QueryConfig::default().error_handler(errors::query_error))
            .app_data(web::PathConfig::default().error_handler(errors::path_error))
            .wrap(session)
            .wrap(security_headers(secure))
            .wrap(actix_web::middleware::from_fn(cors::cors))
            .wrap(Compress::default())
            .wrap(actix_web::middleware::from_fn(metrics::count_requests))
            .configure(routes)
            .default_service(web::to(unmatched))
    })
    .keep_alive(KEEP_ALIVE)
    .listen(listener)?;
    let server = match workers {
        Some(n) => server.workers(n),
        None => server,
    }
    .run();
    Ok(server)
}

/// Headers on every answer; with an https public URL, also HSTS (a year),
/// so a browser never speaks plain HTTP to the dashboard again.
fn security_headers(https: bool) -> DefaultHeaders {
    let headers = if https {
        DefaultHeaders::new().add((header::STRICT_TRANSPORT_SECURITY, "max-age=31536000"))
    } else {
        DefaultHeaders::new()
    };
    headers
        .add((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .add((header::X_FRAME_OPTIONS, "DENY"))
        .add((header::REFERRER_POLICY, "same-origin"))
        .add((
            header::CONTENT_SECURITY_POLICY,
            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; \
             form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ))
}

/// Every route of the service. The JSON surfaces come first: their paths
/// are more specific than the dashboard's.
pub fn routes(cfg: &mut web::ServiceConfig) {
    Routes::new(cfg, "", Surface::Dashboard)
        .get("/healthz", healthz)
        .get("/readyz", readyz)
        .get("/metrics", metrics::scrape)
        .get("/static/{file}", static_file)
        .get("/", home);
    api::routes(cfg);
    ofrep::routes(cfg);
    workos::routes(cfg);
    dashboard::routes(cfg);
}

/// A path no route has: a 404 in the shape of the surface it looks like.
async fn unmatched(req: HttpRequest) -> HttpResponse {
    Surface::of_unmatched_path(req.path()).render(&Error::NotFound(route_or_page(&req)), &req)
}

fn route_or_page(req: &HttpRequest) -> Entity {
    match Surface::of_unmatched_path(req.path()) {
        Surface::Dashboard => Entity::Page,
        _ => Entity::Route,
    }
}

async fn home() -> HttpResponse {
    redirect("/flags")
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({"status": "ok"}))
}

async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let result = state
        .read(|conn| {
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
async fn static_file(path: web::Path<String>) -> Result<HttpResponse> {
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
        _ => return Err(Error::NotFound(Entity::Page)),
    };
    Ok(HttpResponse::Ok()
        .content_type(content_type)
        .insert_header((header::CACHE_CONTROL, "public, max-age=3600"))
        .body(body))
}

/// Renders an askama page as an HTML response.
pub fn render<T: Template>(page: &T) -> Result<HttpResponse> {
    render_with_status(page, StatusCode::OK)
}

pub fn render_with_status<T: Template>(page: &T, status: StatusCode) -> Result<HttpResponse> {
    let html = page
        .render()
        .map_err(|e| Error::internal(anyhow::anyhow!("rendering a page: {e}")))?;
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

/// A path on this site to return to after a form post; anything else (an
/// absolute or scheme-relative URL, a backslash, a control character or a
/// space, which browsers may drop to make one) falls back.
pub fn safe_return(path: &str, fallback: &str) -> String {
    let safe = path.starts_with('/')
        && !path.starts_with("//")
        && !path.contains('\\')
        && !path.chars().any(|c| c.is_control() || c.is_whitespace())
        && path.len() <= 2000;
    if safe {
        path.to_string()
    } else {
        fallback.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::safe_return;

    #[test]
    fn only_local_paths_are_returned_to() {
        assert_eq!(safe_return("/flags?page=2", "/x"), "/flags?page=2");
        for evil in [
            "//evil.example",
            "/\t/evil.example",
            "/\\evil",
            "https://evil",
            "/a\nb",
            "/\u{7f}x",
            "evil",
        ] {
            assert_eq!(safe_return(evil, "/flags"), "/flags", "{evil:?}");
        }
    }
}
