//! SQLite: one read-only connection, one read transaction for the whole run (a consistent
//! snapshot), batches built straight from `sqlite3_step` into Arrow builders.
//!
//! Paging strategies:
//! - `keyset`: `WHERE (o1, o2) > (?, ?) ORDER BY o1, o2 LIMIT n`, one statement per page;
//! - `cursor`: one statement, stepped to the end;
//! - `offset`: `LIMIT n OFFSET m` (last resort);
//! - `auto`: keyset when a unique key is known and `EXPLAIN QUERY PLAN` shows an index
//!   serving the order (no temp B-tree), else cursor. Keyset pages that each sort the
//!   table would make the run O(n²).

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, OpenFlags};

use ream_core::spec::Strategy;
use ream_core::sql::enclose;
use ream_core::types::{parse_type_name, type_label};
use ream_core::value::date_from_days;
use ream_core::{CancelToken, Value};

use crate::convert::{type_from_decl, ColumnBuilder};
use crate::keys::{key_base_columns, proves_unique, unproven_paging, NameCase};
use crate::query::{OrderCol, PageQuery, Shape, SQLITE};
use crate::{Count, Counter, Cursor, CursorValue, ReadPlan, ReadRequest, Source, SourceError, WithinGroups};

const ROWID_FIELD: &str = "rowid";

/// The schema, and the columns whose type is still to be settled from the first rows
/// (expressions SQLite declares no type for).
struct Typing {
    schema: SchemaRef,
    unsettled: Vec<usize>,
}

pub struct SqliteSource {
    conn: Connection,
    path: PathBuf,
    display: String,
    typing: RefCell<Typing>,
    /// What the read selects, from where, in which order.
    shape: Shape,
    /// Select indices of the key the request declared: never NULL.
    declared_key: Vec<usize>,
    batch_size: usize,
    batch_bytes: usize,
    batch_limit: crate::BatchLimit,
    start_after: Option<Cursor>,
    plan: ReadPlan,
    cancel: CancelToken,
}

fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

fn prepare_err(sql: &str, e: rusqlite::Error) -> SourceError {
    // rusqlite's message for bad SQL repeats the statement; it is in `sql` already (and
    // a server shows it only to admins). SQLite's offset is in bytes; -1 is none.
    let (message, at) = match &e {
        rusqlite::Error::SqlInputError { msg, offset, .. } => (msg.clone(), usize::try_from(*offset).ok()),
        _ => (e.to_string(), None),
    };
    SourceError::Prepare { sql: sql.to_string(), message, at }
}

/// How ream values bind in SQLite, which stores dates as text and has no decimal type.
struct Bind<'a>(&'a Value);

impl rusqlite::ToSql for Bind<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self.0 {
            Value::Null => ToSqlOutput::Owned(rusqlite::types::Value::Null),
            Value::Bool(b) => ToSqlOutput::Owned((*b as i64).into()),
            Value::Int(i) => ToSqlOutput::Owned((*i).into()),
            Value::Float(f) => ToSqlOutput::Owned((*f).into()),
            // Money is stored as REAL (or INTEGER) in SQLite: bind the nearest double, which
            // is exactly what a stored 12.34 is, so comparisons hold.
            Value::Decimal { units, scale } => {
                if *scale <= 0 {
                    ToSqlOutput::Owned(((*units as i64) * 10i64.pow((-*scale) as u32)).into())
                } else {
                    let text = ream_core::value::format_decimal(*units, *scale);
                    ToSqlOutput::Owned(text.parse::<f64>().unwrap_or(f64::NAN).into())
                }
            }
            Value::Str(s) => ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes())),
            Value::Date(d) => ToSqlOutput::Owned(
                date_from_days(*d).map(|d| d.format("%Y-%m-%d").to_string()).unwrap_or_default().into(),
            ),
            Value::Timestamp(us) => ToSqlOutput::Owned(
                chrono::DateTime::from_timestamp_micros(*us)
                    .map(|t| t.naive_utc().format("%Y-%m-%d %H:%M:%S%.f").to_string())
                    .unwrap_or_default()
                    .into(),
            ),
            Value::Binary(b) => ToSqlOutput::Borrowed(ValueRef::Blob(b)),
        })
    }
}

impl rusqlite::ToSql for CursorValue {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self {
            CursorValue::Null => ToSqlOutput::Owned(rusqlite::types::Value::Null),
            CursorValue::Int(i) => ToSqlOutput::Owned((*i).into()),
            CursorValue::Real(f) => ToSqlOutput::Owned((*f).into()),
            CursorValue::Text(s) => ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes())),
            CursorValue::Blob(b) => ToSqlOutput::Borrowed(ValueRef::Blob(b)),
        })
    }
}

/// Where one statement's rows stand: rows read, where the open batch ends, the order values
/// of the last row, and the cursor of the last batch handed on.
struct Batch {
    rows: usize,
    cut: crate::BatchCut,
    key: Vec<CursorValue>,
    last: Option<Cursor>,
}

/// `cursor_value` into an existing slot, reusing its text buffer: this runs per row.
#[inline]
fn set_cursor_value(slot: &mut CursorValue, v: ValueRef<'_>) {
    match (slot, v) {
        (CursorValue::Int(i), ValueRef::Integer(x)) => *i = x,
        (CursorValue::Text(s), ValueRef::Text(t)) => {
            s.clear();
            s.push_str(&String::from_utf8_lossy(t));
        }
        (slot, v) => *slot = cursor_value(v),
    }
}

