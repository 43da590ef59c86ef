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

/// Many writes at once, some of which fail: each one that succeeded is
/// there, each one that failed left nothing, whichever writes shared a
/// commit with it (on SQLite they are grouped into one transaction).
async fn concurrent_writes_succeed_or_fail_each_on_its_own(app: TestApp) {
    let key = crate::support::api_key(&app, "staging", "crowd");
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..48 {
        let api = app.api(Some(&key));
        // Every third request reuses the slug of the one before it.
        let slug = format!("crowd-{}", i - usize::from(i % 3 == 2));
        tasks.spawn(async move {
            let r = api
                .post(
                    "/api/v1/feature-flags",
                    json!({"name": format!("Crowd {i}"), "slug": slug, "description": ""}),
                )
                .await;
            (slug, r.status)
        });
    }
    let mut created = std::collections::BTreeMap::new();
    while let Some(done) = tasks.join_next().await {
        let (slug, status) = done.unwrap();
        assert!(status == 201 || status == 409, "{slug}: {status}");
        if status == 201 {
            assert!(
                created.insert(slug.clone(), ()).is_none(),
                "{slug} created twice"
            );
        }
    }
    assert_eq!(created.len(), 32, "one flag per distinct slug");
    let admin = crate::support::api_key(&app, "staging", "reader");
    for slug in created.keys() {
        let r = app
            .api(Some(&admin))
            .get(&format!("/api/v1/feature-flags/{slug}"))
            .await;
        assert_eq!(r.status, 200, "{slug}: {:?}", r.body);
    }
    let r = app
        .api(Some(&admin))
        .get("/api/v1/feature-flags?limit=100")
        .await;
    assert_eq!(r.body["data"].as_array().unwrap().len(), 32);
}

on_both_backends!(
    concurrent_writes_succeed_or_fail_each_on_its_own,
    concurrent_patches_of_an_organization_both_last,
    concurrent_patches_of_a_user_both_last,
    concurrent_patches_of_a_flag_both_last,
);
