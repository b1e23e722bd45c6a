//! PostgreSQL: the binary protocol through `tokio-postgres`, connections from a pool per
//! URL, one `REPEATABLE READ, READ ONLY` transaction per run (a consistent snapshot), and
//! resume from the last emitted cursor when the connection is lost.
//!
//! Paging strategies:
//! - `keyset`: `WHERE (k1, k2) > ($n, $m) ORDER BY k1, k2 LIMIT n`, one statement per page;
//! - `cursor`: one statement whose rows stream with backpressure down to TCP (the driver
//!   stops reading the socket while we are not taking rows);
//! - `offset`: `LIMIT n OFFSET m` (last resort; cannot resume);
//! - `auto`: cursor in the default one-snapshot mode (one statement in key order is as
//!   consistent as pages and resumes by the key all the same, without a round trip per
//!   page). With a fresh snapshot per statement: keyset when a unique key is known, no
//!   order column may be NULL and `EXPLAIN` shows no Sort (an index serves the order),
//!   else cursor.
//!
//! The default key of a table is its primary key. Key columns must not be NULL: a NULL key
//! is an error, because a row after it could otherwise be skipped silently.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use arrow_array::RecordBatch;
use bytes::BytesMut;
use postgres::error::SqlState;
use postgres::fallible_iterator::FallibleIterator;
use postgres::types::{Format, FromSql, IsNull, ToSql, Type};
use postgres::{Client, NoTls, Row, Statement};
use r2d2_postgres::PostgresConnectionManager;

use ream_core::{CancelToken, Value};

use crate::keys::NameCase;
use crate::pgtypes::{Decode, PgBuilder};
use crate::query::{PageQuery, SqlDialect, POSTGRES};
use crate::server::{CancelSlot, Fail, Flow, Progress};
use crate::server_source::{read_failure, Assembler, Catalogue, Column, CountQuery, Described, Driver, ServerSource};
use crate::{Counter, Cursor, CursorValue, ReadRequest, Snapshot, SourceError};

type Pool = r2d2::Pool<Manager>;
type Conn = r2d2::PooledConnection<Manager>;

/// The pool's connections, each marked once a statement of it was stopped mid-stream.
/// A marked one is never handed to another run: the cancel that stopped its statement
/// may reach the server late and would then cancel that run's statement instead (seen
/// in about one run in three of the test of a cancel followed by a run). The pool drops
/// it, which ends its transaction with it.
struct Manager(PostgresConnectionManager<NoTls>);

pub(crate) struct PgConn {
    client: Client,
    stopped: bool,
}

impl std::ops::Deref for PgConn {
    type Target = Client;
    fn deref(&self) -> &Client {
        &self.client
    }
}

impl std::ops::DerefMut for PgConn {
    fn deref_mut(&mut self) -> &mut Client {
        &mut self.client
    }
}

impl r2d2::ManageConnection for Manager {
    type Connection = PgConn;
    type Error = postgres::Error;
    fn connect(&self) -> Result<PgConn, postgres::Error> {
        self.0.connect().map(|client| PgConn { client, stopped: false })
    }
    fn is_valid(&self, conn: &mut PgConn) -> Result<(), postgres::Error> {
        self.0.is_valid(&mut conn.client)
    }
    fn has_broken(&self, conn: &mut PgConn) -> bool {
        conn.stopped || self.0.has_broken(&mut conn.client)
    }
}

