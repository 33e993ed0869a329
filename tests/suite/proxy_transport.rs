//! The transport side of the proxy: TLS with ALPN (HTTP/1.1 and HTTP/2), h2c, slow clients, graceful
//! shutdown and WebSocket pass-through.

use crate::common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use http::{Request, Version};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use permgate::proxy::Drain;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A gateway with inbound TLS from an rcgen certificate for `localhost`; returns the client config roots.
async fn tls_setup() -> (Setup, rustls::RootCertStore) {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let upstream = start_upstream().await;
    let mut options = Options::new(&upstream.url());
    options.extra = "tls: { cert_file: cert.pem, key_file: key.pem }".into();
    let config = write_config(&options);
    std::fs::write(config.dir.path().join("cert.pem"), certified.cert.pem()).unwrap();
    std::fs::write(
        config.dir.path().join("key.pem"),
        certified.signing_key.serialize_pem(),
    )
    .unwrap();
    let gateway = start_gateway(&config).await;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(certified.cert.der().clone()).unwrap();
    (
        Setup {
            upstream,
            gateway,
            config,
        },
        roots,
    )
}

async fn tls_connect(
    setup: &Setup,
    roots: &rustls::RootCertStore,
    alpn: &[u8],
) -> tokio_rustls::client::TlsStream<TcpStream> {
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots.clone())
    .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(setup.addr()).await.unwrap();
    let tls = connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(alpn));
    tls
}

fn get_records(uri: &str) -> Request<Empty<Bytes>> {
    Request::builder()
        .uri(uri)
        .header("authorization", bearer(TOKEN_READ))
        .body(Empty::new())
        .unwrap()
}

#[tokio::test]
async fn tls_serves_http1_and_http2_by_alpn() {
    let (setup, roots) = tls_setup().await;

    // HTTP/1.1 over TLS.
    let tls = tls_connect(&setup, &roots, b"http/1.1").await;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(connection);
    let mut request = get_records(&records_path());
    request
        .headers_mut()
        .insert("host", "localhost".parse().unwrap());
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.version(), Version::HTTP_11);
    assert!(response.headers().contains_key("x-request-id"));

    // HTTP/2 over TLS.
    let tls = tls_connect(&setup, &roots, b"h2").await;
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(connection);
    let response = sender
        .send_request(get_records(&format!(
            "https://localhost{}?via=h2",
            records_path()
        )))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.version(), Version::HTTP_2);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], br#"{"ok":true}"#);
    // A refusal over HTTP/2 is the same envelope.
    let refused = sender
        .send_request(
            Request::builder()
                .uri("https://localhost/client/v4/no/such/route")
                .body(Empty::new())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(refused.status(), 400);

    let requests = setup.upstream.wait_for(2).await;
    assert_eq!(requests[0].header("x-forwarded-proto"), Some("https"));
    assert_eq!(requests[1].target, format!("{}?via=h2", records_path()));
    assert_eq!(requests[1].header("x-forwarded-host"), Some("localhost"));
    assert_eq!(
        requests[1].header("x-permgate-principal"),
        Some("user:user-joe")
    );
    assert_eq!(
        requests[1].version,
        Version::HTTP_11,
        "the upstream is spoken to in HTTP/1.1"
    );
}

#[tokio::test]
async fn h2c_prior_knowledge_works_in_plain_text() {
    let setup = setup(|_| {}).await;
    let tcp = TcpStream::connect(setup.addr()).await.unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .unwrap();
    tokio::spawn(connection);
    let response = sender
        .send_request(get_records(&format!("http://gw.test{}", records_path())))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.version(), Version::HTTP_2);
    // An HTTP/2 :path is canonicalised like an HTTP/1.1 target.
    let rejected = sender
        .send_request(get_records(&format!(
            "http://gw.test{}/%2e%2e",
            records_path()
        )))
        .await
        .unwrap();
    assert_eq!(rejected.status(), 400);
    assert_eq!(setup.upstream.requests().len(), 1);
}

/// Reads until the server closes the connection; returns what it sent and how long it took.
async fn read_until_closed(stream: &mut TcpStream) -> (Vec<u8>, Duration) {
    let started = Instant::now();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(PATIENCE, stream.read_to_end(&mut out))
        .await
        .expect("the gateway never closed the slow connection");
    (out, started.elapsed())
}

