//! Variables rebuilt from an aggregated read (aggregate pushdown): each row is one group
//! at the finest level, with its partial aggregates, and [`Accumulate`] in rollup mode
//! merges them into the same values the detail rows would have given, resetting and
//! filling footers as it always does.
//!
//! Exact where the streaming path is exact: integer sums in i128 (SQLite's in two
//! halves), decimal sums and averages in [`ExactSum`], counts as integers. Float
//! averages, variances and standard deviations merge Welford moments with Chan et al.'s
//! formula, which is as stable as Welford's own update.

use arrow_array::cast::AsArray;
use arrow_array::types::{Decimal128Type, Float64Type, Int64Type};
use arrow_array::Array;
use arrow_schema::DataType;
use ream_core::Value;

use crate::exact::ExactSum;
use crate::StageError;

/// Where a sum's partial lives in the aggregated read.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SumOf {
    /// One column of sums.
    Column(usize),
    /// An integer sum in two columns: `high · 2³² + low`.
    Halves { high: usize, low: usize },
}

/// How one variable is rebuilt from the aggregated read's columns (by index).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Merge {
    /// The sum of a column of counts: `count`, `count(*)`, and `count_distinct` that
    /// resets with the finest group (one partial per value it shows).
    Count(usize),
    Sum(SumOf),
    /// The least or greatest of a column of minima or maxima.
    MinMax(usize),
    /// An average from the sums and the counts.
    Avg {
        sum: SumOf,
        count: usize,
    },
    /// Variance and standard deviation: count, mean and sample variance per group.
    Moments {
        count: usize,
        mean: usize,
        variance: usize,
    },
}

/// One variable of a rollup: what it is, the field it aggregates in the base read (its
/// type decides the result's, as in the streaming path), and how it merges.
#[derive(Debug, Clone)]
pub struct RollupVariable {
    pub spec: ream_core::VariableSpec,
    pub base: Option<arrow_schema::Field>,
    pub merge: Merge,
}

/// A partial value of column `i` of `col`, as a value of the base field's kind: integers
/// stay integers (a sum that a database returns as numeric), decimals take the base
/// field's scale (a `min` that comes back as unconstrained numeric text).
pub(crate) fn partial_value(col: &dyn Array, i: usize, base: &DataType) -> Value {
    if col.is_null(i) {
        return Value::Null;
    }
    let raw = match col.data_type() {
        DataType::Utf8 => {
            let text = col.as_string::<i32>().value(i);
            ream_core::params::parse_decimal(text).unwrap_or_else(|| Value::Str(text.into()))
        }
        _ => Value::from_array(col, i),
    };
    match (base, raw) {
        (DataType::Int64, Value::Decimal { units, scale: 0 }) => {
            i64::try_from(units).map_or(Value::Decimal { units, scale: 0 }, Value::Int)
        }
        (DataType::Decimal128(_, s), Value::Decimal { units, scale }) if scale < *s => {
            let up = 10i128.checked_pow((*s - scale) as u32).and_then(|m| units.checked_mul(m));
            up.map_or(Value::Decimal { units, scale }, |units| Value::Decimal { units, scale: *s })
        }
        (DataType::Decimal128(_, s), Value::Int(n)) => 10i128
            .checked_pow((*s).max(0) as u32)
            .and_then(|m| (n as i128).checked_mul(m))
            .map_or(Value::Int(n), |units| Value::Decimal { units, scale: *s }),
        (DataType::Float64, v) => v.as_f64().map_or(v, Value::Float),
        (_, v) => v,
    }
}

/// Row `i`'s partial integer sum, exactly (None: NULL).
pub(crate) fn int_sum(batch: &arrow_array::RecordBatch, of: SumOf, i: usize) -> Result<Option<i128>, String> {
    let one = |c: usize| -> Result<Option<i128>, String> {
        match partial_value(batch.column(c).as_ref(), i, &DataType::Int64) {
            Value::Null => Ok(None),
            Value::Int(n) => Ok(Some(n as i128)),
            Value::Decimal { units, scale: 0 } => Ok(Some(units)),
            other => Err(format!("an integer sum came back as {other}")),
        }
    };
    match of {
        SumOf::Column(c) => one(c),
        SumOf::Halves { high, low } => Ok(match (one(high)?, one(low)?) {
            (Some(h), Some(l)) => Some(h * (1i128 << 32) + l),
            _ => None,
        }),
    }
}

