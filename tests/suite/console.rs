//! The admin console without a browser: the real binary serves a copy of the shipped config (with a real
//! upstream); its pages, assets and JSON documents are fetched over HTTP and checked for what a user relies
//! on — status, headers (CSP, nosniff, no-referrer), the generation and hash on every page, a real denial
//! in Recent denials, answers equal to the CLI's, no secret or any part of a secret hash anywhere,
//! `admin.token_file` (401 without the token, on every admin path) and `admin.console: off` (404).
use crate::common;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use common::{RawResponse, ShippedGateway, bearer, send, sha256_hex, start_upstream};

/// Joe's DNS-read token of the shipped config (a published demo secret), and its zone.
const DEMO_TOKEN: &str = "pgt_demo_joe_dns_read";
const DEMO_ZONE: &str = "b1fbb152bbde3bd28919a7f4bdca841f";
const AT: &str = "2026-01-01T00:00:00Z";

const PAGES: [&str; 6] = [
    "/console/",
    "/console/traffic",
    "/console/denials",
    "/console/routes",
    "/console/who-can",
    "/console/why-denied",
];

async fn get(admin: SocketAddr, target: &str) -> RawResponse {
    tokio::time::timeout(Duration::from_secs(20), send(admin, "GET", target, &[]))
        .await
        .unwrap()
}

async fn status(admin: SocketAddr) -> serde_json::Value {
    serde_json::from_str(&get(admin, "/status").await.body).unwrap()
}

fn records() -> String {
    format!("/client/v4/zones/{DEMO_ZONE}/dns_records")
}

