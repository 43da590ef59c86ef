//! The example application (`examples/flag_gated_app.rs`) against a live
//! Flagpole: sign in, read the flags through the app's sealed-cookie refresh,
//! turn the flag on in the dashboard, and see the app's answer change.

#[path = "../../examples/flag_gated_app.rs"]
mod example;

use std::net::TcpListener;

use crate::common::TestApp;
use actix_web::{App, HttpServer};
use base64::Engine;
use flagpole::directory;
use flagpole::flags;
use serde_json::{json, Value};

const COOKIE_PASSWORD: &str = "an example cookie password of more than 32 characters";

/// Starts the example app on a free port, pointed at `flagpole_url`; its base URL.
fn start_example(flagpole_url: &str, api_key: &str) -> String {
    let settings = example::Settings::new(flagpole_url, api_key, COOKIE_PASSWORD)
        .expect("valid example settings");
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().unwrap().port();
    let server =
        HttpServer::new(move || App::new().configure(example::app_config(settings.clone())))
            .workers(2)
            .listen(listener)
            .expect("listen")
            .run();
    actix_web::rt::spawn(server);
    format!("http://127.0.0.1:{port}")
}

/// A browser: keeps cookies, does not follow redirects.
fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// One answer of the example app, with its `app-session` Set-Cookie header.
struct Answer {
    status: u16,
    set_cookie: Option<String>,
    body: String,
}

impl Answer {
    async fn of(resp: reqwest::Response) -> Answer {
        let status = resp.status().as_u16();
        let set_cookie = resp
            .headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|v| v.starts_with(&format!("{}=", example::SESSION_COOKIE)))
            .map(str::to_string);
        let body = resp.text().await.unwrap_or_default();
        Answer {
            status,
            set_cookie,
            body,
        }
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|_| panic!("expected JSON, got {}: {}", self.status, self.body))
    }

    fn flags(&self) -> Vec<String> {
        assert_eq!(self.status, 200, "{}", self.body);
        serde_json::from_value(self.json()["featureFlags"].clone()).expect("featureFlags")
    }

    /// The cookie's value and its attributes, lowercased.
    fn cookie(&self) -> (String, Vec<String>) {
        let header = self
            .set_cookie
            .clone()
            .expect("a Set-Cookie for app-session");
        let mut parts = header.split(';').map(str::trim);
        let value = parts.next().unwrap()[example::SESSION_COOKIE.len() + 1..].to_string();
        let attributes = parts.map(|p| p.to_ascii_lowercase()).collect();
        (value, attributes)
    }
}

async fn get(client: &reqwest::Client, url: String) -> Answer {
    Answer::of(client.get(url).send().await.expect("GET")).await
}

async fn login(client: &reqwest::Client, base: &str, fields: &[(&str, &str)]) -> Answer {
    Answer::of(
        client
            .post(format!("{base}/login"))
            .form(fields)
            .send()
            .await
            .expect("POST /login"),
    )
    .await
}

fn assert_session_cookie_attributes(attributes: &[String], secure: bool) {
    assert!(attributes.contains(&"httponly".into()), "{attributes:?}");
    assert!(
        attributes.contains(&"samesite=lax".into()),
        "{attributes:?}"
    );
    assert!(attributes.contains(&"path=/".into()), "{attributes:?}");
    assert_eq!(
        attributes.contains(&"secure".into()),
        secure,
        "Secure only outside localhost: {attributes:?}"
    );
}

/// The claims of a JWT, read without verifying (the token tests verify them).
fn claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).expect("a JWT");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

/// The hidden `version` of the rule editor's form.
fn version_in(html: &str) -> String {
    let marker = "name=\"version\" value=\"";
    let start = html.find(marker).expect("the editor has a version") + marker.len();
    let end = html[start..].find('"').unwrap();
    html[start..start + end].to_string()
}

