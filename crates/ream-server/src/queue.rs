//! The queue: every async run waits in the control store until an instance claims it.
//! Each instance claims while it has room (`--max-runs`), as soon as it is woken (a run
//! queued here, a slot freed) and at least every two seconds, under the cluster-wide
//! limits per actor and per source. Before claiming it expires the leases nobody renews
//! (async runs go back to the queue, sync runs fail: their client went with the
//! instance). A claimed run starts from the start as the actor who asked for it, after
//! the upload its last attempt left is aborted.

use std::time::Duration;

use ream_control::{RunRecord, RunStatus};

use crate::error::ApiError;
use crate::found::control;
use crate::metrics as m;
use crate::registry::{Mode, RunRequest};
use crate::{runs, AppState, Caller};

/// Claim runs whenever woken, and every two seconds (runs queued on other instances,
/// leases that expired), until the server drains.
pub async fn claimer(state: AppState) {
    loop {
        tokio::select! {
            _ = state.wake.notified() => {}
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
        }
        if state.is_draining() {
            return;
        }
        claim_while_room(&state).await;
        if let Ok(depth) = control(&state, |c| c.queue_depth()).await {
            ::metrics::gauge!(m::QUEUE_DEPTH).set(depth as f64);
        }
    }
}

/// Expire dead leases, then claim and start queued runs while there is room.
async fn claim_while_room(state: &AppState) {
    if let Err(e) = control(state, |c| c.expire_leases()).await {
        tracing::warn!("{e}");
        return;
    }
    while !state.is_draining() {
        let Ok(slot) = runs::Slot::take(state) else { return };
        let (instance, lease, limits) = (state.registry.instance.clone(), state.config.lease, state.claim_limits());
        match control(state, move |c| c.claim(&instance, lease, limits)).await {
            Ok(Some(record)) => {
                // Starting waits for the first batch: the next claim need not.
                let s = state.clone();
                tokio::spawn(async move { start_claimed(&s, record, slot).await });
            }
            Ok(None) => return,
            Err(e) => {
                tracing::warn!("{e}");
                return;
            }
        }
    }
}

/// On shutdown, past the grace period: this instance's async runs still going go back to
/// the queue and stop here, for another instance (or this one, restarted) to run again.
/// One still preparing gets its attempt back.
pub async fn hand_back(state: &AppState) {
    let runs: Vec<_> = state.registry.active().into_iter().filter(|r| r.mode == Mode::Async).collect();
    if runs.is_empty() {
        return;
    }
    let ids = |started: bool| -> Vec<String> {
        (runs.iter()).filter(|r| (r.status() != RunStatus::Preparing) == started).map(|r| r.id.clone()).collect()
    };
    let (instance, preparing, running) = (state.registry.instance.clone(), ids(false), ids(true));
    let released =
        control(state, move |c| Ok(c.release(&instance, &preparing, false)? + c.release(&instance, &running, true)?));
    match released.await {
        Ok(n) => tracing::info!("handed {n} runs back to the queue"),
        Err(e) => tracing::warn!("{e}"),
    }
    // Their ends are no longer this instance's to record: the control store refuses them.
    for run in runs {
        run.cancel.cancel();
    }
}

/// Start a claimed run, as the actor who asked for it.
async fn start_claimed(state: &AppState, record: RunRecord, slot: runs::Slot) {
    let (outputs, upload) = (state.outputs.clone(), record.upload.clone());
    if let Some(upload) = upload.as_deref().and_then(|u| serde_json::from_str::<ream_outputs::UploadRecord>(u).ok()) {
        let id = record.id.clone();
        let aborted = control(state, move |c| {
            if let Err(e) = outputs.abort(&upload) {
                tracing::warn!("run {id}: aborting the last attempt's upload: {e}");
            }
            c.set_upload(&id, None)
        })
        .await;
        if let Err(e) = aborted {
            tracing::warn!("{e}");
        }
    }
    let (id, attempt) = (record.id.clone(), record.attempt);
    let result = match request_of(state, &record) {
        Ok((caller, req)) => runs::prepare_run(state, &caller, req, ream_engine::Compression::None, slot, None).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(ready) => runs::store(state.clone(), ready),
        // No room after all, or shutting down: back to the queue for another instance.
        Err(ApiError::TooManyRuns { .. } | ApiError::ShuttingDown) => {
            let instance = state.registry.instance.clone();
            let _ = control(state, move |c| c.release(&instance, &[id], false)).await;
        }
        // Refused before it was registered here (its report is gone, its actor lost the
        // role): the run fails, saying why.
        Err(e) if state.registry.get(&id).is_none() => {
            let (instance, message, snapshot) = (state.registry.instance.clone(), e.to_string(), record.snapshot);
            let failed = control(state, move |c| {
                let update = ream_control::RunUpdate {
                    status: RunStatus::Failed,
                    snapshot: &snapshot,
                    error_public: Some(&message),
                    output: None,
                };
                c.update_run(&id, &instance, attempt, &update)
            })
            .await;
            if let Err(e) = failed {
                tracing::warn!("{e}");
            }
        }
        // prepare_run recorded the failure.
        Err(_) => {}
    }
}

/// The request and caller a stored run was made with.
fn request_of(state: &AppState, record: &RunRecord) -> Result<(Caller, RunRequest), ApiError> {
    let mut body = record.request.clone();
    let actor = body.as_object_mut().and_then(|o| o.remove("actor")).unwrap_or_default();
    let actor: ream_core::Actor = serde_json::from_value(actor)
        .map_err(|e| ApiError::Internal(format!("run `{}`: its recorded actor: {e}", record.id)))?;
    let client = body.as_object_mut().and_then(|o| o.remove("client")).unwrap_or_default();
    let client = serde_json::from_value(client).unwrap_or_default();
    // A fire's run: the schedule is the run record's own column.
    body.as_object_mut().map(|o| o.remove("schedule"));
    let parsed = crate::request::RunBody::parse(body.to_string().as_bytes())?;
    let admin = state.auth.as_ref().is_none_or(|a| a.is_admin(&actor));
    let req = RunRequest {
        report: parsed.report,
        format: parsed.format,
        parameters: parsed.parameters,
        actor: actor.clone(),
        mode: Mode::Async,
        split: parsed.split,
        burst: parsed.burst,
        client,
        record: record.request.clone(),
        again: Some((record.id.clone(), record.attempt)),
        checked: None,
        schedule: record.schedule.clone(),
    };
    Ok((Caller { actor, admin }, req))
}
