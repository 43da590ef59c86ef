//! The WorkOS-compatible surface over HTTP: the shapes, codes and paths the
//! official SDK relies on (the Node suite under tests/node runs the SDK
//! itself), on both databases.

use crate::common::{Json, TestApp};
use crate::support::{make_flag, make_org, make_user, set_enabled, set_rule};
use base64::Engine;
use flagpole::directory::Organization;
use flagpole::directory::User;
use flagpole::environments::Environment;
use flagpole::evaluation::Mode;
use serde_json::{json, Value};

struct World {
    production: Environment,
    staging: Environment,
    key: String,
    staging_key: String,
    ada: User,
    bob: User,
    acme: Organization,
    globex: Organization,
}

fn world(app: &TestApp) -> World {
    let mut conn = app.conn();
    let production = flagpole::environments::by_slug(&mut conn, "production").unwrap();
    let staging = flagpole::environments::by_slug(&mut conn, "staging").unwrap();
    let (_, key) = flagpole::environments::api_keys::create(
        &mut conn,
        &crate::support::actor(),
        &production.id,
        "backend",
        flagpole::environments::api_keys::KeyScope::Admin,
    )
    .unwrap();
    let (_, staging_key) = flagpole::environments::api_keys::create(
        &mut conn,
        &crate::support::actor(),
        &staging.id,
        "backend",
        flagpole::environments::api_keys::KeyScope::Admin,
    )
    .unwrap();
    drop(conn);
    let ada = make_user(app, "ada@acme.example", "Ada", "Lovelace", "ext-ada");
    let bob = make_user(app, "bob@globex.example", "", "", "ext-bob");
    let acme = make_org(app, "Acme Inc", "ext-acme");
    let globex = make_org(app, "Globex", "ext-globex");
    let mut conn = app.conn();
    flagpole::directory::memberships::add(&mut conn, &crate::support::actor(), &acme, &ada, "user")
        .unwrap();
    flagpole::directory::memberships::add(
        &mut conn,
        &crate::support::actor(),
        &globex,
        &ada,
        "user",
    )
    .unwrap();
    flagpole::directory::memberships::add(
        &mut conn,
        &crate::support::actor(),
        &globex,
        &bob,
        "user",
    )
    .unwrap();
    drop(conn);
    World {
        production,
        staging,
        key,
        staging_key,
        ada,
        bob,
        acme,
        globex,
    }
}

/// A flag in production with `mode` over `targets`, on.
fn flag(app: &TestApp, slug: &str, mode: Mode, targets: &[&str]) {
    make_flag(app, slug, slug, "");
    set_rule(app, slug, "production", mode, targets);
    set_enabled(app, slug, "production", true);
}

