//! Webhooks: endpoints per environment that are told about flag changes.
//!
//! A change queues its events in its own transaction (`enqueue`), one
//! delivery per subscribed endpoint; a background worker (`spawn_worker`)
//! claims due deliveries with a lease, POSTs them signed the way WorkOS
//! signs its webhooks, and retries failures with backoff.

use std::cell::Cell;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, SecondsFormat, Utc};
use diesel::prelude::*;
use hmac::{Hmac, Mac};
use rand::Rng;
use serde::Serialize;
use serde_json::{json, Value};
use sha2::Sha256;

use crate::audit::{self, Change};
use crate::db::schema::{
    environments, rules, webhook_attempts, webhook_deliveries, webhook_endpoints, webhook_events,
};
use crate::db::DbConn;
use crate::error::{AppError, FieldErrors};
use crate::ids::{new_id, now, random_token};
use crate::keys::KeySealer;
use crate::models::{
    Environment, Rule, WebhookAttempt, WebhookDelivery, WebhookEndpoint, WebhookEvent,
};
use crate::{flags, validate, AppState};

/// The events an endpoint can subscribe to, in the order forms list them.
pub const EVENTS: [&str; 4] = [
    "flag.created",
    "flag.updated",
    "flag.deleted",
    "flag.rule_updated",
];

/// The longest endpoint URL accepted.
pub const MAX_URL_LENGTH: usize = 2000;
/// How much of a response body an attempt keeps.
const EXCERPT_BYTES: usize = 500;
/// How many deliveries one instance sends at once.
const BATCH: i64 = 20;

// Set by `enqueue` on the thread whose transaction queued a delivery, so the
// caller (`AppState::db`) can wake the worker as soon as the change is done.
thread_local! {
    static QUEUED: Cell<bool> = const { Cell::new(false) };
}

/// Whether this thread queued deliveries since the last call; resets it.
pub fn take_queued() -> bool {
    QUEUED.with(|q| q.replace(false))
}

/// Timestamps as stored: fixed-width RFC 3339 UTC, like `ids::now`.
fn stamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

fn parse_stamp(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

fn later(by: Duration) -> String {
    stamp(Utc::now() + chrono::Duration::from_std(by).unwrap_or(chrono::Duration::zero()))
}

/// What the endpoint form asks for.
pub struct EndpointInput {
    pub url: String,
    pub description: String,
    pub events: Vec<String>,
}

struct ValidEndpoint {
    url: String,
    description: String,
    events: String,
}

fn validate_input(input: &EndpointInput) -> Result<ValidEndpoint, AppError> {
    let mut errors = FieldErrors::default();
    let url = input.url.trim().to_string();
    if url.is_empty() {
        errors.add("url", "Enter the URL that should receive the events.");
    } else if url.chars().count() > MAX_URL_LENGTH {
        errors.add(
            "url",
            format!("A URL has at most {MAX_URL_LENGTH} characters."),
        );
    } else {
        match reqwest::Url::parse(&url) {
            Ok(parsed) if !matches!(parsed.scheme(), "http" | "https") => {
                errors.add("url", "The URL must start with http:// or https://.")
            }
            Ok(parsed) if parsed.host_str().is_none_or(str::is_empty) => {
                errors.add("url", "The URL needs a host name.")
            }
            Ok(_) => {}
            Err(e) => errors.add("url", format!("This is not a valid URL ({e}).")),
        }
    }
    let description = validate::text(&input.description, "description", 500).unwrap_or_else(|e| {
        errors.add("description", e);
        String::new()
    });
    let chosen: Vec<&str> = EVENTS
        .iter()
        .copied()
        .filter(|e| input.events.iter().any(|c| c == e))
        .collect();
    if input.events.iter().any(|c| !EVENTS.contains(&c.as_str())) {
        errors.add("events", format!("Choose among {}.", EVENTS.join(", ")));
    } else if chosen.is_empty() {
        errors.add("events", "Choose at least one event.");
    }
    errors.into_result()?;
    Ok(ValidEndpoint {
        url,
        description,
        events: chosen.join(","),
    })
}

/// The events an endpoint subscribes to, in `EVENTS` order.
pub fn events_of(endpoint: &WebhookEndpoint) -> Vec<&'static str> {
    EVENTS
        .iter()
        .copied()
        .filter(|e| endpoint.events.split(',').any(|s| s == *e))
        .collect()
}