fn cursor_value(v: ValueRef<'_>) -> CursorValue {
    match v {
        ValueRef::Null => CursorValue::Null,
        ValueRef::Integer(i) => CursorValue::Int(i),
        ValueRef::Real(f) => CursorValue::Real(f),
        ValueRef::Text(t) => CursorValue::Text(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Blob(b) => CursorValue::Blob(b.to_vec()),
    }
}

impl SqliteSource {
    /// Open the database read-only, start the snapshot, resolve fields and types, and
    /// pick the strategy. Nothing is streamed yet.
    pub fn open(path: &Path, display: &str, req: &ReadRequest, cancel: CancelToken) -> Result<Self, SourceError> {
        // A path that names no file is the URL's fault (exit 2), not an unreachable database.
        if !path.exists() {
            return Err(SourceError::Url {
                url: display.to_string(),
                reason: format!("no such file: {}", path.display()),
            });
        }
        let conn = open_read_only(path, display)?;
        // One read transaction for the whole run: every page sees the same snapshot.
        let begin = "BEGIN; SELECT count(*) FROM sqlite_master;";
        conn.execute_batch(begin).map_err(|e| SourceError::Open { url: display.to_string(), reason: e.to_string() })?;
        let interrupt = conn.get_interrupt_handle();
        cancel.on_cancel(move || interrupt.interrupt());

        let mut src = SqliteSource {
            conn,
            path: path.to_path_buf(),
            display: display.to_string(),
            typing: RefCell::new(Typing { schema: Arc::new(Schema::empty()), unsettled: vec![] }),
            shape: Shape::new(&SQLITE, req),
            declared_key: vec![],
            batch_size: req.batch_size,
            batch_bytes: req.batch_bytes,
            batch_limit: req.batch_limit.clone(),
            start_after: req.start_after.clone(),
            plan: ReadPlan::asked(req.strategy),
            cancel,
        };
        src.resolve_fields(req)?;
        if let Some(agg) = &req.aggregate {
            src.aggregate_fields(agg)?;
        }
        src.resolve_order(req)?;
        src.shape.restrict(req.range).map_err(SourceError::Plan)?;
        src.choose_strategy(req.strategy, req.within_groups)?;
        if req.aggregate.is_some() {
            src.plan.reason = crate::aggregate::PUSHDOWN_REASON.into();
        }
        Ok(src)
    }

    /// The aggregated read's fields ([`crate::aggregate`]): the group fields keep their
    /// types, each partial gets its own from its field's (an untyped one settles from the
    /// first rows, as any SQLite expression).
    fn aggregate_fields(&mut self, agg: &crate::Aggregation) -> Result<(), SourceError> {
        let (base, base_unsettled) = {
            let t = self.typing.borrow();
            (t.schema.clone(), t.unsettled.clone())
        };
        let names: Vec<String> = base.fields().iter().map(|f| f.name().clone()).collect();
        let (out, from) = crate::aggregate::aggregate_shape(&mut self.shape, &names, agg)?;
        self.shape.aggregated = true;
        let mut fields = Vec::new();
        let mut unsettled = Vec::new();
        for (i, (name, base_i)) in out.iter().zip(&from).enumerate() {
            let typed = base_i.filter(|b| !base_unsettled.contains(b)).map(|b| base.field(b).data_type().clone());
            let dt = match i.checked_sub(agg.by.len()) {
                None => typed,
                Some(p) => agg.partials[p].of.sqlite_type(typed.as_ref()),
            };
            if dt.is_none() {
                unsettled.push(i);
            }
            fields.push(Field::new(name, dt.unwrap_or(DataType::Utf8), true));
        }
        *self.typing.borrow_mut() = Typing { schema: Arc::new(Schema::new(fields)), unsettled };
        Ok(())
    }

    fn resolve_fields(&mut self, req: &ReadRequest) -> Result<(), SourceError> {
        // Field names and expressions.
        let mut names = Vec::new();
        let mut declared: Vec<Option<DataType>> = Vec::new();
        if let Some(sql) = &self.shape.from_sql {
            let probe = format!("SELECT * FROM {} AS q LIMIT 0", enclose(sql));
            let bound = self.shape.bind(&probe);
            let stmt = self.conn.prepare(&bound.sql).map_err(|e| prepare_err(&bound.sql, e))?;
            for c in stmt.columns() {
                names.push(c.name().to_string());
                self.shape.exprs.push(format!("q.{}", quote_ident(c.name())));
                declared.push(c.decl_type().and_then(type_from_decl));
            }
        } else if req.columns.is_empty() {
            let table = self.shape.table.clone().unwrap_or_default();
            let probe = format!("SELECT {}.* FROM {}{} LIMIT 0", quote_ident(&table), table, self.shape.joins_sql());
            let stmt = self.conn.prepare(&probe).map_err(|e| self.no_table(&probe, e))?;
            for c in stmt.columns() {
                names.push(c.name().to_string());
                self.shape.exprs.push(format!("{}.{}", quote_ident(&table), quote_ident(c.name())));
                declared.push(c.decl_type().and_then(type_from_decl));
            }
        } else {
            let mut decl_from_spec = Vec::new();
            for (name, col) in &req.columns {
                names.push(name.clone());
                self.shape.exprs.push(col.expr().to_string());
                decl_from_spec
                    .push(col.declared_type().map(|t| parse_type_name(t).map_err(SourceError::Plan)).transpose()?);
            }
            let probe = format!("{} LIMIT 0", self.shape.select_sql(&[], &[]));
            let bound = self.shape.bind(&probe);
            let stmt = self.conn.prepare(&bound.sql).map_err(|e| self.no_table(&bound.sql, e))?;
            for (c, spec_type) in stmt.columns().zip(decl_from_spec) {
                declared.push(spec_type.or_else(|| c.decl_type().and_then(type_from_decl)));
            }
        }
        // Columns without a declared type are settled from the first rows the real
        // statement returns: a probe query would run the user's sort or aggregation twice.
        let unsettled: Vec<usize> = (0..names.len()).filter(|i| declared[*i].is_none()).collect();
        let fields: Vec<Field> = names
            .iter()
            .zip(&declared)
            .map(|(n, dt)| Field::new(n, dt.clone().unwrap_or(DataType::Utf8), true))
            .collect();
        *self.typing.borrow_mut() = Typing { schema: Arc::new(Schema::new(fields)), unsettled };
        Ok(())
    }

    fn no_table(&self, sql: &str, e: rusqlite::Error) -> SourceError {
        let msg = e.to_string();
        if msg.contains("no such table") {
            let tables: Vec<String> = self
                .conn
                .prepare("SELECT name FROM sqlite_master WHERE type IN ('table','view') AND name NOT LIKE 'sqlite_%' ORDER BY name")
                .and_then(|mut s| s.query_map([], |r| r.get::<_, String>(0))?.collect())
                .unwrap_or_default();
            return SourceError::Prepare {
                sql: sql.to_string(),
                message: format!("{msg} (tables in {}: {})", self.display, tables.join(", ")),
                at: None,
            };
        }
        prepare_err(sql, e)
    }

    fn field_index(&self, name: &str) -> Result<usize, SourceError> {
        self.schema_ref().index_of(name).map_err(|_| SourceError::UnknownField {
            field: name.to_string(),
            known: self.schema_ref().fields().iter().map(|f| f.name().clone()).collect(),
        })
    }

    fn resolve_order(&mut self, req: &ReadRequest) -> Result<(), SourceError> {
        // SQLite sorts NULLs first, so the keyset predicate needs no NOT NULL facts.
        let col = |name: &str, expr: String, select_index| OrderCol {
            name: name.into(),
            expr,
            select_index,
            not_null: false,
        };
        for name in &req.order_prefix {
            let i = self.field_index(name)?;
            self.shape.push_order(col(name, self.shape.exprs[i].clone(), i));
        }
        self.shape.prefix_len = self.shape.order.len();
        if self.shape.aggregated {
            // One row per group: the group fields order it, and no page follows.
            self.plan.order = self.shape.order_names();
            return Ok(());
        }
        for name in &req.key {
            let i = self.field_index(name)?;
            self.shape.key_cols.push(i);
            self.declared_key.push(i);
            self.shape.push_order(col(name, self.shape.exprs[i].clone(), i));
        }
        self.shape.unique_order = !req.key.is_empty() && self.key_is_unique(&req.key)?;
        if !self.shape.unique_order {
            // No key, or one the catalogue does not prove unique: the rowid, where the
            // base table has one, makes the order unique (as the key or its tiebreaker).
            if let Some(rowid) = self.rowid_expr() {
                let idx = self.schema_ref().fields().len() + self.shape.hidden.len();
                self.shape.hidden.push((rowid.clone(), "__ream_rowid".into()));
                self.shape.key_cols.push(idx);
                self.shape.push_order(OrderCol { not_null: true, ..col(ROWID_FIELD, rowid, idx) });
                self.shape.unique_order = true;
            }
        }
        self.plan.order = self.shape.order_names();
        Ok(())
    }

    /// Whether the catalogue proves `key` unique: its fields are base-table columns that
    /// hold the INTEGER PRIMARY KEY or every column of a unique, non-partial index.
    fn key_is_unique(&self, key: &[String]) -> Result<bool, SourceError> {
        let Some(table) = self.shape.table.as_deref().filter(|_| self.shape.from_sql.is_none()) else {
            return Ok(false);
        };
        let case = NameCase::Insensitive;
        let joined = !self.shape.joins.is_empty();
        let cols = key_base_columns(key, |k| self.field_index(k), &self.shape.exprs, table, joined, case)?;
        Ok(proves_unique(&cols, &self.unique_sets(table)))
    }

    /// The base table's unique column sets, lower-cased: its INTEGER PRIMARY KEY (the
    /// rowid) and the columns of each unique index that is neither partial nor on
    /// expressions (a WITHOUT ROWID primary key is such an index).
    fn unique_sets(&self, table: &str) -> Vec<Vec<String>> {
        let catalogue = |sql: &str, arg: &str| -> Vec<(String, i64, i64)> {
            let Ok(mut stmt) = self.conn.prepare(sql) else { return vec![] };
            stmt.query_map([arg], |r| Ok((r.get::<_, Option<String>>(0)?.unwrap_or_default(), r.get(1)?, r.get(2)?)))
                .and_then(|rows| rows.collect())
                .unwrap_or_default()
        };
        let table = table.trim_matches(|c| c == '"' || c == '`');
        let mut sets = Vec::new();
        let pk = catalogue("SELECT name, pk, upper(type) = 'INTEGER' FROM pragma_table_info(?1) WHERE pk > 0", table);
        if let [(col, _, 1)] = pk.as_slice() {
            sets.push(vec![col.to_ascii_lowercase()]);
        }
        for (index, unique, partial) in catalogue("SELECT name, \"unique\", partial FROM pragma_index_list(?1)", table)
        {
            if unique != 1 || partial != 0 {
                continue;
            }
            // cid -2 is an expression; its name is NULL (read as "").
            let cols = catalogue("SELECT name, cid, 0 FROM pragma_index_info(?1)", &index);
            if cols.iter().all(|(name, cid, _)| *cid >= 0 && !name.is_empty()) {
                sets.push(cols.into_iter().map(|(name, ..)| name.to_ascii_lowercase()).collect());
            }
        }
        sets
    }

    /// The base table's rowid, when it has one and no field shadows the name.
    fn rowid_expr(&self) -> Option<String> {
        let table = self.shape.table.as_ref()?;
        if self.schema_ref().index_of(ROWID_FIELD).is_ok() {
            return None;
        }
        let expr = format!("{}.rowid", quote_ident(table));
        let probe = format!("SELECT {expr} FROM {}{} LIMIT 0", table, self.shape.joins_sql());
        self.conn.prepare(&probe).ok().map(|_| expr)
    }

    fn declared_key_names(&self) -> Vec<String> {
        self.declared_key.iter().map(|&i| self.schema_ref().field(i).name().clone()).collect()
    }

    fn has_unique_order(&self) -> bool {
        self.shape.unique_order
    }

    fn choose_strategy(&mut self, asked: Strategy, within: WithinGroups) -> Result<(), SourceError> {
        let order_list = self.shape.order.iter().map(|o| o.name.as_str()).collect::<Vec<_>>().join(", ");
        let (strategy, reason) = match asked {
            Strategy::Keyset | Strategy::Offset if !self.has_unique_order() && !self.declared_key.is_empty() => {
                return Err(SourceError::Plan(unproven_paging(asked, &self.declared_key_names())))
            }
            Strategy::Offset if !self.has_unique_order() => {
                return Err(SourceError::Plan(crate::keys::OFFSET_NEEDS_AN_ORDER.into()))
            }
            Strategy::Keyset if !self.has_unique_order() => {
                return Err(SourceError::Plan(
                    "keyset paging needs a unique key: give `key` (e.g. --key id), or use --strategy cursor".into(),
                ))
            }
            Strategy::Keyset => (Strategy::Keyset, format!("asked for; pages by ({order_list})")),
            Strategy::Cursor => (Strategy::Cursor, "asked for".to_string()),
            Strategy::Offset => (Strategy::Offset, "asked for".to_string()),
            Strategy::Auto if !self.has_unique_order() && !self.declared_key.is_empty() => (
                Strategy::Cursor,
                format!(
                    "the key ({}) is not a primary key or unique index of the base table, so one statement is stepped",
                    self.declared_key_names().join(", ")
                ),
            ),
            Strategy::Auto if !self.has_unique_order() => {
                (Strategy::Cursor, "no unique key is known, so one statement is stepped".to_string())
            }
            Strategy::Auto => {
                let probe =
                    self.page_query(Some(&Cursor(vec![CursorValue::Int(0); self.shape.order.len()])), Some(1), None);
                if self.order_needs_sort(&probe.bound.sql)? {
                    (
                        Strategy::Cursor,
                        format!("no index serves ORDER BY ({order_list}): each keyset page would sort the rows, so one statement is stepped"),
                    )
                } else {
                    (Strategy::Keyset, format!("an index serves ORDER BY ({order_list})"))
                }
            }
        };
        if self.start_after.is_some() && strategy != Strategy::Keyset {
            return Err(SourceError::Plan(format!(
                "resuming after a cursor needs keyset paging, but the strategy is {strategy}"
            )));
        }
        self.plan.strategy = strategy;
        self.plan.reason = reason;
        if strategy == Strategy::Cursor && within == WithinGroups::AnyOrder {
            // One statement, no paging: the key only orders rows inside a group, which
            // this run does not need. Keep the group fields.
            self.shape.order_by_groups_only();
            self.plan.order = self.shape.order_names();
        }
        let first = match strategy {
            Strategy::Keyset => self.page_query(self.start_after.as_ref(), Some(self.batch_size), None),
            Strategy::Offset => self.page_query(None, Some(self.batch_size), Some(0)),
            _ => self.page_query(None, None, None),
        };
        // Prepare once now, so a mistake in the spec's SQL fails before the first byte.
        self.conn.prepare(&first.bound.sql).map_err(|e| prepare_err(&first.bound.sql, e))?;
        self.plan.sql = first.bound.sql;
        Ok(())
    }

    fn order_needs_sort(&self, sql: &str) -> Result<bool, SourceError> {
        let eqp = format!("EXPLAIN QUERY PLAN {sql}");
        let mut stmt = self.conn.prepare(&eqp).map_err(|e| prepare_err(&eqp, e))?;
        // Unbound placeholders read as NULL; the plan does not depend on the values.
        let mut rows = stmt.raw_query();
        let mut sorts = false;
        while let Some(row) = rows.next().map_err(|e| prepare_err(&eqp, e))? {
            let detail: String = row.get(3).map_err(|e| prepare_err(&eqp, e))?;
            sorts |= detail.contains("TEMP B-TREE") && detail.contains("ORDER BY");
        }
        Ok(sorts)
    }

    /// A page: the select, the keyset predicate after `after`, the order, the limit.
    fn page_query(&self, after: Option<&Cursor>, limit: Option<usize>, offset: Option<u64>) -> PageQuery {
        let names: Vec<String> = self.schema_ref().fields().iter().map(|f| f.name().clone()).collect();
        self.shape.page(&names, after, limit, offset)
    }

    fn schema_ref(&self) -> SchemaRef {
        self.typing.borrow().schema.clone()
    }

    /// Run one statement, pushing a batch to `emit` at every `BatchLimit` rows and the
    /// rest at the end, each with the cursor of its last row. Returns the rows read, the
    /// cursor of the last batch handed on, and whether the consumer asked to stop.
    fn read(
        &self,
        q: &PageQuery,
        builders: &mut [ColumnBuilder],
        emit: &mut dyn FnMut(RecordBatch, Option<&Cursor>) -> bool,
        rows_before: u64,
    ) -> Result<(usize, Option<Cursor>, bool), SourceError> {
        let sql = &q.bound.sql;
        let mut stmt = self.conn.prepare(sql).map_err(|e| prepare_err(sql, e))?;
        bind_all(&mut stmt, &q.bound.values, &q.cursor).map_err(|e| prepare_err(sql, e))?;
        let mut rows = stmt.raw_query();
        let cut = crate::BatchCut::new(self.batch_size, self.batch_bytes, &self.batch_limit);
        let mut batch = Batch { rows: 0, cut, key: vec![CursorValue::Null; self.shape.order.len()], last: None };

        // Types still open: hold the first batch's rows, settle the types, replay them.
        if !self.typing.borrow().unsettled.is_empty() {
            let width = self.shape.exprs.len() + self.shape.hidden.len();
            let mut pending: Vec<Vec<rusqlite::types::Value>> = Vec::new();
            let mut pending_bytes = 0;
            while pending.len() < self.batch_size && pending_bytes < self.batch_bytes {
                match rows.next() {
                    Ok(Some(row)) => pending.push(
                        (0..width)
                            .map(|i| {
                                let v = row.get_ref(i).ok();
                                pending_bytes += v.and_then(|v| v.as_bytes().ok()).map_or(8, |b| b.len() + 8);
                                v.and_then(|v| v.try_into().ok()).unwrap_or(rusqlite::types::Value::Null)
                            })
                            .collect(),
                    ),
                    Ok(None) => break,
                    Err(e) => return Err(self.read_err(sql, &batch.last, e)),
                }
            }
            self.settle(&pending, builders);
            for vals in &pending {
                let get = |i: usize| ValueRef::from(&vals[i]);
                if !self.take_row(builders, emit, &get, &mut batch, rows_before)? {
                    return Ok((batch.rows, batch.last, true));
                }
            }
        }

        loop {
            let row = match rows.next() {
                Ok(Some(row)) => row,
                Ok(None) => break,
                Err(e) => return Err(self.read_err(sql, &batch.last, e)),
            };
            if self.cancel.is_cancelled() {
                return Err(SourceError::Cancelled);
            }
            let get = |i: usize| row.get_ref(i).unwrap_or(ValueRef::Null);
            if !self.take_row(builders, emit, &get, &mut batch, rows_before)? {
                return Ok((batch.rows, batch.last, true));
            }
        }
        if batch.cut.pending() > 0 && !self.hand_on(builders, emit, &mut batch)? {
            return Ok((batch.rows, batch.last, true));
        }
        Ok((batch.rows, batch.last, false))
    }

    /// One row into the builders and its order values into `batch.key`; at a full batch
    /// (the run's `BatchLimit`, which may change between batches), hand the batch on.
    /// False when the consumer asked to stop.
    #[inline]
    fn take_row<'r>(
        &self,
        builders: &mut [ColumnBuilder],
        emit: &mut dyn FnMut(RecordBatch, Option<&Cursor>) -> bool,
        get: &impl Fn(usize) -> ValueRef<'r>,
        batch: &mut Batch,
        rows_before: u64,
    ) -> Result<bool, SourceError> {
        let index = rows_before + batch.rows as u64;
        let bytes = self.append_row(builders, get, index)?;
        for (slot, o) in batch.key.iter_mut().zip(&self.shape.order) {
            set_cursor_value(slot, get(o.select_index));
        }
        if let Some(&k) = self.declared_key.iter().find(|&&k| matches!(get(k), ValueRef::Null)) {
            return Err(self.null_key_err(k, index));
        }
        batch.rows += 1;
        if !batch.cut.row(bytes) {
            return Ok(true);
        }
        self.hand_on(builders, emit, batch)
    }

    /// Emit the rows in the builders with the cursor of the last of them.
    fn hand_on(
        &self,
        builders: &mut [ColumnBuilder],
        emit: &mut dyn FnMut(RecordBatch, Option<&Cursor>) -> bool,
        batch: &mut Batch,
    ) -> Result<bool, SourceError> {
        let cursor = (!self.shape.order.is_empty()).then(|| Cursor(batch.key.clone()));
        let go_on = emit(self.finish_batch(builders)?, cursor.as_ref());
        batch.last = cursor;
        Ok(go_on)
    }

    fn null_key_err(&self, col: usize, index: u64) -> SourceError {
        SourceError::Value {
            column: self.schema_ref().field(col).name().clone(),
            ty: "key".into(),
            key: format!("row {}", index + 1),
            message: "a key column is NULL, so the key does not name the row: choose a key without NULLs".into(),
        }
    }

    /// One row into the builders; `get` reads a select column of the current row.
    /// Returns the row's bytes (text and blobs as their length, other values as 8).
    #[inline]
    fn append_row<'r>(
        &self,
        builders: &mut [ColumnBuilder],
        get: &impl Fn(usize) -> ValueRef<'r>,
        index: u64,
    ) -> Result<usize, SourceError> {
        let mut bytes = 0;
        for (i, b) in builders.iter_mut().enumerate() {
            let r = match get(i) {
                ValueRef::Null => {
                    b.append_null();
                    Ok(())
                }
                ValueRef::Integer(x) => b.append_int(x),
                ValueRef::Real(x) => b.append_real(x),
                ValueRef::Text(x) => {
                    bytes += x.len();
                    b.append_text(x)
                }
                ValueRef::Blob(x) => {
                    bytes += x.len();
                    b.append_blob(x)
                }
            };
            if let Err(message) = r {
                return Err(self.value_err(i, get, index, message));
            }
            bytes += 8;
        }
        Ok(bytes)
    }

    /// Decide the open types from the held rows: any text makes text, any real makes a
    /// float (integers widen), integers alone make an integer, blobs alone binary; no
    /// value at all, text. A later value that does not fit is an error that says how to
    /// declare the type.
    fn settle(&self, rows: &[Vec<rusqlite::types::Value>], builders: &mut [ColumnBuilder]) {
        use rusqlite::types::Value as V;
        let mut typing = self.typing.borrow_mut();
        let mut fields: Vec<Field> = typing.schema.fields().iter().map(|f| f.as_ref().clone()).collect();
        for &c in &typing.unsettled {
            let (mut int, mut real, mut text, mut blob) = (false, false, false, false);
            for r in rows {
                match &r[c] {
                    V::Integer(_) => int = true,
                    V::Real(_) => real = true,
                    V::Text(_) => text = true,
                    V::Blob(_) => blob = true,
                    V::Null => {}
                }
            }
            let dt = if text {
                DataType::Utf8
            } else if real {
                DataType::Float64
            } else if int {
                DataType::Int64
            } else if blob {
                DataType::Binary
            } else {
                DataType::Utf8
            };
            fields[c] = Field::new(fields[c].name(), dt.clone(), true);
            builders[c] = ColumnBuilder::new(&dt, self.batch_size.min(65_536));
        }
        typing.schema = Arc::new(Schema::new(fields));
        typing.unsettled.clear();
    }

    fn finish_batch(&self, builders: &mut [ColumnBuilder]) -> Result<RecordBatch, SourceError> {
        let arrays = builders.iter_mut().map(|b| b.finish()).collect();
        RecordBatch::try_new(self.schema_ref(), arrays).map_err(|e| SourceError::Read {
            sql: self.plan.sql.clone(),
            cursor: String::new(),
            message: e.to_string(),
        })
    }

    fn read_err(&self, sql: &str, cursor: &Option<Cursor>, e: rusqlite::Error) -> SourceError {
        if self.cancel.is_cancelled() {
            return SourceError::Cancelled;
        }
        SourceError::Read {
            sql: sql.to_string(),
            cursor: cursor.as_ref().map_or("(start)".to_string(), |c| c.to_string()),
            message: e.to_string(),
        }
    }

    fn value_err<'r>(
        &self,
        col: usize,
        get: &impl Fn(usize) -> ValueRef<'r>,
        index: u64,
        message: String,
    ) -> SourceError {
        let schema = self.schema_ref();
        let field = schema.field(col);
        let key = if self.shape.key_cols.is_empty() {
            format!("row {}", index + 1)
        } else {
            let parts: Vec<String> = self
                .shape
                .key_cols
                .iter()
                .map(|&k| {
                    let name = if k < schema.fields().len() {
                        schema.field(k).name().clone()
                    } else {
                        ROWID_FIELD.to_string()
                    };
                    let v = match get(k) {
                        ValueRef::Integer(i) => i.to_string(),
                        ValueRef::Real(f) => f.to_string(),
                        ValueRef::Text(t) => format!("{:?}", String::from_utf8_lossy(t)),
                        ValueRef::Null => "NULL".into(),
                        ValueRef::Blob(_) => "(blob)".into(),
                    };
                    format!("{name}={v}")
                })
                .collect();
            parts.join(", ")
        };
        let hint = if self.shape.exprs[col].contains('(')
            || self.shape.exprs[col].contains(' ')
            || self.shape.from_sql.is_some()
        {
            " (declare the column's type in the spec: `columns: {name: {expr: ..., type: ...}}`, or CAST it in SQL)"
        } else {
            ""
        };
        SourceError::Value {
            column: field.name().clone(),
            ty: type_label(field.data_type()),
            key,
            message: format!("{message}{hint}"),
        }
    }

    fn new_builders(&self) -> Vec<ColumnBuilder> {
        self.schema_ref()
            .fields()
            .iter()
            .map(|f| ColumnBuilder::new(f.data_type(), self.batch_size.min(65_536)))
            .collect()
    }
}

