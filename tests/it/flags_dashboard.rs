//! Feature flags in the dashboard: creation, validation, the list and the cards.

use crate::common::TestApp;
use crate::support::*;
use diesel::prelude::*;
use flagpole::db::schema::rules;
use flagpole::evaluation::Mode;

async fn creating_a_flag_gives_it_a_none_rule_in_every_environment(app: TestApp) {
    let client = app.owner().await;
    let page = client
        .post(
            "/flags",
            &[
                ("name", "New checkout"),
                ("slug", "new-checkout"),
                ("description", "The one-page checkout"),
            ],
        )
        .await;
    assert_eq!(page.status, 303, "{}", page.body);
    assert_eq!(page.location.as_deref(), Some("/flags/new-checkout"));

    let mut conn = app.conn();
    let modes: Vec<(String, bool)> = rules::table
        .select((rules::mode, rules::enabled))
        .load(&mut *conn)
        .unwrap();
    assert_eq!(
        modes,
        vec![("none".to_string(), false), ("none".to_string(), false)]
    );
    drop(conn);
    let stored = flag(&app, "new-checkout");
    assert_eq!(stored.name, "New checkout");
    assert_eq!(stored.description, "The one-page checkout");
    assert!(stored.id.starts_with("flag_"), "{}", stored.id);
    assert!(!stored.archived);

    let page = client.get("/flags/new-checkout").await;
    assert_eq!(page.status, 200);
    page.assert_contains("Staging")
        .assert_contains("Production");
    page.assert_contains("Edit in Production");
    page.assert_contains("Created New checkout.");
}

async fn the_create_form_offers_name_slug_and_description(app: TestApp) {
    let client = app.owner().await;
    let list = client.get("/flags").await;
    assert_eq!(list.status, 200);
    list.assert_contains("href=\"/flags/new\">Create feature flag</a>")
        .assert_contains("No feature flags yet");
    let form = client.get("/flags/new").await;
    assert_eq!(form.status, 200);
    form.assert_contains("<label for=\"name\">Name</label>")
        .assert_contains("<label for=\"slug\">Slug</label>")
        .assert_contains("<label for=\"description\">Description</label>")
        .assert_contains(
            "<button type=\"submit\" class=\"btn btn-primary\">Create feature flag</button>",
        );
}

async fn a_flag_without_a_name_is_refused_and_nothing_is_saved(app: TestApp) {
    let client = app.owner().await;
    let events = count!(app, audit_events);
    let page = client
        .post(
            "/flags",
            &[
                ("name", "   "),
                ("slug", "no-name"),
                ("description", "kept"),
            ],
        )
        .await;
    assert_eq!(page.status, 422, "{}", page.body);
    assert_eq!(
        field_error(&page.body, "name").as_deref(),
        Some("Enter a name.")
    );
    assert_eq!(fields_with_errors(&page.body), vec!["name"]);
    page.assert_contains("value=\"no-name\"")
        .assert_contains(">kept</textarea>");
    assert_eq!(count!(app, flags), 0);
    assert_eq!(count!(app, rules), 0);
    assert_eq!(count!(app, audit_events), events);
}

async fn a_slug_with_capitals_or_spaces_is_refused_next_to_the_slug_field(app: TestApp) {
    let client = app.owner().await;
    for bad in ["Bad Slug", "UPPER", "-leading", "emoji-🚀", &"a".repeat(65)] {
        let page = client
            .post("/flags", &[("name", "Good name"), ("slug", bad)])
            .await;
        assert_eq!(page.status, 422, "slug {bad:?}: {}", page.body);
        assert!(
            field_error(&page.body, "slug").is_some(),
            "slug {bad:?} has an error next to the slug field: {}",
            page.body
        );
        assert_eq!(fields_with_errors(&page.body), vec!["slug"], "slug {bad:?}");
        page.assert_contains("value=\"Good name\"");
    }
    let page = client
        .post("/flags", &[("name", "Good name"), ("slug", "Bad Slug")])
        .await;
    assert_eq!(
        field_error(&page.body, "slug").as_deref(),
        Some("Use only lowercase letters, digits and hyphens (-).")
    );
    page.assert_contains("aria-invalid=\"true\"");
    assert_eq!(count!(app, flags), 0);
    assert_eq!(count!(app, rules), 0);
}

