//! Schedules over HTTP (`/schedules`), and the run each fire makes. A schedule is saved
//! with its owner's actor; every fire runs as that owner as they are at the fire (an API
//! token's roles as configured then), so a revoked role fails the fire with a 403
//! reason instead of running with rights the owner no longer has.

use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, SecondsFormat, Utc};
use ream_control::ScheduleRecord;
use ream_core::Actor;
use ream_schedule::{Cadence, CatchUp};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::error::ApiError;
use crate::found::control;
use crate::registry::{fire_time, Mode, RunRequest};
use crate::{runs, AppState, Caller};

/// The body of `POST /schedules` and `PUT /schedules/{id}` (docs/schedules.md).
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScheduleWire {
    pub report: String,
    #[serde(default = "default_format")]
    pub format: String,
    /// Values may hold date expressions of the fire time: `"{fire_date - 1 month}"`.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub parameters: serde_json::Map<String, serde_json::Value>,
    /// 5 fields (minute hour day month weekday), or 6 with seconds first.
    pub cron: String,
    /// An IANA time zone (default UTC).
    #[serde(default = "default_timezone")]
    pub timezone: String,
    /// Where each successful run goes: `{"email": …}`, `{"webhook": …}`, `{"store": …}`.
    #[serde(default)]
    #[schema(value_type = Vec<Object>)]
    pub deliver: Vec<ream_deliver::TargetConfig>,
    /// Fires missed while every instance was down: `latest` (default), `all` or `none`.
    #[serde(default)]
    #[schema(value_type = CatchUpWire)]
    pub catch_up: CatchUp,
    #[serde(default = "yes")]
    pub enabled: bool,
}

/// `catch_up` as the OpenAPI document shows it (the type is `ream_schedule::CatchUp`).
#[derive(utoipa::ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)]
pub enum CatchUpWire {
    Latest,
    All,
    None,
}

fn default_format() -> String {
    "csv".into()
}

fn default_timezone() -> String {
    "UTC".into()
}

fn yes() -> bool {
    true
}

/// A saved schedule's body, its cadence parsed.
pub struct Saved {
    pub wire: ScheduleWire,
    pub cadence: Cadence,
}

impl Saved {
    /// A stored schedule as it was saved (it parsed then).
    pub fn of(record: &ScheduleRecord) -> Result<Saved, String> {
        let wire: ScheduleWire = serde_json::from_value(record.body.clone()).map_err(|e| e.to_string())?;
        let cadence = Cadence::parse(&wire.cron, &wire.timezone).map_err(|e| e.to_string())?;
        Ok(Saved { wire, cadence })
    }
}

/// The owner's actor as saved: who they were, and whether an API token stood for them.
#[derive(Serialize, Deserialize)]
struct Owner {
    actor: Actor,
    via_token: bool,
}

/// Who a schedule runs as at a fire: its owner as they are now. Without `[auth]`,
/// anonymous. A JWT's owner is as they were when they saved it (there is no one to ask);
/// an API token's has the token's roles as configured now, and none if it is gone.
fn owner_now(state: &AppState, record: &ScheduleRecord) -> Result<Caller, ApiError> {
    let owner: Owner = serde_json::from_value(record.actor.clone())
        .map_err(|e| ApiError::Internal(format!("schedule `{}`: its owner: {e}", record.id)))?;
    let Some(auth) = &state.auth else { return Ok(Caller { actor: owner.actor, admin: true }) };
    let actor = match owner.via_token {
        false => owner.actor,
        true => auth
            .token_actor(&owner.actor.sub)
            .ok_or_else(|| ApiError::Forbidden(format!("the owner `{}` has no API token any more", owner.actor.sub)))?,
    };
    Ok(Caller { admin: auth.is_admin(&actor), actor })
}

/// The saved form of `caller` as an owner.
fn owner_of(state: &AppState, caller: &Caller) -> serde_json::Value {
    let via_token =
        state.auth.as_ref().and_then(|a| a.token_actor(&caller.actor.sub)).is_some_and(|t| t == caller.actor);
    json!(Owner { actor: caller.actor.clone(), via_token })
}

