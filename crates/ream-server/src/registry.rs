//! The run registry: every run, sync or async, from the request to its outcome, with
//! live counters; finished runs are kept up to a bound.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, SecondsFormat, Utc};
use ream_core::CancelToken;
use ream_engine::{BatchLimit, Format, Progress, ResumeLog};
use serde::Serialize;
use serde_json::json;

use crate::metrics as m;

/// Where a run is in its life (the control store's statuses).
pub use ream_control::RunStatus as Status;

/// A new run's id: 16 random hex digits, unique across instances and restarts.
pub(crate) fn new_run_id() -> String {
    let mut bytes = [0u8; 8];
    if getrandom::fill(&mut bytes).is_err() {
        let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        bytes = (t as u64).to_le_bytes();
    }
    ream_auth::token::hex(&bytes)
}

/// How the output is delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Streamed in the response to `GET /reports/{id}.{format}`.
    Sync,
    /// Stored, then fetched from `GET /runs/{id}/output`.
    Async,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Sync => "sync",
            Mode::Async => "async",
        }
    }
}

/// What a new run is.
pub struct RunRequest {
    pub report: String,
    pub format: Format,
    pub parameters: Vec<(String, ream_core::params::Given)>,
    /// Who asked: the run is theirs, and its SQL sees their claims.
    pub actor: ream_core::Actor,
    pub mode: Mode,
    /// Async runs: the output as parts with a manifest.
    pub split: Option<ream_engine::Split>,
    /// Async runs: one output per burst, as parts with a manifest.
    pub burst: bool,
    /// Where the request came from (for the audit log).
    pub client: crate::audit::Client,
    /// The request as recorded in the control store (what running it again needs).
    pub record: serde_json::Value,
    /// A run of the control store this instance claimed from the queue: its id and this
    /// attempt (None: a new run).
    pub again: Option<(String, i64)>,
    /// Its source and flight key, once checked against its report (`runs::check`).
    pub checked: Option<ream_engine::Checked>,
    /// The schedule that fired it, and the fire time (ms since the epoch).
    pub schedule: Option<(String, i64)>,
}

#[derive(Debug)]
struct State {
    status: Status,
    finished_at: Option<DateTime<Utc>>,
    elapsed: Option<Duration>,
    error: Option<String>,
    /// The error without SQL text, for callers who are not admins.
    error_public: Option<String>,
    /// The stored output's name and size (async runs that succeeded).
    output: Option<(String, u64)>,
    progress: Option<Arc<Progress>>,
    /// For the stall monitor: the rows at the last change, and when.
    last_rows: u64,
    last_change: Instant,
    stalled: bool,
    /// Why the server stopped the run (its memory budget), to report instead of a
    /// plain cancel.
    abort_reason: Option<String>,
}

impl State {
    /// Rows read so far, and bytes written (the stored output's size once there is one).
    fn rows_and_bytes(&self) -> (u64, u64) {
        let (rows, bytes) = self
            .progress
            .as_ref()
            .map_or((0, 0), |p| (p.rows.load(Ordering::Relaxed), p.bytes.load(Ordering::Relaxed)));
        (rows, self.output.as_ref().map_or(bytes, |o| o.1))
    }
}

/// One run.
#[derive(Debug)]
pub struct RunEntry {
    pub id: String,
    pub report: String,
    pub format: Format,
    pub parameters: Vec<(String, ream_core::params::Given)>,
    /// Who runs it (the actor's `sub`): only they, and admins, see the run.
    pub actor: String,
    /// The actor's roles and claims, for the run's `:actor.<claim>` (never shown).
    pub identity: ream_core::Actor,
    pub mode: Mode,
    /// The output as parts with a manifest (async runs).
    pub split: Option<ream_engine::Split>,
    /// One output per burst, as parts with a manifest (async runs).
    pub burst: bool,
    pub client: crate::audit::Client,
    /// The schedule that fired it, and the fire time (ms since the epoch).
    pub schedule: Option<(String, i64)>,
    /// Where the run's start and end are recorded (`--audit-log`).
    audit: Option<Arc<crate::audit::AuditLog>>,
    /// The SHA-256 of the output as written (hex), for the audit line of its end.
    sha256: Mutex<Option<String>>,
    pub cancel: CancelToken,
    /// Rows per batch, lowered under memory pressure (0: the spec's).
    pub batch_limit: BatchLimit,
    /// Where the source records each resume after a lost connection.
    pub resumes: ResumeLog,
    /// The instance running it, and which attempt this is.
    pub instance: String,
    pub attempt: i64,
    control: Arc<ream_control::Control>,
    pub created_at: DateTime<Utc>,
    pub created: Instant,
    state: Mutex<State>,
}

