//! PostgreSQL's binary wire formats into Arrow builders, exactly: every value either lands
//! unchanged in its column's Arrow type or is an error that says why.
//!
//! | PostgreSQL | Arrow |
//! |---|---|
//! | bool | Boolean |
//! | int2, int4, int8, oid | Int64 |
//! | float4, float8 | Float64 (float4 through its shortest decimal text, so 1.1 stays 1.1) |
//! | numeric(p,s) | Decimal128(p,s) (p capped at 38) |
//! | numeric (no precision) | Utf8, exactly as PostgreSQL prints it (see below) |
//! | text, varchar, char(n), name, citext, enums, xml | Utf8 |
//! | json, jsonb | Utf8 (the JSON text) |
//! | uuid | Utf8 (hyphenated) |
//! | arrays | Utf8 (JSON text) |
//! | date | Date32 |
//! | time | Time64(µs) |
//! | timestamp | Timestamp(µs) |
//! | timestamptz | Timestamp(µs, +00:00) |
//! | interval | Interval(MonthDayNano) |
//! | bytea | Binary |
//! | domains | as their base type |
//!
//! A numeric without a declared precision and scale (what `sum()`, `avg()` and
//! arithmetic on numerics return) has no scale until its values arrive, and the values
//! of one column may differ in scale. Any fixed Arrow decimal would either pad every
//! value or fail on the first value with more digits, mid-stream and depending on the
//! batch size. So it is read as its exact text, in a field marked as decimal text
//! (`ream_core::types::DECIMAL_TEXT`), which variables sum, average and compare exactly.

use std::sync::Arc;

use arrow_array::builder::*;
use arrow_array::types::IntervalMonthDayNano;
use arrow_array::ArrayRef;
use arrow_buffer::i256;
use arrow_schema::{DataType, IntervalUnit, TimeUnit};
use postgres::types::{Kind, Type};

/// Days from 1970-01-01 to PostgreSQL's epoch, 2000-01-01.
const PG_EPOCH_DAYS: i32 = 10_957;
const PG_EPOCH_MICROS: i64 = PG_EPOCH_DAYS as i64 * 86_400_000_000;

/// How one column's wire bytes decode.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Decode {
    Bool,
    Int2,
    Int4,
    Int8,
    Oid,
    Float4,
    Float8,
    /// Precision and scale.
    Numeric(u8, i8),
    /// Numeric without a declared precision and scale: its exact text.
    NumericText,
    Text,
    Jsonb,
    Uuid,
    Date,
    Time,
    Timestamp,
    TimestampTz,
    Interval,
    Bytea,
    Array(Box<Decode>),
}

impl Decode {
    /// The decoder for a column of type `ty` (with its type modifier), or a reason the
    /// type cannot be read.
    pub(crate) fn for_type(ty: &Type, typmod: i32) -> Result<Decode, String> {
        match ty.kind() {
            Kind::Domain(base) => return Decode::for_type(base, typmod),
            Kind::Enum(_) => return Ok(Decode::Text),
            Kind::Array(elem) => {
                let inner = Decode::for_type(elem, -1)?;
                if matches!(inner, Decode::Array(_)) {
                    return Err(format!("type {} (arrays of arrays) is not supported", ty.name()));
                }
                return Ok(Decode::Array(Box::new(inner)));
            }
            _ => {}
        }
        Ok(match *ty {
            Type::BOOL => Decode::Bool,
            Type::INT2 => Decode::Int2,
            Type::INT4 => Decode::Int4,
            Type::INT8 => Decode::Int8,
            Type::OID => Decode::Oid,
            Type::FLOAT4 => Decode::Float4,
            Type::FLOAT8 => Decode::Float8,
            Type::NUMERIC if typmod >= 4 => {
                let p = ((typmod - 4) >> 16) & 0xffff;
                // The scale is 11 bits, signed since PostgreSQL 15 (numeric(5,-2) rounds
                // to hundreds): read as unsigned, -2 became 2046, clamped to 38.
                let s = (((typmod - 4) & 0x7ff) ^ 1024) - 1024;
                // numeric(p, s) may have p > 38 (up to 1000): keep 38 digits and let a value
                // that needs more be a clear error, rather than refusing the column.
                Decode::Numeric(p.clamp(1, 38) as u8, s.clamp(-38, 38) as i8)
            }
            Type::NUMERIC => Decode::NumericText,
            Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::CHAR | Type::XML | Type::UNKNOWN => {
                Decode::Text
            }
            Type::JSON => Decode::Text,
            Type::JSONB => Decode::Jsonb,
            Type::UUID => Decode::Uuid,
            Type::DATE => Decode::Date,
            Type::TIME => Decode::Time,
            Type::TIMESTAMP => Decode::Timestamp,
            Type::TIMESTAMPTZ => Decode::TimestampTz,
            Type::INTERVAL => Decode::Interval,
            Type::BYTEA => Decode::Bytea,
            _ if ty.name() == "citext" => Decode::Text,
            _ => {
                return Err(format!("type {} is not read yet: CAST it to text (or another type) in the SQL", ty.name()))
            }
        })
    }

