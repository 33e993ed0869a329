//! The accept loop: connection limit, TLS handshake, HTTP/1.1 + HTTP/2 serving, slow-client cut-off and
//! graceful shutdown.
//!
//! [`serve`] takes an already-bound listener and a shutdown future (mini-redis style), so tests bind
//! `127.0.0.1:0` and stop the server whenever they like. One connection is one task:
//!
//! - **Limit.** `max_connections` permits. A connection over the limit is still answered, once, with
//!   503/1202 and `Connection: close` (so clients see why instead of a reset); at most [`OVERFLOW_LIMIT`]
//!   such answers are in progress at a time, beyond that the connection is closed at once.
//! - **TLS.** The handshake must finish within `header_read_timeout`.
//! - **Protocol.** hyper-util's auto builder: HTTP/2 when the client starts with the HTTP/2 preface (chosen
//!   by ALPN `h2` over TLS, or h2c prior knowledge in plain text), HTTP/1.1 otherwise, upgrades enabled.
//! - **Slow clients.** HTTP/1 heads must arrive within `header_read_timeout` (hyper's timer, which also
//!   bounds idle keep-alive). Because the protocol sniffing before that has no timer, the gateway adds
//!   one: a connection that has not produced its first request within `header_read_timeout` of being
//!   ready is closed. Request bodies must arrive within `request_body_timeout` (the service's
//!   `ClientBody`).
//! - **Idle HTTP/2.** hyper keeps an HTTP/2 connection open as long as its client answers pings, so one
//!   client could hold every connection slot with idle connections. A connection whose streams have all
//!   been closed for `http2_idle_timeout` is asked to finish (GOAWAY); a stream counts as open from its
//!   request until its response body is done.
//! - **Shutdown.** When `shutdown` resolves the listener is dropped (no new connections), every connection
//!   is told to finish (HTTP/1 closes after the in-flight response, HTTP/2 sends GOAWAY), and `serve`
//!   waits up to `shutdown_grace` for them.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use http::header::{CONNECTION, HeaderValue};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_rustls::TlsAcceptor;

use super::body::{BoxError, ProxyBody};
use super::bound::{Binding, UpstreamLane};
use super::context::ConnInfo;
use super::error::{ProxyError, error_response};
use super::framing::FramingTap;
use super::pair::Pair;
use super::request_id;
use super::service::Gateway;
use super::shutdown::{Shutdown, Watcher};
use crate::metrics::{ConnectionGuard, DecisionLabel, NO_ROUTE};

/// How many over-the-limit connections may be getting their 503 at once.
pub const OVERFLOW_LIMIT: usize = 64;

/// How `serve` ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drain {
    /// Every connection finished within the grace period.
    Complete,
    /// The grace period ran out; the remaining connections were dropped.
    GraceElapsed { remaining: usize },
}

/// Connection-level settings, read once when serving starts (they need a restart to change).
#[derive(Debug, Clone, Copy)]
struct Limits {
    header_read_timeout: Duration,
    http2_idle_timeout: Duration,
    max_connections: usize,
    shutdown_grace: Duration,
}

/// What every connection task shares.
struct Shared {
    gateway: Arc<Gateway>,
    tls: Option<TlsAcceptor>,
    builder: auto::Builder<TokioExecutor>,
    overload_builder: auto::Builder<TokioExecutor>,
    limits: Limits,
}

/// Serves the gateway on `listener` (TLS when `tls` is given) until `shutdown` resolves, then drains.
pub async fn serve(
    gateway: Arc<Gateway>,
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    shutdown: impl Future<Output = ()>,
) -> Drain {
    let limits = {
        let snapshot = gateway.snapshot();
        Limits {
            header_read_timeout: snapshot.settings.header_read_timeout,
            http2_idle_timeout: snapshot.settings.http2_idle_timeout,
            max_connections: snapshot.settings.max_connections,
            shutdown_grace: snapshot.settings.shutdown_grace,
        }
    };
    let builder = connection_builder(limits.header_read_timeout, true);
    let overload_builder = connection_builder(limits.header_read_timeout, false);
    let shared = Arc::new(Shared {
        gateway,
        tls: tls.map(TlsAcceptor::from),
        builder,
        overload_builder,
        limits,
    });
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let overflow = Arc::new(Semaphore::new(OVERFLOW_LIMIT));
    let graceful = Shutdown::new();
    tokio::pin!(shutdown);

    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::warn!(%error, "accept failed");
                // Out of file descriptors and the like: back off instead of spinning.
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let admission = match Arc::clone(&permits).try_acquire_owned() {
            Ok(permit) => Admission {
                overloaded: false,
                _permit: permit,
                _counted: shared.gateway.metrics().connection_opened(),
            },
            Err(_) => match Arc::clone(&overflow).try_acquire_owned() {
                Ok(permit) => Admission {
                    overloaded: true,
                    _permit: permit,
                    _counted: shared.gateway.metrics().connection_opened(),
                },
                Err(_) => {
                    tracing::debug!(%peer, "over the connection limit: closing");
                    continue;
                }
            },
        };
        let conn = ConnInfo::new(peer, shared.tls.is_some());
        tokio::spawn(connection(
            Arc::clone(&shared),
            stream,
            conn,
            admission,
            graceful.watcher(),
        ));
    }

    drop(listener);
    tracing::info!(
        connections = graceful.count(),
        "shutting down: draining connections"
    );
    let remaining = graceful.count();
    match tokio::time::timeout(limits.shutdown_grace, graceful.shutdown()).await {
        Ok(()) => Drain::Complete,
        Err(_) => {
            tracing::warn!(
                remaining,
                "shutdown grace elapsed with connections still open"
            );
            Drain::GraceElapsed { remaining }
        }
    }
}

