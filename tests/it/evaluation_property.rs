//! Property: on random flags, rules and targets, the in-memory index gives
//! exactly what a plain SQL evaluation of the design's rule gives.

use std::cell::Cell;

use crate::common::TestApp;
use diesel::dsl::exists;
use diesel::prelude::*;
use flagpole::db::schema::{flags as flags_table, rules, targets};
use flagpole::db::DbConn;
use flagpole::environments::{self, EnvironmentInput};
use flagpole::evaluation::Mode;
use flagpole::flags;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

const FLAGS: usize = 8;
const USERS: usize = 5;
const ORGS: usize = 4;

/// The design's rule, written as one SQL query.
fn sql_evaluate(conn: &mut DbConn, env_id: &str, user: &str, org: Option<&str>) -> Vec<String> {
    let mut ids = vec![user.to_string()];
    ids.extend(org.map(str::to_string));
    rules::table
        .inner_join(flags_table::table)
        .filter(rules::environment_id.eq(env_id))
        .filter(rules::enabled.eq(true))
        .filter(flags_table::archived.eq(false))
        .filter(
            rules::mode.eq("all").or(rules::mode.eq("some").and(exists(
                targets::table
                    .filter(targets::flag_id.eq(rules::flag_id))
                    .filter(targets::environment_id.eq(rules::environment_id))
                    .filter(targets::target_id.eq_any(ids)),
            ))),
        )
        .order(flags_table::slug.asc())
        .select(flags_table::slug)
        .load(conn)
        .unwrap()
}

/// One flag's random rule: mode, enabled, archived, and which users and
/// organizations are targets (bit sets).
type RandomRule = (u8, bool, bool, u8, u8);

async fn the_index_agrees_with_sql_on_random_rules(app: TestApp) {
    let mut conn = app.conn();
    let flag_rows: Vec<_> = (0..FLAGS)
        .map(|i| {
            flags::create(
                &mut conn,
                &crate::support::actor(),
                &flagpole::flags::NewFlag {
                    name: format!("Flag {i}"),
                    slug: format!("flag-{i}"),
                    description: String::new(),
                    tags: Vec::new(),
                },
            )
            .unwrap()
        })
        .collect();
    let users: Vec<String> = (0..USERS)
        .map(|i| {
            flagpole::directory::users::create(
                &mut conn,
                &crate::support::actor(),
                &flagpole::directory::users::NewUser {
                    email: format!("u{i}@example.com"),
                    first_name: String::new(),
                    last_name: String::new(),
                    external_id: String::new(),
                },
            )
            .unwrap()
            .id
            .to_string()
        })
        .collect();
    let orgs: Vec<String> = (0..ORGS)
        .map(|i| {
            flagpole::directory::organizations::create(
                &mut conn,
                &crate::support::actor(),
                &flagpole::directory::organizations::NewOrganization {
                    name: format!("Org {i}"),
                    external_id: String::new(),
                },
            )
            .unwrap()
            .id
            .to_string()
        })
        .collect();
    drop(conn);

    let case = Cell::new(0);
    let mut runner = TestRunner::new(Config {
        cases: 24,
        failure_persistence: None,
        ..Config::default()
    });
    let strategy = prop::collection::vec(
        (0u8..3, any::<bool>(), any::<bool>(), 0u8..32, 0u8..16),
        FLAGS,
    );
    runner
        .run(&strategy, |random_rules: Vec<RandomRule>| {
            let mut conn = app.conn();
            case.set(case.get() + 1);
            // A fresh environment per case keeps cases independent.
            let env = environments::create(
                &mut conn,
                &crate::support::actor(),
                &EnvironmentInput {
                    name: format!("Case {}", case.get()),
                    slug: format!("case-{}", case.get()),
                    color: "#1d4ed8".into(),
                    require_confirmation: false,
                },
            )
            .unwrap();
            for (flag, (mode, enabled, archived, user_bits, org_bits)) in
                flag_rows.iter().zip(&random_rules)
            {
                let mut add: Vec<String> = Vec::new();
                add.extend(
                    (0..USERS)
                        .filter(|i| user_bits & (1 << i) != 0)
                        .map(|i| users[i].clone()),
                );
                add.extend(
                    (0..ORGS)
                        .filter(|i| org_bits & (1 << i) != 0)
                        .map(|i| orgs[i].clone()),
                );
                let mode = [Mode::None, Mode::Some, Mode::All][*mode as usize];
                let rule = flagpole::flags::rules::save_rule(
                    &mut conn,
                    &crate::support::actor(),
                    flag,
                    &env,
                    &flagpole::flags::rules::RuleChange {
                        mode: Some(mode),
                        targets: flagpole::flags::rules::TargetChange::Edit {
                            add,
                            remove: Vec::new(),
                        },
                        expected_version: Some(1),
                        ..Default::default()
                    },
                )
                .unwrap();
                flagpole::flags::rules::set_enabled(
                    &mut conn,
                    &crate::support::actor(),
                    flag,
                    &env,
                    *enabled,
                    Some(rule.version),
                )
                .unwrap();
                flags::set_archived(&mut conn, &crate::support::actor(), &flag.id, *archived)
                    .unwrap();
            }
            app.state.model.sync(&mut conn).unwrap();
            let model = app.state.model();
            for user in &users {
                for org in orgs.iter().map(Some).chain([None]) {
                    let expected = sql_evaluate(&mut conn, &env.id, user, org.map(String::as_str));
                    let context = flagpole::evaluation::Context::new(
                        flagpole::ids::UserId::parse(user),
                        org.and_then(|o| flagpole::ids::OrgId::parse(o)),
                    );
                    let got = model.evaluate(&env.id, &context);
                    prop_assert_eq!(&got, &expected, "user {} org {:?}", user, org);
                }
            }
            Ok(())
        })
        .unwrap();
    assert_eq!(case.get(), 24);
}

on_both_backends!(the_index_agrees_with_sql_on_random_rules);
