//! Live reload, end to end: the real gateway (proxy, admin listener, reloader) on port 0 in front of a real
//! upstream, with its config in a temp folder that the tests edit the ways operators, editors and
//! Kubernetes do. Decisions change live; bad configs are rejected whole and visibly; 100 swaps under load
//! fail no request; a rotated certificate is served; `SIGHUP` reloads the real binary.

use crate::common;
use crate::reload_support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use common::*;
use permgate::metrics::ReloadOutcome;
use permgate::reload::Trigger;
use reload_support::*;

fn zone_records(zone: &str) -> String {
    format!("/client/v4/zones/{zone}/dns_records")
}

const SETTINGS_PATH: &str = "/client/v4/zones/zone-1/settings";
const SETTINGS_ROUTE: &str = "
  - id: zone.settings
    method: GET
    path: /client/v4/zones/{zone_id}/settings
    permissions: [com.cloudflare.api.account.zone.dns-record.read]
    scope: { zone: zone_id }
";

/// (a) Through the file watcher: a token file, an account's `api_access`, a domain group and a route
/// file each change live decisions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edits_to_each_kind_of_file_change_live_decisions() {
    let upstream = start_upstream().await;
    let config = write_config(&Options::new(&upstream.url()));
    let root = config.dir.path().to_path_buf();
    let services = start_services(&config, WATCHED).await;
    // The watcher is up once the first check has run.
    wait_for_status(&services, |status| {
        status["watcher"]["healthy"] == true && status["last_reload"]["trigger"] == "start"
    })
    .await;
    let records = zone_records(ZONE);
    assert_eq!(call(&services, &records, TOKEN_READ).await, (200, 0));

    // An account's api_access: Joe's user token is cut off; the account token is not.
    edit(&root.join("accounts.yaml"), |text| {
        text.replacen(
            "    name: Example\n",
            "    name: Example\n    api_access: disabled\n",
            1,
        )
    });
    wait_for_generation(&services, 2).await;
    assert_eq!(call(&services, &records, TOKEN_READ).await, (403, 9109));
    assert_eq!(call(&services, &records, TOKEN_ACCOUNT).await, (200, 0));
    edit(&root.join("accounts.yaml"), |text| {
        text.replacen("    api_access: disabled\n", "", 1)
    });
    wait_for_generation(&services, 3).await;
    assert_eq!(call(&services, &records, TOKEN_READ).await, (200, 0));

    // A token file: the read token is disabled.
    edit(&root.join("tokens.yaml"), |text| {
        text.replacen("status: active", "status: disabled", 1)
    });
    wait_for_generation(&services, 4).await;
    assert_eq!(call(&services, &records, TOKEN_READ).await, (403, 1000));

    // A domain group: Joe's member policy is scoped by a group; adding zone-2 to it opens zone-2.
    edit(&root.join("accounts.yaml"), |text| {
        text.replacen(
            "      - { id: zone-2, name: other.example.com }\n",
            "      - { id: zone-2, name: other.example.com }\n    domain_groups:\n      - id: dg-joe\n        name: Joe's zones\n        zones: [zone-1]\n",
            1,
        )
        .replacen(
            "              - scope:\n                  key: com.cloudflare.api.account.acct-a\n                  objects: [{ key: com.cloudflare.api.account.zone.zone-1 }]\n",
            "              - id: dg-joe\n",
            1,
        )
    });
    wait_for_generation(&services, 5).await;
    let other = zone_records(OTHER_ZONE);
    assert_eq!(call_with_key(&services, &records).await, (200, 0));
    assert_eq!(call_with_key(&services, &other).await, (403, 10000));
    edit(&root.join("accounts.yaml"), |text| {
        text.replacen("zones: [zone-1]", "zones: [zone-1, zone-2]", 1)
    });
    wait_for_generation(&services, 6).await;
    assert_eq!(call_with_key(&services, &other).await, (200, 0));

    // A route file: a new route appears (no route, 400/7000, before).
    assert_eq!(
        call(&services, SETTINGS_PATH, TOKEN_WRITE).await,
        (400, 7000)
    );
    edit(&root.join("routes/test.yaml"), |text| text + SETTINGS_ROUTE);
    wait_for_generation(&services, 7).await;
    assert_eq!(call(&services, SETTINGS_PATH, TOKEN_WRITE).await, (200, 0));

    let status = status(&services).await;
    assert_eq!(status["last_reload"]["outcome"], "applied");
    assert_eq!(status["last_reload"]["trigger"], "watch");
    assert!(status["last_error"].is_null(), "{status:#}");
    services.stop().await;
}

