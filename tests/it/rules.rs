//! The rule editor (None / Some / All with targets), the enable toggle,
//! "Edit in X", confirmation in Production, and the audit trail of it all.

use crate::common::{Client, Page, TestApp};
use crate::support::*;
use flagpole::admins::Role;
use flagpole::evaluation::Mode;

const EDITOR: &str = "/flags/checkout/environments/staging";
const PRODUCTION_EDITOR: &str = "/flags/checkout/environments/production";

/// Posts the rule editor's form: `fields` plus any number of `add`/`remove` values.
async fn edit(client: &Client, path: &str, fields: &[(&str, &str)], add: &[&str]) -> Page {
    let mut all: Vec<(&str, &str)> = fields.to_vec();
    all.extend(add.iter().map(|id| ("add", *id)));
    client.post(path, &all).await
}

async fn saving_some_with_an_organization_and_a_user_in_staging_writes_mode_and_targets(
    app: TestApp,
) {
    make_flag(&app, "Checkout", "checkout", "");
    let acme = make_org(&app, "Acme", "acme-1");
    let ada = make_user(&app, "ada@example.com", "Ada", "Lovelace", "");
    let client = app.owner().await;

    let page = client.get(EDITOR).await;
    assert_eq!(page.status, 200);
    page.assert_contains("<label for=\"mode-none\">None</label>")
        .assert_contains("<label for=\"mode-some\">Some</label>")
        .assert_contains("<label for=\"mode-all\">All</label>")
        .assert_contains("id=\"target-search\" type=\"search\"")
        .assert_contains("No users or organizations are targeted yet");
    assert_eq!(checked_mode(&page.body).as_deref(), Some("none"));
    assert_eq!(hidden_values(&page.body, "version"), vec!["1"]);

    let page = edit(
        &client,
        EDITOR,
        &[("mode", "some"), ("version", "1"), ("op", "save")],
        &[&acme.id, &ada.id],
    )
    .await;
    assert_eq!(page.status, 303, "{}", page.body);
    assert_eq!(page.location.as_deref(), Some("/flags/checkout"));

    let rule = rule(&app, "checkout", "staging");
    assert_eq!(rule.mode, "some");
    assert!(!rule.enabled, "saving a rule does not turn the flag on");
    assert_eq!(rule.version, 2);
    assert_eq!(rule.updated_by.as_deref(), Some("owner@example.com"));
    let mut expected = vec![acme.id.to_string(), ada.id.to_string()];
    expected.sort();
    assert_eq!(targets(&app, "checkout", "staging"), expected);
    // Production is a separate rule and is untouched.
    let production = crate::support::rule(&app, "checkout", "production");
    assert_eq!((production.mode.as_str(), production.version), ("none", 1));
    assert!(targets(&app, "checkout", "production").is_empty());

    let shown = client.get("/flags/checkout").await;
    says(
        &shown,
        "Saved the rule of Checkout in Staging: Some. The flag is off (turn it on to apply the rule).",
    );
    let page = client.get(EDITOR).await;
    assert_eq!(checked_mode(&page.body).as_deref(), Some("some"));
    page.assert_contains("<span class=\"target-label\">Acme</span>")
        .assert_contains("<span class=\"target-label\">Ada Lovelace</span>");
}

async fn production_asks_for_confirmation_before_saving_a_rule(app: TestApp) {
    make_flag(&app, "Checkout", "checkout", "");
    let acme = make_org(&app, "Acme", "");
    let client = app.owner().await;

    let page = edit(
        &client,
        PRODUCTION_EDITOR,
        &[("mode", "some"), ("version", "1"), ("op", "save")],
        &[&acme.id],
    )
    .await;
    assert_eq!(page.status, 200, "{}", page.body);
    page.assert_contains("You are changing Production.")
        .assert_contains("name=\"op\" value=\"confirm\"")
        .assert_contains("Confirm and save in Production");
    // The draft is carried in the form, and nothing is saved yet.
    assert_eq!(hidden_values(&page.body, "add"), vec![acme.id.clone()]);
    assert_eq!(checked_mode(&page.body).as_deref(), Some("some"));
    let rule = rule(&app, "checkout", "production");
    assert_eq!((rule.mode.as_str(), rule.version), ("none", 1));
    assert!(targets(&app, "checkout", "production").is_empty());
    assert!(audit_of(&app, "rule.updated").is_empty());

    let page = edit(
        &client,
        PRODUCTION_EDITOR,
        &[("mode", "some"), ("version", "1"), ("op", "confirm")],
        &[&acme.id],
    )
    .await;
    assert_eq!(page.status, 303, "{}", page.body);
    let rule = crate::support::rule(&app, "checkout", "production");
    assert_eq!((rule.mode.as_str(), rule.version), ("some", 2));
    assert_eq!(targets(&app, "checkout", "production"), vec![acme.id]);

    // Staging saves at once: it does not ask.
    let page = edit(
        &client,
        EDITOR,
        &[("mode", "all"), ("version", "1"), ("op", "save")],
        &[],
    )
    .await;
    assert_eq!(page.status, 303);
    assert_eq!(
        crate::support::rule(&app, "checkout", "staging").mode,
        "all"
    );
}

