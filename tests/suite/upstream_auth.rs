//! The upstream's own credential (`upstream.auth`), end to end with the real `permgate serve` binary: a
//! narrow permgate token reaches an upstream that accepts only the upstream's credential; a denied request,
//! a public route and a request without a credential never carry it; the client's credential never reaches
//! the upstream whatever `forward_credentials` says; and the secret appears in no output: not in the logs
//! (at `trace` level), the decision log, `/status`, `/metrics`, any answer, or a `Debug` of the gateway.

use crate::common;
use crate::reload_support;

use std::convert::Infallible;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use permgate::metrics::ReloadOutcome;
use permgate::reload::Trigger;
use reload_support::{MANUAL, edit, start_services};
use tokio::net::TcpListener;

/// The upstream's own credential: broad, held only by the gateway.
const UPSTREAM_SECRET: &str = "cfut_upstream_broad_credential_7f3a9c";

/// An upstream that accepts only `Authorization: Bearer UPSTREAM_SECRET` (else 401) and records every
/// request's path and headers.
struct StrictUpstream {
    url: String,
    seen: Arc<Mutex<Vec<(String, HeaderMap)>>>,
}

async fn start_strict_upstream() -> StrictUpstream {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen: Arc<Mutex<Vec<(String, HeaderMap)>>> = Arc::default();
    let record = Arc::clone(&seen);
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let record = Arc::clone(&record);
            tokio::spawn(async move {
                let service = service_fn(move |request: Request<Incoming>| {
                    let record = Arc::clone(&record);
                    async move {
                        let target = request
                            .uri()
                            .path_and_query()
                            .map_or_else(String::new, |pq| pq.as_str().to_string());
                        let authorized = request
                            .headers()
                            .get_all("authorization")
                            .iter()
                            .eq([format!("Bearer {UPSTREAM_SECRET}").as_str()]);
                        record
                            .lock()
                            .unwrap()
                            .push((target, request.headers().clone()));
                        let (status, body) = if authorized {
                            (StatusCode::OK, r#"{"success":true,"result":{}}"#)
                        } else {
                            (
                                StatusCode::UNAUTHORIZED,
                                r#"{"success":false,"errors":[{"code":10000,"message":"Authentication error"}]}"#,
                            )
                        };
                        Ok::<_, Infallible>(
                            Response::builder()
                                .status(status)
                                .header("content-type", "application/json")
                                .body(Full::new(Bytes::from_static(body.as_bytes())))
                                .unwrap(),
                        )
                    }
                });
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    StrictUpstream { url, seen }
}

impl StrictUpstream {
    fn seen(&self) -> Vec<(String, HeaderMap)> {
        self.seen.lock().unwrap().clone()
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A `permgate serve` process with its output captured in files.
struct Served {
    child: Child,
    proxy: std::net::SocketAddr,
    admin: std::net::SocketAddr,
    stdout: std::path::PathBuf,
    stderr: std::path::PathBuf,
    logs: std::path::PathBuf,
}

impl Served {
    /// Writes the test config with `upstream.auth` (and `forward_credentials: true`, which the upstream
    /// credential overrides), the decision log on stdout, and starts the binary at `trace` level.
    async fn start(config: &TestConfig, auth: &str, env: &[(&str, &str)]) -> Served {
        let (proxy_port, admin_port) = (free_port(), free_port());
        let path = &config.gateway_path;
        // The admin line first: "admin_listen: …" holds "listen: …" too.
        let text = std::fs::read_to_string(path)
            .unwrap()
            .replacen(
                "admin_listen: 127.0.0.1:0",
                &format!("admin_listen: 127.0.0.1:{admin_port}"),
                1,
            )
            .replacen(
                "listen: 127.0.0.1:0",
                &format!("listen: 127.0.0.1:{proxy_port}"),
                1,
            )
            .replace(
                "decision_log: { sink: off }",
                "decision_log: { sink: stdout }",
            );
        let text = text.replacen(
            "  connect_timeout_ms:",
            &format!("  auth: {auth}\n  connect_timeout_ms:"),
            1,
        ) + "forward_credentials: true\n";
        std::fs::write(path, text).unwrap();
        // Outside the config folder: the watcher's own trace lines about a log file it watches would feed
        // themselves.
        let logs = tempfile::tempdir().unwrap().keep();
        let (stdout, stderr) = (logs.join("stdout.log"), logs.join("stderr.log"));
        let mut command = Command::new(env!("CARGO_BIN_EXE_permgate"));
        command
            .args(["serve", "--config"])
            .arg(path)
            .env("RUST_LOG", "trace")
            .stdout(Stdio::from(std::fs::File::create(&stdout).unwrap()))
            .stderr(Stdio::from(std::fs::File::create(&stderr).unwrap()));
        for (name, value) in env {
            command.env(name, value);
        }
        let child = command.spawn().unwrap();
        let served = Served {
            child,
            proxy: ([127, 0, 0, 1], proxy_port).into(),
            admin: ([127, 0, 0, 1], admin_port).into(),
            stdout,
            stderr,
            logs,
        };
        let deadline = Instant::now() + PATIENCE;
        loop {
            if tokio::net::TcpStream::connect(served.admin).await.is_ok()
                && tokio::net::TcpStream::connect(served.proxy).await.is_ok()
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "permgate did not start: {}",
                std::fs::read_to_string(&served.stderr).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        served
    }

    /// SIGTERM, wait for the exit, and everything the process wrote.
    fn stop(mut self) -> String {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + PATIENCE;
        while self.child.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let log = std::fs::read_to_string(&self.stderr).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(30).collect();
                panic!("permgate did not stop; last lines:\n{}", tail.join("\n"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let output = std::fs::read_to_string(&self.stdout).unwrap()
            + &std::fs::read_to_string(&self.stderr).unwrap();
        let _ = std::fs::remove_dir_all(&self.logs);
        output
    }
}

impl Drop for Served {
    /// A test that fails before `stop` must not leave the process behind.
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn write_secret_file(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("upstream.token");
    // As `echo SECRET > file` or a Kubernetes Secret written with a newline leaves it.
    std::fs::write(&path, format!("{UPSTREAM_SECRET}\n")).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_narrow_token_reaches_an_upstream_that_takes_only_the_gateways_credential() {
    let upstream = start_strict_upstream().await;
    let config = write_config(&Options::new(&upstream.url));
    write_secret_file(config.dir.path());
    let served = Served::start(&config, "{ bearer_file: upstream.token }", &[]).await;
    let records = records_path();
    let mut bodies = Vec::new();

    // Allowed: Joe's narrow DNS-read token, and Joe's legacy key, reach the upstream with its credential.
    let token = send(
        served.proxy,
        "GET",
        &records,
        &[("Authorization", &bearer(TOKEN_READ))],
    )
    .await;
    assert_eq!(token.status, 200, "{}", token.body);
    let legacy = send(
        served.proxy,
        "GET",
        &records,
        &[("X-Auth-Email", JOE_EMAIL), ("X-Auth-Key", JOE_KEY)],
    )
    .await;
    assert_eq!(legacy.status, 200, "{}", legacy.body);
    let seen = upstream.seen();
    assert_eq!(seen.len(), 2, "{seen:?}");
    for (target, headers) in &seen {
        assert_eq!(target, &records);
        assert_eq!(
            headers.get_all("authorization").iter().collect::<Vec<_>>(),
            [&format!("Bearer {UPSTREAM_SECRET}")],
            "exactly the upstream's credential, never the client's"
        );
        assert!(!headers.contains_key("x-auth-email") && !headers.contains_key("x-auth-key"));
        assert_eq!(
            headers.get("x-permgate-principal").unwrap(),
            "user:user-joe"
        );
    }
    bodies.extend([token.body, legacy.body]);

    // Denied, or never authenticated: nothing carries the upstream's credential.
    for (method, path, headers, status) in [
        (
            "POST",
            records.clone(),
            vec![("Authorization", bearer(TOKEN_READ))],
            403,
        ),
        (
            "GET",
            format!("/client/v4/zones/{OTHER_ZONE}/dns_records"),
            vec![("Authorization", bearer(TOKEN_READ))],
            403,
        ),
        (
            "GET",
            records.clone(),
            vec![("Authorization", bearer("pgt_never_issued"))],
            403,
        ),
        ("GET", records.clone(), vec![], 400),
        (
            "GET",
            "/client/v4/no/such/route".to_string(),
            vec![("Authorization", bearer(TOKEN_READ))],
            400,
        ),
        (
            "GET",
            format!("{records}%2F"),
            vec![("Authorization", bearer(TOKEN_READ))],
            400,
        ),
    ] {
        let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let response = send(served.proxy, method, &path, &headers).await;
        assert_eq!(
            response.status, status,
            "{method} {path}: {}",
            response.body
        );
        bodies.push(response.body);
    }
    assert_eq!(
        upstream.seen().len(),
        2,
        "a refused request reached the upstream"
    );

    // A public route checks no credential: forwarded without the upstream's, and without the client's.
    let public = send(
        served.proxy,
        "GET",
        "/client/v4/ips",
        &[("Authorization", &bearer(TOKEN_READ))],
    )
    .await;
    assert_eq!(
        public.status, 401,
        "the strict upstream refuses it: {}",
        public.body
    );
    let seen = upstream.seen();
    let (target, headers) = seen.last().unwrap();
    assert_eq!(target, "/client/v4/ips");
    assert!(!headers.contains_key("authorization"), "{headers:?}");
    bodies.push(public.body);

    // Nothing shows the secret: answers, /status, /metrics, the logs at trace level.
    let status = send(served.admin, "GET", "/status", &[]).await;
    assert_eq!(status.status, 200);
    let metrics = send(served.admin, "GET", "/metrics", &[]).await;
    assert_eq!(metrics.status, 200);
    assert!(metrics.body.contains("permgate_requests_total"));
    bodies.extend([status.body, metrics.body]);
    for body in &bodies {
        assert!(
            !body.contains(UPSTREAM_SECRET),
            "secret in an answer: {body}"
        );
    }
    let output = served.stop();
    assert!(
        output.contains("\"decision\":\"allow\"") && output.contains("TRACE"),
        "the decision log and the trace logs were written: {output}"
    );
    assert!(!output.contains(UPSTREAM_SECRET), "secret in the output");
    assert!(
        !output.contains("cfut_upstream"),
        "part of the secret in the output"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_credential_can_come_from_the_environment_and_a_missing_one_stops_the_start() {
    let upstream = start_strict_upstream().await;
    let config = write_config(&Options::new(&upstream.url));
    let served = Served::start(
        &config,
        "{ bearer_env: PERMGATE_TEST_UPSTREAM_TOKEN }",
        &[("PERMGATE_TEST_UPSTREAM_TOKEN", UPSTREAM_SECRET)],
    )
    .await;
    let response = send(
        served.proxy,
        "GET",
        &records_path(),
        &[("Authorization", &bearer(TOKEN_ACCOUNT))],
    )
    .await;
    assert_eq!(response.status, 200, "{}", response.body);
    let output = served.stop();
    assert!(!output.contains(UPSTREAM_SECRET));

    // Unset, or a file that is not there: the gateway does not start, and says which source failed.
    for (auth, env, names) in [
        (
            "{ bearer_env: PERMGATE_TEST_UNSET_TOKEN }",
            vec![],
            "PERMGATE_TEST_UNSET_TOKEN",
        ),
        ("{ bearer_file: missing.token }", vec![], "missing.token"),
        (
            "{ bearer_env: PERMGATE_TEST_EMPTY_TOKEN }",
            vec![("PERMGATE_TEST_EMPTY_TOKEN", "\n")],
            "empty",
        ),
    ] {
        let config = write_config(&Options::new(&upstream.url));
        let text = std::fs::read_to_string(&config.gateway_path)
            .unwrap()
            .replacen(
                "  connect_timeout_ms:",
                &format!("  auth: {auth}\n  connect_timeout_ms:"),
                1,
            );
        std::fs::write(&config.gateway_path, text).unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_permgate"));
        command
            .args(["serve", "--config"])
            .arg(&config.gateway_path);
        for (name, value) in &env {
            command.env(name, value);
        }
        let output = command.output().unwrap();
        assert!(!output.status.success(), "{auth}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(names), "{auth}: {stderr}");
        // `validate` says so too, as a warning (where it runs may not hold the secret).
        let mut validate = Command::new(env!("CARGO_BIN_EXE_permgate"));
        validate
            .args(["validate", "--config"])
            .arg(&config.gateway_path);
        for (name, value) in &env {
            validate.env(name, value);
        }
        let validated = validate.output().unwrap();
        let stdout = String::from_utf8_lossy(&validated.stdout);
        assert!(validated.status.success(), "{stdout}");
        assert!(
            stdout.contains("warning")
                && stdout.contains("upstream.auth")
                && stdout.contains(names),
            "{auth}: {stdout}"
        );
    }
}

/// `Debug` of the running gateway (which holds the credential) and of its snapshot never print the secret.
#[tokio::test]
async fn debug_output_never_holds_the_upstream_credential() {
    let upstream = start_strict_upstream().await;
    let config = write_config(&Options::new(&upstream.url));
    let secret = write_secret_file(config.dir.path());
    let text = std::fs::read_to_string(&config.gateway_path)
        .unwrap()
        .replacen(
            "  connect_timeout_ms:",
            &format!(
                "  auth: {{ bearer_file: {} }}\n  connect_timeout_ms:",
                secret.display()
            ),
            1,
        );
    std::fs::write(&config.gateway_path, text).unwrap();
    let snapshot = permgate::config::load(&config.gateway_path).unwrap();
    assert!(!format!("{snapshot:?}").contains(UPSTREAM_SECRET));
    let observer = permgate::proxy::Observer {
        metrics: permgate::metrics::Metrics::new().unwrap(),
        decision_log: None,
    };
    let gateway = permgate::proxy::Gateway::new(Arc::new(snapshot), None, observer).unwrap();
    let shown = format!("{gateway:?} {gateway:#?}");
    assert!(shown.contains("upstream.token"), "the source is shown");
    assert!(!shown.contains(UPSTREAM_SECRET), "{shown}");
}

/// A reload that applies reads the credential again (a rotated secret takes effect with it); a reload that
/// removes `upstream.auth` stops sending one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_reads_the_credential_again() {
    let upstream = start_strict_upstream().await;
    let config = write_config(&Options::new(&upstream.url));
    let secret = write_secret_file(config.dir.path());
    edit(&config.gateway_path, |text| {
        text.replacen(
            "  connect_timeout_ms:",
            "  auth: { bearer_file: upstream.token }\n  connect_timeout_ms:",
            1,
        )
    });
    let services = start_services(&config, MANUAL).await;
    let authorization_seen = |services: &permgate::cli::serve::Services| {
        let addr = services.proxy.addr;
        let upstream = &upstream;
        async move {
            let response = send(
                addr,
                "GET",
                &records_path(),
                &[("Authorization", &bearer(TOKEN_READ))],
            )
            .await;
            let seen = upstream.seen();
            let (_, headers) = seen.last().unwrap();
            (
                response.status,
                headers
                    .get("authorization")
                    .map(|value| value.to_str().unwrap().to_string()),
            )
        }
    };
    assert_eq!(
        authorization_seen(&services).await,
        (200, Some(format!("Bearer {UPSTREAM_SECRET}")))
    );

    // Rotated: the new secret is read when a reload applies (here a config edit triggers it).
    std::fs::write(&secret, "cfut_rotated_secret\n").unwrap();
    edit(&config.gateway_path, |text| text + "# rotated\n");
    assert_eq!(
        services.reloader.reload_now(Trigger::Manual).await,
        ReloadOutcome::Applied
    );
    assert_eq!(
        authorization_seen(&services).await,
        (401, Some("Bearer cfut_rotated_secret".to_string())),
        "the strict upstream only knows the first secret"
    );

    // Removed: no upstream credential, and the client's is still not forwarded (forward_credentials: false).
    edit(&config.gateway_path, |text| {
        text.replacen("  auth: { bearer_file: upstream.token }\n", "", 1)
    });
    assert_eq!(
        services.reloader.reload_now(Trigger::Manual).await,
        ReloadOutcome::Applied
    );
    assert_eq!(authorization_seen(&services).await, (401, None));
    services.stop().await;
}
