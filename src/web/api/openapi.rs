//! The OpenAPI 3.1 document of every API route, generated from the handlers'
//! `#[utoipa::path]` annotations and served at `GET /api/v1/openapi.json`.
//! The OpenAPI test checks that it lists exactly the routes the server
//! mounts (`super::mounted_routes`).

use std::sync::OnceLock;

use actix_web::http::header;
use actix_web::{web, HttpResponse};
use utoipa::openapi::response::{ResponseBuilder, ResponsesBuilder};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr};
use utoipa::{Modify, OpenApi};

use super::{audit, directory, evaluate, flags, rules, sessions, API_PREFIX};
use crate::web::ofrep;
use crate::web::routes::Routes;
use crate::web::Surface;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Flagpole",
        description = "Feature flags: the management API, the token endpoint, evaluation, the published signing keys and the OpenFeature Remote Evaluation Protocol (OFREP). Calls that need a key take an environment's secret key as `Authorization: Bearer sk_…`; the key decides the environment. Errors of `/api/v1` are `{\"error\": {\"code\", \"message\", \"field\"?}}`.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    modifiers(&SecuritySchemes, &SharedResponses),
    tags(
        (name = "Feature flags", description = "Create, read, change and archive feature flags."),
        (name = "Rules", description = "Who gets a flag in an environment, with ETag and If-Match against lost updates."),
        (name = "Organizations", description = "Organizations and their members, by Flagpole id or external id; bulk upserts by external id."),
        (name = "Users", description = "Users, by Flagpole id or external id; bulk upserts by external id."),
        (name = "Audit log", description = "Who changed what, where, from what to what, and when."),
        (name = "Sessions", description = "The token endpoint: signed access tokens with the flags that are on, and refresh tokens."),
        (name = "Evaluation", description = "The flags that are on for a user, without a token."),
        (name = "Keys", description = "The public keys that verify access tokens."),
        (name = "OFREP", description = "The OpenFeature Remote Evaluation Protocol, for the OpenFeature SDKs' OFREP providers."),
        (name = "OpenAPI", description = "This document."),
    ),
    paths(
        flags::list,
        flags::create,
        flags::get,
        flags::update,
        flags::delete,
        flags::archive,
        flags::unarchive,
        rules::get_rule,
        rules::put_rule,
        rules::enable,
        rules::disable,
        rules::add_target,
        rules::remove_target,
        directory::list_orgs,
        directory::create_org,
        directory::bulk_orgs,
        directory::get_org,
        directory::update_org,
        directory::delete_org,
        directory::list_memberships,
        directory::add_membership,
        directory::remove_membership,
        directory::list_users,
        directory::create_user,
        directory::bulk_users,
        directory::get_user,
        directory::update_user,
        directory::delete_user,
        audit::list,
        sessions::start_session,
        sessions::refresh_session,
        sessions::revoke_session,
        evaluate::evaluate,
        evaluate::user_feature_flags,
        sessions::jwks,
        sessions::openid_configuration,
        ofrep::evaluate_flag,
        ofrep::evaluate_flags,
        openapi_json,
    )
)]
pub struct ApiDoc;

/// The `api_key` scheme: an environment's secret key as a bearer token; and
/// `api_key_header`, the same key as `X-API-Key` (OFREP only).
struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("sk_…")
                    .description(Some(
                        "An environment's secret API key (dashboard: Environments, or `flagpole api-key create`).",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "api_key_header",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "X-API-Key",
                "The same secret key in an `X-API-Key` header, which the OFREP endpoints also accept.",
            ))),
        );
    }
}

/// The error answers every operation of a kind can give, declared once as
/// components and referenced from each operation they apply to: 401 for
/// operations that take a key; 400, 413 and 415 for those with a JSON body.
struct SharedResponses;

impl SharedResponses {
    const SHARED: [(&'static str, &'static str, &'static str); 4] = [
        (
            "401",
            "Unauthorized",
            "No key, or an unknown or revoked one (`missing_api_key`, `invalid_api_key`).",
        ),
        (
            "400",
            "InvalidJson",
            "The body is not valid JSON (`invalid_json`).",
        ),
        (
            "413",
            "TooLarge",
            "The body is larger than the route accepts (`too_large`).",
        ),
        (
            "415",
            "UnsupportedMediaType",
            "The body is not sent as application/json (`unsupported_media_type`).",
        ),
    ];
}

impl Modify for SharedResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let mut responses = ResponsesBuilder::new();
        for (_, name, description) in Self::SHARED {
            responses = responses.response(
                name,
                ResponseBuilder::new().description(description).content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("ErrorBody")))
                        .build(),
                ),
            );
        }
        components.responses.extend(responses.build().responses);
        for (path, item) in openapi.paths.paths.iter_mut() {
            // OFREP answers errors in its own shape, which it documents.
            let is_api = path.starts_with("/api/v1/");
            for op in [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ]
            .into_iter()
            .flatten()
            {
                let keyed = op
                    .security
                    .iter()
                    .flatten()
                    .any(|s| serde_json::to_value(s).is_ok_and(|v| v.get("api_key").is_some()));
                let has_body = op.request_body.is_some();
                for (status, name, _) in Self::SHARED {
                    let applies = is_api && if status == "401" { keyed } else { has_body };
                    if applies && !op.responses.responses.contains_key(status) {
                        op.responses.responses.insert(
                            status.to_string(),
                            RefOr::Ref(Ref::new(format!("#/components/responses/{name}"))),
                        );
                    }
                }
            }
        }
    }
}

/// The document, with the running version.
pub fn document() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").to_string();
    doc
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    Routes::documented(cfg, API_PREFIX, Surface::Api).get("/openapi.json", openapi_json);
}

/// This OpenAPI document.
#[utoipa::path(
    operation_id = "openapi",
    get,
    path = "/api/v1/openapi.json",
    tag = "OpenAPI",
    responses((status = 200, description = "The OpenAPI 3.1 document.", body = Object, content_type = "application/json")),
)]
async fn openapi_json() -> HttpResponse {
    static JSON: OnceLock<String> = OnceLock::new();
    let body = JSON.get_or_init(|| {
        document()
            .to_pretty_json()
            .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
    });
    HttpResponse::Ok()
        .content_type("application/json")
        .insert_header((header::CACHE_CONTROL, "public, max-age=300"))
        .body(body.clone())
}
