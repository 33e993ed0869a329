//! Faults: an upstream that refuses, resets (before the response and mid-body), hangs, sends garbage or a
//! huge header; a client that disconnects mid-request and mid-response; slow-loris; thousands of
//! concurrent connections. Each ends in the documented answer (SPEC §5: 502/1200, 504/1201, 503/1202, or
//! the connection closed) and leaks nothing: the process's open file descriptors (/proc/self/fd; the
//! gateway runs in this process) and the runtime's alive tasks return to their baseline, polled with a
//! deadline. The tests of this file run one at a time (they count process-wide descriptors).
// Test code: a failed unwrap is a failed test (tests/ is exempt from the no-panic rule).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

/// The tests of this file count process-wide resources: one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Descriptors a settled process may hold above its baseline (runtime internals, a pooled connection).
const FD_TOLERANCE: usize = 6;
const TASK_TOLERANCE: usize = 4;

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

fn alive_tasks() -> usize {
    tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks()
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.split_whitespace().next())
        .and_then(|value| value.parse().ok())
        .unwrap_or(0)
}

/// The soft limit on open files (`Max open files` in /proc/self/limits).
fn fd_limit() -> usize {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap();
    limits
        .lines()
        .find(|line| line.starts_with("Max open files"))
        .and_then(|line| line.split_whitespace().nth(3))
        .and_then(|value| value.parse().ok())
        .unwrap_or(1024)
}

#[derive(Debug, Clone, Copy)]
struct Baseline {
    fds: usize,
    tasks: usize,
}

fn baseline() -> Baseline {
    Baseline {
        fds: open_fds(),
        tasks: alive_tasks(),
    }
}

/// Polls until descriptors and tasks are back within tolerance of `base` (10 s deadline); returns the
/// settled counts and how long it took.
async fn settle(base: Baseline, label: &str) -> (usize, usize, Duration) {
    let started = Instant::now();
    let deadline = started + Duration::from_secs(10);
    loop {
        let (fds, tasks) = (open_fds(), alive_tasks());
        if fds <= base.fds + FD_TOLERANCE && tasks <= base.tasks + TASK_TOLERANCE {
            return (fds, tasks, started.elapsed());
        }
        assert!(
            Instant::now() < deadline,
            "{label}: leaked: {fds} fds (baseline {}), {tasks} tasks (baseline {})",
            base.fds,
            base.tasks
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// The gateway config for fault tests: short timeouts, and a short pool idle timeout so that pooled
/// upstream connections close by themselves and the descriptor count can return to its baseline.
fn fault_config(upstream_url: &str, adjust: impl FnOnce(&mut Options)) -> TestConfig {
    let mut options = Options::new(upstream_url);
    options.connect_timeout_ms = 500;
    options.response_timeout_ms = 400;
    options.header_read_timeout_ms = 500;
    adjust(&mut options);
    let config = write_config(&options);
    let gateway = std::fs::read_to_string(&config.gateway_path).unwrap();
    let gateway = gateway.replacen(
        "  response_timeout_ms:",
        "  pool_idle_timeout_ms: 200\n  response_timeout_ms:",
        1,
    );
    std::fs::write(&config.gateway_path, gateway).unwrap();
    config
}

fn records_get() -> Vec<u8> {
    request_bytes(
        "GET",
        &records_path(),
        &[("Authorization", &bearer(TOKEN_READ))],
        "",
    )
}

// ---- misbehaving upstreams ------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// Reads the request head, then resets the connection (RST) without answering.
    ResetBeforeResponse,
    /// Answers a 200 head promising 100,000 bytes, sends 1,000, then resets.
    ResetMidBody,
    /// Reads the request and never answers (until the gateway hangs up).
    Hang,
    /// Answers bytes that are not HTTP.
    Garbage,
    /// Answers a head with a 2 MiB header.
    HugeHeader,
    /// Answers a chunked 200 and drips a chunk every 10 ms until the gateway stops reading.
    Drip,
}

struct FaultUpstream {
    addr: SocketAddr,
    /// Connections whose handler has finished (the gateway hung up, or the fault completed).
    finished: Arc<AtomicUsize>,
    done: Arc<Notify>,
    task: tokio::task::JoinHandle<()>,
}

impl FaultUpstream {
    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Waits until `count` connection handlers have finished.
    async fn wait_finished(&self, count: usize) {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let notified = self.done.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.finished.load(Ordering::SeqCst) >= count {
                return;
            }
            assert!(
                tokio::time::timeout_at(deadline, notified).await.is_ok(),
                "the gateway never let go of the upstream connection"
            );
        }
    }
}

impl Drop for FaultUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn read_head(stream: &mut TcpStream) {
    let mut head = Vec::new();
    let mut buffer = [0u8; 4096];
    while !head.windows(4).any(|window| window == b"\r\n\r\n") {
        match stream.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buffer[..n]),
        }
    }
}

