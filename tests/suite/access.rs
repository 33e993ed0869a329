//! Access analysis agrees exactly with the decision: on the shipped config (users, accounts, zones, domain
//! groups, member policies, deny policies, API access off, expired, disabled, not-yet-valid and
//! IP-restricted tokens, legacy keys), every credential × every route × every resource is decided by
//! `pipeline::decide` with the credential's real secret in the headers, as `permgate check` does, and the
//! answer must be exactly what `explain` lists for the credential and what `who-can` lists for the route.
//! The same on the resource-type fixture (`tests/cases/configs/buckets`: R2 buckets and Worker scripts named
//! from the path, user groups with a deny and a domain group), with buckets no policy names and unknown accounts.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::Path;

use http::{HeaderMap, HeaderValue};
use permgate::analysis::explain::ExplainOptions;
use permgate::analysis::{self, Credential};
use permgate::pipeline::{Facts, decide, decide_as};
use permgate::policy::Known;
use permgate::policy::model::Resource;
use permgate::routes::{Route, Scope};
use permgate::snapshot::Snapshot;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

fn shipped() -> Snapshot {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    permgate::config::load(&root.join("config/gateway.yaml")).unwrap()
}

/// Every credential of the shipped config with the secret its comments publish (the demo prints them).
fn secrets(snapshot: &Snapshot) -> BTreeMap<Known, HeaderMap> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut out = BTreeMap::new();
    let tokens = std::fs::read_to_string(root.join("config/tokens.yaml")).unwrap();
    for line in tokens.lines() {
        let Some(secret) = line
            .strip_prefix("#   ")
            .and_then(|rest| rest.split_whitespace().next())
            .filter(|word| word.starts_with("pgt_demo_"))
        else {
            continue;
        };
        let digest: [u8; 32] = Sha256::digest(secret.as_bytes()).into();
        let known = analysis::token_by_secret_sha256(&snapshot.policy, &digest)
            .unwrap_or_else(|| panic!("{secret} is in no token of the config"));
        let mut headers = HeaderMap::new();
        headers.insert(
            "authorization",
            HeaderValue::from_str(&format!("Bearer {secret}")).unwrap(),
        );
        out.insert(known, headers);
    }
    let accounts = std::fs::read_to_string(root.join("config/accounts.yaml")).unwrap();
    for line in accounts.lines() {
        let mut words = line.strip_prefix("#   ").unwrap_or("").split_whitespace();
        let (Some(email), Some(key)) = (words.next(), words.next()) else {
            continue;
        };
        if !email.contains('@') || key.len() != 37 {
            continue;
        }
        let user = analysis::user_by_id_or_email(&snapshot.policy, email).unwrap();
        let mut headers = HeaderMap::new();
        headers.insert("x-auth-email", HeaderValue::from_str(email).unwrap());
        headers.insert("x-auth-key", HeaderValue::from_str(key).unwrap());
        out.insert(Known::LegacyKey(user), headers);
    }
    let all: BTreeSet<Known> = analysis::credentials(&snapshot.policy).collect();
    assert_eq!(
        all,
        out.keys().copied().collect(),
        "every credential of the shipped config has its secret in the comments"
    );
    assert!(out.len() >= 25, "{} credentials", out.len());
    out
}

fn buckets_world() -> Snapshot {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    permgate::config::load(&root.join("tests/cases/configs/buckets/gateway.yaml")).unwrap()
}

