//! The SQL every source writes, in one place: the dialect (quoting, placeholders, NULL
//! order, row values, casts), the select list with its hidden key columns, the filter,
//! page statements, and the one keyset predicate generator.
//!
//! A driver only runs what this writes. Keyset paging is where the three copies this
//! replaced had drifted apart (finding 1 of issue 14), so the predicate is written once,
//! from the dialect's NULL order, and tested against all three.

use arrow_schema::DataType;
use ream_core::params::BoundParams;
use ream_core::sql::{bind_into, enclose, BoundSql, Dialect};

use crate::{Count, Cursor, CursorValue, KeyRange, ReadRequest};

/// How one database writes what ream writes.
pub(crate) struct SqlDialect {
    /// How `:name` parameters bind.
    pub bind: Dialect,
    /// The identifier quote.
    pub quote: char,
    /// How a cursor value's placeholder is spelt.
    pub placeholder: Placeholder,
    /// Whether NULL sorts before every value in an ascending order.
    pub nulls_first: bool,
    /// Whether `(a, b) > (?, ?)` is written as one row comparison (which an index serves)
    /// rather than its expansion.
    pub row_values: bool,
    /// The SQL type a spec's declared column type casts to (none: no cast).
    pub cast_type: Option<fn(&DataType) -> String>,
}

/// Placeholder spelling.
#[derive(Clone, Copy)]
pub(crate) enum Placeholder {
    /// `$1`, each value numbered once and reused (PostgreSQL).
    Dollar,
    /// `?1`, numbered once and reused (SQLite).
    QuestionNumbered,
    /// `?`, which cannot be reused: a value repeats for each use (MySQL).
    Question,
}

impl SqlDialect {
    pub fn quote_ident(&self, s: &str) -> String {
        let q = self.quote;
        format!("{q}{}{q}", s.replace(q, &format!("{q}{q}")))
    }
}

pub(crate) static POSTGRES: SqlDialect = SqlDialect {
    bind: Dialect::Postgres,
    quote: '"',
    placeholder: Placeholder::Dollar,
    nulls_first: false,
    row_values: true,
    cast_type: Some(postgres_type),
};

/// MySQL and MariaDB: the expansion, which both turn into index ranges (a row comparison
/// is not always one).
pub(crate) static MYSQL: SqlDialect = SqlDialect {
    bind: Dialect::Mysql,
    quote: '`',
    placeholder: Placeholder::Question,
    nulls_first: true,
    row_values: false,
    cast_type: Some(mysql_type),
};

/// SQLite: declared types are settled by the source, not cast.
pub(crate) static SQLITE: SqlDialect = SqlDialect {
    bind: Dialect::Sqlite,
    quote: '"',
    placeholder: Placeholder::QuestionNumbered,
    nulls_first: true,
    row_values: true,
    cast_type: None,
};

fn postgres_type(dt: &DataType) -> String {
    match dt {
        DataType::Int64 => "bigint".into(),
        DataType::Float64 => "double precision".into(),
        DataType::Boolean => "boolean".into(),
        DataType::Date32 => "date".into(),
        DataType::Timestamp(..) => "timestamp".into(),
        DataType::Binary => "bytea".into(),
        DataType::Decimal128(p, s) => format!("numeric({p},{s})"),
        _ => "text".into(),
    }
}

fn mysql_type(dt: &DataType) -> String {
    match dt {
        DataType::Int64 => "SIGNED".into(),
        DataType::Float64 => "DOUBLE".into(),
        DataType::Boolean => "SIGNED".into(),
        DataType::Date32 => "DATE".into(),
        DataType::Timestamp(..) => "DATETIME(6)".into(),
        DataType::Binary => "BINARY".into(),
        DataType::Decimal128(p, s) => format!("DECIMAL({p},{s})"),
        _ => "CHAR".into(),
    }
}

/// One column of the read order.
#[derive(Clone)]
pub(crate) struct OrderCol {
    pub name: String,
    pub expr: String,
    /// Index of the column in the select list.
    pub select_index: usize,
    /// Known never NULL (a key column, or a NOT NULL column of the base table).
    pub not_null: bool,
}

/// A page statement: the bound SQL, and the cursor values its placeholders take after
/// the parameters', in order.
pub(crate) struct PageQuery {
    pub bound: BoundSql,
    pub cursor: Vec<CursorValue>,
}

