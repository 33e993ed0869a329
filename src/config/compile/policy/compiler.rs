//! The compile in progress ([`Compiler`]), what it reads ([`PolicySource`]) and what its token batches
//! carry; [`compile`] drives it over parsed files.

use std::borrow::Cow;
use std::path::Path;
use std::sync::Arc;

use rustc_hash::FxHashMap;

use super::ids::FirstSeen;
use super::output::Output;
use crate::config::error::ConfigError;
use crate::config::raw::{
    Effect as RawEffect, RawAccount, RawGroup, RawPolicyFile, RawResourceType, RawUser,
};
use crate::policy::keys::{KeyInterner, KeySet};
use crate::policy::model::{
    AccountIdx, ChildTable, Effect, GroupInfo, KindIdx, Policy, PolicySet, Token,
};

/// The string type of raw token fields: `String`, or `Str` borrowed from the file's text.
pub trait Text: std::ops::Deref<Target = str> {}

impl<S: std::ops::Deref<Target = str>> Text for S {}

/// Each group of a policy, by its index in the policy's `permission_groups`, with the resource types it is
/// meant for: borrowed from the catalog for a reference (not an `Arc` clone: the workers compiling tokens
/// would all count references on the same few catalog groups), owned for an inline group.
pub(super) type GroupScopes<'s> = Vec<(usize, Cow<'s, [Box<str>]>)>;

/// What a policy file defines besides its tokens, and where it came from.
pub struct PolicySource<'a> {
    pub file: &'a Path,
    pub resource_types: &'a [RawResourceType],
    pub permission_groups: &'a [RawGroup],
    pub users: &'a [RawUser],
    pub accounts: &'a [RawAccount],
}

impl<'a> PolicySource<'a> {
    /// The groups, users and accounts of one parsed file (whatever form its tokens were read in).
    pub fn new<Tokens>(file: &'a Path, raw: &'a RawPolicyFile<Tokens>) -> Self {
        Self {
            file,
            resource_types: &raw.resource_types,
            permission_groups: &raw.permission_groups,
            users: &raw.users,
            accounts: &raw.accounts,
        }
    }
}

/// Where a token was first defined: its file and its index in the file's `tokens`.
pub(super) type TokenOrigin<'a> = (&'a Path, usize);

/// A resource key parsed against the namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum ResourceKey<'a> {
    AllAccounts,
    Account(&'a str),
    AllZones,
    Zone(&'a str),
    User(&'a str),
    AllUsers,
    /// `<prefix>*` of a resource type.
    AllOfKind(KindIdx),
    /// A child resource's key: its type, its parent's id and its name.
    Child(KindIdx, &'a str, &'a str),
}

/// A compile in progress: [`Compiler::entities`] once with every file; then [`Compiler::tokens`] with each
/// file's tokens (on any thread: it only reads the compiler), each batch added in file order to the
/// [`TokenSink`](super::TokenSink) from [`Compiler::token_sink`]; then [`Compiler::finish`].
pub struct Compiler<'a> {
    pub(super) namespace: &'a str,
    pub(super) keys: KeyInterner,
    pub(super) set: PolicySet,
    /// The config's output, until [`Compiler::token_sink`] hands it to the sink.
    pub(super) out: Output,
    /// Catalog groups: index into `set.groups`, with their expanded key sets.
    pub(super) group_keys: Vec<KeySet>,
    pub(super) group_by_id: FxHashMap<&'a str, usize>,
    pub(super) group_by_name: FxHashMap<&'a str, Vec<usize>>,
    /// Domain groups: id → (account, zones, position in `PolicySet::domain_groups`).
    pub(super) domain_groups: FxHashMap<&'a str, (AccountIdx, Vec<u32>, u32)>,
    /// The child resources policies name, interned as the policies are compiled (on any thread: token
    /// files compile in parallel, and share one numbering).
    pub(super) children: std::sync::Mutex<ChildTable>,
    /// Where each catalog group, account and domain group id was first defined, for duplicate errors.
    pub(super) first_seen: FirstSeen<'a>,
    /// The emptied token lists of batches the sink took in, for the next batches: each is a few hundred
    /// KiB, which a fresh list would take from the operating system again (zeroed, page by page).
    pub(super) spare_lists: std::sync::Mutex<Vec<Vec<CompiledToken>>>,
}

/// The tokens of one file, compiled against the entities but not yet checked against other files' tokens.
pub struct TokenBatch<'a> {
    pub(super) file: &'a Path,
    pub(super) tokens: Vec<CompiledToken>,
    pub(super) out: Output,
}

/// One token of a batch: what the cross-file checks need, and the token when it compiled.
pub(super) struct CompiledToken {
    /// Its index in the file's `tokens`.
    pub(super) index: usize,
    /// Its id, when valid (the compiled token holds it when there is one).
    pub(super) id: Option<Box<str>>,
    /// Its secret hash, when valid.
    pub(super) secret: Option<[u8; 32]>,
    /// Made shareable on the worker that compiled it, not in the sink (which adds the files one after the
    /// other).
    pub(super) compiled: Option<(Arc<Token>, Arc<[Policy]>)>,
}

