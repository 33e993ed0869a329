//! Observability, end to end: the admin listener's endpoints, the `/metrics` text parsed by a real
//! Prometheus text-format parser with counters moving as requests are made, and the decision log's lines
//! (fields, values, and never a secret). Everything runs in-process on port 0 with a real upstream.

use crate::common;
use crate::reload_support;

use std::collections::BTreeSet;

use common::*;
use permgate::metrics::ReloadOutcome;
use permgate::reload::Trigger;
use reload_support::*;
use serde_json::Value;

fn requests_total(text: &str, route: &str, method: &str, decision: &str, code: &str) -> f64 {
    sample(
        text,
        "permgate_requests_total",
        &[
            ("route", route),
            ("method", method),
            ("decision", decision),
            ("code", code),
        ],
    )
    .unwrap_or(0.0)
}

/// Every metric family in the text has `# HELP` and `# TYPE`, and every sample belongs to one.
fn assert_well_formed(text: &str) {
    let mut help = BTreeSet::new();
    let mut typed = BTreeSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, doc) = rest.split_once(' ').unwrap();
            assert!(!doc.trim().is_empty(), "empty help for {name}");
            help.insert(name.to_string());
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            typed.insert(rest.split(' ').next().unwrap().to_string());
        } else if !line.is_empty() {
            let name = line.split(['{', ' ']).next().unwrap();
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suffix| {
                    name.strip_suffix(suffix)
                        .filter(|family| typed.contains(*family))
                })
                .unwrap_or(name);
            assert!(help.contains(family), "{name} has no # HELP");
            assert!(typed.contains(family), "{name} has no # TYPE");
        }
    }
    assert_eq!(help, typed);
}

/// (g) `/metrics` parses, holds every metric of SPEC §9 with help text and bounded labels, and its
/// counters move as requests are made; the other admin endpoints answer, and never on the proxy listener.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_parse_and_move_with_requests() {
    let upstream = start_upstream().await;
    let config = write_config(&Options::new(&upstream.url()));
    let services = start_services(&config, MANUAL).await;
    let records = format!("/client/v4/zones/{ZONE}/dns_records");

    let before = metrics(&services).await;
    assert_well_formed(&before);
    assert_eq!(sample(&before, "permgate_tokens", &[]), Some(7.0));
    assert_eq!(sample(&before, "permgate_routes", &[]), Some(7.0));
    assert_eq!(sample(&before, "permgate_config_tokens", &[]), Some(7.0));
    assert_eq!(sample(&before, "permgate_config_routes", &[]), Some(7.0));
    assert_eq!(
        sample(&before, "permgate_config_generation", &[]),
        Some(1.0)
    );
    assert_eq!(
        sample(&before, "permgate_config_last_reload_success", &[]),
        Some(1.0)
    );
    assert!(
        sample(
            &before,
            "permgate_config_last_reload_timestamp_seconds",
            &[]
        )
        .unwrap()
            > 1.6e9
    );

    for _ in 0..3 {
        assert_eq!(call(&services, &records, TOKEN_READ).await, (200, 0));
    }
    assert_eq!(
        call(&services, &format!("{records}/rec-1"), TOKEN_DISABLED).await,
        (403, 1000)
    );
    assert_eq!(
        call(&services, "/client/v4/no/such/route?token=x", TOKEN_READ).await,
        (400, 7000)
    );
    let odd = send(
        services.proxy.addr,
        "BREW",
        &records,
        &[("Authorization", &bearer(TOKEN_READ))],
    )
    .await;
    assert_eq!(odd.status, 400);

    let after = metrics(&services).await;
    assert_well_formed(&after);
    // Labelled series exist once something was counted; every family of SPEC §9 is there now.
    for name in permgate::metrics::FAMILIES {
        assert!(
            after.contains(&format!("# HELP {name} ")),
            "{name} missing:\n{after}"
        );
    }
    assert_eq!(
        requests_total(&after, "dns.list", "GET", "allow", "200"),
        3.0
    );
    assert_eq!(requests_total(&after, "dns.get", "GET", "deny", "403"), 1.0);
    assert_eq!(requests_total(&after, "none", "GET", "deny", "400"), 1.0);
    assert_eq!(requests_total(&after, "none", "OTHER", "deny", "400"), 1.0);
    let histogram_count =
        |text: &str, name: &str, labels: &[(&str, &str)]| sample(text, name, labels).unwrap_or(0.0);
    assert_eq!(
        histogram_count(
            &after,
            "permgate_request_duration_seconds",
            &[("route", "dns.list")]
        ),
        3.0
    );
    assert!(
        histogram_count(&after, "permgate_decision_duration_seconds", &[])
            >= histogram_count(&before, "permgate_decision_duration_seconds", &[]) + 5.0
    );
    // Bounded labels: no raw path, query, token id, user or secret anywhere.
    for leak in [
        "/client/v4",
        "token=x",
        "tok-read",
        "user-joe",
        TOKEN_READ,
        "BREW",
    ] {
        assert!(!after.contains(leak), "{leak:?} in the metrics");
    }

    // An upstream change applies live (no restart) and its failures are counted by kind.
    let unreachable = closed_port().await;
    edit(&config.gateway_path, |text| {
        text.replace(&upstream.url(), &format!("http://{unreachable}"))
    });
    assert_eq!(
        services.reloader.reload_now(Trigger::Manual).await,
        ReloadOutcome::Applied
    );
    assert_eq!(
        status(&services).await["restart_required"],
        serde_json::json!([])
    );
    assert_eq!(call(&services, &records, TOKEN_READ).await, (502, 1200));
    let text = metrics(&services).await;
    assert_eq!(
        sample(
            &text,
            "permgate_upstream_errors_total",
            &[("kind", "connect")]
        ),
        Some(1.0)
    );
    assert_eq!(
        requests_total(&text, "dns.list", "GET", "allow", "502"),
        1.0
    );
    assert_eq!(
        sample(
            &text,
            "permgate_config_reloads_total",
            &[("outcome", "applied")]
        ),
        Some(1.0)
    );
    assert_eq!(sample(&text, "permgate_config_generation", &[]), Some(2.0));

    // A restart-only setting is reported, and the rest of the change still applies.
    edit(&config.gateway_path, |text| {
        text.replace("max_connections: 1000", "max_connections: 999")
    });
    assert_eq!(
        services.reloader.reload_now(Trigger::Manual).await,
        ReloadOutcome::Applied
    );
    assert_eq!(
        status(&services).await["restart_required"],
        serde_json::json!(["max_connections"])
    );
    assert_eq!(
        sample(
            &metrics(&services).await,
            "permgate_config_restart_required",
            &[]
        ),
        Some(1.0)
    );
    services.stop().await;
}