fn new_secret() -> String {
    format!("whsec_{}", random_token(32))
}

fn endpoint_state(e: &WebhookEndpoint) -> Value {
    json!({
        "url": e.url,
        "description": e.description,
        "events": e.events,
        "enabled": e.enabled,
    })
}

fn record(
    conn: &mut DbConn,
    actor: &str,
    action: &str,
    endpoint: &WebhookEndpoint,
    before: Option<Value>,
    after: Option<Value>,
) -> QueryResult<()> {
    audit::record(
        conn,
        actor,
        Change {
            action,
            object_type: "webhook_endpoint",
            object_id: &endpoint.id,
            object_label: &endpoint.url,
            flag_id: None,
            environment_id: Some(&endpoint.environment_id),
            before,
            after,
        },
    )
}

/// Adds an endpoint to an environment and returns it with its signing
/// secret, which is stored sealed and shown only this once.
pub fn create_endpoint(
    conn: &mut DbConn,
    sealer: &KeySealer,
    actor: &str,
    environment_id: &str,
    input: &EndpointInput,
) -> Result<(WebhookEndpoint, String), AppError> {
    let valid = validate_input(input)?;
    let secret = new_secret();
    let id = new_id("we");
    let sealed = sealer.seal(secret.as_bytes(), &id)?;
    crate::db::write_transaction(conn, |conn| {
        let env: Environment = environments::table
            .find(environment_id)
            .select(Environment::as_select())
            .first(conn)?;
        let at = now();
        let endpoint = WebhookEndpoint {
            id: id.clone(),
            environment_id: env.id.clone(),
            url: valid.url.clone(),
            description: valid.description.clone(),
            events: valid.events.clone(),
            secret_sealed: sealed.clone(),
            secret_prefix: secret[..12].to_string(),
            enabled: true,
            created_by: actor.to_string(),
            created_at: at.clone(),
            updated_at: at,
        };
        diesel::insert_into(webhook_endpoints::table)
            .values(&endpoint)
            .execute(conn)?;
        record(
            conn,
            actor,
            "webhook_endpoint.created",
            &endpoint,
            None,
            Some(endpoint_state(&endpoint)),
        )?;
        Ok((endpoint, secret.clone()))
    })
}

pub fn endpoint(conn: &mut DbConn, id: &str) -> QueryResult<WebhookEndpoint> {
    webhook_endpoints::table
        .find(id)
        .select(WebhookEndpoint::as_select())
        .first(conn)
}

/// Changes an endpoint's URL, description and events.
pub fn update_endpoint(
    conn: &mut DbConn,
    actor: &str,
    id: &str,
    input: &EndpointInput,
) -> Result<WebhookEndpoint, AppError> {
    let valid = validate_input(input)?;
    crate::db::write_transaction(conn, |conn| {
        let before = endpoint(conn, id)?;
        diesel::update(webhook_endpoints::table.find(id))
            .set((
                webhook_endpoints::url.eq(&valid.url),
                webhook_endpoints::description.eq(&valid.description),
                webhook_endpoints::events.eq(&valid.events),
                webhook_endpoints::updated_at.eq(now()),
            ))
            .execute(conn)?;
        let after = endpoint(conn, id)?;
        record(
            conn,
            actor,
            "webhook_endpoint.updated",
            &after,
            Some(endpoint_state(&before)),
            Some(endpoint_state(&after)),
        )?;
        Ok(after)
    })
}

