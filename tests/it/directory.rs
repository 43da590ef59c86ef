//! Organizations, users and memberships in the dashboard.

use crate::common::TestApp;
use crate::support::*;
use diesel::prelude::*;
use flagpole::db::schema::{memberships, organizations, users};
use flagpole::directory::Organization;
use flagpole::directory::User;
use flagpole::evaluation::Mode;

fn org_by_name(app: &TestApp, name: &str) -> Organization {
    let mut conn = app.conn();
    organizations::table
        .filter(organizations::name.eq(name))
        .select(Organization::as_select())
        .first(&mut *conn)
        .unwrap_or_else(|e| panic!("organization {name}: {e}"))
}

fn user_by_email(app: &TestApp, email: &str) -> Option<User> {
    let mut conn = app.conn();
    users::table
        .filter(users::email.eq(email))
        .select(User::as_select())
        .first(&mut *conn)
        .optional()
        .unwrap()
}

fn members(app: &TestApp, org_id: &str) -> Vec<String> {
    let mut conn = app.conn();
    let mut ids: Vec<String> = memberships::table
        .filter(memberships::organization_id.eq(org_id))
        .select(memberships::user_id)
        .load(&mut *conn)
        .unwrap();
    ids.sort();
    ids
}

/// Names in the first column of a directory list page.
fn listed(body: &str, prefix: &str) -> Vec<String> {
    let marker = format!("<td><a href=\"/{prefix}/");
    body.match_indices(&marker)
        .map(|(i, _)| {
            let rest = &body[i + marker.len()..];
            let start = rest.find('>').unwrap() + 1;
            unescape(&rest[start..start + rest[start..].find("</a>").unwrap()])
        })
        .collect()
}

async fn an_organization_is_created_with_or_without_an_external_id(app: TestApp) {
    let client = app.owner().await;
    let form = client.get("/organizations/new").await;
    assert_eq!(form.status, 200);
    form.assert_contains("<label for=\"name\">Name</label>");
    let page = client
        .post(
            "/organizations",
            &[("name", " Acme Corp "), ("external_id", "acme-1")],
        )
        .await;
    assert_eq!(page.status, 303, "{}", page.body);
    let acme = org_by_name(&app, "Acme Corp");
    assert!(acme.id.starts_with("org_"));
    assert_eq!(acme.external_id.as_deref(), Some("acme-1"));
    assert_eq!(
        page.location.as_deref(),
        Some(format!("/organizations/{}", acme.id).as_str())
    );

    // Two organizations without an external id do not clash.
    for name in ["Globex", "Initech"] {
        let page = client
            .post("/organizations", &[("name", name), ("external_id", "  ")])
            .await;
        assert_eq!(page.status, 303, "{}", page.body);
        assert_eq!(org_by_name(&app, name).external_id, None);
    }
    let list = client.get("/organizations").await;
    assert_eq!(
        listed(&list.body, "organizations"),
        vec!["Acme Corp", "Globex", "Initech"]
    );
    list.assert_contains("<code>acme-1</code>");
    let shown = client.get(&format!("/organizations/{}", acme.id)).await;
    assert_eq!(shown.status, 200);
    shown
        .assert_contains("value=\"Acme Corp\"")
        .assert_contains("value=\"acme-1\"")
        .assert_contains("No members yet.");
    assert_eq!(audit_of(&app, "organization.created").len(), 3);
}

async fn invalid_organizations_are_refused_next_to_the_field(app: TestApp) {
    make_org(&app, "Acme", "acme-1");
    let client = app.owner().await;
    for (name, external_id, field, message) in [
        ("", "", "name", "Enter a name."),
        (
            "Spaced",
            "has space",
            "external_id",
            "An external id cannot contain spaces.",
        ),
        (
            "Copycat",
            "acme-1",
            "external_id",
            "Another object already has this external id.",
        ),
        (
            &"x".repeat(101),
            "",
            "name",
            "A name has at most 100 characters.",
        ),
    ] {
        let page = client
            .post(
                "/organizations",
                &[("name", name), ("external_id", external_id)],
            )
            .await;
        assert_eq!(page.status, 422, "{name}/{external_id}: {}", page.body);
        assert_eq!(field_error(&page.body, field).as_deref(), Some(message));
        assert_eq!(fields_with_errors(&page.body), vec![field]);
    }
    assert_eq!(count!(app, organizations), 1);
}

