//! What a request says, parsed ([`ream_request`]), and the one check of a JSON body.

pub use ream_request::{accepted_format, parameters_json, query_parameters, RunBody, SplitWire, Wire};

use crate::error::ApiError;

/// A JSON request body (`what` names the endpoint in the error): `application/json` only,
/// since a `text/plain` body is what a cross-site form or fetch can send, and at most
/// `max` bytes.
pub fn json_body(
    what: &str,
    headers: &axum::http::HeaderMap,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
    max: usize,
) -> Result<axum::body::Bytes, ApiError> {
    let media = headers.get(axum::http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if !media.split(';').next().is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json")) {
        return Err(ApiError::UnsupportedMediaType(format!(
            "{what} takes application/json, not `{}`",
            media.chars().take(60).collect::<String>()
        )));
    }
    body.map_err(|e| match e.status() {
        axum::http::StatusCode::PAYLOAD_TOO_LARGE => ApiError::TooLarge(max),
        _ => ApiError::BadRequest(format!("request body: {e}")),
    })
}
