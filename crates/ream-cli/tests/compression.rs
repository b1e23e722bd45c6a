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