async fn targets_survive_switching_from_some_to_all_and_back(app: TestApp) {
    make_flag(&app, "Checkout", "checkout", "");
    let acme = make_org(&app, "Acme", "");
    let ada = make_user(&app, "ada@example.com", "Ada", "", "");
    let client = app.owner().await;
    let save = |mode: &'static str, version: &'static str| {
        let client = &client;
        async move {
            let page = edit(
                client,
                EDITOR,
                &[("mode", mode), ("version", version), ("op", "save")],
                &[],
            )
            .await;
            assert_eq!(page.status, 303, "{}", page.body);
        }
    };
    let page = edit(
        &client,
        EDITOR,
        &[("mode", "some"), ("version", "1"), ("op", "save")],
        &[&acme.id, &ada.id],
    )
    .await;
    assert_eq!(page.status, 303);
    let mut both = vec![acme.id.to_string(), ada.id.to_string()];
    both.sort();

    save("all", "2").await;
    assert_eq!(rule(&app, "checkout", "staging").mode, "all");
    assert_eq!(targets(&app, "checkout", "staging"), both);
    let shown = client.get("/flags/checkout").await;
    let staging = card(&shown.body, "Staging").unwrap();
    assert!(
        staging.contains("Every user gets this flag when it is on."),
        "{staging}"
    );
    assert!(
        staging.contains("(2 saved targets kept for Some)"),
        "{staging}"
    );
    let editor = client.get(EDITOR).await;
    editor.assert_contains("They are kept while the rule is None or All.");

    save("none", "3").await;
    assert_eq!(targets(&app, "checkout", "staging"), both);
    save("some", "4").await;
    let rule = rule(&app, "checkout", "staging");
    assert_eq!((rule.mode.as_str(), rule.version), ("some", 5));
    assert_eq!(targets(&app, "checkout", "staging"), both);
}

async fn a_save_based_on_a_stale_version_is_refused_and_overwrites_nothing(app: TestApp) {
    make_flag(&app, "Checkout", "checkout", "");
    let acme = make_org(&app, "Acme", "");
    let globex = make_org(&app, "Globex", "");
    let alice = app.owner().await;
    let bob = app.signed_in("bob@example.com", Role::Editor).await;

    // Both open the editor at version 1.
    for client in [&alice, &bob] {
        let page = client.get(EDITOR).await;
        assert_eq!(hidden_values(&page.body, "version"), vec!["1"]);
    }
    let page = edit(
        &alice,
        EDITOR,
        &[("mode", "some"), ("version", "1"), ("op", "save")],
        &[&acme.id],
    )
    .await;
    assert_eq!(page.status, 303);

    let page = edit(
        &bob,
        EDITOR,
        &[("mode", "all"), ("version", "1"), ("op", "save")],
        &[&globex.id],
    )
    .await;
    assert!(page.status < 500, "{}", page.body);
    assert_ne!(page.status, 303, "a stale save must not succeed");
    says(
        &page,
        "Someone else changed this rule after you opened it. Nothing was saved",
    );
    // The page now shows the rule as it is, with the new version to retry from.
    assert_eq!(checked_mode(&page.body).as_deref(), Some("some"));
    assert_eq!(hidden_values(&page.body, "version"), vec!["2"]);
    assert!(hidden_values(&page.body, "add").is_empty());

    let rule = rule(&app, "checkout", "staging");
    assert_eq!(rule.mode, "some");
    assert_eq!(rule.version, 2);
    assert_eq!(rule.updated_by.as_deref(), Some("owner@example.com"));
    assert_eq!(targets(&app, "checkout", "staging"), vec![acme.id]);
    let updates = audit_of(&app, "rule.updated");
    assert_eq!(updates.len(), 1);
    assert_eq!(updates[0].actor, "owner@example.com");

    // The same change made from the current version goes through.
    let page = edit(
        &bob,
        EDITOR,
        &[("mode", "all"), ("version", "2"), ("op", "save")],
        &[],
    )
    .await;
    assert_eq!(page.status, 303);
    let rule = crate::support::rule(&app, "checkout", "staging");
    assert_eq!(rule.mode, "all");
    assert_eq!(rule.updated_by.as_deref(), Some("bob@example.com"));
}

