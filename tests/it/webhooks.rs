//! Webhooks: endpoints added in the dashboard (secret shown once, stored
//! sealed), the four flag events delivered signed as WorkOS signs them, per
//! environment, retried with backoff, kept across instances, given up after
//! the window; and deleting archived flags, which `flag.deleted` announces.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::{Backend, TestApp};
use crate::support::*;
use actix_web::{web, HttpRequest, HttpResponse};
use diesel::prelude::*;
use flagpole::admins::Role;
use flagpole::db::schema::{
    flag_tags, flags, rules, webhook_attempts, webhook_deliveries, webhook_endpoints,
    webhook_events,
};
use flagpole::evaluation::Mode;
use flagpole::webhooks::endpoints::{self, EndpointInput};
use flagpole::webhooks::WebhookAttempt;
use flagpole::webhooks::WebhookDelivery;
use flagpole::webhooks::WebhookEndpoint;
use flagpole::webhooks::{self, EVENTS};
use flagpole::Config;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

/// Test settings: retries after 100 ms then 200 ms, a worker that looks
/// every 50 ms, a one-minute window.
fn fast(config: &mut Config) {
    config.webhook_retry_schedule = vec![Duration::from_millis(100), Duration::from_millis(200)];
    config.webhook_poll_interval = Duration::from_millis(50);
    config.webhook_retry_window = Duration::from_secs(60);
    config.webhook_timeout = Duration::from_secs(5);
}

async fn spawn(backend: Backend, configure: impl FnOnce(&mut Config)) -> Option<TestApp> {
    TestApp::spawn_with(backend, |config| {
        fast(config);
        configure(config);
    })
    .await
}

/// Like `on_both_backends!`, for tests that start their app(s) themselves
/// with the fast webhook settings.
macro_rules! on_both_backends_with_settings {
    ($($name:ident),* $(,)?) => {
        mod sqlite_fast {
            $(
                #[actix_web::test]
                async fn $name() {
                    super::$name($crate::common::Backend::Sqlite).await;
                }
            )*
        }
        mod postgres_fast {
            $(
                #[actix_web::test]
                async fn $name() {
                    super::$name($crate::common::Backend::Postgres).await;
                }
            )*
        }
    };
}

/// One request the receiver got.
#[derive(Debug, Clone)]
struct Received {
    method: String,
    headers: HashMap<String, String>,
    body: String,
    at: Instant,
}

impl Received {
    fn header(&self, name: &str) -> &str {
        self.headers.get(name).map(String::as_str).unwrap_or("")
    }
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).expect("a JSON body")
    }
}

/// A local HTTP server that records every request and answers 500 to the
/// first `fail_first` of them, 200 to the rest.
struct Receiver {
    url: String,
    log: Arc<Mutex<Vec<Received>>>,
}

impl Receiver {
    fn start(fail_first: usize) -> Receiver {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().unwrap().port();
        let log: Arc<Mutex<Vec<Received>>> = Arc::default();
        let failures_left = Arc::new(AtomicUsize::new(fail_first));
        let (l, f) = (log.clone(), failures_left);
        let server = actix_web::HttpServer::new(move || {
            let (l, f) = (l.clone(), f.clone());
            actix_web::App::new().default_service(web::to(
                move |req: HttpRequest, body: web::Bytes| {
                    let (l, f) = (l.clone(), f.clone());
                    async move {
                        let headers = req
                            .headers()
                            .iter()
                            .map(|(k, v)| {
                                (k.as_str().to_string(), v.to_str().unwrap_or("").to_string())
                            })
                            .collect();
                        l.lock().unwrap().push(Received {
                            method: req.method().to_string(),
                            headers,
                            body: String::from_utf8_lossy(&body).into_owned(),
                            at: Instant::now(),
                        });
                        let fail = f
                            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                            .is_ok();
                        if fail {
                            HttpResponse::InternalServerError().body("receiver is down")
                        } else {
                            HttpResponse::Ok().body("thanks")
                        }
                    }
                },
            ))
        })
        .workers(1)
        .listen(listener)
        .expect("listen")
        .run();
        actix_web::rt::spawn(server);
        Receiver {
            url: format!("http://127.0.0.1:{port}/hooks"),
            log,
        }
    }

    fn received(&self) -> Vec<Received> {
        self.log.lock().unwrap().clone()
    }

    /// Waits (10 s at most) until `n` requests arrived, and returns them.
    async fn wait_for(&self, n: usize) -> Vec<Received> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let got = self.received();
            if got.len() >= n {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "expected {n} requests, got {}: {got:#?}",
                got.len()
            );
            actix_web::rt::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Polls `check` until it holds (10 s at most).
async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
    }
}

fn add_endpoint(
    app: &TestApp,
    env_slug: &str,
    url: &str,
    events: &[&str],
) -> (WebhookEndpoint, String) {
    let env = env(app, env_slug);
    let mut conn = app.conn();
    endpoints::create(
        &mut conn,
        &app.state.sealer,
        &crate::support::actor(),
        &env.id,
        &EndpointInput {
            url: url.into(),
            description: String::new(),
            events: events.iter().map(|e| e.to_string()).collect(),
        },
        &app.state.config.webhook_allow,
    )
    .unwrap_or_else(|e| panic!("endpoint {url}: {e:?}"))
}

fn endpoints(app: &TestApp) -> Vec<WebhookEndpoint> {
    let mut conn = app.conn();
    webhook_endpoints::table
        .order(webhook_endpoints::id.asc())
        .select(WebhookEndpoint::as_select())
        .load(&mut *conn)
        .unwrap()
}

fn deliveries(app: &TestApp) -> Vec<WebhookDelivery> {
    let mut conn = app.conn();
    webhook_deliveries::table
        .order(webhook_deliveries::id.asc())
        .select(WebhookDelivery::as_select())
        .load(&mut *conn)
        .unwrap()
}

fn attempts(app: &TestApp, delivery_id: &str) -> Vec<WebhookAttempt> {
    let mut conn = app.conn();
    webhook_attempts::table
        .filter(webhook_attempts::delivery_id.eq(delivery_id))
        .order(webhook_attempts::id.asc())
        .select(WebhookAttempt::as_select())
        .load(&mut *conn)
        .unwrap()
}