async fn start(app: &TestApp, key: &str, user: &str, org: Option<&str>) -> Json {
    let r = app
        .api(Some(key))
        .post(
            "/api/v1/sessions",
            json!({"user_id": user, "organization_id": org}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    r
}

async fn authenticate(app: &TestApp, body: Value) -> Json {
    app.api(None)
        .post("/user_management/authenticate", body)
        .await
}

fn refresh_body(w: &World, token: &Value) -> Value {
    json!({
        "grant_type": "refresh_token",
        "client_id": w.production.client_id,
        "client_secret": w.key,
        "refresh_token": token,
    })
}

fn claims(token: &Value) -> Value {
    let payload = token.as_str().unwrap().split('.').nth(1).unwrap();
    use base64::Engine;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

async fn a_refresh_token_grant_answers_in_workos_shape_and_rotates(app: TestApp) {
    let w = world(&app);
    flag(&app, "beta-reports", Mode::Some, &[&w.acme.id]);
    let started = start(&app, &w.key, &w.ada.id, Some(&w.acme.id)).await;
    let first = started.body["refresh_token"].clone();

    let r = authenticate(&app, refresh_body(&w, &first)).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.headers["cache-control"], "no-store");
    let keys: Vec<&str> = r
        .body
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        ["access_token", "organization_id", "refresh_token", "user"],
        "exactly WorkOS's fields"
    );
    assert_eq!(r.body["organization_id"], json!(w.acme.id), "kept");
    assert_eq!(r.body["user"]["object"], "user");
    assert_eq!(r.body["user"]["id"], json!(w.ada.id));
    assert_eq!(r.body["user"]["email"], "ada@acme.example");
    assert_eq!(r.body["user"]["first_name"], "Ada");
    assert_eq!(r.body["user"]["external_id"], "ext-ada");
    assert_eq!(r.body["user"]["metadata"], json!({}));
    assert_ne!(r.body["refresh_token"], first, "rotated");
    let c = claims(&r.body["access_token"]);
    assert_eq!(c["feature_flags"], json!(["beta-reports"]));
    assert_eq!(c["org_id"], json!(w.acme.id));
    assert_eq!(c["sid"], started.body["session_id"]);
    assert_eq!(c["aud"], json!(w.production.client_id));

    // Switching to Globex, where Acme's flag is off; then without
    // organization_id the session stays in Globex.
    let mut body = refresh_body(&w, &r.body["refresh_token"]);
    body["organization_id"] = json!(w.globex.id);
    let r = authenticate(&app, body).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["organization_id"], json!(w.globex.id));
    assert_eq!(claims(&r.body["access_token"])["feature_flags"], json!([]));
    let second = r.body["refresh_token"].clone();
    let r = authenticate(&app, refresh_body(&w, &second)).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["organization_id"], json!(w.globex.id));
    let third = r.body["refresh_token"].clone();

    // A form body works too.
    let form = [
        ("grant_type", "refresh_token"),
        ("client_id", w.production.client_id.as_str()),
        ("client_secret", w.key.as_str()),
        ("refresh_token", third.as_str().unwrap()),
    ];
    let resp = reqwest::Client::new()
        .post(format!("{}/user_management/authenticate", app.base))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let fourth: Value = resp.json().await.unwrap();
    let fourth = fourth["refresh_token"].clone();

    // Presenting a rotated token again is invalid_grant, and revokes the
    // session: its newest token stops working too.
    let r = authenticate(&app, refresh_body(&w, &first)).await;
    assert_eq!(r.status, 400, "{:?}", r.body);
    assert_eq!(r.body["error"], "invalid_grant");
    assert_eq!(r.body["code"], "refresh_token_reused");
    assert!(r.body["error_description"].as_str().unwrap().len() > 10);
    let r = authenticate(&app, refresh_body(&w, &fourth)).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.body["error"], "invalid_grant");
    assert_eq!(r.body["code"], "session_revoked");
}

/// A refused authenticate call: what it is, the fields changed in a good body
/// (`None` removes one), the status and the OAuth error.
type Refusal<'a> = (&'a str, Vec<(&'a str, Option<Value>)>, u16, &'a str);