/// One pool per URL, for the life of the process. The synchronous client drives its
/// connection on the thread that reads the rows: no hand-off between threads per
/// network read, which cost a fifth of the CPU of an export with the async client.
fn pool_for(url: &str, display: &str) -> Result<Pool, SourceError> {
    static POOLS: OnceLock<Mutex<HashMap<String, Pool>>> = OnceLock::new();
    let pools = || POOLS.get_or_init(Default::default).lock().unwrap_or_else(|e| e.into_inner());
    if let Some(p) = pools().get(url) {
        return Ok(p.clone());
    }
    // Connect without the lock: a database that takes its 10 s to refuse (or never
    // answers) must not hold up the runs of every other database.
    let mut config: postgres::Config =
        url.parse().map_err(|e| SourceError::Url { url: display.to_string(), reason: format!("{e}") })?;
    if config.get_application_name().is_none() {
        // So a DBA (and our tests) can tell ream's sessions in pg_stat_activity.
        config.application_name("ream");
    }
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(Duration::from_secs(10));
    }
    // Every transaction of every connection is read-only, with one snapshot per run or a
    // fresh one per statement (`--no-snapshot`), counts and plans included: a report's
    // SELECT that calls a function which writes fails instead of writing.
    let options = config.get_options().map(|o| format!("{o} ")).unwrap_or_default();
    config.options(&format!("{options}-c default_transaction_read_only=on"));
    // The pool retries a refused connection until its timeout and then reports only
    // that it timed out; one direct attempt first fails fast with the real reason.
    config.connect(NoTls).map_err(|e| SourceError::Open { url: display.to_string(), reason: db_message(&e) })?;
    let pool = r2d2::Pool::builder()
        .max_size(16)
        // Connect on demand: a run needs one connection (two while it counts).
        .min_idle(Some(0))
        .connection_timeout(Duration::from_secs(15))
        .build_unchecked(Manager(PostgresConnectionManager::new(config, NoTls)));
    // Two first runs of one URL may both get here; the first pool in is the one kept.
    Ok(pools().entry(url.to_string()).or_insert(pool).clone())
}

/// A column's raw wire bytes, whatever its type.
struct Raw<'a>(Option<&'a [u8]>);

impl<'a> FromSql<'a> for Raw<'a> {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Raw(Some(raw)))
    }
    fn from_sql_null(_: &Type) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Raw(None))
    }
    fn accepts(_: &Type) -> bool {
        true
    }
}

#[inline]
fn raw(row: &Row, i: usize) -> Option<&[u8]> {
    row.try_get::<_, Raw>(i).ok().and_then(|r| r.0)
}

/// A statement parameter. The spec's parameters go as text, which PostgreSQL parses as
/// the type it inferred for the placeholder (numeric, date, timestamptz…), so no
/// conversion of ours can change a value. Cursor values go back exactly as they came: as
/// the wire bytes of the column's own type.
#[derive(Debug)]
enum Param<'a> {
    Value(&'a Value),
    Cursor(&'a CursorValue),
}

impl ToSql for Param<'_> {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match self {
            Param::Value(Value::Null) | Param::Cursor(CursorValue::Null) => return Ok(IsNull::Yes),
            Param::Value(v) => out.extend_from_slice(text_literal(v).as_bytes()),
            Param::Cursor(CursorValue::Int(i)) => match *ty {
                Type::INT2 => out.extend_from_slice(&(i16::try_from(*i)?).to_be_bytes()),
                Type::INT4 => out.extend_from_slice(&(i32::try_from(*i)?).to_be_bytes()),
                Type::OID => out.extend_from_slice(&(u32::try_from(*i)?).to_be_bytes()),
                _ => out.extend_from_slice(&i.to_be_bytes()),
            },
            Param::Cursor(CursorValue::Real(f)) => match *ty {
                Type::FLOAT4 => out.extend_from_slice(&(*f as f32).to_be_bytes()),
                _ => out.extend_from_slice(&f.to_be_bytes()),
            },
            Param::Cursor(CursorValue::Text(s)) => out.extend_from_slice(s.as_bytes()),
            Param::Cursor(CursorValue::Blob(b)) => out.extend_from_slice(b),
        }
        Ok(IsNull::No)
    }
    fn accepts(_: &Type) -> bool {
        true
    }
    fn encode_format(&self, _: &Type) -> Format {
        match self {
            Param::Value(_) => Format::Text,
            Param::Cursor(_) => Format::Binary,
        }
    }
    postgres::types::to_sql_checked!();
}

