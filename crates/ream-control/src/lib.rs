//! ream-control: the control store every `ream serve` instance shares. It holds the
//! runs (what was asked, who asked, where each run is, the last snapshot of its
//! progress), the queue and its leases, the outputs ream wrote (so retention removes
//! only those), and the values instances must agree on. It is an embedded SQLite file for
//! one instance, or a PostgreSQL database for any number; the schema is created and
//! migrated at open by versioned migrations (refinery). Only this crate touches the
//! control database.
//!
//! ```
//! use ream_control::{Control, NewRun, RunStatus};
//! use serde_json::json;
//!
//! let dir = tempfile::tempdir().unwrap();
//! let control = Control::open(None, dir.path()).unwrap();
//! control.insert_run(&NewRun {
//!     id: "r1", report: "sales", format: "csv", mode: "async", actor: "alice",
//!     request: &json!({}), flight_key: None, source_key: "", status: RunStatus::Queued,
//!     instance: None, lease: std::time::Duration::from_secs(15), snapshot: &json!({ "id": "r1" }),
//! }).unwrap();
//! let run = control.get_run("r1").unwrap().unwrap();
//! assert_eq!((run.status, run.actor.as_str()), (RunStatus::Queued, "alice"));
//! // Reopened (a restart), the run is still there.
//! drop(control);
//! let control = Control::open(None, dir.path()).unwrap();
//! assert_eq!(control.list_runs(Some("alice"), 10).unwrap().len(), 1);
//! ```

mod db;
mod schedules;

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::db::{Db, Row, P};
pub use crate::schedules::{Delivery, DeliveryStatus, FireRecord, NewFire, ScheduleRecord};

/// What went wrong with the control store. Messages name the store without its password.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("control store {store}: {reason}")]
    Open { store: String, reason: String },
    #[error("control store URL `{0}`: use sqlite:PATH or postgres://USER@HOST/DB")]
    Url(String),
    #[error("control store migration: {0}")]
    Migrate(String),
    #[error("control store, {what}: {reason}")]
    Query { what: &'static str, reason: String },
    #[error("control store, {what}: a stored value does not parse: {reason}")]
    Corrupt { what: &'static str, reason: String },
}

/// Where a run is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    /// Waiting for an instance with room to claim it.
    Queued,
    /// Claimed: checking parameters, connecting, running the query until its first batch.
    Preparing,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl RunStatus {
    pub fn is_finished(self) -> bool {
        matches!(self, RunStatus::Succeeded | RunStatus::Failed | RunStatus::Cancelled)
    }

    pub fn name(self) -> &'static str {
        match self {
            RunStatus::Queued => "queued",
            RunStatus::Preparing => "preparing",
            RunStatus::Running => "running",
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<RunStatus> {
        [
            RunStatus::Queued,
            RunStatus::Preparing,
            RunStatus::Running,
            RunStatus::Succeeded,
            RunStatus::Failed,
            RunStatus::Cancelled,
        ]
        .into_iter()
        .find(|r| r.name() == s)
    }
}

/// A run as first recorded.
pub struct NewRun<'a> {
    pub id: &'a str,
    pub report: &'a str,
    pub format: &'a str,
    /// `sync` (streamed to its client) or `async` (stored).
    pub mode: &'a str,
    /// The actor's `sub`: who sees the run.
    pub actor: &'a str,
    /// Everything needed to run it again on another instance (parameters, identity).
    pub request: &'a serde_json::Value,
    /// Identical requests share this key (single-flight).
    pub flight_key: Option<&'a str>,
    /// The source the run reads (for the per-source limit).
    pub source_key: &'a str,
    pub status: RunStatus,
    /// The instance running it (None while queued).
    pub instance: Option<&'a str>,
    /// How long its instance's lease lasts before the first heartbeat.
    pub lease: Duration,
    pub snapshot: &'a serde_json::Value,
}

/// What the instance running a run writes as it goes.
pub struct RunUpdate<'a> {
    pub status: RunStatus,
    /// The run as an admin sees it (GET /runs/{id} on any instance).
    pub snapshot: &'a serde_json::Value,
    /// The error without its SQL text, for everyone else.
    pub error_public: Option<&'a str>,
    /// The stored output: its name in the output store and its bytes.
    pub output: Option<(&'a str, u64)>,
}

/// A run as the control store holds it.
#[derive(Debug, Clone)]
pub struct RunRecord {
    pub id: String,
    pub report: String,
    pub format: String,
    pub mode: String,
    pub actor: String,
    pub request: serde_json::Value,
    pub status: RunStatus,
    pub instance: Option<String>,
    pub attempt: i64,
    pub cancel_requested: bool,
    /// Milliseconds since the Unix epoch.
    pub created_ms: i64,
    pub finished_ms: Option<i64>,
    pub snapshot: serde_json::Value,
    pub error_public: Option<String>,
    pub output: Option<(String, u64)>,
    /// The multipart upload in progress (the output store's record), to abort if the run
    /// is run again elsewhere.
    pub upload: Option<String>,
    pub flight_key: Option<String>,
    /// The schedule that fired it, and the fire time (ms since the epoch).
    pub schedule: Option<(String, i64)>,
}

/// An output ream wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputRecord {
    pub name: String,
    pub run_id: String,
    pub report: String,
    pub bytes: u64,
    pub created_ms: i64,
}

