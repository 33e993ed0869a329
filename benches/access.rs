//! Access-analysis benchmark (issue 19's targets), on the decision bench's synthetic world (10k accounts ×
//! 10 zones, 20k users, tokens with up to 10 policies), after the config is compiled:
//!
//! - `access/explain/<scale>`: `analysis::explain` of one token (resources, keys, routes; limit 50) — ≤ 50 ms
//!   at 1M tokens;
//! - `access/who_can/<scale>`: `analysis::who_can_route` for one route and one zone — ≤ 200 ms at 1M;
//! - `access/replay/<scale>`: re-deciding decision-log lines (JSON parsed, credential found by id, decided)
//!   — ≥ 200k lines/s;
//! - `access diff` of two 100k-token worlds that differ in 1% of their tokens (every 100th disabled) — ≤ 5 s,
//!   timed three times, printed at the end with the process's memory (VmRSS, VmHWM).
//!
//! `cargo bench --bench access` (`PERMGATE_BENCH_SCALES=100k` to skip 1M; default `100k,1m`).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // bench code: a broken setup should stop loudly

#[path = "support/mix.rs"]
mod mix;
#[path = "support/synth.rs"]
mod synth;

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use mix::{build, requests, snapshot_of};
use permgate::analysis::explain::ExplainOptions;
use permgate::analysis::replay::Replayer;
use permgate::analysis::{self};
use permgate::config::raw::TokenStatus;
use permgate::pipeline::decide;
use permgate::policy::Known;

fn memory() -> String {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|line| line.starts_with(name))
            .and_then(|line| line.split_whitespace().nth(1))
            .and_then(|kib| kib.parse::<u64>().ok())
            .map_or(0, |kib| kib / 1024)
    };
    format!(
        "VmRSS {} MiB, VmHWM {} MiB",
        field("VmRSS:"),
        field("VmHWM:")
    )
}

fn bench_access(c: &mut Criterion) {
    let scales = std::env::var("PERMGATE_BENCH_SCALES").unwrap_or_else(|_| "100k,1m".into());
    let mut report = Vec::new();
    for name in scales.split(',') {
        let tokens = match name.trim() {
            "100k" => 100_000,
            "1m" => 1_000_000,
            other => other.parse().expect("a scale: 100k, 1m or a number"),
        };
        let (snapshot, scale, raw) = build(tokens);
        report.push(format!("{name}: compiled; {}", memory()));
        let mix = requests(scale, &raw, 20_000);

        let mut group = c.benchmark_group("access");
        group
            .sample_size(20)
            .measurement_time(Duration::from_secs(5));
        let mut which = 0usize;
        group.bench_function(format!("explain/{name}"), |b| {
            b.iter(|| {
                which = (which + 7919) % tokens;
                let explanation = analysis::explain(
                    &snapshot,
                    Known::Token(u32::try_from(which).unwrap()),
                    ExplainOptions {
                        now: 1_700_000_000,
                        limit: 50,
                        blocked: false,
                        routes: true,
                    },
                )
                .unwrap();
                black_box(explanation.resources.len())
            });
        });
        let zone_requests: Vec<_> = mix
            .iter()
            .filter(|request| request.path.contains("/zones/"))
            .take(64)
            .collect();
        let mut next = 0usize;
        group.bench_function(format!("who_can/{name}"), |b| {
            b.iter(|| {
                next = (next + 1) % zone_requests.len();
                let request = zone_requests[next];
                let answer = analysis::who_can_route(
                    &snapshot,
                    request.method,
                    &request.path,
                    1_700_000_000,
                    false,
                )
                .unwrap();
                black_box(answer.allowed.len())
            });
        });
        // Decision-log lines as the proxy writes them (the members replay reads), from real decisions.
        let lines: Vec<String> = mix
            .iter()
            .map(|request| {
                let verdict = decide(&snapshot, &mix::facts(request));
                serde_json::json!({
                    "time": "2023-11-14T22:13:20Z",
                    "request_id": "r",
                    "method": request.method,
                    "path": request.path,
                    "route": verdict.route.map(|route| route.label.to_string()),
                    "principal": verdict.principal.map(|p| p.to_string()),
                    "token_id": verdict.token_id(),
                    "decision": if verdict.allowed() { "allow" } else { "deny" },
                    "client_ip": "127.0.0.1",
                    "status": verdict.status(),
                    "code": verdict.code(),
                })
                .to_string()
            })
            .collect();
        let mut replayer = Replayer::new(&snapshot);
        group.throughput(Throughput::Elements(lines.len() as u64));
        group.bench_function(format!("replay/{name}"), |b| {
            b.iter(|| {
                for line in &lines {
                    replayer.replay_line(line);
                }
            });
        });
        group.finish();
        let replayed = replayer.finish();
        assert_eq!(replayed.changed, 0, "the same config changes no verdict");
        report.push(format!(
            "{name}: after explain, who-can, replay; {}",
            memory()
        ));

        if tokens == 100_000 {
            let mut changed = raw.clone();
            for token in changed.tokens.iter_mut().step_by(100) {
                token.status = Some(TokenStatus::Disabled);
            }
            let other = snapshot_of(&changed);
            for round in 1..=3 {
                let started = Instant::now();
                let diff = analysis::diff(&snapshot, &other, 1_700_000_000, "NEW");
                let elapsed = started.elapsed();
                let (gained, lost) = diff.counts();
                report.push(format!(
                    "{name}: diff of 1% disabled tokens, round {round}: {elapsed:.2?} ({gained} gained, {lost} lost, {} token changes); {}",
                    diff.tokens.len(),
                    memory()
                ));
            }
        }
    }
    for line in report {
        eprintln!("{line}");
    }
}

criterion_group!(benches, bench_access);
criterion_main!(benches);
