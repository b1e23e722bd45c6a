//! Queue claim latency: `RUNS` queued runs of ten actors in a control store, claimed by
//! `INSTANCES` claimers (threads, each with its own connection pool, as separate
//! processes would have) until the queue is empty. Each claimed run is marked finished
//! outside the timed part, as a short run would be. Prints the latency percentiles and
//! checks that every run was claimed exactly once.
//!
//! Usage: `claim-latency CONTROL_URL [RUNS] [INSTANCES]` (`postgres://…` or `sqlite:PATH`).

use std::time::{Duration, Instant};

use ream_control::{ClaimLimits, Control, NewRun, RunStatus, RunUpdate};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let Some(url) = args.get(1) else {
        eprintln!("usage: claim-latency CONTROL_URL [RUNS] [INSTANCES]");
        std::process::exit(2);
    };
    let runs: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(200);
    let instances: usize = args.get(3).and_then(|a| a.parse().ok()).unwrap_or(2);
    let dir = std::env::temp_dir();
    let open = || Control::open(Some(url), &dir).unwrap_or_else(|e| panic!("{e}"));
    let control = open();
    let (request, snapshot) = (serde_json::json!({}), serde_json::json!({}));
    for i in 0..runs {
        let (id, actor) = (format!("bench-{i:05}"), format!("actor{}", i % 10));
        let run = NewRun {
            id: &id,
            report: "bench",
            format: "csv",
            mode: "async",
            actor: &actor,
            request: &request,
            flight_key: None,
            source_key: "src",
            status: RunStatus::Queued,
            instance: None,
            lease: Duration::from_secs(15),
            snapshot: &snapshot,
        };
        control.insert_run(&run).unwrap_or_else(|e| panic!("{e}"));
    }
    let started = Instant::now();
    let per_instance: Vec<(Vec<String>, Vec<Duration>)> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..instances).map(|n| s.spawn(move || claim_all(open(), &format!("I{n}")))).collect();
        workers.into_iter().map(|w| w.join().expect("a claimer panicked")).collect()
    });
    let wall = started.elapsed();
    let mut ids: Vec<&String> = per_instance.iter().flat_map(|(ids, _)| ids).collect();
    let mut times: Vec<Duration> = per_instance.iter().flat_map(|(_, t)| t.iter().copied()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), runs, "a run was claimed twice or never");
    assert_eq!(times.len(), runs, "a run was claimed twice");
    times.sort();
    let pct = |p: f64| times[((times.len() as f64 * p) as usize).min(times.len() - 1)];
    let counts: Vec<usize> = per_instance.iter().map(|(ids, _)| ids.len()).collect();
    println!(
        "{runs} runs, {instances} claimers {counts:?}: p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms; \
         {:.0} claims/s in all; each run exactly once",
        ms(pct(0.5)),
        ms(pct(0.9)),
        ms(pct(0.99)),
        ms(*times.last().unwrap_or(&Duration::ZERO)),
        runs as f64 / wall.as_secs_f64()
    );
}

/// Claim until the queue is empty; the ids claimed and each claim's latency.
fn claim_all(control: Control, instance: &str) -> (Vec<String>, Vec<Duration>) {
    let limits = ClaimLimits { per_actor: usize::MAX, per_source: usize::MAX };
    let (mut ids, mut times) = (Vec::new(), Vec::new());
    let snapshot = serde_json::json!({});
    loop {
        let t = Instant::now();
        let claimed = control.claim(instance, Duration::from_secs(15), limits).unwrap_or_else(|e| panic!("{e}"));
        let Some(run) = claimed else { return (ids, times) };
        times.push(t.elapsed());
        let done = RunUpdate { status: RunStatus::Succeeded, snapshot: &snapshot, error_public: None, output: None };
        control.update_run(&run.id, instance, run.attempt, &done).unwrap_or_else(|e| panic!("{e}"));
        ids.push(run.id);
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
