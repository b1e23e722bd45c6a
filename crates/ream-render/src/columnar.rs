//! Parquet and the Arrow IPC stream: the report's detail columns as the Arrow batches
//! they already are, types kept (decimals stay DECIMAL, dates DATE, timestamps TIMESTAMP,
//! adjusted to UTC where the source has a zone), NULLs kept. Bands are presentation, so a
//! grouped report writes its detail rows.
//!
//! - Parquet (arrow-rs's `ArrowWriter`): a row group leaves as soon as it is full, at
//!   `row_group_rows` or `row_group_bytes` of encoded data, whichever comes first; the
//!   footer leaves at the end. Nothing seeks back, so it works to a pipe and as an HTTP
//!   body. Memory: one row group, encoded, plus the rows of one slice (below). Column
//!   statistics are written per page.
//! - Arrow (`arrow-ipc`'s `StreamWriter`): the schema message first, then a record batch
//!   per slice, then the end-of-stream marker.
//!
//! Both writers get the rows in slices of exactly [`SLICE_ROWS`] (the last one shorter),
//! whatever the run's batches: Parquet decides page and row-group boundaries per call,
//! so batches of 1, 7 and 1000 rows gave different files. A slice holds its rows until it
//! is full.

use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use ream_core::Event;

use crate::pipe::Pipe;
use crate::{project, ParquetCompression, ParquetConfig, RenderError, Renderer};

/// Rows per call into the writers: arrow-rs's own write batch size.
pub const SLICE_ROWS: usize = 1024;

/// The writer's properties for `config`.
fn properties(config: &ParquetConfig) -> WriterProperties {
    let compression = match config.compression {
        ParquetCompression::Zstd => Compression::ZSTD(ZstdLevel::default()),
        ParquetCompression::Snappy => Compression::SNAPPY,
        ParquetCompression::None => Compression::UNCOMPRESSED,
    };
    WriterProperties::builder()
        .set_compression(compression)
        .set_max_row_group_row_count(Some(config.row_group_rows.max(1)))
        .set_max_row_group_bytes(Some(config.row_group_bytes.max(1)))
        .set_write_batch_size(SLICE_ROWS)
        .set_statistics_enabled(EnabledStatistics::Page)
        .build()
}

/// Batches into slices of exactly [`SLICE_ROWS`] rows.
#[derive(Default)]
struct Slicer {
    pending: Vec<RecordBatch>,
    rows: usize,
}

impl Slicer {
    /// Take a batch; the full slices it completes.
    fn push(&mut self, schema: &SchemaRef, batch: RecordBatch) -> Result<Vec<RecordBatch>, arrow_schema::ArrowError> {
        let mut out = Vec::new();
        let mut batch = batch;
        while self.rows + batch.num_rows() >= SLICE_ROWS {
            let take = SLICE_ROWS - self.rows;
            self.pending.push(batch.slice(0, take));
            batch = batch.slice(take, batch.num_rows() - take);
            out.push(arrow_select_concat(schema, std::mem::take(&mut self.pending))?);
            self.rows = 0;
        }
        if batch.num_rows() > 0 {
            self.rows += batch.num_rows();
            self.pending.push(batch);
        }
        Ok(out)
    }

    /// The last, shorter slice.
    fn rest(&mut self, schema: &SchemaRef) -> Result<Option<RecordBatch>, arrow_schema::ArrowError> {
        self.rows = 0;
        match self.pending.is_empty() {
            true => Ok(None),
            false => arrow_select_concat(schema, std::mem::take(&mut self.pending)).map(Some),
        }
    }
}

fn arrow_select_concat(schema: &SchemaRef, parts: Vec<RecordBatch>) -> Result<RecordBatch, arrow_schema::ArrowError> {
    match parts.len() {
        1 => Ok(parts.into_iter().next().unwrap_or_else(|| RecordBatch::new_empty(schema.clone()))),
        _ => arrow_select::concat::concat_batches(schema, &parts),
    }
}

/// What both columnar writers do with a run's events; `W` writes slices.
pub trait SliceWriter: Send {
    const FORMAT: &'static str;
    fn write(&mut self, slice: &RecordBatch) -> Result<(), String>;
    fn finish(&mut self) -> Result<(), String>;
    /// Encoded bytes held for the output (a row group in progress).
    fn pending(&self) -> usize {
        0
    }
}

/// A columnar renderer: the detail columns, sliced, into its writer.
pub struct Columnar<W: SliceWriter> {
    start: Box<dyn Fn(Pipe, SchemaRef) -> Result<W, String> + Send>,
    writer: Option<W>,
    pipe: Pipe,
    schema: Option<SchemaRef>,
    indices: Vec<usize>,
    slicer: Slicer,
}

fn encode<W: SliceWriter>(message: impl std::fmt::Display) -> RenderError {
    RenderError::Encode { format: W::FORMAT, message: message.to_string() }
}

impl<W: SliceWriter> Columnar<W> {
    fn begin(&mut self, meta: &ream_core::ReportMeta) -> Result<(), RenderError> {
        if !meta.detail {
            return Err(encode::<W>(format!(
                "the report has no detail rows (`detail: false`): {} writes detail rows; \
                 write its summary as csv, json or xlsx",
                W::FORMAT
            )));
        }
        self.indices = meta.columns.iter().map(|c| c.index).collect();
        let schema = Arc::new(meta.schema.project(&self.indices).map_err(encode::<W>)?);
        self.writer = Some((self.start)(self.pipe.clone(), schema.clone()).map_err(encode::<W>)?);
        self.schema = Some(schema);
        Ok(())
    }

