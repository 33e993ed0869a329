//! The integration test suite as one crate (one link of the library instead of one per file): each module
//! is one area, and most start the real gateway binary, a real upstream and, where one is named, the real
//! third-party component. `tests/faults.rs` stays a binary of its own: it counts the process's open
//! descriptors and alive tasks, which tests running beside it in one process would disturb.
// Test code: a failed unwrap is a failed test (tests/ is exempt from the no-panic rule).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

#[path = "../common/mod.rs"]
mod common;
#[path = "../decision_support/mod.rs"]
mod decision_support;
#[path = "../reload_support/mod.rs"]
mod reload_support;

mod access;
mod access_diff;
mod access_reload;
mod access_replay;
mod bucket_token;
mod bypass;
mod client_limits;
mod cloudflare_routes;
mod config_corruption;
mod console;
mod console_browser;
mod decision_grpc;
mod decision_listeners;
mod decision_proxies;
mod decisions;
mod deploy;
mod group_reload;
mod invalid_configs;
mod json_log;
mod observability;
mod properties;
mod proxy_answers;
mod proxy_demo;
mod proxy_forwarding;
mod proxy_transport;
mod purity;
mod readme_access;
mod reload;
mod reload_churn;
mod security_props;
mod shipped_config;
mod trace_context;
mod upgrades;
mod upstream_auth;
mod upstream_connections;
