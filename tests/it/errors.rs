//! Errors: 404 pages, health checks, and garbage input that must never be a 500.

use crate::common::{Client, TestApp};
use crate::support::*;
use flagpole::evaluation::Mode;

/// GET `path` and return (status, content type, body).
async fn raw_get(client: &Client, path: &str) -> (u16, String, String) {
    let resp = client
        .http
        .get(format!("{}{}", client.base, path))
        .send()
        .await
        .expect("GET");
    let status = resp.status().as_u16();
    let content_type = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    (status, content_type, resp.text().await.unwrap_or_default())
}

/// POST an already encoded form body, with the session's CSRF token first.
async fn raw_post(client: &Client, path: &str, encoded: &str) -> (u16, String) {
    let token = client.csrf().await;
    let resp = client
        .http
        .post(format!("{}{}", client.base, path))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("_csrf={token}&{encoded}"))
        .send()
        .await
        .expect("POST");
    let status = resp.status().as_u16();
    (status, resp.text().await.unwrap_or_default())
}

fn no_server_error(status: u16, what: &str, body: &str) {
    assert!(
        status < 500,
        "{what} gave {status}, a server error:\n{body}"
    );
}

async fn an_unknown_page_is_a_404_html_page(app: TestApp) {
    let signed_out = app.client();
    let (status, content_type, body) = raw_get(&signed_out, "/no/such/page").await;
    assert_eq!(status, 404);
    assert!(content_type.starts_with("text/html"), "{content_type}");
    assert!(body.contains("<h1>Not found</h1>"), "{body}");
    assert!(body.contains("href=\"/flags\">Go to feature flags</a>"));

    let owner = app.owner().await;
    for path in [
        "/no/such/page",
        "/flags/new/extra/bits",
        "/static/missing.css",
        "/admin",
    ] {
        let (status, content_type, body) = raw_get(&owner, path).await;
        assert_eq!(status, 404, "{path}");
        assert!(
            content_type.starts_with("text/html"),
            "{path}: {content_type}"
        );
        assert!(body.contains("Not found"), "{path}: {body}");
    }
    // The real stylesheet is served.
    let (status, content_type, _) = raw_get(&owner, "/static/app.css").await;
    assert_eq!(status, 200);
    assert!(content_type.starts_with("text/css"));
}

async fn an_unknown_flag_is_a_404(app: TestApp) {
    let client = app.owner().await;
    for path in [
        "/flags/no-such-flag",
        "/flags/no-such-flag/environments/staging",
    ] {
        let page = client.get(path).await;
        assert_eq!(page.status, 404, "{path}");
        page.assert_contains("The page or object you asked for does not exist.");
    }
    let posts: [(&str, Vec<(&str, &str)>); 5] = [
        ("/flags/no-such-flag", vec![("name", "X")]),
        ("/flags/no-such-flag/archive", vec![("archived", "true")]),
        (
            "/flags/no-such-flag/environments/staging/toggle",
            vec![("enabled", "true"), ("version", "1")],
        ),
        (
            "/flags/no-such-flag/environments/staging",
            vec![("mode", "all"), ("version", "1"), ("op", "save")],
        ),
        (
            "/flags/no-such-flag/environments/production/edit-in",
            vec![],
        ),
    ];
    for (path, fields) in &posts {
        let page = client.post(path, fields).await;
        if path.ends_with("edit-in") {
            // Switching environment needs no flag; the editor it leads to is a 404.
            assert_eq!(page.status, 303, "{path}");
            let editor = client.get(page.location.as_deref().unwrap()).await;
            assert_eq!(editor.status, 404);
        } else {
            assert_eq!(page.status, 404, "{path}: {}", page.body);
        }
    }
    assert_eq!(count!(app, flags), 0);
}