/// What a read selects, from where, in which order.
pub(crate) struct Shape {
    pub dialect: &'static SqlDialect,
    /// Expression of each visible field, in schema order.
    pub exprs: Vec<String>,
    /// Hidden select columns after the visible ones (a key the spec does not select, the
    /// rowid): expression and alias.
    pub hidden: Vec<(String, String)>,
    pub order: Vec<OrderCol>,
    /// How many of `order` are group fields (the rest is the key).
    pub prefix_len: usize,
    /// Select indices of the key, to name a row in errors and to refuse NULL keys.
    pub key_cols: Vec<usize>,
    /// Whether the order is provably unique, so a cursor names one position.
    pub unique_order: bool,
    pub from_sql: Option<String>,
    pub table: Option<String>,
    pub joins: Vec<String>,
    pub filter: Option<String>,
    pub params: BoundParams,
    /// An aggregated read's `GROUP BY` expressions (see [`crate::aggregate`]); empty for
    /// a read of rows. Such a read is one statement: no keyset page follows a GROUP BY.
    pub group_by: Vec<String>,
    /// Whether the read aggregates (a `GROUP BY` of no field still does: one row).
    pub aggregated: bool,
    /// A parallel read's partition, on its column's expression (see [`Shape::restrict`]).
    pub range: Option<RangeOn>,
    /// The first order column of a read whose order was dropped (rows in any order):
    /// what it is partitioned on.
    pub unordered_first: Option<OrderCol>,
    /// Fields declared `float` whose expression is cast in the database, by field index:
    /// the expression before the cast. An aggregated read sums it uncast, then casts the
    /// sum (see [`crate::aggregate`]).
    pub float_casts: std::collections::HashMap<usize, String>,
}

/// A partition's range and the column it is on.
pub(crate) struct RangeOn {
    pub expr: String,
    /// Whether the column is known never NULL (no `OR … IS NULL` needed).
    pub not_null: bool,
    pub range: KeyRange,
}

impl Shape {
    pub fn new(dialect: &'static SqlDialect, req: &ReadRequest) -> Shape {
        Shape {
            dialect,
            exprs: vec![],
            hidden: vec![],
            order: vec![],
            prefix_len: 0,
            key_cols: vec![],
            unique_order: false,
            from_sql: req.sql.clone(),
            table: req.table.clone(),
            joins: req.joins.clone(),
            filter: req.filter.clone(),
            params: req.params.clone(),
            group_by: vec![],
            aggregated: false,
            range: None,
            unordered_first: None,
            float_casts: Default::default(),
        }
    }

    pub fn joins_sql(&self) -> String {
        self.joins.iter().map(|j| format!(" {j}")).collect()
    }

    /// The FROM clause: the spec's SQL as a subquery `q`, or the table and its joins.
    pub fn source_clause(&self) -> String {
        match &self.from_sql {
            Some(sql) => format!("{} AS q", enclose(sql)),
            None => format!("{}{}", self.table.as_deref().unwrap_or(""), self.joins_sql()),
        }
    }

    /// `SELECT expr AS "name", … FROM … WHERE (filter)`. A field without a name yet
    /// (before the schema is known) is its bare expression.
    pub fn select_sql(&self, names: &[String], hidden: &[(String, String)]) -> String {
        let q = |n: &str| self.dialect.quote_ident(n);
        let mut cols: Vec<String> = self
            .exprs
            .iter()
            .enumerate()
            .map(|(i, e)| names.get(i).map_or_else(|| e.clone(), |n| format!("{e} AS {}", q(n))))
            .collect();
        cols.extend(hidden.iter().map(|(e, a)| format!("{e} AS {}", q(a))));
        let mut sql = format!("SELECT {} FROM {}", cols.join(", "), self.source_clause());
        if let Some(w) = self.where_sql() {
            sql.push_str(&format!(" WHERE {w}"));
        }
        if !self.group_by.is_empty() {
            sql.push_str(&format!(" GROUP BY {}", self.group_by.join(", ")));
        }
        sql
    }

