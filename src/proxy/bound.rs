//! Upstream HTTP/1.1 connections lent to inbound HTTP/1 connections for one exchange at a time and driven by
//! the inbound connection's own task; and the pool of idle ones between exchanges.
//!
//! An inbound HTTP/1 connection carries one request at a time. For each forwarded request it takes an
//! upstream connection (the most recently idle one from the pool, else a new one), and while the exchange
//! lasts, that connection's I/O future is polled by the inbound connection's task ([`Binding::drive`], beside
//! hyper's server connection): a forwarded request costs no task hand-off and no channel wake-up of another
//! task, which is what made hyper-util's pooled client cost ~5 µs per request more here (`BENCHMARKS.md`).
//! As soon as the response has been read whole, the connection goes back to the pool, so the upstream
//! connections in use follow the requests in flight, never the clients connected. HTTP/2 inbound requests
//! (many at once on one connection) and WebSocket upgrades use the shared pooled client instead
//! ([`super::upstream`]).
//!
//! Idle connections wait in a [`Pool`] (`super::pool`, generic over the connection): one sweeper task per
//! pool looks at them every [`super::pool::SWEEP_EVERY`] (at most half of `pool_idle_timeout`), closing those
//! the upstream closed and those idle longer than `pool_idle_timeout`, and a checkout polls a connection once
//! before using it. At most `pool_max_idle_per_host` are kept. A request that a reused connection hands back
//! unsent (it closed just then) is sent once more on a new connection; nothing that may have reached the
//! upstream is resent.
//!
//! [`UpstreamLane`] is how an inbound connection's requests choose between the lent connection, the pooled
//! client and the upgrade client (and the URI form each takes).

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use http::header::{HOST, HeaderValue};
use http::uri::{Authority, PathAndQuery, Scheme, Uri};
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, Connection, SendRequest};
use hyper_rustls::{HttpsConnector, MaybeHttpsStream};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tower_service::Service;

use super::body::ProxyBody;
use super::error::ProxyError;
use super::pool::{Pool, Pooled};
use super::upstream::{Route, absolute_uri};

type UpstreamStream = MaybeHttpsStream<TokioIo<TcpStream>>;
type Driver = Pin<Box<Connection<UpstreamStream, ProxyBody>>>;

/// One upstream HTTP/1.1 connection: the half that sends requests and the future that does its I/O.
pub struct UpstreamConnection {
    sender: SendRequest<ProxyBody>,
    driver: Driver,
}

impl Pooled for UpstreamConnection {
    fn poll_ended(&mut self, cx: &mut Context<'_>) -> bool {
        self.driver.as_mut().poll(cx).is_ready()
    }

    /// Its I/O polled once (an upstream close that arrived meanwhile ends it) and its sender ready.
    ///
    /// The I/O is polled with a waker that does nothing: a usable connection is bound next, which marks the
    /// lent connection's driver as woken, so the inbound connection's task polls it with its own waker in
    /// this same poll (and an unusable one is dropped). With the request's waker, handing the request over
    /// would wake the inbound connection for nothing.
    fn is_usable(&mut self, cx: &mut Context<'_>) -> bool {
        if self
            .driver
            .as_mut()
            .poll(&mut Context::from_waker(Waker::noop()))
            .is_ready()
        {
            return false;
        }
        matches!(self.sender.poll_ready(cx), Poll::Ready(Ok(())))
    }
}

/// The upstream connections of one upstream origin (scheme and authority) and one set of pool settings:
/// how to open one, and the idle ones ([`Pool`]).
pub struct Lender {
    connector: HttpsConnector<HttpConnector>,
    /// `scheme://authority` of the upstream URL: what the connector connects to.
    origin: Uri,
    /// The `Host` every request forwarded over these connections carries.
    host: HeaderValue,
    pool: Arc<Pool<UpstreamConnection>>,
}

// === impl Lender ===

