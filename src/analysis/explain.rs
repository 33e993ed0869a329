//! `permgate access explain`: everything one credential can do, and why.

use std::collections::BTreeSet;

use crate::policy::model::{Member, Owner, Policy, Resource, Select, UNNAMED_CHILD};
use crate::policy::{KeyId, KeySet, KeyVerdict, Known, PolicySet, ResourceRef};
use crate::routes::{Route, Scope};
use crate::snapshot::Snapshot;

use super::{Credential, Usability, may_call, reachable_resources, route_fits, usability};

/// What to list.
#[derive(Debug, Clone, Copy)]
pub struct ExplainOptions {
    /// Unix seconds: the time the credential is explained at.
    pub now: i64,
    /// At most this many resources are listed in full (all are counted).
    pub limit: usize,
    /// Also list what the credential selects but cannot use, and why.
    pub blocked: bool,
    /// List the routes callable on each listed resource (the costly part; a diff needs only the keys).
    pub routes: bool,
}

/// One permission key granted on one resource, and the policies that grant it.
#[derive(Debug, Clone)]
pub struct KeyGrant<'s> {
    pub key: &'s str,
    /// The token policy that allows it (token credentials).
    pub token_policy: Option<&'s str>,
    /// The permission groups of that token policy that hold the key.
    pub token_groups: Vec<&'s str>,
    /// The member policy that allows it (user credentials on an account or zone: the bound).
    pub member_policy: Option<&'s str>,
    /// The permission groups of that member policy that hold the key.
    pub member_groups: Vec<&'s str>,
    /// The user group the member policy comes from (none: the member's own policy).
    pub user_group: Option<&'s str>,
    /// The domain groups of the member policy that bring the zone in (a zone, or a zone's child).
    pub domain_groups: Vec<&'s str>,
}

/// A key that the credential's own policies select on a resource but that it cannot use there.
#[derive(Debug, Clone)]
pub struct BlockedKey<'s> {
    pub key: &'s str,
    pub reason: String,
    /// The deny policy that removes it, if that is the reason.
    pub deny_policy: Option<&'s str>,
}

/// What the credential may do on one resource.
#[derive(Debug, Clone)]
pub struct ResourceAccess<'s> {
    pub resource: ResourceRef<'s>,
    /// The zone's or account's name, the user's email.
    pub name: &'s str,
    /// How the token's policies reach it: `named`, `account zones`, `all zones`, `all accounts`, `own user`.
    pub selected_by: Vec<&'static str>,
    pub keys: Vec<KeyGrant<'s>>,
    /// The routes that may be called on it (indexes in the route table), when listed in full.
    pub routes: Vec<usize>,
    /// Every route may be called here (a legacy key on its own user).
    pub every_key: bool,
    pub blocked: Vec<BlockedKey<'s>>,
}

/// A resource (or a set of them) the credential selects but cannot act on at all.
#[derive(Debug, Clone)]
pub struct BlockedResource {
    /// A resource key, or a description (`every zone of account …`).
    pub what: String,
    pub reason: String,
}

/// Everything `explain` found.
#[derive(Debug, Clone)]
pub struct Explanation<'s> {
    pub credential: Credential<'s>,
    pub now: i64,
    pub usability: Usability<'s>,
    /// Resources with at least one granted key or callable route, the first `limit` of them.
    pub resources: Vec<ResourceAccess<'s>>,
    /// How many resources of each kind have access, all of them counted.
    pub accounts: usize,
    pub zones: usize,
    pub users: usize,
    /// Child resources (buckets, scripts): those policies name, and "any other" of each type.
    pub children: usize,
    /// Whether `resources` was cut at the limit.
    pub truncated: bool,
    /// Routes that name no resource (`scope: none`, collections) and may be called.
    pub unscoped_routes: Vec<usize>,
    pub blocked: Vec<BlockedResource>,
}

