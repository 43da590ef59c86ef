//! Key scopes: every route of `/api/v1` that takes a key, and the WorkOS
//! surface, tried with a key of each scope. A key below the route's scope
//! is refused with 403 `insufficient_scope` (and changes nothing); a key at
//! or above it gets past the check. The routes and their scopes are read
//! from the OpenAPI document, so a new route cannot be forgotten.

use crate::common::TestApp;
use flagpole::environments::api_keys::KeyScope;
use reqwest::Method;
use serde_json::{json, Value};

fn key(app: &TestApp, scope: KeyScope) -> String {
    let env = crate::support::env(app, "production");
    let mut conn = app.conn();
    flagpole::environments::api_keys::create(
        &mut conn,
        &crate::support::actor(),
        &env.id,
        scope.as_str(),
        scope,
    )
    .unwrap()
    .1
}

/// A path with its parameters filled in.
fn fill(template: &str) -> String {
    template
        .replace("{slug}", "scoped")
        .replace("{env}", "production")
        .replace("{user_id}", "nobody")
        .replace("{id}", "nobody")
        .replace("{key}", "scoped")
}

async fn every_route_checks_the_scope_of_its_key(app: TestApp) {
    crate::support::make_flag(&app, "Scoped", "scoped", "");
    let keys: Vec<(KeyScope, String)> = KeyScope::ALL.iter().map(|s| (*s, key(&app, *s))).collect();
    let doc = app.api(None).get("/api/v1/openapi.json").await.body;
    let mut routes: Vec<(Method, String, KeyScope)> = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let Some(scope) = op["security"]
                .as_array()
                .and_then(|s| s.iter().find_map(|req| req["api_key"].as_array()))
            else {
                continue;
            };
            let scope = scope
                .first()
                .and_then(Value::as_str)
                .and_then(KeyScope::parse)
                .unwrap_or_else(|| panic!("{method} {path} names no key scope in its security"));
            routes.push((method.to_uppercase().parse().unwrap(), path.clone(), scope));
        }
    }
    // The WorkOS surface is not in the document; its routes are listed here.
    for (method, path, scope) in [
        ("GET", "/feature-flags", KeyScope::Environment),
        ("GET", "/feature-flags/{slug}", KeyScope::Environment),
        ("PUT", "/feature-flags/{slug}/enable", KeyScope::Environment),
        (
            "PUT",
            "/feature-flags/{slug}/disable",
            KeyScope::Environment,
        ),
        (
            "POST",
            "/feature-flags/{slug}/targets/user_nobody",
            KeyScope::Environment,
        ),
        (
            "DELETE",
            "/feature-flags/{slug}/targets/user_nobody",
            KeyScope::Environment,
        ),
        (
            "GET",
            "/organizations/{id}/feature-flags",
            KeyScope::Evaluation,
        ),
        (
            "GET",
            "/user_management/users/{id}/feature-flags",
            KeyScope::Evaluation,
        ),
        ("GET", "/sdk/feature-flags", KeyScope::Evaluation),
        (
            "POST",
            "/user_management/sessions/revoke",
            KeyScope::Evaluation,
        ),
    ] {
        routes.push((method.parse().unwrap(), path.to_string(), scope));
    }
    assert!(routes.len() > 40, "{} routes", routes.len());
    for scope in KeyScope::ALL {
        assert!(
            routes.iter().any(|(_, _, s)| s == scope),
            "some route needs the {scope:?} scope"
        );
    }
    for (method, path, needed) in &routes {
        for (scope, secret) in &keys {
            let body =
                matches!(*method, Method::POST | Method::PUT | Method::PATCH).then(|| json!({}));
            let r = app
                .api(Some(secret))
                .send(method.clone(), &fill(path), None, body)
                .await;
            let code = r.body["error"]["code"].as_str().or(r.body["code"].as_str());
            let refused = r.status == 403 && code == Some("insufficient_scope");
            assert_eq!(
                refused,
                scope < needed,
                "{method} {path} with a {scope:?} key (needs {needed:?}): {} {}",
                r.status,
                r.body
            );
        }
    }
    // Nothing a refused key sent happened: the flag is still there, unchanged.
    let admin = &keys.last().unwrap().1;
    let r = app
        .api(Some(admin))
        .get("/api/v1/feature-flags/scoped")
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["archived"], false);
}

