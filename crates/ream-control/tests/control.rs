//! The control store on both of its databases: an embedded SQLite file and a PostgreSQL
//! database of the test's own (ream-testkit).

use std::time::Duration;

use ream_control::{ClaimLimits, Control, NewRun, OutputRecord, RunStatus, RunUpdate};
use serde_json::json;

/// Run `check` against a fresh SQLite store, then a fresh PostgreSQL one.
fn on_both(check: impl Fn(&dyn Fn() -> Control)) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    check(&|| Control::open(None, &path).unwrap());
    if let Some(pg) = ream_testkit::PgDatabase::create("control") {
        check(&|| Control::open(Some(&pg.url), std::path::Path::new("/nonexistent")).unwrap());
    }
}

fn add(c: &Control, id: &str, actor: &str, mode: &str, instance: Option<&str>) {
    let status = if instance.is_some() { RunStatus::Running } else { RunStatus::Queued };
    c.insert_run(&NewRun {
        id,
        report: "sales",
        format: "csv",
        mode,
        actor,
        request: &json!({ "parameters": { "region": "EU" } }),
        flight_key: None,
        source_key: "src",
        status,
        instance,
        lease: Duration::from_secs(15),
        snapshot: &json!({ "id": id, "status": status }),
    })
    .unwrap();
    // Distinct creation times: the queue is ordered by them.
    std::thread::sleep(Duration::from_millis(3));
}

const WIDE: ClaimLimits = ClaimLimits { per_actor: 100, per_source: 100 };

#[test]
fn a_run_and_its_progress_outlive_a_reopen_of_the_store() {
    on_both(|open| {
        let c = open();
        add(&c, "r1", "alice", "async", Some("A"));
        let snapshot = json!({ "id": "r1", "rows": 500 });
        let update = RunUpdate {
            status: RunStatus::Succeeded,
            snapshot: &snapshot,
            error_public: None,
            output: Some(("r1.csv", 1234)),
        };
        assert!(c.update_run("r1", "A", 1, &update).unwrap());
        drop(c);
        let c = open();
        let run = c.get_run("r1").unwrap().unwrap();
        assert_eq!(run.status, RunStatus::Succeeded);
        assert_eq!(run.snapshot["rows"], 500);
        assert_eq!(run.output, Some(("r1.csv".to_string(), 1234)));
        assert_eq!(run.request["parameters"]["region"], "EU");
        assert!(run.finished_ms.is_some());
        // A second outcome is refused: a finished run stays as it ended.
        assert!(!c.update_run("r1", "A", 1, &update).unwrap());
    });
}

#[test]
fn an_instance_that_lost_a_run_cannot_write_to_it() {
    on_both(|open| {
        let c = open();
        add(&c, "r1", "alice", "async", Some("A"));
        let snapshot = json!({});
        let update = RunUpdate { status: RunStatus::Running, snapshot: &snapshot, error_public: None, output: None };
        assert!(!c.update_run("r1", "B", 1, &update).unwrap(), "another instance wrote the run");
        assert!(!c.update_run("r1", "A", 2, &update).unwrap(), "a stale attempt wrote the run");
        assert!(c.update_run("r1", "A", 1, &update).unwrap());
    });
}

