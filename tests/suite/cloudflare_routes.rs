//! The shipped real route table, routes/cloudflare-v4.yaml: it loads without conflicts, every route matches a
//! path built from its own template and resolves the right scope and resource id, it is exactly what the
//! importer makes of Cloudflare's spec (so it cannot drift from its generator), and the Cloudflare example
//! config grants every key it requires. Read groups read: no group of the shipped catalog named "… Read"
//! holds a write key or a pattern, and none passes a write route but the POSTs that Cloudflare's spec
//! annotates with read keys only. Load and match times are measured by the ignored `timing` test
//! (`cargo test --release --test suite cloudflare_routes:: -- --ignored --nocapture`), never asserted.

use std::path::{Path, PathBuf};
use std::time::Instant;

use std::collections::BTreeMap;

use permgate::config::SourceFile;
use permgate::config::compile::routes;
use permgate::openapi::render::{Provenance, render};
use permgate::openapi::{Catalog, ImportOptions, Spec, import};
use permgate::policy::actions::{self, KeyAction};
use permgate::policy::model::GroupInfo;
use permgate::policy::{KeyInterner, KeyPattern};
use permgate::routes::{Requirement, Route, RouteTable, Scope};
use permgate::snapshot::Snapshot;

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

const TABLE: &str = "routes/cloudflare-v4.yaml";
const SPEC: &str = "config/cloudflare/source/openapi-2024-08-06.json";
const SUPPLEMENT: &str = "config/cloudflare/openapi-supplement.json";
const CATALOG: &str = "config/cloudflare/permission_groups.yaml";

fn load_table() -> RouteTable {
    let file = SourceFile::read(&repo(TABLE)).unwrap();
    match routes::compile(&[file], &mut KeyInterner::new()) {
        Ok(table) => table,
        Err(errors) => panic!(
            "{TABLE} does not load:\n{}",
            errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        ),
    }
}

/// A concrete path for a route pattern: each `{param}` becomes `v<n>-<param>` (unique, so it can only
/// match a parameter, never a static sibling), a catch-all two segments.
fn sample_path(pattern: &str) -> (String, Vec<(String, String)>) {
    let mut path = String::new();
    let mut values = Vec::new();
    let mut rest = pattern;
    while let Some(open) = rest.find('{') {
        path.push_str(&rest[..open]);
        let close = open + rest[open..].find('}').unwrap();
        let name = &rest[open + 1..close];
        let value = match name.strip_prefix('*') {
            Some(name) => format!("v{}-{name}/more", values.len()),
            None => format!("v{}-{name}", values.len()),
        };
        path.push_str(&value);
        values.push((name.trim_start_matches('*').to_string(), value));
        rest = &rest[close + 1..];
    }
    path.push_str(rest);
    (path, values)
}

fn methods(route: &Route) -> Vec<String> {
    route
        .methods
        .split(", ")
        .map(|method| {
            if method == "*" {
                "GET".to_string()
            } else {
                method.to_string()
            }
        })
        .collect()
}

#[test]
fn the_table_loads_without_conflicts() {
    let table = load_table();
    assert!(
        table.len() > 650,
        "{} routes: fewer than the spec's annotated operations",
        table.len()
    );
}