/// A value as PostgreSQL's input syntax reads it.
fn text_literal(v: &Value) -> String {
    match v {
        Value::Bool(b) => if *b { "true" } else { "false" }.to_string(),
        Value::Float(f) => ryu::Buffer::new().format(*f).to_string(),
        Value::Timestamp(us) => chrono::DateTime::from_timestamp_micros(*us)
            .map(|t| t.naive_utc().format("%Y-%m-%d %H:%M:%S%.f").to_string())
            .unwrap_or_default(),
        Value::Binary(b) => format!("\\x{}", b.iter().map(|x| format!("{x:02x}")).collect::<String>()),
        other => other.to_string(),
    }
}

fn is_lost(e: &postgres::Error) -> bool {
    if e.is_closed() {
        return true;
    }
    if let Some(code) = e.code() {
        return *code == SqlState::ADMIN_SHUTDOWN
            || *code == SqlState::CRASH_SHUTDOWN
            || *code == SqlState::CANNOT_CONNECT_NOW
            || code.code().starts_with("08");
    }
    // No SQLSTATE: the socket or the protocol failed, not the statement.
    e.as_db_error().is_none() && std::error::Error::source(e).is_some_and(|s| s.is::<std::io::Error>())
}

/// The byte offset in `sql` of the place PostgreSQL's error points at (it counts
/// characters from 1).
fn position(e: &postgres::Error, sql: &str) -> Option<usize> {
    match e.as_db_error()?.position()? {
        postgres::error::ErrorPosition::Original(n) => {
            sql.char_indices().nth((*n as usize).checked_sub(1)?).map(|(i, _)| i)
        }
        postgres::error::ErrorPosition::Internal { .. } => None,
    }
}

fn db_message(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => {
            let mut m = db.message().to_string();
            if let Some(d) = db.detail() {
                m.push_str(&format!(" ({d})"));
            }
            if let Some(h) = db.hint() {
                m.push_str(&format!("; hint: {h}"));
            }
            m
        }
        // Not the server's word: the driver's, with its causes ("error connecting to
        // server: Connection refused (os error 111)").
        None => {
            let mut m = e.to_string();
            let mut cause = std::error::Error::source(e);
            while let Some(c) = cause {
                m.push_str(&format!(": {c}"));
                cause = c.source();
            }
            m
        }
    }
}

/// A count's connection, registered with the run's cancel token while the count runs
/// (the guard clears it): a cancelled run's count stops on the server too.
fn counting(cancel: &CancelToken, conn: &Conn) -> Result<CountGuard, SourceError> {
    let slot = CancelSlot::on(cancel, send_cancel);
    slot.set(conn.cancel_token());
    if cancel.is_cancelled() {
        return Err(SourceError::Cancelled);
    }
    Ok(CountGuard(slot))
}

struct CountGuard(CancelSlot<postgres::CancelToken>);

impl Drop for CountGuard {
    fn drop(&mut self) {
        self.0.clear();
    }
}

/// The cancel request opens a connection of its own (a few milliseconds).
fn send_cancel(token: postgres::CancelToken) {
    let _ = token.cancel_query(NoTls);
}

/// `source.session`'s settings (name, value), resolved for the run's actor.
#[derive(Clone, Default)]
struct Session(Arc<[(String, String)]>);

impl Session {
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `set_config(name, value, true)` for each: bound values, local to the transaction
    /// (which the caller has begun).
    fn apply(&self, conn: &mut Client) -> Result<(), postgres::Error> {
        for (name, value) in self.0.iter() {
            conn.execute("SELECT set_config($1, $2, true)", &[name, value])?;
        }
        Ok(())
    }
}

