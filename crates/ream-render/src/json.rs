use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_json::writer::LineDelimited;
use ream_core::{Event, ReportMeta, Value};

use crate::{project, RenderError, Renderer};

fn enc(format: &'static str) -> impl Fn(arrow_schema::ArrowError) -> RenderError {
    move |e| RenderError::Encode { format, message: e.to_string() }
}

/// Rows as JSON objects, one per line, through arrow's JSON writer: integers and
/// decimals as numbers (decimals with their exact digits), dates and timestamps as ISO
/// 8601 strings, NULL as `null`.
fn write_rows(
    batch: &RecordBatch,
    indices: &[usize],
    format: &'static str,
    out: &mut Vec<u8>,
) -> Result<(), RenderError> {
    let batch = project(batch, indices, format)?;
    let mut w = arrow_json::WriterBuilder::new().with_explicit_nulls(true).build::<_, LineDelimited>(&mut *out);
    w.write(&batch).map_err(enc(format))?;
    w.finish().map_err(enc(format))?;
    Ok(())
}

/// Newline-delimited JSON: one object per detail row.
#[derive(Default)]
pub struct NdjsonRenderer {
    indices: Option<Vec<usize>>,
    /// A summary report (`detail: false`): the meta, and the open groups' keys.
    summary: Option<Arc<ReportMeta>>,
    keys: Vec<Value>,
}

impl Renderer for NdjsonRenderer {
    fn push(&mut self, event: &Event, out: &mut Vec<u8>) -> Result<(), RenderError> {
        match event {
            Event::Begin(meta) if !meta.detail => self.summary = Some(meta.clone()),
            Event::Begin(meta) => self.indices = Some(meta.columns.iter().map(|c| c.index).collect()),
            e if self.summary.is_some() => {
                let meta = self.summary.clone().expect("checked");
                if let Some(values) = crate::summary_record(&meta, &mut self.keys, e) {
                    object(meta.summary_fields().into_iter().zip(&values), out);
                    out.push(b'\n');
                }
            }
            Event::Rows(batch) => {
                let indices = self.indices.as_ref().ok_or(RenderError::NotStarted { format: "ndjson" })?;
                write_rows(batch, indices, "ndjson", out)?;
            }
            _ => {}
        }
        Ok(())
    }
}

/// One JSON document:
///
/// ```text
/// {"report":…,"title":…,"parameters":{…},"columns":[{"field","label","type"}…],
///  "groups":[{"group":"region","key":"East","header":"…",
///             "rows":[…] or "groups":[…],
///             "variables":{…},"footer":"…"}…]      (or "rows":[…] without groups)
///  ,"variables":{…},"summary":"…","row_count":N}
/// ```
#[derive(Default)]
pub struct JsonRenderer {
    meta: Option<Arc<ReportMeta>>,
    indices: Vec<usize>,
    /// Group keys of the open groups, outermost first.
    keys: Vec<Value>,
    /// Whether the innermost open array already has an element.
    has_item: Vec<bool>,
    scratch: Vec<u8>,
}

const FORMAT: &str = "json";

/// `{"name":value,…}`.
fn object<'a>(pairs: impl Iterator<Item = (&'a str, &'a Value)>, out: &mut Vec<u8>) {
    out.push(b'{');
    for (i, (name, v)) in pairs.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        string(name, out);
        out.push(b':');
        v.write_json(out);
    }
    out.push(b'}');
}

fn string(s: &str, out: &mut Vec<u8>) {
    serde_json::to_writer(&mut *out, s).expect("writing to a Vec does not fail");
}

impl JsonRenderer {
    fn comma(&mut self, out: &mut Vec<u8>) {
        if let Some(last) = self.has_item.last_mut() {
            if *last {
                out.push(b',');
            }
            *last = true;
        }
    }

    fn variables(&self, meta: &ReportMeta, values: &[Value], out: &mut Vec<u8>) {
        out.extend_from_slice(b"\"variables\":");
        object(meta.variables.iter().map(String::as_str).zip(values), out);
    }
}