/// Explains one credential (see the module documentation).
pub fn explain<'s>(
    snapshot: &'s Snapshot,
    known: Known,
    options: ExplainOptions,
) -> Option<Explanation<'s>> {
    let policy = &snapshot.policy;
    let credential = Credential::of(policy, known)?;
    let usability = usability(policy, known, options.now);
    let mut explanation = Explanation {
        credential,
        now: options.now,
        usability,
        resources: Vec::new(),
        accounts: 0,
        zones: 0,
        users: 0,
        children: 0,
        truncated: false,
        unscoped_routes: Vec::new(),
        blocked: Vec::new(),
    };
    let (Some(ip), None) = (
        explanation.usability.witness_ip,
        &explanation.usability.unusable,
    ) else {
        // Unusable: nothing is granted.
        return Some(explanation);
    };
    let routes = snapshot.routes.routes();
    for (index, route) in routes.iter().enumerate() {
        if options.routes
            && matches!(route.scope, Scope::Any | Scope::None)
            && !route.public
            && may_call(policy, route, None, known, ip, options.now).is_ok()
        {
            explanation.unscoped_routes.push(index);
        }
    }
    let token_policies: Option<&[Policy]> = match known {
        Known::Token(index) => policy
            .token_gates
            .get(index as usize)
            .map(|gate| &*gate.policies),
        Known::LegacyKey(_) => None,
    };
    let user = match known {
        Known::Token(index) => match policy.token_gates.get(index as usize).map(|g| g.owner) {
            Some(Owner::User(user)) => Some(user),
            _ => None,
        },
        Known::LegacyKey(user) => Some(user),
    };
    // Only keys that some route of the resource's kind requires mean anything there.
    let relevant = relevant_keys(policy, routes);
    let keyless = [
        Resource::Account(0),
        Resource::Zone(0, 0),
        Resource::User(0),
    ]
    .map(|kind| fits_keyless(policy, routes, kind));
    let keyless_children: Vec<bool> = (0..policy.resource_types.len())
        .map(|kind| {
            let Ok(kind) = crate::policy::model::KindIdx::try_from(kind) else {
                return true;
            };
            let child = crate::policy::model::ChildRef {
                kind,
                child: UNNAMED_CHILD,
                account: 0,
                zone: 0,
            };
            fits_keyless(policy, routes, Resource::Child(child))
        })
        .collect();
    let mut candidates = KeySet::empty(policy.keys.len());
    for resource in reachable_resources(policy, known) {
        let member = match (user, resource.account()) {
            (Some(user), Some(account)) => policy.member(user, account),
            _ => None,
        };
        if let (Some(member), true) = (member, options.blocked)
            && !member.api_access
            && matches!(resource, Resource::Account(_))
        {
            explanation.blocked.push(BlockedResource {
                what: format!("{} and its zones", policy.resource_ref(resource)),
                reason: format!(
                    "API access is disabled for user {} on this account",
                    credential.owner_id
                ),
            });
        }
        if member.is_some_and(|member| !member.api_access) {
            continue;
        }
        let legacy_user = matches!((known, resource), (Known::LegacyKey(_), Resource::User(_)));
        // The keys the first layer could grant here: the union of its covering allow policies' keys.
        let first_layer: &[Policy] = match (token_policies, member) {
            (Some(policies), _) => policies,
            (None, Some(member)) => &member.policies,
            (None, None) => &[],
        };
        candidates.reset(policy.keys.len());
        let mut selected_by = BTreeSet::new();
        for item in first_layer.iter().filter(|p| p.selector.covers(resource)) {
            if let Some(keys) = policy.keysets.get(item.keyset as usize) {
                candidates.union_with(keys);
            }
            selected_by.extend(selection(item, resource));
        }
        let mut access = ResourceAccess {
            resource: policy.resource_ref(resource),
            name: resource_name(policy, resource),
            selected_by: selected_by.into_iter().collect(),
            keys: Vec::new(),
            routes: Vec::new(),
            every_key: legacy_user,
            blocked: Vec::new(),
        };
        if let Some(relevant) = relevant.get(kind_index(resource)) {
            candidates.intersect_with(relevant);
        }
        for key in candidates.iter() {
            judge_key(policy, token_policies, member, resource, key, &mut access);
        }
        let listed = explanation.resources.len() < options.limit;
        let keyless_here = match resource {
            Resource::Child(child) => keyless_children
                .get(usize::from(child.kind))
                .copied()
                .unwrap_or(true),
            _ => keyless.get(kind_index(resource)).copied().unwrap_or(true),
        };
        if listed && options.routes && (!access.keys.is_empty() || legacy_user || keyless_here) {
            for (index, route) in routes.iter().enumerate() {
                if route_fits(policy, route, resource)
                    && may_call(policy, route, Some(resource), known, ip, options.now).is_ok()
                {
                    access.routes.push(index);
                }
            }
        }
        let granted = !access.keys.is_empty() || !access.routes.is_empty() || legacy_user;
        if granted {
            match resource {
                Resource::Account(_) => explanation.accounts += 1,
                Resource::Zone(..) => explanation.zones += 1,
                Resource::User(_) => explanation.users += 1,
                Resource::Child(_) => explanation.children += 1,
            }
        }
        if !options.blocked {
            access.blocked.clear();
        }
        if granted || !access.blocked.is_empty() {
            if listed {
                explanation.resources.push(access);
            } else {
                explanation.truncated = true;
            }
        }
    }
    if options.blocked
        && let Some(policies) = token_policies
    {
        explanation
            .blocked
            .extend(unreachable_selections(policy, known, policies));
    }
    Some(explanation)
}