/// Checks a `WorkOS-Signature` header the way `@workos-inc/node`'s
/// `constructEvent` does: split on ",", then "="; HMAC-SHA256 over
/// `${t}.${JSON.stringify(JSON.parse(body))}`; `t` in milliseconds.
fn verify_signature(secret: &str, header: &str, body: &str) {
    let (t, v1) = header.split_once(',').expect("t and v1");
    let t = t.split('=').nth(1).expect("t=");
    let v1 = v1.split('=').nth(1).expect("v1=");
    let ms: i64 = t.parse().expect("a number");
    let now = chrono::Utc::now().timestamp_millis();
    assert!(
        (now - ms).abs() < 60_000,
        "t is in milliseconds and recent: {t}"
    );
    // The SDK signs `JSON.stringify(JSON.parse(body))`, which keeps the key
    // order and drops whitespace: it is the body itself when the body is
    // compact. (serde_json here sorts keys, so it cannot redo that.)
    serde_json::from_str::<Value>(body).expect("the body is JSON");
    assert!(is_compact(body), "the body is compact JSON: {body}");
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{t}.{body}").as_bytes());
    assert_eq!(hex::encode(mac.finalize().into_bytes()), v1, "{header}");
    assert_eq!(header, format!("t={t}, v1={v1}"));
}

/// Whether JSON text has no whitespace outside its strings.
fn is_compact(json: &str) -> bool {
    let (mut in_string, mut escaped) = (false, false);
    for c in json.chars() {
        if in_string {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
        } else if c == '"' {
            in_string = true;
        } else if c.is_whitespace() {
            return false;
        }
    }
    true
}

/// Checks one delivered event: how it was sent, its signature and payload.
fn check_event(
    got: &Received,
    secret: &str,
    event: &str,
    slug: &str,
    env_slug: &str,
    actor: &str,
) -> Value {
    assert_eq!(got.method, "POST");
    assert_eq!(got.header("content-type"), "application/json");
    assert_eq!(got.header("user-agent"), "Flagpole-Webhooks");
    verify_signature(secret, got.header("workos-signature"), &got.body);
    assert!(
        got.body.starts_with("{\"id\":\"event_"),
        "the id comes first: {}",
        got.body
    );
    let body = got.json();
    assert_eq!(body["event"], event, "{body}");
    assert!(body["created_at"].as_str().unwrap().ends_with('Z'));
    let data = &body["data"];
    assert_eq!(data["object"], "feature_flag");
    assert_eq!(data["slug"], slug);
    assert!(data["id"].as_str().unwrap().starts_with("flag_"));
    assert_eq!(body["context"]["environment"]["slug"], env_slug);
    // WorkOS's event actor: who, and through what.
    assert_eq!(body["context"]["actor"]["name"], actor, "{body}");
    assert!(
        ["dashboard", "api", "system"].contains(
            &body["context"]["actor"]["source"]
                .as_str()
                .unwrap_or_default()
        ),
        "{body}"
    );
    body
}

async fn an_endpoint_added_in_the_dashboard_shows_its_secret_once_and_keeps_it_sealed(
    app: TestApp,
) {
    let client = app.owner().await;
    let page = client.get("/webhooks").await;
    assert_eq!(page.status, 200);
    says(&page, "No endpoints in Staging");
    page.assert_contains("href=\"/webhooks\" aria-current=\"page\"");

    let page = client
        .post(
            "/webhooks",
            &[
                ("environment", "staging"),
                ("url", "https://hooks.example.com/flagpole"),
                ("description", "Slack #releases"),
                ("events", "flag.updated"),
                ("events", "flag.rule_updated"),
            ],
        )
        .await;
    assert_eq!(page.status, 200, "{}", page.body);
    let marker = "id=\"new-secret\" type=\"text\" readonly value=\"";
    let start = page.body.find(marker).expect("the secret is shown") + marker.len();
    let secret = &page.body[start..start + page.body[start..].find('"').unwrap()];
    assert!(secret.starts_with("whsec_"), "{secret}");
    assert_eq!(secret.len(), "whsec_".len() + 64);
    says(&page, "This is the only time it is shown");

    let stored = endpoints(&app);
    assert_eq!(stored.len(), 1);
    let endpoint = &stored[0];
    assert!(endpoint.id.starts_with("we_"));
    assert_eq!(endpoint.environment_id, env(&app, "staging").id);
    assert_eq!(endpoint.url, "https://hooks.example.com/flagpole");
    assert_eq!(endpoint.description, "Slack #releases");
    assert_eq!(endpoint.events, "flag.updated,flag.rule_updated");
    assert!(endpoint.enabled);
    assert_eq!(endpoint.created_by, "owner@example.com");
    assert!(secret.starts_with(&endpoint.secret_prefix));
    assert!(!endpoint.secret_sealed.contains(&secret[6..]));
    assert_eq!(
        endpoints::secret_of(&app.state.sealer, endpoint).unwrap(),
        secret,
        "sealed, and opened with the endpoint id"
    );
    let audit = audit_of(&app, "webhook_endpoint.created");
    assert_eq!(audit.len(), 1);
    assert!(!audit[0].after_state.as_deref().unwrap().contains(secret));

    for path in [
        "/webhooks".to_string(),
        format!("/webhooks/{}", endpoint.id),
    ] {
        let page = client.get(&path).await;
        assert_eq!(page.status, 200);
        assert!(!page.body.contains(secret), "{path} shows the secret again");
        page.assert_contains(&format!("{}…", endpoint.secret_prefix))
            .assert_contains("https://hooks.example.com/flagpole");
    }
    // The list is the active environment's: Production has none.
    client
        .post("/switch-environment", &[("environment", "production")])
        .await;
    let page = client.get("/webhooks").await;
    says(&page, "No endpoints in Production");
    page.assert_contains("<body class=\"env-red\">");
}

