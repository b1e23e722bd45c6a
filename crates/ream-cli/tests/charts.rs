//! Charts: aggregates equal SQL's GROUP BY, whatever the batch size; top-N and series
//! fold their tails into `other` exactly; raw points are downsampled keeping the
//! extremes; the HTML with its SVG charts is valid; bad chart specs fail before a byte.

mod common;
use common::*;
use serde_json::Value as J;
use std::collections::BTreeMap;

/// The demo's invoices with their region and customer, and every kind of chart.
const SPEC: &str = r#"
report: charts
source:
  table: invoices
  key: [id]
  joins:
    - "JOIN customers c ON c.id = invoices.customer_id"
    - "JOIN regions r ON r.id = c.region_id"
  columns:
    id: invoices.id
    date: invoices.date
    region: r.name
    customer: c.name
    status: invoices.status
    total: invoices.total
    paid_at: invoices.paid_at
detail: false
variables:
  n: { count: "*" }
charts:
  - { id: by_day, kind: line, x: { field: date, bucket: day }, y: { sum: total }, max_points: 5000 }
  - { id: by_week, kind: bar, x: { field: date, bucket: week }, y: { count: "*" } }
  - { id: by_month, kind: area, x: { field: date, bucket: month }, y: { avg: total }, series: status }
  - { id: by_quarter, kind: bar, x: { field: date, bucket: quarter }, y: { max: total }, series: region, stacked: true }
  - { id: by_year, kind: line, x: { field: date, bucket: year }, y: { min: total } }
  - { id: paid_by_hour, kind: bar, x: { field: paid_at, bucket: hour }, y: { count: paid_at }, max_buckets: 1000000 }
  - { id: top_customers, kind: bar, x: { field: customer, top: 5 }, y: { sum: total } }
  - { id: regions, kind: pie, x: { field: region }, y: { sum: total } }
  - { id: sizes, kind: histogram, x: { field: total, bins: 12 }, series: status }
  - { id: fixed_bins, kind: bar, x: { field: total, bin_width: 2500 }, y: { count: "*" } }
  - { id: two_series, kind: line, x: { field: date, bucket: year }, y: { sum: total }, series: status, max_series: 2 }
  - { id: points, kind: scatter, x: { field: id }, y: { field: total }, max_points: 100 }
"#;

fn spec_file(dir: &std::path::Path) -> std::path::PathBuf {
    write(dir, "charts.yaml", SPEC)
}

fn json_report(spec: &std::path::Path, source: &str, batch: &str) -> Vec<u8> {
    let r = run(&["run", spec.to_str().unwrap(), "--source", source, "--format", "json", "--batch-size", batch]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    r.stdout
}

fn chart<'a>(doc: &'a J, id: &str) -> &'a J {
    doc["charts"].as_array().unwrap().iter().find(|c| c["id"] == id).unwrap_or_else(|| panic!("no chart {id}"))
}

/// A chart's points as {series name or "": {x: y}} with x and y as text (y rounded to 2).
fn points(c: &J) -> BTreeMap<String, BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for s in c["series"].as_array().unwrap() {
        let name = s["name"].as_str().unwrap_or("").to_string();
        let pts: &mut BTreeMap<String, String> = out.entry(name).or_default();
        for p in s["points"].as_array().unwrap() {
            let x = match &p["x"] {
                J::String(s) => s.clone(),
                other => other.to_string(),
            };
            pts.insert(x, round2(&p["y"]));
        }
    }
    out
}

fn round2(v: &J) -> String {
    match v {
        J::Null => "null".into(),
        J::Number(n) => format!("{:.2}", n.as_f64().unwrap()),
        other => panic!("not a number: {other}"),
    }
}

/// The same shape from SQL rows of (series, x, y).
fn sql_points(db: &rusqlite::Connection, sql: &str) -> BTreeMap<String, BTreeMap<String, String>> {
    let mut out: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let mut stmt = db.prepare(sql).unwrap();
    let rows = stmt
        .query_map([], |r| {
            let s: String = r.get(0)?;
            let x: rusqlite::types::Value = r.get(1)?;
            let y: Option<f64> = r.get(2)?;
            Ok((s, x, y))
        })
        .unwrap();
    for row in rows {
        let (s, x, y) = row.unwrap();
        let x = match x {
            rusqlite::types::Value::Text(t) => t,
            rusqlite::types::Value::Integer(i) => i.to_string(),
            rusqlite::types::Value::Real(f) => J::from(f).to_string(),
            other => format!("{other:?}"),
        };
        out.entry(s).or_default().insert(x, y.map_or("null".into(), |y| format!("{y:.2}")));
    }
    out
}

