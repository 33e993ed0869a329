//! `permgate serve`: load the config (a bad one is fatal: every error printed, exit 2), start the proxy,
//! run until SIGTERM/SIGINT, drain within `shutdown_grace`, exit 0.
//!
//! Seam for the next issue: the admin listener (`/metrics`, `/healthz`, `/readyz`, `/status`) and the
//! config reloader start next to the proxy in [`serve`], sharing `running.gateway.snapshot()` (the live
//! `ArcSwap`) and `running.certificates` (the inbound certificate store).

use std::path::Path;
use std::process::ExitCode;

use crate::proxy::{self, Drain};
use crate::snapshot::Snapshot;

/// Runs the gateway with the config at `config`.
pub fn run(config: &Path) -> ExitCode {
    init_tracing();
    let snapshot = match crate::config::load(config) {
        Ok(snapshot) => snapshot,
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
    runtime.block_on(serve(snapshot))
}

/// Starts everything for `snapshot` and runs until a shutdown signal.
pub async fn serve(snapshot: Snapshot) -> ExitCode {
    let generation = snapshot.generation;
    let running = match proxy::start(snapshot).await {
        Ok(running) => running,
        Err(error) => {
            eprintln!("permgate: {error}");
            return ExitCode::from(match error {
                proxy::StartError::Bind { .. } => 1,
                // Unreadable certificates or CA files are config errors.
                proxy::StartError::Tls(_) | proxy::StartError::Upstream(_) => 2,
            });
        }
    };
    let scheme = if running.certificates.is_some() {
        "https"
    } else {
        "http"
    };
    tracing::info!(listen = %running.addr, scheme, generation, "permgate is serving");
    // Next issue: admin listener and reloader are started here.
    shutdown_signal().await;
    tracing::info!("shutdown signal received: no new connections, finishing in-flight requests");
    match running.stop().await {
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

/// Logs to stderr (stdout is the decision log's default sink); `RUST_LOG` filters, default `info`.
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Already initialised (tests, or demo after serve) is fine.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
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
