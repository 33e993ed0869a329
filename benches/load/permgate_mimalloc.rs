//! `permgate serve` built with mimalloc as the global allocator, to measure whether the allocator helps the
//! end-to-end proxy (`MIMALLOC=1 benches/load/run.sh` runs it next to the normal binary). The serving code
//! is the library's; only the allocator differs from `src/main.rs`.
//!
//! `cargo run --release --example permgate_mimalloc -- serve --config path/to/gateway.yaml`

use std::path::PathBuf;
use std::process::ExitCode;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["serve", "--config", config] => permgate::cli::serve::run(&PathBuf::from(config)),
        _ => {
            eprintln!("usage: permgate_mimalloc serve --config GATEWAY_YAML");
            ExitCode::from(2)
        }
    }
}
