//! The two loops behind schedules. The scheduler looks at every enabled schedule each
//! second and records the fires that are due (`ream_schedule::due`), each with its run
//! queued as the owner and its deliveries pending; the control store lets one instance's
//! look win, so a fire happens once however many instances look. The deliverer claims
//! deliveries whose run has succeeded, under a lease, and makes one attempt each: sent,
//! or pending again after a backoff that doubles, or failed past the last attempt. A
//! retry sends the stored output again; the query does not run again.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use ream_control::{Delivery, DeliveryStatus, RunRecord};
use ream_deliver::{DeliverError, Target, TargetConfig};
use serde_json::json;

use crate::schedules::{fire_of, Saved};
use crate::AppState;

/// Look at the schedules every second (on the second), until the server drains.
pub async fn scheduler(state: AppState) {
    loop {
        let ms = Utc::now().timestamp_subsec_millis();
        tokio::time::sleep(Duration::from_millis(u64::from(1000 - ms.min(999)))).await;
        if state.is_draining() {
            return;
        }
        let s = state.clone();
        if let Ok(true) = tokio::task::spawn_blocking(move || look(&s)).await {
            state.wake.notify_one();
        }
    }
}

/// One look at every enabled schedule. True: fires were recorded.
fn look(state: &AppState) -> bool {
    let schedules = match state.control.list_schedules(None) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!("scheduler: {e}");
            return false;
        }
    };
    let mut fired = false;
    for record in schedules.into_iter().filter(|s| s.enabled) {
        let saved = match Saved::of(&record) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("schedule {}: {e}", record.id);
                continue;
            }
        };
        let now = Utc::now();
        let checked = DateTime::from_timestamp_millis(record.checked_ms).unwrap_or(now);
        let due = ream_schedule::due(&saved.cadence, checked, now, saved.wire.catch_up);
        if due.is_empty() {
            continue;
        }
        let fires = due.iter().map(|f| (f.timestamp_millis(), fire_of(state, &record, &saved, *f))).collect();
        let targets: Vec<_> = saved.wire.deliver.iter().map(|t| json!(t)).collect();
        let window = Some((record.checked_ms, now.timestamp_millis()));
        match state.registry.fire(&record.id, window, fires, &targets) {
            Ok(runs) => fired |= !runs.is_empty(),
            Err(e) => tracing::warn!("schedule {}: {e}", record.id),
        }
    }
    fired
}

/// Claim and send due deliveries every second, until the server drains.
pub async fn deliverer(state: AppState) {
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        if state.is_draining() {
            return;
        }
        let s = state.clone();
        let _ = tokio::task::spawn_blocking(move || deliver_due(&s)).await;
    }
}

/// Send every delivery due now, one at a time.
fn deliver_due(state: &AppState) {
    let instance = &state.registry.instance;
    while !state.is_draining() {
        let delivery = match state.control.claim_delivery(instance, state.config.lease) {
            Ok(Some(d)) => d,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!("deliveries: {e}");
                return;
            }
        };
        let outcome = match state.control.get_run(&delivery.run_id) {
            Ok(Some(run)) => attempt(state, &run, &delivery),
            Ok(None) => Err(DeliverError::Target("its run is gone".into())),
            Err(e) => Err(DeliverError::Target(e.to_string())),
        };
        record(state, &delivery, outcome);
    }
}

/// Record an attempt's outcome: a target that cannot work fails at once; others are
/// retried after `backoff × 2^(attempt-1)` until the last attempt.
fn record(state: &AppState, d: &Delivery, outcome: Result<(), DeliverError>) {
    let config = &state.config.delivery;
    let (status, error, retry_at) = match outcome {
        Ok(()) => (DeliveryStatus::Sent, None, 0),
        Err(e) => {
            let last = d.attempts >= i64::from(config.attempts) || matches!(e, DeliverError::Target(_));
            let wait = config.backoff.saturating_mul(1 << (d.attempts - 1).clamp(0, 16) as u32);
            let status = if last { DeliveryStatus::Failed } else { DeliveryStatus::Pending };
            tracing::warn!("run {}: delivery {} attempt {}: {e}", d.run_id, d.position, d.attempts);
            (status, Some(e.to_string()), ream_control::now_ms() + wait.as_millis().min(i64::MAX as u128) as i64)
        }
    };
    if let Err(e) = state.control.record_delivery(d, &state.registry.instance, status, error.as_deref(), retry_at) {
        tracing::warn!("deliveries: {e}");
    }
}

