//! Turns the raw policy files into a [`PolicySet`]: resolves every reference, checks every rule of SPEC §2–§3,
//! and reports every error at once with its file and document path.

use std::borrow::Cow;
use std::collections::hash_map::Entry;
use std::fmt;
use std::path::Path;
use std::sync::Arc;

use rustc_hash::FxHashMap;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::values::{parse_cidr, parse_sha256};
use crate::config::error::{ConfigError, ErrorKind};
use crate::config::raw::{
    AccountApiAccess, Effect as RawEffect, MemberApiAccess, RawAccount, RawBachPolicy, RawGroup,
    RawPolicyFile, RawResourceValue, RawToken, RawTokenPolicy, RawUser, TokenStatus,
};
use crate::policy::keys::{KeyInterner, KeyPattern, KeySet};
use crate::policy::model::{
    Account, AccountIdx, DigestMap, Effect, GroupInfo, IpCondition, Member, Owner, Policy,
    PolicySet, Select, Selector, Status, Token, TokenFileRecord, TokenGate, User, UserIdx, Warning,
    WarningKind, Zone, ZoneEntry,
};
use entities::UserTables;
use ids::{
    At, FirstSeen, Item, Site, Sub, check_id, email_byte_forbidden, email_char_forbidden, has_any,
};

/// The string type of raw token fields: `String`, or `Str` borrowed from the file's text.
pub trait Text: std::ops::Deref<Target = str> {}

impl<S: std::ops::Deref<Target = str>> Text for S {}

/// Each group of a policy, by its index in the policy's `permission_groups`, with the resource types it is
/// meant for: borrowed from the catalog for a reference (not an `Arc` clone: the workers compiling tokens
/// would all count references on the same few catalog groups), owned for an inline group.
type GroupScopes<'s> = Vec<(usize, Cow<'s, [Box<str>]>)>;

/// What a policy file defines besides its tokens, and where it came from.
pub struct PolicySource<'a> {
    pub file: &'a Path,
    pub permission_groups: &'a [RawGroup],
    pub users: &'a [RawUser],
    pub accounts: &'a [RawAccount],
}

impl<'a> PolicySource<'a> {
    /// The groups, users and accounts of one parsed file (whatever form its tokens were read in).
    pub fn new<Tokens>(file: &'a Path, raw: &'a RawPolicyFile<Tokens>) -> Self {
        Self {
            file,
            permission_groups: &raw.permission_groups,
            users: &raw.users,
            accounts: &raw.accounts,
        }
    }
}

/// Where a token was first defined: its file and its index in the file's `tokens`.
type TokenOrigin<'a> = (&'a Path, usize);

