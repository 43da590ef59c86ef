//! Managing feature flags and their rules with a secret key. A rule answers
//! with an `ETag` (its version); a change sent with a stale `If-Match` is
//! refused with 412 and changes nothing.

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::{json, Value};
use utoipa::openapi::path::{Parameter, ParameterIn};
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::{IntoParams, ToSchema};

use super::paging::{envelope, query_param, ListKind, ListMetadata, ListQuery};
use super::{ApiAuth, ApiError, ApiRoutes, ErrorBody, API_PREFIX};
use crate::db::schema::{flags as flags_table, targets};
use crate::db::DbConn;
use crate::directory;
use crate::error::AppError;
use crate::flags::{self, mode_of, FlagInput, Mode, RuleChange, TargetKind, TargetView};
use crate::models::{Environment, Flag, Rule};
use crate::{environments, paginate, AppState};

pub fn routes(cfg: &mut web::ServiceConfig) {
    ApiRoutes::new(cfg, API_PREFIX)
        .get("/feature-flags", list)
        .post("/feature-flags", create)
        .get("/feature-flags/{slug}", get)
        .patch("/feature-flags/{slug}", update)
        .delete("/feature-flags/{slug}", delete)
        .post("/feature-flags/{slug}/archive", archive)
        .post("/feature-flags/{slug}/unarchive", unarchive)
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

/// A feature flag, as every flag endpoint answers it.
#[derive(ToSchema)]
pub struct FeatureFlagObject {
    #[schema(inline)]
    pub object: FeatureFlagKind,
    #[schema(example = "flag_01JD6Z8X4G7Q2M3N5P6R7S8T9V")]
    pub id: String,
    /// The key applications use; it never changes.
    #[schema(example = "new-checkout")]
    pub slug: String,
    #[schema(example = "New checkout")]
    pub name: String,
    pub description: String,
    #[schema(example = json!(["growth"]))]
    pub tags: Vec<String>,
    pub archived: bool,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(format = DateTime)]
    pub updated_at: String,
}

#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
pub enum FeatureFlagKind {
    FeatureFlag,
}

/// A page of feature flags.
#[derive(ToSchema)]
pub struct FeatureFlagList {
    #[schema(inline)]
    pub object: ListKind,
    pub data: Vec<FeatureFlagObject>,
    pub list_metadata: ListMetadata,
}

/// A flag's rule in one environment. The answer's `ETag` header is its
/// version, to send back as `If-Match`.
#[derive(ToSchema)]
pub struct RuleObject {
    #[schema(inline)]
    pub object: RuleKind,
    /// The flag's slug.
    #[schema(example = "new-checkout")]
    pub flag: String,
    /// The environment's slug.
    #[schema(example = "production")]
    pub environment: String,
    pub mode: RuleMode,
    /// Off means nobody gets the flag in this environment, whatever the mode.
    pub enabled: bool,
    /// Goes up by one with every change; the `ETag` is this number in quotes.
    pub version: i32,
    /// Organizations first, then users, each in the order they were added.
    pub targets: Vec<TargetObject>,
    #[schema(format = DateTime)]
    pub updated_at: String,
    /// Who changed the rule last: a dashboard user's email or `api key NAME (PREFIX)`.
    #[schema(required = true)]
    pub updated_by: Option<String>,
}

#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
pub enum RuleKind {
    FeatureFlagRule,
}

/// Who gets the flag: `none`, `some` (the targets: the users, and every
/// member of the organizations) or `all`.
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
pub enum RuleMode {
    None,
    Some,
    All,
}

/// A target of a rule.
#[derive(ToSchema)]
pub struct TargetObject {
    #[schema(rename = "type")]
    pub kind: TargetType,
    /// The Flagpole id (`user_…` or `org_…`).
    pub id: String,
    /// The user's email or the organization's name.
    pub name: String,
}

#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
pub enum TargetType {
    User,
    Organization,
}

pub fn flag_json(flag: &Flag, tags: &[String]) -> Value {
    json!({
        "object": "feature_flag",
        "id": flag.id,
        "slug": flag.slug,
        "name": flag.name,
        "description": flag.description,
        "tags": tags,
        "archived": flag.archived,
        "created_at": flag.created_at,
        "updated_at": flag.updated_at,
    })
}

fn flag_not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "flag_not_found",
        "No feature flag has this slug.",
    )
}

fn load_flag(conn: &mut DbConn, slug: &str) -> Result<Flag, AppError> {
    flags::by_slug(conn, slug).map_err(AppError::from)
}

