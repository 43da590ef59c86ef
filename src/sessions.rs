//! The token endpoint's sessions: starting one for a user in an organization,
//! rotating refresh tokens (with reuse detection and an optional grace
//! period for tabs that refresh at once), revoking, and minting access tokens.

use diesel::prelude::*;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::db::schema::{memberships, refresh_tokens, sessions};
use crate::db::DbConn;
use crate::directory::{self, OrganizationInput, UserInput};
use crate::error::AppError;
use crate::ids::{new_id, now, random_token};
use crate::keys::KeySealer;
use crate::models::{Environment, Membership, Organization, RefreshToken, Session, User};
use crate::signing::Signer;

/// Token lifetimes, from the configuration.
#[derive(Debug, Clone, Copy)]
pub struct TokenSettings {
    pub access_ttl_seconds: i64,
    pub refresh_ttl_seconds: i64,
    /// Within this many seconds of a rotation, presenting the old refresh
    /// token again returns the same new one instead of revoking the session.
    pub refresh_grace_seconds: i64,
}

/// Why a session call was refused.
#[derive(Debug)]
pub enum SessionError {
    UserNotFound,
    OrganizationNotFound,
    NotAMember,
    InvalidRefreshToken,
    RefreshTokenReused,
    SessionRevoked,
    SessionExpired,
    SessionNotFound,
    Other(AppError),
}

impl<E: Into<AppError>> From<E> for SessionError {
    fn from(err: E) -> Self {
        SessionError::Other(err.into())
    }
}

/// The user an application names: inline objects are created or updated.
pub enum Subject {
    Ids {
        user: String,
        organization: Option<String>,
    },
    Inline {
        user: UserInput,
        organization: Option<OrganizationSpec>,
    },
}

/// An organization named by id or external id, or given inline.
pub enum OrganizationSpec {
    Existing(String),
    Inline(OrganizationInput),
}

/// A session with the refresh token just issued for it.
pub struct Issued {
    pub session: Session,
    pub user: User,
    pub refresh_token: String,
}

fn hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

