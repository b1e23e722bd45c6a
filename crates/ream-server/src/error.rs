//! The one place where errors become HTTP status codes and JSON bodies.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use ream_engine::EngineError;
use ream_sources::SourceError;

/// An error answered to a client: a status and a JSON body
/// `{"error": {"status", "kind", "message", "parameters"?}}`.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("no report `{0}`")]
    UnknownReport(String),
    #[error("no run `{0}`")]
    UnknownRun(String),
    #[error("no schedule `{0}`")]
    UnknownSchedule(String),
    /// A run's stored output has no such file.
    #[error("{0}")]
    UnknownPart(String),
    #[error("{0}")]
    BadRequest(String),
    /// No valid credentials: 401 with `WWW-Authenticate: Bearer`.
    #[error("{0}")]
    Unauthorized(#[source] ream_auth::AuthError),
    /// Authenticated, but not allowed: 403.
    #[error("{0}")]
    Forbidden(String),
    /// A limit of runs at once, or the queue, is full: 429 with `Retry-After`.
    #[error("{why}; try again shortly")]
    TooManyRuns { why: String, retry_after_secs: u64 },
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    MethodNotAllowed(String),
    #[error("the request body is over {0} bytes")]
    TooLarge(usize),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("no response within {0:?}: the run was cancelled")]
    Timeout(std::time::Duration),
    #[error("the server is shutting down")]
    ShuttingDown,
    #[error("{0}")]
    Engine(#[from] EngineError),
    /// An engine error as a caller who is not an admin sees it: without SQL text.
    #[error("{message}")]
    Redacted { error: Box<EngineError>, message: String },
    #[error("internal error: {0}")]
    Internal(String),
}

/// A request that did not parse ([`ream_request`]): 400.
impl From<ream_request::BadRequest> for ApiError {
    fn from(e: ream_request::BadRequest) -> ApiError {
        ApiError::BadRequest(e.0)
    }
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::UnknownReport(_)
            | ApiError::UnknownRun(_)
            | ApiError::UnknownSchedule(_)
            | ApiError::UnknownPart(_) => StatusCode::NOT_FOUND,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::TooManyRuns { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Timeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Engine(e) => engine_status(e),
            ApiError::Redacted { error, .. } => engine_status(error),
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            ApiError::UnknownReport(_) => "unknown_report",
            ApiError::UnknownRun(_) => "unknown_run",
            ApiError::UnknownSchedule(_) => "unknown_schedule",
            ApiError::UnknownPart(_) => "unknown_part",
            ApiError::BadRequest(_) => "bad_request",
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::TooManyRuns { .. } => "too_many_runs",
            ApiError::Conflict(_) => "conflict",
            ApiError::MethodNotAllowed(_) => "method_not_allowed",
            ApiError::TooLarge(_) => "too_large",
            ApiError::UnsupportedMediaType(_) => "unsupported_media_type",
            ApiError::Timeout(_) => "timeout",
            ApiError::ShuttingDown => "shutting_down",
            ApiError::Engine(e) => engine_kind(e),
            ApiError::Redacted { error, .. } => engine_kind(error),
            ApiError::Internal(_) => "internal",
        }
    }
}

fn engine_kind(e: &EngineError) -> &'static str {
    match e {
        EngineError::Params(_) => "bad_parameter",
        EngineError::Usage(_) => "bad_request",
        EngineError::Claim { .. } => "forbidden",
        EngineError::Spec(_) => "bad_spec",
        EngineError::Source { .. } => "source",
        EngineError::Cancelled => "cancelled",
        _ => "run_failed",
    }
}

/// How a run's failure reads over HTTP. A bad parameter or request is the client's
/// (400); a spec that does not fit its database is the server's configuration (500); a
/// database that cannot be reached is 503; a value that does not fit its column is 422.
pub fn engine_status(e: &EngineError) -> StatusCode {
    match e {
        EngineError::Params(_) | EngineError::Usage(_) => StatusCode::BAD_REQUEST,
        // A claim the actor lacks: checked before the database is opened.
        EngineError::Claim { .. } => StatusCode::FORBIDDEN,
        EngineError::Source { source: SourceError::Url { .. } | SourceError::Open { .. }, .. } => {
            StatusCode::SERVICE_UNAVAILABLE
        }
        EngineError::Source { source: SourceError::Value { .. } | SourceError::Rejected { .. }, .. } => {
            StatusCode::UNPROCESSABLE_ENTITY
        }
        EngineError::Cancelled => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// The body of every error response.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// The HTTP status, repeated.
    pub status: u16,
    /// What went wrong, for programs: `unknown_report`, `bad_request`, `bad_parameter`…
    pub kind: &'static str,
    /// What went wrong, for people.
    pub message: String,
    /// Each bad parameter, with its problem (bad_parameter only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Vec<ParameterProblem>>,
}

#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ParameterProblem {
    pub name: String,
    pub message: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let parameters = match &self {
            ApiError::Engine(EngineError::Params(ps)) => Some(
                ps.0.iter().map(|p| ParameterProblem { name: p.name.clone(), message: p.message.clone() }).collect(),
            ),
            _ => None,
        };
        let message = self.to_string();
        let denied = matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN).then(|| message.clone());
        let error = ErrorDetail { status: status.as_u16(), kind: self.kind(), message, parameters };
        let mut response = (status, axum::Json(ErrorBody { error })).into_response();
        if let Some(reason) = denied {
            response.extensions_mut().insert(crate::audit::Denial(reason));
        }
        match self {
            ApiError::TooManyRuns { retry_after_secs, .. } => {
                response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
            }
            // RFC 6750: no error code when no credentials were sent.
            ApiError::Unauthorized(ream_auth::AuthError::Missing) => {
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"ream\""));
            }
            ApiError::Unauthorized(_) => {
                response.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"ream\", error=\"invalid_token\""),
                );
            }
            _ => {}
        }
        response
    }
}
