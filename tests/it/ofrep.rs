//! The OpenFeature Remote Evaluation Protocol: single and bulk evaluation,
//! every reason and error code, the organization aliases, the bulk ETag, the
//! key, and the real OpenFeature Rust SDK with its OFREP provider.

use crate::common::{Backend, TestApp};
use flagpole::directory::Organization;
use flagpole::directory::User;
use flagpole::environments::Environment;
use flagpole::evaluation::Mode;
use flagpole::flags;
use open_feature::{EvaluationContext, EvaluationErrorCode, EvaluationReason, OpenFeature};
use open_feature_ofrep::{OfrepOptions, OfrepProvider};
use serde_json::{json, Value};

struct World {
    production: Environment,
    key: String,
    key_id: flagpole::ids::ApiKeyId,
    staging_key: String,
    ada: User,
    bob: User,
    acme: Organization,
    globex: Organization,
}

fn user(app: &TestApp, email: &str, external: &str) -> User {
    flagpole::directory::users::create(
        &mut app.conn(),
        &crate::support::actor(),
        &flagpole::directory::users::NewUser {
            email: email.into(),
            first_name: "Test".into(),
            last_name: "User".into(),
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

/// Sets a flag's rule in `env` (creating the flag when needed).
fn rule(app: &TestApp, env: &Environment, slug: &str, mode: Mode, targets: &[&str], on: bool) {
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
    let current = flagpole::flags::rules::rule(&mut conn, &flag.id, &env.id).unwrap();
    let saved = flagpole::flags::rules::save_rule(
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
            expected_version: Some(current.version),
            ..Default::default()
        },
    )
    .unwrap();
    flagpole::flags::rules::set_enabled(
        &mut conn,
        &crate::support::actor(),
        &flag,
        env,
        on,
        Some(saved.version),
    )
    .unwrap();
}

/// Production: `everyone` (All), `beta-reports` (Some: Acme), `ada-only`
/// (Some: Ada), `dormant` (None but enabled), `paused` (All but off),
/// `retired` (All, archived), `staging-only` (All in Staging, untouched
/// here). Ada belongs to Acme and Globex; Bob to none.
fn world(app: &TestApp) -> World {
    let mut conn = app.conn();
    let production = flagpole::environments::by_slug(&mut conn, "production").unwrap();
    let staging = flagpole::environments::by_slug(&mut conn, "staging").unwrap();
    let (key_row, key) = flagpole::environments::api_keys::create(
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
    let bob = user(app, "bob@example.com", "ext-bob");
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
    rule(app, &production, "everyone", Mode::All, &[], true);
    rule(
        app,
        &production,
        "beta-reports",
        Mode::Some,
        &[&acme.id],
        true,
    );
    rule(app, &production, "ada-only", Mode::Some, &[&ada.id], true);
    rule(app, &production, "dormant", Mode::None, &[&ada.id], true);
    rule(app, &production, "paused", Mode::All, &[], false);
    rule(app, &production, "retired", Mode::All, &[], true);
    rule(app, &staging, "staging-only", Mode::All, &[], true);
    let mut conn = app.conn();
    let retired = flags::by_slug(&mut conn, "retired").unwrap();
    flags::set_archived(&mut conn, &crate::support::actor(), &retired.id, true).unwrap();
    drop(conn);
    World {
        production,
        key,
        key_id: key_row.id,
        staging_key,
        ada,
        bob,
        acme,
        globex,
    }
}

/// One answer, whatever its status and body.
struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Value,
}

/// Posts `body` (raw text) to an OFREP path with the given headers.
async fn send(app: &TestApp, path: &str, headers: &[(&str, &str)], body: &str) -> Answer {
    let mut req = reqwest::Client::new()
        .post(format!("{}/ofrep/v1{path}", app.base))
        .header("content-type", "application/json")
        .body(body.to_string());
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let resp = req.send().await.expect("POST");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let text = resp.text().await.unwrap();
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text)
            .unwrap_or_else(|_| panic!("OFREP answered {status} with non-JSON: {text}"))
    };
    Answer {
        status,
        headers,
        body,
    }
}

