//! `ream serve` over real HTTP on loopback: status codes and JSON errors, streamed outputs
//! equal to the CLI's, async runs with stored outputs and Range, Server-Sent Events,
//! cancellation and disconnects that stop the PostgreSQL query, the concurrency limit,
//! a failure mid-stream, and a graceful shutdown.

mod common;
use common::pg::PgDb;
use common::server::Server;
use common::*;

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value as Json;

const SALES: &str = "/reports/sales_by_region";
const RANGE: &str = "start_date=2023-01-01&end_date=2025-12-31";

fn cli_output(demo: &Path, format: &str, env: &[(&str, &str)]) -> Vec<u8> {
    let spec = demo.join("reports/sales_by_region.yaml");
    let out = ream()
        .args(["run", spec.to_str().unwrap(), "-p", "start_date=2023-01-01", "-p", "end_date=2025-12-31"])
        .args(["--format", format, "-o", "-"])
        .envs(env.iter().copied())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

#[test]
fn reports_are_listed_and_bad_requests_get_json_errors_with_their_status() {
    let demo = demo(300);
    let s = Server::start(&demo.join("reports"), &[]);
    let (status, list) = s.json("/reports");
    assert_eq!(status, 200);
    let ids: Vec<&str> = list["reports"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert!(ids.contains(&"sales_by_region") && ids.contains(&"invoice_export"), "{ids:?}");
    let (status, one) = s.json(SALES);
    assert_eq!(status, 200);
    assert_eq!(one["parameters"]["start_date"]["type"], "date");
    assert_eq!(one["links"]["outputs"]["csv"], "/reports/sales_by_region.csv");

    let (status, e) = s.json("/reports/nope.csv");
    assert_eq!((status, e["error"]["kind"].as_str()), (404, Some("unknown_report")), "{e}");
    let (status, e) = s.json(&format!("{SALES}.csv?start_date=2024-13-01&end_date=2024-12-31"));
    assert_eq!((status, e["error"]["kind"].as_str()), (400, Some("bad_parameter")), "{e}");
    assert_eq!(e["error"]["parameters"][0]["name"], "start_date");
    let (status, e) = s.json(&format!("{SALES}.csv?start_date=2024-01-01"));
    assert_eq!(status, 400);
    assert_eq!(e["error"]["parameters"][0]["name"], "end_date", "a missing required parameter is named: {e}");
    let (status, e) = s.json(&format!("{SALES}.docx?{RANGE}"));
    assert_eq!(status, 400);
    assert!(e["error"]["message"].as_str().unwrap().contains("unknown format `docx`"), "{e}");
    let (status, e) = s.json("/runs/no-such-run");
    assert_eq!((status, e["error"]["kind"].as_str()), (404, Some("unknown_run")));
    let (status, _, e) = s.post("/runs", "{not json");
    assert_eq!(status, 400, "{e}");
    let (status, _, e) =
        s.post("/runs", r#"{"report": "sales_by_region", "format": "csv", "parameters": {"start_date": "x"}}"#);
    assert_eq!((status, e["error"]["kind"].as_str()), (400, Some("bad_parameter")), "{e}");
    let big =
        format!(r#"{{"report": "sales_by_region", "format": "csv", "parameters": {{"x": "{}"}}}}"#, "y".repeat(70_000));
    let (status, _, e) = s.post("/runs", &big);
    assert_eq!((status, e["error"]["kind"].as_str()), (413, Some("too_large")), "{e}");
    // Requests refused before anything ran are not runs: the registry does not list them.
    let (_, runs) = s.json("/runs");
    assert_eq!(runs["runs"].as_array().unwrap().len(), 0, "{runs}");
    let (_, _, metrics) = s.get("/metrics");
    let metrics = String::from_utf8(metrics).unwrap();
    assert!(!metrics.contains("status=\"failed\""), "refused requests counted as failed runs:\n{metrics}");
    let (status, health) = s.json("/healthz");
    assert_eq!((status, health["status"].as_str()), (200, Some("ok")));
    let (status, ready) = s.json("/readyz");
    assert_eq!((status, ready["status"].as_str()), (200, Some("ready")), "{ready}");
}

#[test]
fn streamed_outputs_equal_the_cli_byte_for_byte() {
    let demo = demo(2000);
    // A fixed date makes XLSX and PDF reproducible (document properties, zip times).
    let env = [("SOURCE_DATE_EPOCH", "1700000000")];
    let s = Server::start_env(&demo.join("reports"), &[], &env);
    for format in ["csv", "ndjson", "json", "html", "xlsx", "pdf", "parquet", "arrow"] {
        let (status, headers, body) = s.get(&format!("{SALES}.{format}?{RANGE}"));
        assert_eq!(status, 200, "{format}: {}", String::from_utf8_lossy(&body));
        let cli = cli_output(&demo, format, &env);
        assert!(
            body == cli,
            "{format}: the server's output differs from the CLI's ({} vs {} bytes)",
            body.len(),
            cli.len()
        );
        let ct = headers.get("content-type").unwrap().to_str().unwrap();
        assert!(ct.starts_with(match format {
            "csv" => "text/csv",
            "ndjson" => "application/x-ndjson",
            "json" => "application/json",
            "html" => "text/html",
            "pdf" => "application/pdf",
            "parquet" => "application/vnd.apache.parquet",
            "arrow" => "application/vnd.apache.arrow.stream",
            _ => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        }));
        let disposition = headers.get("content-disposition").unwrap().to_str().unwrap();
        assert!(disposition.ends_with(&format!("filename=\"sales_by_region.{format}\"")), "{disposition}");
        let run = headers.get("x-ream-run").unwrap().to_str().unwrap();
        let done = s.finished(run);
        assert_eq!(done["status"], "succeeded");
        assert_eq!(done["mode"], "sync");
        assert_eq!(done["bytes"].as_u64().unwrap(), body.len() as u64, "{done}");
    }
}

#[test]
fn async_runs_store_their_output_and_serve_ranges_of_it() {
    let demo = demo(2000);
    let s = Server::start(&demo.join("reports"), &[]);
    let (status, headers, run) = s.post(
        "/runs",
        r#"{"report": "sales_by_region", "format": "csv", "parameters": {"start_date": "2023-01-01", "end_date": "2025-12-31"}}"#,
    );
    assert_eq!(status, 202, "{run}");
    let id = run["id"].as_str().unwrap().to_string();
    assert_eq!(headers.get("location").unwrap().to_str().unwrap(), format!("/runs/{id}"));
    assert_eq!(run["links"]["output"], format!("/runs/{id}/output"));
    let done = s.finished(&id);
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["percent"], 100.0);
    let cli = cli_output(&demo, "csv", &[]);
    assert_eq!(done["rows"].as_u64().unwrap(), done["total"].as_u64().unwrap());
    assert_eq!(done["output_bytes"].as_u64().unwrap(), cli.len() as u64);
    let (status, headers, whole) = s.get(&format!("/runs/{id}/output"));
    assert_eq!(status, 200);
    assert!(whole == cli, "the stored output equals the CLI's");
    assert_eq!(headers.get("accept-ranges").unwrap(), "bytes");
    let (status, headers, part) = s.get_with(&format!("/runs/{id}/output"), &[("range", "bytes=10-109")]);
    assert_eq!(status, 206);
    assert_eq!(part, &cli[10..110]);
    assert_eq!(headers.get("content-range").unwrap().to_str().unwrap(), format!("bytes 10-109/{}", cli.len()));
    let (status, _, tail) = s.get_with(&format!("/runs/{id}/output"), &[("range", "bytes=-7")]);
    assert_eq!((status, &tail[..]), (206, &cli[cli.len() - 7..]));
    let (status, _, _) = s.get_with(&format!("/runs/{id}/output"), &[("range", &format!("bytes={}-", cli.len() + 5))]);
    assert_eq!(status, 416);
    // A finished run cannot be cancelled; a sync run has no stored output.
    let (status, _) = s.delete(&format!("/runs/{id}"));
    assert_eq!(status, 409);
}

#[test]
fn an_async_split_run_stores_its_parts_and_serves_the_manifest_then_each_part() {
    use sha2::{Digest, Sha256};
    let demo = demo(2000);
    let s = Server::start(&demo.join("reports"), &[]);
    let body = r#"{"report": "invoice_export", "format": "csv", "parameters": {"status": ["paid", "open"]}, "split": {"by": "status", "rows": 400}}"#;
    let (status, _, run) = s.post("/runs", body);
    assert_eq!(status, 202, "{run}");
    let id = run["id"].as_str().unwrap().to_string();
    assert_eq!(s.finished(&id)["status"], "succeeded");

    let (status, headers, manifest) = s.get(&format!("/runs/{id}/output"));
    assert_eq!(status, 200);
    assert_eq!(headers.get("content-type").unwrap(), "application/json");
    let manifest: Json = serde_json::from_slice(&manifest).unwrap();
    assert_eq!(manifest["parameters"], serde_json::json!({"status": ["paid", "open"]}));
    assert_eq!(manifest["report"], "invoice_export");
    // Every file, fetched by its path, has the manifest's bytes, rows and hash; together
    // they hold each row of the CLI's unsplit export once, by status.
    let spec = demo.join("reports/invoice_export.yaml");
    let cli =
        ream().args(["run", spec.to_str().unwrap(), "-p", "status=paid,open", "--format", "csv"]).output().unwrap();
    let records = |data: &[u8]| -> Vec<Vec<String>> {
        csv::Reader::from_reader(data).records().map(|r| r.unwrap().iter().map(String::from).collect()).collect()
    };
    let mut want = records(&cli.stdout);
    let mut got: Vec<Vec<String>> = Vec::new();
    for f in manifest["files"].as_array().unwrap() {
        let path = f["path"].as_str().unwrap();
        assert!(path.starts_with("part/status=paid/") || path.starts_with("part/status=open/"), "{path}");
        let (status, headers, data) = s.get(&format!("/runs/{id}/output/{path}"));
        assert_eq!(status, 200, "{path}");
        assert_eq!(headers.get("content-type").unwrap(), "text/csv; charset=utf-8");
        let sha: String = Sha256::digest(&data).iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!((data.len() as u64, sha.as_str()), (f["bytes"].as_u64().unwrap(), f["sha256"].as_str().unwrap()));
        let status_value = f["partition"]["status"].as_str().unwrap();
        let rows = records(&data);
        assert_eq!(rows.len() as u64, f["rows"].as_u64().unwrap());
        // The status column is in the path, not in the file: put it back where it was.
        for mut cells in rows {
            cells.insert(5, status_value.to_string());
            got.push(cells);
        }
    }
    want.sort();
    got.sort();
    assert!(got == want, "the parts do not hold the unsplit rows ({} against {})", got.len(), want.len());

    // Only the manifest's files can be named; a run that is not split has no parts.
    for bad in ["part/status=paid/part-09999.csv", "../../etc/passwd", "manifest.json"] {
        let (status, _, e) = s.get(&format!("/runs/{id}/output/{bad}"));
        assert_eq!(status, 404, "{bad}: {}", String::from_utf8_lossy(&e));
    }
    let (status, _, e) = s.post("/runs", r#"{"report": "invoice_export", "format": "pdf", "split": {"rows": 10}}"#);
    assert_eq!((status, e["error"]["kind"].as_str()), (400, Some("bad_request")), "{e}");
    assert!(e["error"]["message"].as_str().unwrap().contains("pdf cannot be split"), "{e}");
    let (status, _, e) = s.post("/runs", r#"{"report": "invoice_export", "format": "csv", "split": {"bytes": "9Q"}}"#);
    assert_eq!(status, 400, "{e}");
    let (status, _, e) = s.post("/runs", r#"{"report": "invoice_export", "format": "csv", "split": {}}"#);
    assert!(status == 400 && e["error"]["message"].as_str().unwrap().contains("give rows, bytes or by"), "{e}");
    let (_, _, plain) = s.post("/runs", r#"{"report": "invoice_export", "format": "csv"}"#);
    let plain = plain["id"].as_str().unwrap().to_string();
    s.finished(&plain);
    let (status, _, _) = s.get(&format!("/runs/{plain}/output/part-00001.csv"));
    assert_eq!(status, 409);
}

#[test]
fn head_runs_nothing_and_a_method_a_path_does_not_take_gets_the_json_405() {
    let demo = demo(300);
    let s = Server::start(&demo.join("reports"), &[]);
    let r = s.agent.head(s.url("/reports/invoice_export.csv?status=paid")).call().unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.headers().get("content-type").unwrap(), "text/csv; charset=utf-8");
    assert_eq!(r.headers().get("content-disposition").unwrap(), "attachment; filename=\"invoice_export.csv\"");
    let r = s.agent.head(s.url("/reports/nope.csv")).call().unwrap();
    assert_eq!(r.status().as_u16(), 404);
    let (_, runs) = s.json("/runs");
    assert_eq!(runs["runs"].as_array().unwrap().len(), 0, "a HEAD started a run: {runs}");

    let mut r = s.agent.put(s.url("/runs")).send("").unwrap();
    assert_eq!(r.status().as_u16(), 405);
    let allow = r.headers().get("allow").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
    assert!(allow.contains("GET") && allow.contains("POST"), "allow: {allow:?}");
    let e: Json = serde_json::from_slice(&r.body_mut().read_to_vec().unwrap()).unwrap();
    assert_eq!(
        (e["error"]["status"].as_u64(), e["error"]["kind"].as_str()),
        (Some(405), Some("method_not_allowed")),
        "{e}"
    );
    assert!(e["error"]["message"].as_str().unwrap().contains("/runs does not take PUT"), "{e}");
}

/// Rows the database produces slowly (2 ms each), in batches of 20.
fn slow_pg(tag: &str, rows: u32) -> Option<(PgDb, tempfile::TempDir)> {
    pg_report(tag, rows, "slow", 20, "pg_sleep(0.002)::text")
}

/// A demo spec, its SQLite path made absolute so it can be served from any directory.
fn demo_spec(demo: &Path, name: &str) -> String {
    std::fs::read_to_string(demo.join("reports").join(name))
        .unwrap()
        .replace("sqlite:../demo.sqlite", &format!("sqlite:{}", demo.join("demo.sqlite").display()))
}

/// A reports directory with `late`: a query SQLite needs many seconds for, whose column
/// has no declared type, so a run waits for its first row to know the type and stays
/// preparing (no response started) all that time.
fn late_report() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("empty.sqlite");
    rusqlite::Connection::open(&db).unwrap().execute_batch("CREATE TABLE x (id INTEGER PRIMARY KEY)").unwrap();
    write(
        dir.path(),
        "late.yaml",
        &format!(
            "report: late\nsource:\n  url: \"sqlite:{}\"\n  sql: \"WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c WHERE n < 1000000000) SELECT max(n) AS m FROM c\"\n",
            db.display()
        ),
    );
    dir
}

/// SIGTERM the server and wait for it to exit (at most `limit`); its exit code and how
/// long it took.
fn terminate(s: &mut Server, limit: Duration) -> (Option<i32>, Duration) {
    let pid = s.child.id().to_string();
    assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    exited(s, limit)
}

/// Wait for the server to exit (at most `limit`): its exit code and how long it took.
fn exited(s: &mut Server, limit: Duration) -> (Option<i32>, Duration) {
    let t = Instant::now();
    loop {
        if let Some(status) = s.child.try_wait().unwrap() {
            return (status.code(), t.elapsed());
        }
        assert!(t.elapsed() < limit, "the server did not stop within {limit:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn events_report_progress_then_one_end() {
    let Some((_db, reports)) = slow_pg("sse", 600) else { return };
    let s = Server::start(reports.path(), &[]);
    let (status, _, run) = s.post("/runs", r#"{"report": "slow", "format": "csv"}"#);
    assert_eq!(status, 202, "{run}");
    let id = run["id"].as_str().unwrap();
    let r = s.agent.get(s.url(&format!("/runs/{id}/events"))).call().unwrap();
    assert_eq!(r.headers().get("content-type").unwrap(), "text/event-stream");
    let mut events: Vec<(String, Json)> = Vec::new();
    let mut name = String::new();
    for line in BufReader::new(r.into_body().into_reader()).lines() {
        let line = line.unwrap();
        if let Some(n) = line.strip_prefix("event: ") {
            name = n.to_string();
        } else if let Some(d) = line.strip_prefix("data: ") {
            events.push((name.clone(), serde_json::from_str(d).unwrap()));
        }
    }
    let (last, rest) = events.split_last().expect("events");
    assert_eq!(last.0, "end", "the stream ends with one end event");
    assert_eq!(last.1["status"], "succeeded");
    assert_eq!(last.1["rows"], 600);
    assert!(rest.iter().all(|e| e.0 == "progress"), "only progress before the end");
    // 600 rows at 2 ms each take over a second: progress comes at least twice a second.
    assert!(rest.len() >= 3, "{} progress events", rest.len());
    let rows: Vec<u64> = rest.iter().map(|e| e.1["rows"].as_u64().unwrap()).collect();
    assert!(rows.windows(2).all(|w| w[0] <= w[1]), "rows never go back: {rows:?}");
    assert!(rest.iter().any(|e| e.1["rows"].as_u64().unwrap() > 0 && e.1["rows"].as_u64().unwrap() < 600));
}

#[test]
fn cancelling_a_run_stops_its_postgres_query() {
    let Some((db, reports)) = slow_pg("cancel", 100_000) else { return };
    let s = Server::start(reports.path(), &[]);
    let (status, _, run) = s.post("/runs", r#"{"report": "slow", "format": "csv"}"#);
    assert_eq!(status, 202, "{run}");
    let id = run["id"].as_str().unwrap();
    wait_pg(&db, true);
    s.wait_run(id, |r| r["rows"].as_u64().unwrap() > 0);
    let (status, _) = s.delete(&format!("/runs/{id}"));
    assert_eq!(status, 202);
    let stopped = wait_pg(&db, false);
    eprintln!("the query stopped {stopped:?} after DELETE");
    let done = s.finished(id);
    assert_eq!(done["status"], "cancelled", "{done}");
    let (status, e) = s.json(&format!("/runs/{id}/output"));
    assert_eq!(status, 409, "a cancelled run has no output: {e}");
}

#[test]
fn a_client_that_disconnects_stops_the_query() {
    let Some((db, reports)) = slow_pg("disconnect", 100_000) else { return };
    let s = Server::start(reports.path(), &[]);
    let mut tcp = std::net::TcpStream::connect(&s.addr).unwrap();
    write!(tcp, "GET /reports/slow.csv HTTP/1.1\r\nHost: {}\r\n\r\n", s.addr).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&got).contains("\r\n\r\n") {
        let n = tcp.read(&mut buf).unwrap();
        got.extend_from_slice(&buf[..n]);
    }
    assert!(got.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&got));
    wait_pg(&db, true);
    drop(tcp);
    let stopped = wait_pg(&db, false);
    eprintln!("the query stopped {stopped:?} after the client went away");
    let (_, runs) = s.json("/runs");
    let id = runs["runs"][0]["id"].as_str().unwrap().to_string();
    let done = s.finished(&id);
    assert_eq!(done["status"], "cancelled", "{done}");
    assert_eq!(done["error"], "the client disconnected");
}

#[test]
fn a_run_past_the_limit_waits_in_the_queue_and_only_a_full_queue_gets_429() {
    let Some((db, reports)) = slow_pg("limit", 100_000) else { return };
    let s = Server::start(reports.path(), &["--max-runs", "1", "--queue-max", "1"]);
    let (status, _, run) = s.post("/runs", r#"{"report": "slow", "format": "csv"}"#);
    assert_eq!(status, 202);
    assert_eq!(run["status"], "queued", "{run}");
    let first = run["id"].as_str().unwrap().to_string();
    s.wait_run(&first, |r| r["status"] == "running");
    // A download has no queue to wait in: past the instance's limit it gets 429. (Not
    // the same csv: that would join the run going.)
    let (status, headers, body) = s.get("/reports/slow.ndjson");
    assert_eq!(status, 429, "{}", String::from_utf8_lossy(&body));
    assert!(headers.get("retry-after").unwrap().to_str().unwrap().parse::<u64>().unwrap() >= 1);
    let e: Json = serde_json::from_slice(&body).unwrap();
    assert_eq!(e["error"]["kind"], "too_many_runs");
    // An async run waits, first in the queue.
    let (status, _, second) = s.post("/runs", r#"{"report": "slow", "format": "json"}"#);
    assert_eq!(status, 202, "{second}");
    assert_eq!((second["status"].as_str(), second["queue_position"].as_u64()), (Some("queued"), Some(1)), "{second}");
    let second = second["id"].as_str().unwrap().to_string();
    // The queue's depth is a metric (updated at each pass of the claimer).
    let t = Instant::now();
    while !String::from_utf8_lossy(&s.get("/metrics").2).lines().any(|l| l == "ream_queue_depth 1") {
        assert!(t.elapsed() < Duration::from_secs(10), "ream_queue_depth never showed 1");
        std::thread::sleep(Duration::from_millis(100));
    }
    // The queue holds one: the next gets 429, saying so.
    let (status, headers, full) = s.post("/runs", r#"{"report": "slow", "format": "csv"}"#);
    assert_eq!(status, 429, "{full}");
    assert!(headers.get("retry-after").is_some());
    assert!(full["error"]["message"].as_str().unwrap().contains("queue is full"), "{full}");
    // The first one cancelled, the queued one takes its place at once.
    s.delete(&format!("/runs/{first}"));
    s.finished(&first);
    let started = s.wait_run(&second, |r| r["status"] != "queued");
    assert_eq!((started["queue_position"].clone(), started["attempt"].clone()), (Json::Null, 1.into()), "{started}");
    s.delete(&format!("/runs/{second}"));
    s.finished(&second);
    wait_pg(&db, false);
}

#[test]
fn a_failure_mid_stream_aborts_the_body_and_fails_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("bad.sqlite");
    let c = rusqlite::Connection::open(&db).unwrap();
    c.execute_batch(
        "CREATE TABLE t (id INTEGER PRIMARY KEY, n INTEGER);
         WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < 5000) INSERT INTO t SELECT i, i FROM s;
         UPDATE t SET n = 'not a number' WHERE id = 4000;",
    )
    .unwrap();
    let reports = dir.path().join("reports");
    std::fs::create_dir(&reports).unwrap();
    write(
        &reports,
        "bad.yaml",
        &format!("report: bad\nsource:\n  url: \"sqlite:{}\"\n  table: t\n  batch_size: 100\n", db.display()),
    );
    let s = Server::start(&reports, &[]);
    let mut r = s.agent.get(s.url("/reports/bad.csv")).call().unwrap();
    assert_eq!(r.status(), 200, "the first rows are fine, so the response starts");
    let read = r.body_mut().with_config().limit(u64::MAX).read_to_vec();
    assert!(read.is_err(), "the body must not end cleanly after a failure");
    let (_, runs) = s.json("/runs");
    let run = &runs["runs"][0];
    let done = s.finished(run["id"].as_str().unwrap());
    assert_eq!(done["status"], "failed");
    assert!(done["error"].as_str().unwrap().contains("not a number"), "{done}");
}

#[test]
fn metrics_count_runs_rows_and_bytes() {
    let demo = demo(300);
    let s = Server::start(&demo.join("reports"), &[]);
    let (status, _, body) = s.get(&format!("{SALES}.csv?{RANGE}"));
    assert_eq!(status, 200);
    s.finished(s.json("/runs").1["runs"][0]["id"].as_str().unwrap());
    let (status, headers, text) = s.get("/metrics");
    assert_eq!(status, 200);
    assert!(headers.get("content-type").unwrap().to_str().unwrap().starts_with("text/plain"));
    let text = String::from_utf8(text).unwrap();
    let value = |name: &str| -> f64 {
        text.lines()
            .find(|l| l.starts_with(name) && !l.starts_with('#'))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in\n{text}"))
    };
    // By report, too.
    assert_eq!(value("ream_runs_total{report=\"sales_by_region\",status=\"succeeded\"}"), 1.0);
    assert_eq!(value("ream_bytes_total"), body.len() as f64);
    assert!(value("ream_rows_total") > 0.0);
    assert_eq!(value("ream_active_runs"), 0.0);
    assert!(value("ream_process_resident_memory_bytes") > 1e6);
    for name in
        ["ream_run_duration_seconds_bucket", "ream_time_to_first_byte_seconds_count", "ream_source_query_seconds_count"]
    {
        value(name);
    }
}

#[test]
fn shutdown_answers_draining_refuses_new_runs_then_cancels_what_outlives_the_grace_period() {
    let Some((db, reports)) = slow_pg("shutdown", 100_000) else { return };
    let mut s = Server::start(reports.path(), &["--grace-secs", "3"]);
    let (status, _, _) = s.post("/runs", r#"{"report": "slow", "format": "csv"}"#);
    assert_eq!(status, 202);
    wait_pg(&db, true);
    let pid = s.child.id().to_string();
    assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let t = Instant::now();
    // While the run has its grace period, the server still answers: draining.
    let health = loop {
        let (status, health) = s.json("/healthz");
        if status == 503 || t.elapsed() > Duration::from_secs(2) {
            break (status, health);
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!((health.0, health.1["status"].as_str()), (503, Some("draining")), "{}", health.1);
    let (status, ready) = s.json("/readyz");
    assert_eq!((status, ready["status"].as_str()), (503, Some("draining")), "{ready}");
    let (status, _, refused) = s.post("/runs", r#"{"report": "slow", "format": "csv"}"#);
    assert_eq!((status, refused["error"]["kind"].as_str()), (503, Some("shutting_down")), "{refused}");
    let (code, _) = exited(&mut s, Duration::from_secs(20));
    let took = t.elapsed();
    assert_eq!(code, Some(0));
    assert!(took >= Duration::from_millis(2900), "the run got its grace period");
    wait_pg(&db, false);
    assert!(std::net::TcpStream::connect(&s.addr).is_err(), "no longer listening");
}

/// The dashboard in a real browser (Debian's chromium driven by playwright-core): start a
/// long run from the report's form, see its progress bar move, cancel it, see it marked
/// cancelled. CI installs both (see .ci/run); elsewhere the test skips loudly without them.
#[test]
fn the_dashboard_shows_live_progress_and_cancels_a_run_in_a_browser() {
    let Some((db, reports)) = slow_pg("dashboard", 100_000) else { return };
    let s = Server::start(reports.path(), &[]);
    let script = r#"
const { chromium } = require(process.env.PLAYWRIGHT_CORE);
(async () => {
  const browser = await LAUNCH;
  const page = await browser.newPage();
  await page.goto(process.argv[2]);
  await page.selectOption('form[data-report="slow"] select[name="_format"]', 'csv');
  await page.click('form[data-report="slow"] button[type="submit"]');
  const row = page.locator('#runs tbody tr').first();
  await row.locator('.status', { hasText: 'running' }).waitFor({ timeout: 20000 });
  const value = async () => Number(await row.locator('progress').evaluate(p => p.value));
  const rows = async () => Number((await row.locator('.rows').textContent()).replace(/[^0-9]/g, ''));
  await page.waitForFunction(() => Number(document.querySelector('#runs tbody tr .rows').textContent.replace(/[^0-9]/g, '')) > 0);
  const first = [await rows(), await value()];
  await page.waitForFunction(n => Number(document.querySelector('#runs tbody tr .rows').textContent.replace(/[^0-9]/g, '')) > n, first[0]);
  const second = [await rows(), await value()];
  const eta = await row.locator('.eta').textContent();
  await row.locator('button.cancel').click();
  await row.locator('.status', { hasText: 'cancelled' }).waitFor({ timeout: 20000 });
  console.log(JSON.stringify({ id: await row.getAttribute('data-run'), first, second, eta,
    status: await row.locator('.status').textContent() }));
  await browser.close();
})().catch(e => { console.error(e); process.exit(1); });
"#
    .replace("LAUNCH", CHROMIUM);
    let Some(seen) = playwright(&script, &s.url("/")) else { return };
    let (r1, p1) = (seen["first"][0].as_f64().unwrap(), seen["first"][1].as_f64().unwrap());
    let (r2, p2) = (seen["second"][0].as_f64().unwrap(), seen["second"][1].as_f64().unwrap());
    assert!(r2 > r1 && p2 >= p1 && p2 > 0.0, "the progress bar moved: {seen}");
    assert!(seen["eta"].as_str().unwrap().starts_with("ETA "), "a running run shows its ETA: {seen}");
    assert_eq!(seen["status"], "cancelled");
    let done = s.finished(seen["id"].as_str().unwrap());
    assert_eq!(done["status"], "cancelled");
    wait_pg(&db, false);
}

#[test]
fn a_run_without_progress_is_flagged_stalled() {
    // Row 30 takes 4 s: the first batch (20 rows) leaves, then nothing for 4 s.
    let Some((_db, dir)) = pg_report("stall", 100, "stuck", 20, "pg_sleep(CASE WHEN id = 30 THEN 4 ELSE 0 END)::text")
    else {
        return;
    };
    let s = Server::start(dir.path(), &["--stall-secs", "1"]);
    let (status, _, run) = s.post("/runs", r#"{"report": "stuck", "format": "csv"}"#);
    assert_eq!(status, 202, "{run}");
    let id = run["id"].as_str().unwrap();
    // Flagged while it waits on the database, before or after its first batch.
    let stalled = s.wait_run(id, |r| r["stalled"] == true);
    assert!(matches!(stalled["status"].as_str(), Some("preparing" | "running")), "{stalled}");
    let (_, _, text) = s.get("/metrics");
    assert!(String::from_utf8(text).unwrap().contains("ream_stalled_runs 1"), "the gauge counts it");
    let done = s.finished(id);
    assert_eq!((done["status"].as_str(), done["stalled"].as_bool()), (Some("succeeded"), Some(false)), "{done}");
    assert_eq!(done["rows"], 100);
}

#[test]
fn outputs_past_the_retention_limit_are_removed_oldest_first() {
    let demo = demo(2000);
    // Room for one output of this report, not two.
    let size = cli_output(&demo, "csv", &[]).len();
    let s = Server::start(&demo.join("reports"), &["--retention-bytes", &(size + size / 2).to_string()]);
    let body = r#"{"report": "sales_by_region", "format": "csv", "parameters": {"start_date": "2023-01-01", "end_date": "2025-12-31"}}"#;
    let first = s.post("/runs", body).2["id"].as_str().unwrap().to_string();
    assert_eq!(s.finished(&first)["status"], "succeeded");
    // Output files' times have a resolution; make the order unambiguous.
    std::thread::sleep(Duration::from_millis(20));
    let second = s.post("/runs", body).2["id"].as_str().unwrap().to_string();
    assert_eq!(s.finished(&second)["status"], "succeeded");
    let (status, _, _) = s.get(&format!("/runs/{second}/output"));
    assert_eq!(status, 200, "the newest output is kept");
    let (status, e) = s.json(&format!("/runs/{first}/output"));
    assert_eq!(status, 409, "{e}");
    assert!(e["error"]["message"].as_str().unwrap().contains("retention"), "{e}");
    let (_, run) = s.json(&format!("/runs/{first}"));
    assert_eq!(run["status"], "succeeded", "the run keeps its record");
}

#[test]
fn settings_come_from_a_config_file_and_unknown_keys_are_errors() {
    let demo = demo(300);
    let dir = tempfile::tempdir().unwrap();
    let config = write(
        dir.path(),
        "serve.toml",
        "listen = \"127.0.0.1:0\"\nreports = \"demo/reports\"\nmax_runs = 1\nkeep_runs = 5\n",
    );
    // `reports` is relative to the file.
    std::os::unix::fs::symlink(&demo, dir.path().join("demo")).unwrap();
    let s = Server::start_args(&["--config", config.to_str().unwrap()], &[]);
    let (status, list) = s.json("/reports");
    assert_eq!(status, 200);
    assert!(list["reports"].as_array().unwrap().len() >= 4, "the reports directory came from the file");
    let bad = write(dir.path(), "bad.toml", "listen = \"127.0.0.1:0\"\nmax_run = 3\n");
    let r = run(&["serve", "--config", bad.to_str().unwrap()]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("bad.toml") && r.stderr.contains("unknown field `max_run`"), "{}", r.stderr);
}

#[test]
fn a_client_that_leaves_while_the_run_prepares_cancels_it() {
    let dir = late_report();
    let s = Server::start(dir.path(), &[]);
    let mut tcp = std::net::TcpStream::connect(&s.addr).unwrap();
    write!(tcp, "GET /reports/late.csv HTTP/1.1\r\nHost: {}\r\n\r\n", s.addr).unwrap();
    let id = loop {
        let (_, runs) = s.json("/runs");
        if let Some(r) = runs["runs"].as_array().unwrap().first() {
            assert_eq!(r["status"], "preparing", "{r}");
            break r["id"].as_str().unwrap().to_string();
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    std::thread::sleep(Duration::from_millis(200));
    drop(tcp);
    // Without the cancel the query would run on for a long time, and the run would never
    // leave `preparing`.
    let done = s.finished(&id);
    assert_eq!(done["status"], "cancelled", "{done}");
    assert_eq!(done["error"], "the client went away before the first byte");
    // The gauge goes down just after the run shows its end (once it is recorded).
    let t = Instant::now();
    while !String::from_utf8(s.get("/metrics").2).unwrap().contains("ream_active_runs 0") {
        assert!(t.elapsed() < Duration::from_secs(10), "the run still counts as active");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Wide rows (4 KB each) that come slowly, in batches of 200.
fn wide_pg(tag: &str, rows: u32) -> Option<(PgDb, tempfile::TempDir)> {
    pg_report(tag, rows, "wide", 200, "repeat('x', 4000) || pg_sleep(0.0005)::text")
}

#[test]
fn a_run_over_its_memory_budget_gets_smaller_batches_and_completes() {
    let Some((_db, reports)) = wide_pg("budget", 3000) else { return };
    // 200 rows of 4 KB are about 0.8 MB a batch: the one being built and the output
    // chunks (320 KiB) alone are over a budget of 1 MB, whatever the queues hold.
    let s = Server::start(reports.path(), &["--run-memory-bytes", "1000000"]);
    let (status, _, run) = s.post("/runs", r#"{"report": "wide", "format": "csv"}"#);
    assert_eq!(status, 202, "{run}");
    let id = run["id"].as_str().unwrap();
    let done = s.finished(id);
    assert_eq!(done["status"], "succeeded", "{done}");
    let limit = done["batch_rows_limit"].as_u64().expect("the batches were made smaller");
    assert!((16..=100).contains(&limit), "{done}");
    let (_, _, out) = s.get(&format!("/runs/{id}/output"));
    let ids: Vec<u64> = csv::Reader::from_reader(&out[..]).records().map(|r| r.unwrap()[0].parse().unwrap()).collect();
    assert_eq!(ids, (1..=3000).collect::<Vec<_>>(), "every row once, in order, across the change of batch size");
}

#[test]
fn a_run_that_cannot_fit_its_budget_fails_saying_so_and_the_server_serves_on() {
    let Some((_db, reports)) = wide_pg("overbudget", 3000) else { return };
    let demo = demo(300);
    write(reports.path(), "sales.yaml", &demo_spec(&demo, "sales_by_region.yaml"));
    // Under what even the output chunks need: no batch size fits.
    let s = Server::start(reports.path(), &["--run-memory-bytes", "200000"]);
    let (status, _, run) = s.post("/runs", r#"{"report": "wide", "format": "csv"}"#);
    assert_eq!(status, 202, "{run}");
    let done = s.finished(run["id"].as_str().unwrap());
    assert_eq!(done["status"], "failed", "{done}");
    let error = done["error"].as_str().unwrap();
    assert!(error.contains("over its memory budget of 195 KiB") && error.contains("batches of 16 rows"), "{error}");
    // Small runs still go through.
    let (status, _, body) = s.get(&format!("/reports/sales_by_region.csv?{RANGE}"));
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
}

#[test]
fn a_response_that_does_not_start_in_time_is_a_408_and_its_run_is_cancelled() {
    let dir = late_report();
    let s = Server::start(dir.path(), &["--request-timeout-secs", "1"]);
    let (status, e) = s.json("/reports/late.csv");
    assert_eq!((status, e["error"]["kind"].as_str()), (408, Some("timeout")), "{e}");
    let (_, runs) = s.json("/runs");
    let done = s.finished(runs["runs"][0]["id"].as_str().unwrap());
    assert_eq!(done["status"], "cancelled", "{done}");
}

#[test]
fn shutdown_lets_a_run_that_ends_within_the_grace_period_finish() {
    let Some((db, reports)) = slow_pg("drain", 500) else { return };
    let mut s = Server::start(reports.path(), &["--grace-secs", "60"]);
    let (status, _, run) = s.post("/runs", r#"{"report": "slow", "format": "csv"}"#);
    assert_eq!(status, 202, "{run}");
    let id = run["id"].as_str().unwrap().to_string();
    wait_pg(&db, true);
    let (code, _) = terminate(&mut s, Duration::from_secs(50));
    assert_eq!(code, Some(0));
    // The run finished its output before the server went: it is in the output directory.
    let stored =
        std::fs::read(s._outputs.path().join("outputs").join(format!("{id}.csv"))).expect("the output was stored");
    assert_eq!(csv::Reader::from_reader(&stored[..]).records().count(), 500);
}

#[test]
fn reports_reload_when_their_directory_changes_and_a_bad_spec_keeps_the_old_ones() {
    let demo = demo(300);
    let dir = tempfile::tempdir().unwrap();
    let spec = |name: &str| demo_spec(&demo, name);
    write(dir.path(), "sales.yaml", &spec("sales_by_region.yaml"));
    let s = Server::start(dir.path(), &[]);
    let ids = |s: &Server| -> Vec<String> {
        s.json("/reports").1["reports"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_str().unwrap().to_string())
            .collect()
    };
    let wait = |what: &dyn Fn() -> bool| {
        let t = Instant::now();
        while !what() {
            assert!(t.elapsed() < Duration::from_secs(30), "the server never reloaded");
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    assert_eq!(ids(&s), ["sales_by_region"]);
    write(dir.path(), "export.yaml", &spec("invoice_export.yaml"));
    wait(&|| ids(&s).len() == 2);
    let (status, _, _) = s.get("/reports/invoice_export.csv?status=paid");
    assert_eq!(status, 200, "the new report runs");
    // A broken spec: the reports stay as they were, and /readyz says why.
    write(dir.path(), "broken.yaml", "report: broken\nsource: {table: [oops\n");
    wait(&|| !s.json("/readyz").1["reports_reload_error"].is_null());
    assert_eq!(ids(&s), ["invoice_export", "sales_by_region"]);
    assert!(s.json("/readyz").1["reports_reload_error"].as_str().unwrap().contains("broken.yaml"));
    std::fs::remove_file(dir.path().join("broken.yaml")).unwrap();
    std::fs::remove_file(dir.path().join("export.yaml")).unwrap();
    wait(&|| ids(&s) == ["sales_by_region"]);
    assert!(s.json("/readyz").1["reports_reload_error"].is_null());
}

/// A SQLite table of `rows` rows of about 3 KB (two 1,500-character texts) read by keyset.
fn wide_sqlite(rows: u32) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("wide.sqlite");
    let c = rusqlite::Connection::open(&db).unwrap();
    c.execute_batch(&format!(
        "CREATE TABLE wide (id INTEGER PRIMARY KEY, a TEXT, b TEXT);
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {rows})
         INSERT INTO wide SELECT i, printf('%.1500c', 'a'), printf('%.1500c', 'b') FROM n;"
    ))
    .unwrap();
    let spec = format!(
        "report: wide\nsource:\n  url: \"sqlite:{}\"\n  table: wide\n  key: [id]\n  strategy: keyset\n",
        db.display()
    );
    write(dir.path(), "wide.yaml", &spec);
    dir
}

#[test]
fn a_memory_budget_that_does_not_divide_the_page_duplicates_no_sqlite_row() {
    // The first round's report: under this budget the batch limit drops to a size that
    // does not divide SQLite's keyset page; the page's last partial batch then left
    // without its cursor and the next page re-read it (61,580 rows of 60,000, "succeeded").
    // The finding's 60,000 rows: the run lasts several of the budget's 250 ms checks.
    let dir = wide_sqlite(60_000);
    let s = Server::start(dir.path(), &["--run-memory-bytes", "6000000"]);
    let (status, _, run) = s.post("/runs", r#"{"report": "wide", "format": "csv"}"#);
    assert_eq!(status, 202, "{run}");
    let id = run["id"].as_str().unwrap();
    let done = s.finished(id);
    assert_eq!(done["status"], "succeeded", "{done}");
    assert!(done["batch_rows_limit"].as_u64().is_some(), "the budget never lowered the batches: {done}");
    let (_, _, out) = s.get(&format!("/runs/{id}/output"));
    let ids: Vec<u64> = csv::Reader::from_reader(&out[..]).records().map(|r| r.unwrap()[0].parse().unwrap()).collect();
    assert_eq!(ids.len(), 60_000, "rows: {}", ids.len());
    assert_eq!(ids, (1..=60_000).collect::<Vec<_>>(), "every row once, in order");
    assert_eq!(done["rows"], 60_000, "{done}");
}

#[test]
fn a_panic_in_one_run_fails_that_run_and_the_server_serves_on() {
    let demo = demo(300);
    let reports = tempfile::tempdir().unwrap();
    write(reports.path(), "sales.yaml", &demo_spec(&demo, "sales_by_region.yaml"));
    let panicky = demo_spec(&demo, "invoice_export.yaml").replace("report: invoice_export", "report: panicky");
    write(reports.path(), "panicky.yaml", &panicky);
    let s = Server::start_env(reports.path(), &[], &[("REAM_TEST_PANIC", "panicky")]);
    let (status, _, run) = s.post("/runs", r#"{"report": "panicky", "format": "csv"}"#);
    assert_eq!(status, 202, "{run}");
    let done = s.finished(run["id"].as_str().unwrap());
    assert_eq!(done["status"], "failed", "{done}");
    let error = done["error"].as_str().unwrap();
    assert!(error.contains("internal error: injected panic in report `panicky`"), "{error}");
    assert!(error.contains("This is a bug in ream: please report it"), "{error}");
    // Other runs, before and after, and the server itself go on.
    let (status, _, body) = s.get(&format!("/reports/sales_by_region.csv?{RANGE}"));
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert!(body.len() > 100);
    let (status, _, _) = s.get("/healthz");
    assert_eq!(status, 200);
}

#[test]
fn list_parameters_stay_lists_of_items_from_json_and_repeated_query_keys() {
    let demo = demo(300);
    let db = demo.join("demo.sqlite");
    let reports = tempfile::tempdir().unwrap();
    let spec = format!(
        "report: by_name\nsource:\n  url: \"sqlite:{}\"\n  table: invoices\n  key: [id]\n  \
         joins: [\"JOIN customers c ON c.id = invoices.customer_id\"]\n  \
         columns: {{id: invoices.id, customer: c.name}}\n  where: \"c.name IN (:names)\"\n\
         parameters:\n  names: {{type: string, list: true}}\n",
        db.display()
    );
    write(reports.path(), "by_name.yaml", &spec);
    // Customer names with commas in them: joined and split again, each became two.
    let c = rusqlite::Connection::open(&db).unwrap();
    let names: Vec<String> = c
        .prepare("SELECT DISTINCT c.name FROM invoices JOIN customers c ON c.id = invoices.customer_id WHERE c.name LIKE '%,%' ORDER BY 1 LIMIT 2")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    assert_eq!(names.len(), 2, "the demo has customers with commas in their names");
    let want: i64 = c
        .query_row(
            "SELECT count(*) FROM invoices JOIN customers c ON c.id = invoices.customer_id WHERE c.name IN (?1, ?2)",
            [&names[0], &names[1]],
            |r| r.get(0),
        )
        .unwrap();
    let customers = |csv: &[u8]| -> Vec<String> {
        csv::Reader::from_reader(csv).records().map(|r| r.unwrap()[1].to_string()).collect()
    };
    let s = Server::start(reports.path(), &[]);
    let body = serde_json::json!({"report": "by_name", "format": "csv", "parameters": {"names": names}});
    let (status, _, run) = s.post("/runs", &body.to_string());
    assert_eq!(status, 202, "{run}");
    let id = run["id"].as_str().unwrap();
    assert_eq!(s.finished(id)["status"], "succeeded");
    let (_, _, out) = s.get(&format!("/runs/{id}/output"));
    let got = customers(&out);
    assert_eq!(got.len() as i64, want);
    assert!(got.iter().all(|n| names.contains(n)), "{got:?}");
    // The same through a repeated query key.
    let q = |n: &str| n.replace('&', "%26").replace(' ', "%20").replace(',', "%2C");
    let (status, _, out) = s.get(&format!("/reports/by_name.csv?names={}&names={}", q(&names[0]), q(&names[1])));
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&out));
    assert_eq!(customers(&out).len() as i64, want);
}

#[test]
fn a_resumed_run_shows_its_resumes_and_the_metric_counts_them() {
    let Some((db, reports)) = slow_pg("resumes", 1500) else { return };
    let s = Server::start(reports.path(), &[]);
    let (status, _, run) = s.post("/runs", r#"{"report": "slow", "format": "csv"}"#);
    assert_eq!(status, 202, "{run}");
    let id = run["id"].as_str().unwrap().to_string();
    s.wait_run(&id, |r| r["rows"].as_u64().unwrap_or(0) >= 100);
    assert!(db.kill_ream_sessions() >= 1, "the run's session (and an idle one of the pool)");
    let done = s.finished(&id);
    assert_eq!(done["status"], "succeeded", "{done}");
    let resumes = done["resumes"].as_array().unwrap();
    assert_eq!(resumes.len(), 1, "{done}");
    assert_eq!(resumes[0]["attempt"], 1);
    assert!(resumes[0]["after_rows"].as_u64().unwrap() >= 100, "{done}");
    let (_, _, out) = s.get(&format!("/runs/{id}/output"));
    let ids: Vec<u64> = csv::Reader::from_reader(&out[..]).records().map(|r| r.unwrap()[0].parse().unwrap()).collect();
    assert_eq!(ids, (1..=1500).collect::<Vec<_>>(), "every row once across the resume");
    let (_, _, metrics) = s.get("/metrics");
    assert!(String::from_utf8(metrics).unwrap().contains("ream_resumes_total 1"));
}

#[test]
fn parameter_values_the_database_rejects_are_4xx_before_any_byte() {
    let Some(db) = PgDb::create("rejected") else { return };
    db.exec("CREATE TABLE t (id int4 PRIMARY KEY, name text); INSERT INTO t VALUES (1, 'a'), (2, 'b');");
    let reports = tempfile::tempdir().unwrap();
    let spec = format!(
        "report: r\nsource:\n  url: \"{}\"\n  table: t\n  where: \"id <> :n AND name <> :s\"\n\
         parameters:\n  n: {{type: int, default: 0}}\n  s: {{type: string, default: x}}\n",
        db.url
    );
    write(reports.path(), "r.yaml", &spec);
    let s = Server::start(reports.path(), &[]);
    // Beyond int4: PostgreSQL refuses the bound value when the statement runs.
    let (status, e) = s.json("/reports/r.csv?n=3000000000");
    assert_eq!(status, 422, "{e}");
    assert!(e["error"]["message"].as_str().unwrap().contains("the database rejected a value"), "{e}");
    assert!(e["error"]["message"].as_str().unwrap().contains("out of range"), "{e}");
    // A NUL byte no database stores: a bad parameter, named.
    let (status, e) = s.json("/reports/r.csv?s=a%00b");
    assert_eq!(status, 400, "{e}");
    assert_eq!(e["error"]["parameters"][0]["name"], "s", "{e}");
    // And the report itself is fine.
    let (status, _, body) = s.get("/reports/r.csv");
    assert_eq!((status, String::from_utf8(body).unwrap()), (200, "id,name\n1,a\n2,b\n".to_string()));
}

#[test]
fn readiness_probes_of_a_hung_database_do_not_pile_up() {
    // A "database" that accepts connections and never answers, counting them.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap();
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    {
        let accepted = accepted.clone();
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for s in silent.incoming() {
                accepted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                held.push(s);
            }
        });
    }
    let reports = tempfile::tempdir().unwrap();
    write(
        reports.path(),
        "hung.yaml",
        &format!("report: hung\nsource:\n  url: \"postgres://ream@{addr}/x\"\n  table: t\n  key: [id]\n"),
    );
    let s = Server::start(reports.path(), &[]);
    for _ in 0..3 {
        let (status, body) = s.json("/readyz");
        assert_eq!(status, 503, "{body}");
        let error = body["sources"][0]["error"].as_str().unwrap();
        assert!(error.contains("no answer within 5 s"), "{body}");
        std::thread::sleep(Duration::from_millis(2100));
    }
    // Each scrape started a new probe that hung for ever; now the first one is waited on.
    assert_eq!(accepted.load(std::sync::atomic::Ordering::Relaxed), 1, "probes piled up");
    let (status, _, _) = s.get("/healthz");
    assert_eq!(status, 200);
}

/// Read from a raw connection until the server closes it (or `limit` passes): what came.
fn read_until_closed(stream: &mut std::net::TcpStream, limit: Duration) -> Result<Vec<u8>, String> {
    stream.set_read_timeout(Some(limit)).unwrap();
    let mut got = vec![];
    match stream.read_to_end(&mut got) {
        Ok(_) => Ok(got),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => Ok(got),
        Err(e) => Err(format!("still open after {limit:?} ({e}); got {:?}", String::from_utf8_lossy(&got))),
    }
}

#[test]
fn a_connection_that_never_finishes_its_head_is_closed_after_the_header_timeout() {
    let demo = demo(300);
    let s = Server::start(&demo.join("reports"), &["--header-timeout-secs", "1", "--idle-timeout-secs", "600"]);
    let mut slow = std::net::TcpStream::connect(&s.addr).unwrap();
    // A head that never ends: no blank line after the headers.
    slow.write_all(format!("GET /healthz HTTP/1.1\r\nHost: {}\r\n", s.addr).as_bytes()).unwrap();
    let got = read_until_closed(&mut slow, Duration::from_secs(30)).expect("the server holds a half-sent head");
    assert!(got.is_empty(), "a response to a head that never ended: {}", String::from_utf8_lossy(&got));
    assert_eq!(s.get("/healthz").0, 200, "the server serves on");
}

#[test]
fn an_idle_connection_is_closed_after_the_idle_timeout_but_a_slow_download_is_not_cut() {
    let dir = wide_sqlite(20_000);
    let s = Server::start(dir.path(), &["--idle-timeout-secs", "1", "--header-timeout-secs", "600"]);
    // Idle after one answered request: closed.
    let mut idle = std::net::TcpStream::connect(&s.addr).unwrap();
    idle.write_all(format!("GET /healthz HTTP/1.1\r\nHost: {}\r\n\r\n", s.addr).as_bytes()).unwrap();
    let got = read_until_closed(&mut idle, Duration::from_secs(30)).expect("an idle connection stays open");
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 200") && text.ends_with(r#"{"status":"ok"}"#), "{text}");
    // A 60 MB download whose reader pauses three times the idle timeout: the request is
    // in flight all along, so it completes.
    let mut r = s.agent.get(s.url("/reports/wide.csv")).call().unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let mut body = r.body_mut().with_config().limit(u64::MAX).reader();
    let mut out = vec![0u8; 1 << 16];
    body.read_exact(&mut out).unwrap();
    std::thread::sleep(Duration::from_secs(3));
    body.read_to_end(&mut out).unwrap();
    let ids: Vec<u64> = csv::Reader::from_reader(&out[..]).records().map(|r| r.unwrap()[0].parse().unwrap()).collect();
    assert_eq!(ids, (1..=20_000).collect::<Vec<_>>(), "the download was cut");
}

#[test]
fn past_the_connection_cap_a_new_client_waits_until_one_closes() {
    let demo = demo(300);
    let s = Server::start(&demo.join("reports"), &["--max-connections", "2", "--idle-timeout-secs", "600"]);
    let held: Vec<_> = (0..2)
        .map(|_| {
            let mut c = std::net::TcpStream::connect(&s.addr).unwrap();
            c.write_all(format!("GET /healthz HTTP/1.1\r\nHost: {}\r\n\r\n", s.addr).as_bytes()).unwrap();
            let mut buf = [0u8; 12];
            c.read_exact(&mut buf).unwrap();
            assert_eq!(&buf, b"HTTP/1.1 200");
            c
        })
        .collect();
    // A third connection is queued by the kernel, not served.
    let mut third = std::net::TcpStream::connect(&s.addr).unwrap();
    third
        .write_all(format!("GET /healthz HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n", s.addr).as_bytes())
        .unwrap();
    third.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    let mut buf = [0u8; 12];
    assert!(third.read_exact(&mut buf).is_err(), "a third connection was served past a cap of 2");
    drop(held);
    let got = read_until_closed(&mut third, Duration::from_secs(30)).expect("served once a connection closed");
    assert!(got.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&got));
}

#[test]
fn a_zero_connection_timeout_is_a_usage_error() {
    let demo = demo(300);
    let r = run(&["serve", "--reports", demo.join("reports").to_str().unwrap(), "--idle-timeout-secs", "0"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("--idle-timeout-secs must be at least 1"), "{}", r.stderr);
}

#[test]
fn the_openapi_document_describes_every_route_and_every_format() {
    let demo = demo(300);
    let s = Server::start(&demo.join("reports"), &[]);
    let (status, doc) = s.json("/openapi.json");
    assert_eq!(status, 200, "{doc}");
    assert_eq!(doc["openapi"], "3.1.0");
    let paths: Vec<&str> = doc["paths"].as_object().unwrap().keys().map(|k| k.as_str()).collect();
    for route in [
        "/",
        "/reports",
        "/reports/{file}",
        "/runs",
        "/runs/{id}",
        "/runs/{id}/events",
        "/runs/{id}/output",
        "/metrics",
        "/healthz",
        "/readyz",
        "/openapi.json",
    ] {
        assert!(paths.contains(&route), "{route} is missing from {paths:?}");
    }
    let formats = &doc["components"]["schemas"]["RunRequest"]["properties"]["format"]["enum"];
    assert_eq!(formats, &serde_json::json!(["csv", "ndjson", "json", "html", "xlsx", "pdf", "parquet", "arrow"]));
    let streamed = doc["paths"]["/reports/{file}"]["get"]["responses"]["200"]["content"].as_object().unwrap();
    for ct in ["text/csv; charset=utf-8", "application/pdf", "application/x-ndjson"] {
        assert!(streamed.contains_key(ct), "{ct} is not among {:?}", streamed.keys().collect::<Vec<_>>());
    }
    // Every documented route answers something other than 404 or 405 at its bare path.
    for route in paths.iter().filter(|p| !p.contains('{')) {
        let (status, _, _) = s.get(route);
        assert!(![404, 405].contains(&status), "{route}: {status}");
    }
}

#[test]
fn a_download_is_compressed_as_the_client_accepts_and_self_compressed_formats_are_not() {
    let demo = demo(2000);
    let env = [("SOURCE_DATE_EPOCH", "1700000000")];
    let s = Server::start_env(&demo.join("reports"), &[], &env);
    let plain = cli_output(&demo, "csv", &env);
    for (accept, coding, tool) in
        [("gzip", "gzip", "gzip"), ("gzip, deflate, br, zstd", "zstd", "zstd"), ("zstd;q=0, gzip", "gzip", "gzip")]
    {
        let (status, headers, body) = s.get_with(&format!("{SALES}.csv?{RANGE}"), &[("accept-encoding", accept)]);
        assert_eq!(status, 200);
        assert_eq!(headers.get("content-encoding").unwrap(), coding, "{accept}");
        assert_eq!(headers.get("vary").unwrap(), "accept-encoding");
        assert!(decompress(tool, &body) == plain, "{accept}: the decompressed body differs from the CLI's output");
    }
    let (_, headers, body) = s.get(&format!("{SALES}.csv?{RANGE}"));
    assert!(headers.get("content-encoding").is_none() && body == plain, "no Accept-Encoding, no coding");
    let (_, headers, body) = s.get_with(&format!("{SALES}.parquet?{RANGE}"), &[("accept-encoding", "gzip, zstd")]);
    assert!(headers.get("content-encoding").is_none(), "parquet is compressed already");
    assert!(body == cli_output(&demo, "parquet", &env));
}

#[test]
fn accept_picks_the_output_of_a_report_without_an_extension() {
    let demo = demo(2000);
    let env = [("SOURCE_DATE_EPOCH", "1700000000")];
    let s = Server::start_env(&demo.join("reports"), &[], &env);
    let (status, headers, body) =
        s.get_with(&format!("{SALES}?{RANGE}"), &[("accept", "text/csv;q=0.5, application/vnd.apache.arrow.stream")]);
    assert_eq!(status, 200);
    assert_eq!(headers.get("content-type").unwrap(), "application/vnd.apache.arrow.stream");
    assert!(body == cli_output(&demo, "arrow", &env), "the Arrow stream differs from the CLI's");
    let (status, headers, body) = s.get_with(&format!("{SALES}?{RANGE}"), &[("accept", "application/json")]);
    assert_eq!(status, 200);
    assert!(headers.get("content-type").unwrap().to_str().unwrap().starts_with("application/json"));
    let doc: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(doc["id"], "sales_by_region", "{doc}");
}

#[test]
fn pyarrow_reads_the_arrow_stream_batch_by_batch_from_the_socket() {
    let probe = std::process::Command::new("python3").args(["-c", "import pyarrow"]).output();
    if !probe.as_ref().is_ok_and(|o| o.status.success()) {
        assert!(std::env::var_os("CI").is_none(), "pyarrow is required in CI: {probe:?}");
        eprintln!("\n*** SKIPPED: python3 without pyarrow ***\n");
        return;
    }
    let demo = demo(3000);
    let s = Server::start(&demo.join("reports"), &[]);
    let script = r#"
import sys, urllib.request, pyarrow.ipc as ipc
with urllib.request.urlopen(sys.argv[1]) as r:
    reader = ipc.open_stream(r)
    sizes = [b.num_rows for b in reader]
print(len(sizes), sum(sizes), max(sizes))
"#;
    let url = s.url("/reports/invoice_export.arrow?status=paid,void");
    let out = std::process::Command::new("python3").args(["-c", script, &url]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let got = String::from_utf8(out.stdout).unwrap();
    let rows = count_rows(&demo, "SELECT count(*) FROM invoices WHERE status IN ('paid', 'void')");
    let (batches, total, largest) = match got.split_whitespace().collect::<Vec<_>>()[..] {
        [b, t, m] => (b.parse::<u64>().unwrap(), t.parse::<u64>().unwrap(), m.parse::<u64>().unwrap()),
        _ => panic!("{got}"),
    };
    assert_eq!(total, rows, "{got}");
    assert!(batches >= rows / 1024 && largest <= 1024, "batches of at most 1024 rows: {got}");
}

fn count_rows(demo: &Path, sql: &str) -> u64 {
    let c = rusqlite::Connection::open(demo.join("demo.sqlite")).unwrap();
    c.query_row(sql, [], |r| r.get::<_, i64>(0)).unwrap() as u64
}

#[test]
fn the_dashboard_fills_titles_offers_choices_names_downloads_and_shows_failures() {
    let demo = demo(300);
    let reports = demo.join("reports");
    write(&reports, "broken.yaml", "report: broken\nsource:\n  url: \"sqlite:../demo.sqlite\"\n  table: invoices\n  where: \"no_such_column = 1\"\n");
    let s = Server::start(&reports, &[]);
    let script = r#"
const { chromium } = require(process.env.PLAYWRIGHT_CORE);
(async () => {
  const browser = await LAUNCH;
  const page = await browser.newPage({ viewport: { width: 1200, height: 900 } });
  await page.goto(process.argv[2]);
  const sales = 'form[data-report="sales_by_region"] ';
  await page.locator(sales).waitFor({ timeout: 20000 });
  await page.fill(sales + 'input[name="start_date"]', '2024-01-01');
  await page.fill(sales + 'input[name="end_date"]', '2024-12-31');
  const title = await page.locator('li[data-report="sales_by_region"] h3').textContent();
  const picker = await page.locator(sales + 'input[name="start_date"]').getAttribute('type');
  // The ETA a running run shows, from its share done and the time so far.
  const etas = await page.evaluate(() => [eta({ percent: 25, elapsed_seconds: 3 }),
    eta({ percent: 10, elapsed_seconds: 60 }), eta({ percent: null, elapsed_seconds: 5 })]);
  const inv = 'form[data-report="invoice_export"] ';
  const status = page.locator(inv + 'select[name="status"]');
  const options = await status.locator('option').evaluateAll(os => os.map(o => [o.value, o.selected]));
  const multiple = await status.evaluate(s => s.multiple);
  await status.selectOption(['paid']);
  await page.selectOption(inv + 'select[name="_format"]', 'csv');
  await page.click(inv + 'button[type="submit"]');
  const done = page.locator('#runs tbody tr', { hasText: 'invoice_export' }).first();
  await done.locator('.status', { hasText: 'succeeded' }).waitFor({ timeout: 30000 });
  const download = await done.locator('a.download').getAttribute('download');
  const href = await done.locator('a.download').getAttribute('href');
  const csv = await page.evaluate(async h => (await fetch(h)).text(), href);
  await page.click('form[data-report="broken"] button[type="submit"]');
  const failed = page.locator('#runs tbody tr', { hasText: 'broken' }).first();
  await failed.locator('.status', { hasText: 'failed' }).waitFor({ timeout: 30000 });
  const error = await failed.locator('.error').textContent();
  const still = await failed.locator('progress').evaluate(p => p.hasAttribute('value'));
  if (process.env.REAM_SCREENSHOT) await page.screenshot({ path: process.env.REAM_SCREENSHOT, fullPage: true });
  console.log(JSON.stringify({ title, picker, etas, options, multiple, download, csv, error, still }));
  await browser.close();
})().catch(e => { console.error(e); process.exit(1); });
"#
    .replace("LAUNCH", CHROMIUM);
    let Some(seen) = playwright(&script, &s.url("/")) else { return };
    assert_eq!(seen["title"], "Sales by region, 2024-01-01 to 2024-12-31", "{seen}");
    assert_eq!(seen["picker"], "date", "a date parameter is a date picker");
    assert_eq!(seen["etas"], serde_json::json!(["ETA 9 s", "ETA 9 min", ""]), "{seen}");
    assert_eq!(seen["multiple"], true);
    assert_eq!(
        seen["options"],
        serde_json::json!([["paid", true], ["open", true], ["overdue", true], ["void", true]]),
        "{seen}"
    );
    assert_eq!(seen["download"], "invoice_export_paid.csv");
    let csv = seen["csv"].as_str().unwrap();
    let mut r = csv::Reader::from_reader(csv.as_bytes());
    let statuses: Vec<String> = r.records().map(|r| r.unwrap()[5].to_string()).collect();
    assert!(!statuses.is_empty() && statuses.iter().all(|s| s == "paid"), "only the chosen status: {statuses:?}");
    assert!(seen["error"].as_str().unwrap().contains("no_such_column"), "a failed run shows why: {seen}");
    assert_eq!(seen["still"], true, "a failed run's bar stops animating");
}

#[test]
fn the_dashboard_lists_schedules_with_their_next_and_last_fires() {
    let demo = demo(300);
    let s = Server::start(&demo.join("reports"), &[]);
    let body = |cron: &str| {
        format!(
            r#"{{"report": "invoice_export", "format": "csv", "parameters": {{"status": ["paid"]}}, "cron": "{cron}", "timezone": "Europe/Berlin"}}"#
        )
    };
    let (status, _, fired) = s.post("/schedules", &body("0 6 1 * *"));
    assert_eq!(status, 201, "{fired}");
    let (status, _, never) = s.post("/schedules", &body("30 2 * * 1"));
    assert_eq!(status, 201, "{never}");
    let (status, _, run) = s.post(&format!("/schedules/{}/run", fired["id"].as_str().unwrap()), "");
    assert_eq!(status, 202, "{run}");
    let script = r#"
const { chromium } = require(process.env.PLAYWRIGHT_CORE);
(async () => {
  const browser = await LAUNCH;
  const page = await browser.newPage();
  await page.goto(process.argv[2]);
  await page.locator('#schedules tbody tr').nth(1).waitFor({ timeout: 20000 });
  const rows = await page.locator('#schedules tbody tr').evaluateAll(trs => trs.map(tr =>
    Object.fromEntries([...tr.children].map(td => [td.className, td.textContent]))));
  console.log(JSON.stringify({ rows }));
  await browser.close();
})().catch(e => { console.error(e); process.exit(1); });
"#
    .replace("LAUNCH", CHROMIUM);
    let Some(seen) = playwright(&script, &s.url("/")) else { return };
    let rows = seen["rows"].as_array().unwrap();
    let of = |id: &serde_json::Value| rows.iter().find(|r| r["id"] == *id).unwrap_or_else(|| panic!("{seen}"));
    let (f, n) = (of(&fired["id"]), of(&never["id"]));
    assert_eq!((f["report"].as_str(), f["when"].as_str()), (Some("invoice_export"), Some("0 6 1 * * (Europe/Berlin)")));
    assert_eq!(f["next"], fired["next_fire"]);
    assert!(f["last"].as_str().unwrap().ends_with(&format!("run {}", run["id"].as_str().unwrap())), "{f}");
    assert_eq!((n["last"].as_str(), n["next"].as_str()), (Some("not yet"), never["next_fire"].as_str()), "{n}");
}

#[test]
fn past_the_per_actor_limit_a_run_waits_and_a_download_gets_429() {
    // Runs of about four seconds (2,000 rows at 2 ms), which end by themselves.
    let Some((_db, reports)) = slow_pg("peractor", 2_000) else { return };
    let s = Server::start(reports.path(), &["--max-runs-per-actor", "1"]);
    let (_, _, first) = s.post("/runs", r#"{"report": "slow", "format": "csv"}"#);
    let first = first["id"].as_str().unwrap().to_string();
    s.wait_run(&first, |r| r["status"] == "running");
    // The instance has room (8), the actor has not: the second waits, the download is refused.
    let (status, _, second) = s.post("/runs", r#"{"report": "slow", "format": "ndjson"}"#);
    assert_eq!((status, second["status"].as_str()), (202, Some("queued")), "{second}");
    let second = second["id"].as_str().unwrap().to_string();
    let (status, headers, body) = s.get("/reports/slow.json");
    assert_eq!(status, 429, "{}", String::from_utf8_lossy(&body));
    assert!(headers.get("retry-after").is_some());
    assert!(String::from_utf8_lossy(&body).contains("--max-runs-per-actor"));
    // It starts only once the first has ended.
    let started = s.wait_run(&second, |r| r["status"] != "queued");
    let ended = s.json(&format!("/runs/{first}")).1;
    assert_eq!(ended["status"], "succeeded", "the second started while the first ran: {ended}");
    assert_eq!(started["attempt"], 1, "{started}");
    assert_eq!(s.finished(&second)["status"], "succeeded");
}

/// The server's log lines until `pred` holds for them (the log is written as requests
/// end, a moment after the response).
fn log_until(s: &Server, pred: impl Fn(&[String]) -> bool) -> Vec<String> {
    let until = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let lines = s.log.lock().unwrap().clone();
        if pred(&lines) || std::time::Instant::now() > until {
            return lines;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn every_request_and_run_is_logged_without_its_query_and_rust_log_quiets_it() {
    let demo = demo(300);
    let s = Server::start(&demo.join("reports"), &[]);
    let (status, headers, body) = s.get("/reports/invoice_export.csv?status=paid&status=void");
    assert_eq!(status, 200);
    let run = headers["x-ream-run"].to_str().unwrap().to_string();
    let rows = csv::Reader::from_reader(&body[..]).records().count();
    assert_eq!(s.get("/reports/no_such_report.csv").0, 404);
    let done = format!("run {run} succeeded: {rows} rows");
    let lines = log_until(&s, |l| l.iter().any(|l| l.contains(&done)) && l.iter().any(|l| l.contains("404")));
    let has = |what: &str| lines.iter().any(|l| l.contains(what));
    assert!(has(&format!("ream::runs: run {run} started: report invoice_export for anonymous")), "{lines:#?}");
    assert!(has(&done), "{lines:#?}");
    assert!(has(&format!("ream::access: GET /reports/invoice_export.csv 200 run={run} head_ms=")), "{lines:#?}");
    assert!(has("ream::access: GET /reports/no_such_report.csv 404 run=-"), "{lines:#?}");
    assert!(!has("status=paid"), "a query string reached the log: {lines:#?}");
    // RUST_LOG decides: warnings only, and no access lines.
    let quiet = Server::start_env(&demo.join("reports"), &[], &[("RUST_LOG", "warn")]);
    assert_eq!(quiet.get("/reports/invoice_export.csv").0, 200);
    assert_eq!(quiet.get("/healthz").0, 200);
    std::thread::sleep(Duration::from_millis(300));
    let lines = quiet.log.lock().unwrap().clone();
    assert!(lines.iter().all(|l| !l.contains("ream::access") && !l.contains("ream::runs")), "{lines:#?}");
}

#[test]
fn readyz_asks_each_database_a_trivial_query_so_a_broken_report_is_not_an_outage() {
    let demo = demo(50);
    let reports = tempfile::tempdir().unwrap();
    let db = demo.join("demo.sqlite");
    // Its SQL fails, but its database answers: ready.
    let broken = format!(
        "report: broken\nsource:\n  url: \"sqlite:{}\"\n  table: invoices\n  where: \"no_such_column = 1\"\n",
        db.display()
    );
    write(reports.path(), "broken.yaml", &broken);
    let s = Server::start(reports.path(), &[]);
    let (status, ready) = s.json("/readyz");
    assert_eq!((status, ready["status"].as_str()), (200, Some("ready")), "{ready}");
    assert_eq!(ready["sources"][0]["ok"], true, "{ready}");
    // The report itself fails, as a report.
    let (status, _, body) = s.get("/reports/broken.csv");
    assert!(status >= 400, "{}", String::from_utf8_lossy(&body));
    // A database that is not there: unavailable, with the driver's reason.
    write(reports.path(), "away.yaml", "report: away\nsource:\n  url: \"postgres://ream@127.0.0.1:1/x\"\n  table: t\n");
    let s = Server::start(reports.path(), &[]);
    let (status, ready) = s.json("/readyz");
    assert_eq!((status, ready["status"].as_str()), (503, Some("unavailable")), "{ready}");
    let sources = ready["sources"].as_array().unwrap();
    let away = sources.iter().find(|c| c["report"] == "away").unwrap();
    assert_eq!(away["ok"], false, "{ready}");
    assert!(away["error"].as_str().unwrap().to_lowercase().contains("refused"), "{ready}");
    assert_eq!(sources.iter().find(|c| c["report"] == "broken").unwrap()["ok"], true, "{ready}");
}
