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
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver};
use ream_core::{CancelToken, Event};
use ream_stages::Stage;

use crate::burst::Bursts;
use crate::outlet::{finish_renderer, Chunk, Outlet};
use crate::plan::Prepared;
use crate::reading::{contained, spawn_source, Progress, SourceMsg, SourceState, Started, CHUNK_BYTES, CHUNK_QUEUE};
use crate::split::Parts;
use crate::EngineError;

/// What a completed run reports.
#[derive(Debug, Clone)]
pub struct Summary {
    pub rows: u64,
    pub bytes: u64,
    pub elapsed: Duration,
    pub strategy: String,
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

/// A running report: pull its output with [`Run::next_chunk`] (or, split, with
/// [`Run::write_parts`]).
pub struct Run {
    chunks: Receiver<Chunk>,
    progress: Arc<Progress>,
    cancel: CancelToken,
    strategy: String,
    threads: Vec<JoinHandle<()>>,
    finished: bool,
    pub(crate) about: crate::plan::About,
}

/// What a split run's consumer gets from the queue.
pub(crate) enum Piece {
    Data(Vec<u8>),
    PartStart(crate::split::PartId),
    PartEnd { rows: u64 },
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
        match self.next_piece()? {
            Some(Piece::Data(d)) => Ok(Some(d)),
            Some(_) => {
                self.cancel.cancel();
                Err(EngineError::Usage("a split output is written as files (write_parts), not one stream".into()))
            }
            None => Ok(None),
        }
    }

