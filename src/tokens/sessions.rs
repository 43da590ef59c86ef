//! The token endpoint's sessions: starting one for a user in an
//! organization, rotating refresh tokens (with reuse detection and a grace
//! period for tabs that refresh at once), revoking, and the access token's
//! claims.

use diesel::prelude::*;
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::keys::KeySealer;
use crate::audit::{Actor, Change};
use crate::db::schema::{
    memberships as memberships_table, organizations as orgs, refresh_tokens, sessions,
    users as users_table,
};
use crate::db::DbConn;
use crate::directory::organizations::{self, NewOrganization, OrganizationPatch};
use crate::directory::users::{self, NewUser, UserPatch};
use crate::directory::{self, memberships, Membership, Organization, User};
use crate::environments::Environment;
use crate::error::{Entity, Error, OrNotFound, Refusal, Result};
use crate::ids::{random_token, EnvironmentId, OrgId, SessionId, UserId};
use crate::time::Timestamp;

/// Token lifetimes, from the configuration.
#[derive(Debug, Clone, Copy)]
pub struct TokenSettings {
    pub access_ttl_seconds: i64,
    pub refresh_ttl_seconds: i64,
    /// Within this many seconds of a rotation, presenting the old refresh
    /// token again returns the same new one instead of revoking the session.
    pub refresh_grace_seconds: i64,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = sessions)]
pub struct Session {
    pub id: SessionId,
    pub environment_id: EnvironmentId,
    pub user_id: UserId,
    pub organization_id: Option<OrgId>,
    pub created_at: Timestamp,
    pub last_refreshed_at: Timestamp,
    pub expires_at: Timestamp,
    pub revoked_at: Option<Timestamp>,
    pub revoked_reason: Option<String>,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = refresh_tokens)]
struct RefreshToken {
    token_hash: String,
    session_id: SessionId,
    created_at: Timestamp,
    rotated_at: Option<Timestamp>,
    successor_sealed: Option<String>,
}

/// Who a new session is for, as the application names them: existing
/// objects by id, or inline ones that are created or updated on the fly.
pub enum SessionFor {
    Ids {
        user: String,
        organization: Option<String>,
    },
    Inline {
        user: NewUser,
        organization: Option<OrganizationSpec>,
    },
}

