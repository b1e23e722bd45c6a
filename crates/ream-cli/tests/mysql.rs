//! MariaDB/MySQL end to end, against the machine's real server: types against the
//! `mariadb` client's own output, a consistent snapshot while others write, resume after
//! killed connections, cancel that stops the server's query, and the example specs giving
//! the same report as on SQLite.

mod common;
use common::my::MyDb;
use common::*;

use std::io::Read;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const TYPES: &str = r#"
CREATE TABLE t (
  id BIGINT PRIMARY KEY, b TINYINT(1), ti TINYINT, si SMALLINT, i INT, bi BIGINT, u BIGINT UNSIGNED,
  d DECIMAL(12,2), dz DECIMAL(30,10), f FLOAT, g DOUBLE, s VARCHAR(40), c CHAR(5), tx TEXT,
  dt DATE, ts DATETIME(6), tz TIMESTAMP(3) NULL, y YEAR, j JSON, bl BLOB, e ENUM('sad','ok','happy'));
INSERT INTO t VALUES
 (1, 1, -128, -32768, -2147483648, -9223372036854775808, 18446744073709551615, -12.34, 12345678901234567890.0123456789,
  1.1, 0.1, 'comma, "quote" and ''apostrophe''', 'ab', 'Ωμέγα Дмитрий François', '2024-02-29',
  '2024-01-02 03:04:05.123456', '2024-06-30 12:00:00.500', 2024, '{"a": [1, 2]}', X'00ff10', 'happy'),
 (2, 0, 127, 32767, 2147483647, 9223372036854775807, 0, 9999999999.99, -0.0000000001, -3.4e38, -1.7976931348623157e308,
  '', 'x', '<script>alert(1)</script>', '1000-01-01', '1970-01-01 00:00:00', '1970-01-02 00:00:00', 1901,
  '[]', X'', 'sad'),
 (3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
INSERT INTO t (id, i, s, d) SELECT seq, seq, CONCAT('row ', seq), seq / 100 FROM seq_4_to_2000;
"#;

/// The `mariadb --batch` output: tab-separated, `\t` `\n` `\\` `\0` escaped, NULL as NULL.
fn parse_batch(bytes: &[u8]) -> (Vec<String>, Vec<Vec<Option<String>>>) {
    let text = String::from_utf8(bytes.to_vec()).unwrap();
    let mut lines = text.lines();
    let header = lines.next().unwrap().split('\t').map(String::from).collect();
    let unescape = |f: &str| -> Option<String> {
        if f == "NULL" {
            return None;
        }
        let mut out = String::new();
        let mut it = f.chars();
        while let Some(c) = it.next() {
            if c != '\\' {
                out.push(c);
                continue;
            }
            match it.next() {
                Some('t') => out.push('\t'),
                Some('n') => out.push('\n'),
                Some('0') => out.push('\0'),
                Some(x) => out.push(x),
                None => {}
            }
        }
        Some(out)
    };
    let rows = lines.map(|l| l.split('\t').map(unescape).collect()).collect();
    (header, rows)
}

fn parse_csv(bytes: &[u8]) -> (Vec<String>, Vec<Vec<String>>) {
    let mut r = csv::ReaderBuilder::new().from_reader(bytes);
    let header = r.headers().unwrap().iter().map(String::from).collect();
    let rows = r.records().map(|r| r.unwrap().iter().map(String::from).collect()).collect();
    (header, rows)
}

/// The client and arrow print some types differently; compare the values.
fn same_value(column: &str, ours: &str, theirs: Option<&str>) -> bool {
    let Some(theirs) = theirs else { return ours.is_empty() };
    if ours == theirs {
        return true;
    }
    match column {
        "b" => (ours == "true" && theirs == "1") || (ours == "false" && theirs == "0"),
        "f" | "g" => ours.parse::<f64>().ok() == theirs.parse::<f64>().ok(),
        // Arrow writes `T` (and `Z` with a zone) and drops zero fractions; the client pads them.
        "ts" | "tz" => {
            let norm = |s: &str| {
                let s = s.replace('T', " ").trim_end_matches('Z').to_string();
                if s.contains('.') {
                    s.trim_end_matches('0').trim_end_matches('.').to_string()
                } else {
                    s
                }
            };
            norm(ours) == norm(theirs)
        }
        "bl" => theirs.is_empty() && ours.is_empty(),
        _ => false,
    }
}

#[test]
fn every_type_reads_as_the_mariadb_client_prints_it() {
    let Some(db) = MyDb::create("types") else { return };
    db.sql(TYPES);
    // Binary as hex, and TIMESTAMP in UTC, to compare like with like.
    let theirs = db.sql(
        "SET time_zone = '+00:00'; SELECT id, b, ti, si, i, bi, u, d, dz, f, g, s, c, tx, dt, ts, tz, y, j, \
         LOWER(HEX(bl)) AS bl, e FROM t ORDER BY id",
    );
    let (their_header, their_rows) = parse_batch(&theirs);
    let mut first: Option<Vec<u8>> = None;
    for strategy in ["auto", "keyset", "cursor", "offset"] {
        for batch in ["1", "7", "1000"] {
            let r = run(&[
                "run",
                "--source",
                &db.url,
                "--table",
                "t",
                "-f",
                "csv",
                "--batch-size",
                batch,
                "--strategy",
                strategy,
            ]);
            assert_eq!(r.code, 0, "{}", r.stderr);
            match &first {
                None => first = Some(r.stdout.clone()),
                Some(f) => assert!(f == &r.stdout, "{strategy} with batch size {batch} changed the output"),
            }
        }
    }
    let (header, rows) = parse_csv(first.as_ref().unwrap());
    assert_eq!(header, their_header);
    assert_eq!(rows.len(), their_rows.len());
    let mut mismatches = Vec::new();
    for (ours, theirs) in rows.iter().zip(&their_rows) {
        for ((col, o), t) in header.iter().zip(ours).zip(theirs) {
            if !same_value(col, o, t.as_deref()) {
                mismatches.push(format!("id {}: {col}: ours {o:?}, mariadb {t:?}", ours[0]));
            }
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}

fn numbers(db: &MyDb, n: u64) {
    db.sql(&format!(
        "CREATE TABLE nums (id BIGINT PRIMARY KEY, v BIGINT NOT NULL, label VARCHAR(40));
         INSERT INTO nums SELECT seq, seq * 7 % 1000, CONCAT('n', seq) FROM seq_1_to_{n}; ANALYZE TABLE nums;"
    ));
}

fn table_csv(db: &MyDb) -> String {
    let (_, rows) = parse_batch(&db.sql("SELECT id, v, label FROM nums ORDER BY id"));
    let mut out = String::from("id,v,label\n");
    for r in rows {
        out.push_str(&r.iter().map(|v| v.clone().unwrap_or_default()).collect::<Vec<_>>().join(","));
        out.push('\n');
    }
    out
}

#[test]
fn a_run_reads_one_snapshot_while_others_write() {
    let Some(db) = MyDb::create("snapshot") else { return };
    numbers(&db, 1_000_000);
    let mut before = String::new();
    for strategy in ["keyset", "cursor"] {
        before = table_csv(&db);
        let (child, mut out, first) =
            start(&["run", "--source", &db.url, "--table", "nums", "--strategy", strategy, "--batch-size", "500"]);
        let done = Arc::new(AtomicBool::new(false));
        let commits = Arc::new(AtomicUsize::new(0));
        let writer = {
            let (done, commits, name) = (done.clone(), commits.clone(), db.name.clone());
            std::thread::spawn(move || {
                let mut k = 0u64;
                while !done.load(Ordering::Relaxed) {
                    k += 1;
                    let sql = format!(
                        "UPDATE nums SET v = v + 1, label = 'changed' WHERE id % 1000 = {m}; \
                         DELETE FROM nums WHERE id = {d}; INSERT IGNORE INTO nums VALUES ({i}, 0, 'new');",
                        m = k % 1000,
                        d = (k * 7919) % 1_000_000 + 1,
                        i = 2_000_000 + k
                    );
                    let ok = std::process::Command::new("mariadb")
                        .args(["-h127.0.0.1", "-uroot", "-D", &name, "-e", &sql])
                        .status()
                        .unwrap();
                    assert!(ok.success());
                    commits.fetch_add(1, Ordering::Relaxed);
                }
            })
        };
        // ream's output fills the pipe, so it waits mid-run with its snapshot open until
        // the writers have committed: the run cannot end first, however fast it is.
        wait_for(&commits, 3);
        let mut text = first;
        out.read_to_string(&mut text).unwrap();
        let (code, err) = wait(child);
        done.store(true, Ordering::Relaxed);
        writer.join().unwrap();
        assert_eq!(code, 0, "{err}");
        assert!(commits.load(Ordering::Relaxed) >= 3, "the writers did not get to write during the run");
        assert!(text == before, "{strategy}: the output is not the table as it was at the start");
    }
    assert_ne!(table_csv(&db), before, "the table did not change, so the test proved nothing");
}

#[test]
fn killed_connections_resume_and_every_row_comes_once() {
    let Some(db) = MyDb::create("resume") else { return };
    numbers(&db, 400_000);
    let expected = table_csv(&db);
    for strategy in ["keyset", "cursor"] {
        let (child, out, first) =
            start(&["run", "--source", &db.url, "--table", "nums", "--strategy", strategy, "--batch-size", "100"]);
        // A slow reader (backpressure makes the run last 4 s or more) to be killed 3 times.
        let reader = slow_reader(out, first);
        let kills = kill_times(3, || db.kill_sessions());
        let text = reader.join().unwrap();
        let (code, err) = wait(child);
        assert_eq!(kills, 3, "{strategy}: the run ended before it was killed 3 times");
        assert_eq!(code, 0, "{err}");
        assert!(err.matches("resumed (attempt").count() >= 1, "{err}");
        assert!(text == expected, "{strategy}: rows lost or repeated across resumes");
    }
}

fn quiet_within(db: &MyDb, limit: Duration) -> Result<(), Vec<String>> {
    let t = Instant::now();
    loop {
        let active = db.active_queries();
        if active.is_empty() {
            return Ok(());
        }
        if t.elapsed() > limit {
            return Err(active);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

const ENDLESS: &str = "SELECT a.id AS a, b.id AS b, c.id AS c FROM nums a, nums b, nums c";

#[test]
fn ctrl_c_and_a_reader_that_goes_away_stop_the_query_on_the_server() {
    let Some(db) = MyDb::create("cancel") else { return };
    numbers(&db, 2_000);
    let (child, out, _) = start(&["run", "--source", &db.url, "--sql", ENDLESS]);
    assert_eq!(db.active_queries().len(), 1, "the query should be running");
    let (code, err) = interrupt(child, out);
    assert_eq!(code, 130, "{err}");
    quiet_within(&db, Duration::from_secs(1)).expect("our query still runs 1 s after the cancel");

    let (child, out, _) = start(&["run", "--source", &db.url, "--sql", ENDLESS]);
    drop(out);
    let (code, err) = wait(child);
    assert_eq!(code, 0, "{err}");
    quiet_within(&db, Duration::from_secs(1)).expect("our query still runs 1 s after the reader left");
}

const DEMO_SCHEMA: &str = "
CREATE TABLE regions (id BIGINT PRIMARY KEY, name TEXT NOT NULL, code TEXT NOT NULL);
CREATE TABLE customers (id BIGINT PRIMARY KEY, name TEXT NOT NULL, email TEXT, region_id BIGINT NOT NULL,
  city TEXT, segment TEXT NOT NULL, created_at DATETIME NOT NULL);
CREATE TABLE products (id BIGINT PRIMARY KEY, sku VARCHAR(40) NOT NULL UNIQUE, name TEXT NOT NULL, category TEXT NOT NULL,
  unit_price DECIMAL(10,2) NOT NULL, active BOOLEAN NOT NULL);
CREATE TABLE invoices (id BIGINT PRIMARY KEY, customer_id BIGINT NOT NULL, date DATE NOT NULL,
  status TEXT NOT NULL, total DECIMAL(12,2) NOT NULL, paid_at DATETIME, note TEXT);
CREATE TABLE invoice_lines (invoice_id BIGINT NOT NULL, line_no BIGINT NOT NULL, product_id BIGINT NOT NULL,
  quantity BIGINT NOT NULL, unit_price DECIMAL(10,2) NOT NULL, discount DECIMAL(4,2) NOT NULL,
  amount DECIMAL(12,2) NOT NULL, PRIMARY KEY (invoice_id, line_no));
";

/// A MySQL string literal.
fn lit(v: rusqlite::types::ValueRef<'_>) -> String {
    match v {
        rusqlite::types::ValueRef::Null => "NULL".into(),
        rusqlite::types::ValueRef::Integer(x) => x.to_string(),
        rusqlite::types::ValueRef::Real(x) => x.to_string(),
        rusqlite::types::ValueRef::Text(t) => {
            format!("'{}'", String::from_utf8_lossy(t).replace('\\', "\\\\").replace('\'', "''"))
        }
        rusqlite::types::ValueRef::Blob(_) => unreachable!("the demo has no blobs"),
    }
}

#[test]
fn the_example_specs_give_the_same_reports_on_mysql_as_on_sqlite() {
    let Some(db) = MyDb::create("examples") else { return };
    let dir = demo(2_000);
    db.sql(DEMO_SCHEMA);
    let conn = rusqlite::Connection::open(dir.join("demo.sqlite")).unwrap();
    for table in ["regions", "customers", "products", "invoices", "invoice_lines"] {
        let mut stmt = conn.prepare(&format!("SELECT * FROM {table}")).unwrap();
        let n = stmt.column_count();
        let mut rows = stmt.raw_query();
        let mut values = Vec::new();
        while let Some(row) = rows.next().unwrap() {
            values.push(format!("({})", (0..n).map(|i| lit(row.get_ref(i).unwrap())).collect::<Vec<_>>().join(",")));
        }
        for chunk in values.chunks(1000) {
            db.sql(&format!("INSERT INTO {table} VALUES {}", chunk.join(",")));
        }
    }
    let cases: [(&str, &[&str]); 3] = [
        ("sales_by_region", &["-p", "start_date=2024-01-01", "-p", "end_date=2024-12-31", "-p", "min_amount=100"]),
        ("customer_statement", &["-p", "region=Europe"]),
        ("invoice_export", &["-p", "status=paid,void"]),
    ];
    for (report, params) in cases {
        let spec = dir.join("reports").join(format!("{report}.yaml"));
        for format in ["json", "csv", "ndjson", "html", "xlsx"] {
            let mut args = vec!["run", spec.to_str().unwrap(), "-f", format];
            args.extend_from_slice(params);
            // A fixed creation date: an XLSX (and PDF) names when it was made.
            let fixed = [("SOURCE_DATE_EPOCH", "1700000000")];
            let on_sqlite = run_env(&args, &fixed);
            assert_eq!(on_sqlite.code, 0, "{}", on_sqlite.stderr);
            args.extend_from_slice(&["--source", &db.url]);
            let on_my = run_env(&args, &fixed);
            assert_eq!(on_my.code, 0, "{report} on MySQL: {}", on_my.stderr);
            assert!(on_my.stdout.len() > 500, "{report}: a report this small proves little");
            // Every format, JSON too, byte for byte: no document says which database it read.
            assert!(on_my.stdout == on_sqlite.stdout, "{report} as {format} differs between the databases");
        }
    }
}

#[test]
fn bad_requests_fail_before_the_first_byte_with_exit_code_2() {
    let Some(db) = MyDb::create("bad") else { return };
    numbers(&db, 10);
    let cases: [(&[&str], &str); 4] = [
        (&["--table", "nope"], "doesn't exist"),
        (&["--sql", "SELEC 1"], "SQL syntax"),
        (&["--table", "nums", "--key", "missing"], "unknown field `missing`"),
        (&["--sql", "SELECT 1 AS x", "--strategy", "keyset"], "keyset paging needs a unique key"),
    ];
    for (args, message) in cases {
        let mut all = vec!["run", "--source", &db.url];
        all.extend_from_slice(args);
        let r = run(&all);
        assert_eq!(r.code, 2, "{args:?}: {}", r.stderr);
        assert!(r.stderr.contains(message), "{args:?}: {}", r.stderr);
        assert!(r.stdout.is_empty(), "{args:?} wrote output");
    }
    // A database that cannot be reached is a failed run (1), with the driver's reason.
    let r = run(&["run", "--source", "mysql://root:hunter2@127.0.0.1:1/none", "--table", "t"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("Connection refused"), "{}", r.stderr);
    assert!(!r.stderr.contains("hunter2"), "the password leaked: {}", r.stderr);
}

#[test]
fn progress_totals_are_exact_estimated_or_absent() {
    use ream_engine::{prepare, start as start_run, AdHoc, CountMode, Format, Job, RunOptions};
    let Some(db) = MyDb::create("count") else { return };
    numbers(&db, 50_000);
    let total = |count: CountMode| {
        let mut opts = RunOptions::new(Format::Csv);
        opts.source = Some(db.url.clone());
        opts.count = count;
        let job = Job::AdHoc(AdHoc { sql: Some("SELECT * FROM nums WHERE v < 500".into()), ..Default::default() });
        let run = start_run(prepare(job, &opts, ream_core::CancelToken::new()).unwrap());
        let progress = run.progress();
        run.write_to(&mut std::io::sink()).unwrap();
        let t = Instant::now();
        while progress.total().is_none() && count != CountMode::None && t.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(10));
        }
        (progress.total(), progress.rows.load(Ordering::Relaxed))
    };
    let (exact, rows) = total(CountMode::Exact);
    assert_eq!(rows, 25_000);
    assert_eq!(exact, Some(25_000));
    // MySQL's EXPLAIN estimates the rows it examines (here the whole table), not those
    // the filter keeps: an upper bound, documented as such.
    let estimate = total(CountMode::Estimate).0.expect("an estimate");
    assert!((25_000..=100_000).contains(&estimate), "estimate {estimate}");
    assert_eq!(total(CountMode::None).0, None);
}

#[test]
fn connections_serve_the_next_run_after_a_cancel_or_an_early_stop() {
    use ream_engine::{prepare, start as start_run, AdHoc, Format, Job, RunOptions};
    let Some(db) = MyDb::create("reuse") else { return };
    numbers(&db, 200_000);
    let mut opts = RunOptions::new(Format::Csv);
    opts.source = Some(db.url.clone());
    opts.batch_size = Some(100);
    let job = || Job::AdHoc(AdHoc { table: Some("nums".into()), ..Default::default() });
    let cancel = ream_core::CancelToken::new();
    let mut run = start_run(prepare(job(), &opts, cancel.clone()).unwrap());
    assert!(run.next_chunk().unwrap().is_some());
    cancel.cancel();
    assert!(run.write_to(&mut std::io::sink()).is_err(), "a cancelled run must fail, not end short");
    let mut run = start_run(prepare(job(), &opts, ream_core::CancelToken::new()).unwrap());
    assert!(run.next_chunk().unwrap().is_some());
    drop(run);
    quiet_within(&db, Duration::from_secs(1)).expect("a stopped run left its query running");
    for _ in 0..3 {
        let mut out = Vec::new();
        let run = start_run(prepare(job(), &opts, ream_core::CancelToken::new()).unwrap());
        run.write_to(&mut out).unwrap();
        assert_eq!(out.iter().filter(|b| **b == b'\n').count(), 200_001);
    }
}

#[test]
fn ctrl_c_stops_the_exact_count_on_the_server_too() {
    let Some(db) = MyDb::create("count_cancel") else { return };
    numbers(&db, 2_000);
    let (child, out, _) =
        start(&["run", "--source", &db.url, "--sql", ENDLESS, "--count", "exact", "--progress", "always"]);
    // Keep reading, so the only thing that stops the run is the signal.
    let drain = std::thread::spawn(move || {
        let mut out = out;
        std::io::copy(&mut out, &mut std::io::sink()).unwrap();
    });
    let t = Instant::now();
    while db.active_queries().len() < 2 {
        assert!(t.elapsed() < Duration::from_secs(30), "the count never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::process::Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    let (code, err) = wait(child);
    drain.join().unwrap();
    assert_eq!(code, 130, "{err}");
    quiet_within(&db, Duration::from_secs(2)).expect("the count still runs 2 s after the cancel");
}

#[test]
fn decimal_arithmetic_sums_and_averages_exactly_with_nothing_declared() {
    let Some(db) = MyDb::create("decimal_sum") else { return };
    db.sql(
        "CREATE TABLE l (id INT PRIMARY KEY, price DECIMAL(15,2), discount DECIMAL(15,2));
         INSERT INTO l WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < 1000)
           SELECT n, n * 1.25, (n % 10) / 100 FROM g;",
    );
    let dir = tempfile::tempdir().unwrap();
    let spec = write(
        dir.path(),
        "q.yaml",
        &format!(
            "report: q\nsource:\n  url: \"{}\"\n  table: l\n  columns: {{id: id, disc_price: \"price * (1 - discount)\"}}\n\
             detail: false\nvariables:\n  revenue: {{sum: disc_price}}\n  mean: {{avg: disc_price}}\n\
             summary: \"{{revenue}}|{{mean}}\"\n",
            db.url
        ),
    );
    // The database's own figures: the sum, and the average at the scale ream keeps (4 + 6).
    let out = db.sql(
        "SET SESSION div_precision_increment = 6;
         SELECT CONCAT(SUM(price * (1 - discount)), '|', SUM(price * (1 - discount)) / COUNT(*)) FROM l",
    );
    let want = String::from_utf8(out).unwrap().lines().nth(1).unwrap().to_string();
    for batch in ["1", "7", "1000"] {
        let r = run(&["run", spec.to_str().unwrap(), "--format", "json", "--batch-size", batch]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        let doc: serde_json::Value = serde_json::from_slice(&r.stdout).unwrap();
        assert_eq!(doc["summary"], want.as_str(), "batch size {batch}: {doc}");
    }
}

#[test]
fn a_select_that_would_write_fails_read_only_with_or_without_a_snapshot() {
    let Some(db) = MyDb::create("read_only") else { return };
    db.sql(
        "CREATE TABLE victim (id INT PRIMARY KEY); INSERT INTO victim VALUES (1), (2);
         DELIMITER //
         CREATE FUNCTION sneaky() RETURNS INT MODIFIES SQL DATA BEGIN DELETE FROM victim WHERE id = 1; RETURN 1; END//
         DELIMITER ;",
    );
    for extra in [&[][..], &["--no-snapshot"][..]] {
        let args = [&["run", "--source", &db.url, "--sql", "SELECT sneaky() AS x"][..], extra].concat();
        let r = run(&args);
        assert_ne!(r.code, 0, "{extra:?}: the statement ran");
        assert!(r.stderr.contains("READ ONLY transaction"), "{extra:?}: {}", r.stderr);
    }
    let left = String::from_utf8(db.sql("SELECT count(*) FROM victim")).unwrap();
    assert_eq!(left.lines().nth(1), Some("2"), "a row was deleted: {left}");
}