async fn invalid_endpoints_show_errors_next_to_their_fields_and_save_nothing(app: TestApp) {
    let client = app.owner().await;
    let long = format!("https://example.com/{}", "a".repeat(2000));
    type Fields<'a> = Vec<(&'a str, &'a str)>;
    let cases: Vec<(Fields, Vec<&str>)> = vec![
        (vec![("url", "")], vec!["url", "events"]),
        (
            vec![("url", "ftp://example.com/x"), ("events", "flag.created")],
            vec!["url"],
        ),
        (
            vec![("url", "not a url"), ("events", "flag.created")],
            vec!["url"],
        ),
        (
            vec![("url", long.as_str()), ("events", "flag.created")],
            vec!["url"],
        ),
        (
            vec![("url", "https://example.com/x"), ("events", "user.created")],
            vec!["events"],
        ),
    ];
    for (fields, wrong) in cases {
        let mut all = vec![("environment", "staging")];
        all.extend(fields.iter().copied());
        let page = client.post("/webhooks", &all).await;
        assert_eq!(page.status, 422, "{fields:?}: {}", page.body);
        assert_eq!(fields_with_errors(&page.body), wrong, "{fields:?}");
        assert!(!page.body.contains("whsec_"));
    }
    let page = client
        .post(
            "/webhooks",
            &[("environment", "staging"), ("url", "ftp://example.com/x")],
        )
        .await;
    assert_eq!(
        field_error(&page.body, "url").as_deref(),
        Some("The URL must start with http:// or https://.")
    );
    assert_eq!(
        field_error(&page.body, "events").as_deref(),
        Some("Choose at least one event.")
    );
    // What was typed stays in the form.
    page.assert_contains("value=\"ftp://example.com/x\"");
    assert_eq!(count!(app, webhook_endpoints), 0);
    assert!(audit_of(&app, "webhook_endpoint.created").is_empty());
}