    /// The statement that counts what the read matches, over its FROM and WHERE with no
    /// order (an ORDER BY would sort only to count): `count(*)`, or the distinct values
    /// of the field `names` calls `field`, NULL as one of them (a burst of its own).
    /// `None` for a field the read does not select.
    pub fn count_sql(&self, names: &[String], count: &Count) -> Option<BoundSql> {
        let what = match count {
            Count::Rows => "count(*)".to_string(),
            Count::Distinct(field) => {
                let e = self.exprs.get(names.iter().position(|n| n == field)?)?;
                format!("count(DISTINCT {e}) + coalesce(max(CASE WHEN {e} IS NULL THEN 1 ELSE 0 END), 0)")
            }
        };
        let mut sql = format!("SELECT {what} FROM {}", self.source_clause());
        if let Some(w) = self.where_sql() {
            sql.push_str(&format!(" WHERE {w}"));
        }
        if self.aggregated {
            // The groups an aggregated read returns (one, without group fields).
            sql = match (self.group_by.is_empty(), count) {
                (true, _) => "SELECT 1".into(),
                (false, Count::Rows) => format!(
                    "SELECT count(*) FROM (SELECT 1 AS one FROM {}{} GROUP BY {}) AS g",
                    self.source_clause(),
                    self.filter.as_ref().map_or(String::new(), |f| format!(" WHERE {}", enclose(f))),
                    self.group_by.join(", ")
                ),
                (false, Count::Distinct(_)) => return None,
            };
        }
        Some(self.bind(&sql))
    }

    /// `:name` placeholders replaced by the dialect's, with their values.
    pub fn bind(&self, sql: &str) -> BoundSql {
        let mut out = BoundSql::default();
        bind_into(&mut out, sql, &self.params, self.dialect.bind);
        out
    }

    /// A page: the select with the hidden columns, the keyset predicate after `after`,
    /// the order, the limit and offset.
    pub fn page(
        &self,
        names: &[String],
        after: Option<&Cursor>,
        limit: Option<usize>,
        offset: Option<u64>,
    ) -> PageQuery {
        let mut bound = self.bind(&self.select_sql(names, &self.hidden));
        let mut cursor = Vec::new();
        if let Some(after) = after.filter(|_| !self.order.is_empty()) {
            bound.sql.push_str(if self.where_sql().is_some() { " AND " } else { " WHERE " });
            let (predicate, values) = keyset_predicate(self.dialect, &self.order, after, bound.values.len() + 1);
            bound.sql.push_str(&predicate);
            cursor = values;
        }
        crate::order_and_page(&mut bound.sql, self.order.iter().map(|o| o.expr.as_str()), limit, offset);
        PageQuery { bound, cursor }
    }

    /// The WHERE condition: the spec's filter, and a partition's range.
    fn where_sql(&self) -> Option<String> {
        let range = self.range.as_ref().and_then(|r| r.predicate(self.dialect.nulls_first));
        match (&self.filter, range) {
            (Some(f), Some(r)) => Some(format!("{} AND {r}", enclose(f))),
            (Some(f), None) => Some(enclose(f)),
            (None, r) => r,
        }
    }

    /// Read only `range` of the first order column (a parallel read's partition). Called
    /// once the order is known; the range stays on that column whatever the order
    /// becomes.
    pub fn restrict(&mut self, range: Option<KeyRange>) -> Result<(), String> {
        let Some(range) = range else { return Ok(()) };
        let first = self.order.first().ok_or("a read with no order cannot be partitioned")?;
        self.range = Some(RangeOn { expr: first.expr.clone(), not_null: first.not_null, range });
        Ok(())
    }

    /// The column a parallel read is cut on: the first of the order, or of the order
    /// the read would have had, where its rows come in any order.
    pub fn partition_column(&self) -> Option<&OrderCol> {
        self.order.first().or(self.unordered_first.as_ref())
    }

    /// Why this read cannot be cut into ranges of its first order column (an aggregated
    /// read, no order, a column that is not an integer), if it cannot; `schema` is the
    /// read's. A hidden order column (SQLite's rowid) is an integer.
    pub fn unsplittable(&self, schema: &arrow_schema::Schema) -> Option<String> {
        if self.aggregated {
            return Some("the database aggregates (pushdown)".into());
        }
        let Some(first) = self.partition_column() else { return Some("the read has no order".into()) };
        match schema.fields().get(first.select_index).map(|f| f.data_type()) {
            Some(DataType::Int64) | None => None,
            Some(t) => Some(format!(
                "the order's first field `{}` is {}, not an integer",
                first.name,
                ream_core::types::type_label(t)
            )),
        }
    }

