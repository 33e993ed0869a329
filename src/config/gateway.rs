//! `gateway.yaml`: the server settings as written (raw), and their compile into the [`Settings`] the gateway
//! uses (valid by construction; the types are in [`crate::settings`] and re-exported here).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::compile::values::parse_cidr;
use super::error::{ConfigError, ErrorKind};
pub use crate::settings::{
    AdminSettings, DecisionListener, DecisionLogSettings, DecisionLogSink, DecisionProtocol, Mode,
    Settings, TlsSettings, UpstreamAuth, UpstreamSettings,
};

/// The file as written. Every key is documented in the README's config reference.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGateway {
    pub listen: String,
    pub admin_listen: String,
    pub upstream: RawUpstream,
    pub policy_files: Vec<String>,
    pub route_files: Vec<String>,
    #[serde(default)]
    pub tls: Option<RawTls>,
    #[serde(default)]
    pub mode: Option<Mode>,
    #[serde(default)]
    pub resource_namespace: Option<String>,
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
    #[serde(default)]
    pub forward_credentials: Option<bool>,
    #[serde(default)]
    pub explain_denials: Option<bool>,
    #[serde(default)]
    pub header_read_timeout_ms: Option<u64>,
    #[serde(default)]
    pub request_body_timeout_ms: Option<u64>,
    #[serde(default)]
    pub http2_idle_timeout_ms: Option<u64>,
    #[serde(default)]
    pub max_connections: Option<usize>,
    #[serde(default)]
    pub shutdown_grace_ms: Option<u64>,
    #[serde(default)]
    pub decision_log: Option<RawDecisionLog>,
    /// Where the access-change record of each reload goes instead of the decision log; same shape.
    #[serde(default)]
    pub audit_log: Option<RawDecisionLog>,
    #[serde(default)]
    pub reload_interval_ms: Option<u64>,
    /// The operational log (stderr): `{format: text | json}`.
    #[serde(default)]
    pub log: Option<RawLog>,
    /// The admin listener's console and protection: `{console: on | off, token_file: PATH}`.
    #[serde(default)]
    pub admin: Option<RawAdmin>,
    /// The decision listeners for proxies that delegate the decision (none by default).
    #[serde(default)]
    pub decision: Vec<RawDecisionListener>,
}

/// One `decision:` entry: `{listen: ADDR, protocol: auth_request | forward_auth | ext_authz_http |
/// ext_authz_grpc, strip_prefix: /PATH}` (`strip_prefix` for `ext_authz_http` only).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDecisionListener {
    pub listen: String,
    pub protocol: DecisionProtocol,
    #[serde(default)]
    pub strip_prefix: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    #[serde(default)]
    pub console: Option<OnOff>,
    #[serde(default)]
    pub token_file: Option<String>,
}

/// `on` or `off` (YAML 1.2 reads both as strings; `true`/`false` are accepted too).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum OnOff {
    Bool(bool),
    Word(OnOffWord),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnOffWord {
    On,
    Off,
}

impl OnOff {
    /// Whether it says on.
    pub fn is_on(self) -> bool {
        matches!(self, Self::Bool(true) | Self::Word(OnOffWord::On))
    }
}

