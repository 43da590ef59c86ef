//! The JSON API for applications. Errors are
//! `{"error": {"code", "message", "field"?}}` with a 4xx status; a secret
//! key (`Authorization: Bearer sk_…`) decides the environment of each call.

use std::collections::BTreeSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Mutex, PoisonError};

use actix_web::dev::Payload;
use actix_web::error::JsonPayloadError;
use actix_web::http::{header, Method, StatusCode};
use actix_web::{
    guard, web, FromRequest, Handler, HttpRequest, HttpResponse, Responder, ResponseError,
};
use serde_json::json;
use utoipa::ToSchema;

use crate::error::AppError;
use crate::models::{ApiKey, Environment};
use crate::sessions::SessionError;
use crate::{api_keys, AppState};

pub mod audit;
pub mod directory;
pub mod flags;
pub mod ofrep;
pub mod openapi;
pub mod paging;
pub mod sessions;

/// Where the management API and the token endpoint live.
pub const API_PREFIX: &str = "/api/v1";
/// Where the OpenFeature Remote Evaluation Protocol lives.
pub const OFREP_PREFIX: &str = "/ofrep/v1";

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope(API_PREFIX)
            .app_data(json_config())
            .configure(sessions::routes)
            .configure(flags::routes)
            .configure(directory::routes)
            .configure(audit::routes)
            .configure(openapi::routes)
            .default_service(web::to(api_not_found)),
    )
    .service(
        web::scope(OFREP_PREFIX)
            .configure(ofrep::routes)
            .default_service(web::to(ofrep::not_found)),
    )
    .configure(sessions::well_known_routes);
}

/// Every (method, path) that an `ApiRoutes` mounted in this process, with
/// the full prefix. Each worker configures the same routes; the set keeps one.
static MOUNTED: Mutex<BTreeSet<(String, String)>> = Mutex::new(BTreeSet::new());

/// The API routes mounted so far, as (`GET`, `/api/v1/feature-flags/{slug}`),
/// sorted. The OpenAPI test compares them with the document.
pub fn mounted_routes() -> Vec<(String, String)> {
    MOUNTED
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .iter()
        .cloned()
        .collect()
}

/// Mounts API routes and records each one, so that what the server answers
/// and what the OpenAPI document says can be compared. `prefix` is the path
/// of the scope the routes are configured in (`API_PREFIX`, `OFREP_PREFIX`,
/// or `""` at the root).
pub struct ApiRoutes<'a> {
    cfg: &'a mut web::ServiceConfig,
    prefix: &'static str,
}

impl<'a> ApiRoutes<'a> {
    pub fn new(cfg: &'a mut web::ServiceConfig, prefix: &'static str) -> Self {
        ApiRoutes { cfg, prefix }
    }

    fn add<F, Args>(&mut self, method: Method, path: &str, handler: F) -> &mut Self
    where
        F: Handler<Args>,
        Args: FromRequest + 'static,
        F::Output: Responder + 'static,
    {
        self.record(&method, path);
        self.cfg.route(path, web::method(method).to(handler));
        self
    }

    fn record(&self, method: &Method, path: &str) {
        MOUNTED
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert((method.to_string(), format!("{}{path}", self.prefix)));
    }

    /// A POST route with its own `app_data` (e.g. a larger `JsonConfig`),
    /// on a resource that answers POST only, so other methods on the same
    /// path fall through to the routes after it.
    pub fn post_with_data<F, Args, D>(&mut self, path: &str, data: D, handler: F) -> &mut Self
    where
        F: Handler<Args>,
        Args: FromRequest + 'static,
        F::Output: Responder + 'static,
        D: 'static,
    {
        self.record(&Method::POST, path);
        self.cfg.service(
            web::resource(path)
                .guard(guard::Post())
                .app_data(data)
                .route(web::post().to(handler)),
        );
        self
    }

    pub fn get<F, Args>(&mut self, path: &str, handler: F) -> &mut Self
    where
        F: Handler<Args>,
        Args: FromRequest + 'static,
        F::Output: Responder + 'static,
    {
        self.add(Method::GET, path, handler)
    }

