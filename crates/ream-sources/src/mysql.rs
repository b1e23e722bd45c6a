//! MySQL and MariaDB: `mysql_async` with a pool per URL, the binary protocol, rows from an
//! unbuffered result (the socket is read as rows are taken), one
//! `START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY` per run, and resume from the
//! last emitted cursor when the connection is lost.
//!
//! Strategies are those of PostgreSQL: `auto` streams one statement in key order under
//! the run's snapshot, or with a fresh snapshot per statement pages by key where
//! `EXPLAIN` shows no filesort. NULLs sort first, as in SQLite; the keyset predicate is
//! the lexicographic expansion (`a > ? OR (a = ? AND b > ?)`), which both MySQL and
//! MariaDB turn into index ranges. The default key of a table is its primary key.
//!
//! Sessions read in UTC (`time_zone = '+00:00'`), so TIMESTAMP values are exact instants.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use arrow_array::builder::*;
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, TimeUnit};
use mysql_async::consts::{ColumnFlags, ColumnType};
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts, OptsBuilder, Pool, Row, Statement, Value as My};

use ream_core::{CancelToken, Value};

use crate::keys::NameCase;
use crate::query::{PageQuery, SqlDialect, MYSQL};
use crate::server::{CancelSlot, Fail, Flow, Progress};
use crate::server_source::{read_failure, Assembler, Catalogue, Column, CountQuery, Described, Driver, ServerSource};
use crate::{Counter, Cursor, CursorValue, ReadRequest, Snapshot, SourceError};

/// The runtime the pools live on (they keep background tasks). Sources block on it
/// from their own threads, one statement's rows per `block_on`.
fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("ream-mysql")
            .enable_all()
            .build()
            .expect("a tokio runtime for MySQL connections")
    })
}

fn pool_for(url: &str, display: &str) -> Result<Pool, SourceError> {
    static POOLS: OnceLock<Mutex<HashMap<String, Pool>>> = OnceLock::new();
    let mut pools = POOLS.get_or_init(Default::default).lock().unwrap_or_else(|e| e.into_inner());
    if let Some(p) = pools.get(url) {
        return Ok(p.clone());
    }
    let opts = Opts::from_url(&url.replacen("mariadb://", "mysql://", 1))
        .map_err(|e| SourceError::Url { url: display.to_string(), reason: e.to_string() })?;
    let opts = OptsBuilder::from_opts(opts).init(vec!["SET time_zone = '+00:00'"]).prefer_socket(false);
    let _guard = runtime().enter();
    let pool = Pool::new(opts);
    pools.insert(url.to_string(), pool.clone());
    Ok(pool)
}

fn is_lost(e: &mysql_async::Error) -> bool {
    match e {
        mysql_async::Error::Io(_) => true,
        mysql_async::Error::Driver(mysql_async::DriverError::ConnectionClosed) => true,
        // Connection killed, server gone away, lost connection, shutdown in progress.
        mysql_async::Error::Server(s) => matches!(s.code, 1927 | 2006 | 2013 | 1053),
        _ => false,
    }
}

fn message(e: &mysql_async::Error) -> String {
    match e {
        mysql_async::Error::Server(s) => format!("{} (error {})", s.message, s.code),
        other => other.to_string(),
    }
}

/// A spec parameter as MySQL binds it.
fn my_value(v: &Value) -> My {
    match v {
        Value::Null => My::NULL,
        Value::Bool(b) => My::Int(*b as i64),
        Value::Int(i) => My::Int(*i),
        Value::Float(f) => My::Double(*f),
        Value::Binary(b) => My::Bytes(b.to_vec()),
        // Decimals, dates and timestamps as text: MySQL converts them to the column's type
        // exactly as it would a literal.
        other => My::Bytes(
            match other {
                Value::Timestamp(us) => chrono::DateTime::from_timestamp_micros(*us)
                    .map(|t| t.naive_utc().format("%Y-%m-%d %H:%M:%S%.f").to_string())
                    .unwrap_or_default(),
                o => o.to_string(),
            }
            .into_bytes(),
        ),
    }
}

