//! Several instances on one database: a change made through one reaches the
//! others' evaluation within about a second.

use std::time::{Duration, Instant};

use crate::common::TestApp;
use flagpole::directory::{self, UserInput};
use flagpole::flags::{self, FlagInput};
use flagpole::{api_keys, environments};
use serde_json::json;

async fn a_change_through_one_instance_reaches_another_within_seconds(app: TestApp) {
    let other = app.second_instance().await;
    let mut conn = app.conn();
    let staging = environments::by_slug(&mut conn, "staging").unwrap();
    let (_, key) = api_keys::create(&mut conn, "test", &staging.id, "backend").unwrap();
    let user = directory::create_user(
        &mut conn,
        "test",
        &UserInput {
            email: "ada@example.com".into(),
            first_name: String::new(),
            last_name: String::new(),
            external_id: String::new(),
        },
    )
    .unwrap();
    flags::create(
        &mut conn,
        "test",
        &FlagInput {
            name: "Everyone".into(),
            slug: "everyone".into(),
            description: String::new(),
            tags: String::new(),
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
    assert_eq!(evaluate().await, json!([]));

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
