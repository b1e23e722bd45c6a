//! Schedules, their fires and the deliveries of scheduled runs. A fire is a row keyed by
//! (schedule, fire time), written with its run and deliveries in one transaction by the
//! instance whose look at the schedule moved its `checked_ms` on: however many instances
//! look, each fire is made once. Deliveries are claimed under a lease like runs.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::db::{Row, P};
use crate::{insert_params, insert_values, ms, now_ms, Control, ControlError, NewRun, INSERT_COLUMNS};

/// Fires, like claims, are decided one at a time across the cluster.
const FIRE_LOCK: i64 = 0x7265_616d_0002;
const DELIVERY_LOCK: i64 = 0x7265_616d_0003;

/// A schedule as the control store holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct ScheduleRecord {
    pub id: String,
    /// The owner's `sub`: who sees and edits it.
    pub owner: String,
    /// The owner's actor as it was when they saved the schedule (sub, roles, claims).
    pub actor: serde_json::Value,
    /// The schedule as its owner wrote it (report, cron, deliver…).
    pub body: serde_json::Value,
    pub enabled: bool,
    /// Where the last look at it ended: fires after this are still to be made.
    pub checked_ms: i64,
    pub created_ms: i64,
    pub updated_ms: i64,
}

/// One fire of a schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FireRecord {
    pub schedule_id: String,
    pub fire_ms: i64,
    /// The run it made (None: refused before it ran, see `error`).
    pub run_id: Option<String>,
    pub error: Option<String>,
    pub created_ms: i64,
}

/// A fire to record: its run (queued), or why it could not run.
pub struct NewFire<'a> {
    pub fire_ms: i64,
    pub run: Result<NewRun<'a>, String>,
    /// What the run delivers once it succeeds, one target each.
    pub deliveries: &'a [serde_json::Value],
}

/// Where a delivery is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryStatus {
    /// Waiting for its run to succeed, or for its next attempt.
    Pending,
    /// Claimed by an instance, being sent.
    Sending,
    Sent,
    /// Out of attempts.
    Failed,
    /// Its run did not succeed: nothing to send.
    Skipped,
}

impl DeliveryStatus {
    pub fn name(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Sending => "sending",
            DeliveryStatus::Sent => "sent",
            DeliveryStatus::Failed => "failed",
            DeliveryStatus::Skipped => "skipped",
        }
    }

    fn parse(s: &str) -> Option<DeliveryStatus> {
        use DeliveryStatus::*;
        [Pending, Sending, Sent, Failed, Skipped].into_iter().find(|d| d.name() == s)
    }
}

/// One target's delivery of one run.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    pub run_id: String,
    /// The target's place in the schedule's `deliver` list.
    pub position: i64,
    pub target: serde_json::Value,
    pub status: DeliveryStatus,
    pub attempts: i64,
    pub error: Option<String>,
    /// A burst run's delivery: the bursts sent so far, in manifest order.
    pub done: i64,
}

const SCHEDULE_COLUMNS: &str = "id, owner, actor, body, enabled, checked_ms, created_ms, updated_ms";
const DELIVERY_COLUMNS: &str = "run_id, position, target, status, attempts, error, done";

fn json(s: String) -> Result<serde_json::Value, String> {
    serde_json::from_str(&s).map_err(|e| e.to_string())
}

fn read_schedule(r: &dyn Row) -> Result<ScheduleRecord, String> {
    Ok(ScheduleRecord {
        id: r.text(0)?,
        owner: r.text(1)?,
        actor: json(r.text(2)?)?,
        body: json(r.text(3)?)?,
        enabled: r.int(4)? != 0,
        checked_ms: r.int(5)?,
        created_ms: r.int(6)?,
        updated_ms: r.int(7)?,
    })
}

fn read_fire(r: &dyn Row) -> Result<FireRecord, String> {
    Ok(FireRecord {
        schedule_id: r.text(0)?,
        fire_ms: r.int(1)?,
        run_id: r.opt_text(2)?,
        error: r.opt_text(3)?,
        created_ms: r.int(4)?,
    })
}