/// (series, x, y) rows in SQL's order (ORDER BY series, x).
fn sql_raw(db: &rusqlite::Connection, sql: &str) -> Vec<(String, String, f64)> {
    let mut stmt = db.prepare(&format!("{sql} ORDER BY 1, 2")).unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).unwrap().map(Result::unwrap).collect()
}

const FROM: &str = "FROM invoices i JOIN customers c ON c.id = i.customer_id JOIN regions r ON r.id = c.region_id";

#[test]
fn chart_aggregates_equal_sql_group_by_at_every_batch_size() {
    let demo = demo(3000);
    let dir = tempfile::tempdir().unwrap();
    let spec = spec_file(dir.path());
    let source = format!("sqlite:{}", demo.join("demo.sqlite").display());
    let base = json_report(&spec, &source, "1000");
    for batch in ["1", "7"] {
        assert!(json_report(&spec, &source, batch) == base, "batch size {batch} changes the charts");
    }
    let doc: J = serde_json::from_slice(&base).unwrap();
    let db = rusqlite::Connection::open(demo.join("demo.sqlite")).unwrap();
    let q = |sql: &str| sql_points(&db, &sql.replace("{FROM}", FROM));

    assert_eq!(points(chart(&doc, "by_day")), q("SELECT '', i.date, sum(i.total) {FROM} GROUP BY i.date"));
    // Weeks start on Monday: the Monday on or before the date.
    assert_eq!(
        points(chart(&doc, "by_week")),
        q("SELECT '', date(i.date, '-6 days', 'weekday 1'), count(*) {FROM} GROUP BY 2")
    );
    // Averages are floats: equal to SQL's within a part in 10^12, not to the last digit.
    let avg = chart(&doc, "by_month");
    let want =
        sql_raw(&db, &format!("SELECT i.status, substr(i.date, 1, 7) || '-01', avg(i.total) {FROM} GROUP BY 1, 2"));
    let got: Vec<(String, String, f64)> = avg["series"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| {
            s["points"].as_array().unwrap().iter().map(move |p| {
                (
                    s["name"].as_str().unwrap().to_string(),
                    p["x"].as_str().unwrap().to_string(),
                    p["y"].as_f64().unwrap(),
                )
            })
        })
        .collect();
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(&want) {
        assert_eq!((&g.0, &g.1), (&w.0, &w.1));
        assert!((g.2 - w.2).abs() <= w.2.abs() * 1e-12, "{g:?} vs {w:?}");
    }
    assert_eq!(
        points(chart(&doc, "by_quarter")),
        q("SELECT r.name, substr(i.date, 1, 4) || '-' || printf('%02d', (CAST(substr(i.date, 6, 2) AS INTEGER) - 1) / 3 * 3 + 1) || '-01',
                  max(i.total) {FROM} GROUP BY 1, 2")
    );
    assert_eq!(
        points(chart(&doc, "by_year")),
        q("SELECT '', substr(i.date, 1, 4) || '-01-01', min(i.total) {FROM} GROUP BY 2")
    );
    let by_hour = chart(&doc, "paid_by_hour");
    assert_eq!(
        points(by_hour),
        q("SELECT '', strftime('%Y-%m-%dT%H:00:00', i.paid_at), count(*) {FROM} WHERE i.paid_at IS NOT NULL GROUP BY 2")
    );
    // Unpaid invoices have no x: they are counted as skipped, not lost silently.
    let unpaid: i64 = db.query_row("SELECT count(*) FROM invoices WHERE paid_at IS NULL", [], |r| r.get(0)).unwrap();
    assert_eq!(by_hour["skipped"], unpaid);
    assert_eq!(by_hour["rows"], 3000);

    assert_eq!(points(chart(&doc, "regions")), q("SELECT '', r.name, sum(i.total) {FROM} GROUP BY 2"));

    // Histogram: bins of the width the chart chose, as SQL computes them (totals are
    // positive, so truncating is flooring).
    let sizes = chart(&doc, "sizes");
    let width = sizes["x"]["width"].as_f64().unwrap();
    let bins = points(sizes).values().flat_map(|p| p.keys()).collect::<std::collections::BTreeSet<_>>().len();
    assert!((4..=12).contains(&bins), "{bins} bins of {width} for 12 asked");
    assert_eq!(
        points(sizes),
        q(&format!("SELECT i.status, CAST(i.total / {width} AS INTEGER) * {width}, count(*) {{FROM}} GROUP BY 1, 2"))
    );
    assert_eq!(
        points(chart(&doc, "fixed_bins")),
        q("SELECT '', CAST(i.total / 2500 AS INTEGER) * 2500, count(*) {FROM} GROUP BY 2")
    );
}

#[test]
fn top_categories_and_extra_series_fold_into_other_exactly() {
    let demo = demo(3000);
    let dir = tempfile::tempdir().unwrap();
    let spec = spec_file(dir.path());
    let source = format!("sqlite:{}", demo.join("demo.sqlite").display());
    let doc: J = serde_json::from_slice(&json_report(&spec, &source, "1000")).unwrap();
    let db = rusqlite::Connection::open(demo.join("demo.sqlite")).unwrap();

    let top = chart(&doc, "top_customers");
    assert_eq!(top["x"]["other"], true);
    let got: Vec<(String, String)> = top["series"][0]["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["x"].as_str().unwrap().to_string(), round2(&p["y"])))
        .collect();
    let mut stmt = db
        .prepare(&format!("SELECT c.name, sum(i.total) AS s {FROM} GROUP BY c.name ORDER BY s DESC, c.name LIMIT 5"))
        .unwrap();
    let mut want: Vec<(String, String)> = stmt
        .query_map([], |r| Ok((r.get::<_, String>(0)?, format!("{:.2}", r.get::<_, f64>(1)?))))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let names: Vec<String> = want.iter().map(|w| format!("'{}'", w.0.replace('\'', "''"))).collect();
    let rest: f64 = db
        .query_row(&format!("SELECT sum(i.total) {FROM} WHERE c.name NOT IN ({})", names.join(",")), [], |r| r.get(0))
        .unwrap();
    want.push(("other".into(), format!("{rest:.2}")));
    assert_eq!(got, want, "the five largest customers, largest first, then the rest as other");

    // max_series: 2 keeps the two largest statuses by total; the others sum up as `other`.
    let two = chart(&doc, "two_series");
    let names: Vec<&str> = two["series"].as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap()).collect();
    let mut stmt =
        db.prepare("SELECT status FROM invoices GROUP BY status ORDER BY sum(total) DESC, status LIMIT 2").unwrap();
    let mut kept: Vec<String> = stmt.query_map([], |r| r.get(0)).unwrap().map(Result::unwrap).collect();
    kept.sort();
    assert_eq!(names, vec![kept[0].as_str(), kept[1].as_str(), "other"]);
    let other = points(two)["other"].clone();
    let want = sql_points(
        &db,
        &format!(
            "SELECT 'other', substr(date, 1, 4) || '-01-01', sum(total) FROM invoices WHERE status NOT IN ('{}', '{}') GROUP BY 2",
            kept[0], kept[1]
        ),
    );
    assert_eq!(other, want["other"]);
}

#[test]
fn raw_points_are_downsampled_keeping_the_extremes_and_the_ends() {
    let demo = demo(3000);
    let dir = tempfile::tempdir().unwrap();
    let spec = spec_file(dir.path());
    let source = format!("sqlite:{}", demo.join("demo.sqlite").display());
    let doc: J = serde_json::from_slice(&json_report(&spec, &source, "7")).unwrap();
    let c = chart(&doc, "points");
    assert_eq!(c["downsampled"]["method"], "m4");
    assert_eq!(c["downsampled"]["points_in"], 3000);
    let pts = c["series"][0]["points"].as_array().unwrap();
    assert!(pts.len() <= 100 && pts.len() >= 50, "{} points", pts.len());
    let xs: Vec<i64> = pts.iter().map(|p| p["x"].as_i64().unwrap()).collect();
    assert!(xs.windows(2).all(|w| w[0] <= w[1]), "points in x order");
    let ys: Vec<String> = pts.iter().map(|p| round2(&p["y"])).collect();
    let db = rusqlite::Connection::open(demo.join("demo.sqlite")).unwrap();
    let (min_id, max_id, lo, hi): (i64, i64, f64, f64) = db
        .query_row("SELECT min(id), max(id), min(total), max(total) FROM invoices", [], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })
        .unwrap();
    assert_eq!((xs[0], *xs.last().unwrap()), (min_id, max_id), "the first and last points");
    assert!(ys.contains(&format!("{lo:.2}")), "the smallest total {lo} is kept");
    assert!(ys.contains(&format!("{hi:.2}")), "the largest total {hi} is kept");
    // Every kept point is a real row.
    for p in pts {
        let total: f64 =
            db.query_row("SELECT total FROM invoices WHERE id = ?", [p["x"].as_i64().unwrap()], |r| r.get(0)).unwrap();
        assert_eq!(format!("{total:.2}"), round2(&p["y"]));
    }
}

