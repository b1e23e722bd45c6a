//! A source on a database server, everything but its driver: fields and their types from a
//! prepared probe, the order and the key, the strategy, pages, one batch assembler, the
//! resume loop. A [`Driver`] connects, opens the transaction, prepares, executes, decodes
//! one column and cancels; PostgreSQL and MySQL are each one.
//!
//! The batch assembler ([`Assembler`]) is where finding 1 of issue 14 lived: every batch
//! it hands on, a page's last partial one included, carries the cursor of its own last
//! row, so a page that ends between two `BatchLimit` cuts resumes exactly after it.

use std::sync::Arc;

use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use ream_core::spec::Strategy;
use ream_core::types::{parse_type_name, type_label};
use ream_core::CancelToken;

use crate::keys::{group_sets, key_base_columns, proves_unique, NameCase};
use crate::query::{OrderCol, PageQuery, Shape, SqlDialect};
use crate::server::PAGE_BATCHES;
use crate::server::{choose, hand_on, read_pages, stream_resuming, Choice, Fail, Flow, Paged, Progress, Resumable};
use crate::{
    BatchCut, BatchLimit, Count, CountMode, Counter, Cursor, CursorValue, ReadPlan, ReadRequest, ResumeLog, Snapshot,
    Source, SourceError, WithinGroups,
};

/// How one column's values decode from a driver's rows into an Arrow builder.
pub(crate) trait Column {
    type Row;
    type Builder;
    fn data_type(&self) -> DataType;
    fn builder(&self, capacity: usize) -> Self::Builder;
    /// Append value `i` of `row`; returns its bytes (its length on the wire, at least 8).
    fn append(&self, b: &mut Self::Builder, row: &Self::Row, i: usize) -> Result<usize, String>;
    fn finish(b: &mut Self::Builder) -> ArrayRef;
    fn is_null(row: &Self::Row, i: usize) -> bool;
    /// Value `i` of `row` as it binds back.
    fn cursor_value(&self, row: &Self::Row, i: usize) -> CursorValue;
    /// Whether its text is exact decimals of varying scale
    /// ([`ream_core::types::DECIMAL_TEXT`]).
    fn decimal_text(&self) -> bool {
        false
    }
}

/// One column of a prepared statement: its name, how it decodes (or why it cannot), and
/// the database's name for its type.
pub(crate) struct Described<C> {
    pub name: String,
    pub column: Result<C, String>,
    pub ty: String,
}

/// The catalogue queries of a dialect, each with the base table as its one parameter.
pub(crate) struct Catalogue {
    /// The names of the table's NOT NULL columns.
    pub not_null: &'static str,
    /// The names of the primary key's columns, in key order.
    pub primary_key: &'static str,
    /// (index, column) of every unique, immediate, non-partial index on plain columns.
    pub unique_indexes: &'static str,
    pub case: NameCase,
}