/// (b) Editors' write-to-temp-and-rename, delete-and-recreate, and a new file in the routes folder.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renamed_and_recreated_files_apply() {
    let upstream = start_upstream().await;
    let config = write_config(&Options::new(&upstream.url()));
    let root = config.dir.path().to_path_buf();
    let services = start_services(&config, WATCHED).await;
    wait_for_status(&services, |status| status["watcher"]["healthy"] == true).await;
    let records = zone_records(ZONE);

    let tokens = std::fs::read_to_string(root.join("tokens.yaml")).unwrap();
    write_by_rename(
        &root.join("tokens.yaml"),
        &tokens.replacen("status: active", "status: disabled", 1),
    );
    wait_for_generation(&services, 2).await;
    assert_eq!(call(&services, &records, TOKEN_READ).await, (403, 1000));

    // Delete, then create again (as some tools do); the transient gap may be rejected, the end state applies.
    std::fs::remove_file(root.join("tokens.yaml")).unwrap();
    std::fs::write(root.join("tokens.yaml"), &tokens).unwrap();
    wait_for_status(&services, |status| {
        status["generation"].as_u64() >= Some(3) && status["last_error"].is_null()
    })
    .await;
    assert_eq!(call(&services, &records, TOKEN_READ).await, (200, 0));

    // A new file in a watched route folder.
    write_by_rename(
        &root.join("routes/settings.yaml"),
        &format!("routes:{SETTINGS_ROUTE}"),
    );
    wait_for_status(&services, |status| {
        status["counts"]["routes"].as_u64() == Some(8)
    })
    .await;
    assert_eq!(call(&services, SETTINGS_PATH, TOKEN_WRITE).await, (200, 0));
    services.stop().await;
}

/// (b) A Kubernetes ConfigMap volume: every file is a symlink through `..data`, which is swapped
/// atomically to a new timestamped folder.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configmap_data_symlink_swap_applies() {
    let upstream = start_upstream().await;
    let source = write_config(&Options::new(&upstream.url()));
    let mount = tempfile::tempdir().unwrap();
    let root = mount.path();
    // A ConfigMap is flat: the route folder becomes one file.
    let files = |tokens: &str| -> Vec<(&'static str, String)> {
        let read = |name: &str| std::fs::read_to_string(source.dir.path().join(name)).unwrap();
        vec![
            (
                "gateway.yaml",
                read("gateway.yaml").replace("route_files: [routes]", "route_files: [routes.yaml]"),
            ),
            ("permission_groups.yaml", read("permission_groups.yaml")),
            ("accounts.yaml", read("accounts.yaml")),
            ("tokens.yaml", tokens.to_string()),
            ("routes.yaml", read("routes/test.yaml")),
        ]
    };
    let tokens = std::fs::read_to_string(source.dir.path().join("tokens.yaml")).unwrap();
    let write_version = |name: &str, files: &[(&str, String)]| {
        std::fs::create_dir(root.join(name)).unwrap();
        for (file, text) in files {
            std::fs::write(root.join(name).join(file), text).unwrap();
        }
    };
    let first = files(&tokens);
    write_version("..2024_11_14_00_00_00.000000001", &first);
    std::os::unix::fs::symlink("..2024_11_14_00_00_00.000000001", root.join("..data")).unwrap();
    for (file, _) in &first {
        std::os::unix::fs::symlink(format!("..data/{file}"), root.join(file)).unwrap();
    }
    let config = TestConfig {
        dir: tempfile::tempdir().unwrap(),
        gateway_path: root.join("gateway.yaml"),
    };
    let services = start_services(&config, WATCHED).await;
    wait_for_status(&services, |status| status["watcher"]["healthy"] == true).await;
    let records = zone_records(ZONE);
    assert_eq!(call(&services, &records, TOKEN_READ).await, (200, 0));

    // What the kubelet does: write the new version, point `..data_tmp` at it, rename it over `..data`
    // (atomic), remove the old version.
    let second = files(&tokens.replacen("status: active", "status: disabled", 1));
    write_version("..2024_11_14_00_05_00.000000002", &second);
    std::os::unix::fs::symlink("..2024_11_14_00_05_00.000000002", root.join("..data_tmp")).unwrap();
    std::fs::rename(root.join("..data_tmp"), root.join("..data")).unwrap();
    std::fs::remove_dir_all(root.join("..2024_11_14_00_00_00.000000001")).unwrap();

    wait_for_generation(&services, 2).await;
    assert_eq!(call(&services, &records, TOKEN_READ).await, (403, 1000));
    let status = status(&services).await;
    assert!(status["last_error"].is_null(), "{status:#}");
    services.stop().await;
}

