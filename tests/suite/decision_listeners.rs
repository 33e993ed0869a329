//! The HTTP decision listeners asked directly, as a proxy in front would: which headers name the original
//! request (one family per listener, the `-` spelling only), what is refused before any decision (a peer not
//! in `trusted_proxies`, no original URI), each protocol's answer form, and the config rules of `decision:`.

use crate::{common, decision_support};

use common::*;
use decision_support::*;
use permgate::settings::DecisionProtocol;

const AUTH_REQUEST: DecisionProtocol = DecisionProtocol::AuthRequest;
const FORWARD_AUTH: DecisionProtocol = DecisionProtocol::ForwardAuth;
const EXT_AUTHZ_HTTP: DecisionProtocol = DecisionProtocol::ExtAuthzHttp;

#[tokio::test]
async fn each_listener_reads_its_own_header_family_only() {
    let permgate = start_permgate("127.0.0.1/32", |_| {}).await;
    let read = bearer(TOKEN_READ);
    let records = records_path();
    let nginx = permgate.decision(AUTH_REQUEST);
    let allowed = send(
        nginx,
        "GET",
        "/auth",
        &[
            ("Authorization", &read),
            ("X-Original-URI", &records),
            ("X-Original-Method", "GET"),
        ],
    )
    .await;
    assert_eq!(allowed.status, 200, "{}", allowed.body);
    assert_eq!(
        allowed.header("x-permgate-principal"),
        Some("user:user-joe")
    );
    assert_eq!(allowed.header("x-permgate-token-id"), Some("tok-read"));
    assert_eq!(allowed.header("x-permgate-account"), Some(ACCOUNT));
    assert_eq!(allowed.header("x-request-id").map(str::len), Some(32));
    // The forward-auth family on the auth_request listener names nothing: refused, even though the
    // listener's own path is a public route and the named one is allowed.
    for listener_path in ["/client/v4/ips", "/"] {
        let other_family = send(
            nginx,
            "GET",
            listener_path,
            &[
                ("Authorization", &read),
                ("X-Forwarded-Uri", &records),
                ("X-Forwarded-Method", "GET"),
            ],
        )
        .await;
        assert_eq!(other_family.status, 403, "{}", other_family.body);
        assert_eq!(other_family.header("x-permgate-status"), Some("400"));
        assert_eq!(other_family.code(), Some(6003));
        assert!(
            other_family.body.contains("X-Original-URI"),
            "{}",
            other_family.body
        );
    }
    let caddy = permgate.decision(FORWARD_AUTH);
    let both = [
        ("Authorization", read.as_str()),
        ("X-Forwarded-Uri", "/client/v4/nothing"),
        ("X-Forwarded-Method", "GET"),
        ("X-Original-URI", records.as_str()),
        ("X-Original-Method", "GET"),
    ];
    let forward = send(caddy, "GET", "/", &both).await;
    assert_eq!(
        (forward.status, forward.code()),
        (400, Some(7000)),
        "forward_auth decides X-Forwarded-Uri, never X-Original-URI: {}",
        forward.body
    );
    // Underscore and dot spellings are other headers: never read.
    let odd = send(
        caddy,
        "GET",
        "/",
        &[
            ("Authorization", &read),
            ("X_Forwarded_Uri", &records),
            ("X.Forwarded.Uri", &records),
            ("X_Forwarded_Method", "GET"),
        ],
    )
    .await;
    assert_eq!((odd.status, odd.code()), (400, Some(6003)), "{}", odd.body);
    assert!(odd.body.contains("X-Forwarded-Uri"), "{}", odd.body);
    permgate.services.stop().await;
}

