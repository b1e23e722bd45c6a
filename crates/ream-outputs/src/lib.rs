//! ream-outputs: where async runs keep their outputs, a directory (`file:///path`) or an
//! S3-compatible bucket (`s3://bucket/prefix`), both through `object_store`. An output is
//! written through an [`Upload`], a blocking `Write` that sends fixed-size parts as it
//! goes (constant memory: one part) and makes the object visible only at
//! [`Upload::commit`]; dropped uncommitted, it aborts the upload, so no incomplete
//! multipart upload is left behind. The store runs its own small async runtime, so the
//! threads that write runs stay plain blocking threads.
//!
//! ```
//! use std::io::Write;
//! use ream_outputs::Outputs;
//!
//! let dir = tempfile::tempdir().unwrap();
//! let outputs = Outputs::open(&format!("file://{}", dir.path().display()), None).unwrap();
//! let mut up = outputs.begin("r1.csv", Box::new(|_| {})).unwrap();
//! up.write_all(b"id,total\n1,9.50\n").unwrap();
//! assert_eq!(outputs.size("r1.csv").unwrap(), None, "visible before it is complete");
//! assert_eq!(up.commit().unwrap(), 16);
//! assert_eq!(outputs.read_all("r1.csv").unwrap(), b"id,total\n1,9.50\n");
//! ```

use std::io::{self, Write};
use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::StreamExt;
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path;
use object_store::{GetOptions, GetRange, MultipartUpload, ObjectStore, ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};

/// What went wrong with the output store. Messages name the store and the object,
/// never credentials.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error("output store URL `{0}`: use file:///DIR or s3://BUCKET/PREFIX")]
    Url(String),
    #[error("output store {store}: {reason}")]
    Open { store: String, reason: String },
    #[error("output store {store}, {name}: {source}")]
    Object {
        store: String,
        name: String,
        #[source]
        source: object_store::Error,
    },
    #[error("output store {store}, writing {name}: {source}")]
    Write {
        store: String,
        name: String,
        #[source]
        source: io::Error,
    },
}

/// Parts are this size, the S3 minimum for all but the last: an upload holds one.
pub const PART_BYTES: usize = 5 << 20;

/// A multipart upload in progress, as recorded in the control store so another
/// instance can abort it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadRecord {
    pub name: String,
    pub id: String,
}

/// Told the upload's record once it has one, and None when it is complete or aborted.
pub type OnUpload = Box<dyn Fn(Option<&UploadRecord>) + Send>;

/// The output store.
pub struct Outputs(Arc<Shared>);

struct Shared {
    store: Arc<dyn ObjectStore>,
    /// S3's multipart API, whose upload ids can be recorded and aborted from anywhere.
    multipart: Option<Arc<dyn MultipartStore>>,
    /// Always Some until dropped.
    runtime: Option<tokio::runtime::Runtime>,
    display: String,
    /// A `file://` store's directory.
    local_root: Option<std::path::PathBuf>,
}

impl Drop for Shared {
    /// Without waiting: the store may be dropped on an async thread.
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

impl Shared {
    fn err(&self, name: &str, source: object_store::Error) -> OutputError {
        OutputError::Object { store: self.display.clone(), name: name.into(), source }
    }

    /// Run `f` on the store's runtime and wait for it, from a blocking thread or an async
    /// task alike (never entering a second runtime on the caller's thread).
    fn block<T: Send + 'static>(&self, f: impl std::future::Future<Output = T> + Send + 'static) -> T {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.spawn(async move {
            let _ = tx.send(f.await);
        });
        let wait = move || rx.recv().expect("an output store task panicked");
        match tokio::runtime::Handle::try_current() {
            // On an async worker: let its other tasks move to another worker meanwhile.
            Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(wait)
            }
            _ => wait(),
        }
    }

    fn spawn(&self, f: impl std::future::Future<Output = ()> + Send + 'static) {
        if let Some(rt) = &self.runtime {
            rt.spawn(f);
        }
    }
}

