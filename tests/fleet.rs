//! Three replicas behind a real load balancer, on their own hosts: each `permgate serve` in a network
//! namespace this test creates (a veth pair to the test's namespace, 198.18.0.0/15 addresses: the range
//! RFC 2544 sets aside for tests), HAProxy (Debian's `haproxy`) in front, and the deploy example's config
//! (deploy/configmap.yaml and deploy/secret.yaml, unchanged but for the upstream's address) delivered to each
//! replica in its own folder by the symlink swap a ConfigMap volume (and git-sync) uses: the files link into
//! `..data`, and `..data` is renamed to a new folder in one step. Each replica sees its folder at the same
//! path (a bind mount in a mount namespace of its own), as every pod sees its ConfigMap at `/etc/permgate`.
//!
//! Under continuous load through the load balancer:
//!
//! 1. **a config change converges**: after the swap, every replica's `/status` shows the new `content_hash`
//!    (the same on all three) within a bound; the time is printed (BENCHMARKS.md "Many replicas");
//! 2. **no request is decided by a config older than the one before the change**: every request's
//!    decision-log line names the generation that decided it, and every request sent after a change began is
//!    decided by the config before it or the new one — and its answer is the one that config gives (a token
//!    revoked by a change is refused exactly by the generations that revoke it);
//! 3. **a bad config never reaches service**: swapped in on all three, it is rejected by each (`/status`
//!    `last_reload.outcome` `rejected`, `in_sync` false), the served `content_hash` and generation stay, and
//!    no request is decided by anything but the last good config;
//! 4. **killing a replica (SIGKILL) loses no request the load balancer could retry**: HAProxy retries a
//!    request whose connection failed or was closed without an answer on another replica, and every request
//!    the test sent gets a decided answer (200 or 403; never a 5xx or a dropped connection).
//!
//! Needs root (`ip netns add`), `ip` (iproute2) and `haproxy` (`apt-get install -y haproxy`; .ci/run installs
//! it). The namespaces and links are removed when the test ends, failed or not.
// Its own binary (like tests/faults.rs): it starts three replicas and HAProxy under load, which would disturb
// the timing-sensitive tests of tests/suite running beside it in one process.
// Test code: a failed unwrap is a failed test (tests/ is exempt from the no-panic rule).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::Child;

const REPLICAS: usize = 3;
/// The proxy and admin ports of every replica: the deploy config's own, each replica on its own address.
const PROXY_PORT: u16 = 8080;
const ADMIN_PORT: u16 = 9090;
/// How long a change may take to reach every replica before the test fails. The watcher reacts to the
/// `..data` rename within about half a second (the figure is printed); the periodic re-check (30 s in the
/// deploy config) is not what this bound measures.
const CONVERGENCE_BOUND: Duration = Duration::from_secs(10);

const ZONE_RECORDS: &str = "/client/v4/zones/b1fbb152bbde3bd28919a7f4bdca841f/dns_records";
/// Joe's DNS-read token: allowed in versions 1 and 2, disabled in version 3.
const READER: &str = "pgt_example_dns_read";
/// The account's CI token: allowed in version 1, disabled in version 2, enabled again in version 3.
const CI: &str = "pgt_example_ci_dns_write";

// ---- network namespaces --------------------------------------------------------------------------------