async fn the_target_search_finds_users_and_organizations_by_name_email_or_external_id(
    app: TestApp,
) {
    make_flag(&app, "Checkout", "checkout", "");
    let ada = make_user(&app, "ada@analytical.example", "Ada", "Lovelace", "u-42");
    let grace = make_user(&app, "grace@navy.example", "Grace", "Hopper", "");
    let acme = make_org(&app, "Acme Corp", "acme-7");
    let globex = make_org(&app, "Globex", "");
    let client = app.owner().await;

    let search = |q: &'static str| {
        let client = &client;
        async move {
            let page = client
                .post(
                    EDITOR,
                    &[
                        ("mode", "none"),
                        ("version", "1"),
                        ("op", "search"),
                        ("q", q),
                    ],
                )
                .await;
            assert_eq!(page.status, 200, "{}", page.body);
            let mut found = button_values(&page.body, "add_target");
            found.sort();
            (found, page)
        }
    };
    let cases: [(&str, Vec<&str>); 7] = [
        ("lovelace", vec![&ada.id]),
        ("GRACE", vec![&grace.id]),
        ("navy.example", vec![&grace.id]),
        ("u-42", vec![&ada.id]),
        ("acme", vec![&acme.id]),
        ("acme-7", vec![&acme.id]),
        ("example", vec![&ada.id, &grace.id]),
    ];
    for (q, expected) in cases {
        let (found, page) = search(q).await;
        let mut expected: Vec<String> = expected.into_iter().map(str::to_string).collect();
        expected.sort();
        assert_eq!(found, expected, "search {q:?}");
        page.assert_contains(&format!("type=\"search\" name=\"q\" value=\"{q}\""));
    }
    let (found, page) = search("glob").await;
    assert_eq!(found, vec![globex.id.clone()]);
    page.assert_contains("aria-label=\"Add Globex\"");
    let (found, page) = search("nobody-here").await;
    assert!(found.is_empty());
    says(&page, "Nobody matches “nobody-here”");

    // Searching saves nothing.
    let rule = rule(&app, "checkout", "staging");
    assert_eq!((rule.mode.as_str(), rule.version), ("none", 1));
    assert!(targets(&app, "checkout", "staging").is_empty());
}

async fn adding_from_the_results_is_a_draft_until_saved(app: TestApp) {
    make_flag(&app, "Checkout", "checkout", "");
    let ada = make_user(&app, "ada@example.com", "Ada", "Lovelace", "");
    let acme = make_org(&app, "Acme", "");
    let client = app.owner().await;

    // Clicking "Add" on a search result: the form is posted with add_target.
    let page = client
        .post(
            EDITOR,
            &[
                ("mode", "none"),
                ("version", "1"),
                ("q", "ada"),
                ("add_target", &ada.id),
            ],
        )
        .await;
    assert_eq!(page.status, 200, "{}", page.body);
    page.assert_contains("To add when you save")
        .assert_contains("Unsaved changes")
        .assert_contains("<span class=\"badge badge-ok\">Chosen</span>");
    assert_eq!(hidden_values(&page.body, "add"), vec![ada.id.clone()]);
    assert_eq!(
        checked_mode(&page.body).as_deref(),
        Some("some"),
        "adding someone selects Some"
    );
    assert!(targets(&app, "checkout", "staging").is_empty());

    // A second one, then undo the first.
    let page = edit(
        &client,
        EDITOR,
        &[("mode", "some"), ("version", "1"), ("add_target", &acme.id)],
        &[&ada.id],
    )
    .await;
    assert_eq!(
        hidden_values(&page.body, "add"),
        vec![ada.id.to_string(), acme.id.to_string()]
    );
    let page = edit(
        &client,
        EDITOR,
        &[("mode", "some"), ("version", "1"), ("undo_add", &ada.id)],
        &[&ada.id, &acme.id],
    )
    .await;
    assert_eq!(hidden_values(&page.body, "add"), vec![acme.id.clone()]);
    assert!(targets(&app, "checkout", "staging").is_empty());

    // Save what the form now carries.
    let page = edit(
        &client,
        EDITOR,
        &[("mode", "some"), ("version", "1"), ("op", "save")],
        &[&acme.id],
    )
    .await;
    assert_eq!(page.status, 303);
    assert_eq!(targets(&app, "checkout", "staging"), vec![acme.id]);
}

