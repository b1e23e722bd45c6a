//! Parallel reads: one read cut into N partitions of its first order column (an
//! integer), each read on a connection of its own, all on one snapshot, and handed on
//! in order, so the stages and renderers see exactly the rows, in exactly the order, of
//! the serial read.
//!
//! - [`plan`] decides: how many partitions (`--parallel N`, or `auto` from the read's
//!   size and the cores), where they are cut (the source's `split_points`: the
//!   planner's histogram on PostgreSQL, equal ranges of the key elsewhere), and why not
//!   where it cannot. The probe source that asked stays open until the run ends: on
//!   PostgreSQL its transaction exported the snapshot every partition imports.
//! - [`Partitioned`] is the read: partition 0 streams straight through, while each later
//!   partition reads at once into an unnamed temporary file (Arrow IPC, LZ4), replayed
//!   in order once the partitions before it are done. Memory stays one batch per
//!   partition; disk holds the later partitions' rows until they are replayed. With
//!   `source.order: any` every partition's batches interleave as they come instead,
//!   with no temporary files.
//!
//! Each partition is a source of its own, with its own resume loop (a lost connection
//! resumes that partition from its cursor) and its own cancel hook on the run's token.

use std::fs::File;
use std::io::{BufReader, BufWriter, Seek};
use std::sync::atomic::{AtomicBool, Ordering};
#[cfg(test)]
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_ipc::reader::StreamReader;
use arrow_ipc::writer::{IpcWriteOptions, StreamWriter};
use arrow_schema::SchemaRef;
use ream_core::spec::{Parallel, Snapshot};
use ream_sources::{Count, Counter, Cursor, KeyRange, ReadPlan, Source, SourceError, SourceUrl, Split};

use crate::EngineError;

/// `auto` reads serially below this many rows: opening the extra connections and
/// replaying files costs more than it saves on a read that takes well under a second.
const AUTO_MIN_ROWS: u64 = 1_000_000;
/// `auto` gives each partition at least this many rows.
const AUTO_ROWS_PER_PARTITION: u64 = 500_000;
/// `auto` uses at most this many partitions (the server's cores are not ours to know).
const AUTO_MAX: usize = 4;

/// What decides a parallel read besides the source: what was asked, the database, the
/// snapshot mode, and why the run itself cannot take one (`None`: it can).
pub(crate) struct Ask<'a> {
    pub parallel: Option<Parallel>,
    pub url: &'a SourceUrl,
    pub snapshot: Snapshot,
    /// Rows in any order (`source.order: any`): batches interleave as they come.
    pub interleave: bool,
    pub why_not: Option<String>,
}

/// A read and what the plan says of parallelism (`None`: not asked).
pub(crate) type Planned = (Box<dyn Source>, Option<Result<usize, String>>);

/// Opens partition `range` of the read, importing `snapshot` (PostgreSQL) where given.
pub(crate) type OpenPart<'a> = dyn Fn(KeyRange, Option<String>) -> Result<Box<dyn Source>, EngineError> + 'a;

