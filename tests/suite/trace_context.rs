//! W3C Trace Context through the real binary: a valid `traceparent` (and its `tracestate`) reaches the
//! recording upstream unchanged and its trace id is the decision-log line's `trace_id`, for a denied request
//! too; an invalid one (uppercase, all-zero id, version `ff`, two headers) reaches the upstream with neither
//! header and logs `"trace_id":null`; none is started when the client sent none.

use std::collections::HashMap;

use crate::common::{ShippedGateway, bearer, raw, request_bytes, start_upstream};

const EXAMPLE_COM: &str = "b1fbb152bbde3bd28919a7f4bdca841f";
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
/// A later version, with a field version 00 does not define: passed on as sent.
const LATER: &str = "cc-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-future";
const STATE: &str = "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7";

/// What one request sends (its `traceparent` headers and `tracestate`), and what must come of it.
struct Case {
    name: &'static str,
    method: &'static str,
    traceparents: &'static [&'static str],
    forwarded: bool,
    /// The trace id the log line must carry (`None`: null) — and, when forwarded, whether the upstream gets
    /// the `traceparent` and `tracestate` unchanged (`Some`) or neither (`None`).
    trace_id: Option<&'static str>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_valid_traceparent_reaches_the_upstream_unchanged_and_its_trace_id_is_logged() {
    let upstream = start_upstream().await;
    let served = ShippedGateway::start(&upstream.url()).await;
    let log = served.log.clone();
    let path = format!("/client/v4/zones/{EXAMPLE_COM}/dns_records");
    let cases = [
        Case {
            name: "valid, allowed",
            method: "GET",
            traceparents: &[VALID],
            forwarded: true,
            trace_id: Some(TRACE_ID),
        },
        Case {
            // The point of the field: a denial found from a trace.
            name: "valid, denied",
            method: "POST",
            traceparents: &[VALID],
            forwarded: false,
            trace_id: Some(TRACE_ID),
        },
        Case {
            name: "a later version",
            method: "GET",
            traceparents: &[LATER],
            forwarded: true,
            trace_id: Some("0af7651916cd43dd8448eb211c80319c"),
        },
        Case {
            name: "uppercase hex",
            method: "GET",
            traceparents: &["00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01"],
            forwarded: true,
            trace_id: None,
        },
        Case {
            name: "all-zero trace id",
            method: "GET",
            traceparents: &["00-00000000000000000000000000000000-00f067aa0ba902b7-01"],
            forwarded: true,
            trace_id: None,
        },
        Case {
            name: "version ff",
            method: "GET",
            traceparents: &["ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"],
            forwarded: true,
            trace_id: None,
        },
        Case {
            name: "version 00 with extra fields",
            method: "GET",
            traceparents: &["00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x"],
            forwarded: true,
            trace_id: None,
        },
        Case {
            name: "two traceparent headers",
            method: "GET",
            traceparents: &[VALID, LATER],
            forwarded: true,
            trace_id: None,
        },
        Case {
            name: "none",
            method: "GET",
            traceparents: &[],
            forwarded: true,
            trace_id: None,
        },
    ];

    let mut request_ids = Vec::new();
    for case in &cases {
        let authorization = bearer("pgt_demo_joe_dns_read");
        let mut headers = vec![("Authorization", authorization.as_str())];
        headers.extend(
            case.traceparents
                .iter()
                .map(|value| ("traceparent", *value)),
        );
        if !case.traceparents.is_empty() {
            headers.push(("tracestate", STATE));
        }
        let before = upstream.requests().len();
        let response = raw(
            served.listen,
            &request_bytes(case.method, &path, &headers, ""),
        )
        .await;
        let request_id = response.header("x-request-id").unwrap().to_string();
        if case.forwarded {
            assert_eq!(response.status, 200, "{}", case.name);
            let received = upstream.wait_for(before + 1).await;
            let received = &received[before];
            assert_eq!(received.header("x-request-id"), Some(request_id.as_str()));
            let sent: Vec<_> = received
                .headers
                .get_all("traceparent")
                .iter()
                .map(|value| value.to_str().unwrap().to_string())
                .collect();
            match case.trace_id {
                Some(_) => {
                    assert_eq!(sent, case.traceparents, "{}: changed on the way", case.name);
                    assert_eq!(received.header("tracestate"), Some(STATE), "{}", case.name);
                }
                None => {
                    assert!(sent.is_empty(), "{}: forwarded {sent:?}", case.name);
                    assert_eq!(received.header("tracestate"), None, "{}", case.name);
                }
            }
        } else {
            assert_eq!(response.status, 403, "{}", case.name);
            assert_eq!(upstream.requests().len(), before, "{}", case.name);
        }
        request_ids.push(request_id);
    }

    // SIGTERM drains the connections and writes the log out.
    let _dir = served.stop().await;
    let lines: HashMap<String, serde_json::Value> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap())
        .map(|line| (line["request_id"].as_str().unwrap().to_string(), line))
        .collect();
    for (case, request_id) in cases.iter().zip(&request_ids) {
        let line = &lines[request_id];
        assert_eq!(
            line["trace_id"].as_str(),
            case.trace_id,
            "{}: {line}",
            case.name
        );
        let decision = if case.forwarded { "allow" } else { "deny" };
        assert_eq!(line["decision"], decision, "{}", case.name);
    }
}
