//! The demo's built-in upstream: answers in Cloudflare's shapes, so that the official SDKs work against
//! `permgate demo` as against the real API, and says what it received.
//!
//! - A `GET` whose last path segment names a collection (a lower-case word ending in `s`: `dns_records`,
//!   `zones`, `accounts`, `keys`, `settings`) is a list: three items in all, `page` and `per_page` honoured,
//!   `result_info` with `page`, `per_page`, `count`, `total_count`, `total_pages` and an empty `cursor`, and a
//!   page past the last is empty, so the SDKs' auto-pagination (page- or cursor-based) ends.
//! - A Workers KV value (`GET …/storage/kv/namespaces/{ns}/values/{key}`) is its raw bytes, as Cloudflare
//!   sends it: `sample value of <key as received>`.
//! - Anything else is one object: its `id` is the last path segment (a created object gets a new one), and the
//!   fields of a JSON object body are echoed (so `dns.records.create({...})` returns what was sent).
//!
//! Every JSON answer is Cloudflare's success envelope plus `permgate_sample`: the method, the path and query,
//! and the identity headers the gateway set (never a credential: the gateway strips them, and the sample does
//! not echo `Authorization` anyway). It is not a general test server.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderValue};
use http::{HeaderMap, Method, Request, Response};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use serde_json::{Map, Value, json};
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

/// How many items every list holds in all.
pub const LIST_ITEMS: u64 = 3;

/// The largest request body read (to echo a JSON object); larger ones are answered without it.
const MAX_BODY: usize = 1 << 20;

/// One answer of the sample upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SampleAnswer {
    pub content_type: &'static str,
    pub body: String,
}

/// The answer to a request: `method`, `path_and_query` as received, the request `headers` and its `body`.
pub fn answer(
    method: &Method,
    path_and_query: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> SampleAnswer {
    let (path, query) = path_and_query
        .split_once('?')
        .unwrap_or((path_and_query, ""));
    let segments: Vec<&str> = path
        .split('/')
        .filter(|segment| !segment.is_empty())
        .collect();
    let last = segments.last().copied().unwrap_or_default();
    if *method == Method::GET && is_kv_value(&segments) {
        return SampleAnswer {
            content_type: "application/octet-stream",
            body: format!("sample value of {last}"),
        };
    }
    let (result, result_info) = if *method == Method::GET && is_collection(last) {
        let (items, info) = list(path, last, query);
        (Value::Array(items), Some(info))
    } else {
        (object(method, path, last, body), None)
    };
    let echoed: BTreeMap<&str, &str> = ECHOED_HEADERS
        .iter()
        .filter_map(|name| Some((*name, headers.get(*name)?.to_str().ok()?)))
        .collect();
    let mut envelope = json!({
        "success": true,
        "errors": [],
        "messages": [],
        "result": result,
    });
    if let (Some(fields), Some(info)) = (envelope.as_object_mut(), result_info) {
        fields.insert("result_info".to_string(), info);
    }
    if let Some(fields) = envelope.as_object_mut() {
        fields.insert(
            "permgate_sample".to_string(),
            json!({ "method": method.as_str(), "path": path_and_query, "headers": echoed }),
        );
    }
    SampleAnswer {
        content_type: "application/json",
        body: envelope.to_string(),
    }
}

/// `…/storage/kv/namespaces/{ns}/values/{key}`.
fn is_kv_value(segments: &[&str]) -> bool {
    let n = segments.len();
    n >= 6
        && segments.get(n - 2) == Some(&"values")
        && segments.get(n.wrapping_sub(6)..n - 3) == Some(&["storage", "kv", "namespaces"][..])
}

/// A lower-case word ending in `s` names a collection (`dns_records`, `zones`, `keys`, `settings`).
fn is_collection(segment: &str) -> bool {
    segment.ends_with('s')
        && segment.starts_with(|c: char| c.is_ascii_lowercase())
        && segment
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}

/// One page of a three-item list, as `page` and `per_page` say (1 and 20 by default).
fn list(path: &str, collection: &str, query: &str) -> (Vec<Value>, Value) {
    let parameter = |name: &str| {
        query
            .split('&')
            .find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
            .and_then(|value| value.parse::<u64>().ok())
    };
    let page = parameter("page").unwrap_or(1).max(1);
    let per_page = parameter("per_page").unwrap_or(20).clamp(1, 1000);
    let total_pages = LIST_ITEMS.div_ceil(per_page);
    let first = (page - 1).saturating_mul(per_page);
    let items: Vec<Value> = (first..LIST_ITEMS.min(first.saturating_add(per_page)))
        .map(|index| {
            json!({
                "id": sample_id(&format!("{path}#{index}")),
                "name": format!("sample {collection} {}", index + 1),
            })
        })
        .collect();
    let info = json!({
        "page": page,
        "per_page": per_page,
        "count": items.len(),
        "total_count": LIST_ITEMS,
        "total_pages": total_pages,
        "cursor": "",
    });
    (items, info)
}

/// A single object: the fields of a JSON object body, with an `id` (the last path segment, or a new one for
/// a `POST`) and a `name` unless the body gave them.
fn object(method: &Method, path: &str, last: &str, body: &[u8]) -> Value {
    let mut fields = serde_json::from_slice::<Map<String, Value>>(body).unwrap_or_default();
    let id = if *method == Method::POST || last.is_empty() || is_collection(last) {
        sample_id(path)
    } else {
        last.to_string()
    };
    fields.entry("id").or_insert(Value::String(id));
    fields
        .entry("name")
        .or_insert(Value::String("sample".to_string()));
    Value::Object(fields)
}

/// A stable 32-hex-digit id for `seed` (Cloudflare's ids look like this).
fn sample_id(seed: &str) -> String {
    let hash = xxhash_rust::xxh3::xxh3_128(seed.as_bytes());
    format!("{hash:032x}")
}

async fn respond(request: Request<Incoming>) -> Response<ProxyBody> {
    let method = request.method().clone();
    let path = request
        .uri()
        .path_and_query()
        .map_or("/", |pq| pq.as_str())
        .to_string();
    let (parts, incoming) = request.into_parts();
    let body = Limited::new(incoming, MAX_BODY)
        .collect()
        .await
        .map(|collected| collected.to_bytes())
        .unwrap_or_else(|_| Bytes::new());
    let answer = answer(&method, &path, &parts.headers, &body);
    let mut response = Response::new(body::full(answer.body));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(answer.content_type));
    response
}

