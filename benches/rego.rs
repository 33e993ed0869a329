//! permgate side by side with Rego, OPA's policy language, evaluated by `regorus` (Microsoft's Rego
//! interpreter), on the same principals, policies and request mix, in one run: the comparison a user makes
//! when choosing between permgate's decision endpoint and OPA behind a proxy.
//!
//! The world is the Cedar bench's (`benches/cedar.rs`): the decision bench's at 1k tokens (10k accounts × 10
//! zones, 20k users with member policies, tokens with up to 10 policies) and the same 4,096 requests. The
//! Rego side is written as OPA users write it: one generic policy (`benches/rego/permgate.rego`) over
//! data — `data.tokens[id]` (owner and policies: effect, the keys its groups grant or `all_keys`, and the
//! resource it selects: an account and its zones, every zone of an account, or one zone) and
//! `data.members[user][account]` (the member's policies: effect, keys, and the zones they cover) — with an
//! input naming the token, the key, and the resource with its type and account (the parent a Cedar entity
//! would carry). A user token needs its own policies and its user's membership to grant the key
//! (SPEC §3.3); deny beats allow in each.
//!
//! The data is loaded once and every input is built before timing, so the Rego figure is
//! `Engine::set_input` + `Engine::eval_rule("data.permgate.allow")` alone. The permgate figures are the
//! Cedar bench's: `authenticate_and_authorize` (reading the header and SHA-256 hashing the token included)
//! and `PolicySet::evaluate` on a pre-hashed credential. Before timing, both engines must agree on every
//! request of the mix (bench setup, not a test).
//!
//! `cargo bench --bench rego`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // bench code: a broken setup should stop loudly

#[path = "support/group_keys.rs"]
mod group_keys;
#[path = "support/mix.rs"]
mod mix;
#[path = "support/side_by_side.rs"]
mod side_by_side;
#[path = "support/synth.rs"]
mod synth;

use std::cell::RefCell;
use std::collections::HashMap;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use group_keys::group_actions;
use permgate::config::raw::{Effect, RawGroup, RawPolicyFile, RawResourceValue};
use serde_json::{Map, Value as Json, json};
use side_by_side::Engine;
use synth::NS;

const TOKENS: usize = 1_000;
const POLICY: &str = include_str!("rego/permgate.rego");
const RULE: &str = "data.permgate.allow";

fn effect(effect: Effect) -> &'static str {
    match effect {
        Effect::Allow => "allow",
        Effect::Deny => "deny",
    }
}

/// `all_keys: true`, or `keys: {key: true, …}` (an object, so the policy looks a key up instead of scanning).
fn keys_of(groups: &[RawGroup], catalog: &HashMap<String, Option<Vec<String>>>) -> (bool, Json) {
    let mut keys = Map::new();
    for group in groups {
        match &catalog[group.id.as_deref().unwrap()] {
            None => return (true, Json::Object(Map::new())),
            Some(granted) => {
                for key in granted {
                    keys.insert(key.clone(), Json::Bool(true));
                }
            }
        }
    }
    (false, Json::Object(keys))
}