#[test]
fn html_draws_every_chart_as_inline_svg() {
    let demo = demo(3000);
    let dir = tempfile::tempdir().unwrap();
    let spec = spec_file(dir.path());
    let out = dir.path().join("charts.html");
    let source = format!("sqlite:{}", demo.join("demo.sqlite").display());
    let r = run(&["run", spec.to_str().unwrap(), "--source", &source, "-o", out.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let html = std::fs::read_to_string(&out).unwrap();
    let doc = scraper::Html::parse_document(&html);
    let sel = |s: &str| scraper::Selector::parse(s).unwrap();
    let figures: Vec<_> = doc.select(&sel("section.charts figure.chart")).collect();
    assert_eq!(figures.len(), 12);
    let count = |id: &str, what: &str| {
        let f = figures.iter().find(|f| f.value().attr("data-chart") == Some(id)).unwrap();
        f.select(&sel(what)).count()
    };
    // One bar per (week), one slice per region, one polyline per status series…
    let weeks: usize =
        chart_points(&demo, "SELECT count(DISTINCT date(date, '-6 days', 'weekday 1')) FROM invoices") as usize;
    assert_eq!(count("by_week", "g.series rect"), weeks);
    let regions = chart_points(&demo, "SELECT count(*) FROM regions") as usize;
    assert_eq!(count("regions", "path"), regions);
    assert_eq!(count("by_month", "polyline"), 4);
    assert_eq!(count("by_month", "g.legend"), 4);
    let dots = count("points", "circle");
    assert!((50..=100).contains(&dots), "{dots} points drawn for max_points 100");
    // Readable dates on the time axis, and the downsampling said out loud.
    let by_day = figures.iter().find(|f| f.value().attr("data-chart") == Some("by_day")).unwrap();
    let labels: Vec<String> = by_day.select(&sel("g.x-axis text")).map(|t| t.text().collect()).collect();
    assert!(labels.iter().any(|l| l.len() >= 8 && l.contains(' ')), "month labels like `Mar 2024`: {labels:?}");
    let note: String = figures
        .iter()
        .find(|f| f.value().attr("data-chart") == Some("points"))
        .unwrap()
        .select(&sel(".chart-note"))
        .flat_map(|n| n.text())
        .collect();
    assert!(note.contains("3,000 points reduced to"), "{note}");
    html_is_valid(&out);
}

fn chart_points(demo: &std::path::Path, sql: &str) -> i64 {
    rusqlite::Connection::open(demo.join("demo.sqlite")).unwrap().query_row(sql, [], |r| r.get(0)).unwrap()
}

fn html_is_valid(file: &std::path::Path) {
    let Some(jar) = std::env::var_os("VNU_JAR") else {
        assert!(std::env::var_os("CI").is_none(), "CI must set VNU_JAR");
        eprintln!("\n*** VNU_JAR is not set: skipping the Nu HTML checker ***\n");
        return;
    };
    let out = std::process::Command::new("java").arg("-jar").arg(jar).arg("--errors-only").arg(file).output().unwrap();
    assert!(out.status.success(), "Nu checker: {}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn chart_specs_that_cannot_work_fail_before_the_first_byte() {
    let demo = demo(3000);
    let dir = tempfile::tempdir().unwrap();
    let source = format!("sqlite:{}", demo.join("demo.sqlite").display());
    let case = |charts: &str| {
        let text = format!(
            "report: bad\nsource:\n  table: invoices\n  columns: {{id: invoices.id, date: invoices.date, status: invoices.status, total: invoices.total}}\ncharts:\n{charts}"
        );
        let spec = write(dir.path(), "bad.yaml", &text);
        let out = dir.path().join("bad.html");
        let r = run(&["run", spec.to_str().unwrap(), "--source", &source, "-o", out.to_str().unwrap()]);
        assert!(!out.exists(), "no output for a bad chart");
        (r.code, r.stderr)
    };
    let (code, err) = case("  - { id: a, kind: line, x: { field: status, bucket: day } }\n");
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("charts[0]") && err.contains("time buckets need a date or timestamp"), "{err}");
    let (code, err) = case("  - { id: a, kind: line, x: { field: date, bucket: hour } }\n");
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("is a date: it has no hours"), "{err}");
    let (code, err) = case("  - { id: a, kind: bar, x: { field: date }, y: { sum: status } }\n");
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("sum needs a number, but `status` is"), "{err}");
    let (code, err) = case("  - { id: a, kind: bar, x: { field: nope } }\n");
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("`charts[0].x.field`: unknown field `nope`"), "{err}");
    let (code, err) =
        case("  - { id: a, kind: pie, x: { field: status, bucket: day }, y: { field: total }, series: status }\n");
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("raw points need an unbucketed x"), "{err}");
    assert!(err.contains("a pie has one series"), "{err}");
    // Too many buckets is found while reading: the run fails loudly and leaves no file.
    let (code, err) = case("  - { id: a, kind: line, x: { field: date, bucket: day }, max_buckets: 10 }\n");
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("chart `a`: more than 10 cells (day buckets of `date`)"), "{err}");
    let (code, err) =
        case("  - { id: a, kind: scatter, x: { field: id }, y: { field: total }, series: id, max_buckets: 50 }\n");
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("chart `a`: more than 50 series values of `id`"), "{err}");
    assert_eq!(files_in(dir.path()), vec!["bad.yaml"]);
}