#[tokio::test]
async fn admin_endpoints_answer_and_stay_off_the_proxy_listener() {
    let upstream = start_upstream().await;
    let config = write_config(&Options::new(&upstream.url()));
    let services = start_services(&config, MANUAL).await;

    let health = admin_get(&services, "/healthz").await;
    assert_eq!(health.status, 200);
    let ready = admin_get(&services, "/readyz").await;
    assert_eq!(
        (ready.status, ready.body.contains("\"ready\":true")),
        (200, true)
    );

    let status = status(&services).await;
    assert_eq!(status["generation"], 1);
    assert_eq!(
        status["content_hash"].as_str().unwrap().len(),
        64,
        "{status:#}"
    );
    let loaded_at = status["loaded_at"].as_str().unwrap();
    time::OffsetDateTime::parse(loaded_at, &time::format_description::well_known::Rfc3339).unwrap();
    assert_eq!(
        status["counts"],
        serde_json::json!({
            "routes": 7, "tokens": 7, "users": 2, "accounts": 1, "zones": 2, "domain_groups": 0,
            "permission_groups": 2, "policies": 9,
        })
    );
    assert_eq!(status["in_sync"], true);
    assert!(status["last_error"].is_null());
    assert_eq!(status["restart_required"], serde_json::json!([]));
    assert_eq!(status["watcher"]["enabled"], false);

    let missing = admin_get(&services, "/nope").await;
    assert_eq!(missing.status, 404);
    let json: Value = serde_json::from_str(&missing.body).unwrap();
    assert_eq!(json["error"], "not found");
    assert_eq!(
        missing.header("content-type"),
        Some("application/json"),
        "{missing:?}"
    );
    let post = send(services.admin.addr, "POST", "/status", &[]).await;
    assert_eq!(post.status, 405);

    // The proxy listener knows nothing of the admin paths: they are routes like any other (none here).
    for path in ["/metrics", "/status", "/healthz"] {
        let response = send(services.proxy.addr, "GET", path, &[]).await;
        assert_eq!((response.status, response.code()), (400, Some(7000)));
    }
    services.stop().await;
}

