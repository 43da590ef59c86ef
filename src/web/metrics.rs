//! `/metrics` (Prometheus text format, no key needed) and the middleware
//! that counts and times every request by its route.

use std::sync::atomic::Ordering;
use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{web, HttpResponse};

use crate::error::{Entity, Error, Result};
use crate::metrics::{RequestLabels, RouteLabels};
use crate::AppState;

/// Counts and times the request under its route's pattern.
pub async fn count_requests(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> std::result::Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let state = req.app_data::<web::Data<AppState>>().cloned();
    let started = Instant::now();
    let response = next.call(req).await?;
    if let Some(state) = state.filter(|s| s.config.metrics) {
        let route = response
            .request()
            .match_pattern()
            .unwrap_or_else(|| "unmatched".into());
        state
            .metrics
            .requests
            .get_or_create(&RequestLabels {
                route: route.clone(),
                method: response.request().method().to_string(),
                status: response.status().as_u16(),
            })
            .inc();
        state
            .metrics
            .request_seconds
            .get_or_create(&RouteLabels { route })
            .observe(started.elapsed().as_secs_f64());
    }
    Ok(response)
}

/// Every metric, with the values kept elsewhere read now.
pub async fn scrape(state: web::Data<AppState>) -> Result<HttpResponse> {
    if !state.config.metrics {
        return Err(Error::NotFound(Entity::Page));
    }
    let m = &state.metrics;
    let snapshot = state.model();
    m.model_revision.set(snapshot.revision);
    m.model_targets.set(snapshot.sizes().targets as i64);
    let lag = state
        .model
        .stats
        .lock()
        .map(|s| s.last_lag.as_secs_f64())
        .unwrap_or_default();
    m.model_apply_lag_seconds.set(lag);
    let pool = state.pool.state();
    m.pool_connections.set(i64::from(pool.connections));
    m.pool_idle_connections
        .set(i64::from(pool.idle_connections));
    let db = &state.db_stats;
    m.pool_checkouts
        .set(db.checkouts.load(Ordering::Relaxed) as i64);
    m.pool_checkout_wait_seconds
        .set(db.checkout_wait_micros.load(Ordering::Relaxed) as f64 / 1e6);
    m.pool_timeouts
        .set(db.timeouts.load(Ordering::Relaxed) as i64);
    let depth = state.read(crate::webhooks::outbox::pending_count).await?;
    m.webhook_queue_depth.set(depth);
    Ok(HttpResponse::Ok()
        .content_type("application/openmetrics-text; version=1.0.0; charset=utf-8")
        .body(m.encode()))
}
