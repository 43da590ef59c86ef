//! The management API for organizations, users, memberships and bulk upserts.

use std::collections::HashSet;

use crate::common::{Api, TestApp};
use diesel::prelude::*;
use flagpole::db::schema::audit_events;
use serde_json::{json, Value};

fn key(app: &TestApp, env: &str) -> String {
    crate::support::api_key(app, env, "automation")
}

/// The actors of the audit events with `action`, oldest first.
fn actors_of(app: &TestApp, action: &str) -> Vec<String> {
    audit_events::table
        .filter(audit_events::action.eq(action))
        .order(audit_events::id.asc())
        .select(audit_events::actor)
        .load(&mut *app.conn())
        .unwrap()
}

fn assert_error(r: &crate::common::Json, status: u16, code: &str, field: Option<&str>) {
    assert_eq!(
        (r.status, r.code()),
        (status, code),
        "unexpected answer: {:?}",
        r.body
    );
    assert_eq!(
        r.body["error"]["field"].as_str(),
        field,
        "unexpected field: {:?}",
        r.body
    );
    assert!(
        !r.body["error"]["message"].as_str().unwrap_or("").is_empty(),
        "errors say what went wrong: {:?}",
        r.body
    );
}

/// Sends a raw PATCH body with a JSON content type.
async fn patch_raw(api: &Api, path: &str, body: &str) -> crate::common::Json {
    let resp = api
        .http
        .patch(format!("{}{path}", api.base))
        .bearer_auth(api.key.as_deref().unwrap())
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .expect("PATCH");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.json().await.expect("a JSON answer");
    crate::common::Json {
        status,
        headers,
        body,
    }
}

/// Every route of this file refuses a missing key and an unknown key.
async fn every_route_needs_a_secret_key(app: TestApp) {
    let none = app.api(None);
    let bad = app.api(Some("sk_not_a_real_key"));
    let paths = [
        ("GET", "/api/v1/organizations"),
        ("POST", "/api/v1/organizations"),
        ("GET", "/api/v1/organizations/acme"),
        ("PATCH", "/api/v1/organizations/acme"),
        ("DELETE", "/api/v1/organizations/acme"),
        ("GET", "/api/v1/organizations/acme/memberships"),
        ("POST", "/api/v1/organizations/acme/memberships"),
        ("DELETE", "/api/v1/organizations/acme/memberships/ada"),
        ("POST", "/api/v1/organizations/bulk"),
        ("GET", "/api/v1/users"),
        ("POST", "/api/v1/users"),
        ("GET", "/api/v1/users/ada"),
        ("PATCH", "/api/v1/users/ada"),
        ("DELETE", "/api/v1/users/ada"),
        ("POST", "/api/v1/users/bulk"),
        ("GET", "/api/v1/audit-events"),
    ];
    for (method, path) in paths {
        for (api, code) in [(&none, "missing_api_key"), (&bad, "invalid_api_key")] {
            let r = match method {
                "GET" => api.get(path).await,
                "POST" => api.post(path, json!({"data": []})).await,
                "PATCH" => api.patch_json(path, json!({})).await,
                _ => api.delete(path).await,
            };
            assert_eq!((r.status, r.code()), (401, code), "{method} {path}");
        }
    }
    assert_eq!(count!(app, organizations), 0);
    assert_eq!(count!(app, users), 0);
}

