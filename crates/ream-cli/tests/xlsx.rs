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
    // Detail rows: the Amount column holds numbers; they add up to SQL's total.
    let amounts: Vec<f64> =
        rows[3..].iter().filter_map(|r| if let Data::Float(x) = r[5] { Some(x) } else { None }).collect();
    assert_eq!(amounts.len() as i64, n);
    assert!((amounts.iter().sum::<f64>() - total).abs() < 0.005, "{} vs {total}", amounts.iter().sum::<f64>());
    assert!(text(rows.last().unwrap()).starts_with("Grand total: $"), "{:?}", rows.last());
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
    let probe = std::process::Command::new("python3").args(["-c", "import openpyxl"]).output();
    if !probe.map(|o| o.status.success()).unwrap_or(false) {
        assert!(std::env::var_os("CI").is_none(), "CI must install openpyxl (see .ci/run)");
        eprintln!("\n*** python3 openpyxl is not installed: skipping the openpyxl read-back ***\n");
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
