//! `flagpole seed-demo`: a realistic data set for trying the dashboard and
//! for measuring it (organizations, users, memberships, flags with rules).

use flagpole::audit::Actor;
use flagpole::db::DbConn;
use flagpole::directory::memberships;
use flagpole::directory::organizations::{self, NewOrganization};
use flagpole::directory::users::{self, NewUser};
use flagpole::environments;
use flagpole::error::Result;
use flagpole::evaluation::Mode;
use flagpole::flags::rules::{self, RuleChange, TargetChange};
use flagpole::flags::{self, NewFlag};

const ORGS: &[&str] = &[
    "Acme Inc",
    "Globex",
    "Initech",
    "Umbrella",
    "Hooli",
    "Stark Industries",
    "Wayne Enterprises",
    "Wonka Industries",
    "Soylent",
    "Tyrell Corp",
    "Cyberdyne",
    "Aperture Science",
];
const FIRST: &[&str] = &[
    "Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Margaret", "Ken",
];
const LAST: &[&str] = &[
    "Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Hamilton", "Thompson",
];
const TOPICS: &[&str] = &[
    "checkout",
    "search",
    "billing",
    "onboarding",
    "reports",
    "sso",
    "audit-export",
    "dark-mode",
    "api-v2",
    "notifications",
    "dashboard",
    "invoices",
];
const TAGS: &[&str] = &["beta", "billing", "growth", "premium", "experiment"];

pub struct DemoCounts {
    pub organizations: usize,
    pub users: usize,
    pub flags: usize,
}

/// Adds `flag_count` flags and a dozen organizations with their users.
/// Rules vary: some flags are on for everyone, some for a few targets.
pub fn seed(conn: &mut DbConn, flag_count: usize) -> Result<DemoCounts> {
    let actor = &Actor::system("seed-demo");
    let mut org_ids = Vec::new();
    let mut user_ids = Vec::new();
    for (i, name) in ORGS.iter().enumerate() {
        let org = organizations::create(
            conn,
            actor,
            &NewOrganization {
                name: name.to_string(),
                external_id: format!("demo-org-{}", i + 1),
            },
        )?;
        for j in 0..3 {
            let first = FIRST[(i + j) % FIRST.len()];
            let last = LAST[(i * 3 + j) % LAST.len()];
            let domain = name.to_lowercase().replace(' ', "");
            let user = users::create(
                conn,
                actor,
                &NewUser {
                    email: format!(
                        "{}.{}{}@{}.example",
                        first.to_lowercase(),
                        last.to_lowercase(),
                        j,
                        domain
                    ),
                    first_name: first.into(),
                    last_name: last.into(),
                    external_id: format!("demo-user-{}-{}", i + 1, j + 1),
                },
            )?;
            memberships::add(conn, actor, &org, &user, "user")?;
            user_ids.push(user.id);
        }
        org_ids.push(org.id);
    }
    let envs = environments::list(conn)?;
    for n in 0..flag_count {
        let topic = TOPICS[n % TOPICS.len()];
        let flag = flags::create(
            conn,
            actor,
            &NewFlag {
                name: format!("{} {}", capitalize(topic), n + 1),
                slug: format!("{topic}-{}", n + 1),
                description: format!(
                    "Rolls out the new {} experience (demo flag {}).",
                    topic.replace('-', " "),
                    n + 1
                ),
                tags: vec![TAGS[n % TAGS.len()].to_string()],
            },
        )?;
        for (e, env) in envs.iter().enumerate() {
            let mode = match (n + e) % 4 {
                0 => Mode::None,
                1 | 2 => Mode::Some,
                _ => Mode::All,
            };
            let add = if mode == Mode::Some {
                vec![
                    org_ids[(n + e) % org_ids.len()].to_string(),
                    user_ids[(n * 7 + e) % user_ids.len()].to_string(),
                ]
            } else {
                Vec::new()
            };
            rules::save_rule(
                conn,
                actor,
                &flag,
                env,
                &RuleChange {
                    mode: Some(mode),
                    enabled: Some((n + e) % 3 != 0),
                    targets: TargetChange::Edit {
                        add,
                        remove: Vec::new(),
                    },
                    expected_version: Some(1),
                },
            )?;
        }
    }
    Ok(DemoCounts {
        organizations: org_ids.len(),
        users: user_ids.len(),
        flags: flag_count,
    })
}

fn capitalize(s: &str) -> String {
    let s = s.replace('-', " ");
    let mut chars = s.chars();
    match chars.next() {
        Some(c) => c.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}
