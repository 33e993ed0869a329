//! Access analysis over one compiled snapshot: what a credential can do, and who can call a route. Pure.
//!
//! Every answer is computed by the decision's own rules, not a second reading of them: a key on a resource
//! is judged by [`PolicySet::key_verdict`] (the rule `evaluate` applies to each policy list), whether a
//! token is usable at a time by [`PolicySet::token_usable_at`], and whether a route may be called on a
//! resource by [`pipeline::authorize_known`] — the proxy's decision once the route is matched, with the
//! credential named by its place in the config instead of presented (the analysis knows no secret). The
//! exhaustive test `tests/suite/access.rs` compares both directions with `pipeline::decide` on real requests.
//!
//! - [`explain()`]: for one credential, every resource it can act on, with the keys granted (and which policy
//!   of each layer allows them) and the routes it may call there; what it selects but cannot use.
//! - [`who_can_route`] and [`who_can_key`]: for a route and a resource, or a key and a resource, every credential that would be
//!   allowed, with the policies that decided, and (on request) those stopped and why.

pub mod diff;
pub mod explain;
pub mod replay;
pub mod who_can;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::pipeline;
use crate::policy::model::{IpCondition, Owner, Resource};
use crate::policy::{Known, PolicySet};
use crate::routes::{CredentialKind, Route, Scope};

pub use diff::{AccessDiff, diff};
pub use explain::{Explanation, KeyGrant, ResourceAccess, explain};
pub use who_can::{Holder, WhoCan, who_can_key, who_can_route};

/// Who a credential is, in words and ids (never a secret).
#[derive(Debug, Clone, Copy)]
pub struct Credential<'s> {
    pub known: Known,
    pub kind: CredentialKind,
    /// The token id; none for a legacy key.
    pub token_id: Option<&'s str>,
    /// The token's name; none for a legacy key.
    pub token_name: Option<&'s str>,
    /// `user` or `account`.
    pub owner_kind: &'static str,
    /// The owning user's or account's id.
    pub owner_id: &'s str,
    /// The owning user's email (user credentials).
    pub owner_email: Option<&'s str>,
}

impl<'s> Credential<'s> {
    /// The credential at `known`, or `None` when the index is not in the config.
    pub fn of(policy: &'s PolicySet, known: Known) -> Option<Self> {
        match known {
            Known::Token(index) => {
                let token = policy.tokens.get(index as usize)?;
                let (kind, owner_kind, owner_id, owner_email) = match token.owner {
                    Owner::User(user) => {
                        let user = policy.users.get(user as usize)?;
                        (
                            CredentialKind::UserToken,
                            "user",
                            &*user.id,
                            Some(&*user.email),
                        )
                    }
                    Owner::Account(account) => (
                        CredentialKind::AccountToken,
                        "account",
                        &*policy.accounts.get(account as usize)?.id,
                        None,
                    ),
                };
                Some(Self {
                    known,
                    kind,
                    token_id: Some(&token.id),
                    token_name: Some(&token.name),
                    owner_kind,
                    owner_id,
                    owner_email,
                })
            }
            Known::LegacyKey(user) => {
                let record = policy.users.get(user as usize)?;
                record.api_key_sha256?;
                Some(Self {
                    known,
                    kind: CredentialKind::ApiKey,
                    token_id: None,
                    token_name: None,
                    owner_kind: "user",
                    owner_id: &record.id,
                    owner_email: Some(&record.email),
                })
            }
        }
    }

    /// `token <id>` or `legacy key of <email>`: how outputs name it.
    pub fn label(&self) -> String {
        match (self.token_id, self.owner_email) {
            (Some(id), _) => format!("token {id}"),
            (None, Some(email)) => format!("legacy key of {email}"),
            (None, None) => format!("legacy key of user {}", self.owner_id),
        }
    }
}

/// Every credential of the config: each token, then each user's legacy key.
pub fn credentials(policy: &PolicySet) -> impl Iterator<Item = Known> + '_ {
    let tokens =
        (0..policy.tokens.len()).filter_map(|index| u32::try_from(index).ok().map(Known::Token));
    let keys = policy
        .users
        .iter()
        .enumerate()
        .filter(|(_, user)| user.api_key_sha256.is_some())
        .filter_map(|(index, _)| u32::try_from(index).ok().map(Known::LegacyKey));
    tokens.chain(keys)
}

