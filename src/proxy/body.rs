//! The body type the proxy sends both ways: any streaming body, boxed, so forwarded bodies are passed
//! through frame by frame and never collected whole; and the inbound request body as forwarded, which keeps
//! to a deadline and remembers whether the client broke it.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use tokio::time::{Instant, Sleep};

/// Any error a body may yield.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The one body type of the proxy (requests to the upstream and responses to clients).
pub type ProxyBody = UnsyncBoxBody<Bytes, BoxError>;

/// Boxes a streaming body (such as hyper's `Incoming`) without reading it.
pub fn stream<B>(body: B) -> ProxyBody
where
    B: hyper::body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    body.map_err(Into::into).boxed_unsync()
}

/// A complete, in-memory body (the gateway's own answers).
pub fn full(bytes: impl Into<Bytes>) -> ProxyBody {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// How the client failed its request body: its fault, never the upstream's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ClientBodyError {
    /// The body could not be read: a malformed chunk, a body shorter than its `Content-Length`, the client
    /// hanging up or resetting its stream mid-body.
    #[error("the request body is malformed or incomplete")]
    Broken,
    /// The whole body did not arrive within `request_body_timeout_ms` of the decision.
    #[error("the request body did not arrive in time")]
    TimedOut,
}

/// What the forwarding learns from a [`ClientBody`] after the exchange: whether the client broke it, and
/// whether it was waiting for the client's next bytes when the exchange ended.
#[derive(Debug, Clone, Default)]
pub struct ClientBodyWatch(Arc<WatchState>);

#[derive(Debug, Default)]
struct WatchState {
    failure: AtomicU8,
    awaiting_client: AtomicBool,
}

const INTACT: u8 = 0;
const BROKEN: u8 = 1;
const TIMED_OUT: u8 = 2;

impl ClientBodyWatch {
    /// How the client failed its body, if it did.
    pub fn failure(&self) -> Option<ClientBodyError> {
        match self.0.failure.load(Ordering::Acquire) {
            BROKEN => Some(ClientBodyError::Broken),
            TIMED_OUT => Some(ClientBodyError::TimedOut),
            _ => None,
        }
    }

    fn record(&self, error: ClientBodyError) {
        let value = match error {
            ClientBodyError::Broken => BROKEN,
            ClientBodyError::TimedOut => TIMED_OUT,
        };
        // The first failure is the one that counts.
        let _ = self
            .0
            .failure
            .compare_exchange(INTACT, value, Ordering::AcqRel, Ordering::Acquire);
    }

    /// Whether the body was last left waiting for the client's bytes (not for the upstream to take them):
    /// an exchange that timed out then was held up by the client.
    pub fn awaiting_client(&self) -> bool {
        self.0.awaiting_client.load(Ordering::Acquire)
    }

    fn set_awaiting_client(&self, awaiting: bool) {
        self.0.awaiting_client.store(awaiting, Ordering::Release);
    }
}

/// The inbound request body on its way to the upstream: hyper's stream, cut off with
/// [`ClientBodyError::TimedOut`] when it has not ended by `deadline`, and reporting any failure of its own to
/// its [`ClientBodyWatch`] (so a client's broken body is told apart from an upstream failure). The timer is
/// only made when the body is not all there when first read, so a body that came with its head costs none.
pub struct ClientBody {
    inner: Incoming,
    deadline: Instant,
    timer: Option<Pin<Box<Sleep>>>,
    watch: ClientBodyWatch,
    done: bool,
}

impl ClientBody {
    /// Wraps `inner`, which must end by `deadline`; the returned watch tells afterwards how it went.
    pub fn new(inner: Incoming, deadline: Instant) -> (Self, ClientBodyWatch) {
        let watch = ClientBodyWatch::default();
        let body = Self {
            inner,
            deadline,
            timer: None,
            watch: watch.clone(),
            done: false,
        };
        (body, watch)
    }

    fn fail(&mut self, error: ClientBodyError) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.done = true;
        self.timer = None;
        self.watch.record(error);
        Poll::Ready(Some(Err(Box::new(error))))
    }
}

impl Body for ClientBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        this.watch.set_awaiting_client(polled.is_pending());
        match polled {
            Poll::Ready(Some(Ok(frame))) => Poll::Ready(Some(Ok(frame))),
            Poll::Ready(Some(Err(_))) => this.fail(ClientBodyError::Broken),
            Poll::Ready(None) => {
                this.done = true;
                this.timer = None;
                Poll::Ready(None)
            }
            Poll::Pending => {
                let deadline = this.deadline;
                let timer = this
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                match timer.as_mut().poll(cx) {
                    Poll::Ready(()) => this.fail(ClientBodyError::TimedOut),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
