//! PDF: checked with the tools people use on PDFs. qpdf finds the file valid; pdftotext
//! gets every value back in order; pdfinfo/pdffonts see the title, the date and the
//! embedded subset; pdftoppm renders the first and last pages. Pages show "page X of
//! Y" from one shared object, group headers stay with their first row, page breaks per
//! group, wrapped rows stay on one page, and bad page setups fail before any output.

mod common;
use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Whether the PDF tools are installed (CI installs qpdf and poppler-utils, see .ci/run);
/// elsewhere a test that needs them skips loudly.
fn tools(what: &str) -> bool {
    let ok = ["qpdf", "pdftotext", "pdftoppm", "pdfinfo", "pdffonts"]
        .iter()
        .all(|t| Command::new(t).arg("-v").output().is_ok());
    if !ok {
        assert!(std::env::var_os("CI").is_none(), "CI must install qpdf and poppler-utils (see .ci/run)");
        eprintln!("\n*** qpdf/poppler-utils are not installed: skipping {what} ***\n");
    }
    ok
}

fn tool(cmd: &str, args: &[&str]) -> String {
    let o = Command::new(cmd).args(args).output().unwrap();
    assert!(o.status.success(), "{cmd} {args:?}: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout).unwrap()
}

/// The text of one page (1-based), laid out as on the page.
fn page_text(pdf: &Path, page: usize) -> String {
    let p = page.to_string();
    tool("pdftotext", &["-layout", "-f", &p, "-l", &p, pdf.to_str().unwrap(), "-"])
}

fn pages(pdf: &Path) -> usize {
    let info = tool("pdfinfo", &[pdf.to_str().unwrap()]);
    let line = info.lines().find(|l| l.starts_with("Pages:")).unwrap();
    line[6..].trim().parse().unwrap()
}

fn qpdf_check(pdf: &Path) {
    let o = Command::new("qpdf").args(["--check", pdf.to_str().unwrap()]).output().unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success() && text.contains("No syntax or stream encoding errors"), "qpdf --check: {text}");
}

