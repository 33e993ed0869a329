//! The admin listener (`admin_listen`, never the proxy listener): `/metrics`, `/healthz`, `/readyz`,
//! `/status` and the read-only web console under `/console/` ([`console`]; `/` redirects there), plain
//! HTTP/1.1 for scrapers, probes, operators and their browsers.
//!
//! - `/metrics`: every metric in the Prometheus text format.
//! - `/healthz`: 200 while the process serves (liveness).
//! - `/readyz`: 200 when a config is loaded and the gateway is not shutting down, else 503 (readiness:
//!   a load balancer stops sending traffic while in-flight requests drain).
//! - `/status`: JSON — the serving config (generation, content hash, loaded-at, files, counts), the last
//!   reload (outcome, trigger, time), the errors of a rejected config with file and line, settings that
//!   need a restart, and the file watcher's health.
//!
//! Anything else is 404 (JSON), a method other than GET/HEAD is 405. Nothing here shows a secret: the
//! snapshot holds only hashes of secrets, and none of them is printed.
//!
//! `admin: {console: on | off, token_file: PATH}` is read from the serving snapshot at each request:
//! `console: off` makes every console URL (and `/`) 404; `token_file` makes every path of the listener
//! ask for the bearer token whose SHA-256 the file holds ([`auth`]). Every answer carries the console's
//! security headers (a strict Content-Security-Policy, `nosniff`, `Referrer-Policy: no-referrer`).

pub mod auth;
pub mod console;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::header::{ALLOW, CACHE_CONTROL, CONTENT_TYPE, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::config::ConfigErrors;
use crate::decision_log::DenialRing;
use crate::proxy::Gateway;
use crate::reload::{Reloader, WatcherStatus};
use console::ConsoleState;
use console::traffic::History;

/// How long a client has to send its request head.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long stopping waits for admin requests in flight (a scrape) before dropping them.
const STOP_GRACE: Duration = Duration::from_secs(2);

/// What the admin endpoints read.
#[derive(Debug)]
pub struct AdminState {
    gateway: Arc<Gateway>,
    reloader: Option<Arc<Reloader>>,
    draining: AtomicBool,
    console: ConsoleState,
}

impl AdminState {
    /// Endpoints over `gateway` (its snapshot and metrics) and, when reloading is on, `reloader`.
    pub fn new(gateway: Arc<Gateway>, reloader: Option<Arc<Reloader>>) -> Arc<Self> {
        Self::with_denials(gateway, reloader, None)
    }

    /// [`AdminState::new`], with the console's Recent denials read from `denials` (the ring the decision
    /// log's writer feeds; `None` when the log is off).
    pub fn with_denials(
        gateway: Arc<Gateway>,
        reloader: Option<Arc<Reloader>>,
        denials: Option<Arc<DenialRing>>,
    ) -> Arc<Self> {
        Arc::new(Self {
            gateway,
            reloader,
            draining: AtomicBool::new(false),
            console: ConsoleState {
                denials,
                traffic: Arc::new(History::default()),
            },
        })
    }

    /// From now on `/readyz` answers 503 (the gateway is shutting down).
    pub fn begin_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }
}

/// The admin listener serving in the background.
#[derive(Debug)]
pub struct Admin {
    /// The bound address (the real port when `admin_listen` had port 0).
    pub addr: SocketAddr,
    pub state: Arc<AdminState>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
    /// Samples the traffic counters for the console's chart.
    sampler: JoinHandle<()>,
}

impl Admin {
    /// Stops accepting and waits briefly for requests in flight.
    pub async fn stop(mut self) {
        self.sampler.abort();
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
    }
}

/// Binds `addr` and serves the admin endpoints.
pub async fn start(addr: SocketAddr, state: Arc<AdminState>) -> std::io::Result<Admin> {
    let listener = TcpListener::bind(addr).await?;
    start_on(listener, state)
}

/// Serves the admin endpoints on an already-bound listener.
pub fn start_on(listener: TcpListener, state: Arc<AdminState>) -> std::io::Result<Admin> {
    let addr = listener.local_addr()?;
    let (stop, stopped) = oneshot::channel();
    let task = tokio::spawn(serve(listener, Arc::clone(&state), stopped));
    let sampler = tokio::spawn(console::traffic::run_sampler(
        Arc::clone(&state.console.traffic),
        Arc::clone(state.gateway.metrics()),
    ));
    Ok(Admin {
        addr,
        state,
        stop: Some(stop),
        task,
        sampler,
    })
}

async fn serve(listener: TcpListener, state: Arc<AdminState>, mut stopped: oneshot::Receiver<()>) {
    let graceful = GracefulShutdown::new();
    loop {
        let (stream, _peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "admin listener: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut stopped => break,
        };
        let state = Arc::clone(&state);
        let service = service_fn(move |request| {
            let state = Arc::clone(&state);
            async move { Ok::<_, Infallible>(answer(&state, &request)) }
        });
        let connection = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(HEADER_READ_TIMEOUT)
            .serve_connection(TokioIo::new(stream), service);
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "admin connection ended with an error");
            }
        });
    }
    drop(listener);
    let _ = tokio::time::timeout(STOP_GRACE, graceful.shutdown()).await;
}

/// The answer to one admin request, with the security headers.
pub fn answer<B>(state: &AdminState, request: &Request<B>) -> Response<Full<Bytes>> {
    let mut response = route(state, request);
    console::secure(&mut response);
    response
}