/// Compiles parsed policy files (each with its path) against the route keys. `namespace` is `<ns>` of
/// resource keys.
pub fn compile(
    files: &[(&Path, &RawPolicyFile)],
    keys: KeyInterner,
    namespace: &str,
) -> Result<PolicySet, Vec<ConfigError>> {
    let sources: Vec<PolicySource<'_>> = files
        .iter()
        .map(|(file, raw)| PolicySource::new(file, raw))
        .collect();
    let mut compiler = Compiler::new(keys, namespace);
    compiler.entities(&sources);
    let mut sink = compiler.token_sink(files.iter().map(|(_, raw)| raw.tokens.len()).sum());
    for (file, raw) in files {
        sink.add(&compiler, compiler.tokens(file, &raw.tokens));
    }
    compiler.finish(sink)
}

impl<'a> Compiler<'a> {
    /// A compile against the route keys; `namespace` is `<ns>` of resource keys.
    pub fn new(keys: KeyInterner, namespace: &'a str) -> Self {
        Self {
            namespace,
            keys,
            set: PolicySet {
                namespace: namespace.into(),
                ..PolicySet::default()
            },
            out: Output::default(),
            group_keys: Vec::new(),
            group_by_id: FxHashMap::default(),
            group_by_name: FxHashMap::default(),
            domain_groups: FxHashMap::default(),
            children: std::sync::Mutex::default(),
            first_seen: FirstSeen::default(),
            spare_lists: std::sync::Mutex::default(),
        }
    }

    /// A compile whose entities are `previous`'s, as they are, instead of compiled from files: for a
    /// config whose entity files, routes and settings are those `previous` was compiled from (so compiling
    /// them again would give exactly this), and of which only token files changed. `keys` are the route keys
    /// (the same as `previous`'s). Continue with [`Compiler::token_sink`] as after [`Compiler::entities`].
    pub fn resume(previous: &'a PolicySet, keys: KeyInterner) -> Self {
        // Every key set of `previous`, in its numbering: the tokens taken from it keep their policies as
        // they are (shared), so their numbers must stay valid; new ones are added after them.
        let mut out = Output::default();
        for (keys, groups) in previous.keysets.iter().zip(&previous.keyset_groups) {
            let identity = groups.iter().map(|group| group.identity).collect();
            out.intern_keys(keys.clone(), identity, || groups.clone());
        }
        out.warnings = previous
            .warnings
            .get(..previous.entity_warnings as usize)
            .unwrap_or(&previous.warnings)
            .to_vec();
        out.used_groups = previous.entity_used_groups.to_vec();
        let mut group_keys = Vec::with_capacity(previous.groups.len());
        let mut group_by_id = FxHashMap::default();
        let mut group_by_name: FxHashMap<&'a str, Vec<usize>> = FxHashMap::default();
        for (position, group) in previous.groups.iter().enumerate() {
            let mut expanded = KeySet::empty(keys.len());
            for pattern in &group.patterns {
                expanded.union_with(&keys.expand(pattern));
            }
            group_keys.push(expanded);
            group_by_id.insert(&*group.id, position);
            if !group.name.is_empty() {
                group_by_name
                    .entry(&*group.name)
                    .or_default()
                    .push(position);
            }
        }
        let set = PolicySet {
            namespace: previous.namespace.clone(),
            users: previous.users.clone(),
            accounts: previous.accounts.clone(),
            zones: previous.zones.clone(),
            resource_types: previous.resource_types.clone(),
            user_groups: previous.user_groups.clone(),
            domain_groups: previous.domain_groups.clone(),
            member_policy_domain_groups: previous.member_policy_domain_groups.clone(),
            member_own_policies: previous.member_own_policies.clone(),
            groups: previous
                .groups
                .iter()
                .map(|group| GroupInfo {
                    used: false,
                    ..group.clone()
                })
                .collect(),
            user_by_id: previous.user_by_id.clone(),
            user_by_email: previous.user_by_email.clone(),
            account_by_id: previous.account_by_id.clone(),
            zone_by_id: previous.zone_by_id.clone(),
            member_by_user_account: previous.member_by_user_account.clone(),
            ..PolicySet::default()
        };
        Self {
            namespace: &previous.namespace,
            keys,
            set,
            out,
            group_keys,
            group_by_id,
            group_by_name,
            // Only member policies refer to domain groups; tokens never do.
            domain_groups: FxHashMap::default(),
            // The previous numbering: its tokens' policies, shared, keep their child indexes.
            children: std::sync::Mutex::new(previous.children.clone()),
            first_seen: FirstSeen::default(),
            spare_lists: std::sync::Mutex::default(),
        }
    }
}

pub(super) fn effect(raw: RawEffect) -> Effect {
    match raw {
        RawEffect::Allow => Effect::Allow,
        RawEffect::Deny => Effect::Deny,
    }
}