#[test]
fn every_route_matches_a_path_built_from_its_template_and_resolves_its_scope() {
    let table = load_table();
    let mut checked = 0;
    for route in table.routes() {
        let (path, values) = sample_path(&route.pattern);
        for method in methods(route) {
            let found = table.lookup(&method, &path).unwrap_or_else(|| {
                panic!("{method} {path} (from {}) matches no route", route.pattern)
            });
            assert_eq!(
                found.route.pattern, route.pattern,
                "{method} {path} matched another route"
            );
            let value_of = |param: &str| {
                values
                    .iter()
                    .find(|(name, _)| name == param)
                    .map(|(_, value)| value.as_str())
            };
            // The resource is the first parameter, right after /accounts/ or /zones/, whatever it is called.
            let tail = route.pattern.strip_prefix("/client/v4").unwrap();
            match &route.scope {
                Scope::Zone { param } => {
                    assert!(tail.starts_with(&format!("/zones/{{{param}}}")), "{tail}");
                    assert_eq!(found.resource_id, value_of(param), "{method} {path}");
                }
                Scope::Account { param } => {
                    assert!(
                        tail.starts_with(&format!("/accounts/{{{param}}}")),
                        "{tail}"
                    );
                    assert_eq!(found.resource_id, value_of(param), "{method} {path}");
                }
                Scope::Child {
                    kind,
                    param,
                    parent,
                    parent_param,
                } => {
                    // Only R2 buckets: their account, then the bucket right after /r2/buckets/.
                    assert_eq!(&**kind, "r2_bucket", "{tail}");
                    assert_eq!(parent.as_str(), "account");
                    assert!(
                        tail.starts_with(&format!(
                            "/accounts/{{{parent_param}}}/r2/buckets/{{{param}}}"
                        )),
                        "{tail}"
                    );
                    assert_eq!(found.resource_id, value_of(param), "{method} {path}");
                    assert_eq!(found.parent_id, value_of(parent_param), "{method} {path}");
                }
                Scope::User => {
                    assert!(
                        tail == "/user"
                            || tail.starts_with("/user/")
                            || tail.starts_with("/radar/"),
                        "{tail} is scope user"
                    );
                    assert_eq!(found.resource_id, None);
                }
                Scope::Any => panic!("{tail}: no collection of the shipped table is scope any"),
                Scope::None => {
                    assert_eq!(found.resource_id, None);
                    let known = ["/zones", "/accounts", "/ips"];
                    assert!(known.contains(&tail), "{tail} needs no permission");
                }
            }
            checked += 1;
        }
    }
    assert!(checked >= table.len());
}

#[test]
fn token_verify_is_answered_by_the_gateway_for_user_and_account_tokens() {
    let table = load_table();
    // Each verify path answers for the tokens its path names: the user path for user-owned tokens, an
    // account's path for that account's own tokens (never `scope: none`, which would verify any token).
    let user = table
        .lookup("GET", "/client/v4/user/tokens/verify")
        .unwrap();
    assert_eq!(user.route.scope, Scope::User);
    assert!(user.route.handler.is_some());
    let account = table
        .lookup(
            "GET",
            "/client/v4/accounts/01a7362d577a6c3019a474fd6f485823/tokens/verify",
        )
        .unwrap();
    assert!(
        matches!(&account.route.scope, Scope::Account { param } if &**param == "account_id"),
        "{:?}",
        account.route.scope
    );
    assert_eq!(
        account.resource_id,
        Some("01a7362d577a6c3019a474fd6f485823")
    );
    assert!(account.route.handler.is_some());
    // The verify paths are not swallowed by the token-id routes beside them.
    let details = table
        .lookup(
            "GET",
            "/client/v4/user/tokens/ed17574386854bf78a67040be0a770b0",
        )
        .unwrap();
    assert!(details.route.handler.is_none());
    assert!(table.lookup("GET", "/client/v4/ips").unwrap().route.public);
}