/// What a database server's driver does; the rest is [`ServerSource`].
pub(crate) trait Driver: Send {
    type Column: Column + Send;
    const DIALECT: &'static SqlDialect;
    const CATALOGUE: Catalogue;
    /// The URL, its password hidden.
    fn display(&self) -> &str;
    fn connected(&self) -> bool;
    /// A connection and, with `Snapshot::Run`, the run's read-only transaction.
    fn connect(&mut self, snapshot: Snapshot) -> Result<(), Fail>;
    /// Prepare `sql` (kept for reuse) and describe its columns.
    fn describe(&mut self, sql: &str) -> Result<Vec<Described<Self::Column>>, Fail>;
    /// The text rows of a catalogue query about `table`.
    fn catalogue(&mut self, sql: &str, table: &str) -> Result<Vec<Vec<String>>, SourceError>;
    /// Whether the plan of `q` sorts (no index serves its order).
    fn needs_sort(&mut self, q: &PageQuery) -> Result<bool, SourceError>;
    /// The rows of `q`, whose columns are 64-bit integers (or NULL).
    fn ints(&mut self, q: &PageQuery) -> Result<Vec<Vec<Option<i64>>>, SourceError>;
    /// The bounds of the planner's histogram of an integer column of `table`, where the
    /// database keeps one (PostgreSQL's `pg_stats`): each bucket holds about as many rows.
    fn int_histogram(&mut self, table: &str, column: &str) -> Result<Option<Vec<i64>>, SourceError> {
        let _ = (table, column);
        Ok(None)
    }
    /// Run `q`, pushing each row to `rows`, until the rows end or the consumer stops;
    /// a stopped statement is stopped on the server too.
    fn run(
        &mut self,
        q: &PageQuery,
        rows: &mut Assembler<'_, Self::Column>,
        at: &mut Progress,
        emit: &mut dyn FnMut(RecordBatch, Option<&Cursor>) -> bool,
    ) -> Result<Flow, Fail>;
    /// End the run's use of the connection (back to the pool, or dropped when broken).
    fn release(&mut self);
    /// A count for progress, on a connection of its own.
    fn counter(&self, q: CountQuery, cancel: &CancelToken) -> Counter;
    /// The snapshot the run's transaction exported, for other connections to import.
    fn shared_snapshot(&self) -> Option<String> {
        None
    }
}

/// A count a driver runs.
pub(crate) enum CountQuery {
    /// A `SELECT` of one number ([`Shape::count_sql`]), in the run's snapshot where the
    /// driver has one.
    Exact(PageQuery),
    /// The planner's estimate of the rows of this read.
    Estimate(PageQuery),
}

/// How a run cuts batches and resumes, from its request.
struct Batching {
    size: usize,
    bytes: usize,
    limit: BatchLimit,
}

pub struct ServerSource<D: Driver> {
    driver: D,
    shape: Shape,
    /// One per select column: the visible fields, then the hidden ones.
    columns: Vec<D::Column>,
    schema: SchemaRef,
    /// The key the request declared (empty: the primary key, or none).
    declared_key: Vec<String>,
    snapshot: Snapshot,
    batching: Batching,
    start_after: Option<Cursor>,
    retries: u32,
    count: CountMode,
    resumes: ResumeLog,
    plan: ReadPlan,
    cancel: CancelToken,
}

