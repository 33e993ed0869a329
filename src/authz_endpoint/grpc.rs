//! The Envoy `ext_authz` gRPC listener: `envoy.service.auth.v3.Authorization/Check`, served with tonic over
//! the Envoy types of the `envoy-types` crate (generated from Envoy's own `.proto` files by that crate).
//!
//! `CheckRequest` in: the original method, path (path and query, as received) and headers of
//! `attributes.request.http` (pseudo-headers such as `:authority` are skipped; a header that cannot be an
//! HTTP header refuses the request). `CheckResponse` out:
//!
//! - allow: status `OK` and an `ok_response` that sets the identity headers upstream (overwriting) and
//!   removes the client's credential headers (unless `forward_credentials`);
//! - deny: status `PERMISSION_DENIED` and a `denied_response` with the real HTTP status, `Content-Type`,
//!   `X-Request-Id` and the envelope as body.
//!
//! The decision request's peer is the Envoy that sent it: it must be in `trusted_proxies`.

use std::net::SocketAddr;
use std::sync::Arc;

use envoy_types::ext_authz::v3::pb::{
    Authorization, AuthorizationServer, CheckRequest, CheckResponse, DeniedHttpResponse,
    HeaderAppendAction, HeaderValue as EnvoyHeader, HeaderValueOption, HttpResponse, HttpStatus,
    OkHttpResponse,
};
use envoy_types::pb::google::rpc::Status as RpcStatus;
use http::header::{HeaderName, HeaderValue};
use http::{HeaderMap, Method};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio_stream::wrappers::TcpListenerStream;

use super::http::CREDENTIAL_HEADERS;
use super::original;
use crate::answer::Answer;
use crate::proxy::headers::{ACCOUNT, PRINCIPAL, REQUEST_ID, TOKEN_ID};
use crate::proxy::{ConnInfo, Delegated, Gateway, Original};
use crate::settings::DecisionProtocol;

/// gRPC status codes (google.rpc.Code) the answers use.
const GRPC_OK: i32 = 0;
const GRPC_PERMISSION_DENIED: i32 = 7;

/// The `Authorization` service, deciding with the gateway's serving snapshot.
#[derive(Debug)]
pub struct CheckService {
    gateway: Arc<Gateway>,
}

impl CheckService {
    pub fn new(gateway: Arc<Gateway>) -> Self {
        Self { gateway }
    }

    /// The answer to one `CheckRequest` from `peer` (`None` when the transport did not say: refused).
    pub fn check(&self, peer: Option<SocketAddr>, request: &CheckRequest) -> CheckResponse {
        let http = request
            .attributes
            .as_ref()
            .and_then(|attributes| attributes.request.as_ref())
            .and_then(|request| request.http.as_ref());
        // Without a peer address, trust cannot be established: decided as an untrusted peer (0.0.0.0).
        let peer = peer.unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)));
        let conn = ConnInfo::new(peer, false);
        let (headers, named) = match http {
            None => (
                HeaderMap::new(),
                Err(Answer::rejected_request(
                    "the CheckRequest has no attributes.request.http",
                )),
            ),
            Some(http) => match header_map(http) {
                Ok(headers) => {
                    let named = original::check_headers(&headers)
                        .and_then(|()| original::from_check(&http.method, &http.path));
                    (headers, named)
                }
                Err(answer) => (HeaderMap::new(), Err(answer)),
            },
        };
        let delegated = self.gateway.decide_delegated(
            DecisionProtocol::ExtAuthzGrpc,
            &conn,
            &headers,
            &Method::POST,
            named
                .as_ref()
                .map(|named| Original {
                    method: named.method,
                    target: &named.target,
                })
                .map_err(Clone::clone),
        );
        response(delegated)
    }
}

#[tonic::async_trait]
impl Authorization for CheckService {
    async fn check(
        &self,
        request: tonic::Request<CheckRequest>,
    ) -> Result<tonic::Response<CheckResponse>, tonic::Status> {
        let peer = request.remote_addr();
        Ok(tonic::Response::new(CheckService::check(
            self,
            peer,
            request.get_ref(),
        )))
    }
}