fn after_seconds(seconds: i64) -> String {
    (chrono::Utc::now() + chrono::Duration::seconds(seconds))
        .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

fn is_past(rfc3339: &str) -> bool {
    chrono::DateTime::parse_from_rfc3339(rfc3339).is_ok_and(|t| t < chrono::Utc::now())
}

fn is_member(conn: &mut DbConn, user_id: &str, org_id: &str) -> QueryResult<bool> {
    let n: i64 = memberships::table
        .filter(memberships::user_id.eq(user_id))
        .filter(memberships::organization_id.eq(org_id))
        .count()
        .get_result(conn)?;
    Ok(n > 0)
}

/// Finds a user by Flagpole id or external id.
pub fn resolve_user(conn: &mut DbConn, key: &str) -> Result<User, SessionError> {
    directory::find_user_by_id_or_external(conn, key)?.ok_or(SessionError::UserNotFound)
}

pub fn resolve_organization(conn: &mut DbConn, key: &str) -> Result<Organization, SessionError> {
    directory::find_org(conn, key)?.ok_or(SessionError::OrganizationNotFound)
}

/// Creates or updates the user with this external id.
fn provision_user(conn: &mut DbConn, actor: &str, input: &UserInput) -> Result<User, SessionError> {
    let existing = match input.external_id.trim() {
        "" => None,
        ext => directory::find_user_by_id_or_external(conn, ext)?,
    };
    Ok(match existing {
        Some(user) => {
            let unchanged = user.email == input.email.trim().to_lowercase()
                && user.first_name == input.first_name.trim()
                && user.last_name == input.last_name.trim();
            if unchanged {
                user
            } else {
                directory::update_user(conn, actor, &user.id, input)?
            }
        }
        None => directory::create_user(conn, actor, input)?,
    })
}

fn provision_org(
    conn: &mut DbConn,
    actor: &str,
    input: &OrganizationInput,
) -> Result<Organization, SessionError> {
    let existing = match input.external_id.trim() {
        "" => None,
        ext => directory::find_org(conn, ext)?,
    };
    Ok(match existing {
        Some(org) if org.name == input.name.trim() => org,
        Some(org) => directory::update_org(conn, actor, &org.id, input)?,
        None => directory::create_org(conn, actor, input)?,
    })
}

fn insert_refresh_token(conn: &mut DbConn, session_id: &str) -> QueryResult<String> {
    let token = format!("rt_{}", random_token(32));
    diesel::insert_into(refresh_tokens::table)
        .values(&RefreshToken {
            token_hash: hash(&token),
            session_id: session_id.to_string(),
            created_at: now(),
            rotated_at: None,
            successor_sealed: None,
        })
        .execute(conn)?;
    Ok(token)
}

/// Starts a session in `env`: `POST /api/v1/sessions`.
pub fn start(
    conn: &mut DbConn,
    settings: &TokenSettings,
    actor: &str,
    env: &Environment,
    subject: &Subject,
) -> Result<Issued, SessionError> {
    crate::db::write_transaction(conn, |conn| {
        let (user, organization) = match subject {
            Subject::Ids { user, organization } => {
                let user = resolve_user(conn, user)?;
                let org = match organization {
                    Some(key) => {
                        let org = resolve_organization(conn, key)?;
                        if !is_member(conn, &user.id, &org.id)? {
                            return Err(SessionError::NotAMember);
                        }
                        Some(org)
                    }
                    None => None,
                };
                (user, org)
            }
            Subject::Inline { user, organization } => {
                let user = provision_user(conn, actor, user)?;
                let org = match organization {
                    Some(OrganizationSpec::Existing(key)) => {
                        let org = resolve_organization(conn, key)?;
                        if !is_member(conn, &user.id, &org.id)? {
                            return Err(SessionError::NotAMember);
                        }
                        Some(org)
                    }
                    Some(OrganizationSpec::Inline(input)) => {
                        let org = provision_org(conn, actor, input)?;
                        if !is_member(conn, &user.id, &org.id)? {
                            diesel::insert_into(memberships::table)
                                .values(&Membership {
                                    user_id: user.id.clone(),
                                    organization_id: org.id.clone(),
                                    created_at: now(),
                                })
                                .execute(conn)?;
                        }
                        Some(org)
                    }
                    None => None,
                };
                (user, org)
            }
        };
        let at = now();
        let session = Session {
            id: new_id("session"),
            environment_id: env.id.clone(),
            user_id: user.id.clone(),
            organization_id: organization.map(|o| o.id),
            created_at: at.clone(),
            last_refreshed_at: at,
            expires_at: after_seconds(settings.refresh_ttl_seconds),
            revoked_at: None,
            revoked_reason: None,
        };
        diesel::insert_into(sessions::table)
            .values(&session)
            .execute(conn)?;
        let refresh_token = insert_refresh_token(conn, &session.id)?;
        Ok(Issued {
            session,
            user,
            refresh_token,
        })
    })
}

enum RefreshOutcome {
    Issued(Box<Issued>),
    Reused,
}

fn get_session(conn: &mut DbConn, id: &str) -> QueryResult<Session> {
    sessions::table
        .find(id)
        .select(Session::as_select())
        .first(conn)
}

fn revoke_session(conn: &mut DbConn, id: &str, reason: &str) -> QueryResult<()> {
    diesel::update(
        sessions::table
            .find(id)
            .filter(sessions::revoked_at.is_null()),
    )
    .set((
        sessions::revoked_at.eq(now()),
        sessions::revoked_reason.eq(reason),
    ))
    .execute(conn)?;
    Ok(())
}

/// Rotates a refresh token: `POST /api/v1/sessions/refresh`. Without
/// `organization` the session keeps its organization; with it, it switches
/// to that one if the user is a member. With `environment`, a token of
/// another environment's session is refused as unknown, and nothing changes.
pub fn refresh(
    conn: &mut DbConn,
    settings: &TokenSettings,
    sealer: &KeySealer,
    token: &str,
    organization: Option<&str>,
    environment: Option<&str>,
) -> Result<Issued, SessionError> {
    if !token.starts_with("rt_") || token.len() > 200 {
        return Err(SessionError::InvalidRefreshToken);
    }
    let token_hash = hash(token);
    let outcome =
        crate::db::write_transaction(conn, |conn| -> Result<RefreshOutcome, SessionError> {
            let row: RefreshToken = refresh_tokens::table
                .find(&token_hash)
                .select(RefreshToken::as_select())
                .first(conn)
                .optional()?
                .ok_or(SessionError::InvalidRefreshToken)?;
            let mut session = get_session(conn, &row.session_id)?;
            if environment.is_some_and(|env| env != session.environment_id) {
                return Err(SessionError::InvalidRefreshToken);
            }
            if session.revoked_at.is_some() {
                return Err(SessionError::SessionRevoked);
            }
            if is_past(&session.expires_at) {
                return Err(SessionError::SessionExpired);
            }
            if let Some(rotated_at) = &row.rotated_at {
                let within_grace = settings.refresh_grace_seconds > 0
                    && chrono::DateTime::parse_from_rfc3339(rotated_at).is_ok_and(|t| {
                        chrono::Utc::now()
                            .signed_duration_since(t)
                            .num_milliseconds()
                            <= settings.refresh_grace_seconds * 1000
                    });
                if let (true, Some(sealed)) = (within_grace, &row.successor_sealed) {
                    let successor = String::from_utf8(sealer.open(sealed, &row.token_hash)?)
                        .map_err(|e| AppError::Internal(e.into()))?;
                    let user = directory::get_user(conn, &session.user_id)?;
                    return Ok(RefreshOutcome::Issued(Box::new(Issued {
                        session,
                        user,
                        refresh_token: successor,
                    })));
                }
                revoke_session(conn, &session.id, "refresh_token_reused")?;
                return Ok(RefreshOutcome::Reused);
            }
            if let Some(key) = organization {
                let org = resolve_organization(conn, key)?;
                if !is_member(conn, &session.user_id, &org.id)? {
                    return Err(SessionError::NotAMember);
                }
                session.organization_id = Some(org.id);
            }
            let new_token = insert_refresh_token(conn, &session.id)?;
            let successor = if settings.refresh_grace_seconds > 0 {
                Some(sealer.seal(new_token.as_bytes(), &token_hash)?)
            } else {
                None
            };
            // Only one concurrent refresh can rotate a token; a loser sees 0 rows.
            let rotated = diesel::update(
                refresh_tokens::table
                    .find(&token_hash)
                    .filter(refresh_tokens::rotated_at.is_null()),
            )
            .set((
                refresh_tokens::rotated_at.eq(now()),
                refresh_tokens::successor_sealed.eq(successor),
            ))
            .execute(conn)?;
            if rotated == 0 {
                return Err(SessionError::RefreshTokenReused);
            }
            session.last_refreshed_at = now();
            session.expires_at = after_seconds(settings.refresh_ttl_seconds);
            diesel::update(sessions::table.find(&session.id))
                .set((
                    sessions::organization_id.eq(&session.organization_id),
                    sessions::last_refreshed_at.eq(&session.last_refreshed_at),
                    sessions::expires_at.eq(&session.expires_at),
                ))
                .execute(conn)?;
            let user = directory::get_user(conn, &session.user_id)?;
            Ok(RefreshOutcome::Issued(Box::new(Issued {
                session,
                user,
                refresh_token: new_token,
            })))
        })?;
    match outcome {
        RefreshOutcome::Issued(issued) => Ok(*issued),
        RefreshOutcome::Reused => Err(SessionError::RefreshTokenReused),
    }
}

/// What `POST /api/v1/sessions/revoke` names.
pub enum RevokeTarget<'a> {
    RefreshToken(&'a str),
    SessionId(&'a str),
}

/// Revokes a session of `environment_id`; its refresh tokens stop working at once.
pub fn revoke(
    conn: &mut DbConn,
    environment_id: &str,
    target: RevokeTarget<'_>,
) -> Result<(), SessionError> {
    let session_id = match target {
        RevokeTarget::SessionId(id) => id.to_string(),
        RevokeTarget::RefreshToken(token) => refresh_tokens::table
            .find(hash(token))
            .select(refresh_tokens::session_id)
            .first::<String>(conn)
            .optional()?
            .ok_or(SessionError::InvalidRefreshToken)?,
    };
    let session = get_session(conn, &session_id)
        .optional()?
        .filter(|s| s.environment_id == environment_id)
        .ok_or(SessionError::SessionNotFound)?;
    revoke_session(conn, &session.id, "revoked")?;
    Ok(())
}

/// A user's sessions that are neither revoked nor expired, newest first.
pub fn active_sessions(conn: &mut DbConn, user_id: &str) -> QueryResult<Vec<Session>> {
    sessions::table
        .filter(sessions::user_id.eq(user_id))
        .filter(sessions::revoked_at.is_null())
        .filter(sessions::expires_at.gt(now()))
        .order(sessions::created_at.desc())
        .select(Session::as_select())
        .load(conn)
}

/// Revokes one session from the dashboard, recorded in the audit log.
pub fn revoke_by_admin(
    conn: &mut DbConn,
    actor: &str,
    session_id: &str,
) -> Result<Session, AppError> {
    crate::db::write_transaction(conn, |conn| {
        let session = get_session(conn, session_id)?;
        revoke_session(conn, session_id, "revoked by an admin")?;
        crate::audit::record(
            conn,
            actor,
            crate::audit::Change {
                action: "session.revoked",
                object_type: "session",
                object_id: session_id,
                object_label: session_id,
                flag_id: None,
                environment_id: Some(&session.environment_id),
                before: None,
                after: Some(serde_json::json!({"user": session.user_id})),
            },
        )?;
        Ok(session)
    })
}

/// The claims of a Flagpole access token.
#[derive(Debug, Serialize)]
pub struct Claims<'a> {
    pub iss: &'a str,
    pub sub: &'a str,
    pub aud: &'a str,
    pub sid: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub org_id: Option<&'a str>,
    pub feature_flags: &'a [String],
    pub iat: i64,
    pub exp: i64,
    pub jti: String,
}

/// Signs an access token for `session` carrying `feature_flags`.
pub fn mint_access_token(
    signer: &Signer,
    settings: &TokenSettings,
    issuer: &str,
    env: &Environment,
    session: &Session,
    feature_flags: &[String],
) -> Result<String, AppError> {
    let iat = chrono::Utc::now().timestamp();
    let claims = Claims {
        iss: issuer,
        sub: &session.user_id,
        aud: &env.client_id,
        sid: &session.id,
        org_id: session.organization_id.as_deref(),
        feature_flags,
        iat,
        exp: iat + settings.access_ttl_seconds,
        jti: ulid::Ulid::new().to_string(),
    };
    let mut header = jsonwebtoken::Header::new(signer.algorithm.jwt_algorithm());
    header.kid = Some(signer.kid.clone());
    jsonwebtoken::encode(&header, &claims, &signer.key)
        .map_err(|e| AppError::Internal(anyhow::anyhow!("signing a token: {e}")))
}
