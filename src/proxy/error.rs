//! Everything that can stop a request from being forwarded, and the one function that turns it into the
//! answer the client gets (linkerd's `inbound/src/http/server.rs`, pingora's error type).
//!
//! Each variant records who caused it (`Side`): the client (400/403), the upstream (502/504), the
//! gateway itself (503). Only this module and `crate::answer` pick status codes. Messages never contain a
//! credential: upstream errors are described by kind, not by the URL they were for.

use std::time::Duration;

use http::header::{CONTENT_TYPE, HeaderValue};
use http::{Response, StatusCode};

use super::body::{self, BoxError, ClientBodyError, ProxyBody};
use super::framing::FramingError;
use super::headers::REQUEST_ID;
use super::upgrade::UpgradeError;
use super::upstream_auth::UpstreamAuthError;
use crate::answer::Answer;
use crate::pipeline::RenderedRefusal;
use crate::tls::TlsError;

/// Who caused a failure: for logs and metrics (bounded).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Client,
    Upstream,
    Gateway,
}

impl Side {
    /// A stable label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Client => "client",
            Self::Upstream => "upstream",
            Self::Gateway => "gateway",
        }
    }
}

/// Why the gateway answers a request itself.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// The decision refused the request (400, 403).
    #[error("refused: {}", .0.reason)]
    Refused(Box<RenderedRefusal>),
    /// The request's framing headers are ambiguous (400).
    #[error("rejected framing: {0}")]
    Framing(#[from] FramingError),
    /// An `Upgrade` offer the gateway refuses (400; see [`super::upgrade`]).
    #[error("rejected upgrade: {0}")]
    Upgrade(#[from] UpgradeError),
    /// The client broke its own request body (400/1204) or was too slow sending it (408/1203). Never an
    /// upstream failure, whatever the upstream exchange reported.
    #[error("client body: {0}")]
    ClientBody(ClientBodyError),
    /// A request the gateway authorized but cannot express towards the upstream (400).
    #[error("cannot forward this {0}")]
    Unforwardable(&'static str),
    /// The upstream could not be reached, refused, or broke the exchange (502).
    #[error("upstream {}: {source}", if *.connect { "unreachable" } else { "failed" })]
    Upstream {
        connect: bool,
        #[source]
        source: BoxError,
    },
    /// The upstream answered `101 Switching Protocols` to something other than a WebSocket offer, or
    /// switched to another protocol than `websocket` (502; the exchange is dropped, never tunnelled).
    #[error("upstream switched protocols for {0}")]
    UnexpectedSwitch(&'static str),
    /// No response head within the response timeout (504).
    #[error("upstream sent no response within {0:?}")]
    UpstreamTimeout(Duration),
    /// Over the connection limit (503).
    #[error("over the connection limit")]
    Overloaded,
    /// TLS material for the upstream client could not be loaded.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The upstream's own credential (`upstream.auth`) could not be read (names the source, never the
    /// value).
    #[error(transparent)]
    UpstreamAuth(#[from] UpstreamAuthError),
    /// `upstream.auth` is set but no credential could be read for it (a reload added it and the read
    /// failed): the request is not forwarded without it (502).
    #[error("the upstream credential (upstream.auth) is not available")]
    NoUpstreamCredential,
}

// === impl ProxyError ===

impl ProxyError {
    /// Who caused it.
    pub fn side(&self) -> Side {
        match self {
            Self::Refused(_)
            | Self::Framing(_)
            | Self::Upgrade(_)
            | Self::ClientBody(_)
            | Self::Unforwardable(_) => Side::Client,
            Self::Upstream { .. } | Self::UnexpectedSwitch(_) | Self::UpstreamTimeout(_) => {
                Side::Upstream
            }
            Self::Overloaded
            | Self::Tls(_)
            | Self::UpstreamAuth(_)
            | Self::NoUpstreamCredential => Side::Gateway,
        }
    }

    /// A bounded label for logs and metrics (`permgate_upstream_errors_total{kind}`).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Refused(_) => "refused",
            Self::Framing(_) => "framing",
            Self::Upgrade(_) => "upgrade",
            Self::ClientBody(ClientBodyError::Broken) => "body_broken",
            Self::ClientBody(ClientBodyError::TimedOut) => "body_timeout",
            Self::Unforwardable(_) => "unforwardable",
            Self::Upstream { connect: true, .. } => "connect",
            Self::Upstream { connect: false, .. } => "exchange",
            Self::UnexpectedSwitch(_) => "switch",
            Self::UpstreamTimeout(_) => "timeout",
            Self::Overloaded => "overloaded",
            Self::Tls(_) => "tls",
            Self::UpstreamAuth(_) | Self::NoUpstreamCredential => "upstream_credential",
        }
    }

    /// Whether the client's HTTP/1 connection must close after this answer: its framing or its protocol is
    /// in doubt (an ambiguous or unjudged head, a refused upgrade offer, a body that broke or stalled, an
    /// upstream that switched protocols), so no further request may be read from it.
    pub fn closes_connection(&self) -> bool {
        matches!(
            self,
            Self::Framing(_) | Self::Upgrade(_) | Self::ClientBody(_) | Self::UnexpectedSwitch(_)
        )
    }

    /// The answer for this error. A TLS setup error can only happen before serving; if it ever reached a
    /// request it means the upstream cannot be used, so it answers like an unreachable upstream, and so does
    /// a missing upstream credential (the upstream cannot be called as configured).
    pub fn answer(&self) -> Answer {
        match self {
            Self::Refused(refusal) => refusal.answer.clone(),
            Self::Framing(error) => Answer::rejected_request(error.to_string()),
            Self::Upgrade(error) => Answer::rejected_request(error.to_string()),
            Self::ClientBody(ClientBodyError::Broken) => Answer::broken_body(),
            Self::ClientBody(ClientBodyError::TimedOut) => Answer::body_timeout(),
            Self::Unforwardable(what) => {
                Answer::rejected_request(format!("cannot forward this {what}"))
            }
            Self::Upstream { .. }
            | Self::UnexpectedSwitch(_)
            | Self::Tls(_)
            | Self::UpstreamAuth(_)
            | Self::NoUpstreamCredential => Answer::upstream_unavailable(),
            Self::UpstreamTimeout(_) => Answer::upstream_timeout(),
            Self::Overloaded => Answer::overloaded(),
        }
    }
}

/// The one place an error becomes a response: the Cloudflare envelope, its status, `Content-Type` and
/// `X-Request-Id`. `explain` is `explain_denials`.
pub fn error_response(
    error: &ProxyError,
    request_id: &HeaderValue,
    explain: bool,
) -> Response<ProxyBody> {
    let answer = error.answer();
    let body = match error {
        ProxyError::Refused(refusal) => refusal.body.clone(),
        _ => answer.body(None, explain),
    };
    let mut response = json_response(answer.status, body);
    response
        .headers_mut()
        .insert(REQUEST_ID, request_id.clone());
    response
}

/// A JSON response with `status` (500 if it is not a valid status code: it always is, as they come from
/// `Answer`'s fixed table).
pub fn json_response(status: u16, body: String) -> Response<ProxyBody> {
    let mut response = Response::new(body::full(body));
    *response.status_mut() =
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    async fn text(response: Response<ProxyBody>) -> String {
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn each_error_maps_to_its_envelope() {
        let id = HeaderValue::from_static("rid");
        let cases = [
            (
                ProxyError::UpstreamTimeout(Duration::from_secs(1)),
                504,
                1201,
            ),
            (
                ProxyError::Upstream {
                    connect: true,
                    source: "refused".into(),
                },
                502,
                1200,
            ),
            (ProxyError::Overloaded, 503, 1202),
            (ProxyError::ClientBody(ClientBodyError::Broken), 400, 1204),
            (ProxyError::ClientBody(ClientBodyError::TimedOut), 408, 1203),
            (
                ProxyError::Framing(FramingError::LengthAndEncoding),
                400,
                6003,
            ),
        ];
        for (error, status, code) in cases {
            let response = error_response(&error, &id, true);
            assert_eq!(response.status().as_u16(), status);
            assert_eq!(response.headers()["content-type"], "application/json");
            assert_eq!(response.headers()["x-request-id"], "rid");
            let body = text(response).await;
            assert!(
                body.starts_with(&format!(r#"{{"success":false,"errors":[{{"code":{code},"#)),
                "{body}"
            );
        }
        let body = text(error_response(
            &ProxyError::Framing(FramingError::DifferingLengths),
            &id,
            false,
        ))
        .await;
        assert_eq!(
            body,
            r#"{"success":false,"errors":[{"code":6003,"message":"Invalid request headers","error_chain":[{"code":6100,"message":"several differing Content-Length values"}]}],"messages":[],"result":null}"#
        );
    }
}
