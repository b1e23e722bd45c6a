//! The consumer's side of a split run: each part written through a [`PartStore`] and
//! hashed as it streams, then the [`Manifest`], last, which says the set is complete.
//!
//! The manifest's list of files is not held in memory: each entry goes to an unnamed
//! temporary file as its part commits ([`ManifestFiles`]), and the manifest is written
//! from it. Held in memory, a burst run's entries (with the rest of its bookkeeping)
//! were 1.6 KiB a burst: peak RSS ×2.1 from 1,000 to 20,000 bursts (BENCHMARKS.md).

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::os::unix::fs::FileExt;

use serde::ser::{Error as _, SerializeSeq};
use sha2::{Digest, Sha256};

use crate::run::{Piece, Run};
use crate::split::{PartId, PartNames};
use crate::{EngineError, Summary};

/// One file of a split output, as the manifest lists it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ManifestFile {
    pub path: String,
    pub rows: u64,
    pub bytes: u64,
    pub sha256: String,
    /// The hive partition (`{"region": "EU"}`), where the split has `by`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition: Option<serde_json::Map<String, serde_json::Value>>,
    /// A burst's recipient (`burst.to`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
}

/// What a split run wrote, written last as `<name>.manifest.json`.
#[derive(Debug, serde::Serialize)]
pub struct Manifest {
    pub report: String,
    /// The spec file the run came from (`null` for an ad-hoc export).
    pub spec: Option<String>,
    pub format: String,
    /// `gzip` or `zstd` when the parts are compressed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compression: Option<String>,
    pub parameters: serde_json::Map<String, serde_json::Value>,
    /// The source's snapshot: `run` (one snapshot for the whole read, begun at or before
    /// `at`) or `statement`, and when the source was opened (RFC 3339, UTC).
    pub snapshot: serde_json::Value,
    pub split: serde_json::Value,
    /// A burst run's `{"by": FIELD}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub burst: Option<serde_json::Value>,
    pub rows: u64,
    pub bytes: u64,
    pub files: ManifestFiles,
}

/// The files of a split run, in the order they were written: one JSON line each in an
/// unnamed temporary file, read back when the manifest is written or listed.
#[derive(Debug)]
pub struct ManifestFiles {
    spill: File,
    count: u64,
    rows: u64,
    bytes: u64,
}

impl ManifestFiles {
    pub fn len(&self) -> u64 {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Each file, read back from the temporary file (which is not changed).
    pub fn iter(&self) -> impl Iterator<Item = std::io::Result<ManifestFile>> + '_ {
        let lines = BufReader::with_capacity(64 * 1024, ReadAt { file: &self.spill, at: 0 }).lines();
        lines.map(|line| line.and_then(|l| serde_json::from_str(&l).map_err(std::io::Error::other)))
    }
}

impl serde::Serialize for ManifestFiles {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(usize::try_from(self.count).ok())?;
        for file in self.iter() {
            seq.serialize_element(&file.map_err(S::Error::custom)?)?;
        }
        seq.end()
    }
}

/// A reader of a file at its own offset (positional reads), so that listing the files
/// leaves the file as it was.
struct ReadAt<'a> {
    file: &'a File,
    at: u64,
}

impl Read for ReadAt<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.file.read_at(buf, self.at)?;
        self.at += n as u64;
        Ok(n)
    }
}

/// The files committed so far, going to the temporary file.
struct FileLog {
    spill: BufWriter<File>,
    count: u64,
    rows: u64,
    bytes: u64,
}

impl FileLog {
    fn new() -> Result<FileLog, EngineError> {
        let spill = tempfile::tempfile().map_err(|e| EngineError::Output(format!("a temporary file: {e}")))?;
        Ok(FileLog { spill: BufWriter::with_capacity(64 * 1024, spill), count: 0, rows: 0, bytes: 0 })
    }

    fn push(&mut self, file: &ManifestFile) -> Result<(), EngineError> {
        let fail = |e: std::io::Error| EngineError::Output(format!("the manifest's temporary file: {e}"));
        serde_json::to_writer(&mut self.spill, file).map_err(|e| fail(e.into()))?;
        self.spill.write_all(b"\n").map_err(fail)?;
        self.count += 1;
        self.rows += file.rows;
        self.bytes += file.bytes;
        Ok(())
    }

    fn flush(&mut self) -> Result<(), EngineError> {
        self.spill.flush().map_err(|e| EngineError::Output(format!("the manifest's temporary file: {e}")))
    }

    /// The files logged, once [`FileLog::flush`] has written them all.
    fn finish(self) -> ManifestFiles {
        let FileLog { spill, count, rows, bytes } = self;
        let (spill, _) = spill.into_parts();
        ManifestFiles { spill, count, rows, bytes }
    }
}

/// Where a split run's files go: a directory on the CLI, the output store in the server.
pub trait PartStore {
    /// Start writing the file at `path` (relative, `/`-separated).
    fn create(&mut self, path: &str) -> std::io::Result<Box<dyn PendingPart>>;
    /// Remove a file this run committed (the run failed after it).
    fn remove(&mut self, path: &str);
}

/// A part being written: visible at its path only after `commit`.
pub trait PendingPart: Write + Send {
    fn commit(self: Box<Self>) -> std::io::Result<()>;
}

/// A file of the run being written.
struct Writing {
    path: String,
    partition: Option<serde_json::Map<String, serde_json::Value>>,
    to: Option<String>,
    out: Box<dyn PendingPart>,
    hash: Sha256,
    bytes: u64,
}