async fn an_organization_can_be_edited(app: TestApp) {
    let acme = make_org(&app, "Acme", "acme-1");
    make_org(&app, "Globex", "globex-1");
    let client = app.owner().await;
    let path = format!("/organizations/{}", acme.id);
    let page = client
        .post(&path, &[("name", "Acme Inc"), ("external_id", "acme-2")])
        .await;
    assert_eq!(page.status, 303, "{}", page.body);
    let stored = org_by_name(&app, "Acme Inc");
    assert_eq!(stored.id, acme.id);
    assert_eq!(stored.external_id.as_deref(), Some("acme-2"));
    says(&client.get(&path).await, "Saved Acme Inc.");

    // Taking another organization's external id is refused and changes nothing.
    let page = client
        .post(&path, &[("name", "Renamed"), ("external_id", "globex-1")])
        .await;
    assert_eq!(page.status, 422);
    assert_eq!(
        field_error(&page.body, "external_id").as_deref(),
        Some("Another object already has this external id.")
    );
    page.assert_contains("value=\"Renamed\"");
    assert_eq!(
        org_by_name(&app, "Acme Inc").external_id.as_deref(),
        Some("acme-2")
    );

    // Clearing the external id stores none.
    let page = client
        .post(&path, &[("name", "Acme Inc"), ("external_id", "")])
        .await;
    assert_eq!(page.status, 303);
    assert_eq!(org_by_name(&app, "Acme Inc").external_id, None);

    let updates = audit_of(&app, "organization.updated");
    assert_eq!(updates.len(), 2);
    assert_eq!(json(&updates[0].before_state)["name"], "Acme");
    assert_eq!(json(&updates[0].after_state)["external_id"], "acme-2");
}

async fn organizations_are_searched_and_paged(app: TestApp) {
    for i in 1..=30 {
        make_org(&app, &format!("Org {i:02}"), "");
    }
    let initech = make_org(&app, "Initech", "ini-9");
    let client = app.owner().await;
    let first = client.get("/organizations").await;
    let names = listed(&first.body, "organizations");
    assert_eq!(names.len(), 25);
    assert_eq!(names[0], "Initech");
    assert_eq!(names[1], "Org 01");
    first.assert_contains("1–25 of 31 organizations · page 1 of 2");
    let second = client.get("/organizations?page=2").await;
    assert_eq!(
        listed(&second.body, "organizations"),
        vec!["Org 25", "Org 26", "Org 27", "Org 28", "Org 29", "Org 30"]
    );
    for q in ["initech", "INI-9", &initech.id] {
        let page = client.get(&format!("/organizations?q={q}")).await;
        assert_eq!(
            listed(&page.body, "organizations"),
            vec!["Initech"],
            "q={q}"
        );
    }
    let page = client.get("/organizations?q=org+1").await;
    assert_eq!(listed(&page.body, "organizations").len(), 10);
    let page = client.get("/organizations?q=nothing-like-this").await;
    assert!(listed(&page.body, "organizations").is_empty());
    says(&page, "No organization matches “nothing-like-this”");
}

async fn a_user_is_created_with_or_without_an_external_id(app: TestApp) {
    let client = app.owner().await;
    let page = client
        .post(
            "/users",
            &[
                ("email", "Ada@Example.com"),
                ("first_name", "Ada"),
                ("last_name", "Lovelace"),
                ("external_id", "u-1"),
            ],
        )
        .await;
    assert_eq!(page.status, 303, "{}", page.body);
    let ada = user_by_email(&app, "ada@example.com").expect("stored lower-cased");
    assert!(ada.id.starts_with("user_"));
    assert_eq!(
        (ada.first_name.as_str(), ada.last_name.as_str()),
        ("Ada", "Lovelace")
    );
    assert_eq!(ada.external_id.as_deref(), Some("u-1"));
    assert_eq!(page.location, Some(format!("/users/{}", ada.id)));
    for email in ["grace@example.com", "linus@example.com"] {
        let page = client.post("/users", &[("email", email)]).await;
        assert_eq!(page.status, 303, "{}", page.body);
        assert_eq!(user_by_email(&app, email).unwrap().external_id, None);
    }
    let list = client.get("/users").await;
    assert_eq!(
        listed(&list.body, "users"),
        vec!["Ada Lovelace", "grace@example.com", "linus@example.com"]
    );
    let shown = client.get(&format!("/users/{}", ada.id)).await;
    shown
        .assert_contains("<h1>Ada Lovelace</h1>")
        .assert_contains("Not a member of any organization.");
}

