//! PostgreSQL end to end, against the machine's real server: types against psql's own
//! COPY, a consistent snapshot while others write, resume after killed connections,
//! cancel that stops the server's query, counts, and the example specs giving the same
//! report as on SQLite.

mod common;
use common::pg::PgDb;
use common::*;

use std::io::{BufReader, Read};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const TYPES: &str = r#"
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE DOMAIN money2 AS numeric(10,2) CHECK (VALUE > -1000000);
CREATE TABLE t (
  id int8 PRIMARY KEY, i2 int2, i4 int4, n numeric(12,2), nu numeric, f4 float4, f8 float8,
  tx text, vc varchar(10), ch char(5), b bool, d date, tm time, ts timestamp, tz timestamptz,
  iv interval, u uuid, j json, jb jsonb, by bytea, e mood, dm money2, ai int4[], at text[]);
INSERT INTO t VALUES
 (1, 1, 100, 12.34, 1.5, 1.1, 0.1, 'plain', 'v', 'ab', true, '2024-02-29', '12:34:56.5',
  '2024-01-02 03:04:05.123456', '2024-01-02 03:04:05+02', '1 year 2 mons 3 days 04:05:06.5',
  'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '{"a": [1, 2]}', '{"b": {"c": null}}', '\x00ff10', 'happy', 5.5,
  '{1,2,NULL}', '{"x","y,z","q\"uote"}'),
 (2, -32768, -2147483648, -0.05, 123456789.123456789, -3.4e38, -1.7976931348623157e308,
  'comma, "quote" and
newline', 'Ωμέγα', 'x', false, '0001-01-01', '00:00:00', '1970-01-01 00:00:00', '1999-12-31 23:59:59.999999+00',
  '-1 days -00:00:01', '00000000-0000-0000-0000-000000000000', '[]', '[1, "two"]', '\x', 'sad', -999999.99,
  '{}', '{}'),
 (3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  NULL, NULL, NULL, NULL, NULL),
 (4, 32767, 2147483647, 9999999999.99, 0, 1e-30, 5e-324, '<script>alert(1)</script>', 'Дмитрий', 'Øver', true,
  '9999-12-31', '23:59:59.999999', '2262-04-11 23:47:16', '2024-06-30 12:00:00-07', '00:00:00.000001',
  'ffffffff-ffff-ffff-ffff-ffffffffffff', 'null', '"s"', '\xdeadbeef', 'ok', 0, '{-7}', '{NULL}');
INSERT INTO t (id, i4, tx, n) SELECT g, g, 'row ' || g, g / 100.0 FROM generate_series(5, 2000) g;
"#;

fn parse_csv(bytes: &[u8]) -> (Vec<String>, Vec<Vec<String>>) {
    let mut r = csv::ReaderBuilder::new().from_reader(bytes);
    let header = r.headers().unwrap().iter().map(String::from).collect();
    let rows = r.records().map(|r| r.unwrap().iter().map(String::from).collect()).collect();
    (header, rows)
}

