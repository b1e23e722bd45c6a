//! Bad input gets a message naming the problem and where it is, exit code 2, no panic
//! and no output file; an empty table gives a valid empty output.

mod common;
use common::*;

const SPEC_HEAD: &str = "report: r\nsource:\n  url: \"sqlite:DB\"\n  table: invoices\n";

fn spec_dir(body: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let demo = demo(500);
    let dir = tempfile::tempdir().unwrap();
    let db = demo.join("demo.sqlite");
    let text = format!("{}{body}", SPEC_HEAD.replace("DB", db.to_str().unwrap()));
    let spec = write(dir.path(), "spec.yaml", &text);
    (dir, spec)
}

/// Runs the spec to an output file and checks the failure: exit 2, the message, no
/// file left behind (neither the output nor a temporary).
fn fails(body: &str, params: &[&str], expect: &[&str]) -> String {
    let (dir, spec) = spec_dir(body);
    let out = dir.path().join("out.csv");
    let mut args = vec!["run", spec.to_str().unwrap(), "-o", out.to_str().unwrap()];
    args.extend_from_slice(params);
    let r = run(&args);
    assert_eq!(r.code, 2, "stderr: {}", r.stderr);
    for e in expect {
        assert!(r.stderr.contains(e), "expected `{e}` in: {}", r.stderr);
    }
    assert!(!r.stderr.contains("panicked"), "{}", r.stderr);
    assert_eq!(files_in(dir.path()), vec!["spec.yaml"], "output left behind");
    r.stderr
}

#[test]
fn malformed_yaml_names_the_line() {
    let e = fails("columns: [ {field: id\n", &[], &["malformed YAML", "spec.yaml:"]);
    assert!(e.contains(":4:") || e.contains(":5:"), "{e}");
}

#[test]
fn an_unknown_key_is_an_error_with_its_place() {
    fails("colums:\n  - field: id\n", &[], &["spec.yaml:5:1: `colums`: unknown key `colums`"]);
}

#[test]
fn a_wrong_type_is_an_error_with_its_place() {
    fails("  batch_size: many\n", &[], &["spec.yaml:5:3: `source.batch_size`: wrong type"]);
}

#[test]
fn a_missing_required_parameter_is_named() {
    fails(
        "  where: \"date >= :since\"\nparameters:\n  since: { type: date, required: true }\n",
        &[],
        &["parameter `since`: required, expected a date"],
    );
}

#[test]
fn an_ill_typed_parameter_is_named() {
    fails(
        "  where: \"id > :n\"\nparameters:\n  n: { type: int }\n",
        &["-p", "n=lots"],
        &["parameter `n`: `lots` is not a valid int"],
    );
}

#[test]
fn an_unknown_column_is_named_before_any_row_is_read() {
    // The table's own columns: the field list comes from the database.
    fails("columns:\n  - field: totl\n", &[], &["spec.yaml:6:5: `columns[0].field`: unknown field `totl`", "total"]);
    // A group on an unknown field is reported the same way.
    fails("groups:\n  - by: regio\n", &[], &["`groups[0].by`: unknown field `regio`"]);
}

#[test]
fn a_value_that_does_not_fit_its_column_leaves_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("bad.sqlite");
    let c = rusqlite::Connection::open(&db).unwrap();
    c.execute_batch(
        "CREATE TABLE t (id INTEGER PRIMARY KEY, amount DECIMAL(8,2)); INSERT INTO t VALUES (1, 1.5), (2, 0.125);",
    )
    .unwrap();
    drop(c);
    let out = dir.path().join("t.csv");
    let r = run(&["run", "--source", &format!("sqlite:{}", db.display()), "--table", "t", "-o", out.to_str().unwrap()]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("column `amount` (decimal(8,2)) at rowid=2: 0.125 has more decimals than decimal(8,2) holds"),
        "{}",
        r.stderr
    );
    assert_eq!(files_in(dir.path()), vec!["bad.sqlite"]);
}

