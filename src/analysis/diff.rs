//! `permgate access diff`: the access gained and lost between two configs, per credential × resource × key.
//!
//! Both configs are analysed with [`super::explain()`] (the decision's own rules); credentials are matched by
//! token id (a legacy key by its user's id), resources by resource key, keys by name, routes by id. Each
//! gained access comes with the routes it opens and one `permgate check` line that shows it allowed.

use std::collections::{BTreeMap, BTreeSet};

use crate::policy::model::{Resource, Status};
use crate::policy::{Known, PolicySet};
use crate::routes::{Requirement, Route, Scope};
use crate::snapshot::Snapshot;

use super::explain::{ExplainOptions, explain};
use super::{Credential, credentials, may_call, usability};

/// How a credential is named across configs: `token:<id>` or `key:<user id>`.
pub type CredentialName = String;

/// What one credential holds: (resource key, permission key) pairs.
#[derive(Debug, Clone, Default)]
pub struct Holdings {
    /// The credential in its own config.
    pub known: Option<Known>,
    pub label: String,
    pub token_id: Option<String>,
    pub user: Option<String>,
    pub grants: BTreeSet<(String, String)>,
}

/// One credential's change on one resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessChange {
    pub credential: CredentialName,
    /// `token <id>` or `legacy key of <email>`.
    pub label: String,
    pub resource: String,
    pub keys: Vec<String>,
    /// Routes that became callable (gained) or stopped being callable (lost) on the resource.
    pub routes: Vec<String>,
    /// A `permgate check` command line against the new config that shows a gained access allowed.
    pub example: Option<String>,
}

/// A token's lifecycle change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenChange {
    pub token_id: String,
    /// `added`, `removed`, `disabled`, `expired`, `enabled`.
    pub change: &'static str,
}

/// Everything that differs.
#[derive(Debug, Clone, Default)]
pub struct AccessDiff {
    pub gained: Vec<AccessChange>,
    pub lost: Vec<AccessChange>,
    pub routes_added: Vec<String>,
    pub routes_removed: Vec<String>,
    pub routes_changed: Vec<String>,
    pub tokens: Vec<TokenChange>,
}

impl AccessDiff {
    /// Whether anything differs.
    pub fn is_empty(&self) -> bool {
        self.gained.is_empty()
            && self.lost.is_empty()
            && self.routes_added.is_empty()
            && self.routes_removed.is_empty()
            && self.routes_changed.is_empty()
            && self.tokens.is_empty()
    }

    /// How many (credential, resource, key) grants were gained and lost.
    pub fn counts(&self) -> (usize, usize) {
        // A grant per key; a route that moved without any key moving counts once.
        let count = |changes: &[AccessChange]| changes.iter().map(|c| c.keys.len().max(1)).sum();
        (count(&self.gained), count(&self.lost))
    }
}

/// The name of a credential across configs.
pub fn credential_name(credential: &Credential<'_>) -> CredentialName {
    match credential.token_id {
        Some(id) => format!("token:{id}"),
        None => format!("key:{}", credential.owner_id),
    }
}

/// What every credential of a config holds at `now` (unusable credentials hold nothing).
pub fn holdings(snapshot: &Snapshot, now: i64) -> BTreeMap<CredentialName, Holdings> {
    holdings_of(snapshot, now, credentials(&snapshot.policy))
}

/// What the given credentials hold at `now`.
fn holdings_of(
    snapshot: &Snapshot,
    now: i64,
    which: impl Iterator<Item = Known>,
) -> BTreeMap<CredentialName, Holdings> {
    let mut out = BTreeMap::new();
    for known in which {
        let Some(explanation) = explain(
            snapshot,
            known,
            ExplainOptions {
                now,
                limit: usize::MAX,
                blocked: false,
                routes: false,
            },
        ) else {
            continue;
        };
        let credential = explanation.credential;
        let mut grants = BTreeSet::new();
        for access in &explanation.resources {
            let resource = access.resource.to_string();
            if access.every_key {
                grants.insert((resource.clone(), "*".to_string()));
            }
            for key in &access.keys {
                grants.insert((resource.clone(), key.key.to_string()));
            }
        }
        out.insert(
            credential_name(&credential),
            Holdings {
                known: Some(known),
                label: credential.label(),
                token_id: credential.token_id.map(str::to_string),
                user: credential.owner_email.map(str::to_string),
                grants,
            },
        );
    }
    out
}

