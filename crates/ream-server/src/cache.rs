//! The result cache of downloads (a spec's `cache: { ttl, max_bytes }`): the bytes a
//! download of a cached report sent are also written to the output store, under its
//! flight key, and an identical download within `ttl` is served from there with no query.
//! The flight key holds the parameters, format, encoding and the claims the spec reads,
//! so one tenant never receives another's output. The control store records each entry;
//! past the report's `max_bytes` or the server's `--cache-max-bytes` the oldest go.
//! Caching is best effort: a store that fails to write loses the entry, never the
//! download.

use std::io::Write;

use bytes::Bytes;
use ream_control::{CacheBounds, CacheEntry};
use ream_core::parsed::CachePolicy;
use tokio::sync::mpsc;

use crate::flight::Chunk;
use crate::found::control;
use crate::metrics as m;
use crate::AppState;

/// An entry's name in the output store.
fn name(key: &str) -> String {
    format!("cache/{key}")
}

/// The cached output of `key`, streamed from the store, if a fresh one is there.
pub async fn lookup(state: &AppState, report: &str, key: &str) -> Option<mpsc::Receiver<Chunk>> {
    let k = key.to_string();
    let entry = control(state, move |c| c.cache_get(&k)).await.ok().flatten();
    let Some(entry) = entry else {
        metrics::counter!(m::CACHE_MISSES_TOTAL, "report" => report.to_string()).increment(1);
        return None;
    };
    let outputs = state.outputs.clone();
    let n = entry.name.clone();
    let present = tokio::task::spawn_blocking(move || outputs.size(&n)).await.ok().and_then(Result::ok).flatten();
    if present != Some(entry.bytes) {
        // Removed behind our back (or half there): a miss, and the entry goes.
        let k = key.to_string();
        let _ = control(state, move |c| c.cache_forget(&k)).await;
        metrics::counter!(m::CACHE_MISSES_TOTAL, "report" => report.to_string()).increment(1);
        return None;
    }
    metrics::counter!(m::CACHE_HITS_TOTAL, "report" => report.to_string()).increment(1);
    let mut stored = state.outputs.read(&entry.name, None);
    let (tx, rx) = mpsc::channel(2);
    tokio::spawn(async move {
        while let Some(chunk) = stored.recv().await {
            if tx.send(chunk.map_err(std::io::Error::other)).await.is_err() {
                return;
            }
        }
    });
    Some(rx)
}

/// A download's bytes on their way into the cache.
pub struct CacheWriter {
    upload: Option<ream_outputs::Upload>,
    key: String,
    report: String,
    policy: CachePolicy,
}

impl CacheWriter {
    /// Start writing the output of `key` (None if the store refuses).
    pub fn begin(state: &AppState, report: &str, key: &str, policy: CachePolicy) -> Option<CacheWriter> {
        let upload = state.outputs.begin(&name(key), Box::new(|_| {}));
        match upload {
            Ok(u) => Some(CacheWriter { upload: Some(u), key: key.into(), report: report.into(), policy }),
            Err(e) => {
                tracing::warn!("cache of `{report}`: {e}");
                None
            }
        }
    }

    /// Add a chunk; a write that fails gives up the entry (the upload is aborted).
    pub fn write(&mut self, chunk: &Bytes) {
        if let Some(u) = self.upload.as_mut() {
            if let Err(e) = u.write_all(chunk) {
                tracing::warn!("cache of `{}`: {e}", self.report);
                self.upload = None;
            }
        }
    }

    /// The download succeeded: publish the entry, and make room (blocking).
    pub fn commit(self, state: &AppState) {
        let Some(upload) = self.upload else { return };
        let bytes = match upload.commit() {
            Ok(bytes) => bytes,
            Err(e) => return tracing::warn!("cache of `{}`: {e}", self.report),
        };
        let now = ream_control::now_ms();
        let entry = CacheEntry {
            key: self.key.clone(),
            report: self.report.clone(),
            name: name(&self.key),
            bytes,
            created_ms: now,
            expires_ms: now.saturating_add(self.policy.ttl.as_millis().min(i64::MAX as u128) as i64),
        };
        let bounds = CacheBounds { report: self.policy.max_bytes, total: state.config.cache_max_bytes };
        match state.control.cache_put(&entry, bounds) {
            Ok(dropped) => {
                for name in dropped {
                    if let Err(e) = state.outputs.remove(&name) {
                        tracing::warn!("cache: {e}");
                    }
                }
            }
            Err(e) => tracing::warn!("cache of `{}`: {e}", self.report),
        }
    }
}
