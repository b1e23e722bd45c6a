//! ream-server: reports over HTTP. Outputs stream in the response
//! (`GET /reports/{id}.{format}`) or run in the background and are stored
//! (`POST /runs`); every run is in a registry with live progress (`GET /runs/{id}`,
//! Server-Sent Events at `/runs/{id}/events`) and can be cancelled (`DELETE /runs/{id}`),
//! which stops its database query too. `/metrics` is Prometheus text; `/healthz` and
//! `/readyz` are for orchestrators; `/` is a dashboard.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use ream_server::{serve, ServerConfig};
//! let config = ServerConfig { reports: "examples".into(), ..ServerConfig::default() };
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! serve(config, listener, async { let _ = tokio::signal::ctrl_c().await; }).await?;
//! # Ok(()) }
//! ```

mod access;
mod audit;
mod cache;
mod caller;
mod catalog;
mod dashboard;
mod deliveries;
mod download;
mod error;
mod flight;
mod found;
mod guard;
mod listen;
pub mod metrics;
mod openapi;
mod queue;
mod ready;
mod registry;
pub mod request;
mod runs;
mod schedules;
pub mod storage;

use std::convert::Infallible;
use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Path, RawQuery, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use futures_util::{Stream, StreamExt};
use ream_engine::Format;
use serde_json::json;
use tokio::sync::Semaphore;

pub use crate::caller::Caller;
pub use crate::catalog::Catalog;
pub use crate::error::ApiError;
use crate::found::Found;
pub use crate::listen::ConnectionLimits;
pub use crate::registry::{Mode, RunEntry, Status};
use crate::registry::{Registry, RunRequest};
use crate::storage::Retention;

/// How a server runs. Every field has a default suited to one machine.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The directory of report specs (`.yaml`, `.yml`, `.toml`, `.json`).
    pub reports: PathBuf,
    /// A source URL for every report, overriding the specs' `source.url`.
    pub source: Option<String>,
    /// The config file's `[sources.NAME]`: `source` and a spec's `source.url` may name one.
    pub sources: ream_engine::NamedSources,
    /// Runs at once on this instance, sync and async together (default 8). Async runs
    /// past it wait in the queue; a sync download past it gets 429.
    pub max_runs: usize,
    /// Runs at once of one actor across the cluster (default: no limit): their further
    /// async runs wait in the queue while other actors' start, and a sync download past
    /// it gets 429.
    pub max_runs_per_actor: Option<usize>,
    /// Runs at once reading one source across the cluster (default: no limit), so the
    /// database is not flooded; as `max_runs_per_actor`.
    pub max_runs_per_source: Option<usize>,
    /// Queued runs across the cluster past which `POST /runs` gets 429 (default 1000).
    pub queue_max: usize,
    /// Bytes of cached downloads kept in all, across reports (default 1 GiB); the
    /// oldest go first.
    pub cache_max_bytes: u64,
    /// Rows per batch, overriding the specs' (default: the spec's).
    pub batch_size: Option<usize>,
    /// Where the embedded control store (`control.sqlite`) and the default output
    /// directory (`outputs`) live (default `ream-data`).
    pub data_dir: PathBuf,
    /// The control store every instance shares: `postgres://…`, or `sqlite:PATH`
    /// (default: `control.sqlite` in `data_dir`, for one instance).
    pub control: Option<String>,
    /// Where async runs' outputs are stored: `file:///DIR` or `s3://BUCKET/PREFIX`
    /// (default: `file://` of `outputs` in `data_dir`).
    pub output_store: Option<String>,
    /// The S3-compatible endpoint for an `s3://` output store (credentials from `AWS_*`).
    pub s3_endpoint: Option<String>,
    /// How long a run's lease lasts without its instance's heartbeat (default 15 s).
    pub lease: Duration,
    /// Finished outputs are removed past this age or total size (oldest first).
    pub retention: Retention,
    /// Finished runs kept in the registry (default 200).
    pub keep_finished: usize,
    /// On shutdown, running runs get this long to finish before they are cancelled.
    pub grace: Duration,
    /// A running run that reads no rows for this long is flagged as stalled.
    pub stall_after: Duration,
    /// Largest request body accepted (`POST /runs`), in bytes.
    pub max_body_bytes: usize,
    /// Memory one run may hold (its batches and output chunks, estimated). Over it, the
    /// run's batches get smaller; at the smallest batches still over, the run fails.
    pub run_memory_bytes: u64,
    /// Longest wait for a response to start (its headers): a run that is still
    /// preparing then is cancelled and the client gets 408. Streaming bodies (downloads,
    /// events) are not limited.
    pub request_timeout: Duration,
    /// Header timeout, idle timeout and connection cap of the HTTP connections.
    pub connections: ConnectionLimits,
    /// `[auth]`: bearer tokens required (None: open, everyone `anonymous`).
    pub auth: Option<ream_auth::AuthConfig>,
    /// Where `[auth]`'s relative key paths start (the config file's directory).
    pub auth_base: PathBuf,
    /// `/metrics` needs credentials too (with `[auth]`).
    pub close_metrics: bool,
    /// Append one JSON line per run start and end, download, cancel and denial here.
    pub audit_log: Option<PathBuf>,
    /// `Host` values that name this server (`host` or `host:port`); empty: on loopback
    /// only `localhost`, `127.0.0.1` and `[::1]` with the port, elsewhere any.
    pub allowed_hosts: Vec<String>,
    /// Origins (`https://app.example.com`) whose pages may call the API from a browser
    /// (CORS). Empty (the default): none, and state-changing requests from any foreign
    /// origin are refused.
    pub cors_origins: Vec<String>,
    /// How schedules deliver: the mailer, what targets may do, retries, links.
    pub delivery: DeliveryConfig,
}