/// The access gained and lost from `old` to `new` at `now`; `new_config` is the path the check lines name.
pub fn diff(old: &Snapshot, new: &Snapshot, now: i64, new_config: &str) -> AccessDiff {
    diff_with(old, new, now, new_config, true)
}

/// [`diff`], with `only_changed_tokens: false` analysing every credential of both configs even when only
/// tokens differ (the equivalence test compares the two).
pub fn diff_with(
    old: &Snapshot,
    new: &Snapshot,
    now: i64,
    new_config: &str,
    only_changed_tokens: bool,
) -> AccessDiff {
    // When everything but some tokens is the same, only the tokens that differ can hold anything else:
    // the others are not analysed at all (a one-file change to a 1M-token config costs that file).
    let changed = if only_changed_tokens {
        changed_tokens(&old.policy, &new.policy)
    } else {
        None
    };
    let (before, after) = match changed {
        Some((old_changed, new_changed)) => (
            holdings_of(old, now, old_changed.into_iter()),
            holdings_of(new, now, new_changed.into_iter()),
        ),
        None => (holdings(old, now), holdings(new, now)),
    };
    let mut result = AccessDiff::default();
    let names: BTreeSet<&CredentialName> = before.keys().chain(after.keys()).collect();
    let empty = Holdings::default();
    for name in names {
        let old_holdings = before.get(name).unwrap_or(&empty);
        let new_holdings = after.get(name).unwrap_or(&empty);
        let label = if new_holdings.label.is_empty() {
            &old_holdings.label
        } else {
            &new_holdings.label
        };
        for (changes, from, to, snapshot, gained) in [
            (&mut result.gained, old_holdings, new_holdings, new, true),
            (&mut result.lost, new_holdings, old_holdings, old, false),
        ] {
            // The credential as the config that holds these grants knows it.
            let known = to.known;
            let mut by_resource: BTreeMap<&str, Vec<String>> = BTreeMap::new();
            for (resource, key) in to.grants.difference(&from.grants) {
                by_resource.entry(resource).or_default().push(key.clone());
            }
            for (resource, keys) in by_resource {
                let (routes, example) = match known {
                    Some(known) => {
                        routes_for(snapshot, known, resource, &keys, now, new_config, gained)
                    }
                    None => (Vec::new(), None),
                };
                changes.push(AccessChange {
                    credential: name.clone(),
                    label: label.clone(),
                    resource: resource.to_string(),
                    keys,
                    routes,
                    example,
                });
            }
        }
    }
    route_changes(old, new, &mut result);
    route_access_changes(old, new, now, new_config, &mut result);
    result.tokens = token_changes(&old.policy, &new.policy, now);
    result
}

