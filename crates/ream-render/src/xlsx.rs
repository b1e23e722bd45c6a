use std::io::Write;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::*;
use arrow_array::{Array, RecordBatch};
use arrow_schema::{DataType, TimeUnit};
use ream_core::template::Format as ValueFormat;
use ream_core::{Event, ReportMeta, Value};
use rust_xlsxwriter::{Format, Workbook, Worksheet, XlsxError};

use crate::{RenderError, RenderOptions, Renderer};

const FORMAT: &str = "xlsx";
/// Excel's rows per sheet.
pub const SHEET_ROWS: u32 = 1_048_576;
/// Excel's longest text in a cell.
const MAX_TEXT: usize = 32_767;
/// Days from Excel's epoch (1899-12-30, in its 1900 date system) to 1970-01-01.
const EXCEL_UNIX_DAYS: f64 = 25_569.0;
const US_PER_DAY: f64 = 86_400_000_000.0;

fn err(e: XlsxError) -> RenderError {
    RenderError::Encode { format: FORMAT, message: e.to_string() }
}

/// How one detail column is written.
struct Column {
    index: usize,
    kind: Kind,
    format: Format,
    /// Whether `format` is more than the default.
    formatted: bool,
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Number,
    Date,
    Timestamp,
    Bool,
    Text,
}

