//! Parsing of the values people type, shared by every form and API.

/// A slug: lowercase letters, digits and `-`, 1–64 characters, starting with a letter or digit.
pub fn slug(input: &str) -> Result<String, String> {
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
    Ok(s.to_string())
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
    if s.chars().any(char::is_control) {
        return Err(format!("A {what} cannot contain control characters."));
    }
    Ok(s.to_string())
}

/// Optional free text of at most `max` characters.
pub fn text(input: &str, what: &str, max: usize) -> Result<String, String> {
    let s = input.trim();
    if s.chars().count() > max {
        return Err(format!("The {what} has at most {max} characters."));
    }
    Ok(s.to_string())
}

/// An email address: one `@`, something on both sides, a dot in the domain.
pub fn email(input: &str) -> Result<String, String> {
    let s = input.trim().to_lowercase();
    if s.is_empty() {
        return Err("Enter an email address.".into());
    }
    let valid = s.len() <= 254
        && !s.chars().any(|c| c.is_whitespace() || c.is_control())
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
        Ok(s)
    } else {
        Err("Enter an email address like name@example.com.".into())
    }
}

/// An optional external id: the application's own id for an object.
pub fn external_id(input: &str) -> Result<Option<String>, String> {
    let s = input.trim();
    if s.is_empty() {
        return Ok(None);
    }
    if s.len() > 128 {
        return Err("An external id has at most 128 characters.".into());
    }
    if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("An external id cannot contain spaces.".into());
    }
    Ok(Some(s.to_string()))
}

/// Comma-separated tags, each a slug; duplicates dropped, order kept.
pub fn tags(input: &str) -> Result<Vec<String>, String> {
    let mut out: Vec<String> = Vec::new();
    for raw in input.split(',') {
        let raw = raw.trim().to_lowercase();
        if raw.is_empty() {
            continue;
        }
        let tag = slug(&raw).map_err(|e| format!("Tag {raw:?}: {e}"))?;
        if tag.len() > 32 {
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
        assert_eq!(tags("Beta, growth,beta, ").unwrap(), vec!["beta", "growth"]);
        assert!(tags("not ok").is_err());
    }

    #[test]
    fn emails_are_checked() {
        assert_eq!(email(" Ada@Example.com ").unwrap(), "ada@example.com");
        assert!(email("nope").is_err());
        assert!(email("a@b").is_err());
        assert!(email("a b@c.com").is_err());
    }
}
