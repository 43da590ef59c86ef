//! The management API for feature flags and their rules.

use std::collections::HashSet;

use crate::common::{Api, TestApp};
use diesel::prelude::*;
use flagpole::db::schema::{audit_events, flags as flags_table};
use serde_json::{json, Value};

fn key(app: &TestApp, env: &str) -> String {
    crate::support::api_key(app, env, "automation")
}

async fn create(api: &Api, slug: &str) -> crate::common::Json {
    api.post(
        "/api/v1/feature-flags",
        json!({"name": format!("Flag {slug}"), "slug": slug, "description": "d", "tags": ["beta"]}),
    )
    .await
}

async fn flags_are_created_read_updated_and_archived(app: TestApp) {
    let api = app.api(Some(&key(&app, "staging")));
    let r = create(&api, "new-checkout").await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(r.body["object"], "feature_flag");
    assert_eq!(r.body["slug"], "new-checkout");
    assert_eq!(r.body["tags"], json!(["beta"]));
    assert!(r.body["id"].as_str().unwrap().starts_with("flag_"));

    let dup = create(&api, "new-checkout").await;
    assert_eq!((dup.status, dup.code()), (409, "duplicate"));
    assert_eq!(dup.body["error"]["field"], "slug");
    let bad = create(&api, "Not A Slug").await;
    assert_eq!((bad.status, bad.code()), (422, "invalid_field"));
    assert_eq!(bad.body["error"]["field"], "slug");
    let nameless = api
        .post("/api/v1/feature-flags", json!({"slug": "x"}))
        .await;
    assert_eq!(nameless.body["error"]["field"], "name");
    let count: i64 = flags_table::table
        .count()
        .get_result(&mut *app.conn())
        .unwrap();
    assert_eq!(count, 1, "refused creations saved nothing");

    let r = api
        .patch_json(
            "/api/v1/feature-flags/new-checkout",
            json!({"name": "One-page checkout", "tags": ["growth", "beta"]}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["name"], "One-page checkout");
    assert_eq!(r.body["description"], "d", "absent fields are kept");
    assert_eq!(r.body["tags"], json!(["beta", "growth"]));
    let r = api
        .patch_json(
            "/api/v1/feature-flags/new-checkout",
            json!({"slug": "renamed"}),
        )
        .await;
    assert_eq!(
        (r.status, r.body["error"]["field"].as_str()),
        (422, Some("slug"))
    );

    let r = api
        .post("/api/v1/feature-flags/new-checkout/archive", json!({}))
        .await;
    assert_eq!(r.body["archived"], true);
    let listed = api.get("/api/v1/feature-flags").await;
    assert_eq!(listed.body["data"], json!([]));
    let listed = api.get("/api/v1/feature-flags?archived=true").await;
    assert_eq!(listed.body["data"][0]["slug"], "new-checkout");
    let r = api
        .post("/api/v1/feature-flags/new-checkout/unarchive", json!({}))
        .await;
    assert_eq!(r.body["archived"], false);

    let r = api.get("/api/v1/feature-flags/nope").await;
    assert_eq!((r.status, r.code()), (404, "flag_not_found"));
    let actors: Vec<String> = audit_events::table
        .filter(audit_events::action.eq("flag.created"))
        .select(audit_events::actor)
        .load(&mut *app.conn())
        .unwrap();
    assert_eq!(actors.len(), 1);
    assert!(actors[0].starts_with("api key automation"), "{actors:?}");
}

async fn walk(api: &Api, query: &str) -> Vec<String> {
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let path = match &after {
            Some(a) => format!("/api/v1/feature-flags?{query}&after={a}"),
            None => format!("/api/v1/feature-flags?{query}"),
        };
        let page = api.get(&path).await;
        assert_eq!(page.status, 200, "{:?}", page.body);
        for f in page.body["data"].as_array().unwrap() {
            seen.push(f["slug"].as_str().unwrap().to_string());
        }
        match page.body["list_metadata"]["after"].as_str() {
            Some(a) => after = Some(a.to_string()),
            None => return seen,
        }
    }
}

