use std::collections::HashSet;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Decimal128Type, Float64Type, Int64Type};
use arrow_array::{Array, RecordBatch};
use arrow_schema::{DataType, SchemaRef};
use ream_core::spec::Aggregate;
use ream_core::types::{is_decimal_text, not_numeric};
use ream_core::{Event, Value};

use crate::exact::{ExactSum, Inexact};
use crate::rollup::{self, Merge, RollupVariable};
use crate::{compensated, neumaier, Stage, StageError, VariableSpec};

/// Variables. Integers and decimals sum exactly: integers in i128, decimals in i256, so no
/// sum can wrap (a 38-digit decimal column would pass i128 after two rows); a decimal sum
/// beyond 38 digits, which no output type holds, fails the run naming the variable. Floats sum with Neumaier's
/// compensation; avg, stddev and variance use Welford's method. `stddev` and `variance`
/// are the sample statistics (n − 1), as SQL's `stddev`/`variance`; NULL below two
/// values. Like SQL, aggregates skip NULLs, and `sum`/`avg`/`min`/`max` of no values is
/// NULL. `first`/`last` are the first and last row's value (NULL included).
pub struct Accumulate {
    vars: Vec<Var>,
    /// Rollup mode ([`crate::rollup`]): the column of each group's row count, and the
    /// detail rows counted so far, which `End` reports instead of the groups read.
    rows_col: Option<usize>,
    detail_rows: u64,
}

struct Var {
    spec: VariableSpec,
    kind: NumKind,
    state: State,
    /// Rollup mode: how the variable merges the aggregated read's partials.
    merge: Option<(Merge, DataType)>,
}

#[derive(Clone, Copy, PartialEq)]
enum NumKind {
    Int,
    Float,
    Decimal(i8),
    /// Exact decimal text of varying scale (see `ream_core::types::DECIMAL_TEXT`).
    DecimalText,
    Other,
}

enum State {
    Count(u64),
    SumInt(i128, bool),
    SumDecimal(ExactSum, bool),
    /// The exact sum and the count of values, for a decimal average.
    AvgDecimal(ExactSum, u64),
    SumFloat {
        sum: f64,
        comp: f64,
        any: bool,
    },
    Welford {
        n: u64,
        mean: f64,
        m2: f64,
    },
    MinMax(Value),
    First(Option<Value>),
    Last(Value),
    /// The set and the bytes of its text values.
    Distinct(DistinctSet, usize),
}

enum DistinctSet {
    Int(HashSet<i64>),
    Text(HashSet<String>),
    Other(HashSet<String>),
}

/// `count_distinct` keeps every distinct value: at most this many per variable (about
/// 40 MB of integers; text is bounded by `MAX_DISTINCT_TEXT_BYTES` too), so one report
/// cannot take the server's memory, which the run's budget does not see.
pub const MAX_DISTINCT: usize = 1_000_000;
pub const MAX_DISTINCT_TEXT_BYTES: usize = 64 << 20;

impl DistinctSet {
    fn len(&self) -> usize {
        match self {
            DistinctSet::Int(s) => s.len(),
            DistinctSet::Text(s) | DistinctSet::Other(s) => s.len(),
        }
    }
}

impl Accumulate {
    pub fn new(specs: Vec<VariableSpec>, schema: &SchemaRef) -> Result<Self, StageError> {
        let mut vars = Vec::new();
        for spec in specs {
            let dt = spec.field.map(|i| schema.field(i).data_type().clone());
            let kind = spec.field.map_or(NumKind::Other, |i| kind_of(schema.field(i)));
            let numeric_only = spec.aggregate.needs_number();
            if let (true, NumKind::Other, Some(i)) = (numeric_only, kind, spec.field) {
                return Err(StageError::Config(not_numeric(spec.aggregate.name(), schema.field(i), false)));
            }
            if spec.field.is_none() && spec.aggregate != Aggregate::Count {
                return Err(StageError::Config(format!("{} needs a field", spec.aggregate.name())));
            }
            let state = initial(&spec, kind, dt.as_ref());
            vars.push(Var { spec, kind, state, merge: None });
        }
        Ok(Accumulate { vars, rows_col: None, detail_rows: 0 })
    }

