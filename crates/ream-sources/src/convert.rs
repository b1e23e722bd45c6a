//! Column builders: database values into Arrow arrays of the column's type. A value that
//! does not fit is an error, never a silent change: a REAL with more decimals than its
//! DECIMAL column's scale, text in a number column, an integer that a double cannot hold.

use std::sync::Arc;

use arrow_array::builder::*;
use arrow_array::ArrayRef;
use arrow_schema::{DataType, TimeUnit};
use chrono::NaiveDate;
use ream_core::value::days_from_date;

pub(crate) enum ColumnBuilder {
    Int(Int64Builder),
    Float(Float64Builder),
    Text(StringBuilder),
    Bool(BooleanBuilder),
    Decimal(Decimal128Builder, u8, i8),
    Date(Date32Builder),
    Timestamp(TimestampMicrosecondBuilder),
    Binary(BinaryBuilder),
}

/// Largest integer a double holds exactly.
const F64_EXACT: i64 = 1 << 53;

impl ColumnBuilder {
    pub(crate) fn new(dt: &DataType, capacity: usize) -> Self {
        match dt {
            DataType::Int64 => ColumnBuilder::Int(Int64Builder::with_capacity(capacity)),
            DataType::Float64 => ColumnBuilder::Float(Float64Builder::with_capacity(capacity)),
            DataType::Boolean => ColumnBuilder::Bool(BooleanBuilder::with_capacity(capacity)),
            DataType::Decimal128(p, s) => ColumnBuilder::Decimal(
                Decimal128Builder::with_capacity(capacity).with_data_type(DataType::Decimal128(*p, *s)),
                *p,
                *s,
            ),
            DataType::Date32 => ColumnBuilder::Date(Date32Builder::with_capacity(capacity)),
            DataType::Timestamp(..) => ColumnBuilder::Timestamp(TimestampMicrosecondBuilder::with_capacity(capacity)),
            DataType::Binary => ColumnBuilder::Binary(BinaryBuilder::with_capacity(capacity, capacity * 16)),
            _ => ColumnBuilder::Text(StringBuilder::with_capacity(capacity, capacity * 16)),
        }
    }

    pub(crate) fn finish(&mut self) -> ArrayRef {
        match self {
            ColumnBuilder::Int(b) => Arc::new(b.finish()),
            ColumnBuilder::Float(b) => Arc::new(b.finish()),
            ColumnBuilder::Text(b) => Arc::new(b.finish()),
            ColumnBuilder::Bool(b) => Arc::new(b.finish()),
            ColumnBuilder::Decimal(b, ..) => Arc::new(b.finish()),
            ColumnBuilder::Date(b) => Arc::new(b.finish()),
            ColumnBuilder::Timestamp(b) => Arc::new(b.finish()),
            ColumnBuilder::Binary(b) => Arc::new(b.finish()),
        }
    }

    #[inline]
    pub(crate) fn append_null(&mut self) {
        match self {
            ColumnBuilder::Int(b) => b.append_null(),
            ColumnBuilder::Float(b) => b.append_null(),
            ColumnBuilder::Text(b) => b.append_null(),
            ColumnBuilder::Bool(b) => b.append_null(),
            ColumnBuilder::Decimal(b, ..) => b.append_null(),
            ColumnBuilder::Date(b) => b.append_null(),
            ColumnBuilder::Timestamp(b) => b.append_null(),
            ColumnBuilder::Binary(b) => b.append_null(),
        }
    }