/// A resource key parsed against the namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
enum ResourceKey<'a> {
    AllAccounts,
    Account(&'a str),
    AllZones,
    Zone(&'a str),
    User(&'a str),
    AllUsers,
}

/// What compiling part of a config produced besides its items: errors, warnings, the distinct key sets its
/// policies use (a policy holds an index into `keysets`), and which catalog groups it referred to.
///
/// The compiler's own output is the config's; a batch of tokens compiled on another thread has one of its
/// own, which [`TokenSink::add`] folds into the config's (renumbering the batch's key sets).
#[derive(Debug, Default)]
pub struct Output {
    errors: Vec<ConfigError>,
    warnings: Vec<Warning>,
    keysets: Vec<KeySet>,
    keyset_index: FxHashMap<KeySet, u32>,
    /// A key set reused by each policy's union (see `policy_keys`).
    scratch_keys: KeySet,
    /// Positions in `PolicySet::groups` of the catalog groups referred to.
    used_groups: Vec<usize>,
}

impl Output {
    fn error(
        &mut self,
        file: &Path,
        path: impl fmt::Display,
        kind: ErrorKind,
        message: impl Into<String>,
    ) {
        self.errors
            .push(ConfigError::new(file, path.to_string(), kind, message));
    }

    fn warn(
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

    /// The index of `keys` in `keysets`, adding it when it is new; `keys` is given back for reuse when it
    /// was known.
    fn intern_keys(&mut self, keys: KeySet) -> (u32, Option<KeySet>) {
        match self.keyset_index.get(&keys).copied() {
            Some(index) => (index, Some(keys)),
            None => {
                let index = u32::try_from(self.keysets.len()).unwrap_or(u32::MAX);
                self.keyset_index.insert(keys.clone(), index);
                self.keysets.push(keys);
                (index, None)
            }
        }
    }

    /// Appends `other`'s errors, warnings and used groups; returns, for each of `other`'s key sets, its
    /// index here.
    fn absorb(&mut self, other: Output) -> Vec<u32> {
        self.errors.extend(other.errors);
        self.warnings.extend(other.warnings);
        self.used_groups.extend(other.used_groups);
        other
            .keysets
            .into_iter()
            .map(|keys| self.intern_keys(keys).0)
            .collect()
    }
}

/// A compile in progress: [`Compiler::entities`] once with every file; then [`Compiler::tokens`] with each
/// file's tokens (on any thread: it only reads the compiler), each batch added in file order to the
/// [`TokenSink`] from [`Compiler::token_sink`]; then [`Compiler::finish`].
pub struct Compiler<'a> {
    namespace: &'a str,
    keys: KeyInterner,
    set: PolicySet,
    /// The config's output, until [`Compiler::token_sink`] hands it to the sink.
    out: Output,
    /// Catalog groups: index into `set.groups`, with their expanded key sets.
    group_keys: Vec<KeySet>,
    group_by_id: FxHashMap<&'a str, usize>,
    group_by_name: FxHashMap<&'a str, Vec<usize>>,
    /// Domain groups: id → (account, zones).
    domain_groups: FxHashMap<&'a str, (AccountIdx, Vec<u32>)>,
    /// Where each catalog group, account and domain group id was first defined, for duplicate errors.
    first_seen: FirstSeen<'a>,
    /// The emptied token lists of batches the sink took in, for the next batches: each is a few hundred
    /// KiB, which a fresh list would take from the operating system again (zeroed, page by page).
    spare_lists: std::sync::Mutex<Vec<Vec<CompiledToken>>>,
}

/// Where the compiled tokens go, in file order, with the checks that span files: token ids and secret
/// hashes are unique.
pub struct TokenSink<'a> {
    out: Output,
    tokens: Vec<Arc<Token>>,
    token_gates: Vec<TokenGate>,
    token_by_hash: DigestMap<u32>,
    /// The token ids and secret hashes seen, for duplicate errors (the raw tokens are gone by the time a
    /// later file comes). A kept token's id is found through `kept_ids` (positions in `tokens`, hashed by the token's own id:
    /// no second copy of a million ids), its secret hash through `token_by_hash`, and where it was defined
    /// in `kept_origins`; the ids and hashes of tokens not kept (invalid, or a duplicate of the other) are
    /// few, and kept in their own maps.
    kept_ids: hashbrown::HashTable<u32>,
    kept_origins: Vec<TokenOrigin<'a>>,
    other_ids: FxHashMap<Box<str>, TokenOrigin<'a>>,
    other_secrets: FxHashMap<[u8; 32], TokenOrigin<'a>>,
    /// The shared id of each token owner (see [`TokenGate::owner_id`]).
    owner_ids: FxHashMap<Owner, Arc<str>>,
    /// One per file added, in order.
    records: Vec<TokenFileRecord>,
}

/// The tokens of one file, compiled against the entities but not yet checked against other files' tokens.
pub struct TokenBatch<'a> {
    file: &'a Path,
    tokens: Vec<CompiledToken>,
    out: Output,
}

/// The members of one file's accounts, compiled but not yet added to the set.
#[derive(Default)]
struct MemberBatch {
    members: Vec<Member>,
    out: Output,
}

/// One token of a batch: what the cross-file checks need, and the token when it compiled.
struct CompiledToken {
    /// Its index in the file's `tokens`.
    index: usize,
    /// Its id, when valid (the compiled token holds it when there is one).
    id: Option<Box<str>>,
    /// Its secret hash, when valid.
    secret: Option<[u8; 32]>,
    /// Made shareable on the worker that compiled it, not in the sink (which adds the files one after the
    /// other).
    compiled: Option<(Arc<Token>, Arc<[Policy]>)>,
}