/// How scheduled runs are delivered (docs/schedules.md).
#[derive(Debug, Clone)]
pub struct DeliveryConfig {
    /// The SMTP relay: `smtp://host:port`, `smtp://user:pass@host:587?tls=required`
    /// (STARTTLS), `smtps://user:pass@host` (TLS). None: no email targets.
    pub smtp_url: Option<String>,
    /// The sender of every mail (default `ream@localhost`).
    pub smtp_from: String,
    /// A PEM root certificate the relay's certificate may chain to, besides the system's (a relay
    /// with a private CA); for `smtps://` or `?tls=required`.
    pub smtp_ca_file: Option<PathBuf>,
    /// Mail domains recipients must be in, checked when a schedule is saved (400);
    /// empty: any.
    pub smtp_allowed_domains: Vec<String>,
    /// Prefixes (`s3://reports/`, `file:///srv/exports/`) a store target's path must
    /// start with; empty (the default): no store targets.
    pub store_prefixes: Vec<String>,
    /// The directory webhook `secret_file`s are read from; None: no signed webhooks.
    pub secrets_dir: Option<PathBuf>,
    /// The server's address as recipients reach it, for the links in mails and webhooks
    /// (default: `http://` and the listen address).
    pub public_url: Option<String>,
    /// Attempts per delivery before it is recorded as failed (default 5).
    pub attempts: u32,
    /// The wait before the second attempt, doubling after each (default 30 s).
    pub backoff: Duration,
    /// How long a mailed or posted download link works (default 7 days), while the
    /// output is kept (retention).
    pub link_ttl: Duration,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        DeliveryConfig {
            smtp_url: None,
            smtp_from: "ream@localhost".into(),
            smtp_ca_file: None,
            smtp_allowed_domains: vec![],
            store_prefixes: vec![],
            secrets_dir: None,
            public_url: None,
            attempts: 5,
            backoff: Duration::from_secs(30),
            link_ttl: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            reports: PathBuf::from("reports"),
            source: None,
            sources: Default::default(),
            max_runs: 8,
            max_runs_per_actor: None,
            max_runs_per_source: None,
            queue_max: 1000,
            cache_max_bytes: 1 << 30,
            batch_size: None,
            data_dir: PathBuf::from("ream-data"),
            control: None,
            output_store: None,
            s3_endpoint: None,
            lease: Duration::from_secs(15),
            retention: Retention { max_age: Duration::from_secs(24 * 3600), max_bytes: 10 << 30 },
            keep_finished: 200,
            grace: Duration::from_secs(30),
            stall_after: Duration::from_secs(60),
            max_body_bytes: 64 * 1024,
            run_memory_bytes: 256 << 20,
            request_timeout: Duration::from_secs(60),
            connections: ConnectionLimits::default(),
            auth: None,
            auth_base: PathBuf::from("."),
            close_metrics: false,
            audit_log: None,
            allowed_hosts: vec![],
            cors_origins: vec![],
            delivery: DeliveryConfig::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("reports: {0}")]
    Reports(String),
    #[error(transparent)]
    Outputs(#[from] ream_outputs::OutputError),
    #[error(transparent)]
    Control(#[from] ream_control::ControlError),
    #[error("serving: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Auth(#[from] ream_auth::ConfigError),
    #[error("audit log {path}: {source}")]
    Audit { path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Delivery(#[from] ream_deliver::DeliverError),
}

/// What every handler shares.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

pub struct Inner {
    pub config: ServerConfig,
    /// The reports, replaced whole when the directory changes and loads cleanly.
    catalog: std::sync::RwLock<Arc<Catalog>>,
    /// Why the last reload of the reports directory was refused, if it was.
    reload_error: std::sync::Mutex<Option<String>>,
    /// `/readyz`'s probes and its last answer.
    ready: ready::Readiness,
    pub registry: Registry,
    /// Runs, outputs and shared values of every instance.
    pub control: Arc<ream_control::Control>,
    pub outputs: Arc<ream_outputs::Outputs>,
    pub limit: Arc<Semaphore>,
    /// Verifies bearer tokens (`[auth]`); None: everyone is `anonymous`.
    pub auth: Option<ream_auth::Authenticator>,
    pub audit: Option<Arc<audit::AuditLog>>,
    /// Which `Host` values name this server (the listen address is set once bound).
    hosts: std::sync::RwLock<guard::HostPolicy>,
    draining: AtomicBool,
    /// Wakes the queue's claimer: a run was queued, or a run ended and freed its slot.
    pub wake: Arc<tokio::sync::Notify>,
    /// Runs that identical requests join (single-flight).
    pub flights: flight::Flights,
    /// What deliveries send with: the mailer, an HTTP agent.
    senders: ream_deliver::Senders,
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    pub fn new(config: ServerConfig) -> Result<AppState, ServerError> {
        let catalog = Catalog::load_dir(&config.reports).map_err(ServerError::Reports)?;
        // Settings that need no disk first: a refused start leaves no data directory.
        let mailer = (config.delivery.smtp_url.as_deref())
            .map(|url| {
                ream_deliver::Mailer::new(url, &config.delivery.smtp_from, config.delivery.smtp_ca_file.as_deref())
            })
            .transpose()?;
        let control = Arc::new(ream_control::Control::open(config.control.as_deref(), &config.data_dir)?);
        let outputs =
            Arc::new(ream_outputs::Outputs::open(&output_store_url(&config)?, config.s3_endpoint.as_deref())?);
        let mut auth = config.auth.as_ref().map(|a| ream_auth::Authenticator::new(a, &config.auth_base)).transpose()?;
        if let Some(auth) = auth.as_mut() {
            // One key for the cluster: a link signed by one instance downloads from any.
            let (secret, _) = ream_auth::token::new_token().map_err(|e| ServerError::Io(std::io::Error::other(e)))?;
            auth.share_link_secret(control.shared_value("link_secret", || secret)?.as_bytes());
        }
        let senders = ream_deliver::Senders::new(mailer, config.s3_endpoint.clone());
        let audit = (config.audit_log.as_ref())
            .map(|p| {
                audit::AuditLog::open(p).map(Arc::new).map_err(|source| ServerError::Audit { path: p.clone(), source })
            })
            .transpose()?;
        Ok(AppState(Arc::new(Inner {
            registry: Registry::new(
                config.keep_finished,
                audit.clone(),
                control.clone(),
                instance_name(),
                config.lease,
            ),
            control,
            outputs,
            hosts: std::sync::RwLock::new(guard::HostPolicy {
                allowed: config.allowed_hosts.clone(),
                listen: None,
                cors: config.cors_origins.clone(),
            }),
            audit,
            limit: Arc::new(Semaphore::new(config.max_runs)),
            auth,
            draining: AtomicBool::new(false),
            wake: Arc::new(tokio::sync::Notify::new()),
            flights: flight::Flights::default(),
            senders,
            catalog: std::sync::RwLock::new(Arc::new(catalog)),
            reload_error: std::sync::Mutex::new(None),
            ready: ready::Readiness::default(),
            config,
        })))
    }

    /// The reports now.
    pub fn catalog(&self) -> Arc<Catalog> {
        self.catalog.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Reload the reports directory if a spec file was added, removed or changed. A
    /// directory that does not load keeps the reports as they were; the error is kept
    /// for `/readyz` and logged.
    fn reload_if_changed(&self, seen: &mut Vec<(PathBuf, std::time::SystemTime, u64)>) {
        let now = catalog::fingerprint(&self.config.reports);
        if now == *seen {
            return;
        }
        *seen = now;
        let error = match Catalog::load_dir(&self.config.reports) {
            Ok(c) => {
                tracing::info!("reloaded {} reports from {}", c.len(), self.config.reports.display());
                *self.catalog.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(c);
                None
            }
            Err(e) => {
                tracing::warn!("reports not reloaded (the previous ones stay):\n{e}");
                Some(e)
            }
        };
        *self.reload_error.lock().unwrap_or_else(|e| e.into_inner()) = error;
    }

    /// Write the progress of this instance's runs to the control store, stop the runs
    /// someone asked another instance to cancel, and (with `heartbeat`) renew their leases.
    /// A run another instance has taken over (its lease expired) is stopped here.
    fn sync_control(&self, heartbeat: bool) {
        let instance = &self.registry.instance;
        for run in self.registry.active() {
            if !run.persist() {
                run.cancel.cancel();
            }
        }
        match self.control.cancel_requests(instance) {
            Ok(ids) => {
                for id in ids {
                    if let Some(run) = self.registry.get(&id) {
                        run.cancel.cancel();
                    }
                }
            }
            Err(e) => tracing::warn!("{e}"),
        }
        if heartbeat {
            if let Err(e) = self.control.heartbeat(instance, self.config.lease) {
                tracing::warn!("{e}");
            }
            if let Err(e) = self.control.heartbeat_deliveries(instance, self.config.lease) {
                tracing::warn!("{e}");
            }
        }
    }

    /// What delivery targets may do here.
    pub fn delivery_policy(&self) -> ream_deliver::Policy {
        let d = &self.config.delivery;
        ream_deliver::Policy {
            allowed_domains: d.smtp_allowed_domains.clone(),
            store_prefixes: d.store_prefixes.clone(),
            secrets_dir: d.secrets_dir.clone(),
            smtp: d.smtp_url.is_some(),
        }
    }

    /// A link that downloads run `id`'s output without a bearer token, for the
    /// delivery link time, from wherever recipients reach this server.
    pub fn output_link(&self, id: &str) -> String {
        self.part_link(id, None)
    }

    /// A link to one file of a split or burst run (its path in the manifest), or with
    /// `None` to the output; signed as [`Inner::output_link`].
    pub fn part_link(&self, id: &str, part: Option<&str>) -> String {
        let listen = self.hosts.read().unwrap_or_else(|e| e.into_inner()).listen;
        let base = match (&self.config.delivery.public_url, listen) {
            (Some(url), _) => url.trim_end_matches('/').to_string(),
            (None, Some(addr)) => format!("http://{addr}"),
            (None, None) => String::new(),
        };
        let token = (self.auth.as_ref())
            .map(|a| format!("?token={}", a.links().sign_for(id, self.config.delivery.link_ttl)))
            .unwrap_or_default();
        let part = part.map(|p| format!("/{p}")).unwrap_or_default();
        format!("{base}/runs/{id}/output{part}{token}")
    }

    /// The cluster-wide limits a run must be under to start.
    pub fn claim_limits(&self) -> ream_control::ClaimLimits {
        ream_control::ClaimLimits {
            per_actor: self.config.max_runs_per_actor.unwrap_or(usize::MAX),
            per_source: self.config.max_runs_per_source.unwrap_or(usize::MAX),
        }
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// Apply the retention limits to stored outputs, and keep the newest finished runs.
    /// Returns the outputs removed.
    pub fn retain(&self) -> Vec<String> {
        let removed = match storage::apply_retention(&self.control, &self.outputs, self.config.retention) {
            Ok(names) => names,
            Err(e) => {
                tracing::warn!("retention: {e}");
                Vec::new()
            }
        };
        for name in &removed {
            let local = self.registry.list().into_iter().find(|r| r.output().is_some_and(|o| &o.0 == name));
            if let Some(entry) = local {
                entry.expire_output();
            }
        }
        if let Err(e) = self.control.prune_runs(self.config.keep_finished) {
            tracing::warn!("{e}");
        }
        // What a process killed mid-write left in a directory store (a live writer
        // touches its file every part, seconds apart).
        match self.outputs.sweep_staging(Duration::from_secs(3600)) {
            Ok(swept) if !swept.is_empty() => {
                tracing::info!("removed {} staging files left by a dead writer", swept.len())
            }
            Ok(_) => {}
            Err(e) => tracing::warn!("{e}"),
        }
        // Cached outputs past their ttl (the cache's bounds hold at each write).
        match self.control.cache_expired() {
            Ok(names) => {
                for name in names {
                    if let Err(e) = self.outputs.remove(&name) {
                        tracing::warn!("cache: {e}");
                    }
                }
            }
            Err(e) => tracing::warn!("{e}"),
        }
        removed
    }
}

/// The output store's URL: the configured one, or the `outputs` directory of the data
/// directory.
fn output_store_url(config: &ServerConfig) -> Result<String, ServerError> {
    match &config.output_store {
        Some(url) => Ok(url.clone()),
        None => Ok(format!("file://{}", std::path::absolute(config.data_dir.join("outputs"))?.display())),
    }
}

/// This instance's name in the control store: host, process and a random part.
fn instance_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let host = host.trim();
    let nonce: String = ream_auth::token::nonce().chars().filter(char::is_ascii_alphanumeric).take(4).collect();
    format!("{}-{}-{nonce}", if host.is_empty() { "ream" } else { host }, std::process::id())
}

/// The routes.
pub fn router(state: AppState) -> Router {
    let cors = guard::cors(&state.config.cors_origins);
    let routes = Router::new()
        .route("/", get(dashboard::page))
        .route("/reports", get(list_reports))
        .route("/reports/{file}", get(report_or_output))
        .route("/runs", get(list_runs).post(create_run))
        .route("/runs/{id}", get(get_run).delete(cancel_run))
        .route("/runs/{id}/events", get(run_events))
        .route("/runs/{id}/output", get(run_output))
        .route("/runs/{id}/output/{*part}", get(run_output_part))
        .route("/schedules", get(schedules::list).post(schedules::create))
        .route("/schedules/{id}", get(schedules::get).put(schedules::replace).delete(schedules::remove))
        .route("/schedules/{id}/run", axum::routing::post(schedules::run_now))
        .route("/metrics", get(metrics_text))
        .route("/healthz", get(healthz))
        .route("/openapi.json", get(openapi::document))
        .route("/readyz", get(readyz))
        .route("/audit", get(audit_events))
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(state.config.max_body_bytes))
        .layer(axum::middleware::from_fn_with_state(state.clone(), request_timeout))
        .layer(axum::middleware::from_fn_with_state(state.clone(), guard::cross_site))
        .layer(axum::middleware::from_fn_with_state(state.clone(), audit_denials));
    // CORS outermost but for the access log, so a preflight is answered before anything
    // else looks at it (and is still logged).
    let app = match cors {
        Some(cors) => routes.layer(cors).with_state(state),
        None => routes.with_state(state),
    };
    app.layer(axum::middleware::from_fn(access::log))
}

/// A method the path does not take: the documented JSON error.
async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError::MethodNotAllowed(format!("{} does not take {method}", uri.path()))
}

/// Every 401 and 403 is an audit line: who (when known), from where, what, and why.
async fn audit_denials(State(state): State<AppState>, mut req: Request, next: axum::middleware::Next) -> Response {
    let Some(log) = state.audit.clone() else { return next.run(req).await };
    let slot = audit::ActorSlot::default();
    req.extensions_mut().insert(slot.clone());
    let (client, method, path) = (audit::Client::of_request(&req), req.method().clone(), req.uri().path().to_string());
    let response = next.run(req).await;
    let status = response.status();
    if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
        let mut line = client.fields();
        line["status"] = json!(status.as_u16());
        line["method"] = json!(method.as_str());
        line["path"] = json!(path);
        line["actor"] = json!(*slot.0.lock().unwrap_or_else(|e| e.into_inner()));
        line["reason"] = json!(response.extensions().get::<audit::Denial>().map(|d| d.0.clone()));
        tokio::task::spawn_blocking(move || log.record("denied", line)).await.ok();
    }
    response
}

/// A response that has not started within the limit is a 408; dropping the handler
/// cancels what it was preparing.
async fn request_timeout(State(state): State<AppState>, req: Request, next: axum::middleware::Next) -> Response {
    match tokio::time::timeout(state.config.request_timeout, next.run(req)).await {
        Ok(response) => response,
        Err(_) => ApiError::Timeout(state.config.request_timeout).into_response(),
    }
}

/// Serve until `shutdown` resolves, then drain: no new runs (503), running runs get the
/// grace period to finish and are cancelled after it; returns when all have ended.
pub async fn serve(
    config: ServerConfig,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    serve_state(AppState::new(config)?, listener, shutdown).await
}

/// [`serve`] with the state already built (its reports loaded and checked).
pub async fn serve_state(
    state: AppState,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    metrics::handle();
    state.hosts.write().unwrap_or_else(|e| e.into_inner()).listen = listener.local_addr().ok();
    let s = state.clone();
    let _ = tokio::task::spawn_blocking(move || drop(s.retain())).await;
    let monitor = tokio::spawn(monitor(state.clone()));
    let claimer = tokio::spawn(queue::claimer(state.clone()));
    let scheduler = tokio::spawn(deliveries::scheduler(state.clone()));
    let deliverer = tokio::spawn(deliveries::deliverer(state.clone()));
    let drain_state = state.clone();
    let signal = async move {
        shutdown.await;
        drain_state.draining.store(true, Ordering::Relaxed);
        drain_state.wake.notify_one();
        // No more claims (a run claimed as the drain began goes back to the queue); the
        // runs going get the grace period; then async runs go back to the queue (another
        // instance runs them again) and downloads are cancelled.
        let grace = drain_state.config.grace;
        let s = drain_state.clone();
        tokio::spawn(async move {
            tokio::time::sleep(grace).await;
            queue::hand_back(&s).await;
            for run in s.registry.active() {
                run.cancel.cancel();
            }
        });
        // Keep accepting while runs go on, so a load balancer's health checks get 503
        // `draining` rather than a refused connection; stop once none is left (at most
        // the grace period and the cancels' few seconds).
        let until = tokio::time::Instant::now() + grace + Duration::from_secs(5);
        while !drain_state.registry.active().is_empty() && tokio::time::Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    listen::serve_connections(listener, router(state.clone()), state.config.connections, signal).await;
    // Connections are closed; async runs may still be writing their outputs.
    let deadline = tokio::time::Instant::now() + state.config.grace + Duration::from_secs(5);
    while !state.registry.active().is_empty() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    monitor.abort();
    claimer.abort();
    scheduler.abort();
    deliverer.abort();
    Ok(())
}

/// The smallest batches the memory budget lowers a run to.
const MIN_BATCH_ROWS: usize = 16;

/// Four times a second: hold runs to their memory budget; once a second: flag stalled
/// runs; once a minute: apply the retention limits.
async fn monitor(state: AppState) {
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    let mut n: u64 = 0;
    let mut seen = catalog::fingerprint(&state.config.reports);
    loop {
        tick.tick().await;
        let active = state.registry.active();
        for run in &active {
            run.enforce_budget(state.config.run_memory_bytes, MIN_BATCH_ROWS);
        }
        n += 1;
        if n.is_multiple_of(2) {
            // The control store: every instance reads the progress written here, and
            // cancels asked of another instance arrive here.
            let s = state.clone();
            let _ = tokio::task::spawn_blocking(move || s.sync_control(n.is_multiple_of(4))).await;
        }
        if n.is_multiple_of(4) {
            let stalled = active.iter().filter(|r| r.check_stall(state.config.stall_after)).count();
            ::metrics::gauge!(metrics::STALLED_RUNS).set(stalled as f64);
        }
        if n.is_multiple_of(8) {
            let s = state.clone();
            let mut fp = std::mem::take(&mut seen);
            seen = tokio::task::spawn_blocking(move || {
                s.reload_if_changed(&mut fp);
                fp
            })
            .await
            .unwrap_or_default();
        }
        if n.is_multiple_of(240) {
            // Directory listings and removals: off the async threads.
            let s = state.clone();
            let _ = tokio::task::spawn_blocking(move || drop(s.retain())).await;
        }
    }
}

#[utoipa::path(get, path = "/reports", tag = "reports",
    responses((status = 200, description = "Every report: id, title, description, parameters, formats, links", body = serde_json::Value)))]
async fn list_reports(State(state): State<AppState>, caller: Caller) -> Json<serde_json::Value> {
    // Only the reports the caller may run.
    let reports: Vec<_> = (state.catalog().iter())
        .filter(|(id, s)| caller.may_run(id, s).is_ok())
        .map(|(id, s)| catalog::describe(id, s))
        .collect();
    Json(json!({ "reports": reports }))
}

/// `/reports/{id}` (the report) or `/reports/{id}.{format}` (run it, streaming).
#[utoipa::path(get, path = "/reports/{file}", tag = "reports",
    params(("file" = String, Path, description = "A report id (its description, or its output in the format whose media type `Accept` names), or `id.format` (run it and stream the output; the report's parameters go in the query string)")),
    responses(
        (status = 200, description = "The report's description, or its output streamed (chunked)", body = serde_json::Value),
        (status = 400, description = "A bad request or parameter", body = crate::error::ErrorBody), (status = 404, description = "No such report or run", body = crate::error::ErrorBody),
        (status = 408, description = "The output did not start within the request timeout", body = crate::error::ErrorBody),
        (status = 422, description = "A value the database rejects", body = crate::error::ErrorBody),
        (status = 429, description = "Too many runs; see Retry-After", body = crate::error::ErrorBody)))]
