//! Binding parameters: text from the CLI or a query string becomes typed values, checked
//! against the spec's declaration. Values are only ever bound to placeholders.

use chrono::{NaiveDate, NaiveDateTime};
use indexmap::IndexMap;

use crate::error::{ParamError, ParamErrors};
use crate::spec::{ParamType, ParameterConfig};
use crate::value::{days_from_date, Value};

/// A bound parameter: one value, or several for a list parameter.
#[derive(Debug, Clone, PartialEq)]
pub enum ParamValue {
    One(Value),
    List(Vec<Value>),
}

impl ParamValue {
    pub fn to_json(&self) -> String {
        match self {
            ParamValue::One(v) => v.to_json_string(),
            ParamValue::List(vs) => {
                let parts: Vec<_> = vs.iter().map(Value::to_json_string).collect();
                format!("[{}]", parts.join(","))
            }
        }
    }
}

/// A parameter as given, before binding: text (the CLI's `-p`, a query string), which a
/// list parameter splits at commas; or items (a JSON array, a repeated query key), each
/// one value whatever it holds, commas included.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(untagged)]
pub enum Given {
    Text(String),
    List(Vec<String>),
}

impl From<&str> for Given {
    fn from(s: &str) -> Given {
        Given::Text(s.to_string())
    }
}

impl From<String> for Given {
    fn from(s: String) -> Given {
        Given::Text(s)
    }
}

/// Parameters after binding, in the spec's declaration order.
pub type BoundParams = IndexMap<String, ParamValue>;

/// Check `given` (name, text) pairs against the declarations and produce typed values.
/// Every problem is reported: unknown names, missing required values, values that do not
/// parse or fall outside `one_of`, `min` and `max`.
pub fn bind(
    declared: &IndexMap<String, ParameterConfig>,
    given: &[(String, Given)],
) -> Result<BoundParams, ParamErrors> {
    let mut errors = Vec::new();
    let err = |name: &str, message: String| ParamError { name: name.to_string(), message };
    let mut seen: IndexMap<&str, &Given> = IndexMap::new();
    for (name, text) in given {
        if !declared.contains_key(name) {
            let known: Vec<_> = declared.keys().map(String::as_str).collect();
            let hint = if known.is_empty() {
                "this report takes no parameters".to_string()
            } else {
                format!("known parameters: {}", known.join(", "))
            };
            errors.push(err(name, format!("unknown parameter ({hint})")));
        } else if seen.insert(name, text).is_some() {
            errors.push(err(name, "given more than once".into()));
        }
    }
    let mut bound = BoundParams::new();
    for (name, decl) in declared {
        let given: Option<Given> = match seen.get(name.as_str()) {
            Some(g) => Some((*g).clone()),
            None => decl.default.as_ref().map(json_to_given),
        };
        let Some(given) = given else {
            if decl.required {
                errors.push(err(name, format!("required, expected a {}", type_name(decl.ty))));
            } else {
                let v = if decl.list { ParamValue::List(vec![]) } else { ParamValue::One(Value::Null) };
                bound.insert(name.clone(), v);
            }
            continue;
        };
        match bind_given(decl, &given) {
            Ok(v) => {
                bound.insert(name.clone(), v);
            }
            Err(message) => errors.push(err(name, message)),
        }
    }
    if errors.is_empty() {
        Ok(bound)
    } else {
        Err(ParamErrors(errors))
    }
}

/// Every parameter at its default, or NULL (an empty list) where it has none: for checking
/// a spec against its source without running it.
pub fn defaults(declared: &IndexMap<String, ParameterConfig>) -> BoundParams {
    declared
        .iter()
        .map(|(name, decl)| {
            let v = decl.default.as_ref().and_then(|d| bind_given(decl, &json_to_given(d)).ok());
            let v = v.unwrap_or(if decl.list { ParamValue::List(vec![]) } else { ParamValue::One(Value::Null) });
            (name.clone(), v)
        })
        .collect()
}

fn json_to_text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Array(items) => items.iter().map(json_to_text).collect::<Vec<_>>().join(","),
        other => other.to_string(),
    }
}

/// A default as it would be given: an array is items, anything else text.
pub fn json_to_given(v: &serde_json::Value) -> Given {
    match v {
        serde_json::Value::Array(items) => Given::List(items.iter().map(json_to_text).collect()),
        other => Given::Text(json_to_text(other)),
    }
}

/// Bind one declared parameter as given. Items stay items: `["Smith, John"]` is one
/// value of a list parameter; a single-valued parameter takes exactly one item.
pub fn bind_given(decl: &ParameterConfig, given: &Given) -> Result<ParamValue, String> {
    match given {
        Given::Text(text) => bind_one(decl, text),
        Given::List(items) if decl.list => {
            let values = items.iter().map(|i| check(decl, parse_typed(decl.ty, i)?, i));
            Ok(ParamValue::List(values.collect::<Result<_, _>>()?))
        }
        Given::List(items) => match items.as_slice() {
            [one] => bind_one(decl, one),
            _ => Err(format!("takes one value, but {} were given (declare `list: true` for several)", items.len())),
        },
    }
}

