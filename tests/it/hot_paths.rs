//! The hot paths read memory only: a thousand requests across the key
//! check, `/api/v1/evaluate`, the per-user list, OFREP single and bulk, the
//! runtime rule set and the WorkOS lists run no SQL at all, counted by the
//! pool's own statement counter. And a revoked key is refused at once by
//! the instance that revoked it, and soon after by another.

use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::common::TestApp;
use crate::support::{
    actor, env, make_flag, make_member, make_org, make_user, set_enabled, set_rule,
};
use flagpole::evaluation::Mode;
use serde_json::json;

/// An app whose background work stays quiet while the requests are counted.
async fn quiet(backend: crate::common::Backend) -> Option<TestApp> {
    TestApp::spawn_with(backend, |config| {
        config.model_poll_interval = Duration::from_secs(600);
        config.key_usage_flush_interval = Duration::from_secs(600);
        config.webhook_delivery = false;
    })
    .await
}

async fn the_hot_paths_run_no_query(app: TestApp) {
    let acme = make_org(&app, "Acme", "acme");
    let ada = make_user(&app, "ada@acme.example", "Ada", "L", "ada");
    make_member(&app, &acme, &ada);
    make_flag(&app, "Everyone", "everyone", "");
    set_rule(&app, "everyone", "production", Mode::All, &[]);
    set_enabled(&app, "everyone", "production", true);
    make_flag(&app, "Acme beta", "acme-beta", "");
    set_rule(&app, "acme-beta", "production", Mode::Some, &[&acme.id]);
    set_enabled(&app, "acme-beta", "production", true);
    make_flag(&app, "Ada only", "ada-only", "");
    set_rule(&app, "ada-only", "production", Mode::Some, &[&ada.id]);
    set_enabled(&app, "ada-only", "production", true);
    let key = crate::support::api_key(&app, "production", "hot");
    let api = app.api(Some(&key));
    // Let the applier finish what the set-up woke it for.
    actix_web::rt::time::sleep(Duration::from_millis(300)).await;

    let queries = || app.state.db_stats.queries.load(Ordering::Relaxed);
    let before = queries();
    let ofrep = |path: &str, body: serde_json::Value| {
        let client = reqwest::Client::new();
        let url = format!("{}/ofrep/v1{path}", app.base);
        let key = key.clone();
        async move {
            client
                .post(url)
                .bearer_auth(key)
                .json(&body)
                .send()
                .await
                .unwrap()
        }
    };
    let mut requests = 0;
    while requests < 1000 {
        let r = api
            .post(
                "/api/v1/evaluate",
                json!({"user_id": "ada", "organization_id": "acme"}),
            )
            .await;
        assert_eq!(
            r.body["feature_flags"],
            json!(["acme-beta", "ada-only", "everyone"])
        );
        let r = api.get("/api/v1/users/ada/feature-flags").await;
        assert_eq!(r.body["feature_flags"], json!(["ada-only", "everyone"]));
        let r = ofrep(
            "/evaluate/flags/acme-beta",
            json!({"context": {"targetingKey": "ada", "organizationId": "acme"}}),
        )
        .await;
        assert_eq!(r.status(), 200);
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body["value"], true);
        let r = ofrep(
            "/evaluate/flags",
            json!({"context": {"targetingKey": "visitor"}}),
        )
        .await;
        assert_eq!(r.status(), 200);
        let r = api.get("/sdk/feature-flags").await;
        assert_eq!(r.status, 200);
        assert!(r.body["acme-beta"].is_object());
        let r = api
            .get(&format!("/organizations/{}/feature-flags", acme.id))
            .await;
        assert_eq!(r.body["data"].as_array().unwrap().len(), 2);
        let r = api
            .get(&format!("/user_management/users/{}/feature-flags", ada.id))
            .await;
        assert_eq!(r.body["data"].as_array().unwrap().len(), 3);
        let r = api.get("/feature-flags/everyone").await;
        assert_eq!(r.body["slug"], "everyone");
        // A key that is not one is refused from memory too.
        let r = app
            .api(Some("sk_not_a_key"))
            .post("/api/v1/evaluate", json!({"user_id": "ada"}))
            .await;
        assert_eq!(r.status, 401);
        requests += 9;
    }
    assert_eq!(
        queries() - before,
        0,
        "{requests} requests on the hot paths ran SQL"
    );
    // The counter does count: a management read runs queries.
    let r = api.get("/api/v1/feature-flags").await;
    assert_eq!(r.status, 200);
    assert!(queries() > before, "the counter counts statements");
}

async fn a_revoked_key_is_refused_at_once_here_and_soon_elsewhere(app: TestApp) {
    let other = app.second_instance().await;
    let production = env(&app, "production");
    let (key, secret) = {
        let mut conn = app.conn();
        flagpole::environments::api_keys::create(
            &mut conn,
            &actor(),
            &production.id,
            "doomed",
            flagpole::environments::api_keys::KeyScope::Admin,
        )
        .unwrap()
    };
    let evaluate = |base: &TestApp| {
        let api = base.api(Some(&secret));
        async move {
            api.post("/api/v1/evaluate", json!({"user_id": "ada"}))
                .await
                .status
        }
    };
    crate::common::eventually(
        "the other instance knows the key",
        Duration::from_secs(5),
        || async { evaluate(&other).await == 200 },
    )
    .await;
    assert_eq!(evaluate(&app).await, 200);

    let admin = app.owner().await;
    let page = admin
        .post(
            &format!("/environments/production/api-keys/{}/revoke", key.id),
            &[] as &[(&str, &str)],
        )
        .await;
    assert_eq!(page.status, 303, "{}", page.body);
    // The instance that revoked it refuses it with its very next request.
    assert_eq!(evaluate(&app).await, 401);
    crate::common::eventually(
        "the other instance refuses the revoked key",
        Duration::from_secs(5),
        || async { evaluate(&other).await == 401 },
    )
    .await;
}

mod quiet_sqlite {
    #[actix_web::test]
    async fn the_hot_paths_run_no_query() {
        if let Some(app) = super::quiet(crate::common::Backend::Sqlite).await {
            super::the_hot_paths_run_no_query(app).await;
        }
    }
}

mod quiet_postgres {
    #[actix_web::test]
    async fn the_hot_paths_run_no_query() {
        if let Some(app) = super::quiet(crate::common::Backend::Postgres).await {
            super::the_hot_paths_run_no_query(app).await;
        }
    }
}

on_both_backends!(a_revoked_key_is_refused_at_once_here_and_soon_elsewhere);