async fn removing_a_target_takes_effect_on_save_and_can_be_undone(app: TestApp) {
    make_flag(&app, "Checkout", "checkout", "");
    let ada = make_user(&app, "ada@example.com", "Ada", "Lovelace", "");
    let acme = make_org(&app, "Acme", "");
    set_rule(
        &app,
        "checkout",
        "staging",
        Mode::Some,
        &[&acme.id, &ada.id],
    );
    let client = app.owner().await;

    let page = client
        .post(
            EDITOR,
            &[
                ("mode", "some"),
                ("version", "2"),
                ("remove_target", &ada.id),
            ],
        )
        .await;
    assert_eq!(page.status, 200);
    assert_eq!(hidden_values(&page.body, "remove"), vec![ada.id.clone()]);
    page.assert_contains("target-row is-removed")
        .assert_contains("aria-label=\"Keep Ada Lovelace\"");
    assert_eq!(targets(&app, "checkout", "staging").len(), 2);

    let page = client
        .post(
            EDITOR,
            &[
                ("mode", "some"),
                ("version", "2"),
                ("remove", &ada.id),
                ("undo_remove", &ada.id),
            ],
        )
        .await;
    assert!(hidden_values(&page.body, "remove").is_empty());
    assert!(!page.body.contains("is-removed"));

    let page = client
        .post(
            EDITOR,
            &[
                ("mode", "some"),
                ("version", "2"),
                ("remove", &ada.id),
                ("op", "save"),
            ],
        )
        .await;
    assert_eq!(page.status, 303, "{}", page.body);
    assert_eq!(targets(&app, "checkout", "staging"), vec![acme.id.clone()]);
    let updates = audit_of(&app, "rule.updated");
    let last = json(&updates.last().unwrap().after_state);
    let removed = last["removed"]
        .as_str()
        .expect("the removed targets, named");
    assert!(removed.contains(ada.id.as_str()), "{removed}");
    assert!(removed.contains("Ada Lovelace"), "{removed}");
    assert!(!removed.contains(acme.id.as_str()), "{removed}");
    assert_eq!(last["targets"], 1);
}