/// An output of the result cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheEntry {
    /// The flight key of the requests it answers.
    pub key: String,
    pub report: String,
    /// Its name in the output store.
    pub name: String,
    pub bytes: u64,
    pub created_ms: i64,
    pub expires_ms: i64,
}

/// How many bytes of cached outputs to keep.
#[derive(Debug, Clone, Copy)]
pub struct CacheBounds {
    /// Of the entry's report.
    pub report: u64,
    /// Of every report.
    pub total: u64,
}

/// The control store.
pub struct Control {
    db: Db,
    display: String,
}

impl std::fmt::Debug for Control {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Control({})", self.display)
    }
}

const RUN_COLUMNS: &str = "id, report, format, mode, actor, request, status, instance, attempt, cancel_requested, \
     created_ms, finished_ms, snapshot, error_public, output_name, output_bytes, upload, flight_key, schedule_id, fire_ms";

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

fn read_run(row: &dyn Row) -> Result<RunRecord, String> {
    let json = |s: String| serde_json::from_str(&s).map_err(|e| e.to_string());
    let status = row.text(6)?;
    Ok(RunRecord {
        id: row.text(0)?,
        report: row.text(1)?,
        format: row.text(2)?,
        mode: row.text(3)?,
        actor: row.text(4)?,
        request: json(row.text(5)?)?,
        status: RunStatus::parse(&status).ok_or_else(|| format!("unknown status `{status}`"))?,
        instance: row.opt_text(7)?,
        attempt: row.int(8)?,
        cancel_requested: row.int(9)? != 0,
        created_ms: row.int(10)?,
        finished_ms: row.opt_int(11)?,
        snapshot: json(row.text(12)?)?,
        error_public: row.opt_text(13)?,
        output: match (row.opt_text(14)?, row.opt_int(15)?) {
            (Some(name), Some(bytes)) => Some((name, bytes.max(0) as u64)),
            _ => None,
        },
        upload: row.opt_text(16)?,
        flight_key: row.opt_text(17)?,
        schedule: match (row.opt_text(18)?, row.opt_int(19)?) {
            (Some(id), Some(fire_ms)) => Some((id, fire_ms)),
            _ => None,
        },
    })
}

/// The columns [`insert_params`] fills, in its order.
const INSERT_COLUMNS: &str = "id, report, format, mode, actor, request, flight_key, source_key, status, instance, \
     attempt, created_ms, updated_ms, snapshot, lease_until, claimed_ms";

/// A new run's values for [`INSERT_COLUMNS`] as `$1..$15` (`$12` twice: created and updated).
fn insert_params(run: &NewRun<'_>) -> Vec<P> {
    let now = now_ms();
    vec![
        run.id.into(),
        run.report.into(),
        run.format.into(),
        run.mode.into(),
        run.actor.into(),
        run.request.to_string().into(),
        run.flight_key.map(String::from).into(),
        run.source_key.into(),
        run.status.name().into(),
        run.instance.map(String::from).into(),
        i64::from(run.instance.is_some()).into(),
        now.into(),
        run.snapshot.to_string().into(),
        run.instance.map(|_| now + ms(run.lease)).into(),
        run.instance.map(|_| now).into(),
    ]
}