    pub(crate) fn next_piece(&mut self) -> Result<Option<Piece>, EngineError> {
        if self.finished {
            return Ok(None);
        }
        match self.chunks.recv() {
            Ok(Chunk::Data(d)) => Ok(Some(Piece::Data(d))),
            Ok(Chunk::PartStart(id)) => Ok(Some(Piece::PartStart(id))),
            Ok(Chunk::PartEnd { rows }) => Ok(Some(Piece::PartEnd { rows })),
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

    pub(crate) fn cancel(&self) {
        self.cancel.cancel();
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

/// Run a count query on a thread of its own, storing its answer where `into` says.
/// Detached: the count is only for display, and is interrupted on cancel.
fn spawn_count(counter: Option<ream_sources::Counter>, progress: &Arc<Progress>, into: fn(&Progress) -> &AtomicI64) {
    let Some(counter) = counter else { return };
    let p = progress.clone();
    let _ = std::thread::Builder::new().name("ream-count".into()).spawn(move || {
        if let Ok(n) = counter() {
            into(&p).store(n as i64, Ordering::Relaxed);
        }
    });
}

/// Start the threads of a prepared run.
pub fn start(prepared: Prepared) -> Run {
    let Prepared {
        meta,
        format,
        source,
        stages,
        counters,
        cancel,
        progress,
        render,
        compress,
        compress_level,
        about,
        burst,
        ..
    } = prepared;
    let strategy = meta.strategy.clone();
    let report = meta.report.clone();
    let (chunk_tx, chunk_rx) = bounded::<Chunk>(CHUNK_QUEUE);
    let mut threads = Vec::new();

    spawn_count(counters.rows, &progress, |p| &p.total);
    spawn_count(counters.bursts, &progress, |p| &p.bursts_total);

    let started = match source {
        SourceState::Ready(source) => spawn_source(source, cancel.clone(), progress.clone(), report),
        SourceState::Started(started) => started,
    };
    let Started { rx, first, thread } = started;
    threads.push(thread);

    // The process thread: stages, renderer, chunking.
    let split = about.split.clone();
    {
        let cancel = cancel.clone();
        let progress = progress.clone();
        threads.push(
            std::thread::Builder::new()
                .name("ream-process".into())
                .spawn(move || {
                    let messages = first.into_iter().chain(rx.iter());
                    let outcome = contained(|| {
                        let outlet = Outlet::new(&chunk_tx, &progress, &cancel, (compress, compress_level))?;
                        // A burst run's stages are each burst's own.
                        let (output, stages) = match (split, burst) {
                            (_, Some(plan)) => {
                                let bursts = Bursts::new(format, render, stages, plan, &meta, progress.clone());
                                (Output::Bursts(Box::new(bursts)), vec![])
                            }
                            (Some(split), None) => (Output::Parts(Box::new(Parts::new(format, render, split))), stages),
                            (None, None) => (Output::Whole(format.renderer_with(&render)), stages),
                        };
                        process(meta, output, stages, messages, &outlet, &progress, &cancel)
                    });
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

    Run { chunks: chunk_rx, progress, cancel, strategy, threads, finished: false, about }
}

/// Where the stages' events go: one renderer, a split run's parts, or a burst run's bursts.
enum Output {
    Whole(Box<dyn ream_render::Renderer>),
    Parts(Box<Parts>),
    Bursts(Box<Bursts>),
}

impl Output {
    fn push(&mut self, event: &Event, buf: &mut Vec<u8>, outlet: &Outlet<'_>, report: &str) -> Result<(), EngineError> {
        match self {
            Output::Whole(renderer) => {
                renderer
                    .push(event, buf)
                    .map_err(|e| EngineError::Render { report: report.to_string(), message: e.to_string() })?;
                outlet.send_pieces(renderer.as_mut(), buf)
            }
            Output::Parts(parts) => parts.push(event, buf, outlet),
            Output::Bursts(bursts) => bursts.push(event, buf, outlet),
        }
    }

    /// After `End`: the trailer of a whole output, then the encoder's last bytes. (Parts
    /// end each on its own, at `End`.)
    fn finish(&mut self, buf: &mut Vec<u8>, outlet: &Outlet<'_>, report: &str) -> Result<(), EngineError> {
        match self {
            Output::Whole(renderer) => finish_renderer(renderer.as_mut(), buf, outlet, report)?,
            Output::Parts(_) | Output::Bursts(_) if !buf.is_empty() => outlet.send(buf)?,
            Output::Parts(_) | Output::Bursts(_) => {}
        }
        outlet.finish()
    }
}

fn process(
    meta: Arc<ream_core::ReportMeta>,
    mut output: Output,
    stage_configs: Vec<ream_stages::StageConfig>,
    messages: impl Iterator<Item = SourceMsg>,
    outlet: &Outlet<'_>,
    progress: &Progress,
    cancel: &CancelToken,
) -> Result<(), EngineError> {
    let report = meta.report.clone();
    let stage_err = |e: ream_stages::StageError| EngineError::Stage { report: report.clone(), message: e.to_string() };
    let mut stages: Vec<Box<dyn Stage>> =
        stage_configs.iter().map(|c| c.build(&meta.schema)).collect::<Result<_, _>>().map_err(stage_err)?;
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
            output.push(e, buf, outlet, &report)?;
        }
        Ok(())
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
        let bytes = batch.get_array_memory_size() as u64;
        injected_panic(&report);
        run_event(Event::Rows(batch), &mut buf)?;
        progress.released(bytes);
        rows += n;
        progress.rows.store(rows, Ordering::Relaxed);
        progress.process_ns.fetch_add(t.elapsed().as_nanos() as u64, Ordering::Relaxed);
        // The first rows leave at once; after that, in chunks of CHUNK_BYTES.
        // (A renderer that writes its file at the end has nothing to send yet.)
        if (first && !buf.is_empty()) || buf.len() >= CHUNK_BYTES {
            first = false;
            outlet.send(&mut buf)?;
        }
    }
    if cancel.is_cancelled() {
        return Err(EngineError::Cancelled);
    }
    if !ended {
        return Err(EngineError::Internal("the source stopped without finishing (its thread died)".into()));
    }
    run_event(Event::End { variables: Arc::from(Vec::new()), rows, charts: Arc::from(Vec::new()) }, &mut buf)?;
    output.finish(&mut buf, outlet, &report)
}
