//! Each environment's signing keys in the database, the JWKS built from
//! them, and rotation that keeps retired public keys published until every
//! token they signed has expired.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use diesel::prelude::*;
use serde_json::{json, Value};

use super::keys::{self, KeySealer, SigningAlgorithm};
use crate::audit::{Actor, Change};
use crate::changes::{changed, Changed};
use crate::db::schema::signing_keys;
use crate::db::DbConn;
use crate::error::{Error, Result};
use crate::ids::EnvironmentId;
use crate::time::Timestamp;

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = signing_keys)]
pub struct SigningKey {
    /// The `kid`.
    pub id: String,
    pub environment_id: EnvironmentId,
    pub algorithm: SigningAlgorithm,
    pub private_key_sealed: String,
    pub public_jwk: String,
    pub created_at: Timestamp,
    pub retired_at: Option<Timestamp>,
    pub publish_until: Option<Timestamp>,
}

fn insert_new_key(
    conn: &mut DbConn,
    sealer: &KeySealer,
    environment_id: &EnvironmentId,
    algorithm: SigningAlgorithm,
) -> Result<SigningKey> {
    let generated = keys::generate(algorithm)?;
    let row = SigningKey {
        private_key_sealed: sealer.seal(&generated.private_der, &generated.kid)?,
        id: generated.kid,
        environment_id: environment_id.clone(),
        algorithm,
        public_jwk: generated.public_jwk.to_string(),
        created_at: Timestamp::now(),
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
    environment_id: &EnvironmentId,
) -> Result<SigningKey> {
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

/// Retires the environment's key and starts signing with a new one. The
/// retired public key stays in the JWKS for `publish_for` (at least the
/// longest any token it signed can live).
pub fn rotate(
    conn: &mut DbConn,
    sealer: &KeySealer,
    actor: &Actor,
    environment_id: &EnvironmentId,
    algorithm: Option<SigningAlgorithm>,
    publish_for: Duration,
) -> Result<SigningKey> {
    crate::db::write_transaction(conn, |conn| {
        let current = active_key(conn, sealer, environment_id)?;
        let algorithm = algorithm.unwrap_or(current.algorithm);
        let now = Timestamp::now();
        diesel::update(
            signing_keys::table
                .filter(signing_keys::environment_id.eq(environment_id))
                .filter(signing_keys::retired_at.is_null()),
        )
        .set((
            signing_keys::retired_at.eq(now),
            signing_keys::publish_until.eq(now.plus(publish_for)),
        ))
        .execute(conn)?;
        let new = insert_new_key(conn, sealer, environment_id, algorithm)?;
        changed(conn, Changed::Credentials(environment_id))?;
        Change::new("signing_key.rotated", "signing_key", &new.id, &new.id)
            .environment(environment_id)
            .before(json!({"kid": current.id, "algorithm": current.algorithm}))
            .after(json!({"kid": new.id, "algorithm": new.algorithm}))
            .record(conn, actor)?;
        Ok(new)
    })
}

/// Every key that verifies tokens still alive: current ones, and retired
/// ones until their tokens have expired. `environment_id` narrows it.
pub fn published_keys(
    conn: &mut DbConn,
    environment_id: Option<&EnvironmentId>,
) -> Result<Vec<SigningKey>> {
    let mut query = signing_keys::table
        .filter(
            signing_keys::retired_at
                .is_null()
                .or(signing_keys::publish_until.gt(Timestamp::now())),
        )
        .order(signing_keys::created_at.desc())
        .into_boxed();
    if let Some(env) = environment_id {
        query = query.filter(signing_keys::environment_id.eq(env.clone()));
    }
    Ok(query.select(SigningKey::as_select()).load(conn)?)
}

/// The RFC 7517 key set of `keys`.
pub fn jwks(keys: &[SigningKey]) -> Value {
    let keys: Vec<Value> = keys
        .iter()
        .filter_map(|k| serde_json::from_str(&k.public_jwk).ok())
        .collect();
    json!({ "keys": keys })
}

/// A key ready to sign with: parsed once, with its JWT header already
/// encoded, so a signature is the only work left per token.
#[derive(Clone)]
pub struct Signer {
    pub kid: String,
    pub algorithm: SigningAlgorithm,
    key: Arc<KeyPair>,
    /// The base64url of the JWT header (`alg`, `typ`, `kid`).
    header: Arc<str>,
}

/// A parsed private key.
enum KeyPair {
    Es256(aws_lc_rs::signature::EcdsaKeyPair),
    Rs256(aws_lc_rs::signature::RsaKeyPair),
    EdDsa(aws_lc_rs::signature::Ed25519KeyPair),
}

impl KeyPair {
    /// Parses the private key's DER form (PKCS#8 for EC and Ed25519, PKCS#1
    /// for RSA, as `keys::generate` makes them).
    fn parse(algorithm: SigningAlgorithm, der: &[u8]) -> Result<KeyPair> {
        use aws_lc_rs::signature as sig;
        let bad =
            |what: &str| Error::internal(anyhow::anyhow!("a stored {what} key does not parse"));
        Ok(match algorithm {
            SigningAlgorithm::Es256 => KeyPair::Es256(
                sig::EcdsaKeyPair::from_pkcs8(&sig::ECDSA_P256_SHA256_FIXED_SIGNING, der)
                    .map_err(|_| bad("ES256"))?,
            ),
            SigningAlgorithm::Rs256 => {
                KeyPair::Rs256(sig::RsaKeyPair::from_der(der).map_err(|_| bad("RS256"))?)
            }
            SigningAlgorithm::EdDsa => KeyPair::EdDsa(
                sig::Ed25519KeyPair::from_pkcs8_maybe_unchecked(der).map_err(|_| bad("EdDSA"))?,
            ),
        })
    }

    fn sign(&self, message: &[u8]) -> Result<Vec<u8>> {
        let failed = |_| Error::internal(anyhow::anyhow!("signing a token failed"));
        let rng = aws_lc_rs::rand::SystemRandom::new();
        match self {
            KeyPair::Es256(key) => Ok(key.sign(&rng, message).map_err(failed)?.as_ref().to_vec()),
            KeyPair::Rs256(key) => {
                let mut signature = vec![0; key.public_modulus_len()];
                key.sign(
                    &aws_lc_rs::signature::RSA_PKCS1_SHA256,
                    &rng,
                    message,
                    &mut signature,
                )
                .map_err(failed)?;
                Ok(signature)
            }
            KeyPair::EdDsa(key) => Ok(key.sign(message).as_ref().to_vec()),
        }
    }
}

/// Opened signing keys per environment, re-read from the database every
/// `ttl` so a rotation by another instance is picked up.
pub struct SignerCache {
    ttl: Duration,
    entries: Mutex<HashMap<EnvironmentId, (Signer, Instant)>>,
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
        environment_id: &EnvironmentId,
    ) -> Result<Signer> {
        if let Some((signer, at)) = self
            .entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(environment_id)
        {
            if at.elapsed() < self.ttl {
                return Ok(signer.clone());
            }
        }
        let row = active_key(conn, sealer, environment_id)?;
        let der = sealer.open(&row.private_key_sealed, &row.id)?;
        let signer = Signer::new(row.id, row.algorithm, &der)?;
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(environment_id.clone(), (signer.clone(), Instant::now()));
        Ok(signer)
    }

    /// Forgets an environment's key, after this instance rotated it.
    pub fn forget(&self, environment_id: &EnvironmentId) {
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(environment_id);
    }
}

impl Signer {
    /// A signer for the private key `der` of `algorithm`, named `kid`.
    pub fn new(kid: String, algorithm: SigningAlgorithm, der: &[u8]) -> Result<Signer> {
        let mut header = jsonwebtoken::Header::new(algorithm.jwt_algorithm());
        header.kid = Some(kid.clone());
        let header = serde_json::to_vec(&header).map_err(Error::internal)?;
        Ok(Signer {
            key: Arc::new(KeyPair::parse(algorithm, der)?),
            header: Arc::from(URL_SAFE_NO_PAD.encode(header)),
            kid,
            algorithm,
        })
    }

    /// Signs `claims` as a JWT (JWS compact form) with this key, its `alg`
    /// and its `kid`.
    pub fn sign(&self, claims: &impl serde::Serialize) -> Result<String> {
        let claims = serde_json::to_vec(claims).map_err(Error::internal)?;
        let mut token = String::with_capacity(self.header.len() + claims.len() * 4 / 3 + 100);
        token.push_str(&self.header);
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(&claims, &mut token);
        let signature = self.key.sign(token.as_bytes())?;
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(&signature, &mut token);
        Ok(token)
    }
}