/// Turns an endpoint on or off; a disabled endpoint is sent nothing new.
pub fn set_enabled(
    conn: &mut DbConn,
    actor: &str,
    id: &str,
    enabled: bool,
) -> Result<WebhookEndpoint, AppError> {
    crate::db::write_transaction(conn, |conn| {
        let before = endpoint(conn, id)?;
        if before.enabled == enabled {
            return Ok(before);
        }
        diesel::update(webhook_endpoints::table.find(id))
            .set((
                webhook_endpoints::enabled.eq(enabled),
                webhook_endpoints::updated_at.eq(now()),
            ))
            .execute(conn)?;
        let after = endpoint(conn, id)?;
        record(
            conn,
            actor,
            if enabled {
                "webhook_endpoint.enabled"
            } else {
                "webhook_endpoint.disabled"
            },
            &after,
            Some(json!({"enabled": before.enabled})),
            Some(json!({"enabled": enabled})),
        )?;
        Ok(after)
    })
}

/// Replaces an endpoint's signing secret and returns the new one, shown once.
pub fn rotate_secret(
    conn: &mut DbConn,
    sealer: &KeySealer,
    actor: &str,
    id: &str,
) -> Result<(WebhookEndpoint, String), AppError> {
    let secret = new_secret();
    let sealed = sealer.seal(secret.as_bytes(), id)?;
    crate::db::write_transaction(conn, |conn| {
        let before = endpoint(conn, id)?;
        diesel::update(webhook_endpoints::table.find(id))
            .set((
                webhook_endpoints::secret_sealed.eq(&sealed),
                webhook_endpoints::secret_prefix.eq(&secret[..12]),
                webhook_endpoints::updated_at.eq(now()),
            ))
            .execute(conn)?;
        let after = endpoint(conn, id)?;
        record(
            conn,
            actor,
            "webhook_endpoint.secret_rotated",
            &after,
            Some(json!({"secret": format!("{}…", before.secret_prefix)})),
            Some(json!({"secret": format!("{}…", after.secret_prefix)})),
        )?;
        Ok((after, secret.clone()))
    })
}

/// Deletes an endpoint with its deliveries and their attempts.
pub fn delete_endpoint(
    conn: &mut DbConn,
    actor: &str,
    id: &str,
) -> Result<WebhookEndpoint, AppError> {
    crate::db::write_transaction(conn, |conn| {
        let before = endpoint(conn, id)?;
        let deliveries = webhook_deliveries::table
            .filter(webhook_deliveries::endpoint_id.eq(id))
            .select(webhook_deliveries::id);
        diesel::delete(
            webhook_attempts::table.filter(webhook_attempts::delivery_id.eq_any(deliveries)),
        )
        .execute(conn)?;
        diesel::delete(webhook_deliveries::table.filter(webhook_deliveries::endpoint_id.eq(id)))
            .execute(conn)?;
        diesel::delete(webhook_endpoints::table.find(id)).execute(conn)?;
        record(
            conn,
            actor,
            "webhook_endpoint.deleted",
            &before,
            Some(endpoint_state(&before)),
            None,
        )?;
        Ok(before)
    })
}

/// The signing secret of an endpoint, opened.
pub fn secret_of(sealer: &KeySealer, endpoint: &WebhookEndpoint) -> anyhow::Result<String> {
    let bytes = sealer.open(&endpoint.secret_sealed, &endpoint.id)?;
    Ok(String::from_utf8(bytes)?)
}

/// An endpoint as the Webhooks page lists it.
pub struct EndpointSummary {
    pub endpoint: WebhookEndpoint,
    /// The state of the newest delivery, if any.
    pub last_status: Option<String>,
}

pub fn list_endpoints(
    conn: &mut DbConn,
    environment_id: &str,
) -> QueryResult<Vec<EndpointSummary>> {
    let endpoints: Vec<WebhookEndpoint> = webhook_endpoints::table
        .filter(webhook_endpoints::environment_id.eq(environment_id))
        .order(webhook_endpoints::created_at.asc())
        .select(WebhookEndpoint::as_select())
        .load(conn)?;
    let mut out = Vec::with_capacity(endpoints.len());
    for endpoint in endpoints {
        let last_status = webhook_deliveries::table
            .filter(webhook_deliveries::endpoint_id.eq(&endpoint.id))
            .order(webhook_deliveries::id.desc())
            .select(webhook_deliveries::status)
            .first::<String>(conn)
            .optional()?;
        out.push(EndpointSummary {
            endpoint,
            last_status,
        });
    }
    Ok(out)
}

