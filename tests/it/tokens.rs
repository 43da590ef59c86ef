//! The token endpoint, verified the way an application would: fetch the
//! JWKS over HTTP, pick the key by `kid`, check `alg`, `iss`, `aud`, `exp`.

use crate::common::{Api, Backend, TestApp};
use diesel::prelude::*;
use flagpole::db::schema::sessions as sessions_table;
use flagpole::directory;
use flagpole::directory::Organization;
use flagpole::directory::User;
use flagpole::environments::Environment;
use flagpole::evaluation::Mode;
use flagpole::flags;
use serde_json::{json, Value};

struct World {
    production: Environment,
    staging: Environment,
    key: String,
    staging_key: String,
    ada: User,
    acme: Organization,
    globex: Organization,
}

fn user(app: &TestApp, email: &str, external: &str) -> User {
    flagpole::directory::users::create(
        &mut app.conn(),
        &crate::support::actor(),
        &flagpole::directory::users::NewUser {
            email: email.into(),
            first_name: "Ada".into(),
            last_name: "Lovelace".into(),
            external_id: external.into(),
        },
    )
    .unwrap()
}

fn org(app: &TestApp, name: &str, external: &str) -> Organization {
    flagpole::directory::organizations::create(
        &mut app.conn(),
        &crate::support::actor(),
        &flagpole::directory::organizations::NewOrganization {
            name: name.into(),
            external_id: external.into(),
        },
    )
    .unwrap()
}

/// A flag turned on in `env` for the given targets (or for all when empty).
fn flag_on(app: &TestApp, env: &Environment, slug: &str, targets: &[&str]) {
    let mut conn = app.conn();
    let flag = flags::by_slug(&mut conn, slug).unwrap_or_else(|_| {
        flags::create(
            &mut conn,
            &crate::support::actor(),
            &flagpole::flags::NewFlag {
                name: slug.into(),
                slug: slug.into(),
                description: String::new(),
                tags: Vec::new(),
            },
        )
        .unwrap()
    });
    let rule = flagpole::flags::rules::rule(&mut conn, &flag.id, &env.id).unwrap();
    let mode = if targets.is_empty() {
        Mode::All
    } else {
        Mode::Some
    };
    let rule = flagpole::flags::rules::save_rule(
        &mut conn,
        &crate::support::actor(),
        &flag,
        env,
        &flagpole::flags::rules::RuleChange {
            mode: Some(mode),
            targets: flagpole::flags::rules::TargetChange::Edit {
                add: targets.iter().map(|t| t.to_string()).collect(),
                remove: Vec::new(),
            },
            expected_version: Some(rule.version),
            ..Default::default()
        },
    )
    .unwrap();
    flagpole::flags::rules::set_enabled(
        &mut conn,
        &crate::support::actor(),
        &flag,
        env,
        true,
        Some(rule.version),
    )
    .unwrap();
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
    let ada = user(app, "ada@acme.example", "ext-ada");
    let acme = org(app, "Acme Inc", "ext-acme");
    let globex = org(app, "Globex", "ext-globex");
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
    drop(conn);
    flag_on(app, &production, "beta-reports", &[&acme.id]);
    flag_on(app, &production, "everyone", &[]);
    flag_on(app, &production, "ada-only", &[&ada.id]);
    flag_on(app, &staging, "staging-only", &[]);
    World {
        production,
        staging,
        key,
        staging_key,
        ada,
        acme,
        globex,
    }
}

