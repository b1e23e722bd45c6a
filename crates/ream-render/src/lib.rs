//! ream-render: renderers turn events into bytes. Each appends to a buffer that the
//! runner flushes at a size threshold, so memory stays bounded and the first bytes leave
//! early. Machine formats write raw typed values (formats in the spec are for banded
//! outputs); their keys and header are the field names.
//!
//! - `csv`: RFC 4180, a header row, NULL as an empty field (arrow's CSV writer);
//! - `ndjson`: one object per row, types kept (arrow's JSON writer);
//! - `json`: one document with the report meta, parameters, nested groups (key, header,
//!   rows, variables, footer) and the summary variables;
//! - `html`: one HTML5 document, banded: title, column headers, group header and footer
//!   rows, detail rows with the columns' formats, summary; print CSS repeats headers;
//!   the spec's charts as inline SVG after the summary (they need every row);
//! - `xlsx` (feature `xlsx`): a workbook streamed as rows arrive: typed cells, a frozen
//!   header, bands with subtotals under their columns, optional outline levels, a new
//!   sheet every 1,048,576 rows;
//! - `pdf` (feature `pdf`): paginated and banded, written page by page: the page setup
//!   of the spec, column headers on every page, groups kept with their first row,
//!   `{page}`/`{pages}`, the charts as vector graphics, an embedded font subset;
//! - `parquet` and `arrow` (feature `columnar`): the detail columns, typed, as Parquet
//!   row groups that leave as they fill, or as an Arrow IPC stream;
//! - charts also appear in `json`, as series of `{"x","y"}` points.
//!
//! ```
//! use std::sync::Arc;
//! use arrow_array::{Int64Array, RecordBatch};
//! use arrow_schema::{DataType, Field, Schema};
//! use ream_core::{Event, ReportMeta, OutputColumn};
//! use ream_core::template::Format as Fmt;
//! use ream_render::Format;
//!
//! let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, true)]));
//! let meta = ReportMeta { report: "r".into(), title: None, parameters: vec![], schema: schema.clone(),
//!     columns: vec![OutputColumn { field: "n".into(), label: "N".into(), index: 0, format: Fmt::Raw, align: None, width: Default::default(), wrap: false, totals: vec![] }],
//!     detail: true, locale: Default::default(), groups: vec![], variables: vec![], variable_specs: vec![], summary: None, no_data: None, page_header: None,
//!     page_footer: None, page: Default::default(), strategy: "cursor".into() };
//! let batch = RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(vec![Some(1), None]))]).unwrap();
//! let mut r = Format::Csv.renderer();
//! let mut out = Vec::new();
//! for e in [Event::Begin(Arc::new(meta)), Event::Rows(batch), Event::End { variables: Arc::from(vec![]), rows: 2, charts: Arc::from(vec![]) }] {
//!     r.push(&e, &mut out).unwrap();
//! }
//! // A record whose only field is empty is quoted, so readers do not skip it as a blank line.
//! assert_eq!(String::from_utf8(out).unwrap(), "n\n1\n\"\"\n");
//! ```

#[cfg(feature = "columnar")]
mod columnar;
mod csv;
mod csv_rows;
pub mod html;
mod json;
pub mod markup;
mod parquet_config;
#[cfg(feature = "pdf")]
mod pdf;
#[cfg(any(feature = "xlsx", feature = "columnar"))]
mod pipe;
mod svg;
#[cfg(feature = "xlsx")]
mod xlsx;

use ream_core::Event;

#[cfg(feature = "columnar")]
pub use crate::columnar::{ArrowRenderer, ParquetRenderer, SLICE_ROWS};
pub use crate::csv::CsvRenderer;
pub use crate::html::HtmlRenderer;
pub use crate::json::{JsonRenderer, NdjsonRenderer};
pub use crate::parquet_config::{ParquetCompression, ParquetConfig};
#[cfg(feature = "pdf")]
pub use crate::pdf::PdfRenderer;
pub use crate::svg::chart_svg;
#[cfg(feature = "xlsx")]
pub use crate::xlsx::{XlsxRenderer, SHEET_ROWS};

/// A renderer: events in, bytes appended to `out`.
pub trait Renderer: Send {
    fn push(&mut self, event: &Event, out: &mut Vec<u8>) -> Result<(), RenderError>;

    /// Called once after `End`. A renderer with a trailer to write (xlsx: the workbook
    /// parts that list the sheets, and the zip's central directory) writes it to `sink`,
    /// which hands it on in chunks as it fills.
    fn finish(&mut self, _sink: &mut (dyn std::io::Write + Send)) -> Result<(), RenderError> {
        Ok(())
    }

