//! Parsing of the values people and applications send, shared by every form
//! and API: each check returns the value as its type (`Slug`, `Email`,
//! `ExternalId`) or a message for the field. Text is refused the same way on
//! both databases: no NUL and no control characters (PostgreSQL cannot store
//! NUL; SQLite could, and would then disagree with it).

use std::fmt;

/// Declares a string newtype that only a check (or the database) makes.
macro_rules! checked_text {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(
            Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default,
            serde::Serialize, diesel::AsExpression, diesel::FromSqlRow,
        )]
        #[diesel(sql_type = diesel::sql_types::Text)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
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

        // What the database holds was checked when it was written.
        $crate::text_sql!($name, |text| Ok($name(text)));
    };
}

checked_text!(
    /// Lowercase letters, digits and `-`, 1–64 characters, starting with a
    /// letter or digit: flag and environment slugs, tags.
    Slug
);
checked_text!(
    /// A lower-cased email address, at most 254 bytes.
    Email
);
checked_text!(
    /// The application's own id for an object: 1–128 characters, no spaces.
    ExternalId
);

/// The longest email accepted anywhere (RFC 5321's path limit).
pub const MAX_EMAIL_BYTES: usize = 254;

fn has_forbidden_control(s: &str, allow_newlines: bool) -> bool {
    s.chars()
        .any(|c| c.is_control() && !(allow_newlines && matches!(c, '\n' | '\r' | '\t')))
}

pub fn slug(input: &str) -> Result<Slug, String> {
    let s = input.trim();
    if s.is_empty() {
        return Err("Enter a slug.".into());
    }
    if s.len() > 64 {
        return Err("A slug has at most 64 characters.".into());
    }
    if !s
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        return Err("Use only lowercase letters, digits and hyphens (-).".into());
    }
    if s.starts_with('-') {
        return Err("A slug starts with a letter or a digit.".into());
    }
    Ok(Slug(s.to_string()))
}

impl Slug {
    /// A slug known to be valid (a literal or one read back), checked anyway.
    pub fn parse(text: &str) -> Option<Slug> {
        slug(text).ok()
    }
}

/// The slug a name suggests: "New Checkout (beta)" → "new-checkout-beta".
pub fn slug_from_name(name: &str) -> String {
    let mut out = String::new();
    for c in name.trim().chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.is_empty() && !out.ends_with('-') {
            out.push('-');
        }
    }
    let out = out.trim_end_matches('-');
    out.chars()
        .take(64)
        .collect::<String>()
        .trim_end_matches('-')
        .to_string()
}

/// A required single-line name of at most `max` characters.
pub fn name(input: &str, what: &str, max: usize) -> Result<String, String> {
    let s = input.trim();
    if s.is_empty() {
        return Err(format!("Enter a {what}."));
    }
    if s.chars().count() > max {
        return Err(format!("A {what} has at most {max} characters."));
    }
    if has_forbidden_control(s, false) {
        return Err(format!("A {what} cannot contain control characters."));
    }
    Ok(s.to_string())
}

/// Optional single-line text (a person's name) of at most `max` characters.
pub fn line(input: &str, what: &str, max: usize) -> Result<String, String> {
    let s = input.trim();
    if s.chars().count() > max {
        return Err(format!("The {what} has at most {max} characters."));
    }
    if has_forbidden_control(s, false) {
        return Err(format!("The {what} cannot contain control characters."));
    }
    Ok(s.to_string())
}

/// Optional free text (a description) of at most `max` characters; line
/// breaks and tabs are allowed, other control characters are not.
pub fn text(input: &str, what: &str, max: usize) -> Result<String, String> {
    let s = input.trim();
    if s.chars().count() > max {
        return Err(format!("The {what} has at most {max} characters."));
    }
    if has_forbidden_control(s, true) {
        return Err(format!(
            "The {what} cannot contain control characters other than line breaks and tabs."
        ));
    }
    Ok(s.to_string())
}

