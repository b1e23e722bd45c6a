//! The runner: the only place with threads, queues and blocking work.
//!
//! ```text
//! source thread ──batches (bounded: 2)──▶ process thread ──chunks (bounded: 4)──▶ consumer
//!  (Source::stream)                        (stages + renderer,                  (file, stdout,
//!                                           flushed at CHUNK_BYTES)               HTTP body)
//! ```
//!
//! The reader can run at most two batches ahead of the renderer, and the renderer four
//! chunks ahead of the consumer, so memory is bounded whatever the row count. Dropping the
//! [`Run`] (or its consumer going away) cancels the token: the source's statement is
//! interrupted and both threads stop.

use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use crossbeam_channel::{bounded, Receiver, Sender};
use ream_core::{CancelToken, Event};
use ream_sources::{Source, SourceError};
use ream_stages::Stage;

use crate::plan::{Prepared, SourceState};
use crate::EngineError;

/// Bytes a renderer accumulates before its buffer is handed to the consumer.
pub const CHUNK_BYTES: usize = 64 * 1024;
const BATCH_QUEUE: usize = 2;
const CHUNK_QUEUE: usize = 4;

/// Live counters of a run, read by progress displays (and later the run registry).
#[derive(Debug)]
pub struct Progress {
    pub started: Instant,
    /// Rows rendered so far.
    pub rows: AtomicU64,
    /// Rows the source has read so far (ahead of `rows` by at most the queued batches).
    pub read_rows: AtomicU64,
    /// Bytes produced so far.
    pub bytes: AtomicU64,
    /// Rows in total, when a count query has answered; -1 until then.
    pub total: AtomicI64,
    /// Time spent inside the source (reading, converting) and inside stages + renderer,
    /// in nanoseconds, excluding time blocked on the queues.
    pub source_ns: AtomicU64,
    pub process_ns: AtomicU64,
    /// Microseconds from start to the first chunk; -1 until then.
    pub first_chunk_us: AtomicI64,
    /// Memory of the last batch read (Arrow buffers), for a run's memory estimate.
    pub batch_bytes: AtomicU64,
    /// Rows of the last batch read.
    pub batch_rows: AtomicU64,
}

impl Progress {
    pub(crate) fn new() -> Self {
        Progress {
            started: Instant::now(),
            rows: AtomicU64::new(0),
            read_rows: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            total: AtomicI64::new(-1),
            source_ns: AtomicU64::new(0),
            process_ns: AtomicU64::new(0),
            first_chunk_us: AtomicI64::new(-1),
            batch_bytes: AtomicU64::new(0),
            batch_rows: AtomicU64::new(0),
        }
    }

    /// A bound on the memory the run holds now: the batches its queue and stages can
    /// hold (the queue, one being read, one being rendered) and its queued output chunks.
    pub fn memory_estimate(&self) -> u64 {
        let batch = self.batch_bytes.load(Ordering::Relaxed);
        batch * BATCHES_HELD + FIXED_BYTES
    }
}

/// Batches a run can hold at once: its queue, one being read, one being processed.
pub const BATCHES_HELD: u64 = BATCH_QUEUE as u64 + 2;
/// The output a run can hold whatever its batches: its queued chunks and the one filling.
pub const FIXED_BYTES: u64 = (CHUNK_BYTES * (CHUNK_QUEUE + 1)) as u64;

impl Progress {
    /// The batch memory a run may use to stay under `budget` bytes in all (0 if even
    /// its output chunks do not fit).
    pub fn batch_budget(budget: u64) -> u64 {
        budget.saturating_sub(FIXED_BYTES) / BATCHES_HELD
    }

    pub fn total(&self) -> Option<u64> {
        let t = self.total.load(Ordering::Relaxed);
        (t >= 0).then_some(t as u64)
    }
}

/// What a completed run reports.
#[derive(Debug, Clone)]
pub struct Summary {
    pub rows: u64,
    pub bytes: u64,
    pub elapsed: Duration,
    pub strategy: String,
}

/// What the source thread sends. `End` is explicit (with the final schema, for a source
/// that settled its types without rows): a channel that closes without it means the
/// source thread died, and the run fails rather than ending short.
pub(crate) enum SourceMsg {
    Batch(RecordBatch),
    End(SchemaRef),
    Failed(EngineError),
}

