//! The shipped `config/` and `routes/` (what `permgate demo` serves) load, compile and decide the three demo
//! requests as the demo prints them: an allowed call, a 403 and a no-route answer (400/7000).

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use http::{HeaderMap, HeaderValue};
use permgate::pipeline::{Facts, decide};
use permgate::snapshot::Snapshot;

/// 2026-01-01T00:00:00Z: the demo tokens are active then (and now).
const NOW: i64 = 1_767_225_600;

fn shipped_gateway() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("config")
        .join("gateway.yaml")
}

fn load() -> Result<Snapshot, String> {
    permgate::config::load(&shipped_gateway())
        .map_err(|errors| format!("the shipped config does not load:\n{errors}"))
}

fn decide_with_token(
    snapshot: &Snapshot,
    method: &str,
    target: &str,
    token: &str,
) -> Result<(bool, u16, u32), String> {
    let mut headers = HeaderMap::new();
    let value = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|e| e.to_string())?;
    headers.insert(http::header::AUTHORIZATION, value);
    let facts = Facts {
        method,
        target,
        headers: &headers,
        peer_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
        now: NOW,
    };
    let verdict = decide(snapshot, &facts);
    Ok((verdict.allowed(), verdict.status(), verdict.code()))
}

#[test]
fn shipped_config_loads() {
    let snapshot = load().unwrap();
    assert_eq!(
        snapshot.routes.len(),
        28,
        "routes/demo.yaml holds 28 routes"
    );
    let policy = &snapshot.policy;
    assert_eq!(policy.users.len(), 10, "users in accounts.yaml");
    assert_eq!(
        policy.accounts.len(),
        2,
        "Example Company and Globex Corporation"
    );
    assert_eq!(
        policy.zones.len(),
        5,
        "three zones of Example Company, two of Globex"
    );
    assert_eq!(policy.tokens.len(), 21, "tokens in tokens.yaml");
    assert!(policy.groups.len() >= 17, "the catalog holds 17 groups");
    assert!(snapshot.settings.explain_denials);
    assert_eq!(snapshot.settings.listen.to_string(), "127.0.0.1:8080");
    assert_eq!(snapshot.settings.admin_listen.to_string(), "127.0.0.1:9090");
    assert_eq!(snapshot.settings.resource_namespace, "com.cloudflare.api");
    let names: Vec<String> = snapshot
        .files
        .iter()
        .filter_map(|file| {
            file.file_name()
                .map(|name| name.to_string_lossy().into_owned())
        })
        .collect();
    for expected in [
        "gateway.yaml",
        "permission_groups.yaml",
        "accounts.yaml",
        "tokens.yaml",
        "demo.yaml",
    ] {
        assert!(
            names.iter().any(|name| name == expected),
            "{expected} is not among the loaded files {names:?}"
        );
    }
}

#[test]
fn shipped_config_decides_the_demo_requests() {
    let snapshot = load().unwrap();
    let records = "/client/v4/zones/b1fbb152bbde3bd28919a7f4bdca841f/dns_records";
    assert_eq!(
        decide_with_token(&snapshot, "GET", records, "pgt_demo_joe_dns_read").unwrap(),
        (true, 200, 0),
        "the demo's allowed call"
    );
    assert_eq!(
        decide_with_token(&snapshot, "POST", records, "pgt_demo_joe_dns_read").unwrap(),
        (false, 403, 10000),
        "the demo's 403"
    );
    assert_eq!(
        decide_with_token(
            &snapshot,
            "GET",
            "/client/v4/no/such/route",
            "pgt_demo_joe_dns_read"
        )
        .unwrap(),
        (false, 400, 7000),
        "the demo's no-route answer"
    );
}

#[test]
fn shipped_tokens_file_lists_every_demo_secret() {
    // The comment block at the top of tokens.yaml names each demo secret; each must match a token's hash,
    // so the demo's printed secrets keep working when the file is edited.
    use sha2::{Digest, Sha256};
    let text = std::fs::read_to_string(shipped_gateway().with_file_name("tokens.yaml")).unwrap();
    let secrets: Vec<&str> = text
        .lines()
        .filter_map(|line| line.strip_prefix("#   "))
        .filter_map(|rest| rest.split_whitespace().next())
        .filter(|word| word.starts_with("pgt_demo_"))
        .collect();
    assert!(
        secrets.len() >= 10,
        "expected the demo secrets listed at the top of tokens.yaml"
    );
    for secret in secrets {
        let hash = hex::encode(Sha256::digest(secret.as_bytes()));
        assert!(
            text.contains(&format!("secret_sha256: {hash}")),
            "demo secret {secret} has no token with secret_sha256 {hash}"
        );
    }
}

/// Alice's and Bob's member policies in `config/accounts.yaml` are Cloudflare's two published seed policies
/// exactly as vendored in `config/cloudflare/source/seed-policies/` (every field, every key, in order).
#[test]
fn the_seed_policies_are_loaded_verbatim() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let read = |path: &str| -> serde_json::Value {
        serde_saphyr::from_str(&std::fs::read_to_string(root.join(path)).unwrap()).unwrap()
    };
    let accounts = read("config/accounts.yaml");
    let members: Vec<&serde_json::Value> = accounts["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|account| account["members"].as_array().into_iter().flatten())
        .flat_map(|member| member["policies"].as_array().into_iter().flatten())
        .collect();
    for seed in ["legacy-dns-role.yaml", "zone-dns-role.yaml"] {
        let published = read(&format!("config/cloudflare/source/seed-policies/{seed}"));
        let policy = &published["policies"][0];
        let loaded = members
            .iter()
            .find(|candidate| candidate["id"] == policy["id"])
            .unwrap_or_else(|| panic!("{seed}: no member policy {}", policy["id"]));
        assert_eq!(*loaded, policy, "{seed}");
    }
}