    #[inline]
    pub(crate) fn append_int(&mut self, v: i64) -> Result<(), String> {
        match self {
            ColumnBuilder::Int(b) => b.append_value(v),
            ColumnBuilder::Float(b) => {
                if !(-F64_EXACT..=F64_EXACT).contains(&v) {
                    return Err(format!("integer {v} cannot be held exactly by a float column"));
                }
                b.append_value(v as f64)
            }
            ColumnBuilder::Text(b) => b.append_value(v.to_string()),
            ColumnBuilder::Bool(b) => match v {
                0 => b.append_value(false),
                1 => b.append_value(true),
                _ => return Err(format!("integer {v} is not a boolean (0 or 1)")),
            },
            ColumnBuilder::Decimal(b, p, s) => {
                let units = (v as i128)
                    .checked_mul(10i128.pow(*s as u32))
                    .filter(|u| fits_precision(*u, *p))
                    .ok_or_else(|| format!("integer {v} does not fit decimal({p},{s})"))?;
                b.append_value(units)
            }
            ColumnBuilder::Timestamp(b) => b.append_value(
                v.checked_mul(1_000_000).ok_or_else(|| format!("integer {v} is out of range as Unix seconds"))?,
            ),
            ColumnBuilder::Date(_) => return Err(format!("integer {v} is not a date (expected text YYYY-MM-DD)")),
            ColumnBuilder::Binary(_) => return Err(format!("integer {v} is not binary data")),
        }
        Ok(())
    }

    #[inline]
    pub(crate) fn append_real(&mut self, v: f64) -> Result<(), String> {
        match self {
            ColumnBuilder::Float(b) => b.append_value(v),
            ColumnBuilder::Decimal(b, p, s) => b.append_value(real_to_decimal(v, *p, *s)?),
            ColumnBuilder::Text(b) => b.append_value(ryu::Buffer::new().format(v)),
            ColumnBuilder::Int(_) => return Err(format!("real {v} in an integer column")),
            ColumnBuilder::Bool(_) => return Err(format!("real {v} is not a boolean")),
            ColumnBuilder::Date(_) => return Err(format!("real {v} is not a date (expected text YYYY-MM-DD)")),
            ColumnBuilder::Timestamp(_) => {
                return Err(format!("real {v} is not a timestamp (expected text or Unix seconds)"))
            }
            ColumnBuilder::Binary(_) => return Err(format!("real {v} is not binary data")),
        }
        Ok(())
    }

    #[inline]
    pub(crate) fn append_text(&mut self, v: &[u8]) -> Result<(), String> {
        let text = || std::str::from_utf8(v).map_err(|_| "text that is not valid UTF-8".to_string());
        match self {
            ColumnBuilder::Text(b) => {
                fits_offsets(b.values_slice().len(), v.len())?;
                b.append_value(text()?)
            }
            ColumnBuilder::Binary(b) => {
                fits_offsets(b.values_slice().len(), v.len())?;
                b.append_value(v)
            }
            ColumnBuilder::Date(b) => {
                let t = text()?;
                let d = iso_date(t)
                    .or_else(|| NaiveDate::parse_from_str(t, "%Y-%m-%d").ok())
                    .ok_or_else(|| format!("`{}` is not a date (expected YYYY-MM-DD)", clip(t)))?;
                b.append_value(days_from_date(d))
            }
            ColumnBuilder::Timestamp(b) => {
                let t = text()?;
                let us = ream_core::params::parse_timestamp(t)
                    .ok_or_else(|| format!("`{}` is not a timestamp (expected YYYY-MM-DD HH:MM:SS)", clip(t)))?;
                b.append_value(us)
            }
            ColumnBuilder::Decimal(b, p, s) => {
                let t = text()?;
                let units = match ream_core::params::parse_decimal(t.trim()) {
                    Some(ream_core::Value::Decimal { units, scale }) => rescale_exact(units, scale, *p, *s),
                    _ => None,
                }
                .ok_or_else(|| format!("`{}` does not fit decimal({p},{s})", clip(t)))?;
                b.append_value(units)
            }
            ColumnBuilder::Bool(b) => match text()?.to_ascii_lowercase().as_str() {
                "true" | "t" | "1" => b.append_value(true),
                "false" | "f" | "0" => b.append_value(false),
                other => return Err(format!("`{}` is not a boolean", clip(other))),
            },
            ColumnBuilder::Int(_) => {
                return Err(format!("text `{}` in an integer column", clip(&String::from_utf8_lossy(v))))
            }
            ColumnBuilder::Float(_) => {
                return Err(format!("text `{}` in a float column", clip(&String::from_utf8_lossy(v))))
            }
        }
        Ok(())
    }