    /// A large piece of output the last `push` left for the runner to send as it is
    /// (a Parquet row group), after what `out` holds; `None` once there is none. Memory
    /// stays in pieces of at most 64 KiB instead of one buffer the size of a row group.
    fn take_piece(&mut self) -> Option<Vec<u8>> {
        None
    }

    /// Move to `out` what the renderer holds back where it can (xlsx flushes its
    /// compressor), and return the bytes it still holds for its output, estimated (a
    /// Parquet row group being encoded). A split by size calls it to measure a part; it is
    /// called at points that depend on the rows only, so the bytes stay the same whatever
    /// the batches.
    fn settle(&mut self, _out: &mut Vec<u8>) -> Result<u64, RenderError> {
        Ok(0)
    }
}

/// Options of the renderers that have any.
#[derive(Debug, Clone, Default)]
pub struct RenderOptions {
    /// xlsx: a plain table (the header row and the rows), no title, bands or summary.
    pub xlsx_flat: bool,
    /// xlsx: row outline levels per group, so groups collapse to their header and footer.
    pub xlsx_outline: bool,
    /// parquet: row groups and compression.
    pub parquet: ParquetConfig,
    /// csv: text that a spreadsheet would run as a formula (starting with `=`, `+`, `-`,
    /// `@`, a tab or a carriage return) is written with a leading `'`.
    pub csv_neutralize_formulas: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("{format}: {message}")]
    Encode { format: &'static str, message: String },
    #[error("{format}: rows before Begin")]
    NotStarted { format: &'static str },
}

/// The output formats, a closed set. Each builds its renderer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Csv,
    Ndjson,
    Json,
    Html,
    /// Needs the `xlsx` feature (on in the `ream` binary).
    Xlsx,
    /// Needs the `pdf` feature (on in the `ream` binary).
    Pdf,
    /// Needs the `columnar` feature (on in the `ream` binary).
    Parquet,
    /// The Arrow IPC stream. Needs the `columnar` feature.
    Arrow,
}

impl Format {
    pub const ALL: [Format; 8] = [
        Format::Csv,
        Format::Ndjson,
        Format::Json,
        Format::Html,
        Format::Xlsx,
        Format::Pdf,
        Format::Parquet,
        Format::Arrow,
    ];

    /// Whether the format shows charts (HTML and PDF draw them, JSON writes their
    /// series): the others skip computing them.
    pub fn shows_charts(self) -> bool {
        matches!(self, Format::Json | Format::Html | Format::Pdf)
    }