/// An XLSX workbook, written with rust_xlsxwriter's constant-memory worksheets: each row
/// goes to a temporary file as soon as the next one starts, so memory does not grow with
/// the row count. The zip is assembled at the end ([`Renderer::finish`]) and handed on in
/// chunks as it is written.
///
/// Cells keep their types: numbers (integers, floats, decimals) with the column's number
/// format, dates and timestamps as Excel dates, booleans, text always as text (a value
/// like `=HYPERLINK(…)` is never a formula). NULL is an empty cell. Past Excel's
/// 1,048,576 rows the report continues on a new sheet with the header repeated.
pub struct XlsxRenderer {
    opts: RenderOptions,
    sheet_rows: u32,
    workbook: Workbook,
    sheet: Option<Worksheet>,
    sheets: u32,
    meta: Option<Arc<ReportMeta>>,
    columns: Vec<Column>,
    /// The next row to write on the current sheet.
    row: u32,
    /// The current sheet's header row (for the autofilter).
    header_row: u32,
    widths_set: bool,
    bold: Format,
    title: Format,
    keys: Vec<Value>,
    /// A summary report: group keys and variables as one table.
    summary: bool,
    /// Detail rows written so far (for error messages).
    done: u64,
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
        let mut workbook = Workbook::new();
        // Deflate at its fastest. Measured on 1M lineitem rows: level 1 writes in 7.9 s
        // (144 MB), level 3 in 11.4 s (106 MB); the default 6 spent 40% of the export's
        // time compressing at the end (92 MB).
        workbook.set_zip_compression_level(1);
        XlsxRenderer {
            opts,
            sheet_rows,
            workbook,
            sheet: None,
            sheets: 0,
            meta: None,
            columns: Vec::new(),
            row: 0,
            header_row: 0,
            widths_set: false,
            bold: Format::new().set_bold(),
            title: Format::new().set_bold().set_font_size(14),
            keys: Vec::new(),
            summary: false,
            done: 0,
        }
    }

    fn banded(&self) -> bool {
        !self.opts.xlsx_flat
    }

    fn sheet(&mut self) -> Result<&mut Worksheet, RenderError> {
        self.sheet.as_mut().ok_or(RenderError::NotStarted { format: FORMAT })
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

    /// Start a sheet: the title on the first, then the bold header row, frozen.
    fn open_sheet(&mut self) -> Result<(), RenderError> {
        self.sheets += 1;
        let meta = self.meta.clone().expect("started");
        let mut ws = self.workbook.new_worksheet_with_constant_memory().map_err(err)?;
        ws.set_name(sheet_name(&meta.report, self.sheets)).map_err(err)?;
        self.row = 0;
        if self.banded() && self.sheets == 1 {
            if let Some(t) = &meta.title {
                ws.write_string_with_format(0, 0, clip_text(t), &self.title).map_err(err)?;
                self.row = 2;
            }
        }
        self.header_row = self.row;
        for (i, label) in self.labels().iter().enumerate() {
            ws.write_string_with_format(self.row, i as u16, clip_text(label), &self.bold).map_err(err)?;
        }
        ws.set_freeze_panes(self.row + 1, 0).map_err(err)?;
        // Number formats go on the columns: cells written without a format take their
        // column's, and rust_xlsxwriter need not hash a format for every cell.
        if !self.summary {
            for (i, c) in self.columns.iter().enumerate() {
                if c.formatted {
                    ws.set_column_format(i as u16, &c.format).map_err(err)?;
                }
            }
        }
        self.row += 1;
        self.sheet = Some(ws);
        Ok(())
    }

    /// Close the current sheet: autofilter over its table, then into the workbook.
    fn close_sheet(&mut self) -> Result<(), RenderError> {
        let ncols = self.labels().len().max(1) as u16;
        if let Some(mut ws) = self.sheet.take() {
            let last = self.row.saturating_sub(1).max(self.header_row);
            ws.autofilter(self.header_row, 0, last, ncols - 1).map_err(err)?;
            self.workbook.push_worksheet(ws);
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
        Ok(r)
    }

    /// Column widths from the header and the first batch (no full scan).
    fn set_widths(&mut self, batch: &RecordBatch) -> Result<(), RenderError> {
        if self.widths_set {
            return Ok(());
        }
        self.widths_set = true;
        let meta = self.meta.clone().expect("started");
        let labels = self.labels();
        let mut widths: Vec<usize> = labels.iter().map(|l| l.chars().count() + 2).collect();
        for (i, c) in self.columns.iter().enumerate() {
            let a = batch.column(c.index);
            let sample = (0..a.len().min(200)).map(|r| {
                let v = Value::from_array(a.as_ref(), r);
                match c.kind {
                    Kind::Date => 10,
                    Kind::Timestamp => 19,
                    _ => meta.columns[i].format.apply_in(&v, &meta.locale).chars().count(),
                }
            });
            if let Some(w) = sample.max() {
                widths[i] = widths[i].max(w + 2);
            }
        }
        let ws = self.sheet()?;
        for (i, w) in widths.into_iter().enumerate() {
            ws.set_column_width(i as u16, w.clamp(6, 60) as f64).map_err(err)?;
        }
        Ok(())
    }

    fn write_batch(&mut self, batch: &RecordBatch) -> Result<(), RenderError> {
        self.set_widths(batch)?;
        for r in 0..batch.num_rows() {
            let row = self.next_row()?;
            for (ci, c) in self.columns.iter().enumerate() {
                let a = batch.column(c.index);
                if a.is_null(r) {
                    continue;
                }
                let ws = self.sheet.as_mut().expect("open");
                write_cell(ws, row, ci as u16, a.as_ref(), r, c).map_err(|e| RenderError::Encode {
                    format: FORMAT,
                    message: format!(
                        "column `{}`, row {} of the output: {e}",
                        self.meta.as_ref().unwrap().columns[ci].field,
                        self.done + r as u64 + 1
                    ),
                })?;
            }
        }
        self.done += batch.num_rows() as u64;
        Ok(())
    }

    /// A band (group header or footer, summary): its text in the first column, bold.
    fn band(&mut self, text: &str) -> Result<(), RenderError> {
        let row = self.next_row()?;
        let bold = self.bold.clone();
        self.sheet()?.write_string_with_format(row, 0, clip_text(text), &bold).map_err(err)?;
        Ok(())
    }

    /// One record of a summary report: group keys and variables.
    fn record(&mut self, values: &[Value]) -> Result<(), RenderError> {
        let row = self.next_row()?;
        let ws = self.sheet.as_mut().expect("open");
        for (i, v) in values.iter().enumerate() {
            write_value(ws, row, i as u16, v).map_err(err)?;
        }
        Ok(())
    }
}

/// Sheet names: at most 31 characters, none of `[]:*?/\`; `report (2)` for the next ones.
fn sheet_name(report: &str, n: u32) -> String {
    let base: String = report.chars().filter(|c| !"[]:*?/\\'".contains(*c)).take(24).collect();
    let base = if base.is_empty() { "Report".to_string() } else { base };
    if n == 1 {
        base
    } else {
        format!("{base} ({n})")
    }
}

/// Bands and labels longer than a cell holds are cut (values are not: see `write_cell`).
fn clip_text(s: &str) -> &str {
    match s.char_indices().nth(MAX_TEXT) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// The Excel number format for a column's display format and type.
fn number_format(f: &ValueFormat, dt: &DataType) -> Format {
    let fmt = match (f, dt) {
        (ValueFormat::Int, _) => "#,##0".to_string(),
        (ValueFormat::Number(n), _) => decimals("#,##0", *n),
        (ValueFormat::Currency(code), _) => match code.as_str() {
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
        _ => return Format::new(),
    };
    Format::new().set_num_format(fmt)
}

fn decimals(int: &str, n: usize) -> String {
    if n == 0 {
        int.to_string()
    } else {
        format!("{int}.{}", "0".repeat(n))
    }
}

fn kind_of(dt: &DataType) -> Kind {
    match dt {
        dt if dt.is_numeric() => Kind::Number,
        DataType::Date32 | DataType::Date64 => Kind::Date,
        DataType::Timestamp(_, _) => Kind::Timestamp,
        DataType::Boolean => Kind::Bool,
        _ => Kind::Text,
    }
}

fn write_text(ws: &mut Worksheet, row: u32, col: u16, s: &str) -> Result<(), XlsxError> {
    if s.chars().count() > MAX_TEXT {
        return Err(XlsxError::ParameterError(format!(
            "a text of {} characters does not fit an Excel cell (at most {MAX_TEXT})",
            s.chars().count()
        )));
    }
    ws.write_string(row, col, s)?;
    Ok(())
}

fn write_cell(ws: &mut Worksheet, row: u32, col: u16, a: &dyn Array, r: usize, c: &Column) -> Result<(), XlsxError> {
    let number = |ws: &mut Worksheet, x: f64| -> Result<(), XlsxError> {
        if x.is_finite() {
            ws.write_number(row, col, x)?;
        } else {
            // Excel has no NaN or infinity: show them as text rather than lose them.
            ws.write_string(row, col, x.to_string())?;
        }
        Ok(())
    };
    match (c.kind, a.data_type()) {
        (Kind::Number, DataType::Int64) => number(ws, a.as_primitive::<Int64Type>().value(r) as f64),
        (Kind::Number, DataType::Int32) => number(ws, a.as_primitive::<Int32Type>().value(r) as f64),
        (Kind::Number, DataType::Float64) => number(ws, a.as_primitive::<Float64Type>().value(r)),
        (Kind::Number, _) => match Value::from_array(a, r).as_f64() {
            Some(x) => number(ws, x),
            None => write_text(ws, row, col, &Value::from_array(a, r).to_string()),
        },
        (Kind::Date, DataType::Date32) => {
            let d = a.as_primitive::<Date32Type>().value(r) as f64;
            ws.write_number(row, col, d + EXCEL_UNIX_DAYS)?;
            Ok(())
        }
        (Kind::Timestamp, DataType::Timestamp(TimeUnit::Microsecond, _)) => {
            let us = a.as_primitive::<TimestampMicrosecondType>().value(r) as f64;
            ws.write_number(row, col, us / US_PER_DAY + EXCEL_UNIX_DAYS)?;
            Ok(())
        }
        (Kind::Bool, _) => {
            ws.write_boolean(row, col, a.as_boolean().value(r))?;
            Ok(())
        }
        (Kind::Text, DataType::Utf8) => write_text(ws, row, col, a.as_string::<i32>().value(r)),
        _ => match Value::from_array(a, r) {
            Value::Date(d) => {
                ws.write_number(row, col, d as f64 + EXCEL_UNIX_DAYS)?;
                Ok(())
            }
            Value::Timestamp(us) => {
                ws.write_number(row, col, us as f64 / US_PER_DAY + EXCEL_UNIX_DAYS)?;
                Ok(())
            }
            v => write_text(ws, row, col, &v.to_string()),
        },
    }
}

/// A scalar (a group key or a variable) in its natural cell type.
fn write_value(ws: &mut Worksheet, row: u32, col: u16, v: &Value) -> Result<(), XlsxError> {
    match v {
        Value::Null => {}
        Value::Bool(b) => {
            ws.write_boolean(row, col, *b)?;
        }
        Value::Date(d) => {
            ws.write_number_with_format(
                row,
                col,
                *d as f64 + EXCEL_UNIX_DAYS,
                &Format::new().set_num_format("yyyy-mm-dd"),
            )?;
        }
        Value::Timestamp(us) => {
            ws.write_number_with_format(
                row,
                col,
                *us as f64 / US_PER_DAY + EXCEL_UNIX_DAYS,
                &Format::new().set_num_format("yyyy-mm-dd hh:mm:ss"),
            )?;
        }
        v => match v.as_f64() {
            Some(x) if x.is_finite() => {
                ws.write_number(row, col, x)?;
            }
            _ => write_text(ws, row, col, &v.to_string())?,
        },
    }
    Ok(())
}

impl Renderer for XlsxRenderer {
    fn push(&mut self, event: &Event, _out: &mut Vec<u8>) -> Result<(), RenderError> {
        match event {
            Event::Begin(meta) => {
                self.summary = !meta.detail;
                self.columns = meta
                    .columns
                    .iter()
                    .map(|c| {
                        let dt = meta.schema.field(c.index).data_type();
                        let format = number_format(&c.format, dt);
                        Column { index: c.index, kind: kind_of(dt), formatted: format != Format::new(), format }
                    })
                    .collect();
                self.meta = Some(meta.clone());
                self.open_sheet()?;
            }
            Event::Rows(batch) if !self.summary => self.write_batch(batch)?,
            Event::Rows(_) => {}
            e if self.summary => {
                let meta = self.meta.clone().ok_or(RenderError::NotStarted { format: FORMAT })?;
                if let Some(values) = crate::summary_record(&meta, &mut self.keys, e) {
                    self.record(&values)?;
                }
                if let Event::End { .. } = e {
                    self.close_sheet()?;
                }
            }
            Event::GroupHeader { level, key, first } => {
                let meta = self.meta.clone().ok_or(RenderError::NotStarted { format: FORMAT })?;
                self.keys.truncate(*level);
                self.keys.push(key.clone());
                if self.banded() {
                    let g = &meta.groups[*level];
                    let text = match &g.header {
                        Some(h) => h.render(|n| meta.lookup_in_row(n, None, &self.keys, Some(first))),
                        None => format!("{}: {key}", g.field),
                    };
                    self.band(&text)?;
                }
            }
            Event::GroupFooter { level, variables, .. } => {
                let meta = self.meta.clone().ok_or(RenderError::NotStarted { format: FORMAT })?;
                if self.banded() {
                    if let Some(f) = &meta.groups[*level].footer {
                        let text = f.render(|n| meta.lookup(n, Some(variables), &self.keys));
                        self.band(&text)?;
                    }
                }
                self.keys.truncate(*level);
            }
            Event::End { variables, rows, .. } => {
                let meta = self.meta.clone().ok_or(RenderError::NotStarted { format: FORMAT })?;
                if self.banded() {
                    if *rows == 0 {
                        if let Some(nd) = &meta.no_data {
                            self.band(&nd.render(|n| meta.lookup(n, None, &[])))?;
                        }
                    }
                    if let Some(s) = &meta.summary {
                        self.band(&s.render(|n| meta.lookup(n, Some(variables), &[])))?;
                    }
                }
                self.close_sheet()?;
            }
        }
        Ok(())
    }

    fn finish(&mut self, sink: &mut (dyn Write + Send)) -> Result<(), RenderError> {
        self.workbook.save_to_writer(sink).map_err(err)
    }
}