/// The CLI's stdout for `args`, as JSON.
fn cli_json(args: &[&str]) -> serde_json::Value {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_permgate"))
        .args(args)
        .output()
        .unwrap();
    serde_json::from_slice(&output.stdout).unwrap_or_else(|error| {
        panic!(
            "{args:?}: {error}: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

fn assert_secure(response: &RawResponse, what: &str) {
    let csp = response.header("content-security-policy").unwrap_or("");
    assert!(csp.contains("default-src 'self'"), "{what}: {csp}");
    assert!(csp.contains("frame-ancestors 'none'"), "{what}: {csp}");
    assert!(!csp.contains("unsafe-inline"), "{what}: {csp}");
    assert_eq!(
        response.header("x-content-type-options"),
        Some("nosniff"),
        "{what}"
    );
    assert_eq!(
        response.header("referrer-policy"),
        Some("no-referrer"),
        "{what}"
    );
}

/// Every `href="…"` and `src="…"` of a page that stays on the admin listener.
fn local_links(html: &str) -> Vec<String> {
    let mut links = Vec::new();
    for attribute in ["href=\"", "src=\""] {
        for piece in html.split(attribute).skip(1) {
            let link = piece.split('"').next().unwrap().replace("&amp;", "&");
            if link.starts_with('/') {
                links.push(link);
            }
        }
    }
    links
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_page_is_served_with_strict_headers_the_generation_and_the_hash() {
    let upstream = start_upstream().await;
    let served = ShippedGateway::start(&upstream.url()).await;
    let admin = served.admin;
    let root = get(admin, "/").await;
    assert_eq!(root.status, 302);
    assert_eq!(root.header("location"), Some("/console/"));
    let status = status(admin).await;
    let hash = status["content_hash"].as_str().unwrap();
    for page in PAGES {
        let response = get(admin, page).await;
        assert_eq!(response.status, 200, "{page}");
        assert_eq!(
            response.header("content-type"),
            Some("text/html; charset=utf-8")
        );
        assert_secure(&response, page);
        let body = &response.body;
        assert!(
            body.contains(&hash[..16]),
            "{page}: the content hash is shown"
        );
        assert!(
            body.contains("<strong id=\"pg-generation\">1</strong>"),
            "{page}"
        );
        // Every page links to every other, with ordinary links.
        for other in PAGES {
            assert!(
                body.contains(&format!("href=\"{other}\"")),
                "{page} → {other}"
            );
        }
        // Nothing the CSP would block: no inline script, no style attribute, no inline handler.
        assert!(!body.contains("<script>"), "{page}");
        assert!(!body.contains(" style="), "{page}");
        assert!(!body.contains(" onclick="), "{page}");
        assert!(body.contains("<script src=\"/console/assets/console.js\" defer></script>"));
    }
    for (asset, content_type) in [
        (
            "/console/assets/console.js",
            "text/javascript; charset=utf-8",
        ),
        ("/console/assets/console.css", "text/css; charset=utf-8"),
        ("/console/assets/favicon.svg", "image/svg+xml"),
    ] {
        let response = get(admin, asset).await;
        assert_eq!(response.status, 200, "{asset}");
        assert_eq!(response.header("content-type"), Some(content_type));
        assert_secure(&response, asset);
    }
    let missing = get(admin, "/console/no-such-page").await;
    assert_eq!(missing.status, 404);
    assert_secure(&missing, "404");
    // Read-only: only GET and HEAD.
    let post = send(admin, "POST", "/console/why-denied", &[]).await;
    assert_eq!(post.status, 405);
    // /status and /metrics keep their answers (with the same headers).
    let metrics = get(admin, "/metrics").await;
    assert_eq!(metrics.status, 200);
    assert_secure(&metrics, "/metrics");

    // The routes page searches the route table.
    let routes: serde_json::Value =
        serde_json::from_str(&get(admin, "/console/api/routes?q=dns_records").await.body).unwrap();
    let found = routes["routes"].as_array().unwrap();
    assert!(!found.is_empty());
    assert!(
        found
            .iter()
            .all(|route| route["path"].as_str().unwrap().contains("dns_records")),
        "{routes:#}"
    );
    assert!(found.len() < routes["total"].as_u64().unwrap() as usize);
    let page = get(admin, "/console/routes?q=dns_records").await.body;
    assert!(page.contains(&format!("{} of {} routes", found.len(), routes["total"])));
    served.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_denial_appears_in_recent_denials_with_its_reason() {
    let upstream = start_upstream().await;
    let served = ShippedGateway::start(&upstream.url()).await;
    let admin = served.admin;
    // Joe's read token cannot create records: 403, through the proxy.
    let denied = send(
        served.listen,
        "POST",
        &records(),
        &[("Authorization", &bearer(DEMO_TOKEN))],
    )
    .await;
    assert_eq!(denied.status, 403, "{}", denied.body);
    let allowed = send(
        served.listen,
        "GET",
        &records(),
        &[("Authorization", &bearer(DEMO_TOKEN))],
    )
    .await;
    assert_eq!(allowed.status, 200);

    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let denials = loop {
        let document: serde_json::Value =
            serde_json::from_str(&get(admin, "/console/api/denials").await.body).unwrap();
        if document["kept"].as_u64() > Some(0) {
            break document;
        }
        assert!(tokio::time::Instant::now() < deadline, "no denial recorded");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(denials["recording"], true);
    assert_eq!(denials["kept"], 1, "only the denial is kept: {denials:#}");
    let line = &denials["denials"][0];
    assert_eq!(line["method"], "POST");
    assert_eq!(line["path"], records());
    assert_eq!(line["route"], "dns_records.create");
    assert_eq!(line["decision"], "deny");
    assert_eq!(line["status"], 403);
    let reason = line["reason"].as_str().unwrap();
    assert!(reason.contains("dns"), "{reason}");
    let token_id = line["token_id"].as_str().unwrap();

    // Filters: by token id, route and reason; a filter that matches nothing shows nothing.
    for (query, expected) in [
        (format!("token_id={token_id}"), 1),
        ("route=dns_records.create".to_string(), 1),
        ("reason=NO+SUCH+REASON".to_string(), 0),
        ("token_id=other".to_string(), 0),
    ] {
        let document: serde_json::Value = serde_json::from_str(
            &get(admin, &format!("/console/api/denials?{query}"))
                .await
                .body,
        )
        .unwrap();
        assert_eq!(
            document["denials"].as_array().unwrap().len(),
            expected,
            "{query}"
        );
    }
    let page = get(admin, "/console/denials?route=dns").await.body;
    let mut escaped = String::new();
    for character in reason.chars() {
        match character {
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            other => escaped.push(other),
        }
    }
    assert!(page.contains(&escaped), "{page}");
    // Its why? link is the Why denied? form for the same request as the same token, which denies it again.
    let why = local_links(&page)
        .into_iter()
        .find(|link| link.starts_with("/console/why-denied?"))
        .unwrap();
    assert!(why.contains(&format!("token_id={token_id}")), "{why}");
    let again = get(admin, &why).await.body;
    assert!(again.contains("id=\"pg-decision\">deny</p>"), "{again}");
    served.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn who_can_explain_and_why_denied_answer_exactly_as_the_cli() {
    let upstream = start_upstream().await;
    let served = ShippedGateway::start(&upstream.url()).await;
    let admin = served.admin;
    let config = served.gateway.to_str().unwrap().to_string();
    let path = records();

    let console: serde_json::Value = serde_json::from_str(
        &get(
            admin,
            &format!("/console/api/who-can?method=GET&path={path}&at={AT}&blocked=on"),
        )
        .await
        .body,
    )
    .unwrap();
    let cli = cli_json(&[
        "access",
        "who-can",
        "--config",
        &config,
        "--at",
        AT,
        "--blocked",
        "--json",
        "GET",
        &path,
    ]);
    assert_eq!(console, cli);
    assert!(!cli["allowed"].as_array().unwrap().is_empty());

    let token_id = cli["allowed"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|holder| holder["credential"]["token_id"].as_str())
        .unwrap()
        .to_string();
    let console: serde_json::Value = serde_json::from_str(
        &get(
            admin,
            &format!("/console/api/explain?token_id={token_id}&at={AT}"),
        )
        .await
        .body,
    )
    .unwrap();
    let cli = cli_json(&[
        "access",
        "explain",
        "--config",
        &config,
        "--token-id",
        &token_id,
        "--at",
        AT,
        "--json",
    ]);
    assert_eq!(console, cli);

    for method in ["GET", "POST"] {
        let console: serde_json::Value = serde_json::from_str(
            &get(
                admin,
                &format!(
                    "/console/api/check?method={method}&path={path}&token_id={token_id}&ip=127.0.0.1&at={AT}"
                ),
            )
            .await
            .body,
        )
        .unwrap();
        let cli = cli_json(&[
            "check",
            "--config",
            &config,
            "--token-id",
            &token_id,
            "--at",
            AT,
            "--json",
            method,
            &path,
        ]);
        assert_eq!(console, cli, "{method}");
    }

    // The pages show the same: each allowed credential of the who-can answer is on the page.
    let page = get(
        admin,
        &format!("/console/who-can?method=GET&path={path}&at={AT}"),
    )
    .await
    .body;
    let who: serde_json::Value = cli_json(&[
        "access", "who-can", "--config", &config, "--at", AT, "--json", "GET", &path,
    ]);
    for holder in who["allowed"].as_array().unwrap() {
        let credential = &holder["credential"];
        let label = match credential["token_id"].as_str() {
            Some(id) => format!("token {id}"),
            None => format!(
                "legacy key of {}",
                credential["owner"]["email"].as_str().unwrap()
            ),
        };
        assert!(page.contains(&label), "{label}");
    }
    assert!(page.contains(&format!(
        "Allowed ({})",
        who["allowed"].as_array().unwrap().len()
    )));
    // A bad question is an error on the page, not a 500.
    let bad = get(admin, "/console/who-can?method=GET&path=/no/such/route").await;
    assert_eq!(bad.status, 200);
    assert!(bad.body.contains("class=\"error\""), "{}", bad.body);
    let bad = get(admin, "/console/api/who-can?method=GET&path=/no/such/route").await;
    assert_eq!(bad.status, 400);
    served.stop().await;
}

/// Every 64-hex-digit string of the config's files: the secret hashes (token and API-key SHA-256s).
fn secret_hashes(dir: &Path) -> BTreeSet<String> {
    let mut hashes = BTreeSet::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            hashes.extend(secret_hashes(&path));
            continue;
        }
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        let bytes = text.as_bytes();
        let mut start = 0;
        while start < bytes.len() {
            let run = bytes[start..]
                .iter()
                .take_while(|byte| byte.is_ascii_hexdigit())
                .count();
            if run == 64 {
                hashes.insert(text[start..start + 64].to_lowercase());
            }
            start += run.max(1);
        }
    }
    hashes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_or_any_part_of_a_secret_hash_is_served() {
    let upstream = start_upstream().await;
    let served = ShippedGateway::start(&upstream.url()).await;
    let admin = served.admin;
    // Traffic of every kind first, so the denials, counters and change records are not empty.
    for (method, token) in [
        ("GET", DEMO_TOKEN),
        ("POST", DEMO_TOKEN),
        ("GET", "pgt_wrong"),
    ] {
        send(
            served.listen,
            method,
            &records(),
            &[("Authorization", &bearer(token))],
        )
        .await;
    }
    let hashes = secret_hashes(&served.dir.path().join("config"));
    assert!(hashes.len() >= 5, "{hashes:?}");
    assert!(hashes.contains(&sha256_hex(DEMO_TOKEN)));
    // Crawl: every page and everything it links to on the admin listener, plus the JSON documents.
    let token_ids = cli_json(&[
        "access",
        "who-can",
        "--config",
        served.gateway.to_str().unwrap(),
        "--blocked",
        "--json",
        "GET",
        &records(),
    ]);
    let mut queue: Vec<String> = PAGES.iter().map(ToString::to_string).collect();
    for holder in token_ids["allowed"].as_array().unwrap() {
        if let Some(id) = holder["credential"]["token_id"].as_str() {
            queue.push(format!("/console/who-can?token_id={id}&blocked=on"));
            queue.push(format!("/console/api/explain?token_id={id}&blocked=on"));
            queue.push(format!(
                "/console/why-denied?method=GET&path={}&token_id={id}",
                records()
            ));
        }
    }
    queue.extend(
        [
            "/console/api/live",
            "/console/api/traffic",
            "/console/api/denials",
            "/console/api/routes",
            "/status",
            "/metrics",
        ]
        .map(String::from),
    );
    queue.push(format!(
        "/console/api/who-can?method=GET&path={}&blocked=on",
        records()
    ));
    let mut seen = BTreeSet::new();
    while let Some(target) = queue.pop() {
        if !seen.insert(target.clone()) || seen.len() > 400 {
            continue;
        }
        let response = get(admin, &target).await;
        assert!(response.status < 400, "{target}: {}", response.status);
        let body = response.body.to_lowercase();
        assert!(!body.contains(&DEMO_TOKEN.to_lowercase()), "{target}");
        assert!(!body.contains("pgt_wrong"), "{target}");
        for hash in &hashes {
            for window in 0..=(64 - 12) {
                let part = &hash[window..window + 12];
                assert!(
                    !body.contains(part),
                    "{target} shows part of a secret hash ({part})"
                );
            }
        }
        if response
            .header("content-type")
            .is_some_and(|kind| kind.starts_with("text/html"))
        {
            queue.extend(local_links(&response.body));
        }
    }
    assert!(seen.len() > 20, "{seen:?}");
    served.stop().await;
}

/// Replaces `from` (which must be there once) in the file at `path`.
fn replace(path: &Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(path).unwrap();
    assert_eq!(text.matches(from).count(), 1, "{from}");
    std::fs::write(path, text.replacen(from, to, 1)).unwrap();
}

/// The real binary on a copy of the shipped config, with `console: on` replaced by `admin` and `files`
/// written into its config folder first.
async fn start_with_admin(upstream: &str, admin: &str, files: &[(&str, String)]) -> ShippedGateway {
    let dir = tempfile::tempdir().unwrap();
    let gateway = common::copy_shipped(dir.path());
    replace(&gateway, "  console: on ", &format!("{admin}\n "));
    for (name, content) in files {
        std::fs::write(dir.path().join("config").join(name), content).unwrap();
    }
    ShippedGateway::start_in(dir, upstream).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_file_protects_every_admin_path() {
    let upstream = start_upstream().await;
    let secret = "pga_console_test_secret";
    let served = start_with_admin(
        &upstream.url(),
        "  console: on\n  token_file: admin_token.sha256",
        &[("admin_token.sha256", format!("{}\n", sha256_hex(secret)))],
    )
    .await;
    let token_file = served.dir.path().join("config/admin_token.sha256");
    let admin = served.admin;
    for path in [
        "/metrics",
        "/status",
        "/healthz",
        "/console/",
        "/console/api/live",
        "/",
    ] {
        let refused = get(admin, path).await;
        assert_eq!(refused.status, 401, "{path}");
        assert!(
            refused.headers.iter().any(|(name, value)| name
                .eq_ignore_ascii_case("www-authenticate")
                && value.starts_with("Basic ")),
            "{path}"
        );
        assert!(!refused.body.contains(&sha256_hex(secret)[..12]));
        let wrong = send(admin, "GET", path, &[("Authorization", "Bearer pga_wrong")]).await;
        assert_eq!(wrong.status, 401, "{path}");
        let allowed = send(admin, "GET", path, &[("Authorization", &bearer(secret))]).await;
        assert!(
            allowed.status == 200 || allowed.status == 302,
            "{path}: {}",
            allowed.status
        );
    }
    // A browser's Basic auth: any user name, the token as the password.
    use base64::Engine as _;
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("admin:{secret}"))
    );
    let page = send(admin, "GET", "/console/", &[("Authorization", &basic)]).await;
    assert_eq!(page.status, 200);
    // The file is read at each request: a rotated hash applies at once.
    std::fs::write(&token_file, sha256_hex("pga_rotated")).unwrap();
    let old = send(
        admin,
        "GET",
        "/status",
        &[("Authorization", &bearer(secret))],
    )
    .await;
    assert_eq!(old.status, 401);
    let new = send(
        admin,
        "GET",
        "/status",
        &[("Authorization", &bearer("pga_rotated"))],
    )
    .await;
    assert_eq!(new.status, 200);
    // A file that no longer holds a hash refuses everyone (fail closed).
    std::fs::write(&token_file, "oops").unwrap();
    let broken = send(
        admin,
        "GET",
        "/status",
        &[("Authorization", &bearer("pga_rotated"))],
    )
    .await;
    assert_eq!(broken.status, 503);
    // The proxy listener never asks for it (nor serves the console).
    let proxied = send(served.listen, "GET", "/console/", &[]).await;
    assert_eq!(proxied.status, 400);
    served.stop().await;
}

#[tokio::test]
async fn a_token_file_that_holds_no_hash_is_a_config_error() {
    let staging = tempfile::tempdir().unwrap();
    let gateway = common::copy_shipped(staging.path());
    replace(
        &gateway,
        "  console: on ",
        "  token_file: admin_token.sha256\n ",
    );
    std::fs::write(
        staging.path().join("config/admin_token.sha256"),
        "pga_secret_itself\n",
    )
    .unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_permgate"))
        .args(["validate", "--config"])
        .arg(&gateway)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).to_string()
        + &String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("admin.token_file"), "{stderr}");
    assert!(stderr.contains("[E010]"), "{stderr}");
    assert!(!stderr.contains("pga_secret_itself"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_off_makes_every_console_url_404_and_keeps_the_rest() {
    let upstream = start_upstream().await;
    let served = start_with_admin(&upstream.url(), "  console: off", &[]).await;
    let admin = served.admin;
    for path in [
        "/",
        "/console/",
        "/console/traffic",
        "/console/api/live",
        "/console/assets/console.js",
    ] {
        assert_eq!(get(admin, path).await.status, 404, "{path}");
    }
    assert_eq!(get(admin, "/status").await.status, 200);
    assert_eq!(get(admin, "/metrics").await.status, 200);
    served.stop().await;
}
