//! WorkOS's object shapes, shared by the WorkOS-compatible API
//! (`crate::web::workos`) and webhook payloads: a Flagpole flag in one
//! environment as WorkOS's `feature_flag`, and a user as WorkOS's `user`.

use serde_json::{json, Value};

use crate::flags::{mode_of, Mode};
use crate::models::{Flag, Rule, User};

/// A flag in one environment as WorkOS's `feature_flag` object: `enabled` is
/// the environment's toggle and `default_value` what a user who is not
/// targeted gets while it is on (true only for the mode All).
pub fn feature_flag_json(flag: &Flag, tags: &[String], rule: &Rule) -> Value {
    json!({
        "object": "feature_flag",
        "id": flag.id,
        "slug": flag.slug,
        "name": flag.name,
        "description": flag.description,
        "tags": tags,
        "enabled": rule.enabled,
        "default_value": mode_of(rule) == Mode::All,
        "created_at": flag.created_at,
        "updated_at": flag.updated_at,
    })
}

/// A user as WorkOS's `user` object. Flagpole keeps no verification state,
/// picture, locale or metadata, so those carry neutral values.
pub fn user_json(user: &User) -> Value {
    json!({
        "object": "user",
        "id": user.id,
        "email": user.email,
        "email_verified": false,
        "first_name": non_empty(&user.first_name),
        "last_name": non_empty(&user.last_name),
        "profile_picture_url": null,
        "last_sign_in_at": null,
        "locale": null,
        "external_id": user.external_id,
        "metadata": {},
        "created_at": user.created_at,
        "updated_at": user.updated_at,
    })
}

fn non_empty(s: &str) -> Value {
    if s.is_empty() {
        Value::Null
    } else {
        json!(s)
    }
}