impl Lender {
    /// Connections to `scheme://authority`; `connector` must speak HTTP/1.1 only (no `h2` in ALPN).
    pub fn new(
        connector: HttpsConnector<HttpConnector>,
        scheme: &Scheme,
        authority: &Authority,
        max_idle: usize,
        idle_timeout: Duration,
    ) -> Result<Self, ProxyError> {
        let origin = Uri::builder()
            .scheme(scheme.clone())
            .authority(authority.clone())
            .path_and_query("/")
            .build()
            .map_err(|_| ProxyError::Unforwardable("upstream URL"))?;
        let host = HeaderValue::from_str(&host_of(scheme, authority))
            .map_err(|_| ProxyError::Unforwardable("upstream URL"))?;
        Ok(Self {
            connector,
            origin,
            host,
            pool: Arc::new(Pool::new(max_idle, idle_timeout)),
        })
    }

    /// A connection for a request that found the pool empty: a new one, or one that comes back while it is
    /// being opened, whichever is first.
    async fn connect_or_wait(&self) -> Result<(UpstreamConnection, bool), ProxyError> {
        let returned = self.pool.waiter();
        // Boxed: connecting is rare on this path and its future is large; unboxed it would be moved with
        // every request's future.
        let connecting = Box::pin(self.connect());
        tokio::select! {
            biased;
            Ok(connection) = returned => Ok((connection, true)),
            connected = connecting => connected.map(|connection| (connection, false)),
        }
    }

    /// A new connection: TCP (and TLS) connect within `connect_timeout`, then the HTTP/1.1 handshake.
    async fn connect(&self) -> Result<UpstreamConnection, ProxyError> {
        let mut connector = self.connector.clone();
        let stream = connector
            .call(self.origin.clone())
            .await
            .map_err(|source| ProxyError::Upstream {
                connect: true,
                source,
            })?;
        let (sender, driver) = http1::Builder::new()
            .handshake(stream)
            .await
            .map_err(|error| ProxyError::Upstream {
                connect: true,
                source: Box::new(error),
            })?;
        Ok(UpstreamConnection {
            sender,
            driver: Box::pin(driver),
        })
    }
}

impl std::fmt::Debug for Lender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lender")
            .field("origin", &self.origin)
            .field("pool", &self.pool)
            .finish_non_exhaustive()
    }
}

/// `Host` for an origin: the host, and the port unless it is the scheme's default (as hyper-util's client).
fn host_of(scheme: &Scheme, authority: &Authority) -> String {
    let default_port = if *scheme == Scheme::HTTPS { 443 } else { 80 };
    match authority.port_u16() {
        Some(port) if port != default_port => format!("{}:{port}", authority.host()),
        _ => authority.host().to_string(),
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Each critical section is one take or replace of an `Option`: no state can be left half-written.
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The upstream connection lent to one inbound HTTP/1 connection for its exchange in progress, shared by
/// its requests and its task.
#[derive(Default)]
pub struct Binding {
    state: Mutex<Bound>,
}

#[derive(Default)]
struct Bound {
    /// The pool the bound connection came from (a reload with other upstream settings makes a new pool).
    pool: Option<Arc<Pool<UpstreamConnection>>>,
    /// Out while a request is being handed to the connection.
    sender: Option<SendRequest<ProxyBody>>,
    driver: Option<Driver>,
    /// The inbound connection task's waker, to poll a newly bound connection.
    waker: Option<Waker>,
    /// Whether the response head has arrived: from then on, the connection is ready for another request
    /// exactly when the response has been read whole.
    responded: bool,
}

impl Bound {
    fn unbind(&mut self) {
        self.pool = None;
        self.sender = None;
        self.driver = None;
        self.responded = false;
    }

    /// Unbinds; the connection goes back to its pool if its exchange is over and it is healthy.
    fn release(&mut self) {
        let responded = std::mem::take(&mut self.responded);
        if let (Some(pool), Some(sender), Some(driver)) =
            (self.pool.take(), self.sender.take(), self.driver.take())
            && responded
            && sender.is_ready()
            && !sender.is_closed()
        {
            pool.put(UpstreamConnection { sender, driver });
        }
    }
}

/// [`Binding::drive`]'s future.
pub struct Drive<'a> {
    binding: &'a Binding,
}

impl Future for Drive<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut state = self.binding.state();
        if !state
            .waker
            .as_ref()
            .is_some_and(|waker| waker.will_wake(cx.waker()))
        {
            state.waker = Some(cx.waker().clone());
        }
        if let Some(driver) = state.driver.as_mut()
            && let Poll::Ready(result) = driver.as_mut().poll(cx)
        {
            if let Err(error) = result {
                tracing::debug!(%error, "upstream connection ended with an error");
            }
            state.unbind();
        }
        // The response has been read whole (hyper's connection wants the next request): hand it back.
        if state.responded && state.sender.as_ref().is_some_and(SendRequest::is_ready) {
            state.release();
        }
        Poll::Pending
    }
}

