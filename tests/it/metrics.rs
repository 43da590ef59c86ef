//! `/metrics`: scraped during a run and read with a Prometheus text
//! parser, its counters say what the run did.

use crate::common::TestApp;
use crate::support::{make_flag, make_org, make_user, set_enabled, set_rule};
use flagpole::evaluation::Mode;
use prometheus_parse::{Scrape, Value};
use serde_json::json;

async fn scrape(app: &TestApp) -> Scrape {
    let response = reqwest::get(format!("{}/metrics", app.base)).await.unwrap();
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    let text = response.text().await.unwrap();
    Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).expect("Prometheus text")
}

/// The value of the sample named `metric` whose labels include `labels`.
fn value(scrape: &Scrape, metric: &str, labels: &[(&str, &str)]) -> Option<f64> {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == metric)
        .find(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .and_then(|s| match &s.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => Some(*v),
            Value::Histogram(buckets) => buckets.last().map(|b| b.count),
            Value::Summary(_) => None,
        })
}

async fn metrics_count_what_the_instance_did(app: TestApp) {
    let acme = make_org(&app, "Acme", "acme");
    let ada = make_user(&app, "ada@acme.example", "Ada", "L", "ada");
    crate::support::make_member(&app, &acme, &ada);
    make_flag(&app, "Everyone", "everyone", "");
    set_rule(&app, "everyone", "production", Mode::All, &[]);
    set_enabled(&app, "everyone", "production", true);
    let key = crate::support::api_key(&app, "production", "metrics");
    let api = app.api(Some(&key));
    for _ in 0..5 {
        let r = api
            .post("/api/v1/evaluate", json!({"user_id": "ada"}))
            .await;
        assert_eq!(r.status, 200);
    }
    let r = api
        .post(
            "/api/v1/sessions",
            json!({"user_id": "ada", "organization_id": "acme"}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let r = app
        .api(None)
        .post(
            "/api/v1/sessions/refresh",
            json!({"refresh_token": "rt_nope"}),
        )
        .await;
    assert_eq!(r.status, 401);
    let r = app.api(Some("sk_nope")).get("/api/v1/feature-flags").await;
    assert_eq!(r.status, 401);

    let scrape = scrape(&app).await;
    let requests = |route: &str, method: &str, status: &str| {
        value(
            &scrape,
            "flagpole_http_requests_total",
            &[("route", route), ("method", method), ("status", status)],
        )
    };
    assert_eq!(requests("/api/v1/evaluate", "POST", "200"), Some(5.0));
    assert_eq!(requests("/api/v1/sessions", "POST", "201"), Some(1.0));
    assert_eq!(requests("/api/v1/feature-flags", "GET", "401"), Some(1.0));
    assert_eq!(
        value(
            &scrape,
            "flagpole_http_request_duration_seconds",
            &[("route", "/api/v1/evaluate")]
        ),
        Some(5.0),
        "every evaluation is in the latency histogram"
    );
    assert_eq!(
        value(
            &scrape,
            "flagpole_evaluations_total",
            &[("environment", "production"), ("surface", "api")]
        ),
        Some(5.0)
    );
    assert_eq!(
        value(
            &scrape,
            "flagpole_evaluations_total",
            &[("environment", "production"), ("surface", "token")]
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            &scrape,
            "flagpole_sessions_issued_total",
            &[("environment", "production")]
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            &scrape,
            "flagpole_refreshes_refused_total",
            &[("reason", "invalid")]
        ),
        Some(1.0)
    );
    assert_eq!(
        value(&scrape, "flagpole_model_revision", &[]),
        Some(app.state.model().revision as f64)
    );
    assert!(value(&scrape, "flagpole_model_build_duration_seconds", &[]).unwrap() >= 1.0);
    assert!(value(&scrape, "flagpole_model_changes_applied_total", &[]).unwrap() >= 1.0);
    assert_eq!(value(&scrape, "flagpole_model_targets", &[]), Some(0.0));
    assert!(value(&scrape, "flagpole_pool_connections", &[]).unwrap() >= 1.0);
    assert!(value(&scrape, "flagpole_pool_checkouts", &[]).unwrap() >= 1.0);
    assert_eq!(
        value(&scrape, "flagpole_webhook_queue_depth", &[]),
        Some(0.0)
    );
}

async fn metrics_can_be_turned_off(backend: crate::common::Backend) {
    let Some(app) = TestApp::spawn_with(backend, |c| c.metrics = false).await else {
        return;
    };
    let response = reqwest::get(format!("{}/metrics", app.base)).await.unwrap();
    assert_eq!(response.status(), 404);
}

on_both_backends!(metrics_count_what_the_instance_did);

#[actix_web::test]
async fn metrics_can_be_turned_off_on_sqlite() {
    metrics_can_be_turned_off(crate::common::Backend::Sqlite).await;
}
