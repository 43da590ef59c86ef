//! Property: over random sequences of changes (rules, switches, archiving,
//! memberships, deleted and re-created users and organizations, changed
//! external ids), the live model, patched change by change from the change
//! log, answers exactly what a plain SQL evaluation of the design's rule
//! answers, for every context, named by Flagpole id or by external id.

use std::collections::BTreeSet;

use crate::common::TestApp;
use diesel::dsl::exists;
use diesel::prelude::*;
use flagpole::db::schema::{flags as flags_table, memberships, rules, targets};
use flagpole::db::DbConn;
use flagpole::directory::organizations::{self, NewOrganization, OrganizationPatch};
use flagpole::directory::users::{self, NewUser};
use flagpole::directory::{memberships as members, Organization, User};
use flagpole::environments::Environment;
use flagpole::evaluation::Mode;
use flagpole::flags::rules::{RuleChange, TargetChange};
use flagpole::flags::{self, Flag};
use flagpole::live::Applied;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

const FLAGS: usize = 6;
const USERS: usize = 4;
const ORGS: usize = 3;

/// The design's rule, written as one SQL query: the slugs on for a user
/// (and an organization), by Flagpole id.
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

/// The organizations a user belongs to that some rule targets.
fn sql_targeted_orgs_of(conn: &mut DbConn, user: &str) -> BTreeSet<String> {
    memberships::table
        .filter(memberships::user_id.eq(user))
        .filter(
            memberships::organization_id.eq_any(
                targets::table
                    .filter(targets::target_type.eq("organization"))
                    .select(targets::target_id),
            ),
        )
        .select(memberships::organization_id)
        .load::<String>(conn)
        .unwrap()
        .into_iter()
        .collect()
}

/// One random change.
#[derive(Debug, Clone)]
enum Step {
    /// Mode and exactly these targets (bit sets of users and organizations).
    Rule {
        flag: usize,
        mode: u8,
        users: u8,
        orgs: u8,
    },
    Switch {
        flag: usize,
        on: bool,
    },
    Archive {
        flag: usize,
        archived: bool,
    },
    Join {
        user: usize,
        org: usize,
    },
    Leave {
        user: usize,
        org: usize,
    },
    /// The user is deleted and someone new takes the slot.
    ReplaceUser(usize),
    ReplaceOrg(usize),
    /// The organization gets another external id.
    RenameOrg(usize),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (0..FLAGS, 0u8..3, 0u8..16, 0u8..8)
            .prop_map(|(flag, mode, users, orgs)| Step::Rule { flag, mode, users, orgs }),
        2 => (0..FLAGS, any::<bool>()).prop_map(|(flag, on)| Step::Switch { flag, on }),
        1 => (0..FLAGS, any::<bool>()).prop_map(|(flag, archived)| Step::Archive { flag, archived }),
        2 => (0..USERS, 0..ORGS).prop_map(|(user, org)| Step::Join { user, org }),
        1 => (0..USERS, 0..ORGS).prop_map(|(user, org)| Step::Leave { user, org }),
        1 => (0..USERS).prop_map(Step::ReplaceUser),
        1 => (0..ORGS).prop_map(Step::ReplaceOrg),
        1 => (0..ORGS).prop_map(Step::RenameOrg),
    ]
}

/// The objects a sequence plays with.
struct World {
    env: Environment,
    flags: Vec<Flag>,
    users: Vec<User>,
    orgs: Vec<Organization>,
    serial: usize,
}

impl World {
    fn next(&mut self) -> usize {
        self.serial += 1;
        self.serial
    }

    fn new_user(&mut self, conn: &mut DbConn) -> User {
        let n = self.next();
        users::create(
            conn,
            &crate::support::actor(),
            &NewUser {
                email: format!("u{n}@example.com"),
                first_name: String::new(),
                last_name: String::new(),
                external_id: format!("ext-user-{n}"),
            },
        )
        .unwrap()
    }

    fn new_org(&mut self, conn: &mut DbConn) -> Organization {
        let n = self.next();
        organizations::create(
            conn,
            &crate::support::actor(),
            &NewOrganization {
                name: format!("Org {n}"),
                external_id: format!("ext-org-{n}"),
            },
        )
        .unwrap()
    }

