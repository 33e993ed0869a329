//! The per-request path: load the snapshot once, decide, then forward, answer `verify`, or refuse.
//!
//! ```text
//! framing check → pipeline::decide (target, route, credential, policy) → plan
//!   plan = Forward { canonical target, identity } | Verify { token } | Refuse (error_response)
//! ```
//!
//! The decision borrows the snapshot; everything the rest of the request needs is copied out into an owned
//! `Plan` before the first `.await`, so a request never holds the `ArcSwap` guard (it holds the `Arc` from
//! `load_full`, which keeps the snapshot it started with alive to the end).
//!
//! Every request is observed once its response head is ready: `permgate_requests_total` and the duration
//! histograms, and (when on) one decision-log line, built from the verdict and queued without waiting.

use std::borrow::Cow;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

use arc_swap::{ArcSwap, ArcSwapOption};
use http::header::{HOST, HeaderValue};
use http::{Request, Response, StatusCode, Uri, Version};
use hyper::body::{Body as _, Incoming};
use hyper_util::rt::TokioIo;

use super::body::{self, ClientBody, ClientBodyError, ProxyBody};
use super::bound::Binding;
use super::error::{ProxyError, Side, error_response, json_response};
use super::failure_log::{self, FailureLog};
use super::framing::{self, FramingError, HeadScanner, HeadVerdict, StopReason};
use super::headers::{self, ForwardContext, Identity, REQUEST_ID};
use super::request_id;
use super::upgrade::{self, Offer};
use super::upstream::{self, UpstreamClient, absolute_uri, upstream_target};
use super::upstream_auth::UpstreamCredential;
use crate::answer::{Answer, push_json_string};
use crate::config::gateway::Mode;
use crate::config::load::unix_now;
use crate::decision_log::{Decided, DecisionLog, Entry};
use crate::metrics::{DecisionLabel, Metrics};
use crate::pipeline::{self, Facts, Verdict};
use crate::policy::Denial;
use crate::policy::{Principal, PrincipalKind};
use crate::routes::target::CanonicalTarget;
use crate::routes::{Handler, Route};
use crate::snapshot::Snapshot;

/// The gateway: the live snapshot and the upstream clients, shared by every connection.
#[derive(Debug)]
pub struct Gateway {
    snapshot: Arc<ArcSwap<Snapshot>>,
    upstream: ArcSwap<UpstreamClient>,
    /// The upstream's own credential (`upstream.auth`), read at start and at each applied reload; `None`
    /// without `upstream.auth`.
    upstream_credential: ArcSwapOption<UpstreamCredential>,
    metrics: Arc<Metrics>,
    decision_log: Option<DecisionLog>,
    /// Warnings about failed requests, one line per kind per interval when they repeat.
    failures: Arc<FailureLog>,
}

/// Where the gateway reports what it does: its metrics, and the decision log when one is on.
#[derive(Debug, Clone)]
pub struct Observer {
    pub metrics: Arc<Metrics>,
    pub decision_log: Option<DecisionLog>,
}

/// What one request's observation has gathered by the time its response head is ready.
#[derive(Debug)]
struct Observation<'s> {
    route: Option<&'s Route>,
    decision: DecisionLabel,
    /// The gateway's error code (0 when it did not refuse).
    code: u32,
    /// The upstream failure kind, if the upstream failed.
    error: Option<&'static str>,
    /// The decision-log line, when the log is on and the request got as far as a decision.
    entry: Option<Entry>,
}

impl Observation<'_> {
    /// Before any decision: a request that fails now (framing) was refused.
    fn new() -> Self {
        Self {
            route: None,
            decision: DecisionLabel::Deny,
            code: 0,
            error: None,
            entry: None,
        }
    }
}

