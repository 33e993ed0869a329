//! Protocol upgrades against upstreams that switch when asked (SPEC §7, `src/proxy/upgrade.rs`).
//!
//! The red team's bypass: a request whose `Upgrade` listed `websocket` beside `h2c`, with `HTTP2-Settings`,
//! was authorized as a WebSocket handshake for one route, but every offer reached the upstream; an upstream
//! that switched to h2c then read, over the raw tunnel, any request the client liked. These tests put real
//! switching upstreams behind the gateway (raw TCP servers that answer `101` as told and record every byte
//! they receive), so what would cross a tunnel is seen, not inferred.

use crate::common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// How a switching upstream answers each request head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Switching {
    /// Switches to whatever the request offers, h2c first (as an h2c-capable server would), then websocket;
    /// a request without an offer gets `200`.
    Obliging,
    /// Answers every request `101` to h2c.
    AlwaysH2c,
    /// Answers every request `101` to websocket.
    AlwaysWebSocket,
}

/// A raw upstream that records every byte it receives, on every connection.
struct SwitchingUpstream {
    addr: SocketAddr,
    received: Arc<Mutex<Vec<u8>>>,
}

impl SwitchingUpstream {
    async fn start(mode: Switching) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let record = Arc::clone(&received);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, mode, Arc::clone(&record)));
            }
        });
        Self { addr, received }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn received(&self) -> String {
        String::from_utf8_lossy(&self.received.lock().unwrap()).to_string()
    }
}

/// One upstream connection: heads answered as `mode` says; after a `101`, every byte is recorded (the
/// tunnel's far end) and nothing is answered.
async fn serve(mut stream: TcpStream, mode: Switching, record: Arc<Mutex<Vec<u8>>>) {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    let mut switched = false;
    loop {
        let n = match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        record.lock().unwrap().extend_from_slice(&chunk[..n]);
        if switched {
            continue;
        }
        buffer.extend_from_slice(&chunk[..n]);
        let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&buffer[..end]).to_ascii_lowercase();
        buffer.drain(..end + 4);
        let upgrade: String = head
            .lines()
            .filter_map(|line| line.strip_prefix("upgrade:"))
            .collect::<Vec<_>>()
            .join(",");
        let to = match mode {
            Switching::AlwaysH2c => Some("h2c"),
            Switching::AlwaysWebSocket => Some("websocket"),
            Switching::Obliging if upgrade.contains("h2c") => Some("h2c"),
            Switching::Obliging if upgrade.contains("websocket") => Some("websocket"),
            Switching::Obliging => None,
        };
        let answer = match to {
            Some(protocol) => {
                switched = true;
                format!(
                    "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: {protocol}\r\n\r\n"
                )
            }
            None => "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok"
                .to_string(),
        };
        if stream.write_all(answer.as_bytes()).await.is_err() {
            return;
        }
    }
}

async fn gateway_before(upstream: &SwitchingUpstream) -> (Running, TestConfig) {
    let mut options = Options::new(&upstream.url());
    options.response_timeout_ms = 3_000;
    options.header_read_timeout_ms = 2_000;
    let config = write_config(&options);
    (start_gateway(&config).await, config)
}

/// What an h2c client sends once switched: the connection preface, then (as far as an unchecked upstream
/// is concerned) any request at all; the marker `smuggled-zone-2` stands for it.
const AFTER_SWITCH: &[u8] =
    b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\nsmuggled-zone-2 DELETE /client/v4/zones/zone-2";