/// An organization named by id or external id, or given inline.
pub enum OrganizationSpec {
    Existing(String),
    Inline(NewOrganization),
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

/// The organization `key` names, which `user` must belong to.
fn membership_of(conn: &mut DbConn, user: &User, key: &str) -> Result<Organization> {
    member_of(conn, user.id.as_str(), key).map(|(_, org)| org)
}

/// A new refresh token (only its hash is stored).
fn new_refresh_token() -> String {
    format!("rt_{}", random_token(32))
}

/// The user `user` names, and the organization `organization` names with
/// the user's membership of it, in one query: the user (by id or external
/// id), left-joined to the organization (likewise) and to the membership.
fn member_of(conn: &mut DbConn, user: &str, organization: &str) -> Result<(User, Organization)> {
    let (user, organization) = (user.trim(), organization.trim().to_string());
    let (user, org, member): (User, Option<Organization>, Option<UserId>) = users_table::table
        .left_join(
            orgs::table.on(orgs::id
                .eq(organization.clone())
                .or(orgs::external_id.eq(organization))),
        )
        .left_join(
            memberships_table::table.on(memberships_table::organization_id
                .eq(orgs::id)
                .and(memberships_table::user_id.eq(users_table::id))),
        )
        .filter(
            users_table::id
                .eq(user)
                .or(users_table::external_id.eq(user)),
        )
        .select((
            User::as_select(),
            Option::<Organization>::as_select(),
            memberships_table::user_id.nullable(),
        ))
        .first(conn)
        .optional()?
        .ok_or(Error::NotFound(Entity::User))?;
    let org = org.ok_or(Error::NotFound(Entity::Organization))?;
    if member.is_none() {
        return Err(Error::Refused(Refusal::NotAMember));
    }
    Ok((user, org))
}

/// Creates or updates the user with this external id.
fn provision_user(conn: &mut DbConn, actor: &Actor, input: &NewUser) -> Result<User> {
    match directory::find_user(conn, &input.external_id)? {
        Some(user) => users::update(
            conn,
            actor,
            &user.id,
            &UserPatch {
                email: Some(input.email.clone()),
                first_name: Some(input.first_name.clone()),
                last_name: Some(input.last_name.clone()),
                external_id: None,
            },
        ),
        None => users::create(conn, actor, input),
    }
}

fn provision_org(
    conn: &mut DbConn,
    actor: &Actor,
    input: &NewOrganization,
) -> Result<Organization> {
    match directory::find_org(conn, &input.external_id)? {
        Some(org) => organizations::update(
            conn,
            actor,
            &org.id,
            &OrganizationPatch {
                name: Some(input.name.clone()),
                external_id: None,
            },
        ),
        None => organizations::create(conn, actor, input),
    }
}

fn insert_refresh_token(conn: &mut DbConn, session_id: &SessionId, token: &str) -> Result<()> {
    diesel::insert_into(refresh_tokens::table)
        .values(&RefreshToken {
            token_hash: hash(token),
            session_id: session_id.clone(),
            created_at: Timestamp::now(),
            rotated_at: None,
            successor_sealed: None,
        })
        .execute(conn)?;
    Ok(())
}

/// Starts a session in `env`: `POST /api/v1/sessions`. A session for an
/// existing user reads the user with the membership in one query, then
/// writes the session and its first refresh token together (see [`open`]);
/// an inline user's writes (just-in-time user and organization, membership,
/// session, refresh token) are all one transaction.
pub fn start(
    conn: &mut DbConn,
    settings: &TokenSettings,
    actor: &Actor,
    env: &Environment,
    who: &SessionFor,
) -> Result<Issued> {
    match who {
        SessionFor::Ids { user, organization } => {
            let (user, org) = match organization {
                Some(key) => {
                    let (user, org) = member_of(conn, user, key)?;
                    (user, Some(org))
                }
                None => (users::named(conn, user)?, None),
            };
            open(conn, settings, env, user, org)
        }
        SessionFor::Inline { user, organization } => crate::db::write_transaction(conn, |conn| {
            let user = provision_user(conn, actor, user)?;
            let org = match organization {
                Some(OrganizationSpec::Existing(key)) => Some(membership_of(conn, &user, key)?),
                Some(OrganizationSpec::Inline(input)) => {
                    let org = provision_org(conn, actor, input)?;
                    if !directory::is_member(conn, &user.id, &org.id)? {
                        memberships::insert(
                            conn,
                            &Membership {
                                user_id: user.id.clone(),
                                organization_id: org.id.clone(),
                                created_at: Timestamp::now(),
                            },
                        )?;
                    }
                    Some(org)
                }
                None => None,
            };
            open(conn, settings, env, user, org)
        }),
    }
}

/// Writes a new session and its first refresh token, at once: on
/// PostgreSQL one statement (the session's insert feeds the token's), so a
/// session start runs two statements after the pool's check, not six; on SQLite, where a
/// statement costs no round trip, two inserts in one transaction.
fn open(
    conn: &mut DbConn,
    settings: &TokenSettings,
    env: &Environment,
    user: User,
    organization: Option<Organization>,
) -> Result<Issued> {
    let at = Timestamp::now();
    let session = Session {
        id: SessionId::generate(),
        environment_id: env.id.clone(),
        user_id: user.id.clone(),
        organization_id: organization.map(|o| o.id),
        created_at: at,
        last_refreshed_at: at,
        expires_at: at.plus_seconds(settings.refresh_ttl_seconds),
        revoked_at: None,
        revoked_reason: None,
    };
    let refresh_token = new_refresh_token();
    match conn {
        DbConn::Pg(pg) => {
            use diesel::sql_types::{Nullable, Text};
            diesel::sql_query(
                "WITH session AS (\
                   INSERT INTO sessions (id, environment_id, user_id, organization_id, \
                                         created_at, last_refreshed_at, expires_at) \
                   VALUES ($1, $2, $3, $4, $5, $5, $6) RETURNING id) \
                 INSERT INTO refresh_tokens (token_hash, session_id, created_at) \
                 SELECT $7, id, $5 FROM session",
            )
            .bind::<Text, _>(session.id.as_str())
            .bind::<Text, _>(session.environment_id.as_str())
            .bind::<Text, _>(session.user_id.as_str())
            .bind::<Nullable<Text>, _>(session.organization_id.as_ref().map(|o| o.as_str()))
            .bind::<Text, _>(at.as_str())
            .bind::<Text, _>(session.expires_at.as_str())
            .bind::<Text, _>(hash(&refresh_token))
            .execute(pg)?;
        }
        _ => crate::db::write_transaction(conn, |conn| -> Result<()> {
            diesel::insert_into(sessions::table)
                .values(&session)
                .execute(conn)?;
            insert_refresh_token(conn, &session.id, &refresh_token)
        })?,
    }
    Ok(Issued {
        session,
        user,
        refresh_token,
    })
}

fn get_session(conn: &mut DbConn, id: &SessionId) -> Result<Session> {
    sessions::table
        .find(id)
        .select(Session::as_select())
        .first(conn)
        .or_not_found(Entity::Session)
}

fn revoke_session(conn: &mut DbConn, id: &SessionId, reason: &str) -> Result<()> {
    diesel::update(
        sessions::table
            .find(id)
            .filter(sessions::revoked_at.is_null()),
    )
    .set((
        sessions::revoked_at.eq(Timestamp::now()),
        sessions::revoked_reason.eq(reason),
    ))
    .execute(conn)?;
    Ok(())
}

enum RefreshOutcome {
    Issued(Box<Issued>),
    Reused,
}

/// Rotates a refresh token: `POST /api/v1/sessions/refresh`. Without
/// `organization` the session keeps its organization; with it, it switches
/// to that one if the user is a member. With `environment`, a token of
/// another environment's session is refused as unknown, and nothing changes.
///
/// Two presentations of one token at once are serialized on the token's
/// row: the second sees the first's rotation, and gets the same successor
/// within the grace period, or revokes the session after it.
pub fn refresh(
    conn: &mut DbConn,
    settings: &TokenSettings,
    sealer: &KeySealer,
    token: &str,
    organization: Option<&str>,
    environment: Option<&EnvironmentId>,
) -> Result<Issued> {
    if !token.starts_with("rt_") || token.len() > 200 {
        return Err(Error::Refused(Refusal::InvalidRefreshToken));
    }
    let token_hash = hash(token);
    let outcome = crate::db::write_transaction(conn, |conn| -> Result<RefreshOutcome> {
        // Takes the row's lock (PostgreSQL; SQLite holds the write lock
        // already), so concurrent refreshes of one token run one by one.
        diesel::update(refresh_tokens::table.find(&token_hash))
            .set(refresh_tokens::token_hash.eq(&token_hash))
            .execute(conn)?;
        // The token, its session and the session's user, in one read.
        let (row, mut session, user): (RefreshToken, Session, User) = refresh_tokens::table
            .inner_join(sessions::table.inner_join(users_table::table))
            .filter(refresh_tokens::token_hash.eq(&token_hash))
            .select((
                RefreshToken::as_select(),
                Session::as_select(),
                User::as_select(),
            ))
            .first(conn)
            .optional()?
            .ok_or(Error::Refused(Refusal::InvalidRefreshToken))?;
        if environment.is_some_and(|env| *env != session.environment_id) {
            return Err(Error::Refused(Refusal::InvalidRefreshToken));
        }
        if session.revoked_at.is_some() {
            return Err(Error::Refused(Refusal::SessionRevoked));
        }
        if session.expires_at.is_past() {
            return Err(Error::Refused(Refusal::SessionExpired));
        }
        if let Some(rotated_at) = row.rotated_at {
            let within_grace = settings.refresh_grace_seconds > 0
                && rotated_at.elapsed().as_millis()
                    <= u128::from(settings.refresh_grace_seconds.unsigned_abs()) * 1000;
            if let (true, Some(sealed)) = (within_grace, &row.successor_sealed) {
                let successor = String::from_utf8(sealer.open(sealed, &row.token_hash)?)
                    .map_err(Error::internal)?;
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
            session.organization_id = Some(membership_of(conn, &user, key)?.id);
        }
        let new_token = new_refresh_token();
        insert_refresh_token(conn, &session.id, &new_token)?;
        let successor = if settings.refresh_grace_seconds > 0 {
            Some(sealer.seal(new_token.as_bytes(), &token_hash)?)
        } else {
            None
        };
        let rotated = diesel::update(
            refresh_tokens::table
                .find(&token_hash)
                .filter(refresh_tokens::rotated_at.is_null()),
        )
        .set((
            refresh_tokens::rotated_at.eq(Timestamp::now()),
            refresh_tokens::successor_sealed.eq(successor),
        ))
        .execute(conn)?;
        if rotated == 0 {
            return Err(Error::Refused(Refusal::RefreshTokenReused));
        }
        session.last_refreshed_at = Timestamp::now();
        session.expires_at = session
            .last_refreshed_at
            .plus_seconds(settings.refresh_ttl_seconds);
        diesel::update(sessions::table.find(&session.id))
            .set((
                sessions::organization_id.eq(&session.organization_id),
                sessions::last_refreshed_at.eq(session.last_refreshed_at),
                sessions::expires_at.eq(session.expires_at),
            ))
            .execute(conn)?;
        Ok(RefreshOutcome::Issued(Box::new(Issued {
            session,
            user,
            refresh_token: new_token,
        })))
    })?;
    match outcome {
        RefreshOutcome::Issued(issued) => Ok(*issued),
        RefreshOutcome::Reused => Err(Error::Refused(Refusal::RefreshTokenReused)),
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
    environment_id: &EnvironmentId,
    target: RevokeTarget<'_>,
) -> Result<()> {
    let session_id = match target {
        RevokeTarget::SessionId(id) => {
            SessionId::parse(id).ok_or(Error::NotFound(Entity::Session))?
        }
        RevokeTarget::RefreshToken(token) => refresh_tokens::table
            .find(hash(token))
            .select(refresh_tokens::session_id)
            .first::<SessionId>(conn)
            .optional()?
            .ok_or(Error::Refused(Refusal::InvalidRefreshToken))?,
    };
    let session = get_session(conn, &session_id)?;
    if session.environment_id != *environment_id {
        return Err(Error::NotFound(Entity::Session));
    }
    revoke_session(conn, &session.id, "revoked")
}

/// A user's sessions that are neither revoked nor expired, newest first.
pub fn active_sessions(conn: &mut DbConn, user_id: &UserId) -> Result<Vec<Session>> {
    Ok(sessions::table
        .filter(sessions::user_id.eq(user_id))
        .filter(sessions::revoked_at.is_null())
        .filter(sessions::expires_at.gt(Timestamp::now()))
        .order(sessions::created_at.desc())
        .select(Session::as_select())
        .load(conn)?)
}

/// Revokes one session from the dashboard, recorded in the audit log.
pub fn revoke_by_admin(
    conn: &mut DbConn,
    actor: &Actor,
    session_id: &SessionId,
) -> Result<Session> {
    crate::db::write_transaction(conn, |conn| {
        let session = get_session(conn, session_id)?;
        revoke_session(conn, session_id, "revoked by an admin")?;
        Change::new(
            "session.revoked",
            "session",
            session_id,
            session_id.as_str(),
        )
        .environment(&session.environment_id)
        .after(serde_json::json!({"user": session.user_id}))
        .record(conn, actor)?;
        Ok(session)
    })
}

/// The claims of a Flagpole access token.
#[derive(Debug, Serialize)]
pub struct Claims<'a> {
    pub iss: &'a str,
    pub sub: &'a UserId,
    pub aud: &'a str,
    pub sid: &'a SessionId,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub org_id: Option<&'a OrgId>,
    pub feature_flags: &'a [String],
    pub iat: i64,
    pub exp: i64,
    pub jti: String,
}

impl<'a> Claims<'a> {
    pub fn new(
        settings: &TokenSettings,
        issuer: &'a str,
        env: &'a Environment,
        session: &'a Session,
        feature_flags: &'a [String],
    ) -> Self {
        let iat = Timestamp::now().unix_seconds();
        Claims {
            iss: issuer,
            sub: &session.user_id,
            aud: env.client_id.as_str(),
            sid: &session.id,
            org_id: session.organization_id.as_ref(),
            feature_flags,
            iat,
            exp: iat + settings.access_ttl_seconds,
            jti: ulid::Ulid::new().to_string(),
        }
    }
}

/// Forgets sessions (and their refresh tokens) that expired or were revoked
/// more than `retention` ago; returns how many.
pub fn prune(conn: &mut DbConn, retention: std::time::Duration) -> Result<usize> {
    let before = Timestamp::now().minus(retention);
    crate::db::write_transaction(conn, |conn| {
        let old: Vec<SessionId> = sessions::table
            .filter(
                sessions::expires_at
                    .lt(before)
                    .or(sessions::revoked_at.lt(before)),
            )
            .select(sessions::id)
            .limit(10_000)
            .load(conn)?;
        for chunk in old.chunks(500) {
            diesel::delete(refresh_tokens::table.filter(refresh_tokens::session_id.eq_any(chunk)))
                .execute(conn)?;
            diesel::delete(sessions::table.filter(sessions::id.eq_any(chunk))).execute(conn)?;
        }
        Ok(old.len())
    })
}
