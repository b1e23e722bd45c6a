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

use crate::cache::CacheWriter;
use crate::error::ApiError;
use crate::flight::{Chunk, Flight, Role};
use crate::metrics as m;
use crate::registry::{RunEntry, RunRequest, Status};
use crate::AppState;

/// A run past every check: connected, its first batch read, no byte sent yet.
pub struct Ready {
    pub entry: Arc<RunEntry>,
    pub run: Run,
    /// Where its chunks go besides the store: every subscriber of its flight (None: a
    /// split run, whose parts nobody can join).
    pub flight: Option<Arc<Flight>>,
    slot: Slot,
    /// When the request came in (for the time to first byte).
    requested: Instant,
}

/// One of this instance's `--max-runs` places, held from before a run prepares until it
/// ends. Giving it back wakes the queue's claimer, so a queued run takes it at once.
pub struct Slot {
    _permit: OwnedSemaphorePermit,
    wake: Arc<tokio::sync::Notify>,
}

impl Slot {
    /// A free place, or 429 (counted as rejected).
    pub fn take(state: &AppState) -> Result<Slot, ApiError> {
        let permit = state.limit.clone().try_acquire_owned().map_err(|_| ApiError::TooManyRuns {
            why: format!("{} runs are already running on this instance", state.config.max_runs),
            retry_after_secs: 2,
        })?;
        Ok(Slot { _permit: permit, wake: state.wake.clone() })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.wake.notify_one();
    }
}

/// Check, register and prepare a run in `slot`, leading `flight` (a download's; an async
/// run leads one of its own unless split). Every failure here comes before the first
/// byte, and ends the flight, so that whoever joined it starts a run of their own. A
/// sync run over a cluster-wide limit gets 429.
pub async fn prepare_run(
    state: &AppState,
    caller: &crate::Caller,
    req: RunRequest,
    compress: ream_engine::Compression,
    slot: Slot,
    flight: Option<Arc<Flight>>,
) -> Result<Ready, ApiError> {
    let requested = Instant::now();
    let (entry, spec, flight) = register(state, caller, req, compress, flight).await?;
    let result = prepare_entry(state, &entry, spec, compress).await;
    match result {
        Ok(run) => {
            entry.running(run.progress());
            let e = entry.clone();
            let _ = tokio::task::spawn_blocking(move || e.audit("run_started", serde_json::json!({}))).await;
            Ok(Ready { entry, run, flight, slot, requested })
        }
        Err(e) => {
            if let Some(f) = &flight {
                state.flights.close(f, None);
            }
            Err(failed(state, caller, &entry, e))
        }
    }
}

/// Check the request and register its run here (and in the control store), with its
/// flight. Nothing is registered if the check fails.
async fn register(
    state: &AppState,
    caller: &crate::Caller,
    mut req: RunRequest,
    compress: ream_engine::Compression,
    flight: Option<Arc<Flight>>,
) -> Result<(Arc<RunEntry>, LoadedSpec, Option<Arc<Flight>>), ApiError> {
    let abandon = |e: ApiError| {
        if let Some(f) = &flight {
            state.flights.close(f, None);
        }
        e
    };
    if state.is_draining() {
        return Err(abandon(ApiError::ShuttingDown));
    }
    let spec: LoadedSpec = (state.catalog().get(&req.report).cloned())
        .ok_or_else(|| abandon(ApiError::UnknownReport(req.report.clone())))?;
    // Refused before anything is registered or opened.
    caller.may_run(&req.report, &spec).map_err(abandon)?;
    // Checked already for a download; a claimed run is checked again, against its report
    // as it is now.
    let checked = match req.checked.clone() {
        Some(checked) => checked,
        None => check(state, &spec, &req, compress).map_err(abandon)?,
    };
    req.checked = Some(checked.clone());
    let (s, limits, split) = (state.clone(), state.claim_limits(), req.split.is_some() || req.burst);
    let entry = tokio::task::spawn_blocking(move || s.registry.add(req, limits))
        .await
        .map_err(|e| ApiError::Internal(format!("registering the run: {e}")))
        .and_then(|r| r.map_err(|e| ApiError::Internal(e.to_string())))
        .and_then(|r| {
            r.ok_or_else(|| ApiError::TooManyRuns {
                why: "you, or this report's source, already have the most runs at once allowed \
                      (--max-runs-per-actor, --max-runs-per-source)"
                    .into(),
                retry_after_secs: 2,
            })
        })
        .map_err(abandon)?;
    // An async run leads a flight of its own, which downloads may join.
    let flight = match flight {
        Some(f) => Some(f),
        None if !split => Some(state.flights.lead(&checked.flight, true)),
        None => None,
    };
    if let Some(f) = &flight {
        let _ = f.run.set((entry.id.clone(), entry.cancel.clone()));
    }
    Ok((entry, spec, flight))
}