/// Evaluates one flag with the production key.
async fn flag(app: &TestApp, w: &World, key: &str, context: Value) -> Answer {
    let auth = format!("Bearer {}", w.key);
    send(
        app,
        &format!("/evaluate/flags/{key}"),
        &[("authorization", &auth)],
        &json!({ "context": context }).to_string(),
    )
    .await
}

/// Evaluates every flag with the production key.
async fn bulk(app: &TestApp, w: &World, context: Value, if_none_match: Option<&str>) -> Answer {
    let auth = format!("Bearer {}", w.key);
    let mut headers = vec![("authorization", auth.as_str())];
    if let Some(tag) = if_none_match {
        headers.push(("if-none-match", tag));
    }
    send(
        app,
        "/evaluate/flags",
        &headers,
        &json!({ "context": context }).to_string(),
    )
    .await
}

/// `(value, reason, variant)` of a successful single evaluation.
fn outcome(a: &Answer) -> (bool, &str, &str) {
    assert_eq!(a.status, 200, "{}", a.body);
    (
        a.body["value"].as_bool().expect("a boolean value"),
        a.body["reason"].as_str().unwrap(),
        a.body["variant"].as_str().unwrap(),
    )
}

fn error_code(a: &Answer) -> &str {
    a.body["errorCode"].as_str().unwrap_or("")
}

async fn every_reason_for_a_user_in_an_organization(app: TestApp) {
    let w = world(&app);
    let ctx = json!({"targetingKey": w.ada.id, "organizationId": w.acme.id});

    let a = flag(&app, &w, "everyone", ctx.clone()).await;
    assert_eq!(outcome(&a), (true, "STATIC", "on"));
    assert_eq!(a.body["key"], "everyone");
    assert_eq!(a.body["metadata"], json!({"environment": "production"}));

    let a = flag(&app, &w, "beta-reports", ctx.clone()).await;
    assert_eq!(outcome(&a), (true, "TARGETING_MATCH", "on"));
    let a = flag(&app, &w, "ada-only", ctx.clone()).await;
    assert_eq!(outcome(&a), (true, "TARGETING_MATCH", "on"));

    // Enabled, but mode None: DEFAULT even though Ada is among its kept targets.
    let a = flag(&app, &w, "dormant", ctx.clone()).await;
    assert_eq!(outcome(&a), (false, "DEFAULT", "off"));
    let a = flag(&app, &w, "paused", ctx.clone()).await;
    assert_eq!(outcome(&a), (false, "DISABLED", "off"));
    let a = flag(&app, &w, "retired", ctx.clone()).await;
    assert_eq!(outcome(&a), (false, "DISABLED", "off"));
    // The key's environment decides: Staging's flag has Production's default rule.
    let a = flag(&app, &w, "staging-only", ctx.clone()).await;
    assert_eq!(outcome(&a), (false, "DISABLED", "off"));

    // Some without a matching target is DEFAULT: Globex is not targeted, and
    // neither is Bob.
    let a = flag(
        &app,
        &w,
        "beta-reports",
        json!({"targetingKey": "ext-ada", "organizationId": "ext-globex"}),
    )
    .await;
    assert_eq!(outcome(&a), (false, "DEFAULT", "off"));
    let a = flag(&app, &w, "beta-reports", json!({"targetingKey": w.ada.id})).await;
    assert_eq!(outcome(&a), (false, "DEFAULT", "off"));
    let a = flag(&app, &w, "ada-only", json!({"targetingKey": w.bob.id})).await;
    assert_eq!(outcome(&a), (false, "DEFAULT", "off"));
    // A user target matches by external id too, without an organization.
    let a = flag(&app, &w, "ada-only", json!({"targetingKey": "ext-ada"})).await;
    assert_eq!(outcome(&a), (true, "TARGETING_MATCH", "on"));

    // A change is seen by the next evaluation.
    rule(&app, &w.production, "paused", Mode::All, &[], true);
    let a = flag(&app, &w, "paused", json!({"targetingKey": w.bob.id})).await;
    assert_eq!(outcome(&a), (true, "STATIC", "on"));
    rule(&app, &w.production, "ada-only", Mode::Some, &[], false);
    let a = flag(&app, &w, "ada-only", json!({"targetingKey": w.ada.id})).await;
    assert_eq!(outcome(&a), (false, "DISABLED", "off"));
}