/// A connection's slot: a normal one, or one of the few over-the-limit answers. Holding it holds the
/// permit; dropping it (when the connection task ends) frees the slot.
struct Admission {
    overloaded: bool,
    _permit: OwnedSemaphorePermit,
    /// Counts the connection in `permgate_active_connections` until it ends.
    _counted: ConnectionGuard,
}

fn connection_builder(
    header_read_timeout: Duration,
    keep_alive: bool,
) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout)
        .keep_alive(keep_alive);
    builder
        .http2()
        .timer(TokioTimer::new())
        // Detects dead peers on idle HTTP/2 connections.
        .keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(Duration::from_secs(10));
    builder
}

/// One connection: TLS handshake (bounded), then HTTP until it closes.
async fn connection(
    shared: Arc<Shared>,
    stream: TcpStream,
    conn: ConnInfo,
    admission: Admission,
    watcher: Watcher,
) {
    let timeout = shared.limits.header_read_timeout;
    match &shared.tls {
        None => drive(&shared, stream, conn, &admission, watcher).await,
        Some(acceptor) => match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
            Ok(Ok(tls)) => drive(&shared, tls, conn, &admission, watcher).await,
            Ok(Err(error)) => tracing::debug!(peer = %conn.peer, %error, "TLS handshake failed"),
            Err(_) => tracing::debug!(peer = %conn.peer, "TLS handshake timed out"),
        },
    }
    // The permit is released here, when the connection is gone.
    drop(admission);
}

async fn drive<I>(shared: &Shared, io: I, conn: ConnInfo, admission: &Admission, watcher: Watcher)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let peer = conn.peer;
    let result = if admission.overloaded {
        answer_overloaded(shared, io, watcher).await
    } else {
        serve_gateway(shared, io, conn, watcher).await
    };
    if let Err(error) = result {
        tracing::debug!(%peer, %error, "connection ended with an error");
    }
}

async fn serve_gateway<I>(
    shared: &Shared,
    io: I,
    mut conn: ConnInfo,
    watcher: Watcher,
) -> Result<(), BoxError>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    // The client's bytes feed the framing tap on their way to hyper; the lane lends this connection's
    // HTTP/1 exchanges an upstream connection, driven below by this task.
    let (framing, io) = FramingTap::tap(io);
    conn.framing = framing;
    let binding = Arc::new(Binding::default());
    conn.lane = UpstreamLane::lending(&binding);
    let peer = conn.peer;
    let timeout = shared.limits.header_read_timeout;
    let idle_timeout = shared.limits.http2_idle_timeout;
    let started = Arc::new(AtomicBool::new(false));
    let activity = Arc::new(StreamActivity::new());
    let gateway = Arc::clone(&shared.gateway);
    let seen = Arc::clone(&started);
    let streams = Arc::clone(&activity);
    let conn = Arc::new(conn);
    let service = service_fn(move |request: http::Request<hyper::body::Incoming>| {
        seen.store(true, Ordering::Relaxed);
        let gateway = Arc::clone(&gateway);
        let conn = Arc::clone(&conn);
        // HTTP/2 streams are counted open until their response body is done (HTTP/1 idles on hyper's timer).
        let open = (request.version() == http::Version::HTTP_2).then(|| streams.opened());
        async move {
            let response = gateway.handle(request, &conn).await;
            Ok::<_, Infallible>(match open {
                Some(open) => {
                    response.map(|body| super::body::stream(Tracked { body, _open: open }))
                }
                None => response,
            })
        }
    });
    let connection = watcher.watch(
        shared
            .builder
            .serve_connection_with_upgrades(TokioIo::new(io), service),
        |connection| connection.graceful_shutdown(),
    );
    // The I/O of the upstream connection lent to this connection's exchange is driven here, by this
    // connection's task, beside hyper's; each of the two is polled when it was woken.
    let served = Pair::new(connection, binding.drive());
    tokio::pin!(served);
    // The first request must start within `header_read_timeout`. Once one has, the deadline is dropped: a
    // pending timer would otherwise be polled again on every wake-up of this connection's task.
    let mut first_request_deadline = Some(Box::pin(tokio::time::sleep(timeout)));
    // Made once the connection is known to be HTTP/2; dropped once the connection was asked to finish.
    let mut idle_timer: Option<Pin<Box<tokio::time::Sleep>>> = None;
    let mut idle_closing = false;
    let served_or_timed_out = std::future::poll_fn(|cx| {
        if let Poll::Ready(result) = served.as_mut().poll(cx) {
            return Poll::Ready(Some(result));
        }
        if let Some(deadline) = first_request_deadline.as_mut() {
            if started.load(Ordering::Relaxed) {
                first_request_deadline = None;
            } else if deadline.as_mut().poll(cx).is_ready() {
                return Poll::Ready(None);
            }
        }
        if !idle_closing && activity.is_http2() {
            let timer =
                idle_timer.get_or_insert_with(|| Box::pin(tokio::time::sleep(idle_timeout)));
            while timer.as_mut().poll(cx).is_ready() {
                let now = tokio::time::Instant::now();
                match activity.idle_for(now) {
                    Some(idle) if idle >= idle_timeout => {
                        tracing::debug!(%peer, ?idle, "idle HTTP/2 connection: closing");
                        served.as_mut().get_mut().first_mut().finish();
                        idle_closing = true;
                        idle_timer = None;
                        // `first_mut` marked the connection woken: the pair polls it again at once, so it
                        // sends its GOAWAY.
                        break;
                    }
                    Some(idle) => timer.as_mut().reset(now + (idle_timeout - idle)),
                    // Streams are open: look again a whole timeout later.
                    None => timer.as_mut().reset(now + idle_timeout),
                }
            }
        }
        Poll::Pending
    })
    .await;
    let result = served_or_timed_out.unwrap_or_else(|| {
        tracing::debug!(%peer, "no request within header_read_timeout: closing");
        Ok(())
    });
    binding.release();
    result
}