/// A decimal's value without its display scale: `1.50` and `1.5` are the same number.
fn number(s: &str) -> String {
    if !s.contains('.') {
        return s.to_string();
    }
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// psql and arrow print some types differently; compare the values, not the spelling.
fn same_value(column: &str, ours: &str, theirs: &str) -> bool {
    if ours == theirs {
        return true;
    }
    match column {
        "nu" => number(ours) == number(theirs),
        "f4" | "f8" => ours.parse::<f64>().ok() == theirs.parse::<f64>().ok(),
        "b" => (ours == "true" && theirs == "t") || (ours == "false" && theirs == "f"),
        "by" => theirs.strip_prefix("\\x") == Some(ours),
        "tm" => number(ours) == number(theirs),
        "ts" => number(&ours.replace('T', " ")) == number(theirs),
        "tz" => instant(ours).is_some() && instant(ours) == instant(theirs),
        "iv" => interval_micros(ours).is_some() && interval_micros(ours) == interval_micros(theirs),
        "ai" | "at" => serde_json::from_str::<serde_json::Value>(ours).ok() == Some(pg_array_json(column, theirs)),
        _ => false,
    }
}

/// A timestamp with an offset (`…Z`, `…+02`, `…+02:00`) as UTC.
fn instant(s: &str) -> Option<chrono::DateTime<chrono::FixedOffset>> {
    let mut s = s.replace('T', " ");
    if let Some(x) = s.strip_suffix('Z') {
        s = format!("{x}+00:00");
    }
    let tail = &s[s.len().saturating_sub(3)..];
    if tail.starts_with('+') || tail.starts_with('-') {
        s.push_str(":00");
    }
    chrono::DateTime::parse_from_str(&s, "%Y-%m-%d %H:%M:%S%.f%:z").ok()
}

/// (months, days, microseconds) of an interval as arrow prints it (`14 mons 3 days 4 hours
/// 5 mins 6.500000000 secs`) or as PostgreSQL does with IntervalStyle iso_8601
/// (`P1Y2M3DT4H5M6.5S`).
fn interval_micros(s: &str) -> Option<(i64, i64, i64)> {
    let secs = |x: &str| -> Option<i64> { Some((x.parse::<f64>().ok()? * 1e6).round() as i64) };
    let (mut m, mut d, mut us) = (0i64, 0i64, 0i64);
    if let Some(iso) = s.strip_prefix('P') {
        let (date, time) = iso.split_once('T').unwrap_or((iso, ""));
        let mut num = String::new();
        for c in date.chars() {
            match c {
                'Y' => m += 12 * num.parse::<i64>().ok()?,
                'M' => m += num.parse::<i64>().ok()?,
                'D' => d += num.parse::<i64>().ok()?,
                _ => {
                    num.push(c);
                    continue;
                }
            }
            num.clear();
        }
        for c in time.chars() {
            match c {
                'H' => us += num.parse::<i64>().ok()? * 3_600_000_000,
                'M' => us += num.parse::<i64>().ok()? * 60_000_000,
                'S' => us += secs(&num)?,
                _ => {
                    num.push(c);
                    continue;
                }
            }
            num.clear();
        }
        return Some((m, d, us));
    }
    let words: Vec<&str> = s.split_whitespace().collect();
    for pair in words.chunks(2) {
        let [n, unit] = pair else { return None };
        match *unit {
            "mons" | "mon" => m += n.parse::<i64>().ok()?,
            "days" | "day" => d += n.parse::<i64>().ok()?,
            "hours" | "hour" => us += n.parse::<i64>().ok()? * 3_600_000_000,
            "mins" | "min" => us += n.parse::<i64>().ok()? * 60_000_000,
            "secs" | "sec" => us += secs(n)?,
            _ => return None,
        }
    }
    Some((m, d, us))
}

/// A one-dimensional PostgreSQL array literal (`{1,"a,b",NULL}`) as JSON.
fn pg_array_json(column: &str, s: &str) -> serde_json::Value {
    let inner = s.strip_prefix('{').and_then(|x| x.strip_suffix('}')).expect("an array literal");
    let mut items = Vec::new();
    let mut chars = inner.chars().peekable();
    while chars.peek().is_some() {
        let mut item = String::new();
        let quoted = chars.peek() == Some(&'"');
        if quoted {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => item.push(chars.next().unwrap()),
                    '"' => break,
                    c => item.push(c),
                }
            }
        }
        for c in chars.by_ref() {
            if c == ',' {
                break;
            }
            item.push(c);
        }
        items.push(match (quoted, item.as_str(), column) {
            (false, "NULL", _) => serde_json::Value::Null,
            (_, x, "ai") => serde_json::Value::from(x.parse::<i64>().unwrap()),
            (_, x, _) => serde_json::Value::from(x),
        });
    }
    serde_json::Value::Array(items)
}