/// The run a fire of `saved` at `fire` makes, as `caller`: its parameters' date
/// expressions filled from the fire time, checked against the report as any run is.
pub fn fire_request(
    state: &AppState,
    caller: &Caller,
    schedule_id: &str,
    saved: &Saved,
    fire: DateTime<Utc>,
) -> Result<RunRequest, ApiError> {
    let spec = (state.catalog().get(&saved.wire.report).cloned())
        .ok_or_else(|| ApiError::UnknownReport(saved.wire.report.clone()))?;
    caller.may_run(&saved.wire.report, &spec)?;
    let local = saved.cadence.local(fire);
    let expand = |v: &serde_json::Value| -> Result<serde_json::Value, ApiError> {
        let one =
            |s: &str| ream_schedule::expand(s, &local).map_err(|e| ApiError::BadRequest(format!("parameters: {e}")));
        Ok(match v {
            serde_json::Value::String(s) => json!(one(s)?),
            serde_json::Value::Array(items) => json!(items
                .iter()
                .map(|i| i.as_str().map_or(Ok(i.clone()), |s| one(s).map(|t| json!(t))))
                .collect::<Result<Vec<_>, _>>()?),
            other => other.clone(),
        })
    };
    let parameters = (saved.wire.parameters.iter())
        .map(|(k, v)| Ok((k.clone(), expand(v)?)))
        .collect::<Result<serde_json::Map<_, _>, ApiError>>()?;
    // A burst report's fires burst: each customer's output to its own recipient.
    let burst = spec.spec().burst.is_some();
    let mut record = json!({ "report": saved.wire.report, "format": saved.wire.format, "parameters": parameters });
    if burst {
        record["burst"] = json!(true);
    }
    let parsed = crate::request::RunBody::parse(record.to_string().as_bytes())?;
    record["actor"] = json!(caller.actor);
    record["client"] = json!(crate::audit::Client::default());
    record["schedule"] = json!({ "id": schedule_id, "timezone": saved.wire.timezone });
    let mut req = RunRequest {
        report: parsed.report,
        format: parsed.format,
        parameters: parsed.parameters,
        actor: caller.actor.clone(),
        mode: Mode::Async,
        split: None,
        burst,
        client: crate::audit::Client::default(),
        record,
        again: None,
        checked: None,
        schedule: Some((schedule_id.to_string(), fire.timestamp_millis())),
    };
    req.checked = Some(runs::check(state, &spec, &req, ream_engine::Compression::None)?);
    Ok(req)
}

/// The run a fire makes, or the reason it makes none (`403: …`), as the fire records it.
pub fn fire_of(
    state: &AppState,
    record: &ScheduleRecord,
    saved: &Saved,
    fire: DateTime<Utc>,
) -> Result<RunRequest, String> {
    owner_now(state, record)
        .and_then(|caller| fire_request(state, &caller, &record.id, saved, fire))
        .map_err(|e| format!("{}: {e}", e.status().as_u16()))
}

/// Parse and check a body as `caller` would run it: its cadence, report, format,
/// parameters (filled at the next fire) and targets.
fn check(state: &AppState, caller: &Caller, body: &[u8]) -> Result<Saved, ApiError> {
    let bad = |e: serde_json::Error| {
        ApiError::BadRequest(format!("request body: {e} (expected {{\"report\", \"cron\", \"deliver\", …}})"))
    };
    // The report first: an unknown one is a 404 whatever else is wrong.
    let loose: serde_json::Value = serde_json::from_slice(body).map_err(bad)?;
    if let Some(report) = loose["report"].as_str().filter(|r| state.catalog().get(r).is_none()) {
        return Err(ApiError::UnknownReport(report.to_string()));
    }
    let wire: ScheduleWire = serde_json::from_value(loose).map_err(bad)?;
    let cadence = Cadence::parse(&wire.cron, &wire.timezone).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let saved = Saved { wire, cadence };
    let next = saved.cadence.next_after(Utc::now()).unwrap_or_else(Utc::now);
    let req = fire_request(state, caller, "check", &saved, next)?;
    let names: Vec<&str> = saved.wire.parameters.keys().map(String::as_str).collect();
    for (i, target) in saved.wire.deliver.iter().enumerate() {
        target
            .check(&state.delivery_policy(), &names, req.burst)
            .map_err(|e| ApiError::BadRequest(format!("deliver[{i}].{e}")))?;
    }
    Ok(saved)
}

