//! The gateway server: a hyper reverse proxy that authorizes every request before forwarding it.
//!
//! - [`server`]: accept loop, connection limit, TLS, HTTP/1.1 + HTTP/2, slow clients, graceful shutdown.
//! - [`service`]: one request in phases: its context (`context`: the connection's [`ConnInfo`] and the
//!   request context, built once), `decide` (framing and upgrade checks, `pipeline::decide`, the plan),
//!   `forward` (headers, lane and URI form, body watch, response, WebSocket tunnel) or `verify` (the
//!   gateway's own token-verify answer), and `observe` (metrics, decision log, error answers).
//! - [`live`]: [`Live`], everything a request reads of one generation (snapshot, upstream clients and
//!   credential, inbound certificate, route series), swapped whole by the reloader with one store.
//! - [`headers`]: header hygiene (pure), [`framing`]: Content-Length / Transfer-Encoding checks (pure) and the
//!   connection's raw-byte framing tap, [`upgrade`]: which `Upgrade` offers and `101`s are carried (pure).
//! - [`upstream_auth`]: the upstream's own credential (`upstream.auth`), read from a file or the environment
//!   and set on every request the gateway authorized, never shown.
//! - [`upstream`]: the upstream clients and the upstream URI; `bound`: the upstream connection lent to an
//!   inbound HTTP/1 connection's exchange and driven by its task, and the connection's upstream lane;
//!   `pool`: the idle pool between exchanges, generic over the connection.
//! - `shutdown`: the graceful-shutdown signal each connection watches without a shared lock.
//! - `pair`: an inbound connection and its lent upstream connection in one task, each polled when woken.
//! - [`delegate`]: the decision for a proxy in front (the decision listeners of `authz_endpoint`): the
//!   same context, decision, plan, metrics and log as the proxy's own requests, answered as a [`Delegated`].
//! - [`launch`]: start a gateway in the background and stop it (CLI and tests).
//! - [`error`]: the one function that turns any failure into the client's answer; [`failure_log`]: repeated
//!   failures logged as one line per kind per interval.
//! - [`sample_upstream`]: the demo's built-in upstream.
//!
//! Three modules outside this one use it: the CLI (`cli::serve` and `cli::demo` start a gateway through
//! [`launch`] and hold its [`Gateway`]), the reloader (`reload` imports [`Gateway`] and [`Live`] and stores
//! each new generation through the gateway) and the admin listener (`admin` imports [`Gateway`] to read its
//! snapshot and metrics). This module never decides anything itself (that is `pipeline::decide`) and never
//! logs a credential.
//!
//! # The life of an HTTP/1 connection and its lent upstream connection
//!
//! ```text
//! accept → tap → pair → (per forwarded request) checkout → bind → responded → release
//! ```
//!
//! 1. **Accept** (`server`): a permit of `max_connections` (else the one 503 answer), the TLS handshake
//!    with the serving generation's certificate, and the connection's [`ConnInfo`].
//! 2. **Tap** (`framing::FramingTap`): the client's bytes feed a raw-byte scanner on their way to hyper; each
//!    HTTP/1 request takes the next verdict, in order, before anything else, and one that is not clear
//!    (both framing headers, or a head the scanner could not follow, or a poisoned lock) is refused with
//!    `Connection: close`.
//! 3. **Pair** (`pair::Pair`): the connection's task polls hyper's server connection and the
//!    `bound::Binding` slot of its lent upstream connection (`Binding::drive`), each only when it was woken.
//!    The connection's `bound::UpstreamLane` lends HTTP/1 requests that slot; HTTP/2 requests and WebSocket
//!    handshakes take the pooled clients instead (absolute-form URI).
//! 4. **Checkout** (`pool::Pool::checkout`, `bound::Lender`): a forwarded request takes the newest idle
//!    connection of its generation's upstream that is still alive, else opens one while also waiting for
//!    one to come back (whichever is first).
//! 5. **Bind** (`Binding::bind`): the connection's I/O future moves into the slot and the task is woken to
//!    drive it; the request (origin-form URI, the upstream's `Host`) is handed to its sender. A reused
//!    connection that hands the request back unsent (it closed just then) is replaced once.
//! 6. **Responded** (`Binding::responded`): the response head arrived; from now on the exchange is over
//!    exactly when the sender is ready again.
//! 7. **Release** (`Bound::release`, `Pool::put`): the exchange over, the connection goes back to its pool
//!    (to a request waiting for one first, else idle, swept when the upstream closes it or it idles too
//!    long). When the inbound connection ends, its slot is released: a connection whose exchange is not
//!    over is closed, never reused.
//!
//! Two hyper behaviours carry this design:
//!
//! - **hyper's HTTP/1 server handles one request at a time per connection**: it does not call the service
//!   for the next request before the response to the previous one is done. So one binding slot per inbound
//!   connection is enough (an inbound HTTP/1 connection carries one exchange at a time), and the tap's
//!   verdicts, one per head in byte order, line up with the service's calls.
//! - **hyper's HTTP/1 client connection is ready for another request exactly when the previous response
//!   has been read whole** (`SendRequest::is_ready` after the response head): that is how `Drive` and
//!   `Binding::responded` know the exchange is over and the connection can go back to the pool, with no
//!   body wrapper counting bytes.
//!
//! Each request is served by one generation throughout ([`live`]): the connection it is lent comes from the
//! pool of that generation's own upstream clients, so the upstream URL it was decided and addressed with and
//! the connection it travels on always agree.

pub mod body;
mod bound;
mod context;
mod decide;
pub mod delegate;
pub mod error;
pub mod failure_log;
mod forward;
pub mod framing;
pub mod headers;
pub mod launch;
pub mod live;
mod observe;
mod pair;
mod pool;
pub mod request_id;
pub mod sample_upstream;
pub mod server;
pub mod service;
mod shutdown;
pub mod trace_context;
pub mod upgrade;
pub mod upstream;
pub mod upstream_auth;
mod verify;

pub use context::ConnInfo;
pub use delegate::{Delegated, Original};
pub use error::ProxyError;
pub use launch::{Running, StartError, start, start_observed, start_on};
pub use live::Live;
pub use server::{Drain, serve};
pub use service::{Gateway, Observer};
