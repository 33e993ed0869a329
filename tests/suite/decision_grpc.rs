//! Envoy's `ext_authz` over gRPC (`envoy.service.auth.v3.Authorization/Check`), asked by a client that is not
//! built from permgate's types: Python `grpcio` with Envoy's data-plane API from the `xds-protos` package
//! (tests/decision/ext_authz_check.py), so a wire-format mistake cannot hide.
//!
//! The client runs in a venv under target/ (`target/ext-authz-venv`), created here with pinned packages when
//! it is missing (pip must reach PyPI then; `decision_support::pip_tool`). Set
//! `PERMGATE_EXT_AUTHZ_PYTHON` to use another Python that has `grpcio` and `xds-protos`.

use crate::{common, decision_support};

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Mutex;

use common::*;
use decision_support::*;
use permgate::settings::DecisionProtocol;
use serde_json::{Value, json};

/// The client's packages, pinned.
const PACKAGES: [&str; 3] = ["grpcio==1.85.4", "xds-protos==1.85.0", "protobuf==7.36.2"];

/// The venv's Python (`target/ext-authz-venv`), created once with the client's packages.
fn python() -> PathBuf {
    static READY: Mutex<Option<PathBuf>> = Mutex::new(None);
    pip_tool(
        &READY,
        "PERMGATE_EXT_AUTHZ_PYTHON",
        "ext-authz-venv",
        "bin/python",
        &PACKAGES,
        |python| {
            std::process::Command::new(python)
                .args([
                    "-c",
                    "import grpc, envoy.service.auth.v3.external_auth_pb2_grpc",
                ])
                .output()
                .is_ok_and(|output| output.status.success())
        },
    )
}

