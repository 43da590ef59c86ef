//! Webhook endpoints: where an environment's events go, with their signing
//! secret (shown once, stored sealed) and their recent deliveries.

use diesel::prelude::*;
use serde_json::{json, Value};

use super::guard::{keep_credentials, redact, Guard};
use super::{WebhookAttempt, WebhookDelivery, WebhookEndpoint, WebhookEvent, EVENTS};
use crate::audit::{Actor, Change};
use crate::db::schema::{
    environments, webhook_attempts, webhook_deliveries, webhook_endpoints, webhook_events,
};
use crate::db::DbConn;
use crate::error::{Entity, FieldErrors, OrNotFound, Result};
use crate::ids::{random_token, EnvironmentId, WebhookDeliveryId, WebhookEndpointId};
use crate::time::Timestamp;
use crate::tokens::keys::KeySealer;
use crate::validate;

/// The longest endpoint URL accepted.
pub const MAX_URL_LENGTH: usize = 2000;

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

fn validate_input(input: &EndpointInput, guard: &Guard) -> Result<ValidEndpoint> {
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
            Ok(parsed) => {
                if let Some(why) = guard.refuses_url(&parsed) {
                    errors.add("url", why);
                }
            }
            Err(e) => errors.add("url", format!("This is not a valid URL ({e}).")),
        }
    }
    let description = errors.check(
        "description",
        validate::text(&input.description, "description", 500),
    );
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

fn new_secret() -> String {
    format!("whsec_{}", random_token(32))
}

fn state(e: &WebhookEndpoint) -> Value {
    json!({
        "url": redact(&e.url),
        "description": e.description,
        "events": e.events,
        "enabled": e.enabled,
    })
}

fn change(action: &'static str, endpoint: &WebhookEndpoint) -> Change {
    Change::new(
        action,
        "webhook_endpoint",
        &endpoint.id,
        redact(&endpoint.url),
    )
    .environment(&endpoint.environment_id)
}

/// Adds an endpoint to an environment and returns it with its signing
/// secret, which is stored sealed and shown only this once.
pub fn create(
    conn: &mut DbConn,
    sealer: &KeySealer,
    actor: &Actor,
    environment_id: &EnvironmentId,
    input: &EndpointInput,
    guard: &Guard,
) -> Result<(WebhookEndpoint, String)> {
    let valid = validate_input(input, guard)?;
    let secret = new_secret();
    let id = WebhookEndpointId::generate();
    let sealed = sealer.seal(secret.as_bytes(), id.as_str())?;
    crate::db::write_transaction(conn, |conn| {
        let env_id: EnvironmentId = environments::table
            .find(environment_id)
            .select(environments::id)
            .first(conn)
            .or_not_found(Entity::Environment)?;
        let at = Timestamp::now();
        let endpoint = WebhookEndpoint {
            id: id.clone(),
            environment_id: env_id,
            url: valid.url.clone(),
            description: valid.description.clone(),
            events: valid.events.clone(),
            secret_sealed: sealed.clone(),
            secret_prefix: secret[..12].to_string(),
            enabled: true,
            created_by: actor.label(),
            created_at: at,
            updated_at: at,
        };
        diesel::insert_into(webhook_endpoints::table)
            .values(&endpoint)
            .execute(conn)?;
        change("webhook_endpoint.created", &endpoint)
            .after(state(&endpoint))
            .record(conn, actor)?;
        Ok((endpoint, secret.clone()))
    })
}

pub fn get(conn: &mut DbConn, id: &WebhookEndpointId) -> Result<WebhookEndpoint> {
    webhook_endpoints::table
        .find(id)
        .select(WebhookEndpoint::as_select())
        .first(conn)
        .or_not_found(Entity::WebhookEndpoint)
}

/// Changes an endpoint's URL, description and events.
pub fn update(
    conn: &mut DbConn,
    actor: &Actor,
    id: &WebhookEndpointId,
    input: &EndpointInput,
    guard: &Guard,
) -> Result<WebhookEndpoint> {
    crate::db::write_transaction(conn, |conn| {
        let before = get(conn, id)?;
        // The form showed the URL with its credentials as ***: where they
        // still are, the stored ones stay.
        let input = EndpointInput {
            url: keep_credentials(input.url.trim(), &before.url),
            description: input.description.clone(),
            events: input.events.clone(),
        };
        let valid = validate_input(&input, guard)?;
        diesel::update(webhook_endpoints::table.find(id))
            .set((
                webhook_endpoints::url.eq(&valid.url),
                webhook_endpoints::description.eq(&valid.description),
                webhook_endpoints::events.eq(&valid.events),
                webhook_endpoints::updated_at.eq(Timestamp::now()),
            ))
            .execute(conn)?;
        let after = get(conn, id)?;
        change("webhook_endpoint.updated", &after)
            .before(state(&before))
            .after(state(&after))
            .record(conn, actor)?;
        Ok(after)
    })
}