fn ip(args: &[&str]) {
    let output = Command::new("ip").args(args).output().unwrap();
    assert!(
        output.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// One host: a network namespace joined to the test's by a veth pair, `outer` on the test's side and
/// `inner` inside. Removed on drop.
struct Host {
    netns: String,
    link: String,
    outer: Ipv4Addr,
    inner: Ipv4Addr,
}

impl Host {
    fn create(index: usize) -> Self {
        let id = std::process::id();
        // 198.18.x.0/30 per host; x from the process id, so that two runs on one machine do not collide.
        let subnet = u8::try_from((id as usize % 80) * REPLICAS + index).unwrap();
        let host = Self {
            netns: format!("pgfleet-{id}-{index}"),
            link: format!("pgf{}h{index}", id % 100_000),
            outer: Ipv4Addr::new(198, 18, subnet, 1),
            inner: Ipv4Addr::new(198, 18, subnet, 2),
        };
        let peer = format!("pgf{}p{index}", id % 100_000);
        ip(&["netns", "add", &host.netns]);
        ip(&[
            "link", "add", &host.link, "type", "veth", "peer", "name", &peer,
        ]);
        ip(&["link", "set", &peer, "netns", &host.netns]);
        ip(&[
            "addr",
            "add",
            &format!("{}/30", host.outer),
            "dev",
            &host.link,
        ]);
        ip(&["link", "set", &host.link, "up"]);
        let inside = |args: &[&str]| {
            let mut all = vec!["-n", host.netns.as_str()];
            all.extend_from_slice(args);
            ip(&all);
        };
        inside(&["link", "set", "lo", "up"]);
        inside(&["addr", "add", &format!("{}/30", host.inner), "dev", &peer]);
        inside(&["link", "set", &peer, "up"]);
        // Everything else (the upstream, on the first host's outer address) through the test's side.
        inside(&["route", "add", "default", "via", &host.outer.to_string()]);
        host
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        // Deleting the namespace deletes its end of the pair, and with it the pair.
        let _ = Command::new("ip")
            .args(["netns", "del", &self.netns])
            .status();
        let _ = Command::new("ip")
            .args(["link", "del", &self.link])
            .stderr(Stdio::null())
            .status();
    }
}

// ---- the config, as a ConfigMap volume --------------------------------------------------------------------

/// The deploy example's files (ConfigMap `data` and Secret `stringData`), by name.
fn deploy_files(upstream: SocketAddr) -> Vec<(String, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy");
    let mut files = Vec::new();
    for (file, field) in [("configmap.yaml", "data"), ("secret.yaml", "stringData")] {
        let text = std::fs::read_to_string(root.join(file)).unwrap();
        let object: Value = serde_saphyr::from_str(&text).unwrap();
        for (name, value) in object[field].as_object().unwrap() {
            let mut text = value.as_str().unwrap().to_string();
            if name == "gateway.yaml" {
                let replaced = text.replace(
                    "url: http://api-backend:8080",
                    &format!("url: http://{upstream}"),
                );
                assert_ne!(replaced, text);
                text = replaced;
            }
            files.push((name.clone(), text));
        }
    }
    files
}

/// The token entry whose secret is `secret` set to `status`.
fn with_status(files: &[(String, String)], secret: &str, status: &str) -> Vec<(String, String)> {
    let hash = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(secret.as_bytes()));
    files
        .iter()
        .map(|(name, text)| {
            if name != "tokens.yaml" {
                return (name.clone(), text.clone());
            }
            let mut out = String::new();
            let mut in_token = false;
            for line in text.lines() {
                if line.contains("secret_sha256:") {
                    in_token = line.contains(&hash);
                }
                if in_token && line.trim_start().starts_with("status:") {
                    let indent = &line[..line.len() - line.trim_start().len()];
                    out.push_str(&format!("{indent}status: {status}\n"));
                    in_token = false;
                } else {
                    out.push_str(line);
                    out.push('\n');
                }
            }
            assert_ne!(&out, text, "no token {secret}");
            (name.clone(), out)
        })
        .collect()
}

/// One replica's config folder, laid out and updated as the kubelet updates a ConfigMap volume.
struct Volume {
    dir: PathBuf,
    versions: usize,
}

impl Volume {
    fn new(dir: PathBuf, files: &[(String, String)]) -> Self {
        std::fs::create_dir_all(&dir).unwrap();
        let mut volume = Self { dir, versions: 0 };
        volume.swap(files);
        for (name, _) in files {
            std::os::unix::fs::symlink(Path::new("..data").join(name), volume.dir.join(name))
                .unwrap();
        }
        volume
    }

    /// Writes the files into a new hidden folder, points `..data_tmp` at it and renames that over `..data`
    /// (one atomic step), then removes the folder before (as the kubelet does).
    fn swap(&mut self, files: &[(String, String)]) {
        self.versions += 1;
        let version = format!("..version_{}", self.versions);
        let folder = self.dir.join(&version);
        std::fs::create_dir(&folder).unwrap();
        for (name, text) in files {
            std::fs::write(folder.join(name), text).unwrap();
        }
        let staging = self.dir.join("..data_tmp");
        std::os::unix::fs::symlink(&version, &staging).unwrap();
        std::fs::rename(&staging, self.dir.join("..data")).unwrap();
        if self.versions > 1 {
            let _ =
                std::fs::remove_dir_all(self.dir.join(format!("..version_{}", self.versions - 1)));
        }
    }
}

// ---- processes -----------------------------------------------------------------------------------------

struct Replica {
    host: Host,
    volume: Volume,
    child: Option<Child>,
    log: PathBuf,
}

impl Replica {
    fn proxy(&self) -> SocketAddr {
        SocketAddr::from((self.host.inner, PROXY_PORT))
    }

    fn admin(&self) -> SocketAddr {
        SocketAddr::from((self.host.inner, ADMIN_PORT))
    }

    /// `permgate serve` in the replica's namespace, with its own volume mounted (bind, in a mount namespace
    /// of its own) at `mount_point`, the same path for every replica, as every pod of a Deployment mounts its
    /// ConfigMap at the same path: `content_hash` covers the files' paths as well as their contents.
    fn start(&mut self, mount_point: &Path) {
        let log = std::fs::File::create(&self.log).unwrap();
        let child = tokio::process::Command::new("ip")
            .args(["netns", "exec", &self.host.netns])
            .args(["unshare", "--mount", "--propagation", "private", "sh", "-c"])
            .arg(r#"mount --bind "$0" "$1" && exec "$2" serve --config "$1/gateway.yaml""#)
            .arg(&self.volume.dir)
            .arg(mount_point)
            .arg(env!("CARGO_BIN_EXE_permgate"))
            .env("TOKIO_WORKER_THREADS", "1")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        self.child = Some(child);
    }

    async fn status(&self) -> Option<Value> {
        let response = exchange(self.admin(), "GET", "/status", None).await?;
        (response.status == 200)
            .then(|| serde_json::from_str(&response.body).ok())
            .flatten()
    }

    /// SIGTERM and wait: the decision log is written out by then.
    async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pid = child.id().unwrap().to_string();
            let _ = Command::new("kill").args(["-TERM", &pid]).status();
            let _ = tokio::time::timeout(Duration::from_secs(30), child.wait()).await;
        }
    }
}

