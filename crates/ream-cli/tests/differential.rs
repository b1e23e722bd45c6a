//! A table with every type, NULLs, non-ASCII text, quotes and newlines, over a million
//! rows, exported through the ad-hoc CSV path: a standard CSV reader gets value for value
//! what it gets from `sqlite3 -csv -header` on the same table.
//!
//! Where the two print the same value differently, the test compares the values:
//! sqlite3 prints REAL with 15 significant digits (ream writes the shortest round-trip
//! form), DECIMAL(12,2) as the stored REAL with its float noise (`-9.99000000000001`;
//! ream writes the exact decimal at the column's scale, `-9.99`), BOOLEAN as
//! 0/1 (ream: false/true), DATETIME with a space (ream: ISO 8601 `T`), and BLOB as `""`
//! (it loses the bytes; ream writes hex, compared with sqlite's `hex()`).

mod common;
use common::*;
use std::process::Command;

const ROWS: i64 = 1_000_003;

fn make_table(db: &std::path::Path) {
    let c = rusqlite::Connection::open(db).unwrap();
    c.execute_batch(&format!(
        "PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF;
         CREATE TABLE everything (
           id INTEGER PRIMARY KEY, n INTEGER, r REAL, t TEXT, b BLOB, d DECIMAL(12,2),
           day DATE, at DATETIME, flag BOOLEAN, big BIGINT);
         WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < {ROWS})
         INSERT INTO everything
         SELECT i,
           CASE WHEN i % 11 = 0 THEN NULL ELSE (i * 7919) % 200003 - 100000 END,
           CASE WHEN i % 13 = 0 THEN NULL WHEN i % 5 = 0 THEN i / 3.0 ELSE i * 0.25 - 1000 END,
           CASE i % 9
             WHEN 0 THEN NULL
             WHEN 1 THEN 'plain ' || i
             WHEN 2 THEN 'comma, \"quoted\" ' || i
             WHEN 3 THEN 'line one' || char(10) || 'line two ' || i
             WHEN 4 THEN 'Zoë Ødegaard – Дмитрий – 北京 ' || i
             WHEN 5 THEN ''
             WHEN 6 THEN ' leading and trailing '
             WHEN 7 THEN 'semi;colon' || char(13) || char(10) || 'crlf'
             ELSE 'tab' || char(9) || 'bed' END,
           CASE WHEN i % 7 = 0 THEN NULL ELSE randomblob(1 + i % 5) END,
           CASE WHEN i % 17 = 0 THEN NULL ELSE (i % 100000) / 100.0 - 500 END,
           CASE WHEN i % 19 = 0 THEN NULL ELSE date('2000-01-01', '+' || (i % 9000) || ' days') END,
           CASE WHEN i % 23 = 0 THEN NULL ELSE datetime('2020-01-01 00:00:00', '+' || (i * 37) || ' seconds') END,
           CASE WHEN i % 29 = 0 THEN NULL ELSE i % 2 END,
           CASE WHEN i % 31 = 0 THEN NULL ELSE 9007199254740993 * (i % 3 - 1) END
         FROM s;"
    ))
    .unwrap();
}

fn num(s: &str) -> Option<f64> {
    if s.is_empty() {
        None
    } else {
        Some(s.parse::<f64>().unwrap_or_else(|_| panic!("not a number: {s:?}")))
    }
}

#[test]
fn csv_export_matches_sqlite3_value_for_value() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("every.sqlite");
    make_table(&db);
    let ours = dir.path().join("ours.csv");
    let r = run(&[
        "run",
        "--source",
        &format!("sqlite:{}", db.display()),
        "--table",
        "everything",
        "-o",
        ours.to_str().unwrap(),
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);

    let theirs = Command::new("sqlite3")
        .args(["-csv", "-header", db.to_str().unwrap(), "SELECT *, lower(hex(b)) AS b_hex FROM everything"])
        .output()
        .expect("sqlite3 is installed (CI installs it)");
    assert!(theirs.status.success());

    let mut a = csv::ReaderBuilder::new().from_path(&ours).unwrap();
    let mut b = csv::ReaderBuilder::new().from_reader(&theirs.stdout[..]);
    let ha: Vec<String> = a.headers().unwrap().iter().map(String::from).collect();
    let hb: Vec<String> = b.headers().unwrap().iter().map(String::from).collect();
    assert_eq!(ha, hb[..hb.len() - 1]);
    let mut rows = 0i64;
    for (ra, rb) in a.byte_records().zip(b.byte_records()) {
        let (ra, rb) = (ra.unwrap(), rb.unwrap());
        rows += 1;
        let f = |r: &csv::ByteRecord, i: usize| String::from_utf8(r[i].to_vec()).unwrap();
        let ctx = format!("row {rows}");
        // id, n, t, day, big: the same text.
        for i in [0, 1, 3, 6, 9] {
            assert_eq!(f(&ra, i), f(&rb, i), "{ctx} column {}", ha[i]);
        }
        // r: the same double (sqlite3 prints 15 significant digits).
        match (num(&f(&ra, 2)), num(&f(&rb, 2))) {
            (Some(x), Some(y)) => assert!((x - y).abs() <= 1e-14 * x.abs().max(y.abs()), "{ctx} r: {x} vs {y}"),
            (x, y) => assert_eq!(x, y, "{ctx} r"),
        }
        // b: hex of the bytes.
        assert_eq!(f(&ra, 4), f(&rb, 10), "{ctx} b");
        // d: the same decimal at the column's scale (sqlite3 prints the REAL's float noise,
        // e.g. -9.99000000000001; ream reads DECIMAL(12,2) as the exact -9.99).
        let cents = |x: Option<f64>| x.map(|x| (x * 100.0).round() as i64);
        assert_eq!(cents(num(&f(&ra, 5))), cents(num(&f(&rb, 5))), "{ctx} d");
        assert!(
            f(&ra, 5).is_empty() || f(&ra, 5).split('.').nth(1).map(str::len) == Some(2),
            "{ctx} d keeps its scale"
        );
        // at: the same instant, ISO 8601.
        assert_eq!(f(&ra, 7).replace('T', " "), f(&rb, 7), "{ctx} at");
        // flag: true/false for 1/0.
        let flag = match f(&ra, 8).as_str() {
            "true" => "1",
            "false" => "0",
            other => other,
        }
        .to_string();
        assert_eq!(flag, f(&rb, 8), "{ctx} flag");
    }
    assert_eq!(rows, ROWS);
    assert!(b.byte_records().next().is_none(), "sqlite3 has more rows");
}
