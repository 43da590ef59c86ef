//! Environments: the defaults, adding (with a rule for every flag), renaming,
//! colours, order, and the switcher that sets the active environment.

use crate::common::TestApp;
use crate::support::*;
use diesel::prelude::*;
use flagpole::db::schema::rules;
use flagpole::evaluation::Mode;

fn rules_in(app: &TestApp, env_slug: &str) -> Vec<(String, String, bool, i32)> {
    let env_id = env(app, env_slug).id;
    let mut conn = app.conn();
    let mut rows: Vec<(String, String, bool, i32)> = rules::table
        .filter(rules::environment_id.eq(env_id))
        .select((rules::flag_id, rules::mode, rules::enabled, rules::version))
        .load(&mut *conn)
        .unwrap();
    rows.sort();
    rows
}

async fn staging_and_production_exist_from_the_start(app: TestApp) {
    assert_eq!(env_order(&app), vec!["staging", "production"]);
    let staging = env(&app, "staging");
    let production = env(&app, "production");
    assert_eq!(staging.name, "Staging");
    assert_eq!(production.name, "Production");
    assert!(!staging.require_confirmation);
    assert!(production.require_confirmation);
    assert_ne!(staging.color, production.color);
    assert!(staging.client_id.starts_with("client_"));
    assert!(production.client_id.starts_with("client_"));
    assert_ne!(staging.client_id, production.client_id);

    let client = app.owner().await;
    let page = client.get("/environments").await;
    assert_eq!(page.status, 200);
    page.assert_contains(&staging.client_id)
        .assert_contains(&production.client_id)
        .assert_contains("Add an environment");
    // How to point a WorkOS SDK client at this Flagpole and environment.
    page.assert_contains("apiHostname: '127.0.0.1',\n  https: false,")
        .assert_contains(&format!("clientId: '{}',", production.client_id));
    assert_eq!(switcher_names(&page.body), vec!["Staging", "Production"]);
    // Staging is active at first; its colour is not Production's.
    let flags = client.get("/flags").await;
    assert_eq!(active_environment(&flags.body).as_deref(), Some("staging"));
    flags.assert_contains("<body class=\"env-teal\">");
    assert!(!flags.body.contains("changes here ask for confirmation"));
}

async fn adding_an_environment_gives_every_flag_a_none_rule_there(app: TestApp) {
    let a = make_flag(&app, "Alpha", "alpha", "");
    let b = make_flag(&app, "Beta", "beta", "");
    let acme = make_org(&app, "Acme", "");
    set_rule(&app, "alpha", "staging", Mode::Some, &[&acme.id]);
    set_enabled(&app, "alpha", "staging", true);
    let client = app.owner().await;

    let page = client
        .post(
            "/environments",
            &[
                ("name", "QA"),
                ("slug", "qa"),
                ("color", "#1d4ed8"),
                ("require_confirmation", "on"),
            ],
        )
        .await;
    assert_eq!(page.status, 303, "{}", page.body);
    assert_eq!(page.location.as_deref(), Some("/environments"));
    let qa = env(&app, "qa");
    assert_eq!(qa.name, "QA");
    assert_eq!(qa.color, "#1d4ed8");
    assert!(qa.require_confirmation);
    assert!(qa.client_id.starts_with("client_"));
    assert_eq!(env_order(&app), vec!["staging", "production", "qa"]);

    let mut expected = vec![
        (a.id.to_string(), "none".to_string(), false, 1),
        (b.id.to_string(), "none".to_string(), false, 1),
    ];
    expected.sort();
    assert_eq!(rules_in(&app, "qa"), expected);
    assert!(targets(&app, "alpha", "qa").is_empty());
    // The other environments keep their rules.
    let staging = rule(&app, "alpha", "staging");
    assert_eq!((staging.mode.as_str(), staging.enabled), ("some", true));

    let page = client.get("/environments").await;
    says(&page, "Added QA. Every flag has a rule there: None, off.");
    let shown = client.get("/flags/alpha").await;
    assert_eq!(card_names(&shown.body), vec!["Staging", "Production", "QA"]);
    assert!(card(&shown.body, "QA")
        .unwrap()
        .contains("Edit in QA</button>"));
    let editor = client.get("/flags/alpha/environments/qa").await;
    assert_eq!(editor.status, 200);

    // A flag created afterwards has a rule in all three.
    let page = client
        .post("/flags", &[("name", "Gamma"), ("slug", "gamma")])
        .await;
    assert_eq!(page.status, 303);
    assert_eq!(rules_in(&app, "qa").len(), 3);
    assert_eq!(count!(app, rules), 9);

    let created: Vec<_> = audit_of(&app, "environment.created")
        .into_iter()
        .filter(|e| e.actor != "system")
        .collect();
    assert_eq!(created.len(), 1);
    assert_eq!(created[0].actor, "owner@example.com");
    assert_eq!(json(&created[0].after_state)["slug"], "qa");
}

