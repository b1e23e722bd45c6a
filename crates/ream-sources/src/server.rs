//! What the database-server sources (PostgreSQL, MySQL) share: the order columns, where a
//! run is, and the loop that resumes a run from its last cursor after a lost connection.

use std::time::Duration;

use arrow_array::RecordBatch;
use ream_core::spec::Strategy;
use ream_core::CancelToken;

use crate::{Cursor, Resume, ResumeLog, SourceError};

/// Batches per keyset page: each page costs a round trip and a plan, while its rows
/// stream through (a page is never held), so memory does not grow with it.
pub(crate) const PAGE_BATCHES: usize = 8;

/// What a cancel must stop: set while a statement runs on a connection, cleared when it
/// ends, so a cancel never reaches a connection that has gone back to the pool (and
/// another run's statement). For the statements beside the stream, such as counts.
pub(crate) struct CancelSlot<T>(std::sync::Arc<std::sync::Mutex<Option<T>>>);

/// How often, and how many times, a stop is sent while its statement still runs.
const STOP_EVERY: std::time::Duration = std::time::Duration::from_millis(200);
const STOP_ATTEMPTS: usize = 25;

impl<T: Clone + Send + 'static> CancelSlot<T> {
    /// A slot whose value `stop` receives when `cancel` fires, on a background thread
    /// the token's `settle` waits for.
    ///
    /// The stop repeats while the statement is still registered: PostgreSQL drops a
    /// cancel request that arrives while the backend waits between two messages of a
    /// statement (after Parse, before Execute), and the statement then runs on. Seen in
    /// CI as a count still running 2 s after Ctrl-C, about one run in three under load.
    pub fn on(cancel: &CancelToken, stop: impl Fn(T) + Send + 'static) -> Self {
        let slot = std::sync::Arc::new(std::sync::Mutex::new(None));
        let held: std::sync::Arc<std::sync::Mutex<Option<T>>> = slot.clone();
        cancel.on_cancel_in_background(move || {
            for _ in 0..STOP_ATTEMPTS {
                let Some(v) = held.lock().unwrap_or_else(|e| e.into_inner()).clone() else { return };
                stop(v);
                std::thread::sleep(STOP_EVERY);
            }
        });
        CancelSlot(slot)
    }

    pub fn set(&self, v: T) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(v);
    }

    pub fn clear(&self) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).take();
    }
}

/// How a read attempt ended.
pub(crate) enum Flow {
    Done,
    Stopped,
}

/// Why a read attempt failed: a lost connection can be resumed, anything else cannot.
pub(crate) enum Fail {
    Lost(String),
    Other(SourceError),
}

impl From<SourceError> for Fail {
    fn from(e: SourceError) -> Self {
        Fail::Other(e)
    }
}

/// Where the run is: the cursor of the last row handed on, and how many rows that was.
pub(crate) struct Progress {
    pub last: Option<Cursor>,
    pub emitted: u64,
}

/// A source that reads in statements: what the one page loop, [`read_pages`], needs.
pub(crate) trait Paged {
    /// A statement, bound.
    type Query;
    fn plan_strategy(&self) -> Strategy;
    /// The select after `after` (keyset), or at `offset` (offset), up to `limit` rows.
    fn page_query(&self, after: Option<&Cursor>, limit: Option<usize>, offset: Option<u64>) -> Self::Query;
    /// Rows per keyset or offset page.
    fn page_rows(&self) -> usize;
    /// Run one statement, handing its batches on and updating `at`; the rows it read.
    fn run_statement(
        &mut self,
        q: &Self::Query,
        at: &mut Progress,
        emit: &mut dyn FnMut(RecordBatch, Option<&Cursor>) -> bool,
    ) -> Result<(usize, Flow), Fail>;
}

