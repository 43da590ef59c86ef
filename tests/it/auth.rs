//! Admin accounts: first-admin setup, signing in and out, throttling, CSRF,
//! the session cookie, and what viewers, editors and owners may do.

use crate::common::{csrf_in, Backend, TestApp};
use crate::support::*;
use diesel::prelude::*;
use flagpole::admins::Role;
use flagpole::db::schema::admins;
use flagpole::evaluation::Mode;

fn setup_path(app: &TestApp) -> String {
    let url = app
        .setup_url
        .clone()
        .expect("a fresh app prints a setup link");
    let at = url.find("/setup?token=").expect("a setup path");
    url[at..].to_string()
}

fn token_of(path: &str) -> String {
    path.split("token=").nth(1).unwrap().to_string()
}

fn admin_roles(app: &TestApp) -> Vec<(String, String)> {
    let mut conn = app.conn();
    admins::table
        .order(admins::email.asc())
        .select((admins::email, admins::role))
        .load(&mut *conn)
        .unwrap()
}

async fn the_setup_link_creates_the_first_owner_and_works_only_once(app: TestApp) {
    let path = setup_path(&app);
    let token = token_of(&path);
    let client = app.client();
    let page = client.get(&path).await;
    assert_eq!(page.status, 200, "{}", page.body);
    page.assert_contains("Create the first admin");
    let page = client
        .post(
            "/setup",
            &[
                ("token", &token),
                ("email", "First@Example.com"),
                ("password", "a long enough secret"),
                ("password_confirmation", "a long enough secret"),
            ],
        )
        .await;
    assert_eq!(page.status, 303, "{}", page.body);
    assert_eq!(page.location.as_deref(), Some("/flags"));
    assert_eq!(
        admin_roles(&app),
        vec![("first@example.com".to_string(), "owner".to_string())]
    );
    // The new owner is signed in.
    let flags = client.get("/flags").await;
    assert_eq!(flags.status, 200);
    flags.assert_contains("first@example.com");
    says(&flags, "Welcome to Flagpole.");
    // And can sign in again later with that password.
    let other = app.client();
    assert_eq!(
        other
            .login("first@example.com", "a long enough secret")
            .await
            .status,
        303
    );

    // The link is spent.
    let stranger = app.client();
    let page = stranger.get(&path).await;
    assert_eq!(page.status, 403);
    page.assert_contains("This setup link is not valid");
    let page = stranger
        .post(
            "/setup",
            &[
                ("token", &token),
                ("email", "intruder@example.com"),
                ("password", "a long enough secret"),
                ("password_confirmation", "a long enough secret"),
            ],
        )
        .await;
    assert_eq!(page.status, 403);
    assert_eq!(admin_roles(&app).len(), 1);
    assert_eq!(stranger.get("/flags").await.status, 303);
}

async fn setup_shows_field_errors_and_saves_nothing(app: TestApp) {
    let path = setup_path(&app);
    let token = token_of(&path);
    let client = app.client();
    client.get(&path).await;
    let page = client
        .post(
            "/setup",
            &[
                ("token", &token),
                ("email", "first@example.com"),
                ("password", "a long enough secret"),
                ("password_confirmation", "a different secret"),
            ],
        )
        .await;
    assert_eq!(page.status, 422, "{}", page.body);
    assert_eq!(
        field_error(&page.body, "password_confirmation").as_deref(),
        Some("The two passwords differ.")
    );
    page.assert_contains("value=\"first@example.com\"");

    let page = client
        .post(
            "/setup",
            &[
                ("token", &token),
                ("email", "first@example.com"),
                ("password", "short"),
                ("password_confirmation", "short"),
            ],
        )
        .await;
    assert_eq!(page.status, 422);
    assert_eq!(
        field_error(&page.body, "password").as_deref(),
        Some("Use at least 10 characters.")
    );

    let page = client
        .post(
            "/setup",
            &[
                ("token", &token),
                ("email", "not-an-email"),
                ("password", "a long enough secret"),
                ("password_confirmation", "a long enough secret"),
            ],
        )
        .await;
    assert_eq!(page.status, 422);
    assert!(field_error(&page.body, "email").is_some(), "{}", page.body);
    assert_eq!(count!(app, admins), 0);
    assert_eq!(client.get("/flags").await.status, 303);

    // The errors did not spend the link.
    assert_eq!(client.get(&path).await.status, 200);
    let page = client
        .post(
            "/setup",
            &[
                ("token", &token),
                ("email", "first@example.com"),
                ("password", "a long enough secret"),
                ("password_confirmation", "a long enough secret"),
            ],
        )
        .await;
    assert_eq!(page.status, 303);
    assert_eq!(count!(app, admins), 1);
}

async fn a_wrong_setup_token_is_refused(app: TestApp) {
    let client = app.client();
    assert_eq!(client.get("/setup?token=wrong").await.status, 403);
    assert_eq!(client.get("/setup").await.status, 403);
    client.get("/login").await;
    let page = client
        .post(
            "/setup",
            &[
                ("token", "wrong"),
                ("email", "first@example.com"),
                ("password", "a long enough secret"),
                ("password_confirmation", "a long enough secret"),
            ],
        )
        .await;
    assert_eq!(page.status, 403);
    assert_eq!(count!(app, admins), 0);
}

