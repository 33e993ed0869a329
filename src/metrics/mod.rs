//! The gateway's Prometheus metrics: one registry per gateway (never the process-wide default, so tests
//! and several gateways in one process do not share counters) and one typed function per event.
//!
//! Labels are bounded by construction: `route` is a route's `id` (or its path pattern) from the config, or
//! `"none"`; `method` is one of the nine standard methods or `OTHER`; `decision` and `outcome` are enums;
//! `code` is the HTTP status (100–599, else `other`); `kind` is a fixed set. Never a raw path, a token id, a
//! user or anything a client controls. Recording never blocks: counters and histograms are atomics behind
//! a read-mostly label map.
//!
//! The proxy's per-request series are resolved once per route and snapshot ([`RouteSeriesTable`], built by
//! the reloader beside each snapshot and swapped in with it) rather than looked up by their label values on
//! every request (hashing four strings and taking the map's lock): the same series, with the same values, as
//! `with_label_values` would give.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use http::Method;
use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::routes::Route;
use crate::snapshot::Snapshot;

/// The route label of a request that matched no route.
pub const NO_ROUTE: &str = "none";

/// What the gateway decided, as the `decision` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecisionLabel {
    /// Authorized (forwarded, or answered by the gateway itself, like token verify).
    Allow,
    /// Refused: a rejected target or framing (400), no route (400/7000), a credential or policy denial
    /// (400/403).
    Deny,
    /// Would be refused, but `mode: shadow` forwarded it.
    ShadowAllow,
    /// No decision was made: the connection was over the limit (503).
    None,
}

impl DecisionLabel {
    /// The label value (also the decision log's `decision`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::Deny => "deny",
            Self::ShadowAllow => "shadow_allow",
            Self::None => "none",
        }
    }
}

/// How one reload attempt ended, as the `outcome` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ReloadOutcome {
    /// A new snapshot (or certificate) is serving.
    Applied,
    /// The files are as last seen: nothing to do.
    Unchanged,
    /// The new files have errors: the last good snapshot keeps serving.
    Rejected,
}

impl ReloadOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Applied => "applied",
            Self::Unchanged => "unchanged",
            Self::Rejected => "rejected",
        }
    }
}

/// The `kind` values of `permgate_upstream_errors_total` (see `ProxyError::kind`).
pub const UPSTREAM_ERROR_KINDS: [&str; 4] = ["connect", "exchange", "switch", "timeout"];

/// The `kind` values of `permgate_client_errors_total` (see `ProxyError::kind`).
pub const CLIENT_ERROR_KINDS: [&str; 2] = ["body_broken", "body_timeout"];

/// Every metric family the gateway serves (the `process_*` ones on Linux), for dashboards, alerts and the
/// tests that check each is present from the start.
pub const FAMILIES: &[&str] = &[
    "permgate_requests_total",
    "permgate_request_duration_seconds",
    "permgate_decision_duration_seconds",
    "permgate_upstream_errors_total",
    "permgate_client_errors_total",
    "permgate_config_reloads_total",
    "permgate_config_last_reload_success",
    "permgate_config_last_reload_timestamp_seconds",
    "permgate_config_generation",
    "permgate_tokens",
    "permgate_routes",
    "permgate_config_tokens",
    "permgate_config_routes",
    "permgate_active_connections",
    "permgate_decision_log_dropped_total",
    "permgate_config_restart_required",
    "permgate_config_watcher_up",
    "permgate_config_watcher_errors_total",
    "permgate_config_access_changes_total",
    "permgate_build_info",
    "permgate_decision_requests_total",
    "process_cpu_seconds_total",
    "process_open_fds",
    "process_max_fds",
    "process_resident_memory_bytes",
    "process_virtual_memory_bytes",
    "process_start_time_seconds",
    "process_threads",
];

