//! `--audit-log FILE`: one JSON line per event, appended, flushed and fsynced before the
//! event's response goes out: a run started and finished (its outcome, rows, bytes and
//! the output's sha256), a download, a cancel, and every request denied with 401 or 403.
//! Each line has the time, the actor, the client's address and user agent; run lines the
//! report, bound parameters and format. No token or secret is ever written: a denial
//! carries the reason, never the credential, and paths are written without their query.
//!
//! An fsync per line is what "the line is on disk when the client hears back" costs; it
//! is a few lines a run, none per row.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::header;
use axum::http::request::Parts;
use serde_json::{json, Value};

/// The open log.
#[derive(Debug)]
pub struct AuditLog {
    path: PathBuf,
    file: Mutex<std::fs::File>,
}

impl AuditLog {
    pub fn open(path: &Path) -> std::io::Result<AuditLog> {
        let file = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
        Ok(AuditLog { path: path.to_path_buf(), file: Mutex::new(file) })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Append `event` (an object) with the time, then flush and fsync. A write that fails
    /// is reported on stderr; the request it records is not failed for it.
    pub fn record(&self, event: &str, mut fields: Value) {
        fields["time"] = json!(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
        fields["event"] = json!(event);
        let mut line = fields.to_string();
        line.push('\n');
        let mut f = self.file.lock().unwrap_or_else(|e| e.into_inner());
        if let Err(e) = f.write_all(line.as_bytes()).and_then(|()| f.flush()).and_then(|()| f.sync_data()) {
            tracing::warn!("audit log {}: {e}", self.path.display());
        }
    }

    /// The lines at or after `since` (RFC 3339), oldest first.
    pub fn since(&self, since: Option<&str>) -> std::io::Result<Vec<Value>> {
        let since = since.map(|s| s.to_string());
        let text = std::fs::read_to_string(&self.path)?;
        Ok(text
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| since.as_deref().is_none_or(|s| v["time"].as_str().is_some_and(|t| later_or_same(t, s))))
            .collect())
    }
}

/// Whether RFC 3339 time `t` is at or after `since` (compared as instants).
fn later_or_same(t: &str, since: &str) -> bool {
    match (chrono::DateTime::parse_from_rfc3339(t), chrono::DateTime::parse_from_rfc3339(since)) {
        (Ok(t), Ok(s)) => t >= s,
        _ => false,
    }
}

/// Where a request came from: the peer address and its user agent.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Client {
    pub address: Option<SocketAddr>,
    pub user_agent: Option<String>,
}

impl Client {
    pub fn fields(&self) -> Value {
        json!({ "client": self.address.map(|a| a.to_string()), "user_agent": self.user_agent })
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Client {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Client::of(parts))
    }
}

impl Client {
    pub fn of(parts: &Parts) -> Client {
        Client::from(&parts.headers, &parts.extensions)
    }

    pub fn of_request(req: &axum::extract::Request) -> Client {
        Client::from(req.headers(), req.extensions())
    }

    fn from(headers: &axum::http::HeaderMap, extensions: &axum::http::Extensions) -> Client {
        Client {
            address: extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0),
            user_agent: (headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok()))
                .map(|s| s.chars().take(200).collect()),
        }
    }
}

/// Filled by the [`crate::Caller`] extractor, read after the response: who a denied
/// request came from, when that was known.
#[derive(Clone, Default)]
pub struct ActorSlot(pub Arc<Mutex<Option<String>>>);

/// Set on a 401 or 403 response: why, for the audit line.
#[derive(Clone)]
pub struct Denial(pub String);