/// `data`: the tokens and the memberships of users that own tokens, as the Rego policy reads them.
fn rego_data(raw: &RawPolicyFile, keys: &[String]) -> Json {
    let catalog = group_actions(raw, keys);
    let account_prefix = format!("{NS}.account.");
    let zone_prefix = format!("{NS}.account.zone.");
    let mut tokens = Map::new();
    let mut users_with_tokens = std::collections::HashSet::new();
    for token in &raw.tokens {
        let mut policies = Vec::new();
        for policy in &token.policies {
            assert_eq!(
                policy.resources.len(),
                1,
                "one resource entry per synthetic policy"
            );
            let (key, value) = policy.resources.iter().next().unwrap();
            let resource = match value {
                RawResourceValue::Text(star) if star == "*" => match key.strip_prefix(&zone_prefix)
                {
                    Some(zone) => json!({"kind": "zone", "zone": zone}),
                    None => {
                        json!({"kind": "account", "account": key.strip_prefix(&account_prefix).unwrap()})
                    }
                },
                RawResourceValue::Nested(nested) => {
                    let account = key.strip_prefix(&account_prefix).unwrap();
                    assert_eq!(nested.len(), 1);
                    let (inner, _) = nested.iter().next().unwrap();
                    match inner.strip_prefix(&zone_prefix).unwrap() {
                        "*" => json!({"kind": "zones", "account": account}),
                        zone => json!({"kind": "zone", "zone": zone}),
                    }
                }
                other => panic!("unexpected resource value {other:?}"),
            };
            let (all_keys, keys) = keys_of(&policy.permission_groups, &catalog);
            policies.push(json!({
                "effect": effect(policy.effect),
                "all_keys": all_keys,
                "keys": keys,
                "resource": resource,
            }));
        }
        let mut entry = Map::new();
        if let Some(user) = &token.owner.user {
            users_with_tokens.insert(user.clone());
            entry.insert("user".to_string(), Json::String(user.clone()));
        }
        entry.insert("policies".to_string(), Json::Array(policies));
        tokens.insert(token.id.clone(), Json::Object(entry));
    }
    let mut members: Map<String, Json> = Map::new();
    for account in &raw.accounts {
        for member in &account.members {
            if !users_with_tokens.contains(&member.user) {
                continue; // no request of the mix can need this membership
            }
            let mut policies = Vec::new();
            for policy in &member.policies {
                let mut all_zones = false;
                let mut zones = Map::new();
                for group in &policy.resource_groups {
                    let scope = group.scope.as_ref().unwrap();
                    assert_eq!(
                        scope.key.strip_prefix(&account_prefix),
                        Some(account.id.as_str())
                    );
                    for object in &scope.objects {
                        if object.key == "*" {
                            all_zones = true;
                        } else {
                            let zone = object.key.strip_prefix(&zone_prefix).unwrap();
                            zones.insert(zone.to_string(), Json::Bool(true));
                        }
                    }
                }
                let (all_keys, keys) = keys_of(&policy.permission_groups, &catalog);
                policies.push(json!({
                    "effect": effect(policy.access),
                    "all_keys": all_keys,
                    "keys": keys,
                    "all_zones": all_zones,
                    "zones": zones,
                }));
            }
            let user = members
                .entry(member.user.clone())
                .or_insert_with(|| Json::Object(Map::new()));
            if let Json::Object(accounts) = user {
                accounts.insert(account.id.clone(), Json::Array(policies));
            }
        }
    }
    json!({"tokens": tokens, "members": members})
}

fn bench_rego(c: &mut Criterion) {
    let (snapshot, scale, raw) = mix::build(TOKENS);
    let requests = mix::requests(scale, &raw, 4096);
    let keys: Vec<String> = snapshot
        .policy
        .keys
        .iter()
        .map(|(_, key)| key.to_string())
        .collect();

    let started = Instant::now();
    let data = serde_json::to_string(&rego_data(&raw, &keys)).unwrap();
    let mut engine = regorus::Engine::new();
    engine
        .add_policy("permgate.rego".to_string(), POLICY.to_string())
        .unwrap_or_else(|error| panic!("the Rego policy: {error}"));
    engine
        .add_data(regorus::Value::from_json_str(&data).unwrap())
        .unwrap();
    eprintln!(
        "Rego data: {:.1} MB of JSON ({} tokens), loaded in {:.2?}",
        data.len() as f64 / 1e6,
        raw.tokens.len(),
        started.elapsed()
    );

    // Everything both engines need per request, prepared before timing.
    let prepared = side_by_side::prepare(&snapshot, &raw, &requests);
    let inputs: Vec<regorus::Value> = requests
        .iter()
        .zip(&prepared)
        .map(|(request, prepared)| {
            let input = json!({
                "token": raw.tokens[request.token].id,
                "key": prepared.key,
                "type": prepared.kind,
                "resource": prepared.resource,
                "account": prepared.account,
            });
            regorus::Value::from_json_str(&input.to_string()).unwrap()
        })
        .collect();

    let permgate_full = |index: usize| {
        let i = index % requests.len();
        side_by_side::permgate_full(&snapshot, &prepared[i], &requests[i])
    };
    let permgate_engine =
        |index: usize| side_by_side::permgate_engine(&snapshot, &prepared[index % prepared.len()]);
    let engine = RefCell::new(engine);
    let rego_eval = |index: usize| {
        let mut engine = engine.borrow_mut();
        engine.set_input(inputs[index % inputs.len()].clone());
        let allowed = engine.eval_rule(RULE.to_string()).expect("evaluates");
        allowed == regorus::Value::from(true)
    };
    let engines = [
        Engine {
            name: "permgate/authenticate+authorize",
            call: &permgate_full,
        },
        Engine {
            name: "permgate/evaluate",
            call: &permgate_engine,
        },
        Engine {
            name: "regorus/eval_rule",
            call: &rego_eval,
        },
    ];

    // Equivalent semantics on the mix, or the comparison means nothing.
    let allowed = side_by_side::assert_agree(&engines, &requests);
    eprintln!(
        "both engines agree on all {} requests ({allowed} allowed)",
        requests.len()
    );
    side_by_side::criterion_group(c, "rego_side_by_side", &engines, &requests);
    side_by_side::report(&engines, &requests, 5, 20_000, &[(2, 0), (2, 1)]);
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(Duration::from_secs(5));
    targets = bench_rego
}
criterion_main!(benches);
