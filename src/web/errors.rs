//! How each surface renders the one [`Error`]: the dashboard as an HTML
//! page, `/api/v1` as `{"error": {code, message, field?}}`, the WorkOS
//! surface as WorkOS's `{code, message}`, its OAuth endpoint as
//! `{error, error_description}`, and OFREP as `{errorCode, errorDetails}`.
//!
//! The renderer is chosen per route (a middleware on every resource), so a
//! failure anywhere in a request, in an extractor as much as in a handler,
//! answers in that route's shape. Handlers just return `Result<_, Error>`.

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::error::{PathError, QueryPayloadError};
use actix_web::http::{header, StatusCode};
use actix_web::middleware::Next;
use actix_web::{HttpRequest, HttpResponse, ResponseError};
use askama::Template;
use serde_json::json;

use crate::error::{Entity, Error, Refusal};

/// The shape errors take on a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Surface {
    Dashboard,
    Api,
    Workos,
    /// WorkOS's OAuth-style token endpoint.
    Oauth,
    Ofrep,
}

impl Surface {
    /// The surface of a path no route matched.
    pub fn of_unmatched_path(path: &str) -> Surface {
        let workos = ["/user_management/", "/sso/", "/sdk/", "/feature-flags"]
            .iter()
            .any(|p| path.starts_with(p))
            || (path.starts_with("/organizations/") && path.contains("/feature-flags"));
        if path.starts_with(super::api::API_PREFIX) {
            Surface::Api
        } else if path.starts_with(super::ofrep::OFREP_PREFIX) {
            Surface::Ofrep
        } else if workos {
            Surface::Workos
        } else {
            Surface::Dashboard
        }
    }