/// The placeholders of [`INSERT_COLUMNS`], each written by `write(n, type)`.
fn insert_values(write: impl Fn(usize, &str) -> String) -> String {
    let (t, b) = ("TEXT", "BIGINT");
    let columns = [(1, t), (2, t), (3, t), (4, t), (5, t), (6, t), (7, t), (8, t), (9, t), (10, t), (11, b)];
    let rest = [(12, b), (12, b), (13, t), (14, b), (15, b)];
    columns.iter().chain(&rest).map(|&(n, ty)| write(n, ty)).collect::<Vec<_>>().join(", ")
}

/// A limit as SQL sees it.
fn bound(n: usize) -> i64 {
    n.min(i64::MAX as usize) as i64
}

fn read_cache(r: &dyn Row) -> Result<CacheEntry, String> {
    Ok(CacheEntry {
        key: r.text(0)?,
        report: r.text(1)?,
        name: r.text(2)?,
        bytes: r.int(3)?.max(0) as u64,
        created_ms: r.int(4)?,
        expires_ms: r.int(5)?,
    })
}

fn ms(d: Duration) -> i64 {
    d.as_millis().min(i64::MAX as u128) as i64
}

/// Claims are decided one at a time across the cluster, under this advisory lock.
const CLAIM_LOCK: i64 = 0x7265_616d_0001;

/// How many runs may be active at once when claiming.
#[derive(Debug, Clone, Copy)]
pub struct ClaimLimits {
    /// Across the cluster, per actor.
    pub per_actor: usize,
    /// Across the cluster, per source.
    pub per_source: usize,
}

impl Control {
    /// Open (and migrate) the store at `url`: `postgres://…`, `sqlite:PATH`, or None for
    /// `control.sqlite` in `data_dir`.
    pub fn open(url: Option<&str>, data_dir: &Path) -> Result<Control, ControlError> {
        let (db, display) = match url {
            None => {
                let path = data_dir.join("control.sqlite");
                (Db::sqlite(&path)?, format!("sqlite:{}", path.display()))
            }
            Some(u) if u.starts_with("postgres://") || u.starts_with("postgresql://") => {
                (Db::postgres(u)?, ream_core::redact(u))
            }
            Some(u) if u.starts_with("sqlite:") => {
                let path = u.trim_start_matches("sqlite://").trim_start_matches("sqlite:");
                (Db::sqlite(Path::new(path))?, u.to_string())
            }
            Some(u) => return Err(ControlError::Url(ream_core::redact(u))),
        };
        Ok(Control { db, display })
    }

    /// The store's URL, without its password.
    pub fn describe(&self) -> &str {
        &self.display
    }

    /// Whether several instances can share this store.
    pub fn is_shared(&self) -> bool {
        self.db.is_postgres()
    }

    /// The shared value `name`, set to `make()` by the first instance that asks.
    pub fn shared_value(&self, name: &str, make: impl FnOnce() -> String) -> Result<String, ControlError> {
        self.db.execute(
            "saving a shared value",
            "INSERT INTO settings (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
            &[name.into(), make().into()],
        )?;
        let values = self.db.query(
            "reading a shared value",
            "SELECT value FROM settings WHERE name = $1",
            &[name.into()],
            |r| r.text(0),
        )?;
        values
            .into_iter()
            .next()
            .ok_or(ControlError::Query { what: "reading a shared value", reason: "missing".into() })
    }

    pub fn insert_run(&self, run: &NewRun<'_>) -> Result<(), ControlError> {
        let values = insert_values(|n, _| format!("${n}"));
        let sql = format!("INSERT INTO runs ({INSERT_COLUMNS}) VALUES ({values})");
        self.db.execute("recording a run", &sql, &insert_params(run))?;
        Ok(())
    }

    /// Record a run that starts at once (a sync download) only if its actor and its source
    /// are under `limits` across the cluster, decided under the claim lock. False: over a
    /// limit, nothing recorded.
    pub fn insert_run_within(&self, run: &NewRun<'_>, limits: ClaimLimits) -> Result<bool, ControlError> {
        // Typed: a bare parameter in a SELECT list would be text to PostgreSQL.
        let values = insert_values(|n, t| format!("CAST(${n} AS {t})"));
        let active = "status IN ('preparing', 'running')";
        let sql = format!(
            "INSERT INTO runs ({INSERT_COLUMNS}) SELECT {values} \
             WHERE (SELECT count(*) FROM runs WHERE actor = $5 AND {active}) < $16 \
             AND (SELECT count(*) FROM runs WHERE source_key = $8 AND {active}) < $17 RETURNING id"
        );
        let mut params = insert_params(run);
        params.push(bound(limits.per_actor).into());
        params.push(bound(limits.per_source).into());
        let rows = self.db.serialized("recording a run", CLAIM_LOCK, &[(&sql, params)], |r| r.text(0))?;
        Ok(!rows.is_empty())
    }