    /// Rollup mode: the rows are an aggregated read's (one per group at the finest level,
    /// `rows` the column of their row counts), and each variable merges its partials.
    pub fn rollup(variables: Vec<RollupVariable>, rows: usize) -> Result<Self, StageError> {
        let mut vars = Vec::new();
        for v in variables {
            let base_type = v.base.as_ref().map_or(DataType::Int64, |f| f.data_type().clone());
            // `count: "*"` has no field: its partial is a row count.
            let kind = v.base.as_ref().map_or(NumKind::Int, kind_of);
            let state = merge_initial(&v.spec, kind);
            vars.push(Var { spec: v.spec, kind, state, merge: Some((v.merge, base_type)) });
        }
        Ok(Accumulate { vars, rows_col: Some(rows), detail_rows: 0 })
    }

    fn values(&self) -> Result<Arc<[Value]>, StageError> {
        Ok(self.vars.iter().map(|v| v.value()).collect::<Result<Vec<_>, _>>()?.into())
    }
}

fn initial(spec: &VariableSpec, kind: NumKind, dt: Option<&DataType>) -> State {
    match spec.aggregate {
        Aggregate::Count => State::Count(0),
        Aggregate::Sum => match kind {
            NumKind::Int => State::SumInt(0, false),
            NumKind::Decimal(s) => State::SumDecimal(ExactSum::at_scale(s), false),
            NumKind::DecimalText => State::SumDecimal(ExactSum::ZERO, false),
            _ => State::SumFloat { sum: 0.0, comp: 0.0, any: false },
        },
        Aggregate::Avg => match kind {
            NumKind::Decimal(s) => State::AvgDecimal(ExactSum::at_scale(s), 0),
            NumKind::DecimalText => State::AvgDecimal(ExactSum::ZERO, 0),
            _ => State::Welford { n: 0, mean: 0.0, m2: 0.0 },
        },
        Aggregate::Stddev | Aggregate::Variance => State::Welford { n: 0, mean: 0.0, m2: 0.0 },
        Aggregate::Min | Aggregate::Max => State::MinMax(Value::Null),
        Aggregate::First => State::First(None),
        Aggregate::Last => State::Last(Value::Null),
        Aggregate::CountDistinct => State::Distinct(
            match dt {
                Some(DataType::Int64) => DistinctSet::Int(HashSet::new()),
                Some(DataType::Utf8) => DistinctSet::Text(HashSet::new()),
                _ => DistinctSet::Other(HashSet::new()),
            },
            0,
        ),
    }
}

/// How a field's values add up: exactly as integers or decimals, as floats, or not at all.
fn kind_of(field: &arrow_schema::Field) -> NumKind {
    match field.data_type() {
        DataType::Int64 => NumKind::Int,
        DataType::Float64 => NumKind::Float,
        DataType::Decimal128(_, s) => NumKind::Decimal(*s),
        DataType::Utf8 if is_decimal_text(field) => NumKind::DecimalText,
        _ => NumKind::Other,
    }
}

/// Whether `v` replaces `cur` as the least (`want_min`) or greatest value so far; NULL
/// never does, and anything replaces a NULL.
fn beats(v: &Value, cur: &Value, want_min: bool) -> bool {
    match ream_core::params::compare(v, cur) {
        _ if v.is_null() => false,
        _ if cur.is_null() => true,
        Some(std::cmp::Ordering::Less) => want_min,
        Some(std::cmp::Ordering::Greater) => !want_min,
        _ => false,
    }
}

/// A rollup variable's starting state: counts of every kind merge as counts.
fn merge_initial(spec: &VariableSpec, kind: NumKind) -> State {
    match spec.aggregate {
        Aggregate::Count | Aggregate::CountDistinct => State::Count(0),
        _ => initial(spec, kind, None),
    }
}

