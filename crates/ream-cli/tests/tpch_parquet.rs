//! TPC-H sf0.1 `lineitem` (600,572 rows, from `tpchgen-cli` on PyPI) in SQLite,
//! PostgreSQL and MariaDB, written as Parquet by ream and read back by pyarrow and
//! DuckDB: the row count, `sum(l_extendedprice)` and the min and max of every column
//! equal the source's own SQL, the column types follow the source's (integers as int64,
//! as ream writes every integer), and the row groups follow `--parquet-row-group-rows`.

mod common;
use common::my::MyDb;
use common::pg::PgDb;
use common::*;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

const COLUMNS: [&str; 16] = [
    "l_orderkey",
    "l_partkey",
    "l_suppkey",
    "l_linenumber",
    "l_quantity",
    "l_extendedprice",
    "l_discount",
    "l_tax",
    "l_returnflag",
    "l_linestatus",
    "l_shipdate",
    "l_commitdate",
    "l_receiptdate",
    "l_shipinstruct",
    "l_shipmode",
    "l_comment",
];

const GROUP_ROWS: usize = 100_000;

/// `lineitem.csv` at sf0.1, generated once per test binary. `None` (skipped) without
/// tpchgen-cli outside CI.
fn lineitem_csv() -> Option<PathBuf> {
    static CSV: OnceLock<Option<PathBuf>> = OnceLock::new();
    CSV.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("ream-test-tpch-{}", std::process::id()));
        let made = Command::new("tpchgen-cli")
            .args(["csv", "-s", "0.1", "--tables=lineitem", &format!("--output-dir={}", dir.display())])
            .output();
        match made {
            Ok(o) if o.status.success() => Some(dir.join("lineitem.csv")),
            other if std::env::var_os("CI").is_some() => panic!("tpchgen-cli is required in CI: {other:?}"),
            _ => {
                eprintln!("\n*** SKIPPED: no tpchgen-cli (pip install tpchgen-cli) ***\n");
                None
            }
        }
    })
    .clone()
}

/// The aggregates the source and DuckDB both compute: count, sum(l_extendedprice), then
/// min and max of each column.
fn aggregates_sql(cast: impl Fn(&str) -> String) -> String {
    let mut items = vec!["count(*)".to_string(), cast("sum(l_extendedprice)")];
    for c in COLUMNS {
        items.push(cast(&format!("min({c})")));
        items.push(cast(&format!("max({c})")));
    }
    format!("SELECT {} FROM lineitem", items.join(", "))
}

/// Row count, row-group sizes and Arrow types as pyarrow reads the file; then DuckDB's
/// aggregates, one per line.
const READ_BACK: &str = r#"
import sys, duckdb, pyarrow.parquet as pq
path, sql = sys.argv[1], sys.argv[2]
f = pq.ParquetFile(path)
print(f.metadata.num_rows)
print(",".join(str(f.metadata.row_group(i).num_rows) for i in range(f.metadata.num_row_groups)))
print(",".join(f"{x.name}:{x.type}" for x in f.schema_arrow))
for v in duckdb.execute(sql.replace("FROM lineitem", "FROM read_parquet(?)"), [path]).fetchone():
    print(v)
"#;

/// Equal as numbers where both are numbers (a float sum to 1e-9 of itself), else as text.
fn same(source: &str, parquet: &str) -> bool {
    match (source.trim().parse::<f64>(), parquet.trim().parse::<f64>()) {
        (Ok(a), Ok(b)) => (a - b).abs() <= 1e-9 * a.abs().max(1.0),
        _ => source.trim() == parquet.trim(),
    }
}

