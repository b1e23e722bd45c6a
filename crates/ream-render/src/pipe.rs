//! Where a writer that owns its sink (the zip of an XLSX, the Parquet and Arrow writers)
//! puts its bytes: pieces of at most [`PIECE`] bytes. The renderer moves them to its
//! output after each event (small amounts into the run's buffer, a Parquet row group as
//! pieces of its own, [`crate::Renderer::take_piece`]).
//!
//! Pieces, not one growing buffer: a row group of 28 MB written into one `Vec` grew it by
//! doubling to 32 MB, and appending it to the run's buffer made a second one; with glibc's
//! allocator those large blocks were kept and not reused, and peak RSS grew with the row
//! groups written (heaptrack, 3M lineitem rows: 55 MB of the 99 MB peak).

use std::collections::VecDeque;
use std::io::Write;
use std::sync::{Arc, Mutex};

/// The largest piece: the runner's chunk (64 KiB). Measured (BENCHMARKS.md): 1 MiB
/// pieces peaked at 77 MB for 1M lineitem rows to Parquet and 92 MB for 6M; 64 KiB
/// pieces at 63 and 79 MB, as fast.
pub const PIECE: usize = 64 << 10;

#[derive(Clone, Default)]
pub(crate) struct Pipe(Arc<Mutex<Pieces>>);

#[derive(Default)]
struct Pieces {
    pieces: VecDeque<Vec<u8>>,
    bytes: usize,
}

impl Pipe {
    fn lock(&self) -> std::sync::MutexGuard<'_, Pieces> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Move what the writer wrote so far to `out`.
    pub fn drain_into(&self, out: &mut Vec<u8>) {
        let mut p = self.lock();
        out.reserve(p.bytes);
        for piece in p.pieces.drain(..) {
            out.extend_from_slice(&piece);
        }
        p.bytes = 0;
    }

    /// The bytes waiting.
    pub fn bytes(&self) -> usize {
        self.lock().bytes
    }

    /// The oldest piece waiting.
    pub fn take(&self) -> Option<Vec<u8>> {
        let mut p = self.lock();
        let piece = p.pieces.pop_front()?;
        p.bytes -= piece.len();
        Some(piece)
    }
}

impl Write for Pipe {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut p = self.lock();
        let mut rest = buf;
        while !rest.is_empty() {
            let room = match p.pieces.back() {
                Some(last) => PIECE - last.len(),
                None => 0,
            };
            if room == 0 {
                p.pieces.push_back(Vec::with_capacity(PIECE.min(rest.len().next_power_of_two())));
                continue;
            }
            let (now, later) = rest.split_at(room.min(rest.len()));
            if let Some(last) = p.pieces.back_mut() {
                last.extend_from_slice(now);
            }
            rest = later;
        }
        p.bytes += buf.len();
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_come_out_in_order_in_pieces_of_at_most_a_mebibyte() {
        let mut pipe = Pipe::default();
        let data: Vec<u8> = (0..3 * PIECE + 17).map(|i| (i % 251) as u8).collect();
        pipe.write_all(&data[..10]).unwrap();
        pipe.write_all(&data[10..]).unwrap();
        assert_eq!(pipe.bytes(), data.len());
        let mut out = Vec::new();
        let first = pipe.take().unwrap();
        assert_eq!(first.len(), PIECE);
        out.extend(first);
        pipe.drain_into(&mut out);
        assert_eq!(pipe.bytes(), 0);
        assert!(out == data);
        assert!(pipe.take().is_none());
    }
}
