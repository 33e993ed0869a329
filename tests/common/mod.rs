//! Shared helpers for the proxy integration tests: a temp config, a recording upstream, a running gateway,
//! and raw-socket / hyper clients.
//!
//! Everything binds `127.0.0.1:0`. Synchronisation is by signals (the upstream notifies when a request
//! arrives), never by sleeping; timeouts are only upper bounds so a broken build fails instead of hanging.
#![allow(dead_code)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, oneshot};

pub use permgate::proxy::Running;

/// Upper bound for anything a test waits on.
pub const PATIENCE: Duration = Duration::from_secs(15);

pub const ACCOUNT: &str = "acct-a";
pub const ZONE: &str = "zone-1";
/// A zone of the account on which nobody holds anything.
pub const OTHER_ZONE: &str = "zone-2";
pub const JOE: &str = "user-joe";
pub const DAVE: &str = "user-dave";

/// Joe: DNS Read on zone-1.
pub const TOKEN_READ: &str = "pgt_test_read";
/// Joe: DNS Write on zone-1.
pub const TOKEN_WRITE: &str = "pgt_test_write";
pub const TOKEN_DISABLED: &str = "pgt_test_disabled";
/// Joe: DNS Read on zone-1, only from 192.0.2.0/24.
pub const TOKEN_IP: &str = "pgt_test_ip";
/// Dave (API access disabled on the account): DNS Read on zone-1.
pub const TOKEN_DAVE: &str = "pgt_test_dave";
/// Joe: DNS Read on zone-1, with not_before and expires_on.
pub const TOKEN_DATED: &str = "pgt_test_dated";
/// Account token of acct-a: DNS Read on zone-1.
pub const TOKEN_ACCOUNT: &str = "pgt_test_account";
pub const JOE_EMAIL: &str = "joe@example.com";
pub const JOE_KEY: &str = "2424df50ab474eade69eb43658e15deb84d04";

/// The list route of zone-1's DNS records.
pub fn records_path() -> String {
    format!("/client/v4/zones/{ZONE}/dns_records")
}

