//! A run as a request finds it: live on this instance (its counters as they are), or as
//! the control store holds it (as its own instance last wrote it, at most a second
//! old). Every handler that reads, follows, cancels or downloads a run goes through here,
//! so any instance answers for every run.

use std::sync::Arc;

use ream_control::RunRecord;
use serde_json::json;

use crate::error::ApiError;
use crate::registry::{RunEntry, Status};
use crate::{AppState, Caller};

#[derive(Clone)]
pub enum Found {
    Local(Arc<RunEntry>),
    Stored(Box<RunRecord>),
}

impl Found {
    pub fn id(&self) -> &str {
        match self {
            Found::Local(e) => &e.id,
            Found::Stored(r) => &r.id,
        }
    }

    pub fn actor(&self) -> &str {
        match self {
            Found::Local(e) => &e.actor,
            Found::Stored(r) => &r.actor,
        }
    }

    pub fn status(&self) -> Status {
        match self {
            Found::Local(e) => e.status(),
            Found::Stored(r) => r.status,
        }
    }

    pub fn is_async(&self) -> bool {
        match self {
            Found::Local(e) => e.mode == crate::Mode::Async,
            Found::Stored(r) => r.mode == "async",
        }
    }

    pub fn report(&self) -> &str {
        match self {
            Found::Local(e) => &e.report,
            Found::Stored(r) => &r.report,
        }
    }

    pub fn format(&self) -> ream_engine::Format {
        match self {
            Found::Local(e) => e.format,
            Found::Stored(r) => ream_engine::Format::from_name(&r.format).unwrap_or(ream_engine::Format::Csv),
        }
    }

    /// The stored output: its name and bytes.
    pub fn output(&self) -> Option<(String, u64)> {
        match self {
            Found::Local(e) => e.output(),
            Found::Stored(r) => r.output.clone(),
        }
    }

    /// Whether the output is parts with a manifest.
    pub fn is_split(&self) -> bool {
        match self {
            Found::Local(e) => e.split.is_some() || e.burst,
            Found::Stored(r) => r.request["split"].is_object() || r.request["burst"] == true,
        }
    }

    /// The run as JSON; `admin` sees the SQL text of its error, others do not.
    pub fn snapshot(&self, admin: bool) -> serde_json::Value {
        match self {
            Found::Local(e) => e.snapshot_for(admin),
            Found::Stored(r) => {
                let mut v = r.snapshot.clone();
                // The row's own columns are the truth (a queued run cancelled, a lease
                // that expired, an output retention removed).
                v["status"] = json!(r.status);
                v["attempt"] = json!(r.attempt);
                v["instance"] = json!(r.instance);
                v["output_bytes"] = json!(r.output.as_ref().map(|o| o.1));
                if !admin || v["error"].is_null() {
                    v["error"] = json!(r.error_public);
                }
                if r.status != Status::Queued {
                    v["queue_position"] = json!(null);
                }
                if r.status.is_finished() {
                    v["stalled"] = json!(false);
                    v["memory_bytes"] = json!(0);
                }
                v
            }
        }
    }

    /// Record `event` for this run in the audit log.
    pub fn audit(&self, state: &AppState, event: &str, extra: serde_json::Value) {
        match self {
            Found::Local(e) => e.audit(event, extra),
            Found::Stored(r) => {
                let Some(log) = &state.audit else { return };
                let mut line = json!({
                    "run": r.id, "actor": r.actor, "report": r.report, "format": r.format, "mode": r.mode,
                    "parameters": r.snapshot["parameters"],
                });
                if let Some(extra) = extra.as_object() {
                    for (k, v) in extra {
                        line[k] = v.clone();
                    }
                }
                log.record(event, line);
            }
        }
    }
}

/// Run `f` with the control store, off the async threads.
pub async fn control<T: Send + 'static>(
    state: &AppState,
    f: impl FnOnce(&ream_control::Control) -> Result<T, ream_control::ControlError> + Send + 'static,
) -> Result<T, ApiError> {
    let control = state.control.clone();
    tokio::task::spawn_blocking(move || f(&control))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .map_err(|e| ApiError::Internal(e.to_string()))
}

/// Run `id`, whoever's it is (a signed link has already named it).
pub async fn lookup(state: &AppState, id: &str) -> Result<Option<Found>, ApiError> {
    if let Some(entry) = state.registry.get(id) {
        return Ok(Some(Found::Local(entry)));
    }
    let id = id.to_string();
    let mut runs: Vec<RunRecord> = control(state, move |c| c.get_run(&id)).await?.into_iter().collect();
    with_queue_positions(state, &mut runs).await?;
    Ok(runs.pop().map(|r| Found::Stored(Box::new(r))))
}

/// Put each queued run's place in the queue (1 is next, oldest first) in its snapshot.
async fn with_queue_positions(state: &AppState, runs: &mut [RunRecord]) -> Result<(), ApiError> {
    if !runs.iter().any(|r| r.status == Status::Queued) {
        return Ok(());
    }
    let order = control(state, |c| c.queue_order()).await?;
    for run in runs.iter_mut().filter(|r| r.status == Status::Queued) {
        let position = order.iter().position(|id| *id == run.id).map(|p| p + 1);
        run.snapshot["queue_position"] = json!(position);
    }
    Ok(())
}

/// A run the caller sees; anyone else's is as unknown as one that never was (404).
pub async fn find(state: &AppState, caller: &Caller, id: &str) -> Result<Found, ApiError> {
    lookup(state, id).await?.filter(|r| caller.sees(r.actor())).ok_or_else(|| ApiError::UnknownRun(id.to_string()))
}

/// The runs the caller sees, newest first, live where they run here.
pub async fn list(state: &AppState, caller: &Caller) -> Result<Vec<Found>, ApiError> {
    let actor = (!caller.admin).then(|| caller.actor.sub.clone());
    let limit = state.config.keep_finished + state.config.max_runs * 4;
    let stored = control(state, move |c| c.list_runs(actor.as_deref(), limit)).await?;
    located(state, stored).await
}

/// Stored runs, with their queue positions, live where they run here.
async fn located(state: &AppState, mut stored: Vec<RunRecord>) -> Result<Vec<Found>, ApiError> {
    with_queue_positions(state, &mut stored).await?;
    Ok(stored
        .into_iter()
        .map(|r| match state.registry.get(&r.id) {
            Some(entry) => Found::Local(entry),
            None => Found::Stored(Box::new(r)),
        })
        .collect())
}

/// The runs schedule `id` fired that the caller sees, newest fire first.
pub async fn of_schedule(state: &AppState, caller: &Caller, id: &str) -> Result<Vec<Found>, ApiError> {
    let (key, limit) = (id.to_string(), state.config.keep_finished + state.config.max_runs * 4);
    let mut stored = control(state, move |c| c.runs_of_schedule(&key, limit)).await?;
    stored.retain(|r| caller.sees(&r.actor));
    located(state, stored).await
}
