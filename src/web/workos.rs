//! The WorkOS-compatible surface: the paths, shapes and errors that the
//! official WorkOS SDKs use for sessions, keys and feature flags, so that an
//! application moves to Flagpole by pointing its WorkOS client at Flagpole's
//! host. A secret key (`Authorization: Bearer sk_…`) decides the
//! environment, as on `/api/v1`, and the environment's `client_id` is the
//! WorkOS client id. Every handler calls Flagpole's own services; only the
//! shapes (`crate::workos`) differ. Its contract is WorkOS's API reference
//! and SDKs, so it is not in `/api/v1/openapi.json`.

use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use actix_web::http::header;
use actix_web::web::Bytes;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::api::paging::ListQuery;
use super::api::sessions::{key_set, rotate};
use super::api::{optional, ApiAuth, EnvironmentKey, EvaluationKey};
use super::json::{BodyLimit, Json};
use super::routes::Routes;
use super::Surface;
use crate::directory;
use crate::environments::{self, api_keys, Environment};
use crate::error::{Entity, Error, Refusal, Result};
use crate::evaluation::model::EnvironmentModel;
use crate::evaluation::{Context, FlagRule, TargetKind};
use crate::flags;
use crate::flags::rules::{self, TargetRef};
use crate::ids::{EnvironmentId, FlagId};
use crate::live::Snapshot;
use crate::paging::Cursor;
use crate::tokens::sessions::{self as token_sessions, RevokeTarget};
use crate::tokens::signing::KeyUsage;
use crate::workos::{runtime_flag, FeatureFlag, List, WorkosUser};
use crate::AppState;

/// The largest body the WorkOS surface takes.
const BODY_LIMIT: usize = 64 * 1024;

pub fn routes(cfg: &mut web::ServiceConfig) {
    Routes::new(cfg, "", Surface::Workos)
        .post("/user_management/authenticate", authenticate)
        .surface("/user_management/authenticate", Surface::Oauth)
        .data("/user_management/authenticate", BodyLimit(BODY_LIMIT))
        .post("/user_management/sessions/revoke", revoke_session)
        .data("/user_management/sessions/revoke", BodyLimit(BODY_LIMIT))
        .get("/sso/jwks/{client_id}", jwks)
        .get("/sdk/feature-flags", runtime_rules)
        .get("/feature-flags", list_flags)
        .get("/feature-flags/{slug}", get_flag)
        .put("/feature-flags/{slug}/enable", enable)
        .put("/feature-flags/{slug}/disable", disable)
        .post("/feature-flags/{slug}/targets/{resource_id}", add_target)
        .delete("/feature-flags/{slug}/targets/{resource_id}", remove_target)
        .get("/organizations/{id}/feature-flags", organization_flags)
        .get("/user_management/users/{id}/feature-flags", user_flags);
}

// ---------------------------------------------------------------------------
// Sessions: `POST /user_management/authenticate` and the JWKS.

/// The fields of an authenticate call; WorkOS takes JSON or a form.
#[derive(Deserialize, Default)]
struct AuthenticateBody {
    grant_type: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
    refresh_token: Option<String>,
    organization_id: Option<String>,
}

fn parse_authenticate(req: &HttpRequest, body: &[u8]) -> Result<AuthenticateBody> {
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if content_type.starts_with("application/x-www-form-urlencoded") {
        serde_urlencoded::from_bytes(body)
            .map_err(|e| Error::malformed("form", format!("The form is invalid: {e}")))
    } else {
        serde_json::from_slice(body).map_err(|e| {
            Error::malformed(
                "json",
                format!(
                    "Send the body as JSON (or a form) with grant_type, client_id, client_secret and refresh_token: {e}"
                ),
            )
        })
    }
}