/// A request from a browser page on `origin`: reqwest with the headers a
/// browser adds.
async fn from_origin(
    app: &TestApp,
    method: Method,
    path: &str,
    origin: &str,
    key: Option<&str>,
    body: Option<Value>,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let mut req = reqwest::Client::new()
        .request(method, format!("{}{path}", app.base))
        .header("origin", origin);
    if let Some(key) = key {
        req = req.bearer_auth(key);
    }
    if let Some(body) = body {
        req = req.json(&body);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.json().await.unwrap_or(Value::Null);
    (status, headers, body)
}

/// Publishable keys evaluate from the browser origins their environment
/// allows, and do nothing else; a key of any kind is refused from an origin
/// its environment does not allow; preflights are answered for allowed
/// origins only.
async fn publishable_keys_evaluate_from_allowed_origins_only(app: TestApp) {
    crate::support::make_flag(&app, "Everyone", "everyone", "");
    let admin = key(&app, KeyScope::Admin);
    let api = app.api(Some(&admin));
    let r = api
        .put_json(
            "/api/v1/feature-flags/everyone/environments/production",
            None,
            json!({"mode": "all", "enabled": true}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let pk = key(&app, KeyScope::Publishable);
    assert!(pk.starts_with("pk_"), "{pk}");
    let app_origin = "https://app.example.com";

    // No origin is allowed yet: a page's call is refused, whatever the key.
    for k in [&pk, &admin] {
        let (status, headers, body) = from_origin(
            &app,
            Method::POST,
            "/api/v1/evaluate",
            app_origin,
            Some(k),
            Some(json!({"user_id": "u"})),
        )
        .await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (403, Some("origin_not_allowed")),
            "{body}"
        );
        assert!(headers.get("access-control-allow-origin").is_none());
    }

    // The owner allows the app's origin on the Environments page; a bad
    // origin is refused next to the field and nothing changes.
    let owner = app.owner().await;
    let page = owner
        .post(
            "/environments/production",
            &[
                ("name", "Production"),
                ("color", "#b42318"),
                ("require_confirmation", "on"),
                ("allowed_origins", "https://app.example.com/path"),
            ],
        )
        .await;
    assert_eq!(page.status, 422, "{}", page.body);
    assert!(page.body.contains("is not an origin"), "{}", page.body);
    let page = owner
        .post(
            "/environments/production",
            &[
                ("name", "Production"),
                ("color", "#b42318"),
                ("require_confirmation", "on"),
                (
                    "allowed_origins",
                    "https://APP.example.com, http://localhost:3000",
                ),
            ],
        )
        .await;
    assert_eq!(page.status, 303, "{}", page.body);
    assert!(owner
        .get("/environments")
        .await
        .body
        .contains("https://app.example.com, http://localhost:3000"));

    // Preflight: answered with CORS headers for an allowed origin only.
    let preflight = |origin: &'static str| {
        let base = app.base.clone();
        async move {
            reqwest::Client::new()
                .request(Method::OPTIONS, format!("{base}/ofrep/v1/evaluate/flags"))
                .header("origin", origin)
                .header("access-control-request-method", "POST")
                .header(
                    "access-control-request-headers",
                    "authorization, content-type, if-none-match",
                )
                .send()
                .await
                .unwrap()
        }
    };
    let ok = preflight(app_origin).await;
    assert_eq!(ok.status(), 204);
    assert_eq!(ok.headers()["access-control-allow-origin"], app_origin);
    let allowed_headers = ok.headers()["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .to_lowercase();
    for h in ["authorization", "content-type", "if-none-match"] {
        assert!(allowed_headers.contains(h), "{allowed_headers}");
    }
    let other = preflight("https://evil.example").await;
    assert!(other.headers().get("access-control-allow-origin").is_none());

    // The publishable key evaluates from the allowed origin, on both surfaces,
    // and the answer exposes its ETag.
    let (status, headers, body) = from_origin(
        &app,
        Method::POST,
        "/api/v1/evaluate",
        app_origin,
        Some(&pk),
        Some(json!({"user_id": "u"})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["feature_flags"], json!(["everyone"]));
    assert_eq!(headers["access-control-allow-origin"], app_origin);
    let (status, headers, body) = from_origin(
        &app,
        Method::POST,
        "/ofrep/v1/evaluate/flags",
        app_origin,
        Some(&pk),
        Some(json!({"context": {"targetingKey": "u"}})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(body["flags"]
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f["key"] == "everyone" && f["value"] == true));
    assert_eq!(headers["access-control-expose-headers"], "ETag");
    assert!(headers.contains_key("etag"));
    // Another origin, with the same key: refused, and unreadable to its page.
    let (status, headers, body) = from_origin(
        &app,
        Method::POST,
        "/ofrep/v1/evaluate/flags",
        "https://evil.example",
        Some(&pk),
        Some(json!({"context": {"targetingKey": "u"}})),
    )
    .await;
    // (OFREP's 403 carries only errorDetails.)
    assert_eq!(status, 403, "{body}");
    assert!(
        body["errorDetails"]
            .as_str()
            .unwrap()
            .contains("browser origin"),
        "{body}"
    );
    assert!(headers.get("access-control-allow-origin").is_none());

    // It may do nothing but evaluate, from the page or from a server.
    for (method, path) in [
        (
            Method::POST,
            "/api/v1/feature-flags/everyone/environments/production/disable",
        ),
        (Method::POST, "/api/v1/sessions"),
        (Method::GET, "/sdk/feature-flags"),
        (Method::GET, "/api/v1/users/u/feature-flags"),
        (Method::GET, "/feature-flags"),
    ] {
        let r = app
            .api(Some(&pk))
            .send(
                method.clone(),
                path,
                None,
                (method == Method::POST).then(|| json!({"user_id": "u"})),
            )
            .await;
        let code = r.body["error"]["code"].as_str().or(r.body["code"].as_str());
        assert_eq!(
            (r.status, code),
            (403, Some("insufficient_scope")),
            "{method} {path}: {:?}",
            r.body
        );
    }
    let r = api
        .get("/api/v1/feature-flags/everyone/environments/production")
        .await;
    assert_eq!(r.body["enabled"], true, "the flag is still on");

    // A Staging key from Production's allowed origin: Staging allows none.
    let staging = crate::support::api_key(&app, "staging", "staging");
    let (status, _, body) = from_origin(
        &app,
        Method::POST,
        "/api/v1/evaluate",
        app_origin,
        Some(&staging),
        Some(json!({"user_id": "u"})),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("origin_not_allowed")),
        "{body}"
    );
    // A secret key from a server (no Origin) works as before.
    let r = api.post("/api/v1/evaluate", json!({"user_id": "u"})).await;
    assert_eq!(r.status, 200);
    // A pk_ prefix on a secret key's digest is not a key.
    let forged = admin.replacen("sk_", "pk_", 1);
    assert_eq!(
        app.api(Some(&forged))
            .post("/api/v1/evaluate", json!({"user_id": "u"}))
            .await
            .status,
        401
    );
}

on_both_backends!(
    every_route_checks_the_scope_of_its_key,
    publishable_keys_evaluate_from_allowed_origins_only,
);