/// Bind one declared parameter from its text.
pub fn bind_one(decl: &ParameterConfig, text: &str) -> Result<ParamValue, String> {
    if decl.list {
        let mut values = Vec::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            values.push(check(decl, parse_typed(decl.ty, part)?, part)?);
        }
        return Ok(ParamValue::List(values));
    }
    let v = parse_typed(decl.ty, text)?;
    Ok(ParamValue::One(check(decl, v, text)?))
}

fn check(decl: &ParameterConfig, v: Value, text: &str) -> Result<Value, String> {
    if !decl.one_of.is_empty() {
        let allowed: Vec<Value> =
            decl.one_of.iter().filter_map(|a| parse_typed(decl.ty, &json_to_text(a)).ok()).collect();
        if !allowed.iter().any(|a| same(a, &v)) {
            let list: Vec<_> = decl.one_of.iter().map(json_to_text).collect();
            return Err(format!("`{text}` is not one of: {}", list.join(", ")));
        }
    }
    if let Some(min) = &decl.min {
        let m = parse_typed(decl.ty, &json_to_text(min))?;
        if compare(&v, &m) == Some(std::cmp::Ordering::Less) {
            return Err(format!("`{text}` is below the minimum {}", json_to_text(min)));
        }
    }
    if let Some(max) = &decl.max {
        let m = parse_typed(decl.ty, &json_to_text(max))?;
        if compare(&v, &m) == Some(std::cmp::Ordering::Greater) {
            return Err(format!("`{text}` is above the maximum {}", json_to_text(max)));
        }
    }
    Ok(v)
}

fn same(a: &Value, b: &Value) -> bool {
    compare(a, b) == Some(std::cmp::Ordering::Equal)
}

/// Order two values of one parameter type.
pub fn compare(a: &Value, b: &Value) -> Option<std::cmp::Ordering> {
    match (a, b) {
        (Value::Str(x), Value::Str(y)) => Some(x.cmp(y)),
        (Value::Date(x), Value::Date(y)) => Some(x.cmp(y)),
        (Value::Timestamp(x), Value::Timestamp(y)) => Some(x.cmp(y)),
        (Value::Bool(x), Value::Bool(y)) => Some(x.cmp(y)),
        (Value::Int(x), Value::Int(y)) => Some(x.cmp(y)),
        (Value::Decimal { units: x, scale: sx }, Value::Decimal { units: y, scale: sy }) => {
            let s = (*sx).max(*sy);
            let xx = x.checked_mul(10i128.checked_pow((s - sx) as u32)?)?;
            let yy = y.checked_mul(10i128.checked_pow((s - sy) as u32)?)?;
            Some(xx.cmp(&yy))
        }
        _ => a.as_f64()?.partial_cmp(&b.as_f64()?),
    }
}

pub fn type_name(t: ParamType) -> &'static str {
    match t {
        ParamType::String => "string",
        ParamType::Int => "int (e.g. 42)",
        ParamType::Decimal => "decimal (e.g. 12.50)",
        ParamType::Float => "float (e.g. 0.5)",
        ParamType::Bool => "bool (true or false)",
        ParamType::Date => "date (YYYY-MM-DD)",
        ParamType::Timestamp => "timestamp (YYYY-MM-DDTHH:MM:SS)",
    }
}

/// Parse text as a value of a parameter type.
pub fn parse_typed(t: ParamType, text: &str) -> Result<Value, String> {
    let bad = || format!("`{text}` is not a valid {}", type_name(t));
    let s = text.trim();
    if text.contains('\0') {
        // PostgreSQL refuses NUL in text, and a C string ends there: never a valid value.
        return Err(format!("`{}` contains a NUL byte, which no database stores in text", text.escape_debug()));
    }
    match t {
        ParamType::String => Ok(Value::Str(text.into())),
        ParamType::Int => s.parse::<i64>().map(Value::Int).map_err(|_| bad()),
        ParamType::Float => match s.parse::<f64>() {
            Ok(f) if f.is_finite() => Ok(Value::Float(f)),
            _ => Err(bad()),
        },
        ParamType::Decimal => parse_decimal(s).ok_or_else(bad),
        ParamType::Bool => match s.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Ok(Value::Bool(true)),
            "false" | "0" | "no" | "off" => Ok(Value::Bool(false)),
            _ => Err(bad()),
        },
        ParamType::Date => NaiveDate::parse_from_str(s, "%Y-%m-%d")
            .ok()
            .filter(in_sql_years)
            .map(|d| Value::Date(days_from_date(d)))
            .ok_or_else(|| bad() + YEARS),
        ParamType::Timestamp => parse_timestamp(s).map(Value::Timestamp).ok_or_else(|| bad() + YEARS),
    }
}

const YEARS: &str = " (a date from 0001-01-01 to 9999-12-31)";

/// Years every database takes: PostgreSQL has no year 0, MySQL none past 9999.
fn in_sql_years(d: &NaiveDate) -> bool {
    use chrono::Datelike;
    (1..=9999).contains(&d.year())
}

