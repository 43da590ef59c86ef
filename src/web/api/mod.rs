//! The JSON API for applications, `/api/v1`. Errors are
//! `{"error": {"code", "message", "field"?}}` with a 4xx status; a secret
//! key (`Authorization: Bearer sk_…`) decides the environment of each call.

use std::sync::Arc;

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{web, FromRequest, HttpRequest};

use subtle::ConstantTimeEq;

use crate::environments::api_keys::{self, ApiKey, KeyScope};
use crate::environments::Environment;
use crate::error::{Error, Refusal, Result};
use crate::AppState;

pub mod audit;
pub mod directory;
pub mod evaluate;
pub mod flags;
pub mod objects;
pub mod openapi;
pub mod paging;
pub mod rules;
pub mod sessions;

/// Where the management API and the token endpoint live.
pub const API_PREFIX: &str = "/api/v1";
/// The largest JSON body most routes take.
pub const JSON_LIMIT: usize = 1 << 20;
/// The largest body of a bulk upsert.
pub const BULK_JSON_LIMIT: usize = 4 << 20;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope(API_PREFIX)
            .configure(sessions::routes)
            .configure(evaluate::routes)
            .configure(flags::routes)
            .configure(rules::routes)
            .configure(directory::routes)
            .configure(audit::routes)
            .configure(openapi::routes)
            .default_service(web::to(|req: HttpRequest| async move {
                super::errors::Surface::Api
                    .render(&Error::NotFound(crate::error::Entity::Route), &req)
            })),
    );
    sessions::well_known_routes(cfg);
}

/// The token of `Authorization: Bearer …` (the scheme in any case).
pub fn bearer_token(req: &HttpRequest) -> Option<String> {
    req.headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, token) = v.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        })
        .filter(|t| !t.is_empty())
        .map(str::to_string)
}

/// A caller authenticated by a secret API key; the key decides the environment.
pub struct ApiAuth {
    /// Shared with the live model: checking a key copies nothing.
    pub key: Arc<ApiKey>,
    pub environment: Arc<Environment>,
}

impl ApiAuth {
    /// Who the audit trail names for changes made with this key.
    pub fn actor(&self) -> crate::audit::Actor {
        self.key.actor()
    }

    /// Checks a key against the live model, as every surface that takes
    /// one does: no query, and the last use is written later in a batch.
    /// A call from a browser (with an `Origin`) is refused unless the key's
    /// environment allows that origin, whatever the key; and the key's scope
    /// must include `minimum`.
    pub fn check(
        state: &AppState,
        secret: Option<String>,
        origin: Option<&str>,
        minimum: KeyScope,
    ) -> Result<ApiAuth> {
        let auth = Self::identify(state, secret)?;
        if origin.is_some_and(|origin| !auth.environment.allows_origin(origin)) {
            return Err(Error::Refused(Refusal::OriginNotAllowed));
        }
        auth.require(minimum)?;
        state.key_usage.note(&auth.key.id);
        Ok(auth)
    }

    fn identify(state: &AppState, secret: Option<String>) -> Result<ApiAuth> {
        let Some(secret) = secret else {
            return Err(Error::Refused(Refusal::MissingApiKey));
        };
        if !(secret.starts_with("sk_") || secret.starts_with("pk_")) || secret.len() > 200 {
            return Err(Error::Refused(Refusal::InvalidApiKey));
        }
        let digest = api_keys::hash(&secret);
        let snapshot = state.model();
        let (key, environment) = snapshot
            .credential(&digest)
            // The map found it by hash; this comparison keeps the final
            // check independent of where two hashes first differ.
            .filter(|(key, _)| bool::from(key.secret_hash.as_bytes().ct_eq(digest.as_bytes())))
            // A key is what its prefix says: pk_ publishable, sk_ secret.
            .filter(|(key, _)| secret.starts_with(key.scope.prefix()))
            .ok_or(Error::Refused(Refusal::InvalidApiKey))?;
        Ok(ApiAuth {
            key: Arc::clone(key),
            environment: Arc::clone(environment),
        })
    }

