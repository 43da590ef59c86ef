//! A bulk loader for measuring Flagpole at scale: a million users in
//! organizations, a thousand flags with their rules and targets, written
//! straight into the database in batches (one audit event for the load, not
//! one per row), then one change that makes every instance build its model
//! afresh.
//!
//! The data is deterministic for a given spec: user `i` has the external id
//! `u-{i}` and belongs to the organization `o-{i % organizations}`; flag `f`
//! is `load-{f}`. In Production, a tenth of the flags are on for All, a tenth
//! are None, and the rest are Some with `targets_per_flag` targets (four in
//! five users, one in five organizations); nine in ten are switched on. The
//! other environments have the same modes without targets.

use std::time::Instant;

use diesel::prelude::*;

use crate::audit::{Actor, Change};
use crate::changes::{changed, Changed};
use crate::db::schema::{flags, memberships, organizations, rules, targets, users};
use crate::db::DbConn;
use crate::directory::{Membership, Organization, User};
use crate::environments::{self, Environment};
use crate::error::{Error, Result};
use crate::evaluation::{Mode, TargetKind};
use crate::flags::rules::RuleRow;
use crate::flags::Flag;
use crate::ids::{FlagId, OrgId, UserId};
use crate::time::Timestamp;

/// What to load.
#[derive(Debug, Clone, Copy)]
pub struct LoadSpec {
    pub users: usize,
    pub organizations: usize,
    pub flags: usize,
    pub targets_per_flag: usize,
}

/// What was loaded, and how long it took.
#[derive(Debug, Clone, Copy)]
pub struct Loaded {
    pub users: usize,
    pub organizations: usize,
    pub memberships: usize,
    pub flags: usize,
    pub rules: usize,
    pub targets: usize,
    pub seconds: f64,
}

#[derive(Insertable)]
#[diesel(table_name = targets)]
struct NewTarget {
    flag_id: FlagId,
    environment_id: crate::ids::EnvironmentId,
    target_type: TargetKind,
    target_id: String,
    created_at: Timestamp,
}

/// Rows per INSERT: far below either backend's limit on parameters.
const BATCH: usize = 1000;
/// Rows per transaction.
const PER_TRANSACTION: usize = 50_000;

/// A small deterministic generator (SplitMix64), so a spec always loads the
/// same data.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Inserts `rows` in batches, `PER_TRANSACTION` rows per transaction.
macro_rules! insert_all {
    ($conn:expr, $table:expr, $rows:expr) => {{
        let rows = $rows;
        for group in rows.chunks(PER_TRANSACTION) {
            crate::db::write_transaction($conn, |conn| -> Result<()> {
                for batch in group.chunks(BATCH) {
                    crate::with_backend!(conn, |c| diesel::insert_into($table)
                        .values(batch)
                        .execute(c))?;
                }
                Ok(())
            })?;
        }
        rows.len()
    }};
}

