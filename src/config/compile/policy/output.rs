//! What compiling part of a config produced besides its items: errors, warnings, the distinct key sets
//! its policies use; and renumbering a batch's key sets into the config's.

use std::fmt;
use std::path::Path;

use rustc_hash::FxHashMap;

use crate::config::error::{ConfigError, ErrorKind};
use crate::policy::keys::KeySet;
use crate::policy::model::{GrantGroup, Policy, Warning, WarningKind};

/// What tells a policy's permission groups apart (see [`GrantGroup::identity`]), in the policy's order.
pub(super) type GroupIdentity = smallvec::SmallVec<[u64; 4]>;

/// What compiling part of a config produced besides its items: errors, warnings, the distinct key sets its
/// policies use (a policy holds an index into `keysets`), and which catalog groups it referred to.
///
/// The compiler's own output is the config's; a batch of tokens compiled on another thread has one of its
/// own, which [`TokenSink::add`](super::TokenSink::add) folds into the config's (renumbering the batch's key sets).
#[derive(Debug, Default)]
pub struct Output {
    pub(super) errors: Vec<ConfigError>,
    pub(super) warnings: Vec<Warning>,
    pub(super) keysets: Vec<KeySet>,
    /// By the same index: the groups each key set is the union of.
    pub(super) keyset_groups: Vec<std::sync::Arc<[GrantGroup]>>,
    pub(super) keyset_index: FxHashMap<(KeySet, GroupIdentity), u32>,
    /// A key set reused by each policy's union (see `policy_keys`).
    pub(super) scratch_keys: KeySet,
    /// Positions in `PolicySet::groups` of the catalog groups referred to.
    pub(super) used_groups: Vec<usize>,
}

impl Output {
    /// An error at `path` of `file` (the path is formatted only now, when there is an error).
    pub(super) fn error(
        &mut self,
        file: &Path,
        path: impl fmt::Display,
        kind: ErrorKind,
        message: impl Into<String>,
    ) {
        self.errors
            .push(ConfigError::new(file, path.to_string(), kind, message));
    }

    /// An error at `field` below `path` (`{path}.{field}`, e.g. `users[3].email`): the call site names the
    /// field, not how a location is written.
    pub(super) fn field_error(
        &mut self,
        file: &Path,
        path: impl fmt::Display,
        field: &str,
        kind: ErrorKind,
        message: impl Into<String>,
    ) {
        self.errors.push(ConfigError::new(
            file,
            format!("{path}.{field}"),
            kind,
            message,
        ));
    }

    /// A warning at `path` of `file`.
    pub(super) fn warn(
        &mut self,
        file: &Path,
        path: impl fmt::Display,
        kind: WarningKind,
        message: impl Into<String>,
    ) {
        self.warnings.push(Warning {
            file: file.to_path_buf(),
            path: path.to_string(),
            kind,
            message: message.into(),
        });
    }

    /// The index of `keys` from the groups `identity` names in `keysets`, adding it when it is new (with
    /// the groups `groups` gives); `keys` is given back for reuse when it was known.
    pub(super) fn intern_keys(
        &mut self,
        keys: KeySet,
        identity: GroupIdentity,
        groups: impl FnOnce() -> std::sync::Arc<[GrantGroup]>,
    ) -> (u32, Option<KeySet>) {
        let entry = (keys, identity);
        match self.keyset_index.get(&entry).copied() {
            Some(index) => (index, Some(entry.0)),
            None => {
                let index = u32::try_from(self.keysets.len()).unwrap_or(u32::MAX);
                self.keysets.push(entry.0.clone());
                self.keyset_groups.push(groups());
                self.keyset_index.insert(entry, index);
                (index, None)
            }
        }
    }

    /// Appends `other`'s errors, warnings and used groups; returns, for each of `other`'s key sets, its
    /// index here.
    pub(super) fn absorb(&mut self, other: Output) -> Vec<u32> {
        self.errors.extend(other.errors);
        self.warnings.extend(other.warnings);
        self.used_groups.extend(other.used_groups);
        other
            .keysets
            .into_iter()
            .zip(other.keyset_groups)
            .map(|(keys, groups)| {
                let identity = groups.iter().map(|group| group.identity).collect();
                self.intern_keys(keys, identity, || groups).0
            })
            .collect()
    }
}

/// Points policies compiled in a batch at the config's key sets: `keysets[i]` is the config's index of the
/// batch's key set `i` (from [`Output::absorb`]).
pub(super) fn renumber_keysets(policies: &mut [Policy], keysets: &[u32]) {
    for policy in policies {
        policy.keyset = keysets
            .get(policy.keyset as usize)
            .copied()
            .unwrap_or(u32::MAX);
    }
}
