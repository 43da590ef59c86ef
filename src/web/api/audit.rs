//! The audit trail through the API: newest first, cursor paged, filtered by
//! flag, environment, actor and time.

use std::collections::HashMap;

use actix_web::{web, HttpResponse};
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Deserialize;
use serde_json::{json, Value};
use utoipa::openapi::path::{Parameter, ParameterIn};
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::{IntoParams, ToSchema};

use super::paging::{envelope, query_param, ListKind, ListMetadata, ListQuery};
use super::{ApiAuth, ApiError, ApiRoutes, ErrorBody, API_PREFIX};
use crate::audit::{self, AuditFilter, TimeRange};
use crate::db::schema::{audit_events, flags as flags_table};
use crate::error::AppError;
use crate::models::AuditEvent;
use crate::{environments, flags, paginate, AppState};

pub fn routes(cfg: &mut web::ServiceConfig) {
    ApiRoutes::new(cfg, API_PREFIX).get("/audit-events", list);
}

/// One change: who did what to which object, where, from what to what.
#[derive(ToSchema)]
pub struct AuditEventObject {
    #[schema(inline)]
    pub object: AuditEventKind,
    #[schema(example = "audit_01JD6Z8X4G7Q2M3N5P6R7S8T9V")]
    pub id: String,
    /// A dashboard user's email, `api key NAME (PREFIX)`, or `system`.
    #[schema(example = "api key deploy (sk_3f2a)")]
    pub actor: String,
    #[schema(example = "rule.enabled")]
    pub action: String,
    #[schema(example = "flag")]
    pub object_type: String,
    pub object_id: String,
    /// The object's name, slug or email when the change was made.
    pub object_label: String,
    /// The slug of the flag concerned, if any.
    #[schema(required = true, example = "new-checkout")]
    pub flag: Option<String>,
    /// The slug of the environment concerned, if any.
    #[schema(required = true, example = "production")]
    pub environment: Option<String>,
    /// The object's state before the change (null when it was created).
    #[schema(required = true)]
    pub before: Option<Value>,
    /// The object's state after the change (null when it was deleted).
    #[schema(required = true)]
    pub after: Option<Value>,
    #[schema(format = DateTime)]
    pub created_at: String,
}

#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
pub enum AuditEventKind {
    AuditEvent,
}

/// A page of audit events.
#[derive(ToSchema)]
pub struct AuditEventList {
    #[schema(inline)]
    pub object: ListKind,
    pub data: Vec<AuditEventObject>,
    pub list_metadata: ListMetadata,
}

#[derive(Deserialize)]
struct AuditParams {
    flag: Option<String>,
    environment: Option<String>,
    actor: Option<String>,
    since: Option<String>,
    until: Option<String>,
    #[serde(flatten)]
    page: ListQuery,
}

impl IntoParams for AuditParams {
    fn into_params(in_provider: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        let text = || ObjectBuilder::new().schema_type(Type::String);
        let time = || {
            text().format(Some(utoipa::openapi::SchemaFormat::KnownFormat(
                utoipa::openapi::KnownFormat::DateTime,
            )))
        };
        let mut params = vec![
            query_param(
                "flag",
                "Only the changes of the flag with this slug.",
                text(),
            ),
            query_param(
                "environment",
                "Only the changes in the environment with this slug.",
                text(),
            ),
            query_param(
                "actor",
                "Only the changes by this actor, exactly as events name it.",
                text(),
            ),
            query_param(
                "since",
                "Only the changes at or after this RFC 3339 time.",
                time(),
            ),
            query_param(
                "until",
                "Only the changes before this RFC 3339 time.",
                time(),
            ),
        ];
        params.extend(ListQuery::into_params(in_provider));
        params
    }
}