/// For every route added, removed or changed: the credentials and resources that may call it in one
/// config and not the other (a route whose keys change moves access without any grant changing).
fn route_access_changes(
    old: &Snapshot,
    new: &Snapshot,
    now: i64,
    new_config: &str,
    result: &mut AccessDiff,
) {
    let labels: BTreeSet<&String> = result
        .routes_added
        .iter()
        .chain(&result.routes_removed)
        .chain(&result.routes_changed)
        .collect();
    if labels.is_empty() {
        return;
    }
    // (credential, resource or "", route) -> example line (new side)
    let callers = |snapshot: &Snapshot, examples: bool| {
        let mut out: BTreeMap<(CredentialName, String, String), Option<String>> = BTreeMap::new();
        let policy = &snapshot.policy;
        let routes: Vec<&Route> = snapshot
            .routes
            .routes()
            .iter()
            .filter(|route| labels.contains(&route.label.to_string()) && !route.public)
            .collect();
        for known in credentials(policy) {
            let Some(credential) = Credential::of(policy, known) else {
                continue;
            };
            let usability = usability(policy, known, now);
            let (Some(ip), None) = (usability.witness_ip, &usability.unusable) else {
                continue;
            };
            let name = credential_name(&credential);
            let resources = super::reachable_resources(policy, known);
            for route in &routes {
                let targets: Vec<Option<Resource>> = match route.scope {
                    Scope::Any | Scope::None => vec![None],
                    _ => resources
                        .iter()
                        .filter(|resource| super::route_fits(policy, route, **resource))
                        .map(|resource| Some(*resource))
                        .collect(),
                };
                for resource in targets {
                    if may_call(policy, route, resource, known, ip, now).is_ok() {
                        let shown = resource
                            .map(|resource| policy.resource_ref(resource).to_string())
                            .unwrap_or_default();
                        let example = match (examples, resource) {
                            (true, Some(resource)) => Some(check_line(
                                policy, route, resource, known, new_config, &usability,
                            )),
                            _ => None,
                        };
                        out.insert((name.clone(), shown, route.label.to_string()), example);
                    }
                }
            }
        }
        out
    };
    let before = callers(old, false);
    let after = callers(new, true);
    let labels_of = |snapshot: &Snapshot| -> BTreeMap<String, String> {
        credentials(&snapshot.policy)
            .filter_map(|known| Credential::of(&snapshot.policy, known))
            .map(|credential| (credential_name(&credential), credential.label()))
            .collect()
    };
    let (old_labels, new_labels) = (labels_of(old), labels_of(new));
    for ((name, resource, route), example) in &after {
        if !before.contains_key(&(name.clone(), resource.clone(), route.clone())) {
            result.gained.push(AccessChange {
                credential: name.clone(),
                label: new_labels.get(name).cloned().unwrap_or_default(),
                resource: resource.clone(),
                keys: Vec::new(),
                routes: vec![route.clone()],
                example: example.clone(),
            });
        }
    }
    for (name, resource, route) in before.keys() {
        if !after.contains_key(&(name.clone(), resource.clone(), route.clone())) {
            result.lost.push(AccessChange {
                credential: name.clone(),
                label: old_labels.get(name).cloned().unwrap_or_default(),
                resource: resource.clone(),
                keys: Vec::new(),
                routes: vec![route.clone()],
                example: None,
            });
        }
    }
}

/// The routes of `snapshot` that need one of `keys`, fit the resource and that the credential may call
/// there; and for a gain, a `permgate check` line for the first.
fn routes_for(
    snapshot: &Snapshot,
    known: Known,
    resource_key: &str,
    keys: &[String],
    now: i64,
    config: &str,
    gained: bool,
) -> (Vec<String>, Option<String>) {
    let policy = &snapshot.policy;
    let Ok(resource) = super::who_can::parse_resource_key(policy, resource_key) else {
        return (Vec::new(), None);
    };
    let usability = usability(policy, known, now);
    let ip = usability.witness_ip.unwrap_or(super::ANY_IP);
    let mut routes = Vec::new();
    let mut example = None;
    for route in snapshot.routes.routes() {
        if !super::route_fits(policy, route, resource) || !needs_one_of(policy, route, keys) {
            continue;
        }
        if may_call(policy, route, Some(resource), known, ip, now).is_err() {
            continue;
        }
        routes.push(route.label.to_string());
        if gained && example.is_none() {
            example = Some(check_line(
                policy, route, resource, known, config, &usability,
            ));
        }
    }
    (routes, example)
}

fn needs_one_of(policy: &PolicySet, route: &Route, keys: &[String]) -> bool {
    let required = match &route.requirement {
        Requirement::None => return keys.iter().any(|key| key == "*"),
        Requirement::AllOf(ids) | Requirement::AnyOf(ids) => ids,
    };
    required.iter().any(|id| {
        keys.iter()
            .any(|key| key == "*" || key == policy.keys.name(*id))
    })
}

