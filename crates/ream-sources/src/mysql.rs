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
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use mysql_async::consts::{ColumnFlags, ColumnType};
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts, OptsBuilder, Pool, Row, Statement, Value as My};

use ream_core::params::BoundParams;
use ream_core::spec::Strategy;
use ream_core::sql::{bind_into, enclose, BoundSql, Dialect};
use ream_core::types::{parse_type_name, type_label};
use ream_core::{CancelToken, Value};

use crate::keys::{group_sets, key_base_columns, proves_unique, NameCase};
use crate::server::{
    choose, hand_on, read_pages, stream_resuming, CancelSlot, Choice, Fail, Flow, OrderCol, Paged, Progress, Resumable,
    PAGE_BATCHES,
};
use crate::{
    CountMode, Cursor, CursorValue, ReadPlan, ReadRequest, ResumeLog, Snapshot, Source, SourceError, WithinGroups,
};

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

fn quote_ident(s: &str) -> String {
    format!("`{}`", s.replace('`', "``"))
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
enum Decode {
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

enum Builder {
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
fn my_type_for(dt: &DataType) -> String {
    match dt {
        DataType::Int64 => "SIGNED".into(),
        DataType::Float64 => "DOUBLE".into(),
        DataType::Date32 => "DATE".into(),
        DataType::Timestamp(..) => "DATETIME(6)".into(),
        DataType::Binary => "BINARY".into(),
        DataType::Decimal128(p, s) => format!("DECIMAL({p},{s})"),
        _ => "CHAR".into(),
    }
}

pub struct MySource {
    pool: Pool,
    display: String,
    conn: Option<Conn>,
    statements: HashMap<String, Statement>,
    in_txn: bool,
    snapshot: Snapshot,
    schema: SchemaRef,
    decoders: Vec<Decode>,
    exprs: Vec<String>,
    hidden: Vec<(String, String)>,
    order: Vec<OrderCol>,
    prefix_len: usize,
    key_cols: Vec<usize>,
    unique_order: bool,
    /// The key the request declared (empty: the primary key, or none).
    declared_key: Vec<String>,
    from_sql: Option<String>,
    table: Option<String>,
    joins: Vec<String>,
    filter: Option<String>,
    params: BoundParams,
    batch_size: usize,
    batch_bytes: usize,
    batch_limit: crate::BatchLimit,
    start_after: Option<Cursor>,
    retries: u32,
    count: CountMode,
    resumes: ResumeLog,
    plan: ReadPlan,
    cancel: CancelToken,
    /// The connection id in use, for `KILL QUERY` from another connection.
    /// The connection the stream reads on, for `KILL QUERY` (repeated while it is set).
    running: CancelSlot<u32>,
}

/// `KILL QUERY id` from another connection of the pool, in the background.
/// `KILL QUERY` on a connection of its own: callers run it in the background.
fn kill_query(pool: &Pool, id: u32) {
    runtime().block_on(async move {
        if let Ok(mut c) = pool.get_conn().await {
            let _ = c.query_drop(format!("KILL QUERY {id}")).await;
        }
    });
}

impl MySource {
    pub fn open(url: &str, display: &str, req: &ReadRequest, cancel: CancelToken) -> Result<Self, SourceError> {
        let display = crate::redact(display);
        let pool = pool_for(url, &display)?;
        let kill_pool = pool.clone();
        let mut src = MySource {
            pool,
            display,
            conn: None,
            statements: HashMap::new(),
            in_txn: false,
            snapshot: req.snapshot,
            schema: Arc::new(Schema::empty()),
            decoders: vec![],
            exprs: vec![],
            hidden: vec![],
            order: vec![],
            prefix_len: 0,
            key_cols: vec![],
            unique_order: false,
            declared_key: req.key.clone(),
            from_sql: req.sql.clone(),
            table: req.table.clone(),
            joins: req.joins.clone(),
            filter: req.filter.clone(),
            params: req.params.clone(),
            batch_size: req.batch_size,
            batch_bytes: req.batch_bytes,
            batch_limit: req.batch_limit.clone(),
            start_after: req.start_after.clone(),
            retries: req.retries,
            count: req.count,
            resumes: req.resumes.clone(),
            plan: ReadPlan { strategy: req.strategy, reason: String::new(), sql: String::new(), order: vec![] },
            running: CancelSlot::on(&cancel, move |id| kill_query(&kill_pool, id)),
            cancel,
        };
        src.connect().map_err(|e| match e {
            Fail::Lost(reason) => SourceError::Open { url: src.display.clone(), reason },
            Fail::Other(e) => e,
        })?;
        src.resolve_fields(req)?;
        src.resolve_order(req)?;
        src.choose_strategy(req.strategy, req.within_groups)?;
        Ok(src)
    }

    fn connect(&mut self) -> Result<(), Fail> {
        let snapshot = self.snapshot;
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

    fn prepare(&mut self, sql: &str) -> Result<Statement, Fail> {
        if let Some(s) = self.statements.get(sql) {
            return Ok(s.clone());
        }
        let conn = self.conn.as_mut().expect("connected");
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
                Err(Fail::Other(SourceError::Prepare { sql: sql.to_string(), message: m }))
            }
        }
    }

    fn prepare_now(&mut self, sql: &str) -> Result<Statement, SourceError> {
        self.prepare(sql).map_err(|e| match e {
            Fail::Lost(reason) => SourceError::Open { url: self.display.clone(), reason },
            Fail::Other(e) => e,
        })
    }

    fn bind_text(&self, sql: &str) -> BoundSql {
        let mut out = BoundSql::default();
        bind_into(&mut out, sql, &self.params, Dialect::Mysql);
        out
    }

    fn joins_sql(&self) -> String {
        self.joins.iter().map(|j| format!(" {j}")).collect()
    }

    fn source_clause(&self) -> String {
        match &self.from_sql {
            Some(sql) => format!("{} AS q", enclose(sql)),
            None => format!("{}{}", self.table.as_deref().unwrap_or(""), self.joins_sql()),
        }
    }

    fn select_sql(&self, names: &[String], hidden: &[(String, String)]) -> String {
        let mut cols: Vec<String> =
            names.iter().zip(&self.exprs).map(|(n, e)| format!("{e} AS {}", quote_ident(n))).collect();
        cols.extend(hidden.iter().map(|(e, a)| format!("{e} AS {}", quote_ident(a))));
        let mut sql = format!("SELECT {} FROM {}", cols.join(", "), self.source_clause());
        if let Some(f) = &self.filter {
            sql.push_str(&format!(" WHERE {}", enclose(f)));
        }
        sql
    }

    fn resolve_fields(&mut self, req: &ReadRequest) -> Result<(), SourceError> {
        let mut names = Vec::new();
        let probe;
        if let Some(sql) = &self.from_sql {
            probe = self.bind_text(&format!("SELECT * FROM {} AS q LIMIT 0", enclose(sql)));
            let stmt = self.prepare_now(&probe.sql)?;
            for c in stmt.columns().iter() {
                names.push(c.name_str().to_string());
                self.exprs.push(format!("q.{}", quote_ident(&c.name_str())));
            }
        } else if req.columns.is_empty() {
            let table = self.table.clone().unwrap_or_default();
            probe =
                BoundSql { sql: format!("SELECT {table}.* FROM {table}{} LIMIT 0", self.joins_sql()), values: vec![] };
            let stmt = self.prepare_now(&probe.sql)?;
            for c in stmt.columns().iter() {
                names.push(c.name_str().to_string());
                self.exprs.push(format!("{table}.{}", quote_ident(&c.name_str())));
            }
        } else {
            for (name, col) in &req.columns {
                names.push(name.clone());
                let expr = match col.declared_type() {
                    Some(t) => {
                        let dt = parse_type_name(t).map_err(SourceError::Plan)?;
                        format!("CAST(({}) AS {})", col.expr(), my_type_for(&dt))
                    }
                    None => col.expr().to_string(),
                };
                self.exprs.push(expr);
            }
            probe = self.bind_text(&format!("{} LIMIT 0", self.select_sql(&names, &[])));
        }
        let stmt = self.prepare_now(&probe.sql)?;
        let mut fields = Vec::new();
        for (c, name) in stmt.columns().iter().zip(&names) {
            let d = Decode::for_column(c).map_err(|reason| SourceError::Value {
                column: name.clone(),
                ty: format!("{:?}", c.column_type()),
                key: "the column's type".into(),
                message: reason,
            })?;
            fields.push(Field::new(name, d.data_type(), true));
            self.decoders.push(d);
        }
        self.schema = Arc::new(Schema::new(fields));
        Ok(())
    }

    fn field_index(&self, name: &str) -> Result<usize, SourceError> {
        self.schema.index_of(name).map_err(|_| SourceError::UnknownField {
            field: name.to_string(),
            known: self.schema.fields().iter().map(|f| f.name().clone()).collect(),
        })
    }

    /// Column names of the base table from the catalog.
    fn catalog(&mut self, sql: &str) -> Result<Vec<String>, SourceError> {
        let Some(table) = self.table.clone() else { return Ok(vec![]) };
        let conn = self.conn.as_mut().expect("connected");
        let rows: Vec<String> = runtime()
            .block_on(conn.exec(sql, (table,)))
            .map_err(|e| SourceError::Prepare { sql: sql.to_string(), message: message(&e) })?;
        Ok(rows)
    }

    /// Whether the catalogue proves `key` unique (see [`crate::keys`]).
    fn key_is_unique(&mut self, key: &[String]) -> Result<bool, SourceError> {
        let Some(table) = self.table.clone().filter(|_| self.from_sql.is_none()) else { return Ok(false) };
        let (case, joined) = (NameCase::Insensitive, !self.joins.is_empty());
        let cols = key_base_columns(key, |k| self.field_index(k), &self.exprs, &table, joined, case)?;
        let rows = self.catalog_pairs(
            "SELECT s.index_name, s.column_name FROM information_schema.statistics s \
             WHERE s.table_schema = DATABASE() AND s.table_name = ? AND s.non_unique = 0 \
               AND NOT EXISTS (SELECT 1 FROM information_schema.statistics e \
                 WHERE e.table_schema = s.table_schema AND e.table_name = s.table_name \
                   AND e.index_name = s.index_name AND (e.column_name IS NULL OR e.sub_part IS NOT NULL)) \
             ORDER BY s.index_name, s.seq_in_index",
        )?;
        Ok(proves_unique(&cols, &group_sets(rows, case)))
    }

    /// Catalogue rows of two text columns, with the base table as the one parameter.
    fn catalog_pairs(&mut self, sql: &str) -> Result<Vec<(String, String)>, SourceError> {
        let Some(table) = self.table.clone() else { return Ok(vec![]) };
        let conn = self.conn.as_mut().expect("connected");
        runtime()
            .block_on(conn.exec(sql, (table,)))
            .map_err(|e| SourceError::Prepare { sql: sql.to_string(), message: message(&e) })
    }

    fn resolve_order(&mut self, req: &ReadRequest) -> Result<(), SourceError> {
        let table = self.table.clone().unwrap_or_default();
        let not_null = self.catalog(
            "SELECT column_name FROM information_schema.columns \
             WHERE table_schema = DATABASE() AND table_name = ? AND is_nullable = 'NO'",
        )?;
        let base_not_null = |expr: &str| not_null.iter().any(|c| expr == format!("{table}.{}", quote_ident(c)));
        let mut order: Vec<OrderCol> = Vec::new();
        for name in &req.order_prefix {
            let i = self.field_index(name)?;
            if !order.iter().any(|o| &o.name == name) {
                let expr = self.exprs[i].clone();
                order.push(OrderCol { name: name.clone(), not_null: base_not_null(&expr), expr, select_index: i });
            }
        }
        let prefix_len = order.len();
        let mut key = req.key.clone();
        if key.is_empty() {
            key = self.catalog(
                "SELECT column_name FROM information_schema.statistics \
                 WHERE table_schema = DATABASE() AND table_name = ? AND index_name = 'PRIMARY' ORDER BY seq_in_index",
            )?;
        }
        for name in &key {
            let i = match self.schema.index_of(name) {
                Ok(i) => i,
                Err(_) if req.key.is_empty() => {
                    let expr = format!("{table}.{}", quote_ident(name));
                    let sql = format!("SELECT {expr} FROM {table}{} LIMIT 0", self.joins_sql());
                    let stmt = self.prepare_now(&sql)?;
                    let d = Decode::for_column(&stmt.columns()[0]).map_err(SourceError::Plan)?;
                    let idx = self.exprs.len() + self.hidden.len();
                    self.decoders.push(d);
                    self.hidden.push((expr, format!("__ream_key_{}", self.hidden.len())));
                    idx
                }
                Err(_) => return Err(self.field_index(name).unwrap_err()),
            };
            self.key_cols.push(i);
            if !order.iter().any(|o| &o.name == name) {
                let expr =
                    if i < self.exprs.len() { self.exprs[i].clone() } else { self.hidden.last().unwrap().0.clone() };
                order.push(OrderCol { name: name.clone(), expr, select_index: i, not_null: true });
            }
        }
        // The primary key is unique by definition; a declared key needs the catalogue's proof.
        self.unique_order = !self.key_cols.is_empty() && (req.key.is_empty() || self.key_is_unique(&req.key)?);
        self.prefix_len = prefix_len;
        self.plan.order = order.iter().map(|o| o.name.clone()).collect();
        self.order = order;
        Ok(())
    }

    fn choose_strategy(&mut self, asked: Strategy, within: WithinGroups) -> Result<(), SourceError> {
        let first = self.page_query(None, Some(self.page_rows()), None);
        let declared_key = self.declared_key.clone();
        let choice = Choice {
            asked,
            order: self.plan.order.join(", "),
            unique_order: self.unique_order,
            declared_key: &declared_key,
            snapshot: self.snapshot,
            nullable: &[],
            resuming: self.start_after.is_some(),
        };
        let (strategy, reason) = choose(choice, || self.order_needs_sort(&first))?;
        self.plan.strategy = strategy;
        self.plan.reason = reason;
        if strategy == Strategy::Cursor && within == WithinGroups::AnyOrder {
            self.order.truncate(self.prefix_len);
            self.plan.order = self.order.iter().map(|o| o.name.clone()).collect();
            self.unique_order = false;
        }
        let first = match strategy {
            Strategy::Keyset => self.page_query(self.start_after.as_ref(), Some(self.page_rows()), None),
            Strategy::Offset => self.page_query(None, Some(self.page_rows()), Some(0)),
            _ => self.page_query(self.start_after.as_ref(), None, None),
        };
        self.prepare_now(&first.sql)?;
        self.plan.sql = first.sql;
        Ok(())
    }

    fn order_needs_sort(&mut self, q: &Query) -> Result<bool, SourceError> {
        let sql = format!("EXPLAIN {}", q.sql);
        let params = q.params();
        let conn = self.conn.as_mut().expect("connected");
        let rows: Vec<Row> = runtime()
            .block_on(conn.exec(&sql, params))
            .map_err(|e| SourceError::Prepare { sql: sql.clone(), message: message(&e) })?;
        Ok(rows.iter().any(|r| {
            r.columns_ref()
                .iter()
                .position(|c| c.name_str() == "Extra")
                .and_then(|i| r.as_ref(i))
                .is_some_and(|v| matches!(v, My::Bytes(b) if String::from_utf8_lossy(b).contains("filesort")))
        }))
    }

    fn row_cursor(&self, row: &Row) -> Option<Cursor> {
        if self.order.is_empty() {
            return None;
        }
        Some(Cursor(self.order.iter().map(|o| my_cursor(row.as_ref(o.select_index))).collect()))
    }

    fn key_text(&self, row: &Row, index: u64) -> String {
        if self.key_cols.is_empty() {
            return format!("row {}", index + 1);
        }
        self.key_cols
            .iter()
            .map(|&k| {
                let name = self.order.iter().find(|o| o.select_index == k).map_or("key", |o| o.name.as_str());
                format!("{name}={}", my_cursor(row.as_ref(k)))
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// One row into the builders; returns its bytes (text and bytes by length, else 8).
    fn append_row(&self, builders: &mut [Builder], row: &Row, index: u64) -> Result<usize, SourceError> {
        let mut bytes = 0;
        for (i, b) in builders.iter_mut().enumerate() {
            let value = row.as_ref(i);
            bytes += match value {
                Some(My::Bytes(v)) => v.len().max(8),
                _ => 8,
            };
            if let Err(message) = self.decoders[i].append(b, value) {
                let field = self.schema.field(i);
                return Err(SourceError::Value {
                    column: field.name().clone(),
                    ty: type_label(field.data_type()),
                    key: self.key_text(row, index),
                    message,
                });
            }
        }
        // Every key column, proven unique or not: a NULL key names no row.
        {
            for &k in &self.key_cols {
                if matches!(row.as_ref(k), None | Some(My::NULL)) {
                    let name = self.order.iter().find(|o| o.select_index == k).map_or("?", |o| o.name.as_str());
                    return Err(SourceError::Value {
                        column: name.to_string(),
                        ty: "key".into(),
                        key: format!("row {}", index + 1),
                        message: "a key column is NULL, so the key does not name the row: choose a key without NULLs"
                            .into(),
                    });
                }
            }
        }
        Ok(bytes)
    }

    fn finish_batch(&self, builders: &mut [Builder]) -> Result<RecordBatch, SourceError> {
        let arrays = builders.iter_mut().map(|b| b.finish()).collect();
        RecordBatch::try_new(self.schema.clone(), arrays).map_err(|e| SourceError::Read {
            sql: self.plan.sql.clone(),
            cursor: String::new(),
            message: e.to_string(),
        })
    }

    fn read_fail(&self, sql: &str, at: &Progress, e: &mysql_async::Error) -> Fail {
        if self.cancel.is_cancelled() {
            return Fail::Other(SourceError::Cancelled);
        }
        if is_lost(e) {
            return Fail::Lost(message(e));
        }
        if matches!(e, mysql_async::Error::Server(s) if s.state.starts_with("22")) {
            return Fail::Other(SourceError::Rejected { sql: sql.to_string(), message: message(e) });
        }
        Fail::Other(SourceError::Read {
            sql: sql.to_string(),
            cursor: at.last.as_ref().map_or("(start)".to_string(), |c| c.to_string()),
            message: message(e),
        })
    }

    async fn read_rows(
        &self,
        conn: &mut Conn,
        stmt: &Statement,
        q: &Query,
        at: &mut Progress,
        emit: &mut dyn FnMut(RecordBatch, Option<&Cursor>) -> bool,
    ) -> Result<(usize, Flow), Fail> {
        let mut result = conn.exec_iter(stmt, q.params()).await.map_err(|e| self.read_fail(&q.sql, at, &e))?;
        let cap = self.batch_size.min(65_536);
        let mut builders: Vec<Builder> = self.decoders[..self.exprs.len()].iter().map(|d| d.builder(cap)).collect();
        let mut n = 0usize;
        let mut cut = crate::BatchCut::new(self.batch_size, self.batch_bytes, &self.batch_limit);
        let mut last: Option<Row> = None;
        loop {
            let row = match result.next().await {
                Ok(Some(row)) => row,
                Ok(None) => break,
                Err(e) => return Err(self.read_fail(&q.sql, at, &e)),
            };
            let bytes = self.append_row(&mut builders, &row, at.emitted + cut.pending() as u64)?;
            n += 1;
            if !cut.row(bytes) {
                last = Some(row);
                continue;
            }
            last = None;
            if self.cancel.is_cancelled() {
                return Err(Fail::Other(SourceError::Cancelled));
            }
            let cursor = self.row_cursor(&row);
            if !hand_on(self.finish_batch(&mut builders)?, cursor, at, emit) {
                return Ok((n, Flow::Stopped));
            }
        }
        if cut.pending() > 0 {
            let cursor = last.as_ref().and_then(|r| self.row_cursor(r));
            if !hand_on(self.finish_batch(&mut builders)?, cursor, at, emit) {
                return Ok((n, Flow::Stopped));
            }
        }
        Ok((n, Flow::Done))
    }
}

/// SQL with its positional values.
pub(crate) struct Query {
    sql: String,
    values: Vec<My>,
}

impl Query {
    fn params(&self) -> mysql_async::Params {
        if self.values.is_empty() {
            mysql_async::Params::Empty
        } else {
            mysql_async::Params::Positional(self.values.clone())
        }
    }
}

/// Rows strictly after `after`, NULLs first (MySQL's order): the lexicographic expansion
/// `(o1 > ?) OR (o1 = ? AND o2 > ?) …`, with `IS NULL` / `IS NOT NULL` for NULL cursor
/// values. A `?` cannot be reused, so values repeat in order.
fn keyset_predicate(order: &[OrderCol], after: &Cursor, q: &mut Query) {
    let mut terms = Vec::new();
    for i in 0..order.len() {
        let mut parts = Vec::new();
        for (o, v) in order.iter().zip(&after.0).take(i) {
            match v {
                CursorValue::Null => parts.push(format!("{} IS NULL", o.expr)),
                v => {
                    parts.push(format!("{} = ?", o.expr));
                    q.values.push(cursor_my(v));
                }
            }
        }
        match &after.0[i] {
            CursorValue::Null => parts.push(format!("{} IS NOT NULL", order[i].expr)),
            v => {
                parts.push(format!("{} > ?", order[i].expr));
                q.values.push(cursor_my(v));
            }
        }
        terms.push(format!("({})", parts.join(" AND ")));
    }
    q.sql.push_str(&format!("({})", terms.join(" OR ")));
}

impl Paged for MySource {
    type Query = Query;
    fn plan_strategy(&self) -> Strategy {
        self.plan.strategy
    }
    fn page_query(&self, after: Option<&Cursor>, limit: Option<usize>, offset: Option<u64>) -> Query {
        let names: Vec<String> = self.schema.fields().iter().map(|f| f.name().clone()).collect();
        let bound = self.bind_text(&self.select_sql(&names, &self.hidden));
        let mut q = Query { sql: bound.sql, values: bound.values.iter().map(my_value).collect() };
        if let Some(after) = after.filter(|_| !self.order.is_empty()) {
            q.sql.push_str(if self.filter.is_some() { " AND " } else { " WHERE " });
            keyset_predicate(&self.order, after, &mut q);
        }
        crate::order_and_page(&mut q.sql, self.order.iter().map(|o| o.expr.as_str()), limit, offset);
        q
    }
    fn page_rows(&self) -> usize {
        self.batch_size.saturating_mul(PAGE_BATCHES)
    }
    /// Run one statement, handing on a batch every `batch_size` rows and the rest at the
    /// end. Returns the rows read.
    fn run_statement(
        &mut self,
        q: &Query,
        at: &mut Progress,
        emit: &mut dyn FnMut(RecordBatch, Option<&Cursor>) -> bool,
    ) -> Result<(usize, Flow), Fail> {
        let stmt = self.prepare(&q.sql)?;
        let mut conn = self.conn.take().expect("connected");
        let result = runtime().block_on(self.read_rows(&mut conn, &stmt, q, at, emit));
        if let Ok((_, Flow::Stopped)) = &result {
            // Nobody wants the rest: stop the statement on the server, not just here.
            kill_query(&self.pool, conn.id());
        }
        self.conn = Some(conn);
        result
    }
}

impl Resumable for MySource {
    fn connected(&self) -> bool {
        self.conn.is_some()
    }
    fn connect(&mut self) -> Result<(), Fail> {
        MySource::connect(self)
    }
    fn read_from(
        &mut self,
        at: &mut Progress,
        emit: &mut dyn FnMut(RecordBatch, Option<&Cursor>) -> bool,
    ) -> Result<Flow, Fail> {
        read_pages(self, at, emit)
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
    fn unique_order(&self) -> bool {
        self.unique_order
    }
    fn strategy(&self) -> Strategy {
        self.plan.strategy
    }
    fn sql(&self) -> &str {
        &self.plan.sql
    }
    fn retries(&self) -> u32 {
        self.retries
    }
    fn cancel(&self) -> &CancelToken {
        &self.cancel
    }
    fn resumes(&self) -> &ResumeLog {
        &self.resumes
    }
}

impl Source for MySource {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn plan(&self) -> &ReadPlan {
        &self.plan
    }

    fn stream(&mut self, emit: &mut dyn FnMut(RecordBatch, Option<&Cursor>) -> bool) -> Result<(), SourceError> {
        let start = self.start_after.clone();
        stream_resuming(self, start, emit)
    }

    fn counter(&self) -> Option<Box<dyn FnOnce() -> Result<u64, SourceError> + Send>> {
        let pool = self.pool.clone();
        let cancel = self.cancel.clone();
        let q = self.page_query(None, None, None);
        let fail = |m: String| SourceError::Plan(format!("counting rows: {m}"));
        let exact = match self.count {
            CountMode::None => return None,
            CountMode::Exact => true,
            CountMode::Estimate | CountMode::Auto => false,
        };
        Some(Box::new(move || {
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
                let n = count_rows(&mut conn, &q, exact).await;
                slot.clear();
                n
            })
        }))
    }
}

/// The count for progress: `SELECT count(*)`, or the planner's estimate.
async fn count_rows(conn: &mut Conn, q: &Query, exact: bool) -> Result<u64, SourceError> {
    let fail = |m: String| SourceError::Plan(format!("counting rows: {m}"));
    if exact {
        let sql = format!("SELECT count(*) FROM {} AS c", enclose(&q.sql));
        let n: Option<u64> = conn.exec_first(sql, q.params()).await.map_err(|e| fail(message(&e)))?;
        return n.ok_or_else(|| fail("no count".into()));
    }
    // The planner's estimate: the rows EXPLAIN expects from the first table.
    let rows: Vec<Row> = conn.exec(format!("EXPLAIN {}", q.sql), q.params()).await.map_err(|e| fail(message(&e)))?;
    let first = rows.first().ok_or_else(|| fail("EXPLAIN gave no rows".into()))?;
    let i = first.columns_ref().iter().position(|c| c.name_str() == "rows");
    match i.and_then(|i| first.as_ref(i)) {
        Some(My::Int(n)) => Ok(*n as u64),
        Some(My::UInt(n)) => Ok(*n),
        Some(My::Bytes(b)) => String::from_utf8_lossy(b).parse().map_err(|_| fail("no estimate".into())),
        _ => Err(fail("EXPLAIN gave no row estimate".into())),
    }
}

impl Drop for MySource {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyset_predicates_repeat_values_and_put_nulls_first() {
        let col = |n: &str| OrderCol { name: n.into(), expr: n.into(), select_index: 0, not_null: false };
        let order = [col("g"), col("k")];
        let mut q = Query { sql: String::new(), values: vec![] };
        keyset_predicate(&order, &Cursor(vec![CursorValue::Text("x".into()), CursorValue::Int(2)]), &mut q);
        assert_eq!(q.sql, "((g > ?) OR (g = ? AND k > ?))");
        assert_eq!(q.values.len(), 3);
        let mut q = Query { sql: String::new(), values: vec![] };
        keyset_predicate(&order, &Cursor(vec![CursorValue::Null, CursorValue::Int(2)]), &mut q);
        assert_eq!(q.sql, "((g IS NOT NULL) OR (g IS NULL AND k > ?))");
    }
}
