//! What the benches that put permgate beside another engine (Cedar, Rego) share: each request of the mix
//! prepared for permgate, permgate's two figures (the whole authentication and authorization, and the
//! engine alone), the check that the engines agree, and the interleaved timing that reports the ratios.
// Included by benches (`#[path]`) next to `mix` and `synth`; a broken setup should stop loudly.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
#![allow(dead_code)]

use std::collections::HashMap;
use std::hint::black_box;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use criterion::{BatchSize, Criterion};
use permgate::config::raw::RawPolicyFile;
use permgate::pipeline::{ResourceIds, authenticate_and_authorize};
use permgate::policy::{AccessRequest, Presented, Required, Target};
use permgate::routes::{Requirement, Route, Scope};
use permgate::snapshot::Snapshot;
use sha2::{Digest, Sha256};

use super::mix::{self, Request};
use super::synth;

/// The client address and the clock every decision of the mix uses.
pub const IP: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);
pub const NOW: i64 = 1_700_000_000;

/// One request of the mix as both engines see it, looked up before timing.
pub struct Prepared<'s> {
    pub route: &'s Route,
    /// The resource id in the path.
    pub resource: String,
    /// The route's one key.
    pub key: String,
    /// `"zone"` or `"account"`.
    pub kind: &'static str,
    /// The resource's account (itself for an account).
    pub account: String,
    pub sha256: [u8; 32],
}

/// Every request of the mix, prepared.
pub fn prepare<'s>(
    snapshot: &'s Snapshot,
    raw: &RawPolicyFile,
    requests: &[Request],
) -> Vec<Prepared<'s>> {
    let zone_account: HashMap<&str, &str> = raw
        .accounts
        .iter()
        .flat_map(|account| {
            account
                .zones
                .iter()
                .map(move |zone| (zone.id.as_str(), account.id.as_str()))
        })
        .collect();
    requests
        .iter()
        .map(|request| {
            let found = snapshot
                .routes
                .lookup(request.method, &request.path)
                .expect("route");
            let resource = found.resource_id.expect("scoped route").to_string();
            let key = match &found.route.requirement {
                Requirement::AllOf(ids) if ids.len() == 1 => {
                    snapshot.policy.keys.name(ids[0]).to_string()
                }
                other => panic!("one key per synthetic route, got {other:?}"),
            };
            let (kind, account) = match &found.route.scope {
                Scope::Zone { .. } => ("zone", zone_account[resource.as_str()].to_string()),
                Scope::Account { .. } => ("account", resource.clone()),
                other => panic!("zone or account routes only, got {other:?}"),
            };
            Prepared {
                route: found.route,
                resource,
                key,
                kind,
                account,
                sha256: Sha256::digest(synth::token_secret(request.token).as_bytes()).into(),
            }
        })
        .collect()
}

/// permgate's whole decision: the `Authorization` header read, the token hashed, then authorized.
pub fn permgate_full(snapshot: &Snapshot, prepared: &Prepared<'_>, request: &Request) -> bool {
    authenticate_and_authorize(
        &snapshot.policy,
        prepared.route,
        ResourceIds::of(Some(&prepared.resource)),
        &request.headers,
        IP,
        NOW,
    )
    .is_ok_and(|decision| decision.outcome.is_ok())
}

/// permgate's engine alone, on a pre-hashed credential.
pub fn permgate_engine(snapshot: &Snapshot, prepared: &Prepared<'_>) -> bool {
    let route = prepared.route;
    let target = match route.scope {
        Scope::Zone { .. } => Target::Zone(&prepared.resource),
        _ => Target::Account(&prepared.resource),
    };
    let required = match &route.requirement {
        Requirement::AllOf(keys) => Required::AllOf(keys),
        Requirement::AnyOf(keys) => Required::AnyOf(keys),
        Requirement::None => Required::None,
    };
    snapshot
        .policy
        .evaluate(&AccessRequest {
            presented: Presented::Token {
                sha256: prepared.sha256,
            },
            client_ip: IP,
            now: NOW,
            target,
            required,
        })
        .outcome
        .is_ok()
}

/// One engine's decision of request `index` of the mix, by name.
pub struct Engine<'a> {
    pub name: &'static str,
    pub call: &'a dyn Fn(usize) -> bool,
}

/// Asserts every engine decides every request of the mix as the first one does; returns how many it allowed.
pub fn assert_agree(engines: &[Engine<'_>], requests: &[Request]) -> usize {
    let mut allowed = 0usize;
    for (index, request) in requests.iter().enumerate() {
        let ours = (engines[0].call)(index);
        for other in &engines[1..] {
            assert_eq!(
                ours,
                (other.call)(index),
                "{} and {} disagree on request {index}: {} {}",
                engines[0].name,
                other.name,
                request.method,
                request.path
            );
        }
        allowed += usize::from(ours);
    }
    allowed
}

/// One criterion function per engine, in `group`.
pub fn criterion_group(
    c: &mut Criterion,
    group: &str,
    engines: &[Engine<'_>],
    requests: &[Request],
) {
    let mut group = c.benchmark_group(group);
    let mut next = 0usize;
    for engine in engines {
        group.bench_function(engine.name, |b| {
            b.iter_batched(
                || {
                    next += 1;
                    mix::touch(&requests[next % requests.len()]);
                    next
                },
                |index| black_box((engine.call)(index)),
                BatchSize::NumIterations(64),
            )
        });
    }
    group.finish();
}

/// Interleaved rounds over the whole mix (engines alternate, so drift in machine load hits all of them) and
/// `samples` single-call percentiles per engine, printed; then each `(other, base)` ratio of means and p50s.
pub fn report(
    engines: &[Engine<'_>],
    requests: &[Request],
    rounds: usize,
    samples: usize,
    ratios: &[(usize, usize)],
) {
    let mut totals = vec![Duration::ZERO; engines.len()];
    for _ in 0..rounds {
        for (total, engine) in totals.iter_mut().zip(engines) {
            let started = Instant::now();
            for index in 0..requests.len() {
                black_box((engine.call)(index));
            }
            *total += started.elapsed();
        }
    }
    let per_call = |total: Duration| total / (rounds * requests.len()) as u32;
    eprintln!(
        "\nper decision, same run (mean over {rounds} interleaved rounds of the mix; single-call p50/p99):"
    );
    let mut medians = Vec::new();
    for (engine, total) in engines.iter().zip(&totals) {
        let (p50, p99, _) = mix::percentiles(samples, requests, engine.call);
        medians.push(p50);
        eprintln!(
            "  {:<40} mean {:>9.2?}  p50 {p50:>9.2?}  p99 {p99:>9.2?}",
            engine.name,
            per_call(*total)
        );
    }
    let ratio = |a: Duration, b: Duration| b.as_secs_f64() / a.as_secs_f64().max(1e-12);
    for &(other, base) in ratios {
        eprintln!(
            "  {} / {}: {:.1}x (means), {:.1}x (p50)",
            engines[other].name,
            engines[base].name,
            ratio(totals[base], totals[other]),
            ratio(medians[base], medians[other])
        );
    }
}