#[tokio::test]
async fn a_request_that_names_no_original_uri_is_refused_not_authorized_as_slash() {
    let permgate = start_permgate("127.0.0.1/32", |_| {}).await;
    for protocol in [AUTH_REQUEST, FORWARD_AUTH] {
        let addr = permgate.decision(protocol);
        // `/client/v4/ips` is public: deciding the decision request's own path would allow it.
        let response = send(addr, "GET", "/client/v4/ips", &[]).await;
        assert_eq!(
            response.code(),
            Some(6003),
            "{protocol:?}: {}",
            response.body
        );
        assert_eq!(response.header("x-permgate-status"), Some("400"));
        let twice = send(
            addr,
            "GET",
            "/",
            &[
                ("X-Original-URI", "/client/v4/ips"),
                ("X-Original-URI", "/client/v4/ips"),
                ("X-Original-Method", "GET"),
                ("X-Forwarded-Uri", "/client/v4/ips"),
                ("X-Forwarded-Uri", "/client/v4/ips"),
                ("X-Forwarded-Method", "GET"),
            ],
        )
        .await;
        assert_eq!(twice.code(), Some(6003), "{protocol:?}: {}", twice.body);
        assert!(twice.body.contains("more than one"), "{}", twice.body);
    }
    permgate.services.stop().await;
}

#[tokio::test]
async fn a_peer_not_in_trusted_proxies_is_refused_before_anything_is_read() {
    let permgate = start_permgate("10.0.0.0/8", |_| {}).await;
    for protocol in [AUTH_REQUEST, FORWARD_AUTH, EXT_AUTHZ_HTTP] {
        let addr = permgate.decision(protocol);
        let response = send(
            addr,
            "GET",
            "/authz/client/v4/ips",
            &[
                ("X-Original-URI", "/client/v4/ips"),
                ("X-Original-Method", "GET"),
                ("X-Forwarded-Uri", "/client/v4/ips"),
                ("X-Forwarded-Method", "GET"),
            ],
        )
        .await;
        assert_eq!(response.status, 403, "{protocol:?}: {}", response.body);
        assert_eq!(response.code(), Some(10000), "{protocol:?}");
        assert!(
            response.body.contains("trusted_proxies"),
            "{}",
            response.body
        );
        assert!(response.header("x-permgate-principal").is_none());
    }
    let lines = permgate.log_lines().await;
    for mode in ["auth_request", "forward_auth", "ext_authz_http"] {
        assert!(
            lines.iter().any(|line| line["mode"] == mode
                && line["decision"] == "deny"
                && line["code"] == 10000
                && line["reason"].as_str().unwrap().contains("trusted_proxies")),
            "{mode}: {lines:#?}"
        );
    }
    permgate.services.stop().await;
}

#[tokio::test]
async fn the_named_uri_goes_through_the_canonical_target_rules() {
    let permgate = start_permgate("127.0.0.1/32", |_| {}).await;
    let read = bearer(TOKEN_READ);
    let records = records_path();
    let nginx = permgate.decision(AUTH_REQUEST);
    for uri in [
        format!("http://evil.test{records}"),
        format!("/client/v4/zones/{ZONE}%2Fdns_records"),
        format!("/client/v4/zones/{OTHER_ZONE}/../{ZONE}/dns_records"),
        format!("/client/v4/zones/{ZONE}/./dns_records"),
        "client/v4/ips".to_string(),
    ] {
        let response = send(
            nginx,
            "GET",
            "/",
            &[
                ("Authorization", &read),
                ("X-Original-URI", &uri),
                ("X-Original-Method", "GET"),
            ],
        )
        .await;
        assert_eq!(response.status, 403, "{uri}: {}", response.body);
        assert_eq!(response.header("x-permgate-status"), Some("400"), "{uri}");
        assert_eq!(response.header("x-permgate-code"), Some("6003"), "{uri}");
    }
    // A method-override header in the client's headers is refused as by the inline proxy.
    let response = send(
        nginx,
        "GET",
        "/",
        &[
            ("Authorization", &read),
            ("X-Original-URI", &records),
            ("X-Original-Method", "GET"),
            ("X-HTTP-Method-Override", "DELETE"),
        ],
    )
    .await;
    assert_eq!(response.header("x-permgate-code"), Some("6003"));
    permgate.services.stop().await;
}

