//! permgate side by side with AWS Cedar (`cedar-policy`) on the same principals, resources, policies and
//! request mix, in one run (SPEC §10: ≥ 10× faster).
//!
//! The world is the decision bench's at 1k tokens (10k accounts × 10 zones, 20k users with member
//! policies, tokens with up to 10 policies) and the request mix is the same 4,096 requests. For Cedar:
//!
//! - entities: `User`, `Account`, `Zone` (parent: its `Account`), `Token` (parent: its owning `User` or
//!   `Account`), pre-built once into one `Entities` (transitive closure computed up front);
//! - actions: one per permission key (`Action::"#dns_records:read"`); a permission group becomes the list
//!   of keys it grants (`#dns_records:*` → both DNS keys; the bare `*` → no action constraint);
//! - a token policy becomes `permit`/`forbid(principal == Token::"…", action in […], resource …)` with its
//!   resource selector (`resource in Account::"A"` for an account and its zones, `resource is Zone in
//!   Account::"A"` for every zone of A, `resource == Zone::"Z"` for one zone); a member policy becomes the
//!   same on `User::"…"` (its scope account and the zones it names, SPEC §3.1);
//! - policy slicing, as a fair user of Cedar does: each token's policies are one pre-parsed `PolicySet`, each
//!   membership's policies another. A user token is granted a key only when both its own policies and its
//!   user's member policies grant it (SPEC §3.3), which Cedar expresses as two `is_authorized` calls — on the
//!   token slice, then (only if that allowed) on the membership slice; a user that is not a member of the
//!   resource's account has no slice, hence deny. An account token is one call on its slice.
//!
//! Everything Cedar needs per request (the `Request`, the slices) is built before timing, so the Cedar
//! figure is `Authorizer::is_authorized` alone. A second Cedar figure hands it, per request, an `Entities`
//! holding only the entities that request can touch (token, owner, resource, account; also pre-built), its
//! best case. The permgate figures are `authenticate_and_authorize`
//! (reading the `Authorization` header and SHA-256 hashing the token included, so it does more) and
//! `PolicySet::evaluate` on a pre-hashed credential (engine against engine). Before timing, both engines
//! must agree on every request of the mix (bench setup, not a test).
//!
//! `cargo bench --bench cedar`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // bench code: a broken setup should stop loudly

#[path = "support/mix.rs"]
mod mix;
#[path = "support/synth.rs"]
mod synth;

use std::collections::{HashMap, HashSet};
use std::hint::black_box;
use std::net::IpAddr;
use std::str::FromStr;
use std::time::{Duration, Instant};

use cedar_policy::{
    Authorizer, Context, Decision, Entities, Entity, EntityId, EntityTypeName, EntityUid, Policy,
    PolicyId, PolicySet,
};
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use permgate::config::raw::{Effect, RawGroup, RawPolicyFile, RawResourceValue};
use permgate::pipeline::{ResourceIds, authenticate_and_authorize};
use permgate::policy::{AccessRequest, Presented, Required, Target};
use permgate::routes::{Requirement, Scope};
use sha2::{Digest, Sha256};
use synth::NS;

const TOKENS: usize = 1_000;

fn uid(kind: &str, id: &str) -> EntityUid {
    EntityUid::from_type_name_and_id(EntityTypeName::from_str(kind).unwrap(), EntityId::new(id))
}

/// The keys each catalog group grants, over the route keys; `None` for the bare `*` (every key).
fn group_actions(raw: &RawPolicyFile, keys: &[String]) -> HashMap<String, Option<Vec<String>>> {
    raw.permission_groups
        .iter()
        .map(|group| {
            let mut granted = Vec::new();
            let mut all = false;
            for permission in group.permissions.iter().flatten() {
                let pattern = permission.key();
                if pattern == "*" {
                    all = true;
                } else if let Some(prefix) = pattern.strip_suffix('*') {
                    granted.extend(keys.iter().filter(|key| key.starts_with(prefix)).cloned());
                } else {
                    granted.push(pattern.to_string());
                }
            }
            (group.id.clone().unwrap(), (!all).then_some(granted))
        })
        .collect()
}

