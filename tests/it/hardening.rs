//! What a hostile client tried, and what must hold: a refresh token reused
//! in a race still revokes its session, a rule naming one target twice
//! keeps it once, control characters and NUL are refused alike on both
//! backends, HSTS over https, private files, old sessions forgotten.

use std::time::Duration;

use crate::common::{Backend, TestApp};
use crate::support::*;
use serde_json::json;

async fn a_refresh_token_reused_in_a_race_revokes_its_session(app: TestApp) {
    let user = make_user(&app, "ada@example.com", "Ada", "L", "ada");
    let key = api_key(&app, "production", "race");
    let api = app.api(Some(&key));
    let anonymous = app.api(None);
    for round in 0..10 {
        let started = api
            .post("/api/v1/sessions", json!({"user_id": user.id}))
            .await;
        assert_eq!(started.status, 201, "{:?}", started.body);
        let body = json!({"refresh_token": started.body["refresh_token"]});
        let (a, b) = (app.api(None), app.api(None));
        let (first, second) = tokio::join!(
            a.post("/api/v1/sessions/refresh", body.clone()),
            b.post("/api/v1/sessions/refresh", body.clone())
        );
        let mut statuses = [first.status, second.status];
        statuses.sort_unstable();
        assert_eq!(statuses, [200, 401], "round {round}: exactly one wins");
        let (winner, loser) = if first.status == 200 {
            (first, second)
        } else {
            (second, first)
        };
        assert_eq!(loser.code(), "refresh_token_reused", "round {round}");
        // The reuse revoked the whole session: the winner's new token is dead too.
        let next = anonymous
            .post(
                "/api/v1/sessions/refresh",
                json!({"refresh_token": winner.body["refresh_token"]}),
            )
            .await;
        assert_eq!(next.status, 401, "round {round}: {:?}", next.body);
        assert_eq!(next.code(), "session_revoked", "round {round}");
    }
}

async fn a_rule_naming_one_target_twice_keeps_it_once(app: TestApp) {
    let acme = make_org(&app, "Acme", "acme");
    make_flag(&app, "Beta", "beta", "");
    let key = api_key(&app, "production", "dup");
    let api = app.api(Some(&key));
    let r = api
        .put_json(
            "/api/v1/feature-flags/beta/environments/production",
            None,
            json!({"mode": "some", "targets": [
                {"type": "organization", "id": acme.id},
                {"type": "organization", "id": "acme"},
                {"type": "organization", "id": acme.id},
            ]}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["targets"].as_array().unwrap().len(), 1);
    assert_eq!(targets(&app, "beta", "production"), [acme.id.to_string()]);
}

async fn control_characters_and_nul_are_refused_alike(app: TestApp) {
    let key = api_key(&app, "production", "text");
    let api = app.api(Some(&key));
    for (path, body, field) in [
        (
            "/api/v1/organizations",
            json!({"name": "Acme\u{7}"}),
            "name",
        ),
        (
            "/api/v1/organizations",
            json!({"name": "Acme\u{0}"}),
            "name",
        ),
        (
            "/api/v1/users",
            json!({"email": "ada@example.com", "first_name": "A\u{1b}[31m"}),
            "first_name",
        ),
        (
            "/api/v1/feature-flags",
            json!({"name": "Beta\u{0}", "slug": "beta"}),
            "name",
        ),
    ] {
        let r = api.post(path, body.clone()).await;
        assert_eq!(r.status, 422, "{path} {body}: {:?}", r.body);
        assert_eq!(r.body["error"]["field"], field, "{path} {body}");
    }
    assert_eq!(crate::count!(app, organizations), 0);
    assert_eq!(crate::count!(app, users), 0);
    assert_eq!(crate::count!(app, flags), 0);
}

async fn hsts_is_sent_over_https_only(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let r = reqwest::get(format!("{}/healthz", app.base)).await.unwrap();
    assert!(r.headers().get("strict-transport-security").is_none());
    let Some(app) = TestApp::spawn_with(backend, |c| {
        c.public_url = "https://flags.example.com".into();
    })
    .await
    else {
        return;
    };
    let r = reqwest::get(format!("{}/login", app.base)).await.unwrap();
    assert_eq!(
        r.headers()["strict-transport-security"].to_str().unwrap(),
        "max-age=31536000"
    );
}

#[cfg(unix)]
#[actix_web::test]
async fn the_database_and_the_data_directory_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut config = flagpole::Config::new(
        format!("sqlite://{}", dir.path().join("private.db").display()),
        "127.0.0.1:0".into(),
        "http://127.0.0.1".into(),
        data.clone(),
        vec![7u8; 64],
    );
    config.http_workers = Some(1);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let _app = flagpole::Application::build_with_listener(config, listener)
        .await
        .unwrap();
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir.path().join("private.db")), 0o600);
    // The data directory, where a generated secret key is kept.
    flagpole::config::create_private_dir(&data).unwrap();
    assert_eq!(mode(&data), 0o700);
}

async fn ended_sessions_are_forgotten(app: TestApp) {
    let user = make_user(&app, "ada@example.com", "Ada", "L", "ada");
    let key = api_key(&app, "production", "prune");
    let api = app.api(Some(&key));
    let kept = api
        .post("/api/v1/sessions", json!({"user_id": user.id}))
        .await;
    let gone = api
        .post("/api/v1/sessions", json!({"user_id": user.id}))
        .await;
    assert_eq!(
        api.post(
            "/api/v1/sessions/revoke",
            json!({"session_id": gone.body["session_id"]})
        )
        .await
        .status,
        204
    );
    let mut conn = app.conn();
    assert_eq!(
        flagpole::tokens::sessions::prune(&mut conn, Duration::from_secs(3600)).unwrap(),
        0,
        "revoked just now: kept for the retention"
    );
    assert_eq!(
        flagpole::tokens::sessions::prune(&mut conn, Duration::ZERO).unwrap(),
        1
    );
    drop(conn);
    assert_eq!(crate::count!(app, sessions), 1);
    assert_eq!(crate::count!(app, refresh_tokens), 1);
    let r = app
        .api(None)
        .post(
            "/api/v1/sessions/refresh",
            json!({"refresh_token": kept.body["refresh_token"]}),
        )
        .await;
    assert_eq!(r.status, 200, "the live session is untouched");
}

on_both_backends!(
    a_refresh_token_reused_in_a_race_revokes_its_session,
    a_rule_naming_one_target_twice_keeps_it_once,
    control_characters_and_nul_are_refused_alike,
    ended_sessions_are_forgotten,
);

#[actix_web::test]
async fn hsts_on_sqlite() {
    hsts_is_sent_over_https_only(Backend::Sqlite).await;
}

#[actix_web::test]
async fn hsts_on_postgres() {
    hsts_is_sent_over_https_only(Backend::Postgres).await;
}