async fn many_targets_are_listed_twenty_per_page(app: TestApp) {
    make_flag(&app, "Checkout", "checkout", "");
    let orgs: Vec<String> = (1..=45)
        .map(|i| make_org(&app, &format!("Org {i:02}"), "").id.to_string())
        .collect();
    let client = app.owner().await;
    let ids: Vec<&str> = orgs.iter().map(String::as_str).collect();
    let page = edit(
        &client,
        EDITOR,
        &[("mode", "some"), ("version", "1"), ("op", "save")],
        &ids,
    )
    .await;
    assert_eq!(page.status, 303, "{}", page.body);
    assert_eq!(targets(&app, "checkout", "staging").len(), 45);

    let first = client.get(EDITOR).await;
    first
        .assert_contains("Page 1 of 3")
        .assert_contains("<span class=\"muted\">(45)</span>");
    let mut seen: Vec<String> = button_values(&first.body, "remove_target");
    assert_eq!(seen.len(), 20);
    assert_eq!(button_values(&first.body, "goto_page"), vec!["2"]);

    let goto = |page: &'static str| {
        let client = &client;
        async move {
            client
                .post(
                    EDITOR,
                    &[("mode", "some"), ("version", "2"), ("goto_page", page)],
                )
                .await
        }
    };
    let second = goto("2").await;
    second.assert_contains("Page 2 of 3");
    assert_eq!(button_values(&second.body, "goto_page"), vec!["1", "3"]);
    let on_second = button_values(&second.body, "remove_target");
    assert_eq!(on_second.len(), 20);
    let third = goto("3").await;
    third.assert_contains("Page 3 of 3");
    let on_third = button_values(&third.body, "remove_target");
    assert_eq!(on_third.len(), 5);
    // A page past the end shows the last one.
    let beyond = goto("99").await;
    beyond.assert_contains("Page 3 of 3");
    assert_eq!(button_values(&beyond.body, "remove_target"), on_third);
    seen.extend(on_second);
    seen.extend(on_third);
    seen.sort();
    let mut all = orgs.clone();
    all.sort();
    assert_eq!(seen, all, "the three pages show every target once");

    // A removal marked on page 1 is carried while paging and saved at the end.
    let page = client
        .post(
            EDITOR,
            &[
                ("mode", "some"),
                ("version", "2"),
                ("remove", &orgs[0]),
                ("goto_page", "3"),
            ],
        )
        .await;
    assert_eq!(hidden_values(&page.body, "remove"), vec![orgs[0].clone()]);
    let page = client
        .post(
            EDITOR,
            &[
                ("mode", "some"),
                ("version", "2"),
                ("remove", &orgs[0]),
                ("op", "save"),
            ],
        )
        .await;
    assert_eq!(page.status, 303);
    assert_eq!(targets(&app, "checkout", "staging").len(), 44);

    let shown = client.get("/flags/checkout").await;
    let staging = card(&shown.body, "Staging").unwrap();
    assert!(staging.contains("44 organizations, 0 users"), "{staging}");
    assert!(staging.contains("and 41 more"), "{staging}");
    let list = client.get("/flags").await;
    assert!(flag_row(&list.body, "checkout")
        .unwrap()
        .contains("44 targets"));
}

async fn the_editor_lists_organizations_before_users(app: TestApp) {
    make_flag(&app, "Checkout", "checkout", "");
    let ada = make_user(&app, "ada@example.com", "Ada", "Lovelace", "");
    let acme = make_org(&app, "Acme", "");
    set_rule(
        &app,
        "checkout",
        "staging",
        Mode::Some,
        &[&ada.id, &acme.id],
    );
    let client = app.owner().await;
    let page = client.get(EDITOR).await;
    assert_eq!(
        button_values(&page.body, "remove_target"),
        vec![acme.id.to_string(), ada.id.to_string()]
    );
}

async fn adding_an_unknown_target_is_refused_with_a_message(app: TestApp) {
    make_flag(&app, "Checkout", "checkout", "");
    let client = app.owner().await;
    let page = edit(
        &client,
        EDITOR,
        &[("mode", "some"), ("version", "1"), ("op", "save")],
        &["user_01NOSUCHUSER00000000000000"],
    )
    .await;
    assert!(page.status < 500);
    assert_ne!(page.status, 303);
    says(&page, "is neither a user nor an organization that exists.");
    let rule = rule(&app, "checkout", "staging");
    assert_eq!((rule.mode.as_str(), rule.version), ("none", 1));
    assert!(targets(&app, "checkout", "staging").is_empty());
}

async fn the_toggle_turns_a_flag_on_and_off_in_staging_at_once(app: TestApp) {
    make_flag(&app, "Checkout", "checkout", "");
    let client = app.owner().await;
    let toggle = "/flags/checkout/environments/staging/toggle";
    let page = client
        .post(
            toggle,
            &[
                ("enabled", "true"),
                ("version", "1"),
                ("return_to", "/flags"),
            ],
        )
        .await;
    assert_eq!(page.status, 303, "{}", page.body);
    assert_eq!(page.location.as_deref(), Some("/flags"));
    let rule = rule(&app, "checkout", "staging");
    assert!(rule.enabled);
    assert_eq!(rule.version, 2);
    assert!(!crate::support::rule(&app, "checkout", "production").enabled);
    let list = client.get("/flags").await;
    says(&list, "Checkout is now on in Staging.");
    let row = flag_row(&list.body, "checkout").unwrap();
    assert!(row.contains("aria-checked=\"true\""), "{row}");
    assert!(row.contains("name=\"enabled\" value=\"false\""), "{row}");
    assert!(row.contains("name=\"version\" value=\"2\""), "{row}");

    let page = client
        .post(
            toggle,
            &[
                ("enabled", "false"),
                ("version", "2"),
                ("return_to", "/flags/checkout"),
            ],
        )
        .await;
    assert_eq!(page.location.as_deref(), Some("/flags/checkout"));
    assert!(!crate::support::rule(&app, "checkout", "staging").enabled);

    // return_to never leads off the site.
    let page = client
        .post(
            toggle,
            &[
                ("enabled", "true"),
                ("version", "3"),
                ("return_to", "//evil.example/phish"),
            ],
        )
        .await;
    assert_eq!(page.location.as_deref(), Some("/flags/checkout"));
    assert!(crate::support::rule(&app, "checkout", "staging").enabled);
}