/// The PostgreSQL driver of a [`ServerSource`].
pub(crate) struct PgDriver {
    pool: Pool,
    display: String,
    conn: Option<Conn>,
    /// Statements prepared on `conn` (keyset pages repeat theirs).
    statements: HashMap<String, Statement>,
    in_txn: bool,
    exported_snapshot: Option<String>,
    /// A parallel read's partition: the snapshot its first transaction imports.
    import_snapshot: Option<String>,
    /// `source.session`: applied in every transaction of the run, on every connection.
    session: Session,
    cancel: CancelToken,
    /// The connection the stream reads on, for a cancel (repeated while it is set).
    cancel_slot: CancelSlot<postgres::CancelToken>,
}

/// Connect, start the snapshot, resolve fields and types, pick the strategy. Nothing is
/// streamed yet.
pub(crate) fn open(
    url: &str,
    display: &str,
    req: &ReadRequest,
    cancel: CancelToken,
) -> Result<ServerSource<PgDriver>, SourceError> {
    let display = crate::redact(display);
    let pool = pool_for(url, &display)?;
    let driver = PgDriver {
        pool,
        display,
        conn: None,
        statements: HashMap::new(),
        in_txn: false,
        exported_snapshot: None,
        import_snapshot: req.import_snapshot.clone(),
        session: Session(req.session.clone().into()),
        cancel_slot: CancelSlot::on(&cancel, send_cancel),
        cancel: cancel.clone(),
    };
    ServerSource::open(driver, req, cancel)
}

impl Column for Decode {
    type Row = Row;
    type Builder = PgBuilder;
    fn data_type(&self) -> arrow_schema::DataType {
        Decode::data_type(self)
    }
    fn builder(&self, capacity: usize) -> PgBuilder {
        Decode::builder(self, capacity)
    }
    #[inline]
    fn append(&self, b: &mut PgBuilder, row: &Row, i: usize) -> Result<usize, String> {
        let value = raw(row, i);
        Decode::append(self, b, value)?;
        Ok(value.map_or(8, |v| v.len().max(8)))
    }
    fn finish(b: &mut PgBuilder) -> arrow_array::ArrayRef {
        b.finish()
    }
    fn is_null(row: &Row, i: usize) -> bool {
        raw(row, i).is_none()
    }
    fn cursor_value(&self, row: &Row, i: usize) -> CursorValue {
        cursor_value(self, raw(row, i))
    }
    fn decimal_text(&self) -> bool {
        *self == Decode::NumericText
    }
}

/// A read that failed, as the resume loop sees it.
fn read_fail(cancel: &CancelToken, sql: &str, at: &Progress, e: &postgres::Error) -> Fail {
    let rejected = e.code().is_some_and(|c| c.code().starts_with("22"));
    read_failure(cancel, sql, at, is_lost(e), rejected, db_message(e))
}

impl PgDriver {
    fn prepare(&mut self, sql: &str) -> Result<Statement, Fail> {
        if let Some(s) = self.statements.get(sql) {
            return Ok(s.clone());
        }
        let conn = self.conn.as_mut().ok_or_else(not_connected)?;
        match conn.prepare(sql) {
            Ok(stmt) => {
                self.statements.insert(sql.to_string(), stmt.clone());
                Ok(stmt)
            }
            Err(e) if is_lost(&e) => Err(Fail::Lost(db_message(&e))),
            Err(e) => {
                let mut message = db_message(&e);
                if e.code() == Some(&SqlState::UNDEFINED_TABLE) {
                    message.push_str(&format!(" (in {})", self.display));
                }
                Err(Fail::Other(SourceError::Prepare { sql: sql.to_string(), at: position(&e, sql), message }))
            }
        }
    }