    /// The fresh cached output of flight `key`, if any.
    pub fn cache_get(&self, key: &str) -> Result<Option<CacheEntry>, ControlError> {
        let rows = self.db.query(
            "reading the cache",
            "SELECT key, report, name, bytes, created_ms, expires_ms FROM cache WHERE key = $1 AND expires_ms > $2",
            &[key.into(), now_ms().into()],
            read_cache,
        )?;
        Ok(rows.into_iter().next())
    }

    /// Record `entry` (replacing one of its key), then keep the newest entries within
    /// `bounds`, dropping expired ones. Returns the names of the outputs dropped, for the
    /// caller to remove from the output store.
    pub fn cache_put(&self, entry: &CacheEntry, bounds: CacheBounds) -> Result<Vec<String>, ControlError> {
        self.db.execute(
            "caching an output",
            "INSERT INTO cache (key, report, name, bytes, created_ms, expires_ms) VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (key) DO UPDATE SET report = excluded.report, name = excluded.name, bytes = excluded.bytes, \
             created_ms = excluded.created_ms, expires_ms = excluded.expires_ms",
            &[
                entry.key.as_str().into(),
                entry.report.as_str().into(),
                entry.name.as_str().into(),
                (entry.bytes.min(i64::MAX as u64) as i64).into(),
                entry.created_ms.into(),
                entry.expires_ms.into(),
            ],
        )?;
        let all = self.db.query(
            "reading the cache",
            "SELECT key, report, name, bytes, created_ms, expires_ms FROM cache ORDER BY created_ms DESC, key",
            &[],
            read_cache,
        )?;
        let (now, mut report_bytes, mut total_bytes) = (now_ms(), 0u64, 0u64);
        let mut dropped = Vec::new();
        for e in all {
            let same = e.report == entry.report;
            let keep = e.expires_ms > now
                && total_bytes.saturating_add(e.bytes) <= bounds.total
                && (!same || report_bytes.saturating_add(e.bytes) <= bounds.report);
            if keep {
                total_bytes += e.bytes;
                report_bytes += if same { e.bytes } else { 0 };
                continue;
            }
            self.db.execute(
                "dropping a cached output",
                "DELETE FROM cache WHERE key = $1",
                &[e.key.as_str().into()],
            )?;
            dropped.push(e.name);
        }
        Ok(dropped)
    }

    /// Drop every expired cache entry; the names of their outputs, to remove.
    pub fn cache_expired(&self) -> Result<Vec<String>, ControlError> {
        let now = now_ms();
        let names = self.db.query(
            "reading the cache",
            "SELECT name FROM cache WHERE expires_ms <= $1",
            &[now.into()],
            |r| r.text(0),
        )?;
        self.db.execute(
            "dropping expired cached outputs",
            "DELETE FROM cache WHERE expires_ms <= $1",
            &[now.into()],
        )?;
        Ok(names)
    }

    /// Forget the cached output of `key` (its object is gone).
    pub fn cache_forget(&self, key: &str) -> Result<(), ControlError> {
        self.db.execute("dropping a cached output", "DELETE FROM cache WHERE key = $1", &[key.into()])?;
        Ok(())
    }

    /// Queue `run` unless a run of the same flight key is still going (queued, preparing
    /// or running): then nothing is recorded and that run's id is returned. Decided
    /// under the claim lock, so of identical requests at once one is queued.
    pub fn enqueue_unless_flying(&self, run: &NewRun<'_>) -> Result<Option<String>, ControlError> {
        let Some(key) = run.flight_key else {
            self.insert_run(run)?;
            return Ok(None);
        };
        let values = insert_values(|n, t| format!("CAST(${n} AS {t})"));
        let sql = format!(
            "INSERT INTO runs ({INSERT_COLUMNS}) SELECT {values} \
             WHERE NOT EXISTS (SELECT 1 FROM runs WHERE flight_key = $7 AND finished_ms IS NULL) RETURNING id"
        );
        let statements = [(sql.as_str(), insert_params(run))];
        if !self.db.serialized("queueing a run", CLAIM_LOCK, &statements, |r| r.text(0))?.is_empty() {
            return Ok(None);
        }
        let going = self.db.query(
            "finding a run going",
            "SELECT id FROM runs WHERE flight_key = $1 AND finished_ms IS NULL ORDER BY created_ms LIMIT 1",
            &[key.into()],
            |r| r.text(0),
        )?;
        match going.into_iter().next() {
            Some(id) => Ok(Some(id)),
            // It ended in between: this one runs after all.
            None => self.insert_run(run).map(|()| None),
        }
    }