#[tokio::test]
async fn slow_clients_are_cut_by_the_header_read_timeout() {
    let setup = setup(|options| options.header_read_timeout_ms = 400).await;

    // Headers started but never finished.
    let mut partial = TcpStream::connect(setup.addr()).await.unwrap();
    partial
        .write_all(b"GET /client/v4/ips HTTP/1.1\r\nHost: gw.test\r\nX-Slow: ")
        .await
        .unwrap();
    let (_, elapsed) = read_until_closed(&mut partial).await;
    assert!(
        elapsed < Duration::from_millis(400) + Duration::from_secs(3),
        "took {elapsed:?}"
    );

    // Nothing sent at all (before protocol detection).
    let mut silent = TcpStream::connect(setup.addr()).await.unwrap();
    let (out, elapsed) = read_until_closed(&mut silent).await;
    assert!(out.is_empty() || out.starts_with(b"HTTP/1.1 408"));
    assert!(
        elapsed < Duration::from_millis(400) + Duration::from_secs(3),
        "took {elapsed:?}"
    );

    // A client that does send its request in time is served.
    let response = send(setup.addr(), "GET", "/client/v4/ips", &[]).await;
    assert_eq!(response.status, 200);
    assert!(setup.upstream.requests().len() == 1);
}

#[tokio::test]
async fn graceful_shutdown_finishes_the_in_flight_request() {
    let mut setup = setup(|_| {}).await;
    let addr = setup.addr();
    let target = format!("{}/slow?ms=1500", records_path());
    let in_flight = tokio::spawn(async move {
        send(
            addr,
            "GET",
            &target,
            &[("Authorization", &bearer(TOKEN_READ))],
        )
        .await
    });
    // The request is at the upstream: now shut down.
    setup.upstream.wait_for(1).await;
    setup.gateway.begin_shutdown();

    let response = tokio::time::timeout(PATIENCE, in_flight)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(response.status, 200, "{}", response.body);
    assert_eq!(response.body, r#"{"ok":true}"#);
    let Setup { gateway, .. } = setup;
    let drain = tokio::time::timeout(PATIENCE, gateway.wait())
        .await
        .unwrap();
    assert_eq!(drain, Drain::Complete);
    // The listener is closed: no new connections.
    assert!(TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
async fn shutdown_grace_bounds_the_drain() {
    let mut setup = setup(|options| options.shutdown_grace_ms = 300).await;
    let addr = setup.addr();
    let target = format!("{}/slow?ms=10000", records_path());
    let _in_flight = tokio::spawn(async move {
        raw_exchange(
            addr,
            &request_bytes(
                "GET",
                &target,
                &[("Authorization", &bearer(TOKEN_READ))],
                "",
            ),
        )
        .await
    });
    setup.upstream.wait_for(1).await;
    let started = Instant::now();
    setup.gateway.begin_shutdown();
    let Setup { gateway, .. } = setup;
    let drain = tokio::time::timeout(PATIENCE, gateway.wait())
        .await
        .unwrap();
    assert!(matches!(drain, Drain::GraceElapsed { .. }), "{drain:?}");
    assert!(started.elapsed() < Duration::from_millis(300) + Duration::from_secs(2));
}

#[tokio::test]
async fn websocket_upgrades_pass_through_after_authorization() {
    let setup = setup(|_| {}).await;
    let target = format!("{}/ws", records_path());
    let handshake = format!(
        "GET {target} HTTP/1.1\r\nHost: gw.test\r\nAuthorization: {}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
        bearer(TOKEN_READ)
    );
    let mut stream = TcpStream::connect(setup.addr()).await.unwrap();
    stream.write_all(handshake.as_bytes()).await.unwrap();
    // Read the 101 head.
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(PATIENCE, stream.read(&mut byte))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            n,
            1,
            "closed before the 101: {:?}",
            String::from_utf8_lossy(&head)
        );
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(head.contains("upgrade: websocket"), "{head}");
    assert!(head.contains("x-request-id"), "{head}");

    // Bytes go through both ways.
    for message in [&b"hello through the gateway"[..], b"\x81\x05again"] {
        stream.write_all(message).await.unwrap();
        let mut echoed = vec![0u8; message.len()];
        tokio::time::timeout(PATIENCE, stream.read_exact(&mut echoed))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(echoed, message);
    }
    let seen = setup.upstream.only_request();
    assert_eq!(seen.header("upgrade"), Some("websocket"));
    assert_eq!(seen.header("x-permgate-principal"), Some("user:user-joe"));
    assert_eq!(seen.header("authorization"), None);

    // An unauthorized upgrade is refused like any request and never reaches the upstream.
    let refused = send(
        setup.addr(),
        "GET",
        &format!("/client/v4/zones/{OTHER_ZONE}/dns_records/ws"),
        &[
            ("Authorization", &bearer(TOKEN_READ)),
            ("Upgrade", "websocket"),
        ],
    )
    .await;
    assert_eq!((refused.status, refused.code()), (403, Some(10000)));
    assert_eq!(setup.upstream.requests().len(), 1);
}
