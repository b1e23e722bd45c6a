//! Runs whose instance stopped: every two seconds each instance expires the leases
//! nobody renews (async runs go back to the queue, sync runs fail: their client went
//! with the instance), then claims queued runs while it has room and runs them again
//! from the start as their owner, after aborting the upload the last attempt left.

use ream_control::{ClaimLimits, RunRecord, RunStatus};

use crate::error::ApiError;
use crate::found::control;
use crate::registry::{Mode, RunRequest};
use crate::{runs, AppState, Caller};

/// Expire dead leases, then claim and start queued runs while there is room.
pub async fn take_over(state: &AppState) {
    if state.is_draining() {
        return;
    }
    if let Err(e) = control(state, |c| c.expire_leases()).await {
        eprintln!("ream: {e}");
        return;
    }
    while state.limit.available_permits() > 0 && !state.is_draining() {
        let (instance, lease) = (state.registry.instance.clone(), state.config.lease);
        let limits = ClaimLimits { per_actor: usize::MAX, per_source: usize::MAX };
        match control(state, move |c| c.claim(&instance, lease, limits)).await {
            Ok(Some(record)) => start_again(state, record).await,
            Ok(None) => return,
            Err(e) => {
                eprintln!("ream: {e}");
                return;
            }
        }
    }
}

/// Run a claimed run again, as the actor who asked for it.
async fn start_again(state: &AppState, record: RunRecord) {
    let (outputs, upload) = (state.outputs.clone(), record.upload.clone());
    if let Some(upload) = upload.as_deref().and_then(|u| serde_json::from_str::<ream_outputs::UploadRecord>(u).ok()) {
        let id = record.id.clone();
        let aborted = control(state, move |c| {
            if let Err(e) = outputs.abort(&upload) {
                eprintln!("ream: run {id}: aborting the last attempt's upload: {e}");
            }
            c.set_upload(&id, None)
        })
        .await;
        if let Err(e) = aborted {
            eprintln!("ream: {e}");
        }
    }
    let (id, attempt) = (record.id.clone(), record.attempt);
    let result = match request_of(state, &record) {
        Ok((caller, req)) => runs::prepare_run(state, &caller, req, ream_engine::Compression::None).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(ready) => runs::store(state.clone(), ready),
        // No room after all, or shutting down: back to the queue for another instance.
        Err(ApiError::TooManyRuns { .. } | ApiError::ShuttingDown) => {
            let instance = state.registry.instance.clone();
            let _ = control(state, move |c| c.release(&instance, &[id])).await;
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
                eprintln!("ream: {e}");
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
    let parsed = crate::request::RunBody::parse(body.to_string().as_bytes())?;
    let admin = state.auth.as_ref().is_none_or(|a| a.is_admin(&actor));
    let req = RunRequest {
        report: parsed.report,
        format: parsed.format,
        parameters: parsed.parameters,
        actor: actor.clone(),
        mode: Mode::Async,
        split: parsed.split,
        client: crate::audit::Client::default(),
        record: record.request.clone(),
        again: Some((record.id.clone(), record.attempt)),
    };
    Ok((Caller { actor, admin }, req))
}
