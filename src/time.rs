//! The one timestamp type: an instant in UTC, stored as fixed-width RFC 3339
//! text with microseconds (`2026-11-25T08:18:03.123456Z`), which sorts as it
//! reads on both databases, and sent as RFC 3339 in JSON.

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};

/// Kept as its stored text (27 ASCII bytes), so it is `Copy`, orders
/// chronologically, and can be handed to the database without allocating.
#[derive(
    Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, diesel::AsExpression, diesel::FromSqlRow,
)]
#[diesel(sql_type = diesel::sql_types::Text)]
pub struct Timestamp([u8; TEXT_LEN]);

const TEXT_LEN: usize = "2026-11-25T08:18:03.123456Z".len();

impl Timestamp {
    fn from_datetime(t: DateTime<Utc>) -> Self {
        let text = t.to_rfc3339_opts(SecondsFormat::Micros, true);
        let mut bytes = [b'0'; TEXT_LEN];
        // Years past 9999 do not fit the fixed width: clamp to the last instant.
        if text.len() == TEXT_LEN {
            bytes.copy_from_slice(text.as_bytes());
            Timestamp(bytes)
        } else {
            Timestamp(*b"9999-12-31T23:59:59.999999Z")
        }
    }

    fn datetime(self) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(self.as_str())
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_default()
    }

    pub fn now() -> Self {
        Self::from_datetime(Utc::now())
    }

    pub fn parse(text: &str) -> Option<Self> {
        DateTime::parse_from_rfc3339(text.trim())
            .ok()
            .map(|t| Self::from_datetime(t.with_timezone(&Utc)))
    }

    pub fn from_unix_seconds(seconds: i64) -> Option<Self> {
        DateTime::from_timestamp(seconds, 0).map(Self::from_datetime)
    }

    /// The stored form.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or("1970-01-01T00:00:00.000000Z")
    }

    pub fn unix_seconds(self) -> i64 {
        self.datetime().timestamp()
    }

    pub fn unix_millis(self) -> i64 {
        self.datetime().timestamp_millis()
    }

    pub fn plus(self, by: Duration) -> Self {
        let by = chrono::Duration::from_std(by).unwrap_or(chrono::Duration::days(365 * 1000));
        Self::from_datetime(self.datetime() + by)
    }

    pub fn minus(self, by: Duration) -> Self {
        let by = chrono::Duration::from_std(by).unwrap_or(chrono::Duration::days(365 * 1000));
        Self::from_datetime(self.datetime() - by)
    }

    pub fn plus_seconds(self, seconds: i64) -> Self {
        Self::from_datetime(self.datetime() + chrono::Duration::seconds(seconds))
    }

    pub fn is_past(self) -> bool {
        self.datetime() < Utc::now()
    }

    /// How long ago this was (zero for the future).
    pub fn elapsed(self) -> Duration {
        (Utc::now() - self.datetime())
            .to_std()
            .unwrap_or(Duration::ZERO)
    }

    /// How long until this (zero for the past).
    pub fn remaining(self) -> Duration {
        (self.datetime() - Utc::now())
            .to_std()
            .unwrap_or(Duration::ZERO)
    }

    /// "2026-11-25 08:18:30 UTC", for people, to the second.
    pub fn human_seconds(self) -> String {
        self.datetime().format("%Y-%m-%d %H:%M:%S UTC").to_string()
    }

    /// "2026-11-25 08:18 UTC", for people.
    pub fn human(self) -> String {
        self.datetime().format("%Y-%m-%d %H:%M UTC").to_string()
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for Timestamp {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str> as serde::Deserialize>::deserialize(d)?;
        Timestamp::parse(&text)
            .ok_or_else(|| serde::de::Error::custom(format!("{text:?} is not an RFC 3339 time")))
    }
}

crate::text_sql!(Timestamp, |text| Timestamp::parse(&text).ok_or_else(|| {
    format!("unexpected timestamp {text:?} in the database").into()
}));

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stored_form_sorts_as_it_reads_and_round_trips() {
        let a = Timestamp::now();
        let b = a.plus(Duration::from_micros(1));
        assert!(a.as_str() < b.as_str());
        assert!(a < b);
        assert_eq!(Timestamp::parse(a.as_str()), Some(a));
        assert_eq!(
            Timestamp::parse("2026-11-25T08:18:00Z").unwrap().human(),
            "2026-11-25 08:18 UTC"
        );
    }
}