/// The upstream: answers every request `200 {"ok":true}`, on `addr`.
async fn start_upstream(addr: SocketAddr) -> tokio::task::JoinHandle<()> {
    let listener = TcpListener::bind(addr).await.unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let service = service_fn(|_request| async {
                    Ok::<_, Infallible>(
                        http::Response::builder()
                            .header("content-type", "application/json")
                            .body(Full::new(Bytes::from_static(b"{\"ok\":true}")))
                            .unwrap(),
                    )
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    })
}

/// HAProxy on `listen`, round robin over the replicas, each health-checked on its admin port's `/readyz`;
/// a request whose connection to a replica failed, or was closed without an answer, is retried on another.
fn start_haproxy(dir: &Path, listen: SocketAddr, replicas: &[SocketAddr]) -> Child {
    let mut config = format!(
        "global
  maxconn 4096
defaults
  mode http
  timeout connect 1s
  timeout client 30s
  timeout server 30s
  retries 3
  option redispatch 1
  retry-on conn-failure empty-response response-timeout
frontend proxy
  bind {listen}
  default_backend replicas
backend replicas
  balance roundrobin
  option httpchk GET /readyz
  http-check expect status 200
  default-server check port {ADMIN_PORT} inter 100ms fall 2 rise 2
"
    );
    for (index, replica) in replicas.iter().enumerate() {
        config.push_str(&format!("  server replica{index} {replica}\n"));
    }
    let path = dir.join("haproxy.cfg");
    std::fs::write(&path, config).unwrap();
    let check = Command::new("haproxy")
        .arg("-c")
        .arg("-f")
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    tokio::process::Command::new("haproxy")
        .arg("-db")
        .arg("-f")
        .arg(&path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

// ---- the client ------------------------------------------------------------------------------------------

struct Answer {
    status: u16,
    request_id: String,
    body: String,
}

/// One request on a new connection (`Connection: close`); `None` when there was no HTTP answer.
async fn exchange(
    addr: SocketAddr,
    method: &str,
    target: &str,
    token: Option<&str>,
) -> Option<Answer> {
    let mut stream = tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(addr))
        .await
        .ok()?
        .ok()?;
    let mut head = format!("{method} {target} HTTP/1.1\r\nHost: permgate\r\nConnection: close\r\n");
    if let Some(token) = token {
        head.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await.ok()?;
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut out))
        .await
        .ok()?
        .ok()?;
    let text = String::from_utf8_lossy(&out);
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    let request_id = head
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("x-request-id")
                .then(|| value.trim().to_string())
        })
        .unwrap_or_default();
    Some(Answer {
        status,
        request_id,
        body: body.to_string(),
    })
}

