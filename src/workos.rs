//! WorkOS's object shapes, shared by the WorkOS-compatible API
//! (`crate::web::workos`) and webhook payloads: a Flagpole flag in one
//! environment as WorkOS's `feature_flag`, a user as WorkOS's `user`, and
//! the rule set that the SDK's runtime client polls.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, PoisonError};

use actix_web::web::Bytes;
use diesel::prelude::*;
use serde_json::{json, Value};

use crate::db::schema::{flags, rules, targets};
use crate::db::DbConn;
use crate::error::AppError;
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

/// Every live flag of an environment as the SDK's runtime client reads it,
/// by slug: `enabled` (the switch), `default_value` (true for the mode All)
/// and, for the mode Some, the targets that get it. The client's
/// `isEnabled(slug, {userId, organizationId})` then agrees with Flagpole's
/// evaluation; a rule of mode None lists no targets, since it is off for them.
pub fn runtime_rule_set(conn: &mut DbConn, env_id: &str) -> QueryResult<BTreeMap<String, Value>> {
    let rows: Vec<(Flag, Rule)> = flags::table
        .inner_join(rules::table)
        .filter(flags::archived.eq(false))
        .filter(rules::environment_id.eq(env_id))
        .select((Flag::as_select(), Rule::as_select()))
        .load(conn)?;
    let mut targets_of: HashMap<String, (Vec<Value>, Vec<Value>)> = HashMap::new();
    let some: Vec<&str> = rows
        .iter()
        .filter(|(_, r)| mode_of(r) == Mode::Some)
        .map(|(f, _)| f.id.as_str())
        .collect();
    for chunk in some.chunks(500) {
        let found: Vec<(String, String, String)> = targets::table
            .filter(targets::environment_id.eq(env_id))
            .filter(targets::flag_id.eq_any(chunk))
            .order(targets::target_id.asc())
            .select((targets::flag_id, targets::target_type, targets::target_id))
            .load(conn)?;
        for (flag_id, kind, id) in found {
            let entry = targets_of.entry(flag_id).or_default();
            let list = if kind == "user" {
                &mut entry.0
            } else {
                &mut entry.1
            };
            list.push(json!({"id": id, "enabled": true}));
        }
    }
    Ok(rows
        .into_iter()
        .map(|(flag, rule)| {
            let (users, organizations) = targets_of.remove(&flag.id).unwrap_or_default();
            let entry = json!({
                "slug": flag.slug,
                "enabled": rule.enabled,
                "default_value": mode_of(&rule) == Mode::All,
                "targets": {"users": users, "organizations": organizations},
            });
            (flag.slug, entry)
        })
        .collect())
}

/// The runtime rule sets as sent, one per environment, built once per
/// database revision: every client of an environment polls the same bytes
/// until something changes.
#[derive(Default)]
pub struct RuleSets {
    built: Mutex<HashMap<String, (i64, Bytes)>>,
}

impl RuleSets {
    /// The JSON of `env_id`'s rule set as of now.
    pub fn get(&self, conn: &mut DbConn, env_id: &str) -> Result<Bytes, AppError> {
        // Read before the rules: a set is never older than its revision.
        let revision = crate::audit::revision(conn)?;
        let cached = self
            .built
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(env_id)
            .filter(|(r, _)| *r == revision)
            .map(|(_, body)| body.clone());
        if let Some(body) = cached {
            return Ok(body);
        }
        let body = Bytes::from(
            serde_json::to_vec(&runtime_rule_set(conn, env_id)?)
                .map_err(|e| AppError::Internal(e.into()))?,
        );
        self.built
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(env_id.to_string(), (revision, body.clone()));
        Ok(body)
    }
}