fn bind_all(stmt: &mut rusqlite::Statement<'_>, values: &[Value], cursor: &[CursorValue]) -> rusqlite::Result<()> {
    let mut i = 1;
    for v in values {
        stmt.raw_bind_parameter(i, Bind(v))?;
        i += 1;
    }
    for c in cursor {
        stmt.raw_bind_parameter(i, c)?;
        i += 1;
    }
    Ok(())
}

/// Whether a database file was written: the partitions of a parallel read each begin
/// a read transaction of their own, and they read one snapshot only if no one commits
/// between the first and the last. `PRAGMA data_version` on a connection of its own, in
/// no transaction, changes when another connection commits.
pub struct DataVersion {
    conn: Connection,
    at: i64,
}

impl DataVersion {
    pub fn watch(path: &Path, display: &str) -> Result<DataVersion, SourceError> {
        let conn = open_read_only(path, display)?;
        let at = Self::read(&conn, display)?;
        Ok(DataVersion { conn, at })
    }

    /// Whether no other connection has committed since [`DataVersion::watch`].
    pub fn unchanged(&self, display: &str) -> Result<bool, SourceError> {
        Ok(Self::read(&self.conn, display)? == self.at)
    }

    fn read(conn: &Connection, display: &str) -> Result<i64, SourceError> {
        conn.query_row("PRAGMA data_version", [], |r| r.get(0))
            .map_err(|e| SourceError::Open { url: display.to_string(), reason: e.to_string() })
    }
}

