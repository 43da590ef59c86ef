//! Every surface answers every failure in its own shape, whatever fails:
//! the handler, an extractor (query string, path, body), the router (no
//! such route, a method the path does not answer) or a limit. `/api/v1`
//! answers `{"error": {code, message}}`, the WorkOS paths WorkOS's
//! `{code, message}` (OAuth's `{error, error_description}` on the token
//! endpoint), OFREP `{errorDetails}`, the dashboard an HTML page.

use reqwest::Method;
use serde_json::Value;

use crate::common::TestApp;

struct Answer {
    status: u16,
    allow: Option<String>,
    content_type: String,
    body: String,
}

impl Answer {
    fn json(&self) -> Value {
        assert!(
            self.content_type.starts_with("application/json"),
            "expected JSON, got {} ({}): {}",
            self.content_type,
            self.status,
            self.body
        );
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

async fn send(
    app: &TestApp,
    method: Method,
    path: &str,
    key: Option<&str>,
    body: Option<String>,
) -> Answer {
    let mut req = reqwest::Client::new().request(method, format!("{}{path}", app.base));
    if let Some(key) = key {
        req = req.bearer_auth(key);
    }
    if let Some(body) = body {
        req = req.header("content-type", "application/json").body(body);
    }
    let resp = req.send().await.expect("request");
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    Answer {
        status: resp.status().as_u16(),
        allow: header("allow"),
        content_type: header("content-type").unwrap_or_default(),
        body: resp.text().await.unwrap_or_default(),
    }
}

async fn the_api_answers_every_failure_as_json(app: TestApp) {
    let key = crate::support::api_key(&app, "staging", "surfaces");
    let key = Some(key.as_str());
    // A query string that does not parse: a field given twice.
    let a = send(
        &app,
        Method::GET,
        "/api/v1/feature-flags?q=a&q=b",
        key,
        None,
    )
    .await;
    assert_eq!(
        (a.status, a.json()["error"]["code"].clone()),
        (400, "invalid_query".into())
    );
    // A path that is not UTF-8 names nothing, in JSON.
    let a = send(&app, Method::GET, "/api/v1/feature-flags/%FF%FE", key, None).await;
    assert_eq!(
        (a.status, a.json()["error"]["code"].clone()),
        (404, "flag_not_found".into())
    );
    // A method the path does not answer, with what it does answer.
    let a = send(&app, Method::DELETE, "/api/v1/sessions", key, None).await;
    assert_eq!(a.status, 405);
    assert_eq!(a.allow.as_deref(), Some("POST"));
    assert_eq!(a.json()["error"]["code"], "method_not_allowed");
    let a = send(
        &app,
        Method::PUT,
        "/api/v1/feature-flags/checkout",
        key,
        None,
    )
    .await;
    assert_eq!(a.allow.as_deref(), Some("DELETE, GET, PATCH"));
    // No such route.
    let a = send(&app, Method::GET, "/api/v1/nothing/here", key, None).await;
    assert_eq!(
        (a.status, a.json()["error"]["code"].clone()),
        (404, "route_not_found".into())
    );
    // A body over the limit, and one that is not JSON.
    let big = format!("{{\"name\": \"{}\"}}", "x".repeat(2 << 20));
    let a = send(&app, Method::POST, "/api/v1/feature-flags", key, Some(big)).await;
    assert_eq!(
        (a.status, a.json()["error"]["code"].clone()),
        (413, "too_large".into())
    );
    let a = send(
        &app,
        Method::POST,
        "/api/v1/feature-flags",
        key,
        Some("{nope".into()),
    )
    .await;
    assert_eq!(
        (a.status, a.json()["error"]["code"].clone()),
        (400, "invalid_json".into())
    );
    // A field the body should not have is named, and nothing is made.
    let a = send(
        &app,
        Method::POST,
        "/api/v1/feature-flags",
        key,
        Some(r#"{"name": "X", "slug": "x", "colour": "red"}"#.into()),
    )
    .await;
    assert_eq!(a.status, 422);
    assert_eq!(a.json()["error"]["field"], "colour");
    assert_eq!(count!(app, flags), 0);
}

async fn the_workos_paths_answer_in_workos_shapes(app: TestApp) {
    let key = crate::support::api_key(&app, "production", "surfaces");
    let key = Some(key.as_str());
    // The token endpoint is OAuth-shaped, for every failure.
    let a = send(
        &app,
        Method::GET,
        "/user_management/authenticate",
        None,
        None,
    )
    .await;
    assert_eq!(a.status, 405);
    assert_eq!(a.allow.as_deref(), Some("POST"));
    assert_eq!(a.json()["error"], "method_not_allowed");
    let a = send(
        &app,
        Method::POST,
        "/user_management/authenticate",
        None,
        Some("{".into()),
    )
    .await;
    assert_eq!(
        (a.status, a.json()["error"].clone()),
        (400, "invalid_request".into())
    );
    // The others are `{code, message}`.
    let a = send(&app, Method::GET, "/user_management/nothing", key, None).await;
    let body = a.json();
    assert_eq!(
        (a.status, body["code"].clone()),
        (404, "entity_not_found".into())
    );
    assert!(body["message"].is_string());
    let a = send(&app, Method::GET, "/feature-flags?limit=lots", key, None).await;
    let body = a.json();
    assert_eq!(a.status, 422, "{body}");
    assert_eq!(body["code"], "invalid_request_parameters");
    assert_eq!(body["errors"][0]["field"], "limit");
    let a = send(
        &app,
        Method::PATCH,
        "/feature-flags/checkout/enable",
        key,
        None,
    )
    .await;
    assert_eq!(
        (a.status, a.json()["code"].clone()),
        (405, "method_not_allowed".into())
    );
    assert_eq!(a.allow.as_deref(), Some("PUT"));
    let a = send(&app, Method::GET, "/feature-flags", None, None).await;
    assert_eq!(
        (a.status, a.json()["code"].clone()),
        (401, "missing_api_key".into())
    );
}

async fn ofrep_answers_every_failure_with_error_details(app: TestApp) {
    let key = crate::support::api_key(&app, "production", "surfaces");
    let key = Some(key.as_str());
    let a = send(&app, Method::GET, "/ofrep/v1/evaluate/flags", key, None).await;
    assert_eq!(a.status, 405);
    assert_eq!(a.allow.as_deref(), Some("POST"));
    assert!(a.json()["errorDetails"].is_string());
    let a = send(&app, Method::POST, "/ofrep/v1/nothing", key, None).await;
    assert_eq!(a.status, 404);
    assert!(a.json()["errorDetails"]
        .as_str()
        .unwrap()
        .starts_with("No OFREP route"));
    let big = format!(
        "{{\"context\": {{\"targetingKey\": \"{}\"}}}}",
        "x".repeat(2 << 20)
    );
    let a = send(
        &app,
        Method::POST,
        "/ofrep/v1/evaluate/flags",
        key,
        Some(big),
    )
    .await;
    assert_eq!(a.status, 413);
    assert!(a.json()["errorDetails"].is_string());
    let a = send(
        &app,
        Method::POST,
        "/ofrep/v1/evaluate/flags/x",
        key,
        Some("[".into()),
    )
    .await;
    let body = a.json();
    assert_eq!(
        (a.status, body["errorCode"].clone()),
        (400, "PARSE_ERROR".into())
    );
    assert_eq!(body["key"], "x");
}

async fn the_dashboard_answers_failures_as_pages(app: TestApp) {
    let client = app.owner().await;
    let a = send(&app, Method::DELETE, "/flags", None, None).await;
    assert_eq!(a.status, 405);
    assert_eq!(a.allow.as_deref(), Some("GET, POST"));
    assert!(
        a.content_type.starts_with("text/html"),
        "{}",
        a.content_type
    );
    let page = client.get("/no/such/page").await;
    assert_eq!(page.status, 404);
    page.assert_contains("<!doctype html>");
}

on_both_backends!(
    the_api_answers_every_failure_as_json,
    the_workos_paths_answer_in_workos_shapes,
    ofrep_answers_every_failure_with_error_details,
    the_dashboard_answers_failures_as_pages,
);