async fn a_duplicate_slug_is_refused_and_the_first_flag_is_untouched(app: TestApp) {
    let client = app.owner().await;
    let first = client
        .post("/flags", &[("name", "Original"), ("slug", "checkout")])
        .await;
    assert_eq!(first.status, 303);
    let page = client
        .post(
            "/flags",
            &[("name", "Impostor"), ("slug", "checkout"), ("tags", "beta")],
        )
        .await;
    assert_eq!(page.status, 422, "{}", page.body);
    assert_eq!(
        field_error(&page.body, "slug").as_deref(),
        Some("A flag with this slug already exists. Choose another slug.")
    );
    page.assert_contains("value=\"Impostor\"");
    assert_eq!(count!(app, flags), 1);
    assert_eq!(count!(app, rules), 2);
    assert_eq!(count!(app, flag_tags), 0);
    assert_eq!(flag(&app, "checkout").name, "Original");
    assert_eq!(audit_of(&app, "flag.created").len(), 1);
}

async fn an_empty_slug_is_suggested_from_the_name(app: TestApp) {
    let client = app.owner().await;
    let page = client
        .post("/flags", &[("name", "New Checkout (beta)"), ("slug", "")])
        .await;
    assert_eq!(page.status, 303, "{}", page.body);
    assert_eq!(page.location.as_deref(), Some("/flags/new-checkout-beta"));
    assert_eq!(flag(&app, "new-checkout-beta").name, "New Checkout (beta)");

    // A suggestion that collides is reported on the slug, with the suggestion kept.
    let page = client
        .post("/flags", &[("name", "new checkout beta"), ("slug", " ")])
        .await;
    assert_eq!(page.status, 422);
    assert!(field_error(&page.body, "slug")
        .unwrap()
        .contains("already exists"));
    page.assert_contains("value=\"new-checkout-beta\"");
    assert_eq!(count!(app, flags), 1);
}

async fn the_list_shows_each_flags_mode_targets_and_switch_in_the_active_environment(app: TestApp) {
    make_flag(&app, "Checkout", "checkout", "");
    make_flag(&app, "Dark mode", "dark-mode", "");
    let acme = make_org(&app, "Acme", "");
    let ada = make_user(&app, "ada@example.com", "Ada", "Lovelace", "");
    set_rule(
        &app,
        "checkout",
        "staging",
        Mode::Some,
        &[&acme.id, &ada.id],
    );
    set_enabled(&app, "checkout", "staging", true);
    set_rule(&app, "dark-mode", "production", Mode::All, &[]);
    set_enabled(&app, "dark-mode", "production", true);

    let client = app.owner().await;
    let page = client.get("/flags").await;
    assert_eq!(page.status, 200);
    page.assert_contains("Rule in Staging");
    let checkout = flag_row(&page.body, "checkout").expect("checkout listed");
    assert!(
        checkout.contains("class=\"mode mode-some\">Some<"),
        "{checkout}"
    );
    assert!(checkout.contains("2 targets"), "{checkout}");
    assert!(checkout.contains("aria-checked=\"true\""), "{checkout}");
    assert!(
        checkout.contains("aria-label=\"Checkout enabled in Staging\""),
        "{checkout}"
    );
    let dark = flag_row(&page.body, "dark-mode").expect("dark-mode listed");
    assert!(dark.contains("class=\"mode mode-none\">None<"), "{dark}");
    assert!(dark.contains("aria-checked=\"false\""), "{dark}");
    assert!(!dark.contains("target"), "{dark}");

    let switched = client
        .post(
            "/switch-environment",
            &[("environment", "production"), ("return_to", "/flags")],
        )
        .await;
    assert_eq!(switched.status, 303);
    let page = client.get("/flags").await;
    page.assert_contains("Rule in Production");
    let checkout = flag_row(&page.body, "checkout").unwrap();
    assert!(
        checkout.contains("class=\"mode mode-none\">None<"),
        "{checkout}"
    );
    assert!(checkout.contains("aria-checked=\"false\""), "{checkout}");
    let dark = flag_row(&page.body, "dark-mode").unwrap();
    assert!(dark.contains("class=\"mode mode-all\">All<"), "{dark}");
    assert!(dark.contains("aria-checked=\"true\""), "{dark}");
    assert!(
        dark.contains("action=\"/flags/dark-mode/environments/production/toggle\""),
        "{dark}"
    );
}