async fn report_or_output(
    State(state): State<AppState>,
    Path(file): Path<String>,
    RawQuery(query): RawQuery,
    headers: axum::http::HeaderMap,
    method: axum::http::Method,
    caller: Caller,
    client: audit::Client,
) -> Result<Response, ApiError> {
    let parameters = request::query_parameters(query.as_deref())?;
    let parameters_copy = parameters.clone();
    let (id, format) = match file.rsplit_once('.') {
        Some((id, ext)) if state.catalog().get(&file).is_none() => {
            let format = Format::from_name(ext).ok_or_else(|| {
                ApiError::BadRequest(format!(
                    "unknown format `{ext}`: one of {}",
                    Format::ALL.iter().map(|f| f.name()).collect::<Vec<_>>().join(", ")
                ))
            })?;
            (id.to_string(), Some(format))
        }
        _ => (file, None),
    };
    // Without an extension, `Accept` may ask for an output by its media type; JSON (and
    // anything else) is the report's description.
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("");
    let Some(format) = format.or_else(|| request::accepted_format(accept)) else {
        let reports = state.catalog();
        let spec = reports.get(&id).ok_or_else(|| ApiError::UnknownReport(id.clone()))?;
        caller.may_run(&id, spec)?;
        return Ok(Json(catalog::describe(&id, spec)).into_response());
    };
    // Text formats are compressed as they stream when the client takes it; xlsx, pdf and
    // parquet compress themselves.
    let accepts = headers.get(header::ACCEPT_ENCODING).and_then(|v| v.to_str().ok()).unwrap_or("");
    let compress = match format.is_compressed() {
        true => ream_engine::Compression::None,
        false => ream_engine::Compression::negotiate(accepts),
    };
    // HEAD answers what GET would send, without running the report.
    if method == axum::http::Method::HEAD {
        let reports = state.catalog();
        caller.may_run(&id, reports.get(&id).ok_or_else(|| ApiError::UnknownReport(id.clone()))?)?;
        let mut response = Response::new(Body::empty());
        output_headers(response.headers_mut(), &id, format);
        return Ok(response);
    }
    // `Cache-Control: no-cache` asks for a fresh run (which then refreshes the cache).
    let fresh = (headers.get_all(header::CACHE_CONTROL).iter())
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.split(',').any(|d| d.trim().eq_ignore_ascii_case("no-cache")));
    let download = runs::download(
        &state,
        &caller,
        RunRequest {
            report: id.clone(),
            format,
            parameters,
            actor: caller.actor.clone(),
            mode: Mode::Sync,
            split: None,
            burst: false,
            client,
            record: json!({ "parameters": request::parameters_json(&parameters_copy) }),
            again: None,
            checked: None,
            schedule: None,
        },
        compress,
        !fresh,
    )
    .await?;
    let (run_id, cached) = (download.run_id, download.cache);
    let replay = futures_util::stream::iter(download.replay.into_iter().map(Ok::<_, std::io::Error>));
    let rest =
        futures_util::stream::unfold(download.rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) });
    let body = Body::from_stream(replay.chain(rest));
    let mut response = Response::new(body);
    output_headers(response.headers_mut(), &id, format);
    let h = response.headers_mut();
    if let Some(run_id) = run_id.and_then(|id| HeaderValue::from_str(&id).ok()) {
        h.insert("x-ream-run", run_id);
    }
    if let Some(cached) = cached {
        h.insert("x-ream-cache", HeaderValue::from_static(cached));
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if !format.is_compressed() {
        h.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    }
    if let Some(coding) = compress.content_coding() {
        h.insert(header::CONTENT_ENCODING, HeaderValue::from_static(coding));
    }
    Ok(response)
}

