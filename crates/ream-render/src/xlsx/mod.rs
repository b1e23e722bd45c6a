//! XLSX output, streamed: sheet XML is written as rows arrive into a zip that deflates it
//! on the way out, so memory stays flat, no temporary files are needed, and the first
//! bytes leave with the first batch.

mod cells;
mod package;

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::*;
use arrow_array::{Array, RecordBatch};
use arrow_schema::{DataType, TimeUnit};
use ream_core::spec::Aggregate;
use ream_core::template::Format as ValueFormat;
use ream_core::{Event, ReportMeta, Value};

use self::cells::{bool_cell, column_letters, number_cell, text_cell};
use self::package::{Font, Package, SheetEntry, Styles, MAIN_NS, XML_DECL};
use crate::{RenderError, RenderOptions, Renderer};

const FORMAT: &str = "xlsx";
/// Excel's rows per sheet.
pub const SHEET_ROWS: u32 = 1_048_576;
/// Excel's longest text in a cell.
const MAX_TEXT: usize = 32_767;
/// Excel's deepest row outline.
const MAX_OUTLINE: usize = 7;
/// Serial day of 1970-01-01 in Excel's 1900 date system (days since 1899-12-30).
const EXCEL_UNIX_DAYS: i64 = 25_569;
const US_PER_DAY: f64 = 86_400_000_000.0;
/// Deflate at its fastest. Measured on 1M lineitem rows with the earlier writer: level 1
/// wrote 144 MB, level 3 106 MB in 1.4× the time, the default 6 92 MB in 1.7×.
const DEFLATE_LEVEL: i64 = 1;
/// An entry gets ZIP64 sizes when it may pass this many bytes (ZIP's limit is 4 GiB; the
/// estimate is from the first rows, so keep a margin).
const LARGE_ENTRY: u64 = 2 << 30;

/// `value` escaped for an XML attribute (and element text).
pub(super) fn xml_attr(value: &str) -> String {
    let mut out = Vec::with_capacity(value.len());
    cells::escape_text(&mut out, value);
    String::from_utf8(out).expect("escaping keeps UTF-8").replace('"', "&quot;")
}

/// How one column of the table is written.
struct Column {
    /// Index of the field in the batches (detail columns).
    index: usize,
    /// `<c r="B`: the cell's opening up to its row number.
    pre: Vec<u8>,
    /// ` s="N"`: the column's number format, or empty.
    style: Vec<u8>,
    /// The same number format in bold, for subtotals in band rows.
    bold_style: Vec<u8>,
}

fn style_attr(xf: u32) -> Vec<u8> {
    if xf == 0 {
        Vec::new()
    } else {
        format!(" s=\"{xf}\"").into_bytes()
    }
}

/// An XLSX workbook written as a stream (SpreadsheetML sheets inside a streamed zip).
///
/// Cells keep their types: numbers (integers and decimals exactly as their digits) with
/// the column's number format, dates and timestamps as Excel dates, booleans, text always
/// as text (a value like `=HYPERLINK(…)` is never a formula). NULL is an empty cell. Past
/// Excel's 1,048,576 rows the report continues on a new sheet with the header repeated.
/// Group footers and the summary put their variables under the columns they aggregate,
/// as numbers; `xlsx_outline` makes groups collapsible.
pub struct XlsxRenderer {
    opts: RenderOptions,
    sheet_rows: u32,
    pkg: Package,
    styles: Styles,
    created: chrono::NaiveDateTime,
    meta: Option<Arc<ReportMeta>>,
    columns: Vec<Column>,
    /// A summary report: group keys and variables as one table.
    summary: bool,
    keys: Vec<Value>,
    sheets: Vec<SheetEntry>,
    /// The next row (0-based) on the current sheet.
    row: u32,
    /// The current sheet's header row (for the autofilter and the frozen pane).
    header_row: u32,
    /// Sheet XML not yet handed to the zip.
    xml: Vec<u8>,
    /// Rows in `xml` (for the entry size estimate).
    rows_in_xml: u32,
    /// Whether the current sheet's zip entry has started (it waits for the widths).
    started: bool,
    widths: Option<Vec<f64>>,
    /// Widths measured so far (characters) and the rows they cover, until
    /// `WIDTH_SAMPLE_ROWS` rows have been seen: then `widths` is set. The rows wait in
    /// `xml` meanwhile, so the widths do not depend on how the rows came in batches.
    sampled: Option<(Vec<usize>, usize)>,
    /// Whether sheet entries get ZIP64 sizes; decided from the first rows.
    large: Option<bool>,
    /// Detail rows written so far (for error messages).
    done: u64,
    /// Row outline levels in use (0: none).
    outline: usize,
    bold: Vec<u8>,
    title: Vec<u8>,
    date_style: Vec<u8>,
    timestamp_style: Vec<u8>,
    /// Per group level, then for the summary: (column, variable) pairs whose value goes
    /// under that column in the footer row.
    subtotals: Vec<Vec<(usize, usize)>>,
}

