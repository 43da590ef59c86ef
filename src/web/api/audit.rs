//! The audit trail through the API: newest first, cursor paged, filtered by
//! flag, environment, actor and time.

use std::collections::HashMap;

use actix_web::{web, HttpResponse};
use serde::Deserialize;
use utoipa::openapi::path::{Parameter, ParameterIn};
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::IntoParams;

use super::objects::{AuditEventList, AuditEventObject, ErrorBody, ListKind, ListMetadata};
use super::paging::{query_param, ListQuery};
use super::AdminKey;
use super::{optional, API_PREFIX};
use crate::audit::{self, AuditFilter};
use crate::environments;
use crate::error::{Error, Result};
use crate::flags;
use crate::ids::FlagId;
use crate::time::Timestamp;
use crate::web::routes::Routes;
use crate::web::Surface;
use crate::AppState;

pub fn routes(cfg: &mut web::ServiceConfig) {
    Routes::documented(cfg, API_PREFIX, Surface::Api).get("/audit-events", list);
}

#[derive(Deserialize)]
pub(super) struct AuditParams {
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

/// An RFC 3339 time of a query parameter (a `+` sent unescaped reads as a space).
fn instant(field: &str, value: Option<String>) -> Result<Option<Timestamp>> {
    let Some(text) = optional(value) else {
        return Ok(None);
    };
    Timestamp::parse(&text)
        .or_else(|| Timestamp::parse(&text.replace(' ', "+")))
        .map(Some)
        .ok_or_else(|| {
            Error::invalid(
                field,
                format!("{field} is an RFC 3339 time such as 2026-01-31T09:00:00Z."),
            )
        })
}

/// Lists the audit trail, newest first.
#[utoipa::path(
    operation_id = "list_audit_events",
    get,
    path = "/api/v1/audit-events",
    tag = "Audit log",
    security(("api_key" = ["admin"])),
    params(AuditParams),
    responses(
        (status = 200, description = "A page of audit events.", body = AuditEventList),
        (status = 422, description = "A query parameter is invalid (e.g. an unknown flag or environment, or a time that is not RFC 3339); `field` names it.", body = ErrorBody),
    )
)]
async fn list(
    state: web::Data<AppState>,
    _auth: AdminKey,
    query: web::Query<AuditParams>,
) -> Result<HttpResponse> {
    let params = query.into_inner();
    let cursor = params.page.cursor()?;
    let since = instant("since", params.since)?;
    let until = instant("until", params.until)?;
    if let (Some(since), Some(until)) = (since, until) {
        if until < since {
            return Err(Error::invalid("until", "until is before since."));
        }
    }
    let (flag_slug, env_slug) = (optional(params.flag), optional(params.environment));
    let actor = optional(params.actor);
    let page = state
        .read(move |conn| {
            let envs = environments::list(conn)?;
            let mut filter = AuditFilter {
                actor,
                since,
                until,
                ..Default::default()
            };
            if let Some(slug) = &flag_slug {
                filter.flag_id = Some(
                    flags::by_slug(conn, slug)
                        .map_err(|_| {
                            Error::invalid(
                                "flag",
                                format!("No feature flag has the slug {slug:?}."),
                            )
                        })?
                        .id,
                );
            }
            if let Some(slug) = &env_slug {
                let env = envs
                    .iter()
                    .find(|e| e.slug == slug.as_str())
                    .ok_or_else(|| {
                        Error::invalid(
                            "environment",
                            format!(
                                "No environment has the slug {slug:?}. There are: {}.",
                                envs.iter()
                                    .map(|e| e.slug.as_str())
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            ),
                        )
                    })?;
                filter.environment_id = Some(env.id.clone());
            }
            let page = audit::list(conn, &filter, &cursor)?;
            let flag_ids: Vec<FlagId> =
                page.data.iter().filter_map(|e| e.flag_id.clone()).collect();
            let flag_slugs: HashMap<FlagId, String> = flags::slugs_of(conn, &flag_ids)?;
            let env_slugs: HashMap<_, String> = envs
                .into_iter()
                .map(|e| (e.id, e.slug.into_string()))
                .collect();
            Ok(page.map(|e| {
                let flag = e
                    .flag_id
                    .as_ref()
                    .and_then(|id| flag_slugs.get(id))
                    .cloned();
                let env = e
                    .environment_id
                    .as_ref()
                    .and_then(|id| env_slugs.get(id))
                    .cloned();
                AuditEventObject::new(e, flag, env)
            }))
        })
        .await?;
    Ok(HttpResponse::Ok().json(AuditEventList {
        object: ListKind::List,
        list_metadata: ListMetadata {
            before: page.before,
            after: page.after,
        },
        data: page.data,
    }))
}
