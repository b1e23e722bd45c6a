//! Split outputs: one run written as several files, each complete on its own (its header,
//! its workbook, its Parquet footer), plus a manifest that lists them.
//!
//! - [`Split`] says where a part ends: after `rows` rows, near `bytes` bytes (with both,
//!   whichever comes first), and (with
//!   `by`) wherever a field's value changes, in a hive layout
//!   (`sales/region=EU/part-00001.csv`).
//!   The read is ordered by the `by` field first, so one file is open at a time.
//! - [`Parts`] is the process thread's writer: it cuts the rows at those points and
//!   renders each part with a fresh renderer. Cut points depend on row counts and on the
//!   bytes rendered, never on the batches, so batches of 1, 7 and 1000 rows give the same
//!   files.
//! - The consumer ([`crate::Run::write_parts`]) writes each part through a [`PartStore`]
//!   (a temporary name, renamed when the part is complete), hashes it, and writes the
//!   [`Manifest`] last: its presence says the set is complete. A run that fails removes
//!   the parts it wrote.
//!
//! With `bytes`, a part ends before the row that would probably take it past the limit
//! (the part's bytes per row so far predict the next row's); so a text part passes
//! `bytes` by about one row at most. Parquet and xlsx parts are measured every 1024 rows
//! (the xlsx compressor flushed, the Parquet row group in progress estimated before
//! compression) and end where the next 1024 rows would not fit, so they stay under the
//! limit by up to that much, plus their closing bytes (the footer, the workbook's parts
//! list). A compressed part counts its bytes before compression: its file is smaller
//! than the limit.

use std::collections::HashMap;
use std::sync::Arc;

use arrow_array::RecordBatch;
use ream_core::{Event, ReportMeta, Value};
use ream_render::{Format, RenderOptions, Renderer};

use crate::outlet::{finish_renderer, Outlet};
use crate::EngineError;

pub use ream_request::{Split, SPLIT_FORMATS};

/// The first rows of a part before its size is measured (`bytes`): its bytes per row are
/// known after them.
const FIRST_CHECK: u64 = 16;
/// The most rows between two measurements of a part's size: the Parquet writer's slice
/// ([`ream_render::SLICE_ROWS`]), so a Parquet part is measured with no rows held back.
const MAX_STEP: u64 = 1024;

pub use ream_core::units::parse_bytes;

/// Which part a file is: its partition (the `by` field and its value's text; `None` for
/// NULL) and its number, from 1, within the partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartId {
    pub partition: Option<(String, Option<String>)>,
    pub number: u32,
    /// A burst's own file name (in place of the numbered name), already one safe segment.
    pub name: Option<String>,
    /// A burst's recipient, as its `burst.to` gave it.
    pub to: Option<String>,
}

/// How parts and the manifest are named, relative to where they are stored (the
/// manifest's own directory).
#[derive(Debug, Clone)]
pub struct PartNames {
    /// `sales` gives `sales-00001.csv`, or in a hive layout the directory
    /// `sales/region=EU/part-00001.csv`.
    pub stem: String,
    /// The extension, compression included (`csv.gz`).
    pub ext: String,
    /// The manifest's name.
    pub manifest: String,
}

/// The directory name hive readers (pyarrow, DuckDB, Spark) give NULL.
pub const HIVE_NULL: &str = "__HIVE_DEFAULT_PARTITION__";

impl PartNames {
    pub fn part(&self, id: &PartId) -> String {
        match (&id.name, self.stem.is_empty()) {
            (Some(name), true) => return name.clone(),
            (Some(name), false) => return format!("{}/{name}", self.stem),
            (None, _) => {}
        }
        match &id.partition {
            None => format!("{}-{:05}.{}", self.stem, id.number, self.ext),
            Some((field, value)) => {
                let value = value.as_deref().map_or_else(|| HIVE_NULL.to_string(), hive_escape);
                format!("{}/{}={value}/part-{:05}.{}", self.stem, hive_escape(field), id.number, self.ext)
            }
        }
    }
}