impl Var {
    fn reset(&mut self) {
        if self.merge.is_some() {
            self.state = merge_initial(&self.spec, self.kind);
            return;
        }
        self.state = initial(&self.spec, self.kind, None);
        if let State::Distinct(d, _) = &mut self.state {
            // Keep the set's kind (initial() without a type makes `Other`).
            *d = match self.kind {
                NumKind::Int => DistinctSet::Int(HashSet::new()),
                _ => DistinctSet::Other(HashSet::new()),
            };
        }
    }

    fn update(&mut self, batch: &RecordBatch) -> Result<(), StageError> {
        let rows = batch.num_rows();
        let Some(col) = self.spec.field.map(|i| batch.column(i)) else {
            if let State::Count(n) = &mut self.state {
                *n += rows as u64;
            }
            return Ok(());
        };
        let col = col.as_ref();
        match &mut self.state {
            State::Count(n) => *n += (col.len() - col.null_count()) as u64,
            State::SumInt(s, any) => {
                let a = col.as_primitive::<Int64Type>();
                if a.null_count() < a.len() {
                    *any = true;
                }
                *s += a.iter().flatten().map(i128::from).sum::<i128>();
            }
            State::SumDecimal(s, any) => {
                *any |= col.null_count() < col.len();
                add_decimals(&self.spec.name, s, col)?;
            }
            State::AvgDecimal(s, n) => {
                *n += (col.len() - col.null_count()) as u64;
                add_decimals(&self.spec.name, s, col)?;
            }
            State::SumFloat { sum, comp, any } => {
                for x in floats(col).into_iter().flatten() {
                    *any = true;
                    neumaier(sum, comp, x);
                }
            }
            State::Welford { n, mean, m2 } => {
                for x in floats(col).into_iter().flatten() {
                    *n += 1;
                    let d = x - *mean;
                    *mean += d / *n as f64;
                    *m2 += d * (x - *mean);
                }
            }
            State::MinMax(cur) => {
                let want_min = self.spec.aggregate == Aggregate::Min;
                for i in 0..col.len() {
                    if col.is_null(i) {
                        continue;
                    }
                    let v = match self.kind {
                        NumKind::DecimalText => decimal_text(&self.spec.name, col.as_string::<i32>().value(i))?,
                        _ => Value::from_array(col, i),
                    };
                    if beats(&v, cur, want_min) {
                        *cur = v;
                    }
                }
            }
            State::First(f) => {
                if f.is_none() && rows > 0 {
                    *f = Some(Value::from_array(col, 0));
                }
            }
            State::Last(l) => {
                if rows > 0 {
                    *l = Value::from_array(col, rows - 1);
                }
            }
            State::Distinct(set, bytes) => {
                match set {
                    DistinctSet::Int(s) => s.extend(col.as_primitive::<Int64Type>().iter().flatten()),
                    DistinctSet::Text(s) => {
                        for v in col.as_string::<i32>().iter().flatten() {
                            if !s.contains(v) {
                                *bytes += v.len();
                                s.insert(v.to_string());
                            }
                        }
                    }
                    DistinctSet::Other(s) => {
                        for i in 0..col.len() {
                            if !col.is_null(i) {
                                let v = Value::from_array(col, i).to_string();
                                *bytes += v.len();
                                s.insert(v);
                            }
                        }
                    }
                }
                if set.len() > MAX_DISTINCT || *bytes > MAX_DISTINCT_TEXT_BYTES {
                    return Err(StageError::Compute {
                        stage: "variables",
                        message: format!(
                            "`{}`: count_distinct keeps every distinct value, and there are more than {} of them \
                             (or {} MiB of text): count them in the database instead (COUNT(DISTINCT …) in a `sql:` source)",
                            self.spec.name,
                            MAX_DISTINCT,
                            MAX_DISTINCT_TEXT_BYTES >> 20
                        ),
                    });
                }
            }
        }
        Ok(())
    }