/// A schedule as its owner and admins see it.
fn view(record: &ScheduleRecord) -> serde_json::Value {
    let mut v = record.body.clone();
    let next = Saved::of(record).ok().and_then(|s| s.cadence.next_after(Utc::now()));
    v["id"] = json!(record.id);
    v["owner"] = json!(record.owner);
    v["created_at"] = json!(fire_time(record.created_ms));
    v["updated_at"] = json!(fire_time(record.updated_ms));
    v["next_fire"] = json!(next.filter(|_| record.enabled).map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true)));
    v["links"] =
        json!({ "self": format!("/schedules/{}", record.id), "runs": format!("/runs?schedule={}", record.id) });
    v
}

/// Schedule `id` if the caller sees it (its owner, or an admin); else 404.
async fn find(state: &AppState, caller: &Caller, id: &str) -> Result<ScheduleRecord, ApiError> {
    let key = id.to_string();
    let found = control(state, move |c| c.get_schedule(&key)).await?;
    found.filter(|s| caller.sees(&s.owner)).ok_or_else(|| ApiError::UnknownSchedule(id.to_string()))
}

#[utoipa::path(post, path = "/schedules", tag = "schedules", request_body = ScheduleWire,
    responses(
        (status = 201, description = "The schedule, saved; Location names it", body = serde_json::Value),
        (status = 400, description = "A bad cron, time zone, parameter or target", body = crate::error::ErrorBody),
        (status = 403, description = "The caller may not run the report", body = crate::error::ErrorBody),
        (status = 404, description = "No such report", body = crate::error::ErrorBody),
        (status = 415, description = "The body is not application/json", body = crate::error::ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    headers: axum::http::HeaderMap,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Response, ApiError> {
    let body = crate::request::json_body("POST /schedules", &headers, body, state.config.max_body_bytes)?;
    let saved = check(&state, &caller, &body)?;
    let now = ream_control::now_ms();
    let record = ScheduleRecord {
        id: crate::registry::new_run_id(),
        owner: caller.actor.sub.clone(),
        actor: owner_of(&state, &caller),
        body: json!(saved.wire),
        enabled: saved.wire.enabled,
        checked_ms: now,
        created_ms: now,
        updated_ms: now,
    };
    let stored = record.clone();
    control(&state, move |c| c.insert_schedule(&stored)).await?;
    let mut response = (StatusCode::CREATED, Json(view(&record))).into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("/schedules/{}", record.id)) {
        response.headers_mut().insert(header::LOCATION, v);
    }
    Ok(response)
}

#[utoipa::path(get, path = "/schedules", tag = "schedules",
    responses((status = 200, description = "The caller's schedules (an admin's: every one), oldest first", body = serde_json::Value)))]
pub async fn list(State(state): State<AppState>, caller: Caller) -> Result<Json<serde_json::Value>, ApiError> {
    let owner = (!caller.admin).then(|| caller.actor.sub.clone());
    let all = control(&state, move |c| c.list_schedules(owner.as_deref())).await?;
    Ok(Json(json!({ "schedules": all.iter().map(view).collect::<Vec<_>>() })))
}