/// Verifies an access token as an application would, with only the JWKS URL
/// and the client id; returns the claims.
async fn verify(app: &TestApp, token: &str, client_id: &str) -> Result<Value, String> {
    let header = jsonwebtoken::decode_header(token).map_err(|e| e.to_string())?;
    let kid = header.kid.ok_or("no kid")?;
    let jwks = app.api(None).get("/.well-known/jwks.json").await;
    assert_eq!(jwks.status, 200);
    let set: jsonwebtoken::jwk::JwkSet = serde_json::from_value(jwks.body.clone()).unwrap();
    let jwk = set.find(&kid).ok_or("kid not in the JWKS")?;
    let alg = jwks.body["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == kid)
        .and_then(|k| k["alg"].as_str())
        .unwrap()
        .to_string();
    assert_eq!(jwks.body["keys"][0]["use"], "sig");
    let algorithm: jsonwebtoken::Algorithm = alg.parse().unwrap();
    assert_eq!(header.alg, algorithm, "the header's alg is the key's");
    let key = jsonwebtoken::DecodingKey::from_jwk(jwk).map_err(|e| e.to_string())?;
    let mut validation = jsonwebtoken::Validation::new(algorithm);
    validation.set_audience(&[client_id]);
    validation.set_issuer(&["http://127.0.0.1"]);
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    jsonwebtoken::decode::<Value>(token, &key, &validation)
        .map(|data| data.claims)
        .map_err(|e| e.to_string())
}

async fn start(api: &Api, body: Value) -> crate::common::Json {
    api.post("/api/v1/sessions", body).await
}

async fn a_session_token_carries_the_flags_on_for_the_user_in_the_organization(app: TestApp) {
    let w = world(&app);
    let api = app.api(Some(&w.key));
    let r = start(
        &api,
        json!({"user_id": w.ada.id, "organization_id": w.acme.id}),
    )
    .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(r.body["token_type"], "Bearer");
    assert_eq!(r.body["expires_in"], 300);
    assert_eq!(
        r.body["feature_flags"],
        json!(["ada-only", "beta-reports", "everyone"])
    );
    assert_eq!(r.body["organization_id"], json!(w.acme.id));
    assert_eq!(r.body["user"]["id"], json!(w.ada.id));
    assert_eq!(r.headers["cache-control"], "no-store");
    let claims = verify(
        &app,
        r.body["access_token"].as_str().unwrap(),
        &w.production.client_id,
    )
    .await
    .expect("the token verifies");
    assert_eq!(claims["sub"], json!(w.ada.id));
    assert_eq!(claims["org_id"], json!(w.acme.id));
    assert_eq!(claims["sid"], r.body["session_id"]);
    assert_eq!(claims["feature_flags"], r.body["feature_flags"]);
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        300
    );
    assert!(claims["jti"].as_str().is_some_and(|j| !j.is_empty()));

    // In Globex, Acme's flag is off; without an organization only user and "all" flags.
    let r = start(
        &api,
        json!({"user_id": "ext-ada", "organization_id": "ext-globex"}),
    )
    .await;
    assert_eq!(r.body["feature_flags"], json!(["ada-only", "everyone"]));
    let r = start(&api, json!({"user_id": w.ada.id})).await;
    assert_eq!(r.status, 201);
    assert_eq!(r.body["organization_id"], Value::Null);
    let claims = verify(
        &app,
        r.body["access_token"].as_str().unwrap(),
        &w.production.client_id,
    )
    .await
    .unwrap();
    assert!(claims.get("org_id").is_none());
}

async fn a_token_of_one_environment_fails_another_environments_audience(app: TestApp) {
    let w = world(&app);
    let staging = start(&app.api(Some(&w.staging_key)), json!({"user_id": w.ada.id})).await;
    assert_eq!(staging.status, 201);
    assert_eq!(staging.body["feature_flags"], json!(["staging-only"]));
    let token = staging.body["access_token"].as_str().unwrap();
    assert!(verify(&app, token, &w.staging.client_id).await.is_ok());
    let err = verify(&app, token, &w.production.client_id)
        .await
        .unwrap_err();
    assert!(err.contains("Audience") || err.contains("aud"), "{err}");
}