    /// `SELECT min(e), max(e)` of the first order column over the read's rows, as
    /// 64-bit integers (`None` without an order).
    pub fn extent_sql(&self) -> Option<BoundSql> {
        let e = &self.partition_column()?.expr;
        let int = |x: String| match self.dialect.cast_type {
            Some(cast) => format!("CAST({x} AS {})", cast(&DataType::Int64)),
            None => x,
        };
        let mut sql =
            format!("SELECT {}, {} FROM {}", int(format!("min({e})")), int(format!("max({e})")), self.source_clause());
        if let Some(w) = self.where_sql() {
            sql.push_str(&format!(" WHERE {w}"));
        }
        Some(self.bind(&sql))
    }

    /// The order's field names.
    pub fn order_names(&self) -> Vec<String> {
        self.order.iter().map(|o| o.name.clone()).collect()
    }

    /// Add a column to the order, once.
    pub fn push_order(&mut self, col: OrderCol) {
        if !self.order.iter().any(|o| o.name == col.name) {
            self.order.push(col);
        }
    }

    /// Keep only the group fields in the order: one statement that need not order rows
    /// inside a group. The order then names no single row.
    pub fn order_by_groups_only(&mut self) {
        if self.unordered_first.is_none() {
            self.unordered_first = self.order.first().cloned();
        }
        self.order.truncate(self.prefix_len);
        self.unique_order = false;
    }

    /// The name of select column `k` in the order, for messages.
    pub fn order_name(&self, k: usize) -> Option<&str> {
        self.order.iter().find(|o| o.select_index == k).map(|o| o.name.as_str())
    }
}

impl RangeOn {
    /// `e >= lo AND e < hi`, with the NULLs where they sort; `None` for the whole range.
    /// The bounds are integers ream computed (`split_points`), written as literals.
    fn predicate(&self, nulls_first: bool) -> Option<String> {
        let (e, r) = (&self.expr, self.range);
        let mut parts = Vec::new();
        if let Some(lo) = r.lo {
            parts.push(format!("{e} >= {lo}"));
        }
        if let Some(hi) = r.hi {
            parts.push(format!("{e} < {hi}"));
        }
        if parts.is_empty() {
            return None;
        }
        let nulls_here = if nulls_first { r.lo.is_none() } else { r.hi.is_none() };
        Some(match nulls_here && !self.not_null {
            true => format!("({} OR {e} IS NULL)", parts.join(" AND ")),
            false => format!("({})", parts.join(" AND ")),
        })
    }
}

/// `n - 1` points that cut `min..=max` into `n` ranges of equal width, fewer where the
/// range holds fewer values (each point is the start of the next range).
pub fn split_evenly(min: i64, max: i64, n: usize) -> Vec<i64> {
    let width = max as i128 - min as i128 + 1;
    let mut points: Vec<i64> = (1..n as i128).map(|i| (min as i128 + width * i / n as i128) as i64).collect();
    points.retain(|&p| p > min && p <= max);
    points.dedup();
    points
}

/// `n - 1` points from a histogram's bounds (each bucket holding about as many rows):
/// the bounds at each `1/n` of the way, distinct and inside the read's extent.
pub(crate) fn split_by_histogram(bounds: &[i64], min: i64, max: i64, n: usize) -> Vec<i64> {
    let last = bounds.len().saturating_sub(1);
    let mut points: Vec<i64> = (1..n).filter_map(|i| bounds.get(last * i / n).copied()).collect();
    points.retain(|&p| p > min && p <= max);
    points.sort_unstable();
    points.dedup();
    points
}

/// Numbers and collects the cursor values a predicate uses.
struct Binder<'a> {
    placeholder: Placeholder,
    after: &'a Cursor,
    next: usize,
    numbers: Vec<Option<usize>>,
    values: Vec<CursorValue>,
}

