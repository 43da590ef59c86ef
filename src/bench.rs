//! `flagpole bench`: measures the evaluation engine and token signing on this
//! machine, in process, so speed is measured rather than hoped for.

use std::time::{Duration, Instant};

use flagpole::environments::Environment;
use flagpole::evaluation::model::Model;
use flagpole::evaluation::{Context, FlagRule, Mode, Rule};
use flagpole::ids::{ClientId, EnvironmentId, FlagId, OrgId, SessionId, UserId};
use flagpole::time::Timestamp;
use flagpole::tokens::keys::{self, SigningAlgorithm};
use flagpole::tokens::sessions::{Session, TokenSettings};
use flagpole::tokens::signing::Signer;
use flagpole::validate::Slug;

pub struct BenchOptions {
    pub flags: usize,
    pub users: usize,
    pub organizations: usize,
    pub seconds: f64,
}

fn user(i: usize) -> UserId {
    UserId::parse(&format!("user_U{i}")).expect("a user id")
}

fn org(i: usize) -> OrgId {
    OrgId::parse(&format!("org_O{i}")).expect("an organization id")
}

/// A synthetic environment: a tenth of the flags on for all, the rest
/// targeting a handful of users and organizations each.
fn synthetic_model(o: &BenchOptions, env: &EnvironmentId) -> Model {
    let rules = (0..o.flags).map(|i| {
        let rule = Rule {
            enabled: true,
            mode: if i % 10 == 0 { Mode::All } else { Mode::Some },
            users: (0..5).map(|k| user((i * 7 + k * 13) % o.users)).collect(),
            organizations: (0..3)
                .map(|k| org((i * 5 + k * 11) % o.organizations))
                .collect(),
        };
        let flag = FlagRule {
            id: FlagId::parse(&format!("flag_F{i}")).expect("a flag id"),
            slug: Slug::parse(&format!("flag-{i:05}")).expect("a slug"),
            archived: false,
            rule,
        };
        (env.clone(), flag)
    });
    Model::build(rules)
}

/// Runs `work(i)` on `threads` threads for about `seconds`; returns calls per second.
fn per_second(threads: usize, seconds: f64, work: impl Fn(usize) -> usize + Sync) -> f64 {
    let deadline = Duration::from_secs_f64(seconds);
    let start = Instant::now();
    let total: usize = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let work = &work;
                scope.spawn(move || {
                    let mut n = 0usize;
                    let mut sink = 0usize;
                    while start.elapsed() < deadline {
                        for _ in 0..64 {
                            sink = sink.wrapping_add(work(t * 1_000_003 + n));
                            n += 1;
                        }
                    }
                    std::hint::black_box(sink);
                    n
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or(0)).sum()
    });
    total as f64 / start.elapsed().as_secs_f64()
}

pub fn run(o: &BenchOptions) -> anyhow::Result<()> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "Flagpole bench: {} flags, {} users, {} organizations, {:.1} s per measurement, {} core(s)",
        o.flags, o.users, o.organizations, o.seconds, cores
    );
    let env_id = EnvironmentId::generate();
    let built = Instant::now();
    let model = synthetic_model(o, &env_id);
    println!(
        "model build: {:.1} ms",
        built.elapsed().as_secs_f64() * 1000.0
    );
    let contexts: Vec<Context> = (0..o.users.max(o.organizations))
        .map(|i| Context::new(Some(user(i % o.users)), Some(org(i % o.organizations))))
        .collect();
    println!(
        "a typical answer holds {} flags",
        model.evaluate(&env_id, &contexts[1 % contexts.len()]).len()
    );
    let evaluate = |i: usize| model.evaluate(&env_id, &contexts[i % contexts.len()]).len();
    for threads in [1, cores] {
        println!(
            "evaluations/s on {threads} thread(s): {:.0}",
            per_second(threads, o.seconds, evaluate)
        );
    }

    let settings = TokenSettings {
        access_ttl_seconds: 300,
        refresh_ttl_seconds: 86_400,
        refresh_grace_seconds: 0,
    };
    let now = Timestamp::now();
    let environment = Environment {
        id: env_id.clone(),
        slug: Slug::parse("bench").expect("a slug"),
        name: "Bench".into(),
        position: 0,
        color: "#475569".into(),
        require_confirmation: false,
        client_id: ClientId::generate(),
        created_at: now,
        updated_at: now,
        allowed_origins: String::new(),
    };
    for &algorithm in SigningAlgorithm::ALL {
        let key = keys::generate(algorithm)?;
        let signer = Signer::new(key.kid, algorithm, &key.private_der)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let issue = |i: usize| {
            let context = &contexts[i % contexts.len()];
            let session = Session {
                id: SessionId::generate(),
                environment_id: environment.id.clone(),
                user_id: context.user.clone().expect("a user"),
                organization_id: context.organization.clone(),
                created_at: now,
                last_refreshed_at: now,
                expires_at: now,
                revoked_at: None,
                revoked_reason: None,
            };
            flagpole::tokens::mint(
                &model,
                &settings,
                "http://bench",
                &environment,
                &session,
                &signer,
            )
            .map(|m| m.access_token.len())
            .unwrap_or(0)
        };
        for threads in [1, cores] {
            println!(
                "{} tokens/s (evaluate + sign) on {threads} thread(s): {:.0}",
                algorithm.as_str(),
                per_second(threads, o.seconds, issue)
            );
        }
    }
    Ok(())
}
