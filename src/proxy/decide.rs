//! The decide phase: the framing and upgrade checks, then `pipeline::decide` on the request's snapshot, and
//! the owned [`Plan`] made of its verdict.
//!
//! ```text
//! framing checks → upgrade offer → pipeline::decide (target, route, credential, policy) → plan
//!   plan = Forward { canonical target, identity } | Verify { token } | Refuse (rendered refusal)
//! ```
//!
//! The decision borrows the snapshot; everything the rest of the request needs is copied out into the plan,
//! so nothing the forward phase holds across an `.await` borrows the verdict.

use std::borrow::Cow;

use http::{Request, Version};
use hyper::body::Incoming;

use super::context::RequestContext;
use super::error::ProxyError;
use super::framing;
use super::headers::Identity;
use super::observe::Observation;
use super::service::Gateway;
use super::upgrade::{self, Offer};
use super::verify::{VerifiedToken, verified_token, verify_with_legacy_key};
use crate::answer::Answer;
use crate::config::gateway::Mode;
use crate::config::load::unix_now;
use crate::pipeline::{self, Facts, Verdict};
use crate::policy::PrincipalKind;
use crate::routes::Handler;
use crate::routes::target::CanonicalTarget;

/// What to do with a request, owned: nothing in it borrows the snapshot.
#[derive(Debug)]
pub(super) enum Plan {
    Forward(Forward),
    Verify(VerifiedToken),
    Refuse(Box<pipeline::RenderedRefusal>),
}

/// A request to forward: where to, and who it is for.
#[derive(Debug)]
pub(super) struct Forward {
    pub target: ForwardTarget,
    pub identity: Identity,
    /// The decision allowed it with an authenticated credential (not a public route, not a shadow-mode
    /// forward of a refusal): only then does the upstream credential go along.
    pub authorized: bool,
}

/// The path and query a forwarded request is sent with: the canonical target that was authorized.
#[derive(Debug)]
pub(super) enum ForwardTarget {
    /// The request's own target, which canonicalizing left as it was: its parsed copy is forwarded.
    AsReceived,
    /// The canonical target, differing from what the client sent.
    Canonical(String),
}

/// What the decide phase hands on.
#[derive(Debug)]
pub(super) struct Decided {
    pub plan: Plan,
    /// The end of the decision: the start of the upstream response timeout and the body deadline.
    pub at: tokio::time::Instant,
    /// The `Upgrade` the request offers.
    pub offer: Offer,
}

// === impl Gateway (decide) ===

impl Gateway {
    /// Checks the request's framing and upgrade offer, decides it, notes the decision in `seen`, and makes
    /// the plan.
    pub(super) fn decide<'a>(
        &self,
        cx: &RequestContext<'a>,
        request: &Request<Incoming>,
        seen: &mut Observation<'a>,
    ) -> Result<Decided, ProxyError> {
        framing::check(request.version(), request.headers())?;
        framing::check_host(request.version(), request.headers())?;
        let offer = upgrade::offer(request.version(), request.method(), request.headers())?;
        let target = request_target(request);
        let facts = Facts {
            method: request.method().as_str(),
            target: &target,
            headers: request.headers(),
            peer_ip: cx.conn.peer.ip(),
            now: unix_now(),
        };
        let (plan, decided) = self.decide_facts(cx, &facts, seen);
        Ok(Decided {
            plan,
            at: decided,
            offer,
        })
    }
}

// === impl Gateway (decide_facts) ===

impl Gateway {
    /// The decision proper, shared by the proxy and the decision listeners (`authz_endpoint`): `facts` on
    /// the request's snapshot, timed and counted, noted in `seen`, and made into the plan. Returns the plan
    /// and the end of the decision.
    pub(super) fn decide_facts<'a>(
        &self,
        cx: &RequestContext<'a>,
        facts: &Facts<'_>,
        seen: &mut Observation<'a>,
    ) -> (Plan, tokio::time::Instant) {
        let deciding = tokio::time::Instant::now();
        let verdict = pipeline::decide(cx.snapshot(), facts);
        // One clock read ends the decision and starts the upstream response timeout.
        let decided = tokio::time::Instant::now();
        let decision_time = decided.duration_since(deciding);
        self.metrics.decision(decision_time);
        let plan = plan(&verdict, facts.target, cx);
        self.observe_decision(seen, &verdict, &plan, cx, decision_time);
        (plan, decided)
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
fn plan(verdict: &Verdict<'_>, target: &str, cx: &RequestContext<'_>) -> Plan {
    let settings = &cx.snapshot().settings;
    let (mode, explain) = (settings.mode, settings.explain_denials);
    let identity = identity(verdict);
    match &verdict.outcome {
        Ok(()) => {
            let handler = verdict.route.and_then(|route| route.handler);
            match (handler, verdict.principal) {
                (Some(Handler::VerifyToken), Some(principal)) => match verified_token(&principal) {
                    // Behind a proxy that delegates the decision, permgate answers no request itself:
                    // the usable token is allowed with its identity, and the upstream answers.
                    Some(_) if cx.delegated.is_some() => match &verdict.canonical {
                        Some(canonical) => Plan::Forward(Forward {
                            target: forward_target(canonical, target),
                            authorized: true,
                            identity,
                        }),
                        None => Plan::Refuse(Box::new(
                            pipeline::Refusal {
                                answer: Answer::rejected_request(
                                    "request target could not be checked",
                                ),
                                denial: None,
                                shadow_forwardable: false,
                            }
                            .render(explain),
                        )),
                    },
                    Some(token) => Plan::Verify(token),
                    None => Plan::Refuse(Box::new(verify_with_legacy_key().render(explain))),
                },
                (Some(Handler::VerifyToken), None) => {
                    Plan::Refuse(Box::new(verify_with_legacy_key().render(explain)))
                }
                (None, _) => match &verdict.canonical {
                    Some(canonical) => Plan::Forward(Forward {
                        target: forward_target(canonical, target),
                        authorized: verdict.principal.is_some(),
                        identity,
                    }),
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
                    request_id = cx.request_id(),
                    status = refusal.answer.status,
                    code = refusal.answer.code,
                    route = verdict.route.map(|route| &*route.label),
                    principal = identity.principal.as_ref().and_then(|value| value.to_str().ok()),
                    reason = %refusal.reason(),
                    "shadow mode: forwarding a request that enforce mode would refuse"
                );
                Plan::Forward(Forward {
                    target: forward_target(canonical, target),
                    identity,
                    // Forwarded although refused: never with the upstream's credential.
                    authorized: false,
                })
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