/// Maps "no such flag" to its own code; other errors pass through.
fn for_flag(err: AppError) -> ApiError {
    match err {
        AppError::NotFound => flag_not_found(),
        other => other.into(),
    }
}

#[derive(Deserialize)]
struct ListParams {
    q: Option<String>,
    tag: Option<String>,
    archived: Option<String>,
    #[serde(flatten)]
    page: ListQuery,
}

impl IntoParams for ListParams {
    fn into_params(in_provider: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        let text = || ObjectBuilder::new().schema_type(Type::String);
        let mut params = vec![
            query_param(
                "q",
                "Words to find in the slug, name or description.",
                text(),
            ),
            query_param("tag", "Only the flags with this tag.", text()),
            query_param(
                "archived",
                "`true` lists the archived flags instead of the others.",
                ObjectBuilder::new()
                    .schema_type(Type::Boolean)
                    .default(Some(json!(false))),
            ),
        ];
        params.extend(ListQuery::into_params(in_provider));
        params
    }
}

/// Lists feature flags, newest first, with cursor pagination.
#[utoipa::path(
    operation_id = "list_feature_flags",
    get,
    path = "/api/v1/feature-flags",
    tag = "Feature flags",
    security(("api_key" = [])),
    params(ListParams),
    responses(
        (status = 200, description = "A page of flags.", body = FeatureFlagList),
        (status = 401, description = "No key, or an unknown or revoked one.", body = ErrorBody),
        (status = 422, description = "A query parameter is invalid; `field` names it.", body = ErrorBody),
    )
)]
async fn list(
    state: web::Data<AppState>,
    _auth: ApiAuth,
    query: web::Query<ListParams>,
) -> Result<HttpResponse, ApiError> {
    let params = query.into_inner();
    let cursor = params.page.cursor()?;
    let archived = match params.archived.as_deref() {
        None | Some("") | Some("false") => false,
        Some("true") => true,
        Some(_) => return Err(ApiError::invalid("archived", "archived is true or false.")),
    };
    let q = params.q.unwrap_or_default();
    let tag = params.tag.filter(|t| !t.is_empty());
    let (page, tags) = state
        .db(move |conn| {
            use diesel::prelude::*;
            let page = paginate!(
                flags::matching(&q, tag.as_deref(), archived),
                flags_table::id,
                &cursor,
                conn,
                Flag,
                |f: &Flag| f.id.clone()
            );
            let ids: Vec<&str> = page.data.iter().map(|f| f.id.as_str()).collect();
            let tags = flags::tags_by_flag(conn, &ids)?;
            Ok((page, tags))
        })
        .await?;
    Ok(HttpResponse::Ok().json(envelope(&page, |f| {
        flag_json(f, tags.get(&f.id).map_or(&[][..], Vec::as_slice))
    })))
}

/// Tags as the API sends them: a list of strings.
fn tags_text(tags: &Option<Vec<String>>) -> String {
    tags.as_ref().map(|t| t.join(",")).unwrap_or_default()
}

/// A new feature flag: `name` and `slug` are required.
#[derive(Deserialize, ToSchema)]
#[schema(as = CreateFeatureFlag)]
struct CreateBody {
    #[schema(value_type = String, required = true, example = "New checkout")]
    name: Option<String>,
    /// Lowercase letters, digits and dashes; unique; it never changes.
    #[schema(value_type = String, required = true, example = "new-checkout")]
    slug: Option<String>,
    description: Option<String>,
    /// Tags, none of which contains a comma.
    #[schema(example = json!(["growth"]))]
    tags: Option<Vec<String>>,
}

/// Creates a feature flag, off in every environment.
#[utoipa::path(
    operation_id = "create_feature_flag",
    post,
    path = "/api/v1/feature-flags",
    tag = "Feature flags",
    security(("api_key" = [])),
    responses(
        (status = 201, description = "The new flag.", body = FeatureFlagObject),
        (status = 400, description = "The body is not valid JSON.", body = ErrorBody),
        (status = 401, description = "No key, or an unknown or revoked one.", body = ErrorBody),
        (status = 409, description = "Another flag has this slug (`duplicate`).", body = ErrorBody),
        (status = 415, description = "The body is not sent as application/json.", body = ErrorBody),
        (status = 422, description = "A field is missing or invalid; `field` names it.", body = ErrorBody),
    )
)]
async fn create(
    state: web::Data<AppState>,
    auth: ApiAuth,
    body: web::Json<CreateBody>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    if body
        .tags
        .as_ref()
        .is_some_and(|t| t.iter().any(|tag| tag.contains(',')))
    {
        return Err(ApiError::invalid("tags", "A tag cannot contain a comma."));
    }
    let input = FlagInput {
        name: body.name.unwrap_or_default(),
        slug: body.slug.unwrap_or_default(),
        description: body.description.unwrap_or_default(),
        tags: tags_text(&body.tags),
    };
    let actor = auth.actor();
    let (flag, tags) = state
        .db(move |conn| {
            let flag = flags::create(conn, &actor, &input)?;
            let tags = flags::tags_of(conn, &flag.id)?;
            Ok((flag, tags))
        })
        .await?;
    Ok(HttpResponse::Created().json(flag_json(&flag, &tags)))
}

