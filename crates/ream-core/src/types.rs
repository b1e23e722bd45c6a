//! ream's column types, as a spec names them and as Arrow stores them.

use arrow_schema::{DataType, TimeUnit};

/// `int`, `float`, `decimal(P,S)`, `string`, `bool`, `date`, `timestamp`, `binary`.
pub fn parse_type_name(s: &str) -> Result<DataType, String> {
    let t = s.trim().to_ascii_lowercase();
    let dt = match t.as_str() {
        "int" | "integer" | "bigint" => DataType::Int64,
        "float" | "double" | "real" => DataType::Float64,
        "string" | "text" => DataType::Utf8,
        "bool" | "boolean" => DataType::Boolean,
        "date" => DataType::Date32,
        "timestamp" | "datetime" => DataType::Timestamp(TimeUnit::Microsecond, None),
        "binary" | "blob" => DataType::Binary,
        _ => {
            return parse_decimal_type(&t).ok_or_else(|| {
                format!(
                    "unknown type `{s}` (expected int, float, decimal(P,S), string, bool, date, timestamp or binary)"
                )
            })
        }
    };
    Ok(dt)
}

/// `decimal(12,2)` / `numeric(12, 2)` -> Decimal128(12, 2); `decimal(10)` -> scale 0.
pub fn parse_decimal_type(t: &str) -> Option<DataType> {
    let t = t.trim().to_ascii_lowercase();
    let rest = t.strip_prefix("decimal").or_else(|| t.strip_prefix("numeric"))?;
    let inner = rest.trim().strip_prefix('(')?.strip_suffix(')')?;
    let mut it = inner.split(',').map(|p| p.trim().parse::<u8>());
    let p = it.next()?.ok()?;
    let s = match it.next() {
        Some(s) => s.ok()?,
        None => 0,
    };
    if it.next().is_some() || p == 0 || p > 38 || s > p {
        return None;
    }
    Some(DataType::Decimal128(p, s as i8))
}

/// The short name ream shows for an Arrow type (in JSON meta and errors).
pub fn type_label(dt: &DataType) -> String {
    match dt {
        DataType::Int64 => "int".into(),
        DataType::Float64 => "float".into(),
        DataType::Utf8 => "string".into(),
        DataType::Boolean => "bool".into(),
        DataType::Date32 => "date".into(),
        DataType::Timestamp(..) => "timestamp".into(),
        DataType::Binary => "binary".into(),
        DataType::Decimal128(p, s) => format!("decimal({p},{s})"),
        other => other.to_string(),
    }
}

/// Field metadata marking a text column that holds exact decimal numbers of varying
/// scale (PostgreSQL's `numeric` without precision: what `sum()` and arithmetic on
/// numerics return). Variables sum, average and compare its values as decimals.
pub const DECIMAL_TEXT: &str = "ream.decimal_text";

/// Whether a field holds exact decimal text (see [`DECIMAL_TEXT`]).
pub fn is_decimal_text(field: &arrow_schema::Field) -> bool {
    field.metadata().contains_key(DECIMAL_TEXT)
}

/// A field of exact decimal text (see [`DECIMAL_TEXT`]).
pub fn decimal_text_field(name: &str) -> arrow_schema::Field {
    let meta = std::collections::HashMap::from([(DECIMAL_TEXT.to_string(), "true".to_string())]);
    arrow_schema::Field::new(name, arrow_schema::DataType::Utf8, true).with_metadata(meta)
}

/// Whether a variable can sum, average and spread a field's values: int, float, decimal,
/// or exact decimal text.
pub fn is_numeric(field: &arrow_schema::Field) -> bool {
    matches!(field.data_type(), DataType::Int64 | DataType::Float64 | DataType::Decimal128(..))
        || is_decimal_text(field)
}

/// Why `aggregate` (`sum`, `avg`, …) cannot take `field`, which is not a number. Text the
/// database did not type (`declared` false) may be a number: the message says how to
/// make it one. The one wording of this error, for the spec's declared types and the
/// source's alike.
pub fn not_numeric(aggregate: &str, field: &arrow_schema::Field, declared: bool) -> String {
    let name = field.name();
    let hint = if !declared && field.data_type() == &DataType::Utf8 {
        format!(
            " (an untyped SQLite expression is read as text: declare the type, e.g. `columns: \
             {{{name}: {{expr: ..., type: decimal(38,4)}}}}`, or CAST it in the SQL)"
        )
    } else {
        String::new()
    };
    format!("{aggregate} needs a numeric field, but `{name}` is {}{hint}", type_label(field.data_type()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_names_parse() {
        assert_eq!(parse_type_name("decimal(12, 2)"), Ok(DataType::Decimal128(12, 2)));
        assert_eq!(parse_type_name("NUMERIC(5)"), Ok(DataType::Decimal128(5, 0)));
        assert!(parse_type_name("decimal(2,5)").is_err());
        assert!(parse_type_name("money").unwrap_err().contains("unknown type"));
    }
}