/// One attempt at delivery `d` of `run`.
fn attempt(state: &AppState, run: &RunRecord, d: &Delivery) -> Result<(), DeliverError> {
    let config: TargetConfig =
        serde_json::from_value(d.target.clone()).map_err(|e| DeliverError::Target(format!("its target: {e}")))?;
    let parameters = run.request["parameters"].as_object().cloned().unwrap_or_default();
    let names: Vec<&str> = parameters.keys().map(String::as_str).collect();
    let bursts = run.request["burst"] == true;
    let target = config.check(&state.delivery_policy(), &names, bursts)?;
    let (name, bytes) = run.output.clone().ok_or_else(|| DeliverError::Target("the run kept no output".into()))?;
    let facts = facts(state, run, &parameters, bytes);
    let key = format!("{}.{}", run.id, d.position);
    let format = ream_engine::Format::from_name(&run.format).unwrap_or(ream_engine::Format::Csv);
    let send = Send { state, run, target: &target, format };
    if bursts {
        return send_bursts(&send, d, &name, &facts, &parameters);
    }
    let summary = summary(run, &facts, &parameters, json!(null));
    send.one(&facts, &name, &summary, &key, None)
}

/// What every send of one attempt shares.
struct Send<'a> {
    state: &'a AppState,
    run: &'a RunRecord,
    target: &'a Target,
    format: ream_engine::Format,
}

impl Send<'_> {
    /// Send the stored output `name` (a burst's, with `burst_to`), its templates filled
    /// from `facts`.
    fn one(
        &self,
        facts: &BTreeMap<String, String>,
        name: &str,
        summary: &serde_json::Value,
        key: &str,
        burst_to: Option<&str>,
    ) -> Result<(), DeliverError> {
        let bytes = facts["bytes"].parse().unwrap_or(0);
        let delivery = ream_deliver::Delivery {
            facts,
            outputs: &self.state.outputs,
            output_name: name,
            bytes,
            filename: &facts["filename"],
            content_type: self.format.content_type(),
            link: &facts["link"],
            key,
            summary,
            burst_to,
        };
        self.state.senders.send(self.target, &delivery)
    }
}

/// The webhook's description of a run (`bursts`: each burst's file, for a burst run).
fn summary(
    run: &RunRecord,
    facts: &BTreeMap<String, String>,
    parameters: &serde_json::Map<String, serde_json::Value>,
    bursts: serde_json::Value,
) -> serde_json::Value {
    let mut v = json!({
        "event": "run.succeeded",
        "run": run.id,
        "report": run.report,
        "schedule": run.schedule.as_ref().map(|s| &s.0),
        "fire_time": facts["fire_time"],
        "format": run.format,
        "parameters": parameters,
        "rows": run.snapshot["rows"],
        "bytes": facts["bytes"].parse::<u64>().unwrap_or(0),
        "link": facts["link"],
    });
    if !bursts.is_null() {
        v["bursts"] = bursts;
    }
    v
}

