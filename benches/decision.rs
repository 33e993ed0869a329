//! Decision benchmark (SPEC §10): authenticate + authorize in process, at 1k, 100k and 1M tokens over 10k accounts
//! and 100k zones, tokens with up to 10 policies. Two measurements per scale:
//!
//! - `decision/authorize/<scale>`: the decision proper, `pipeline::authenticate_and_authorize` on an
//!   already-matched route (read the credential, SHA-256 it, evaluate) — what SPEC §10's ≤ 1 µs is about;
//! - `decision/pipeline/<scale>`: the whole `pipeline::decide` (canonical target, route match, client IP,
//!   method-override check, then the decision).
//!
//! Criterion reports the median; a second pass times single calls to report p50 and p99 (minus the timer's
//! own cost, measured in the same run), and the two halves of `authorize` on their own (reading + hashing the
//! credential; `PolicySet::evaluate` on a pre-hashed one).
//!
//! The world has 10 R2 buckets per account (issue 20): a bucket route, and a quarter of the tokens with one
//! more policy on one bucket or every bucket of their home account. The mix above is unchanged (zones and
//! accounts); `decision/bucket_pipeline/<scale>` and the bucket p50/p99 decide requests on buckets (half of
//! them named by no policy: known from their account alone).
//!
//! `cargo bench --bench decision` (`PERMGATE_BENCH_SCALES=1k` to skip the larger worlds; default `1k,100k,1m`;
//! `PERMGATE_BENCH_BUCKETS=0` for the world without buckets, exactly the one before issue 20, to tell what the
//! code costs from what the larger world costs).

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
use std::net::IpAddr;
use std::time::Duration;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use mix::{
    BUCKETS_PER_ACCOUNT, bucket_requests, build_with_buckets, facts, percentiles, requests, touch,
};
use permgate::auth::{Credential, read_credential};
use permgate::pipeline::{ResourceIds, authenticate_and_authorize, decide};
use permgate::policy::{AccessRequest, Presented, Required, Target};
use permgate::routes::{Requirement, Scope};
use sha2::{Digest, Sha256};

fn bench_decisions(c: &mut Criterion) {
    let scales = std::env::var("PERMGATE_BENCH_SCALES").unwrap_or_else(|_| "1k,100k,1m".into());
    let buckets: usize = std::env::var("PERMGATE_BENCH_BUCKETS")
        .map(|value| {
            value
                .parse()
                .expect("PERMGATE_BENCH_BUCKETS: a number of buckets per account")
        })
        .unwrap_or(BUCKETS_PER_ACCOUNT);
    let mut report = Vec::new();
    for name in scales.split(',') {
        let tokens = match name.trim() {
            "1k" => 1_000,
            "100k" => 100_000,
            "1m" => 1_000_000,
            other => other.parse().expect("a scale: 1k, 100k, 1m or a number"),
        };
        let (snapshot, scale, raw) = build_with_buckets(tokens, buckets);
        let requests = requests(scale, &raw, 4096);
        let bucket_requests = bucket_requests(scale, &raw, 4096);
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
                ResourceIds::of(resource.as_deref()),
                &request.headers,
                ip,
                1_700_000_000,
            )
            .is_ok_and(|decision| decision.outcome.is_ok())
        };
        let pipeline =
            |index: usize| decide(&snapshot, &facts(&requests[index % requests.len()])).allowed();
        let bucket_pipeline = |index: usize| {
            decide(
                &snapshot,
                &facts(&bucket_requests[index % bucket_requests.len()]),
            )
            .allowed()
        };
        // The two halves of `authorize`, for the breakdown: reading + hashing the credential, and the
        // policy engine on an already hashed one.
        let credential = |index: usize| {
            let request = &requests[index % requests.len()];
            match read_credential(&request.headers) {
                Ok(Credential::Token(secret)) => {
                    black_box(<[u8; 32]>::from(Sha256::digest(secret.as_bytes())));
                    true
                }
                _ => false,
            }
        };
        let hashed: Vec<[u8; 32]> = requests
            .iter()
            .map(|request| match read_credential(&request.headers) {
                Ok(Credential::Token(secret)) => Sha256::digest(secret.as_bytes()).into(),
                other => panic!("a bearer token, got {other:?}"),
            })
            .collect();
        let evaluate = |index: usize| {
            let i = index % requests.len();
            let (route, resource) = &matched[i];
            let target = match (&route.scope, resource.as_deref()) {
                (Scope::Zone { .. }, Some(id)) => Target::Zone(id),
                (Scope::Account { .. }, Some(id)) => Target::Account(id),
                other => panic!("zone or account routes only, got {other:?}"),
            };
            let required = match &route.requirement {
                Requirement::AllOf(keys) => Required::AllOf(keys),
                Requirement::AnyOf(keys) => Required::AnyOf(keys),
                Requirement::None => Required::None,
            };
            snapshot
                .policy
                .evaluate(&AccessRequest {
                    presented: Presented::Token { sha256: hashed[i] },
                    client_ip: ip,
                    now: 1_700_000_000,
                    target,
                    required,
                })
                .outcome
                .is_ok()
        };
        let mut group = c.benchmark_group("decision");
        // Each timed call's request is touched in the (untimed) batch setup, as a just-parsed request would
        // be; batches of 64 so that the touched requests are still in cache when their calls run.
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
                BatchSize::NumIterations(64),
            )
        });
        group.bench_function(format!("pipeline/{name}"), |b| {
            b.iter_batched(
                &mut setup,
                |index| black_box(pipeline(index)),
                BatchSize::NumIterations(64),
            )
        });
        let mut next_bucket = 0usize;
        group.bench_function(format!("bucket_pipeline/{name}"), |b| {
            b.iter_batched(
                || {
                    next_bucket += 1;
                    touch(&bucket_requests[next_bucket % bucket_requests.len()]);
                    next_bucket
                },
                |index| black_box(bucket_pipeline(index)),
                BatchSize::NumIterations(64),
            )
        });
        group.finish();
        let (p50, p99, allowed) = percentiles(400_000, &bucket_requests, bucket_pipeline);
        report.push(format!(
            "bucket pipeline {name:>5} tokens: p50 {p50:>8.2?}  p99 {p99:>8.2?}  (allowed {:.0}%)",
            allowed * 100.0
        ));
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
        let (p50, p99, _) = percentiles(400_000, &requests, credential);
        report.push(format!(
            "  of which read_credential + SHA-256: p50 {p50:>8.2?}  p99 {p99:>8.2?}"
        ));
        let (p50, p99, _) = percentiles(400_000, &requests, evaluate);
        report.push(format!(
            "  of which PolicySet::evaluate:       p50 {p50:>8.2?}  p99 {p99:>8.2?}"
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
