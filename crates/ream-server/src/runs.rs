//! Starting runs and moving their output: the only part of the server that touches the
//! engine's blocking world (prepare on a blocking thread, one pump thread per run).

use std::io::Write;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use ream_core::load::LoadedSpec;
use ream_engine::{prepare, start, CountMode, EngineError, Format, Job, Run, RunOptions};
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, OwnedSemaphorePermit};

use crate::error::ApiError;
use crate::metrics as m;
use crate::registry::{RunEntry, RunRequest, Status};
use crate::AppState;

/// A run past every check: connected, its first batch read, no byte sent yet.
pub struct Ready {
    pub entry: Arc<RunEntry>,
    pub run: Run,
    permit: OwnedSemaphorePermit,
    /// When the request came in (for the time to first byte).
    requested: Instant,
}

/// Check, register and prepare a run. Every failure here comes before the first byte.
pub async fn prepare_run(
    state: &AppState,
    caller: &crate::Caller,
    req: RunRequest,
    compress: ream_engine::Compression,
) -> Result<Ready, ApiError> {
    let requested = Instant::now();
    if state.is_draining() {
        return Err(ApiError::ShuttingDown);
    }
    let spec: LoadedSpec =
        state.catalog().get(&req.report).cloned().ok_or_else(|| ApiError::UnknownReport(req.report.clone()))?;
    // Refused before anything is registered or opened.
    caller.may_run(&req.report, &spec)?;
    if !req.format.available() {
        return Err(ApiError::BadRequest(format!("this server has no {} output", req.format)));
    }
    let permit = state.limit.clone().try_acquire_owned().map_err(|_| {
        metrics::counter!(m::REJECTED_TOTAL).increment(1);
        ApiError::TooManyRuns { limit: state.config.max_runs, retry_after_secs: 2 }
    })?;
    let s = state.clone();
    let entry = tokio::task::spawn_blocking(move || s.registry.add(req))
        .await
        .map_err(|e| ApiError::Internal(format!("registering the run: {e}")))?
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    // If the request goes away while the run prepares (this future is dropped), the run
    // must still end: cancel it and record why.
    let mut guard = PrepareGuard(Some(entry.clone()));
    let mut opts = RunOptions::new(entry.format);
    opts.source = state.config.source.clone();
    opts.params = entry.parameters.clone();
    // A count beside the stream gives the registry its total and percent.
    opts.count = CountMode::Auto;
    opts.batch_size = state.config.batch_size;
    opts.batch_limit = entry.batch_limit.clone();
    opts.resumes = entry.resumes.clone();
    opts.compress = compress;
    opts.split = entry.split.clone();
    opts.actor = Some(entry.identity.clone());
    let cancel = entry.cancel.clone();
    let started = Instant::now();
    let prepared = tokio::task::spawn_blocking(move || prepare(Job::Spec(spec), &opts, cancel))
        .await
        .map_err(|e| ApiError::Internal(format!("prepare: {e}")))
        .and_then(|r| r.map_err(ApiError::Engine));
    metrics::histogram!(m::SOURCE_QUERY).record(started.elapsed().as_secs_f64());
    guard.0 = None;
    match prepared {
        Ok(prepared) => {
            let run = start(prepared);
            entry.running(run.progress());
            let e = entry.clone();
            let _ = tokio::task::spawn_blocking(move || e.audit("run_started", serde_json::json!({}))).await;
            Ok(Ready { entry, run, permit, requested })
        }
        // A bad parameter or request: refused before anything ran, so not a run (unless
        // it is one already: a run taken over, whose report has changed since).
        Err(e @ ApiError::Engine(EngineError::Params(_) | EngineError::Usage(_) | EngineError::Claim { .. }))
            if entry.attempt == 1 =>
        {
            state.registry.discard(&entry);
            Err(e)
        }
        Err(e) => {
            let status =
                if matches!(e, ApiError::Engine(EngineError::Cancelled)) { Status::Cancelled } else { Status::Failed };
            match e {
                ApiError::Engine(engine) => {
                    entry.fail(status, &engine);
                    // The SQL text is for admins only.
                    Err(match caller.admin {
                        true => ApiError::Engine(engine),
                        false => ApiError::Redacted { message: engine.without_sql(), error: Box::new(engine) },
                    })
                }
                other => {
                    entry.finish(status, Some(other.to_string()), None);
                    Err(other)
                }
            }
        }
    }
}

