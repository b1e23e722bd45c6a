//! Every metric the service exports, by name, in one place; `/metrics` renders them in
//! Prometheus' text format (metrics-exporter-prometheus).

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Runs that ended, by `status` (succeeded, failed, cancelled).
pub const RUNS_TOTAL: &str = "ream_runs_total";
/// Runs preparing or streaming now.
pub const ACTIVE_RUNS: &str = "ream_active_runs";
/// Rows and bytes written by finished runs.
pub const ROWS_TOTAL: &str = "ream_rows_total";
pub const BYTES_TOTAL: &str = "ream_bytes_total";
/// Wall time of finished runs, by `status`.
pub const RUN_DURATION: &str = "ream_run_duration_seconds";
/// From the request to the first byte of output.
pub const FIRST_BYTE: &str = "ream_time_to_first_byte_seconds";
/// Opening the source and its query until the first batch is ready (prepare).
pub const SOURCE_QUERY: &str = "ream_source_query_seconds";
/// Runs that opened their source and its query (its pages and count query included),
/// by `report`: requests that joined a flight or were served from the cache add none.
pub const SOURCE_QUERIES_TOTAL: &str = "ream_source_queries_total";
/// Requests refused at the concurrency limit.
pub const REJECTED_TOTAL: &str = "ream_runs_rejected_total";
/// The process's resident memory, read at each scrape.
pub const RESIDENT_MEMORY: &str = "ream_process_resident_memory_bytes";
/// Resumes after a lost database connection, counted when their run ends.
pub const RESUMES_TOTAL: &str = "ream_resumes_total";
/// Downloads of a cached report served from the cache, and those that were not, by
/// `report`.
pub const CACHE_HITS_TOTAL: &str = "ream_cache_hits_total";
pub const CACHE_MISSES_TOTAL: &str = "ream_cache_misses_total";
/// Runs waiting in the queue, across the cluster.
pub const QUEUE_DEPTH: &str = "ream_queue_depth";
/// Runs that made no progress for longer than the stall threshold, now.
pub const STALLED_RUNS: &str = "ream_stalled_runs";

const SECONDS_BUCKETS: &[f64] =
    &[0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0];

/// The process-wide recorder (the `metrics` facade has one global recorder).
pub fn handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)
            .expect("buckets are not empty")
            .build_recorder();
        let handle = recorder.handle();
        // Another recorder may already be installed (a test process embedding two
        // servers); ours then only renders what it was given.
        let _ = metrics::set_global_recorder(recorder);
        describe();
        handle
    })
}

fn describe() {
    metrics::describe_counter!(RUNS_TOTAL, "Runs that ended, by status");
    metrics::describe_gauge!(ACTIVE_RUNS, "Runs preparing or streaming now");
    metrics::describe_counter!(ROWS_TOTAL, "Rows written by runs");
    metrics::describe_counter!(BYTES_TOTAL, "Bytes written by runs");
    metrics::describe_histogram!(RUN_DURATION, metrics::Unit::Seconds, "Wall time of finished runs");
    metrics::describe_histogram!(FIRST_BYTE, metrics::Unit::Seconds, "Request to first byte of output");
    metrics::describe_histogram!(SOURCE_QUERY, metrics::Unit::Seconds, "Opening the source until the first batch");
    metrics::describe_counter!(
        REJECTED_TOTAL,
        "Requests refused before a run: the concurrency limit, a bad parameter or request"
    );
    metrics::describe_gauge!(RESIDENT_MEMORY, metrics::Unit::Bytes, "Resident memory of the process");
    metrics::describe_counter!(RESUMES_TOTAL, "Resumes after a lost database connection");
    metrics::describe_counter!(SOURCE_QUERIES_TOTAL, "Runs that opened their source's query, by report");
    metrics::describe_counter!(CACHE_HITS_TOTAL, "Downloads served from the result cache, by report");
    metrics::describe_counter!(CACHE_MISSES_TOTAL, "Downloads of a cached report that ran a query, by report");
    metrics::describe_gauge!(QUEUE_DEPTH, "Runs waiting in the queue, across the cluster");
    metrics::describe_gauge!(STALLED_RUNS, "Runs without progress for longer than the stall threshold");
}

/// Resident memory from `/proc/self/statm` (Linux), in bytes.
pub fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}