#[test]
fn an_empty_table_gives_a_valid_empty_output_in_every_format() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("empty.sqlite");
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute_batch("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT, amount DECIMAL(8,2));")
        .unwrap();
    let src = format!("sqlite:{}", db.display());
    let csv = run(&["run", "--source", &src, "--table", "t", "--format", "csv"]);
    assert_eq!((csv.code, csv.text().as_str()), (0, "id,name,amount\n"));
    let nd = run(&["run", "--source", &src, "--table", "t", "--format", "ndjson"]);
    assert_eq!((nd.code, nd.text().as_str()), (0, ""));
    let js = run(&["run", "--source", &src, "--table", "t", "--format", "json"]);
    assert_eq!(js.code, 0, "{}", js.stderr);
    let doc: serde_json::Value = serde_json::from_slice(&js.stdout).unwrap();
    assert_eq!(doc["rows"], serde_json::json!([]));
    assert_eq!(doc["row_count"], 0);
}

#[test]
fn a_spec_with_no_rows_shows_its_no_data_band() {
    let demo = demo(500);
    let r = run(&[
        "run",
        demo.join("reports/sales_by_region.yaml").to_str().unwrap(),
        "-p",
        "start_date=1999-01-01",
        "-p",
        "end_date=1999-12-31",
        "--format",
        "json",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let doc: serde_json::Value = serde_json::from_slice(&r.stdout).unwrap();
    assert_eq!(doc["groups"], serde_json::json!([]));
    assert_eq!(doc["no_data"], "No invoices between 1999-01-01 and 1999-12-31.");
    assert_eq!(doc["variables"]["invoice_count"], 0);
    assert_eq!(doc["variables"]["grand_total"], serde_json::Value::Null);
}

#[test]
fn hostile_parameter_values_are_data() {
    let (dir, spec) = spec_dir("  where: \"status = :s\"\nparameters:\n  s: { type: string }\n");
    let r = run(&["run", spec.to_str().unwrap(), "-p", "s='; DROP TABLE invoices; --", "--format", "ndjson"]);
    assert_eq!((r.code, r.text().as_str()), (0, ""), "{}", r.stderr);
    // The table is still there, with every row.
    let c = rusqlite::Connection::open(demo(500).join("demo.sqlite")).unwrap();
    let n: i64 = c.query_row("SELECT count(*) FROM invoices", [], |r| r.get(0)).unwrap();
    assert_eq!(n, 500);
    drop(dir);
}

#[test]
fn validate_reports_every_problem_with_file_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let spec = write(
        dir.path(),
        "bad.yaml",
        "report: r\nsource:\n  table: t\n  colums: {}\n  columns: {id: t.id}\ngroups:\n  - by: region\nvariables:\n  v: {sum: id, reset: nowhere}\nsummary: \"{w}\"\n",
    );
    let good = demo(500).join("reports/sales_by_region.yaml");
    let r = run(&["validate", spec.to_str().unwrap(), good.to_str().unwrap()]);
    assert_eq!(r.code, 2);
    let out = r.text();
    let lines: Vec<&str> = out.lines().collect();
    let f = spec.display().to_string();
    assert_eq!(lines.len(), 5, "{out}");
    assert!(lines[0].starts_with(&format!("{f}:4:3: `source.colums`: unknown key")), "{out}");
    assert!(lines[1].starts_with(&format!("{f}:7:5: `groups[0].by`: unknown field `region`")), "{out}");
    assert!(
        lines[2].starts_with(&format!("{f}:9:3: `variables.v.reset`: `nowhere`"))
            || lines[2].contains("`variables.v.reset`"),
        "{out}"
    );
    assert!(lines[3].contains("`summary`: `{w}` is not available here"), "{out}");
    assert_eq!(lines[4], format!("{}: ok", good.display()));
}

#[test]
fn usage_errors_exit_2() {
    assert_eq!(run(&["run"]).code, 2);
    assert_eq!(run(&["run", "--source", "oracle://x", "--table", "t"]).code, 2);
    let r = run(&["run", "--source", "sqlite:/nonexistent/x.db", "--table", "t"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("no such file"), "{}", r.stderr);
    let demo = demo(500);
    let r = run(&["run", "--source", &format!("sqlite:{}", demo.join("demo.sqlite").display()), "--table", "nope"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("no such table: nope") && r.stderr.contains("invoices"), "{}", r.stderr);
    assert_eq!(run(&["run", "x.yaml", "-p", "novalue"]).code, 2);
}

#[test]
fn schema_prints_the_json_schema() {
    let r = run(&["schema"]);
    assert_eq!(r.code, 0);
    let s: serde_json::Value = serde_json::from_slice(&r.stdout).unwrap();
    assert_eq!(s["additionalProperties"], false);
    assert!(s["properties"]["source"].is_object());
    assert!(s["required"].as_array().unwrap().iter().any(|v| v == "report"));
}

#[test]
fn progress_always_reports_the_strategy_and_the_outcome_on_stderr() {
    let demo = demo(500);
    let out = tempfile::tempdir().unwrap();
    let target = out.path().join("x.csv");
    let r = run(&[
        "run",
        demo.join("reports/invoice_export.yaml").to_str().unwrap(),
        "--progress",
        "always",
        "-o",
        target.to_str().unwrap(),
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("ream: invoice_export: keyset (an index serves ORDER BY (id))"), "{}", r.stderr);
    assert!(r.stderr.contains("ream: 500 rows, "), "{}", r.stderr);
    let never = run(&["run", demo.join("reports/invoice_export.yaml").to_str().unwrap(), "--progress", "never"]);
    assert_eq!(never.stderr, "");
}

#[test]
fn an_output_in_a_missing_directory_is_a_usage_error() {
    let demo = demo(500);
    let r = run(&["run", demo.join("reports/invoice_export.yaml").to_str().unwrap(), "-o", "/nonexistent/dir/x.csv"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("cannot write to /nonexistent/dir: no such directory"), "{}", r.stderr);
}

#[test]
fn explain_prints_the_plan_without_running_the_query() {
    let demo = demo(500);
    let src = format!("sqlite:{}", demo.join("demo.sqlite").display());
    // Sorting 200M generated rows would take minutes: explain must not start it.
    let sql = "SELECT * FROM (WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 200000000) SELECT i FROM n) ORDER BY i DESC";
    let r = run(&["run", "--source", &src, "--sql", sql, "--explain"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    // On stdout, where a plan can be piped or kept.
    assert!(r.text().starts_with("strategy: cursor (no unique key is known"), "{}", r.text());
    assert!(r.text().contains("sql: SELECT q.\"i\" AS \"i\" FROM ("), "{}", r.text());
}

#[test]
fn validate_connect_checks_field_names_and_types_against_the_source() {
    let demo = demo(500);
    let dir = tempfile::tempdir().unwrap();
    let db = demo.join("demo.sqlite");
    // Fields come from the table: only the database knows them.
    let spec = write(
        dir.path(),
        "s.yaml",
        &format!(
            "report: r\nsource:\n  url: \"sqlite:{}\"\n  table: invoices\ngroups:\n  - by: stauts\nvariables:\n  t: {{sum: note}}\n",
            db.display()
        ),
    );
    let f = spec.display().to_string();
    let offline = run(&["validate", &f]);
    assert_eq!((offline.code, offline.text()), (0, format!("{f}: ok\n")));
    let r = run(&["validate", "--connect", &f]);
    assert_eq!(r.code, 2, "{}", r.text());
    assert!(r.text().starts_with(&format!("{f}:6:5: `groups[0].by`: unknown field `stauts`")), "{}", r.text());
    // Fixed names: now the type of `note` (text) is the problem.
    std::fs::write(&spec, std::fs::read_to_string(&spec).unwrap().replace("stauts", "status")).unwrap();
    let r = run(&["validate", "--connect", &f]);
    assert_eq!(r.code, 2, "{}", r.text());
    assert!(r.text().contains("`variables.t`: sum needs a numeric field, but `note` is string"), "{}", r.text());
    let good = demo.join("reports/sales_by_region.yaml");
    let r = run(&["validate", "--connect", good.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.text());
    assert!(r.text().ends_with("ok (source checked; it would read with cursor)\n"), "{}", r.text());
}

#[test]
fn validate_connect_settles_untyped_sqlite_expressions_and_finds_what_run_would() {
    // `shout` is an expression SQLite declares no type for: only its rows tell it is text.
    // Its average, a time bucket of a number and a date pattern on a number: three type
    // problems, all in one pass, the same ones `run` reports.
    let body = "  key: [id]\n  columns:\n    id: invoices.id\n    shout: upper(invoices.status)\n\
                variables:\n  loud: { avg: shout }\ncharts:\n  - { id: c, kind: bar, x: { field: id, bucket: month } }\n";
    let (_dir, spec) = spec_dir(body);
    let f = spec.to_str().unwrap();
    let offline = run(&["validate", f]);
    assert_eq!(offline.code, 0, "the spec alone shows no problem: {}", offline.text());
    let r = run(&["validate", "--connect", f]);
    assert_eq!(r.code, 2, "{}", r.text());
    let text = r.text();
    let found: Vec<&str> = text.lines().collect();
    assert_eq!(found.len(), 2, "{}", r.text());
    assert!(found[0].contains("`variables.loud`: avg needs a numeric field, but `shout` is string"), "{}", found[0]);
    assert!(found[1].contains("`charts[0]`: chart `c`:"), "{}", found[1]);
    // What run says, line for line.
    let ran = run(&["run", f, "--format", "html", "-o", "/dev/null"]);
    assert_eq!(ran.code, 2, "{}", ran.stderr);
    for line in &found {
        assert!(ran.stderr.contains(line), "run does not say `{line}`: {}", ran.stderr);
    }
}

#[test]
fn a_time_pattern_on_a_date_column_is_a_located_spec_error_not_a_panic() {
    let body = "  key: [id]\ncolumns:\n  - field: id\n  - {field: date, format: \"date:%H:%M\"}\n";
    let e = fails(
        body,
        &[],
        &["spec.yaml:8:", "`columns[1].format`", "`date:%H:%M` shows a time, but the field is a date"],
    );
    assert!(!e.contains("internal error"), "{e}");
    // `validate --connect` finds it too, before any run.
    let (_dir, spec) = spec_dir(body);
    let r = run(&["validate", "--connect", spec.to_str().unwrap()]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.text().contains("spec.yaml:8:19: `columns[1].format`"), "{}", r.text());
}

#[test]
fn explicit_keyset_on_a_key_that_is_not_unique_is_refused_naming_the_key() {
    let db = demo(500).join("demo.sqlite");
    let src = format!("sqlite:{}", db.display());
    // A query's rows have no catalogue to prove customer_id unique (it repeats): keyset
    // pages would skip every row that repeats the last key of a page.
    let sql = "SELECT customer_id, id FROM invoices";
    for strategy in ["keyset", "offset"] {
        let r = run(&["run", "--source", &src, "--sql", sql, "--key", "customer_id", "--strategy", strategy]);
        assert_eq!(r.code, 2, "{}", r.stderr);
        assert!(
            r.stderr.contains(&format!("{strategy} paging needs a key the database guarantees unique")),
            "{}",
            r.stderr
        );
        assert!(r.stderr.contains("`key: [customer_id]`"), "{}", r.stderr);
        assert!(r.stdout.is_empty());
    }
    // `auto` streams it in one statement instead, and every row comes once.
    let r = run(&["run", "--source", &src, "--sql", sql, "--key", "customer_id", "--batch-size", "1"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.text().lines().count(), 1 + 500);
}

#[test]
fn a_repeating_key_on_a_rowid_table_pages_by_the_rowid_as_a_tiebreaker() {
    let db = demo(500).join("demo.sqlite");
    let src = format!("sqlite:{}", db.display());
    let out = std::process::Command::new("sqlite3")
        .args([db.to_str().unwrap(), "SELECT id FROM invoices ORDER BY customer_id, rowid"])
        .output()
        .unwrap();
    let want: Vec<String> = String::from_utf8(out.stdout).unwrap().lines().map(String::from).collect();
    assert_eq!(want.len(), 500);
    for batch in ["1", "7", "1000"] {
        let args = ["run", "--source", &src, "--table", "invoices", "--key", "customer_id", "--strategy", "keyset"];
        let r = run(&[&args[..], &["--batch-size", batch]].concat());
        assert_eq!(r.code, 0, "{}", r.stderr);
        let ids: Vec<String> =
            csv::Reader::from_reader(&r.stdout[..]).records().map(|rec| rec.unwrap()[0].to_string()).collect();
        assert_eq!(ids, want, "batch {batch}: not every row once in (customer_id, rowid) order");
    }
}

#[test]
fn a_panic_fails_the_run_with_an_internal_error_and_leaves_no_file() {
    let (dir, spec) = spec_dir("  key: [id]\n");
    let out = dir.path().join("out.csv");
    let mut c = ream();
    c.args(["run", spec.to_str().unwrap(), "-o", out.to_str().unwrap()]).env("REAM_TEST_PANIC", "r");
    let o = c.output().unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("internal error: injected panic in report `r`"), "{stderr}");
    assert!(stderr.contains("please report it"), "{stderr}");
    assert_eq!(files_in(dir.path()), vec!["spec.yaml"], "output left behind");
}

#[test]
fn sql_ending_in_a_comment_or_a_semicolon_still_runs() {
    let db = demo(500).join("demo.sqlite");
    let src = format!("sqlite:{}", db.display());
    for sql in ["SELECT count(*) AS n FROM invoices -- all of them", "SELECT count(*) AS n FROM invoices;"] {
        let r = run(&["run", "--source", &src, "--sql", sql]);
        assert_eq!(r.code, 0, "{sql}: {}", r.stderr);
        assert_eq!(r.text(), "n\n500\n", "{sql}");
    }
    // A filter that ends in a comment, in a spec.
    let (_dir, spec) = spec_dir("  key: [id]\n  where: \"status = 'paid' -- only paid\"\ncolumns: [{field: id}]\n");
    let r = run(&["run", spec.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.text().lines().count() > 100, "{}", r.text());
}

/// A database refusing the spec's own SQL: the key it came from, located, the fragment
/// once with a caret under the name refused, and neither the generated statement nor an
/// offset into it. On every database.
#[test]
fn an_sql_error_names_its_spec_key_and_shows_the_fragment_once_on_every_database() {
    let demo = demo(50);
    let sqlite = format!("sqlite:{}", demo.join("demo.sqlite").display());
    let (Some(pg), Some(my)) = (common::pg::PgDb::create("sqlerr"), common::my::MyDb::create("sqlerr")) else {
        return;
    };
    let table = "CREATE TABLE invoices (id INT PRIMARY KEY, total NUMERIC(10,2), status TEXT)";
    pg.exec(table);
    my.sql(table);
    for url in [&sqlite, &pg.url, &my.url] {
        for (filter, shown) in [
            ("total > :min\n      AND totl < 100", "\n  |   AND totl < 100\n  |       ^^^^\n"),
            (
                "total > :min AND AND status = 'x'",
                "\n  | total > :min AND AND status = 'x'\n  |                  ^^^\n",
            ),
        ] {
            let dir = tempfile::tempdir().unwrap();
            let text = format!(
                "report: r\nsource:\n  url: \"{url}\"\n  table: invoices\n  where: |\n    {filter}\n\
                 parameters:\n  min: {{ type: int, default: 5 }}\n"
            );
            let spec = write(dir.path(), "spec.yaml", &text);
            let r = run_in(Some(dir.path()), &["run", spec.to_str().unwrap(), "-o", "out.csv"]);
            assert_eq!(r.code, 2, "{url}: {}", r.stderr);
            let at = format!("{}:5:3: `source.where`: ", spec.display());
            assert!(r.stderr.starts_with(&format!("ream: error: {at}")), "{url}: {}", r.stderr);
            assert!(r.stderr.ends_with(shown), "{url}: {}", r.stderr);
            assert!(!r.stderr.contains("SELECT") && !r.stderr.contains("offset"), "{url}: {}", r.stderr);
            assert_eq!(files_in(dir.path()), vec!["spec.yaml"], "output left behind");
        }
    }
}