    /// In snapshot mode, the run's transaction; with `source.session`, a transaction
    /// holding its settings (on a resume too, before any read).
    fn begin(&mut self, snapshot: Snapshot) -> Result<(), Fail> {
        let display = self.display.clone();
        let lost = |e: postgres::Error| {
            if is_lost(&e) {
                Fail::Lost(db_message(&e))
            } else {
                Fail::Other(SourceError::Open { url: display.clone(), reason: db_message(&e) })
            }
        };
        let conn = self.conn.as_deref_mut().ok_or_else(not_connected)?;
        if snapshot == Snapshot::Run {
            conn.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY").map_err(lost)?;
            self.in_txn = true;
            if let Some(id) = self.import_snapshot.take() {
                // A partition of a parallel read: the first connection's snapshot (its id
                // is PostgreSQL's own, `[0-9A-F-]`, checked before it is written here).
                // Only the first transaction imports it: a resume reads a fresh one.
                if !id.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
                    return Err(Fail::Other(SourceError::Plan(format!("not a snapshot id: {id:?}"))));
                }
                conn.batch_execute(&format!("SET TRANSACTION SNAPSHOT '{id}'")).map_err(lost)?;
            }
            // The count query (on another connection) reads this same snapshot.
            let row = conn.query_one("SELECT pg_export_snapshot()", &[]).map_err(lost)?;
            self.exported_snapshot = row.try_get::<_, String>(0).ok();
        } else if !self.session.is_empty() {
            // Settings are local to a transaction, so none outlives the run on a pooled
            // connection. READ COMMITTED: each statement still sees the latest data, and
            // an idle one holds no snapshot back.
            conn.batch_execute("BEGIN ISOLATION LEVEL READ COMMITTED, READ ONLY").map_err(lost)?;
            self.in_txn = true;
        }
        self.session.apply(conn).map_err(lost)
    }

    fn client(&mut self) -> Result<&mut Client, SourceError> {
        self.conn
            .as_deref_mut()
            .map(|c| &mut c.client)
            .ok_or_else(|| SourceError::Plan("no connection to the database".into()))
    }
}

/// A statement asked of a driver whose connection was lost: the resume loop reconnects.
fn not_connected() -> Fail {
    Fail::Lost("not connected".into())
}

impl Driver for PgDriver {
    type Column = Decode;
    const DIALECT: &'static SqlDialect = &POSTGRES;
    const CATALOGUE: Catalogue = Catalogue {
        not_null: "SELECT attname::text FROM pg_attribute \
                   WHERE attrelid = to_regclass($1) AND attnotnull AND attnum > 0",
        primary_key: "SELECT a.attname::text FROM pg_index i \
                      JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) \
                      WHERE i.indrelid = to_regclass($1) AND i.indisprimary \
                      ORDER BY array_position(i.indkey::int2[], a.attnum)",
        unique_indexes: "SELECT i.indexrelid::text, a.attname::text FROM pg_index i \
                         CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord) \
                         JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum \
                         WHERE i.indrelid = to_regclass($1) AND i.indisunique AND i.indimmediate \
                           AND i.indpred IS NULL AND i.indexprs IS NULL AND k.ord <= i.indnkeyatts \
                         ORDER BY i.indexrelid, k.ord",
        case: NameCase::FoldUnquoted,
    };

    fn display(&self) -> &str {
        &self.display
    }

    fn connected(&self) -> bool {
        self.conn.is_some()
    }

    /// A connection from the pool and, in snapshot mode, the run's transaction.
    fn connect(&mut self, snapshot: Snapshot) -> Result<(), Fail> {
        let conn = self.pool.get().map_err(|e| Fail::Lost(e.to_string()))?;
        self.cancel_slot.set(conn.cancel_token());
        self.statements.clear();
        self.conn = Some(conn);
        // A connection whose transaction did not start cleanly goes back rolled back.
        self.begin(snapshot).inspect_err(|_| self.release())
    }

