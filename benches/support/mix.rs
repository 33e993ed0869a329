//! The compiled synthetic world and the request mix over it, shared by the decision and Cedar benches, plus
//! the single-call percentile timer.
// Included by benches (`#[path]`) next to `synth`; a broken setup should stop loudly.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
#![allow(dead_code)]

use std::hint::black_box;
use std::net::IpAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use http::HeaderMap;
use permgate::config::compile::policy::compile;
use permgate::config::compile::routes;
use permgate::config::raw::RawPolicyFile;
use permgate::config::{ConfigSet, SourceFile};
use permgate::pipeline::Facts;
use permgate::policy::{KeyInterner, PolicySet};
use permgate::snapshot::Snapshot;

use super::synth::{self, FAMILIES, NS, Rng, Scale, account_id, token_secret, world, zone_id};

pub const ACCOUNTS: usize = 10_000;
pub const ZONES_PER_ACCOUNT: usize = 10;
pub const USERS: usize = 20_000;

/// R2 buckets per account in the decision bench's world.
pub const BUCKETS_PER_ACCOUNT: usize = 10;

/// The scale for `tokens` tokens: 10k accounts × 10 zones, 20k users, up to 10 policies per token.
pub fn scale(tokens: usize) -> Scale {
    Scale {
        tokens,
        accounts: ACCOUNTS,
        zones_per_account: ZONES_PER_ACCOUNT,
        users: USERS,
        max_policies_per_token: 10,
        buckets_per_account: 0,
    }
}

/// The world for `tokens` tokens, compiled into a snapshot (with the synthetic routes), and its raw form.
pub fn build(tokens: usize) -> (Snapshot, Scale, RawPolicyFile) {
    build_with_buckets(tokens, 0)
}

/// [`build`] with `buckets` R2 buckets per account (a bucket route, and bucket policies on a quarter of
/// the tokens: see `Scale::buckets_per_account`).
pub fn build_with_buckets(tokens: usize, buckets: usize) -> (Snapshot, Scale, RawPolicyFile) {
    let scale = Scale {
        buckets_per_account: buckets,
        ..scale(tokens)
    };
    let raw = world(scale, 42);
    let started = Instant::now();
    let snapshot = snapshot_of(&raw);
    eprintln!("compiled {tokens} tokens in {:.2?}", started.elapsed());
    (snapshot, scale, raw)
}

/// A raw world compiled into a snapshot, with the synthetic routes.
pub fn snapshot_of(raw: &RawPolicyFile) -> Snapshot {
    let gateway = SourceFile::from_text(
        "gateway.yaml",
        "listen: 127.0.0.1:0\nadmin_listen: 127.0.0.1:1\nupstream: { url: 'http://127.0.0.1:9' }\npolicy_files: [synthetic]\nroute_files: [routes.yaml]\n",
    );
    let set = ConfigSet::from_sources(
        gateway,
        Vec::new(),
        vec![SourceFile::from_text(
            "routes.yaml",
            synth::routes_yaml_with(!raw.resource_types.is_empty()),
        )],
    )
    .expect("settings");
    let mut keys = KeyInterner::new();
    let routes = routes::compile(&set.route_files, &mut keys).expect("routes");
    let policy: PolicySet =
        compile(&[(Path::new("synthetic"), raw)], keys, NS).unwrap_or_else(|errors| {
            panic!(
                "synthetic world must compile: {} errors, first {:?}",
                errors.len(),
                errors.first()
            )
        });
    Snapshot {
        settings: set.settings.clone(),
        routes,
        policy,
        generation: 1,
        content_hash: String::new(),
        loaded_at: 0,
        files: Vec::new(),
        compiled_from: Default::default(),
    }
}

/// One request of the mix.
pub struct Request {
    /// Which token of the world it presents.
    pub token: usize,
    pub method: &'static str,
    pub path: String,
    pub headers: HeaderMap,
}

/// The request mix: 70% on a zone of the token's home account, 20% on the account itself, 10% on a zone
/// of a random other account (denied). Methods GET (read key) or POST (edit key) on zones.
pub fn requests(scale: Scale, raw: &RawPolicyFile, count: usize) -> Vec<Request> {
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
                token,
                method,
                path,
                headers,
            }
        })
        .collect()
}

/// Requests on buckets: each on a bucket of the token's home account (its first ten names; a bucket named by
/// no policy is as likely as a named one).
pub fn bucket_requests(scale: Scale, raw: &RawPolicyFile, count: usize) -> Vec<Request> {
    let mut rng = Rng(11);
    (0..count)
        .map(|_| {
            let token = rng.below(scale.tokens);
            let home = synth::token_home(raw, token).unwrap_or_else(|| account_id(0));
            let bucket = synth::bucket_name(rng.below(scale.buckets_per_account.max(1)));
            let mut headers = HeaderMap::new();
            headers.insert(
                "authorization",
                format!("Bearer {}", token_secret(token))
                    .parse()
                    .expect("header"),
            );
            Request {
                token,
                method: "GET",
                path: format!("/client/v4/accounts/{home}/r2/buckets/{bucket}"),
                headers,
            }
        })
        .collect()
}

pub fn facts(request: &Request) -> Facts<'_> {
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
pub fn touch(request: &Request) -> usize {
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

/// The median cost of reading the clock, to subtract from single-call timings.
pub fn timer_cost() -> Duration {
    let mut costs: Vec<Duration> = (0..100_000)
        .map(|_| {
            let start = Instant::now();
            black_box(());
            start.elapsed()
        })
        .collect();
    costs.sort_unstable();
    costs[costs.len() / 2]
}

/// Times `samples` single calls of `call(i)` (request `i` touched first, untimed); returns (p50, p99, share of
/// allowed) with the timer's own cost subtracted.
pub fn percentiles(
    samples: usize,
    requests: &[Request],
    mut call: impl FnMut(usize) -> bool,
) -> (Duration, Duration, f64) {
    let timer_cost = timer_cost();
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