/// The original request's headers: `headers`, or `header_map` when Envoy sends that instead (its
/// `encode_raw_headers`). Pseudo-headers are skipped; a name or value that is not a valid HTTP header is
/// refused (400), never dropped silently.
fn header_map(
    http: &envoy_types::pb::envoy::service::auth::v3::attribute_context::HttpRequest,
) -> Result<HeaderMap, Answer> {
    let mut map = HeaderMap::new();
    let mut add = |name: &str, value: &[u8]| -> Result<(), Answer> {
        if name.starts_with(':') {
            return Ok(());
        }
        let header = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| Answer::rejected_request(format!("{name:?} is not a header name")))?;
        let value = HeaderValue::from_bytes(value).map_err(|_| {
            Answer::rejected_request(format!("the value of {name:?} is not a header value"))
        })?;
        map.append(header, value);
        Ok(())
    };
    match &http.header_map {
        Some(raw) if http.headers.is_empty() => {
            for header in &raw.headers {
                let value = if header.raw_value.is_empty() {
                    header.value.as_bytes()
                } else {
                    header.raw_value.as_slice()
                };
                add(&header.key, value)?;
            }
        }
        _ => {
            for (name, value) in &http.headers {
                add(name, value.as_bytes())?;
            }
        }
    }
    Ok(map)
}

/// One header for Envoy to set, overwriting the request's own.
fn set_header(name: &HeaderName, value: &HeaderValue) -> HeaderValueOption {
    HeaderValueOption {
        header: Some(EnvoyHeader {
            key: name.as_str().to_string(),
            value: String::from_utf8_lossy(value.as_bytes()).into_owned(),
            ..Default::default()
        }),
        append_action: HeaderAppendAction::OverwriteIfExistsOrAdd as i32,
        ..Default::default()
    }
}

/// The decision as a `CheckResponse`.
pub fn response(delegated: Delegated) -> CheckResponse {
    match delegated {
        Delegated::Allow {
            identity,
            request_id,
            forward_credentials,
            ..
        } => {
            let mut headers = Vec::with_capacity(4);
            for (name, value) in [
                (PRINCIPAL, identity.principal),
                (TOKEN_ID, identity.token_id),
                (ACCOUNT, identity.account),
                (REQUEST_ID, Some(request_id)),
            ] {
                if let Some(value) = value {
                    headers.push(set_header(&name, &value));
                }
            }
            let headers_to_remove = if forward_credentials {
                Vec::new()
            } else {
                CREDENTIAL_HEADERS
                    .iter()
                    .map(|name| name.to_string())
                    .collect()
            };
            CheckResponse {
                status: Some(RpcStatus {
                    code: GRPC_OK,
                    ..Default::default()
                }),
                http_response: Some(HttpResponse::OkResponse(OkHttpResponse {
                    headers,
                    headers_to_remove,
                    ..Default::default()
                })),
                ..Default::default()
            }
        }
        Delegated::Deny {
            answer,
            body,
            request_id,
        } => {
            let headers = vec![
                set_header(
                    &http::header::CONTENT_TYPE,
                    &HeaderValue::from_static("application/json"),
                ),
                set_header(&REQUEST_ID, &request_id),
            ];
            CheckResponse {
                status: Some(RpcStatus {
                    code: GRPC_PERMISSION_DENIED,
                    message: answer.message.to_string(),
                    ..Default::default()
                }),
                http_response: Some(HttpResponse::DeniedResponse(DeniedHttpResponse {
                    status: Some(HttpStatus {
                        code: i32::from(answer.status),
                    }),
                    headers,
                    body,
                })),
                ..Default::default()
            }
        }
    }
}

/// Serves `Authorization/Check` on `socket` until `stopped`.
pub(super) async fn serve(
    socket: TcpListener,
    gateway: Arc<Gateway>,
    stopped: oneshot::Receiver<()>,
) {
    let service = AuthorizationServer::new(CheckService::new(gateway));
    let served = tonic::transport::Server::builder()
        .add_service(service)
        .serve_with_incoming_shutdown(TcpListenerStream::new(socket), async {
            let _ = stopped.await;
        })
        .await;
    if let Err(error) = served {
        tracing::warn!(%error, "ext_authz gRPC listener stopped with an error");
    }
}
