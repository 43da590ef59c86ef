//! The WorkOS-compatible surface: the paths, shapes and errors that the
//! official WorkOS SDKs use for sessions, keys and feature flags, so that an
//! application moves to Flagpole by pointing its WorkOS client at Flagpole's
//! host. A secret key (`Authorization: Bearer sk_…`) decides the
//! environment, as on `/api/v1`, and the environment's `client_id` is the
//! WorkOS client id. Every handler reuses Flagpole's own services and API
//! code; only the shapes differ. Its contract is WorkOS's API reference and
//! SDK, so it is not in `/api/v1/openapi.json`.

use std::future::Future;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::http::{header, StatusCode};
use actix_web::{web, FromRequest, HttpRequest, HttpResponse, ResponseError};
use diesel::prelude::*;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::db::schema::{environments as environments_table, flags as flags_table, targets};
use crate::db::DbConn;
use crate::error::AppError;
use crate::flags::{self, mode_of, Mode, RuleChange, TargetKind};
use crate::models::{Environment, Flag};
use crate::sessions::SessionError;
use crate::web::api::paging::{ListQuery, Page};
use crate::web::api::sessions::{key_set, mint, rotate};
use crate::web::api::{ApiAuth, ApiError};
use crate::workos::{feature_flag_json, user_json};
use crate::{api_keys, directory, paginate, AppState};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route(
        "/user_management/authenticate",
        web::post().to(authenticate),
    )
    .service(
        web::resource("/user_management/sessions/revoke")
            .app_data(json_config())
            .route(web::post().to(revoke_session)),
    )
    .route("/sso/jwks/{client_id}", web::get().to(jwks))
    .route("/sdk/feature-flags", web::get().to(runtime_rules))
    .route("/feature-flags", web::get().to(list_flags))
    .route("/feature-flags/{slug}", web::get().to(get_flag))
    .route("/feature-flags/{slug}/enable", web::put().to(enable))
    .route("/feature-flags/{slug}/disable", web::put().to(disable))
    .route(
        "/feature-flags/{slug}/targets/{resource_id}",
        web::post().to(add_target),
    )
    .route(
        "/feature-flags/{slug}/targets/{resource_id}",
        web::delete().to(remove_target),
    )
    .route(
        "/organizations/{id}/feature-flags",
        web::get().to(organization_flags),
    )
    .route(
        "/user_management/users/{id}/feature-flags",
        web::get().to(user_flags),
    );
}

/// JSON bodies: a body that is not JSON is a WorkOS-shaped 400.
fn json_config() -> web::JsonConfig {
    web::JsonConfig::default()
        .limit(64 * 1024)
        .error_handler(|err, _req| {
            WorkosError(ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_json",
                format!("Send the body as JSON (Content-Type: application/json): {err}"),
            ))
            .into()
        })
}

/// An error as WorkOS sends it: `{"code", "message"}`, with `errors` (the
/// fields at fault) on 422. The SDK turns these into its exceptions.
#[derive(Debug)]
pub struct WorkosError(ApiError);

impl std::fmt::Display for WorkosError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl ResponseError for WorkosError {
    fn status_code(&self) -> StatusCode {
        self.0.status
    }
    fn error_response(&self) -> HttpResponse {
        let ApiError {
            status,
            code,
            message,
            field,
        } = &self.0;
        let body = match *status {
            StatusCode::UNPROCESSABLE_ENTITY => json!({
                "code": "invalid_request_parameters",
                "message": message,
                "errors": [{"field": field.as_deref().unwrap_or("body"), "code": code}],
            }),
            StatusCode::NOT_FOUND => json!({"code": "entity_not_found", "message": message}),
            _ => json!({"code": code, "message": message}),
        };
        HttpResponse::build(*status).json(body)
    }
}

impl<E: Into<ApiError>> From<E> for WorkosError {
    fn from(err: E) -> Self {
        WorkosError(err.into())
    }
}

fn not_found(what: &str, id: &str) -> WorkosError {
    WorkosError(ApiError::new(
        StatusCode::NOT_FOUND,
        "entity_not_found",
        format!("No {what} has the id {id:?}."),
    ))
}

/// A secret key's caller, refused the WorkOS way.
pub struct WorkosAuth(ApiAuth);

type LocalFuture<T> = Pin<Box<dyn Future<Output = T>>>;