async fn an_authenticate_call_is_checked_before_anything_changes(app: TestApp) {
    let w = world(&app);
    let started = start(&app, &w.key, &w.ada.id, None).await;
    let token = started.body["refresh_token"].clone();

    // Each refusal: what is changed in a good body (None removes the field),
    // the status and the OAuth error. None of them spends the token.
    let cases: [Refusal; 8] = [
        (
            "another environment's client id and key: the token is unknown there",
            vec![
                ("client_id", Some(json!(w.staging.client_id))),
                ("client_secret", Some(json!(w.staging_key))),
            ],
            400,
            "invalid_grant",
        ),
        (
            "a secret key of another environment",
            vec![("client_secret", Some(json!(w.staging_key)))],
            401,
            "invalid_client",
        ),
        (
            "a wrong secret key",
            vec![("client_secret", Some(json!("sk_wrong")))],
            401,
            "invalid_client",
        ),
        (
            "an unknown client",
            vec![("client_id", Some(json!("client_nope")))],
            401,
            "invalid_client",
        ),
        (
            "another grant",
            vec![("grant_type", Some(json!("authorization_code")))],
            400,
            "unsupported_grant_type",
        ),
        (
            "no grant_type",
            vec![("grant_type", None)],
            400,
            "invalid_request",
        ),
        (
            "no client_id",
            vec![("client_id", None)],
            400,
            "invalid_request",
        ),
        (
            "no refresh_token",
            vec![("refresh_token", None)],
            400,
            "invalid_request",
        ),
    ];
    for (what, edits, status, error) in cases {
        let mut body = refresh_body(&w, &token);
        for (field, value) in edits {
            match value {
                Some(v) => body[field] = v,
                None => {
                    body.as_object_mut().unwrap().remove(field);
                }
            }
        }
        let r = authenticate(&app, body).await;
        assert_eq!(
            (r.status, r.body["error"].as_str()),
            (status, Some(error)),
            "{what}: {:?}",
            r.body
        );
    }
    let r = app
        .api(None)
        .post_raw("/user_management/authenticate", "{not json")
        .await;
    assert_eq!(
        (r.status, r.body["error"].as_str()),
        (400, Some("invalid_request"))
    );

    // An organization the user is not in.
    let mut body = refresh_body(&w, &token);
    body["organization_id"] = json!(w.acme.id);
    let other = start(&app, &w.key, &w.bob.id, None).await;
    body["refresh_token"] = other.body["refresh_token"].clone();
    let r = authenticate(&app, body).await;
    assert_eq!(
        (r.status, r.body["code"].as_str()),
        (400, Some("not_a_member"))
    );

    // After all that, the first token still works once: nothing was spent.
    let r = authenticate(&app, refresh_body(&w, &token)).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    // A public client (no secret) may refresh too: the token is the credential.
    let mut body = refresh_body(&w, &r.body["refresh_token"]);
    body.as_object_mut().unwrap().remove("client_secret");
    let r = authenticate(&app, body).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
}

