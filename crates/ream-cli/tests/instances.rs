//! `ream serve` as a service of several instances and restarts: runs live in the control
//! store (embedded SQLite by default, PostgreSQL shared by instances), outputs in the
//! output store (a directory, or SeaweedFS as a real S3 server), and any instance answers
//! for every run.

mod common;
use common::pg::PgDb;
use common::server::Server;
use common::*;

use std::time::{Duration, Instant};

use serde_json::Value as Json;

/// SIGTERM the server and wait for it to exit 0.
fn stop(s: &mut Server) {
    let pid = s.child.id().to_string();
    assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let t = Instant::now();
    let status = loop {
        if let Some(status) = s.child.try_wait().unwrap() {
            break status;
        }
        assert!(t.elapsed() < Duration::from_secs(60), "the server did not stop");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(0), "the server did not exit cleanly: {status}");
}

/// Whether `run` (as GET /runs/{id} shows it) runs on `s`: its instance name carries the
/// process id.
fn runs_on(s: &Server, run: &Json) -> bool {
    run["instance"].as_str().is_some_and(|i| i.contains(&format!("-{}-", s.child.id())))
}

/// Of two instances, the one running `run`, then the other.
fn owner_first<'a>(a: &'a mut Server, b: &'a mut Server, run: &Json) -> (&'a mut Server, &'a mut Server) {
    assert!(runs_on(a, run) || runs_on(b, run), "neither instance runs it: {run}");
    if runs_on(a, run) {
        (a, b)
    } else {
        (b, a)
    }
}

fn post_run(s: &Server, body: &str) -> String {
    let (status, _, run) = s.post("/runs", body);
    assert_eq!(status, 202, "{run}");
    run["id"].as_str().unwrap().to_string()
}

