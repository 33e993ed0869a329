//! What a client can hold and break (SPEC §7 timeouts, §5 answers): idle HTTP/2 connections are closed after
//! `http2_idle_timeout_ms`, a request body must arrive within `request_body_timeout_ms`, and a body the client
//! breaks or abandons is the client's error (400/1204, 408/1203, `permgate_client_errors_total`), never an
//! upstream failure (`permgate_upstream_errors_total` and its alerts stay quiet).

use crate::common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use http::{Request, Version};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The value of one series in the gateway's own metrics text.
fn metric(gateway: &Running, series: &str) -> f64 {
    let text = gateway.gateway.metrics().render();
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or_else(|| panic!("no series {series} in:\n{text}"))
}

fn upstream_errors(gateway: &Running) -> f64 {
    ["connect", "exchange", "switch", "timeout"]
        .iter()
        .map(|kind| {
            metric(
                gateway,
                &format!("permgate_upstream_errors_total{{kind=\"{kind}\"}}"),
            )
        })
        .sum()
}

async fn h2c_connect(
    setup: &Setup,
) -> (
    hyper::client::conn::http2::SendRequest<Empty<Bytes>>,
    tokio::task::JoinHandle<Result<(), hyper::Error>>,
) {
    let tcp = TcpStream::connect(setup.addr()).await.unwrap();
    let (sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .unwrap();
    (sender, tokio::spawn(connection))
}

fn h2_get(path: &str) -> Request<Empty<Bytes>> {
    Request::builder()
        .version(Version::HTTP_2)
        .uri(format!("http://gw.test{path}"))
        .header("authorization", bearer(TOKEN_READ))
        .body(Empty::new())
        .unwrap()
}

/// An HTTP/2 connection whose streams are all done is closed (GOAWAY) once it has been idle for the
/// timeout; one whose stream lasts longer than the timeout is not cut while it lasts.
#[tokio::test]
async fn idle_http2_connections_are_closed_and_busy_ones_are_not() {
    let setup = setup(|options| options.extra = "http2_idle_timeout_ms: 300".into()).await;

    // Idle after one request: closed by the gateway.
    let (mut sender, connection) = h2c_connect(&setup).await;
    let response = sender.send_request(h2_get(&records_path())).await.unwrap();
    assert_eq!(response.status(), 200);
    response.into_body().collect().await.unwrap();
    let idle_from = Instant::now();
    let ended = tokio::time::timeout(PATIENCE, connection)
        .await
        .expect("an idle HTTP/2 connection was never closed");
    let idle = idle_from.elapsed();
    assert!(ended.unwrap().is_ok(), "closed with GOAWAY, not torn down");
    assert!(
        idle >= Duration::from_millis(250),
        "closed after {idle:?}, before the idle timeout"
    );
    eprintln!("idle HTTP/2 connection closed after {idle:?} (timeout 300 ms)");

    // A stream that takes 900 ms (the upstream's /slow) keeps the connection busy past the timeout.
    let (mut sender, connection) = h2c_connect(&setup).await;
    let started = Instant::now();
    let response = sender
        .send_request(h2_get(&format!("{}/slow?ms=900", records_path())))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(started.elapsed() >= Duration::from_millis(850));
    // And the connection still takes a new stream right after it.
    let again = sender.send_request(h2_get(&records_path())).await.unwrap();
    assert_eq!(again.status(), 200);
    drop(sender);
    let _ = tokio::time::timeout(PATIENCE, connection).await;
}

/// With no request at all, an HTTP/2 connection is cut at the header-read timeout as before (the idle
/// timer starts with the first stream).
#[tokio::test]
async fn an_http2_connection_without_a_request_is_cut_at_the_header_read_timeout() {
    let setup = setup(|options| {
        options.header_read_timeout_ms = 300;
        options.extra = "http2_idle_timeout_ms: 60000".into();
    })
    .await;
    let (_sender, connection) = h2c_connect(&setup).await;
    tokio::time::timeout(PATIENCE, connection)
        .await
        .expect("never closed")
        .ok();
}

/// A body that stalls is answered 408/1203 at `request_body_timeout_ms` and the connection closed; the
/// partial request reached the upstream (bodies stream) but nothing is blamed on it.
#[tokio::test]
async fn a_stalled_request_body_is_the_clients_timeout() {
    let setup = setup(|options| {
        options.extra = "request_body_timeout_ms: 400".into();
        // Longer than the body timeout, so the body timeout is what fires.
        options.response_timeout_ms = 5_000;
    })
    .await;
    let mut stream = TcpStream::connect(setup.addr()).await.unwrap();
    let head = format!(
        "POST {} HTTP/1.1\r\nHost: gw.test\r\nAuthorization: {}\r\nContent-Type: application/json\r\n\
         Content-Length: 40\r\n\r\n{{\"type\":",
        records_path(),
        bearer(TOKEN_WRITE)
    );
    let started = Instant::now();
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(PATIENCE, stream.read_to_end(&mut out))
        .await
        .expect("the gateway neither answered nor closed")
        .unwrap();
    let elapsed = started.elapsed();
    let response = parse_response(&out).expect("an answer");
    assert_eq!(
        (response.status, response.body.as_str()),
        (408, envelope(1203, "Request body timed out", None).as_str())
    );
    assert_eq!(response.header("connection"), Some("close"));
    assert!(
        elapsed >= Duration::from_millis(350) && elapsed < Duration::from_secs(4),
        "answered after {elapsed:?}"
    );
    assert_eq!(upstream_errors(&setup.gateway), 0.0);
    assert_eq!(
        metric(
            &setup.gateway,
            "permgate_client_errors_total{kind=\"body_timeout\"}"
        ),
        1.0
    );
    assert_eq!(
        metric(
            &setup.gateway,
            "permgate_requests_total{code=\"408\",decision=\"allow\",method=\"POST\",route=\"dns.create\"}"
        ),
        1.0
    );
}

/// A malformed chunk is answered 400/1204 and counted as the client's error, in several shapes: a size
/// that is not hexadecimal, a chunk longer than its size, a body cut short by the client's half-close.
#[tokio::test]
async fn a_broken_request_body_is_the_clients_error_not_an_upstream_failure() {
    let setup = setup(|_| {}).await;
    let head = format!(
        "POST {} HTTP/1.1\r\nHost: gw.test\r\nAuthorization: {}\r\nContent-Type: application/json\r\n",
        records_path(),
        bearer(TOKEN_WRITE)
    );
    let mut answered = 0;
    for (shape, body) in [
        (
            "non-hex chunk size",
            "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\nx\r\n0\r\n\r\n",
        ),
        (
            "chunk longer than its size",
            "Transfer-Encoding: chunked\r\n\r\n2\r\nhello\r\n0\r\n\r\n",
        ),
        (
            "chunk size overflow",
            "Transfer-Encoding: chunked\r\n\r\nfffffffffffffffff\r\nx\r\n0\r\n\r\n",
        ),
        (
            "body shorter than its length, then half-close",
            "Content-Length: 100\r\n\r\n{\"a\":1}",
        ),
    ] {
        let before = metric(
            &setup.gateway,
            "permgate_client_errors_total{kind=\"body_broken\"}",
        );
        let mut stream = TcpStream::connect(setup.addr()).await.unwrap();
        stream
            .write_all(format!("{head}{body}").as_bytes())
            .await
            .unwrap();
        stream.shutdown().await.unwrap();
        let mut out = Vec::new();
        let _ = tokio::time::timeout(PATIENCE, stream.read_to_end(&mut out))
            .await
            .expect("the gateway neither answered nor closed");
        // The answer may be lost when the client is gone; when there is one, it is the client's error.
        if let Some(response) = parse_response(&out) {
            assert_eq!(
                (response.status, response.code()),
                (400, Some(1204)),
                "{shape}: {}",
                response.body
            );
            answered += 1;
        }
        let deadline = Instant::now() + PATIENCE;
        while metric(
            &setup.gateway,
            "permgate_client_errors_total{kind=\"body_broken\"}",
        ) < before + 1.0
        {
            assert!(
                Instant::now() < deadline,
                "{shape}: not counted as a client error"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    assert!(answered >= 3, "only {answered} broken bodies were answered");
    assert_eq!(upstream_errors(&setup.gateway), 0.0);
}

/// A client that leaves mid-body (the whole connection closed, after the upstream got the request) raises
/// no upstream error either.
#[tokio::test]
async fn a_client_leaving_mid_body_is_not_an_upstream_failure() {
    let setup = setup(|_| {}).await;
    for _ in 0..5 {
        let mut stream = TcpStream::connect(setup.addr()).await.unwrap();
        let head = format!(
            "POST {} HTTP/1.1\r\nHost: gw.test\r\nAuthorization: {}\r\nContent-Length: 1000\r\n\r\n{}",
            records_path(),
            bearer(TOKEN_WRITE),
            "x".repeat(100)
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        setup.upstream.wait_for(1).await;
        drop(stream);
    }
    let deadline = Instant::now() + PATIENCE;
    while metric(
        &setup.gateway,
        "permgate_client_errors_total{kind=\"body_broken\"}",
    ) < 5.0
    {
        assert!(
            Instant::now() < deadline,
            "the leaving clients were not counted"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(upstream_errors(&setup.gateway), 0.0);
}
