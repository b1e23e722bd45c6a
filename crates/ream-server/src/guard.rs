//! No cross-site use, with or without auth. A web page a developer opens must not start
//! runs on their local ream, nor read reports through DNS rebinding:
//!
//! - `Host` must name this server: on a loopback listener `localhost`, `127.0.0.1` or
//!   `[::1]` with its port, or one of `--allowed-hosts` (which, when given, is the whole
//!   list on any listener);
//! - a state-changing request (`POST`, `PUT`, `PATCH`, `DELETE`) from a foreign `Origin`, or
//!   one a browser marks `Sec-Fetch-Site: cross-site`, is refused;
//! - every response says `X-Content-Type-Options: nosniff` and `X-Frame-Options: DENY`.
//!
//! Each refusal is a 403 that says why, before any handler runs.

use std::net::SocketAddr;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;
use crate::AppState;

/// Which `Host` values name this server.
#[derive(Debug, Clone, Default)]
pub struct HostPolicy {
    /// `--allowed-hosts`: `host` (any port) or `host:port`, compared case-insensitively.
    pub allowed: Vec<String>,
    /// The address the server listens on, once bound.
    pub listen: Option<SocketAddr>,
    /// Origins allowed by CORS (`--cors-origins`), which may also change things.
    pub cors: Vec<String>,
}

impl HostPolicy {
    /// Whether `host` (a `Host` header value) names this server.
    pub fn admits(&self, host: &str) -> bool {
        let host = host.trim().to_ascii_lowercase();
        let name = strip_port(&host);
        if !self.allowed.is_empty() {
            return self.allowed.iter().any(|a| {
                let a = a.trim().to_ascii_lowercase();
                a == host || (!has_port(&a) && a == name)
            });
        }
        match self.listen {
            Some(addr) if addr.ip().is_loopback() => {
                let port = addr.port().to_string();
                let given_port = host.strip_prefix(name).and_then(|p| p.strip_prefix(':'));
                ["localhost", "127.0.0.1", "[::1]"].contains(&name) && given_port == Some(port.as_str())
            }
            // Any name on a public listener without a list: auth is what guards it.
            _ => true,
        }
    }
}

fn has_port(host: &str) -> bool {
    strip_port(host) != host
}

/// `host:port` → `host`; `[::1]:8080` → `[::1]`.
fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.find(']').map_or(host, |i| &host[..=i]);
    }
    match host.rsplit_once(':') {
        Some((name, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    }
}

/// The middleware: Host, then Origin on state-changing methods, then the headers.
pub async fn cross_site(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if let Err(e) = check(&state, &req) {
        return with_headers(e.into_response());
    }
    with_headers(next.run(req).await)
}

fn check(state: &AppState, req: &Request) -> Result<(), ApiError> {
    let host =
        req.headers().get(header::HOST).and_then(|h| h.to_str().ok()).or(req.uri().authority().map(|a| a.as_str()));
    let Some(host) = host else {
        return Err(ApiError::BadRequest("the request has no Host header".into()));
    };
    // Read under the lock, not cloned: this runs on every request.
    let policy = state.hosts.read().unwrap_or_else(|e| e.into_inner());
    if !policy.admits(host) {
        return Err(ApiError::Forbidden(format!(
            "Host `{}` does not name this server (DNS rebinding?): add it to --allowed-hosts",
            host.chars().take(100).collect::<String>()
        )));
    }
    let changes = matches!(*req.method(), Method::POST | Method::PUT | Method::PATCH | Method::DELETE);
    if !changes {
        return Ok(());
    }
    if req.headers().get("sec-fetch-site").is_some_and(|v| v.as_bytes() == b"cross-site") {
        return Err(ApiError::Forbidden("a cross-site request may not change anything here".into()));
    }
    if let Some(origin) = req.headers().get(header::ORIGIN).and_then(|o| o.to_str().ok()) {
        let origin_host = origin.split_once("://").map_or(origin, |(_, rest)| rest);
        let allowed = policy.cors.iter().any(|o| o.trim_end_matches('/').eq_ignore_ascii_case(origin));
        if !allowed && !origin_host.eq_ignore_ascii_case(host) {
            return Err(ApiError::Forbidden(format!(
                "a request from origin `{}` may not change anything here",
                origin.chars().take(100).collect::<String>()
            )));
        }
    }
    Ok(())
}

/// CORS for the configured origins only (none by default): GET, HEAD, POST and DELETE,
/// with `Authorization`, `Content-Type` and `Range`.
pub fn cors(origins: &[String]) -> Option<tower_http::cors::CorsLayer> {
    use tower_http::cors::{AllowOrigin, CorsLayer};
    let list: Vec<HeaderValue> =
        origins.iter().filter_map(|o| HeaderValue::from_str(o.trim_end_matches('/')).ok()).collect();
    if list.is_empty() {
        return None;
    }
    Some(
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(list))
            .allow_methods([Method::GET, Method::HEAD, Method::POST, Method::DELETE])
            .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE, header::RANGE])
            .expose_headers([header::LOCATION, header::CONTENT_RANGE, header::CONTENT_DISPOSITION]),
    )
}

fn with_headers(mut response: Response) -> Response {
    let h = response.headers_mut();
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_loopback_server_admits_only_its_own_names_and_port() {
        let p = HostPolicy { allowed: vec![], listen: Some("127.0.0.1:8080".parse().unwrap()), cors: vec![] };
        for ok in ["127.0.0.1:8080", "localhost:8080", "LOCALHOST:8080", "[::1]:8080"] {
            assert!(p.admits(ok), "{ok}");
        }
        for no in ["attacker.example", "attacker.example:8080", "127.0.0.1:9999", "localhost", "127.0.0.1.evil:8080"] {
            assert!(!p.admits(no), "{no}");
        }
    }

    #[test]
    fn allowed_hosts_are_the_whole_list_with_or_without_a_port() {
        let p = HostPolicy {
            allowed: vec!["reports.example.com".into(), "ream.internal:8443".into()],
            listen: Some("0.0.0.0:8443".parse().unwrap()),
            cors: vec![],
        };
        assert!(p.admits("reports.example.com") && p.admits("reports.example.com:443"));
        assert!(p.admits("ream.internal:8443") && !p.admits("ream.internal:9000"));
        assert!(!p.admits("localhost:8443"));
        let open = HostPolicy { allowed: vec![], listen: Some("0.0.0.0:80".parse().unwrap()), cors: vec![] };
        assert!(open.admits("anything.example"));
    }
}