    /// Rollup mode: merge row `i` of an aggregated read.
    fn merge_row(&mut self, batch: &RecordBatch, i: usize) -> Result<(), StageError> {
        let Some((merge, base)) = &self.merge else { return Ok(()) };
        let fail = |m: String| rollup::compute(&self.spec.name, m);
        match (merge, &mut self.state) {
            (Merge::Count(c), State::Count(n)) => *n += rollup::count(batch, *c, i),
            (Merge::Sum(of), State::SumInt(s, any)) => {
                if let Some(x) = rollup::int_sum(batch, *of, i).map_err(fail)? {
                    *s += x;
                    *any = true;
                }
            }
            (Merge::Sum(of), State::SumDecimal(sum, any)) => {
                *any |= rollup::add_decimal(sum, batch, *of, i).map_err(fail)?
            }
            (Merge::Sum(of), State::SumFloat { sum, comp, any }) => {
                if let Some(x) = rollup::float_sum(batch, *of, i).map_err(fail)? {
                    *any = true;
                    neumaier(sum, comp, x);
                }
            }
            (Merge::MinMax(c), State::MinMax(cur)) => {
                let col = batch.column(*c).as_ref();
                // Text, dates and times come back as they are; numbers take the field's kind.
                let v = match self.kind {
                    NumKind::Other => Value::from_array(col, i),
                    _ => rollup::partial_value(col, i, base),
                };
                if beats(&v, cur, self.spec.aggregate == Aggregate::Min) {
                    *cur = v;
                }
            }
            (Merge::Avg { sum, count }, State::AvgDecimal(s, n)) => {
                *n += rollup::count(batch, *count, i);
                rollup::add_decimal(s, batch, *sum, i).map_err(fail)?;
            }
            (Merge::Avg { sum, count }, State::Welford { n, mean, m2 }) => {
                let k = rollup::count(batch, *count, i);
                let total = match self.kind {
                    NumKind::Int => rollup::int_sum(batch, *sum, i).map_err(fail)?.map(|s| s as f64),
                    _ => rollup::float_sum(batch, *sum, i).map_err(fail)?,
                };
                if let (Some(total), true) = (total, k > 0) {
                    (*n, *mean, *m2) = rollup::combine((*n, *mean, *m2), (k, total / k as f64, 0.0));
                }
            }
            (Merge::Moments { count, mean: mc, variance }, State::Welford { n, mean, m2 }) => {
                let k = rollup::count(batch, *count, i);
                if let (Some(m), true) = (rollup::float(batch, *mc, i), k > 0) {
                    let m2k = rollup::float(batch, *variance, i).map_or(0.0, |v| v * (k - 1) as f64);
                    (*n, *mean, *m2) = rollup::combine((*n, *mean, *m2), (k, m, m2k));
                }
            }
            _ => return Err(fail(format!("cannot merge {} partials this way", self.spec.aggregate.name()))),
        }
        Ok(())
    }

    fn value(&self) -> Result<Value, StageError> {
        Ok(match &self.state {
            State::Count(n) => Value::Int(*n as i64),
            State::SumInt(_, false) | State::SumDecimal(_, false) | State::SumFloat { any: false, .. } => Value::Null,
            State::SumInt(s, true) => match i64::try_from(*s) {
                Ok(i) => Value::Int(i),
                Err(_) => Value::Decimal { units: *s, scale: 0 },
            },
            State::SumDecimal(s, true) => return decimal_value(&self.spec.name, "sum", s.value()),
            State::AvgDecimal(_, 0) => Value::Null,
            State::AvgDecimal(s, n) => return decimal_value(&self.spec.name, "average", s.average(*n)),
            State::SumFloat { sum, comp, .. } => Value::Float(compensated(*sum, *comp)),
            State::Welford { n, mean, m2 } => match self.spec.aggregate {
                Aggregate::Avg if *n > 0 => Value::Float(*mean),
                Aggregate::Variance if *n > 1 => Value::Float(m2 / (*n - 1) as f64),
                Aggregate::Stddev if *n > 1 => Value::Float((m2 / (*n - 1) as f64).sqrt()),
                _ => Value::Null,
            },
            State::MinMax(v) | State::Last(v) => v.clone(),
            State::First(v) => v.clone().unwrap_or(Value::Null),
            State::Distinct(set, _) => Value::Int(set.len() as i64),
        })
    }
}

/// An exact result as a value, or an error naming the variable when no decimal holds it.
fn decimal_value(name: &str, what: &str, r: Result<(i128, i8), Inexact>) -> Result<Value, StageError> {
    r.map(|(units, scale)| Value::Decimal { units, scale }).map_err(|e| inexact(name, what, e))
}

