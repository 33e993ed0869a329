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
//! Idle connections are polled by nobody in between; one sweeper task per pool looks at them every
//! [`SWEEP_EVERY`] (at most half of `pool_idle_timeout`), closing those the upstream closed and those idle
//! longer than `pool_idle_timeout`, and a checkout polls a connection once before using it. At most
//! `pool_max_idle_per_host` are kept. A request that a reused connection hands back unsent (it closed just
//! then) is sent once more on a new connection; nothing that may have reached the upstream is resent.

use std::collections::VecDeque;
use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use http::header::{HOST, HeaderValue};
use http::uri::{Authority, Scheme, Uri};
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, Connection, SendRequest};
use hyper_rustls::{HttpsConnector, MaybeHttpsStream};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tower_service::Service;

use super::body::ProxyBody;
use super::error::ProxyError;

type UpstreamStream = MaybeHttpsStream<TokioIo<TcpStream>>;
type Driver = Pin<Box<Connection<UpstreamStream, ProxyBody>>>;

/// One upstream HTTP/1.1 connection: the half that sends requests and the future that does its I/O.
struct UpstreamConnection {
    sender: SendRequest<ProxyBody>,
    driver: Driver,
}

/// An idle connection in the pool, and since when.
struct Idle {
    connection: UpstreamConnection,
    since: Instant,
}

/// How often the sweeper looks at the idle connections (at most half of `pool_idle_timeout`).
pub const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// The upstream connections of one upstream origin (scheme and authority) and one set of pool settings.
pub struct Pool {
    connector: HttpsConnector<HttpConnector>,
    /// `scheme://authority` of the upstream URL: what the connector connects to.
    origin: Uri,
    /// The `Host` every request forwarded over these connections carries.
    host: HeaderValue,
    max_idle: usize,
    idle_timeout: Duration,
    /// Oldest first; checkouts take the newest.
    idle: Mutex<VecDeque<Idle>>,
    /// Requests connecting because the pool was empty, also waiting for a connection to come back: the
    /// first of the two wins, so a burst of requests does not open a connection each.
    waiters: Mutex<VecDeque<oneshot::Sender<UpstreamConnection>>>,
    /// Whether the sweeper task runs (it ends when the pool has no idle connection left).
    sweeping: AtomicBool,
}

// === impl Pool ===

impl Pool {
    /// A pool for `scheme://authority`; `connector` must speak HTTP/1.1 only (no `h2` in ALPN).
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
            max_idle,
            idle_timeout,
            idle: Mutex::new(VecDeque::new()),
            waiters: Mutex::new(VecDeque::new()),
            sweeping: AtomicBool::new(false),
        })
    }

    /// Whether this pool connects to `scheme://authority` (compared as `Scheme` and `Authority` do, without
    /// case; checked on every forwarded request, so the usual case, the same bytes, is tried first).
    pub fn serves(&self, scheme: Option<&Scheme>, authority: Option<&Authority>) -> bool {
        let scheme_matches = match (self.origin.scheme(), scheme) {
            (Some(ours), Some(theirs)) => ours.as_str() == theirs.as_str() || ours == theirs,
            (ours, theirs) => ours.is_none() && theirs.is_none(),
        };
        let authority_matches = match (self.origin.authority(), authority) {
            (Some(ours), Some(theirs)) => ours.as_str() == theirs.as_str() || ours == theirs,
            (ours, theirs) => ours.is_none() && theirs.is_none(),
        };
        scheme_matches && authority_matches
    }

    fn idle(&self) -> MutexGuard<'_, VecDeque<Idle>> {
        // A panic while holding this lock cannot leave the queue half-updated: every critical section is a
        // single push, pop or retain.
        self.idle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The newest idle connection that is still alive (idle for less than `idle_timeout` at `now`), polled
    /// once to be sure.
    async fn checkout_idle(&self, now: Instant) -> Option<UpstreamConnection> {
        loop {
            let mut entry = self.idle().pop_back()?;
            if now.saturating_duration_since(entry.since) < self.idle_timeout
                && is_usable(&mut entry.connection).await
            {
                return Some(entry.connection);
            }
        }
    }

    /// A connection for a request that found the pool empty: a new one, or one that comes back while it is
    /// being opened, whichever is first.
    async fn connect_or_wait(&self) -> Result<(UpstreamConnection, bool), ProxyError> {
        let (sender, returned) = oneshot::channel();
        {
            let mut waiters = lock(&self.waiters);
            waiters.retain(|waiter| !waiter.is_closed());
            waiters.push_back(sender);
        }
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

    /// Keeps an idle, healthy connection (or closes it, if the pool is full); starts the sweeper if needed.
    fn put(self: &Arc<Self>, mut connection: UpstreamConnection) {
        // A request waiting for one gets it first.
        loop {
            let waiter = lock(&self.waiters).pop_front();
            let Some(waiter) = waiter else { break };
            match waiter.send(connection) {
                Ok(()) => return,
                Err(unsent) => connection = unsent,
            }
        }
        if self.max_idle == 0 {
            return;
        }
        {
            let mut idle = self.idle();
            if idle.len() >= self.max_idle {
                return;
            }
            idle.push_back(Idle {
                connection,
                since: Instant::now(),
            });
        }
        if !self.sweeping.swap(true, Ordering::AcqRel) {
            tokio::spawn(sweep(Arc::downgrade(self)));
        }
    }

    /// Closes the idle connections the upstream has closed or that idled past `pool_idle_timeout`; returns
    /// whether any is left (if not, the sweeper stops).
    fn sweep_once(&self, cx: &mut Context<'_>) -> bool {
        let mut idle = self.idle();
        idle.retain_mut(|entry| {
            entry.since.elapsed() < self.idle_timeout
                && entry.connection.driver.as_mut().poll(cx).is_pending()
        });
        if idle.is_empty() {
            // Cleared under the lock: a `put` after this one sees `false` and starts a new sweeper.
            self.sweeping.store(false, Ordering::Release);
            return false;
        }
        true
    }

    /// How many idle connections the pool holds (for tests).
    #[cfg(test)]
    fn idle_count(&self) -> usize {
        self.idle().len()
    }
}