/// The serving state must not move while a config is rejected.
async fn assert_rejected(services: &permgate::cli::serve::Services, file: &str, generation: u64) {
    assert_eq!(
        services.reloader.reload_now(Trigger::Manual).await,
        ReloadOutcome::Rejected
    );
    let status = status(services).await;
    assert_eq!(status["generation"], generation, "{status:#}");
    assert_eq!(status["last_reload"]["outcome"], "rejected");
    assert_eq!(status["in_sync"], false);
    let error = status["last_error"].as_str().unwrap();
    // `file:line:column: path: message`: the file and the line are named.
    let located = format!("{file}:");
    let at = error
        .find(&located)
        .unwrap_or_else(|| panic!("{file} not named in {error:?}"));
    assert!(
        error[at + located.len()..].starts_with(|c: char| c.is_ascii_digit()),
        "no line after {file} in {error:?}"
    );
    assert!(
        status["errors"][0]["line"].is_u64(),
        "{:#}",
        status["errors"]
    );
    let text = metrics(services).await;
    assert_eq!(
        sample(&text, "permgate_config_last_reload_success", &[]),
        Some(0.0)
    );
    // The old decisions continue.
    assert_eq!(
        call(services, &zone_records(ZONE), TOKEN_READ).await,
        (200, 0)
    );
    // Reloading the same broken files again is not a new attempt at them.
    assert_eq!(
        services.reloader.reload_now(Trigger::Manual).await,
        ReloadOutcome::Unchanged
    );
    assert_eq!(status_success(services).await, Some(0.0));
}

async fn status_success(services: &permgate::cli::serve::Services) -> Option<f64> {
    sample(
        &metrics(services).await,
        "permgate_config_last_reload_success",
        &[],
    )
}

/// The broken file restored to what is served: `unchanged` (no phantom generation), in sync again.
async fn assert_fixed(services: &permgate::cli::serve::Services, generation: u64) {
    assert_eq!(
        services.reloader.reload_now(Trigger::Manual).await,
        ReloadOutcome::Unchanged
    );
    let status = status(services).await;
    assert_eq!(status["generation"], generation);
    assert!(status["last_error"].is_null(), "{status:#}");
    assert_eq!(status["in_sync"], true);
    assert_eq!(status_success(services).await, Some(1.0));
}

