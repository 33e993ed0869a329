//! Equivalence of the reusing compile ([`compile_reusing`]) and the full one ([`compile`]) on random edits:
//! every field of the compiled policy set, the content hash, and the errors (text and order) are the same.
//!
//! Each round edits the files of the last config that compiled (as a reload would have served), compiles
//! the edit both ways, and compares. The edits cover what a token file can become: a token renamed,
//! disabled, re-scoped, dated, removed, added, moved, duplicated within or across files (id or secret), a
//! file that no longer parses, a reference to an unknown group or user, and a token file that gains
//! entities (which no reusing compile may take: it declines, and the full compile decides).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code

use serde_json::{Value, json};

use super::*;
use crate::policy::PolicySet;

const GROUPS: &str = r##"
permission_groups:
  - { id: g-read, name: DNS Read, scopes: [com.cloudflare.api.account.zone], permissions: ["#dns:read", "#zone:read"] }
  - { id: g-write, name: DNS Write, scopes: [com.cloudflare.api.account.zone], permissions: ["#dns:*"] }
  - { id: g-account, name: Account Read, scopes: [com.cloudflare.api.account], permissions: ["#account:read"] }
  - { id: g-unused, name: Unused, permissions: ["#nothing:read"] }
  - { id: g-member, name: Member Zone Read, scopes: [com.cloudflare.api.account], permissions: ["#zone:read"] }
"##;

const ROUTES: &str = r##"
routes:
  - { method: GET, path: "/zones/{z}/dns", permissions: ["#dns:read"], scope: { zone: z } }
  - { method: POST, path: "/zones/{z}/dns", permissions: ["#dns:edit"], scope: { zone: z } }
  - { method: GET, path: "/zones/{z}", permissions: ["#zone:read"], scope: { zone: z } }
  - { method: GET, path: "/accounts/{a}", permissions: ["#account:read"], scope: { account: a } }
"##;

const FILES: [&str; 8] = [
    "groups.yaml",
    "accounts.yaml",
    "t0.json",
    "t1.json",
    "t2.json",
    "t3.yaml",
    "t4.yaml",
    "mixed.yaml",
];

/// A small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn accounts() -> Value {
    let zones = |account: usize| -> Vec<Value> {
        (0..3)
            .map(|zone| json!({"id": format!("z{account}{zone}"), "name": format!("z{account}{zone}.example")}))
            .collect()
    };
    let users: Vec<Value> = (0..4)
        .map(|user| json!({"id": format!("u{user}"), "email": format!("u{user}@example.com")}))
        .collect();
    let accounts: Vec<Value> = (0..2)
        .map(|account| {
            let members: Vec<Value> = (0..4)
                .map(|user| {
                    // Groups only members use (g-member), and a policy that can never match (a warning of
                    // the entities, before any token's).
                    json!({"user": format!("u{user}"), "policies": [{
                        "id": format!("m{account}{user}"),
                        "access": "allow",
                        "permission_groups": [{"id": if user % 2 == 0 { "g-write" } else { "g-read" }}, {"id": "g-account"}, {"id": "g-member"}],
                        "resource_groups": [{"scope": {"key": format!("com.cloudflare.api.account.a{account}"), "objects": [{"key": "*"}]}}]
                    }, {
                        "id": format!("never{account}{user}"),
                        "access": "allow",
                        "permission_groups": [{"id": "g-unused"}],
                        "resource_groups": [{"scope": {"key": format!("com.cloudflare.api.account.a{account}"), "objects": [{"key": "*"}]}}]
                    }]})
                })
                .collect();
            json!({"id": format!("a{account}"), "name": format!("Account {account}"), "zones": zones(account), "members": members})
        })
        .collect();
    json!({"users": users, "accounts": accounts})
}

