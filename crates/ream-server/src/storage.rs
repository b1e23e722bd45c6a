//! Where async runs keep their outputs. A small trait, so object storage can come later;
//! the local filesystem for now.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// An output being written: `commit` makes it visible under its name in one step;
/// dropping it without `commit` leaves nothing behind.
pub trait PendingOutput: Write + Send {
    /// Returns the size in bytes.
    fn commit(self: Box<Self>) -> io::Result<u64>;
}

pub trait OutputStore: Send + Sync {
    fn begin(&self, name: &str) -> io::Result<Box<dyn PendingOutput>>;
    /// A local file holding the output, for ranged reads.
    fn local_path(&self, name: &str) -> Option<PathBuf>;
    fn remove(&self, name: &str);
    /// Every stored output: (name, bytes, when it was written).
    fn list(&self) -> Vec<(String, u64, SystemTime)>;
}

/// Outputs as files in one directory, written under a hidden temporary name and renamed
/// into place when complete.
pub struct LocalStore {
    dir: PathBuf,
}

impl LocalStore {
    pub fn new(dir: impl Into<PathBuf>) -> io::Result<LocalStore> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir)?;
        Ok(LocalStore { dir })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// An output file of the store: the one atomic writer the CLI uses too.
struct LocalPending(ream_engine::OutputFile);

impl Write for LocalPending {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

impl PendingOutput for LocalPending {
    fn commit(self: Box<Self>) -> io::Result<u64> {
        self.0.commit()
    }
}

impl OutputStore for LocalStore {
    fn begin(&self, name: &str) -> io::Result<Box<dyn PendingOutput>> {
        let dest = self.dir.join(name);
        Ok(Box::new(LocalPending(ream_engine::OutputFile::create(&dest)?)))
    }

    fn local_path(&self, name: &str) -> Option<PathBuf> {
        let p = self.dir.join(name);
        p.is_file().then_some(p)
    }

    fn remove(&self, name: &str) {
        let _ = std::fs::remove_file(self.dir.join(name));
    }

    fn list(&self) -> Vec<(String, u64, SystemTime)> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else { return Vec::new() };
        entries
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                let meta = e.metadata().ok()?;
                let modified = meta.modified().ok()?;
                (!name.starts_with('.') && meta.is_file()).then_some((name, meta.len(), modified))
            })
            .collect()
    }
}

/// How long and how much finished outputs are kept.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    pub max_age: Duration,
    pub max_bytes: u64,
}

/// Remove outputs older than the age limit, then the oldest until the rest fit the byte
/// limit. Returns the names removed.
pub fn apply_retention(store: &dyn OutputStore, retention: Retention) -> Vec<String> {
    let now = SystemTime::now();
    let mut outputs = store.list();
    outputs.sort_by_key(|o| o.2);
    let mut total: u64 = outputs.iter().map(|o| o.1).sum();
    let mut removed = Vec::new();
    for (name, bytes, at) in outputs {
        let old = now.duration_since(at).unwrap_or_default() > retention.max_age;
        if old || total > retention.max_bytes {
            store.remove(&name);
            total -= bytes;
            removed.push(name);
        }
    }
    removed
}
