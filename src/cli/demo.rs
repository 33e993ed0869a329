//! `permgate demo`: the shipped `config/` and `routes/` in front of the built-in sample upstream, with
//! ready-to-paste `curl` lines that show an allowed call, a 403 with its reason, and a path no route has
//! (400/7000, Cloudflare's answer).
//!
//! The printed expectations are not hard-coded: each demo call is decided with the loaded snapshot by the
//! same `pipeline::decide` the proxy uses, so what is printed is what the gateway answers. The pieces are
//! public so an integration test can run the demo on port 0 and replay the calls.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use http::{HeaderMap, HeaderValue};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use crate::config::ConfigErrors;
use crate::pipeline::{self, Facts};
use crate::proxy::{self, Running, StartError, sample_upstream};
use crate::snapshot::Snapshot;

/// The demo user token: Joe's DNS-read token on zone [`DEMO_ZONE`]. It is a published demo secret.
pub const DEMO_TOKEN: &str = "pgt_demo_joe_dns_read";
/// The zone the demo token may read (`example.com` of account `a67e14daa5f8dceeb91fe5449ba496eb`).
pub const DEMO_ZONE: &str = "b1fbb152bbde3bd28919a7f4bdca841f";

/// Arguments of `permgate demo`.
#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// The gateway config to serve; the shipped one by default (run from the repository root).
    #[arg(long, default_value = "config/gateway.yaml")]
    pub config: PathBuf,
    /// Listen here instead of the config's `listen` (`127.0.0.1:0` picks a free port).
    #[arg(long)]
    pub listen: Option<SocketAddr>,
}

/// Why the demo could not start.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error(
        "{} not found: `permgate demo` runs from the repository root (where config/ and routes/ are), \
         or pass --config PATH",
        .0.display()
    )]
    ConfigNotFound(PathBuf),
    #[error("the demo config has errors:\n{0}")]
    Config(ConfigErrors),
    #[error("cannot start the sample upstream: {0}")]
    Upstream(std::io::Error),
    #[error("{0} (another process may hold the port; try --listen 127.0.0.1:0)")]
    Start(StartError),
}

/// One demo request, and what the gateway answers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DemoCall {
    /// What it shows.
    pub title: &'static str,
    pub method: &'static str,
    /// The request target.
    pub path: String,
    /// The bearer token sent, if any.
    pub token: Option<&'static str>,
    /// The status the gateway answers (200: forwarded, the sample upstream answers).
    pub status: u16,
    /// The error code (0 when allowed).
    pub code: u32,
    /// The answer's message, or for an allowed call what the upstream shows.
    pub outcome: String,
}

// === impl DemoCall ===

impl DemoCall {
    /// The request headers it sends.
    pub fn headers(&self) -> HeaderMap {
        let mut headers = HeaderMap::new();
        if let Some(value) = self
            .token
            .and_then(|token| HeaderValue::from_str(&format!("Bearer {token}")).ok())
        {
            headers.insert(http::header::AUTHORIZATION, value);
        }
        headers
    }

    /// The ready-to-paste `curl` line against `base_url` (`http://127.0.0.1:8080`); `-k` for TLS.
    pub fn curl(&self, base_url: &str) -> String {
        let mut line = String::from("curl -s");
        if base_url.starts_with("https:") {
            line.push_str(" -k");
        }
        if self.method != "GET" {
            line.push_str(" -X ");
            line.push_str(self.method);
        }
        if let Some(token) = self.token {
            line.push_str(&format!(" -H \"Authorization: Bearer {token}\""));
        }
        line.push(' ');
        line.push_str(base_url);
        line.push_str(&self.path);
        line
    }
}