async fn a_new_environment_asks_for_confirmation_only_when_told_to(app: TestApp) {
    make_flag(&app, "Alpha", "alpha", "");
    let client = app.owner().await;
    client
        .post(
            "/environments",
            &[("name", "Dev"), ("slug", "dev"), ("color", "#15803d")],
        )
        .await;
    assert!(!env(&app, "dev").require_confirmation);
    let page = client
        .post(
            "/flags/alpha/environments/dev/toggle",
            &[("enabled", "true"), ("version", "1")],
        )
        .await;
    assert_eq!(page.status, 303);
    assert!(rule(&app, "alpha", "dev").enabled);
}

async fn invalid_or_duplicate_environments_are_refused_and_nothing_is_saved(app: TestApp) {
    make_flag(&app, "Alpha", "alpha", "");
    let client = app.owner().await;
    let cases = [
        (
            "QA",
            "Bad Slug",
            "#1d4ed8",
            "slug",
            "Use only lowercase letters, digits and hyphens (-).",
        ),
        ("QA", "", "#1d4ed8", "slug", "Enter a slug."),
        (
            "Second staging",
            "staging",
            "#1d4ed8",
            "slug",
            "An environment with this slug already exists.",
        ),
        ("", "qa", "#1d4ed8", "name", "Enter a name."),
        (
            "QA",
            "qa",
            "#ff00ff",
            "color",
            "Choose one of the listed colours.",
        ),
    ];
    for (name, slug, color, field, message) in cases {
        let page = client
            .post(
                "/environments",
                &[("name", name), ("slug", slug), ("color", color)],
            )
            .await;
        assert_eq!(page.status, 422, "{name}/{slug}/{color}: {}", page.body);
        assert_eq!(
            field_error(&page.body, field).as_deref(),
            Some(message),
            "{name}/{slug}/{color}"
        );
        assert_eq!(fields_with_errors(&page.body), vec![field]);
        // What was typed is kept in the form.
        page.assert_contains(&format!(
            "id=\"new-slug\" name=\"slug\" type=\"text\" value=\"{}\"",
            slug
        ));
    }
    assert_eq!(count!(app, environments), 2);
    assert_eq!(count!(app, rules), 2);
    assert_eq!(env(&app, "staging").name, "Staging");
    assert!(audit_of(&app, "environment.created")
        .iter()
        .all(|e| e.actor == "system"));
}

async fn an_environment_can_be_renamed_and_recoloured_but_keeps_its_slug(app: TestApp) {
    let client = app.owner().await;
    let staging_id = env(&app, "staging").id;
    let page = client
        .post(
            "/environments/staging",
            &[
                ("name", "Pre-production"),
                ("slug", "hijacked"),
                ("color", "#6d28d9"),
                ("require_confirmation", "on"),
            ],
        )
        .await;
    assert_eq!(page.status, 303, "{}", page.body);
    let renamed = env(&app, "staging");
    assert_eq!(renamed.id, staging_id);
    assert_eq!(renamed.name, "Pre-production");
    assert_eq!(renamed.color, "#6d28d9");
    assert!(renamed.require_confirmation);
    assert_eq!(count!(app, environments), 2);

    let flags = client.get("/flags").await;
    flags
        .assert_contains("<body class=\"env-violet\">")
        .assert_contains(
        "You are working in <strong>Pre-production</strong> · changes here ask for confirmation",
    );
    assert_eq!(
        switcher_names(&flags.body),
        vec!["Pre-production", "Production"]
    );

    // Unchecking the box turns confirmation off again.
    let page = client
        .post(
            "/environments/staging",
            &[("name", "Pre-production"), ("color", "#6d28d9")],
        )
        .await;
    assert_eq!(page.status, 303);
    assert!(!env(&app, "staging").require_confirmation);

    // An empty name or unknown colour is refused next to that environment's form.
    let page = client
        .post(
            "/environments/staging",
            &[("name", " "), ("color", "#6d28d9")],
        )
        .await;
    assert_eq!(page.status, 422);
    assert_eq!(
        field_error(&page.body, "name").as_deref(),
        Some("Enter a name.")
    );
    let error_at = page.body.find("id=\"name-error\"").unwrap();
    let staging_form = page.body.find("id=\"name-staging\"").unwrap();
    let production_form = page.body.find("id=\"name-production\"").unwrap();
    assert!(staging_form < error_at && error_at < production_form);
    let page = client
        .post(
            "/environments/staging",
            &[("name", "Other"), ("color", "purple")],
        )
        .await;
    assert_eq!(page.status, 422);
    let kept = env(&app, "staging");
    assert_eq!(
        (kept.name.as_str(), kept.color.as_str()),
        ("Pre-production", "#6d28d9")
    );

    let updates = audit_of(&app, "environment.updated");
    assert_eq!(updates.len(), 2);
    assert_eq!(json(&updates[0].before_state)["name"], "Staging");
    assert_eq!(json(&updates[0].after_state)["name"], "Pre-production");
    assert_eq!(
        client
            .post("/environments/nope", &[("name", "X"), ("color", "#6d28d9")])
            .await
            .status,
        404
    );
}

