//! Shared by the decision-listener tests (tests/suite/decision_*.rs): permgate serving the test config (tests/common) with its proxy
//! listener and all four decision listeners, exactly as `permgate serve` starts them; the allow/deny table
//! every form must agree on; and finding the third-party tools the tests run.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use permgate::cli::serve::Services;
use permgate::reload::Triggers;
use permgate::settings::DecisionProtocol;

use crate::common::*;

/// permgate with the proxy and the four decision listeners in front of a recording upstream.
pub struct Permgate {
    pub upstream: Upstream,
    pub services: Services,
    pub config: TestConfig,
    /// The decision log (a file in the config folder).
    pub log: PathBuf,
}

impl Permgate {
    /// The inline proxy.
    pub fn proxy(&self) -> SocketAddr {
        self.services.proxy.addr
    }

    /// The decision listener of `protocol`.
    pub fn decision(&self, protocol: DecisionProtocol) -> SocketAddr {
        self.services.decision.addr(protocol).unwrap()
    }

    /// The decision log's lines so far.
    pub async fn log_lines(&self) -> Vec<serde_json::Value> {
        // The writer flushes whenever its queue runs empty: give it a moment to.
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
        let mut last = Vec::new();
        while tokio::time::Instant::now() < deadline {
            let text = std::fs::read_to_string(&self.log).unwrap_or_default();
            let lines: Vec<serde_json::Value> = text
                .lines()
                .map(|line| serde_json::from_str(line).unwrap())
                .collect();
            if !lines.is_empty() && lines.len() == last.len() {
                return lines;
            }
            last = lines;
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        last
    }

    /// The admin listener's `/metrics`.
    pub async fn metrics(&self) -> String {
        send(self.services.admin.addr, "GET", "/metrics", &[])
            .await
            .body
    }
}

/// Starts permgate on the test config with `trusted` as `trusted_proxies`, the four decision listeners on
/// free ports (`strip_prefix: /authz` on the Envoy HTTP one) and the decision log in a file.
pub async fn start_permgate(trusted: &str, adjust: impl FnOnce(&mut Options)) -> Permgate {
    let upstream = start_upstream().await;
    let mut options = Options::new(&upstream.url());
    options.extra = format!(
        "trusted_proxies: [{trusted}]
decision:
  - {{ listen: 127.0.0.1:0, protocol: auth_request }}
  - {{ listen: 127.0.0.1:0, protocol: forward_auth }}
  - {{ listen: 127.0.0.1:0, protocol: ext_authz_http, strip_prefix: /authz }}
  - {{ listen: 127.0.0.1:0, protocol: ext_authz_grpc }}
"
    );
    adjust(&mut options);
    let config = write_config(&options);
    let log = config.dir.path().join("decisions.log");
    let text = std::fs::read_to_string(&config.gateway_path)
        .unwrap()
        .replace(
            "decision_log: { sink: off }",
            &format!("decision_log: {{ sink: file, path: {} }}", log.display()),
        );
    std::fs::write(&config.gateway_path, text).unwrap();
    let snapshot = permgate::config::load(&config.gateway_path)
        .unwrap_or_else(|errors| panic!("test config does not load:\n{errors}"));
    let triggers = Triggers {
        watch: false,
        timer: false,
        sighup: false,
    };
    let services = permgate::cli::serve::start(&config.gateway_path, snapshot, triggers)
        .await
        .unwrap();
    Permgate {
        upstream,
        services,
        config,
        log,
    }
}

/// One request of the table: what the client sends, and the inline proxy's answer to it.
#[derive(Debug, Clone)]
pub struct Row {
    pub name: &'static str,
    pub method: &'static str,
    pub target: String,
    pub headers: Vec<(&'static str, String)>,
    pub status: u16,
    /// The envelope's code; 0 when allowed.
    pub code: u64,
    /// The principal the upstream is told, when allowed with a credential.
    pub principal: Option<&'static str>,
}

impl Row {
    pub fn headers(&self) -> Vec<(&str, &str)> {
        self.headers
            .iter()
            .map(|(name, value)| (*name, value.as_str()))
            .collect()
    }
}

fn row(
    name: &'static str,
    method: &'static str,
    target: &str,
    headers: &[(&'static str, &str)],
    status: u16,
    code: u64,
    principal: Option<&'static str>,
) -> Row {
    Row {
        name,
        method,
        target: target.to_string(),
        headers: headers
            .iter()
            .map(|(name, value)| (*name, value.to_string()))
            .collect(),
        status,
        code,
        principal,
    }
}

/// The allow/deny table of the inline proxy's tests (tests/proxy_answers.rs, tests/proxy_forwarding.rs) on
/// the test config: every form of decision must answer each row with the same status and code.
pub fn table() -> Vec<Row> {
    let records = records_path();
    let read = bearer(TOKEN_READ);
    let write = bearer(TOKEN_WRITE);
    vec![
        row("no credential", "GET", &records, &[], 400, 9106, None),
        row(
            "not a bearer token",
            "GET",
            &records,
            &[("Authorization", "Basic dXNlcjpwYXNz")],
            400,
            6003,
            None,
        ),
        row(
            "unknown token",
            "GET",
            &records,
            &[("Authorization", "Bearer pgt_nobody")],
            403,
            1000,
            None,
        ),
        row(
            "disabled token",
            "GET",
            &records,
            &[("Authorization", &bearer(TOKEN_DISABLED))],
            403,
            1000,
            None,
        ),
        row(
            "read token lists",
            "GET",
            &records,
            &[("Authorization", &read)],
            200,
            0,
            Some("user:user-joe"),
        ),
        row(
            "read token lists, with a query",
            "GET",
            &format!("{records}?per_page=5&page=2"),
            &[("Authorization", &read)],
            200,
            0,
            Some("user:user-joe"),
        ),
        row(
            "read token cannot create",
            "POST",
            &records,
            &[("Authorization", &read)],
            403,
            10000,
            None,
        ),
        row(
            "write token creates",
            "POST",
            &records,
            &[("Authorization", &write)],
            200,
            0,
            Some("user:user-joe"),
        ),
        row(
            "another zone",
            "GET",
            &format!("/client/v4/zones/{OTHER_ZONE}/dns_records"),
            &[("Authorization", &read)],
            403,
            10000,
            None,
        ),
        row(
            "token outside its IP condition",
            "GET",
            &records,
            &[("Authorization", &bearer(TOKEN_IP))],
            403,
            9109,
            None,
        ),
        row(
            "member without API access",
            "GET",
            &records,
            &[("Authorization", &bearer(TOKEN_DAVE))],
            403,
            9109,
            None,
        ),
        row(
            "account token",
            "GET",
            &records,
            &[("Authorization", &bearer(TOKEN_ACCOUNT))],
            200,
            0,
            Some("account:acct-a"),
        ),
        row(
            "legacy key",
            "GET",
            &records,
            &[("X-Auth-Email", JOE_EMAIL), ("X-Auth-Key", JOE_KEY)],
            200,
            0,
            Some("user:user-joe"),
        ),
        row(
            "wrong legacy key",
            "GET",
            &records,
            &[
                ("X-Auth-Email", JOE_EMAIL),
                ("X-Auth-Key", "0000000000000000000000000000000000000"),
            ],
            403,
            9103,
            None,
        ),
        row("public route", "GET", "/client/v4/ips", &[], 200, 0, None),
        row(
            "no route",
            "GET",
            "/client/v4/nothing/here",
            &[("Authorization", &read)],
            400,
            7000,
            None,
        ),
        row(
            "encoded slash",
            "GET",
            &format!("/client/v4/zones/{ZONE}%2Fdns_records"),
            &[("Authorization", &read)],
            400,
            6003,
            None,
        ),
        row(
            "dot segment",
            "GET",
            &format!("/client/v4/zones/{OTHER_ZONE}/../{ZONE}/dns_records"),
            &[("Authorization", &read)],
            400,
            6003,
            None,
        ),
        row(
            "method override header",
            "GET",
            &records,
            &[("Authorization", &read), ("X-HTTP-Method-Override", "POST")],
            400,
            6003,
            None,
        ),
    ]
}

/// A third-party program the test runs: its path, or a failure saying how to install it.
pub fn tool(name: &str, install: &str) -> PathBuf {
    for dir in std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .chain(["/usr/sbin", "/usr/bin"])
    {
        let path = Path::new(dir).join(name);
        if path.is_file() {
            return path;
        }
    }
    panic!("{name} is not installed: {install} (.ci/run installs it)");
}

/// `permgate integrate …` (the real binary): its output.
pub fn integrate(args: &[&str]) -> String {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_permgate"))
        .arg("integrate")
        .args(args)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "permgate integrate {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// Waits until `addr` accepts connections (a proxy the test started), or fails with `log`'s content.
pub async fn wait_listening(addr: SocketAddr, what: &str, log: &Path) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        if tokio::time::Instant::now() > deadline {
            panic!(
                "{what} never listened on {addr}:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
}

/// A program from PyPI, installed once per checkout: the path `program` (relative to the venv) of the venv
/// `target/<venv>` ([`pip_venv`]), created with `packages` (pinned) when `works` says the program there does
/// not work yet.
/// `override_var` names an environment variable that gives another path instead. The first caller installs;
/// the others (tests run in parallel) wait on `ready` and reuse it.
pub fn pip_tool(
    ready: &std::sync::Mutex<Option<PathBuf>>,
    override_var: &str,
    venv: &str,
    program: &str,
    packages: &[&str],
    works: impl Fn(&Path) -> bool,
) -> PathBuf {
    let mut ready = ready
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(path) = ready.as_ref() {
        return path.clone();
    }
    if let Ok(path) = std::env::var(override_var) {
        *ready = Some(PathBuf::from(&path));
        return PathBuf::from(path);
    }
    let path = pip_venv(venv, packages, |venv| works(&venv.join(program))).join(program);
    *ready = Some(path.clone());
    path
}
