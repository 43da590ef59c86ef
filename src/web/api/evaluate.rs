//! Evaluation without a token: the flags that are on for a user (and an
//! organization), answered from the model by the one decision.

use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::objects::ErrorBody;
use super::{optional, required, ApiAuth, API_PREFIX};
use crate::directory;
use crate::environments::Environment;
use crate::error::Result;
use crate::evaluation::Context;
use crate::ids::{OrgId, UserId};
use crate::web::json::Json;
use crate::web::routes::Routes;
use crate::web::Surface;
use crate::AppState;

pub fn routes(cfg: &mut web::ServiceConfig) {
    Routes::documented(cfg, API_PREFIX, Surface::Api)
        .post("/evaluate", evaluate)
        .get("/users/{id}/feature-flags", user_feature_flags);
}

/// The user (and organization) to evaluate for.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
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
#[derive(Serialize, ToSchema)]
pub struct EvaluationResponse {
    /// The user's Flagpole id.
    #[schema(value_type = String)]
    pub user_id: UserId,
    /// The organization's Flagpole id, if one was given.
    #[schema(value_type = Option<String>, required = true)]
    pub organization_id: Option<OrgId>,
    /// The slugs of the flags that are on.
    #[schema(example = json!(["new-checkout"]))]
    pub feature_flags: Vec<String>,
}

/// Resolves a user (and an organization the user belongs to) and evaluates
/// every flag of the environment for them.
async fn evaluate_for(
    state: &web::Data<AppState>,
    env: &Environment,
    user_key: String,
    org_key: Option<String>,
) -> Result<HttpResponse> {
    let (user, org) = state
        .read(move |conn| directory::resolve_member(conn, &user_key, org_key.as_deref()))
        .await?;
    let context = Context::new(Some(user.id.clone()), org.map(|o| o.id));
    let feature_flags = state.model().evaluate(&env.id, &context);
    Ok(HttpResponse::Ok().json(EvaluationResponse {
        user_id: user.id,
        organization_id: context.organization,
        feature_flags,
    }))
}

/// Evaluates every flag of the key's environment for a user, without a token.
#[utoipa::path(
    operation_id = "evaluate",
    post,
    path = "/api/v1/evaluate",
    tag = "Evaluation",
    security(("api_key" = [])),
    request_body = EvaluateBody,
    responses(
        (status = 200, description = "The flags that are on.", body = EvaluationResponse),
        (status = 403, description = "The user is not a member of the organization (`not_a_member`).", body = ErrorBody),
        (status = 404, description = "No such user or organization.", body = ErrorBody),
        (status = 422, description = "`user_id` is missing, or the body has an unknown field.", body = ErrorBody),
    )
)]
async fn evaluate(
    state: web::Data<AppState>,
    auth: ApiAuth,
    body: Json<EvaluateBody>,
) -> Result<HttpResponse> {
    let body = body.into_inner();
    let user = required(body.user_id, "user_id", "the user's id or external id")?;
    evaluate_for(
        &state,
        &auth.environment,
        user,
        optional(body.organization_id),
    )
    .await
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
        (status = 403, description = "The user is not a member of the organization (`not_a_member`).", body = ErrorBody),
        (status = 404, description = "No such user or organization.", body = ErrorBody),
    )
)]
async fn user_feature_flags(
    state: web::Data<AppState>,
    auth: ApiAuth,
    path: web::Path<String>,
    query: web::Query<FlagsQuery>,
) -> Result<HttpResponse> {
    let org = optional(query.into_inner().organization_id);
    evaluate_for(&state, &auth.environment, path.into_inner(), org).await
}