/// `permgate check --config NEW --token-id ID METHOD PATH` (or `--user` for a legacy key).
fn check_line(
    policy: &PolicySet,
    route: &Route,
    resource: Resource,
    known: Known,
    config: &str,
    usability: &super::Usability<'_>,
) -> String {
    let id = policy.resource_ref(resource).id;
    let method = route
        .methods
        .split(',')
        .next()
        .map(str::trim)
        .filter(|method| *method != "*")
        .unwrap_or("GET");
    let who = match known {
        Known::Token(index) => format!(
            "--token-id {}",
            policy.tokens.get(index as usize).map_or("", |t| &*t.id)
        ),
        Known::LegacyKey(user) => format!(
            "--user {}",
            policy.users.get(user as usize).map_or("", |u| &*u.email)
        ),
    };
    let ip = match (usability.ip_condition, usability.witness_ip) {
        (Some(_), Some(ip)) => format!(" --ip {ip}"),
        _ => String::new(),
    };
    let target = match (&route.scope, resource) {
        (
            Scope::Child {
                param,
                parent_param,
                ..
            },
            Resource::Child(child),
        ) => {
            let (parent, name) = policy.child_path_ids(child);
            child_target(route, param, &name, parent_param, parent)
        }
        _ => sample_target(route, id),
    };
    format!("permgate check --config {config} {who}{ip} {method} {target}")
}

/// A request target for `route` with the resource's id in its scope parameter (other parameters `x1`).
pub fn sample_target(route: &Route, resource_id: &str) -> String {
    let scope_param = match &route.scope {
        Scope::Account { param } | Scope::Zone { param } => Some(&**param),
        _ => None,
    };
    fill_target(route, |name| {
        (Some(name) == scope_param).then_some(resource_id)
    })
}

/// A request target for a child-scoped route: `name` in the child's parameter, `parent` in its parent's,
/// `x1` in the others.
pub fn child_target(
    route: &Route,
    param: &str,
    name: &str,
    parent_param: &str,
    parent: &str,
) -> String {
    fill_target(route, |candidate| {
        if candidate == param {
            Some(name)
        } else if candidate == parent_param {
            Some(parent)
        } else {
            None
        }
    })
}

/// The route's pattern with each parameter replaced by what `value` gives for its name, else `x1` (`x1/y1`
/// for a catch-all).
fn fill_target<'v>(route: &Route, value: impl Fn(&str) -> Option<&'v str>) -> String {
    let mut out = String::new();
    let mut rest = &*route.pattern;
    while let Some(open) = rest.find('{') {
        let Some(close) = rest[open..].find('}').map(|end| end + open) else {
            break;
        };
        out.push_str(&rest[..open]);
        let name = &rest[open + 1..close];
        if let Some(given) = value(name) {
            out.push_str(given);
        } else if name.starts_with('*') {
            out.push_str("x1/y1");
        } else {
            out.push_str("x1");
        }
        rest = &rest[close + 1..];
    }
    out.push_str(rest);
    out
}

/// A route's requirements in words, to compare routes across configs.
fn route_signature(policy: &PolicySet, route: &Route) -> String {
    let keys = |ids: &[crate::policy::KeyId]| {
        ids.iter()
            .map(|id| policy.keys.name(*id))
            .collect::<Vec<_>>()
            .join(",")
    };
    let requirement = match &route.requirement {
        Requirement::None => "none".to_string(),
        Requirement::AllOf(ids) => format!("all_of[{}]", keys(ids)),
        Requirement::AnyOf(ids) => format!("any_of[{}]", keys(ids)),
    };
    let principals: Vec<&str> = crate::routes::CredentialKind::ALL
        .iter()
        .filter(|kind| route.principals.accepts(**kind))
        .map(|kind| kind.as_str())
        .collect();
    format!(
        "{} {} {requirement} {:?} public={} handler={:?} principals={}",
        route.methods,
        route.pattern,
        route.scope,
        route.public,
        route.handler,
        principals.join(",")
    )
}

fn route_changes(old: &Snapshot, new: &Snapshot, result: &mut AccessDiff) {
    let table = |snapshot: &Snapshot| -> BTreeMap<String, String> {
        snapshot
            .routes
            .routes()
            .iter()
            .map(|route| {
                (
                    route.label.to_string(),
                    route_signature(&snapshot.policy, route),
                )
            })
            .collect()
    };
    let before = table(old);
    let after = table(new);
    for (label, signature) in &after {
        match before.get(label) {
            None => result.routes_added.push(label.clone()),
            Some(previous) if previous != signature => result.routes_changed.push(label.clone()),
            Some(_) => {}
        }
    }
    result.routes_removed = before
        .keys()
        .filter(|label| !after.contains_key(*label))
        .cloned()
        .collect();
}