async fn the_organization_may_be_named_four_ways(app: TestApp) {
    let w = world(&app);
    for name in ["organizationId", "organization_id", "orgId", "org_id"] {
        for org in [w.acme.id.as_str(), "ext-acme"] {
            let a = flag(
                &app,
                &w,
                "beta-reports",
                json!({"targetingKey": w.ada.id, name: org}),
            )
            .await;
            assert_eq!(outcome(&a), (true, "TARGETING_MATCH", "on"), "{name}={org}");
        }
        let a = flag(
            &app,
            &w,
            "beta-reports",
            json!({"targetingKey": w.ada.id, name: w.globex.id}),
        )
        .await;
        assert_eq!(outcome(&a), (false, "DEFAULT", "off"), "{name}");
    }
    // Two names for the same organization are fine; for two different ones, not.
    let a = flag(
        &app,
        &w,
        "beta-reports",
        json!({"targetingKey": w.ada.id, "orgId": "ext-acme", "organizationId": "ext-acme"}),
    )
    .await;
    assert_eq!(outcome(&a), (true, "TARGETING_MATCH", "on"));
    let a = flag(
        &app,
        &w,
        "beta-reports",
        json!({"targetingKey": w.ada.id, "orgId": "ext-acme", "organizationId": "ext-globex"}),
    )
    .await;
    assert_eq!(a.status, 400);
    assert_eq!(error_code(&a), "INVALID_CONTEXT");
    assert!(a.body["errorDetails"].as_str().unwrap().contains("orgId"));
    // An empty organization is no organization.
    let a = flag(
        &app,
        &w,
        "everyone",
        json!({"targetingKey": w.ada.id, "organizationId": ""}),
    )
    .await;
    assert_eq!(outcome(&a), (true, "STATIC", "on"));
}