#[utoipa::path(post, path = "/runs", tag = "runs", request_body = crate::request::Wire,
    responses(
        (status = 202, description = "The run, queued (or the same actor's identical run still going); Location names it", body = serde_json::Value),
        (status = 400, description = "A bad request or parameter", body = crate::error::ErrorBody), (status = 404, description = "No such report or run", body = crate::error::ErrorBody),
        (status = 413, description = "The body is too large", body = crate::error::ErrorBody),
        (status = 415, description = "The body is not application/json", body = crate::error::ErrorBody),
        (status = 429, description = "Too many runs; see Retry-After", body = crate::error::ErrorBody)))]
async fn create_run(
    State(state): State<AppState>,
    caller: Caller,
    client: audit::Client,
    headers: axum::http::HeaderMap,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Response, ApiError> {
    let body = request::json_body("POST /runs", &headers, body, state.config.max_body_bytes)?;
    let req = request::RunBody::parse(&body)?;
    // What running it needs wherever it runs: the request as sent, who sent it, from where.
    let mut record: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    record["actor"] = json!(caller.actor);
    record["client"] = json!(client);
    let req = RunRequest {
        report: req.report,
        format: req.format,
        parameters: req.parameters,
        actor: caller.actor.clone(),
        mode: Mode::Async,
        split: req.split,
        burst: req.burst,
        client,
        record,
        again: None,
        checked: None,
        schedule: None,
    };
    let id = enqueue(&state, &caller, req).await?;
    // Read back before the claimer is woken: the answer shows the run as queued.
    let run = found::find(&state, &caller, &id).await?;
    state.wake.notify_one();
    let mut response = (StatusCode::ACCEPTED, Json(view(&state, &caller, &run))).into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("/runs/{id}")) {
        response.headers_mut().insert(header::LOCATION, v);
    }
    Ok(response)
}