impl Renderer for JsonRenderer {
    fn push(&mut self, event: &Event, out: &mut Vec<u8>) -> Result<(), RenderError> {
        match event {
            Event::Begin(meta) => {
                self.indices = meta.columns.iter().map(|c| c.index).collect();
                out.extend_from_slice(b"{\"report\":");
                string(&meta.report, out);
                out.extend_from_slice(b",\"title\":");
                match &meta.title {
                    Some(t) => string(t, out),
                    None => out.extend_from_slice(b"null"),
                }
                out.extend_from_slice(b",\"parameters\":{");
                for (i, (name, v)) in meta.parameters.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    string(name, out);
                    out.push(b':');
                    out.extend_from_slice(v.to_json().as_bytes());
                }
                // No strategy: how a source was read is the run's (`--explain`, the run
                // record), not the report's, and would make one spec's document differ
                // from one database to another.
                out.extend_from_slice(b"},\"columns\":[");
                for (i, c) in meta.columns.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    out.extend_from_slice(b"{\"field\":");
                    string(&c.field, out);
                    out.extend_from_slice(b",\"label\":");
                    string(&c.label, out);
                    out.extend_from_slice(b",\"type\":");
                    string(&ream_core::types::type_label(meta.schema.field(c.index).data_type()), out);
                    out.push(b'}');
                }
                out.extend_from_slice(match (meta.groups.is_empty(), meta.detail) {
                    (false, _) => b"],\"groups\":[",
                    (true, true) => b"],\"rows\":[",
                    // A summary without groups: no array to open; `End` closes none.
                    (true, false) => b"]",
                });
                self.has_item = vec![false];
                self.meta = Some(meta.clone());
            }
            Event::GroupHeader { level, key, first } => {
                let meta = self.meta.clone().ok_or(RenderError::NotStarted { format: FORMAT })?;
                self.comma(out);
                self.keys.truncate(*level);
                self.keys.push(key.clone());
                let g = &meta.groups[*level];
                out.extend_from_slice(b"{\"group\":");
                string(&g.name, out);
                out.extend_from_slice(b",\"key\":");
                key.write_json(out);
                if let Some(h) = &g.header {
                    out.extend_from_slice(b",\"header\":");
                    string(&h.render(|n| meta.lookup_in_row(n, None, &self.keys, Some(first))), out);
                }
                let innermost = *level + 1 == meta.groups.len();
                if !innermost {
                    out.extend_from_slice(b",\"groups\":[");
                } else if meta.detail {
                    out.extend_from_slice(b",\"rows\":[");
                }
                self.has_item.push(false);
            }
            Event::Rows(batch) => {
                match &self.meta {
                    None => return Err(RenderError::NotStarted { format: FORMAT }),
                    Some(m) if !m.detail => return Ok(()),
                    _ => {}
                }
                self.scratch.clear();
                let mut scratch = std::mem::take(&mut self.scratch);
                write_rows(batch, &self.indices, FORMAT, &mut scratch)?;
                // One object per line (JSON escapes newlines inside strings).
                for line in scratch.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
                    self.comma(out);
                    out.extend_from_slice(line);
                }
                self.scratch = scratch;
            }
            Event::GroupFooter { level, variables, .. } => {
                let meta = self.meta.clone().ok_or(RenderError::NotStarted { format: FORMAT })?;
                self.has_item.pop();
                let innermost = *level + 1 == meta.groups.len();
                out.extend_from_slice(if innermost && !meta.detail { b"," } else { b"]," });
                self.variables(&meta, variables, out);
                if let Some(text) = meta.group_footer_text(*level, variables, &self.keys) {
                    out.extend_from_slice(b",\"footer\":");
                    string(&text, out);
                }
                out.push(b'}');
                self.keys.truncate(*level);
            }
            Event::End { variables, rows, charts } => {
                let meta = self.meta.clone().ok_or(RenderError::NotStarted { format: FORMAT })?;
                out.extend_from_slice(if meta.groups.is_empty() && !meta.detail { b"," } else { b"]," });
                self.variables(&meta, variables, out);
                if let Some(s) = &meta.summary {
                    out.extend_from_slice(b",\"summary\":");
                    string(&s.render(|n| meta.lookup(n, Some(variables), &[])), out);
                }
                if *rows == 0 {
                    if let Some(nd) = &meta.no_data {
                        out.extend_from_slice(b",\"no_data\":");
                        string(&nd.render(|n| meta.lookup(n, None, &[])), out);
                    }
                }
                if !charts.is_empty() {
                    out.extend_from_slice(b",\"charts\":[");
                    for (i, c) in charts.iter().enumerate() {
                        if i > 0 {
                            out.push(b',');
                        }
                        chart_json(c, out);
                    }
                    out.push(b']');
                }
                out.extend_from_slice(format!(",\"row_count\":{rows}}}\n").as_bytes());
            }
        }
        Ok(())
    }
}