fn cursor_my(c: &CursorValue) -> My {
    match c {
        CursorValue::Null => My::NULL,
        CursorValue::Int(i) => My::Int(*i),
        CursorValue::Real(f) => My::Double(*f),
        CursorValue::Text(s) => My::Bytes(s.clone().into_bytes()),
        CursorValue::Blob(b) => My::Bytes(b.clone()),
    }
}

/// A MySQL value as a cursor value, as it binds back.
fn my_cursor(v: Option<&My>) -> CursorValue {
    match v {
        None | Some(My::NULL) => CursorValue::Null,
        Some(My::Int(i)) => CursorValue::Int(*i),
        Some(My::UInt(u)) => i64::try_from(*u).map_or_else(|_| CursorValue::Text(u.to_string()), CursorValue::Int),
        Some(My::Float(f)) => CursorValue::Real(*f as f64),
        Some(My::Double(f)) => CursorValue::Real(*f),
        Some(My::Bytes(b)) => match std::str::from_utf8(b) {
            Ok(s) => CursorValue::Text(s.to_string()),
            Err(_) => CursorValue::Blob(b.clone()),
        },
        Some(v @ (My::Date(..) | My::Time(..))) => CursorValue::Text(v.as_sql(true).trim_matches('\'').to_string()),
    }
}

/// How one column's values decode.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Decode {
    Bool,
    Int,
    /// BIGINT UNSIGNED: up to 20 digits, as decimal(20,0).
    UInt64,
    Float,
    Double,
    Decimal(u8, i8),
    Text,
    Binary,
    Date,
    DateTime,
    /// TIMESTAMP, read in UTC.
    Timestamp,
    /// TIME: an elapsed time (−838:59:59 to 838:59:59).
    Time,
}

impl Decode {
    fn for_column(c: &mysql_async::Column) -> Result<Decode, String> {
        let unsigned = c.flags().contains(ColumnFlags::UNSIGNED_FLAG);
        let binary = c.character_set() == 63;
        Ok(match c.column_type() {
            ColumnType::MYSQL_TYPE_TINY if c.column_length() == 1 => Decode::Bool,
            ColumnType::MYSQL_TYPE_LONGLONG if unsigned => Decode::UInt64,
            ColumnType::MYSQL_TYPE_TINY
            | ColumnType::MYSQL_TYPE_SHORT
            | ColumnType::MYSQL_TYPE_INT24
            | ColumnType::MYSQL_TYPE_LONG
            | ColumnType::MYSQL_TYPE_LONGLONG
            | ColumnType::MYSQL_TYPE_YEAR => Decode::Int,
            ColumnType::MYSQL_TYPE_FLOAT => Decode::Float,
            ColumnType::MYSQL_TYPE_DOUBLE => Decode::Double,
            ColumnType::MYSQL_TYPE_NEWDECIMAL | ColumnType::MYSQL_TYPE_DECIMAL => {
                let s = c.decimals().min(38);
                // The display length counts the point and the sign.
                let p = c.column_length() as i64 - (s > 0) as i64 - (!unsigned) as i64;
                Decode::Decimal(p.clamp(1, 38) as u8, s as i8)
            }
            ColumnType::MYSQL_TYPE_DATE | ColumnType::MYSQL_TYPE_NEWDATE => Decode::Date,
            ColumnType::MYSQL_TYPE_DATETIME | ColumnType::MYSQL_TYPE_DATETIME2 => Decode::DateTime,
            ColumnType::MYSQL_TYPE_TIMESTAMP | ColumnType::MYSQL_TYPE_TIMESTAMP2 => Decode::Timestamp,
            ColumnType::MYSQL_TYPE_TIME | ColumnType::MYSQL_TYPE_TIME2 => Decode::Time,
            ColumnType::MYSQL_TYPE_JSON => Decode::Text,
            ColumnType::MYSQL_TYPE_VARCHAR
            | ColumnType::MYSQL_TYPE_VAR_STRING
            | ColumnType::MYSQL_TYPE_STRING
            | ColumnType::MYSQL_TYPE_ENUM
            | ColumnType::MYSQL_TYPE_SET
            | ColumnType::MYSQL_TYPE_TINY_BLOB
            | ColumnType::MYSQL_TYPE_MEDIUM_BLOB
            | ColumnType::MYSQL_TYPE_LONG_BLOB
            | ColumnType::MYSQL_TYPE_BLOB => {
                if binary {
                    Decode::Binary
                } else {
                    Decode::Text
                }
            }
            other => {
                return Err(format!(
                    "type {other:?} is not read yet: CAST it in the SQL (e.g. CAST(x AS CHAR) or HEX(x))"
                ))
            }
        })
    }

