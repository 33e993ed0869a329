//! `permgate validate`: load and compile everything; print every error, then the warnings of SPEC §6,
//! every write route that a permission group named "… Read" passes ([`read_groups_passing_writes`]), and an
//! upstream credential (`upstream.auth`) that cannot be read where it runs.

use std::path::Path;
use std::process::ExitCode;

use crate::config::load::{compile, read, unix_now};
use crate::config::{ConfigError, ErrorKind};
use crate::policy::KeyInterner;
use crate::policy::actions::{self, KeyAction};
use crate::policy::model::{GroupInfo, Status};
use crate::routes::{Requirement, Route};
use crate::snapshot::Snapshot;

/// Runs `permgate validate`: exit 0 when the config loads (warnings or not), 1 on errors.
pub fn run(config: &Path) -> ExitCode {
    let set = match read(config) {
        Ok(set) => set,
        Err(errors) => return report_errors(&errors.0),
    };
    let snapshot = match compile(&set, 1, unix_now()) {
        Ok(snapshot) => snapshot,
        Err(errors) => return report_errors(&errors.0),
    };
    let mut warnings = warnings(&snapshot, unix_now());
    // The upstream's credential is read by `serve`, not by the config load: say here when it could not be
    // (a warning: the place `validate` runs, such as CI, may well not hold the secret).
    if let Some(source) = &snapshot.settings.upstream.auth
        && let Err(error) = crate::proxy::upstream_auth::UpstreamCredential::read(source)
    {
        warnings.push(ConfigError::new(
            &set.gateway.path,
            "upstream.auth",
            ErrorKind::UpstreamAuthUnreadable,
            format!("{error} (`permgate serve` would not start here)"),
        ));
    }
    set.locate(&mut warnings);
    for warning in &warnings {
        super::print_out(&format!("warning: {warning}\n"));
    }
    super::print_out(&format!(
        "ok: {} routes, {} permission groups, {} users, {} accounts, {} zones, {} tokens, {} policies; {} warning(s)\n",
        snapshot.routes.len(),
        snapshot.policy.groups.len(),
        snapshot.policy.users.len(),
        snapshot.policy.accounts.len(),
        snapshot.policy.zones.len(),
        snapshot.policy.tokens.len(),
        snapshot.policy.policy_count(),
        warnings.len()
    ));
    // The process ends here: the operating system takes the compiled set back at once, where freeing its
    // millions of allocations one by one took ~30 ms at 10k tokens and longer at 1M.
    std::mem::forget(snapshot);
    ExitCode::SUCCESS
}

fn report_errors(errors: &[ConfigError]) -> ExitCode {
    for error in errors {
        eprintln!("error: {error}");
    }
    eprintln!("{} error(s)", errors.len());
    ExitCode::from(1)
}

/// The warnings of SPEC §6: a route key no group grants, a group no one uses, an expired token, and the
/// compile-time ones (a policy that can never match, a group whose type the policy does not select); then
/// one per write route that a group named "… Read" passes ([`read_group_warning`]).
pub fn warnings(snapshot: &Snapshot, now: i64) -> Vec<ConfigError> {
    let policy = &snapshot.policy;
    let mut warnings: Vec<ConfigError> = policy.warnings.iter().map(ConfigError::from).collect();
    let mut granted = crate::policy::KeySet::empty(policy.keys.len());
    for keys in &policy.keysets {
        granted.union_with(keys);
    }
    for group in &policy.groups {
        for pattern in &group.patterns {
            granted.union_with(&policy.keys.expand(pattern));
        }
    }
    let mut reported = std::collections::HashSet::new();
    for route in snapshot.routes.routes() {
        let keys = match &route.requirement {
            Requirement::None => continue,
            Requirement::AllOf(keys) | Requirement::AnyOf(keys) => keys,
        };
        for key in keys.iter() {
            if !granted.contains(*key) && reported.insert(*key) {
                warnings.push(ConfigError::new(
                    snapshot.settings.base_dir.join("routes"),
                    "",
                    ErrorKind::KeyNotGranted,
                    format!(
                        "route {} {} requires {}, which no permission group grants",
                        route.methods,
                        route.pattern,
                        policy.keys.name(*key)
                    ),
                ));
            }
        }
    }
    for group in policy.groups.iter().filter(|group| !group.used) {
        warnings.push(ConfigError::new(
            "permission_groups",
            "",
            ErrorKind::UnusedGroup,
            format!(
                "permission group {} ({}) is used by no policy",
                group.id, group.name
            ),
        ));
    }
    for token in &policy.tokens {
        let expired = token.status == Status::Expired
            || token.expires_on.as_ref().is_some_and(|(at, _)| *at <= now);
        if expired {
            warnings.push(ConfigError::new(
                "tokens",
                "",
                ErrorKind::ExpiredToken,
                format!("token {} ({}) is expired", token.id, token.name),
            ));
        }
    }
    for pass in read_groups_passing_writes(snapshot) {
        warnings.push(ConfigError::new(
            snapshot.settings.base_dir.join("routes"),
            "",
            ErrorKind::ReadGroupPassesWrite,
            read_group_warning(&pass, &policy.keys),
        ));
    }
    warnings
}

