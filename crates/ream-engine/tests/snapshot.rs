//! A run reads one consistent snapshot: rows inserted, updated and deleted by another
//! connection while the run streams do not show up in its output.

use ream_core::CancelToken;
use ream_engine::{prepare, start, AdHoc, Format, Job, RunOptions};

const ROWS: i64 = 200_000;

#[test]
fn a_run_reads_the_table_as_it_was_when_it_started() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("live.sqlite");
    let writer = rusqlite::Connection::open(&path).unwrap();
    writer
        .execute_batch(&format!(
            "PRAGMA journal_mode = WAL;
             CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT);
             WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < {ROWS})
             INSERT INTO t SELECT i, 'v' || i FROM s;"
        ))
        .unwrap();
    let before: String = writer
        .query_row("SELECT group_concat(id || ',' || v, char(10)) FROM (SELECT * FROM t ORDER BY id)", [], |r| r.get(0))
        .unwrap();

    let mut opts = RunOptions::new(Format::Csv);
    opts.source = Some(format!("sqlite:{}", path.display()));
    opts.batch_size = Some(100);
    let job = Job::AdHoc(AdHoc { table: Some("t".into()), ..Default::default() });
    let mut run = start(prepare(job, &opts, CancelToken::new()).unwrap());
    let mut out = run.next_chunk().unwrap().unwrap();
    let read_so_far = run.progress().read_rows.load(std::sync::atomic::Ordering::Relaxed);
    assert!(read_so_far < 150_000, "the reader is already at row {read_so_far}: the changes would not be ahead of it");

    // Meanwhile, in another connection: changes far ahead of the reader.
    writer
        .execute_batch(
            "DELETE FROM t WHERE id BETWEEN 190000 AND 190100;
             UPDATE t SET v = 'changed' WHERE id BETWEEN 195000 AND 196000;
             INSERT INTO t SELECT id + 1000000, 'new' FROM t WHERE id <= 1000;",
        )
        .unwrap();
    let now: i64 = writer.query_row("SELECT count(*) FROM t", [], |r| r.get(0)).unwrap();
    assert_eq!(now, ROWS - 101 + 1000);

    while let Some(chunk) = run.next_chunk().unwrap() {
        out.extend_from_slice(&chunk);
    }
    let text = String::from_utf8(out).unwrap();
    assert_eq!(text, format!("id,v\n{before}\n"));
}