#[tokio::test]
async fn each_protocol_answers_a_denial_in_its_form() {
    let permgate = start_permgate("127.0.0.1/32", |_| {}).await;
    let records = records_path();
    let read = bearer(TOKEN_READ);
    let named = [
        ("Authorization", read.as_str()),
        ("X-Original-URI", records.as_str()),
        ("X-Original-Method", "POST"),
        ("X-Forwarded-Uri", records.as_str()),
        ("X-Forwarded-Method", "POST"),
    ];
    let inline = send(
        permgate.proxy(),
        "POST",
        &records,
        &[("Authorization", &read)],
    )
    .await;
    assert_eq!((inline.status, inline.code()), (403, Some(10000)));
    // nginx passes only 2xx, 401 and 403: 403, with the real status, code and envelope in headers.
    let nginx = send(permgate.decision(AUTH_REQUEST), "GET", "/", &named).await;
    assert_eq!(nginx.status, 403);
    assert_eq!(nginx.header("x-permgate-status"), Some("403"));
    assert_eq!(nginx.header("x-permgate-code"), Some("10000"));
    assert_eq!(
        nginx.header("x-permgate-envelope"),
        Some(inline.body.as_str())
    );
    assert_eq!(nginx.body, inline.body);
    let missing = send(
        permgate.decision(AUTH_REQUEST),
        "GET",
        "/",
        &[("X-Original-URI", &records), ("X-Original-Method", "GET")],
    )
    .await;
    assert_eq!(missing.status, 403);
    assert_eq!(missing.header("x-permgate-status"), Some("400"));
    assert_eq!(missing.header("x-permgate-code"), Some("9106"));
    // Forward-auth and Envoy's HTTP service pass the answer on: the real status.
    let caddy = send(permgate.decision(FORWARD_AUTH), "GET", "/", &named).await;
    assert_eq!(
        (caddy.status, caddy.body.as_str()),
        (403, inline.body.as_str())
    );
    assert_eq!(caddy.header("content-type"), Some("application/json"));
    let envoy = send(
        permgate.decision(EXT_AUTHZ_HTTP),
        "POST",
        &format!("/authz{records}"),
        &[("Authorization", &read)],
    )
    .await;
    assert_eq!(
        (envoy.status, envoy.body.as_str()),
        (403, inline.body.as_str())
    );
    permgate.services.stop().await;
}

#[tokio::test]
async fn ext_authz_http_decides_its_own_method_and_path_without_the_prefix() {
    let permgate = start_permgate("127.0.0.1/32", |_| {}).await;
    let envoy = permgate.decision(EXT_AUTHZ_HTTP);
    let records = records_path();
    let write = bearer(TOKEN_WRITE);
    let allowed = send(
        envoy,
        "POST",
        &format!("/authz{records}?a=b"),
        &[
            ("Authorization", &write),
            ("X-Original-URI", "/client/v4/ips"),
        ],
    )
    .await;
    assert_eq!(allowed.status, 200, "{}", allowed.body);
    assert_eq!(
        allowed.header("x-permgate-principal"),
        Some("user:user-joe")
    );
    assert_eq!(allowed.header("x-permgate-token-id"), Some("tok-write"));
    assert_eq!(
        allowed.header("x-envoy-auth-headers-to-remove"),
        Some("authorization, x-auth-key, x-auth-email")
    );
    // Without the prefix: refused (the listener only answers what Envoy sends it).
    let unprefixed = send(envoy, "GET", &records, &[("Authorization", &write)]).await;
    assert_eq!((unprefixed.status, unprefixed.code()), (400, Some(6003)));
    assert!(
        unprefixed.body.contains("strip_prefix"),
        "{}",
        unprefixed.body
    );
    // The public route, its own path after the prefix.
    let public = send(envoy, "GET", "/authz/client/v4/ips", &[]).await;
    assert_eq!(public.status, 200, "{}", public.body);
    assert!(public.header("x-permgate-principal").is_none());
    permgate.services.stop().await;
}

#[tokio::test]
async fn shadow_mode_allows_as_the_inline_proxy_forwards() {
    let permgate = start_permgate("127.0.0.1/32", |options| {
        options.extra.push_str("mode: shadow\n");
    })
    .await;
    let records = records_path();
    let response = send(
        permgate.decision(FORWARD_AUTH),
        "GET",
        "/",
        &[
            ("Authorization", &bearer(TOKEN_READ)),
            ("X-Forwarded-Uri", &records),
            ("X-Forwarded-Method", "POST"),
        ],
    )
    .await;
    assert_eq!(response.status, 200, "{}", response.body);
    // A rejected target is never shadow-allowed.
    let rejected = send(
        permgate.decision(FORWARD_AUTH),
        "GET",
        "/",
        &[
            ("X-Forwarded-Uri", "/client/v4/zones/a%2Fb/dns_records"),
            ("X-Forwarded-Method", "GET"),
        ],
    )
    .await;
    assert_eq!(rejected.status, 400, "{}", rejected.body);
    let lines = permgate.log_lines().await;
    assert!(
        lines
            .iter()
            .any(|line| line["mode"] == "forward_auth" && line["decision"] == "shadow_allow"),
        "{lines:#?}"
    );
    permgate.services.stop().await;
}

