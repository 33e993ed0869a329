//! permgate: an API authorization gateway — a reverse proxy that checks every call against scoped permissions.
//!
//! The pipeline, in order, each step a module:
//!
//! ```text
//! request → canonical target → route match → authenticate → authorize → forward | answer
//!           routes::target      routes        auth            policy       proxy
//! ```
//!
//! - [`config`]: the raw serde mirror of the files, the compilers from them to the model, and the loader that
//!   turns them into a [`snapshot::Snapshot`], reporting every error at once with file, path and line.
//! - [`policy`]: the access model compiled into indexed structures, and the pure `evaluate`.
//! - [`routes`]: canonical request targets and the matchit route tables.
//! - [`settings`]: the server settings a snapshot holds, compiled from `gateway.yaml`.
//! - [`auth`]: credentials read from request headers.
//! - [`answer`]: every answer the gateway makes itself, in Cloudflare's envelope.
//! - [`openapi`]: the OpenAPI importer behind `permgate routes import-openapi` (pure).
//! - [`pipeline`]: the pure decision for one request, shared by `permgate check` and the proxy.
//! - [`analysis`]: what a config grants (`permgate access`), computed by the decision's own rules (pure).
//! - [`metrics`]: the Prometheus registry and one typed function per event.
//! - [`decision_log`]: one JSON line per request, queued off the request path.
//! - [`reload`]: file watcher, timer and `SIGHUP` → re-read, compile, one atomic swap of the snapshot.
//! - [`authz_endpoint`]: the decision listeners, for proxies that delegate the decision (nginx
//!   `auth_request`, forward-auth, Envoy `ext_authz` over HTTP and gRPC).
//! - [`admin`]: the admin listener (`/metrics`, `/healthz`, `/readyz`, `/status`) and its read-only web console.
//!
//! The pure modules (`policy`, `routes`, `auth`, `answer`, `pipeline`) do no I/O and read no clock.

pub mod admin;
pub mod analysis;
pub mod answer;
pub mod auth;
pub mod authz_endpoint;
pub mod cli;
pub mod config;
pub mod decision_log;
pub mod metrics;
pub mod openapi;
pub mod pipeline;
pub mod policy;
pub mod proxy;
pub mod reload;
pub mod routes;
pub mod settings;
pub mod snapshot;
pub mod tls;