impl<D: Driver> ServerSource<D> {
    /// Connect, start the snapshot, resolve fields and types, pick the strategy. Nothing
    /// is streamed yet.
    pub(crate) fn open(driver: D, req: &ReadRequest, cancel: CancelToken) -> Result<Self, SourceError> {
        let mut src = ServerSource {
            driver,
            shape: Shape::new(D::DIALECT, req),
            columns: vec![],
            schema: Arc::new(Schema::empty()),
            declared_key: req.key.clone(),
            snapshot: req.snapshot,
            batching: Batching { size: req.batch_size, bytes: req.batch_bytes, limit: req.batch_limit.clone() },
            start_after: req.start_after.clone(),
            retries: req.retries,
            count: req.count,
            resumes: req.resumes.clone(),
            plan: ReadPlan::asked(req.strategy),
            cancel,
        };
        let snapshot = src.snapshot;
        src.driver.connect(snapshot).map_err(|e| src.opening(e))?;
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

    /// A failure while opening is the run's error.
    fn opening(&self, e: Fail) -> SourceError {
        match e {
            Fail::Lost(reason) => SourceError::Open { url: self.driver.display().to_string(), reason },
            Fail::Other(e) => e,
        }
    }

    fn describe_now(&mut self, sql: &str) -> Result<Vec<Described<D::Column>>, SourceError> {
        self.driver.describe(sql).map_err(|e| self.opening(e))
    }

    /// The fields: the spec's SQL's columns, the table's, or the spec's `columns` (a
    /// declared type is a cast in the database, so the value arrives as that type).
    fn resolve_fields(&mut self, req: &ReadRequest) -> Result<(), SourceError> {
        let quote = |n: &str| D::DIALECT.quote_ident(n);
        let (probe, prefix) = if let Some(sql) = &self.shape.from_sql {
            (
                self.shape.bind(&format!("SELECT * FROM {} AS q LIMIT 0", ream_core::sql::enclose(sql))).sql,
                Some("q".into()),
            )
        } else if req.columns.is_empty() {
            let table = self.shape.table.clone().unwrap_or_default();
            (format!("SELECT {table}.* FROM {table}{} LIMIT 0", self.shape.joins_sql()), Some(table))
        } else {
            for (i, (_, col)) in req.columns.iter().enumerate() {
                let expr = match (col.declared_type(), D::DIALECT.cast_type) {
                    (Some(t), Some(cast)) => {
                        let dt = parse_type_name(t).map_err(SourceError::Plan)?;
                        if dt == DataType::Float64 {
                            self.shape.float_casts.insert(i, col.expr().to_string());
                        }
                        format!("CAST(({}) AS {})", col.expr(), cast(&dt))
                    }
                    _ => col.expr().to_string(),
                };
                self.shape.exprs.push(expr);
            }
            let names: Vec<String> = req.columns.keys().cloned().collect();
            (self.shape.bind(&format!("{} LIMIT 0", self.shape.select_sql(&names, &[]))).sql, None)
        };
        let described = self.describe_now(&probe)?;
        let names = described
            .iter()
            .enumerate()
            .map(|(i, d)| match &prefix {
                Some(p) => {
                    self.shape.exprs.push(format!("{p}.{}", quote(&d.name)));
                    d.name.clone()
                }
                None => req.columns.get_index(i).map_or(d.name.clone(), |(n, _)| n.clone()),
            })
            .collect();
        self.take_fields(described, names)
    }

    /// The aggregated read's fields ([`crate::aggregate`]), as the database describes its
    /// statement.
    fn aggregate_fields(&mut self, agg: &crate::Aggregation) -> Result<(), SourceError> {
        let names = self.field_names();
        let (out, _) = crate::aggregate::aggregate_shape(&mut self.shape, &names, agg)?;
        self.shape.aggregated = true;
        let probe = self.shape.bind(&format!("{} LIMIT 0", self.shape.select_sql(&out, &[]))).sql;
        let described = self.describe_now(&probe)?;
        self.columns.clear();
        self.take_fields(described, out)
    }

    /// The schema and the column decoders of described columns, named `names`.
    fn take_fields(&mut self, described: Vec<Described<D::Column>>, names: Vec<String>) -> Result<(), SourceError> {
        let mut fields = Vec::new();
        for (d, name) in described.into_iter().zip(names) {
            let column = d.column.map_err(|message| SourceError::Value {
                column: name.clone(),
                ty: d.ty,
                key: "the column's type".into(),
                message,
            })?;
            fields.push(match column.decimal_text() {
                true => ream_core::types::decimal_text_field(&name),
                false => Field::new(name, column.data_type(), true),
            });
            self.columns.push(column);
        }
        self.schema = Arc::new(Schema::new(fields));
        Ok(())
    }

    fn field_index(&self, name: &str) -> Result<usize, SourceError> {
        self.schema
            .index_of(name)
            .map_err(|_| SourceError::UnknownField { field: name.to_string(), known: self.field_names() })
    }

    fn field_names(&self) -> Vec<String> {
        self.schema.fields().iter().map(|f| f.name().clone()).collect()
    }

    /// The first column of each row of a catalogue query about the base table.
    fn catalogue_names(&mut self, sql: &str) -> Result<Vec<String>, SourceError> {
        let Some(table) = self.shape.table.clone() else { return Ok(vec![]) };
        Ok(self.driver.catalogue(sql, &table)?.into_iter().filter_map(|r| r.into_iter().next()).collect())
    }

    /// The order: the group fields, then the key (the declared one, else the primary key,
    /// read hidden where the spec does not select it).
    fn resolve_order(&mut self, req: &ReadRequest) -> Result<(), SourceError> {
        let table = self.shape.table.clone().unwrap_or_default();
        let not_null = self.catalogue_names(D::CATALOGUE.not_null)?;
        // A field is a plain column of the base table when its expression is `table."col"`.
        let quote = |c: &str| D::DIALECT.quote_ident(c);
        let base_not_null = |expr: &str| not_null.iter().any(|c| expr == format!("{table}.{}", quote(c)));
        for name in &req.order_prefix {
            let i = self.field_index(name)?;
            let expr = self.shape.exprs[i].clone();
            self.shape.push_order(OrderCol {
                name: name.clone(),
                not_null: base_not_null(&expr),
                expr,
                select_index: i,
            });
        }
        self.shape.prefix_len = self.shape.order.len();
        if self.shape.aggregated {
            // One row per group: the group fields order it, and no page follows.
            self.plan.order = self.shape.order_names();
            return Ok(());
        }
        let key = match req.key.is_empty() {
            true => self.catalogue_names(D::CATALOGUE.primary_key)?,
            false => req.key.clone(),
        };
        for name in &key {
            let (i, expr) = match self.schema.index_of(name) {
                Ok(i) => (i, self.shape.exprs[i].clone()),
                Err(_) if req.key.is_empty() => self.hidden_key(&table, name)?,
                Err(_) => return Err(self.field_index(name).unwrap_err()),
            };
            self.shape.key_cols.push(i);
            // Only a column the catalogue says is NOT NULL may be left out of the
            // NULL-aware predicate: otherwise keyset pages would pass over the rows whose
            // key is NULL instead of failing on them.
            let not_null = base_not_null(&expr);
            self.shape.push_order(OrderCol { name: name.clone(), expr, select_index: i, not_null });
        }
        // The primary key is unique by definition; a declared key needs the catalogue's proof.
        self.shape.unique_order =
            !self.shape.key_cols.is_empty() && (req.key.is_empty() || self.key_is_unique(&req.key)?);
        self.plan.order = self.shape.order_names();
        Ok(())
    }

    /// A primary key column the spec does not select, read hidden: its select index and
    /// expression.
    fn hidden_key(&mut self, table: &str, name: &str) -> Result<(usize, String), SourceError> {
        let expr = format!("{table}.{}", D::DIALECT.quote_ident(name));
        let sql = format!("SELECT {expr} FROM {table}{} LIMIT 0", self.shape.joins_sql());
        let d = self.describe_now(&sql)?.into_iter().next();
        let column =
            d.ok_or_else(|| SourceError::Plan(format!("no column {expr}")))?.column.map_err(SourceError::Plan)?;
        let idx = self.shape.exprs.len() + self.shape.hidden.len();
        self.columns.push(column);
        self.shape.hidden.push((expr.clone(), format!("__ream_key_{}", self.shape.hidden.len())));
        Ok((idx, expr))
    }

    /// Whether the catalogue proves `key` unique (see [`crate::keys`]).
    fn key_is_unique(&mut self, key: &[String]) -> Result<bool, SourceError> {
        let Some(table) = self.shape.table.clone().filter(|_| self.shape.from_sql.is_none()) else { return Ok(false) };
        let (case, joined) = (D::CATALOGUE.case, !self.shape.joins.is_empty());
        let cols = key_base_columns(key, |k| self.field_index(k), &self.shape.exprs, &table, joined, case)?;
        let rows = self.driver.catalogue(D::CATALOGUE.unique_indexes, &table)?;
        let pairs = rows.into_iter().filter_map(|r| Some((r.first()?.clone(), r.get(1)?.clone()))).collect();
        Ok(proves_unique(&cols, &group_sets(pairs, case)))
    }

    fn choose_strategy(&mut self, asked: Strategy, within: WithinGroups) -> Result<(), SourceError> {
        // NULLs that sort last keep an index from serving the NULL-aware predicate.
        let nullable: Vec<String> = match D::DIALECT.nulls_first {
            true => vec![],
            false => self.shape.order.iter().filter(|o| !o.not_null).map(|o| o.name.clone()).collect(),
        };
        let first = self.page_query(None, Some(self.page_rows()), None);
        let choice = Choice {
            asked,
            order: self.plan.order.join(", "),
            unique_order: self.shape.unique_order,
            declared_key: &self.declared_key,
            snapshot: self.snapshot,
            nullable: &nullable,
            resuming: self.start_after.is_some(),
        };
        let driver = &mut self.driver;
        let (strategy, reason) = choose(choice, || driver.needs_sort(&first))?;
        self.plan.strategy = strategy;
        self.plan.reason = reason;
        if strategy == Strategy::Cursor && within == WithinGroups::AnyOrder {
            // No paging and no key order inside groups needed: sort by the group fields only.
            self.shape.order_by_groups_only();
            self.plan.order = self.shape.order_names();
        }
        let first = match strategy {
            Strategy::Keyset => self.page_query(self.start_after.as_ref(), Some(self.page_rows()), None),
            Strategy::Offset => self.page_query(None, Some(self.page_rows()), Some(0)),
            _ => self.page_query(self.start_after.as_ref(), None, None),
        };
        // Prepare now, so a mistake in the spec's SQL fails before the first byte.
        self.describe_now(&first.bound.sql)?;
        self.plan.sql = first.bound.sql;
        Ok(())
    }
}

/// Rows into batches: each batch ends at the run's `BatchLimit` rows or its bytes, and
/// carries the cursor of its own last row, a statement's last partial batch included.
pub(crate) struct Assembler<'a, C: Column> {
    columns: &'a [C],
    schema: &'a SchemaRef,
    shape: &'a Shape,
    cancel: &'a CancelToken,
    sql: &'a str,
    builders: Vec<C::Builder>,
    cut: BatchCut,
    read: usize,
    last: Option<C::Row>,
}

