//! The audit trail through the API: order, paging, shape and filters.

use std::time::Duration;

use crate::common::{Api, TestApp};
use chrono::{SecondsFormat, Utc};
use diesel::prelude::*;
use flagpole::db::schema::audit_events;
use serde_json::{json, Value};

fn key(app: &TestApp, env: &str, name: &str) -> String {
    crate::support::api_key(app, env, name)
}

/// Lets the clock move on, so that events on either side are ordered.
async fn tick() {
    actix_web::rt::time::sleep(Duration::from_millis(5)).await;
}

async fn create_flag(api: &Api, slug: &str) {
    let r = api
        .post(
            "/api/v1/feature-flags",
            json!({"name": format!("Flag {slug}"), "slug": slug}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    tick().await;
}

async fn enable(api: &Api, slug: &str, env: &str) {
    let r = api
        .post(
            &format!("/api/v1/feature-flags/{slug}/environments/{env}/enable"),
            json!({}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    tick().await;
}

/// Every event a query lists, walking `after` with small pages.
async fn walk(api: &Api, query: &str) -> Vec<Value> {
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let path = match &after {
            Some(a) => format!("/api/v1/audit-events?limit=2&{query}&after={a}"),
            None => format!("/api/v1/audit-events?limit=2&{query}"),
        };
        let page = api.get(&path).await;
        assert_eq!(page.status, 200, "{path}: {:?}", page.body);
        seen.extend(page.body["data"].as_array().unwrap().iter().cloned());
        match page.body["list_metadata"]["after"].as_str() {
            Some(a) => after = Some(a.to_string()),
            None => return seen,
        }
    }
}

fn ids(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect()
}

fn actions(events: &[Value]) -> Vec<&str> {
    events
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect()
}

fn assert_invalid(r: &crate::common::Json, field: &str) {
    assert_eq!(
        (r.status, r.code(), r.body["error"]["field"].as_str()),
        (422, "invalid_field", Some(field)),
        "{:?}",
        r.body
    );
}

async fn audit_events_are_newest_first_paged_and_complete(app: TestApp) {
    let api = app.api(Some(&key(&app, "staging", "automation")));
    tick().await;
    create_flag(&api, "alpha").await;
    let org = api
        .post(
            "/api/v1/organizations",
            json!({"name": "Acme", "external_id": "acme"}),
        )
        .await;
    let org_id = org.body["id"].as_str().unwrap().to_string();
    tick().await;
    enable(&api, "alpha", "staging").await;
    let r = api
        .patch_json("/api/v1/organizations/acme", json!({"name": "Acme Inc"}))
        .await;
    assert_eq!(r.status, 200);

    let r = api.get("/api/v1/audit-events").await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["object"], "list");
    let data = r.body["data"].as_array().unwrap();
    assert_eq!(
        actions(data),
        [
            "organization.updated",
            "rule.enabled",
            "organization.created",
            "flag.created",
            "api_key.created",
            "environment.created",
            "environment.created",
        ],
        "newest first, down to the environments made at the first start"
    );

    // The shape of an event, with its states as JSON.
    let updated = &data[0];
    assert_eq!(updated["object"], "audit_event");
    assert!(updated["id"].as_str().unwrap().starts_with("audit_"));
    let actor = updated["actor"].as_str().unwrap();
    assert!(actor.starts_with("api key automation ("), "{actor}");
    assert_eq!(updated["object_type"], "organization");
    assert_eq!(updated["object_id"], org_id.as_str());
    assert_eq!(updated["object_label"], "Acme Inc");
    assert_eq!(updated["flag"], Value::Null);
    assert_eq!(updated["environment"], Value::Null);
    assert_eq!(updated["before"]["name"], "Acme");
    assert_eq!(updated["after"]["name"], "Acme Inc");
    assert_eq!(updated["after"]["external_id"], "acme");
    assert!(updated["created_at"].as_str().unwrap().ends_with('Z'));
    let enabled = &data[1];
    assert_eq!(enabled["flag"], "alpha");
    assert_eq!(enabled["environment"], "staging");
    assert_eq!(enabled["object_label"], "alpha");
    assert_eq!(enabled["before"]["enabled"], false);
    assert_eq!(enabled["after"]["enabled"], true);
    assert_eq!(enabled["actor"], actor);
    let created = &data[2];
    assert_eq!(created["before"], Value::Null);
    assert_eq!(created["after"]["name"], "Acme");
    assert_eq!(data[3]["flag"], "alpha");
    assert_eq!(data[4]["actor"], "test");
    assert_eq!(data[4]["environment"], "staging");
    assert_eq!(data[6]["actor"], "system");

    // Every event has exactly the documented properties.
    let doc = api.get("/api/v1/openapi.json").await;
    let schema = &doc.body["components"]["schemas"]["AuditEventObject"];
    let mut documented: Vec<&String> = schema["properties"].as_object().unwrap().keys().collect();
    documented.sort();
    for event in data {
        let mut keys: Vec<&String> = event.as_object().unwrap().keys().collect();
        keys.sort();
        assert_eq!(keys, documented);
    }
    assert_eq!(
        schema["required"].as_array().unwrap().len(),
        documented.len(),
        "every property is always sent"
    );

    // Paging visits every event once, newest first, or oldest first.
    for i in 0..6 {
        let r = api
            .post(
                "/api/v1/users",
                json!({"email": format!("u{i}@example.com")}),
            )
            .await;
        assert_eq!(r.status, 201);
    }
    let mut stored: Vec<String> = audit_events::table
        .select(audit_events::id)
        .load(&mut *app.conn())
        .unwrap();
    assert_eq!(stored.len(), 13);
    stored.sort();
    stored.reverse();
    let walked = walk(&api, "").await;
    assert_eq!(ids(&walked), stored);
    let mut oldest_first = stored.clone();
    oldest_first.reverse();
    assert_eq!(ids(&walk(&api, "order=asc").await), oldest_first);
    let page = api
        .get(&format!("/api/v1/audit-events?limit=3&after={}", stored[2]))
        .await;
    assert_eq!(ids(page.body["data"].as_array().unwrap()), stored[3..6]);
    let before = page.body["list_metadata"]["before"].as_str().unwrap();
    let back = api
        .get(&format!("/api/v1/audit-events?limit=3&before={before}"))
        .await;
    assert_eq!(ids(back.body["data"].as_array().unwrap()), stored[0..3]);
    assert_eq!(back.body["list_metadata"]["before"], Value::Null);

    // Refusals.
    let r = app.api(None).get("/api/v1/audit-events").await;
    assert_eq!((r.status, r.code()), (401, "missing_api_key"));
    let r = app.api(Some("sk_wrong")).get("/api/v1/audit-events").await;
    assert_eq!((r.status, r.code()), (401, "invalid_api_key"));
    assert_invalid(&api.get("/api/v1/audit-events?limit=500").await, "limit");
    assert_invalid(&api.get("/api/v1/audit-events?order=up").await, "order");
    // A method the path does not answer: 405, with what it does answer.
    let r = api.post("/api/v1/audit-events", json!({})).await;
    assert_eq!((r.status, r.code()), (405, "method_not_allowed"));
    assert_eq!(r.headers["allow"], "GET");
}

async fn audit_events_are_filtered(app: TestApp) {
    let staging = app.api(Some(&key(&app, "staging", "automation")));
    let production = app.api(Some(&key(&app, "production", "deployer")));
    create_flag(&staging, "alpha").await;
    create_flag(&staging, "beta").await;
    enable(&staging, "alpha", "staging").await;
    enable(&production, "alpha", "production").await;
    let middle = Utc::now();
    tick().await;
    enable(&staging, "beta", "staging").await;
    {
        let mut conn = app.conn();
        flagpole::directory::organizations::create(
            &mut conn,
            &flagpole::audit::Actor::system("owner@example.com"),
            &flagpole::directory::organizations::NewOrganization {
                name: "Initech".into(),
                external_id: String::new(),
            },
        )
        .unwrap();
    }
    tick().await;
    let end = Utc::now();

    // By flag.
    let alpha = walk(&staging, "flag=alpha").await;
    assert_eq!(
        actions(&alpha),
        ["rule.enabled", "rule.enabled", "flag.created"]
    );
    assert!(alpha.iter().all(|e| e["flag"] == "alpha"));
    assert_eq!(alpha[0]["environment"], "production");
    assert_eq!(alpha[1]["environment"], "staging");

    // By environment, alone and with a flag.
    let prod = walk(&staging, "environment=production").await;
    assert_eq!(
        actions(&prod),
        ["rule.enabled", "api_key.created", "environment.created"]
    );
    assert!(prod.iter().all(|e| e["environment"] == "production"));
    let r = staging
        .get("/api/v1/audit-events?flag=beta&environment=staging")
        .await;
    let data = r.body["data"].as_array().unwrap();
    assert_eq!(actions(data), ["rule.enabled"]);
    assert_eq!(data[0]["flag"], "beta");
    let r = staging
        .get("/api/v1/audit-events?flag=beta&environment=production")
        .await;
    assert_eq!(r.body["data"], json!([]));

    // By actor: the exact actor text of an event.
    let key_actor = alpha[0]["actor"].as_str().unwrap().to_string();
    assert!(key_actor.starts_with("api key deployer ("), "{key_actor}");
    let by_deployer = walk(&staging, &format!("actor={}", urlencode(&key_actor))).await;
    assert_eq!(actions(&by_deployer), ["rule.enabled"]);
    let by_owner = walk(&staging, "actor=owner%40example.com").await;
    assert_eq!(actions(&by_owner), ["organization.created"]);
    assert_eq!(by_owner[0]["object_label"], "Initech");
    let by_test = walk(&staging, "actor=test").await;
    assert_eq!(actions(&by_test), ["api_key.created", "api_key.created"]);
    assert_eq!(walk(&staging, "actor=nobody").await, Vec::<Value>::new());

    // By time: since is inclusive, until exclusive.
    let stamp = |t: chrono::DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::Micros, true);
    let after_middle = walk(&staging, &format!("since={}", stamp(middle))).await;
    assert_eq!(
        actions(&after_middle),
        ["organization.created", "rule.enabled"]
    );
    let before_middle = walk(&staging, &format!("until={}", stamp(middle))).await;
    assert_eq!(before_middle.len(), 8, "{:?}", actions(&before_middle));
    assert!(before_middle
        .iter()
        .all(|e| e["created_at"].as_str().unwrap() < stamp(middle).as_str()));
    let window = walk(
        &staging,
        &format!("since={}&until={}&flag=beta", stamp(middle), stamp(end)),
    )
    .await;
    assert_eq!(actions(&window), ["rule.enabled"]);
    assert_eq!(
        walk(&staging, &format!("since={}", stamp(end))).await,
        Vec::<Value>::new()
    );
    // Other offsets are the same instant; a `+` sent unencoded arrives as a
    // space and still works.
    let offset = middle
        .with_timezone(&chrono::FixedOffset::east_opt(2 * 3600).unwrap())
        .to_rfc3339_opts(SecondsFormat::Micros, false);
    assert!(offset.contains("+02:00"), "{offset}");
    let encoded = walk(&staging, &format!("since={}", offset.replace('+', "%2B"))).await;
    assert_eq!(ids(&encoded), ids(&after_middle));
    let raw_plus = walk(&staging, &format!("since={offset}")).await;
    assert_eq!(ids(&raw_plus), ids(&after_middle));

    // Filters that cannot be understood name the field.
    assert_invalid(
        &staging.get("/api/v1/audit-events?since=yesterday").await,
        "since",
    );
    assert_invalid(
        &staging
            .get("/api/v1/audit-events?until=2026-13-01T00:00:00Z")
            .await,
        "until",
    );
    assert_invalid(
        &staging
            .get("/api/v1/audit-events?since=2026-02-01T00:00:00Z&until=2026-01-01T00:00:00Z")
            .await,
        "until",
    );
    assert_invalid(
        &staging.get("/api/v1/audit-events?flag=no-such-flag").await,
        "flag",
    );
    let r = staging.get("/api/v1/audit-events?environment=qa").await;
    assert_invalid(&r, "environment");
    assert!(r.body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("staging"));
    // Empty filters are no filters.
    let all = walk(&staging, "flag=&environment=&actor=&since=&until=").await;
    let stored: i64 = audit_events::table
        .count()
        .get_result(&mut *app.conn())
        .unwrap();
    assert_eq!(all.len() as i64, stored);
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

on_both_backends!(
    audit_events_are_newest_first_paged_and_complete,
    audit_events_are_filtered,
);
