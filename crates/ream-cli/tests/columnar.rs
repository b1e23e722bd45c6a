//! Parquet and the Arrow IPC stream, read back by the readers people use: pyarrow and
//! DuckDB (PyPI, installed by `.ci/run`). Under CI a missing reader fails the test; a
//! plain `cargo test` without them skips loudly.

mod common;
use common::pg::PgDb;
use common::*;

use std::path::Path;

/// Rows, then per column: its Arrow type, min, max and non-NULL count, as DuckDB reads
/// the Parquet file and pyarrow reads the schema.
const SUMMARY: &str = r#"
import sys, duckdb, pyarrow.parquet as pq
path = sys.argv[1]
t = pq.read_table(path)
print(t.num_rows)
for f in t.schema:
    q = f'select min("{f.name}")::varchar, max("{f.name}")::varchar, count("{f.name}") from read_parquet(?)'
    lo, hi, n = duckdb.execute(q, [path]).fetchone()
    print(f.name, f.type, lo, hi, n, sep="|")
"#;

fn parquet_summary(path: &Path) -> Option<Vec<String>> {
    python(SUMMARY, &[path.to_str().unwrap()]).map(|s| s.lines().map(str::to_string).collect())
}

#[test]
fn parquet_of_a_sqlite_table_keeps_its_types_and_values() {
    let demo = demo(3000);
    let db = demo.join("demo.sqlite");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("invoices.parquet");
    let r = run_table(&format!("sqlite:{}", db.display()), "invoices", &["-o", out.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let Some(lines) = parquet_summary(&out) else { return };
    assert_eq!(lines[0], "3000");
    let c = rusqlite::Connection::open(&db).unwrap();
    let q = |sql: &str| -> String { c.query_row(sql, [], |r| r.get::<_, String>(0)).unwrap() };
    let want = [
        format!(
            "id|int64|{}|{}|3000",
            q("SELECT min(id) || '' FROM invoices"),
            q("SELECT max(id) || '' FROM invoices")
        ),
        format!(
            "date|date32[day]|{}|{}|3000",
            q("SELECT min(date) FROM invoices"),
            q("SELECT max(date) FROM invoices")
        ),
        format!(
            "total|decimal128(12, 2)|{}|{}|3000",
            q("SELECT printf('%.2f', min(total)) FROM invoices"),
            q("SELECT printf('%.2f', max(total)) FROM invoices")
        ),
        format!("paid_at|timestamp[us]|||{}", q("SELECT count(paid_at) || '' FROM invoices")),
    ];
    for w in &want {
        let field = w.split('|').next().unwrap();
        let got = lines.iter().find(|l| l.starts_with(&format!("{field}|"))).unwrap();
        if field == "paid_at" {
            // Its type and count (min and max print in DuckDB's own timestamp style).
            assert!(got.starts_with("paid_at|timestamp[us]|") && got.ends_with(&w[w.rfind('|').unwrap()..]), "{got}");
        } else {
            assert_eq!(got, w);
        }
    }
    let sum = python(
        "import sys, duckdb; print(duckdb.execute('select sum(total) from read_parquet(?)', [sys.argv[1]]).fetchone()[0])",
        &[out.to_str().unwrap()],
    )
    .unwrap();
    assert_eq!(sum.trim(), q("SELECT printf('%.2f', sum(total)) FROM invoices"));
}

#[test]
fn parquet_and_arrow_of_postgres_keep_types_nulls_and_extreme_values() {
    let Some(db) = PgDb::create("columnar") else { return };
    db.exec(
        "CREATE TABLE t (id int8 PRIMARY KEY, n numeric(38,0), s numeric(12,2), d date, ts timestamp,
           tz timestamptz, f float8, b bool, txt text, bin bytea);
         INSERT INTO t VALUES
           (1, 99999999999999999999999999999999999999, -9999999999.99, '0001-01-01', '0001-01-01 00:00:00',
            '1970-01-01 00:00:00+00', -1e300, true, repeat('é', 500000), '\\x00ff'),
           (2, -99999999999999999999999999999999999999, 0.01, '9999-12-31', '9999-12-31 23:59:59.999999',
            '2024-06-30 12:00:00+02', 1e-300, false, '', ''),
           (3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);",
    );
    let dir = tempfile::tempdir().unwrap();
    let parquet = dir.path().join("t.parquet");
    let arrow = dir.path().join("t.arrow");
    for (format, path) in [("parquet", &parquet), ("arrow", &arrow)] {
        let r = run(&["run", "--source", &db.url, "--table", "t", "-f", format, "-o", path.to_str().unwrap()]);
        assert_eq!(r.code, 0, "{format}: {}", r.stderr);
    }
    let script = r#"
import sys, pyarrow.parquet as pq, pyarrow.ipc as ipc
p = pq.read_table(sys.argv[1])
a = ipc.open_stream(open(sys.argv[2], 'rb')).read_all()
assert p.equals(a), "the Parquet and the Arrow stream differ"
print(p.schema.to_string(show_schema_metadata=False, show_field_metadata=False).replace("\n", ";"))
for row in p.to_pylist():
    print(repr([row[k] if not isinstance(row[k], str) else len(row[k]) for k in p.column_names]))
"#;
    let Some(out) = python(script, &[parquet.to_str().unwrap(), arrow.to_str().unwrap()]) else { return };
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[0],
        "id: int64;n: decimal128(38, 0);s: decimal128(12, 2);d: date32[day];ts: timestamp[us];\
         tz: timestamp[us, tz=+00:00];f: double;b: bool;txt: string;bin: binary"
    );
    assert!(
        lines[1].starts_with(
            "[1, Decimal('99999999999999999999999999999999999999'), Decimal('-9999999999.99'), \
         datetime.date(1, 1, 1), datetime.datetime(1, 1, 1, 0, 0), datetime.datetime(1970, 1, 1, 0, 0, tzinfo="
        ),
        "{}",
        lines[1]
    );
    assert!(lines[1].ends_with("-1e+300, True, 500000, b'\\x00\\xff']"), "{}", lines[1]);
    assert!(
        lines[2].contains(
            "Decimal('-99999999999999999999999999999999999999'), Decimal('0.01'), datetime.date(9999, 12, 31), \
         datetime.datetime(9999, 12, 31, 23, 59, 59, 999999), datetime.datetime(2024, 6, 30, 10, 0, tzinfo="
        ),
        "{}",
        lines[2]
    );
    assert_eq!(lines[3], "[3, None, None, None, None, None, None, None, None, None]");
}

