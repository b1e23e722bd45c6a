//! Where the process thread's bytes leave: through the run's encoder (none, gzip or zstd)
//! into the bounded queue to the consumer, with the markers that cut a split run's
//! output into its files.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

use crossbeam_channel::Sender;
use ream_core::CancelToken;
use ream_render::Renderer;

use crate::reading::{Progress, CHUNK_BYTES};
use crate::split::PartId;
use crate::{Compression, Encoder, EngineError};

/// What the process thread hands the consumer. Every run ends with `Done` or `Failed`: a
/// queue that closes without either is a dead thread, a failed run.
pub(crate) enum Chunk {
    Data(Vec<u8>),
    /// A split run: the bytes up to `PartEnd` are this part's file.
    PartStart(PartId),
    PartEnd {
        rows: u64,
    },
    Done,
    Failed(EngineError),
}

/// The first chunk is flushed through the encoder at once, so the first bytes leave early
/// even compressed. A split run's parts are compressed each on its own.
pub(crate) struct Outlet<'a> {
    chunks: &'a Sender<Chunk>,
    progress: &'a Progress,
    cancel: &'a CancelToken,
    /// The codec and its level.
    compress: (Compression, i32),
    encoder: Mutex<Option<Encoder>>,
    flushed: AtomicBool,
    /// The bytes of the current part sent so far, before compression.
    part_plain: AtomicU64,
}

fn compressing(e: std::io::Error) -> EngineError {
    EngineError::Output(format!("compressing: {e}"))
}

impl<'a> Outlet<'a> {
    pub fn new(
        chunks: &'a Sender<Chunk>,
        progress: &'a Progress,
        cancel: &'a CancelToken,
        compress: (Compression, i32),
    ) -> Result<Outlet<'a>, EngineError> {
        let encoder =
            compress.0.encoder_at(compress.1, CHUNK_BYTES * 2).map_err(|e| EngineError::Output(e.to_string()))?;
        Ok(Outlet {
            chunks,
            progress,
            cancel,
            compress,
            encoder: Mutex::new(Some(encoder)),
            flushed: AtomicBool::new(false),
            part_plain: AtomicU64::new(0),
        })
    }

    /// Hand `buf` on (encoded), leaving it empty.
    pub fn send(&self, buf: &mut Vec<u8>) -> Result<(), EngineError> {
        self.send_owned(std::mem::replace(buf, Vec::with_capacity(CHUNK_BYTES * 2)))
    }

    /// After a renderer's push: what `buf` holds, then the pieces the renderer left (a
    /// Parquet row group), each sent as it is.
    pub fn send_pieces(&self, renderer: &mut dyn Renderer, buf: &mut Vec<u8>) -> Result<(), EngineError> {
        let mut first = true;
        while let Some(piece) = renderer.take_piece() {
            if std::mem::take(&mut first) && !buf.is_empty() {
                self.send(buf)?;
            }
            self.send_owned(piece)?;
        }
        Ok(())
    }

    fn send_owned(&self, plain: Vec<u8>) -> Result<(), EngineError> {
        if self.progress.first_chunk_us.load(Ordering::Relaxed) < 0 {
            let us = self.progress.started.elapsed().as_micros() as i64;
            self.progress.first_chunk_us.store(us, Ordering::Relaxed);
        }
        self.part_plain.fetch_add(plain.len() as u64, Ordering::Relaxed);
        let mut encoder = self.encoder.lock().unwrap_or_else(|e| e.into_inner());
        let data = match encoder.as_mut() {
            Some(e) if !e.is_identity() => {
                let first = !self.flushed.swap(true, Ordering::Relaxed);
                e.encode(&plain, first).map_err(compressing)?
            }
            _ => plain,
        };
        drop(encoder);
        self.deliver(Chunk::Data(data))
    }

    /// The encoder's last bytes.
    pub fn finish(&self) -> Result<(), EngineError> {
        let encoder = self.encoder.lock().unwrap_or_else(|e| e.into_inner()).take();
        match encoder {
            Some(e) => self.deliver(Chunk::Data(e.finish().map_err(compressing)?)),
            None => Ok(()),
        }
    }

    /// A split run's next part begins.
    pub fn start_part(&self, id: PartId) -> Result<(), EngineError> {
        self.part_plain.store(0, Ordering::Relaxed);
        let mut encoder = self.encoder.lock().unwrap_or_else(|e| e.into_inner());
        if encoder.is_none() {
            let (codec, level) = self.compress;
            *encoder = Some(codec.encoder_at(level, CHUNK_BYTES * 2).map_err(|e| EngineError::Output(e.to_string()))?);
        }
        drop(encoder);
        self.deliver(Chunk::PartStart(id))
    }

    /// The bytes of the current part so far, before compression.
    pub fn part_plain_bytes(&self) -> u64 {
        self.part_plain.load(Ordering::Relaxed)
    }

    /// The current part is complete: its encoder's last bytes, then its end. The next
    /// part starts a fresh encoder.
    pub fn end_part(&self, rows: u64) -> Result<(), EngineError> {
        self.finish()?;
        self.deliver(Chunk::PartEnd { rows })
    }

    fn deliver(&self, chunk: Chunk) -> Result<(), EngineError> {
        if let Chunk::Data(data) = &chunk {
            if data.is_empty() {
                return Ok(());
            }
            self.progress.bytes.fetch_add(data.len() as u64, Ordering::Relaxed);
        }
        self.chunks.send(chunk).map_err(|_| {
            self.cancel.cancel();
            EngineError::Cancelled
        })
    }
}

/// After a renderer's `End`: send what `buf` holds, then the trailer a renderer assembles
/// at the end (xlsx: the parts that list the sheets, the zip's directory), in chunks.
pub(crate) fn finish_renderer(
    renderer: &mut dyn Renderer,
    buf: &mut Vec<u8>,
    outlet: &Outlet<'_>,
    report: &str,
) -> Result<(), EngineError> {
    if !buf.is_empty() {
        outlet.send(buf)?;
    }
    let mut sink = ChunkSink { buf: std::mem::take(buf), outlet, failed: None };
    let finished = renderer.finish(&mut sink);
    if let Some(e) = sink.failed.take() {
        return Err(e);
    }
    finished.map_err(|e| EngineError::Render { report: report.to_string(), message: e.to_string() })?;
    sink.flush_chunk()?;
    *buf = sink.buf;
    Ok(())
}

/// A `Write` that hands its bytes on in chunks of CHUNK_BYTES.
struct ChunkSink<'a, 'b> {
    buf: Vec<u8>,
    outlet: &'a Outlet<'b>,
    /// Why sending stopped (a cancelled run): the renderer only sees an I/O error.
    failed: Option<EngineError>,
}

impl ChunkSink<'_, '_> {
    fn flush_chunk(&mut self) -> Result<(), EngineError> {
        if self.buf.is_empty() {
            return Ok(());
        }
        self.outlet.send(&mut self.buf)
    }
}

impl std::io::Write for ChunkSink<'_, '_> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK_BYTES {
            if let Err(e) = self.flush_chunk() {
                self.failed = Some(e);
                return Err(std::io::Error::other("the run stopped"));
            }
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
