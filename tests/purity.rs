//! Keeps the functional core pure: the policy, routes, auth, answer and pipeline modules must not do I/O or
//! read a clock. Fails on any use of tokio, hyper, the file system, sockets, the environment or the clock.

#![allow(clippy::unwrap_used)] // test code

use std::path::{Path, PathBuf};

const PURE: &[&str] = &[
    "src/policy",
    "src/routes",
    "src/auth",
    "src/answer.rs",
    "src/pipeline.rs",
];

/// `std::net::IpAddr` and friends are plain values and allowed; sockets are not.
const FORBIDDEN: &[&str] = &[
    "tokio::",
    "hyper::",
    "hyper_util::",
    "std::fs",
    "std::net::Tcp",
    "std::net::Udp",
    "std::env",
    "std::process",
    "SystemTime::now",
    "Instant::now",
    "thread::sleep",
    "rand::",
];

fn rust_files(path: &Path, out: &mut Vec<PathBuf>) {
    if path.is_dir() {
        for entry in std::fs::read_dir(path).unwrap() {
            rust_files(&entry.unwrap().path(), out);
        }
    } else if path.extension().is_some_and(|ext| ext == "rs") {
        out.push(path.to_path_buf());
    }
}

#[test]
fn the_core_modules_do_no_io_and_read_no_clock() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    for module in PURE {
        rust_files(&root.join(module), &mut files);
    }
    assert!(
        files.len() >= 8,
        "expected the pure modules' sources, found {files:?}"
    );
    let mut violations = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        // Unit tests may use anything.
        let code = text.split("#[cfg(test)]").next().unwrap_or(&text);
        for (number, line) in code.lines().enumerate() {
            for forbidden in FORBIDDEN {
                if line.contains(forbidden) {
                    violations.push(format!("{}:{}: {forbidden}", file.display(), number + 1));
                }
            }
        }
    }
    assert!(
        violations.is_empty(),
        "I/O or clock in the pure core:\n{}",
        violations.join("\n")
    );
}