/// Row `i`'s partial sum as a float (None: NULL).
pub(crate) fn float_sum(batch: &arrow_array::RecordBatch, of: SumOf, i: usize) -> Result<Option<f64>, String> {
    match of {
        SumOf::Column(c) => {
            let col = batch.column(c);
            Ok(match col.data_type() {
                DataType::Float64 => {
                    col.as_primitive::<Float64Type>().is_valid(i).then(|| col.as_primitive::<Float64Type>().value(i))
                }
                _ => partial_value(col.as_ref(), i, &DataType::Float64).as_f64(),
            })
        }
        SumOf::Halves { .. } => Ok(int_sum(batch, of, i)?.map(|s| s as f64)),
    }
}

/// Row `i`'s partial sum into an exact decimal sum.
pub(crate) fn add_decimal(
    sum: &mut ExactSum,
    batch: &arrow_array::RecordBatch,
    of: SumOf,
    i: usize,
) -> Result<bool, String> {
    let SumOf::Column(c) = of else {
        return int_sum(batch, of, i).map(|s| s.is_some_and(|s| sum.add(s, 0).is_ok()));
    };
    let col = batch.column(c);
    if let Some(a) = col.as_primitive_opt::<Decimal128Type>() {
        if a.is_null(i) {
            return Ok(false);
        }
        let DataType::Decimal128(_, s) = a.data_type() else { return Ok(false) };
        return sum.add(a.value(i), *s).map(|_| true).map_err(|e| e.to_string());
    }
    match partial_value(col.as_ref(), i, col.data_type()) {
        Value::Null => Ok(false),
        Value::Decimal { units, scale } => sum.add(units, scale).map(|_| true).map_err(|e| e.to_string()),
        Value::Int(n) => sum.add(n as i128, 0).map(|_| true).map_err(|e| e.to_string()),
        other => Err(format!("a decimal sum came back as {other}")),
    }
}

/// Row `i`'s count (NULL counts none).
pub(crate) fn count(batch: &arrow_array::RecordBatch, c: usize, i: usize) -> u64 {
    match partial_value(batch.column(c).as_ref(), i, &DataType::Int64) {
        Value::Int(n) => n.max(0) as u64,
        Value::Decimal { units, .. } => units.max(0) as u64,
        _ => 0,
    }
}

/// Row `i`'s float (None: NULL).
pub(crate) fn float(batch: &arrow_array::RecordBatch, c: usize, i: usize) -> Option<f64> {
    let col = batch.column(c);
    match col.data_type() {
        DataType::Float64 => {
            let a = col.as_primitive::<Float64Type>();
            a.is_valid(i).then(|| a.value(i))
        }
        DataType::Int64 => {
            let a = col.as_primitive::<Int64Type>();
            a.is_valid(i).then(|| a.value(i) as f64)
        }
        _ => partial_value(col.as_ref(), i, &DataType::Float64).as_f64(),
    }
}

/// Chan et al.'s combination of two sets' Welford moments `(n, mean, m2)`.
pub(crate) fn combine(a: (u64, f64, f64), b: (u64, f64, f64)) -> (u64, f64, f64) {
    let (na, ma, m2a) = a;
    let (nb, mb, m2b) = b;
    if nb == 0 {
        return a;
    }
    if na == 0 {
        return b;
    }
    let n = na + nb;
    let d = mb - ma;
    let mean = ma + d * nb as f64 / n as f64;
    let m2 = m2a + m2b + d * d * na as f64 * nb as f64 / n as f64;
    (n, mean, m2)
}

pub(crate) fn compute(name: &str, message: String) -> StageError {
    StageError::Compute { stage: "variables", message: format!("`{name}`: {message}") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chan_combination_equals_one_pass_over_both_sets() {
        let xs = [3.0, 7.5, -2.0, 11.25, 4.0, 4.0, 9.5];
        let moments = |v: &[f64]| {
            let n = v.len() as f64;
            let mean = v.iter().sum::<f64>() / n;
            (v.len() as u64, mean, v.iter().map(|x| (x - mean).powi(2)).sum::<f64>())
        };
        let (n, mean, m2) = combine(moments(&xs[..3]), moments(&xs[3..]));
        let (n2, mean2, m22) = moments(&xs);
        assert_eq!(n, n2);
        assert!((mean - mean2).abs() < 1e-12 && (m2 - m22).abs() < 1e-9, "{mean} {m2} vs {mean2} {m22}");
        assert_eq!(combine((0, 0.0, 0.0), (2, 1.5, 0.5)), (2, 1.5, 0.5));
    }

    #[test]
    fn partial_values_take_their_base_fields_kind() {
        let text = arrow_array::StringArray::from(vec![Some("12.3"), Some("-7"), None]);
        let dec = DataType::Decimal128(12, 2);
        assert_eq!(partial_value(&text, 0, &dec), Value::Decimal { units: 1230, scale: 2 });
        assert_eq!(partial_value(&text, 1, &DataType::Int64), Value::Int(-7));
        assert_eq!(partial_value(&text, 2, &dec), Value::Null);
    }
}
