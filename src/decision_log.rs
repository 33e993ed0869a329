//! The decision log: one JSON line per request, built on the request path and written off it.
//!
//! The proxy builds an [`Entry`] as soon as the decision is made (everything it needs is borrowed from the
//! snapshot then) and finishes it with the status and total latency once the response head is ready. The
//! finished [`Line`] goes through a bounded queue (`decision_log.queue_capacity`) with `try_send`: a full
//! queue drops the line and counts it in `permgate_decision_log_dropped_total`, so logging never blocks or
//! slows a request. A writer task formats the time and writes the lines to stdout, stderr or a file,
//! flushing whenever the queue runs empty.
//!
//! What a line never holds: a credential (token secret, API key, `Authorization` or `X-Auth-Key` value),
//! any other header, or the query string (it plays no part in the decision and often carries secrets).
//! Token ids, principals and the canonical path are fine.
//!
//! The writer task also feeds a [`DenialRing`] when one is given ([`DecisionLog::start_with_ring`]): the
//! last denied (and, in shadow mode, would-be denied) lines, parsed back from the text just written, for
//! the admin console's Recent denials page. That happens off the request path, after the line is written;
//! a line the full queue dropped is in neither.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::io::{AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::answer::push_json_string;
use crate::config::gateway::{DecisionLogSettings, DecisionLogSink};
use crate::metrics::{DecisionLabel, Metrics};
use crate::pipeline::Verdict;
use crate::routes::Requirement;
use crate::snapshot::Snapshot;

/// The sending side, held by the gateway: cheap to use from every request.
#[derive(Debug, Clone)]
pub struct DecisionLog {
    sender: mpsc::Sender<Line>,
    metrics: Arc<Metrics>,
}

/// One finished line: when the request arrived, and its JSON members after `time`.
#[derive(Debug)]
pub struct Line {
    time: SystemTime,
    members: String,
}

/// A line whose decision is known; [`Entry::finish`] adds what the response tells.
#[derive(Debug)]
pub struct Entry {
    time: SystemTime,
    members: String,
}

/// The writer task; [`LogWriter::stop`] drains the queue, flushes and ends it.
#[derive(Debug)]
pub struct LogWriter {
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

/// Why the decision log could not start.
#[derive(Debug, thiserror::Error)]
pub enum DecisionLogError {
    #[error("decision_log.path {}: cannot open for appending: {source}", path.display())]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("decision_log: sink `file` needs a path")]
    NoPath,
}

// === impl DecisionLog ===

impl DecisionLog {
    /// Opens the sink of `settings` and starts the writer; `None` when the sink is `off`. Must run inside a
    /// tokio runtime. The file is opened here so that an unwritable path fails the start, not the first line.
    pub fn start(
        settings: &DecisionLogSettings,
        metrics: Arc<Metrics>,
    ) -> Result<Option<(Self, LogWriter)>, DecisionLogError> {
        Self::start_with_ring(settings, metrics, None)
    }

    /// [`DecisionLog::start`], with the writer also keeping the denied lines it writes in `ring`.
    pub fn start_with_ring(
        settings: &DecisionLogSettings,
        metrics: Arc<Metrics>,
        ring: Option<Arc<DenialRing>>,
    ) -> Result<Option<(Self, LogWriter)>, DecisionLogError> {
        let sink: Box<dyn AsyncWrite + Send + Unpin> = match settings.sink {
            DecisionLogSink::Off => return Ok(None),
            DecisionLogSink::Stdout => Box::new(tokio::io::stdout()),
            DecisionLogSink::Stderr => Box::new(tokio::io::stderr()),
            DecisionLogSink::File => {
                let path = settings.path.clone().ok_or(DecisionLogError::NoPath)?;
                let file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&path)
                    .map_err(|source| DecisionLogError::Open { path, source })?;
                Box::new(tokio::fs::File::from_std(file))
            }
        };
        let (sender, receiver) = mpsc::channel(settings.queue_capacity.max(1));
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(write_lines(receiver, stopped, BufWriter::new(sink), ring));
        Ok(Some((
            Self { sender, metrics },
            LogWriter {
                stop: Some(stop),
                task,
            },
        )))
    }

    /// Queues a record that is not a request (an access-change record): `members` are the JSON object's
    /// members after `time` (no braces). Never waits; a full queue drops it and counts the drop.
    pub fn record(&self, time: SystemTime, members: String) {
        self.submit(Line { time, members });
    }

    /// Queues a line; never waits. A full (or closed) queue drops it and counts the drop.
    pub fn submit(&self, line: Line) {
        if self.sender.try_send(line).is_err() {
            self.metrics.decision_log_dropped();
        }
    }
}

