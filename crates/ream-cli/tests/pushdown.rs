//! Aggregate pushdown against the streaming path, on SQLite, PostgreSQL and MariaDB: one
//! table of awkward values (NULLs in every column and group key, a group whose values
//! are all NULL, negative decimals, integers past 2^62 whose sums leave i64, 38-digit
//! decimals), every aggregate at every level. Integers, decimals, counts, minima and
//! maxima give the same bytes in every summary format; floats agree within 1e-9.

mod common;
use common::*;
use serde_json::Value as J;
use std::path::Path;

const ROWS: i64 = 1000;
const BIG: &str = "500000000000000000000000000000000000.00";

/// Row `i` as SQL literals: id, region, status, qty, amount, big, x, day, at.
fn row(i: i64) -> [String; 9] {
    let null = || "NULL".to_string();
    let text = |s: &str| format!("'{s}'");
    let void = i % 50 == 0;
    let region = if void { text("void") } else { ["north", "south", "east", "west", ""][(i % 5) as usize].to_string() };
    let region = if region.is_empty() {
        null()
    } else if void {
        region
    } else {
        text(&region)
    };
    let status = match i % 3 {
        0 => null(),
        1 => text("open"),
        _ => text("paid"),
    };
    let qty = match () {
        _ if void || i % 7 == 0 => null(),
        _ if i % 97 == 0 => (4_611_686_018_427_387_904i64 + i).to_string(),
        _ => ((i * 7919) % 2001 - 1000).to_string(),
    };
    let amount = match () {
        _ if void || i % 11 == 0 => null(),
        _ => {
            let cents = (i * 37) % 20001 - 10000;
            format!("{}{}.{:02}", if cents < 0 { "-" } else { "" }, cents.abs() / 100, cents.abs() % 100)
        }
    };
    let big = match i {
        1 => BIG.to_string(),
        2 => format!("-{BIG}"),
        _ if void => null(),
        _ => format!("{}.{:02}", i * 3, i % 100),
    };
    let x = if void || i % 9 == 0 { null() } else { format!("{:.4}", i as f64 * 1.37 - 500.0) };
    let day = match i % 17 {
        0 => null(),
        _ => text(&format!("2024-{:02}-{:02}", 1 + i % 12, 1 + i % 28)),
    };
    let at = text(&format!("2024-03-{:02} {:02}:{:02}:{:02}", 1 + i % 28, i % 24, (i * 7) % 60, (i * 13) % 60));
    [i.to_string(), region, status, qty, amount, big, x, day, at]
}

fn inserts() -> String {
    let rows: Vec<String> = (1..=ROWS).map(|i| format!("({})", row(i).join(", "))).collect();
    format!("INSERT INTO t (id, region, status, qty, amount, big, x, day, at) VALUES {};", rows.join(",\n"))
}

/// The variables every database pushes down exactly (`decimals`: and those of decimals).
fn exact_spec(url: &str, decimals: bool) -> String {
    let mut vars = String::from(
        "  n_status: { count: \"*\", reset: status }\n  n_region: { count: \"*\", reset: region }\n  n: { count: \"*\" }\n  \
         cnt_qty: { count: qty, reset: status }\n  cnt_qty_all: { count: qty }\n  \
         distinct_day: { count_distinct: day, reset: status }\n  \
         sum_qty: { sum: qty, reset: status }\n  sum_qty_region: { sum: qty, reset: region }\n  sum_qty_all: { sum: qty }\n  \
         min_qty: { min: qty, reset: region }\n  max_qty: { max: qty, reset: status }\n  \
         min_day: { min: day }\n  max_day: { max: day, reset: region }\n  max_at: { max: at, reset: status }\n  \
         min_x: { min: x, reset: region }\n",
    );
    let mut footer =
        "{status}: {n_status} rows, {cnt_qty} qty, {distinct_day} days, {sum_qty}, {max_qty}, {max_at}".to_string();
    if decimals {
        vars.push_str(
            "  sum_amount: { sum: amount, reset: status }\n  sum_amount_region: { sum: amount, reset: region }\n  \
             sum_big: { sum: big, reset: region }\n  sum_big_all: { sum: big }\n  avg_amount: { avg: amount, reset: region }\n  \
             avg_amount_status: { avg: amount, reset: status }\n  \
             min_amount: { min: amount, reset: status }\n  max_big: { max: big }\n",
        );
        footer.push_str(", {sum_amount}, {avg_amount_status:number:2}, {min_amount}");
    }
    format!(
        "report: exact\nsource:\n  url: \"{url}\"\n  table: t\ngroups:\n  - by: region\n    header: \"Region {{region}}\"\n    \
         footer: \"{{region}}: {{n_region}} rows, {{sum_qty_region}}, {{min_qty}}, {{max_day}}, {{min_x}}\"\n  \
         - by: status\n    footer: \"{footer}\"\nvariables:\n{vars}summary: \"{{n}} rows, {{sum_qty_all}}, {{min_day}}\"\ndetail: false\n"
    )
}