fn read_delivery(r: &dyn Row) -> Result<Delivery, String> {
    let status = r.text(3)?;
    Ok(Delivery {
        run_id: r.text(0)?,
        position: r.int(1)?,
        target: json(r.text(2)?)?,
        status: DeliveryStatus::parse(&status).ok_or_else(|| format!("unknown delivery status `{status}`"))?,
        attempts: r.int(4)?,
        error: r.opt_text(5)?,
        done: r.int(6)?,
    })
}

impl Control {
    pub fn insert_schedule(&self, s: &ScheduleRecord) -> Result<(), ControlError> {
        self.db.execute(
            "saving a schedule",
            &format!("INSERT INTO schedules ({SCHEDULE_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"),
            &[
                s.id.as_str().into(),
                s.owner.as_str().into(),
                s.actor.to_string().into(),
                s.body.to_string().into(),
                i64::from(s.enabled).into(),
                s.checked_ms.into(),
                s.created_ms.into(),
                s.updated_ms.into(),
            ],
        )?;
        Ok(())
    }

    /// Replace a schedule's body, owner actor and switch. Its fires restart from now:
    /// those an edit skipped over are not made up. False: no such schedule.
    pub fn update_schedule(&self, s: &ScheduleRecord) -> Result<bool, ControlError> {
        let now = now_ms();
        let n = self.db.execute(
            "saving a schedule",
            "UPDATE schedules SET actor = $1, body = $2, enabled = $3, updated_ms = $4, \
             checked_ms = CASE WHEN checked_ms > $4 THEN checked_ms ELSE $4 END WHERE id = $5",
            &[
                s.actor.to_string().into(),
                s.body.to_string().into(),
                i64::from(s.enabled).into(),
                now.into(),
                s.id.as_str().into(),
            ],
        )?;
        Ok(n == 1)
    }

    /// Remove a schedule and its fires (its runs stay, as runs). False: no such schedule.
    pub fn delete_schedule(&self, id: &str) -> Result<bool, ControlError> {
        self.db.execute("removing a schedule's fires", "DELETE FROM fires WHERE schedule_id = $1", &[id.into()])?;
        Ok(self.db.execute("removing a schedule", "DELETE FROM schedules WHERE id = $1", &[id.into()])? == 1)
    }

    pub fn get_schedule(&self, id: &str) -> Result<Option<ScheduleRecord>, ControlError> {
        let sql = format!("SELECT {SCHEDULE_COLUMNS} FROM schedules WHERE id = $1");
        Ok(self.db.query("reading a schedule", &sql, &[id.into()], read_schedule)?.into_iter().next())
    }

    /// Every schedule (of `owner` only, when given), oldest first.
    pub fn list_schedules(&self, owner: Option<&str>) -> Result<Vec<ScheduleRecord>, ControlError> {
        match owner {
            Some(o) => self.db.query(
                "listing schedules",
                &format!("SELECT {SCHEDULE_COLUMNS} FROM schedules WHERE owner = $1 ORDER BY created_ms, id"),
                &[o.into()],
                read_schedule,
            ),
            None => self.db.query(
                "listing schedules",
                &format!("SELECT {SCHEDULE_COLUMNS} FROM schedules ORDER BY created_ms, id"),
                &[],
                read_schedule,
            ),
        }
    }