    /// Write a run's progress or outcome, as the instance holding it at `attempt`; a
    /// finished status also sets its end time. False if the run is no longer this
    /// instance's (its lease expired and another took it): the caller should stop it.
    pub fn update_run(&self, id: &str, instance: &str, attempt: i64, u: &RunUpdate<'_>) -> Result<bool, ControlError> {
        let now = now_ms();
        let finished = u.status.is_finished().then_some(now);
        let n = self.db.execute(
            "updating a run",
            "UPDATE runs SET status = $1, snapshot = $2, error_public = $3, output_name = $4, output_bytes = $5, \
             updated_ms = $6, finished_ms = COALESCE(finished_ms, $7) \
             WHERE id = $8 AND instance = $9 AND attempt = $10 AND finished_ms IS NULL",
            &[
                u.status.name().into(),
                u.snapshot.to_string().into(),
                u.error_public.map(String::from).into(),
                u.output.map(|o| o.0.to_string()).into(),
                u.output.map(|o| o.1 as i64).into(),
                now.into(),
                finished.into(),
                id.into(),
                instance.into(),
                attempt.into(),
            ],
        )?;
        Ok(n == 1)
    }

    pub fn get_run(&self, id: &str) -> Result<Option<RunRecord>, ControlError> {
        let sql = format!("SELECT {RUN_COLUMNS} FROM runs WHERE id = $1");
        Ok(self.db.query("reading a run", &sql, &[id.into()], read_run)?.into_iter().next())
    }

    /// The newest `limit` runs, of `actor` only when given.
    pub fn list_runs(&self, actor: Option<&str>, limit: usize) -> Result<Vec<RunRecord>, ControlError> {
        let limit = limit.min(i64::MAX as usize) as i64;
        match actor {
            Some(a) => self.db.query(
                "listing runs",
                &format!("SELECT {RUN_COLUMNS} FROM runs WHERE actor = $1 ORDER BY created_ms DESC, id DESC LIMIT $2"),
                &[a.into(), limit.into()],
                read_run,
            ),
            None => self.db.query(
                "listing runs",
                &format!("SELECT {RUN_COLUMNS} FROM runs ORDER BY created_ms DESC, id DESC LIMIT $1"),
                &[limit.into()],
                read_run,
            ),
        }
    }

    /// Ask whichever instance holds run `id` to stop it; a queued run is cancelled at
    /// once. Returns the run as it is then (None if unknown).
    pub fn request_cancel(&self, id: &str) -> Result<Option<RunRecord>, ControlError> {
        let now = now_ms();
        self.db.execute(
            "cancelling a run",
            "UPDATE runs SET cancel_requested = 1, updated_ms = $1 WHERE id = $2 AND finished_ms IS NULL",
            &[now.into(), id.into()],
        )?;
        self.db.execute(
            "cancelling a queued run",
            "UPDATE runs SET status = 'cancelled', finished_ms = $1, updated_ms = $1, \
             error_public = 'cancelled while queued' WHERE id = $2 AND status = 'queued'",
            &[now.into(), id.into()],
        )?;
        self.get_run(id)
    }

    /// The runs of `instance` someone asked to stop.
    pub fn cancel_requests(&self, instance: &str) -> Result<Vec<String>, ControlError> {
        self.db.query(
            "reading cancel requests",
            "SELECT id FROM runs WHERE instance = $1 AND cancel_requested = 1 AND finished_ms IS NULL",
            &[instance.into()],
            |r| r.text(0),
        )
    }

    /// Extend the lease of every unfinished run `instance` holds to `lease` from now.
    pub fn heartbeat(&self, instance: &str, lease: Duration) -> Result<u64, ControlError> {
        let now = now_ms();
        self.db.execute(
            "renewing leases",
            "UPDATE runs SET lease_until = $1 WHERE instance = $2 AND finished_ms IS NULL AND status <> 'queued'",
            &[(now + ms(lease)).into(), instance.into()],
        )
    }