    /// The answer to `error` on this surface.
    pub fn render(self, error: &Error, req: &HttpRequest) -> HttpResponse {
        if let Error::Internal(cause) = error {
            tracing::error!(error = ?cause, path = %req.path(), "request failed");
        }
        let mut response = match self {
            Surface::Dashboard => dashboard(error),
            Surface::Api => api(error),
            Surface::Workos => workos(error),
            Surface::Oauth => oauth(error),
            Surface::Ofrep => ofrep(error, req.match_info().get("key")),
        };
        let headers = response.headers_mut();
        if let Error::Refused(Refusal::MethodNotAllowed { allow }) = error {
            if let Ok(value) = header::HeaderValue::from_str(&allow.join(", ")) {
                headers.insert(header::ALLOW, value);
            }
        }
        if let Error::Refused(Refusal::TooManyAttempts { retry_after, .. }) = error {
            headers.insert(header::RETRY_AFTER, header::HeaderValue::from(*retry_after));
        }
        if self != Surface::Dashboard
            && matches!(
                error,
                Error::Refused(Refusal::MissingApiKey | Refusal::InvalidApiKey)
            )
        {
            headers.insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}

/// The fallback rendering, where no surface middleware ran.
impl ResponseError for Error {
    fn status_code(&self) -> StatusCode {
        self.status()
    }

    fn error_response(&self) -> HttpResponse {
        api(self)
    }
}

fn api(error: &Error) -> HttpResponse {
    HttpResponse::build(error.status()).json(api_body(error))
}

fn workos(error: &Error) -> HttpResponse {
    let body = match error {
        Error::Invalid(_) | Error::Refused(Refusal::InvalidBody { .. }) => json!({
            "code": "invalid_request_parameters",
            "message": error.message(),
            "errors": [{"field": error.field().unwrap_or("body"), "code": error.code()}],
        }),
        Error::NotFound(_) => json!({"code": "entity_not_found", "message": error.message()}),
        _ => json!({"code": error.code(), "message": error.message()}),
    };
    HttpResponse::build(error.status()).json(body)
}

/// Every refusal of a refresh token is `invalid_grant`, as in OAuth, so the
/// SDKs' `session.refresh()` reports "not authenticated" instead of
/// throwing; Flagpole's own code rides along in `code`.
fn oauth(error: &Error) -> HttpResponse {
    use Refusal::*;
    let (status, kind) = match error {
        Error::NotFound(Entity::User | Entity::Organization | Entity::Session)
        | Error::Refused(
            NotAMember | InvalidRefreshToken | RefreshTokenReused | SessionRevoked | SessionExpired,
        ) => (StatusCode::BAD_REQUEST, "invalid_grant"),
        Error::Refused(InvalidClient { .. }) => (StatusCode::UNAUTHORIZED, "invalid_client"),
        Error::Refused(UnsupportedGrantType { .. }) => {
            (StatusCode::BAD_REQUEST, "unsupported_grant_type")
        }
        Error::Invalid(_)
        | Error::Refused(Malformed { .. } | InvalidBody { .. } | UnsupportedMediaType) => {
            (StatusCode::BAD_REQUEST, "invalid_request")
        }
        Error::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "server_error"),
        other => (other.status(), other.code()),
    };
    let mut body = json!({
        "error": kind,
        "error_description": error.message(),
        "message": error.message(),
    });
    if kind == "invalid_grant" {
        body["code"] = json!(error.code());
    }
    HttpResponse::build(status)
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(body)
}

/// OFREP's errors: `{"key"?, "errorCode", "errorDetails"}` for evaluation
/// errors, `{"errorDetails"}` for the others.
fn ofrep(error: &Error, key: Option<&str>) -> HttpResponse {
    let code = match error {
        Error::Refused(Refusal::Malformed { .. } | Refusal::InvalidBody { .. }) => {
            Some("PARSE_ERROR")
        }
        Error::Refused(Refusal::TargetingKeyMissing) => Some("TARGETING_KEY_MISSING"),
        Error::Refused(Refusal::InvalidContext { .. }) => Some("INVALID_CONTEXT"),
        Error::NotFound(Entity::Flag) => Some("FLAG_NOT_FOUND"),
        _ => None,
    };
    let status = match code {
        Some("FLAG_NOT_FOUND") => StatusCode::NOT_FOUND,
        Some(_) => StatusCode::BAD_REQUEST,
        None => error.status(),
    };
    let details = match error {
        Error::NotFound(Entity::Flag) => format!(
            "No flag has the key {:?}. The key is the flag's slug.",
            key.unwrap_or_default()
        ),
        Error::NotFound(Entity::Route) => "No OFREP route has this method and path. Use POST \
            /ofrep/v1/evaluate/flags/{key} or POST /ofrep/v1/evaluate/flags."
            .into(),
        other => other.message(),
    };
    let mut body = json!({ "errorDetails": details });
    if let Some(code) = code {
        body["errorCode"] = json!(code);
        if let Some(key) = key {
            body["key"] = json!(key);
        }
    }
    HttpResponse::build(status).json(body)
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    status: u16,
    title: &'a str,
    message: &'a str,
}

fn title(error: &Error) -> &'static str {
    match error {
        Error::NotFound(_) => "Not found",
        Error::Conflict { .. } | Error::Invalid(_) => "Check your input",
        Error::Stale(_) => "Changed by someone else",
        Error::Refused(Refusal::Csrf) => "Form expired",
        Error::Refused(Refusal::Forbidden { .. }) => "Not allowed",
        Error::Refused(Refusal::TooManyAttempts { .. }) => "Too many attempts",
        Error::Refused(Refusal::LoginRequired { .. }) => "Sign in",
        Error::Refused(_) => "Not possible",
        Error::Internal(_) => "Something went wrong",
    }
}

