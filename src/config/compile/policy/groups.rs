//! Permission groups: the catalog, a policy's group entries (inline, by id or by name) expanded over the
//! route keys, and the warnings about groups that cannot match.

use std::borrow::Cow;
use std::path::Path;

use super::compiler::{Compiler, GroupScopes, PolicySource, Text};
use super::ids::{At, Item, Site, Sub};
use super::output::Output;
use crate::config::error::ErrorKind;
use crate::config::raw::RawGroup;
use crate::policy::keys::{KeyPattern, KeySet};
use crate::policy::model::{GrantGroup, GroupInfo, Select, Selector, WarningKind};

/// A group a policy holds, as resolved: a catalog position, or an inline group.
pub(super) enum HeldGroup {
    Catalog(usize),
    Inline(GrantGroup),
}

/// The identity of an inline group: a hash of its id, name and patterns, top bit set (catalog positions
/// never have it).
fn inline_identity(id: &str, name: &str, patterns: &[KeyPattern]) -> u64 {
    use std::hash::{BuildHasher, Hash, Hasher};
    let mut hasher = rustc_hash::FxBuildHasher.build_hasher();
    id.hash(&mut hasher);
    name.hash(&mut hasher);
    for pattern in patterns {
        match pattern {
            KeyPattern::Exact(key) => (0u8, &**key).hash(&mut hasher),
            KeyPattern::Prefix(prefix) => (1u8, &**prefix).hash(&mut hasher),
            KeyPattern::All => (2u8, "").hash(&mut hasher),
        }
    }
    hasher.finish() | (1 << 63)
}

impl<'a> Compiler<'a> {
    pub(super) fn catalog(&mut self, out: &mut Output, source: &PolicySource<'a>) {
        for (index, group) in source.permission_groups.iter().enumerate() {
            let path = Item("permission_groups", index);
            let Some(id) = group.id.as_deref() else {
                out.error(
                    source.file,
                    &path,
                    ErrorKind::IncompleteDefinition,
                    "a catalog permission group needs an `id`",
                );
                continue;
            };
            if !self.first_seen.new_id(
                out,
                "permission group",
                id,
                source.file,
                Site::field("permission_groups", index, "id"),
            ) {
                continue;
            }
            if group.permissions.is_none() {
                out.field_error(
                    source.file,
                    &path,
                    "permissions",
                    ErrorKind::IncompleteDefinition,
                    "a catalog permission group needs `permissions`",
                );
                continue;
            }
            let scopes = self.group_scopes(out, group, source.file, &path).into();
            // A group with a bad key is still registered (its error is reported), so references to it do
            // not each report a misleading "unknown permission group".
            let (patterns, keys, _) = self.group_patterns(out, group, source.file, &path);
            let name = group.name.clone().unwrap_or_default();
            let position = self.set.groups.len();
            self.set.groups.push(GroupInfo {
                id: id.into(),
                name: name.as_str().into(),
                scopes,
                patterns,
                used: false,
            });
            self.group_keys.push(keys);
            self.group_by_id.insert(id, position);
            // An empty name names nothing (and a group without one keeps an empty name in the catalog).
            if let Some(name) = group.name.as_deref().filter(|name| !name.is_empty()) {
                self.group_by_name.entry(name).or_default().push(position);
            }
        }
    }

    pub(super) fn group_scopes<S>(
        &self,
        out: &mut Output,
        group: &RawGroup<S>,
        file: &Path,
        path: At<'_>,
    ) -> Vec<Box<str>> {
        let meta_scopes = group.meta.as_ref().and_then(|meta| meta.scopes.as_ref());
        match (group.scopes.as_deref(), meta_scopes) {
            (Some(_), Some(_)) => {
                out.field_error(
                    file,
                    path,
                    "scopes",
                    ErrorKind::IncompleteDefinition,
                    "give `scopes` at the top level or in `meta`, not both",
                );
                Vec::new()
            }
            (Some(scopes), None) | (None, Some(scopes)) => {
                scopes.values().into_iter().map(Into::into).collect()
            }
            (None, None) => Vec::new(),
        }
    }

