//! The one error type of Flagpole.
//!
//! Services and handlers fail with [`Error`]; each variant knows its HTTP
//! status, a stable snake_case code and what a person may be told. The
//! surfaces (the dashboard, `/api/v1`, the WorkOS-compatible API, its OAuth
//! endpoint and OFREP) only *render* it, each in its own shape
//! (`crate::web::errors`), so the same refusal reads the same everywhere.
//! Internal causes are logged by the renderer and never shown.
//!
//! Which variant to use:
//! - the object named by the caller does not exist: [`Error::NotFound`];
//! - a value is taken (a slug, an email): [`Error::Conflict`];
//! - input is invalid, field by field: [`Error::Invalid`];
//! - someone else changed the object since it was read: [`Error::Stale`];
//! - the request is understood but refused (authentication, permissions,
//!   protocol rules, limits): [`Error::Refused`] with its [`Refusal`];
//! - anything else: [`Error::Internal`], usually through `?`.

use std::fmt;

use actix_web::http::StatusCode;

/// What kind of object was not found or went stale.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entity {
    Flag,
    Rule,
    Target,
    Environment,
    Organization,
    User,
    Membership,
    Admin,
    ApiKey,
    Session,
    WebhookEndpoint,
    WebhookDelivery,
    /// A dashboard page or a file.
    Page,
    /// A route of an API: no such method and path.
    Route,
}

impl Entity {
    /// The API code of "not found", e.g. `flag_not_found`.
    pub fn not_found_code(self) -> &'static str {
        match self {
            Entity::Flag => "flag_not_found",
            Entity::Rule => "rule_not_found",
            Entity::Target => "target_not_found",
            Entity::Environment => "environment_not_found",
            Entity::Organization => "organization_not_found",
            Entity::User => "user_not_found",
            Entity::Membership => "membership_not_found",
            Entity::Admin => "admin_not_found",
            Entity::ApiKey => "api_key_not_found",
            Entity::Session => "session_not_found",
            Entity::WebhookEndpoint => "webhook_endpoint_not_found",
            Entity::WebhookDelivery => "webhook_delivery_not_found",
            Entity::Page => "not_found",
            Entity::Route => "route_not_found",
        }
    }

    pub fn noun(self) -> &'static str {
        match self {
            Entity::Flag => "feature flag",
            Entity::Rule => "rule",
            Entity::Target => "target",
            Entity::Environment => "environment",
            Entity::Organization => "organization",
            Entity::User => "user",
            Entity::Membership => "membership",
            Entity::Admin => "admin",
            Entity::ApiKey => "API key",
            Entity::Session => "session",
            Entity::WebhookEndpoint => "webhook endpoint",
            Entity::WebhookDelivery => "webhook delivery",
            Entity::Page => "page",
            Entity::Route => "route",
        }
    }

    fn not_found_message(self) -> &'static str {
        match self {
            Entity::Flag => "No feature flag has this slug.",
            Entity::Rule => "This flag has no rule in this environment.",
            Entity::Target => "No current target of this rule has this id or external id.",
            Entity::Environment => "No environment has this slug.",
            Entity::Organization => "No organization has this id or external id.",
            Entity::User => "No user has this id or external id.",
            Entity::Membership => "The user is not a member of this organization.",
            Entity::Admin => "No admin has this id.",
            Entity::ApiKey => "No API key has this id.",
            Entity::Session => "No session of this environment has this id or refresh token.",
            Entity::WebhookEndpoint => "No webhook endpoint has this id.",
            Entity::WebhookDelivery => "No webhook delivery has this id.",
            Entity::Page => "The page or object you asked for does not exist.",
            Entity::Route => "No route has this method and path.",
        }
    }

    fn stale_message(self) -> &'static str {
        match self {
            Entity::Rule => {
                "Someone else changed this rule after you opened it. Nothing was saved: \
                 look at the rule as it is now and make your change again."
            }
            _ => {
                "Someone else changed this object after you read it. Nothing was saved: \
                 read it again and retry."
            }
        }
    }
}

/// One problem with one field of a form or a request body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// The form field or JSON path, e.g. `slug` or `data[3].email`.
    pub field: String,
    pub message: String,
}

/// Validation problems, each tied to the field it concerns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldErrors(Vec<FieldError>);

impl FieldErrors {
    pub fn single(field: impl Into<String>, message: impl Into<String>) -> Self {
        let mut errors = Self::default();
        errors.add(field, message);
        errors
    }