impl Binder<'_> {
    /// The placeholder of cursor value `j`.
    fn place(&mut self, j: usize) -> String {
        let prefix = match self.placeholder {
            Placeholder::Question => {
                self.values.push(self.after.0[j].clone());
                return "?".into();
            }
            Placeholder::Dollar => "$",
            Placeholder::QuestionNumbered => "?",
        };
        let n = *self.numbers[j].get_or_insert_with(|| {
            self.values.push(self.after.0[j].clone());
            self.next += 1;
            self.next - 1
        });
        format!("{prefix}{n}")
    }
}

/// Rows strictly after `after` in the order, with numbered placeholders from `first`.
/// Returns the predicate and the cursor values it binds, in placeholder order.
///
/// The lexicographic expansion `(o1 > v1) OR (o1 = v1 AND o2 > v2) …`, with NULLs where
/// the dialect sorts them: a NULL cursor value is followed by every non-NULL value when
/// NULLs sort first, by nothing when they sort last; a value in a column that may be
/// NULL is followed by the NULLs when they sort last. Where the dialect has row values,
/// the tail of columns that behave like values (a non-NULL cursor value, and a column
/// that cannot be NULL or whose NULLs sort first, before the value) is one row
/// comparison, which an index serves.
pub(crate) fn keyset_predicate(
    d: &SqlDialect,
    order: &[OrderCol],
    after: &Cursor,
    first: usize,
) -> (String, Vec<CursorValue>) {
    let is_null = |j: usize| after.0[j] == CursorValue::Null;
    let mut b =
        Binder { placeholder: d.placeholder, after, next: first, numbers: vec![None; order.len()], values: vec![] };
    let plain = |j: usize| !is_null(j) && (d.nulls_first || order[j].not_null);
    let tail = match d.row_values {
        true => (0..order.len()).rev().take_while(|&j| plain(j)).last().unwrap_or(order.len()),
        false => order.len(),
    };
    let mut terms = Vec::new();
    for i in 0..tail {
        if is_null(i) && !d.nulls_first {
            continue; // NULL sorts last: nothing after it in this column.
        }
        // Placeholders in the order they stand in the text (`?` is positional).
        let mut parts = equal_up_to(order, i, &mut b);
        let e = &order[i].expr;
        parts.push(match is_null(i) {
            true => format!("{e} IS NOT NULL"),
            false if d.nulls_first || order[i].not_null => format!("{e} > {}", b.place(i)),
            false => format!("({e} > {p} OR {e} IS NULL)", p = b.place(i)),
        });
        terms.push(format!("({})", parts.join(" AND ")));
    }
    if tail < order.len() {
        let cols: Vec<&str> = order[tail..].iter().map(|o| o.expr.as_str()).collect();
        let mut parts = equal_up_to(order, tail, &mut b);
        let vals: Vec<String> = (tail..order.len()).map(|j| b.place(j)).collect();
        parts.push(format!("({}) > ({})", cols.join(", "), vals.join(", ")));
        terms.push(format!("({})", parts.join(" AND ")));
    }
    if terms.is_empty() {
        return ("(1 = 0)".into(), b.values);
    }
    (format!("({})", terms.join(" OR ")), b.values)
}