/// Loads `spec` into the database; `progress` hears what is being written.
pub fn load(conn: &mut DbConn, spec: &LoadSpec, mut progress: impl FnMut(&str)) -> Result<Loaded> {
    if spec.users == 0 || spec.organizations == 0 {
        return Err(Error::invalid(
            "users",
            "Load at least one user and one organization.",
        ));
    }
    let started = Instant::now();
    let at = Timestamp::now();
    let mut random = Random(0x5EED);
    let envs: Vec<Environment> = environments::list(conn)?;
    let production = envs
        .iter()
        .find(|e| e.slug == "production")
        .or(envs.first())
        .cloned()
        .ok_or_else(|| Error::invalid("environment", "The database has no environment."))?;

    progress(&format!("{} organizations", spec.organizations));
    let orgs: Vec<Organization> = (0..spec.organizations)
        .map(|i| Organization {
            id: OrgId::generate(),
            name: format!("Organization {i}"),
            external_id: crate::validate::external_id(&format!("o-{i}"))
                .ok()
                .flatten(),
            created_at: at,
            updated_at: at,
        })
        .collect();
    let organizations = insert_all!(conn, organizations::table, &orgs);

    progress(&format!("{} users and their memberships", spec.users));
    let mut user_ids: Vec<UserId> = Vec::with_capacity(spec.users);
    let mut memberships_loaded = 0;
    for start in (0..spec.users).step_by(PER_TRANSACTION) {
        let end = (start + PER_TRANSACTION).min(spec.users);
        let batch: Vec<User> = (start..end)
            .map(|i| User {
                id: UserId::generate(),
                email: crate::validate::email(&format!("user{i}@load.example"))
                    .expect("a valid email"),
                first_name: "User".into(),
                last_name: format!("{i}"),
                external_id: crate::validate::external_id(&format!("u-{i}"))
                    .ok()
                    .flatten(),
                created_at: at,
                updated_at: at,
            })
            .collect();
        let members: Vec<Membership> = batch
            .iter()
            .enumerate()
            .map(|(k, user)| Membership {
                user_id: user.id.clone(),
                organization_id: orgs[(start + k) % orgs.len()].id.clone(),
                created_at: at,
            })
            .collect();
        insert_all!(conn, users::table, &batch);
        memberships_loaded += insert_all!(conn, memberships::table, &members);
        user_ids.extend(batch.into_iter().map(|u| u.id));
    }

    progress(&format!(
        "{} flags with their rules and targets",
        spec.flags
    ));
    let mut flag_rows = Vec::with_capacity(spec.flags);
    let mut rule_rows = Vec::with_capacity(spec.flags * envs.len());
    let mut target_rows = Vec::with_capacity(spec.flags * spec.targets_per_flag);
    for f in 0..spec.flags {
        let flag = Flag {
            id: FlagId::generate(),
            slug: crate::validate::slug(&format!("load-{f}"))
                .map_err(|e| Error::invalid("slug", e))?,
            name: format!("Load flag {f}"),
            description: "Loaded to measure Flagpole at scale.".into(),
            archived: false,
            created_at: at,
            updated_at: at,
        };
        let mode = match f % 10 {
            0 => Mode::All,
            9 => Mode::None,
            _ => Mode::Some,
        };
        for env in &envs {
            let mut rule = RuleRow::new(flag.id.clone(), env.id.clone(), at);
            rule.mode = mode;
            rule.enabled = f % 10 != 5;
            rule_rows.push(rule);
        }
        if mode == Mode::Some {
            let mut chosen = std::collections::BTreeSet::new();
            while chosen.len() < spec.targets_per_flag.min(spec.users + spec.organizations) {
                let target = if random.below(5) == 0 {
                    (
                        TargetKind::Organization,
                        orgs[random.below(orgs.len())].id.to_string(),
                    )
                } else {
                    (
                        TargetKind::User,
                        user_ids[random.below(user_ids.len())].to_string(),
                    )
                };
                chosen.insert(target);
            }
            target_rows.extend(chosen.into_iter().map(|(kind, id)| NewTarget {
                flag_id: flag.id.clone(),
                environment_id: production.id.clone(),
                target_type: kind,
                target_id: id,
                created_at: at,
            }));
        }
        flag_rows.push(flag);
    }
    let flags_loaded = insert_all!(conn, flags::table, &flag_rows);
    let rules_loaded = insert_all!(conn, rules::table, &rule_rows);
    let targets_loaded = insert_all!(conn, targets::table, &target_rows);

    crate::db::write_transaction(conn, |conn| -> Result<()> {
        Change::new("data.loaded", "environment", &production.id, "bulk load")
            .after(serde_json::json!({
                "users": spec.users,
                "organizations": spec.organizations,
                "flags": spec.flags,
                "targets": targets_loaded,
            }))
            .record(conn, &Actor::system("load"))?;
        changed(conn, Changed::Everything)?;
        Ok(())
    })?;
    Ok(Loaded {
        users: spec.users,
        organizations,
        memberships: memberships_loaded,
        flags: flags_loaded,
        rules: rules_loaded,
        targets: targets_loaded,
        seconds: started.elapsed().as_secs_f64(),
    })
}