/// Read from `at` to the end with the chosen strategy: keyset pages after the last
/// cursor, offset pages after the rows handed on, or one statement (cursor, full). A
/// page shorter than asked for is the last.
pub(crate) fn read_pages<S: Paged>(
    s: &mut S,
    at: &mut Progress,
    emit: &mut dyn FnMut(RecordBatch, Option<&Cursor>) -> bool,
) -> Result<Flow, Fail> {
    let keyset = match s.plan_strategy() {
        Strategy::Keyset => true,
        Strategy::Offset => false,
        _ => {
            let q = s.page_query(at.last.as_ref(), None, None);
            return Ok(s.run_statement(&q, at, emit)?.1);
        }
    };
    loop {
        let q = match keyset {
            true => s.page_query(at.last.as_ref(), Some(s.page_rows()), None),
            false => s.page_query(None, Some(s.page_rows()), Some(at.emitted)),
        };
        let (n, flow) = s.run_statement(&q, at, emit)?;
        if matches!(flow, Flow::Stopped) || n < s.page_rows() {
            return Ok(flow);
        }
    }
}

/// A server source, seen by the resume loop.
pub(crate) trait Resumable {
    fn connected(&self) -> bool;
    /// A connection and, in snapshot mode, a new snapshot.
    fn connect(&mut self) -> Result<(), Fail>;
    /// Read from `at` to the end, updating `at` as batches are handed on.
    fn read_from(
        &mut self,
        at: &mut Progress,
        emit: &mut dyn FnMut(RecordBatch, Option<&Cursor>) -> bool,
    ) -> Result<Flow, Fail>;
    /// End the run's use of the connection (back to the pool, or dropped when broken).
    fn release(&mut self);
    /// Whether a unique key orders the rows, so a cursor names one position.
    fn unique_order(&self) -> bool;
    fn strategy(&self) -> Strategy;
    fn sql(&self) -> &str;
    fn retries(&self) -> u32;
    fn cancel(&self) -> &CancelToken;
    fn resumes(&self) -> &ResumeLog;
}

/// Stream every row once: on a lost connection, back off, reconnect and go on from the
/// cursor of the last batch handed on, up to the retry budget.
pub(crate) fn stream_resuming<S: Resumable>(
    s: &mut S,
    start_after: Option<Cursor>,
    emit: &mut dyn FnMut(RecordBatch, Option<&Cursor>) -> bool,
) -> Result<(), SourceError> {
    let mut at = Progress { last: start_after, emitted: 0 };
    let mut attempt = 0u32;
    // Rows handed on when the connection was last lost: a read that got further since
    // has made progress, and its retry budget starts again (a long export on a network
    // that drops a connection an hour is not a run that keeps failing).
    let mut progress_mark = 0u64;
    let mut resumes = 0u32;
    loop {
        let result = match s.connected() {
            true => s.read_from(&mut at, emit),
            false => s.connect().and_then(|_| s.read_from(&mut at, emit)),
        };
        let message = match result {
            Ok(_) => {
                s.release();
                return Ok(());
            }
            Err(Fail::Other(e)) => {
                s.release();
                return Err(e);
            }
            Err(Fail::Lost(message)) => {
                s.release();
                message
            }
        };
        let cursor = at.last.as_ref().map_or("(start)".into(), |c| c.to_string());
        let resumable = s.unique_order()
            && matches!(s.strategy(), Strategy::Keyset | Strategy::Cursor)
            && !s.cancel().is_cancelled();
        if !resumable {
            return Err(SourceError::Read {
                sql: s.sql().to_string(),
                cursor,
                message: format!(
                    "the connection was lost after {} rows ({message}); this run cannot resume: \
                     it has no key the database guarantees unique (a primary key or unique index of \
                     the base table), or pages by offset",
                    at.emitted
                ),
            });
        }
        if at.emitted > progress_mark {
            attempt = 0;
            progress_mark = at.emitted;
        }
        if attempt >= s.retries() {
            return Err(SourceError::Read {
                sql: s.sql().to_string(),
                cursor,
                message: format!(
                    "the connection was lost {} times in a row without progress; gave up after {} retries, {} rows in: {message}",
                    attempt + 1,
                    s.retries(),
                    at.emitted
                ),
            });
        }
        attempt += 1;
        resumes += 1;
        std::thread::sleep(backoff(attempt));
        if s.cancel().is_cancelled() {
            return Err(SourceError::Cancelled);
        }
        s.resumes().push(Resume { attempt: resumes, after_rows: at.emitted, cursor: at.last.clone(), error: message });
    }
}

