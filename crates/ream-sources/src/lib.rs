//! ream-sources: databases streamed as Arrow batches, in key order, strictly after an
//! optional cursor.
//!
//! A source is opened from a [`ReadRequest`] (what to read) before anything streams:
//! opening connects, starts the snapshot, resolves the schema and picks the paging
//! strategy, so every error a user can fix surfaces before the first byte. Then
//! [`Source::stream`] pushes batches to a callback until the rows end or the callback says
//! stop. Sources are blocking; the engine runs each on its own thread.
//!
//! ```no_run
//! use ream_sources::{open, ReadRequest, Source};
//! use ream_core::CancelToken;
//!
//! let req = ReadRequest::table("lineitem");
//! let mut src = open("sqlite:tpch.sqlite", &req, CancelToken::new()).unwrap();
//! println!("{} ({})", src.plan().strategy, src.plan().reason);
//! let mut rows = 0;
//! src.stream(&mut |batch, _cursor| { rows += batch.num_rows(); true }).unwrap();
//! ```

use std::path::PathBuf;

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use indexmap::IndexMap;
use ream_core::params::BoundParams;
pub use ream_core::spec::Snapshot;
use ream_core::spec::{ColumnSource, Strategy};
use ream_core::CancelToken;
use serde::{Deserialize, Serialize};

#[cfg(feature = "mysql")]
pub mod mysql;
#[cfg(feature = "postgres")]
mod pgtypes;
#[cfg(feature = "postgres")]
pub mod postgres;
#[cfg(any(feature = "postgres", feature = "mysql"))]
mod server;
#[cfg(any(feature = "postgres", feature = "mysql"))]
mod server_source;
#[cfg(feature = "sqlite")]
pub mod sqlite;

pub mod aggregate;
mod convert;
mod keys;
mod query;

/// What to read: a table with joins and computed columns, or a whole SELECT.
#[derive(Debug, Clone)]
pub struct ReadRequest {
    pub table: Option<String>,
    pub sql: Option<String>,
    pub joins: Vec<String>,
    /// Field name -> expression (and optional declared type). Empty: every column.
    pub columns: IndexMap<String, ColumnSource>,
    pub filter: Option<String>,
    pub params: BoundParams,
    /// The unique key, by field name. Empty: the rowid where the table has one.
    pub key: Vec<String>,
    /// Fields that lead the order (group fields), before the key.
    pub order_prefix: Vec<String>,
    pub strategy: Strategy,
    pub batch_size: usize,
    /// Start strictly after this position (keyset only).
    pub start_after: Option<Cursor>,
    /// Whether rows inside a group must come in key order.
    pub within_groups: WithinGroups,
    /// One snapshot for the whole run (the default), or a fresh one per statement.
    pub snapshot: Snapshot,
    /// How often a lost connection is retried (resuming from the last cursor) before
    /// the run fails. Server sources only.
    pub retries: u32,
    /// How the total for progress is found.
    pub count: CountMode,
    /// Where a source records that it resumed after a lost connection.
    pub resumes: ResumeLog,
    /// A lower row count per batch that the run's owner may set while it runs (a
    /// server under a memory budget); sources read it at each batch boundary.
    pub batch_limit: BatchLimit,
    /// A batch also ends once its values hold this many bytes: rows of 1 MB text would
    /// otherwise make a 4096-row batch of 4 GB.
    pub batch_bytes: usize,
    /// PostgreSQL settings (name, value) applied with `set_config(name, value, true)` in
    /// the transaction of every connection the run uses (spec `source.session`, resolved).
    /// Other databases refuse a request that has any.
    pub session: Vec<(String, String)>,
    /// Aggregate pushdown: read one row per group of the request's rows, of the group
    /// fields and these aggregates, instead of the rows ([`aggregate`]).
    pub aggregate: Option<Aggregation>,
    /// A parallel read's partition: only the rows whose first order column lies in this
    /// range ([`KeyRange`]).
    pub range: Option<KeyRange>,
    /// PostgreSQL: a snapshot exported by another connection of the run
    /// ([`Source::shared_snapshot`]), which this read's transaction imports, so every
    /// partition of a parallel read sees the same data.
    pub import_snapshot: Option<String>,
}

/// One partition of a parallel read: the rows whose first order column (an integer) is
/// at least `lo` and below `hi`, an end being open where `None`. Rows whose value is NULL
/// belong to the partition at the end where the dialect sorts NULLs (the first on SQLite
/// and MySQL, the last on PostgreSQL), so the partitions, in order, are the read's rows
/// in order, each exactly once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct KeyRange {
    pub lo: Option<i64>,
    pub hi: Option<i64>,
}

