//! Tokens: sessions with rotating refresh tokens, the signed access tokens
//! whose `feature_flags` claim says which flags are on, and the keys that
//! sign them (sealed at rest, published as a JWKS).

pub mod keys;
pub mod sessions;
pub mod signing;

use crate::environments::Environment;
use crate::error::Result;
use crate::evaluation::model::Model;
use crate::evaluation::Context;
use sessions::{Claims, Session, TokenSettings};
use signing::Signer;

/// An access token and the flags its claim carries.
pub struct Minted {
    pub access_token: String,
    pub feature_flags: Vec<String>,
}

/// Evaluates the session's flags and signs its access token. The session's
/// membership was checked when it started (or switched organization).
pub fn mint(
    model: &Model,
    settings: &TokenSettings,
    issuer: &str,
    env: &Environment,
    session: &Session,
    signer: &Signer,
) -> Result<Minted> {
    let context = Context::new(
        Some(session.user_id.clone()),
        session.organization_id.clone(),
    );
    let feature_flags: Vec<String> = model
        .evaluate(&env.id, &context)
        .into_iter()
        .map(str::to_string)
        .collect();
    let access_token = signer.sign(&Claims::new(settings, issuer, env, session, &feature_flags))?;
    Ok(Minted {
        access_token,
        feature_flags,
    })
}