/// Reads a feature flag.
#[utoipa::path(
    operation_id = "get_feature_flag",
    get,
    path = "/api/v1/feature-flags/{slug}",
    tag = "Feature flags",
    security(("api_key" = [])),
    params(("slug" = String, Path, description = "The flag's slug.")),
    responses(
        (status = 200, description = "The flag.", body = FeatureFlagObject),
        (status = 401, description = "No key, or an unknown or revoked one.", body = ErrorBody),
        (status = 404, description = "No flag has this slug (`flag_not_found`).", body = ErrorBody),
    )
)]
async fn get(
    state: web::Data<AppState>,
    _auth: ApiAuth,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let slug = path.into_inner();
    let (flag, tags) = state
        .db(move |conn| {
            let flag = load_flag(conn, &slug)?;
            let tags = flags::tags_of(conn, &flag.id)?;
            Ok((flag, tags))
        })
        .await
        .map_err(for_flag)?;
    Ok(HttpResponse::Ok().json(flag_json(&flag, &tags)))
}

/// The fields to change; the others keep their value. `tags` replaces the
/// whole list.
#[derive(Deserialize, ToSchema)]
#[schema(as = UpdateFeatureFlag)]
struct UpdateBody {
    name: Option<String>,
    description: Option<String>,
    tags: Option<Vec<String>>,
    /// Accepted only when equal to the current slug: a slug never changes.
    slug: Option<String>,
}

/// Changes a feature flag's name, description or tags.
#[utoipa::path(
    operation_id = "update_feature_flag",
    patch,
    path = "/api/v1/feature-flags/{slug}",
    tag = "Feature flags",
    security(("api_key" = [])),
    params(("slug" = String, Path, description = "The flag's slug.")),
    responses(
        (status = 200, description = "The flag as changed.", body = FeatureFlagObject),
        (status = 400, description = "The body is not valid JSON.", body = ErrorBody),
        (status = 401, description = "No key, or an unknown or revoked one.", body = ErrorBody),
        (status = 404, description = "No flag has this slug (`flag_not_found`).", body = ErrorBody),
        (status = 415, description = "The body is not sent as application/json.", body = ErrorBody),
        (status = 422, description = "A field is invalid, or the body tries to change the slug.", body = ErrorBody),
    )
)]
async fn update(
    state: web::Data<AppState>,
    auth: ApiAuth,
    path: web::Path<String>,
    body: web::Json<UpdateBody>,
) -> Result<HttpResponse, ApiError> {
    let slug = path.into_inner();
    let body = body.into_inner();
    if body.slug.as_ref().is_some_and(|s| *s != slug) {
        return Err(ApiError::invalid(
            "slug",
            "A flag's slug cannot change: applications depend on it.",
        ));
    }
    let actor = auth.actor();
    let (flag, tags) = state
        .db(move |conn| {
            let flag = load_flag(conn, &slug)?;
            let current_tags = flags::tags_of(conn, &flag.id)?;
            let input = FlagInput {
                name: body.name.unwrap_or(flag.name.clone()),
                slug: flag.slug.clone(),
                description: body.description.unwrap_or(flag.description.clone()),
                tags: match &body.tags {
                    Some(_) => tags_text(&body.tags),
                    None => current_tags.join(","),
                },
            };
            let flag = flags::update(conn, &actor, &flag.id, &input)?;
            let tags = flags::tags_of(conn, &flag.id)?;
            Ok((flag, tags))
        })
        .await
        .map_err(for_flag)?;
    Ok(HttpResponse::Ok().json(flag_json(&flag, &tags)))
}

