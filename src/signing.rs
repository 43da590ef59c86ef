//! Each environment's signing keys in the database, the JWKS built from
//! them, and rotation that keeps retired public keys published until every
//! token they signed has expired.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use diesel::prelude::*;
use serde_json::json;

use crate::audit::{self, Change};
use crate::db::schema::signing_keys;
use crate::db::DbConn;
use crate::error::AppError;
use crate::ids::now;
use crate::keys::{self, KeySealer, SigningAlgorithm};
use crate::models::SigningKey;

fn later(seconds: i64) -> String {
    (chrono::Utc::now() + chrono::Duration::seconds(seconds))
        .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

fn insert_new_key(
    conn: &mut DbConn,
    sealer: &KeySealer,
    environment_id: &str,
    algorithm: SigningAlgorithm,
) -> Result<SigningKey, AppError> {
    let generated = keys::generate(algorithm)?;
    let row = SigningKey {
        private_key_sealed: sealer.seal(&generated.private_der, &generated.kid)?,
        id: generated.kid,
        environment_id: environment_id.to_string(),
        algorithm: algorithm.as_str().to_string(),
        public_jwk: generated.public_jwk.to_string(),
        created_at: now(),
        retired_at: None,
        publish_until: None,
    };
    diesel::insert_into(signing_keys::table)
        .values(&row)
        .execute(conn)?;
    Ok(row)
}

/// The key an environment signs with now, created (ES256) on first use.
pub fn active_key(
    conn: &mut DbConn,
    sealer: &KeySealer,
    environment_id: &str,
) -> Result<SigningKey, AppError> {
    let current = signing_keys::table
        .filter(signing_keys::environment_id.eq(environment_id))
        .filter(signing_keys::retired_at.is_null())
        .order(signing_keys::created_at.desc())
        .select(SigningKey::as_select())
        .first(conn)
        .optional()?;
    match current {
        Some(key) => Ok(key),
        None => insert_new_key(conn, sealer, environment_id, SigningAlgorithm::Es256),
    }
}

/// Retires the environment's key and starts signing with a new one at once.
/// The retired public key stays in the JWKS for `access_ttl` (plus the cache
/// margin), the longest any token it signed can live.
pub fn rotate(
    conn: &mut DbConn,
    sealer: &KeySealer,
    actor: &str,
    environment_id: &str,
    algorithm: Option<SigningAlgorithm>,
    access_ttl_seconds: i64,
) -> Result<SigningKey, AppError> {
    crate::db::write_transaction(conn, |conn| {
        let current = active_key(conn, sealer, environment_id)?;
        let algorithm = algorithm
            .or_else(|| SigningAlgorithm::parse(&current.algorithm))
            .unwrap_or(SigningAlgorithm::Es256);
        diesel::update(
            signing_keys::table
                .filter(signing_keys::environment_id.eq(environment_id))
                .filter(signing_keys::retired_at.is_null()),
        )
        .set((
            signing_keys::retired_at.eq(now()),
            signing_keys::publish_until.eq(later(
                access_ttl_seconds + crate::config::DEFAULT_SIGNER_CACHE_TTL.as_secs() as i64 + 60,
            )),
        ))
        .execute(conn)?;
        let new = insert_new_key(conn, sealer, environment_id, algorithm)?;
        audit::record(
            conn,
            actor,
            Change {
                action: "signing_key.rotated",
                object_type: "signing_key",
                object_id: &new.id,
                object_label: &new.id,
                flag_id: None,
                environment_id: Some(environment_id),
                before: Some(json!({"kid": current.id, "algorithm": current.algorithm})),
                after: Some(json!({"kid": new.id, "algorithm": new.algorithm})),
            },
        )?;
        Ok(new)
    })
}

/// Every key that verifies tokens still alive: current ones, and retired
/// ones until their tokens have expired. `environment_id` narrows it.
pub fn published_keys(
    conn: &mut DbConn,
    environment_id: Option<&str>,
) -> QueryResult<Vec<SigningKey>> {
    let mut query = signing_keys::table
        .filter(
            signing_keys::retired_at
                .is_null()
                .or(signing_keys::publish_until.gt(now())),
        )
        .order(signing_keys::created_at.desc())
        .into_boxed();
    if let Some(env) = environment_id {
        query = query.filter(signing_keys::environment_id.eq(env.to_string()));
    }
    query.select(SigningKey::as_select()).load(conn)
}

/// The RFC 7517 key set of `keys`.
pub fn jwks(keys: &[SigningKey]) -> serde_json::Value {
    let keys: Vec<serde_json::Value> = keys
        .iter()
        .filter_map(|k| serde_json::from_str(&k.public_jwk).ok())
        .collect();
    json!({ "keys": keys })
}

/// A key ready to sign with.
#[derive(Clone)]
pub struct Signer {
    pub kid: String,
    pub algorithm: SigningAlgorithm,
    pub key: Arc<jsonwebtoken::EncodingKey>,
}

/// Opened signing keys per environment, re-read from the database every
/// `ttl` so a rotation by another instance is picked up.
pub struct SignerCache {
    ttl: Duration,
    entries: Mutex<HashMap<String, (Signer, Instant)>>,
}

impl SignerCache {
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            entries: Mutex::default(),
        }
    }

    pub fn signer(
        &self,
        conn: &mut DbConn,
        sealer: &KeySealer,
        environment_id: &str,
    ) -> Result<Signer, AppError> {
        if let Some((signer, at)) = self
            .entries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(environment_id)
        {
            if at.elapsed() < self.ttl {
                return Ok(signer.clone());
            }
        }
        let row = active_key(conn, sealer, environment_id)?;
        let algorithm = SigningAlgorithm::parse(&row.algorithm).ok_or_else(|| {
            AppError::Internal(anyhow::anyhow!("unknown algorithm {}", row.algorithm))
        })?;
        let der = sealer.open(&row.private_key_sealed, &row.id)?;
        let signer = Signer {
            kid: row.id,
            algorithm,
            key: Arc::new(algorithm.encoding_key(&der)),
        };
        self.entries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(environment_id.to_string(), (signer.clone(), Instant::now()));
        Ok(signer)
    }

    /// Forgets an environment's key, after this instance rotated it.
    pub fn forget(&self, environment_id: &str) {
        self.entries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(environment_id);
    }
}