async fn invalid_users_are_refused_next_to_the_field(app: TestApp) {
    make_user(&app, "ada@example.com", "Ada", "", "u-1");
    let client = app.owner().await;
    for (email, external_id, field, message) in [
        (
            "not-an-email",
            "",
            "email",
            "Enter an email address like name@example.com.",
        ),
        ("", "", "email", "Enter an email address."),
        (
            "ADA@example.com",
            "",
            "email",
            "Another user already has this email address.",
        ),
        (
            "new@example.com",
            "u-1",
            "external_id",
            "Another object already has this external id.",
        ),
        (
            "new@example.com",
            "with space",
            "external_id",
            "An external id cannot contain spaces.",
        ),
    ] {
        let page = client
            .post(
                "/users",
                &[
                    ("email", email),
                    ("first_name", "New"),
                    ("external_id", external_id),
                ],
            )
            .await;
        assert_eq!(page.status, 422, "{email}/{external_id}: {}", page.body);
        assert_eq!(
            field_error(&page.body, field).as_deref(),
            Some(message),
            "{email}"
        );
        assert_eq!(fields_with_errors(&page.body), vec![field]);
        page.assert_contains("id=\"first_name\" name=\"first_name\" type=\"text\" value=\"New\"");
    }
    assert_eq!(count!(app, users), 1);
}

async fn a_user_can_be_edited(app: TestApp) {
    let ada = make_user(&app, "ada@example.com", "Ada", "", "u-1");
    make_user(&app, "grace@example.com", "Grace", "", "u-2");
    let client = app.owner().await;
    let path = format!("/users/{}", ada.id);
    let page = client
        .post(
            &path,
            &[
                ("email", "countess@example.com"),
                ("first_name", "Augusta Ada"),
                ("last_name", "King"),
                ("external_id", "u-10"),
            ],
        )
        .await;
    assert_eq!(page.status, 303, "{}", page.body);
    let stored = user_by_email(&app, "countess@example.com").unwrap();
    assert_eq!(stored.id, ada.id);
    assert_eq!(stored.display_name(), "Augusta Ada King");
    assert_eq!(stored.external_id.as_deref(), Some("u-10"));
    assert!(user_by_email(&app, "ada@example.com").is_none());

    for (email, external_id, field) in [
        ("grace@example.com", "u-10", "email"),
        ("countess@example.com", "u-2", "external_id"),
        ("broken", "u-10", "email"),
    ] {
        let page = client
            .post(&path, &[("email", email), ("external_id", external_id)])
            .await;
        assert_eq!(page.status, 422, "{email}/{external_id}");
        assert!(
            field_error(&page.body, field).is_some(),
            "{field}: {}",
            page.body
        );
    }
    let kept = user_by_email(&app, "countess@example.com").unwrap();
    assert_eq!(kept.external_id.as_deref(), Some("u-10"));
    assert_eq!(kept.first_name, "Augusta Ada");
    assert_eq!(audit_of(&app, "user.updated").len(), 1);
}

async fn users_are_searched_and_paged(app: TestApp) {
    for i in 1..=27 {
        make_user(&app, &format!("user{i:02}@example.com"), "", "", "");
    }
    let ada = make_user(&app, "ada@analytical.example", "Ada", "Lovelace", "ext-ada");
    let client = app.owner().await;
    let first = client.get("/users").await;
    let shown = listed(&first.body, "users");
    assert_eq!(shown.len(), 25);
    assert_eq!(shown[0], "Ada Lovelace");
    first.assert_contains("1–25 of 28 users · page 1 of 2");
    let second = client.get("/users?page=2").await;
    assert_eq!(
        listed(&second.body, "users"),
        vec![
            "user25@example.com",
            "user26@example.com",
            "user27@example.com"
        ]
    );
    for q in ["lovelace", "ADA", "analytical", "ext-ada", &ada.id] {
        let page = client.get(&format!("/users?q={q}")).await;
        assert_eq!(listed(&page.body, "users"), vec!["Ada Lovelace"], "q={q}");
    }
    let page = client.get("/users?q=user1").await;
    assert_eq!(listed(&page.body, "users").len(), 10);
    let page = client.get("/users?q=%25").await;
    assert!(
        listed(&page.body, "users").is_empty(),
        "% is not a wildcard"
    );
}