    fn describe(&mut self, sql: &str) -> Result<Vec<Described<Decode>>, Fail> {
        let stmt = self.prepare(sql)?;
        Ok(stmt
            .columns()
            .iter()
            .map(|c| Described {
                name: c.name().to_string(),
                column: Decode::for_type(c.type_(), c.type_modifier()),
                ty: c.type_().name().to_string(),
            })
            .collect())
    }

    fn catalogue(&mut self, sql: &str, table: &str) -> Result<Vec<Vec<String>>, SourceError> {
        let rows = self.client()?.query(sql, &[&table]).map_err(|e| SourceError::Prepare {
            sql: sql.to_string(),
            at: position(&e, sql),
            message: db_message(&e),
        })?;
        Ok(rows.iter().map(|r| (0..r.len()).map(|i| r.try_get::<_, String>(i).unwrap_or_default()).collect()).collect())
    }

    fn ints(&mut self, q: &PageQuery) -> Result<Vec<Vec<Option<i64>>>, SourceError> {
        let sql = &q.bound.sql;
        let fail = |e: postgres::Error| SourceError::Prepare {
            sql: sql.clone(),
            at: position(&e, sql),
            message: db_message(&e),
        };
        let client = self.client()?;
        let stmt = client.prepare(sql).map_err(fail)?;
        let rows: Vec<Row> = client.query_raw(&stmt, params_of(q).iter()).map_err(fail)?.collect().map_err(fail)?;
        rows.iter().map(|r| (0..r.len()).map(|i| r.try_get::<_, Option<i64>>(i).map_err(fail)).collect()).collect()
    }

    fn int_histogram(&mut self, table: &str, column: &str) -> Result<Option<Vec<i64>>, SourceError> {
        // pg_stats keeps an integer column's bounds as an anyarray: its text is `{1,2,…}`.
        let sql = "SELECT s.histogram_bounds::text FROM pg_stats s \
                   JOIN pg_namespace n ON n.nspname = s.schemaname \
                   JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = s.tablename \
                   WHERE c.oid = to_regclass($1) AND s.attname = $2 AND s.histogram_bounds IS NOT NULL";
        let fail = |e: postgres::Error| SourceError::Prepare { sql: sql.into(), at: None, message: db_message(&e) };
        let rows = self.client()?.query(sql, &[&table, &column]).map_err(fail)?;
        let Some(text) = rows.first().and_then(|r| r.try_get::<_, String>(0).ok()) else { return Ok(None) };
        let bounds: Option<Vec<i64>> =
            text.trim_matches(|c| c == '{' || c == '}').split(',').map(|v| v.trim().parse().ok()).collect();
        Ok(bounds)
    }

    fn shared_snapshot(&self) -> Option<String> {
        self.exported_snapshot.clone()
    }

    fn needs_sort(&mut self, q: &PageQuery) -> Result<bool, SourceError> {
        let sql = format!("EXPLAIN (FORMAT JSON) {}", q.bound.sql);
        let text =
            explain_json(self.client()?, &sql, q).map_err(|e| SourceError::Prepare { sql, message: e, at: None })?;
        let plan: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        Ok(has_sort(&plan))
    }

    fn run(
        &mut self,
        q: &PageQuery,
        rows: &mut Assembler<'_, Decode>,
        at: &mut Progress,
        emit: &mut dyn FnMut(RecordBatch, Option<&Cursor>) -> bool,
    ) -> Result<Flow, Fail> {
        let stmt = self.prepare(&q.bound.sql)?;
        let conn = self.conn.as_mut().ok_or_else(not_connected)?;
        let params = params_of(q);
        let sql = rows.sql().to_string();
        let mut iter = conn.query_raw(&stmt, params.iter()).map_err(|e| read_fail(&self.cancel, &sql, at, &e))?;
        let flow = loop {
            match iter.next() {
                Ok(Some(row)) => {
                    if let Some(flow) = rows.push(row, at, emit)? {
                        break flow;
                    }
                }
                Ok(None) => break rows.end(at, emit)?,
                Err(e) => return Err(read_fail(&self.cancel, &sql, at, &e)),
            }
        };
        drop(iter);
        if let Flow::Stopped = flow {
            // Nobody wants the rest: stop the statement on the server, not just here, and
            // retire the connection (see `Manager`).
            send_cancel(conn.cancel_token());
            conn.stopped = true;
        }
        Ok(flow)
    }