/// The open streams of one connection and when the last of them closed: what the HTTP/2 idle timeout
/// watches. Only HTTP/2 requests are counted.
#[derive(Debug)]
struct StreamActivity {
    open: AtomicUsize,
    http2: AtomicBool,
    /// When the connection was served: the origin of `idle_since_ms`.
    epoch: tokio::time::Instant,
    /// When the open count last fell to zero, in milliseconds since `epoch`.
    idle_since_ms: AtomicU64,
}

impl StreamActivity {
    fn new() -> Self {
        Self {
            open: AtomicUsize::new(0),
            http2: AtomicBool::new(false),
            epoch: tokio::time::Instant::now(),
            idle_since_ms: AtomicU64::new(0),
        }
    }

    /// Counts a stream open until the returned guard is dropped.
    fn opened(self: &Arc<Self>) -> OpenStream {
        self.http2.store(true, Ordering::Relaxed);
        self.open.fetch_add(1, Ordering::AcqRel);
        OpenStream(Arc::clone(self))
    }

    fn is_http2(&self) -> bool {
        self.http2.load(Ordering::Relaxed)
    }

    /// How long no stream has been open at `now`; `None` while one is.
    fn idle_for(&self, now: tokio::time::Instant) -> Option<Duration> {
        if self.open.load(Ordering::Acquire) > 0 {
            return None;
        }
        let since = Duration::from_millis(self.idle_since_ms.load(Ordering::Acquire));
        Some(
            now.saturating_duration_since(self.epoch)
                .saturating_sub(since),
        )
    }
}

/// One open HTTP/2 stream; dropping it (when the response body is done or the stream was reset) closes it.
#[derive(Debug)]
struct OpenStream(Arc<StreamActivity>);

impl Drop for OpenStream {
    fn drop(&mut self) {
        let activity = &self.0;
        let now = tokio::time::Instant::now().saturating_duration_since(activity.epoch);
        activity.idle_since_ms.store(
            u64::try_from(now.as_millis()).unwrap_or(u64::MAX),
            Ordering::Release,
        );
        activity.open.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A response body that keeps its stream counted open until it is dropped.
struct Tracked {
    body: ProxyBody,
    _open: OpenStream,
}

impl hyper::body::Body for Tracked {
    type Data = bytes::Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<bytes::Bytes>, BoxError>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}

/// Over the limit: one 503/1202 answer with `Connection: close`, within `header_read_timeout` at most.
async fn answer_overloaded<I>(shared: &Shared, io: I, watcher: Watcher) -> Result<(), BoxError>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let explain = shared.gateway.snapshot().settings.explain_denials;
    let metrics = Arc::clone(shared.gateway.metrics());
    let service = service_fn(move |request: http::Request<hyper::body::Incoming>| {
        let started = std::time::Instant::now();
        let id = request_id::generate();
        let mut response = error_response(&ProxyError::Overloaded, &id, explain);
        response
            .headers_mut()
            .insert(CONNECTION, HeaderValue::from_static("close"));
        // No decision was made: counted, not logged (the decision log is for decisions).
        metrics.request(
            NO_ROUTE,
            request.method(),
            DecisionLabel::None,
            response.status().as_u16(),
            started.elapsed(),
        );
        async move { Ok::<_, Infallible>(response) }
    });
    let served = watcher.watch(
        shared
            .overload_builder
            .serve_connection(TokioIo::new(io), service),
        |connection| connection.graceful_shutdown(),
    );
    tokio::time::timeout(shared.limits.header_read_timeout, served)
        .await
        .unwrap_or(Ok(()))
}