/// Every metric of the gateway, registered in its own registry.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    request_duration: HistogramVec,
    decision_duration: Histogram,
    upstream_errors: IntCounterVec,
    client_errors: IntCounterVec,
    reloads: IntCounterVec,
    last_reload_success: IntGauge,
    last_reload_timestamp: Gauge,
    generation: IntGauge,
    tokens: IntGauge,
    routes: IntGauge,
    /// `permgate_tokens` and `permgate_routes`: the same values under their first names, kept one release
    /// as aliases of `permgate_config_tokens` and `permgate_config_routes`.
    tokens_alias: IntGauge,
    routes_alias: IntGauge,
    active_connections: IntGauge,
    decision_log_dropped: IntCounter,
    restart_required: IntGauge,
    watcher_up: IntGauge,
    watcher_errors: IntCounter,
    access_changes: IntCounterVec,
    /// `permgate_decision_requests_total`: requests decided for a proxy in front, by mode and decision.
    delegated: IntCounterVec,
    /// The series of requests that matched no route.
    unrouted: RouteSeries,
}

/// Per route of one snapshot (same index as `RouteTable::routes`), its series once a request has used it.
/// Made by [`Metrics::route_series`] for one snapshot and only ever used with that snapshot's routes (the
/// proxy keeps the two together, in one value swapped at once).
pub struct RouteSeriesTable {
    routes: Box<[RouteSeries]>,
}

impl std::fmt::Debug for RouteSeriesTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RouteSeriesTable")
            .field("routes", &self.routes.len())
            .finish()
    }
}

/// One route's series: its duration histogram, and the request counters of the first few
/// (method, decision, status) combinations it has seen (the rest are looked up by label values).
#[derive(Debug, Default)]
struct RouteSeries {
    /// `None` if the series could not be had (it always can: the label count is right).
    duration: OnceLock<Option<Histogram>>,
    /// The key of [`counter_key`] and its counter.
    counters: [OnceLock<(u32, Option<IntCounter>)>; COUNTERS_PER_ROUTE],
}

/// How many `permgate_requests_total` series each route keeps at hand (an allowed 200, a denial or two).
const COUNTERS_PER_ROUTE: usize = 4;

/// Buckets of the whole-request histogram: from 250 µs (a denial) to 30 s (a slow upstream).
const REQUEST_BUCKETS: &[f64] = &[
    0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
    10.0, 30.0,
];

/// Buckets of the decision histogram: the decision is meant to take about a microsecond (SPEC §10).
const DECISION_BUCKETS: &[f64] = &[
    0.000_000_5,
    0.000_001,
    0.000_002,
    0.000_005,
    0.000_01,
    0.000_025,
    0.000_05,
    0.000_1,
    0.000_25,
    0.001,
    0.01,
];

// === impl Metrics ===