/// A source running on its own thread.
pub(crate) struct Started {
    pub(crate) rx: Receiver<SourceMsg>,
    /// A message already taken off the queue (by `prepare`, to learn the final schema).
    pub(crate) first: Option<SourceMsg>,
    pub(crate) thread: JoinHandle<()>,
}

pub(crate) fn spawn_source(
    mut source: Box<dyn Source>,
    cancel: CancelToken,
    progress: Arc<Progress>,
    report: String,
) -> Started {
    let (tx, rx) = bounded::<SourceMsg>(BATCH_QUEUE);
    let thread = std::thread::Builder::new()
        .name("ream-source".into())
        .spawn(move || {
            let last = contained(|| read_all(source.as_mut(), &tx, &cancel, &progress, report));
            let _ = tx.send(last.unwrap_or_else(SourceMsg::Failed));
        })
        .expect("spawning a thread");
    Started { rx, first: None, thread }
}

/// Stream the source into the queue; the message that ends it.
fn read_all(
    source: &mut dyn Source,
    tx: &Sender<SourceMsg>,
    cancel: &CancelToken,
    progress: &Progress,
    report: String,
) -> SourceMsg {
    let mut mark = Instant::now();
    let result = source.stream(&mut |batch, _cursor| {
        progress.source_ns.fetch_add(mark.elapsed().as_nanos() as u64, Ordering::Relaxed);
        progress.read_rows.fetch_add(batch.num_rows() as u64, Ordering::Relaxed);
        progress.batch_bytes.store(batch.get_array_memory_size() as u64, Ordering::Relaxed);
        progress.batch_rows.store(batch.num_rows() as u64, Ordering::Relaxed);
        let ok = !cancel.is_cancelled() && tx.send(SourceMsg::Batch(batch)).is_ok();
        mark = Instant::now();
        ok
    });
    progress.source_ns.fetch_add(mark.elapsed().as_nanos() as u64, Ordering::Relaxed);
    match result {
        Ok(()) if cancel.is_cancelled() => SourceMsg::Failed(EngineError::Cancelled),
        Ok(()) => SourceMsg::End(source.schema()),
        Err(SourceError::Cancelled) => SourceMsg::Failed(EngineError::Cancelled),
        Err(e) => SourceMsg::Failed(EngineError::Source { report: Some(report), source: e }),
    }
}

/// Run a thread's work, turning a panic into a failed run: the run's other thread and
/// every other run go on. The message asks for a bug report, since a panic is one.
pub(crate) fn contained<T>(work: impl FnOnce() -> T) -> Result<T, EngineError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(work)).map_err(|payload| {
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a worker thread panicked".into());
        EngineError::Internal(format!(
            "{message}\n  This is a bug in ream: please report it, with the spec and the command that ran it."
        ))
    })
}

/// Test builds only: `REAM_TEST_PANIC=REPORT` makes that report's process thread panic
/// at its first batch, so tests can show that a panic fails one run and nothing else.
fn injected_panic(report: &str) {
    #[cfg(debug_assertions)]
    if std::env::var("REAM_TEST_PANIC").is_ok_and(|r| r == report) {
        panic!("injected panic in report `{report}`");
    }
    #[cfg(not(debug_assertions))]
    let _ = report;
}

enum Chunk {
    Data(Vec<u8>),
    Done,
    Failed(EngineError),
}

/// A running report: pull its output with [`Run::next_chunk`].
pub struct Run {
    chunks: Receiver<Chunk>,
    progress: Arc<Progress>,
    cancel: CancelToken,
    strategy: String,
    threads: Vec<JoinHandle<()>>,
    finished: bool,
}

impl Run {
    pub fn progress(&self) -> Arc<Progress> {
        self.progress.clone()
    }

    pub fn cancel_token(&self) -> CancelToken {
        self.cancel.clone()
    }

    /// The next piece of output; `Ok(None)` once the run has completed. A run whose
    /// threads end without saying `Done` has failed, never completed.
    pub fn next_chunk(&mut self) -> Result<Option<Vec<u8>>, EngineError> {
        if self.finished {
            return Ok(None);
        }
        match self.chunks.recv() {
            Ok(Chunk::Data(d)) => Ok(Some(d)),
            Ok(Chunk::Done) => {
                self.finished = true;
                self.join();
                Ok(None)
            }
            Ok(Chunk::Failed(e)) => {
                self.finished = true;
                self.cancel.cancel();
                self.join();
                Err(e)
            }
            Err(_) => {
                self.finished = true;
                self.join();
                Err(EngineError::Internal("the run ended without completing (a worker thread stopped)".into()))
            }
        }
    }