/// An email address: one `@`, something on both sides, a dot in the domain.
pub fn email(input: &str) -> Result<Email, String> {
    let s = input.trim();
    if s.is_empty() {
        return Err("Enter an email address.".into());
    }
    // Checked before anything else is done with it, so an attacker-sized
    // value is never lower-cased, stored or kept.
    if s.len() > MAX_EMAIL_BYTES {
        return Err(format!(
            "An email address has at most {MAX_EMAIL_BYTES} characters."
        ));
    }
    let s = s.to_lowercase();
    let valid = !s.chars().any(|c| c.is_whitespace() || c.is_control())
        && match s.split_once('@') {
            Some((local, domain)) => {
                !local.is_empty()
                    && !domain.contains('@')
                    && domain.contains('.')
                    && !domain.starts_with('.')
                    && !domain.ends_with('.')
            }
            None => false,
        };
    if valid {
        Ok(Email(s))
    } else {
        Err("Enter an email address like name@example.com.".into())
    }
}

impl Email {
    /// The part after the `@`.
    pub fn domain(&self) -> &str {
        self.0.rsplit_once('@').map_or("", |(_, d)| d)
    }
}

/// An optional external id: the application's own id for an object.
pub fn external_id(input: &str) -> Result<Option<ExternalId>, String> {
    let s = input.trim();
    if s.is_empty() {
        return Ok(None);
    }
    if s.len() > 128 {
        return Err("An external id has at most 128 characters.".into());
    }
    if s.chars().any(char::is_whitespace) {
        return Err("An external id cannot contain spaces.".into());
    }
    if s.chars().any(char::is_control) {
        return Err("An external id cannot contain control characters.".into());
    }
    Ok(Some(ExternalId(s.to_string())))
}

/// Comma-separated tags, each a slug of at most 32 characters; duplicates
/// dropped, order kept, at most 10.
pub fn tags(input: &str) -> Result<Vec<Slug>, String> {
    tag_list(input.split(','))
}

/// Tags given one by one (the API's list).
pub fn tag_list<'a>(items: impl IntoIterator<Item = &'a str>) -> Result<Vec<Slug>, String> {
    let mut out: Vec<Slug> = Vec::new();
    for raw in items {
        if raw.contains(',') {
            return Err("A tag cannot contain a comma.".into());
        }
        let raw = raw.trim().to_lowercase();
        if raw.is_empty() {
            continue;
        }
        let tag = slug(&raw).map_err(|e| format!("Tag {raw:?}: {e}"))?;
        if tag.0.len() > 32 {
            return Err(format!("Tag {tag:?} is longer than 32 characters."));
        }
        if !out.contains(&tag) {
            out.push(tag);
        }
    }
    if out.len() > 10 {
        return Err("A flag has at most 10 tags.".into());
    }
    Ok(out)
}

/// A password for a dashboard account.
pub fn password(input: &str) -> Result<String, String> {
    if input.chars().count() < 10 {
        return Err("Use at least 10 characters.".into());
    }
    if input.len() > 256 {
        return Err("Use at most 256 characters.".into());
    }
    Ok(input.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_are_suggested_from_names() {
        assert_eq!(slug_from_name("New Checkout (beta)"), "new-checkout-beta");
        assert_eq!(slug_from_name("  --Hello__World--  "), "hello-world");
        assert_eq!(slug_from_name("Ünïcode only"), "n-code-only");
    }

    #[test]
    fn slugs_reject_what_the_design_forbids() {
        assert!(slug("ok-slug-1").is_ok());
        assert!(slug("Upper").is_err());
        assert!(slug("has space").is_err());
        assert!(slug("-leading").is_err());
        assert!(slug(&"a".repeat(65)).is_err());
        assert!(slug("").is_err());
    }

    #[test]
    fn tags_are_normalized() {
        let tags = tags("Beta, growth,beta, ").unwrap();
        assert_eq!(tags, vec![Slug("beta".into()), Slug("growth".into())]);
        assert!(super::tags("not ok").is_err());
        assert!(tag_list(["a,b"]).is_err());
    }

    #[test]
    fn emails_are_checked() {
        assert_eq!(
            email(" Ada@Example.com ").unwrap().as_str(),
            "ada@example.com"
        );
        assert!(email("nope").is_err());
        assert!(email("a@b").is_err());
        assert!(email("a b@c.com").is_err());
        assert!(email(&format!("{}@example.com", "a".repeat(300))).is_err());
    }

    #[test]
    fn control_characters_are_refused_in_names_and_text() {
        assert!(name("Acme\u{0}", "name", 100).is_err());
        assert!(name("Acme\u{7}", "name", 100).is_err());
        assert!(text("line one\nline two", "description", 100).is_ok());
        assert!(text("bell\u{7}", "description", 100).is_err());
        assert!(text("nul\u{0}", "description", 100).is_err());
        assert!(external_id("a\u{0}b").is_err());
    }
}
