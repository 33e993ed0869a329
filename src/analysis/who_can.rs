//! `permgate access who-can`: every credential that may call a route on a resource, or hold a key on it.

use std::net::IpAddr;

use crate::policy::model::{Owner, Policy, Resource};
use crate::policy::{
    AccessRequest, KeyId, KeyVerdict, Known, PolicySet, Presented, Required, Target,
};
use crate::routes::{Requirement, Route, Scope, canonicalize_request};
use crate::snapshot::Snapshot;

use super::{Credential, Usability, credentials, may_call, usability};

/// One credential in a who-can answer.
#[derive(Debug, Clone)]
pub struct Holder<'s> {
    pub credential: Credential<'s>,
    /// The policies that allow it (allowed), empty for routes that check no key.
    pub policies: Vec<String>,
    /// Why it is stopped (blocked holders only).
    pub reason: Option<String>,
    pub usability: Usability<'s>,
}

/// The answer of `who-can`.
#[derive(Debug, Clone)]
pub struct WhoCan<'s> {
    /// The route matched (route form).
    pub route: Option<usize>,
    /// The resource, as a resource key (none for routes that name no resource).
    pub resource: Option<String>,
    pub allowed: Vec<Holder<'s>>,
    pub blocked: Vec<Holder<'s>>,
}

/// Who may call `method target` (a request target as it would be sent) at `now`.
pub fn who_can_route<'s>(
    snapshot: &'s Snapshot,
    method: &str,
    target: &str,
    now: i64,
    with_blocked: bool,
) -> Result<WhoCan<'s>, String> {
    let policy = &snapshot.policy;
    let mut canonical =
        canonicalize_request(method, target).map_err(|rejection| rejection.to_string())?;
    let matched = snapshot
        .routes
        .route_request(method, &mut canonical, target)
        .map_err(|rejection| rejection.to_string())?
        .ok_or_else(|| format!("no route matches {method} {target}"))?;
    let route = matched.route;
    let index = snapshot
        .routes
        .routes()
        .iter()
        .position(|candidate| std::ptr::eq(candidate, route));
    let resource = match (&route.scope, matched.resource_id) {
        (Scope::Account { .. }, Some(id)) => Some(
            policy
                .account_by_id
                .get(id)
                .map(|account| Resource::Account(*account))
                .ok_or_else(|| format!("no account {id} in the config: nobody can call it"))?,
        ),
        (Scope::Zone { .. }, Some(id)) => Some(
            policy
                .zone_by_id
                .get(id)
                .map(|entry| Resource::Zone(entry.zone, entry.account))
                .ok_or_else(|| format!("no zone {id} in the config: nobody can call it"))?,
        ),
        (Scope::Child { kind, .. }, Some(name)) => {
            let parent = matched.parent_id.unwrap_or("");
            let kind = policy.resource_type(kind).ok_or_else(|| {
                format!("no resource type {kind} in the config: nobody can call it")
            })?;
            Some(Resource::Child(
                policy.child_resource(kind, parent, name).map_err(|what| {
                    format!("no {what} {parent} in the config: nobody can call it")
                })?,
            ))
        }
        _ => None,
    };
    let mut answer = WhoCan {
        route: index,
        resource: resource.map(|resource| policy.resource_ref(resource).to_string()),
        allowed: Vec::new(),
        blocked: Vec::new(),
    };
    if route.public {
        return Ok(answer);
    }
    let keys: &[KeyId] = match &route.requirement {
        Requirement::None => &[],
        Requirement::AllOf(keys) | Requirement::AnyOf(keys) => keys,
    };
    for known in candidates(policy, &route.scope, resource, with_blocked) {
        let Some(credential) = Credential::of(policy, known) else {
            continue;
        };
        let usability = usability(policy, known, now);
        let ip = usability.witness_ip.unwrap_or(super::ANY_IP);
        match may_call(policy, route, resource, known, ip, now) {
            Ok(policies) => answer.allowed.push(Holder {
                credential,
                policies,
                reason: None,
                usability,
            }),
            Err(reason) => {
                if with_blocked && holds(policy, known, route, resource, keys) {
                    answer.blocked.push(Holder {
                        credential,
                        policies: Vec::new(),
                        reason: Some(reason),
                        usability,
                    });
                }
            }
        }
    }
    Ok(answer)
}