impl<'a, C: Column> Assembler<'a, C> {
    /// Take one row; at a full batch, hand it on. `Some(Stopped)` when the consumer
    /// wants no more.
    #[inline]
    pub fn push(
        &mut self,
        row: C::Row,
        at: &mut Progress,
        emit: &mut dyn FnMut(RecordBatch, Option<&Cursor>) -> bool,
    ) -> Result<Option<Flow>, Fail> {
        let bytes = self.append_row(&row, at.emitted + self.cut.pending() as u64)?;
        self.read += 1;
        if !self.cut.row(bytes) {
            self.last = Some(row);
            return Ok(None);
        }
        self.last = None;
        if self.cancel.is_cancelled() {
            return Err(Fail::Other(SourceError::Cancelled));
        }
        let cursor = self.row_cursor(&row);
        match hand_on(self.finish_batch()?, cursor, at, emit) {
            true => Ok(None),
            false => Ok(Some(Flow::Stopped)),
        }
    }

    /// The statement's rows ended: hand on the rest, with its last row's cursor.
    pub fn end(
        &mut self,
        at: &mut Progress,
        emit: &mut dyn FnMut(RecordBatch, Option<&Cursor>) -> bool,
    ) -> Result<Flow, Fail> {
        if self.cut.pending() == 0 {
            return Ok(Flow::Done);
        }
        let cursor = self.last.take().and_then(|r| self.row_cursor(&r));
        match hand_on(self.finish_batch()?, cursor, at, emit) {
            true => Ok(Flow::Done),
            false => Ok(Flow::Stopped),
        }
    }