async fn drain_until_closed(stream: &mut TcpStream) {
    let mut buffer = [0u8; 4096];
    while let Ok(n) = stream.read(&mut buffer).await {
        if n == 0 {
            break;
        }
    }
}

async fn fault_upstream(fault: Fault) -> FaultUpstream {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let finished = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(Notify::new());
    let (finished_in, done_in) = (Arc::clone(&finished), Arc::clone(&done));
    let task = tokio::spawn(async move {
        let mut handlers = tokio::task::JoinSet::new();
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let Ok((mut stream, _)) = accepted else { continue };
                    let (finished, done) = (Arc::clone(&finished_in), Arc::clone(&done_in));
                    handlers.spawn(async move {
                        read_head(&mut stream).await;
                        match fault {
                            Fault::ResetBeforeResponse => {
                                let _ = stream.set_zero_linger();
                            }
                            Fault::ResetMidBody => {
                                let _ = stream
                                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n")
                                    .await;
                                let _ = stream.write_all(&[b'x'; 1000]).await;
                                let _ = stream.flush().await;
                                let _ = stream.set_zero_linger();
                            }
                            Fault::Hang => drain_until_closed(&mut stream).await,
                            Fault::Garbage => {
                                let _ = stream.write_all(b"SSH-2.0-OpenSSH_9.6\r\nnot http\r\n\r\n").await;
                                drain_until_closed(&mut stream).await;
                            }
                            Fault::HugeHeader => {
                                let mut head = b"HTTP/1.1 200 OK\r\nX-Big: ".to_vec();
                                head.extend(std::iter::repeat_n(b'a', 2 << 20));
                                head.extend_from_slice(b"\r\nContent-Length: 0\r\n\r\n");
                                let _ = stream.write_all(&head).await;
                                drain_until_closed(&mut stream).await;
                            }
                            Fault::Drip => {
                                let _ = stream
                                    .write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
                                    .await;
                                loop {
                                    if stream.write_all(b"5\r\nhello\r\n").await.is_err() {
                                        break;
                                    }
                                    tokio::time::sleep(Duration::from_millis(10)).await;
                                }
                            }
                        }
                        drop(stream);
                        finished.fetch_add(1, Ordering::SeqCst);
                        done.notify_waiters();
                    });
                }
                Some(_) = handlers.join_next() => {}
            }
        }
    });
    FaultUpstream {
        addr,
        finished,
        done,
        task,
    }
}