/// A burst run's delivery: a webhook gets one POST listing every burst; mail and store
/// targets send each burst on its own, from the first not yet sent (`d.done`), counting
/// each as it goes. A burst whose recipient cannot be mailed (outside the allowed
/// domains, not an address) is passed over and named in the error at the end; any other
/// failure ends the attempt, to be retried from that burst.
fn send_bursts(
    send: &Send<'_>,
    d: &Delivery,
    name: &str,
    facts: &BTreeMap<String, String>,
    parameters: &serde_json::Map<String, serde_json::Value>,
) -> Result<(), DeliverError> {
    let (state, run) = (send.state, send.run);
    let manifest = state.outputs.read_all(&crate::runs::readable(name, true))?;
    let manifest: serde_json::Value =
        serde_json::from_slice(&manifest).map_err(|e| DeliverError::Target(format!("its manifest: {e}")))?;
    let files = manifest["files"].as_array().cloned().unwrap_or_default();
    let link = |path: &str| state.part_link(&run.id, Some(path));
    if matches!(send.target, Target::Webhook(_)) {
        let listed = files
            .iter()
            .map(|f| json!({"path": f["path"], "to": f["to"], "rows": f["rows"], "bytes": f["bytes"], "link": link(f["path"].as_str().unwrap_or(""))}))
            .collect();
        let key = format!("{}.{}", run.id, d.position);
        return send.one(facts, name, &summary(run, facts, parameters, listed), &key, None);
    }
    let policy = state.delivery_policy();
    let mut refused = Vec::new();
    for (i, file) in files.iter().enumerate().skip(d.done.max(0) as usize) {
        let path = file["path"].as_str().unwrap_or("");
        let to = file["to"].as_str();
        let mut own = facts.clone();
        own.insert("filename".into(), path.rsplit('/').next().unwrap_or(path).to_string());
        own.insert("to".into(), to.unwrap_or("").to_string());
        own.insert(
            "burst".into(),
            file["partition"]
                .as_object()
                .and_then(|p| p.values().next())
                .map_or(String::new(), |v| v.as_str().unwrap_or("").to_string()),
        );
        own.insert("rows".into(), file["rows"].to_string());
        own.insert("bytes".into(), file["bytes"].to_string());
        own.insert("link".into(), link(path));
        let key = format!("{}.{}.{}", run.id, d.position, i + 1);
        let checked = match (send.target, to) {
            (Target::Email(_), Some(to)) => ream_deliver::check_recipient(to, &policy),
            _ => Ok(()),
        };
        let sent = checked.and_then(|()| send.one(&own, &format!("{name}/{path}"), &json!(null), &key, to));
        match sent {
            Ok(()) => {}
            Err(DeliverError::Target(why)) => refused.push(format!("{path}: {why}")),
            Err(e) => return Err(e),
        }
        state
            .control
            .delivery_progress(d, &state.registry.instance, i as i64 + 1)
            .map_err(|e| DeliverError::Target(e.to_string()))?;
    }
    match refused.is_empty() {
        true => Ok(()),
        false => Err(DeliverError::Target(format!(
            "{} of {} bursts not sent: {}",
            refused.len(),
            files.len(),
            refused.join("; ")
        ))),
    }
}

/// What a delivery's templates may read of `run`: [`ream_deliver::FACTS`] and its
/// parameters (a list as `a, b`). Dates are on the schedule's wall clock.
fn facts(
    state: &AppState,
    run: &RunRecord,
    parameters: &serde_json::Map<String, serde_json::Value>,
    bytes: u64,
) -> BTreeMap<String, String> {
    let text = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Array(items) => {
            items.iter().map(|i| i.as_str().map_or(i.to_string(), String::from)).collect::<Vec<_>>().join(", ")
        }
        other => other.to_string(),
    };
    let mut facts: BTreeMap<String, String> = parameters.iter().map(|(k, v)| (k.clone(), text(v))).collect();
    let fire = run.schedule.as_ref().and_then(|s| DateTime::from_timestamp_millis(s.1)).unwrap_or_else(Utc::now);
    let local = ream_schedule::in_zone(fire, run.request["schedule"]["timezone"].as_str().unwrap_or("UTC"));
    let fire_date = local.format("%Y-%m-%d").to_string();
    let format = ream_engine::Format::from_name(&run.format).unwrap_or(ream_engine::Format::Csv);
    for (k, v) in [
        ("report", run.report.clone()),
        ("schedule", run.schedule.as_ref().map(|s| s.0.clone()).unwrap_or_default()),
        ("run", run.id.clone()),
        ("fire_time", local.to_rfc3339_opts(SecondsFormat::Secs, true)),
        ("filename", format!("{}-{fire_date}.{}", run.report, format.name())),
        ("fire_date", fire_date),
        ("rows", text(&run.snapshot["rows"])),
        ("bytes", bytes.to_string()),
        ("format", run.format.clone()),
        ("link", state.output_link(&run.id)),
    ] {
        facts.insert(k.to_string(), v);
    }
    facts
}