/// Every credential of the resource-type fixture: the token secrets its comments give, and three legacy keys.
fn buckets_secrets(snapshot: &Snapshot) -> BTreeMap<Known, HeaderMap> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut out = BTreeMap::new();
    let text =
        std::fs::read_to_string(root.join("tests/cases/configs/buckets/policy.yaml")).unwrap();
    for line in text.lines().filter(|line| line.contains("secret_sha256:")) {
        let Some(secret) = line.split("# ").nth(1).map(str::trim) else {
            continue;
        };
        let digest: [u8; 32] = Sha256::digest(secret.as_bytes()).into();
        let known = analysis::token_by_secret_sha256(&snapshot.policy, &digest)
            .unwrap_or_else(|| panic!("{secret} is in no token of the fixture"));
        let mut headers = HeaderMap::new();
        headers.insert(
            "authorization",
            HeaderValue::from_str(&format!("Bearer {secret}")).unwrap(),
        );
        out.insert(known, headers);
    }
    for (email, key) in [
        (
            "carol@buckets.example",
            "cccc0000000000000000000000000000000c1",
        ),
        (
            "dave@buckets.example",
            "dddd0000000000000000000000000000000d1",
        ),
        (
            "erin@buckets.example",
            "eeee0000000000000000000000000000000e1",
        ),
    ] {
        let user = analysis::user_by_id_or_email(&snapshot.policy, email).unwrap();
        let mut headers = HeaderMap::new();
        headers.insert("x-auth-email", HeaderValue::from_str(email).unwrap());
        headers.insert("x-auth-key", HeaderValue::from_str(key).unwrap());
        out.insert(Known::LegacyKey(user), headers);
    }
    let all: BTreeSet<Known> = analysis::credentials(&snapshot.policy).collect();
    assert_eq!(all, out.keys().copied().collect());
    out
}

/// A name no policy of either world gives a child resource.
const NEVER_NAMED: &str = "never-named";

/// The request target of a route on a resource id (`parent/name` for a child resource).
fn target_for(route: &Route, id: Option<&str>) -> String {
    match (&route.scope, id) {
        (
            Scope::Child {
                param,
                parent_param,
                ..
            },
            Some(id),
        ) => {
            let (parent, name) = id.split_once('/').unwrap();
            let pattern = route
                .pattern
                .replace(&format!("{{{parent_param}}}"), parent)
                .replace(&format!("{{{param}}}"), name);
            analysis::diff::sample_target(
                &Route {
                    pattern: pattern.into(),
                    ..route.clone()
                },
                "",
            )
        }
        _ => analysis::diff::sample_target(route, id.unwrap_or("")),
    }
}

fn at(text: &str) -> i64 {
    OffsetDateTime::parse(text, &Rfc3339)
        .unwrap()
        .unix_timestamp()
}

fn method_of(route: &Route) -> String {
    let first = route.methods.split(',').next().unwrap().trim();
    if first == "*" {
        "GET".into()
    } else {
        first.into()
    }
}

/// Every (route, resource id) request of the table: each account and zone for scoped routes, plus ids the
/// config does not know; once for routes that name no resource.
fn requests(snapshot: &Snapshot) -> Vec<(usize, Option<String>)> {
    let policy = &snapshot.policy;
    let mut out = Vec::new();
    for (index, route) in snapshot.routes.routes().iter().enumerate() {
        if route.public {
            continue;
        }
        match &route.scope {
            Scope::Account { .. } => {
                for account in &policy.accounts {
                    out.push((index, Some(account.id.to_string())));
                }
                out.push((index, Some("ffffffffffffffffffffffffffffffff".into())));
            }
            Scope::Zone { .. } => {
                for zone in &policy.zones {
                    out.push((index, Some(zone.id.to_string())));
                }
                out.push((index, Some("eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee".into())));
            }
            Scope::Child { kind, .. } => {
                // Each account's children of the type that some policy names, one that none names, and a
                // child of an account the config does not know.
                let kind = policy.resource_type(kind).unwrap();
                for account in &policy.accounts {
                    let mut names: Vec<String> = policy
                        .children
                        .all()
                        .iter()
                        .filter(|child| {
                            child.kind == kind
                                && policy.accounts[child.account as usize].id == account.id
                        })
                        .map(|child| child.name.to_string())
                        .collect();
                    names.push(NEVER_NAMED.into());
                    for name in names {
                        out.push((index, Some(format!("{}/{name}", account.id))));
                    }
                }
                out.push((
                    index,
                    Some(format!("ffffffffffffffffffffffffffffffff/{NEVER_NAMED}")),
                ));
            }
            _ => out.push((index, None)),
        }
    }
    out
}

