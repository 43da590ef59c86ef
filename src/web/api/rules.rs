//! A flag's rule in one environment, through the API. A rule answers with
//! an `ETag` (its version); a change sent with a stale `If-Match` is refused
//! with 412 and changes nothing. A key reads and changes the rules of its
//! own environment only.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use utoipa::ToSchema;

use super::objects::{ErrorBody, RuleObject};
use super::EnvironmentKey;
use super::{ApiAuth, API_PREFIX};
use crate::environments::Environment;
use crate::error::{Error, Result};
use crate::evaluation::{Mode, TargetKind};
use crate::flags::rules::{self, RuleChange, TargetChange, TargetRef, MAX_TARGETS_PER_CHANGE};
use crate::flags::{self, Flag};
use crate::web::json::Json;
use crate::web::routes::Routes;
use crate::web::Surface;
use crate::AppState;

pub fn routes(cfg: &mut web::ServiceConfig) {
    Routes::documented(cfg, API_PREFIX, Surface::Api)
        .get("/feature-flags/{slug}/environments/{env}", get_rule)
        .put("/feature-flags/{slug}/environments/{env}", put_rule)
        .post("/feature-flags/{slug}/environments/{env}/enable", enable)
        .post("/feature-flags/{slug}/environments/{env}/disable", disable)
        .post(
            "/feature-flags/{slug}/environments/{env}/targets",
            add_target,
        )
        .delete(
            "/feature-flags/{slug}/environments/{env}/targets/{id}",
            remove_target,
        );
}

/// The version an `If-Match` header names, if any.
fn if_match(req: &HttpRequest) -> Result<Option<i32>> {
    let Some(value) = req.headers().get(header::IF_MATCH) else {
        return Ok(None);
    };
    let text = value.to_str().unwrap_or("").trim();
    if text == "*" {
        return Ok(None);
    }
    text.trim_start_matches("W/")
        .trim_matches('"')
        .parse::<i32>()
        .map(Some)
        .map_err(|_| {
            Error::malformed(
                "if_match",
                "If-Match takes the ETag of the rule, as GET returned it.",
            )
        })
}

/// The rule as it is now, with its ETag.
fn rule_response(flag: &Flag, env: &Environment, details: rules::RuleDetails) -> HttpResponse {
    let etag = format!("\"{}\"", details.rule.version);
    HttpResponse::Ok()
        .insert_header((header::ETAG, etag))
        .json(RuleObject::new(flag, env, details))
}

/// Runs a change of a flag's rule and answers with the rule as it is now.
async fn change_rule<F>(
    state: &web::Data<AppState>,
    auth: &ApiAuth,
    slug: String,
    env: Environment,
    change: F,
) -> Result<HttpResponse>
where
    F: FnOnce(&mut crate::db::DbConn, &crate::audit::Actor, &Flag, &Environment) -> Result<()>
        + Send
        + 'static,
{
    let actor = auth.actor();
    let e = env.clone();
    let (flag, details) = state
        .write(move |conn| {
            let flag = flags::by_slug(conn, &slug)?;
            change(conn, &actor, &flag, &e)?;
            let details = rules::details(conn, &flag.id, &e.id)?;
            Ok((flag, details))
        })
        .await?;
    Ok(rule_response(&flag, &env, details))
}

