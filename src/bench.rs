//! `flagpole bench`: measures the evaluation engine and token signing on this
//! machine, in process, so speed is measured rather than hoped for.

use std::time::{Duration, Instant};

use crate::evaluation::{Index, RuleFacts};
use crate::keys::{self, SigningAlgorithm};
use crate::models::{Environment, Session};
use crate::sessions::{self, TokenSettings};
use crate::signing::Signer;

pub struct BenchOptions {
    pub flags: usize,
    pub users: usize,
    pub organizations: usize,
    pub seconds: f64,
}

/// A synthetic environment: a tenth of the flags on for all, the rest
/// targeting a handful of users and organizations each.
fn synthetic_index(o: &BenchOptions) -> Index {
    let rules = (0..o.flags).map(|i| RuleFacts {
        environment_id: "env_bench".into(),
        slug: format!("flag-{i:05}"),
        enabled: true,
        archived: false,
        mode: if i % 10 == 0 {
            "all".into()
        } else {
            "some".into()
        },
        user_targets: (0..5)
            .map(|k| format!("user_{}", (i * 7 + k * 13) % o.users))
            .collect(),
        organization_targets: (0..3)
            .map(|k| format!("org_{}", (i * 5 + k * 11) % o.organizations))
            .collect(),
    });
    Index::build(rules)
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
    let built = Instant::now();
    let index = synthetic_index(o);
    println!(
        "index build: {:.1} ms",
        built.elapsed().as_secs_f64() * 1000.0
    );
    let env = index
        .environment("env_bench")
        .ok_or_else(|| anyhow::anyhow!("empty index"))?;
    let user_ids: Vec<String> = (0..o.users).map(|i| format!("user_{i}")).collect();
    let org_ids: Vec<String> = (0..o.organizations).map(|i| format!("org_{i}")).collect();
    let sample = env.evaluate(Some(&user_ids[1]), Some(&org_ids[1]));
    println!("a typical answer holds {} flags", sample.len());
    let evaluate = |i: usize| {
        env.evaluate(
            Some(&user_ids[i % o.users]),
            Some(&org_ids[i % o.organizations]),
        )
        .len()
    };
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
    let environment = Environment {
        id: "env_bench".into(),
        slug: "bench".into(),
        name: "Bench".into(),
        position: 0,
        color: "#475569".into(),
        require_confirmation: false,
        client_id: "client_bench".into(),
        created_at: String::new(),
        updated_at: String::new(),
    };
    for algorithm in SigningAlgorithm::ALL {
        let key = keys::generate(algorithm)?;
        let signer = Signer {
            kid: key.kid,
            algorithm,
            key: std::sync::Arc::new(algorithm.encoding_key(&key.private_der)),
        };
        let issue = |i: usize| {
            let session = Session {
                id: format!("session_{i}"),
                environment_id: environment.id.clone(),
                user_id: user_ids[i % o.users].clone(),
                organization_id: Some(org_ids[i % o.organizations].clone()),
                created_at: String::new(),
                last_refreshed_at: String::new(),
                expires_at: String::new(),
                revoked_at: None,
                revoked_reason: None,
            };
            let flags = env.evaluate(Some(&session.user_id), session.organization_id.as_deref());
            sessions::mint_access_token(
                &signer,
                &settings,
                "http://bench",
                &environment,
                &session,
                &flags,
            )
            .map(|t| t.len())
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