fn inexact(name: &str, what: &str, e: Inexact) -> StageError {
    StageError::Compute { stage: "variables", message: format!("`{name}`: the {what} {e}") }
}

/// A column's decimals into an exact sum: `Decimal128` units at their one scale, or
/// decimal text at each value's own.
fn add_decimals(name: &str, sum: &mut ExactSum, col: &dyn Array) -> Result<(), StageError> {
    if let Some(a) = col.as_primitive_opt::<Decimal128Type>() {
        sum.add_units(a.iter().flatten());
        return Ok(());
    }
    for text in col.as_string::<i32>().iter().flatten() {
        let Value::Decimal { units, scale } = decimal_text(name, text)? else { continue };
        sum.add(units, scale).map_err(|e| inexact(name, "sum", e))?;
    }
    Ok(())
}

/// One value of a decimal text column as a decimal.
fn decimal_text(name: &str, text: &str) -> Result<Value, StageError> {
    ream_core::params::parse_decimal(text).ok_or_else(|| StageError::Compute {
        stage: "variables",
        message: format!(
            "`{name}`: the value {text} is not a decimal of at most 38 digits after the point (NaN and \
             Infinity are not summed)"
        ),
    })
}

/// A numeric column as floats (for float sums and the Welford statistics).
fn floats(col: &dyn Array) -> Vec<Option<f64>> {
    match col.data_type() {
        DataType::Float64 => col.as_primitive::<Float64Type>().iter().collect(),
        DataType::Int64 => col.as_primitive::<Int64Type>().iter().map(|v| v.map(|x| x as f64)).collect(),
        DataType::Decimal128(_, s) => {
            let div = 10f64.powi(*s as i32);
            col.as_primitive::<Decimal128Type>().iter().map(|v| v.map(|x| x as f64 / div)).collect()
        }
        // Decimal text (statistics are floats either way).
        DataType::Utf8 => col.as_string::<i32>().iter().map(|v| v.and_then(|t| t.parse().ok())).collect(),
        _ => vec![],
    }
}

