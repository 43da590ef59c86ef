//! The OpenFeature Remote Evaluation Protocol (OFREP), so that applications
//! can use the OpenFeature SDKs and their OFREP providers with Flagpole:
//! `POST /ofrep/v1/evaluate/flags/{key}` evaluates one flag and
//! `POST /ofrep/v1/evaluate/flags` every flag of the key's environment.
//!
//! The shapes are those of the protocol's OpenAPI document
//! (open-feature/protocol, `service/openapi.yaml`): the request is
//! `{"context": {...}}`, an evaluation is `{"key", "value", "reason",
//! "variant", "metadata"}`, and errors are `{"key"?, "errorCode",
//! "errorDetails"}` with 400 (PARSE_ERROR, TARGETING_KEY_MISSING,
//! INVALID_CONTEXT), 404 (FLAG_NOT_FOUND, single evaluation only), 401 for a
//! missing or unknown key, and 500 `{"errorDetails"}`.
//!
//! The context: `targetingKey` is the user (a Flagpole id or an external id);
//! `organizationId` (or `organization_id`, `orgId`, `org_id`) the
//! organization. Values are booleans with the variants `on` and `off`.
//!
//! Credentials are the environment's secret key, sent as the protocol's
//! security schemes allow: `Authorization: Bearer sk_…` or `X-API-Key: sk_…`.
//! The key decides the environment, which the metadata names.
//!
//! Every answer comes from the in-memory model and the one decision
//! (`crate::evaluation::decide`).

use actix_web::http::header::{self, HeaderValue};
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Serialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;

use super::api::{bearer_token, ApiAuth};
use super::json::push_json_str;
use super::routes::Routes;
use super::Surface;
use crate::environments::api_keys::KeyScope;
use crate::environments::Environment;
use crate::error::{Entity, Error, Refusal, Result};
use crate::evaluation::model::EnvironmentModel;
use crate::evaluation::{Context, Decision, Reason};
use crate::AppState;

/// Where the OpenFeature Remote Evaluation Protocol lives.
pub const OFREP_PREFIX: &str = "/ofrep/v1";

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope(OFREP_PREFIX)
            .configure(|cfg| {
                Routes::documented(cfg, OFREP_PREFIX, Surface::Ofrep)
                    .post("/evaluate/flags/{key}", evaluate_flag)
                    .post("/evaluate/flags", evaluate_flags);
            })
            .default_service(web::to(|req: HttpRequest| async move {
                Surface::Ofrep.render(&Error::NotFound(Entity::Route), &req)
            })),
    );
}

/// An OFREP request: the evaluation context. The body may be left out (it
/// then lacks the targeting key).
#[derive(ToSchema)]
pub struct OfrepRequest {
    pub context: OfrepContext,
}

/// The evaluation context. Other properties are allowed and ignored.
#[derive(ToSchema)]
pub struct OfrepContext {
    /// The user: a Flagpole user id or the user's external id. A user
    /// Flagpole does not know is targeted by nothing.
    #[schema(rename = "targetingKey", value_type = String, required = true, example = "u-1042")]
    pub targeting_key: Option<String>,
    /// The organization (a Flagpole id or an external id), which the user
    /// must belong to. `organization_id`, `orgId` and `org_id` are accepted too.
    #[schema(rename = "organizationId", nullable = false, example = "acme")]
    pub organization_id: Option<String>,
}

/// One flag's evaluation.
#[derive(Serialize, ToSchema)]
pub struct OfrepEvaluation<'a> {
    /// The flag's slug.
    #[schema(example = "new-checkout")]
    pub key: &'a str,
    pub value: bool,
    pub reason: OfrepReason,
    pub variant: OfrepVariant,
    pub metadata: OfrepMetadata<'a>,
}

impl<'a> OfrepEvaluation<'a> {
    fn new(slug: &'a str, decision: Decision, environment: &'a str) -> Self {
        OfrepEvaluation {
            key: slug,
            value: decision.on,
            reason: OfrepReason::of(decision.reason),
            variant: if decision.on {
                OfrepVariant::On
            } else {
                OfrepVariant::Off
            },
            metadata: OfrepMetadata { environment },
        }
    }
}

