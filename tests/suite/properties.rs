//! Property tests of the decision: a deny policy never turns a deny into an allow; a user token never exceeds
//! its user; the decision does not depend on the order of policies. Worlds are generated from a seed.

use std::net::IpAddr;

use http::HeaderMap;
use permgate::config::{ConfigSet, SourceFile};
use permgate::pipeline::{Facts, decide};
use permgate::snapshot::Snapshot;
use proptest::prelude::*;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

const NS: &str = "com.cloudflare.api";
const ACCOUNTS: [&str; 2] = ["acc0", "acc1"];
const ZONES: [(&str, usize); 6] = [
    ("z0", 0),
    ("z1", 0),
    ("z2", 0),
    ("z3", 1),
    ("z4", 1),
    ("z5", 1),
];
const USERS: [&str; 3] = ["u0", "u1", "u2"];
const GROUPS: [(&str, &[&str]); 5] = [
    ("g-a-read", &["#a:read"]),
    ("g-a-all", &["#a:*"]),
    ("g-b-read", &["#b:read"]),
    ("g-everything", &["*"]),
    ("g-b-edit", &["#b:edit"]),
];
const ROUTES: &str = r##"
routes:
  - { method: GET, path: "/z/{zone_id}/a", permissions: ["#a:read"], scope: { zone: zone_id } }
  - { method: POST, path: "/z/{zone_id}/a", permissions: ["#a:edit"], scope: { zone: zone_id } }
  - { method: GET, path: "/z/{zone_id}/b", permissions: { any_of: ["#b:read", "#a:read"] }, scope: { zone: zone_id } }
  - { method: PUT, path: "/z/{zone_id}/b", permissions: ["#b:read", "#b:edit"], scope: { zone: zone_id } }
  - { method: GET, path: "/acc/{account_id}/a", permissions: ["#a:read", "#b:read"], scope: { account: account_id } }
  - { method: GET, path: "/zones", permissions: ["#a:read"], scope: any }
"##;

/// A small deterministic generator (SplitMix64), so one proptest seed is one world.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

fn sha(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// One or two catalog groups; deny policies take narrow ones (a deny of `*` would hide everything else).
fn groups(rng: &mut Rng, effect: &str) -> Value {
    let count = 1 + rng.below(2);
    let choices: Vec<&str> = GROUPS
        .iter()
        .map(|(id, _)| *id)
        .filter(|id| effect == "allow" || !matches!(*id, "g-everything" | "g-a-all"))
        .collect();
    Value::Array(
        (0..count)
            .map(|_| json!({ "id": choices[rng.below(choices.len())] }))
            .collect(),
    )
}

fn effect(rng: &mut Rng) -> &'static str {
    if rng.chance(15) { "deny" } else { "allow" }
}

fn member_policy(rng: &mut Rng, account: usize, effect: &str) -> Value {
    let scope_key = format!("{NS}.account.{}", ACCOUNTS[account]);
    let zones: Vec<&str> = ZONES
        .iter()
        .filter(|(_, a)| *a == account)
        .map(|(z, _)| *z)
        .collect();
    let objects = match rng.below(3) {
        0 => json!([{ "key": "*" }]),
        1 => json!([{ "key": format!("{NS}.account.zone.{}", zones[rng.below(zones.len())]) }]),
        _ => json!([]),
    };
    json!({
        "id": format!("mp{}", rng.next() % 1_000_000),
        "access": effect,
        "permission_groups": groups(rng, effect),
        "resource_groups": [{ "scope": { "key": scope_key, "objects": objects } }],
    })
}

fn token_policy(rng: &mut Rng, own_account: Option<usize>, effect: &str) -> Value {
    let account = own_account.unwrap_or_else(|| rng.below(ACCOUNTS.len()));
    let zones: Vec<&str> = ZONES
        .iter()
        .filter(|(_, a)| *a == account)
        .map(|(z, _)| *z)
        .collect();
    let zone = zones[rng.below(zones.len())];
    let account_key = format!("{NS}.account.{}", ACCOUNTS[account]);
    let resources = match rng.below(if own_account.is_some() { 4 } else { 6 }) {
        0 => json!({ account_key: "*" }),
        1 => json!({ account_key: { format!("{NS}.account.zone.*"): "*" } }),
        2 => json!({ account_key: { format!("{NS}.account.zone.{zone}"): "*" } }),
        3 => json!({ format!("{NS}.account.zone.{zone}"): "*" }),
        4 => json!({ format!("{NS}.account.*"): "*" }),
        _ => json!({ format!("{NS}.account.zone.*"): "*" }),
    };
    json!({
        "id": format!("tp{}", rng.next() % 1_000_000),
        "effect": effect,
        "permission_groups": groups(rng, effect),
        "resources": resources,
    })
}