/// What is known about the connection a request came on.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    /// The TCP peer.
    pub peer: SocketAddr,
    /// The peer's IP address as text (for `X-Forwarded-For`), formatted once per connection.
    pub peer_header: HeaderValue,
    /// Whether the connection is TLS (for `X-Forwarded-Proto`).
    pub tls: bool,
    /// The raw-byte framing scanner of this connection (HTTP/1 requests take one verdict each).
    pub framing: Option<Arc<Mutex<HeadScanner>>>,
    /// The slot of the upstream connection lent to this connection's HTTP/1 exchange in progress (`None`: the
    /// pooled client).
    pub binding: Option<Arc<Binding>>,
}

// === impl ConnInfo ===

impl ConnInfo {
    /// The raw-byte scanner's verdict on the next HTTP/1 request's head: refused unless it is
    /// [`HeadVerdict::Clear`] (both `Content-Length` and `Transfer-Encoding`, which hyper hides by dropping
    /// `Content-Length`, or a head the scanner could not judge). Must be called once per HTTP/1 request, in
    /// order. A poisoned scanner lock means nothing the scanner holds can be believed: refused, like every
    /// later request of the connection (a poisoned lock stays poisoned).
    fn next_head_framing(&self) -> Result<(), FramingError> {
        let Some(scanner) = &self.framing else {
            // A connection served without a scanner (the overload answer, tests): nothing to add.
            return Ok(());
        };
        let verdict = match scanner.lock() {
            Ok(mut scanner) => scanner.next_verdict(),
            Err(_poisoned) => HeadVerdict::Unjudged(StopReason::Poisoned),
        };
        match verdict {
            HeadVerdict::Clear => Ok(()),
            HeadVerdict::Ambiguous => Err(FramingError::LengthAndEncoding),
            HeadVerdict::Unjudged(reason) => Err(FramingError::Unjudged(reason)),
        }
    }

    /// The connection switched to WebSocket: its scanner stops (what follows is not HTTP/1).
    fn switched_protocol(&self) {
        if let Some(Ok(mut scanner)) = self.framing.as_ref().map(|scanner| scanner.lock()) {
            scanner.switched_protocol();
        }
    }
}

/// What to do with a request, owned: nothing in it borrows the snapshot.
#[derive(Debug)]
enum Plan {
    Forward {
        target: ForwardTarget,
        identity: Identity,
        /// The decision allowed it with an authenticated credential (not a public route, not a shadow-mode
        /// forward of a refusal): only then does the upstream credential go along.
        authorized: bool,
    },
    Verify(VerifiedToken),
    Refuse(Box<pipeline::RenderedRefusal>),
}

/// The path and query a forwarded request is sent with: the canonical target that was authorized.
#[derive(Debug)]
enum ForwardTarget {
    /// The request's own target, which canonicalizing left as it was: its parsed copy is forwarded.
    AsReceived,
    /// The canonical target, differing from what the client sent.
    Canonical(String),
}

/// What `GET /user/tokens/verify` reports.
#[derive(Debug, Clone, PartialEq, Eq)]
struct VerifiedToken {
    id: String,
    not_before: Option<String>,
    expires_on: Option<String>,
}

// === impl Gateway ===

impl Gateway {
    /// A gateway over the live `snapshot`, with upstream clients built from its settings, reporting to
    /// `observer`.
    pub fn new(
        snapshot: Arc<ArcSwap<Snapshot>>,
        observer: Observer,
    ) -> Result<Arc<Self>, ProxyError> {
        let settings = &snapshot.load().settings.upstream;
        let upstream = UpstreamClient::new(settings)?;
        let credential = match &settings.auth {
            Some(source) => Some(Arc::new(UpstreamCredential::read(source)?)),
            None => None,
        };
        Ok(Arc::new(Self {
            snapshot,
            upstream: ArcSwap::from_pointee(upstream),
            upstream_credential: ArcSwapOption::new(credential),
            metrics: observer.metrics,
            decision_log: observer.decision_log,
            failures: FailureLog::new(failure_log::SUMMARY_INTERVAL),
        }))
    }

    /// The gateway's metrics.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The live snapshot (the reloader stores new ones here).
    pub fn snapshot(&self) -> &Arc<ArcSwap<Snapshot>> {
        &self.snapshot
    }

