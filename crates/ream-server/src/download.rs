//! A stored output, streamed from the output store with `Range` support: one range
//! gives 206 and its Content-Range, a range past the end 416; several ranges are
//! answered with the whole output (200), as HTTP allows.

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;

use crate::error::ApiError;
use crate::AppState;

/// What a `Range` header asks of an output of `size` bytes.
#[derive(Debug, PartialEq, Eq)]
pub enum Wanted {
    Whole,
    /// Bytes `start..=end`.
    Part {
        start: u64,
        end: u64,
    },
    Unsatisfiable,
}

/// Parse `bytes=a-b`, `bytes=a-` or `bytes=-n`; anything else is the whole output.
pub fn wanted(range: Option<&str>, size: u64) -> Wanted {
    let Some(spec) = range.and_then(|r| r.trim().strip_prefix("bytes=")) else { return Wanted::Whole };
    if spec.contains(',') {
        return Wanted::Whole;
    }
    let Some((a, b)) = spec.trim().split_once('-') else { return Wanted::Whole };
    let (a, b) = (a.trim(), b.trim());
    let part = match (a.parse::<u64>(), b.parse::<u64>()) {
        (Ok(start), Ok(end)) if start <= end => (start, end.min(size.saturating_sub(1))),
        (Ok(start), Err(_)) if b.is_empty() => (start, size.saturating_sub(1)),
        (Err(_), Ok(n)) if a.is_empty() && n > 0 => (size.saturating_sub(n), size.saturating_sub(1)),
        (Err(_), Ok(0)) if a.is_empty() => return Wanted::Unsatisfiable,
        _ => return Wanted::Whole,
    };
    match part {
        (start, _) if start >= size => Wanted::Unsatisfiable,
        (start, end) => Wanted::Part { start, end },
    }
}

/// Stream output `name` of run `id`, the part the request's `Range` asks for.
pub async fn serve(state: &AppState, id: &str, name: &str, headers: &HeaderMap) -> Result<Response, ApiError> {
    let gone = || ApiError::Conflict(format!("run `{id}`: its output is gone"));
    let (outputs, key) = (state.outputs.clone(), name.to_string());
    let size = tokio::task::spawn_blocking(move || outputs.size(&key))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .ok_or_else(gone)?;
    let range = headers.get(header::RANGE).and_then(|v| v.to_str().ok());
    let (status, start, end) = match wanted(range, size) {
        Wanted::Whole => (StatusCode::OK, 0, size),
        Wanted::Part { start, end } => (StatusCode::PARTIAL_CONTENT, start, end + 1),
        Wanted::Unsatisfiable => {
            let mut r = Response::new(Body::empty());
            *r.status_mut() = StatusCode::RANGE_NOT_SATISFIABLE;
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}")) {
                r.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            return Ok(r);
        }
    };
    let rx = state.outputs.read(name, (size > 0).then_some(start..end));
    let body = Body::from_stream(futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|chunk| (chunk.map_err(std::io::Error::other), rx))
    }));
    let mut response = Response::new(body);
    *response.status_mut() = status;
    let h = response.headers_mut();
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(end - start));
    if status == StatusCode::PARTIAL_CONTENT {
        if let Ok(v) = HeaderValue::from_str(&format!("bytes {start}-{}/{size}", end - 1)) {
            h.insert(header::CONTENT_RANGE, v);
        }
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_read_as_http_defines_them() {
        assert_eq!(wanted(Some("bytes=10-109"), 1000), Wanted::Part { start: 10, end: 109 });
        assert_eq!(wanted(Some("bytes=990-2000"), 1000), Wanted::Part { start: 990, end: 999 });
        assert_eq!(wanted(Some("bytes=-7"), 1000), Wanted::Part { start: 993, end: 999 });
        assert_eq!(wanted(Some("bytes=-7000"), 1000), Wanted::Part { start: 0, end: 999 });
        assert_eq!(wanted(Some("bytes=5-"), 1000), Wanted::Part { start: 5, end: 999 });
        assert_eq!(wanted(Some("bytes=1005-"), 1000), Wanted::Unsatisfiable);
        assert_eq!(wanted(Some("bytes=-0"), 1000), Wanted::Unsatisfiable);
        assert_eq!(wanted(Some("bytes=0-0"), 0), Wanted::Unsatisfiable);
        assert_eq!(wanted(Some("bytes=0-1,5-6"), 1000), Wanted::Whole);
        assert_eq!(wanted(Some("items=0-1"), 1000), Wanted::Whole);
        assert_eq!(wanted(None, 1000), Wanted::Whole);
        assert_eq!(wanted(Some("bytes=9-3"), 1000), Wanted::Whole);
    }
}