async fn search_finds_flags_by_name_slug_or_description(app: TestApp) {
    let client = app.owner().await;
    for (name, slug, description) in [
        ("Checkout redesign", "checkout-redesign", ""),
        ("Dark mode", "dark-mode", "Night theme for the dashboard"),
        ("Beta banner", "promo-strip", ""),
    ] {
        let page = client
            .post(
                "/flags",
                &[("name", name), ("slug", slug), ("description", description)],
            )
            .await;
        assert_eq!(page.status, 303);
    }
    let cases: [(&str, &[&str]); 6] = [
        ("CHECKOUT", &["checkout-redesign"]),
        ("promo", &["promo-strip"]),
        ("night+theme", &["dark-mode"]),
        ("e", &["promo-strip", "dark-mode", "checkout-redesign"]),
        ("%25", &[]),
        ("zzz", &[]),
    ];
    for (q, expected) in cases {
        let page = client.get(&format!("/flags?q={q}")).await;
        assert_eq!(page.status, 200);
        assert_eq!(listed_flags(&page.body), expected, "search {q:?}");
        if expected.is_empty() {
            page.assert_contains("No flag matches");
        }
    }
    let page = client.get("/flags?q=promo").await;
    page.assert_contains("type=\"search\" name=\"q\" value=\"promo\"");
}

async fn the_tag_filter_shows_only_flags_with_that_tag(app: TestApp) {
    let client = app.owner().await;
    for (slug, tags) in [
        ("invoices", "Billing, beta"),
        ("new-nav", "beta"),
        ("plain", ""),
    ] {
        let page = client
            .post("/flags", &[("name", slug), ("slug", slug), ("tags", tags)])
            .await;
        assert_eq!(page.status, 303, "{}", page.body);
    }
    assert_eq!(tags(&app, "invoices"), vec!["beta", "billing"]);
    let page = client.get("/flags").await;
    page.assert_contains("<option value=\"beta\">beta</option>")
        .assert_contains("<option value=\"billing\">billing</option>");
    let page = client.get("/flags?tag=billing").await;
    assert_eq!(listed_flags(&page.body), vec!["invoices"]);
    page.assert_contains("<option value=\"billing\" selected>");
    let page = client.get("/flags?tag=beta").await;
    assert_eq!(listed_flags(&page.body), vec!["new-nav", "invoices"]);
    let page = client.get("/flags?tag=beta&q=nav").await;
    assert_eq!(listed_flags(&page.body), vec!["new-nav"]);
    let page = client.get("/flags?tag=nothing").await;
    assert!(listed_flags(&page.body).is_empty());
    page.assert_contains("No flag matches");
}

async fn the_list_is_paged_twenty_five_flags_at_a_time(app: TestApp) {
    for i in 1..=30 {
        make_flag(&app, &format!("Flag {i:02}"), &format!("flag-{i:02}"), "");
    }
    let client = app.owner().await;
    let first = client.get("/flags").await;
    let on_first = listed_flags(&first.body);
    assert_eq!(on_first.len(), 25);
    assert_eq!(on_first.first().map(String::as_str), Some("flag-30"));
    assert_eq!(on_first.last().map(String::as_str), Some("flag-06"));
    first
        .assert_contains("1–25 of 30 flags · page 1 of 2")
        .assert_contains("href=\"?page=2\" rel=\"next\"");
    let second = client.get("/flags?page=2").await;
    assert_eq!(
        listed_flags(&second.body),
        vec!["flag-05", "flag-04", "flag-03", "flag-02", "flag-01"]
    );
    second
        .assert_contains("26–30 of 30 flags · page 2 of 2")
        .assert_contains("href=\"?page=1\" rel=\"prev\"");
    // A search keeps its words in the page links.
    let searched = client.get("/flags?q=flag").await;
    says(&searched, "href=\"?q=flag&page=2\"");
    // Nonsense page numbers fall back to the first page.
    for p in ["0", "-3", "abc"] {
        let page = client.get(&format!("/flags?page={p}")).await;
        assert_eq!(page.status, 200);
        assert_eq!(listed_flags(&page.body), on_first, "page={p}");
    }
}