async fn turning_a_flag_on_in_production_asks_for_confirmation(app: TestApp) {
    make_flag(&app, "Checkout", "checkout", "");
    let client = app.owner().await;
    let toggle = "/flags/checkout/environments/production/toggle";
    let page = client
        .post(
            toggle,
            &[
                ("enabled", "true"),
                ("version", "1"),
                ("return_to", "/flags"),
            ],
        )
        .await;
    assert_eq!(page.status, 200, "{}", page.body);
    page.assert_contains("Turn Checkout on in Production?")
        .assert_contains("<input type=\"hidden\" name=\"confirmed\" value=\"true\">")
        .assert_contains(">Turn on in Production</button>");
    assert_eq!(hidden_values(&page.body, "version"), vec!["1"]);
    let rule = rule(&app, "checkout", "production");
    assert!(!rule.enabled);
    assert_eq!(rule.version, 1);

    let page = client
        .post(
            toggle,
            &[
                ("enabled", "true"),
                ("version", "1"),
                ("return_to", "/flags"),
                ("confirmed", "true"),
            ],
        )
        .await;
    assert_eq!(page.status, 303);
    assert!(crate::support::rule(&app, "checkout", "production").enabled);

    // Turning it off asks too.
    let page = client
        .post(toggle, &[("enabled", "false"), ("version", "2")])
        .await;
    assert_eq!(page.status, 200);
    page.assert_contains("Turn Checkout off in Production?");
    assert!(crate::support::rule(&app, "checkout", "production").enabled);
}

async fn a_toggle_from_a_stale_page_changes_nothing(app: TestApp) {
    make_flag(&app, "Checkout", "checkout", "");
    set_enabled(&app, "checkout", "staging", true);
    let client = app.owner().await;
    // The page was opened at version 1, before someone turned the flag on.
    let page = client
        .post(
            "/flags/checkout/environments/staging/toggle",
            &[
                ("enabled", "true"),
                ("version", "1"),
                ("return_to", "/flags"),
            ],
        )
        .await;
    assert_eq!(page.status, 303);
    let rule = rule(&app, "checkout", "staging");
    assert!(rule.enabled);
    assert_eq!(rule.version, 2);
    assert_eq!(rule.updated_by.as_deref(), Some("test"));
    let list = client.get("/flags").await;
    says(&list, "Someone else changed this rule after you opened it.");
    assert_eq!(audit_of(&app, "rule.enabled").len(), 1);
}

async fn edit_in_switches_the_active_environment_and_opens_its_editor(app: TestApp) {
    make_flag(&app, "Checkout", "checkout", "");
    let client = app.owner().await;
    let page = client.get("/flags/checkout").await;
    assert_eq!(active_environment(&page.body).as_deref(), Some("staging"));
    assert!(card(&page.body, "Staging").unwrap().contains(">Edit</a>"));

    let page = client
        .post("/flags/checkout/environments/production/edit-in", &[])
        .await;
    assert_eq!(page.status, 303);
    assert_eq!(page.location.as_deref(), Some(PRODUCTION_EDITOR));
    let editor = client.get(PRODUCTION_EDITOR).await;
    assert_eq!(editor.status, 200);
    says(
        &editor,
        "Edit rule in <span class=\"env-pill env-pill-large env-red\">Production</span>",
    );
    assert_eq!(
        active_environment(&editor.body).as_deref(),
        Some("production")
    );

    let page = client.get("/flags/checkout").await;
    assert_eq!(
        active_environment(&page.body).as_deref(),
        Some("production")
    );
    let production = card(&page.body, "Production").unwrap();
    assert!(production.contains("badge\">Active</span>"), "{production}");
    assert!(
        production.contains("href=\"/flags/checkout/environments/production\">Edit</a>"),
        "{production}"
    );
    let staging = card(&page.body, "Staging").unwrap();
    assert!(staging.contains("Edit in Staging</button>"), "{staging}");
    let list = client.get("/flags").await;
    list.assert_contains("Rule in Production");
}