#[test]
fn every_type_reads_as_psql_copy_writes_it() {
    let Some(db) = PgDb::create("types") else { return };
    db.exec(TYPES);
    let theirs =
        db.psql("SET intervalstyle = iso_8601; COPY (SELECT * FROM t ORDER BY id) TO STDOUT (FORMAT csv, HEADER)");
    let (their_header, their_rows) = parse_csv(&theirs);
    let mut first: Option<Vec<u8>> = None;
    for strategy in ["auto", "keyset", "cursor", "offset"] {
        for batch in ["1", "7", "1000"] {
            let args = [
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
            ];
            let r = run(&args);
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
            if !same_value(col, o, t) {
                mismatches.push(format!("id {}: {col}: ours {o:?}, psql {t:?}", ours[0]));
            }
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}

/// A table of `n` rows: id, a value, a label.
fn numbers(db: &PgDb, n: u64) {
    db.exec(&format!(
        "CREATE TABLE nums (id int8 PRIMARY KEY, v int8 NOT NULL, label text);
         INSERT INTO nums SELECT g, g * 7 % 1000, 'n' || g FROM generate_series(1, {n}) g; ANALYZE nums;"
    ));
}

fn finish(
    child: std::process::Child,
    mut out: BufReader<std::process::ChildStdout>,
    first: String,
) -> (i32, String, String) {
    let mut rest = String::new();
    out.read_to_string(&mut rest).unwrap();
    let (code, err) = wait(child);
    (code, first + &rest, err)
}

/// Another connection committing `statement(k)` for k = 1, 2, … until stopped.
struct Writer {
    done: Arc<AtomicBool>,
    commits: Arc<AtomicUsize>,
    thread: std::thread::JoinHandle<()>,
}

impl Writer {
    fn start(db: &PgDb, statement: impl Fn(i64) -> String + Send + 'static) -> Writer {
        let done = Arc::new(AtomicBool::new(false));
        let commits = Arc::new(AtomicUsize::new(0));
        let (stop, count, url) = (done.clone(), commits.clone(), db.url.clone());
        let thread = std::thread::spawn(move || {
            let mut c = postgres::Client::connect(&url, postgres::NoTls).unwrap();
            let mut k = 0i64;
            while !stop.load(Ordering::Relaxed) {
                k += 1;
                c.batch_execute(&statement(k)).unwrap();
                count.fetch_add(1, Ordering::Relaxed);
            }
        });
        Writer { done, commits, thread }
    }

    /// Stop writing; how many commits there were.
    fn stop(self) -> usize {
        self.done.store(true, Ordering::Relaxed);
        self.thread.join().unwrap();
        self.commits.load(Ordering::Relaxed)
    }
}

#[test]
fn a_run_reads_one_snapshot_while_others_write() {
    let Some(db) = PgDb::create("snapshot") else { return };
    numbers(&db, 1_000_000);
    let mut before = Vec::new();
    for strategy in ["keyset", "cursor"] {
        // The table as it is now: nobody writes until the run has its snapshot.
        before = db.psql("COPY (SELECT * FROM nums ORDER BY id) TO STDOUT (FORMAT csv, HEADER)");
        let (child, out, first) =
            start(&["run", "--source", &db.url, "--table", "nums", "--strategy", strategy, "--batch-size", "500"]);
        // Others write all through the run: updates, deletes and inserts, committed.
        let writer = Writer::start(&db, |k| {
            format!(
                "UPDATE nums SET v = v + 1, label = 'changed' WHERE id % 1000 = {m};
                 DELETE FROM nums WHERE id = {d};
                 INSERT INTO nums VALUES ({i}, 0, 'new') ON CONFLICT DO NOTHING;",
                m = k % 1000,
                d = (k * 7919) % 1_000_000 + 1,
                i = 2_000_000 + k
            )
        });
        // ream's output fills the pipe, so it waits mid-run with its snapshot open until
        // the writers have committed: the run cannot end first, however fast it is.
        wait_for(&writer.commits, 5);
        let (code, text, err) = finish(child, out, first);
        let commits = writer.stop();
        assert_eq!(code, 0, "{err}");
        assert!(commits >= 5, "the writers did not get to write during the run");
        assert!(text.as_bytes() == before.as_slice(), "{strategy}: the output is not the table as it was at the start");
    }
    let after = db.psql("COPY (SELECT * FROM nums ORDER BY id) TO STDOUT (FORMAT csv, HEADER)");
    assert_ne!(after, before, "the table did not change, so the test proved nothing");
}

#[test]
fn a_parallel_read_sees_one_snapshot_on_every_partition_while_others_write() {
    let Some(db) = PgDb::create("parallel_snapshot") else { return };
    let rows: i64 = 300_000;
    numbers(&db, rows as u64);
    let sum = |text: &str| -> (i64, i64) {
        let mut csv = csv::Reader::from_reader(text.as_bytes());
        csv.records().map(|r| r.unwrap()[1].parse::<i64>().unwrap()).fold((0, 0), |(n, s), v| (n + 1, s + v))
    };
    let start_sum = sum(&String::from_utf8(db.psql("COPY nums TO STDOUT (FORMAT csv, HEADER)")).unwrap());
    // Every commit moves 1 from a row of the last partition to a row of the first: any one
    // snapshot holds the same sum, while partitions that read different ones would not.
    let writer = Writer::start(&db, move |k| {
        format!(
            "BEGIN; UPDATE nums SET v = v + 1 WHERE id = {lo}; UPDATE nums SET v = v - 1 WHERE id = {hi}; COMMIT;",
            lo = k % 1000 + 1,
            hi = rows - k % 1000
        )
    });
    wait_for(&writer.commits, 5);
    let before = writer.commits.load(Ordering::Relaxed);
    let r = run(&["run", "--source", &db.url, "--table", "nums", "--parallel", "3", "--batch-size", "500"]);
    let during = writer.commits.load(Ordering::Relaxed) - before;
    writer.stop();
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(during >= 5, "the writer did not commit during the run ({during})");
    assert_eq!(sum(&r.text()), (rows, start_sum.1), "the partitions did not read one snapshot");
    let now = sum(&String::from_utf8(db.psql("COPY nums TO STDOUT (FORMAT csv, HEADER)")).unwrap());
    assert_eq!(now, start_sum, "moving 1 between rows keeps the sum");
}

#[test]
fn killed_partitions_each_resume_from_their_own_cursor_and_every_row_comes_once() {
    let Some(db) = PgDb::create("parallel_resume") else { return };
    // Partition 0 holds 400,000 rows, which the slow reader makes last 4 s or more: long
    // enough for 3 kills, as in the serial test.
    numbers(&db, 800_000);
    let expected = db.psql("COPY (SELECT * FROM nums ORDER BY id) TO STDOUT (FORMAT csv, HEADER)");
    let args = ["run", "--source", &db.url, "--table", "nums", "--parallel", "2", "--batch-size", "100"];
    let (child, out, first) = start(&args);
    // Partition 0 is read as slowly as the reader takes it; each kill ends every
    // connection of ours there is, the later partitions' while they still read.
    let reader = slow_reader(out, first);
    let mut killed = vec![];
    let kills = kill_times(3, || db.kill_new_ream_sessions(&mut killed));
    let text = reader.join().unwrap();
    let (code, err) = wait(child);
    assert_eq!(kills, 3, "the run ended before it was killed 3 times");
    assert_eq!(code, 0, "{err}");
    // A kill may find only idle connections (the probe's, or one back in the pool), so
    // not every kill makes a resume; the first, while every partition reads, does.
    assert!(err.contains("resumed (attempt"), "{err}");
    assert!(text.as_bytes() == expected.as_slice(), "rows lost or repeated across the partitions' resumes");
}

#[test]
fn ctrl_c_stops_the_query_of_every_partition_on_the_server() {
    let Some((db, reports)) = pg_report("parallel_cancel", 200_000, "slow", 100, "pg_sleep(0.0005)::text") else {
        return;
    };
    let spec = reports.path().join("slow.yaml");
    let (child, out, _) = start(&["run", spec.to_str().unwrap(), "--parallel", "3"]);
    let t = Instant::now();
    while db.active_ream_queries().len() < 3 {
        assert!(t.elapsed() < Duration::from_secs(30), "the 3 partitions never ran at once");
        std::thread::sleep(Duration::from_millis(10));
    }
    let (code, err) = interrupt(child, out);
    assert_eq!(code, 130, "{err}");
    server_quiet_within(&db, Duration::from_secs(1)).expect("a partition's query still runs 1 s after the cancel");
}

#[test]
fn killed_connections_resume_and_every_row_comes_once() {
    let Some(db) = PgDb::create("resume") else { return };
    numbers(&db, 400_000);
    let expected = db.psql("COPY (SELECT * FROM nums ORDER BY id) TO STDOUT (FORMAT csv, HEADER)");
    for strategy in ["keyset", "cursor"] {
        let (child, out, first) =
            start(&["run", "--source", &db.url, "--table", "nums", "--strategy", strategy, "--batch-size", "100"]);
        // The reader is slow on purpose (backpressure slows the run to at least 4 s), so
        // the run lasts long enough to be killed 3 times even on a busy machine.
        let reader = slow_reader(out, first);
        let mut killed = vec![];
        let kills = kill_times(3, || db.kill_new_ream_sessions(&mut killed));
        let text = reader.join().unwrap();
        let (code, err) = wait(child);
        assert_eq!(kills, 3, "{strategy}: the run ended before it was killed 3 times");
        assert_eq!(code, 0, "{err}");
        assert_eq!(err.matches("resumed (attempt").count(), 3, "{err}");
        assert!(text.as_bytes() == expected.as_slice(), "{strategy}: rows lost or repeated across resumes");
    }
}

/// A query that streams for hours: a triple cross join of 2,000 rows.
fn endless(db: &PgDb) -> &'static str {
    numbers(db, 2_000);
    "SELECT a.id AS a, b.id AS b, c.id AS c FROM nums a, nums b, nums c"
}

/// Wait up to `limit` for no query of ours to be running on the server.
fn server_quiet_within(db: &PgDb, limit: Duration) -> Result<Duration, Vec<String>> {
    let t = Instant::now();
    loop {
        let active = db.active_ream_queries();
        if active.is_empty() {
            return Ok(t.elapsed());
        }
        if t.elapsed() > limit {
            return Err(active);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn ctrl_c_stops_the_query_on_the_server() {
    let Some(db) = PgDb::create("cancel") else { return };
    let sql = endless(&db);
    let (child, out, _) = start(&["run", "--source", &db.url, "--sql", sql]);
    assert_eq!(db.active_ream_queries().len(), 1, "the query should be running");
    // Keep reading, so the only thing that stops the run is the signal.
    let (code, err) = interrupt(child, out);
    assert_eq!(code, 130, "{err}");
    server_quiet_within(&db, Duration::from_secs(1)).expect("our query still runs on the server 1 s after the cancel");
}

#[test]
fn a_reader_that_goes_away_stops_the_query_on_the_server() {
    let Some(db) = PgDb::create("drop") else { return };
    let sql = endless(&db);
    let (child, out, _) = start(&["run", "--source", &db.url, "--sql", sql]);
    drop(out);
    let (code, err) = wait(child);
    assert_eq!(code, 0, "a reader going away is a clean exit: {err}");
    server_quiet_within(&db, Duration::from_secs(1))
        .expect("our query still runs on the server 1 s after the reader left");
}

#[test]
fn a_spent_retry_budget_fails_loudly_and_leaves_no_file() {
    let Some(db) = PgDb::create("budget") else { return };
    endless(&db);
    // The same endless rows, from the table whose primary key proves (a, b, c) unique, so
    // the run could resume: only its budget of 0 retries stops it.
    let specs = tempfile::tempdir().unwrap();
    let spec = write(
        specs.path(),
        "endless.yaml",
        &format!(
            "report: endless\nsource:\n  url: \"{}\"\n  table: nums\n  joins: [\"CROSS JOIN nums b\", \"CROSS JOIN nums c\"]\n  \
             columns: {{a: nums.id, b: b.id, c: c.id}}\n  key: [a, b, c]\n",
            db.url
        ),
    );
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.csv");
    let child = ream()
        .args(["run", spec.to_str().unwrap(), "--retries", "0", "-o"])
        .arg(&out)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let t = Instant::now();
    while !files_in(dir.path()).iter().any(|f| f.ends_with(".tmp")) {
        assert!(t.elapsed() < Duration::from_secs(30), "the run never started writing");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(db.kill_ream_sessions(), 1);
    let (code, err) = wait(child);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("gave up after 0 retries"), "{err}");
    assert!(files_in(dir.path()).is_empty(), "a failed run left {:?}", files_in(dir.path()));
}

#[test]
fn progress_totals_are_exact_estimated_or_absent() {
    use ream_engine::{prepare, start as start_run, AdHoc, CountMode, Format, Job, RunOptions};
    let Some(db) = PgDb::create("count") else { return };
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
    let (estimate, _) = total(CountMode::Estimate);
    let estimate = estimate.expect("an estimate");
    assert!((12_500..=50_000).contains(&estimate), "estimate {estimate} is far from 25,000");
    assert_eq!(total(CountMode::None).0, None);
}

const DEMO_SCHEMA: &str = "
CREATE TABLE regions (id int8 PRIMARY KEY, name text NOT NULL, code text NOT NULL);
CREATE TABLE customers (id int8 PRIMARY KEY, name text NOT NULL, email text, region_id int8 NOT NULL REFERENCES regions(id),
  city text, segment text NOT NULL, created_at timestamp NOT NULL);
CREATE TABLE products (id int8 PRIMARY KEY, sku text NOT NULL UNIQUE, name text NOT NULL, category text NOT NULL,
  unit_price numeric(10,2) NOT NULL, active boolean NOT NULL);
CREATE TABLE invoices (id int8 PRIMARY KEY, customer_id int8 NOT NULL REFERENCES customers(id), date date NOT NULL,
  status text NOT NULL, total numeric(12,2) NOT NULL, paid_at timestamp, note text);
CREATE TABLE invoice_lines (invoice_id int8 NOT NULL REFERENCES invoices(id), line_no int8 NOT NULL,
  product_id int8 NOT NULL REFERENCES products(id), quantity int8 NOT NULL, unit_price numeric(10,2) NOT NULL,
  discount numeric(4,2) NOT NULL, amount numeric(12,2) NOT NULL, PRIMARY KEY (invoice_id, line_no));
";

/// The demo database, copied table by table into PostgreSQL.
fn demo_in_postgres(db: &PgDb, sqlite: &std::path::Path) {
    db.exec(DEMO_SCHEMA);
    let conn = rusqlite::Connection::open(sqlite).unwrap();
    let mut pg = db.client();
    for table in ["regions", "customers", "products", "invoices", "invoice_lines"] {
        let mut csv_text = Vec::new();
        {
            let mut stmt = conn.prepare(&format!("SELECT * FROM {table}")).unwrap();
            let n = stmt.column_count();
            let mut w = csv::Writer::from_writer(&mut csv_text);
            let mut rows = stmt.raw_query();
            while let Some(row) = rows.next().unwrap() {
                let rec: Vec<String> = (0..n)
                    .map(|i| match row.get_ref(i).unwrap() {
                        rusqlite::types::ValueRef::Null => "\\N".into(),
                        rusqlite::types::ValueRef::Integer(x) => x.to_string(),
                        rusqlite::types::ValueRef::Real(x) => x.to_string(),
                        rusqlite::types::ValueRef::Text(t) => String::from_utf8_lossy(t).into_owned(),
                        rusqlite::types::ValueRef::Blob(_) => unreachable!("the demo has no blobs"),
                    })
                    .collect();
                w.write_record(&rec).unwrap();
            }
        }
        use std::io::Write;
        let mut copy = pg.copy_in(&format!("COPY {table} FROM STDIN (FORMAT csv, NULL '\\N')")).unwrap();
        copy.write_all(&csv_text).unwrap();
        copy.finish().unwrap();
    }
    db.exec("ANALYZE");
}

#[test]
fn the_example_specs_give_the_same_reports_on_postgres_as_on_sqlite() {
    let Some(db) = PgDb::create("examples") else { return };
    let dir = demo(2_000);
    demo_in_postgres(&db, &dir.join("demo.sqlite"));
    let cases: [(&str, &[&str]); 4] = [
        ("sales_by_region", &["-p", "start_date=2024-01-01", "-p", "end_date=2024-12-31", "-p", "min_amount=100"]),
        ("customer_statement", &["-p", "region=Europe"]),
        ("invoice_export", &["-p", "status=paid,void"]),
        ("invoice_export", &[]),
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
            let on_pg = run_env(&args, &fixed);
            assert_eq!(on_pg.code, 0, "{report} on PostgreSQL: {}", on_pg.stderr);
            assert!(on_pg.stdout.len() > 500, "{report}: a report this small proves little");
            // Every format, JSON too, byte for byte: no document says which database it read.
            assert!(on_pg.stdout == on_sqlite.stdout, "{report} as {format} differs between the databases");
        }
    }
}

#[test]
fn bad_requests_fail_before_the_first_byte_with_exit_code_2() {
    let Some(db) = PgDb::create("bad") else { return };
    numbers(&db, 10);
    let cases: [(&[&str], &str); 5] = [
        (&["--table", "nope"], "relation \"nope\" does not exist"),
        (&["--sql", "SELEC 1"], "syntax error"),
        (&["--table", "nums", "--key", "missing"], "unknown field `missing`"),
        (&["--sql", "SELECT point(1,2) AS p"], "type point is not read yet"),
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
    let r = run(&["run", "--source", "postgres://postgres@127.0.0.1:1/none", "--table", "t"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("cannot open postgres://postgres@127.0.0.1:1/none"), "{}", r.stderr);
    assert!(r.stderr.contains("Connection refused"), "{}", r.stderr);
    let r = run(&["run", "--source", "postgres://u:hunter2@127.0.0.1:1/none", "--table", "t"]);
    assert!(!r.stderr.contains("hunter2"), "the password leaked: {}", r.stderr);
}

#[test]
fn connections_serve_the_next_run_after_a_cancel_or_an_early_stop() {
    use ream_engine::{prepare, start as start_run, AdHoc, Format, Job, RunOptions};
    let Some(db) = PgDb::create("reuse") else { return };
    numbers(&db, 200_000);
    let mut opts = RunOptions::new(Format::Csv);
    opts.source = Some(db.url.clone());
    opts.batch_size = Some(100);
    let job = || Job::AdHoc(AdHoc { table: Some("nums".into()), ..Default::default() });
    // One process, one pool: a run cancelled mid-way, one dropped after its first chunk...
    let cancel = ream_core::CancelToken::new();
    let mut run = start_run(prepare(job(), &opts, cancel.clone()).unwrap());
    assert!(run.next_chunk().unwrap().is_some());
    cancel.cancel();
    assert!(run.write_to(&mut std::io::sink()).is_err(), "a cancelled run must fail, not end short");
    let mut run = start_run(prepare(job(), &opts, ream_core::CancelToken::new()).unwrap());
    assert!(run.next_chunk().unwrap().is_some());
    drop(run);
    server_quiet_within(&db, Duration::from_secs(1)).expect("a stopped run left its query running");
    // ...and the next runs on the same pool read every row.
    for _ in 0..3 {
        let mut out = Vec::new();
        let run = start_run(prepare(job(), &opts, ream_core::CancelToken::new()).unwrap());
        run.write_to(&mut out).unwrap();
        assert_eq!(out.iter().filter(|b| **b == b'\n').count(), 200_001);
    }
}

#[test]
fn a_value_ream_cannot_hold_fails_the_run_naming_column_and_key_and_leaves_no_file() {
    let Some(db) = PgDb::create("badvalue") else { return };
    db.exec(
        "CREATE TABLE d (id int8 PRIMARY KEY, day date);
         INSERT INTO d SELECT g, DATE '2024-01-01' + g::int FROM generate_series(1, 20000) g;
         UPDATE d SET day = 'infinity' WHERE id = 15000;",
    );
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("d.csv");
    let r = run(&["run", "--source", &db.url, "--table", "d", "-o", out.to_str().unwrap()]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("column `day` (date) at id=15000: infinity is not a date"), "{}", r.stderr);
    assert!(files_in(dir.path()).is_empty(), "a failed run left {:?}", files_in(dir.path()));
}

#[test]
fn a_select_that_would_write_fails_read_only_with_or_without_a_snapshot() {
    let Some(db) = PgDb::create("read_only") else { return };
    db.exec(
        "CREATE TABLE victim (id int PRIMARY KEY); INSERT INTO victim VALUES (1), (2);
         CREATE FUNCTION sneaky() RETURNS int LANGUAGE sql AS 'DELETE FROM victim WHERE id = 1 RETURNING id';",
    );
    for extra in [&[][..], &["--no-snapshot"][..]] {
        let args = [&["run", "--source", &db.url, "--sql", "SELECT sneaky() AS x"][..], extra].concat();
        let r = run(&args);
        assert_ne!(r.code, 0, "{extra:?}: the statement ran");
        assert!(r.stderr.contains("read-only transaction"), "{extra:?}: {}", r.stderr);
    }
    let left = db.client().query_one("SELECT count(*) FROM victim", &[]).unwrap().get::<_, i64>(0);
    assert_eq!(left, 2, "a row was deleted");
}

#[test]
fn ctrl_c_stops_the_exact_count_on_the_server_too() {
    let Some(db) = PgDb::create("count_cancel") else { return };
    let sql = endless(&db);
    let (child, out, _) =
        start(&["run", "--source", &db.url, "--sql", sql, "--count", "exact", "--progress", "always"]);
    // Keep reading, so the only thing that stops the run is the signal.
    let drain = std::thread::spawn(move || {
        let mut out = out;
        std::io::copy(&mut out, &mut std::io::sink()).unwrap();
    });
    let t = Instant::now();
    while db.active_ream_queries().len() < 2 {
        assert!(t.elapsed() < Duration::from_secs(30), "the count never started: {:?}", db.active_ream_queries());
        std::thread::sleep(Duration::from_millis(20));
    }
    std::process::Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    let (code, err) = wait(child);
    drain.join().unwrap();
    assert_eq!(code, 130, "{err}");
    // The count (a full scan of a billion rows) ran on after the process was gone.
    if let Err(q) = server_quiet_within(&db, Duration::from_secs(2)) {
        panic!("the count still runs on the server 2 s after the cancel: {q:?}\n{err}");
    }
}

#[test]
fn a_parameter_beyond_its_columns_type_exits_2_and_leaves_no_file() {
    let Some(db) = PgDb::create("rejected_cli") else { return };
    db.exec("CREATE TABLE t (id int4 PRIMARY KEY); INSERT INTO t VALUES (1);");
    let dir = tempfile::tempdir().unwrap();
    let spec = write(
        dir.path(),
        "r.yaml",
        &format!(
            "report: r\nsource:\n  url: \"{}\"\n  table: t\n  where: \"id = :n\"\nparameters:\n  n: {{type: int}}\n",
            db.url
        ),
    );
    let out = dir.path().join("out.csv");
    let r = run(&["run", spec.to_str().unwrap(), "-p", "n=3000000000", "-o", out.to_str().unwrap()]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("the database rejected a value") && r.stderr.contains("out of range"), "{}", r.stderr);
    assert_eq!(files_in(dir.path()), vec!["r.yaml"]);
}

#[test]
fn numerics_at_the_edges_of_their_precision_and_negative_scales_read_exactly() {
    let Some(db) = PgDb::create("numeric_edges") else { return };
    db.exec(
        "CREATE TABLE n (id int PRIMARY KEY, a numeric(38,38), b numeric(38,37), c numeric(5,-2));
         INSERT INTO n VALUES (1, 0.12345678901234567890123456789012345678, -1.2345678901234567890123456789012345678, 12345),
                              (2, -0.99999999999999999999999999999999999999, 9.9999999999999999999999999999999999999, -9999949);",
    );
    let r = run(&["run", "--source", &db.url, "--table", "n"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        r.text(),
        "id,a,b,c\n1,0.12345678901234567890123456789012345678,-1.2345678901234567890123456789012345678,12300\n\
         2,-0.99999999999999999999999999999999999999,9.9999999999999999999999999999999999999,-9999900\n"
    );
}

#[test]
fn arithmetic_on_numerics_sums_averages_and_compares_exactly_with_nothing_declared() {
    let Some(db) = PgDb::create("numeric_sum") else { return };
    db.exec(
        "CREATE TABLE l (id int PRIMARY KEY, price numeric(15,2), discount numeric(15,2));
         INSERT INTO l SELECT g, g * 1.25, (g % 10) / 100.0 FROM generate_series(1, 1000) g;",
    );
    let dir = tempfile::tempdir().unwrap();
    // TPC-H Q1's revenue (scale 4 throughout), and a column whose values differ in scale
    // (a division has 16 and more digits after the point, the rest 2). PostgreSQL's own
    // avg() keeps fewer digits than ream's exact average: the reference divides at 30.
    let zeros = "0".repeat(30);
    let mixed = "CASE WHEN id % 3 = 0 THEN price / 7 ELSE price END";
    let spec = write(
        dir.path(),
        "q.yaml",
        &format!(
            "report: q\nsource:\n  url: \"{}\"\n  table: l\n  columns: {{id: id, disc_price: \"price * (1 - discount)\", \
             mixed: \"{mixed}\"}}\ndetail: false\nvariables:\n  revenue: {{sum: disc_price}}\n  mean: {{avg: disc_price}}\n  \
             total: {{sum: mixed}}\n  mixed_mean: {{avg: mixed}}\n  lo: {{min: mixed}}\n  hi: {{max: mixed}}\n\
             summary: \"{{revenue}}|{{mean}}|{{total}}|{{mixed_mean}}|{{lo}}|{{hi}}\"\n",
            db.url
        ),
    );
    for batch in ["1", "7", "1000"] {
        let r = run(&["run", spec.to_str().unwrap(), "--format", "json", "--batch-size", batch]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        let doc: serde_json::Value = serde_json::from_slice(&r.stdout).unwrap();
        let want: String = db
            .client()
            .query_one(
                &format!(
                    "SELECT concat_ws('|', sum(price * (1 - discount)), round(avg(price * (1 - discount)), 10), \
                     sum({mixed}), round(sum({mixed}) / (count({mixed}) * 1.{zeros}), max(scale({mixed})) + 6), min({mixed}), max({mixed})) FROM l"
                ),
                &[],
            )
            .unwrap()
            .get(0);
        assert_eq!(doc["summary"], want.as_str(), "batch size {batch}: {doc}");
    }
}