// === impl LogWriter ===

impl LogWriter {
    /// Writes what is queued, flushes, and ends the writer (at shutdown, after the proxy has drained).
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        // Bounded: a stuck stdout must not hold up the exit.
        let _ = tokio::time::timeout(Duration::from_secs(5), &mut self.task).await;
    }
}

async fn write_lines(
    mut receiver: mpsc::Receiver<Line>,
    mut stopped: oneshot::Receiver<()>,
    mut out: BufWriter<Box<dyn AsyncWrite + Send + Unpin>>,
    ring: Option<Arc<DenialRing>>,
) {
    let mut text = String::with_capacity(1024);
    let keep = |text: &str| {
        if let Some(ring) = &ring {
            ring.offer(text);
        }
    };
    loop {
        let line = tokio::select! {
            line = receiver.recv() => line,
            _ = &mut stopped => None,
        };
        let Some(line) = line else { break };
        render(&line, &mut text);
        let mut result = out.write_all(text.as_bytes()).await;
        keep(&text);
        // Batch whatever else is waiting, then flush once: one write per burst, not per line.
        while result.is_ok() {
            match receiver.try_recv() {
                Ok(line) => {
                    render(&line, &mut text);
                    result = out.write_all(text.as_bytes()).await;
                    keep(&text);
                }
                Err(_) => break,
            }
        }
        if result.is_ok() {
            result = out.flush().await;
        }
        if let Err(error) = result {
            // Nothing sensible to do but say so; the next line tries again.
            tracing::warn!(%error, "cannot write the decision log");
        }
    }
    // Stopping: what is still queued is written too.
    receiver.close();
    while let Some(line) = receiver.recv().await {
        render(&line, &mut text);
        if out.write_all(text.as_bytes()).await.is_err() {
            break;
        }
    }
    let _ = out.flush().await;
}

// === impl DenialRing ===

/// The last denied requests as decision-log lines (newest last), for the admin console. Bounded: the
/// oldest is dropped when it is full. Only what the log writes is here, so nothing a line never holds (a
/// credential, a header, the query) can be.
#[derive(Debug)]
pub struct DenialRing {
    capacity: usize,
    lines: Mutex<VecDeque<serde_json::Value>>,
}

impl DenialRing {
    /// How many denials the console keeps by default.
    pub const DEFAULT_CAPACITY: usize = 500;

    /// An empty ring keeping the last `capacity` denials.
    pub fn new(capacity: usize) -> Arc<Self> {
        Arc::new(Self {
            capacity: capacity.max(1),
            lines: Mutex::new(VecDeque::with_capacity(capacity.clamp(1, 4096))),
        })
    }

    /// Keeps `text`, one rendered line, when it is a request whose decision is `deny` or `shadow_allow`.
    /// The text is searched before it is parsed: most lines are allowed ones and cost one search. (A
    /// string value cannot hold the unescaped `"decision":"deny"`, so only the member itself matches.)
    pub fn offer(&self, text: &str) {
        if !text.contains("\"decision\":\"deny\"")
            && !text.contains("\"decision\":\"shadow_allow\"")
        {
            return;
        }
        let Ok(line) = serde_json::from_str::<serde_json::Value>(text.trim_end()) else {
            return;
        };
        if !matches!(
            line.get("decision").and_then(serde_json::Value::as_str),
            Some("deny" | "shadow_allow")
        ) {
            return;
        }
        // A panic elsewhere cannot leave a queue of log lines half-changed: the values are whole.
        let mut lines = self.lines.lock().unwrap_or_else(PoisonError::into_inner);
        if lines.len() == self.capacity {
            lines.pop_front();
        }
        lines.push_back(line);
    }

    /// The denials kept, newest first.
    pub fn newest_first(&self) -> Vec<serde_json::Value> {
        let lines = self.lines.lock().unwrap_or_else(PoisonError::into_inner);
        lines.iter().rev().cloned().collect()
    }

    /// How many it keeps at most.
    pub fn capacity(&self) -> usize {
        self.capacity
    }
}

/// `{"time":"<RFC 3339>",<members>}\n` into `text` (cleared first).
fn render(line: &Line, text: &mut String) {
    text.clear();
    text.push_str("{\"time\":");
    let time = OffsetDateTime::from(line.time)
        .format(&Rfc3339)
        .unwrap_or_else(|_| String::from("1970-01-01T00:00:00Z"));
    push_json_string(text, &time);
    text.push(',');
    text.push_str(&line.members);
    text.push_str("}\n");
}