    pub(crate) fn data_type(&self) -> DataType {
        match self {
            Decode::Bool => DataType::Boolean,
            Decode::Int2 | Decode::Int4 | Decode::Int8 | Decode::Oid => DataType::Int64,
            Decode::Float4 | Decode::Float8 => DataType::Float64,
            Decode::Numeric(p, s) => DataType::Decimal128(*p, *s),
            Decode::Text | Decode::NumericText | Decode::Jsonb | Decode::Uuid | Decode::Array(_) => DataType::Utf8,
            Decode::Date => DataType::Date32,
            Decode::Time => DataType::Time64(TimeUnit::Microsecond),
            Decode::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, None),
            Decode::TimestampTz => DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into())),
            Decode::Interval => DataType::Interval(IntervalUnit::MonthDayNano),
            Decode::Bytea => DataType::Binary,
        }
    }

    pub(crate) fn builder(&self, capacity: usize) -> PgBuilder {
        match self.data_type() {
            DataType::Boolean => PgBuilder::Bool(BooleanBuilder::with_capacity(capacity)),
            DataType::Int64 => PgBuilder::Int(Int64Builder::with_capacity(capacity)),
            DataType::Float64 => PgBuilder::Float(Float64Builder::with_capacity(capacity)),
            dt @ DataType::Decimal128(..) => {
                PgBuilder::Decimal(Decimal128Builder::with_capacity(capacity).with_data_type(dt))
            }
            DataType::Date32 => PgBuilder::Date(Date32Builder::with_capacity(capacity)),
            DataType::Time64(_) => PgBuilder::Time(Time64MicrosecondBuilder::with_capacity(capacity)),
            DataType::Timestamp(_, tz) => {
                PgBuilder::Timestamp(TimestampMicrosecondBuilder::with_capacity(capacity).with_timezone_opt(tz))
            }
            DataType::Interval(_) => PgBuilder::Interval(IntervalMonthDayNanoBuilder::with_capacity(capacity)),
            DataType::Binary => PgBuilder::Binary(BinaryBuilder::with_capacity(capacity, capacity * 16)),
            _ => PgBuilder::Text(StringBuilder::with_capacity(capacity, capacity * 16), String::new()),
        }
    }

    /// Decode one value into `b` (made by [`Decode::builder`] of this decoder).
    #[inline]
    pub(crate) fn append(&self, b: &mut PgBuilder, raw: Option<&[u8]>) -> Result<(), String> {
        let Some(raw) = raw else {
            b.append_null();
            return Ok(());
        };
        match (self, b) {
            (Decode::Bool, PgBuilder::Bool(b)) => b.append_value(fixed::<1>(raw)?[0] != 0),
            (Decode::Int2, PgBuilder::Int(b)) => b.append_value(i16::from_be_bytes(fixed(raw)?) as i64),
            (Decode::Int4, PgBuilder::Int(b)) => b.append_value(i32::from_be_bytes(fixed(raw)?) as i64),
            (Decode::Int8, PgBuilder::Int(b)) => b.append_value(i64::from_be_bytes(fixed(raw)?)),
            (Decode::Oid, PgBuilder::Int(b)) => b.append_value(u32::from_be_bytes(fixed(raw)?) as i64),
            (Decode::Float4, PgBuilder::Float(b)) => b.append_value(widen_f32(f32::from_be_bytes(fixed(raw)?))),
            (Decode::Float8, PgBuilder::Float(b)) => b.append_value(f64::from_be_bytes(fixed(raw)?)),
            (Decode::NumericText, PgBuilder::Text(b, _)) => b.append_value(numeric_text(raw)?),
            (Decode::Numeric(p, s), PgBuilder::Decimal(b)) => {
                let s = *s;
                let units = numeric_units(raw, s)?;
                if units.unsigned_abs() >= 10u128.pow(*p as u32) {
                    return Err(format!("{} does not fit decimal({p},{s})", numeric_text(raw)?));
                }
                b.append_value(units)
            }
            (Decode::Text, PgBuilder::Text(b, _)) => b.append_value(utf8(raw)?),
            (Decode::Jsonb, PgBuilder::Text(b, _)) => match raw.split_first() {
                Some((1, rest)) => b.append_value(utf8(rest)?),
                _ => return Err("jsonb in an unknown binary version".into()),
            },
            (Decode::Uuid, PgBuilder::Text(b, _)) => b.append_value(uuid_text(&fixed::<16>(raw)?)),
            (Decode::Date, PgBuilder::Date(b)) => b.append_value(pg_date(i32::from_be_bytes(fixed(raw)?))?),
            (Decode::Time, PgBuilder::Time(b)) => b.append_value(i64::from_be_bytes(fixed(raw)?)),
            (Decode::Timestamp | Decode::TimestampTz, PgBuilder::Timestamp(b)) => {
                b.append_value(pg_timestamp(i64::from_be_bytes(fixed(raw)?))?)
            }
            (Decode::Interval, PgBuilder::Interval(b)) => {
                let raw = fixed::<16>(raw)?;
                let micros = i64::from_be_bytes(raw[0..8].try_into().unwrap());
                let days = i32::from_be_bytes(raw[8..12].try_into().unwrap());
                let months = i32::from_be_bytes(raw[12..16].try_into().unwrap());
                b.append_value(IntervalMonthDayNano::new(months, days, micros * 1000))
            }
            (Decode::Bytea, PgBuilder::Binary(b)) => b.append_value(raw),
            (Decode::Array(elem), PgBuilder::Text(b, scratch)) => {
                scratch.clear();
                array_json(elem, raw, scratch)?;
                b.append_value(scratch.as_str())
            }
            (d, _) => return Err(format!("internal: decoder {d:?} paired with the wrong builder")),
        }
        Ok(())
    }
}