/// Points policies compiled in a batch at the config's key sets: `keysets[i]` is the config's index of the
/// batch's key set `i` (from [`Output::absorb`]).
fn renumber_keysets(policies: &mut [Policy], keysets: &[u32]) {
    for policy in policies {
        policy.keyset = keysets
            .get(policy.keyset as usize)
            .copied()
            .unwrap_or(u32::MAX);
    }
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
        for keysets in &previous.keysets {
            out.intern_keys(keysets.clone());
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
            first_seen: FirstSeen::default(),
            spare_lists: std::sync::Mutex::default(),
        }
    }

    /// The permission groups, users, accounts, zones, domain groups and members of every file: all that a
    /// token may refer to.
    pub fn entities(&mut self, sources: &[PolicySource<'a>]) {
        self.reserve_entities(sources);
        let mut out = std::mem::take(&mut self.out);
        for source in sources {
            self.catalog(&mut out, source);
        }
        // Users and accounts refer to nothing of each other: the users compile on another thread, into
        // tables moved out of the set and back, while this one compiles the accounts. Their errors are
        // reported in the same order as one after the other.
        let user_count = self.set.users.capacity();
        let mut users = UserTables {
            users: std::mem::take(&mut self.set.users),
            by_id: std::mem::take(&mut self.set.user_by_id),
            by_email: std::mem::take(&mut self.set.user_by_email),
            // Ids and emails.
            first_seen: FirstSeen::with_capacity(2 * user_count),
            out: Output::default(),
        };
        let mut account_out = Output::default();
        let users = std::thread::scope(|scope| {
            let compiling = scope.spawn(move || {
                for source in sources {
                    users.add(source);
                }
                users
            });
            for source in sources {
                self.accounts(&mut account_out, source);
            }
            compiling.join()
        });
        match users {
            Ok(users) => {
                self.set.users = users.users;
                self.set.user_by_id = users.by_id;
                self.set.user_by_email = users.by_email;
                out.errors.extend(users.out.errors);
            }
            Err(_) => out.errors.push(ConfigError::file(
                Path::new(""),
                ErrorKind::Internal,
                "internal error while compiling the users".to_string(),
            )),
        }
        out.errors.extend(account_out.errors);
        // Members (most of the entities' policies) compile on every core, then are added in file order.
        let mut batches = Vec::with_capacity(sources.len());
        let this = &*self;
        crate::config::parallel::in_order(
            sources,
            |source| this.member_batch(source),
            |index, batch| batches.push((index, batch)),
        );
        for (index, batch) in batches {
            match batch {
                Some(batch) => self.add_members(&mut out, batch),
                None => out.errors.push(ConfigError::file(
                    sources
                        .get(index)
                        .map_or(Path::new(""), |source| source.file),
                    ErrorKind::Internal,
                    "internal error while compiling this file's members".to_string(),
                )),
            }
        }
        self.out = out;
    }

    /// Sizes the entity tables once from the counts in `sources`, instead of growing them by doubling (each
    /// growth rehashes, and takes fresh memory from the operating system, which zeroes it page by page).
    fn reserve_entities(&mut self, sources: &[PolicySource<'a>]) {
        let count = |of: fn(&PolicySource<'a>) -> usize| sources.iter().map(of).sum::<usize>();
        let in_accounts = |of: fn(&RawAccount) -> usize| {
            sources
                .iter()
                .flat_map(|source| source.accounts)
                .map(of)
                .sum::<usize>()
        };
        let users = count(|source| source.users.len());
        let accounts = count(|source| source.accounts.len());
        let zones = in_accounts(|account| account.zones.len());
        let members = in_accounts(|account| account.members.len());
        let groups = count(|source| source.permission_groups.len());
        let set = &mut self.set;
        set.users.reserve(users);
        set.user_by_id.reserve(users);
        set.user_by_email.reserve(users);
        set.accounts.reserve(accounts);
        set.account_by_id.reserve(accounts);
        set.zones.reserve(zones);
        set.zone_by_id.reserve(zones);
        set.member_by_user_account.reserve(members);
        // Accounts and catalog groups (the users have their own); domain groups are few.
        self.first_seen.0.reserve(accounts + groups);
    }

    /// The sink for the tokens, with room for `expected` of them (their count is known before they are
    /// parsed, so the token tables are sized once instead of growing by doubling).
    pub fn token_sink(&mut self, expected: usize) -> TokenSink<'a> {
        // What the entities alone gave, for a later compile that resumes from this one's entities.
        self.set.entity_warnings = u32::try_from(self.out.warnings.len()).unwrap_or(u32::MAX);
        let mut used = self.out.used_groups.clone();
        used.sort_unstable();
        used.dedup();
        self.set.entity_used_groups = used.into_boxed_slice();
        let mut token_by_hash = DigestMap::default();
        token_by_hash.reserve(expected);
        let kept_ids = hashbrown::HashTable::with_capacity(expected);
        TokenSink {
            out: std::mem::take(&mut self.out),
            tokens: Vec::with_capacity(expected),
            token_gates: Vec::with_capacity(expected),
            token_by_hash,
            kept_ids,
            kept_origins: Vec::with_capacity(expected),
            other_ids: FxHashMap::default(),
            other_secrets: FxHashMap::default(),
            owner_ids: FxHashMap::default(),
            records: Vec::new(),
        }
    }

    /// The compiled set, or every error met.
    pub fn finish(self, sink: TokenSink<'a>) -> Result<PolicySet, Vec<ConfigError>> {
        let Compiler { mut set, keys, .. } = self;
        let TokenSink {
            out,
            tokens,
            token_gates,
            token_by_hash,
            records,
            ..
        } = sink;
        if !out.errors.is_empty() {
            return Err(out.errors);
        }
        for position in out.used_groups {
            if let Some(group) = set.groups.get_mut(position) {
                group.used = true;
            }
        }
        set.keys = keys;
        set.keysets = out.keysets;
        set.warnings = out.warnings;
        set.tokens = tokens;
        set.token_gates = token_gates;
        set.token_by_hash = token_by_hash;
        set.token_files = records;
        Ok(set)
    }
}

fn effect(raw: RawEffect) -> Effect {
    match raw {
        RawEffect::Allow => Effect::Allow,
        RawEffect::Deny => Effect::Deny,
    }
}

mod entities;
mod groups;
mod ids;
mod members;
mod sink;
mod tokens;

#[cfg(test)]
mod tests;