    /// Refuses a key whose scope does not include `needed`.
    pub fn require(&self, needed: KeyScope) -> Result<()> {
        if self.key.scope >= needed {
            Ok(())
        } else {
            Err(Error::Refused(Refusal::InsufficientScope {
                needed: needed.as_str(),
                has: self.key.scope.as_str(),
            }))
        }
    }

    /// The environment named by `slug`, which must be the key's own: a
    /// Staging key never reads or changes Production's rules.
    pub fn own_environment(&self, slug: &str) -> Result<Environment> {
        if self.environment.slug == slug {
            Ok(Environment::clone(&self.environment))
        } else {
            Err(Error::Refused(Refusal::WrongEnvironment {
                key_environment: self.environment.slug.to_string(),
            }))
        }
    }
}

impl FromRequest for ApiAuth {
    type Error = Error;
    type Future = std::future::Ready<Result<Self>>;

    fn from_request(req: &HttpRequest, _payload: &mut Payload) -> Self::Future {
        std::future::ready(ApiAuth::from_request_with(req, KeyScope::Evaluation))
    }
}

impl ApiAuth {
    /// The request's key (`Authorization: Bearer`), checked for `minimum`
    /// and for the request's `Origin`.
    pub fn from_request_with(req: &HttpRequest, minimum: KeyScope) -> Result<ApiAuth> {
        let state = req
            .app_data::<web::Data<AppState>>()
            .ok_or_else(|| Error::internal(anyhow::anyhow!("no state")))?;
        ApiAuth::check(state, bearer_token(req), origin(req), minimum)
    }
}

/// The `Origin` a browser sent, if any.
pub fn origin(req: &HttpRequest) -> Option<&str> {
    req.headers()
        .get(actix_web::http::header::ORIGIN)
        .and_then(|v| v.to_str().ok())
}

/// Extractors of a key with at least a given scope: a handler's signature
/// says what its call needs (`AdminKey` for flags, the directory and the
/// audit log; `EnvironmentKey` for its environment's rules; `EvaluationKey`
/// for sessions and evaluation).
macro_rules! scoped_key {
    ($(#[$doc:meta])* $name:ident, $scope:expr) => {
        $(#[$doc])*
        pub struct $name(pub ApiAuth);

        impl std::ops::Deref for $name {
            type Target = ApiAuth;
            fn deref(&self) -> &ApiAuth {
                &self.0
            }
        }

        impl $name {
            pub fn into_inner(self) -> ApiAuth {
                self.0
            }
        }

        impl FromRequest for $name {
            type Error = Error;
            type Future = std::future::Ready<Result<Self>>;

            fn from_request(req: &HttpRequest, _payload: &mut Payload) -> Self::Future {
                std::future::ready(ApiAuth::from_request_with(req, $scope).map($name))
            }
        }
    };
}

scoped_key!(
    /// Any key, publishable ones included: evaluation only.
    PublishableKey,
    KeyScope::Publishable
);
scoped_key!(
    /// A secret key of any scope: evaluation and sessions.
    EvaluationKey,
    KeyScope::Evaluation
);
scoped_key!(
    /// A key that may change its own environment's rules.
    EnvironmentKey,
    KeyScope::Environment
);
scoped_key!(
    /// A key that may manage flags, the directory and the audit log.
    AdminKey,
    KeyScope::Admin
);

/// A required text field of a body: present and not blank.
pub fn required(value: Option<String>, field: &str, what: &str) -> Result<String> {
    match value
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
    {
        Some(v) => Ok(v),
        None => Err(Error::invalid(field, format!("Give {what}."))),
    }
}

/// An optional text field: blank is absent.
pub fn optional(value: Option<String>) -> Option<String> {
    value
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}