impl XlsxRenderer {
    pub fn new(opts: RenderOptions) -> XlsxRenderer {
        // A test hook: a small sheet limit shows the rollover without a million rows.
        let sheet_rows = std::env::var("REAM_TEST_XLSX_SHEET_ROWS")
            .ok()
            .and_then(|v| v.parse::<u32>().ok())
            .filter(|n| *n >= 4)
            .unwrap_or(SHEET_ROWS)
            .min(SHEET_ROWS);
        // SOURCE_DATE_EPOCH fixes the document's dates, for reproducible files.
        let created = std::env::var("SOURCE_DATE_EPOCH")
            .ok()
            .and_then(|s| s.trim().parse::<i64>().ok())
            .and_then(|s| chrono::DateTime::from_timestamp(s, 0))
            .unwrap_or_else(chrono::Utc::now)
            .naive_utc();
        let mut styles = Styles::new();
        let bold = style_attr(styles.xf(None, Font::Bold));
        let title = style_attr(styles.xf(None, Font::Title));
        let date_style = style_attr(styles.xf(Some("yyyy-mm-dd"), Font::Regular));
        let timestamp_style = style_attr(styles.xf(Some("yyyy-mm-dd hh:mm:ss"), Font::Regular));
        XlsxRenderer {
            opts,
            sheet_rows,
            pkg: Package::new(created, DEFLATE_LEVEL),
            styles,
            created,
            meta: None,
            columns: Vec::new(),
            summary: false,
            keys: Vec::new(),
            sheets: Vec::new(),
            row: 0,
            header_row: 0,
            xml: Vec::with_capacity(1 << 16),
            rows_in_xml: 0,
            started: false,
            widths: None,
            sampled: None,
            large: None,
            done: 0,
            outline: 0,
            bold,
            title,
            date_style,
            timestamp_style,
            subtotals: Vec::new(),
        }
    }

    fn banded(&self) -> bool {
        !self.opts.xlsx_flat
    }

    fn meta(&self) -> Result<Arc<ReportMeta>, RenderError> {
        self.meta.clone().ok_or(RenderError::NotStarted { format: FORMAT })
    }

    /// The labels of the table's header row.
    fn labels(&self) -> Vec<String> {
        let meta = self.meta.as_ref().expect("started");
        if self.summary {
            meta.summary_fields().into_iter().map(str::to_string).collect()
        } else {
            meta.columns.iter().map(|c| c.label.clone()).collect()
        }
    }

    fn begin(&mut self, meta: &Arc<ReportMeta>) -> Result<(), RenderError> {
        self.meta = Some(meta.clone());
        self.summary = !meta.detail;
        let ncols = if self.summary { meta.summary_fields().len() } else { meta.columns.len() };
        if ncols > 16_384 {
            return Err(RenderError::Encode {
                format: FORMAT,
                message: format!("{ncols} columns do not fit a sheet (Excel has 16,384)"),
            });
        }
        self.columns = (0..ncols)
            .map(|i| {
                let (index, code) = match (self.summary, meta.columns.get(i)) {
                    (false, Some(c)) => {
                        (c.index, number_format(&c.format, meta.schema.field(c.index).data_type(), &meta.locale))
                    }
                    _ => (0, None),
                };
                let style = style_attr(code.as_deref().map_or(0, |c| self.styles.xf(Some(c), Font::Regular)));
                let bold_style = style_attr(self.styles.xf(code.as_deref(), Font::Bold));
                Column { index, pre: format!("<c r=\"{}", column_letters(i)).into_bytes(), style, bold_style }
            })
            .collect();
        if self.banded() && !self.summary {
            if self.opts.xlsx_outline {
                self.outline = meta.groups.len().min(MAX_OUTLINE);
            }
            self.subtotals = (0..=meta.groups.len()).map(|level| subtotals_at(meta, level)).collect();
        }
        self.pkg.entry("[Content_Types].xml", package::content_types().as_bytes())?;
        self.pkg.entry("_rels/.rels", package::root_rels().as_bytes())?;
        if self.summary {
            // Records are short and arrive late: size the columns by their names.
            self.widths = Some(self.labels().iter().map(|l| (l.chars().count() + 2).clamp(12, 60) as f64).collect());
        }
        self.open_sheet()
    }