    /// For the reloader, after storing a new snapshot: rebuilds the upstream clients when the settings baked
    /// into them (URL, CA file, connect timeout, pool) changed: a new URL gets a new pool of bound
    /// connections. The response timeout is read per request. On error the old clients stay.
    ///
    /// The upstream credential (`upstream.auth`) is read again every time: a rotated secret applies with the
    /// reload. When it cannot be read the previous credential stays (and the error says which source
    /// failed); without `upstream.auth` there is none.
    pub fn refresh_upstream(&self) -> Result<(), ProxyError> {
        let snapshot = self.snapshot.load_full();
        let credential = match &snapshot.settings.upstream.auth {
            None => {
                self.upstream_credential.store(None);
                Ok(())
            }
            Some(source) => UpstreamCredential::read(source)
                .map(|credential| self.upstream_credential.store(Some(Arc::new(credential))))
                .map_err(ProxyError::from),
        };
        if !self
            .upstream
            .load()
            .is_built_for(&snapshot.settings.upstream)
        {
            let client = UpstreamClient::new(&snapshot.settings.upstream)?;
            self.upstream.store(Arc::new(client));
        }
        credential
    }

    /// Serves one request; never fails (every error is an answer).
    pub async fn handle(&self, request: Request<Incoming>, conn: &ConnInfo) -> Response<ProxyBody> {
        let started = Instant::now();
        // First, before anything can return early: keeps the scanner's verdicts aligned with requests.
        let head_framing = if request.version() <= Version::HTTP_11 {
            conn.next_head_framing()
        } else {
            Ok(())
        };
        let snapshot = self.snapshot.load_full();
        let peer_trusted = is_trusted(conn.peer.ip(), &snapshot.settings.trusted_proxies);
        let id_value = request_id::choose(request.headers(), peer_trusted);
        // Plain ASCII by construction (hex, or an inbound id checked to be).
        let request_id = id_value.to_str().unwrap_or("invalid-request-id");
        let method = request.method().clone();
        let http1 = request.version() <= Version::HTTP_11;
        // The arrival time, for the decision log only (the clock read is skipped when the log is off).
        let arrived = self.decision_log.as_ref().map(|_| SystemTime::now());
        let mut seen = Observation::new();
        let result = if let Err(refused) = head_framing {
            Err(ProxyError::Framing(refused))
        } else {
            self.process(
                &snapshot,
                request,
                conn,
                peer_trusted,
                request_id,
                &id_value,
                arrived,
                &mut seen,
            )
            .await
        };
        let response = match result {
            Ok(response) => response,
            Err(error) => {
                self.failed(&error, &mut seen);
                if let (None, Some(arrived)) = (&seen.entry, arrived) {
                    seen.entry = Some(Entry::undecided(
                        arrived,
                        request_id,
                        method.as_str(),
                        conn.peer.ip(),
                        &error.to_string(),
                        snapshot.generation,
                    ));
                }
                self.error_answer(&error, &snapshot, request_id, &method, http1, &id_value)
            }
        };
        let status = response.status().as_u16();
        let elapsed = started.elapsed();
        self.metrics.routed_request(
            &snapshot,
            seen.route,
            &method,
            seen.decision,
            status,
            elapsed,
        );
        if let (Some(log), Some(entry)) = (&self.decision_log, seen.entry.take()) {
            log.submit(entry.finish(status, seen.code, seen.error, elapsed));
        }
        response
    }

    /// Records a failure in the observation (and counts upstream failures).
    fn failed(&self, error: &ProxyError, seen: &mut Observation<'_>) {
        match error {
            ProxyError::Refused(refusal) => {
                seen.decision = DecisionLabel::Deny;
                seen.code = refusal.answer.code;
            }
            other => {
                seen.code = other.answer().code;
                let kind = other.kind();
                if other.side() == Side::Upstream {
                    seen.error = Some(kind);
                    self.metrics.upstream_error(kind);
                } else if let ProxyError::ClientBody(_) = other {
                    seen.error = Some(kind);
                    self.metrics.client_error(kind);
                }
            }
        }
    }

