//! The forward phase: the request's headers prepared for the upstream, its lane and URI form chosen
//! ([`super::bound::UpstreamLane`]), its body watched, the exchange bounded by the response timeout, and the
//! response (or an authorized WebSocket switch, then relayed by [`tunnel`]) prepared for the client.
//!
//! Everything comes from the request's one generation ([`super::live::Live`]): the upstream URL in its
//! settings, the clients built for that URL and the credential read with it.

use http::header::{HOST, HeaderValue};
use http::{Request, Response, StatusCode, Version};
use hyper::body::{Body as _, Incoming};
use hyper_util::rt::TokioIo;

use super::body::{self, ClientBody, ClientBodyError, ProxyBody};
use super::context::RequestContext;
use super::decide::{Forward, ForwardTarget};
use super::error::ProxyError;
use super::headers::{self, ForwardContext};
use super::upgrade::{self, Offer};
use super::upstream::{upstream_target, upstream_target_as_received};

/// Forwards an allowed request (`forward`, decided at `decided`) and prepares the upstream's response.
pub(super) async fn forward(
    cx: &RequestContext<'_>,
    mut request: Request<Incoming>,
    forward: Forward,
    offer: Offer,
    decided: tokio::time::Instant,
) -> Result<Response<ProxyBody>, ProxyError> {
    let live = cx.live;
    let settings = &live.snapshot.settings;
    let Forward {
        target: forward_target,
        identity,
        authorized,
    } = forward;
    // With `upstream.auth` the gateway speaks to the upstream with its own credential, on authorized
    // requests only, and never passes the client's on (whatever `forward_credentials` says).
    let holds_upstream_credential = settings.upstream.auth.is_some();
    let upstream_authorization = match (holds_upstream_credential, authorized) {
        (true, true) => match &live.upstream_credential {
            Some(credential) => Some(credential.authorization().clone()),
            None => return Err(ProxyError::NoUpstreamCredential),
        },
        _ => None,
    };

    let websocket = offer == Offer::WebSocket;
    let client_upgrade = websocket.then(|| hyper::upgrade::on(&mut request));
    let (mut parts, incoming) = request.into_parts();
    let inbound_host = parts.headers.get(HOST).cloned().or_else(|| {
        parts
            .uri
            .authority()
            .and_then(|authority| HeaderValue::from_str(authority.as_str()).ok())
    });
    let identity_known = identity.principal.is_some();
    headers::prepare_request(
        &mut parts.headers,
        ForwardContext {
            identity,
            request_id: &cx.id_value,
            peer_ip: &cx.conn.peer_header,
            peer_trusted: cx.peer_trusted,
            inbound_tls: cx.conn.tls,
            inbound_host,
            // Only a credential the gateway authenticated is ever passed on: never one presented to a
            // public route (nothing checked it), nor one that shadow mode forwards unauthenticated; and
            // none at all when the gateway holds the upstream's own.
            forward_credentials: settings.forward_credentials
                && identity_known
                && !holds_upstream_credential,
            upstream_authorization,
            websocket,
        },
    );
    let base = &settings.upstream.url;
    let target = match forward_target {
        ForwardTarget::AsReceived => match parts.uri.path_and_query() {
            Some(received) => upstream_target_as_received(base, received)?,
            None => return Err(ProxyError::Unforwardable("request target")),
        },
        ForwardTarget::Canonical(text) => upstream_target(base, text)?,
    };
    // The forwarded request is the inbound one's parts with the upstream target, not a new request whose
    // default URI and header map would be built and dropped again. The lane is this generation's settings'
    // (the clients are built for them): the upstream URL and the connections agree.
    let (via, uri) = cx.conn.lane.choose(cx.http1, websocket, base, target)?;
    parts.uri = uri;
    // HTTP/1.1 towards the upstream whatever the inbound version: the client upgrades to h2 by ALPN.
    parts.version = Version::HTTP_11;
    // Nothing of the inbound request's extensions goes along (as with a new request).
    parts.extensions.clear();
    // A body still to come is watched: a deadline, and whether the client (not the upstream) broke it.
    let (outbound_body, client_body) = if incoming.is_end_stream() {
        (body::stream(incoming), None)
    } else {
        let deadline = decided + settings.request_body_timeout;
        let (watched, watch) = ClientBody::new(incoming, deadline);
        (body::stream(watched), Some(watch))
    };
    let outbound = Request::from_parts(parts, outbound_body);

    let forwarded = live
        .upstream
        .forward(outbound, via, decided, settings.upstream.response_timeout)
        .await;
    let mut response = match forwarded {
        Ok(response) => response,
        // The exchange failed because the client broke or stalled its body: the client's error.
        Err(error) => {
            return Err(match (&client_body, error) {
                (Some(watch), error) => match watch.failure() {
                    Some(failure) => ProxyError::ClientBody(failure),
                    // No answer in time while the body was waiting for the client's bytes: the client
                    // held the exchange up, not the upstream.
                    None if matches!(error, ProxyError::UpstreamTimeout(_))
                        && watch.awaiting_client() =>
                    {
                        ProxyError::ClientBody(ClientBodyError::TimedOut)
                    }
                    None => error,
                },
                (None, error) => error,
            });
        }
    };
    let switching = response.status() == StatusCode::SWITCHING_PROTOCOLS;
    if switching {
        match client_upgrade {
            // Only a switch to exactly the protocol that was authorized becomes a tunnel.
            Some(client_upgrade) if upgrade::switched_to_websocket(response.headers()) => {
                let upstream_upgrade = hyper::upgrade::on(&mut response);
                cx.conn.framing.switched_protocol();
                tokio::spawn(tunnel(
                    client_upgrade,
                    upstream_upgrade,
                    cx.request_id().to_string(),
                ));
            }
            Some(_) => {
                return Err(ProxyError::UnexpectedSwitch(
                    "a protocol other than the websocket that was offered",
                ));
            }
            // A 101 the client did not ask for cannot be relayed.
            None => {
                return Err(ProxyError::UnexpectedSwitch(
                    "a request that offered no upgrade",
                ));
            }
        }
    }
    let (mut parts, incoming) = response.into_parts();
    headers::prepare_response(&mut parts.headers, switching, &cx.id_value);
    parts.version = Version::HTTP_11;
    Ok(Response::from_parts(parts, body::stream(incoming)))
}

/// Relays an upgraded connection (WebSocket) both ways until either side closes.
async fn tunnel(
    client: hyper::upgrade::OnUpgrade,
    upstream: hyper::upgrade::OnUpgrade,
    request_id: String,
) {
    let (client, upstream) = match tokio::try_join!(client, upstream) {
        Ok(pair) => pair,
        Err(error) => {
            tracing::debug!(request_id, %error, "upgrade did not complete");
            return;
        }
    };
    let mut client = TokioIo::new(client);
    let mut upstream = TokioIo::new(upstream);
    if let Err(error) = tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
        tracing::debug!(request_id, %error, "upgraded connection ended with an error");
    }
}