    /// Start a sheet: the title on the first, then the bold header row (frozen).
    fn open_sheet(&mut self) -> Result<(), RenderError> {
        let meta = self.meta()?;
        let n = self.sheets.len() as u32 + 1;
        self.sheets.push(SheetEntry { name: sheet_name(&meta.report, n), filter: None });
        self.row = 0;
        self.started = false;
        self.xml.clear();
        self.rows_in_xml = 0;
        if self.banded() && n == 1 {
            if let Some(t) = &meta.title {
                let style = self.title.clone();
                self.text_row(0, clip_text(t), &style)?;
                self.row = 2;
            }
        }
        self.header_row = self.row;
        let row = self.next_row()?;
        let digits = (row + 1).to_string();
        open_row(&mut self.xml, digits.as_bytes(), 0);
        for (c, label) in self.columns.iter().zip(self.labels()) {
            text_cell(&mut self.xml, &c.pre, digits.as_bytes(), &self.bold, clip_text(&label));
        }
        self.xml.extend_from_slice(b"</row>");
        self.start_entry_if_ready()
    }

    /// The sheet's part up to its rows: the frozen header, the outline, the widths.
    fn prologue(&self) -> Vec<u8> {
        let frozen = self.header_row + 1;
        let mut s = format!("{XML_DECL}<worksheet xmlns=\"{MAIN_NS}\" xmlns:r=\"http://schemas.openxmlformats.org/officeDocument/2006/relationships\">");
        s.push_str(&format!(
            "<sheetViews><sheetView{} workbookViewId=\"0\"><pane ySplit=\"{frozen}\" topLeftCell=\"A{first}\" activePane=\"bottomLeft\" state=\"frozen\"/>\
             <selection pane=\"bottomLeft\" activeCell=\"A{first}\" sqref=\"A{first}\"/></sheetView></sheetViews>",
            if self.sheets.len() == 1 { " tabSelected=\"1\"" } else { "" },
            first = frozen + 1
        ));
        if self.outline > 0 {
            s.push_str(&format!("<sheetFormatPr defaultRowHeight=\"15\" outlineLevelRow=\"{}\"/>", self.outline));
        } else {
            s.push_str("<sheetFormatPr defaultRowHeight=\"15\"/>");
        }
        if let Some(widths) = &self.widths {
            if !widths.is_empty() {
                s.push_str("<cols>");
                for (i, w) in widths.iter().enumerate() {
                    s.push_str(&format!("<col min=\"{n}\" max=\"{n}\" width=\"{w}\" customWidth=\"1\"/>", n = i + 1));
                }
                s.push_str("</cols>");
            }
        }
        s.push_str("<sheetData>");
        s.into_bytes()
    }

    /// Start the sheet's zip entry once its column widths are known (they come from the
    /// first batch and go before the rows).
    fn start_entry_if_ready(&mut self) -> Result<(), RenderError> {
        if self.started || self.widths.is_none() {
            return Ok(());
        }
        let large = match self.large {
            Some(large) => large,
            None => {
                let per_row = self.xml.len() as u64 / u64::from(self.rows_in_xml.max(1));
                let per_cell_floor = 64 * self.columns.len() as u64;
                let large = per_row.max(per_cell_floor) * u64::from(self.sheet_rows) > LARGE_ENTRY;
                // The estimate needs a data row; until then (only bands) decide per sheet.
                if self.done > 0 {
                    self.large = Some(large);
                }
                large
            }
        };
        let n = self.sheets.len();
        self.pkg.start(&format!("xl/worksheets/sheet{n}.xml"), large)?;
        self.started = true;
        let prologue = self.prologue();
        self.pkg.write(&prologue)?;
        Ok(())
    }

    /// Hand the pending sheet XML to the zip (once the entry has started).
    fn flush(&mut self) -> Result<(), RenderError> {
        if self.started && !self.xml.is_empty() {
            self.pkg.write(&self.xml)?;
            self.xml.clear();
            self.rows_in_xml = 0;
        }
        Ok(())
    }