/// `-12.345` -> units -12345 at scale 3. Exact; no float on the way.
pub fn parse_decimal(s: &str) -> Option<Value> {
    let (neg, digits) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    if (int.is_empty() && frac.is_empty())
        || !int.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
        || frac.len() > 38
    {
        return None;
    }
    let units: i128 = format!("{int}{frac}").parse().ok()?;
    Some(Value::Decimal { units: if neg { -units } else { units }, scale: frac.len() as i8 })
}

/// Timestamps as `YYYY-MM-DD[T ]HH:MM[:SS[.fff]]`, or with a zone (converted to UTC).
pub fn parse_timestamp(s: &str) -> Option<i64> {
    let utc = if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        t.naive_utc()
    } else {
        ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M"]
            .iter()
            .find_map(|f| NaiveDateTime::parse_from_str(s, f).ok())
            .or_else(|| NaiveDate::parse_from_str(s, "%Y-%m-%d").ok().and_then(|d| d.and_hms_opt(0, 0, 0)))?
    };
    in_sql_years(&utc.date()).then(|| utc.and_utc().timestamp_micros())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decl(ty: ParamType) -> ParameterConfig {
        ParameterConfig {
            ty,
            required: false,
            default: None,
            list: false,
            one_of: vec![],
            min: None,
            max: None,
            label: None,
            description: None,
        }
    }

    #[test]
    fn typed_values_bind() {
        let mut d = IndexMap::new();
        d.insert("n".to_string(), decl(ParamType::Int));
        d.insert("day".to_string(), decl(ParamType::Date));
        d.insert("amt".to_string(), ParameterConfig { default: Some("0".into()), ..decl(ParamType::Decimal) });
        let b = bind(&d, &[("n".into(), "42".into()), ("day".into(), "2025-01-31".into())]).unwrap();
        assert_eq!(b["n"], ParamValue::One(Value::Int(42)));
        assert_eq!(b["amt"], ParamValue::One(Value::Decimal { units: 0, scale: 0 }));
    }

    #[test]
    fn given_items_stay_items_with_their_commas() {
        let mut d = IndexMap::new();
        d.insert("names".to_string(), ParameterConfig { list: true, ..decl(ParamType::String) });
        d.insert("one".to_string(), decl(ParamType::Int));
        let items = Given::List(vec!["Smith, John".into(), "Doe".into()]);
        let b = bind(&d, &[("names".into(), items), ("one".into(), Given::List(vec!["7".into()]))]).unwrap();
        let want = vec![Value::Str("Smith, John".into()), Value::Str("Doe".into())];
        assert_eq!(b["names"], ParamValue::List(want));
        assert_eq!(b["one"], ParamValue::One(Value::Int(7)));
        let e = bind(&d, &[("one".into(), Given::List(vec!["1".into(), "2".into()]))]).unwrap_err();
        assert!(e.to_string().contains("takes one value, but 2 were given"), "{e}");
        // Text still splits at commas for a list parameter.
        let b = bind(&d, &[("names".into(), "a,b".into())]).unwrap();
        assert_eq!(b["names"], ParamValue::List(vec![Value::Str("a".into()), Value::Str("b".into())]));
    }

    #[test]
    fn values_no_database_takes_are_parameter_errors() {
        let e = parse_typed(ParamType::String, "a\0b").unwrap_err();
        assert!(e.contains("contains a NUL byte"), "{e}");
        for (t, text) in [(ParamType::Date, "0000-01-01"), (ParamType::Timestamp, "0000-06-01 12:00")] {
            let e = parse_typed(t, text).unwrap_err();
            assert!(e.contains("from 0001-01-01 to 9999-12-31"), "{e}");
        }
        assert!(parse_typed(ParamType::Date, "0001-01-01").is_ok());
        assert!(parse_typed(ParamType::Timestamp, "9999-12-31T23:59:59.999999").is_ok());
    }

    #[test]
    fn every_parameter_problem_is_reported() {
        let mut d = IndexMap::new();
        d.insert("start".to_string(), ParameterConfig { required: true, ..decl(ParamType::Date) });
        d.insert("n".to_string(), ParameterConfig { max: Some(10.into()), ..decl(ParamType::Int) });
        let e = bind(&d, &[("n".into(), "11".into()), ("nope".into(), "1".into())]).unwrap_err();
        let names: Vec<_> = e.0.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, vec!["nope", "start", "n"]);
        assert!(e.to_string().contains("above the maximum 10"), "{e}");
    }

    #[test]
    fn hostile_text_is_only_ever_a_string_value() {
        let v = parse_typed(ParamType::String, "'; DROP TABLE invoices; --").unwrap();
        assert_eq!(v, Value::Str("'; DROP TABLE invoices; --".into()));
        assert!(parse_typed(ParamType::Int, "1; DROP TABLE x").is_err());
    }

    #[test]
    fn decimals_parse_exactly() {
        assert_eq!(parse_decimal("-12.50"), Some(Value::Decimal { units: -1250, scale: 2 }));
        assert_eq!(parse_decimal("1e3"), None);
        assert_eq!(parse_decimal("."), None);
    }
}