    /// Remove run `id` (a request refused before it ran: never a run).
    pub fn forget_run(&self, id: &str) -> Result<(), ControlError> {
        self.db.execute("forgetting a run", "DELETE FROM runs WHERE id = $1", &[id.into()])?;
        Ok(())
    }

    /// Record the multipart upload a run is writing (None: none any more).
    pub fn set_upload(&self, id: &str, upload: Option<&str>) -> Result<(), ControlError> {
        self.db.execute(
            "recording an upload",
            "UPDATE runs SET upload = $1 WHERE id = $2",
            &[upload.map(String::from).into(), id.into()],
        )?;
        Ok(())
    }

    /// Record an output ream wrote.
    pub fn record_output(&self, o: &OutputRecord) -> Result<(), ControlError> {
        self.db.execute(
            "recording an output",
            "INSERT INTO outputs (name, run_id, report, bytes, created_ms) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (name) DO UPDATE SET bytes = excluded.bytes, created_ms = excluded.created_ms",
            &[
                o.name.as_str().into(),
                o.run_id.as_str().into(),
                o.report.as_str().into(),
                (o.bytes as i64).into(),
                o.created_ms.into(),
            ],
        )?;
        Ok(())
    }

    /// Every output ream wrote and has not removed, oldest first.
    pub fn outputs(&self) -> Result<Vec<OutputRecord>, ControlError> {
        self.db.query(
            "listing outputs",
            "SELECT name, run_id, report, bytes, created_ms FROM outputs ORDER BY created_ms, name",
            &[],
            |r| {
                Ok(OutputRecord {
                    name: r.text(0)?,
                    run_id: r.text(1)?,
                    report: r.text(2)?,
                    bytes: r.int(3)?.max(0) as u64,
                    created_ms: r.int(4)?,
                })
            },
        )
    }

    /// An output was removed: forget it, and its run no longer has one.
    pub fn forget_output(&self, name: &str) -> Result<(), ControlError> {
        self.db.execute("forgetting an output", "DELETE FROM outputs WHERE name = $1", &[name.into()])?;
        self.db.execute(
            "forgetting an output",
            "UPDATE runs SET output_name = NULL, output_bytes = NULL WHERE output_name = $1",
            &[name.into()],
        )?;
        Ok(())
    }

    /// Keep the newest `keep` finished runs; remove older finished ones.
    pub fn prune_runs(&self, keep: usize) -> Result<u64, ControlError> {
        let keep = keep.min(i64::MAX as usize) as i64;
        let n = self.db.execute(
            "pruning runs",
            "DELETE FROM runs WHERE finished_ms IS NOT NULL AND id NOT IN \
             (SELECT id FROM runs WHERE finished_ms IS NOT NULL ORDER BY created_ms DESC, id DESC LIMIT $1)",
            &[keep.into()],
        )?;
        self.db.execute(
            "pruning deliveries",
            "DELETE FROM deliveries WHERE run_id NOT IN (SELECT id FROM runs)",
            &[],
        )?;
        Ok(n)
    }

    /// Queued runs, in all.
    pub fn queue_depth(&self) -> Result<u64, ControlError> {
        let n = self
            .db
            .query("counting the queue", "SELECT count(*) FROM runs WHERE status = 'queued'", &[], |r| r.int(0))?;
        Ok(n.first().copied().unwrap_or(0).max(0) as u64)
    }

    /// Queued runs ahead of run `id`, plus one (None if it is not queued).
    pub fn queue_position(&self, id: &str) -> Result<Option<u64>, ControlError> {
        let n = self.db.query(
            "reading a queue position",
            "SELECT (SELECT count(*) FROM runs q WHERE q.status = 'queued' AND \
             (q.created_ms < r.created_ms OR (q.created_ms = r.created_ms AND q.id < r.id))) \
             FROM runs r WHERE r.id = $1 AND r.status = 'queued'",
            &[id.into()],
            |r| r.int(0),
        )?;
        Ok(n.first().map(|n| n.max(&0) + 1).map(|n| n as u64))
    }