/// Cloudflare refuses account-owned tokens on `GET /accounts` (400/1001) and on page rules (400/1011): the
/// shipped table says so (the supplement's overlays), and the Cloudflare example answers as the API does,
/// while a user token and a legacy key still pass.
#[test]
fn account_tokens_get_cloudflares_own_answers_where_cloudflare_refuses_them() {
    use http::{HeaderMap, HeaderValue};
    use permgate::pipeline::{Facts, decide};
    let snapshot = cloudflare_snapshot();
    let zone = "023e105f4ecef8ad9ca31a8372d0c353";
    let decide_with = |method: &str, path: &str, headers: &[(&str, &str)]| {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.insert(
                http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        let verdict = decide(
            &snapshot,
            &Facts {
                method,
                target: path,
                headers: &map,
                peer_ip: "127.0.0.1".parse().unwrap(),
                now: 1_700_000_000,
            },
        );
        let message = match &verdict.outcome {
            Ok(()) => String::new(),
            Err(refusal) => refusal.body(true),
        };
        (verdict.status(), verdict.code(), message)
    };
    let account_token = [("authorization", "Bearer pgt_cf_demo_example_ci")];
    let (status, code, body) = decide_with("GET", "/client/v4/accounts", &account_token);
    assert_eq!((status, code), (400, 1001));
    assert_eq!(
        body,
        r#"{"success":false,"errors":[{"code":1001,"message":"List accounts endpoint does not support account owned tokens."}],"messages":[],"result":null}"#
    );
    let pagerule = format!("/client/v4/zones/{zone}/pagerules/p1");
    for (method, path) in [
        ("GET", format!("/client/v4/zones/{zone}/pagerules")),
        ("POST", format!("/client/v4/zones/{zone}/pagerules")),
        ("GET", format!("/client/v4/zones/{zone}/pagerules/settings")),
        ("GET", pagerule.clone()),
        ("PUT", pagerule.clone()),
        ("PATCH", pagerule.clone()),
        ("DELETE", pagerule.clone()),
    ] {
        let (status, code, body) = decide_with(method, &path, &account_token);
        assert_eq!((status, code), (400, 1011), "{method} {path}");
        assert!(
            body.contains(
                r#""message":"Page Rules endpoint does not support account owned tokens.""#
            ),
            "{body}"
        );
    }
    // A user token and the legacy key pass (Joe's broad token holds #zone:read and #zone:edit).
    let user_token = [("authorization", "Bearer pgt_cf_demo_joe_zone_write")];
    assert_eq!(
        decide_with("GET", "/client/v4/accounts", &user_token).0,
        200
    );
    assert_eq!(decide_with("PATCH", &pagerule, &user_token).0, 200);
    let legacy = [
        ("x-auth-email", "joe.smith@example.com"),
        ("x-auth-key", "d59b4880e7df3af1e51d50abc4ee3d2db1780"),
    ];
    assert_eq!(decide_with("GET", "/client/v4/accounts", &legacy).0, 200);
    assert_eq!(decide_with("DELETE", &pagerule, &legacy).0, 200);
    // Everywhere else the account token is what its policies say (DNS Read on its account's zones).
    assert_eq!(
        decide_with(
            "GET",
            &format!("/client/v4/zones/{zone}/dns_records"),
            &account_token
        )
        .0,
        200
    );
}

/// Workers KV key names are percent-encoded in the path (the spec: "Use percent-encoding to define key names as
/// part of a URL"), so the importer declares them opaque: `%2F` passes there, as received, and nowhere else.
#[test]
fn workers_kv_key_names_are_opaque_and_nothing_else_is() {
    let table = load_table();
    let opaque: Vec<(String, String, Vec<String>)> = table
        .routes()
        .iter()
        .filter(|route| !route.opaque.is_empty())
        .map(|route| {
            (
                route.methods.to_string(),
                route.pattern.to_string(),
                route
                    .opaque
                    .iter()
                    .map(|param| param.name.to_string())
                    .collect(),
            )
        })
        .collect();
    let kv = "/client/v4/accounts/{account_id}/storage/kv/namespaces/{namespace_id}";
    let key = vec!["key_name".to_string()];
    assert_eq!(
        opaque,
        [
            (
                "GET".to_string(),
                format!("{kv}/metadata/{{key_name}}"),
                key.clone()
            ),
            (
                "GET".to_string(),
                format!("{kv}/values/{{key_name}}"),
                key.clone()
            ),
            (
                "PUT".to_string(),
                format!("{kv}/values/{{key_name}}"),
                key.clone()
            ),
            (
                "DELETE".to_string(),
                format!("{kv}/values/{{key_name}}"),
                key
            ),
        ]
    );
    let account = "01a7362d577a6c3019a474fd6f485823";
    let values = format!(
        "/client/v4/accounts/{account}/storage/kv/namespaces/0f2ac74b498b48028cb68387c421e279/values"
    );
    for method in ["GET", "PUT", "DELETE"] {
        let path = format!("{values}/images%2Fcat.png");
        let mut target = permgate::routes::canonicalize_request(method, &path).unwrap();
        let found = table
            .route_request(method, &mut target, &path)
            .unwrap()
            .unwrap();
        assert_eq!(found.resource_id, Some(account), "{method}");
        assert_eq!(target.path, path, "forwarded byte for byte");
    }
    let elsewhere = format!("/client/v4/accounts/{account}/storage/kv/namespaces/a%2Fb/values/k");
    let mut target = permgate::routes::canonicalize_request("GET", &elsewhere).unwrap();
    assert_eq!(
        table
            .route_request("GET", &mut target, &elsewhere)
            .map(|found| found.is_some()),
        Err(permgate::routes::TargetRejection::EncodedSlash)
    );
}

#[test]
fn the_importer_reproduces_the_committed_table_byte_for_byte() {
    let spec_path = repo(SPEC);
    assert!(
        spec_path.exists(),
        "{} is missing: the vendored Cloudflare data lives in config/cloudflare/source",
        spec_path.display()
    );
    let specs: Vec<Spec> = [SPEC, SUPPLEMENT]
        .iter()
        .map(|path| Spec {
            label: Path::new(path)
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned(),
            document: serde_json::from_str(&std::fs::read_to_string(repo(path)).unwrap()).unwrap(),
        })
        .collect();
    let catalog = Catalog::from_policy_file(&SourceFile::read(&repo(CATALOG)).unwrap()).unwrap();
    let imported = import(
        &specs,
        &ImportOptions {
            prefix: "/client/v4".to_string(),
            catalog: Some(catalog),
        },
    );
    let text = render(
        &imported,
        &Provenance {
            specs: specs.iter().map(|spec| spec.label.clone()).collect(),
            prefix: "/client/v4".to_string(),
            catalog: Some("permission_groups.yaml".to_string()),
        },
    )
    .unwrap();
    let committed = std::fs::read_to_string(repo(TABLE)).unwrap();
    if text != committed {
        let line = text
            .lines()
            .zip(committed.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(text.lines().count().min(committed.lines().count()));
        panic!(
            "{TABLE} differs from the importer's output from line {}: regenerate it (README: Importing an \
             OpenAPI spec)\n  generated: {:?}\n  committed: {:?}",
            line + 1,
            text.lines().nth(line),
            committed.lines().nth(line)
        );
    }
    // Every operation is accounted for: imported or skipped with a reason.
    assert_eq!(imported.routes.len() + imported.skipped.len(), 1533 + 15);
    assert!(
        imported
            .notes
            .iter()
            .all(|note| !note.contains("does not grant")),
        "a group the spec lists does not pass its route: {:?}",
        imported.notes
    );
}

#[test]
fn the_cloudflare_example_config_loads_and_grants_every_route_key() {
    let set = permgate::config::read(&repo("config/cloudflare/gateway.yaml")).unwrap();
    let snapshot = permgate::config::compile(&set, 1, 1_700_000_000).unwrap();
    assert_eq!(snapshot.policy.groups.len(), 311, "the 311 real groups");
    let warnings = permgate::cli::validate::warnings(&snapshot, 1_700_000_000);
    let ungranted: Vec<String> = warnings
        .iter()
        .map(ToString::to_string)
        .filter(|warning| warning.contains("no permission group grants"))
        .collect();
    assert!(ungranted.is_empty(), "{ungranted:#?}");
}

/// The actions that change state, in both key styles (`#resource:ACTION`, `com.cloudflare.….ACTION`): no group
/// named "… Read" may hold a key with one of them. The list is decided here, so that the test does not
/// depend on the code it checks; the code's list (src/policy/actions.rs) must agree (checked below).
const WRITE_ACTIONS: [&str; 14] = [
    "create", "update", "edit", "write", "delete", "purge", "publish", "batch", "revoke", "deploy",
    "import", "upload", "run", "execute",
];

/// The actions that only read.
const READ_ACTIONS: [&str; 3] = ["read", "list", "report"];

/// The one documented exception: opening a log tail only streams a script's logs to the caller, and
/// Cloudflare's "Workers Tail Read" group exists for it, so that group holds `worker.tail.create`.
const TAIL_EXCEPTION: (&str, &str) = (
    "Workers Tail Read",
    "com.cloudflare.edge.worker.tail.create",
);

/// The action word of a key: after the `:` of `#resource:action`, else after the last `.`.
fn action_of(key: &str) -> &str {
    match key.strip_prefix('#') {
        Some(legacy) => legacy.rsplit_once(':').map_or("", |(_, action)| action),
        None => key.rsplit_once('.').map_or(key, |(_, action)| action),
    }
}

fn writes(key: &str) -> bool {
    WRITE_ACTIONS.contains(&action_of(key))
}

fn only_reads(key: &str) -> bool {
    READ_ACTIONS.contains(&action_of(key)) || key == TAIL_EXCEPTION.1
}

fn is_read_group(group: &GroupInfo) -> bool {
    group.name.ends_with(" Read")
}

fn cloudflare_snapshot() -> Snapshot {
    let set = permgate::config::read(&repo("config/cloudflare/gateway.yaml")).unwrap();
    permgate::config::compile(&set, 1, 1_700_000_000).unwrap()
}

#[test]
fn no_read_group_of_the_shipped_catalog_holds_a_write_key_or_a_pattern() {
    // The test's vocabulary and the code's agree, and the test would have caught the old catalog's bug
    // (Account Settings Read held com.cloudflare.api.account.update).
    for action in WRITE_ACTIONS {
        for key in [
            format!("#thing:{action}"),
            format!("com.cloudflare.api.account.thing.{action}"),
        ] {
            assert_eq!(actions::key_action(&key), KeyAction::Write, "{key}");
        }
    }
    for action in actions::WRITE_ACTIONS {
        assert!(WRITE_ACTIONS.contains(&action), "{action} is missing here");
    }
    assert!(writes("com.cloudflare.api.account.update") && writes("#dns_records:edit"));
    assert!(!writes("com.cloudflare.api.account.aig") && !writes("#dns_records:read"));

    let snapshot = cloudflare_snapshot();
    let read_groups: Vec<&GroupInfo> = snapshot
        .policy
        .groups
        .iter()
        .filter(|group| is_read_group(group))
        .collect();
    assert!(
        read_groups.len() > 100,
        "{} Read groups: the catalog holds 311 real groups, most in Read/Write pairs",
        read_groups.len()
    );
    let mut violations = Vec::new();
    let mut exception_held = false;
    for group in &read_groups {
        for pattern in &group.patterns {
            match pattern {
                KeyPattern::Exact(key)
                    if **key == *TAIL_EXCEPTION.1 && &*group.name == TAIL_EXCEPTION.0 =>
                {
                    exception_held = true;
                }
                KeyPattern::Exact(key) if writes(key) => {
                    violations.push(format!(
                        "{} ({}) holds the write key {key}",
                        group.name, group.id
                    ));
                }
                KeyPattern::Exact(_) => {}
                // Any pattern could match a write key, as soon as a route requires one with its prefix.
                KeyPattern::Prefix(prefix) => violations.push(format!(
                    "{} ({}) holds the pattern {prefix}*",
                    group.name, group.id
                )),
                KeyPattern::All => {
                    violations.push(format!("{} ({}) holds the pattern *", group.name, group.id));
                }
            }
        }
    }
    assert!(violations.is_empty(), "{violations:#?}");
    assert!(
        exception_held,
        "{} should hold {}: opening a log tail is what it is for",
        TAIL_EXCEPTION.0, TAIL_EXCEPTION.1
    );
}

/// Every operation's `x-cfPermissionsRequired` keys by operation id, from the spec and the supplement.
fn cloudflare_annotations() -> BTreeMap<String, Vec<String>> {
    let mut annotations = BTreeMap::new();
    for path in [SPEC, SUPPLEMENT] {
        let document: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(repo(path)).unwrap()).unwrap();
        for item in document["paths"].as_object().unwrap().values() {
            for operation in item.as_object().unwrap().values() {
                let (Some(id), Some(keys)) = (
                    operation.get("operationId").and_then(|id| id.as_str()),
                    operation["x-cfPermissionsRequired"]["enum"].as_array(),
                ) else {
                    continue;
                };
                let keys = keys.iter().map(|key| key.as_str().unwrap().to_string());
                annotations.insert(id.to_string(), keys.collect());
            }
        }
    }
    annotations
}

#[test]
fn no_read_group_passes_a_write_route_but_the_posts_cloudflare_annotates_with_read_keys() {
    let snapshot = cloudflare_snapshot();
    let keys = &snapshot.policy.keys;
    let annotations = cloudflare_annotations();
    let read_groups: Vec<&GroupInfo> = snapshot
        .policy
        .groups
        .iter()
        .filter(|group| is_read_group(group))
        .collect();
    let holds =
        |group: &GroupInfo, key: &str| group.patterns.iter().any(|pattern| pattern.matches(key));
    let mut exceptions = Vec::new();
    let mut violations = Vec::new();
    let mut write_routes = 0;
    for route in snapshot.routes.routes() {
        let write_methods: Vec<&str> = route
            .methods
            .split(", ")
            .filter(|method| !["GET", "HEAD", "OPTIONS"].contains(method))
            .collect();
        if write_methods.is_empty() {
            continue;
        }
        write_routes += 1;
        let (required, all_of): (Vec<&str>, bool) = match &route.requirement {
            Requirement::None => continue,
            Requirement::AllOf(ids) => (ids.iter().map(|id| keys.name(*id)).collect(), true),
            Requirement::AnyOf(ids) => (ids.iter().map(|id| keys.name(*id)).collect(), false),
        };
        let passing: Vec<String> = read_groups
            .iter()
            .filter(|group| {
                if all_of {
                    required.iter().all(|key| holds(group, key))
                } else {
                    required.iter().any(|key| holds(group, key))
                }
            })
            .map(|group| group.name.to_string())
            .collect();
        if passing.is_empty() {
            continue;
        }
        // The exception: a POST whose keys, in the route and in Cloudflare's own annotation of the
        // operation, all only read (a query, an analysis, a scan).
        let annotated = annotations.get(&*route.label);
        let read_annotated = write_methods.iter().all(|method| *method == "POST")
            && required.iter().all(|key| only_reads(key))
            && annotated.is_some_and(|keys| keys.iter().all(|key| only_reads(key)));
        let line = format!(
            "{} {} [{}] passed by {}",
            route.methods,
            route.pattern,
            required.join(", "),
            passing.join(", ")
        );
        if read_annotated {
            exceptions.push((route, line));
        } else {
            violations.push(line);
        }
    }
    assert!(
        write_routes > 250,
        "{write_routes} write routes: the table holds 289"
    );
    assert!(violations.is_empty(), "{violations:#?}");
    assert!(
        !exceptions.is_empty(),
        "the spec's read-annotated POSTs (ssl/analyze, vector queries) pass their Read groups"
    );
    for (_, line) in &exceptions {
        println!("read-only POST: {line}");
    }

    // permgate validate says the same: each exception as a read-only POST, nothing else.
    let warnings: Vec<String> = permgate::cli::validate::warnings(&snapshot, 1_700_000_000)
        .iter()
        .map(ToString::to_string)
        .collect();
    let read_only: Vec<&String> = warnings
        .iter()
        .filter(|warning| warning.contains("read-only POST: route "))
        .collect();
    assert_eq!(read_only.len(), exceptions.len(), "{read_only:#?}");
    for (route, line) in &exceptions {
        assert!(
            read_only
                .iter()
                .any(|warning| warning.contains(&format!(" {} {} ", route.methods, route.pattern))),
            "validate does not list {line}"
        );
    }
    let writes: Vec<&String> = warnings
        .iter()
        .filter(|warning| warning.contains("named Read"))
        .collect();
    assert!(writes.is_empty(), "{writes:#?}");
}

#[test]
#[ignore = "a measurement, not a check: run in release with --ignored --nocapture"]
fn timing() {
    let text = std::fs::read_to_string(repo(TABLE)).unwrap();
    let mut loads = Vec::new();
    let mut table = RouteTable::empty();
    for _ in 0..20 {
        let file = SourceFile::from_text(TABLE, text.clone());
        let started = Instant::now();
        table = routes::compile(&[file], &mut KeyInterner::new()).unwrap();
        loads.push(started.elapsed());
    }
    loads.sort();
    let samples: Vec<(String, String)> = table
        .routes()
        .iter()
        .flat_map(|route| {
            let (path, _) = sample_path(&route.pattern);
            methods(route)
                .into_iter()
                .map(move |method| (method, path.clone()))
        })
        .collect();
    const ROUNDS: usize = 200;
    let mut per_lookup = Vec::with_capacity(ROUNDS);
    for _ in 0..ROUNDS {
        let started = Instant::now();
        for (method, path) in &samples {
            std::hint::black_box(
                table.lookup(std::hint::black_box(method), std::hint::black_box(path)),
            );
        }
        per_lookup.push(started.elapsed().as_nanos() as f64 / samples.len() as f64);
    }
    per_lookup.sort_by(f64::total_cmp);
    println!(
        "{TABLE}: {} routes; load+compile median {:?} (min {:?}, max {:?}) over {} loads; lookup median {:.0} ns \
         (p90 {:.0} ns) per lookup over {} rounds of all {} sample paths",
        table.len(),
        loads[loads.len() / 2],
        loads[0],
        loads[loads.len() - 1],
        loads.len(),
        per_lookup[ROUNDS / 2],
        per_lookup[ROUNDS * 9 / 10],
        ROUNDS,
        samples.len()
    );
}