    pub fn summary(&self) -> Summary {
        Summary {
            rows: self.progress.rows.load(Ordering::Relaxed),
            bytes: self.progress.bytes.load(Ordering::Relaxed),
            elapsed: self.progress.started.elapsed(),
            strategy: self.strategy.clone(),
        }
    }

    fn join(&mut self) {
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }

    /// Write the whole output to `w`. A consumer that goes away (a broken pipe) stops
    /// the run and is not an error: `Ok(None)`.
    pub fn write_to(mut self, w: &mut dyn Write) -> Result<Option<Summary>, EngineError> {
        while let Some(chunk) = self.next_chunk()? {
            if let Err(e) = w.write_all(&chunk).and_then(|_| w.flush()) {
                self.cancel.cancel();
                if e.kind() == std::io::ErrorKind::BrokenPipe {
                    return Ok(None);
                }
                return Err(EngineError::Output(e.to_string()));
            }
        }
        Ok(Some(self.summary()))
    }

    /// Write the output to a file so that it appears only when complete (see
    /// [`crate::output`]: a temporary in the same directory, renamed into place; FIFOs and
    /// devices written directly). On any failure nothing is left at `path`.
    pub fn write_file(mut self, path: &Path) -> Result<Summary, EngineError> {
        let mut out = crate::output::OutputFile::create(path)
            .map_err(|e| EngineError::Output(format!("cannot write {}: {e}", path.display())))?;
        let result = (|| {
            while let Some(chunk) = self.next_chunk()? {
                out.write_all(&chunk).map_err(|e| EngineError::Output(format!("{}: {e}", path.display())))?;
            }
            Ok(())
        })();
        match result {
            Ok(()) => {
                out.commit().map_err(|e| EngineError::Output(format!("cannot write {}: {e}", path.display())))?;
                Ok(self.summary())
            }
            Err(e) => {
                self.cancel.cancel();
                Err(e)
            }
        }
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        if !self.finished {
            // The consumer went away: stop the query, then let the threads wind down.
            self.cancel.cancel();
        }
    }
}

/// Start the threads of a prepared run.
pub fn start(prepared: Prepared) -> Run {
    let Prepared { meta, format, source, stages, counter, cancel, progress, render, .. } = prepared;
    let strategy = meta.strategy.clone();
    let report = meta.report.clone();
    let (chunk_tx, chunk_rx) = bounded::<Chunk>(CHUNK_QUEUE);
    let mut threads = Vec::new();

    if let Some(counter) = counter {
        let p = progress.clone();
        // Detached: the count is only for display, and is interrupted on cancel.
        let _ = std::thread::Builder::new().name("ream-count".into()).spawn(move || {
            if let Ok(n) = counter() {
                p.total.store(n as i64, Ordering::Relaxed);
            }
        });
    }

    let started = match source {
        SourceState::Ready(source) => spawn_source(source, cancel.clone(), progress.clone(), report),
        SourceState::Started(started) => started,
    };
    let Started { rx, first, thread } = started;
    threads.push(thread);

    // The process thread: stages, renderer, chunking.
    {
        let cancel = cancel.clone();
        let progress = progress.clone();
        threads.push(
            std::thread::Builder::new()
                .name("ream-process".into())
                .spawn(move || {
                    let messages = first.into_iter().chain(rx.iter());
                    let outcome =
                        contained(|| process(meta, format, &render, stages, messages, &chunk_tx, &progress, &cancel));
                    let last = match outcome.and_then(|r| r) {
                        Ok(()) => Chunk::Done,
                        Err(e) => Chunk::Failed(e),
                    };
                    if chunk_tx.send(last).is_err() {
                        cancel.cancel();
                    }
                })
                .expect("spawning a thread"),
        );
    }

    Run { chunks: chunk_rx, progress, cancel, strategy, threads, finished: false }
}

