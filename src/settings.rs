//! The server settings as the gateway uses them: addresses parsed, paths resolved, defaults applied. Compiled
//! from `gateway.yaml` by `config::gateway`; plain values here, so that a [`crate::snapshot::Snapshot`]
//! holds them without depending on the loader.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;
use serde::Deserialize;

/// Settings as the gateway uses them: addresses parsed, paths resolved, defaults applied.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The folder of `gateway.yaml`; relative paths in it are resolved against this.
    pub base_dir: PathBuf,
    pub listen: SocketAddr,
    pub admin_listen: SocketAddr,
    pub upstream: UpstreamSettings,
    pub policy_files: Vec<PathBuf>,
    pub route_files: Vec<PathBuf>,
    pub tls: Option<TlsSettings>,
    pub mode: Mode,
    pub resource_namespace: String,
    pub trusted_proxies: Vec<IpNet>,
    pub forward_credentials: bool,
    pub explain_denials: bool,
    pub header_read_timeout: Duration,
    /// A request body must have arrived whole within this long of the decision (`request_body_timeout_ms`,
    /// default 60 s); read per request.
    pub request_body_timeout: Duration,
    /// An HTTP/2 connection with no stream open for this long is closed with GOAWAY
    /// (`http2_idle_timeout_ms`, default 60 s); baked into serving, so a restart applies a change.
    pub http2_idle_timeout: Duration,
    pub max_connections: usize,
    pub shutdown_grace: Duration,
    pub decision_log: DecisionLogSettings,
    /// Where each applied reload's access-change record (`config_change`) goes (`audit_log`); `None`: the
    /// decision log.
    pub audit_log: Option<DecisionLogSettings>,
    /// The operational log's format (`log.format`): text (default) or one JSON object per line.
    pub log_format: LogFormat,
    /// How often the reloader re-reads the files even without a file-system event (a missed event, a
    /// network file system): `reload_interval_ms`, default 30 s.
    pub reload_interval: Duration,
    /// The admin listener's console and its protection (`admin:`); read per admin request.
    pub admin: AdminSettings,
    /// The decision listeners (`decision:`), for proxies that delegate the decision: none by default.
    pub decision: Vec<DecisionListener>,
}

/// The admin listener's console and protection (`admin: {console: on | off, token_file: PATH}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminSettings {
    /// Whether `/console/` is served (default on); off: every console URL is 404.
    pub console: bool,
    /// A file holding the SHA-256 (64 hex digits) of the bearer token every admin request must present
    /// (`/metrics`, `/status`, the console, …); none: the admin listener is open (it listens on loopback by
    /// default). Only where it is: the file is read at each admin request, so a rotated hash applies at once.
    pub token_file: Option<PathBuf>,
}

impl Default for AdminSettings {
    fn default() -> Self {
        Self {
            console: true,
            token_file: None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct UpstreamSettings {
    /// The upstream's base URL (`http://` or `https://`), without a trailing slash.
    pub url: http::Uri,
    pub ca_file: Option<PathBuf>,
    pub connect_timeout: Duration,
    pub response_timeout: Duration,
    pub pool_idle_timeout: Duration,
    pub pool_max_idle_per_host: usize,
    /// Where the upstream's own credential is, when the gateway holds one (`upstream.auth`).
    pub auth: Option<UpstreamAuth>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

/// The operational log's format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines (coloured only on a terminal).
    #[default]
    Text,
    /// One JSON object per line (`timestamp`, `level`, `fields.message` and the event's fields, `target`):
    /// for a log shipper.
    Json,
}

#[derive(Debug, Clone)]
pub struct DecisionLogSettings {
    pub sink: DecisionLogSink,
    pub path: Option<PathBuf>,
    pub queue_capacity: usize,
}

/// Where the upstream's own credential is (`upstream.auth`): a file or an environment variable holding a
/// bearer token. Only where it is: the secret is read by the proxy (`proxy::upstream_auth`), never
/// held in the settings.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum UpstreamAuth {
    /// A file whose content is the token (a trailing newline is trimmed); relative to `gateway.yaml`'s
    /// folder once compiled.
    BearerFile(PathBuf),
    /// An environment variable whose value is the token.
    BearerEnv(String),
}

/// What the gateway does with a request that is denied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Deny: answer the error (the default).
    #[default]
    Enforce,
    /// Log and count the would-be denial, then forward anyway (for rolling out policies).
    Shadow,
}

/// Where decision-log lines go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DecisionLogSink {
    Stdout,
    Stderr,
    File,
    Off,
}

/// One decision listener (`decision:`): where it listens and which proxy sits in front of it, which fixes
/// the headers that name the original request (never guessed per request).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecisionListener {
    pub listen: SocketAddr,
    pub protocol: DecisionProtocol,
    /// `ext_authz_http` only: the `path_prefix` Envoy puts before the original path, removed before deciding.
    pub strip_prefix: Option<String>,
}

/// The protocol of a decision listener: the proxy in front of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DecisionProtocol {
    /// nginx `auth_request` (and ingress-nginx): `X-Original-Method` and `X-Original-URI`.
    AuthRequest,
    /// Traefik `forwardAuth`, Caddy `forward_auth`, APISIX `forward-auth`: `X-Forwarded-Method` and
    /// `X-Forwarded-Uri`.
    ForwardAuth,
    /// Envoy `ext_authz` HTTP service: the check request's own method and path.
    ExtAuthzHttp,
    /// Envoy `ext_authz` gRPC service (`envoy.service.auth.v3.Authorization/Check`).
    ExtAuthzGrpc,
}

impl DecisionProtocol {
    /// Every protocol, in the order the README lists them.
    pub const ALL: [Self; 4] = [
        Self::AuthRequest,
        Self::ForwardAuth,
        Self::ExtAuthzHttp,
        Self::ExtAuthzGrpc,
    ];

    /// The name in `gateway.yaml`, the `mode` of the decision log and of the metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AuthRequest => "auth_request",
            Self::ForwardAuth => "forward_auth",
            Self::ExtAuthzHttp => "ext_authz_http",
            Self::ExtAuthzGrpc => "ext_authz_grpc",
        }
    }
}
