//! Feature flags in the dashboard: creation, validation, the list and the cards.

mod common;

use common::TestApp;
use diesel::prelude::*;
use flagpole::db::schema::rules;

async fn creating_a_flag_gives_it_a_none_rule_in_every_environment(app: TestApp) {
    let client = app.owner().await;
    let page = client
        .post(
            "/flags",
            &[
                ("name", "New checkout"),
                ("slug", "new-checkout"),
                ("description", "The one-page checkout"),
            ],
        )
        .await;
    assert_eq!(page.status, 303, "{}", page.body);
    assert_eq!(page.location.as_deref(), Some("/flags/new-checkout"));

    let mut conn = app.conn();
    let modes: Vec<(String, bool)> = rules::table
        .select((rules::mode, rules::enabled))
        .load(&mut *conn)
        .unwrap();
    assert_eq!(
        modes,
        vec![("none".to_string(), false), ("none".to_string(), false)]
    );

    let page = client.get("/flags/new-checkout").await;
    assert_eq!(page.status, 200);
    page.assert_contains("Staging")
        .assert_contains("Production");
    page.assert_contains("Edit in Production");
}

on_both_backends!(creating_a_flag_gives_it_a_none_rule_in_every_environment);