/// Check an async run without opening its database, and queue it (429 when the queue is
/// full). Returns its id.
async fn enqueue(state: &AppState, caller: &Caller, mut req: RunRequest) -> Result<String, ApiError> {
    if state.is_draining() {
        return Err(ApiError::ShuttingDown);
    }
    let spec = state.catalog().get(&req.report).cloned().ok_or_else(|| ApiError::UnknownReport(req.report.clone()))?;
    caller.may_run(&req.report, &spec)?;
    req.checked = Some(runs::check(state, &spec, &req, ream_engine::Compression::None).inspect_err(|_| {
        ::metrics::counter!(metrics::REJECTED_TOTAL).increment(1);
    })?);
    let max = state.config.queue_max;
    if found::control(state, |c| c.queue_depth()).await? >= max as u64 {
        ::metrics::counter!(metrics::REJECTED_TOTAL).increment(1);
        return Err(ApiError::TooManyRuns {
            why: format!("the queue is full ({max} runs wait already)"),
            retry_after_secs: 5,
        });
    }
    let s = state.clone();
    found::control(state, move |_| s.registry.enqueue(req)).await
}

#[utoipa::path(get, path = "/runs", tag = "runs",
    params(("schedule" = Option<String>, Query, description = "Only the runs this schedule fired, newest fire first, with their deliveries")),
    responses((status = 200, description = "The registry, newest first", body = serde_json::Value),
        (status = 400, description = "A query key other than `schedule`", body = crate::error::ErrorBody)))]
