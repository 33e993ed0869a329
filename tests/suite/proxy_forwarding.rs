//! What the upstream receives (SPEC §7): the one canonical target, the gateway's identity headers, no
//! credentials, nothing spoofed; what is never forwarded; shadow mode.

use crate::common;

use common::*;

#[tokio::test]
async fn the_upstream_gets_the_canonical_target_and_the_gateway_identity() {
    let setup = setup(|_| {}).await;
    let response = send(
        setup.addr(),
        "GET",
        &format!("/client/v4/zones/{ZONE}/dns_records/rec%7E1%2d%41?b=%7E&a=1%2F"),
        &[
            ("Authorization", &bearer(TOKEN_READ)),
            ("Accept", "application/json"),
        ],
    )
    .await;
    assert_eq!(response.status, 200, "{}", response.body);
    assert_eq!(response.body, r#"{"ok":true}"#);
    let seen = setup.upstream.only_request();
    // Unreserved characters decoded in the path; the query byte for byte.
    assert_eq!(
        seen.target,
        format!("/client/v4/zones/{ZONE}/dns_records/rec~1-A?b=%7E&a=1%2F")
    );
    assert_eq!(seen.method, "GET");
    assert_eq!(seen.header("x-permgate-principal"), Some("user:user-joe"));
    assert_eq!(seen.header("x-permgate-token-id"), Some("tok-read"));
    assert_eq!(seen.header("x-permgate-account"), Some(ACCOUNT));
    assert_eq!(seen.header("x-forwarded-for"), Some("127.0.0.1"));
    assert_eq!(seen.header("x-forwarded-proto"), Some("http"));
    assert_eq!(seen.header("x-forwarded-host"), Some("gw.test"));
    assert_eq!(
        seen.header("host"),
        Some(setup.upstream.addr.to_string().as_str())
    );
    assert_eq!(seen.header("accept"), Some("application/json"));
    assert_eq!(
        seen.header("authorization"),
        None,
        "credentials are not forwarded by default"
    );
    // One request id, on both sides.
    let id = response.header("x-request-id").unwrap();
    assert_eq!(seen.header("x-request-id"), Some(id));
    // Response hygiene: the upstream's hop-by-hop headers stay behind, its own headers pass.
    assert_eq!(response.header("x-upstream"), Some("yes"));
    assert_eq!(response.header("x-upstream-private"), None);
    assert_eq!(response.header("keep-alive"), None);
}

#[tokio::test]
async fn spoofed_identity_and_forwarding_headers_never_reach_the_upstream() {
    let setup = setup(|_| {}).await;
    let response = send(
        setup.addr(),
        "GET",
        &records_path(),
        &[
            ("Authorization", &bearer(TOKEN_READ)),
            ("X-Permgate-Principal", "user:admin"),
            ("x-permgate-account", "someone-else"),
            ("X_PERMGATE_TOKEN_ID", "tok-admin"),
            ("x_permgate_principal", "user:admin"),
            ("X-Permgate-Extra", "1"),
            ("X-Forwarded-For", "198.51.100.1"),
            ("x_forwarded_for", "198.51.100.2"),
            ("X-Forwarded-Host", "evil.example"),
            ("X-Forwarded-Proto", "https"),
            ("X-Request-Id", "chosen-by-client"),
            ("x_auth_key", "smuggled"),
            // Naming the gateway's own header in Connection must not remove it, only the client's copy.
            ("Connection", "X-Permgate-Principal, X-Private"),
            ("X-Private", "hop"),
        ],
    )
    .await;
    assert_eq!(response.status, 200, "{}", response.body);
    let seen = setup.upstream.only_request();
    assert_eq!(
        seen.headers.get_all("x-permgate-principal").iter().count(),
        1
    );
    assert_eq!(seen.header("x-permgate-principal"), Some("user:user-joe"));
    assert_eq!(seen.header("x-permgate-account"), Some(ACCOUNT));
    assert_eq!(seen.header("x-permgate-token-id"), Some("tok-read"));
    for name in seen.headers.keys() {
        let normal = name.as_str().replace('_', "-");
        assert!(
            !normal.starts_with("x-permgate-")
                || [
                    "x-permgate-principal",
                    "x-permgate-account",
                    "x-permgate-token-id"
                ]
                .contains(&name.as_str()),
            "spoofed header {name} reached the upstream"
        );
        assert!(
            !name.as_str().contains('_') || !normal.starts_with("x-forwarded"),
            "{name} reached the upstream"
        );
    }
    assert_eq!(seen.header("x_auth_key"), None);
    assert_eq!(seen.header("x-forwarded-for"), Some("127.0.0.1"));
    assert_eq!(seen.header("x-forwarded-host"), Some("gw.test"));
    assert_eq!(seen.header("x-forwarded-proto"), Some("http"));
    assert_ne!(seen.header("x-request-id"), Some("chosen-by-client"));
    assert_eq!(seen.header("x-private"), None);
    assert_eq!(seen.header("connection"), None);
}

#[tokio::test]
async fn a_trusted_proxy_extends_x_forwarded_for() {
    let setup = setup(|options| options.extra = "trusted_proxies: [127.0.0.1/32]".into()).await;
    let response = send(
        setup.addr(),
        "GET",
        &records_path(),
        &[
            ("Authorization", &bearer(TOKEN_READ)),
            ("X-Forwarded-For", "203.0.113.9"),
            ("X-Forwarded-Proto", "https"),
            ("X-Request-Id", "edge-1234"),
        ],
    )
    .await;
    assert_eq!(response.status, 200, "{}", response.body);
    let seen = setup.upstream.only_request();
    assert_eq!(
        seen.header("x-forwarded-for"),
        Some("203.0.113.9, 127.0.0.1")
    );
    assert_eq!(seen.header("x-forwarded-proto"), Some("https"));
    assert_eq!(seen.header("x-request-id"), Some("edge-1234"));
    assert_eq!(response.header("x-request-id"), Some("edge-1234"));
}

#[tokio::test]
async fn credentials_pass_only_when_configured_and_account_tokens_are_named() {
    let setup = setup(|options| options.extra = "forward_credentials: true".into()).await;
    let response = send(
        setup.addr(),
        "GET",
        &records_path(),
        &[("Authorization", &bearer(TOKEN_ACCOUNT))],
    )
    .await;
    assert_eq!(response.status, 200, "{}", response.body);
    let seen = setup.upstream.only_request();
    assert_eq!(
        seen.header("authorization"),
        Some(bearer(TOKEN_ACCOUNT).as_str())
    );
    assert_eq!(seen.header("x-permgate-principal"), Some("account:acct-a"));
    assert_eq!(seen.header("x-permgate-token-id"), Some("tok-account"));
    assert_eq!(seen.header("x-permgate-account"), Some(ACCOUNT));
}

/// With `forward_credentials: true`, only credentials the gateway authenticated pass: a public route checks
/// none, so whatever credential a request to it carries (a real token, a made-up one, a legacy key) is
/// removed, as it would be without the setting; an upstream can never mistake an unchecked credential for a
/// checked one.
#[tokio::test]
async fn forwarded_credentials_are_only_ever_ones_the_gateway_authenticated() {
    let setup = setup(|options| options.extra = "forward_credentials: true".into()).await;
    for credential in [
        vec![("Authorization", bearer(TOKEN_READ))],
        vec![("Authorization", bearer("pgt_made_up"))],
        vec![("Authorization", "Basic dXNlcjpwYXNz".to_string())],
        vec![
            ("X-Auth-Email", JOE_EMAIL.to_string()),
            ("X-Auth-Key", JOE_KEY.to_string()),
        ],
    ] {
        let headers: Vec<(&str, &str)> = credential
            .iter()
            .map(|(name, value)| (*name, value.as_str()))
            .collect();
        let before = setup.upstream.requests().len();
        let response = send(setup.addr(), "GET", "/client/v4/ips", &headers).await;
        assert_eq!(response.status, 200, "{}", response.body);
        let seen = setup.upstream.wait_for(before + 1).await;
        let seen = &seen[before];
        for name in ["authorization", "x-auth-email", "x-auth-key"] {
            assert_eq!(
                seen.header(name),
                None,
                "{name} reached the upstream of a public route"
            );
        }
        assert_eq!(seen.header("x-permgate-principal"), None);
    }
    // The same token on a protected route is authenticated, so it passes.
    let response = send(
        setup.addr(),
        "GET",
        &records_path(),
        &[("Authorization", &bearer(TOKEN_READ))],
    )
    .await;
    assert_eq!(response.status, 200);
    let seen = setup.upstream.requests();
    assert_eq!(
        seen.last().unwrap().header("authorization"),
        Some(bearer(TOKEN_READ).as_str())
    );
}

#[tokio::test]
async fn legacy_keys_are_forwarded_as_their_user_without_a_token_id() {
    let setup = setup(|_| {}).await;
    let response = send(
        setup.addr(),
        "GET",
        &records_path(),
        &[("X-Auth-Email", JOE_EMAIL), ("X-Auth-Key", JOE_KEY)],
    )
    .await;
    assert_eq!(response.status, 200, "{}", response.body);
    let seen = setup.upstream.only_request();
    assert_eq!(seen.header("x-permgate-principal"), Some("user:user-joe"));
    assert_eq!(seen.header("x-permgate-token-id"), None);
    assert_eq!(seen.header("x-auth-key"), None);
    assert_eq!(seen.header("x-auth-email"), None);
}

#[tokio::test]
async fn request_bodies_stream_to_the_upstream() {
    let setup = setup(|_| {}).await;
    let body = r#"{"type":"A","name":"www","content":"192.0.2.1"}"#;
    let response = raw(
        setup.addr(),
        &request_bytes(
            "POST",
            &records_path(),
            &[
                ("Authorization", &bearer(TOKEN_WRITE)),
                ("Content-Type", "application/json"),
            ],
            body,
        ),
    )
    .await;
    assert_eq!(response.status, 200, "{}", response.body);
    let seen = setup.upstream.only_request();
    assert_eq!(seen.method, "POST");
    assert_eq!(&seen.body[..], body.as_bytes());

    // Chunked in, body intact out.
    let chunked = format!(
        "POST {} HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\nAuthorization: {}\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
        records_path(),
        bearer(TOKEN_WRITE)
    );
    let response = raw(setup.addr(), chunked.as_bytes()).await;
    assert_eq!(response.status, 200, "{}", response.body);
    let requests = setup.upstream.wait_for(2).await;
    assert_eq!(&requests[1].body[..], b"hello world");
}

#[tokio::test]
async fn rejected_targets_never_reach_the_upstream() {
    let setup = setup(|_| {}).await;
    let token = bearer(TOKEN_READ);
    let base = records_path();
    let targets = [
        format!("{base}/%2e%2e"),
        format!("{base}/.."),
        format!("{base}/./x"),
        format!("{base}/a%2Fb"),
        format!("{base}/a%2fb"),
        format!("{base}/a%5Cb"),
        format!("{base};x=1"),
        format!("{base}/a%3Bb"),
        format!("/client/v4/zones/{ZONE}//dns_records"),
        format!("{base}/a%00"),
        format!("{base}/a%0a"),
        format!("{base}/%zz"),
        format!("{base}/%e2%82"),
        format!("http://upstream.internal{base}"),
        format!("//upstream.internal{base}"),
        "*".to_string(),
        "upstream.internal:443".to_string(),
    ];
    for target in &targets {
        let response = send(setup.addr(), "GET", target, &[("Authorization", &token)]).await;
        assert_eq!(response.status, 400, "{target}: {}", response.body);
        // hyper itself refuses a few request lines before the gateway sees them (no body then).
        if !response.body.is_empty() {
            assert_eq!(response.code(), Some(6003), "{target}: {}", response.body);
        }
    }
    assert!(
        setup.upstream.requests().is_empty(),
        "{:#?}",
        setup.upstream.requests()
    );
}

#[tokio::test]
async fn ambiguous_framing_is_refused_and_never_forwarded() {
    let setup = setup(|_| {}).await;
    let token = bearer(TOKEN_WRITE);
    let target = records_path();
    let cases = [
        format!(
            "POST {target} HTTP/1.1\r\nHost: gw.test\r\nAuthorization: {token}\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
        ),
        format!(
            "POST {target} HTTP/1.1\r\nHost: gw.test\r\nAuthorization: {token}\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!"
        ),
        format!(
            "POST {target} HTTP/1.1\r\nHost: gw.test\r\nAuthorization: {token}\r\nContent-Length: 5, 6\r\n\r\nhello!"
        ),
        format!(
            "POST {target} HTTP/1.1\r\nHost: gw.test\r\nAuthorization: {token}\r\nContent-Length: +5\r\n\r\nhello"
        ),
        format!(
            "POST {target} HTTP/1.1\r\nHost: gw.test\r\nAuthorization: {token}\r\nContent-Length: 0x5\r\n\r\nhello"
        ),
        format!(
            "POST {target} HTTP/1.1\r\nHost: gw.test\r\nAuthorization: {token}\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n"
        ),
    ];
    for case in &cases {
        let out = raw_exchange(setup.addr(), case.as_bytes()).await;
        let response = parse_response(&out);
        let status = response.as_ref().map_or(0, |response| response.status);
        // Either hyper refuses it (400, or it closes the connection) or the gateway does (400/6003).
        assert!(status == 400 || status == 0, "{case:?} got {status}");
        if let Some(response) = response.filter(|response| !response.body.is_empty()) {
            assert_eq!(response.code(), Some(6003), "{case:?}: {}", response.body);
            assert_eq!(response.header("connection"), Some("close"), "{case:?}");
        }
    }
    assert!(
        setup.upstream.requests().is_empty(),
        "{:#?}",
        setup.upstream.requests()
    );
}

#[tokio::test]
async fn shadow_mode_forwards_a_would_be_denial_but_not_a_rejected_target() {
    let setup = setup(|options| options.extra = "mode: shadow".into()).await;
    let response = send(
        setup.addr(),
        "POST",
        &records_path(),
        &[("Authorization", &bearer(TOKEN_READ))],
    )
    .await;
    assert_eq!(response.status, 200, "{}", response.body);
    let seen = setup.upstream.only_request();
    assert_eq!(seen.method, "POST");
    assert_eq!(seen.header("x-permgate-principal"), Some("user:user-joe"));

    let rejected = send(
        setup.addr(),
        "GET",
        &format!("{}/%2e%2e", records_path()),
        &[("Authorization", &bearer(TOKEN_READ))],
    )
    .await;
    assert_eq!((rejected.status, rejected.code()), (400, Some(6003)));
    assert_eq!(setup.upstream.requests().len(), 1);
}

#[tokio::test]
async fn public_routes_forward_without_identity() {
    let setup = setup(|_| {}).await;
    let response = send(setup.addr(), "GET", "/client/v4/ips", &[]).await;
    assert_eq!(response.status, 200, "{}", response.body);
    let seen = setup.upstream.only_request();
    assert_eq!(seen.header("x-permgate-principal"), None);
    assert_eq!(seen.header("x-permgate-account"), None);
    assert!(seen.header("x-request-id").is_some());
}
