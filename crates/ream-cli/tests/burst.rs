//! `ream run --burst-dir`: one read of a spec with `burst:` written as one complete output
//! per customer (its own title, totals and page numbers), each with the file name and
//! recipient its templates give, and a manifest written last. Checked against SQL.

mod common;
use common::*;

use std::path::Path;
use std::process::Command;

use serde_json::Value as Json;

fn burst(spec: &Path, out: &Path, format: &str, batch: &str) -> Ran {
    run(&[
        "run",
        spec.to_str().unwrap(),
        "--format",
        format,
        "--burst-dir",
        out.to_str().unwrap(),
        "--batch-size",
        batch,
    ])
}

#[test]
fn a_500_customer_burst_writes_one_output_each_with_only_its_rows_and_totals_equal_to_sql() {
    let dir = tempfile::tempdir().unwrap();
    let spec = statements(dir.path(), 500, |c| c % 7 + 1, "  filename: \"statement-{customer_id}.json\"\n");
    let out = dir.path().join("out");
    let r = burst(&spec, &out, "json", "1000");
    assert_eq!(r.code, 0, "{}", r.stderr);
    let sql = sql_totals(dir.path());
    assert_eq!(sql.len(), 500);

    let manifest: Json = serde_json::from_slice(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["burst"], serde_json::json!({"by": "customer_id"}));
    let files = manifest["files"].as_array().unwrap();
    assert_eq!(files.len(), 500);
    assert_eq!(files_in(&out).len(), 501, "500 statements and the manifest");
    for (c, (lines, total)) in &sql {
        let name = format!("statement-{c}.json");
        let listed = files.iter().find(|f| f["path"] == name.as_str()).unwrap_or_else(|| panic!("{name} not listed"));
        assert_eq!(listed["to"], format!("billing{c}@customers.example"));
        assert_eq!(
            (listed["rows"].as_i64(), listed["partition"]["customer_id"].as_str()),
            (Some(*lines), Some(&*c.to_string()))
        );
        let doc: Json = serde_json::from_slice(&std::fs::read(out.join(&name)).unwrap()).unwrap();
        assert_eq!(doc["title"], format!("Statement for Customer {c}"));
        let rows = doc["rows"].as_array().unwrap();
        assert_eq!(rows.len() as i64, *lines, "{name}");
        assert!(rows.iter().all(|r| r["customer_id"] == *c), "{name} holds another customer's rows");
        assert_eq!(
            (doc["variables"]["total"].as_i64(), doc["variables"]["lines"].as_i64()),
            (Some(*total), Some(*lines)),
            "{name}"
        );
        assert_eq!(doc["summary"], format!("Total due: {}", doc["variables"]["total"]), "{name}");
    }
    assert_eq!(manifest["rows"].as_i64(), Some(sql.values().map(|v| v.0).sum::<i64>()));

    // Batches of 1 and 7 rows give the same files, byte for byte.
    for batch in ["1", "7"] {
        let again = dir.path().join(format!("out-{batch}"));
        let r = burst(&spec, &again, "json", batch);
        assert_eq!(r.code, 0, "{}", r.stderr);
        for f in files {
            let path = f["path"].as_str().unwrap();
            assert!(
                std::fs::read(out.join(path)).unwrap() == std::fs::read(again.join(path)).unwrap(),
                "{path}, batch {batch}"
            );
        }
    }
}