fn open_read_only(path: &Path, display: &str) -> Result<Connection, SourceError> {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags)
        .map_err(|e| SourceError::Open { url: display.to_string(), reason: e.to_string() })?;
    // Fail here, not mid-run, when the file is not a database.
    conn.query_row("SELECT count(*) FROM sqlite_master", [], |_| Ok(()))
        .map_err(|e| SourceError::Open { url: display.to_string(), reason: e.to_string() })?;
    Ok(conn)
}

impl Source for SqliteSource {
    fn schema(&self) -> SchemaRef {
        self.schema_ref()
    }

    fn types_settled(&self) -> bool {
        self.typing.borrow().unsettled.is_empty()
    }

    fn plan(&self) -> &ReadPlan {
        &self.plan
    }

    fn stream(&mut self, emit: &mut dyn FnMut(RecordBatch, Option<&Cursor>) -> bool) -> Result<(), SourceError> {
        let mut builders = self.new_builders();
        let bs = self.batch_size;
        let mut total: u64 = 0;
        match self.plan.strategy {
            Strategy::Keyset => {
                let mut after = self.start_after.clone();
                loop {
                    let q = self.page_query(after.as_ref(), Some(bs), None);
                    let (n, cur, stopped) = self.read(&q, &mut builders, emit, total)?;
                    total += n as u64;
                    if stopped || n < bs {
                        break;
                    }
                    after = cur;
                }
            }
            Strategy::Offset => loop {
                let q = self.page_query(None, Some(bs), Some(total));
                let (n, _, stopped) = self.read(&q, &mut builders, emit, total)?;
                total += n as u64;
                if stopped || n < bs {
                    break;
                }
            },
            Strategy::Cursor | Strategy::Auto => {
                let q = self.page_query(None, None, None);
                self.read(&q, &mut builders, emit, 0)?;
            }
        }
        // End the read transaction; the connection closes with the source.
        let _ = self.conn.execute_batch("COMMIT");
        Ok(())
    }

