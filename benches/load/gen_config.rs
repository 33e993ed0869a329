//! Writes the load test's permgate config: the synthetic world of `benches/support/synth.rs` as JSON
//! policy files (10k accounts × 10 zones, 20k users, N tokens; split into files of 1,000 accounts or
//! 2,000 tokens), the synthetic routes (`routes.yaml`), a `gateway.yaml` with the decision log off, and
//! `requests.txt`: requests of the benches' mix that the config allows (checked here with
//! `pipeline::decide`), for wrk to cycle, one `METHOD PATH Bearer%20TOKEN` per line (`requests.lua`'s format).
//!
//! `cargo run --release --example load_gen_config -- OUT_DIR TOKENS LISTEN ADMIN_LISTEN UPSTREAM_URL [CERT KEY]`

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // a load-test tool: a broken setup should stop loudly

#[path = "../support/mix.rs"]
mod mix;
#[path = "../support/synth.rs"]
mod synth;

use std::path::PathBuf;

use permgate::pipeline::decide;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() != 5 && args.len() != 7 {
        eprintln!(
            "usage: load_gen_config OUT_DIR TOKENS LISTEN ADMIN_LISTEN UPSTREAM_URL [CERT_FILE KEY_FILE]"
        );
        std::process::exit(2);
    }
    let dir = PathBuf::from(&args[0]);
    let tokens: usize = args[1].parse().expect("token count");
    std::fs::create_dir_all(&dir).expect("out dir");
    let (snapshot, scale, raw) = mix::build(tokens);

    let files =
        synth::write_world_files(&raw, synth::Syntax::Json, &dir).expect("write the policy files");
    std::fs::write(dir.join("routes.yaml"), synth::routes_yaml()).expect("routes.yaml");
    let tls = (args.len() == 7).then(|| (args[5].as_str(), args[6].as_str()));
    std::fs::write(
        dir.join("gateway.yaml"),
        synth::gateway_yaml(&args[2], &args[3], &args[4], &files, tls),
    )
    .expect("gateway.yaml");

    let requests = mix::requests(scale, &raw, 8192);
    let mut lines = String::new();
    let mut allowed = 0;
    for request in &requests {
        if decide(&snapshot, &mix::facts(request)).allowed() {
            allowed += 1;
            lines.push_str(&format!(
                "{} {} Bearer%20{}\n",
                request.method,
                request.path,
                synth::token_secret(request.token)
            ));
        }
    }
    std::fs::write(dir.join("requests.txt"), lines).expect("requests.txt");
    eprintln!(
        "wrote {} ({tokens} tokens; {allowed} allowed requests of {} in requests.txt)",
        dir.display(),
        requests.len()
    );
}
