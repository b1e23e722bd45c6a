//! The access log: one line per request through `tracing` (target `ream::access`), with
//! the method, the path, the status, the run it started or served (`x-ream-run`) and the
//! time to the response's head. Never the query string: a signed link carries its token
//! there, and parameters may be personal.

use std::time::Instant;

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;

pub async fn log(request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let started = Instant::now();
    let response = next.run(request).await;
    let run = response.headers().get("x-ream-run").and_then(|v| v.to_str().ok()).unwrap_or("-");
    tracing::info!(
        target: "ream::access",
        "{method} {path} {} run={run} head_ms={}",
        response.status().as_u16(),
        started.elapsed().as_millis()
    );
    response
}
