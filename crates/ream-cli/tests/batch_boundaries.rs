//! Batch sizes 1, 7 and 1000 give byte-identical outputs in every format, for every
//! example report; and the outputs match the golden files under tests/golden/ (PDF by
//! its SHA-256: a layout change shows up as a changed hash).
//! Regenerate the golden files with `REAM_BLESS=1 cargo test --test batch_boundaries`.

mod common;
use common::*;

/// (spec, parameters): every example report in demo/reports.
const REPORTS: &[(&str, &[&str])] = &[
    ("sales_by_region.yaml", &["start_date=2023-01-01", "end_date=2023-06-30"]),
    ("invoice_export.yaml", &["status=paid,void"]),
    ("customer_statement.yaml", &["region=Europe"]),
    ("category_months.yaml", &["year=2024"]),
];

fn output(spec: &std::path::Path, params: &[&str], format: &str, batch: &str, strategy: Option<&str>) -> Vec<u8> {
    let mut c = ream();
    // A fixed creation date, so PDFs of the same report are the same bytes.
    c.env("SOURCE_DATE_EPOCH", "1700000000");
    let mut args = vec!["run", spec.to_str().unwrap(), "--format", format, "--batch-size", batch];
    for p in params {
        args.extend(["-p", p]);
    }
    if let Some(s) = strategy {
        args.extend(["--strategy", s]);
    }
    let o = c.args(&args).output().unwrap();
    assert!(o.status.success(), "{} {format} {batch}: {}", spec.display(), String::from_utf8_lossy(&o.stderr));
    o.stdout
}

#[test]
fn batch_sizes_1_7_and_1000_give_identical_bytes_in_every_format() {
    let demo = demo(1500);
    for (name, params) in REPORTS {
        let spec = demo.join("reports").join(name);
        for format in ["csv", "ndjson", "json", "html", "xlsx", "pdf", "parquet", "arrow"] {
            let base = output(&spec, params, format, "1000", None);
            assert!(base.len() > 100, "{name} {format} is suspiciously small");
            for batch in ["1", "7"] {
                let other = output(&spec, params, format, batch, None);
                assert!(other == base, "{name} {format}: batch size {batch} differs from 1000");
            }
        }
    }
}

#[test]
fn keyset_cursor_and_offset_yield_the_same_report() {
    let demo = demo(1500);
    for (name, params) in REPORTS {
        let spec = demo.join("reports").join(name);
        let base = output(&spec, params, "json", "64", Some("cursor"));
        for strategy in ["keyset", "offset", "auto"] {
            if name == &"category_months.yaml" && strategy != "auto" {
                // A query's key has no catalogue to prove it unique: paging is refused.
                let mut args = vec!["run", spec.to_str().unwrap(), "--strategy", strategy];
                params.iter().for_each(|p| args.extend(["-p", p]));
                let r = run(&args);
                assert_eq!(r.code, 2, "{}", r.stderr);
                assert!(r.stderr.contains("`key: [category, month]`"), "{}", r.stderr);
                continue;
            }
            let other = output(&spec, params, "json", "64", Some(strategy));
            // The document does not depend on how the source was paged: byte for byte.
            assert!(other == base, "{name}: {strategy} differs from cursor");
        }
    }
}

#[test]
fn ad_hoc_exports_page_a_composite_key_identically() {
    let demo = demo(1500);
    let src = format!("sqlite:{}", demo.join("demo.sqlite").display());
    let get = |strategy: &str, batch: &str| {
        let r = run(&[
            "run",
            "--source",
            &src,
            "--table",
            "invoice_lines",
            "--key",
            "invoice_id,line_no",
            "--strategy",
            strategy,
            "--batch-size",
            batch,
        ]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        r.stdout
    };
    let base = get("cursor", "1000");
    assert_eq!(base.iter().filter(|b| **b == b'\n').count(), 1 + lines(&demo));
    for (s, b) in [("keyset", "7"), ("keyset", "1000"), ("offset", "7"), ("auto", "1")] {
        assert!(get(s, b) == base, "{s} batch {b} differs");
    }
}

fn lines(demo: &std::path::Path) -> usize {
    let c = rusqlite::Connection::open(demo.join("demo.sqlite")).unwrap();
    c.query_row("SELECT count(*) FROM invoice_lines", [], |r| r.get::<_, i64>(0)).unwrap() as usize
}

#[test]
fn outputs_match_the_golden_files() {
    let demo = demo(300);
    let golden = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/golden");
    let bless = std::env::var_os("REAM_BLESS").is_some();
    for (name, params) in REPORTS {
        let spec = demo.join("reports").join(name);
        for format in ["csv", "json", "pdf"] {
            let mut got = output(&spec, params, format, "1000", None);
            let mut file = golden.join(format!("{}.{format}", name.trim_end_matches(".yaml")));
            if format == "pdf" {
                use sha2::Digest;
                let hex: String = sha2::Sha256::digest(&got).iter().map(|b| format!("{b:02x}")).collect();
                got = format!("{hex}\n").into_bytes();
                file.set_extension("pdf.sha256");
            }
            if bless {
                std::fs::write(&file, &got).unwrap();
                continue;
            }
            let want =
                std::fs::read(&file).unwrap_or_else(|_| panic!("missing {} (run with REAM_BLESS=1)", file.display()));
            assert!(
                got == want,
                "{} differs from the golden file; inspect with REAM_BLESS=1 and git diff",
                file.display()
            );
        }
    }
}
