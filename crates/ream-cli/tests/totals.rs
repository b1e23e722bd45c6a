//! A grouped spec on demo data gives the same subtotals and grand totals as SQL
//! `GROUP BY` computes on that data, for every variable kind.

mod common;
use common::*;
use rusqlite::Connection;
use serde_json::Value as J;

const SPEC: &str = r#"
report: totals
source:
  url: "sqlite:DB"
  table: invoices
  key: [id]
  joins: ["JOIN customers c ON c.id = invoices.customer_id", "JOIN regions r ON r.id = c.region_id"]
  columns:
    id: invoices.id
    region: r.name
    status: invoices.status
    customer_id: invoices.customer_id
    total: invoices.total
    paid_at: invoices.paid_at
groups:
  - by: region
  - by: status
variables:
  s_sum:   { sum: total, reset: status }
  s_count: { count: paid_at, reset: status }
  s_rows:  { count: "*", reset: status }
  s_dist:  { count_distinct: customer_id, reset: status }
  s_avg:   { avg: total, reset: status }
  s_min:   { min: total, reset: status }
  s_max:   { max: total, reset: status }
  s_first: { first: id, reset: status }
  s_last:  { last: id, reset: status }
  s_sd:    { stddev: total, reset: status }
  s_var:   { variance: total, reset: status }
  r_sum:   { sum: total, reset: region }
  r_dist:  { count_distinct: customer_id, reset: region }
  g_sum:   { sum: total }
  g_count: { count: id }
  g_max:   { max: paid_at }
"#;

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

#[test]
fn subtotals_and_totals_equal_sql_group_by() {
    let demo = demo(3000);
    let db = demo.join("demo.sqlite");
    let dir = tempfile::tempdir().unwrap();
    let spec = write(dir.path(), "totals.yaml", &SPEC.replace("DB", db.to_str().unwrap()));
    let r = run(&["run", spec.to_str().unwrap(), "--format", "json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let doc: J = serde_json::from_slice(&r.stdout).unwrap();

    let c = Connection::open(&db).unwrap();
    let from = "FROM invoices i JOIN customers c ON c.id = i.customer_id JOIN regions r ON r.id = c.region_id";
    // Per (region, status): exact cents, counts, and the moments for avg/stddev/variance.
    let q = format!(
        "SELECT r.name, i.status, CAST(round(sum(i.total) * 100) AS INTEGER), count(i.paid_at), count(*),
                count(DISTINCT i.customer_id), avg(i.total), min(i.total), max(i.total), min(i.id), max(i.id),
                sum(i.total * i.total), sum(i.total)
         {from} GROUP BY r.name, i.status ORDER BY r.name, i.status"
    );
    let mut stmt = c.prepare(&q).unwrap();
    let mut expect = stmt
        .query_map([], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, i64>(2)?,
                row.get::<_, i64>(3)?,
                row.get::<_, i64>(4)?,
                row.get::<_, i64>(5)?,
                row.get::<_, f64>(6)?,
                row.get::<_, f64>(7)?,
                row.get::<_, f64>(8)?,
                row.get::<_, i64>(9)?,
                row.get::<_, i64>(10)?,
                row.get::<_, f64>(11)?,
                row.get::<_, f64>(12)?,
            ))
        })
        .unwrap()
        .map(Result::unwrap);

    let mut seen = 0;
    for region in doc["groups"].as_array().unwrap() {
        for status in region["groups"].as_array().unwrap() {
            let e = expect.next().expect("SQL has as many groups");
            seen += 1;
            assert_eq!(
                (region["key"].as_str().unwrap(), status["key"].as_str().unwrap()),
                (e.0.as_str(), e.1.as_str())
            );
            let v = &status["variables"];
            let ctx = format!("{}/{}", e.0, e.1);
            // The sum is exact: compare cents as integers.
            assert_eq!((v["s_sum"].as_f64().unwrap() * 100.0).round() as i64, e.2, "{ctx} sum");
            assert_eq!(v["s_count"], e.3, "{ctx} count");
            assert_eq!(v["s_rows"], e.4, "{ctx} count(*)");
            assert_eq!(v["s_dist"], e.5, "{ctx} count_distinct");
            assert!(close(v["s_avg"].as_f64().unwrap(), e.6), "{ctx} avg");
            assert_eq!(v["s_min"].as_f64().unwrap(), e.7, "{ctx} min");
            assert_eq!(v["s_max"].as_f64().unwrap(), e.8, "{ctx} max");
            assert_eq!(v["s_first"], e.9, "{ctx} first (rows are in id order within a group)");
            assert_eq!(v["s_last"], e.10, "{ctx} last");
            let n = e.4 as f64;
            let var = (e.11 - e.12 * e.12 / n) / (n - 1.0);
            if e.4 > 1 {
                assert!(close(v["s_var"].as_f64().unwrap(), var), "{ctx} variance {} vs {var}", v["s_var"]);
                assert!(close(v["s_sd"].as_f64().unwrap(), var.sqrt()), "{ctx} stddev");
            } else {
                assert_eq!(v["s_var"], J::Null, "{ctx} variance of one value");
            }
            // Rows in the group are the group's rows.
            assert_eq!(status["rows"].as_array().unwrap().len() as i64, e.4, "{ctx} rows");
        }
        // Region subtotals.
        let name = region["key"].as_str().unwrap();
        let (cents, dist): (i64, i64) = c
            .query_row(
                &format!("SELECT CAST(round(sum(i.total) * 100) AS INTEGER), count(DISTINCT i.customer_id) {from} WHERE r.name = ?"),
                [name],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .unwrap();
        let v = &region["variables"];
        assert_eq!((v["r_sum"].as_f64().unwrap() * 100.0).round() as i64, cents, "{name} region sum");
        assert_eq!(v["r_dist"], dist, "{name} region count_distinct");
    }
    assert!(expect.next().is_none(), "SQL has more groups");
    assert!(seen > 10);
    // Grand totals.
    let (cents, count, max_paid): (i64, i64, String) = c
        .query_row(
            &format!("SELECT CAST(round(sum(i.total) * 100) AS INTEGER), count(*), max(i.paid_at) {from}"),
            [],
            |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
        )
        .unwrap();
    let v = &doc["variables"];
    assert_eq!((v["g_sum"].as_f64().unwrap() * 100.0).round() as i64, cents);
    assert_eq!(v["g_count"], count);
    assert_eq!(v["g_max"].as_str().unwrap().replace('T', " "), max_paid);
    assert_eq!(doc["row_count"], count);
}