impl Outputs {
    /// `file:///DIR` (created if missing) or `s3://BUCKET[/PREFIX]`, with `endpoint` for
    /// an S3-compatible server (`http://` allowed) and credentials from `AWS_*`.
    pub fn open(url: &str, endpoint: Option<&str>) -> Result<Outputs, OutputError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("ream-outputs")
            .enable_all()
            .build()
            .map_err(|e| OutputError::Open { store: ream_core::redact(url), reason: e.to_string() })?;
        let open = |reason: String| OutputError::Open { store: ream_core::redact(url), reason };
        let local_root = url.strip_prefix("file://").map(std::path::PathBuf::from);
        let (store, multipart): (Arc<dyn ObjectStore>, Option<Arc<dyn MultipartStore>>) = if let Some(dir) =
            url.strip_prefix("file://")
        {
            std::fs::create_dir_all(dir).map_err(|e| open(e.to_string()))?;
            let local = object_store::local::LocalFileSystem::new_with_prefix(dir).map_err(|e| open(e.to_string()))?;
            (Arc::new(local), None)
        } else if let Some(rest) = url.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(OutputError::Url(ream_core::redact(url)));
            }
            let mut b = object_store::aws::AmazonS3Builder::from_env().with_bucket_name(bucket);
            if std::env::var_os("AWS_REGION").is_none() && std::env::var_os("AWS_DEFAULT_REGION").is_none() {
                b = b.with_region("us-east-1");
            }
            if let Some(e) = endpoint {
                b = b.with_endpoint(e).with_allow_http(e.starts_with("http://"));
            }
            let s3 = b.build().map_err(|e| open(e.to_string()))?;
            let s3 = Arc::new(object_store::prefix::PrefixStore::new(s3, prefix.trim_matches('/')));
            (s3.clone(), Some(s3))
        } else {
            return Err(OutputError::Url(ream_core::redact(url)));
        };
        let display = ream_core::redact(url);
        Ok(Outputs(Arc::new(Shared { store, multipart, runtime: Some(runtime), display, local_root })))
    }

    /// A `file://` store: remove the staging files (`NAME#N`, where an output is written
    /// before it appears under its name) untouched for `older_than`: what a process
    /// killed mid-write left. A writer touches its file with every part, so a live one is
    /// never older than a few seconds. Returns the files removed; an S3 store has none
    /// (an upload not completed is aborted by whoever runs its run again).
    pub fn sweep_staging(&self, older_than: std::time::Duration) -> Result<Vec<std::path::PathBuf>, OutputError> {
        let Some(root) = &self.0.local_root else { return Ok(Vec::new()) };
        let fail = |e: std::io::Error| OutputError::Open { store: self.0.display.clone(), reason: e.to_string() };
        let mut removed = Vec::new();
        let mut dirs = vec![root.clone()];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).map_err(fail)? {
                let entry = entry.map_err(fail)?;
                let kind = entry.file_type().map_err(fail)?;
                let path = entry.path();
                if kind.is_dir() {
                    dirs.push(path);
                    continue;
                }
                let name = entry.file_name().to_string_lossy().into_owned();
                let staging =
                    name.rsplit_once('#').is_some_and(|(_, n)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
                let age = entry.metadata().and_then(|m| m.modified()).ok().and_then(|t| t.elapsed().ok());
                if staging && age.is_some_and(|a| a >= older_than) && std::fs::remove_file(&path).is_ok() {
                    removed.push(path);
                }
            }
        }
        Ok(removed)
    }

    /// The store's URL.
    pub fn describe(&self) -> &str {
        &self.0.display
    }

    /// Start writing output `name`.
    pub fn begin(&self, name: &str, on_upload: OnUpload) -> Result<Upload, OutputError> {
        Ok(Upload {
            outputs: self.0.clone(),
            path: Path::from(name),
            buf: Vec::new(),
            target: None,
            on_upload,
            bytes: 0,
        })
    }

    /// Copy output `name` to `dest` as `dest_name`, streamed (one part in memory), made
    /// visible there only once complete. Returns the bytes copied. Blocking: call it off
    /// the async threads.
    pub fn copy_to(&self, name: &str, dest: &Outputs, dest_name: &str) -> Result<u64, OutputError> {
        let write = |source| OutputError::Write { store: dest.0.display.clone(), name: dest_name.to_string(), source };
        let mut up = dest.begin(dest_name, Box::new(|_| {}))?;
        let mut chunks = self.read(name, None);
        while let Some(chunk) = chunks.blocking_recv() {
            up.write_all(&chunk?).map_err(write)?;
        }
        up.commit().map_err(write)
    }

    /// Abort an upload another instance left (its record from the control store).
    pub fn abort(&self, record: &UploadRecord) -> Result<(), OutputError> {
        let Some(mp) = self.0.multipart.clone() else { return Ok(()) };
        let (path, id) = (Path::from(record.name.as_str()), record.id.clone());
        self.0.block(async move { mp.abort_multipart(&path, &id).await }).map_err(|e| self.0.err(&record.name, e))
    }

    /// The size of output `name`, or None if there is none.
    pub fn size(&self, name: &str) -> Result<Option<u64>, OutputError> {
        let (store, path) = (self.0.store.clone(), Path::from(name));
        match self.0.block(async move { store.head(&path).await }) {
            Ok(meta) => Ok(Some(meta.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.0.err(name, e)),
        }
    }

    /// The whole of a small output (a manifest).
    pub fn read_all(&self, name: &str) -> Result<Vec<u8>, OutputError> {
        let (store, path) = (self.0.store.clone(), Path::from(name));
        self.0
            .block(async move { store.get(&path).await?.bytes().await })
            .map(|b| b.to_vec())
            .map_err(|e| self.0.err(name, e))
    }

    /// Stream `range` of output `name` (the whole when None) as chunks, read on the
    /// store's runtime; a read error ends the stream with that error.
    pub fn read(
        &self,
        name: &str,
        range: Option<Range<u64>>,
    ) -> tokio::sync::mpsc::Receiver<Result<Bytes, OutputError>> {
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let (store, path, label, display) =
            (self.0.store.clone(), Path::from(name), name.to_string(), self.0.display.clone());
        self.0.spawn(async move {
            let err = |source| OutputError::Object { store: display.clone(), name: label.clone(), source };
            let opts = GetOptions { range: range.map(GetRange::Bounded), ..GetOptions::default() };
            let mut stream = match store.get_opts(&path, opts).await {
                Ok(r) => r.into_stream(),
                Err(e) => {
                    let _ = tx.send(Err(err(e))).await;
                    return;
                }
            };
            while let Some(chunk) = stream.next().await {
                if tx.send(chunk.map_err(err)).await.is_err() {
                    return;
                }
            }
        });
        rx
    }

    /// Remove output `name`, or every object under it (a split run's directory).
    pub fn remove(&self, name: &str) -> Result<(), OutputError> {
        let (store, path) = (self.0.store.clone(), Path::from(name));
        self.0
            .block(async move {
                let mut under: Vec<Path> = Vec::new();
                let mut listed = store.list(Some(&path));
                while let Some(meta) = listed.next().await {
                    under.push(meta?.location);
                }
                if !under.is_empty() {
                    // A directory of objects (its own name is no object).
                    for p in under {
                        store.delete(&p).await?;
                    }
                    return Ok(());
                }
                match store.delete(&path).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                    Err(e) => Err(e),
                }
            })
            .map_err(|e| self.0.err(name, e))
    }

    /// Every object's name and size (for tests and checks).
    pub fn list(&self) -> Result<Vec<(String, u64)>, OutputError> {
        let store = self.0.store.clone();
        self.0
            .block(async move {
                let mut out = Vec::new();
                let mut listed = store.list(None);
                while let Some(meta) = listed.next().await {
                    let meta = meta?;
                    out.push((meta.location.to_string(), meta.size));
                }
                out.sort();
                Ok(out)
            })
            .map_err(|e| self.0.err("/", e))
    }
}

