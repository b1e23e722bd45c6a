//! HTML: a valid HTML5 document (the Nu checker), banded structure read back with an HTML
//! parser, subtotals equal to SQL's, and hostile values escaped.

mod common;
use common::*;
use scraper::{Html, Selector};
use std::path::PathBuf;

/// The Nu HTML checker's jar: $VNU_JAR (set by .ci/run). In CI it must be there; a plain
/// `cargo test` without it skips the validation, loudly.
fn vnu() -> Option<PathBuf> {
    match std::env::var_os("VNU_JAR") {
        Some(p) => Some(PathBuf::from(p)),
        None if std::env::var_os("CI").is_some() => panic!("CI must set VNU_JAR (see .ci/run)"),
        None => {
            eprintln!(
                "\n*** VNU_JAR is not set: skipping Nu HTML checker validation (run .ci/run for the full suite) ***\n"
            );
            None
        }
    }
}

fn assert_valid_html(file: &std::path::Path) {
    let Some(jar) = vnu() else { return };
    let out = std::process::Command::new("java")
        .arg("-jar")
        .arg(&jar)
        .arg("--errors-only")
        .arg(file)
        .output()
        .expect("java runs");
    assert!(out.status.success(), "Nu checker: {}", String::from_utf8_lossy(&out.stderr));
}

fn sel(s: &str) -> Selector {
    Selector::parse(s).unwrap()
}

