//! Webhooks: endpoints per environment that are told about flag changes.
//!
//! A change queues its events in its own transaction ([`outbox`]), one
//! delivery per subscribed endpoint; a background worker ([`delivery`])
//! claims due deliveries with a lease, POSTs them signed the way WorkOS
//! signs its webhooks, and retries failures with backoff. [`endpoints`]
//! manages the endpoints themselves.

pub mod delivery;
pub mod endpoints;
pub mod guard;
pub mod outbox;

use std::time::Duration;

use diesel::prelude::*;
use hmac::{Hmac, Mac};
use rand::Rng;
use sha2::Sha256;

use crate::db::schema::{webhook_attempts, webhook_deliveries, webhook_endpoints, webhook_events};
use crate::ids::{
    EnvironmentId, WebhookAttemptId, WebhookDeliveryId, WebhookEndpointId, WebhookEventId,
};
use crate::time::Timestamp;

/// The events an endpoint can subscribe to, in the order forms list them.
pub const EVENTS: [&str; 4] = [
    "flag.created",
    "flag.updated",
    "flag.deleted",
    "flag.rule_updated",
];

crate::text_enum! {
    /// Where a delivery is.
    pub enum DeliveryStatus {
        Pending = "pending",
        Succeeded = "succeeded",
        Failed = "failed",
    }
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = webhook_endpoints)]
pub struct WebhookEndpoint {
    pub id: WebhookEndpointId,
    pub environment_id: EnvironmentId,
    pub url: String,
    pub description: String,
    /// A comma-separated subset of [`EVENTS`].
    pub events: String,
    /// The signing secret, sealed with the endpoint id as associated data.
    pub secret_sealed: String,
    pub secret_prefix: String,
    pub enabled: bool,
    pub created_by: String,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl WebhookEndpoint {
    /// The events it subscribes to, in [`EVENTS`] order.
    pub fn events(&self) -> Vec<&'static str> {
        EVENTS
            .iter()
            .copied()
            .filter(|e| self.events.split(',').any(|s| s == *e))
            .collect()
    }

    pub fn subscribes_to(&self, event: &str) -> bool {
        self.events.split(',').any(|e| e == event)
    }
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = webhook_events)]
pub struct WebhookEvent {
    pub id: WebhookEventId,
    pub event: String,
    pub environment_id: EnvironmentId,
    /// The exact JSON text that is POSTed and signed.
    pub payload: String,
    pub created_at: Timestamp,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = webhook_deliveries)]
pub struct WebhookDelivery {
    pub id: WebhookDeliveryId,
    pub endpoint_id: WebhookEndpointId,
    pub event_id: WebhookEventId,
    pub status: DeliveryStatus,
    pub attempts: i32,
    pub next_attempt_at: Timestamp,
    /// While set and in the future, one instance is sending this delivery.
    pub locked_until: Option<Timestamp>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = webhook_attempts)]
pub struct WebhookAttempt {
    pub id: WebhookAttemptId,
    pub delivery_id: WebhookDeliveryId,
    pub attempted_at: Timestamp,
    pub status_code: Option<i32>,
    pub error: Option<String>,
    pub duration_ms: i32,
    pub response_excerpt: Option<String>,
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
