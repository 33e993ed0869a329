//! Route-match benchmark (SPEC §10: median ≤ 300 ns over the whole real Cloudflare route table).
//!
//! The table is Cloudflare's API as published: the 1,548 operations of `config/cloudflare/source/cf_routes.tsv`
//! (or `$PERMGATE_BENCH_CF_ROUTES`), turned into a route file under `/client/v4` and compiled by
//! `RouteTable::compile` like any route file (`<bench>/tsv`); and the shipped `routes/cloudflare-v4.yaml` (or
//! `$PERMGATE_BENCH_ROUTE_FILE`) when it exists (`<bench>/route_file`). One concrete path is sampled from every route (each `{param}` filled with a
//! 32-hex id), and the lookups cycle through all of them in a shuffled order:
//!
//! - `routes/lookup/<table>`: `RouteTable::lookup(method, path)` on an already canonical path;
//! - `routes/canonicalize+lookup/<table>`: the raw target canonicalized first, as the pipeline does.
//!
//! A second pass times single calls for p50/p99 (timer cost subtracted). `cargo bench --bench routes`.
//!
//! Turning the published templates into matchit routes: matchit needs one name per parameter position
//! under a shared prefix (`/accounts/{account_id}/…` and `/accounts/{accountId}/…` cannot coexist), so each
//! parameter takes the name first seen at its position, and a name repeated within one path gets a suffix
//! (`/accounts/{account_id}/addressing/address_maps/{address_map_id}/accounts/{account_id}` → `{account_id_2}`).
//! Scopes follow the TSV's `scope` column (`account` and `zone` name the id after `/accounts/` and `/zones/`),
//! keys its `permission_keys` (all of them); an operation without keys gets `scope: none`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // bench code: a broken setup should stop loudly

#[path = "support/synth.rs"]
mod synth;

use std::collections::{HashMap, HashSet};
use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use permgate::config::SourceFile;
use permgate::config::compile::routes;
use permgate::policy::KeyInterner;
use permgate::routes::{RouteTable, canonicalize};
use synth::Rng;

const DEFAULT_TSV: &str = "config/cloudflare/source/cf_routes.tsv";
const DEFAULT_ROUTE_FILE: &str = "routes/cloudflare-v4.yaml";

/// The route file made from the TSV, and how many rows it holds.
fn cloudflare_route_file(tsv: &str) -> (String, usize) {
    let mut names: HashMap<String, String> = HashMap::new();
    let mut out = String::from("routes:\n");
    let mut rows = 0;
    for line in tsv.lines().skip(1) {
        let columns: Vec<&str> = line.split('\t').collect();
        if columns.len() < 5 {
            continue;
        }
        let (method, path, keys, scope) = (columns[0], columns[1], columns[3], columns[4]);
        rows += 1;
        let mut prefix = String::new();
        let mut used: HashSet<String> = HashSet::new();
        let mut segments = Vec::new();
        let mut account_param = None;
        let mut zone_param = None;
        let mut previous = "";
        for segment in path.split('/').skip(1) {
            if let Some(name) = segment
                .strip_prefix('{')
                .and_then(|rest| rest.strip_suffix('}'))
            {
                prefix.push_str("/{}");
                let mut name = names
                    .entry(prefix.clone())
                    .or_insert_with(|| name.to_string())
                    .clone();
                let base = name.clone();
                let mut n = 2;
                while used.contains(&name) {
                    name = format!("{base}_{n}");
                    n += 1;
                }
                used.insert(name.clone());
                match previous {
                    "accounts" if segments.len() == 1 => account_param = Some(name.clone()),
                    "zones" if segments.len() == 1 => zone_param = Some(name.clone()),
                    _ => {}
                }
                segments.push(format!("{{{name}}}"));
            } else {
                prefix.push('/');
                prefix.push_str(segment);
                segments.push(segment.to_string());
            }
            previous = segment;
        }
        let keys: Vec<String> = keys
            .split(';')
            .filter(|key| !key.is_empty())
            .map(|key| format!("\"{key}\""))
            .collect();
        let scope = match (scope, &account_param, &zone_param) {
            _ if keys.is_empty() => "none".to_string(),
            ("account", Some(param), _) => format!("{{ account: {param} }}"),
            ("zone", _, Some(param)) => format!("{{ zone: {param} }}"),
            ("user", _, _) => "user".to_string(),
            _ => "any".to_string(),
        };
        let permissions = if keys.is_empty() {
            String::new()
        } else {
            format!(", permissions: [{}]", keys.join(", "))
        };
        out.push_str(&format!(
            "  - {{ method: {method}, path: \"/client/v4/{}\"{permissions}, scope: {scope} }}\n",
            segments.join("/")
        ));
    }
    (out, rows)
}