async fn the_setup_link_cannot_add_an_owner_once_an_admin_exists(app: TestApp) {
    let path = setup_path(&app);
    let _owner = app.owner().await;
    let client = app.client();
    client.get(&path).await;
    let page = client
        .post(
            "/setup",
            &[
                ("token", &token_of(&path)),
                ("email", "second@example.com"),
                ("password", "a long enough secret"),
                ("password_confirmation", "a long enough secret"),
            ],
        )
        .await;
    assert_eq!(page.status, 403, "{}", page.body);
    assert_eq!(
        admin_roles(&app),
        vec![("owner@example.com".to_string(), "owner".to_string())]
    );
}

async fn signing_in_with_the_right_password_opens_the_dashboard(app: TestApp) {
    let _ = app.signed_in("ada@example.com", Role::Editor).await;
    let client = app.client();
    let page = client.get("/login").await;
    assert_eq!(page.status, 200);
    page.assert_contains("<label for=\"email\">Email</label>")
        .assert_contains("<label for=\"password\">Password</label>");
    let page = client
        .login("  ADA@example.com ", "correct horse battery")
        .await;
    assert_eq!(page.status, 303, "{}", page.body);
    assert_eq!(page.location.as_deref(), Some("/flags"));
    let flags = client.get("/flags").await;
    assert_eq!(flags.status, 200);
    flags
        .assert_contains("ada@example.com")
        .assert_contains("<span class=\"badge badge-muted\">editor</span>");
    // Signed in, the sign-in page sends you on.
    assert_eq!(
        client.get("/login").await.location.as_deref(),
        Some("/flags")
    );
}

async fn a_wrong_password_or_unknown_email_is_refused(app: TestApp) {
    let _ = app.signed_in("ada@example.com", Role::Editor).await;
    let client = app.client();
    for (email, password) in [
        ("ada@example.com", "wrong password"),
        ("nobody@example.com", "correct horse battery"),
        ("", ""),
    ] {
        let page = client.login(email, password).await;
        assert_eq!(page.status, 401, "{email}: {}", page.body);
        page.assert_contains("That email and password do not match an admin account.");
        assert_eq!(client.get("/flags").await.status, 303);
    }
}

async fn after_sign_in_you_return_to_the_page_you_asked_for_but_never_off_site(app: TestApp) {
    let _ = app.signed_in("ada@example.com", Role::Editor).await;
    // The page asked for travels through the sign-in form.
    let client = app.client();
    let asked = client.get("/environments").await;
    assert_eq!(
        asked.location.as_deref(),
        Some("/login?next=%2Fenvironments")
    );
    let form = client.get("/login?next=%2Fenvironments").await;
    form.assert_contains("<input type=\"hidden\" name=\"next\" value=\"/environments\">");
    let token = csrf_in(&form.body).unwrap();
    let page = client
        .post_raw(
            "/login",
            &[
                ("_csrf", &token),
                ("email", "ada@example.com"),
                ("password", "correct horse battery"),
                ("next", "/environments"),
            ],
        )
        .await;
    assert_eq!(page.location.as_deref(), Some("/environments"));
    assert_eq!(client.get("/environments").await.status, 200);

    for (next, expected) in [
        ("/environments", "/environments"),
        ("/flags?q=a", "/flags?q=a"),
        ("//evil.example/x", "/flags"),
        ("https://evil.example/x", "/flags"),
        ("/\\evil.example", "/flags"),
        ("/\t/evil.example", "/flags"),
        ("/flags\n", "/flags"),
        ("/flags\u{7f}", "/flags"),
    ] {
        let client = app.client();
        let page = client.get("/login").await;
        let token = csrf_in(&page.body).unwrap();
        let page = client
            .post_raw(
                "/login",
                &[
                    ("_csrf", &token),
                    ("email", "ada@example.com"),
                    ("password", "correct horse battery"),
                    ("next", next),
                ],
            )
            .await;
        assert_eq!(page.status, 303);
        assert_eq!(page.location.as_deref(), Some(expected), "next={next}");
    }
}

/// An app that takes the client's address from `X-Forwarded-For`, so one
/// test can be several clients.
async fn behind_a_proxy(backend: Backend) -> Option<TestApp> {
    TestApp::spawn_with(backend, |c| c.trust_proxy = true).await
}

const ATTACKER: &str = "203.0.113.7";
const OWNER: &str = "198.51.100.1";

