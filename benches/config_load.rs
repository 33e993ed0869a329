//! Config load + compile benchmark (SPEC §10: 1M tokens in ≤ 5 s and ≤ 2 GiB RSS; 10k tokens in ≤ 100 ms).
//!
//! The synthetic world of `support/synth.rs` (10k accounts × 10 zones, 20k users with member policies,
//! tokens with up to 10 policies) is written to a temporary config folder (`gateway.yaml`, `routes.yaml`
//! and the policy files: catalog and users, accounts by 1,000, tokens by 2,000), as JSON (`.json`, parsed
//! by serde_json) or YAML (`.yaml`, parsed by serde-saphyr) with the same items, then loaded the way
//! `permgate serve` does: `config::read` (`gateway.yaml` and the route files) + `config::compile` (read,
//! digest and parse the policy files on every core, and compile them into a snapshot).
//!
//! - `config/load/<scale>-<syntax>`: criterion timing of read + compile, for scales up to 100k tokens;
//! - every case: two runs in a fresh child process (with mimalloc, the `permgate` binary's allocator) (this binary re-executed with `PERMGATE_LOAD_CHILD`),
//!   each printing read and compile times and the peak RSS (`VmHWM` of `/proc/self/status`), so one
//!   case's memory does not count against another's.
//!
//! `cargo bench --bench config_load`; `PERMGATE_BENCH_LOAD_SCALES` picks the cases (default
//! `10k:json,10k:yaml,1m:json`; the 1M world needs ~1.4 GB of disk in the temp folder and a few minutes to
//! generate).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // bench code: a broken setup should stop loudly

#[path = "support/synth.rs"]
mod synth;

/// The allocator of the `permgate` binary (`src/main.rs`), so the figures are those of the gateway.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use criterion::Criterion;
use permgate::config;
use synth::{Scale, Syntax, world};

const CHILD_ENV: &str = "PERMGATE_LOAD_CHILD";

fn main() {
    if let Ok(gateway) = std::env::var(CHILD_ENV) {
        child(Path::new(&gateway));
        return;
    }
    let cases = std::env::var("PERMGATE_BENCH_LOAD_SCALES")
        .unwrap_or_else(|_| "10k:json,10k:yaml,1m:json".to_string());
    let mut criterion = Criterion::default()
        .sample_size(10)
        .measurement_time(Duration::from_secs(10))
        .configure_from_args();
    let mut report = Vec::new();
    for case in cases.split(',') {
        let (name, syntax) = match case.trim().split_once(':') {
            Some((name, "yaml")) => (name, Syntax::Yaml),
            Some((name, "json")) => (name, Syntax::Json),
            None => (case.trim(), Syntax::Json),
            Some(_) => panic!("a case is SCALE[:json|:yaml], got {case:?}"),
        };
        let tokens = match name {
            "10k" => 10_000,
            "100k" => 100_000,
            "1m" => 1_000_000,
            other => other.parse().expect("a scale: 10k, 100k, 1m or a number"),
        };
        let label = format!("{name}-{}", syntax.extension());
        let dir = tempfile::tempdir().expect("temp dir");
        let bytes = write_config(dir.path(), tokens, syntax);
        let gateway = dir.path().join("gateway.yaml");
        report.push(format!(
            "{label:>9}: policy files {:.1} MiB",
            bytes as f64 / (1024.0 * 1024.0)
        ));
        if tokens <= 100_000 {
            let mut group = criterion.benchmark_group("config");
            group.bench_function(format!("load/{label}"), |b| {
                b.iter(|| {
                    let set = config::read(&gateway).expect("read");
                    black_box(config::compile(&set, 1, 0).expect("compile"))
                })
            });
            group.finish();
        }
        for run in 1..=2 {
            report.push(format!(
                "{label:>9}, child run {run}: {}",
                run_child(&gateway)
            ));
        }
    }
    criterion.final_summary();
    eprintln!("\nconfig load + compile in a fresh process:");
    for line in report {
        eprintln!("  {line}");
    }
}

/// Writes the config folder for `tokens` tokens; returns the size of the policy files.
fn write_config(dir: &Path, tokens: usize, syntax: Syntax) -> u64 {
    let started = Instant::now();
    let scale = Scale {
        tokens,
        accounts: 10_000,
        zones_per_account: 10,
        users: 20_000,
        max_policies_per_token: 10,
        buckets_per_account: 0,
    };
    let raw = world(scale, 42);
    let files = synth::write_world_files(&raw, syntax, dir).expect("write the policy files");
    drop(raw);
    std::fs::write(dir.join("routes.yaml"), synth::routes_yaml()).expect("routes.yaml");
    std::fs::write(
        dir.join("gateway.yaml"),
        synth::gateway_yaml(
            "127.0.0.1:0",
            "127.0.0.1:0",
            "http://127.0.0.1:9",
            &files,
            None,
        ),
    )
    .expect("gateway.yaml");
    eprintln!(
        "generated the {tokens}-token config in {:.1?}",
        started.elapsed()
    );
    files
        .iter()
        .map(|file| std::fs::metadata(dir.join(file)).expect("stat").len())
        .sum()
}

/// Re-executes this binary to load `gateway` once in a fresh process; returns its one-line report.
fn run_child(gateway: &Path) -> String {
    let exe: PathBuf = std::env::current_exe().expect("current exe");
    let output = Command::new(exe)
        .env(CHILD_ENV, gateway)
        .output()
        .expect("run the child");
    assert!(
        output.status.success(),
        "child failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

/// The child: read + compile once, print the times and the peak RSS.
fn child(gateway: &Path) {
    let base = vm_hwm_kib();
    let started = Instant::now();
    let set = config::read(gateway).expect("read");
    let read = started.elapsed();
    let snapshot = config::compile(&set, 1, 0).expect("compile");
    let total = started.elapsed();
    let peak = vm_hwm_kib();
    println!(
        "read {read:.2?} + parse/compile {:.2?} = {total:.2?}; peak RSS {:.0} MiB (process start {:.0} MiB); {} tokens, {} policies",
        total.saturating_sub(read),
        peak as f64 / 1024.0,
        base as f64 / 1024.0,
        snapshot.policy.tokens.len(),
        snapshot.policy.policy_count(),
    );
}

/// `VmHWM` (peak resident set) of this process, in KiB.
fn vm_hwm_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .expect("/proc/self/status")
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}