    /// Claim the next queued run for `instance` under a lease, if any fits the limits.
    /// Of the queued runs whose actor and source are under their limits, the one whose
    /// actor has been served least while it waited goes first: fewest runs active, or
    /// started since it was queued; then the oldest. So one actor's backlog does not hold
    /// up another's run, and actors take turns. Its attempt goes up by one.
    pub fn claim(
        &self,
        instance: &str,
        lease: Duration,
        limits: ClaimLimits,
    ) -> Result<Option<RunRecord>, ControlError> {
        let now = now_ms();
        let skip = if self.db.is_postgres() { " FOR UPDATE SKIP LOCKED" } else { "" };
        let active = "status IN ('preparing', 'running')";
        let sql = format!(
            "UPDATE runs SET status = 'preparing', instance = $1, attempt = attempt + 1, lease_until = $2, \
             updated_ms = $3, claimed_ms = $3, cancel_requested = 0 WHERE id = (SELECT c.id FROM runs c WHERE c.status = 'queued' \
             AND (SELECT count(*) FROM runs a WHERE a.actor = c.actor AND a.{active}) < $4 \
             AND (SELECT count(*) FROM runs s WHERE s.source_key = c.source_key AND s.{active}) < $5 \
             ORDER BY (SELECT count(*) FROM runs a WHERE a.actor = c.actor \
             AND (a.{active} OR a.claimed_ms >= c.created_ms)), c.created_ms, c.id \
             LIMIT 1{skip}) RETURNING {RUN_COLUMNS}"
        );
        let params = vec![
            instance.into(),
            (now + ms(lease)).into(),
            now.into(),
            bound(limits.per_actor).into(),
            bound(limits.per_source).into(),
        ];
        Ok(self.db.serialized("claiming a run", CLAIM_LOCK, &[(&sql, params)], read_run)?.into_iter().next())
    }

    /// Runs whose instance stopped renewing their lease: async runs go back to the queue
    /// (to run again from the start, their partial upload still recorded for whoever
    /// claims them to abort); sync runs, whose client went with the instance, fail.
    /// Returns the runs requeued or failed.
    pub fn expire_leases(&self) -> Result<Vec<RunRecord>, ControlError> {
        let now = now_ms();
        let expired = self.db.query(
            "finding expired leases",
            &format!(
                "SELECT {RUN_COLUMNS} FROM runs WHERE finished_ms IS NULL AND status <> 'queued' AND lease_until < $1"
            ),
            &[now.into()],
            read_run,
        )?;
        for run in &expired {
            let (status, error) = match (run.mode.as_str(), run.cancel_requested) {
                ("async", false) => ("queued", None),
                (_, true) => ("cancelled", Some("cancelled; its instance stopped")),
                _ => ("failed", Some("the instance streaming it stopped")),
            };
            self.db.execute(
                "expiring a lease",
                "UPDATE runs SET status = $1, error_public = $2, updated_ms = $3, instance = NULL, \
                 finished_ms = CASE WHEN $1 = 'queued' THEN NULL ELSE $3 END \
                 WHERE id = $4 AND attempt = $5 AND finished_ms IS NULL AND lease_until < $3",
                &[
                    status.into(),
                    error.map(String::from).into(),
                    now.into(),
                    run.id.as_str().into(),
                    run.attempt.into(),
                ],
            )?;
        }
        Ok(expired)
    }

    /// Async runs of `instance` go back to the queue for another instance: on shutdown,
    /// or when a claimed run found no room after all. A run that had not `started` gets
    /// its attempt back; one that had keeps it, and its upload stays recorded for whoever
    /// claims it next to abort. A run someone asked to cancel stays. Returns how many
    /// went back.
    pub fn release(&self, instance: &str, ids: &[String], started: bool) -> Result<u64, ControlError> {
        let mut n = 0;
        for id in ids {
            n += self.db.execute(
                "handing a run back",
                "UPDATE runs SET status = 'queued', instance = NULL, lease_until = NULL, updated_ms = $3, \
                 attempt = attempt - $4 \
                 WHERE id = $1 AND instance = $2 AND mode = 'async' AND status IN ('preparing', 'running') \
                 AND cancel_requested = 0 AND finished_ms IS NULL",
                &[id.as_str().into(), instance.into(), now_ms().into(), i64::from(!started).into()],
            )?;
        }
        Ok(n)
    }

    /// Every queued run's id, in the order it was queued.
    pub fn queue_order(&self) -> Result<Vec<String>, ControlError> {
        self.db.query(
            "reading the queue",
            "SELECT id FROM runs WHERE status = 'queued' ORDER BY created_ms, id",
            &[],
            |r| r.text(0),
        )
    }
}