async fn the_sso_jwks_has_the_environments_keys_only(app: TestApp) {
    let w = world(&app);
    let prod = app
        .api(None)
        .get(&format!("/sso/jwks/{}", w.production.client_id))
        .await;
    assert_eq!(prod.status, 200);
    let staging = app
        .api(None)
        .get(&format!("/sso/jwks/{}", w.staging.client_id))
        .await;
    let kids = |j: &Json| -> Vec<String> {
        j.body["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(kids(&prod).len(), 1);
    assert_eq!(kids(&staging).len(), 1);
    assert_ne!(kids(&prod), kids(&staging));
    // What the WorkOS SDKs' key model requires: RS256 with a certificate.
    for key in prod.body["keys"].as_array().unwrap() {
        assert_eq!(
            (
                key["kty"].as_str(),
                key["alg"].as_str(),
                key["use"].as_str()
            ),
            (Some("RSA"), Some("RS256"), Some("sig"))
        );
        let der = base64::engine::general_purpose::STANDARD
            .decode(key["x5c"][0].as_str().unwrap())
            .unwrap();
        let thumbprint = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(<sha2::Sha256 as sha2::Digest>::digest(&der));
        assert_eq!(key["x5t#S256"], thumbprint.as_str());
    }
    // Tokens refreshed through the WorkOS surface are signed with it;
    // /api/v1/sessions keeps the environment's fast key.
    let started = start(&app, &w.key, &w.ada.id, None).await;
    let header =
        jsonwebtoken::decode_header(started.body["access_token"].as_str().unwrap()).unwrap();
    assert_eq!(header.alg, jsonwebtoken::Algorithm::ES256);
    assert!(!kids(&prod).contains(&header.kid.unwrap()));
    let refreshed = app
        .api(None)
        .post(
            "/user_management/authenticate",
            json!({"grant_type": "refresh_token", "client_id": w.production.client_id, "refresh_token": started.body["refresh_token"]}),
        )
        .await;
    assert_eq!(refreshed.status, 200, "{:?}", refreshed.body);
    let header =
        jsonwebtoken::decode_header(refreshed.body["access_token"].as_str().unwrap()).unwrap();
    assert_eq!(header.alg, jsonwebtoken::Algorithm::RS256);
    assert_eq!(
        header.kid.unwrap(),
        kids(&prod)[0],
        "WorkOS tokens are signed with it"
    );
    // The whole key set has both keys of both environments.
    let all = app.api(None).get("/.well-known/jwks.json").await;
    assert_eq!(kids(&all).len(), 4);

    let r = app.api(None).get("/sso/jwks/client_unknown").await;
    assert_eq!(
        (r.status, r.body["code"].as_str()),
        (404, Some("entity_not_found"))
    );
}

fn slugs(list: &Json) -> Vec<String> {
    list.body["data"]
        .as_array()
        .unwrap_or_else(|| panic!("a list: {:?}", list.body))
        .iter()
        .map(|f| f["slug"].as_str().unwrap().to_string())
        .collect()
}

async fn feature_flags_list_and_page_like_workos(app: TestApp) {
    let w = world(&app);
    for i in 0..12 {
        make_flag(
            &app,
            &format!("Flag {i:02}"),
            &format!("flag-{i:02}"),
            "ops, web",
        );
    }
    make_flag(&app, "Old", "old", "");
    let api = app.api(Some(&w.key));
    assert_eq!(
        api.post("/api/v1/feature-flags/old/archive", json!({}))
            .await
            .status,
        200
    );
    set_rule(&app, "flag-11", "production", Mode::All, &[]);
    set_enabled(&app, "flag-11", "production", true);

    let page = api.get("/feature-flags").await;
    assert_eq!(page.status, 200, "{:?}", page.body);
    assert_eq!(page.body["object"], "list");
    let newest_first: Vec<String> = (2..12).rev().map(|i| format!("flag-{i:02}")).collect();
    assert_eq!(
        slugs(&page),
        newest_first,
        "10 by default, newest first, no archived"
    );
    let first = &page.body["data"][0];
    let keys: Vec<&str> = first
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "created_at",
            "default_value",
            "description",
            "enabled",
            "id",
            "name",
            "object",
            "owner",
            "slug",
            "tags",
            "updated_at"
        ]
    );
    assert_eq!(first["object"], "feature_flag");
    assert_eq!(first["enabled"], true);
    assert_eq!(first["default_value"], true);
    assert_eq!(first["tags"], json!(["ops", "web"]));
    assert_eq!(page.body["list_metadata"]["before"], Value::Null);
    let after = page.body["list_metadata"]["after"]
        .as_str()
        .unwrap()
        .to_string();
    let rest = api.get(&format!("/feature-flags?after={after}")).await;
    assert_eq!(slugs(&rest), ["flag-01", "flag-00"]);
    assert_eq!(rest.body["list_metadata"]["after"], Value::Null);
    let asc = api.get("/feature-flags?order=asc&limit=3").await;
    assert_eq!(slugs(&asc), ["flag-00", "flag-01", "flag-02"]);

    // The same flag, as seen with the Staging key: its own toggle and rule.
    let staged = app
        .api(Some(&w.staging_key))
        .get("/feature-flags/flag-11")
        .await;
    assert_eq!(staged.status, 200);
    assert_eq!(
        (
            staged.body["enabled"].as_bool(),
            staged.body["default_value"].as_bool()
        ),
        (Some(false), Some(false))
    );

    for (path, status, code) in [
        ("/feature-flags?limit=0", 422, "invalid_request_parameters"),
        (
            "/feature-flags?order=sideways",
            422,
            "invalid_request_parameters",
        ),
        ("/feature-flags/old", 404, "entity_not_found"),
        ("/feature-flags/nope", 404, "entity_not_found"),
    ] {
        let r = api.get(path).await;
        assert_eq!(
            (r.status, r.body["code"].as_str()),
            (status, Some(code)),
            "{path}: {:?}",
            r.body
        );
        assert!(r.body["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    let r = api.get("/feature-flags?limit=0").await;
    assert_eq!(r.body["errors"][0]["field"], "limit");
    let r = app.api(None).get("/feature-flags").await;
    assert_eq!(r.status, 401);
    let r = app.api(Some("sk_unknown")).get("/feature-flags").await;
    assert_eq!(r.status, 401);
}

async fn enable_disable_and_targets_change_the_keys_environment(app: TestApp) {
    let w = world(&app);
    make_flag(&app, "Beta", "beta", "");
    let api = app.api(Some(&w.key));
    let put = |path: &str| {
        let api = &api;
        let path = path.to_string();
        async move { api.put_json(&path, None, json!({})).await }
    };
    let r = put("/feature-flags/beta/enable").await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(
        (r.body["slug"].as_str(), r.body["enabled"].as_bool()),
        (Some("beta"), Some(true))
    );
    assert!(crate::support::rule(&app, "beta", "production").enabled);
    assert!(
        !crate::support::rule(&app, "beta", "staging").enabled,
        "only the key's environment"
    );
    let audit = crate::support::audit_of(&app, "rule.enabled");
    assert!(
        audit[0].actor.starts_with("api key backend ("),
        "{}",
        audit[0].actor
    );

    // Adding a target to a rule of mode None makes it Some.
    let r = api
        .post(
            &format!("/feature-flags/beta/targets/{}", w.acme.id),
            json!({}),
        )
        .await;
    assert_eq!(r.status, 204, "{:?}", r.body);
    assert_eq!(
        crate::support::rule(&app, "beta", "production").mode,
        "some"
    );
    assert_eq!(
        crate::support::targets(&app, "beta", "production"),
        [w.acme.id.as_str()]
    );
    let r = api
        .post(
            &format!("/feature-flags/beta/targets/{}", w.bob.id),
            json!({}),
        )
        .await;
    assert_eq!(r.status, 204);
    let version = crate::support::rule(&app, "beta", "production").version;
    // Adding again, or removing a non-target, changes nothing.
    assert_eq!(
        api.post(
            &format!("/feature-flags/beta/targets/{}", w.bob.id),
            json!({})
        )
        .await
        .status,
        204
    );
    assert_eq!(
        api.delete(&format!("/feature-flags/beta/targets/{}", w.globex.id))
            .await
            .status,
        204
    );
    assert_eq!(
        crate::support::rule(&app, "beta", "production").version,
        version
    );

    let flags_of = |user: &str, org: Option<&str>| {
        let api = &api;
        let body = json!({"user_id": user, "organization_id": org});
        async move { api.post("/api/v1/evaluate", body).await.body["feature_flags"].clone() }
    };
    assert_eq!(flags_of(&w.ada.id, Some(&w.acme.id)).await, json!(["beta"]));
    assert_eq!(flags_of(&w.bob.id, None).await, json!(["beta"]));

    let r = api
        .delete(&format!("/feature-flags/beta/targets/{}", w.bob.id))
        .await;
    assert_eq!(r.status, 204);
    assert_eq!(flags_of(&w.bob.id, None).await, json!([]));
    assert_eq!(
        crate::support::targets(&app, "beta", "production"),
        [w.acme.id.as_str()]
    );

    let r = put("/feature-flags/beta/disable").await;
    assert_eq!((r.status, r.body["enabled"].as_bool()), (200, Some(false)));
    assert_eq!(flags_of(&w.ada.id, Some(&w.acme.id)).await, json!([]));

    for (method, path, status) in [
        ("POST", "/feature-flags/beta/targets/acme", 422),
        ("POST", "/feature-flags/beta/targets/user_01NOSUCHUSER", 404),
        ("POST", "/feature-flags/beta/targets/org_01NOSUCHORG", 404),
        ("DELETE", "/feature-flags/nope/targets/org_01NOSUCHORG", 404),
        ("PUT", "/feature-flags/nope/enable", 404),
    ] {
        let r = match method {
            "POST" => api.post(path, json!({})).await,
            "DELETE" => api.delete(path).await,
            _ => put(path).await,
        };
        assert_eq!(r.status, status, "{method} {path}: {:?}", r.body);
    }
    assert_eq!(
        crate::support::targets(&app, "beta", "production"),
        [w.acme.id.as_str()]
    );
    let r = app
        .api(Some("sk_nope"))
        .put_json("/feature-flags/beta/enable", None, json!({}))
        .await;
    assert_eq!(r.status, 401);
}

async fn organization_and_user_lists_hold_the_flags_on_for_them(app: TestApp) {
    let w = world(&app);
    flag(&app, "acme-beta", Mode::Some, &[&w.acme.id]);
    flag(&app, "everyone", Mode::All, &[]);
    flag(&app, "bob-only", Mode::Some, &[&w.bob.id]);
    flag(&app, "nobody", Mode::None, &[&w.acme.id]);
    make_flag(&app, "Off", "off", "");
    set_rule(&app, "off", "production", Mode::All, &[]);
    let api = app.api(Some(&w.key));

    let r = api
        .get(&format!("/organizations/{}/feature-flags", w.acme.id))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(slugs(&r), ["everyone", "acme-beta"]);
    let r = api.get("/organizations/ext-globex/feature-flags").await;
    assert_eq!(slugs(&r), ["everyone"]);
    let r = api
        .get(&format!(
            "/organizations/{}/feature-flags?limit=1",
            w.acme.id
        ))
        .await;
    assert_eq!(slugs(&r), ["everyone"]);
    let next = r.body["list_metadata"]["after"]
        .as_str()
        .unwrap()
        .to_string();
    let r = api
        .get(&format!(
            "/organizations/{}/feature-flags?limit=1&after={next}",
            w.acme.id
        ))
        .await;
    assert_eq!(slugs(&r), ["acme-beta"]);

    let r = api
        .get(&format!(
            "/user_management/users/{}/feature-flags",
            w.bob.id
        ))
        .await;
    assert_eq!(slugs(&r), ["bob-only", "everyone"]);
    let r = api
        .get(&format!(
            "/user_management/users/{}/feature-flags?organization_id={}",
            w.ada.id, w.acme.id
        ))
        .await;
    assert_eq!(slugs(&r), ["everyone", "acme-beta"]);
    // Without an organization, a user's list holds the flags of the
    // user's organizations too, as WorkOS's does: Ada is in Acme.
    for ada in [w.ada.id.as_str(), "ext-ada"] {
        let r = api
            .get(&format!("/user_management/users/{ada}/feature-flags"))
            .await;
        assert_eq!(slugs(&r), ["everyone", "acme-beta"], "{ada}");
    }
    // A stated context is evaluated as given, member or not, known or not.
    let r = api
        .get(&format!(
            "/user_management/users/{}/feature-flags?organization_id={}",
            w.bob.id, w.acme.id
        ))
        .await;
    assert_eq!(slugs(&r), ["bob-only", "everyone", "acme-beta"]);
    for path in [
        "/organizations/org_nope/feature-flags",
        "/user_management/users/user_nope/feature-flags",
        "/user_management/users/visitor-17/feature-flags",
    ] {
        let r = api.get(path).await;
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(slugs(&r), ["everyone"], "{path}");
    }
}

/// Evaluates like the SDK's runtime client does, from the polled rule set.
fn sdk_is_enabled(rules: &Value, slug: &str, user: Option<&str>, org: Option<&str>) -> bool {
    let entry = &rules[slug];
    if entry.is_null() || entry["enabled"] != true {
        return false;
    }
    for (list, id) in [("users", user), ("organizations", org)] {
        if let Some(id) = id {
            if let Some(t) = entry["targets"][list]
                .as_array()
                .unwrap()
                .iter()
                .find(|t| t["id"] == id)
            {
                return t["enabled"] == true;
            }
        }
    }
    entry["default_value"] == true
}

async fn the_runtime_rule_set_agrees_with_flagpoles_evaluation(app: TestApp) {
    let w = world(&app);
    flag(&app, "acme-beta", Mode::Some, &[&w.acme.id]);
    flag(&app, "everyone", Mode::All, &[]);
    flag(&app, "bob-only", Mode::Some, &[&w.bob.id, &w.globex.id]);
    flag(&app, "nobody", Mode::None, &[&w.acme.id, &w.ada.id]);
    make_flag(&app, "Off", "off", "");
    set_rule(&app, "off", "production", Mode::All, &[]);
    make_flag(&app, "Gone", "gone", "");
    set_rule(&app, "gone", "production", Mode::All, &[]);
    set_enabled(&app, "gone", "production", true);
    let api = app.api(Some(&w.key));
    assert_eq!(
        api.post("/api/v1/feature-flags/gone/archive", json!({}))
            .await
            .status,
        200
    );

    let r = api.get("/sdk/feature-flags").await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let rules = r.body;
    let mut listed: Vec<&String> = rules.as_object().unwrap().keys().collect();
    listed.sort();
    assert_eq!(
        listed,
        ["acme-beta", "bob-only", "everyone", "nobody", "off"]
    );
    assert_eq!(
        rules["acme-beta"],
        json!({"slug": "acme-beta", "enabled": true, "default_value": false,
               "targets": {"users": [], "organizations": [{"id": w.acme.id, "enabled": true}]}})
    );
    assert_eq!(
        rules["nobody"]["targets"],
        json!({"users": [], "organizations": []})
    );

    let users = [Some(w.ada.id.as_str()), Some(w.bob.id.as_str()), None];
    let orgs = [Some(w.acme.id.as_str()), Some(w.globex.id.as_str()), None];
    for user in users {
        for org in orgs {
            let Some(user_id) = user else { continue };
            let evaluated = api
                .post(
                    "/api/v1/evaluate",
                    json!({"user_id": user_id, "organization_id": org}),
                )
                .await;
            // Member or not, the pair is evaluated as given, like the SDK does.
            assert_eq!(evaluated.status, 200, "{:?}", evaluated.body);
            let mut sdk: Vec<&str> = listed
                .iter()
                .map(|s| s.as_str())
                .filter(|s| sdk_is_enabled(&rules, s, user, org))
                .collect();
            sdk.sort();
            assert_eq!(
                json!(sdk),
                evaluated.body["feature_flags"],
                "{user:?} in {org:?}"
            );
        }
    }
    // The set is built once per revision: a change, made here or by another
    // instance on the same database, is in the next poll.
    let again = api.get("/sdk/feature-flags").await;
    assert_eq!(again.body, rules, "nothing changed");
    let other = app.second_instance().await;
    let r = other
        .api(Some(&w.key))
        .put_json("/feature-flags/off/enable", None, json!({}))
        .await;
    assert_eq!(r.status, 200);
    // Another instance's change reaches this one's model within its poll.
    let mut after = api.get("/sdk/feature-flags").await;
    for _ in 0..40 {
        if after.body["off"]["enabled"] == true {
            break;
        }
        actix_web::rt::time::sleep(std::time::Duration::from_millis(50)).await;
        after = api.get("/sdk/feature-flags").await;
    }
    assert_eq!(after.body["off"]["enabled"], true);
    assert_eq!(after.body["off"]["default_value"], true);
    let r = api
        .post(
            &format!("/feature-flags/acme-beta/targets/{}", w.bob.id),
            json!({}),
        )
        .await;
    assert_eq!(r.status, 204);
    let after = api.get("/sdk/feature-flags").await;
    assert_eq!(
        after.body["acme-beta"]["targets"]["users"],
        json!([{"id": w.bob.id, "enabled": true}])
    );

    let staging = app
        .api(Some(&w.staging_key))
        .get("/sdk/feature-flags")
        .await;
    assert_eq!(
        staging.body["everyone"]["enabled"], false,
        "the key's environment"
    );
    assert_eq!(app.api(None).get("/sdk/feature-flags").await.status, 401);
}

async fn revoking_a_session_ends_its_refreshes(app: TestApp) {
    let w = world(&app);
    let started = start(&app, &w.key, &w.ada.id, None).await;
    let session = started.body["session_id"].clone();
    let api = app.api(Some(&w.key));
    let path = "/user_management/sessions/revoke";

    // Another environment's key does not know the session; bad bodies are refused.
    let r = app
        .api(Some(&w.staging_key))
        .post(path, json!({"session_id": session}))
        .await;
    assert_eq!(
        (r.status, r.body["code"].as_str()),
        (404, Some("entity_not_found"))
    );
    let r = api.post(path, json!({})).await;
    assert_eq!(r.status, 422);
    assert_eq!(r.body["errors"][0]["field"], "session_id");
    let r = api.post_raw(path, "{nope").await;
    assert_eq!(
        (r.status, r.body["code"].as_str()),
        (400, Some("invalid_json"))
    );
    let alive = authenticate(&app, refresh_body(&w, &started.body["refresh_token"])).await;
    assert_eq!(alive.status, 200, "still alive: {:?}", alive.body);

    let r = api.post(path, json!({"session_id": session})).await;
    assert_eq!(r.status, 204, "{:?}", r.body);
    let r = authenticate(&app, refresh_body(&w, &alive.body["refresh_token"])).await;
    assert_eq!(
        (r.status, r.body["error"].as_str(), r.body["code"].as_str()),
        (400, Some("invalid_grant"), Some("session_revoked"))
    );
}

async fn the_runtime_rule_set_is_sent_gzipped_with_an_etag(app: TestApp) {
    let w = world(&app);
    flag(&app, "acme-beta", Mode::Some, &[&w.acme.id]);
    flag(&app, "everyone", Mode::All, &[]);
    let http = reqwest::Client::new();
    let get = |encoding: Option<&'static str>, etag: Option<String>| {
        let mut request = http
            .get(format!("{}/sdk/feature-flags", app.base))
            .bearer_auth(&w.key);
        if let Some(encoding) = encoding {
            request = request.header("Accept-Encoding", encoding);
        }
        if let Some(etag) = etag {
            request = request.header("If-None-Match", etag);
        }
        async move { request.send().await.unwrap() }
    };
    let header = |r: &reqwest::Response, name: &str| {
        r.headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
    };

    let plain = get(None, None).await;
    assert_eq!(plain.status(), 200);
    assert_eq!(
        header(&plain, "content-encoding").as_deref(),
        Some("identity")
    );
    let etag = header(&plain, "etag").expect("an ETag");
    let plain: Value = serde_json::from_slice(&plain.bytes().await.unwrap()).unwrap();
    assert!(plain["acme-beta"].is_object());

    let zipped = get(Some("gzip, deflate, br"), None).await;
    assert_eq!(zipped.status(), 200);
    assert_eq!(header(&zipped, "content-encoding").as_deref(), Some("gzip"));
    assert_eq!(header(&zipped, "etag").as_deref(), Some(etag.as_str()));
    let bytes = zipped.bytes().await.unwrap();
    let mut unzipped = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&bytes[..]), &mut unzipped)
        .unwrap();
    assert_eq!(serde_json::from_slice::<Value>(&unzipped).unwrap(), plain);
    // A client that refuses gzip gets it plain.
    let refused = get(Some("gzip;q=0"), None).await;
    assert_eq!(
        header(&refused, "content-encoding").as_deref(),
        Some("identity")
    );

    // Unchanged: 304 to the ETag.
    let again = get(Some("gzip"), Some(etag.clone())).await;
    assert_eq!(again.status(), 304);
    // A change elsewhere (Staging) leaves Production's set as it was.
    set_rule(&app, "everyone", "staging", Mode::All, &[]);
    let after = get(None, Some(etag.clone())).await;
    assert_eq!(
        after.status(),
        304,
        "a Staging change keeps Production's ETag"
    );
    // A change here is a new set.
    set_rule(&app, "acme-beta", "production", Mode::All, &[]);
    let changed = get(None, Some(etag.clone())).await;
    assert_eq!(changed.status(), 200);
    assert_ne!(header(&changed, "etag").as_deref(), Some(etag.as_str()));
    let changed: Value = serde_json::from_slice(&changed.bytes().await.unwrap()).unwrap();
    assert_eq!(changed["acme-beta"]["default_value"], true);
    assert_eq!(changed["everyone"], plain["everyone"]);
}

on_both_backends!(
    the_runtime_rule_set_is_sent_gzipped_with_an_etag,
    revoking_a_session_ends_its_refreshes,
    a_refresh_token_grant_answers_in_workos_shape_and_rotates,
    an_authenticate_call_is_checked_before_anything_changes,
    the_sso_jwks_has_the_environments_keys_only,
    feature_flags_list_and_page_like_workos,
    enable_disable_and_targets_change_the_keys_environment,
    organization_and_user_lists_hold_the_flags_on_for_them,
    the_runtime_rule_set_agrees_with_flagpoles_evaluation,
);