    pub fn post<F, Args>(&mut self, path: &str, handler: F) -> &mut Self
    where
        F: Handler<Args>,
        Args: FromRequest + 'static,
        F::Output: Responder + 'static,
    {
        self.add(Method::POST, path, handler)
    }

    pub fn put<F, Args>(&mut self, path: &str, handler: F) -> &mut Self
    where
        F: Handler<Args>,
        Args: FromRequest + 'static,
        F::Output: Responder + 'static,
    {
        self.add(Method::PUT, path, handler)
    }

    pub fn patch<F, Args>(&mut self, path: &str, handler: F) -> &mut Self
    where
        F: Handler<Args>,
        Args: FromRequest + 'static,
        F::Output: Responder + 'static,
    {
        self.add(Method::PATCH, path, handler)
    }

    pub fn delete<F, Args>(&mut self, path: &str, handler: F) -> &mut Self
    where
        F: Handler<Args>,
        Args: FromRequest + 'static,
        F::Output: Responder + 'static,
    {
        self.add(Method::DELETE, path, handler)
    }
}

/// The error body of every API answer that is not a success (documentation
/// of what `ApiError` sends).
#[derive(ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(ToSchema)]
pub struct ErrorDetail {
    /// A stable snake_case code, e.g. `invalid_field`, `flag_not_found`, `stale`.
    #[schema(example = "invalid_field")]
    pub code: String,
    /// What went wrong and what to do about it, for a person.
    pub message: String,
    /// The request field at fault, for 409 and 422 answers.
    #[schema(nullable = false)]
    pub field: Option<String>,
}

/// An API error: a status, a stable snake_case code, and what to do about it.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub field: Option<String>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            field: None,
        }
    }
    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            code: "invalid_field",
            message: message.into(),
            field: Some(field.to_string()),
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }
    fn error_response(&self) -> HttpResponse {
        let mut error = json!({"code": self.code, "message": self.message});
        if let Some(field) = &self.field {
            error["field"] = json!(field);
        }
        HttpResponse::build(self.status).json(json!({ "error": error }))
    }
}

impl From<AppError> for ApiError {
    fn from(err: AppError) -> Self {
        match err {
            AppError::NotFound => {
                ApiError::new(StatusCode::NOT_FOUND, "not_found", "No such object.")
            }
            AppError::Invalid(errors) => {
                let (status, code) = if errors.is_conflict() {
                    (StatusCode::CONFLICT, "duplicate")
                } else {
                    (StatusCode::UNPROCESSABLE_ENTITY, "invalid_field")
                };
                let (field, message) = errors
                    .0
                    .into_iter()
                    .next()
                    .unwrap_or_else(|| ("body".into(), "Invalid input.".into()));
                ApiError {
                    status,
                    code,
                    message,
                    field: Some(field),
                }
            }
            AppError::BadRequest(m) => ApiError::new(StatusCode::BAD_REQUEST, "bad_request", m),
            AppError::Forbidden(m) => ApiError::new(StatusCode::FORBIDDEN, "forbidden", m),
            AppError::Stale(m) => ApiError::new(StatusCode::PRECONDITION_FAILED, "stale", m),
            AppError::TooManyAttempts(m) => {
                ApiError::new(StatusCode::TOO_MANY_REQUESTS, "too_many_requests", m)
            }
            AppError::Csrf | AppError::LoginRequired(_) => ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "Send a secret API key as Authorization: Bearer sk_…",
            ),
            AppError::Internal(cause) => {
                tracing::error!(error = ?cause, "API request failed");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal_error",
                    "Something went wrong on our side. The problem was logged.",
                )
            }
        }
    }
}

