//! The demo's built-in upstream: answers every request with JSON echoing what it received (method, path
//! and query, and the identity headers the gateway set), in Cloudflare's success envelope.
//!
//! It stands in for the real API so `permgate demo` shows, on one machine, what the upstream learns
//! about an authorized call. It is not a general test server and never sees credentials (the gateway
//! strips them).

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;

use http::header::{CONTENT_TYPE, HeaderValue};
use http::{HeaderMap, Request, Response};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use serde::Serialize;
use tokio::net::TcpListener;

use super::body::{self, ProxyBody};

/// The headers echoed back: what the gateway tells an upstream about a request.
pub const ECHOED_HEADERS: &[&str] = &[
    "x-permgate-principal",
    "x-permgate-token-id",
    "x-permgate-account",
    "x-request-id",
    "x-forwarded-for",
];

#[derive(Serialize)]
struct Envelope<T> {
    success: bool,
    errors: Vec<()>,
    messages: Vec<()>,
    result: T,
}

#[derive(Serialize)]
struct Echo<'a> {
    method: &'a str,
    path: &'a str,
    headers: BTreeMap<&'static str, &'a str>,
}

/// The JSON body answered for a request.
pub fn echo_body(method: &str, path_and_query: &str, headers: &HeaderMap) -> String {
    let echoed = ECHOED_HEADERS
        .iter()
        .filter_map(|name| Some((*name, headers.get(*name)?.to_str().ok()?)))
        .collect();
    let envelope = Envelope {
        success: true,
        errors: Vec::new(),
        messages: Vec::new(),
        result: Echo {
            method,
            path: path_and_query,
            headers: echoed,
        },
    };
    // Serialising plain strings and maps of strings cannot fail; answer an empty object if it ever did.
    serde_json::to_string(&envelope).unwrap_or_else(|_| "{}".to_string())
}

fn respond(request: &Request<Incoming>) -> Response<ProxyBody> {
    let path = request.uri().path_and_query().map_or("/", |pq| pq.as_str());
    let body = echo_body(request.method().as_str(), path, request.headers());
    let mut response = Response::new(body::full(body));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// Serves the echo on `listener` until `shutdown` resolves.
pub async fn serve(listener: TcpListener, shutdown: impl Future<Output = ()>) {
    let builder = auto::Builder::new(TokioExecutor::new());
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    tracing::warn!(%error, "sample upstream: accept failed");
                    continue;
                }
            },
            () = &mut shutdown => return,
        };
        let builder = builder.clone();
        tokio::spawn(async move {
            let service = service_fn(|request: Request<Incoming>| async move {
                Ok::<_, Infallible>(respond(&request))
            });
            if let Err(error) = builder
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(%error, "sample upstream: connection error");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echoes_method_path_and_identity_headers_only() {
        let mut headers = HeaderMap::new();
        headers.insert("x-permgate-principal", "user:u1".parse().unwrap());
        headers.insert("x-request-id", "rid".parse().unwrap());
        headers.insert("cookie", "not echoed".parse().unwrap());
        let body = echo_body("GET", "/client/v4/zones?page=2", &headers);
        assert_eq!(
            body,
            r#"{"success":true,"errors":[],"messages":[],"result":{"method":"GET","path":"/client/v4/zones?page=2","headers":{"x-permgate-principal":"user:u1","x-request-id":"rid"}}}"#
        );
    }
}
