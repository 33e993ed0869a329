//! The README promise: `permgate demo` prints curl lines, and pasting them gives exactly the printed
//! answers (allowed, 403 with its reason, no route 400/7000). Runs the demo on port 0 with the shipped config.
// Test code: a failed unwrap is a failed test (tests/ is exempt from the no-panic rule).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::path::PathBuf;

use common::*;
use permgate::cli::demo::{DEMO_TOKEN, DEMO_ZONE, DemoArgs, start};

#[tokio::test]
async fn the_printed_demo_calls_answer_as_printed() {
    let config = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config/gateway.yaml");
    let demo = start(&DemoArgs {
        config,
        listen: Some("127.0.0.1:0".parse().unwrap()),
    })
    .await
    .unwrap_or_else(|error| panic!("{error}"));
    let instructions = demo.instructions();
    let base = format!("http://{}", demo.gateway.addr);

    // The three promised lines, with the real address.
    let records = format!("{base}/client/v4/zones/{DEMO_ZONE}/dns_records");
    let allowed = format!("curl -s -H \"Authorization: Bearer {DEMO_TOKEN}\" {records}");
    let refused = format!("curl -s -X POST -H \"Authorization: Bearer {DEMO_TOKEN}\" {records}");
    let missing = format!("curl -s {base}/client/v4/no/such/route");
    for line in [&allowed, &refused, &missing] {
        assert!(
            instructions.contains(line.as_str()),
            "missing {line:?} in:\n{instructions}"
        );
    }
    let outcomes: Vec<(u16, u32)> = demo
        .calls
        .iter()
        .map(|call| (call.status, call.code))
        .collect();
    assert_eq!(
        outcomes,
        [(200, 0), (403, 10000), (400, 7000)],
        "{instructions}"
    );

    // Replaying each call through the running gateway gives what was printed.
    for call in &demo.calls {
        let authorization = call.token.map(bearer);
        let headers: Vec<(&str, &str)> = authorization
            .as_deref()
            .map(|value| vec![("Authorization", value)])
            .unwrap_or_default();
        let response = send(demo.gateway.addr, call.method, &call.path, &headers).await;
        assert_eq!(
            response.status, call.status,
            "{}: {}",
            call.title, response.body
        );
        let json: serde_json::Value = serde_json::from_str(&response.body).unwrap();
        if call.code == 0 {
            assert_eq!(json["success"], true);
            assert_eq!(json["result"]["path"], call.path.as_str());
            assert_eq!(
                json["result"]["headers"]["x-permgate-principal"],
                "user:7c5dae5552338874e5053f2534d2767a"
            );
            assert_eq!(
                json["result"]["headers"]["x-permgate-account"],
                "a67e14daa5f8dceeb91fe5449ba496eb"
            );
            assert!(json["result"]["headers"]["x-request-id"].is_string());
        } else {
            assert_eq!(json["errors"][0]["code"], call.code);
            // The printed outcome is the message, then (for a 403) the reason the body carries.
            let message = json["errors"][0]["message"].as_str().unwrap();
            assert!(
                call.outcome.starts_with(message),
                "{:?} vs {message:?}",
                call.outcome
            );
            if let Some(reason) = json["errors"][0]["error_chain"][0]["message"].as_str() {
                assert!(
                    call.outcome.ends_with(reason),
                    "{:?} vs {reason:?}",
                    call.outcome
                );
            }
        }
    }
    demo.stop().await;
}