/// One request of the load: which token, when it was sent, and its answer (`None`: lost).
struct Sent {
    token: &'static str,
    at: Instant,
    answer: Option<Answer>,
}

/// Clients sending requests through the load balancer until `stop`, alternating the two tokens.
fn start_load(
    lb: SocketAddr,
    clients: usize,
    stop: Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<Vec<Sent>>> {
    (0..clients)
        .map(|client| {
            let stop = Arc::clone(&stop);
            tokio::spawn(async move {
                let mut sent = Vec::new();
                let mut turn = client;
                while !stop.load(Ordering::Relaxed) {
                    let token = if turn % 2 == 0 { READER } else { CI };
                    turn += 1;
                    let at = Instant::now();
                    let answer = exchange(lb, "GET", ZONE_RECORDS, Some(token)).await;
                    sent.push(Sent { token, at, answer });
                }
                sent
            })
        })
        .collect()
}

/// Polls every replica's `/status` until each shows a `content_hash` other than `old` and all show the same
/// one; returns it, each replica's time from `since`, and each replica's generation.
async fn converge(
    replicas: &[&Replica],
    old: &str,
    since: Instant,
) -> (String, Vec<Duration>, Vec<u64>) {
    let mut seen: Vec<Option<(String, Duration, u64)>> = vec![None; replicas.len()];
    loop {
        for (index, replica) in replicas.iter().enumerate() {
            if seen[index].is_some() {
                continue;
            }
            if let Some(status) = replica.status().await {
                let hash = status["content_hash"].as_str().unwrap().to_string();
                if hash != old {
                    seen[index] = Some((
                        hash,
                        since.elapsed(),
                        status["generation"].as_u64().unwrap(),
                    ));
                }
            }
        }
        if seen.iter().all(Option::is_some) {
            break;
        }
        assert!(
            since.elapsed() < CONVERGENCE_BOUND,
            "not converged within {CONVERGENCE_BOUND:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let seen: Vec<(String, Duration, u64)> = seen.into_iter().map(Option::unwrap).collect();
    let hash = seen[0].0.clone();
    for (other, _, _) in &seen {
        assert_eq!(*other, hash, "replicas converged on different configs");
    }
    (
        hash,
        seen.iter().map(|(_, time, _)| *time).collect(),
        seen.iter().map(|(_, _, generation)| *generation).collect(),
    )
}

/// What version `generation` of the config is: 1 the first, 2 after the first change, 3 after the second
/// (every replica started with version 1 and applied the same changes; the bad config makes none).
fn allowed(token: &str, generation: u64) -> bool {
    match (token, generation) {
        (READER, 1 | 2) | (CI, 1 | 3) => true,
        (READER, 3) | (CI, 2) => false,
        other => panic!("no version for {other:?}"),
    }
}

fn require_tools() {
    let root = Command::new("id").arg("-u").output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&root.stdout).trim(),
        "0",
        "tests/fleet.rs creates network namespaces: run it as root"
    );
    for (tool, install) in [("ip", "iproute2"), ("haproxy", "haproxy")] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .stdout(Stdio::null())
            .status()
            .unwrap()
            .success();
        assert!(
            found,
            "`{tool}` is not installed: apt-get install -y {install} (.ci/run does)"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_behind_haproxy_converge_never_serve_a_bad_config_and_lose_nothing_to_a_kill()
 {
    require_tools();
    let work = tempfile::tempdir().unwrap();
    let hosts: Vec<Host> = (0..REPLICAS).map(Host::create).collect();
    // The upstream and the load balancer on the first link's outer address; each replica reaches the
    // upstream through its own link.
    let upstream_addr = {
        let probe = std::net::TcpListener::bind((hosts[0].outer, 0)).unwrap();
        probe.local_addr().unwrap()
    };
    let lb = {
        let probe = std::net::TcpListener::bind((hosts[0].outer, 0)).unwrap();
        probe.local_addr().unwrap()
    };
    let _upstream = start_upstream(upstream_addr).await;

    let version_1 = deploy_files(upstream_addr);
    let version_2 = with_status(&version_1, CI, "disabled");
    let version_3 = with_status(&with_status(&version_2, CI, "active"), READER, "disabled");
    let broken: Vec<(String, String)> = version_3
        .iter()
        .map(|(name, text)| {
            let text = if name == "accounts.yaml" {
                // Well-formed YAML with a field permgate does not know: rejected.
                text.replacen(
                    "    name: Example Company\n",
                    "    name: Example Company\n    bogus: 1\n",
                    1,
                )
            } else {
                text.clone()
            };
            (name.clone(), text)
        })
        .collect();

    let mut replicas: Vec<Replica> = hosts
        .into_iter()
        .enumerate()
        .map(|(index, host)| Replica {
            volume: Volume::new(work.path().join(format!("replica{index}")), &version_1),
            log: work.path().join(format!("replica{index}.decisions.log")),
            host,
            child: None,
        })
        .collect();
    let mount_point = work.path().join("etc-permgate");
    std::fs::create_dir(&mount_point).unwrap();
    for replica in &mut replicas {
        replica.start(&mount_point);
    }
    let started = Instant::now();
    let mut hash_1 = None;
    for replica in &replicas {
        loop {
            if let Some(status) = replica.status().await {
                let hash = status["content_hash"].as_str().unwrap().to_string();
                assert_eq!(*hash_1.get_or_insert_with(|| hash.clone()), hash);
                assert_eq!(status["generation"], 1);
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "a replica never started"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
    let hash_1 = hash_1.unwrap();
    let addresses: Vec<SocketAddr> = replicas.iter().map(Replica::proxy).collect();
    let _haproxy = start_haproxy(work.path(), lb, &addresses);
    loop {
        if exchange(lb, "GET", ZONE_RECORDS, Some(READER))
            .await
            .is_some_and(|answer| answer.status == 200)
        {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "HAProxy never forwarded"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }

    let stop = Arc::new(AtomicBool::new(false));
    let load = start_load(lb, 8, Arc::clone(&stop));
    let pause = || tokio::time::sleep(Duration::from_millis(1500));
    pause().await;

    // Change 1 (the CI token disabled), then change 2 (enabled again, the reader disabled): each replica's
    // volume swapped in turn, as each node's kubelet does.
    let mut changes = Vec::new();
    let mut hash = hash_1.clone();
    for (number, files) in [(2u64, &version_2), (3, &version_3)] {
        let began = Instant::now();
        for replica in &mut replicas {
            replica.volume.swap(files);
        }
        let (new_hash, times, generations) =
            converge(&replicas.iter().collect::<Vec<_>>(), &hash, began).await;
        assert!(
            generations.iter().all(|generation| *generation == number),
            "{generations:?}"
        );
        eprintln!(
            "change to version {number}: every replica serves it {:?} after the swap began (per replica: {times:?})",
            times.iter().max().unwrap()
        );
        changes.push((began, began + *times.iter().max().unwrap()));
        hash = new_hash;
        pause().await;
    }

    // A bad config on every replica: rejected by each, the last good one still served.
    let began = Instant::now();
    for replica in &mut replicas {
        replica.volume.swap(&broken);
    }
    for replica in &replicas {
        loop {
            let status = replica.status().await.unwrap();
            if status["last_reload"]["outcome"] == "rejected" {
                assert_eq!(status["content_hash"], hash.as_str());
                assert_eq!(status["generation"], 3);
                assert_eq!(status["in_sync"], false);
                assert!(
                    status["last_error"].as_str().unwrap().contains("bogus"),
                    "{status}"
                );
                break;
            }
            assert!(
                began.elapsed() < CONVERGENCE_BOUND,
                "the bad config was never rejected"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(
            exchange(replica.admin(), "GET", "/readyz", None)
                .await
                .unwrap()
                .status,
            200
        );
    }
    eprintln!(
        "bad config rejected by every replica {:?} after the swap began",
        began.elapsed()
    );
    pause().await;

    // One replica killed outright under load.
    let killed_at = Instant::now();
    let victim = replicas[1].child.as_mut().unwrap();
    victim.start_kill().unwrap();
    victim.wait().await.unwrap();
    replicas[1].child = None;
    pause().await;
    pause().await;
    stop.store(true, Ordering::Relaxed);
    let mut sent = Vec::new();
    for client in load {
        sent.extend(client.await.unwrap());
    }
    for replica in &mut replicas {
        replica.stop().await;
    }

    // Every request the test sent got a decided answer: none lost, to the kill or to a change.
    let lost: Vec<&Sent> = sent
        .iter()
        .filter(|request| {
            !request
                .answer
                .as_ref()
                .is_some_and(|answer| matches!(answer.status, 200 | 403))
        })
        .collect();
    let after_kill = sent
        .iter()
        .filter(|request| request.at >= killed_at)
        .count();
    eprintln!(
        "{} requests through HAProxy, {after_kill} of them after the kill; lost: {}",
        sent.len(),
        lost.len()
    );
    assert!(
        lost.is_empty(),
        "{} requests lost, e.g. {:?}",
        lost.len(),
        lost.first()
            .map(|request| request.answer.as_ref().map(|a| (a.status, a.body.clone())))
    );
    assert!(after_kill > 0, "no request was sent after the kill");

    // Which generation decided each request, from the replicas' decision logs.
    let mut decided: HashMap<String, u64> = HashMap::new();
    for replica in &replicas {
        for line in std::fs::read_to_string(&replica.log).unwrap().lines() {
            let line: Value = serde_json::from_str(line).unwrap();
            // Access-change records (one per applied reload) are not requests.
            let Some(request_id) = line["request_id"].as_str() else {
                continue;
            };
            decided.insert(request_id.to_string(), line["generation"].as_u64().unwrap());
        }
    }
    let (change_2_began, change_2_done) = changes[1];
    let (_, change_1_done) = changes[0];
    let mut missing = 0;
    for request in &sent {
        let answer = request.answer.as_ref().unwrap();
        let Some(&generation) = decided.get(&answer.request_id) else {
            // Decided by the killed replica, whose queued log lines died with it.
            missing += 1;
            continue;
        };
        // The answer is the one the deciding config gives.
        assert_eq!(
            answer.status == 200,
            allowed(request.token, generation),
            "{} answered {} by generation {generation}",
            request.token,
            answer.status
        );
        // Sent after change 1 had reached every replica: never version 1 again; sent during change 2: the
        // config before it (2) or the new one (3), never an older one.
        if request.at >= change_1_done {
            assert!(
                generation >= 2,
                "a request sent after change 1 converged was decided by version 1"
            );
        }
        if request.at >= change_2_began {
            assert!(
                matches!(generation, 2 | 3),
                "decided by generation {generation} during change 2"
            );
        }
        if request.at >= change_2_done {
            assert_eq!(
                generation, 3,
                "a request sent after change 2 converged was decided by an older version"
            );
        }
    }
    assert!(
        missing * 10 < sent.len(),
        "{missing} of {} answers have no decision-log line",
        sent.len()
    );
}