async fn every_change_is_in_the_audit_log_with_actor_environment_before_and_after(app: TestApp) {
    make_flag(&app, "Checkout", "checkout", "");
    let acme = make_org(&app, "Acme", "");
    let ada = make_user(&app, "ada@example.com", "Ada", "", "");
    let staging = env(&app, "staging");
    let production = env(&app, "production");
    let client = app.owner().await;

    let page = edit(
        &client,
        EDITOR,
        &[("mode", "some"), ("version", "1"), ("op", "save")],
        &[&acme.id, &ada.id],
    )
    .await;
    assert_eq!(page.status, 303);
    let page = client
        .post(
            "/flags/checkout/environments/staging/toggle",
            &[("enabled", "true"), ("version", "2")],
        )
        .await;
    assert_eq!(page.status, 303);
    let page = client
        .post(
            "/flags/checkout/environments/production/toggle",
            &[("enabled", "true"), ("version", "1"), ("confirmed", "true")],
        )
        .await;
    assert_eq!(page.status, 303);

    let flag_id = flag(&app, "checkout").id;
    let events: Vec<_> = audit(&app)
        .into_iter()
        .filter(|e| e.action.starts_with("rule."))
        .collect();
    let actions: Vec<(&str, Option<&str>)> = events
        .iter()
        .map(|e| (e.action.as_str(), e.environment_id.as_deref()))
        .collect();
    assert_eq!(
        actions,
        vec![
            ("rule.updated", Some(staging.id.as_str())),
            ("rule.enabled", Some(staging.id.as_str())),
            ("rule.enabled", Some(production.id.as_str())),
        ]
    );
    for e in &events {
        assert_eq!(e.actor, "owner@example.com");
        assert_eq!(e.flag_id.as_deref(), Some(flag_id.as_str()));
        assert_eq!(e.object_label, "checkout");
        assert!(!e.created_at.as_str().is_empty());
    }
    let (before, after) = (json(&events[0].before_state), json(&events[0].after_state));
    assert_eq!(before["mode"], "none");
    assert_eq!(before["targets"], 0);
    assert_eq!(after["mode"], "some");
    assert_eq!(after["targets"], 2);
    let (before, after) = (json(&events[1].before_state), json(&events[1].after_state));
    assert_eq!(
        (&before["enabled"], &after["enabled"]),
        (&serde_json::json!(false), &serde_json::json!(true))
    );
    assert_eq!(after["mode"], "some");

    let shown = client.get("/flags/checkout").await;
    let history = &shown.body[shown.body.find("id=\"history-heading\"").unwrap()..];
    assert_eq!(history.matches("<strong>rule.enabled</strong>").count(), 2);
    assert_eq!(history.matches("<strong>rule.updated</strong>").count(), 1);
    assert!(history.contains("<strong>flag.created</strong>"));
    says(&shown, "mode: none → some; targets: 0 → 2");
    says(&shown, "enabled: false → true");
    assert!(history.contains("owner@example.com · "));
    assert!(history.contains(">Production</span>"));

    let log = client.get("/audit").await;
    assert_eq!(log.status, 200);
    assert_eq!(
        log.body
            .matches("<code class=\"small\">rule.enabled</code>")
            .count(),
        2
    );
    assert_eq!(
        log.body
            .matches("<code class=\"small\">rule.updated</code>")
            .count(),
        1
    );
    says(&log, "mode: none → some");
    let only_production = client.get("/audit?environment=production").await;
    assert_eq!(
        only_production
            .body
            .matches("<code class=\"small\">rule.")
            .count(),
        1
    );
    let by_actor = client.get("/audit?actor=nobody@example.com").await;
    by_actor.assert_contains("Nothing recorded yet");
}