impl Stage for Accumulate {
    fn push(&mut self, event: Event, out: &mut Vec<Event>) -> Result<(), StageError> {
        match event {
            Event::Rows(batch) => {
                match self.rows_col {
                    None => {
                        for v in &mut self.vars {
                            v.update(&batch)?;
                        }
                    }
                    Some(c) => {
                        for i in 0..batch.num_rows() {
                            self.detail_rows += rollup::count(&batch, c, i);
                            for v in &mut self.vars {
                                v.merge_row(&batch, i)?;
                            }
                        }
                    }
                }
                out.push(Event::Rows(batch));
            }
            Event::GroupFooter { level, key, .. } => {
                out.push(Event::GroupFooter { level, key, variables: self.values()? });
                for v in &mut self.vars {
                    if v.spec.reset_level == Some(level) {
                        v.reset();
                    }
                }
            }
            Event::End { rows, charts, .. } => {
                let rows = if self.rows_col.is_some() { self.detail_rows } else { rows };
                out.push(Event::End { variables: self.values()?, rows, charts })
            }
            other => out.push(other),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{Decimal128Array, Float64Array, Int64Array};
    use arrow_schema::{Field, Schema};

    fn run(aggs: &[(Aggregate, Option<usize>)], batches: &[RecordBatch]) -> Vec<Value> {
        let specs = aggs
            .iter()
            .map(|(a, f)| VariableSpec { name: "v".into(), aggregate: *a, field: *f, reset_level: None })
            .collect();
        let mut acc = Accumulate::new(specs, &batches[0].schema()).unwrap();
        let mut out = Vec::new();
        for b in batches {
            acc.push(Event::Rows(b.clone()), &mut out).unwrap();
        }
        acc.push(Event::End { variables: Arc::from(vec![]), rows: 0, charts: Arc::from(vec![]) }, &mut out).unwrap();
        match out.pop() {
            Some(Event::End { variables, .. }) => variables.to_vec(),
            _ => unreachable!(),
        }
    }

    fn batch(ints: Vec<Option<i64>>, floats: Vec<Option<f64>>, decs: Vec<Option<i128>>) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("i", DataType::Int64, true),
            Field::new("f", DataType::Float64, true),
            Field::new("d", DataType::Decimal128(12, 2), true),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from(ints)),
                Arc::new(Float64Array::from(floats)),
                Arc::new(Decimal128Array::from(decs).with_precision_and_scale(12, 2).unwrap()),
            ],
        )
        .unwrap()
    }

    #[test]
    fn every_aggregate_matches_its_definition() {
        let b1 = batch(vec![Some(2), None, Some(4)], vec![Some(0.1), Some(0.2), None], vec![Some(10), Some(20), None]);
        let b2 = batch(vec![Some(4), Some(9)], vec![Some(0.3), None], vec![Some(5), None]);
        use Aggregate::*;
        let got = run(
            &[
                (Sum, Some(0)),
                (Sum, Some(1)),
                (Sum, Some(2)),
                (Count, Some(0)),
                (Count, None),
                (CountDistinct, Some(0)),
                (Avg, Some(0)),
                (Min, Some(2)),
                (Max, Some(0)),
                (First, Some(1)),
                (Last, Some(2)),
                (Variance, Some(0)),
                (Stddev, Some(0)),
            ],
            &[b1, b2],
        );
        // ints 2,4,4,9: mean 4.75, sample variance (2.75²+0.75²+0.75²+4.25²)/3 = 26.75/3
        assert_eq!(got[0], Value::Int(19));
        assert_eq!(got[1], Value::Float(0.6)); // compensated: exactly the nearest double to 0.6
        assert_eq!(got[2], Value::Decimal { units: 35, scale: 2 });
        assert_eq!(got[3], Value::Int(4));
        assert_eq!(got[4], Value::Int(5));
        assert_eq!(got[5], Value::Int(3));
        assert_eq!(got[6], Value::Float(4.75));
        assert_eq!(got[7], Value::Decimal { units: 5, scale: 2 });
        assert_eq!(got[8], Value::Int(9));
        assert_eq!(got[9], Value::Float(0.1));
        assert_eq!(got[10], Value::Null);
        let var = 26.75 / 3.0;
        let Value::Float(v) = got[11] else { panic!("{:?}", got[11]) };
        assert!((v - var).abs() < 1e-12, "{v}");
        let Value::Float(sd) = got[12] else { panic!("{:?}", got[12]) };
        assert!((sd - var.sqrt()).abs() < 1e-12, "{sd}");
    }

    #[test]
    fn aggregates_of_nothing_are_null_and_counts_zero() {
        let b = batch(vec![None], vec![None], vec![None]);
        use Aggregate::*;
        let got = run(&[(Sum, Some(0)), (Count, Some(0)), (Avg, Some(1)), (Min, Some(2)), (Stddev, Some(0))], &[b]);
        assert_eq!(got, vec![Value::Null, Value::Int(0), Value::Null, Value::Null, Value::Null]);
    }

    #[test]
    fn a_variable_resets_after_its_groups_footer() {
        let b = batch(vec![Some(1), Some(2)], vec![None, None], vec![None, None]);
        let specs = vec![
            VariableSpec { name: "v".into(), aggregate: Aggregate::Sum, field: Some(0), reset_level: Some(0) },
            VariableSpec { name: "v".into(), aggregate: Aggregate::Sum, field: Some(0), reset_level: None },
        ];
        let mut acc = Accumulate::new(specs, &b.schema()).unwrap();
        let mut out = Vec::new();
        for e in [
            Event::Rows(b.slice(0, 1)),
            Event::GroupFooter { level: 0, key: Value::Null, variables: Arc::from(vec![]) },
            Event::Rows(b.slice(1, 1)),
            Event::GroupFooter { level: 0, key: Value::Null, variables: Arc::from(vec![]) },
        ] {
            acc.push(e, &mut out).unwrap();
        }
        let footers: Vec<Vec<Value>> = out
            .iter()
            .filter_map(|e| match e {
                Event::GroupFooter { variables, .. } => Some(variables.to_vec()),
                _ => None,
            })
            .collect();
        assert_eq!(footers, vec![vec![Value::Int(1), Value::Int(1)], vec![Value::Int(2), Value::Int(3)]]);
    }

    #[test]
    fn sum_of_text_is_a_config_error() {
        let schema = Arc::new(Schema::new(vec![Field::new("s", DataType::Utf8, true)]));
        let err = Accumulate::new(
            vec![VariableSpec { name: "v".into(), aggregate: Aggregate::Sum, field: Some(0), reset_level: None }],
            &schema,
        )
        .err()
        .unwrap();
        assert!(err.to_string().contains("sum needs a numeric field, but `s` is string"), "{err}");
    }
}

