//! Upstream HTTP/1.1 connections bound to inbound HTTP/1 connections, their I/O driven by the inbound
//! connection's own task; and the pool of idle ones between two bindings.
//!
//! An inbound HTTP/1 connection carries one request at a time, so one upstream connection is all it ever
//! needs. It takes one (idle from the pool, or a new one) for its first forwarded request and keeps it until
//! it closes; then the upstream connection goes back to the pool if it is idle and healthy. While bound, the
//! upstream connection's I/O future is polled by the inbound connection's task ([`Binding::drive`], beside
//! hyper's server connection), so a forwarded request costs no task hand-off, no pool lock and no channel
//! wake-up of another task: that is what made hyper-util's pooled client cost ~5 µs per request more here
//! (`BENCHMARKS.md`). HTTP/2 inbound requests (many at once on one connection) and WebSocket upgrades use the
//! shared pooled client instead ([`super::upstream`]).
//!
//! Idle connections in the pool are each watched by a small parked task, so an upstream that closes one
//! frees it at once; an idle connection is closed after `pool_idle_timeout`, and at most
//! `pool_max_idle_per_host` are kept. A request that a reused connection hands back unsent (it closed just
//! then) is sent once more on a new connection; nothing that may have reached the upstream is resent.

use std::collections::VecDeque;
use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Poll, Waker};
use std::time::Duration;

use http::header::{HOST, HeaderValue};
use http::uri::{Authority, Scheme, Uri};
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, Connection, SendRequest};
use hyper_rustls::{HttpsConnector, MaybeHttpsStream};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
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

/// An idle connection in the pool, watched by its parked task.
struct Idle {
    /// `None` once the parked task saw the connection end (or the idle timeout pass).
    connection: Arc<Mutex<Option<UpstreamConnection>>>,
    parked: JoinHandle<()>,
}

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
        })
    }

    /// Whether this pool connects to `scheme://authority`.
    pub fn serves(&self, scheme: Option<&Scheme>, authority: Option<&Authority>) -> bool {
        self.origin.scheme() == scheme && self.origin.authority() == authority
    }

    fn idle(&self) -> MutexGuard<'_, VecDeque<Idle>> {
        // A panic while holding this lock cannot leave the queue half-updated: every critical section is a
        // single push, pop or retain.
        self.idle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The newest idle connection that is still alive, polled once in `cx` to be sure.
    async fn checkout_idle(&self) -> Option<UpstreamConnection> {
        loop {
            let entry = self.idle().pop_back()?;
            entry.parked.abort();
            let taken = lock(&entry.connection).take();
            let Some(mut connection) = taken else {
                continue;
            };
            if is_usable(&mut connection).await {
                return Some(connection);
            }
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

    /// Parks an idle, healthy connection (or closes it, if the pool is full).
    fn put(self: &Arc<Self>, connection: UpstreamConnection) {
        if self.max_idle == 0 {
            return;
        }
        let mut idle = self.idle();
        idle.retain(|entry| !entry.parked.is_finished());
        if idle.len() >= self.max_idle {
            return;
        }
        let connection = Arc::new(Mutex::new(Some(connection)));
        let parked = tokio::spawn(park(Arc::clone(&connection), self.idle_timeout));
        idle.push_back(Idle { connection, parked });
    }

    /// How many idle connections the pool holds (for tests).
    #[cfg(test)]
    fn idle_count(&self) -> usize {
        let mut idle = self.idle();
        idle.retain(|entry| !entry.parked.is_finished());
        idle.len()
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        for entry in self.idle().drain(..) {
            entry.parked.abort();
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

/// An idle connection's watch: ends it when the upstream closes it or after `idle_timeout`.
async fn park(connection: Arc<Mutex<Option<UpstreamConnection>>>, idle_timeout: Duration) {
    let ended = poll_fn(|cx| {
        let mut slot = lock(&connection);
        match slot.as_mut() {
            None => Poll::Ready(()),
            Some(open) => match open.driver.as_mut().poll(cx) {
                Poll::Ready(_) => {
                    *slot = None;
                    Poll::Ready(())
                }
                Poll::Pending => Poll::Pending,
            },
        }
    });
    let _ = tokio::time::timeout(idle_timeout, ended).await;
    lock(&connection).take();
}

/// Whether a connection taken from the pool can carry a request now: its I/O polled once (an upstream
/// close that arrived meanwhile ends it) and its sender ready.
async fn is_usable(connection: &mut UpstreamConnection) -> bool {
    poll_fn(|cx| {
        if connection.driver.as_mut().poll(cx).is_ready() {
            return Poll::Ready(false);
        }
        Poll::Ready(matches!(
            connection.sender.poll_ready(cx),
            Poll::Ready(Ok(()))
        ))
    })
    .await
}

/// The upstream connection bound to one inbound HTTP/1 connection, shared by its requests and its task.
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
    /// Whether a request was handed to the bound connection since the idle check last looked (a flag
    /// rather than a time: no clock read per request).
    used: bool,
}

impl Bound {
    fn unbind(&mut self) {
        self.pool = None;
        self.sender = None;
        self.driver = None;
    }

    /// Unbinds; the connection goes back to its pool if no request is on it and it is healthy.
    fn release(&mut self) {
        if let (Some(pool), Some(sender), Some(driver)) =
            (self.pool.take(), self.sender.take(), self.driver.take())
        {
            if sender.is_ready() && !sender.is_closed() {
                pool.put(UpstreamConnection { sender, driver });
            }
        }
    }
}

/// How long (between one and two of these) an upstream connection stays bound to an inbound connection that
/// sends no request (at most `pool_idle_timeout`): long enough that a busy keep-alive client keeps its connection from one request to
/// the next, short enough that the upstream connections in use follow the requests in flight, not the
/// clients connected (a burst of new clients takes the connections of clients that went quiet).
pub const BOUND_IDLE: Duration = Duration::from_millis(50);

/// [`Binding::drive`]'s future.
pub struct Drive<'a> {
    binding: &'a Binding,
    /// Armed while a connection is bound: when it fires, an idle connection is handed back.
    idle_check: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl Future for Drive<'_> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<()> {
        let binding = self.binding;
        let mut state = binding.state();
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
                    tracing::debug!(%error, "bound upstream connection ended with an error");
                }
                state.unbind();
            }
        }
        let Some(pool) = state.pool.clone() else {
            self.idle_check = None;
            return Poll::Pending;
        };
        let grace = BOUND_IDLE.min(pool.idle_timeout);
        let check = self
            .idle_check
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(grace)));
        while check.as_mut().poll(cx).is_ready() {
            // A request or response on it (its sender is out or not ready for the next one), or used
            // since the last look: look again one grace later. So a connection goes back between one and
            // two graces after its last request.
            let busy = !state.sender.as_ref().is_some_and(SendRequest::is_ready);
            if busy || std::mem::take(&mut state.used) {
                check.as_mut().reset(tokio::time::Instant::now() + grace);
                continue;
            }
            state.release();
            self.idle_check = None;
            break;
        }
        Poll::Pending
    }
}