    pub fn add(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError {
            field: field.into(),
            message: message.into(),
        });
    }

    /// Keeps the value of a check, or notes its problem and gives a default.
    pub fn check<T: Default>(&mut self, field: &str, result: Result<T, String>) -> T {
        result.unwrap_or_else(|message| {
            self.add(field, message);
            T::default()
        })
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The message for `field`, for the form that shows it next to the field.
    pub fn get(&self, field: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|e| e.field == field)
            .map(|e| e.message.as_str())
    }

    pub fn iter(&self) -> impl Iterator<Item = &FieldError> {
        self.0.iter()
    }

    pub fn first(&self) -> Option<&FieldError> {
        self.0.first()
    }

    /// The same errors with every field renamed, e.g. into `data[3].email`.
    pub fn prefixed(self, rename: impl Fn(&str) -> String) -> Self {
        FieldErrors(
            self.0
                .into_iter()
                .map(|e| FieldError {
                    field: rename(&e.field),
                    message: e.message,
                })
                .collect(),
        )
    }

    /// `Ok(())` when nothing was found wrong.
    pub fn into_result(self) -> Result<(), Error> {
        if self.is_empty() {
            Ok(())
        } else {
            Err(Error::Invalid(self))
        }
    }
}

/// A request understood but refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The request could not be read: a bad query string, path, JSON body
    /// or header. `what` is the code's subject (`query`, `json`, `path`, …).
    Malformed {
        what: &'static str,
        message: String,
    },
    UnsupportedMediaType,
    /// A JSON body that parses but does not have the expected shape;
    /// `field` is the path of the value at fault when it is known.
    InvalidBody {
        message: String,
        field: Option<String>,
    },
    PayloadTooLarge {
        message: String,
    },
    /// A bulk request with more objects than it may carry.
    TooManyObjects {
        message: String,
    },
    MethodNotAllowed {
        allow: Vec<String>,
    },
    MissingApiKey,
    InvalidApiKey,
    /// A key of one environment named another.
    WrongEnvironment {
        key_environment: String,
    },
    /// The key's scope does not cover this call.
    InsufficientScope {
        needed: &'static str,
        has: &'static str,
    },
    /// The request came from a browser origin that may not use this key.
    OriginNotAllowed,
    NotAMember,
    InvalidRefreshToken,
    RefreshTokenReused,
    SessionRevoked,
    SessionExpired,
    /// OAuth: an unknown client id or a secret that does not belong to it.
    InvalidClient {
        message: String,
    },
    UnsupportedGrantType {
        message: String,
    },
    /// OFREP: the context has no `targetingKey`.
    TargetingKeyMissing,
    /// OFREP: the context is not of the expected shape.
    InvalidContext {
        message: String,
    },
    /// A flag that is not archived cannot be deleted.
    FlagNotArchived {
        name: String,
    },
    /// The last owner cannot be removed or demoted.
    LastOwner,
    /// Not signed in to the dashboard; `next` is where to return after.
    LoginRequired {
        next: String,
    },
    /// A dashboard form without a valid CSRF token.
    Csrf,
    /// The dashboard role does not allow this.
    Forbidden {
        message: String,
    },
    /// Understood, allowed, and still not possible (removing your own account).
    NotPossible {
        message: String,
    },
    /// Too many attempts; try again after this many seconds.
    TooManyAttempts {
        retry_after: u64,
        message: String,
    },
}