/// A chart for D3 or Vega: its axes, and each series' points as `{"x":…,"y":…}`.
///
/// ```text
/// {"id":…,"title":…,"kind":"line","stacked":false,
///  "x":{"field":"date","scale":"time","bucket":"day","title":"date"},   (or "bins" with
///       "width", "categories" with "top" and "other", or "raw")
///  "y":{"aggregate":"sum","field":"total","title":"sum(total)"},"series_field":null,
///  "series":[{"name":null,"points":[{"x":"2024-01-01","y":1234.5},…]}],
///  "rows":N,"skipped":N,"downsampled":null or {"method":"m4","points_in":N,"points_out":N}}
/// ```
fn chart_json(c: &ream_core::ChartData, out: &mut Vec<u8>) {
    use ream_core::chart::XScale;
    let mut v = serde_json::Map::new();
    let x = match &c.x {
        XScale::Time(b) => serde_json::json!({"field": c.x_field, "scale": "time", "bucket": b.name()}),
        XScale::Bins { width } => serde_json::json!({"field": c.x_field, "scale": "bins", "width": width}),
        XScale::Categories { top, other } => {
            serde_json::json!({"field": c.x_field, "scale": "categories", "top": top, "other": other})
        }
        XScale::Raw => serde_json::json!({"field": c.x_field, "scale": "raw"}),
    };
    v.insert("id".into(), c.id.clone().into());
    v.insert("title".into(), c.title.clone().into());
    v.insert("kind".into(), c.kind.name().into());
    v.insert("stacked".into(), c.stacked.into());
    let mut x = x;
    x["title"] = c.x_axis_title().into();
    v.insert("x".into(), x);
    v.insert(
        "y".into(),
        serde_json::json!({"aggregate": c.y_aggregate.name(), "field": c.y_field, "title": c.y_axis_title()}),
    );
    v.insert("series_field".into(), c.series_field.clone().into());
    let head = serde_json::Value::Object(v).to_string();
    // Points are written by hand so decimals keep their exact digits.
    out.extend_from_slice(&head.as_bytes()[..head.len() - 1]);
    out.extend_from_slice(b",\"series\":[");
    for (i, s) in c.series.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"name\":");
        match &s.name {
            Some(n) => string(n, out),
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b",\"points\":[");
        for (j, p) in s.points.iter().enumerate() {
            if j > 0 {
                out.push(b',');
            }
            out.extend_from_slice(b"{\"x\":");
            p.x.write_json(out);
            out.extend_from_slice(b",\"y\":");
            p.y.write_json(out);
            out.push(b'}');
        }
        out.extend_from_slice(b"]}");
    }
    out.extend_from_slice(format!("],\"rows\":{},\"skipped\":{},\"downsampled\":", c.rows, c.skipped).as_bytes());
    match &c.downsampled {
        Some(d) => out.extend_from_slice(
            serde_json::json!({"method": d.method, "points_in": d.points_in, "points_out": d.points_out})
                .to_string()
                .as_bytes(),
        ),
        None => out.extend_from_slice(b"null"),
    }
    out.push(b'}');
}
