//! The JSON API for applications: sessions (the token endpoint), evaluation,
//! and the published keys. Errors are `{"error": {"code", "message", "field"?}}`.

use std::future::Future;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::error::JsonPayloadError;
use actix_web::http::{header, StatusCode};
use actix_web::{web, FromRequest, HttpRequest, HttpResponse, ResponseError};
use serde::Deserialize;
use serde_json::json;

use crate::directory::{OrganizationInput, UserInput};
use crate::error::AppError;
use crate::keys::SigningAlgorithm;
use crate::models::{ApiKey, Environment, User};
use crate::sessions::{self, Issued, OrganizationSpec, RevokeTarget, SessionError, Subject};
use crate::signing::Signer;
use crate::{api_keys, environments, signing, AppState};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/api/v1")
            .app_data(json_config())
            .route("/sessions", web::post().to(start_session))
            .route("/sessions/refresh", web::post().to(refresh_session))
            .route("/sessions/revoke", web::post().to(revoke_session))
            .route("/evaluate", web::post().to(evaluate))
            .route(
                "/users/{id}/feature-flags",
                web::get().to(user_feature_flags),
            )
            .default_service(web::to(api_not_found)),
    )
    .route("/.well-known/jwks.json", web::get().to(jwks))
    .route(
        "/.well-known/openid-configuration",
        web::get().to(openid_configuration),
    );
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
                let (field, message) = errors
                    .0
                    .into_iter()
                    .next()
                    .unwrap_or_else(|| ("body".into(), "Invalid input.".into()));
                ApiError {
                    status: StatusCode::UNPROCESSABLE_ENTITY,
                    code: "invalid_field",
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
    web::JsonConfig::default()
        .limit(1 << 20)
        .error_handler(|err, _req| {
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
                    "The body is larger than 1 MiB.",
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

#[derive(Deserialize)]
struct InlineUser {
    external_id: Option<String>,
    email: Option<String>,
    first_name: Option<String>,
    last_name: Option<String>,
}

#[derive(Deserialize)]
struct InlineOrganization {
    external_id: Option<String>,
    name: Option<String>,
}

#[derive(Deserialize)]
struct StartBody {
    user_id: Option<String>,
    organization_id: Option<String>,
    user: Option<InlineUser>,
    organization: Option<InlineOrganization>,
}

fn required(value: Option<String>, field: &str, what: &str) -> Result<String, ApiError> {
    match value
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
    {
        Some(v) => Ok(v),
        None => Err(ApiError::invalid(field, format!("Give {what}."))),
    }
}

fn subject_of(body: StartBody) -> Result<Subject, ApiError> {
    match (body.user_id, body.user) {
        (Some(_), Some(_)) => Err(ApiError::invalid(
            "user",
            "Give either user_id or an inline user object, not both.",
        )),
        (None, None) => Err(ApiError::invalid(
            "user_id",
            "Give user_id (a Flagpole id or an external id) or an inline user object.",
        )),
        (Some(user_id), None) => {
            if body.organization.is_some() {
                return Err(ApiError::invalid(
                    "organization",
                    "An inline organization comes with an inline user; with user_id, give organization_id.",
                ));
            }
            Ok(Subject::Ids {
                user: required(Some(user_id), "user_id", "the user's id or external id")?,
                organization: body
                    .organization_id
                    .map(|o| o.trim().to_string())
                    .filter(|o| !o.is_empty()),
            })
        }
        (None, Some(user)) => {
            let user = UserInput {
                external_id: required(
                    user.external_id,
                    "user.external_id",
                    "the user's external_id",
                )?,
                email: required(user.email, "user.email", "the user's email")?,
                first_name: user.first_name.unwrap_or_default(),
                last_name: user.last_name.unwrap_or_default(),
            };
            let organization =
                match (body.organization_id, body.organization) {
                    (Some(_), Some(_)) => return Err(ApiError::invalid(
                        "organization",
                        "Give either organization_id or an inline organization object, not both.",
                    )),
                    (Some(id), None) => Some(OrganizationSpec::Existing(id.trim().to_string())),
                    (None, Some(org)) => Some(OrganizationSpec::Inline(OrganizationInput {
                        external_id: required(
                            org.external_id,
                            "organization.external_id",
                            "the organization's external_id",
                        )?,
                        name: required(org.name, "organization.name", "the organization's name")?,
                    })),
                    (None, None) => None,
                };
            Ok(Subject::Inline { user, organization })
        }
    }
}

fn user_json(user: &User) -> serde_json::Value {
    json!({
        "object": "user",
        "id": user.id,
        "email": user.email,
        "first_name": user.first_name,
        "last_name": user.last_name,
        "external_id": user.external_id,
        "created_at": user.created_at,
        "updated_at": user.updated_at,
    })
}

/// Signs an access token for an issued session and answers with the pair.
fn session_response(
    state: &AppState,
    status: StatusCode,
    env: &Environment,
    issued: &Issued,
    signer: &Signer,
) -> Result<HttpResponse, ApiError> {
    let settings = state.config.token_settings();
    let flags = state.index().evaluate(
        &env.id,
        Some(&issued.session.user_id),
        issued.session.organization_id.as_deref(),
    );
    let access_token = sessions::mint_access_token(
        signer,
        &settings,
        &state.config.public_url,
        env,
        &issued.session,
        &flags,
    )?;
    Ok(HttpResponse::build(status)
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(json!({
            "access_token": access_token,
            "refresh_token": issued.refresh_token,
            "token_type": "Bearer",
            "expires_in": settings.access_ttl_seconds,
            "feature_flags": flags,
            "user": user_json(&issued.user),
            "organization_id": issued.session.organization_id,
            "session_id": issued.session.id,
        })))
}

async fn start_session(
    state: web::Data<AppState>,
    auth: ApiAuth,
    body: web::Json<StartBody>,
) -> Result<HttpResponse, ApiError> {
    let subject = subject_of(body.into_inner())?;
    let env = auth.environment.clone();
    let actor = auth.actor();
    let st = state.clone();
    let env_for_db = env.clone();
    let result = state
        .db(move |conn| {
            let settings = st.config.token_settings();
            let issued = match sessions::start(conn, &settings, &actor, &env_for_db, &subject) {
                Ok(issued) => issued,
                Err(SessionError::Other(e)) => return Err(e),
                Err(e) => return Ok(Err(e)),
            };
            let signer = st.signers.signer(conn, &st.sealer, &env_for_db.id)?;
            Ok(Ok((issued, signer)))
        })
        .await?;
    let (issued, signer) = result?;
    session_response(&state, StatusCode::CREATED, &env, &issued, &signer)
}

#[derive(Deserialize)]
struct RefreshBody {
    refresh_token: Option<String>,
    organization_id: Option<String>,
}

async fn refresh_session(
    state: web::Data<AppState>,
    body: web::Json<RefreshBody>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let token = required(body.refresh_token, "refresh_token", "the refresh_token")?;
    let organization = body
        .organization_id
        .map(|o| o.trim().to_string())
        .filter(|o| !o.is_empty());
    let st = state.clone();
    let result = state
        .db(move |conn| {
            let settings = st.config.token_settings();
            let issued = match sessions::refresh(
                conn,
                &settings,
                &st.sealer,
                &token,
                organization.as_deref(),
            ) {
                Ok(issued) => issued,
                Err(SessionError::Other(e)) => return Err(e),
                Err(e) => return Ok(Err(e)),
            };
            let env = environments::get(conn, &issued.session.environment_id)?;
            let signer = st.signers.signer(conn, &st.sealer, &env.id)?;
            Ok(Ok((issued, env, signer)))
        })
        .await?;
    let (issued, env, signer) = result?;
    session_response(&state, StatusCode::OK, &env, &issued, &signer)
}

#[derive(Deserialize)]
struct RevokeBody {
    refresh_token: Option<String>,
    session_id: Option<String>,
}

async fn revoke_session(
    state: web::Data<AppState>,
    auth: ApiAuth,
    body: web::Json<RevokeBody>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let env_id = auth.environment.id.clone();
    let result = state
        .db(move |conn| {
            let target = match (&body.refresh_token, &body.session_id) {
                (Some(t), None) => RevokeTarget::RefreshToken(t),
                (None, Some(s)) => RevokeTarget::SessionId(s),
                _ => {
                    return Ok(Err(SessionError::Other(AppError::Invalid(
                        crate::error::FieldErrors::single(
                            "refresh_token",
                            "Give either refresh_token or session_id.",
                        ),
                    ))))
                }
            };
            match sessions::revoke(conn, &env_id, target) {
                Err(SessionError::Other(e)) => Err(e),
                other => Ok(other),
            }
        })
        .await?;
    result?;
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Deserialize)]
struct EvaluateBody {
    user_id: Option<String>,
    organization_id: Option<String>,
}

/// Resolves a user (and organization, which the user must belong to) and
/// evaluates every flag for them from the index.
async fn evaluate_for(
    state: &web::Data<AppState>,
    env: &Environment,
    user_key: String,
    org_key: Option<String>,
) -> Result<HttpResponse, ApiError> {
    let result = state
        .db(move |conn| {
            let resolved = (|| {
                let user = sessions::resolve_user(conn, &user_key)?;
                let org = match org_key {
                    Some(key) => {
                        let org = sessions::resolve_organization(conn, &key)?;
                        let member = crate::directory::organizations_of(conn, &user.id)?
                            .iter()
                            .any(|o| o.id == org.id);
                        if !member {
                            return Err(SessionError::NotAMember);
                        }
                        Some(org.id)
                    }
                    None => None,
                };
                Ok((user, org))
            })();
            match resolved {
                Err(SessionError::Other(e)) => Err(e),
                other => Ok(other),
            }
        })
        .await?;
    let (user, org) = result?;
    let flags = state
        .index()
        .evaluate(&env.id, Some(&user.id), org.as_deref());
    Ok(HttpResponse::Ok().json(json!({
        "user_id": user.id,
        "organization_id": org,
        "feature_flags": flags,
    })))
}

async fn evaluate(
    state: web::Data<AppState>,
    auth: ApiAuth,
    body: web::Json<EvaluateBody>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let user = required(body.user_id, "user_id", "the user's id or external id")?;
    let org = body
        .organization_id
        .map(|o| o.trim().to_string())
        .filter(|o| !o.is_empty());
    evaluate_for(&state, &auth.environment, user, org).await
}

#[derive(Deserialize)]
struct FlagsQuery {
    organization_id: Option<String>,
}

async fn user_feature_flags(
    state: web::Data<AppState>,
    auth: ApiAuth,
    path: web::Path<String>,
    query: web::Query<FlagsQuery>,
) -> Result<HttpResponse, ApiError> {
    let org = query
        .organization_id
        .clone()
        .map(|o| o.trim().to_string())
        .filter(|o| !o.is_empty());
    evaluate_for(&state, &auth.environment, path.into_inner(), org).await
}

async fn jwks(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let st = state.clone();
    let keys = state
        .db(move |conn| {
            // Every environment publishes a key, even before its first token.
            for env in environments::list(conn)? {
                signing::active_key(conn, &st.sealer, &env.id)?;
            }
            Ok(signing::published_keys(conn, None)?)
        })
        .await?;
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "public, max-age=60"))
        .json(signing::jwks(&keys)))
}

async fn openid_configuration(state: web::Data<AppState>) -> HttpResponse {
    let base = &state.config.public_url;
    let algorithms: Vec<&str> = SigningAlgorithm::ALL.iter().map(|a| a.as_str()).collect();
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "public, max-age=300"))
        .json(json!({
            "issuer": base,
            "jwks_uri": format!("{base}/.well-known/jwks.json"),
            "token_endpoint": format!("{base}/api/v1/sessions"),
            "id_token_signing_alg_values_supported": algorithms,
            "token_endpoint_auth_methods_supported": ["client_secret_post"],
            "response_types_supported": ["token"],
            "subject_types_supported": ["public"],
            "claims_supported": ["iss", "sub", "aud", "sid", "org_id", "feature_flags", "iat", "exp", "jti"],
        }))
}