impl FromRequest for WorkosAuth {
    type Error = WorkosError;
    type Future = LocalFuture<Result<Self, WorkosError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let auth = ApiAuth::from_request(req, payload);
        Box::pin(async move { Ok(WorkosAuth(auth.await?)) })
    }
}

type Result<T, E = WorkosError> = std::result::Result<T, E>;

// ---------------------------------------------------------------------------
// Sessions: `POST /user_management/authenticate` and the JWKS.

/// An OAuth error, as WorkOS answers `/user_management/authenticate`:
/// `{"error", "error_description"}`. The SDK's `session.refresh()` reports
/// `invalid_grant` as "not authenticated" instead of throwing.
#[derive(Debug)]
pub struct OauthError {
    status: StatusCode,
    error: &'static str,
    description: String,
    code: Option<&'static str>,
}

impl OauthError {
    fn new(status: StatusCode, error: &'static str, description: impl Into<String>) -> Self {
        OauthError {
            status,
            error,
            description: description.into(),
            code: None,
        }
    }
    fn invalid_request(description: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", description)
    }
    fn invalid_client(description: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "invalid_client", description)
    }
}

impl std::fmt::Display for OauthError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.error, self.description)
    }
}

impl ResponseError for OauthError {
    fn status_code(&self) -> StatusCode {
        self.status
    }
    fn error_response(&self) -> HttpResponse {
        let mut body = json!({"error": self.error, "error_description": self.description});
        if let Some(code) = self.code {
            body["code"] = json!(code);
        }
        HttpResponse::build(self.status)
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .json(body)
    }
}

impl From<AppError> for OauthError {
    fn from(err: AppError) -> Self {
        let api = ApiError::from(err);
        OauthError::new(api.status, "server_error", api.message)
    }
}

impl From<SessionError> for OauthError {
    /// Every refusal of the refresh token is `invalid_grant`, as in OAuth;
    /// Flagpole's own code rides along in `code`.
    fn from(err: SessionError) -> Self {
        if let SessionError::Other(e) = err {
            return e.into();
        }
        let api = ApiError::from(err);
        OauthError {
            status: StatusCode::BAD_REQUEST,
            error: "invalid_grant",
            description: api.message,
            code: Some(api.code),
        }
    }
}

/// The fields of an authenticate call; WorkOS takes JSON or a form.
#[derive(Deserialize, Default)]
struct AuthenticateBody {
    grant_type: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
    refresh_token: Option<String>,
    organization_id: Option<String>,
}

fn parse_authenticate(req: &HttpRequest, body: &[u8]) -> Result<AuthenticateBody, OauthError> {
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if content_type.starts_with("application/x-www-form-urlencoded") {
        serde_urlencoded::from_bytes(body)
            .map_err(|e| OauthError::invalid_request(format!("The form is invalid: {e}")))
    } else {
        serde_json::from_slice(body).map_err(|e| {
            OauthError::invalid_request(format!(
                "Send the body as JSON (or a form) with grant_type, client_id, client_secret and refresh_token: {e}"
            ))
        })
    }
}