/// Who holds `key` on `resource_key` (`<ns>.account.<id>`, `<ns>.account.zone.<id>`, `<ns>.user.<id>`).
pub fn who_can_key<'s>(
    snapshot: &'s Snapshot,
    key: &str,
    resource_key: &str,
    now: i64,
    with_blocked: bool,
) -> Result<WhoCan<'s>, String> {
    let policy = &snapshot.policy;
    let key_id = policy
        .keys
        .get(key)
        .ok_or_else(|| format!("no route requires the key {key:?}: nothing checks it"))?;
    let resource = parse_resource_key(policy, resource_key)?;
    let mut answer = WhoCan {
        route: None,
        resource: Some(policy.resource_ref(resource).to_string()),
        allowed: Vec::new(),
        blocked: Vec::new(),
    };
    let scope = match resource {
        Resource::Account(_) => Scope::Account { param: "".into() },
        Resource::Zone(..) => Scope::Zone { param: "".into() },
        Resource::User(_) => Scope::User,
        Resource::Child(_) => Scope::Child {
            kind: "".into(),
            param: "".into(),
            parent: crate::policy::model::ParentKind::Account,
            parent_param: "".into(),
        },
    };
    let resource_id = policy.resource_ref(resource).id;
    let child_ids = match resource {
        Resource::Child(child) => Some((child.kind, policy.child_path_ids(child))),
        _ => None,
    };
    let keys = [key_id];
    for known in candidates(policy, &scope, Some(resource), with_blocked) {
        let Some(credential) = Credential::of(policy, known) else {
            continue;
        };
        if let Resource::User(user) = resource
            && !owned_by_user(policy, known, user)
        {
            continue;
        }
        let usability = usability(policy, known, now);
        let ip: IpAddr = usability.witness_ip.unwrap_or(super::ANY_IP);
        let target = match (resource, &child_ids) {
            (Resource::Child(_), Some((kind, (parent, name)))) => Target::Child {
                kind: *kind,
                parent,
                name,
            },
            (Resource::Account(_), _) => Target::Account(resource_id),
            (Resource::Zone(..), _) => Target::Zone(resource_id),
            (Resource::User(_) | Resource::Child(_), _) => Target::User,
        };
        let decision = policy.evaluate(&AccessRequest {
            presented: Presented::Known(known),
            client_ip: ip,
            now,
            target,
            required: Required::AllOf(&keys),
        });
        match decision.outcome {
            Ok(()) => answer.allowed.push(Holder {
                credential,
                policies: decision
                    .policies
                    .iter()
                    .map(|id| (*id).to_string())
                    .collect(),
                reason: None,
                usability,
            }),
            Err(denial) => {
                if with_blocked && holds_keys(policy, known, Some(resource), &keys) {
                    answer.blocked.push(Holder {
                        credential,
                        policies: Vec::new(),
                        reason: Some(denial.to_string()),
                        usability,
                    });
                }
            }
        }
    }
    Ok(answer)
}

/// The resource a resource key names, in this config.
pub fn parse_resource_key(policy: &PolicySet, text: &str) -> Result<Resource, String> {
    if let Some(child) = parse_child_key(policy, text) {
        return child;
    }
    let rest = text
        .strip_prefix(&*policy.namespace)
        .and_then(|rest| rest.strip_prefix('.'))
        .ok_or_else(|| {
            format!(
                "{text:?} is not a resource key of this config ({ns}.account.<id>, {ns}.account.zone.<id> or {ns}.user.<id>)",
                ns = policy.namespace
            )
        })?;
    if let Some(id) = rest.strip_prefix("account.zone.") {
        return policy
            .zone_by_id
            .get(id)
            .map(|entry| Resource::Zone(entry.zone, entry.account))
            .ok_or_else(|| format!("no zone {id} in the config"));
    }
    if let Some(id) = rest.strip_prefix("account.") {
        return policy
            .account_by_id
            .get(id)
            .map(|account| Resource::Account(*account))
            .ok_or_else(|| format!("no account {id} in the config"));
    }
    if let Some(id) = rest.strip_prefix("user.") {
        return policy
            .user_by_id
            .get(id)
            .map(|user| Resource::User(*user))
            .ok_or_else(|| format!("no user {id} in the config"));
    }
    Err(format!("{text:?} names no account, zone or user"))
}