async fn organizations_are_created_read_updated_and_deleted(app: TestApp) {
    let api = app.api(Some(&key(&app, "staging")));
    let r = api
        .post(
            "/api/v1/organizations",
            json!({"name": "  Acme  ", "external_id": "acme-1"}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(r.body["object"], "organization");
    assert_eq!(r.body["name"], "Acme");
    assert_eq!(r.body["external_id"], "acme-1");
    let id = r.body["id"].as_str().unwrap().to_string();
    assert!(id.starts_with("org_"), "{id}");
    assert!(r.body["created_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(r.body["created_at"], r.body["updated_at"]);

    // Refusals, none of which saves anything.
    let r = api
        .post(
            "/api/v1/organizations",
            json!({"name": "Other", "external_id": "acme-1"}),
        )
        .await;
    assert_error(&r, 409, "duplicate", Some("external_id"));
    let r = api.post("/api/v1/organizations", json!({})).await;
    assert_error(&r, 422, "invalid_field", Some("name"));
    let r = api
        .post("/api/v1/organizations", json!({"name": "x".repeat(101)}))
        .await;
    assert_error(&r, 422, "invalid_field", Some("name"));
    let r = api
        .post(
            "/api/v1/organizations",
            json!({"name": "Spaces", "external_id": "has space"}),
        )
        .await;
    assert_error(&r, 422, "invalid_field", Some("external_id"));
    let r = api.post("/api/v1/organizations", json!({"name": 5})).await;
    assert_eq!((r.status, r.code()), (422, "invalid_body"), "{:?}", r.body);
    let r = api
        .post_raw("/api/v1/organizations", "{\"name\": \"Acme\"")
        .await;
    assert_eq!((r.status, r.code()), (400, "invalid_json"), "{:?}", r.body);
    assert_eq!(count!(app, organizations), 1);

    // Without an external id.
    let r = api
        .post(
            "/api/v1/organizations",
            json!({"name": "Globex", "external_id": null}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(r.body["external_id"], Value::Null);
    let globex = r.body["id"].as_str().unwrap().to_string();

    // Read by Flagpole id and by external id.
    let by_id = api.get(&format!("/api/v1/organizations/{id}")).await;
    assert_eq!(by_id.status, 200);
    let by_external = api.get("/api/v1/organizations/acme-1").await;
    assert_eq!(by_external.body, by_id.body);
    let r = api.get("/api/v1/organizations/nope").await;
    assert_error(&r, 404, "organization_not_found", None);

    // Update by external id: absent fields are kept, null clears the external id.
    let r = api
        .patch_json("/api/v1/organizations/acme-1", json!({"name": "Acme Inc"}))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["name"], "Acme Inc");
    assert_eq!(r.body["external_id"], "acme-1");
    assert_eq!(r.body["id"], id.as_str());
    let r = api
        .patch_json(
            &format!("/api/v1/organizations/{id}"),
            json!({"external_id": null}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["external_id"], Value::Null);
    assert_eq!(r.body["name"], "Acme Inc");
    let r = api
        .patch_json(
            &format!("/api/v1/organizations/{id}"),
            json!({"external_id": "acme"}),
        )
        .await;
    assert_eq!(r.body["external_id"], "acme");
    let r = api
        .patch_json(
            &format!("/api/v1/organizations/{globex}"),
            json!({"external_id": "acme"}),
        )
        .await;
    assert_error(&r, 409, "duplicate", Some("external_id"));
    let r = api
        .patch_json("/api/v1/organizations/acme", json!({"name": ""}))
        .await;
    assert_error(&r, 422, "invalid_field", Some("name"));
    let r = api
        .patch_json("/api/v1/organizations/nope", json!({"name": "X"}))
        .await;
    assert_error(&r, 404, "organization_not_found", None);
    let r = patch_raw(&api, "/api/v1/organizations/acme", "{]").await;
    assert_eq!((r.status, r.code()), (400, "invalid_json"));
    let r = api.get("/api/v1/organizations/acme").await;
    assert_eq!(
        r.body["name"], "Acme Inc",
        "refused updates changed nothing"
    );

    // Delete by external id.
    let r = api.delete("/api/v1/organizations/acme").await;
    assert_eq!(r.status, 204, "{:?}", r.body);
    assert_eq!(r.body, Value::Null);
    let r = api.get(&format!("/api/v1/organizations/{id}")).await;
    assert_error(&r, 404, "organization_not_found", None);
    let r = api.delete("/api/v1/organizations/acme").await;
    assert_error(&r, 404, "organization_not_found", None);
    assert_eq!(count!(app, organizations), 1);

    // Every change is audited with the key's name.
    for (action, n) in [
        ("organization.created", 2),
        ("organization.updated", 3),
        ("organization.deleted", 1),
    ] {
        let actors = actors_of(&app, action);
        assert_eq!(actors.len(), n, "{action}: {actors:?}");
        assert!(
            actors.iter().all(|a| a.starts_with("api key automation")),
            "{action}: {actors:?}"
        );
    }
}

async fn users_are_created_read_updated_and_deleted(app: TestApp) {
    let api = app.api(Some(&key(&app, "staging")));
    let r = api
        .post(
            "/api/v1/users",
            json!({"email": "Ada@Example.com", "first_name": "Ada", "last_name": "Lovelace", "external_id": "u-1"}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(r.body["object"], "user");
    assert_eq!(r.body["email"], "ada@example.com");
    assert_eq!(r.body["first_name"], "Ada");
    assert_eq!(r.body["last_name"], "Lovelace");
    assert_eq!(r.body["external_id"], "u-1");
    let id = r.body["id"].as_str().unwrap().to_string();
    assert!(id.starts_with("user_"), "{id}");

    let r = api
        .post(
            "/api/v1/users",
            json!({"email": "ada@example.com", "external_id": "u-2"}),
        )
        .await;
    assert_error(&r, 409, "duplicate", Some("email"));
    let r = api
        .post(
            "/api/v1/users",
            json!({"email": "other@example.com", "external_id": "u-1"}),
        )
        .await;
    assert_error(&r, 409, "duplicate", Some("external_id"));
    let r = api
        .post("/api/v1/users", json!({"email": "not an email"}))
        .await;
    assert_error(&r, 422, "invalid_field", Some("email"));
    let r = api.post("/api/v1/users", json!({"first_name": "Bo"})).await;
    assert_error(&r, 422, "invalid_field", Some("email"));
    let r = api
        .post(
            "/api/v1/users",
            json!({"email": "bo@example.com", "first_name": "B".repeat(101)}),
        )
        .await;
    assert_error(&r, 422, "invalid_field", Some("first_name"));
    let r = api
        .post(
            "/api/v1/users",
            json!({"email": "bo@example.com", "external_id": "x".repeat(129)}),
        )
        .await;
    assert_error(&r, 422, "invalid_field", Some("external_id"));
    let r = api.post_raw("/api/v1/users", "not json").await;
    assert_eq!((r.status, r.code()), (400, "invalid_json"));
    assert_eq!(count!(app, users), 1);

    let by_id = api.get(&format!("/api/v1/users/{id}")).await;
    assert_eq!(by_id.status, 200);
    assert_eq!(api.get("/api/v1/users/u-1").await.body, by_id.body);
    let r = api.get("/api/v1/users/nobody").await;
    assert_error(&r, 404, "user_not_found", None);
    // `bulk` is not a user, and other methods on it fall through to `{id}`.
    let r = api.get("/api/v1/users/bulk").await;
    assert_error(&r, 404, "user_not_found", None);

    let r = api
        .patch_json(
            "/api/v1/users/u-1",
            json!({"first_name": "Augusta Ada", "email": "ADA@lovelace.org"}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["first_name"], "Augusta Ada");
    assert_eq!(r.body["last_name"], "Lovelace", "absent fields are kept");
    assert_eq!(r.body["email"], "ada@lovelace.org");
    assert_eq!(r.body["external_id"], "u-1");
    assert!(r.body["updated_at"].as_str() >= r.body["created_at"].as_str());
    let r = api
        .patch_json("/api/v1/users/u-1", json!({"email": "broken"}))
        .await;
    assert_error(&r, 422, "invalid_field", Some("email"));
    let bo = api
        .post(
            "/api/v1/users",
            json!({"email": "bo@example.com", "external_id": "u-2"}),
        )
        .await;
    assert_eq!(bo.status, 201);
    let r = api
        .patch_json("/api/v1/users/u-2", json!({"email": "ada@lovelace.org"}))
        .await;
    assert_error(&r, 409, "duplicate", Some("email"));
    let r = api
        .patch_json("/api/v1/users/u-2", json!({"external_id": "u-1"}))
        .await;
    assert_error(&r, 409, "duplicate", Some("external_id"));
    let r = api
        .patch_json("/api/v1/users/nobody", json!({"first_name": "X"}))
        .await;
    assert_error(&r, 404, "user_not_found", None);
    let r = api
        .patch_json("/api/v1/users/u-2", json!({"external_id": null}))
        .await;
    assert_eq!(r.body["external_id"], Value::Null);

    // Evaluation keeps working beside the user routes, by external id.
    let r = api.get("/api/v1/users/u-1/feature-flags").await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["user_id"], "u-1");
    assert!(r.body["feature_flags"].is_array());

    let r = api.delete("/api/v1/users/u-1").await;
    assert_eq!(r.status, 204, "{:?}", r.body);
    let r = api.get(&format!("/api/v1/users/{id}")).await;
    assert_error(&r, 404, "user_not_found", None);
    let r = api.delete(&format!("/api/v1/users/{id}")).await;
    assert_error(&r, 404, "user_not_found", None);
    // Evaluation does not look the user up: a deleted one is evaluated as
    // given, like anyone Flagpole does not know.
    let r = api.get("/api/v1/users/u-1/feature-flags").await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["user_id"], "u-1");
    assert_eq!(count!(app, users), 1);

    for (action, n) in [
        ("user.created", 2),
        ("user.updated", 2),
        ("user.deleted", 1),
    ] {
        let actors = actors_of(&app, action);
        assert_eq!(actors.len(), n, "{action}: {actors:?}");
        assert!(
            actors.iter().all(|a| a.starts_with("api key automation")),
            "{action}: {actors:?}"
        );
    }
}

/// Walks a list with `after` and returns the ids it saw, checking each page.
async fn walk(api: &Api, path: &str) -> Vec<String> {
    let sep = if path.contains('?') { '&' } else { '?' };
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let url = match &after {
            Some(a) => format!("{path}{sep}after={a}"),
            None => path.to_string(),
        };
        let page = api.get(&url).await;
        assert_eq!(page.status, 200, "{url}: {:?}", page.body);
        assert_eq!(page.body["object"], "list");
        if after.is_some() {
            assert!(page.body["list_metadata"]["before"].is_string());
        }
        for o in page.body["data"].as_array().unwrap() {
            let id = o["id"].as_str().or(o["user_id"].as_str()).unwrap();
            seen.push(id.to_string());
        }
        match page.body["list_metadata"]["after"].as_str() {
            Some(a) => after = Some(a.to_string()),
            None => return seen,
        }
    }
}

async fn lists_are_cursor_paged_and_searchable(app: TestApp) {
    let api = app.api(Some(&key(&app, "staging")));
    let mut org_ids = Vec::new();
    let mut user_ids = Vec::new();
    for i in 0..23 {
        let r = api
            .post(
                "/api/v1/organizations",
                json!({"name": format!("Company {i:02}"), "external_id": format!("ext-org-{i}")}),
            )
            .await;
        assert_eq!(r.status, 201, "{:?}", r.body);
        org_ids.push(r.body["id"].as_str().unwrap().to_string());
        let r = api
            .post(
                "/api/v1/users",
                json!({"email": format!("person{i}@example.com"), "first_name": if i % 2 == 0 { "Even" } else { "Odd" }, "external_id": format!("ext-user-{i}")}),
            )
            .await;
        assert_eq!(r.status, 201, "{:?}", r.body);
        user_ids.push(r.body["id"].as_str().unwrap().to_string());
    }
    let mut descending = org_ids.clone();
    descending.sort();
    descending.reverse();

    // Newest first by default, every object once.
    let first = api.get("/api/v1/organizations").await;
    assert_eq!(
        first.body["data"].as_array().unwrap().len(),
        10,
        "default limit"
    );
    assert_eq!(first.body["list_metadata"]["before"], Value::Null);
    assert_eq!(
        walk(&api, "/api/v1/organizations?limit=7").await,
        descending
    );
    let mut ascending = user_ids.clone();
    ascending.sort();
    assert_eq!(
        walk(&api, "/api/v1/users?limit=5&order=asc").await,
        ascending
    );
    let all = api.get("/api/v1/users?limit=100").await;
    assert_eq!(all.body["data"].as_array().unwrap().len(), 23);
    assert_eq!(all.body["list_metadata"]["after"], Value::Null);

    // Back with `before`.
    let page = api
        .get(&format!(
            "/api/v1/organizations?limit=3&after={}",
            descending[5]
        ))
        .await;
    let ids: Vec<&str> = page.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        descending[6..9]
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
    );
    let before = page.body["list_metadata"]["before"].as_str().unwrap();
    let back = api
        .get(&format!("/api/v1/organizations?limit=3&before={before}"))
        .await;
    let ids: Vec<&str> = back.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        descending[3..6]
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
    );

    // Search by name, external id, email and first name.
    let r = api.get("/api/v1/organizations?q=company%2007").await;
    assert_eq!(r.body["data"].as_array().unwrap().len(), 1);
    assert_eq!(r.body["data"][0]["name"], "Company 07");
    let r = api.get("/api/v1/organizations?q=EXT-ORG-1&limit=100").await;
    assert_eq!(r.body["data"].as_array().unwrap().len(), 11, "1 and 10–19");
    let r = api.get("/api/v1/users?q=person22%40").await;
    assert_eq!(r.body["data"][0]["external_id"], "ext-user-22");
    let odd = walk(&api, "/api/v1/users?q=odd&limit=4").await;
    assert_eq!(odd.len(), 11);
    let r = api.get("/api/v1/users?q=nobody-has-this").await;
    assert_eq!(r.body["data"], json!([]));
    assert_eq!(
        r.body["list_metadata"],
        json!({"before": null, "after": null})
    );

    // Bad paging parameters name the field.
    let r = api.get("/api/v1/organizations?limit=101").await;
    assert_error(&r, 422, "invalid_field", Some("limit"));
    let r = api.get("/api/v1/users?limit=zero").await;
    assert_error(&r, 422, "invalid_field", Some("limit"));
    let r = api.get("/api/v1/users?order=sideways").await;
    assert_error(&r, 422, "invalid_field", Some("order"));
    let r = api.get("/api/v1/users?before=a&after=b").await;
    assert_error(&r, 422, "invalid_field", Some("before"));

    // Walking while organizations are added sees every earlier one once.
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    let mut added = 0;
    loop {
        let url = match &after {
            Some(a) => format!("/api/v1/organizations?limit=4&after={a}"),
            None => "/api/v1/organizations?limit=4".to_string(),
        };
        let page = api.get(&url).await;
        for o in page.body["data"].as_array().unwrap() {
            seen.push(o["id"].as_str().unwrap().to_string());
        }
        let r = api
            .post(
                "/api/v1/organizations",
                json!({"name": format!("Late {added}")}),
            )
            .await;
        assert_eq!(r.status, 201);
        added += 1;
        match page.body["list_metadata"]["after"].as_str() {
            Some(a) => after = Some(a.to_string()),
            None => break,
        }
    }
    assert_eq!(seen, descending, "each earlier organization once, in order");
    assert_eq!(seen.iter().collect::<HashSet<_>>().len(), 23);
}

async fn memberships_are_listed_added_and_removed(app: TestApp) {
    let api = app.api(Some(&key(&app, "staging")));
    let org = api
        .post(
            "/api/v1/organizations",
            json!({"name": "Acme", "external_id": "acme"}),
        )
        .await;
    let org_id = org.body["id"].as_str().unwrap().to_string();
    let mut user_ids = Vec::new();
    for i in 0..5 {
        let r = api
            .post(
                "/api/v1/users",
                json!({"email": format!("m{i}@example.com"), "external_id": format!("member-{i}")}),
            )
            .await;
        user_ids.push(r.body["id"].as_str().unwrap().to_string());
    }
    let r = api
        .post(
            "/api/v1/users",
            json!({"email": "loner@example.com", "external_id": "loner"}),
        )
        .await;
    let loner = r.body["id"].as_str().unwrap().to_string();

    // Add by external id (user) under the external id (organization)…
    let r = api
        .post(
            "/api/v1/organizations/acme/memberships",
            json!({"user_id": "member-0"}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(r.body["object"], "organization_membership");
    assert_eq!(r.body["organization_id"], org_id.as_str());
    assert_eq!(r.body["user_id"], user_ids[0].as_str());
    assert_eq!(r.body["user"]["email"], "m0@example.com");
    assert!(r.body["created_at"].is_string());
    // …and by Flagpole ids.
    for id in &user_ids[1..] {
        let r = api
            .post(
                &format!("/api/v1/organizations/{org_id}/memberships"),
                json!({"user_id": id}),
            )
            .await;
        assert_eq!(r.status, 201, "{:?}", r.body);
    }

    let r = api
        .post(
            "/api/v1/organizations/acme/memberships",
            json!({"user_id": user_ids[0]}),
        )
        .await;
    assert_error(&r, 409, "duplicate", Some("user_id"));
    let r = api
        .post("/api/v1/organizations/acme/memberships", json!({}))
        .await;
    assert_error(&r, 422, "invalid_field", Some("user_id"));
    let r = api
        .post(
            "/api/v1/organizations/acme/memberships",
            json!({"user_id": "  "}),
        )
        .await;
    assert_error(&r, 422, "invalid_field", Some("user_id"));
    let r = api
        .post(
            "/api/v1/organizations/acme/memberships",
            json!({"user_id": "ghost"}),
        )
        .await;
    assert_error(&r, 404, "user_not_found", None);
    let r = api
        .post(
            "/api/v1/organizations/nope/memberships",
            json!({"user_id": "member-0"}),
        )
        .await;
    assert_error(&r, 404, "organization_not_found", None);
    let r = api
        .post_raw("/api/v1/organizations/acme/memberships", "{\"user_id\":")
        .await;
    assert_eq!((r.status, r.code()), (400, "invalid_json"));
    assert_eq!(count!(app, memberships), 5);

    // Paged lists of members, by either id of the organization.
    let mut expected = user_ids.clone();
    expected.sort();
    expected.reverse();
    assert_eq!(
        walk(&api, "/api/v1/organizations/acme/memberships?limit=2").await,
        expected
    );
    let mut asc = expected.clone();
    asc.reverse();
    assert_eq!(
        walk(
            &api,
            &format!("/api/v1/organizations/{org_id}/memberships?limit=3&order=asc")
        )
        .await,
        asc
    );
    let r = api.get("/api/v1/organizations/nope/memberships").await;
    assert_error(&r, 404, "organization_not_found", None);
    let r = api
        .get("/api/v1/organizations/acme/memberships?limit=0")
        .await;
    assert_error(&r, 422, "invalid_field", Some("limit"));

    // Evaluation takes the context as stated: member or not, the pair is
    // evaluated as given (only the token endpoint asks for membership).
    for user in ["member-3", "loner"] {
        let r = api
            .get(&format!(
                "/api/v1/users/{user}/feature-flags?organization_id=acme"
            ))
            .await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        assert_eq!(r.body["user_id"], user);
        assert_eq!(r.body["organization_id"], "acme");
    }

    // Remove by external ids and by Flagpole ids.
    let r = api
        .delete("/api/v1/organizations/acme/memberships/member-3")
        .await;
    assert_eq!(r.status, 204, "{:?}", r.body);
    let r = api
        .delete(&format!(
            "/api/v1/organizations/{org_id}/memberships/{}",
            user_ids[4]
        ))
        .await;
    assert_eq!(r.status, 204, "{:?}", r.body);
    let r = api
        .delete("/api/v1/organizations/acme/memberships/member-3")
        .await;
    assert_error(&r, 404, "membership_not_found", None);
    let r = api
        .delete(&format!("/api/v1/organizations/acme/memberships/{loner}"))
        .await;
    assert_error(&r, 404, "membership_not_found", None);
    let r = api
        .delete("/api/v1/organizations/acme/memberships/ghost")
        .await;
    assert_error(&r, 404, "user_not_found", None);
    let r = api
        .delete("/api/v1/organizations/nope/memberships/member-0")
        .await;
    assert_error(&r, 404, "organization_not_found", None);
    let r = api.get("/api/v1/organizations/acme/memberships").await;
    assert_eq!(r.body["data"].as_array().unwrap().len(), 3);

    // Deleting a member removes the membership too.
    assert_eq!(api.delete("/api/v1/users/member-0").await.status, 204);
    let r = api.get("/api/v1/organizations/acme/memberships").await;
    assert_eq!(r.body["data"].as_array().unwrap().len(), 2);
    assert_eq!(count!(app, memberships), 2);

    let added = actors_of(&app, "membership.added");
    assert_eq!(added.len(), 5);
    assert!(added.iter().all(|a| a.starts_with("api key automation")));
    let removed = actors_of(&app, "membership.removed");
    assert_eq!(removed.len(), 2);
    assert!(removed.iter().all(|a| a.starts_with("api key automation")));
}

fn bulk_users_body(range: std::ops::Range<usize>, first_name: &str) -> Value {
    json!({
        "data": range
            .map(|i| json!({
                "external_id": format!("sync-{i}"),
                "email": format!("sync{i}@example.com"),
                "first_name": first_name,
                "last_name": format!("Number {i}"),
            }))
            .collect::<Vec<_>>()
    })
}

fn audit_count(app: &TestApp) -> i64 {
    count!(app, audit_events)
}

async fn bulk_users_are_created_updated_and_idempotent(app: TestApp) {
    let api = app.api(Some(&key(&app, "staging")));
    let r = api
        .post("/api/v1/users/bulk", bulk_users_body(0..3, "Sync"))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(
        (&r.body["created"], &r.body["updated"], &r.body["unchanged"]),
        (&json!(3), &json!(0), &json!(0))
    );
    let user = api.get("/api/v1/users/sync-1").await;
    assert_eq!(user.status, 200);
    assert_eq!(user.body["email"], "sync1@example.com");
    assert_eq!(user.body["last_name"], "Number 1");
    let created_events = actors_of(&app, "user.created");
    assert_eq!(created_events.len(), 3, "one audit event per created user");
    assert!(created_events
        .iter()
        .all(|a| a.starts_with("api key automation")));

    // A repeat changes nothing, not even a timestamp or the audit trail.
    let events = audit_count(&app);
    let r = api
        .post("/api/v1/users/bulk", bulk_users_body(0..3, "Sync"))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(
        (&r.body["created"], &r.body["updated"], &r.body["unchanged"]),
        (&json!(0), &json!(0), &json!(3))
    );
    assert_eq!(api.get("/api/v1/users/sync-1").await.body, user.body);
    assert_eq!(audit_count(&app), events);

    // Changed and new ones; absent fields are kept; upper-case emails match.
    let r = api
        .post(
            "/api/v1/users/bulk",
            json!({"data": [
                {"external_id": "sync-0", "email": "SYNC0@example.com"},
                {"external_id": "sync-1", "first_name": "Renamed"},
                {"external_id": "sync-2", "last_name": null},
                {"external_id": "sync-3", "email": "sync3@example.com"},
            ]}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(
        (&r.body["created"], &r.body["updated"], &r.body["unchanged"]),
        (&json!(1), &json!(1), &json!(2))
    );
    let renamed = api.get("/api/v1/users/sync-1").await;
    assert_eq!(renamed.body["first_name"], "Renamed");
    assert_eq!(renamed.body["last_name"], "Number 1");
    assert_eq!(renamed.body["email"], "sync1@example.com");
    assert_eq!(renamed.body["id"], user.body["id"]);
    assert_ne!(renamed.body["updated_at"], user.body["updated_at"]);
    let new = api.get("/api/v1/users/sync-3").await;
    assert_eq!(
        (
            new.body["first_name"].as_str(),
            new.body["last_name"].as_str()
        ),
        (Some(""), Some(""))
    );
    let updated = actors_of(&app, "user.updated");
    assert_eq!(updated.len(), 1);

    // The most a request takes, at once; then all of them unchanged.
    let r = api
        .post("/api/v1/users/bulk", bulk_users_body(0..1000, "Sync"))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(
        (&r.body["created"], &r.body["updated"], &r.body["unchanged"]),
        (&json!(996), &json!(2), &json!(2))
    );
    assert_eq!(count!(app, users), 1000);
    let r = api
        .post("/api/v1/users/bulk", bulk_users_body(0..1000, "Sync"))
        .await;
    assert_eq!(
        (&r.body["created"], &r.body["updated"], &r.body["unchanged"]),
        (&json!(0), &json!(0), &json!(1000))
    );
    let r = api.post("/api/v1/users/bulk", json!({"data": []})).await;
    assert_eq!(
        (&r.body["created"], &r.body["updated"], &r.body["unchanged"]),
        (&json!(0), &json!(0), &json!(0))
    );

    // Bulk users can join organizations and be evaluated at once.
    let r = api
        .post(
            "/api/v1/organizations/bulk",
            json!({"data": [{"external_id": "acme", "name": "Acme"}]}),
        )
        .await;
    assert_eq!(r.body["created"], 1);
    let r = api
        .post(
            "/api/v1/organizations/acme/memberships",
            json!({"user_id": "sync-999"}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
}

/// The nice values of this process's threads with this name (Linux).
fn nice_of_threads(name: &str) -> Vec<i64> {
    let mut nice = Vec::new();
    for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if comm.trim_end() != name {
            continue;
        }
        let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
        // The fields after the command's closing parenthesis; nice is the
        // 19th field of the line, the 17th of these.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.split_whitespace().collect())
            .unwrap_or_default();
        nice.push(fields[16].parse().unwrap());
    }
    nice
}

/// On SQLite a bulk sync runs on a writer thread of the lowest CPU
/// priority, so that on a busy machine evaluations come first; the other
/// writes keep theirs.
#[actix_web::test]
async fn sqlite_bulk_syncs_run_at_the_lowest_cpu_priority() {
    let Some(app) = TestApp::spawn(crate::common::Backend::Sqlite).await else {
        return;
    };
    let api = app.api(Some(&key(&app, "staging")));
    let r = api
        .post("/api/v1/users/bulk", bulk_users_body(0..10, "Sync"))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["created"], 10);
    let bulk = nice_of_threads("flagpole-bulk");
    assert!(!bulk.is_empty(), "no bulk writer thread");
    assert!(
        bulk.iter().all(|&n| n == 19),
        "bulk writers at nice {bulk:?}"
    );
    let writers = nice_of_threads("flagpole-writer");
    assert!(!writers.is_empty(), "no writer thread");
    assert!(
        writers.iter().all(|&n| n == 0),
        "writers at nice {writers:?}"
    );
}

async fn bulk_users_are_all_or_nothing(app: TestApp) {
    let api = app.api(Some(&key(&app, "staging")));
    let r = api
        .post("/api/v1/users/bulk", bulk_users_body(0..2, "Before"))
        .await;
    assert_eq!(r.body["created"], 2);
    let (users_before, events_before) = (count!(app, users), audit_count(&app));
    let unchanged = |app: &TestApp| {
        assert_eq!(count!(app, users), users_before, "no user was saved");
        assert_eq!(audit_count(app), events_before, "nothing was audited");
    };

    let mut body = bulk_users_body(0..6, "After");
    body["data"][3]["email"] = json!("not-an-email");
    let r = api.post("/api/v1/users/bulk", body).await;
    assert_error(&r, 422, "invalid_field", Some("data[3].email"));
    unchanged(&app);
    let r = api.get("/api/v1/users/sync-0").await;
    assert_eq!(
        r.body["first_name"], "Before",
        "earlier objects were not saved"
    );

    let mut body = bulk_users_body(0..4, "After");
    body["data"][1]
        .as_object_mut()
        .unwrap()
        .remove("external_id");
    let r = api.post("/api/v1/users/bulk", body).await;
    assert_error(&r, 422, "invalid_field", Some("data[1].external_id"));
    let mut body = bulk_users_body(0..4, "After");
    body["data"][2]["external_id"] = json!("sync-0");
    let r = api.post("/api/v1/users/bulk", body).await;
    assert_error(&r, 422, "invalid_field", Some("data[2].external_id"));
    assert!(r.body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("data[0]"));
    let mut body = bulk_users_body(0..4, "After");
    body["data"][3]["email"] = json!("sync1@example.com");
    let r = api.post("/api/v1/users/bulk", body).await;
    assert_error(&r, 422, "invalid_field", Some("data[3].email"));
    let mut body = bulk_users_body(0..4, "After");
    body["data"][2]["last_name"] = json!("L".repeat(101));
    let r = api.post("/api/v1/users/bulk", body).await;
    assert_error(&r, 422, "invalid_field", Some("data[2].last_name"));
    let mut body = bulk_users_body(0..4, "After");
    body["data"][1]["email"] = json!(42);
    let r = api.post("/api/v1/users/bulk", body).await;
    assert_error(&r, 422, "invalid_field", Some("data[1].email"));
    let mut body = bulk_users_body(0..4, "After");
    body["data"][2] = json!("sync-2");
    let r = api.post("/api/v1/users/bulk", body).await;
    assert_error(&r, 422, "invalid_field", Some("data[2]"));
    unchanged(&app);

    // Found only while saving: a new user without an email, and an email
    // another user has. The objects saved before it are rolled back.
    let mut body = bulk_users_body(0..5, "After");
    body["data"][4].as_object_mut().unwrap().remove("email");
    let r = api.post("/api/v1/users/bulk", body).await;
    assert_error(&r, 422, "invalid_field", Some("data[4].email"));
    unchanged(&app);
    let outsider = api
        .post(
            "/api/v1/users",
            json!({"email": "taken@example.com", "external_id": "outsider"}),
        )
        .await;
    assert_eq!(outsider.status, 201);
    let (users_before, events_before) = (count!(app, users), audit_count(&app));
    let mut body = bulk_users_body(0..5, "After");
    body["data"][3]["email"] = json!("taken@example.com");
    let r = api.post("/api/v1/users/bulk", body).await;
    assert_error(&r, 409, "duplicate", Some("data[3].email"));
    let mut body = bulk_users_body(0..5, "After");
    body["data"][1]["email"] = json!("taken@example.com");
    let r = api.post("/api/v1/users/bulk", body).await;
    assert_error(&r, 409, "duplicate", Some("data[1].email"));
    assert_eq!(count!(app, users), users_before);
    assert_eq!(audit_count(&app), events_before);
    let r = api.get("/api/v1/users/sync-0").await;
    assert_eq!(r.body["first_name"], "Before");

    // Malformed bodies.
    let r = api.post("/api/v1/users/bulk", json!({})).await;
    assert_error(&r, 422, "invalid_field", Some("data"));
    let r = api.post("/api/v1/users/bulk", json!({"data": {}})).await;
    assert_eq!((r.status, r.code()), (422, "invalid_body"));
    let r = api.post_raw("/api/v1/users/bulk", "{\"data\": [").await;
    assert_eq!((r.status, r.code()), (400, "invalid_json"));

    // More than the limit is refused whole, before anything is looked at.
    let mut body = bulk_users_body(0..1001, "After");
    body["data"][0]["email"] = json!("not-an-email");
    let r = api.post("/api/v1/users/bulk", body).await;
    assert_error(&r, 413, "too_many_objects", None);
    let message = r.body["error"]["message"].as_str().unwrap();
    assert!(message.contains("1000"), "{message}");
    assert!(message.contains("1001"), "{message}");
    assert_eq!(count!(app, users), users_before);
    assert_eq!(audit_count(&app), events_before);
}

async fn bulk_organizations_are_upserted_all_or_nothing(app: TestApp) {
    let api = app.api(Some(&key(&app, "staging")));
    let body = |names: &[&str]| {
        json!({"data": names
            .iter()
            .enumerate()
            .map(|(i, n)| json!({"external_id": format!("org-{i}"), "name": n}))
            .collect::<Vec<_>>()})
    };
    let r = api
        .post("/api/v1/organizations/bulk", body(&["A", "B", "C"]))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["object"], "bulk_result");
    assert_eq!(
        (&r.body["created"], &r.body["updated"], &r.body["unchanged"]),
        (&json!(3), &json!(0), &json!(0))
    );
    let b = api.get("/api/v1/organizations/org-1").await;
    assert_eq!(b.body["name"], "B");
    let events = audit_count(&app);
    let r = api
        .post("/api/v1/organizations/bulk", body(&["A", "B", "C"]))
        .await;
    assert_eq!(
        (&r.body["created"], &r.body["updated"], &r.body["unchanged"]),
        (&json!(0), &json!(0), &json!(3))
    );
    assert_eq!(audit_count(&app), events);
    assert_eq!(api.get("/api/v1/organizations/org-1").await.body, b.body);

    let r = api
        .post("/api/v1/organizations/bulk", body(&["A", "Bee", "C", "D"]))
        .await;
    assert_eq!(
        (&r.body["created"], &r.body["updated"], &r.body["unchanged"]),
        (&json!(1), &json!(1), &json!(2))
    );
    assert_eq!(
        api.get("/api/v1/organizations/org-1").await.body["name"],
        "Bee"
    );
    let r = api
        .post(
            "/api/v1/organizations/bulk",
            json!({"data": [{"external_id": "org-0"}]}),
        )
        .await;
    assert_eq!(r.body["unchanged"], 1, "an absent name is kept");
    let updated = actors_of(&app, "organization.updated");
    assert_eq!(updated.len(), 1);
    assert!(updated[0].starts_with("api key automation"));
    assert_eq!(actors_of(&app, "organization.created").len(), 4);

    let before = (count!(app, organizations), audit_count(&app));
    let r = api
        .post("/api/v1/organizations/bulk", body(&["A2", "B2", "", "D2"]))
        .await;
    assert_error(&r, 422, "invalid_field", Some("data[2].name"));
    let r = api
        .post(
            "/api/v1/organizations/bulk",
            json!({"data": [{"external_id": "org-0", "name": "A3"}, {"external_id": "brand-new"}]}),
        )
        .await;
    assert_error(&r, 422, "invalid_field", Some("data[1].name"));
    let r = api
        .post(
            "/api/v1/organizations/bulk",
            json!({"data": [{"external_id": "x", "name": "X"}, {"external_id": "x", "name": "Y"}]}),
        )
        .await;
    assert_error(&r, 422, "invalid_field", Some("data[1].external_id"));
    let r = api
        .post(
            "/api/v1/organizations/bulk",
            json!({"data": [{"external_id": "with space", "name": "X"}]}),
        )
        .await;
    assert_error(&r, 422, "invalid_field", Some("data[0].external_id"));
    let r = api
        .post(
            "/api/v1/organizations/bulk",
            json!({"data": [{"name": "X"}]}),
        )
        .await;
    assert_error(&r, 422, "invalid_field", Some("data[0].external_id"));
    let r = api
        .post_raw("/api/v1/organizations/bulk", "{\"data\": [}")
        .await;
    assert_eq!((r.status, r.code()), (400, "invalid_json"));
    let many = json!({"data": (0..1001)
        .map(|i| json!({"external_id": format!("many-{i}"), "name": "Many"}))
        .collect::<Vec<_>>()});
    let r = api.post("/api/v1/organizations/bulk", many).await;
    assert_error(&r, 413, "too_many_objects", None);
    assert!(r.body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("at most 1000"));
    assert_eq!((count!(app, organizations), audit_count(&app)), before);
    assert_eq!(
        api.get("/api/v1/organizations/org-0").await.body["name"],
        "A",
        "nothing of a refused request was saved"
    );
}

/// Identical bulk requests at once: each succeeds (a request that lost a race
/// for a new external id retries and finds it), and every user exists once.
async fn concurrent_bulk_requests_all_succeed(app: TestApp) {
    let secret = key(&app, "staging");
    let body = bulk_users_body(0..200, "Same");
    let requests = (0..4).map(|_| {
        let api = app.api(Some(&secret));
        let body = body.clone();
        async move { api.post("/api/v1/users/bulk", body).await }
    });
    let answers = futures_join_all(requests).await;
    let mut created = 0;
    for r in &answers {
        assert_eq!(r.status, 200, "{:?}", r.body);
        created += r.body["created"].as_i64().unwrap();
        assert_eq!(
            r.body["created"].as_i64().unwrap() + r.body["unchanged"].as_i64().unwrap(),
            200
        );
    }
    assert_eq!(created, 200, "each user was created by exactly one request");
    assert_eq!(count!(app, users), 200);
    assert_eq!(actors_of(&app, "user.created").len(), 200);
}

/// Runs futures concurrently on this thread and collects their outputs in order.
async fn futures_join_all<F>(futures: impl Iterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + 'static,
    F::Output: 'static,
{
    let handles: Vec<_> = futures.map(actix_web::rt::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.expect("the request task finished"));
    }
    out
}

/// The property names of the documented schema `name`, and its required ones.
async fn documented(api: &Api, name: &str) -> (Vec<String>, Vec<String>) {
    let doc = api.get("/api/v1/openapi.json").await;
    let schema = &doc.body["components"]["schemas"][name];
    let mut properties: Vec<String> = schema["properties"]
        .as_object()
        .unwrap_or_else(|| panic!("{name} is documented"))
        .keys()
        .cloned()
        .collect();
    properties.sort();
    let mut required: Vec<String> = schema["required"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    required.sort();
    (properties, required)
}

/// Checks that `answer` has every documented property and no other.
async fn assert_documented(api: &Api, name: &str, answer: &Value) {
    let (properties, required) = documented(api, name).await;
    let mut keys: Vec<String> = answer.as_object().unwrap().keys().cloned().collect();
    keys.sort();
    assert_eq!(
        keys, properties,
        "{name}: the answer has the documented properties"
    );
    assert_eq!(
        required, properties,
        "{name}: every property is always sent"
    );
}

async fn answers_are_the_documented_objects(app: TestApp) {
    let api = app.api(Some(&key(&app, "staging")));
    let org = api
        .post(
            "/api/v1/organizations",
            json!({"name": "Acme", "external_id": "acme"}),
        )
        .await;
    assert_documented(&api, "OrganizationObject", &org.body).await;
    let user = api
        .post(
            "/api/v1/users",
            json!({"email": "ada@example.com", "external_id": "ada"}),
        )
        .await;
    assert_documented(&api, "UserObject", &user.body).await;
    let membership = api
        .post(
            "/api/v1/organizations/acme/memberships",
            json!({"user_id": "ada"}),
        )
        .await;
    assert_documented(&api, "MembershipObject", &membership.body).await;
    for (list, name) in [
        ("/api/v1/organizations", "OrganizationList"),
        ("/api/v1/users", "UserList"),
        ("/api/v1/organizations/acme/memberships", "MembershipList"),
    ] {
        let r = api.get(list).await;
        assert_documented(&api, name, &r.body).await;
    }
    let listed = api.get("/api/v1/organizations/acme/memberships").await;
    assert_documented(&api, "MembershipObject", &listed.body["data"][0]).await;
    let bulk = api
        .post(
            "/api/v1/users/bulk",
            json!({"data": [{"external_id": "ada"}]}),
        )
        .await;
    assert_documented(&api, "BulkResult", &bulk.body).await;
    let (bulk_fields, _) = documented(&api, "BulkUserItem").await;
    assert_eq!(
        bulk_fields,
        ["email", "external_id", "first_name", "last_name"]
    );
    let (bulk_fields, _) = documented(&api, "BulkOrganizationItem").await;
    assert_eq!(bulk_fields, ["external_id", "name"]);
}

on_both_backends!(
    answers_are_the_documented_objects,
    concurrent_bulk_requests_all_succeed,
    every_route_needs_a_secret_key,
    organizations_are_created_read_updated_and_deleted,
    users_are_created_read_updated_and_deleted,
    lists_are_cursor_paged_and_searchable,
    memberships_are_listed_added_and_removed,
    bulk_users_are_created_updated_and_idempotent,
    bulk_users_are_all_or_nothing,
    bulk_organizations_are_upserted_all_or_nothing,
);