/// What `/user_management/authenticate` answers.
#[derive(Serialize)]
struct AuthenticateResponse {
    user: WorkosUser,
    organization_id: Option<crate::ids::OrgId>,
    access_token: String,
    refresh_token: String,
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
    body: Bytes,
) -> Result<HttpResponse> {
    let body = parse_authenticate(&req, &body)?;
    match optional(body.grant_type).as_deref() {
        Some("refresh_token") => {}
        Some(other) => {
            return Err(Error::Refused(Refusal::UnsupportedGrantType {
                message: format!(
                    "Flagpole exchanges refresh tokens only (grant_type=refresh_token), not {other:?}. Start sessions with POST /api/v1/sessions."
                ),
            }))
        }
        None => return Err(Error::invalid("grant_type", "Give grant_type=refresh_token.")),
    }
    let client_id = optional(body.client_id).ok_or_else(|| {
        Error::invalid("client_id", "Give client_id: the environment's client id.")
    })?;
    let token = optional(body.refresh_token)
        .ok_or_else(|| Error::invalid("refresh_token", "Give the refresh_token."))?;
    let secret = optional(body.client_secret);
    let env_id = state
        .read(move |conn| {
            let env = environments::by_client_id(conn, &client_id)?.ok_or_else(|| {
                Error::Refused(Refusal::InvalidClient {
                    message: "No environment has this client_id. The Environments page shows each one's.".into(),
                })
            })?;
            if let Some(secret) = secret {
                let key_env = api_keys::authenticate(conn, &secret)?.map(|(_, e)| e.id);
                if key_env.as_ref() != Some(&env.id) {
                    return Err(Error::Refused(Refusal::InvalidClient {
                        message: "The client_secret is not a live secret key of this client_id's environment.".into(),
                    }));
                }
            }
            Ok(env.id)
        })
        .await?;
    let refreshed = rotate(
        &state,
        token,
        optional(body.organization_id),
        Some(env_id),
        KeyUsage::Workos,
    )
    .await?;
    let minted = crate::tokens::mint(
        &state.model().model,
        &state.config.token_settings(),
        &state.config.public_url,
        &refreshed.environment,
        &refreshed.issued.session,
        &refreshed.signer,
    )?;
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(AuthenticateResponse {
            user: WorkosUser::from(&refreshed.issued.user),
            organization_id: refreshed.issued.session.organization_id,
            access_token: minted.access_token,
            refresh_token: refreshed.issued.refresh_token,
        }))
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
    auth: EvaluationKey,
    body: Json<RevokeBody>,
) -> Result<HttpResponse> {
    let session_id = optional(body.into_inner().session_id)
        .ok_or_else(|| Error::invalid("session_id", "Give the session_id to revoke."))?;
    let env_id = auth.environment.id.clone();
    state
        .write(move |conn| {
            token_sessions::revoke(conn, &env_id, RevokeTarget::SessionId(&session_id))
        })
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// The public keys of one environment, where the SDK looks for them.
async fn jwks(state: web::Data<AppState>, path: web::Path<String>) -> Result<HttpResponse> {
    let client_id = path.into_inner();
    let env = state
        .read(move |conn| environments::by_client_id(conn, &client_id))
        .await?
        .ok_or(Error::NotFound(Entity::Environment))?;
    key_set(&state, Some(env.id), Some(KeyUsage::Workos)).await
}

// ---------------------------------------------------------------------------
// Feature flags, as WorkOS's `feature_flag` objects in the key's environment.
// Archived flags do not exist here: WorkOS has no archive.

/// One page of the live flags of an environment that `keep` keeps, as
/// WorkOS's list, from the model: the page is chosen first, and only its
/// flags are made into objects.
fn flag_page(
    snapshot: &Snapshot,
    env: &EnvironmentId,
    keep: impl Fn(&FlagRule) -> bool,
    query: ListQuery,
) -> Result<HttpResponse> {
    let cursor: Cursor = query.cursor()?;
    let flags: Vec<&FlagRule> = snapshot
        .model
        .environment(env)
        .map(|model| model.live_flags().filter(|flag| keep(flag)).collect())
        .unwrap_or_default();
    let page = cursor.page_of(flags, |flag| flag.id.as_str());
    let page = page.map(|flag| snapshot.flag(&flag.id).map(|f| f.workos_object_in(flag)));
    let data: Vec<FeatureFlag> = page.data.into_iter().flatten().collect();
    Ok(HttpResponse::Ok().json(List::from(crate::paging::Page {
        data,
        before: page.before,
        after: page.after,
    })))
}

/// A page of the live flags in the key's environment.
async fn list_flags(
    state: web::Data<AppState>,
    auth: EnvironmentKey,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse> {
    flag_page(
        &state.model(),
        &auth.environment.id,
        |_| true,
        query.into_inner(),
    )
}

/// One live flag as WorkOS's object in `env`.
fn flag_object(state: &AppState, env: &Environment, slug: &str) -> Result<HttpResponse> {
    let snapshot = state.model();
    let object = snapshot
        .model
        .environment(&env.id)
        .and_then(|model| model.flag(slug))
        .filter(|flag| !flag.archived)
        .and_then(|flag| snapshot.flag(&flag.id).map(|f| f.workos_object_in(flag)))
        .ok_or(Error::NotFound(Entity::Flag))?;
    Ok(HttpResponse::Ok().json(object))
}

async fn get_flag(
    state: web::Data<AppState>,
    auth: EnvironmentKey,
    path: web::Path<String>,
) -> Result<HttpResponse> {
    flag_object(&state, &auth.environment, &path.into_inner())
}

async fn set_enabled(
    state: web::Data<AppState>,
    auth: ApiAuth,
    slug: String,
    enabled: bool,
) -> Result<HttpResponse> {
    let actor = auth.actor();
    let env = auth.environment;
    let (e, s) = (env.clone(), slug.clone());
    state
        .write(move |conn| {
            let flag = flags::live_by_slug(conn, &s)?;
            rules::set_enabled(conn, &actor, &flag, &e, enabled, None)
        })
        .await?;
    flag_object(&state, &env, &slug)
}

/// Turns a flag on in the key's environment.
async fn enable(
    state: web::Data<AppState>,
    auth: EnvironmentKey,
    path: web::Path<String>,
) -> Result<HttpResponse> {
    set_enabled(state, auth.into_inner(), path.into_inner(), true).await
}

/// Turns a flag off in the key's environment, keeping its rule.
async fn disable(
    state: web::Data<AppState>,
    auth: EnvironmentKey,
    path: web::Path<String>,
) -> Result<HttpResponse> {
    set_enabled(state, auth.into_inner(), path.into_inner(), false).await
}

/// Adds or removes one target (`user_…` or `org_…`) of a flag's rule in the
/// key's environment. Adding to a rule of mode None makes it Some, so the
/// target gets the flag as WorkOS's would; removing a target that is not
/// one changes nothing. Both answer 204.
async fn change_target(
    state: web::Data<AppState>,
    auth: ApiAuth,
    path: web::Path<(String, String)>,
    add: bool,
) -> Result<HttpResponse> {
    let (slug, resource_id) = path.into_inner();
    let Some(kind) = TargetKind::of_id(&resource_id) else {
        return Err(Error::invalid(
            "resource_id",
            "A target is a user (user_…) or an organization (org_…) id.",
        ));
    };
    let actor = auth.actor();
    let env = auth.environment;
    state
        .write(move |conn| {
            let flag = flags::live_by_slug(conn, &slug)?;
            if add {
                let target = TargetRef {
                    kind: Some(kind),
                    id: resource_id,
                    field: "resource_id".into(),
                };
                rules::add_target(conn, &actor, &flag, &env, &target, true, None)
            } else {
                if directory::resolve_subject(conn, kind, &resource_id)?.is_none() {
                    return Err(Error::NotFound(match kind {
                        TargetKind::User => Entity::User,
                        TargetKind::Organization => Entity::Organization,
                    }));
                }
                rules::remove_target(conn, &actor, &flag, &env, &resource_id, true, None)
            }
        })
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

async fn add_target(
    state: web::Data<AppState>,
    auth: EnvironmentKey,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse> {
    change_target(state, auth.into_inner(), path, true).await
}

async fn remove_target(
    state: web::Data<AppState>,
    auth: EnvironmentKey,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse> {
    change_target(state, auth.into_inner(), path, false).await
}

/// The flags that are on for every member of an organization (targeted,
/// or on for all), as a list. An organization Flagpole does not know is
/// evaluated as given, like every context a caller states.
async fn organization_flags(
    state: web::Data<AppState>,
    auth: EvaluationKey,
    path: web::Path<String>,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse> {
    let snapshot = state.model();
    let context = snapshot.context(None, Some(&path.into_inner()));
    let on = on_for_any(&state, &snapshot, &auth.environment, &[context]);
    flag_page(
        &snapshot,
        &auth.environment.id,
        |f| on.contains(f.slug.as_str()),
        query.into_inner(),
    )
}

#[derive(Deserialize)]
struct UserFlagsQuery {
    organization_id: Option<String>,
    #[serde(flatten)]
    page: ListQuery,
}

/// The flags that are on for a user: for the user alone and in each of the
/// organizations the user belongs to (as WorkOS's list includes the flags
/// of the user's organizations), or with `organization_id`, for the user in
/// that organization; as a list. Answered from the model, except for a user
/// named by an external id the model does not hold.
async fn user_flags(
    state: web::Data<AppState>,
    auth: EvaluationKey,
    path: web::Path<String>,
    query: web::Query<UserFlagsQuery>,
) -> Result<HttpResponse> {
    let user = path.into_inner();
    let query = query.into_inner();
    let snapshot = state.model();
    let contexts: Vec<Context> = match optional(query.organization_id) {
        Some(org) => vec![snapshot.context(Some(&user), Some(&org))],
        None => {
            let mut alone = snapshot.context(Some(&user), None);
            if alone.user.is_none() {
                // An external id the model does not hold (the user is no
                // target): the organizations' flags need the user's id, so
                // this one case asks the database. The SDK sends Flagpole
                // ids, which never get here.
                let key = user.clone();
                alone.user = state
                    .read(move |conn| directory::find_user(conn, &key))
                    .await?
                    .map(|u| u.id);
            }
            let mut contexts = vec![alone.clone()];
            if let Some(id) = &alone.user {
                contexts.extend(
                    snapshot
                        .directory
                        .organizations_of(id)
                        .into_iter()
                        .map(|org| Context::new(alone.user.clone(), Some(org))),
                );
            }
            contexts
        }
    };
    let on = on_for_any(&state, &snapshot, &auth.environment, &contexts);
    flag_page(
        &snapshot,
        &auth.environment.id,
        |f| on.contains(f.slug.as_str()),
        query.page,
    )
}

/// The slugs of the live flags on for at least one of `contexts`.
fn on_for_any<'a>(
    state: &AppState,
    snapshot: &'a Snapshot,
    env: &Environment,
    contexts: &[Context],
) -> std::collections::HashSet<&'a str> {
    state.metrics.evaluated(&env.slug, "workos");
    contexts
        .iter()
        .flat_map(|context| snapshot.model.evaluate(&env.id, context))
        .collect()
}

// ---------------------------------------------------------------------------
// The rule set the SDK's runtime client polls to evaluate locally.

/// The runtime rule sets as sent, one per environment, each assembled
/// from the snapshot once per revision and polled as the same bytes until
/// something changes. A new revision does not rebuild a set: each flag's
/// part (`"slug":{…}`) is kept while the snapshot holds the same rule (the
/// same pointer), so only the flags that changed are serialized again, and
/// a set that no change touched keeps its bytes, its ETag and its gzip.
#[derive(Default)]
pub struct RuleSets {
    built: Mutex<HashMap<EnvironmentId, Arc<RuleSet>>>,
}

/// One environment's rule set as sent.
pub struct RuleSet {
    revision: i64,
    /// The flags it was assembled from, by id, with their parts.
    parts: HashMap<FlagId, (Arc<FlagRule>, Bytes)>,
    body: Bytes,
    etag: String,
    /// The body gzipped, made on the first request that accepts it.
    gzip: Arc<OnceLock<Bytes>>,
}

impl RuleSets {
    fn get(&self, state: &AppState, env_id: &EnvironmentId) -> Result<Arc<RuleSet>> {
        let snapshot = state.model();
        let mut built = self.built.lock().unwrap_or_else(PoisonError::into_inner);
        let previous = built.get(env_id).cloned();
        if let Some(set) = &previous {
            if set.revision == snapshot.revision {
                return Ok(set.clone());
            }
        }
        let set = Arc::new(RuleSet::assemble(
            snapshot.revision,
            snapshot.model.environment(env_id),
            previous.as_deref(),
        )?);
        built.insert(env_id.clone(), set.clone());
        Ok(set)
    }
}

impl RuleSet {
    fn assemble(
        revision: i64,
        env: Option<&EnvironmentModel>,
        previous: Option<&RuleSet>,
    ) -> Result<RuleSet> {
        let mut parts = HashMap::new();
        let mut reused = 0;
        let live = env
            .into_iter()
            .flat_map(|env| env.all_flags())
            .filter(|f| !f.archived);
        let mut order: Vec<FlagId> = Vec::new();
        for flag in live {
            let kept = previous
                .and_then(|p| p.parts.get(&flag.id))
                .filter(|(rule, _)| Arc::ptr_eq(rule, flag));
            let part = match kept {
                Some((_, part)) => {
                    reused += 1;
                    part.clone()
                }
                None => {
                    let mut part =
                        serde_json::to_vec(flag.slug.as_str()).map_err(Error::internal)?;
                    part.push(b':');
                    serde_json::to_writer(&mut part, &runtime_flag(flag))
                        .map_err(Error::internal)?;
                    Bytes::from(part)
                }
            };
            order.push(flag.id.clone());
            parts.insert(flag.id.clone(), (flag.clone(), part));
        }
        if let Some(previous) = previous {
            if reused == parts.len() && previous.parts.len() == parts.len() {
                return Ok(RuleSet {
                    revision,
                    parts,
                    body: previous.body.clone(),
                    etag: previous.etag.clone(),
                    gzip: previous.gzip.clone(),
                });
            }
        }
        let size: usize = parts.values().map(|(_, p)| p.len() + 1).sum();
        let mut body = Vec::with_capacity(size + 2);
        body.push(b'{');
        for (i, id) in order.iter().enumerate() {
            if i > 0 {
                body.push(b',');
            }
            body.extend_from_slice(&parts[id].1);
        }
        body.push(b'}');
        let etag = format!("\"{}\"", hex::encode(&Sha256::digest(&body)[..16]));
        Ok(RuleSet {
            revision,
            parts,
            body: Bytes::from(body),
            etag,
            gzip: Arc::default(),
        })
    }

    /// The body gzipped (made once per set).
    fn gzipped(&self) -> Bytes {
        self.gzip
            .get_or_init(|| {
                let mut encoder = flate2::write::GzEncoder::new(
                    Vec::with_capacity(self.body.len() / 3),
                    flate2::Compression::new(RULE_SET_GZIP_LEVEL),
                );
                // Writing to a Vec cannot fail.
                let _ = encoder.write_all(&self.body);
                Bytes::from(encoder.finish().unwrap_or_default())
            })
            .clone()
    }
}

/// How hard the rule set is compressed: once per change, for every poll.
const RULE_SET_GZIP_LEVEL: u32 = 9;

/// Whether the request accepts a gzipped answer.
fn accepts_gzip(req: &HttpRequest) -> bool {
    req.headers()
        .get_all(header::ACCEPT_ENCODING)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|coding| {
            let mut parts = coding.split(';');
            let name = parts.next().unwrap_or("").trim();
            let refused = parts.any(|p| matches!(p.trim(), "q=0" | "q=0.0" | "q=0.00" | "q=0.000"));
            name.eq_ignore_ascii_case("gzip") && !refused
        })
}

/// The key's environment's rule set (`crate::workos::runtime_flag` for
/// each flag), with an `ETag` for `If-None-Match`, gzipped for clients
/// that accept it.
async fn runtime_rules(
    state: web::Data<AppState>,
    auth: EvaluationKey,
    req: HttpRequest,
) -> Result<HttpResponse> {
    let set = state.rule_sets.get(&state, &auth.environment.id)?;
    let unchanged = super::ofrep::none_match(&req, &set.etag);
    let mut response = if unchanged {
        HttpResponse::NotModified()
    } else {
        HttpResponse::Ok()
    };
    response
        .insert_header((header::ETAG, set.etag.clone()))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header((header::VARY, "Accept-Encoding"));
    if unchanged {
        return Ok(response.finish());
    }
    response.content_type("application/json");
    if accepts_gzip(&req) {
        return Ok(response
            .insert_header((header::CONTENT_ENCODING, "gzip"))
            .body(set.gzipped()));
    }
    // Sent as it is: the compression middleware leaves it alone.
    Ok(response
        .insert_header((header::CONTENT_ENCODING, "identity"))
        .body(set.body.clone()))
}