/// Run ream with a fixed creation date; the output file.
fn pdf(args: &[&str], out: &Path) -> PathBuf {
    let o = ream()
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .args(args)
        .args(["--format", "pdf", "-o", out.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    out.to_path_buf()
}

/// A report on the demo database: invoices by region, with page header and footer.
fn sales_spec(dir: &Path, demo: &Path, extra: &str) -> PathBuf {
    let db = demo.join("demo.sqlite");
    write(
        dir,
        "sales.yaml",
        &format!(
            r#"report: pdf_sales
title: "Invoices by region"
source:
  url: "sqlite:{}"
  table: invoices
  key: [id]
  joins:
    - "JOIN customers c ON c.id = invoices.customer_id"
    - "JOIN regions r ON r.id = c.region_id"
  columns: {{ id: invoices.id, date: invoices.date, region: r.name, customer: c.name, status: invoices.status, total: invoices.total }}
groups:
  - by: region
    header: "Region: {{region}}"
    footer: "Subtotal {{region}}: {{region_total:number:2}}"
variables:
  region_total: {{ sum: total, reset: region }}
  grand_total: {{ sum: total }}
columns:
  - {{ field: id, label: "Invoice #" }}
  - {{ field: date, label: Date }}
  - {{ field: customer, label: Customer }}
  - {{ field: status, label: Status }}
  - {{ field: total, label: Amount, format: "number:2" }}
page_header: "Invoices by region"
page_footer: "Page {{page}} of {{pages}}"
summary: "Grand total: {{grand_total:number:2}}"
{extra}
"#,
            db.display()
        ),
    )
}

/// The same report as HTML: its cells, in order, are what the PDF must show.
fn html_cells(spec: &Path) -> Vec<String> {
    let r = run(&["run", spec.to_str().unwrap(), "--format", "html"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let doc = scraper::Html::parse_document(&r.text());
    let sel = scraper::Selector::parse("tbody td, tbody th").unwrap();
    doc.select(&sel).map(|e| e.text().collect::<String>()).filter(|t| !t.is_empty()).collect()
}

/// Each of `values` in `text`, in this order.
fn assert_in_order(text: &str, values: &[String]) {
    let mut at = 0;
    for (i, v) in values.iter().enumerate() {
        match text[at..].find(v.as_str()) {
            Some(p) => at += p + v.len(),
            None => panic!("value #{i} `{v}` is missing or out of order after byte {at}"),
        }
    }
}

#[test]
fn every_value_comes_back_in_order_and_qpdf_finds_the_file_valid() {
    if !tools("pdf values") {
        return;
    }
    let demo = demo(600);
    let dir = tempfile::tempdir().unwrap();
    let spec = sales_spec(dir.path(), &demo, "");
    let out = pdf(&["run", spec.to_str().unwrap()], &dir.path().join("s.pdf"));
    qpdf_check(&out);
    let text = tool("pdftotext", &["-layout", out.to_str().unwrap(), "-"]);
    let cells = html_cells(&spec);
    assert!(cells.len() > 600 * 5, "{} cells", cells.len());
    assert_in_order(&text, &cells);
    // The grand total equals the database's.
    let c = rusqlite::Connection::open(demo.join("demo.sqlite")).unwrap();
    let total: f64 = c.query_row("SELECT sum(total) FROM invoices", [], |r| r.get(0)).unwrap();
    let shown = ream_core_number(total);
    assert!(text.contains(&format!("Grand total: {shown}")), "no grand total {shown}");
    // Names in Greek, Cyrillic and accented Latin come back as written.
    for name in ["Παπαδόπουλος", "Дмитрий", "Ольга", "Øvergård", "Lefèvre"] {
        assert!(text.contains(name), "{name} is missing");
    }
}

/// `number:2` as ream shows it: two decimals, comma thousands.
fn ream_core_number(v: f64) -> String {
    let s = format!("{:.2}", v);
    let (int, frac) = s.split_once('.').unwrap();
    let mut out = String::new();
    for (i, c) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    format!("{out}.{frac}")
}

#[test]
fn every_page_says_page_x_of_y_from_one_shared_object() {
    if !tools("page x of y") {
        return;
    }
    let demo = demo(600);
    let dir = tempfile::tempdir().unwrap();
    let spec = sales_spec(dir.path(), &demo, "");
    let out = pdf(&["run", spec.to_str().unwrap()], &dir.path().join("s.pdf"));
    let n = pages(&out);
    assert!(n >= 10, "only {n} pages");
    for p in 1..=n {
        let t = page_text(&out, p);
        assert!(t.contains(&format!("Page {p} of {n}")), "page {p}: {t}");
        assert!(t.contains("Invoices by region"), "page {p} has no page header");
        // Column headers on every page but the ones after the table.
        if p < n {
            assert!(t.contains("Invoice #") && t.contains("Amount"), "page {p} has no column headers");
        }
    }
    // The total is one form XObject, drawn by every page's footer.
    // (qpdf's QDF form writes every object uncompressed, one per line group.)
    let qdf = dir.path().join("s.qdf");
    tool("qpdf", &["--qdf", "--object-streams=disable", out.to_str().unwrap(), qdf.to_str().unwrap()]);
    let qdf = String::from_utf8_lossy(&std::fs::read(&qdf).unwrap()).into_owned();
    assert_eq!(qdf.matches("/Subtype /Form").count(), 1, "one {{pages}} object, not one per page");
    assert_eq!(qdf.matches("/PF Do").count(), n, "every page draws it");
}

#[test]
fn group_headers_stay_with_their_first_row() {
    if !tools("group headers") {
        return;
    }
    let demo = demo(600);
    let dir = tempfile::tempdir().unwrap();
    // A small page makes many page ends, so some fall right after a group header.
    let spec = sales_spec(dir.path(), &demo, "page: { size: \"120mm x 100mm\", margin: 8mm }");
    let out = pdf(&["run", spec.to_str().unwrap()], &dir.path().join("s.pdf"));
    qpdf_check(&out);
    let n = pages(&out);
    assert!(n > 30, "{n} pages");
    for p in 1..=n {
        let t = page_text(&out, p);
        let body: Vec<&str> = t.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with("Page ")).collect();
        let last = body.last().copied().unwrap_or("");
        assert!(!last.starts_with("Region:"), "page {p} ends with a group header: {last}");
    }
}

#[test]
fn page_break_starts_each_group_on_a_new_page() {
    if !tools("page breaks") {
        return;
    }
    let demo = demo(600);
    let dir = tempfile::tempdir().unwrap();
    let spec = sales_spec(dir.path(), &demo, "");
    let text = std::fs::read_to_string(&spec)
        .unwrap()
        .replace("header: \"Region: {region}\"", "header: \"Region: {region}\"\n    page_break: true");
    std::fs::write(&spec, text).unwrap();
    let out = pdf(&["run", spec.to_str().unwrap()], &dir.path().join("s.pdf"));
    let regions = regions_with_invoices(&demo);
    let mut starts = 0;
    for p in 1..=pages(&out) {
        let t = page_text(&out, p);
        let headers: Vec<&str> =
            t.lines().map(str::trim).filter(|l| l.starts_with("Region:") && !l.ends_with("(continued)")).collect();
        assert!(headers.len() <= 1, "page {p} holds two groups: {headers:?}");
        if let Some(h) = headers.first() {
            // A group starts right under the column headers.
            let after_columns = t.lines().map(str::trim).skip_while(|l| !l.starts_with("Invoice #")).nth(1).unwrap();
            assert_eq!(after_columns, *h, "page {p}");
            starts += 1;
        }
    }
    assert_eq!(starts, regions);
}

/// How many regions the demo's invoices are in (SQL's count, for the groups of a report).
fn regions_with_invoices(demo: &Path) -> i64 {
    let c = rusqlite::Connection::open(demo.join("demo.sqlite")).unwrap();
    let sql = "SELECT count(DISTINCT r.name) FROM invoices JOIN customers c ON c.id = invoices.customer_id \
               JOIN regions r ON r.id = c.region_id";
    c.query_row(sql, [], |r| r.get(0)).unwrap()
}

/// The body lines of a page: after the column headers, before the page footer.
fn body_lines(text: &str) -> Vec<String> {
    let lines: Vec<String> = text.lines().map(|l| l.trim().to_string()).filter(|l| !l.is_empty()).collect();
    let start = lines.iter().position(|l| l.starts_with("Invoice #")).map_or(0, |i| i + 1);
    let end = lines.iter().rposition(|l| l.starts_with("Page ")).unwrap_or(lines.len());
    lines[start..end].to_vec()
}

#[test]
fn an_open_groups_header_repeats_on_every_page_it_continues_on() {
    if !tools("continued group headers") {
        return;
    }
    let demo = demo(600);
    let dir = tempfile::tempdir().unwrap();
    let spec = sales_spec(dir.path(), &demo, "");
    let out = pdf(&["run", spec.to_str().unwrap()], &dir.path().join("s.pdf"));
    let mut open: Option<String> = None;
    let mut continued = 0;
    for p in 1..=pages(&out) {
        let body = body_lines(&page_text(&out, p));
        match &open {
            Some(region) => {
                assert_eq!(body[0], format!("Region: {region} (continued)"), "page {p}");
                continued += 1;
            }
            None => assert!(!body[0].ends_with("(continued)"), "page {p} continues no group: {}", body[0]),
        }
        for line in &body {
            if let Some(r) = line.strip_prefix("Region: ").filter(|l| !l.ends_with("(continued)")) {
                open = Some(r.to_string());
            }
            if line.starts_with("Subtotal ") {
                open = None;
            }
        }
    }
    assert!(continued > 3, "too few continuation pages to prove much: {continued}");
}

#[test]
fn page_numbers_restart_per_group_and_group_pages_counts_each_groups_pages() {
    if !tools("pages numbered per group") {
        return;
    }
    let demo = demo(600);
    let dir = tempfile::tempdir().unwrap();
    let spec = sales_spec(dir.path(), &demo, "page:\n  restart_at: region\n");
    let text = std::fs::read_to_string(&spec).unwrap();
    let text = text.replace("page_footer: \"Page {page} of {pages}\"", "page_footer: \"Page {page} of {group_pages}\"");
    std::fs::write(&spec, text).unwrap();
    let out = pdf(&["run", spec.to_str().unwrap()], &dir.path().join("s.pdf"));
    qpdf_check(&out);
    // Per page: the region it shows (its header, or the one it continues) and "Page i of n".
    let mut by_region: Vec<(String, Vec<(usize, usize)>)> = Vec::new();
    for p in 1..=pages(&out) {
        let t = page_text(&out, p);
        let footer = t.lines().map(str::trim).find(|l| l.starts_with("Page ")).unwrap_or_default().to_string();
        let (i, n) = footer
            .strip_prefix("Page ")
            .and_then(|f| f.split_once(" of "))
            .unwrap_or_else(|| panic!("page {p}: {footer:?}"));
        let number = (i.parse().unwrap(), n.parse().unwrap());
        let region = t
            .lines()
            .map(str::trim)
            .find_map(|l| l.strip_prefix("Region: "))
            .map(|r| r.trim_end_matches(" (continued)").to_string());
        match (region, by_region.last_mut()) {
            (Some(r), Some((last, pages))) if *last == r => pages.push(number),
            (Some(r), _) => by_region.push((r, vec![number])),
            // The summary's page, after the last group: still the last group's.
            (None, Some((_, pages))) => pages.push(number),
            (None, None) => panic!("page {p} before any group"),
        }
    }
    let regions = regions_with_invoices(&demo);
    assert_eq!(by_region.len() as i64, regions, "each region starts on a page of its own: {by_region:?}");
    assert!(by_region.iter().any(|(_, p)| p.len() > 1), "no region spans pages: {by_region:?}");
    for (region, numbers) in &by_region {
        let n = numbers.len();
        let expected: Vec<(usize, usize)> = (1..=n).map(|i| (i, n)).collect();
        assert_eq!(numbers, &expected, "{region}");
    }
}

#[test]
fn a_page_header_and_footer_each_show_their_own_count() {
    if !tools("counts in both page bands") {
        return;
    }
    let demo = demo(600);
    let dir = tempfile::tempdir().unwrap();
    for (extra, header, footer) in [
        ("", "page_header: \"{pages} pages in all\"", "Page {page} of {pages}"),
        (
            "page:\n  restart_at: region\n",
            "page_header: \"{group_pages} pages in this region\"",
            "Page {page} of {group_pages}",
        ),
    ] {
        let spec = sales_spec(dir.path(), &demo, extra);
        let text = std::fs::read_to_string(&spec).unwrap().replace("page_header: \"Invoices by region\"", header);
        std::fs::write(&spec, text.replace("Page {page} of {pages}", footer)).unwrap();
        let out = pdf(&["run", spec.to_str().unwrap()], &dir.path().join("s.pdf"));
        qpdf_check(&out);
        let first = page_text(&out, 1);
        let n = first.lines().find_map(|l| l.trim().strip_prefix("Page 1 of ")).unwrap_or_else(|| panic!("{first}"));
        let shown = if extra.is_empty() { format!("{n} pages in all") } else { format!("{n} pages in this region") };
        assert!(first.contains(&shown), "{footer}: the header does not say `{shown}`:\n{first}");
        if extra.is_empty() {
            assert_eq!(n.parse::<usize>().unwrap(), pages(&out));
        }
    }
}

#[test]
fn a_page_band_counts_the_documents_pages_or_its_groups_not_both() {
    let demo = demo(50);
    let dir = tempfile::tempdir().unwrap();
    let validate = |extra: &str, footer: &str| {
        let spec = sales_spec(dir.path(), &demo, extra);
        let text = std::fs::read_to_string(&spec).unwrap();
        std::fs::write(&spec, text.replace("Page {page} of {pages}", footer)).unwrap();
        let r = run(&["validate", spec.to_str().unwrap()]);
        assert_eq!(r.code, 2, "{}", r.text());
        r.text()
    };
    let both = validate("page:\n  restart_at: regoin\n", "{page}/{group_pages} of {pages}");
    assert!(
        both.contains("`page.restart_at`: `regoin` is not a group (groups: region): did you mean `region`?"),
        "{both}"
    );
    assert!(both.contains("`page_footer`: use `{pages}` or `{group_pages}`, not both"), "{both}");
    // Without restart_at there are no groups' pages to count.
    let alone = validate("", "{page} of {group_pages}");
    assert!(alone.contains("`page_footer`: `{group_pages}` is not available here"), "{alone}");
}

#[test]
fn wrapped_rows_span_lines_never_pages_and_clipped_text_ends_in_an_ellipsis() {
    if !tools("wrapping") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("t.sqlite");
    let c = rusqlite::Connection::open(&db).unwrap();
    c.execute_batch("CREATE TABLE t (id INTEGER PRIMARY KEY, note TEXT, tail TEXT)").unwrap();
    for i in 1..=300 {
        let words = 3 + (i * 7) % 40;
        let note: Vec<String> = (0..words).map(|w| format!("r{i}w{w}")).collect();
        c.execute("INSERT INTO t VALUES (?1, ?2, ?3)", rusqlite::params![i, note.join(" "), "x".repeat(200)]).unwrap();
    }
    let spec = write(
        dir.path(),
        "w.yaml",
        &format!(
            "report: wrap\nsource: {{ url: \"sqlite:{}\", table: t, key: [id] }}\ncolumns:\n  - {{ field: id, width: 20mm }}\n  - {{ field: note, width: 2fr, wrap: true }}\n  - {{ field: tail, width: 1fr }}\npage: {{ size: A5 }}\n",
            db.display()
        ),
    );
    let out = pdf(&["run", spec.to_str().unwrap()], &dir.path().join("w.pdf"));
    qpdf_check(&out);
    let n = pages(&out);
    let texts: Vec<String> = (1..=n).map(|p| page_text(&out, p)).collect();
    for i in 1..=300 {
        let words = 3 + (i * 7) % 40;
        let on: Vec<usize> = (0..words)
            .map(|w| {
                let word = format!("r{i}w{w}");
                let found: Vec<usize> = (0..n).filter(|p| texts[*p].split_whitespace().any(|t| t == word)).collect();
                assert_eq!(found.len(), 1, "{word} is on pages {found:?}");
                found[0]
            })
            .collect();
        assert!(on.iter().all(|p| *p == on[0]), "row {i} spans pages {on:?}");
    }
    // The long text is clipped to its column, with an ellipsis.
    assert!(texts[0].contains("xxx…"), "{}", texts[0]);
    assert!(!texts[0].contains(&"x".repeat(200)));
}

#[test]
fn metadata_fonts_and_reproducible_bytes() {
    if !tools("metadata") {
        return;
    }
    let demo = demo(600);
    let dir = tempfile::tempdir().unwrap();
    let spec = sales_spec(dir.path(), &demo, "");
    let a = std::fs::read(pdf(&["run", spec.to_str().unwrap()], &dir.path().join("a.pdf"))).unwrap();
    let b = pdf(&["run", spec.to_str().unwrap(), "--batch-size", "7"], &dir.path().join("b.pdf"));
    assert!(a == std::fs::read(&b).unwrap(), "same report, same date: same bytes");
    let info = tool("pdfinfo", &[b.to_str().unwrap()]);
    assert!(info.contains("Title:           Invoices by region"), "{info}");
    assert!(info.contains("CreationDate:    Tue Nov 14 22:13:20 2023"), "{info}");
    // Two embedded subsets (regular and bold), with ToUnicode maps.
    let fonts = tool("pdffonts", &[b.to_str().unwrap()]);
    let rows: Vec<&str> = fonts.lines().skip(2).collect();
    assert_eq!(rows.len(), 2, "{fonts}");
    for r in rows {
        assert!(r.contains("DejaVuSansCondensed") && r.contains("CID TrueType"), "{r}");
        assert!(r.contains("yes yes yes"), "embedded, subset, unicode: {r}");
    }
}

#[test]
fn first_and_last_pages_render_and_charts_are_vectors() {
    if !tools("rendering") {
        return;
    }
    let demo = demo(600);
    let spec = demo.join("reports/sales_by_region.yaml");
    let dir = tempfile::tempdir().unwrap();
    let out = pdf(
        &["run", spec.to_str().unwrap(), "-p", "start_date=2023-01-01", "-p", "end_date=2024-12-31"],
        &dir.path().join("s.pdf"),
    );
    qpdf_check(&out);
    let n = pages(&out);
    for p in [1, n] {
        let prefix = dir.path().join(format!("p{p}"));
        let ps = p.to_string();
        tool("pdftoppm", &["-r", "40", "-gray", "-f", &ps, "-l", &ps, out.to_str().unwrap(), prefix.to_str().unwrap()]);
        let file = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|f| f.file_name().unwrap().to_string_lossy().starts_with(&format!("p{p}-")))
            .unwrap();
        let pgm = std::fs::read(&file).unwrap();
        // Binary PGM: header `P5 W H 255`, then one byte per pixel; a page with content
        // has a fair share of dark pixels.
        let dark = pgm.iter().rev().take(pgm.len() - 20).filter(|b| **b < 128).count();
        assert!(dark > 500, "page {p} looks blank ({dark} dark pixels)");
    }
    // The charts: captions and axis labels are text; no raster images.
    let last = tool("pdftotext", &[out.to_str().unwrap(), "-"]);
    for caption in ["Sales by week", "Sales by region and status", "Invoice sizes", "count(*)"] {
        assert!(last.contains(caption), "{caption} is missing");
    }
    let images = tool("pdfimages", &["-list", out.to_str().unwrap()]);
    assert_eq!(images.lines().count(), 2, "no raster images: {images}");
}

#[test]
fn no_data_gives_one_page_with_the_message() {
    if !tools("no data") {
        return;
    }
    let demo = demo(600);
    let spec = demo.join("reports/sales_by_region.yaml");
    let dir = tempfile::tempdir().unwrap();
    let out = pdf(
        &["run", spec.to_str().unwrap(), "-p", "start_date=1990-01-01", "-p", "end_date=1990-12-31"],
        &dir.path().join("s.pdf"),
    );
    qpdf_check(&out);
    assert_eq!(pages(&out), 1);
    assert!(page_text(&out, 1).contains("No invoices between 1990-01-01 and 1990-12-31."));
}

#[test]
fn bad_page_setups_fail_before_any_output() {
    let demo = demo(600);
    let dir = tempfile::tempdir().unwrap();
    let spec = sales_spec(dir.path(), &demo, "page: { size: B12, margin: 3furlongs }");
    let out = dir.path().join("bad.pdf");
    let r = run(&["run", spec.to_str().unwrap(), "-o", out.to_str().unwrap()]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("page.size") && r.stderr.contains("`B12` is not a page size"), "{}", r.stderr);
    assert!(r.stderr.contains("page.margin") && r.stderr.contains("unknown unit `furlongs`"), "{}", r.stderr);
    let text = std::fs::read_to_string(&spec).unwrap().replace("page: { size: B12, margin: 3furlongs }", "");
    std::fs::write(
        &spec,
        text.replace("{ field: status, label: Status }", "{ field: status, label: Status, width: wide }"),
    )
    .unwrap();
    let r = run(&["run", spec.to_str().unwrap(), "-o", out.to_str().unwrap()]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("columns[3].width") && r.stderr.contains("`wide` is not a width"), "{}", r.stderr);
    assert!(files_in(dir.path()).iter().all(|f| !f.contains("bad")), "{:?}", files_in(dir.path()));
}

#[test]
fn zebra_shades_every_other_row_and_rules_can_be_turned_off() {
    if !tools("zebra") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("z.sqlite");
    let c = rusqlite::Connection::open(&db).unwrap();
    c.execute_batch(
        "CREATE TABLE z (id INTEGER PRIMARY KEY, name TEXT);
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 301)
         INSERT INTO z SELECT i, 'name ' || i FROM n;",
    )
    .unwrap();
    let content = |page: &str| {
        let spec = write(
            dir.path(),
            "z.yaml",
            &format!("report: z\nsource: {{ url: \"sqlite:{}\", table: z }}\npage: {page}\n", db.display()),
        );
        let out = pdf(&["run", spec.to_str().unwrap()], &dir.path().join("z.pdf"));
        let qdf = dir.path().join("z.qdf");
        tool("qpdf", &["--qdf", "--object-streams=disable", out.to_str().unwrap(), qdf.to_str().unwrap()]);
        String::from_utf8_lossy(&std::fs::read(&qdf).unwrap()).into_owned()
    };
    // Rows 2, 4, …, 300 are shaded: 150 rectangles in the zebra's gray.
    let zebra = content("{ zebra: true }");
    assert_eq!(zebra.matches("0.95 g").count(), 150);
    let plain = content("{ rules: false }");
    assert_eq!(plain.matches("0.95 g").count(), 0);
    assert!(zebra.contains("0.35 G") && !plain.contains(" G\n"), "column-header rule only with rules on");
}

#[test]
fn a_pdf_is_never_written_to_a_terminal() {
    // `script` gives the command a pseudo-terminal as stdout (util-linux, always there).
    let demo = demo(600);
    let cmd = format!(
        "{} run --source sqlite:{} --table regions --format pdf",
        env!("CARGO_BIN_EXE_ream"),
        demo.join("demo.sqlite").display()
    );
    let o = Command::new("script").args(["-qec", &cmd, "/dev/null"]).output().unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(2), "{text}");
    assert!(text.contains("pdf is binary and stdout is a terminal"), "{text}");
    assert!(!text.contains("%PDF"), "{text}");
}