/// Reads a flag's rule in an environment, with its `ETag`.
///
/// The key must be one of that environment.
#[utoipa::path(
    operation_id = "get_rule",
    get,
    path = "/api/v1/feature-flags/{slug}/environments/{env}",
    tag = "Rules",
    security(("api_key" = ["environment"])),
    params(
        ("slug" = String, Path, description = "The flag's slug."),
        ("env" = String, Path, description = "The environment's slug, e.g. `production`: the key's own."),
    ),
    responses(
        (status = 200, description = "The rule.", body = RuleObject,
            headers(("ETag" = String, description = "The rule's version, for `If-Match`."))),
        (status = 403, description = "The key belongs to another environment (`wrong_environment`).", body = ErrorBody),
        (status = 404, description = "No flag has this slug (`flag_not_found`).", body = ErrorBody),
    )
)]
async fn get_rule(
    state: web::Data<AppState>,
    auth: EnvironmentKey,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse> {
    let (slug, env_slug) = path.into_inner();
    let env = auth.own_environment(&env_slug)?;
    let env_id = env.id.clone();
    let (flag, details) = state
        .read(move |conn| {
            let flag = flags::by_slug(conn, &slug)?;
            let details = rules::details(conn, &flag.id, &env_id)?;
            Ok((flag, details))
        })
        .await?;
    Ok(rule_response(&flag, &env, details))
}

/// A target as the API names it: `{"type": "user"|"organization", "id": …}`,
/// where the id is a Flagpole id or an external id.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = TargetReference)]
struct TargetBody {
    /// Needed when `id` is an external id; a Flagpole id (`user_…`,
    /// `org_…`) says it itself.
    #[serde(rename = "type")]
    #[schema(rename = "type")]
    kind: Option<TargetKind>,
    /// A Flagpole id or an external id.
    #[schema(value_type = String, required = true, example = "acme")]
    id: Option<String>,
}

impl TargetBody {
    fn into_ref(self, field: String) -> TargetRef {
        TargetRef {
            kind: self.kind,
            id: self.id.unwrap_or_default(),
            field,
        }
    }
}

/// A whole rule: the mode, optionally the switch, and optionally the
/// complete target list (targets not in it are removed; without it the
/// targets stay).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = PutRule)]
struct PutRuleBody {
    #[schema(required = true)]
    mode: Option<Mode>,
    /// Turns the flag on or off in this environment; absent keeps it.
    enabled: Option<bool>,
    /// At most 10,000.
    targets: Option<Vec<TargetBody>>,
}

/// Sets a flag's rule (mode, switch and targets) in an environment.
///
/// With `If-Match`, a rule that changed since is left alone and the answer is
/// 412.
#[utoipa::path(
    operation_id = "put_rule",
    put,
    path = "/api/v1/feature-flags/{slug}/environments/{env}",
    tag = "Rules",
    security(("api_key" = ["environment"])),
    params(
        ("slug" = String, Path, description = "The flag's slug."),
        ("env" = String, Path, description = "The environment's slug: the key's own."),
        ("If-Match" = Option<String>, Header, description = "The `ETag` the rule had when read."),
    ),
    request_body = PutRuleBody,
    responses(
        (status = 200, description = "The rule as saved.", body = RuleObject,
            headers(("ETag" = String, description = "The rule's new version."))),
        (status = 403, description = "The key belongs to another environment (`wrong_environment`).", body = ErrorBody),
        (status = 404, description = "No such flag, user or organization (`flag_not_found`, `user_not_found`, `organization_not_found`).", body = ErrorBody),
        (status = 412, description = "The rule changed since it was read (`stale`); nothing was changed.", body = ErrorBody),
        (status = 422, description = "A field is missing, unknown or invalid; `field` names it (e.g. `mode`, `targets[2]`).", body = ErrorBody),
    )
)]
async fn put_rule(
    state: web::Data<AppState>,
    auth: EnvironmentKey,
    req: HttpRequest,
    path: web::Path<(String, String)>,
    body: Json<PutRuleBody>,
) -> Result<HttpResponse> {
    let (slug, env_slug) = path.into_inner();
    let env = auth.own_environment(&env_slug)?;
    let expected = if_match(&req)?;
    let body = body.into_inner();
    let mode = body
        .mode
        .ok_or_else(|| Error::invalid("mode", "mode is \"none\", \"some\" or \"all\"."))?;
    if body
        .targets
        .as_ref()
        .is_some_and(|t| t.len() > MAX_TARGETS_PER_CHANGE)
    {
        return Err(Error::Refused(crate::error::Refusal::PayloadTooLarge {
            message: format!(
                "A rule takes at most {MAX_TARGETS_PER_CHANGE} targets in one request."
            ),
        }));
    }
    let targets = match body.targets {
        None => TargetChange::Keep,
        Some(list) => TargetChange::Replace(
            list.into_iter()
                .enumerate()
                .map(|(i, t)| t.into_ref(format!("targets[{i}]")))
                .collect(),
        ),
    };
    let change = RuleChange {
        mode: Some(mode),
        enabled: body.enabled,
        targets,
        expected_version: expected,
    };
    change_rule(&state, &auth, slug, env, move |conn, actor, flag, env| {
        rules::save_rule(conn, actor, flag, env, &change).map(drop)
    })
    .await
}

async fn set_enabled(
    state: web::Data<AppState>,
    auth: ApiAuth,
    req: HttpRequest,
    path: web::Path<(String, String)>,
    enabled: bool,
) -> Result<HttpResponse> {
    let (slug, env_slug) = path.into_inner();
    let env = auth.own_environment(&env_slug)?;
    let expected = if_match(&req)?;
    change_rule(&state, &auth, slug, env, move |conn, actor, flag, env| {
        rules::set_enabled(conn, actor, flag, env, enabled, expected).map(drop)
    })
    .await
}