// === impl Binding ===

impl Binding {
    fn state(&self) -> MutexGuard<'_, Bound> {
        lock(&self.state)
    }

    /// Drives the bound connection's I/O and hands it back to the pool once this inbound connection has
    /// been idle for [`BOUND_IDLE`]; never completes. The inbound connection's task polls this beside its
    /// server connection.
    pub fn drive(&self) -> Drive<'_> {
        Drive {
            binding: self,
            idle_check: None,
        }
    }

    /// When the inbound connection has closed: the upstream connection goes back to its pool if it is idle
    /// and healthy, else it is closed.
    pub fn release(&self) {
        self.state().release();
    }

    /// The bound sender if it belongs to `pool`; a connection of another pool is closed.
    fn take_sender(&self, pool: &Arc<Pool>) -> Option<SendRequest<ProxyBody>> {
        let mut state = self.state();
        match &state.pool {
            Some(bound) if Arc::ptr_eq(bound, pool) => state.sender.take(),
            Some(_) => {
                state.unbind();
                None
            }
            None => None,
        }
    }

    /// Binds `connection` (closing any other) and returns its sender; wakes the task to drive it.
    fn bind(&self, pool: &Arc<Pool>, connection: UpstreamConnection) -> SendRequest<ProxyBody> {
        let mut state = self.state();
        state.pool = Some(Arc::clone(pool));
        state.driver = Some(connection.driver);
        if let Some(waker) = &state.waker {
            waker.wake_by_ref();
        }
        connection.sender
    }

    /// Returns the sender after a request was handed over (unless the connection ended meanwhile).
    fn put_back(&self, sender: SendRequest<ProxyBody>) {
        let mut state = self.state();
        if state.driver.is_some() {
            state.sender = Some(sender);
            state.used = true;
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

/// Sends `request` (origin-form URI) over the connection bound to `binding`, binding one first if needed
/// (idle from `pool`, else new). Sets `Host` to the upstream's. The caller bounds the wait.
pub async fn send(
    pool: &Arc<Pool>,
    binding: &Binding,
    mut request: Request<ProxyBody>,
) -> Result<Response<Incoming>, ProxyError> {
    request.headers_mut().insert(HOST, pool.host.clone());
    let mut retried = false;
    loop {
        let (mut sender, reused) = match binding.take_sender(pool) {
            Some(sender) => (sender, true),
            None => match pool.checkout_idle().await {
                Some(idle) => (binding.bind(pool, idle), true),
                // Boxed: connecting is rare on this path and its future is large; unboxed it would be
                // moved with every request's future.
                None => (binding.bind(pool, Box::pin(pool.connect()).await?), false),
            },
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
            Ok(response) => return Ok(response),
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
        for _ in 0..200 {
            if pool.idle_count() == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(pool.idle_count(), 0);
        assert!(pool.checkout_idle().await.is_none());
    }
}