    /// Close the current sheet: its rows end, the autofilter covers the table.
    fn close_sheet(&mut self) -> Result<(), RenderError> {
        if self.widths.is_none() {
            // Fewer rows than the sample: what was measured, or the labels alone.
            self.widths = Some(match self.sampled.take() {
                Some((widths, _)) => final_widths(widths),
                None => self.label_widths(),
            });
        }
        self.start_entry_if_ready()?;
        let last = self.row.saturating_sub(1).max(self.header_row) + 1;
        let last_col = column_letters(self.columns.len().max(1) - 1);
        let first = self.header_row + 1;
        self.xml.extend_from_slice(
            format!(
                "</sheetData><autoFilter ref=\"A{first}:{last_col}{last}\"/>\
                 <pageMargins left=\"0.7\" right=\"0.7\" top=\"0.75\" bottom=\"0.75\" header=\"0.3\" footer=\"0.3\"/></worksheet>"
            )
            .as_bytes(),
        );
        self.flush()?;
        if let Some(s) = self.sheets.last_mut() {
            s.filter = Some(format!("$A${first}:${last_col}${last}"));
        }
        Ok(())
    }

    /// The next row, on a new sheet when this one is full.
    fn next_row(&mut self) -> Result<u32, RenderError> {
        if self.row >= self.sheet_rows {
            self.close_sheet()?;
            self.open_sheet()?;
        }
        let r = self.row;
        self.row += 1;
        self.rows_in_xml += 1;
        Ok(r)
    }

    fn label_widths(&self) -> Vec<f64> {
        final_widths(self.labels().iter().map(|l| l.chars().count() + 2).collect())
    }

    /// Measure the first rows of `batch` that the sample still needs (no full scan);
    /// once `WIDTH_SAMPLE_ROWS` rows are measured, the widths are final.
    fn sample_widths(&mut self, batch: &RecordBatch) {
        let meta = self.meta.as_ref().expect("started");
        let (mut widths, mut seen) =
            self.sampled.take().unwrap_or_else(|| (self.labels().iter().map(|l| l.chars().count() + 2).collect(), 0));
        let take = batch.num_rows().min(WIDTH_SAMPLE_ROWS - seen);
        for (i, c) in self.columns.iter().enumerate() {
            let a = batch.column(c.index);
            let sample = (0..take).map(|r| match a.data_type() {
                DataType::Date32 | DataType::Date64 => 10,
                DataType::Timestamp(_, _) => 19,
                _ => meta.columns[i].format.apply_in(&Value::from_array(a.as_ref(), r), &meta.locale).chars().count(),
            });
            if let Some(w) = sample.max() {
                widths[i] = widths[i].max(w + 2);
            }
        }
        seen += take;
        if seen >= WIDTH_SAMPLE_ROWS {
            self.widths = Some(final_widths(widths));
        } else {
            self.sampled = Some((widths, seen));
        }
    }

    fn write_batch(&mut self, batch: &RecordBatch) -> Result<(), RenderError> {
        if self.widths.is_none() {
            self.sample_widths(batch);
        }
        let data: Vec<Data> = self.columns.iter().map(|c| Data::of(batch.column(c.index).as_ref())).collect();
        // Detail rows sit one level below the innermost group's header and footer.
        let level = self.outline;
        let mut digits = itoa::Buffer::new();
        for r in 0..batch.num_rows() {
            let row = self.next_row()?;
            let rd = digits.format(row + 1).as_bytes();
            open_row(&mut self.xml, rd, level);
            for (ci, (c, d)) in self.columns.iter().zip(&data).enumerate() {
                d.write(&mut self.xml, r, c, rd).map_err(|message| {
                    let meta = self.meta.as_ref().expect("started");
                    RenderError::Encode {
                        format: FORMAT,
                        message: format!(
                            "column `{}`, row {} of the output: {message}",
                            meta.columns[ci].field,
                            self.done + r as u64 + 1
                        ),
                    }
                })?;
            }
            self.xml.extend_from_slice(b"</row>");
        }
        self.done += batch.num_rows() as u64;
        self.start_entry_if_ready()
    }

    /// A row with one text cell in the first column.
    fn text_row(&mut self, level: usize, text: &str, style: &[u8]) -> Result<(), RenderError> {
        self.band(level, text, style, &[])
    }

    /// A band (group header or footer, summary): its text in the first column, bold, and
    /// `numbers` (column, value) under their columns.
    fn band(&mut self, level: usize, text: &str, style: &[u8], numbers: &[(usize, Value)]) -> Result<(), RenderError> {
        let row = self.next_row()?;
        let digits = (row + 1).to_string();
        let rd = digits.as_bytes();
        open_row(&mut self.xml, rd, level);
        if let Some(c) = self.columns.first() {
            text_cell(&mut self.xml, &c.pre, rd, style, clip_text(text));
        } else {
            text_cell(&mut self.xml, b"<c r=\"A", rd, style, clip_text(text));
        }
        for (ci, v) in numbers {
            let c = &self.columns[*ci];
            write_value(&mut self.xml, &c.pre, rd, &c.bold_style, v, &self.date_style, &self.timestamp_style);
        }
        self.xml.extend_from_slice(b"</row>");
        Ok(())
    }