impl RunEntry {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn status(&self) -> Status {
        self.state().status
    }

    /// The run has started streaming: its live counters.
    pub fn running(&self, progress: Arc<Progress>) {
        let mut s = self.state();
        if s.status == Status::Preparing {
            s.status = Status::Running;
        }
        s.progress = Some(progress);
        s.last_change = Instant::now();
        drop(s);
        tracing::info!(target: "ream::runs", "run {} started: report {} for {} (attempt {})", self.id, self.report, self.actor, self.attempt);
    }

    /// The outcome (only the first call counts). Updates the metrics.
    pub fn finish(&self, status: Status, error: Option<String>, output: Option<(String, u64)>) {
        let mut s = self.state();
        if s.status.is_finished() {
            return;
        }
        match s.abort_reason.take() {
            Some(reason) => {
                s.status = Status::Failed;
                s.error = Some(reason);
            }
            None => {
                s.status = status;
                s.error = error;
            }
        }
        let status = s.status;
        if s.error_public.is_none() {
            s.error_public = s.error.clone();
        }
        s.output = output;
        s.finished_at = Some(Utc::now());
        let elapsed = self.created.elapsed();
        s.elapsed = Some(elapsed);
        s.stalled = false;
        let (rows, bytes) = s.rows_and_bytes();
        if let Some(log) = &self.audit {
            let mut line = self.audit_fields();
            line["outcome"] = json!(status.name());
            line["rows"] = json!(rows);
            line["bytes"] = json!(bytes);
            line["sha256"] = json!(*self.sha256.lock().unwrap_or_else(|e| e.into_inner()));
            line["error"] = json!(s.error);
            log.record("run_finished", line);
        }
        let (id, ms) = (&self.id, elapsed.as_millis());
        match &s.error {
            None => {
                tracing::info!(target: "ream::runs", "run {id} {}: {rows} rows, {bytes} bytes in {ms} ms", status.name())
            }
            Some(e) => {
                tracing::warn!(target: "ream::runs", "run {id} {} after {rows} rows, {ms} ms: {e}", status.name())
            }
        }
        drop(s);
        self.persist();
        metrics::counter!(m::RUNS_TOTAL, "report" => self.report.clone(), "status" => status.name()).increment(1);
        metrics::histogram!(m::RUN_DURATION, "status" => status.name()).record(elapsed.as_secs_f64());
        metrics::gauge!(m::ACTIVE_RUNS).decrement(1.0);
        metrics::counter!(m::RESUMES_TOTAL).increment(self.resumes.list().len() as u64);
        if let Some(p) = &self.state().progress {
            metrics::counter!(m::ROWS_TOTAL).increment(p.rows.load(Ordering::Relaxed));
            metrics::counter!(m::BYTES_TOTAL).increment(p.bytes.load(Ordering::Relaxed));
        }
    }

    /// Write the run as it is now to the control store, where every instance reads it.
    /// False when the run is no longer this instance's (another took it over).
    pub fn persist(&self) -> bool {
        let snapshot = self.snapshot();
        let (status, error_public, output) = {
            let s = self.state();
            (s.status, s.error_public.clone(), s.output.clone())
        };
        let update = ream_control::RunUpdate {
            status,
            snapshot: &snapshot,
            error_public: error_public.as_deref(),
            output: output.as_ref().map(|(n, b)| (n.as_str(), *b)),
        };
        match self.control.update_run(&self.id, &self.instance, self.attempt, &update) {
            Ok(owned) => owned,
            Err(e) => {
                tracing::warn!("run {}: {e}", self.id);
                true
            }
        }
    }

