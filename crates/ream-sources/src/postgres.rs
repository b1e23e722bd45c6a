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
use arrow_schema::{Field, Schema, SchemaRef};
use bytes::BytesMut;
use postgres::error::SqlState;
use postgres::fallible_iterator::FallibleIterator;
use postgres::types::{Format, FromSql, IsNull, ToSql, Type};
use postgres::{Client, NoTls, Row, Statement};
use r2d2_postgres::PostgresConnectionManager;

use ream_core::params::BoundParams;
use ream_core::spec::Strategy;
use ream_core::sql::{bind_into, enclose, BoundSql, Dialect};
use ream_core::types::{parse_type_name, type_label};
use ream_core::{CancelToken, Value};

use crate::keys::{group_sets, key_base_columns, proves_unique, NameCase};
use crate::pgtypes::{Decode, PgBuilder};
use crate::server::{
    choose, hand_on, read_pages, stream_resuming, CancelSlot, Choice, Fail, Flow, OrderCol, Paged, Progress, Resumable,
    PAGE_BATCHES,
};
use crate::{
    CountMode, Cursor, CursorValue, ReadPlan, ReadRequest, ResumeLog, Snapshot, Source, SourceError, WithinGroups,
};

type Manager = PostgresConnectionManager<NoTls>;
type Pool = r2d2::Pool<Manager>;
type Conn = r2d2::PooledConnection<Manager>;

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
        .build_unchecked(PostgresConnectionManager::new(config, NoTls));
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

fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// The PostgreSQL type a spec's declared column type casts to.
fn pg_type_for(dt: &arrow_schema::DataType) -> String {
    use arrow_schema::DataType as D;
    match dt {
        D::Int64 => "bigint".into(),
        D::Float64 => "double precision".into(),
        D::Boolean => "boolean".into(),
        D::Date32 => "date".into(),
        D::Timestamp(..) => "timestamp".into(),
        D::Binary => "bytea".into(),
        D::Decimal128(p, s) => format!("numeric({p},{s})"),
        _ => "text".into(),
    }
}