async fn refresh_rotates_the_pair_and_picks_up_flag_changes(app: TestApp) {
    let w = world(&app);
    let api = app.api(Some(&w.key));
    let first = start(
        &api,
        json!({"user_id": w.ada.id, "organization_id": w.acme.id}),
    )
    .await;
    let old_refresh = first.body["refresh_token"].as_str().unwrap().to_string();

    // An admin turns "everyone" off through the dashboard.
    let admin = app.owner().await;
    let page = admin
        .post(
            "/flags/everyone/environments/production/toggle",
            &[("enabled", "false"), ("confirmed", "true")],
        )
        .await;
    assert_eq!(page.status, 303);

    let anonymous = app.api(None);
    let second = anonymous
        .post(
            "/api/v1/sessions/refresh",
            json!({"refresh_token": old_refresh}),
        )
        .await;
    assert_eq!(second.status, 200, "{:?}", second.body);
    assert_eq!(
        second.body["feature_flags"],
        json!(["ada-only", "beta-reports"])
    );
    assert_ne!(second.body["refresh_token"], json!(old_refresh));
    assert_eq!(
        second.body["organization_id"],
        json!(w.acme.id),
        "the organization is kept"
    );
    assert_eq!(second.body["session_id"], first.body["session_id"]);
    let claims = verify(
        &app,
        second.body["access_token"].as_str().unwrap(),
        &w.production.client_id,
    )
    .await
    .unwrap();
    assert_eq!(claims["feature_flags"], json!(["ada-only", "beta-reports"]));

    // The rotated token is spent: using it again revokes the whole session.
    let reused = anonymous
        .post(
            "/api/v1/sessions/refresh",
            json!({"refresh_token": old_refresh}),
        )
        .await;
    assert_eq!(reused.status, 401);
    assert_eq!(reused.code(), "refresh_token_reused");
    let newest = anonymous
        .post(
            "/api/v1/sessions/refresh",
            json!({"refresh_token": second.body["refresh_token"]}),
        )
        .await;
    assert_eq!(newest.status, 401);
    assert_eq!(newest.code(), "session_revoked");
}

async fn refresh_switches_organization_only_to_one_the_user_belongs_to(app: TestApp) {
    let w = world(&app);
    let api = app.api(Some(&w.key));
    let first = start(
        &api,
        json!({"user_id": w.ada.id, "organization_id": w.acme.id}),
    )
    .await;
    let anonymous = app.api(None);
    let switched = anonymous
        .post(
            "/api/v1/sessions/refresh",
            json!({"refresh_token": first.body["refresh_token"], "organization_id": "ext-globex"}),
        )
        .await;
    assert_eq!(switched.status, 200, "{:?}", switched.body);
    assert_eq!(switched.body["organization_id"], json!(w.globex.id));
    assert_eq!(
        switched.body["feature_flags"],
        json!(["ada-only", "everyone"])
    );

    let stranger = org(&app, "Initech", "ext-initech");
    let refused = anonymous
        .post(
            "/api/v1/sessions/refresh",
            json!({"refresh_token": switched.body["refresh_token"], "organization_id": stranger.id}),
        )
        .await;
    assert_eq!(refused.status, 403);
    assert_eq!(refused.code(), "not_a_member");
    let unknown = anonymous
        .post(
            "/api/v1/sessions/refresh",
            json!({"refresh_token": switched.body["refresh_token"], "organization_id": "org_nope"}),
        )
        .await;
    assert_eq!(unknown.status, 404);
    assert_eq!(unknown.code(), "organization_not_found");
    // Refused switches changed nothing: the token still refreshes, in Globex.
    let again = anonymous
        .post(
            "/api/v1/sessions/refresh",
            json!({"refresh_token": switched.body["refresh_token"]}),
        )
        .await;
    assert_eq!(again.status, 200);
    assert_eq!(again.body["organization_id"], json!(w.globex.id));
}