#[test]
fn a_restart_of_one_instance_keeps_its_runs_and_their_downloads() {
    let demo = demo(2_000);
    let data = tempfile::tempdir().unwrap();
    let reports = demo.join("reports");
    let args = [
        "--listen",
        "127.0.0.1:0",
        "--reports",
        reports.to_str().unwrap(),
        "--data-dir",
        data.path().to_str().unwrap(),
    ];
    let mut s = Server::start_args(&args, &[]);
    let id = post_run(&s, r#"{"report": "invoice_export", "format": "csv", "parameters": {"status": ["paid"]}}"#);
    let before = s.finished(&id);
    assert_eq!(before["status"], "succeeded", "{before}");
    let (status, _, first) = s.get(&format!("/runs/{id}/output"));
    assert_eq!(status, 200);
    stop(&mut s);

    let s = Server::start_args(&args, &[]);
    let (status, after) = s.json(&format!("/runs/{id}"));
    assert_eq!(status, 200, "{after}");
    assert_eq!((after["status"].clone(), after["rows"].clone()), (before["status"].clone(), before["rows"].clone()));
    let (_, list) = s.json("/runs");
    assert!(list["runs"].as_array().unwrap().iter().any(|r| r["id"] == id.as_str()), "{list}");
    let (status, _, again) = s.get(&format!("/runs/{id}/output"));
    assert_eq!(status, 200);
    assert_eq!(again, first, "the output changed across the restart");
    let (status, headers, part) = s.get_with(&format!("/runs/{id}/output"), &[("range", "bytes=5-24")]);
    assert_eq!(status, 206);
    assert_eq!(part, first[5..25]);
    assert_eq!(headers.get("content-range").unwrap().to_str().unwrap(), format!("bytes 5-24/{}", first.len()));
}

/// Two instances on one PostgreSQL control database and one output directory, with
/// leases of `lease` seconds.
fn pair(reports: &std::path::Path, control: &str, outputs: &std::path::Path, lease: &str) -> (Server, Server) {
    Server::pair(reports, control, outputs, lease, &[])
}

#[test]
fn a_run_posted_on_one_instance_is_read_followed_downloaded_and_cancelled_through_another() {
    let Some((db, reports)) = pg_report("pair", 3_000, "slow", 20, "pg_sleep(0.002)::text") else { return };
    let Some(control) = PgDb::create("pair_control") else { return };
    let outputs = tempfile::tempdir().unwrap();
    let (mut a, mut b) = pair(reports.path(), &control.url, outputs.path(), "15");

    // A run to completion, posted on A, queued, claimed by one instance (A, woken at
    // once, as a rule) and seen through the other, B here.
    let (status, _, small) = a.post("/runs", r#"{"report": "slow", "format": "csv"}"#);
    assert_eq!(status, 202, "{small}");
    assert_eq!((small["status"].as_str(), small["queue_position"].as_u64()), (Some("queued"), Some(1)), "{small}");
    let small_id = small["id"].as_str().unwrap();
    let running = b.wait_run(small_id, |r| r["rows"].as_u64().unwrap_or(0) > 0);
    assert_eq!(running["attempt"], 1);
    let (a, b) = owner_first(&mut a, &mut b, &running);
    // B follows it to its end.
    let r = b.agent.get(b.url(&format!("/runs/{small_id}/events"))).call().unwrap();
    let mut body = r.into_body();
    let text = body.read_to_string().unwrap();
    assert!(text.contains("event: progress") && text.contains("event: end"), "{text}");
    let end: Json = serde_json::from_str(text.rsplit("data: ").next().unwrap().trim()).unwrap();
    assert_eq!(end["status"], "succeeded", "{end}");
    assert_eq!(end["rows"], 3_000);
    let (status, _, via_b) = b.get(&format!("/runs/{small_id}/output"));
    let (_, _, via_a) = a.get(&format!("/runs/{small_id}/output"));
    assert_eq!(status, 200);
    assert_eq!(via_b, via_a);
    assert_eq!(via_b.iter().filter(|&&c| c == b'\n').count(), 3_001);
    let (_, listed) = b.json("/runs");
    assert!(listed["runs"].as_array().unwrap().iter().any(|r| r["id"] == small_id), "{listed}");

    // A long run on A, cancelled through B: A stops its PostgreSQL query within a second.
    db.exec("INSERT INTO t SELECT generate_series(3001, 100000)");
    let id = post_run(a, r#"{"report": "slow", "format": "csv"}"#);
    wait_pg(&db, true);
    let run = a.wait_run(&id, |r| r["status"] == "running");
    let (a, b) = owner_first(a, b, &run);
    let (status, cancelled) = b.delete(&format!("/runs/{id}"));
    assert_eq!(status, 202, "{cancelled}");
    let stopped = wait_pg(&db, false);
    assert!(stopped < Duration::from_secs(1), "A's query ran {stopped:?} after B's cancel");
    let end = b.finished(&id);
    assert_eq!(end["status"], "cancelled", "{end}");
    let (status, _, _) = b.get(&format!("/runs/{id}/output"));
    assert_eq!(status, 409);
    // Both stop cleanly, their PostgreSQL pools closed off the async workers.
    stop(a);
    stop(b);
}

#[test]
fn a_run_whose_instance_is_killed_completes_on_the_other_as_attempt_2_byte_for_byte() {
    let Some((_db, reports)) = pg_report("takeover", 1_000_000, "big", 1000, "'x'") else { return };
    let Some(control) = PgDb::create("takeover_control") else { return };
    let outputs = tempfile::tempdir().unwrap();
    let (mut a, mut b) = pair(reports.path(), &control.url, outputs.path(), "2");
    let id = post_run(&a, r#"{"report": "big", "format": "csv"}"#);
    let first = b.wait_run(&id, |r| {
        r["rows"].as_u64().unwrap_or(0) > 0 || !matches!(r["status"].as_str(), Some("queued" | "preparing"))
    });
    assert_eq!(first["status"], "running", "the run ended before it could be killed: {first}");
    let (a, b) = owner_first(&mut a, &mut b, &first);
    let a_name = first["instance"].clone();
    a.child.kill().unwrap();
    a.child.wait().unwrap();
    let end = b.finished(&id);
    assert_eq!(end["status"], "succeeded", "{end}");
    assert_eq!(end["attempt"], 2, "{end}");
    assert_ne!(end["instance"], a_name, "{end}");
    assert_eq!(end["rows"], 1_000_000);
    let (status, _, stored) = b.get(&format!("/runs/{id}/output"));
    assert_eq!(status, 200);
    let cli =
        ream().args(["run", reports.path().join("big.yaml").to_str().unwrap(), "--format", "csv"]).output().unwrap();
    assert!(cli.status.success());
    assert!(
        stored == cli.stdout,
        "the output of attempt 2 differs from the CLI's ({} and {} bytes)",
        stored.len(),
        cli.stdout.len()
    );
}

#[test]
fn outputs_stream_to_s3_and_a_cancel_mid_upload_leaves_no_incomplete_upload() {
    let Some(s3) = ream_testkit::s3() else { return };
    let Some((db, reports)) = pg_report("s3", 100_000, "wide", 500, "repeat('x', 200)") else { return };
    // The same rows, slowly (0.2 ms each): still uploading seconds after its first part.
    let wide = std::fs::read_to_string(reports.path().join("wide.yaml")).unwrap();
    let slow = wide
        .replace("report: wide", "report: slowwide")
        .replace("repeat('x', 200)", "repeat('x', 200) || pg_sleep(0.0002)::text");
    write(reports.path(), "slowwide.yaml", &slow);
    let url = s3.url("serve");
    let prefix = url.trim_start_matches(&format!("s3://{}/", s3.bucket)).to_string();
    let env: Vec<(&str, String)> = s3.env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let args = [
        "--listen",
        "127.0.0.1:0",
        "--reports",
        reports.path().to_str().unwrap(),
        "--output-store",
        &url,
        "--s3-endpoint",
        &s3.endpoint,
    ];
    let s = Server::start_args(&args, &env);
    // A whole output: several 5 MiB parts, and what comes back is the CLI's.
    let id = post_run(&s, r#"{"report": "wide", "format": "csv"}"#);
    let end = s.finished(&id);
    assert_eq!(end["status"], "succeeded", "{end}");
    let (status, _, stored) = s.get(&format!("/runs/{id}/output"));
    assert_eq!(status, 200);
    assert!(stored.len() > 3 * (5 << 20), "{} bytes: not several parts", stored.len());
    let cli =
        ream().args(["run", reports.path().join("wide.yaml").to_str().unwrap(), "--format", "csv"]).output().unwrap();
    assert!(cli.status.success());
    assert_eq!(stored, cli.stdout, "the stored output differs from the CLI's");

    // Cancelled once its upload has parts: nothing is left, no incomplete upload either.
    let id = post_run(&s, r#"{"report": "slowwide", "format": "csv"}"#);
    let t = Instant::now();
    while s3.incomplete_uploads(&prefix).is_empty() {
        assert!(t.elapsed() < Duration::from_secs(60), "the upload never started");
        std::thread::sleep(Duration::from_millis(50));
    }
    let (status, _) = s.delete(&format!("/runs/{id}"));
    assert_eq!(status, 202);
    assert_eq!(s.finished(&id)["status"], "cancelled");
    assert_eq!(s3.incomplete_uploads(&prefix), Vec::<String>::new());
    drop(db);
}

#[test]
fn a_control_or_output_store_url_of_another_kind_exits_2_naming_it_without_its_password() {
    let demo = demo(10);
    let reports = demo.join("reports");
    for (flag, url) in [("--control", "mysql://u:hunter2@h/db"), ("--output-store", "ftp://u:hunter2@h/x")] {
        let out = ream()
            .args(["serve", "--listen", "127.0.0.1:0", "--reports", reports.to_str().unwrap(), flag, url])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(err.contains("u:***@h") && !err.contains("hunter2"), "{err}");
    }
}

/// A server of `reports` with `[auth]` (an HS256 secret) and `extra` flags, and a token
/// for each of `actors`.
fn with_actors(reports: &std::path::Path, extra: &[&str], actors: &[&str]) -> (Server, tempfile::TempDir, Vec<String>) {
    const SECRET: &str = "a shared secret of more than thirty-two bytes";
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("hs.secret"), SECRET).unwrap();
    let config = write(dir.path(), "ream.toml", "[auth]\n[auth.jwt]\nhs256_secret_file = \"hs.secret\"\n");
    let mut args = vec!["--listen", "127.0.0.1:0", "--reports", reports.to_str().unwrap()];
    args.extend_from_slice(&["--config", config.to_str().unwrap()]);
    args.extend_from_slice(extra);
    let s = Server::start_args(&args, &[]);
    let exp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() + 3600;
    let key = jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes());
    let header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    let tokens = (actors.iter())
        .map(|sub| jsonwebtoken::encode(&header, &serde_json::json!({ "sub": sub, "exp": exp }), &key).unwrap())
        .collect();
    (s, dir, tokens)
}

#[test]
fn one_actors_backlog_does_not_hold_up_another_actors_run() {
    // Each run reads 2,000 rows at half a millisecond each: about a second.
    let Some((_db, reports)) = pg_report("fair", 2_000, "slow", 100, "pg_sleep(0.0005)::text") else { return };
    let (mut s, _dir, tokens) = with_actors(reports.path(), &["--max-runs", "1"], &["alice", "bob"]);
    s.token = Some(tokens[0].clone());
    // Ten different runs (split at different sizes): identical ones would be one run.
    let alice: Vec<Json> = (0..10)
        .map(|i| {
            let body = format!(r#"{{"report": "slow", "format": "csv", "split": {{"rows": {}}}}}"#, 1000 + i);
            let (status, _, run) = s.post("/runs", &body);
            assert_eq!(status, 202, "{run}");
            run
        })
        .collect();
    // One place: the rest wait, in order.
    let last = &alice[9];
    assert_eq!(last["status"], "queued", "{last}");
    assert!(last["queue_position"].as_u64().unwrap() >= 8, "{last}");
    s.token = Some(tokens[1].clone());
    let bob = post_run(&s, r#"{"report": "slow", "format": "csv"}"#);
    let done = s.finished(&bob);
    assert_eq!((done["status"].as_str(), done["rows"].as_u64()), (Some("succeeded"), Some(2_000)), "{done}");
    s.token = Some(tokens[0].clone());
    let waiting: Vec<Json> = (alice.iter())
        .map(|r| s.json(&format!("/runs/{}", r["id"].as_str().unwrap())).1)
        .filter(|r| r["status"] == "queued")
        .collect();
    assert!(waiting.len() >= 5, "Bob's run waited for Alice's backlog: {} of hers still queued", waiting.len());
    // Bob sees only his own run; Alice only hers.
    let (_, listed) = s.json("/runs");
    assert!(listed["runs"].as_array().unwrap().iter().all(|r| r["actor"] == "alice"), "{listed}");
    for run in &alice {
        let id = run["id"].as_str().unwrap();
        s.delete(&format!("/runs/{id}"));
    }
}

#[test]
fn on_sigterm_an_instance_hands_its_async_runs_back_and_a_restart_completes_them() {
    let Some((_db, reports)) = pg_report("handback", 200_000, "big", 1000, "'x'") else { return };
    let data = tempfile::tempdir().unwrap();
    let args = [
        "--listen",
        "127.0.0.1:0",
        "--reports",
        reports.path().to_str().unwrap(),
        "--data-dir",
        data.path().to_str().unwrap(),
        "--max-runs",
        "1",
        "--grace-secs",
        "0",
    ];
    let mut s = Server::start_args(&args, &[]);
    let first = post_run(&s, r#"{"report": "big", "format": "csv"}"#);
    let second = post_run(&s, r#"{"report": "big", "format": "ndjson"}"#);
    s.wait_run(&first, |r| r["rows"].as_u64().unwrap_or(0) > 0);
    stop(&mut s);
    // Neither was lost or left running: both wait for the next instance.
    let s = Server::start_args(&args, &[]);
    for (id, format) in [(&first, "csv"), (&second, "ndjson")] {
        let end = s.finished(id);
        assert_eq!((end["status"].as_str(), end["rows"].as_u64()), (Some("succeeded"), Some(200_000)), "{end}");
        let (status, _, stored) = s.get(&format!("/runs/{id}/output"));
        assert_eq!(status, 200);
        let cli = ream()
            .args(["run", reports.path().join("big.yaml").to_str().unwrap(), "--format", format])
            .output()
            .unwrap();
        assert!(stored == cli.stdout, "run {id}: the output differs from the CLI's");
    }
    assert_eq!(s.finished(&first)["attempt"], 2, "the first had started: this was its second attempt");
    assert_eq!(s.finished(&second)["attempt"], 1, "the second never started before");
}

/// The value of metric line `name` (with its labels), 0 if absent.
fn metric(s: &Server, name: &str) -> f64 {
    let (_, _, text) = s.get("/metrics");
    let text = String::from_utf8(text).unwrap();
    let line = text.lines().find(|l| l.split(' ').next() == Some(name));
    line.and_then(|l| l.rsplit(' ').next()).map_or(0.0, |v| v.parse().unwrap())
}

#[test]
fn ten_identical_downloads_at_once_run_one_query_and_get_the_same_bytes() {
    // About a second of reading: every request arrives while the first is going.
    let Some((_db, reports)) = pg_report("flight", 2_000, "slow", 100, "pg_sleep(0.0005)::text") else { return };
    let s = Server::start(reports.path(), &[]);
    const QUERIES: &str = "ream_source_queries_total{report=\"slow\"}";
    let before = metric(&s, QUERIES);
    let barrier = std::sync::Barrier::new(10);
    let bodies: Vec<(u16, Vec<u8>)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..10)
            .map(|_| {
                scope.spawn(|| {
                    barrier.wait();
                    let (status, _, body) = s.get("/reports/slow.csv");
                    (status, body)
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    assert_eq!(metric(&s, QUERIES) - before, 1.0, "ten identical requests ran more than one query");
    let cli =
        ream().args(["run", reports.path().join("slow.yaml").to_str().unwrap(), "--format", "csv"]).output().unwrap();
    for (status, body) in &bodies {
        assert_eq!(*status, 200);
        assert!(*body == cli.stdout, "a joined body differs from the CLI's ({} bytes)", body.len());
    }
    // A download identical to an async run going joins its stream: no query of its own.
    let before = metric(&s, QUERIES);
    let id = post_run(&s, r#"{"report": "slow", "format": "csv"}"#);
    // Running: its flight is open (it is opened as the claimed run registers).
    s.wait_run(&id, |r| r["status"] == "running");
    let (status, headers, joined) = s.get("/reports/slow.csv");
    assert_eq!(status, 200);
    assert_eq!(headers.get("x-ream-run").unwrap().to_str().unwrap(), id, "the download did not join the run");
    assert_eq!(s.finished(&id)["status"], "succeeded");
    let (_, _, stored) = s.get(&format!("/runs/{id}/output"));
    assert!(joined == stored && stored == cli.stdout, "the joined download differs from the stored output");
    assert_eq!(metric(&s, QUERIES) - before, 1.0);
    // A double-click: the same actor's identical POST while the first is going is the
    // first run, not a second query.
    let before = metric(&s, QUERIES);
    let first = post_run(&s, r#"{"report": "slow", "format": "json"}"#);
    let again = post_run(&s, r#"{"report": "slow", "format": "json"}"#);
    assert_eq!(again, first);
    assert_eq!(s.finished(&first)["status"], "succeeded");
    let third = post_run(&s, r#"{"report": "slow", "format": "json"}"#);
    assert_ne!(third, first, "a finished run was joined");
    s.finished(&third);
    assert_eq!(metric(&s, QUERIES) - before, 2.0);
    // Another format is another query.
    let (status, _, _) = s.get("/reports/slow.ndjson");
    assert_eq!(status, 200);
    assert_eq!(metric(&s, QUERIES) - before, 3.0);
}

/// `(status, X-Ream-Cache, body)` of a GET with `headers`.
fn cached_get(s: &Server, path: &str, headers: &[(&str, &str)]) -> (u16, Option<String>, Vec<u8>) {
    let (status, h, body) = s.get_with(path, headers);
    (status, h.get("x-ream-cache").map(|v| v.to_str().unwrap().to_string()), body)
}

#[test]
fn a_cached_repeat_runs_no_query_and_no_cache_runs_it_again() {
    let Some((_db, reports)) = pg_report("cache", 2_000, "cached", 100, "'x'") else { return };
    let spec = reports.path().join("cached.yaml");
    let text = std::fs::read_to_string(&spec).unwrap();
    std::fs::write(&spec, format!("{text}cache:\n  ttl: 10m\n")).unwrap();
    let s = Server::start(reports.path(), &[]);
    const QUERIES: &str = "ream_source_queries_total{report=\"cached\"}";
    let (status, cache, first) = cached_get(&s, "/reports/cached.csv", &[]);
    assert_eq!((status, cache.as_deref()), (200, Some("miss")));
    assert_eq!(metric(&s, QUERIES), 1.0);
    let (status, cache, again) = cached_get(&s, "/reports/cached.csv", &[]);
    assert_eq!((status, cache.as_deref()), (200, Some("hit")));
    assert!(again == first, "the cached output differs from the first");
    assert_eq!(metric(&s, QUERIES), 1.0, "a cache hit ran a query");
    assert_eq!(metric(&s, "ream_cache_hits_total{report=\"cached\"}"), 1.0);
    // `Cache-Control: no-cache` runs it; another encoding or format is another entry.
    let (_, cache, fresh) = cached_get(&s, "/reports/cached.csv", &[("cache-control", "no-cache")]);
    assert_eq!(cache.as_deref(), Some("miss"));
    assert!(fresh == first);
    assert_eq!(metric(&s, QUERIES), 2.0);
    let (_, cache, gz) = cached_get(&s, "/reports/cached.csv", &[("accept-encoding", "gzip")]);
    assert_eq!(cache.as_deref(), Some("miss"));
    assert_eq!(decompress("gzip", &gz), first);
    let (_, cache, gz_again) = cached_get(&s, "/reports/cached.csv", &[("accept-encoding", "gzip")]);
    assert_eq!((cache.as_deref(), gz_again == gz), (Some("hit"), true));
    assert_eq!(metric(&s, QUERIES), 3.0);
    // A report without `cache` says nothing of it.
    write(reports.path(), "plain.yaml", &text.replace("report: cached", "report: plain"));
    std::thread::sleep(std::time::Duration::from_secs(3));
    let (status, cache, _) = cached_get(&s, "/reports/plain.csv", &[]);
    assert_eq!((status, cache), (200, None));
}

#[test]
fn one_tenant_never_receives_another_tenants_cached_output() {
    let Some((db, reports)) = pg_report("tenants", 1_000, "unused", 100, "'x'") else { return };
    db.exec("ALTER TABLE t ADD COLUMN tenant int; UPDATE t SET tenant = 1 + id % 2;");
    write(
        reports.path(),
        "mine.yaml",
        &format!(
            "report: mine\nsource:\n  url: \"{}\"\n  table: t\n  key: [id]\n  where: \"tenant = :actor.tenant\"\n  \
             columns:\n    id: id\n    tenant: tenant\ncache:\n  ttl: 10m\n",
            db.url
        ),
    );
    std::fs::remove_file(reports.path().join("unused.yaml")).unwrap();
    let (s, _dir, _) = with_actors(reports.path(), &[], &[]);
    const SECRET: &str = "a shared secret of more than thirty-two bytes";
    let exp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() + 3600;
    let token = |sub: &str, tenant: u32| {
        let claims = serde_json::json!({ "sub": sub, "tenant": tenant, "exp": exp });
        let header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
        format!(
            "Bearer {}",
            jsonwebtoken::encode(&header, &claims, &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes())).unwrap()
        )
    };
    let (one, two, also_one) = (token("ann", 1), token("bo", 2), token("cy", 1));
    const QUERIES: &str = "ream_source_queries_total{report=\"mine\"}";
    let metric_as = |t: &str| {
        let (_, _, text) = s.get_with("/metrics", &[("authorization", t)]);
        let text = String::from_utf8(text).unwrap();
        let line = text.lines().find(|l| l.split(' ').next() == Some(QUERIES)).map(str::to_string);
        line.and_then(|l| l.rsplit(' ').next().map(|v| v.parse::<f64>().unwrap())).unwrap_or(0.0)
    };
    let (status, cache, first) = cached_get(&s, "/reports/mine.csv", &[("authorization", &one)]);
    assert_eq!((status, cache.as_deref()), (200, Some("miss")), "{}", String::from_utf8_lossy(&first));
    // Right after tenant 1's, tenant 2's identical request still queries, and gets its rows.
    let (_, cache, second) = cached_get(&s, "/reports/mine.csv", &[("authorization", &two)]);
    assert_eq!(cache.as_deref(), Some("miss"));
    assert_eq!(metric_as(&one), 2.0);
    let tenants = |body: &[u8]| -> std::collections::BTreeSet<String> {
        let mut r = csv::Reader::from_reader(body);
        r.records().map(|rec| rec.unwrap()[1].to_string()).collect()
    };
    assert_eq!(tenants(&first), ["1".to_string()].into());
    assert_eq!(tenants(&second), ["2".to_string()].into());
    // Another actor of tenant 1: the spec reads only the tenant, so the same output.
    let (_, cache, third) = cached_get(&s, "/reports/mine.csv", &[("authorization", &also_one)]);
    assert_eq!((cache.as_deref(), third == first), (Some("hit"), true));
    assert_eq!(metric_as(&one), 2.0);
}

#[test]
fn the_cache_keeps_a_report_within_its_bytes_the_oldest_going_first() {
    let Some((db, reports)) = pg_report("cachebytes", 2_000, "sized", 100, "'x'") else { return };
    let spec = reports.path().join("sized.yaml");
    let text = std::fs::read_to_string(&spec).unwrap();
    let with_param = text.replace("  table: t\n", "  table: t\n  where: \"id >= :from\"\n")
        + "parameters:\n  from: {type: int, default: 1}\n";
    std::fs::write(&spec, &with_param).unwrap();
    let one = ream().args(["run", spec.to_str().unwrap(), "--format", "csv"]).output().unwrap();
    assert!(one.status.success(), "{}", String::from_utf8_lossy(&one.stderr));
    // Room for one output of about this size, not two.
    let room = one.stdout.len() * 3 / 2;
    std::fs::write(&spec, format!("{with_param}cache:\n  ttl: 10m\n  max_bytes: \"{room}\"\n")).unwrap();
    let s = Server::start(reports.path(), &[]);
    let get = |from: u32| cached_get(&s, &format!("/reports/sized.csv?from={from}"), &[]).1.unwrap();
    assert_eq!(get(1), "miss");
    assert_eq!(get(1), "hit");
    assert_eq!(get(2), "miss");
    // from=1 was the oldest: it made room for from=2.
    assert_eq!(get(2), "hit");
    assert_eq!(get(1), "miss");
    drop(db);
}