/// `TARGETING_MATCH` when the user or the organization is a target, `STATIC`
/// for a flag on for all, `DISABLED` when the flag is off in the environment
/// (or archived), `DEFAULT` otherwise.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OfrepReason {
    TargetingMatch,
    Static,
    Disabled,
    Default,
}

impl OfrepReason {
    fn of(reason: Reason) -> Self {
        match reason {
            Reason::TargetingMatch(_) => OfrepReason::TargetingMatch,
            Reason::Static => OfrepReason::Static,
            Reason::Disabled => OfrepReason::Disabled,
            Reason::Default => OfrepReason::Default,
        }
    }
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum OfrepVariant {
    On,
    Off,
}

#[derive(Serialize, ToSchema)]
pub struct OfrepMetadata<'a> {
    /// The slug of the key's environment.
    #[schema(example = "production")]
    pub environment: &'a str,
}

/// Every flag of the key's environment that is not archived.
#[derive(Serialize, ToSchema)]
pub struct OfrepBulkResponse<'a> {
    pub flags: Vec<OfrepEvaluation<'a>>,
}

/// An evaluation error, as the protocol shapes it.
#[derive(Serialize, ToSchema)]
pub struct OfrepError {
    /// The flag, for a single evaluation.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub key: Option<String>,
    #[serde(rename = "errorCode")]
    #[schema(rename = "errorCode")]
    pub error_code: OfrepErrorCode,
    #[serde(rename = "errorDetails")]
    #[schema(rename = "errorDetails")]
    pub error_details: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OfrepErrorCode {
    ParseError,
    TargetingKeyMissing,
    InvalidContext,
    FlagNotFound,
}

/// A refused key, an unknown route or a failure on the server's side.
#[derive(Serialize, ToSchema)]
pub struct OfrepErrorDetails {
    #[serde(rename = "errorDetails")]
    #[schema(rename = "errorDetails")]
    pub error_details: String,
}

/// The context keys that name the organization, in order of preference.
const ORGANIZATION_KEYS: [&str; 4] = ["organizationId", "organization_id", "orgId", "org_id"];

fn invalid_context(message: impl Into<String>) -> Error {
    Error::Refused(Refusal::InvalidContext {
        message: message.into(),
    })
}

/// Who the request evaluates for, as named in its context.
#[derive(Debug)]
struct Subject {
    user: String,
    organization: Option<String>,
}

/// Reads `{"context": {...}}`. An empty body is an empty request (the
/// protocol does not require one), which then lacks the targeting key.
fn parse_request(body: &[u8]) -> Result<Subject> {
    let request: Value = if body.iter().all(u8::is_ascii_whitespace) {
        Value::Object(Map::new())
    } else {
        serde_json::from_slice(body)
            .map_err(|e| Error::malformed("json", format!("The body is not valid JSON: {e}")))?
    };
    let Value::Object(request) = request else {
        return Err(Error::malformed(
            "json",
            "The body must be a JSON object: {\"context\": {\"targetingKey\": \"…\"}}.",
        ));
    };
    let empty = Map::new();
    let context = match request.get("context") {
        None | Some(Value::Null) => &empty,
        Some(Value::Object(context)) => context,
        Some(_) => {
            return Err(invalid_context(
                "context must be an object, e.g. {\"targetingKey\": \"user_…\", \"organizationId\": \"org_…\"}.",
            ))
        }
    };
    let user = match context.get("targetingKey") {
        None | Some(Value::Null) => return Err(Error::Refused(Refusal::TargetingKeyMissing)),
        Some(Value::String(s)) if s.trim().is_empty() => {
            return Err(Error::Refused(Refusal::TargetingKeyMissing))
        }
        Some(Value::String(s)) => s.trim().to_string(),
        Some(_) => return Err(invalid_context(
            "context.targetingKey must be a string: a Flagpole user id or the user's external id.",
        )),
    };
    let mut organization: Option<(&str, String)> = None;
    for name in ORGANIZATION_KEYS {
        let value = match context.get(name) {
            None | Some(Value::Null) => continue,
            Some(Value::String(s)) if s.trim().is_empty() => continue,
            Some(Value::String(s)) => s.trim().to_string(),
            Some(_) => {
                return Err(invalid_context(format!(
                    "context.{name} must be a string: a Flagpole organization id or the organization's external id."
                )))
            }
        };
        match &organization {
            Some((first, other)) if *other != value => {
                return Err(invalid_context(format!(
                    "context.{first} and context.{name} name different organizations; give one."
                )))
            }
            Some(_) => {}
            None => organization = Some((name, value)),
        }
    }
    Ok(Subject {
        user,
        organization: organization.map(|(_, value)| value),
    })
}

/// The secret key, from `Authorization: Bearer …` or `X-API-Key`.
fn secret_of(req: &HttpRequest) -> Option<String> {
    bearer_token(req).or_else(|| {
        req.headers()
            .get("x-api-key")
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    })
}

/// A request authenticated and resolved: the environment and the context.
struct Evaluation {
    environment: std::sync::Arc<Environment>,
    context: Context,
}

/// Checks the key, then the request, then resolves the user and the
/// organization from the model, without a query.
///
/// The caller states the context, and it is evaluated as given: a
/// `targetingKey` or an organization that Flagpole does not know, or an
/// organization the user is not a member of, simply matches no target of
/// its own (OpenFeature clients often send whatever identifies the caller:
/// an anonymous or not yet synced user). Flags for All are on for them,
/// flags for Some are off (reason DEFAULT) unless something else in the
/// context is a target, exactly as the WorkOS runtime client and
/// `/api/v1/evaluate` decide the same pair.
fn authorize(state: &AppState, req: &HttpRequest, body: &[u8]) -> Result<Evaluation> {
    let auth = ApiAuth::check(
        state,
        secret_of(req),
        super::api::origin(req),
        KeyScope::Publishable,
    )?;
    let subject = parse_request(body)?;
    state.metrics.evaluated(&auth.environment.slug, "ofrep");
    let context = state
        .model()
        .context(Some(&subject.user), subject.organization.as_deref());
    Ok(Evaluation {
        environment: auth.environment,
        context,
    })
}

/// One flag's evaluation; `None` when the environment has no such flag.
fn evaluate_one<'a>(
    env: &'a EnvironmentModel,
    slug: &'a str,
    ev: &'a Evaluation,
) -> Option<OfrepEvaluation<'a>> {
    let decision = env.decide(slug, &ev.context)?;
    Some(OfrepEvaluation::new(
        slug,
        decision,
        ev.environment.slug.as_str(),
    ))
}