async fn environments_move_up_and_down(app: TestApp) {
    make_flag(&app, "Alpha", "alpha", "");
    let client = app.owner().await;
    let page = client
        .post(
            "/environments",
            &[("name", "QA"), ("slug", "qa"), ("color", "#1d4ed8")],
        )
        .await;
    assert_eq!(page.status, 303);
    let move_env = |slug: &'static str, direction: &'static str| {
        let client = &client;
        async move {
            let page = client
                .post(
                    &format!("/environments/{slug}/move"),
                    &[("direction", direction)],
                )
                .await;
            assert_eq!(page.status, 303, "{}", page.body);
            assert_eq!(page.location.as_deref(), Some("/environments"));
        }
    };
    move_env("qa", "up").await;
    assert_eq!(env_order(&app), vec!["staging", "qa", "production"]);
    let page = client.get("/flags").await;
    assert_eq!(
        switcher_names(&page.body),
        vec!["Staging", "QA", "Production"]
    );
    let shown = client.get("/flags/alpha").await;
    assert_eq!(card_names(&shown.body), vec!["Staging", "QA", "Production"]);

    // The first cannot go up, nor the last down.
    move_env("staging", "up").await;
    move_env("production", "down").await;
    assert_eq!(env_order(&app), vec!["staging", "qa", "production"]);

    move_env("staging", "down").await;
    assert_eq!(env_order(&app), vec!["qa", "staging", "production"]);
    let page = client.get("/environments").await;
    assert_eq!(
        switcher_names(&page.body),
        vec!["QA", "Staging", "Production"]
    );
    page.assert_contains("aria-label=\"Move QA up\" disabled")
        .assert_contains("aria-label=\"Move Production down\" disabled");
    assert_eq!(audit_of(&app, "environment.reordered").len(), 2);
}

async fn the_switcher_changes_the_active_environment_for_this_session(app: TestApp) {
    make_flag(&app, "Alpha", "alpha", "");
    set_rule(&app, "alpha", "production", Mode::All, &[]);
    let client = app.owner().await;
    let page = client.get("/flags").await;
    // The switcher form sends you back to the page you were on.
    page.assert_contains("name=\"return_to\" value=\"/flags\"");
    let page = client
        .post(
            "/switch-environment",
            &[("environment", "production"), ("return_to", "/flags?q=alp")],
        )
        .await;
    assert_eq!(page.status, 303);
    assert_eq!(page.location.as_deref(), Some("/flags?q=alp"));
    let page = client.get("/flags?q=alp").await;
    assert_eq!(
        active_environment(&page.body).as_deref(),
        Some("production")
    );
    page.assert_contains("Rule in Production")
        .assert_contains("<body class=\"env-red\">")
        .assert_contains(
            "You are working in <strong>Production</strong> · changes here ask for confirmation",
        );
    assert!(flag_row(&page.body, "alpha")
        .unwrap()
        .contains("mode-all\">All<"));

    // Unknown environments and off-site return addresses are refused.
    let page = client
        .post(
            "/switch-environment",
            &[("environment", "nowhere"), ("return_to", "/flags")],
        )
        .await;
    assert_eq!(page.status, 404);
    let page = client
        .post(
            "/switch-environment",
            &[
                ("environment", "staging"),
                ("return_to", "https://evil.example/"),
            ],
        )
        .await;
    assert_eq!(page.location.as_deref(), Some("/flags"));
    let page = client.get("/flags").await;
    assert_eq!(active_environment(&page.body).as_deref(), Some("staging"));

    // Another admin's session has its own active environment.
    client
        .post(
            "/switch-environment",
            &[("environment", "production"), ("return_to", "/flags")],
        )
        .await;
    let other = app
        .signed_in("ed@example.com", flagpole::admins::Role::Editor)
        .await;
    let page = other.get("/flags").await;
    assert_eq!(active_environment(&page.body).as_deref(), Some("staging"));
    let page = client.get("/flags").await;
    assert_eq!(
        active_environment(&page.body).as_deref(),
        Some("production")
    );
}

on_both_backends!(
    staging_and_production_exist_from_the_start,
    adding_an_environment_gives_every_flag_a_none_rule_there,
    a_new_environment_asks_for_confirmation_only_when_told_to,
    invalid_or_duplicate_environments_are_refused_and_nothing_is_saved,
    an_environment_can_be_renamed_and_recoloured_but_keeps_its_slug,
    environments_move_up_and_down,
    the_switcher_changes_the_active_environment_for_this_session,
);