impl Refusal {
    pub fn status(&self) -> StatusCode {
        use Refusal::*;
        match self {
            Malformed { .. }
            | UnsupportedGrantType { .. }
            | TargetingKeyMissing
            | LastOwner
            | NotPossible { .. } => StatusCode::BAD_REQUEST,
            InvalidContext { .. } => StatusCode::BAD_REQUEST,
            UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            InvalidBody { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            PayloadTooLarge { .. } | TooManyObjects { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            MissingApiKey | InvalidApiKey | InvalidClient { .. } => StatusCode::UNAUTHORIZED,
            InvalidRefreshToken | RefreshTokenReused | SessionRevoked | SessionExpired => {
                StatusCode::UNAUTHORIZED
            }
            LoginRequired { .. } => StatusCode::UNAUTHORIZED,
            WrongEnvironment { .. }
            | InsufficientScope { .. }
            | OriginNotAllowed
            | NotAMember
            | Csrf
            | Forbidden { .. } => StatusCode::FORBIDDEN,
            FlagNotArchived { .. } => StatusCode::CONFLICT,
            TooManyAttempts { .. } => StatusCode::TOO_MANY_REQUESTS,
        }
    }

    pub fn code(&self) -> &'static str {
        use Refusal::*;
        match self {
            Malformed { what, .. } => match *what {
                "json" => "invalid_json",
                "query" => "invalid_query",
                "path" => "invalid_path",
                "if_match" => "invalid_if_match",
                "text" => "invalid_text",
                _ => "bad_request",
            },
            UnsupportedMediaType => "unsupported_media_type",
            InvalidBody { .. } => "invalid_body",
            PayloadTooLarge { .. } => "too_large",
            TooManyObjects { .. } => "too_many_objects",
            MethodNotAllowed { .. } => "method_not_allowed",
            MissingApiKey => "missing_api_key",
            InvalidApiKey => "invalid_api_key",
            WrongEnvironment { .. } => "wrong_environment",
            InsufficientScope { .. } => "insufficient_scope",
            OriginNotAllowed => "origin_not_allowed",
            NotAMember => "not_a_member",
            InvalidRefreshToken => "invalid_refresh_token",
            RefreshTokenReused => "refresh_token_reused",
            SessionRevoked => "session_revoked",
            SessionExpired => "session_expired",
            InvalidClient { .. } => "invalid_client",
            UnsupportedGrantType { .. } => "unsupported_grant_type",
            TargetingKeyMissing => "targeting_key_missing",
            InvalidContext { .. } => "invalid_context",
            FlagNotArchived { .. } => "flag_not_archived",
            LastOwner => "last_owner",
            LoginRequired { .. } => "unauthorized",
            Csrf => "csrf",
            Forbidden { .. } => "forbidden",
            NotPossible { .. } => "not_possible",
            TooManyAttempts { .. } => "too_many_requests",
        }
    }

    pub fn message(&self) -> String {
        use Refusal::*;
        match self {
            Malformed { message, .. }
            | InvalidBody { message, .. }
            | PayloadTooLarge { message }
            | TooManyObjects { message }
            | InvalidClient { message }
            | UnsupportedGrantType { message }
            | InvalidContext { message }
            | Forbidden { message }
            | NotPossible { message }
            | TooManyAttempts { message, .. } => message.clone(),
            UnsupportedMediaType => {
                "Send the body as JSON with Content-Type: application/json.".into()
            }
            MethodNotAllowed { allow } => format!(
                "This path does not answer this method. It answers {}.",
                allow.join(", ")
            ),
            MissingApiKey => "Send a secret API key as Authorization: Bearer sk_…".into(),
            InvalidApiKey => "This API key is unknown or revoked.".into(),
            WrongEnvironment { key_environment } => format!(
                "This key belongs to the environment {key_environment:?}. Use a key of the \
                 environment you name to read or change its rules."
            ),
            InsufficientScope { needed, has } => format!(
                "This key's scope is {has:?}; this call needs a key with the {needed:?} scope."
            ),
            OriginNotAllowed => "This key may not be used from this browser origin. Add the \
                origin to the environment's allowed origins, and use a publishable key (pk_…) \
                in browsers."
                .into(),
            NotAMember => "The user is not a member of this organization. Add the membership \
                first, or name an organization the user belongs to."
                .into(),
            InvalidRefreshToken => "This refresh token is not valid. Start a new session.".into(),
            RefreshTokenReused => "This refresh token was already used, so the session was \
                revoked to protect the user. Start a new session."
                .into(),
            SessionRevoked => "This session was revoked. Start a new session.".into(),
            SessionExpired => "This session expired. Start a new session.".into(),
            TargetingKeyMissing => "Give the user as context.targetingKey: a Flagpole user \
                id or the user's external id."
                .into(),
            FlagNotArchived { name } => format!(
                "{name} is not archived. Archive it first (it is then off everywhere), then \
                 delete it."
            ),
            LastOwner => "Flagpole needs at least one owner: make someone else owner first.".into(),
            LoginRequired { .. } => "Sign in to continue.".into(),
            Csrf => "Your form expired. Go back, reload the page and try again.".into(),
        }
    }
}

/// What any request, form or service call can fail with.
#[derive(Debug)]
pub enum Error {
    NotFound(Entity),
    /// A value that is valid but already taken (`code` is e.g. `duplicate`).
    Conflict {
        field: String,
        code: &'static str,
        message: String,
    },
    Invalid(FieldErrors),
    Stale(Entity),
    Refused(Refusal),
    Internal(anyhow::Error),
}

impl Error {
    pub fn refused(refusal: Refusal) -> Self {
        Error::Refused(refusal)
    }

