//! Reading: the source on its own thread, what it sends (an explicit `End`, so a dead
//! thread is a failed run, never a short one), and the run's live `Progress`. Used by
//! `plan` (which may start the source to learn its first batch) and `run`.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use crossbeam_channel::{bounded, Receiver, Sender};
use ream_core::CancelToken;
use ream_sources::{Source, SourceError};

use crate::EngineError;

/// A prepared run's source: still to start, or already reading (its first message taken).
pub(crate) enum SourceState {
    Ready(Box<dyn Source>),
    Started(Started),
}

/// Bytes a renderer accumulates before its buffer is handed to the consumer.
pub const CHUNK_BYTES: usize = 64 * 1024;
const BATCH_QUEUE: usize = 2;
pub(crate) const CHUNK_QUEUE: usize = 4;

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
    /// Memory of the batches read and not yet processed: queued, or in the stages and
    /// renderer (Arrow buffers, as allocated).
    pub held_bytes: AtomicU64,
    /// Rows of the last batch read.
    pub batch_rows: AtomicU64,
    /// A burst run's bursts written whole so far.
    pub bursts: AtomicU64,
    /// A burst run's bursts in total, when its count query has answered; -1 until then.
    pub bursts_total: AtomicI64,
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
            held_bytes: AtomicU64::new(0),
            batch_rows: AtomicU64::new(0),
            bursts: AtomicU64::new(0),
            bursts_total: AtomicI64::new(-1),
        }
    }

    /// The memory the run holds now, in real bytes: the batches read and not yet
    /// processed, the one the source is building (measured by the last it built), and
    /// the output chunks it may have queued.
    pub fn memory_estimate(&self) -> u64 {
        let held = self.held_bytes.load(Ordering::Relaxed);
        held + self.batch_bytes.load(Ordering::Relaxed) + FIXED_BYTES
    }

    /// A batch the source hands on: held until [`Progress::released`].
    pub(crate) fn holding(&self, batch: &RecordBatch) {
        let bytes = batch.get_array_memory_size() as u64;
        self.batch_bytes.store(bytes, Ordering::Relaxed);
        self.batch_rows.store(batch.num_rows() as u64, Ordering::Relaxed);
        self.held_bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// A batch the stages and renderer are done with (or that was never queued).
    pub(crate) fn released(&self, bytes: u64) {
        let _ = self.held_bytes.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |h| Some(h.saturating_sub(bytes)));
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

    /// A burst run's bursts in total, once counted.
    pub fn bursts_total(&self) -> Option<u64> {
        let t = self.bursts_total.load(Ordering::Relaxed);
        (t >= 0).then_some(t as u64)
    }
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
        progress.holding(&batch);
        let bytes = batch.get_array_memory_size() as u64;
        let ok =
            !cancel.is_cancelled() && tx.send(SourceMsg::Batch(batch)).map_err(|_| progress.released(bytes)).is_ok();
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

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{ArrayRef, StringArray};
    use arrow_schema::{DataType, Field, Schema};
    use ream_core::spec::Strategy;
    use ream_sources::{Cursor, ReadPlan};

    /// Batches of `rows` strings of `width` bytes each.
    struct Wide {
        schema: SchemaRef,
        plan: ReadPlan,
        batches: usize,
        width: usize,
    }

    impl Source for Wide {
        fn schema(&self) -> SchemaRef {
            self.schema.clone()
        }
        fn plan(&self) -> &ReadPlan {
            &self.plan
        }
        fn stream(&mut self, emit: &mut dyn FnMut(RecordBatch, Option<&Cursor>) -> bool) -> Result<(), SourceError> {
            for _ in 0..self.batches {
                let col: ArrayRef = Arc::new(StringArray::from(vec!["x".repeat(self.width); 10]));
                if !emit(RecordBatch::try_new(self.schema.clone(), vec![col]).unwrap(), None) {
                    break;
                }
            }
            Ok(())
        }
        fn counter(&self, _: &ream_sources::Count) -> Option<ream_sources::Counter> {
            None
        }
    }

    #[test]
    fn the_memory_estimate_counts_the_bytes_of_the_batches_held_until_they_are_processed() {
        let schema = Arc::new(Schema::new(vec![Field::new("t", DataType::Utf8, true)]));
        let plan = ReadPlan::asked(Strategy::Cursor);
        let source = Wide { schema, plan, batches: 5, width: 100_000 };
        let progress = Arc::new(Progress::new());
        let started = spawn_source(Box::new(source), CancelToken::new(), progress.clone(), "r".into());
        // Nobody takes the batches: the queue fills, and one more waits to be sent.
        let full = BATCH_QUEUE as u64 + 1;
        let deadline = Instant::now() + std::time::Duration::from_secs(10);
        // Wait for `full` batches of the size the source reports (each is over 1 MB, so a
        // fixed 1 MB threshold was met by two of them, a race the test lost under load).
        let filled = || {
            let one = progress.batch_bytes.load(Ordering::Relaxed);
            one > 0 && progress.held_bytes.load(Ordering::Relaxed) >= full * one
        };
        while !filled() && Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let held = progress.held_bytes.load(Ordering::Relaxed);
        let one = progress.batch_bytes.load(Ordering::Relaxed);
        assert!(one >= 1_000_000, "a batch of 10 × 100 kB holds at least 1 MB, not {one}");
        assert_eq!(held, full * one, "the queued batches and the one waiting");
        assert_eq!(progress.memory_estimate(), held + one + FIXED_BYTES);
        for msg in started.rx.iter() {
            match msg {
                SourceMsg::Batch(b) => progress.released(b.get_array_memory_size() as u64),
                _ => break,
            }
        }
        assert_eq!(progress.held_bytes.load(Ordering::Relaxed), 0, "every batch processed is released");
        started.thread.join().unwrap();
    }
}