fn token_changes(old: &PolicySet, new: &PolicySet, now: i64) -> Vec<TokenChange> {
    let state = |policy: &PolicySet| -> BTreeMap<String, &'static str> {
        policy
            .tokens
            .iter()
            .enumerate()
            .map(|(index, token)| {
                let state = match token.status {
                    Status::Disabled => "disabled",
                    Status::Expired => "expired",
                    Status::Active => {
                        match u32::try_from(index).map(|index| policy.token_usable_at(index, now)) {
                            Ok(Err(crate::policy::Denial::TokenExpired { .. })) => "expired",
                            _ => "active",
                        }
                    }
                };
                (token.id.to_string(), state)
            })
            .collect()
    };
    let before = state(old);
    let after = state(new);
    let mut changes = Vec::new();
    for (id, now_state) in &after {
        match before.get(id) {
            None => changes.push(TokenChange {
                token_id: id.clone(),
                change: "added",
            }),
            Some(was) if was != now_state => changes.push(TokenChange {
                token_id: id.clone(),
                change: if *now_state == "active" {
                    "enabled"
                } else {
                    now_state
                },
            }),
            Some(_) => {}
        }
    }
    for id in before.keys() {
        if !after.contains_key(id) {
            changes.push(TokenChange {
                token_id: id.clone(),
                change: "removed",
            });
        }
    }
    changes
}

/// When the two configs differ only in tokens (same users, accounts, zones, memberships, member policies,
/// keys and catalog), the tokens that differ on either side; `None` when anything else differs (then
/// every credential is analysed). Tokens are compared by what decisions read: owner, status, validity,
/// IP condition, and each policy's id, effect, key set and resources.
pub fn changed_tokens(old: &PolicySet, new: &PolicySet) -> Option<(Vec<Known>, Vec<Known>)> {
    if !same_entities(old, new) {
        return None;
    }
    let (old_index, new_index) = (super::token_ids(old), super::token_ids(new));
    let mut old_changed = Vec::new();
    let mut new_changed = Vec::new();
    let same = |a: Known, b: Known| match (a, b) {
        (Known::Token(i), Known::Token(j)) => same_token(old, i, new, j),
        _ => false,
    };
    for (id, &a) in &old_index {
        if !new_index.get(id).is_some_and(|&b| same(a, b)) {
            old_changed.push(a);
        }
    }
    for (id, &b) in &new_index {
        if !old_index.get(id).is_some_and(|&a| same(a, b)) {
            new_changed.push(b);
        }
    }
    old_changed.sort();
    new_changed.sort();
    Some((old_changed, new_changed))
}

fn same_entities(old: &PolicySet, new: &PolicySet) -> bool {
    let keys_equal = old.keys.len() == new.keys.len()
        && old
            .keys
            .iter()
            .zip(new.keys.iter())
            .all(|((_, a), (_, b))| a == b);
    keys_equal
        && old.namespace == new.namespace
        && old.users.len() == new.users.len()
        && old.users.iter().zip(&new.users).all(|(a, b)| {
            a.id == b.id
                && a.email == b.email
                && a.api_key_sha256 == b.api_key_sha256
                && a.memberships == b.memberships
        })
        && old.accounts.len() == new.accounts.len()
        && old
            .accounts
            .iter()
            .zip(&new.accounts)
            .all(|(a, b)| a.id == b.id && a.zones == b.zones)
        && old.zones.len() == new.zones.len()
        && old
            .zones
            .iter()
            .zip(&new.zones)
            .all(|(a, b)| a.id == b.id && a.account == b.account)
        && old.member_by_user_account.len() == new.member_by_user_account.len()
        && old.member_by_user_account.iter().all(|(at, a)| {
            new.member_by_user_account.get(at).is_some_and(|b| {
                a.api_access == b.api_access && same_policies(old, &a.policies, new, &b.policies)
            })
        })
}