/// One token: `n` makes its id and secret unique.
fn token(rng: &mut Rng, n: usize) -> Value {
    let owner = if rng.below(5) == 0 {
        json!({"account": format!("a{}", rng.below(2))})
    } else {
        json!({"user": format!("u{}", rng.below(4))})
    };
    let group = ["g-read", "g-write", "g-account"][rng.below(3)];
    let resources = match rng.below(3) {
        0 => {
            json!({format!("com.cloudflare.api.account.zone.z{}{}", rng.below(2), rng.below(3)): "*"})
        }
        1 => json!({format!("com.cloudflare.api.account.a{}", rng.below(2)): "*"}),
        _ => json!({"com.cloudflare.api.account.*": "*"}),
    };
    // Account tokens name only their own account's resources.
    let resources = if owner.get("account").is_some() {
        json!({format!("com.cloudflare.api.account.{}", owner["account"].as_str().unwrap()): "*"})
    } else {
        resources
    };
    let mut token = json!({
        "id": format!("tok-{n}"),
        "name": format!("token {n}"),
        "owner": owner,
        "secret_sha256": format!("{:064x}", n as u128 * 7919 + 1),
        "policies": [{"id": format!("p{n}"), "effect": if rng.below(8) == 0 { "deny" } else { "allow" },
                      "permission_groups": [{"id": group}], "resources": resources}]
    });
    if rng.below(6) == 0 {
        token["expires_on"] = json!("2099-01-01T00:00:00Z");
    }
    token
}

/// The text of a token file (JSON or YAML by its name; the mixed file also holds a group).
fn render(name: &str, tokens: &[Value]) -> String {
    let mut document = json!({ "tokens": tokens });
    if name == "mixed.yaml" {
        document["permission_groups"] =
            json!([{"id": "g-mixed", "name": "Mixed", "permissions": ["#zone:read"]}]);
    }
    if name.ends_with(".json") {
        // Token files as machines write them: `{"tokens":` first (taken for a token file).
        serde_json::to_string(&document).unwrap()
    } else {
        serde_saphyr::to_string(&document).unwrap()
    }
}

fn set_of(files: &[(String, String)]) -> ConfigSet {
    let gateway = SourceFile::from_text(
        "gateway.yaml",
        format!(
            "listen: 127.0.0.1:0\nadmin_listen: 127.0.0.1:1\nupstream: {{ url: 'http://127.0.0.1:9' }}\npolicy_files: [{}]\nroute_files: [routes.yaml]\n",
            FILES.join(", ")
        ),
    );
    ConfigSet::from_sources(
        gateway,
        files
            .iter()
            .map(|(name, text)| SourceFile::from_text(name.as_str(), text.as_str()))
            .collect(),
        vec![SourceFile::from_text("routes.yaml", ROUTES)],
    )
    .unwrap()
}

/// Every field of a policy set, in a form that compares regardless of hash-map iteration order, with each
/// policy's key set by its keys (a reusing compile keeps the served set's key-set numbers, and its key sets
/// list; a full compile numbers afresh: the keys are what decisions read).
fn dump(set: &PolicySet) -> String {
    let keys_of = |policies: &[crate::policy::model::Policy]| -> String {
        policies
            .iter()
            .map(|policy| {
                format!(
                    "{} {:?} {:?} {:x} {:?}",
                    policy.id,
                    policy.effect,
                    set.keysets.get(policy.keyset as usize),
                    policy.first_keys,
                    policy.selector
                )
            })
            .collect::<Vec<_>>()
            .join("; ")
    };
    let gates: Vec<String> = set
        .token_gates
        .iter()
        .map(|gate| {
            format!(
                "{:?} {:?} {} {} {} {} [{}]",
                gate.owner,
                gate.status,
                gate.has_ip_condition,
                gate.valid_from,
                gate.valid_until,
                gate.owner_id,
                keys_of(&gate.policies)
            )
        })
        .collect();
    let mut by_hash: Vec<(String, u32)> = set
        .token_by_hash
        .iter()
        .map(|(hash, position)| (hex::encode(hash), *position))
        .collect();
    by_hash.sort();
    let mut members: Vec<String> = set
        .member_by_user_account
        .iter()
        .map(|(key, member)| {
            format!(
                "{key:?}={} {} {:?} [{}]",
                member.user,
                member.account,
                member.api_access,
                keys_of(&member.policies)
            )
        })
        .collect();
    members.sort();
    let mut users: Vec<String> = set
        .user_by_id
        .iter()
        .chain(&set.user_by_email)
        .map(|(key, user)| format!("{key}={user}"))
        .collect();
    users.sort();
    let warnings: Vec<String> = set
        .warnings
        .iter()
        .map(|warning| ConfigError::from(warning).to_string())
        .collect();
    format!(
        "{:?}\n{:?}\n{:?}\n{:?}\n{:?}\n{:?}\n{gates:?}\n{:?}\n{:?}\n{warnings:?}\n{by_hash:?}\n{members:?}\n{users:?}",
        set.namespace,
        set.keys,
        set.users,
        set.accounts,
        set.zones,
        set.tokens,
        set.groups,
        set.token_files,
    )
}