/// The token with this id (ids are unique in a config that loaded).
pub fn token_by_id(policy: &PolicySet, id: &str) -> Option<Known> {
    policy
        .tokens
        .iter()
        .position(|token| &*token.id == id)
        .and_then(|index| u32::try_from(index).ok())
        .map(Known::Token)
}

/// The token whose secret has this SHA-256 (what `explain --token` looks up; the secret itself stays with
/// the caller).
pub fn token_by_secret_sha256(policy: &PolicySet, digest: &[u8; 32]) -> Option<Known> {
    policy
        .token_by_hash
        .get(digest)
        .map(|index| Known::Token(*index))
}

/// Every token of the config by its id (built once by who looks many up: a diff, a replay).
pub fn token_ids(policy: &PolicySet) -> std::collections::HashMap<&str, Known> {
    policy
        .tokens
        .iter()
        .enumerate()
        .filter_map(|(index, token)| {
            u32::try_from(index)
                .ok()
                .map(|index| (&*token.id, Known::Token(index)))
        })
        .collect()
}

/// The user with this id or email, as the index of its record.
pub fn user_by_id_or_email(policy: &PolicySet, id_or_email: &str) -> Option<u32> {
    policy
        .users
        .iter()
        .position(|user| &*user.id == id_or_email || user.email.eq_ignore_ascii_case(id_or_email))
        .and_then(|index| u32::try_from(index).ok())
}

/// When and from where a credential may be used, as configured.
#[derive(Debug, Clone)]
pub struct Usability<'s> {
    /// Why it cannot be used at the analysed time whatever the IP (disabled, expired, not yet valid).
    pub unusable: Option<String>,
    /// `not_before` as configured.
    pub not_before: Option<&'s str>,
    /// `expires_on` as configured.
    pub expires_on: Option<&'s str>,
    /// The IP condition, when the token has one: everything it grants holds only from those addresses.
    pub ip_condition: Option<&'s IpCondition>,
    /// An address inside the IP condition (the analysis decides as if the request came from it); `None`
    /// with a condition that no address satisfies, which makes the token unusable.
    pub witness_ip: Option<IpAddr>,
}

impl Usability<'_> {
    /// Whether what the analysis lists holds only under a condition (an IP range or a validity window).
    pub fn conditional(&self) -> bool {
        self.ip_condition.is_some() || self.not_before.is_some() || self.expires_on.is_some()
    }
}

/// The address the analysis decides from when a credential has no IP condition: any address does.
const ANY_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));

/// Whether and how `known` may be used at `now` (tokens: status, window, IP condition; keys: always).
pub fn usability(policy: &PolicySet, known: Known, now: i64) -> Usability<'_> {
    let Known::Token(index) = known else {
        return Usability {
            unusable: None,
            not_before: None,
            expires_on: None,
            ip_condition: None,
            witness_ip: Some(ANY_IP),
        };
    };
    let token = policy.tokens.get(index as usize);
    let mut unusable = policy
        .token_usable_at(index, now)
        .err()
        .map(|denial| denial.to_string());
    let ip_condition = token.and_then(|token| token.ip_condition.as_ref());
    let witness_ip = match ip_condition {
        None => Some(ANY_IP),
        Some(condition) => condition_witness(condition),
    };
    if witness_ip.is_none() && unusable.is_none() {
        unusable = Some("no client address satisfies the token's IP condition".into());
    }
    Usability {
        unusable,
        not_before: token.and_then(|token| token.not_before.as_ref().map(|(_, text)| &**text)),
        expires_on: token.and_then(|token| token.expires_on.as_ref().map(|(_, text)| &**text)),
        ip_condition,
        witness_ip,
    }
}

/// An address that satisfies `condition`, if any. The addresses it allows are the `in` ranges (or
/// everything) minus the `not_in` ranges: a union of intervals, each of which starts at the start of an
/// `in` range (or of the address space) or just after the end of a `not_in` range, so those are the only
/// candidates to try.
pub fn condition_witness(condition: &IpCondition) -> Option<IpAddr> {
    let mut candidates: Vec<IpAddr> = Vec::new();
    match &condition.inside {
        Some(ranges) => {
            for range in ranges {
                candidates.push(range.network());
                candidates.push(range.broadcast());
            }
        }
        None => candidates.extend([
            IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            IpAddr::V4(Ipv4Addr::BROADCAST),
            IpAddr::V6(Ipv6Addr::UNSPECIFIED),
            IpAddr::V6(Ipv6Addr::from(u128::MAX)),
        ]),
    }
    for range in &condition.not_in {
        candidates.extend(neighbour(range.network(), -1));
        candidates.extend(neighbour(range.broadcast(), 1));
    }
    candidates.into_iter().find(|ip| condition.allows(*ip))
}