on_both_backends!(
    saving_some_with_an_organization_and_a_user_in_staging_writes_mode_and_targets,
    production_asks_for_confirmation_before_saving_a_rule,
    targets_survive_switching_from_some_to_all_and_back,
    a_save_based_on_a_stale_version_is_refused_and_overwrites_nothing,
    the_target_search_finds_users_and_organizations_by_name_email_or_external_id,
    adding_from_the_results_is_a_draft_until_saved,
    removing_a_target_takes_effect_on_save_and_can_be_undone,
    many_targets_are_listed_twenty_per_page,
    the_editor_lists_organizations_before_users,
    adding_an_unknown_target_is_refused_with_a_message,
    the_toggle_turns_a_flag_on_and_off_in_staging_at_once,
    turning_a_flag_on_in_production_asks_for_confirmation,
    a_toggle_from_a_stale_page_changes_nothing,
    edit_in_switches_the_active_environment_and_opens_its_editor,
    every_change_is_in_the_audit_log_with_actor_environment_before_and_after,
    concurrent_saves_from_the_same_version_let_exactly_one_through,
);

async fn concurrent_saves_from_the_same_version_let_exactly_one_through(app: TestApp) {
    make_flag(&app, "Checkout", "checkout", "");
    let orgs: Vec<String> = (0..8)
        .map(|i| make_org(&app, &format!("Org {i}"), "").id.to_string())
        .collect();
    let mut clients = Vec::new();
    for i in 0..8 {
        clients.push(
            app.signed_in(&format!("editor{i}@example.com"), Role::Editor)
                .await,
        );
    }
    let mut tokens = Vec::new();
    for client in &clients {
        tokens.push(client.csrf().await);
    }
    let saves = clients
        .iter()
        .zip(&tokens)
        .zip(&orgs)
        .map(|((client, token), org)| async move {
            client
                .post_raw(
                    EDITOR,
                    &[
                        ("_csrf", token.as_str()),
                        ("mode", "some"),
                        ("version", "1"),
                        ("op", "save"),
                        ("add", org.as_str()),
                    ],
                )
                .await
        });
    let pages = futures_join_all(saves).await;
    let statuses: Vec<u16> = pages.iter().map(|p| p.status).collect();
    assert!(statuses.iter().all(|s| *s < 500), "{statuses:?}");
    assert_eq!(
        statuses.iter().filter(|s| **s == 303).count(),
        1,
        "exactly one save wins: {statuses:?}"
    );
    for page in pages.iter().filter(|p| p.status != 303) {
        says(page, "Someone else changed this rule after you opened it.");
    }
    let rule = rule(&app, "checkout", "staging");
    assert_eq!((rule.mode.as_str(), rule.version), ("some", 2));
    assert_eq!(targets(&app, "checkout", "staging").len(), 1);
    assert_eq!(audit_of(&app, "rule.updated").len(), 1);

    // The same for the switch: one of many concurrent toggles wins.
    let toggles = clients
        .iter()
        .zip(&tokens)
        .map(|(client, token)| async move {
            client
                .post_raw(
                    "/flags/checkout/environments/staging/toggle",
                    &[
                        ("_csrf", token.as_str()),
                        ("enabled", "true"),
                        ("version", "2"),
                    ],
                )
                .await
        });
    let pages = futures_join_all(toggles).await;
    assert!(
        pages.iter().all(|p| p.status == 303),
        "{:?}",
        pages.iter().map(|p| p.status).collect::<Vec<_>>()
    );
    let rule = crate::support::rule(&app, "checkout", "staging");
    assert!(rule.enabled);
    assert_eq!(rule.version, 3);
    assert_eq!(audit_of(&app, "rule.enabled").len(), 1);
}

/// Runs the futures together on this thread and returns their outputs in order.
async fn futures_join_all<F: std::future::Future>(
    futures: impl Iterator<Item = F>,
) -> Vec<F::Output> {
    let mut pending: Vec<_> = futures.map(|f| Some(Box::pin(f))).collect();
    let mut results: Vec<Option<F::Output>> = pending.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        for (slot, result) in pending.iter_mut().zip(results.iter_mut()) {
            if let Some(future) = slot {
                if let std::task::Poll::Ready(out) = future.as_mut().poll(cx) {
                    *result = Some(out);
                    *slot = None;
                }
            }
        }
        if pending.iter().all(Option::is_none) {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
    results.into_iter().map(|r| r.expect("finished")).collect()
}