    #[inline]
    pub(crate) fn append_blob(&mut self, v: &[u8]) -> Result<(), String> {
        match self {
            ColumnBuilder::Binary(b) => {
                fits_offsets(b.values_slice().len(), v.len())?;
                b.append_value(v);
                Ok(())
            }
            _ => Err(format!("a {}-byte blob in a non-binary column", v.len())),
        }
    }
}

fn clip(s: &str) -> String {
    if s.chars().count() > 60 {
        format!("{}…", s.chars().take(60).collect::<String>())
    } else {
        s.to_string()
    }
}

fn fits_precision(units: i128, p: u8) -> bool {
    units.unsigned_abs() < 10u128.pow(p as u32)
}

/// An exact decimal at `scale` brought to the column's scale `s`, if no digit is lost and
/// the precision holds.
fn rescale_exact(units: i128, scale: i8, p: u8, s: i8) -> Option<i128> {
    let u = if scale <= s {
        units.checked_mul(10i128.checked_pow((s - scale) as u32)?)?
    } else {
        let d = 10i128.checked_pow((scale - s) as u32)?;
        if units % d != 0 {
            return None;
        }
        units / d
    };
    fits_precision(u, p).then_some(u)
}

/// A double as an exact decimal at scale `s`. SQLite has no decimal type: money is stored
/// as REAL, and arithmetic leaves float noise (`32.09 - 500` is `-467.90999999999997`).
/// Noise is rounded away; a real extra digit (`0.125` in a scale-2 column) is an error,
/// never silently rounded.
fn real_to_decimal(v: f64, p: u8, s: i8) -> Result<i128, String> {
    if !v.is_finite() {
        return Err(format!("{v} is not a decimal number"));
    }
    let scaled = v * 10f64.powi(s as i32);
    let rounded = scaled.round();
    // A few ULPs of relative error is what float arithmetic leaves; a genuine extra digit
    // is off by at least 10^-(digits), far above this.
    let noise = scaled.abs() * 1e-12 + 1e-9;
    if (scaled - rounded).abs() > noise {
        return Err(format!("{} has more decimals than decimal({p},{s}) holds", ryu::Buffer::new().format_finite(v)));
    }
    if rounded.abs() >= 1e38 || !fits_precision(rounded as i128, p) {
        return Err(format!("{} does not fit decimal({p},{s})", ryu::Buffer::new().format_finite(v)));
    }
    Ok(rounded as i128)
}

/// The Arrow type a declared SQL column type maps to (SQLite's affinity rules, refined:
/// DECIMAL(P,S) is exact, DATE and DATETIME are parsed, BOOLEAN is a boolean). `None`
/// for columns without a declared type: their type is inferred from values.
pub(crate) fn type_from_decl(decl: &str) -> Option<DataType> {
    let d = decl.trim().to_ascii_uppercase();
    if d.is_empty() {
        return None;
    }
    if let Some(dt) = ream_core::types::parse_decimal_type(&d) {
        return Some(dt);
    }
    let base = d.split('(').next().unwrap_or(&d).trim();
    Some(match base {
        "BOOLEAN" | "BOOL" => DataType::Boolean,
        "DATE" => DataType::Date32,
        "DATETIME" | "TIMESTAMP" => DataType::Timestamp(TimeUnit::Microsecond, None),
        _ if d.contains("INT") => DataType::Int64,
        _ if d.contains("CHAR") || d.contains("CLOB") || d.contains("TEXT") => DataType::Utf8,
        _ if d.contains("BLOB") => DataType::Binary,
        _ if d.contains("REAL") || d.contains("FLOA") || d.contains("DOUB") => DataType::Float64,
        // NUMERIC affinity without a scale (NUMERIC, DECIMAL, MONEY…): SQLite stores
        // integers or reals; read as float.
        _ => DataType::Float64,
    })
}