/// A delivery with its event and every attempt, oldest attempt first.
pub struct DeliveryDetails {
    pub delivery: WebhookDelivery,
    pub event: WebhookEvent,
    pub attempts: Vec<WebhookAttempt>,
}

/// An endpoint's newest deliveries, newest first.
pub fn recent_deliveries(
    conn: &mut DbConn,
    endpoint_id: &str,
    limit: i64,
) -> QueryResult<Vec<DeliveryDetails>> {
    let rows: Vec<(WebhookDelivery, WebhookEvent)> = webhook_deliveries::table
        .inner_join(webhook_events::table)
        .filter(webhook_deliveries::endpoint_id.eq(endpoint_id))
        .order(webhook_deliveries::id.desc())
        .limit(limit)
        .select((WebhookDelivery::as_select(), WebhookEvent::as_select()))
        .load(conn)?;
    let ids: Vec<&str> = rows.iter().map(|(d, _)| d.id.as_str()).collect();
    let attempts: Vec<WebhookAttempt> = webhook_attempts::table
        .filter(webhook_attempts::delivery_id.eq_any(&ids))
        .order(webhook_attempts::id.asc())
        .select(WebhookAttempt::as_select())
        .load(conn)?;
    Ok(rows
        .into_iter()
        .map(|(delivery, event)| DeliveryDetails {
            attempts: attempts
                .iter()
                .filter(|a| a.delivery_id == delivery.id)
                .cloned()
                .collect(),
            delivery,
            event,
        })
        .collect())
}

/// Which environments a flag change concerns.
#[derive(Debug, Clone, Copy)]
pub enum Scope<'a> {
    /// A change of the flag itself: every environment hears of it.
    Everywhere,
    /// A change of the flag's rule in one environment.
    In(&'a str),
}

/// What is POSTed: `data` is WorkOS's `feature_flag` object. The field order
/// is fixed here so every payload reads the same.
#[derive(Serialize)]
struct Envelope<'a> {
    id: &'a str,
    event: &'a str,
    data: Value,
    created_at: &'a str,
    context: Value,
}

