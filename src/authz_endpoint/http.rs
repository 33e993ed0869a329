//! The HTTP decision listeners: nginx `auth_request`, Traefik/Caddy/APISIX forward-auth and Envoy's
//! `ext_authz` HTTP service. Any path is answered (operators choose their own location names); the body of
//! a decision request is never read.
//!
//! | protocol         | allow                     | deny                                                     |
//! |------------------|---------------------------|----------------------------------------------------------|
//! | `auth_request`   | 200 + identity headers    | 403 (nginx passes only 2xx, 401, 403), the real status and code in `X-Permgate-Status` / `X-Permgate-Code`, the envelope in `X-Permgate-Envelope` and the body |
//! | `forward_auth`   | 200 + identity headers (an unknown one empty) | the real status and the envelope (the proxy passes it on) |
//! | `ext_authz_http` | 200 + identity headers, `x-envoy-auth-headers-to-remove` naming the credential headers (unless `forward_credentials`) | the real status and the envelope |
//!
//! The identity headers are the ones the inline proxy sets upstream: `X-Permgate-Principal`,
//! `X-Permgate-Token-Id`, `X-Permgate-Account` (each when known) and `X-Request-Id`.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use super::original;
use crate::proxy::headers::{ACCOUNT, PRINCIPAL, REQUEST_ID, TOKEN_ID};
use crate::proxy::{ConnInfo, Delegated, Gateway, Original};
use crate::settings::{DecisionListener, DecisionProtocol};

/// The real status of a denial, for `auth_request` (whose answer is always 403).
pub const STATUS: HeaderName = HeaderName::from_static("x-permgate-status");
/// The code of a denial.
pub const CODE: HeaderName = HeaderName::from_static("x-permgate-code");
/// The envelope of a denial, for nginx's `error_page` to answer with (`auth_request` only).
pub const ENVELOPE: HeaderName = HeaderName::from_static("x-permgate-envelope");
/// Envoy's `ext_authz` HTTP service: the request headers for Envoy to remove before forwarding.
const ENVOY_HEADERS_TO_REMOVE: HeaderName =
    HeaderName::from_static("x-envoy-auth-headers-to-remove");
/// The credential headers a decision asks the proxy in front to remove (unless `forward_credentials`).
pub const CREDENTIAL_HEADERS: [&str; 3] = ["authorization", "x-auth-key", "x-auth-email"];

/// How long the listener waits for requests in flight when it stops.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// Serves decision requests of `listener`'s protocol until `stopped`.
pub(super) async fn serve(
    socket: TcpListener,
    listener: DecisionListener,
    gateway: Arc<Gateway>,
    mut stopped: oneshot::Receiver<()>,
) {
    let listener = Arc::new(listener);
    let graceful = GracefulShutdown::new();
    let header_read_timeout = gateway.snapshot().settings.header_read_timeout;
    loop {
        let (stream, peer) = tokio::select! {
            accepted = socket.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, protocol = listener.protocol.as_str(), "decision listener: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut stopped => break,
        };
        let conn = Arc::new(ConnInfo::new(peer, false));
        let (gateway, listener) = (Arc::clone(&gateway), Arc::clone(&listener));
        let service = service_fn(move |request: Request<hyper::body::Incoming>| {
            let response = answer(&gateway, &listener, &conn, &request);
            async move { Ok::<_, Infallible>(response) }
        });
        let connection = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(header_read_timeout)
            .serve_connection(TokioIo::new(stream), service);
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "decision connection ended with an error");
            }
        });
    }
    drop(socket);
    let _ = tokio::time::timeout(STOP_GRACE, graceful.shutdown()).await;
}

/// The answer to one decision request.
pub fn answer<B>(
    gateway: &Gateway,
    listener: &DecisionListener,
    conn: &ConnInfo,
    request: &Request<B>,
) -> Response<Full<Bytes>> {
    let own_target = own_target(request);
    let named = original::from_http(
        listener.protocol,
        request.headers(),
        request.method().as_str(),
        &own_target,
        listener.strip_prefix.as_deref(),
    );
    let delegated = gateway.decide_delegated(
        listener.protocol,
        conn,
        request.headers(),
        request.method(),
        named
            .as_ref()
            .map(|named| Original {
                method: named.method,
                target: &named.target,
            })
            .map_err(Clone::clone),
    );
    render(listener.protocol, delegated)
}

/// The decision request's own request-target (for `ext_authz_http`): origin-form as the path and query;
/// an absolute form whole, so that canonicalizing refuses it.
fn own_target<B>(request: &Request<B>) -> String {
    let uri = request.uri();
    if uri.scheme().is_some() || uri.authority().is_some() {
        return uri.to_string();
    }
    uri.path_and_query()
        .map_or_else(String::new, |pq| pq.as_str().to_string())
}

/// The decision in `protocol`'s form.
pub fn render(protocol: DecisionProtocol, delegated: Delegated) -> Response<Full<Bytes>> {
    match delegated {
        Delegated::Allow {
            identity,
            request_id,
            forward_credentials,
            ..
        } => {
            let mut response = Response::new(Full::new(Bytes::new()));
            let headers = response.headers_mut();
            // Forward-auth proxies copy a fixed list of headers from the answer, and Caddy 2.6 copies one
            // the answer lacks as its literal placeholder text: each is sent, empty when not known.
            let always = protocol == DecisionProtocol::ForwardAuth;
            for (name, value) in [
                (PRINCIPAL, identity.principal),
                (TOKEN_ID, identity.token_id),
                (ACCOUNT, identity.account),
                (REQUEST_ID, Some(request_id)),
            ] {
                match value {
                    Some(value) => {
                        headers.insert(name, value);
                    }
                    None if always => {
                        headers.insert(name, HeaderValue::from_static(""));
                    }
                    None => {}
                }
            }
            if protocol == DecisionProtocol::ExtAuthzHttp && !forward_credentials {
                headers.insert(
                    ENVOY_HEADERS_TO_REMOVE,
                    HeaderValue::from_static("authorization, x-auth-key, x-auth-email"),
                );
            }
            response
        }
        Delegated::Deny {
            answer,
            body,
            request_id,
        } => {
            let status = match protocol {
                // nginx turns anything but 2xx, 401 and 403 into a 500.
                DecisionProtocol::AuthRequest => StatusCode::FORBIDDEN,
                _ => StatusCode::from_u16(answer.status).unwrap_or(StatusCode::FORBIDDEN),
            };
            let envelope = (protocol == DecisionProtocol::AuthRequest)
                .then(|| HeaderValue::from_bytes(body.as_bytes()).ok())
                .flatten();
            let mut response = Response::new(Full::new(Bytes::from(body)));
            *response.status_mut() = status;
            let headers = response.headers_mut();
            headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            headers.insert(REQUEST_ID, request_id);
            headers.insert(STATUS, HeaderValue::from(answer.status));
            headers.insert(CODE, HeaderValue::from(answer.code));
            if let Some(envelope) = envelope {
                headers.insert(ENVELOPE, envelope);
            }
            response
        }
    }
}