/// A random world as a policy document.
fn world(seed: u64) -> Value {
    let mut rng = Rng(seed);
    let users: Vec<Value> = USERS
        .iter()
        .map(|u| json!({ "id": u, "email": format!("{u}@example.com"), "api_key_sha256": sha(&legacy_key(u)) }))
        .collect();
    let accounts: Vec<Value> = ACCOUNTS
        .iter()
        .enumerate()
        .map(|(index, id)| {
            let zones: Vec<Value> = ZONES
                .iter()
                .filter(|(_, a)| *a == index)
                .map(|(z, _)| json!({ "id": z, "name": format!("{z}.example") }))
                .collect();
            let chosen: Vec<&str> = USERS.iter().copied().filter(|_| rng.chance(75)).collect();
            let members: Vec<Value> = chosen
                .iter()
                .map(|u| {
                    let count = rng.below(4);
                    let policies: Vec<Value> = (0..count)
                        .map(|_| {
                            let e = effect(&mut rng);
                            member_policy(&mut rng, index, e)
                        })
                        .collect();
                    let access = ["default", "enabled", "disabled"][if rng.chance(85) { 0 } else { 1 + rng.below(2) }];
                    json!({ "user": u, "api_access": access, "policies": policies })
                })
                .collect();
            let api_access = if rng.chance(90) { "enabled" } else { "disabled" };
            json!({ "id": id, "name": id, "api_access": api_access, "zones": zones, "members": members })
        })
        .collect();
    let mut tokens = Vec::new();
    for (index, user) in USERS.iter().enumerate() {
        for n in 0..2 {
            let count = 1 + rng.below(3);
            let policies: Vec<Value> = (0..count)
                .map(|_| {
                    let e = effect(&mut rng);
                    token_policy(&mut rng, None, e)
                })
                .collect();
            let id = format!("t-{index}-{n}");
            tokens.push(json!({ "id": id, "owner": { "user": user }, "secret_sha256": sha(&id), "policies": policies }));
        }
    }
    for (index, account) in ACCOUNTS.iter().enumerate() {
        let count = 1 + rng.below(3);
        let policies: Vec<Value> = (0..count)
            .map(|_| {
                let e = effect(&mut rng);
                token_policy(&mut rng, Some(index), e)
            })
            .collect();
        let id = format!("t-acc-{index}");
        tokens.push(json!({ "id": id, "owner": { "account": account }, "secret_sha256": sha(&id), "policies": policies }));
    }
    let catalog: Vec<Value> = GROUPS
        .iter()
        .map(|(id, keys)| json!({ "id": id, "name": id, "permissions": keys }))
        .collect();
    json!({ "permission_groups": catalog, "users": users, "accounts": accounts, "tokens": tokens })
}

fn snapshot(doc: &Value) -> Snapshot {
    let gateway = SourceFile::from_text(
        "gateway.yaml",
        "listen: 127.0.0.1:0\nadmin_listen: 127.0.0.1:1\nupstream: { url: 'http://127.0.0.1:9' }\npolicy_files: [p.json]\nroute_files: [routes.yaml]\n",
    );
    let set = ConfigSet::from_sources(
        gateway,
        vec![SourceFile::from_text("p.json", doc.to_string())],
        vec![SourceFile::from_text("routes.yaml", ROUTES)],
    )
    .expect("gateway settings");
    permgate::config::compile(&set, 1, 0)
        .unwrap_or_else(|errors| panic!("generated config must load: {errors}"))
}

/// Every credential: user and account tokens by id (their secret is their id), legacy keys by user.
fn credentials() -> Vec<(String, HeaderMap)> {
    let mut all = Vec::new();
    for (index, _) in USERS.iter().enumerate() {
        for n in 0..2 {
            all.push(bearer(&format!("t-{index}-{n}")));
        }
    }
    for index in 0..ACCOUNTS.len() {
        all.push(bearer(&format!("t-acc-{index}")));
    }
    for user in USERS {
        all.push(legacy(user));
    }
    all
}

fn bearer(secret: &str) -> (String, HeaderMap) {
    let mut headers = HeaderMap::new();
    headers.insert("authorization", format!("Bearer {secret}").parse().unwrap());
    (secret.to_string(), headers)
}

/// A user's global API key: 37 lower-case hex characters (any other shape is refused as malformed).
fn legacy_key(user: &str) -> String {
    sha(&format!("key-{user}"))[..37].to_string()
}

fn legacy(user: &str) -> (String, HeaderMap) {
    let mut headers = HeaderMap::new();
    headers.insert(
        "x-auth-email",
        format!("{user}@example.com").parse().unwrap(),
    );
    headers.insert("x-auth-key", legacy_key(user).parse().unwrap());
    (format!("legacy-{user}"), headers)
}

