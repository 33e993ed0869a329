//! Starting and stopping a gateway in-process: bind (or take) a listener, load TLS, spawn [`serve`], and
//! hand back a [`Running`] handle with its address and a shutdown trigger.
//!
//! `permgate serve`, `permgate demo` and the integration tests all start the gateway this way, so they
//! exercise the same path. [`start`] and [`start_on`] give the gateway its own metrics registry and no
//! decision log; `permgate serve` passes its [`Observer`] (the registry `/metrics` serves, the decision
//! log) to [`start_observed`].

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::error::ProxyError;
use super::server::{Drain, serve};
use super::service::{Gateway, Observer};
use crate::metrics::Metrics;
use crate::snapshot::Snapshot;
use crate::tls::{self, TlsError};

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("inbound TLS: {0}")]
    Tls(#[from] TlsError),
    #[error("upstream client: {0}")]
    Upstream(#[from] ProxyError),
    #[error("metrics registry: {0}")]
    Metrics(#[from] prometheus::Error),
}

/// A gateway serving in the background.
#[derive(Debug)]
pub struct Running {
    /// The address the proxy listener is bound to (the real port when `listen` had port 0).
    pub addr: SocketAddr,
    /// The gateway, with what is serving (a reloader stores each new generation, certificate included,
    /// through it).
    pub gateway: Arc<Gateway>,
    /// Whether the proxy listener speaks TLS.
    pub tls: bool,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<Drain>,
}

// === impl Running ===

impl Running {
    /// Stops accepting and tells connections to finish; [`Running::wait`] then returns once drained.
    pub fn begin_shutdown(&mut self) {
        if let Some(trigger) = self.shutdown.take() {
            let _ = trigger.send(());
        }
    }

    /// Waits until the server has stopped (after [`Running::begin_shutdown`] or a dropped trigger).
    pub async fn wait(self) -> Drain {
        // A panicked or cancelled server task is reported as nothing left to drain: there is no server.
        self.task.await.unwrap_or(Drain::Complete)
    }

    /// Shuts down and waits for the drain.
    pub async fn stop(mut self) -> Drain {
        self.begin_shutdown();
        self.wait().await
    }
}

/// Binds `settings.listen` of the snapshot and starts serving it.
pub async fn start(snapshot: Snapshot) -> Result<Running, StartError> {
    let addr = snapshot.settings.listen;
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Bind { addr, source })?;
    start_on(snapshot, listener).await
}

/// Starts serving `snapshot` on an already-bound listener (TLS per the snapshot's settings).
pub async fn start_on(snapshot: Snapshot, listener: TcpListener) -> Result<Running, StartError> {
    let observer = Observer {
        metrics: Metrics::new()?,
        decision_log: None,
    };
    start_observed(snapshot, listener, observer).await
}

/// Starts serving `snapshot` on an already-bound listener, reporting to `observer`.
pub async fn start_observed(
    snapshot: Snapshot,
    listener: TcpListener,
    observer: Observer,
) -> Result<Running, StartError> {
    let addr = listener.local_addr().map_err(|source| StartError::Bind {
        addr: snapshot.settings.listen,
        source,
    })?;
    let certificate = match &snapshot.settings.tls {
        Some(settings) => Some(Arc::new(tls::load_certified_key(
            &settings.cert_file,
            &settings.key_file,
        )?)),
        None => None,
    };
    let tls = certificate.is_some();
    let gateway = Gateway::new(Arc::new(snapshot), certificate, observer)?;
    let server_config = if tls {
        Some(tls::server_config(gateway.certificate_resolver())?)
    } else {
        None
    };
    let (trigger, triggered) = oneshot::channel::<()>();
    let task = tokio::spawn(serve(
        Arc::clone(&gateway),
        listener,
        server_config,
        async move {
            // A dropped trigger also shuts down: a `Running` that is dropped does not leak a server.
            let _ = triggered.await;
        },
    ));
    Ok(Running {
        addr,
        gateway,
        tls,
        shutdown: Some(trigger),
        task,
    })
}