struct PrepareGuard(Option<Arc<RunEntry>>);

impl Drop for PrepareGuard {
    fn drop(&mut self) {
        if let Some(entry) = self.0.take() {
            entry.cancel.cancel();
            entry.finish(Status::Cancelled, Some("the client went away before the first byte".into()), None);
        }
    }
}

fn outcome(e: &EngineError) -> Status {
    if matches!(e, EngineError::Cancelled) {
        Status::Cancelled
    } else {
        Status::Failed
    }
}

/// Stream a run into a response body. The body ends cleanly only when the run
/// completes; a failure ends it with an error, so the client sees an incomplete
/// transfer. A client that goes away cancels the run (and its query) at once, even while
/// the run waits on the database.
pub fn stream(ready: Ready) -> mpsc::Receiver<Result<Bytes, std::io::Error>> {
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(2);
    let Ready { entry, mut run, permit, requested } = ready;
    // Watch for the client going away while the pump may be blocked on the database. The
    // watcher's sender would keep the body open, so it lets go when the pump is done.
    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
    {
        let (tx, cancel) = (tx.clone(), entry.cancel.clone());
        tokio::spawn(async move {
            tokio::select! {
                _ = tx.closed() => cancel.cancel(),
                _ = done_rx => {}
            }
        });
    }
    std::thread::Builder::new()
        .name(format!("ream-run-{}", entry.id))
        .spawn(move || {
            let _permit = permit;
            let _done = done_tx;
            let mut first = true;
            let mut hash = Sha256::new();
            loop {
                match run.next_chunk() {
                    Ok(Some(chunk)) => {
                        if std::mem::take(&mut first) {
                            metrics::histogram!(m::FIRST_BYTE).record(requested.elapsed().as_secs_f64());
                        }
                        hash.update(&chunk);
                        if tx.blocking_send(Ok(Bytes::from(chunk))).is_err() {
                            drop(run);
                            entry.finish(Status::Cancelled, Some("the client disconnected".into()), None);
                            return;
                        }
                    }
                    Ok(None) => {
                        entry.set_sha256(ream_auth::token::hex(&hash.finalize()));
                        entry.finish(Status::Succeeded, None, None);
                        return;
                    }
                    Err(e) => {
                        let message = if entry.cancel.is_cancelled() && tx.is_closed() {
                            entry.finish(Status::Cancelled, Some("the client disconnected".into()), None);
                            "the client disconnected".to_string()
                        } else {
                            entry.fail(outcome(&e), &e);
                            e.to_string()
                        };
                        let _ = tx.blocking_send(Err(std::io::Error::other(message)));
                        return;
                    }
                }
            }
        })
        .expect("spawning a thread");
    rx
}