/// Where a read splits into partitions ([`Source::split_points`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Split {
    /// Ascending values of the first order column, each the `lo` of the next partition
    /// (fewer than asked where the values are too few to split further).
    At(Vec<i64>),
    /// This read cannot be split, and why.
    No(String),
}

impl Split {
    /// The partitions these points make, in order.
    pub fn ranges(points: &[i64]) -> Vec<KeyRange> {
        let mut bounds: Vec<Option<i64>> = vec![None];
        bounds.extend(points.iter().map(|&p| Some(p)));
        bounds.push(None);
        bounds.windows(2).map(|w| KeyRange { lo: w[0], hi: w[1] }).collect()
    }
}

/// Rows per batch, lowered while a run goes on: 0 means no limit beyond `batch_size`.
/// Cloned handles share one value.
#[derive(Debug, Clone, Default)]
pub struct BatchLimit(std::sync::Arc<std::sync::atomic::AtomicUsize>);

impl BatchLimit {
    pub fn get(&self) -> usize {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn set(&self, rows: usize) {
        self.0.store(rows, std::sync::atomic::Ordering::Relaxed)
    }

    /// The rows a batch holds now, given the request's `batch_size`.
    pub fn rows(&self, batch_size: usize) -> usize {
        match self.get() {
            0 => batch_size,
            limit => limit.min(batch_size).max(1),
        }
    }
}

/// How the total row count for progress is found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CountMode {
    /// Exact on SQLite (a local file), the planner's estimate on servers, where an exact
    /// count is a second full scan of a production table.
    #[default]
    Auto,
    /// `SELECT count(*)` with the same filter, on a second connection (on PostgreSQL, in
    /// the run's own snapshot).
    Exact,
    /// The planner's estimate (`EXPLAIN`); free, but can be off. SQLite has none and
    /// counts exactly.
    Estimate,
    /// No count: progress shows rows and rate only.
    None,
}

impl std::str::FromStr for CountMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "auto" => CountMode::Auto,
            "exact" => CountMode::Exact,
            "estimate" => CountMode::Estimate,
            "none" => CountMode::None,
            _ => return Err(format!("unknown count mode `{s}` (expected auto, exact, estimate or none)")),
        })
    }
}

/// A resume after a lost connection: the run went on from `cursor`, on a new snapshot.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Resume {
    pub attempt: u32,
    /// Rows handed on before the connection was lost (none of them is read again).
    pub after_rows: u64,
    pub cursor: Option<Cursor>,
    pub error: String,
}

/// The resumes of one run, shared between the source (which writes) and whoever reports
/// on the run.
#[derive(Debug, Clone, Default)]
pub struct ResumeLog(std::sync::Arc<std::sync::Mutex<Vec<Resume>>>);

impl ResumeLog {
    pub fn push(&self, r: Resume) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).push(r);
    }
    pub fn list(&self) -> Vec<Resume> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// Retries of a lost connection before a run fails.
pub const DEFAULT_RETRIES: u32 = 5;

/// The order of rows that share the group fields.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum WithinGroups {
    /// By the key (the default): deterministic detail rows, `first`/`last`, resume.
    #[default]
    KeyOrder,
    /// Any order will do (a summary without `first`/`last`). A `cursor` read then sorts by
    /// the group fields only, a smaller sort; with no groups, it does not sort at all.
    AnyOrder,
}

/// Nothing to read yet, with the defaults a run uses: `auto`, 4096-row batches, one
/// snapshot, 5 retries.
impl Default for ReadRequest {
    fn default() -> Self {
        ReadRequest {
            table: None,
            sql: None,
            joins: vec![],
            columns: IndexMap::new(),
            filter: None,
            params: BoundParams::default(),
            key: vec![],
            order_prefix: vec![],
            strategy: Strategy::Auto,
            batch_size: DEFAULT_BATCH_SIZE,
            start_after: None,
            within_groups: WithinGroups::default(),
            snapshot: Snapshot::default(),
            retries: DEFAULT_RETRIES,
            count: CountMode::default(),
            resumes: ResumeLog::default(),
            batch_limit: BatchLimit::default(),
            batch_bytes: DEFAULT_BATCH_BYTES,
            session: vec![],
            aggregate: None,
            range: None,
            import_snapshot: None,
        }
    }
}