async fn sessions_refuse_non_members_unknown_ids_and_bad_keys(app: TestApp) {
    let w = world(&app);
    let stranger = org(&app, "Initech", "ext-initech");
    let api = app.api(Some(&w.key));
    let r = start(
        &api,
        json!({"user_id": w.ada.id, "organization_id": stranger.id}),
    )
    .await;
    assert_eq!((r.status, r.code()), (403, "not_a_member"));
    let r = start(&api, json!({"user_id": "user_unknown"})).await;
    assert_eq!((r.status, r.code()), (404, "user_not_found"));
    let r = start(
        &api,
        json!({"user_id": w.ada.id, "organization_id": "nope"}),
    )
    .await;
    assert_eq!((r.status, r.code()), (404, "organization_not_found"));
    // An unknown user is named first, whatever the organization.
    let r = start(
        &api,
        json!({"user_id": "user_unknown", "organization_id": stranger.id}),
    )
    .await;
    assert_eq!((r.status, r.code()), (404, "user_not_found"));
    let r = start(
        &api,
        json!({"user_id": "user_unknown", "organization_id": "nope"}),
    )
    .await;
    assert_eq!((r.status, r.code()), (404, "user_not_found"));
    // By external ids, as by Flagpole ids.
    let r = start(
        &api,
        json!({"user_id": "ext-ada", "organization_id": "ext-initech"}),
    )
    .await;
    assert_eq!((r.status, r.code()), (403, "not_a_member"));

    let r = start(&app.api(None), json!({"user_id": w.ada.id})).await;
    assert_eq!((r.status, r.code()), (401, "missing_api_key"));
    let r = start(
        &app.api(Some("sk_not_a_real_key")),
        json!({"user_id": w.ada.id}),
    )
    .await;
    assert_eq!((r.status, r.code()), (401, "invalid_api_key"));

    // A revoked key stops working at once.
    let mut conn = app.conn();
    let (key, secret) = flagpole::environments::api_keys::create(
        &mut conn,
        &crate::support::actor(),
        &w.production.id,
        "temp",
        flagpole::environments::api_keys::KeyScope::Admin,
    )
    .unwrap();
    drop(conn);
    assert_eq!(
        start(&app.api(Some(&secret)), json!({"user_id": w.ada.id}))
            .await
            .status,
        201
    );
    flagpole::environments::api_keys::revoke(
        &mut app.conn(),
        &crate::support::actor(),
        &w.production.id,
        &key.id,
    )
    .unwrap();
    let r = start(&app.api(Some(&secret)), json!({"user_id": w.ada.id})).await;
    assert_eq!((r.status, r.code()), (401, "invalid_api_key"));
}

