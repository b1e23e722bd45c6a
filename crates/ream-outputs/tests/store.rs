//! The output store on a directory and on a real S3 server (SeaweedFS): outputs appear
//! only when complete, read back whole and by range, and an output that is not
//! committed leaves nothing behind, no incomplete multipart upload included.

use std::io::Write;
use std::sync::{Arc, Mutex};

use ream_outputs::{Outputs, UploadRecord, PART_BYTES};

/// Bytes that differ at every offset, so a misplaced part shows.
fn data(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8 ^ (i / 251 % 7) as u8).collect()
}

fn read(outputs: &Outputs, name: &str, range: Option<std::ops::Range<u64>>) -> Vec<u8> {
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let mut rx = outputs.read(name, range);
    let mut out = Vec::new();
    rt.block_on(async {
        while let Some(chunk) = rx.recv().await {
            out.extend_from_slice(&chunk.unwrap());
        }
    });
    out
}

/// Write `bytes` to `name` in uneven writes, committing or not; the upload records seen.
fn write(outputs: &Outputs, name: &str, bytes: &[u8], commit: bool) -> Vec<Option<UploadRecord>> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let mut up = outputs.begin(name, Box::new(move |r| log.lock().unwrap().push(r.cloned()))).unwrap();
    for chunk in bytes.chunks(777_777) {
        up.write_all(chunk).unwrap();
    }
    match commit {
        true => assert_eq!(up.commit().unwrap(), bytes.len() as u64),
        false => drop(up),
    }
    let seen = seen.lock().unwrap().clone();
    seen
}

fn a_multi_part_output_reads_back_whole_and_by_range(outputs: &Outputs) {
    let bytes = data(2 * PART_BYTES + 12_345);
    write(outputs, "big/r1.csv", &bytes, true);
    assert_eq!(outputs.size("big/r1.csv").unwrap(), Some(bytes.len() as u64));
    assert_eq!(read(outputs, "big/r1.csv", None), bytes);
    let (a, b) = (PART_BYTES as u64 - 10, PART_BYTES as u64 + 10);
    assert_eq!(read(outputs, "big/r1.csv", Some(a..b)), bytes[a as usize..b as usize]);
    // An empty output is an output too.
    write(outputs, "empty.csv", b"", true);
    assert_eq!(outputs.size("empty.csv").unwrap(), Some(0));
    outputs.remove("big").unwrap();
    assert_eq!(outputs.size("big/r1.csv").unwrap(), None);
}

#[test]
fn a_directory_store_keeps_committed_outputs_only() {
    let dir = tempfile::tempdir().unwrap();
    let outputs = Outputs::open(&format!("file://{}", dir.path().display()), None).unwrap();
    a_multi_part_output_reads_back_whole_and_by_range(&outputs);
    write(&outputs, "r2.csv", &data(PART_BYTES + 1), false);
    assert_eq!(outputs.size("r2.csv").unwrap(), None);
    let mut left: Vec<String> = walk(dir.path());
    left.sort();
    assert_eq!(left, ["empty.csv"], "an uncommitted output left a file");
}

#[test]
fn the_staging_files_a_killed_writer_left_are_swept_and_live_ones_kept() {
    let dir = tempfile::tempdir().unwrap();
    let outputs = Outputs::open(&format!("file://{}", dir.path().display()), None).unwrap();
    write(&outputs, "done.csv", b"a,b\n", true);
    std::fs::create_dir(dir.path().join("run.parts")).unwrap();
    let old = std::time::SystemTime::now() - std::time::Duration::from_secs(7200);
    for name in ["dead.csv#3", "run.parts/part-00001.csv#12"] {
        let f = std::fs::File::create(dir.path().join(name)).unwrap();
        f.set_modified(old).unwrap();
    }
    std::fs::write(dir.path().join("live.csv#4"), b"still writing").unwrap();
    std::fs::write(dir.path().join("odd#name.csv"), b"not a staging file").unwrap();
    let hour = std::time::Duration::from_secs(3600);
    let mut swept: Vec<String> = (outputs.sweep_staging(hour).unwrap().iter())
        .map(|p| p.strip_prefix(dir.path()).unwrap().display().to_string())
        .collect();
    swept.sort();
    assert_eq!(swept, ["dead.csv#3", "run.parts/part-00001.csv#12"]);
    let mut left = walk(dir.path());
    left.sort();
    assert_eq!(left, ["done.csv", "live.csv#4", "odd#name.csv"]);
}