/// Every (method, path) the routes can be asked, on known and unknown resources.
fn requests() -> Vec<(&'static str, String)> {
    let mut all = Vec::new();
    for zone in ZONES.iter().map(|(z, _)| *z).chain(["zz-unknown"]) {
        all.push(("GET", format!("/z/{zone}/a")));
        all.push(("POST", format!("/z/{zone}/a")));
        all.push(("GET", format!("/z/{zone}/b")));
        all.push(("PUT", format!("/z/{zone}/b")));
    }
    for account in ACCOUNTS.iter().copied().chain(["acc-unknown"]) {
        all.push(("GET", format!("/acc/{account}/a")));
    }
    all.push(("GET", "/zones".to_string()));
    all
}

/// (credential, method, path) → (status, code) for every request.
/// (credential, method, path) and its (status, code).
type Decisions = Vec<((String, &'static str, String), (u16, u32))>;

fn decisions(snapshot: &Snapshot) -> Decisions {
    let ip: IpAddr = "127.0.0.1".parse().unwrap();
    let mut out = Vec::new();
    for (name, headers) in credentials() {
        for (method, path) in requests() {
            let verdict = decide(
                snapshot,
                &Facts {
                    method,
                    target: &path,
                    headers: &headers,
                    peer_ip: ip,
                    now: 0,
                },
            );
            out.push((
                (name.clone(), method, path.clone()),
                (verdict.status(), verdict.code()),
            ));
        }
    }
    out
}

/// Adds a deny policy to a random token or member of the world.
fn add_deny(doc: &mut Value, seed: u64) {
    let mut rng = Rng(seed ^ 0xDEAD_BEEF);
    if rng.chance(50) {
        let tokens = doc["tokens"].as_array_mut().unwrap();
        let index = rng.below(tokens.len());
        let own = tokens[index]["owner"]["account"]
            .as_str()
            .map(|a| ACCOUNTS.iter().position(|x| *x == a).unwrap());
        let policy = token_policy(&mut rng, own, "deny");
        tokens[index]["policies"]
            .as_array_mut()
            .unwrap()
            .push(policy);
    } else {
        let account = rng.below(ACCOUNTS.len());
        let policy = member_policy(&mut rng, account, "deny");
        let members = doc["accounts"][account]["members"].as_array_mut().unwrap();
        if members.is_empty() {
            return;
        }
        let index = rng.below(members.len());
        members[index]["policies"]
            .as_array_mut()
            .unwrap()
            .push(policy);
    }
}

fn reverse_policies(doc: &mut Value) {
    for token in doc["tokens"].as_array_mut().unwrap() {
        token["policies"].as_array_mut().unwrap().reverse();
    }
    for account in doc["accounts"].as_array_mut().unwrap() {
        for member in account["members"].as_array_mut().unwrap() {
            member["policies"].as_array_mut().unwrap().reverse();
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn a_deny_policy_never_turns_a_deny_into_an_allow(seed in any::<u64>()) {
        let mut doc = world(seed);
        let before = decisions(&snapshot(&doc));
        add_deny(&mut doc, seed);
        let after = decisions(&snapshot(&doc));
        for ((request, was), (_, now)) in before.iter().zip(after.iter()) {
            prop_assert!(!(was.0 != 200 && now.0 == 200), "{request:?} was {was:?}, is {now:?} after adding a deny");
        }
    }

    #[test]
    fn a_user_token_never_exceeds_its_user(seed in any::<u64>()) {
        let doc = world(seed);
        let all = decisions(&snapshot(&doc));
        let lookup = |name: &str, method: &str, path: &str| {
            all.iter().find(|((n, m, p), _)| n == name && *m == method && p == path).map(|(_, d)| *d).unwrap()
        };
        for ((name, method, path), decision) in &all {
            if decision.0 != 200 || !name.starts_with("t-") || name.starts_with("t-acc") {
                continue;
            }
            let user_index: usize = name[2..3].parse().unwrap();
            let user_decision = lookup(&format!("legacy-{}", USERS[user_index]), method, path);
            prop_assert_eq!(user_decision.0, 200, "token {} allowed {} {} but its user is not", name, method, path);
        }
    }

    #[test]
    fn the_decision_does_not_depend_on_policy_order(seed in any::<u64>()) {
        let mut doc = world(seed);
        let before = decisions(&snapshot(&doc));
        reverse_policies(&mut doc);
        let after = decisions(&snapshot(&doc));
        prop_assert_eq!(before, after);
    }
}

#[test]
fn generated_worlds_exercise_both_answers() {
    // Guards the generator: the properties above mean little if every request were denied.
    let mut allowed = 0;
    let mut denied = 0;
    for seed in 0..20 {
        for (_, (status, _)) in decisions(&snapshot(&world(seed))) {
            if status == 200 {
                allowed += 1
            } else {
                denied += 1
            }
        }
    }
    assert!(
        allowed > 100 && denied > 100,
        "allowed {allowed}, denied {denied}"
    );
}
