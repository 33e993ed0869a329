//! The admin console in a real browser: Debian's Chromium, driven by playwright-core (npm), against the real
//! gateway binary serving a copy of the shipped config in front of a real upstream. The browser part is
//! `tests/console/console_browser.mjs` (what it checks is listed at its top); this test starts everything,
//! computes the CLI's answers it compares with, and runs it.
//!
//! Needs Chromium (`apt-get install chromium`; or `PERMGATE_CHROMIUM=/path/to/chrome`) and Node.js with npm
//! (`apt-get install nodejs npm`); playwright-core is installed by the test itself, pinned, under
//! `target/console-browser/` (never globally). `.ci/run` installs Chromium before `cargo test`. Without them
//! the test fails saying so, unless `PERMGATE_SKIP_BROWSER_TESTS=1` opts out explicitly.
//!
//! Screenshots of every page go to `target/console-browser/screenshots/`; with
//! `PERMGATE_UPDATE_SCREENSHOTS=1` (`cargo test --test suite console_browser::`) also to `docs/console/`, which the README shows.
use crate::common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{ShippedGateway, sha256_hex, start_upstream};
use serde_json::json;

/// The playwright-core release the test installs (drives Debian's Chromium through CDP).
const PLAYWRIGHT: &str = "1.64.0";
const DEMO_TOKEN: &str = "pgt_demo_joe_dns_read";
const DEMO_ZONE: &str = "b1fbb152bbde3bd28919a7f4bdca841f";
const AT: &str = "2026-01-01T00:00:00Z";
/// The edit: the shop zone joins the "Staging zones" domain group, so Frank's legacy key gains it.
const STAGING_GROUP: &str = "zones: [0c5d1e7a9a3b4a3e8c1f2b7d6e5f4a3b]";
const STAGING_AND_SHOP: &str =
    "zones: [0c5d1e7a9a3b4a3e8c1f2b7d6e5f4a3b, 90cd2c6d19429ceb92a8da695473c3e4]";

fn chromium() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("PERMGATE_CHROMIUM") {
        return Some(PathBuf::from(path));
    }
    ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .map(PathBuf::from)
        .find(|path| path.exists())
}

fn found(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .output()
        .is_ok_and(|output| output.status.success())
}

/// playwright-core under `target/console-browser/`, installed there when absent.
fn playwright(root: &Path) -> PathBuf {
    let dir = root.join("target/console-browser");
    let installed = dir.join("node_modules/playwright-core/package.json");
    let version_ok = std::fs::read_to_string(&installed)
        .is_ok_and(|text| text.contains(&format!("\"version\": \"{PLAYWRIGHT}\"")));
    if !version_ok {
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("package.json"), "{ \"private\": true }\n").unwrap();
        let status = Command::new("npm")
            .args([
                "install",
                "--no-audit",
                "--no-fund",
                "--save-exact",
                "--silent",
                "--prefix",
            ])
            .arg(&dir)
            .arg(format!("playwright-core@{PLAYWRIGHT}"))
            .status()
            .unwrap();
        assert!(status.success(), "npm install playwright-core failed");
    }
    dir
}

fn hex_runs(dir: &Path, lengths: &[usize], out: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            hex_runs(&path, lengths, out);
            continue;
        }
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        let bytes = text.as_bytes();
        let mut start = 0;
        while start < bytes.len() {
            let run = bytes[start..]
                .iter()
                .take_while(|byte| byte.is_ascii_hexdigit())
                .count();
            if lengths.contains(&run) {
                out.push(text[start..start + run].to_lowercase());
            }
            start += run.max(1);
        }
    }
}