/// Reads an admin token file: the SHA-256 of the bearer token as 64 hex digits (surrounding whitespace
/// trimmed). The error never holds any of the file's content.
pub fn read_admin_token_file(path: &Path) -> Result<[u8; 32], String> {
    let text = std::fs::read_to_string(path)
        .map_err(|error| format!("{}: cannot read it: {}", path.display(), error.kind()))?;
    let mut digest = [0u8; 32];
    let text = text.trim();
    if text.len() != 64 || hex::decode_to_slice(text, &mut digest).is_err() {
        return Err(format!(
            "{}: must hold the SHA-256 of the admin bearer token as 64 hex digits \
             (printf %s TOKEN | sha256sum)",
            path.display()
        ));
    }
    Ok(digest)
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLog {
    #[serde(default)]
    pub format: Option<crate::settings::LogFormat>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUpstream {
    pub url: String,
    #[serde(default)]
    pub ca_file: Option<String>,
    #[serde(default)]
    pub connect_timeout_ms: Option<u64>,
    #[serde(default)]
    pub response_timeout_ms: Option<u64>,
    #[serde(default)]
    pub pool_idle_timeout_ms: Option<u64>,
    #[serde(default)]
    pub pool_max_idle_per_host: Option<usize>,
    /// The upstream's own credential: `{bearer_file: PATH}` or `{bearer_env: NAME}`.
    #[serde(default)]
    pub auth: Option<UpstreamAuth>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    pub cert_file: String,
    pub key_file: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDecisionLog {
    pub sink: DecisionLogSink,
    #[serde(default)]
    pub path: Option<String>,
    #[serde(default)]
    pub queue_capacity: Option<usize>,
}

/// The default resource namespace (`<ns>.account.<id>`, `<ns>.account.zone.<id>`, `<ns>.user.<id>`).
pub const DEFAULT_NAMESPACE: &str = "com.cloudflare.api";

impl Settings {
    /// Checks and resolves the raw settings of the file at `file`; every problem is reported.
    pub fn compile(raw: RawGateway, file: &Path) -> Result<Self, Vec<ConfigError>> {
        let base_dir = file
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        let mut errors = Vec::new();
        let mut error = |path: &str, message: String| {
            errors.push(ConfigError::new(
                file,
                path,
                ErrorKind::InvalidSetting,
                message,
            ))
        };

        let address = |path: &str, text: &str, error: &mut dyn FnMut(&str, String)| {
            text.parse::<SocketAddr>().unwrap_or_else(|_| {
                error(
                    path,
                    format!("{text:?} is not an address like 127.0.0.1:8080"),
                );
                SocketAddr::from(([127, 0, 0, 1], 0))
            })
        };
        let listen = address("listen", &raw.listen, &mut error);
        let admin_listen = address("admin_listen", &raw.admin_listen, &mut error);
        if raw.listen == raw.admin_listen && listen.port() != 0 {
            error(
                "admin_listen",
                "must differ from listen: the admin endpoints are never on the proxy listener"
                    .into(),
            );
        }

        let url = match raw.upstream.url.trim_end_matches('/').parse::<http::Uri>() {
            Ok(uri)
                if matches!(uri.scheme_str(), Some("http" | "https"))
                    && uri.authority().is_some()
                    && uri.query().is_none() =>
            {
                uri
            }
            _ => {
                error(
                    "upstream.url",
                    format!(
                        "{:?} is not an http:// or https:// URL with a host",
                        raw.upstream.url
                    ),
                );
                http::Uri::from_static("http://127.0.0.1")
            }
        };
        let resolve = |relative: &str| base_dir.join(relative);
        let mut positive = |path: &str, value: Option<u64>, default: u64| match value {
            Some(0) => {
                error(path, "must be greater than 0".into());
                Duration::from_millis(default)
            }
            Some(ms) => Duration::from_millis(ms),
            None => Duration::from_millis(default),
        };
        let connect_timeout = positive(
            "upstream.connect_timeout_ms",
            raw.upstream.connect_timeout_ms,
            2_000,
        );
        let response_timeout = positive(
            "upstream.response_timeout_ms",
            raw.upstream.response_timeout_ms,
            30_000,
        );
        let pool_idle_timeout = positive(
            "upstream.pool_idle_timeout_ms",
            raw.upstream.pool_idle_timeout_ms,
            90_000,
        );
        let header_read_timeout =
            positive("header_read_timeout_ms", raw.header_read_timeout_ms, 10_000);
        let request_body_timeout = positive(
            "request_body_timeout_ms",
            raw.request_body_timeout_ms,
            60_000,
        );
        let http2_idle_timeout =
            positive("http2_idle_timeout_ms", raw.http2_idle_timeout_ms, 60_000);
        let shutdown_grace = positive("shutdown_grace_ms", raw.shutdown_grace_ms, 30_000);
        let reload_interval = positive("reload_interval_ms", raw.reload_interval_ms, 30_000);

        let mut trusted_proxies = Vec::new();
        for (index, text) in raw.trusted_proxies.iter().enumerate() {
            match parse_cidr(text) {
                Some(net) => trusted_proxies.push(net),
                None => error(
                    &format!("trusted_proxies[{index}]"),
                    format!("{text:?} is not an IP address or CIDR range"),
                ),
            }
        }
        let namespace = raw
            .resource_namespace
            .unwrap_or_else(|| DEFAULT_NAMESPACE.to_string());
        if namespace.is_empty() || namespace.contains('*') || namespace.ends_with('.') {
            error(
                "resource_namespace",
                format!("{namespace:?} is not a namespace like com.cloudflare.api"),
            );
        }
        let auth = match raw.upstream.auth {
            Some(UpstreamAuth::BearerFile(path)) if path.as_os_str().is_empty() => {
                error("upstream.auth.bearer_file", "an empty path".into());
                None
            }
            Some(UpstreamAuth::BearerFile(path)) => {
                Some(UpstreamAuth::BearerFile(base_dir.join(path)))
            }
            Some(UpstreamAuth::BearerEnv(name))
                if name.is_empty() || name.contains(['=', '\0']) =>
            {
                error(
                    "upstream.auth.bearer_env",
                    format!("{name:?} is not an environment variable name"),
                );
                None
            }
            other => other,
        };
        let max_connections = raw.max_connections.unwrap_or(10_000);
        if max_connections == 0 {
            error("max_connections", "must be greater than 0".into());
        }
        if raw.policy_files.is_empty() {
            error("policy_files", "at least one policy file is needed".into());
        }
        if raw.route_files.is_empty() {
            error(
                "route_files",
                "at least one route file or folder is needed".into(),
            );
        }
        let mut log_settings = |field: &str, log: RawDecisionLog| {
            if log.sink == DecisionLogSink::File && log.path.is_none() {
                error(&format!("{field}.path"), "a file sink needs a path".into());
            }
            let queue_capacity = log.queue_capacity.unwrap_or(65_536);
            if queue_capacity == 0 {
                error(
                    &format!("{field}.queue_capacity"),
                    "must be greater than 0".into(),
                );
            }
            DecisionLogSettings {
                sink: log.sink,
                path: log.path.as_deref().map(resolve),
                queue_capacity,
            }
        };
        let decision_log = match raw.decision_log {
            None => DecisionLogSettings {
                sink: DecisionLogSink::Stdout,
                path: None,
                queue_capacity: 65_536,
            },
            Some(log) => log_settings("decision_log", log),
        };
        let audit_log = raw.audit_log.map(|log| log_settings("audit_log", log));
        let admin = match raw.admin {
            None => AdminSettings::default(),
            Some(admin) => {
                let token_file = match admin.token_file.as_deref() {
                    Some("") => {
                        error("admin.token_file", "an empty path".into());
                        None
                    }
                    Some(path) => {
                        let path = resolve(path);
                        if let Err(message) = read_admin_token_file(&path) {
                            error("admin.token_file", message);
                        }
                        Some(path)
                    }
                    None => None,
                };
                AdminSettings {
                    console: admin.console.is_none_or(OnOff::is_on),
                    token_file,
                }
            }
        };
        let decision = compile_decision(&raw.decision, listen, admin_listen, &mut error);
        if !decision.is_empty() && raw.trusted_proxies.is_empty() {
            error(
                "trusted_proxies",
                "the decision listeners answer only the proxies listed here: list the address of the \
                 proxy in front (e.g. 127.0.0.1/32)"
                    .into(),
            );
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Self {
            listen,
            admin_listen,
            upstream: UpstreamSettings {
                url,
                ca_file: raw.upstream.ca_file.as_deref().map(resolve),
                connect_timeout,
                response_timeout,
                pool_idle_timeout,
                pool_max_idle_per_host: raw.upstream.pool_max_idle_per_host.unwrap_or(1024),
                auth,
            },
            policy_files: raw.policy_files.iter().map(|path| resolve(path)).collect(),
            route_files: raw.route_files.iter().map(|path| resolve(path)).collect(),
            tls: raw.tls.map(|tls| TlsSettings {
                cert_file: resolve(&tls.cert_file),
                key_file: resolve(&tls.key_file),
            }),
            mode: raw.mode.unwrap_or_default(),
            resource_namespace: namespace,
            trusted_proxies,
            forward_credentials: raw.forward_credentials.unwrap_or(false),
            explain_denials: raw.explain_denials.unwrap_or(true),
            header_read_timeout,
            request_body_timeout,
            http2_idle_timeout,
            max_connections,
            shutdown_grace,
            decision_log,
            audit_log,
            log_format: raw.log.and_then(|log| log.format).unwrap_or_default(),
            reload_interval,
            admin,
            base_dir,
            decision,
        })
    }

    /// The settings that only take effect at a restart, by key, when they differ between `self` (what the
    /// listeners were started with) and `next`.
    ///
    /// The upstream is not among them: its URL and response timeout are read per request, and the reloader
    /// rebuilds the upstream client when the CA file, connect timeout or pool settings change. The TLS
    /// certificate files are not either (they rotate live); only turning TLS on or off needs a restart.
    pub fn restart_only_changes(&self, next: &Settings) -> Vec<&'static str> {
        let mut changed = Vec::new();
        if self.listen != next.listen {
            changed.push("listen");
        }
        if self.admin_listen != next.admin_listen {
            changed.push("admin_listen");
        }
        if self.max_connections != next.max_connections {
            changed.push("max_connections");
        }
        if self.tls.is_some() != next.tls.is_some() {
            changed.push("tls");
        }
        // Baked into the connection builder and the drain when serving starts.
        if self.header_read_timeout != next.header_read_timeout {
            changed.push("header_read_timeout_ms");
        }
        if self.shutdown_grace != next.shutdown_grace {
            changed.push("shutdown_grace_ms");
        }
        if self.http2_idle_timeout != next.http2_idle_timeout {
            changed.push("http2_idle_timeout_ms");
        }
        // The writer task and its queue are created once.
        if self.decision_log.sink != next.decision_log.sink
            || self.decision_log.path != next.decision_log.path
            || self.decision_log.queue_capacity != next.decision_log.queue_capacity
        {
            changed.push("decision_log");
        }
        let audit_sink = |settings: &Settings| {
            settings
                .audit_log
                .as_ref()
                .map(|log| (log.sink, log.path.clone(), log.queue_capacity))
        };
        if audit_sink(self) != audit_sink(next) {
            changed.push("audit_log");
        }
        // The subscriber is installed once, at start.
        if self.log_format != next.log_format {
            changed.push("log");
        }
        // The decision listeners are bound once, at start (each request reads the serving snapshot).
        if self.decision != next.decision {
            changed.push("decision");
        }
        changed
    }
}

/// The decision listeners: each address parsed, distinct from `listen`, `admin_listen` and each other;
/// `strip_prefix` only on `ext_authz_http`, a path like `/authz` (no trailing slash, no query).
fn compile_decision(
    raw: &[RawDecisionListener],
    listen: SocketAddr,
    admin_listen: SocketAddr,
    error: &mut dyn FnMut(&str, String),
) -> Vec<DecisionListener> {
    let mut listeners: Vec<DecisionListener> = Vec::with_capacity(raw.len());
    for (index, entry) in raw.iter().enumerate() {
        let path = format!("decision[{index}]");
        let Ok(addr) = entry.listen.parse::<SocketAddr>() else {
            error(
                &format!("{path}.listen"),
                format!("{:?} is not an address like 127.0.0.1:9191", entry.listen),
            );
            continue;
        };
        let taken = addr.port() != 0
            && (addr == listen
                || addr == admin_listen
                || listeners.iter().any(|other| other.listen == addr));
        if taken {
            error(
                &format!("{path}.listen"),
                format!(
                    "{addr} is already used by another listener: a decision listener is never the proxy \
                     or admin listener"
                ),
            );
        }
        let strip_prefix = match (&entry.strip_prefix, entry.protocol) {
            (None, _) => None,
            (Some(prefix), DecisionProtocol::ExtAuthzHttp) => {
                let valid = prefix.starts_with('/')
                    && prefix.len() > 1
                    && !prefix.ends_with('/')
                    && !prefix.contains(['?', '#', '%', ' ']);
                if !valid {
                    error(
                        &format!("{path}.strip_prefix"),
                        format!("{prefix:?} is not a path prefix like /authz"),
                    );
                }
                Some(prefix.clone())
            }
            (Some(_), protocol) => {
                error(
                    &format!("{path}.strip_prefix"),
                    format!(
                        "only ext_authz_http listeners have a prefix to strip, not {}",
                        protocol.as_str()
                    ),
                );
                None
            }
        };
        listeners.push(DecisionListener {
            listen: addr,
            protocol: entry.protocol,
            strip_prefix,
        });
    }
    listeners
}