    /// Logs a failure and turns it into the client's answer.
    fn error_answer(
        &self,
        error: &ProxyError,
        snapshot: &Snapshot,
        request_id: &str,
        method: &http::Method,
        http1: bool,
        id_value: &HeaderValue,
    ) -> Response<ProxyBody> {
        match error {
            ProxyError::Refused(refusal) => tracing::debug!(
                request_id, %method, status = refusal.answer.status, code = refusal.answer.code,
                reason = %refusal.reason, "refused"
            ),
            other if other.side() == Side::Client => tracing::debug!(
                request_id, %method, kind = other.kind(), error = %other, "rejected"
            ),
            // Repeats of a kind within the summary interval are one line with their count.
            other => {
                if self.failures.admit(other.kind(), other.side().as_str()) {
                    tracing::warn!(
                        request_id, %method, side = other.side().as_str(), kind = other.kind(),
                        error = %other, "request failed"
                    );
                }
            }
        }
        let mut response = error_response(error, id_value, snapshot.settings.explain_denials);
        if http1 && (error.closes_connection() || method == http::Method::CONNECT) {
            // The body's end or the connection's protocol is in doubt: never read another request from it.
            response
                .headers_mut()
                .insert(http::header::CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }

    #[allow(clippy::too_many_arguments)] // one call site; a struct would only rename the arguments
    async fn process<'s>(
        &self,
        snapshot: &'s Snapshot,
        mut request: Request<Incoming>,
        conn: &ConnInfo,
        peer_trusted: bool,
        request_id: &str,
        id_value: &HeaderValue,
        arrived: Option<SystemTime>,
        seen: &mut Observation<'s>,
    ) -> Result<Response<ProxyBody>, ProxyError> {
        framing::check(request.version(), request.headers())?;
        framing::check_host(request.version(), request.headers())?;
        let offer = upgrade::offer(request.version(), request.method(), request.headers())?;
        let settings = &snapshot.settings;
        let decided;
        let plan = {
            let target = request_target(&request);
            let facts = Facts {
                method: request.method().as_str(),
                target: &target,
                headers: request.headers(),
                peer_ip: conn.peer.ip(),
                now: unix_now(),
            };
            let deciding = tokio::time::Instant::now();
            let verdict = pipeline::decide(snapshot, &facts);
            // One clock read ends the decision and starts the upstream response timeout.
            decided = tokio::time::Instant::now();
            let decision_time = decided.duration_since(deciding);
            self.metrics.decision(decision_time);
            let plan = plan(
                &verdict,
                facts.target,
                settings.mode,
                settings.explain_denials,
                request_id,
            );
            self.observe_decision(
                seen,
                &verdict,
                &plan,
                snapshot,
                (request_id, facts.method),
                arrived,
                decision_time,
            );
            plan
        };
        let (forward_target, identity, authorized) = match plan {
            Plan::Refuse(refusal) => return Err(ProxyError::Refused(refusal)),
            Plan::Verify(token) => return Ok(verify_response(&token, id_value)),
            Plan::Forward {
                target,
                identity,
                authorized,
            } => (target, identity, authorized),
        };
        // With `upstream.auth` the gateway speaks to the upstream with its own credential, on authorized
        // requests only, and never passes the client's on (whatever `forward_credentials` says).
        let holds_upstream_credential = settings.upstream.auth.is_some();
        let upstream_authorization = match (holds_upstream_credential, authorized) {
            (true, true) => match self.upstream_credential.load_full() {
                Some(credential) => Some(credential.authorization().clone()),
                None => return Err(ProxyError::NoUpstreamCredential),
            },
            _ => None,
        };

        let http1 = request.version() <= Version::HTTP_11;
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
                request_id: id_value,
                peer_ip: &conn.peer_header,
                peer_trusted,
                inbound_tls: conn.tls,
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
        let upstream = self.upstream.load_full();
        let via = match (&conn.binding, websocket) {
            (_, true) => upstream::Route::Upgrade,
            (Some(binding), false) if http1 && upstream.connects_to(&settings.upstream.url) => {
                upstream::Route::Lent(binding)
            }
            _ => upstream::Route::Pooled,
        };
        let target = match forward_target {
            ForwardTarget::AsReceived => match parts.uri.path_and_query() {
                Some(received) => {
                    upstream::upstream_target_as_received(&settings.upstream.url, received)?
                }
                None => return Err(ProxyError::Unforwardable("request target")),
            },
            ForwardTarget::Canonical(text) => upstream_target(&settings.upstream.url, text)?,
        };
        // The forwarded request is the inbound one's parts with the upstream target, not a new request
        // whose default URI and header map would be built and dropped again.
        parts.uri = match via {
            upstream::Route::Lent(_) => Uri::from(target),
            upstream::Route::Pooled | upstream::Route::Upgrade => {
                absolute_uri(&settings.upstream.url, target)?
            }
        };
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

        let forwarded = upstream
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
                    conn.switched_protocol();
                    tokio::spawn(tunnel(
                        client_upgrade,
                        upstream_upgrade,
                        request_id.to_string(),
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
        headers::prepare_response(&mut parts.headers, switching, id_value);
        parts.version = Version::HTTP_11;
        Ok(Response::from_parts(parts, body::stream(incoming)))
    }
}

// === impl Gateway (observation) ===

impl Gateway {
    /// Notes the decision for metrics and, when the log is on, starts the request's decision-log line.
    #[allow(clippy::too_many_arguments)] // the pieces of one request, from one call site
    fn observe_decision<'s>(
        &self,
        seen: &mut Observation<'s>,
        verdict: &Verdict<'s>,
        plan: &Plan,
        snapshot: &'s Snapshot,
        (request_id, method): (&str, &str),
        arrived: Option<SystemTime>,
        decision_time: std::time::Duration,
    ) {
        seen.route = verdict.route;
        (seen.decision, seen.code) = match plan {
            Plan::Refuse(refusal) => (DecisionLabel::Deny, refusal.answer.code),
            // Forwarded although the decision refused it: shadow mode.
            Plan::Forward { .. } if !verdict.allowed() => {
                (DecisionLabel::ShadowAllow, verdict.code())
            }
            Plan::Forward { .. } | Plan::Verify(_) => (DecisionLabel::Allow, 0),
        };
        let (Some(_), Some(arrived)) = (&self.decision_log, arrived) else {
            return;
        };
        let would_refuse;
        let reason = match (plan, &verdict.outcome) {
            (Plan::Refuse(refusal), _) => refusal.reason.as_str(),
            (_, Err(refusal)) => {
                would_refuse = refusal.reason();
                would_refuse.as_str()
            }
            (_, Ok(())) => "allowed",
        };
        seen.entry = Some(Entry::decided(&Decided {
            time: arrived,
            request_id,
            method,
            verdict,
            snapshot,
            decision: seen.decision,
            reason,
            decision_time,
        }));
    }
}

/// The request-target to decide on. HTTP/1.1 origin-form arrives as a bare path and query. A URI with a
/// scheme or authority is absolute-form (or authority-form) on HTTP/1.x, passed whole so `canonicalize`
/// rejects it; on HTTP/2 the scheme and authority come from pseudo-headers, so `:path` alone is the target.
fn request_target(request: &Request<Incoming>) -> Cow<'_, str> {
    let uri = request.uri();
    let h2 = request.version() == Version::HTTP_2;
    if !h2 && (uri.scheme().is_some() || uri.authority().is_some()) {
        return Cow::Owned(uri.to_string());
    }
    uri.path_and_query()
        .map_or(Cow::Borrowed(""), |pq| Cow::Borrowed(pq.as_str()))
}

/// Turns the verdict on the request `target` into an owned plan (and logs shadow-mode forwards).
fn plan(verdict: &Verdict<'_>, target: &str, mode: Mode, explain: bool, request_id: &str) -> Plan {
    let identity = identity(verdict);
    match &verdict.outcome {
        Ok(()) => {
            let handler = verdict.route.and_then(|route| route.handler);
            match (handler, verdict.principal) {
                (Some(Handler::VerifyToken), Some(principal)) => match verified_token(&principal) {
                    Some(token) => Plan::Verify(token),
                    None => Plan::Refuse(Box::new(verify_with_legacy_key().render(explain))),
                },
                (Some(Handler::VerifyToken), None) => {
                    Plan::Refuse(Box::new(verify_with_legacy_key().render(explain)))
                }
                (None, _) => match &verdict.canonical {
                    Some(canonical) => Plan::Forward {
                        target: forward_target(canonical, target),
                        authorized: verdict.principal.is_some(),
                        identity,
                    },
                    // `decide` always sets the target of an allowed request; fail closed if not.
                    None => Plan::Refuse(Box::new(
                        pipeline::Refusal {
                            answer: Answer::rejected_request("request target could not be checked"),
                            denial: None,
                            shadow_forwardable: false,
                        }
                        .render(explain),
                    )),
                },
            }
        }
        Err(refusal) => match (&verdict.canonical, mode) {
            (Some(canonical), Mode::Shadow) if refusal.shadow_forwardable => {
                tracing::warn!(
                    request_id,
                    status = refusal.answer.status,
                    code = refusal.answer.code,
                    route = verdict.route.map(|route| &*route.label),
                    principal = identity.principal.as_ref().and_then(|value| value.to_str().ok()),
                    reason = %refusal.reason(),
                    "shadow mode: forwarding a request that enforce mode would refuse"
                );
                Plan::Forward {
                    target: forward_target(canonical, target),
                    identity,
                    // Forwarded although refused: never with the upstream's credential.
                    authorized: false,
                }
            }
            _ => Plan::Refuse(Box::new(refusal.render(explain))),
        },
    }
}

fn forward_target(canonical: &CanonicalTarget, received: &str) -> ForwardTarget {
    if canonical.is(received) {
        ForwardTarget::AsReceived
    } else {
        ForwardTarget::Canonical(canonical.path_and_query())
    }
}

/// The identity headers' values.
fn identity(verdict: &Verdict<'_>) -> Identity {
    let principal = verdict.principal;
    // The resource's account; for an account token on a route without one (`scope: any`/`none`), its own.
    let account = verdict
        .resource
        .and_then(|resource| resource.account)
        .or_else(|| {
            principal
                .filter(|principal| principal.kind == PrincipalKind::Account)
                .map(|principal| principal.id)
        });
    Identity::new(
        principal.map(|principal| (principal.kind, principal.id)),
        principal.and_then(|principal| principal.token_id()),
        account,
    )
}

fn verified_token(principal: &Principal<'_>) -> Option<VerifiedToken> {
    let token = principal.token?;
    Some(VerifiedToken {
        id: token.id.to_string(),
        not_before: token.not_before.as_ref().map(|(_, text)| text.to_string()),
        expires_on: token.expires_on.as_ref().map(|(_, text)| text.to_string()),
    })
}

/// `verify` reports on API tokens; a legacy key is authenticated but is not a token, so it gets the answer
/// an unknown token gets (403/1000), with the reason as an explanation.
fn verify_with_legacy_key() -> pipeline::Refusal<'static> {
    pipeline::Refusal {
        shadow_forwardable: false,
        ..pipeline::Refusal::denied(Denial::NotAToken)
    }
}

