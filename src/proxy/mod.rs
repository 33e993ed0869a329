//! The gateway server: a hyper reverse proxy that authorizes every request before forwarding it.
//!
//! - [`server`]: accept loop, connection limit, TLS, HTTP/1.1 + HTTP/2, slow clients, graceful shutdown.
//! - [`service`]: one request: snapshot → decision → forward | answer `verify` | refuse.
//! - [`headers`]: header hygiene (pure), [`framing`]: Content-Length / Transfer-Encoding checks (pure),
//!   [`upgrade`]: which `Upgrade` offers and `101`s are carried (pure).
//! - [`upstream_auth`]: the upstream's own credential (`upstream.auth`), read from a file or the environment
//!   and set on every request the gateway authorized, never shown.
//! - [`upstream`]: the upstream clients and the upstream URI; `bound`: the upstream connection lent to an
//!   inbound HTTP/1 connection's exchange and driven by its task, and the idle pool between exchanges.
//! - `shutdown`: the graceful-shutdown signal each connection watches without a shared lock.
//! - `pair`: an inbound connection and its lent upstream connection in one task, each polled when woken.
//! - [`launch`]: start a gateway in the background and stop it (CLI and tests).
//! - [`error`]: the one function that turns any failure into the client's answer; [`failure_log`]: repeated
//!   failures logged as one line per kind per interval.
//! - [`sample_upstream`]: the demo's built-in upstream.
//!
//! Nothing outside this module imports it except the CLI; it never decides anything itself (that is
//! `pipeline::decide`) and never logs a credential.

pub mod body;
mod bound;
pub mod error;
pub mod failure_log;
pub mod framing;
pub mod headers;
pub mod launch;
mod pair;
pub mod request_id;
pub mod sample_upstream;
pub mod server;
pub mod service;
mod shutdown;
pub mod upgrade;
pub mod upstream;
pub mod upstream_auth;

pub use error::ProxyError;
pub use launch::{Running, StartError, start, start_observed, start_on};
pub use server::{Drain, serve};
pub use service::{ConnInfo, Gateway, Observer};