async fn wrong_passwords_slow_down_that_client_but_never_lock_the_owner_out(backend: Backend) {
    let Some(app) = behind_a_proxy(backend).await else {
        return;
    };
    let _ = app.signed_in("ada@example.com", Role::Editor).await;
    let attacker = app.client_from(ATTACKER);
    for attempt in 1..=flagpole::admins::throttle::LoginThrottle::ACCOUNT_FREE {
        let page = attacker
            .login("ada@example.com", &format!("guess {attempt}"))
            .await;
        assert_eq!(page.status, 401, "attempt {attempt}");
    }
    // That client, for that account, now waits before each attempt, even
    // with the right password, and in capitals.
    for email in ["ada@example.com", "ADA@example.com"] {
        let page = attacker.login(email, "correct horse battery").await;
        assert_eq!(page.status, 429, "{}", page.body);
        page.assert_contains("Too many failed sign-ins for this email from your address.");
    }
    let r = reqwest::Client::new()
        .post(format!("{}/login", app.base))
        .header("x-forwarded-for", ATTACKER)
        .form(&[
            ("email", "ada@example.com"),
            ("password", "x"),
            ("_csrf", "x"),
        ])
        .send()
        .await
        .unwrap();
    assert!(matches!(r.status().as_u16(), 403 | 429));
    let page = attacker
        .login("ada@example.com", "correct horse battery")
        .await;
    assert_eq!(page.status, 429);
    assert_eq!(attacker.get("/flags").await.status, 303, "not signed in");
    // The owner of the account, from their own address, is not held up.
    let owner = app.client_from(OWNER);
    let page = owner
        .login("ada@example.com", "correct horse battery")
        .await;
    assert_eq!(page.status, 303, "{}", page.body);
    assert_eq!(owner.get("/flags").await.status, 200);
    // Nor is the attacker on another account.
    let _ = app.signed_in("grace@example.com", Role::Viewer).await;
}

async fn a_right_password_clears_the_count(backend: Backend) {
    let Some(app) = behind_a_proxy(backend).await else {
        return;
    };
    let _ = app.signed_in("ada@example.com", Role::Editor).await;
    let client = app.client_from(OWNER);
    let free = flagpole::admins::throttle::LoginThrottle::ACCOUNT_FREE;
    for _ in 1..free {
        assert_eq!(client.login("ada@example.com", "nope").await.status, 401);
    }
    assert_eq!(
        client
            .login("ada@example.com", "correct horse battery")
            .await
            .status,
        303
    );
    let again = app.client_from(OWNER);
    for _ in 1..free {
        assert_eq!(again.login("ada@example.com", "nope").await.status, 401);
    }
    assert_eq!(
        again
            .login("ada@example.com", "correct horse battery")
            .await
            .status,
        303,
        "the count started again after the success"
    );
}

async fn a_flood_of_sign_ins_is_refused_not_queued(backend: Backend) {
    let Some(app) = behind_a_proxy(backend).await else {
        return;
    };
    let _ = app.signed_in("ada@example.com", Role::Editor).await;
    let mut attempts = Vec::new();
    for i in 0..64 {
        let client = app.client_from(&format!("10.0.{}.{}", i / 200, i % 200 + 1));
        attempts.push(actix_web::rt::spawn(async move {
            client
                .login("ada@example.com", &format!("guess {i}"))
                .await
                .status
        }));
    }
    // Health and the API answer meanwhile.
    let ready = reqwest::get(format!("{}/readyz", app.base)).await.unwrap();
    assert_eq!(ready.status(), 200);
    let mut statuses = Vec::new();
    for attempt in attempts {
        statuses.push(attempt.await.unwrap());
    }
    assert!(
        statuses.iter().all(|s| *s == 401 || *s == 429),
        "every attempt is refused as wrong or as too many: {statuses:?}"
    );
    assert!(
        statuses.contains(&429),
        "more attempts than the hashing queue holds are turned away: {statuses:?}"
    );
    // And the right password still works once the burst is over.
    let owner = app.client_from(OWNER);
    assert_eq!(
        owner
            .login("ada@example.com", "correct horse battery")
            .await
            .status,
        303
    );
}

async fn a_signed_out_cookie_no_longer_works(app: TestApp) {
    let client = app.signed_in("ada@example.com", Role::Editor).await;
    let cookie = client.cookie_header();
    assert!(cookie.contains("flagpole_session="), "{cookie}");
    let kept = app.client_with_cookie(&cookie);
    assert_eq!(
        kept.get("/flags").await.status,
        200,
        "the copy works while signed in"
    );
    let page = client.post("/logout", &[]).await;
    assert_eq!(page.status, 303);
    // The copy kept from before signing out is refused, for reading and for changes.
    assert_eq!(kept.get("/flags").await.status, 303);
    let page = kept
        .post_raw(
            "/flags",
            &[("name", "Sneaky"), ("slug", "sneaky"), ("_csrf", "x")],
        )
        .await;
    let refused = page.status == 403
        || page
            .location
            .as_deref()
            .is_some_and(|l| l.starts_with("/login"));
    assert!(refused, "{} {:?}", page.status, page.location);
    assert_eq!(crate::count!(app, flags), 0);
}

