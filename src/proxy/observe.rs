//! The observe phase: every request is observed once its response head is ready: `permgate_requests_total`
//! and the duration histograms (on its generation's route series, by route index), and (when on) one
//! decision-log line, built from the verdict and queued without waiting. Failures are counted, logged (a
//! repeated failure as one line per kind per interval) and turned into the client's answer here.

use std::time::Instant;

use http::Response;
use http::header::{CONNECTION, HeaderValue};

use super::body::ProxyBody;
use super::context::RequestContext;
use super::decide::Plan;
use super::error::{ProxyError, Side, error_response};
use super::service::Gateway;
use crate::decision_log::{Decided, Entry};
use crate::metrics::DecisionLabel;
use crate::pipeline::Verdict;
use crate::routes::Route;

/// What one request's observation has gathered by the time its response head is ready.
#[derive(Debug)]
pub(super) struct Observation<'s> {
    /// The matched route and its index in the snapshot's route table.
    route: Option<(usize, &'s Route)>,
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
    pub fn new() -> Self {
        Self {
            route: None,
            decision: DecisionLabel::Deny,
            code: 0,
            error: None,
            entry: None,
        }
    }

    /// What was decided so far.
    pub fn decision(&self) -> DecisionLabel {
        self.decision
    }

    /// The request is refused with `code` after all (a plan that cannot be carried out).
    pub fn refused(&mut self, code: u32) {
        self.decision = DecisionLabel::Deny;
        self.code = code;
    }
}

// === impl Gateway (observe) ===

impl Gateway {
    /// Notes the decision for metrics and, when the log is on, starts the request's decision-log line.
    pub(super) fn observe_decision<'s>(
        &self,
        seen: &mut Observation<'s>,
        verdict: &Verdict<'s>,
        plan: &Plan,
        cx: &RequestContext<'s>,
        decision_time: std::time::Duration,
    ) {
        seen.route = verdict.route_index.zip(verdict.route);
        (seen.decision, seen.code) = match plan {
            Plan::Refuse(refusal) => (DecisionLabel::Deny, refusal.answer.code),
            // Forwarded although the decision refused it: shadow mode.
            Plan::Forward(_) if !verdict.allowed() => (DecisionLabel::ShadowAllow, verdict.code()),
            Plan::Forward(_) | Plan::Verify(_) => (DecisionLabel::Allow, 0),
        };
        let (Some(_), Some(arrived)) = (&self.decision_log, cx.arrival()) else {
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
            arrived,
            verdict,
            snapshot: cx.snapshot(),
            decision: seen.decision,
            reason,
            decision_time,
        }));
    }

    /// Ends a request: a failure becomes its answer; it is counted on its generation's series and its
    /// decision-log line (if any) is queued.
    pub(super) fn observe(
        &self,
        cx: &RequestContext<'_>,
        result: Result<Response<ProxyBody>, ProxyError>,
        mut seen: Observation<'_>,
        started: Instant,
    ) -> Response<ProxyBody> {
        let response = match result {
            Ok(response) => response,
            Err(error) => {
                self.failed(&error, &mut seen);
                if let (None, Some(arrived)) = (&seen.entry, cx.arrival()) {
                    seen.entry = Some(Entry::undecided(
                        arrived,
                        cx.conn.peer.ip(),
                        &error.to_string(),
                        cx.snapshot().generation,
                    ));
                }
                self.error_answer(&error, cx)
            }
        };
        self.count_and_log(cx, seen, response.status().as_u16(), started);
        response
    }

    /// Counts a request answered with `status` on its generation's series (and, on a decision listener,
    /// by its mode) and queues its decision-log line.
    pub(super) fn count_and_log(
        &self,
        cx: &RequestContext<'_>,
        mut seen: Observation<'_>,
        status: u16,
        started: Instant,
    ) {
        let elapsed = started.elapsed();
        self.metrics.routed_request(
            &cx.live.route_series,
            seen.route,
            &cx.method,
            seen.decision,
            status,
            elapsed,
        );
        if let Some(mode) = cx.delegated {
            self.metrics.delegated_decision(mode, seen.decision);
        }
        if let (Some(log), Some(entry)) = (&self.decision_log, seen.entry.take()) {
            log.submit(entry.finish(status, seen.code, seen.error, elapsed));
        }
    }

    /// A request refused before any decision on a decision listener (`answer`, with `reason` for the
    /// logs): counted and logged as the proxy's undecided refusals are.
    pub(super) fn refuse_undecided(
        &self,
        cx: &RequestContext<'_>,
        answer: &crate::answer::Answer,
        reason: &str,
        started: Instant,
    ) {
        let mut seen = Observation::new();
        seen.code = answer.code;
        if let (Some(_), Some(arrived)) = (&self.decision_log, cx.arrival()) {
            seen.entry = Some(Entry::undecided(
                arrived,
                cx.conn.peer.ip(),
                reason,
                cx.snapshot().generation,
            ));
        }
        self.count_and_log(cx, seen, answer.status, started);
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
    fn error_answer(&self, error: &ProxyError, cx: &RequestContext<'_>) -> Response<ProxyBody> {
        let (request_id, method) = (cx.request_id(), &cx.method);
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
        let explain = cx.snapshot().settings.explain_denials;
        let mut response = error_response(error, &cx.id_value, explain);
        if cx.http1 && (error.closes_connection() || method == http::Method::CONNECT) {
            // The body's end or the connection's protocol is in doubt: never read another request from it.
            response
                .headers_mut()
                .insert(CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }
}