async fn list_runs(
    State(state): State<AppState>,
    caller: Caller,
    RawQuery(query): RawQuery,
) -> Result<Json<serde_json::Value>, ApiError> {
    let mut schedule = None;
    for (key, value) in request::query_parameters(query.as_deref())? {
        match (key.as_str(), value) {
            ("schedule", ream_core::params::Given::Text(id)) => schedule = Some(id),
            (key, _) => return Err(ApiError::BadRequest(format!("GET /runs takes `schedule` once, not `{key}`"))),
        }
    }
    let Some(id) = schedule else {
        let runs: Vec<_> = found::list(&state, &caller).await?.iter().map(|r| view(&state, &caller, r)).collect();
        return Ok(Json(json!({ "runs": runs })));
    };
    let mut runs = Vec::new();
    for run in found::of_schedule(&state, &caller, &id).await? {
        runs.push(with_deliveries(&state, view(&state, &caller, &run), run.id()).await?);
    }
    Ok(Json(json!({ "runs": runs })))
}

/// `v` (a scheduled run's view) with its deliveries: `[{target, status, attempts, error}]`.
async fn with_deliveries(state: &AppState, mut v: serde_json::Value, id: &str) -> Result<serde_json::Value, ApiError> {
    let id = id.to_string();
    let deliveries = found::control(state, move |c| c.deliveries_of(&id)).await?;
    v["deliveries"] = json!(deliveries
        .iter()
        .map(|d| json!({ "target": d.target, "status": d.status, "attempts": d.attempts, "error": d.error }))
        .collect::<Vec<_>>());
    Ok(v)
}

/// A run as its caller sees it: with `[auth]`, its output link carries a signed token
/// that downloads that output (Range too) without a bearer token, for `link_ttl_secs`.
/// Its error's SQL text is for admins only.
fn view(state: &AppState, caller: &Caller, run: &Found) -> serde_json::Value {
    let mut v = run.snapshot(caller.admin);
    if let (Some(auth), Some(link)) = (&state.auth, v.pointer_mut("/links/output")) {
        if let Some(path) = link.as_str() {
            *link = json!(format!("{path}?token={}", auth.links().sign(run.id())));
        }
    }
    v
}

#[utoipa::path(get, path = "/runs/{id}", tag = "runs", params(("id" = String, Path, description = "A run id")),
    responses((status = 200, description = "The run: status, rows, progress, links", body = serde_json::Value), (status = 404, description = "No such report or run", body = crate::error::ErrorBody)))]
async fn get_run(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let run = found::find(&state, &caller, &id).await?;
    let v = view(&state, &caller, &run);
    match v["schedule"].is_string() {
        true => Ok(Json(with_deliveries(&state, v, &id).await?)),
        false => Ok(Json(v)),
    }
}

#[utoipa::path(delete, path = "/runs/{id}", tag = "runs", params(("id" = String, Path, description = "A run id")),
    responses(
        (status = 202, description = "Cancelled; its database query is stopped (by whichever instance runs it, within a second)", body = serde_json::Value), (status = 404, description = "No such report or run", body = crate::error::ErrorBody),
        (status = 409, description = "The run has already ended", body = crate::error::ErrorBody)))]
async fn cancel_run(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let run = found::find(&state, &caller, &id).await?;
    if run.status().is_finished() {
        return Err(ApiError::Conflict(format!("run `{id}` has already {}", run.status().name())));
    }
    let run = match run {
        Found::Local(entry) => {
            entry.cancel.cancel();
            Found::Local(entry)
        }
        // Another instance runs it: it reads the request within half a second.
        Found::Stored(_) => {
            let key = id.clone();
            let record = found::control(&state, move |c| c.request_cancel(&key)).await?;
            Found::Stored(Box::new(record.ok_or_else(|| ApiError::UnknownRun(id.clone()))?))
        }
    };
    let (s, by) = (state.clone(), caller.actor.sub.clone());
    let snapshot = view(&state, &caller, &run);
    let _ = tokio::task::spawn_blocking(move || run.audit(&s, "cancel", json!({ "by": by }))).await;
    Ok((StatusCode::ACCEPTED, Json(snapshot)).into_response())
}

/// Progress four times a second while the run is live, then one `end` event.
#[utoipa::path(get, path = "/runs/{id}/events", tag = "runs", params(("id" = String, Path, description = "A run id")),
    responses((status = 200, description = "Server-Sent Events: `progress`, then one `end`", content_type = "text/event-stream", body = crate::openapi::RunEvent), (status = 404, description = "No such report or run", body = crate::error::ErrorBody)))]