async fn an_unknown_environment_is_a_404(app: TestApp) {
    make_flag(&app, "Checkout", "checkout", "");
    let client = app.owner().await;
    let page = client.get("/flags/checkout/environments/nowhere").await;
    assert_eq!(page.status, 404);
    for (path, fields) in [
        (
            "/flags/checkout/environments/nowhere",
            vec![("mode", "all"), ("version", "1"), ("op", "save")],
        ),
        (
            "/flags/checkout/environments/nowhere/toggle",
            vec![("enabled", "true"), ("version", "1"), ("confirmed", "true")],
        ),
        ("/flags/checkout/environments/nowhere/edit-in", vec![]),
        ("/environments/nowhere/move", vec![("direction", "up")]),
        ("/switch-environment", vec![("environment", "nowhere")]),
    ] {
        let page = client.post(path, &fields).await;
        assert_eq!(page.status, 404, "{path}: {}", page.body);
    }
    let page = client.get("/flags").await;
    assert_eq!(active_environment(&page.body).as_deref(), Some("staging"));
    for env in ["staging", "production"] {
        let rule = rule(&app, "checkout", env);
        assert_eq!(
            (rule.mode.as_str(), rule.enabled, rule.version),
            ("none", false, 1)
        );
    }
}

async fn unknown_organizations_and_users_are_404s(app: TestApp) {
    let client = app.owner().await;
    for path in [
        "/organizations/org_01NOSUCHORG000000000000000",
        "/users/user_01NOSUCHUSER00000000000000",
        "/organizations/anything",
    ] {
        assert_eq!(client.get(path).await.status, 404, "{path}");
    }
    for (path, fields) in [
        ("/organizations/org_nope", vec![("name", "X")]),
        ("/organizations/org_nope/delete", vec![]),
        ("/users/user_nope", vec![("email", "x@example.com")]),
        ("/users/user_nope/delete", vec![]),
        ("/organizations/org_nope/members/user_nope/remove", vec![]),
    ] {
        let page = client.post(path, &fields).await;
        assert_eq!(page.status, 404, "{path}: {}", page.body);
    }
}

async fn health_checks_answer_200_without_signing_in(app: TestApp) {
    let client = app.client();
    let (status, content_type, body) = raw_get(&client, "/healthz").await;
    assert_eq!(status, 200);
    assert!(content_type.starts_with("application/json"));
    let value: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(value["status"], "ok");
    let (status, _, body) = raw_get(&client, "/readyz").await;
    assert_eq!(status, 200);
    let value: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(value["status"], "ready");
}

async fn very_long_input_is_refused_politely(app: TestApp) {
    let client = app.owner().await;
    let long = "x".repeat(10_000);
    let page = client
        .post("/flags", &[("name", &long), ("slug", "long-name")])
        .await;
    assert_eq!(page.status, 422);
    assert_eq!(
        field_error(&page.body, "name").as_deref(),
        Some("A name has at most 100 characters.")
    );
    let page = client
        .post(
            "/flags",
            &[
                ("name", "Fine"),
                ("slug", &long),
                ("description", &"d".repeat(100_000)),
            ],
        )
        .await;
    assert_eq!(page.status, 422);
    assert!(field_error(&page.body, "slug").is_some());
    assert_eq!(
        field_error(&page.body, "description").as_deref(),
        Some("The description has at most 1000 characters.")
    );
    let page = client.post("/organizations", &[("name", &long)]).await;
    assert_eq!(page.status, 422);
    let page = client
        .post("/users", &[("email", &format!("{long}@example.com"))])
        .await;
    assert_eq!(page.status, 422);
    let page = client
        .post(
            "/users",
            &[("email", "a@example.com"), ("first_name", &long)],
        )
        .await;
    assert_eq!(page.status, 422);
    assert!(field_error(&page.body, "first_name").is_some());
    let page = client.get(&format!("/flags?q={}", "q".repeat(4_000))).await;
    assert_eq!(page.status, 200);
    let page = client.get(&format!("/users?q={}", "q".repeat(4_000))).await;
    assert_eq!(page.status, 200);
    let page = app.client().login(&long, &long).await;
    no_server_error(page.status, "a long sign-in", &page.body);
    // A body far beyond any form is turned away.
    let page = client
        .post(
            "/flags",
            &[("name", "Huge"), ("description", &"d".repeat(2_000_000))],
        )
        .await;
    no_server_error(page.status, "a 2 MB form", &page.body);
    assert!(page.status >= 400);
    assert_eq!(count!(app, flags), 0);
    assert_eq!(count!(app, organizations), 0);
    assert_eq!(count!(app, users), 0);
}

