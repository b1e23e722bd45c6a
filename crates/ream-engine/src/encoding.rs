//! Compression of a run's output as it streams: gzip or zstd, one place for the CLI
//! (`--compress`, `-o x.csv.gz`) and the server (`Accept-Encoding`). Each chunk the
//! renderer fills goes through the encoder on its way out, so memory stays one chunk
//! plus the encoder's window, and the first chunk is flushed through at once, so the
//! first bytes still leave early.
//!
//! ```
//! use ream_engine::Compression;
//!
//! let mut enc = Compression::Gzip.encoder(0).unwrap();
//! let mut out = enc.encode(b"id,total\n1,2.50\n", true).unwrap();
//! out.extend(enc.finish().unwrap());
//! assert_eq!(&out[..2], &[0x1f, 0x8b]);
//! ```

use std::io::Write;

/// How a run's bytes are encoded on the way out.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Compression {
    #[default]
    None,
    Gzip,
    Zstd,
}

/// The default levels: gzip 2, zstd 1 (`--compress-level` picks another). Measured on
/// 6M lineitem rows as CSV (BENCHMARKS.md, "Compression levels"): zlib-rs's level 1 is its
/// quick deflate, 4.9 s but 358 MB, 27% larger than GNU `gzip -1`; level 2 is 6.1 s for
/// 266 MB, smaller than `| gzip -1` (282 MB) and still 1.33× its speed. zstd 1 is 4.1 s
/// for 247 MB, the size of `| zstd -1` at 1.16× its speed; zstd 3 is 5.2 s for 237 MB.
const GZIP_LEVEL: i32 = 2;
const ZSTD_LEVEL: i32 = 1;

impl std::str::FromStr for Compression {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "gzip" | "gz" => Ok(Compression::Gzip),
            "zstd" | "zst" => Ok(Compression::Zstd),
            "none" | "identity" => Ok(Compression::None),
            other => Err(format!("unknown compression `{other}`: use gzip, zstd or none")),
        }
    }
}

impl Compression {
    /// The compression a file name's last extension names (`x.csv.gz`, `x.ndjson.zst`),
    /// and the name without it.
    pub fn from_path(path: &std::path::Path) -> (Compression, std::path::PathBuf) {
        let ext = path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
        match ext.as_deref() {
            Some("gz") => (Compression::Gzip, path.with_extension("")),
            Some("zst") => (Compression::Zstd, path.with_extension("")),
            _ => (Compression::None, path.to_path_buf()),
        }
    }

    /// The file extension the compression adds (`gz`, `zst`), when there is one.
    pub fn extension(self) -> Option<&'static str> {
        match self {
            Compression::None => None,
            Compression::Gzip => Some("gz"),
            Compression::Zstd => Some("zst"),
        }
    }

    /// The HTTP content coding (`Content-Encoding`), when there is one.
    pub fn content_coding(self) -> Option<&'static str> {
        match self {
            Compression::None => None,
            Compression::Gzip => Some("gzip"),
            Compression::Zstd => Some("zstd"),
        }
    }

    /// The coding to use for a request's `Accept-Encoding`: zstd where the client takes
    /// it, else gzip, else none (`q=0` refuses a coding).
    pub fn negotiate(accept_encoding: &str) -> Compression {
        let takes = |coding: &str| {
            accept_encoding.split(',').any(|part| {
                let mut it = part.split(';').map(str::trim);
                let name = it.next().unwrap_or("");
                let q = it.find_map(|p| p.strip_prefix("q=").map(|v| v.trim().parse::<f32>().unwrap_or(0.0)));
                name.eq_ignore_ascii_case(coding) && q.unwrap_or(1.0) > 0.0
            })
        };
        if takes("zstd") {
            Compression::Zstd
        } else if takes("gzip") {
            Compression::Gzip
        } else {
            Compression::None
        }
    }

    /// An encoder for one run's output (`None` for no compression).
    pub fn encoder(self, capacity: usize) -> std::io::Result<Encoder> {
        let level = match self {
            Compression::Gzip => GZIP_LEVEL,
            _ => ZSTD_LEVEL,
        };
        self.encoder_at(level, capacity)
    }

    /// The level a run asks for (`--compress-level`), checked against the codec's range
    /// (gzip 1–9, zstd 1–22); the default without one.
    pub fn level(self, asked: Option<i32>) -> Result<i32, String> {
        let (name, range, default) = match self {
            Compression::None if asked.is_some() => return Err("a compression level needs --compress".into()),
            Compression::None => return Ok(0),
            Compression::Gzip => ("gzip", 1..=9, GZIP_LEVEL),
            Compression::Zstd => ("zstd", 1..=22, ZSTD_LEVEL),
        };
        match asked {
            None => Ok(default),
            Some(l) if range.contains(&l) => Ok(l),
            Some(l) => Err(format!("{name} has no level {l}: give {} to {}", range.start(), range.end())),
        }
    }

    /// An encoder at `level` (from [`Compression::level`]).
    pub fn encoder_at(self, level: i32, capacity: usize) -> std::io::Result<Encoder> {
        Ok(match self {
            Compression::None => Encoder(Inner::Identity),
            Compression::Gzip => Encoder(Inner::Gzip(flate2::write::GzEncoder::new(
                Vec::with_capacity(capacity),
                flate2::Compression::new(level.clamp(0, 9) as u32),
            ))),
            Compression::Zstd => {
                Encoder(Inner::Zstd(zstd::stream::write::Encoder::new(Vec::with_capacity(capacity), level)?))
            }
        })
    }
}