/// Open the source and run the query to its first batch, counted as one source query.
async fn prepare_entry(
    state: &AppState,
    entry: &Arc<RunEntry>,
    spec: LoadedSpec,
    compress: ream_engine::Compression,
) -> Result<Run, ApiError> {
    // If the request goes away while the run prepares (this future is dropped), the run
    // must still end: cancel it and record why.
    let mut guard = PrepareGuard(Some(entry.clone()));
    let mut opts = options(state, entry.format, &entry.parameters, entry.split.as_ref(), &entry.identity);
    opts.burst = entry.burst;
    // A count beside the stream gives the registry its total and percent.
    opts.count = CountMode::Auto;
    opts.batch_size = state.config.batch_size;
    opts.batch_limit = entry.batch_limit.clone();
    opts.resumes = entry.resumes.clone();
    opts.compress = compress;
    let cancel = entry.cancel.clone();
    let started = Instant::now();
    metrics::counter!(m::SOURCE_QUERIES_TOTAL, "report" => entry.report.clone()).increment(1);
    let prepared = tokio::task::spawn_blocking(move || prepare(Job::Spec(spec), &opts, cancel))
        .await
        .map_err(|e| ApiError::Internal(format!("prepare: {e}")))
        .and_then(|r| r.map_err(ApiError::Engine));
    metrics::histogram!(m::SOURCE_QUERY).record(started.elapsed().as_secs_f64());
    guard.0 = None;
    prepared.map(start)
}

/// Record why a registered run failed to start, and the error its caller gets.
fn failed(state: &AppState, caller: &crate::Caller, entry: &Arc<RunEntry>, e: ApiError) -> ApiError {
    match e {
        // A bad parameter or request of a download: refused before anything ran, so not
        // a run. (An async run was accepted into the queue: it fails, saying why.)
        e @ ApiError::Engine(EngineError::Params(_) | EngineError::Usage(_) | EngineError::Claim { .. })
            if entry.mode == crate::Mode::Sync =>
        {
            state.registry.discard(entry);
            e
        }
        ApiError::Engine(engine) => {
            let status = if matches!(engine, EngineError::Cancelled) { Status::Cancelled } else { Status::Failed };
            entry.fail(status, &engine);
            // The SQL text is for admins only.
            match caller.admin {
                true => ApiError::Engine(engine),
                false => ApiError::Redacted { message: engine.without_sql(), error: Box::new(engine) },
            }
        }
        other => {
            entry.finish(Status::Failed, Some(other.to_string()), None);
            other
        }
    }
}

/// The options that decide which source a report reads (`--source`, named sources).
pub fn source_options(state: &AppState) -> RunOptions {
    options(state, Format::Csv, &[], None, &ream_core::Actor::anonymous())
}

/// What a run of `req` is checked and prepared with, before the run's own handles.
fn options(
    state: &AppState,
    format: Format,
    params: &[(String, ream_core::params::Given)],
    split: Option<&ream_engine::Split>,
    actor: &ream_core::Actor,
) -> RunOptions {
    let mut opts = RunOptions::new(format);
    opts.source = state.config.source.clone();
    opts.sources = state.config.sources.clone();
    opts.params = params.to_vec();
    opts.split = split.cloned();
    opts.actor = Some(actor.clone());
    opts
}