/// Arrow builders for PostgreSQL's types.
pub(crate) enum PgBuilder {
    Bool(BooleanBuilder),
    Int(Int64Builder),
    Float(Float64Builder),
    Decimal(Decimal128Builder),
    /// With a scratch string for arrays' JSON.
    Text(StringBuilder, String),
    Date(Date32Builder),
    Time(Time64MicrosecondBuilder),
    Timestamp(TimestampMicrosecondBuilder),
    Interval(IntervalMonthDayNanoBuilder),
    Binary(BinaryBuilder),
}

impl PgBuilder {
    fn append_null(&mut self) {
        match self {
            PgBuilder::Bool(b) => b.append_null(),
            PgBuilder::Int(b) => b.append_null(),
            PgBuilder::Float(b) => b.append_null(),
            PgBuilder::Decimal(b) => b.append_null(),
            PgBuilder::Text(b, _) => b.append_null(),
            PgBuilder::Date(b) => b.append_null(),
            PgBuilder::Time(b) => b.append_null(),
            PgBuilder::Timestamp(b) => b.append_null(),
            PgBuilder::Interval(b) => b.append_null(),
            PgBuilder::Binary(b) => b.append_null(),
        }
    }

    pub(crate) fn finish(&mut self) -> ArrayRef {
        match self {
            PgBuilder::Bool(b) => Arc::new(b.finish()),
            PgBuilder::Int(b) => Arc::new(b.finish()),
            PgBuilder::Float(b) => Arc::new(b.finish()),
            PgBuilder::Decimal(b) => Arc::new(b.finish()),
            PgBuilder::Text(b, _) => Arc::new(b.finish()),
            PgBuilder::Date(b) => Arc::new(b.finish()),
            PgBuilder::Time(b) => Arc::new(b.finish()),
            PgBuilder::Timestamp(b) => Arc::new(b.finish()),
            PgBuilder::Interval(b) => Arc::new(b.finish()),
            PgBuilder::Binary(b) => Arc::new(b.finish()),
        }
    }
}