/// Sends `head`, reads the gateway's answer, then sends [`AFTER_SWITCH`] on the same connection (ignoring a
/// write error: a closed connection is the point), and reads until the gateway closes. Returns the answer
/// and whether the connection was closed within the patience.
async fn offer_then_smuggle(addr: SocketAddr, head: &str) -> (RawResponse, bool) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let mut chunk = [0u8; 4096];
    let response = loop {
        let n = tokio::time::timeout(PATIENCE, stream.read(&mut chunk))
            .await
            .expect("no answer")
            .unwrap_or(0);
        assert!(
            n > 0,
            "closed before an answer: {:?}",
            String::from_utf8_lossy(&answer)
        );
        answer.extend_from_slice(&chunk[..n]);
        if let Some(response) = parse_response(&answer).filter(|response| {
            // A whole gateway envelope, or a head without a body.
            response.status == 101 || response.body.ends_with('}')
        }) {
            break response;
        }
    };
    let _ = stream.write_all(AFTER_SWITCH).await;
    let closed = tokio::time::timeout(Duration::from_secs(3), async {
        loop {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .is_ok();
    (response, closed)
}

fn websocket_head(upgrade_lines: &str, extra: &str) -> String {
    format!(
        "GET {}/ws HTTP/1.1\r\nHost: gw.test\r\nAuthorization: {}\r\n{upgrade_lines}\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n{extra}\r\n",
        records_path(),
        bearer(TOKEN_READ)
    )
}

/// The reported bypass and its whole class: `websocket` offered beside any other protocol, in one line or
/// several, in any order and case, with or without `HTTP2-Settings`. An obliging upstream would switch to
/// h2c if it ever saw the offer; it must see nothing, and the connection must be closed.
#[tokio::test]
async fn a_websocket_offer_beside_another_protocol_never_reaches_an_obliging_upstream() {
    let upstream = SwitchingUpstream::start(Switching::Obliging).await;
    let (gateway, _config) = gateway_before(&upstream).await;
    let settings = "HTTP2-Settings: AAMAAABkAAQAAP__\r\n";
    for (lines, extra) in [
        (
            "Connection: Upgrade, HTTP2-Settings\r\nUpgrade: websocket, h2c\r\n",
            settings,
        ),
        (
            "Connection: Upgrade, HTTP2-Settings\r\nUpgrade: websocket\r\nUpgrade: h2c\r\n",
            settings,
        ),
        (
            "Connection: Upgrade\r\nUpgrade: h2c, websocket\r\n",
            settings,
        ),
        ("Connection: upgrade\r\nUpgrade: WebSocket,H2C\r\n", ""),
        (
            "Connection: keep-alive\r\nConnection: Upgrade\r\nUpgrade: h2c\r\nUpgrade: websocket\r\n",
            "",
        ),
        ("Connection: Upgrade\r\nUpgrade: websocket, TLS/1.2\r\n", ""),
    ] {
        let (response, closed) =
            offer_then_smuggle(gateway.addr, &websocket_head(lines, extra)).await;
        assert_eq!(
            (response.status, response.code()),
            (400, Some(6003)),
            "{lines:?}"
        );
        assert!(
            response.body.contains("Upgrade must offer websocket alone"),
            "{}",
            response.body
        );
        assert!(closed, "the connection stayed open after {lines:?}");
    }
    let received = upstream.received();
    assert!(received.is_empty(), "the upstream received {received:?}");
}

/// An upstream that answers a WebSocket offer by switching to another protocol gets no tunnel: the client
/// gets 502/1200, its connection is closed, and nothing it sends afterwards reaches the upstream.
#[tokio::test]
async fn a_switch_to_another_protocol_than_websocket_is_never_tunnelled() {
    let upstream = SwitchingUpstream::start(Switching::AlwaysH2c).await;
    let (gateway, _config) = gateway_before(&upstream).await;
    let head = websocket_head("Connection: Upgrade\r\nUpgrade: websocket\r\n", "");
    let (response, closed) = offer_then_smuggle(gateway.addr, &head).await;
    assert_eq!((response.status, response.code()), (502, Some(1200)));
    assert!(closed, "the connection stayed open");
    let received = upstream.received();
    assert!(
        received.contains("upgrade: websocket"),
        "the authorized offer was forwarded: {received:?}"
    );
    assert!(
        !received.contains("smuggled-zone-2") && !received.contains("PRI *"),
        "bytes crossed a tunnel that must not exist: {received:?}"
    );
}

/// A `101` to a request that offered nothing (here a plain request, and an h2c offer the gateway ignored)
/// is not relayed either.
#[tokio::test]
async fn a_101_to_a_request_that_offered_no_websocket_is_never_tunnelled() {
    for (mode, offer) in [
        (Switching::AlwaysWebSocket, ""),
        (
            Switching::AlwaysH2c,
            "Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n",
        ),
    ] {
        let upstream = SwitchingUpstream::start(mode).await;
        let (gateway, _config) = gateway_before(&upstream).await;
        let head = format!(
            "GET {} HTTP/1.1\r\nHost: gw.test\r\nAuthorization: {}\r\n{offer}\r\n",
            records_path(),
            bearer(TOKEN_READ)
        );
        let (response, closed) = offer_then_smuggle(gateway.addr, &head).await;
        assert_eq!(
            (response.status, response.code()),
            (502, Some(1200)),
            "{mode:?}"
        );
        assert!(closed, "{mode:?}: the connection stayed open");
        let received = upstream.received();
        assert!(
            !received.contains("smuggled-zone-2"),
            "{mode:?}: bytes crossed a tunnel: {received:?}"
        );
    }
}

/// An h2c offer on a plain request (what `curl --http2` sends over `http://`) is served as plain HTTP/1.1:
/// the upstream sees neither `Upgrade` nor `HTTP2-Settings`, so even an h2c-capable upstream answers
/// plainly, and the client's connection stays usable.
#[tokio::test]
async fn an_h2c_offer_is_ignored_and_never_reaches_the_upstream() {
    let upstream = SwitchingUpstream::start(Switching::Obliging).await;
    let (gateway, _config) = gateway_before(&upstream).await;
    for offer in [
        "Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n",
        // `HTTP2-Settings` not named in `Connection`, and the `_` spelling: still never forwarded.
        "Connection: Upgrade\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\nHTTP2_Settings: AAMAAABkAAQAAP__\r\n",
        "Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n",
    ] {
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: gw.test\r\nAuthorization: {auth}\r\n{offer}\r\n\
             GET {path} HTTP/1.1\r\nHost: gw.test\r\nAuthorization: {auth}\r\nConnection: close\r\n\r\n",
            path = records_path(),
            auth = bearer(TOKEN_READ)
        );
        let out = send_until_closed(gateway.addr, request.as_bytes(), PATIENCE).await;
        let text = String::from_utf8_lossy(&out);
        assert_eq!(
            text.matches("HTTP/1.1 200 OK").count(),
            2,
            "both requests answered on one connection: {text:?}"
        );
    }
    let received = upstream.received().to_ascii_lowercase();
    assert_eq!(
        received
            .matches("get /client/v4/zones/zone-1/dns_records")
            .count(),
        6
    );
    for leaked in ["upgrade", "http2-settings", "http2_settings", "h2c"] {
        assert!(
            !received.contains(leaked),
            "the upstream saw {leaked}: {received:?}"
        );
    }
}

/// The authorized WebSocket handshake reaches the upstream exactly as `Upgrade: websocket`, whatever spelling
/// the client used, and the tunnel works both ways.
#[tokio::test]
async fn a_websocket_offer_is_forwarded_exactly_and_tunnelled() {
    let upstream = SwitchingUpstream::start(Switching::Obliging).await;
    let (gateway, _config) = gateway_before(&upstream).await;
    let head = websocket_head(
        "Connection: keep-alive, Upgrade\r\nUpgrade: WebSocket\r\n",
        "",
    );
    let mut stream = TcpStream::connect(gateway.addr).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let mut byte = [0u8; 1];
    while !answer.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(PATIENCE, stream.read(&mut byte))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(n, 1, "closed before the 101");
        answer.push(byte[0]);
    }
    let answer = String::from_utf8_lossy(&answer).to_ascii_lowercase();
    assert!(answer.starts_with("http/1.1 101"), "{answer}");
    assert!(answer.contains("upgrade: websocket\r\n"), "{answer}");
    stream.write_all(b"frame bytes").await.unwrap();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !upstream.received().contains("frame bytes") {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the tunnel carried nothing"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let received = upstream.received().to_ascii_lowercase();
    let head = received.split("\r\n\r\n").next().unwrap();
    let upgrades: Vec<&str> = head
        .lines()
        .filter(|line| line.starts_with("upgrade:"))
        .collect();
    assert_eq!(upgrades, ["upgrade: websocket"], "{head}");
    assert!(head.contains("connection: upgrade"), "{head}");
    assert!(
        head.contains("sec-websocket-key: dghlihnhbxbszsbub25jzq=="),
        "{head}"
    );
}
