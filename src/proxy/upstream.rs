//! The upstream side: the clients of one upstream URL and settings, the upstream URI, and `forward` with the
//! response timeout.
//!
//! Built once per upstream URL and settings (native roots plus `upstream.ca_file`, connect timeout,
//! keep-alive pool) and shared by every request. Requests of inbound HTTP/1 connections go over the upstream
//! connection lent to their inbound connection for the exchange (`super::bound`). The rest use hyper-util's pooled client:
//! inbound HTTP/2 requests (HTTP/2 to an `https` upstream that offers it by ALPN), and upgrade requests over a
//! second, HTTP/1.1-only client, as a WebSocket handshake cannot ride an HTTP/2 connection.

use std::sync::Arc;
use std::time::Duration;

use http::uri::{PathAndQuery, Uri};
use http::{Request, Response};
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio::time::Instant;

use super::body::ProxyBody;
use super::bound::{self, Binding, Lender};
use super::error::ProxyError;
use crate::config::gateway::UpstreamSettings;
use crate::tls;

type HttpsClient = Client<HttpsConnector<HttpConnector>, ProxyBody>;

/// The pooled clients for one set of upstream settings.
#[derive(Clone)]
pub struct UpstreamClient {
    /// The settings the clients were built from, to know when a reload needs a rebuild.
    built_from: BuiltFrom,
    client: HttpsClient,
    upgrade_client: HttpsClient,
    /// The connections lent to inbound HTTP/1 connections one exchange at a time, and their idle pool.
    lender: Arc<Lender>,
}

/// How a request travels to the upstream.
#[derive(Debug, Clone, Copy)]
pub enum Route<'a> {
    /// Over an upstream connection lent to its inbound HTTP/1 connection, driven by that connection's task.
    Lent(&'a Binding),
    /// Over the shared pooled client (inbound HTTP/2).
    Pooled,
    /// An upgrade handshake, over the HTTP/1.1-only pooled client.
    Upgrade,
}

/// The settings baked into a client (the response timeout is read per request instead).
#[derive(Debug, Clone, PartialEq, Eq)]
struct BuiltFrom {
    url: Uri,
    ca_file: Option<std::path::PathBuf>,
    connect_timeout: Duration,
    pool_idle_timeout: Duration,
    pool_max_idle_per_host: usize,
}

impl BuiltFrom {
    fn of(settings: &UpstreamSettings) -> Self {
        Self {
            url: settings.url.clone(),
            ca_file: settings.ca_file.clone(),
            connect_timeout: settings.connect_timeout,
            pool_idle_timeout: settings.pool_idle_timeout,
            pool_max_idle_per_host: settings.pool_max_idle_per_host,
        }
    }
}

// === impl UpstreamClient ===

impl UpstreamClient {
    /// Builds the clients: TLS roots, connect timeout and pool from `settings`.
    pub fn new(settings: &UpstreamSettings) -> Result<Self, ProxyError> {
        let tls = tls::client_config(settings.ca_file.as_deref())?;
        let connector = |http2: bool| {
            let mut http = HttpConnector::new();
            // The https connector wraps this one; it must accept https URIs too.
            http.enforce_http(false);
            http.set_connect_timeout(Some(settings.connect_timeout));
            http.set_nodelay(true);
            let builder = hyper_rustls::HttpsConnectorBuilder::new()
                .with_tls_config(tls.clone())
                .https_or_http();
            if http2 {
                builder.enable_all_versions().wrap_connector(http)
            } else {
                builder.enable_http1().wrap_connector(http)
            }
        };
        let client = |connector| {
            Client::builder(TokioExecutor::new())
                .pool_idle_timeout(settings.pool_idle_timeout)
                .pool_max_idle_per_host(settings.pool_max_idle_per_host)
                .pool_timer(TokioTimer::new())
                .timer(TokioTimer::new())
                .build(connector)
        };
        let (Some(scheme), Some(authority)) = (settings.url.scheme(), settings.url.authority())
        else {
            return Err(ProxyError::Unforwardable("upstream URL"));
        };
        let lender = Lender::new(
            connector(false),
            scheme,
            authority,
            settings.pool_max_idle_per_host,
            settings.pool_idle_timeout,
        )?;
        Ok(Self {
            built_from: BuiltFrom::of(settings),
            client: client(connector(true)),
            upgrade_client: client(connector(false)),
            lender: Arc::new(lender),
        })
    }

    /// Whether `settings` need different clients than these.
    pub fn is_built_for(&self, settings: &UpstreamSettings) -> bool {
        self.built_from == BuiltFrom::of(settings)
    }