#[cfg(test)]
mod wide_sums {
    use super::*;
    use arrow_array::Decimal128Array;
    use arrow_schema::{Field, Schema};

    fn sum_of(values: Vec<i128>) -> Result<Vec<Event>, StageError> {
        let schema = Arc::new(Schema::new(vec![Field::new("d", DataType::Decimal128(38, 2), true)]));
        let col = Decimal128Array::from(values).with_precision_and_scale(38, 2).unwrap();
        let b = RecordBatch::try_new(schema.clone(), vec![Arc::new(col)]).unwrap();
        let spec =
            VariableSpec { name: "grand_total".into(), aggregate: Aggregate::Sum, field: Some(0), reset_level: None };
        let mut acc = Accumulate::new(vec![spec], &schema).unwrap();
        let mut out = Vec::new();
        acc.push(Event::Rows(b), &mut out)?;
        acc.push(Event::End { variables: Arc::from(vec![]), rows: 0, charts: Arc::from(vec![]) }, &mut out)?;
        Ok(out)
    }

    const NINES: i128 = 99_999_999_999_999_999_999_999_999_999_999_999_999; // 38 digits

    #[test]
    fn a_decimal_sum_past_i128_on_the_way_is_still_exact() {
        // 2 × (10^38 − 1) passes i128's 1.7e38; the final sum is back within 38 digits.
        let out = sum_of(vec![NINES, NINES, -NINES, -NINES, 5]).unwrap();
        let Some(Event::End { variables, .. }) = out.last() else { panic!() };
        assert_eq!(variables[0], Value::Decimal { units: 5, scale: 2 });
    }

    #[test]
    fn a_decimal_sum_of_more_than_38_digits_fails_naming_the_variable() {
        let err = sum_of(vec![NINES, NINES]).unwrap_err().to_string();
        assert!(err.contains("`grand_total`: the sum has 39 digits, more than the 38 a decimal holds"), "{err}");
    }
}

#[cfg(test)]
mod distinct_bound {
    use super::*;
    use arrow_array::Int64Array;
    use arrow_schema::{Field, Schema};

    #[test]
    fn count_distinct_past_its_bound_fails_naming_the_variable() {
        let schema = Arc::new(Schema::new(vec![Field::new("v", DataType::Int64, true)]));
        let spec = VariableSpec {
            name: "customers".into(),
            aggregate: Aggregate::CountDistinct,
            field: Some(0),
            reset_level: None,
        };
        let mut acc = Accumulate::new(vec![spec], &schema).unwrap();
        let batch = |from: i64, n: i64| {
            RecordBatch::try_new(schema.clone(), vec![Arc::new(Int64Array::from_iter_values(from..from + n))]).unwrap()
        };
        let mut out = Vec::new();
        acc.push(Event::Rows(batch(0, MAX_DISTINCT as i64)), &mut out).unwrap();
        // Values already seen do not count again.
        acc.push(Event::Rows(batch(0, 1000)), &mut out).unwrap();
        let err = acc.push(Event::Rows(batch(MAX_DISTINCT as i64, 1)), &mut out).unwrap_err().to_string();
        assert!(err.contains("`customers`: count_distinct keeps every distinct value"), "{err}");
    }
}

#[cfg(test)]
mod float_sums {
    use super::*;
    use arrow_array::Float64Array;
    use arrow_schema::{Field, Schema};