/// Sends `bytes` and reads the whole answer; `None` when the connection closed without a response.
async fn answer(addr: SocketAddr, bytes: &[u8]) -> (Option<RawResponse>, usize, Duration) {
    let started = Instant::now();
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let _ = stream.write_all(bytes).await;
    let mut out = Vec::new();
    let read = tokio::time::timeout(PATIENCE, async {
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
    (parse_response(&out), out.len(), started.elapsed())
}

/// Each upstream fault, several times over: the documented answer, promptly, and nothing leaked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_faults_end_in_the_documented_answer_without_leaks() {
    let _serial = SERIAL.lock().await;
    let mut figures = Vec::new();
    for (fault, expected) in [
        (None, Some((502, 1200))),
        (Some(Fault::ResetBeforeResponse), Some((502, 1200))),
        (Some(Fault::ResetMidBody), None),
        (Some(Fault::Hang), Some((504, 1201))),
        (Some(Fault::Garbage), Some((502, 1200))),
        (Some(Fault::HugeHeader), Some((502, 1200))),
    ] {
        let upstream = match fault {
            Some(fault) => Some(fault_upstream(fault).await),
            None => None,
        };
        let url = match &upstream {
            Some(upstream) => upstream.url(),
            None => format!("http://{}", closed_port().await),
        };
        let config = fault_config(&url, |_| {});
        let gateway = start_gateway(&config).await;
        let base = baseline();
        const ROUNDS: usize = 10;
        for round in 0..ROUNDS {
            let (response, bytes, took) = answer(gateway.addr, &records_get()).await;
            let label = format!("{fault:?} round {round}");
            match expected {
                Some((status, code)) => {
                    let response = response.unwrap_or_else(|| panic!("{label}: no answer"));
                    assert_eq!(
                        (response.status, response.code()),
                        (status, Some(code)),
                        "{label}: {}",
                        response.body
                    );
                    assert!(response.header("x-request-id").is_some(), "{label}");
                }
                None => {
                    // Mid-body: the 200 head is already on its way; the only honest signal left is to
                    // close the connection before the promised length.
                    let response = response.unwrap_or_else(|| panic!("{label}: no head"));
                    assert_eq!(response.status, 200, "{label}");
                    assert!(bytes < 100_000, "{label}: {bytes} bytes");
                }
            }
            assert!(took < Duration::from_secs(3), "{label}: took {took:?}");
        }
        if let Some(upstream) = &upstream {
            // The gateway hung up on every upstream connection it opened (hang, garbage, huge header).
            upstream.wait_finished(ROUNDS).await;
        }
        let (fds, tasks, settled) = settle(base, &format!("{fault:?}")).await;
        figures.push(format!(
            "{fault:?}: fds {} -> {fds}, tasks {} -> {tasks}, settled in {settled:?}",
            base.fds, base.tasks
        ));
        gateway.stop().await;
    }
    eprintln!("upstream faults:\n{}", figures.join("\n"));
}

/// A client that goes away mid-request (body promised, not sent) and mid-response (an endless body):
/// the gateway drops the upstream exchange and leaks nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_disconnects_release_everything() {
    let _serial = SERIAL.lock().await;
    // Mid-request: the upstream records the head, the body never completes, the client leaves.
    let upstream = start_upstream().await;
    let config = fault_config(&upstream.url(), |options| {
        options.response_timeout_ms = 5_000
    });
    let gateway = start_gateway(&config).await;
    let base = baseline();
    for round in 0..10 {
        let mut stream = TcpStream::connect(gateway.addr).await.unwrap();
        let head = format!(
            "POST {} HTTP/1.1\r\nHost: gw.test\r\nAuthorization: Bearer {TOKEN_WRITE}\r\nContent-Length: 100000\r\n\r\n",
            records_path()
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        stream.write_all(&[b'{'; 100]).await.unwrap();
        upstream.wait_for(round + 1).await;
        drop(stream);
    }
    let (fds, tasks, settled) = settle(base, "mid-request").await;
    eprintln!(
        "client gone mid-request: fds {} -> {fds}, tasks {} -> {tasks}, settled in {settled:?}",
        base.fds, base.tasks
    );
    gateway.stop().await;

    // Mid-response: the upstream drips forever; once the client leaves, the gateway must stop reading
    // and close the upstream connection (the upstream's next write fails).
    let drip = fault_upstream(Fault::Drip).await;
    let config = fault_config(&drip.url(), |_| {});
    let gateway = start_gateway(&config).await;
    let base = baseline();
    for round in 0..10 {
        let mut stream = TcpStream::connect(gateway.addr).await.unwrap();
        stream.write_all(&records_get()).await.unwrap();
        let mut buffer = [0u8; 1024];
        let n = tokio::time::timeout(PATIENCE, stream.read(&mut buffer))
            .await
            .unwrap()
            .unwrap();
        assert!(
            String::from_utf8_lossy(&buffer[..n]).starts_with("HTTP/1.1 200"),
            "round {round}"
        );
        drop(stream);
        drip.wait_finished(round + 1).await;
    }
    let (fds, tasks, settled) = settle(base, "mid-response").await;
    eprintln!(
        "client gone mid-response: fds {} -> {fds}, tasks {} -> {tasks}, settled in {settled:?}",
        base.fds, base.tasks
    );
    gateway.stop().await;
}

/// Slow-loris: a head dribbled one byte at a time, and a connection that never sends a byte, are both
/// closed at the header-read timeout (500 ms here) without an upstream request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_loris_is_cut_at_the_header_read_timeout() {
    let _serial = SERIAL.lock().await;
    let upstream = start_upstream().await;
    let config = fault_config(&upstream.url(), |_| {});
    let gateway = start_gateway(&config).await;
    let base = baseline();
    let mut clients = tokio::task::JoinSet::new();
    for index in 0..50 {
        let addr = gateway.addr;
        clients.spawn(async move {
            let started = Instant::now();
            let mut stream = TcpStream::connect(addr).await.unwrap();
            if index % 2 == 0 {
                // Dribble: one byte every 50 ms, forever (the head never ends).
                let head =
                    b"GET /client/v4/ips HTTP/1.1\r\nHost: gw.test\r\nX-Slow: aaaaaaaaaaaaaaaa";
                for byte in head.iter().cycle() {
                    if stream.write_all(&[*byte]).await.is_err() {
                        break;
                    }
                    let mut probe = [0u8; 1024];
                    let read =
                        tokio::time::timeout(Duration::from_millis(50), stream.read(&mut probe));
                    if let Ok(Ok(0) | Err(_)) = read.await {
                        break;
                    }
                    assert!(
                        started.elapsed() < Duration::from_secs(5),
                        "a slow-loris client was never cut"
                    );
                }
            } else {
                let mut probe = [0u8; 1024];
                let _ = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut probe)).await;
            }
            started.elapsed()
        });
    }
    let mut longest = Duration::ZERO;
    while let Some(took) = clients.join_next().await {
        longest = longest.max(took.unwrap());
    }
    assert!(
        longest < Duration::from_secs(3),
        "slowest cut after {longest:?}"
    );
    assert!(upstream.requests().is_empty());
    let (fds, tasks, settled) = settle(base, "slow-loris").await;
    eprintln!(
        "slow-loris x50: cut within {longest:?}; fds {} -> {fds}, tasks {} -> {tasks}, settled in {settled:?}",
        base.fds, base.tasks
    );
    gateway.stop().await;
}