/// Cloudflare's `GET /user/tokens/verify` answer for a usable token.
fn verify_response(token: &VerifiedToken, id_value: &HeaderValue) -> Response<ProxyBody> {
    let mut body = String::with_capacity(256);
    body.push_str(
        r#"{"success":true,"errors":[],"messages":[{"code":10000,"message":"This API Token is valid and active","type":null}],"result":{"id":"#,
    );
    push_json_string(&mut body, &token.id);
    body.push_str(r#","status":"active""#);
    for (name, value) in [
        ("not_before", &token.not_before),
        ("expires_on", &token.expires_on),
    ] {
        if let Some(value) = value {
            body.push_str(",\"");
            body.push_str(name);
            body.push_str("\":");
            push_json_string(&mut body, value);
        }
    }
    body.push_str("}}");
    let mut response = json_response(200, body);
    response.headers_mut().insert(REQUEST_ID, id_value.clone());
    response
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

fn is_trusted(ip: IpAddr, trusted: &[ipnet::IpNet]) -> bool {
    trusted.iter().any(|net| net.contains(&ip))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn verify_answers_in_cloudflare_shape() {
        let id = HeaderValue::from_static("rid");
        let token = VerifiedToken {
            id: "ed17574386854bf78a67040be0a770b0".into(),
            not_before: None,
            expires_on: Some("2030-01-01T00:00:00Z".into()),
        };
        let response = verify_response(&token, &id);
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["x-request-id"], "rid");
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(
            std::str::from_utf8(&bytes).unwrap(),
            r#"{"success":true,"errors":[],"messages":[{"code":10000,"message":"This API Token is valid and active","type":null}],"result":{"id":"ed17574386854bf78a67040be0a770b0","status":"active","expires_on":"2030-01-01T00:00:00Z"}}"#
        );
    }

    fn conn_with_scanner(scanner: &Arc<Mutex<HeadScanner>>) -> ConnInfo {
        ConnInfo {
            peer: "127.0.0.1:9".parse().unwrap(),
            peer_header: HeaderValue::from_static("127.0.0.1"),
            tls: false,
            framing: Some(Arc::clone(scanner)),
            binding: None,
        }
    }

    /// A poisoned scanner lock is a refusal, for the request at hand and every later one (it used to read as
    /// "not ambiguous", failing open).
    #[test]
    fn a_poisoned_framing_scanner_refuses_every_request() {
        let scanner = Arc::new(Mutex::new(HeadScanner::default()));
        let conn = conn_with_scanner(&scanner);
        scanner
            .lock()
            .unwrap()
            .feed(b"GET / HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n");
        assert_eq!(conn.next_head_framing(), Ok(()));
        let poisoner = Arc::clone(&scanner);
        let _ = std::thread::spawn(move || {
            let _held = poisoner.lock().unwrap();
            panic!("poisoning the scanner lock on purpose");
        })
        .join();
        assert!(scanner.is_poisoned());
        for _ in 0..3 {
            assert_eq!(
                conn.next_head_framing(),
                Err(FramingError::Unjudged(StopReason::Poisoned))
            );
        }
        // The refusal closes the connection.
        assert!(
            ProxyError::Framing(FramingError::Unjudged(StopReason::Poisoned)).closes_connection()
        );
    }

    #[test]
    fn an_ambiguous_or_unjudged_head_is_refused() {
        let scanner = Arc::new(Mutex::new(HeadScanner::default()));
        let conn = conn_with_scanner(&scanner);
        scanner.lock().unwrap().feed(
            b"GET / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        );
        assert_eq!(
            conn.next_head_framing(),
            Err(FramingError::LengthAndEncoding)
        );
        assert_eq!(
            conn.next_head_framing(),
            Err(FramingError::Unjudged(StopReason::NoVerdict))
        );
        conn.switched_protocol();
        assert_eq!(
            conn.next_head_framing(),
            Err(FramingError::Unjudged(StopReason::NotHttp1))
        );
    }

    #[test]
    fn a_legacy_key_on_verify_is_not_a_token() {
        let refusal = verify_with_legacy_key();
        assert_eq!((refusal.answer.status, refusal.answer.code), (403, 1000));
        assert!(!refusal.body(false).contains("legacy"));
        assert!(refusal.body(true).contains("legacy API key"));
    }
}