async fn run_events(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    let run = found::find(&state, &caller, &id).await?;
    let events = futures_util::stream::unfold((Some(run), false, true), move |(run, ended, first)| {
        let (state, caller, id) = (state.clone(), caller.clone(), id.clone());
        async move {
            if ended {
                return None;
            }
            if !first {
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            // A run of another instance is read again each time.
            let run = match run {
                Some(Found::Local(e)) => Found::Local(e),
                _ => found::lookup(&state, &id).await.ok().flatten()?,
            };
            let finished = run.status().is_finished();
            let snapshot = view(&state, &caller, &run);
            let event = SseEvent::default().event(if finished { "end" } else { "progress" }).data(snapshot.to_string());
            let keep = matches!(run, Found::Local(_)).then_some(run);
            Some((Ok(event), (keep, finished, false)))
        }
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::default()))
}

/// The headers of a report's streamed output: its media type and file name.
fn output_headers(h: &mut axum::http::HeaderMap, id: &str, format: Format) {
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(format.content_type()));
    if format == Format::Html {
        if let Ok(v) = HeaderValue::from_str(html_csp()) {
            h.insert(header::CONTENT_SECURITY_POLICY, v);
        }
    }
    let disposition = if format == Format::Html { "inline" } else { "attachment" };
    if let Ok(v) = HeaderValue::from_str(&format!("{disposition}; filename=\"{id}.{}\"", format.name())) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
}

/// An HTML report runs no script and loads nothing: its one style sheet is allowed by
/// its hash, its charts are inline SVG.
fn html_csp() -> &'static str {
    use base64::Engine;
    use sha2::Digest;
    static CSP: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    CSP.get_or_init(|| {
        let hash =
            base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(ream_render::html::CSS.as_bytes()));
        format!(
            "default-src 'none'; style-src 'sha256-{hash}'; img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
        )
    })
}

/// The stored output of an async run, with `Range` support.
#[utoipa::path(get, path = "/runs/{id}/output", tag = "runs", params(("id" = String, Path, description = "A run id")),
    responses(
        (status = 200, description = "The stored output (Range requests give 206)", content_type = "application/octet-stream", body = Vec<u8>),
        (status = 206, description = "Part of the stored output", content_type = "application/octet-stream", body = Vec<u8>),
        (status = 404, description = "No such report or run", body = crate::error::ErrorBody),
        (status = 409, description = "Still running, failed, streamed, or removed", body = crate::error::ErrorBody),
        (status = 416, description = "A range past the end")))]
async fn run_output(
    State(state): State<AppState>,
    caller: Result<Caller, ApiError>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
    req: Request,
) -> Result<Response, ApiError> {
    let (run, by) = downloadable(&state, caller, &id, query.as_deref()).await?;
    let status = run.status();
    let Some((name, _)) = run.output() else {
        return Err(match status {
            Status::Succeeded => {
                ApiError::Conflict(format!("run `{id}`: its output was removed by the retention policy"))
            }
            s if s.is_finished() => ApiError::Conflict(format!("run `{id}` {} and has no output", s.name())),
            _ if !run.is_async() => ApiError::Conflict(format!("run `{id}` streams to its client; nothing is stored")),
            s => ApiError::Conflict(format!("run `{id}` is {}; its output is not ready", s.name())),
        });
    };
    let split = run.is_split();
    let file = runs::readable(&name, split);
    audit_download(&state, run.clone(), by, &req).await;
    let format = run.format();
    let mut response = download::serve(&state, &id, &file, req.headers()).await?;
    let h = response.headers_mut();
    match split {
        // A split run's output is its manifest; its files are at /runs/{id}/output/{path}.
        true => h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json")),
        false => h.insert(header::CONTENT_TYPE, HeaderValue::from_static(format.content_type())),
    };
    if let (false, Format::Html, Ok(v)) = (split, format, HeaderValue::from_str(html_csp())) {
        h.insert(header::CONTENT_SECURITY_POLICY, v);
    }
    if let (false, Ok(v)) =
        (split, HeaderValue::from_str(&format!("attachment; filename=\"{}.{}\"", run.report(), format.name())))
    {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(response)
}

/// The run whose output the request may download: by a signed link (`?token=`, good for
/// this run only), or as a caller who sees the run.
async fn downloadable(
    state: &AppState,
    caller: Result<Caller, ApiError>,
    id: &str,
    query: Option<&str>,
) -> Result<(Found, String), ApiError> {
    let token = serde_urlencoded::from_str::<Vec<(String, String)>>(query.unwrap_or(""))
        .unwrap_or_default()
        .into_iter()
        .find_map(|(k, v)| (k == "token").then_some(v));
    match (&state.auth, token) {
        (Some(auth), Some(token)) => {
            auth.links().check(&token, id).map_err(|e| ApiError::Forbidden(e.to_string()))?;
            let run = found::lookup(state, id).await?.ok_or_else(|| ApiError::UnknownRun(id.to_string()))?;
            Ok((run, "signed link".into()))
        }
        _ => {
            let caller = caller?;
            Ok((found::find(state, &caller, id).await?, caller.actor.sub))
        }
    }
}

/// The audit line of a download: which file, which range, and who (or a signed link).
fn audit_download(
    state: &AppState,
    run: Found,
    by: String,
    req: &Request,
) -> impl Future<Output = ()> + Send + 'static {
    let range = req.headers().get(header::RANGE).and_then(|v| v.to_str().ok()).map(String::from);
    let path = req.uri().path().to_string();
    let client = audit::Client::of_request(req).fields();
    let state = state.clone();
    let done = tokio::task::spawn_blocking(move || {
        run.audit(&state, "download", json!({ "by": by, "path": path, "range": range, "client": client["client"], "user_agent": client["user_agent"] }))
    });
    async move {
        let _ = done.await;
    }
}

/// One file of a split run, by its path in the manifest, with `Range` support.
#[utoipa::path(get, path = "/runs/{id}/output/{part}", tag = "runs",
    params(("id" = String, Path, description = "A run id"), ("part" = String, Path, description = "A file's `path` in the run's manifest")),
    responses(
        (status = 200, description = "The part (Range requests give 206)", content_type = "application/octet-stream", body = Vec<u8>),
        (status = 206, description = "Part of the part", content_type = "application/octet-stream", body = Vec<u8>),
        (status = 404, description = "No such run, or no such file in its manifest", body = crate::error::ErrorBody),
        (status = 409, description = "Still running, failed, not split, or removed", body = crate::error::ErrorBody),
        (status = 416, description = "A range past the end")))]