    fn data_type(&self) -> DataType {
        match self {
            Decode::Bool => DataType::Boolean,
            Decode::Int => DataType::Int64,
            Decode::UInt64 => DataType::Decimal128(20, 0),
            Decode::Float | Decode::Double => DataType::Float64,
            Decode::Decimal(p, s) => DataType::Decimal128(*p, *s),
            Decode::Text => DataType::Utf8,
            Decode::Binary => DataType::Binary,
            Decode::Date => DataType::Date32,
            Decode::DateTime => DataType::Timestamp(TimeUnit::Microsecond, None),
            Decode::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into())),
            Decode::Time => DataType::Duration(TimeUnit::Microsecond),
        }
    }

    fn builder(&self, cap: usize) -> Builder {
        match self.data_type() {
            DataType::Boolean => Builder::Bool(BooleanBuilder::with_capacity(cap)),
            DataType::Int64 => Builder::Int(Int64Builder::with_capacity(cap)),
            DataType::Float64 => Builder::Float(Float64Builder::with_capacity(cap)),
            dt @ DataType::Decimal128(..) => Builder::Decimal(Decimal128Builder::with_capacity(cap).with_data_type(dt)),
            DataType::Binary => Builder::Binary(BinaryBuilder::with_capacity(cap, cap * 16)),
            DataType::Date32 => Builder::Date(Date32Builder::with_capacity(cap)),
            DataType::Timestamp(_, tz) => {
                Builder::Timestamp(TimestampMicrosecondBuilder::with_capacity(cap).with_timezone_opt(tz))
            }
            DataType::Duration(_) => Builder::Duration(DurationMicrosecondBuilder::with_capacity(cap)),
            _ => Builder::Text(StringBuilder::with_capacity(cap, cap * 16)),
        }
    }

    #[inline]
    fn append(&self, b: &mut Builder, v: Option<&My>) -> Result<(), String> {
        let v = match v {
            None | Some(My::NULL) => {
                b.append_null();
                return Ok(());
            }
            Some(v) => v,
        };
        match (self, b, v) {
            (Decode::Bool, Builder::Bool(b), My::Int(0)) => b.append_value(false),
            (Decode::Bool, Builder::Bool(b), My::Int(1)) => b.append_value(true),
            (Decode::Bool, Builder::Bool(_), My::Int(i)) => {
                return Err(format!("{i} in a TINYINT(1) column is not a boolean (0 or 1)"))
            }
            (Decode::Int, Builder::Int(b), My::Int(i)) => b.append_value(*i),
            (Decode::Int, Builder::Int(b), My::UInt(u)) => {
                b.append_value(i64::try_from(*u).map_err(|_| format!("{u} does not fit a 64-bit integer"))?)
            }
            (Decode::UInt64, Builder::Decimal(b), My::UInt(u)) => b.append_value(*u as i128),
            (Decode::UInt64, Builder::Decimal(b), My::Int(i)) => b.append_value(*i as i128),
            (Decode::Float, Builder::Float(b), My::Float(f)) => b.append_value(widen_f32(*f)),
            (Decode::Double, Builder::Float(b), My::Double(f)) => b.append_value(*f),
            (Decode::Float, Builder::Float(b), My::Double(f)) => b.append_value(*f),
            (Decode::Decimal(p, s), Builder::Decimal(b), My::Bytes(t)) => {
                let text = std::str::from_utf8(t).map_err(|_| "a decimal that is not text".to_string())?;
                let units = match ream_core::params::parse_decimal(text) {
                    Some(Value::Decimal { units, scale }) if scale <= *s => {
                        units.checked_mul(10i128.pow((*s - scale) as u32))
                    }
                    Some(Value::Int(i)) => (i as i128).checked_mul(10i128.pow(*s as u32)),
                    _ => None,
                }
                .filter(|u| u.unsigned_abs() < 10u128.pow(*p as u32))
                .ok_or_else(|| format!("{text} does not fit decimal({p},{s})"))?;
                b.append_value(units)
            }
            (Decode::Text, Builder::Text(b), My::Bytes(t)) => {
                b.append_value(std::str::from_utf8(t).map_err(|_| "text that is not valid UTF-8".to_string())?)
            }
            (Decode::Binary, Builder::Binary(b), My::Bytes(t)) => b.append_value(t),
            (Decode::Date, Builder::Date(b), My::Date(y, m, d, ..)) => b.append_value(days(*y, *m, *d)?),
            (Decode::DateTime | Decode::Timestamp, Builder::Timestamp(b), My::Date(y, mo, d, h, mi, s, us)) => {
                let day = days(*y, *mo, *d)? as i64;
                let secs = day * 86_400 + *h as i64 * 3600 + *mi as i64 * 60 + *s as i64;
                b.append_value(secs * 1_000_000 + *us as i64)
            }
            (Decode::Time, Builder::Duration(b), My::Time(neg, d, h, mi, s, us)) => {
                let micros =
                    ((*d as i64 * 24 + *h as i64) * 3600 + *mi as i64 * 60 + *s as i64) * 1_000_000 + *us as i64;
                b.append_value(if *neg { -micros } else { micros })
            }
            (d, _, v) => return Err(format!("{v:?} in a column read as {d:?}")),
        }
        Ok(())
    }
}