    /// The run failed with `e`: as [`RunEntry::finish`], and non-admins see the message
    /// without its SQL text.
    pub fn fail(&self, status: Status, e: &ream_engine::EngineError) {
        {
            let mut s = self.state();
            if s.status.is_finished() {
                return;
            }
            s.error_public = Some(e.without_sql());
        }
        self.finish(status, Some(e.to_string()), None);
    }

    /// The output's SHA-256 as written, before the run finishes.
    pub fn set_sha256(&self, hex: String) {
        *self.sha256.lock().unwrap_or_else(|e| e.into_inner()) = Some(hex);
    }

    /// What every audit line of this run says: who, from where, which report, with what.
    pub fn audit_fields(&self) -> serde_json::Value {
        let mut v = self.client.fields();
        v["run"] = json!(self.id);
        v["actor"] = json!(self.actor);
        v["report"] = json!(self.report);
        v["format"] = json!(self.format.name());
        v["mode"] = json!(self.mode);
        v["parameters"] =
            json!(self.parameters.iter().map(|(k, v)| (k.clone(), json!(v))).collect::<serde_json::Map<_, _>>());
        v
    }

    /// Record `event` for this run in the audit log, with `extra` fields.
    pub fn audit(&self, event: &str, extra: serde_json::Value) {
        if let Some(log) = &self.audit {
            let mut line = self.audit_fields();
            if let Some(extra) = extra.as_object() {
                for (k, v) in extra {
                    line[k] = v.clone();
                }
            }
            log.record(event, line);
        }
    }

    /// Hold the run to `budget` bytes: lower its rows per batch when its memory estimate
    /// is over; when batches are already at `min_rows` and it is still over, stop it
    /// with an error saying so. Acts only once the last lowering has reached the batches.
    pub fn enforce_budget(&self, budget: u64, min_rows: usize) {
        let Some(p) = self.state().progress.clone() else { return };
        if self.status() != Status::Running {
            return;
        }
        let rows = p.batch_rows.load(Ordering::Relaxed) as usize;
        let limit = self.batch_limit.get();
        let estimate = p.memory_estimate();
        if rows == 0 || estimate <= budget || (limit != 0 && rows > limit) {
            return;
        }
        if rows > min_rows {
            // Rows that fit the budget at the last batch's bytes per row, at most half.
            let per_row = (p.batch_bytes.load(Ordering::Relaxed) / rows as u64).max(1);
            let fit = (Progress::batch_budget(budget) / per_row) as usize;
            self.batch_limit.set(fit.min(rows / 2).max(min_rows));
        } else {
            let reason = format!(
                "the run needs about {} KiB with batches of {rows} rows, over its memory budget of {} KiB",
                estimate / 1024,
                budget / 1024
            );
            self.state().abort_reason = Some(reason);
            self.cancel.cancel();
        }
    }

    /// The stored output (name, bytes) of a finished async run.
    pub fn output(&self) -> Option<(String, u64)> {
        self.state().output.clone()
    }

    /// The output is gone (retention): the run keeps its record.
    pub fn expire_output(&self) {
        let mut s = self.state();
        s.output = None;
        if s.error.is_none() {
            s.error = Some("the output was removed by the retention policy".into());
        }
    }

    /// Check for progress; returns whether the run is stalled (running, no new rows for
    /// longer than `after`).
    pub fn check_stall(&self, after: Duration) -> bool {
        let mut s = self.state();
        if s.status.is_finished() {
            return false;
        }
        let rows = s.progress.as_ref().map_or(0, |p| p.read_rows.load(Ordering::Relaxed));
        if rows != s.last_rows {
            s.last_rows = rows;
            s.last_change = Instant::now();
        }
        s.stalled = s.last_change.elapsed() > after;
        s.stalled
    }

    /// The run as JSON, as an admin sees it.
    pub fn snapshot(&self) -> serde_json::Value {
        self.snapshot_for(true)
    }