/// The pool's sweeper, until the pool has no idle connection or is gone.
async fn sweep(pool: Weak<Pool>) {
    loop {
        let Some(every) = pool
            .upgrade()
            .map(|pool| SWEEP_EVERY.min(pool.idle_timeout / 2))
        else {
            return;
        };
        tokio::time::sleep(every.max(Duration::from_millis(1))).await;
        let Some(pool) = pool.upgrade() else {
            return;
        };
        if !poll_fn(|cx| Poll::Ready(pool.sweep_once(cx))).await {
            return;
        }
    }
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("origin", &self.origin)
            .field("max_idle", &self.max_idle)
            .field("idle_timeout", &self.idle_timeout)
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

/// Whether a connection taken from the pool can carry a request now: its I/O polled once (an upstream
/// close that arrived meanwhile ends it) and its sender ready.
///
/// The I/O is polled with a waker that does nothing: a usable connection is bound next, which marks the
/// lent connection's driver as woken, so the inbound connection's task polls it with its own waker in this
/// same poll (and an unusable one is dropped). With the request's waker, handing the request over would
/// wake the inbound connection for nothing.
async fn is_usable(connection: &mut UpstreamConnection) -> bool {
    poll_fn(|cx| {
        if connection
            .driver
            .as_mut()
            .poll(&mut Context::from_waker(Waker::noop()))
            .is_ready()
        {
            return Poll::Ready(false);
        }
        Poll::Ready(matches!(
            connection.sender.poll_ready(cx),
            Poll::Ready(Ok(()))
        ))
    })
    .await
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
    pool: Option<Arc<Pool>>,
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
        {
            if responded && sender.is_ready() && !sender.is_closed() {
                pool.put(UpstreamConnection { sender, driver });
            }
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
        if let Some(driver) = state.driver.as_mut() {
            if let Poll::Ready(result) = driver.as_mut().poll(cx) {
                if let Err(error) = result {
                    tracing::debug!(%error, "upstream connection ended with an error");
                }
                state.unbind();
            }
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
    fn bind(&self, pool: &Arc<Pool>, connection: UpstreamConnection) -> SendRequest<ProxyBody> {
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

/// Sends `request` (origin-form URI) over a connection lent to `binding` (idle from `pool`, else new). Sets
/// `Host` to the upstream's. `now` is a moment ago (for the idle connections' age). The caller bounds the
/// wait.
pub async fn send(
    pool: &Arc<Pool>,
    binding: &Binding,
    mut request: Request<ProxyBody>,
    now: Instant,
) -> Result<Response<Incoming>, ProxyError> {
    request.headers_mut().insert(HOST, pool.host.clone());
    let mut retried = false;
    loop {
        let (mut sender, reused) = match pool.checkout_idle(now).await {
            Some(idle) => (binding.bind(pool, idle), true),
            None => {
                let (connection, reused) = Box::pin(pool.connect_or_wait()).await?;
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

    #[test]
    fn a_pool_serves_its_origin_in_any_case_and_nothing_else() {
        let tls = crate::tls::client_config(None).unwrap();
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(HttpConnector::new());
        let authority: Authority = "API.internal:9000".parse().unwrap();
        let pool = Pool::new(
            connector,
            &Scheme::HTTP,
            &authority,
            1,
            Duration::from_secs(1),
        )
        .unwrap();
        let serves = |url: &str| {
            let url: Uri = url.parse().unwrap();
            pool.serves(url.scheme(), url.authority())
        };
        assert!(serves("http://API.internal:9000/base"));
        assert!(serves("HTTP://api.INTERNAL:9000"));
        assert!(!serves("https://API.internal:9000"));
        assert!(!serves("http://API.internal:9001"));
        assert!(!serves("http://API.internal"));
        assert!(!serves("/relative"));
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
        let pool = Arc::new(
            Pool::new(
                connector,
                &Scheme::HTTP,
                &addr.to_string().parse().unwrap(),
                4,
                Duration::from_secs(60),
            )
            .unwrap(),
        );
        let connection = pool.connect().await.unwrap();
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
        assert!(pool.checkout_idle(Instant::now()).await.is_none());
    }
}
