//! What every dashboard request needs: the signed-in admin, the active
//! environment, the CSRF token, flash messages, and the page layout.

use std::future::Future;
use std::pin::Pin;

use actix_session::{Session, SessionExt};
use actix_web::dev::Payload;
use actix_web::{web, FromRequest, HttpRequest};
use subtle::ConstantTimeEq;

use crate::admins::{self, Admin, Role};
use crate::audit::Actor;
use crate::environments::{self, Environment};
use crate::error::{Entity, Error, Refusal, Result};
use crate::ids::{random_token, EnvironmentId};
use crate::AppState;

/// The cookie's token of the admin's server-side session.
pub const SESSION_TOKEN: &str = "session";
pub const SESSION_CSRF: &str = "csrf";
pub const SESSION_ENV: &str = "env_id";
pub const SESSION_FLASH: &str = "flash";

/// The CSRF token of this browser session, created on first use.
pub fn csrf_token(session: &Session) -> Result<String> {
    if let Some(token) = session.get::<String>(SESSION_CSRF).ok().flatten() {
        return Ok(token);
    }
    let token = random_token(32);
    session
        .insert(SESSION_CSRF, &token)
        .map_err(|e| Error::internal(anyhow::anyhow!("session: {e}")))?;
    Ok(token)
}

/// A message shown once on the next page, e.g. "Saved."
pub fn flash(session: &Session, message: impl Into<String>) {
    let _ = session.insert(SESSION_FLASH, message.into());
}

/// The signed-in admin and what the page around them needs.
pub struct Ctx {
    pub state: web::Data<AppState>,
    pub session: Session,
    pub admin: Admin,
    /// The SHA-256 of this browser's session token.
    pub session_hash: String,
    pub role: Role,
    pub csrf: String,
    pub environments: Vec<Environment>,
    pub active: Environment,
    /// The path and query of this request, to come back to after a switch.
    pub path: String,
}

impl Ctx {
    /// Who the audit trail names for this admin's changes.
    pub fn actor(&self) -> Actor {
        self.admin.actor()
    }

    /// Viewers see everything and change nothing.
    pub fn require_editor(&self) -> Result<()> {
        if self.role >= Role::Editor {
            Ok(())
        } else {
            Err(Error::forbidden(
                "Your account is a viewer: you can look at everything but change nothing. \
                 Ask an owner for the editor role.",
            ))
        }
    }

    pub fn require_owner(&self) -> Result<()> {
        if self.role == Role::Owner {
            Ok(())
        } else {
            Err(Error::forbidden("Only owners can manage admin accounts."))
        }
    }

    pub fn environment_by_slug(&self, slug: &str) -> Result<Environment> {
        self.environments
            .iter()
            .find(|e| e.slug == slug)
            .cloned()
            .ok_or(Error::NotFound(Entity::Environment))
    }

    pub fn set_active(&self, env: &Environment) {
        let _ = self.session.insert(SESSION_ENV, env.id.as_str());
    }

    pub fn flash(&self, message: impl Into<String>) {
        flash(&self.session, message);
    }

    /// The layout of a page titled `title`, with `nav` the highlighted menu entry.
    pub fn layout(&self, title: impl Into<String>, nav: &'static str) -> Layout {
        let flash = self
            .session
            .remove_as::<String>(SESSION_FLASH)
            .and_then(Result::ok);
        Layout {
            title: title.into(),
            nav,
            admin_email: self.admin.email.to_string(),
            role: self.role.as_str(),
            can_edit: self.role >= Role::Editor,
            is_owner: self.role == Role::Owner,
            csrf: self.csrf.clone(),
            environments: self.environments.clone(),
            active: self.active.clone(),
            flash,
            path: self.path.clone(),
        }
    }
}

/// What the base template shows around every page.
pub struct Layout {
    pub title: String,
    pub nav: &'static str,
    pub admin_email: String,
    pub role: &'static str,
    pub can_edit: bool,
    pub is_owner: bool,
    pub csrf: String,
    pub environments: Vec<Environment>,
    pub active: Environment,
    pub flash: Option<String>,
    pub path: String,
}

type LocalFuture<T> = Pin<Box<dyn Future<Output = T>>>;

impl FromRequest for Ctx {
    type Error = Error;
    type Future = LocalFuture<Result<Self>>;