impl ReadRequest {
    /// Read a whole table, every column, in its natural key order.
    pub fn table(name: &str) -> Self {
        ReadRequest { table: Some(name.to_string()), ..Default::default() }
    }

    /// Read the rows of a SELECT.
    pub fn sql(sql: &str) -> Self {
        ReadRequest { sql: Some(sql.to_string()), ..Default::default() }
    }

    /// Partition `range` of this read, in the snapshot another connection exported
    /// (PostgreSQL) where given.
    pub fn partition(&self, range: KeyRange, snapshot: Option<String>) -> Self {
        ReadRequest { range: Some(range), import_snapshot: snapshot, ..self.clone() }
    }
}

pub const DEFAULT_BATCH_SIZE: usize = 4096;
/// Bytes of values after which a batch ends, whatever its rows (`--batch-bytes`).
pub const DEFAULT_BATCH_BYTES: usize = 8 << 20;

/// Where every source cuts its rows into batches: at the run's row limit (`BatchLimit`,
/// which may change between batches) or once the batch's values hold `batch_bytes`.
/// The source hands the batch on, with the cursor of its last row, when `row` says so.
#[derive(Debug)]
pub(crate) struct BatchCut {
    rows: usize,
    bytes: usize,
    batch_size: usize,
    batch_bytes: usize,
    limit: BatchLimit,
}

impl BatchCut {
    pub(crate) fn new(batch_size: usize, batch_bytes: usize, limit: &BatchLimit) -> BatchCut {
        BatchCut { rows: 0, bytes: 0, batch_size, batch_bytes, limit: limit.clone() }
    }

    /// Count a row of `bytes` in; true when the batch is full and must leave now.
    #[inline]
    pub(crate) fn row(&mut self, bytes: usize) -> bool {
        self.rows += 1;
        self.bytes += bytes;
        if self.rows >= self.limit.rows(self.batch_size) || self.bytes >= self.batch_bytes {
            self.rows = 0;
            self.bytes = 0;
            return true;
        }
        false
    }

    /// Rows in the open batch.
    pub(crate) fn pending(&self) -> usize {
        self.rows
    }
}

/// A position in the key order: the order columns' values of the last row read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cursor(pub Vec<CursorValue>);

/// A database value as stored, so it binds back exactly as it compares.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum CursorValue {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

impl std::fmt::Display for CursorValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CursorValue::Null => f.write_str("NULL"),
            CursorValue::Int(i) => write!(f, "{i}"),
            CursorValue::Real(r) => write!(f, "{r}"),
            CursorValue::Text(t) => write!(f, "{t:?}"),
            CursorValue::Blob(b) => {
                f.write_str("0x")?;
                b.iter().try_for_each(|x| write!(f, "{x:02x}"))
            }
        }
    }
}

impl std::fmt::Display for Cursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&serde_json::to_string(&self.0).unwrap_or_default())
    }
}

/// How a source pages, and why.
#[derive(Debug, Clone)]
pub struct ReadPlan {
    pub strategy: Strategy,
    pub reason: String,
    /// The statement (for keyset: the first page's).
    pub sql: String,
    /// The order columns, by field name (hidden ones like `rowid` included).
    pub order: Vec<String>,
    /// Aggregate pushdown, for a summary report: `Some(Ok(()))` when the database
    /// aggregates, `Some(Err(why))` when it reads row by row; `None` for a report with
    /// detail rows. Set by the engine.
    pub pushdown: Option<Result<(), String>>,
    /// A parallel read: `Some(Ok(n))` when it reads `n` partitions at once,
    /// `Some(Err(why))` when it was asked for and reads serially; `None` when not asked.
    /// Set by the engine.
    pub parallel: Option<Result<usize, String>>,
}

impl ReadPlan {
    /// The plan of a source not yet resolved: the strategy asked for, nothing else.
    pub fn asked(strategy: Strategy) -> ReadPlan {
        ReadPlan { strategy, reason: String::new(), sql: String::new(), order: vec![], pushdown: None, parallel: None }
    }
}

