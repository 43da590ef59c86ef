//! Slows password guessing down without letting anyone lock an admin out.
//!
//! Failures are counted per (account, client): after `ACCOUNT_FREE` wrong
//! passwords for one email from one address, each further attempt from that
//! address for that email must wait 1, 2, 4 … seconds (up to `MAX_DELAY`)
//! after the previous failure. An attacker elsewhere therefore slows only
//! their own attempts: the owner signing in from their own address is never
//! held up by someone else's guesses. Failures are also counted per client
//! over every account (password spraying), with a larger allowance. A
//! success clears the (account, client) record; every record is forgotten
//! `WINDOW` after its last failure.
//!
//! Memory is bounded: keys are fixed-size (the SHA-256 of the email, cut to
//! 254 bytes first, and the client address), and at most `MAX_ENTRIES`
//! are kept, the stalest dropped first.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Key {
    Account([u8; 32], IpAddr),
    Client(IpAddr),
}

#[derive(Debug, Clone, Copy)]
struct Record {
    failures: u32,
    last: Instant,
}

#[derive(Default)]
pub struct LoginThrottle {
    records: Mutex<HashMap<Key, Record>>,
}

impl LoginThrottle {
    /// Failures of one account from one client before attempts are slowed.
    pub const ACCOUNT_FREE: u32 = 3;
    /// Failures from one client, over all accounts, before it is slowed.
    pub const CLIENT_FREE: u32 = 30;
    pub const MAX_DELAY: Duration = Duration::from_secs(15 * 60);
    pub const WINDOW: Duration = Duration::from_secs(60 * 60);
    pub const MAX_ENTRIES: usize = 50_000;

    fn account(email: &str, client: IpAddr) -> Key {
        let email = email.trim();
        let mut end = email.len().min(254);
        while !email.is_char_boundary(end) {
            end -= 1;
        }
        let digest = Sha256::digest(email[..end].to_lowercase().as_bytes());
        Key::Account(digest.into(), client)
    }

    /// How long after its last failure a record with `failures` must wait.
    fn delay(failures: u32, free: u32) -> Duration {
        if failures < free {
            return Duration::ZERO;
        }
        let doublings = (failures - free).min(20);
        Duration::from_secs(1u64 << doublings).min(Self::MAX_DELAY)
    }

    /// How long this client must wait before trying this email again;
    /// `None` when it may try now.
    pub fn wait_for(&self, email: &str, client: IpAddr) -> Option<Duration> {
        let records = self.records.lock().unwrap_or_else(PoisonError::into_inner);
        let wait = |key: Key, free: u32| {
            records.get(&key).and_then(|r| {
                Self::delay(r.failures, free)
                    .checked_sub(r.last.elapsed())
                    .filter(|w| !w.is_zero())
            })
        };
        match (
            wait(Self::account(email, client), Self::ACCOUNT_FREE),
            wait(Key::Client(client), Self::CLIENT_FREE),
        ) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        }
    }

    pub fn failed(&self, email: &str, client: IpAddr) {
        let mut records = self.records.lock().unwrap_or_else(PoisonError::into_inner);
        if records.len() >= Self::MAX_ENTRIES {
            records.retain(|_, r| r.last.elapsed() < Self::WINDOW);
        }
        if records.len() >= Self::MAX_ENTRIES {
            // Still full of fresh records: drop the stalest tenth.
            let mut ages: Vec<Instant> = records.values().map(|r| r.last).collect();
            ages.sort_unstable();
            let cut = ages[ages.len() / 10];
            records.retain(|_, r| r.last > cut);
        }
        for key in [Self::account(email, client), Key::Client(client)] {
            let record = records.entry(key).or_insert(Record {
                failures: 0,
                last: Instant::now(),
            });
            if record.last.elapsed() >= Self::WINDOW {
                record.failures = 0;
            }
            record.failures = record.failures.saturating_add(1);
            record.last = Instant::now();
        }
    }

    pub fn succeeded(&self, email: &str, client: IpAddr) {
        let mut records = self.records.lock().unwrap_or_else(PoisonError::into_inner);
        records.remove(&Self::account(email, client));
    }

    /// How many records are kept (for tests).
    pub fn len(&self) -> usize {
        self.records
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ATTACKER: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(203, 0, 113, 7));
    const OWNER: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(198, 51, 100, 1));

    #[test]
    fn another_client_is_never_held_up() {
        let throttle = LoginThrottle::default();
        for _ in 0..10 {
            throttle.failed("owner@example.com", ATTACKER);
        }
        assert!(throttle.wait_for("owner@example.com", ATTACKER).is_some());
        assert_eq!(throttle.wait_for("owner@example.com", OWNER), None);
    }

    #[test]
    fn delays_grow_and_a_success_clears_them() {
        let throttle = LoginThrottle::default();
        for _ in 0..LoginThrottle::ACCOUNT_FREE - 1 {
            throttle.failed("a@example.com", ATTACKER);
        }
        assert_eq!(throttle.wait_for("a@example.com", ATTACKER), None);
        throttle.failed("a@example.com", ATTACKER);
        let first = throttle.wait_for("a@example.com", ATTACKER).unwrap();
        throttle.failed("a@example.com", ATTACKER);
        let second = throttle.wait_for("a@example.com", ATTACKER).unwrap();
        assert!(second > first, "{second:?} > {first:?}");
        throttle.succeeded("a@example.com", ATTACKER);
        assert_eq!(throttle.wait_for("a@example.com", ATTACKER), None);
    }

    #[test]
    fn keys_are_small_and_bounded() {
        let throttle = LoginThrottle::default();
        let huge = "x".repeat(256 * 1024);
        throttle.failed(&huge, ATTACKER);
        // The same first 254 bytes are the same account.
        throttle.failed(&format!("{huge}y"), ATTACKER);
        assert_eq!(
            throttle.len(),
            2,
            "one account record and one client record"
        );
        for i in 0..(LoginThrottle::MAX_ENTRIES + 10) {
            throttle.failed(&format!("u{i}@example.com"), ATTACKER);
        }
        assert!(throttle.len() <= LoginThrottle::MAX_ENTRIES);
    }
}