fn dashboard(error: &Error) -> HttpResponse {
    if let Error::Refused(Refusal::LoginRequired { next }) = error {
        let location = format!(
            "/login?next={}",
            percent_encoding::utf8_percent_encode(next, percent_encoding::NON_ALPHANUMERIC)
        );
        return HttpResponse::SeeOther()
            .insert_header((header::LOCATION, location))
            .finish();
    }
    let message = match error {
        Error::Invalid(errors) => errors
            .iter()
            .map(|e| format!("{}: {}", e.field, e.message))
            .collect::<Vec<_>>()
            .join("; "),
        Error::NotFound(Entity::Page | Entity::Route) => error.message(),
        Error::NotFound(_) => format!(
            "{} {}",
            Error::NotFound(Entity::Page).message(),
            error.message()
        ),
        other => other.message(),
    };
    error_page(error.status(), title(error), &message)
}

/// An HTML error page.
pub fn error_page(status: StatusCode, title: &str, message: &str) -> HttpResponse {
    let page = ErrorPage {
        status: status.as_u16(),
        title,
        message,
    };
    match page.render() {
        Ok(html) => HttpResponse::build(status)
            .content_type("text/html; charset=utf-8")
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .body(html),
        Err(_) => HttpResponse::build(status).body(message.to_string()),
    }
}

/// The error behind a response that failed: ours, or one of actix's
/// (payload limits, unreadable bodies) put in our terms.
fn error_of(res: &ServiceResponse<impl MessageBody>) -> Option<Error> {
    let status = res.status();
    let Some(err) = res.response().error() else {
        return match status {
            StatusCode::NOT_FOUND => Some(Error::NotFound(Entity::Route)),
            _ => None,
        };
    };
    if let Some(ours) = err.as_error::<Error>() {
        return Some(clone_error(ours));
    }
    Some(match status {
        StatusCode::PAYLOAD_TOO_LARGE => Error::Refused(Refusal::PayloadTooLarge {
            message: "The body is larger than this route accepts.".into(),
        }),
        StatusCode::NOT_FOUND => Error::NotFound(Entity::Route),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => Error::Refused(Refusal::UnsupportedMediaType),
        s if s.is_client_error() => {
            Error::malformed("request", format!("The request could not be read: {err}"))
        }
        _ => Error::internal(anyhow::anyhow!("{err}")),
    })
}

/// A copy of an error to render; an internal cause is logged by the
/// renderer, so the copy keeps its text.
fn clone_error(error: &Error) -> Error {
    match error {
        Error::NotFound(e) => Error::NotFound(*e),
        Error::Conflict {
            field,
            code,
            message,
        } => Error::Conflict {
            field: field.clone(),
            code,
            message: message.clone(),
        },
        Error::Invalid(errors) => Error::Invalid(errors.clone()),
        Error::Stale(e) => Error::Stale(*e),
        Error::Refused(r) => Error::Refused(r.clone()),
        Error::Internal(cause) => Error::Internal(anyhow::anyhow!("{cause:#}")),
    }
}

/// The middleware that renders a route's errors in its surface's shape.
pub async fn render_errors(
    surface: Surface,
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let res = next.call(req).await?;
    let Some(error) = error_of(&res) else {
        return Ok(res.map_into_boxed_body());
    };
    let (req, _) = res.into_parts();
    let rendered = surface.render(&error, &req);
    Ok(ServiceResponse::new(req, rendered))
}

/// Query strings that do not parse.
pub fn query_error(err: QueryPayloadError, _req: &HttpRequest) -> actix_web::Error {
    Error::malformed("query", format!("The address has an invalid query: {err}")).into()
}

/// Paths whose parts do not parse.
pub fn path_error(err: PathError, _req: &HttpRequest) -> actix_web::Error {
    Error::malformed("path", format!("The address is invalid: {err}")).into()
}

/// The body of an `/api/v1` error.
pub fn api_body(error: &Error) -> super::api::objects::ErrorBody {
    super::api::objects::ErrorBody {
        error: super::api::objects::ErrorDetail {
            code: error.code(),
            message: error.message(),
            field: error.field().map(str::to_string),
        },
    }
}