/// (c) Broken YAML, a dangling group reference and a zone in two accounts are each rejected whole; the
/// old decisions continue, the metric and `/status` show it, and fixing the file applies it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_configs_are_rejected_whole_and_visibly() {
    let upstream = start_upstream().await;
    let config = write_config(&Options::new(&upstream.url()));
    let root = config.dir.path().to_path_buf();
    let services = start_services(&config, MANUAL).await;
    let tokens_path = root.join("tokens.yaml");
    let accounts_path = root.join("accounts.yaml");
    let tokens = std::fs::read_to_string(&tokens_path).unwrap();
    let accounts = std::fs::read_to_string(&accounts_path).unwrap();

    // Broken YAML, together with a change that must not apply (the read token disabled).
    std::fs::write(
        &tokens_path,
        tokens.replacen("status: active", "status: disabled", 1) + "  - id: [broken\n",
    )
    .unwrap();
    assert_rejected(&services, "tokens.yaml", 1).await;
    std::fs::write(&tokens_path, &tokens).unwrap();
    assert_fixed(&services, 1).await;

    // A dangling permission-group reference.
    std::fs::write(
        &accounts_path,
        accounts.replacen("{ id: grp-dns-write }", "{ id: grp-missing }", 1),
    )
    .unwrap();
    assert_rejected(&services, "accounts.yaml", 1).await;
    std::fs::write(&accounts_path, &accounts).unwrap();
    assert_fixed(&services, 1).await;

    // A zone in two accounts.
    std::fs::write(
        &accounts_path,
        accounts.clone()
            + "  - id: acct-b\n    name: Other\n    zones:\n      - { id: zone-1, name: example.com }\n",
    )
    .unwrap();
    assert_rejected(&services, "accounts.yaml", 1).await;
    let errors = status(&services).await["last_error"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(errors.contains("zone-1"), "{errors}");
    std::fs::write(&accounts_path, &accounts).unwrap();
    assert_fixed(&services, 1).await;

    let text = metrics(&services).await;
    assert_eq!(
        sample(
            &text,
            "permgate_config_reloads_total",
            &[("outcome", "rejected")]
        ),
        Some(3.0)
    );
    // Three broken edits, each undone: the served content never changed, so neither did the generation.
    assert_eq!(sample(&text, "permgate_config_generation", &[]), Some(1.0));
    assert_eq!(
        sample(
            &text,
            "permgate_config_reloads_total",
            &[("outcome", "applied")]
        ),
        Some(0.0)
    );
    services.stop().await;
}

/// (d) 100 reloads alternating two valid configs under continuous concurrent load: no request fails, and
/// every answer is the answer of one of the two configs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_swaps_under_load_fail_no_request() {
    use http_body_util::{BodyExt, Empty};
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;

    let upstream = start_upstream().await;
    let config = write_config(&Options::new(&upstream.url()));
    let root = config.dir.path().to_path_buf();
    let services = start_services(&config, MANUAL).await;
    // Config A: the read token works, no settings route. Config B: the read token is disabled, and the
    // settings route exists. A request decided half by one and half by the other would see neither.
    let tokens_a = std::fs::read_to_string(root.join("tokens.yaml")).unwrap();
    let tokens_b = tokens_a.replacen("status: active", "status: disabled", 1);
    let routes_a = std::fs::read_to_string(root.join("routes/test.yaml")).unwrap();
    let routes_b = routes_a.clone() + SETTINGS_ROUTE;

    let stop = Arc::new(AtomicBool::new(false));
    let base = format!("http://{}", services.proxy.addr);
    let mut clients = Vec::new();
    for client in 0..4 {
        let stop = Arc::clone(&stop);
        let base = base.clone();
        clients.push(tokio::spawn(async move {
            let http: Client<_, Empty<bytes::Bytes>> =
                Client::builder(TokioExecutor::new()).build_http();
            let mut seen = std::collections::BTreeSet::new();
            let mut count = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let (path, token, allowed) = if (count + client).is_multiple_of(2) {
                    (zone_records(ZONE), TOKEN_READ, [200u16, 403])
                } else {
                    (SETTINGS_PATH.to_string(), TOKEN_WRITE, [400, 200])
                };
                let request = http::Request::get(format!("{base}{path}"))
                    .header("authorization", bearer(token))
                    .body(Empty::new())
                    .unwrap();
                let response = http
                    .request(request)
                    .await
                    .unwrap_or_else(|error| panic!("request {count} failed: {error}"));
                let status = response.status().as_u16();
                let _ = response.into_body().collect().await.unwrap();
                assert!(allowed.contains(&status), "{path}: {status}");
                seen.insert((path, status));
                count += 1;
            }
            (count, seen)
        }));
    }

    for round in 0..100 {
        let (tokens, routes) = if round % 2 == 0 {
            (&tokens_b, &routes_b)
        } else {
            (&tokens_a, &routes_a)
        };
        write_by_rename(&root.join("tokens.yaml"), tokens);
        write_by_rename(&root.join("routes/test.yaml"), routes);
        assert_eq!(
            services.reloader.reload_now(Trigger::Manual).await,
            ReloadOutcome::Applied,
            "round {round}"
        );
        // Let the clients see this config before the next swap.
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let mut total = 0;
    let mut seen = std::collections::BTreeSet::new();
    for client in clients {
        let (count, answers) = client.await.unwrap();
        total += count;
        seen.extend(answers);
    }
    assert_eq!(generation(&services), 101);
    assert!(total >= 100, "only {total} requests during the swaps");
    // Both configs answered during the run.
    assert!(seen.len() >= 3, "answers seen: {seen:?}");
    services.stop().await;
}