async fn each_flag_event_is_delivered_signed_as_workos_signs_webhooks(backend: Backend) {
    // The worker would look only once a minute: each change wakes it.
    let Some(app) = spawn(backend, |c| {
        c.webhook_poll_interval = Duration::from_secs(60)
    })
    .await
    else {
        return;
    };
    let receiver = Receiver::start(0);
    let (_, secret) = add_endpoint(&app, "staging", &receiver.url, &EVENTS);
    let client = app.owner().await;
    let actor = "owner@example.com";

    // Every change below is made in the dashboard, each announced at once.
    let page = client
        .post(
            "/flags",
            &[
                ("name", "New checkout"),
                ("slug", "new-checkout"),
                ("tags", "growth"),
            ],
        )
        .await;
    assert_eq!(page.status, 303, "{}", page.body);
    let got = receiver.wait_for(1).await;
    let body = check_event(
        &got[0],
        &secret,
        "flag.created",
        "new-checkout",
        "staging",
        actor,
    );
    let flag = flag(&app, "new-checkout");
    assert_eq!(body["data"]["id"], flag.id.as_str());
    assert_eq!(body["data"]["name"], "New checkout");
    assert_eq!(body["data"]["tags"], serde_json::json!(["growth"]));
    assert_eq!(body["data"]["enabled"], false);
    assert_eq!(body["data"]["default_value"], false);
    assert_eq!(
        body["context"]["environment"]["id"],
        env(&app, "staging").id.as_str()
    );
    assert_eq!(body["context"]["environment"]["name"], "Staging");

    let page = client
        .post(
            "/flags/new-checkout",
            &[("name", "Checkout v2"), ("description", "One page")],
        )
        .await;
    assert_eq!(page.status, 303);
    let got = receiver.wait_for(2).await;
    let body = check_event(
        &got[1],
        &secret,
        "flag.updated",
        "new-checkout",
        "staging",
        actor,
    );
    assert_eq!(body["data"]["name"], "Checkout v2");
    assert_eq!(body["data"]["description"], "One page");

    let page = client
        .post(
            "/flags/new-checkout/environments/staging",
            &[("mode", "all"), ("version", "1"), ("op", "save")],
        )
        .await;
    assert_eq!(page.status, 303, "{}", page.body);
    let got = receiver.wait_for(3).await;
    let body = check_event(
        &got[2],
        &secret,
        "flag.rule_updated",
        "new-checkout",
        "staging",
        actor,
    );
    assert_eq!(body["data"]["default_value"], true);
    assert_eq!(body["data"]["enabled"], false);

    let page = client
        .post(
            "/flags/new-checkout/environments/staging/toggle",
            &[("enabled", "true"), ("version", "2")],
        )
        .await;
    assert_eq!(page.status, 303);
    let got = receiver.wait_for(4).await;
    let body = check_event(
        &got[3],
        &secret,
        "flag.updated",
        "new-checkout",
        "staging",
        actor,
    );
    assert_eq!(body["data"]["enabled"], true);

    let page = client
        .post("/flags/new-checkout/archive", &[("archived", "true")])
        .await;
    assert_eq!(page.status, 303);
    let got = receiver.wait_for(5).await;
    check_event(
        &got[4],
        &secret,
        "flag.updated",
        "new-checkout",
        "staging",
        actor,
    );

    let page = client
        .post("/flags/new-checkout/delete", &[("confirmed", "true")])
        .await;
    assert_eq!(page.status, 303, "{}", page.body);
    let got = receiver.wait_for(6).await;
    let body = check_event(
        &got[5],
        &secret,
        "flag.deleted",
        "new-checkout",
        "staging",
        actor,
    );
    assert_eq!(body["data"]["id"], flag.id.as_str(), "the flag as it was");
    assert_eq!(body["data"]["name"], "Checkout v2");

    let ids: std::collections::BTreeSet<String> = got
        .iter()
        .map(|r| r.json()["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 6, "every event has its own id");
    eventually("every delivery recorded as succeeded", || {
        let all = deliveries(&app);
        all.len() == 6 && all.iter().all(|d| d.status == "succeeded")
    })
    .await;
    for d in deliveries(&app) {
        assert_eq!(d.attempts, 1);
        let tries = attempts(&app, &d.id);
        assert_eq!(tries.len(), 1);
        assert_eq!(tries[0].status_code, Some(200));
        assert_eq!(tries[0].response_excerpt.as_deref(), Some("thanks"));
    }
    // What is stored is exactly what was sent.
    let mut conn = app.conn();
    let payloads: Vec<String> = webhook_events::table
        .order(webhook_events::id.asc())
        .select(webhook_events::payload)
        .load(&mut *conn)
        .unwrap();
    assert_eq!(
        payloads,
        got.iter().map(|r| r.body.clone()).collect::<Vec<_>>()
    );
}

async fn endpoints_hear_only_their_own_environment_and_events(backend: Backend) {
    let Some(app) = spawn(backend, |_| {}).await else {
        return;
    };
    // No endpoint: a change queues nothing at all.
    make_flag(&app, "Alpha", "alpha", "");
    set_enabled(&app, "alpha", "production", true);
    assert_eq!(count!(app, webhook_events), 0);
    assert_eq!(count!(app, webhook_deliveries), 0);

    let staging = Receiver::start(0);
    let production = Receiver::start(0);
    let created_only = Receiver::start(0);
    let disabled = Receiver::start(0);
    let (_, staging_secret) = add_endpoint(&app, "staging", &staging.url, &EVENTS);
    let (_, production_secret) = add_endpoint(&app, "production", &production.url, &EVENTS);
    add_endpoint(&app, "production", &created_only.url, &["flag.created"]);
    let (off, _) = add_endpoint(&app, "production", &disabled.url, &EVENTS);
    {
        let mut conn = app.conn();
        endpoints::set_enabled(&mut conn, &crate::support::actor(), &off.id, false).unwrap();
    }

    // A rule change and a toggle in Production reach Production only.
    set_rule(&app, "alpha", "production", Mode::All, &[]);
    let got = production.wait_for(1).await;
    check_event(
        &got[0],
        &production_secret,
        "flag.rule_updated",
        "alpha",
        "production",
        "test",
    );
    set_enabled(&app, "alpha", "production", false);
    let got = production.wait_for(2).await;
    let body = check_event(
        &got[1],
        &production_secret,
        "flag.updated",
        "alpha",
        "production",
        "test",
    );
    assert_eq!(body["data"]["enabled"], false);
    assert_eq!(body["data"]["default_value"], true);

    // A change of the flag itself reaches every environment, each with its rule.
    make_flag(&app, "Beta", "beta", "");
    let got = staging.wait_for(1).await;
    let body = check_event(
        &got[0],
        &staging_secret,
        "flag.created",
        "beta",
        "staging",
        "test",
    );
    assert_eq!(body["data"]["default_value"], false);
    let got = production.wait_for(3).await;
    check_event(
        &got[2],
        &production_secret,
        "flag.created",
        "beta",
        "production",
        "test",
    );
    let got = created_only.wait_for(1).await;
    assert_eq!(got[0].json()["event"], "flag.created");
    assert_eq!(
        got[0].json()["id"],
        production.received()[2].json()["id"],
        "one event per environment, shared by its endpoints"
    );

    eventually("all deliveries done", || {
        deliveries(&app).iter().all(|d| d.status == "succeeded")
    })
    .await;
    assert_eq!(staging.received().len(), 1, "Staging heard only of Beta");
    assert_eq!(production.received().len(), 3);
    assert_eq!(created_only.received().len(), 1);
    assert!(disabled.received().is_empty());
    assert_eq!(deliveries(&app).len(), 5);
}

async fn a_change_that_fails_queues_nothing(app: TestApp) {
    let receiver = Receiver::start(0);
    add_endpoint(&app, "staging", &receiver.url, &EVENTS);
    let f = make_flag(&app, "Alpha", "alpha", "");
    let events_before = count!(app, webhook_events);
    assert_eq!(events_before, 1);
    let staging = env(&app, "staging");
    let mut conn = app.conn();
    let stale = flagpole::flags::rules::save_rule(
        &mut conn,
        &crate::support::actor(),
        &f,
        &staging,
        &flagpole::flags::rules::RuleChange {
            mode: Some(Mode::All),
            targets: flagpole::flags::rules::TargetChange::Edit {
                add: Vec::new(),
                remove: Vec::new(),
            },
            expected_version: Some(7),
            ..Default::default()
        },
    );
    assert!(stale.is_err());
    let unknown_target = flagpole::flags::rules::save_rule(
        &mut conn,
        &crate::support::actor(),
        &f,
        &staging,
        &flagpole::flags::rules::RuleChange {
            mode: Some(Mode::Some),
            targets: flagpole::flags::rules::TargetChange::Edit {
                add: vec!["user_nobody".into()],
                remove: Vec::new(),
            },
            expected_version: Some(1),
            ..Default::default()
        },
    );
    assert!(unknown_target.is_err());
    drop(conn);
    assert_eq!(count!(app, webhook_events), events_before);
    assert_eq!(count!(app, webhook_deliveries), events_before);
}

async fn failed_deliveries_are_retried_with_backoff_and_listed_with_their_attempts(
    backend: Backend,
) {
    let Some(app) = spawn(backend, |_| {}).await else {
        return;
    };
    let receiver = Receiver::start(2);
    let (endpoint, secret) = add_endpoint(&app, "staging", &receiver.url, &["flag.created"]);
    make_flag(&app, "Alpha", "alpha", "");
    let got = receiver.wait_for(3).await;
    for r in &got {
        verify_signature(&secret, r.header("workos-signature"), &r.body);
        assert_eq!(r.body, got[0].body, "every attempt sends the same event");
    }
    let first_wait = got[1].at - got[0].at;
    let second_wait = got[2].at - got[1].at;
    assert!(first_wait >= Duration::from_millis(85), "{first_wait:?}");
    assert!(second_wait >= Duration::from_millis(175), "{second_wait:?}");

    eventually("the delivery succeeded", || {
        deliveries(&app)
            .first()
            .is_some_and(|d| d.status == "succeeded")
    })
    .await;
    let delivery = deliveries(&app).remove(0);
    assert_eq!(delivery.attempts, 3);
    assert_eq!(delivery.locked_until, None);
    let tries = attempts(&app, &delivery.id);
    assert_eq!(
        tries.iter().map(|a| a.status_code).collect::<Vec<_>>(),
        vec![Some(500), Some(500), Some(200)]
    );
    assert_eq!(
        tries[0].response_excerpt.as_deref(),
        Some("receiver is down")
    );
    assert_eq!(tries[0].error.as_deref(), Some("HTTP 500"));
    assert_eq!(tries[2].error, None);
    assert_eq!(receiver.received().len(), 3, "nothing sent after success");

    let client = app.owner().await;
    let page = client.get(&format!("/webhooks/{}", endpoint.id)).await;
    assert_eq!(page.status, 200);
    let body = unescape(&page.body);
    assert_eq!(body.matches("HTTP 500").count(), 2, "{body}");
    assert_eq!(body.matches("HTTP 200").count(), 1);
    page.assert_contains("flag.created")
        .assert_contains("Succeeded")
        .assert_contains("receiver is down");
    let list = client.get("/webhooks").await;
    list.assert_contains("badge-ok\">Succeeded");
}

async fn a_delivery_fails_for_good_after_the_retry_window(backend: Backend) {
    let Some(app) = spawn(backend, |c| {
        c.webhook_retry_schedule = vec![Duration::from_millis(100)];
        c.webhook_retry_window = Duration::from_millis(450);
    })
    .await
    else {
        return;
    };
    let receiver = Receiver::start(usize::MAX);
    let (endpoint, _) = add_endpoint(&app, "staging", &receiver.url, &["flag.created"]);
    // A second endpoint nobody listens on: an error instead of a status.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_url = format!("http://{}/", closed.local_addr().unwrap());
    drop(closed);
    let (unreachable, _) = add_endpoint(&app, "staging", &closed_url, &["flag.created"]);
    make_flag(&app, "Alpha", "alpha", "");

    eventually("both deliveries failed", || {
        let all = deliveries(&app);
        all.len() == 2 && all.iter().all(|d| d.status == "failed")
    })
    .await;
    let sent = receiver.received().len();
    for d in deliveries(&app) {
        let tries = attempts(&app, &d.id);
        assert!(
            tries.len() >= 3,
            "retried until the window closed: {tries:?}"
        );
        assert_eq!(tries.len() as i32, d.attempts);
        assert!(tries.len() <= 6, "{tries:?}");
        if d.endpoint_id == endpoint.id {
            assert_eq!(tries.len(), sent);
            assert!(tries.iter().all(|a| a.status_code == Some(500)));
        } else {
            assert!(tries.iter().all(|a| a.status_code.is_none()));
            let error = tries[0].error.as_deref().unwrap();
            assert!(error.starts_with("could not connect"), "{error}");
        }
    }
    let client = app.owner().await;
    let page = client.get(&format!("/webhooks/{}", unreachable.id)).await;
    page.assert_contains("badge-warn\">Failed")
        .assert_contains("could not connect");
    // Failed is final.
    actix_web::rt::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(receiver.received().len(), sent);
}

async fn a_delivery_queued_while_no_instance_sends_is_sent_by_the_next_one(backend: Backend) {
    // The first instance queues but does not send, as if it stopped at once.
    let Some(app) = spawn(backend, |c| c.webhook_delivery = false).await else {
        return;
    };
    let receiver = Receiver::start(0);
    let (_, secret) = add_endpoint(&app, "staging", &receiver.url, &EVENTS);
    let client = app.owner().await;
    let page = client
        .post("/flags", &[("name", "Alpha"), ("slug", "alpha")])
        .await;
    assert_eq!(page.status, 303);
    actix_web::rt::time::sleep(Duration::from_millis(300)).await;
    assert!(receiver.received().is_empty());
    let queued = deliveries(&app);
    assert_eq!(queued.len(), 1);
    assert_eq!(queued[0].status, "pending");
    assert_eq!(queued[0].attempts, 0);

    let second = app.second_instance_with(fast).await;
    let got = receiver.wait_for(1).await;
    check_event(
        &got[0],
        &secret,
        "flag.created",
        "alpha",
        "staging",
        "owner@example.com",
    );
    eventually("the delivery succeeded", || {
        deliveries(&second)[0].status == "succeeded"
    })
    .await;
    assert_eq!(receiver.received().len(), 1);
}

async fn two_instances_never_send_the_same_delivery_twice(backend: Backend) {
    let Some(app) = spawn(backend, |_| {}).await else {
        return;
    };
    let second = app.second_instance_with(fast).await;
    let receiver = Receiver::start(0);
    add_endpoint(&app, "staging", &receiver.url, &["flag.created"]);
    add_endpoint(&app, "production", &receiver.url, &["flag.created"]);
    for i in 0..12 {
        let target = if i % 2 == 0 { &app } else { &second };
        make_flag(target, &format!("Flag {i}"), &format!("flag-{i}"), "");
    }
    let got = receiver.wait_for(24).await;
    eventually("all delivered", || {
        deliveries(&app).iter().all(|d| d.status == "succeeded")
    })
    .await;
    actix_web::rt::time::sleep(Duration::from_millis(200)).await;
    let got_now = receiver.received();
    assert_eq!(got_now.len(), 24, "no delivery sent twice");
    let mut ids: Vec<String> = got
        .iter()
        .map(|r| r.json()["id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 24);
    assert!(deliveries(&app).iter().all(|d| d.attempts == 1));
}

async fn viewers_see_webhooks_but_cannot_change_them(app: TestApp) {
    let (endpoint, _) = add_endpoint(&app, "staging", "https://example.com/a", &EVENTS);
    let viewer = app.signed_in("viewer@example.com", Role::Viewer).await;
    let page = viewer.get("/webhooks").await;
    assert_eq!(page.status, 200);
    page.assert_contains("https://example.com/a");
    assert!(!page.body.contains("Add an endpoint"));
    let page = viewer.get(&format!("/webhooks/{}", endpoint.id)).await;
    assert_eq!(page.status, 200);
    assert!(!page.body.contains("Delete endpoint"));

    let id = endpoint.id.as_str();
    let attempts: Vec<(String, Vec<(&str, &str)>)> = vec![
        (
            "/webhooks".into(),
            vec![
                ("environment", "staging"),
                ("url", "https://example.com/b"),
                ("events", "flag.created"),
            ],
        ),
        (
            format!("/webhooks/{id}"),
            vec![
                ("url", "https://evil.example.com"),
                ("events", "flag.created"),
            ],
        ),
        (
            format!("/webhooks/{id}/enabled"),
            vec![("enabled", "false")],
        ),
        (format!("/webhooks/{id}/rotate"), vec![]),
        (format!("/webhooks/{id}/delete"), vec![]),
    ];
    for (path, fields) in attempts {
        let page = viewer.post(&path, &fields).await;
        assert_eq!(page.status, 403, "{path}");
        assert!(!page.body.contains("whsec_"));
    }
    assert_eq!(endpoints(&app).len(), 1);
    let after = endpoints(&app).remove(0);
    assert_eq!(after.url, endpoint.url);
    assert!(after.enabled);
    assert_eq!(after.secret_sealed, endpoint.secret_sealed);
}

async fn editors_edit_disable_rotate_and_delete_endpoints(app: TestApp) {
    let (endpoint, old_secret) = add_endpoint(&app, "staging", "https://example.com/a", &EVENTS);
    let editor = app.signed_in("editor@example.com", Role::Editor).await;
    let path = format!("/webhooks/{}", endpoint.id);

    let page = editor
        .post(
            &path,
            &[
                ("url", "mailto:someone@example.com"),
                ("events", "flag.created"),
            ],
        )
        .await;
    assert_eq!(page.status, 422);
    assert_eq!(fields_with_errors(&page.body), vec!["url"]);
    assert_eq!(endpoints(&app)[0].url, "https://example.com/a");

    let page = editor
        .post(
            &path,
            &[
                ("url", "http://ci.internal:8080/flags"),
                ("description", "CI"),
                ("events", "flag.deleted"),
                ("events", "flag.created"),
            ],
        )
        .await;
    assert_eq!(page.status, 303, "{}", page.body);
    let saved = endpoints(&app).remove(0);
    assert_eq!(saved.url, "http://ci.internal:8080/flags");
    assert_eq!(saved.description, "CI");
    assert_eq!(saved.events, "flag.created,flag.deleted");

    let page = editor
        .post(&format!("{path}/enabled"), &[("enabled", "false")])
        .await;
    assert_eq!(page.status, 303);
    assert!(!endpoints(&app)[0].enabled);
    make_flag(&app, "Alpha", "alpha", "");
    assert_eq!(
        count!(app, webhook_deliveries),
        0,
        "disabled: nothing queued"
    );
    editor
        .post(&format!("{path}/enabled"), &[("enabled", "true")])
        .await;
    assert!(endpoints(&app)[0].enabled);

    let page = editor.post(&format!("{path}/rotate"), &[]).await;
    assert_eq!(page.status, 200);
    let marker = "id=\"new-secret\" type=\"text\" readonly value=\"";
    let start = page.body.find(marker).expect("the new secret is shown") + marker.len();
    let secret = &page.body[start..start + page.body[start..].find('"').unwrap()];
    assert!(secret.starts_with("whsec_"));
    assert_ne!(secret, old_secret);
    let rotated = endpoints(&app).remove(0);
    assert_eq!(
        endpoints::secret_of(&app.state.sealer, &rotated).unwrap(),
        secret
    );
    assert!(!editor.get(&path).await.body.contains(secret));

    let page = editor.post(&format!("{path}/delete"), &[]).await;
    assert_eq!(page.status, 303);
    assert_eq!(page.location.as_deref(), Some("/webhooks"));
    assert!(endpoints(&app).is_empty());
    assert_eq!(editor.get(&path).await.status, 404);

    let actions: Vec<String> = audit(&app)
        .into_iter()
        .filter(|e| e.object_type == "webhook_endpoint")
        .map(|e| e.action)
        .collect();
    for action in [
        "webhook_endpoint.created",
        "webhook_endpoint.updated",
        "webhook_endpoint.disabled",
        "webhook_endpoint.enabled",
        "webhook_endpoint.secret_rotated",
        "webhook_endpoint.deleted",
    ] {
        assert!(actions.iter().any(|a| a == action), "{action}: {actions:?}");
    }
}

fn flag_rows(app: &TestApp, flag_id: &str) -> (i64, i64, i64) {
    let mut conn = app.conn();
    let f: i64 = flags::table
        .filter(flags::id.eq(flag_id))
        .count()
        .get_result(&mut *conn)
        .unwrap();
    let r: i64 = rules::table
        .filter(rules::flag_id.eq(flag_id))
        .count()
        .get_result(&mut *conn)
        .unwrap();
    let t: i64 = flag_tags::table
        .filter(flag_tags::flag_id.eq(flag_id))
        .count()
        .get_result(&mut *conn)
        .unwrap();
    (f, r, t)
}

fn archive(app: &TestApp, slug: &str) {
    let id = flag(app, slug).id;
    let mut conn = app.conn();
    flagpole::flags::set_archived(&mut conn, &crate::support::actor(), &id, true).unwrap();
}

async fn an_archived_flag_can_be_deleted_in_the_dashboard_and_a_live_one_cannot(app: TestApp) {
    let live = make_flag(&app, "Live", "live", "beta");
    let old = make_flag(&app, "Old", "old", "beta");
    let acme = make_org(&app, "Acme", "");
    set_rule(&app, "old", "staging", Mode::Some, &[&acme.id]);
    archive(&app, "old");
    let client = app.owner().await;

    let page = client.get("/flags/live").await;
    assert!(!page.body.contains("Delete permanently"));
    let page = client
        .post("/flags/live/delete", &[("confirmed", "true")])
        .await;
    // The same refusal, and status, as `DELETE /api/v1/feature-flags/live`.
    assert_eq!(page.status, 409);
    says(&page, "Live is not archived. Archive it first");
    assert_eq!(flag_rows(&app, &live.id), (1, 2, 1));

    let page = client.get("/flags/old").await;
    page.assert_contains("formaction=\"/flags/old/delete\"");
    // The first post asks; nothing is deleted yet.
    let page = client.post("/flags/old/delete", &[]).await;
    assert_eq!(page.status, 200);
    says(&page, "Delete Old permanently?");
    assert_eq!(flag_rows(&app, &old.id), (1, 2, 1));

    let page = client
        .post("/flags/old/delete", &[("confirmed", "true")])
        .await;
    assert_eq!(page.status, 303, "{}", page.body);
    assert_eq!(page.location.as_deref(), Some("/flags?archived=true"));
    assert_eq!(flag_rows(&app, &old.id), (0, 0, 0));
    assert_eq!(count!(app, targets), 0);
    assert_eq!(client.get("/flags/old").await.status, 404);
    let deleted = audit_of(&app, "flag.deleted");
    assert_eq!(deleted.len(), 1);
    assert_eq!(deleted[0].actor, "owner@example.com");
    assert_eq!(json(&deleted[0].before_state)["slug"], "old");
    let page = client.get("/flags?archived=true").await;
    says(&page, "Deleted Old (old) permanently");

    let viewer = app.signed_in("viewer@example.com", Role::Viewer).await;
    archive(&app, "live");
    let page = viewer
        .post("/flags/live/delete", &[("confirmed", "true")])
        .await;
    assert_eq!(page.status, 403);
    assert_eq!(flag_rows(&app, &live.id).0, 1);
}

async fn an_archived_flag_can_be_deleted_through_the_api(app: TestApp) {
    make_flag(&app, "Alpha", "alpha", "x");
    let staging = env(&app, "staging");
    let key = {
        let mut conn = app.conn();
        flagpole::environments::api_keys::create(
            &mut conn,
            &crate::support::actor(),
            &staging.id,
            "ci",
            flagpole::environments::api_keys::KeyScope::Admin,
        )
        .unwrap()
        .1
    };
    let api = app.api(Some(&key));
    let answer = api.delete("/api/v1/feature-flags/alpha").await;
    assert_eq!(answer.status, 409, "{:?}", answer.body);
    assert_eq!(answer.code(), "flag_not_archived");
    assert_eq!(api.get("/api/v1/feature-flags/alpha").await.status, 200);

    let answer = api
        .post("/api/v1/feature-flags/alpha/archive", Value::Null)
        .await;
    assert_eq!(answer.status, 200);
    let answer = api.delete("/api/v1/feature-flags/alpha").await;
    assert_eq!(answer.status, 204, "{:?}", answer.body);
    let answer = api.get("/api/v1/feature-flags/alpha").await;
    assert_eq!((answer.status, answer.code()), (404, "flag_not_found"));
    let answer = api.delete("/api/v1/feature-flags/alpha").await;
    assert_eq!((answer.status, answer.code()), (404, "flag_not_found"));
    assert_eq!(
        app.api(None).delete("/api/v1/feature-flags/x").await.status,
        401
    );
    let deleted = audit_of(&app, "flag.deleted");
    assert_eq!(deleted.len(), 1);
    assert!(deleted[0].actor.starts_with("api key ci"));
}

async fn the_cli_adds_an_endpoint_and_prints_only_its_secret(app: TestApp) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_flagpole"))
        .args([
            "webhooks",
            "create",
            "--environment",
            "production",
            "--url",
            "https://example.com/cli",
            "--events",
            "flag.created,flag.rule_updated",
            "--description",
            "from the CLI",
        ])
        .env("DATABASE_URL", &app.database_url)
        .env("FLAGPOLE_SECRET_KEY", hex::encode([7u8; 64]))
        .output()
        .expect("the CLI runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let stdout = String::from_utf8(output.stdout).unwrap();
    let secret = stdout.trim_end();
    assert_eq!(stdout, format!("{secret}\n"), "only the secret on stdout");
    assert!(secret.starts_with("whsec_"), "{stdout}");
    let stored = endpoints(&app).remove(0);
    assert_eq!(stored.environment_id, env(&app, "production").id);
    assert_eq!(stored.events, "flag.created,flag.rule_updated");
    assert_eq!(stored.description, "from the CLI");
    assert_eq!(stored.created_by, "cli");
    assert_eq!(
        endpoints::secret_of(&app.state.sealer, &stored).unwrap(),
        secret
    );

    let bad = std::process::Command::new(env!("CARGO_BIN_EXE_flagpole"))
        .args([
            "webhooks",
            "create",
            "--environment",
            "production",
            "--url",
            "nope",
        ])
        .env("DATABASE_URL", &app.database_url)
        .env("FLAGPOLE_SECRET_KEY", hex::encode([7u8; 64]))
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(bad.stdout.is_empty());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("url:"));
}

#[test]
fn backoff_follows_the_schedule_with_a_little_jitter_and_repeats_its_last_step() {
    let schedule = flagpole::config::default_webhook_retry_schedule();
    assert_eq!(schedule[0], Duration::from_secs(30));
    assert_eq!(schedule[1], Duration::from_secs(120));
    for (retry, base) in [(1, 30.0), (2, 120.0), (8, 28_800.0), (20, 28_800.0)] {
        let wait = webhooks::backoff(&schedule, retry).as_secs_f64();
        assert!(wait >= base * 0.9 && wait <= base * 1.1, "{retry}: {wait}");
    }
}

#[test]
fn signatures_are_hmac_sha256_of_the_timestamp_and_body() {
    // Computed independently: HMAC-SHA256("whsec_test", "1700000000000.{}").
    let mut mac = Hmac::<Sha256>::new_from_slice(b"whsec_test").unwrap();
    mac.update(b"1700000000000.{}");
    let expected = format!(
        "t=1700000000000, v1={}",
        hex::encode(mac.finalize().into_bytes())
    );
    assert_eq!(
        webhooks::signature("whsec_test", 1_700_000_000_000, "{}"),
        expected
    );
    assert_ne!(
        webhooks::signature("whsec_other", 1_700_000_000_000, "{}"),
        expected
    );
}

async fn finished_deliveries_are_forgotten_after_the_retention_and_pending_ones_kept(
    backend: Backend,
) {
    let Some(app) = spawn(backend, |c| {
        c.webhook_retention = Duration::from_millis(300);
        c.webhook_prune_interval = Duration::from_millis(100);
        // The failing endpoint's delivery stays pending, waiting for its retry.
        c.webhook_retry_schedule = vec![Duration::from_secs(30)];
    })
    .await
    else {
        return;
    };
    let up = Receiver::start(0);
    let down = Receiver::start(usize::MAX);
    add_endpoint(&app, "staging", &up.url, &["flag.created", "flag.updated"]);
    add_endpoint(&app, "staging", &down.url, &["flag.created"]);
    let flag = make_flag(&app, "Alpha", "alpha", "");
    flagpole::flags::set_archived(&mut app.conn(), &crate::support::actor(), &flag.id, true)
        .unwrap();
    up.wait_for(2).await;
    down.wait_for(1).await;
    assert_eq!(count!(app, webhook_events), 2);

    eventually("the finished deliveries are forgotten", || {
        let all = deliveries(&app);
        all.len() == 1 && all[0].status == "pending"
    })
    .await;
    let pending = deliveries(&app).remove(0);
    assert_eq!(attempts(&app, &pending.id).len(), 1, "its attempt stays");
    assert_eq!(count!(app, webhook_attempts), 1);
    // flag.updated went only to the forgotten delivery; flag.created is still
    // owed to the failing endpoint.
    let mut conn = app.conn();
    let events: Vec<String> = webhook_events::table
        .select(webhook_events::event)
        .load(&mut *conn)
        .unwrap();
    assert_eq!(events, ["flag.created"]);
}

on_both_backends!(
    an_endpoint_added_in_the_dashboard_shows_its_secret_once_and_keeps_it_sealed,
    invalid_endpoints_show_errors_next_to_their_fields_and_save_nothing,
    a_change_that_fails_queues_nothing,
    viewers_see_webhooks_but_cannot_change_them,
    editors_edit_disable_rotate_and_delete_endpoints,
    an_archived_flag_can_be_deleted_in_the_dashboard_and_a_live_one_cannot,
    an_archived_flag_can_be_deleted_through_the_api,
    the_cli_adds_an_endpoint_and_prints_only_its_secret,
);

async fn deliveries_to_internal_addresses_are_refused_unless_allowed(backend: Backend) {
    let Some(app) = spawn(backend, |c| {
        c.webhook_allow = flagpole::webhooks::guard::Guard::default();
    })
    .await
    else {
        return;
    };
    let receiver = Receiver::start(0);
    let port = receiver
        .url
        .rsplit(':')
        .next()
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_string();
    let owner = app.owner().await;
    // The dashboard refuses internal addresses in every spelling.
    for url in [
        format!("http://127.1:{port}/hooks"),
        format!("http://2130706433:{port}/hooks"),
        format!("http://localhost:{port}/hooks"),
        format!("http://[::1]:{port}/hooks"),
        format!("http://0.0.0.0:{port}/hooks"),
        "http://169.254.169.254/latest/meta-data/".to_string(),
    ] {
        let page = owner
            .post(
                "/webhooks",
                &[
                    ("environment", "production"),
                    ("url", url.as_str()),
                    ("events", "flag.created"),
                ],
            )
            .await;
        assert_eq!(page.status, 422, "{url}");
        page.assert_contains("internal address");
    }
    assert!(endpoints(&app).is_empty());

    // One that got in anyway (made while it was allowed, or a name that
    // now resolves inside) is refused when the worker connects.
    let env = env(&app, "production");
    {
        let mut conn = app.conn();
        endpoints::create(
            &mut conn,
            &app.state.sealer,
            &crate::support::actor(),
            &env.id,
            &EndpointInput {
                url: receiver.url.clone(),
                description: String::new(),
                events: vec!["flag.created".into()],
            },
            &flagpole::webhooks::guard::Guard::parse("127.0.0.1").unwrap(),
        )
        .unwrap();
    }
    make_flag(&app, "Probe", "probe", "");
    eventually("an attempt", || {
        deliveries(&app)
            .first()
            .is_some_and(|d| !attempts(&app, &d.id).is_empty())
    })
    .await;
    let delivery = deliveries(&app).remove(0);
    let attempt = attempts(&app, &delivery.id).remove(0);
    let error = attempt.error.clone().unwrap_or_default();
    assert!(error.starts_with("refused:"), "{error}");
    assert!(attempt.status_code.is_none());
    actix_web::rt::time::sleep(Duration::from_millis(200)).await;
    assert!(
        receiver.received().is_empty(),
        "nothing reached the receiver"
    );
}

async fn credentials_and_answers_of_receivers_stay_with_editors(backend: Backend) {
    let Some(app) = spawn(backend, |_| {}).await else {
        return;
    };
    let receiver = Receiver::start(0);
    let url = receiver
        .url
        .replace("http://", "http://hook-user:s3cret-pass@");
    let (endpoint, _) = add_endpoint(&app, "production", &url, &["flag.created"]);
    make_flag(&app, "Probe", "probe", "");
    receiver.wait_for(1).await;
    eventually("the attempt is recorded", || {
        deliveries(&app)
            .first()
            .is_some_and(|d| !attempts(&app, &d.id).is_empty())
    })
    .await;
    let owner = app.owner().await;
    let viewer = app.signed_in("vera@example.com", Role::Viewer).await;
    let page = owner.get(&format!("/webhooks/{}", endpoint.id)).await;
    assert_eq!(page.status, 200);
    page.assert_contains("thanks");
    page.assert_contains("***:***@127.0.0.1");
    let page = viewer.get(&format!("/webhooks/{}", endpoint.id)).await;
    assert_eq!(page.status, 200);
    assert!(!page.body.contains("thanks"), "a viewer sees no answer");
    for (who, client) in [("owner", &owner), ("viewer", &viewer)] {
        for path in ["/webhooks", "/audit"] {
            let page = client.get(path).await;
            assert!(!page.body.contains("s3cret"), "{who} {path}");
        }
        let page = client.get(&format!("/webhooks/{}", endpoint.id)).await;
        assert!(!page.body.contains("s3cret"), "{who}");
    }
    let key = api_key(&app, "production", "audit");
    let audit = app
        .api(Some(&key))
        .get("/api/v1/audit-events?limit=100")
        .await;
    assert_eq!(audit.status, 200);
    assert!(!audit.body.to_string().contains("s3cret"), "{}", audit.body);
    // Saving the form as shown keeps the credentials it did not show.
    let page = owner
        .post(
            &format!("/webhooks/{}", endpoint.id),
            &[
                ("url", &flagpole::webhooks::guard::redact(&url)),
                ("description", "renamed"),
                ("events", "flag.created"),
            ],
        )
        .await;
    assert_eq!(page.status, 303, "{}", page.body);
    let stored = endpoints(&app).remove(0);
    assert_eq!(stored.url, url);
    assert_eq!(stored.description, "renamed");
}

on_both_backends_with_settings!(
    deliveries_to_internal_addresses_are_refused_unless_allowed,
    credentials_and_answers_of_receivers_stay_with_editors,
    each_flag_event_is_delivered_signed_as_workos_signs_webhooks,
    endpoints_hear_only_their_own_environment_and_events,
    failed_deliveries_are_retried_with_backoff_and_listed_with_their_attempts,
    a_delivery_fails_for_good_after_the_retry_window,
    a_delivery_queued_while_no_instance_sends_is_sent_by_the_next_one,
    two_instances_never_send_the_same_delivery_twice,
    finished_deliveries_are_forgotten_after_the_retention_and_pending_ones_kept,
);
