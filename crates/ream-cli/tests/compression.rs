//! Compressed output as it streams, read back by the tools people use: `gzip` and `zstd`.

mod common;
use common::*;

use std::path::Path;
use std::process::Command;

/// `tool -t FILE` passes, and `tool -dc` gives back exactly `want`.
fn decompresses_to(tool: &str, file: &Path, want: &[u8]) {
    let test = Command::new(tool).arg("-t").arg(file).output().unwrap();
    assert!(test.status.success(), "{tool} -t {}: {}", file.display(), String::from_utf8_lossy(&test.stderr));
    let out = Command::new(tool).arg("-dc").arg(file).output().unwrap();
    assert!(out.status.success(), "{tool} -dc: {}", String::from_utf8_lossy(&out.stderr));
    assert!(
        out.stdout == want,
        "{tool}: {} decompresses to {} bytes, not the {} of the plain output",
        file.display(),
        out.stdout.len(),
        want.len()
    );
}

#[test]
fn gzip_and_zstd_outputs_pass_their_tools_and_give_back_the_plain_bytes() {
    let demo = demo(3000);
    let spec = demo.join("reports/sales_by_region.yaml");
    let dir = tempfile::tempdir().unwrap();
    let params = ["-p", "start_date=2023-01-01", "-p", "end_date=2025-12-31"];
    for format in ["csv", "ndjson", "json", "html", "arrow"] {
        let plain = dir.path().join(format!("plain.{format}"));
        let mut args = vec!["run", spec.to_str().unwrap(), "-o", plain.to_str().unwrap()];
        args.extend(params);
        let r = run(&args);
        assert_eq!(r.code, 0, "{format}: {}", r.stderr);
        let want = std::fs::read(&plain).unwrap();
        for (tool, ext) in [("gzip", "gz"), ("zstd", "zst")] {
            // Implied by the name...
            let named = dir.path().join(format!("out.{format}.{ext}"));
            let mut args = vec!["run", spec.to_str().unwrap(), "-o", named.to_str().unwrap()];
            args.extend(params);
            let r = run(&args);
            assert_eq!(r.code, 0, "{format} {tool}: {}", r.stderr);
            decompresses_to(tool, &named, &want);
            // ...or asked for, to a pipe, at batch sizes that change every chunk.
            for batch in ["1", "1000"] {
                let mut args =
                    vec!["run", spec.to_str().unwrap(), "-f", format, "--compress", tool, "--batch-size", batch];
                args.extend(params);
                let r = run(&args);
                assert_eq!(r.code, 0, "{format} {tool}: {}", r.stderr);
                assert!(decompress(tool, &r.stdout) == want, "{format} {tool} batch {batch}: the bytes differ");
            }
        }
    }
}

#[test]
fn formats_that_compress_themselves_are_not_compressed_twice() {
    let demo = demo(300);
    let source = format!("sqlite:{}", demo.join("demo.sqlite").display());
    let dir = tempfile::tempdir().unwrap();
    for (format, name) in [("xlsx", "x.xlsx.gz"), ("parquet", "x.parquet.zst"), ("pdf", "x.pdf.gz")] {
        let out = dir.path().join(name);
        let r = run(&["run", "--source", &source, "--table", "invoices", "-f", format, "-o", out.to_str().unwrap()]);
        assert_eq!(r.code, 2, "{format}: {}", r.stderr);
        assert!(r.stderr.contains(&format!("{format} is compressed already")), "{}", r.stderr);
        assert!(!out.exists(), "{name} was written");
    }
    let r = run(&["run", "--source", &source, "--table", "invoices", "--compress", "brotli"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("unknown compression `brotli`"), "{}", r.stderr);
}

#[test]
fn a_higher_level_gives_a_smaller_file_of_the_same_bytes_and_a_level_out_of_range_is_refused() {
    let demo = demo(3000);
    let source = format!("sqlite:{}", demo.join("demo.sqlite").display());
    let dir = tempfile::tempdir().unwrap();
    let plain = run(&["run", "--source", &source, "--table", "invoices"]);
    assert_eq!(plain.code, 0);
    for (tool, ext, high) in [("gzip", "gz", "9"), ("zstd", "zst", "19")] {
        let mut sizes = Vec::new();
        for level in ["1", high] {
            let out = dir.path().join(format!("l{level}.csv.{ext}"));
            let r = run_table(
                &source,
                "invoices",
                &["--compress", tool, "--compress-level", level, "-o", out.to_str().unwrap()],
            );
            assert_eq!(r.code, 0, "{tool} {level}: {}", r.stderr);
            decompresses_to(tool, &out, &plain.stdout);
            sizes.push(std::fs::metadata(&out).unwrap().len());
        }
        assert!(sizes[1] < sizes[0], "{tool}: level {high} is no smaller than level 1: {sizes:?}");
    }
    for (args, message) in [
        (vec!["--compress", "gzip", "--compress-level", "10"], "gzip has no level 10: give 1 to 9"),
        (vec!["--compress", "zstd", "--compress-level", "0"], "zstd has no level 0"),
        (vec!["--compress-level", "3"], "needs --compress"),
    ] {
        let r = run(&[&["run", "--source", &source, "--table", "invoices"][..], &args].concat());
        assert_eq!(r.code, 2, "{args:?}: {}", r.stderr);
        assert!(r.stderr.contains(message), "{args:?}: {}", r.stderr);
    }
}