    /// The SQL being read, for messages.
    pub fn sql(&self) -> &str {
        self.sql
    }

    #[inline]
    fn append_row(&mut self, row: &C::Row, index: u64) -> Result<usize, SourceError> {
        let mut bytes = 0;
        for (i, b) in self.builders.iter_mut().enumerate() {
            match self.columns[i].append(b, row, i) {
                Ok(n) => bytes += n,
                Err(message) => {
                    let field = self.schema.field(i);
                    return Err(SourceError::Value {
                        column: field.name().clone(),
                        ty: type_label(field.data_type()),
                        key: key_text(self.shape, self.columns, row, index),
                        message,
                    });
                }
            }
        }
        // Every key column, proven unique or not: a NULL key names no row.
        if let Some(&k) = self.shape.key_cols.iter().find(|&&k| C::is_null(row, k)) {
            return Err(SourceError::Value {
                column: self.shape.order_name(k).unwrap_or("?").to_string(),
                ty: "key".into(),
                key: format!("row {}", index + 1),
                message: "a key column is NULL, so the key does not name the row: choose a key without NULLs".into(),
            });
        }
        Ok(bytes)
    }

    fn row_cursor(&self, row: &C::Row) -> Option<Cursor> {
        if self.shape.order.is_empty() {
            return None;
        }
        Some(Cursor(
            self.shape.order.iter().map(|o| self.columns[o.select_index].cursor_value(row, o.select_index)).collect(),
        ))
    }

