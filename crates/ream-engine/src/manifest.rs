//! The consumer's side of a split run: each part written through a [`PartStore`] and
//! hashed as it streams, then the [`Manifest`], last, which says the set is complete.

use std::io::Write;

use sha2::{Digest, Sha256};

use crate::run::{Piece, Run};
use crate::split::{PartId, PartNames};
use crate::{EngineError, Summary};

/// One file of a split output, as the manifest lists it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ManifestFile {
    pub path: String,
    pub rows: u64,
    pub bytes: u64,
    pub sha256: String,
    /// The hive partition (`{"region": "EU"}`), where the split has `by`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partition: Option<serde_json::Map<String, serde_json::Value>>,
    /// A burst's recipient (`burst.to`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
}

/// What a split run wrote, written last as `<name>.manifest.json`.
#[derive(Debug, Clone, serde::Serialize)]
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
    pub files: Vec<ManifestFile>,
}

impl Manifest {
    pub fn to_json(&self) -> Vec<u8> {
        let mut out = serde_json::to_vec_pretty(self).unwrap_or_default();
        out.push(b'\n');
        out
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
        let mut files: Vec<ManifestFile> = Vec::new();
        let written = self.receive_parts(store, names, &mut files).and_then(|()| {
            let manifest = self.manifest(files.clone());
            write_whole(store, &names.manifest, &manifest.to_json())?;
            Ok(manifest)
        });
        match written {
            Ok(manifest) => {
                let mut summary = self.summary();
                summary.bytes = manifest.bytes;
                Ok((summary, manifest))
            }
            Err(e) => {
                self.cancel();
                for f in &files {
                    store.remove(&f.path);
                }
                Err(e)
            }
        }
    }

    fn receive_parts(
        &mut self,
        store: &mut dyn PartStore,
        names: &PartNames,
        files: &mut Vec<ManifestFile>,
    ) -> Result<(), EngineError> {
        let mut current: Option<Writing> = None;
        let out_of_order = || EngineError::Internal("a split run's bytes came outside a part".into());
        while let Some(piece) = self.next_piece()? {
            match piece {
                Piece::PartStart(id) => current = Some(Writing::new(store, names, &id)?),
                Piece::Data(data) => current.as_mut().ok_or_else(out_of_order)?.write(&data)?,
                Piece::PartEnd { rows } => files.push(current.take().ok_or_else(out_of_order)?.commit(rows)?),
            }
        }
        match current {
            Some(_) => Err(out_of_order()),
            None => Ok(()),
        }
    }

    fn manifest(&self, files: Vec<ManifestFile>) -> Manifest {
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
            rows: files.iter().map(|f| f.rows).sum(),
            bytes: files.iter().map(|f| f.bytes).sum(),
            files,
        }
    }
}

/// Write one small file through the store, whole.
fn write_whole(store: &mut dyn PartStore, path: &str, data: &[u8]) -> Result<(), EngineError> {
    let fail = |e: std::io::Error| EngineError::Output(format!("cannot write {path}: {e}"));
    let mut out = store.create(path).map_err(fail)?;
    out.write_all(data).map_err(fail)?;
    out.commit().map_err(fail)
}
