//! Several instances on one database: a change made through one reaches the
//! others' evaluation within about a second.

use std::time::{Duration, Instant};

use crate::common::TestApp;
use flagpole::flags;
use serde_json::json;

async fn a_change_through_one_instance_reaches_another_within_seconds(app: TestApp) {
    let other = app.second_instance().await;
    let mut conn = app.conn();
    let staging = flagpole::environments::by_slug(&mut conn, "staging").unwrap();
    let (_, key) = flagpole::environments::api_keys::create(
        &mut conn,
        &crate::support::actor(),
        &staging.id,
        "backend",
        flagpole::environments::api_keys::KeyScope::Admin,
    )
    .unwrap();
    let user = flagpole::directory::users::create(
        &mut conn,
        &crate::support::actor(),
        &flagpole::directory::users::NewUser {
            email: "ada@example.com".into(),
            first_name: String::new(),
            last_name: String::new(),
            external_id: String::new(),
        },
    )
    .unwrap();
    flags::create(
        &mut conn,
        &crate::support::actor(),
        &flagpole::flags::NewFlag {
            name: "Everyone".into(),
            slug: "everyone".into(),
            description: String::new(),
            tags: Vec::new(),
        },
    )
    .unwrap();
    drop(conn);
    let evaluate = || async {
        other
            .api(Some(&key))
            .post("/api/v1/evaluate", json!({"user_id": user.id}))
            .await
            .body["feature_flags"]
            .clone()
    };
    // What was made on the first instance reaches the other by its poll.
    crate::common::eventually(
        "the key and the flag on the other instance",
        Duration::from_secs(3),
        || async { evaluate().await == json!([]) },
    )
    .await;

    // Through the first instance's dashboard: All, then on.
    let admin = app.owner().await;
    let page = admin
        .post(
            "/flags/everyone/environments/staging",
            &[("mode", "all"), ("version", "1"), ("op", "save")],
        )
        .await;
    assert_eq!(page.status, 303, "{}", page.body);
    let page = admin
        .post(
            "/flags/everyone/environments/staging/toggle",
            &[("enabled", "true")],
        )
        .await;
    assert_eq!(page.status, 303);
    let changed = Instant::now();

    let deadline = changed + Duration::from_secs(5);
    loop {
        if evaluate().await == json!(["everyone"]) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the other instance never saw the change"
        );
        actix_web::rt::time::sleep(Duration::from_millis(100)).await;
    }
    let seen_after = changed.elapsed();
    assert!(seen_after < Duration::from_secs(3), "took {seen_after:?}");
}

on_both_backends!(a_change_through_one_instance_reaches_another_within_seconds);