#[test]
fn a_spec_can_bring_its_own_truetype_font() {
    if !tools("page.font") {
        return;
    }
    let demo = demo(600);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("serif.ttf"), dejavu::serif::regular()).unwrap();
    std::fs::write(dir.path().join("serif-bold.ttf"), dejavu::serif::bold()).unwrap();
    // Relative to the spec file, not to where ream runs.
    let spec = sales_spec(dir.path(), &demo, "page: { font: serif.ttf, font_bold: serif-bold.ttf }");
    let elsewhere = tempfile::tempdir().unwrap();
    let o = ream()
        .current_dir(elsewhere.path())
        .args(["run", spec.to_str().unwrap(), "--format", "pdf", "-o", "s.pdf"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = elsewhere.path().join("s.pdf");
    qpdf_check(&out);
    let fonts = tool("pdffonts", &[out.to_str().unwrap()]);
    let names: Vec<&str> = fonts.lines().skip(2).filter_map(|l| l.split_whitespace().next()).collect();
    assert_eq!(names.len(), 2, "{fonts}");
    assert!(names[0].ends_with("+DejaVuSerif") && names[1].ends_with("+DejaVuSerif-Bold"), "{fonts}");
    assert!(tool("pdftotext", &[out.to_str().unwrap(), "-"]).contains("Παπαδόπουλος"));

    // A file that is not a TrueType font, or is missing: exit 2 naming the key, no output.
    std::fs::write(dir.path().join("fake.ttf"), "not a font").unwrap();
    // Not a regular file: /dev/zero never ends (it took 16.8 GB), a FIFO never answers.
    let fifo = dir.path().join("fifo.ttf");
    assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    std::fs::File::create(dir.path().join("huge.ttf")).unwrap().set_len(65 << 20).unwrap();
    for (font, says) in [
        ("fake.ttf", "is not a TrueType font"),
        ("missing.ttf", "cannot read font"),
        ("/dev/zero", "not a regular file"),
        ("fifo.ttf", "not a regular file"),
        ("huge.ttf", "65 MB, over the 64 MB a font may have"),
    ] {
        let text = std::fs::read_to_string(&spec).unwrap();
        let text = text.replace("font: serif.ttf, font_bold: serif-bold.ttf", &format!("font: {font}"));
        let bad = write(dir.path(), "bad.yaml", &text);
        let r = run(&["run", bad.to_str().unwrap(), "-o", dir.path().join("bad.pdf").to_str().unwrap()]);
        assert_eq!(r.code, 2, "{}", r.stderr);
        assert!(r.stderr.contains("page.font") && r.stderr.contains(says), "{}", r.stderr);
        assert!(!dir.path().join("bad.pdf").exists());
    }
}