/// (d') Reloads that change the upstream URL, the routes (their order too) and a token, under load over
/// HTTP/1 (lent upstream connections) and HTTP/2 (the pooled client): every answer is wholly one
/// generation's. A request the old config allowed went to the old upstream, one the new config allowed to
/// the new upstream (found by its `X-Request-Id`), a refusal went nowhere; and each was counted under the
/// route label of the config that decided it (the route series are that generation's: in the second config
/// another route sits at the index of the first config's `dns.list`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answer_during_upstream_and_route_swaps_is_one_generations() {
    use http_body_util::{BodyExt, Empty};
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;

    let upstream_a = start_upstream().await;
    let upstream_b = start_upstream().await;
    let config = write_config(&Options::new(&upstream_a.url()));
    let root = config.dir.path().to_path_buf();
    let services = start_services(&config, MANUAL).await;
    // Config A: upstream A, the read token works, no settings route. Config B: upstream B, the read token is
    // disabled, and the settings route exists at the index `dns.list` has in A (which moves one on): a
    // request counted on the other generation's series would be counted under the other route's label.
    let gateway_a = std::fs::read_to_string(&config.gateway_path).unwrap();
    let gateway_b = gateway_a.replacen(&upstream_a.url(), &upstream_b.url(), 1);
    assert_ne!(gateway_a, gateway_b);
    let tokens_a = std::fs::read_to_string(root.join("tokens.yaml")).unwrap();
    let tokens_b = tokens_a.replacen("status: active", "status: disabled", 1);
    let routes_a = std::fs::read_to_string(root.join("routes/test.yaml")).unwrap();
    let routes_b = routes_a.replacen(
        "  - id: dns.list",
        &format!(
            "{}  - id: dns.list",
            SETTINGS_ROUTE.trim_start_matches('\n')
        ),
        1,
    );
    assert!(routes_b.find("zone.settings") < routes_b.find("dns.list"));

    let stop = Arc::new(AtomicBool::new(false));
    let base = format!("http://{}", services.proxy.addr);
    let mut clients = Vec::new();
    for client in 0..4u64 {
        let stop = Arc::clone(&stop);
        let base = base.clone();
        clients.push(tokio::spawn(async move {
            let mut builder = Client::builder(TokioExecutor::new());
            // Two clients speak HTTP/2 (prior knowledge), two HTTP/1.1.
            builder.http2_only(client % 2 == 1);
            let http: Client<_, Empty<bytes::Bytes>> = builder.build_http();
            let mut answers = Vec::new();
            let mut count = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let (path, token) = if (count + client).is_multiple_of(2) {
                    (zone_records(ZONE), TOKEN_READ)
                } else {
                    (SETTINGS_PATH.to_string(), TOKEN_WRITE)
                };
                let request = http::Request::get(format!("{base}{path}"))
                    .header("authorization", bearer(token))
                    .body(Empty::new())
                    .unwrap();
                let response = http
                    .request(request)
                    .await
                    .unwrap_or_else(|error| panic!("request {count} failed: {error}"));
                let status = response.status().as_u16();
                let id = response.headers()["x-request-id"]
                    .to_str()
                    .unwrap()
                    .to_string();
                let _ = response.into_body().collect().await.unwrap();
                answers.push((path, status, id));
                count += 1;
            }
            answers
        }));
    }

    for round in 0..60 {
        let (gateway, tokens, routes) = if round % 2 == 0 {
            (&gateway_b, &tokens_b, &routes_b)
        } else {
            (&gateway_a, &tokens_a, &routes_a)
        };
        write_by_rename(&config.gateway_path, gateway);
        write_by_rename(&root.join("tokens.yaml"), tokens);
        write_by_rename(&root.join("routes/test.yaml"), routes);
        assert_eq!(
            services.reloader.reload_now(Trigger::Manual).await,
            ReloadOutcome::Applied,
            "round {round}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let mut answers = Vec::new();
    for client in clients {
        answers.extend(client.await.unwrap());
    }
    assert_eq!(generation(&services), 61);

    let ids = |upstream: &Upstream| -> std::collections::HashSet<String> {
        upstream
            .requests()
            .iter()
            .map(|request| request.header("x-request-id").unwrap().to_string())
            .collect()
    };
    let (at_a, at_b) = (ids(&upstream_a), ids(&upstream_b));
    let mut counts = std::collections::BTreeMap::<(bool, u16), f64>::new();
    for (path, status, id) in &answers {
        let records = *path != SETTINGS_PATH;
        let went = (at_a.contains(id), at_b.contains(id));
        match (records, status) {
            // Allowed by config A only: upstream A.
            (true, 200) => assert_eq!(went, (true, false), "{path} {status} {id}"),
            // Allowed by config B only: upstream B.
            (false, 200) => assert_eq!(went, (false, true), "{path} {status} {id}"),
            // Refused by B (the token is disabled) or A (no route): nowhere.
            (true, 403) | (false, 400) => assert_eq!(went, (false, false), "{path} {status} {id}"),
            _ => panic!("{path}: unexpected {status}"),
        }
        *counts.entry((records, *status)).or_default() += 1.0;
    }
    assert_eq!(
        counts.len(),
        4,
        "both configs answered both paths: {counts:?}"
    );
    let text = metrics(&services).await;
    let counted = |route: &str, decision: &str, code: &str| {
        sample(
            &text,
            "permgate_requests_total",
            &[
                ("route", route),
                ("method", "GET"),
                ("decision", decision),
                ("code", code),
            ],
        )
        .unwrap_or(0.0)
    };
    assert_eq!(counted("dns.list", "allow", "200"), counts[&(true, 200)]);
    assert_eq!(counted("dns.list", "deny", "403"), counts[&(true, 403)]);
    assert_eq!(
        counted("zone.settings", "allow", "200"),
        counts[&(false, 200)]
    );
    assert_eq!(counted("none", "deny", "400"), counts[&(false, 400)]);
    services.stop().await;
}

/// (e) A certificate rotated on disk is served to new connections without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_certificate_is_served_without_restart() {
    use rustls::pki_types::ServerName;

    let first = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let second = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let upstream = start_upstream().await;
    let mut options = Options::new(&upstream.url());
    options.extra = "tls: { cert_file: tls/cert.pem, key_file: tls/key.pem }".into();
    let config = write_config(&options);
    let tls_dir = config.dir.path().join("tls");
    std::fs::create_dir(&tls_dir).unwrap();
    std::fs::write(tls_dir.join("cert.pem"), first.cert.pem()).unwrap();
    std::fs::write(tls_dir.join("key.pem"), first.signing_key.serialize_pem()).unwrap();
    let services = start_services(&config, WATCHED).await;
    wait_for_status(&services, |status| status["watcher"]["healthy"] == true).await;

    let mut roots = rustls::RootCertStore::empty();
    roots.add(first.cert.der().clone()).unwrap();
    roots.add(second.cert.der().clone()).unwrap();
    let client = Arc::new(
        rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth(),
    );
    let addr = services.proxy.addr;
    let served = || {
        let client = Arc::clone(&client);
        async move {
            let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
            let tls = tokio_rustls::TlsConnector::from(client)
                .connect(ServerName::try_from("localhost").unwrap(), tcp)
                .await
                .unwrap();
            tls.get_ref().1.peer_certificates().unwrap()[0].clone()
        }
    };
    assert_eq!(&served().await, first.cert.der());

    // Rotate: key and certificate replaced by rename, as cert-manager and editors do.
    write_by_rename(
        &tls_dir.join("key.pem"),
        &second.signing_key.serialize_pem(),
    );
    write_by_rename(&tls_dir.join("cert.pem"), &second.cert.pem());
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while &served().await != second.cert.der() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the rotated certificate was never served"
        );
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    let status = wait_for_status(&services, |status| status["last_error"].is_null()).await;
    assert!(status["generation"].as_u64() >= Some(2), "{status:#}");
    assert_eq!(status["restart_required"], serde_json::json!([]));
    services.stop().await;
}