#[inline]
fn fixed<const N: usize>(raw: &[u8]) -> Result<[u8; N], String> {
    raw.try_into().map_err(|_| format!("expected {N} bytes on the wire, got {}", raw.len()))
}

#[inline]
fn utf8(raw: &[u8]) -> Result<&str, String> {
    std::str::from_utf8(raw).map_err(|_| "text that is not valid UTF-8".to_string())
}

/// float4 as the double with the same shortest decimal text (1.1f32 is 1.1, not
/// 1.100000023841858), which is what PostgreSQL prints for it.
fn widen_f32(f: f32) -> f64 {
    if !f.is_finite() {
        return f as f64;
    }
    ryu::Buffer::new().format_finite(f).parse::<f64>().unwrap_or(f as f64)
}

fn pg_date(d: i32) -> Result<i32, String> {
    if d == i32::MAX || d == i32::MIN {
        return Err(format!("{}infinity is not a date ream can hold", if d < 0 { "-" } else { "" }));
    }
    d.checked_add(PG_EPOCH_DAYS).ok_or_else(|| "date out of range".to_string())
}

fn pg_timestamp(t: i64) -> Result<i64, String> {
    if t == i64::MAX || t == i64::MIN {
        return Err(format!("{}infinity is not a timestamp ream can hold", if t < 0 { "-" } else { "" }));
    }
    t.checked_add(PG_EPOCH_MICROS).ok_or_else(|| "timestamp out of range".to_string())
}

fn uuid_text(b: &[u8; 16]) -> String {
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
}

const POW10: [i64; 19] = {
    let mut t = [1i64; 19];
    let mut i = 1;
    while i < 19 {
        t[i] = t[i - 1] * 10;
        i += 1;
    }
    t
};

struct NumericHeader<'a> {
    weight: i16,
    sign: u16,
    dscale: u16,
    digits: &'a [u8],
}

fn numeric_header(raw: &[u8]) -> Result<NumericHeader<'_>, String> {
    if raw.len() < 8 {
        return Err("numeric shorter than its header".into());
    }
    let ndigits = u16::from_be_bytes([raw[0], raw[1]]) as usize;
    let h = NumericHeader {
        weight: i16::from_be_bytes([raw[2], raw[3]]),
        sign: u16::from_be_bytes([raw[4], raw[5]]),
        dscale: u16::from_be_bytes([raw[6], raw[7]]),
        digits: &raw[8..],
    };
    if h.digits.len() != ndigits * 2 {
        return Err("numeric with a bad digit count".into());
    }
    match h.sign {
        0x0000 | 0x4000 => Ok(h),
        0xC000 => Err("NaN is not a number ream can hold in a decimal column".into()),
        0xD000 => Err("Infinity is not a number ream can hold in a decimal column".into()),
        0xF000 => Err("-Infinity is not a number ream can hold in a decimal column".into()),
        s => Err(format!("numeric with an unknown sign 0x{s:04x}")),
    }
}