/// Float statistics: averages, float sums, and (`moments`) variances and deviations.
fn float_spec(url: &str, moments: bool) -> String {
    let mut vars = String::from(
        "  sum_x: { sum: x, reset: status }\n  sum_x_all: { sum: x }\n  avg_x: { avg: x, reset: region }\n  \
         avg_qty: { avg: qty, reset: status }\n  avg_qty_all: { avg: qty }\n  \
         sum_priced: { sum: priced, reset: status }\n  avg_priced: { avg: priced, reset: region }\n",
    );
    if moments {
        vars.push_str(
            "  sd_x: { stddev: x, reset: status }\n  var_x: { variance: x, reset: region }\n  \
             sd_qty: { stddev: qty }\n  var_amount: { variance: amount, reset: status }\n",
        );
    }
    format!(
        "report: floats\nsource:\n  url: \"{url}\"\n  table: t\n  columns:\n    region: region\n    status: status\n    \
         x: x\n    qty: qty\n    amount: amount\n    priced: {{ expr: \"amount * 1.5 - qty\", type: float }}\ngroups:\n  - by: region\n  - by: status\nvariables:\n{vars}detail: false\n"
    )
}

const FORMATS: [&str; 6] = ["csv", "ndjson", "json", "html", "xlsx", "pdf"];

/// The report in `format`, pushed down or not.
fn output(spec: &Path, format: &str, pushdown: bool) -> Vec<u8> {
    let mut args = vec!["run", spec.to_str().unwrap(), "-f", format, "-o", "-"];
    if !pushdown {
        args.push("--no-pushdown");
    }
    let r = run_env(&args, &[("SOURCE_DATE_EPOCH", "1700000000")]);
    assert_eq!(r.code, 0, "{format} (pushdown {pushdown}): {}", r.stderr);
    r.stdout
}

fn explain(spec: &Path) -> String {
    explain_as(spec, "csv")
}

fn explain_as(spec: &Path, format: &str) -> String {
    let r = run(&["run", spec.to_str().unwrap(), "--explain", "-f", format]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    r.text()
}

/// Every number of `a` within 1e-9 (relative) of `b`'s, everything else equal.
fn close(a: &J, b: &J, at: &str) {
    match (a, b) {
        (J::Object(x), J::Object(y)) => {
            assert_eq!(x.keys().collect::<Vec<_>>(), y.keys().collect::<Vec<_>>(), "{at}");
            for (k, v) in x {
                close(v, &y[k], &format!("{at}.{k}"));
            }
        }
        (J::Array(x), J::Array(y)) => {
            assert_eq!(x.len(), y.len(), "{at}");
            for (i, (u, v)) in x.iter().zip(y).enumerate() {
                close(u, v, &format!("{at}[{i}]"));
            }
        }
        (J::Number(x), J::Number(y)) => {
            let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
            assert!((x - y).abs() <= 1e-9 * x.abs().max(y.abs()).max(1e-300), "{at}: {x} vs {y}");
        }
        // Footers print floats in full: compare them as the values do.
        (J::String(_), J::String(_)) if at.ends_with("footer") || at.ends_with("summary") => {}
        _ => assert_eq!(a, b, "{at}"),
    }
}

fn check(dir: &Path, url: &str, decimals: bool, moments: bool) {
    let exact = write(dir, "exact.yaml", &exact_spec(url, decimals));
    let plan = explain(&exact);
    assert!(plan.contains("pushdown: yes") && plan.contains("GROUP BY"), "{plan}");
    for format in FORMATS {
        let (pushed, streamed) = (output(&exact, format, true), output(&exact, format, false));
        assert!(!pushed.is_empty());
        assert!(pushed == streamed, "{url}: {format} differs between pushdown and streaming");
    }
    let doc: J = serde_json::from_slice(&output(&exact, "json", true)).unwrap();
    assert_eq!(doc["row_count"], ROWS, "the report counts the rows, not the groups");
    let floats = write(dir, "floats.yaml", &float_spec(url, moments));
    assert!(explain(&floats).contains("pushdown: yes"));
    let pushed: J = serde_json::from_slice(&output(&floats, "json", true)).unwrap();
    let streamed: J = serde_json::from_slice(&output(&floats, "json", false)).unwrap();
    close(&pushed, &streamed, "");
}

#[test]
fn pushdown_equals_streaming_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("t.sqlite");
    let c = rusqlite::Connection::open(&db).unwrap();
    c.execute_batch(&format!(
        "CREATE TABLE t (id INTEGER PRIMARY KEY, region TEXT, status TEXT, qty BIGINT, amount DECIMAL(12,2), \
         big DECIMAL(38,2), x REAL, day DATE, at DATETIME); {}",
        inserts()
    ))
    .unwrap();
    check(dir.path(), &format!("sqlite:{}", db.display()), false, false);
    // What SQLite cannot aggregate exactly stays in ream, and --explain says why.
    let decimal = write(dir.path(), "d.yaml", &exact_spec(&format!("sqlite:{}", db.display()), true));
    assert!(explain(&decimal).contains("pushdown: no (`sum_amount`: SQLite sums decimals as floats"));
    let moments = write(dir.path(), "m.yaml", &float_spec(&format!("sqlite:{}", db.display()), true));
    assert!(explain(&moments).contains("pushdown: no (`sd_x`: SQLite has no sample variance)"));
}