async fn editing_details_changes_name_description_and_tags_but_never_the_slug(app: TestApp) {
    let client = app.owner().await;
    client
        .post("/flags", &[("name", "Old name"), ("slug", "stable-slug")])
        .await;
    let page = client
        .post(
            "/flags/stable-slug",
            &[
                ("name", "New name"),
                ("slug", "hijacked"),
                ("description", "Now with words"),
                ("tags", "Ops, beta"),
            ],
        )
        .await;
    assert_eq!(page.status, 303, "{}", page.body);
    assert_eq!(page.location.as_deref(), Some("/flags/stable-slug"));
    let stored = flag(&app, "stable-slug");
    assert_eq!(stored.name, "New name");
    assert_eq!(stored.description, "Now with words");
    assert_eq!(tags(&app, "stable-slug"), vec!["beta", "ops"]);
    assert_eq!(count!(app, flags), 1);
    assert_eq!(client.get("/flags/hijacked").await.status, 404);

    let page = client.get("/flags/stable-slug").await;
    says(&page, "Saved the flag's details.");
    page.assert_contains("value=\"stable-slug\" readonly")
        .assert_contains("value=\"beta, ops\"");

    let updated = audit_of(&app, "flag.updated");
    assert_eq!(updated.len(), 1);
    assert_eq!(updated[0].actor, "owner@example.com");
    assert_eq!(json(&updated[0].before_state)["name"], "Old name");
    assert_eq!(json(&updated[0].after_state)["name"], "New name");
    assert_eq!(json(&updated[0].after_state)["tags"], "beta, ops");

    // Saving the same tags in another order is recorded as no change.
    client
        .post(
            "/flags/stable-slug",
            &[
                ("name", "New name"),
                ("description", "Now with words"),
                ("tags", "ops, beta"),
            ],
        )
        .await;
    let updated = audit_of(&app, "flag.updated");
    assert_eq!(updated.len(), 2);
    assert_eq!(
        json(&updated[1].before_state),
        json(&updated[1].after_state)
    );
}

async fn editing_details_with_bad_input_changes_nothing(app: TestApp) {
    let client = app.owner().await;
    client
        .post(
            "/flags",
            &[("name", "Keep me"), ("slug", "keep"), ("tags", "one")],
        )
        .await;
    let page = client
        .post(
            "/flags/keep",
            &[("name", ""), ("description", "changed"), ("tags", "one")],
        )
        .await;
    assert_eq!(page.status, 422, "{}", page.body);
    assert_eq!(
        field_error(&page.body, "name").as_deref(),
        Some("Enter a name.")
    );
    page.assert_contains(">changed</textarea>");
    let page = client
        .post("/flags/keep", &[("name", "Fine"), ("tags", "not ok")])
        .await;
    assert_eq!(page.status, 422);
    assert!(field_error(&page.body, "tags").is_some(), "{}", page.body);
    let stored = flag(&app, "keep");
    assert_eq!(stored.name, "Keep me");
    assert_eq!(stored.description, "");
    assert_eq!(tags(&app, "keep"), vec!["one"]);
    assert!(audit_of(&app, "flag.updated").is_empty());
}