// === impl Entry ===

/// What is known of a request when it arrives, for [`Entry::undecided`].
#[derive(Debug, Clone, Copy)]
pub struct Arrived<'a> {
    pub time: SystemTime,
    pub request_id: &'a str,
    /// The trace id of the request's valid W3C `traceparent`, if it had one.
    pub trace_id: Option<&'a str>,
    pub method: &'a str,
    /// Which listener it came to: `proxy`, or a decision listener's protocol.
    pub mode: &'a str,
}

/// What the proxy knows about a decided request, for [`Entry::decided`].
#[derive(Debug)]
pub struct Decided<'a, 's> {
    /// When and how the request arrived.
    pub arrived: Arrived<'a>,
    pub verdict: &'a Verdict<'s>,
    pub snapshot: &'s Snapshot,
    pub decision: DecisionLabel,
    /// The human reason (`allowed`, or why it was refused or would have been).
    pub reason: &'a str,
    /// How long `decide` took.
    pub decision_time: Duration,
}

impl Arrived<'_> {
    /// The line's first members: request id, trace id, method, mode.
    fn write_head(&self, out: &mut String) {
        string(out, "request_id", Some(self.request_id));
        out.push(',');
        string(out, "trace_id", self.trace_id);
        out.push(',');
        string(out, "method", Some(self.method));
        out.push(',');
        string(out, "mode", Some(self.mode));
    }
}

impl Entry {
    /// The members known once the request is decided.
    pub fn decided(decided: &Decided<'_, '_>) -> Self {
        let verdict = decided.verdict;
        let mut out = String::with_capacity(512);
        decided.arrived.write_head(&mut out);
        out.push(',');
        // The canonical path only: never the query.
        string(
            &mut out,
            "path",
            verdict
                .canonical
                .as_ref()
                .map(|target| target.path.as_str()),
        );
        out.push(',');
        string(&mut out, "route", verdict.route.map(|route| &*route.label));
        out.push(',');
        let principal = verdict.principal.map(|principal| principal.to_string());
        string(&mut out, "principal", principal.as_deref());
        out.push(',');
        // Also for a known token that was refused before it became the principal (disabled, expired, …):
        // `permgate access replay` re-decides the request as that token.
        string(&mut out, "token_id", verdict.token_id());
        out.push(',');
        string(&mut out, "account", verdict.account());
        out.push(',');
        let resource = verdict.resource.map(|resource| resource.to_string());
        string(&mut out, "resource", resource.as_deref());
        out.push(',');
        let (mode, keys): (&str, &[crate::policy::KeyId]) =
            match verdict.route.map(|route| &route.requirement) {
                Some(Requirement::AllOf(keys)) => ("all_of", keys),
                Some(Requirement::AnyOf(keys)) => ("any_of", keys),
                Some(Requirement::None) | None => ("none", &[]),
            };
        out.push_str("\"required\":[");
        for (index, key) in keys.iter().enumerate() {
            if index > 0 {
                out.push(',');
            }
            push_json_string(&mut out, decided.snapshot.policy.keys.name(*key));
        }
        out.push_str("],");
        string(&mut out, "required_mode", Some(mode));
        out.push(',');
        string(&mut out, "decision", Some(decided.decision.as_str()));
        out.push(',');
        string(&mut out, "reason", Some(decided.reason));
        out.push_str(",\"policies\":[");
        for (index, policy) in verdict.policies.iter().enumerate() {
            if index > 0 {
                out.push(',');
            }
            push_json_string(&mut out, policy);
        }
        out.push_str("],");
        let client_ip = verdict.client_ip.to_string();
        string(&mut out, "client_ip", Some(&client_ip));
        let _ = write!(
            out,
            ",\"decision_us\":{},\"generation\":{}",
            decided.decision_time.as_micros(),
            decided.snapshot.generation
        );
        Self {
            time: decided.arrived.time,
            members: out,
        }
    }

    /// A request refused before any decision (ambiguous framing; on a decision listener, a peer not in
    /// `trusted_proxies` or no original request named): the fields a decision would set are null. `mode`
    /// as in [`Arrived::mode`].
    pub fn undecided(
        arrived: Arrived<'_>,
        client_ip: std::net::IpAddr,
        reason: &str,
        generation: u64,
    ) -> Self {
        let mut out = String::with_capacity(384);
        arrived.write_head(&mut out);
        for name in [
            "path",
            "route",
            "principal",
            "token_id",
            "account",
            "resource",
        ] {
            out.push(',');
            string(&mut out, name, None);
        }
        out.push_str(",\"required\":[],");
        string(&mut out, "required_mode", Some("none"));
        out.push(',');
        string(&mut out, "decision", Some(DecisionLabel::Deny.as_str()));
        out.push(',');
        string(&mut out, "reason", Some(reason));
        out.push_str(",\"policies\":[],");
        let client_ip = client_ip.to_string();
        string(&mut out, "client_ip", Some(&client_ip));
        let _ = write!(out, ",\"decision_us\":0,\"generation\":{generation}");
        Self {
            time: arrived.time,
            members: out,
        }
    }