#[test]
fn pushdown_equals_streaming_on_postgres() {
    let Some(pg) = common::pg::PgDb::create("pushdown") else { return };
    pg.exec(&format!(
        "CREATE TABLE t (id BIGINT PRIMARY KEY, region TEXT, status TEXT, qty BIGINT, amount NUMERIC(12,2), \
         big NUMERIC(38,2), x DOUBLE PRECISION, day DATE, at TIMESTAMP); {}",
        inserts()
    ));
    let dir = tempfile::tempdir().unwrap();
    check(dir.path(), &pg.url, true, true);
}

#[test]
fn pushdown_equals_streaming_on_mariadb() {
    let Some(my) = common::my::MyDb::create("pushdown") else { return };
    my.sql(&format!(
        "CREATE TABLE t (id BIGINT PRIMARY KEY, region VARCHAR(20), status VARCHAR(20), qty BIGINT, \
         amount DECIMAL(12,2), big DECIMAL(38,2), x DOUBLE, day DATE, at DATETIME(6)); {}",
        inserts()
    ));
    let dir = tempfile::tempdir().unwrap();
    check(dir.path(), &my.url, true, true);
}

#[test]
fn what_cannot_be_pushed_down_reads_its_rows_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("t.sqlite");
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute_batch(&format!(
            "CREATE TABLE t (id INTEGER PRIMARY KEY, region TEXT, status TEXT, qty BIGINT, amount DECIMAL(12,2), \
             big DECIMAL(38,2), x REAL, day DATE, at DATETIME); {}",
            inserts()
        ))
        .unwrap();
    let url = format!("sqlite:{}", db.display());
    let base = exact_spec(&url, false);
    for (change, why, format) in [
        (base.replace("n: { count: \"*\" }", "n: { first: qty }"), "`n`: `first` needs the rows in their order", "csv"),
        (
            base.replace(
                "distinct_day: { count_distinct: day, reset: status }",
                "distinct_day: { count_distinct: day }",
            ),
            "`distinct_day`: a distinct count of an outer group or the report cannot be added up",
            "csv",
        ),
        (base.replace("header: \"Region {region}\"", "header: \"Region {region} from {day}\""), "shows `day`", "csv"),
        (base.replace("  table: t\n", "  table: t\n  pushdown: false\n"), "turned off (source.pushdown: false)", "csv"),
        // A chart is drawn from the rows, where the format shows it (CSV shows none).
        (
            base.replace("detail: false\n", "detail: false\ncharts:\n  - { id: c, kind: bar, x: { field: region } }\n"),
            "charts",
            "html",
        ),
    ] {
        let spec = write(dir.path(), "no.yaml", &change);
        let plan = explain_as(&spec, format);
        assert!(plan.contains("pushdown: no (") && plan.contains(why), "{why}: {plan}");
        assert!(!plan.contains("GROUP BY"), "{plan}");
    }
    let spec = write(dir.path(), "yes.yaml", &base);
    let r = run(&["run", spec.to_str().unwrap(), "--explain", "--no-pushdown"]);
    assert!(r.text().contains("pushdown: no (turned off (--no-pushdown))"), "{}", r.text());
    // A report with detail rows says nothing of pushdown.
    let detail = write(dir.path(), "detail.yaml", &base.replace("detail: false\n", ""));
    assert!(!explain(&detail).contains("pushdown"));
}
