//! Managing feature flags with a secret key.

use actix_web::{web, HttpResponse};
use serde::Deserialize;
use serde_json::json;
use utoipa::openapi::path::{Parameter, ParameterIn};
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::{IntoParams, ToSchema};

use super::objects::{ErrorBody, FeatureFlagList, FeatureFlagObject};
use super::paging::{query_param, ListQuery};
use super::{AdminKey, EnvironmentKey};
use super::{ApiAuth, API_PREFIX};
use crate::error::{Error, Result};
use crate::flags::{self, FlagFilter, FlagPatch, NewFlag};
use crate::web::json::Json;
use crate::web::routes::Routes;
use crate::web::Surface;
use crate::AppState;

pub fn routes(cfg: &mut web::ServiceConfig) {
    Routes::documented(cfg, API_PREFIX, Surface::Api)
        .get("/feature-flags", list)
        .post("/feature-flags", create)
        .get("/feature-flags/{slug}", get)
        .patch("/feature-flags/{slug}", update)
        .delete("/feature-flags/{slug}", delete)
        .post("/feature-flags/{slug}/archive", archive)
        .post("/feature-flags/{slug}/unarchive", unarchive);
}

#[derive(Deserialize)]
pub(super) struct ListParams {
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
    security(("api_key" = ["environment"])),
    params(ListParams),
    responses(
        (status = 200, description = "A page of flags.", body = FeatureFlagList),
        (status = 422, description = "A query parameter is invalid; `field` names it.", body = ErrorBody),
    )
)]
async fn list(
    state: web::Data<AppState>,
    _auth: EnvironmentKey,
    query: web::Query<ListParams>,
) -> Result<HttpResponse> {
    let params = query.into_inner();
    let cursor = params.page.cursor()?;
    let archived = match params.archived.as_deref() {
        None | Some("") | Some("false") => false,
        Some("true") => true,
        Some(_) => return Err(Error::invalid("archived", "archived is true or false.")),
    };
    let filter = FlagFilter {
        q: params.q.unwrap_or_default(),
        tag: params.tag.filter(|t| !t.is_empty()),
        archived,
        slugs: None,
    };
    let page = state
        .read(move |conn| flags::list(conn, &filter, &cursor))
        .await?;
    Ok(HttpResponse::Ok().json(FeatureFlagList::from(page)))
}

/// A new feature flag: `name` and `slug` are required.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
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
    security(("api_key" = ["admin"])),
    request_body = CreateBody,
    responses(
        (status = 201, description = "The new flag.", body = FeatureFlagObject),
        (status = 409, description = "Another flag has this slug (`duplicate`).", body = ErrorBody),
        (status = 422, description = "A field is missing, unknown or invalid; `field` names it.", body = ErrorBody),
    )
)]
async fn create(
    state: web::Data<AppState>,
    auth: AdminKey,
    body: Json<CreateBody>,
) -> Result<HttpResponse> {
    let body = body.into_inner();
    let input = NewFlag {
        name: body.name.unwrap_or_default(),
        slug: body.slug.unwrap_or_default(),
        description: body.description.unwrap_or_default(),
        tags: body.tags.unwrap_or_default(),
    };
    let actor = auth.actor();
    let flag = state
        .write(move |conn| {
            let flag = flags::create(conn, &actor, &input)?;
            flags::with_tags(conn, flag)
        })
        .await?;
    Ok(HttpResponse::Created().json(FeatureFlagObject::from(flag)))
}

/// Reads a feature flag.
#[utoipa::path(
    operation_id = "get_feature_flag",
    get,
    path = "/api/v1/feature-flags/{slug}",
    tag = "Feature flags",
    security(("api_key" = ["environment"])),
    params(("slug" = String, Path, description = "The flag's slug.")),
    responses(
        (status = 200, description = "The flag.", body = FeatureFlagObject),
        (status = 404, description = "No flag has this slug (`flag_not_found`).", body = ErrorBody),
    )
)]
async fn get(
    state: web::Data<AppState>,
    _auth: EnvironmentKey,
    path: web::Path<String>,
) -> Result<HttpResponse> {
    let slug = path.into_inner();
    let flag = state
        .read(move |conn| {
            let flag = flags::by_slug(conn, &slug)?;
            flags::with_tags(conn, flag)
        })
        .await?;
    Ok(HttpResponse::Ok().json(FeatureFlagObject::from(flag)))
}