    /// The run as JSON; `admin` sees the SQL text in its error, others do not.
    pub fn snapshot_for(&self, admin: bool) -> serde_json::Value {
        let s = self.state();
        let bursts = s.progress.as_ref().map_or(0, |p| p.bursts.load(Ordering::Relaxed));
        let bursts_total = s.progress.as_ref().and_then(|p| p.bursts_total());
        let (rows, bytes, total, memory) = match &s.progress {
            Some(p) => (
                p.rows.load(Ordering::Relaxed),
                p.bytes.load(Ordering::Relaxed),
                p.total(),
                if s.status.is_finished() { 0 } else { p.memory_estimate() },
            ),
            None => (0, 0, None, 0),
        };
        let elapsed = s.elapsed.unwrap_or_else(|| self.created.elapsed()).as_secs_f64();
        let percent = match (total, s.status) {
            (_, Status::Succeeded) => Some(100.0),
            (Some(t), _) if t > 0 => Some((rows as f64 * 100.0 / t as f64).min(100.0)),
            (Some(_), _) => Some(0.0),
            _ => None,
        };
        let rate = if elapsed > 0.0 { rows as f64 / elapsed } else { 0.0 };
        let links = match self.mode {
            Mode::Async => json!({
                "self": format!("/runs/{}", self.id),
                "events": format!("/runs/{}/events", self.id),
                "output": format!("/runs/{}/output", self.id),
            }),
            Mode::Sync => {
                json!({ "self": format!("/runs/{}", self.id), "events": format!("/runs/{}/events", self.id) })
            }
        };
        let mut v = json!({
            "id": self.id,
            "report": self.report,
            "format": self.format.name(),
            "parameters": self.parameters.iter().map(|(k, v)| (k.clone(), json!(v))).collect::<serde_json::Map<_, _>>(),
            "mode": self.mode,
            "actor": self.actor,
            "status": s.status,
            "rows": rows,
            "bytes": bytes,
            "total": total,
            "percent": percent.map(|p| (p * 10.0).round() / 10.0),
            "rows_per_second": rate.round(),
            "memory_bytes": memory,
            "batch_rows_limit": match self.batch_limit.get() { 0 => None, n => Some(n) },
            "stalled": s.stalled,
            "resumes": self.resumes.list(),
            "instance": self.instance,
            "attempt": self.attempt,
            "queue_position": null,
            "started_at": self.created_at.to_rfc3339_opts(SecondsFormat::Millis, true),
            "finished_at": s.finished_at.map(|t| t.to_rfc3339_opts(SecondsFormat::Millis, true)),
            "elapsed_seconds": (elapsed * 1000.0).round() / 1000.0,
            "error": if admin { &s.error } else { &s.error_public },
            "output_bytes": s.output.as_ref().map(|o| o.1),
            "schedule": self.schedule.as_ref().map(|s| &s.0),
            "fire_time": self.schedule.as_ref().map(|s| fire_time(s.1)),
            "links": links,
        });
        // A burst run: the bursts written whole so far, and their number once the count
        // query has answered (or the run has read every row; none with `count: none`).
        if self.burst {
            v["bursts_done"] = json!(bursts);
            v["bursts_total"] = json!(if s.status == Status::Succeeded { Some(bursts) } else { bursts_total });
        }
        v
    }
}

/// A fire time (ms since the epoch) as runs show it.
pub fn fire_time(ms: i64) -> Option<String> {
    DateTime::from_timestamp_millis(ms).map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true))
}

/// Every active run and the most recent finished ones.
pub struct Registry {
    runs: Mutex<Vec<Arc<RunEntry>>>,
    keep_finished: usize,
    audit: Option<Arc<crate::audit::AuditLog>>,
    control: Arc<ream_control::Control>,
    /// This instance's name in the control store.
    pub instance: String,
    /// How long a run's lease lasts without a heartbeat.
    pub lease: Duration,
}

