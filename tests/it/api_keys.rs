//! Secret API keys and signing keys: from the dashboard and from the CLI.

use std::io::Write;
use std::process::{Command, Stdio};

use crate::common::TestApp;
use flagpole::admins::Role;
use serde_json::json;

fn cli(app: &TestApp, args: &[&str]) -> std::process::Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_flagpole"))
        .args(args)
        .env("DATABASE_URL", &app.database_url)
        .env("FLAGPOLE_SECRET_KEY", hex::encode([7u8; 64]))
        .env("FLAGPOLE_DATA_DIR", std::env::temp_dir())
        .env("RUST_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the flagpole binary runs");
    child.stdin.take().unwrap().write_all(b"").unwrap();
    child.wait_with_output().unwrap()
}

fn a_user(app: &TestApp) -> String {
    flagpole::directory::users::create(
        &mut app.conn(),
        &crate::support::actor(),
        &flagpole::directory::users::NewUser {
            email: "ada@example.com".into(),
            first_name: String::new(),
            last_name: String::new(),
            external_id: String::new(),
        },
    )
    .unwrap()
    .id
    .to_string()
}

async fn a_key_created_in_the_dashboard_is_shown_once_and_works_until_revoked(app: TestApp) {
    let user = a_user(&app);
    let admin = app.owner().await;
    let page = admin
        .post("/environments/staging/api-keys", &[("name", "web backend")])
        .await;
    assert_eq!(page.status, 200, "{}", page.body);
    page.assert_contains("Copy the Staging key");
    let start = page
        .body
        .find("id=\"new-secret\"")
        .expect("the secret is shown");
    let value = &page.body[start..];
    let value = &value[value.find("value=\"").unwrap() + 7..];
    let secret = &value[..value.find('"').unwrap()];
    assert!(secret.starts_with("sk_") && secret.len() > 40);

    // Shown once: the list shows only the prefix afterwards.
    let list = admin.get("/environments").await;
    assert!(!list.body.contains(secret));
    list.assert_contains(&secret[..11]);

    let api = app.api(Some(secret));
    let r = api.post("/api/v1/sessions", json!({"user_id": user})).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    list.assert_contains("web backend");
    let after_use = admin.get("/environments").await;
    assert!(
        !after_use.body.contains("last used never"),
        "last use is recorded"
    );

    let key_id = {
        let at = after_use.body.find("/api-keys/key_").unwrap();
        let rest = &after_use.body[at + "/api-keys/".len()..];
        rest[..rest.find('/').unwrap()].to_string()
    };
    let page = admin
        .post(
            &format!("/environments/staging/api-keys/{key_id}/revoke"),
            &[],
        )
        .await;
    assert_eq!(page.status, 303);
    let r = api.post("/api/v1/sessions", json!({"user_id": user})).await;
    assert_eq!((r.status, r.code()), (401, "invalid_api_key"));
}

async fn a_key_needs_a_name_and_viewers_cannot_create_one(app: TestApp) {
    let admin = app.owner().await;
    let page = admin
        .post("/environments/staging/api-keys", &[("name", "  ")])
        .await;
    assert_eq!(page.status, 422);
    page.assert_contains("Enter a name");
    let viewer = app.signed_in("viewer@example.com", Role::Viewer).await;
    let page = viewer
        .post("/environments/staging/api-keys", &[("name", "x")])
        .await;
    assert_eq!(page.status, 403);
    let count: i64 = {
        use diesel::prelude::*;
        flagpole::db::schema::api_keys::table
            .count()
            .get_result(&mut *app.conn())
            .unwrap()
    };
    assert_eq!(count, 0);
}

async fn the_cli_prints_only_the_new_key_and_rotates_signing_keys(app: TestApp) {
    let user = a_user(&app);
    let out = cli(
        &app,
        &[
            "api-key",
            "create",
            "--environment",
            "production",
            "--name",
            "ci",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let secret = stdout.trim();
    assert_eq!(
        stdout.lines().count(),
        1,
        "only the key is printed: {stdout:?}"
    );
    assert!(secret.starts_with("sk_"));
    let api = app.api(Some(secret));
    // The key was made by another process: the server's poll brings it.
    crate::common::eventually(
        "the new key works",
        std::time::Duration::from_secs(3),
        || async {
            api.post("/api/v1/evaluate", json!({"user_id": user}))
                .await
                .status
                == 200
        },
    )
    .await;
    let before = api.post("/api/v1/sessions", json!({"user_id": user})).await;
    assert_eq!(before.status, 201);
    let old_kid = jsonwebtoken::decode_header(before.body["access_token"].as_str().unwrap())
        .unwrap()
        .kid
        .unwrap();

    let out = cli(
        &app,
        &[
            "keys",
            "rotate",
            "--environment",
            "production",
            "--algorithm",
            "RS256",
            "--now",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(" now"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // The signer cache is re-read within seconds; a rotation from the CLI (another process) shows up then.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let after = api.post("/api/v1/sessions", json!({"user_id": user})).await;
        let header =
            jsonwebtoken::decode_header(after.body["access_token"].as_str().unwrap()).unwrap();
        if header.kid.as_deref() != Some(old_kid.as_str()) {
            assert_eq!(header.alg, jsonwebtoken::Algorithm::RS256);
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the new key was never used"
        );
        actix_web::rt::time::sleep(std::time::Duration::from_millis(500)).await;
    }

    let out = cli(
        &app,
        &[
            "api-key",
            "create",
            "--environment",
            "nowhere",
            "--name",
            "x",
        ],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no environment has the slug"));
}

async fn the_user_page_lists_active_sessions_and_revokes_them(app: TestApp) {
    let user = a_user(&app);
    let out = cli(
        &app,
        &[
            "api-key",
            "create",
            "--environment",
            "staging",
            "--name",
            "ci",
        ],
    );
    let secret = String::from_utf8(out.stdout).unwrap().trim().to_string();
    crate::common::eventually(
        "the new key works",
        std::time::Duration::from_secs(3),
        || async {
            app.api(Some(&secret))
                .post("/api/v1/evaluate", json!({"user_id": user}))
                .await
                .status
                == 200
        },
    )
    .await;
    let session = app
        .api(Some(&secret))
        .post("/api/v1/sessions", json!({"user_id": user}))
        .await;
    let sid = session.body["session_id"].as_str().unwrap().to_string();
    let admin = app.owner().await;
    let page = admin.get(&format!("/users/{user}")).await;
    page.assert_contains("Active sessions")
        .assert_contains(&sid);
    let page = admin
        .post(&format!("/users/{user}/sessions/{sid}/revoke"), &[])
        .await;
    assert_eq!(page.status, 303);
    let r = app
        .api(None)
        .post(
            "/api/v1/sessions/refresh",
            json!({"refresh_token": session.body["refresh_token"]}),
        )
        .await;
    assert_eq!(r.code(), "session_revoked");
    let page = admin.get(&format!("/users/{user}")).await;
    assert!(!page.body.contains(&sid));
}

on_both_backends!(
    a_key_created_in_the_dashboard_is_shown_once_and_works_until_revoked,
    a_key_needs_a_name_and_viewers_cannot_create_one,
    the_cli_prints_only_the_new_key_and_rotates_signing_keys,
    the_user_page_lists_active_sessions_and_revokes_them,
);
