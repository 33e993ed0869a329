//! One request, in phases: its context is built once (`context`), then `decide` (`decide.rs`), then
//! `forward` (`forward.rs`) or the `verify` answer (`verify.rs`) or a refusal, and `observe` (`observe.rs`)
//! once its response head is ready.
//!
//! ```text
//! framing tap verdict → context (one load of the serving Live) → decide → plan
//!   plan = Forward → forward | Verify → verify answer | Refuse → error answer
//!   → observe (metrics on the generation's route series, decision log)
//! ```
//!
//! The request loads the serving [`Live`] once (`load_full`: the `Arc` keeps that generation alive to the
//! end, never the `ArcSwap` guard) and uses that one value for everything: the snapshot it is decided with,
//! the upstream URL and clients it is forwarded with, the upstream credential, the route series it is
//! counted on. No phase reads the gateway's `ArcSwap` again.

use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use http::{Request, Response, Version};
use hyper::body::Incoming;

use super::body::ProxyBody;
use super::context::{ConnInfo, RequestContext};
use super::decide::{Decided, Plan};
use super::error::ProxyError;
use super::failure_log::{self, FailureLog};
use super::forward::forward;
use super::live::{Live, LiveCertificate};
use super::observe::Observation;
use super::verify::verify_response;
use crate::decision_log::DecisionLog;
use crate::metrics::Metrics;
use crate::snapshot::Snapshot;

/// The gateway: what every request reads (the serving [`Live`]: snapshot, upstream clients, certificate,
/// route series, swapped whole by the reloader), shared by every connection.
#[derive(Debug)]
pub struct Gateway {
    live: Arc<ArcSwap<Live>>,
    pub(super) metrics: Arc<Metrics>,
    pub(super) decision_log: Option<DecisionLog>,
    /// Warnings about failed requests, one line per kind per interval when they repeat.
    pub(super) failures: Arc<FailureLog>,
}

/// Where the gateway reports what it does: its metrics, and the decision log when one is on.
#[derive(Debug, Clone)]
pub struct Observer {
    pub metrics: Arc<Metrics>,
    pub decision_log: Option<DecisionLog>,
}

// === impl Gateway ===

impl Gateway {
    /// A gateway serving `snapshot` (with `certificate` when the proxy listener speaks TLS), with upstream
    /// clients built from its settings, reporting to `observer`.
    pub fn new(
        snapshot: Arc<Snapshot>,
        certificate: Option<Arc<rustls::sign::CertifiedKey>>,
        observer: Observer,
    ) -> Result<Arc<Self>, ProxyError> {
        let live = Live::first(snapshot, certificate, &observer.metrics)?;
        Ok(Arc::new(Self {
            live: Arc::new(ArcSwap::from_pointee(live)),
            metrics: observer.metrics,
            decision_log: observer.decision_log,
            failures: FailureLog::new(failure_log::SUMMARY_INTERVAL),
        }))
    }

    /// The gateway's metrics.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// What is serving now (the reloader builds the next generation from it).
    /// The decision log, when one is on (the reloader writes access-change records to it).
    pub fn decision_log(&self) -> Option<&DecisionLog> {
        self.decision_log.as_ref()
    }

    pub fn live(&self) -> Arc<Live> {
        self.live.load_full()
    }

    /// The snapshot serving now.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        Arc::clone(&self.live.load().snapshot)
    }

    /// The one store of a reload: from here every new request and TLS handshake reads `live`.
    pub fn apply(&self, live: Live) {
        self.live.store(Arc::new(live));
    }

    /// The inbound certificate resolver: each handshake gets the serving generation's certificate.
    pub fn certificate_resolver(&self) -> Arc<LiveCertificate> {
        Arc::new(LiveCertificate::new(Arc::clone(&self.live)))
    }

    /// Serves one request; never fails (every error is an answer).
    pub async fn handle(&self, request: Request<Incoming>, conn: &ConnInfo) -> Response<ProxyBody> {
        let started = Instant::now();
        // First, before anything can return early: keeps the tap's verdicts aligned with requests.
        let head_framing = if request.version() <= Version::HTTP_11 {
            conn.framing.next_head()
        } else {
            Ok(())
        };
        // Loaded once: the snapshot, upstream clients and route series of one generation, to the end.
        let live = self.live.load_full();
        let cx = RequestContext::new(&live, conn, &request, self.decision_log.is_some());
        let mut seen = Observation::new();
        // The phases run here, in this one future: the forward phase's future is this one's only nested one.
        let result = match head_framing.map_err(ProxyError::Framing) {
            Err(refused) => Err(refused),
            Ok(()) => match self.decide(&cx, &request, &mut seen) {
                Err(error) => Err(error),
                Ok(Decided {
                    plan: Plan::Refuse(refusal),
                    ..
                }) => Err(ProxyError::Refused(refusal)),
                Ok(Decided {
                    plan: Plan::Verify(token),
                    ..
                }) => Ok(verify_response(&token, &cx.id_value)),
                Ok(Decided {
                    plan: Plan::Forward(allowed),
                    at,
                    offer,
                }) => forward(&cx, request, allowed, offer, at).await,
            },
        };
        self.observe(&cx, result, seen, started)
    }
}