/// Queues `event` about a flag for every enabled endpoint subscribed to it
/// in `scope`, inside the caller's transaction: one event per environment,
/// one delivery per endpoint, due now. Without such endpoints it costs one
/// small query. The flag and its rules are read as they are now, so a
/// deletion calls this before deleting.
pub fn enqueue(
    conn: &mut DbConn,
    event: &str,
    flag_id: &str,
    scope: Scope<'_>,
    actor: &str,
) -> QueryResult<()> {
    let mut query = webhook_endpoints::table
        .filter(webhook_endpoints::enabled.eq(true))
        .select((
            webhook_endpoints::id,
            webhook_endpoints::environment_id,
            webhook_endpoints::events,
        ))
        .into_boxed();
    if let Scope::In(env_id) = scope {
        query = query.filter(webhook_endpoints::environment_id.eq(env_id.to_string()));
    }
    let subscribed: Vec<(String, String)> = query
        .load::<(String, String, String)>(conn)?
        .into_iter()
        .filter(|(_, _, events)| events.split(',').any(|e| e == event))
        .map(|(id, env, _)| (id, env))
        .collect();
    if subscribed.is_empty() {
        return Ok(());
    }
    let flag = flags::get(conn, flag_id)?;
    let tags = flags::tags_of(conn, flag_id)?;
    let env_ids: Vec<&str> = subscribed.iter().map(|(_, env)| env.as_str()).collect();
    let envs: Vec<Environment> = environments::table
        .filter(environments::id.eq_any(&env_ids))
        .order((environments::position.asc(), environments::created_at.asc()))
        .select(Environment::as_select())
        .load(conn)?;
    let rules_of_flag: Vec<Rule> = rules::table
        .filter(rules::flag_id.eq(flag_id))
        .filter(rules::environment_id.eq_any(&env_ids))
        .select(Rule::as_select())
        .load(conn)?;
    let at = now();
    let mut deliveries = Vec::new();
    for env in envs {
        let Some(rule) = rules_of_flag.iter().find(|r| r.environment_id == env.id) else {
            continue;
        };
        let event_id = new_id("event");
        let payload = serde_json::to_string(&Envelope {
            id: &event_id,
            event,
            data: crate::workos::feature_flag_json(&flag, &tags, rule),
            created_at: &at,
            context: json!({
                "environment": {"id": env.id, "slug": env.slug, "name": env.name},
                "actor": actor,
            }),
        })
        .map_err(|e| diesel::result::Error::SerializationError(Box::new(e)))?;
        diesel::insert_into(webhook_events::table)
            .values(&WebhookEvent {
                id: event_id.clone(),
                event: event.to_string(),
                environment_id: env.id.clone(),
                payload,
                created_at: at.clone(),
            })
            .execute(conn)?;
        for (endpoint_id, _) in subscribed.iter().filter(|(_, e)| *e == env.id) {
            deliveries.push(WebhookDelivery {
                id: new_id("whd"),
                endpoint_id: endpoint_id.clone(),
                event_id: event_id.clone(),
                status: "pending".into(),
                attempts: 0,
                next_attempt_at: at.clone(),
                locked_until: None,
                created_at: at.clone(),
                updated_at: at.clone(),
            });
        }
    }
    for chunk in deliveries.chunks(500) {
        crate::with_backend!(conn, |c| diesel::insert_into(webhook_deliveries::table)
            .values(chunk)
            .execute(c))?;
    }
    if !deliveries.is_empty() {
        QUEUED.with(|q| q.set(true));
    }
    Ok(())
}

/// The `WorkOS-Signature` header of `payload` sent at `timestamp_ms`:
/// `t=<unix ms>, v1=<hex HMAC-SHA256(secret, "<t>.<payload>")>`, which the
/// WorkOS SDKs' `constructEvent` verifies.
pub fn signature(secret: &str, timestamp_ms: i64, payload: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes())
        .expect("HMAC-SHA256 accepts a key of any length");
    mac.update(format!("{timestamp_ms}.{payload}").as_bytes());
    format!(
        "t={timestamp_ms}, v1={}",
        hex::encode(mac.finalize().into_bytes())
    )
}

/// The wait before retry number `retry` (1 for the first), with ±10% jitter.
pub fn backoff(schedule: &[Duration], retry: usize) -> Duration {
    let Some(base) = schedule
        .get(retry.saturating_sub(1))
        .or(schedule.last())
        .copied()
    else {
        return Duration::from_secs(60);
    };
    base.mul_f64(rand::thread_rng().gen_range(0.9..1.1))
}

/// A delivery this instance holds the lease of, with what sending it needs.
struct Claimed {
    delivery_id: String,
    lease: String,
    url: String,
    secret: String,
    payload: String,
    attempts: i32,
    event_created_at: String,
}

/// How long a claimed delivery stays this instance's: well beyond one
/// request's timeout, so it is never sent twice at once, and short enough
/// that a crashed instance's deliveries are soon picked up by another.
fn lease_for(config: &crate::Config) -> Duration {
    config.webhook_timeout * 3 + Duration::from_secs(30)
}