fn non_empty(value: Option<String>) -> Option<String> {
    value
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

/// An RFC 3339 time as the audit trail stores it (UTC, microseconds), so
/// text comparison orders it. A `+` in a query string arrives as a space;
/// it is put back.
fn instant(field: &str, value: Option<String>) -> Result<Option<String>, ApiError> {
    let Some(text) = non_empty(value) else {
        return Ok(None);
    };
    DateTime::parse_from_rfc3339(&text)
        .or_else(|e| DateTime::parse_from_rfc3339(&text.replace(' ', "+")).map_err(|_| e))
        .map(|t| {
            Some(
                t.with_timezone(&Utc)
                    .to_rfc3339_opts(SecondsFormat::Micros, true),
            )
        })
        .map_err(|_| {
            ApiError::invalid(
                field,
                format!("{field} is an RFC 3339 time such as 2026-01-31T09:00:00Z."),
            )
        })
}

/// A stored before/after state as JSON (null when absent).
fn state_json(text: &Option<String>) -> Value {
    text.as_deref()
        .map(|s| serde_json::from_str(s).unwrap_or_else(|_| Value::String(s.to_string())))
        .unwrap_or(Value::Null)
}

fn event_json(
    e: &AuditEvent,
    flag_slugs: &HashMap<String, String>,
    env_slugs: &HashMap<String, String>,
) -> Value {
    let slug = |id: &Option<String>, slugs: &HashMap<String, String>| {
        id.as_ref().and_then(|id| slugs.get(id)).cloned()
    };
    json!({
        "object": "audit_event",
        "id": e.id,
        "actor": e.actor,
        "action": e.action,
        "object_type": e.object_type,
        "object_id": e.object_id,
        "object_label": e.object_label,
        "flag": slug(&e.flag_id, flag_slugs),
        "environment": slug(&e.environment_id, env_slugs),
        "before": state_json(&e.before_state),
        "after": state_json(&e.after_state),
        "created_at": e.created_at,
    })
}

/// Lists audit events, newest first, with cursor pagination and filters.
#[utoipa::path(
    operation_id = "list_audit_events",
    get,
    path = "/api/v1/audit-events",
    tag = "Audit log",
    security(("api_key" = [])),
    params(AuditParams),
    responses(
        (status = 200, description = "A page of audit events.", body = AuditEventList),
        (status = 401, description = "No key, or an unknown or revoked one.", body = ErrorBody),
        (status = 422, description = "A query parameter is invalid (e.g. an unknown flag or environment, or a time that is not RFC 3339); `field` names it.", body = ErrorBody),
    )
)]
async fn list(
    state: web::Data<AppState>,
    _auth: ApiAuth,
    query: web::Query<AuditParams>,
) -> Result<HttpResponse, ApiError> {
    let params = query.into_inner();
    let cursor = params.page.cursor()?;
    let range = TimeRange {
        since: instant("since", params.since)?,
        until: instant("until", params.until)?,
    };
    if let (Some(since), Some(until)) = (&range.since, &range.until) {
        if until < since {
            return Err(ApiError::invalid("until", "until is before since."));
        }
    }
    let (flag_slug, env_slug) = (non_empty(params.flag), non_empty(params.environment));
    let actor = non_empty(params.actor);
    let outcome = state
        .db(move |conn| {
            use diesel::prelude::*;
            let envs = environments::list(conn)?;
            let mut filter = AuditFilter {
                actor,
                ..Default::default()
            };
            if let Some(slug) = &flag_slug {
                match flags::by_slug(conn, slug) {
                    Ok(flag) => filter.flag_id = Some(flag.id),
                    Err(diesel::result::Error::NotFound) => {
                        return Ok(Err(ApiError::invalid(
                            "flag",
                            format!("No feature flag has the slug {slug:?}."),
                        )))
                    }
                    Err(e) => return Err(AppError::from(e)),
                }
            }
            if let Some(slug) = &env_slug {
                match envs.iter().find(|e| &e.slug == slug) {
                    Some(env) => filter.environment_id = Some(env.id.clone()),
                    None => {
                        return Ok(Err(ApiError::invalid(
                            "environment",
                            format!(
                                "No environment has the slug {slug:?}. There are: {}.",
                                envs.iter()
                                    .map(|e| e.slug.as_str())
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            ),
                        )))
                    }
                }
            }
            let page = paginate!(
                audit::matching(&filter, &range),
                audit_events::id,
                &cursor,
                conn,
                AuditEvent,
                |e: &AuditEvent| e.id.clone()
            );
            let flag_ids: Vec<&str> = page
                .data
                .iter()
                .filter_map(|e| e.flag_id.as_deref())
                .collect();
            let flag_slugs: HashMap<String, String> = flags_table::table
                .filter(flags_table::id.eq_any(&flag_ids))
                .select((flags_table::id, flags_table::slug))
                .load(conn)?
                .into_iter()
                .collect();
            let env_slugs: HashMap<String, String> =
                envs.into_iter().map(|e| (e.id, e.slug)).collect();
            Ok(Ok((page, flag_slugs, env_slugs)))
        })
        .await?;
    let (page, flag_slugs, env_slugs) = outcome?;
    Ok(HttpResponse::Ok().json(envelope(&page, |e| event_json(e, &flag_slugs, &env_slugs))))
}