pub fn sha256_hex(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// Gateway settings the tests vary; everything else is fixed.
#[derive(Debug, Clone)]
pub struct Options {
    pub upstream_url: String,
    pub connect_timeout_ms: u64,
    pub response_timeout_ms: u64,
    pub header_read_timeout_ms: u64,
    pub max_connections: usize,
    pub shutdown_grace_ms: u64,
    pub explain_denials: bool,
    /// Extra top-level YAML lines (`mode: shadow`, `tls: …`, `trusted_proxies: …`).
    pub extra: String,
}

impl Options {
    pub fn new(upstream_url: &str) -> Self {
        Self {
            upstream_url: upstream_url.to_string(),
            connect_timeout_ms: 2_000,
            response_timeout_ms: 10_000,
            header_read_timeout_ms: 10_000,
            max_connections: 1_000,
            shutdown_grace_ms: 10_000,
            explain_denials: true,
            extra: String::new(),
        }
    }
}

/// A config folder: gateway.yaml, policy files and routes/.
pub struct TestConfig {
    pub dir: tempfile::TempDir,
    pub gateway_path: PathBuf,
}

pub fn write_config(options: &Options) -> TestConfig {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir(root.join("routes")).unwrap();
    let gateway = format!(
        "listen: 127.0.0.1:0
admin_listen: 127.0.0.1:0
upstream:
  url: {url}
  connect_timeout_ms: {connect}
  response_timeout_ms: {response}
policy_files: [permission_groups.yaml, accounts.yaml, tokens.yaml]
route_files: [routes]
explain_denials: {explain}
header_read_timeout_ms: {header}
max_connections: {max}
shutdown_grace_ms: {grace}
decision_log: {{ sink: off }}
{extra}
",
        url = options.upstream_url,
        connect = options.connect_timeout_ms,
        response = options.response_timeout_ms,
        explain = options.explain_denials,
        header = options.header_read_timeout_ms,
        max = options.max_connections,
        grace = options.shutdown_grace_ms,
        extra = options.extra,
    );
    std::fs::write(root.join("gateway.yaml"), gateway).unwrap();
    std::fs::write(root.join("permission_groups.yaml"), PERMISSION_GROUPS).unwrap();
    std::fs::write(
        root.join("accounts.yaml"),
        ACCOUNTS.replace("{JOE_KEY_SHA}", &sha256_hex(JOE_KEY)),
    )
    .unwrap();
    let mut tokens = TOKENS.to_string();
    for (name, secret) in [
        ("READ", TOKEN_READ),
        ("WRITE", TOKEN_WRITE),
        ("DISABLED", TOKEN_DISABLED),
        ("IP", TOKEN_IP),
        ("DAVE", TOKEN_DAVE),
        ("DATED", TOKEN_DATED),
        ("ACCOUNT", TOKEN_ACCOUNT),
    ] {
        tokens = tokens.replace(&format!("{{{name}}}"), &sha256_hex(secret));
    }
    std::fs::write(root.join("tokens.yaml"), tokens).unwrap();
    std::fs::write(root.join("routes/test.yaml"), ROUTES).unwrap();
    let gateway_path = root.join("gateway.yaml");
    TestConfig { dir, gateway_path }
}

const PERMISSION_GROUPS: &str = r##"
permission_groups:
  - id: grp-dns-read
    name: DNS Read
    scopes: [com.cloudflare.api.account.zone]
    permissions:
      - "#dns_records:read"
      - com.cloudflare.api.account.zone.dns-record.read
      - com.cloudflare.api.account.zone.dns-record.list
  - id: grp-dns-write
    name: DNS Write
    scopes: [com.cloudflare.api.account.zone]
    permissions:
      - "#dns_records:*"
      - com.cloudflare.api.account.zone.dns-record.*
"##;

const ACCOUNTS: &str = r##"
users:
  - id: user-joe
    email: joe@example.com
    api_key_sha256: {JOE_KEY_SHA}
  - id: user-dave
    email: dave@example.com
accounts:
  - id: acct-a
    name: Example
    zones:
      - { id: zone-1, name: example.com }
      - { id: zone-2, name: other.example.com }
    members:
      - user: user-joe
        policies:
          - id: pol-joe
            access: allow
            permission_groups: [{ id: grp-dns-write }]
            resource_groups:
              - scope:
                  key: com.cloudflare.api.account.acct-a
                  objects: [{ key: com.cloudflare.api.account.zone.zone-1 }]
      - user: user-dave
        api_access: disabled
        policies:
          - id: pol-dave
            access: allow
            permission_groups: [{ id: grp-dns-write }]
            resource_groups:
              - scope:
                  key: com.cloudflare.api.account.acct-a
                  objects: [{ key: "*" }]
"##;

const TOKENS: &str = r##"
tokens:
  - id: tok-read
    name: joe read
    owner: { user: user-joe }
    secret_sha256: {READ}
    status: active
    policies:
      - id: tp-read
        effect: allow
        permission_groups: [{ id: grp-dns-read }]
        resources: { com.cloudflare.api.account.zone.zone-1: "*" }
  - id: tok-write
    name: joe write
    owner: { user: user-joe }
    secret_sha256: {WRITE}
    status: active
    policies:
      - id: tp-write
        effect: allow
        permission_groups: [{ id: grp-dns-write }]
        resources: { com.cloudflare.api.account.zone.zone-1: "*" }
  - id: tok-disabled
    name: joe disabled
    owner: { user: user-joe }
    secret_sha256: {DISABLED}
    status: disabled
    policies:
      - id: tp-disabled
        effect: allow
        permission_groups: [{ id: grp-dns-read }]
        resources: { com.cloudflare.api.account.zone.zone-1: "*" }
  - id: tok-ip
    name: joe from 192.0.2.0/24
    owner: { user: user-joe }
    secret_sha256: {IP}
    status: active
    condition:
      request.ip: { in: [192.0.2.0/24] }
    policies:
      - id: tp-ip
        effect: allow
        permission_groups: [{ id: grp-dns-read }]
        resources: { com.cloudflare.api.account.zone.zone-1: "*" }
  - id: tok-dave
    name: dave read
    owner: { user: user-dave }
    secret_sha256: {DAVE}
    status: active
    policies:
      - id: tp-dave
        effect: allow
        permission_groups: [{ id: grp-dns-read }]
        resources: { com.cloudflare.api.account.zone.zone-1: "*" }
  - id: tok-dated
    name: joe dated
    owner: { user: user-joe }
    secret_sha256: {DATED}
    status: active
    not_before: 2020-01-01T00:00:00Z
    expires_on: 2099-01-01T00:00:00Z
    policies:
      - id: tp-dated
        effect: allow
        permission_groups: [{ id: grp-dns-read }]
        resources: { com.cloudflare.api.account.zone.zone-1: "*" }
  - id: tok-account
    name: ci
    owner: { account: acct-a }
    secret_sha256: {ACCOUNT}
    status: active
    policies:
      - id: tp-account
        effect: allow
        permission_groups: [{ id: grp-dns-read }]
        resources: { com.cloudflare.api.account.zone.zone-1: "*" }
"##;

const ROUTES: &str = r##"
routes:
  - id: ips
    method: GET
    path: /client/v4/ips
    public: true
  - id: verify
    method: GET
    path: /client/v4/user/tokens/verify
    scope: user
    handler: verify_token
  - id: account.verify
    method: GET
    path: /client/v4/accounts/{account_id}/tokens/verify
    scope: { account: account_id }
    handler: verify_token
  - id: any.verify
    method: GET
    path: /client/v4/tokens/verify
    scope: none
    handler: verify_token
  - id: dns.list
    method: GET
    path: /client/v4/zones/{zone_id}/dns_records
    permissions: [com.cloudflare.api.account.zone.dns-record.list]
    scope: { zone: zone_id }
  - id: dns.create
    method: POST
    path: /client/v4/zones/{zone_id}/dns_records
    permissions: [com.cloudflare.api.account.zone.dns-record.create]
    scope: { zone: zone_id }
  - id: dns.get
    method: GET
    path: /client/v4/zones/{zone_id}/dns_records/{record_id}
    permissions: [com.cloudflare.api.account.zone.dns-record.read]
    scope: { zone: zone_id }
"##;

// ---- the recording upstream ---------------------------------------------------------------------------

/// One request as the upstream received it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub target: String,
    pub version: http::Version,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }
}