fn resource_of(snapshot: &Snapshot, route: &Route, id: Option<&str>) -> Option<Resource> {
    let policy = &snapshot.policy;
    let ns = &policy.namespace;
    match (&route.scope, id) {
        (Scope::Account { .. }, Some(id)) => {
            analysis::who_can::parse_resource_key(policy, &format!("{ns}.account.{id}")).ok()
        }
        (Scope::Zone { .. }, Some(id)) => {
            analysis::who_can::parse_resource_key(policy, &format!("{ns}.account.zone.{id}")).ok()
        }
        _ => None,
    }
}

#[test]
fn explain_and_who_can_agree_with_every_decision_of_the_shipped_world() {
    let snapshot = shipped();
    let secrets = secrets(&snapshot);
    let (compared, allowed_seen) = cross_check(&snapshot, &secrets);
    assert!(compared > 5_000, "compared {compared}");
    assert!(allowed_seen > 300, "allowed {allowed_seen}");
    eprintln!("compared {compared} decisions, {allowed_seen} allowed");
}

#[test]
fn explain_and_who_can_agree_with_every_decision_of_the_bucket_and_group_world() {
    let snapshot = buckets_world();
    let secrets = buckets_secrets(&snapshot);
    let (compared, allowed_seen) = cross_check(&snapshot, &secrets);
    assert!(compared > 500, "compared {compared}");
    assert!(allowed_seen > 40, "allowed {allowed_seen}");
    eprintln!("compared {compared} decisions, {allowed_seen} allowed");
}

/// Every credential × every request of the world, decided by `pipeline::decide` with its secret, against
/// what `explain` lists for the credential and `who-can` for the request; gives (compared, allowed).
fn cross_check(snapshot: &Snapshot, secrets: &BTreeMap<Known, HeaderMap>) -> (usize, usize) {
    let routes = snapshot.routes.routes();
    let requests = requests(snapshot);
    let mut compared = 0usize;
    let mut allowed_seen = 0usize;
    let mut failures = Vec::new();
    for time in ["2026-03-01T00:00:00Z", "2027-06-01T00:00:00Z"] {
        let now = at(time);
        // What explain lists, per credential: (route index, resource id or none).
        let mut listed: BTreeMap<Known, BTreeSet<(usize, Option<String>)>> = BTreeMap::new();
        for known in secrets.keys() {
            let explanation = analysis::explain(
                snapshot,
                *known,
                ExplainOptions {
                    now,
                    limit: usize::MAX,
                    blocked: true,
                    routes: true,
                },
            )
            .unwrap();
            assert!(!explanation.truncated);
            let set = listed.entry(*known).or_default();
            for access in &explanation.resources {
                for route in &access.routes {
                    let id = match (&routes[*route].scope, access.resource.child) {
                        (Scope::Account { .. } | Scope::Zone { .. }, _) => {
                            Some(access.resource.id.to_string())
                        }
                        // A child no policy names stands for every name no policy gives.
                        (Scope::Child { .. }, Some((_, parent))) => Some(format!(
                            "{parent}/{}",
                            if access.resource.id.is_empty() {
                                NEVER_NAMED
                            } else {
                                access.resource.id
                            }
                        )),
                        _ => None,
                    };
                    set.insert((*route, id));
                }
            }
            for route in &explanation.unscoped_routes {
                set.insert((*route, None));
            }
        }
        for (route_index, id) in &requests {
            let route = &routes[*route_index];
            let method = method_of(route);
            let target = target_for(route, id.as_deref());
            let who = analysis::who_can_route(snapshot, &method, &target, now, false);
            let who_allowed: BTreeSet<Known> = match &who {
                Ok(answer) => answer.allowed.iter().map(|h| h.credential.known).collect(),
                Err(_) => BTreeSet::new(),
            };
            for (known, headers) in secrets {
                let usability = analysis::usability(&snapshot.policy, *known, now);
                let ip: IpAddr = usability
                    .witness_ip
                    .unwrap_or_else(|| "192.0.2.1".parse().unwrap());
                let facts = Facts {
                    method: &method,
                    target: &target,
                    headers,
                    peer_ip: ip,
                    now,
                };
                let verdict = decide(snapshot, &facts);
                // The route the request really matched (a more specific route may win).
                let matched = verdict
                    .route
                    .map(|r| routes.iter().position(|c| std::ptr::eq(c, r)).unwrap());
                let by_id = decide_as(snapshot, &facts, *known);
                let name = Credential::of(&snapshot.policy, *known).unwrap().label();
                if by_id.allowed() != verdict.allowed() || by_id.code() != verdict.code() {
                    failures.push(format!(
                        "{time} {method} {target} {name}: decide_as {} ({}) but decide {} ({})",
                        by_id.allowed(),
                        by_id.code(),
                        verdict.allowed(),
                        verdict.code()
                    ));
                }
                compared += 1;
                if verdict.allowed() {
                    allowed_seen += 1;
                }
                if matched != Some(*route_index) {
                    continue;
                }
                let explained = listed[known].contains(&(*route_index, id.clone()));
                if explained != verdict.allowed() {
                    failures.push(format!(
                        "{time} {method} {target} {name}: explain lists it: {explained}, decide: {} ({})",
                        verdict.allowed(),
                        verdict
                            .outcome
                            .as_ref()
                            .err()
                            .map(|r| r.reason())
                            .unwrap_or_default()
                    ));
                }
                if who_allowed.contains(known) != verdict.allowed() {
                    failures.push(format!(
                        "{time} {method} {target} {name}: who-can lists it: {}, decide: {}",
                        who_allowed.contains(known),
                        verdict.allowed()
                    ));
                }
                // From an address outside its IP condition, a conditional token is refused everywhere.
                if let (Some(condition), true) = (usability.ip_condition, verdict.allowed()) {
                    let outside: IpAddr = ["203.0.113.77", "2001:db8:ffff::1", "10.9.9.9"]
                        .iter()
                        .map(|ip| ip.parse().unwrap())
                        .find(|ip| !condition.allows(*ip))
                        .unwrap();
                    let refused = decide(
                        snapshot,
                        &Facts {
                            peer_ip: outside,
                            ..facts
                        },
                    );
                    if refused.allowed() {
                        failures.push(format!(
                            "{name} allowed from {outside}, outside its condition"
                        ));
                    }
                }
            }
            let _ = resource_of(snapshot, route, id.as_deref());
        }
    }
    assert!(
        failures.is_empty(),
        "{} disagreements of {compared}:\n{}",
        failures.len(),
        failures.join("\n")
    );
    (compared, allowed_seen)
}

