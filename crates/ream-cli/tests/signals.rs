//! Ctrl-C stops the query and leaves no file; a reader of `-` that goes away is a clean
//! exit.

mod common;
use common::*;
use std::io::Read;
use std::process::Stdio;
use std::time::{Duration, Instant};

const ENDLESS: &str = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 200000000) SELECT i, 'row ' || i AS label FROM n";

fn db(dir: &std::path::Path) -> String {
    let path = dir.join("s.sqlite");
    rusqlite::Connection::open(&path).unwrap().execute_batch("CREATE TABLE t (x INTEGER);").unwrap();
    format!("sqlite:{}", path.display())
}

#[test]
fn ctrl_c_stops_the_run_and_leaves_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let src = db(dir.path());
    let out = dir.path().join("big.csv");
    let mut child = ream()
        .args(["run", "--source", &src, "--sql", ENDLESS, "-o", out.to_str().unwrap()])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the temporary file is being written (polling: CI machines may be slow)...
    let waiting = Instant::now();
    while !files_in(dir.path()).iter().any(|f| f.ends_with(".tmp")) {
        assert!(waiting.elapsed() < Duration::from_secs(20), "no temporary file: {:?}", files_in(dir.path()));
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(200));
    let sent = Instant::now();
    let ok = std::process::Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(ok.success());
    let status = child.wait().unwrap();
    let mut err = String::new();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    assert_eq!(status.code(), Some(130), "{err}");
    assert!(err.contains("interrupted; no output was kept"), "{err}");
    // ...and is gone: nothing at the target, no temporary.
    assert_eq!(files_in(dir.path()), vec!["s.sqlite"]);
    assert!(sent.elapsed() < Duration::from_secs(20), "took {:?} to stop", sent.elapsed());
}

#[test]
fn a_reader_that_goes_away_is_a_clean_exit() {
    let dir = tempfile::tempdir().unwrap();
    let src = db(dir.path());
    let mut child = ream()
        .args(["run", "--source", &src, "--sql", ENDLESS, "--format", "ndjson"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut head = vec![0u8; 4096];
    child.stdout.as_mut().unwrap().read_exact(&mut head).unwrap();
    assert!(head.starts_with(b"{\"i\":1,\"label\":\"row 1\"}\n"));
    drop(child.stdout.take());
    let status = child.wait().unwrap();
    let mut err = String::new();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    assert_eq!(status.code(), Some(0), "{err}");
    assert_eq!(err, "");
}
