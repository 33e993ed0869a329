//! The decision listeners (`decision:` in `gateway.yaml`): permgate as the authorization service of a proxy
//! that is already there — nginx `auth_request`, Traefik/Caddy/APISIX forward-auth, Envoy `ext_authz` over
//! HTTP and gRPC. Off by default; never the proxy or admin listener.
//!
//! ```text
//! decision request → peer in trusted_proxies? → original request by the listener's protocol (original)
//!   → Gateway::decide_delegated: the proxy's context, pipeline::decide, plan, metrics and decision log
//!   → the answer in the protocol's form (http: status and headers; grpc: CheckResponse)
//! ```
//!
//! - [`original`]: which headers (or message fields) name the original request, per protocol (pure).
//! - [`http`]: the HTTP listeners (`auth_request`, `forward_auth`, `ext_authz_http`) and their answers.
//! - [`grpc`]: `envoy.service.auth.v3.Authorization/Check` (tonic, `envoy-types`).
//!
//! Each listener declares the proxy in front of it, so the headers that name the original request are
//! chosen by configuration, never guessed per request. Every decision reads the one serving snapshot (a
//! reload applies to the next decision request); nothing is cached. Every error is a denial: there is no
//! fail-open setting.

pub mod grpc;
pub mod http;
pub mod original;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::proxy::Gateway;
use crate::settings::{DecisionListener, DecisionProtocol};

/// A decision listener could not be bound.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {addr} (decision, {protocol}): {source}")]
pub struct BindError {
    pub addr: SocketAddr,
    pub protocol: &'static str,
    #[source]
    pub source: std::io::Error,
}

/// The running decision listeners.
#[derive(Debug, Default)]
pub struct DecisionListeners {
    /// Each listener's protocol and bound address (the real port when `listen` had port 0), in the
    /// order of `decision:`.
    pub bound: Vec<(DecisionProtocol, SocketAddr)>,
    running: Vec<(oneshot::Sender<()>, JoinHandle<()>)>,
}

/// Binds every listener of `listeners` (all before any serves, so a taken port fails the start cleanly).
pub async fn bind(listeners: &[DecisionListener]) -> Result<Vec<TcpListener>, BindError> {
    let mut sockets = Vec::with_capacity(listeners.len());
    for listener in listeners {
        let socket = TcpListener::bind(listener.listen)
            .await
            .map_err(|source| BindError {
                addr: listener.listen,
                protocol: listener.protocol.as_str(),
                source,
            })?;
        sockets.push(socket);
    }
    Ok(sockets)
}

/// Serves each of `listeners` on its bound socket (from [`bind`], same order), deciding with `gateway`.
pub fn start(
    listeners: &[DecisionListener],
    sockets: Vec<TcpListener>,
    gateway: &Arc<Gateway>,
) -> DecisionListeners {
    let mut started = DecisionListeners::default();
    for (listener, socket) in listeners.iter().zip(sockets) {
        let addr = socket.local_addr().unwrap_or(listener.listen);
        let (stop, stopped) = oneshot::channel();
        let gateway = Arc::clone(gateway);
        let task = match listener.protocol {
            DecisionProtocol::ExtAuthzGrpc => tokio::spawn(grpc::serve(socket, gateway, stopped)),
            _ => tokio::spawn(http::serve(socket, listener.clone(), gateway, stopped)),
        };
        tracing::info!(listen = %addr, protocol = listener.protocol.as_str(), "decision listener is serving");
        started.bound.push((listener.protocol, addr));
        started.running.push((stop, task));
    }
    started
}

impl DecisionListeners {
    /// The bound address of the first listener of `protocol`.
    pub fn addr(&self, protocol: DecisionProtocol) -> Option<SocketAddr> {
        self.bound
            .iter()
            .find(|(bound, _)| *bound == protocol)
            .map(|(_, addr)| *addr)
    }

    /// Stops accepting and waits briefly for decisions in flight.
    pub async fn stop(self) {
        for (stop, task) in self.running {
            let _ = stop.send(());
            let _ = task.await;
        }
    }
}