/// A numeric value as units at `scale` (value × 10^scale), exactly, or an error when a
/// digit would be lost or the value passes 38 digits.
pub(crate) fn numeric_units(raw: &[u8], scale: i8) -> Result<i128, String> {
    let h = numeric_header(raw)?;
    let too_big =
        || format!("a number of about 10^{} has more than the 38 digits ream holds", 4 * (h.weight as i32 + 1));
    let n = h.digits.len() / 2;
    let exp = 4 * (h.weight as i32 - n as i32 + 1) + scale as i32;
    // Fast path, most money: up to 16 digits and a shift of at most 10^±18 fit in i64.
    if n <= 4 && (-18..=18).contains(&exp) {
        let mut acc: i64 = 0;
        for i in 0..n {
            acc = acc * 10_000 + u16::from_be_bytes([h.digits[2 * i], h.digits[2 * i + 1]]) as i64;
        }
        let m = POW10[exp.unsigned_abs() as usize];
        let units = if exp >= 0 {
            acc.checked_mul(m).map(|u| u as i128)
        } else if acc % m == 0 {
            Some((acc / m) as i128)
        } else {
            None
        };
        if let Some(u) = units {
            return Ok(if h.sign == 0x4000 { -u } else { u });
        }
    }
    // The digits are base 10000, the first worth 10000^weight. In i256: a value that fits
    // 38 digits may need more on the way (numeric(38,38) has ten groups, 40 digits, the
    // last ones zeros).
    let ten = i256::from_i128(10);
    let mut acc = i256::ZERO;
    for i in 0..n {
        let d = i256::from_i128(u16::from_be_bytes([h.digits[2 * i], h.digits[2 * i + 1]]) as i128);
        acc = acc.checked_mul(i256::from_i128(10_000)).and_then(|a| a.checked_add(d)).ok_or_else(too_big)?;
    }
    // acc × 10^(4 × (weight − n + 1)) is the value; units are that × 10^scale.
    let units = if acc == i256::ZERO {
        i256::ZERO
    } else if exp >= 0 {
        ten.checked_pow(exp as u32).and_then(|m| acc.checked_mul(m)).ok_or_else(too_big)?
    } else {
        match ten.checked_pow((-exp) as u32) {
            Some(d) if acc.checked_rem(d) == Some(i256::ZERO) => acc.checked_div(d).ok_or_else(too_big)?,
            // More decimals than the scale, or a divisor past 10^76: only zeros divide it.
            _ => {
                return Err(format!(
                    "{} has more decimals than the column's scale {scale} holds",
                    numeric_text(raw).unwrap_or_default()
                ))
            }
        }
    };
    let units = units.to_i128().ok_or_else(too_big)?;
    Ok(if h.sign == 0x4000 { -units } else { units })
}

/// A numeric value as PostgreSQL prints it (with its display scale).
pub(crate) fn numeric_text(raw: &[u8]) -> Result<String, String> {
    let h = numeric_header(raw)?;
    let scale = h.dscale.min(38) as i8;
    numeric_units(raw, scale).map(|u| ream_core::value::format_decimal(u, scale))
}

/// An array as JSON: nested by dimension, NULL as null, numbers as numbers.
fn array_json(elem: &Decode, raw: &[u8], out: &mut String) -> Result<(), String> {
    let mut r = Reader(raw);
    let ndim = r.i32()?;
    let _has_null = r.i32()?;
    let _elem_oid = r.i32()?;
    if ndim == 0 {
        out.push_str("[]");
        return Ok(());
    }
    let mut dims = Vec::with_capacity(ndim as usize);
    for _ in 0..ndim {
        dims.push(r.i32()?.max(0) as usize);
        let _lower_bound = r.i32()?;
    }
    array_level(elem, &dims, &mut r, out)?;
    Ok(())
}