enum Inner {
    Identity,
    Gzip(flate2::write::GzEncoder<Vec<u8>>),
    Zstd(zstd::stream::write::Encoder<'static, Vec<u8>>),
}

/// A streaming encoder: chunks in, encoded bytes out.
pub struct Encoder(Inner);

impl Encoder {
    /// Encode `data`; with `flush`, everything so far comes out now (a sync flush).
    pub fn encode(&mut self, data: &[u8], flush: bool) -> std::io::Result<Vec<u8>> {
        fn take(w: &mut Vec<u8>) -> Vec<u8> {
            std::mem::take(w)
        }
        match &mut self.0 {
            Inner::Identity => Ok(data.to_vec()),
            Inner::Gzip(e) => {
                e.write_all(data)?;
                if flush {
                    e.flush()?;
                }
                Ok(take(e.get_mut()))
            }
            Inner::Zstd(e) => {
                e.write_all(data)?;
                if flush {
                    e.flush()?;
                }
                Ok(take(e.get_mut()))
            }
        }
    }

    /// The end of the stream (gzip's trailer, zstd's last block).
    pub fn finish(self) -> std::io::Result<Vec<u8>> {
        match self.0 {
            Inner::Identity => Ok(vec![]),
            Inner::Gzip(e) => e.finish(),
            Inner::Zstd(e) => e.finish(),
        }
    }

    pub fn is_identity(&self) -> bool {
        matches!(self.0, Inner::Identity)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn roundtrip(c: Compression) -> Vec<u8> {
        let mut enc = c.encoder(0).unwrap();
        let mut out = enc.encode(b"a,b\n", true).unwrap();
        // Flushed: what left already decodes to the first chunk.
        if c == Compression::Gzip {
            let mut d = flate2::read::MultiGzDecoder::new(&out[..]);
            let mut text = vec![0; 4];
            d.read_exact(&mut text).unwrap();
            assert_eq!(text, b"a,b\n");
        }
        for i in 0..1000 {
            out.extend(enc.encode(format!("{i},x\n").as_bytes(), false).unwrap());
        }
        out.extend(enc.finish().unwrap());
        let mut plain = Vec::new();
        match c {
            Compression::Gzip => flate2::read::GzDecoder::new(&out[..]).read_to_end(&mut plain).unwrap(),
            Compression::Zstd => zstd::stream::read::Decoder::new(&out[..]).unwrap().read_to_end(&mut plain).unwrap(),
            Compression::None => {
                plain = out;
                0
            }
        };
        plain
    }

    #[test]
    fn gzip_and_zstd_give_back_the_bytes_and_the_first_chunk_leaves_at_once() {
        let want: String = std::iter::once("a,b\n".to_string()).chain((0..1000).map(|i| format!("{i},x\n"))).collect();
        for c in [Compression::Gzip, Compression::Zstd, Compression::None] {
            assert_eq!(String::from_utf8(roundtrip(c)).unwrap(), want, "{c:?}");
        }
    }

    #[test]
    fn a_level_is_checked_against_its_codec() {
        assert_eq!(Compression::Gzip.level(None), Ok(2));
        assert_eq!(Compression::Zstd.level(None), Ok(1));
        assert_eq!(Compression::Gzip.level(Some(9)), Ok(9));
        assert_eq!(Compression::Zstd.level(Some(19)), Ok(19));
        assert_eq!(Compression::Gzip.level(Some(10)).unwrap_err(), "gzip has no level 10: give 1 to 9");
        assert_eq!(Compression::Zstd.level(Some(0)).unwrap_err(), "zstd has no level 0: give 1 to 22");
        assert!(Compression::None.level(Some(3)).unwrap_err().contains("needs --compress"));
    }

    #[test]
    fn accept_encoding_prefers_zstd_then_gzip_and_honours_q_zero() {
        assert_eq!(Compression::negotiate("gzip, deflate, br, zstd"), Compression::Zstd);
        assert_eq!(Compression::negotiate("gzip;q=1.0, zstd;q=0"), Compression::Gzip);
        assert_eq!(Compression::negotiate("GZIP"), Compression::Gzip);
        assert_eq!(Compression::negotiate("br, deflate"), Compression::None);
        assert_eq!(Compression::negotiate(""), Compression::None);
        assert_eq!(Compression::negotiate("zstd;q=0.5"), Compression::Zstd);
    }

    #[test]
    fn a_file_name_names_its_compression() {
        let p = std::path::Path::new("out/x.csv.gz");
        assert_eq!(Compression::from_path(p), (Compression::Gzip, "out/x.csv".into()));
        assert_eq!(Compression::from_path("x.ndjson.zst".as_ref()).0, Compression::Zstd);
        assert_eq!(Compression::from_path("x.csv".as_ref()).0, Compression::None);
    }
}