#[test]
fn each_pdf_burst_has_its_own_title_page_numbers_and_total() {
    if Command::new("pdftotext").arg("-v").output().is_err() || Command::new("qpdf").arg("--version").output().is_err()
    {
        assert!(std::env::var_os("CI").is_none(), "CI must install qpdf and poppler-utils (see .ci/run)");
        eprintln!("\n*** qpdf/poppler-utils are not installed: skipping ***\n");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let extra = "  filename: \"statement-{customer_id}.pdf\"\npage_footer: \"Page {page} of {pages}\"\n";
    let spec = statements(dir.path(), 3, |c| if c == 2 { 150 } else { 3 }, extra);
    let out = dir.path().join("out");
    let r = burst(&spec, &out, "pdf", "1000");
    assert_eq!(r.code, 0, "{}", r.stderr);
    let sql = sql_totals(dir.path());
    for c in 1..=3 {
        let pdf = out.join(format!("statement-{c}.pdf"));
        let check = Command::new("qpdf").arg("--check").arg(&pdf).output().unwrap();
        assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stdout));
        let text = String::from_utf8(Command::new("pdftotext").arg(&pdf).arg("-").output().unwrap().stdout).unwrap();
        assert!(text.contains(&format!("Statement for Customer {c}")), "{text}");
        assert!(!text.contains("All statements"), "the report's title, not the burst's: {text}");
        let others: Vec<i64> = (1..=3).filter(|o| *o != c && text.contains(&format!("billing{o}@"))).collect();
        assert_eq!(others, Vec::<i64>::new(), "statement {c} shows other customers");
        let pages = if c == 2 { text.matches("Page ").count() } else { 1 };
        assert!(text.contains(&format!("Page 1 of {pages}")), "statement {c}: {text}");
        let total = sql[&c].1;
        let shown = format!("{total}");
        let grouped = total
            .abs()
            .to_string()
            .as_bytes()
            .rchunks(3)
            .rev()
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect::<Vec<_>>()
            .join(",");
        assert!(text.contains(&shown) || text.contains(&grouped), "statement {c}: total {total} not in {text}");
    }
    assert!(sql[&2].0 > 100 && files_in(&out).len() == 4);
    let long =
        String::from_utf8(Command::new("pdftotext").arg(out.join("statement-2.pdf")).arg("-").output().unwrap().stdout)
            .unwrap();
    assert!(long.contains("Page 2 of"), "statement 2 spans pages, numbered from 1: {long}");
}

#[test]
fn a_bad_burst_exits_2_naming_the_problem_and_leaves_no_file() {
    let dir = tempfile::tempdir().unwrap();
    // Every burst named alike: the second fails the run, and the first goes again.
    let spec = statements(dir.path(), 5, |_| 2, "  filename: \"statement.json\"\n");
    let out = dir.path().join("out");
    let r = burst(&spec, &out, "json", "1000");
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("`statement.json` for `2` as it did for an earlier `customer_id`"), "{}", r.stderr);
    assert!(!out.exists() || files_in(&out).is_empty(), "files were left: {:?}", files_in(&out));

    // A directory with files in it.
    std::fs::create_dir(&out).unwrap();
    write(&out, "keep.txt", "mine");
    let r = burst(&spec, &out, "json", "1000");
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("writes into an empty directory"), "{}", r.stderr);
    assert_eq!(files_in(&out), ["keep.txt"]);

    // A spec without `burst:`, and a burst by a field the source lacks (located).
    let demo = demo(100);
    let r = run(&[
        "run",
        demo.join("reports/sales_by_region.yaml").to_str().unwrap(),
        "--burst-dir",
        dir.path().join("x").to_str().unwrap(),
    ]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("has no `burst:`"), "{}", r.stderr);
    let text = std::fs::read_to_string(&spec).unwrap().replace("by: customer_id", "by: client_id");
    let bad = write(dir.path(), "bad.yaml", &text);
    let r = burst(&bad, &dir.path().join("y"), "json", "1000");
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("bad.yaml:8:3: `burst.by`: unknown field `client_id`"), "{}", r.stderr);
    let r = run(&["run", spec.to_str().unwrap(), "--burst-dir", "z", "-o", "x.csv"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
}

#[test]
fn a_burst_runs_progress_shows_the_bursts_counted_ahead_and_ends_with_how_many_it_wrote() {
    let dir = tempfile::tempdir().unwrap();
    // 3,000 customers of one line: the count answers in milliseconds, and the log gets a
    // line as soon as it does, while the 3,000 files (each committed durably) are written.
    let spec = statements(dir.path(), 3000, |_| 1, "  filename: \"statement-{customer_id}.csv\"\n");
    let out = dir.path().join("out");
    let (spec, out) = (spec.to_str().unwrap(), out.to_str().unwrap());
    let r = run(&["run", spec, "--format", "csv", "--burst-dir", out, "--progress", "always"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let totals: Vec<&str> = r.stderr.lines().filter_map(|l| l.split(", ").find(|p| p.ends_with(" bursts"))).collect();
    assert!(totals.iter().any(|t| t.ends_with("/3000 bursts")), "no progress line knew the total: {}", r.stderr);
    assert!(totals.iter().all(|t| !t.contains('/') || t.ends_with("/3000 bursts")), "a wrong total: {}", r.stderr);
    let last = r.stderr.lines().last().unwrap_or_default();
    assert!(last.starts_with("ream: 3000 rows, ") && last.ends_with(", 3000 bursts"), "{last}");
}