/// Claims up to `BATCH` due deliveries. Each claim is a conditional UPDATE
/// that succeeds for one instance only, on either database.
fn claim_due(conn: &mut DbConn, sealer: &KeySealer, lease: Duration) -> QueryResult<Vec<Claimed>> {
    let current = now();
    let due = || {
        webhook_deliveries::table
            .filter(webhook_deliveries::status.eq("pending"))
            .filter(webhook_deliveries::next_attempt_at.le(current.clone()))
            .filter(
                webhook_deliveries::locked_until
                    .is_null()
                    .or(webhook_deliveries::locked_until.lt(current.clone())),
            )
    };
    let candidates: Vec<String> = due()
        .order(webhook_deliveries::next_attempt_at.asc())
        .limit(BATCH)
        .select(webhook_deliveries::id)
        .load(conn)?;
    let mut claimed = Vec::new();
    for id in candidates {
        let until = later(lease);
        let won = diesel::update(due().filter(webhook_deliveries::id.eq(&id)))
            .set(webhook_deliveries::locked_until.eq(&until))
            .execute(conn)?;
        if won == 0 {
            continue;
        }
        let (delivery, event, endpoint): (WebhookDelivery, WebhookEvent, WebhookEndpoint) =
            webhook_deliveries::table
                .inner_join(webhook_events::table)
                .inner_join(webhook_endpoints::table)
                .filter(webhook_deliveries::id.eq(&id))
                .select((
                    WebhookDelivery::as_select(),
                    WebhookEvent::as_select(),
                    WebhookEndpoint::as_select(),
                ))
                .first(conn)?;
        let secret = match secret_of(sealer, &endpoint) {
            Ok(secret) => secret,
            Err(e) => {
                // Without its secret nothing can be signed; say why on the page.
                tracing::error!(endpoint = %endpoint.id, error = %e, "cannot open a webhook secret");
                finish(
                    conn,
                    &id,
                    &until,
                    Outcome::GiveUp(format!("The signing secret cannot be opened: {e}")),
                )?;
                continue;
            }
        };
        claimed.push(Claimed {
            delivery_id: delivery.id,
            lease: until,
            url: endpoint.url,
            secret,
            payload: event.payload,
            attempts: delivery.attempts,
            event_created_at: event.created_at,
        });
    }
    Ok(claimed)
}

/// What one attempt found.
struct AttemptResult {
    attempted_at: String,
    status_code: Option<i32>,
    error: Option<String>,
    duration_ms: i32,
    excerpt: Option<String>,
}

impl AttemptResult {
    fn succeeded(&self) -> bool {
        self.status_code.is_some_and(|s| (200..300).contains(&s))
    }
}

