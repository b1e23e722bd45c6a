//! ream-request: what a caller asks of a run, parsed: the parameters of a query string,
//! the body of `POST /runs` (report, format, parameters, a [`Split`] or a burst) and the
//! format an `Accept` header names. Pure functions of the bytes, with no server in
//! them, so the fuzz targets reach them directly; every refusal is a [`BadRequest`],
//! which the server answers with 400.
//!
//! ```
//! use ream_core::params::Given;
//! use ream_request::{query_parameters, RunBody};
//! let q = query_parameters(Some("status=paid&status=open&region=EU")).unwrap();
//! assert_eq!(q[0], ("status".to_string(), Given::List(vec!["paid".into(), "open".into()])));
//! let body = RunBody::parse(br#"{"report": "r", "format": "csv", "parameters": {"names": ["Smith, John"]}}"#).unwrap();
//! assert_eq!(body.parameters[0].1, Given::List(vec!["Smith, John".into()]));
//! ```

mod split;

use ream_core::params::Given;
use ream_render::Format;
use serde::Deserialize;

pub use split::{Split, Unsplittable, SPLIT_FORMATS};

/// A request that does not say what it must, and why: the server's 400.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadRequest(pub String);

/// Query parameters as given: a key repeated (`?status=paid&status=open`) gives items, as
/// a JSON array does; a key given once is text (`status=paid,open` splits at commas).
pub fn query_parameters(query: Option<&str>) -> Result<Vec<(String, Given)>, BadRequest> {
    let pairs: Vec<(String, String)> =
        serde_urlencoded::from_str(query.unwrap_or("")).map_err(|e| BadRequest(format!("query string: {e}")))?;
    let mut given: Vec<(String, Given)> = Vec::new();
    for (k, v) in pairs {
        match given.iter_mut().find(|(name, _)| *name == k) {
            Some((_, g)) => {
                let items = match std::mem::replace(g, Given::List(vec![])) {
                    Given::Text(first) => vec![first, v],
                    Given::List(mut items) => {
                        items.push(v);
                        items
                    }
                };
                *g = Given::List(items);
            }
            None => given.push((k, Given::Text(v))),
        }
    }
    Ok(given)
}

/// Parameters as a JSON object (a list as an array), as a run records them.
pub fn parameters_json(given: &[(String, Given)]) -> serde_json::Value {
    serde_json::Value::Object(given.iter().map(|(k, v)| (k.clone(), serde_json::json!(v))).collect())
}

/// The body of `POST /runs`.
#[derive(Debug)]
pub struct RunBody {
    pub report: String,
    pub format: Format,
    pub parameters: Vec<(String, Given)>,
    /// The output as parts with a manifest.
    pub split: Option<Split>,
    /// One output per value of the spec's `burst.by`, as parts with a manifest.
    pub burst: bool,
}

/// `POST /runs`: a report to run in the background, its format and parameters.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = RunRequest)]
pub struct Wire {
    /// The report's id.
    report: String,
    /// csv, ndjson, json, html, pdf, xlsx, parquet or arrow.
    format: String,
    /// Name to value; a list parameter takes an array, each item one value.
    #[serde(default)]
    parameters: serde_json::Map<String, serde_json::Value>,
    /// Store the output as parts (csv, ndjson, parquet, xlsx) with a manifest, which
    /// `GET /runs/{id}/output` returns.
    #[serde(default)]
    split: Option<SplitWire>,
    /// Burst the report (its spec's `burst:`): one output per value of `burst.by`, listed
    /// with their recipients in the manifest `GET /runs/{id}/output` returns.
    #[serde(default)]
    burst: bool,
}

/// Where the parts of a split output end.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SplitWire {
    /// At most this many rows per part.
    #[schema(value_type = Option<u64>)]
    rows: Option<serde_json::Value>,
    /// About this many bytes per part: a number, or text with a unit (`"64MiB"`).
    #[schema(value_type = Option<String>)]
    bytes: Option<serde_json::Value>,
    /// A field: one hive directory per value (`FIELD=value/part-00001.parquet`).
    by: Option<String>,
}

impl SplitWire {
    fn parse(self) -> Result<Option<Split>, BadRequest> {
        let bad = |e: String| BadRequest(format!("split: {e}"));
        // A JSON number that is a whole count (`1000`, or `1000.0`: JSON does not tell them
        // apart).
        let count = |what: &str, n: &serde_json::Number| {
            n.as_u64()
                .or_else(|| {
                    n.as_f64().filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f < 2f64.powi(63)).map(|f| f as u64)
                })
                .ok_or_else(|| bad(format!("{what}: `{n}` is not a count")))
        };
        let rows = match self.rows {
            None => None,
            Some(serde_json::Value::Number(n)) => Some(count("rows", &n)?),
            Some(other) => return Err(bad(format!("rows: `{other}` is not a count"))),
        };
        let bytes = match self.bytes {
            None => None,
            Some(serde_json::Value::Number(n)) => Some(count("bytes", &n)?),
            Some(serde_json::Value::String(s)) => Some(ream_core::units::parse_bytes(&s).map_err(bad)?),
            Some(other) => return Err(bad(format!("bytes: `{other}` is not a byte count"))),
        };
        match Split::new(rows, bytes, self.by).map_err(bad)? {
            None => Err(bad("give rows, bytes or by".into())),
            split => Ok(split),
        }
    }
}

