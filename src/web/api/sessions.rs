//! The token endpoint (sessions), evaluation without a token, and the
//! published keys.

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpResponse};
use serde::Deserialize;
use serde_json::json;
use utoipa::{IntoParams, ToSchema};

use super::{ApiAuth, ApiError, ApiRoutes, ErrorBody, API_PREFIX};
use crate::directory::{OrganizationInput, UserInput};
use crate::error::AppError;
use crate::keys::SigningAlgorithm;
use crate::models::{Environment, User};
use crate::sessions::{self, Issued, OrganizationSpec, RevokeTarget, SessionError, Subject};
use crate::signing::Signer;
use crate::{environments, signing, AppState};

pub fn routes(cfg: &mut web::ServiceConfig) {
    ApiRoutes::new(cfg, API_PREFIX)
        .post("/sessions", start_session)
        .post("/sessions/refresh", refresh_session)
        .post("/sessions/revoke", revoke_session)
        .post("/evaluate", evaluate)
        .get("/users/{id}/feature-flags", user_feature_flags);
}

pub fn well_known_routes(cfg: &mut web::ServiceConfig) {
    ApiRoutes::new(cfg, "")
        .get("/.well-known/jwks.json", jwks)
        .get("/.well-known/openid-configuration", openid_configuration);
}

/// A user given inline: created, or updated when the `external_id` is known.
#[derive(Deserialize, ToSchema)]
struct InlineUser {
    #[schema(value_type = String, required = true, example = "u-1042")]
    external_id: Option<String>,
    #[schema(value_type = String, required = true, example = "ada@example.com")]
    email: Option<String>,
    first_name: Option<String>,
    last_name: Option<String>,
}

/// An organization given inline: created, or updated when the
/// `external_id` is known; the user becomes a member.
#[derive(Deserialize, ToSchema)]
struct InlineOrganization {
    #[schema(value_type = String, required = true, example = "acme")]
    external_id: Option<String>,
    #[schema(value_type = String, required = true, example = "Acme Inc.")]
    name: Option<String>,
}

/// Who the session is for: `user_id` (with an optional `organization_id`
/// the user belongs to), or an inline `user` (with an optional inline
/// `organization` or `organization_id`).
#[derive(Deserialize, ToSchema)]
#[schema(as = StartSession)]
struct StartBody {
    /// A Flagpole user id or the user's external id.
    #[schema(example = "u-1042")]
    user_id: Option<String>,
    /// A Flagpole organization id or external id; the user must be a member.
    #[schema(example = "acme")]
    organization_id: Option<String>,
    user: Option<InlineUser>,
    organization: Option<InlineOrganization>,
}

/// A user, as the API answers it.
#[derive(ToSchema)]
pub struct UserObject {
    #[schema(inline)]
    pub object: UserKind,
    #[schema(example = "user_01JD6Z8X4G7Q2M3N5P6R7S8T9V")]
    pub id: String,
    pub email: String,
    pub first_name: String,
    pub last_name: String,
    /// Your application's id for the user.
    #[schema(required = true)]
    pub external_id: Option<String>,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(format = DateTime)]
    pub updated_at: String,
}

#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
pub enum UserKind {
    User,
}

/// An access token and a refresh token for a session.
#[derive(ToSchema)]
pub struct SessionResponse {
    /// A JWT signed with the environment's key; verify it with the JWKS.
    pub access_token: String,
    /// Use once, with `POST /api/v1/sessions/refresh`.
    pub refresh_token: String,
    #[schema(inline)]
    pub token_type: TokenType,
    /// Seconds until the access token expires.
    #[schema(example = 300)]
    pub expires_in: i64,
    /// The slugs of the flags that are on for the user (and organization).
    #[schema(example = json!(["new-checkout"]))]
    pub feature_flags: Vec<String>,
    pub user: UserObject,
    /// The session's organization, if any.
    #[schema(required = true)]
    pub organization_id: Option<String>,
    #[schema(example = "session_01JD6Z8X4G7Q2M3N5P6R7S8T9V")]
    pub session_id: String,
}