/// Deletes an archived feature flag for good.
///
/// Its rules and targets in every environment go with it. A flag that is
/// not archived is refused: archive it first.
#[utoipa::path(
    operation_id = "delete_feature_flag",
    delete,
    path = "/api/v1/feature-flags/{slug}",
    tag = "Feature flags",
    security(("api_key" = [])),
    params(("slug" = String, Path, description = "The flag's slug.")),
    responses(
        (status = 204, description = "Deleted."),
        (status = 401, description = "No key, or an unknown or revoked one.", body = ErrorBody),
        (status = 404, description = "No flag has this slug (`flag_not_found`).", body = ErrorBody),
        (status = 409, description = "The flag is not archived (`flag_not_archived`): archive it first.", body = ErrorBody),
    )
)]
async fn delete(
    state: web::Data<AppState>,
    auth: ApiAuth,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let slug = path.into_inner();
    let actor = auth.actor();
    let deleted = state
        .db(move |conn| {
            let flag = load_flag(conn, &slug)?;
            if !flag.archived {
                return Ok(false);
            }
            flags::delete(conn, &actor, &flag.id)?;
            Ok(true)
        })
        .await
        .map_err(for_flag)?;
    if !deleted {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "flag_not_archived",
            "Only an archived flag can be deleted. Archive it first (POST …/archive): it is then off everywhere.",
        ));
    }
    Ok(HttpResponse::NoContent().finish())
}

async fn set_archived(
    state: web::Data<AppState>,
    auth: ApiAuth,
    slug: String,
    archived: bool,
) -> Result<HttpResponse, ApiError> {
    let actor = auth.actor();
    let (flag, tags) = state
        .db(move |conn| {
            let flag = load_flag(conn, &slug)?;
            let flag = flags::set_archived(conn, &actor, &flag.id, archived)?;
            let tags = flags::tags_of(conn, &flag.id)?;
            Ok((flag, tags))
        })
        .await
        .map_err(for_flag)?;
    Ok(HttpResponse::Ok().json(flag_json(&flag, &tags)))
}

/// Archives a feature flag: it is off everywhere and hidden from the lists.
#[utoipa::path(
    operation_id = "archive_feature_flag",
    post,
    path = "/api/v1/feature-flags/{slug}/archive",
    tag = "Feature flags",
    security(("api_key" = [])),
    params(("slug" = String, Path, description = "The flag's slug.")),
    responses(
        (status = 200, description = "The archived flag.", body = FeatureFlagObject),
        (status = 401, description = "No key, or an unknown or revoked one.", body = ErrorBody),
        (status = 404, description = "No flag has this slug (`flag_not_found`).", body = ErrorBody),
    )
)]
async fn archive(
    state: web::Data<AppState>,
    auth: ApiAuth,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    set_archived(state, auth, path.into_inner(), true).await
}

/// Brings an archived feature flag back.
#[utoipa::path(
    operation_id = "unarchive_feature_flag",
    post,
    path = "/api/v1/feature-flags/{slug}/unarchive",
    tag = "Feature flags",
    security(("api_key" = [])),
    params(("slug" = String, Path, description = "The flag's slug.")),
    responses(
        (status = 200, description = "The flag, no longer archived.", body = FeatureFlagObject),
        (status = 401, description = "No key, or an unknown or revoked one.", body = ErrorBody),
        (status = 404, description = "No flag has this slug (`flag_not_found`).", body = ErrorBody),
    )
)]
async fn unarchive(
    state: web::Data<AppState>,
    auth: ApiAuth,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    set_archived(state, auth, path.into_inner(), false).await
}

/// The environment named in the path, which must be the key's own: a
/// Staging key never changes Production.
fn rule_environment(auth: &ApiAuth, slug: &str) -> Result<Environment, ApiError> {
    if auth.environment.slug == slug {
        return Ok(auth.environment.clone());
    }
    Err(ApiError::new(
        StatusCode::FORBIDDEN,
        "wrong_environment",
        format!(
            "This key belongs to the environment {:?}. Use a key of {slug:?} to read or change its rules.",
            auth.environment.slug
        ),
    ))
}

fn etag(rule: &Rule) -> String {
    format!("\"{}\"", rule.version)
}

/// The version an `If-Match` header names, if any.
fn if_match(req: &HttpRequest) -> Result<Option<i32>, ApiError> {
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
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_if_match",
                "If-Match takes the ETag of the rule, as GET returned it.",
            )
        })
}

fn stale() -> ApiError {
    ApiError::new(
        StatusCode::PRECONDITION_FAILED,
        "stale",
        "The rule changed since you read it (its ETag differs). Nothing was changed: read it again and retry.",
    )
}

fn target_json(t: &TargetView) -> Value {
    json!({"type": t.kind, "id": t.id, "name": t.label})
}