/// Exponential backoff with jitter: 0.2 s, 0.4 s, 0.8 s… up to 5 s, each between half
/// and all of it, so the retries of parallel runs do not land together.
fn backoff(attempt: u32) -> Duration {
    let base = 200u64.saturating_mul(1 << attempt.min(5)).min(5_000);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    Duration::from_millis(base / 2 + (nanos as u64 % (base / 2 + 1)))
}

/// What the strategy choice depends on.
pub(crate) struct Choice<'a> {
    pub asked: Strategy,
    /// The order fields, comma-separated, for the reasons.
    pub order: String,
    pub unique_order: bool,
    /// The key the request declared (empty: the primary key was used, or none exists).
    pub declared_key: &'a [String],
    pub snapshot: crate::Snapshot,
    /// Order fields whose NULLs keep an index from serving keyset pages (PostgreSQL).
    pub nullable: &'a [String],
    pub resuming: bool,
}

/// The strategy and why. `needs_sort` reads the plan of a first page, only when it
/// decides.
pub(crate) fn choose(
    c: Choice<'_>,
    needs_sort: impl FnOnce() -> Result<bool, SourceError>,
) -> Result<(Strategy, String), SourceError> {
    let order_list = &c.order;
    let (strategy, reason) = match c.asked {
        Strategy::Keyset | Strategy::Offset if !c.unique_order && !c.declared_key.is_empty() => {
            return Err(SourceError::Plan(crate::keys::unproven_paging(c.asked, c.declared_key)))
        }
        Strategy::Offset if !c.unique_order => {
            return Err(SourceError::Plan(crate::keys::OFFSET_NEEDS_AN_ORDER.into()))
        }
        Strategy::Keyset if !c.unique_order => {
            return Err(SourceError::Plan(
                "keyset paging needs a unique key: give `key` (e.g. --key id), or use --strategy cursor".into(),
            ))
        }
        Strategy::Keyset => (Strategy::Keyset, format!("asked for; pages by ({order_list})")),
        Strategy::Cursor => (Strategy::Cursor, "asked for".to_string()),
        Strategy::Offset => (Strategy::Offset, "asked for".to_string()),
        Strategy::Auto if !c.unique_order && !c.declared_key.is_empty() => (
            Strategy::Cursor,
            format!(
                "the key ({}) is not a primary key or unique index of the base table, so one statement streams",
                c.declared_key.join(", ")
            ),
        ),
        Strategy::Auto if !c.unique_order => (
            Strategy::Cursor,
            "no unique key is known (no `key`, no primary key), so one statement streams".to_string(),
        ),
        // One snapshot for the run either way: one streaming statement in key order is as
        // consistent as pages, resumes by the key all the same, and skips a round trip and
        // a plan per page (9.5 s against 11.4 s for lineitem on PostgreSQL).
        Strategy::Auto if c.snapshot == crate::Snapshot::Run => (
            Strategy::Cursor,
            format!("one snapshot for the run, so one statement streams in ({order_list}) order, resumable by the key"),
        ),
        Strategy::Auto if !c.nullable.is_empty() => (
            Strategy::Cursor,
            format!("{} may be NULL, so keyset pages could not use an index: one statement streams", c.nullable.join(", ")),
        ),
        Strategy::Auto if needs_sort()? => (
            Strategy::Cursor,
            format!(
                "no index serves ORDER BY ({order_list}): each keyset page would sort the rows, so one statement streams"
            ),
        ),
        Strategy::Auto => (Strategy::Keyset, format!("an index serves ORDER BY ({order_list})")),
    };
    let resumable = strategy == Strategy::Keyset || strategy == Strategy::Cursor && c.unique_order;
    if c.resuming && !resumable {
        return Err(SourceError::Plan(format!(
            "resuming after a cursor needs a unique key order, but the strategy is {strategy}"
        )));
    }
    Ok((strategy, reason))
}