/// (f) The real binary: `SIGHUP` reloads (and does not kill it); SIGTERM stops it cleanly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_running_binary() {
    let upstream = start_upstream().await;
    let config = write_config(&Options::new(&upstream.url()));
    let admin = free_port().await;
    edit(&config.gateway_path, |text| {
        text.replace(
            "admin_listen: 127.0.0.1:0",
            &format!("admin_listen: {admin}"),
        )
    });
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_permgate"))
        .args(["serve", "--config"])
        .arg(&config.gateway_path)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let pid = child.id().unwrap().to_string();
    let wait = |done: fn(&serde_json::Value) -> bool| async move {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            if let Some(status) = try_status(admin).await
                && done(&status)
            {
                return status;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the binary never reached the expected state"
            );
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
    };
    // Once the start check is recorded, the SIGHUP handler is installed.
    wait(|status| status["last_reload"]["trigger"] == "start").await;
    kill(&pid, "-HUP");
    let status = wait(|status| status["last_reload"]["trigger"] == "signal").await;
    assert_eq!(status["last_reload"]["outcome"], "unchanged");
    assert!(
        child.try_wait().unwrap().is_none(),
        "SIGHUP killed the gateway"
    );

    kill(&pid, "-TERM");
    let exit = tokio::time::timeout(DEADLINE, child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(exit.success(), "{exit:?}");
}

fn kill(pid: &str, signal: &str) {
    let status = std::process::Command::new("kill")
        .args([signal, pid])
        .status()
        .unwrap();
    assert!(status.success());
}

async fn free_port() -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap()
}

/// `/status` of a server that may not be listening yet.
async fn try_status(admin: std::net::SocketAddr) -> Option<serde_json::Value> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(admin).await.ok()?;
    stream
        .write_all(&request_bytes("GET", "/status", &[], ""))
        .await
        .ok()?;
    let mut bytes = Vec::new();
    tokio::time::timeout(DEADLINE, stream.read_to_end(&mut bytes))
        .await
        .ok()?
        .ok()?;
    serde_json::from_str(&parse_response(&bytes)?.body).ok()
}