/// A route that can write (a method other than GET, HEAD, OPTIONS, or `*`) and the catalog groups named
/// "… Read" that pass it.
#[derive(Debug)]
pub struct ReadGroupPass<'s> {
    pub route: &'s Route,
    pub groups: Vec<&'s GroupInfo>,
    /// The route's writing methods are all POST and every key it requires is a read key
    /// ([`KeyAction::Read`]): the route itself says reading suffices (a query, an analysis, a scan), so read
    /// groups are meant to pass it. Otherwise a read-only group can change state.
    pub read_annotated: bool,
}

/// Every write route that a catalog group whose name ends in "Read" passes: its keys and patterns (a trailing
/// `*` matches every key with that prefix) satisfy the route's requirement (all of an all-of list, one of an
/// any-of list). Routes that need no key (`public`, `scope: none`) concern no group. Groups defined inline in
/// a policy are not in the catalog and are not looked at.
pub fn read_groups_passing_writes(snapshot: &Snapshot) -> Vec<ReadGroupPass<'_>> {
    let policy = &snapshot.policy;
    let read_groups: Vec<&GroupInfo> = policy
        .groups
        .iter()
        .filter(|group| actions::is_read_group_name(&group.name))
        .collect();
    let mut passes = Vec::new();
    for route in snapshot.routes.routes() {
        let mut write_methods = route
            .methods
            .split(", ")
            .filter(|method| !actions::is_safe_method(method))
            .peekable();
        if write_methods.peek().is_none() {
            continue;
        }
        let all_post = write_methods.all(|method| method == "POST");
        let keys: &[crate::policy::KeyId] = match &route.requirement {
            Requirement::None => continue,
            Requirement::AllOf(keys) | Requirement::AnyOf(keys) => keys,
        };
        let groups: Vec<&GroupInfo> = read_groups
            .iter()
            .copied()
            .filter(|group| group_passes(group, &route.requirement, &policy.keys))
            .collect();
        if groups.is_empty() {
            continue;
        }
        let read_annotated = all_post
            && keys
                .iter()
                .all(|key| actions::key_action(policy.keys.name(*key)) == KeyAction::Read);
        passes.push(ReadGroupPass {
            route,
            groups,
            read_annotated,
        });
    }
    passes
}

/// Whether the keys and patterns of `group` satisfy `requirement`.
pub fn group_passes(group: &GroupInfo, requirement: &Requirement, keys: &KeyInterner) -> bool {
    let holds = |key: &crate::policy::KeyId| {
        let name = keys.name(*key);
        group.patterns.iter().any(|pattern| pattern.matches(name))
    };
    match requirement {
        Requirement::None => false,
        Requirement::AllOf(required) => !required.is_empty() && required.iter().all(holds),
        Requirement::AnyOf(required) => required.iter().any(holds),
    }
}