/// Turns an endpoint on or off; a disabled endpoint is sent nothing new.
pub fn set_enabled(
    conn: &mut DbConn,
    actor: &Actor,
    id: &WebhookEndpointId,
    enabled: bool,
) -> Result<WebhookEndpoint> {
    crate::db::write_transaction(conn, |conn| {
        let before = get(conn, id)?;
        if before.enabled == enabled {
            return Ok(before);
        }
        diesel::update(webhook_endpoints::table.find(id))
            .set((
                webhook_endpoints::enabled.eq(enabled),
                webhook_endpoints::updated_at.eq(Timestamp::now()),
            ))
            .execute(conn)?;
        let after = get(conn, id)?;
        let action = if enabled {
            "webhook_endpoint.enabled"
        } else {
            "webhook_endpoint.disabled"
        };
        change(action, &after)
            .before(json!({"enabled": before.enabled}))
            .after(json!({"enabled": enabled}))
            .record(conn, actor)?;
        Ok(after)
    })
}

/// Replaces an endpoint's signing secret and returns the new one, shown once.
pub fn rotate_secret(
    conn: &mut DbConn,
    sealer: &KeySealer,
    actor: &Actor,
    id: &WebhookEndpointId,
) -> Result<(WebhookEndpoint, String)> {
    let secret = new_secret();
    let sealed = sealer.seal(secret.as_bytes(), id.as_str())?;
    crate::db::write_transaction(conn, |conn| {
        let before = get(conn, id)?;
        diesel::update(webhook_endpoints::table.find(id))
            .set((
                webhook_endpoints::secret_sealed.eq(&sealed),
                webhook_endpoints::secret_prefix.eq(&secret[..12]),
                webhook_endpoints::updated_at.eq(Timestamp::now()),
            ))
            .execute(conn)?;
        let after = get(conn, id)?;
        change("webhook_endpoint.secret_rotated", &after)
            .before(json!({"secret": format!("{}…", before.secret_prefix)}))
            .after(json!({"secret": format!("{}…", after.secret_prefix)}))
            .record(conn, actor)?;
        Ok((after, secret.clone()))
    })
}

/// Deletes an endpoint with its deliveries and their attempts.
pub fn delete(conn: &mut DbConn, actor: &Actor, id: &WebhookEndpointId) -> Result<WebhookEndpoint> {
    crate::db::write_transaction(conn, |conn| {
        let before = get(conn, id)?;
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
        change("webhook_endpoint.deleted", &before)
            .before(state(&before))
            .record(conn, actor)?;
        Ok(before)
    })
}

/// The signing secret of an endpoint, opened.
pub fn secret_of(sealer: &KeySealer, endpoint: &WebhookEndpoint) -> anyhow::Result<String> {
    let bytes = sealer.open(&endpoint.secret_sealed, endpoint.id.as_str())?;
    Ok(String::from_utf8(bytes)?)
}

/// An endpoint as the Webhooks page lists it.
pub struct EndpointSummary {
    pub endpoint: WebhookEndpoint,
    /// The state of the newest delivery, if any.
    pub last_status: Option<super::DeliveryStatus>,
}

pub fn list(conn: &mut DbConn, environment_id: &EnvironmentId) -> Result<Vec<EndpointSummary>> {
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
            .first(conn)
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
    endpoint_id: &WebhookEndpointId,
    limit: i64,
) -> Result<Vec<DeliveryDetails>> {
    let rows: Vec<(WebhookDelivery, WebhookEvent)> = webhook_deliveries::table
        .inner_join(webhook_events::table)
        .filter(webhook_deliveries::endpoint_id.eq(endpoint_id))
        .order(webhook_deliveries::id.desc())
        .limit(limit)
        .select((WebhookDelivery::as_select(), WebhookEvent::as_select()))
        .load(conn)?;
    let ids: Vec<&WebhookDeliveryId> = rows.iter().map(|(d, _)| &d.id).collect();
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