async fn archiving_hides_a_flag_and_restoring_brings_it_back_with_its_rules(app: TestApp) {
    make_flag(&app, "Old feature", "old-feature", "");
    make_flag(&app, "Current", "current", "");
    let acme = make_org(&app, "Acme", "");
    set_rule(&app, "old-feature", "staging", Mode::Some, &[&acme.id]);
    set_enabled(&app, "old-feature", "staging", true);
    let client = app.owner().await;

    let page = client
        .post("/flags/old-feature/archive", &[("archived", "true")])
        .await;
    assert_eq!(page.status, 303);
    assert!(flag(&app, "old-feature").archived);
    let list = client.get("/flags").await;
    assert_eq!(listed_flags(&list.body), vec!["current"]);
    let archived = client.get("/flags?archived=true").await;
    assert_eq!(listed_flags(&archived.body), vec!["old-feature"]);
    let shown = client.get("/flags/old-feature").await;
    shown
        .assert_contains("badge-warn\">Archived</span>")
        .assert_contains("Restore flag");

    let page = client
        .post("/flags/old-feature/archive", &[("archived", "false")])
        .await;
    assert_eq!(page.status, 303);
    assert!(!flag(&app, "old-feature").archived);
    let list = client.get("/flags").await;
    assert_eq!(listed_flags(&list.body), vec!["current", "old-feature"]);
    let rule = rule(&app, "old-feature", "staging");
    assert_eq!((rule.mode.as_str(), rule.enabled), ("some", true));
    assert_eq!(targets(&app, "old-feature", "staging"), vec![acme.id]);
    assert_eq!(audit_of(&app, "flag.archived").len(), 1);
    assert_eq!(audit_of(&app, "flag.unarchived").len(), 1);
}

async fn a_flag_page_shows_one_card_per_environment(app: TestApp) {
    make_flag(&app, "Cards", "cards", "");
    let acme = make_org(&app, "Acme", "");
    let ada = make_user(&app, "ada@example.com", "Ada", "Lovelace", "");
    set_rule(&app, "cards", "staging", Mode::Some, &[&acme.id, &ada.id]);
    set_enabled(&app, "cards", "production", true);
    let client = app.owner().await;
    let page = client.get("/flags/cards").await;
    assert_eq!(page.status, 200);
    assert_eq!(card_names(&page.body), vec!["Staging", "Production"]);
    let staging = card(&page.body, "Staging").unwrap();
    assert!(staging.contains("mode-some\">Some<"), "{staging}");
    assert!(staging.contains("1 organization, 1 user"), "{staging}");
    assert!(staging.contains(">Acme</span>"), "{staging}");
    assert!(staging.contains(">Ada Lovelace</span>"), "{staging}");
    assert!(staging.contains("Changed by test"), "{staging}");
    assert!(
        staging.contains("href=\"/flags/cards/environments/staging\">Edit</a>"),
        "{staging}"
    );
    assert!(staging.contains("aria-checked=\"false\""), "{staging}");
    let production = card(&page.body, "Production").unwrap();
    assert!(production.contains("mode-none\">None<"), "{production}");
    assert!(
        production.contains("Nobody gets this flag."),
        "{production}"
    );
    assert!(production.contains("aria-checked=\"true\""), "{production}");
    assert!(
        production.contains("Edit in Production</button>"),
        "{production}"
    );
    assert!(
        production.contains("action=\"/flags/cards/environments/production/edit-in\""),
        "{production}"
    );
}

on_both_backends!(
    creating_a_flag_gives_it_a_none_rule_in_every_environment,
    the_create_form_offers_name_slug_and_description,
    a_flag_without_a_name_is_refused_and_nothing_is_saved,
    a_slug_with_capitals_or_spaces_is_refused_next_to_the_slug_field,
    a_duplicate_slug_is_refused_and_the_first_flag_is_untouched,
    an_empty_slug_is_suggested_from_the_name,
    the_list_shows_each_flags_mode_targets_and_switch_in_the_active_environment,
    search_finds_flags_by_name_slug_or_description,
    the_tag_filter_shows_only_flags_with_that_tag,
    the_list_is_paged_twenty_five_flags_at_a_time,
    editing_details_changes_name_description_and_tags_but_never_the_slug,
    editing_details_with_bad_input_changes_nothing,
    archiving_hides_a_flag_and_restoring_brings_it_back_with_its_rules,
    a_flag_page_shows_one_card_per_environment,
);
