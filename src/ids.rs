//! Typed ids, random tokens and text-backed enums.
//!
//! Ids are prefixed ULIDs (`flag_01J…`) generated in Rust, stored as text on
//! both databases. Each kind of id is its own type, so a user id can never
//! be passed where an organization id is expected.

use std::sync::{Mutex, PoisonError};

use rand::RngCore;

/// Implements diesel's `Text` conversions for a type that is stored as its
/// string form, on every backend (SQLite, PostgreSQL and the multi-backend).
#[macro_export]
macro_rules! text_sql {
    ($ty:ty, |$text:ident| $parse:expr) => {
        impl<DB> diesel::serialize::ToSql<diesel::sql_types::Text, DB> for $ty
        where
            DB: diesel::backend::Backend,
            str: diesel::serialize::ToSql<diesel::sql_types::Text, DB>,
        {
            fn to_sql<'b>(
                &'b self,
                out: &mut diesel::serialize::Output<'b, '_, DB>,
            ) -> diesel::serialize::Result {
                <str as diesel::serialize::ToSql<diesel::sql_types::Text, DB>>::to_sql(
                    self.as_str(),
                    out,
                )
            }
        }

        impl<DB> diesel::deserialize::FromSql<diesel::sql_types::Text, DB> for $ty
        where
            DB: diesel::backend::Backend,
            String: diesel::deserialize::FromSql<diesel::sql_types::Text, DB>,
        {
            fn from_sql(bytes: DB::RawValue<'_>) -> diesel::deserialize::Result<Self> {
                let $text = <String as diesel::deserialize::FromSql<
                    diesel::sql_types::Text,
                    DB,
                >>::from_sql(bytes)?;
                $parse
            }
        }
    };
}

/// Declares an id type with its prefix.
macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(
            Debug,
            Clone,
            PartialEq,
            Eq,
            Hash,
            PartialOrd,
            Ord,
            serde::Serialize,
            serde::Deserialize,
            diesel::AsExpression,
            diesel::FromSqlRow,
        )]
        #[diesel(sql_type = diesel::sql_types::Text)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub const PREFIX: &'static str = $prefix;

            /// A new id, sortable by creation time.
            pub fn generate() -> Self {
                $name(new_id($prefix))
            }

            /// The id `text` names, if it has this kind's prefix.
            pub fn parse(text: &str) -> Option<Self> {
                let text = text.trim();
                let rest = text.strip_prefix($prefix)?.strip_prefix('_')?;
                (!rest.is_empty() && rest.len() <= 64 && rest.bytes().all(|b| b.is_ascii_alphanumeric()))
                    .then(|| $name(text.to_string()))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }

            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl std::ops::Deref for $name {
            type Target = str;
            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }

        impl PartialEq<String> for $name {
            fn eq(&self, other: &String) -> bool {
                &self.0 == other
            }
        }

        impl PartialEq<$name> for String {
            fn eq(&self, other: &$name) -> bool {
                *self == other.0
            }
        }

        impl PartialEq<$name> for &str {
            fn eq(&self, other: &$name) -> bool {
                *self == other.0
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl std::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        $crate::text_sql!($name, |text| Ok($name(text)));
    };
}

id_type!(AdminId, "admin");
id_type!(EnvironmentId, "env");
id_type!(
    /// An environment's public OAuth client id (`client_…`).
    ClientId,
    "client"
);
id_type!(FlagId, "flag");
id_type!(OrgId, "org");
id_type!(UserId, "user");
id_type!(ApiKeyId, "key");
id_type!(SessionId, "session");
id_type!(AuditEventId, "audit");
id_type!(WebhookEndpointId, "we");
id_type!(WebhookEventId, "event");
id_type!(WebhookDeliveryId, "whd");
id_type!(WebhookAttemptId, "wha");

/// One generator for the process, so ids made within the same millisecond
/// still sort in the order they were made (a cursor walk never skips one).
static IDS: Mutex<Option<ulid::Generator>> = Mutex::new(None);

/// A new id such as `flag_01JD…`: sortable by creation time.
fn new_id(prefix: &str) -> String {
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

/// A random token of `bytes` bytes, as hex.
pub fn random_token(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rngs::OsRng.fill_bytes(&mut buf);
    hex::encode(buf)
}

/// Declares an enum stored as text (e.g. `"some"`), with its parsing, its
/// serde form and its diesel conversions.
#[macro_export]
macro_rules! text_enum {
    ($(#[$doc:meta])* $vis:vis enum $name:ident { $($(#[$vdoc:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord,
            serde::Serialize, serde::Deserialize, utoipa::ToSchema,
            diesel::AsExpression, diesel::FromSqlRow,
        )]
        #[diesel(sql_type = diesel::sql_types::Text)]
        $vis enum $name {
            $($(#[$vdoc])* #[serde(rename = $text)] #[schema(rename = $text)] $variant),+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn parse(text: &str) -> Option<Self> {
                match text {
                    $($text => Some($name::$variant),)+
                    _ => None,
                }
            }

            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }

            /// The accepted values, quoted, for error messages.
            pub fn choices() -> String {
                let quoted: Vec<String> = Self::ALL.iter().map(|v| format!("{:?}", v.as_str())).collect();
                quoted.join(", ")
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.as_str() == *other
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.as_str() == other
            }
        }

        $crate::text_sql!($name, |text| $name::parse(&text)
            .ok_or_else(|| format!("unexpected {} {:?} in the database", stringify!($name), text).into()));
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_parse_only_with_their_own_prefix() {
        let id = FlagId::generate();
        assert!(id.as_str().starts_with("flag_"));
        assert_eq!(FlagId::parse(id.as_str()), Some(id.clone()));
        assert_eq!(UserId::parse(id.as_str()), None);
        assert_eq!(FlagId::parse("flag_"), None);
        assert_eq!(FlagId::parse("flag_a b"), None);
        assert_eq!(OrgId::parse(" org_01ABC "), Some(OrgId("org_01ABC".into())));
    }

    #[test]
    fn ids_sort_in_the_order_they_were_made() {
        let ids: Vec<UserId> = (0..1000).map(|_| UserId::generate()).collect();
        let mut sorted = ids.clone();
        sorted.sort();
        assert_eq!(ids, sorted);
    }
}
