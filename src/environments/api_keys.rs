//! Secret API keys (`sk_…`): each belongs to one environment and decides the
//! environment of every call made with it.
//!
//! A key is 32 random bytes, so it cannot be guessed or brute-forced from its
//! hash: a fast SHA-256 is enough at rest, and checking a key costs
//! microseconds on every API call (argon2 would cost tens of milliseconds each).

use diesel::prelude::*;
use serde_json::json;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::Environment;
use crate::audit::{Actor, Change};
use crate::changes::{changed, Changed};
use crate::db::schema::{api_keys, environments};
use crate::db::DbConn;
use crate::error::{Entity, Error, OrNotFound, Result};
use crate::ids::{random_token, ApiKeyId, EnvironmentId};
use crate::time::Timestamp;
use crate::validate;

crate::text_enum! {
    /// What a key may do, each scope including the ones before it:
    /// `publishable` (`pk_…`: evaluation only, `/api/v1/evaluate` and OFREP,
    /// safe in a browser), `evaluation` (also sessions and the SDK's rule
    /// set), `environment` (also the flags' rules in its own environment),
    /// `admin` (also flags, the directory and the audit log of every
    /// environment). All but `publishable` are secret (`sk_…`).
    pub enum KeyScope {
        Publishable = "publishable",
        Evaluation = "evaluation",
        Environment = "environment",
        Admin = "admin",
    }
}

impl KeyScope {
    /// The prefix of its keys: `pk_` for publishable ones, `sk_` for secret ones.
    pub fn prefix(self) -> &'static str {
        match self {
            KeyScope::Publishable => "pk_",
            _ => "sk_",
        }
    }

    /// In words, for the dashboard.
    pub fn description(self) -> &'static str {
        match self {
            KeyScope::Publishable => {
                "Evaluation only (OFREP, /api/v1/evaluate), from the browser origins allowed below: for web pages and mobile apps."
            }
            KeyScope::Evaluation => {
                "Sessions, evaluation, OFREP and the SDK's rule set: what an application backend needs."
            }
            KeyScope::Environment => "Also the flags' rules in this environment: for deploy scripts.",
            KeyScope::Admin => {
                "Also flags, users, organizations and every environment's audit log: for automation you trust."
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable, Insertable)]
#[diesel(table_name = api_keys)]
pub struct ApiKey {
    pub id: ApiKeyId,
    pub environment_id: EnvironmentId,
    pub name: String,
    pub prefix: String,
    pub secret_hash: String,
    pub created_by: String,
    pub created_at: Timestamp,
    pub last_used_at: Option<Timestamp>,
    pub revoked_at: Option<Timestamp>,
    pub scope: KeyScope,
}

impl ApiKey {
    /// Who the audit trail names for changes made with this key.
    pub fn actor(&self) -> Actor {
        Actor::ApiKey {
            id: self.id.clone(),
            name: self.name.clone(),
            prefix: self.prefix.clone(),
        }
    }
}

pub fn hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Creates a key and returns it with its secret, which is never stored.
pub fn create(
    conn: &mut DbConn,
    actor: &Actor,
    environment_id: &EnvironmentId,
    name: &str,
    scope: KeyScope,
) -> Result<(ApiKey, String)> {
    let name = validate::name(name, "name", 60).map_err(|e| Error::invalid("name", e))?;
    let secret = format!("{}{}", scope.prefix(), random_token(32));
    crate::db::write_transaction(conn, |conn| {
        let env_id: EnvironmentId = environments::table
            .find(environment_id)
            .select(environments::id)
            .first(conn)
            .or_not_found(Entity::Environment)?;
        let key = ApiKey {
            id: ApiKeyId::generate(),
            environment_id: env_id,
            name: name.clone(),
            prefix: secret[..11].to_string(),
            secret_hash: hash(&secret),
            created_by: actor.label(),
            created_at: Timestamp::now(),
            last_used_at: None,
            revoked_at: None,
            scope,
        };
        diesel::insert_into(api_keys::table)
            .values(&key)
            .execute(conn)?;
        changed(conn, Changed::Credentials(&key.environment_id))?;
        Change::new("api_key.created", "api_key", &key.id, &key.name)
            .environment(&key.environment_id)
            .after(json!({"name": key.name, "prefix": key.prefix, "scope": key.scope}))
            .record(conn, actor)?;
        Ok((key, secret.clone()))
    })
}