/// Sends `requests` (see the script) to the gRPC listener at `addr`; the `CheckResponse`s as JSON.
fn check(addr: SocketAddr, requests: &Value) -> Vec<Value> {
    let script =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/decision/ext_authz_check.py");
    let mut child = std::process::Command::new(python())
        .arg(script)
        .arg(addr.to_string())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(requests.to_string().as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "the gRPC client failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice::<Vec<Value>>(&output.stdout).unwrap()
}

/// A row as Envoy sends it: lowercase header names (its `headers` map).
fn as_check(row: &Row) -> Value {
    let headers: serde_json::Map<String, Value> = row
        .headers
        .iter()
        .map(|(name, value)| (name.to_ascii_lowercase(), json!(value)))
        .collect();
    json!({"method": row.method, "path": row.target, "headers": headers})
}

/// Envoy's `HeaderValueOption.HeaderAppendAction.OVERWRITE_IF_EXISTS_OR_ADD`.
const OVERWRITE: i64 = 2;

#[tokio::test]
async fn check_answers_the_table_as_the_inline_proxy_does() {
    let permgate = start_permgate("127.0.0.1/32", |_| {}).await;
    let addr = permgate.decision(DecisionProtocol::ExtAuthzGrpc);
    let rows = table();
    let requests: Vec<Value> = rows.iter().map(as_check).collect();
    let responses = tokio::task::spawn_blocking(move || check(addr, &Value::Array(requests)))
        .await
        .unwrap();
    assert_eq!(responses.len(), rows.len());
    for (row, response) in rows.iter().zip(&responses) {
        let inline = send(permgate.proxy(), row.method, &row.target, &row.headers()).await;
        if row.status == 200 {
            assert_eq!(response["grpc_code"], 0, "{}: {response}", row.name);
            assert_eq!(response["kind"], "ok_response", "{}", row.name);
            let headers = &response["headers"];
            assert_eq!(
                headers["x-permgate-principal"]["value"].as_str(),
                row.principal,
                "{}: {response}",
                row.name
            );
            assert_eq!(
                headers["x-request-id"]["value"].as_str().map(str::len),
                Some(32),
                "{}",
                row.name
            );
            for (_, header) in headers.as_object().unwrap() {
                assert_eq!(
                    header["append_action"], OVERWRITE,
                    "{}: {response}",
                    row.name
                );
            }
            assert_eq!(
                response["headers_to_remove"],
                json!(["authorization", "x-auth-key", "x-auth-email"]),
                "{}",
                row.name
            );
        } else {
            assert_eq!(response["grpc_code"], 7, "{}: {response}", row.name);
            assert_eq!(response["kind"], "denied_response", "{}", row.name);
            assert_eq!(response["status"], row.status, "{}: {response}", row.name);
            let body: Value = serde_json::from_str(response["body"].as_str().unwrap()).unwrap();
            assert_eq!(
                body["errors"][0]["code"], row.code,
                "{}: {response}",
                row.name
            );
            assert_eq!(
                response["body"], inline.body,
                "{}: the same envelope",
                row.name
            );
            assert_eq!(
                response["headers"]["content-type"]["value"], "application/json",
                "{}",
                row.name
            );
        }
    }
    // The decision log and the metrics say the gRPC form decided.
    let lines = permgate.log_lines().await;
    assert!(
        lines
            .iter()
            .any(|line| line["mode"] == "ext_authz_grpc" && line["decision"] == "allow"),
        "{lines:#?}"
    );
    assert!(
        permgate
            .metrics()
            .await
            .lines()
            .any(|line| line.starts_with(
                "permgate_decision_requests_total{decision=\"deny\",mode=\"ext_authz_grpc\"}"
            ) && !line.ends_with(" 0"))
    );
    permgate.services.stop().await;
}

#[tokio::test]
async fn raw_headers_and_refusals_of_what_cannot_be_decided() {
    let permgate = start_permgate("127.0.0.1/32", |_| {}).await;
    let addr = permgate.decision(DecisionProtocol::ExtAuthzGrpc);
    let read = bearer(TOKEN_READ);
    let records = records_path();
    let requests = json!([
        // Envoy's encode_raw_headers: header_map with raw_value.
        {"method": "GET", "path": records, "headers": {"authorization": read}, "raw": true},
        // No original path: refused, not decided as `/`.
        {"method": "GET", "path": "", "headers": {"authorization": read}},
        // No http attributes at all.
        {"no_http": true},
        // A client-sent X-Permgate-* header.
        {"method": "GET", "path": records, "headers": {"authorization": read, "x-permgate-principal": "user:admin"}},
        // An absolute form and an encoded slash: SPEC §7's canonical-target rules.
        {"method": "GET", "path": format!("http://evil.test{records}"), "headers": {"authorization": read}},
        {"method": "GET", "path": format!("/client/v4/zones/{ZONE}%2Fdns_records"), "headers": {"authorization": read}},
        // The other families name nothing here.
        {"method": "GET", "path": "/client/v4/nothing", "headers": {"authorization": read, "x-original-uri": records, "x-forwarded-uri": records}},
    ]);
    let responses = tokio::task::spawn_blocking(move || check(addr, &requests))
        .await
        .unwrap();
    assert_eq!(responses[0]["grpc_code"], 0, "{}", responses[0]);
    assert_eq!(
        responses[0]["headers"]["x-permgate-principal"]["value"],
        "user:user-joe"
    );
    for (index, code) in [
        (1, 6003),
        (2, 6003),
        (3, 6003),
        (4, 6003),
        (5, 6003),
        (6, 7000),
    ] {
        let response = &responses[index];
        assert_eq!(response["grpc_code"], 7, "{index}: {response}");
        assert_eq!(response["status"], 400, "{index}: {response}");
        let body: Value = serde_json::from_str(response["body"].as_str().unwrap()).unwrap();
        assert_eq!(body["errors"][0]["code"], code, "{index}: {response}");
    }
    permgate.services.stop().await;
}

#[tokio::test]
async fn a_peer_not_in_trusted_proxies_is_refused_with_the_reason() {
    let permgate = start_permgate("10.0.0.0/8", |_| {}).await;
    let addr = permgate.decision(DecisionProtocol::ExtAuthzGrpc);
    let requests = json!([{"method": "GET", "path": "/client/v4/ips"}]);
    let responses = tokio::task::spawn_blocking(move || check(addr, &requests))
        .await
        .unwrap();
    let response = &responses[0];
    assert_eq!(response["grpc_code"], 7, "{response}");
    assert_eq!(response["status"], 403, "{response}");
    let body: Value = serde_json::from_str(response["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["errors"][0]["code"], 10000);
    assert!(
        body["errors"][0]["error_chain"][0]["message"]
            .as_str()
            .unwrap()
            .contains("trusted_proxies"),
        "{body}"
    );
    permgate.services.stop().await;
}

#[tokio::test]
async fn forward_credentials_keeps_the_credential_headers() {
    let permgate = start_permgate("127.0.0.1/32", |options| {
        options.extra.push_str("forward_credentials: true\n");
    })
    .await;
    let addr = permgate.decision(DecisionProtocol::ExtAuthzGrpc);
    let requests = json!([{"method": "GET", "path": records_path(), "headers": {"authorization": bearer(TOKEN_READ)}}]);
    let responses = tokio::task::spawn_blocking(move || check(addr, &requests))
        .await
        .unwrap();
    assert_eq!(responses[0]["grpc_code"], 0, "{}", responses[0]);
    assert_eq!(responses[0]["headers_to_remove"], json!([]));
    permgate.services.stop().await;
}