#[tokio::test]
async fn a_reload_applies_to_the_next_decision() {
    let permgate = start_permgate("127.0.0.1/32", |_| {}).await;
    let records = records_path();
    let named = |token: &str| {
        vec![
            ("Authorization".to_string(), bearer(token)),
            ("X-Original-URI".to_string(), records.clone()),
            ("X-Original-Method".to_string(), "GET".to_string()),
        ]
    };
    let ask = |headers: Vec<(String, String)>| {
        let addr = permgate.decision(AUTH_REQUEST);
        async move {
            let headers: Vec<(&str, &str)> = headers
                .iter()
                .map(|(name, value)| (name.as_str(), value.as_str()))
                .collect();
            send(addr, "GET", "/", &headers).await
        }
    };
    assert_eq!(ask(named(TOKEN_READ)).await.status, 200);
    let tokens = permgate.config.dir.path().join("tokens.yaml");
    let text = std::fs::read_to_string(&tokens).unwrap();
    // Disable tok-read.
    let disabled = text.replacen(
        "    status: active\n    policies:\n      - id: tp-read",
        "    status: disabled\n    policies:\n      - id: tp-read",
        1,
    );
    assert_ne!(disabled, text);
    std::fs::write(&tokens, disabled).unwrap();
    permgate
        .services
        .reloader
        .reload_now(permgate::reload::Trigger::Manual)
        .await;
    let after = ask(named(TOKEN_READ)).await;
    assert_eq!(
        after.header("x-permgate-code"),
        Some("1000"),
        "{}",
        after.body
    );
    permgate.services.stop().await;
}

#[test]
fn decision_settings_are_checked_when_the_config_loads() {
    let cases = [
        (
            "decision:\n  - { listen: 127.0.0.1:9191, protocol: auth_request }\n",
            "trusted_proxies",
        ),
        (
            "trusted_proxies: [127.0.0.1]\ndecision:\n  - { listen: 127.0.0.1:9191, protocol: auth_request, strip_prefix: /x }\n",
            "only ext_authz_http",
        ),
        (
            "trusted_proxies: [127.0.0.1]\ndecision:\n  - { listen: 127.0.0.1:9191, protocol: forward_auth }\n  - { listen: 127.0.0.1:9191, protocol: auth_request }\n",
            "already used",
        ),
        (
            "trusted_proxies: [127.0.0.1]\ndecision:\n  - { listen: nowhere, protocol: forward_auth }\n",
            "not an address",
        ),
        (
            "trusted_proxies: [127.0.0.1]\ndecision:\n  - { listen: 127.0.0.1:9191, protocol: ext_authz_http, strip_prefix: authz/ }\n",
            "not a path prefix",
        ),
        (
            "trusted_proxies: [127.0.0.1]\ndecision:\n  - { listen: 127.0.0.1:9191, protocol: opa }\n",
            "protocol",
        ),
    ];
    for (extra, expected) in cases {
        let mut options = Options::new("http://127.0.0.1:9");
        options.extra = extra.to_string();
        let config = write_config(&options);
        let errors = permgate::config::load(&config.gateway_path)
            .err()
            .unwrap_or_else(|| panic!("loaded: {extra}"));
        let text = errors.to_string();
        assert!(text.contains(expected), "{extra}: {text}");
    }
}

#[test]
fn the_readme_shows_what_permgate_integrate_prints() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    for proxy in ["nginx", "caddy"] {
        let printed = integrate(&[proxy]);
        assert!(
            readme.contains(&printed),
            "README.md's \"Behind your existing proxy\" must show `permgate integrate {proxy}` as it prints:\n{printed}"
        );
    }
}