async fn every_error_code_with_the_status_of_the_specification(app: TestApp) {
    let w = world(&app);
    let auth = format!("Bearer {}", w.key);
    let headers = [("authorization", auth.as_str())];

    let a = flag(&app, &w, "no-such-flag", json!({"targetingKey": w.ada.id})).await;
    assert_eq!(a.status, 404);
    assert_eq!(a.body["key"], "no-such-flag");
    assert_eq!(error_code(&a), "FLAG_NOT_FOUND");
    assert!(a.body["errorDetails"].as_str().is_some());

    for body in ["{\"context\": {", "not json", "[1, 2]"] {
        let a = send(&app, "/evaluate/flags/everyone", &headers, body).await;
        assert_eq!(a.status, 400, "{body}");
        assert_eq!(error_code(&a), "PARSE_ERROR", "{body}");
        assert_eq!(a.body["key"], "everyone");
        assert!(a.body["errorDetails"].as_str().is_some());
        let a = send(&app, "/evaluate/flags", &headers, body).await;
        assert_eq!(a.status, 400, "{body}");
        assert_eq!(error_code(&a), "PARSE_ERROR", "{body}");
        assert!(a.body.get("key").is_none(), "bulk errors name no flag");
    }

    for body in [
        String::new(),
        "{}".into(),
        json!({"context": {}}).to_string(),
        json!({"context": null}).to_string(),
        json!({"context": {"targetingKey": ""}}).to_string(),
        json!({"context": {"organizationId": w.acme.id}}).to_string(),
    ] {
        for path in ["/evaluate/flags/everyone", "/evaluate/flags"] {
            let a = send(&app, path, &headers, &body).await;
            assert_eq!(a.status, 400, "{path} {body}");
            assert_eq!(error_code(&a), "TARGETING_KEY_MISSING", "{path} {body}");
        }
    }

    let invalid = [
        json!({"context": "ada"}),
        json!({"context": {"targetingKey": 42}}),
        json!({"context": {"targetingKey": w.ada.id, "organizationId": 7}}),
    ];
    for body in invalid {
        for path in ["/evaluate/flags/beta-reports", "/evaluate/flags"] {
            let a = send(&app, path, &headers, &body.to_string()).await;
            assert_eq!(a.status, 400, "{path} {body}");
            assert_eq!(error_code(&a), "INVALID_CONTEXT", "{path} {body}");
            assert!(a.body["errorDetails"].as_str().is_some());
        }
    }

    // A context is evaluated as stated, not refused: an organization
    // Flagpole does not know matches no target, and Acme's targeting holds
    // for whoever states Acme, member or not, known or not (as the WorkOS
    // runtime client decides the same pair).
    for (body, on, reason) in [
        (
            json!({"context": {"targetingKey": w.ada.id, "organizationId": "org_nope"}}),
            false,
            "DEFAULT",
        ),
        (
            json!({"context": {"targetingKey": w.bob.id, "organizationId": w.acme.id}}),
            true,
            "TARGETING_MATCH",
        ),
        (
            json!({"context": {"targetingKey": "visitor-17", "organizationId": "ext-acme"}}),
            true,
            "TARGETING_MATCH",
        ),
    ] {
        let a = send(
            &app,
            "/evaluate/flags/beta-reports",
            &headers,
            &body.to_string(),
        )
        .await;
        assert_eq!(a.status, 200, "{body}");
        assert_eq!(
            (a.body["value"].as_bool(), a.body["reason"].as_str()),
            (Some(on), Some(reason)),
            "{body}"
        );
        let a = send(&app, "/evaluate/flags", &headers, &body.to_string()).await;
        assert_eq!(a.status, 200, "{body}");
        let bulk = a.body["flags"].as_array().unwrap();
        let beta = bulk.iter().find(|f| f["key"] == "beta-reports").unwrap();
        assert_eq!(beta["value"].as_bool(), Some(on), "{body}");
    }

    // An unknown route under /ofrep/v1 is a 404 in the protocol's shape.
    let a = send(&app, "/evaluate/other", &headers, "{}").await;
    assert_eq!(a.status, 404);
    assert!(a.body["errorDetails"].as_str().is_some());
}

async fn an_unknown_user_is_targeted_by_nothing(app: TestApp) {
    let w = world(&app);
    let ctx = json!({"targetingKey": "visitor-17"});
    assert_eq!(
        outcome(&flag(&app, &w, "everyone", ctx.clone()).await),
        (true, "STATIC", "on")
    );
    assert_eq!(
        outcome(&flag(&app, &w, "ada-only", ctx.clone()).await),
        (false, "DEFAULT", "off")
    );
    assert_eq!(
        outcome(&flag(&app, &w, "paused", ctx.clone()).await),
        (false, "DISABLED", "off")
    );
    // An organization's id as the targeting key is no user either.
    let ctx = json!({"targetingKey": w.acme.id});
    assert_eq!(
        outcome(&flag(&app, &w, "beta-reports", ctx).await),
        (false, "DEFAULT", "off")
    );
}