/// The read `probe` makes, on the partitions [`Ask`] allows: the partitioned source, or
/// `probe` itself with why not (`None`: not asked). An explicit `--parallel N` that
/// cannot be had on this database is a usage error; anything else reads serially.
pub(crate) fn plan(mut probe: Box<dyn Source>, ask: Ask<'_>, open: &OpenPart<'_>) -> Result<Planned, EngineError> {
    let explicit = match ask.parallel {
        None | Some(Parallel::Partitions(0 | 1)) => return Ok((probe, None)),
        Some(Parallel::Partitions(n)) => Some(n as usize),
        Some(Parallel::Auto(_)) => None,
    };
    let serial = |probe, why: String| Ok((probe, Some(Err(why))));
    if let Some(why) = ask.why_not {
        return serial(probe, why);
    }
    if matches!(ask.url, SourceUrl::Mysql(_)) && ask.snapshot == Snapshot::Run {
        let why = "MySQL cannot share one snapshot between connections: add --no-snapshot (`source.snapshot: \
                   statement`) to read the partitions each on fresh data";
        return match explicit {
            Some(_) => Err(EngineError::Usage(format!("--parallel: {why}"))),
            None => serial(probe, why.into()),
        };
    }
    if !probe.types_settled() {
        return serial(probe, "SQLite declares no type for some fields (give them a `type`)".into());
    }
    let n = match explicit {
        Some(n) => n,
        None => match auto_partitions(probe.as_ref(), ask.url) {
            Ok(n) => n,
            Err(why) => return serial(probe, why),
        },
    };
    let points = match probe.split_points(n).map_err(source_err)? {
        Split::No(why) => return serial(probe, why),
        Split::At(points) if points.is_empty() => {
            return serial(probe, "the first order field has too few values to split".into())
        }
        Split::At(points) => points,
    };
    let parts = open_parts(probe.as_ref(), &points, &ask, open)?;
    let count = parts.len();
    let mut plan = probe.plan().clone();
    plan.sql = parts[0].plan().sql.clone();
    plan.parallel = Some(Ok(count));
    let interleave = ask.interleave;
    Ok((Box::new(Partitioned { probe, parts, plan, interleave }), Some(Ok(count))))
}

/// `auto`: no more partitions than the rows fill, nor than the cores can run, at most
/// [`AUTO_MAX`]; at least 2, or why the read stays serial.
///
/// A serial read already keeps two threads busy (decoding, rendering), and each partition
/// adds a reader, and a server backend when the database shares the machine. Measured on
/// 2 cores with PostgreSQL on the same machine (BENCHMARKS.md): the serial export used
/// both cores, and `--parallel 2` took 5% longer. So a database on this machine gets half
/// the cores, one elsewhere all but one.
fn auto_partitions(probe: &dyn Source, url: &SourceUrl) -> Result<usize, String> {
    let rows = probe.rows_estimate().map(|count| count()).transpose().map_err(|e| e.to_string())?;
    let rows = match rows {
        Some(rows) if rows >= AUTO_MIN_ROWS => rows,
        Some(rows) => return Err(format!("auto: {rows} rows read quickly on one connection")),
        None => return Err("auto: the read's size is unknown".into()),
    };
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let (usable, whose) = match on_this_machine(url) {
        true => (cores / 2, "shared with the database on this machine"),
        false => (cores.saturating_sub(1), "one of them rendering"),
    };
    let n = usable.min(AUTO_MAX).min((rows / AUTO_ROWS_PER_PARTITION) as usize);
    match n {
        n if n >= 2 => Ok(n),
        _ => Err(format!("auto: {cores} cores, {whose}, are kept busy by one read")),
    }
}

/// Whether the database runs on this machine (SQLite, or a server on localhost or a
/// socket), so its work takes the same cores as ream's.
fn on_this_machine(url: &SourceUrl) -> bool {
    let raw = match url {
        SourceUrl::Sqlite(_) => return true,
        SourceUrl::Postgres(u) | SourceUrl::Mysql(u) => u.as_str(),
    };
    let rest = raw.split_once("://").map_or(raw, |(_, r)| r);
    let authority = rest.split(['/', '?']).next().unwrap_or("");
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = match host_port.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => host_port.split(':').next().unwrap_or(""),
    };
    matches!(host, "" | "localhost" | "::1") || host.starts_with("127.") || raw.contains("host=/")
}