    /// Ranges of equal width between the first order column's least and greatest value
    /// (SQLite keeps no histogram; a rowid or an indexed key makes both one lookup).
    fn split_points(&mut self, n: usize) -> Result<crate::Split, SourceError> {
        if let Some(why) = self.shape.unsplittable(&self.schema_ref()) {
            return Ok(crate::Split::No(why));
        }
        let Some(bound) = self.shape.extent_sql() else { return Ok(crate::Split::No("the read has no order".into())) };
        let mut stmt = self.conn.prepare(&bound.sql).map_err(|e| prepare_err(&bound.sql, e))?;
        bind_all(&mut stmt, &bound.values, &[]).map_err(|e| prepare_err(&bound.sql, e))?;
        let extent = stmt
            .raw_query()
            .next()
            .map_err(|e| prepare_err(&bound.sql, e))?
            .map(|r| (r.get::<_, Option<i64>>(0).ok().flatten(), r.get::<_, Option<i64>>(1).ok().flatten()));
        Ok(crate::Split::At(match extent {
            Some((Some(min), Some(max))) => crate::query::split_evenly(min, max, n),
            _ => vec![],
        }))
    }

    fn counter(&self, count: &Count) -> Option<Counter> {
        let names: Vec<String> = self.schema_ref().fields().iter().map(|f| f.name().clone()).collect();
        let bound = self.shape.count_sql(&names, count)?;
        let path = self.path.clone();
        let display = self.display.clone();
        let cancel = self.cancel.clone();
        Some(Box::new(move || {
            let conn = open_read_only(&path, &display)?;
            let interrupt = conn.get_interrupt_handle();
            cancel.on_cancel(move || interrupt.interrupt());
            let mut stmt = conn.prepare(&bound.sql).map_err(|e| prepare_err(&bound.sql, e))?;
            bind_all(&mut stmt, &bound.values, &[]).map_err(|e| prepare_err(&bound.sql, e))?;
            let mut rows = stmt.raw_query();
            let n = match rows.next() {
                Ok(Some(r)) => r.get::<_, i64>(0).unwrap_or(0),
                Ok(None) => 0,
                Err(e) => return Err(prepare_err(&bound.sql, e)),
            };
            Ok(n.max(0) as u64)
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ream_core::spec::ColumnSource;

    fn db(rows: i64) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.sqlite");
        let c = Connection::open(&path).unwrap();
        c.execute_batch(
            "CREATE TABLE t (id INTEGER PRIMARY KEY, grp TEXT, amount DECIMAL(10,2), day DATE, note TEXT);
             CREATE INDEX t_grp ON t (grp, id);",
        )
        .unwrap();
        let tx = c.unchecked_transaction().unwrap();
        for i in 1..=rows {
            let grp = if i % 5 == 0 { None } else { Some(format!("g{}", i % 3)) };
            tx.execute(
                "INSERT INTO t VALUES (?, ?, ?, ?, ?)",
                rusqlite::params![i, grp, (i as f64) / 4.0, format!("2024-01-{:02}", 1 + i % 28), format!("n{i}")],
            )
            .unwrap();
        }
        tx.commit().unwrap();
        (dir, path)
    }

    fn collect(path: &Path, req: &ReadRequest) -> (Vec<i64>, ReadPlan) {
        let mut src = SqliteSource::open(path, "test", req, CancelToken::new()).unwrap();
        let mut ids = Vec::new();
        src.stream(&mut |b, _| {
            let a = b.column(0).as_any().downcast_ref::<arrow_array::Int64Array>().unwrap();
            ids.extend(a.values().iter().copied());
            true
        })
        .unwrap();
        (ids, src.plan().clone())
    }

    #[test]
    fn auto_pages_a_rowid_table_by_keyset() {
        let (_d, p) = db(50);
        let mut req = ReadRequest::table("t");
        req.batch_size = 7;
        let (ids, plan) = collect(&p, &req);
        assert_eq!(ids, (1..=50).collect::<Vec<_>>());
        assert_eq!(plan.strategy, Strategy::Keyset, "{}", plan.reason);
    }

    #[test]
    fn every_strategy_yields_the_same_rows_across_nulls_in_group_keys() {
        let (_d, p) = db(103);
        let mut expect: Option<Vec<i64>> = None;
        for strategy in [Strategy::Keyset, Strategy::Cursor, Strategy::Offset, Strategy::Auto] {
            for bs in [1, 7, 1000] {
                let mut req = ReadRequest::table("t");
                req.order_prefix = vec!["grp".into()];
                req.key = vec!["id".into()];
                req.strategy = strategy;
                req.batch_size = bs;
                let (ids, plan) = collect(&p, &req);
                assert_eq!(ids.len(), 103, "{strategy} bs={bs}: {}", plan.sql);
                match &expect {
                    None => expect = Some(ids),
                    Some(e) => assert_eq!(&ids, e, "{strategy} bs={bs}"),
                }
            }
        }
    }

    #[test]
    fn auto_picks_cursor_when_no_index_serves_the_order() {
        let (_d, p) = db(10);
        let mut req = ReadRequest::table("t");
        req.order_prefix = vec!["note".into()];
        let (_, plan) = collect(&p, &req);
        assert_eq!(plan.strategy, Strategy::Cursor);
        assert!(plan.reason.contains("no index serves ORDER BY (note, rowid)"), "{}", plan.reason);
        // With an index on (grp, id), keyset is served.
        let mut req = ReadRequest::table("t");
        req.order_prefix = vec!["grp".into()];
        req.key = vec!["id".into()];
        let (_, plan) = collect(&p, &req);
        assert_eq!(plan.strategy, Strategy::Keyset, "{}", plan.reason);
    }

    #[test]
    fn a_cursor_read_in_any_order_sorts_by_the_group_fields_only() {
        let (_d, p) = db(30);
        let mut req = ReadRequest::table("t");
        req.order_prefix = vec!["note".into()];
        req.within_groups = WithinGroups::AnyOrder;
        let (ids, plan) = collect(&p, &req);
        assert_eq!(plan.strategy, Strategy::Cursor);
        assert!(plan.sql.ends_with("ORDER BY \"t\".\"note\""), "{}", plan.sql);
        assert_eq!(ids.len(), 30);
        // Keyset paging still needs the key, whatever the order within groups.
        req.order_prefix = vec!["grp".into()];
        req.key = vec!["id".into()];
        let (_, plan) = collect(&p, &req);
        assert_eq!(plan.strategy, Strategy::Keyset);
        assert!(plan.sql.contains("ORDER BY \"t\".\"grp\", \"t\".\"id\""), "{}", plan.sql);
    }

    #[test]
    fn keyset_resumes_after_a_cursor_without_gap_or_duplicate() {
        let (_d, p) = db(40);
        let mut req = ReadRequest::table("t");
        req.order_prefix = vec!["grp".into()];
        req.key = vec!["id".into()];
        req.strategy = Strategy::Keyset;
        req.batch_size = 6;
        let (all, _) = collect(&p, &req);
        for page in 1..6 {
            // Read `page` pages, keep the cursor, resume from it.
            let mut src = SqliteSource::open(&p, "test", &req, CancelToken::new()).unwrap();
            let mut first = Vec::new();
            let mut cursor = None;
            let mut pages = 0;
            src.stream(&mut |b, c| {
                let a = b.column(0).as_any().downcast_ref::<arrow_array::Int64Array>().unwrap();
                first.extend(a.values().iter().copied());
                cursor = c.cloned();
                pages += 1;
                pages < page
            })
            .unwrap();
            let mut resumed = req.clone();
            resumed.start_after = cursor;
            let (rest, _) = collect(&p, &resumed);
            first.extend(rest);
            assert_eq!(first, all, "resumed after page {page}");
        }
    }

    #[test]
    fn a_value_that_does_not_fit_names_column_key_and_value() {
        let (_d, p) = db(3);
        let c = Connection::open(&p).unwrap();
        c.execute("UPDATE t SET amount = 0.125 WHERE id = 2", []).unwrap();
        let req = ReadRequest::table("t");
        let mut src = SqliteSource::open(&p, "test", &req, CancelToken::new()).unwrap();
        let err = src.stream(&mut |_, _| true).unwrap_err().to_string();
        assert!(err.contains("column `amount` (decimal(10,2)) at rowid=2: 0.125 has more decimals"), "{err}");
    }

    #[test]
    fn computed_columns_get_types_from_their_first_rows_or_their_declaration() {
        let (_d, p) = db(5);
        let mut req = ReadRequest::table("t");
        req.columns = vec![
            ("id".to_string(), ColumnSource::Expr("t.id".into())),
            ("double".to_string(), ColumnSource::Expr("t.amount * 2".into())),
            ("label".to_string(), ColumnSource::Expr("'#' || t.id".into())),
            (
                "whole".to_string(),
                ColumnSource::Typed(ream_core::spec::TypedColumn { expr: "t.id * 2".into(), ty: "float".into() }),
            ),
        ]
        .into_iter()
        .collect();
        let mut src = SqliteSource::open(&p, "test", &req, CancelToken::new()).unwrap();
        assert!(!src.types_settled());
        let mut schemas = Vec::new();
        src.stream(&mut |b, _| {
            schemas.push(b.schema());
            true
        })
        .unwrap();
        let types: Vec<_> = schemas[0].fields().iter().map(|f| f.data_type().clone()).collect();
        assert_eq!(types, vec![DataType::Int64, DataType::Float64, DataType::Utf8, DataType::Float64]);
        assert!(src.types_settled());
        assert_eq!(src.schema(), schemas[0]);
    }

    #[test]
    fn bound_parameters_are_data_not_sql() {
        let (_d, p) = db(5);
        let mut req = ReadRequest::table("t");
        req.filter = Some("note = :n OR note = :m".into());
        req.params.insert("n".into(), ream_core::params::ParamValue::One(Value::Str("'; DROP TABLE t; --".into())));
        req.params.insert("m".into(), ream_core::params::ParamValue::One(Value::Str("n3".into())));
        let (ids, _) = collect(&p, &req);
        assert_eq!(ids, vec![3]);
        let c = Connection::open(&p).unwrap();
        let n: i64 = c.query_row("SELECT count(*) FROM t", [], |r| r.get(0)).unwrap();
        assert_eq!(n, 5);
    }

    #[test]
    fn the_counter_counts_the_filtered_rows() {
        let (_d, p) = db(20);
        let mut req = ReadRequest::table("t");
        req.filter = Some("id > 15".into());
        let src = SqliteSource::open(&p, "test", &req, CancelToken::new()).unwrap();
        assert_eq!((src.counter(&Count::Rows).unwrap())().unwrap(), 5);
    }

    #[test]
    fn the_distinct_counter_counts_the_filtered_values_with_null_as_one() {
        let (_d, p) = db(20);
        let count = |filter: &str, field: &str| {
            let mut req = ReadRequest::table("t");
            req.filter = Some(filter.into());
            let src = SqliteSource::open(&p, "test", &req, CancelToken::new()).unwrap();
            src.counter(&Count::Distinct(field.into())).map(|c| c().unwrap())
        };
        // ids 18, 19, 20: g0, g1 and NULL.
        assert_eq!(count("id > 17", "grp"), Some(3));
        // ids 1 to 4: g1, g2, g0, g1.
        assert_eq!(count("id <= 4", "grp"), Some(3));
        assert_eq!(count("id > 15", "grp"), Some(4));
        assert_eq!(count("id > 15", "no_such_field"), None);
    }
}

#[cfg(test)]
mod data_version {
    use super::*;

    #[test]
    fn a_commit_by_another_connection_changes_the_data_version_and_a_read_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v.sqlite");
        let writer = Connection::open(&path).unwrap();
        writer.execute_batch("CREATE TABLE t (id INTEGER PRIMARY KEY); INSERT INTO t VALUES (1);").unwrap();
        let watch = DataVersion::watch(&path, "v").unwrap();
        let reader = open_read_only(&path, "v").unwrap();
        reader.query_row("SELECT count(*) FROM t", [], |_| Ok(())).unwrap();
        assert!(watch.unchanged("v").unwrap(), "a read is not a write");
        writer.execute("INSERT INTO t VALUES (2)", []).unwrap();
        assert!(!watch.unchanged("v").unwrap(), "a commit by another connection is seen");
    }
}

#[cfg(test)]
mod batch_bytes {
    use super::*;

    #[test]
    fn a_batch_ends_at_its_bytes_whatever_its_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wide.sqlite");
        let c = Connection::open(&path).unwrap();
        c.execute_batch(
            "CREATE TABLE w (id INTEGER PRIMARY KEY, t TEXT);
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 100)
             INSERT INTO w SELECT i, printf('%.100000c', 'x') FROM n;",
        )
        .unwrap();
        for strategy in [Strategy::Keyset, Strategy::Cursor, Strategy::Offset] {
            let mut req = ReadRequest::table("w");
            req.strategy = strategy;
            req.batch_bytes = 1_000_000;
            let mut src = SqliteSource::open(&path, "test", &req, CancelToken::new()).unwrap();
            let (mut sizes, mut ids) = (Vec::new(), Vec::new());
            src.stream(&mut |b, _| {
                sizes.push(b.num_rows());
                let a = b.column(0).as_any().downcast_ref::<arrow_array::Int64Array>().unwrap();
                ids.extend(a.values().iter().copied());
                true
            })
            .unwrap();
            // 100 KB rows: a batch reaches 1 MB at its tenth row.
            assert!(sizes.iter().all(|&n| n <= 10), "{strategy}: {sizes:?}");
            assert_eq!(ids, (1..=100).collect::<Vec<_>>(), "{strategy}: every row once");
        }
    }
}
