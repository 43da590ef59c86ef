//! JSON request bodies: read up to the route's limit, and refused with the
//! field at fault named. A body that is not JSON is `invalid_json` (400); a
//! field the request does not have, or a value of the wrong type, is 422
//! naming it (`targets[2].id`), so nothing sent is ever silently ignored.

use std::future::Future;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{FromRequest, HttpMessage, HttpRequest};
use futures_util::StreamExt;
use serde::de::DeserializeOwned;

use crate::error::{Error, Refusal, Result};

/// The largest body a route takes; set per route with `app_data`.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimit(pub usize);

/// A JSON body, deserialized.
pub struct Json<T>(pub T);

impl<T> Json<T> {
    pub fn into_inner(self) -> T {
        self.0
    }
}

fn human_size(bytes: usize) -> String {
    if bytes >= 1 << 20 {
        format!("{} MiB", bytes >> 20)
    } else {
        format!("{} KiB", bytes >> 10)
    }
}

/// Reads `bytes` as `T`, naming the field of any mismatch.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|err| {
        let path = err.path().to_string();
        describe(err.into_inner(), path)
    })?;
    de.end()
        .map_err(|e| Error::malformed("json", format!("The body is not valid JSON: {e}")))?;
    Ok(value)
}

fn describe(inner: serde_json::Error, path: String) -> Error {
    if !inner.is_data() {
        return Error::malformed("json", format!("The body is not valid JSON: {inner}"));
    }
    let message = inner.to_string();
    let message = message
        .split(" at line ")
        .next()
        .unwrap_or(&message)
        .to_string();
    if let Some(rest) = message.strip_prefix("unknown field `") {
        // The path ends at the unknown field itself.
        let name = rest.split('`').next().unwrap_or_default();
        let field = if path == "." { name.to_string() } else { path };
        return Error::invalid(
            field.clone(),
            format!("{field} is not a field of this request ({message})."),
        );
    }
    let field = (path != ".").then_some(path);
    let message = match &field {
        Some(field) => format!("{field}: {message}"),
        None => format!("The body does not have the expected shape: {message}"),
    };
    Error::Refused(Refusal::InvalidBody { message, field })
}

impl<T: DeserializeOwned + 'static> FromRequest for Json<T> {
    type Error = Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let limit = req
            .app_data::<BodyLimit>()
            .map_or(super::api::JSON_LIMIT, |l| l.0);
        let is_json = req
            .mime_type()
            .ok()
            .flatten()
            .is_some_and(|m| m.subtype() == mime::JSON || m.suffix() == Some(mime::JSON));
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        let mut payload = payload.take();
        Box::pin(async move {
            let too_large = || {
                Error::Refused(Refusal::PayloadTooLarge {
                    message: format!("The body is larger than {}.", human_size(limit)),
                })
            };
            if !is_json {
                return Err(Error::Refused(Refusal::UnsupportedMediaType));
            }
            if declared.is_some_and(|n| n > limit) {
                return Err(too_large());
            }
            let mut body = web_bytes(declared.unwrap_or(0).min(limit));
            while let Some(chunk) = payload.next().await {
                let chunk = chunk.map_err(|e| {
                    Error::malformed("json", format!("The body could not be read: {e}"))
                })?;
                if body.len() + chunk.len() > limit {
                    return Err(too_large());
                }
                body.extend_from_slice(&chunk);
            }
            parse(&body).map(Json)
        })
    }
}

fn web_bytes(capacity: usize) -> actix_web::web::BytesMut {
    actix_web::web::BytesMut::with_capacity(capacity)
}

/// A JSON string: copied as it is when nothing in it needs escaping (a
/// slug never does), escaped by `serde_json` otherwise.
pub fn push_json_str(out: &mut Vec<u8>, s: &str) {
    if s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else {
        // Writing a string into a vector cannot fail.
        let _ = serde_json::to_writer(&mut *out, s);
    }
}