/// The action clause for a policy's groups: `action` (unconstrained) or `action in [Action::"…", …]`.
fn action_clause(groups: &[RawGroup], catalog: &HashMap<String, Option<Vec<String>>>) -> String {
    let mut keys: Vec<String> = Vec::new();
    for group in groups {
        match &catalog[group.id.as_deref().unwrap()] {
            None => return "action".to_string(),
            Some(granted) => keys.extend(granted.iter().cloned()),
        }
    }
    keys.sort();
    keys.dedup();
    let actions: Vec<String> = keys
        .iter()
        .map(|key| format!("Action::\"{key}\""))
        .collect();
    format!("action in [{}]", actions.join(", "))
}

fn verb(effect: Effect) -> &'static str {
    match effect {
        Effect::Allow => "permit",
        Effect::Deny => "forbid",
    }
}

/// The Cedar side of the world.
struct CedarWorld {
    entities: Entities,
    /// Per token index: its policies.
    token_sets: Vec<PolicySet>,
    /// Per token index: `Some(user)` for a user-owned token.
    token_user: Vec<Option<String>>,
    /// Per (user, account): the member's policies.
    member_sets: HashMap<(String, String), PolicySet>,
}

fn cedar_world(raw: &RawPolicyFile, keys: &[String]) -> CedarWorld {
    let started = Instant::now();
    let catalog = group_actions(raw, keys);
    let account_prefix = format!("{NS}.account.");
    let zone_prefix = format!("{NS}.account.zone.");
    let mut entities = Vec::new();
    for user in &raw.users {
        entities.push(Entity::new_no_attrs(uid("User", &user.id), HashSet::new()));
    }
    for account in &raw.accounts {
        let account_uid = uid("Account", &account.id);
        entities.push(Entity::new_no_attrs(account_uid.clone(), HashSet::new()));
        for zone in &account.zones {
            entities.push(Entity::new_no_attrs(
                uid("Zone", &zone.id),
                HashSet::from([account_uid.clone()]),
            ));
        }
    }
    let mut token_sets = Vec::new();
    let mut token_user = Vec::new();
    let mut users_with_tokens = HashSet::new();
    for token in &raw.tokens {
        let parent = match (&token.owner.user, &token.owner.account) {
            (Some(user), _) => {
                users_with_tokens.insert(user.clone());
                uid("User", user)
            }
            (None, Some(account)) => uid("Account", account),
            (None, None) => panic!("a token without an owner"),
        };
        entities.push(Entity::new_no_attrs(
            uid("Token", &token.id),
            HashSet::from([parent]),
        ));
        token_user.push(token.owner.user.clone());
        let mut policies = Vec::new();
        for (index, policy) in token.policies.iter().enumerate() {
            assert_eq!(
                policy.resources.len(),
                1,
                "one resource entry per synthetic policy"
            );
            let (key, value) = policy.resources.iter().next().unwrap();
            let resource = match value {
                RawResourceValue::Text(star) if star == "*" => {
                    if let Some(zone) = key.strip_prefix(&zone_prefix) {
                        format!("resource == Zone::\"{zone}\"")
                    } else {
                        let account = key.strip_prefix(&account_prefix).unwrap();
                        format!("resource in Account::\"{account}\"")
                    }
                }
                RawResourceValue::Nested(nested) => {
                    let account = key.strip_prefix(&account_prefix).unwrap();
                    assert_eq!(nested.len(), 1);
                    let (inner, _) = nested.iter().next().unwrap();
                    match inner.strip_prefix(&zone_prefix).unwrap() {
                        "*" => format!("resource is Zone in Account::\"{account}\""),
                        zone => format!("resource == Zone::\"{zone}\""),
                    }
                }
                other => panic!("unexpected resource value {other:?}"),
            };
            let text = format!(
                "{}(principal == Token::\"{}\", {}, {resource});",
                verb(policy.effect),
                token.id,
                action_clause(&policy.permission_groups, &catalog)
            );
            policies.push(
                Policy::parse(Some(PolicyId::new(format!("p{index}"))), &text)
                    .unwrap_or_else(|error| panic!("{text}: {error}")),
            );
        }
        token_sets.push(PolicySet::from_policies(policies).unwrap());
    }
    let mut member_sets = HashMap::new();
    for account in &raw.accounts {
        for member in &account.members {
            if !users_with_tokens.contains(&member.user) {
                continue; // no request of the mix can need this slice
            }
            let mut policies = Vec::new();
            for (index, policy) in member.policies.iter().enumerate() {
                let mut covers = Vec::new();
                for group in &policy.resource_groups {
                    let scope = group.scope.as_ref().unwrap();
                    let scope_account = scope.key.strip_prefix(&account_prefix).unwrap();
                    assert_eq!(scope_account, account.id);
                    covers.push(format!("resource == Account::\"{scope_account}\""));
                    for object in &scope.objects {
                        if object.key == "*" {
                            covers.push(format!("resource in Account::\"{scope_account}\""));
                        } else {
                            let zone = object.key.strip_prefix(&zone_prefix).unwrap();
                            covers.push(format!("resource == Zone::\"{zone}\""));
                        }
                    }
                }
                let text = format!(
                    "{}(principal == User::\"{}\", {}, resource in Account::\"{}\") when {{ {} }};",
                    verb(policy.access),
                    member.user,
                    action_clause(&policy.permission_groups, &catalog),
                    account.id,
                    covers.join(" || ")
                );
                policies.push(
                    Policy::parse(Some(PolicyId::new(format!("m{index}"))), &text)
                        .unwrap_or_else(|error| panic!("{text}: {error}")),
                );
            }
            member_sets.insert(
                (member.user.clone(), account.id.clone()),
                PolicySet::from_policies(policies).unwrap(),
            );
        }
    }
    let entity_count = entities.len();
    let entities = Entities::from_entities(entities, None).expect("entities");
    eprintln!(
        "Cedar world: {entity_count} entities, {} token slices, {} membership slices, built in {:.2?}",
        token_sets.len(),
        member_sets.len(),
        started.elapsed()
    );
    CedarWorld {
        entities,
        token_sets,
        token_user,
        member_sets,
    }
}