fn route<B>(state: &AdminState, request: &Request<B>) -> Response<Full<Bytes>> {
    let snapshot = state.gateway.snapshot();
    let admin = &snapshot.settings.admin;
    if let Err(refused) = auth::check(admin.token_file.as_deref(), request.headers()) {
        let mut response = json(refused.status(), &json!({"error": refused.message()}));
        if refused == auth::Refused::Unauthorized {
            for challenge in auth::Refused::challenges() {
                response
                    .headers_mut()
                    .append(http::header::WWW_AUTHENTICATE, challenge);
            }
        }
        return response;
    }
    let path = request.uri().path();
    let console_path = admin.console && (path == "/" || path.starts_with("/console"));
    let known = console_path || matches!(path, "/metrics" | "/healthz" | "/readyz" | "/status");
    if known && request.method() != Method::GET && request.method() != Method::HEAD {
        let mut response = json(
            StatusCode::METHOD_NOT_ALLOWED,
            &json!({"error": "method not allowed", "allow": ["GET", "HEAD"]}),
        );
        response
            .headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    match path {
        "/metrics" => {
            let mut response =
                Response::new(Full::new(Bytes::from(state.gateway.metrics().render())));
            response.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            response
        }
        "/healthz" => json(StatusCode::OK, &json!({"status": "ok"})),
        "/readyz" => {
            let generation = state.gateway.snapshot().generation;
            if state.draining.load(Ordering::Relaxed) {
                json(
                    StatusCode::SERVICE_UNAVAILABLE,
                    &json!({"ready": false, "reason": "shutting down", "generation": generation}),
                )
            } else {
                // A gateway only exists with a loaded config; generation ≥ 1 says so.
                json(
                    StatusCode::OK,
                    &json!({"ready": generation > 0, "generation": generation}),
                )
            }
        }
        "/status" => json(StatusCode::OK, &status(state)),
        "/" if console_path => console::redirect_root(),
        _ if console_path => console::answer(state, path, request.uri().query()),
        _ => json(
            StatusCode::NOT_FOUND,
            &json!({
                "error": "not found",
                "endpoints": if admin.console {
                    json!(["/metrics", "/healthz", "/readyz", "/status", "/console/"])
                } else {
                    json!(["/metrics", "/healthz", "/readyz", "/status"])
                },
            }),
        ),
    }
}

/// The `/status` document.
pub fn status(state: &AdminState) -> Value {
    let snapshot = state.gateway.snapshot();
    let policy = &snapshot.policy;
    let mut document = json!({
        "generation": snapshot.generation,
        "content_hash": snapshot.content_hash,
        "loaded_at": rfc3339_unix(snapshot.loaded_at),
        "mode": match snapshot.settings.mode {
            crate::config::gateway::Mode::Enforce => "enforce",
            crate::config::gateway::Mode::Shadow => "shadow",
        },
        "files": snapshot.files.iter().map(|file| file.display().to_string()).collect::<Vec<_>>(),
        "counts": {
            "routes": snapshot.routes.len(),
            "tokens": policy.tokens.len(),
            "users": policy.users.len(),
            "accounts": policy.accounts.len(),
            "zones": policy.zones.len(),
            "domain_groups": policy.accounts.iter().map(|account| account.domain_groups).sum::<usize>(),
            "permission_groups": policy.groups.len(),
            "policies": policy.policy_count(),
        },
    });
    let reload = match &state.reloader {
        Some(reloader) => {
            let status = reloader.status();
            let (error_at, errors) = match &status.error {
                Some((at, errors)) => (Some(rfc3339(*at)), Some(errors)),
                None => (None, None),
            };
            json!({
                "config": reloader.config_path().display().to_string(),
                "last_reload": status.last.as_ref().map(|last| json!({
                    "outcome": last.outcome.as_str(),
                    "trigger": last.trigger.as_str(),
                    "at": rfc3339(last.at),
                    "generation": last.generation,
                    "duration_ms": last.duration.as_secs_f64() * 1000.0,
                    "reused_unchanged_token_files": last.reused,
                })),
                "last_applied_at": rfc3339(status.last_applied),
                "in_sync": errors.is_none(),
                "last_error": errors.map(ToString::to_string),
                "last_error_at": error_at,
                "errors": errors.map_or_else(Vec::new, error_list),
                "restart_required": status.restart_required,
                "watcher": watcher(&status.watcher),
                "last_change": status.last_change.as_ref().map(last_change),
            })
        }
        None => json!({
            "last_reload": null,
            "in_sync": true,
            "last_error": null,
            "errors": [],
            "restart_required": [],
            "watcher": {"enabled": false},
            "last_change": null,
        }),
    };
    if let (Value::Object(document), Value::Object(reload)) = (&mut document, reload) {
        document.extend(reload);
    }
    document
}

/// The last access-change record, with at most the first 20 of its changes (the decision log has 100; the
/// counts are of all of them).
fn last_change(record: &Value) -> Value {
    let mut record = record.clone();
    if let Some(Value::Array(changes)) = record.get_mut("changes") {
        changes.truncate(20);
    }
    record
}

fn error_list(errors: &ConfigErrors) -> Vec<Value> {
    errors
        .0
        .iter()
        .map(|error| {
            json!({
                "file": error.file.display().to_string(),
                "line": error.line,
                "column": error.column,
                "path": error.path,
                "code": error.kind.code(),
                "message": error.message,
            })
        })
        .collect()
}

fn watcher(status: &WatcherStatus) -> Value {
    json!({
        "enabled": status.enabled,
        "healthy": status.healthy,
        "folders": status.folders.iter().map(|folder| folder.display().to_string()).collect::<Vec<_>>(),
        "last_error": status.last_error,
        "restarts": status.restarts,
    })
}

fn rfc3339(at: OffsetDateTime) -> String {
    at.format(&Rfc3339).unwrap_or_default()
}

fn rfc3339_unix(seconds: i64) -> String {
    OffsetDateTime::from_unix_timestamp(seconds).map_or_else(|_| String::new(), rfc3339)
}

fn json(status: StatusCode, value: &Value) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(value.to_string())));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
