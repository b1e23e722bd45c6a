//! A single typed value: a group key, a variable, a parameter, a cursor position.
//! Rows themselves stay in Arrow arrays; `Value` is for the few scalars around them.

use std::fmt;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::*;
use arrow_array::Array;
use arrow_schema::{DataType, TimeUnit};
use chrono::{DateTime, NaiveDate};

/// Days from 0001-01-01 (CE) to 1970-01-01: converts Arrow's Date32 to chrono.
const UNIX_EPOCH_DAYS_CE: i32 = 719_163;

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    /// An exact decimal: `units × 10^-scale`.
    Decimal {
        units: i128,
        scale: i8,
    },
    Str(Arc<str>),
    /// Days since 1970-01-01.
    Date(i32),
    /// Microseconds since 1970-01-01T00:00:00 (no zone).
    Timestamp(i64),
    Binary(Arc<[u8]>),
}

impl Value {
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// The value at `row` of an Arrow array. Types outside ream's set read as their text.
    pub fn from_array(array: &dyn Array, row: usize) -> Value {
        if array.is_null(row) {
            return Value::Null;
        }
        match array.data_type() {
            DataType::Boolean => Value::Bool(array.as_boolean().value(row)),
            DataType::Int8 => Value::Int(array.as_primitive::<Int8Type>().value(row) as i64),
            DataType::Int16 => Value::Int(array.as_primitive::<Int16Type>().value(row) as i64),
            DataType::Int32 => Value::Int(array.as_primitive::<Int32Type>().value(row) as i64),
            DataType::Int64 => Value::Int(array.as_primitive::<Int64Type>().value(row)),
            DataType::UInt8 => Value::Int(array.as_primitive::<UInt8Type>().value(row) as i64),
            DataType::UInt16 => Value::Int(array.as_primitive::<UInt16Type>().value(row) as i64),
            DataType::UInt32 => Value::Int(array.as_primitive::<UInt32Type>().value(row) as i64),
            DataType::Float32 => Value::Float(array.as_primitive::<Float32Type>().value(row) as f64),
            DataType::Float64 => Value::Float(array.as_primitive::<Float64Type>().value(row)),
            DataType::Decimal128(_, s) => {
                Value::Decimal { units: array.as_primitive::<Decimal128Type>().value(row), scale: *s }
            }
            DataType::Utf8 => Value::Str(array.as_string::<i32>().value(row).into()),
            DataType::LargeUtf8 => Value::Str(array.as_string::<i64>().value(row).into()),
            DataType::Date32 => Value::Date(array.as_primitive::<Date32Type>().value(row)),
            DataType::Timestamp(TimeUnit::Microsecond, _) => {
                Value::Timestamp(array.as_primitive::<TimestampMicrosecondType>().value(row))
            }
            DataType::Binary => Value::Binary(array.as_binary::<i32>().value(row).into()),
            // Times, durations, intervals, zoned timestamps in other units…: as arrow
            // writes them in CSV and JSON, so every format shows the same text.
            _ => {
                let options = arrow_cast::display::FormatOptions::default();
                match arrow_cast::display::ArrayFormatter::try_new(array, &options) {
                    Ok(f) => Value::Str(f.value(row).to_string().into()),
                    Err(_) => Value::Str(array.data_type().to_string().into()),
                }
            }
        }
    }

    /// As a float, for statistics (avg, stddev, variance) and charts.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Int(i) => Some(*i as f64),
            Value::Float(f) => Some(*f),
            Value::Decimal { units, scale } => Some(*units as f64 / 10f64.powi(*scale as i32)),
            Value::Bool(b) => Some(*b as i64 as f64),
            _ => None,
        }
    }

    /// Write as JSON: numbers stay numbers (decimals exactly, as their digits), dates and
    /// timestamps are ISO 8601 strings, binary is hex.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        use std::io::Write;
        match self {
            Value::Null => out.extend_from_slice(b"null"),
            Value::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
            Value::Int(i) => {
                let _ = write!(out, "{i}");
            }
            Value::Float(f) if f.is_finite() => {
                let _ = write!(out, "{f}");
            }
            Value::Float(_) => out.extend_from_slice(b"null"),
            Value::Decimal { .. } => {
                let _ = write!(out, "{self}");
            }
            Value::Str(_) | Value::Date(_) | Value::Timestamp(_) | Value::Binary(_) => {
                let s = self.to_string();
                // serde_json's string escaping, so our strings match arrow-json's.
                let _ = serde_json::to_writer(&mut *out, &s);
            }
        }
    }

    pub fn to_json_string(&self) -> String {
        let mut v = Vec::new();
        self.write_json(&mut v);
        String::from_utf8(v).expect("JSON is UTF-8")
    }
}

