//! The token endpoint (sessions) and the published keys.

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::objects::{ErrorBody, UserObject};
use super::EvaluationKey;
use super::{optional, required, API_PREFIX};
use crate::directory::organizations::NewOrganization;
use crate::directory::users::NewUser;
use crate::environments::{self, Environment};
use crate::error::{Error, Refusal, Result};
use crate::ids::{EnvironmentId, OrgId, SessionId};
use crate::tokens::keys::SigningAlgorithm;
use crate::tokens::sessions::{self, Issued, OrganizationSpec, RevokeTarget, SessionFor};
use crate::tokens::signing::KeyUsage;
use crate::tokens::{self, signing};
use crate::web::json::Json;
use crate::web::routes::Routes;
use crate::web::Surface;
use crate::AppState;

pub fn routes(cfg: &mut web::ServiceConfig) {
    Routes::documented(cfg, API_PREFIX, Surface::Api)
        .post("/sessions", start_session)
        .post("/sessions/refresh", refresh_session)
        .post("/sessions/revoke", revoke_session);
}

pub fn well_known_routes(cfg: &mut web::ServiceConfig) {
    Routes::documented(cfg, "", Surface::Api)
        .get("/.well-known/jwks.json", jwks)
        .get("/.well-known/openid-configuration", openid_configuration);
}

/// A user given inline: created, or updated when the `external_id` is known.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
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
#[serde(deny_unknown_fields)]
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
#[serde(deny_unknown_fields)]
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

/// An access token and a refresh token for a session.
#[derive(Serialize, ToSchema)]
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
    #[schema(value_type = Option<String>, required = true)]
    pub organization_id: Option<OrgId>,
    #[schema(value_type = String, example = "session_01JD6Z8X4G7Q2M3N5P6R7S8T9V")]
    pub session_id: SessionId,
}

#[derive(Serialize, ToSchema)]
pub enum TokenType {
    Bearer,
}

fn session_for(body: StartBody) -> Result<SessionFor> {
    match (body.user_id, body.user) {
        (Some(_), Some(_)) => Err(Error::invalid(
            "user",
            "Give either user_id or an inline user object, not both.",
        )),
        (None, None) => Err(Error::invalid(
            "user_id",
            "Give user_id (a Flagpole id or an external id) or an inline user object.",
        )),
        (Some(user_id), None) => {
            if body.organization.is_some() {
                return Err(Error::invalid(
                    "organization",
                    "An inline organization comes with an inline user; with user_id, give organization_id.",
                ));
            }
            Ok(SessionFor::Ids {
                user: required(Some(user_id), "user_id", "the user's id or external id")?,
                organization: optional(body.organization_id),
            })
        }
        (None, Some(user)) => {
            let user = NewUser {
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
                    (Some(_), Some(_)) => return Err(Error::invalid(
                        "organization",
                        "Give either organization_id or an inline organization object, not both.",
                    )),
                    (Some(id), None) => Some(OrganizationSpec::Existing(id.trim().to_string())),
                    (None, Some(org)) => Some(OrganizationSpec::Inline(NewOrganization {
                        external_id: required(
                            org.external_id,
                            "organization.external_id",
                            "the organization's external_id",
                        )?,
                        name: required(org.name, "organization.name", "the organization's name")?,
                    })),
                    (None, None) => None,
                };
            Ok(SessionFor::Inline { user, organization })
        }
    }
}

/// An issued session with its access token, as the API answers it.
fn session_response(
    state: &AppState,
    status: StatusCode,
    env: &Environment,
    issued: Issued,
    signer: &signing::Signer,
) -> Result<HttpResponse> {
    let settings = state.config.token_settings();
    state.metrics.evaluated(&env.slug, "token");
    if status == StatusCode::CREATED {
        state
            .metrics
            .sessions_issued
            .get_or_create(&crate::metrics::EnvironmentLabels {
                environment: env.slug.to_string(),
            })
            .inc();
    }
    let minted = tokens::mint(
        &state.model().model,
        &settings,
        &state.config.public_url,
        env,
        &issued.session,
        signer,
    )?;
    Ok(HttpResponse::build(status)
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(SessionResponse {
            access_token: minted.access_token,
            refresh_token: issued.refresh_token,
            token_type: TokenType::Bearer,
            expires_in: settings.access_ttl_seconds,
            feature_flags: minted.feature_flags,
            user: UserObject::from(issued.user),
            organization_id: issued.session.organization_id,
            session_id: issued.session.id,
        }))
}

/// A refreshed session with its environment and the key to sign with.
pub(crate) struct Refreshed {
    pub issued: Issued,
    pub environment: Environment,
    pub signer: signing::Signer,
}

