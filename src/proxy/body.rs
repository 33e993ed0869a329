//! The body type the proxy sends both ways: any streaming body, boxed, so forwarded bodies are passed
//! through frame by frame and never collected whole.

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};

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
