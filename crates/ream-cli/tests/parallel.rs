//! Parallel reads against the serial read, on SQLite, PostgreSQL and MariaDB: one table
//! whose key has gaps and skew (most rows crowd one corner of the key's range), NULLs in
//! every other column and in the integer group field a grouped report partitions on.
//! For N = 2, 3 and 7 partitions the output is the serial output, byte for byte, in an
//! export and in a grouped report with totals, in CSV, NDJSON, JSON and HTML.

mod common;
use common::*;
use std::path::Path;

const ROWS: i64 = 3000;

/// Row `i` as SQL literals: id, bucket, name, amount. Ids crowd below 1,000 (two thirds
/// of the rows), then leave gaps up to 10^12; bucket is NULL for every 7th row.
fn row(i: i64) -> String {
    let id = if i % 3 != 0 { i / 3 * 2 + i % 3 } else { 1_000 + i * i * 111_111 };
    let bucket = if i % 7 == 0 { "NULL".to_string() } else { (i % 5 - 2).to_string() };
    let name = if i % 11 == 0 { "NULL".to_string() } else { format!("'name {i}'") };
    let amount = if i % 13 == 0 { "NULL".to_string() } else { format!("{}.{:02}", i * 7 - 9000, i % 100) };
    format!("({id}, {bucket}, {name}, {amount})")
}

fn inserts() -> String {
    let rows: Vec<String> = (1..=ROWS).map(row).collect();
    format!("INSERT INTO t (id, bucket, name, amount) VALUES {};", rows.join(",\n"))
}

/// A grouped report on `bucket` (an integer that may be NULL), with totals.
fn grouped_spec(url: &str, extra: &str) -> String {
    format!(
        "report: by_bucket\nsource:\n  url: \"{url}\"\n  table: t\n  key: [id]\n{extra}groups:\n  - by: bucket\n    \
         footer: \"bucket {{bucket}}: {{n}} rows, {{total}}\"\nvariables:\n  n: {{ count: \"*\", reset: bucket }}\n  \
         total: {{ sum: amount, reset: bucket }}\n  all: {{ sum: amount }}\nsummary: \"{{all}}\"\n"
    )
}

fn output(args: &[&str]) -> Vec<u8> {
    let r = run_env(args, &[("SOURCE_DATE_EPOCH", "1700000000")]);
    assert_eq!(r.code, 0, "{args:?}: {}", r.stderr);
    assert!(!r.stdout.is_empty());
    r.stdout
}

fn explain(args: &[&str]) -> String {
    let mut all = args.to_vec();
    all.push("--explain");
    let r = run(&all);
    assert_eq!(r.code, 0, "{}", r.stderr);
    r.text()
}

/// Serial against `--parallel N` for an export of `t` and the grouped report.
fn check(dir: &Path, url: &str, extra: &[&str]) {
    let spec = write(dir, "grouped.yaml", &grouped_spec(url, ""));
    let spec = spec.to_str().unwrap();
    let export = |format: &'static str| {
        let mut a = vec!["run", "--source", url, "--table", "t", "-f", format, "--batch-size", "100"];
        a.extend_from_slice(extra);
        a
    };
    let report = |format: &'static str| {
        let mut a = vec!["run", spec, "-f", format, "--batch-size", "100"];
        a.extend_from_slice(extra);
        a
    };
    // The report partitions on `bucket`, whose 5 values make at most 5 partitions.
    for (what, format, args, most) in [
        ("export", "csv", export("csv"), 7),
        ("export", "ndjson", export("ndjson"), 7),
        ("report", "csv", report("csv"), 5),
        ("report", "json", report("json"), 5),
        ("report", "html", report("html"), 5),
    ] {
        let serial = output(&args);
        for n in [2, 3, 7] {
            let mut parallel = args.clone();
            let asked = n.to_string();
            parallel.extend_from_slice(&["--parallel", &asked]);
            let plan = explain(&parallel);
            let parts = format!("parallel: {} partitions", n.min(most));
            assert!(plan.contains(&parts), "{url} {what}: {plan}");
            assert!(output(&parallel) == serial, "{url}: the {what} as {format} on {n} partitions differs from serial");
        }
    }
}