async fn send(http: &reqwest::Client, claimed: &Claimed) -> AttemptResult {
    let attempted_at = now();
    let started = Instant::now();
    let header = signature(
        &claimed.secret,
        Utc::now().timestamp_millis(),
        &claimed.payload,
    );
    let result = http
        .post(&claimed.url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header("WorkOS-Signature", header)
        .body(claimed.payload.clone())
        .send()
        .await;
    let (status_code, error, excerpt) = match result {
        Ok(mut response) => {
            let status = response.status().as_u16();
            let mut body = Vec::new();
            while body.len() < EXCERPT_BYTES {
                match response.chunk().await {
                    Ok(Some(chunk)) => body.extend_from_slice(&chunk),
                    _ => break,
                }
            }
            body.truncate(EXCERPT_BYTES);
            let text = String::from_utf8_lossy(&body).replace('\0', "");
            let error = (!(200..300).contains(&status)).then(|| format!("HTTP {status}"));
            (
                Some(i32::from(status)),
                error,
                Some(text).filter(|t| !t.is_empty()),
            )
        }
        Err(e) => {
            let what = if e.is_timeout() {
                "timed out".to_string()
            } else if e.is_connect() {
                "could not connect".to_string()
            } else if e.is_redirect() {
                "redirects are not followed".to_string()
            } else {
                "request failed".to_string()
            };
            let detail = std::error::Error::source(&e)
                .map(|s| format!(": {s}"))
                .unwrap_or_default();
            (None, Some(format!("{what}{detail}")), None)
        }
    };
    AttemptResult {
        attempted_at,
        status_code,
        error,
        duration_ms: i32::try_from(started.elapsed().as_millis()).unwrap_or(i32::MAX),
        excerpt,
    }
}

enum Outcome {
    Succeeded,
    RetryAt(String),
    GiveUp(String),
}

/// Ends this instance's hold on a delivery. Guarded by the lease, so an
/// instance whose lease ran out cannot overwrite another's result.
fn finish(conn: &mut DbConn, delivery_id: &str, lease: &str, outcome: Outcome) -> QueryResult<()> {
    let at = now();
    let target = webhook_deliveries::table
        .filter(webhook_deliveries::id.eq(delivery_id))
        .filter(webhook_deliveries::locked_until.eq(lease));
    match outcome {
        Outcome::Succeeded => diesel::update(target)
            .set((
                webhook_deliveries::status.eq("succeeded"),
                webhook_deliveries::locked_until.eq(None::<String>),
                webhook_deliveries::updated_at.eq(&at),
            ))
            .execute(conn)?,
        Outcome::RetryAt(next) => diesel::update(target)
            .set((
                webhook_deliveries::next_attempt_at.eq(next),
                webhook_deliveries::locked_until.eq(None::<String>),
                webhook_deliveries::updated_at.eq(&at),
            ))
            .execute(conn)?,
        Outcome::GiveUp(error) => {
            tracing::info!(delivery = %delivery_id, %error, "webhook delivery failed for good");
            diesel::update(target)
                .set((
                    webhook_deliveries::status.eq("failed"),
                    webhook_deliveries::locked_until.eq(None::<String>),
                    webhook_deliveries::updated_at.eq(&at),
                ))
                .execute(conn)?
        }
    };
    Ok(())
}

/// Records an attempt and decides what comes next: done, a retry after
/// the backoff, or failed once the retry window after the event is over.
fn record_attempt(
    conn: &mut DbConn,
    config: &crate::Config,
    claimed: &Claimed,
    result: AttemptResult,
) -> QueryResult<()> {
    crate::db::write_transaction(conn, |conn| {
        diesel::insert_into(webhook_attempts::table)
            .values(&WebhookAttempt {
                id: new_id("wha"),
                delivery_id: claimed.delivery_id.clone(),
                attempted_at: result.attempted_at.clone(),
                status_code: result.status_code,
                error: result.error.clone(),
                duration_ms: result.duration_ms,
                response_excerpt: result.excerpt.clone(),
            })
            .execute(conn)?;
        diesel::update(
            webhook_deliveries::table
                .filter(webhook_deliveries::id.eq(&claimed.delivery_id))
                .filter(webhook_deliveries::locked_until.eq(&claimed.lease)),
        )
        .set(webhook_deliveries::attempts.eq(webhook_deliveries::attempts + 1))
        .execute(conn)?;
        let outcome = if result.succeeded() {
            Outcome::Succeeded
        } else {
            let retry = usize::try_from(claimed.attempts + 1).unwrap_or(usize::MAX);
            let next = Utc::now()
                + chrono::Duration::from_std(backoff(&config.webhook_retry_schedule, retry))
                    .unwrap_or(chrono::Duration::MAX);
            let window = chrono::Duration::from_std(config.webhook_retry_window)
                .unwrap_or(chrono::Duration::MAX);
            let deadline = parse_stamp(&claimed.event_created_at)
                .and_then(|t| t.checked_add_signed(window))
                .unwrap_or(DateTime::<Utc>::MAX_UTC);
            if next > deadline {
                Outcome::GiveUp(result.error.clone().unwrap_or_default())
            } else {
                Outcome::RetryAt(stamp(next))
            }
        };
        finish(conn, &claimed.delivery_id, &claimed.lease, outcome)
    })
}

/// Sends every delivery that is due, a batch at a time, until none is left.
async fn deliver_due(state: &Arc<AppState>, http: &reqwest::Client) -> Result<(), AppError> {
    loop {
        let sealer = state.sealer.clone();
        let lease = lease_for(&state.config);
        let claimed = state
            .db(move |conn| Ok(claim_due(conn, &sealer, lease)?))
            .await?;
        if claimed.is_empty() {
            return Ok(());
        }
        let full = claimed.len() as i64 == BATCH;
        let mut tasks = Vec::with_capacity(claimed.len());
        for claimed in claimed {
            let http = http.clone();
            let state = state.clone();
            tasks.push(actix_web::rt::spawn(async move {
                let result = send(&http, &claimed).await;
                let config = state.config.clone();
                state
                    .db(move |conn| Ok(record_attempt(conn, &config, &claimed, result)?))
                    .await
            }));
        }
        for task in tasks {
            match task.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "recording a webhook attempt failed"),
                Err(e) => tracing::warn!(error = %e, "a webhook delivery task failed"),
            }
        }
        if !full {
            return Ok(());
        }
    }
}