    /// Parses a group's permission patterns and expands them over the route keys.
    pub(super) fn group_patterns<S>(
        &self,
        out: &mut Output,
        group: &RawGroup<S>,
        file: &Path,
        path: At<'_>,
    ) -> (Vec<KeyPattern>, KeySet, bool) {
        let mut keys = KeySet::empty(self.keys.len());
        let mut patterns = Vec::new();
        let mut ok = true;
        for (index, permission) in group.permissions.iter().flatten().enumerate() {
            match KeyPattern::parse(permission.key()) {
                Ok(pattern) => {
                    keys.union_with(&self.keys.expand(&pattern));
                    patterns.push(pattern);
                }
                Err(message) => {
                    let suffix = match permission {
                        crate::config::raw::RawPermission::Key(_) => String::new(),
                        crate::config::raw::RawPermission::Object(_) => ".key".to_string(),
                    };
                    out.error(
                        file,
                        format!("{path}.permissions[{index}]{suffix}"),
                        ErrorKind::InvalidPermission,
                        message,
                    );
                    ok = false;
                }
            }
        }
        (patterns, keys, ok)
    }

    /// Adds the keys of a policy's group entry (an inline definition, or a reference by id or by unique
    /// name) to `into`; returns the group's scopes.
    pub(super) fn resolve_group<S: Text>(
        &self,
        out: &mut Output,
        group: &RawGroup<S>,
        file: &Path,
        path: At<'_>,
        into: &mut KeySet,
        held: &mut Vec<HeldGroup>,
    ) -> Option<Cow<'_, [Box<str>]>> {
        if group.permissions.is_some() {
            let scopes = self.group_scopes(out, group, file, path);
            let (patterns, keys, ok) = self.group_patterns(out, group, file, path);
            into.union_with(&keys);
            let name: &str = group.name.as_deref().unwrap_or("");
            let id: &str = group.id.as_deref().unwrap_or("");
            held.push(HeldGroup::Inline(GrantGroup {
                identity: inline_identity(id, name, &patterns),
                id: id.into(),
                name: name.into(),
                patterns: patterns.into_boxed_slice(),
            }));
            return ok.then_some(Cow::Owned(scopes));
        }
        let position = match (group.id.as_deref(), group.name.as_deref()) {
            (Some(id), _) => match self.group_by_id.get(id) {
                Some(position) => *position,
                None => {
                    out.field_error(
                        file,
                        path,
                        "id",
                        ErrorKind::UnknownReference,
                        format!("unknown permission group {id:?}"),
                    );
                    return None;
                }
            },
            (None, Some(name)) => match self.group_by_name.get(name).map(Vec::as_slice) {
                Some([position]) => *position,
                Some([]) | None => {
                    out.field_error(
                        file,
                        path,
                        "name",
                        ErrorKind::UnknownReference,
                        format!("unknown permission group name {name:?}"),
                    );
                    return None;
                }
                Some(_) => {
                    out.field_error(
                        file,
                        path,
                        "name",
                        ErrorKind::AmbiguousReference,
                        format!("several permission groups are named {name:?}: reference it by id"),
                    );
                    return None;
                }
            },
            (None, None) => {
                out.error(
                    file,
                    path,
                    ErrorKind::IncompleteDefinition,
                    "a permission group entry needs an `id`, a `name` or `permissions`",
                );
                return None;
            }
        };
        out.used_groups.push(position);
        held.push(HeldGroup::Catalog(position));
        let scopes = self
            .set
            .groups
            .get(position)
            .map_or(&[][..], |info| &info.scopes);
        let keys = self.group_keys.get(position)?;
        into.union_with(keys);
        Some(Cow::Borrowed(scopes))
    }

    /// The union of a policy's groups, stored once per distinct set, with each group's scopes.
    pub(super) fn policy_keys<S: Text>(
        &self,
        out: &mut Output,
        groups: &[RawGroup<S>],
        file: &Path,
        path: At<'_>,
    ) -> Option<(u32, GroupScopes<'_>)> {
        let mut group_scopes = Vec::new();
        let mut held: Vec<HeldGroup> = Vec::with_capacity(groups.len());
        // The union is built in a reused set, and copied only when it is one not seen before.
        let mut keys = std::mem::take(&mut out.scratch_keys);
        keys.reset(self.keys.len());
        let mut ok = true;
        if groups.is_empty() {
            out.field_error(
                file,
                path,
                "permission_groups",
                ErrorKind::IncompleteDefinition,
                "a policy needs at least one permission group",
            );
            return None;
        }
        for (index, group) in groups.iter().enumerate() {
            let group_path = Sub::item(path, "permission_groups", index);
            match self.resolve_group(out, group, file, &group_path, &mut keys, &mut held) {
                Some(scopes) => {
                    if !scopes.is_empty() {
                        group_scopes.push((index, scopes));
                    }
                }
                None => ok = false,
            }
        }
        if !ok {
            return None;
        }
        let empty = keys.is_empty();
        let identity = held
            .iter()
            .map(|group| match group {
                HeldGroup::Catalog(position) => *position as u64,
                HeldGroup::Inline(inline) => inline.identity,
            })
            .collect();
        let catalog = &self.set.groups;
        let (index, reusable) = out.intern_keys(keys, identity, || {
            held.into_iter()
                .map(|group| match group {
                    HeldGroup::Catalog(position) => catalog.get(position).map_or_else(
                        || GrantGroup {
                            identity: position as u64,
                            id: "".into(),
                            name: "".into(),
                            patterns: Box::new([]),
                        },
                        |info| GrantGroup {
                            identity: position as u64,
                            id: info.id.clone(),
                            name: info.name.clone(),
                            patterns: info.patterns.clone().into_boxed_slice(),
                        },
                    ),
                    HeldGroup::Inline(inline) => inline,
                })
                .collect()
        });
        if let Some(keys) = reusable {
            out.scratch_keys = keys;
        }
        if empty {
            out.warn(
                file,
                path,
                WarningKind::PolicyGrantsNoKey,
                "its permission groups grant no key that any route requires, so it can never match",
            );
        }
        Some((index, group_scopes))
    }

    /// Warns when a group sits in a policy whose selector holds no resource of the group's type (SPEC §1).
    pub(super) fn check_group_scopes(
        &self,
        out: &mut Output,
        group_scopes: &GroupScopes<'_>,
        selector: &Selector,
        file: &Path,
        path: At<'_>,
    ) {
        let holds = |kind: &str| {
            selector.items().iter().any(|item| {
                matches!(
                    (kind, item),
                    ("account", Select::AllAccounts | Select::Account(_))
                        | (
                            "account.zone",
                            Select::AllZones
                                | Select::AccountZones(_)
                                | Select::Zone(_)
                                | Select::AllBelow
                                | Select::AccountBelow(_)
                        )
                        | ("user", Select::User(_))
                )
            })
        };
        // A group meant for a declared resource type (its scope is the type's prefix without the dot).
        let holds_type = |kind: crate::policy::model::KindIdx| {
            selector.items().iter().any(|item| match item {
                Select::AllBelow | Select::AccountBelow(_) => true,
                Select::AllOfKind(k) | Select::AccountOfKind(_, k) => *k == kind,
                Select::Child(child) => self
                    .children
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .child(*child)
                    .is_some_and(|child| child.kind == kind),
                _ => false,
            })
        };
        let mut warnings = Vec::new();
        for (index, scopes) in group_scopes {
            for scope in scopes.iter() {
                let declared = self
                    .set
                    .resource_types
                    .iter()
                    .position(|form| form.prefix.strip_suffix('.') == Some(&**scope));
                if let Some(kind) =
                    declared.and_then(|k| crate::policy::model::KindIdx::try_from(k).ok())
                {
                    if !holds_type(kind) {
                        warnings.push((
                            Sub::item(path, "permission_groups", *index).to_string(),
                            format!(
                                "the group is meant for {scope} resources, but the policy selects none"
                            ),
                        ));
                    }
                    continue;
                }
                let Some(kind) = scope
                    .strip_prefix(self.namespace)
                    .and_then(|rest| rest.strip_prefix('.'))
                else {
                    continue;
                };
                if matches!(kind, "account" | "account.zone" | "user") && !holds(kind) {
                    warnings.push((
                        Sub::item(path, "permission_groups", *index).to_string(),
                        format!(
                            "the group is meant for {scope} resources, but the policy selects none"
                        ),
                    ));
                }
            }
        }
        for (path, message) in warnings {
            out.warn(file, path, WarningKind::GroupTypeNotSelected, message);
        }
    }
}