#[test]
fn a_grouped_report_is_valid_html_with_sql_subtotals() {
    let demo = demo(2000);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("statement.html");
    let spec = demo.join("reports/customer_statement.yaml");
    let r = run(&["run", spec.to_str().unwrap(), "-p", "region=Europe", "-o", out.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_valid_html(&out);

    let doc = Html::parse_document(&std::fs::read_to_string(&out).unwrap());
    let headers: Vec<String> = doc.select(&sel("thead th")).map(|e| e.text().collect()).collect();
    assert_eq!(headers, vec!["Invoice #", "Date", "Status", "Amount"]);
    // Every group header has its footer, properly nested.
    let mut open: Vec<(String, String)> = Vec::new();
    let mut customers = Vec::new();
    for tr in doc.select(&sel("tbody tr")) {
        let class = tr.value().attr("class").unwrap_or("");
        let level = tr.value().attr("data-level").unwrap_or("").to_string();
        let key = tr.value().attr("data-key").unwrap_or("").to_string();
        if class.starts_with("group-header") {
            open.push((level, key));
        } else if class.starts_with("group-footer") {
            assert_eq!(open.pop(), Some((level.clone(), key.clone())), "footer without its header");
            if level == "1" {
                customers.push((
                    key,
                    tr.value().attr("data-var-billed").unwrap().to_string(),
                    tr.value().attr("data-var-invoices").unwrap().to_string(),
                ));
            }
        }
    }
    assert!(open.is_empty());
    // Subtotals per customer equal SQL's.
    let c = rusqlite::Connection::open(demo.join("demo.sqlite")).unwrap();
    let mut stmt = c
        .prepare(
            "SELECT i.customer_id, printf('%.2f', sum(i.total)), count(*) FROM invoices i JOIN customers c ON c.id = i.customer_id
             JOIN regions r ON r.id = c.region_id WHERE r.name = 'Europe' GROUP BY i.customer_id ORDER BY i.customer_id",
        )
        .unwrap();
    let want: Vec<(String, String, String)> = stmt
        .query_map([], |r| {
            Ok((r.get::<_, i64>(0)?.to_string(), r.get::<_, String>(1)?, r.get::<_, i64>(2)?.to_string()))
        })
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(customers, want);
    // The detail rows are formatted: currency with separators, right-aligned.
    let amount = doc.select(&sel("tbody tr td:nth-child(4)")).next().unwrap();
    assert_eq!(amount.value().attr("class"), Some("r"));
    let text: String = amount.text().collect();
    assert!(text.starts_with('$') && text.contains('.'), "{text}");
    let summary = doc.select(&sel("footer.summary")).next().unwrap();
    assert!(summary.text().collect::<String>().ends_with("billed"));
}

#[test]
fn hostile_values_are_escaped_and_the_page_stays_valid() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("h.sqlite");
    let hostile = [
        "<script>alert(1)</script>",
        "\" onmouseover=\"alert(2)",
        "a & b < c > d",
        "bell\u{7}and\u{1b}escape",
        "'single'",
        "</td></tr></table>",
    ];
    let c = rusqlite::Connection::open(&db).unwrap();
    c.execute_batch("CREATE TABLE t (id INTEGER PRIMARY KEY, s TEXT);").unwrap();
    for (i, h) in hostile.iter().enumerate() {
        c.execute("INSERT INTO t VALUES (?, ?)", rusqlite::params![i as i64 + 1, h]).unwrap();
    }
    let out = dir.path().join("h.html");
    let r = run(&["run", "--source", &format!("sqlite:{}", db.display()), "--table", "t", "-o", out.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_valid_html(&out);
    let doc = Html::parse_document(&std::fs::read_to_string(&out).unwrap());
    assert_eq!(doc.select(&sel("script")).count(), 0);
    let cells: Vec<String> = doc.select(&sel("tbody tr td:nth-child(2)")).map(|e| e.text().collect()).collect();
    let expect: Vec<String> = hostile.iter().map(|h| h.replace(['\u{7}', '\u{1b}'], "\u{FFFD}")).collect();
    assert_eq!(cells, expect);
    assert!(doc.select(&sel("td[onmouseover]")).next().is_none());
}

#[test]
fn an_empty_report_shows_its_no_data_band() {
    let demo = demo(2000);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("empty.html");
    let spec = demo.join("reports/sales_by_region.yaml");
    let r = run(&[
        "run",
        spec.to_str().unwrap(),
        "-p",
        "start_date=1990-01-01",
        "-p",
        "end_date=1990-01-02",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_valid_html(&out);
    let doc = Html::parse_document(&std::fs::read_to_string(&out).unwrap());
    let p: String = doc.select(&sel("p.no-data")).next().unwrap().text().collect();
    assert_eq!(p, "No invoices between 1990-01-01 and 1990-01-02.");
}

#[test]
fn a_locale_sets_separators_and_currency_placement() {
    let demo = demo(2000);
    let dir = tempfile::tempdir().unwrap();
    let spec = std::fs::read_to_string(demo.join("reports/customer_statement.yaml"))
        .unwrap()
        .replace("report: customer_statement", "report: customer_statement\nlocale: de-DE")
        .replace("sqlite:../demo.sqlite", &format!("sqlite:{}", demo.join("demo.sqlite").display()));
    let path = write(dir.path(), "de.yaml", &spec);
    let out = dir.path().join("de.html");
    let r = run(&["run", path.to_str().unwrap(), "-p", "region=Europe", "-o", out.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_valid_html(&out);
    let doc = Html::parse_document(&std::fs::read_to_string(&out).unwrap());
    assert_eq!(doc.select(&sel("html")).next().unwrap().value().attr("lang"), Some("de-DE"));
    let amounts: Vec<String> = doc.select(&sel("tbody tr td:nth-child(4)")).map(|e| e.text().collect()).collect();
    assert!(!amounts.is_empty());
    for a in &amounts {
        // 1.234,56 € : dot groups, comma decimals, the symbol after a no-break space.
        let (num, sym) = a.split_once('\u{A0}').unwrap_or_else(|| panic!("{a:?}"));
        assert_eq!(sym, "€", "{a:?}");
        let (int, frac) = num.trim_start_matches('-').split_once(',').unwrap_or_else(|| panic!("{a:?}"));
        assert_eq!(frac.len(), 2, "{a:?}");
        assert!(int.split('.').skip(1).all(|g| g.len() == 3), "{a:?}");
    }
    // `currency` without a code is the locale's (EUR in de-DE), in the footers too; a
    // format that names one keeps it.
    let footers: Vec<String> = doc.select(&sel("tr.group-footer td")).map(|e| e.text().collect()).collect();
    assert!(!footers.is_empty() && footers.iter().all(|f| f.contains("\u{A0}€ billed")), "{footers:?}");
    let usd = write(dir.path(), "usd.yaml", &spec.replace("format: currency,", "format: \"currency:USD\","));
    let r = run(&["run", usd.to_str().unwrap(), "-p", "region=Europe", "-f", "html"]);
    let doc = Html::parse_document(&r.text());
    let first: String = doc.select(&sel("tbody tr td:nth-child(4)")).next().unwrap().text().collect();
    assert!(first.ends_with("\u{A0}$"), "{first:?}");
    let bad = write(dir.path(), "bad.yaml", &spec.replace("locale: de-DE", "locale: xx-YY"));
    let v = run(&["validate", bad.to_str().unwrap()]);
    assert_eq!(v.code, 2);
    assert!(v.text().contains(":4:1: `locale`: unknown locale `xx-YY`"), "{}", v.text());
}

#[test]
fn month_and_day_names_follow_the_locale_in_columns_and_chart_axes() {
    let demo = demo(2000);
    let dir = tempfile::tempdir().unwrap();
    let spec = |locale: &str| {
        format!(
            "report: months\nlocale: {locale}\nsource:\n  url: \"sqlite:{}\"\n  table: invoices\n  key: [id]\n  \
             where: \"date >= '2024-03-01' AND date < '2024-05-01'\"\ncolumns:\n  - field: id\n  \
             - {{ field: date, format: \"date:%A %-d %B\" }}\ncharts:\n  \
             - {{ id: by_month, kind: bar, x: {{ field: date, bucket: month }}, y: {{ sum: total }} }}\n",
            demo.join("demo.sqlite").display()
        )
    };
    let names = |locale: &str| {
        let path = write(dir.path(), &format!("{locale}.yaml"), &spec(locale));
        let out = dir.path().join(format!("{locale}.html"));
        let r = run(&["run", path.to_str().unwrap(), "-o", out.to_str().unwrap()]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        assert_valid_html(&out);
        let doc = Html::parse_document(&std::fs::read_to_string(&out).unwrap());
        let dates: Vec<String> = doc.select(&sel("tbody tr td:nth-child(2)")).map(|e| e.text().collect()).collect();
        let axis: Vec<String> = doc.select(&sel("g.x-axis text")).map(|e| e.text().collect()).collect();
        (dates, axis)
    };
    let (dates, axis) = names("de-DE");
    let months: std::collections::BTreeSet<&str> = dates.iter().filter_map(|d| d.rsplit(' ').next()).collect();
    assert_eq!(months.into_iter().collect::<Vec<_>>(), ["April", "März"], "{dates:?}");
    let weekdays = ["Montag", "Dienstag", "Mittwoch", "Donnerstag", "Freitag", "Samstag", "Sonntag"];
    assert!(dates.iter().all(|d| weekdays.iter().any(|w| d.starts_with(w))), "{dates:?}");
    // Bars span their months: ticks at the month starts, the end of April included.
    assert_eq!(axis, ["Mär 2024", "Apr 2024", "Mai 2024"]);
    let (dates, axis) = names("en-US");
    assert!(dates.iter().all(|d| d.ends_with(" March") || d.ends_with(" April")), "{dates:?}");
    assert_eq!(axis, ["Mar 2024", "Apr 2024", "May 2024"]);
}

/// A group band appears only where the spec defines it, and a page footer that numbers
/// pages (HTML has none) is left out, while one that does not is kept.
#[test]
fn only_the_bands_a_spec_defines_are_shown_and_no_page_numbers_are_left_blank() {
    let demo = demo(300);
    let dir = tempfile::tempdir().unwrap();
    let html = |spec: &std::path::Path, params: &[&str]| {
        let out = dir.path().join("out.html");
        let mut args = vec!["run", spec.to_str().unwrap(), "-o", out.to_str().unwrap()];
        args.extend_from_slice(params);
        let r = run(&args);
        assert_eq!(r.code, 0, "{}", r.stderr);
        assert_valid_html(&out);
        Html::parse_document(&std::fs::read_to_string(&out).unwrap())
    };
    // customer_statement: `region` has no bands, `customer_id` both.
    let doc = html(&demo.join("reports/customer_statement.yaml"), &["-p", "region=Nordics"]);
    let count = |s: &str| doc.select(&sel(s)).count();
    assert_eq!(count("tr.group-header.level-0") + count("tr.group-footer.level-0"), 0);
    let customers: Vec<String> =
        doc.select(&sel("tr.group-header.level-1")).map(|e| e.text().collect::<String>()).collect();
    assert!(customers.len() > 1 && customers.iter().all(|c| c.contains("(customer #")), "{customers:?}");
    assert_eq!(count("tr.group-footer.level-1"), customers.len());
    // sales_by_region's page footer is "… page {page} of {pages}": no such footer here.
    let params = ["-p", "start_date=2023-01-01", "-p", "end_date=2023-12-31", "-p", "min_amount=0"];
    let sales = demo.join("reports/sales_by_region.yaml");
    assert_eq!(html(&sales, &params).select(&sel(".page-footer")).count(), 0);
    let text = std::fs::read_to_string(&sales).unwrap();
    assert!(text.contains("page {page} of {pages}"), "the example changed: {text}");
    // The demo is shared and read-only: the variant goes beside the test's output.
    let plain = dir.path().join("sales_plain_footer.yaml");
    let db = format!("sqlite:{}", demo.join("demo.sqlite").display());
    let variant = text.replace("page {page} of {pages}", "confidential").replace("sqlite:../demo.sqlite", &db);
    std::fs::write(&plain, variant).unwrap();
    let footer: Vec<String> =
        html(&plain, &params).select(&sel(".page-footer")).map(|e| e.text().collect::<String>()).collect();
    assert_eq!(footer, ["Sales by region · confidential"]);
}