#[derive(Default)]
struct UpstreamState {
    requests: Mutex<Vec<Recorded>>,
    arrived: Notify,
}

/// An upstream on 127.0.0.1:0 that records every request and answers `200 {"ok":true}`.
///
/// Paths ending in `/slow` (query `ms=N`, default 3000) answer after N ms; a WebSocket upgrade request is
/// answered `101` and then every byte is echoed back.
pub struct Upstream {
    pub addr: SocketAddr,
    state: Arc<UpstreamState>,
    _stop: oneshot::Sender<()>,
}

impl Upstream {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Everything received so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.state.requests.lock().unwrap().clone()
    }

    /// Waits until at least `count` requests have arrived (headers read; the body may still be coming).
    pub async fn wait_for(&self, count: usize) -> Vec<Recorded> {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let notified = self.state.arrived.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let requests = self.requests();
            if requests.len() >= count {
                return requests;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                panic!(
                    "upstream saw {} requests, waited for {count}",
                    requests.len()
                );
            }
        }
    }

    /// The only request received so far.
    pub fn only_request(&self) -> Recorded {
        let requests = self.requests();
        assert_eq!(
            requests.len(),
            1,
            "expected exactly one upstream request: {requests:#?}"
        );
        requests.into_iter().next().unwrap()
    }
}