fn outcome(result: &Result<Snapshot, ConfigErrors>) -> Result<(String, String), Vec<String>> {
    match result {
        Ok(snapshot) => Ok((snapshot.content_hash.clone(), dump(&snapshot.policy))),
        Err(errors) => Err(errors.0.iter().map(ToString::to_string).collect()),
    }
}

/// What an edit did, for the tally.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Seen {
    Reused,
    ReusedError,
    Declined,
}

#[test]
fn a_reusing_compile_gives_exactly_what_a_full_compile_gives_on_random_edits() {
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    let mut next_token = 0usize;
    let mut tokens: Vec<Vec<Value>> = (2..FILES.len())
        .map(|_| {
            (0..1 + rng.below(12))
                .map(|_| {
                    next_token += 1;
                    token(&mut rng, next_token)
                })
                .collect()
        })
        .collect();
    let files = |tokens: &[Vec<Value>]| -> Vec<(String, String)> {
        let mut files = vec![
            ("groups.yaml".to_string(), GROUPS.to_string()),
            (
                "accounts.yaml".to_string(),
                serde_saphyr::to_string(&accounts()).unwrap(),
            ),
        ];
        for (name, list) in FILES[2..].iter().zip(tokens) {
            files.push((name.to_string(), render(name, list)));
        }
        files
    };
    let mut served = compile(&set_of(&files(&tokens)), 1, 0).unwrap();
    let mut tally = std::collections::BTreeMap::new();
    for round in 0..300 {
        let mut edited = tokens.clone();
        let mut texts = None;
        let file = rng.below(edited.len());
        let other = rng.below(edited.len());
        let list = &mut edited[file];
        match rng.below(12) {
            0 if !list.is_empty() => {
                let at = rng.below(list.len());
                list[at]["name"] = json!(format!("renamed {round}"));
            }
            1 if !list.is_empty() => {
                let at = rng.below(list.len());
                list[at]["status"] = json!(["disabled", "expired", "active"][rng.below(3)]);
            }
            2 if !list.is_empty() => {
                let at = rng.below(list.len());
                list.remove(at);
            }
            3 => {
                next_token += 1;
                let at = rng.below(list.len() + 1);
                list.insert(at, token(&mut rng, next_token));
            }
            4 if !list.is_empty() => {
                let at = rng.below(list.len());
                next_token += 1;
                let fresh = token(&mut rng, next_token);
                list[at]["policies"] = fresh["policies"].clone();
                list[at]["owner"] = fresh["owner"].clone();
            }
            // A duplicate id or secret of another file's token (an error, reported where the full compile
            // reports it: possibly in an unchanged file after this one).
            5 | 6 if !tokens[other].is_empty() => {
                let source = tokens[other][rng.below(tokens[other].len())].clone();
                next_token += 1;
                let mut copy = token(&mut rng, next_token);
                let field = if rng.below(2) == 0 {
                    "id"
                } else {
                    "secret_sha256"
                };
                copy[field] = source[field].clone();
                let at = rng.below(list.len() + 1);
                list.insert(at, copy);
            }
            7 if !list.is_empty() => {
                let at = rng.below(list.len());
                list[at]["policies"][0]["permission_groups"] = json!([{"id": "g-missing"}]);
            }
            8 if !list.is_empty() => {
                let at = rng.below(list.len());
                list[at]["owner"] = json!({"user": "u-missing"});
            }
            9 => {
                // The file no longer parses.
                let mut all = files(&edited);
                all[2 + file].1.push_str("\n  - {broken");
                texts = Some(all);
            }
            10 if FILES[2 + file] != "mixed.yaml" => {
                // A token file that gains entities: no reusing compile may take it.
                let mut all = files(&edited);
                let name = &all[2 + file].0;
                let text = if name.ends_with(".json") {
                    format!(
                        r#"{{"users": [{{"id": "u-new{round}", "email": "new{round}@example.com"}}], "tokens": {}}}"#,
                        serde_json::to_string(&edited[file]).unwrap()
                    )
                } else {
                    format!(
                        "users:\n  - {{ id: u-new{round}, email: new{round}@example.com }}\n{}",
                        render(name, &edited[file])
                    )
                };
                all[2 + file].1 = text;
                texts = Some(all);
            }
            _ if list.len() > 1 => {
                // Tokens moved within the file.
                let at = rng.below(list.len());
                let token = list.remove(at);
                list.push(token);
            }
            _ => {
                next_token += 1;
                list.push(token(&mut rng, next_token));
            }
        }
        let texts = texts.unwrap_or_else(|| files(&edited));
        let set = set_of(&texts);
        let (_, digests) = content_digests(&set).unwrap();
        let full = compile(&set, 2, 0);
        let seen = match compile_reusing(&set, &served, &digests, 2, 0) {
            Some(reused) => {
                assert_eq!(
                    outcome(&reused),
                    outcome(&full),
                    "round {round}: the reusing compile differs from the full one"
                );
                if reused.is_ok() {
                    Seen::Reused
                } else {
                    Seen::ReusedError
                }
            }
            None => Seen::Declined,
        };
        *tally.entry(seen).or_insert(0) += 1;
        if let Ok(snapshot) = full {
            served = snapshot;
            tokens = edited;
        }
    }
    eprintln!("reusing compile vs full compile, 300 random edits: {tally:?}");
    for seen in [Seen::Reused, Seen::ReusedError, Seen::Declined] {
        assert!(
            tally.get(&seen).copied().unwrap_or(0) >= 5,
            "too few {seen:?}: {tally:?}"
        );
    }
}

