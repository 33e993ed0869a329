//! `permgate demo`: a config (the shipped `config/` and `routes/` by default) in front of the built-in
//! sample upstream, which answers in Cloudflare's shapes, with ready-to-paste `curl` lines for that config:
//!
//! - the shipped demo config: an allowed call, a 403 with its reason, and a path no route has (400/7000,
//!   Cloudflare's answer);
//! - the Cloudflare example (`--config config/cloudflare/gateway.yaml`, the real route table): also an
//!   account token refused as Cloudflare refuses it (400/1001), a Workers KV key name holding `%2F`, an SDK
//!   method with no route, and how to point the official SDKs at it: an SDK playground;
//! - any other config: the no-route call only (the demo knows no token of it).
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
use crate::proxy::sample_upstream;
use crate::snapshot::Snapshot;

/// The demo user token: Joe's DNS-read token on zone [`DEMO_ZONE`]. It is a published demo secret.
pub const DEMO_TOKEN: &str = "pgt_demo_joe_dns_read";
/// The zone the demo token may read (`example.com` of account `a67e14daa5f8dceeb91fe5449ba496eb`).
pub const DEMO_ZONE: &str = "b1fbb152bbde3bd28919a7f4bdca841f";

/// The Cloudflare example's DNS-read token (Joe, `example.com`), a published demo secret.
pub const CF_DEMO_TOKEN: &str = "pgt_cf_demo_joe_dns_read";
/// The Cloudflare example's zone `example.com`.
pub const CF_DEMO_ZONE: &str = "023e105f4ecef8ad9ca31a8372d0c353";
/// The Cloudflare example's account, Example Company.
pub const CF_DEMO_ACCOUNT: &str = "01a7362d577a6c3019a474fd6f485823";
/// The Cloudflare example's account-owned CI token (Account Settings Read + DNS Read).
pub const CF_DEMO_ACCOUNT_TOKEN: &str = "pgt_cf_demo_example_ci";
/// The Cloudflare example's account-owned Workers KV read token.
pub const CF_DEMO_KV_TOKEN: &str = "pgt_cf_demo_kv_read";

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
    Start(super::serve::ServeError),
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

/// One planned demo call: what it shows, the method, the target and the bearer token.
type Planned = (&'static str, &'static str, String, Option<&'static str>);

/// The calls for the shipped demo config (`config/gateway.yaml`).
fn shipped_demo_plan() -> Vec<Planned> {
    let records = format!("/client/v4/zones/{DEMO_ZONE}/dns_records");
    vec![
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
        no_route_call(),
    ]
}

/// The calls for the Cloudflare example (`config/cloudflare/gateway.yaml`, the real route table).
fn cloudflare_demo_plan() -> Vec<Planned> {
    let records = format!("/client/v4/zones/{CF_DEMO_ZONE}/dns_records");
    vec![
        (
            "allowed: Joe's DNS-read token lists example.com's DNS records (a list with result_info; \
             ?page=2 is empty, so SDK auto-pagination ends)",
            "GET",
            records.clone(),
            Some(CF_DEMO_TOKEN),
        ),
        (
            "403: the same token cannot create records (it only reads)",
            "POST",
            records,
            Some(CF_DEMO_TOKEN),
        ),
        (
            "400 (code 1001): an account-owned token cannot list accounts, as Cloudflare answers it",
            "GET",
            "/client/v4/accounts".to_string(),
            Some(CF_DEMO_ACCOUNT_TOKEN),
        ),
        (
            "allowed: a Workers KV key name holding an encoded slash (an opaque parameter, forwarded as \
             received)",
            "GET",
            format!(
                "/client/v4/accounts/{CF_DEMO_ACCOUNT}/storage/kv/namespaces/\
                 0f2ac74b498b48028cb68387c421e279/values/images%2Fcat.png"
            ),
            Some(CF_DEMO_KV_TOKEN),
        ),
        (
            "400 (code 7000): rulesets.list has no route in the shipped table (the spec gives it no \
             permission annotation), so it is refused as Cloudflare answers a path it does not have",
            "GET",
            format!("/client/v4/zones/{CF_DEMO_ZONE}/rulesets"),
            Some(CF_DEMO_TOKEN),
        ),
    ]
}

/// A path no config has a route for.
fn no_route_call() -> Planned {
    (
        "400 (code 7000): no route matches, answered as Cloudflare does (fail closed)",
        "GET",
        "/client/v4/no/such/route".to_string(),
        None,
    )
}

/// The demo calls for the config of `snapshot`, decided as the proxy will decide them (client 127.0.0.1,
/// now): the plan whose first call's token the config knows (the shipped demo's, the Cloudflare example's),
/// else the no-route call alone.
pub fn calls(snapshot: &Snapshot, now: i64) -> Vec<DemoCall> {
    for plan in [shipped_demo_plan(), cloudflare_demo_plan()] {
        let calls = decide_calls(snapshot, now, plan);
        // Its first call is an allowed one: a plan applies when the config knows its token.
        if calls.first().is_some_and(|call| call.status == 200) {
            return calls;
        }
    }
    decide_calls(snapshot, now, vec![no_route_call()])
}

/// Whether `calls` are the Cloudflare example's (then the demo also prints how to point the SDKs at it).
fn is_cloudflare_plan(calls: &[DemoCall]) -> bool {
    calls.first().and_then(|call| call.token) == Some(CF_DEMO_TOKEN)
}

fn decide_calls(snapshot: &Snapshot, now: i64, planned: Vec<Planned>) -> Vec<DemoCall> {
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
                    "forwarded; the sample upstream answers in Cloudflare's shape, and its \
                     permgate_sample field shows the path and identity headers it received"
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
    /// The gateway's proxy and admin listeners, reloader and decision log, as `serve` starts them.
    pub services: super::serve::Services,
    /// The proxy listener's address.
    pub addr: SocketAddr,
    /// The admin listener's address (`/status`, `/metrics`, `/healthz`, `/readyz`).
    pub admin_addr: SocketAddr,
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
        if is_cloudflare_plan(&self.calls) {
            out.push_str(&sdk_playground(&self.base_url));
        }
        if self
            .services
            .proxy
            .gateway
            .snapshot()
            .settings
            .admin
            .console
        {
            out.push_str(&format!(
                "\n# The console (read-only): what is loaded, traffic, recent denials, who can do what, why denied\n\
                 #   open {console} in a browser\n",
                console = self.console_url()
            ));
        }
        out.push_str(&format!(
            "\n# The admin listener: what is loaded, and the gateway's own metrics\n\
             curl -s http://{admin}/status\n\
             curl -s http://{admin}/metrics | grep permgate_requests_total\n\
             # The decision log (decision_log.sink) prints one JSON line per request, with its reason.\n",
            admin = self.admin_addr
        ));
        out
    }

    /// The console's URL on the admin listener.
    pub fn console_url(&self) -> String {
        format!("http://{}/console/", self.admin_addr)
    }

    /// Stops the gateway (draining) and the sample upstream.
    pub async fn stop(self) {
        let _ = self.services.stop().await;
        let _ = self.stop_upstream.send(());
    }
}