/// Thousands of concurrent keep-alive connections, each answered twice while all are open; then closed.
/// 2,000 by default; `PERMGATE_FAULT_CONNECTIONS` asks for more, capped by what fits under the soft
/// descriptor limit (each connection costs two descriptors in this process, plus pooled upstream ones).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_concurrent_connections_are_served_and_released() {
    let _serial = SERIAL.lock().await;
    let upstream = start_upstream().await;
    let limit = fd_limit();
    // Two descriptors per connection in this process, plus pooled upstream connections and slack.
    let fits = (limit.saturating_sub(open_fds() + 2_000) * 2 / 5).min(10_000);
    // 2,000 by default (a few seconds in a debug build); `PERMGATE_FAULT_CONNECTIONS=10000` for the full
    // run (it needs `ulimit -n` of about 27,000).
    let wanted = std::env::var("PERMGATE_FAULT_CONNECTIONS")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(2_000);
    let count = wanted.min(fits);
    assert!(
        count >= 1_000,
        "fd limit {limit} too low for this test (raise `ulimit -n`)"
    );
    let config = fault_config(&upstream.url(), |options| {
        options.max_connections = count + 100;
        options.header_read_timeout_ms = 20_000;
        options.response_timeout_ms = 5_000;
    });
    let gateway = start_gateway(&config).await;
    let base = baseline();
    let rss_before = rss_kib();
    let started = Instant::now();
    let addr = gateway.addr;
    let request = b"GET /client/v4/ips HTTP/1.1\r\nHost: gw.test\r\n\r\n";
    // Open every connection and complete one exchange on each (at most 256 opening at a time).
    let gate = Arc::new(tokio::sync::Semaphore::new(256));
    let mut opening = tokio::task::JoinSet::new();
    for _ in 0..count {
        let gate = Arc::clone(&gate);
        opening.spawn(async move {
            let _permit = gate.acquire_owned().await.unwrap();
            let mut stream = TcpStream::connect(addr).await.unwrap();
            exchange_keep_alive(&mut stream, request).await;
            stream
        });
    }
    let mut streams = Vec::with_capacity(count);
    while let Some(stream) = opening.join_next().await {
        streams.push(stream.unwrap());
    }
    let open_at_peak = open_fds();
    let all_open = started.elapsed();
    // All are open at once: a second exchange on every one of them.
    let mut second = tokio::task::JoinSet::new();
    for mut stream in streams {
        let gate = Arc::clone(&gate);
        second.spawn(async move {
            let _permit = gate.acquire_owned().await.unwrap();
            exchange_keep_alive(&mut stream, request).await;
            stream
        });
    }
    let mut streams = Vec::with_capacity(count);
    while let Some(stream) = second.join_next().await {
        streams.push(stream.unwrap());
    }
    assert_eq!(upstream.requests().len(), 2 * count);
    let rss_peak = rss_kib();
    drop(streams);
    let (fds, tasks, settled) = settle(base, "concurrent connections").await;
    eprintln!(
        "{count} concurrent connections (fd limit {limit}): all open after {all_open:?}, {} requests in {:?}; \
         fds {} -> {open_at_peak} at peak -> {fds}, tasks {} -> {tasks}, settled in {settled:?}; \
         RSS {rss_before} KiB -> {rss_peak} KiB at peak -> {} KiB",
        2 * count,
        started.elapsed(),
        base.fds,
        base.tasks,
        rss_kib()
    );
    gateway.stop().await;
}

/// One request on a keep-alive connection; asserts a `200` and reads exactly its body.
async fn exchange_keep_alive(stream: &mut TcpStream, request: &[u8]) {
    stream.write_all(request).await.unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(PATIENCE, stream.read(&mut byte))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(n, 1, "closed mid-head");
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_string();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let length: usize = head
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        .expect("content-length");
    let mut body = vec![0u8; length];
    tokio::time::timeout(PATIENCE, stream.read_exact(&mut body))
        .await
        .unwrap()
        .unwrap();
}