/// Formats a decimal's units at a scale: `format_decimal(-1234, 2) == "-12.34"`.
pub fn format_decimal(units: i128, scale: i8) -> String {
    if scale <= 0 {
        let mut s = units.to_string();
        s.extend(std::iter::repeat_n('0', (-scale) as usize));
        return s;
    }
    let neg = units < 0;
    let digits = units.unsigned_abs().to_string();
    let scale = scale as usize;
    let (int, frac) = if digits.len() > scale {
        let (a, b) = digits.split_at(digits.len() - scale);
        (a.to_string(), b.to_string())
    } else {
        ("0".to_string(), format!("{digits:0>scale$}"))
    };
    format!("{}{int}.{frac}", if neg { "-" } else { "" })
}

pub fn date_from_days(days: i32) -> Option<NaiveDate> {
    NaiveDate::from_num_days_from_ce_opt(days.checked_add(UNIX_EPOCH_DAYS_CE)?)
}

pub fn days_from_date(d: NaiveDate) -> i32 {
    use chrono::Datelike;
    d.num_days_from_ce() - UNIX_EPOCH_DAYS_CE
}

impl fmt::Display for Value {
    /// The raw, locale-free rendering: ISO dates, `T`-separated timestamps (as Arrow's
    /// CSV and JSON writers print them), exact decimals.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Null => Ok(()),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Int(i) => write!(f, "{i}"),
            Value::Float(x) => write!(f, "{x}"),
            Value::Decimal { units, scale } => f.write_str(&format_decimal(*units, *scale)),
            Value::Str(s) => f.write_str(s),
            Value::Date(d) => match date_from_days(*d) {
                Some(d) => write!(f, "{}", d.format("%Y-%m-%d")),
                None => write!(f, "{d}"),
            },
            Value::Timestamp(us) => match DateTime::from_timestamp_micros(*us) {
                Some(t) => write!(f, "{}", t.naive_utc().format("%Y-%m-%dT%H:%M:%S%.f")),
                None => write!(f, "{us}"),
            },
            Value::Binary(b) => {
                for byte in b.iter() {
                    write!(f, "{byte:02x}")?;
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_print_exactly() {
        assert_eq!(format_decimal(-1234, 2), "-12.34");
        assert_eq!(format_decimal(5, 3), "0.005");
        assert_eq!(format_decimal(-5, 3), "-0.005");
        assert_eq!(format_decimal(12, 0), "12");
        assert_eq!(format_decimal(12, -2), "1200");
    }

    #[test]
    fn dates_round_trip_through_days() {
        let d = NaiveDate::from_ymd_opt(2024, 2, 29).unwrap();
        assert_eq!(date_from_days(days_from_date(d)), Some(d));
        assert_eq!(days_from_date(NaiveDate::from_ymd_opt(1970, 1, 1).unwrap()), 0);
        assert_eq!(Value::Date(0).to_string(), "1970-01-01");
    }

    #[test]
    fn json_keeps_types() {
        assert_eq!(Value::Decimal { units: 1005, scale: 2 }.to_json_string(), "10.05");
        assert_eq!(Value::Str("a\"b\n".into()).to_json_string(), "\"a\\\"b\\n\"");
        assert_eq!(Value::Timestamp(1_500_000).to_json_string(), "\"1970-01-01T00:00:01.500\"");
        let t = arrow_array::Time64MicrosecondArray::from(vec![43_201_000_000]);
        assert_eq!(Value::from_array(&t, 0), Value::Str("12:00:01".into()));
    }
}