/// One request of the mix, ready for Cedar: the token call, and the membership call for user tokens
/// (`None` inside when the user has no membership in the resource's account: deny).
struct CedarCase<'w> {
    token: (cedar_policy::Request, &'w PolicySet),
    member: Option<Option<(cedar_policy::Request, &'w PolicySet)>>,
    /// Only the entities this request can touch (the token, its owner, the resource and its account):
    /// Cedar's best case, as if the application sliced entities too.
    entities: Entities,
}

fn cedar_decide(authorizer: &Authorizer, entities: &Entities, case: &CedarCase<'_>) -> bool {
    let (request, policies) = &case.token;
    if authorizer
        .is_authorized(request, policies, entities)
        .decision()
        != Decision::Allow
    {
        return false;
    }
    match &case.member {
        None => true,
        Some(None) => false,
        Some(Some((request, policies))) => {
            authorizer
                .is_authorized(request, policies, entities)
                .decision()
                == Decision::Allow
        }
    }
}

fn bench_cedar(c: &mut Criterion) {
    let (snapshot, scale, raw) = mix::build(TOKENS);
    let requests = mix::requests(scale, &raw, 4096);
    let policy = &snapshot.policy;
    let keys: Vec<String> = policy.keys.iter().map(|(_, key)| key.to_string()).collect();
    let cedar = cedar_world(&raw, &keys);
    let zone_account: HashMap<&str, &str> = raw
        .accounts
        .iter()
        .flat_map(|account| {
            account
                .zones
                .iter()
                .map(move |zone| (zone.id.as_str(), account.id.as_str()))
        })
        .collect();

    // Everything both engines need per request, prepared before timing.
    let ip = IpAddr::from([127, 0, 0, 1]);
    let now = 1_700_000_000;
    struct Prepared<'s> {
        route: &'s permgate::routes::Route,
        resource: String,
        sha256: [u8; 32],
    }
    let prepared: Vec<Prepared<'_>> = requests
        .iter()
        .map(|request| {
            let found = snapshot
                .routes
                .lookup(request.method, &request.path)
                .expect("route");
            Prepared {
                route: found.route,
                resource: found.resource_id.expect("scoped route").to_string(),
                sha256: Sha256::digest(synth::token_secret(request.token).as_bytes()).into(),
            }
        })
        .collect();
    let cases: Vec<CedarCase<'_>> = requests
        .iter()
        .zip(&prepared)
        .map(|(request, prepared)| {
            let key = match &prepared.route.requirement {
                Requirement::AllOf(keys) if keys.len() == 1 => {
                    policy.keys.name(keys[0]).to_string()
                }
                other => panic!("one key per synthetic route, got {other:?}"),
            };
            let (resource, account) = match &prepared.route.scope {
                Scope::Zone { .. } => (
                    uid("Zone", &prepared.resource),
                    zone_account[prepared.resource.as_str()].to_string(),
                ),
                Scope::Account { .. } => (
                    uid("Account", &prepared.resource),
                    prepared.resource.clone(),
                ),
                other => panic!("zone or account routes only, got {other:?}"),
            };
            let action = uid("Action", &key);
            let token = &raw.tokens[request.token];
            let make = |principal: EntityUid| {
                cedar_policy::Request::new(
                    principal,
                    action.clone(),
                    resource.clone(),
                    Context::empty(),
                    None,
                )
                .expect("request")
            };
            let owner = match (&token.owner.user, &token.owner.account) {
                (Some(user), _) => uid("User", user),
                (None, Some(owner)) => uid("Account", owner),
                (None, None) => panic!("a token without an owner"),
            };
            let account_uid = uid("Account", &account);
            let mut sliced = vec![
                Entity::new_no_attrs(uid("Token", &token.id), HashSet::from([owner.clone()])),
                Entity::new_no_attrs(account_uid.clone(), HashSet::new()),
            ];
            if owner != account_uid {
                sliced.push(Entity::new_no_attrs(owner, HashSet::new()));
            }
            if resource != account_uid {
                sliced.push(Entity::new_no_attrs(
                    resource.clone(),
                    HashSet::from([account_uid]),
                ));
            }
            CedarCase {
                entities: Entities::from_entities(sliced, None).expect("sliced entities"),
                token: (
                    make(uid("Token", &token.id)),
                    &cedar.token_sets[request.token],
                ),
                member: cedar.token_user[request.token].as_ref().map(|user| {
                    cedar
                        .member_sets
                        .get(&(user.clone(), account.clone()))
                        .map(|set| (make(uid("User", user)), set))
                }),
            }
        })
        .collect();

    let authorizer = Authorizer::new();
    let permgate_full = |index: usize| {
        let i = index % requests.len();
        authenticate_and_authorize(
            policy,
            prepared[i].route,
            ResourceIds::of(Some(&prepared[i].resource)),
            &requests[i].headers,
            ip,
            now,
        )
        .is_ok_and(|decision| decision.outcome.is_ok())
    };
    let permgate_engine = |index: usize| {
        let i = index % requests.len();
        let route = prepared[i].route;
        let target = match route.scope {
            Scope::Zone { .. } => Target::Zone(&prepared[i].resource),
            _ => Target::Account(&prepared[i].resource),
        };
        let required = match &route.requirement {
            Requirement::AllOf(keys) => Required::AllOf(keys),
            Requirement::AnyOf(keys) => Required::AnyOf(keys),
            Requirement::None => Required::None,
        };
        policy
            .evaluate(&AccessRequest {
                presented: Presented::Token {
                    sha256: prepared[i].sha256,
                },
                client_ip: ip,
                now,
                target,
                required,
            })
            .outcome
            .is_ok()
    };
    let cedar_call =
        |index: usize| cedar_decide(&authorizer, &cedar.entities, &cases[index % cases.len()]);
    let cedar_sliced = |index: usize| {
        let case = &cases[index % cases.len()];
        cedar_decide(&authorizer, &case.entities, case)
    };

    // Equivalent semantics on the mix, or the comparison means nothing.
    let mut allowed = 0usize;
    for (index, request) in requests.iter().enumerate() {
        let ours = permgate_full(index);
        assert_eq!(ours, permgate_engine(index), "request {index}");
        assert_eq!(
            ours,
            cedar_sliced(index),
            "sliced entities, request {index}"
        );
        assert_eq!(
            ours,
            cedar_call(index),
            "permgate and Cedar disagree on request {index}: {} {}",
            request.method,
            request.path
        );
        allowed += usize::from(ours);
    }
    let user_token_calls = cases.iter().filter(|case| case.member.is_some()).count();
    eprintln!(
        "both engines agree on all {} requests ({allowed} allowed; {user_token_calls} by user tokens)",
        requests.len()
    );

    let mut group = c.benchmark_group("cedar_side_by_side");
    let mut next = 0usize;
    let mut setup = || {
        next += 1;
        mix::touch(&requests[next % requests.len()]);
        next
    };
    group.bench_function("permgate/authenticate+authorize", |b| {
        b.iter_batched(
            &mut setup,
            |index| black_box(permgate_full(index)),
            BatchSize::NumIterations(64),
        )
    });
    group.bench_function("permgate/evaluate", |b| {
        b.iter_batched(
            &mut setup,
            |index| black_box(permgate_engine(index)),
            BatchSize::NumIterations(64),
        )
    });
    group.bench_function("cedar/is_authorized", |b| {
        b.iter_batched(
            &mut setup,
            |index| black_box(cedar_call(index)),
            BatchSize::NumIterations(64),
        )
    });
    group.bench_function("cedar/is_authorized_sliced_entities", |b| {
        b.iter_batched(
            &mut setup,
            |index| black_box(cedar_sliced(index)),
            BatchSize::NumIterations(64),
        )
    });
    group.finish();

    // The ratio, from interleaved rounds over the whole mix (engines alternate, so drift in machine load
    // hits both), and single-call percentiles.
    let rounds = 10;
    let mut totals = [Duration::ZERO; 4];
    let calls: [&dyn Fn(usize) -> bool; 4] =
        [&permgate_full, &permgate_engine, &cedar_call, &cedar_sliced];
    for _ in 0..rounds {
        for (total, call) in totals.iter_mut().zip(calls) {
            let started = Instant::now();
            for index in 0..requests.len() {
                black_box(call(index));
            }
            *total += started.elapsed();
        }
    }
    let per_call = |total: Duration| total / (rounds * requests.len()) as u32;
    let names = [
        "permgate authenticate+authorize",
        "permgate evaluate",
        "cedar is_authorized",
        "cedar, request-sized Entities",
    ];
    let mut medians = Vec::new();
    eprintln!(
        "\nper decision, same run (mean over {rounds} interleaved rounds of the mix; single-call p50/p99):"
    );
    for (index, call) in calls.iter().enumerate() {
        let (p50, p99, _) = mix::percentiles(200_000, &requests, call);
        medians.push(p50);
        eprintln!(
            "  {:<32} mean {:>9.2?}  p50 {p50:>9.2?}  p99 {p99:>9.2?}",
            names[index],
            per_call(totals[index])
        );
    }
    let ratio = |a: Duration, b: Duration| b.as_secs_f64() / a.as_secs_f64().max(1e-12);
    eprintln!(
        "  Cedar / permgate authenticate+authorize: {:.1}x (means), {:.1}x (p50)",
        ratio(totals[0], totals[2]),
        ratio(medians[0], medians[2])
    );
    eprintln!(
        "  Cedar / permgate evaluate:               {:.1}x (means), {:.1}x (p50)",
        ratio(totals[1], totals[2]),
        ratio(medians[1], medians[2])
    );
    eprintln!(
        "  Cedar (request-sized Entities) / permgate authenticate+authorize: {:.1}x (means), {:.1}x (p50)",
        ratio(totals[0], totals[3]),
        ratio(medians[0], medians[3])
    );
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(Duration::from_secs(5));
    targets = bench_cedar
}
criterion_main!(benches);