fn days(y: u16, m: u8, d: u8) -> Result<i32, String> {
    chrono::NaiveDate::from_ymd_opt(y as i32, m as u32, d as u32)
        .map(ream_core::value::days_from_date)
        .ok_or_else(|| format!("{y:04}-{m:02}-{d:02} is not a date ream can hold (zero dates are not dates)"))
}

fn widen_f32(f: f32) -> f64 {
    if !f.is_finite() {
        return f as f64;
    }
    f.to_string().parse::<f64>().unwrap_or(f as f64)
}

pub(crate) enum Builder {
    Bool(BooleanBuilder),
    Int(Int64Builder),
    Float(Float64Builder),
    Decimal(Decimal128Builder),
    Text(StringBuilder),
    Binary(BinaryBuilder),
    Date(Date32Builder),
    Timestamp(TimestampMicrosecondBuilder),
    Duration(DurationMicrosecondBuilder),
}

impl Builder {
    fn append_null(&mut self) {
        match self {
            Builder::Bool(b) => b.append_null(),
            Builder::Int(b) => b.append_null(),
            Builder::Float(b) => b.append_null(),
            Builder::Decimal(b) => b.append_null(),
            Builder::Text(b) => b.append_null(),
            Builder::Binary(b) => b.append_null(),
            Builder::Date(b) => b.append_null(),
            Builder::Timestamp(b) => b.append_null(),
            Builder::Duration(b) => b.append_null(),
        }
    }
    fn finish(&mut self) -> ArrayRef {
        match self {
            Builder::Bool(b) => Arc::new(b.finish()),
            Builder::Int(b) => Arc::new(b.finish()),
            Builder::Float(b) => Arc::new(b.finish()),
            Builder::Decimal(b) => Arc::new(b.finish()),
            Builder::Text(b) => Arc::new(b.finish()),
            Builder::Binary(b) => Arc::new(b.finish()),
            Builder::Date(b) => Arc::new(b.finish()),
            Builder::Timestamp(b) => Arc::new(b.finish()),
            Builder::Duration(b) => Arc::new(b.finish()),
        }
    }
}

/// The MySQL type a spec's declared column type casts to.
/// `KILL QUERY` on a connection of its own: callers run it in the background.
fn kill_query(pool: &Pool, id: u32) {
    runtime().block_on(async move {
        if let Ok(mut c) = pool.get_conn().await {
            let _ = c.query_drop(format!("KILL QUERY {id}")).await;
        }
    });
}

/// The MySQL and MariaDB driver of a [`ServerSource`].
pub(crate) struct MyDriver {
    pool: Pool,
    display: String,
    conn: Option<Conn>,
    statements: HashMap<String, Statement>,
    in_txn: bool,
    cancel: CancelToken,
    /// The connection the stream reads on, for `KILL QUERY` (repeated while it is set).
    running: CancelSlot<u32>,
}