/// (h) One line per request with the documented fields, written to a file off the request path; never a
/// secret, a credential header or the query string.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_decision_log_has_one_line_per_request_and_no_secret() {
    let upstream = start_upstream().await;
    let config = write_config(&Options::new(&upstream.url()));
    edit(&config.gateway_path, |text| {
        text.replace(
            "decision_log: { sink: off }",
            "decision_log: { sink: file, path: logs/decisions.log, queue_capacity: 1024 }",
        )
    });
    std::fs::create_dir(config.dir.path().join("logs")).unwrap();
    let services = start_services(&config, MANUAL).await;
    let records = format!("/client/v4/zones/{ZONE}/dns_records");

    assert_eq!(
        call(
            &services,
            &format!("{records}?secret=query-secret"),
            TOKEN_READ
        )
        .await,
        (200, 0)
    );
    let create = send(
        services.proxy.addr,
        "POST",
        &records,
        &[("Authorization", &bearer(TOKEN_READ))],
    )
    .await;
    assert_eq!(create.status, 403);
    assert_eq!(call_with_key(&services, &records).await, (200, 0));
    assert_eq!(
        call(&services, "/client/v4/nowhere", TOKEN_WRITE).await,
        (400, 7000)
    );
    let framing = raw(
        services.proxy.addr,
        b"POST /client/v4/ips HTTP/1.1\r\nHost: gw.test\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\nAuthorization: Bearer pgt_test_write\r\n\r\n0\r\n\r\n",
    )
    .await;
    assert_eq!(framing.status, 400);
    let request_id = create.header("x-request-id").unwrap().to_string();
    services.stop().await;

    let text = std::fs::read_to_string(config.dir.path().join("logs/decisions.log")).unwrap();
    for secret in [
        TOKEN_READ,
        TOKEN_WRITE,
        JOE_KEY,
        "query-secret",
        "Bearer",
        &sha256_hex(TOKEN_READ),
    ] {
        assert!(
            !text.contains(secret),
            "{secret:?} in the decision log:\n{text}"
        );
    }
    let lines: Vec<Value> = text
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(lines.len(), 5, "{text}");
    const FIELDS: &[&str] = &[
        "time",
        "request_id",
        "trace_id",
        "method",
        "mode",
        "path",
        "route",
        "principal",
        "token_id",
        "account",
        "resource",
        "required",
        "required_mode",
        "decision",
        "status",
        "code",
        "reason",
        "policies",
        "client_ip",
        "decision_us",
        "total_us",
        "generation",
        "error",
    ];
    for line in &lines {
        let keys: BTreeSet<&str> = line
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(keys, FIELDS.iter().copied().collect(), "{line}");
        time::OffsetDateTime::parse(
            line["time"].as_str().unwrap(),
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap();
        assert_eq!(line["generation"], 1);
        assert_eq!(line["mode"], "proxy");
        assert_eq!(line["client_ip"], "127.0.0.1");
        assert!(line["total_us"].as_u64().unwrap() >= line["decision_us"].as_u64().unwrap());
    }
    let by_path = |method: &str, path: &str| {
        lines
            .iter()
            .find(|line| line["method"] == method && line["path"] == path)
            .unwrap_or_else(|| panic!("no line for {method} {path}:\n{text}"))
    };

    let allowed = &lines[0];
    assert_eq!(
        allowed["path"],
        records.as_str(),
        "the query is never logged"
    );
    assert_eq!(allowed["route"], "dns.list");
    assert_eq!(allowed["decision"], "allow");
    assert_eq!(
        (allowed["status"].as_u64(), allowed["code"].as_u64()),
        (Some(200), Some(0))
    );
    assert_eq!(allowed["principal"], "user:user-joe");
    assert_eq!(allowed["token_id"], "tok-read");
    assert_eq!(allowed["account"], "acct-a");
    assert_eq!(
        allowed["resource"],
        "com.cloudflare.api.account.zone.zone-1"
    );
    assert_eq!(
        allowed["required"],
        serde_json::json!(["com.cloudflare.api.account.zone.dns-record.list"])
    );
    assert_eq!(allowed["required_mode"], "all_of");
    assert_eq!(allowed["reason"], "allowed");
    let policies: Vec<&str> = allowed["policies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|policy| policy.as_str().unwrap())
        .collect();
    assert!(policies.contains(&"tp-read"), "{policies:?}");

    let denied = by_path("POST", &records);
    assert_eq!(denied["request_id"], request_id.as_str());
    assert_eq!(denied["decision"], "deny");
    assert_eq!(
        (denied["status"].as_u64(), denied["code"].as_u64()),
        (Some(403), Some(10000))
    );
    assert!(
        denied["reason"]
            .as_str()
            .unwrap()
            .contains("dns-record.create"),
        "{denied}"
    );

    let legacy = lines
        .iter()
        .find(|line| line["principal"] == "user:user-joe" && line["token_id"].is_null())
        .unwrap();
    assert_eq!(legacy["decision"], "allow");

    let unrouted = by_path("GET", "/client/v4/nowhere");
    assert!(unrouted["route"].is_null());
    assert_eq!(unrouted["code"], 7000);
    assert_eq!(unrouted["status"], 400);

    let undecided = lines
        .iter()
        .find(|line| line["status"] == 400 && line["code"] != 7000)
        .unwrap();
    assert_eq!(undecided["decision"], "deny");
    assert_eq!(undecided["code"], 6003);
    assert!(undecided["path"].is_null());
}