async fn lists_are_cursor_paged_searchable_and_filterable(app: TestApp) {
    let api = app.api(Some(&key(&app, "staging")));
    for i in 0..10 {
        assert_eq!(create(&api, &format!("flag-{i:02}")).await.status, 201);
    }
    api.post(
        "/api/v1/feature-flags",
        json!({"name": "Dark mode", "slug": "dark-mode", "tags": ["ui"]}),
    )
    .await;

    let desc = walk(&api, "limit=3").await;
    assert_eq!(desc.len(), 11);
    assert_eq!(desc[0], "dark-mode", "newest first by default");
    let asc = walk(&api, "limit=4&order=asc").await;
    let mut reversed = desc.clone();
    reversed.reverse();
    assert_eq!(asc, reversed);

    // Back from the second page with `before`.
    let first = api.get("/api/v1/feature-flags?limit=3").await;
    assert_eq!(first.body["list_metadata"]["before"], Value::Null);
    let second = api
        .get(&format!(
            "/api/v1/feature-flags?limit=3&after={}",
            first.body["list_metadata"]["after"].as_str().unwrap()
        ))
        .await;
    let back = api
        .get(&format!(
            "/api/v1/feature-flags?limit=3&before={}",
            second.body["list_metadata"]["before"].as_str().unwrap()
        ))
        .await;
    assert_eq!(back.body["data"], first.body["data"]);

    let found = api.get("/api/v1/feature-flags?q=dark").await;
    assert_eq!(found.body["data"].as_array().unwrap().len(), 1);
    let tagged = api.get("/api/v1/feature-flags?tag=ui").await;
    assert_eq!(tagged.body["data"][0]["slug"], "dark-mode");
    for bad in [
        "limit=0",
        "limit=101",
        "limit=ten",
        "order=sideways",
        "archived=maybe",
    ] {
        let r = api.get(&format!("/api/v1/feature-flags?{bad}")).await;
        assert_eq!(r.status, 422, "{bad}: {:?}", r.body);
    }
}

async fn walking_after_visits_every_flag_once_while_flags_are_added(app: TestApp) {
    let api = app.api(Some(&key(&app, "staging")));
    for i in 0..12 {
        create(&api, &format!("old-{i:02}")).await;
    }
    for order in ["asc", "desc"] {
        let mut seen = Vec::new();
        let mut after: Option<String> = None;
        let mut added = 0;
        loop {
            let path = match &after {
                Some(a) => format!("/api/v1/feature-flags?limit=5&order={order}&after={a}"),
                None => format!("/api/v1/feature-flags?limit=5&order={order}"),
            };
            let page = api.get(&path).await;
            for f in page.body["data"].as_array().unwrap() {
                seen.push(f["slug"].as_str().unwrap().to_string());
            }
            // Someone adds a flag between two pages.
            create(&api, &format!("new-{order}-{added}")).await;
            added += 1;
            match page.body["list_metadata"]["after"].as_str() {
                Some(a) => after = Some(a.to_string()),
                None => break,
            }
        }
        let unique: HashSet<&String> = seen.iter().collect();
        assert_eq!(unique.len(), seen.len(), "{order}: nothing twice: {seen:?}");
        for i in 0..12 {
            assert!(
                seen.contains(&format!("old-{i:02}")),
                "{order}: old-{i:02} visited"
            );
        }
    }
}

async fn rules_are_read_and_changed_with_etags(app: TestApp) {
    let api = app.api(Some(&key(&app, "production")));
    create(&api, "beta").await;
    let mut conn = app.conn();
    let acme = flagpole::directory::organizations::create(
        &mut conn,
        &crate::support::actor(),
        &flagpole::directory::organizations::NewOrganization {
            name: "Acme".into(),
            external_id: "acme".into(),
        },
    )
    .unwrap();
    let ada = flagpole::directory::users::create(
        &mut conn,
        &crate::support::actor(),
        &flagpole::directory::users::NewUser {
            email: "ada@example.com".into(),
            first_name: "Ada".into(),
            last_name: String::new(),
            external_id: "ada".into(),
        },
    )
    .unwrap();
    drop(conn);
    let path = "/api/v1/feature-flags/beta/environments/production";

    let r = api.get(path).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(
        (r.body["mode"].as_str(), r.body["enabled"].as_bool()),
        (Some("none"), Some(false))
    );
    let etag = r.headers["etag"].to_str().unwrap().to_string();

    let r = api
        .put_json(path, Some(&etag), json!({"mode": "some", "targets": [{"type": "organization", "id": "acme"}, {"id": ada.id}]}))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["mode"], "some");
    let ids: Vec<&str> = r.body["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec![acme.id.as_str(), ada.id.as_str()]);
    let new_etag = r.headers["etag"].to_str().unwrap().to_string();
    assert_ne!(new_etag, etag);

    // The old ETag is stale now: nothing changes.
    let r = api
        .put_json(path, Some(&etag), json!({"mode": "all"}))
        .await;
    assert_eq!((r.status, r.code()), (412, "stale"));
    let r = api
        .post_with(&format!("{path}/enable"), Some(&etag), json!({}))
        .await;
    assert_eq!((r.status, r.code()), (412, "stale"));
    assert_eq!(api.get(path).await.body["mode"], "some");
    assert_eq!(api.get(path).await.body["enabled"], false);

    let r = api
        .post_with(&format!("{path}/enable"), Some(&new_etag), json!({}))
        .await;
    assert_eq!((r.status, r.body["enabled"].as_bool()), (200, Some(true)));

    // A PUT without targets keeps them; one with a list replaces them.
    let r = api.put_json(path, None, json!({"mode": "all"})).await;
    assert_eq!(r.body["targets"].as_array().unwrap().len(), 2);
    let r = api
        .put_json(
            path,
            None,
            json!({"mode": "some", "targets": [{"type": "user", "id": "ada"}]}),
        )
        .await;
    assert_eq!(
        r.body["targets"],
        json!([{"type": "user", "id": ada.id, "name": "Ada"}])
    );

    let r = api
        .post(
            &format!("{path}/targets"),
            json!({"type": "organization", "id": "acme"}),
        )
        .await;
    assert_eq!(r.body["targets"].as_array().unwrap().len(), 2);
    let r = api.delete(&format!("{path}/targets/acme")).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["targets"].as_array().unwrap().len(), 1);
    let r = api.delete(&format!("{path}/targets/acme")).await;
    assert_eq!((r.status, r.code()), (404, "target_not_found"));

    let r = api
        .post(
            &format!("{path}/targets"),
            json!({"type": "user", "id": "nobody"}),
        )
        .await;
    assert_eq!((r.status, r.code()), (404, "user_not_found"));
    let r = api
        .post(
            &format!("{path}/targets"),
            json!({"id": "external-without-type"}),
        )
        .await;
    assert_eq!((r.status, r.code()), (422, "invalid_field"));
    let r = api.put_json(path, None, json!({"mode": "most"})).await;
    assert_eq!(
        (r.status, r.body["error"]["field"].as_str()),
        (422, Some("mode"))
    );
    let r = api
        .put_json(path, Some("\"not-a-number"), json!({"mode": "all"}))
        .await;
    assert_eq!(r.status, 400);

    let r = api
        .post(
            "/api/v1/feature-flags/beta/environments/production/disable",
            json!({}),
        )
        .await;
    assert_eq!(r.body["enabled"], false);
    let r = api
        .get("/api/v1/feature-flags/beta/environments/staging")
        .await;
    assert_eq!((r.status, r.code()), (403, "wrong_environment"));
    let r = api
        .get("/api/v1/feature-flags/nope/environments/production")
        .await;
    assert_eq!((r.status, r.code()), (404, "flag_not_found"));
}