fn same_token(old: &PolicySet, i: u32, new: &PolicySet, j: u32) -> bool {
    let (Some(a), Some(b)) = (old.tokens.get(i as usize), new.tokens.get(j as usize)) else {
        return false;
    };
    let (Some(ga), Some(gb)) = (
        old.token_gates.get(i as usize),
        new.token_gates.get(j as usize),
    ) else {
        return false;
    };
    let same_condition = match (&a.ip_condition, &b.ip_condition) {
        (None, None) => true,
        (Some(x), Some(y)) => x.inside == y.inside && x.not_in == y.not_in,
        _ => false,
    };
    a.owner == b.owner
        && a.status == b.status
        && ga.valid_from == gb.valid_from
        && ga.valid_until == gb.valid_until
        && a.expires_on.is_some() == b.expires_on.is_some()
        && same_condition
        && same_policies(old, &ga.policies, new, &gb.policies)
}

fn same_policies(
    old: &PolicySet,
    a: &[crate::policy::model::Policy],
    new: &PolicySet,
    b: &[crate::policy::model::Policy],
) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| {
            x.id == y.id
                && x.effect == y.effect
                && same_selector(old, &x.selector, new, &y.selector)
                && old.keysets.get(x.keyset as usize) == new.keysets.get(y.keyset as usize)
        })
}

/// Whether two selectors cover the same resources: item by item, a named child resource compared by what
/// it is (its index is the order policies happened to name children in, which another config may change).
fn same_selector(
    old: &PolicySet,
    a: &crate::policy::model::Selector,
    new: &PolicySet,
    b: &crate::policy::model::Selector,
) -> bool {
    use crate::policy::model::Select;
    fn children<'s>(
        set: &'s PolicySet,
        selector: &crate::policy::model::Selector,
    ) -> Vec<&'s crate::policy::model::Child> {
        let mut named: Vec<&crate::policy::model::Child> = selector
            .items()
            .iter()
            .filter_map(|item| match item {
                crate::policy::model::Select::Child(index) => set.children.child(*index),
                _ => None,
            })
            .collect();
        named.sort_by(|x, y| {
            (x.kind, x.account, x.zone, &x.name).cmp(&(y.kind, y.account, y.zone, &y.name))
        });
        named
    }
    let others = |selector: &crate::policy::model::Selector| -> Vec<Select> {
        selector
            .items()
            .iter()
            .filter(|item| !matches!(item, Select::Child(_)))
            .copied()
            .collect()
    };
    others(a) == others(b) && children(old, a) == children(new, b)
}

impl AccessChange {
    /// The change as JSON (`access diff --json` and the reload's access-change record).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "credential": self.credential,
            "label": self.label,
            "resource": self.resource,
            "keys": self.keys,
            "routes": self.routes,
            "example": self.example,
        })
    }
}

/// How many changes an access-change record lists (the counts cover all of them).
pub const RECORD_CHANGES: usize = 100;

/// The access-change record of one applied reload: the counts, and the first [`RECORD_CHANGES`] changes
/// (gains first), each with `direction`.
pub fn change_record(
    diff: &AccessDiff,
    generation: u64,
    previous_hash: &str,
    content_hash: &str,
    time: &str,
) -> serde_json::Value {
    let (gained, lost) = diff.counts();
    let changes: Vec<serde_json::Value> = diff
        .gained
        .iter()
        .map(|change| ("gained", change))
        .chain(diff.lost.iter().map(|change| ("lost", change)))
        .take(RECORD_CHANGES)
        .map(|(direction, change)| {
            let mut value = change.to_json();
            if let Some(object) = value.as_object_mut() {
                object.insert("direction".into(), direction.into());
            }
            value
        })
        .collect();
    serde_json::json!({
        "type": "config_change",
        "time": time,
        "generation": generation,
        "previous_hash": previous_hash,
        "content_hash": content_hash,
        "gained": gained,
        "lost": lost,
        "routes_added": diff.routes_added,
        "routes_removed": diff.routes_removed,
        "routes_changed": diff.routes_changed,
        "tokens": diff.tokens.iter().map(|t| serde_json::json!({"token_id": t.token_id, "change": t.change})).collect::<Vec<_>>(),
        "changes": changes,
    })
}
