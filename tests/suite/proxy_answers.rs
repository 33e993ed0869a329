//! Every row of SPEC §5 through the real gateway: status, code and the exact envelope, and that a refused
//! request never reaches the upstream.

use crate::common;

use std::time::{Duration, Instant};

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Sends `GET records` with `headers` and checks status, exact body, JSON type and request id.
async fn expect(
    setup: &Setup,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    status: u16,
    body: &str,
) {
    let response = send(setup.addr(), method, target, headers).await;
    assert_eq!(
        response.status, status,
        "{method} {target} {headers:?}: {}",
        response.body
    );
    assert_eq!(response.body, body, "{method} {target} {headers:?}");
    assert_eq!(response.header("content-type"), Some("application/json"));
    let id = response
        .header("x-request-id")
        .expect("every answer has X-Request-Id");
    assert_eq!(id.len(), 32);
}

#[tokio::test]
async fn every_refusal_row_of_the_answer_table_has_its_exact_envelope() {
    let setup = setup(|options| options.explain_denials = false).await;
    let records = records_path();
    let bearer_read = bearer(TOKEN_READ);
    let rejected = (6003, "Invalid request headers");

    // 400/9106: no credential on a protected route.
    expect(
        &setup,
        "GET",
        &records,
        &[],
        400,
        &envelope(
            9106,
            "Missing X-Auth-Key, X-Auth-Email or Authorization headers",
            None,
        ),
    )
    .await;
    // 400/6003 + 6111: not a Bearer token; and both kinds of credential at once.
    let malformed_authorization = envelope(
        rejected.0,
        rejected.1,
        Some((6111, "Invalid format for Authorization header")),
    );
    expect(
        &setup,
        "GET",
        &records,
        &[("Authorization", "Basic dXNlcjpwYXNz")],
        400,
        &malformed_authorization,
    )
    .await;
    expect(
        &setup,
        "GET",
        &records,
        &[
            ("Authorization", &bearer_read),
            ("X-Auth-Email", JOE_EMAIL),
            ("X-Auth-Key", JOE_KEY),
        ],
        400,
        &malformed_authorization,
    )
    .await;
    // 400/6003 + 6102: an X-Auth-Email that is not an email.
    expect(
        &setup,
        "GET",
        &records,
        &[("X-Auth-Email", "not-an-email"), ("X-Auth-Key", JOE_KEY)],
        400,
        &envelope(
            rejected.0,
            rejected.1,
            Some((6102, "Invalid format for X-Auth-Email header")),
        ),
    )
    .await;
    // 400/6003 + 6103: a key that is not in a global API key's format (37 lower-case hex characters), checked
    // before any lookup, as Cloudflare does.
    for key in ["wrong_key", "0123456789ABCDEF0123456789ABCDEF01234"] {
        expect(
            &setup,
            "GET",
            &records,
            &[("X-Auth-Email", JOE_EMAIL), ("X-Auth-Key", key)],
            400,
            &envelope(
                rejected.0,
                rejected.1,
                Some((6103, "Invalid format for X-Auth-Key header")),
            ),
        )
        .await;
    }
    // 400/6003 + 6103: X-Auth-Email without X-Auth-Key.
    expect(
        &setup,
        "GET",
        &records,
        &[("X-Auth-Email", JOE_EMAIL)],
        400,
        &envelope(
            rejected.0,
            rejected.1,
            Some((6103, "Invalid format for X-Auth-Key header")),
        ),
    )
    .await;
    // 400/6003 + 6100: a rejected target, and a method-override header.
    expect(
        &setup,
        "GET",
        &format!("/client/v4/zones/{ZONE}/%2e%2e/dns_records"),
        &[("Authorization", &bearer_read)],
        400,
        &envelope(
            rejected.0,
            rejected.1,
            Some((
                6100,
                "dot segment (. or .., raw or percent-encoded) in path",
            )),
        ),
    )
    .await;
    expect(
        &setup,
        "GET",
        &records,
        &[
            ("Authorization", &bearer_read),
            ("X-HTTP-Method-Override", "DELETE"),
        ],
        400,
        &envelope(
            rejected.0,
            rejected.1,
            Some((
                6100,
                "method-override header X-HTTP-Method-Override is not allowed",
            )),
        ),
    )
    .await;
    // 403/1000: unknown and disabled tokens.
    let invalid_token = envelope(1000, "Invalid API Token", None);
    expect(
        &setup,
        "GET",
        &records,
        &[("Authorization", "Bearer pgt_nobody_has_this")],
        403,
        &invalid_token,
    )
    .await;
    expect(
        &setup,
        "GET",
        &records,
        &[("Authorization", &bearer(TOKEN_DISABLED))],
        403,
        &invalid_token,
    )
    .await;
    // 403/9103: unknown legacy key.
    expect(
        &setup,
        "GET",
        &records,
        &[
            ("X-Auth-Email", JOE_EMAIL),
            ("X-Auth-Key", "0123456789abcdef0123456789abcdef01234"),
        ],
        403,
        &envelope(9103, "Unknown X-Auth-Key or X-Auth-Email", None),
    )
    .await;
    // 403/9109: client IP outside the token's condition (the test client is 127.0.0.1).
    expect(
        &setup,
        "GET",
        &records,
        &[("Authorization", &bearer(TOKEN_IP))],
        403,
        &envelope(
            9109,
            "Cannot use the access token from location: 127.0.0.1",
            None,
        ),
    )
    .await;
    // 403/9109: API access disabled for the member.
    expect(
        &setup,
        "GET",
        &records,
        &[("Authorization", &bearer(TOKEN_DAVE))],
        403,
        &envelope(9109, "API access is disabled for this account member", None),
    )
    .await;
    // 403/10000: missing permission (a read token POSTs), out-of-scope zone, unknown zone.
    let auth_error = envelope(10000, "Authentication error", None);
    expect(
        &setup,
        "POST",
        &records,
        &[("Authorization", &bearer_read)],
        403,
        &auth_error,
    )
    .await;
    expect(
        &setup,
        "GET",
        &format!("/client/v4/zones/{OTHER_ZONE}/dns_records"),
        &[("Authorization", &bearer_read)],
        403,
        &auth_error,
    )
    .await;
    expect(
        &setup,
        "GET",
        "/client/v4/zones/zone-unknown/dns_records",
        &[("Authorization", &bearer_read)],
        403,
        &auth_error,
    )
    .await;
    // 400/7000 (Cloudflare's own answer): no route, with or without a credential, a path that exists only
    // for other methods, and a method no route has.
    let no_route = envelope(7000, "No route for that URI", None);
    expect(
        &setup,
        "GET",
        "/client/v4/no/such/route",
        &[],
        400,
        &no_route,
    )
    .await;
    expect(
        &setup,
        "DELETE",
        &records,
        &[("Authorization", &bearer_read)],
        400,
        &no_route,
    )
    .await;
    expect(
        &setup,
        "PURGE",
        &records,
        &[("Authorization", &bearer_read)],
        400,
        &no_route,
    )
    .await;

    assert!(
        setup.upstream.requests().is_empty(),
        "a refused request reached the upstream"
    );

    // Allowed, for contrast: the same token reads.
    let response = send(
        setup.addr(),
        "GET",
        &records,
        &[("Authorization", &bearer_read)],
    )
    .await;
    assert_eq!(response.status, 200, "{}", response.body);
    assert_eq!(setup.upstream.requests().len(), 1);
}

