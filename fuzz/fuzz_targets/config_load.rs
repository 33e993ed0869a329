//! Fuzzes config loading: arbitrary bytes as a policy file in YAML and in JSON (`.json` files take the
//! serde_json parser) and as a route file, next to a fixed gateway.yaml, parsed and compiled whole. Errors are fine, panics are not. (Non-UTF-8 bytes are
//! rejected by `SourceFile::read` before parsing; the fuzzer spends its time on text.)
#![no_main]

use libfuzzer_sys::fuzz_target;
use permgate::config::{ConfigSet, SourceFile, compile};

const GATEWAY: &str = "listen: 127.0.0.1:0\nadmin_listen: 127.0.0.1:0\nupstream: { url: \"http://127.0.0.1:1\" }\n\
policy_files: [policy.yaml, policy.json]\nroute_files: [routes]\n";

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let gateway = SourceFile::from_text("gateway.yaml", GATEWAY);
    let Ok(set) = ConfigSet::from_sources(
        gateway,
        vec![
            SourceFile::from_text("policy.yaml", text),
            SourceFile::from_text("policy.json", text),
        ],
        vec![SourceFile::from_text("routes/r.yaml", text)],
    ) else {
        return;
    };
    let _ = compile(&set, 1, 0);
});