async fn turning_the_flag_on_in_the_dashboard_changes_the_apps_answer(app: TestApp) {
    let (production, key) = {
        let mut conn = app.conn();
        let production = flagpole::environments::by_slug(&mut conn, "production").unwrap();
        let (_, key) = flagpole::environments::api_keys::create(
            &mut conn,
            &crate::support::actor(),
            &production.id,
            "example",
            flagpole::environments::api_keys::KeyScope::Admin,
        )
        .unwrap();
        flags::create(
            &mut conn,
            &crate::support::actor(),
            &flagpole::flags::NewFlag {
                name: "New reports".into(),
                slug: example::NEW_REPORTS_FLAG.into(),
                description: "The redesigned reports page.".into(),
                tags: Vec::new(),
            },
        )
        .unwrap();
        (production, key)
    };
    let base = start_example(&app.base, &key);
    let ada = browser();

    // The page loads its script from its own route; the script asks for the flags.
    let page = get(&ada, format!("{base}/")).await;
    assert_eq!(page.status, 200);
    assert!(page
        .body
        .contains(r#"<script src="/app.js" defer></script>"#));
    assert_eq!(page.body.matches("<script").count(), 1, "no inline script");
    assert!(page.body.contains(r#"id="new-reports" hidden"#));
    let script = get(&ada, format!("{base}/app.js")).await;
    assert_eq!(script.status, 200);
    assert!(script.body.contains("fetch(\"/api/feature-flags\""));
    assert!(script
        .body
        .contains(r#"const NEW_REPORTS = "new-reports";"#));
    assert!(script.body.contains("featureFlags.includes(NEW_REPORTS)"));

    // Before signing in there is no session.
    let none = get(&ada, format!("{base}/api/feature-flags")).await;
    assert_eq!(none.status, 401, "{}", none.body);
    assert_eq!(none.json()["error"]["code"], "no_session");

    let signed_in = login(
        &ada,
        &base,
        &[
            ("external_id", "ext-ada"),
            ("email", "ada@acme.example"),
            ("first_name", "Ada"),
            ("organization_external_id", "ext-acme"),
            ("organization_name", "Acme Inc"),
        ],
    )
    .await;
    assert_eq!(signed_in.status, 303, "{}", signed_in.body);
    let (login_value, attributes) = signed_in.cookie();
    assert_session_cookie_attributes(&attributes, false);
    assert!(example::unseal(
        &example::Settings::new(&app.base, &key, COOKIE_PASSWORD)
            .unwrap()
            .cookie_key,
        &login_value
    )
    .is_some());

    // The flag exists but is off.
    let first = get(&ada, format!("{base}/api/feature-flags")).await;
    assert!(
        !first
            .flags()
            .contains(&example::NEW_REPORTS_FLAG.to_string()),
        "{}",
        first.body
    );
    let (first_value, attributes) = first.cookie();
    assert_session_cookie_attributes(&attributes, false);
    assert_ne!(first_value, login_value, "the refresh rotated the tokens");

    // An owner targets Acme in Production and turns the flag on, in the dashboard.
    let acme = directory::find_org(&mut app.conn(), "ext-acme")
        .unwrap()
        .expect("Acme was provisioned at sign-in");
    let owner = app.owner().await;
    let editor = owner
        .get("/flags/new-reports/environments/production")
        .await;
    assert_eq!(editor.status, 200);
    let version = version_in(&editor.body);
    let saved = owner
        .post(
            "/flags/new-reports/environments/production",
            &[
                ("mode", "some"),
                ("version", &version),
                ("add", &acme.id),
                ("op", "confirm"),
            ],
        )
        .await;
    assert_eq!(saved.status, 303, "{}", saved.body);
    let flag = flags::by_slug(&mut app.conn(), example::NEW_REPORTS_FLAG).unwrap();
    let rule = flagpole::flags::rules::rule(&mut app.conn(), &flag.id, &production.id).unwrap();
    let toggled = owner
        .post(
            "/flags/new-reports/environments/production/toggle",
            &[
                ("enabled", "true"),
                ("confirmed", "true"),
                ("version", &rule.version.to_string()),
            ],
        )
        .await;
    assert_eq!(toggled.status, 303, "{}", toggled.body);
    assert!(
        flagpole::flags::rules::rule(&mut app.conn(), &flag.id, &production.id)
            .unwrap()
            .enabled
    );

    // The next refresh picks the flag up.
    let second = get(&ada, format!("{base}/api/feature-flags")).await;
    assert!(
        second
            .flags()
            .contains(&example::NEW_REPORTS_FLAG.to_string()),
        "{}",
        second.body
    );
    let (second_value, attributes) = second.cookie();
    assert_session_cookie_attributes(&attributes, false);
    assert_ne!(second_value, first_value, "the refresh token rotated");

    // The cookie is sealed: only the app's key opens it, and the tokens are not in clear.
    let cookie_key = example::Settings::new(&app.base, &key, COOKIE_PASSWORD)
        .unwrap()
        .cookie_key;
    let first_tokens = example::unseal(&cookie_key, &first_value).expect("the app's key opens it");
    let second_tokens = example::unseal(&cookie_key, &second_value).unwrap();
    assert_ne!(first_tokens.refresh_token, second_tokens.refresh_token);
    for (value, tokens) in [
        (&first_value, &first_tokens),
        (&second_value, &second_tokens),
    ] {
        assert!(!value.contains(&tokens.refresh_token), "sealed: {value}");
        assert!(!value.contains(&tokens.access_token), "sealed: {value}");
        assert!(!value.contains("refresh_token"), "sealed: {value}");
    }
    let other_key = example::Settings::new(
        &app.base,
        &key,
        "another password that is also more than 32 characters",
    )
    .unwrap()
    .cookie_key;
    assert!(example::unseal(&other_key, &second_value).is_none());
    // The access token in the cookie carries the flag, for Production's audience.
    let token = claims(&second_tokens.access_token);
    assert_eq!(token["aud"], json!(production.client_id));
    assert_eq!(token["org_id"], json!(acme.id));
    assert!(token["feature_flags"]
        .as_array()
        .unwrap()
        .contains(&json!(example::NEW_REPORTS_FLAG)));

    // Someone in another organization still does not get it.
    let bob = browser();
    let answer = login(
        &bob,
        &base,
        &[
            ("external_id", "ext-bob"),
            ("email", "bob@globex.example"),
            ("organization_external_id", "ext-globex"),
            ("organization_name", "Globex"),
        ],
    )
    .await;
    assert_eq!(answer.status, 303, "{}", answer.body);
    let bobs = get(&bob, format!("{base}/api/feature-flags")).await;
    assert!(
        !bobs
            .flags()
            .contains(&example::NEW_REPORTS_FLAG.to_string()),
        "{}",
        bobs.body
    );

    // A changed cookie is refused and cleared.
    let mut tampered = second_value.clone();
    let last = tampered.pop().unwrap();
    tampered.push(if last == 'A' { 'B' } else { 'A' });
    let forged = Answer::of(
        reqwest::Client::new()
            .get(format!("{base}/api/feature-flags"))
            .header("cookie", format!("{}={tampered}", example::SESSION_COOKIE))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(forged.status, 401, "{}", forged.body);
    assert!(forged.cookie().1.iter().any(|a| a == "max-age=0"));

    // Presenting the rotated refresh token again makes Flagpole revoke the
    // session, and the app then answers 401 and clears its cookie.
    let reused = app
        .api(None)
        .post(
            "/api/v1/sessions/refresh",
            json!({"refresh_token": first_tokens.refresh_token}),
        )
        .await;
    assert_eq!(reused.status, 401);
    assert_eq!(reused.code(), "refresh_token_reused");
    let ended = get(&ada, format!("{base}/api/feature-flags")).await;
    assert_eq!(ended.status, 401, "{}", ended.body);
    assert_eq!(ended.json()["error"]["code"], "session_revoked");
    let (value, attributes) = ended.cookie();
    assert!(value.is_empty());
    assert!(attributes.contains(&"max-age=0".into()), "{attributes:?}");
}

async fn sign_in_takes_json_sets_a_secure_cookie_off_localhost_and_signs_out(app: TestApp) {
    let key = {
        let mut conn = app.conn();
        let production = flagpole::environments::by_slug(&mut conn, "production").unwrap();
        flagpole::environments::api_keys::create(
            &mut conn,
            &crate::support::actor(),
            &production.id,
            "example",
            flagpole::environments::api_keys::KeyScope::Admin,
        )
        .unwrap()
        .1
    };
    let base = start_example(&app.base, &key);
    let client = browser();

    // JSON works like the form; behind a public host name the cookie is Secure.
    let answer = Answer::of(
        client
            .post(format!("{base}/login"))
            .header("host", "app.example.com")
            .json(&json!({"external_id": "ext-grace", "email": "grace@initech.example"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(answer.status, 303, "{}", answer.body);
    let (_, attributes) = answer.cookie();
    assert_session_cookie_attributes(&attributes, true);

    // A bad user is Flagpole's error, passed on.
    let bad = Answer::of(
        client
            .post(format!("{base}/login"))
            .json(&json!({"external_id": "ext-nobody", "email": ""}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(bad.status, 422, "{}", bad.body);
    assert_eq!(bad.json()["error"]["field"], "user.email");

    // A form posted from another site is refused.
    let cross = Answer::of(
        client
            .post(format!("{base}/login"))
            .header("origin", "https://evil.example")
            .form(&[
                ("external_id", "ext-grace"),
                ("email", "grace@initech.example"),
            ])
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(cross.status, 403, "{}", cross.body);
    assert!(cross.set_cookie.is_none());

    // On localhost: sign in, sign out, and the session is gone in Flagpole too.
    let signed_in = login(
        &client,
        &base,
        &[
            ("external_id", "ext-grace"),
            ("email", "grace@initech.example"),
        ],
    )
    .await;
    assert_eq!(signed_in.status, 303);
    let cookie_key = example::Settings::new(&app.base, &key, COOKIE_PASSWORD)
        .unwrap()
        .cookie_key;
    let tokens = example::unseal(&cookie_key, &signed_in.cookie().0).unwrap();
    let flags = get(&client, format!("{base}/api/feature-flags")).await;
    assert_eq!(flags.flags(), Vec::<String>::new());
    let out = Answer::of(client.post(format!("{base}/logout")).send().await.unwrap()).await;
    assert_eq!(out.status, 303);
    assert!(out.cookie().1.contains(&"max-age=0".into()));
    let after = get(&client, format!("{base}/api/feature-flags")).await;
    assert_eq!(after.status, 401);
    assert_eq!(after.json()["error"]["code"], "no_session");
    // The first token was rotated away, so it is reuse (or revoked): refused either way.
    let refresh = app
        .api(None)
        .post(
            "/api/v1/sessions/refresh",
            json!({"refresh_token": tokens.refresh_token}),
        )
        .await;
    assert_eq!(refresh.status, 401, "{:?}", refresh.body);
}

#[test]
fn local_hosts_are_recognized() {
    for host in [
        "localhost",
        "localhost:3000",
        "127.0.0.1:3000",
        "[::1]:3000",
        "app.localhost",
    ] {
        assert!(example::is_local_host(host), "{host}");
    }
    for host in ["app.example.com", "example.com:443", "10.0.0.5:3000"] {
        assert!(!example::is_local_host(host), "{host}");
    }
}

#[test]
fn settings_are_checked() {
    assert!(example::Settings::new("http://127.0.0.1:8080", "sk_x", "short").is_err());
    assert!(example::Settings::new("http://127.0.0.1:8080", "pk_x", COOKIE_PASSWORD).is_err());
    assert!(example::Settings::new("127.0.0.1:8080", "sk_x", COOKIE_PASSWORD).is_err());
    let settings =
        example::Settings::new("http://127.0.0.1:8080/", "sk_x", COOKIE_PASSWORD).unwrap();
    assert_eq!(settings.flagpole_url, "http://127.0.0.1:8080");
}

on_both_backends!(
    turning_the_flag_on_in_the_dashboard_changes_the_apps_answer,
    sign_in_takes_json_sets_a_secure_cookie_off_localhost_and_signs_out,
);