    /// End the run's use of the connection: roll back the read-only transaction and give
    /// the connection back to the pool. A broken one the pool drops by itself.
    ///
    /// A cancelled statement drains before the ROLLBACK runs, so the cancel stays armed
    /// until then; a ROLLBACK a repeated cancel hit is run again once it is disarmed. A
    /// stopped connection is not rolled back: the pool drops it (see `Manager`).
    fn release(&mut self) {
        self.statements.clear();
        if let Some(mut conn) = self.conn.take() {
            // A cancelled run's cancels may still be on their way too.
            conn.stopped |= self.cancel.is_cancelled();
            let live = self.in_txn && !conn.stopped && !conn.is_closed();
            if live && conn.batch_execute("ROLLBACK").is_err() {
                self.cancel_slot.clear();
                let _ = conn.batch_execute("ROLLBACK");
            }
        }
        self.cancel_slot.clear();
        self.in_txn = false;
    }

    fn counter(&self, q: CountQuery, cancel: &CancelToken) -> Counter {
        let (pool, cancel, session) = (self.pool.clone(), cancel.clone(), self.session.clone());
        match q {
            CountQuery::Estimate(q) => Box::new(move || estimate(&pool, &cancel, &q, &session)),
            CountQuery::Exact(q) => {
                let snapshot = self.exported_snapshot.clone();
                Box::new(move || exact_count(&pool, &cancel, &q, snapshot, &session))
            }
        }
    }
}

fn count_fail(m: String) -> SourceError {
    SourceError::Plan(format!("counting rows: {m}"))
}

/// The planner's estimate of the rows of `q`.
fn estimate(pool: &Pool, cancel: &CancelToken, q: &PageQuery, session: &Session) -> Result<u64, SourceError> {
    let mut conn = pool.get().map_err(|e| count_fail(e.to_string()))?;
    let _slot = counting(cancel, &conn)?;
    let db = |e: postgres::Error| count_fail(db_message(&e));
    if !session.is_empty() {
        conn.batch_execute("BEGIN READ ONLY").map_err(db)?;
        if let Err(e) = session.apply(&mut conn) {
            let _ = conn.batch_execute("ROLLBACK");
            return Err(db(e));
        }
    }
    let text = explain_json(&mut conn, &format!("EXPLAIN (FORMAT JSON) {}", q.bound.sql), q);
    if !session.is_empty() {
        let _ = conn.batch_execute("ROLLBACK");
    }
    let text = text.map_err(count_fail)?;
    let plan: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    plan.pointer("/0/Plan/Plan Rows")
        .and_then(|v| v.as_f64())
        .map(|r| r as u64)
        .ok_or_else(|| count_fail("EXPLAIN gave no row estimate".into()))
}