/// The fields to change; the others keep their value. `tags` replaces the
/// whole list.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
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
    security(("api_key" = ["admin"])),
    params(("slug" = String, Path, description = "The flag's slug.")),
    request_body = UpdateBody,
    responses(
        (status = 200, description = "The flag as changed.", body = FeatureFlagObject),
        (status = 404, description = "No flag has this slug (`flag_not_found`).", body = ErrorBody),
        (status = 422, description = "A field is unknown or invalid, or the body tries to change the slug; `field` names it.", body = ErrorBody),
    )
)]
async fn update(
    state: web::Data<AppState>,
    auth: AdminKey,
    path: web::Path<String>,
    body: Json<UpdateBody>,
) -> Result<HttpResponse> {
    let slug = path.into_inner();
    let body = body.into_inner();
    if body.slug.as_ref().is_some_and(|s| *s != slug) {
        return Err(Error::invalid(
            "slug",
            "A flag's slug cannot change: applications depend on it.",
        ));
    }
    let patch = FlagPatch {
        name: body.name,
        description: body.description,
        tags: body.tags,
    };
    let actor = auth.actor();
    let flag = state
        .write(move |conn| {
            let flag = flags::by_slug(conn, &slug)?;
            let flag = flags::update(conn, &actor, &flag.id, &patch)?;
            flags::with_tags(conn, flag)
        })
        .await?;
    Ok(HttpResponse::Ok().json(FeatureFlagObject::from(flag)))
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
    security(("api_key" = ["admin"])),
    params(("slug" = String, Path, description = "The flag's slug.")),
    responses(
        (status = 204, description = "Deleted."),
        (status = 404, description = "No flag has this slug (`flag_not_found`).", body = ErrorBody),
        (status = 409, description = "The flag is not archived (`flag_not_archived`): archive it first.", body = ErrorBody),
    )
)]
async fn delete(
    state: web::Data<AppState>,
    auth: AdminKey,
    path: web::Path<String>,
) -> Result<HttpResponse> {
    let slug = path.into_inner();
    let actor = auth.actor();
    state
        .write(move |conn| {
            let flag = flags::by_slug(conn, &slug)?;
            flags::delete(conn, &actor, &flag.id)
        })
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

async fn set_archived(
    state: web::Data<AppState>,
    auth: ApiAuth,
    slug: String,
    archived: bool,
) -> Result<HttpResponse> {
    let actor = auth.actor();
    let flag = state
        .write(move |conn| {
            let flag = flags::by_slug(conn, &slug)?;
            let flag = flags::set_archived(conn, &actor, &flag.id, archived)?;
            flags::with_tags(conn, flag)
        })
        .await?;
    Ok(HttpResponse::Ok().json(FeatureFlagObject::from(flag)))
}

/// Archives a feature flag: it is off everywhere and hidden from the lists.
#[utoipa::path(
    operation_id = "archive_feature_flag",
    post,
    path = "/api/v1/feature-flags/{slug}/archive",
    tag = "Feature flags",
    security(("api_key" = ["admin"])),
    params(("slug" = String, Path, description = "The flag's slug.")),
    responses(
        (status = 200, description = "The archived flag.", body = FeatureFlagObject),
        (status = 404, description = "No flag has this slug (`flag_not_found`).", body = ErrorBody),
    )
)]
async fn archive(
    state: web::Data<AppState>,
    auth: AdminKey,
    path: web::Path<String>,
) -> Result<HttpResponse> {
    set_archived(state, auth.into_inner(), path.into_inner(), true).await
}

/// Brings an archived feature flag back.
#[utoipa::path(
    operation_id = "unarchive_feature_flag",
    post,
    path = "/api/v1/feature-flags/{slug}/unarchive",
    tag = "Feature flags",
    security(("api_key" = ["admin"])),
    params(("slug" = String, Path, description = "The flag's slug.")),
    responses(
        (status = 200, description = "The flag, no longer archived.", body = FeatureFlagObject),
        (status = 404, description = "No flag has this slug (`flag_not_found`).", body = ErrorBody),
    )
)]
async fn unarchive(
    state: web::Data<AppState>,
    auth: AdminKey,
    path: web::Path<String>,
) -> Result<HttpResponse> {
    set_archived(state, auth.into_inner(), path.into_inner(), false).await
}