pub struct PgSource {
    pool: Pool,
    display: String,
    conn: Option<Conn>,
    /// Statements prepared on `conn` (keyset pages repeat theirs).
    statements: HashMap<String, Statement>,
    in_txn: bool,
    snapshot: Snapshot,
    exported_snapshot: Option<String>,
    schema: SchemaRef,
    /// One per select column: the visible fields, then the hidden ones.
    decoders: Vec<Decode>,
    exprs: Vec<String>,
    hidden: Vec<(String, String)>,
    order: Vec<OrderCol>,
    prefix_len: usize,
    key_cols: Vec<usize>,
    /// Whether the order is unique, so a cursor names one position (resume is possible).
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
    /// The server-side cancel handle of the connection in use, while a run uses it.
    /// The connection the stream reads on, for a cancel (repeated while it is set).
    cancel_slot: CancelSlot<postgres::CancelToken>,
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
        None => e.to_string(),
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

/// The cancel request opens its own connection: callers run it in the background.
fn send_cancel(token: postgres::CancelToken) {
    let _ = token.cancel_query(NoTls);
}

impl PgSource {
    /// Connect, start the snapshot, resolve fields and types, pick the strategy. Nothing
    /// is streamed yet.
    pub fn open(url: &str, display: &str, req: &ReadRequest, cancel: CancelToken) -> Result<Self, SourceError> {
        let display = crate::redact(display);
        let pool = pool_for(url, &display)?;
        let mut src = PgSource {
            pool,
            display,
            conn: None,
            statements: HashMap::new(),
            in_txn: false,
            snapshot: req.snapshot,
            exported_snapshot: None,
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
            cancel_slot: CancelSlot::on(&cancel, send_cancel),
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

    fn conn(&mut self) -> &mut Client {
        self.conn.as_mut().expect("connected")
    }

    /// A connection from the pool and, in snapshot mode, the run's transaction.
    fn connect(&mut self) -> Result<(), Fail> {
        let mut conn = self.pool.get().map_err(|e| Fail::Lost(e.to_string()))?;
        self.cancel_slot.set(conn.cancel_token());
        self.statements.clear();
        if self.snapshot == Snapshot::Run {
            let display = self.display.clone();
            let lost = |e: postgres::Error| {
                if is_lost(&e) {
                    Fail::Lost(db_message(&e))
                } else {
                    Fail::Other(SourceError::Open { url: display.clone(), reason: db_message(&e) })
                }
            };
            conn.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY").map_err(lost)?;
            self.in_txn = true;
            // The count query (on another connection) reads this same snapshot.
            let row = conn.query_one("SELECT pg_export_snapshot()", &[]).map_err(lost)?;
            self.exported_snapshot = row.try_get::<_, String>(0).ok();
        }
        self.conn = Some(conn);
        Ok(())
    }

    fn prepare_err(&self, sql: &str, e: &postgres::Error) -> SourceError {
        let mut message = db_message(e);
        if e.code() == Some(&SqlState::UNDEFINED_TABLE) {
            message.push_str(&format!(" (in {})", self.display));
        }
        SourceError::Prepare { sql: sql.to_string(), message }
    }

    fn prepare(&mut self, sql: &str) -> Result<Statement, Fail> {
        if let Some(s) = self.statements.get(sql) {
            return Ok(s.clone());
        }
        match self.conn().prepare(sql) {
            Ok(stmt) => {
                self.statements.insert(sql.to_string(), stmt.clone());
                Ok(stmt)
            }
            Err(e) if is_lost(&e) => Err(Fail::Lost(db_message(&e))),
            Err(e) => Err(Fail::Other(self.prepare_err(sql, &e))),
        }
    }

    /// Prepare while opening: any failure is the run's error.
    fn prepare_now(&mut self, sql: &str) -> Result<Statement, SourceError> {
        self.prepare(sql).map_err(|e| match e {
            Fail::Lost(reason) => SourceError::Open { url: self.display.clone(), reason },
            Fail::Other(e) => e,
        })
    }

    fn resolve_fields(&mut self, req: &ReadRequest) -> Result<(), SourceError> {
        let mut names = Vec::new();
        let probe;
        if let Some(sql) = &self.from_sql {
            probe = self.bind_text(&format!("SELECT * FROM {} AS q LIMIT 0", enclose(sql)));
            let stmt = self.prepare_now(&probe.sql)?;
            for c in stmt.columns() {
                names.push(c.name().to_string());
                self.exprs.push(format!("q.{}", quote_ident(c.name())));
            }
        } else if req.columns.is_empty() {
            let table = self.table.clone().unwrap_or_default();
            probe =
                BoundSql { sql: format!("SELECT {table}.* FROM {table}{} LIMIT 0", self.joins_sql()), values: vec![] };
            let stmt = self.prepare_now(&probe.sql)?;
            for c in stmt.columns() {
                names.push(c.name().to_string());
                self.exprs.push(format!("{table}.{}", quote_ident(c.name())));
            }
        } else {
            for (name, col) in &req.columns {
                names.push(name.clone());
                // A declared type is a cast in the database: the value arrives as that type.
                let expr = match col.declared_type() {
                    Some(t) => {
                        let dt = parse_type_name(t).map_err(SourceError::Plan)?;
                        format!("CAST(({}) AS {})", col.expr(), pg_type_for(&dt))
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
            let d = Decode::for_type(c.type_(), c.type_modifier()).map_err(|reason| SourceError::Value {
                column: name.clone(),
                ty: c.type_().name().to_string(),
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

    /// Text values of a catalog query about the base table.
    fn catalog(&mut self, sql: &str) -> Result<Vec<String>, SourceError> {
        let Some(table) = self.table.clone() else { return Ok(vec![]) };
        let rows = self
            .conn()
            .query(sql, &[&table])
            .map_err(|e| SourceError::Prepare { sql: sql.to_string(), message: db_message(&e) })?;
        Ok(rows.iter().filter_map(|r| r.try_get::<_, String>(0).ok()).collect())
    }

    /// Whether the catalogue proves `key` unique (see [`crate::keys`]).
    fn key_is_unique(&mut self, key: &[String]) -> Result<bool, SourceError> {
        let Some(table) = self.table.clone().filter(|_| self.from_sql.is_none()) else { return Ok(false) };
        let (case, joined) = (NameCase::FoldUnquoted, !self.joins.is_empty());
        let cols = key_base_columns(key, |k| self.field_index(k), &self.exprs, &table, joined, case)?;
        let rows = self.catalog_pairs(
            "SELECT i.indexrelid::text, a.attname::text FROM pg_index i \
             CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord) \
             JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum \
             WHERE i.indrelid = to_regclass($1) AND i.indisunique AND i.indimmediate \
               AND i.indpred IS NULL AND i.indexprs IS NULL AND k.ord <= i.indnkeyatts \
             ORDER BY i.indexrelid, k.ord",
        )?;
        Ok(proves_unique(&cols, &group_sets(rows, case)))
    }

    /// Catalogue rows of two text columns, with the base table as the one parameter.
    fn catalog_pairs(&mut self, sql: &str) -> Result<Vec<(String, String)>, SourceError> {
        let Some(table) = self.table.clone() else { return Ok(vec![]) };
        let rows = self
            .conn()
            .query(sql, &[&table])
            .map_err(|e| SourceError::Prepare { sql: sql.to_string(), message: db_message(&e) })?;
        Ok(rows
            .iter()
            .filter_map(|r| Some((r.try_get::<_, String>(0).ok()?, r.try_get::<_, String>(1).ok()?)))
            .collect())
    }

    fn resolve_order(&mut self, req: &ReadRequest) -> Result<(), SourceError> {
        let table = self.table.clone().unwrap_or_default();
        let not_null = self.catalog(
            "SELECT attname::text FROM pg_attribute WHERE attrelid = to_regclass($1) AND attnotnull AND attnum > 0",
        )?;
        // A field is a plain column of the base table when its expression is `table."col"`.
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
            // The table's primary key, in index order.
            key = self.catalog(
                "SELECT a.attname::text FROM pg_index i \
                 JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) \
                 WHERE i.indrelid = to_regclass($1) AND i.indisprimary \
                 ORDER BY array_position(i.indkey::int2[], a.attnum)",
            )?;
        }
        for name in &key {
            let i = match self.schema.index_of(name) {
                Ok(i) => i,
                Err(_) if req.key.is_empty() => {
                    // A primary key column the spec does not select: read it hidden.
                    let expr = format!("{table}.{}", quote_ident(name));
                    let sql = format!("SELECT {expr} FROM {table}{} LIMIT 0", self.joins_sql());
                    let stmt = self.prepare_now(&sql)?;
                    let c = &stmt.columns()[0];
                    let d = Decode::for_type(c.type_(), c.type_modifier()).map_err(SourceError::Plan)?;
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
                // NULLs sort last here, so only a column the catalogue says is NOT NULL may be
                // left out of the NULL-aware predicate: otherwise keyset pages would pass
                // over the rows whose key is NULL instead of failing on them.
                let not_null = base_not_null(&expr);
                order.push(OrderCol { name: name.clone(), expr, select_index: i, not_null });
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
        let nullable: Vec<String> = self.order.iter().filter(|o| !o.not_null).map(|o| o.name.clone()).collect();
        let first = self.page_query(None, Some(self.page_rows()), None);
        let declared_key = self.declared_key.clone();
        let choice = Choice {
            asked,
            order: self.plan.order.join(", "),
            unique_order: self.unique_order,
            declared_key: &declared_key,
            snapshot: self.snapshot,
            nullable: &nullable,
            resuming: self.start_after.is_some(),
        };
        let (strategy, reason) = choose(choice, || self.order_needs_sort(&first))?;
        self.plan.strategy = strategy;
        self.plan.reason = reason;
        if strategy == Strategy::Cursor && within == WithinGroups::AnyOrder {
            // No paging and no key order inside groups needed: sort by the group fields only.
            self.order.truncate(self.prefix_len);
            self.plan.order = self.order.iter().map(|o| o.name.clone()).collect();
            self.unique_order = false;
        }
        let first = match strategy {
            Strategy::Keyset => self.page_query(self.start_after.as_ref(), Some(self.page_rows()), None),
            Strategy::Offset => self.page_query(None, Some(self.page_rows()), Some(0)),
            _ => self.page_query(self.start_after.as_ref(), None, None),
        };
        // Prepare now, so a mistake in the spec's SQL fails before the first byte.
        self.prepare_now(&first.0.sql)?;
        self.plan.sql = first.0.sql;
        Ok(())
    }

    fn order_needs_sort(&mut self, q: &(BoundSql, Vec<CursorValue>)) -> Result<bool, SourceError> {
        let sql = format!("EXPLAIN (FORMAT JSON) {}", q.0.sql);
        let text = explain_json(self.conn(), &sql, q).map_err(|e| SourceError::Prepare { sql, message: e })?;
        let plan: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        Ok(has_sort(&plan))
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

    fn field_names(&self) -> Vec<String> {
        self.schema.fields().iter().map(|f| f.name().clone()).collect()
    }

    fn bind_text(&self, sql: &str) -> BoundSql {
        let mut out = BoundSql::default();
        bind_into(&mut out, sql, &self.params, Dialect::Postgres);
        out
    }

    fn new_builders(&self) -> Vec<PgBuilder> {
        let cap = self.batch_size.min(65_536);
        self.decoders[..self.exprs.len()].iter().map(|d| d.builder(cap)).collect()
    }

    fn key_text(&self, row: &Row, index: u64) -> String {
        if self.key_cols.is_empty() {
            return format!("row {}", index + 1);
        }
        self.key_cols
            .iter()
            .map(|&k| {
                let name = self.order.iter().find(|o| o.select_index == k).map_or("key", |o| o.name.as_str());
                format!("{name}={}", cursor_value(&self.decoders[k], raw(row, k)))
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    #[inline]
    /// One row into the builders; returns its bytes (each value's wire length, or 8).
    fn append_row(&self, builders: &mut [PgBuilder], row: &Row, index: u64) -> Result<usize, SourceError> {
        let mut bytes = 0;
        for (i, b) in builders.iter_mut().enumerate() {
            let value = raw(row, i);
            bytes += value.map_or(8, |v| v.len().max(8));
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
                if raw(row, k).is_none() {
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

    fn row_cursor(&self, row: &Row) -> Option<Cursor> {
        if self.order.is_empty() {
            return None;
        }
        Some(Cursor(
            self.order.iter().map(|o| cursor_value(&self.decoders[o.select_index], raw(row, o.select_index))).collect(),
        ))
    }

    fn finish_batch(&self, builders: &mut [PgBuilder]) -> Result<RecordBatch, SourceError> {
        let arrays = builders.iter_mut().map(|b| b.finish()).collect();
        RecordBatch::try_new(self.schema.clone(), arrays).map_err(|e| SourceError::Read {
            sql: self.plan.sql.clone(),
            cursor: String::new(),
            message: e.to_string(),
        })
    }

    fn read_fail(&self, sql: &str, at: &Progress, e: &postgres::Error) -> Fail {
        if self.cancel.is_cancelled() {
            return Fail::Other(SourceError::Cancelled);
        }
        if is_lost(e) {
            return Fail::Lost(db_message(e));
        }
        if e.code().is_some_and(|c| c.code().starts_with("22")) {
            return Fail::Other(SourceError::Rejected { sql: sql.to_string(), message: db_message(e) });
        }
        Fail::Other(SourceError::Read {
            sql: sql.to_string(),
            cursor: at.last.as_ref().map_or("(start)".to_string(), |c| c.to_string()),
            message: db_message(e),
        })
    }

    fn read_rows(
        &mut self,
        conn: &mut Client,
        stmt: &Statement,
        q: &(BoundSql, Vec<CursorValue>),
        at: &mut Progress,
        emit: &mut dyn FnMut(RecordBatch, Option<&Cursor>) -> bool,
    ) -> Result<(usize, Flow), Fail> {
        let sql = &q.0.sql;
        let params = params_of(q);
        let mut rows = conn.query_raw(stmt, params.iter()).map_err(|e| self.read_fail(sql, at, &e))?;
        let mut builders = self.new_builders();
        let mut n = 0usize;
        let mut cut = crate::BatchCut::new(self.batch_size, self.batch_bytes, &self.batch_limit);
        let mut last_row: Option<Row> = None;
        loop {
            let row = match rows.next() {
                Ok(Some(row)) => row,
                Ok(None) => break,
                Err(e) => return Err(self.read_fail(sql, at, &e)),
            };
            if let Some(flow) = self.take_row(&mut builders, row, at, &mut n, &mut cut, &mut last_row, emit)? {
                return Ok((n, flow));
            }
        }
        if cut.pending() > 0 {
            let cursor = last_row.as_ref().and_then(|r| self.row_cursor(r));
            if !hand_on(self.finish_batch(&mut builders)?, cursor, at, emit) {
                return Ok((n, Flow::Stopped));
            }
        }
        Ok((n, Flow::Done))
    }

    /// One row into the builders; at a full batch, hand it on. `Some(Stopped)` when the
    /// consumer wants no more.
    #[allow(clippy::too_many_arguments)]
    #[inline]
    fn take_row(
        &self,
        builders: &mut [PgBuilder],
        row: Row,
        at: &mut Progress,
        n: &mut usize,
        cut: &mut crate::BatchCut,
        last_row: &mut Option<Row>,
        emit: &mut dyn FnMut(RecordBatch, Option<&Cursor>) -> bool,
    ) -> Result<Option<Flow>, Fail> {
        let bytes = self.append_row(builders, &row, at.emitted + cut.pending() as u64)?;
        *n += 1;
        if !cut.row(bytes) {
            *last_row = Some(row);
            return Ok(None);
        }
        *last_row = None;
        if self.cancel.is_cancelled() {
            return Err(Fail::Other(SourceError::Cancelled));
        }
        let cursor = self.row_cursor(&row);
        if !hand_on(self.finish_batch(builders)?, cursor, at, emit) {
            return Ok(Some(Flow::Stopped));
        }
        Ok(None)
    }

    /// End the run's use of the connection: roll back the read-only transaction and give
    /// the connection back to the pool. A broken one the pool drops by itself.
    ///
    /// A cancelled statement drains before the ROLLBACK runs, so the cancel stays armed
    /// until then; a ROLLBACK a repeated cancel hit is run again once it is disarmed.
    fn release(&mut self) {
        self.statements.clear();
        if let Some(mut conn) = self.conn.take() {
            if self.in_txn && !conn.is_closed() && conn.batch_execute("ROLLBACK").is_err() {
                self.cancel_slot.clear();
                let _ = conn.batch_execute("ROLLBACK");
            }
            self.cancel_slot.clear();
        }
        self.cancel_slot.clear();
        self.in_txn = false;
    }
}

/// `EXPLAIN (FORMAT JSON)` of a statement, with its parameters bound, as text.
fn explain_json(conn: &mut Client, sql: &str, q: &(BoundSql, Vec<CursorValue>)) -> Result<String, String> {
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

fn params_of(q: &(BoundSql, Vec<CursorValue>)) -> Vec<Param<'_>> {
    q.0.values.iter().map(Param::Value).chain(q.1.iter().map(Param::Cursor)).collect()
}

/// Rows strictly after `after` in the order, with placeholders numbered from `first`
/// for the cursor's non-NULL values. PostgreSQL sorts NULLs last. When no order column
/// can be NULL, one row comparison `(o1, o2) > ($1, $2)`, which an index serves;
/// otherwise the lexicographic expansion, with the never-NULL tail kept as one row
/// comparison.
fn keyset_predicate(order: &[OrderCol], after: &Cursor, first: usize) -> String {
    let mut numbers = Vec::new();
    let mut next = first;
    for v in &after.0 {
        if *v == CursorValue::Null {
            numbers.push(0);
        } else {
            numbers.push(next);
            next += 1;
        }
    }
    // The tail from which on every column is known not NULL (with a non-NULL value).
    let tail = (0..=order.len())
        .rev()
        .take_while(|&i| i == order.len() || order[i].not_null && after.0[i] != CursorValue::Null)
        .last()
        .unwrap_or(order.len());
    let eq = |j: usize| match after.0[j] {
        CursorValue::Null => format!("{} IS NULL", order[j].expr),
        _ => format!("{} = ${}", order[j].expr, numbers[j]),
    };
    let mut terms = Vec::new();
    for i in 0..tail {
        let after_i = match after.0[i] {
            CursorValue::Null => continue, // NULL sorts last: nothing after it in this column.
            _ if order[i].not_null => format!("{} > ${}", order[i].expr, numbers[i]),
            _ => format!("({e} > ${n} OR {e} IS NULL)", e = order[i].expr, n = numbers[i]),
        };
        let mut parts: Vec<String> = (0..i).map(eq).collect();
        parts.push(after_i);
        terms.push(format!("({})", parts.join(" AND ")));
    }
    if tail < order.len() {
        let cols: Vec<&str> = order[tail..].iter().map(|o| o.expr.as_str()).collect();
        let vals: Vec<String> = (tail..order.len()).map(|j| format!("${}", numbers[j])).collect();
        let mut parts: Vec<String> = (0..tail).map(eq).collect();
        parts.push(format!("({}) > ({})", cols.join(", "), vals.join(", ")));
        terms.push(format!("({})", parts.join(" AND ")));
    }
    if terms.is_empty() {
        return "FALSE".into();
    }
    format!("({})", terms.join(" OR "))
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

impl Source for PgSource {
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
        match self.count {
            CountMode::None => None,
            CountMode::Estimate | CountMode::Auto => Some(Box::new(move || {
                let mut conn = pool.get().map_err(|e| fail(e.to_string()))?;
                let _slot = counting(&cancel, &conn)?;
                let text = explain_json(&mut conn, &format!("EXPLAIN (FORMAT JSON) {}", q.0.sql), &q).map_err(fail)?;
                let plan: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
                plan.pointer("/0/Plan/Plan Rows")
                    .and_then(|v| v.as_f64())
                    .map(|r| r as u64)
                    .ok_or_else(|| fail("EXPLAIN gave no row estimate".into()))
            })),
            CountMode::Exact => {
                let snapshot = self.exported_snapshot.clone();
                Some(Box::new(move || {
                    let mut conn = pool.get().map_err(|e| fail(e.to_string()))?;
                    let slot = counting(&cancel, &conn)?;
                    let db = |e: postgres::Error| fail(db_message(&e));
                    if let Some(id) = &snapshot {
                        // The run's own snapshot, so the total is exactly the rows it reads.
                        let id = id.replace('\'', "");
                        conn.batch_execute(&format!(
                            "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY; SET TRANSACTION SNAPSHOT '{id}'"
                        ))
                        .map_err(db)?;
                    }
                    let sql = format!("SELECT count(*) FROM {} AS c", enclose(&q.0.sql));
                    let params = params_of(&q);
                    let stmt = conn.prepare(&sql).map_err(db)?;
                    let row = conn.query_raw(&stmt, params.iter()).and_then(|mut r| r.next());
                    // No stop may reach the ROLLBACK below.
                    drop(slot);
                    if snapshot.is_some() {
                        let _ = conn.batch_execute("ROLLBACK");
                    }
                    let row = row.map_err(db)?.ok_or_else(|| fail("no count".into()))?;
                    let n: i64 = row.try_get(0).map_err(db)?;
                    Ok(n as u64)
                }))
            }
        }
    }
}

impl Paged for PgSource {
    type Query = (BoundSql, Vec<CursorValue>);
    fn plan_strategy(&self) -> Strategy {
        self.plan.strategy
    }
    /// A page: the select, the predicate after `after`, the order, the limit. Returns the
    /// bound SQL and the cursor values its `$n` placeholders take after the parameters.
    fn page_query(
        &self,
        after: Option<&Cursor>,
        limit: Option<usize>,
        offset: Option<u64>,
    ) -> (BoundSql, Vec<CursorValue>) {
        let mut bound = self.bind_text(&self.select_sql(&self.field_names(), &self.hidden));
        let mut cursor = Vec::new();
        if let Some(after) = after.filter(|_| !self.order.is_empty()) {
            bound.sql.push_str(if self.filter.is_some() { " AND " } else { " WHERE " });
            let first = bound.values.len() + 1;
            bound.sql.push_str(&keyset_predicate(&self.order, after, first));
            cursor = after.0.iter().filter(|v| **v != CursorValue::Null).cloned().collect();
        }
        crate::order_and_page(&mut bound.sql, self.order.iter().map(|o| o.expr.as_str()), limit, offset);
        (bound, cursor)
    }
    /// Rows per keyset or offset page: several batches, because each page costs a round
    /// trip during which the server waits. The rows still stream through (a page is
    /// never held), so memory does not grow with it.
    fn page_rows(&self) -> usize {
        self.batch_size.saturating_mul(PAGE_BATCHES)
    }
    /// Run one statement, handing on a batch every `batch_size` rows and the rest at the
    /// end. Returns the rows read.
    fn run_statement(
        &mut self,
        q: &(BoundSql, Vec<CursorValue>),
        at: &mut Progress,
        emit: &mut dyn FnMut(RecordBatch, Option<&Cursor>) -> bool,
    ) -> Result<(usize, Flow), Fail> {
        let stmt = self.prepare(&q.0.sql)?;
        // The rows borrow the connection; the source's other state is used beside them.
        let mut conn = self.conn.take().expect("connected");
        let result = self.read_rows(&mut conn, &stmt, q, at, emit);
        if let Ok((_, Flow::Stopped)) = &result {
            // Nobody wants the rest: stop the statement on the server, not just here.
            let token = conn.cancel_token();
            std::thread::spawn(move || send_cancel(token));
        }
        self.conn = Some(conn);
        result
    }
}

impl Resumable for PgSource {
    fn connected(&self) -> bool {
        self.conn.is_some()
    }
    fn connect(&mut self) -> Result<(), Fail> {
        PgSource::connect(self)
    }
    fn read_from(
        &mut self,
        at: &mut Progress,
        emit: &mut dyn FnMut(RecordBatch, Option<&Cursor>) -> bool,
    ) -> Result<Flow, Fail> {
        read_pages(self, at, emit)
    }
    fn release(&mut self) {
        PgSource::release(self)
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

impl Drop for PgSource {
    fn drop(&mut self) {
        // Never hand a connection back to the pool inside our transaction. On a thread of
        // its own: this may run inside an async context, where the client cannot block.
        self.cancel_slot.clear();
        if let Some(mut conn) = self.conn.take() {
            if self.in_txn {
                std::thread::spawn(move || {
                    let _ = conn.batch_execute("ROLLBACK");
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col(name: &str, not_null: bool) -> OrderCol {
        OrderCol { name: name.into(), expr: name.into(), select_index: 0, not_null }
    }

    #[test]
    fn keyset_predicates_use_a_row_comparison_when_nothing_can_be_null() {
        let order = [col("a", true), col("b", true)];
        let after = Cursor(vec![CursorValue::Int(1), CursorValue::Int(2)]);
        assert_eq!(keyset_predicate(&order, &after, 3), "(((a, b) > ($3, $4)))");
    }

    #[test]
    fn keyset_predicates_put_nulls_last() {
        let order = [col("g", false), col("k", true)];
        let after = Cursor(vec![CursorValue::Text("x".into()), CursorValue::Int(2)]);
        assert_eq!(keyset_predicate(&order, &after, 1), "(((g > $1 OR g IS NULL)) OR (g = $1 AND (k) > ($2)))");
        let after = Cursor(vec![CursorValue::Null, CursorValue::Int(2)]);
        assert_eq!(keyset_predicate(&order, &after, 1), "((g IS NULL AND (k) > ($1)))");
    }
}