/// Source errors, with the context needed to act on them.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("bad source URL `{url}`: {reason}")]
    Url { url: String, reason: String },
    #[error("cannot open {url}: {reason}")]
    Open { url: String, reason: String },
    /// The request cannot be served (e.g. keyset without a key); a usage error.
    #[error("{0}")]
    Plan(String),
    /// The order (key or group fields) names a field the source does not produce.
    #[error("unknown field `{field}` (the source has: {})", known.join(", "))]
    UnknownField { field: String, known: Vec<String> },
    /// A statement failed to prepare: usually an error in the spec's SQL. `at` is the byte
    /// offset in `sql` the database pointed at, where it did.
    #[error("{message}\n  in SQL: {sql}")]
    Prepare { sql: String, message: String, at: Option<usize> },
    /// Reading failed mid-stream.
    #[error("{message}\n  in SQL: {sql}\n  after cursor: {cursor}")]
    Read { sql: String, cursor: String, message: String },
    /// A value that does not fit its column's type.
    #[error("column `{column}` ({ty}) at {key}: {message}")]
    Value { column: String, ty: String, key: String, message: String },
    /// The database rejected a value while running the statement (SQLSTATE class 22, a
    /// data exception): a parameter outside its column's type (an int past `int4`), or
    /// data the SQL cannot compute (a division by zero). The user's input, not a failure.
    #[error("the database rejected a value: {message}\n  in SQL: {sql}")]
    Rejected { sql: String, message: String },
    #[error("cancelled")]
    Cancelled,
}

impl SourceError {
    /// The message without the SQL text (for callers who may not see a report's SQL).
    pub fn without_sql(&self) -> String {
        match self {
            SourceError::Prepare { message, .. } => message.clone(),
            SourceError::Read { cursor, message, .. } => format!("{message}\n  after cursor: {cursor}"),
            SourceError::Rejected { message, .. } => format!("the database rejected a value: {message}"),
            other => other.to_string(),
        }
    }

    /// Errors in the user's request or data (exit code 2), rather than a failed run. A
    /// database that cannot be reached (`Open`) is a failed run (exit 1; HTTP 503).
    pub fn is_bad_input(&self) -> bool {
        matches!(
            self,
            SourceError::Url { .. }
                | SourceError::Plan(_)
                | SourceError::UnknownField { .. }
                | SourceError::Prepare { .. }
                | SourceError::Value { .. }
                | SourceError::Rejected { .. }
        )
    }
}

/// A source, opened and ready to stream.
pub trait Source: Send {
    /// The schema of the batches. Field names are final when the source is open; the
    /// types of fields the database declares no type for are settled by the first batch
    /// (see [`Source::types_settled`]), so the statement runs once.
    fn schema(&self) -> SchemaRef;
    /// Whether every field's type is known before reading. When not, the first batch
    /// (or, for no rows, the schema after `stream`) carries the final types.
    fn types_settled(&self) -> bool {
        true
    }
    /// The strategy in use and why it was picked.
    fn plan(&self) -> &ReadPlan;
    /// Push batches to `emit` in key order until the rows end or `emit` returns false.
    /// `emit` also gets the cursor after the batch's last row, where one is known.
    fn stream(&mut self, emit: &mut dyn FnMut(RecordBatch, Option<&Cursor>) -> bool) -> Result<(), SourceError>;
    /// What the request matches, counted by a query on a separate connection (so it may
    /// run beside the stream): its rows, or the distinct values of one of its fields.
    /// `None` where unsupported, or for a field the read does not select.
    fn counter(&self, count: &Count) -> Option<Counter>;
    /// Where to cut this read into `n` partitions of about equal rows, on its first
    /// order column, asked of the database in the read's own snapshot (before
    /// [`Source::stream`]).
    fn split_points(&mut self, n: usize) -> Result<Split, SourceError> {
        let _ = n;
        Ok(Split::No("this source reads in one statement".into()))
    }
    /// The snapshot other connections can import to read exactly what this read does
    /// (PostgreSQL with one snapshot per run), while this source is open.
    fn shared_snapshot(&self) -> Option<String> {
        None
    }
    /// A quick count of the rows this read matches, whatever the run's `CountMode`: the
    /// planner's estimate on a server, the exact count on SQLite (for `--parallel auto`).
    fn rows_estimate(&self) -> Option<Counter> {
        self.counter(&Count::Rows)
    }
}

/// What a count query counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Count {
    /// The rows the read matches (exact or estimated, by the source's [`CountMode`]).
    Rows,
    /// The distinct values of one field of the read, NULL counting as one value: a burst
    /// run's bursts. Always exact, in the database's own comparison of the values.
    Distinct(String),
}

/// A count query ready to run on a connection of its own.
pub type Counter = Box<dyn FnOnce() -> Result<u64, SourceError> + Send>;

/// A parsed source URL.
#[derive(Debug, Clone, PartialEq)]
pub enum SourceUrl {
    Sqlite(PathBuf),
    /// `postgres://` or `postgresql://`, as libpq reads it.
    Postgres(String),
    /// `mysql://` or `mariadb://`.
    Mysql(String),
}