/// Run to the store: the output appears under its name only when complete.
pub fn store(state: AppState, ready: Ready) {
    let Ready { entry, run, permit, requested } = ready;
    std::thread::Builder::new()
        .name(format!("ream-run-{}", entry.id))
        .spawn(move || {
            let _permit = permit;
            let name = output_name(&entry.id, entry.format, entry.split.is_some());
            let result = match entry.split.is_some() {
                true => store_parts(&state, run, &name, entry.format),
                false => store_whole(&state, &entry, run, &name, requested),
            };
            if let Ok((_, hash)) = &result {
                entry.set_sha256(hash.clone());
            }
            let result = result.map(|(bytes, _)| bytes);
            match result {
                Ok(bytes) => {
                    let record = ream_control::OutputRecord {
                        name: name.clone(),
                        run_id: entry.id.clone(),
                        report: entry.report.clone(),
                        bytes,
                        created_ms: ream_control::now_ms(),
                    };
                    if let Err(e) = state.control.record_output(&record) {
                        eprintln!("ream: run {}: {e}", entry.id);
                    }
                    // Make room first, so that once the run shows `succeeded` the older
                    // outputs past the limits are already gone.
                    if !state.retain().contains(&name) {
                        entry.finish(Status::Succeeded, None, Some((name, bytes)));
                    } else {
                        let why = format!("the output ({bytes} bytes) was removed at once by the retention policy");
                        entry.finish(Status::Succeeded, Some(why), None);
                    }
                }
                Err(e) => entry.fail(outcome(&e), &e),
            }
        })
        .expect("spawning a thread");
}

/// The output's bytes and SHA-256 (hex), hashed as it is written. Its multipart upload,
/// once it has one, is recorded with the run, so that another instance that runs it
/// again can abort it.
fn store_whole(
    state: &AppState,
    entry: &RunEntry,
    mut run: Run,
    name: &str,
    requested: Instant,
) -> Result<(u64, String), EngineError> {
    let (control, id) = (state.control.clone(), entry.id.clone());
    let record = Box::new(move |u: Option<&ream_outputs::UploadRecord>| {
        let text = u.and_then(|u| serde_json::to_string(u).ok());
        if let Err(e) = control.set_upload(&id, text.as_deref()) {
            eprintln!("ream: run {id}: {e}");
        }
    });
    let mut out = state.outputs.begin(name, record).map_err(|e| EngineError::Output(e.to_string()))?;
    let mut first = true;
    let mut hash = Sha256::new();
    while let Some(chunk) = run.next_chunk()? {
        if std::mem::take(&mut first) {
            metrics::histogram!(m::FIRST_BYTE).record(requested.elapsed().as_secs_f64());
        }
        hash.update(&chunk);
        out.write_all(&chunk).map_err(|e| EngineError::Output(e.to_string()))?;
    }
    let bytes = out.commit().map_err(|e| EngineError::Output(e.to_string()))?;
    Ok((bytes, ream_auth::token::hex(&hash.finalize())))
}

/// A split run: its parts and manifest in the store's directory `name`, removed whole if
/// the run fails.
/// Its bytes and the manifest's SHA-256 (the manifest lists each part's).
fn store_parts(state: &AppState, run: Run, name: &str, format: Format) -> Result<(u64, String), EngineError> {
    let mut parts = crate::storage::StoreParts::new(state.outputs.clone(), name);
    let ext = format.name().to_string();
    let names = ream_engine::PartNames { stem: SPLIT_STEM.into(), ext, manifest: MANIFEST.into() };
    match run.write_parts(&mut parts, &names) {
        Ok((summary, _)) => {
            let manifest = state.outputs.read_all(&readable(name, true)).ok();
            Ok((summary.bytes, manifest.map(|m| ream_auth::token::hex(&Sha256::digest(&m))).unwrap_or_default()))
        }
        Err(e) => {
            let _ = state.outputs.remove(name);
            Err(e)
        }
    }
}

/// The file of an output to serve: the output, or a split run's manifest.
pub fn readable(name: &str, split: bool) -> String {
    match split {
        true => format!("{name}/{MANIFEST}"),
        false => name.to_string(),
    }
}

/// In a split run's directory: parts are `part-00001.csv` (or, by a field,
/// `part/FIELD=value/part-00001.csv`), beside `manifest.json`.
pub const SPLIT_STEM: &str = "part";
pub const MANIFEST: &str = "manifest.json";

/// The stored output's name: the run id and the format's extension; a split run's is
/// the directory `{id}.parts`.
pub fn output_name(id: &str, format: Format, split: bool) -> String {
    match split {
        true => format!("{id}.parts"),
        false => format!("{id}.{}", format.name()),
    }
}