    fn finish_batch(&mut self) -> Result<RecordBatch, SourceError> {
        let arrays = self.builders.iter_mut().map(C::finish).collect();
        RecordBatch::try_new(self.schema.clone(), arrays).map_err(|e| SourceError::Read {
            sql: self.sql.to_string(),
            cursor: String::new(),
            message: e.to_string(),
        })
    }
}

/// How errors name a row: its key values, or its number when there is no key.
fn key_text<C: Column>(shape: &Shape, columns: &[C], row: &C::Row, index: u64) -> String {
    if shape.key_cols.is_empty() {
        return format!("row {}", index + 1);
    }
    let part = |k: usize| format!("{}={}", shape.order_name(k).unwrap_or("key"), columns[k].cursor_value(row, k));
    shape.key_cols.iter().map(|&k| part(k)).collect::<Vec<_>>().join(", ")
}

impl<D: Driver> Source for ServerSource<D> {
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

    fn counter(&self, count: &Count) -> Option<Counter> {
        let q = match (count, self.count) {
            (_, CountMode::None) => return None,
            (Count::Rows, CountMode::Estimate | CountMode::Auto) => {
                CountQuery::Estimate(self.page_query(None, None, None))
            }
            _ => CountQuery::Exact(PageQuery {
                bound: self.shape.count_sql(&self.field_names(), count)?,
                cursor: vec![],
            }),
        };
        Some(self.driver.counter(q, &self.cancel))
    }

    fn split_points(&mut self, n: usize) -> Result<crate::Split, SourceError> {
        self.split(n)
    }

    fn shared_snapshot(&self) -> Option<String> {
        self.driver.shared_snapshot()
    }

    fn rows_estimate(&self) -> Option<Counter> {
        Some(self.driver.counter(CountQuery::Estimate(self.page_query(None, None, None)), &self.cancel))
    }
}

impl<D: Driver> ServerSource<D> {
    /// Where this read splits ([`Source::split_points`]): at the planner's histogram of
    /// the first order column where it keeps one, else into ranges of equal width between
    /// the column's least and greatest value (two index lookups).
    fn split(&mut self, n: usize) -> Result<crate::Split, SourceError> {
        use crate::Split;
        if let Some(why) = self.shape.unsplittable(&self.schema) {
            return Ok(Split::No(why));
        }
        let Some(bound) = self.shape.extent_sql() else { return Ok(Split::No("the read has no order".into())) };
        let rows = self.driver.ints(&PageQuery { bound, cursor: vec![] })?;
        let Some([Some(min), Some(max)]) =
            rows.first().map(|r| [r.first().copied().flatten(), r.get(1).copied().flatten()])
        else {
            return Ok(Split::At(vec![])); // no rows (or only NULLs): one partition
        };
        let histogram = match self.first_order_base_column() {
            Some((table, column)) => self.driver.int_histogram(&table, &column)?,
            None => None,
        };
        Ok(Split::At(match histogram {
            Some(bounds) if bounds.len() > n => crate::query::split_by_histogram(&bounds, min, max, n),
            _ => crate::query::split_evenly(min, max, n),
        }))
    }

