//! `permgate serve`: load the config (a bad one is fatal: every error printed, exit 2), start the proxy, the
//! admin listener (`/metrics`, `/healthz`, `/readyz`, `/status`), the decision listeners (`decision:`), the
//! decision log and the reloader (file watcher, timer, `SIGHUP`), run until SIGTERM/SIGINT, drain within `shutdown_grace`, exit 0.
//!
//! [`start`] starts everything and hands back [`Services`], so integration tests run exactly what the
//! binary runs (on port 0, without the process-wide `SIGHUP` handler).

use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use tokio::net::TcpListener;

use crate::admin::{self, Admin, AdminState};
use crate::authz_endpoint::{self, DecisionListeners};
use crate::decision_log::{DecisionLog, DecisionLogError, DenialRing, LogWriter};
use crate::metrics::Metrics;
use crate::proxy::{self, Drain, Observer, Running, StartError};
use crate::reload::{ChangeRecords, ReloadTask, Reloader, Triggers};
use crate::snapshot::Snapshot;

/// Runs the gateway with the config at `config`.
pub fn run(config: &Path) -> ExitCode {
    let snapshot = match crate::config::load(config) {
        Ok(snapshot) => {
            init_tracing(snapshot.settings.log_format);
            snapshot
        }
        Err(errors) => {
            eprintln!("{errors}");
            eprintln!(
                "permgate: the config at {} has errors; not starting",
                config.display()
            );
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("permgate: cannot start the async runtime: {error}");
            return ExitCode::from(1);
        }
    };
    runtime.block_on(serve(config, snapshot))
}

/// Why the services could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Proxy(#[from] StartError),
    #[error("cannot listen on {addr} (admin_listen): {source}")]
    Admin {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    DecisionLog(#[from] DecisionLogError),
    #[error(transparent)]
    Decision(#[from] crate::authz_endpoint::BindError),
    #[error("metrics registry: {0}")]
    Metrics(#[from] prometheus::Error),
}

impl ServeError {
    /// The exit code: 2 for what the config can fix (certificates, CA file, decision-log path), 1 else.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Proxy(StartError::Tls(_) | StartError::Upstream(_)) | Self::DecisionLog(_) => 2,
            Self::Proxy(_) | Self::Admin { .. } | Self::Metrics(_) | Self::Decision(_) => 1,
        }
    }
}

/// Everything `permgate serve` runs.
#[derive(Debug)]
pub struct Services {
    /// The proxy (its `gateway` holds the live snapshot and the metrics).
    pub proxy: Running,
    /// The admin listener.
    pub admin: Admin,
    /// The decision listeners (`decision:`; none by default).
    pub decision: DecisionListeners,
    /// The reloader ([`Reloader::reload_now`] reloads at once).
    pub reloader: Arc<Reloader>,
    reload_task: ReloadTask,
    decision_log: Option<LogWriter>,
    audit_log: Option<LogWriter>,
}

impl Services {
    /// Graceful stop: `/readyz` turns 503, reloading stops, the proxy drains, the decision log is flushed,
    /// then the admin listener closes.
    pub async fn stop(self) -> Drain {
        self.admin.state.begin_draining();
        self.reload_task.stop().await;
        self.decision.stop().await;
        let drain = self.proxy.stop().await;
        for writer in [self.decision_log, self.audit_log].into_iter().flatten() {
            writer.stop().await;
        }
        self.admin.stop().await;
        drain
    }
}

/// Starts the proxy, admin listener, decision log and reloader for `snapshot`, loaded from `config`.
/// Both listeners are bound before anything serves, so a taken port fails the start cleanly.
pub async fn start(
    config: &Path,
    snapshot: Snapshot,
    triggers: Triggers,
) -> Result<Services, ServeError> {
    let settings = &snapshot.settings;
    let listen = settings.listen;
    let admin_addr = settings.admin_listen;
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|source| StartError::Bind {
            addr: listen,
            source,
        })?;
    let admin_listener =
        TcpListener::bind(admin_addr)
            .await
            .map_err(|source| ServeError::Admin {
                addr: admin_addr,
                source,
            })?;
    let decision_sockets = authz_endpoint::bind(&settings.decision).await?;
    let decision_listeners = settings.decision.clone();
    let metrics = Metrics::new()?;
    // The console's Recent denials: the denied lines the decision log writes (none while it is off).
    let denials = DenialRing::new(DenialRing::DEFAULT_CAPACITY);
    let (decision_log, writer) = match DecisionLog::start_with_ring(
        &settings.decision_log,
        Arc::clone(&metrics),
        Some(Arc::clone(&denials)),
    )? {
        Some((log, writer)) => (Some(log), Some(writer)),
        None => (None, None),
    };
    let denials = decision_log.as_ref().map(|_| denials);
    let (change_records, audit_writer) = match &settings.audit_log {
        None => (ChangeRecords::DecisionLog, None),
        Some(audit) => match DecisionLog::start(audit, Arc::clone(&metrics))? {
            Some((log, writer)) => (ChangeRecords::AuditLog(log), Some(writer)),
            None => (ChangeRecords::Off, None),
        },
    };
    let observer = Observer {
        metrics: Arc::clone(&metrics),
        decision_log,
    };
    let running = proxy::start_observed(snapshot, listener, observer).await?;
    let reloader = Reloader::new(
        config,
        Arc::clone(&running.gateway),
        metrics,
        change_records,
    );
    let state = AdminState::with_denials(
        Arc::clone(&running.gateway),
        Some(Arc::clone(&reloader)),
        denials,
    );
    let admin = match admin::start_on(admin_listener, state) {
        Ok(admin) => admin,
        Err(source) => {
            let _ = running.stop().await;
            return Err(ServeError::Admin {
                addr: admin_addr,
                source,
            });
        }
    };
    let decision = authz_endpoint::start(&decision_listeners, decision_sockets, &running.gateway);
    let reload_task = reloader.spawn(triggers);
    Ok(Services {
        proxy: running,
        admin,
        decision,
        reloader,
        reload_task,
        decision_log: writer,
        audit_log: audit_writer,
    })
}