/// A rule as JSON with its ETag.
fn rule_response(
    status: StatusCode,
    flag: &Flag,
    env: &Environment,
    rule: &Rule,
    targets: &[TargetView],
) -> HttpResponse {
    HttpResponse::build(status)
        .insert_header((header::ETAG, etag(rule)))
        .json(json!({
            "object": "feature_flag_rule",
            "flag": flag.slug,
            "environment": env.slug,
            "mode": rule.mode,
            "enabled": rule.enabled,
            "version": rule.version,
            "targets": targets.iter().map(target_json).collect::<Vec<_>>(),
            "updated_at": rule.updated_at,
            "updated_by": rule.updated_by,
        }))
}

/// Every target of a rule, organizations first, as the editor lists them.
fn all_target_ids(conn: &mut DbConn, flag_id: &str, env_id: &str) -> Result<Vec<String>, AppError> {
    use diesel::prelude::*;
    Ok(targets::table
        .filter(targets::flag_id.eq(flag_id))
        .filter(targets::environment_id.eq(env_id))
        .order((targets::target_type.asc(), targets::created_at.asc()))
        .select(targets::target_id)
        .load(conn)?)
}

/// Reads a rule after a change and answers with it.
fn rule_state(
    conn: &mut DbConn,
    flag: &Flag,
    env: &Environment,
) -> Result<(Rule, Vec<TargetView>), AppError> {
    let rule = flags::rule(conn, &flag.id, &env.id)?;
    let ids = all_target_ids(conn, &flag.id, &env.id)?;
    Ok((rule, flags::describe_targets(conn, &ids)?))
}

/// Reads a flag's rule in an environment, with its `ETag`.
///
/// The key must be one of that environment.
#[utoipa::path(
    operation_id = "get_rule",
    get,
    path = "/api/v1/feature-flags/{slug}/environments/{env}",
    tag = "Rules",
    security(("api_key" = [])),
    params(
        ("slug" = String, Path, description = "The flag's slug."),
        ("env" = String, Path, description = "The environment's slug, e.g. `production`: the key's own."),
    ),
    responses(
        (status = 200, description = "The rule.", body = RuleObject,
            headers(("ETag" = String, description = "The rule's version, for `If-Match`."))),
        (status = 401, description = "No key, or an unknown or revoked one.", body = ErrorBody),
        (status = 403, description = "The key belongs to another environment (`wrong_environment`).", body = ErrorBody),
        (status = 404, description = "No flag has this slug (`flag_not_found`).", body = ErrorBody),
    )
)]
async fn get_rule(
    state: web::Data<AppState>,
    auth: ApiAuth,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (slug, env_slug) = path.into_inner();
    let env = rule_environment(&auth, &env_slug)?;
    let e = env.clone();
    let (flag, rule, targets) = state
        .db(move |conn| {
            let flag = load_flag(conn, &slug)?;
            let (rule, targets) = rule_state(conn, &flag, &e)?;
            Ok((flag, rule, targets))
        })
        .await
        .map_err(for_flag)?;
    Ok(rule_response(StatusCode::OK, &flag, &env, &rule, &targets))
}

/// A target as the API names it: `{"type": "user"|"organization", "id": …}`,
/// where the id is a Flagpole id or an external id.
#[derive(Deserialize, ToSchema)]
#[schema(as = TargetReference)]
struct TargetRef {
    /// Needed when `id` is an external id; a Flagpole id (`user_…`,
    /// `org_…`) says it itself.
    #[serde(rename = "type")]
    #[schema(value_type = Option<TargetType>)]
    kind: Option<String>,
    /// A Flagpole id or an external id.
    #[schema(value_type = String, required = true, example = "acme")]
    id: Option<String>,
}

/// Resolves a target reference to a Flagpole id.
fn resolve_target(
    conn: &mut DbConn,
    target: &TargetRef,
    field: &str,
) -> Result<Result<String, ApiError>, AppError> {
    let Some(id) = target
        .id
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
    else {
        return Ok(Err(ApiError::invalid(field, "Each target needs an id.")));
    };
    let kind = match target.kind.as_deref() {
        Some("user") => TargetKind::User,
        Some("organization") => TargetKind::Organization,
        None => match TargetKind::of_id(id) {
            Some(kind) => kind,
            None => {
                return Ok(Err(ApiError::invalid(
                    field,
                    "Say whether the target is a \"user\" or an \"organization\" when giving an external id.",
                )))
            }
        },
        Some(_) => return Ok(Err(ApiError::invalid(field, "A target's type is \"user\" or \"organization\"."))),
    };
    let found = match kind {
        TargetKind::User => directory::find_user_by_id_or_external(conn, id)?.map(|u| u.id),
        TargetKind::Organization => directory::find_org(conn, id)?.map(|o| o.id),
    };
    Ok(found.ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            if kind == TargetKind::User {
                "user_not_found"
            } else {
                "organization_not_found"
            },
            format!("No {} has the id or external id {id:?}.", kind.as_str()),
        )
    }))
}