/// Connect, start the snapshot, resolve fields and types, pick the strategy. Nothing is
/// streamed yet.
pub(crate) fn open(
    url: &str,
    display: &str,
    req: &ReadRequest,
    cancel: CancelToken,
) -> Result<ServerSource<MyDriver>, SourceError> {
    let display = crate::redact(display);
    let pool = pool_for(url, &display)?;
    let kill_pool = pool.clone();
    let driver = MyDriver {
        pool,
        display,
        conn: None,
        statements: HashMap::new(),
        in_txn: false,
        running: CancelSlot::on(&cancel, move |id| kill_query(&kill_pool, id)),
        cancel: cancel.clone(),
    };
    ServerSource::open(driver, req, cancel)
}

impl Column for Decode {
    type Row = Row;
    type Builder = Builder;
    fn data_type(&self) -> DataType {
        Decode::data_type(self)
    }
    fn builder(&self, capacity: usize) -> Builder {
        Decode::builder(self, capacity)
    }
    /// Text and bytes count by their length, other values as 8.
    #[inline]
    fn append(&self, b: &mut Builder, row: &Row, i: usize) -> Result<usize, String> {
        let value = row.as_ref(i);
        Decode::append(self, b, value)?;
        Ok(match value {
            Some(My::Bytes(v)) => v.len().max(8),
            _ => 8,
        })
    }
    fn finish(b: &mut Builder) -> ArrayRef {
        b.finish()
    }
    fn is_null(row: &Row, i: usize) -> bool {
        matches!(row.as_ref(i), None | Some(My::NULL))
    }
    fn cursor_value(&self, row: &Row, i: usize) -> CursorValue {
        my_cursor(row.as_ref(i))
    }
}

/// The statement's values: the spec's parameters, then the cursor's.
fn params_of(q: &PageQuery) -> mysql_async::Params {
    if q.bound.values.is_empty() && q.cursor.is_empty() {
        return mysql_async::Params::Empty;
    }
    mysql_async::Params::Positional(q.bound.values.iter().map(my_value).chain(q.cursor.iter().map(cursor_my)).collect())
}

/// A read that failed, as the resume loop sees it.
fn read_fail(cancel: &CancelToken, sql: &str, at: &Progress, e: &mysql_async::Error) -> Fail {
    let rejected = matches!(e, mysql_async::Error::Server(s) if s.state.starts_with("22"));
    read_failure(cancel, sql, at, is_lost(e), rejected, message(e))
}

/// A statement asked of a driver whose connection was lost: the resume loop reconnects.
fn not_connected() -> Fail {
    Fail::Lost("not connected".into())
}

impl MyDriver {
    fn prepare(&mut self, sql: &str) -> Result<Statement, Fail> {
        if let Some(s) = self.statements.get(sql) {
            return Ok(s.clone());
        }
        let conn = self.conn.as_mut().ok_or_else(not_connected)?;
        match runtime().block_on(conn.prep(sql)) {
            Ok(stmt) => {
                self.statements.insert(sql.to_string(), stmt.clone());
                Ok(stmt)
            }
            Err(e) if is_lost(&e) => Err(Fail::Lost(message(&e))),
            Err(e) => {
                let mut m = message(&e);
                if m.contains("doesn't exist") {
                    m.push_str(&format!(" (in {})", self.display));
                }
                Err(Fail::Other(SourceError::Prepare { sql: sql.to_string(), message: m, at: None }))
            }
        }
    }

    fn client(&mut self) -> Result<&mut Conn, SourceError> {
        self.conn.as_mut().ok_or_else(|| SourceError::Plan("no connection to the database".into()))
    }

    /// The rows of `sql` with `q`'s parameters, all at once (a plan, or a few numbers).
    fn rows_of(&mut self, sql: &str, q: &PageQuery) -> Result<Vec<Row>, SourceError> {
        let conn = self.client()?;
        runtime().block_on(conn.exec(sql, params_of(q))).map_err(|e| SourceError::Prepare {
            sql: sql.to_string(),
            message: message(&e),
            at: None,
        })
    }
}