    /// The base table and column of the first order column, when it is one.
    fn first_order_base_column(&self) -> Option<(String, String)> {
        let table = self.shape.table.clone().filter(|_| self.shape.from_sql.is_none())?;
        let first = self.shape.partition_column()?;
        let column = crate::keys::base_column(&first.expr, &table, !self.shape.joins.is_empty(), D::CATALOGUE.case)?;
        Some((table, column))
    }
}

impl<D: Driver> Paged for ServerSource<D> {
    type Query = PageQuery;
    fn plan_strategy(&self) -> Strategy {
        self.plan.strategy
    }
    fn page_query(&self, after: Option<&Cursor>, limit: Option<usize>, offset: Option<u64>) -> PageQuery {
        self.shape.page(&self.field_names(), after, limit, offset)
    }
    /// Rows per keyset or offset page: several batches, because each page costs a round
    /// trip during which the server waits. The rows still stream through (a page is
    /// never held), so memory does not grow with it.
    fn page_rows(&self) -> usize {
        self.batching.size.saturating_mul(PAGE_BATCHES)
    }
    fn run_statement(
        &mut self,
        q: &PageQuery,
        at: &mut Progress,
        emit: &mut dyn FnMut(RecordBatch, Option<&Cursor>) -> bool,
    ) -> Result<(usize, Flow), Fail> {
        let visible = self.shape.exprs.len();
        let capacity = self.batching.size.min(65_536);
        let mut rows = Assembler {
            columns: &self.columns,
            schema: &self.schema,
            shape: &self.shape,
            cancel: &self.cancel,
            sql: &q.bound.sql,
            builders: self.columns[..visible].iter().map(|c| c.builder(capacity)).collect(),
            cut: BatchCut::new(self.batching.size, self.batching.bytes, &self.batching.limit),
            read: 0,
            last: None,
        };
        let flow = self.driver.run(q, &mut rows, at, emit)?;
        Ok((rows.read, flow))
    }
}

impl<D: Driver> Resumable for ServerSource<D> {
    fn connected(&self) -> bool {
        self.driver.connected()
    }
    fn connect(&mut self) -> Result<(), Fail> {
        self.driver.connect(self.snapshot)
    }
    fn read_from(
        &mut self,
        at: &mut Progress,
        emit: &mut dyn FnMut(RecordBatch, Option<&Cursor>) -> bool,
    ) -> Result<Flow, Fail> {
        read_pages(self, at, emit)
    }
    fn release(&mut self) {
        self.driver.release()
    }
    fn unique_order(&self) -> bool {
        self.shape.unique_order
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

/// How a failed read is reported: a cancel as such, a lost connection as resumable, a
/// value the database rejects (SQLSTATE class 22) as bad input, anything else with the
/// cursor the read had reached.
pub(crate) fn read_failure(
    cancel: &CancelToken,
    sql: &str,
    at: &Progress,
    lost: bool,
    rejected: bool,
    message: String,
) -> Fail {
    if cancel.is_cancelled() {
        return Fail::Other(SourceError::Cancelled);
    }
    if lost {
        return Fail::Lost(message);
    }
    if rejected {
        return Fail::Other(SourceError::Rejected { sql: sql.to_string(), message });
    }
    Fail::Other(SourceError::Read {
        sql: sql.to_string(),
        cursor: at.last.as_ref().map_or("(start)".to_string(), |c| c.to_string()),
        message,
    })
}
