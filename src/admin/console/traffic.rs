//! The console's traffic view, from the gateway's own metrics (no Prometheus needed): totals read from the
//! registry now, and a history of them sampled every [`SAMPLE_INTERVAL`] for the last [`HISTORY`] samples
//! (ten minutes), from which the page's chart draws rates.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use prometheus::proto::MetricFamily;
use serde_json::{Value, json};

use crate::metrics::Metrics;

/// How often the history is sampled.
pub const SAMPLE_INTERVAL: Duration = Duration::from_secs(2);
/// How many samples are kept (10 minutes at 2 s).
pub const HISTORY: usize = 300;

/// The gateway's traffic counters at one moment (all cumulative since the start).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Totals {
    /// Requests answered, by `decision` (`allow`, `deny`, `shadow_allow`, `none`).
    pub by_decision: BTreeMap<String, f64>,
    /// Denied requests (`deny`) by route label.
    pub denied_by_route: BTreeMap<String, f64>,
    /// Denied requests by status code.
    pub denied_by_code: BTreeMap<String, f64>,
    /// Upstream failures by kind.
    pub upstream_errors: BTreeMap<String, f64>,
    /// Decisions timed, and their total time in seconds.
    pub decisions: u64,
    pub decision_seconds: f64,
    /// The decision-latency histogram: (upper bound in seconds, cumulative count).
    pub decision_buckets: Vec<(f64, u64)>,
}

impl Totals {
    /// The totals in `families` (what `Metrics::gather` returns).
    pub fn of(families: &[MetricFamily]) -> Self {
        let mut totals = Self::default();
        for family in families {
            match family.name() {
                "permgate_requests_total" => {
                    for metric in &family.metric {
                        let label = |name: &str| {
                            metric
                                .label
                                .iter()
                                .find(|pair| pair.name() == name)
                                .map_or("", |pair| pair.value())
                        };
                        let value = metric.counter.value();
                        let decision = label("decision");
                        *totals.by_decision.entry(decision.to_string()).or_default() += value;
                        if decision == "deny" && value > 0.0 {
                            *totals
                                .denied_by_route
                                .entry(label("route").to_string())
                                .or_default() += value;
                            *totals
                                .denied_by_code
                                .entry(label("code").to_string())
                                .or_default() += value;
                        }
                    }
                }
                "permgate_upstream_errors_total" => {
                    for metric in &family.metric {
                        let kind = metric
                            .label
                            .iter()
                            .find(|pair| pair.name() == "kind")
                            .map_or("", |pair| pair.value());
                        *totals.upstream_errors.entry(kind.to_string()).or_default() +=
                            metric.counter.value();
                    }
                }
                "permgate_decision_duration_seconds" => {
                    for metric in &family.metric {
                        let histogram = &metric.histogram;
                        totals.decisions += histogram.sample_count();
                        totals.decision_seconds += histogram.sample_sum();
                        totals.decision_buckets = histogram
                            .bucket
                            .iter()
                            .map(|bucket| (bucket.upper_bound(), bucket.cumulative_count()))
                            .collect();
                    }
                }
                _ => {}
            }
        }
        totals
    }

    /// Every request answered.
    pub fn requests(&self) -> f64 {
        self.by_decision.values().sum()
    }

    /// Denied requests (`deny`).
    pub fn denied(&self) -> f64 {
        self.by_decision.get("deny").copied().unwrap_or(0.0)
    }

    /// Upstream failures of every kind.
    pub fn upstream_failures(&self) -> f64 {
        self.upstream_errors.values().sum()
    }

    /// The smallest bucket bound under which at least `quantile` of the decisions fell (an upper
    /// estimate, as Prometheus's `histogram_quantile` without interpolation); none before any decision.
    pub fn decision_quantile(&self, quantile: f64) -> Option<f64> {
        if self.decisions == 0 {
            return None;
        }
        let wanted = quantile * self.decisions as f64;
        self.decision_buckets
            .iter()
            .find(|(_, count)| *count as f64 >= wanted)
            .map(|(bound, _)| *bound)
    }
}

/// One point of the history: Unix milliseconds and the cumulative counts then.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub at_ms: i64,
    pub requests: f64,
    pub denied: f64,
    pub upstream_errors: f64,
    pub decisions: u64,
    pub decision_seconds: f64,
}

impl Sample {
    fn of(totals: &Totals, at_ms: i64) -> Self {
        Self {
            at_ms,
            requests: totals.requests(),
            denied: totals.denied(),
            upstream_errors: totals.upstream_failures(),
            decisions: totals.decisions,
            decision_seconds: totals.decision_seconds,
        }
    }

    fn to_json(&self) -> Value {
        json!({
            "at_ms": self.at_ms,
            "requests": self.requests,
            "denied": self.denied,
            "upstream_errors": self.upstream_errors,
            "decisions": self.decisions,
            "decision_seconds": self.decision_seconds,
        })
    }
}

/// The sampled history.
#[derive(Debug, Default)]
pub struct History {
    samples: Mutex<VecDeque<Sample>>,
}

impl History {
    /// Takes one sample of `metrics` now.
    pub fn sample(&self, metrics: &Metrics) {
        let sample = Sample::of(&Totals::of(&metrics.gather()), now_ms());
        // A sample is whole or absent: a panic elsewhere cannot leave the queue half-changed.
        let mut samples = self.samples.lock().unwrap_or_else(PoisonError::into_inner);
        if samples.len() >= HISTORY {
            samples.pop_front();
        }
        samples.push_back(sample);
    }

    /// The `/console/api/traffic` document: the samples (oldest first) and one taken now.
    pub fn to_json(&self, totals: &Totals) -> Value {
        let samples = self.samples.lock().unwrap_or_else(PoisonError::into_inner);
        let mut points: Vec<Value> = samples.iter().map(Sample::to_json).collect();
        points.push(Sample::of(totals, now_ms()).to_json());
        json!({
            "interval_ms": SAMPLE_INTERVAL.as_millis() as u64,
            "samples": points,
        })
    }
}

/// Samples `metrics` into `history` every [`SAMPLE_INTERVAL`] until aborted.
pub async fn run_sampler(history: Arc<History>, metrics: Arc<Metrics>) {
    let mut ticks = tokio::time::interval(SAMPLE_INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        history.sample(&metrics);
    }
}

fn now_ms() -> i64 {
    let now = time::OffsetDateTime::now_utc();
    i64::try_from(now.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_are_read_from_the_registry() {
        let metrics = Metrics::new().unwrap();
        metrics.decision(Duration::from_micros(3));
        metrics.upstream_error("timeout");
        let totals = Totals::of(&metrics.gather());
        assert_eq!(totals.decisions, 1);
        assert!(totals.decision_seconds > 0.0);
        assert_eq!(totals.upstream_failures(), 1.0);
        assert_eq!(totals.upstream_errors.get("timeout"), Some(&1.0));
        assert!(totals.decision_quantile(0.99).is_some());
        let history = History::default();
        history.sample(&metrics);
        let document = history.to_json(&totals);
        assert_eq!(document["samples"].as_array().unwrap().len(), 2);
        assert_eq!(document["samples"][0]["upstream_errors"], 1.0);
    }
}