pub async fn start_upstream() -> Upstream {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let state = Arc::new(UpstreamState::default());
    let (stop, mut stopped) = oneshot::channel::<()>();
    let shared = Arc::clone(&state);
    tokio::spawn(async move {
        loop {
            let stream = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => stream,
                    Err(_) => continue,
                },
                _ = &mut stopped => return,
            };
            let state = Arc::clone(&shared);
            tokio::spawn(async move {
                let service =
                    service_fn(move |request| upstream_answer(Arc::clone(&state), request));
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection_with_upgrades(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Upstream {
        addr,
        state,
        _stop: stop,
    }
}

async fn upstream_answer(
    state: Arc<UpstreamState>,
    mut request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let target = request
        .uri()
        .path_and_query()
        .map_or_else(String::new, |pq| pq.as_str().to_string());
    let websocket = request
        .headers()
        .get("upgrade")
        .is_some_and(|value| value.as_bytes().eq_ignore_ascii_case(b"websocket"));
    let upgrade = websocket.then(|| hyper::upgrade::on(&mut request));
    let method = request.method().to_string();
    let version = request.version();
    let headers = request.headers().clone();
    let path = request.uri().path().to_string();
    let query = request.uri().query().unwrap_or("").to_string();
    // Record on arrival (before the body and before any delay), so tests can act while it is in flight.
    let index = {
        let mut requests = state.requests.lock().unwrap();
        requests.push(Recorded {
            method,
            target,
            version,
            headers,
            body: Bytes::new(),
        });
        requests.len() - 1
    };
    state.arrived.notify_waiters();

    if let Some(upgrade) = upgrade {
        tokio::spawn(async move {
            if let Ok(upgraded) = upgrade.await {
                let mut io = TokioIo::new(upgraded);
                let mut buffer = [0u8; 1024];
                loop {
                    match io.read(&mut buffer).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => {
                            if io.write_all(&buffer[..n]).await.is_err() {
                                return;
                            }
                        }
                    }
                }
            }
        });
        let response = Response::builder()
            .status(StatusCode::SWITCHING_PROTOCOLS)
            .header("upgrade", "websocket")
            .header("connection", "upgrade")
            .body(Full::new(Bytes::new()))
            .unwrap();
        return Ok(response);
    }

    let body = request
        .into_body()
        .collect()
        .await
        .map(|body| body.to_bytes())
        .unwrap_or_default();
    if let Some(recorded) = state.requests.lock().unwrap().get_mut(index) {
        recorded.body = body;
    }
    if path.ends_with("/slow") {
        let ms = query
            .split('&')
            .find_map(|pair| pair.strip_prefix("ms="))
            .and_then(|ms| ms.parse().ok())
            .unwrap_or(3_000);
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    let response = Response::builder()
        .header("content-type", "application/json")
        .header("x-upstream", "yes")
        // Hop-by-hop headers the gateway must not relay.
        .header("connection", "x-upstream-private")
        .header("x-upstream-private", "secret")
        .header("keep-alive", "timeout=5")
        .body(Full::new(Bytes::from_static(br#"{"ok":true}"#)))
        .unwrap();
    Ok(response)
}

/// An address nothing listens on (bound, then released).
pub async fn closed_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap()
}

// ---- the gateway --------------------------------------------------------------------------------------

/// Loads the config (panicking with every error) and starts the gateway on its `listen` (port 0).
pub async fn start_gateway(config: &TestConfig) -> Running {
    let snapshot = permgate::config::load(&config.gateway_path)
        .unwrap_or_else(|errors| panic!("test config does not load:\n{errors}"));
    permgate::proxy::start(snapshot).await.unwrap()
}

/// A recording upstream and a gateway in front of it.
pub struct Setup {
    pub upstream: Upstream,
    pub gateway: Running,
    pub config: TestConfig,
}

impl Setup {
    pub fn addr(&self) -> SocketAddr {
        self.gateway.addr
    }
}

pub async fn setup(adjust: impl FnOnce(&mut Options)) -> Setup {
    let upstream = start_upstream().await;
    let mut options = Options::new(&upstream.url());
    adjust(&mut options);
    let config = write_config(&options);
    let gateway = start_gateway(&config).await;
    Setup {
        upstream,
        gateway,
        config,
    }
}

// ---- raw clients --------------------------------------------------------------------------------------

/// A response read off the wire.
#[derive(Debug, Clone)]
pub struct RawResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// The error code of a gateway envelope.
    pub fn code(&self) -> Option<u64> {
        let json: serde_json::Value = serde_json::from_str(&self.body).ok()?;
        json["errors"][0]["code"].as_u64()
    }
}

/// Parses one HTTP/1.1 response (Content-Length, chunked, or read-to-end body).
pub fn parse_response(raw: &[u8]) -> Option<RawResponse> {
    let text = String::from_utf8_lossy(raw).to_string();
    let (head, rest) = text.split_once("\r\n\r\n")?;
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_string(), value.trim().to_string()))
        .collect();
    let find = |name: &str| {
        headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.clone())
    };
    let body =
        if find("transfer-encoding").is_some_and(|value| value.eq_ignore_ascii_case("chunked")) {
            let mut body = String::new();
            let mut rest = rest;
            while let Some((size, after)) = rest.split_once("\r\n") {
                let size = usize::from_str_radix(size.trim(), 16).ok()?;
                if size == 0 {
                    break;
                }
                body.push_str(after.get(..size)?);
                rest = after.get(size + 2..)?;
            }
            body
        } else if let Some(length) =
            find("content-length").and_then(|value| value.parse::<usize>().ok())
        {
            rest.get(..length).unwrap_or(rest).to_string()
        } else {
            rest.to_string()
        };
    Some(RawResponse {
        status,
        headers,
        body,
    })
}

/// Sends exact bytes on a new connection and reads until the server closes it.
pub async fn raw_exchange(addr: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(PATIENCE, stream.read_to_end(&mut out))
        .await
        .expect("the gateway did not close the connection");
    out
}

/// Sends exact bytes on a new connection, tolerating a write cut short (a refusal may close the socket
/// before everything is written), and reads until the server closes it or fails the read. Panics when the
/// server neither answers nor closes within `limit`.
pub async fn send_until_closed(addr: SocketAddr, bytes: &[u8], limit: Duration) -> Vec<u8> {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let _ = stream.write_all(bytes).await;
    let mut out = Vec::new();
    let read = tokio::time::timeout(limit, async {
        let mut buffer = [0u8; 8192];
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buffer[..n]),
            }
        }
    })
    .await;
    assert!(read.is_ok(), "the gateway neither answered nor closed");
    out
}