fn walk(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .flat_map(|e| match e.file_type().unwrap().is_dir() {
            true => walk(&e.path()),
            false => vec![e.file_name().to_string_lossy().into_owned()],
        })
        .collect()
}

/// An S3 store under a prefix of its own: the server, the prefix, the store.
fn s3_store() -> Option<(ream_testkit::S3, String, Outputs)> {
    let s3 = ream_testkit::s3()?;
    s3.set_env();
    let url = s3.url("outputs");
    let prefix = url.trim_start_matches(&format!("s3://{}/", s3.bucket)).to_string();
    let outputs = Outputs::open(&url, Some(&s3.endpoint)).unwrap();
    Some((s3, prefix, outputs))
}

#[test]
fn an_s3_store_streams_parts_and_aborts_what_is_not_committed() {
    let Some((s3, prefix, outputs)) = s3_store() else { return };
    a_multi_part_output_reads_back_whole_and_by_range(&outputs);
    // More than a part, not committed: the upload had an id, and it is aborted.
    let seen = write(&outputs, "r2.csv", &data(PART_BYTES + 1), false);
    assert!(matches!(seen.as_slice(), [Some(_), None]), "{seen:?}");
    assert_eq!(outputs.size("r2.csv").unwrap(), None);
    assert_eq!(s3.incomplete_uploads(&prefix), Vec::<String>::new());
    assert_eq!(outputs.list().unwrap(), [("empty.csv".to_string(), 0)]);
}

#[test]
fn an_upload_left_by_a_dead_writer_is_aborted_from_its_record() {
    let Some((s3, prefix, outputs)) = s3_store() else { return };
    let url = format!("s3://{}/{prefix}", s3.bucket);
    let seen = Arc::new(Mutex::new(None));
    let log = seen.clone();
    let mut up = outputs.begin("r3.csv", Box::new(move |r| *log.lock().unwrap() = r.cloned())).unwrap();
    up.write_all(&data(PART_BYTES + 5)).unwrap();
    // The writer dies here: its upload is neither completed nor aborted.
    std::mem::forget(up);
    let record = seen.lock().unwrap().clone().expect("the upload was recorded");
    assert_eq!(s3.incomplete_uploads(&prefix).len(), 1);
    // Another instance, with only the record, aborts it.
    let other = Outputs::open(&url, Some(&s3.endpoint)).unwrap();
    other.abort(&record).unwrap();
    assert_eq!(s3.incomplete_uploads(&prefix), Vec::<String>::new());
}

#[test]
fn a_store_url_of_another_kind_is_refused() {
    let e = Outputs::open("ftp://host/x", None).err().unwrap().to_string();
    assert!(e.contains("ftp://host/x") && e.contains("s3://"), "{e}");
}

#[test]
fn an_output_copied_to_another_store_arrives_whole_and_only_once_complete() {
    let dir = tempfile::tempdir().unwrap();
    let from = Outputs::open(&format!("file://{}", dir.path().join("a").display()), None).unwrap();
    let bytes = data(PART_BYTES * 2 + 17);
    write(&from, "r1.csv", &bytes, true);
    let to = Outputs::open(&format!("file://{}", dir.path().join("b").display()), None).unwrap();
    assert_eq!(from.copy_to("r1.csv", &to, "sales/2026-03-01.csv").unwrap(), bytes.len() as u64);
    assert_eq!(to.read_all("sales/2026-03-01.csv").unwrap(), bytes);
    // A missing source fails naming it, and leaves nothing behind.
    let e = from.copy_to("gone.csv", &to, "x.csv").unwrap_err().to_string();
    assert!(e.contains("gone.csv"), "{e}");
    assert_eq!(to.size("x.csv").unwrap(), None);
    if let Some((_s3, _prefix, s3)) = s3_store() {
        assert_eq!(from.copy_to("r1.csv", &s3, "copied/r1.csv").unwrap(), bytes.len() as u64);
        assert_eq!(s3.read_all("copied/r1.csv").unwrap(), bytes);
    }
}