pub fn list(conn: &mut DbConn, environment_id: &EnvironmentId) -> Result<Vec<ApiKey>> {
    Ok(api_keys::table
        .filter(api_keys::environment_id.eq(environment_id))
        .order(api_keys::created_at.desc())
        .select(ApiKey::as_select())
        .load(conn)?)
}

/// Revokes a key of `environment_id`; calls made with it fail from now on.
pub fn revoke(
    conn: &mut DbConn,
    actor: &Actor,
    environment_id: &EnvironmentId,
    id: &ApiKeyId,
) -> Result<ApiKey> {
    crate::db::write_transaction(conn, |conn| {
        let key: ApiKey = api_keys::table
            .find(id)
            .filter(api_keys::environment_id.eq(environment_id))
            .select(ApiKey::as_select())
            .first(conn)
            .or_not_found(Entity::ApiKey)?;
        if key.revoked_at.is_none() {
            diesel::update(api_keys::table.find(id))
                .set(api_keys::revoked_at.eq(Timestamp::now()))
                .execute(conn)?;
            changed(conn, Changed::Credentials(&key.environment_id))?;
            Change::new("api_key.revoked", "api_key", &key.id, &key.name)
                .environment(&key.environment_id)
                .before(json!({"revoked": false}))
                .after(json!({"revoked": true}))
                .record(conn, actor)?;
        }
        Ok(key)
    })
}

/// When keys were last used on this instance, not yet written: a key check
/// notes the time here, and a background task writes the batch.
#[derive(Default)]
pub struct KeyUsage {
    pending: std::sync::Mutex<std::collections::HashMap<ApiKeyId, Timestamp>>,
}

impl KeyUsage {
    pub fn note(&self, key: &ApiKeyId) {
        let now = Timestamp::now();
        let mut pending = self
            .pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // A key already waiting only moves its time: no copy of its id.
        match pending.get_mut(key) {
            Some(at) => *at = now,
            None => {
                pending.insert(key.clone(), now);
            }
        }
    }

    /// The use of `key` not yet written, if any.
    pub fn pending(&self, key: &ApiKeyId) -> Option<Timestamp> {
        self.pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(key)
            .copied()
    }

    pub fn take(&self) -> std::collections::HashMap<ApiKeyId, Timestamp> {
        std::mem::take(
            &mut *self
                .pending
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }
}

/// Writes when keys were last used (never moving a time back).
pub fn record_usage(
    conn: &mut DbConn,
    usage: &std::collections::HashMap<ApiKeyId, Timestamp>,
) -> Result<()> {
    for (id, at) in usage {
        diesel::update(
            api_keys::table.find(id).filter(
                api_keys::last_used_at
                    .is_null()
                    .or(api_keys::last_used_at.lt(*at)),
            ),
        )
        .set(api_keys::last_used_at.eq(*at))
        .execute(conn)?;
    }
    Ok(())
}

/// The live key behind `secret`, with its environment, by a query; the hot
/// path checks keys in the live model instead (`crate::web::api::ApiAuth`).
pub fn authenticate(conn: &mut DbConn, secret: &str) -> Result<Option<(ApiKey, Environment)>> {
    if !secret.starts_with("sk_") || secret.len() > 200 {
        return Ok(None);
    }
    let digest = hash(secret);
    let found: Option<(ApiKey, Environment)> = api_keys::table
        .inner_join(environments::table)
        .filter(api_keys::secret_hash.eq(&digest))
        .filter(api_keys::revoked_at.is_null())
        .select((ApiKey::as_select(), Environment::as_select()))
        .first(conn)
        .optional()?;
    Ok(found.filter(|(key, _)| bool::from(key.secret_hash.as_bytes().ct_eq(digest.as_bytes()))))
}