async fn the_secret_key_decides_access_and_environment(app: TestApp) {
    let w = world(&app);
    let body = json!({"context": {"targetingKey": w.ada.id}}).to_string();
    for path in ["/evaluate/flags/everyone", "/evaluate/flags"] {
        let a = send(&app, path, &[], &body).await;
        assert_eq!(a.status, 401, "{path}");
        assert_eq!(a.headers["www-authenticate"], "Bearer");
        assert!(a.body["errorDetails"].as_str().unwrap().contains("Bearer"));
        for header in [
            ("authorization", "Bearer sk_not_a_real_key"),
            ("authorization", "Basic c2tfeDp5"),
            ("authorization", "Bearer "),
            ("x-api-key", "sk_not_a_real_key"),
        ] {
            let a = send(&app, path, &[header], &body).await;
            assert_eq!(a.status, 401, "{path} {header:?}");
        }
        // Authentication comes before the body is judged.
        let a = send(
            &app,
            path,
            &[("authorization", "Bearer sk_not_a_real_key")],
            "not json",
        )
        .await;
        assert_eq!(a.status, 401);
    }

    // The protocol's other scheme, X-API-Key, and a lower-case bearer work too.
    let a = send(
        &app,
        "/evaluate/flags/everyone",
        &[("x-api-key", &w.key)],
        &body,
    )
    .await;
    assert_eq!(outcome(&a), (true, "STATIC", "on"));
    let lower = format!("bearer {}", w.key);
    let a = send(
        &app,
        "/evaluate/flags/everyone",
        &[("authorization", &lower)],
        &body,
    )
    .await;
    assert_eq!(outcome(&a), (true, "STATIC", "on"));

    // The Staging key evaluates Staging.
    let staging = format!("Bearer {}", w.staging_key);
    let a = send(
        &app,
        "/evaluate/flags/staging-only",
        &[("authorization", &staging)],
        &body,
    )
    .await;
    assert_eq!(outcome(&a), (true, "STATIC", "on"));
    assert_eq!(a.body["metadata"]["environment"], "staging");
    let a = send(
        &app,
        "/evaluate/flags/everyone",
        &[("authorization", &staging)],
        &body,
    )
    .await;
    assert_eq!(outcome(&a), (false, "DISABLED", "off"));

    // A revoked key is refused.
    flagpole::environments::api_keys::revoke(
        &mut app.conn(),
        &crate::support::actor(),
        &w.production.id,
        &w.key_id,
    )
    .unwrap();
    let a = flag(&app, &w, "everyone", json!({"targetingKey": w.ada.id})).await;
    assert_eq!(a.status, 401);
    let a = bulk(&app, &w, json!({"targetingKey": w.ada.id}), None).await;
    assert_eq!(a.status, 401);
}

