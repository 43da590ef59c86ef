//! The delivery worker: claims due deliveries with a lease (so two
//! instances never send the same attempt), POSTs them signed, records each
//! attempt, and retries failures with backoff until the retry window after
//! the event is over. It needs the pool, the settings and the sealer, and
//! wakes early when a change of this instance queued something.

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use diesel::prelude::*;
use tokio::sync::Notify;

use super::endpoints::secret_of;
use super::{
    backoff, outbox, signature, DeliveryStatus, WebhookAttempt, WebhookDelivery, WebhookEndpoint,
    WebhookEvent,
};
use crate::db::schema::{webhook_attempts, webhook_deliveries, webhook_endpoints, webhook_events};
use crate::db::{DbConn, Pool};
use crate::error::Result;
use crate::ids::{WebhookAttemptId, WebhookDeliveryId};
use crate::time::Timestamp;
use crate::tokens::keys::KeySealer;

/// How much of a response body an attempt keeps.
const EXCERPT_BYTES: usize = 500;
/// How many deliveries one instance sends at once.
const BATCH: i64 = 20;

/// What the worker is told by the configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    pub retry_schedule: Vec<Duration>,
    pub retry_window: Duration,
    pub poll_interval: Duration,
    pub timeout: Duration,
    pub retention: Duration,
    pub prune_interval: Duration,
    /// Where deliveries may go.
    pub guard: Arc<super::guard::Guard>,
}

impl Settings {
    /// How long a claimed delivery stays this instance's: well beyond one
    /// request's timeout, so it is never sent twice at once, and short enough
    /// that a crashed instance's deliveries are soon picked up by another.
    fn lease(&self) -> Duration {
        self.timeout * 3 + Duration::from_secs(30)
    }
}

/// A delivery this instance holds the lease of, with what sending it needs.
struct Claimed {
    delivery_id: WebhookDeliveryId,
    lease: Timestamp,
    url: String,
    secret: String,
    payload: String,
    attempts: i32,
    event_created_at: Timestamp,
}