/// The count `q` selects, in the run's own snapshot when it has one, so the total is
/// exactly what it reads.
fn exact_count(
    pool: &Pool,
    cancel: &CancelToken,
    q: &PageQuery,
    snapshot: Option<String>,
    session: &Session,
) -> Result<u64, SourceError> {
    let mut conn = pool.get().map_err(|e| count_fail(e.to_string()))?;
    let slot = counting(cancel, &conn)?;
    let db = |e: postgres::Error| count_fail(db_message(&e));
    let in_txn = snapshot.is_some() || !session.is_empty();
    match &snapshot {
        Some(id) => {
            let id = id.replace('\'', "");
            conn.batch_execute(&format!(
                "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY; SET TRANSACTION SNAPSHOT '{id}'"
            ))
            .map_err(db)?;
        }
        None if in_txn => conn.batch_execute("BEGIN READ ONLY").map_err(db)?,
        None => {}
    }
    // The count sees the rows the run's row policies let it see.
    if let Err(e) = session.apply(&mut conn) {
        let _ = conn.batch_execute("ROLLBACK");
        return Err(db(e));
    }
    let params = params_of(q);
    let stmt = conn.prepare(&q.bound.sql).map_err(db)?;
    let row = conn.query_raw(&stmt, params.iter()).and_then(|mut r| r.next());
    // No stop may reach the ROLLBACK below.
    drop(slot);
    if in_txn {
        let _ = conn.batch_execute("ROLLBACK");
    }
    let row = row.map_err(db)?.ok_or_else(|| count_fail("no count".into()))?;
    let n: i64 = row.try_get(0).map_err(db)?;
    Ok(n as u64)
}

/// `EXPLAIN (FORMAT JSON)` of a statement, with its parameters bound, as text.
fn explain_json(conn: &mut Client, sql: &str, q: &PageQuery) -> Result<String, String> {
    let stmt = conn.prepare(sql).map_err(|e| db_message(&e))?;
    let params = params_of(q);
    let mut rows = conn.query_raw(&stmt, params.iter()).map_err(|e| db_message(&e))?;
    let mut text = String::new();
    while let Some(row) = rows.next().map_err(|e| db_message(&e))? {
        text.push_str(&String::from_utf8_lossy(raw(&row, 0).unwrap_or_default()));
    }
    Ok(text)
}

/// The cursor value of one column: integers and text as themselves, everything else as
/// its wire bytes (which bind back as the same type, exactly).
fn cursor_value(d: &Decode, raw: Option<&[u8]>) -> CursorValue {
    let Some(b) = raw else { return CursorValue::Null };
    let int = |b: &[u8]| -> Option<i64> {
        Some(match b.len() {
            2 => i16::from_be_bytes(b.try_into().ok()?) as i64,
            4 if *d == Decode::Oid => u32::from_be_bytes(b.try_into().ok()?) as i64,
            4 => i32::from_be_bytes(b.try_into().ok()?) as i64,
            8 => i64::from_be_bytes(b.try_into().ok()?),
            _ => return None,
        })
    };
    match d {
        Decode::Int2 | Decode::Int4 | Decode::Int8 | Decode::Oid => {
            int(b).map_or(CursorValue::Blob(b.to_vec()), CursorValue::Int)
        }
        Decode::Text => CursorValue::Text(String::from_utf8_lossy(b).into_owned()),
        _ => CursorValue::Blob(b.to_vec()),
    }
}

fn params_of(q: &PageQuery) -> Vec<Param<'_>> {
    q.bound.values.iter().map(Param::Value).chain(q.cursor.iter().map(Param::Cursor)).collect()
}

/// Whether an `EXPLAIN (FORMAT JSON)` plan sorts (a full Sort node, not an Incremental
/// Sort over an index that already orders a prefix).
fn has_sort(plan: &serde_json::Value) -> bool {
    match plan {
        serde_json::Value::Object(m) => {
            m.get("Node Type").and_then(|t| t.as_str()) == Some("Sort") || m.values().any(has_sort)
        }
        serde_json::Value::Array(a) => a.iter().any(has_sort),
        _ => false,
    }
}

impl Drop for PgDriver {
    fn drop(&mut self) {
        // Never hand a connection back to the pool inside our transaction. On a thread of
        // its own: this may run inside an async context, where the client cannot block.
        self.cancel_slot.clear();
        // A stopped connection's drop closes it, which also blocks.
        if let Some(mut conn) = self.conn.take() {
            if self.in_txn || conn.stopped {
                std::thread::spawn(move || {
                    if !conn.stopped {
                        let _ = conn.batch_execute("ROLLBACK");
                    }
                });
            }
        }
    }
}