impl SourceUrl {
    /// `sqlite:PATH` or `sqlite://PATH` (`sqlite:///abs` is absolute). A relative path is
    /// taken relative to `base`.
    pub fn parse(url: &str, base: Option<&std::path::Path>) -> Result<SourceUrl, SourceError> {
        let bad = |reason: &str| SourceError::Url { url: url.to_string(), reason: reason.to_string() };
        if let Some(rest) = url.strip_prefix("sqlite:") {
            let path = rest.strip_prefix("//").unwrap_or(rest);
            if path.is_empty() {
                return Err(bad("no file path after `sqlite:`"));
            }
            let p = PathBuf::from(path);
            let p = match base {
                Some(b) if p.is_relative() => b.join(p),
                _ => p,
            };
            return Ok(SourceUrl::Sqlite(p));
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(SourceUrl::Postgres(url.to_string()));
        }
        if url.starts_with("mysql://") || url.starts_with("mariadb://") {
            return Ok(SourceUrl::Mysql(url.to_string()));
        }
        Err(bad("expected sqlite:PATH, postgres://USER@HOST:PORT/DB or mysql://USER@HOST:PORT/DB"))
    }
}

/// The end of every page statement, in every dialect: `ORDER BY` the order's
/// expressions (none: no order), then `LIMIT` and `OFFSET` when given.
pub(crate) fn order_and_page<'a>(
    sql: &mut String,
    order: impl IntoIterator<Item = &'a str>,
    limit: Option<usize>,
    offset: Option<u64>,
) {
    let list: Vec<&str> = order.into_iter().collect();
    if !list.is_empty() {
        sql.push_str(&format!(" ORDER BY {}", list.join(", ")));
    }
    if let Some(n) = limit {
        sql.push_str(&format!(" LIMIT {n}"));
    }
    if let Some(m) = offset {
        sql.push_str(&format!(" OFFSET {m}"));
    }
}

pub use aggregate::{Aggregation, Partial, PartialOf};
pub use query::split_evenly;
pub use ream_core::redact;

/// Open a source by URL.
pub fn open(url: &str, req: &ReadRequest, cancel: CancelToken) -> Result<Box<dyn Source>, SourceError> {
    open_url(&SourceUrl::parse(url, None)?, url, req, cancel)
}

/// Open an already parsed URL (`display` is how errors name it).
pub fn open_url(
    url: &SourceUrl,
    display: &str,
    req: &ReadRequest,
    cancel: CancelToken,
) -> Result<Box<dyn Source>, SourceError> {
    if req.batch_size == 0 {
        return Err(SourceError::Plan("the batch size must be at least 1".into()));
    }
    if req.batch_bytes == 0 {
        return Err(SourceError::Plan("the batch bytes must be at least 1".into()));
    }
    let is_postgres = matches!(url, SourceUrl::Postgres(_));
    if !req.session.is_empty() && !is_postgres {
        return Err(SourceError::Plan(
            "source.session sets PostgreSQL settings; this database has none: bind `:actor.<claim>` in `where` instead"
                .into(),
        ));
    }
    match url {
        #[cfg(feature = "sqlite")]
        SourceUrl::Sqlite(path) => Ok(Box::new(sqlite::SqliteSource::open(path, display, req, cancel)?)),
        #[cfg(feature = "postgres")]
        SourceUrl::Postgres(url) => Ok(Box::new(postgres::open(url, display, req, cancel)?)),
        #[cfg(feature = "mysql")]
        SourceUrl::Mysql(url) => Ok(Box::new(mysql::open(url, display, req, cancel)?)),
        #[allow(unreachable_patterns)]
        _ => Err(SourceError::Url { url: display.to_string(), reason: "this build has no driver for it".into() }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_urls_parse_relative_to_a_base() {
        let base = std::path::Path::new("/specs");
        assert_eq!(
            SourceUrl::parse("sqlite:demo.sqlite", Some(base)).unwrap(),
            SourceUrl::Sqlite("/specs/demo.sqlite".into())
        );
        assert_eq!(SourceUrl::parse("sqlite:///abs/x.db", Some(base)).unwrap(), SourceUrl::Sqlite("/abs/x.db".into()));
        assert!(SourceUrl::parse("oracle://x", None).unwrap_err().to_string().contains("expected sqlite:PATH"));
        assert!(matches!(SourceUrl::parse("postgresql://u@h/db", None).unwrap(), SourceUrl::Postgres(_)));
    }
}