fn array_level(elem: &Decode, dims: &[usize], r: &mut Reader<'_>, out: &mut String) -> Result<(), String> {
    out.push('[');
    for i in 0..dims[0] {
        if i > 0 {
            out.push(',');
        }
        if dims.len() > 1 {
            array_level(elem, &dims[1..], r, out)?;
            continue;
        }
        let len = r.i32()?;
        if len < 0 {
            out.push_str("null");
            continue;
        }
        let v = r.take(len as usize)?;
        element_json(elem, v, out)?;
    }
    out.push(']');
    Ok(())
}

fn element_json(elem: &Decode, v: &[u8], out: &mut String) -> Result<(), String> {
    use std::fmt::Write;
    let quoted = |s: &str, out: &mut String| out.push_str(&serde_json::to_string(s).unwrap_or_default());
    match elem {
        Decode::Bool => out.push_str(if fixed::<1>(v)?[0] != 0 { "true" } else { "false" }),
        Decode::Int2 => write!(out, "{}", i16::from_be_bytes(fixed(v)?)).unwrap(),
        Decode::Int4 => write!(out, "{}", i32::from_be_bytes(fixed(v)?)).unwrap(),
        Decode::Int8 => write!(out, "{}", i64::from_be_bytes(fixed(v)?)).unwrap(),
        Decode::Oid => write!(out, "{}", u32::from_be_bytes(fixed(v)?)).unwrap(),
        Decode::Float4 | Decode::Float8 => {
            let f = if *elem == Decode::Float4 {
                widen_f32(f32::from_be_bytes(fixed(v)?))
            } else {
                f64::from_be_bytes(fixed(v)?)
            };
            if f.is_finite() {
                out.push_str(ryu::Buffer::new().format_finite(f))
            } else {
                quoted(&f.to_string(), out)
            }
        }
        Decode::Numeric(..) | Decode::NumericText => out.push_str(&numeric_text(v)?),
        Decode::Text => quoted(utf8(v)?, out),
        Decode::Jsonb => out.push_str(utf8(v.get(1..).unwrap_or_default())?),
        Decode::Uuid => quoted(&uuid_text(&fixed::<16>(v)?), out),
        Decode::Date => {
            let d = pg_date(i32::from_be_bytes(fixed(v)?))?;
            quoted(&ream_core::Value::Date(d).to_string(), out)
        }
        Decode::Timestamp | Decode::TimestampTz => {
            let t = pg_timestamp(i64::from_be_bytes(fixed(v)?))?;
            quoted(&ream_core::Value::Timestamp(t).to_string(), out)
        }
        Decode::Bytea => quoted(&v.iter().map(|b| format!("{b:02x}")).collect::<String>(), out),
        Decode::Time | Decode::Interval | Decode::Array(_) => {
            return Err("arrays of time, interval or arrays are not read yet: CAST the column to text".into())
        }
    }
    Ok(())
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.0.len() < n {
            return Err("array data ends early".into());
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }
    fn i32(&mut self) -> Result<i32, String> {
        Ok(i32::from_be_bytes(self.take(4)?.try_into().unwrap()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numeric(weight: i16, neg: bool, dscale: u16, digits: &[u16]) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend((digits.len() as u16).to_be_bytes());
        v.extend(weight.to_be_bytes());
        v.extend((if neg { 0x4000u16 } else { 0 }).to_be_bytes());
        v.extend(dscale.to_be_bytes());
        for d in digits {
            v.extend(d.to_be_bytes());
        }
        v
    }

    #[test]
    fn numerics_decode_exactly_or_fail() {
        // 12345.67 = [1, 2345, 6700] with weight 1.
        let raw = numeric(1, false, 2, &[1, 2345, 6700]);
        assert_eq!(numeric_units(&raw, 2), Ok(1_234_567));
        assert_eq!(numeric_units(&raw, 4), Ok(123_456_700));
        assert!(numeric_units(&raw, 1).unwrap_err().contains("more decimals"));
        assert_eq!(numeric_text(&raw).unwrap(), "12345.67");
        // -0.05 = [500] with weight -1.
        let raw = numeric(-1, true, 2, &[500]);
        assert_eq!(numeric_units(&raw, 2), Ok(-5));
        // 1e20 = [1] with weight 5, no digits after.
        assert_eq!(numeric_units(&numeric(5, false, 0, &[1]), 0), Ok(100_000_000_000_000_000_000));
        assert_eq!(numeric_units(&numeric(0, false, 0, &[]), 3), Ok(0));
        let nan = [0, 0, 0, 0, 0xC0, 0, 0, 0];
        assert!(numeric_units(&nan, 2).unwrap_err().contains("NaN"));
        let huge = numeric(20, false, 0, &[1]);
        assert!(numeric_units(&huge, 0).unwrap_err().contains("more than the 38 digits"));
    }

    #[test]
    fn numerics_of_38_digits_after_the_point_fit() {
        // 0.12345678901234567890123456789012345678: ten groups, the last 5678 → 5678|00.
        let digits = [1234, 5678, 9012, 3456, 7890, 1234, 5678, 9012, 3456, 7800];
        let raw = numeric(-1, false, 38, &digits);
        assert_eq!(numeric_units(&raw, 38), Ok(12_345_678_901_234_567_890_123_456_789_012_345_678));
        assert_eq!(numeric_text(&raw).unwrap(), "0.12345678901234567890123456789012345678");
        // 1.2345678901234567890123456789012345678 in numeric(38,37).
        let raw = numeric(0, true, 37, &[1, 2345, 6789, 123, 4567, 8901, 2345, 6789, 123, 4567, 8000]);
        assert_eq!(numeric_units(&raw, 37), Ok(-12_345_678_901_234_567_890_123_456_789_012_345_678));
    }

    #[test]
    fn a_negative_scale_is_read_as_one() {
        let typmod = ((5 << 16) | (-2i32 & 0x7ff)) + 4;
        assert_eq!(Decode::for_type(&Type::NUMERIC, typmod), Ok(Decode::Numeric(5, -2)));
        // 12300 in numeric(5,-2) is 123 hundreds.
        assert_eq!(numeric_units(&numeric(1, false, 0, &[1, 2300]), -2), Ok(123));
    }

    #[test]
    fn float4_keeps_its_printed_digits() {
        assert_eq!(widen_f32(1.1), 1.1);
        assert_eq!(widen_f32(-0.3), -0.3);
        assert!(widen_f32(f32::NAN).is_nan());
    }

    #[test]
    fn arrays_become_json() {
        let mut raw = Vec::new();
        for x in [1i32, 0, 23, 2, 1] {
            raw.extend(x.to_be_bytes()); // ndim 1, has null, int4, dim 2, lbound 1
        }
        raw.extend(4i32.to_be_bytes());
        raw.extend(7i32.to_be_bytes());
        raw.extend((-1i32).to_be_bytes());
        let mut out = String::new();
        array_json(&Decode::Int4, &raw, &mut out).unwrap();
        assert_eq!(out, "[7,null]");
    }

    #[test]
    fn dates_move_to_the_unix_epoch_and_infinity_fails() {
        assert_eq!(pg_date(0), Ok(10_957));
        assert!(pg_date(i32::MAX).unwrap_err().contains("infinity"));
        assert_eq!(uuid_text(&[0x12; 16]), "12121212-1212-1212-1212-121212121212");
    }
}
