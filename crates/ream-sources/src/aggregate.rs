//! Aggregate pushdown's read: the rows of a summary report come from one `GROUP BY` at
//! its finest group level, computed next to the data, instead of every detail row.
//!
//! The request's read is resolved as usual (its fields and their expressions); then
//! [`aggregate_shape`] turns its select into the group fields followed by one partial
//! aggregate per [`Partial`], grouped and ordered by the group fields. The stages roll
//! the outer levels up from these rows (`ream_stages::Rollup`).

use arrow_schema::DataType;

use crate::query::{Shape, SqlDialect};
use crate::SourceError;

/// What `--explain` says of an aggregated read's strategy.
pub const PUSHDOWN_REASON: &str = "pushdown: the database aggregates, one GROUP BY statement at the finest group level";

/// What an aggregated read computes per group of `by`.
#[derive(Debug, Clone, PartialEq)]
pub struct Aggregation {
    /// The group fields, outermost first: the read groups and orders by them.
    pub by: Vec<String>,
    /// The columns after the group fields.
    pub partials: Vec<Partial>,
}

/// One aggregate column of an aggregated read.
#[derive(Debug, Clone, PartialEq)]
pub struct Partial {
    /// Its name in the read's schema.
    pub name: String,
    pub of: PartialOf,
}

/// An aggregate of a field of the base read (by name).
#[derive(Debug, Clone, PartialEq)]
pub enum PartialOf {
    /// `COUNT(*)`.
    Rows,
    /// `COUNT(x)`: the values that are not NULL.
    Count(String),
    /// `COUNT(DISTINCT x)`.
    CountDistinct(String),
    /// `SUM(x)`, exact where the database sums integers and decimals exactly
    /// (PostgreSQL's and MySQL's numeric results).
    Sum(String),
    /// `SUM(x >> 32)` and `SUM(x & 0xFFFFFFFF)`: an integer sum in two halves that cannot
    /// overflow SQLite's 64-bit `SUM` (which fails where ream's i128 sum goes on); the
    /// total is `high · 2³² + low`, exactly.
    SumHigh(String),
    SumLow(String),
    /// `MIN(x)`, `MAX(x)`.
    Min(String),
    Max(String),
    /// `CAST(AVG(x) AS double)`.
    FloatAvg(String),
    /// `CAST(VAR_SAMP(x) AS double)` (PostgreSQL, MySQL): with the count and the mean, the
    /// group's moments, which combine exactly as Welford's (Chan et al.).
    VarSamp(String),
}

impl PartialOf {
    /// The base field it aggregates (none for `Rows`).
    pub fn field(&self) -> Option<&str> {
        match self {
            PartialOf::Rows => None,
            PartialOf::Count(f)
            | PartialOf::CountDistinct(f)
            | PartialOf::Sum(f)
            | PartialOf::SumHigh(f)
            | PartialOf::SumLow(f)
            | PartialOf::Min(f)
            | PartialOf::Max(f)
            | PartialOf::FloatAvg(f)
            | PartialOf::VarSamp(f) => Some(f),
        }
    }

    /// Its SQL over the field's expression `e`.
    fn sql(&self, dialect: &SqlDialect, e: &str) -> String {
        let double = double_of(dialect);
        match self {
            PartialOf::Rows => "COUNT(*)".into(),
            PartialOf::Count(_) => format!("COUNT({e})"),
            PartialOf::CountDistinct(_) => format!("COUNT(DISTINCT {e})"),
            PartialOf::Sum(_) => format!("SUM({e})"),
            PartialOf::SumHigh(_) => format!("SUM(({e}) >> 32)"),
            PartialOf::SumLow(_) => format!("SUM(({e}) & 4294967295)"),
            PartialOf::Min(_) => format!("MIN({e})"),
            PartialOf::Max(_) => format!("MAX({e})"),
            PartialOf::FloatAvg(_) => format!("CAST(AVG({e}) AS {double})"),
            PartialOf::VarSamp(_) => format!("CAST(VAR_SAMP({e}) AS {double})"),
        }
    }

    /// The type SQLite's source gives the column (which has no declared type of its own),
    /// from the base field's type: counts and halves are integers, float aggregates
    /// floats, and a min or max is of its field's type.
    pub(crate) fn sqlite_type(&self, base: Option<&DataType>) -> Option<DataType> {
        match self {
            PartialOf::Rows
            | PartialOf::Count(_)
            | PartialOf::CountDistinct(_)
            | PartialOf::SumHigh(_)
            | PartialOf::SumLow(_) => Some(DataType::Int64),
            PartialOf::FloatAvg(_) | PartialOf::VarSamp(_) => Some(DataType::Float64),
            PartialOf::Sum(_) | PartialOf::Min(_) | PartialOf::Max(_) => base.cloned(),
        }
    }
}

/// The dialect's name for a double.
fn double_of(dialect: &SqlDialect) -> &'static str {
    match dialect.bind {
        ream_core::sql::Dialect::Postgres => "DOUBLE PRECISION",
        ream_core::sql::Dialect::Mysql => "DOUBLE",
        ream_core::sql::Dialect::Sqlite => "REAL",
    }
}

/// Turn the resolved base read in `shape` (its fields `names`) into the aggregated read:
/// the group fields' expressions, then each partial over its field's, grouped by the
/// group fields. Returns the new field names and, for each, the base field it comes from.
pub(crate) fn aggregate_shape(
    shape: &mut Shape,
    names: &[String],
    agg: &Aggregation,
) -> Result<(Vec<String>, Vec<Option<usize>>), SourceError> {
    let index = |f: &str| {
        names
            .iter()
            .position(|n| n == f)
            .ok_or_else(|| SourceError::UnknownField { field: f.to_string(), known: names.to_vec() })
    };
    let (mut exprs, mut out, mut from) = (Vec::new(), Vec::new(), Vec::new());
    for by in &agg.by {
        let i = index(by)?;
        exprs.push(shape.exprs[i].clone());
        out.push(by.clone());
        from.push(Some(i));
    }
    shape.group_by = exprs.clone();
    for p in &agg.partials {
        let base = p.of.field().map(index).transpose()?;
        let e = base.map_or_else(String::new, |i| shape.exprs[i].clone());
        // A sum of a field declared `float` sums the expression as the database has it
        // (numeric: exactly) and casts the sum once, not each row: TPC-H Q1 on PostgreSQL
        // took 2.95 s with a cast per row, 2.21 s so (psql's own Q1: 2.17 s). The sum is
        // then the exact one rounded, within the streaming path's float sum's 1e-9.
        let uncast = base.and_then(|i| shape.float_casts.get(&i)).filter(|_| matches!(p.of, PartialOf::Sum(_)));
        exprs.push(match uncast {
            Some(inner) => format!("CAST(SUM({inner}) AS {})", double_of(shape.dialect)),
            None => p.of.sql(shape.dialect, &e),
        });
        out.push(p.name.clone());
        from.push(base);
    }
    shape.exprs = exprs;
    shape.hidden.clear();
    Ok((out, from))
}