#[test]
fn another_actors_first_run_is_claimed_before_a_backlog_drains() {
    on_both(|open| {
        let c = open();
        for i in 0..5 {
            add(&c, &format!("a{i}"), "alice", "async", None);
        }
        add(&c, "b0", "bob", "async", None);
        assert_eq!(c.queue_depth().unwrap(), 6);
        assert_eq!(c.queue_position("a0").unwrap(), Some(1));
        assert_eq!(c.queue_position("b0").unwrap(), Some(6));
        let first = c.claim("A", Duration::from_secs(15), WIDE).unwrap().unwrap();
        assert_eq!((first.id.as_str(), first.attempt, first.instance.as_deref()), ("a0", 1, Some("A")));
        // Alice has a run going and Bob none: Bob's goes next, though it is newest.
        let second = c.claim("A", Duration::from_secs(15), WIDE).unwrap().unwrap();
        assert_eq!(second.id, "b0");
        // Per-actor limit of 1: Alice has one running, Bob's is done queueing: nothing.
        let one = ClaimLimits { per_actor: 1, per_source: 100 };
        assert!(c.claim("A", Duration::from_secs(15), one).unwrap().is_none());
        // Per-source limit of 2 is reached too.
        let src = ClaimLimits { per_actor: 100, per_source: 2 };
        assert!(c.claim("A", Duration::from_secs(15), src).unwrap().is_none());
        assert_eq!(c.claim("B", Duration::from_secs(15), WIDE).unwrap().unwrap().id, "a1");
        assert_eq!(c.queue_depth().unwrap(), 3);
    });
}

fn finish(c: &Control, id: &str, instance: &str) {
    let update = RunUpdate { status: RunStatus::Succeeded, snapshot: &json!({}), error_public: None, output: None };
    assert!(c.update_run(id, instance, 1, &update).unwrap());
}

#[test]
fn actors_take_turns_even_when_each_run_ends_before_the_next_claim() {
    on_both(|open| {
        let c = open();
        for i in 0..3 {
            add(&c, &format!("a{i}"), "alice", "async", None);
        }
        add(&c, "b0", "bob", "async", None);
        let lease = Duration::from_secs(15);
        let order: Vec<String> = (0..4)
            .map(|_| {
                let run = c.claim("A", lease, WIDE).unwrap().unwrap();
                finish(&c, &run.id, "A");
                run.id
            })
            .collect();
        // Nobody is active at any claim: Alice was served since a1 was queued, Bob not.
        assert_eq!(order, ["a0", "b0", "a1", "a2"]);
    });
}

#[test]
fn a_download_is_recorded_only_under_its_actors_and_sources_limits() {
    on_both(|open| {
        let c = open();
        add(&c, "r1", "alice", "async", Some("A"));
        let empty = json!({});
        let run = |id: &'static str, actor: &'static str| NewRun {
            id,
            report: "sales",
            format: "csv",
            mode: "sync",
            actor,
            request: &empty,
            flight_key: None,
            source_key: "src",
            status: RunStatus::Preparing,
            instance: Some("A"),
            lease: Duration::from_secs(15),
            snapshot: &empty,
        };
        let one = ClaimLimits { per_actor: 1, per_source: 100 };
        assert!(!c.insert_run_within(&run("s1", "alice"), one).unwrap(), "alice's second run was recorded");
        assert!(c.get_run("s1").unwrap().is_none());
        assert!(c.insert_run_within(&run("s2", "bob"), one).unwrap());
        let two = ClaimLimits { per_actor: 100, per_source: 2 };
        assert!(!c.insert_run_within(&run("s3", "carol"), two).unwrap(), "the source's third run was recorded");
        let got = c.get_run("s2").unwrap().unwrap();
        assert_eq!((got.status, got.attempt, got.instance.as_deref()), (RunStatus::Preparing, 1, Some("A")));
    });
}

#[test]
fn a_run_handed_back_is_queued_again_and_claimed_by_another_instance() {
    on_both(|open| {
        let c = open();
        add(&c, "q1", "alice", "async", None);
        add(&c, "q2", "alice", "async", None);
        add(&c, "s1", "alice", "sync", Some("A"));
        let lease = Duration::from_secs(15);
        assert_eq!(c.claim("A", lease, WIDE).unwrap().unwrap().id, "q1");
        assert_eq!(c.claim("A", lease, WIDE).unwrap().unwrap().id, "q2");
        let snapshot = json!({});
        let running = RunUpdate { status: RunStatus::Running, snapshot: &snapshot, error_public: None, output: None };
        assert!(c.update_run("q2", "A", 1, &running).unwrap());
        // A download has no queue to go back to; the async runs go back.
        assert_eq!(c.release("A", &["q1".into(), "s1".into()], false).unwrap(), 1);
        assert_eq!(c.release("A", &["q2".into()], true).unwrap(), 1);
        assert_eq!(c.queue_order().unwrap(), ["q1", "q2"]);
        // The one that had started keeps its attempt; the next claim is its second.
        let again = c.claim("B", lease, WIDE).unwrap().unwrap();
        assert_eq!((again.id.as_str(), again.attempt), ("q1", 1));
        let again = c.claim("B", lease, WIDE).unwrap().unwrap();
        assert_eq!((again.id.as_str(), again.attempt), ("q2", 2));
        assert!(!c.update_run("q2", "A", 1, &running).unwrap(), "the old instance still wrote the run");
    });
}