// === impl Binding ===

impl Binding {
    fn state(&self) -> MutexGuard<'_, Bound> {
        lock(&self.state)
    }

    /// Drives the lent connection's I/O and hands it back to the pool when its exchange is over; never
    /// completes. The inbound connection's task polls this beside its server connection.
    pub fn drive(&self) -> Drive<'_> {
        Drive { binding: self }
    }

    /// When the inbound connection has closed: a lent connection goes back to its pool if its exchange is
    /// over, else it is closed.
    pub fn release(&self) {
        self.state().release();
    }

    /// Binds `connection` (closing any other) and returns its sender; wakes the task to drive it.
    fn bind(
        &self,
        pool: &Arc<Pool<UpstreamConnection>>,
        connection: UpstreamConnection,
    ) -> SendRequest<ProxyBody> {
        let mut state = self.state();
        state.unbind();
        state.pool = Some(Arc::clone(pool));
        state.driver = Some(connection.driver);
        if let Some(waker) = &state.waker {
            waker.wake_by_ref();
        }
        connection.sender
    }

    /// Returns the sender once the request was handed over (unless the connection ended meanwhile).
    fn put_back(&self, sender: SendRequest<ProxyBody>) {
        let mut state = self.state();
        if state.driver.is_some() {
            state.sender = Some(sender);
        }
    }

    /// The response head arrived: the connection goes back once the body has been read. When it already
    /// has been (a small body comes in the same read as the head), that is now, as [`Drive`] would do on its
    /// next poll; else the driver is marked as woken, so that `Drive` looks again.
    fn responded(&self) {
        let mut state = self.state();
        if state.driver.is_some() {
            state.responded = true;
            if state.sender.as_ref().is_some_and(SendRequest::is_ready) {
                state.release();
            } else if let Some(waker) = &state.waker {
                waker.wake_by_ref();
            }
        }
    }

    fn unbind(&self) {
        self.state().unbind();
    }
}

impl std::fmt::Debug for Binding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.state();
        f.debug_struct("Binding")
            .field("bound", &state.driver.is_some())
            .finish_non_exhaustive()
    }
}

/// How one inbound connection's requests travel to the upstream: its lane chooses, per request, the lent
/// upstream connection (HTTP/1, when the connection has a [`Binding`] driven by its task), the upgrade client
/// (a WebSocket handshake) or the pooled client (everything else), and the URI form that goes with it.
#[derive(Debug, Clone, Default)]
pub struct UpstreamLane {
    binding: Option<Arc<Binding>>,
}

// === impl UpstreamLane ===

impl UpstreamLane {
    /// A lane without a lent connection: everything over the pooled clients.
    pub fn pooled() -> Self {
        Self::default()
    }

    /// The lane of an inbound connection whose task drives `binding` ([`Binding::drive`]).
    pub fn lending(binding: &Arc<Binding>) -> Self {
        Self {
            binding: Some(Arc::clone(binding)),
        }
    }

