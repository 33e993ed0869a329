//! `permgate access replay`: the real binary serves the shipped config with its decision log in a file, real
//! requests go through it (allowed, denied, disabled token, unknown token, no credential, legacy key), and the
//! log is replayed: under the same config nothing changes; under a config with one more deny exactly the
//! requests that deny covers change, grouped by route and credential.

use crate::common;

use std::path::Path;
use std::process::Command;

use common::{ShippedGateway, bearer, send, start_upstream};

/// Method, target, headers, expected status.
type Request = (&'static str, String, Vec<(&'static str, String)>, u16);

const EXAMPLE_COM: &str = "b1fbb152bbde3bd28919a7f4bdca841f";
const SHOP: &str = "90cd2c6d19429ceb92a8da695473c3e4";

fn replay(log: &Path, config: &Path) -> serde_json::Value {
    let output = Command::new(env!("CARGO_BIN_EXE_permgate"))
        .args(["access", "replay", "--json", "--config"])
        .arg(config)
        .arg(log)
        .output()
        .unwrap();
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_decision_log_replays_unchanged_and_then_changes_exactly_where_a_new_deny_applies() {
    let upstream = start_upstream().await;
    let served = ShippedGateway::start(&upstream.url()).await;
    let listen = served.listen;
    let (gateway, log) = (served.gateway.clone(), served.log.clone());

    let dns = |zone: &str| format!("/client/v4/zones/{zone}/dns_records");
    let joe_key = [
        ("X-Auth-Email", "joe.smith@example.com"),
        ("X-Auth-Key", "7224207a5b3d377de243d3e8124a72780fc33"),
    ];
    let requests: Vec<Request> = vec![
        // Joe's DNS-read token: reads example.com, cannot write it.
        (
            "GET",
            dns(EXAMPLE_COM),
            vec![("Authorization", bearer("pgt_demo_joe_dns_read"))],
            200,
        ),
        (
            "POST",
            dns(EXAMPLE_COM),
            vec![("Authorization", bearer("pgt_demo_joe_dns_read"))],
            403,
        ),
        // Joe's broad token and his legacy key write DNS on example.com (his member policy allows it).
        (
            "POST",
            dns(EXAMPLE_COM),
            vec![("Authorization", bearer("pgt_demo_joe_broad"))],
            200,
        ),
        (
            "POST",
            dns(EXAMPLE_COM),
            joe_key.iter().map(|(n, v)| (*n, v.to_string())).collect(),
            200,
        ),
        (
            "GET",
            dns(EXAMPLE_COM),
            joe_key.iter().map(|(n, v)| (*n, v.to_string())).collect(),
            200,
        ),
        // Carol's token is denied DNS on shop.example.com by its own deny policy.
        (
            "GET",
            dns(SHOP),
            vec![("Authorization", bearer("pgt_demo_carol_no_shop"))],
            403,
        ),
        // A disabled token (logged with its id), an unknown one and none (not replayable).
        (
            "GET",
            dns(EXAMPLE_COM),
            vec![("Authorization", bearer("pgt_demo_disabled"))],
            403,
        ),
        (
            "GET",
            dns(EXAMPLE_COM),
            vec![("Authorization", bearer("pgt_demo_nobody_has_this"))],
            403,
        ),
        ("GET", dns(EXAMPLE_COM), vec![], 400),
    ];
    for (method, target, headers, status) in &requests {
        let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let response = send(listen, method, target, &headers).await;
        assert_eq!(response.status, *status, "{method} {target} {headers:?}");
    }
    // SIGTERM drains the connections and writes the log out.
    let dir = served.stop().await;
    let lines = std::fs::read_to_string(&log).unwrap();
    assert_eq!(lines.lines().count(), requests.len(), "{lines}");
    assert!(!lines.contains("pgt_demo"), "a secret in the decision log");
    // The disabled token is named by its id although it never became the principal.
    let disabled = lines.lines().nth(6).unwrap();
    assert!(
        disabled.contains(r#""token_id":"7ac603f6742ddf2805dd3c9d6d4cfe97""#)
            && disabled.contains(r#""principal":null"#),
        "{disabled}"
    );

    // Same config: nothing changes; the unknown token and the missing credential are not replayable.
    let same = replay(&log, &gateway);
    assert_eq!(same["lines"], 9);
    assert_eq!(same["replayed"], 7);
    assert_eq!(same["not_replayable"], 2);
    assert_eq!(same["changed"], 0);
    assert_eq!(same["unchanged"], 7);

    // One more member policy for Joe: deny DNS Write on example.com. It covers his legacy key and every
    // token of his that writes or reads DNS there (DNS Write holds every dns-record key).
    let accounts = dir.path().join("config/accounts.yaml");
    let text = std::fs::read_to_string(&accounts).unwrap();
    let anchor = "          - id: 05a08a380dadb8da4212c948d165c653\n";
    assert_eq!(text.matches(anchor).count(), 1);
    let deny = "          - id: joe-no-dns-write
            access: deny
            permission_groups:
              - { id: 4755a26eedb94da69e1066d98aa820be }
            resource_groups:
              - scope:
                  key: com.cloudflare.api.account.a67e14daa5f8dceeb91fe5449ba496eb
                  objects:
                    - key: com.cloudflare.api.account.zone.b1fbb152bbde3bd28919a7f4bdca841f
";
    std::fs::write(
        &accounts,
        text.replacen(anchor, &format!("{deny}{anchor}"), 1),
    )
    .unwrap();
    let changed = replay(&log, &gateway);
    assert_eq!(changed["replayed"], 7);
    assert_eq!(changed["changed"], 4, "{changed:#}");
    let groups: Vec<(String, String, String, u64)> = changed["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|group| {
            (
                group["route"].as_str().unwrap().to_string(),
                group["credential"].as_str().unwrap().to_string(),
                group["change"].as_str().unwrap().to_string(),
                group["count"].as_u64().unwrap(),
            )
        })
        .collect();
    let joe_user = "legacy key of user 7c5dae5552338874e5053f2534d2767a";
    let expected = vec![
        (
            "dns_records.create".into(),
            joe_user.into(),
            "allow -> deny".into(),
            1,
        ),
        (
            "dns_records.create".into(),
            "token 8e74ea50d73c291e963f0bb07fa7937f".into(),
            "allow -> deny".into(),
            1,
        ),
        (
            "dns_records.list".into(),
            joe_user.into(),
            "allow -> deny".into(),
            1,
        ),
        (
            "dns_records.list".into(),
            "token 5149d67b34cf85a38a40f75273de20a0".into(),
            "allow -> deny".into(),
            1,
        ),
    ];
    assert_eq!(groups, expected, "{changed:#}");
    let example = &changed["groups"][0]["example"];
    assert_eq!(example["code"], 10000);
    assert!(
        example["reason"]
            .as_str()
            .unwrap()
            .contains("joe-no-dns-write"),
        "{example}"
    );
}
