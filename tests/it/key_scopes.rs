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
    let r = app
        .api(Some(&keys[2].1))
        .get("/api/v1/feature-flags/scoped")
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["archived"], false);
}

on_both_backends!(every_route_checks_the_scope_of_its_key);
