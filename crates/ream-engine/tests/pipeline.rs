//! The runner: bounded queues, cancellation by dropping, interrupting the database.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use ream_core::CancelToken;
use ream_engine::{prepare, start, AdHoc, EngineError, Format, Job, RunOptions, CHUNK_BYTES};

/// Rows from a recursive CTE: far more than any test reads, produced lazily by SQLite.
const ENDLESS: &str = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 100000000) SELECT i, 'row ' || i AS label FROM n";

fn db() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.sqlite");
    rusqlite::Connection::open(&path).unwrap().execute_batch("CREATE TABLE t (x INTEGER);").unwrap();
    let url = format!("sqlite:{}", path.display());
    (dir, url)
}

fn adhoc_sql(url: &str, sql: &str, batch: usize) -> ream_engine::Run {
    let mut opts = RunOptions::new(Format::Csv);
    opts.source = Some(url.to_string());
    opts.batch_size = Some(batch);
    let job = Job::AdHoc(AdHoc { sql: Some(sql.to_string()), ..Default::default() });
    start(prepare(job, &opts, CancelToken::new()).unwrap())
}

#[test]
fn a_slow_consumer_holds_the_reader_a_few_batches_ahead() {
    let (_d, url) = db();
    let mut run = adhoc_sql(&url, ENDLESS, 100);
    let progress = run.progress();
    run.next_chunk().unwrap().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let read = progress.read_rows.load(Ordering::Relaxed);
    let rendered = progress.rows.load(Ordering::Relaxed);
    let bytes = progress.bytes.load(Ordering::Relaxed);
    // Between reader and renderer: 2 queued batches and 1 being rendered.
    assert!(read - rendered <= 3 * 100, "read {read}, rendered {rendered}");
    // Between renderer and consumer: 4 queued chunks plus the one taken, each at most
    // CHUNK_BYTES plus one batch. Without backpressure the reader would be millions of
    // rows ahead by now.
    assert!(bytes <= 5 * (CHUNK_BYTES as u64 + 4096), "{bytes} bytes produced ahead of a stalled consumer");
    assert!(read >= 100);
}

#[test]
fn dropping_a_run_stops_the_query() {
    let (_d, url) = db();
    let mut run = adhoc_sql(&url, ENDLESS, 1000);
    let progress = run.progress();
    let cancel = run.cancel_token();
    for _ in 0..3 {
        run.next_chunk().unwrap().unwrap();
    }
    drop(run);
    assert!(cancel.is_cancelled());
    std::thread::sleep(Duration::from_millis(300));
    let a = progress.read_rows.load(Ordering::Relaxed);
    std::thread::sleep(Duration::from_millis(300));
    let b = progress.read_rows.load(Ordering::Relaxed);
    assert_eq!(a, b, "the source kept reading after the run was dropped");
}

#[test]
fn cancelling_interrupts_a_statement_blocked_in_the_database() {
    let (_d, url) = db();
    // ORDER BY over 100M generated rows: SQLite sorts for minutes before the first row.
    // Its columns have no declared types, so `prepare` itself waits for the first batch:
    // the cancel arrives while the statement is inside the sort, as Ctrl-C would.
    let mut opts = RunOptions::new(Format::Csv);
    opts.source = Some(url.clone());
    let job =
        Job::AdHoc(AdHoc { sql: Some(format!("SELECT * FROM ({ENDLESS}) ORDER BY i DESC")), ..Default::default() });
    let cancel = CancelToken::new();
    let c = cancel.clone();
    let canceller = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        c.cancel();
        Instant::now()
    });
    let result = prepare(job, &opts, cancel).and_then(|p| start(p).next_chunk());
    let done = Instant::now();
    let cancelled_at = canceller.join().unwrap();
    assert!(matches!(result, Err(EngineError::Cancelled)), "{:?}", result.err());
    // Generous: without the interrupt the sort would run for minutes.
    assert!(done.duration_since(cancelled_at) < Duration::from_secs(20), "cancel took {:?}", done - cancelled_at);
}

#[test]
fn a_failed_run_leaves_no_file_and_a_completed_run_renames_into_place() {
    let (d, url) = db();
    let target = d.path().join("out.csv");
    // A value that does not fit its declared type fails mid-stream (after some chunks).
    let sql = "SELECT i, CASE WHEN i = 50000 THEN 'x' ELSE i END AS v FROM (WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 60000) SELECT i FROM n)";
    let err = adhoc_sql(&url, sql, 1000).write_file(&target).unwrap_err();
    assert!(err.to_string().contains("column `v` (int) at row 50000: text `x` in an integer column"), "{err}");
    let names: Vec<_> = std::fs::read_dir(d.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names, vec!["p.sqlite"]);
    let ok = adhoc_sql(&url, "SELECT 1 AS a", 10).write_file(&target).unwrap();
    assert_eq!(ok.rows, 1);
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "a\n1\n");
}