/// `YYYY-MM-DD` exactly, the way SQLite stores dates, without chrono's format-string
/// parser (which was a fifth of the CPU of reading a table with three date columns).
/// Anything else goes to the general parser.
fn iso_date(t: &str) -> Option<NaiveDate> {
    let b = t.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| {
        b[r].iter().try_fold(0u32, |acc, c| c.is_ascii_digit().then(|| acc * 10 + (c - b'0') as u32))
    };
    NaiveDate::from_ymd_opt(num(0..4)? as i32, num(5..7)?, num(8..10)?)
}

/// A text or binary column holds at most 2 GiB in one batch (its offsets are i32); past
/// that, an error rather than arrow's panic. `--batch-bytes` keeps batches far below it,
/// so only a single value of about 2 GiB can get here.
fn fits_offsets(held: usize, more: usize) -> Result<(), String> {
    if held + more > i32::MAX as usize {
        return Err(format!(
            "a value of {} MB takes its column past the 2 GiB one batch can hold: lower --batch-bytes",
            more >> 20
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_column_past_2_gib_in_one_batch_is_an_error_not_a_panic() {
        assert!(fits_offsets(1 << 20, 1 << 20).is_ok());
        let e = fits_offsets(i32::MAX as usize - 10, 3 << 20).unwrap_err();
        assert!(e.contains("past the 2 GiB one batch can hold"), "{e}");
    }

    #[test]
    fn reals_become_exact_decimals_or_fail_loudly() {
        assert_eq!(real_to_decimal(12.34, 12, 2), Ok(1234));
        assert_eq!(real_to_decimal(-0.5, 12, 2), Ok(-50));
        assert_eq!(real_to_decimal(1e3, 12, 2), Ok(100_000));
        // Float noise from arithmetic is not data.
        assert_eq!(real_to_decimal(0.1 + 0.2, 12, 2), Ok(30));
        assert_eq!(real_to_decimal(32.09 - 500.0, 12, 2), Ok(-46791));
        // A genuine extra digit is.
        assert!(real_to_decimal(0.125, 12, 2)
            .unwrap_err()
            .contains("0.125 has more decimals than decimal(12,2) holds"));
        assert!(real_to_decimal(1e20, 12, 2).unwrap_err().contains("does not fit decimal(12,2)"));
    }

    #[test]
    fn iso_dates_read_the_same_as_the_general_parser() {
        for t in [
            "2024-02-29",
            "1970-01-01",
            "0001-01-01",
            "9999-12-31",
            "2023-02-29",
            "2024-13-01",
            "2024-1-05",
            "2024/01/05",
            "20x4-01-01",
        ] {
            assert_eq!(
                iso_date(t).or_else(|| NaiveDate::parse_from_str(t, "%Y-%m-%d").ok()),
                NaiveDate::parse_from_str(t, "%Y-%m-%d").ok(),
                "{t}"
            );
        }
        assert_eq!(iso_date("2024-02-29"), NaiveDate::from_ymd_opt(2024, 2, 29));
        assert_eq!(iso_date("2023-02-29"), None);
    }

    #[test]
    fn declared_types_map_like_sqlite_affinity() {
        assert_eq!(type_from_decl("DECIMAL(12,2)"), Some(DataType::Decimal128(12, 2)));
        assert_eq!(type_from_decl("varchar(20)"), Some(DataType::Utf8));
        assert_eq!(type_from_decl("BIGINT"), Some(DataType::Int64));
        assert_eq!(type_from_decl("DATETIME"), Some(DataType::Timestamp(TimeUnit::Microsecond, None)));
        assert_eq!(type_from_decl(""), None);
    }
}
