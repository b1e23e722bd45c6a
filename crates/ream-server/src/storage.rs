//! Where async runs keep their outputs. A small trait, so object storage can come later;
//! the local filesystem for now. An output is a file, or (a split run) a directory of
//! parts and their manifest, listed, kept and removed as one.

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
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent)?;
        }
        Ok(Box::new(LocalPending(ream_engine::OutputFile::create(&dest)?)))
    }

    fn local_path(&self, name: &str) -> Option<PathBuf> {
        let p = self.dir.join(name);
        p.is_file().then_some(p)
    }

    fn remove(&self, name: &str) {
        let path = self.dir.join(name);
        match std::fs::symlink_metadata(&path) {
            Ok(m) if m.is_dir() => {
                let _ = std::fs::remove_dir_all(&path);
            }
            _ => {
                let _ = std::fs::remove_file(&path);
            }
        }
    }

    fn list(&self) -> Vec<(String, u64, SystemTime)> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else { return Vec::new() };
        entries
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                let meta = e.metadata().ok()?;
                let modified = meta.modified().ok()?;
                let bytes = if meta.is_dir() { dir_bytes(&e.path()) } else { meta.len() };
                (!name.starts_with('.') && (meta.is_file() || meta.is_dir())).then_some((name, bytes, modified))
            })
            .collect()
    }
}

/// The bytes of the files under `dir`.
fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// A split run's parts, in the store under the output's name (a directory).
pub struct StoreParts<'a> {
    store: &'a dyn OutputStore,
    prefix: String,
}

impl<'a> StoreParts<'a> {
    pub fn new(store: &'a dyn OutputStore, name: &str) -> StoreParts<'a> {
        StoreParts { store, prefix: format!("{name}/") }
    }
}

impl ream_engine::PendingPart for Box<dyn PendingOutput> {
    fn commit(self: Box<Self>) -> io::Result<()> {
        (*self).commit().map(|_| ())
    }
}

impl ream_engine::PartStore for StoreParts<'_> {
    fn create(&mut self, path: &str) -> io::Result<Box<dyn ream_engine::PendingPart>> {
        Ok(Box::new(self.store.begin(&format!("{}{path}", self.prefix))?))
    }

    fn remove(&mut self, path: &str) {
        self.store.remove(&format!("{}{path}", self.prefix));
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

#[cfg(test)]
mod tests {
    use super::*;
    use ream_engine::PartStore;

    #[test]
    fn a_split_runs_directory_is_one_output_kept_and_removed_whole() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::new(dir.path()).unwrap();
        let mut parts = StoreParts::new(&store, "r1.parts");
        for (path, data) in
            [("part/k=a/part-00001.csv", "aaaa"), ("part/k=b/part-00001.csv", "bb"), ("manifest.json", "{}")]
        {
            let mut p = parts.create(path).unwrap();
            p.write_all(data.as_bytes()).unwrap();
            p.commit().unwrap();
        }
        let mut single = store.begin("r2.csv").unwrap();
        single.write_all(b"0123456789").unwrap();
        single.commit().unwrap();
        let mut listed: Vec<(String, u64)> = store.list().into_iter().map(|(n, b, _)| (n, b)).collect();
        listed.sort();
        assert_eq!(listed, [("r1.parts".to_string(), 8), ("r2.csv".to_string(), 10)]);
        assert!(store.local_path("r1.parts/manifest.json").is_some());

        // Under the limits both stay; past the age limit each goes, the split one whole.
        let keep = Retention { max_age: Duration::from_secs(3600), max_bytes: 18 };
        assert_eq!(apply_retention(&store, keep), Vec::<String>::new());
        let mut removed = apply_retention(&store, Retention { max_age: Duration::ZERO, max_bytes: 18 });
        removed.sort();
        assert_eq!(removed, ["r1.parts", "r2.csv"]);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "something of r1.parts was left");
    }
}
