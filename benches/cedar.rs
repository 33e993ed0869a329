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

#[path = "support/group_keys.rs"]
mod group_keys;
#[path = "support/mix.rs"]
mod mix;
#[path = "support/side_by_side.rs"]
mod side_by_side;
#[path = "support/synth.rs"]
mod synth;

use std::collections::{HashMap, HashSet};
use std::str::FromStr;
use std::time::{Duration, Instant};

use cedar_policy::{
    Authorizer, Context, Decision, Entities, Entity, EntityId, EntityTypeName, EntityUid, Policy,
    PolicyId, PolicySet,
};
use criterion::{Criterion, criterion_group, criterion_main};
use group_keys::group_actions;
use permgate::config::raw::{Effect, RawGroup, RawPolicyFile, RawResourceValue};
use side_by_side::Engine;
use synth::NS;

const TOKENS: usize = 1_000;

fn uid(kind: &str, id: &str) -> EntityUid {
    EntityUid::from_type_name_and_id(EntityTypeName::from_str(kind).unwrap(), EntityId::new(id))
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
    let keys: Vec<String> = snapshot
        .policy
        .keys
        .iter()
        .map(|(_, key)| key.to_string())
        .collect();
    let cedar = cedar_world(&raw, &keys);

    // Everything both engines need per request, prepared before timing.
    let prepared = side_by_side::prepare(&snapshot, &raw, &requests);
    let cases: Vec<CedarCase<'_>> = requests
        .iter()
        .zip(&prepared)
        .map(|(request, prepared)| {
            let key = &prepared.key;
            let account = &prepared.account;
            let resource = match prepared.kind {
                "zone" => uid("Zone", &prepared.resource),
                _ => uid("Account", &prepared.resource),
            };
            let action = uid("Action", key);
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
            let account_uid = uid("Account", account);
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
        side_by_side::permgate_full(&snapshot, &prepared[i], &requests[i])
    };
    let permgate_engine =
        |index: usize| side_by_side::permgate_engine(&snapshot, &prepared[index % prepared.len()]);
    let cedar_call =
        |index: usize| cedar_decide(&authorizer, &cedar.entities, &cases[index % cases.len()]);
    let cedar_sliced = |index: usize| {
        let case = &cases[index % cases.len()];
        cedar_decide(&authorizer, &case.entities, case)
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
            name: "cedar/is_authorized",
            call: &cedar_call,
        },
        Engine {
            name: "cedar/is_authorized_sliced_entities",
            call: &cedar_sliced,
        },
    ];

    // Equivalent semantics on the mix, or the comparison means nothing.
    let allowed = side_by_side::assert_agree(&engines, &requests);
    let user_token_calls = cases.iter().filter(|case| case.member.is_some()).count();
    eprintln!(
        "both engines agree on all {} requests ({allowed} allowed; {user_token_calls} by user tokens)",
        requests.len()
    );
    side_by_side::criterion_group(c, "cedar_side_by_side", &engines, &requests);
    side_by_side::report(&engines, &requests, 10, 200_000, &[(2, 0), (2, 1), (3, 0)]);
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(Duration::from_secs(5));
    targets = bench_cedar
}
criterion_main!(benches);
