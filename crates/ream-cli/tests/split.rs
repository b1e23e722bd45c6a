//! Split outputs: parts that are files of their own, read back by the readers people use
//! (a CSV reader, pyarrow, DuckDB, openpyxl), and a manifest that tells the truth about
//! them.

mod common;
use common::*;

use std::collections::BTreeMap;
use std::path::Path;

use sha2::{Digest, Sha256};

/// A table of `n` rows with the values that test a writer: NULLs, long and odd text,
/// and a `region` with values that must be escaped in a path.
fn fixture(dir: &Path, n: i64) -> String {
    let db = dir.join("split.sqlite");
    let c = rusqlite::Connection::open(&db).unwrap();
    c.execute_batch(
        "CREATE TABLE t (id INTEGER PRIMARY KEY, region TEXT, amount REAL, note TEXT);
         BEGIN;",
    )
    .unwrap();
    let regions = ["EU", "US", "a/b=c", "", "Zürich"];
    for i in 1..=n {
        let region: Option<&str> = if i % 11 == 0 { None } else { Some(regions[(i % 5) as usize]) };
        let note = match i % 7 {
            0 => None,
            1 => Some("x".repeat((i % 300) as usize)),
            _ => Some(format!("line, \"quoted\"\nnext {i}")),
        };
        c.execute("INSERT INTO t VALUES (?1, ?2, ?3, ?4)", rusqlite::params![i, region, i as f64 / 4.0, note]).unwrap();
    }
    c.execute_batch("COMMIT").unwrap();
    format!("sqlite:{}", db.display())
}

fn manifest(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn files(m: &serde_json::Value) -> Vec<(String, u64, u64, String)> {
    m["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            let s = |k: &str| f[k].as_str().unwrap().to_string();
            (s("path"), f["rows"].as_u64().unwrap(), f["bytes"].as_u64().unwrap(), s("sha256"))
        })
        .collect()
}

/// The workbook's dates are fixed (SOURCE_DATE_EPOCH), so exports a second apart can be
/// compared byte for byte.
fn export(source: &str, out: &Path, extra: &[&str]) -> Ran {
    let args = [&["run", "--source", source, "--table", "t", "-o", out.to_str().unwrap()][..], extra].concat();
    run_env(&args, &[("SOURCE_DATE_EPOCH", "1700000000")])
}

#[test]
fn the_concatenated_csv_parts_without_their_headers_equal_the_unsplit_file() {
    let dir = tempfile::tempdir().unwrap();
    let source = fixture(dir.path(), 2500);
    let whole = dir.path().join("whole.csv");
    assert_eq!(export(&source, &whole, &[]).code, 0);
    let whole = std::fs::read(&whole).unwrap();
    let parts_dir = dir.path().join("parts");
    std::fs::create_dir(&parts_dir).unwrap();
    let r = export(&source, &parts_dir.join("t.csv"), &["--split-rows", "1000"]);
    assert_eq!(r.code, 0, "{}", r.stderr);

    let m = manifest(&parts_dir.join("t.manifest.json"));
    let listed = files(&m);
    let names: Vec<&str> = listed.iter().map(|f| f.0.as_str()).collect();
    assert_eq!(names, ["t-00001.csv", "t-00002.csv", "t-00003.csv"]);
    assert_eq!(listed.iter().map(|f| f.1).collect::<Vec<_>>(), [1000, 1000, 500]);
    assert_eq!((m["rows"].as_u64(), m["format"].as_str(), m["report"].as_str()), (Some(2500), Some("csv"), Some("t")));
    assert_eq!(m["split"], serde_json::json!({"rows": 1000}));
    assert_eq!(m["snapshot"]["mode"], "run");
    assert!(m["snapshot"]["at"].as_str().unwrap().ends_with('Z'), "{}", m["snapshot"]);

    // Each part is a CSV of its own: the header, then its rows, which a reader parses.
    let header = whole.split(|&b| b == b'\n').next().unwrap().to_vec();
    let mut joined = Vec::new();
    let mut ids = Vec::new();
    for (i, (path, rows, bytes, sha)) in listed.iter().enumerate() {
        let data = std::fs::read(parts_dir.join(path)).unwrap();
        assert_eq!((data.len() as u64, &hex(&Sha256::digest(&data))), (*bytes, sha), "{path}: bytes and sha256");
        assert!(data.starts_with(&header), "{path} has no header");
        let mut reader = csv::Reader::from_reader(&data[..]);
        let records: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
        assert_eq!(records.len() as u64, *rows, "{path}");
        ids.extend(records.iter().map(|r| r[0].parse::<i64>().unwrap()));
        joined.extend_from_slice(if i == 0 { &data } else { &data[header.len() + 1..] });
    }
    assert!(joined == whole, "the parts joined differ from the unsplit output");
    // Every row is in exactly one part, in order.
    assert_eq!(ids, (1..=2500).collect::<Vec<_>>());
}