fn present(value: Option<String>) -> Option<String> {
    value
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

/// Exchanges a refresh token for a new pair, with the flags evaluated again:
/// `grant_type=refresh_token`, the environment's `client_id`, a secret key
/// of that environment as `client_secret` (or none, as a public client: the
/// refresh token is the credential), the `refresh_token` and, optionally,
/// an `organization_id` to switch to. Rotation and reuse detection are
/// Flagpole's own.
async fn authenticate(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, OauthError> {
    let body = parse_authenticate(&req, &body)?;
    match present(body.grant_type).as_deref() {
        Some("refresh_token") => {}
        Some(other) => {
            return Err(OauthError::new(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                format!(
                    "Flagpole exchanges refresh tokens only (grant_type=refresh_token), not {other:?}. Start sessions with POST /api/v1/sessions."
                ),
            ))
        }
        None => return Err(OauthError::invalid_request("Give grant_type=refresh_token.")),
    }
    let client_id = present(body.client_id).ok_or_else(|| {
        OauthError::invalid_request("Give client_id: the environment's client id.")
    })?;
    let token = present(body.refresh_token)
        .ok_or_else(|| OauthError::invalid_request("Give the refresh_token."))?;
    let secret = present(body.client_secret);
    let organization = present(body.organization_id);
    let env = state
        .db(move |conn| {
            let env = environment_by_client_id(conn, &client_id)?;
            let key_env = match &secret {
                Some(secret) => Some(api_keys::authenticate(conn, secret)?.map(|(_, e)| e.id)),
                None => None,
            };
            Ok((env, key_env))
        })
        .await?;
    let env = match env {
        (None, _) => {
            return Err(OauthError::invalid_client(
                "No environment has this client_id. The Environments page shows each one's.",
            ))
        }
        (Some(env), Some(key_env)) if key_env.as_deref() != Some(env.id.as_str()) => {
            return Err(OauthError::invalid_client(
                "The client_secret is not a live secret key of this client_id's environment.",
            ))
        }
        (Some(env), _) => env,
    };
    let (issued, env, signer) = rotate(&state, token, organization, Some(env.id)).await??;
    let (access_token, _) = mint(&state, &env, &issued, &signer)
        .map_err(|e| OauthError::new(e.status, "server_error", e.message))?;
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(json!({
            "user": user_json(&issued.user),
            "organization_id": issued.session.organization_id,
            "access_token": access_token,
            "refresh_token": issued.refresh_token,
        })))
}

#[derive(Deserialize)]
struct RevokeBody {
    session_id: Option<String>,
}

/// Revokes a session of the key's environment (`revokeSession` in the
/// SDK): its refresh tokens stop working at once; its access tokens live
/// until they expire.
async fn revoke_session(
    state: web::Data<AppState>,
    auth: WorkosAuth,
    body: web::Json<RevokeBody>,
) -> Result<HttpResponse> {
    let Some(session_id) = present(body.into_inner().session_id) else {
        return Err(ApiError::invalid("session_id", "Give the session_id to revoke.").into());
    };
    let env_id = auth.0.environment.id;
    let outcome = state
        .db(move |conn| {
            match crate::sessions::revoke(
                conn,
                &env_id,
                crate::sessions::RevokeTarget::SessionId(&session_id),
            ) {
                Err(SessionError::Other(e)) => Err(e),
                other => Ok(other),
            }
        })
        .await?;
    outcome?;
    Ok(HttpResponse::NoContent().finish())
}

fn environment_by_client_id(
    conn: &mut DbConn,
    client_id: &str,
) -> QueryResult<Option<Environment>> {
    environments_table::table
        .filter(environments_table::client_id.eq(client_id))
        .select(Environment::as_select())
        .first(conn)
        .optional()
}

/// The public keys of one environment, where the SDK looks for them.
async fn jwks(state: web::Data<AppState>, path: web::Path<String>) -> Result<HttpResponse> {
    let client_id = path.into_inner();
    let lookup = client_id.clone();
    let env = state
        .db(move |conn| Ok(environment_by_client_id(conn, &lookup)?))
        .await?
        .ok_or_else(|| not_found("environment", &client_id))?;
    Ok(key_set(&state, Some(env.id)).await?)
}

// ---------------------------------------------------------------------------
// Feature flags, as WorkOS's `feature_flag` objects in the key's environment.
// Archived flags do not exist here: WorkOS has no archive.

/// Loads a live (not archived) flag by slug.
fn live_flag(conn: &mut DbConn, slug: &str) -> std::result::Result<Option<Flag>, AppError> {
    match flags::by_slug(conn, slug) {
        Ok(flag) if !flag.archived => Ok(Some(flag)),
        Ok(_) | Err(diesel::result::Error::NotFound) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

fn flag_not_found(slug: &str) -> WorkosError {
    WorkosError(ApiError::new(
        StatusCode::NOT_FOUND,
        "entity_not_found",
        format!("No feature flag has the slug {slug:?}."),
    ))
}

/// The objects of `flags` in one environment.
fn flag_objects(
    conn: &mut DbConn,
    flags_page: &[Flag],
    env_id: &str,
) -> std::result::Result<Vec<Value>, AppError> {
    let ids: Vec<&str> = flags_page.iter().map(|f| f.id.as_str()).collect();
    let tags = flags::tags_by_flag(conn, &ids)?;
    let rules = flags::rules_in(conn, env_id, &ids)?;
    Ok(flags_page
        .iter()
        .filter_map(|f| {
            let rule = rules.get(&f.id)?;
            let tags = tags.get(&f.id).map_or(&[][..], Vec::as_slice);
            Some(feature_flag_json(f, tags, rule))
        })
        .collect())
}

/// A page of live flags, optionally only those whose slug is in `only`, as
/// WorkOS's list: `limit` (default 10), `before`, `after`, `order` (default
/// `desc`).
async fn flag_list(
    state: &web::Data<AppState>,
    env: &Environment,
    query: ListQuery,
    only: Option<Vec<String>>,
) -> Result<HttpResponse> {
    let cursor = query.cursor()?;
    let env_id = env.id.clone();
    let (page, objects): (Page<Flag>, Vec<Value>) = state
        .db(move |conn| {
            let mut matching = flags::matching("", None, false);
            if let Some(slugs) = only {
                matching = matching.filter(flags_table::slug.eq_any(slugs));
            }
            let page = paginate!(
                matching,
                flags_table::id,
                &cursor,
                conn,
                Flag,
                |f: &Flag| f.id.clone()
            );
            let objects = flag_objects(conn, &page.data, &env_id)?;
            Ok((page, objects))
        })
        .await?;
    Ok(HttpResponse::Ok().json(json!({
        "object": "list",
        "data": objects,
        "list_metadata": {"before": page.before, "after": page.after},
    })))
}

async fn list_flags(
    state: web::Data<AppState>,
    auth: WorkosAuth,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse> {
    flag_list(&state, &auth.0.environment, query.into_inner(), None).await
}

/// One flag and its state in the key's environment.
async fn flag_response(
    state: &web::Data<AppState>,
    env: &Environment,
    slug: String,
) -> Result<HttpResponse> {
    let env_id = env.id.clone();
    let lookup = slug.clone();
    let object = state
        .db(move |conn| {
            let Some(flag) = live_flag(conn, &lookup)? else {
                return Ok(None);
            };
            Ok(flag_objects(conn, std::slice::from_ref(&flag), &env_id)?
                .into_iter()
                .next())
        })
        .await?
        .ok_or_else(|| flag_not_found(&slug))?;
    Ok(HttpResponse::Ok().json(object))
}

async fn get_flag(
    state: web::Data<AppState>,
    auth: WorkosAuth,
    path: web::Path<String>,
) -> Result<HttpResponse> {
    flag_response(&state, &auth.0.environment, path.into_inner()).await
}

async fn set_enabled(
    state: web::Data<AppState>,
    auth: WorkosAuth,
    slug: String,
    enabled: bool,
) -> Result<HttpResponse> {
    let actor = auth.0.actor();
    let env = auth.0.environment;
    let (e, s) = (env.clone(), slug.clone());
    let found = state
        .db(move |conn| {
            let Some(flag) = live_flag(conn, &s)? else {
                return Ok(false);
            };
            flags::set_enabled(conn, &actor, &flag, &e, enabled, None)?;
            Ok(true)
        })
        .await?;
    if !found {
        return Err(flag_not_found(&slug));
    }
    flag_response(&state, &env, slug).await
}

/// Turns a flag on in the key's environment.
async fn enable(
    state: web::Data<AppState>,
    auth: WorkosAuth,
    path: web::Path<String>,
) -> Result<HttpResponse> {
    set_enabled(state, auth, path.into_inner(), true).await
}

/// Turns a flag off in the key's environment, keeping its rule.
async fn disable(
    state: web::Data<AppState>,
    auth: WorkosAuth,
    path: web::Path<String>,
) -> Result<HttpResponse> {
    set_enabled(state, auth, path.into_inner(), false).await
}

/// Adds or removes one target (`user_…` or `org_…`) of a flag's rule in the
/// key's environment. Adding to a rule of mode None makes it Some, so the
/// target gets the flag as WorkOS's would; removing a target that is not
/// one changes nothing. Both answer 204.
async fn change_target(
    state: web::Data<AppState>,
    auth: WorkosAuth,
    path: web::Path<(String, String)>,
    add: bool,
) -> Result<HttpResponse> {
    let (slug, resource_id) = path.into_inner();
    let Some(kind) = TargetKind::of_id(&resource_id) else {
        return Err(ApiError::invalid(
            "resource_id",
            "A target is a user (user_…) or an organization (org_…) id.",
        )
        .into());
    };
    let actor = auth.0.actor();
    let env = auth.0.environment;
    let outcome = state
        .db(move |conn| {
            let Some(flag) = live_flag(conn, &slug)? else {
                return Ok(Err(flag_not_found(&slug)));
            };
            let exists = match kind {
                TargetKind::User => directory::get_user(conn, &resource_id)
                    .optional()?
                    .is_some(),
                TargetKind::Organization => {
                    directory::get_org(conn, &resource_id).optional()?.is_some()
                }
            };
            if !exists {
                return Ok(Err(not_found(kind.as_str(), &resource_id)));
            }
            let current = flags::rule(conn, &flag.id, &env.id)?;
            let is_target = targets::table
                .find((&flag.id, &env.id, &resource_id))
                .count()
                .get_result::<i64>(conn)?
                > 0;
            let mode = match mode_of(&current) {
                Mode::None if add => Mode::Some,
                mode => mode,
            };
            if is_target == add && mode == mode_of(&current) {
                return Ok(Ok(()));
            }
            let target = vec![resource_id];
            let (add, remove) = if add {
                (target, Vec::new())
            } else {
                (Vec::new(), target)
            };
            flags::save_rule(
                conn,
                &actor,
                &flag,
                &env,
                &RuleChange {
                    mode,
                    add,
                    remove,
                    expected_version: current.version,
                },
            )?;
            Ok(Ok(()))
        })
        .await?;
    outcome?;
    Ok(HttpResponse::NoContent().finish())
}

async fn add_target(
    state: web::Data<AppState>,
    auth: WorkosAuth,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse> {
    change_target(state, auth, path, true).await
}

async fn remove_target(
    state: web::Data<AppState>,
    auth: WorkosAuth,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse> {
    change_target(state, auth, path, false).await
}

/// The flags that are on for every member of an organization (targeted,
/// or on for all), as a list.
async fn organization_flags(
    state: web::Data<AppState>,
    auth: WorkosAuth,
    path: web::Path<String>,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse> {
    let key = path.into_inner();
    let lookup = key.clone();
    let org = state
        .db(move |conn| Ok(directory::find_org(conn, &lookup)?))
        .await?
        .ok_or_else(|| not_found("organization", &key))?;
    let env = auth.0.environment;
    let on = state.index().evaluate(&env.id, None, Some(&org.id));
    flag_list(&state, &env, query.into_inner(), Some(on)).await
}

#[derive(Deserialize)]
struct UserFlagsQuery {
    organization_id: Option<String>,
    #[serde(flatten)]
    page: ListQuery,
}

/// The flags that are on for a user (targeted, or on for all), and with
/// `organization_id`, for the user in that organization, as a list.
async fn user_flags(
    state: web::Data<AppState>,
    auth: WorkosAuth,
    path: web::Path<String>,
    query: web::Query<UserFlagsQuery>,
) -> Result<HttpResponse> {
    let key = path.into_inner();
    let query = query.into_inner();
    let org_key = present(query.organization_id);
    let lookup = key.clone();
    let resolved = state
        .db(move |conn| {
            let Some(user) = directory::find_user_by_id_or_external(conn, &lookup)? else {
                return Ok(Err(SessionError::UserNotFound));
            };
            let org = match org_key {
                None => None,
                Some(org_key) => {
                    let Some(org) = directory::find_org(conn, &org_key)? else {
                        return Ok(Err(SessionError::OrganizationNotFound));
                    };
                    if directory::membership(conn, &org.id, &user.id)?.is_none() {
                        return Ok(Err(SessionError::NotAMember));
                    }
                    Some(org.id)
                }
            };
            Ok(Ok((user.id, org)))
        })
        .await?;
    let (user, org) = resolved?;
    let env = auth.0.environment;
    let on = state.index().evaluate(&env.id, Some(&user), org.as_deref());
    flag_list(&state, &env, query.page, Some(on)).await
}

// ---------------------------------------------------------------------------
// The rule set the SDK's runtime client polls to evaluate locally.

/// The key's environment's rule set (`crate::workos::runtime_rule_set`),
/// built once per revision and shared by every poll until something changes.
async fn runtime_rules(state: web::Data<AppState>, auth: WorkosAuth) -> Result<HttpResponse> {
    let env_id = auth.0.environment.id;
    let st = state.clone();
    let body = state
        .db(move |conn| st.rule_sets.get(conn, &env_id))
        .await?;
    Ok(HttpResponse::Ok()
        .content_type("application/json")
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(body))
}