/// Where an upload's parts go once it has more than one.
enum Target {
    /// S3: the multipart API, its id recorded.
    Recorded { mp: Arc<dyn MultipartStore>, record: UploadRecord, parts: Vec<PartId> },
    /// Any other store: its own multipart upload (a directory's writes a staging file
    /// and renames it into place at the end).
    Plain(Box<dyn MultipartUpload>),
}

/// An output being written. Parts of [`PART_BYTES`] leave as they fill; an output
/// smaller than one part is one plain put at [`Upload::commit`].
pub struct Upload {
    outputs: Arc<Shared>,
    path: Path,
    buf: Vec<u8>,
    target: Option<Target>,
    on_upload: OnUpload,
    bytes: u64,
}

impl Upload {
    fn io(&self, e: object_store::Error) -> io::Error {
        io::Error::other(self.outputs.err(self.path.as_ref(), e))
    }

    /// Send the buffered part.
    fn send_part(&mut self) -> io::Result<()> {
        let data = PutPayload::from(std::mem::take(&mut self.buf));
        let path = self.path.clone();
        if self.target.is_none() {
            let target = match self.outputs.multipart.clone() {
                Some(mp) => {
                    let p = path.clone();
                    let id = self.outputs.block({
                        let mp = mp.clone();
                        async move { mp.create_multipart(&p).await }
                    });
                    let record = UploadRecord { name: path.to_string(), id: id.map_err(|e| self.io(e))? };
                    (self.on_upload)(Some(&record));
                    Target::Recorded { mp, record, parts: Vec::new() }
                }
                None => {
                    let store = self.outputs.store.clone();
                    let p = path.clone();
                    Target::Plain(
                        self.outputs.block(async move { store.put_multipart(&p).await }).map_err(|e| self.io(e))?,
                    )
                }
            };
            self.target = Some(target);
        }
        let result = match self.target.as_mut() {
            Some(Target::Recorded { mp, record, parts }) => {
                let (mp, id, n) = (mp.clone(), record.id.clone(), parts.len());
                let part = self.outputs.block(async move { mp.put_part(&path, &id, n, data).await });
                part.map(|p| parts.push(p))
            }
            Some(Target::Plain(up)) => {
                let fut = up.put_part(data);
                self.outputs.block(fut)
            }
            None => Ok(()),
        };
        result.map_err(|e| self.io(e))
    }