    fn rows(&mut self, batch: &RecordBatch) -> Result<(), RenderError> {
        let (Some(schema), Some(writer)) = (&self.schema, &mut self.writer) else {
            return Err(RenderError::NotStarted { format: W::FORMAT });
        };
        let batch = project(batch, &self.indices, W::FORMAT)?;
        // The run's batches carry the source's field metadata; the writer's schema is
        // the projected one.
        let batch = RecordBatch::try_new(schema.clone(), batch.columns().to_vec()).map_err(encode::<W>)?;
        for slice in self.slicer.push(schema, batch).map_err(encode::<W>)? {
            writer.write(&slice).map_err(encode::<W>)?;
        }
        Ok(())
    }

    fn end(&mut self) -> Result<(), RenderError> {
        let (Some(schema), Some(writer)) = (&self.schema, &mut self.writer) else {
            return Err(RenderError::NotStarted { format: W::FORMAT });
        };
        if let Some(slice) = self.slicer.rest(schema).map_err(encode::<W>)? {
            writer.write(&slice).map_err(encode::<W>)?;
        }
        writer.finish().map_err(encode::<W>)?;
        self.writer = None;
        Ok(())
    }
}

impl<W: SliceWriter> Renderer for Columnar<W> {
    fn push(&mut self, event: &Event, out: &mut Vec<u8>) -> Result<(), RenderError> {
        match event {
            Event::Begin(meta) => self.begin(meta)?,
            Event::Rows(batch) => self.rows(batch)?,
            Event::End { .. } => self.end()?,
            _ => {}
        }
        // A row group leaves as pieces (take_piece); a slice's or a message's bytes join
        // the run's buffer.
        if self.pipe.bytes() < crate::pipe::PIECE {
            self.pipe.drain_into(out);
        }
        Ok(())
    }

    fn take_piece(&mut self) -> Option<Vec<u8>> {
        self.pipe.take()
    }

    fn settle(&mut self, out: &mut Vec<u8>) -> Result<u64, RenderError> {
        self.pipe.drain_into(out);
        Ok(self.writer.as_ref().map_or(0, |w| w.pending() as u64))
    }
}

pub struct ParquetSlices(ArrowWriter<Pipe>);

impl SliceWriter for ParquetSlices {
    const FORMAT: &'static str = "parquet";
    fn write(&mut self, slice: &RecordBatch) -> Result<(), String> {
        self.0.write(slice).map_err(|e| e.to_string())
    }
    fn finish(&mut self) -> Result<(), String> {
        self.0.finish().map(|_| ()).map_err(|e| e.to_string())
    }
    fn pending(&self) -> usize {
        self.0.in_progress_size()
    }
}

pub struct ArrowSlices(arrow_ipc::writer::StreamWriter<Pipe>);

impl SliceWriter for ArrowSlices {
    const FORMAT: &'static str = "arrow";
    fn write(&mut self, slice: &RecordBatch) -> Result<(), String> {
        self.0.write(slice).map_err(|e| e.to_string())
    }
    fn finish(&mut self) -> Result<(), String> {
        self.0.finish().map_err(|e| e.to_string())
    }
}

/// Parquet, written with `config`.
pub type ParquetRenderer = Columnar<ParquetSlices>;
/// The Arrow IPC stream.
pub type ArrowRenderer = Columnar<ArrowSlices>;

fn columnar<W: SliceWriter>(start: impl Fn(Pipe, SchemaRef) -> Result<W, String> + Send + 'static) -> Columnar<W> {
    Columnar {
        start: Box::new(start),
        writer: None,
        pipe: Pipe::default(),
        schema: None,
        indices: vec![],
        slicer: Slicer::default(),
    }
}

impl ParquetRenderer {
    pub fn new(config: ParquetConfig) -> ParquetRenderer {
        columnar(move |pipe, schema| {
            ArrowWriter::try_new(pipe, schema, Some(properties(&config)))
                .map(ParquetSlices)
                .map_err(|e| format!("the columns cannot be written as Parquet: {e}"))
        })
    }
}

impl ArrowRenderer {
    pub fn new() -> ArrowRenderer {
        columnar(|pipe, schema| {
            arrow_ipc::writer::StreamWriter::try_new(pipe, &schema).map(ArrowSlices).map_err(|e| e.to_string())
        })
    }
}

impl Default for ArrowRenderer {
    fn default() -> Self {
        ArrowRenderer::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::Int64Array;
    use arrow_schema::{DataType, Field, Schema};

    fn ints(schema: &SchemaRef, from: i64, n: usize) -> RecordBatch {
        let col = Int64Array::from_iter_values(from..from + n as i64);
        RecordBatch::try_new(schema.clone(), vec![Arc::new(col)]).unwrap()
    }

    #[test]
    fn slices_are_whole_whatever_the_batches() {
        let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, false)]));
        for batch in [1, 7, 1000, 5000] {
            let mut slicer = Slicer::default();
            let mut sizes = Vec::new();
            let mut next = 0;
            while next < 3000 {
                let n = batch.min(3000 - next as usize);
                for s in slicer.push(&schema, ints(&schema, next, n)).unwrap() {
                    sizes.push(s.num_rows());
                }
                next += n as i64;
            }
            sizes.extend(slicer.rest(&schema).unwrap().map(|s| s.num_rows()));
            assert_eq!(sizes, vec![1024, 1024, 952], "batches of {batch}");
        }
    }
}