/// Rows of `result` into `rows` until they end or the consumer stops.
async fn take_rows(
    result: &mut mysql_async::QueryResult<'_, '_, mysql_async::BinaryProtocol>,
    cancel: &CancelToken,
    rows: &mut Assembler<'_, Decode>,
    at: &mut Progress,
    emit: &mut dyn FnMut(RecordBatch, Option<&Cursor>) -> bool,
) -> Result<Flow, Fail> {
    let sql = rows.sql().to_string();
    loop {
        match result.next().await {
            Ok(Some(row)) => {
                if let Some(flow) = rows.push(row, at, emit)? {
                    return Ok(flow);
                }
            }
            Ok(None) => return rows.end(at, emit),
            Err(e) => return Err(read_fail(cancel, &sql, at, &e)),
        }
    }
}

impl Driver for MyDriver {
    type Column = Decode;
    const DIALECT: &'static SqlDialect = &MYSQL;
    const CATALOGUE: Catalogue = Catalogue {
        not_null: "SELECT column_name FROM information_schema.columns \
                   WHERE table_schema = DATABASE() AND table_name = ? AND is_nullable = 'NO'",
        primary_key: "SELECT column_name FROM information_schema.statistics \
                      WHERE table_schema = DATABASE() AND table_name = ? AND index_name = 'PRIMARY' \
                      ORDER BY seq_in_index",
        unique_indexes: "SELECT s.index_name, s.column_name FROM information_schema.statistics s \
                         WHERE s.table_schema = DATABASE() AND s.table_name = ? AND s.non_unique = 0 \
                           AND NOT EXISTS (SELECT 1 FROM information_schema.statistics e \
                             WHERE e.table_schema = s.table_schema AND e.table_name = s.table_name \
                               AND e.index_name = s.index_name AND (e.column_name IS NULL OR e.sub_part IS NOT NULL)) \
                         ORDER BY s.index_name, s.seq_in_index",
        case: NameCase::Insensitive,
    };

    fn display(&self) -> &str {
        &self.display
    }

    fn connected(&self) -> bool {
        self.conn.is_some()
    }