async fn malformed_editor_and_toggle_fields_are_bad_requests(app: TestApp) {
    make_flag(&app, "Checkout", "checkout", "");
    let acme = make_org(&app, "Acme", "");
    set_rule(&app, "checkout", "staging", Mode::Some, &[&acme.id]);
    let editor = "/flags/checkout/environments/staging";
    let client = app.owner().await;
    for (fields, message) in [
        (
            vec![("mode", "all"), ("version", "abc"), ("op", "save")],
            "The form lost its version",
        ),
        (
            vec![
                ("mode", "all"),
                ("version", "99999999999999999999"),
                ("op", "save"),
            ],
            "The form lost its version",
        ),
        (
            vec![("mode", "all"), ("op", "save")],
            "The form lost its version",
        ),
        (
            vec![("mode", "sometimes"), ("version", "2"), ("op", "save")],
            "Choose None, Some or All.",
        ),
        (
            vec![("version", "2"), ("op", "save")],
            "Choose None, Some or All.",
        ),
    ] {
        let page = client.post(editor, &fields).await;
        assert_eq!(page.status, 400, "{fields:?}: {}", page.body);
        says(&page, message);
    }
    // Odd values elsewhere in the form are ignored or clamped, never a crash.
    for fields in [
        vec![
            ("mode", "some"),
            ("version", "2"),
            ("goto_page", "9223372036854775807"),
        ],
        vec![
            ("mode", "some"),
            ("version", "2"),
            ("goto_page", "-9223372036854775808"),
        ],
        vec![("mode", "some"), ("version", "2"), ("goto_page", "1e9")],
        vec![
            ("mode", "some"),
            ("version", "2"),
            ("tpage", "99999999999999999999"),
        ],
        vec![
            ("mode", "some"),
            ("version", "2"),
            ("add", "garbage"),
            ("remove", "org_"),
        ],
        vec![
            ("mode", "some"),
            ("version", "2"),
            ("add_target", "'; DROP TABLE flags; --"),
        ],
        vec![
            ("mode", "some"),
            ("version", "-2147483648"),
            ("op", "search"),
            ("q", "%_\\"),
        ],
        vec![
            ("mode", "some"),
            ("version", "2147483647"),
            ("op", "nonsense"),
        ],
    ] {
        let page = client.post(editor, &fields).await;
        assert_eq!(page.status, 200, "{fields:?}: {}", page.body);
    }
    // A version at the limit of the integer is stale, not a crash.
    let page = client
        .post(
            editor,
            &[("mode", "all"), ("version", "2147483647"), ("op", "save")],
        )
        .await;
    no_server_error(page.status, "the largest version", &page.body);
    says(&page, "Someone else changed this rule");

    let toggle = "/flags/checkout/environments/staging/toggle";
    for enabled in ["maybe", "", "TRUE", "1"] {
        let page = client
            .post(toggle, &[("enabled", enabled), ("version", "2")])
            .await;
        assert_eq!(page.status, 400, "enabled={enabled:?}");
        says(&page, "Say whether to turn the flag on or off.");
    }
    let page = client
        .post(
            "/flags/checkout/environments/production/toggle",
            &[("enabled", "true"), ("version", "not-a-number")],
        )
        .await;
    assert_eq!(page.status, 200, "the confirmation page: {}", page.body);
    let page = client
        .post("/environments/staging/move", &[("direction", "sideways")])
        .await;
    no_server_error(page.status, "an unknown direction", &page.body);
    let page = client
        .post(
            "/admins",
            &[
                ("email", "x@example.com"),
                ("password", "long enough pw"),
                ("role", "god"),
            ],
        )
        .await;
    assert_eq!(page.status, 422);

    let rule = rule(&app, "checkout", "staging");
    assert_eq!(
        (rule.mode.as_str(), rule.enabled, rule.version),
        ("some", false, 2)
    );
    assert_eq!(targets(&app, "checkout", "staging"), vec![acme.id]);
    assert!(!crate::support::rule(&app, "checkout", "production").enabled);
    assert_eq!(count!(app, flags), 1);
}