async fn bad_bodies_get_clear_json_errors(app: TestApp) {
    let w = world(&app);
    let api = app.api(Some(&w.key));
    let r = api.post_raw("/api/v1/sessions", "{not json").await;
    assert_eq!((r.status, r.code()), (400, "invalid_json"));
    let r = api.post_raw("/api/v1/sessions", r#"{"user_id": 42}"#).await;
    assert_eq!((r.status, r.code()), (422, "invalid_body"));
    let r = start(&api, json!({})).await;
    assert_eq!((r.status, r.code()), (422, "invalid_field"));
    assert_eq!(r.body["error"]["field"], "user_id");
    let r = start(&api, json!({"user": {"email": "x@example.com"}})).await;
    assert_eq!(r.body["error"]["field"], "user.external_id");
    let r = start(
        &api,
        json!({"user": {"external_id": "u-9", "email": "not-an-email"}}),
    )
    .await;
    assert_eq!(
        (r.status, r.body["error"]["field"].as_str()),
        (422, Some("email"))
    );
    let r = app
        .api(None)
        .post("/api/v1/sessions/refresh", json!({}))
        .await;
    assert_eq!(
        (r.status, r.body["error"]["field"].as_str()),
        (422, Some("refresh_token"))
    );
    let r = app
        .api(None)
        .post(
            "/api/v1/sessions/refresh",
            json!({"refresh_token": "rt_nope"}),
        )
        .await;
    assert_eq!((r.status, r.code()), (401, "invalid_refresh_token"));
    // PostgreSQL text cannot hold NUL: a clear 400 on both backends, never a 500.
    let r = start(&api, json!({"user_id": "ada\u{0}"})).await;
    assert!(
        r.status == 400 || r.status == 404,
        "{} {:?}",
        r.status,
        r.body
    );
    // Nor in a name, on either backend: the field says why.
    let r = start(&api, json!({"user": {"external_id": "nul-1", "email": "nul@example.com", "first_name": "A\u{0}"}})).await;
    assert_eq!((r.status, r.code()), (422, "invalid_field"), "{:?}", r.body);
    assert_eq!(r.body["error"]["field"], "first_name");
    let r = api.get("/api/v1/nothing-here").await;
    assert_eq!((r.status, r.code()), (404, "route_not_found"));
    let r = api
        .post_raw(
            "/api/v1/sessions",
            &format!("{{\"user_id\": \"{}\"}}", "x".repeat(2_000_000)),
        )
        .await;
    assert_eq!((r.status, r.code()), (413, "too_large"));
}

async fn inline_users_and_organizations_are_provisioned_just_in_time(app: TestApp) {
    let w = world(&app);
    let api = app.api(Some(&w.key));
    let body = json!({
        "user": {"external_id": "app-user-7", "email": "Grace@Hopper.example", "first_name": "Grace", "last_name": "Hopper"},
        "organization": {"external_id": "app-org-3", "name": "Navy"}
    });
    let r = start(&api, body.clone()).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(r.body["user"]["email"], "grace@hopper.example");
    assert_eq!(r.body["user"]["external_id"], "app-user-7");
    let mut conn = app.conn();
    let grace = flagpole::directory::find_user(&mut conn, "app-user-7")
        .unwrap()
        .unwrap();
    let navy = directory::find_org(&mut conn, "app-org-3")
        .unwrap()
        .unwrap();
    assert_eq!(r.body["organization_id"], json!(navy.id));
    assert_eq!(directory::members_of(&mut conn, &navy.id).unwrap().len(), 1);
    drop(conn);

    // The same call again updates rather than duplicates.
    let mut renamed = body.clone();
    renamed["user"]["last_name"] = json!("Murray Hopper");
    renamed["organization"]["name"] = json!("US Navy");
    let r = start(&api, renamed).await;
    assert_eq!(r.status, 201);
    let mut conn = app.conn();
    assert_eq!(
        flagpole::directory::users::get(&mut conn, &grace.id)
            .unwrap()
            .last_name,
        "Murray Hopper"
    );
    assert_eq!(
        flagpole::directory::organizations::get(&mut conn, &navy.id)
            .unwrap()
            .name,
        "US Navy"
    );
    assert_eq!(directory::members_of(&mut conn, &navy.id).unwrap().len(), 1);
    let (_, users) = flagpole::directory::users::page(&mut conn, "hopper", 1, 10).unwrap();
    assert_eq!(users, 1);
    let _ = w.acme;
}

async fn revoked_sessions_cannot_refresh(app: TestApp) {
    let w = world(&app);
    let api = app.api(Some(&w.key));
    let anonymous = app.api(None);
    let a = start(&api, json!({"user_id": w.ada.id})).await;
    let r = api
        .post(
            "/api/v1/sessions/revoke",
            json!({"refresh_token": a.body["refresh_token"]}),
        )
        .await;
    assert_eq!(r.status, 204);
    let r = anonymous
        .post(
            "/api/v1/sessions/refresh",
            json!({"refresh_token": a.body["refresh_token"]}),
        )
        .await;
    assert_eq!((r.status, r.code()), (401, "session_revoked"));

    let b = start(&api, json!({"user_id": w.ada.id})).await;
    // Another environment's key cannot revoke it.
    let r = app
        .api(Some(&w.staging_key))
        .post(
            "/api/v1/sessions/revoke",
            json!({"session_id": b.body["session_id"]}),
        )
        .await;
    assert_eq!((r.status, r.code()), (404, "session_not_found"));
    let r = api
        .post(
            "/api/v1/sessions/revoke",
            json!({"session_id": b.body["session_id"]}),
        )
        .await;
    assert_eq!(r.status, 204);
    let r = anonymous
        .post(
            "/api/v1/sessions/refresh",
            json!({"refresh_token": b.body["refresh_token"]}),
        )
        .await;
    assert_eq!(r.code(), "session_revoked");
}

async fn an_expired_session_cannot_refresh(app: TestApp) {
    let w = world(&app);
    let a = start(&app.api(Some(&w.key)), json!({"user_id": w.ada.id})).await;
    diesel::update(sessions_table::table)
        .set(sessions_table::expires_at.eq("2000-01-01T00:00:00.000000Z"))
        .execute(&mut *app.conn())
        .unwrap();
    let r = app
        .api(None)
        .post(
            "/api/v1/sessions/refresh",
            json!({"refresh_token": a.body["refresh_token"]}),
        )
        .await;
    assert_eq!((r.status, r.code()), (401, "session_expired"));
}

async fn rotation_signs_new_tokens_with_the_new_key_and_keeps_the_old_one_published(app: TestApp) {
    let w = world(&app);
    let api = app.api(Some(&w.key));
    let before = start(&api, json!({"user_id": w.ada.id})).await;
    let old_token = before.body["access_token"].as_str().unwrap().to_string();
    let old_kid = jsonwebtoken::decode_header(&old_token)
        .unwrap()
        .kid
        .unwrap();

    let admin = app.owner().await;
    let page = admin
        .post(
            "/environments/production/signing-key",
            &[("algorithm", "EdDSA")],
        )
        .await;
    assert_eq!(page.status, 303, "{}", page.body);

    let after = start(&api, json!({"user_id": w.ada.id})).await;
    let new_token = after.body["access_token"].as_str().unwrap();
    let header = jsonwebtoken::decode_header(new_token).unwrap();
    assert_ne!(header.kid.as_deref(), Some(old_kid.as_str()));
    assert_eq!(header.alg, jsonwebtoken::Algorithm::EdDSA);
    assert!(verify(&app, new_token, &w.production.client_id)
        .await
        .is_ok());
    assert!(
        verify(&app, &old_token, &w.production.client_id)
            .await
            .is_ok(),
        "tokens signed before the rotation still verify"
    );
    let jwks = app.api(None).get("/.well-known/jwks.json").await;
    let kids: Vec<&str> = jwks.body["keys"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|k| k["kid"].as_str())
        .collect();
    assert!(kids.contains(&old_kid.as_str()));
    assert_eq!(
        kids.len(),
        6,
        "staging's two keys, production's old and new token and WorkOS keys: {kids:?}"
    );
}

/// Verifies `token` with a key set fetched earlier, as a caching JWKS
/// client (PyJWT's, jose's, the WorkOS SDKs') does between refetches.
fn verify_cached(set: &jsonwebtoken::jwk::JwkSet, token: &str) -> Result<(), String> {
    let header = jsonwebtoken::decode_header(token).map_err(|e| e.to_string())?;
    let jwk = set
        .find(header.kid.as_deref().ok_or("no kid")?)
        .ok_or("the cached key set has no such kid")?;
    let key = jsonwebtoken::DecodingKey::from_jwk(jwk).map_err(|e| e.to_string())?;
    let mut validation = jsonwebtoken::Validation::new(header.alg);
    validation.validate_aud = false;
    jsonwebtoken::decode::<Value>(token, &key, &validation)
        .map(drop)
        .map_err(|e| e.to_string())
}

/// A rotation publishes the next keys first and signs with them only after
/// the publication delay, so a verifier that cached the key set right after
/// the rotation verifies every token; "at once" is for a compromised key.
async fn rotated_keys_are_published_before_they_sign(backend: Backend) {
    let delay = std::time::Duration::from_secs(6);
    let Some(app) = TestApp::spawn_with(backend, |c| c.key_publication_delay = delay).await else {
        return;
    };
    let w = world(&app);
    let api = app.api(Some(&w.key));
    let fetch = || async {
        let jwks = app.api(None).get("/.well-known/jwks.json").await;
        serde_json::from_value::<jsonwebtoken::jwk::JwkSet>(jwks.body).unwrap()
    };
    let kid_of = |token: &Value| {
        jsonwebtoken::decode_header(token.as_str().unwrap())
            .unwrap()
            .kid
            .unwrap()
    };
    let old_kid = kid_of(&start(&api, json!({"user_id": w.ada.id})).await.body["access_token"]);

    let admin = app.owner().await;
    let page = admin
        .post(
            "/environments/production/signing-key",
            &[("algorithm", "ES256")],
        )
        .await;
    assert_eq!(page.status, 303, "{}", page.body);
    let rotated_at = std::time::Instant::now();
    let page = admin.get("/environments").await;
    assert!(
        page.body.contains("Next key"),
        "the pending key is shown with its time: {}",
        &page.body[page.body.find("Signing key").unwrap_or(0)..][..1500]
    );
    assert!(page.body.contains("published, signs from"));

    // Right after the rotation: the old key still signs, the new one is out.
    let cached = fetch().await;
    let token = start(&api, json!({"user_id": w.ada.id})).await.body["access_token"].clone();
    assert_eq!(
        kid_of(&token),
        old_kid,
        "the old key signs until the takeover"
    );
    assert!(
        cached.keys.len() >= 6,
        "both new keys are published at once"
    );

    // After the delay the new key signs, and the set cached before verifies it.
    let remaining = delay.saturating_sub(rotated_at.elapsed());
    actix_web::rt::time::sleep(remaining + std::time::Duration::from_millis(300)).await;
    let token = start(&api, json!({"user_id": w.ada.id})).await.body["access_token"].clone();
    assert_ne!(kid_of(&token), old_kid, "the new key took over");
    verify_cached(&cached, token.as_str().unwrap()).unwrap();

    // At once: the next token is signed by a key the old cache has never seen.
    let page = admin
        .post(
            "/environments/production/signing-key",
            &[("algorithm", "ES256"), ("now", "true")],
        )
        .await;
    assert_eq!(page.status, 303, "{}", page.body);
    let token = start(&api, json!({"user_id": w.ada.id})).await.body["access_token"].clone();
    assert!(verify_cached(&cached, token.as_str().unwrap()).is_err());
    verify_cached(&fetch().await, token.as_str().unwrap()).unwrap();
}

#[actix_web::test]
async fn key_publication_on_sqlite() {
    rotated_keys_are_published_before_they_sign(Backend::Sqlite).await;
}

#[actix_web::test]
async fn key_publication_on_postgres() {
    rotated_keys_are_published_before_they_sign(Backend::Postgres).await;
}

async fn a_refresh_grace_period_gives_concurrent_tabs_the_same_new_pair(backend: Backend) {
    let Some(app) = TestApp::spawn_with(backend, |c| c.refresh_grace = 30).await else {
        return;
    };
    let w = world(&app);
    let a = start(&app.api(Some(&w.key)), json!({"user_id": w.ada.id})).await;
    let anonymous = app.api(None);
    let body = json!({"refresh_token": a.body["refresh_token"]});
    let first = anonymous
        .post("/api/v1/sessions/refresh", body.clone())
        .await;
    let second = anonymous.post("/api/v1/sessions/refresh", body).await;
    assert_eq!(first.status, 200);
    assert_eq!(second.status, 200, "{:?}", second.body);
    assert_eq!(first.body["refresh_token"], second.body["refresh_token"]);
    let next = anonymous
        .post(
            "/api/v1/sessions/refresh",
            json!({"refresh_token": first.body["refresh_token"]}),
        )
        .await;
    assert_eq!(next.status, 200, "the shared new token still works");
}

#[actix_web::test]
async fn grace_period_on_sqlite() {
    a_refresh_grace_period_gives_concurrent_tabs_the_same_new_pair(Backend::Sqlite).await;
}

#[actix_web::test]
async fn grace_period_on_postgres() {
    a_refresh_grace_period_gives_concurrent_tabs_the_same_new_pair(Backend::Postgres).await;
}

async fn evaluation_answers_without_issuing_a_token(app: TestApp) {
    let w = world(&app);
    let api = app.api(Some(&w.key));
    let r = api
        .post(
            "/api/v1/evaluate",
            json!({"user_id": "ext-ada", "organization_id": w.acme.id}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(
        r.body["feature_flags"],
        json!(["ada-only", "beta-reports", "everyone"])
    );
    let r = api
        .get(&format!(
            "/api/v1/users/{}/feature-flags?organization_id=ext-globex",
            w.ada.id
        ))
        .await;
    assert_eq!(r.body["feature_flags"], json!(["ada-only", "everyone"]));
    // The caller states the context, and it is evaluated as given: an
    // unknown user gets what nobody in particular gets, and Acme's
    // targeting holds for whoever states Acme, member or not.
    let r = api.get("/api/v1/users/nobody/feature-flags").await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["user_id"], "nobody");
    assert_eq!(r.body["feature_flags"], json!(["everyone"]));
    let r = api
        .post(
            "/api/v1/evaluate",
            json!({"user_id": "visitor-17", "organization_id": "ext-acme"}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["organization_id"], "ext-acme");
    assert_eq!(r.body["feature_flags"], json!(["beta-reports", "everyone"]));
    let r = api
        .post("/api/v1/evaluate", json!({"organization_id": w.acme.id}))
        .await;
    assert_eq!((r.status, r.code()), (422, "invalid_field"));
}

async fn the_openid_configuration_points_at_the_jwks(app: TestApp) {
    let r = app.api(None).get("/.well-known/openid-configuration").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["issuer"], "http://127.0.0.1");
    assert_eq!(r.body["jwks_uri"], "http://127.0.0.1/.well-known/jwks.json");
    assert_eq!(
        r.body["id_token_signing_alg_values_supported"],
        json!(["ES256", "RS256", "EdDSA"])
    );
    let jwks = app.api(None).get("/.well-known/jwks.json").await;
    let mut algorithms = Vec::new();
    for key in jwks.body["keys"].as_array().unwrap() {
        assert!(key["kid"].is_string() && key["use"] == "sig");
        assert!(
            key.get("d").is_none() && key.get("p").is_none(),
            "no private part is published"
        );
        algorithms.push(key["alg"].as_str().unwrap().to_string());
    }
    algorithms.sort();
    // Each environment's token key (ES256) and WorkOS key (RS256).
    assert_eq!(algorithms, ["ES256", "ES256", "RS256", "RS256"]);
}

async fn concurrent_sessions_and_refreshes_all_succeed(app: TestApp) {
    let w = world(&app);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..24 {
        let api = app.api(Some(&w.key));
        let body = json!({"user_id": w.ada.id, "organization_id": w.acme.id});
        tasks.spawn_local(async move {
            let started = api.post("/api/v1/sessions", body).await;
            let refreshed = Api { key: None, ..api }
                .post(
                    "/api/v1/sessions/refresh",
                    json!({"refresh_token": started.body["refresh_token"]}),
                )
                .await;
            (started.status, refreshed.status, refreshed.body)
        });
    }
    while let Some(result) = tasks.join_next().await {
        let (started, refreshed, body) = result.unwrap();
        assert_eq!((started, refreshed), (201, 200), "{body:?}");
    }
}

/// The public key sets are read, not written: once every environment has
/// its keys, fetching them (anonymously, as often as anyone likes) runs no
/// write, so a flood of them never queues behind, or in front of, changes.
async fn publishing_the_keys_runs_no_write(app: TestApp) {
    let anonymous = app.api(None);
    // The first fetch may create the keys.
    let first = anonymous.get("/.well-known/jwks.json").await;
    assert_eq!(first.status, 200);
    let writes = || {
        app.state
            .db_stats
            .writes
            .load(std::sync::atomic::Ordering::Relaxed)
    };
    let before = writes();
    let client_id = flagpole::environments::by_slug(&mut app.conn(), "production")
        .unwrap()
        .client_id
        .to_string();
    for _ in 0..20 {
        let r = anonymous.get("/.well-known/jwks.json").await;
        assert_eq!(r.body, first.body);
        let r = anonymous.get(&format!("/sso/jwks/{client_id}")).await;
        assert_eq!(r.status, 200);
        assert!(!r.body["keys"].as_array().unwrap().is_empty());
    }
    assert_eq!(writes(), before, "a key set fetch ran a write");
    // The counter does count writes: a rule change is one.
    let key = crate::support::api_key(&app, "production", "writes");
    let before = writes();
    let r = app
        .api(Some(&key))
        .post(
            "/api/v1/feature-flags",
            json!({"name": "Counted", "slug": "counted"}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert!(writes() > before);
}

on_both_backends!(
    publishing_the_keys_runs_no_write,
    concurrent_sessions_and_refreshes_all_succeed,
    a_session_token_carries_the_flags_on_for_the_user_in_the_organization,
    a_token_of_one_environment_fails_another_environments_audience,
    refresh_rotates_the_pair_and_picks_up_flag_changes,
    refresh_switches_organization_only_to_one_the_user_belongs_to,
    sessions_refuse_non_members_unknown_ids_and_bad_keys,
    bad_bodies_get_clear_json_errors,
    inline_users_and_organizations_are_provisioned_just_in_time,
    revoked_sessions_cannot_refresh,
    an_expired_session_cannot_refresh,
    rotation_signs_new_tokens_with_the_new_key_and_keeps_the_old_one_published,
    evaluation_answers_without_issuing_a_token,
    the_openid_configuration_points_at_the_jwks,
);