    /// Adds the answer: HTTP `status`, the gateway's error `code` (0 when it did not refuse; in shadow mode
    /// the code enforce mode would have answered), the upstream failure kind if any, and the total latency.
    pub fn finish(mut self, status: u16, code: u32, error: Option<&str>, total: Duration) -> Line {
        let _ = write!(self.members, ",\"status\":{status},\"code\":{code},");
        string(&mut self.members, "error", error);
        let _ = write!(self.members, ",\"total_us\":{}", total.as_micros());
        Line {
            time: self.time,
            members: self.members,
        }
    }
}

/// `"name":"value"` (escaped) or `"name":null`.
fn string(out: &mut String, name: &str, value: Option<&str>) {
    out.push('"');
    out.push_str(name);
    out.push_str("\":");
    match value {
        Some(value) => push_json_string(out, value),
        None => out.push_str("null"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_undecided_line_is_one_json_object_with_every_field() {
        let entry = Entry::undecided(
            Arrived {
                time: SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
                request_id: "rid",
                trace_id: Some("4bf92f3577b34da6a3ce929d0e0e4736"),
                method: "POST",
                mode: "proxy",
            },
            "192.0.2.1".parse().unwrap(),
            "Content-Length with \"Transfer-Encoding\"",
            3,
        );
        let line = entry.finish(400, 6003, None, Duration::from_micros(42));
        let mut text = String::new();
        render(&line, &mut text);
        assert!(text.ends_with("}\n"));
        let json: serde_json::Value = serde_json::from_str(text.trim_end()).unwrap();
        assert_eq!(json["time"], "2023-11-14T22:13:20Z");
        assert_eq!(json["decision"], "deny");
        assert_eq!(json["status"], 400);
        assert_eq!(json["code"], 6003);
        assert_eq!(json["total_us"], 42);
        assert_eq!(json["generation"], 3);
        assert_eq!(json["mode"], "proxy");
        assert!(json["route"].is_null());
        assert_eq!(json["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
        assert!(json["error"].is_null());
    }

    #[test]
    fn the_ring_keeps_the_last_denials_only() {
        let ring = DenialRing::new(2);
        let mut text = String::new();
        for (index, reason) in ["a", "b", "c"].into_iter().enumerate() {
            let entry = Entry::undecided(
                Arrived {
                    time: SystemTime::UNIX_EPOCH,
                    request_id: &format!("r{index}"),
                    trace_id: None,
                    method: "GET",
                    mode: "proxy",
                },
                "::1".parse().unwrap(),
                reason,
                1,
            );
            render(&entry.finish(400, 6003, None, Duration::ZERO), &mut text);
            ring.offer(&text);
        }
        // Not a denial: a config_change record, and a line whose reason merely quotes the member.
        ring.offer("{\"time\":\"x\",\"type\":\"config_change\"}\n");
        ring.offer("{\"decision\":\"allow\",\"reason\":\"\\\"decision\\\":\\\"deny\\\"\"}\n");
        let kept = ring.newest_first();
        assert_eq!(kept.len(), 2);
        assert_eq!(kept[0]["reason"], "c");
        assert_eq!(kept[1]["reason"], "b");
    }

    #[tokio::test]
    async fn a_full_queue_drops_and_counts_instead_of_waiting() {
        let metrics = Metrics::new().unwrap();
        let (sender, _receiver) = mpsc::channel(1);
        let log = DecisionLog {
            sender,
            metrics: Arc::clone(&metrics),
        };
        for _ in 0..3 {
            let entry = Entry::undecided(
                Arrived {
                    time: SystemTime::now(),
                    request_id: "r",
                    trace_id: None,
                    method: "GET",
                    mode: "proxy",
                },
                "::1".parse().unwrap(),
                "x",
                1,
            );
            log.submit(entry.finish(400, 6003, None, Duration::ZERO));
        }
        assert!(
            metrics
                .render()
                .contains("permgate_decision_log_dropped_total 2")
        );
    }
}
