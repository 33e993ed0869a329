//! The load test's hyper floor: a reverse proxy with no authorization and no header hygiene, built from the
//! same hyper 1 / hyper-util / tokio as permgate, so `run.sh` can tell what the HTTP stack itself costs per
//! request apart from what permgate adds.
//!
//! `cargo run --release --example bare_proxy -- LISTEN UPSTREAM_ADDR [legacy|conn] [multi|current]`
//! - `legacy`: hyper-util's pooled legacy `Client` (what permgate used before); `conn`: one
//!   `hyper::client::conn::http1` upstream connection per inbound connection, driven in the same task.

#![allow(clippy::expect_used, clippy::unwrap_used)] // a load-test tool: a broken setup should stop loudly

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use http::{Request, Uri};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::{TcpListener, TcpStream};

fn main() {
    let mut args = std::env::args().skip(1);
    let listen: SocketAddr = args
        .next()
        .expect("listen")
        .parse()
        .expect("listen address");
    let upstream: SocketAddr = args
        .next()
        .expect("upstream")
        .parse()
        .expect("upstream address");
    let mode = args.next().unwrap_or_else(|| "legacy".into());
    let flavour = args.next().unwrap_or_else(|| "multi".into());
    let runtime = if flavour == "current" {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
    }
    .expect("runtime");
    runtime.block_on(async move {
        let listener = TcpListener::bind(listen).await.expect("bind");
        let client: Client<HttpConnector, Incoming> =
            Client::builder(TokioExecutor::new()).build(HttpConnector::new());
        let base: Arc<str> = format!("http://{upstream}").into();
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            if mode == "conn" {
                tokio::spawn(per_connection(stream, upstream));
            } else {
                let client = client.clone();
                let base = Arc::clone(&base);
                tokio::spawn(async move {
                    let service = service_fn(move |request: Request<Incoming>| {
                        let client = client.clone();
                        let base = Arc::clone(&base);
                        async move {
                            let (mut parts, body) = request.into_parts();
                            let pq = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
                            parts.uri = format!("{base}{pq}").parse::<Uri>().expect("uri");
                            let response = client.request(Request::from_parts(parts, body)).await;
                            Ok::<_, Infallible>(response.expect("upstream"))
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        }
    });
}

/// One upstream connection for this inbound connection, its I/O driven by the same task.
async fn per_connection(stream: TcpStream, upstream: SocketAddr) {
    let out = TcpStream::connect(upstream)
        .await
        .expect("connect upstream");
    let _ = out.set_nodelay(true);
    let (sender, conn) = hyper::client::conn::http1::handshake::<_, Incoming>(TokioIo::new(out))
        .await
        .expect("handshake");
    let sender = Arc::new(tokio::sync::Mutex::new(sender));
    let service = service_fn(move |request: Request<Incoming>| {
        let sender = Arc::clone(&sender);
        async move {
            let mut sender = sender.lock().await;
            sender.ready().await.expect("ready");
            let response = sender.send_request(request).await.expect("upstream");
            Ok::<_, Infallible>(response)
        }
    });
    let server =
        hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service);
    tokio::select! {
        _ = server => {}
        _ = conn => {}
    }
}