#[allow(clippy::too_many_arguments)]
fn process(
    meta: Arc<ream_core::ReportMeta>,
    format: ream_render::Format,
    render: &ream_render::RenderOptions,
    stage_configs: Vec<ream_stages::StageConfig>,
    messages: impl Iterator<Item = SourceMsg>,
    chunks: &Sender<Chunk>,
    progress: &Progress,
    cancel: &CancelToken,
) -> Result<(), EngineError> {
    let report = meta.report.clone();
    let stage_err = |e: ream_stages::StageError| EngineError::Stage { report: report.clone(), message: e.to_string() };
    let mut stages: Vec<Box<dyn Stage>> =
        stage_configs.iter().map(|c| c.build(&meta.schema)).collect::<Result<_, _>>().map_err(stage_err)?;
    let mut renderer = format.renderer_with(render);
    let mut buf: Vec<u8> = Vec::with_capacity(CHUNK_BYTES * 2);
    let mut rows: u64 = 0;
    let mut first = true;

    // Push one event through the stages, then render what comes out.
    let mut run_event = |event: Event, buf: &mut Vec<u8>| -> Result<(), EngineError> {
        let mut current = vec![event];
        for stage in stages.iter_mut() {
            let mut next = Vec::with_capacity(current.len());
            for e in current {
                stage.push(e, &mut next).map_err(stage_err)?;
            }
            current = next;
        }
        for e in &current {
            renderer
                .push(e, buf)
                .map_err(|e| EngineError::Render { report: report.clone(), message: e.to_string() })?;
        }
        Ok(())
    };
    let send = |buf: &mut Vec<u8>| -> Result<(), EngineError> {
        if progress.first_chunk_us.load(Ordering::Relaxed) < 0 {
            progress.first_chunk_us.store(progress.started.elapsed().as_micros() as i64, Ordering::Relaxed);
        }
        progress.bytes.fetch_add(buf.len() as u64, Ordering::Relaxed);
        let data = std::mem::replace(buf, Vec::with_capacity(CHUNK_BYTES * 2));
        chunks.send(Chunk::Data(data)).map_err(|_| {
            cancel.cancel();
            EngineError::Cancelled
        })
    };

    run_event(Event::Begin(meta.clone()), &mut buf)?;
    let mut ended = false;
    for msg in messages {
        let batch = match msg {
            SourceMsg::Batch(b) => b,
            SourceMsg::End(_) => {
                ended = true;
                break;
            }
            SourceMsg::Failed(e) => return Err(e),
        };
        // Per batch, so no stage can keep a cancelled run going (Ctrl-C, DELETE, SIGTERM).
        if cancel.is_cancelled() {
            return Err(EngineError::Cancelled);
        }
        let t = Instant::now();
        let n = batch.num_rows() as u64;
        injected_panic(&report);
        run_event(Event::Rows(batch), &mut buf)?;
        rows += n;
        progress.rows.store(rows, Ordering::Relaxed);
        progress.process_ns.fetch_add(t.elapsed().as_nanos() as u64, Ordering::Relaxed);
        // The first rows leave at once; after that, in chunks of CHUNK_BYTES.
        // (A renderer that writes its file at the end has nothing to send yet.)
        if (first && !buf.is_empty()) || buf.len() >= CHUNK_BYTES {
            first = false;
            send(&mut buf)?;
        }
    }
    if cancel.is_cancelled() {
        return Err(EngineError::Cancelled);
    }
    if !ended {
        return Err(EngineError::Internal("the source stopped without finishing (its thread died)".into()));
    }
    run_event(Event::End { variables: Arc::from(Vec::new()), rows, charts: Arc::from(Vec::new()) }, &mut buf)?;
    if !buf.is_empty() {
        send(&mut buf)?;
    }
    // A renderer that assembles its file at the end writes it through chunks too.
    let mut sink = ChunkSink { buf, send: &send, failed: None };
    let finished = renderer.finish(&mut sink);
    if let Some(e) = sink.failed.take() {
        return Err(e);
    }
    finished.map_err(|e| EngineError::Render { report: report.clone(), message: e.to_string() })?;
    sink.flush_chunk()?;
    Ok(())
}

/// A `Write` that hands its bytes on in chunks of CHUNK_BYTES.
struct ChunkSink<'a> {
    buf: Vec<u8>,
    send: &'a (dyn Fn(&mut Vec<u8>) -> Result<(), EngineError> + Sync),
    /// Why sending stopped (a cancelled run): the renderer only sees an I/O error.
    failed: Option<EngineError>,
}

impl ChunkSink<'_> {
    fn flush_chunk(&mut self) -> Result<(), EngineError> {
        if self.buf.is_empty() {
            return Ok(());
        }
        (self.send)(&mut self.buf)
    }
}

impl Write for ChunkSink<'_> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK_BYTES {
            if let Err(e) = self.flush_chunk() {
                self.failed = Some(e);
                return Err(std::io::Error::other("the run stopped"));
            }
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