/// A path segment as hive writes it: `/`, `=`, `%`, control characters and the others
/// Hive escapes become `%XX`, so a value can never leave its directory.
pub fn hive_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        let special = c.is_control() || "\"#%'*/:=?\\{}[]^".contains(c);
        if special && (c as u32) < 0x80 {
            out.push_str(&format!("%{:02X}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

/// The part being written in the process thread.
struct Open {
    renderer: Box<dyn Renderer>,
    id: PartId,
    rows: u64,
    /// The row count at which the part's size is next looked at.
    check_at: u64,
}

/// The process thread's writer of a split run.
pub(crate) struct Parts {
    format: Format,
    render: RenderOptions,
    split: Split,
    /// Each part's meta: the run's, without the `by` field's column (the path holds it).
    meta: Option<Arc<ReportMeta>>,
    by_index: Option<usize>,
    open: Option<Open>,
    /// The last part started.
    last: Option<PartId>,
    /// The partitions already closed, with their last part's number. Rows of one of them
    /// can come again where the database orders the field otherwise than its values
    /// compare here (NULL and '' share hive's NULL directory, a case-insensitive
    /// collation): the partition then goes on with its next number.
    closed: HashMap<Option<String>, u32>,
}

fn internal(what: &str) -> EngineError {
    EngineError::Internal(format!("split output: {what}"))
}

/// A partition's value as its directory shows it; `None` for NULL and, as in Hive, for
/// the empty string (both are `__HIVE_DEFAULT_PARTITION__`).
fn value_text(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::Str(s) if s.is_empty() => None,
        v => Some(v.to_string()),
    }
}

impl Parts {
    /// xlsx parts are plain tables (as `--xlsx-flat`): bands cannot span files.
    pub fn new(format: Format, render: RenderOptions, split: Split) -> Parts {
        let render = RenderOptions { xlsx_flat: true, xlsx_outline: false, ..render };
        Parts { format, render, split, meta: None, by_index: None, open: None, last: None, closed: HashMap::new() }
    }

    /// Take one event from the stages (bands are left out: a split writes detail rows).
    pub fn push(&mut self, event: &Event, buf: &mut Vec<u8>, outlet: &Outlet<'_>) -> Result<(), EngineError> {
        match event {
            Event::Begin(meta) => self.begin(meta),
            Event::Rows(batch) => self.rows(batch, buf, outlet),
            Event::End { .. } => self.end(buf, outlet),
            Event::GroupHeader { .. } | Event::GroupFooter { .. } => Ok(()),
        }
    }

    fn begin(&mut self, meta: &Arc<ReportMeta>) -> Result<(), EngineError> {
        // Each part is a table of detail rows: no bands, no summary.
        let mut part_meta = (**meta).clone();
        part_meta.groups.clear();
        part_meta.variables.clear();
        part_meta.variable_specs.clear();
        part_meta.summary = None;
        let Some(by) = self.split.by().map(str::to_string) else {
            self.meta = Some(Arc::new(part_meta));
            return Ok(());
        };
        let index = meta
            .schema
            .index_of(&by)
            .map_err(|_| EngineError::Usage(format!("split by `{by}`: the report has no field `{by}`")))?;
        part_meta.columns.retain(|c| c.index != index);
        if part_meta.columns.is_empty() {
            return Err(EngineError::Usage(format!(
                "split by `{by}`: `{by}` is the only column, and a hive layout keeps it in the paths"
            )));
        }
        self.by_index = Some(index);
        self.meta = Some(Arc::new(part_meta));
        Ok(())
    }

    fn rows(&mut self, batch: &RecordBatch, buf: &mut Vec<u8>, outlet: &Outlet<'_>) -> Result<(), EngineError> {
        let mut start = 0;
        while start < batch.num_rows() {
            let (key, same) = self.key_run(batch, start);
            let moved_on = |o: &Open| o.id.partition.as_ref().is_some_and(|p| p.1 != key);
            if self.open.as_ref().is_some_and(moved_on) {
                self.close(buf, outlet)?;
            }
            if self.open.is_none() {
                self.start(key, buf, outlet)?;
            }
            let Some(open) = self.open.as_mut() else { return Err(internal("no open part")) };
            let take = same.min((open.check_at - open.rows).min(usize::MAX as u64) as usize);
            let piece = batch.slice(start, take);
            open.renderer.push(&Event::Rows(piece), buf).map_err(|e| render_err(&self.meta, e))?;
            outlet.send_pieces(open.renderer.as_mut(), buf)?;
            open.rows += take as u64;
            start += take;
            if open.rows == open.check_at {
                self.check(buf, outlet)?;
            }
        }
        Ok(())
    }

    /// The partition value at `row` and how many rows from there share it (all of the
    /// batch's rest without `by`).
    fn key_run(&self, batch: &RecordBatch, row: usize) -> (Option<String>, usize) {
        let Some(i) = self.by_index else { return (None, batch.num_rows() - row) };
        let column = batch.column(i).as_ref();
        let key = value_text(&Value::from_array(column, row));
        // (NULL and '' compare unequal here though they share a partition: the run ends,
        // the part goes on.)
        let same = run_length(column, row, |i| value_text(&Value::from_array(column, i)) == key);
        (key, same)
    }

    /// Open the next part: the next number in the same partition, or number 1 of a new one.
    fn start(&mut self, key: Option<String>, buf: &mut Vec<u8>, outlet: &Outlet<'_>) -> Result<(), EngineError> {
        let partition = self.split.by().map(str::to_string).map(|by| (by, key.clone()));
        let number = match &self.last {
            Some(last) if last.partition == partition => last.number + 1,
            Some(last) => {
                self.closed.insert(last.partition.as_ref().and_then(|p| p.1.clone()), last.number);
                self.closed.get(&key).map_or(1, |n| n + 1)
            }
            None => 1,
        };
        let id = PartId { partition, number, name: None, to: None };
        let meta = self.meta.clone().ok_or_else(|| internal("rows before Begin"))?;
        outlet.start_part(id.clone())?;
        let mut renderer = self.format.renderer_with(&self.render);
        renderer.push(&Event::Begin(meta), buf).map_err(|e| render_err(&self.meta, e))?;
        outlet.send_pieces(renderer.as_mut(), buf)?;
        let check_at = match (self.split.rows(), self.split.bytes()) {
            (rows, Some(_)) => rows.unwrap_or(u64::MAX).min(if coarse(self.format) { MAX_STEP } else { FIRST_CHECK }),
            (Some(n), None) => n,
            (None, None) => u64::MAX,
        };
        self.last = Some(id.clone());
        self.open = Some(Open { renderer, id, rows: 0, check_at });
        Ok(())
    }

    /// At a check point: close the part, or set the next check point.
    fn check(&mut self, buf: &mut Vec<u8>, outlet: &Outlet<'_>) -> Result<(), EngineError> {
        let Some(open) = self.open.as_mut() else { return Ok(()) };
        let max_rows = self.split.rows().unwrap_or(u64::MAX);
        let limit = match self.split.bytes() {
            Some(b) if open.rows < max_rows => b,
            _ => return self.close(buf, outlet),
        };
        let held = open.renderer.settle(buf).map_err(|e| render_err(&self.meta, e))?;
        let bytes = outlet.part_plain_bytes() + buf.len() as u64 + held;
        // The part's bytes per row so far predict the next rows'.
        let per_row = (bytes / open.rows.max(1)).max(1);
        let rows_left = limit.saturating_sub(bytes) / per_row;
        if coarse(self.format) {
            // Measured every MAX_STEP rows: end the part if the next step would not fit.
            if rows_left < MAX_STEP {
                return self.close(buf, outlet);
            }
            open.check_at = (open.rows + MAX_STEP).min(max_rows);
            return Ok(());
        }
        if rows_left == 0 {
            return self.close(buf, outlet);
        }
        // Each step takes half the rows that seem to fit, so the steps shrink as the part
        // nears its limit and rows longer than the average cannot take it far past.
        open.check_at = (open.rows + (rows_left / 2).clamp(1, MAX_STEP)).min(max_rows);
        Ok(())
    }

    /// End the open part: its renderer's end and trailer, then the part's end.
    fn close(&mut self, buf: &mut Vec<u8>, outlet: &Outlet<'_>) -> Result<(), EngineError> {
        let Some(mut open) = self.open.take() else { return Ok(()) };
        let end = Event::End { variables: Arc::from(Vec::new()), rows: open.rows, charts: Arc::from(Vec::new()) };
        open.renderer.push(&end, buf).map_err(|e| render_err(&self.meta, e))?;
        outlet.send_pieces(open.renderer.as_mut(), buf)?;
        let report = self.meta.as_ref().map(|m| m.report.clone()).unwrap_or_default();
        finish_renderer(open.renderer.as_mut(), buf, outlet, &report)?;
        outlet.end_part(open.rows)
    }

    /// The run's end. Without `by`, a run with no rows still writes one part (its header,
    /// an empty table), so a reader finds the columns; with `by` there is no partition.
    fn end(&mut self, buf: &mut Vec<u8>, outlet: &Outlet<'_>) -> Result<(), EngineError> {
        if self.open.is_none() && self.last.is_none() && self.split.by().is_none() {
            self.start(None, buf, outlet)?;
        }
        self.close(buf, outlet)
    }
}

/// How many rows of `column` from `row` on hold the value at `row`: by Arrow's comparator,
/// not a value per row, or by `same(i)` for a type it cannot compare.
pub(crate) fn run_length(column: &dyn arrow_array::Array, row: usize, same: impl Fn(usize) -> bool) -> usize {
    let mut end = row + 1;
    match arrow_ord::ord::make_comparator(column, column, Default::default()) {
        Ok(compare) => {
            while end < column.len() && compare(row, end).is_eq() {
                end += 1;
            }
        }
        Err(_) => {
            while end < column.len() && same(end) {
                end += 1;
            }
        }
    }
    end - row
}

/// Parquet and xlsx encode in steps (pages, compressor blocks): their size is measured
/// every MAX_STEP rows, the Parquet writer's own step.
fn coarse(format: Format) -> bool {
    matches!(format, Format::Parquet | Format::Xlsx)
}

fn render_err(meta: &Option<Arc<ReportMeta>>, e: ream_render::RenderError) -> EngineError {
    EngineError::Render { report: meta.as_ref().map(|m| m.report.clone()).unwrap_or_default(), message: e.to_string() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_counts_take_binary_units() {
        assert_eq!(parse_bytes("1000"), Ok(1000));
        assert_eq!(parse_bytes("64k"), Ok(65536));
        assert_eq!(parse_bytes("10MiB"), Ok(10 << 20));
        assert_eq!(parse_bytes(" 2 G "), Ok(2 << 30));
        assert!(parse_bytes("ten").unwrap_err().contains("expected a byte count"));
        assert!(parse_bytes("5T").unwrap_err().contains("unknown unit `t`"));
        assert!(parse_bytes("99999999999999999G").unwrap_err().contains("too large"));
    }

    #[test]
    fn hive_names_escape_what_could_leave_the_directory_and_name_null() {
        let names = PartNames { stem: "sales".into(), ext: "csv.gz".into(), manifest: "m".into() };
        assert_eq!(names.part(&PartId { partition: None, number: 12, name: None, to: None }), "sales-00012.csv.gz");
        let id = |v: Option<&str>| PartId {
            partition: Some(("region".into(), v.map(String::from))),
            number: 1,
            name: None,
            to: None,
        };
        assert_eq!(names.part(&id(Some("EU"))), "sales/region=EU/part-00001.csv.gz");
        assert_eq!(names.part(&id(Some("../a/b=c%"))), "sales/region=..%2Fa%2Fb%3Dc%25/part-00001.csv.gz");
        assert_eq!(names.part(&id(None)), "sales/region=__HIVE_DEFAULT_PARTITION__/part-00001.csv.gz");
        assert_eq!(names.part(&id(Some("Zürich\n"))), "sales/region=Zürich%0A/part-00001.csv.gz");
    }
}