/// A body field is applied or refused, never ignored: `enabled` in a rule
/// PUT switches the flag, and an unknown field is a 422 that names it and
/// changes nothing.
async fn body_fields_are_applied_or_refused_never_ignored(app: TestApp) {
    let api = app.api(Some(&key(&app, "production")));
    create(&api, "beta").await;
    let path = "/api/v1/feature-flags/beta/environments/production";

    let r = api
        .put_json(path, None, json!({"mode": "all", "enabled": true}))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(
        (r.body["mode"].as_str(), r.body["enabled"].as_bool()),
        (Some("all"), Some(true))
    );
    let r = api
        .post("/api/v1/evaluate", json!({"user_id": "anyone"}))
        .await;
    assert_eq!(r.body["feature_flags"], json!(["beta"]), "{:?}", r.body);

    for (path, method, body, field) in [
        (
            path,
            "PUT",
            json!({"mode": "none", "enable": false}),
            "enable",
        ),
        (
            "/api/v1/feature-flags",
            "POST",
            json!({"name": "X", "slug": "x", "owner": "me"}),
            "owner",
        ),
        (
            "/api/v1/feature-flags/beta",
            "PATCH",
            json!({"archive": true}),
            "archive",
        ),
        (
            "/api/v1/organizations",
            "POST",
            json!({"name": "Acme", "domains": ["acme.com"]}),
            "domains",
        ),
        (
            "/api/v1/evaluate",
            "POST",
            json!({"user_id": "u", "org": "acme"}),
            "org",
        ),
    ] {
        let r = match method {
            "PUT" => api.put_json(path, None, body).await,
            "PATCH" => api.patch_json(path, body).await,
            _ => api.post(path, body).await,
        };
        assert_eq!(
            (r.status, r.code()),
            (422, "invalid_field"),
            "{method} {path}: {:?}",
            r.body
        );
        assert_eq!(
            r.body["error"]["field"], field,
            "{method} {path}: {:?}",
            r.body
        );
    }
    // Nothing of the refused bodies was applied.
    let r = api.get(path).await;
    assert_eq!(
        (r.body["mode"].as_str(), r.body["enabled"].as_bool()),
        (Some("all"), Some(true))
    );
    assert_eq!(api.get("/api/v1/feature-flags/x").await.status, 404);
    assert_eq!(
        api.get("/api/v1/feature-flags/beta").await.body["archived"],
        false
    );
}

on_both_backends!(
    body_fields_are_applied_or_refused_never_ignored,
    flags_are_created_read_updated_and_archived,
    lists_are_cursor_paged_searchable_and_filterable,
    walking_after_visits_every_flag_once_while_flags_are_added,
    rules_are_read_and_changed_with_etags,
);