#[test]
fn row_groups_and_compression_follow_the_options() {
    let demo = demo(3000);
    let source = format!("sqlite:{}", demo.join("demo.sqlite").display());
    let dir = tempfile::tempdir().unwrap();
    let script = r#"
import sys, pyarrow.parquet as pq
m = pq.ParquetFile(sys.argv[1]).metadata
print(m.num_row_groups, [m.row_group(i).num_rows for i in range(m.num_row_groups)], m.row_group(0).column(0).compression,
      m.row_group(0).column(0).statistics.has_min_max)
"#;
    for (rows, codec, want) in [
        ("1000", "zstd", "3 [1000, 1000, 1000] ZSTD True"),
        ("1024", "snappy", "3 [1024, 1024, 952] SNAPPY True"),
        ("5000", "none", "1 [3000] UNCOMPRESSED True"),
    ] {
        let out = dir.path().join(format!("{rows}.parquet"));
        let path = out.to_str().unwrap();
        let options = ["-o", path, "--parquet-row-group-rows", rows, "--parquet-compression", codec];
        let r = run_table(&source, "invoices", &options);
        assert_eq!(r.code, 0, "{}", r.stderr);
        let Some(got) = python(script, &[out.to_str().unwrap()]) else { return };
        assert_eq!(got.trim(), want);
    }
    let r = run_table(&source, "invoices", &["-f", "parquet", "--parquet-compression", "lz9"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("unknown Parquet compression `lz9`"), "{}", r.stderr);
}

#[test]
fn parquet_streams_to_a_pipe_and_a_summary_report_is_refused_before_the_database() {
    let demo = demo(300);
    let source = format!("sqlite:{}", demo.join("demo.sqlite").display());
    // To a pipe: nothing seeks back, and the reader gets a whole file.
    let r = run(&["run", "--source", &source, "--table", "invoices", "-f", "parquet"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!((&r.stdout[..4], &r.stdout[r.stdout.len() - 4..]), (&b"PAR1"[..], &b"PAR1"[..]));
    let dir = tempfile::tempdir().unwrap();
    let spec = write(
        dir.path(),
        "s.yaml",
        "report: s\nsource: {url: \"sqlite:/nonexistent.sqlite\", table: invoices}\ndetail: false\n\
         variables: {n: {count: \"*\"}}\n",
    );
    let out = dir.path().join("s.parquet");
    let r = run(&["run", spec.to_str().unwrap(), "-o", out.to_str().unwrap()]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("no detail rows (`detail: false`), and parquet writes detail rows only"), "{}", r.stderr);
    assert!(!out.exists());
}

#[test]
fn parquet_of_mariadb_keeps_its_types_and_its_sums() {
    let Some(db) = common::my::MyDb::create("columnar") else { return };
    db.sql(
        "CREATE TABLE t (id BIGINT PRIMARY KEY, price DECIMAL(15,2), d DATE, ts DATETIME(6), f DOUBLE, txt VARCHAR(20));
         INSERT INTO t WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < 1000)
           SELECT n, n * 1.25, DATE_ADD('2020-01-01', INTERVAL n DAY), TIMESTAMP('2020-01-01 00:00:00.000001') + INTERVAL n SECOND,
                  n / 7, IF(n % 10 = 0, NULL, CONCAT('row ', n)) FROM g;",
    );
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("t.parquet");
    let r = run(&["run", "--source", &db.url, "--table", "t", "-o", out.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let script = r#"
import sys, duckdb, pyarrow.parquet as pq
t = pq.read_table(sys.argv[1])
print(t.schema.to_string(show_schema_metadata=False, show_field_metadata=False).replace("\n", ";"))
print(duckdb.execute("select count(*), sum(price), min(d), max(ts), count(txt) from read_parquet(?)", [sys.argv[1]]).fetchone())
"#;
    let Some(got) = python(script, &[out.to_str().unwrap()]) else { return };
    let lines: Vec<&str> = got.lines().collect();
    assert_eq!(lines[0], "id: int64;price: decimal128(15, 2);d: date32[day];ts: timestamp[us];f: double;txt: string");
    let want = String::from_utf8(db.sql("SELECT sum(price), max(ts), count(txt) FROM t")).unwrap();
    let want: Vec<&str> = want.lines().nth(1).unwrap().split('\t').collect();
    assert!(
        lines[1].starts_with(&format!("(1000, Decimal('{}'), datetime.date(2020, 1, 2), ", want[0])),
        "{} vs {want:?}",
        lines[1]
    );
    assert!(lines[1].ends_with(&format!(", {})", want[2])), "{} vs {want:?}", lines[1]);
    assert!(lines[1].contains("datetime.datetime(2020, 1, 1, 0, 16, 40, 1)"), "max(ts) is {:?}: {}", want[1], lines[1]);
}

#[test]
fn a_grouped_report_writes_its_detail_rows_as_parquet_in_the_reports_order() {
    let demo = demo(2000);
    let spec = demo.join("reports/sales_by_region.yaml");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("sales.parquet");
    let params = ["-p", "start_date=2023-01-01", "-p", "end_date=2025-12-31"];
    let r = run(&[&["run", spec.to_str().unwrap(), "-o", out.to_str().unwrap()][..], &params].concat());
    assert_eq!(r.code, 0, "{}", r.stderr);
    // The CSV of the same report: its detail rows, in the report's order (by region).
    let csv = run(&[&["run", spec.to_str().unwrap(), "--format", "csv"][..], &params].concat());
    let mut reader = csv::Reader::from_reader(&csv.stdout[..]);
    let want: Vec<String> = reader.records().map(Result::unwrap).map(|r| format!("{}|{}", &r[0], &r[3])).collect();
    assert!(want.len() > 1000, "{}", want.len());
    let script = r#"
import sys, pyarrow.parquet as pq
t = pq.read_table(sys.argv[1])
print(",".join(t.column_names))
for region, id in zip(t.column("region").to_pylist(), t.column("id").to_pylist()):
    print(f"{region}|{id}")
"#;
    let Some(text) = python(script, &[out.to_str().unwrap()]) else { return };
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("region,date,customer,id,status,total"), "the spec's columns, in order");
    let got: Vec<&str> = lines.collect();
    assert_eq!(got, want, "the Parquet rows are the report's detail rows, in its order");
}