async fn broken_percent_encoding_is_not_a_server_error(app: TestApp) {
    make_flag(&app, "Checkout", "checkout", "");
    let client = app.owner().await;
    for path in [
        "/flags?q=%FF%FE",
        "/flags?q=%",
        "/flags?q=%zz&tag=%C3",
        "/flags?page=%FF",
        "/flags/%FF",
        "/flags/%C3%28",
        "/flags/checkout/environments/%FF",
        "/organizations/%FF",
        "/organizations?q=%E2%82",
        "/users?q=%ED%A0%80",
        "/audit?actor=%FF&environment=%FE",
        "/login?next=%FF",
    ] {
        let (status, _, body) = raw_get(&client, path).await;
        no_server_error(status, path, &body);
    }
    for (path, body) in [
        ("/flags", "name=%FF%FE&slug=bad%"),
        ("/flags", "name=ok&slug=%E2%82&description=%ED%A0%80"),
        ("/flags/checkout", "name=%FF&tags=%C3"),
        (
            "/flags/checkout/environments/staging",
            "mode=%FF&version=%FE",
        ),
        (
            "/flags/checkout/environments/staging",
            "mode=some&version=1&op=search&q=%FF%FE",
        ),
        ("/organizations", "name=%FF&external_id=%FE"),
        ("/users", "email=%FF@example.com"),
        ("/switch-environment", "environment=%FF&return_to=%FE"),
        ("/flags", "%%%&&&==="),
    ] {
        let (status, text) = raw_post(&client, path, body).await;
        no_server_error(status, &format!("POST {path} {body}"), &text);
    }
    assert_eq!(count!(app, flags), 1);
}

async fn nul_characters_are_refused_not_a_crash(app: TestApp) {
    make_flag(&app, "Checkout", "checkout", "");
    let acme = make_org(&app, "Acme", "");
    let client = app.owner().await;
    for path in [
        "/flags?q=%00",
        "/flags?tag=%00",
        "/flags/%00",
        "/flags/checkout%00",
        "/flags/checkout/environments/%00",
        "/organizations?q=a%00b",
        "/organizations/%00",
        "/users?q=%00",
        "/users/%00",
        "/audit?actor=%00",
        "/login?next=%00",
    ] {
        let (status, _, body) = raw_get(&client, path).await;
        no_server_error(status, path, &body);
    }
    for (path, body) in [
        ("/flags", "name=Nul&slug=nul&description=a%00b"),
        ("/flags", "name=a%00b&slug=nul2"),
        ("/flags/checkout", "name=Checkout&description=%00"),
        (
            "/flags/checkout/environments/staging",
            "mode=some&version=1&op=search&q=%00",
        ),
        (
            "/flags/checkout/environments/staging",
            "mode=some&version=1&op=save&add=org_%00",
        ),
        ("/organizations", "name=Nul%00Org"),
        ("/users", "email=nul@example.com&first_name=a%00"),
        (&format!("/organizations/{}/members", acme.id), "user=%00"),
        ("/switch-environment", "environment=%00"),
        ("/environments", "name=Q%00A&slug=qa&color=%231d4ed8"),
    ] {
        let (status, text) = raw_post(&client, path, body).await;
        no_server_error(status, &format!("POST {path} {body}"), &text);
    }
    let fresh = app.client();
    fresh.get("/login").await;
    let (status, text) = raw_post(&fresh, "/login", "email=a%00@example.com&password=x").await;
    no_server_error(status, "a sign-in with NUL", &text);
    // Nothing with a NUL was stored.
    assert_eq!(count!(app, flags), 1);
    assert_eq!(flag(&app, "checkout").description, "");
    assert_eq!(count!(app, organizations), 1);
    assert_eq!(count!(app, users), 0);
    assert_eq!(count!(app, environments), 2);
}

async fn a_page_past_the_end_shows_the_last_page(app: TestApp) {
    for i in 1..=30 {
        make_flag(&app, &format!("Flag {i:02}"), &format!("flag-{i:02}"), "");
    }
    let client = app.owner().await;
    let page = client.get("/flags?page=999999").await;
    assert_eq!(page.status, 200);
    assert_eq!(listed_flags(&page.body).len(), 5, "the last page's flags");
    page.assert_contains("26–30 of 30 flags · page 2 of 2");
    assert!(!page.body.contains("No feature flags yet"));
    let page = client.get("/organizations?page=50").await;
    assert_eq!(page.status, 200);
    page.assert_contains("No organizations yet");
}

on_both_backends!(
    an_unknown_page_is_a_404_html_page,
    an_unknown_flag_is_a_404,
    an_unknown_environment_is_a_404,
    unknown_organizations_and_users_are_404s,
    health_checks_answer_200_without_signing_in,
    very_long_input_is_refused_politely,
    malformed_editor_and_toggle_fields_are_bad_requests,
    broken_percent_encoding_is_not_a_server_error,
    nul_characters_are_refused_not_a_crash,
    a_page_past_the_end_shows_the_last_page,
);