async fn deleting_an_organization_removes_its_memberships_and_flag_targets(app: TestApp) {
    make_flag(&app, "Checkout", "checkout", "");
    let acme = make_org(&app, "Acme", "");
    let globex = make_org(&app, "Globex", "");
    let ada = make_user(&app, "ada@example.com", "Ada", "", "");
    set_rule(
        &app,
        "checkout",
        "staging",
        Mode::Some,
        &[&acme.id, &globex.id, &ada.id],
    );
    set_rule(&app, "checkout", "production", Mode::Some, &[&acme.id]);
    let client = app.owner().await;
    client
        .post(
            &format!("/organizations/{}/members", acme.id),
            &[("user", "ada@example.com")],
        )
        .await;
    client
        .post(
            &format!("/organizations/{}/members", globex.id),
            &[("user", "ada@example.com")],
        )
        .await;
    assert_eq!(count!(app, memberships), 2);

    let page = client
        .post(&format!("/organizations/{}/delete", acme.id), &[])
        .await;
    assert_eq!(page.status, 303, "{}", page.body);
    assert_eq!(page.location.as_deref(), Some("/organizations"));
    assert_eq!(count!(app, organizations), 1);
    assert!(members(&app, &acme.id).is_empty());
    assert_eq!(members(&app, &globex.id), vec![ada.id.clone()]);
    assert!(user_by_email(&app, "ada@example.com").is_some());
    let mut left = vec![globex.id.to_string(), ada.id.to_string()];
    left.sort();
    assert_eq!(targets(&app, "checkout", "staging"), left);
    assert!(targets(&app, "checkout", "production").is_empty());
    assert_eq!(rule(&app, "checkout", "production").mode, "some");
    assert_eq!(
        client
            .get(&format!("/organizations/{}", acme.id))
            .await
            .status,
        404
    );
    let deleted = audit_of(&app, "organization.deleted");
    assert_eq!(deleted.len(), 1);
    assert_eq!(json(&deleted[0].before_state)["name"], "Acme");
}

async fn deleting_a_user_removes_their_memberships_and_flag_targets(app: TestApp) {
    make_flag(&app, "Checkout", "checkout", "");
    let acme = make_org(&app, "Acme", "");
    let ada = make_user(&app, "ada@example.com", "Ada", "", "");
    let grace = make_user(&app, "grace@example.com", "Grace", "", "");
    set_rule(
        &app,
        "checkout",
        "staging",
        Mode::Some,
        &[&acme.id, &ada.id, &grace.id],
    );
    let client = app.owner().await;
    for email in ["ada@example.com", "grace@example.com"] {
        let page = client
            .post(
                &format!("/organizations/{}/members", acme.id),
                &[("user", email)],
            )
            .await;
        assert_eq!(page.status, 303);
    }
    let page = client.post(&format!("/users/{}/delete", ada.id), &[]).await;
    assert_eq!(page.status, 303, "{}", page.body);
    assert_eq!(page.location.as_deref(), Some("/users"));
    assert!(user_by_email(&app, "ada@example.com").is_none());
    assert_eq!(members(&app, &acme.id), vec![grace.id.clone()]);
    let mut left = vec![acme.id.to_string(), grace.id.to_string()];
    left.sort();
    assert_eq!(targets(&app, "checkout", "staging"), left);
    assert_eq!(client.get(&format!("/users/{}", ada.id)).await.status, 404);
    assert_eq!(audit_of(&app, "user.deleted").len(), 1);
}

async fn members_are_added_by_email_id_or_external_id(app: TestApp) {
    let acme = make_org(&app, "Acme", "");
    let ada = make_user(&app, "ada@example.com", "Ada", "Lovelace", "");
    let grace = make_user(&app, "grace@example.com", "Grace", "Hopper", "");
    let linus = make_user(&app, "linus@example.com", "Linus", "", "crm-77");
    let client = app.owner().await;
    let path = format!("/organizations/{}/members", acme.id);
    for key in [" ADA@example.com ", grace.id.as_str(), "crm-77"] {
        let page = client.post(&path, &[("user", key)]).await;
        assert_eq!(page.status, 303, "{key}: {}", page.body);
        assert_eq!(
            page.location,
            Some(format!("/organizations/{}", acme.id)),
            "{key}"
        );
    }
    let mut all = vec![
        ada.id.to_string(),
        grace.id.to_string(),
        linus.id.to_string(),
    ];
    all.sort();
    assert_eq!(members(&app, &acme.id), all);

    let shown = client.get(&format!("/organizations/{}", acme.id)).await;
    shown
        .assert_contains("Members <span class=\"muted\">(3)</span>")
        .assert_contains("Ada Lovelace")
        .assert_contains("Grace Hopper")
        .assert_contains("aria-label=\"Remove linus@example.com from Acme\"");
    let user_page = client.get(&format!("/users/{}", linus.id)).await;
    user_page.assert_contains(&format!("href=\"/organizations/{}\">Acme</a>", acme.id));
    let list = client.get("/organizations").await;
    assert!(list.body.contains("<td>3</td>"), "member count in the list");
    assert_eq!(audit_of(&app, "membership.added").len(), 3);
}