/// Evaluates one flag (OFREP).
///
/// The key's environment decides the rule; `context.targetingKey` is the
/// user and `context.organizationId` the organization.
#[utoipa::path(
    operation_id = "ofrep_evaluate_flag",
    post,
    path = "/ofrep/v1/evaluate/flags/{key}",
    tag = "OFREP",
    security(("api_key" = ["publishable"]), ("api_key_header" = ["publishable"])),
    params(("key" = String, Path, description = "The flag's slug.")),
    request_body(content = Option<OfrepRequest>, description = "The evaluation context.", content_type = "application/json"),
    responses(
        (status = 200, description = "The evaluation.", body = OfrepEvaluation),
        (status = 400, description = "`PARSE_ERROR`, `TARGETING_KEY_MISSING` or `INVALID_CONTEXT` (e.g. an organization id that is not text).", body = OfrepError),
        (status = 401, description = "No key, or an unknown or revoked one.", body = OfrepErrorDetails),
        (status = 404, description = "`FLAG_NOT_FOUND`.", body = OfrepError),
    )
)]
async fn evaluate_flag(
    state: web::Data<AppState>,
    req: HttpRequest,
    key: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse> {
    let key = key.into_inner();
    let ev = authorize(&state, &req, &body)?;
    let model = state.model();
    let evaluation = model
        .model
        .environment(&ev.environment.id)
        .and_then(|env| evaluate_one(env, &key, &ev))
        .ok_or(Error::NotFound(Entity::Flag))?;
    Ok(HttpResponse::Ok().json(evaluation))
}

/// Evaluates every flag of the key's environment (OFREP bulk evaluation).
///
/// Every flag that is not archived, with an `ETag` that is a digest of the
/// answer itself: a change anywhere that does not alter this caller's flags
/// keeps it, so polling providers get 304 (to `If-None-Match`) until
/// something they see changes.
#[utoipa::path(
    operation_id = "ofrep_evaluate_flags",
    post,
    path = "/ofrep/v1/evaluate/flags",
    tag = "OFREP",
    security(("api_key" = ["publishable"]), ("api_key_header" = ["publishable"])),
    params(("If-None-Match" = Option<String>, Header, description = "The `ETag` of the last answer.")),
    request_body(content = Option<OfrepRequest>, description = "The evaluation context.", content_type = "application/json"),
    responses(
        (status = 200, description = "Every flag's evaluation.", body = OfrepBulkResponse,
            headers(("ETag" = String, description = "A digest of this answer, for `If-None-Match`."))),
        (status = 304, description = "Nothing changed since the `ETag` sent as `If-None-Match`.",
            headers(("ETag" = String))),
        (status = 400, description = "`PARSE_ERROR`, `TARGETING_KEY_MISSING` or `INVALID_CONTEXT`.", body = OfrepError),
        (status = 401, description = "No key, or an unknown or revoked one.", body = OfrepErrorDetails),
    )
)]
async fn evaluate_flags(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse> {
    let ev = authorize(&state, &req, &body)?;
    let model = state.model();
    let environment = ev.environment.slug.as_str();
    let body = match model.model.environment(&ev.environment.id) {
        Some(env) => write_bulk(
            env.decide_live(&ev.context)
                .map(|(flag, decision)| (flag.slug.as_str(), decision)),
            environment,
        ),
        None => write_bulk(std::iter::empty(), environment),
    };
    // Not a cryptographic digest: it only tells this answer from the last
    // one this caller saw, and xxh3 reads 100 KiB in microseconds.
    let etag = format!("\"{:032x}\"", xxhash_rust::xxh3::xxh3_128(&body));
    if none_match(&req, &etag) {
        return Ok(HttpResponse::NotModified()
            .insert_header((header::ETAG, etag))
            .finish());
    }
    Ok(HttpResponse::Ok()
        .insert_header((header::ETAG, etag))
        .content_type("application/json")
        .body(body))
}

/// The bulk answer, byte for byte what `serde_json` writes for
/// [`OfrepBulkResponse`] (a test holds the two equal), without its
/// per-field machinery: at a thousand flags an answer that machinery, not
/// the evaluation, was most of the request.
fn write_bulk<'a>(flags: impl Iterator<Item = (&'a str, Decision)>, environment: &str) -> Vec<u8> {
    let mut metadata = br#","metadata":{"environment":"#.to_vec();
    push_json_str(&mut metadata, environment);
    metadata.extend_from_slice(b"}}");
    let mut out = Vec::with_capacity(16 * 1024);
    out.extend_from_slice(br#"{"flags":["#);
    for (i, (slug, decision)) in flags.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(br#"{"key":"#);
        push_json_str(&mut out, slug);
        out.extend_from_slice(if decision.on {
            br#","value":true,"reason":""#.as_slice()
        } else {
            br#","value":false,"reason":""#.as_slice()
        });
        out.extend_from_slice(decision.reason.code().as_bytes());
        out.extend_from_slice(if decision.on {
            br#"","variant":"on""#.as_slice()
        } else {
            br#"","variant":"off""#.as_slice()
        });
        out.extend_from_slice(&metadata);
    }
    out.extend_from_slice(b"]}");
    out
}

/// Whether `If-None-Match` names `etag` (weak comparison, as RFC 9110
/// prescribes for this header) or is `*`. A match is answered with 304 as
/// OFREP specifies for this POST, where plain HTTP would say 412.
pub(crate) fn none_match(req: &HttpRequest, etag: &str) -> bool {
    req.headers()
        .get_all(header::IF_NONE_MATCH)
        .filter_map(|v: &HeaderValue| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .any(|tag| tag == "*" || tag.strip_prefix("W/").unwrap_or(tag) == etag)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(result: Result<Subject>) -> &'static str {
        match result {
            Err(Error::Refused(Refusal::Malformed { .. })) => "PARSE_ERROR",
            Err(Error::Refused(Refusal::TargetingKeyMissing)) => "TARGETING_KEY_MISSING",
            Err(Error::Refused(Refusal::InvalidContext { .. })) => "INVALID_CONTEXT",
            other => panic!("expected a 400, got {other:?}"),
        }
    }

    #[test]
    fn the_bulk_answer_is_what_serde_writes_for_its_type() {
        use crate::evaluation::TargetKind;
        let decisions = [
            (
                "a",
                Decision {
                    on: true,
                    reason: Reason::Static,
                },
            ),
            (
                "b-1",
                Decision {
                    on: false,
                    reason: Reason::Disabled,
                },
            ),
            (
                "c",
                Decision {
                    on: false,
                    reason: Reason::Default,
                },
            ),
            (
                "d",
                Decision {
                    on: true,
                    reason: Reason::TargetingMatch(TargetKind::User),
                },
            ),
            (
                "e",
                Decision {
                    on: true,
                    reason: Reason::TargetingMatch(TargetKind::Organization),
                },
            ),
            (
                "quote\"back\\slash\ncontrol\u{1}é",
                Decision {
                    on: true,
                    reason: Reason::Default,
                },
            ),
        ];
        for environment in ["production", "needs \"escaping\""] {
            for n in [0, 1, decisions.len()] {
                let flags: Vec<OfrepEvaluation> = decisions[..n]
                    .iter()
                    .map(|(slug, d)| OfrepEvaluation::new(slug, *d, environment))
                    .collect();
                let expected = serde_json::to_vec(&OfrepBulkResponse { flags }).unwrap();
                let written = write_bulk(decisions[..n].iter().copied(), environment);
                assert_eq!(
                    String::from_utf8(written).unwrap(),
                    String::from_utf8(expected).unwrap()
                );
            }
        }
    }

    #[test]
    fn requests_are_read_as_the_protocol_says() {
        let s = parse_request(br#"{"context": {"targetingKey": "u1", "orgId": "o1"}}"#).unwrap();
        assert_eq!(
            (s.user.as_str(), s.organization.as_deref()),
            ("u1", Some("o1"))
        );
        let s = parse_request(
            br#"{"context": {"targetingKey": " u1 ", "organizationId": "o1", "org_id": "o1"}}"#,
        )
        .unwrap();
        assert_eq!(
            (s.user.as_str(), s.organization.as_deref()),
            ("u1", Some("o1"))
        );
        let s = parse_request(br#"{"context": {"targetingKey": "u1", "organization_id": ""}}"#)
            .unwrap();
        assert_eq!(s.organization, None);

        assert_eq!(code(parse_request(b"{not json")), "PARSE_ERROR");
        assert_eq!(code(parse_request(b"[1]")), "PARSE_ERROR");
        assert_eq!(code(parse_request(b"")), "TARGETING_KEY_MISSING");
        assert_eq!(code(parse_request(b"{}")), "TARGETING_KEY_MISSING");
        assert_eq!(
            code(parse_request(br#"{"context": {"targetingKey": "  "}}"#)),
            "TARGETING_KEY_MISSING"
        );
        assert_eq!(
            code(parse_request(br#"{"context": "u1"}"#)),
            "INVALID_CONTEXT"
        );
        assert_eq!(
            code(parse_request(br#"{"context": {"targetingKey": 7}}"#)),
            "INVALID_CONTEXT"
        );
        assert_eq!(
            code(parse_request(
                br#"{"context": {"targetingKey": "u1", "orgId": true}}"#
            )),
            "INVALID_CONTEXT"
        );
        assert_eq!(
            code(parse_request(
                br#"{"context": {"targetingKey": "u1", "orgId": "a", "organizationId": "b"}}"#
            )),
            "INVALID_CONTEXT"
        );
    }
}