/// Rotates a refresh token (switching organization when one is named) and
/// loads the session's environment and signer. With `environment`, only a
/// session of that environment is accepted.
pub(crate) async fn rotate(
    state: &web::Data<AppState>,
    token: String,
    organization: Option<String>,
    environment: Option<EnvironmentId>,
    usage: KeyUsage,
) -> Result<Refreshed> {
    let st = state.clone();
    let refreshed = state
        .write(move |conn| {
            let settings = st.config.token_settings();
            let issued = sessions::refresh(
                conn,
                &settings,
                &st.sealer,
                &token,
                organization.as_deref(),
                environment.as_ref(),
            )?;
            let environment = match st.model().environment(&issued.session.environment_id) {
                Some(env) => Environment::clone(env),
                None => environments::get(conn, &issued.session.environment_id)?,
            };
            let signer = st
                .signers
                .signer(conn, &st.sealer, &environment.id, usage)?;
            Ok(Refreshed {
                issued,
                environment,
                signer,
            })
        })
        .await;
    if let Err(Error::Refused(refusal)) = &refreshed {
        let reason = match refusal {
            Refusal::InvalidRefreshToken => "invalid",
            Refusal::RefreshTokenReused => "reused",
            Refusal::SessionRevoked => "revoked",
            Refusal::SessionExpired => "expired",
            Refusal::NotAMember => "not_a_member",
            _ => "other",
        };
        state
            .metrics
            .refreshes_refused
            .get_or_create(&crate::metrics::ReasonLabels { reason })
            .inc();
    }
    refreshed
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
    security(("api_key" = ["evaluation"])),
    request_body = StartBody,
    responses(
        (status = 201, description = "The session's tokens.", body = SessionResponse),
        (status = 403, description = "The user is not a member of the organization (`not_a_member`).", body = ErrorBody),
        (status = 404, description = "No such user or organization (`user_not_found`, `organization_not_found`).", body = ErrorBody),
        (status = 409, description = "An inline user's email belongs to another user (`duplicate`).", body = ErrorBody),
        (status = 422, description = "A field is missing, unknown or invalid; `field` names it.", body = ErrorBody),
    )
)]
async fn start_session(
    state: web::Data<AppState>,
    auth: EvaluationKey,
    body: Json<StartBody>,
) -> Result<HttpResponse> {
    let who = session_for(body.into_inner())?;
    let env = auth.environment.clone();
    let actor = auth.actor();
    let st = state.clone();
    let e = env.clone();
    let (issued, signer) = state
        .write(move |conn| {
            let settings = st.config.token_settings();
            let issued = sessions::start(conn, &settings, &actor, &e, &who)?;
            let signer = st
                .signers
                .signer(conn, &st.sealer, &e.id, KeyUsage::Tokens)?;
            Ok((issued, signer))
        })
        .await?;
    session_response(&state, StatusCode::CREATED, &env, issued, &signer)
}

/// A refresh token to exchange, and optionally another organization of the
/// user to switch the session to.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
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
    request_body = RefreshBody,
    responses(
        (status = 200, description = "The session's new tokens.", body = SessionResponse),
        (status = 401, description = "The refresh token is unknown, reused, revoked or expired (`invalid_refresh_token`, `refresh_token_reused`, `session_revoked`, `session_expired`).", body = ErrorBody),
        (status = 403, description = "The user is not a member of the organization (`not_a_member`).", body = ErrorBody),
        (status = 404, description = "No such organization (`organization_not_found`).", body = ErrorBody),
        (status = 422, description = "`refresh_token` is missing, or the body has an unknown field.", body = ErrorBody),
    )
)]
async fn refresh_session(
    state: web::Data<AppState>,
    body: Json<RefreshBody>,
) -> Result<HttpResponse> {
    let body = body.into_inner();
    let token = required(body.refresh_token, "refresh_token", "the refresh_token")?;
    let refreshed = rotate(
        &state,
        token,
        optional(body.organization_id),
        None,
        KeyUsage::Tokens,
    )
    .await?;
    session_response(
        &state,
        StatusCode::OK,
        &refreshed.environment,
        refreshed.issued,
        &refreshed.signer,
    )
}