    pub fn name(self) -> &'static str {
        match self {
            Format::Csv => "csv",
            Format::Ndjson => "ndjson",
            Format::Json => "json",
            Format::Html => "html",
            Format::Xlsx => "xlsx",
            Format::Pdf => "pdf",
            Format::Parquet => "parquet",
            Format::Arrow => "arrow",
        }
    }

    pub fn from_name(s: &str) -> Option<Format> {
        Format::ALL.into_iter().find(|f| f.name() == s.to_ascii_lowercase())
    }

    /// The format a file name implies (`out.csv`, `out.ndjson`/`.jsonl`, `out.json`).
    pub fn from_path(p: &std::path::Path) -> Option<Format> {
        match p.extension()?.to_str()?.to_ascii_lowercase().as_str() {
            "jsonl" => Some(Format::Ndjson),
            "htm" => Some(Format::Html),
            "arrows" => Some(Format::Arrow),
            ext => Format::from_name(ext),
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Csv => "text/csv; charset=utf-8",
            Format::Ndjson => "application/x-ndjson",
            Format::Json => "application/json",
            Format::Html => "text/html; charset=utf-8",
            Format::Xlsx => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            Format::Pdf => "application/pdf",
            Format::Parquet => "application/vnd.apache.parquet",
            Format::Arrow => "application/vnd.apache.arrow.stream",
        }
    }

    pub fn renderer(self) -> Box<dyn Renderer> {
        self.renderer_with(&RenderOptions::default())
    }

    pub fn renderer_with(self, opts: &RenderOptions) -> Box<dyn Renderer> {
        let _ = opts;
        match self {
            Format::Csv => Box::new(CsvRenderer::new(opts.csv_neutralize_formulas)),
            Format::Ndjson => Box::new(NdjsonRenderer::default()),
            Format::Json => Box::new(JsonRenderer::default()),
            Format::Html => Box::new(HtmlRenderer::default()),
            #[cfg(feature = "xlsx")]
            Format::Xlsx => Box::new(XlsxRenderer::new(opts.clone())),
            #[cfg(not(feature = "xlsx"))]
            Format::Xlsx => Box::new(Unavailable("xlsx")),
            #[cfg(feature = "pdf")]
            Format::Pdf => Box::new(PdfRenderer::default()),
            #[cfg(not(feature = "pdf"))]
            Format::Pdf => Box::new(Unavailable("pdf")),
            #[cfg(feature = "columnar")]
            Format::Parquet => Box::new(ParquetRenderer::new(opts.parquet)),
            #[cfg(feature = "columnar")]
            Format::Arrow => Box::new(ArrowRenderer::new()),
            #[cfg(not(feature = "columnar"))]
            Format::Parquet => Box::new(Unavailable("parquet")),
            #[cfg(not(feature = "columnar"))]
            Format::Arrow => Box::new(Unavailable("arrow")),
        }
    }

    /// Whether the output is one flat table, with no bands to show a group's value in:
    /// csv, ndjson, parquet, arrow, and xlsx with `--xlsx-flat`. A grouped report's flat
    /// output carries its group fields as columns.
    pub fn is_flat(self, opts: &RenderOptions) -> bool {
        match self {
            Format::Csv | Format::Ndjson | Format::Parquet | Format::Arrow => true,
            Format::Xlsx => opts.xlsx_flat,
            Format::Json | Format::Html | Format::Pdf => false,
        }
    }

    /// Whether the format writes detail rows only (a table, no bands): a summary report
    /// (`detail: false`) cannot be written in it.
    pub fn detail_only(self) -> bool {
        matches!(self, Format::Parquet | Format::Arrow)
    }

    /// Whether the format compresses its own bytes (a zip, deflated PDF streams, Parquet
    /// pages), so compressing it again gains nothing.
    pub fn is_compressed(self) -> bool {
        matches!(self, Format::Xlsx | Format::Pdf | Format::Parquet)
    }

    /// Zip (xlsx), PDF, Parquet or Arrow bytes, not text: never written to a terminal.
    pub fn is_binary(self) -> bool {
        matches!(self, Format::Xlsx | Format::Pdf | Format::Parquet | Format::Arrow)
    }

    /// Whether this build can write the format.
    pub fn available(self) -> bool {
        match self {
            Format::Xlsx => cfg!(feature = "xlsx"),
            Format::Pdf => cfg!(feature = "pdf"),
            Format::Parquet | Format::Arrow => cfg!(feature = "columnar"),
            _ => true,
        }
    }
}

/// A format left out of this build: fails before the first byte.
#[cfg(not(all(feature = "xlsx", feature = "pdf", feature = "columnar")))]
struct Unavailable(&'static str);

#[cfg(not(all(feature = "xlsx", feature = "pdf", feature = "columnar")))]
impl Renderer for Unavailable {
    fn push(&mut self, _event: &Event, _out: &mut Vec<u8>) -> Result<(), RenderError> {
        Err(RenderError::Encode {
            format: self.0,
            message: format!("this build has no {} (cargo feature `{}`)", self.0, self.0),
        })
    }
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Group keys and variables of a summary record (`detail: false`): one per innermost
/// group footer, or one at the end when there are no groups. Returns whether `event`
/// completes a record, with its values.
pub(crate) fn summary_record(
    meta: &ream_core::ReportMeta,
    keys: &mut Vec<ream_core::Value>,
    event: &ream_core::Event,
) -> Option<Vec<ream_core::Value>> {
    use ream_core::Event;
    match event {
        Event::GroupHeader { level, key, .. } => {
            keys.truncate(*level);
            keys.push(key.clone());
            None
        }
        Event::GroupFooter { level, variables, .. } if *level + 1 == meta.groups.len() => {
            Some(keys.iter().cloned().chain(variables.iter().cloned()).collect())
        }
        Event::End { variables, .. } if meta.groups.is_empty() => Some(variables.to_vec()),
        _ => None,
    }
}

/// The detail columns of a batch, in output order.
pub(crate) fn project(
    batch: &arrow_array::RecordBatch,
    indices: &[usize],
    format: &'static str,
) -> Result<arrow_array::RecordBatch, RenderError> {
    batch.project(indices).map_err(|e| RenderError::Encode { format, message: e.to_string() })
}
