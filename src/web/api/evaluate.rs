//! Evaluation without a token: the flags that are on for a user (and an
//! organization), answered from the model by the one decision.

use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::objects::ErrorBody;
use super::{optional, required, API_PREFIX};
use super::{EvaluationKey, PublishableKey};
use crate::environments::Environment;
use crate::error::Result;
use crate::web::json::{push_json_str, Json};
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
    /// A Flagpole organization id or external id.
    #[schema(example = "acme")]
    organization_id: Option<String>,
}

/// The flags that are on for a user (and organization).
#[derive(Serialize, ToSchema)]
pub struct EvaluationResponse<'a> {
    /// The user, as the request named it.
    #[schema(example = "u-1042")]
    pub user_id: String,
    /// The organization, as the request named it, if it named one.
    #[schema(value_type = Option<String>, required = true, example = "acme")]
    pub organization_id: Option<String>,
    /// The slugs of the flags that are on.
    #[schema(value_type = Vec<String>, example = json!(["new-checkout"]))]
    pub feature_flags: Vec<&'a str>,
}

/// Evaluates every flag of the environment for the context the caller
/// states, from the model alone. A user or an organization Flagpole does
/// not know, or an organization the user is not a member of, is evaluated
/// as given: it simply matches no target of its own. Only the token
/// endpoint asks for membership, because a token asserts it.
fn evaluate_for(
    state: &AppState,
    env: &Environment,
    user_id: String,
    organization_id: Option<String>,
) -> HttpResponse {
    let snapshot = state.model();
    let context = snapshot.context(Some(&user_id), organization_id.as_deref());
    let feature_flags = snapshot.model.evaluate(&env.id, &context);
    state.metrics.evaluated(&env.slug, "api");
    HttpResponse::Ok()
        .content_type(mime::APPLICATION_JSON)
        .body(write_evaluation(
            &user_id,
            organization_id.as_deref(),
            &feature_flags,
        ))
}

/// The answer, byte for byte what `serde_json` writes for
/// [`EvaluationResponse`] (a test holds the two equal), written straight
/// into one buffer: its per-field machinery cost more than the evaluation.
fn write_evaluation(user_id: &str, organization_id: Option<&str>, flags: &[&str]) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + flags.iter().map(|s| s.len() + 3).sum::<usize>());
    out.extend_from_slice(br#"{"user_id":"#);
    push_json_str(&mut out, user_id);
    out.extend_from_slice(br#","organization_id":"#);
    match organization_id {
        Some(org) => push_json_str(&mut out, org),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(br#","feature_flags":["#);
    for (i, slug) in flags.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        push_json_str(&mut out, slug);
    }
    out.extend_from_slice(b"]}");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_written_answer_is_what_serde_writes() {
        for (user, org, flags) in [
            ("u-1", Some("o-1"), vec!["a", "b-c"]),
            ("\"quoted\"\n", None, vec![]),
            ("ünïcode", Some("tab\there"), vec!["x"]),
        ] {
            let expected = serde_json::to_vec(&EvaluationResponse {
                user_id: user.to_string(),
                organization_id: org.map(str::to_string),
                feature_flags: flags.clone(),
            })
            .unwrap();
            assert_eq!(
                String::from_utf8(write_evaluation(user, org, &flags)).unwrap(),
                String::from_utf8(expected).unwrap()
            );
        }
    }
}

/// Evaluates every flag of the key's environment for a user, without a token.
///
/// The caller states the context: a user or an organization Flagpole does
/// not know, or an organization the user is not a member of, is evaluated
/// as given and matches no target of its own.
#[utoipa::path(
    operation_id = "evaluate",
    post,
    path = "/api/v1/evaluate",
    tag = "Evaluation",
    security(("api_key" = ["publishable"])),
    request_body = EvaluateBody,
    responses(
        (status = 200, description = "The flags that are on.", body = EvaluationResponse),
        (status = 422, description = "`user_id` is missing, or the body has an unknown field.", body = ErrorBody),
    )
)]
async fn evaluate(
    state: web::Data<AppState>,
    auth: PublishableKey,
    body: Json<EvaluateBody>,
) -> Result<HttpResponse> {
    let body = body.into_inner();
    let user = required(body.user_id, "user_id", "the user's id or external id")?;
    Ok(evaluate_for(
        &state,
        &auth.environment,
        user,
        optional(body.organization_id),
    ))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct FlagsQuery {
    /// A Flagpole organization id or external id.
    organization_id: Option<String>,
}

/// Evaluates every flag of the key's environment for one user.
#[utoipa::path(
    operation_id = "user_feature_flags",
    get,
    path = "/api/v1/users/{id}/feature-flags",
    tag = "Evaluation",
    security(("api_key" = ["evaluation"])),
    params(
        ("id" = String, Path, description = "A Flagpole user id or the user's external id."),
        FlagsQuery,
    ),
    responses(
        (status = 200, description = "The flags that are on.", body = EvaluationResponse),
    )
)]
async fn user_feature_flags(
    state: web::Data<AppState>,
    auth: EvaluationKey,
    path: web::Path<String>,
    query: web::Query<FlagsQuery>,
) -> Result<HttpResponse> {
    let org = optional(query.into_inner().organization_id);
    Ok(evaluate_for(
        &state,
        &auth.environment,
        path.into_inner(),
        org,
    ))
}