fn cli_json(args: &[&str]) -> serde_json::Value {
    let output = Command::new(env!("CARGO_BIN_EXE_permgate"))
        .args(args)
        .output()
        .unwrap();
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|error| panic!("{args:?}: {error}: {output:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_works_in_a_real_browser() {
    if std::env::var_os("PERMGATE_SKIP_BROWSER_TESTS").is_some_and(|value| value == "1") {
        eprintln!("PERMGATE_SKIP_BROWSER_TESTS=1: the browser test is skipped");
        return;
    }
    let chromium = chromium().unwrap_or_else(|| {
        panic!(
            "the console's browser test needs Chromium: apt-get install chromium (or set PERMGATE_CHROMIUM; \
             PERMGATE_SKIP_BROWSER_TESTS=1 skips it)"
        )
    });
    assert!(
        found("node") && found("npm"),
        "the console's browser test needs Node.js and npm: apt-get install nodejs npm \
         (PERMGATE_SKIP_BROWSER_TESTS=1 skips it)"
    );
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let playwright_dir = playwright(root);
    let screenshots = playwright_dir.join("screenshots");
    std::fs::create_dir_all(&screenshots).unwrap();

    let upstream = start_upstream().await;
    let served = ShippedGateway::start(&upstream.url()).await;
    let config = served.gateway.to_str().unwrap().to_string();
    let deny_path = format!("/client/v4/zones/{DEMO_ZONE}/dns_records");
    // What the console must show for the denial: the reason `permgate check` gives for it.
    let check = cli_json(&[
        "check", "--config", &config, "--token", DEMO_TOKEN, "--json", "POST", &deny_path,
    ]);
    assert_eq!(check["decision"], "deny");
    let who_can = cli_json(&[
        "access", "who-can", "--config", &config, "--at", AT, "--json", "GET", &deny_path,
    ]);
    assert!(!who_can["allowed"].as_array().unwrap().is_empty());
    let status: serde_json::Value =
        serde_json::from_str(&common::send(served.admin, "GET", "/status", &[]).await.body)
            .unwrap();
    // Secrets: the demo secrets the README publishes (tokens, and the legacy keys in the files' comments:
    // 37 hex digits), and every secret hash (64 hex digits) of the config.
    let config_dir = served.dir.path().join("config");
    let mut secrets = vec![DEMO_TOKEN.to_string(), "pgt_demo".to_string()];
    hex_runs(&config_dir, &[37], &mut secrets);
    let mut hashes = Vec::new();
    hex_runs(&config_dir, &[64], &mut hashes);
    assert!(hashes.contains(&sha256_hex(DEMO_TOKEN)));

    let arguments = json!({
        "playwright_dir": playwright_dir,
        "chromium": chromium,
        "admin": format!("http://{}", served.admin),
        "proxy": format!("http://{}", served.listen),
        "content_hash": status["content_hash"],
        "demo_token": DEMO_TOKEN,
        "deny_path": deny_path,
        "deny_reason": check["reason"],
        "who_can_path": deny_path,
        "who_can": who_can,
        "at": AT,
        "accounts": config_dir.join("accounts.yaml"),
        "edit_from": STAGING_GROUP,
        "edit_to": STAGING_AND_SHOP,
        "change_label": "legacy key of frank.li@example.com",
        "change_gained": 7,
        "secrets": secrets,
        "secret_hashes": hashes,
        "screenshots": screenshots,
    });
    let arguments_file = served.dir.path().join("browser-args.json");
    std::fs::write(&arguments_file, arguments.to_string()).unwrap();
    let script = root.join("tests/console/console_browser.mjs");
    let output = tokio::process::Command::new("node")
        .arg(&script)
        .arg(&arguments_file)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the browser test failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("console_browser: ok"), "{stdout}\n{stderr}");
    for page in [
        "overview",
        "traffic",
        "denials",
        "routes",
        "who-can",
        "why-denied",
    ] {
        let shot = screenshots.join(format!("{page}.png"));
        let bytes = std::fs::read(&shot).unwrap();
        assert!(bytes.starts_with(b"\x89PNG"), "{}", shot.display());
        if std::env::var_os("PERMGATE_UPDATE_SCREENSHOTS").is_some_and(|value| value == "1") {
            let docs = root.join("docs/console");
            std::fs::create_dir_all(&docs).unwrap();
            std::fs::write(docs.join(format!("{page}.png")), &bytes).unwrap();
        }
    }
    served.stop().await;
}
