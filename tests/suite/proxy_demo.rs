//! The README promise: `permgate demo` prints curl lines, and pasting them gives exactly the printed
//! answers (allowed, 403 with its reason, no route 400/7000). Runs the demo on port 0 with the shipped config.

use crate::common;

use std::path::PathBuf;

use common::*;
use permgate::cli::demo::{
    CF_DEMO_ACCOUNT_TOKEN, CF_DEMO_KV_TOKEN, CF_DEMO_TOKEN, CF_DEMO_ZONE, DEMO_TOKEN, DEMO_ZONE,
    DemoArgs, start,
};

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
    let base = format!("http://{}", demo.addr);

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
        let response = send(demo.addr, call.method, &call.path, &headers).await;
        assert_eq!(
            response.status, call.status,
            "{}: {}",
            call.title, response.body
        );
        let json: serde_json::Value = serde_json::from_str(&response.body).unwrap();
        if call.code == 0 {
            assert_eq!(json["success"], true);
            let sample = &json["permgate_sample"];
            assert_eq!(sample["path"], call.path.as_str());
            assert_eq!(
                sample["headers"]["x-permgate-principal"],
                "user:7c5dae5552338874e5053f2534d2767a"
            );
            assert_eq!(
                sample["headers"]["x-permgate-account"],
                "a67e14daa5f8dceeb91fe5449ba496eb"
            );
            assert!(sample["headers"]["x-request-id"].is_string());
            // A list, in Cloudflare's shape.
            assert_eq!(json["result"].as_array().unwrap().len(), 3);
            assert_eq!(json["result_info"]["total_count"], 3);
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
    // The admin listener the instructions name answers, with the demo's own requests counted.
    let admin = demo.admin_addr;
    assert!(
        instructions.contains(&format!("curl -s http://{admin}/status")),
        "{instructions}"
    );
    let status: serde_json::Value =
        serde_json::from_str(&send(admin, "GET", "/status", &[]).await.body).unwrap();
    assert_eq!(status["generation"], 1);
    let metrics = send(admin, "GET", "/metrics", &[]).await.body;
    assert!(
        metrics.contains("permgate_requests_total{"),
        "the demo's requests are counted:\n{metrics}"
    );
    demo.stop().await;
}

/// `permgate demo --config config/cloudflare/gateway.yaml`: the real route table in front of the sample
/// upstream, an SDK playground. It prints the calls for that config (an allowed list, a 403, Cloudflare's
/// 400/1001 to an account token, a KV key name with `%2F`, an SDK method with no route) and the SDK set-up,
/// and each call answers as printed; lists come in Cloudflare's shape and their pagination ends.
#[tokio::test]
async fn the_cloudflare_demo_is_an_sdk_playground() {
    let config = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config/cloudflare/gateway.yaml");
    let demo = start(&DemoArgs {
        config,
        listen: Some("127.0.0.1:0".parse().unwrap()),
    })
    .await
    .unwrap_or_else(|error| panic!("{error}"));
    let instructions = demo.instructions();
    let base = format!("http://{}", demo.addr);
    let outcomes: Vec<(u16, u32, Option<&str>)> = demo
        .calls
        .iter()
        .map(|call| (call.status, call.code, call.token))
        .collect();
    assert_eq!(
        outcomes,
        [
            (200, 0, Some(CF_DEMO_TOKEN)),
            (403, 10000, Some(CF_DEMO_TOKEN)),
            (400, 1001, Some(CF_DEMO_ACCOUNT_TOKEN)),
            (200, 0, Some(CF_DEMO_KV_TOKEN)),
            (400, 7000, Some(CF_DEMO_TOKEN)),
        ],
        "{instructions}"
    );
    for line in [
        format!("export CLOUDFLARE_API_TOKEN={CF_DEMO_TOKEN}"),
        format!("new Cloudflare({{ baseURL: '{base}/client/v4' }})"),
        format!("Cloudflare(base_url=\"{base}/client/v4\")"),
    ] {
        assert!(
            instructions.contains(&line),
            "missing {line:?} in:\n{instructions}"
        );
    }
    for call in &demo.calls {
        assert!(instructions.contains(&call.curl(&base)), "{instructions}");
        let authorization = call.token.map(bearer);
        let headers: Vec<(&str, &str)> = authorization
            .as_deref()
            .map(|value| vec![("Authorization", value)])
            .unwrap_or_default();
        let response = send(demo.addr, call.method, &call.path, &headers).await;
        assert_eq!(
            response.status, call.status,
            "{}: {}",
            call.title, response.body
        );
        if call.status != 200 {
            let json: serde_json::Value = serde_json::from_str(&response.body).unwrap();
            assert_eq!(json["errors"][0]["code"], call.code, "{}", call.title);
        }
    }

    // The list pages as Cloudflare's do, and its pagination ends.
    let auth = bearer(CF_DEMO_TOKEN);
    let records = format!("/client/v4/zones/{CF_DEMO_ZONE}/dns_records");
    let page = |n: u32| {
        let path = format!("{records}?per_page=2&page={n}");
        let auth = auth.clone();
        let addr = demo.addr;
        async move {
            let response = send(addr, "GET", &path, &[("Authorization", &auth)]).await;
            assert_eq!(response.status, 200, "{}", response.body);
            serde_json::from_str::<serde_json::Value>(&response.body).unwrap()
        }
    };
    let first = page(1).await;
    assert_eq!(first["result"].as_array().unwrap().len(), 2);
    assert_eq!(first["result_info"]["total_pages"], 2);
    assert_eq!(page(2).await["result"].as_array().unwrap().len(), 1);
    assert_eq!(page(3).await["result"], serde_json::json!([]));
    // The KV value comes back raw, for the key name exactly as sent.
    let kv = &demo.calls[3];
    let value = send(
        demo.addr,
        "GET",
        &kv.path,
        &[("Authorization", &bearer(CF_DEMO_KV_TOKEN))],
    )
    .await;
    assert_eq!(value.body, "sample value of images%2Fcat.png");
    demo.stop().await;
}

/// A config the demo knows no token of gets the no-route call only.
#[tokio::test]
async fn another_config_gets_the_no_route_call_only() {
    let upstream = start_upstream().await;
    let config = write_config(&Options::new(&upstream.url()));
    let demo = start(&DemoArgs {
        config: config.gateway_path.clone(),
        listen: Some("127.0.0.1:0".parse().unwrap()),
    })
    .await
    .unwrap_or_else(|error| panic!("{error}"));
    let outcomes: Vec<(u16, u32)> = demo
        .calls
        .iter()
        .map(|call| (call.status, call.code))
        .collect();
    assert_eq!(outcomes, [(400, 7000)]);
    assert!(!demo.instructions().contains("CLOUDFLARE_API_TOKEN"));
    demo.stop().await;
}
