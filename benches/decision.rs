//! Decision benchmark (SPEC §10): authenticate + authorize in process, at 1k and 1M tokens over 10k accounts
//! and 100k zones, tokens with up to 10 policies. Two measurements per scale:
//!
//! - `decision/authorize/<scale>`: the decision proper, `pipeline::authenticate_and_authorize` on an
//!   already-matched route (read the credential, SHA-256 it, evaluate) — what SPEC §10's ≤ 1 µs is about;
//! - `decision/pipeline/<scale>`: the whole `pipeline::decide` (canonical target, route match, client IP,
//!   method-override check, then the decision).
//!
//! Criterion reports the median; a second pass times single calls to report p50 and p99 (minus the timer's
//! own cost, measured in the same run).
//!
//! `cargo bench --bench decision` (set `PERMGATE_BENCH_SCALES=1k` to skip the 1M world).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // bench code: a broken setup should stop loudly

#[path = "support/synth.rs"]
mod synth;

use std::hint::black_box;
use std::net::IpAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use http::HeaderMap;
use permgate::config::{ConfigSet, SourceFile};
use permgate::pipeline::{Facts, authenticate_and_authorize, decide};
use permgate::policy::compile::{PolicySource, compile};
use permgate::policy::{KeyInterner, PolicySet};
use permgate::routes::RouteTable;
use permgate::snapshot::Snapshot;
use synth::{FAMILIES, NS, Rng, Scale, account_id, token_secret, world, zone_id};

const ACCOUNTS: usize = 10_000;
const ZONES_PER_ACCOUNT: usize = 10;

fn build(tokens: usize) -> (Snapshot, synth::Scale, permgate::config::raw::RawPolicyFile) {
    let scale = Scale {
        tokens,
        accounts: ACCOUNTS,
        zones_per_account: ZONES_PER_ACCOUNT,
        users: 20_000,
        max_policies_per_token: 10,
    };
    let raw = world(scale, 42);
    let gateway = SourceFile::from_text(
        "gateway.yaml",
        "listen: 127.0.0.1:0\nadmin_listen: 127.0.0.1:1\nupstream: { url: 'http://127.0.0.1:9' }\npolicy_files: [synthetic]\nroute_files: [routes.yaml]\n",
    );
    let set = ConfigSet::from_sources(
        gateway,
        Vec::new(),
        vec![SourceFile::from_text("routes.yaml", synth::routes_yaml())],
    )
    .expect("settings");
    let mut keys = KeyInterner::new();
    let routes = RouteTable::compile(&set.route_files, &mut keys).expect("routes");
    let started = Instant::now();
    let policy: PolicySet = compile(
        &[PolicySource {
            file: Path::new("synthetic"),
            raw: &raw,
        }],
        keys,
        NS,
    )
    .unwrap_or_else(|errors| {
        panic!(
            "synthetic world must compile: {} errors, first {:?}",
            errors.len(),
            errors.first()
        )
    });
    eprintln!("compiled {tokens} tokens in {:.2?}", started.elapsed());
    let snapshot = Snapshot {
        settings: set.settings.clone(),
        routes,
        policy,
        generation: 1,
        content_hash: String::new(),
        loaded_at: 0,
        files: Vec::new(),
    };
    (snapshot, scale, raw)
}

/// A request mix: 70% on a zone of the token's home account, 20% on the account itself, 10% on a zone of a
/// random other account (denied).
struct Request {
    method: &'static str,
    path: String,
    headers: HeaderMap,
}

fn requests(
    scale: Scale,
    raw: &permgate::config::raw::RawPolicyFile,
    count: usize,
) -> Vec<Request> {
    let mut rng = Rng(7);
    (0..count)
        .map(|_| {
            let token = rng.below(scale.tokens);
            let home = synth::token_home(raw, token).unwrap_or_else(|| account_id(0));
            let home_index = usize::from_str_radix(home.trim_start_matches('a'), 16).unwrap_or(0);
            let family = FAMILIES[rng.below(FAMILIES.len())];
            let method = if rng.below(3) == 0 { "POST" } else { "GET" };
            let roll = rng.below(10);
            let path = if roll < 7 {
                format!(
                    "/client/v4/zones/{}/{family}",
                    zone_id(home_index, rng.below(ZONES_PER_ACCOUNT), ZONES_PER_ACCOUNT)
                )
            } else if roll < 9 {
                format!("/client/v4/accounts/{home}/{family}")
            } else {
                let other = rng.below(scale.accounts);
                format!(
                    "/client/v4/zones/{}/{family}",
                    zone_id(other, rng.below(ZONES_PER_ACCOUNT), ZONES_PER_ACCOUNT)
                )
            };
            let method = if path.contains("/accounts/") {
                "GET"
            } else {
                method
            };
            let mut headers = HeaderMap::new();
            headers.insert(
                "authorization",
                format!("Bearer {}", token_secret(token))
                    .parse()
                    .expect("header"),
            );
            Request {
                method,
                path,
                headers,
            }
        })
        .collect()
}