/// Sends exact bytes and parses the response (panics when there is none).
pub async fn raw(addr: SocketAddr, bytes: &[u8]) -> RawResponse {
    let out = raw_exchange(addr, bytes).await;
    parse_response(&out)
        .unwrap_or_else(|| panic!("no HTTP response: {:?}", String::from_utf8_lossy(&out)))
}

/// `METHOD target HTTP/1.1` with `Host: gw.test`, `Connection: close` and `headers`.
pub fn request_bytes(method: &str, target: &str, headers: &[(&str, &str)], body: &str) -> Vec<u8> {
    let mut text = format!("{method} {target} HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\n");
    for (name, value) in headers {
        text.push_str(&format!("{name}: {value}\r\n"));
    }
    if !body.is_empty() {
        text.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    text.push_str("\r\n");
    text.push_str(body);
    text.into_bytes()
}

pub async fn send(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
) -> RawResponse {
    raw(addr, &request_bytes(method, target, headers, "")).await
}

pub fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// The exact gateway envelope for an error.
pub fn envelope(code: u32, message: &str, chain: Option<(u32, &str)>) -> String {
    let json = |text: &str| serde_json::Value::String(text.to_string()).to_string();
    let chain = chain
        .map(|(code, message)| {
            format!(
                r#","error_chain":[{{"code":{code},"message":{}}}]"#,
                json(message)
            )
        })
        .unwrap_or_default();
    format!(
        r#"{{"success":false,"errors":[{{"code":{code},"message":{}{chain}}}],"messages":[],"result":null}}"#,
        json(message)
    )
}

// ---- the shipped config, copied, served by the real binary -------------------------------------------

/// A free port on 127.0.0.1 (bound and released: a test that needs the number before the server starts).
pub async fn free_port() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap()
}

/// Copies a folder tree.
pub fn copy_tree(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let path = entry.path();
        if path.is_dir() {
            copy_tree(&path, &to.join(entry.file_name()));
        } else {
            std::fs::copy(&path, to.join(entry.file_name())).unwrap();
        }
    }
}

/// The repository's `config/` and `routes/` copied into `dir`; the copy's `gateway.yaml`.
pub fn copy_shipped(dir: &std::path::Path) -> PathBuf {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    for part in ["config", "routes"] {
        copy_tree(&root.join(part), &dir.join(part));
    }
    dir.join("config/gateway.yaml")
}

/// Points a copy of the shipped `gateway.yaml` at these listen and admin addresses and this upstream, with
/// `decision_log`'s `sink: stdout` line replaced by `sink` (e.g. `sink: off`).
pub fn point_shipped(
    gateway: &std::path::Path,
    listen: SocketAddr,
    admin: SocketAddr,
    upstream: &str,
    sink: &str,
) {
    let text = std::fs::read_to_string(gateway)
        .unwrap()
        .replace("listen: 127.0.0.1:8080", &format!("listen: {listen}"))
        .replace(
            "admin_listen: 127.0.0.1:9090",
            &format!("admin_listen: {admin}"),
        )
        .replace("url: http://127.0.0.1:9000", &format!("url: {upstream}"))
        .replace("  sink: stdout ", &format!("  {sink}\n "));
    std::fs::write(gateway, text).unwrap();
}