/// Starts everything for `snapshot` (loaded from `config`) and runs until a shutdown signal.
pub async fn serve(config: &Path, snapshot: Snapshot) -> ExitCode {
    let generation = snapshot.generation;
    let triggers = Triggers {
        watch: true,
        timer: true,
        sighup: true,
    };
    let services = match start(config, snapshot, triggers).await {
        Ok(services) => services,
        Err(error) => {
            eprintln!("permgate: {error}");
            return ExitCode::from(error.exit_code());
        }
    };
    let scheme = if services.proxy.tls { "https" } else { "http" };
    tracing::info!(
        listen = %services.proxy.addr, scheme, admin = %services.admin.addr, generation,
        "permgate is serving"
    );
    shutdown_signal().await;
    tracing::info!("shutdown signal received: no new connections, finishing in-flight requests");
    match services.stop().await {
        Drain::Complete => tracing::info!("all connections finished"),
        Drain::GraceElapsed { remaining } => {
            tracing::warn!(
                remaining,
                "shutdown grace elapsed; remaining connections were closed"
            );
        }
    }
    ExitCode::SUCCESS
}

/// Logs to stderr (stdout is the decision log's default sink); `RUST_LOG` filters, default `info`. Text:
/// colours only on a terminal (a log file or journald gets plain text). JSON (`log: {format: json}`): one
/// object per line, multi-line messages included.
pub fn init_tracing(format: crate::settings::LogFormat) {
    use std::io::IsTerminal as _;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // Already initialised (tests, or demo after serve) is fine.
    let _ = match format {
        crate::settings::LogFormat::Text => builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
        crate::settings::LogFormat::Json => builder.json().with_ansi(false).try_init(),
    };
}

/// Resolves on SIGTERM or SIGINT (Ctrl-C); elsewhere than Unix, on Ctrl-C.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(mut terminate), Ok(mut interrupt)) => {
                tokio::select! {
                    _ = terminate.recv() => {}
                    _ = interrupt.recv() => {}
                }
                return;
            }
            _ => tracing::warn!("cannot install SIGTERM/SIGINT handlers; falling back to Ctrl-C"),
        }
    }
    if tokio::signal::ctrl_c().await.is_err() {
        // No way to be told to stop: run until killed.
        std::future::pending::<()>().await;
    }
}