async fn bulk_evaluates_every_live_flag_with_an_etag(app: TestApp) {
    let w = world(&app);
    let ctx = json!({"targetingKey": "ext-ada", "organizationId": "ext-acme"});
    let a = bulk(&app, &w, ctx.clone(), None).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let summary: Vec<(String, bool, String, String)> = a.body["flags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            assert_eq!(f["metadata"], json!({"environment": "production"}));
            (
                f["key"].as_str().unwrap().to_string(),
                f["value"].as_bool().unwrap(),
                f["reason"].as_str().unwrap().to_string(),
                f["variant"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let expected = [
        ("ada-only", true, "TARGETING_MATCH", "on"),
        ("beta-reports", true, "TARGETING_MATCH", "on"),
        ("dormant", false, "DEFAULT", "off"),
        ("everyone", true, "STATIC", "on"),
        ("paused", false, "DISABLED", "off"),
        ("staging-only", false, "DISABLED", "off"),
    ];
    let expected: Vec<(String, bool, String, String)> = expected
        .iter()
        .map(|(k, v, r, s)| (k.to_string(), *v, r.to_string(), s.to_string()))
        .collect();
    assert_eq!(summary, expected, "every flag but the archived one, by key");

    let etag = a.headers["etag"].to_str().unwrap().to_string();
    assert!(etag.starts_with('"') && etag.ends_with('"'), "{etag}");

    // Nothing changed: 304, no body, the same ETag.
    let again = bulk(&app, &w, ctx.clone(), Some(&etag)).await;
    assert_eq!(again.status, 304);
    assert_eq!(again.body, Value::Null);
    assert_eq!(again.headers["etag"].to_str().unwrap(), etag);
    // In a list, as a weak tag, or as `*`, it matches as well.
    let listed = format!("\"other\", {etag}");
    assert_eq!(bulk(&app, &w, ctx.clone(), Some(&listed)).await.status, 304);
    let weak = format!("W/{etag}");
    assert_eq!(bulk(&app, &w, ctx.clone(), Some(&weak)).await.status, 304);
    assert_eq!(bulk(&app, &w, ctx.clone(), Some("*")).await.status, 304);
    assert_eq!(
        bulk(&app, &w, ctx.clone(), Some("\"stale\"")).await.status,
        200
    );

    // Another caller sees other answers, so another ETag.
    let other = bulk(&app, &w, json!({"targetingKey": w.bob.id}), Some(&etag)).await;
    assert_eq!(other.status, 200);
    assert_ne!(other.headers["etag"].to_str().unwrap(), etag);

    // A change Ada does not see (Bob becomes a target) keeps her ETag.
    rule(
        &app,
        &w.production,
        "ada-only",
        Mode::Some,
        &[&w.bob.id],
        true,
    );
    assert_eq!(bulk(&app, &w, ctx.clone(), Some(&etag)).await.status, 304);

    // A change she sees gives a new answer and a new ETag.
    rule(&app, &w.production, "paused", Mode::All, &[], true);
    let changed = bulk(&app, &w, ctx.clone(), Some(&etag)).await;
    assert_eq!(changed.status, 200);
    let new_etag = changed.headers["etag"].to_str().unwrap().to_string();
    assert_ne!(new_etag, etag);
    let paused = changed.body["flags"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["key"] == "paused")
        .unwrap();
    assert_eq!(paused["value"], true);
    assert_eq!(paused["reason"], "STATIC");
    assert_eq!(
        bulk(&app, &w, ctx.clone(), Some(&new_etag)).await.status,
        304
    );

    // Archiving removes a flag from the list; unarchiving brings it back.
    let mut conn = app.conn();
    let dormant = flags::by_slug(&mut conn, "dormant").unwrap();
    flags::set_archived(&mut conn, &crate::support::actor(), &dormant.id, true).unwrap();
    drop(conn);
    let archived = bulk(&app, &w, ctx.clone(), Some(&new_etag)).await;
    assert_eq!(archived.status, 200);
    assert!(archived.body["flags"]
        .as_array()
        .unwrap()
        .iter()
        .all(|f| f["key"] != "dormant"));

    // Staging's key lists the same flags, evaluated in Staging.
    let staging = format!("Bearer {}", w.staging_key);
    let a = send(
        &app,
        "/evaluate/flags",
        &[("authorization", &staging)],
        &json!({"context": {"targetingKey": w.ada.id}}).to_string(),
    )
    .await;
    assert_eq!(a.status, 200);
    let on: Vec<&str> = a.body["flags"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["value"] == true)
        .map(|f| f["key"].as_str().unwrap())
        .collect();
    assert_eq!(on, vec!["staging-only"]);
    assert!(a.body["flags"]
        .as_array()
        .unwrap()
        .iter()
        .all(|f| f["metadata"]["environment"] == "staging"));
}

/// The OpenFeature Rust SDK with the OFREP provider, configured like an
/// application would: Flagpole's base URL and the key as a Bearer header.
async fn the_openfeature_sdk_reads_flags_through_its_ofrep_provider(app: TestApp) {
    let w = world(&app);
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {}", w.key).parse().unwrap(),
    );
    let provider = OfrepProvider::new(OfrepOptions {
        base_url: app.base.clone(),
        headers,
        ..Default::default()
    })
    .await
    .expect("the provider accepts Flagpole's URL");
    // An API object of this test's own, not the process-wide singleton, so
    // tests running in parallel do not swap each other's provider.
    let mut api = OpenFeature::default();
    let name = match app.backend {
        Backend::Sqlite => "flagpole-sqlite",
        Backend::Postgres => "flagpole-postgres",
    };
    api.set_named_provider(name, provider).await;
    let client = api.create_named_client(name);

    let ada = EvaluationContext::default().with_targeting_key(w.ada.id.clone());
    let ada_in_acme = ada
        .clone()
        .with_custom_field("organizationId", w.acme.id.to_string());
    let ada_in_globex = EvaluationContext::default()
        .with_targeting_key("ext-ada")
        .with_custom_field("organizationId", "ext-globex");

    // A user target.
    assert!(client
        .get_bool_value("ada-only", Some(&ada), None)
        .await
        .unwrap());
    let bob = EvaluationContext::default().with_targeting_key(w.bob.id.clone());
    assert!(!client
        .get_bool_value("ada-only", Some(&bob), None)
        .await
        .unwrap());
    // An organization target: on in Acme, off in Globex and without one.
    let details = client
        .get_bool_details("beta-reports", Some(&ada_in_acme), None)
        .await
        .unwrap();
    assert!(details.value);
    assert_eq!(details.flag_key, "beta-reports");
    assert_eq!(details.variant.as_deref(), Some("on"));
    // open-feature-ofrep 0.1.2 reports every successful resolution as STATIC
    // and drops the body's reason and metadata (its resolver hard-codes
    // `EvaluationReason::Static`); the reasons Flagpole sends are checked on
    // the wire by the tests above.
    assert_eq!(details.reason, Some(EvaluationReason::Static));
    let details = client
        .get_bool_details("beta-reports", Some(&ada_in_globex), None)
        .await
        .unwrap();
    assert!(!details.value);
    assert_eq!(details.variant.as_deref(), Some("off"));
    assert!(!client
        .get_bool_value("beta-reports", Some(&ada), None)
        .await
        .unwrap());
    // All, None, off, archived.
    assert!(client
        .get_bool_value("everyone", Some(&ada_in_globex), None)
        .await
        .unwrap());
    for off in ["dormant", "paused", "retired", "staging-only"] {
        let details = client
            .get_bool_details(off, Some(&ada_in_acme), None)
            .await
            .unwrap();
        assert!(!details.value, "{off}");
        assert_eq!(details.variant.as_deref(), Some("off"), "{off}");
    }

    // Errors reach the application as OpenFeature error codes.
    let err = client
        .get_bool_value("no-such-flag", Some(&ada), None)
        .await
        .unwrap_err();
    assert_eq!(err.code, EvaluationErrorCode::FlagNotFound);
    let err = client
        .get_bool_value("everyone", Some(&EvaluationContext::default()), None)
        .await
        .unwrap_err();
    assert_eq!(err.code, EvaluationErrorCode::InvalidContext, "a 400");
    // The context is evaluated as stated: Acme's targeting holds for Bob
    // when he says he is in Acme.
    let bob_in_acme = bob
        .clone()
        .with_custom_field("organizationId", w.acme.id.to_string());
    assert!(client
        .get_bool_value("beta-reports", Some(&bob_in_acme), None)
        .await
        .unwrap());

    // A change in Flagpole is the SDK's next answer.
    rule(&app, &w.production, "paused", Mode::All, &[], true);
    assert!(client
        .get_bool_value("paused", Some(&bob), None)
        .await
        .unwrap());

    // With a wrong key the provider reports a general error.
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        "Bearer sk_wrong".parse().unwrap(),
    );
    let wrong = OfrepProvider::new(OfrepOptions {
        base_url: app.base.clone(),
        headers,
        ..Default::default()
    })
    .await
    .unwrap();
    let wrong_name = format!("{name}-wrong-key");
    api.set_named_provider(&wrong_name, wrong).await;
    let err = api
        .create_named_client(&wrong_name)
        .get_bool_value("everyone", Some(&ada), None)
        .await
        .unwrap_err();
    assert!(
        matches!(err.code, EvaluationErrorCode::General(_)),
        "{err:?}"
    );
}

on_both_backends!(
    every_reason_for_a_user_in_an_organization,
    the_organization_may_be_named_four_ways,
    every_error_code_with_the_status_of_the_specification,
    an_unknown_user_is_targeted_by_nothing,
    the_secret_key_decides_access_and_environment,
    bulk_evaluates_every_live_flag_with_an_etag,
    the_openfeature_sdk_reads_flags_through_its_ofrep_provider,
);