/// Check `req` against its report without opening the database: its format, parameters,
/// split and the actor's claims. Returns its source and flight key.
pub fn check(
    state: &AppState,
    spec: &LoadedSpec,
    req: &RunRequest,
    compress: ream_engine::Compression,
) -> Result<ream_engine::Checked, ApiError> {
    if !req.format.available() {
        return Err(ApiError::BadRequest(format!("this server has no {} output", req.format)));
    }
    let mut opts = options(state, req.format, &req.parameters, req.split.as_ref(), &req.actor);
    opts.burst = req.burst;
    opts.compress = compress;
    Ok(ream_engine::check_request(spec, &opts)?)
}

struct LeadGuard(Option<(AppState, Arc<Flight>)>);

impl Drop for LeadGuard {
    fn drop(&mut self) {
        if let Some((state, flight)) = self.0.take() {
            state.flights.close(&flight, None);
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

/// A download's body: the chunks its flight sent before it joined, then the rest as they
/// come; and which run it reads.
pub struct Download {
    /// The run it reads (None: served from the cache).
    pub run_id: Option<String>,
    /// A cached report's `X-Ream-Cache`: `hit` or `miss`.
    pub cache: Option<&'static str>,
    pub replay: Vec<Bytes>,
    pub rx: mpsc::Receiver<Chunk>,
}

/// Run a download, or join the identical one (or async run) going on this instance: one
/// query, the same bytes for every client. A joiner takes no place of `--max-runs`.
pub async fn download(
    state: &AppState,
    caller: &crate::Caller,
    mut req: RunRequest,
    compress: ream_engine::Compression,
    use_cache: bool,
) -> Result<Download, ApiError> {
    let spec =
        (state.catalog().get(&req.report).cloned()).ok_or_else(|| ApiError::UnknownReport(req.report.clone()))?;
    caller.may_run(&req.report, &spec)?;
    let checked =
        check(state, &spec, &req, compress).inspect_err(|_| metrics::counter!(m::REJECTED_TOTAL).increment(1))?;
    let key = checked.flight.clone();
    // Registering the run reuses it.
    req.checked = Some(checked);
    let policy = spec.parsed().cache();
    if policy.is_some() && use_cache {
        if let Some(rx) = crate::cache::lookup(state, &req.report, &key).await {
            return Ok(Download { run_id: None, cache: Some("hit"), replay: Vec::new(), rx });
        }
    }
    let cache = policy.map(|p| (key.clone(), p));
    let mut download = join_or_lead(state, caller, req, compress, &key, cache).await?;
    download.cache = policy.map(|_| "miss");
    Ok(download)
}

/// Join the flight of `key`, or lead it (writing to the cache when `cache` says).
async fn join_or_lead(
    state: &AppState,
    caller: &crate::Caller,
    req: RunRequest,
    compress: ream_engine::Compression,
    key: &str,
    cache: Option<(String, ream_core::parsed::CachePolicy)>,
) -> Result<Download, ApiError> {
    // A flight whose run fails to start ends with no byte sent: its joiners try again,
    // and one of them leads (once: then each runs its own).
    for _ in 0..2 {
        match state.flights.join_or_lead(key, false) {
            Role::Join(flight, sub) => {
                crate::flight::watch_client(flight.clone(), sub.tx.clone(), sub.done.clone());
                if let Some(sub) = crate::flight::first_chunk(sub).await {
                    let run_id = flight.run.get().map(|r| r.0.clone());
                    return Ok(Download { run_id, cache: None, replay: sub.replay, rx: sub.rx });
                }
            }
            Role::Lead(flight) => return lead(state, caller, req, compress, flight, cache).await,
        }
    }
    lead(state, caller, req, compress, state.flights.lead(key, false), cache).await
}

/// Start a download's run, leading `flight`, and subscribe to it first.
async fn lead(
    state: &AppState,
    caller: &crate::Caller,
    req: RunRequest,
    compress: ream_engine::Compression,
    flight: Arc<Flight>,
    cache: Option<(String, ream_core::parsed::CachePolicy)>,
) -> Result<Download, ApiError> {
    let abandon = |e: ApiError| {
        state.flights.close(&flight, None);
        e
    };
    let sub = flight.subscribe().ok_or_else(|| abandon(ApiError::Internal("a new flight refused its run".into())))?;
    let slot = Slot::take(state).inspect_err(|_| metrics::counter!(m::REJECTED_TOTAL).increment(1)).map_err(abandon)?;
    crate::flight::watch_client(flight.clone(), sub.tx.clone(), sub.done.clone());
    // If the client goes away while the run prepares (this future is dropped), the
    // flight ends too: nobody may join a run that will never send.
    let mut guard = LeadGuard(Some((state.clone(), flight.clone())));
    let ready = prepare_run(state, caller, req, compress, slot, Some(flight.clone())).await?;
    guard.0 = None;
    let run_id = ready.entry.id.clone();
    let writer = cache.and_then(|(key, policy)| CacheWriter::begin(state, &ready.entry.report, &key, policy));
    stream(state.clone(), ready, flight, writer);
    Ok(Download { run_id: Some(run_id), cache: None, replay: Vec::new(), rx: sub.rx })
}

/// Pump a download's run into its flight: each chunk goes to every subscriber's body.
/// The bodies end cleanly only when the run completes; a failure ends them with an
/// error, so each client sees an incomplete transfer. Once every client has gone away
/// the run (and its query) is cancelled at once: their watchers cancel it even while
/// the pump waits on the database.
pub fn stream(state: AppState, ready: Ready, flight: Arc<Flight>, mut cache: Option<CacheWriter>) {
    let Ready { entry, mut run, slot, requested, .. } = ready;
    std::thread::Builder::new()
        .name(format!("ream-run-{}", entry.id))
        .spawn(move || {
            let _slot = slot;
            let mut first = true;
            let mut hash = Sha256::new();
            let end = loop {
                match run.next_chunk() {
                    Ok(Some(chunk)) => {
                        if std::mem::take(&mut first) {
                            metrics::histogram!(m::FIRST_BYTE).record(requested.elapsed().as_secs_f64());
                        }
                        hash.update(&chunk);
                        let chunk = Bytes::from(chunk);
                        if let Some(c) = cache.as_mut() {
                            c.write(&chunk);
                        }
                        if !flight.send(chunk) {
                            drop(run);
                            entry.finish(Status::Cancelled, Some("the client disconnected".into()), None);
                            break None;
                        }
                    }
                    Ok(None) => {
                        entry.set_sha256(ream_auth::token::hex(&hash.finalize()));
                        // In the cache before the bodies end: a repeat right after hits.
                        if let Some(c) = cache.take() {
                            c.commit(&state);
                        }
                        entry.finish(Status::Succeeded, None, None);
                        break None;
                    }
                    Err(e) if entry.cancel.is_cancelled() && !flight.live() => {
                        entry.finish(Status::Cancelled, Some("the client disconnected".into()), None);
                        break Some(e.to_string());
                    }
                    Err(e) => {
                        entry.fail(outcome(&e), &e);
                        break Some(e.to_string());
                    }
                }
            };
            state.flights.close(&flight, end.as_deref());
        })
        .expect("spawning a thread");
}

/// Run to the store: the output appears under its name only when complete.
pub fn store(state: AppState, ready: Ready) {
    let Ready { entry, run, flight, slot, requested } = ready;
    std::thread::Builder::new()
        .name(format!("ream-run-{}", entry.id))
        .spawn(move || {
            let _slot = slot;
            let parted = entry.split.is_some() || entry.burst;
            let name = output_name(&entry.id, entry.format, parted);
            let result = match parted {
                true => store_parts(&state, run, &name, entry.format),
                false => store_whole(&state, &entry, run, &name, requested, flight.as_deref()),
            };
            if let Some(f) = &flight {
                state.flights.close(f, result.as_ref().err().map(|e| e.to_string()).as_deref());
            }
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
                        tracing::warn!("run {}: {e}", entry.id);
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
    flight: Option<&Flight>,
) -> Result<(u64, String), EngineError> {
    let (control, id) = (state.control.clone(), entry.id.clone());
    let record = Box::new(move |u: Option<&ream_outputs::UploadRecord>| {
        let text = u.and_then(|u| serde_json::to_string(u).ok());
        if let Err(e) = control.set_upload(&id, text.as_deref()) {
            tracing::warn!("run {id}: {e}");
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
        if let Some(f) = flight {
            f.send(Bytes::from(chunk));
        }
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