/// `o_j = v_j` (or `IS NULL`) for the columns before `i`.
fn equal_up_to(order: &[OrderCol], i: usize, b: &mut Binder<'_>) -> Vec<String> {
    (0..i)
        .map(|j| match b.after.0[j] {
            CursorValue::Null => format!("{} IS NULL", order[j].expr),
            _ => format!("{} = {}", order[j].expr, b.place(j)),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col(name: &str, not_null: bool) -> OrderCol {
        OrderCol { name: name.into(), expr: name.into(), select_index: 0, not_null }
    }

    fn text(s: &str) -> CursorValue {
        CursorValue::Text(s.into())
    }

    #[test]
    fn postgres_uses_a_row_comparison_when_nothing_can_be_null() {
        let order = [col("a", true), col("b", true)];
        let after = Cursor(vec![CursorValue::Int(1), CursorValue::Int(2)]);
        let (sql, values) = keyset_predicate(&POSTGRES, &order, &after, 3);
        assert_eq!(sql, "(((a, b) > ($3, $4)))");
        assert_eq!(values, vec![CursorValue::Int(1), CursorValue::Int(2)]);
    }

    #[test]
    fn postgres_puts_nulls_last_and_numbers_each_value_once() {
        let order = [col("g", false), col("k", true)];
        let after = Cursor(vec![text("x"), CursorValue::Int(2)]);
        let (sql, values) = keyset_predicate(&POSTGRES, &order, &after, 1);
        assert_eq!(sql, "(((g > $1 OR g IS NULL)) OR (g = $1 AND (k) > ($2)))");
        assert_eq!(values, vec![text("x"), CursorValue::Int(2)]);
        let after = Cursor(vec![CursorValue::Null, CursorValue::Int(2)]);
        let (sql, values) = keyset_predicate(&POSTGRES, &order, &after, 1);
        assert_eq!(sql, "((g IS NULL AND (k) > ($1)))");
        assert_eq!(values, vec![CursorValue::Int(2)]);
    }

    #[test]
    fn postgres_after_the_last_null_of_every_column_is_nothing() {
        let order = [col("g", false)];
        let (sql, values) = keyset_predicate(&POSTGRES, &order, &Cursor(vec![CursorValue::Null]), 1);
        assert_eq!((sql.as_str(), values.len()), ("(1 = 0)", 0));
    }

    #[test]
    fn mysql_repeats_values_and_puts_nulls_first() {
        let order = [col("g", false), col("k", true)];
        let (sql, values) = keyset_predicate(&MYSQL, &order, &Cursor(vec![text("x"), CursorValue::Int(2)]), 1);
        assert_eq!(sql, "((g > ?) OR (g = ? AND k > ?))");
        assert_eq!(values, vec![text("x"), text("x"), CursorValue::Int(2)]);
        let (sql, values) = keyset_predicate(&MYSQL, &order, &Cursor(vec![CursorValue::Null, CursorValue::Int(2)]), 1);
        assert_eq!(sql, "((g IS NOT NULL) OR (g IS NULL AND k > ?))");
        assert_eq!(values, vec![CursorValue::Int(2)]);
    }

    #[test]
    fn sqlite_compares_rows_after_values_and_expands_around_a_null() {
        let order = [col("g", false), col("k", true)];
        let (sql, _) = keyset_predicate(&SQLITE, &order, &Cursor(vec![text("x"), CursorValue::Int(2)]), 2);
        assert_eq!(sql, "(((g, k) > (?2, ?3)))");
        let (sql, values) = keyset_predicate(&SQLITE, &order, &Cursor(vec![CursorValue::Null, CursorValue::Int(2)]), 1);
        assert_eq!(sql, "((g IS NOT NULL) OR (g IS NULL AND (k) > (?1)))");
        assert_eq!(values, vec![CursorValue::Int(2)]);
    }

    #[test]
    fn even_splits_cover_the_extent_once_and_never_repeat_a_point() {
        assert_eq!(split_evenly(1, 100, 4), vec![26, 51, 76]);
        assert_eq!(split_evenly(5, 6, 7), vec![6]);
        assert_eq!(split_evenly(3, 3, 2), Vec::<i64>::new());
        let wide = split_evenly(i64::MIN, i64::MAX, 2);
        assert_eq!(wide, vec![0]);
        assert_eq!(split_by_histogram(&[1, 10, 20, 30, 40], 1, 40, 2), vec![20]);
        assert_eq!(split_by_histogram(&[1, 1, 1, 1, 9], 1, 9, 3), Vec::<i64>::new());
    }

    #[test]
    fn a_partition_holds_the_nulls_at_the_end_where_they_sort() {
        let on = |lo, hi, not_null| RangeOn { expr: "k".into(), not_null, range: KeyRange { lo, hi } };
        assert_eq!(on(None, Some(5), false).predicate(true).as_deref(), Some("(k < 5 OR k IS NULL)"));
        assert_eq!(on(None, Some(5), false).predicate(false).as_deref(), Some("(k < 5)"));
        assert_eq!(on(Some(5), None, false).predicate(false).as_deref(), Some("(k >= 5 OR k IS NULL)"));
        assert_eq!(on(Some(-2), Some(5), true).predicate(true).as_deref(), Some("(k >= -2 AND k < 5)"));
        assert_eq!(on(None, None, false).predicate(true), None);
    }

    #[test]
    fn identifiers_are_quoted_with_the_quote_doubled() {
        assert_eq!(POSTGRES.quote_ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(MYSQL.quote_ident("a`b"), "`a``b`");
    }
}