#[derive(ToSchema)]
pub enum TokenType {
    Bearer,
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

/// Evaluates the session's flags and signs its access token: the token and
/// the slugs in its `feature_flags` claim.
pub(crate) fn mint(
    state: &AppState,
    env: &Environment,
    issued: &Issued,
    signer: &Signer,
) -> Result<(String, Vec<String>), ApiError> {
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
    Ok((access_token, flags))
}

/// Signs an access token for an issued session and answers with the pair.
fn session_response(
    state: &AppState,
    status: StatusCode,
    env: &Environment,
    issued: &Issued,
    signer: &Signer,
) -> Result<HttpResponse, ApiError> {
    let (access_token, flags) = mint(state, env, issued, signer)?;
    Ok(HttpResponse::build(status)
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(json!({
            "access_token": access_token,
            "refresh_token": issued.refresh_token,
            "token_type": "Bearer",
            "expires_in": state.config.token_settings().access_ttl_seconds,
            "feature_flags": flags,
            "user": user_json(&issued.user),
            "organization_id": issued.session.organization_id,
            "session_id": issued.session.id,
        })))
}

/// A refreshed session with what signing its access token needs.
pub(crate) type Refreshed = (Issued, Environment, Signer);

/// Rotates a refresh token (switching organization when one is named) and
/// loads the session's environment and signer. With `environment`, only a
/// session of that environment is accepted.
pub(crate) async fn rotate(
    state: &web::Data<AppState>,
    token: String,
    organization: Option<String>,
    environment: Option<String>,
) -> Result<Result<Refreshed, SessionError>, AppError> {
    let st = state.clone();
    state
        .db(move |conn| {
            let settings = st.config.token_settings();
            let issued = match sessions::refresh(
                conn,
                &settings,
                &st.sealer,
                &token,
                organization.as_deref(),
                environment.as_deref(),
            ) {
                Ok(issued) => issued,
                Err(SessionError::Other(e)) => return Err(e),
                Err(e) => return Ok(Err(e)),
            };
            let env = environments::get(conn, &issued.session.environment_id)?;
            let signer = st.signers.signer(conn, &st.sealer, &env.id)?;
            Ok(Ok((issued, env, signer)))
        })
        .await
}

/// Starts a session for a user: an access token and a refresh token.
///
/// The access token is a JWT signed with the environment's key whose
/// `feature_flags` claim lists the flags that are on for the user.
#[utoipa::path(
    operation_id = "start_session",
    post,
    path = "/api/v1/sessions",
    tag = "Sessions",
    security(("api_key" = [])),
    responses(
        (status = 201, description = "The session's tokens.", body = SessionResponse),
        (status = 400, description = "The body is not valid JSON.", body = ErrorBody),
        (status = 401, description = "No key, or an unknown or revoked one.", body = ErrorBody),
        (status = 403, description = "The user is not a member of the organization (`not_a_member`).", body = ErrorBody),
        (status = 404, description = "No such user or organization (`user_not_found`, `organization_not_found`).", body = ErrorBody),
        (status = 415, description = "The body is not sent as application/json.", body = ErrorBody),
        (status = 422, description = "A field is missing or invalid; `field` names it.", body = ErrorBody),
    )
)]
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

/// A refresh token to exchange, and optionally another organization of the
/// user to switch the session to.
#[derive(Deserialize, ToSchema)]
#[schema(as = RefreshSession)]
struct RefreshBody {
    #[schema(value_type = String, required = true)]
    refresh_token: Option<String>,
    /// A Flagpole organization id or external id; the user must be a member.
    organization_id: Option<String>,
}

