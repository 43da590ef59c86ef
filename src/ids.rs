//! Prefixed ULID ids and RFC 3339 timestamps, generated in Rust so the same
//! schema works on both databases.

use std::sync::{Mutex, PoisonError};

use chrono::{SecondsFormat, Utc};
use rand::RngCore;

/// One generator for the process, so ids made within the same millisecond
/// still sort in the order they were made (a cursor walk never skips one).
static IDS: Mutex<Option<ulid::Generator>> = Mutex::new(None);

/// A new id such as `flag_01JD…`: sortable by creation time.
pub fn new_id(prefix: &str) -> String {
    let mut generator = IDS.lock().unwrap_or_else(PoisonError::into_inner);
    let id = generator
        .get_or_insert_with(ulid::Generator::new)
        .generate()
        // The random part overflowed within one millisecond: wait for the next.
        .unwrap_or_else(|_| {
            std::thread::sleep(std::time::Duration::from_millis(1));
            ulid::Ulid::new()
        });
    format!("{prefix}_{id}")
}

/// Now, as fixed-width RFC 3339 text in UTC, which sorts as it reads.
pub fn now() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// A random token of `bytes` bytes, URL-safe hex.
pub fn random_token(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rngs::OsRng.fill_bytes(&mut buf);
    hex::encode(buf)
}

/// "2026-11-25 08:18 UTC" for people.
pub fn human_time(rfc3339: &str) -> String {
    match chrono::DateTime::parse_from_rfc3339(rfc3339) {
        Ok(t) => t
            .with_timezone(&Utc)
            .format("%Y-%m-%d %H:%M UTC")
            .to_string(),
        Err(_) => rfc3339.to_string(),
    }
}