#[test]
fn with_a_row_and_a_byte_limit_a_part_ends_at_whichever_comes_first() {
    let dir = tempfile::tempdir().unwrap();
    let source = fixture(dir.path(), 3000);
    for (rows, bytes, by_rows) in [("100", "1MiB", true), ("100000", "20k", false)] {
        let out = dir.path().join(format!("r{rows}"));
        std::fs::create_dir(&out).unwrap();
        let r = export(&source, &out.join("t.csv"), &["--split-rows", rows, "--split-bytes", bytes]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        let m = manifest(&out.join("t.manifest.json"));
        let listed = files(&m);
        assert_eq!(listed.iter().map(|f| f.1).sum::<u64>(), 3000);
        for (path, n, size, _) in &listed[..listed.len() - 1] {
            match by_rows {
                true => assert_eq!(*n, 100, "{path}: the row limit comes first"),
                false => assert!(*size <= 20480 + 320 && *size > 15000 && *n < 1000, "{path}: {n} rows, {size} bytes"),
            }
        }
    }
}

#[test]
fn batch_sizes_1_7_and_1000_give_the_same_parts_in_every_split_format() {
    let dir = tempfile::tempdir().unwrap();
    let source = fixture(dir.path(), 1500);
    for (format, limit) in [
        ("csv", ["--split-bytes", "20k"]),
        ("ndjson", ["--split-rows", "333"]),
        ("parquet", ["--split-bytes", "16k"]),
        ("xlsx", ["--split-rows", "600"]),
    ] {
        let mut seen: Option<Vec<(String, u64, u64, String)>> = None;
        for batch in ["1", "7", "1000"] {
            let out = dir.path().join(format!("b{batch}"));
            std::fs::create_dir_all(&out).unwrap();
            let r = export(&source, &out.join(format!("t.{format}")), &[&limit[..], &["--batch-size", batch]].concat());
            assert_eq!(r.code, 0, "{format} batch {batch}: {}", r.stderr);
            let got = files(&manifest(&out.join("t.manifest.json")));
            assert!(got.len() > 1, "{format}: one part only");
            assert_eq!(got.iter().map(|f| f.1).sum::<u64>(), 1500, "{format}");
            match &seen {
                None => seen = Some(got),
                Some(first) => assert_eq!(&got, first, "{format}: batch size {batch} gave other parts"),
            }
        }
    }
}

/// Rows per part and ids, as the format's reader reads each part.
const READ_PARTS: &str = r#"
import sys, json, pyarrow.parquet as pq, openpyxl
m = json.load(open(sys.argv[1]))
base = sys.argv[2]
for f in m["files"]:
    path = base + "/" + f["path"]
    if m["format"] == "parquet":
        ids = pq.read_table(path).column("id").to_pylist()
    else:
        ws = openpyxl.load_workbook(path, read_only=True).worksheets[0]
        rows = list(ws.iter_rows(values_only=True))
        assert rows[0][0] == "id", rows[0]
        ids = [r[0] for r in rows[1:]]
    print(f["rows"], f["bytes"], ",".join(str(i) for i in ids))
"#;

#[test]
fn parts_by_size_stay_within_the_limit_and_each_opens_in_its_reader() {
    let dir = tempfile::tempdir().unwrap();
    let source = fixture(dir.path(), 6000);
    let limit: u64 = 48 * 1024;
    for format in ["csv", "ndjson", "parquet", "xlsx"] {
        let out = dir.path().join(format);
        std::fs::create_dir(&out).unwrap();
        let r = export(&source, &out.join(format!("t.{format}")), &["--split-bytes", "48KiB"]);
        assert_eq!(r.code, 0, "{format}: {}", r.stderr);
        let m = manifest(&out.join("t.manifest.json"));
        let listed = files(&m);
        assert!(listed.len() > 1, "{format}: {listed:?}");
        for (path, _, bytes, _) in &listed[..listed.len() - 1] {
            // A text part ends before the row that would pass the limit (one row, at
            // most 320 bytes here, of slack); a binary one is measured every 1024 rows
            // and ends before it would pass.
            match format {
                "csv" | "ndjson" => assert!(*bytes <= limit + 320 && *bytes > limit / 2, "{path}: {bytes}"),
                _ => assert!(*bytes <= limit, "{path}: {bytes} over {limit}"),
            }
        }
        let mut ids: Vec<i64> = Vec::new();
        if format == "csv" || format == "ndjson" {
            for (path, rows, ..) in &listed {
                let data = std::fs::read(out.join(path)).unwrap();
                let part: Vec<i64> = if format == "csv" {
                    csv::Reader::from_reader(&data[..]).records().map(|r| r.unwrap()[0].parse().unwrap()).collect()
                } else {
                    data.split(|&b| b == b'\n')
                        .filter(|l| !l.is_empty())
                        .map(|l| serde_json::from_slice::<serde_json::Value>(l).unwrap()["id"].as_i64().unwrap())
                        .collect()
                };
                assert_eq!(part.len() as u64, *rows, "{path}");
                ids.extend(part);
            }
        } else {
            let m_path = out.join("t.manifest.json");
            let Some(text) = python(READ_PARTS, &[m_path.to_str().unwrap(), out.to_str().unwrap()]) else { return };
            for line in text.lines() {
                let mut it = line.splitn(3, ' ');
                let rows: usize = it.next().unwrap().parse().unwrap();
                let part: Vec<i64> = it.nth(1).unwrap().split(',').map(|i| i.parse().unwrap()).collect();
                assert_eq!(part.len(), rows, "{format}: {line:.80}");
                ids.extend(part);
            }
        }
        assert_eq!(ids, (1..=6000).collect::<Vec<_>>(), "{format}: every row in exactly one part, in order");
    }
}

/// Rows per partition as pyarrow's hive dataset and DuckDB's hive_partitioning read the
/// directory.
const READ_HIVE: &str = r#"
import sys, duckdb, pyarrow.dataset as ds
t = ds.dataset(sys.argv[1], format="parquet", partitioning="hive").to_table()
rows = {}
for region, id in zip(t.column("region").to_pylist(), t.column("id").to_pylist()):
    rows.setdefault(str(region), []).append(id)
for k in sorted(rows):
    print("pyarrow", k, len(rows[k]), sum(rows[k]), len(set(rows[k])))
q = "select region, count(*), sum(id) from read_parquet(? || '/**/*.parquet', hive_partitioning = true) group by 1 order by 1"
for region, n, s in duckdb.execute(q, [sys.argv[1]]).fetchall():
    print("duckdb", region, n, s)
"#;

#[test]
fn a_split_by_field_writes_a_hive_dataset_that_pyarrow_and_duckdb_read() {
    let dir = tempfile::tempdir().unwrap();
    let source = fixture(dir.path(), 3000);
    let out = dir.path().join("by_region");
    let r = export(&source, &out, &["--format", "parquet", "--split-by", "region", "--split-rows", "400"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let m = manifest(&dir.path().join("by_region.manifest.json"));
    let listed = files(&m);
    let paths: Vec<&str> = listed.iter().map(|f| f.0.as_str()).collect();
    // The read is ordered by region; one directory per value, escaped; NULL and ''
    // together in hive's NULL directory.
    assert!(paths.contains(&"by_region/region=a%2Fb%3Dc/part-00001.parquet"), "{paths:?}");
    assert!(paths.contains(&"by_region/region=__HIVE_DEFAULT_PARTITION__/part-00001.parquet"), "{paths:?}");
    assert!(paths.contains(&"by_region/region=EU/part-00002.parquet"), "{paths:?}");
    let eu = &m["files"].as_array().unwrap().iter().find(|f| f["path"] == "by_region/region=EU/part-00001.parquet");
    assert_eq!(eu.unwrap()["partition"], serde_json::json!({"region": "EU"}));
    assert!(listed.iter().all(|f| f.1 <= 400));

    // What the source says, per region (NULL and '' are one partition).
    let c = rusqlite::Connection::open(dir.path().join("split.sqlite")).unwrap();
    let mut want: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    let mut q = c.prepare("SELECT coalesce(nullif(region, ''), 'None'), count(*), sum(id) FROM t GROUP BY 1").unwrap();
    for row in q.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get(1)?, r.get(2)?))).unwrap() {
        let (k, n, s) = row.unwrap();
        want.insert(k, (n, s));
    }
    let Some(text) = python(READ_HIVE, &[out.to_str().unwrap()]) else { return };
    let mut from_pyarrow = BTreeMap::new();
    let mut from_duckdb = BTreeMap::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        let (n, s): (i64, i64) = (f[f.len() - 2].parse().unwrap(), f[f.len() - 1].parse().unwrap());
        match f[0] {
            "pyarrow" => {
                let (n, s, distinct): (i64, i64, i64) =
                    (f[2].parse().unwrap(), f[3].parse().unwrap(), f[4].parse().unwrap());
                assert_eq!(n, distinct, "a row twice in {line}");
                from_pyarrow.insert(f[1].to_string(), (n, s));
            }
            _ => {
                let region = f[1..f.len() - 2].join(" ");
                from_duckdb.insert(
                    if region == "None" { region } else { region.replace("%2F", "/").replace("%3D", "=") },
                    (n, s),
                );
            }
        }
    }
    assert_eq!(from_pyarrow, want, "pyarrow");
    assert_eq!(from_duckdb.values().map(|v| v.0).sum::<i64>(), 3000, "duckdb: {from_duckdb:?}");
    assert_eq!(from_duckdb.get("EU"), want.get("EU"), "duckdb");
}

