use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::{Array, ArrayRef, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use ream_core::{Event, ReportMeta, Value};

use crate::{project, RenderError, Renderer};

/// RFC 4180 CSV: a header row of field names, then the detail rows. NULL is an empty
/// field; binary values are hex; dates and timestamps are ISO 8601.
#[derive(Default)]
pub struct CsvRenderer {
    indices: Option<Vec<usize>>,
    /// A summary report (`detail: false`): the meta, and the open groups' keys.
    summary: Option<Arc<ReportMeta>>,
    keys: Vec<Value>,
    /// Text cells that a spreadsheet would take for a formula get a leading `'`.
    neutralize: bool,
}

impl CsvRenderer {
    pub fn new(neutralize_formulas: bool) -> CsvRenderer {
        CsvRenderer { neutralize: neutralize_formulas, ..CsvRenderer::default() }
    }
}

const FORMAT: &str = "csv";

fn enc(e: impl std::fmt::Display) -> RenderError {
    RenderError::Encode { format: FORMAT, message: e.to_string() }
}

impl Renderer for CsvRenderer {
    fn push(&mut self, event: &Event, out: &mut Vec<u8>) -> Result<(), RenderError> {
        match event {
            Event::Begin(meta) if !meta.detail => {
                record(meta.summary_fields(), out)?;
                self.summary = Some(meta.clone());
            }
            Event::Begin(meta) => {
                record(meta.columns.iter().map(|c| c.field.as_str()), out)?;
                self.indices = Some(meta.columns.iter().map(|c| c.index).collect());
            }
            e if self.summary.is_some() => {
                let meta = self.summary.clone().expect("checked");
                if let Some(values) = crate::summary_record(&meta, &mut self.keys, e) {
                    let texts: Vec<String> = (values.iter())
                        .map(|v| match v {
                            Value::Str(s) if self.neutralize && is_formula(s) => format!("'{s}"),
                            v => v.to_string(),
                        })
                        .collect();
                    record(texts.iter().map(String::as_str), out)?;
                }
            }
            Event::Rows(batch) => {
                let indices = self.indices.as_ref().ok_or(RenderError::NotStarted { format: FORMAT })?;
                let mut batch = hex_binary(project(batch, indices, FORMAT)?)?;
                if self.neutralize {
                    batch = neutralize_formulas(batch)?;
                }
                if batch.num_columns() > 1 {
                    crate::csv_rows::write_rows(batch.columns(), out).map_err(enc)?;
                } else {
                    // One column: an empty field must be quoted ("") to be a record; arrow-csv knows.
                    let mut w = arrow_csv::WriterBuilder::new().with_header(false).build(&mut *out);
                    w.write(&batch).map_err(enc)?;
                }
            }
            _ => {}
        }
        Ok(())
    }
}

/// One RFC 4180 record.
fn record<'a>(fields: impl IntoIterator<Item = &'a str>, out: &mut Vec<u8>) -> Result<(), RenderError> {
    let mut w = ::csv::WriterBuilder::new().terminator(::csv::Terminator::Any(b'\n')).from_writer(Vec::new());
    w.write_record(fields).map_err(enc)?;
    out.extend_from_slice(&w.into_inner().map_err(enc)?);
    Ok(())
}

/// Whether a spreadsheet would take text as a formula (OWASP's CSV injection list).
fn is_formula(s: &str) -> bool {
    s.starts_with(['=', '+', '-', '@', '\t', '\r'])
}

/// Text columns with a leading `'` on each value that [`is_formula`]; other columns as
/// they are (a negative number is a number, not a formula).
fn neutralize_formulas(batch: RecordBatch) -> Result<RecordBatch, RenderError> {
    let risky = |c: &ArrayRef| c.as_string_opt::<i32>().is_some_and(|s| s.iter().flatten().any(is_formula));
    if !batch.columns().iter().any(risky) {
        return Ok(batch);
    }
    let cols: Vec<ArrayRef> = (batch.columns().iter())
        .map(|c| match c.as_string_opt::<i32>() {
            Some(s) if risky(c) => {
                let safe: StringArray =
                    s.iter().map(|v| v.map(|v| if is_formula(v) { format!("'{v}") } else { v.to_string() })).collect();
                Arc::new(safe) as ArrayRef
            }
            _ => c.clone(),
        })
        .collect();
    RecordBatch::try_new(batch.schema(), cols).map_err(enc)
}

/// arrow's CSV writer has no binary encoding: write binary columns as lowercase hex.
fn hex_binary(batch: RecordBatch) -> Result<RecordBatch, RenderError> {
    if !batch.schema().fields().iter().any(|f| f.data_type() == &DataType::Binary) {
        return Ok(batch);
    }
    let mut fields = Vec::new();
    let mut cols: Vec<ArrayRef> = Vec::new();
    for (f, c) in batch.schema().fields().iter().zip(batch.columns()) {
        if f.data_type() == &DataType::Binary {
            let b = c.as_binary::<i32>();
            let hex: StringArray = (0..b.len())
                .map(|i| (!b.is_null(i)).then(|| b.value(i).iter().map(|x| format!("{x:02x}")).collect::<String>()))
                .collect();
            fields.push(Field::new(f.name(), DataType::Utf8, true));
            cols.push(Arc::new(hex));
        } else {
            fields.push(f.as_ref().clone());
            cols.push(c.clone());
        }
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), cols).map_err(enc)
}