/// Serves the sample on `listener` until `shutdown` resolves.
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
                Ok::<_, Infallible>(respond(request).await)
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

    fn json_of(answer: &SampleAnswer) -> Value {
        assert_eq!(answer.content_type, "application/json");
        serde_json::from_str(&answer.body).unwrap()
    }

    #[test]
    fn lists_have_result_info_and_pagination_that_ends() {
        let mut headers = HeaderMap::new();
        headers.insert("x-permgate-principal", "user:u1".parse().unwrap());
        headers.insert("cookie", "not echoed".parse().unwrap());
        let path = "/client/v4/zones/z1/dns_records";
        let first = json_of(&answer(&Method::GET, path, &headers, b""));
        assert_eq!(first["success"], true);
        assert_eq!(first["result"].as_array().unwrap().len(), 3);
        assert_eq!(
            first["result_info"],
            json!({"page": 1, "per_page": 20, "count": 3, "total_count": 3, "total_pages": 1, "cursor": ""})
        );
        assert_eq!(
            first["permgate_sample"],
            json!({"method": "GET", "path": path, "headers": {"x-permgate-principal": "user:u1"}})
        );
        // Two per page: pages 1 and 2 hold 2 and 1 items, page 3 none; the ids do not repeat.
        let page = |n: u64| {
            json_of(&answer(
                &Method::GET,
                &format!("{path}?per_page=2&page={n}"),
                &headers,
                b"",
            ))
        };
        let ids: Vec<Value> = (1..=3)
            .flat_map(|n| page(n)["result"].as_array().unwrap().clone())
            .map(|item| item["id"].clone())
            .collect();
        assert_eq!(ids.len(), 3);
        assert_eq!(
            first["result"]
                .as_array()
                .unwrap()
                .iter()
                .map(|item| item["id"].clone())
                .collect::<Vec<_>>(),
            ids
        );
        assert_eq!(page(2)["result_info"]["total_pages"], 2);
        assert_eq!(page(3)["result"], json!([]));
        assert_eq!(page(3)["result_info"]["count"], 0);
    }

    #[test]
    fn objects_kv_values_and_created_objects_are_answered_in_cloudflares_shapes() {
        let headers = HeaderMap::new();
        let zone = json_of(&answer(
            &Method::GET,
            "/client/v4/zones/023e105f4ecef8ad9ca31a8372d0c353",
            &headers,
            b"",
        ));
        assert_eq!(zone["result"]["id"], "023e105f4ecef8ad9ca31a8372d0c353");
        assert!(zone.get("result_info").is_none());
        let user = json_of(&answer(&Method::GET, "/client/v4/user", &headers, b""));
        assert!(user["result"].is_object());
        let created = json_of(&answer(
            &Method::POST,
            "/client/v4/zones/z1/dns_records",
            &headers,
            br#"{"name":"api.example.com","type":"A","content":"198.51.100.7"}"#,
        ));
        assert_eq!(created["result"]["name"], "api.example.com");
        assert_eq!(created["result"]["type"], "A");
        assert_eq!(created["result"]["id"].as_str().unwrap().len(), 32);
        let value = answer(
            &Method::GET,
            "/client/v4/accounts/a1/storage/kv/namespaces/n1/values/images%2Fcat.png",
            &headers,
            b"",
        );
        assert_eq!(value.content_type, "application/octet-stream");
        assert_eq!(value.body, "sample value of images%2Fcat.png");
        let keys = json_of(&answer(
            &Method::GET,
            "/client/v4/accounts/a1/storage/kv/namespaces/n1/keys",
            &headers,
            b"",
        ));
        assert_eq!(keys["result_info"]["cursor"], "");
    }
}