    /// Make the output visible under its name; returns its bytes.
    pub fn commit(mut self) -> io::Result<u64> {
        let path = self.path.clone();
        let result = match self.target.is_some() {
            false => {
                let (store, data) = (self.outputs.store.clone(), PutPayload::from(std::mem::take(&mut self.buf)));
                self.outputs.block(async move { store.put(&path, data).await.map(|_| ()) })
            }
            true => {
                if !self.buf.is_empty() {
                    self.send_part()?;
                }
                match self.target.take() {
                    Some(Target::Recorded { mp, record, parts }) => {
                        let done = self
                            .outputs
                            .block(async move { mp.complete_multipart(&path, &record.id, parts).await.map(|_| ()) });
                        (self.on_upload)(None);
                        done
                    }
                    Some(Target::Plain(mut up)) => self.outputs.block(async move { up.complete().await.map(|_| ()) }),
                    None => Ok(()),
                }
            }
        };
        result.map_err(|e| self.io(e))?;
        Ok(self.bytes)
    }
}

impl Write for Upload {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let room = PART_BYTES - self.buf.len();
        let n = data.len().min(room);
        self.buf.extend_from_slice(&data[..n]);
        self.bytes += n as u64;
        if self.buf.len() == PART_BYTES {
            self.send_part()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for Upload {
    /// Not committed: abort, so nothing of it stays in the store.
    fn drop(&mut self) {
        let path = self.path.clone();
        match self.target.take() {
            Some(Target::Recorded { mp, record, .. }) => {
                let aborted = self.outputs.block(async move { mp.abort_multipart(&path, &record.id).await });
                if aborted.is_ok() {
                    (self.on_upload)(None);
                }
            }
            Some(Target::Plain(mut up)) => {
                let _ = self.outputs.block(async move { up.abort().await });
            }
            None => {}
        }
    }
}