/// The session to revoke, by one of its refresh tokens or by its id.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
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
    security(("api_key" = ["evaluation"])),
    request_body = RevokeBody,
    responses(
        (status = 204, description = "The session is revoked."),
        (status = 404, description = "No session of this environment has this id or refresh token (`session_not_found`).", body = ErrorBody),
        (status = 422, description = "Neither or both of `refresh_token` and `session_id`, or an unknown field.", body = ErrorBody),
    )
)]
async fn revoke_session(
    state: web::Data<AppState>,
    auth: EvaluationKey,
    body: Json<RevokeBody>,
) -> Result<HttpResponse> {
    let body = body.into_inner();
    let env_id = auth.environment.id.clone();
    state
        .write(move |conn| {
            let target = match (&body.refresh_token, &body.session_id) {
                (Some(t), None) => RevokeTarget::RefreshToken(t),
                (None, Some(s)) => RevokeTarget::SessionId(s),
                _ => {
                    return Err(Error::invalid(
                        "refresh_token",
                        "Give either refresh_token or session_id.",
                    ))
                }
            };
            sessions::revoke(conn, &env_id, target)
        })
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// The public signing keys of every environment (current and recently
/// retired), to verify access tokens offline.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct Jwks {
    pub keys: Vec<Jwk>,
}

/// A public key as a JSON Web Key: `EC` (P-256, ES256), `RSA` (RS256) or
/// `OKP` (Ed25519, EdDSA).
#[derive(Serialize, Deserialize, ToSchema)]
pub struct Jwk {
    #[schema(example = "EC")]
    pub kty: String,
    /// The `kid` of the tokens signed with this key.
    pub kid: String,
    #[schema(example = "ES256")]
    pub alg: String,
    #[serde(rename = "use")]
    #[schema(rename = "use", example = "sig")]
    pub key_use: String,
    /// `P-256` or `Ed25519`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub crv: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub x: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub y: Option<String>,
    /// The RSA modulus.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub n: Option<String>,
    /// The RSA exponent.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub e: Option<String>,
    /// RSA keys: a self-signed certificate of the key (base64 DER), as
    /// WorkOS publishes.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub x5c: Option<Vec<String>>,
    /// RSA keys: the certificate's SHA-256 thumbprint (base64url).
    #[serde(rename = "x5t#S256", skip_serializing_if = "Option::is_none")]
    #[schema(rename = "x5t#S256", nullable = false)]
    pub x5t_s256: Option<String>,
}

/// Publishes the public keys that verify access tokens.
#[utoipa::path(
    operation_id = "jwks",
    get,
    path = "/.well-known/jwks.json",
    tag = "Keys",
    responses((status = 200, description = "The key set.", body = Jwks)),
)]
async fn jwks(state: web::Data<AppState>) -> Result<HttpResponse> {
    key_set(&state, None, None).await
}

/// The key set of one environment, or of all of them: every environment
/// publishes its keys, even before its first token. `usage` narrows it to
/// the keys of one use (the WorkOS surface publishes only its RS256 keys,
/// which its SDKs' key models require).
pub(crate) async fn key_set(
    state: &web::Data<AppState>,
    environment_id: Option<EnvironmentId>,
    usage: Option<KeyUsage>,
) -> Result<HttpResponse> {
    let snapshot = state.model();
    let publishing: Vec<EnvironmentId> = snapshot
        .environments()
        .into_iter()
        .map(|env| env.id.clone())
        .filter(|id| environment_id.as_ref().is_none_or(|wanted| wanted == id))
        .collect();
    signing::ensure_keys(state, publishing).await?;
    let keys = state
        .read(move |conn| signing::published_keys(conn, environment_id.as_ref(), usage))
        .await?;
    let keys = keys
        .iter()
        .filter_map(|k| serde_json::from_str::<Jwk>(&k.public_jwk).ok())
        .collect();
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "public, max-age=60"))
        .json(Jwks { keys }))
}

/// Where the keys and the token endpoint are, and which algorithms sign.
#[derive(Serialize, ToSchema)]
pub struct OpenIdConfiguration {
    /// The `iss` of every access token.
    pub issuer: String,
    pub jwks_uri: String,
    pub token_endpoint: String,
    #[schema(example = json!(["ES256", "RS256", "EdDSA"]))]
    pub id_token_signing_alg_values_supported: Vec<&'static str>,
    pub token_endpoint_auth_methods_supported: Vec<&'static str>,
    pub response_types_supported: Vec<&'static str>,
    pub subject_types_supported: Vec<&'static str>,
    pub claims_supported: Vec<&'static str>,
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
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "public, max-age=300"))
        .json(OpenIdConfiguration {
            issuer: base.clone(),
            jwks_uri: format!("{base}/.well-known/jwks.json"),
            token_endpoint: format!("{base}/api/v1/sessions"),
            id_token_signing_alg_values_supported: SigningAlgorithm::ALL
                .iter()
                .map(|a| a.as_str())
                .collect(),
            token_endpoint_auth_methods_supported: vec!["client_secret_post"],
            response_types_supported: vec!["token"],
            subject_types_supported: vec!["public"],
            claims_supported: vec![
                "iss",
                "sub",
                "aud",
                "sid",
                "org_id",
                "feature_flags",
                "iat",
                "exp",
                "jti",
            ],
        })
}
