//! The official Cloudflare SDKs through the gateway, under `cargo test`: the Python SDK's suite
//! (tests/sdk/test_cloudflare_sdk.py, pytest) and the TypeScript SDK's (tests/sdk/cloudflare_sdk.test.mjs,
//! node's own test runner) for each pinned version, against this build's binary.
//!
//! Each SDK is installed, pinned, by the test itself under `target/` when it is not there yet: a Python venv
//! (`target/sdk-venv`, needs `python3` with venv: `apt-get install -y python3-venv`) and one npm folder per
//! TypeScript SDK version (`target/sdk-ts/cloudflare-<version>`, needs `node` and `npm`: `apt-get install -y
//! nodejs npm`). The first run downloads them from PyPI and npm; later runs reuse them.
// Its own binary (like tests/faults.rs): the SDK suites start gateways and interpreters that would load the
// machine under the timing-sensitive tests of tests/suite running beside them in one process.
// Test code: a failed unwrap is a failed test (tests/ is exempt from the no-panic rule).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::path::Path;
use std::process::{Command, Stdio};

use common::{pip_venv, require, run_ok, target_dir};

const PYTHON_PACKAGES: [&str; 2] = ["cloudflare==5.9.0", "pytest==8.4.2"];
const TYPESCRIPT_VERSIONS: [&str; 3] = ["4.5.0", "5.2.0", "7.3.0"];

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn the_python_sdk_through_the_gateway() {
    let python_of = |venv: &Path| venv.join("bin/python");
    let venv = pip_venv("sdk-venv", &PYTHON_PACKAGES, |venv| {
        Command::new(python_of(venv))
            .args([
                "-c",
                "import cloudflare, pytest, sys; sys.exit(cloudflare.__version__ != '5.9.0')",
            ])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
    });
    let python = python_of(&venv);
    run_ok(
        Command::new(&python)
            .args(["-m", "pytest", "-q", "-p", "no:cacheprovider"])
            .arg(root().join("tests/sdk"))
            .env("PERMGATE_BIN", env!("CARGO_BIN_EXE_permgate"))
            .current_dir(root()),
    );
}

#[test]
fn the_typescript_sdks_through_the_gateway() {
    require("node", "apt-get install -y nodejs");
    for version in TYPESCRIPT_VERSIONS {
        let sdk = target_dir().join(format!("sdk-ts/cloudflare-{version}"));
        let installed = std::fs::read_to_string(sdk.join("node_modules/cloudflare/package.json"))
            .is_ok_and(|text| text.contains(&format!("\"version\": \"{version}\"")));
        if !installed {
            require("npm", "apt-get install -y npm");
            std::fs::create_dir_all(&sdk).unwrap();
            if !sdk.join("package.json").exists() {
                std::fs::write(sdk.join("package.json"), "{ \"private\": true }\n").unwrap();
            }
            run_ok(
                Command::new("npm")
                    .arg("install")
                    .arg("--prefix")
                    .arg(&sdk)
                    .args(["--no-audit", "--no-fund", "--save-exact", "--silent"])
                    .arg(format!("cloudflare@{version}")),
            );
        }
        run_ok(
            Command::new("node")
                .arg("--test")
                .arg(root().join("tests/sdk/cloudflare_sdk.test.mjs"))
                .env("CLOUDFLARE_SDK_DIR", &sdk)
                .env("PERMGATE_BIN", env!("CARGO_BIN_EXE_permgate"))
                .current_dir(root()),
        );
    }
}