#[tokio::test]
async fn explained_denials_carry_the_reason_and_nothing_else_changes() {
    let setup = setup(|_| {}).await;
    let response = send(
        setup.addr(),
        "POST",
        &records_path(),
        &[("Authorization", &bearer(TOKEN_READ))],
    )
    .await;
    assert_eq!(response.status, 403);
    let json: serde_json::Value = serde_json::from_str(&response.body).unwrap();
    assert_eq!(json["success"], false);
    assert_eq!(json["errors"][0]["code"], 10000);
    assert_eq!(json["errors"][0]["message"], "Authentication error");
    let chain = &json["errors"][0]["error_chain"][0];
    assert_eq!(chain["code"], 10000);
    let reason = chain["message"].as_str().unwrap();
    assert!(reason.contains("dns-record.create"), "{reason}");
    assert!(
        !response.body.contains(TOKEN_READ),
        "a secret leaked into the answer"
    );
}

/// "Is this token valid for account X?" gets a yes only for X's own tokens (it used to answer "active" for a
/// user token, another account's token and an account that does not exist); the user path verifies only
/// user-owned tokens; `scope: none` verifies any token. (Another account's token on an account's path is among
/// the decision cases, `tests/cases/scopes.yaml`, whose config has two accounts.)
#[tokio::test]
async fn verify_answers_only_for_tokens_owned_as_the_path_says() {
    let setup = setup(|_| {}).await;
    let invalid = r#"{"success":false,"errors":[{"code":1000,"message":"Invalid API Token","#;
    for (path, token, allowed) in [
        (
            format!("/client/v4/accounts/{ACCOUNT}/tokens/verify"),
            TOKEN_ACCOUNT,
            true,
        ),
        (
            format!("/client/v4/accounts/{ACCOUNT}/tokens/verify"),
            TOKEN_READ,
            false,
        ),
        (
            "/client/v4/accounts/no-such-account/tokens/verify".to_string(),
            TOKEN_ACCOUNT,
            false,
        ),
        (
            "/client/v4/user/tokens/verify".to_string(),
            TOKEN_ACCOUNT,
            false,
        ),
        (
            "/client/v4/user/tokens/verify".to_string(),
            TOKEN_READ,
            true,
        ),
        ("/client/v4/tokens/verify".to_string(), TOKEN_ACCOUNT, true),
        ("/client/v4/tokens/verify".to_string(), TOKEN_READ, true),
    ] {
        let response = send(
            setup.addr(),
            "GET",
            &path,
            &[("Authorization", &bearer(token))],
        )
        .await;
        if allowed {
            assert_eq!(response.status, 200, "{path} {token}: {}", response.body);
            assert!(
                response.body.contains(r#""status":"active""#),
                "{}",
                response.body
            );
        } else {
            assert_eq!(response.status, 403, "{path} {token}: {}", response.body);
            assert!(
                response.body.starts_with(invalid),
                "{path} {token}: {}",
                response.body
            );
            assert_eq!(response.code(), Some(1000));
        }
    }
    for path in [
        format!("/client/v4/accounts/{ACCOUNT}/tokens/verify"),
        "/client/v4/tokens/verify".to_string(),
    ] {
        let legacy = send(
            setup.addr(),
            "GET",
            &path,
            &[("X-Auth-Email", JOE_EMAIL), ("X-Auth-Key", JOE_KEY)],
        )
        .await;
        assert_eq!((legacy.status, legacy.code()), (400, Some(1001)), "{path}");
    }
    assert!(
        setup.upstream.requests().is_empty(),
        "verify is answered by the gateway"
    );
}

#[tokio::test]
async fn verify_reports_the_presented_token() {
    let setup = setup(|_| {}).await;
    let response = send(
        setup.addr(),
        "GET",
        "/client/v4/user/tokens/verify",
        &[("Authorization", &bearer(TOKEN_DATED))],
    )
    .await;
    assert_eq!(response.status, 200, "{}", response.body);
    assert_eq!(
        response.body,
        r#"{"success":true,"errors":[],"messages":[{"code":10000,"message":"This API Token is valid and active","type":null}],"result":{"id":"tok-dated","status":"active","not_before":"2020-01-01T00:00:00Z","expires_on":"2099-01-01T00:00:00Z"}}"#
    );
    let plain = send(
        setup.addr(),
        "GET",
        "/client/v4/user/tokens/verify",
        &[("Authorization", &bearer(TOKEN_READ))],
    )
    .await;
    assert!(
        plain
            .body
            .ends_with(r#""result":{"id":"tok-read","status":"active"}}"#),
        "{}",
        plain.body
    );
    // A disabled token is refused like anywhere else.
    let disabled = send(
        setup.addr(),
        "GET",
        "/client/v4/user/tokens/verify",
        &[("Authorization", &bearer(TOKEN_DISABLED))],
    )
    .await;
    assert_eq!((disabled.status, disabled.code()), (403, Some(1000)));
    // A legacy key is not a token: Cloudflare's verify routes read only `Authorization`.
    let legacy = send(
        setup.addr(),
        "GET",
        "/client/v4/user/tokens/verify",
        &[("X-Auth-Email", JOE_EMAIL), ("X-Auth-Key", JOE_KEY)],
    )
    .await;
    assert_eq!(
        (legacy.status, legacy.body.as_str()),
        (
            400,
            envelope(1001, "Missing \"Authorization\" header", None).as_str()
        )
    );
    assert!(
        setup.upstream.requests().is_empty(),
        "verify is answered by the gateway"
    );
}

#[tokio::test]
async fn an_unreachable_upstream_is_502_1200_promptly() {
    let closed = closed_port().await;
    let config = write_config(&Options::new(&format!("http://{closed}")));
    let gateway = start_gateway(&config).await;
    let started = Instant::now();
    let response = send(
        gateway.addr,
        "GET",
        &records_path(),
        &[("Authorization", &bearer(TOKEN_READ))],
    )
    .await;
    assert_eq!(response.status, 502);
    assert_eq!(response.body, envelope(1200, "Upstream unavailable", None));
    assert!(response.header("x-request-id").is_some());
    // Connect timeout is 2 s; a refused port must not take longer than that plus slack.
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "took {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn an_upstream_that_never_accepts_is_cut_by_the_connect_timeout() {
    // A listener whose accept queue is full drops further SYNs, so a connect to it hangs until the
    // gateway's connect timeout (an "unroutable address" would depend on the network the tests run in).
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let blackhole = socket.listen(1).unwrap();
    let addr = blackhole.local_addr().unwrap();
    let mut fillers = Vec::new();
    for _ in 0..8 {
        match tokio::time::timeout(Duration::from_millis(200), TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => fillers.push(stream),
            _ => break,
        }
    }
    let config = write_config(&Options {
        connect_timeout_ms: 300,
        ..Options::new(&format!("http://{addr}"))
    });
    let gateway = start_gateway(&config).await;
    let started = Instant::now();
    let response = send(
        gateway.addr,
        "GET",
        &records_path(),
        &[("Authorization", &bearer(TOKEN_READ))],
    )
    .await;
    assert_eq!(
        (response.status, response.code()),
        (502, Some(1200)),
        "{}",
        response.body
    );
    assert!(
        started.elapsed() < Duration::from_millis(300) + Duration::from_secs(2),
        "took {:?}",
        started.elapsed()
    );
    drop((fillers, blackhole));
}

#[tokio::test]
async fn a_slow_upstream_is_504_1201_at_the_response_timeout() {
    let setup = setup(|options| options.response_timeout_ms = 300).await;
    let started = Instant::now();
    let response = send(
        setup.addr(),
        "GET",
        &format!("{}/slow?ms=5000", records_path()),
        &[("Authorization", &bearer(TOKEN_READ))],
    )
    .await;
    assert_eq!(response.status, 504);
    assert_eq!(response.body, envelope(1201, "Upstream timed out", None));
    assert!(
        started.elapsed() < Duration::from_millis(300) + Duration::from_secs(2),
        "took {:?}",
        started.elapsed()
    );
    assert!(started.elapsed() >= Duration::from_millis(300));
}

#[tokio::test]
async fn over_the_connection_limit_is_503_1202() {
    let setup = setup(|options| options.max_connections = 1).await;
    // The first connection completes a keep-alive exchange and stays open: it holds the only slot.
    let mut first = TcpStream::connect(setup.addr()).await.unwrap();
    first
        .write_all(b"GET /client/v4/ips HTTP/1.1\r\nHost: gw.test\r\n\r\n")
        .await
        .unwrap();
    let mut buffer = vec![0u8; 4096];
    let n = tokio::time::timeout(PATIENCE, first.read(&mut buffer))
        .await
        .unwrap()
        .unwrap();
    assert!(String::from_utf8_lossy(&buffer[..n]).starts_with("HTTP/1.1 200"));

    let response = send(setup.addr(), "GET", "/client/v4/ips", &[]).await;
    assert_eq!(response.status, 503);
    assert_eq!(response.body, envelope(1202, "Gateway overloaded", None));
    assert_eq!(response.header("connection"), Some("close"));

    // Once the first connection is gone, the slot is free again.
    drop(first);
    let deadline = Instant::now() + PATIENCE;
    loop {
        let response = send(setup.addr(), "GET", "/client/v4/ips", &[]).await;
        if response.status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "the slot was never released");
        // No signal exists for "the server saw the close"; poll briefly.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A route's `principals:` leave a kind of credential out: with `principal_refusal` the gateway answers as the
/// API does (Cloudflare's `GET /accounts` refuses account-owned tokens with 400/1001), without it 403/10000
/// with the reason; the other kinds pass, and nothing refused reaches the upstream.
#[tokio::test]
async fn a_route_refuses_the_kinds_of_credential_its_principals_leave_out() {
    let upstream = start_upstream().await;
    let config = write_config(&Options::new(&upstream.url()));
    std::fs::write(
        config.dir.path().join("routes/principals.yaml"),
        r##"
routes:
  - id: accounts.list
    method: GET
    path: /client/v4/accounts
    scope: none
    principals: [user_token, api_key]
    principal_refusal: { status: 400, code: 1001, message: "List accounts endpoint does not support account owned tokens." }
  - id: pagerules.list
    method: GET
    path: /client/v4/zones/{zone_id}/pagerules
    permissions: [com.cloudflare.api.account.zone.dns-record.list]
    scope: { zone: zone_id }
    principals: [user_token, api_key]
  - id: tokens.only
    method: GET
    path: /client/v4/zones/{zone_id}/tokens-only
    permissions: [com.cloudflare.api.account.zone.dns-record.list]
    scope: { zone: zone_id }
    principals: [user_token, account_token]
"##,
    )
    .unwrap();
    let setup = Setup {
        gateway: start_gateway(&config).await,
        upstream,
        config,
    };
    let account = bearer(TOKEN_ACCOUNT);
    let user = bearer(TOKEN_READ);
    let legacy = [("X-Auth-Email", JOE_EMAIL), ("X-Auth-Key", JOE_KEY)];
    expect(
        &setup,
        "GET",
        "/client/v4/accounts",
        &[("Authorization", &account)],
        400,
        &envelope(
            1001,
            "List accounts endpoint does not support account owned tokens.",
            None,
        ),
    )
    .await;
    // Without a route's own answer: 403/10000, with the reason when explaining.
    let pagerules = format!("/client/v4/zones/{ZONE}/pagerules");
    expect(
        &setup,
        "GET",
        &pagerules,
        &[("Authorization", &account)],
        403,
        &envelope(
            10000,
            "Authentication error",
            Some((10000, "this route does not accept account-owned tokens")),
        ),
    )
    .await;
    expect(
        &setup,
        "GET",
        &format!("/client/v4/zones/{ZONE}/tokens-only"),
        &legacy,
        403,
        &envelope(
            10000,
            "Authentication error",
            Some((10000, "this route does not accept legacy API keys")),
        ),
    )
    .await;
    // The credential is checked before its kind: an unknown token is still 1000.
    expect(
        &setup,
        "GET",
        "/client/v4/accounts",
        &[("Authorization", &bearer("pgt_never_issued"))],
        403,
        &envelope(
            1000,
            "Invalid API Token",
            Some((1000, "no token has this secret")),
        ),
    )
    .await;
    assert!(
        setup.upstream.requests().is_empty(),
        "a refused request reached the upstream"
    );

    // The kinds the routes accept pass.
    for headers in [vec![("Authorization", user.as_str())], legacy.to_vec()] {
        let response = send(setup.addr(), "GET", "/client/v4/accounts", &headers).await;
        assert_eq!(response.status, 200, "{headers:?}: {}", response.body);
        let response = send(setup.addr(), "GET", &pagerules, &headers).await;
        assert_eq!(response.status, 200, "{headers:?}: {}", response.body);
    }
    let response = send(
        setup.addr(),
        "GET",
        &format!("/client/v4/zones/{ZONE}/tokens-only"),
        &[("Authorization", &account)],
    )
    .await;
    assert_eq!(response.status, 200, "{}", response.body);
    let seen: Vec<String> = setup
        .upstream
        .requests()
        .iter()
        .map(|request| request.target.clone())
        .collect();
    assert_eq!(
        seen,
        [
            "/client/v4/accounts".to_string(),
            pagerules.clone(),
            "/client/v4/accounts".to_string(),
            pagerules,
            format!("/client/v4/zones/{ZONE}/tokens-only"),
        ]
    );
}