/// The three demo calls, decided with `snapshot` as the proxy will decide them (client 127.0.0.1, now).
pub fn calls(snapshot: &Snapshot, now: i64) -> Vec<DemoCall> {
    let records = format!("/client/v4/zones/{DEMO_ZONE}/dns_records");
    let planned: [(&'static str, &'static str, String, Option<&'static str>); 3] = [
        (
            "allowed: Joe's DNS-read token lists the zone's DNS records",
            "GET",
            records.clone(),
            Some(DEMO_TOKEN),
        ),
        (
            "403: the same token cannot create records (it only reads)",
            "POST",
            records,
            Some(DEMO_TOKEN),
        ),
        (
            "400 (code 7000): no route matches, answered as Cloudflare does (fail closed)",
            "GET",
            "/client/v4/no/such/route".to_string(),
            None,
        ),
    ];
    planned
        .into_iter()
        .map(|(title, method, path, token)| {
            let mut call = DemoCall {
                title,
                method,
                path,
                token,
                status: 0,
                code: 0,
                outcome: String::new(),
            };
            let headers = call.headers();
            let verdict = pipeline::decide(
                snapshot,
                &Facts {
                    method,
                    target: &call.path,
                    headers: &headers,
                    peer_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
                    now,
                },
            );
            (call.status, call.code, call.outcome) = match &verdict.outcome {
                Ok(()) => (
                    200,
                    0,
                    "the sample upstream echoes the path and the identity headers it received"
                        .to_string(),
                ),
                Err(refusal) => {
                    let message = refusal.answer.full_message(refusal.denial.as_ref());
                    let outcome = match &refusal.denial {
                        Some(denial) if snapshot.settings.explain_denials => {
                            format!("{message}: {denial}")
                        }
                        _ => message.into_owned(),
                    };
                    (refusal.answer.status, refusal.answer.code, outcome)
                }
            };
            call
        })
        .collect()
}

/// A running demo: the gateway, the sample upstream, and the calls to try.
#[derive(Debug)]
pub struct Demo {
    pub gateway: Running,
    /// The sample upstream's address.
    pub upstream_addr: SocketAddr,
    /// `http://<gateway address>` (or `https://` when the config turns TLS on).
    pub base_url: String,
    pub calls: Vec<DemoCall>,
    stop_upstream: oneshot::Sender<()>,
}

// === impl Demo ===

impl Demo {
    /// What the demo prints: where it listens and the curl lines with their expected answers.
    pub fn instructions(&self) -> String {
        let mut out = format!(
            "permgate demo: gateway on {} in front of the built-in sample upstream on {}\n\
             Paste these into another terminal (Ctrl-C here stops the demo):\n",
            self.base_url, self.upstream_addr
        );
        for call in &self.calls {
            out.push_str(&format!(
                "\n# {}\n{}\n",
                call.title,
                call.curl(&self.base_url)
            ));
            if call.code == 0 {
                out.push_str(&format!("#   -> {}: {}\n", call.status, call.outcome));
            } else {
                out.push_str(&format!(
                    "#   -> {} (code {}): {}\n",
                    call.status, call.code, call.outcome
                ));
            }
        }
        out
    }

    /// Stops the gateway (draining) and the sample upstream.
    pub async fn stop(self) {
        let _ = self.gateway.stop().await;
        let _ = self.stop_upstream.send(());
    }
}

/// Loads the demo config, starts the sample upstream on 127.0.0.1:0 and the gateway in front of it.
pub async fn start(args: &DemoArgs) -> Result<Demo, DemoError> {
    let mut snapshot = load(&args.config)?;
    let upstream = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .map_err(DemoError::Upstream)?;
    let upstream_addr = upstream.local_addr().map_err(DemoError::Upstream)?;
    snapshot.settings.upstream.url = format!("http://{upstream_addr}")
        .parse()
        .map_err(|error| DemoError::Upstream(std::io::Error::other(error)))?;
    if let Some(listen) = args.listen {
        snapshot.settings.listen = listen;
    }
    let now = crate::config::load::unix_now();
    let calls = calls(&snapshot, now);
    let tls = snapshot.settings.tls.is_some();
    let (stop_upstream, stopped) = oneshot::channel::<()>();
    tokio::spawn(sample_upstream::serve(upstream, async move {
        let _ = stopped.await;
    }));
    let gateway = proxy::start(snapshot).await.map_err(DemoError::Start)?;
    let base_url = format!("{}://{}", if tls { "https" } else { "http" }, gateway.addr);
    Ok(Demo {
        gateway,
        upstream_addr,
        base_url,
        calls,
        stop_upstream,
    })
}

fn load(config: &Path) -> Result<Snapshot, DemoError> {
    if !config.exists() {
        return Err(DemoError::ConfigNotFound(config.to_path_buf()));
    }
    crate::config::load(config).map_err(DemoError::Config)
}

/// Runs `permgate demo` until Ctrl-C / SIGTERM.
pub fn run(args: &DemoArgs) -> ExitCode {
    super::serve::init_tracing();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("permgate demo: cannot start the async runtime: {error}");
            return ExitCode::from(1);
        }
    };
    runtime.block_on(async {
        let demo = match start(args).await {
            Ok(demo) => demo,
            Err(error) => {
                eprintln!("permgate demo: {error}");
                return ExitCode::from(match error {
                    DemoError::ConfigNotFound(_) | DemoError::Config(_) => 2,
                    DemoError::Upstream(_) | DemoError::Start(_) => 1,
                });
            }
        };
        super::print_out(&format!("{}\n", demo.instructions()));
        super::serve::shutdown_signal().await;
        demo.stop().await;
        ExitCode::SUCCESS
    })
}