impl RunBody {
    pub fn parse(body: &[u8]) -> Result<RunBody, BadRequest> {
        let wire: Wire = serde_json::from_slice(body).map_err(|e| {
            BadRequest(format!("request body: {e} (expected {{\"report\", \"format\", \"parameters\"}})"))
        })?;
        let format =
            Format::from_name(&wire.format).ok_or_else(|| BadRequest(format!("unknown format `{}`", wire.format)))?;
        // A JSON array stays a list of items, each one value ("Smith, John" included).
        let text = |v: serde_json::Value| match v {
            serde_json::Value::String(s) => s,
            other => other.to_string(),
        };
        let parameters = wire
            .parameters
            .into_iter()
            .map(|(k, v)| match v {
                serde_json::Value::Array(items) => (k, Given::List(items.into_iter().map(text).collect())),
                other => (k, Given::Text(text(other))),
            })
            .collect();
        // The format's fitness for a split is the run's check (a 400 after the report is
        // found).
        let split = wire.split.map(SplitWire::parse).transpose()?.flatten();
        Ok(RunBody { report: wire.report, format, parameters, split, burst: wire.burst })
    }
}

/// The output format a request's `Accept` names by media type, in the client's order of
/// preference (`q`), for `/reports/{id}` without an extension. `application/json`,
/// `text/html` (every browser sends it: a page visit must not run a report) and
/// wildcards name none: they get the report's description.
pub fn accepted_format(accept: &str) -> Option<Format> {
    let mut wanted: Vec<(f32, usize, Format)> = Vec::new();
    for (i, part) in accept.split(',').enumerate() {
        let mut it = part.split(';').map(str::trim);
        let media = it.next().unwrap_or("").to_ascii_lowercase();
        let q = it.find_map(|p| p.strip_prefix("q=").map(|v| v.trim().parse::<f32>().unwrap_or(0.0))).unwrap_or(1.0);
        let format = Format::ALL
            .into_iter()
            .filter(|f| !matches!(f, Format::Json | Format::Html))
            .find(|f| f.content_type().split(';').next().is_some_and(|m| m.eq_ignore_ascii_case(&media)));
        if let Some(f) = format.filter(|_| q > 0.0) {
            wanted.push((q, i, f));
        }
    }
    wanted.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    wanted.first().map(|w| w.2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_split_takes_counts_as_whole_numbers_or_sizes_with_units_and_needs_one_limit() {
        let split =
            |body: &str| RunBody::parse(format!(r#"{{"report": "r", "format": "csv", "split": {body}}}"#).as_bytes());
        let s = split(r#"{"rows": 1000.0, "bytes": "64MiB", "by": "region"}"#).unwrap().split.unwrap();
        assert_eq!((s.rows(), s.bytes(), s.by()), (Some(1000), Some(64 << 20), Some("region")));
        assert_eq!(split(r#"{"bytes": 5000}"#).unwrap().split.unwrap().bytes(), Some(5000));
        let message = |body: &str| split(body).unwrap_err().to_string();
        assert!(message(r#"{}"#).contains("give rows, bytes or by"));
        assert!(message(r#"{"rows": null}"#).contains("give rows, bytes or by"));
        assert!(message(r#"{"rows": 1.5}"#).contains("rows: `1.5` is not a count"));
        assert!(message(r#"{"rows": 0}"#).contains("at least 1"));
        assert!(message(r#"{"bytes": "9Q"}"#).contains("unknown unit `q`"));
        assert!(message(r#"{"bytes": true}"#).contains("not a byte count"));
        assert!(message(r#"{"parts": 3}"#).contains("unknown field `parts`"));
    }

    #[test]
    fn accept_names_an_output_by_its_media_type_in_the_clients_order() {
        assert_eq!(accepted_format("application/vnd.apache.parquet"), Some(Format::Parquet));
        assert_eq!(accepted_format("text/csv;q=0.5, application/vnd.apache.arrow.stream"), Some(Format::Arrow));
        assert_eq!(accepted_format("text/html, text/csv"), Some(Format::Csv));
        assert_eq!(accepted_format("text/html,application/xhtml+xml,*/*;q=0.8"), None);
        assert_eq!(accepted_format("TEXT/CSV"), Some(Format::Csv));
        assert_eq!(accepted_format("text/csv;q=0"), None);
        // JSON and wildcards get the report's description.
        assert_eq!(accepted_format("application/json"), None);
        assert_eq!(accepted_format("*/*"), None);
        assert_eq!(accepted_format(""), None);
    }
}