impl Metrics {
    /// A fresh registry with every metric registered (at zero).
    pub fn new() -> Result<Arc<Self>, prometheus::Error> {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "permgate_requests_total",
                "Requests handled, by route (id or pattern; none when no route matched), method (OTHER \
                 for non-standard ones), decision (allow, deny, shadow_allow, none) and HTTP status code.",
            ),
            &["route", "method", "decision", "code"],
        )?;
        let request_duration = HistogramVec::new(
            HistogramOpts::new(
                "permgate_request_duration_seconds",
                "Time from receiving a request's head to having its response head (forwarded or answered), \
                 by route.",
            )
            .buckets(REQUEST_BUCKETS.to_vec()),
            &["route"],
        )?;
        let decision_duration = Histogram::with_opts(
            HistogramOpts::new(
                "permgate_decision_duration_seconds",
                "Time spent deciding a request: canonical target, route match, authentication and \
                 authorization.",
            )
            .buckets(DECISION_BUCKETS.to_vec()),
        )?;
        let upstream_errors = IntCounterVec::new(
            Opts::new(
                "permgate_upstream_errors_total",
                "Authorized requests the upstream failed, by kind: connect (unreachable or refused, 502), \
                 exchange (broke the exchange, 502), switch (switched protocols other than to the websocket \
                 that was offered, 502), timeout (no response head in time, 504).",
            ),
            &["kind"],
        )?;
        let client_errors = IntCounterVec::new(
            Opts::new(
                "permgate_client_errors_total",
                "Authorized requests the client failed while they were being forwarded, by kind: \
                 body_broken (a malformed or cut-short request body, 400/1204), body_timeout (the body did \
                 not arrive within request_body_timeout_ms, 408/1203). Never counted as upstream errors.",
            ),
            &["kind"],
        )?;
        let reloads = IntCounterVec::new(
            Opts::new(
                "permgate_config_reloads_total",
                "Config reload attempts, by outcome: applied, unchanged (same content), rejected (errors; \
                 the last good config keeps serving).",
            ),
            &["outcome"],
        )?;
        let last_reload_success = IntGauge::new(
            "permgate_config_last_reload_success",
            "1 when the files on disk are the config being served; 0 when the last changed config was \
             rejected (see /status for the errors).",
        )?;
        let last_reload_timestamp = Gauge::new(
            "permgate_config_last_reload_timestamp_seconds",
            "Unix time of the last load that applied or rejected a changed config (the start counts).",
        )?;
        let generation = IntGauge::new(
            "permgate_config_generation",
            "Generation of the config being served: 1 at start, +1 per applied reload.",
        )?;
        let tokens = IntGauge::new(
            "permgate_config_tokens",
            "API tokens in the config being served.",
        )?;
        let routes = IntGauge::new(
            "permgate_config_routes",
            "Routes in the config being served.",
        )?;
        let tokens_alias = IntGauge::new(
            "permgate_tokens",
            "Deprecated alias of permgate_config_tokens (removed in the next release).",
        )?;
        let routes_alias = IntGauge::new(
            "permgate_routes",
            "Deprecated alias of permgate_config_routes (removed in the next release).",
        )?;
        let active_connections = IntGauge::new(
            "permgate_active_connections",
            "Inbound connections open on the proxy listener (including ones being told it is overloaded).",
        )?;
        let decision_log_dropped = IntCounter::new(
            "permgate_decision_log_dropped_total",
            "Decision-log lines dropped because the queue to the writer was full.",
        )?;
        let restart_required = IntGauge::new(
            "permgate_config_restart_required",
            "1 when the served config changed a setting that only takes effect at a restart (see /status).",
        )?;
        let watcher_up = IntGauge::new(
            "permgate_config_watcher_up",
            "1 when the file watcher is running; 0 while it is being recreated after an error.",
        )?;
        let watcher_errors = IntCounter::new(
            "permgate_config_watcher_errors_total",
            "Errors of the config file watcher (each one recreates it).",
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(request_duration.clone()))?;
        registry.register(Box::new(decision_duration.clone()))?;
        registry.register(Box::new(upstream_errors.clone()))?;
        registry.register(Box::new(client_errors.clone()))?;
        registry.register(Box::new(reloads.clone()))?;
        registry.register(Box::new(last_reload_success.clone()))?;
        registry.register(Box::new(last_reload_timestamp.clone()))?;
        registry.register(Box::new(generation.clone()))?;
        registry.register(Box::new(tokens.clone()))?;
        registry.register(Box::new(routes.clone()))?;
        registry.register(Box::new(tokens_alias.clone()))?;
        registry.register(Box::new(routes_alias.clone()))?;
        registry.register(Box::new(active_connections.clone()))?;
        registry.register(Box::new(decision_log_dropped.clone()))?;
        registry.register(Box::new(restart_required.clone()))?;
        registry.register(Box::new(watcher_up.clone()))?;
        let access_changes = IntCounterVec::new(
            Opts::new(
                "permgate_config_access_changes_total",
                "Access changed by applied reloads, by direction: gained or lost, counted per credential x \
                 resource x permission key (a route that moved without a key moving counts once). Each \
                 applied reload's changes are also one config_change line in the decision log.",
            ),
            &["direction"],
        )?;
        registry.register(Box::new(watcher_errors.clone()))?;
        registry.register(Box::new(access_changes.clone()))?;
        let build_info = IntGaugeVec::new(
            Opts::new(
                "permgate_build_info",
                "1, labelled with the running build: version (the crate's) and rustc (the compiler's \
                 minimum the build declares).",
            ),
            &["version", "rust_version"],
        )?;
        build_info
            .get_metric_with_label_values(&[
                env!("CARGO_PKG_VERSION"),
                env!("CARGO_PKG_RUST_VERSION"),
            ])?
            .set(1);
        registry.register(Box::new(build_info))?;
        // The standard process_* metrics (CPU seconds, resident and virtual memory, open and maximum file
        // descriptors, start time, threads), read from /proc at each scrape.
        #[cfg(target_os = "linux")]
        registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))?;
        for direction in ["gained", "lost"] {
            access_changes.get_metric_with_label_values(&[direction])?;
        }
        let delegated = IntCounterVec::new(
            Opts::new(
                "permgate_decision_requests_total",
                "Requests decided on a decision listener for a proxy in front, by mode (auth_request, \
                 forward_auth, ext_authz_http, ext_authz_grpc) and decision (allow, deny, shadow_allow). \
                 Each is also counted in permgate_requests_total.",
            ),
            &["mode", "decision"],
        )?;
        registry.register(Box::new(delegated.clone()))?;
        for mode in crate::settings::DecisionProtocol::ALL {
            for decision in [
                DecisionLabel::Allow,
                DecisionLabel::Deny,
                DecisionLabel::ShadowAllow,
            ] {
                delegated.get_metric_with_label_values(&[mode.as_str(), decision.as_str()])?;
            }
        }
        // Series that exist from the start, so dashboards and alerts see zeros rather than nothing.
        for kind in UPSTREAM_ERROR_KINDS {
            upstream_errors.get_metric_with_label_values(&[kind])?;
        }
        for kind in CLIENT_ERROR_KINDS {
            client_errors.get_metric_with_label_values(&[kind])?;
        }
        for outcome in [
            ReloadOutcome::Applied,
            ReloadOutcome::Unchanged,
            ReloadOutcome::Rejected,
        ] {
            reloads.get_metric_with_label_values(&[outcome.as_str()])?;
        }
        Ok(Arc::new(Self {
            registry,
            requests,
            request_duration,
            decision_duration,
            upstream_errors,
            client_errors,
            reloads,
            last_reload_success,
            last_reload_timestamp,
            generation,
            tokens,
            routes,
            tokens_alias,
            routes_alias,
            active_connections,
            decision_log_dropped,
            restart_required,
            watcher_up,
            watcher_errors,
            access_changes,
            delegated,
            unrouted: RouteSeries::default(),
        }))
    }

    /// Every metric in the Prometheus text format (what `/metrics` serves).
    pub fn render(&self) -> String {
        let mut buffer = Vec::with_capacity(16 * 1024);
        if let Err(error) = TextEncoder::new().encode(&self.registry.gather(), &mut buffer) {
            tracing::warn!(%error, "cannot encode the metrics");
        }
        String::from_utf8(buffer).unwrap_or_default()
    }

    /// Every metric family as collected now (the admin console's traffic view reads them).
    pub fn gather(&self) -> Vec<prometheus::proto::MetricFamily> {
        self.registry.gather()
    }

    /// One request finished (its response head is ready): counts it and records its duration.
    pub fn request(
        &self,
        route: &str,
        method: &Method,
        decision: DecisionLabel,
        status: u16,
        elapsed: Duration,
    ) {
        let code = status_label(status);
        if let Ok(counter) = self.requests.get_metric_with_label_values(&[
            route,
            method_label(method),
            decision.as_str(),
            code,
        ]) {
            counter.inc();
        }
        if let Ok(histogram) = self.request_duration.get_metric_with_label_values(&[route]) {
            histogram.observe(elapsed.as_secs_f64());
        }
    }

    /// An empty series table for the routes of `snapshot` (each route's series is resolved when a request
    /// first uses it).
    pub fn route_series(&self, snapshot: &Snapshot) -> RouteSeriesTable {
        RouteSeriesTable {
            routes: snapshot
                .routes
                .routes()
                .iter()
                .map(|_| RouteSeries::default())
                .collect(),
        }
    }

    /// One request finished, on `route` (its index in the snapshot's route table and the route) or none:
    /// the same series and values as [`Metrics::request`] with the route's label, taken from `table` (the
    /// table of that snapshot) by index instead of being looked up by label.
    pub fn routed_request(
        &self,
        table: &RouteSeriesTable,
        route: Option<(usize, &Route)>,
        method: &Method,
        decision: DecisionLabel,
        status: u16,
        elapsed: Duration,
    ) {
        let Some((index, route)) = route else {
            self.record(&self.unrouted, NO_ROUTE, method, decision, status, elapsed);
            return;
        };
        match table.routes.get(index) {
            Some(series) => self.record(series, &route.label, method, decision, status, elapsed),
            // Not an index of this table (never, when the table is the snapshot's): by label values.
            None => self.request(&route.label, method, decision, status, elapsed),
        }
    }

    /// Counts a request and records its duration in `series`, the series of the route labelled `route`.
    fn record(
        &self,
        series: &RouteSeries,
        route: &str,
        method: &Method,
        decision: DecisionLabel,
        status: u16,
        elapsed: Duration,
    ) {
        let key = counter_key(method, decision, status);
        // Looked up by label values only the first time (or when every slot holds another combination).
        let by_labels = || {
            self.requests
                .get_metric_with_label_values(&[
                    route,
                    method_label(method),
                    decision.as_str(),
                    status_label(status),
                ])
                .ok()
        };
        let counter = series.counters.iter().find_map(|slot| {
            let (slot_key, counter) = slot.get_or_init(|| (key, by_labels()));
            (*slot_key == key).then_some(counter)
        });
        match counter {
            Some(Some(counter)) => counter.inc(),
            Some(None) => {}
            // Every slot holds another combination: by label values.
            None => {
                if let Some(counter) = by_labels() {
                    counter.inc();
                }
            }
        }
        let duration = series.duration.get_or_init(|| {
            self.request_duration
                .get_metric_with_label_values(&[route])
                .ok()
        });
        if let Some(duration) = duration {
            duration.observe(elapsed.as_secs_f64());
        }
    }

    /// A decision listener of protocol `mode` decided a request (besides [`Metrics::routed_request`]).
    pub fn delegated_decision(
        &self,
        mode: crate::settings::DecisionProtocol,
        decision: DecisionLabel,
    ) {
        if let Ok(counter) = self
            .delegated
            .get_metric_with_label_values(&[mode.as_str(), decision.as_str()])
        {
            counter.inc();
        }
    }

    /// One decision (`pipeline::decide`) took `elapsed`.
    pub fn decision(&self, elapsed: Duration) {
        self.decision_duration.observe(elapsed.as_secs_f64());
    }

    /// The upstream failed an authorized request; `kind` is `ProxyError::kind` (connect, exchange, timeout).
    pub fn upstream_error(&self, kind: &'static str) {
        if let Ok(counter) = self.upstream_errors.get_metric_with_label_values(&[kind]) {
            counter.inc();
        }
    }

    /// The client failed an authorized request while it was forwarded; `kind` is `ProxyError::kind`
    /// (body_broken, body_timeout).
    pub fn client_error(&self, kind: &'static str) {
        if let Ok(counter) = self.client_errors.get_metric_with_label_values(&[kind]) {
            counter.inc();
        }
    }

    /// A snapshot is now serving (at start or by a reload) at Unix time `at`.
    pub fn config_applied(&self, snapshot: &Snapshot, at: i64) {
        self.generation
            .set(i64::try_from(snapshot.generation).unwrap_or(i64::MAX));
        self.tokens.set(count(snapshot.policy.tokens.len()));
        self.routes.set(count(snapshot.routes.len()));
        self.tokens_alias.set(count(snapshot.policy.tokens.len()));
        self.routes_alias.set(count(snapshot.routes.len()));
        self.last_reload_success.set(1);
        self.last_reload_timestamp.set(at as f64);
    }

    /// A reload attempt ended with `outcome`; `at` is its Unix time (ignored when unchanged).
    pub fn config_reload(&self, outcome: ReloadOutcome, at: i64) {
        if let Ok(counter) = self
            .reloads
            .get_metric_with_label_values(&[outcome.as_str()])
        {
            counter.inc();
        }
        if outcome == ReloadOutcome::Rejected {
            self.last_reload_success.set(0);
            self.last_reload_timestamp.set(at as f64);
        }
    }

    /// The files on disk were found to be exactly the config being served again (a rejected edit undone):
    /// `permgate_config_last_reload_success` is 1 again, with no new generation.
    pub fn config_in_sync(&self) {
        self.last_reload_success.set(1);
    }

    /// An applied reload's access changes, once computed: `gained` and `lost` grants.
    pub fn config_access_changes(&self, gained: usize, lost: usize) {
        for (direction, count) in [("gained", gained), ("lost", lost)] {
            if let Ok(counter) = self
                .access_changes
                .get_metric_with_label_values(&[direction])
            {
                counter.inc_by(u64::try_from(count).unwrap_or(u64::MAX));
            }
        }
    }

    /// Whether the served config changed a restart-only setting.
    pub fn restart_required(&self, required: bool) {
        self.restart_required.set(i64::from(required));
    }

    /// The file watcher is running (`true`) or broken and waiting to be recreated (`false`).
    pub fn watcher_up(&self, up: bool) {
        self.watcher_up.set(i64::from(up));
    }

    /// The file watcher failed (it will be recreated).
    pub fn watcher_error(&self) {
        self.watcher_errors.inc();
        self.watcher_up.set(0);
    }

    /// A decision-log line was dropped (queue full).
    pub fn decision_log_dropped(&self) {
        self.decision_log_dropped.inc();
    }

    /// An inbound connection opened; it counts as active until the guard is dropped.
    pub fn connection_opened(self: &Arc<Self>) -> ConnectionGuard {
        self.active_connections.inc();
        ConnectionGuard {
            metrics: Arc::clone(self),
        }
    }
}