    fn sum(values: Vec<f64>) -> Value {
        let schema = Arc::new(Schema::new(vec![Field::new("f", DataType::Float64, true)]));
        let b = RecordBatch::try_new(schema.clone(), vec![Arc::new(Float64Array::from(values))]).unwrap();
        let spec = VariableSpec { name: "s".into(), aggregate: Aggregate::Sum, field: Some(0), reset_level: None };
        let mut acc = Accumulate::new(vec![spec], &schema).unwrap();
        let mut out = Vec::new();
        acc.push(Event::Rows(b), &mut out).unwrap();
        acc.push(Event::End { variables: Arc::from(vec![]), rows: 0, charts: Arc::from(vec![]) }, &mut out).unwrap();
        let Some(Event::End { variables, .. }) = out.pop() else { panic!() };
        variables[0].clone()
    }

    #[test]
    fn a_float_sum_with_infinity_is_infinity_as_in_sql() {
        assert_eq!(sum(vec![1.5, f64::INFINITY, 2.0]), Value::Float(f64::INFINITY));
        assert_eq!(sum(vec![f64::NEG_INFINITY, 1.0]), Value::Float(f64::NEG_INFINITY));
        let Value::Float(nan) = sum(vec![f64::INFINITY, f64::NEG_INFINITY]) else { panic!() };
        assert!(nan.is_nan(), "∞ + −∞ is NaN, as in SQL");
    }
}

#[cfg(test)]
mod decimal_text {
    use super::*;
    use arrow_array::StringArray;
    use arrow_schema::Schema;

    fn over(values: Vec<Option<&str>>, aggregate: Aggregate) -> Result<Value, StageError> {
        let schema = Arc::new(Schema::new(vec![ream_core::types::decimal_text_field("x")]));
        let b = RecordBatch::try_new(schema.clone(), vec![Arc::new(StringArray::from(values))]).unwrap();
        let spec = VariableSpec { name: "revenue".into(), aggregate, field: Some(0), reset_level: None };
        let mut acc = Accumulate::new(vec![spec], &schema)?;
        let mut out = Vec::new();
        acc.push(Event::Rows(b), &mut out)?;
        acc.push(Event::End { variables: Arc::from(vec![]), rows: 0, charts: Arc::from(vec![]) }, &mut out)?;
        match out.pop() {
            Some(Event::End { variables, .. }) => Ok(variables[0].clone()),
            _ => unreachable!(),
        }
    }

    fn dec(units: i128, scale: i8) -> Value {
        Value::Decimal { units, scale }
    }

    #[test]
    fn decimal_text_of_varying_scales_sums_averages_and_compares_as_numbers() {
        let values = || vec![Some("9.5"), None, Some("10.25"), Some("-0.001"), Some("100")];
        assert_eq!(over(values(), Aggregate::Sum).unwrap(), dec(119749, 3));
        // 119.749 / 4 = 29.93725, kept at scale 3 + 6.
        assert_eq!(over(values(), Aggregate::Avg).unwrap(), dec(29937250000, 9));
        // As text, "9.5" would be the largest and "-0.001" < "10.25" < "100".
        assert_eq!(over(values(), Aggregate::Max).unwrap(), dec(100, 0));
        assert_eq!(over(values(), Aggregate::Min).unwrap(), dec(-1, 3));
        assert_eq!(over(vec![None], Aggregate::Avg).unwrap(), Value::Null);
    }

    #[test]
    fn a_value_that_is_not_a_decimal_fails_naming_the_variable() {
        let err = over(vec![Some("1"), Some("NaN")], Aggregate::Sum).unwrap_err().to_string();
        assert!(err.contains("`revenue`: the value NaN is not a decimal"), "{err}");
    }

    #[test]
    fn plain_text_still_cannot_be_summed() {
        let schema = Arc::new(Schema::new(vec![arrow_schema::Field::new("x", DataType::Utf8, true)]));
        let spec = VariableSpec { name: "v".into(), aggregate: Aggregate::Sum, field: Some(0), reset_level: None };
        let err = Accumulate::new(vec![spec], &schema).err().unwrap().to_string();
        assert!(err.contains("sum needs a numeric field"), "{err}");
    }
}