/// Open every partition. On SQLite, each begins a read transaction of its own, so they
/// read one snapshot only if nothing committed while they opened: checked, and tried
/// once more before the run fails.
fn open_parts(
    probe: &dyn Source,
    points: &[i64],
    ask: &Ask<'_>,
    open: &OpenPart<'_>,
) -> Result<Vec<Box<dyn Source>>, EngineError> {
    let ranges = Split::ranges(points);
    let shared = probe.shared_snapshot();
    let open_all = || ranges.iter().map(|&r| open(r, shared.clone())).collect::<Result<Vec<_>, _>>();
    let SourceUrl::Sqlite(path) = ask.url else { return open_all() };
    if ask.snapshot == Snapshot::Statement {
        return open_all();
    }
    let display = path.display().to_string();
    for _ in 0..2 {
        let version = ream_sources::sqlite::DataVersion::watch(path, &display).map_err(source_err)?;
        let parts = open_all()?;
        if version.unchanged(&display).map_err(source_err)? {
            return Ok(parts);
        }
    }
    Err(EngineError::Source {
        report: None,
        source: SourceError::Plan(format!(
            "{display} was written to while the partitions of the parallel read began their snapshots: a \
             parallel read of SQLite needs a file nothing writes meanwhile (run again, or read without --parallel)"
        )),
    })
}

fn source_err(e: SourceError) -> EngineError {
    EngineError::Source { report: None, source: e }
}

/// A read on several connections, handed on in order (see the module docs).
pub(crate) struct Partitioned {
    /// The read that was split: it holds the snapshot the partitions imported, and
    /// answers the count of the whole read.
    probe: Box<dyn Source>,
    parts: Vec<Box<dyn Source>>,
    plan: ReadPlan,
    /// Hand batches on as they come from any partition, with no temporary files.
    interleave: bool,
}

impl Source for Partitioned {
    fn schema(&self) -> SchemaRef {
        self.probe.schema()
    }

    fn plan(&self) -> &ReadPlan {
        &self.plan
    }

    fn counter(&self, count: &Count) -> Option<Counter> {
        self.probe.counter(count)
    }

    fn stream(&mut self, emit: &mut dyn FnMut(RecordBatch, Option<&Cursor>) -> bool) -> Result<(), SourceError> {
        if self.interleave {
            return interleaved(&mut self.parts, emit);
        }
        let schema = self.probe.schema();
        let (first, later) = self.parts.split_first_mut().ok_or(SourceError::Plan("no partitions".into()))?;
        // Set when the run needs no more rows (the consumer stopped, or a partition
        // failed): every partition stops at its next batch.
        let stop = AtomicBool::new(false);
        std::thread::scope(|scope| {
            let mut spills = Vec::with_capacity(later.len());
            for (i, part) in later.iter_mut().enumerate() {
                let (stop, schema) = (&stop, schema.clone());
                let read =
                    move || spill(part.as_mut(), &schema, stop).inspect_err(|_| stop.store(true, Ordering::Relaxed));
                match std::thread::Builder::new().name(format!("ream-part-{}", i + 1)).spawn_scoped(scope, read) {
                    Ok(h) => spills.push(h),
                    Err(e) => {
                        stop.store(true, Ordering::Relaxed);
                        spills.into_iter().for_each(|h| drop(h.join()));
                        return Err(SourceError::Plan(format!("starting a partition's reader: {e}")));
                    }
                }
            }
            let mut spills = spills.into_iter();
            let outcome = in_order(first.as_mut(), &mut spills, &stop, emit);
            // Whatever the outcome, the rest stop and are joined here, so a reader that
            // panicked meanwhile is not the scope's panic.
            stop.store(true, Ordering::Relaxed);
            spills.for_each(|h| drop(h.join()));
            outcome
        })
    }
}