/// Counts one open connection in `permgate_active_connections` while it lives.
#[derive(Debug)]
pub struct ConnectionGuard {
    metrics: Arc<Metrics>,
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.metrics.active_connections.dec();
    }
}

/// One `u32` per (method, decision, status): what a route's cached counter is for.
fn counter_key(method: &Method, decision: DecisionLabel, status: u16) -> u32 {
    let method = match *method {
        Method::GET => 0,
        Method::HEAD => 1,
        Method::POST => 2,
        Method::PUT => 3,
        Method::DELETE => 4,
        Method::PATCH => 5,
        Method::OPTIONS => 6,
        Method::CONNECT => 7,
        Method::TRACE => 8,
        _ => 9,
    };
    let decision = match decision {
        DecisionLabel::Allow => 0,
        DecisionLabel::Deny => 1,
        DecisionLabel::ShadowAllow => 2,
        DecisionLabel::None => 3,
    };
    method | decision << 4 | u32::from(status) << 8
}

fn count(len: usize) -> i64 {
    i64::try_from(len).unwrap_or(i64::MAX)
}

/// The `method` label: the standard methods as themselves, anything else (a client could send any token)
/// as `OTHER`, so the label stays bounded.
pub fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "OTHER",
    }
}

/// The `code` label: the HTTP status as three digits for the statuses a gateway sees in practice, its class
/// (`4xx`) for the rest, and `other` outside 100–599 (an upstream could send any three digits).
fn status_label(status: u16) -> &'static str {
    if let Some(label) = static_status(status) {
        return label;
    }
    match status / 100 {
        1 => "1xx",
        2 => "2xx",
        3 => "3xx",
        4 => "4xx",
        5 => "5xx",
        _ => "other",
    }
}