/// `permgate serve` (the real binary) on a copy of the shipped config in a temporary folder: its own
/// listen and admin ports, `upstream` as the upstream, the decision log in `decisions.log` there.
pub struct ShippedGateway {
    pub dir: tempfile::TempDir,
    pub gateway: PathBuf,
    pub log: PathBuf,
    pub listen: SocketAddr,
    pub admin: SocketAddr,
    pub child: tokio::process::Child,
}

impl ShippedGateway {
    pub async fn start(upstream: &str) -> Self {
        Self::start_with(upstream, "").await
    }

    /// [`ShippedGateway::start`], with `extra` (top-level YAML) appended to `gateway.yaml`; `{dir}` in it
    /// is the temporary folder.
    pub async fn start_with(upstream: &str, extra: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let gateway = copy_shipped(dir.path());
        let mut text = std::fs::read_to_string(&gateway).unwrap();
        text.push_str(&extra.replace("{dir}", &dir.path().display().to_string()));
        std::fs::write(&gateway, text).unwrap();
        Self::start_in(dir, upstream).await
    }

    /// [`ShippedGateway::start`] on a copy already made in `dir` (by [`copy_shipped`]) and edited.
    pub async fn start_in(dir: tempfile::TempDir, upstream: &str) -> Self {
        let gateway = dir.path().join("config/gateway.yaml");
        let (listen, admin) = (free_port().await, free_port().await);
        let log = dir.path().join("decisions.log");
        point_shipped(
            &gateway,
            listen,
            admin,
            upstream,
            &format!("sink: file\n  path: {}", log.display()),
        );
        let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_permgate"))
            .args(["serve", "--config"])
            .arg(&gateway)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while tokio::net::TcpStream::connect(admin).await.is_err() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the gateway never listened"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        Self {
            dir,
            gateway,
            log,
            listen,
            admin,
            child,
        }
    }

    /// SIGTERM, then waits for a clean exit (the decision log is written out by then).
    pub async fn stop(mut self) -> tempfile::TempDir {
        let pid = self.child.id().unwrap().to_string();
        assert!(
            std::process::Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .unwrap()
                .success()
        );
        let exit = tokio::time::timeout(Duration::from_secs(20), self.child.wait())
            .await
            .unwrap()
            .unwrap();
        assert!(exit.success(), "{exit:?}");
        self.dir
    }
}

/// `target/`, where the test's own binary was built: tools a test installs (venvs, npm folders) live there.
pub fn target_dir() -> PathBuf {
    std::path::Path::new(env!("CARGO_BIN_EXE_permgate"))
        .ancestors()
        .nth(2)
        .unwrap()
        .to_path_buf()
}

/// The tool on PATH, or a failure saying how to install it.
pub fn require(tool: &str, install: &str) {
    let found = std::process::Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap()
        .success();
    assert!(found, "`{tool}` is not installed: {install} (.ci/run does)");
}

/// Runs `command`; fails the test with its status and output unless it succeeds. Its output.
pub fn run_ok(command: &mut std::process::Command) -> std::process::Output {
    let output = command
        .output()
        .unwrap_or_else(|error| panic!("{command:?}: {error}"));
    assert!(
        output.status.success(),
        "{command:?}: {}\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// The venv `target/<name>`, with the pinned PyPI `packages` installed when `ready` (given the venv's
/// folder) says it lacks them. The caller makes sure one test at a time installs (tests run in parallel).
pub fn pip_venv(
    name: &str,
    packages: &[&str],
    ready: impl Fn(&std::path::Path) -> bool,
) -> PathBuf {
    let venv = target_dir().join(name);
    if !ready(&venv) {
        require("python3", "apt-get install -y python3 python3-venv");
        run_ok(
            std::process::Command::new("python3")
                .arg("-m")
                .arg("venv")
                .arg(&venv),
        );
        run_ok(
            std::process::Command::new(venv.join("bin/pip"))
                .args(["install", "--quiet", "--disable-pip-version-check"])
                .args(packages),
        );
        assert!(
            ready(&venv),
            "{packages:?} installed into {} but not usable",
            venv.display()
        );
    }
    venv
}
