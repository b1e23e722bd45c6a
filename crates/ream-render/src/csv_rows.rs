//! CSV rows written straight from Arrow arrays, byte for byte what arrow-csv writes, in a
//! fraction of the time. arrow-csv formats every value through `fmt` into a scratch
//! string, then copies it into a `csv` record: on a 6M-row export that was the busiest
//! thread of the run. Here the common types (integers, floats, decimals, text, dates,
//! booleans) are written directly into the output; the rest go through arrow's own
//! formatter, with the same options arrow-csv uses. `tests/golden` and the 1M-row
//! differential test hold the output to the old bytes.

use std::fmt::Write as _;

use arrow_array::cast::AsArray;
use arrow_array::types::*;
use arrow_array::{Array, ArrayRef};
use arrow_cast::display::{ArrayFormatter, FormatOptions};
use arrow_schema::{ArrowError, DataType};

enum Col<'a> {
    I64(&'a arrow_array::Int64Array),
    I32(&'a arrow_array::Int32Array),
    F64(&'a arrow_array::Float64Array),
    Dec(&'a arrow_array::Decimal128Array, i8),
    Str(&'a arrow_array::StringArray),
    Date(&'a arrow_array::Date32Array),
    Bool(&'a arrow_array::BooleanArray),
    Other(&'a dyn Array, ArrayFormatter<'a>),
}

/// Write the rows of `columns` (all the same length, at least two) as CSV records.
pub(crate) fn write_rows(columns: &[ArrayRef], out: &mut Vec<u8>) -> Result<(), ArrowError> {
    let options = FormatOptions::default().with_null("");
    let cols = columns
        .iter()
        .map(|a| {
            Ok(match a.data_type() {
                DataType::Int64 => Col::I64(a.as_primitive::<Int64Type>()),
                DataType::Int32 => Col::I32(a.as_primitive::<Int32Type>()),
                DataType::Float64 => Col::F64(a.as_primitive::<Float64Type>()),
                DataType::Decimal128(_, s) if *s >= 0 => Col::Dec(a.as_primitive::<Decimal128Type>(), *s),
                DataType::Utf8 => Col::Str(a.as_string::<i32>()),
                DataType::Date32 => Col::Date(a.as_primitive::<Date32Type>()),
                DataType::Boolean => Col::Bool(a.as_boolean()),
                _ => Col::Other(a.as_ref(), ArrayFormatter::try_new(a.as_ref(), &options)?),
            })
        })
        .collect::<Result<Vec<_>, ArrowError>>()?;
    let rows = columns.first().map_or(0, |c| c.len());
    let mut scratch = String::new();
    let mut ints = itoa::Buffer::new();
    let mut floats = ryu::Buffer::new();
    for row in 0..rows {
        for (j, col) in cols.iter().enumerate() {
            if j > 0 {
                out.push(b',');
            }
            match col {
                Col::I64(a) if a.is_valid(row) => out.extend_from_slice(ints.format(a.value(row)).as_bytes()),
                Col::I32(a) if a.is_valid(row) => out.extend_from_slice(ints.format(a.value(row)).as_bytes()),
                Col::F64(a) if a.is_valid(row) => out.extend_from_slice(floats.format(a.value(row)).as_bytes()),
                Col::Dec(a, s) if a.is_valid(row) => decimal(out, a.value(row), *s),
                Col::Str(a) if a.is_valid(row) => field(a.value(row).as_bytes(), out),
                // Years outside 0..=9999: arrow's formatter writes them with a sign.
                Col::Date(a) if a.is_valid(row) && !date(a.value(row), out) => {
                    scratch.clear();
                    let f = ArrayFormatter::try_new(*a as &dyn Array, &options)?;
                    f.value(row).write(&mut scratch)?;
                    field(scratch.as_bytes(), out);
                }
                Col::Bool(a) if a.is_valid(row) => out.extend_from_slice(if a.value(row) { b"true" } else { b"false" }),
                Col::Other(a, f) if a.is_valid(row) => {
                    scratch.clear();
                    let _ = write!(scratch, "{}", f.value(row));
                    field(scratch.as_bytes(), out);
                }
                _ => {}
            }
        }
        out.push(b'\n');
    }
    Ok(())
}

/// A text field, quoted when it holds a delimiter, a quote or a line break (RFC 4180;
/// what the `csv` crate does with `QuoteStyle::Necessary`).
#[inline]
fn field(v: &[u8], out: &mut Vec<u8>) {
    if !v.iter().any(|&b| matches!(b, b',' | b'"' | b'\n' | b'\r')) {
        out.extend_from_slice(v);
        return;
    }
    out.push(b'"');
    for &b in v {
        if b == b'"' {
            out.push(b'"');
        }
        out.push(b);
    }
    out.push(b'"');
}

/// An exact decimal, `units × 10^-scale`, as its digits, as arrow prints it (`-0.05`,
/// `12.30`, `7`; a negative scale appends zeros). No allocation: csv and xlsx write every
/// cell of a numeric column from PostgreSQL or MySQL with it.
#[inline]
pub(crate) fn decimal(out: &mut Vec<u8>, units: i128, scale: i8) {
    if scale <= 0 {
        out.extend_from_slice(itoa::Buffer::new().format(units).as_bytes());
        out.extend(std::iter::repeat_n(b'0', scale.unsigned_abs() as usize));
        return;
    }
    if units < 0 {
        out.push(b'-');
    }
    let mut buf = itoa::Buffer::new();
    let digits = buf.format(units.unsigned_abs()).as_bytes();
    let scale = scale as usize;
    if digits.len() > scale {
        let (int, frac) = digits.split_at(digits.len() - scale);
        out.extend_from_slice(int);
        out.push(b'.');
        out.extend_from_slice(frac);
    } else {
        out.extend_from_slice(b"0.");
        out.extend(std::iter::repeat_n(b'0', scale - digits.len()));
        out.extend_from_slice(digits);
    }
}

/// Days since 1970-01-01 as `YYYY-MM-DD`, for years 0 to 9999 (others: false, and the
/// caller uses arrow's formatter, which writes them with a sign).
#[inline]
fn date(days: i32, out: &mut Vec<u8>) -> bool {
    // Howard Hinnant's civil_from_days.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + (m <= 2) as i64;
    if !(0..=9999).contains(&y) {
        return false;
    }
    let two = |n: i64| [b'0' + (n / 10) as u8, b'0' + (n % 10) as u8];
    out.extend_from_slice(&two(y / 100));
    out.extend_from_slice(&two(y % 100));
    out.push(b'-');
    out.extend_from_slice(&two(m));
    out.push(b'-');
    out.extend_from_slice(&two(d));
    true
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::*;

    use super::*;

    /// Whatever we write must be what arrow-csv writes.
    fn arrow_csv(columns: &[ArrayRef]) -> Vec<u8> {
        let fields: Vec<_> = columns
            .iter()
            .enumerate()
            .map(|(i, c)| arrow_schema::Field::new(format!("c{i}"), c.data_type().clone(), true))
            .collect();
        let batch = RecordBatch::try_new(Arc::new(arrow_schema::Schema::new(fields)), columns.to_vec()).unwrap();
        let mut out = Vec::new();
        arrow_csv::WriterBuilder::new().with_header(false).build(&mut out).write(&batch).unwrap();
        out
    }

    #[test]
    fn rows_are_what_arrow_csv_writes() {
        let days: Vec<Option<i32>> =
            vec![Some(0), Some(-1), Some(19_000), Some(-719_528), Some(2_932_896), Some(3_000_000), None, Some(11_016)];
        let n = days.len();
        let cols: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from(vec![
                Some(0),
                Some(-5),
                Some(i64::MAX),
                Some(i64::MIN),
                None,
                Some(7),
                Some(1),
                Some(2),
            ])),
            Arc::new(Float64Array::from(vec![
                Some(0.1),
                Some(-2.5),
                Some(1e21),
                Some(f64::NAN),
                None,
                Some(3.0),
                Some(1e-7),
                Some(-0.0),
            ])),
            Arc::new(
                Decimal128Array::from(vec![
                    Some(-5),
                    Some(1234),
                    Some(0),
                    Some(100),
                    None,
                    Some(-123_456),
                    Some(7),
                    Some(10),
                ])
                .with_precision_and_scale(12, 2)
                .unwrap(),
            ),
            Arc::new(StringArray::from(vec![
                Some("plain"),
                Some("a,b"),
                Some("say \"hi\""),
                Some("line\nbreak"),
                Some(""),
                None,
                Some(" lead"),
                Some("cr\r"),
            ])),
            Arc::new(Date32Array::from(days)),
            Arc::new(BooleanArray::from(vec![
                Some(true),
                Some(false),
                None,
                Some(true),
                None,
                None,
                Some(false),
                Some(true),
            ])),
            Arc::new(TimestampMicrosecondArray::from(vec![Some(1_500_000); n])),
            Arc::new(Decimal128Array::from(vec![Some(5); n]).with_precision_and_scale(5, 0).unwrap()),
        ];
        let mut ours = Vec::new();
        write_rows(&cols, &mut ours).unwrap();
        assert_eq!(String::from_utf8(ours).unwrap(), String::from_utf8(arrow_csv(&cols)).unwrap());
    }
}