async fn sessions_end_when_idle_and_after_their_maximum(backend: Backend) {
    let Some(app) = TestApp::spawn_with(backend, |c| {
        c.session_timeouts.idle = std::time::Duration::from_secs(2);
    })
    .await
    else {
        return;
    };
    let client = app.signed_in("ada@example.com", Role::Editor).await;
    assert_eq!(client.get("/flags").await.status, 200);
    actix_web::rt::time::sleep(std::time::Duration::from_millis(2200)).await;
    assert_eq!(
        client.get("/flags").await.status,
        303,
        "idle for longer than the idle timeout"
    );

    let Some(app) = TestApp::spawn_with(backend, |c| {
        c.session_timeouts.absolute = std::time::Duration::from_secs(2);
    })
    .await
    else {
        return;
    };
    let client = app.signed_in("ada@example.com", Role::Editor).await;
    for _ in 0..3 {
        assert_eq!(client.get("/flags").await.status, 200);
        actix_web::rt::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    actix_web::rt::time::sleep(std::time::Duration::from_millis(800)).await;
    assert_eq!(
        client.get("/flags").await.status,
        303,
        "in use, but past the maximum"
    );
}

async fn signing_out_everywhere_and_changing_the_password_end_other_sessions(app: TestApp) {
    let laptop = app.signed_in("ada@example.com", Role::Editor).await;
    let phone = app.client();
    assert_eq!(
        phone
            .login("ada@example.com", "correct horse battery")
            .await
            .status,
        303
    );
    let page = laptop.get("/account").await;
    assert_eq!(page.status, 200);
    page.assert_contains("this browser");

    // A wrong current password changes nothing.
    let page = laptop
        .post(
            "/account/password",
            &[
                ("current_password", "not it"),
                ("new_password", "a brand new passphrase"),
                ("new_password_confirmation", "a brand new passphrase"),
            ],
        )
        .await;
    assert_eq!(page.status, 422);
    page.assert_contains("This is not your current password.");
    assert_eq!(phone.get("/flags").await.status, 200);

    // The right one changes it: the phone is signed out, the laptop is not.
    let page = laptop
        .post(
            "/account/password",
            &[
                ("current_password", "correct horse battery"),
                ("new_password", "a brand new passphrase"),
                ("new_password_confirmation", "a brand new passphrase"),
            ],
        )
        .await;
    assert_eq!(page.status, 303, "{}", page.body);
    assert_eq!(phone.get("/flags").await.status, 303);
    assert_eq!(laptop.get("/flags").await.status, 200);
    let phone = app.client();
    assert_eq!(
        phone
            .login("ada@example.com", "correct horse battery")
            .await
            .status,
        401
    );
    assert_eq!(
        phone
            .login("ada@example.com", "a brand new passphrase")
            .await
            .status,
        303
    );

    // Signing out everywhere ends both, this one included.
    let page = laptop.post("/account/sign-out-everywhere", &[]).await;
    assert_eq!(page.status, 303);
    assert_eq!(laptop.get("/flags").await.status, 303);
    assert_eq!(phone.get("/flags").await.status, 303);

    // An owner signs another admin out of every browser.
    let owner = app.owner().await;
    let grace = app.signed_in("grace@example.com", Role::Viewer).await;
    let grace_id = {
        let mut conn = app.conn();
        flagpole::admins::find_by_email(&mut conn, "grace@example.com")
            .unwrap()
            .unwrap()
            .id
    };
    let page = owner
        .post(&format!("/admins/{grace_id}/sign-out"), &[])
        .await;
    assert_eq!(page.status, 303, "{}", page.body);
    assert_eq!(grace.get("/flags").await.status, 303);
    assert_eq!(owner.get("/flags").await.status, 200);
    // An editor may not.
    let editor = app.signed_in("eve@example.com", Role::Editor).await;
    let page = editor
        .post(&format!("/admins/{grace_id}/sign-out"), &[])
        .await;
    assert_eq!(page.status, 403);
}

async fn signing_out_ends_the_session(app: TestApp) {
    let client = app.owner().await;
    assert_eq!(client.get("/flags").await.status, 200);
    let page = client.post("/logout", &[]).await;
    assert_eq!(page.status, 303);
    assert_eq!(page.location.as_deref(), Some("/login"));
    let page = client.get("/flags").await;
    assert_eq!(page.status, 303);
    assert_eq!(page.location.as_deref(), Some("/login?next=%2Fflags"));
}

async fn every_dashboard_page_sends_you_to_sign_in_when_signed_out(app: TestApp) {
    make_flag(&app, "Checkout", "checkout", "");
    let org = make_org(&app, "Acme", "");
    let user = make_user(&app, "ada@example.com", "", "", "");
    let client = app.client();
    let pages = [
        "/flags".to_string(),
        "/flags?q=x".to_string(),
        "/flags/new".to_string(),
        "/flags/checkout".to_string(),
        "/flags/checkout/environments/staging".to_string(),
        "/flags/no-such-flag".to_string(),
        "/organizations".to_string(),
        "/organizations/new".to_string(),
        format!("/organizations/{}", org.id),
        "/users".to_string(),
        "/users/new".to_string(),
        format!("/users/{}", user.id),
        "/environments".to_string(),
        "/audit".to_string(),
        "/admins".to_string(),
    ];
    for path in &pages {
        let page = client.get(path).await;
        assert_eq!(page.status, 303, "{path}");
        let location = page.location.unwrap_or_default();
        assert!(location.starts_with("/login?next="), "{path} → {location}");
        assert!(!page.body.contains("Checkout"), "{path} leaks content");
    }
    let page = client.get("/flags/checkout").await;
    assert_eq!(
        page.location.as_deref(),
        Some("/login?next=%2Fflags%2Fcheckout")
    );
    assert_eq!(client.get("/").await.location.as_deref(), Some("/flags"));

    // Changes are refused too, and nothing changes.
    let token = csrf_in(&client.get("/login").await.body).unwrap();
    for (path, fields) in [
        ("/flags", vec![("name", "Sneaky"), ("slug", "sneaky")]),
        (
            "/flags/checkout/environments/staging/toggle",
            vec![("enabled", "true"), ("version", "1")],
        ),
        ("/organizations", vec![("name", "Sneaky Org")]),
        (
            "/environments",
            vec![("name", "QA"), ("slug", "qa"), ("color", "#1d4ed8")],
        ),
    ] {
        let mut all = vec![("_csrf", token.as_str())];
        all.extend(fields);
        let page = client.post_raw(path, &all).await;
        assert_eq!(page.status, 303, "{path}");
        assert!(page
            .location
            .unwrap_or_default()
            .starts_with("/login?next="));
    }
    assert_eq!(count!(app, flags), 1);
    assert_eq!(count!(app, organizations), 1);
    assert_eq!(count!(app, environments), 2);
    assert!(!rule(&app, "checkout", "staging").enabled);
}

async fn a_post_without_the_right_csrf_token_is_refused_and_changes_nothing(app: TestApp) {
    make_flag(&app, "Checkout", "checkout", "");
    let client = app.owner().await;
    let tries: [(&str, Vec<(&str, &str)>); 3] = [
        ("/flags", vec![("name", "Forged"), ("slug", "forged")]),
        (
            "/flags/checkout/environments/staging/toggle",
            vec![("enabled", "true"), ("version", "1")],
        ),
        ("/organizations", vec![("name", "Forged Org")]),
    ];
    for (path, fields) in &tries {
        let page = client.post_raw(path, fields).await;
        assert_eq!(page.status, 403, "{path} without a token");
        page.assert_contains("Form expired");
        let mut wrong = vec![("_csrf", "0123456789abcdef")];
        wrong.extend(fields.iter().copied());
        let page = client.post_raw(path, &wrong).await;
        assert_eq!(page.status, 403, "{path} with a wrong token");
        let mut empty = vec![("_csrf", "")];
        empty.extend(fields.iter().copied());
        assert_eq!(client.post_raw(path, &empty).await.status, 403);
    }
    // Another session's token does not work either.
    let other = app.signed_in("eve@example.com", Role::Owner).await;
    let theirs = other.csrf().await;
    let page = client
        .post_raw(
            "/flags",
            &[("_csrf", &theirs), ("name", "Forged"), ("slug", "forged")],
        )
        .await;
    assert_eq!(page.status, 403);
    assert_eq!(count!(app, flags), 1);
    assert_eq!(count!(app, organizations), 0);
    assert!(!rule(&app, "checkout", "staging").enabled);
    // Signing in and out need the token as well.
    let fresh = app.client();
    fresh.get("/login").await;
    let page = fresh
        .post_raw(
            "/login",
            &[
                ("email", "owner@example.com"),
                ("password", "correct horse battery"),
            ],
        )
        .await;
    assert_eq!(page.status, 403);
    assert_eq!(fresh.get("/flags").await.status, 303);
    let page = client.post_raw("/logout", &[]).await;
    assert_eq!(page.status, 403);
    assert_eq!(client.get("/flags").await.status, 200);
}

async fn a_cross_site_post_is_refused_even_with_the_right_token(app: TestApp) {
    let client = app.owner().await;
    let token = client.csrf().await;
    let send = |site: &'static str| {
        let (client, token) = (&client, token.clone());
        async move {
            client
                .http
                .post(format!("{}/flags", client.base))
                .header("Sec-Fetch-Site", site)
                .form(&[
                    ("_csrf", token.as_str()),
                    ("name", "Cross"),
                    ("slug", &format!("cross-{site}")),
                ])
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(send("cross-site").await, 403);
    assert_eq!(count!(app, flags), 0);
    assert_eq!(send("same-origin").await, 303);
    assert_eq!(count!(app, flags), 1);
}

async fn the_session_cookie_is_http_only_and_same_site_lax(app: TestApp) {
    let _ = app.signed_in("ada@example.com", Role::Editor).await;
    let client = app.client();
    let page = client.get("/login").await;
    let token = csrf_in(&page.body).unwrap();
    let resp = client
        .http
        .post(format!("{}/login", client.base))
        .form(&[
            ("_csrf", token.as_str()),
            ("email", "ada@example.com"),
            ("password", "correct horse battery"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 303);
    let cookies: Vec<String> = resp
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect();
    let session = cookies
        .iter()
        .find(|c| c.starts_with("flagpole_session="))
        .unwrap_or_else(|| panic!("a session cookie in {cookies:?}"));
    let attrs: Vec<String> = session
        .split(';')
        .map(|a| a.trim().to_ascii_lowercase())
        .collect();
    assert!(attrs.contains(&"httponly".to_string()), "{session}");
    assert!(attrs.contains(&"samesite=lax".to_string()), "{session}");
    assert!(attrs.contains(&"path=/".to_string()), "{session}");
    // The public URL is http://, so the cookie cannot be Secure here.
    assert!(!attrs.contains(&"secure".to_string()), "{session}");
    // The cookie is encrypted: it does not show the admin id.
    let admin_id: String = {
        let mut conn = app.conn();
        admins::table
            .filter(admins::email.eq("ada@example.com"))
            .select(admins::id)
            .first(&mut *conn)
            .unwrap()
    };
    assert!(!session.contains(&admin_id), "{session}");
    // Security headers come with every page.
    let resp = client
        .http
        .get(format!("{}/flags", client.base))
        .send()
        .await
        .unwrap();
    let headers = resp.headers();
    assert_eq!(headers["x-frame-options"], "DENY");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert!(headers["content-security-policy"]
        .to_str()
        .unwrap()
        .contains("frame-ancestors 'none'"));
}

async fn a_viewer_sees_every_page(app: TestApp) {
    make_flag(&app, "Checkout", "checkout", "");
    let org = make_org(&app, "Acme", "");
    let user = make_user(&app, "ada@example.com", "", "", "");
    let viewer = app.signed_in("vic@example.com", Role::Viewer).await;
    for path in [
        "/flags".to_string(),
        "/flags/checkout".to_string(),
        "/flags/checkout/environments/staging".to_string(),
        "/organizations".to_string(),
        format!("/organizations/{}", org.id),
        "/users".to_string(),
        format!("/users/{}", user.id),
        "/environments".to_string(),
        "/audit".to_string(),
    ] {
        let page = viewer.get(&path).await;
        assert_eq!(page.status, 200, "{path}: {}", page.body);
        page.assert_contains("You are signed in as a viewer");
    }
    let list = viewer.get("/flags").await;
    assert!(!list.body.contains("Create feature flag"));
    let row = flag_row(&list.body, "checkout").unwrap();
    assert!(row.contains(" disabled>"), "the switch is disabled: {row}");
    let shown = viewer.get("/flags/checkout").await;
    assert!(!shown.body.contains("Save details"));
    assert!(!shown.body.contains("Archive flag"));
    let envs = viewer.get("/environments").await;
    assert!(!envs.body.contains("Add environment"));
}

async fn a_viewer_gets_a_clear_403_on_every_change(app: TestApp) {
    make_flag(&app, "Checkout", "checkout", "");
    let org = make_org(&app, "Acme", "");
    let user = make_user(&app, "ada@example.com", "", "", "");
    let viewer = app.signed_in("vic@example.com", Role::Viewer).await;
    let events = count!(app, audit_events);
    let org_members = format!("/organizations/{}/members", org.id);
    let org_page = format!("/organizations/{}", org.id);
    let org_delete = format!("/organizations/{}/delete", org.id);
    let user_page = format!("/users/{}", user.id);
    let user_delete = format!("/users/{}/delete", user.id);
    let attempts: Vec<(&str, Vec<(&str, &str)>)> = vec![
        ("/flags", vec![("name", "Nope"), ("slug", "nope")]),
        ("/flags/checkout", vec![("name", "Renamed")]),
        ("/flags/checkout/archive", vec![("archived", "true")]),
        (
            "/flags/checkout/environments/staging/toggle",
            vec![("enabled", "true"), ("version", "1")],
        ),
        (
            "/flags/checkout/environments/production/toggle",
            vec![("enabled", "true"), ("version", "1"), ("confirmed", "true")],
        ),
        (
            "/flags/checkout/environments/staging",
            vec![("mode", "all"), ("version", "1"), ("op", "save")],
        ),
        ("/organizations", vec![("name", "Nope Inc")]),
        (&org_page, vec![("name", "Renamed Inc")]),
        (&org_delete, vec![]),
        (&org_members, vec![("user", "ada@example.com")]),
        ("/users", vec![("email", "new@example.com")]),
        (&user_page, vec![("email", "changed@example.com")]),
        (&user_delete, vec![]),
        (
            "/environments",
            vec![("name", "QA"), ("slug", "qa"), ("color", "#1d4ed8")],
        ),
        (
            "/environments/staging",
            vec![("name", "Renamed"), ("color", "#1d4ed8")],
        ),
        ("/environments/production/move", vec![("direction", "up")]),
        (
            "/admins",
            vec![
                ("email", "x@example.com"),
                ("password", "long enough pw"),
                ("role", "owner"),
            ],
        ),
    ];
    for (path, fields) in &attempts {
        let page = viewer.post(path, fields).await;
        assert_eq!(page.status, 403, "{path}: {}", page.body);
        page.assert_contains("Not allowed");
        assert!(
            unescape(&page.body).contains("Your account is a viewer")
                || unescape(&page.body).contains("Only owners can manage admin accounts"),
            "{path}: {}",
            page.body
        );
    }
    for path in ["/flags/new", "/organizations/new", "/users/new"] {
        let page = viewer.get(path).await;
        assert_eq!(page.status, 403, "{path}");
    }
    assert_eq!(count!(app, flags), 1);
    assert_eq!(flag(&app, "checkout").name, "Checkout");
    assert!(!flag(&app, "checkout").archived);
    for env in ["staging", "production"] {
        let rule = rule(&app, "checkout", env);
        assert_eq!(
            (rule.mode.as_str(), rule.enabled, rule.version),
            ("none", false, 1)
        );
    }
    assert_eq!(count!(app, organizations), 1);
    assert_eq!(count!(app, users), 1);
    assert_eq!(count!(app, memberships), 0);
    assert_eq!(count!(app, environments), 2);
    assert_eq!(env_order(&app), vec!["staging", "production"]);
    assert_eq!(env(&app, "staging").name, "Staging");
    assert_eq!(count!(app, admins), 1);
    assert_eq!(count!(app, audit_events), events);
    // Looking around is still allowed: switching environment and "Edit in X" only change the view.
    let page = viewer
        .post(
            "/switch-environment",
            &[("environment", "production"), ("return_to", "/flags")],
        )
        .await;
    assert_eq!(page.status, 303);
    let page = viewer.get("/flags").await;
    assert_eq!(
        active_environment(&page.body).as_deref(),
        Some("production")
    );
}

async fn an_editor_changes_flags_but_does_not_manage_admins(app: TestApp) {
    let _owner = app.owner().await;
    let editor = app.signed_in("ed@example.com", Role::Editor).await;
    let page = editor
        .post(
            "/flags",
            &[("name", "Editor flag"), ("slug", "editor-flag")],
        )
        .await;
    assert_eq!(page.status, 303);
    set_rule(&app, "editor-flag", "staging", Mode::All, &[]);

    let page = editor.get("/flags").await;
    assert!(
        !page.body.contains("href=\"/admins\""),
        "no Admins link for editors"
    );
    let admins_page = editor.get("/admins").await;
    assert!(!admins_page.body.contains("Add an admin"));
    assert!(!admins_page.body.contains("/role\""));

    let owner_id: String = {
        let mut conn = app.conn();
        admins::table
            .filter(admins::email.eq("owner@example.com"))
            .select(admins::id)
            .first(&mut *conn)
            .unwrap()
    };
    let attempts = [
        (
            "/admins".to_string(),
            vec![
                ("email", "mallory@example.com"),
                ("password", "long enough pw"),
                ("role", "owner"),
            ],
        ),
        (format!("/admins/{owner_id}/role"), vec![("role", "viewer")]),
        (format!("/admins/{owner_id}/delete"), vec![]),
    ];
    for (path, fields) in &attempts {
        let page = editor.post(path, fields).await;
        assert_eq!(page.status, 403, "{path}");
        page.assert_contains("Only owners can manage admin accounts.");
    }
    assert_eq!(
        admin_roles(&app),
        vec![
            ("ed@example.com".to_string(), "editor".to_string()),
            ("owner@example.com".to_string(), "owner".to_string()),
        ]
    );
}

async fn an_owner_adds_admins_changes_roles_and_removes_them(app: TestApp) {
    let owner = app.owner().await;
    let page = owner.get("/admins").await;
    assert_eq!(page.status, 200);
    page.assert_contains("Add an admin");

    let page = owner
        .post(
            "/admins",
            &[
                ("email", "New.Editor@example.com"),
                ("password", "a long enough secret"),
                ("role", "editor"),
            ],
        )
        .await;
    assert_eq!(page.status, 303, "{}", page.body);
    assert!(admin_roles(&app).contains(&("new.editor@example.com".into(), "editor".into())));
    let newcomer = app.client();
    assert_eq!(
        newcomer
            .login("new.editor@example.com", "a long enough secret")
            .await
            .status,
        303
    );

    // Invalid input is shown next to the field.
    for (email, password, role, field) in [
        ("bad-email", "a long enough secret", "editor", "email"),
        ("short@example.com", "short", "editor", "password"),
        (
            "new.editor@example.com",
            "a long enough secret",
            "editor",
            "email",
        ),
        ("x@example.com", "a long enough secret", "superuser", "role"),
    ] {
        let page = owner
            .post(
                "/admins",
                &[("email", email), ("password", password), ("role", role)],
            )
            .await;
        assert_eq!(page.status, 422, "{email}/{role}: {}", page.body);
        assert!(
            field_error(&page.body, field).is_some(),
            "{field}: {}",
            page.body
        );
    }
    assert_eq!(count!(app, admins), 2);

    let id_of = |email: &str| -> String {
        let mut conn = app.conn();
        admins::table
            .filter(admins::email.eq(email))
            .select(admins::id)
            .first(&mut *conn)
            .unwrap()
    };
    let editor_id = id_of("new.editor@example.com");
    let owner_id = id_of("owner@example.com");
    let page = owner
        .post(&format!("/admins/{editor_id}/role"), &[("role", "viewer")])
        .await;
    assert_eq!(page.status, 303);
    assert!(admin_roles(&app).contains(&("new.editor@example.com".into(), "viewer".into())));
    // The role applies at the newcomer's next click.
    let page = newcomer
        .post("/flags", &[("name", "X"), ("slug", "x")])
        .await;
    assert_eq!(page.status, 403);

    // The last owner cannot stop being one, nor remove themselves.
    let page = owner
        .post(&format!("/admins/{owner_id}/role"), &[("role", "editor")])
        .await;
    assert_eq!(page.status, 400);
    says(&page, "Flagpole needs at least one owner");
    let page = owner.post(&format!("/admins/{owner_id}/delete"), &[]).await;
    assert_eq!(page.status, 400);
    assert!(admin_roles(&app).contains(&("owner@example.com".into(), "owner".into())));

    // A removed admin is signed out at their next click.
    let page = owner
        .post(&format!("/admins/{editor_id}/delete"), &[])
        .await;
    assert_eq!(page.status, 303);
    assert_eq!(count!(app, admins), 1);
    let page = newcomer.get("/flags").await;
    assert_eq!(page.status, 303);
    assert!(page.location.unwrap().starts_with("/login"));
    let actions: Vec<String> = audit(&app)
        .into_iter()
        .filter(|e| e.object_type == "admin" && e.actor == "owner@example.com")
        .map(|e| e.action)
        .collect();
    assert_eq!(
        actions,
        vec!["admin.created", "admin.role_changed", "admin.deleted"]
    );
}

/// A setup link works for an hour only, and a new one (as `flagpole admin
/// setup-link` makes) replaces the old.
async fn a_setup_link_expires_and_a_new_one_replaces_it(app: TestApp) {
    use flagpole::db::schema::setup_tokens;
    let path = setup_path(&app);
    let client = app.client();
    assert_eq!(client.get(&path).await.status, 200);
    // An hour and a minute later:
    {
        let mut conn = app.conn();
        let past = flagpole::time::Timestamp::now().minus(std::time::Duration::from_secs(60));
        diesel::update(setup_tokens::table)
            .set(setup_tokens::expires_at.eq(past))
            .execute(&mut *conn)
            .unwrap();
    }
    assert_eq!(
        client.get(&path).await.status,
        403,
        "the expired link is refused"
    );
    let token = {
        let mut conn = app.conn();
        flagpole::admins::setup::issue(&mut conn).unwrap()
    };
    let fresh = format!("/setup?token={token}");
    assert_eq!(client.get(&fresh).await.status, 200);
    let again = {
        let mut conn = app.conn();
        flagpole::admins::setup::issue(&mut conn).unwrap()
    };
    assert_eq!(
        client.get(&fresh).await.status,
        403,
        "a newer link replaces it"
    );
    assert_eq!(
        client.get(&format!("/setup?token={again}")).await.status,
        200
    );
}

on_both_backends!(
    a_setup_link_expires_and_a_new_one_replaces_it,
    the_setup_link_creates_the_first_owner_and_works_only_once,
    setup_shows_field_errors_and_saves_nothing,
    a_wrong_setup_token_is_refused,
    the_setup_link_cannot_add_an_owner_once_an_admin_exists,
    signing_in_with_the_right_password_opens_the_dashboard,
    a_wrong_password_or_unknown_email_is_refused,
    after_sign_in_you_return_to_the_page_you_asked_for_but_never_off_site,
    a_signed_out_cookie_no_longer_works,
    signing_out_everywhere_and_changing_the_password_end_other_sessions,
    signing_out_ends_the_session,
    every_dashboard_page_sends_you_to_sign_in_when_signed_out,
    a_post_without_the_right_csrf_token_is_refused_and_changes_nothing,
    a_cross_site_post_is_refused_even_with_the_right_token,
    the_session_cookie_is_http_only_and_same_site_lax,
    a_viewer_sees_every_page,
    a_viewer_gets_a_clear_403_on_every_change,
    an_editor_changes_flags_but_does_not_manage_admins,
    an_owner_adds_admins_changes_roles_and_removes_them,
);

macro_rules! with_backend {
    ($($name:ident),* $(,)?) => {
        mod each_backend {
            $(
                mod $name {
                    #[actix_web::test]
                    async fn sqlite() {
                        super::super::$name(crate::common::Backend::Sqlite).await;
                    }
                    #[actix_web::test]
                    async fn postgres() {
                        super::super::$name(crate::common::Backend::Postgres).await;
                    }
                }
            )*
        }
    };
}

with_backend!(
    wrong_passwords_slow_down_that_client_but_never_lock_the_owner_out,
    a_right_password_clears_the_count,
    a_flood_of_sign_ins_is_refused_not_queued,
    sessions_end_when_idle_and_after_their_maximum,
);