/// Write the source's lineitem as Parquet and compare it with the source's aggregates.
fn check(source_url: &str, source_values: Vec<String>, types: &str) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("lineitem.parquet");
    let r = run(&[
        "run",
        "--source",
        source_url,
        "--table",
        "lineitem",
        "--parquet-row-group-rows",
        &GROUP_ROWS.to_string(),
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let sql = aggregates_sql(|e| format!("{e}::varchar"));
    let Some(text) = python(READ_BACK, &[out.to_str().unwrap(), &sql]) else { return };
    let lines: Vec<&str> = text.lines().collect();
    let rows: usize = lines[0].parse().unwrap();
    assert_eq!(rows.to_string(), source_values[0], "row count");
    let groups: Vec<usize> = lines[1].split(',').map(|n| n.parse().unwrap()).collect();
    assert_eq!(groups.len(), rows.div_ceil(GROUP_ROWS), "{groups:?}");
    assert!(groups[..groups.len() - 1].iter().all(|&g| g == GROUP_ROWS), "{groups:?}");
    assert_eq!(groups.iter().sum::<usize>(), rows);
    assert_eq!(lines[2], types, "column types");
    let names = ["count", "sum(l_extendedprice)"]
        .into_iter()
        .map(String::from)
        .chain(COLUMNS.iter().flat_map(|c| [format!("min({c})"), format!("max({c})")]));
    for ((name, want), got) in names.zip(&source_values).zip(&lines[3..]) {
        assert!(same(want, got), "{name}: the source says {want}, the Parquet file {got}");
    }
    assert_eq!(lines.len() - 3, source_values.len());
}

fn split_values(out: &[u8], sep: char) -> Vec<String> {
    String::from_utf8_lossy(out).trim_end().split(sep).map(str::to_string).collect()
}

const INTEGERS: &str = "l_orderkey:int64,l_partkey:int64,l_suppkey:int64,l_linenumber";
const TEXTS: &str = "l_returnflag:string,l_linestatus:string";
const REST: &str = "l_shipinstruct:string,l_shipmode:string,l_comment:string";

#[test]
fn parquet_of_lineitem_from_sqlite_equals_its_sql() {
    let Some(csv) = lineitem_csv() else { return };
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("tpch.sqlite");
    let schema = "CREATE TABLE lineitem (l_orderkey INTEGER, l_partkey INTEGER, l_suppkey INTEGER, \
        l_linenumber INTEGER, l_quantity REAL, l_extendedprice REAL, l_discount REAL, l_tax REAL, \
        l_returnflag TEXT, l_linestatus TEXT, l_shipdate TEXT, l_commitdate TEXT, l_receiptdate TEXT, \
        l_shipinstruct TEXT, l_shipmode TEXT, l_comment TEXT, PRIMARY KEY (l_orderkey, l_linenumber));";
    let load = format!(".import --csv --skip 1 {} lineitem", csv.display());
    let made = Command::new("sqlite3").arg(&db).args([schema, &load]).output().unwrap();
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let out = Command::new("sqlite3").arg(&db).arg(aggregates_sql(|e| e.to_string())).output().unwrap();
    assert!(out.status.success());
    let reals = "l_quantity:double,l_extendedprice:double,l_discount:double,l_tax:double";
    let dates = "l_shipdate:string,l_commitdate:string,l_receiptdate:string";
    let types = format!("{INTEGERS}:int64,{reals},{TEXTS},{dates},{REST}");
    check(&format!("sqlite:{}", db.display()), split_values(&out.stdout, '|'), &types);
}

/// The TPC-H schema of a server database: exact decimals, dates, bounded text.
const SERVER_SCHEMA: &str = "CREATE TABLE lineitem (l_orderkey bigint, l_partkey bigint, l_suppkey bigint, \
    l_linenumber integer, l_quantity numeric(15,2), l_extendedprice numeric(15,2), l_discount numeric(15,2), \
    l_tax numeric(15,2), l_returnflag varchar(1), l_linestatus varchar(1), l_shipdate date, l_commitdate date, \
    l_receiptdate date, l_shipinstruct varchar(25), l_shipmode varchar(10), l_comment varchar(44), \
    PRIMARY KEY (l_orderkey, l_linenumber))";

/// Its columns in Parquet: DECIMAL(15,2) and DATE kept.
fn server_types() -> String {
    let money = ["l_quantity", "l_extendedprice", "l_discount", "l_tax"].map(|c| format!("{c}:decimal128(15, 2)"));
    let dates = ["l_shipdate", "l_commitdate", "l_receiptdate"].map(|c| format!("{c}:date32[day]"));
    format!("{INTEGERS}:int64,{},{TEXTS},{},{REST}", money.join(","), dates.join(","))
}

#[test]
fn parquet_of_lineitem_from_postgres_equals_its_sql() {
    let Some(csv) = lineitem_csv() else { return };
    let Some(db) = PgDb::create("tpch_parquet") else { return };
    db.exec(SERVER_SCHEMA);
    db.psql(&format!("\\copy lineitem FROM '{}' WITH (FORMAT csv, HEADER true)", csv.display()));
    let out = Command::new("psql")
        .args(["-X", "-At", "-F", "|", "-d", &db.url, "-c", &aggregates_sql(|e| format!("{e}::text"))])
        .output()
        .unwrap();
    assert!(out.status.success());
    check(&db.url, split_values(&out.stdout, '|'), &server_types());
}

#[test]
fn parquet_of_lineitem_from_mariadb_equals_its_sql() {
    let Some(csv) = lineitem_csv() else { return };
    let Some(db) = MyDb::create("tpch_parquet") else { return };
    db.sql(SERVER_SCHEMA);
    db.load_csv("lineitem", Path::new(&csv));
    let out = db.sql(&aggregates_sql(|e| e.to_string()));
    let values: Vec<String> =
        String::from_utf8_lossy(&out).lines().nth(1).unwrap().split('\t').map(String::from).collect();
    check(&db.url, values, &server_types());
}