impl Registry {
    pub fn new(
        keep_finished: usize,
        audit: Option<Arc<crate::audit::AuditLog>>,
        control: Arc<ream_control::Control>,
        instance: String,
        lease: Duration,
    ) -> Registry {
        Registry { runs: Mutex::new(Vec::new()), keep_finished, audit, control, instance, lease }
    }

    fn runs(&self) -> std::sync::MutexGuard<'_, Vec<Arc<RunEntry>>> {
        self.runs.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Register a run starting here: a download, recorded in the control store if its
    /// actor and source are under `limits` (None: over one, nothing recorded), or a run
    /// this instance claimed from the queue. Blocking: call it off the async threads.
    pub fn add(
        &self,
        mut req: RunRequest,
        limits: ream_control::ClaimLimits,
    ) -> Result<Option<Arc<RunEntry>>, ream_control::ControlError> {
        if let Some((id, attempt)) = req.again.take() {
            // Already in the control store, claimed by this instance.
            let entry = self.entry(id, req, attempt);
            self.register(entry.clone());
            return Ok(Some(entry));
        }
        let (record, checked) = (req.record.clone(), req.checked.clone().unwrap_or_default());
        let entry = self.entry(new_run_id(), req, 1);
        let snapshot = entry.snapshot();
        let run = self.new_run(&entry, &record, &checked.source, &snapshot, None);
        if !self.control.insert_run_within(&run, limits)? {
            return Ok(None);
        }
        self.register(entry.clone());
        Ok(Some(entry))
    }

    /// Put an async run in the queue, for whichever instance has room first, unless the
    /// same actor's identical run is still going (a double-click): that one's id is
    /// returned instead. Blocking: call it off the async threads.
    pub fn enqueue(&self, req: RunRequest) -> Result<String, ream_control::ControlError> {
        let (record, checked) = (req.record.clone(), req.checked.clone().unwrap_or_default());
        let entry = self.entry(new_run_id(), req, 0);
        entry.state().status = Status::Queued;
        let mut snapshot = entry.snapshot();
        snapshot["instance"] = serde_json::Value::Null;
        // Split runs too: the same parts, once. Another actor's identical run is theirs
        // to see, so it is not joined here (a download may join it: flight.rs).
        let key = format!("{}/{}", checked.flight, entry.actor);
        let going = self.control.enqueue_unless_flying(&self.new_run(
            &entry,
            &record,
            &checked.source,
            &snapshot,
            Some(&key),
        ))?;
        Ok(going.unwrap_or_else(|| entry.id.clone()))
    }

    /// Record the fires of `schedule` its look found (with `window`, the look's start
    /// and end: only if no other instance's look came first), each with its run queued
    /// as the schedule's owner (or why it could not run) and `targets` to deliver.
    /// Returns the ids of the runs queued (none: another instance's look came first).
    /// Blocking: call it off the async threads.
    pub fn fire(
        &self,
        schedule: &str,
        window: Option<(i64, i64)>,
        fires: Vec<(i64, Result<RunRequest, String>)>,
        targets: &[serde_json::Value],
    ) -> Result<Vec<String>, ream_control::ControlError> {
        struct Made {
            entry: Arc<RunEntry>,
            record: serde_json::Value,
            source: String,
            snapshot: serde_json::Value,
        }
        let made: Vec<(i64, Result<Made, String>)> = (fires.into_iter())
            .map(|(ms, req)| {
                let made = req.map(|req| {
                    let (record, checked) = (req.record.clone(), req.checked.clone().unwrap_or_default());
                    let entry = self.entry(new_run_id(), req, 0);
                    entry.state().status = Status::Queued;
                    let mut snapshot = entry.snapshot();
                    snapshot["instance"] = serde_json::Value::Null;
                    Made { entry, record, source: checked.source, snapshot }
                });
                (ms, made)
            })
            .collect();
        let new: Vec<ream_control::NewFire<'_>> = (made.iter())
            .map(|(ms, m)| ream_control::NewFire {
                fire_ms: *ms,
                run: match m {
                    Ok(m) => Ok(ream_control::NewRun {
                        status: Status::Queued,
                        instance: None,
                        ..self.new_run(&m.entry, &m.record, &m.source, &m.snapshot, None)
                    }),
                    Err(e) => Err(e.clone()),
                },
                deliveries: targets,
            })
            .collect();
        if !self.control.fire(schedule, window, &new)? {
            return Ok(Vec::new());
        }
        Ok(made.iter().filter_map(|(_, m)| m.as_ref().ok().map(|m| m.entry.id.clone())).collect())
    }