    /// One record of a summary report: group keys and variables.
    fn record(&mut self, values: &[Value]) -> Result<(), RenderError> {
        let row = self.next_row()?;
        let digits = (row + 1).to_string();
        let rd = digits.as_bytes();
        open_row(&mut self.xml, rd, 0);
        for (c, v) in self.columns.iter().zip(values) {
            write_value(&mut self.xml, &c.pre, rd, &c.style, v, &self.date_style, &self.timestamp_style);
        }
        self.xml.extend_from_slice(b"</row>");
        Ok(())
    }

    /// The values placed under their columns for a footer (`level`) or the summary.
    fn subtotal_values(&self, level: usize, variables: &[Value]) -> Vec<(usize, Value)> {
        self.subtotals
            .get(level)
            .map(|placed| {
                placed
                    .iter()
                    .filter_map(|(ci, vi)| variables.get(*vi).filter(|v| !v.is_null()).map(|v| (*ci, v.clone())))
                    .collect()
            })
            .unwrap_or_default()
    }

    fn event(&mut self, event: &Event) -> Result<(), RenderError> {
        match event {
            Event::Begin(meta) => self.begin(meta)?,
            Event::Rows(batch) if !self.summary => self.write_batch(batch)?,
            Event::Rows(_) => {}
            e if self.summary => {
                let meta = self.meta()?;
                if let Some(values) = crate::summary_record(&meta, &mut self.keys, e) {
                    self.record(&values)?;
                }
                if let Event::End { .. } = e {
                    self.close_sheet()?;
                }
            }
            Event::GroupHeader { level, key, first } => {
                let meta = self.meta()?;
                self.keys.truncate(*level);
                self.keys.push(key.clone());
                if let Some(text) = meta.group_header_text(*level, &self.keys, first).filter(|_| self.banded()) {
                    let (style, level) = (self.bold.clone(), self.band_level(*level));
                    self.text_row(level, &text, &style)?;
                }
            }
            Event::GroupFooter { level, variables, .. } => {
                let meta = self.meta()?;
                if self.banded() {
                    if let Some(text) = meta.group_footer_text(*level, variables, &self.keys) {
                        let numbers = self.subtotal_values(*level, variables);
                        let (style, band_level) = (self.bold.clone(), self.band_level(*level));
                        self.band(band_level, &text, &style, &numbers)?;
                    }
                }
                self.keys.truncate(*level);
            }
            Event::End { variables, rows, .. } => {
                let meta = self.meta()?;
                if self.banded() {
                    let style = self.bold.clone();
                    if *rows == 0 {
                        if let Some(nd) = &meta.no_data {
                            self.text_row(0, &nd.render(|n| meta.lookup(n, None, &[])), &style)?;
                        }
                    }
                    if let Some(s) = &meta.summary {
                        let numbers = self.subtotal_values(meta.groups.len(), variables);
                        self.band(0, &s.render(|n| meta.lookup(n, Some(variables), &[])), &style, &numbers)?;
                    }
                }
                self.close_sheet()?;
            }
        }
        Ok(())
    }

    /// The outline level of a group's header and footer rows: that of the rows around
    /// the group, so collapsing it leaves both in view.
    fn band_level(&self, level: usize) -> usize {
        if self.outline == 0 {
            0
        } else {
            level.min(self.outline)
        }
    }
}

fn open_row(out: &mut Vec<u8>, digits: &[u8], level: usize) {
    out.extend_from_slice(b"<row r=\"");
    out.extend_from_slice(digits);
    if level > 0 {
        out.extend_from_slice(b"\" outlineLevel=\"");
        out.push(b'0' + level as u8);
    }
    out.extend_from_slice(b"\">");
}

