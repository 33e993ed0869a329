//! Fuzzes the route-table build from arbitrary route-file text: errors are fine, panics are not.
#![no_main]

use libfuzzer_sys::fuzz_target;
use permgate::config::compile::routes;
use permgate::config::SourceFile;
use permgate::policy::KeyInterner;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut keys = KeyInterner::new();
    let _ = routes::compile(
        &[SourceFile::from_text("routes/fuzz.yaml", text)],
        &mut keys,
    );
});