#[test]
fn a_failed_split_run_leaves_no_part_and_no_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let source = fixture(dir.path(), 3000);
    // Row 2500's amount does not fit the column's type: the run fails after parts were
    // committed.
    let c = rusqlite::Connection::open(dir.path().join("split.sqlite")).unwrap();
    c.execute("UPDATE t SET amount = 'not a number' WHERE id = 2500", []).unwrap();
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let r = export(&source, &out.join("t.csv"), &["--split-rows", "500", "--batch-size", "100"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("amount"), "{}", r.stderr);
    assert_eq!(files_in(&out), Vec::<String>::new(), "parts were left behind");

    let hive = dir.path().join("hive");
    let r = export(&source, &hive, &["--split-by", "region", "--format", "csv", "--batch-size", "100"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(!hive.exists(), "the hive directory was left: {:?}", std::fs::read_dir(&hive).map(|d| d.count()));
}

#[test]
fn a_rerun_with_fewer_parts_removes_the_earlier_runs_extra_parts_only() {
    let dir = tempfile::tempdir().unwrap();
    let source = fixture(dir.path(), 1000);
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    assert_eq!(export(&source, &out.join("t.csv"), &["--split-rows", "100"]).code, 0);
    std::fs::write(out.join("t-notes.csv"), "mine").unwrap();
    std::fs::write(out.join("other-00001.csv"), "mine").unwrap();
    assert_eq!(export(&source, &out.join("t.csv"), &["--split-rows", "400"]).code, 0);
    let mut want =
        vec!["other-00001.csv", "t-00001.csv", "t-00002.csv", "t-00003.csv", "t-notes.csv", "t.manifest.json"];
    want.sort();
    assert_eq!(files_in(&out), want);
}

#[test]
fn a_split_refuses_stdout_other_formats_a_used_directory_and_an_unknown_field_before_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let source = fixture(dir.path(), 10);
    let cases: Vec<(Vec<String>, &str)> = vec![
        (vec!["--split-rows".into(), "5".into()], "give -o NAME"),
        (
            vec!["-o".into(), dir.path().join("t.pdf").display().to_string(), "--split-rows".into(), "5".into()],
            "pdf cannot be split",
        ),
        (
            vec!["-o".into(), dir.path().join("t.csv").display().to_string(), "--split-rows".into(), "0".into()],
            "0 is not in 1",
        ),
        (
            vec!["-o".into(), dir.path().join("t.csv").display().to_string(), "--split-bytes".into(), "5T".into()],
            "unknown unit",
        ),
        (
            vec![
                "-o".into(),
                dir.path().display().to_string(),
                "--format".into(),
                "csv".into(),
                "--split-by".into(),
                "region".into(),
            ],
            "empty directory",
        ),
        (
            vec![
                "-o".into(),
                dir.path().join("h").display().to_string(),
                "--format".into(),
                "csv".into(),
                "--split-by".into(),
                "nope".into(),
            ],
            "no field `nope`",
        ),
    ];
    for (extra, message) in cases {
        let mut args: Vec<&str> = vec!["run", "--source", &source, "--table", "t"];
        args.extend(extra.iter().map(String::as_str));
        let r = run(&args);
        assert_eq!(r.code, 2, "{extra:?}: {}", r.stderr);
        assert!(r.stderr.contains(message), "{extra:?}: {}", r.stderr);
        assert!(!r.stderr.contains("panicked"), "{}", r.stderr);
    }
    assert_eq!(files_in(dir.path()), vec!["split.sqlite"]);
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