#[test]
fn float_x_values_group_exactly_however_large() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("f.sqlite");
    let c = rusqlite::Connection::open(&db).unwrap();
    c.execute_batch(
        "CREATE TABLE f (id INTEGER PRIMARY KEY, x REAL);
         INSERT INTO f (x) VALUES (1e100), (-2.5), (1e100), (NULL), (0.0), (-2.5), (1e100);",
    )
    .unwrap();
    let spec = write(
        dir.path(),
        "f.yaml",
        "report: f\nsource:\n  table: f\ndetail: false\ncharts:\n  - { id: xs, kind: bar, x: { field: x } }\n",
    );
    let r = run(&["run", spec.to_str().unwrap(), "--source", &format!("sqlite:{}", db.display()), "--format", "json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let doc: J = serde_json::from_slice(&r.stdout).unwrap();
    let c = chart(&doc, "xs");
    let pts: Vec<(f64, i64)> = c["series"][0]["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["x"].as_f64().unwrap(), p["y"].as_i64().unwrap()))
        .collect();
    assert_eq!(pts, vec![(-2.5, 2), (0.0, 1), (1e100, 3)]);
    assert_eq!(c["skipped"], 1);
}

#[test]
fn histogram_bins_survive_outliers_of_1e300() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("x.sqlite");
    let c = rusqlite::Connection::open(&db).unwrap();
    // 2,000 ordinary values first (they pick a fine first width), then the outliers.
    c.execute_batch(
        "CREATE TABLE t (id INTEGER PRIMARY KEY, x REAL);
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2000)
         INSERT INTO t SELECT i, i % 100 FROM n;
         INSERT INTO t VALUES (3001, 1e300), (3002, -1e300), (3003, 1.5e300);",
    )
    .unwrap();
    let spec = format!(
        "report: h\nsource:\n  url: \"sqlite:{}\"\n  table: t\ndetail: false\n\
         charts:\n  - {{ id: h, kind: histogram, x: {{ field: x, bins: 10 }} }}\n",
        db.display()
    );
    let spec = write(dir.path(), "h.yaml", &spec);
    for batch in ["1", "1000"] {
        let r = run(&["run", spec.to_str().unwrap(), "--format", "json", "--batch-size", batch]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        let doc: J = serde_json::from_slice(&r.stdout).unwrap();
        let h = chart(&doc, "h");
        let pts = h["series"][0]["points"].as_array().unwrap();
        let count: i64 = pts.iter().map(|p| p["y"].as_i64().unwrap()).sum();
        assert_eq!(count, 2003, "every row in a bin: {h}");
        assert!(pts.len() <= 10, "{} bins", pts.len());
        let edges: Vec<f64> = pts.iter().map(|p| p["x"].as_f64().unwrap()).collect();
        assert!(edges.iter().all(|e| e.is_finite()), "{edges:?}");
        // The outliers sit in the bins at the ends, where they belong.
        let width = h["x"]["width"].as_f64().unwrap();
        assert!(edges[0] <= -1e300 && -1e300 < edges[0] + width, "{edges:?} width {width}");
        let last = *edges.last().unwrap();
        assert!(last <= 1.5e300 && 1.5e300 < last + width, "{edges:?} width {width}");
    }
}

#[test]
fn chart_sizes_beyond_what_can_be_drawn_are_spec_errors() {
    let dir = tempfile::tempdir().unwrap();
    let db = demo(300).join("demo.sqlite");
    for (chart, key) in [
        (
            "{ id: h, kind: histogram, x: { field: total, bins: 4611686018427387904 } }",
            "`charts[0].x.bins`: must be from 1 to 10000",
        ),
        (
            "{ id: p, kind: scatter, x: { field: id }, y: { field: total }, max_points: 100000000 }",
            "`charts[0].max_points`: must be from 8 to 1000000",
        ),
    ] {
        let spec = format!(
            "report: b\nsource:\n  url: \"sqlite:{}\"\n  table: invoices\ncharts:\n  - {chart}\n",
            db.display()
        );
        let spec = write(dir.path(), "b.yaml", &spec);
        let r = run(&["validate", spec.to_str().unwrap()]);
        assert_eq!(r.code, 2, "{}", r.text());
        assert!(r.text().contains(key), "{}", r.text());
    }
}

#[test]
fn a_bar_chart_of_100k_bars_renders() {
    // Each bar found its band by a linear search with a to_string per comparison:
    // 100,000 bars took hours. Now a map.
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("bars.sqlite");
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute_batch(
            "CREATE TABLE t (id INTEGER PRIMARY KEY, v INTEGER);
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 100000)
             INSERT INTO t SELECT i, i % 7 FROM n;",
        )
        .unwrap();
    let spec = format!(
        "report: bars\nsource:\n  url: \"sqlite:{}\"\n  table: t\ndetail: false\n\
         charts:\n  - {{ id: b, kind: bar, x: {{ field: id }}, y: {{ sum: v }} }}\n",
        db.display()
    );
    let spec = write(dir.path(), "bars.yaml", &spec);
    let r = run(&["run", spec.to_str().unwrap(), "--format", "html"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let html = r.text();
    let bars = html.matches("<rect").count();
    assert!(bars >= 100_000, "{bars} rects");
}

#[test]
fn a_format_that_shows_no_chart_does_not_compute_them() {
    let demo = demo(3000);
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "report: c\nsource:\n  url: \"sqlite:{}\"\n  table: invoices\n  columns: {{id: invoices.id, date: invoices.date}}\n\
         charts:\n  - {{ id: a, kind: line, x: {{ field: date, bucket: day }}, max_buckets: 10 }}\n",
        demo.join("demo.sqlite").display()
    );
    let spec = write(dir.path(), "c.yaml", &text);
    // HTML draws it, and its 10-cell limit fails the run …
    let r = run(&["run", spec.to_str().unwrap(), "--format", "html"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("more than 10 cells"), "{}", r.stderr);
    // … while CSV, NDJSON and XLSX never build the chart.
    for format in ["csv", "ndjson", "xlsx"] {
        let out = dir.path().join(format!("c.{format}"));
        let r = run(&["run", spec.to_str().unwrap(), "-o", out.to_str().unwrap()]);
        assert_eq!(r.code, 0, "{format}: {}", r.stderr);
    }
}

/// The x-axis and y-axis labels, and the axis titles, of one chart of an HTML report.
fn axes_of(html: &str, id: &str) -> (Vec<String>, Vec<String>, String, String) {
    let doc = scraper::Html::parse_document(html);
    let sel = |s: &str| scraper::Selector::parse(s).unwrap();
    let f = doc
        .select(&sel("figure.chart"))
        .find(|f| f.value().attr("data-chart") == Some(id))
        .unwrap_or_else(|| panic!("no chart {id}"));
    let texts = |what: &str| f.select(&sel(what)).map(|t| t.text().collect::<String>()).collect::<Vec<_>>();
    (texts("g.x-axis text"), texts("g.y-axis text"), texts("text.x-label").concat(), texts("text.y-label").concat())
}

#[test]
fn one_bucket_is_labelled_with_its_date_ticks_share_one_style_and_titles_and_other_follow_the_spec() {
    let demo = demo(3000);
    let dir = tempfile::tempdir().unwrap();
    let spec = r#"
report: axes
source:
  table: invoices
  key: [id]
  joins: ["JOIN customers c ON c.id = invoices.customer_id"]
  columns: { id: invoices.id, date: invoices.date, customer: c.name, total: invoices.total }
  where: "invoices.date >= '2024-03-01' AND invoices.date < '2024-04-01'"
detail: false
charts:
  - { id: march, kind: bar, x: { field: date, bucket: month }, y: { sum: total } }
  - { id: march_line, kind: line, x: { field: date, bucket: month }, y: { sum: total } }
  - { id: sizes, kind: histogram, x: { field: total, bin_width: 1000, title: Invoice total }, y: { title: Invoices } }
  - { id: top, kind: bar, x: { field: customer, top: 3, other: false }, y: { sum: total } }
"#;
    let spec = write(dir.path(), "axes.yaml", spec);
    let source = format!("sqlite:{}", demo.join("demo.sqlite").display());
    let out = dir.path().join("axes.html");
    let r = run(&["run", spec.to_str().unwrap(), "--source", &source, "-o", out.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let html = std::fs::read_to_string(&out).unwrap();
    // One month bucket, as bars or as a line: its month is the one label under it.
    for id in ["march", "march_line"] {
        assert_eq!(axes_of(&html, id).0, ["Mar 2024"], "{id}");
    }
    // Histogram ticks: one unit and one precision on each axis, and the titles asked for.
    let (x, y, x_title, y_title) = axes_of(&html, "sizes");
    for ticks in [&x, &y] {
        let thousands = ticks.iter().filter(|t| t.ends_with('k')).count();
        assert!(thousands == 0 || thousands == ticks.iter().filter(|t| *t != "0").count(), "mixed styles: {ticks:?}");
    }
    assert!(x.iter().any(|t| t.ends_with('k')), "totals up to 10k+ in k: {x:?}");
    assert_eq!((x_title.as_str(), y_title.as_str()), ("Invoice total", "Invoices"));
    // `other: false`: the three largest customers only, in HTML and JSON.
    let (bars, _, x_title, y_title) = axes_of(&html, "top");
    assert_eq!(bars.len(), 3, "{bars:?}");
    assert!(!bars.iter().any(|b| b == "other"), "{bars:?}");
    assert_eq!((x_title.as_str(), y_title.as_str()), ("customer", "sum(total)"));
    let r = run(&["run", spec.to_str().unwrap(), "--source", &source, "-f", "json"]);
    let doc: J = serde_json::from_slice(&r.stdout).unwrap();
    let top = chart(&doc, "top");
    assert_eq!(top["x"]["other"], false);
    assert_eq!(top["series"][0]["points"].as_array().unwrap().len(), 3);
    assert_eq!(chart(&doc, "sizes")["x"]["title"], "Invoice total");
    html_is_valid(&out);
}