/// Partition 0 straight through, then each spilled partition in turn.
fn in_order<'s>(
    first: &mut dyn Source,
    spills: &mut impl Iterator<Item = std::thread::ScopedJoinHandle<'s, Result<File, SourceError>>>,
    stop: &AtomicBool,
    emit: &mut dyn FnMut(RecordBatch, Option<&Cursor>) -> bool,
) -> Result<(), SourceError> {
    let mut consumer_stopped = false;
    first.stream(&mut |batch, cursor| {
        if stop.load(Ordering::Relaxed) {
            return false;
        }
        consumer_stopped = !emit(batch, cursor);
        !consumer_stopped
    })?;
    if consumer_stopped {
        return Ok(());
    }
    // Partition 0 is whole unless a later partition failed and stopped it. After a stop,
    // the first real failure is the run's error; none means a cancel.
    let mut cut_short = stop.load(Ordering::Relaxed);
    let mut failure = None;
    for handle in spills {
        match handle.join().unwrap_or_else(|_| Err(died())) {
            Ok(file) if !cut_short => {
                if !replay(file, emit)? {
                    return Ok(());
                }
            }
            Ok(_) => {}
            Err(SourceError::Cancelled) => cut_short = true,
            Err(e) => {
                stop.store(true, Ordering::Relaxed);
                cut_short = true;
                failure.get_or_insert(e);
            }
        }
    }
    match failure {
        Some(e) => Err(e),
        None if cut_short => Err(SourceError::Cancelled),
        None => Ok(()),
    }
}

/// What a partition's reader sends when its rows interleave: batches, then an explicit
/// end, so a reader that dies is a failed run, never a short one.
enum PartMsg {
    Batch(RecordBatch),
    Done(Result<(), SourceError>),
}

/// Every partition at once, each batch handed on as it comes (`source.order: any`).
/// The queue holds two batches per partition, so memory stays bounded.
fn interleaved(
    parts: &mut [Box<dyn Source>],
    emit: &mut dyn FnMut(RecordBatch, Option<&Cursor>) -> bool,
) -> Result<(), SourceError> {
    let stop = AtomicBool::new(false);
    let (tx, rx) = crossbeam_channel::bounded::<PartMsg>(2 * parts.len());
    std::thread::scope(|scope| {
        let mut readers = Vec::with_capacity(parts.len());
        for (i, part) in parts.iter_mut().enumerate() {
            let (tx, stop) = (tx.clone(), &stop);
            let read = move || {
                let sent = part.stream(&mut |b, _| !stop.load(Ordering::Relaxed) && tx.send(PartMsg::Batch(b)).is_ok());
                let _ = tx.send(PartMsg::Done(sent));
            };
            match std::thread::Builder::new().name(format!("ream-part-{i}")).spawn_scoped(scope, read) {
                Ok(handle) => readers.push(handle),
                Err(e) => {
                    stop.store(true, Ordering::Relaxed);
                    return Err(SourceError::Plan(format!("starting a partition's reader: {e}")));
                }
            }
        }
        drop(tx);
        let outcome = take_interleaved(&rx, readers.len(), emit);
        // Whatever ended the run, the readers stop and the queue drains so none blocks;
        // each is joined here, so a reader that panicked is this read's error, not the
        // scope's panic.
        stop.store(true, Ordering::Relaxed);
        while rx.recv().is_ok() {}
        let mut died_too = false;
        for reader in readers {
            died_too |= reader.join().is_err(); // every one joined, not just up to a panic
        }
        match outcome {
            Ok(()) if died_too => Err(died()),
            outcome => outcome,
        }
    })
}

/// Hand on batches until `running` partitions are done.
fn take_interleaved(
    rx: &crossbeam_channel::Receiver<PartMsg>,
    mut running: usize,
    emit: &mut dyn FnMut(RecordBatch, Option<&Cursor>) -> bool,
) -> Result<(), SourceError> {
    while running > 0 {
        match rx.recv() {
            Ok(PartMsg::Batch(b)) => {
                if !emit(b, None) {
                    return Ok(());
                }
            }
            Ok(PartMsg::Done(Ok(()))) => running -= 1,
            Ok(PartMsg::Done(Err(e))) => return Err(e),
            Err(_) => return Err(died()),
        }
    }
    Ok(())
}

/// A partition's reader thread died (a panic): the run fails rather than ending short.
fn died() -> SourceError {
    SourceError::Plan("a partition's reader stopped without finishing (its thread died)".into())
}