async fn run_output_part(
    State(state): State<AppState>,
    caller: Result<Caller, ApiError>,
    Path((id, part)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    req: Request,
) -> Result<Response, ApiError> {
    let (run, by) = downloadable(&state, caller, &id, query.as_deref()).await?;
    if !run.is_split() {
        return Err(ApiError::Conflict(format!("run `{id}` is not split: its output is /runs/{id}/output")));
    }
    let Some((name, _)) = run.output() else {
        return Err(ApiError::Conflict(format!("run `{id}` is {}; it has no stored output", run.status().name())));
    };
    let gone = || ApiError::Conflict(format!("run `{id}`: its output is gone"));
    let (outputs, manifest_name) = (state.outputs.clone(), runs::readable(&name, true));
    let manifest = tokio::task::spawn_blocking(move || outputs.read_all(&manifest_name))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .map_err(|_| gone())?;
    let manifest: serde_json::Value =
        serde_json::from_slice(&manifest).map_err(|e| ApiError::Internal(e.to_string()))?;
    // Only a path the manifest lists: nothing else in the store can be named.
    let listed = manifest["files"].as_array().is_some_and(|f| f.iter().any(|f| f["path"] == part.as_str()));
    if !listed {
        return Err(ApiError::UnknownPart(format!(
            "run `{id}` has no file `{part}` (see its manifest at /runs/{id}/output)"
        )));
    }
    let format = run.format();
    audit_download(&state, run.clone(), by, &req).await;
    let mut response = download::serve(&state, &id, &format!("{name}/{part}"), req.headers()).await?;
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(format.content_type()));
    let file = part.rsplit('/').next().unwrap_or(&part);
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{file}\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(response)
}

/// The audit log's lines at or after `since` (RFC 3339), for admins.
#[utoipa::path(get, path = "/audit", tag = "operations",
    params(("since" = Option<String>, Query, description = "Only lines at or after this time (RFC 3339)")),
    responses(
        (status = 200, description = "The audit lines, oldest first", body = serde_json::Value),
        (status = 400, description = "A `since` that is not an RFC 3339 time", body = crate::error::ErrorBody),
        (status = 401, description = "No valid bearer token", body = crate::error::ErrorBody),
        (status = 403, description = "Not an admin", body = crate::error::ErrorBody),
        (status = 409, description = "The server keeps no audit log", body = crate::error::ErrorBody)))]
async fn audit_events(
    State(state): State<AppState>,
    caller: Caller,
    RawQuery(query): RawQuery,
) -> Result<Json<serde_json::Value>, ApiError> {
    if !caller.admin {
        return Err(ApiError::Forbidden("the audit log is for admins".into()));
    }
    let log = (state.audit.clone())
        .ok_or_else(|| ApiError::Conflict("this server keeps no audit log: start it with --audit-log FILE".into()))?;
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query.as_deref().unwrap_or(""))
        .map_err(|e| ApiError::BadRequest(format!("query string: {e}")))?;
    let since = pairs.into_iter().find_map(|(k, v)| (k == "since").then_some(v));
    if let Some(s) = &since {
        chrono::DateTime::parse_from_rfc3339(s)
            .map_err(|e| ApiError::BadRequest(format!("since `{s}`: not an RFC 3339 time ({e})")))?;
    }
    let events = tokio::task::spawn_blocking(move || log.since(since.as_deref()))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .map_err(|e| ApiError::Internal(format!("reading the audit log: {e}")))?;
    Ok(Json(json!({ "events": events })))
}

#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses(
        (status = 200, description = "The process serves", body = serde_json::Value),
        (status = 503, description = "Shutting down: the runs going finish, nothing new starts", body = serde_json::Value)))]
async fn healthz(State(state): State<AppState>) -> Response {
    match state.is_draining() {
        true => (StatusCode::SERVICE_UNAVAILABLE, Json(json!({ "status": "draining" }))).into_response(),
        false => Json(json!({ "status": "ok" })).into_response(),
    }
}

#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text", content_type = "text/plain", body = String)))]
async fn metrics_text(State(state): State<AppState>, caller: Result<Caller, ApiError>) -> Response {
    if state.config.close_metrics {
        if let Err(e) = caller {
            return e.into_response();
        }
    }
    if let Some(rss) = metrics::resident_bytes() {
        ::metrics::gauge!(metrics::RESIDENT_MEMORY).set(rss as f64);
    }
    let mut response = metrics::handle().render().into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"));
    response
}

/// Ready when not draining and every distinct source answers a trivial query (one probe
/// per source at a time, each bounded and cancelled at 5 s; answers
/// reused for 2 s, see `ready.rs`).
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses(
        (status = 200, description = "Every source answers", body = serde_json::Value),
        (status = 503, description = "Draining, or a source does not answer", body = serde_json::Value)))]
async fn readyz(State(state): State<AppState>) -> Response {
    if state.is_draining() {
        return (StatusCode::SERVICE_UNAVAILABLE, Json(json!({ "status": "draining" }))).into_response();
    }
    let checks = source_checks(&state).await;
    let ok = checks.iter().all(|c| c.1.is_ok());
    let reload_error = state.reload_error.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let body = json!({
        "status": if ok { "ready" } else { "unavailable" },
        "reports_reload_error": reload_error,
        "sources": checks.iter().map(|(id, r)| json!({ "report": id, "ok": r.is_ok(), "error": r.as_ref().err() })).collect::<Vec<_>>(),
    });
    (if ok { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE }, Json(body)).into_response()
}

/// Whether each distinct source answers: (a report of it, the outcome). Reused for 2 s.
async fn source_checks(state: &AppState) -> Vec<(String, Result<(), String>)> {
    let mut cached = state.ready.cached.lock().await;
    if let Some((at, checks)) = cached.as_ref() {
        if at.elapsed() < ready::CACHE_FOR {
            return checks.clone();
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    let mut checks = Vec::new();
    let opts = runs::source_options(state);
    for (id, spec) in state.catalog().iter() {
        let (url, base) = match ream_engine::spec_source(spec, &opts) {
            Ok(found) => found,
            Err(e) => {
                checks.push((id.clone(), Err(e.to_string())));
                continue;
            }
        };
        if !seen.insert(url.clone()) {
            continue;
        }
        let result = state.ready.check(url, base).await;
        checks.push((id.clone(), result));
    }
    *cached = Some((std::time::Instant::now(), checks.clone()));
    checks
}