/// Turns a flag on in an environment (for the targets of its mode).
#[utoipa::path(
    operation_id = "enable_rule",
    post,
    path = "/api/v1/feature-flags/{slug}/environments/{env}/enable",
    tag = "Rules",
    security(("api_key" = ["environment"])),
    params(
        ("slug" = String, Path, description = "The flag's slug."),
        ("env" = String, Path, description = "The environment's slug: the key's own."),
        ("If-Match" = Option<String>, Header, description = "The `ETag` the rule had when read."),
    ),
    responses(
        (status = 200, description = "The rule as saved.", body = RuleObject,
            headers(("ETag" = String, description = "The rule's new version."))),
        (status = 400, description = "`If-Match` is not an ETag.", body = ErrorBody),
        (status = 403, description = "The key belongs to another environment (`wrong_environment`).", body = ErrorBody),
        (status = 404, description = "No flag has this slug (`flag_not_found`).", body = ErrorBody),
        (status = 412, description = "The rule changed since it was read (`stale`); nothing was changed.", body = ErrorBody),
    )
)]
async fn enable(
    state: web::Data<AppState>,
    auth: EnvironmentKey,
    req: HttpRequest,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse> {
    set_enabled(state, auth.into_inner(), req, path, true).await
}

/// Turns a flag off in an environment, keeping its mode and targets.
#[utoipa::path(
    operation_id = "disable_rule",
    post,
    path = "/api/v1/feature-flags/{slug}/environments/{env}/disable",
    tag = "Rules",
    security(("api_key" = ["environment"])),
    params(
        ("slug" = String, Path, description = "The flag's slug."),
        ("env" = String, Path, description = "The environment's slug: the key's own."),
        ("If-Match" = Option<String>, Header, description = "The `ETag` the rule had when read."),
    ),
    responses(
        (status = 200, description = "The rule as saved.", body = RuleObject,
            headers(("ETag" = String, description = "The rule's new version."))),
        (status = 400, description = "`If-Match` is not an ETag.", body = ErrorBody),
        (status = 403, description = "The key belongs to another environment (`wrong_environment`).", body = ErrorBody),
        (status = 404, description = "No flag has this slug (`flag_not_found`).", body = ErrorBody),
        (status = 412, description = "The rule changed since it was read (`stale`); nothing was changed.", body = ErrorBody),
    )
)]
async fn disable(
    state: web::Data<AppState>,
    auth: EnvironmentKey,
    req: HttpRequest,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse> {
    set_enabled(state, auth.into_inner(), req, path, false).await
}

/// Adds one target to a flag's rule in an environment.
///
/// A user, or an organization (every member gets the flag). The mode stays.
#[utoipa::path(
    operation_id = "add_target",
    post,
    path = "/api/v1/feature-flags/{slug}/environments/{env}/targets",
    tag = "Rules",
    security(("api_key" = ["environment"])),
    params(
        ("slug" = String, Path, description = "The flag's slug."),
        ("env" = String, Path, description = "The environment's slug: the key's own."),
        ("If-Match" = Option<String>, Header, description = "The `ETag` the rule had when read."),
    ),
    request_body = TargetBody,
    responses(
        (status = 200, description = "The rule as saved.", body = RuleObject,
            headers(("ETag" = String, description = "The rule's new version."))),
        (status = 403, description = "The key belongs to another environment (`wrong_environment`).", body = ErrorBody),
        (status = 404, description = "No such flag, user or organization.", body = ErrorBody),
        (status = 412, description = "The rule changed since it was read (`stale`); nothing was changed.", body = ErrorBody),
        (status = 422, description = "The target has no id or an unknown type, or the body an unknown field.", body = ErrorBody),
    )
)]
async fn add_target(
    state: web::Data<AppState>,
    auth: EnvironmentKey,
    req: HttpRequest,
    path: web::Path<(String, String)>,
    body: Json<TargetBody>,
) -> Result<HttpResponse> {
    let (slug, env_slug) = path.into_inner();
    let env = auth.own_environment(&env_slug)?;
    let expected = if_match(&req)?;
    let target = body.into_inner().into_ref("id".into());
    change_rule(&state, &auth, slug, env, move |conn, actor, flag, env| {
        rules::add_target(conn, actor, flag, env, &target, false, expected).map(drop)
    })
    .await
}

/// Removes one target from a rule, keeping its mode.
#[utoipa::path(
    operation_id = "remove_target",
    delete,
    path = "/api/v1/feature-flags/{slug}/environments/{env}/targets/{id}",
    tag = "Rules",
    security(("api_key" = ["environment"])),
    params(
        ("slug" = String, Path, description = "The flag's slug."),
        ("env" = String, Path, description = "The environment's slug: the key's own."),
        ("id" = String, Path, description = "The target's Flagpole id or external id."),
        ("If-Match" = Option<String>, Header, description = "The `ETag` the rule had when read."),
    ),
    responses(
        (status = 200, description = "The rule as saved.", body = RuleObject,
            headers(("ETag" = String, description = "The rule's new version."))),
        (status = 400, description = "`If-Match` is not an ETag.", body = ErrorBody),
        (status = 403, description = "The key belongs to another environment (`wrong_environment`).", body = ErrorBody),
        (status = 404, description = "No such flag, or no current target has this id (`target_not_found`).", body = ErrorBody),
        (status = 412, description = "The rule changed since it was read (`stale`); nothing was changed.", body = ErrorBody),
    )
)]
async fn remove_target(
    state: web::Data<AppState>,
    auth: EnvironmentKey,
    req: HttpRequest,
    path: web::Path<(String, String, String)>,
) -> Result<HttpResponse> {
    let (slug, env_slug, key) = path.into_inner();
    let env = auth.own_environment(&env_slug)?;
    let expected = if_match(&req)?;
    change_rule(&state, &auth, slug, env, move |conn, actor, flag, env| {
        rules::remove_target(conn, actor, flag, env, &key, false, expected).map(drop)
    })
    .await
}