fn kind_index(resource: Resource) -> usize {
    match resource {
        Resource::Account(_) => 0,
        Resource::Zone(..) => 1,
        Resource::User(_) => 2,
        Resource::Child(_) => 3,
    }
}

/// Per resource kind (account, zone, user, child resources), the keys the routes scoped to that kind
/// require.
fn relevant_keys(policy: &PolicySet, routes: &[Route]) -> [KeySet; 4] {
    let mut sets = [
        KeySet::empty(policy.keys.len()),
        KeySet::empty(policy.keys.len()),
        KeySet::empty(policy.keys.len()),
        KeySet::empty(policy.keys.len()),
    ];
    for route in routes {
        let index = match route.scope {
            Scope::Account { .. } => 0,
            Scope::Zone { .. } => 1,
            Scope::User => 2,
            Scope::Child { .. } => 3,
            Scope::Any | Scope::None => continue,
        };
        if let crate::routes::Requirement::AllOf(keys) | crate::routes::Requirement::AnyOf(keys) =
            &route.requirement
        {
            for key in keys.iter() {
                if let Some(set) = sets.get_mut(index) {
                    set.insert(*key);
                }
            }
        }
    }
    sets
}

/// Whether some route fitting resources of this kind requires no key (then they are tried even without a
/// granted key).
fn fits_keyless(policy: &PolicySet, routes: &[Route], resource: Resource) -> bool {
    routes.iter().any(|route| {
        route_fits(policy, route, resource)
            && (route.handler.is_some()
                || matches!(route.requirement, crate::routes::Requirement::None))
    })
}

/// The verdict of each layer on one key, recorded as granted or blocked, with where each grant came from:
/// the permission groups of the allowing policies, the user group of the member policy, the domain groups
/// that brought the zone in.
fn judge_key<'s>(
    policy: &'s PolicySet,
    token: Option<&'s [Policy]>,
    member: Option<&'s Member>,
    resource: Resource,
    key: KeyId,
    access: &mut ResourceAccess<'s>,
) {
    let name = policy.keys.name(key);
    let token_verdict = token.map(|policies| policy.key_verdict(policies, resource, key));
    // A user credential on an account or a zone is bounded by the member policies; on its own user only
    // the token's policies apply.
    let member_verdict = match resource {
        Resource::User(_) => None,
        _ => member.map(|member| policy.key_verdict(&member.policies, resource, key)),
    };
    let mut grant = KeyGrant {
        key: name,
        token_policy: None,
        token_groups: Vec::new(),
        member_policy: None,
        member_groups: Vec::new(),
        user_group: None,
        domain_groups: Vec::new(),
    };
    for (verdict, layer) in [(token_verdict, "token"), (member_verdict, "member")] {
        match verdict {
            None => {}
            Some(KeyVerdict::Allowed(id)) => {
                if layer == "token" {
                    grant.token_policy = Some(id);
                    if let Some((_, allowing)) = token.and_then(|list| find_policy(list, id)) {
                        grant.token_groups = policy.granting_groups(allowing, name);
                    }
                } else {
                    grant.member_policy = Some(id);
                    if let Some(member) = member
                        && let Some((index, allowing)) = find_policy(&member.policies, id)
                    {
                        grant.member_groups = policy.granting_groups(allowing, name);
                        grant.user_group =
                            policy.policy_group(member, index).map(|group| &*group.id);
                        let zone = match resource {
                            Resource::Zone(zone, _) => Some(zone),
                            Resource::Child(child)
                                if child.zone != crate::policy::model::NO_ZONE =>
                            {
                                Some(child.zone)
                            }
                            _ => None,
                        };
                        if let Some(zone) = zone {
                            grant.domain_groups = policy
                                .policy_domain_groups(member, index, zone)
                                .into_iter()
                                .map(|group| &*group.id)
                                .collect();
                        }
                    }
                }
            }
            Some(KeyVerdict::Denied(id)) => {
                let from_group = member
                    .filter(|_| layer == "member")
                    .and_then(|member| {
                        find_policy(&member.policies, id)
                            .and_then(|(index, _)| policy.policy_group(member, index))
                    })
                    .map(|group| format!(" (from user group {})", group.id))
                    .unwrap_or_default();
                access.blocked.push(BlockedKey {
                    key: name,
                    reason: format!("denied by {layer} policy {id}{from_group}"),
                    deny_policy: Some(id),
                });
                return;
            }
            Some(KeyVerdict::Missing) => {
                access.blocked.push(BlockedKey {
                    key: name,
                    reason: if layer == "member" {
                        "not granted by the user's member policies on this account (the token is bounded by them)".into()
                    } else {
                        "not granted by the token's policies".into()
                    },
                    deny_policy: None,
                });
                return;
            }
        }
    }
    access.keys.push(grant);
}