async fn an_unknown_or_existing_member_is_refused_with_a_message(app: TestApp) {
    let acme = make_org(&app, "Acme", "");
    make_user(&app, "ada@example.com", "Ada", "", "");
    let client = app.owner().await;
    let path = format!("/organizations/{}/members", acme.id);
    let page = client.post(&path, &[("user", "nobody@example.com")]).await;
    assert_eq!(page.status, 422);
    assert_eq!(
        field_error(&page.body, "user").as_deref(),
        Some("No user has this email, id or external id.")
    );
    page.assert_contains("value=\"nobody@example.com\"");
    assert_eq!(count!(app, memberships), 0);

    assert_eq!(
        client
            .post(&path, &[("user", "ada@example.com")])
            .await
            .status,
        303
    );
    let page = client.post(&path, &[("user", "ada@example.com")]).await;
    assert_eq!(page.status, 422);
    assert_eq!(
        field_error(&page.body, "user").as_deref(),
        Some("ada@example.com is already a member of Acme.")
    );
    assert_eq!(count!(app, memberships), 1);
    let page = client
        .post(
            "/organizations/org_01NOSUCHORG000000000000000/members",
            &[("user", "ada@example.com")],
        )
        .await;
    assert_eq!(page.status, 404);
}

async fn a_membership_is_removed_from_the_organization_or_the_user_page(app: TestApp) {
    let acme = make_org(&app, "Acme", "");
    let globex = make_org(&app, "Globex", "");
    let ada = make_user(&app, "ada@example.com", "Ada", "", "");
    let client = app.owner().await;
    for org in [&acme, &globex] {
        client
            .post(
                &format!("/organizations/{}/members", org.id),
                &[("user", "ada@example.com")],
            )
            .await;
    }
    let user_page = client.get(&format!("/users/{}", ada.id)).await;
    user_page.assert_contains("Organizations <span class=\"muted\">(2)</span>");

    // From the organization's page: back to the organization.
    let page = client
        .post(
            &format!("/organizations/{}/members/{}/remove", acme.id, ada.id),
            &[],
        )
        .await;
    assert_eq!(page.status, 303);
    assert_eq!(page.location, Some(format!("/organizations/{}", acme.id)));
    assert!(members(&app, &acme.id).is_empty());
    assert_eq!(members(&app, &globex.id), vec![ada.id.clone()]);

    // From the user's page: back to the user.
    let page = client
        .post(
            &format!("/organizations/{}/members/{}/remove", globex.id, ada.id),
            &[("return_to", "user")],
        )
        .await;
    assert_eq!(page.status, 303);
    assert_eq!(page.location, Some(format!("/users/{}", ada.id)));
    assert_eq!(count!(app, memberships), 0);
    let user_page = client.get(&format!("/users/{}", ada.id)).await;
    user_page.assert_contains("Not a member of any organization.");

    // Removing it again: there is nothing to remove.
    let page = client
        .post(
            &format!("/organizations/{}/members/{}/remove", globex.id, ada.id),
            &[],
        )
        .await;
    assert_eq!(page.status, 404);
    assert_eq!(audit_of(&app, "membership.removed").len(), 2);
}

on_both_backends!(
    an_organization_is_created_with_or_without_an_external_id,
    invalid_organizations_are_refused_next_to_the_field,
    an_organization_can_be_edited,
    organizations_are_searched_and_paged,
    a_user_is_created_with_or_without_an_external_id,
    invalid_users_are_refused_next_to_the_field,
    a_user_can_be_edited,
    users_are_searched_and_paged,
    deleting_an_organization_removes_its_memberships_and_flag_targets,
    deleting_a_user_removes_their_memberships_and_flag_targets,
    members_are_added_by_email_id_or_external_id,
    an_unknown_or_existing_member_is_refused_with_a_message,
    a_membership_is_removed_from_the_organization_or_the_user_page,
);