/// A batch column, resolved once per batch to the cell writer for its type.
enum Data<'a> {
    Int64(&'a PrimitiveArrayOf<Int64Type>),
    Int32(&'a PrimitiveArrayOf<Int32Type>),
    Float64(&'a PrimitiveArrayOf<Float64Type>),
    Decimal(&'a PrimitiveArrayOf<Decimal128Type>, i8),
    Date(&'a PrimitiveArrayOf<Date32Type>),
    TimestampUs(&'a PrimitiveArrayOf<TimestampMicrosecondType>),
    Bool(&'a arrow_array::BooleanArray),
    Utf8(&'a arrow_array::StringArray),
    Other(&'a dyn Array),
}

type PrimitiveArrayOf<T> = arrow_array::PrimitiveArray<T>;

impl<'a> Data<'a> {
    fn of(a: &'a dyn Array) -> Data<'a> {
        match a.data_type() {
            DataType::Int64 => Data::Int64(a.as_primitive()),
            DataType::Int32 => Data::Int32(a.as_primitive()),
            DataType::Float64 => Data::Float64(a.as_primitive()),
            DataType::Decimal128(_, s) => Data::Decimal(a.as_primitive(), *s),
            DataType::Date32 => Data::Date(a.as_primitive()),
            DataType::Timestamp(TimeUnit::Microsecond, _) => Data::TimestampUs(a.as_primitive()),
            DataType::Boolean => Data::Bool(a.as_boolean()),
            DataType::Utf8 => Data::Utf8(a.as_string::<i32>()),
            _ => Data::Other(a),
        }
    }

    /// Write row `r` as a cell of column `c` (nothing for NULL).
    fn write(&self, out: &mut Vec<u8>, r: usize, c: &Column, rd: &[u8]) -> Result<(), String> {
        let (pre, style) = (&c.pre[..], &c.style[..]);
        match self {
            Data::Int64(a) if a.is_valid(r) => number_cell(out, pre, rd, style, |o| cells::int(o, a.value(r))),
            Data::Int32(a) if a.is_valid(r) => number_cell(out, pre, rd, style, |o| cells::int(o, a.value(r).into())),
            Data::Float64(a) if a.is_valid(r) => float_cell(out, pre, rd, style, a.value(r)),
            Data::Decimal(a, scale) if a.is_valid(r) => {
                number_cell(out, pre, rd, style, |o| cells::decimal(o, a.value(r), *scale))
            }
            Data::Date(a) if a.is_valid(r) => date_cell(out, pre, rd, style, a.value(r)),
            Data::TimestampUs(a) if a.is_valid(r) => timestamp_cell(out, pre, rd, style, a.value(r)),
            Data::Bool(a) if a.is_valid(r) => bool_cell(out, pre, rd, style, a.value(r)),
            Data::Utf8(a) if a.is_valid(r) => {
                let s = a.value(r);
                check_text(s)?;
                text_cell(out, pre, rd, style, s);
            }
            Data::Other(a) if a.is_valid(r) => {
                let v = Value::from_array(*a, r);
                if let Value::Str(s) = &v {
                    check_text(s)?;
                }
                write_value(out, pre, rd, style, &v, style, style);
            }
            _ => {}
        }
        Ok(())
    }
}

fn check_text(s: &str) -> Result<(), String> {
    if s.len() > MAX_TEXT && s.chars().count() > MAX_TEXT {
        return Err(format!(
            "a text of {} characters does not fit an Excel cell (at most {MAX_TEXT})",
            s.chars().count()
        ));
    }
    Ok(())
}

fn float_cell(out: &mut Vec<u8>, pre: &[u8], rd: &[u8], style: &[u8], x: f64) {
    if x.is_finite() {
        number_cell(out, pre, rd, style, |o| cells::float(o, x));
    } else {
        // Excel has no NaN or infinity: show them as text rather than lose them.
        text_cell(out, pre, rd, style, &x.to_string());
    }
}

/// Excel's serial for a day: days since 1899-12-30, except that Excel counts a
/// 1900-02-29 that never was, so days before 1900-03-01 are one less. Before 1900 there
/// is no serial (`None`).
fn excel_day(days_since_1970: i64) -> Option<i64> {
    let serial = days_since_1970 + EXCEL_UNIX_DAYS;
    match serial {
        61.. => Some(serial),
        2..=60 => Some(serial - 1),
        _ => None,
    }
}

fn date_cell(out: &mut Vec<u8>, pre: &[u8], rd: &[u8], style: &[u8], days: i32) {
    match excel_day(days.into()) {
        Some(serial) => number_cell(out, pre, rd, style, |o| cells::int(o, serial)),
        None => text_cell(out, pre, rd, style, &Value::Date(days).to_string()),
    }
}

fn timestamp_cell(out: &mut Vec<u8>, pre: &[u8], rd: &[u8], style: &[u8], us: i64) {
    let day = us.div_euclid(86_400_000_000);
    match excel_day(day) {
        Some(serial) => {
            // The sum rounds to the next midnight for times close to it (at 9999-12-31 a
            // day's last 40 µs): keep the value inside its own day, which for the last
            // day Excel has means inside Excel's range.
            let x = (serial as f64 + us.rem_euclid(86_400_000_000) as f64 / US_PER_DAY)
                .min(((serial + 1) as f64).next_down());
            number_cell(out, pre, rd, style, |o| cells::float(o, x))
        }
        None => text_cell(out, pre, rd, style, &Value::Timestamp(us).to_string()),
    }
}

/// A scalar (a group key, a variable, a value of an unusual type) in its natural cell type.
fn write_value(out: &mut Vec<u8>, pre: &[u8], rd: &[u8], style: &[u8], v: &Value, date: &[u8], ts: &[u8]) {
    // A value's own date format wins over a column's number format.
    match v {
        Value::Null => {}
        Value::Bool(b) => bool_cell(out, pre, rd, style, *b),
        Value::Int(i) => number_cell(out, pre, rd, style, |o| cells::int(o, *i)),
        Value::Float(x) => float_cell(out, pre, rd, style, *x),
        Value::Decimal { units, scale } => number_cell(out, pre, rd, style, |o| cells::decimal(o, *units, *scale)),
        Value::Date(d) => date_cell(out, pre, rd, if style.is_empty() { date } else { style }, *d),
        Value::Timestamp(us) => timestamp_cell(out, pre, rd, if style.is_empty() { ts } else { style }, *us),
        Value::Str(s) => text_cell(out, pre, rd, style, clip_text(s)),
        Value::Binary(_) => text_cell(out, pre, rd, style, clip_text(&v.to_string())),
    }
}

/// Sheet names: at most 31 characters, none of `[]:*?/\'`; `report (2)` for the next ones.
fn sheet_name(report: &str, n: u32) -> String {
    let base: String = report.chars().filter(|c| !"[]:*?/\\'".contains(*c)).take(24).collect();
    let base = if base.trim().is_empty() { "Report".to_string() } else { base };
    if n == 1 {
        base
    } else {
        format!("{base} ({n})")
    }
}

/// Bands and labels longer than a cell holds are cut (values are not: see `check_text`).
fn clip_text(s: &str) -> &str {
    match s.char_indices().nth(MAX_TEXT) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// The Excel number format for a column's display format and type (`None`: General).
fn number_format(f: &ValueFormat, dt: &DataType, locale: &ream_core::template::Locale) -> Option<String> {
    Some(match (f, dt) {
        (ValueFormat::Int, _) => "#,##0".to_string(),
        (ValueFormat::Number(n), _) => decimals("#,##0", *n),
        (ValueFormat::Currency(code), _) => match code.as_deref().unwrap_or(locale.currency) {
            "USD" => decimals("$#,##0", 2),
            "EUR" => decimals("#,##0", 2) + " €",
            "GBP" => decimals("£#,##0", 2),
            "JPY" => "¥#,##0".to_string(),
            other => format!("{} \"{other}\"", decimals("#,##0", 2)),
        },
        (ValueFormat::Percent(n), _) => decimals("0", *n) + "%",
        (_, DataType::Date32 | DataType::Date64) => "yyyy-mm-dd".to_string(),
        (_, DataType::Timestamp(_, _)) => "yyyy-mm-dd hh:mm:ss".to_string(),
        (_, DataType::Decimal128(_, s)) if *s > 0 => decimals("0", *s as usize),
        _ => return None,
    })
}

fn decimals(int: &str, n: usize) -> String {
    if n == 0 {
        int.to_string()
    } else {
        format!("{int}.{}", "0".repeat(n))
    }
}

impl Renderer for XlsxRenderer {
    fn push(&mut self, event: &Event, out: &mut Vec<u8>) -> Result<(), RenderError> {
        self.event(event)?;
        self.flush()?;
        self.pkg.drain(out);
        Ok(())
    }

    /// The sheet's XML through the compressor, flushed (a deflate sync point), so a
    /// split by size sees the part's real bytes.
    fn settle(&mut self, out: &mut Vec<u8>) -> Result<u64, RenderError> {
        self.flush()?;
        if !self.started {
            return Ok(self.xml.len() as u64);
        }
        self.pkg.sync(out)?;
        Ok(0)
    }

    fn finish(&mut self, sink: &mut (dyn std::io::Write + Send)) -> Result<(), RenderError> {
        let meta = self.meta()?;
        let (workbook, rels) = package::workbook(&self.sheets);
        self.pkg.entry("xl/workbook.xml", workbook.as_bytes())?;
        self.pkg.entry("xl/_rels/workbook.xml.rels", rels.as_bytes())?;
        self.pkg.entry("xl/styles.xml", self.styles.xml().as_bytes())?;
        let (core, app) = package::doc_props(meta.title.as_deref().unwrap_or(&meta.report), self.created);
        self.pkg.entry("docProps/core.xml", core.as_bytes())?;
        self.pkg.entry("docProps/app.xml", app.as_bytes())?;
        self.pkg.finish()?;
        let mut rest = Vec::new();
        self.pkg.drain(&mut rest);
        sink.write_all(&rest).map_err(package::zip_err)
    }
}

/// The (column, variable) pairs of a footer (`level`) or, past the last group, of the
/// summary: a variable goes under the column of the field it aggregates, in the band of
/// the group it resets with (the summary: report-scope variables). A column's `totals`
/// decide where the spec names them; otherwise the first variable that is not a count.
/// Column 0 holds the band's text.
fn subtotals_at(meta: &ReportMeta, level: usize) -> Vec<(usize, usize)> {
    let reset = (level < meta.groups.len()).then_some(level);
    let in_scope = |vi: &usize| meta.variable_specs.get(*vi).is_some_and(|v| v.reset_level == reset);
    let shown = |a: Aggregate| !matches!(a, Aggregate::Count | Aggregate::CountDistinct);
    let mut placed = Vec::new();
    for (ci, c) in meta.columns.iter().enumerate().skip(1) {
        let chosen = match c.totals.is_empty() {
            false => c.totals.iter().copied().find(in_scope),
            true => (0..meta.variable_specs.len()).find(|vi| {
                let v = &meta.variable_specs[*vi];
                in_scope(vi) && v.field == Some(c.index) && shown(v.aggregate)
            }),
        };
        placed.extend(chosen.map(|vi| (ci, vi)));
    }
    placed
}

/// Rows measured for the column widths, however they arrive in batches.
const WIDTH_SAMPLE_ROWS: usize = 200;

/// Measured widths (characters) as Excel column widths, within reason.
fn final_widths(widths: Vec<usize>) -> Vec<f64> {
    widths.into_iter().map(|w| w.clamp(6, 60) as f64).collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_currency_without_a_code_is_the_locales_in_the_number_format() {
        use ream_core::template::{Format, Locale};
        let de = Locale::parse("de-DE").unwrap();
        let dt = arrow_schema::DataType::Decimal128(12, 2);
        let plain = Format::parse("currency").unwrap();
        assert_eq!(super::number_format(&plain, &dt, &de).as_deref(), Some("#,##0.00 €"));
        assert_eq!(super::number_format(&plain, &dt, &Locale::default()).as_deref(), Some("$#,##0.00"));
        let usd = Format::parse("currency:USD").unwrap();
        assert_eq!(super::number_format(&usd, &dt, &de).as_deref(), Some("$#,##0.00"));
    }

    #[test]
    fn the_last_microsecond_excel_can_show_stays_on_its_day() {
        let last = chrono::NaiveDate::from_ymd_opt(9999, 12, 31)
            .unwrap()
            .and_hms_micro_opt(23, 59, 59, 999_999)
            .unwrap()
            .and_utc()
            .timestamp_micros();
        let mut out = Vec::new();
        super::timestamp_cell(&mut out, b"", b"1", b"", last);
        let text = String::from_utf8(out).unwrap();
        let v: f64 = text.split("<v>").nth(1).and_then(|t| t.split("</v>").next()).unwrap().parse().unwrap();
        assert!(v < 2_958_466.0 && v > 2_958_465.999, "{text}: past Excel's last day (serial 2958465)");
    }

    use super::*;

    #[test]
    fn excel_days_skip_the_1900_leap_day_that_never_was() {
        let days = |y, m, d| {
            (chrono::NaiveDate::from_ymd_opt(y, m, d).unwrap() - chrono::NaiveDate::from_ymd_opt(1970, 1, 1).unwrap())
                .num_days()
        };
        assert_eq!(excel_day(days(1970, 1, 1)), Some(25_569));
        assert_eq!(excel_day(days(2024, 1, 1)), Some(45_292));
        assert_eq!(excel_day(days(1900, 3, 1)), Some(61));
        assert_eq!(excel_day(days(1900, 2, 28)), Some(59));
        assert_eq!(excel_day(days(1900, 1, 1)), Some(1));
        assert_eq!(excel_day(days(1899, 12, 31)), None);
    }

    #[test]
    fn sheet_names_are_what_excel_allows() {
        assert_eq!(sheet_name("sales/by:region?", 1), "salesbyregion");
        assert_eq!(sheet_name("a_very_long_report_name_indeed_yes", 3), "a_very_long_report_name_ (3)");
        assert_eq!(sheet_name("[]", 1), "Report");
    }
}