/// A whole rule: the mode, and optionally the complete target list (targets
/// not in it are removed; without it the targets stay).
#[derive(Deserialize, ToSchema)]
#[schema(as = PutRule)]
struct PutRuleBody {
    #[schema(value_type = RuleMode)]
    mode: Option<String>,
    /// At most 10,000.
    targets: Option<Vec<TargetRef>>,
}

/// A rule as a change left it.
type RuleOutcome = (Flag, Rule, Vec<TargetView>);

/// Runs a rule change in the database, turning a stale version into 412,
/// and answers with the rule as it is now.
async fn change_rule<F>(
    state: &web::Data<AppState>,
    env: Environment,
    change: F,
) -> Result<HttpResponse, ApiError>
where
    F: FnOnce(&mut DbConn) -> Result<Result<RuleOutcome, ApiError>, AppError> + Send + 'static,
{
    match state.db(change).await {
        Ok(Ok((flag, rule, targets))) => {
            Ok(rule_response(StatusCode::OK, &flag, &env, &rule, &targets))
        }
        Ok(Err(e)) => Err(e),
        Err(AppError::Stale(_)) => Err(stale()),
        Err(other) => Err(for_flag(other)),
    }
}

/// Sets a flag's rule (mode and targets) in an environment.
///
/// With `If-Match`, a rule that changed since is left alone and the answer is
/// 412.
#[utoipa::path(
    operation_id = "put_rule",
    put,
    path = "/api/v1/feature-flags/{slug}/environments/{env}",
    tag = "Rules",
    security(("api_key" = [])),
    params(
        ("slug" = String, Path, description = "The flag's slug."),
        ("env" = String, Path, description = "The environment's slug: the key's own."),
        ("If-Match" = Option<String>, Header, description = "The `ETag` the rule had when read."),
    ),
    responses(
        (status = 200, description = "The rule as saved.", body = RuleObject,
            headers(("ETag" = String, description = "The rule's new version."))),
        (status = 400, description = "The body is not valid JSON, or `If-Match` is not an ETag.", body = ErrorBody),
        (status = 401, description = "No key, or an unknown or revoked one.", body = ErrorBody),
        (status = 403, description = "The key belongs to another environment (`wrong_environment`).", body = ErrorBody),
        (status = 404, description = "No such flag, user or organization (`flag_not_found`, `user_not_found`, `organization_not_found`).", body = ErrorBody),
        (status = 412, description = "The rule changed since it was read (`stale`); nothing was changed.", body = ErrorBody),
        (status = 413, description = "More than 10,000 targets, or a body over 1 MiB.", body = ErrorBody),
        (status = 415, description = "The body is not sent as application/json.", body = ErrorBody),
        (status = 422, description = "A field is invalid; `field` names it (e.g. `mode`, `targets[2]`).", body = ErrorBody),
    )
)]
async fn put_rule(
    state: web::Data<AppState>,
    auth: ApiAuth,
    req: HttpRequest,
    path: web::Path<(String, String)>,
    body: web::Json<PutRuleBody>,
) -> Result<HttpResponse, ApiError> {
    let (slug, env_slug) = path.into_inner();
    let env = rule_environment(&auth, &env_slug)?;
    let expected = if_match(&req)?;
    let body = body.into_inner();
    let mode = body
        .mode
        .as_deref()
        .and_then(Mode::parse)
        .ok_or_else(|| ApiError::invalid("mode", "mode is \"none\", \"some\" or \"all\"."))?;
    if body.targets.as_ref().is_some_and(|t| t.len() > 10_000) {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            "A rule takes at most 10,000 targets in one request.",
        ));
    }
    let actor = auth.actor();
    change_rule(&state, env.clone(), move |conn| {
        let flag = load_flag(conn, &slug)?;
        let current = flags::rule(conn, &flag.id, &env.id)?;
        if expected.is_some_and(|v| v != current.version) {
            return Err(AppError::Stale(String::new()));
        }
        let (add, remove) = match &body.targets {
            None => (Vec::new(), Vec::new()),
            Some(list) => {
                let mut wanted = Vec::with_capacity(list.len());
                for (i, t) in list.iter().enumerate() {
                    match resolve_target(conn, t, &format!("targets[{i}]"))? {
                        Ok(id) => wanted.push(id),
                        Err(e) => return Ok(Err(e)),
                    }
                }
                let existing = all_target_ids(conn, &flag.id, &env.id)?;
                let add = wanted
                    .iter()
                    .filter(|id| !existing.contains(id))
                    .cloned()
                    .collect();
                let remove = existing
                    .into_iter()
                    .filter(|id| !wanted.contains(id))
                    .collect();
                (add, remove)
            }
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
                expected_version: expected.unwrap_or(current.version),
            },
        )?;
        let (rule, targets) = rule_state(conn, &flag, &env)?;
        Ok(Ok((flag, rule, targets)))
    })
    .await
}