    fn from_request(req: &HttpRequest, _payload: &mut Payload) -> Self::Future {
        let session = req.get_session();
        let state = req.app_data::<web::Data<AppState>>().cloned();
        let next = req
            .uri()
            .path_and_query()
            .map_or("/flags".to_string(), |p| p.to_string());
        let path = if req.method() == actix_web::http::Method::GET {
            next
        } else {
            "/flags".to_string()
        };
        let next = path.clone();
        // A NUL in the address would reach the database as text, which
        // PostgreSQL refuses; no page or object has one in its address.
        let has_nul = req
            .uri()
            .path_and_query()
            .is_some_and(|p| p.as_str().to_ascii_lowercase().contains("%00"));
        Box::pin(async move {
            if has_nul {
                return Err(Error::malformed(
                    "text",
                    "The address contains a NUL character (%00), which no page accepts.",
                ));
            }
            let state = state.ok_or_else(|| Error::internal(anyhow::anyhow!("no state")))?;
            let login = || Error::Refused(Refusal::LoginRequired { next: next.clone() });
            let token: Option<String> = session.get::<String>(SESSION_TOKEN).ok().flatten();
            let Some(token) = token else {
                return Err(login());
            };
            let env_id: Option<EnvironmentId> = session
                .get::<String>(SESSION_ENV)
                .ok()
                .flatten()
                .and_then(|id| EnvironmentId::parse(&id));
            let timeouts = state.config.session_timeouts;
            let (signed_in, environments) = state
                .read(move |conn| {
                    let signed_in = admins::sessions::check(conn, &token, &timeouts)?;
                    Ok((signed_in, environments::list(conn)?))
                })
                .await?;
            // Signed out, timed out, ended elsewhere, or the admin is gone.
            let Some((admin, admin_session)) = signed_in else {
                session.purge();
                return Err(login());
            };
            let active = env_id
                .and_then(|id| environments.iter().find(|e| e.id == id).cloned())
                .or_else(|| environments.first().cloned())
                .ok_or_else(|| Error::internal(anyhow::anyhow!("no environment exists")))?;
            let csrf = csrf_token(&session)?;
            Ok(Ctx {
                role: admin.role,
                session_hash: admin_session.token_hash,
                state,
                session,
                admin,
                csrf,
                environments,
                active,
                path,
            })
        })
    }
}

/// A submitted form, read only once its CSRF token matched the session's.
/// Every dashboard handler that changes something takes one.
pub struct Form {
    fields: Vec<(String, String)>,
}

impl Form {
    /// The first value of `name`, or "" when absent.
    pub fn get(&self, name: &str) -> String {
        self.fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    }
    pub fn has(&self, name: &str) -> bool {
        self.fields.iter().any(|(k, _)| k == name)
    }
    /// Every value of `name`, in order.
    pub fn all(&self, name: &str) -> Vec<String> {
        self.fields
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .collect()
    }
    pub fn checkbox(&self, name: &str) -> bool {
        matches!(self.get(name).as_str(), "on" | "true" | "1")
    }
}

fn tokens_match(expected: &str, given: &str) -> bool {
    expected.len() == given.len() && bool::from(expected.as_bytes().ct_eq(given.as_bytes()))
}

impl FromRequest for Form {
    type Error = Error;
    type Future = LocalFuture<Result<Self>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let session = req.get_session();
        let cross_site = req
            .headers()
            .get("sec-fetch-site")
            .is_some_and(|v| v.as_bytes() == b"cross-site");
        let body = web::Bytes::from_request(req, payload);
        Box::pin(async move {
            if cross_site {
                return Err(Error::Refused(Refusal::Csrf));
            }
            let body = body
                .await
                .map_err(|_| Error::malformed("form", "The form could not be read."))?;
            let fields: Vec<(String, String)> =
                form_urlencoded::parse(&body).into_owned().collect();
            let expected: Option<String> = session.get(SESSION_CSRF).ok().flatten();
            let given = fields
                .iter()
                .find(|(k, _)| k == "_csrf")
                .map(|(_, v)| v.as_str());
            match (expected, given) {
                (Some(expected), Some(given)) if tokens_match(&expected, given) => {
                    // No field accepts a NUL, and PostgreSQL text cannot hold one.
                    if fields
                        .iter()
                        .any(|(k, v)| k.contains('\0') || v.contains('\0'))
                    {
                        return Err(Error::malformed(
                            "text",
                            "The form contains a NUL character, which no field accepts.",
                        ));
                    }
                    Ok(Form { fields })
                }
                _ => Err(Error::Refused(Refusal::Csrf)),
            }
        })
    }
}