/// Exchanges a refresh token for a new pair, with the flags evaluated again.
///
/// No key is needed: the refresh token is the credential. A refresh token
/// used twice revokes its session.
#[utoipa::path(
    operation_id = "refresh_session",
    post,
    path = "/api/v1/sessions/refresh",
    tag = "Sessions",
    responses(
        (status = 200, description = "The session's new tokens.", body = SessionResponse),
        (status = 400, description = "The body is not valid JSON.", body = ErrorBody),
        (status = 401, description = "The refresh token is unknown, reused, revoked or expired (`invalid_refresh_token`, `refresh_token_reused`, `session_revoked`, `session_expired`).", body = ErrorBody),
        (status = 403, description = "The user is not a member of the organization (`not_a_member`).", body = ErrorBody),
        (status = 404, description = "No such organization (`organization_not_found`).", body = ErrorBody),
        (status = 415, description = "The body is not sent as application/json.", body = ErrorBody),
        (status = 422, description = "`refresh_token` is missing.", body = ErrorBody),
    )
)]
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
    let (issued, env, signer) = rotate(&state, token, organization, None).await??;
    session_response(&state, StatusCode::OK, &env, &issued, &signer)
}

/// The session to revoke, by one of its refresh tokens or by its id.
#[derive(Deserialize, ToSchema)]
#[schema(as = RevokeSession)]
struct RevokeBody {
    refresh_token: Option<String>,
    #[schema(example = "session_01JD6Z8X4G7Q2M3N5P6R7S8T9V")]
    session_id: Option<String>,
}

/// Revokes a session of the key's environment.
///
/// Its refresh tokens stop working; access tokens already issued live until
/// they expire.
#[utoipa::path(
    operation_id = "revoke_session",
    post,
    path = "/api/v1/sessions/revoke",
    tag = "Sessions",
    security(("api_key" = [])),
    responses(
        (status = 204, description = "The session is revoked."),
        (status = 400, description = "The body is not valid JSON.", body = ErrorBody),
        (status = 401, description = "No key, or an unknown or revoked one.", body = ErrorBody),
        (status = 404, description = "No session of this environment has this id or refresh token (`session_not_found`).", body = ErrorBody),
        (status = 415, description = "The body is not sent as application/json.", body = ErrorBody),
        (status = 422, description = "Neither or both of `refresh_token` and `session_id`.", body = ErrorBody),
    )
)]
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

/// The user (and organization) to evaluate for.
#[derive(Deserialize, ToSchema)]
#[schema(as = Evaluate)]
struct EvaluateBody {
    /// A Flagpole user id or the user's external id.
    #[schema(value_type = String, required = true, example = "u-1042")]
    user_id: Option<String>,
    /// A Flagpole organization id or external id; the user must be a member.
    #[schema(example = "acme")]
    organization_id: Option<String>,
}

/// The flags that are on for a user (and organization).
#[derive(ToSchema)]
pub struct EvaluationResponse {
    /// The user's Flagpole id.
    pub user_id: String,
    /// The organization's Flagpole id, if one was given.
    #[schema(required = true)]
    pub organization_id: Option<String>,
    /// The slugs of the flags that are on.
    #[schema(example = json!(["new-checkout"]))]
    pub feature_flags: Vec<String>,
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

/// Evaluates every flag of the key's environment for a user, without a token.
#[utoipa::path(
    operation_id = "evaluate",
    post,
    path = "/api/v1/evaluate",
    tag = "Evaluation",
    security(("api_key" = [])),
    responses(
        (status = 200, description = "The flags that are on.", body = EvaluationResponse),
        (status = 400, description = "The body is not valid JSON.", body = ErrorBody),
        (status = 401, description = "No key, or an unknown or revoked one.", body = ErrorBody),
        (status = 403, description = "The user is not a member of the organization (`not_a_member`).", body = ErrorBody),
        (status = 404, description = "No such user or organization.", body = ErrorBody),
        (status = 415, description = "The body is not sent as application/json.", body = ErrorBody),
        (status = 422, description = "`user_id` is missing.", body = ErrorBody),
    )
)]
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

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct FlagsQuery {
    /// A Flagpole organization id or external id; the user must be a member.
    organization_id: Option<String>,
}