/// One concrete request per route: each parameter a 32-hex id, a catch-all two segments.
fn samples(table: &RouteTable) -> Vec<(String, String)> {
    let mut rng = Rng(11);
    let mut samples = Vec::new();
    for route in table.routes() {
        let mut path = String::new();
        for segment in route.pattern.split('/').skip(1) {
            path.push('/');
            if segment.starts_with("{*") {
                path.push_str("a/b");
            } else if segment.starts_with('{') {
                path.push_str(&format!("{:016x}{:016x}", rng.next(), rng.next()));
            } else {
                path.push_str(segment);
            }
        }
        let method = route
            .methods
            .split(", ")
            .next()
            .map(|method| if method == "*" { "GET" } else { method })
            .unwrap_or("GET");
        samples.push((method.to_string(), path));
    }
    // Shuffle (Fisher–Yates) so consecutive lookups do not walk the same branch of the tree.
    for index in (1..samples.len()).rev() {
        samples.swap(index, rng.below(index + 1));
    }
    samples
}

/// The tables to bench: the TSV's, and the shipped `routes/cloudflare-v4.yaml` (or
/// `$PERMGATE_BENCH_ROUTE_FILE`) when it exists.
fn tables() -> Vec<(&'static str, RouteTable, String)> {
    let tsv_path =
        std::env::var("PERMGATE_BENCH_CF_ROUTES").unwrap_or_else(|_| DEFAULT_TSV.to_string());
    let tsv = std::fs::read_to_string(&tsv_path)
        .unwrap_or_else(|error| panic!("{tsv_path}: {error} (set PERMGATE_BENCH_CF_ROUTES)"));
    let (text, rows) = cloudflare_route_file(&tsv);
    let mut tables = vec![compile_table(
        "tsv",
        "cloudflare.yaml",
        text,
        format!("{rows} operations of {tsv_path}"),
    )];
    let file = std::env::var("PERMGATE_BENCH_ROUTE_FILE")
        .unwrap_or_else(|_| DEFAULT_ROUTE_FILE.to_string());
    match std::fs::read_to_string(&file) {
        Ok(text) => tables.push(compile_table(
            "route_file",
            &file,
            text,
            format!("route file {file}"),
        )),
        Err(error) => eprintln!("skipping {file}: {error}"),
    }
    tables
}

fn compile_table(
    name: &'static str,
    file: &str,
    text: String,
    what: String,
) -> (&'static str, RouteTable, String) {
    let mut keys = KeyInterner::new();
    let table =
        routes::compile(&[SourceFile::from_text(file, text)], &mut keys).unwrap_or_else(|errors| {
            panic!(
                "the route table {what} must compile: {} errors, first {:?}",
                errors.len(),
                errors.first()
            )
        });
    let what = format!("{what}: {} routes, {} keys", table.len(), keys.len());
    (name, table, what)
}

fn bench_routes(c: &mut Criterion) {
    let mut report = Vec::new();
    for (name, table, what) in tables() {
        let samples = samples(&table);
        for (method, path) in &samples {
            let found = table
                .lookup(method, path)
                .unwrap_or_else(|| panic!("no route for the sample {method} {path}"));
            black_box(found);
        }
        eprintln!("{name}: {what}; {} sample paths", samples.len());
        let lookup = |index: usize| {
            let (method, path) = &samples[index % samples.len()];
            table.lookup(method, path).is_some()
        };
        let canonical_lookup = |index: usize| {
            let (method, path) = &samples[index % samples.len()];
            canonicalize(method, path)
                .ok()
                .is_some_and(|canonical| table.lookup(method, &canonical.path).is_some())
        };
        let mut group = c.benchmark_group("routes");
        let mut next = 0usize;
        let mut setup = || {
            next += 1;
            next
        };
        group.bench_function(format!("lookup/{name}"), |b| {
            b.iter_batched(
                &mut setup,
                |index| black_box(lookup(index)),
                BatchSize::SmallInput,
            )
        });
        group.bench_function(format!("canonicalize+lookup/{name}"), |b| {
            b.iter_batched(
                &mut setup,
                |index| black_box(canonical_lookup(index)),
                BatchSize::SmallInput,
            )
        });
        group.finish();
        for (label, call) in [
            ("lookup", &lookup as &dyn Fn(usize) -> bool),
            ("canonicalize+lookup", &canonical_lookup),
        ] {
            let (p50, p99) = percentiles(400_000, call);
            report.push(format!(
                "{label:<20} {name:<10} p50 {p50:>8.2?}  p99 {p99:>8.2?}   ({what})"
            ));
        }
    }
    eprintln!("\nsingle-call latency, timer cost subtracted:");
    for line in report {
        eprintln!("  {line}");
    }
}

/// Times `samples` single calls; (p50, p99) with the timer's own cost subtracted.
fn percentiles(samples: usize, call: &dyn Fn(usize) -> bool) -> (Duration, Duration) {
    let mut costs: Vec<Duration> = (0..100_000)
        .map(|_| {
            let start = Instant::now();
            black_box(());
            start.elapsed()
        })
        .collect();
    costs.sort_unstable();
    let timer_cost = costs[costs.len() / 2];
    let mut times: Vec<Duration> = (0..samples)
        .map(|index| {
            let start = Instant::now();
            black_box(call(index));
            start.elapsed().saturating_sub(timer_cost)
        })
        .collect();
    times.sort_unstable();
    let at = |q: f64| times[((times.len() as f64 * q) as usize).min(times.len() - 1)];
    (at(0.50), at(0.99))
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(Duration::from_secs(5));
    targets = bench_routes
}
criterion_main!(benches);