/// A child resource's key (`com.cloudflare.edge.r2.bucket.<ACCOUNT_ID>_default_<NAME>`), in this config.
fn parse_child_key(policy: &PolicySet, text: &str) -> Option<Result<Resource, String>> {
    for (kind, form) in policy.resource_types.iter().enumerate() {
        let Some((parent, name)) = form.parse(text) else {
            continue;
        };
        let kind = crate::policy::model::KindIdx::try_from(kind).ok()?;
        return Some(
            policy
                .child_resource(kind, parent, name)
                .map(Resource::Child)
                .map_err(|what| format!("no {what} {parent} in the config")),
        );
    }
    None
}

fn owned_by_user(policy: &PolicySet, known: Known, user: u32) -> bool {
    match known {
        Known::LegacyKey(owner) => owner == user,
        Known::Token(index) => policy
            .token_gates
            .get(index as usize)
            .is_some_and(|gate| gate.owner == Owner::User(user)),
    }
}

/// The credentials worth deciding for a route of this scope on this resource: for an account or a zone,
/// the account's own tokens and its members' tokens and keys (everyone else is refused before any policy:
/// listed only with `--blocked`); for the user scope, user credentials; otherwise every credential.
fn candidates(
    policy: &PolicySet,
    scope: &Scope,
    resource: Option<Resource>,
    everyone: bool,
) -> Vec<Known> {
    let account = resource.and_then(Resource::account);
    credentials(policy)
        .filter(|known| {
            let (user, own) = match *known {
                Known::Token(index) => {
                    match policy.token_gates.get(index as usize).map(|g| g.owner) {
                        Some(Owner::User(user)) => (Some(user), None),
                        Some(Owner::Account(own)) => (None, Some(own)),
                        None => return false,
                    }
                }
                Known::LegacyKey(user) => (Some(user), None),
            };
            match (scope, account) {
                (Scope::User, _) => user.is_some() || everyone,
                (
                    Scope::Account { .. } | Scope::Zone { .. } | Scope::Child { .. },
                    Some(account),
                ) => {
                    everyone
                        || own == Some(account)
                        || user.is_some_and(|user| policy.member(user, account).is_some())
                }
                _ => true,
            }
        })
        .collect()
}

/// Whether the credential's own first layer (a token's policies; a legacy key's member policies) allows
/// or denies one of the route's keys on the resource: it "holds" the access, whatever stops it.
fn holds(
    policy: &PolicySet,
    known: Known,
    route: &Route,
    resource: Option<Resource>,
    keys: &[KeyId],
) -> bool {
    if keys.is_empty() || route.handler.is_some() {
        return true;
    }
    holds_keys(policy, known, resource, keys)
}

fn holds_keys(
    policy: &PolicySet,
    known: Known,
    resource: Option<Resource>,
    keys: &[KeyId],
) -> bool {
    let Some(resource) = resource else {
        return true;
    };
    let first: &[Policy] = match known {
        Known::Token(index) => policy
            .token_gates
            .get(index as usize)
            .map_or(&[], |gate| &*gate.policies),
        Known::LegacyKey(user) => match resource {
            Resource::User(owner) => return owner == user,
            _ => resource
                .account()
                .and_then(|account| policy.member(user, account))
                .map_or(&[], |member| &*member.policies),
        },
    };
    keys.iter().any(|key| {
        !matches!(
            policy.key_verdict(first, resource, *key),
            KeyVerdict::Missing
        )
    })
}