async fn set_enabled(
    state: web::Data<AppState>,
    auth: ApiAuth,
    req: HttpRequest,
    path: web::Path<(String, String)>,
    enabled: bool,
) -> Result<HttpResponse, ApiError> {
    let (slug, env_slug) = path.into_inner();
    let env = rule_environment(&auth, &env_slug)?;
    let expected = if_match(&req)?;
    let actor = auth.actor();
    change_rule(&state, env.clone(), move |conn| {
        let flag = load_flag(conn, &slug)?;
        flags::set_enabled(conn, &actor, &flag, &env, enabled, expected)?;
        let (rule, targets) = rule_state(conn, &flag, &env)?;
        Ok(Ok((flag, rule, targets)))
    })
    .await
}

/// Turns a flag on in an environment (for the targets of its mode).
#[utoipa::path(
    operation_id = "enable_rule",
    post,
    path = "/api/v1/feature-flags/{slug}/environments/{env}/enable",
    tag = "Rules",
    security(("api_key" = [])),
    params(
        ("slug" = String, Path, description = "The flag's slug."),
        ("env" = String, Path, description = "The environment's slug: the key's own."),
        ("If-Match" = Option<String>, Header, description = "The `ETag` the rule had when read."),
    ),
    responses(
        (status = 200, description = "The rule as saved.", body = RuleObject,
            headers(("ETag" = String, description = "The rule's new version."))),
        (status = 400, description = "`If-Match` is not an ETag.", body = ErrorBody),
        (status = 401, description = "No key, or an unknown or revoked one.", body = ErrorBody),
        (status = 403, description = "The key belongs to another environment (`wrong_environment`).", body = ErrorBody),
        (status = 404, description = "No flag has this slug (`flag_not_found`).", body = ErrorBody),
        (status = 412, description = "The rule changed since it was read (`stale`); nothing was changed.", body = ErrorBody),
    )
)]
async fn enable(
    state: web::Data<AppState>,
    auth: ApiAuth,
    req: HttpRequest,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    set_enabled(state, auth, req, path, true).await
}

/// Turns a flag off in an environment, keeping its mode and targets.
#[utoipa::path(
    operation_id = "disable_rule",
    post,
    path = "/api/v1/feature-flags/{slug}/environments/{env}/disable",
    tag = "Rules",
    security(("api_key" = [])),
    params(
        ("slug" = String, Path, description = "The flag's slug."),
        ("env" = String, Path, description = "The environment's slug: the key's own."),
        ("If-Match" = Option<String>, Header, description = "The `ETag` the rule had when read."),
    ),
    responses(
        (status = 200, description = "The rule as saved.", body = RuleObject,
            headers(("ETag" = String, description = "The rule's new version."))),
        (status = 400, description = "`If-Match` is not an ETag.", body = ErrorBody),
        (status = 401, description = "No key, or an unknown or revoked one.", body = ErrorBody),
        (status = 403, description = "The key belongs to another environment (`wrong_environment`).", body = ErrorBody),
        (status = 404, description = "No flag has this slug (`flag_not_found`).", body = ErrorBody),
        (status = 412, description = "The rule changed since it was read (`stale`); nothing was changed.", body = ErrorBody),
    )
)]
async fn disable(
    state: web::Data<AppState>,
    auth: ApiAuth,
    req: HttpRequest,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    set_enabled(state, auth, req, path, false).await
}