#[test]
fn instances_claiming_at_once_take_each_run_exactly_once() {
    on_both(|open| {
        let c = open();
        for i in 0..40 {
            c.insert_run(&NewRun {
                id: &format!("q{i:02}"),
                report: "sales",
                format: "csv",
                mode: "async",
                actor: &format!("actor{}", i % 4),
                request: &json!({}),
                flight_key: None,
                source_key: "",
                status: RunStatus::Queued,
                instance: None,
                lease: Duration::from_secs(15),
                snapshot: &json!({}),
            })
            .unwrap();
        }
        let claimed: Vec<String> = std::thread::scope(|s| {
            let workers: Vec<_> = (0..4)
                .map(|w| {
                    let c = open();
                    s.spawn(move || {
                        let mut mine = Vec::new();
                        while let Some(run) = c.claim(&format!("I{w}"), Duration::from_secs(15), WIDE).unwrap() {
                            mine.push(run.id);
                        }
                        mine
                    })
                })
                .collect();
            workers.into_iter().flat_map(|w| w.join().unwrap()).collect()
        });
        let mut sorted = claimed.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), claimed.len(), "a run was claimed twice");
        assert_eq!(sorted.len(), 40);
    });
}

#[test]
fn an_expired_lease_requeues_an_async_run_for_its_second_attempt_and_fails_a_sync_one() {
    on_both(|open| {
        let c = open();
        add(&c, "q", "alice", "async", None);
        let run = c.claim("A", Duration::from_millis(1), WIDE).unwrap().unwrap();
        assert_eq!(run.attempt, 1);
        c.set_upload("q", Some(r#"{"path":"q.csv","id":"u1"}"#)).unwrap();
        add(&c, "s", "alice", "sync", Some("A"));
        c.heartbeat("A", Duration::from_millis(1)).unwrap();
        std::thread::sleep(Duration::from_millis(20));
        let expired: Vec<String> = c.expire_leases().unwrap().into_iter().map(|r| r.id).collect();
        assert_eq!(expired.len(), 2, "{expired:?}");
        assert_eq!(c.get_run("s").unwrap().unwrap().status, RunStatus::Failed);
        let again = c.claim("B", Duration::from_secs(15), WIDE).unwrap().unwrap();
        assert_eq!((again.id.as_str(), again.attempt, again.instance.as_deref()), ("q", 2, Some("B")));
        // The partial upload of attempt 1 is still recorded, for B to abort.
        assert_eq!(again.upload.as_deref(), Some(r#"{"path":"q.csv","id":"u1"}"#));
        // A renewed lease does not expire.
        c.heartbeat("B", Duration::from_secs(15)).unwrap();
        assert!(c.expire_leases().unwrap().is_empty());
    });
}

#[test]
fn a_cancel_reaches_the_instance_holding_the_run_and_ends_a_queued_one_at_once() {
    on_both(|open| {
        let c = open();
        add(&c, "r", "alice", "async", Some("A"));
        add(&c, "q", "alice", "async", None);
        assert!(c.cancel_requests("A").unwrap().is_empty());
        c.request_cancel("r").unwrap();
        assert_eq!(c.cancel_requests("A").unwrap(), ["r"]);
        assert!(c.cancel_requests("B").unwrap().is_empty());
        let q = c.request_cancel("q").unwrap().unwrap();
        assert_eq!(q.status, RunStatus::Cancelled);
        assert!(c.request_cancel("nope").unwrap().is_none());
        // A cancelled queued run is never claimed.
        assert!(c.claim("A", Duration::from_secs(15), WIDE).unwrap().is_none());
    });
}

#[test]
fn a_shared_value_is_set_by_the_first_instance_and_read_by_the_rest() {
    on_both(|open| {
        let (a, b) = (open(), open());
        assert_eq!(a.shared_value("link_key", || "first".into()).unwrap(), "first");
        assert_eq!(b.shared_value("link_key", || "second".into()).unwrap(), "first");
    });
}

#[test]
fn outputs_are_listed_oldest_first_and_forgetting_one_clears_its_run() {
    on_both(|open| {
        let c = open();
        add(&c, "r1", "alice", "async", Some("A"));
        let snapshot = json!({});
        let done = RunUpdate {
            status: RunStatus::Succeeded,
            snapshot: &snapshot,
            error_public: None,
            output: Some(("r1.csv", 10)),
        };
        c.update_run("r1", "A", 1, &done).unwrap();
        for (name, at) in [("r1.csv", 200), ("r0.csv", 100)] {
            let o = OutputRecord {
                name: name.into(),
                run_id: "r1".into(),
                report: "sales".into(),
                bytes: 10,
                created_ms: at,
            };
            c.record_output(&o).unwrap();
        }
        let names: Vec<String> = c.outputs().unwrap().into_iter().map(|o| o.name).collect();
        assert_eq!(names, ["r0.csv", "r1.csv"]);
        c.forget_output("r1.csv").unwrap();
        assert_eq!(c.outputs().unwrap().len(), 1);
        assert_eq!(c.get_run("r1").unwrap().unwrap().output, None);
    });
}

#[test]
fn a_store_url_of_another_kind_is_refused_by_name_without_its_password() {
    let e = Control::open(Some("mysql://u:secret@h/db"), std::path::Path::new(".")).err().unwrap().to_string();
    assert!(e.contains("mysql://u:***@h/db") && !e.contains("secret"), "{e}");
    let e = Control::open(Some("postgres://u:secret@127.0.0.1:1/db"), std::path::Path::new(".")).err().unwrap();
    assert!(!e.to_string().contains("secret"), "{e}");
}

#[test]
fn an_identical_run_still_going_is_returned_instead_of_queued_twice() {
    on_both(|open| {
        let c = open();
        let (request, snapshot) = (json!({}), json!({}));
        let run = |id: &'static str| NewRun {
            id,
            report: "sales",
            format: "csv",
            mode: "async",
            actor: "alice",
            request: &request,
            flight_key: Some("k/alice"),
            source_key: "src",
            status: RunStatus::Queued,
            instance: None,
            lease: Duration::from_secs(15),
            snapshot: &snapshot,
        };
        assert_eq!(c.enqueue_unless_flying(&run("r1")).unwrap(), None);
        assert_eq!(c.enqueue_unless_flying(&run("r2")).unwrap(), Some("r1".to_string()));
        assert!(c.get_run("r2").unwrap().is_none());
        let claimed = c.claim("A", Duration::from_secs(15), WIDE).unwrap().unwrap();
        assert_eq!(c.enqueue_unless_flying(&run("r3")).unwrap(), Some("r1".to_string()), "joins a running one too");
        finish(&c, &claimed.id, "A");
        // Once it has ended, the same request is a new run.
        assert_eq!(c.enqueue_unless_flying(&run("r4")).unwrap(), None);
        assert_eq!(c.queue_order().unwrap(), ["r4"]);
    });
}

#[test]
fn the_cache_keeps_the_newest_outputs_within_each_reports_bytes_and_the_total() {
    on_both(|open| {
        use ream_control::{CacheBounds, CacheEntry};
        let c = open();
        let now = ream_control::now_ms();
        let entry = |key: &str, report: &str, bytes: u64, age: i64| CacheEntry {
            key: key.into(),
            report: report.into(),
            name: format!("cache/{key}"),
            bytes,
            created_ms: now - age,
            expires_ms: now - age + 600_000,
        };
        let bounds = CacheBounds { report: 250, total: 400 };
        assert_eq!(c.cache_put(&entry("a1", "a", 100, 30), bounds).unwrap(), Vec::<String>::new());
        assert_eq!(c.cache_put(&entry("b1", "b", 100, 20), bounds).unwrap(), Vec::<String>::new());
        assert_eq!(c.cache_put(&entry("a2", "a", 100, 10), bounds).unwrap(), Vec::<String>::new());
        // Report a would hold 300: its oldest goes.
        assert_eq!(c.cache_put(&entry("a3", "a", 100, 0), bounds).unwrap(), ["cache/a1"]);
        assert_eq!(c.cache_get("a1").unwrap(), None);
        assert_eq!(c.cache_get("a3").unwrap().unwrap().bytes, 100);
        // 300 in all, then 450 past the total of 400: the oldest of any report goes.
        assert_eq!(c.cache_put(&entry("c1", "c", 150, 0), bounds).unwrap(), ["cache/b1"]);
        // An expired entry is never served, and goes at the next put.
        assert_eq!(c.cache_put(&entry("old", "d", 1, 700_000), bounds).unwrap(), ["cache/old"]);
        assert_eq!(c.cache_get("old").unwrap(), None);
        // The hourly sweep drops what expired since.
        let soon = ream_control::now_ms() + 100;
        assert!(c.cache_put(&CacheEntry { expires_ms: soon, ..entry("soon", "e", 1, 0) }, bounds).unwrap().is_empty());
        std::thread::sleep(Duration::from_millis(150));
        assert_eq!(c.cache_expired().unwrap(), ["cache/soon"]);
        assert_eq!(c.cache_expired().unwrap(), Vec::<String>::new());
    });
}

#[test]
fn a_postgres_store_is_opened_used_and_dropped_from_async_tasks_without_a_panic() {
    let Some(pg) = ream_testkit::PgDatabase::create("control_async") else { return };
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let url = pg.url.clone();
    let task = rt.spawn(async move {
        // On an async worker, as a server's handlers and its last handle at SIGTERM are.
        let c = Control::open(Some(&url), std::path::Path::new("/nonexistent")).unwrap();
        add(&c, "r1", "alice", "async", None);
        let status = c.get_run("r1").unwrap().unwrap().status;
        drop(c);
        status
    });
    assert_eq!(rt.block_on(task).unwrap(), RunStatus::Queued);
}

fn schedule(c: &Control, id: &str) {
    c.insert_schedule(&ream_control::ScheduleRecord {
        id: id.into(),
        owner: "alice".into(),
        actor: json!({ "sub": "alice", "roles": ["finance"] }),
        body: json!({ "report": "sales", "cron": "* * * * * *" }),
        enabled: true,
        checked_ms: 0,
        created_ms: 0,
        updated_ms: 0,
    })
    .unwrap();
}

fn fire_run<'a>(id: &'a str, request: &'a serde_json::Value) -> NewRun<'a> {
    NewRun {
        id,
        report: "sales",
        format: "csv",
        mode: "async",
        actor: "alice",
        request,
        flight_key: None,
        source_key: "src",
        status: RunStatus::Queued,
        instance: None,
        lease: Duration::from_secs(15),
        snapshot: request,
    }
}

#[test]
fn a_look_behind_the_mark_or_at_it_records_nothing_and_leaves_the_mark_where_it_is() {
    on_both(|open| {
        let c = open();
        schedule(&c, "s1");
        let request = json!({});
        let one = |ms: i64, id: &'static str| ream_control::NewFire {
            fire_ms: ms,
            run: Ok(fire_run(id, &request)),
            deliveries: &[],
        };
        assert!(c.fire("s1", Some((0, 5000)), &[one(5000, "ahead")]).unwrap());
        // An instance whose clock is behind, and one that looked at the same moment: both
        // read the mark before it moved.
        assert!(!c.fire("s1", Some((0, 3000)), &[one(3000, "behind")]).unwrap());
        assert!(!c.fire("s1", Some((5000, 3000)), &[]).unwrap());
        assert!(!c.fire("s1", Some((0, 5000)), &[one(5000, "same")]).unwrap());
        assert_eq!(c.get_schedule("s1").unwrap().unwrap().checked_ms, 5000);
        let runs: Vec<String> = c.runs_of_schedule("s1", 10).unwrap().into_iter().map(|r| r.id).collect();
        assert_eq!(runs, ["ahead"]);
        assert_eq!(c.fires_of("s1", 10).unwrap().len(), 1);
    });
}

#[test]
fn instances_looking_at_a_schedule_at_once_make_each_fire_once_with_its_run_and_deliveries() {
    on_both(|open| {
        let c = open();
        schedule(&c, "s1");
        let targets = [json!({ "email": { "to": ["a@example.com"] } }), json!({ "webhook": { "url": "http://x" } })];
        std::thread::scope(|s| {
            for w in 0..4 {
                let (c, targets) = (open(), &targets);
                s.spawn(move || {
                    for round in 1..=5i64 {
                        let checked = c.get_schedule("s1").unwrap().unwrap().checked_ms;
                        let ids: Vec<(i64, String)> =
                            (checked / 1000 + 1..=round).map(|f| (f * 1000, format!("w{w}-f{f}"))).collect();
                        let request = json!({});
                        let fires: Vec<_> = ids
                            .iter()
                            .map(|(ms, id)| ream_control::NewFire {
                                fire_ms: *ms,
                                run: Ok(fire_run(id, &request)),
                                deliveries: targets,
                            })
                            .collect();
                        c.fire("s1", Some((checked, round * 1000)), &fires).unwrap();
                    }
                });
            }
        });
        let fires = c.fires_of("s1", 100).unwrap();
        let times: Vec<i64> = fires.iter().map(|f| f.fire_ms).collect();
        assert_eq!(times, [5000, 4000, 3000, 2000, 1000]);
        let runs = c.runs_of_schedule("s1", 100).unwrap();
        assert_eq!(runs.len(), 5, "one run per fire: {:?}", runs.iter().map(|r| &r.id).collect::<Vec<_>>());
        for (fire, run) in fires.iter().zip(&runs) {
            assert_eq!(fire.run_id.as_deref(), Some(run.id.as_str()));
            assert_eq!(run.schedule, Some(("s1".to_string(), fire.fire_ms)));
            assert_eq!(run.status, RunStatus::Queued);
            let deliveries = c.deliveries_of(&run.id).unwrap();
            assert_eq!(deliveries.len(), 2);
            assert_eq!(deliveries[1].target, targets[1]);
        }
        assert_eq!(c.queue_depth().unwrap(), 5);
    });
}

#[test]
fn a_fire_refused_before_it_ran_is_recorded_with_its_reason_and_no_run() {
    on_both(|open| {
        let c = open();
        schedule(&c, "s1");
        let refused = ream_control::NewFire {
            fire_ms: 1000,
            run: Err("403: report `sales` needs one of the roles: finance".into()),
            deliveries: &[],
        };
        assert!(c.fire("s1", Some((0, 1000)), &[refused]).unwrap());
        let fires = c.fires_of("s1", 10).unwrap();
        assert_eq!(fires.len(), 1);
        assert_eq!(
            (fires[0].run_id.as_deref(), fires[0].error.as_deref().unwrap_or("")),
            (None, "403: report `sales` needs one of the roles: finance")
        );
        assert_eq!(c.queue_depth().unwrap(), 0);
        // A look that started from the old mark made nothing.
        assert!(!c.fire("s1", Some((0, 2000)), &[]).unwrap());
        assert_eq!(c.get_schedule("s1").unwrap().unwrap().checked_ms, 1000);
    });
}

/// Schedule `s1` fired once (at 1000 ms): run `r1`, queued, with one email delivery.
fn fire_with_a_delivery(c: &Control) {
    schedule(c, "s1");
    let request = json!({});
    let targets = [json!({ "email": {} })];
    let fire = ream_control::NewFire { fire_ms: 1000, run: Ok(fire_run("r1", &request)), deliveries: &targets };
    c.fire("s1", Some((0, 1000)), &[fire]).unwrap();
}

#[test]
fn a_delivery_waits_for_its_run_then_goes_to_one_sender_at_a_time_until_recorded() {
    use ream_control::DeliveryStatus;
    on_both(|open| {
        let c = open();
        fire_with_a_delivery(&c);
        let lease = Duration::from_secs(30);
        assert!(c.claim_delivery("A", lease).unwrap().is_none(), "its run has not run yet");
        let run = c.claim("A", lease, WIDE).unwrap().unwrap();
        let done = RunUpdate {
            status: RunStatus::Succeeded,
            snapshot: &json!({}),
            error_public: None,
            output: Some(("r1.csv", 10)),
        };
        assert!(c.update_run(&run.id, "A", run.attempt, &done).unwrap());
        let d = c.claim_delivery("A", lease).unwrap().unwrap();
        assert_eq!((d.run_id.as_str(), d.position, d.attempts, d.status), ("r1", 0, 1, DeliveryStatus::Sending));
        assert!(c.claim_delivery("B", lease).unwrap().is_none(), "being sent by A");
        // A fails; the retry is due at once, and B takes it.
        assert!(c.record_delivery(&d, "A", DeliveryStatus::Pending, Some("connection refused"), 0).unwrap());
        let d2 = c.claim_delivery("B", Duration::ZERO).unwrap().unwrap();
        assert_eq!(d2.attempts, 2);
        // B stops renewing its lease: C takes it over, and B's late record is refused.
        std::thread::sleep(Duration::from_millis(5));
        let d3 = c.claim_delivery("C", lease).unwrap().unwrap();
        assert_eq!(d3.attempts, 3);
        // A burst run's progress: only the holder of this attempt records it.
        assert!(c.delivery_progress(&d3, "C", 7).unwrap());
        assert!(!c.delivery_progress(&d2, "B", 9).unwrap());
        assert_eq!(c.deliveries_of("r1").unwrap()[0].done, 7);
        assert!(!c.record_delivery(&d2, "B", DeliveryStatus::Sent, None, 0).unwrap());
        assert!(c.record_delivery(&d3, "C", DeliveryStatus::Sent, None, 0).unwrap());
        assert!(c.claim_delivery("A", lease).unwrap().is_none());
        let all = c.deliveries_of("r1").unwrap();
        assert_eq!((all[0].status, all[0].attempts, all[0].error.as_deref()), (DeliveryStatus::Sent, 3, None));
    });
}

#[test]
fn the_deliveries_of_a_run_that_failed_are_skipped_not_sent() {
    use ream_control::DeliveryStatus;
    on_both(|open| {
        let c = open();
        fire_with_a_delivery(&c);
        let lease = Duration::from_secs(30);
        let run = c.claim("A", lease, WIDE).unwrap().unwrap();
        let failed =
            RunUpdate { status: RunStatus::Failed, snapshot: &json!({}), error_public: Some("boom"), output: None };
        assert!(c.update_run(&run.id, "A", run.attempt, &failed).unwrap());
        assert!(c.claim_delivery("A", lease).unwrap().is_none());
        let all = c.deliveries_of("r1").unwrap();
        assert_eq!(all[0].status, DeliveryStatus::Skipped);
        assert_eq!(all[0].error.as_deref(), Some("the run did not succeed"));
    });
}
