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

crate::text_enum! {
    /// What a key signs. Every environment has one key of each.
    pub enum KeyUsage {
        /// Tokens from `/api/v1/sessions`: the environment's algorithm
        /// (ES256 unless chosen otherwise), fast to sign.
        Tokens = "tokens",
        /// Tokens from the WorkOS surface (`/user_management/authenticate`):
        /// always RS256, the only algorithm the WorkOS SDKs verify, and
        /// published with a certificate at `/sso/jwks/{client_id}`.
        Workos = "workos",
    }
}

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
    /// When it stops signing (`None`: not scheduled).
    pub retired_at: Option<Timestamp>,
    pub publish_until: Option<Timestamp>,
    pub usage: KeyUsage,
    /// When it starts signing (`None`: from its creation). A rotated-in key
    /// is published first and signs from here.
    pub signs_from: Option<Timestamp>,
}

impl SigningKey {
    /// Whether it signs at `now`.
    pub fn signs_at(&self, now: Timestamp) -> bool {
        self.signs_from.is_none_or(|from| from <= now)
            && self.retired_at.is_none_or(|until| until > now)
    }
}

fn insert_new_key(
    conn: &mut DbConn,
    sealer: &KeySealer,
    environment_id: &EnvironmentId,
    usage: KeyUsage,
    generated: keys::GeneratedKey,
    signs_from: Option<Timestamp>,
) -> Result<SigningKey> {
    let algorithm = generated.algorithm;
    let row = SigningKey {
        private_key_sealed: sealer.seal(&generated.private_der, &generated.kid)?,
        id: generated.kid,
        environment_id: environment_id.clone(),
        algorithm,
        public_jwk: generated.public_jwk.to_string(),
        created_at: Timestamp::now(),
        retired_at: None,
        publish_until: None,
        usage,
        signs_from,
    };
    diesel::insert_into(signing_keys::table)
        .values(&row)
        .execute(conn)?;
    Ok(row)
}

/// The keys of an environment and usage that are not retired yet, newest first.
fn unretired(
    conn: &mut DbConn,
    environment_id: &EnvironmentId,
    usage: KeyUsage,
    now: Timestamp,
) -> Result<Vec<SigningKey>> {
    Ok(signing_keys::table
        .filter(signing_keys::environment_id.eq(environment_id))
        .filter(signing_keys::usage.eq(usage))
        .filter(
            signing_keys::retired_at
                .is_null()
                .or(signing_keys::retired_at.gt(now)),
        )
        .order(signing_keys::created_at.desc())
        .select(SigningKey::as_select())
        .load(conn)?)
}

/// The key an environment signs `usage` tokens with now, created on first
/// use (ES256 for tokens, RS256 for the WorkOS surface).
pub fn active_key(
    conn: &mut DbConn,
    sealer: &KeySealer,
    environment_id: &EnvironmentId,
    usage: KeyUsage,
) -> Result<SigningKey> {
    match current_key(conn, environment_id, usage)? {
        Some(key) => Ok(key),
        None => {
            let algorithm = match usage {
                KeyUsage::Tokens => SigningAlgorithm::Es256,
                KeyUsage::Workos => SigningAlgorithm::Rs256,
            };
            let generated = keys::generate(algorithm)?;
            insert_new_key(conn, sealer, environment_id, usage, generated, None)
        }
    }
}

/// The key an environment signs `usage` tokens with now, if it has one:
/// [`active_key`] without the write, for the readers that only show or
/// publish keys.
pub fn current_key(
    conn: &mut DbConn,
    environment_id: &EnvironmentId,
    usage: KeyUsage,
) -> Result<Option<SigningKey>> {
    newest_unretired(conn, environment_id, usage, SigningKey::signs_at)
}

/// Whether every one of `environments` has a key signing each usage now.
pub fn all_keys_present(conn: &mut DbConn, environments: &[EnvironmentId]) -> Result<bool> {
    for env in environments {
        for &usage in KeyUsage::ALL {
            if current_key(conn, env, usage)?.is_none() {
                return Ok(false);
            }
        }
    }
    Ok(true)
}

/// Makes sure each of `environments` has a key signing each usage: a read
/// when they all have (the usual case, so the public key set of an
/// unauthenticated endpoint never queues behind the writes), and one write
/// creating the missing ones when not.
pub async fn ensure_keys(
    state: &std::sync::Arc<crate::AppState>,
    environments: Vec<EnvironmentId>,
) -> Result<()> {
    let ids = environments.clone();
    if state.read(move |conn| all_keys_present(conn, &ids)).await? {
        return Ok(());
    }
    let st = state.clone();
    state
        .write(move |conn| {
            for env in &environments {
                for &usage in KeyUsage::ALL {
                    active_key(conn, &st.sealer, env, usage)?;
                }
            }
            Ok(())
        })
        .await
}

/// A key waiting to take over: published already, signing from `signs_from`.
pub fn pending_key(
    conn: &mut DbConn,
    environment_id: &EnvironmentId,
    usage: KeyUsage,
) -> Result<Option<SigningKey>> {
    newest_unretired(conn, environment_id, usage, |key, now| {
        key.signs_from.is_some_and(|from| from > now)
    })
}