    /// The route of one request and the URI it is sent with: `target` (from `upstream_target`) alone
    /// (origin-form) over a lent connection, which already knows where it goes; on `base`'s scheme and
    /// authority (absolute-form) over a pooled client.
    pub fn choose(
        &self,
        http1: bool,
        websocket: bool,
        base: &Uri,
        target: PathAndQuery,
    ) -> Result<(Route<'_>, Uri), ProxyError> {
        match (&self.binding, websocket) {
            (Some(binding), false) if http1 => Ok((Route::Lent(binding), Uri::from(target))),
            (_, true) => Ok((Route::Upgrade, absolute_uri(base, target)?)),
            _ => Ok((Route::Pooled, absolute_uri(base, target)?)),
        }
    }
}

/// Sends `request` (origin-form URI) over a connection of `lender` lent to `binding` (an idle one, else a
/// new one). Sets `Host` to the upstream's. `now` is a moment ago (for the idle connections' age). The caller
/// bounds the wait.
pub async fn send(
    lender: &Lender,
    binding: &Binding,
    mut request: Request<ProxyBody>,
    now: Instant,
) -> Result<Response<Incoming>, ProxyError> {
    request.headers_mut().insert(HOST, lender.host.clone());
    let pool = &lender.pool;
    let mut retried = false;
    loop {
        let (mut sender, reused) = match pool.checkout(now).await {
            Some(idle) => (binding.bind(pool, idle), true),
            None => {
                let (connection, reused) = Box::pin(lender.connect_or_wait()).await?;
                (binding.bind(pool, connection), reused)
            }
        };
        if sender.ready().await.is_err() {
            binding.unbind();
            if reused && !retried {
                retried = true;
                continue;
            }
            return Err(ProxyError::Upstream {
                connect: false,
                source: "upstream connection closed".into(),
            });
        }
        let response = sender.try_send_request(request);
        binding.put_back(sender);
        match response.await {
            Ok(response) => {
                binding.responded();
                return Ok(response);
            }
            Err(mut error) => {
                binding.unbind();
                match error.take_message() {
                    // Never written: the connection closed just then. Once more, on a new connection.
                    Some(unsent) if reused && !retried => {
                        retried = true;
                        request = unsent;
                    }
                    _ => {
                        return Err(ProxyError::Upstream {
                            connect: false,
                            source: Box::new(error.into_error()),
                        });
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_omits_the_default_port_only() {
        let host = |scheme: Scheme, authority: &str| host_of(&scheme, &authority.parse().unwrap());
        assert_eq!(host(Scheme::HTTP, "api.internal"), "api.internal");
        assert_eq!(host(Scheme::HTTP, "api.internal:80"), "api.internal");
        assert_eq!(host(Scheme::HTTP, "127.0.0.1:9000"), "127.0.0.1:9000");
        assert_eq!(host(Scheme::HTTPS, "api.internal:443"), "api.internal");
        assert_eq!(host(Scheme::HTTPS, "api.internal:80"), "api.internal:80");
    }

    #[tokio::test]
    async fn an_idle_connection_closed_by_the_upstream_leaves_the_pool() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = tokio::spawn(async move { listener.accept().await.unwrap().0 });
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        let tls = crate::tls::client_config(None).unwrap();
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let lender = Lender::new(
            connector,
            &Scheme::HTTP,
            &addr.to_string().parse().unwrap(),
            4,
            Duration::from_secs(60),
        )
        .unwrap();
        let pool = &lender.pool;
        let connection = lender.connect().await.unwrap();
        let server_side = accepted.await.unwrap();
        pool.put(connection);
        assert_eq!(pool.idle_count(), 1);
        drop(server_side);
        // The sweeper looks every second here (`SWEEP_EVERY`): within three, the closed one is gone.
        for _ in 0..600 {
            if pool.idle_count() == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(pool.idle_count(), 0);
        assert!(pool.checkout(Instant::now()).await.is_none());
    }
}
