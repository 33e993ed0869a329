//! Deciding for a proxy in front: the entry point of the decision listeners (`crate::authz_endpoint`).
//!
//! The original request a trusted proxy names is decided exactly as the proxy decides its own requests: the
//! same serving [`Live`](super::Live) loaded once, the same request context, `pipeline::decide` through
//! `Gateway::decide_facts` (canonical target, route, credential, policy), the same plan (shadow mode
//! included), the same metrics and decision-log line with the listener's protocol as its `mode`. What
//! differs is only the answer: an owned [`Delegated`] the listener renders in its protocol's form.
//!
//! Fail closed: a peer not in `trusted_proxies` is refused before anything is read from its headers, a
//! request the listener could not read (no original URI, a bad method) is refused, and a plan a decision
//! listener cannot carry is a denial.

use std::time::Instant;

use http::{HeaderMap, HeaderValue, Method};

use super::context::{ConnInfo, RequestContext};
use super::decide::Plan;
use super::headers::Identity;
use super::observe::Observation;
use super::service::Gateway;
use crate::answer::Answer;
use crate::config::load::unix_now;
use crate::metrics::DecisionLabel;
use crate::pipeline::Facts;
use crate::settings::DecisionProtocol;

/// The original request, as the proxy in front names it.
#[derive(Debug, Clone, Copy)]
pub struct Original<'a> {
    /// The original method (`X-Original-Method`, `X-Forwarded-Method`, the check request's own, …).
    pub method: &'a str,
    /// The original request-target, as received by the proxy in front (path and query).
    pub target: &'a str,
}

/// The decision, owned, for the listener to render.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delegated {
    /// The request may go on: the identity headers for the proxy to set upstream.
    Allow {
        identity: Identity,
        request_id: HeaderValue,
        /// `mode: shadow` allowed a request that enforce mode would refuse.
        shadow: bool,
        /// `forward_credentials` of the snapshot that decided: whether the client's credential headers
        /// may go upstream (else the proxy in front is told to remove them, where its protocol can).
        forward_credentials: bool,
    },
    /// The request is refused: the answer (real status and code) and its envelope.
    Deny {
        answer: Answer,
        body: String,
        request_id: HeaderValue,
    },
}

impl Delegated {
    /// The request id of the answer.
    pub fn request_id(&self) -> &HeaderValue {
        match self {
            Self::Allow { request_id, .. } | Self::Deny { request_id, .. } => request_id,
        }
    }
}

// === impl Gateway (delegated) ===

impl Gateway {
    /// Decides the request `original` names, for a decision listener of `protocol`: the request came from
    /// `conn` with `headers` (the client's headers, as the proxy in front passed them). `original` is the
    /// listener's reading of its protocol's headers, or the answer it refuses with when it could not read
    /// them. Never fails: every error is a denial.
    pub fn decide_delegated(
        &self,
        protocol: DecisionProtocol,
        conn: &ConnInfo,
        headers: &HeaderMap,
        request_method: &Method,
        original: Result<Original<'_>, Answer>,
    ) -> Delegated {
        let started = Instant::now();
        let live = self.live();
        let settings = &live.snapshot.settings;
        let explain = settings.explain_denials;
        let trusted = settings
            .trusted_proxies
            .iter()
            .any(|net| net.contains(&conn.peer.ip()));
        // The original method, when the listener read one; else the decision request's own (logs only).
        let named_method = match &original {
            Ok(original) if trusted => Method::from_bytes(original.method.as_bytes()).ok(),
            _ => None,
        };
        let method = named_method
            .clone()
            .unwrap_or_else(|| request_method.clone());
        let cx = RequestContext::from_parts(
            &live,
            conn,
            headers,
            method,
            true,
            self.decision_log.is_some(),
            Some(protocol),
        );
        let refuse = |answer: Answer| {
            let body = answer.body(None, explain);
            let reason = answer.chain.as_ref().map_or_else(
                || answer.message.to_string(),
                |chain| chain.message.to_string(),
            );
            self.refuse_undecided(&cx, &answer, &reason, started);
            Delegated::Deny {
                answer,
                body,
                request_id: cx.id_value.clone(),
            }
        };
        if !cx.peer_trusted {
            return refuse(Answer::undecidable(format!(
                "decision requests are answered only for peers in trusted_proxies; {} is not one",
                conn.peer.ip()
            )));
        }
        let original = match original {
            Ok(original) => original,
            Err(answer) => return refuse(answer),
        };
        if named_method.is_none() {
            return refuse(Answer::rejected_request(format!(
                "{:?} is not an HTTP method",
                original.method
            )));
        }
        let facts = Facts {
            method: original.method,
            target: original.target,
            headers,
            peer_ip: conn.peer.ip(),
            now: unix_now(),
        };
        let mut seen = Observation::new();
        let (plan, _) = self.decide_facts(&cx, &facts, &mut seen);
        let shadow = seen.decision() == DecisionLabel::ShadowAllow;
        let (delegated, status) = match plan {
            Plan::Forward(forward) => (
                Delegated::Allow {
                    identity: forward.identity,
                    request_id: cx.id_value.clone(),
                    shadow,
                    forward_credentials: settings.forward_credentials,
                },
                200,
            ),
            Plan::Refuse(refusal) => {
                let status = refusal.answer.status;
                (
                    Delegated::Deny {
                        answer: refusal.answer,
                        body: refusal.body,
                        request_id: cx.id_value.clone(),
                    },
                    status,
                )
            }
            // `plan` never answers a delegated request itself; fail closed if it ever did.
            Plan::Verify(_) => {
                let answer = Answer::undecidable("internal error: no answer for this route");
                seen.refused(answer.code);
                let body = answer.body(None, explain);
                let status = answer.status;
                (
                    Delegated::Deny {
                        answer,
                        body,
                        request_id: cx.id_value.clone(),
                    },
                    status,
                )
            }
        };
        self.count_and_log(&cx, seen, status, started);
        delegated
    }
}