/// Common statuses as `'static` strings (a label must outlive the call; formatting would allocate).
fn static_status(status: u16) -> Option<&'static str> {
    Some(match status {
        100 => "100",
        101 => "101",
        200 => "200",
        201 => "201",
        202 => "202",
        204 => "204",
        206 => "206",
        301 => "301",
        302 => "302",
        303 => "303",
        304 => "304",
        307 => "307",
        308 => "308",
        400 => "400",
        401 => "401",
        403 => "403",
        404 => "404",
        405 => "405",
        406 => "406",
        408 => "408",
        409 => "409",
        410 => "410",
        412 => "412",
        413 => "413",
        415 => "415",
        422 => "422",
        429 => "429",
        500 => "500",
        501 => "501",
        502 => "502",
        503 => "503",
        504 => "504",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_registers_with_help_text() {
        let metrics = Metrics::new().unwrap();
        metrics.request(
            "dns.list",
            &Method::GET,
            DecisionLabel::Allow,
            200,
            Duration::from_millis(1),
        );
        metrics.decision(Duration::from_micros(1));
        let text = metrics.render();
        // Exactly the listed families are served: none missing, none unlisted.
        let served: std::collections::BTreeSet<&str> = text
            .lines()
            .filter_map(|line| line.strip_prefix("# HELP "))
            .filter_map(|rest| rest.split_whitespace().next())
            .collect();
        let listed: std::collections::BTreeSet<&str> = FAMILIES.iter().copied().collect();
        assert_eq!(served, listed, "{text}");
        assert!(text.contains(
            r#"permgate_requests_total{code="200",decision="allow",method="GET",route="dns.list"} 1"#
        ));
        assert!(text.contains(&format!(
            r#"permgate_build_info{{rust_version="{}",version="{}"}} 1"#,
            env!("CARGO_PKG_RUST_VERSION"),
            env!("CARGO_PKG_VERSION")
        )));
    }

    /// Resolved per route, the series and values are exactly those of the lookup by label values: for the
    /// routes of a snapshot, for no route, past the combinations a route keeps at hand, and after a reload.
    #[test]
    fn routed_requests_count_as_requests_by_label() {
        let gateway = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/gateway.yaml");
        let first = Arc::new(crate::config::load(&gateway).unwrap());
        let second = Arc::new(crate::config::load(&gateway).unwrap());
        let (routed, by_label) = (Metrics::new().unwrap(), Metrics::new().unwrap());
        let statuses = [200, 200, 403, 404, 201, 500, 418, 419, 200, 999];
        let tables = [
            routed.route_series(&first),
            routed.route_series(&second),
            routed.route_series(&first),
        ];
        for (snapshot, table) in [&first, &second, &first].into_iter().zip(&tables) {
            let routes = snapshot.routes.routes();
            let last = routes.len() - 1;
            let picks = [
                Some((0, &routes[0])),
                Some((1, &routes[1])),
                Some((last, &routes[last])),
                None,
            ];
            for (round, status) in statuses.iter().enumerate() {
                for (pick, route) in picks.iter().enumerate() {
                    let method = if (round + pick) % 3 == 0 {
                        Method::POST
                    } else {
                        Method::GET
                    };
                    let decision = if *status < 400 {
                        DecisionLabel::Allow
                    } else {
                        DecisionLabel::Deny
                    };
                    let elapsed = Duration::from_micros(137 * (round as u64 + 1));
                    routed.routed_request(table, *route, &method, decision, *status, elapsed);
                    let label = route.map_or(NO_ROUTE, |(_, route)| &*route.label);
                    by_label.request(label, &method, decision, *status, elapsed);
                }
            }
        }
        // An index past the table (never given by the proxy): counted by its label all the same.
        let stranger = crate::routes::Route::clone(&first.routes.routes()[0]);
        routed.routed_request(
            &tables[1],
            Some((first.routes.len(), &stranger)),
            &Method::GET,
            DecisionLabel::Allow,
            200,
            Duration::ZERO,
        );
        by_label.request(
            &stranger.label,
            &Method::GET,
            DecisionLabel::Allow,
            200,
            Duration::ZERO,
        );
        // The process collector's series read the live process (its memory, its CPU time), which may change
        // between the two renders: compared are the gateway's own.
        let own = |text: String| -> String {
            text.lines()
                .filter(|line| {
                    let name = line
                        .strip_prefix("# HELP ")
                        .or_else(|| line.strip_prefix("# TYPE "))
                        .unwrap_or(line);
                    !name.starts_with("process_")
                })
                .collect::<Vec<_>>()
                .join("\n")
        };
        assert_eq!(own(routed.render()), own(by_label.render()));
        assert!(
            routed
                .render()
                .contains("permgate_requests_total{code=\"4xx\"")
        );
    }

    #[test]
    fn labels_stay_bounded() {
        assert_eq!(method_label(&Method::from_bytes(b"BREW").unwrap()), "OTHER");
        assert_eq!(method_label(&Method::PATCH), "PATCH");
        assert_eq!(status_label(418), "4xx");
        assert_eq!(status_label(404), "404");
        assert_eq!(status_label(999), "other");
        assert_eq!(status_label(42), "other");
    }

    #[test]
    fn connections_are_counted_while_open() {
        let metrics = Metrics::new().unwrap();
        let first = metrics.connection_opened();
        let second = metrics.connection_opened();
        assert_eq!(metrics.active_connections.get(), 2);
        drop(first);
        drop(second);
        assert_eq!(metrics.active_connections.get(), 0);
    }
}