    /// Sends `request` `via` the given route and waits at most `response_timeout` from `start` (the end of
    /// the decision, just before) for the response head (connecting included); the body then streams. Its
    /// URI is origin-form for [`Route::Lent`] (the connection already knows where it goes), absolute
    /// otherwise.
    pub async fn forward(
        &self,
        request: Request<ProxyBody>,
        via: Route<'_>,
        start: Instant,
        response_timeout: Duration,
    ) -> Result<Response<Incoming>, ProxyError> {
        let deadline = start
            .checked_add(response_timeout)
            // As `tokio::time::timeout` does for a duration past what the clock can hold: about 30 years.
            .or_else(|| start.checked_add(Duration::from_secs(86_400 * 365 * 30)))
            .unwrap_or(start);
        let client = match via {
            Route::Lent(binding) => {
                let sent = bound::send(&self.lender, binding, request, start.into_std());
                return match tokio::time::timeout_at(deadline, sent).await {
                    Err(_elapsed) => Err(ProxyError::UpstreamTimeout(response_timeout)),
                    Ok(result) => result,
                };
            }
            Route::Pooled => &self.client,
            Route::Upgrade => &self.upgrade_client,
        };
        match tokio::time::timeout_at(deadline, client.request(request)).await {
            Err(_elapsed) => Err(ProxyError::UpstreamTimeout(response_timeout)),
            Ok(Err(error)) => Err(ProxyError::Upstream {
                connect: error.is_connect(),
                source: Box::new(error),
            }),
            Ok(Ok(response)) => Ok(response),
        }
    }
}

impl std::fmt::Debug for UpstreamClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamClient")
            .field("built_from", &self.built_from)
            .finish()
    }
}

/// The path and query sent upstream for a canonical target: the base URL's path prefix (if any), then
/// exactly the canonical path and query that were authorized.
pub fn upstream_target(base: &Uri, path_and_query: String) -> Result<PathAndQuery, ProxyError> {
    if !path_and_query.starts_with('/') {
        // `OPTIONS *` (the only other canonical form) names the server, not a resource behind a prefix.
        return Err(ProxyError::Unforwardable("asterisk-form request target"));
    }
    let prefix = base.path().trim_end_matches('/');
    let joined = if prefix.is_empty() {
        path_and_query
    } else {
        let mut joined = String::with_capacity(prefix.len() + path_and_query.len());
        joined.push_str(prefix);
        joined.push_str(&path_and_query);
        joined
    };
    PathAndQuery::try_from(joined).map_err(|_| ProxyError::Unforwardable("request target"))
}

/// [`upstream_target`] for a request whose own target is the canonical one: its parsed copy is reused (a
/// reference count, no copy and no second parse) when the base URL has no path prefix.
pub fn upstream_target_as_received(
    base: &Uri,
    received: &PathAndQuery,
) -> Result<PathAndQuery, ProxyError> {
    if base.path().trim_end_matches('/').is_empty() && received.as_str().starts_with('/') {
        Ok(received.clone())
    } else {
        upstream_target(base, received.as_str().to_string())
    }
}

/// The absolute upstream URI: `target` (from [`upstream_target`]) on the base URL's scheme and authority.
pub fn absolute_uri(base: &Uri, target: PathAndQuery) -> Result<Uri, ProxyError> {
    let mut parts = http::uri::Parts::default();
    parts.scheme = base.scheme().cloned();
    parts.authority = base.authority().cloned();
    parts.path_and_query = Some(target);
    Uri::from_parts(parts).map_err(|_| ProxyError::Unforwardable("upstream URL"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upstream_uri(base: &Uri, path_and_query: &str) -> Result<Uri, ProxyError> {
        absolute_uri(base, upstream_target(base, path_and_query.to_string())?)
    }

    #[test]
    fn the_canonical_target_is_appended_to_the_base_exactly() {
        let base: Uri = "http://127.0.0.1:9000".parse().unwrap();
        assert_eq!(
            upstream_uri(&base, "/client/v4/zones/~x?a=%2F&b")
                .unwrap()
                .to_string(),
            "http://127.0.0.1:9000/client/v4/zones/~x?a=%2F&b"
        );
        let prefixed: Uri = "https://api.internal/base/".parse().unwrap();
        assert_eq!(
            upstream_uri(&prefixed, "/v4").unwrap().to_string(),
            "https://api.internal/base/v4"
        );
        assert!(upstream_uri(&base, "*").is_err());
    }
}