/// Read a partition into an unnamed temporary file, batch by batch.
fn spill(part: &mut dyn Source, schema: &SchemaRef, stop: &AtomicBool) -> Result<File, SourceError> {
    let io = |e: std::io::Error| SourceError::Plan(format!("writing a partition to a temporary file: {e}"));
    let arrow =
        |e: arrow_schema::ArrowError| SourceError::Plan(format!("writing a partition to a temporary file: {e}"));
    let file = tempfile::tempfile().map_err(io)?;
    // LZ4: lineitem's later half spills 212 MB (519 MB uncompressed, more than the 386 MB
    // of CSV it becomes) in the same wall time (BENCHMARKS.md).
    let options =
        IpcWriteOptions::default().try_with_compression(Some(arrow_ipc::CompressionType::LZ4_FRAME)).map_err(arrow)?;
    let mut writer = StreamWriter::try_new_with_options(BufWriter::new(file), schema, options).map_err(arrow)?;
    let mut failed = None;
    let read = part.stream(&mut |batch, _| {
        if let Err(e) = writer.write(&batch) {
            failed = Some(arrow(e));
        }
        failed.is_none() && !stop.load(Ordering::Relaxed)
    });
    if let Some(e) = failed {
        return Err(e);
    }
    read?;
    if stop.load(Ordering::Relaxed) {
        return Err(SourceError::Cancelled);
    }
    writer.finish().map_err(arrow)?;
    let mut file = writer.into_inner().map_err(arrow)?.into_inner().map_err(|e| io(e.into_error()))?;
    file.rewind().map_err(io)?;
    Ok(file)
}

