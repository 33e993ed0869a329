//! Helpers for the reload and observability tests: start everything `permgate serve` starts (proxy, admin
//! listener, decision log, reloader) in-process on port 0, read `/status` and `/metrics`, edit config files
//! the ways operators and tools do, and poll with a deadline instead of sleeping.
#![allow(dead_code)]

use std::path::Path;
use std::time::Duration;

use permgate::cli::serve::{Services, start};
use permgate::reload::Triggers;
use serde_json::Value;

use crate::common::*;

/// How long a poll waits before the test fails.
pub const DEADLINE: Duration = Duration::from_secs(10);

/// Only direct `reload_now` calls reload: deterministic tests.
pub const MANUAL: Triggers = Triggers {
    watch: false,
    timer: false,
    sighup: false,
};

/// File events reload (no timer, no process-wide SIGHUP handler).
pub const WATCHED: Triggers = Triggers {
    watch: true,
    timer: false,
    sighup: false,
};

/// Loads the test config and starts every service on it.
pub async fn start_services(config: &TestConfig, triggers: Triggers) -> Services {
    let snapshot = permgate::config::load(&config.gateway_path)
        .unwrap_or_else(|errors| panic!("test config does not load:\n{errors}"));
    let services = start(&config.gateway_path, snapshot, triggers)
        .await
        .unwrap_or_else(|error| panic!("cannot start: {error}"));
    if triggers != MANUAL {
        // The watch is set up before the start check: edits from now on are seen.
        wait_for_status(&services, |status| {
            status["last_reload"]["trigger"] == "start"
        })
        .await;
    }
    services
}

/// `GET path` on the admin listener.
pub async fn admin_get(services: &Services, path: &str) -> RawResponse {
    send(services.admin.addr, "GET", path, &[]).await
}

/// The `/status` document.
pub async fn status(services: &Services) -> Value {
    let response = admin_get(services, "/status").await;
    assert_eq!(response.status, 200, "{}", response.body);
    serde_json::from_str(&response.body).unwrap()
}

/// Polls `/status` until `done` holds (every 25 ms, up to [`DEADLINE`]).
pub async fn wait_for_status(services: &Services, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let status = status(services).await;
        if done(&status) {
            return status;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("status never reached the expected state:\n{status:#}");
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Waits until the serving generation is at least `generation`.
pub async fn wait_for_generation(services: &Services, generation: u64) -> Value {
    wait_for_status(services, |status| {
        status["generation"].as_u64() >= Some(generation)
    })
    .await
}

/// The current generation.
pub fn generation(services: &Services) -> u64 {
    services.proxy.gateway.snapshot().generation
}

/// Replaces a file the way editors and config tools do: write a temporary file beside it, then rename
/// it over the original (the original inode is gone; a watch on the file itself would be lost).
pub fn write_by_rename(path: &Path, content: &str) {
    let temporary = path.with_file_name(format!(
        ".{}.tmp",
        path.file_name().unwrap().to_string_lossy()
    ));
    std::fs::write(&temporary, content).unwrap();
    std::fs::rename(&temporary, path).unwrap();
}

/// Edits a file in place with `edit` (which must change it).
pub fn edit(path: &Path, edit: impl FnOnce(String) -> String) {
    let before = std::fs::read_to_string(path).unwrap();
    let after = edit(before.clone());
    assert_ne!(
        before,
        after,
        "the edit of {} changed nothing",
        path.display()
    );
    std::fs::write(path, after).unwrap();
}

/// `GET` with a bearer token on the proxy: (status, gateway error code or 0).
pub async fn call(services: &Services, path: &str, token: &str) -> (u16, u64) {
    let authorization = bearer(token);
    let response = send(
        services.proxy.addr,
        "GET",
        path,
        &[("Authorization", &authorization)],
    )
    .await;
    (response.status, response.code().unwrap_or(0))
}

/// `GET` with Joe's legacy key on the proxy: (status, code or 0).
pub async fn call_with_key(services: &Services, path: &str) -> (u16, u64) {
    let response = send(
        services.proxy.addr,
        "GET",
        path,
        &[("X-Auth-Email", JOE_EMAIL), ("X-Auth-Key", JOE_KEY)],
    )
    .await;
    (response.status, response.code().unwrap_or(0))
}

/// The value of one sample of the `/metrics` text (labels given as `name="value"` pairs), parsed with a
/// real Prometheus text-format parser; `None` when absent.
pub fn sample(text: &str, metric: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let scrape =
        prometheus_parse::Scrape::parse(text.lines().map(|line| Ok(line.to_string()))).unwrap();
    scrape
        .samples
        .iter()
        .filter(|sample| sample.metric == metric)
        .filter(|sample| {
            labels
                .iter()
                .all(|(name, value)| sample.labels.get(name) == Some(*value))
        })
        .map(|sample| match &sample.value {
            prometheus_parse::Value::Counter(value)
            | prometheus_parse::Value::Gauge(value)
            | prometheus_parse::Value::Untyped(value) => *value,
            prometheus_parse::Value::Histogram(buckets) => {
                buckets.last().map_or(0.0, |bucket| bucket.count)
            }
            prometheus_parse::Value::Summary(_) => f64::NAN,
        })
        .reduce(|total, value| total + value)
}

/// The `/metrics` text.
pub async fn metrics(services: &Services) -> String {
    let response = admin_get(services, "/metrics").await;
    assert_eq!(response.status, 200);
    response.body
}