/// The newest key of an environment and usage, not retired yet, that
/// `pick` chooses as of now.
fn newest_unretired(
    conn: &mut DbConn,
    environment_id: &EnvironmentId,
    usage: KeyUsage,
    pick: impl Fn(&SigningKey, Timestamp) -> bool,
) -> Result<Option<SigningKey>> {
    let now = Timestamp::now();
    Ok(unretired(conn, environment_id, usage, now)?
        .into_iter()
        .find(|key| pick(key, now)))
}

/// What a rotation did: the new key of each usage and when they sign.
pub struct Rotation {
    pub tokens: SigningKey,
    pub workos: SigningKey,
    pub takes_over_at: Timestamp,
}

/// Rotates the environment's keys (both usages; the token key to
/// `algorithm`, or its current one). The new keys are published at once and
/// sign from `delay` later, so that verifiers that cache the key set
/// (PyJWT and jose refetch at most every 30 s, the WorkOS Node SDK keeps it
/// up to 5 min) have them before the first token; `delay` zero is for a
/// compromised key. The old keys sign until then and stay published for
/// `publish_for` after (at least the longest any token can live).
pub fn rotate(
    conn: &mut DbConn,
    sealer: &KeySealer,
    actor: &Actor,
    environment_id: &EnvironmentId,
    algorithm: Option<SigningAlgorithm>,
    delay: Duration,
    publish_for: Duration,
) -> Result<Rotation> {
    // Keys are made before the transaction (an RSA key takes a while), so
    // no writer waits for them.
    let token_algorithm = match algorithm {
        Some(algorithm) => algorithm,
        None => active_key(conn, sealer, environment_id, KeyUsage::Tokens)?.algorithm,
    };
    let mut generated = vec![
        keys::generate(SigningAlgorithm::Rs256)?,
        keys::generate(token_algorithm)?,
    ];
    crate::db::write_transaction(conn, |conn| {
        let takes_over_at = Timestamp::now().plus(delay);
        let mut new_keys = Vec::new();
        for &usage in KeyUsage::ALL {
            let current = active_key(conn, sealer, environment_id, usage)?;
            // Every key that would sign past the takeover (the current one,
            // and one still waiting from an earlier rotation) stops there.
            diesel::update(
                signing_keys::table
                    .filter(signing_keys::environment_id.eq(environment_id))
                    .filter(signing_keys::usage.eq(usage))
                    .filter(
                        signing_keys::retired_at
                            .is_null()
                            .or(signing_keys::retired_at.gt(takes_over_at)),
                    ),
            )
            .set((
                signing_keys::retired_at.eq(takes_over_at),
                signing_keys::publish_until.eq(takes_over_at.plus(publish_for)),
            ))
            .execute(conn)?;
            let key = generated
                .pop()
                .ok_or_else(|| Error::internal(anyhow::anyhow!("a key per usage")))?;
            let new = insert_new_key(
                conn,
                sealer,
                environment_id,
                usage,
                key,
                Some(takes_over_at),
            )?;
            Change::new("signing_key.rotated", "signing_key", &new.id, &new.id)
                .environment(environment_id)
                .before(json!({"kid": current.id, "algorithm": current.algorithm, "usage": usage}))
                .after(json!({"kid": new.id, "algorithm": new.algorithm, "usage": usage, "signs_from": takes_over_at}))
                .record(conn, actor)?;
            new_keys.push(new);
        }
        changed(conn, Changed::Credentials(environment_id))?;
        let workos = new_keys
            .pop()
            .ok_or_else(|| Error::internal(anyhow::anyhow!("no key")))?;
        let tokens = new_keys
            .pop()
            .ok_or_else(|| Error::internal(anyhow::anyhow!("no key")))?;
        Ok(Rotation {
            tokens,
            workos,
            takes_over_at,
        })
    })
}

/// Every key that verifies tokens still alive: current ones, ones waiting
/// to take over, and retired ones until their tokens have expired.
/// `environment_id` and `usage` narrow it.
pub fn published_keys(
    conn: &mut DbConn,
    environment_id: Option<&EnvironmentId>,
    usage: Option<KeyUsage>,
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
    if let Some(usage) = usage {
        query = query.filter(signing_keys::usage.eq(usage));
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
    entries: Mutex<HashMap<(EnvironmentId, KeyUsage), (Signer, Instant)>>,
}

impl SignerCache {
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            entries: Mutex::default(),
        }
    }

    /// The signer of the environment's `usage` key. A cached one is kept
    /// for `ttl`, and never past the moment its key stops signing.
    pub fn signer(
        &self,
        conn: &mut DbConn,
        sealer: &KeySealer,
        environment_id: &EnvironmentId,
        usage: KeyUsage,
    ) -> Result<Signer> {
        let cache_key = (environment_id.clone(), usage);
        if let Some((signer, until)) = self
            .entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&cache_key)
        {
            if Instant::now() < *until {
                return Ok(signer.clone());
            }
        }
        let row = active_key(conn, sealer, environment_id, usage)?;
        let der = sealer.open(&row.private_key_sealed, &row.id)?;
        let mut until = Instant::now() + self.ttl;
        if let Some(retired_at) = row.retired_at {
            until = until.min(Instant::now() + retired_at.remaining());
        }
        let signer = Signer::new(row.id, row.algorithm, &der)?;
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(cache_key, (signer.clone(), until));
        Ok(signer)
    }

    /// Forgets an environment's keys, after this instance rotated them.
    pub fn forget(&self, environment_id: &EnvironmentId) {
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|(env, _), _| env != environment_id);
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