/// Evaluates every flag of the key's environment for one user.
#[utoipa::path(
    operation_id = "user_feature_flags",
    get,
    path = "/api/v1/users/{id}/feature-flags",
    tag = "Evaluation",
    security(("api_key" = [])),
    params(
        ("id" = String, Path, description = "A Flagpole user id or the user's external id."),
        FlagsQuery,
    ),
    responses(
        (status = 200, description = "The flags that are on.", body = EvaluationResponse),
        (status = 401, description = "No key, or an unknown or revoked one.", body = ErrorBody),
        (status = 403, description = "The user is not a member of the organization (`not_a_member`).", body = ErrorBody),
        (status = 404, description = "No such user or organization.", body = ErrorBody),
    )
)]
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

/// The public signing keys of every environment (current and recently
/// retired), to verify access tokens offline.
#[derive(ToSchema)]
pub struct Jwks {
    pub keys: Vec<Jwk>,
}

/// A public key as a JSON Web Key: `EC` (P-256, ES256), `RSA` (RS256) or
/// `OKP` (Ed25519, EdDSA).
#[derive(ToSchema)]
pub struct Jwk {
    #[schema(example = "EC")]
    pub kty: String,
    /// The `kid` of the tokens signed with this key.
    pub kid: String,
    #[schema(example = "ES256")]
    pub alg: String,
    #[schema(rename = "use", example = "sig")]
    pub key_use: String,
    /// `P-256` or `Ed25519`.
    #[schema(nullable = false)]
    pub crv: Option<String>,
    #[schema(nullable = false)]
    pub x: Option<String>,
    #[schema(nullable = false)]
    pub y: Option<String>,
    /// The RSA modulus.
    #[schema(nullable = false)]
    pub n: Option<String>,
    /// The RSA exponent.
    #[schema(nullable = false)]
    pub e: Option<String>,
}

/// Publishes the public keys that verify access tokens.
#[utoipa::path(
    operation_id = "jwks",
    get,
    path = "/.well-known/jwks.json",
    tag = "Keys",
    responses((status = 200, description = "The key set.", body = Jwks)),
)]
async fn jwks(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    Ok(key_set(&state, None).await?)
}

/// The key set of one environment, or of all of them: every environment
/// publishes a key, even before its first token.
pub(crate) async fn key_set(
    state: &web::Data<AppState>,
    environment_id: Option<String>,
) -> Result<HttpResponse, AppError> {
    let st = state.clone();
    let keys = state
        .db(move |conn| {
            for env in environments::list(conn)? {
                if environment_id.as_ref().is_none_or(|id| *id == env.id) {
                    signing::active_key(conn, &st.sealer, &env.id)?;
                }
            }
            Ok(signing::published_keys(conn, environment_id.as_deref())?)
        })
        .await?;
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "public, max-age=60"))
        .json(signing::jwks(&keys)))
}

/// Where the keys and the token endpoint are, and which algorithms sign.
#[derive(ToSchema)]
pub struct OpenIdConfiguration {
    /// The `iss` of every access token.
    pub issuer: String,
    pub jwks_uri: String,
    pub token_endpoint: String,
    #[schema(example = json!(["ES256", "RS256", "EdDSA"]))]
    pub id_token_signing_alg_values_supported: Vec<String>,
    pub token_endpoint_auth_methods_supported: Vec<String>,
    pub response_types_supported: Vec<String>,
    pub subject_types_supported: Vec<String>,
    pub claims_supported: Vec<String>,
}

/// The OpenID Connect discovery document.
///
/// For JWT libraries that find the keys from the issuer.
#[utoipa::path(
    operation_id = "openid_configuration",
    get,
    path = "/.well-known/openid-configuration",
    tag = "Keys",
    responses((status = 200, description = "The configuration.", body = OpenIdConfiguration)),
)]
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
