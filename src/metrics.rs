//! Prometheus metrics, served as text at `/metrics` (no key needed;
//! `FLAGPOLE_METRICS=false` turns them off): requests by route and status
//! with latency histograms, evaluations per environment, the live model
//! (revision, apply lag, build and patch durations), the pool (connections
//! in use, checkouts and their waits), webhooks (queue depth, delivery
//! results) and sessions (issued, refreshes refused by reason).
//!
//! Counters and histograms are updated where things happen; values that
//! live elsewhere (the model's revision, the pool's state, the webhook
//! queue) are read when the metrics are scraped.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// The route's pattern (`/api/v1/feature-flags/{slug}`), not the path,
    /// so that ids do not make new series.
    pub route: String,
    pub method: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EvaluationLabels {
    pub environment: String,
    /// Which surface answered: `api`, `ofrep`, `token`, `workos`.
    pub surface: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EnvironmentLabels {
    pub environment: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: &'static str,
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 50 µs to about 1.6 s.
    Histogram::new(exponential_buckets(0.000_05, 2.0, 16))
}

fn apply_histogram() -> Histogram {
    // 100 µs to about 13 s.
    Histogram::new(exponential_buckets(0.000_1, 2.0, 18))
}

/// Every metric of an instance.
pub struct Metrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub request_seconds: Histograms<RouteLabels>,
    pub evaluations: Family<EvaluationLabels, Counter>,
    pub sessions_issued: Family<EnvironmentLabels, Counter>,
    pub refreshes_refused: Family<ReasonLabels, Counter>,
    pub webhook_deliveries: Family<ResultLabels, Counter>,
    pub model_build_seconds: Histogram,
    pub model_patch_seconds: Histogram,
    pub model_changes_applied: Counter,
    // Read when scraped.
    pub model_revision: Gauge,
    pub model_apply_lag_seconds: Gauge<f64, std::sync::atomic::AtomicU64>,
    pub model_targets: Gauge,
    pub pool_connections: Gauge,
    pub pool_idle_connections: Gauge,
    pub pool_checkouts: Gauge,
    pub pool_checkout_wait_seconds: Gauge<f64, std::sync::atomic::AtomicU64>,
    pub pool_timeouts: Gauge,
    pub webhook_queue_depth: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("flagpole");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register("http_requests", "HTTP requests answered", requests.clone());
        let request_seconds: Histograms<RouteLabels> =
            Family::new_with_constructor(latency_histogram);
        registry.register_with_unit(
            "http_request_duration",
            "Time to answer a request",
            Unit::Seconds,
            request_seconds.clone(),
        );
        let evaluations = Family::<EvaluationLabels, Counter>::default();
        registry.register(
            "evaluations",
            "Evaluation answers given, by environment and surface",
            evaluations.clone(),
        );
        let sessions_issued = Family::<EnvironmentLabels, Counter>::default();
        registry.register(
            "sessions_issued",
            "Sessions started by the token endpoint",
            sessions_issued.clone(),
        );
        let refreshes_refused = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "refreshes_refused",
            "Refresh tokens refused, by reason",
            refreshes_refused.clone(),
        );
        let webhook_deliveries = Family::<ResultLabels, Counter>::default();
        registry.register(
            "webhook_delivery_attempts",
            "Webhook delivery attempts, by result",
            webhook_deliveries.clone(),
        );
        let model_build_seconds = apply_histogram();
        registry.register_with_unit(
            "model_build_duration",
            "Time to build the live model afresh",
            Unit::Seconds,
            model_build_seconds.clone(),
        );
        let model_patch_seconds = apply_histogram();
        registry.register_with_unit(
            "model_patch_duration",
            "Time to patch the live model with logged changes",
            Unit::Seconds,
            model_patch_seconds.clone(),
        );
        let model_changes_applied = Counter::default();
        registry.register(
            "model_changes_applied",
            "Logged changes applied to the live model",
            model_changes_applied.clone(),
        );
        let model_revision = Gauge::default();
        registry.register(
            "model_revision",
            "The change revision the live model reflects",
            model_revision.clone(),
        );
        let model_apply_lag_seconds = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        registry.register_with_unit(
            "model_apply_lag",
            "From the commit of the last applied change to its application",
            Unit::Seconds,
            model_apply_lag_seconds.clone(),
        );
        let model_targets = Gauge::default();
        registry.register(
            "model_targets",
            "Targets in the live model",
            model_targets.clone(),
        );
        let pool_connections = Gauge::default();
        registry.register(
            "pool_connections",
            "Database connections open in the pool",
            pool_connections.clone(),
        );
        let pool_idle_connections = Gauge::default();
        registry.register(
            "pool_idle_connections",
            "Database connections open and not in use",
            pool_idle_connections.clone(),
        );
        let pool_checkouts = Gauge::default();
        registry.register(
            "pool_checkouts",
            "Connections handed out by the pool since start",
            pool_checkouts.clone(),
        );
        let pool_checkout_wait_seconds = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        registry.register_with_unit(
            "pool_checkout_wait",
            "Time spent waiting for a connection since start",
            Unit::Seconds,
            pool_checkout_wait_seconds.clone(),
        );
        let pool_timeouts = Gauge::default();
        registry.register(
            "pool_timeouts",
            "Checkouts that gave up waiting since start",
            pool_timeouts.clone(),
        );
        let webhook_queue_depth = Gauge::default();
        registry.register(
            "webhook_queue_depth",
            "Webhook deliveries waiting to be sent",
            webhook_queue_depth.clone(),
        );
        Metrics {
            registry,
            requests,
            request_seconds,
            evaluations,
            sessions_issued,
            refreshes_refused,
            webhook_deliveries,
            model_build_seconds,
            model_patch_seconds,
            model_changes_applied,
            model_revision,
            model_apply_lag_seconds,
            model_targets,
            pool_connections,
            pool_idle_connections,
            pool_checkouts,
            pool_checkout_wait_seconds,
            pool_timeouts,
            webhook_queue_depth,
        }
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Metrics {
    /// Counts an evaluation answer.
    pub fn evaluated(&self, environment: &str, surface: &'static str) {
        self.evaluations
            .get_or_create(&EvaluationLabels {
                environment: environment.to_string(),
                surface,
            })
            .inc();
    }

    /// The metrics in the Prometheus text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