impl From<SessionError> for ApiError {
    fn from(err: SessionError) -> Self {
        use StatusCode as S;
        match err {
            SessionError::UserNotFound => ApiError::new(
                S::NOT_FOUND,
                "user_not_found",
                "No user has this id or external id.",
            ),
            SessionError::OrganizationNotFound => ApiError::new(
                S::NOT_FOUND,
                "organization_not_found",
                "No organization has this id or external id.",
            ),
            SessionError::NotAMember => ApiError::new(
                S::FORBIDDEN,
                "not_a_member",
                "The user is not a member of this organization. Add the membership first, or name an organization the user belongs to.",
            ),
            SessionError::InvalidRefreshToken => ApiError::new(
                S::UNAUTHORIZED,
                "invalid_refresh_token",
                "This refresh token is not valid. Start a new session.",
            ),
            SessionError::RefreshTokenReused => ApiError::new(
                S::UNAUTHORIZED,
                "refresh_token_reused",
                "This refresh token was already used, so the session was revoked to protect the user. Start a new session.",
            ),
            SessionError::SessionRevoked => ApiError::new(
                S::UNAUTHORIZED,
                "session_revoked",
                "This session was revoked. Start a new session.",
            ),
            SessionError::SessionExpired => ApiError::new(
                S::UNAUTHORIZED,
                "session_expired",
                "This session expired. Start a new session.",
            ),
            SessionError::SessionNotFound => ApiError::new(
                S::NOT_FOUND,
                "session_not_found",
                "No session of this environment has this id or refresh token.",
            ),
            SessionError::Other(e) => e.into(),
        }
    }
}

fn json_config() -> web::JsonConfig {
    json_config_with_limit(1 << 20)
}

/// The JSON body settings of the API with a larger limit, for the few
/// routes (bulk upserts) whose bodies can be big.
fn json_config_with_limit(limit: usize) -> web::JsonConfig {
    web::JsonConfig::default()
        .limit(limit)
        .error_handler(move |err, _req| {
            let api = match &err {
                JsonPayloadError::ContentType => ApiError::new(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "unsupported_media_type",
                    "Send the body as JSON with Content-Type: application/json.",
                ),
                JsonPayloadError::Overflow { .. }
                | JsonPayloadError::OverflowKnownLength { .. } => ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "too_large",
                    format!("The body is larger than {} MiB.", limit >> 20),
                ),
                JsonPayloadError::Deserialize(e) if e.is_data() => ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "invalid_body",
                    format!("The body does not have the expected shape: {e}"),
                ),
                other => ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_json",
                    format!("The body is not valid JSON: {other}"),
                ),
            };
            api.into()
        })
}

async fn api_not_found() -> Result<HttpResponse, ApiError> {
    Err(ApiError::new(
        StatusCode::NOT_FOUND,
        "route_not_found",
        "No API route has this method and path.",
    ))
}

/// A caller authenticated by a secret API key; the key decides the environment.
pub struct ApiAuth {
    pub key: ApiKey,
    pub environment: Environment,
}

impl ApiAuth {
    /// How the audit trail names changes made with this key.
    pub fn actor(&self) -> String {
        format!("api key {} ({})", self.key.name, self.key.prefix)
    }
}

type LocalFuture<T> = Pin<Box<dyn Future<Output = T>>>;

impl FromRequest for ApiAuth {
    type Error = ApiError;
    type Future = LocalFuture<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _payload: &mut Payload) -> Self::Future {
        let state = req.app_data::<web::Data<AppState>>().cloned();
        let secret = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(|s| s.trim().to_string());
        Box::pin(async move {
            let state = state
                .ok_or_else(|| ApiError::from(AppError::Internal(anyhow::anyhow!("no state"))))?;
            let Some(secret) = secret else {
                return Err(ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "missing_api_key",
                    "Send a secret API key as Authorization: Bearer sk_…",
                ));
            };
            let found = state
                .db(move |conn| Ok(api_keys::authenticate(conn, &secret)?))
                .await?;
            match found {
                Some((key, environment)) => Ok(ApiAuth { key, environment }),
                None => Err(ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "invalid_api_key",
                    "This API key is unknown or revoked.",
                )),
            }
        })
    }
}