    /// `entry` as the control store first records it: queued when it has a flight key
    /// (an async run), else starting here.
    fn new_run<'a>(
        &'a self,
        entry: &'a RunEntry,
        record: &'a serde_json::Value,
        source: &'a str,
        snapshot: &'a serde_json::Value,
        flight_key: Option<&'a str>,
    ) -> ream_control::NewRun<'a> {
        let queued = flight_key.is_some();
        ream_control::NewRun {
            id: &entry.id,
            report: &entry.report,
            format: entry.format.name(),
            mode: entry.mode.name(),
            actor: &entry.actor,
            request: record,
            flight_key,
            source_key: source,
            status: if queued { Status::Queued } else { Status::Preparing },
            instance: (!queued).then_some(self.instance.as_str()),
            lease: self.lease,
            snapshot,
        }
    }

    fn entry(&self, id: String, req: RunRequest, attempt: i64) -> Arc<RunEntry> {
        Arc::new(RunEntry {
            id,
            report: req.report,
            format: req.format,
            parameters: req.parameters,
            actor: req.actor.sub.clone(),
            identity: req.actor,
            mode: req.mode,
            split: req.split,
            burst: req.burst,
            client: req.client,
            schedule: req.schedule,
            audit: self.audit.clone(),
            sha256: Mutex::new(None),
            cancel: CancelToken::new(),
            batch_limit: BatchLimit::default(),
            resumes: ResumeLog::default(),
            instance: self.instance.clone(),
            attempt,
            control: self.control.clone(),
            created_at: Utc::now(),
            created: Instant::now(),
            state: Mutex::new(State {
                status: Status::Preparing,
                finished_at: None,
                elapsed: None,
                error: None,
                error_public: None,
                output: None,
                progress: None,
                last_rows: 0,
                last_change: Instant::now(),
                stalled: false,
                abort_reason: None,
            }),
        })
    }

    fn register(&self, entry: Arc<RunEntry>) {
        metrics::gauge!(m::ACTIVE_RUNS).increment(1.0);
        let mut runs = self.runs();
        runs.push(entry.clone());
        // Keep every active run and the newest `keep_finished` finished ones.
        let finished = runs.iter().filter(|r| r.status().is_finished()).count();
        if finished > self.keep_finished {
            let mut drop = finished - self.keep_finished;
            runs.retain(|r| {
                if drop > 0 && r.status().is_finished() {
                    drop -= 1;
                    false
                } else {
                    true
                }
            });
        }
    }

    /// Take back a request refused before anything ran (a bad parameter or request): it
    /// was never a run, so it is not listed, and the metrics count it as rejected.
    pub fn discard(&self, entry: &Arc<RunEntry>) {
        {
            let mut s = entry.state();
            if s.status.is_finished() {
                return;
            }
            s.status = Status::Failed;
            s.finished_at = Some(Utc::now());
        }
        self.runs().retain(|r| !Arc::ptr_eq(r, entry));
        if let Err(e) = self.control.forget_run(&entry.id) {
            tracing::warn!("{e}");
        }
        metrics::gauge!(m::ACTIVE_RUNS).decrement(1.0);
        metrics::counter!(m::REJECTED_TOTAL).increment(1);
    }

    pub fn get(&self, id: &str) -> Option<Arc<RunEntry>> {
        self.runs().iter().find(|r| r.id == id).cloned()
    }

    /// Newest first.
    pub fn list(&self) -> Vec<Arc<RunEntry>> {
        self.runs().iter().rev().cloned().collect()
    }

    pub fn active(&self) -> Vec<Arc<RunEntry>> {
        self.runs().iter().filter(|r| !r.status().is_finished()).cloned().collect()
    }
}