/// Hand a spilled partition's batches on, in order; `Ok(false)` when the consumer
/// stopped.
fn replay(file: File, emit: &mut dyn FnMut(RecordBatch, Option<&Cursor>) -> bool) -> Result<bool, SourceError> {
    let arrow = |e: arrow_schema::ArrowError| SourceError::Plan(format!("reading a partition's temporary file: {e}"));
    let reader = StreamReader::try_new(BufReader::new(file), None).map_err(arrow)?;
    for batch in reader {
        if !emit(batch.map_err(arrow)?, None) {
            return Ok(false);
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{ArrayRef, Int64Array};
    use arrow_schema::{DataType, Field, Schema};
    use ream_core::spec::Strategy;

    /// What a fake partition does after its batches.
    #[derive(Clone, Copy)]
    enum Ends {
        Whole,
        Fails,
        Panics,
    }

    /// A partition of `batches` batches of ids from `first`, ten a batch.
    struct Part {
        first: i64,
        batches: i64,
        ends: Ends,
    }

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, false)]))
    }

    impl Source for Part {
        fn schema(&self) -> SchemaRef {
            schema()
        }
        fn plan(&self) -> &ReadPlan {
            unreachable!("the partitioned source has its own plan")
        }
        fn stream(&mut self, emit: &mut dyn FnMut(RecordBatch, Option<&Cursor>) -> bool) -> Result<(), SourceError> {
            for b in 0..self.batches {
                let ids: ArrayRef = Arc::new(Int64Array::from_iter_values((0..10).map(|i| self.first + b * 10 + i)));
                if !emit(RecordBatch::try_new(schema(), vec![ids]).unwrap(), None) {
                    return Ok(());
                }
            }
            match self.ends {
                Ends::Whole => Ok(()),
                Ends::Fails => Err(SourceError::Plan("partition lost its database".into())),
                Ends::Panics => panic!("a reader's bug"),
            }
        }
        fn counter(&self, _: &Count) -> Option<Counter> {
            None
        }
    }

    fn read(ends: [Ends; 3], interleave: bool, take: usize) -> (Result<(), SourceError>, Vec<i64>) {
        let parts: Vec<Box<dyn Source>> =
            (0..3).map(|i| Box::new(Part { first: i * 1000, batches: 50, ends: ends[i as usize] }) as _).collect();
        let probe = Box::new(Part { first: 0, batches: 0, ends: Ends::Whole });
        let mut source = Partitioned { probe, parts, plan: ReadPlan::asked(Strategy::Cursor), interleave };
        let mut ids = Vec::new();
        let result = source.stream(&mut |b, _| {
            ids.extend(b.column(0).as_any().downcast_ref::<Int64Array>().unwrap().values().iter().copied());
            ids.len() < take
        });
        (result, ids)
    }

    fn every_id() -> Vec<i64> {
        (0..3).flat_map(|p| (0..500).map(move |i| p * 1000 + i)).collect()
    }

    #[test]
    fn partitions_are_handed_on_whole_and_in_their_order() {
        let (result, ids) = read([Ends::Whole; 3], false, usize::MAX);
        assert!(result.is_ok());
        assert_eq!(ids, every_id());
    }

    #[test]
    fn a_later_partition_that_fails_or_dies_fails_the_read_rather_than_shortening_it() {
        for (ends, why) in [
            ([Ends::Whole, Ends::Fails, Ends::Whole], "partition lost its database"),
            ([Ends::Whole, Ends::Whole, Ends::Panics], "its thread died"),
            ([Ends::Fails, Ends::Whole, Ends::Whole], "partition lost its database"),
            // The first failure is the error; a reader that panicked meanwhile is joined.
            ([Ends::Fails, Ends::Whole, Ends::Panics], "partition lost its database"),
        ] {
            for interleave in [false, true] {
                let (result, _) = read(ends, interleave, usize::MAX);
                let e = result.expect_err("a failed partition fails the read");
                assert!(e.to_string().contains(why), "{e}");
            }
        }
    }

    #[test]
    fn a_consumer_that_stops_stops_every_partition_cleanly() {
        for interleave in [false, true] {
            let (result, ids) = read([Ends::Whole; 3], interleave, 25);
            assert!(result.is_ok());
            assert!(ids.len() < 100, "{}", ids.len());
        }
    }

    #[test]
    fn interleaved_partitions_hand_on_every_row_once() {
        let (result, mut ids) = read([Ends::Whole; 3], true, usize::MAX);
        assert!(result.is_ok());
        ids.sort_unstable();
        assert_eq!(ids, every_id());
    }

    #[test]
    fn partitions_cover_every_value_once_in_order() {
        let r = Split::ranges(&[10, 20]);
        assert_eq!(
            r,
            vec![
                KeyRange { lo: None, hi: Some(10) },
                KeyRange { lo: Some(10), hi: Some(20) },
                KeyRange { lo: Some(20), hi: None }
            ]
        );
        assert_eq!(Split::ranges(&[]), vec![KeyRange::default()]);
    }

    #[test]
    fn a_database_on_localhost_a_socket_or_a_file_shares_this_machine() {
        let pg = |u: &str| SourceUrl::Postgres(u.into());
        assert!(on_this_machine(&SourceUrl::Sqlite("x.db".into())));
        assert!(on_this_machine(&pg("postgres://u:p@127.0.0.1:5432/db")));
        assert!(on_this_machine(&pg("postgres://u@localhost/db")));
        assert!(on_this_machine(&pg("postgres://u@[::1]:5432/db")));
        assert!(on_this_machine(&pg("postgres:///db?host=/var/run/postgresql")));
        assert!(!on_this_machine(&pg("postgres://u:p@db.internal:5432/db")));
        assert!(!on_this_machine(&SourceUrl::Mysql("mysql://root@10.0.0.7/shop".into())));
    }

    #[test]
    fn parallel_parses_a_count_or_auto_and_refuses_the_rest() {
        assert_eq!("3".parse::<Parallel>(), Ok(Parallel::Partitions(3)));
        assert!(matches!("auto".parse::<Parallel>(), Ok(Parallel::Auto(_))));
        for bad in ["0", "65", "-1", "two", ""] {
            let e = bad.parse::<Parallel>().unwrap_err();
            assert!(e.contains("from 1 to 64"), "{bad}: {e}");
        }
    }
}
