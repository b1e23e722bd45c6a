//! XLSX: read back with calamine (as a user's program would). Cells keep their types and
//! values, text never becomes a formula, grouped reports have their bands, a full sheet
//! continues on the next one with the header repeated, and batch sizes do not matter.

mod common;
use calamine::{open_workbook_auto, Data, DataType, Reader};
use common::*;
use std::path::Path;

/// Every sheet of a workbook: (name, rows of cells).
fn read(path: &Path) -> Vec<(String, Vec<Vec<Data>>)> {
    let mut wb = open_workbook_auto(path).unwrap();
    let names = wb.sheet_names().to_vec();
    names
        .into_iter()
        .map(|n| {
            let range = wb.worksheet_range(&n).unwrap();
            // Absolute rows from A1, so a title row and blank rows stay where they are.
            let (h, w) = range.end().map(|(r, c)| (r as usize + 1, c as usize + 1)).unwrap_or((0, 0));
            let rows = (0..h)
                .map(|r| {
                    (0..w).map(|c| range.get_value((r as u32, c as u32)).cloned().unwrap_or(Data::Empty)).collect()
                })
                .collect();
            (n, rows)
        })
        .collect()
}

/// Whether Python's openpyxl is there (CI must install it, see .ci/run); elsewhere the
/// test that needs it (`what`) skips loudly.
fn openpyxl(what: &str) -> bool {
    let probe = std::process::Command::new("python3").args(["-c", "import openpyxl"]).output();
    if probe.map(|o| o.status.success()).unwrap_or(false) {
        return true;
    }
    assert!(std::env::var_os("CI").is_none(), "CI must install openpyxl (see .ci/run)");
    eprintln!("\n*** python3 openpyxl is not installed: skipping {what} ***\n");
    false
}

/// The demo's sales_by_region report between two dates, as XLSX in `dir`.
fn sales_xlsx(demo: &Path, dir: &Path, start: &str, end: &str, extra: &[&str]) -> std::path::PathBuf {
    let out = dir.join("sales.xlsx");
    let spec = demo.join("reports/sales_by_region.yaml");
    let (start, end) = (format!("start_date={start}"), format!("end_date={end}"));
    let mut args = vec!["run", spec.to_str().unwrap(), "-p", &start, "-p", &end, "-o", out.to_str().unwrap()];
    args.extend_from_slice(extra);
    let r = run(&args);
    assert_eq!(r.code, 0, "{}", r.stderr);
    out
}

fn typed_db(dir: &Path) -> std::path::PathBuf {
    let db = dir.join("t.sqlite");
    let c = rusqlite::Connection::open(&db).unwrap();
    c.execute_batch(
        "CREATE TABLE t (id INTEGER PRIMARY KEY, n BIGINT, x REAL, amount DECIMAL(10,2), day DATE,
                         at DATETIME, ok BOOLEAN, name TEXT);
         INSERT INTO t VALUES
           (1, 9007199254740991, 1.5, 12.34, '2024-02-29', '2024-02-29 13:45:10', 1, 'Zoë Ωmega'),
           (2, -7, -0.25, -0.50, '1999-12-31', '2000-01-01 00:00:00', 0, '=HYPERLINK(\"http://x\",\"y\")'),
           (3, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
           (4, 0, 1e100, 99999999.99, '1970-01-01', '1970-01-01 00:00:01', 1, '+1 and -2 and @x');",
    )
    .unwrap();
    db
}