    fn connect(&mut self, snapshot: Snapshot) -> Result<(), Fail> {
        let pool = self.pool.clone();
        let conn = runtime().block_on(async move {
            let mut conn = pool.get_conn().await.map_err(|e| Fail::Lost(message(&e)))?;
            // Every transaction read-only, each statement's own under `--no-snapshot` too:
            // a SELECT that calls a function which writes fails instead of writing.
            conn.query_drop("SET SESSION TRANSACTION READ ONLY").await.map_err(|e| Fail::Lost(message(&e)))?;
            if snapshot == Snapshot::Run {
                conn.query_drop("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                    .await
                    .map_err(|e| Fail::Lost(message(&e)))?;
                conn.query_drop("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
                    .await
                    .map_err(|e| Fail::Lost(message(&e)))?;
            }
            Ok::<Conn, Fail>(conn)
        })?;
        self.running.set(conn.id());
        self.in_txn = snapshot == Snapshot::Run;
        self.statements.clear();
        self.conn = Some(conn);
        Ok(())
    }

    fn describe(&mut self, sql: &str) -> Result<Vec<Described<Decode>>, Fail> {
        let stmt = self.prepare(sql)?;
        Ok(stmt
            .columns()
            .iter()
            .map(|c| Described {
                name: c.name_str().to_string(),
                column: Decode::for_column(c),
                ty: format!("{:?}", c.column_type()),
            })
            .collect())
    }

    fn catalogue(&mut self, sql: &str, table: &str) -> Result<Vec<Vec<String>>, SourceError> {
        let conn = self.client()?;
        let rows: Vec<Row> = runtime().block_on(conn.exec(sql, (table,))).map_err(|e| SourceError::Prepare {
            sql: sql.to_string(),
            message: message(&e),
            at: None,
        })?;
        Ok(rows
            .iter()
            .map(|r| (0..r.len()).map(|i| r.get::<Option<String>, _>(i).flatten().unwrap_or_default()).collect())
            .collect())
    }

    fn ints(&mut self, q: &PageQuery) -> Result<Vec<Vec<Option<i64>>>, SourceError> {
        let rows = self.rows_of(&q.bound.sql, q)?;
        Ok(rows.iter().map(|r| (0..r.len()).map(|i| r.get::<Option<i64>, _>(i).flatten()).collect()).collect())
    }

    fn needs_sort(&mut self, q: &PageQuery) -> Result<bool, SourceError> {
        let rows = self.rows_of(&format!("EXPLAIN {}", q.bound.sql), q)?;
        Ok(rows.iter().any(|r| {
            r.columns_ref()
                .iter()
                .position(|c| c.name_str() == "Extra")
                .and_then(|i| r.as_ref(i))
                .is_some_and(|v| matches!(v, My::Bytes(b) if String::from_utf8_lossy(b).contains("filesort")))
        }))
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
        let cancel = &self.cancel;
        let flow = runtime().block_on(async {
            let mut result =
                conn.exec_iter(&stmt, params_of(q)).await.map_err(|e| read_fail(cancel, &q.bound.sql, at, &e))?;
            take_rows(&mut result, cancel, rows, at, emit).await
        })?;
        if let Flow::Stopped = flow {
            // Nobody wants the rest: stop the statement on the server, not just here.
            kill_query(&self.pool, conn.id());
        }
        Ok(flow)
    }

    fn release(&mut self) {
        self.statements.clear();
        if let Some(mut conn) = self.conn.take() {
            let in_txn = self.in_txn;
            // Drains what is left of a stopped result (a cancel stays armed meanwhile),
            // ends the transaction, and gives the connection back to the pool (or drops
            // it, when broken or when a repeated KILL hit the ROLLBACK).
            let running = &self.running;
            runtime().block_on(async move {
                let rolled_back = !in_txn || conn.query_drop("ROLLBACK").await.is_ok();
                running.clear();
                if !rolled_back {
                    let _ = conn.disconnect().await;
                }
            });
        }
        self.running.clear();
        self.in_txn = false;
    }

    fn counter(&self, q: CountQuery, cancel: &CancelToken) -> Counter {
        let (pool, cancel) = (self.pool.clone(), cancel.clone());
        let fail = |m: String| SourceError::Plan(format!("counting rows: {m}"));
        Box::new(move || {
            runtime().block_on(async move {
                let mut conn = pool.get_conn().await.map_err(|e| fail(message(&e)))?;
                // Registered with the run's cancel while it counts: a cancelled run's
                // count is KILLed too (cleared before the connection goes back).
                let kill_pool = pool.clone();
                let slot = CancelSlot::on(&cancel, move |id| kill_query(&kill_pool, id));
                slot.set(conn.id());
                if cancel.is_cancelled() {
                    return Err(SourceError::Cancelled);
                }
                let n = count_rows(&mut conn, &q).await;
                slot.clear();
                n
            })
        })
    }
}

/// The count for progress: the one number `q` selects, or the planner's estimate.
async fn count_rows(conn: &mut Conn, q: &CountQuery) -> Result<u64, SourceError> {
    let fail = |m: String| SourceError::Plan(format!("counting rows: {m}"));
    let q = match q {
        CountQuery::Exact(q) => {
            let n: Option<u64> =
                conn.exec_first(q.bound.sql.as_str(), params_of(q)).await.map_err(|e| fail(message(&e)))?;
            return n.ok_or_else(|| fail("no count".into()));
        }
        CountQuery::Estimate(q) => q,
    };
    // The planner's estimate: the rows EXPLAIN expects from the first table.
    let rows: Vec<Row> =
        conn.exec(format!("EXPLAIN {}", q.bound.sql), params_of(q)).await.map_err(|e| fail(message(&e)))?;
    let first = rows.first().ok_or_else(|| fail("EXPLAIN gave no rows".into()))?;
    let i = first.columns_ref().iter().position(|c| c.name_str() == "rows");
    match i.and_then(|i| first.as_ref(i)) {
        Some(My::Int(n)) => Ok(*n as u64),
        Some(My::UInt(n)) => Ok(*n),
        Some(My::Bytes(b)) => String::from_utf8_lossy(b).parse().map_err(|_| fail("no estimate".into())),
        _ => Err(fail("EXPLAIN gave no row estimate".into())),
    }
}

impl Drop for MyDriver {
    fn drop(&mut self) {
        self.running.clear();
        if let Some(mut conn) = self.conn.take() {
            let in_txn = self.in_txn;
            // Spawned: this may run inside an async context, where blocking is not allowed.
            runtime().spawn(async move {
                if in_txn {
                    let _ = conn.query_drop("ROLLBACK").await;
                }
            });
        }
    }
}