#[utoipa::path(get, path = "/schedules/{id}", tag = "schedules", params(("id" = String, Path, description = "A schedule id")),
    responses((status = 200, description = "The schedule and its last fires", body = serde_json::Value),
        (status = 404, description = "No such schedule", body = crate::error::ErrorBody)))]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let record = find(&state, &caller, &id).await?;
    let fires = control(&state, move |c| c.fires_of(&id, 20)).await?;
    let mut v = view(&record);
    v["fires"] = json!(fires
        .iter()
        .map(|f| json!({ "fire_time": fire_time(f.fire_ms), "run": f.run_id, "error": f.error }))
        .collect::<Vec<_>>());
    Ok(Json(v))
}

#[utoipa::path(put, path = "/schedules/{id}", tag = "schedules", request_body = ScheduleWire,
    params(("id" = String, Path, description = "A schedule id")),
    responses((status = 200, description = "The schedule, replaced; fires an edit skipped are not made up", body = serde_json::Value),
        (status = 400, description = "A bad cron, time zone, parameter or target", body = crate::error::ErrorBody),
        (status = 404, description = "No such schedule or report", body = crate::error::ErrorBody),
        (status = 415, description = "The body is not application/json", body = crate::error::ErrorBody)))]
pub async fn replace(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    headers: axum::http::HeaderMap,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let body = crate::request::json_body("PUT /schedules/{id}", &headers, body, state.config.max_body_bytes)?;
    let mut record = find(&state, &caller, &id).await?;
    // Checked as the one who will run it: the owner (an admin's edit keeps the owner).
    let runs_as = if caller.actor.sub == record.owner { caller.clone() } else { owner_now(&state, &record)? };
    let saved = check(&state, &runs_as, &body)?;
    if caller.actor.sub == record.owner {
        record.actor = owner_of(&state, &caller);
    }
    record.body = json!(saved.wire);
    record.enabled = saved.wire.enabled;
    let stored = record.clone();
    if !control(&state, move |c| c.update_schedule(&stored)).await? {
        return Err(ApiError::UnknownSchedule(id));
    }
    let key = record.id.clone();
    let record = control(&state, move |c| c.get_schedule(&key)).await?.ok_or(ApiError::UnknownSchedule(id))?;
    Ok(Json(view(&record)))
}

#[utoipa::path(delete, path = "/schedules/{id}", tag = "schedules", params(("id" = String, Path, description = "A schedule id")),
    responses((status = 204, description = "Removed (its runs stay)"),
        (status = 404, description = "No such schedule", body = crate::error::ErrorBody)))]
pub async fn remove(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    find(&state, &caller, &id).await?;
    let key = id.clone();
    match control(&state, move |c| c.delete_schedule(&key)).await? {
        true => Ok(StatusCode::NO_CONTENT),
        false => Err(ApiError::UnknownSchedule(id)),
    }
}

#[utoipa::path(post, path = "/schedules/{id}/run", tag = "schedules", params(("id" = String, Path, description = "A schedule id")),
    responses((status = 202, description = "Fired now, as its owner: the fire's run, queued", body = serde_json::Value),
        (status = 403, description = "Its owner may no longer run the report", body = crate::error::ErrorBody),
        (status = 404, description = "No such schedule", body = crate::error::ErrorBody)))]
pub async fn run_now(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let record = find(&state, &caller, &id).await?;
    let saved = Saved::of(&record).map_err(ApiError::Internal)?;
    let fire = Utc::now();
    let req = owner_now(&state, &record).and_then(|owner| fire_request(&state, &owner, &record.id, &saved, fire))?;
    let targets = saved.wire.deliver.iter().map(|t| json!(t)).collect::<Vec<_>>();
    let s = state.clone();
    let fired = fire.timestamp_millis();
    let made = control(&state, move |_| s.registry.fire(&id, None, vec![(fired, Ok(req))], &targets)).await?;
    state.wake.notify_one();
    let run = made.into_iter().next().ok_or_else(|| ApiError::Internal("the fire was not recorded".into()))?;
    let found = crate::found::find(&state, &caller, &run).await?;
    Ok((StatusCode::ACCEPTED, Json(crate::view(&state, &caller, &found))).into_response())
}