    /// Record `fires` of schedule `id` in one transaction, each with its row, its queued
    /// run (marked with the schedule and fire time) and its pending deliveries. With a
    /// `window` (checked, now), a look of the scheduler: only if the schedule's
    /// `checked_ms` is still `checked`, which moves to `now`. False: another instance's
    /// look came first and made these fires, or the mark is already at or past `now`. Without one (a fire asked for by hand), the
    /// fires are recorded as they are.
    pub fn fire(&self, id: &str, window: Option<(i64, i64)>, fires: &[NewFire<'_>]) -> Result<bool, ControlError> {
        // Forward only: a look whose clock is behind the mark (another instance's clock
        // ahead, or a look that waited for the lock) must not move it back, or the fires
        // between would be looked at again.
        let (guard, now) = match window {
            Some((checked, now)) => (
                Some((
                    "UPDATE schedules SET checked_ms = $3 WHERE id = $1 AND checked_ms = $2 AND checked_ms < $3",
                    vec![id.into(), checked.into(), now.into()],
                )),
                now,
            ),
            None => (None, now_ms()),
        };
        let mut statements: Vec<(String, Vec<P>)> = Vec::new();
        for fire in fires {
            let (run_id, error) = match &fire.run {
                Ok(run) => (Some(run.id.to_string()), None),
                Err(e) => (None, Some(e.clone())),
            };
            statements.push((
                "INSERT INTO fires (schedule_id, fire_ms, run_id, error, created_ms) \
                 VALUES ($1, CAST($2 AS BIGINT), $3, $4, CAST($5 AS BIGINT)) \
                 ON CONFLICT (schedule_id, fire_ms) DO NOTHING"
                    .into(),
                vec![id.into(), fire.fire_ms.into(), run_id.into(), error.into(), now_ms().into()],
            ));
            let Ok(run) = &fire.run else { continue };
            statements.extend(fire_run(id, now, fire, run));
        }
        statements.push(("SELECT CAST(1 AS BIGINT)".into(), vec![]));
        let borrowed: Vec<(&str, Vec<P>)> = statements.iter().map(|(s, p)| (s.as_str(), p.clone())).collect();
        Ok(self.db.serialized_if("recording a fire", FIRE_LOCK, guard, &borrowed, |r| r.int(0))?.is_some())
    }

    /// The newest `limit` fires of schedule `id`.
    pub fn fires_of(&self, id: &str, limit: usize) -> Result<Vec<FireRecord>, ControlError> {
        self.db.query(
            "reading fires",
            "SELECT schedule_id, fire_ms, run_id, error, created_ms FROM fires WHERE schedule_id = $1 \
             ORDER BY fire_ms DESC LIMIT $2",
            &[id.into(), crate::bound(limit).into()],
            read_fire,
        )
    }

    /// The newest `limit` runs schedule `id` made.
    pub fn runs_of_schedule(&self, id: &str, limit: usize) -> Result<Vec<crate::RunRecord>, ControlError> {
        self.db.query(
            "listing a schedule's runs",
            &format!(
                "SELECT {} FROM runs WHERE schedule_id = $1 ORDER BY fire_ms DESC, created_ms DESC LIMIT $2",
                crate::RUN_COLUMNS
            ),
            &[id.into(), crate::bound(limit).into()],
            crate::read_run,
        )
    }

    /// A run's deliveries, in the schedule's order.
    pub fn deliveries_of(&self, run_id: &str) -> Result<Vec<Delivery>, ControlError> {
        self.db.query(
            "reading deliveries",
            &format!("SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE run_id = $1 ORDER BY position"),
            &[run_id.into()],
            read_delivery,
        )
    }

    /// Claim the next delivery due for `instance` under a lease: a pending one whose run
    /// has succeeded and whose next attempt is due, or one whose sender stopped renewing
    /// its lease. Deliveries of runs that failed or were cancelled are skipped first.
    /// Its attempts go up by one.
    pub fn claim_delivery(&self, instance: &str, lease: Duration) -> Result<Option<Delivery>, ControlError> {
        let now = now_ms();
        let skip = "UPDATE deliveries SET status = 'skipped', error = 'the run did not succeed', updated_ms = $1 \
             WHERE status = 'pending' AND run_id IN (SELECT id FROM runs WHERE status IN ('failed', 'cancelled'))";
        let claim = format!(
            "UPDATE deliveries SET status = 'sending', instance = $2, lease_until = $3, attempts = attempts + 1, \
             updated_ms = $1 WHERE run_id || '/' || CAST(position AS TEXT) = (SELECT d.run_id || '/' || CAST(d.position AS TEXT) \
             FROM deliveries d JOIN runs r ON r.id = d.run_id WHERE r.status = 'succeeded' \
             AND ((d.status = 'pending' AND d.next_ms <= $1) OR (d.status = 'sending' AND d.lease_until < $1)) \
             ORDER BY d.next_ms, d.run_id, d.position LIMIT 1) RETURNING {DELIVERY_COLUMNS}"
        );
        let statements =
            [(skip, vec![now.into()]), (claim.as_str(), vec![now.into(), instance.into(), (now + ms(lease)).into()])];
        Ok(self.db.serialized("claiming a delivery", DELIVERY_LOCK, &statements, read_delivery)?.into_iter().next())
    }

    /// Record a claimed delivery's attempt, as `instance`: sent, failed for good, or
    /// pending again with its next attempt at `retry_at_ms`. False: the delivery is no
    /// longer this instance's (its lease expired and another took it).
    pub fn record_delivery(
        &self,
        d: &Delivery,
        instance: &str,
        status: DeliveryStatus,
        error: Option<&str>,
        retry_at_ms: i64,
    ) -> Result<bool, ControlError> {
        let n = self.db.execute(
            "recording a delivery",
            "UPDATE deliveries SET status = $1, error = $2, next_ms = $3, updated_ms = $4, lease_until = NULL \
             WHERE run_id = $5 AND position = $6 AND instance = $7 AND status = 'sending' AND attempts = $8",
            &[
                &[status.name().into(), error.map(String::from).into(), retry_at_ms.into(), now_ms().into()],
                &held(d, instance)[..],
            ]
            .concat(),
        )?;
        Ok(n == 1)
    }

    /// Record that the first `done` bursts of delivery `d` (which `instance` is sending)
    /// are sent, so a retry goes on from the next.
    pub fn delivery_progress(&self, d: &Delivery, instance: &str, done: i64) -> Result<bool, ControlError> {
        let n = self.db.execute(
            "recording a delivery's progress",
            "UPDATE deliveries SET done = $1, updated_ms = $2 \
             WHERE run_id = $3 AND position = $4 AND instance = $5 AND status = 'sending' AND attempts = $6",
            &[&[done.into(), now_ms().into()], &held(d, instance)[..]].concat(),
        )?;
        Ok(n == 1)
    }

    /// Renew the leases of the deliveries `instance` is sending.
    pub fn heartbeat_deliveries(&self, instance: &str, lease: Duration) -> Result<u64, ControlError> {
        self.db.execute(
            "renewing delivery leases",
            "UPDATE deliveries SET lease_until = $1 WHERE instance = $2 AND status = 'sending'",
            &[(now_ms() + ms(lease)).into(), instance.into()],
        )
    }
}

/// The parameters that name delivery `d` as `instance` holds it (this attempt, being sent):
/// a record from an instance whose lease was taken over matches nothing.
fn held(d: &Delivery, instance: &str) -> [P; 4] {
    [d.run_id.as_str().into(), d.position.into(), instance.into(), d.attempts.into()]
}

/// The statements that queue a fire's run (only if the fire row is this run's: a fire
/// made already keeps its own) and its deliveries.
fn fire_run(id: &str, now: i64, fire: &NewFire<'_>, run: &NewRun<'_>) -> Vec<(String, Vec<P>)> {
    let mine = "EXISTS (SELECT 1 FROM fires WHERE schedule_id = $1 AND fire_ms = $2 AND run_id = $3)";
    let base = |extra: Vec<P>| [vec![id.into(), fire.fire_ms.into(), run.id.into()], extra].concat();
    // The run's own parameters follow the three of `mine`.
    let values = insert_values(|n, t| format!("CAST(${} AS {t})", n + 3));
    let mut out = vec![
        (format!("INSERT INTO runs ({INSERT_COLUMNS}) SELECT {values} WHERE {mine}"), base(insert_params(run))),
        (format!("UPDATE runs SET schedule_id = $1, fire_ms = $2 WHERE id = $3 AND {mine}"), base(vec![])),
    ];
    for (position, target) in fire.deliveries.iter().enumerate() {
        out.push((
            format!(
                "INSERT INTO deliveries (run_id, position, target, status, next_ms, updated_ms) \
                 SELECT $3, CAST($4 AS BIGINT), $5, 'pending', CAST($6 AS BIGINT), CAST($6 AS BIGINT) WHERE {mine}"
            ),
            base(vec![(position as i64).into(), target.to_string().into(), now.into()]),
        ));
    }
    out
}