/// Forgets what is older than `retention`: finished (succeeded or failed)
/// deliveries with their attempts, then the events no delivery refers to
/// any more. Pending deliveries and their events stay, whatever their age.
/// Returns how many deliveries were forgotten.
pub fn prune(conn: &mut DbConn, retention: Duration) -> QueryResult<usize> {
    let cutoff =
        stamp(Utc::now() - chrono::Duration::from_std(retention).unwrap_or(chrono::Duration::MAX));
    crate::db::write_transaction(conn, |conn| {
        let finished = || {
            webhook_deliveries::table
                .filter(webhook_deliveries::status.ne("pending"))
                .filter(webhook_deliveries::created_at.lt(cutoff.clone()))
        };
        diesel::delete(webhook_attempts::table.filter(
            webhook_attempts::delivery_id.eq_any(finished().select(webhook_deliveries::id)),
        ))
        .execute(conn)?;
        let forgotten = diesel::delete(finished()).execute(conn)?;
        diesel::delete(
            webhook_events::table
                .filter(webhook_events::created_at.lt(cutoff.clone()))
                .filter(diesel::dsl::not(diesel::dsl::exists(
                    webhook_deliveries::table
                        .filter(webhook_deliveries::event_id.eq(webhook_events::id)),
                ))),
        )
        .execute(conn)?;
        Ok(forgotten)
    })
}

/// The HTTP client of deliveries: no redirects, a timeout, our user agent.
fn client(config: &crate::Config) -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .user_agent("Flagpole-Webhooks")
        .timeout(config.webhook_timeout)
        .connect_timeout(config.webhook_timeout)
        .redirect(reqwest::redirect::Policy::none())
        .build()?)
}

/// Starts the delivery worker: every `webhook_poll_interval`, and as soon
/// as a change of this instance queues something, it sends what is due;
/// every `webhook_prune_interval` it forgets what is past the retention. It
/// holds the state weakly, so it stops when the application is dropped.
pub fn spawn_worker(state: actix_web::web::Data<AppState>) -> anyhow::Result<()> {
    if !state.config.webhook_delivery {
        return Ok(());
    }
    let http = client(&state.config)?;
    let wakeup = state.webhook_wakeup.clone();
    let interval = state.config.webhook_poll_interval;
    let weak = Arc::downgrade(&state.into_inner());
    actix_web::rt::spawn(async move {
        let mut pruned_at: Option<Instant> = None;
        loop {
            let _ = tokio::time::timeout(interval, wakeup.notified()).await;
            let Some(state) = weak.upgrade() else { break };
            if let Err(e) = deliver_due(&state, &http).await {
                tracing::warn!(error = %e, "sending webhooks failed");
            }
            if pruned_at.is_none_or(|t| t.elapsed() >= state.config.webhook_prune_interval) {
                pruned_at = Some(Instant::now());
                let retention = state.config.webhook_retention;
                match state.db(move |conn| Ok(prune(conn, retention)?)).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(deliveries = n, "forgot old webhook deliveries"),
                    Err(e) => {
                        tracing::warn!(error = %e, "forgetting old webhook deliveries failed")
                    }
                }
            }
        }
    });
    Ok(())
}