/// The policy of `policies` whose id is `id` (the very string a verdict borrowed from it), with its
/// position.
fn find_policy<'s>(policies: &'s [Policy], id: &str) -> Option<(usize, &'s Policy)> {
    policies
        .iter()
        .enumerate()
        .find(|(_, candidate)| std::ptr::eq(candidate.id.as_ptr(), id.as_ptr()))
        .or_else(|| {
            policies
                .iter()
                .enumerate()
                .find(|(_, candidate)| &*candidate.id == id)
        })
}

/// How a policy's selector reaches the resource.
fn selection(policy: &Policy, resource: Resource) -> Vec<&'static str> {
    let mut how = Vec::new();
    for item in policy.selector.items() {
        let word = match (item, resource) {
            (Select::AllAccounts, Resource::Account(_)) => "all accounts",
            (Select::AllZones, Resource::Zone(..)) => "all zones",
            (Select::Account(a), Resource::Account(b)) if *a == b => "named",
            (Select::AccountZones(a), Resource::Zone(_, b)) if *a == b => {
                "every zone of its account"
            }
            (Select::Zone(a), Resource::Zone(b, _)) if *a == b => "named (or by a domain group)",
            (Select::User(a), Resource::User(b)) if *a == b => "own user",
            (Select::AllBelow, Resource::Zone(..) | Resource::Child(_)) => "all accounts",
            (Select::AccountBelow(a), Resource::Zone(_, b)) if *a == b => {
                "every zone of its account"
            }
            (Select::AccountBelow(a), Resource::Child(child)) if *a == child.account => {
                "every resource of its account"
            }
            (Select::AllOfKind(kind), Resource::Child(child)) if *kind == child.kind => {
                "every one of its type"
            }
            (Select::AccountOfKind(a, kind), Resource::Child(child))
                if *a == child.account && *kind == child.kind =>
            {
                "every one of its type in its account"
            }
            (Select::Child(a), Resource::Child(child)) if *a == child.child => "named",
            (item, Resource::Child(child)) if item.covers(Resource::Child(child)) => "its zone",
            _ => continue,
        };
        how.push(word);
    }
    how
}

fn resource_name(policy: &PolicySet, resource: Resource) -> &str {
    match resource {
        Resource::Account(account) => policy
            .accounts
            .get(account as usize)
            .map_or("", |a| &*a.name),
        Resource::Zone(zone, _) => policy.zones.get(zone as usize).map_or("", |z| &*z.name),
        Resource::User(user) => policy.users.get(user as usize).map_or("", |u| &*u.email),
        Resource::Child(child) => policy
            .children
            .child(child.child)
            .map_or("any other of its type", |c| &*c.name),
    }
}

/// What a token's policies select outside the accounts it can reach (another account's resources for an
/// account token; accounts its user is not a member of for a user token).
fn unreachable_selections(
    policy: &PolicySet,
    known: Known,
    policies: &[Policy],
) -> Vec<BlockedResource> {
    let reachable: BTreeSet<u32> = reachable_resources(policy, known)
        .into_iter()
        .filter_map(Resource::account)
        .collect();
    let reason = match known {
        Known::Token(index) => match policy.token_gates.get(index as usize).map(|g| g.owner) {
            Some(Owner::Account(_)) => "an account-owned token acts only in its own account",
            _ => "the token's user is not a member of this account",
        },
        Known::LegacyKey(_) => "not a member",
    };
    let mut accounts: BTreeSet<u32> = BTreeSet::new();
    let mut everywhere = false;
    for item in policies.iter().flat_map(|p| p.selector.items()) {
        match *item {
            Select::AllAccounts | Select::AllZones | Select::AllBelow | Select::AllOfKind(_) => {
                everywhere = true
            }
            Select::Account(a)
            | Select::AccountZones(a)
            | Select::AccountBelow(a)
            | Select::AccountOfKind(a, _) => {
                accounts.insert(a);
            }
            Select::Child(child) => {
                if let Some(record) = policy.children.child(child) {
                    accounts.insert(record.account);
                }
            }
            Select::Zone(zone) => {
                if let Some(record) = policy.zones.get(zone as usize) {
                    accounts.insert(record.account);
                }
            }
            Select::User(_) => {}
        }
    }
    let mut blocked = Vec::new();
    if everywhere {
        let others = policy.accounts.len() - reachable.len().min(policy.accounts.len());
        if others > 0 {
            blocked.push(BlockedResource {
                what: format!(
                    "{others} other account(s) selected by a wildcard, and their zones and other resources"
                ),
                reason: reason.into(),
            });
        }
    }
    for account in accounts.difference(&reachable) {
        blocked.push(BlockedResource {
            what: format!(
                "{} (or its zones and other resources)",
                policy.resource_ref(Resource::Account(*account))
            ),
            reason: reason.into(),
        });
    }
    blocked
}
