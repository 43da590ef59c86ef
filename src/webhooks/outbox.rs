//! The outbox: events queued inside the transaction of the change they
//! announce, one delivery per subscribed endpoint, and forgotten after the
//! retention period once finished.

use std::time::Duration;

use diesel::prelude::*;
use serde::Serialize;
use serde_json::{Map, Value};

use super::{DeliveryStatus, WebhookDelivery, WebhookEvent};
use crate::audit::Actor;
use crate::db::schema::{
    environments, webhook_attempts, webhook_deliveries, webhook_endpoints, webhook_events,
};
use crate::db::DbConn;
use crate::environments::Environment;
use crate::error::Result;
use crate::ids::{EnvironmentId, WebhookDeliveryId, WebhookEndpointId, WebhookEventId};
use crate::time::Timestamp;

/// Which environments a change concerns.
#[derive(Debug, Clone, Copy)]
pub enum Scope<'a> {
    /// A change of a flag itself: every environment hears of it.
    Everywhere,
    /// A change in one environment.
    In(&'a EnvironmentId),
}

/// The enabled endpoints subscribed to one event, with their environments.
pub struct Subscribers {
    endpoints: Vec<(WebhookEndpointId, EnvironmentId)>,
    environments: Vec<Environment>,
}

impl Subscribers {
    pub fn is_empty(&self) -> bool {
        self.endpoints.is_empty()
    }

    /// The environments with at least one subscriber, in switcher order.
    pub fn environments(&self) -> impl Iterator<Item = &Environment> {
        self.environments.iter()
    }
}

/// The endpoints that would be told of `event` in `scope`; one small query
/// when there are none.
pub fn subscribers(conn: &mut DbConn, event: &str, scope: Scope<'_>) -> Result<Subscribers> {
    let mut query = webhook_endpoints::table
        .filter(webhook_endpoints::enabled.eq(true))
        .select((
            webhook_endpoints::id,
            webhook_endpoints::environment_id,
            webhook_endpoints::events,
        ))
        .into_boxed();
    if let Scope::In(env_id) = scope {
        query = query.filter(webhook_endpoints::environment_id.eq(env_id.clone()));
    }
    let endpoints: Vec<(WebhookEndpointId, EnvironmentId)> = query
        .load::<(WebhookEndpointId, EnvironmentId, String)>(conn)?
        .into_iter()
        .filter(|(_, _, events)| events.split(',').any(|e| e == event))
        .map(|(id, env, _)| (id, env))
        .collect();
    let environments = if endpoints.is_empty() {
        Vec::new()
    } else {
        let env_ids: Vec<&EnvironmentId> = endpoints.iter().map(|(_, env)| env).collect();
        environments::table
            .filter(environments::id.eq_any(env_ids))
            .order((environments::position.asc(), environments::created_at.asc()))
            .select(Environment::as_select())
            .load(conn)?
    };
    Ok(Subscribers {
        endpoints,
        environments,
    })
}

/// What is POSTed. The field order is fixed here so every payload reads the
/// same; `data` is the object the event is about.
#[derive(Serialize)]
struct Envelope<'a> {
    id: &'a WebhookEventId,
    event: &'a str,
    data: Value,
    created_at: Timestamp,
    context: Value,
}

thread_local! {
    /// Whether this thread queued a delivery since [`take_queued`].
    static QUEUED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Whether the work run on this thread since the last call queued a
/// delivery (for the webhook worker to send); resets the mark. A write that
/// queued nothing (a session started) does not wake the worker, which would
/// only look for deliveries there are none of.
pub fn take_queued() -> bool {
    QUEUED.with(|q| q.replace(false))
}

/// Queues `event` for `subscribers`: per environment, the `data` that
/// `data_in` gives (environments it gives none for are skipped), with a
/// context of the environment, its client id, the actor and `context`.
pub fn queue(
    conn: &mut DbConn,
    event: &str,
    subscribers: &Subscribers,
    actor: &Actor,
    context: &Value,
    mut data_in: impl FnMut(&Environment) -> Option<Value>,
) -> Result<()> {
    let at = Timestamp::now();
    let mut deliveries = Vec::new();
    for env in &subscribers.environments {
        let Some(data) = data_in(env) else {
            continue;
        };
        let mut full_context = Map::new();
        full_context.insert("client_id".into(), Value::String(env.client_id.to_string()));
        full_context.insert(
            "environment".into(),
            serde_json::json!({"id": env.id, "slug": env.slug, "name": env.name}),
        );
        full_context.insert("actor".into(), actor.as_event_actor());
        if let Value::Object(extra) = context {
            for (k, v) in extra {
                full_context.insert(k.clone(), v.clone());
            }
        }
        let event_id = WebhookEventId::generate();
        let payload = serde_json::to_string(&Envelope {
            id: &event_id,
            event,
            data,
            created_at: at,
            context: Value::Object(full_context),
        })
        .map_err(crate::error::Error::internal)?;
        diesel::insert_into(webhook_events::table)
            .values(&WebhookEvent {
                id: event_id.clone(),
                event: event.to_string(),
                environment_id: env.id.clone(),
                payload,
                created_at: at,
            })
            .execute(conn)?;
        for (endpoint_id, _) in subscribers.endpoints.iter().filter(|(_, e)| *e == env.id) {
            deliveries.push(WebhookDelivery {
                id: WebhookDeliveryId::generate(),
                endpoint_id: endpoint_id.clone(),
                event_id: event_id.clone(),
                status: DeliveryStatus::Pending,
                attempts: 0,
                next_attempt_at: at,
                locked_until: None,
                created_at: at,
                updated_at: at,
            });
        }
    }
    if !deliveries.is_empty() {
        QUEUED.with(|q| q.set(true));
    }
    for chunk in deliveries.chunks(500) {
        crate::with_backend!(conn, |c| diesel::insert_into(webhook_deliveries::table)
            .values(chunk)
            .execute(c))?;
    }
    Ok(())
}

/// Forgets what is older than `retention`: finished (succeeded or failed)
/// deliveries with their attempts, then the events no delivery refers to
/// any more. Pending deliveries and their events stay, whatever their age.
/// Returns how many deliveries were forgotten.
pub fn prune(conn: &mut DbConn, retention: Duration) -> Result<usize> {
    let cutoff = Timestamp::now().minus(retention);
    crate::db::write_transaction(conn, |conn| {
        let finished = || {
            webhook_deliveries::table
                .filter(webhook_deliveries::status.ne(DeliveryStatus::Pending))
                .filter(webhook_deliveries::created_at.lt(cutoff))
        };
        diesel::delete(webhook_attempts::table.filter(
            webhook_attempts::delivery_id.eq_any(finished().select(webhook_deliveries::id)),
        ))
        .execute(conn)?;
        let forgotten = diesel::delete(finished()).execute(conn)?;
        diesel::delete(
            webhook_events::table
                .filter(webhook_events::created_at.lt(cutoff))
                .filter(diesel::dsl::not(diesel::dsl::exists(
                    webhook_deliveries::table
                        .filter(webhook_deliveries::event_id.eq(webhook_events::id)),
                ))),
        )
        .execute(conn)?;
        Ok(forgotten)
    })
}

/// How many deliveries wait to be sent (or retried).
pub fn pending_count(conn: &mut DbConn) -> Result<i64> {
    Ok(webhook_deliveries::table
        .filter(webhook_deliveries::status.eq(DeliveryStatus::Pending))
        .count()
        .get_result(conn)?)
}