/// The text of a [`ReadGroupPass`] warning: one kind for routes whose own keys say reading suffices, another,
/// the one to act on, for a read group that can change state.
pub fn read_group_warning(pass: &ReadGroupPass<'_>, keys: &KeyInterner) -> String {
    let route = pass.route;
    let required: Vec<&str> = match &route.requirement {
        Requirement::None => Vec::new(),
        Requirement::AllOf(ids) | Requirement::AnyOf(ids) => {
            ids.iter().map(|id| keys.name(*id)).collect()
        }
    };
    let groups: Vec<String> = pass
        .groups
        .iter()
        .map(|group| format!("{} ({})", group.name, group.id))
        .collect();
    if pass.read_annotated {
        format!(
            "read-only POST: route {} {} requires only read keys ({}), so read groups pass it: {}; its own \
             keys say the POST only reads (a query, an analysis, a scan): expected if the operation changes \
             nothing, listed so that it can be checked",
            route.methods,
            route.pattern,
            required.join(", "),
            groups.join(", ")
        )
    } else {
        format!(
            "write route {} {} (requires {}) is passed by permission group(s) named Read: {}; a read-only \
             group can change state here: require a write key on the route (an action such as edit, create, \
             update or delete) or take the key that passes it out of the group",
            route.methods,
            route.pattern,
            required.join(", "),
            groups.join(", ")
        )
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

    use super::*;
    use crate::config::{ConfigSet, SourceFile};

    const GROUPS: &str = r##"
permission_groups:
  - { id: g-read, name: "Thing Read", permissions: ["#thing:read", "com.example.gadget"] }
  - { id: g-write, name: "Thing Write", permissions: ["#thing:read", "#thing:edit"] }
  - { id: g-wild, name: "Widget Read", permissions: ["#widget:*"] }
"##;

    const ROUTES: &str = r##"
routes:
  - { method: GET, path: "/things/{a}", permissions: ["#thing:read"], scope: { account: a } }
  - { method: POST, path: "/things/{a}/query", permissions: ["#thing:read"], scope: { account: a } }
  - { method: PUT, path: "/things/{a}/settings", permissions: ["#thing:read"], scope: { account: a } }
  - { method: POST, path: "/things/{a}", permissions: ["#thing:edit"], scope: { account: a } }
  - { method: DELETE, path: "/things/{a}", permissions: { any_of: ["#thing:edit", "#thing:read"] }, scope: { account: a } }
  - { method: POST, path: "/gadgets/{a}", permissions: ["com.example.gadget"], scope: { account: a } }
  - { method: POST, path: "/gadgets/{a}/safe", permissions: { all_of: ["com.example.gadget", "com.example.gadget.edit"] }, scope: { account: a } }
  - { method: "*", path: "/widgets/{a}", permissions: ["#widget:edit"], scope: { account: a } }
  - { method: [GET, POST], path: "/mixed/{a}", permissions: ["#thing:read"], scope: { account: a } }
  - { method: PATCH, path: "/open/{a}", scope: none }
"##;

    fn snapshot() -> Snapshot {
        let gateway = SourceFile::from_text(
            "gateway.yaml",
            "listen: 127.0.0.1:0\nadmin_listen: 127.0.0.1:1\nupstream: { url: 'http://127.0.0.1:9' }\npolicy_files: [groups.yaml]\nroute_files: [routes.yaml]\n",
        );
        let set = ConfigSet::from_sources(
            gateway,
            vec![SourceFile::from_text("groups.yaml", GROUPS)],
            vec![SourceFile::from_text("routes.yaml", ROUTES)],
        )
        .unwrap();
        compile(&set, 1, 0).unwrap()
    }

    /// (methods pattern, names of the passing groups, read_annotated), in route order.
    fn passes(snapshot: &Snapshot) -> Vec<(String, Vec<String>, bool)> {
        read_groups_passing_writes(snapshot)
            .iter()
            .map(|pass| {
                (
                    format!("{} {}", pass.route.methods, pass.route.pattern),
                    pass.groups
                        .iter()
                        .map(|group| group.name.to_string())
                        .collect(),
                    pass.read_annotated,
                )
            })
            .collect()
    }

    #[test]
    fn write_routes_that_read_groups_pass_are_found_and_told_apart() {
        let snapshot = snapshot();
        let thing = || vec!["Thing Read".to_string()];
        assert_eq!(
            passes(&snapshot),
            vec![
                // A POST whose keys all read: the route says reading suffices.
                ("POST /things/{a}/query".to_string(), thing(), true),
                // The same keys on a PUT: a read group changes state.
                ("PUT /things/{a}/settings".to_string(), thing(), false),
                // any_of with a read key: the read key alone passes.
                ("DELETE /things/{a}".to_string(), thing(), false),
                // A key that names no action is not a read key.
                ("POST /gadgets/{a}".to_string(), thing(), false),
                // A Read group's pattern matches a write key, on every method of a `*` route.
                (
                    "* /widgets/{a}".to_string(),
                    vec!["Widget Read".to_string()],
                    false
                ),
                // Only the POST of a GET+POST route writes, and its keys read.
                ("GET, POST /mixed/{a}".to_string(), thing(), true),
            ]
        );
        // Not listed: the GET route, POST /things/{a} (needs #thing:edit), /gadgets/{a}/safe (the write flavour),
        // the `scope: none` route (no key, no group involved), and Thing Write everywhere.
    }

    #[test]
    fn the_two_kinds_of_warning_read_differently() {
        let snapshot = snapshot();
        let texts: Vec<String> = warnings(&snapshot, 0)
            .iter()
            .map(ToString::to_string)
            .collect();
        let read_only: Vec<&String> = texts
            .iter()
            .filter(|text| text.contains("read-only POST: route"))
            .collect();
        let writes: Vec<&String> = texts
            .iter()
            .filter(|text| text.contains("is passed by permission group(s) named Read"))
            .collect();
        assert_eq!(read_only.len(), 2, "{texts:#?}");
        assert_eq!(writes.len(), 4, "{texts:#?}");
        assert!(
            writes
                .iter()
                .any(|text| text.contains("PUT /things/{a}/settings")
                    && text.contains("Thing Read (g-read)"))
        );
        assert!(
            read_only
                .iter()
                .any(|text| text.contains("POST /things/{a}/query"))
        );
    }

    #[test]
    fn a_group_passes_all_of_only_with_every_key() {
        let snapshot = snapshot();
        let keys = &snapshot.policy.keys;
        let group = |name: &str| {
            snapshot
                .policy
                .groups
                .iter()
                .find(|group| &*group.name == name)
                .unwrap()
        };
        let route = |pattern: &str| {
            snapshot
                .routes
                .routes()
                .iter()
                .find(|route| &*route.pattern == pattern && route.methods.contains("POST"))
                .unwrap()
        };
        let safe = &route("/gadgets/{a}/safe").requirement;
        assert!(!group_passes(group("Thing Read"), safe, keys));
        assert!(group_passes(
            group("Thing Read"),
            &route("/gadgets/{a}").requirement,
            keys
        ));
        assert!(!group_passes(group("Thing Read"), &Requirement::None, keys));
        assert!(!group_passes(
            group("Thing Read"),
            &Requirement::AllOf(Box::new([])),
            keys
        ));
    }
}
