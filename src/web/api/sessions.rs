//! The token endpoint (sessions), evaluation without a token, and the
//! published keys.

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpResponse};
use serde::Deserialize;
use serde_json::json;

use super::{ApiAuth, ApiError};
use crate::directory::{OrganizationInput, UserInput};
use crate::error::AppError;
use crate::keys::SigningAlgorithm;
use crate::models::{Environment, User};
use crate::sessions::{self, Issued, OrganizationSpec, RevokeTarget, SessionError, Subject};
use crate::signing::Signer;
use crate::{environments, signing, AppState};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/sessions", web::post().to(start_session))
        .route("/sessions/refresh", web::post().to(refresh_session))
        .route("/sessions/revoke", web::post().to(revoke_session))
        .route("/evaluate", web::post().to(evaluate))
        .route(
            "/users/{id}/feature-flags",
            web::get().to(user_feature_flags),
        );
}

pub fn well_known_routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/.well-known/jwks.json", web::get().to(jwks))
        .route(
            "/.well-known/openid-configuration",
            web::get().to(openid_configuration),
        );
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