#[test]
fn key_who_can_agrees_with_explain_keys() {
    let snapshot = shipped();
    let policy = &snapshot.policy;
    let now = at("2026-03-01T00:00:00Z");
    let ns = &policy.namespace;
    let mut checked = 0;
    // explain lists the keys that some route of the resource's kind requires (here: zone routes).
    let zone_keys: BTreeSet<&str> = snapshot
        .routes
        .routes()
        .iter()
        .filter(|route| matches!(route.scope, Scope::Zone { .. }))
        .flat_map(|route| match &route.requirement {
            permgate::routes::Requirement::AllOf(keys)
            | permgate::routes::Requirement::AnyOf(keys) => keys.to_vec(),
            permgate::routes::Requirement::None => Vec::new(),
        })
        .map(|key| policy.keys.name(key))
        .collect();
    for zone in &policy.zones {
        let resource = format!("{ns}.account.zone.{}", zone.id);
        for key in zone_keys.iter().copied() {
            let who = analysis::who_can_key(&snapshot, key, &resource, now, false).unwrap();
            for known in analysis::credentials(policy) {
                let explanation = analysis::explain(
                    &snapshot,
                    known,
                    ExplainOptions {
                        now,
                        limit: usize::MAX,
                        blocked: false,
                        routes: true,
                    },
                )
                .unwrap();
                let explained = explanation.resources.iter().any(|access| {
                    access.resource.to_string() == resource
                        && access.keys.iter().any(|grant| grant.key == key)
                });
                let listed = who.allowed.iter().any(|h| h.credential.known == known);
                assert_eq!(
                    explained,
                    listed,
                    "{key} on {resource} for {}",
                    Credential::of(policy, known).unwrap().label()
                );
                checked += 1;
            }
        }
    }
    assert!(checked > 1_000, "{checked}");
}
