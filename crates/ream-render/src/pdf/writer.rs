//! The file around the objects: the header, each object's offset as it is written, and
//! the cross-reference table and trailer at the end. Objects leave as soon as they are
//! complete; what stays is one offset per object (8 bytes), so a 100,000-page report
//! keeps under 2 MB here.

use std::io::Write;

use pdf_writer::{Chunk, Ref};

pub(crate) struct ObjWriter {
    /// Bytes written so far (the offset of the next object).
    pos: u64,
    /// Each object's offset, by object number; 0 until written.
    offsets: Vec<u64>,
    next: i32,
}

impl ObjWriter {
    pub fn new() -> Self {
        ObjWriter { pos: 0, offsets: vec![0], next: 1 }
    }

    pub fn alloc(&mut self) -> Ref {
        let r = Ref::new(self.next);
        self.next += 1;
        self.offsets.push(0);
        r
    }

    /// The file header; a comment of high bytes marks the file as binary.
    pub fn header(&mut self, out: &mut Vec<u8>) {
        self.raw(b"%PDF-1.7\n%\xE2\xE3\xCF\xD3\n", out);
    }

    fn raw(&mut self, bytes: &[u8], out: &mut Vec<u8>) {
        out.extend_from_slice(bytes);
        self.pos += bytes.len() as u64;
    }

    /// Write a chunk's objects and note where each starts. A chunk from another writer
    /// (svg2pdf) may hold several: each after the previous one's `endobj`.
    pub fn put(&mut self, chunk: &Chunk, out: &mut Vec<u8>) {
        let bytes = chunk.as_bytes();
        let mut from = 0;
        for (i, r) in chunk.refs().enumerate() {
            let start = if i == 0 {
                0
            } else {
                let marker = format!("endobj\n\n{} 0 obj\n", r.get());
                match find(&bytes[from..], marker.as_bytes()) {
                    Some(at) => from + at + "endobj\n\n".len(),
                    None => from,
                }
            };
            self.offsets[r.get() as usize] = self.pos + start as u64;
            from = start;
        }
        self.raw(bytes, out);
    }

    /// The cross-reference table and the trailer, streamed to `sink` in pieces.
    pub fn trailer(&mut self, root: Ref, info: Ref, sink: &mut (dyn Write + Send)) -> std::io::Result<()> {
        let start = self.pos;
        let mut buf = Vec::with_capacity(64 * 1024);
        buf.extend_from_slice(format!("xref\n0 {}\n0000000000 65535 f\r\n", self.offsets.len()).as_bytes());
        for off in &self.offsets[1..] {
            // Every object is written by now; an unwritten one would be a bug, and is
            // listed as free rather than pointing into another object.
            if *off == 0 {
                buf.extend_from_slice(b"0000000000 65535 f\r\n");
            } else {
                buf.extend_from_slice(format!("{off:010} 00000 n\r\n").as_bytes());
            }
            if buf.len() >= 60 * 1024 {
                sink.write_all(&buf)?;
                buf.clear();
            }
        }
        buf.extend_from_slice(
            format!(
                "trailer\n<< /Size {} /Root {} 0 R /Info {} 0 R >>\nstartxref\n{start}\n%%EOF\n",
                self.offsets.len(),
                root.get(),
                info.get()
            )
            .as_bytes(),
        );
        sink.write_all(&buf)
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}