    fn apply(&mut self, conn: &mut DbConn, step: &Step) {
        let actor = crate::support::actor();
        match *step {
            Step::Rule {
                flag,
                mode,
                users,
                orgs,
            } => {
                let wanted: BTreeSet<String> = (0..USERS)
                    .filter(|i| users & (1 << i) != 0)
                    .map(|i| self.users[i].id.to_string())
                    .chain(
                        (0..ORGS)
                            .filter(|i| orgs & (1 << i) != 0)
                            .map(|i| self.orgs[i].id.to_string()),
                    )
                    .collect();
                let flag = &self.flags[flag];
                let existing: BTreeSet<String> =
                    flagpole::flags::rules::target_ids(conn, &flag.id, &self.env.id)
                        .unwrap()
                        .into_iter()
                        .collect();
                flagpole::flags::rules::save_rule(
                    conn,
                    &actor,
                    flag,
                    &self.env,
                    &RuleChange {
                        mode: Some([Mode::None, Mode::Some, Mode::All][mode as usize]),
                        targets: TargetChange::Edit {
                            add: wanted.difference(&existing).cloned().collect(),
                            remove: existing.difference(&wanted).cloned().collect(),
                        },
                        ..Default::default()
                    },
                )
                .unwrap();
            }
            Step::Switch { flag, on } => {
                flagpole::flags::rules::set_enabled(
                    conn,
                    &actor,
                    &self.flags[flag],
                    &self.env,
                    on,
                    None,
                )
                .unwrap();
            }
            Step::Archive { flag, archived } => {
                flags::set_archived(conn, &actor, &self.flags[flag].id, archived).unwrap();
            }
            Step::Join { user, org } => {
                // Already a member: a conflict, and nothing changes.
                let _ = members::add(conn, &actor, &self.orgs[org], &self.users[user], "user_id");
            }
            Step::Leave { user, org } => {
                let _ = members::remove(conn, &actor, &self.orgs[org], &self.users[user]);
            }
            Step::ReplaceUser(i) => {
                users::delete(conn, &actor, &self.users[i].id).unwrap();
                self.users[i] = self.new_user(conn);
            }
            Step::ReplaceOrg(i) => {
                organizations::delete(conn, &actor, &self.orgs[i].id).unwrap();
                self.orgs[i] = self.new_org(conn);
            }
            Step::RenameOrg(i) => {
                let n = self.next();
                self.orgs[i] = organizations::update(
                    conn,
                    &actor,
                    &self.orgs[i].id,
                    &OrganizationPatch {
                        name: None,
                        external_id: Some(format!("ext-org-{n}")),
                    },
                )
                .unwrap();
            }
        }
    }
}

async fn the_patched_model_agrees_with_sql_over_random_changes(app: TestApp) {
    let env = crate::support::env(&app, "production");
    let world = {
        let mut conn = app.conn();
        let flags = (0..FLAGS)
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
        let mut world = World {
            env,
            flags,
            users: Vec::new(),
            orgs: Vec::new(),
            serial: 0,
        };
        for _ in 0..USERS {
            let user = world.new_user(&mut conn);
            world.users.push(user);
        }
        for _ in 0..ORGS {
            let org = world.new_org(&mut conn);
            world.orgs.push(org);
        }
        world
    };

    let mut runner = TestRunner::new(Config {
        cases: 12,
        failure_persistence: None,
        ..Config::default()
    });
    let world = std::cell::RefCell::new(world);
    let patches = std::cell::Cell::new(0);
    runner
        .run(&prop::collection::vec(step(), 1..12), |steps| {
            let mut conn = app.pool_conn();
            let mut world = world.borrow_mut();
            for step in &steps {
                world.apply(&mut conn, step);
                // Applied the way the server applies it: from the log.
                if let Applied::Patched(_) = app.state.model.catch_up(&mut conn).unwrap() {
                    patches.set(patches.get() + 1);
                }
                let snapshot = app.state.model();
                let env_id = world.env.id.to_string();
                for user in &world.users {
                    let orgs = world.orgs.iter().map(Some).chain([None]);
                    for org in orgs {
                        let expected =
                            sql_evaluate(&mut conn, &env_id, &user.id, org.map(|o| o.id.as_str()));
                        // By Flagpole id and by external id.
                        for (u, o) in [
                            (user.id.to_string(), org.map(|o| o.id.to_string())),
                            (
                                user.external_id.as_ref().unwrap().to_string(),
                                org.map(|o| o.external_id.as_ref().unwrap().to_string()),
                            ),
                        ] {
                            let context = snapshot.context(Some(&u), o.as_deref());
                            let got = snapshot.model.evaluate(&world.env.id, &context);
                            prop_assert_eq!(
                                &got,
                                &expected,
                                "after {:?}: user {} org {:?}",
                                step,
                                u,
                                o
                            );
                        }
                    }
                    let known: BTreeSet<String> = snapshot
                        .directory
                        .organizations_of(&user.id)
                        .into_iter()
                        .map(|o| o.to_string())
                        .collect();
                    let targeted = sql_targeted_orgs_of(&mut conn, &user.id);
                    prop_assert_eq!(
                        &known,
                        &targeted,
                        "after {:?}: {}'s targeted organizations",
                        step,
                        user.id
                    );
                }
            }
            Ok(())
        })
        .unwrap();
    let patches = patches.get();
    assert!(
        patches > 12,
        "the model was patched, not rebuilt ({patches} patches)"
    );
}

on_both_backends!(the_patched_model_agrees_with_sql_over_random_changes);