fn neighbour(ip: IpAddr, step: i8) -> Option<IpAddr> {
    match ip {
        IpAddr::V4(v4) => {
            let n = u32::from(v4);
            let n = if step < 0 {
                n.checked_sub(1)?
            } else {
                n.checked_add(1)?
            };
            Some(IpAddr::V4(Ipv4Addr::from(n)))
        }
        IpAddr::V6(v6) => {
            let n = u128::from(v6);
            let n = if step < 0 {
                n.checked_sub(1)?
            } else {
                n.checked_add(1)?
            };
            Some(IpAddr::V6(Ipv6Addr::from(n)))
        }
    }
}

/// Whether a route's scope targets resources of this kind (account routes accounts, a child route children
/// of its type, and so on).
pub fn route_fits(policy: &PolicySet, route: &Route, resource: Resource) -> bool {
    match (&route.scope, resource) {
        (Scope::Account { .. }, Resource::Account(_))
        | (Scope::Zone { .. }, Resource::Zone(..))
        | (Scope::User, Resource::User(_)) => true,
        (Scope::Child { kind, .. }, Resource::Child(child)) => {
            policy.resource_type(kind) == Some(child.kind)
        }
        _ => false,
    }
}

/// Whether `known` may call `route` on `resource` at `now` from `ip`: the proxy's decision once the route
/// is matched ([`pipeline::authorize_known`]), with the resource's id where the path would carry it.
pub fn may_call(
    policy: &PolicySet,
    route: &Route,
    resource: Option<Resource>,
    known: Known,
    ip: IpAddr,
    now: i64,
) -> Result<Vec<String>, String> {
    let id = resource.map(|resource| policy.resource_ref(resource).id);
    let child_ids = match resource {
        Some(Resource::Child(child)) => Some(policy.child_path_ids(child)),
        _ => None,
    };
    let ids = match (&route.scope, id, &child_ids) {
        (Scope::Account { .. } | Scope::Zone { .. }, Some(id), _) => {
            pipeline::ResourceIds::of(Some(id))
        }
        (Scope::Child { .. }, _, Some((parent, name))) => pipeline::ResourceIds {
            id: Some(name),
            parent: Some(parent),
        },
        _ => pipeline::ResourceIds::default(),
    };
    match pipeline::authorize_known(policy, route, ids, known, ip, now) {
        Ok(decision) => match decision.outcome {
            Ok(()) => Ok(decision
                .policies
                .iter()
                .map(|id| (*id).to_string())
                .collect()),
            Err(denial) => Err(denial.to_string()),
        },
        Err(refusal) => Err(refusal.reason()),
    }
}

/// The resources a credential could act on at all: its own user (user credentials), and the accounts it
/// may reach (an account token's own account; a user's memberships) with every zone of each, and their
/// child resources (those policies name, and one of each type that none names:
/// [`PolicySet::account_children`]).
pub fn reachable_resources(policy: &PolicySet, known: Known) -> Vec<Resource> {
    let mut resources = Vec::new();
    let account = |resources: &mut Vec<Resource>, account: u32| {
        resources.push(Resource::Account(account));
        if let Some(record) = policy.accounts.get(account as usize) {
            resources.extend(
                record
                    .zones
                    .iter()
                    .map(|zone| Resource::Zone(*zone, account)),
            );
        }
        resources.extend(
            policy
                .account_children(account)
                .into_iter()
                .map(Resource::Child),
        );
    };
    let user = match known {
        Known::Token(index) => match policy
            .token_gates
            .get(index as usize)
            .map(|gate| gate.owner)
        {
            Some(Owner::Account(own)) => {
                account(&mut resources, own);
                return resources;
            }
            Some(Owner::User(user)) => user,
            None => return resources,
        },
        Known::LegacyKey(user) => user,
    };
    resources.push(Resource::User(user));
    if let Some(record) = policy.users.get(user as usize) {
        for membership in &record.memberships {
            account(&mut resources, *membership);
        }
    }
    resources
}
