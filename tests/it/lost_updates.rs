//! Two PATCHes of different fields of one object, sent at once, both last:
//! the current values are read and merged inside the write, not before it.

use serde_json::json;

use crate::common::TestApp;

/// Sends the two patches at once, `rounds` times, and returns the object's
/// final state after each round.
async fn race(
    app: &TestApp,
    path: &str,
    rounds: usize,
    patches: impl Fn(usize) -> (serde_json::Value, serde_json::Value),
) -> Vec<serde_json::Value> {
    let key = crate::support::api_key(app, "staging", "racer");
    let (a, b) = (app.api(Some(&key)), app.api(Some(&key)));
    let mut states = Vec::new();
    for round in 0..rounds {
        let (first, second) = patches(round);
        let (ra, rb) = tokio::join!(a.patch_json(path, first), b.patch_json(path, second));
        assert_eq!(
            (ra.status, rb.status),
            (200, 200),
            "{:?} {:?}",
            ra.body,
            rb.body
        );
        states.push(a.get(path).await.body);
    }
    states
}

async fn concurrent_patches_of_an_organization_both_last(app: TestApp) {
    crate::support::make_org(&app, "Acme", "acme");
    let states = race(&app, "/api/v1/organizations/acme", 12, |i| {
        (
            json!({"name": format!("Acme {i}")}),
            json!({"external_id": "acme"}),
        )
    })
    .await;
    for (i, state) in states.iter().enumerate() {
        assert_eq!(state["name"], format!("Acme {i}"));
        assert_eq!(state["external_id"], "acme");
    }
    // Both fields at once, each from its own request.
    // By Flagpole id: one of them renames the external id the other could
    // otherwise have been looking for.
    let globex = crate::support::make_org(&app, "Globex", "globex");
    let key = crate::support::api_key(&app, "staging", "racer-2");
    let (a, b) = (app.api(Some(&key)), app.api(Some(&key)));
    let path = format!("/api/v1/organizations/{}", globex.id);
    let (ra, rb) = tokio::join!(
        a.patch_json(&path, json!({"name": "Globex Corp"})),
        b.patch_json(&path, json!({"external_id": "globex-2"}))
    );
    assert_eq!((ra.status, rb.status), (200, 200));
    let state = a.get("/api/v1/organizations/globex-2").await.body;
    assert_eq!(state["name"], "Globex Corp", "{state}");
}

async fn concurrent_patches_of_a_user_both_last(app: TestApp) {
    crate::support::make_user(&app, "ada@example.com", "Ada", "L", "ada");
    let states = race(&app, "/api/v1/users/ada", 12, |i| {
        (
            json!({"first_name": format!("Ada {i}")}),
            json!({"last_name": format!("Lovelace {i}")}),
        )
    })
    .await;
    for (i, state) in states.iter().enumerate() {
        assert_eq!(state["first_name"], format!("Ada {i}"), "{state}");
        assert_eq!(state["last_name"], format!("Lovelace {i}"), "{state}");
    }
}

async fn concurrent_patches_of_a_flag_both_last(app: TestApp) {
    crate::support::make_flag(&app, "Checkout", "checkout", "");
    let states = race(&app, "/api/v1/feature-flags/checkout", 12, |i| {
        (
            json!({"name": format!("Checkout {i}")}),
            json!({"description": format!("Round {i}"), "tags": [format!("t{i}")]}),
        )
    })
    .await;
    for (i, state) in states.iter().enumerate() {
        assert_eq!(state["name"], format!("Checkout {i}"), "{state}");
        assert_eq!(state["description"], format!("Round {i}"), "{state}");
        assert_eq!(state["tags"], json!([format!("t{i}")]), "{state}");
    }
}

on_both_backends!(
    concurrent_patches_of_an_organization_both_last,
    concurrent_patches_of_a_user_both_last,
    concurrent_patches_of_a_flag_both_last,
);
