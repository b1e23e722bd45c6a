//! `/readyz`: whether each source answers a trivial query. One probe per source runs at a time however
//! many requests ask, each bounded to `PROBE_TIMEOUT` and cancelled when it runs out (a
//! database that hangs must not pile up blocked threads, one per scrape), and an answer
//! is reused for `CACHE_FOR`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ream_core::CancelToken;

/// How long a probe may take before the source counts as not answering.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long an answer is reused.
pub const CACHE_FOR: Duration = Duration::from_secs(2);

type Outcome = Arc<Mutex<Option<Result<(), String>>>>;

#[derive(Clone)]
struct Probe {
    started: Instant,
    outcome: Outcome,
    cancel: CancelToken,
}

#[derive(Default)]
pub struct Readiness {
    probes: Mutex<HashMap<String, Probe>>,
    /// The last answer (a report of each source, its outcome), and when; held while an
    /// answer is worked out, so that concurrent requests wait for it rather than probe.
    #[allow(clippy::type_complexity)]
    pub(crate) cached: tokio::sync::Mutex<Option<(Instant, Vec<(String, Result<(), String>)>)>>,
}

impl Readiness {
    /// Whether the source at `url` answers: the probe already running for it, or a new one
    /// (`ream_engine::ping`, a trivial query and none of `spec`'s SQL, on a blocking
    /// thread; `spec` only says where a relative SQLite path starts).
    pub async fn check(&self, url: String, base: Option<PathBuf>) -> Result<(), String> {
        let probe = self.probe_for(url, base);
        loop {
            if let Some(outcome) = probe.outcome.lock().unwrap_or_else(|e| e.into_inner()).clone() {
                return outcome;
            }
            let waited = probe.started.elapsed();
            if waited >= PROBE_TIMEOUT {
                probe.cancel.cancel();
                return Err(format!(
                    "no answer within {} s (asked {} s ago)",
                    PROBE_TIMEOUT.as_secs(),
                    waited.as_secs()
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn probe_for(&self, url: String, base: Option<PathBuf>) -> Probe {
        let mut probes = self.probes.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(p) = probes.get(&url) {
            if p.outcome.lock().unwrap_or_else(|e| e.into_inner()).is_none() {
                return p.clone();
            }
        }
        let probe = Probe { started: Instant::now(), outcome: Outcome::default(), cancel: CancelToken::new() };
        let (outcome, cancel) = (probe.outcome.clone(), probe.cancel.clone());
        let key = url.clone();
        tokio::task::spawn_blocking(move || {
            let r = ream_engine::ping(&url, base.as_deref(), cancel).map_err(|e| e.to_string());
            *outcome.lock().unwrap_or_else(|e| e.into_inner()) = Some(r);
        });
        probes.insert(key, probe.clone());
        probe
    }
}