/// How to point Cloudflare's official SDKs at the demo (the Cloudflare example's config).
pub fn sdk_playground(base_url: &str) -> String {
    format!(
        "\n# The official SDKs against it: the base URL must end in /client/v4, and the SDKs read the\n\
         # credential from CLOUDFLARE_API_TOKEN (unset CLOUDFLARE_EMAIL and CLOUDFLARE_API_KEY: a token plus a\n\
         # leftover email/key is refused, 400/6003 chain 6111).\n\
         export CLOUDFLARE_API_TOKEN={CF_DEMO_TOKEN}\n\
         # TypeScript (npm install cloudflare):\n\
         #   import Cloudflare from 'cloudflare';\n\
         #   const cf = new Cloudflare({{ baseURL: '{base_url}/client/v4' }});\n\
         #   for await (const record of cf.dns.records.list({{ zone_id: '{CF_DEMO_ZONE}' }})) console.log(record.id);\n\
         # Python (pip install cloudflare):\n\
         #   from cloudflare import Cloudflare\n\
         #   cf = Cloudflare(base_url=\"{base_url}/client/v4\")\n\
         #   for record in cf.dns.records.list(zone_id=\"{CF_DEMO_ZONE}\"): print(record.id)\n"
    )
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
        // A free proxy port asks for a free admin port too (two demos side by side, tests).
        if listen.port() == 0 {
            snapshot.settings.admin_listen = SocketAddr::new(listen.ip(), 0);
        }
    }
    let now = crate::config::load::unix_now();
    let calls = calls(&snapshot, now);
    let tls = snapshot.settings.tls.is_some();
    let (stop_upstream, stopped) = oneshot::channel::<()>();
    tokio::spawn(sample_upstream::serve(upstream, async move {
        let _ = stopped.await;
    }));
    // Started as `serve` starts it (admin listener, decision log), without reloads: the demo's upstream and
    // listen addresses are set here, not in the files, and a reload would put the files' back.
    let triggers = crate::reload::Triggers {
        watch: false,
        timer: false,
        sighup: false,
    };
    let services = super::serve::start(&args.config, snapshot, triggers)
        .await
        .map_err(DemoError::Start)?;
    let (addr, admin_addr) = (services.proxy.addr, services.admin.addr);
    let base_url = format!("{}://{}", if tls { "https" } else { "http" }, addr);
    Ok(Demo {
        services,
        addr,
        admin_addr,
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
    super::serve::init_tracing(crate::settings::LogFormat::Text);
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
