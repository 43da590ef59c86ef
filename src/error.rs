//! One error type for the whole service. Every variant knows its status code
//! and what a person may be told; internal causes are logged, never shown.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use askama::Template;

/// Validation problems, each tied to the form or API field it concerns. The
/// flag is set when the value is valid but already taken (a duplicate), which
/// the API answers with 409 rather than 422.
#[derive(Debug, Clone, Default)]
pub struct FieldErrors(pub Vec<(String, String)>, pub bool);

impl FieldErrors {
    pub fn add(&mut self, field: &str, message: impl Into<String>) {
        self.0.push((field.to_string(), message.into()));
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    pub fn get(&self, field: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(f, _)| f == field)
            .map(|(_, m)| m.as_str())
    }
    /// A value that is valid but already taken by another object.
    pub fn conflict(field: &str, message: impl Into<String>) -> Self {
        let mut errors = Self::single(field, message);
        errors.1 = true;
        errors
    }
    pub fn is_conflict(&self) -> bool {
        self.1
    }
    pub fn single(field: &str, message: impl Into<String>) -> Self {
        let mut errors = Self::default();
        errors.add(field, message);
        errors
    }
    /// `Ok(())` when nothing was found wrong.
    pub fn into_result(self) -> Result<(), AppError> {
        if self.is_empty() {
            Ok(())
        } else {
            Err(AppError::Invalid(self))
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("The page or object you asked for does not exist.")]
    NotFound,
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("The form was invalid.")]
    Invalid(FieldErrors),
    /// Someone else changed the object since the form was opened.
    #[error("{0}")]
    Stale(String),
    #[error("Your form expired. Go back, reload the page and try again.")]
    Csrf,
    /// Not signed in: answered with a redirect to the sign-in page.
    #[error("Sign in to continue.")]
    LoginRequired(String),
    #[error("{0}")]
    TooManyAttempts(String),
    #[error("Something went wrong on our side. The problem was logged.")]
    Internal(#[from] anyhow::Error),
}

impl From<diesel::result::Error> for AppError {
    fn from(err: diesel::result::Error) -> Self {
        match err {
            diesel::result::Error::NotFound => AppError::NotFound,
            // PostgreSQL text cannot hold NUL characters; whatever sent one
            // gets a clear refusal, wherever the text came from.
            diesel::result::Error::DatabaseError(_, ref info)
                if info.message().contains("invalid byte sequence")
                    || info.message().contains("0x00") =>
            {
                AppError::BadRequest("Text cannot contain NUL characters (\\u0000).".into())
            }
            other => AppError::Internal(other.into()),
        }
    }
}

impl From<diesel::r2d2::PoolError> for AppError {
    fn from(err: diesel::r2d2::PoolError) -> Self {
        AppError::Internal(err.into())
    }
}

impl From<actix_web::error::BlockingError> for AppError {
    fn from(err: actix_web::error::BlockingError) -> Self {
        AppError::Internal(anyhow::anyhow!("blocking task failed: {err}"))
    }
}

impl AppError {
    pub fn title(&self) -> &'static str {
        match self {
            AppError::NotFound => "Not found",
            AppError::Forbidden(_) => "Not allowed",
            AppError::BadRequest(_) | AppError::Invalid(_) => "Check your input",
            AppError::Stale(_) => "Changed by someone else",
            AppError::Csrf => "Form expired",
            AppError::LoginRequired(_) => "Sign in",
            AppError::TooManyAttempts(_) => "Too many attempts",
            AppError::Internal(_) => "Something went wrong",
        }
    }

    fn message(&self) -> String {
        match self {
            AppError::Invalid(errors) => errors
                .0
                .iter()
                .map(|(field, msg)| format!("{field}: {msg}"))
                .collect::<Vec<_>>()
                .join("; "),
            other => other.to_string(),
        }
    }
}

#[derive(Template)]
#[template(path = "error.html")]
pub struct ErrorPage<'a> {
    pub status: u16,
    pub title: &'a str,
    pub message: &'a str,
}

impl ResponseError for AppError {
    fn status_code(&self) -> StatusCode {
        match self {
            AppError::NotFound => StatusCode::NOT_FOUND,
            AppError::Forbidden(_) | AppError::Csrf => StatusCode::FORBIDDEN,
            AppError::BadRequest(_) => StatusCode::BAD_REQUEST,
            AppError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            AppError::Stale(_) => StatusCode::CONFLICT,
            AppError::LoginRequired(_) => StatusCode::SEE_OTHER,
            AppError::TooManyAttempts(_) => StatusCode::TOO_MANY_REQUESTS,
            AppError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        if let AppError::Internal(cause) = self {
            tracing::error!(error = ?cause, "request failed");
        }
        if let AppError::LoginRequired(next) = self {
            let location = format!(
                "/login?next={}",
                percent_encoding::utf8_percent_encode(next, percent_encoding::NON_ALPHANUMERIC)
            );
            return HttpResponse::SeeOther()
                .insert_header((actix_web::http::header::LOCATION, location))
                .finish();
        }
        let status = self.status_code();
        render_error_page(status, self.title(), &self.message())
    }
}

pub fn render_error_page(status: StatusCode, title: &str, message: &str) -> HttpResponse {
    let page = ErrorPage {
        status: status.as_u16(),
        title,
        message,
    };
    match page.render() {
        Ok(html) => HttpResponse::build(status)
            .content_type("text/html; charset=utf-8")
            .body(html),
        Err(_) => HttpResponse::build(status).body(message.to_string()),
    }
}