#[test]
fn parallel_output_equals_serial_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("t.sqlite");
    let c = rusqlite::Connection::open(&db).unwrap();
    c.execute_batch(&format!(
        "CREATE TABLE t (id INTEGER PRIMARY KEY, bucket INTEGER, name TEXT, amount DECIMAL(12,2)); {}",
        inserts()
    ))
    .unwrap();
    check(dir.path(), &format!("sqlite:{}", db.display()), &[]);
}

#[test]
fn parallel_output_equals_serial_on_postgres() {
    let Some(pg) = common::pg::PgDb::create("parallel") else { return };
    pg.exec(&format!(
        "CREATE TABLE t (id BIGINT PRIMARY KEY, bucket INT, name TEXT, amount NUMERIC(12,2)); {} ANALYZE t;",
        inserts()
    ));
    let dir = tempfile::tempdir().unwrap();
    check(dir.path(), &pg.url, &[]);
    // Keyset pages inside each partition too, and a fresh snapshot per statement.
    check(dir.path(), &pg.url, &["--strategy", "keyset", "--no-snapshot"]);
}

#[test]
fn parallel_output_equals_serial_on_mariadb_without_a_shared_snapshot() {
    let Some(my) = common::my::MyDb::create("parallel") else { return };
    my.sql(&format!(
        "CREATE TABLE t (id BIGINT PRIMARY KEY, bucket INT, name VARCHAR(40), amount DECIMAL(12,2)); {}",
        inserts()
    ));
    let dir = tempfile::tempdir().unwrap();
    check(dir.path(), &my.url, &["--no-snapshot"]);
    // MySQL cannot share a snapshot between connections: asked for one, it says so.
    let r = run(&["run", "--source", &my.url, "--table", "t", "--parallel", "2"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("MySQL cannot share one snapshot") && r.stderr.contains("--no-snapshot"), "{}", r.stderr);
    assert!(r.stdout.is_empty());
    let auto = explain(&["run", "--source", &my.url, "--table", "t", "--parallel", "auto"]);
    assert!(auto.contains("parallel: no (MySQL cannot share one snapshot"), "{auto}");
}

#[test]
fn what_cannot_be_read_in_parallel_reads_serially_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("t.sqlite");
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute_batch(&format!(
            "CREATE TABLE t (id INTEGER PRIMARY KEY, bucket INTEGER, name TEXT, amount DECIMAL(12,2)); {} \
             CREATE TABLE one (id INTEGER PRIMARY KEY); INSERT INTO one VALUES (5);",
            inserts()
        ))
        .unwrap();
    let url = format!("sqlite:{}", db.display());
    let by_name = write(dir.path(), "n.yaml", &grouped_spec(&url, "").replace("bucket", "name"));
    let small = write(dir.path(), "s.yaml", &grouped_spec(&url, "  parallel: auto\n"));
    for (args, why) in [
        (vec!["run", by_name.to_str().unwrap(), "--parallel", "2"], "the order's first field `name` is string"),
        (vec!["run", "--source", &url, "--table", "one", "--parallel", "3"], "too few values to split"),
        (vec!["run", small.to_str().unwrap()], "auto: 3000 rows read quickly on one connection"),
    ] {
        let plan = explain(&args);
        assert!(plan.contains("parallel: no (") && plan.contains(why), "{why}: {plan}");
        // And the run itself reads serially, to the same bytes.
        let serial: Vec<&str> = args.iter().copied().filter(|a| !["--parallel", "2", "3"].contains(a)).collect();
        assert!(output(&args) == output(&serial), "{why}");
    }
    // `auto` on a read it would split: the cores decide (half of them, SQLite sharing the
    // machine), so on 2 cores it reads serially and says why.
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute_batch(
            "CREATE TABLE big (id INTEGER PRIMARY KEY); WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL \
             SELECT i + 1 FROM n WHERE i < 1000000) INSERT INTO big SELECT i FROM n;",
        )
        .unwrap();
    let plan = explain(&["run", "--source", &url, "--table", "big", "--parallel", "auto"]);
    let cores = std::thread::available_parallelism().unwrap().get();
    match cores / 2 {
        n if n >= 2 => assert!(plan.contains("parallel: 2 partitions"), "{cores} cores: {plan}"),
        _ => assert!(plan.contains(&format!("parallel: no (auto: {cores} cores, shared with the database")), "{plan}"),
    }
    let r = run(&["run", "--source", &url, "--table", "t", "--parallel", "0"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("from 1 to 64"), "{}", r.stderr);
    let bad = write(dir.path(), "b.yaml", &grouped_spec(&url, "  parallel: 100\n"));
    let r = run(&["validate", bad.to_str().unwrap()]);
    assert_eq!(r.code, 2);
    let said = r.text() + &r.stderr;
    assert!(
        said.contains(":6:3") && said.contains("source.parallel") && said.contains("`100`: give a number"),
        "{said}"
    );
}

/// The lines of a CSV after its header, sorted.
fn sorted_rows(csv: &[u8]) -> (String, Vec<String>) {
    let text = String::from_utf8(csv.to_vec()).unwrap();
    let mut lines = text.lines().map(str::to_string);
    let header = lines.next().unwrap_or_default();
    let mut rows: Vec<String> = lines.collect();
    rows.sort();
    (header, rows)
}

#[test]
fn rows_in_any_order_interleave_the_partitions_and_each_row_comes_once() {
    let Some(pg) = common::pg::PgDb::create("parallel_any") else { return };
    pg.exec(&format!(
        "CREATE TABLE t (id BIGINT PRIMARY KEY, bucket INT, name TEXT, amount NUMERIC(12,2)); {} ANALYZE t;",
        inserts()
    ));
    let dir = tempfile::tempdir().unwrap();
    let keyed = format!("report: all\nsource:\n  url: \"{}\"\n  table: t\n", pg.url);
    let any = write(
        dir.path(),
        "any.yaml",
        &format!("{keyed}  order: any\nsummary: \"{{total}}\"\nvariables:\n  total: {{ sum: amount }}\n"),
    );
    let keyed = write(
        dir.path(),
        "key.yaml",
        &format!("{keyed}summary: \"{{total}}\"\nvariables:\n  total: {{ sum: amount }}\n"),
    );
    let plan = explain(&["run", any.to_str().unwrap(), "--parallel", "3"]);
    assert!(plan.contains("parallel: 3 partitions") && !plan.contains("ORDER BY"), "{plan}");
    let serial = output(&["run", keyed.to_str().unwrap(), "--batch-size", "50"]);
    let parallel = output(&["run", any.to_str().unwrap(), "--parallel", "3", "--batch-size", "50"]);
    assert_eq!(sorted_rows(&parallel), sorted_rows(&serial), "every row once, whatever the order");
    let total = |format| {
        let doc: serde_json::Value =
            serde_json::from_slice(&output(&["run", any.to_str().unwrap(), "--parallel", "3", "-f", format])).unwrap();
        doc["variables"]["total"].clone()
    };
    let keyed_doc: serde_json::Value =
        serde_json::from_slice(&output(&["run", keyed.to_str().unwrap(), "-f", "json"])).unwrap();
    assert_eq!(total("json"), keyed_doc["variables"]["total"], "the total of the rows in any order");
    // Groups, bursts and first/last need the rows in order: a spec error.
    let grouped = write(dir.path(), "g.yaml", &grouped_spec(&pg.url, "  order: any\n"));
    let r = run(&["validate", grouped.to_str().unwrap()]);
    let said = r.text() + &r.stderr;
    assert_eq!(r.code, 2, "{said}");
    assert!(said.contains("source.order") && said.contains("groups"), "{said}");
}