    /// A value already taken by another object.
    pub fn duplicate(field: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Conflict {
            field: field.into(),
            code: "duplicate",
            message: message.into(),
        }
    }

    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Invalid(FieldErrors::single(field, message))
    }

    pub fn malformed(what: &'static str, message: impl Into<String>) -> Self {
        Error::Refused(Refusal::Malformed {
            what,
            message: message.into(),
        })
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Error::Refused(Refusal::Forbidden {
            message: message.into(),
        })
    }

    pub fn internal(cause: impl Into<anyhow::Error>) -> Self {
        Error::Internal(cause.into())
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Error::NotFound(_) => StatusCode::NOT_FOUND,
            Error::Conflict { .. } => StatusCode::CONFLICT,
            Error::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Error::Stale(_) => StatusCode::PRECONDITION_FAILED,
            Error::Refused(r) => r.status(),
            Error::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            Error::NotFound(entity) => entity.not_found_code(),
            Error::Conflict { code, .. } => code,
            Error::Invalid(_) => "invalid_field",
            Error::Stale(_) => "stale",
            Error::Refused(r) => r.code(),
            Error::Internal(_) => "internal_error",
        }
    }

    /// What a person may be told; for `Invalid`, the first field's problem.
    pub fn message(&self) -> String {
        match self {
            Error::NotFound(entity) => entity.not_found_message().into(),
            Error::Conflict { message, .. } => message.clone(),
            Error::Invalid(errors) => errors
                .first()
                .map_or("The input is invalid.".into(), |e| e.message.clone()),
            Error::Stale(entity) => entity.stale_message().into(),
            Error::Refused(r) => r.message(),
            Error::Internal(_) => {
                "Something went wrong on our side. The problem was logged.".into()
            }
        }
    }

    /// The field at fault, for conflicts and validation errors.
    pub fn field(&self) -> Option<&str> {
        match self {
            Error::Conflict { field, .. } => Some(field),
            Error::Invalid(errors) => errors.first().map(|e| e.field.as_str()),
            Error::Refused(Refusal::InvalidBody { field, .. }) => field.as_deref(),
            _ => None,
        }
    }

    /// The field problems of a form: validation errors and conflicts alike.
    pub fn field_errors(&self) -> Option<FieldErrors> {
        match self {
            Error::Invalid(errors) => Some(errors.clone()),
            Error::Conflict { field, message, .. } => {
                Some(FieldErrors::single(field.clone(), message.clone()))
            }
            _ => None,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Internal(cause) => write!(f, "internal error: {cause:#}"),
            other => write!(f, "{}: {}", other.code(), other.message()),
        }
    }
}

impl std::error::Error for Error {}

impl From<anyhow::Error> for Error {
    fn from(cause: anyhow::Error) -> Self {
        Error::Internal(cause)
    }
}

impl From<diesel::result::Error> for Error {
    /// A query that found no row has no entity to name: services that look
    /// something up by what a caller gave map it themselves, so a row
    /// missing here is a broken invariant.
    fn from(err: diesel::result::Error) -> Self {
        match err {
            // PostgreSQL text cannot hold NUL characters; input is checked
            // for them first, so this is a last line of defence.
            diesel::result::Error::DatabaseError(_, ref info)
                if info.message().contains("invalid byte sequence")
                    || info.message().contains("0x00") =>
            {
                Error::malformed("text", "Text cannot contain NUL characters (\\u0000).")
            }
            other => Error::Internal(other.into()),
        }
    }
}

impl From<diesel::r2d2::PoolError> for Error {
    fn from(err: diesel::r2d2::PoolError) -> Self {
        Error::Internal(err.into())
    }
}

impl From<actix_web::error::BlockingError> for Error {
    fn from(err: actix_web::error::BlockingError) -> Self {
        Error::Internal(anyhow::anyhow!("blocking task failed: {err}"))
    }
}

/// Turns "no row" into the caller's own not-found.
pub trait OrNotFound<T> {
    fn or_not_found(self, entity: Entity) -> Result<T, Error>;
}

impl<T> OrNotFound<T> for Result<T, diesel::result::Error> {
    fn or_not_found(self, entity: Entity) -> Result<T, Error> {
        match self {
            Err(diesel::result::Error::NotFound) => Err(Error::NotFound(entity)),
            other => other.map_err(Error::from),
        }
    }
}

impl<T> OrNotFound<T> for Option<T> {
    fn or_not_found(self, entity: Entity) -> Result<T, Error> {
        self.ok_or(Error::NotFound(entity))
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
