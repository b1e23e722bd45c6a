//! TPC-H Q1 written as a grouped ream spec (bench/tpch_q1.yaml) matches the SQL answer
//! row for row, on a lineitem table with the TPC-H schema and generated rows.

mod common;
use common::*;

const Q1: &str = "SELECT l_returnflag, l_linestatus,
  sum(l_quantity), sum(l_extendedprice), sum(l_extendedprice * (1 - l_discount)),
  sum(l_extendedprice * (1 - l_discount) * (1 + l_tax)),
  avg(l_quantity), avg(l_extendedprice), avg(l_discount), count(*)
FROM lineitem WHERE l_shipdate <= '1998-09-02'
GROUP BY l_returnflag, l_linestatus ORDER BY l_returnflag, l_linestatus";

#[test]
fn q1_as_a_report_matches_the_sql_answer() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("tpch.sqlite");
    let c = rusqlite::Connection::open(&db).unwrap();
    c.execute_batch(
        "CREATE TABLE lineitem (l_orderkey INTEGER, l_partkey INTEGER, l_suppkey INTEGER, l_linenumber INTEGER,
           l_quantity REAL, l_extendedprice REAL, l_discount REAL, l_tax REAL,
           l_returnflag TEXT, l_linestatus TEXT, l_shipdate TEXT, l_commitdate TEXT, l_receiptdate TEXT,
           l_shipinstruct TEXT, l_shipmode TEXT, l_comment TEXT, PRIMARY KEY (l_orderkey, l_linenumber));
         WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < 60000)
         INSERT INTO lineitem
         SELECT i / 4 + 1, i % 2000, i % 100, i % 4 + 1,
           1 + (i * 7) % 50, round(900 + ((i * 7919) % 100000) / 1.7, 2), ((i * 31) % 11) / 100.0, ((i * 17) % 9) / 100.0,
           substr('ANR', 1 + (i * 13) % 3, 1), substr('FO', 1 + (i * 5) % 2, 1),
           date('1992-01-01', '+' || ((i * 37) % 2500) || ' days'), '1995-01-01', '1995-01-02',
           'NONE', 'AIR', 'comment ' || i
         FROM s;",
    )
    .unwrap();
    let spec = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../bench/tpch_q1.yaml");
    let r = run(&["run", spec.to_str().unwrap(), "--source", &format!("sqlite:{}", db.display()), "--format", "csv"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let mut ours = csv::Reader::from_reader(&r.stdout[..]);
    assert_eq!(
        ours.headers().unwrap().iter().collect::<Vec<_>>(),
        vec![
            "l_returnflag",
            "l_linestatus",
            "sum_qty",
            "sum_base_price",
            "sum_disc_price",
            "sum_charge",
            "avg_qty",
            "avg_price",
            "avg_disc",
            "count_order"
        ]
    );
    let mut stmt = c.prepare(Q1).unwrap();
    let mut theirs = stmt.raw_query();
    let mut groups = 0;
    for rec in ours.records() {
        let rec = rec.unwrap();
        let row = theirs.next().unwrap().expect("SQL has as many groups");
        groups += 1;
        assert_eq!(&rec[0], row.get::<_, String>(0).unwrap());
        assert_eq!(&rec[1], row.get::<_, String>(1).unwrap());
        for i in 2..9 {
            let a: f64 = rec[i].parse().unwrap();
            let b: f64 = row.get(i).unwrap();
            assert!((a - b).abs() <= 1e-9 * b.abs(), "{}/{} column {i}: {a} vs {b}", &rec[0], &rec[1]);
        }
        assert_eq!(rec[9].parse::<i64>().unwrap(), row.get::<_, i64>(9).unwrap());
    }
    assert!(theirs.next().unwrap().is_none(), "SQL has more groups");
    assert_eq!(groups, 6);
}
