//! Upstream connection reuse (SPEC §7 "pooled keep-alive connections"): an inbound keep-alive connection
//! keeps one upstream connection for its requests, an upstream that closes a connection between requests
//! costs the client nothing, and a quiet client's upstream connection is reused by the next client.
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
use std::time::Duration;

use bytes::Bytes;
use common::*;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// An upstream that counts the connections it accepts and the requests it answers; with `close_after_each`
/// it closes every connection right after its response (as an upstream whose keep-alive timeout is tiny).
struct CountingUpstream {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    requests: Arc<AtomicUsize>,
}

impl CountingUpstream {
    async fn start(close_after_each: bool) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(AtomicUsize::new(0));
        let (accepted, answered) = (Arc::clone(&connections), Arc::clone(&requests));
        tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    return;
                };
                accepted.fetch_add(1, Ordering::SeqCst);
                let answered = Arc::clone(&answered);
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buffer = [0u8; 4096];
                    loop {
                        // Heads only (the tests send GETs): answer each complete one.
                        while let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
                            head.drain(..end + 4);
                            answered.fetch_add(1, Ordering::SeqCst);
                            let body = r#"{"ok":true}"#;
                            let response = format!(
                                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                                body.len()
                            );
                            if stream.write_all(response.as_bytes()).await.is_err() {
                                return;
                            }
                            if close_after_each {
                                return;
                            }
                        }
                        match stream.read(&mut buffer).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buffer[..n]),
                        }
                    }
                });
            }
        });
        Self {
            addr,
            connections,
            requests,
        }
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

/// A keep-alive client connection to the gateway.
async fn client(gateway: SocketAddr) -> hyper::client::conn::http1::SendRequest<Empty<Bytes>> {
    let stream = TcpStream::connect(gateway).await.unwrap();
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(connection);
    sender
}

/// One authorized GET on `sender`; asserts the upstream's answer came back.
async fn get_records(sender: &mut hyper::client::conn::http1::SendRequest<Empty<Bytes>>) {
    sender.ready().await.unwrap();
    let request = http::Request::get(format!("/client/v4/zones/{ZONE}/dns_records"))
        .header("host", "gw.test")
        .header("authorization", bearer(TOKEN_READ))
        .body(Empty::new())
        .unwrap();
    let response = tokio::time::timeout(PATIENCE, sender.send_request(request))
        .await
        .expect("no response in time")
        .unwrap();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(&body[..], br#"{"ok":true}"#);
}

async fn gateway_in_front_of(upstream: &CountingUpstream) -> (Running, TestConfig) {
    let config = write_config(&Options::new(&format!("http://{}", upstream.addr)));
    (start_gateway(&config).await, config)
}

#[tokio::test]
async fn a_keep_alive_client_keeps_one_upstream_connection() {
    let upstream = CountingUpstream::start(false).await;
    let (gateway, _config) = gateway_in_front_of(&upstream).await;
    let mut sender = client(gateway.addr).await;
    for _ in 0..20 {
        get_records(&mut sender).await;
    }
    assert_eq!(upstream.requests(), 20);
    assert_eq!(
        upstream.connections(),
        1,
        "one upstream connection for all 20"
    );
    gateway.stop().await;
}

#[tokio::test]
async fn an_upstream_that_closes_between_requests_costs_the_client_nothing() {
    let upstream = CountingUpstream::start(true).await;
    let (gateway, _config) = gateway_in_front_of(&upstream).await;
    let mut sender = client(gateway.addr).await;
    for round in 1..=5 {
        get_records(&mut sender).await;
        // Let the close reach the gateway half the time; race it the other half.
        if round % 2 == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    assert_eq!(upstream.requests(), 5);
    assert_eq!(
        upstream.connections(),
        5,
        "a new upstream connection each time"
    );
    gateway.stop().await;
}

#[tokio::test]
async fn a_quiet_clients_upstream_connection_serves_the_next_client() {
    let upstream = CountingUpstream::start(false).await;
    let (gateway, _config) = gateway_in_front_of(&upstream).await;
    let mut first = client(gateway.addr).await;
    get_records(&mut first).await;
    // A connection goes back to the pool once its response is read; the next client takes it.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut second = client(gateway.addr).await;
    get_records(&mut second).await;
    // And the first client, back again, takes it (or a new one) without a failure.
    tokio::time::sleep(Duration::from_millis(300)).await;
    get_records(&mut first).await;
    assert_eq!(upstream.requests(), 3);
    assert_eq!(
        upstream.connections(),
        1,
        "the idle upstream connection was handed on"
    );
    gateway.stop().await;
}