#[test]
fn only_token_file_changes_are_compiled_by_reuse() {
    let mut rng = Rng(7);
    let tokens: Vec<Vec<Value>> = (2..FILES.len()).map(|n| vec![token(&mut rng, n)]).collect();
    let mut files = vec![
        ("groups.yaml".to_string(), GROUPS.to_string()),
        (
            "accounts.yaml".to_string(),
            serde_saphyr::to_string(&accounts()).unwrap(),
        ),
    ];
    for (name, list) in FILES[2..].iter().zip(&tokens) {
        files.push((name.to_string(), render(name, list)));
    }
    let served = compile(&set_of(&files), 1, 0).unwrap();
    let reusing = |files: &[(String, String)]| {
        let set = set_of(files);
        let (_, digests) = content_digests(&set).unwrap();
        compile_reusing(&set, &served, &digests, 2, 0).is_some()
    };
    // Nothing changed: nothing to compile.
    assert!(!reusing(&files));
    // A token file: reused.
    let mut edited = files.clone();
    edited[3].1 = render("t1.json", &[token(&mut rng, 99)]);
    assert!(reusing(&edited));
    // An entity file, or the mixed file (it holds a group): a full compile.
    let mut edited = files.clone();
    edited[0]
        .1
        .push_str("  - { id: g-more, name: More, permissions: [\"#dns:read\"] }\n");
    assert!(!reusing(&edited));
    let mut edited = files.clone();
    edited[7].1 = render("mixed.yaml", &[token(&mut rng, 98)]);
    assert!(!reusing(&edited));
}
