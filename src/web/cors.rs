//! CORS on the routes a browser may call: evaluation (`/api/v1/evaluate`
//! and OFREP), with a publishable key (`pk_…`) of an environment that allows
//! the page's origin.
//!
//! A preflight carries no key, so it is answered for any origin that some
//! environment allows; the real request is then checked against the key's
//! own environment (`ApiAuth::check`, which refuses any key, secret or
//! publishable, from an origin its environment does not allow). Answers to
//! an allowed origin expose `ETag`, so the OFREP web provider's polling
//! (with `If-None-Match`) gets 304s. Other origins get no CORS headers, so
//! the browser keeps the answer from the page.

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderValue};
use actix_web::http::Method;
use actix_web::middleware::Next;
use actix_web::{web, HttpResponse};

use crate::AppState;

/// Whether a browser may call `path` at all.
fn is_evaluation_route(path: &str) -> bool {
    path == "/api/v1/evaluate" || path.starts_with("/ofrep/v1/")
}

/// How long a browser may keep a preflight's answer.
const PREFLIGHT_MAX_AGE: &str = "600";

pub async fn cors(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let origin = req
        .headers()
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let Some(origin) = origin.filter(|_| is_evaluation_route(req.path())) else {
        return Ok(next.call(req).await?.map_into_left_body());
    };
    let allowed = req.app_data::<web::Data<AppState>>().is_some_and(|state| {
        state
            .model()
            .environments()
            .iter()
            .any(|env| env.allows_origin(&origin))
    });
    let allow_origin = HeaderValue::from_str(&origin).ok().filter(|_| allowed);
    let preflight = req.method() == Method::OPTIONS
        && req
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    if preflight {
        let mut answer = HttpResponse::NoContent();
        answer.insert_header((header::VARY, "Origin"));
        if let Some(allow_origin) = allow_origin {
            answer
                .insert_header((header::ACCESS_CONTROL_ALLOW_ORIGIN, allow_origin))
                .insert_header((header::ACCESS_CONTROL_ALLOW_METHODS, "GET, POST, OPTIONS"))
                .insert_header((
                    header::ACCESS_CONTROL_ALLOW_HEADERS,
                    "Authorization, Content-Type, If-None-Match, X-API-Key",
                ))
                .insert_header((header::ACCESS_CONTROL_MAX_AGE, PREFLIGHT_MAX_AGE));
        }
        return Ok(req.into_response(answer.finish()).map_into_right_body());
    }
    let mut response = next.call(req).await?;
    let headers = response.headers_mut();
    headers.append(header::VARY, HeaderValue::from_static("Origin"));
    if let Some(allow_origin) = allow_origin {
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, allow_origin);
        headers.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static("ETag"),
        );
    }
    Ok(response.map_into_left_body())
}