#[test]
fn cells_keep_their_types_and_text_is_never_a_formula() {
    let dir = tempfile::tempdir().unwrap();
    let db = typed_db(dir.path());
    let out = dir.path().join("t.xlsx");
    let r = run(&["run", "--source", &format!("sqlite:{}", db.display()), "--table", "t", "-o", out.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let sheets = read(&out);
    assert_eq!(sheets.len(), 1);
    let rows = &sheets[0].1;
    let header: Vec<String> = rows[0].iter().map(|d| d.to_string()).collect();
    assert_eq!(header, vec!["id", "n", "x", "amount", "day", "at", "ok", "name"]);
    let r1 = &rows[1];
    assert_eq!(r1[0], Data::Float(1.0));
    assert_eq!(r1[1], Data::Float(9007199254740991.0), "integers are Excel numbers (exact up to 2^53)");
    assert_eq!(r1[2], Data::Float(1.5));
    assert_eq!(r1[3], Data::Float(12.34));
    let day = r1[4].as_datetime().expect("a date cell");
    assert_eq!(day.to_string(), "2024-02-29 00:00:00");
    assert!(r1[4].is_datetime());
    assert_eq!(r1[5].as_datetime().unwrap().to_string(), "2024-02-29 13:45:10");
    assert_eq!(r1[6], Data::Bool(true));
    assert_eq!(r1[7], Data::String("Zoë Ωmega".into()));
    let r2 = &rows[2];
    assert_eq!(r2[3], Data::Float(-0.5));
    assert_eq!(r2[6], Data::Bool(false));
    assert_eq!(r2[7], Data::String("=HYPERLINK(\"http://x\",\"y\")".into()));
    // NULL is an empty cell.
    assert!(rows[3][1..].iter().all(|d| *d == Data::Empty), "{:?}", rows[3]);
    assert_eq!(rows[4][2], Data::Float(1e100));
    assert_eq!(rows[4][5].as_datetime().unwrap().to_string(), "1970-01-01 00:00:01");
    // No cell of the file is a formula.
    let mut wb = open_workbook_auto(&out).unwrap();
    let formulas = wb.worksheet_formula("t").unwrap();
    assert!(formulas.used_cells().all(|(_, _, f)| f.is_empty()), "a formula was written");
}

#[test]
fn a_grouped_report_has_its_title_header_bands_and_sql_totals() {
    let demo = demo(2000);
    let dir = tempfile::tempdir().unwrap();
    let out = sales_xlsx(&demo, dir.path(), "2023-01-01", "2025-12-31", &[]);
    let sheets = read(&out);
    let rows = &sheets[0].1;
    assert_eq!(rows[0][0], Data::String("Sales by region, 2023-01-01 to 2025-12-31".into()));
    let header: Vec<String> = rows[2].iter().map(|d| d.to_string()).collect();
    assert_eq!(header, vec!["Region", "Date", "Customer", "Invoice #", "Status", "Amount"]);
    let text = |row: &Vec<Data>| match &row[0] {
        Data::String(s) => s.clone(),
        _ => String::new(),
    };
    let headers = rows.iter().filter(|r| text(r).starts_with("Region: ")).count();
    let footers = rows.iter().filter(|r| text(r).starts_with("Subtotal ")).count();
    let c = rusqlite::Connection::open(demo.join("demo.sqlite")).unwrap();
    let (regions, n, total): (i64, i64, f64) = c
        .query_row(
            "SELECT count(DISTINCT c.region_id), count(*), sum(i.total) FROM invoices i JOIN customers c ON c.id = i.customer_id",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!((headers as i64, footers as i64), (regions, regions));
    let band = |r: &Vec<Data>| ["Region: ", "Subtotal ", "Grand total"].iter().any(|p| text(r).starts_with(p));
    // Detail rows: the Amount column holds numbers; they add up to SQL's total.
    let amounts: Vec<f64> = rows[3..]
        .iter()
        .filter(|r| !band(r))
        .filter_map(|r| if let Data::Float(x) = r[5] { Some(x) } else { None })
        .collect();
    assert_eq!(amounts.len() as i64, n);
    assert!((amounts.iter().sum::<f64>() - total).abs() < 0.005, "{} vs {total}", amounts.iter().sum::<f64>());
    // Each footer has its subtotal as a number under Amount, equal to SQL's per region,
    // and the summary row the grand total: a spreadsheet user can add them up.
    let mut by_region = c
        .prepare(
            "SELECT r.name, sum(i.total) FROM invoices i JOIN customers c ON c.id = i.customer_id
             JOIN regions r ON r.id = c.region_id GROUP BY r.name ORDER BY r.name",
        )
        .unwrap();
    let sql: Vec<(String, f64)> =
        by_region.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).unwrap().map(Result::unwrap).collect();
    let subtotals: Vec<(String, f64)> = rows
        .iter()
        .filter(|r| text(r).starts_with("Subtotal "))
        .map(|r| {
            let region = text(r).trim_start_matches("Subtotal ").split(':').next().unwrap().to_string();
            (region, r[5].as_f64().expect("the subtotal is a number"))
        })
        .collect();
    assert_eq!(subtotals.len(), sql.len());
    for ((name, x), (sql_name, sql_x)) in subtotals.iter().zip(&sql) {
        assert_eq!(name, sql_name);
        assert!((x - sql_x).abs() < 0.005, "{name}: {x} vs {sql_x}");
    }
    let last = rows.last().unwrap();
    assert!(text(last).starts_with("Grand total: $"), "{last:?}");
    assert!((last[5].as_f64().expect("the grand total is a number") - total).abs() < 0.005);
    // The count variables stay in the band text: they have no column of their own.
    assert!(rows.iter().filter(|r| band(r)).all(|r| r[1..5].iter().all(|d| *d == Data::Empty)));
}

/// Text that XML cannot carry as is, and dates around Excel's 1900 oddities, read back as
/// they were written.
#[test]
fn awkward_text_and_early_dates_read_back_as_written() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("odd.sqlite");
    let c = rusqlite::Connection::open(&db).unwrap();
    c.execute_batch("CREATE TABLE t (id INTEGER PRIMARY KEY, s TEXT, day DATE)").unwrap();
    let texts = [
        "a<b & c>d \"quoted\" 'single'",
        "  padded both sides  ",
        "line\nbreak and\ttab",
        "carriage\r\nreturn",
        "émoji 📈 and CJK 漢字",
        "bell\u{7} and escape \u{1b}",
        "_x0041_ is not an A",
    ];
    let days = ["1900-01-15", "1900-02-28", "1900-03-01", "1899-12-31", "9999-12-31", "2024-02-29", "1970-01-01"];
    for (i, (s, d)) in texts.iter().zip(days).enumerate() {
        c.execute("INSERT INTO t VALUES (?, ?, ?)", rusqlite::params![i as i64 + 1, s, d]).unwrap();
    }
    let out = dir.path().join("odd.xlsx");
    let r = run(&["run", "--source", &format!("sqlite:{}", db.display()), "--table", "t", "-o", out.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let rows = &read(&out)[0].1;
    let got: Vec<String> = rows[1..].iter().map(|r| r[1].to_string()).collect();
    assert_eq!(got[..5], texts[..5], "XML's specials, edge spaces, CR LF and non-ASCII are kept");
    // Control characters XML cannot carry, and a literal `_xHHHH_`, are written the way
    // Excel escapes them (Excel and LibreOffice decode them; calamine shows them as is).
    assert_eq!(got[5..], ["bell_x0007_ and escape _x001B_", "_x005F_x0041_ is not an A"]);
    let got_days: Vec<String> = rows[1..]
        .iter()
        .map(|r| match &r[2] {
            d if d.is_datetime() => d.as_datetime().unwrap().date().to_string(),
            other => format!("text {other}"),
        })
        .collect();
    // Before 1900 Excel has no date: the value is kept as text rather than shown as ####.
    assert_eq!(
        got_days,
        ["1900-01-15", "1900-02-28", "1900-03-01", "text 1899-12-31", "9999-12-31", "2024-02-29", "1970-01-01"]
    );
}

#[test]
fn a_full_sheet_continues_on_the_next_with_the_header_repeated() {
    let demo = demo(2000);
    let dir = tempfile::tempdir().unwrap();
    let source = format!("sqlite:{}", demo.join("demo.sqlite").display());
    let get = |batch: &str| {
        let out = dir.path().join(format!("inv-{batch}.xlsx"));
        let r = ream()
            .args(["run", "--source", &source, "--table", "invoices", "--xlsx-flat", "--batch-size", batch, "-o"])
            .arg(&out)
            .env("REAM_TEST_XLSX_SHEET_ROWS", "700")
            .output()
            .unwrap();
        assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
        read(&out)
    };
    let sheets = get("1000");
    // 2000 rows at 699 per sheet (plus the header): 3 sheets.
    let names: Vec<&str> = sheets.iter().map(|s| s.0.as_str()).collect();
    assert_eq!(names, vec!["invoices", "invoices (2)", "invoices (3)"]);
    let mut ids = Vec::new();
    for (_, rows) in &sheets {
        assert_eq!(rows[0][0], Data::String("id".into()), "each sheet starts with the header");
        assert!(rows.len() <= 700);
        ids.extend(rows[1..].iter().map(|r| r[0].as_f64().unwrap() as i64));
    }
    assert_eq!(ids, (1..=2000).collect::<Vec<_>>(), "every row once, in order");
    for batch in ["1", "7"] {
        assert!(get(batch) == sheets, "batch size {batch} changes the workbook");
    }
}

#[test]
fn flat_output_is_the_header_and_the_rows_only() {
    let demo = demo(2000);
    let dir = tempfile::tempdir().unwrap();
    let out = sales_xlsx(&demo, dir.path(), "2024-01-01", "2024-06-30", &["--xlsx-flat"]);
    let rows = &read(&out)[0].1;
    assert_eq!(rows[0][0], Data::String("Region".into()));
    // Every other row is a detail row: a number in the Amount column.
    assert!(rows[1..].iter().all(|r| matches!(r[5], Data::Float(_))), "only detail rows");
}

#[test]
fn more_than_a_million_rows_roll_over_to_a_second_sheet() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("big.sqlite");
    let c = rusqlite::Connection::open(&db).unwrap();
    c.execute_batch(
        "CREATE TABLE big (id INTEGER PRIMARY KEY);
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1048600) INSERT INTO big SELECT i FROM n;",
    )
    .unwrap();
    let out = dir.path().join("big.xlsx");
    let r =
        run(&["run", "--source", &format!("sqlite:{}", db.display()), "--table", "big", "-o", out.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let sheets = read(&out);
    assert_eq!(sheets.len(), 2);
    assert_eq!(sheets[0].1.len(), 1_048_576, "the first sheet is full");
    assert_eq!(sheets[0].1[1_048_575][0], Data::Float(1_048_575.0));
    assert_eq!(sheets[1].1[0][0], Data::String("id".into()));
    assert_eq!(sheets[1].1[1][0], Data::Float(1_048_576.0));
    assert_eq!(sheets[1].1.last().unwrap()[0], Data::Float(1_048_600.0));
}

#[test]
fn a_value_that_cannot_fit_fails_the_run_and_leaves_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("long.sqlite");
    let c = rusqlite::Connection::open(&db).unwrap();
    c.execute_batch("CREATE TABLE t (id INTEGER PRIMARY KEY, s TEXT); INSERT INTO t VALUES (1, 'ok');").unwrap();
    c.execute("INSERT INTO t VALUES (2, ?)", ["x".repeat(40_000)]).unwrap();
    let out = dir.path().join("long.xlsx");
    let r = run(&["run", "--source", &format!("sqlite:{}", db.display()), "--table", "t", "-o", out.to_str().unwrap()]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains("column `s`, row 2 of the output") && r.stderr.contains("does not fit an Excel cell"),
        "{}",
        r.stderr
    );
    assert_eq!(files_in(dir.path()), vec!["long.sqlite"]);
}

/// Python's openpyxl reads the workbook too: the types, number formats, frozen header and
/// autofilter a spreadsheet user sees. In CI it must be installed (see .ci/run).
#[test]
fn openpyxl_reads_types_formats_and_the_frozen_filtered_header() {
    if !openpyxl("the openpyxl read-back") {
        return;
    }
    let demo = demo(2000);
    let dir = tempfile::tempdir().unwrap();
    let out = sales_xlsx(&demo, dir.path(), "2024-01-01", "2024-12-31", &[]);
    let script = r#"
import sys, openpyxl, datetime
wb = openpyxl.load_workbook(sys.argv[1])
ws = wb.active
print(ws.freeze_panes, ws.auto_filter.ref.split(':')[0], ws['A3'].font.b)
row = next(r for r in ws.iter_rows(min_row=4) if isinstance(r[5].value, float))
print(type(row[1].value).__name__, row[1].number_format, type(row[3].value).__name__, row[5].number_format)
"#;
    let o = std::process::Command::new("python3").args(["-c", script]).arg(&out).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(String::from_utf8_lossy(&o.stdout), "A4 A3 True\ndatetime yyyy-mm-dd int $#,##0.00\n");
}

/// `--xlsx-outline`: each group's rows sit one outline level below its header and footer,
/// so Excel's buttons collapse a group to those two rows. Read with openpyxl.
#[test]
fn outline_levels_make_groups_collapsible() {
    if !openpyxl("the outline read-back") {
        return;
    }
    let demo = demo(500);
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("two_levels.yaml");
    std::fs::write(
        &spec,
        format!(
            r#"report: two_levels
source:
  url: "sqlite:{}"
  table: invoices
  key: [id]
  joins: ["JOIN customers c ON c.id = invoices.customer_id", "JOIN regions r ON r.id = c.region_id"]
  columns: {{ id: invoices.id, region: r.name, status: invoices.status, total: invoices.total }}
groups:
  - {{ by: region, header: "Region {{region}}", footer: "Region total" }}
  - {{ by: status, header: "Status {{status}}", footer: "Status total" }}
variables:
  status_total: {{ sum: total, reset: status }}
  region_total: {{ sum: total, reset: region }}
columns: [{{ field: region }}, {{ field: status }}, {{ field: id }}, {{ field: total }}]
"#,
            demo.join("demo.sqlite").display()
        ),
    )
    .unwrap();
    let out = dir.path().join("outline.xlsx");
    let r = run(&["run", spec.to_str().unwrap(), "--xlsx-outline", "-o", out.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let script = r#"
import sys, openpyxl
wb = openpyxl.load_workbook(sys.argv[1])
ws = wb.active
print(ws.sheet_format.outlineLevelRow)
for row in ws.iter_rows(min_row=2):
    a = row[0].value
    kind = 'header' if str(a).startswith(('Region ', 'Status ')) and 'total' not in str(a) else ('footer' if 'total' in str(a) else 'detail')
    print(kind, str(a).split(' ')[0] if kind != 'detail' else '-', ws.row_dimensions[row[0].row].outline_level, row[3].value)
"#;
    let o = std::process::Command::new("python3").args(["-c", script]).arg(&out).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let stdout = String::from_utf8_lossy(&o.stdout);
    let mut lines = stdout.lines();
    assert_eq!(lines.next(), Some("2"), "two levels of groups");
    let (mut details, mut status_sum, mut region_sum) = (0, 0.0, 0.0);
    for line in lines {
        let f: Vec<&str> = line.split(' ').collect();
        let level: u32 = f[2].parse().unwrap();
        match (f[0], f[1]) {
            ("header", "Region") | ("footer", "Region") => assert_eq!(level, 0, "{line}"),
            ("header", "Status") | ("footer", "Status") => assert_eq!(level, 1, "{line}"),
            ("detail", _) => {
                assert_eq!(level, 2, "{line}");
                details += 1;
                let x: f64 = f[3].parse().unwrap();
                status_sum += x;
                region_sum += x;
            }
            _ => panic!("unexpected row {line}"),
        }
        // Footers carry their own group's subtotal under the total column.
        if f[0] == "footer" {
            let x: f64 = f[3].parse().unwrap();
            let want = if f[1] == "Status" { &mut status_sum } else { &mut region_sum };
            assert!((x - *want).abs() < 0.005, "{line}: {want}");
            *want = 0.0;
        }
    }
    assert_eq!(details, 500);
}

/// A customer statement whose `columns` leave out its groups (region, customer_id): every
/// flat output still says whose each row is, and agrees with SQL row for row.
#[test]
fn a_grouped_reports_flat_outputs_carry_its_group_fields() {
    let demo = demo(300);
    let dir = tempfile::tempdir().unwrap();
    let spec = demo.join("reports/customer_statement.yaml");
    let db = rusqlite::Connection::open(demo.join("demo.sqlite")).unwrap();
    let expected: Vec<(String, i64, i64)> = db
        .prepare(
            "SELECT r.name, c.id, i.id FROM invoices i JOIN customers c ON c.id = i.customer_id \
             JOIN regions r ON r.id = c.region_id WHERE r.name = 'Nordics' ORDER BY r.name, c.id, i.id",
        )
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert!(expected.len() > 5, "too few rows to prove much");
    let out = |format: &str, extra: &[&str]| {
        let path = dir.path().join(format!("s{}.{format}", extra.len()));
        let mut args = vec!["run", spec.to_str().unwrap(), "-p", "region=Nordics", "-o", path.to_str().unwrap()];
        args.extend_from_slice(extra);
        let r = run(&args);
        assert_eq!(r.code, 0, "{format}: {}", r.stderr);
        path
    };
    let mut csv = csv::Reader::from_path(out("csv", &[])).unwrap();
    assert_eq!(csv.headers().unwrap(), vec!["region", "customer_id", "id", "date", "status", "total"]);
    let rows: Vec<(String, i64, i64)> = csv
        .records()
        .map(|r| r.unwrap())
        .map(|r| (r[0].to_string(), r[1].parse().unwrap(), r[2].parse().unwrap()))
        .collect();
    assert_eq!(rows, expected, "csv");
    let ndjson = std::fs::read_to_string(out("ndjson", &[])).unwrap();
    let rows: Vec<(String, i64, i64)> = ndjson
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .map(|v| {
            (v["region"].as_str().unwrap().to_string(), v["customer_id"].as_i64().unwrap(), v["id"].as_i64().unwrap())
        })
        .collect();
    assert_eq!(rows, expected, "ndjson");
    let sheets = read(&out("xlsx", &["--xlsx-flat"]));
    let cells = &sheets[0].1;
    let header: Vec<String> = cells[0].iter().map(|c| c.to_string()).collect();
    assert_eq!(header[..3], ["region", "customer_id", "Invoice #"]);
    let rows: Vec<(String, i64, i64)> =
        cells[1..].iter().map(|r| (r[0].to_string(), r[1].as_i64().unwrap(), r[2].as_i64().unwrap())).collect();
    assert_eq!(rows, expected, "xlsx --xlsx-flat");
    // The banded workbook shows the groups in its bands, not as columns.
    let banded = read(&out("xlsx", &["-f", "xlsx"]));
    assert!(
        banded[0].1.iter().all(|r| r.first().is_none_or(|c| *c != Data::String("Nordics".into()))),
        "{:?}",
        banded[0].1[..3].to_vec()
    );
}

/// Three regions of amounts, with one long name at row 150 (of 180).
fn regions_db(dir: &Path) -> std::path::PathBuf {
    let db = dir.join("regions.sqlite");
    if db.exists() {
        return db;
    }
    let c = rusqlite::Connection::open(&db).unwrap();
    c.execute_batch(
        "CREATE TABLE t (id INTEGER PRIMARY KEY, region TEXT, name TEXT, amount DECIMAL(10,2));
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 180)
         INSERT INTO t SELECT i, 'r' || (i % 3), CASE i WHEN 150 THEN printf('%.44c', 'w') ELSE 'n' || i END,
                              (i * 37 % 101) + 0.25 FROM n;",
    )
    .unwrap();
    db
}

fn regions_spec(dir: &Path, amount_column: &str) -> std::path::PathBuf {
    let db = regions_db(dir);
    let spec = format!(
        "report: r\nsource: {{url: \"sqlite:{}\", table: t, key: [id]}}\ngroups:\n  - by: region\n    \
         footer: \"Subtotal {{region}}\"\nvariables:\n  total: {{sum: amount, reset: region}}\n  \
         mean: {{avg: amount, reset: region}}\n  grand: {{sum: amount}}\n  top: {{max: amount}}\n\
         columns:\n  - field: id\n  - field: name\n  - {amount_column}\nsummary: \"All\"\n",
        db.display()
    );
    write(dir, "r.yaml", &spec)
}

/// The number under Amount in each band row (footers, then the summary).
fn band_amounts(path: &Path) -> Vec<(String, f64)> {
    let sheets = read(path);
    sheets[0]
        .1
        .iter()
        .filter_map(|r| match (&r[0], &r[2]) {
            (Data::String(t), d) if t.starts_with("Subtotal") || t == "All" => Some((t.clone(), d.as_f64()?)),
            _ => None,
        })
        .collect()
}

#[test]
fn a_column_shows_the_variables_its_totals_name_and_by_default_its_first_sum() {
    let dir = tempfile::tempdir().unwrap();
    let db = rusqlite::Connection::open(regions_db(dir.path())).unwrap();
    let sql = |q: &str| -> Vec<(String, f64)> {
        db.prepare(q).unwrap().query_map([], |r| Ok((r.get(0)?, r.get(1)?))).unwrap().map(Result::unwrap).collect()
    };
    let run_to = |amount: &str, name: &str| {
        let spec = regions_spec(dir.path(), amount);
        let out = dir.path().join(name);
        let r = run(&["run", spec.to_str().unwrap(), "-o", out.to_str().unwrap()]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        band_amounts(&out)
    };
    let near = |got: &[(String, f64)], want: &[(String, f64)]| {
        assert_eq!(got.len(), want.len(), "{got:?} vs {want:?}");
        for ((g, x), (w, y)) in got.iter().zip(want) {
            // A decimal's average keeps 8 places.
            assert!(g == w && (x - y).abs() < 1e-8, "{got:?} vs {want:?}");
        }
    };
    let per_region = |agg: &str, all: &str| {
        let mut v = sql(&format!("SELECT 'Subtotal ' || region, {agg}(amount) FROM t GROUP BY region ORDER BY region"));
        v.extend(sql(&format!("SELECT 'All', {all}(amount) FROM t")));
        v
    };
    // By default: the first variable of the field in each scope (the sums).
    near(&run_to("field: amount", "default.xlsx"), &per_region("sum", "sum"));
    // Named: the mean in the region footers, the maximum in the summary.
    near(&run_to("{field: amount, totals: [mean, top]}", "named.xlsx"), &per_region("avg", "max"));
}

#[test]
fn column_widths_fit_the_widest_sampled_value_whatever_the_batches() {
    if !openpyxl("the column widths") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let spec = regions_spec(dir.path(), "field: amount");
    let mut widths = Vec::new();
    for batch in ["1", "7", "1000"] {
        let out = dir.path().join(format!("w{batch}.xlsx"));
        let r = run(&["run", spec.to_str().unwrap(), "--batch-size", batch, "-o", out.to_str().unwrap()]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        let script = "import sys, openpyxl\nws = openpyxl.load_workbook(sys.argv[1]).active\n\
                      print(ws.column_dimensions['B'].width)";
        let o = std::process::Command::new("python3").args(["-c", script]).arg(&out).output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        widths.push(String::from_utf8_lossy(&o.stdout).trim().parse::<f64>().unwrap());
    }
    // The 44-character name at row 150 sets the width (plus a margin), at every batch size.
    assert!(widths.iter().all(|w| *w == widths[0]), "{widths:?}");
    assert!((46.0..=60.0).contains(&widths[0]), "{widths:?}");
}