/// Adds one target to a flag's rule in an environment.
///
/// A user, or an organization (every member gets the flag). The mode stays.
#[utoipa::path(
    operation_id = "add_target",
    post,
    path = "/api/v1/feature-flags/{slug}/environments/{env}/targets",
    tag = "Rules",
    security(("api_key" = [])),
    params(
        ("slug" = String, Path, description = "The flag's slug."),
        ("env" = String, Path, description = "The environment's slug: the key's own."),
        ("If-Match" = Option<String>, Header, description = "The `ETag` the rule had when read."),
    ),
    responses(
        (status = 200, description = "The rule as saved.", body = RuleObject,
            headers(("ETag" = String, description = "The rule's new version."))),
        (status = 400, description = "The body is not valid JSON, or `If-Match` is not an ETag.", body = ErrorBody),
        (status = 401, description = "No key, or an unknown or revoked one.", body = ErrorBody),
        (status = 403, description = "The key belongs to another environment (`wrong_environment`).", body = ErrorBody),
        (status = 404, description = "No such flag, user or organization.", body = ErrorBody),
        (status = 412, description = "The rule changed since it was read (`stale`); nothing was changed.", body = ErrorBody),
        (status = 415, description = "The body is not sent as application/json.", body = ErrorBody),
        (status = 422, description = "The target has no id or an unknown type.", body = ErrorBody),
    )
)]
async fn add_target(
    state: web::Data<AppState>,
    auth: ApiAuth,
    req: HttpRequest,
    path: web::Path<(String, String)>,
    body: web::Json<TargetRef>,
) -> Result<HttpResponse, ApiError> {
    let (slug, env_slug) = path.into_inner();
    let env = rule_environment(&auth, &env_slug)?;
    let expected = if_match(&req)?;
    let target = body.into_inner();
    let actor = auth.actor();
    change_rule(&state, env.clone(), move |conn| {
        let flag = load_flag(conn, &slug)?;
        let id = match resolve_target(conn, &target, "id")? {
            Ok(id) => id,
            Err(e) => return Ok(Err(e)),
        };
        let current = flags::rule(conn, &flag.id, &env.id)?;
        flags::save_rule(
            conn,
            &actor,
            &flag,
            &env,
            &RuleChange {
                mode: mode_of(&current),
                add: vec![id],
                remove: Vec::new(),
                expected_version: expected.unwrap_or(current.version),
            },
        )?;
        let (rule, targets) = rule_state(conn, &flag, &env)?;
        Ok(Ok((flag, rule, targets)))
    })
    .await
}

/// Removes one target from a rule, keeping its mode.
#[utoipa::path(
    operation_id = "remove_target",
    delete,
    path = "/api/v1/feature-flags/{slug}/environments/{env}/targets/{id}",
    tag = "Rules",
    security(("api_key" = [])),
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
        (status = 401, description = "No key, or an unknown or revoked one.", body = ErrorBody),
        (status = 403, description = "The key belongs to another environment (`wrong_environment`).", body = ErrorBody),
        (status = 404, description = "No such flag, or no current target has this id (`target_not_found`).", body = ErrorBody),
        (status = 412, description = "The rule changed since it was read (`stale`); nothing was changed.", body = ErrorBody),
    )
)]
async fn remove_target(
    state: web::Data<AppState>,
    auth: ApiAuth,
    req: HttpRequest,
    path: web::Path<(String, String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (slug, env_slug, target_key) = path.into_inner();
    let env = rule_environment(&auth, &env_slug)?;
    let expected = if_match(&req)?;
    let actor = auth.actor();
    change_rule(&state, env.clone(), move |conn| {
        let flag = load_flag(conn, &slug)?;
        let existing = all_target_ids(conn, &flag.id, &env.id)?;
        // The path names a Flagpole id or an external id of a current target.
        let id = if existing.contains(&target_key) {
            Some(target_key.clone())
        } else {
            let user = directory::find_user_by_id_or_external(conn, &target_key)?.map(|u| u.id);
            let org = directory::find_org(conn, &target_key)?.map(|o| o.id);
            [user, org]
                .into_iter()
                .flatten()
                .find(|id| existing.contains(id))
        };
        let Some(id) = id else {
            return Ok(Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "target_not_found",
                "No current target of this rule has this id or external id.",
            )));
        };
        let current = flags::rule(conn, &flag.id, &env.id)?;
        flags::save_rule(
            conn,
            &actor,
            &flag,
            &env,
            &RuleChange {
                mode: mode_of(&current),
                add: Vec::new(),
                remove: vec![id],
                expected_version: expected.unwrap_or(current.version),
            },
        )?;
        let (rule, targets) = rule_state(conn, &flag, &env)?;
        Ok(Ok((flag, rule, targets)))
    })
    .await
}

/// The environments a key can see, for error messages and listings.
pub fn environment_slugs(conn: &mut DbConn) -> Result<Vec<String>, AppError> {
    Ok(environments::list(conn)?
        .into_iter()
        .map(|e| e.slug)
        .collect())
}
