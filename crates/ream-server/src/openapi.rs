//! `/openapi.json`: the HTTP API as OpenAPI 3.1, generated from the handlers'
//! `#[utoipa::path]` attributes, so it cannot drift from the routes. What depends on the
//! output formats (their names, their content types) is filled in from
//! [`Format::ALL`], the one list of them. schemathesis runs against it in CI
//! (docs/testing.md).

use axum::Json;
use ream_engine::Format;
use serde_json::{json, Value};
use utoipa::OpenApi;

#[derive(OpenApi)]
#[openapi(
    info(title = "ream", description = "Reports streamed out of SQL databases: run them, follow them, download them."),
    paths(
        crate::dashboard::page,
        crate::list_reports,
        crate::report_or_output,
        crate::create_run,
        crate::list_runs,
        crate::get_run,
        crate::cancel_run,
        crate::run_events,
        crate::run_output,
        crate::run_output_part,
        crate::metrics_text,
        crate::healthz,
        crate::readyz,
        crate::audit_events,
        crate::schedules::create,
        crate::schedules::list,
        crate::schedules::get,
        crate::schedules::replace,
        crate::schedules::remove,
        crate::schedules::run_now,
        document,
    ),
    components(schemas(
        crate::error::ErrorBody,
        crate::schedules::ScheduleWire,
        crate::schedules::CatchUpWire,
        crate::request::Wire,
        crate::request::SplitWire,
        RunEvent
    ))
)]
struct Api;

/// One Server-Sent Event of `/runs/{id}/events`.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub(crate) struct RunEvent {
    /// `progress` while the run lives, then one `end`.
    event: String,
    /// The run, as JSON text.
    data: String,
}

#[utoipa::path(get, path = "/openapi.json", tag = "operations",
    responses((status = 200, description = "This document", body = serde_json::Value)))]
pub async fn document() -> Json<Value> {
    Json(build())
}

/// The document, with the formats filled in.
pub fn build() -> Value {
    let mut doc = serde_json::to_value(Api::openapi()).unwrap_or_default();
    let names: Vec<&str> = Format::ALL.iter().map(|f| f.name()).collect();
    let outputs: serde_json::Map<String, Value> = Format::ALL
        .iter()
        .map(|f| {
            let schema = if *f == Format::Json { json!({}) } else { json!({"type": "string"}) };
            (f.content_type().to_string(), json!({ "schema": schema }))
        })
        .collect();
    let file = "/paths/~1reports~1{file}/get";
    if let Some(content) = doc.pointer_mut(&format!("{file}/responses/200/content")).and_then(Value::as_object_mut) {
        content.extend(outputs.clone());
    }
    if let Some(param) = doc.pointer_mut(&format!("{file}/parameters/0/schema")) {
        *param = json!({"type": "string", "pattern": format!("^[^.]+(\\.({}))?$", names.join("|"))});
    }
    for code in ["200", "206"] {
        if let Some(content) = doc.pointer_mut(&format!("/paths/~1runs~1{{id}}~1output/get/responses/{code}/content")) {
            *content = Value::Object(outputs.clone());
        }
    }
    if let Some(format) = doc.pointer_mut("/components/schemas/RunRequest/properties/format") {
        format["enum"] = json!(names);
    }
    if let Some(split) = doc.pointer_mut("/components/schemas/SplitWire") {
        *split = split_schema();
    }
    // With `[auth]` (docs/security.md) every route but /healthz, /readyz, /openapi.json
    // and / takes a bearer token; a server without it takes none, so it is optional here.
    doc["components"]["securitySchemes"] = json!({
        "bearer": { "type": "http", "scheme": "bearer", "description": "A JWT from the configured identity provider, or an API token (`ream token new`)." }
    });
    doc["security"] = json!([{}, { "bearer": [] }]);
    doc
}

/// `split` of `POST /runs`, exactly as `request.rs` takes it: at least one key, no NULLs,
/// limits of at least 1, a byte count as a number or as digits with a unit.
fn split_schema() -> Value {
    let count = json!({"type": "integer", "minimum": 1, "maximum": 9_007_199_254_740_991u64});
    json!({
        "type": "object",
        "description": "Store the output as parts (csv, ndjson, parquet, xlsx) with a manifest, \
            which GET /runs/{id}/output returns.",
        "additionalProperties": false,
        "minProperties": 1,
        "properties": {
            "rows": {"description": "At most this many rows per part.", "allOf": [count]},
            "bytes": {
                "description": "About this many bytes per part: a number, or digits with a unit (\"64MiB\").",
                "oneOf": [count, {"type": "string", "pattern": "^0*[1-9][0-9]{0,8}([kKmMgG]([iI]?[bB])?|[bB])?$"}]
            },
            "by": {"description": "A field: one hive directory per value (FIELD=value/part-00001.csv).",
                "type": "string", "pattern": "\\S"}
        }
    })
}