impl Writing {
    fn new(store: &mut dyn PartStore, names: &PartNames, id: &PartId) -> Result<Writing, EngineError> {
        let path = names.part(id);
        let out = store.create(&path).map_err(|e| EngineError::Output(format!("cannot write {path}: {e}")))?;
        let partition = id.partition.as_ref().map(|(field, value)| {
            let value = value.clone().map_or(serde_json::Value::Null, serde_json::Value::String);
            serde_json::Map::from_iter([(field.clone(), value)])
        });
        Ok(Writing { path, partition, to: id.to.clone(), out, hash: Sha256::new(), bytes: 0 })
    }

    fn write(&mut self, data: &[u8]) -> Result<(), EngineError> {
        self.out.write_all(data).map_err(|e| EngineError::Output(format!("{}: {e}", self.path)))?;
        self.hash.update(data);
        self.bytes += data.len() as u64;
        Ok(())
    }

    fn commit(self, rows: u64) -> Result<ManifestFile, EngineError> {
        let path = self.path;
        self.out.commit().map_err(|e| EngineError::Output(format!("cannot write {path}: {e}")))?;
        let sha256 = self.hash.finalize().iter().map(|b| format!("{b:02x}")).collect();
        Ok(ManifestFile { path, rows, bytes: self.bytes, sha256, partition: self.partition, to: self.to })
    }
}

impl Run {
    /// Write a split run's parts to `store`, named by `names`, then its manifest. On any
    /// failure the parts this run committed are removed and no manifest is written.
    pub fn write_parts(
        mut self,
        store: &mut dyn PartStore,
        names: &PartNames,
    ) -> Result<(Summary, Manifest), EngineError> {
        let mut log = match FileLog::new() {
            Ok(log) => log,
            Err(e) => {
                self.cancel();
                return Err(e);
            }
        };
        if let Err(e) = self.receive_parts(store, names, &mut log).and_then(|()| log.flush()) {
            self.cancel();
            // What reached the temporary file (all of it, unless writing it failed).
            let _ = log.flush();
            remove_all(store, &log.finish());
            return Err(e);
        }
        let manifest = self.manifest(log.finish());
        if let Err(e) = write_manifest(store, &names.manifest, &manifest) {
            self.cancel();
            remove_all(store, &manifest.files);
            return Err(e);
        }
        let mut summary = self.summary();
        summary.bytes = manifest.bytes;
        Ok((summary, manifest))
    }

    fn receive_parts(
        &mut self,
        store: &mut dyn PartStore,
        names: &PartNames,
        log: &mut FileLog,
    ) -> Result<(), EngineError> {
        let mut current: Option<Writing> = None;
        let out_of_order = || EngineError::Internal("a split run's bytes came outside a part".into());
        while let Some(piece) = self.next_piece()? {
            match piece {
                Piece::PartStart(id) => current = Some(Writing::new(store, names, &id)?),
                Piece::Data(data) => current.as_mut().ok_or_else(out_of_order)?.write(&data)?,
                Piece::PartEnd { rows } => {
                    let file = current.take().ok_or_else(out_of_order)?.commit(rows)?;
                    if let Err(e) = log.push(&file) {
                        store.remove(&file.path);
                        return Err(e);
                    }
                }
            }
        }
        match current {
            Some(_) => Err(out_of_order()),
            None => Ok(()),
        }
    }

    fn manifest(&self, files: ManifestFiles) -> Manifest {
        let a = &self.about;
        let parameters = a
            .parameters
            .iter()
            .map(|(name, v)| (name.clone(), serde_json::from_str(&v.to_json()).unwrap_or(serde_json::Value::Null)))
            .collect();
        let at = chrono::DateTime::<chrono::Utc>::from(a.opened_at);
        let split = a.split.as_ref().map(|s| {
            let mut m = serde_json::Map::new();
            if let Some(n) = s.rows() {
                m.insert("rows".into(), n.into());
            }
            if let Some(n) = s.bytes() {
                m.insert("bytes".into(), n.into());
            }
            if let Some(by) = s.by() {
                m.insert("by".into(), by.into());
            }
            serde_json::Value::Object(m)
        });
        Manifest {
            report: a.report.clone(),
            spec: a.spec.as_ref().map(|p| p.display().to_string()),
            format: a.format.name().to_string(),
            compression: a.compress.content_coding().map(String::from),
            parameters,
            snapshot: serde_json::json!({
                "mode": match a.snapshot {
                    ream_sources::Snapshot::Run => "run",
                    ream_sources::Snapshot::Statement => "statement",
                },
                "at": at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            }),
            split: split.unwrap_or(serde_json::Value::Null),
            burst: a.burst.as_ref().map(|by| serde_json::json!({ "by": by })),
            rows: files.rows,
            bytes: files.bytes,
            files,
        }
    }
}

/// Remove the files a failed run committed.
fn remove_all(store: &mut dyn PartStore, files: &ManifestFiles) {
    for file in files.iter().map_while(Result::ok) {
        store.remove(&file.path);
    }
}

/// The manifest, streamed to the store from its temporary file of entries.
fn write_manifest(store: &mut dyn PartStore, path: &str, manifest: &Manifest) -> Result<(), EngineError> {
    let fail = |e: std::io::Error| EngineError::Output(format!("cannot write {path}: {e}"));
    let mut out = BufWriter::with_capacity(64 * 1024, store.create(path).map_err(fail)?);
    serde_json::to_writer_pretty(&mut out, manifest).map_err(|e| fail(e.into()))?;
    out.write_all(b"\n").map_err(fail)?;
    out.into_inner().map_err(|e| fail(e.into_error()))?.commit().map_err(fail)
}