/// Claims up to `BATCH` due deliveries. Each claim is a conditional UPDATE
/// that succeeds for one instance only, on either database.
fn claim_due(conn: &mut DbConn, sealer: &KeySealer, lease: Duration) -> Result<Vec<Claimed>> {
    let current = Timestamp::now();
    let due = || {
        webhook_deliveries::table
            .filter(webhook_deliveries::status.eq(DeliveryStatus::Pending))
            .filter(webhook_deliveries::next_attempt_at.le(current))
            .filter(
                webhook_deliveries::locked_until
                    .is_null()
                    .or(webhook_deliveries::locked_until.lt(current)),
            )
    };
    let candidates: Vec<WebhookDeliveryId> = due()
        .order(webhook_deliveries::next_attempt_at.asc())
        .limit(BATCH)
        .select(webhook_deliveries::id)
        .load(conn)?;
    let mut claimed = Vec::new();
    for id in candidates {
        let until = Timestamp::now().plus(lease);
        let won = diesel::update(due().filter(webhook_deliveries::id.eq(&id)))
            .set(webhook_deliveries::locked_until.eq(until))
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
                    until,
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
    attempted_at: Timestamp,
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

async fn send(
    http: &reqwest::Client,
    guard: &super::guard::Guard,
    claimed: &Claimed,
) -> AttemptResult {
    let attempted_at = Timestamp::now();
    let started = Instant::now();
    // An address in the URL itself is never looked up: check it here. Names
    // are checked by the resolver, on the addresses they resolve to.
    let refused = reqwest::Url::parse(&claimed.url)
        .ok()
        .and_then(|url| guard.refuses_url(&url));
    if let Some(why) = refused {
        return AttemptResult {
            attempted_at,
            status_code: None,
            error: Some(format!("refused: {why}")),
            duration_ms: 0,
            excerpt: None,
        };
    }
    let header = signature(
        &claimed.secret,
        Timestamp::now().unix_millis(),
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
            let text: String = String::from_utf8_lossy(&body)
                .chars()
                .filter(|c| !c.is_control() || matches!(c, '\n' | '\t'))
                .collect();
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
    RetryAt(Timestamp),
    GiveUp(String),
}

/// Ends this instance's hold on a delivery. Guarded by the lease, so an
/// instance whose lease ran out cannot overwrite another's result.
fn finish(
    conn: &mut DbConn,
    delivery_id: &WebhookDeliveryId,
    lease: Timestamp,
    outcome: Outcome,
) -> Result<()> {
    let at = Timestamp::now();
    let target = webhook_deliveries::table
        .filter(webhook_deliveries::id.eq(delivery_id))
        .filter(webhook_deliveries::locked_until.eq(lease));
    let (status, next) = match outcome {
        Outcome::Succeeded => (DeliveryStatus::Succeeded, None),
        Outcome::RetryAt(next) => (DeliveryStatus::Pending, Some(next)),
        Outcome::GiveUp(error) => {
            tracing::info!(delivery = %delivery_id, %error, "webhook delivery failed for good");
            (DeliveryStatus::Failed, None)
        }
    };
    match next {
        Some(next) => diesel::update(target)
            .set((
                webhook_deliveries::next_attempt_at.eq(next),
                webhook_deliveries::locked_until.eq(None::<Timestamp>),
                webhook_deliveries::updated_at.eq(at),
            ))
            .execute(conn)?,
        None => diesel::update(target)
            .set((
                webhook_deliveries::status.eq(status),
                webhook_deliveries::locked_until.eq(None::<Timestamp>),
                webhook_deliveries::updated_at.eq(at),
            ))
            .execute(conn)?,
    };
    Ok(())
}

/// Records an attempt and decides what comes next: done, a retry after
/// the backoff, or failed once the retry window after the event is over.
fn record_attempt(
    conn: &mut DbConn,
    settings: &Settings,
    claimed: &Claimed,
    result: AttemptResult,
) -> Result<()> {
    crate::db::write_transaction(conn, |conn| {
        diesel::insert_into(webhook_attempts::table)
            .values(&WebhookAttempt {
                id: WebhookAttemptId::generate(),
                delivery_id: claimed.delivery_id.clone(),
                attempted_at: result.attempted_at,
                status_code: result.status_code,
                error: result.error.clone(),
                duration_ms: result.duration_ms,
                response_excerpt: result.excerpt.clone(),
            })
            .execute(conn)?;
        diesel::update(
            webhook_deliveries::table
                .filter(webhook_deliveries::id.eq(&claimed.delivery_id))
                .filter(webhook_deliveries::locked_until.eq(claimed.lease)),
        )
        .set(webhook_deliveries::attempts.eq(webhook_deliveries::attempts + 1))
        .execute(conn)?;
        let outcome = if result.succeeded() {
            Outcome::Succeeded
        } else {
            let retry = usize::try_from(claimed.attempts + 1).unwrap_or(usize::MAX);
            let next = Timestamp::now().plus(backoff(&settings.retry_schedule, retry));
            let deadline = claimed.event_created_at.plus(settings.retry_window);
            if next > deadline {
                Outcome::GiveUp(result.error.clone().unwrap_or_default())
            } else {
                Outcome::RetryAt(next)
            }
        };
        finish(conn, &claimed.delivery_id, claimed.lease, outcome)
    })
}

/// The HTTP client of deliveries: no redirects, no proxy, a timeout, our
/// user agent, and a resolver that only returns addresses the guard allows.
fn client(settings: &Settings) -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .user_agent("Flagpole-Webhooks")
        .no_proxy()
        .dns_resolver(Arc::new(super::guard::GuardedResolver {
            guard: settings.guard.clone(),
        }))
        .timeout(settings.timeout)
        .connect_timeout(settings.timeout)
        .redirect(reqwest::redirect::Policy::none())
        .build()?)
}

/// The running worker's dependencies.
struct Worker {
    pool: Pool,
    sealer: KeySealer,
    settings: Settings,
    http: reqwest::Client,
    metrics: Arc<crate::metrics::Metrics>,
}

impl Worker {
    /// Sends every delivery that is due, a batch at a time, until none is left.
    async fn deliver_due(self: &Arc<Self>) -> Result<()> {
        loop {
            let sealer = self.sealer.clone();
            let lease = self.settings.lease();
            let claimed =
                crate::db::run(&self.pool, move |conn| claim_due(conn, &sealer, lease)).await?;
            if claimed.is_empty() {
                return Ok(());
            }
            let full = claimed.len() as i64 == BATCH;
            let mut tasks = Vec::with_capacity(claimed.len());
            for claimed in claimed {
                let worker = self.clone();
                tasks.push(actix_web::rt::spawn(async move {
                    let result = send(&worker.http, &worker.settings.guard, &claimed).await;
                    let label = if result.succeeded() {
                        "succeeded"
                    } else if result.status_code.is_some() {
                        "refused"
                    } else {
                        "unreachable"
                    };
                    worker
                        .metrics
                        .webhook_deliveries
                        .get_or_create(&crate::metrics::ResultLabels { result: label })
                        .inc();
                    let settings = worker.settings.clone();
                    crate::db::run(&worker.pool, move |conn| {
                        record_attempt(conn, &settings, &claimed, result)
                    })
                    .await
                }));
            }
            for task in tasks {
                match task.await {
                    Err(e) => tracing::warn!(error = %e, "a webhook delivery task failed"),
                    Ok(recorded) => {
                        if let Err(e) = recorded {
                            tracing::warn!(error = %e, "recording a webhook attempt failed");
                        }
                    }
                }
            }
            if !full {
                return Ok(());
            }
        }
    }
}

/// Starts the delivery worker: every `poll_interval`, and as soon as
/// `wakeup` is notified, it sends what is due; every `prune_interval` it
/// forgets what is past the retention. It stops when `wakeup` is dropped.
pub fn spawn(
    pool: Pool,
    sealer: KeySealer,
    settings: Settings,
    wakeup: Weak<Notify>,
    metrics: Arc<crate::metrics::Metrics>,
) -> anyhow::Result<()> {
    let worker = Arc::new(Worker {
        http: client(&settings)?,
        pool,
        sealer,
        settings,
        metrics,
    });
    actix_web::rt::spawn(async move {
        let mut pruned_at: Option<Instant> = None;
        while let Some(notify) = wakeup.upgrade() {
            let _ = tokio::time::timeout(worker.settings.poll_interval, notify.notified()).await;
            drop(notify);
            if wakeup.strong_count() == 0 {
                break;
            }
            if let Err(e) = worker.deliver_due().await {
                tracing::warn!(error = %e, "sending webhooks failed");
            }
            if pruned_at.is_none_or(|t| t.elapsed() >= worker.settings.prune_interval) {
                pruned_at = Some(Instant::now());
                let retention = worker.settings.retention;
                match crate::db::run(&worker.pool, move |conn| outbox::prune(conn, retention)).await
                {
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
