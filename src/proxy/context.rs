//! What one request is served with, gathered once before its phases run: the connection it came on
//! ([`ConnInfo`]) and the request context (the generation it is served by, its request id, method and
//! version, whether its peer is a trusted proxy, when it arrived, its trace id).

use std::net::{IpAddr, SocketAddr};
use std::time::SystemTime;

use http::header::HeaderValue;
use http::{HeaderMap, Method, Request, Version};
use hyper::body::Incoming;

use super::bound::UpstreamLane;
use super::framing::FramingTap;
use super::live::Live;
use super::request_id;
use super::trace_context::{self, TraceId};
use crate::decision_log::Arrived;
use crate::settings::DecisionProtocol;
use crate::snapshot::Snapshot;

/// What is known about the connection a request came on.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    /// The TCP peer.
    pub peer: SocketAddr,
    /// The peer's IP address as text (for `X-Forwarded-For`), formatted once per connection.
    pub peer_header: HeaderValue,
    /// Whether the connection is TLS (for `X-Forwarded-Proto`).
    pub tls: bool,
    /// The raw-byte framing tap of this connection (HTTP/1 requests take one verdict each).
    pub(super) framing: FramingTap,
    /// How this connection's requests reach the upstream (lent, pooled or upgrade).
    pub(super) lane: UpstreamLane,
}

// === impl ConnInfo ===

impl ConnInfo {
    /// A connection from `peer`, without a framing tap and over the pooled clients (the server gives its
    /// HTTP connections both).
    pub fn new(peer: SocketAddr, tls: bool) -> Self {
        Self {
            peer,
            peer_header: HeaderValue::from_str(&peer.ip().to_string())
                .unwrap_or_else(|_| HeaderValue::from_static("unknown")),
            tls,
            framing: FramingTap::none(),
            lane: UpstreamLane::pooled(),
        }
    }
}

/// One request's context, built once: everything its phases (`decide`, `forward`, `observe`) share.
#[derive(Debug)]
pub(super) struct RequestContext<'a> {
    /// The generation serving this request, loaded once: its snapshot, upstream clients and route series.
    pub live: &'a Live,
    pub conn: &'a ConnInfo,
    /// The request id (an inbound one from a trusted proxy, else a new one); plain ASCII by construction.
    pub id_value: HeaderValue,
    /// Whether the peer is one of `trusted_proxies`.
    pub peer_trusted: bool,
    pub method: Method,
    /// HTTP/1.x (not HTTP/2).
    pub http1: bool,
    /// The arrival time, for the decision log only (`None`, and the clock not read, when it is off).
    pub arrived: Option<SystemTime>,
    /// The trace id of a valid inbound `traceparent`, for the decision log only (not looked for when it is
    /// off).
    pub trace_id: Option<TraceId>,
    /// The decision listener's protocol when a proxy in front delegated the decision (`None`: the proxy).
    pub delegated: Option<DecisionProtocol>,
}

// === impl RequestContext ===

impl<'a> RequestContext<'a> {
    pub fn new(
        live: &'a Live,
        conn: &'a ConnInfo,
        request: &Request<Incoming>,
        decision_log: bool,
    ) -> Self {
        Self::from_parts(
            live,
            conn,
            request.headers(),
            request.method().clone(),
            request.version() <= Version::HTTP_11,
            decision_log,
            None,
        )
    }

    /// The context of a request known by its parts: the proxy's requests, and the decision listeners'
    /// (`delegated`), whose `method` is the original request's.
    pub fn from_parts(
        live: &'a Live,
        conn: &'a ConnInfo,
        headers: &HeaderMap,
        method: Method,
        http1: bool,
        decision_log: bool,
        delegated: Option<DecisionProtocol>,
    ) -> Self {
        let peer_trusted = is_trusted(conn.peer.ip(), &live.snapshot.settings.trusted_proxies);
        Self {
            id_value: request_id::choose(headers, peer_trusted),
            peer_trusted,
            method,
            http1,
            arrived: decision_log.then(SystemTime::now),
            trace_id: decision_log
                .then(|| trace_context::trace_id(headers))
                .flatten(),
            delegated,
            live,
            conn,
        }
    }

    /// The decision log's `mode`: `proxy`, or the decision listener's protocol.
    pub fn mode_name(&self) -> &'static str {
        self.delegated.map_or("proxy", DecisionProtocol::as_str)
    }

    /// The snapshot this request is decided with.
    pub fn snapshot(&self) -> &'a Snapshot {
        &self.live.snapshot
    }

    /// The request id as text (for logs).
    pub fn request_id(&self) -> &str {
        self.id_value.to_str().unwrap_or("invalid-request-id")
    }

    /// What the decision log records of the request's arrival (`None` when the log is off).
    pub fn arrival(&self) -> Option<Arrived<'_>> {
        self.arrived.map(|time| Arrived {
            time,
            request_id: self.request_id(),
            trace_id: self.trace_id.as_ref().map(TraceId::as_str),
            method: self.method.as_str(),
            mode: self.mode_name(),
        })
    }
}

fn is_trusted(ip: IpAddr, trusted: &[ipnet::IpNet]) -> bool {
    trusted.iter().any(|net| net.contains(&ip))
}