/// Hand a batch on with the cursor after its last row, and move `at` past it. False
/// when the consumer wants no more (then `at` stays: the batch was not taken).
pub(crate) fn hand_on(
    batch: RecordBatch,
    cursor: Option<Cursor>,
    at: &mut Progress,
    emit: &mut dyn FnMut(RecordBatch, Option<&Cursor>) -> bool,
) -> bool {
    let rows = batch.num_rows() as u64;
    if !emit(batch, cursor.as_ref()) {
        return false;
    }
    at.emitted += rows;
    at.last = cursor;
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{Int64Array, RecordBatch};
    use std::sync::Arc;

    /// A source whose connection drops after `rows_per_connection` rows, `losses` times.
    struct Flaky {
        connected: bool,
        losses: u32,
        rows_per_connection: u64,
        total: u64,
        cancel: CancelToken,
        log: ResumeLog,
    }

    impl Resumable for Flaky {
        fn connected(&self) -> bool {
            self.connected
        }
        fn connect(&mut self) -> Result<(), Fail> {
            self.connected = true;
            Ok(())
        }
        fn read_from(
            &mut self,
            at: &mut Progress,
            emit: &mut dyn FnMut(RecordBatch, Option<&Cursor>) -> bool,
        ) -> Result<Flow, Fail> {
            let mut this_connection = 0;
            while at.emitted < self.total {
                if self.losses > 0 && this_connection == self.rows_per_connection {
                    self.losses -= 1;
                    return Err(Fail::Lost("connection reset".into()));
                }
                let next = at.emitted as i64 + 1;
                let batch = RecordBatch::try_from_iter([("k", Arc::new(Int64Array::from(vec![next])) as _)]).unwrap();
                let cursor = Some(Cursor(vec![crate::CursorValue::Int(next)]));
                hand_on(batch, cursor, at, emit);
                this_connection += 1;
            }
            Ok(Flow::Done)
        }
        fn release(&mut self) {
            self.connected = false;
        }
        fn unique_order(&self) -> bool {
            true
        }
        fn strategy(&self) -> Strategy {
            Strategy::Cursor
        }
        fn sql(&self) -> &str {
            "SELECT k"
        }
        fn retries(&self) -> u32 {
            1
        }
        fn cancel(&self) -> &CancelToken {
            &self.cancel
        }
        fn resumes(&self) -> &ResumeLog {
            &self.log
        }
    }

    fn flaky(losses: u32, rows_per_connection: u64) -> Flaky {
        Flaky {
            connected: false,
            losses,
            rows_per_connection,
            total: 5,
            cancel: CancelToken::new(),
            log: ResumeLog::default(),
        }
    }

    #[test]
    fn the_retry_budget_starts_again_after_progress() {
        // One retry allowed, three losses, each after a row of progress: every row once.
        let mut s = flaky(3, 1);
        let mut keys = Vec::new();
        stream_resuming(&mut s, None, &mut |b, _| {
            keys.push(b.column(0).as_any().downcast_ref::<Int64Array>().unwrap().value(0));
            true
        })
        .unwrap();
        assert_eq!(keys, vec![1, 2, 3, 4, 5]);
        let attempts: Vec<u32> = s.log.list().iter().map(|r| r.attempt).collect();
        assert_eq!(attempts, vec![1, 2, 3], "every resume is logged");
    }

    #[test]
    fn losses_without_progress_spend_the_budget() {
        let mut s = flaky(3, 0);
        let err = stream_resuming(&mut s, None, &mut |_, _| true).unwrap_err().to_string();
        assert!(err.contains("lost 2 times in a row without progress; gave up after 1 retries"), "{err}");
    }
}