fn facts(request: &Request) -> Facts<'_> {
    Facts {
        method: request.method,
        target: &request.path,
        headers: &request.headers,
        peer_ip: IpAddr::from([127, 0, 0, 1]),
        now: 1_700_000_000,
    }
}

/// Reads a request's bytes, as the proxy's HTTP parser just did: a request being decided is in cache, the
/// policy data it looks up may not be.
fn touch(request: &Request) -> usize {
    let mut sum = request.path.len();
    for (name, value) in &request.headers {
        sum += name.as_str().len()
            + value
                .as_bytes()
                .iter()
                .map(|byte| usize::from(*byte))
                .sum::<usize>();
    }
    black_box(sum)
}

/// Times `samples` single calls of `call(i)` (request `i` touched first, untimed); returns (p50, p99, share of
/// allowed) with the timer's own cost subtracted.
fn percentiles(
    samples: usize,
    requests: &[Request],
    mut call: impl FnMut(usize) -> bool,
) -> (Duration, Duration, f64) {
    let timer_cost = {
        let mut costs: Vec<Duration> = (0..samples.min(100_000))
            .map(|_| {
                let start = Instant::now();
                black_box(());
                start.elapsed()
            })
            .collect();
        costs.sort_unstable();
        costs[costs.len() / 2]
    };
    let mut times = Vec::with_capacity(samples);
    let mut allowed = 0usize;
    for index in 0..samples {
        touch(&requests[index % requests.len()]);
        let start = Instant::now();
        let ok = black_box(call(index));
        let elapsed = start.elapsed();
        allowed += usize::from(ok);
        times.push(elapsed.saturating_sub(timer_cost));
    }
    times.sort_unstable();
    let at = |q: f64| times[((times.len() as f64 * q) as usize).min(times.len() - 1)];
    (at(0.50), at(0.99), allowed as f64 / samples as f64)
}

fn bench_decisions(c: &mut Criterion) {
    let scales = std::env::var("PERMGATE_BENCH_SCALES").unwrap_or_else(|_| "1k,1m".into());
    let mut report = Vec::new();
    for name in scales.split(',') {
        let tokens = match name.trim() {
            "1k" => 1_000,
            "100k" => 100_000,
            "1m" => 1_000_000,
            other => other.parse().expect("a scale: 1k, 100k, 1m or a number"),
        };
        let (snapshot, scale, raw) = build(tokens);
        let requests = requests(scale, &raw, 4096);
        drop(raw);
        // The route of each request, matched once up front: `authorize` measures the decision alone.
        let matched: Vec<_> = requests
            .iter()
            .map(|request| {
                let found = snapshot
                    .routes
                    .lookup(request.method, &request.path)
                    .expect("every bench path has a route");
                (found.route, found.resource_id.map(str::to_string))
            })
            .collect();
        let ip = IpAddr::from([127, 0, 0, 1]);
        let authorize = |index: usize| {
            let request = &requests[index % requests.len()];
            let (route, resource) = &matched[index % matched.len()];
            authenticate_and_authorize(
                &snapshot.policy,
                route,
                resource.as_deref(),
                &request.headers,
                ip,
                1_700_000_000,
            )
            .is_ok_and(|decision| decision.outcome.is_ok())
        };
        let pipeline =
            |index: usize| decide(&snapshot, &facts(&requests[index % requests.len()])).allowed();
        let mut group = c.benchmark_group("decision");
        // Each timed call's request is touched in the (untimed) batch setup, as a just-parsed request would be.
        let mut next = 0usize;
        let mut setup = || {
            next += 1;
            touch(&requests[next % requests.len()]);
            next
        };
        group.bench_function(format!("authorize/{name}"), |b| {
            b.iter_batched(
                &mut setup,
                |index| black_box(authorize(index)),
                BatchSize::SmallInput,
            )
        });
        group.bench_function(format!("pipeline/{name}"), |b| {
            b.iter_batched(
                &mut setup,
                |index| black_box(pipeline(index)),
                BatchSize::SmallInput,
            )
        });
        group.finish();
        let (p50, p99, allowed) = percentiles(400_000, &requests, authorize);
        report.push(format!(
            "authorize {name:>5} tokens: p50 {p50:>8.2?}  p99 {p99:>8.2?}  (allowed {:.0}%)",
            allowed * 100.0
        ));
        let (p50, p99, allowed) = percentiles(400_000, &requests, pipeline);
        report.push(format!(
            "pipeline  {name:>5} tokens: p50 {p50:>8.2?}  p99 {p99:>8.2?}  (allowed {:.0}%)",
            allowed * 100.0
        ));
    }
    eprintln!("\nsingle-call latency, timer cost subtracted:");
    for line in report {
        eprintln!("  {line}");
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(Duration::from_secs(5));
    targets = bench_decisions
}
criterion_main!(benches);
