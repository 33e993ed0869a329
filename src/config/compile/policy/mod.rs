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

use crate::config::error::ConfigError;
use crate::config::gateway::parse_cidr;
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

/// The string type of raw token fields: `String`, or `Str` borrowed from the file's text.
pub trait Text: std::ops::Deref<Target = str> {}

impl<S: std::ops::Deref<Target = str>> Text for S {}

/// Each group of a policy, by its index in the policy's `permission_groups`, with the resource types it is
/// meant for: borrowed from the catalog for a reference (not an `Arc` clone: the workers compiling tokens
/// would all count references on the same few catalog groups), owned for an inline group.
type GroupScopes<'s> = Vec<(usize, Cow<'s, [Box<str>]>)>;

/// A document path (`tokens[3].policies[1]`), formatted only when an error or a warning shows it: compiling
/// a million tokens walks tens of millions of paths, and almost none of them is ever shown.
type At<'p> = &'p dyn fmt::Display;

/// `{list}[{index}]`: an item of a file's top-level list.
struct Item(&'static str, usize);

impl fmt::Display for Item {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}[{}]", self.0, self.1)
    }
}

/// `{parent}.{name}` or `{parent}.{name}[{index}]`.
struct Sub<'p> {
    parent: At<'p>,
    name: &'p str,
    index: Option<usize>,
}

impl<'p> Sub<'p> {
    fn field(parent: At<'p>, name: &'p str) -> Self {
        Self {
            parent,
            name,
            index: None,
        }
    }

    fn item(parent: At<'p>, name: &'p str, index: usize) -> Self {
        Self {
            parent,
            name,
            index: Some(index),
        }
    }
}

impl fmt::Display for Sub<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.parent, self.name)?;
        match self.index {
            Some(index) => write!(f, "[{index}]"),
            None => Ok(()),
        }
    }
}

/// Where an id is defined: `{list}[{index}].{field}` or `{list}[{index}].{sub}[{sub_index}].{field}`. Kept
/// for every id (for a later duplicate's error) and formatted only when that error is shown.
#[derive(Debug, Clone, Copy)]
struct Site {
    list: &'static str,
    index: usize,
    sub: Option<(&'static str, usize)>,
    field: &'static str,
}

impl Site {
    fn field(list: &'static str, index: usize, field: &'static str) -> Self {
        Self {
            list,
            index,
            sub: None,
            field,
        }
    }
}

impl fmt::Display for Site {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}[{}]", self.list, self.index)?;
        if let Some((sub, index)) = self.sub {
            write!(f, ".{sub}[{index}]")?;
        }
        write!(f, ".{}", self.field)
    }
}

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
    fn error(&mut self, file: &Path, path: impl fmt::Display, message: impl Into<String>) {
        self.errors
            .push(ConfigError::new(file, path.to_string(), message));
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

    // === permission groups ===

    fn catalog(&mut self, out: &mut Output, source: &PolicySource<'a>) {
        for (index, group) in source.permission_groups.iter().enumerate() {
            let path = Item("permission_groups", index);
            let Some(id) = group.id.as_deref() else {
                out.error(
                    source.file,
                    &path,
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
                out.error(
                    source.file,
                    format!("{path}.permissions"),
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

    fn group_scopes<S>(
        &self,
        out: &mut Output,
        group: &RawGroup<S>,
        file: &Path,
        path: At<'_>,
    ) -> Vec<Box<str>> {
        let meta_scopes = group.meta.as_ref().and_then(|meta| meta.scopes.as_ref());
        match (group.scopes.as_deref(), meta_scopes) {
            (Some(_), Some(_)) => {
                out.error(
                    file,
                    format!("{path}.scopes"),
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
    fn group_patterns<S>(
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
    fn resolve_group<S: Text>(
        &self,
        out: &mut Output,
        group: &RawGroup<S>,
        file: &Path,
        path: At<'_>,
        into: &mut KeySet,
    ) -> Option<Cow<'_, [Box<str>]>> {
        if group.permissions.is_some() {
            let scopes = self.group_scopes(out, group, file, path);
            let (_, keys, ok) = self.group_patterns(out, group, file, path);
            into.union_with(&keys);
            return ok.then_some(Cow::Owned(scopes));
        }
        let position = match (group.id.as_deref(), group.name.as_deref()) {
            (Some(id), _) => match self.group_by_id.get(id) {
                Some(position) => *position,
                None => {
                    out.error(
                        file,
                        format!("{path}.id"),
                        format!("unknown permission group {id:?}"),
                    );
                    return None;
                }
            },
            (None, Some(name)) => match self.group_by_name.get(name).map(Vec::as_slice) {
                Some([position]) => *position,
                Some([]) | None => {
                    out.error(
                        file,
                        format!("{path}.name"),
                        format!("unknown permission group name {name:?}"),
                    );
                    return None;
                }
                Some(_) => {
                    out.error(
                        file,
                        format!("{path}.name"),
                        format!("several permission groups are named {name:?}: reference it by id"),
                    );
                    return None;
                }
            },
            (None, None) => {
                out.error(
                    file,
                    path,
                    "a permission group entry needs an `id`, a `name` or `permissions`",
                );
                return None;
            }
        };
        out.used_groups.push(position);
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
    fn policy_keys<S: Text>(
        &self,
        out: &mut Output,
        groups: &[RawGroup<S>],
        file: &Path,
        path: At<'_>,
    ) -> Option<(u32, GroupScopes<'_>)> {
        let mut group_scopes = Vec::new();
        // The union is built in a reused set, and copied only when it is one not seen before.
        let mut keys = std::mem::take(&mut out.scratch_keys);
        keys.reset(self.keys.len());
        let mut ok = true;
        if groups.is_empty() {
            out.error(
                file,
                format!("{path}.permission_groups"),
                "a policy needs at least one permission group",
            );
            return None;
        }
        for (index, group) in groups.iter().enumerate() {
            let group_path = Sub::item(path, "permission_groups", index);
            match self.resolve_group(out, group, file, &group_path, &mut keys) {
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
        let (index, reusable) = out.intern_keys(keys);
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
    fn check_group_scopes(
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
                            Select::AllZones | Select::AccountZones(_) | Select::Zone(_)
                        )
                        | ("user", Select::User(_))
                )
            })
        };
        let mut warnings = Vec::new();
        for (index, scopes) in group_scopes {
            for scope in scopes.iter() {
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

    // === users, accounts, zones, domain groups ===

    fn accounts(&mut self, out: &mut Output, source: &PolicySource<'a>) {
        for (index, account) in source.accounts.iter().enumerate() {
            let path = Item("accounts", index);
            if !self.first_seen.new_id(
                out,
                "account",
                &account.id,
                source.file,
                Site::field("accounts", index, "id"),
            ) {
                continue;
            }
            let position = self.set.accounts.len() as AccountIdx;
            self.set.account_by_id.insert(account.id.as_str(), position);
            let mut zones = Vec::new();
            for (zone_index, zone) in account.zones.iter().enumerate() {
                let zone_item = Sub::item(&path, "zones", zone_index);
                let zone_path = Sub::field(&zone_item, "id");
                if !check_id(out, &zone.id, source.file, &zone_path) {
                    continue;
                }
                if let Some(existing) = self.set.zone_by_id.get(zone.id.as_str()) {
                    let owner = Some(existing.account);
                    let message = match owner
                        .and_then(|owner| self.set.accounts.get(owner as usize))
                    {
                        Some(other) => format!(
                            "zone {:?} is already in account {:?}: a zone belongs to one account",
                            zone.id, other.id
                        ),
                        // Not yet in `accounts`: the owner is the account being read.
                        None => format!("duplicate zone {:?} in account {:?}", zone.id, account.id),
                    };
                    out.error(source.file, zone_path, message);
                    continue;
                }
                let zone_position = self.set.zones.len() as u32;
                self.set.zone_by_id.insert(
                    zone.id.as_str(),
                    ZoneEntry {
                        zone: zone_position,
                        account: position,
                    },
                );
                self.set.zones.push(Zone {
                    id: zone.id.as_str().into(),
                    name: zone.name.as_str().into(),
                    account: position,
                });
                zones.push(zone_position);
            }
            for (group_index, group) in account.domain_groups.iter().enumerate() {
                let group_path = Sub::item(&path, "domain_groups", group_index);
                if !self.first_seen.new_id(
                    out,
                    "domain group",
                    &group.id,
                    source.file,
                    Site {
                        sub: Some(("domain_groups", group_index)),
                        ..Site::field("accounts", index, "id")
                    },
                ) {
                    continue;
                }
                let mut members = Vec::new();
                for (zone_index, zone_id) in group.zones.iter().enumerate() {
                    match self.set.zone_by_id.get(zone_id.as_str()) {
                        Some(entry) if zones.contains(&entry.zone) => members.push(entry.zone),
                        _ => out.error(
                            source.file,
                            format!("{group_path}.zones[{zone_index}]"),
                            format!("zone {zone_id:?} is not a zone of account {:?}", account.id),
                        ),
                    }
                }
                self.domain_groups.insert(&group.id, (position, members));
            }
            self.set.accounts.push(Account {
                id: account.id.as_str().into(),
                name: account.name.as_str().into(),
                zones,
                domain_groups: account.domain_groups.len(),
            });
        }
    }

    /// The members of one file's accounts, compiled against the entities (read only, so files compile on
    /// every core). The members of an account that is not the first definition of its id (a duplicate,
    /// already an error) are skipped: they would be knock-on errors.
    fn member_batch(&self, source: &PolicySource<'a>) -> MemberBatch {
        let mut batch = MemberBatch::default();
        let out = &mut batch.out;
        for (index, account) in source.accounts.iter().enumerate() {
            let first_definition =
                self.first_seen
                    .is_first("account", &account.id, source.file, index);
            let Some(&account_position) = self.set.account_by_id.get(account.id.as_str()) else {
                continue;
            };
            if !first_definition {
                continue;
            }
            let account_on = account.api_access != Some(AccountApiAccess::Disabled);
            let mut seen_users: Vec<UserIdx> = Vec::with_capacity(account.members.len());
            for (member_index, member) in account.members.iter().enumerate() {
                let account_path = Item("accounts", index);
                let path = Sub::item(&account_path, "members", member_index);
                let Some(&user) = self.set.user_by_id.get(member.user.as_str()) else {
                    out.error(
                        source.file,
                        format!("{path}.user"),
                        format!("unknown user {:?}", member.user),
                    );
                    continue;
                };
                if seen_users.contains(&user) {
                    out.error(
                        source.file,
                        format!("{path}.user"),
                        format!(
                            "user {:?} is already a member of account {:?}",
                            member.user, account.id
                        ),
                    );
                    continue;
                }
                seen_users.push(user);
                let api_access = match member.api_access.unwrap_or(MemberApiAccess::Default) {
                    MemberApiAccess::Default => account_on,
                    MemberApiAccess::Enabled => true,
                    MemberApiAccess::Disabled => false,
                };
                let mut policies = Vec::new();
                for (policy_index, policy) in member.policies.iter().enumerate() {
                    let policy_path = Sub::item(&path, "policies", policy_index);
                    let label = || {
                        format!(
                            "member {}@{}/policies[{policy_index}]",
                            member.user, account.id
                        )
                    };
                    if let Some(policy) = self.bach_policy(
                        out,
                        policy,
                        account_position,
                        source.file,
                        &policy_path,
                        label,
                    ) {
                        policies.push(policy);
                    }
                }
                batch.members.push(Member {
                    user,
                    account: account_position,
                    api_access,
                    policies: policies.into_boxed_slice(),
                });
            }
        }
        batch
    }

    /// Adds a file's compiled members, in file order (their policies' key sets renumbered into `out`'s).
    fn add_members(&mut self, out: &mut Output, batch: MemberBatch) {
        let keysets = out.absorb(batch.out);
        for mut member in batch.members {
            renumber_keysets(&mut member.policies, &keysets);
            let (user, account) = (member.user, member.account);
            // An account's members are all in its one (first) definition, so no other file adds to it.
            if let Entry::Vacant(slot) = self.set.member_by_user_account.entry((user, account)) {
                slot.insert(member);
                if let Some(info) = self.set.users.get_mut(user as usize) {
                    info.memberships.push(account);
                }
            }
        }
    }

    /// A member policy in the Bach form (SPEC §3.1).
    fn bach_policy(
        &self,
        out: &mut Output,
        policy: &RawBachPolicy,
        account: AccountIdx,
        file: &Path,
        path: At<'_>,
        label: impl Fn() -> String,
    ) -> Option<Policy> {
        // Members are compiled after every account is known.
        let account_id = self
            .set
            .accounts
            .get(account as usize)
            .map_or("", |info| &*info.id);
        let keyset = self.policy_keys(out, &policy.permission_groups, file, path);
        let mut items = vec![];
        let mut ok = true;
        if policy.resource_groups.is_empty() {
            out.error(
                file,
                format!("{path}.resource_groups"),
                "a policy needs at least one resource group",
            );
            ok = false;
        }
        for (index, group) in policy.resource_groups.iter().enumerate() {
            let group_path = Sub::item(path, "resource_groups", index);
            match &group.scope {
                Some(scope) => {
                    match self.parse_resource_key(&scope.key) {
                        Some(ResourceKey::Account(id)) if id == account_id => {
                            items.push(Select::Account(account))
                        }
                        Some(ResourceKey::Account(id))
                            if self.set.account_by_id.contains_key(id) =>
                        {
                            out.error(
                                file,
                                format!("{group_path}.scope.key"),
                                format!("the scope account {id:?} is not the member's account {account_id:?}"),
                            );
                            ok = false;
                        }
                        Some(ResourceKey::Account(id)) => {
                            out.error(
                                file,
                                format!("{group_path}.scope.key"),
                                format!("unknown account {id:?}"),
                            );
                            ok = false;
                        }
                        _ => {
                            out.error(
                                file,
                                format!("{group_path}.scope.key"),
                                format!(
                                    "{:?} is not an account key like {}.account.<id>",
                                    scope.key, self.namespace
                                ),
                            );
                            ok = false;
                        }
                    }
                    for (object_index, object) in scope.objects.iter().enumerate() {
                        let scope_path = Sub::field(&group_path, "scope");
                        let object_item = Sub::item(&scope_path, "objects", object_index);
                        let object_path = Sub::field(&object_item, "key");
                        if object.key == "*" {
                            items.push(Select::AccountZones(account));
                            continue;
                        }
                        match self.parse_resource_key(&object.key) {
                            Some(ResourceKey::Zone(zone_id)) => {
                                match self.zone_in(zone_id, account) {
                                    Ok(zone) => items.push(Select::Zone(zone)),
                                    Err(message) => {
                                        out.error(file, object_path, message);
                                        ok = false;
                                    }
                                }
                            }
                            Some(ResourceKey::AllZones) => {
                                items.push(Select::AccountZones(account))
                            }
                            _ => {
                                out.error(
                                    file,
                                    object_path,
                                    format!(
                                        "{:?} is not `*` or a zone key like {}.account.zone.<id>",
                                        object.key, self.namespace
                                    ),
                                );
                                ok = false;
                            }
                        }
                    }
                }
                None => {
                    let Some(id) = group.id.as_deref() else {
                        out.error(
                            file,
                            &group_path,
                            "a resource group needs a `scope` or a domain group `id`",
                        );
                        ok = false;
                        continue;
                    };
                    match self.domain_groups.get(id) {
                        Some((owner, zones)) if *owner == account => {
                            items.push(Select::Account(account));
                            items.extend(zones.iter().map(|zone| Select::Zone(*zone)));
                        }
                        Some(_) => {
                            out.error(
                                file,
                                format!("{group_path}.id"),
                                format!("domain group {id:?} belongs to another account than {account_id:?}"),
                            );
                            ok = false;
                        }
                        None => {
                            out.error(
                                file,
                                format!("{group_path}.id"),
                                format!("unknown domain group {id:?}"),
                            );
                            ok = false;
                        }
                    }
                }
            }
        }
        let (keyset, group_scopes) = keyset?;
        if !ok {
            return None;
        }
        let selector = Selector::new(items);
        self.check_group_scopes(out, &group_scopes, &selector, file, path);
        Some(Policy {
            id: policy
                .id
                .as_deref()
                .map_or_else(|| label().into(), Into::into),
            effect: effect(policy.access),
            keyset,
            first_keys: out
                .keysets
                .get(keyset as usize)
                .map_or(0, KeySet::first_word),
            selector,
        })
    }

    /// Warns when a user token's policy names only accounts and zones where its user is not a member.
    fn check_reachable(
        &self,
        out: &mut Output,
        user: u32,
        selector: &Selector,
        file: &Path,
        path: At<'_>,
    ) {
        let memberships: &[AccountIdx] = self
            .set
            .users
            .get(user as usize)
            .map_or(&[], |info| &info.memberships);
        let reachable = selector.items().iter().any(|item| match item {
            Select::AllAccounts | Select::AllZones | Select::User(_) => true,
            Select::Account(account) | Select::AccountZones(account) => {
                memberships.contains(account)
            }
            Select::Zone(zone) => self
                .set
                .zones
                .get(*zone as usize)
                .is_some_and(|zone| memberships.contains(&zone.account)),
        });
        if !reachable {
            out.warn(
                file,
                format!("{path}.resources"),
                WarningKind::TokenUserNotMember,
                "the token's user is a member of none of these accounts, so the policy can never match",
            );
        }
    }

    fn zone_in(&self, zone_id: &str, account: AccountIdx) -> Result<u32, String> {
        match self.set.zone_by_id.get(zone_id) {
            Some(entry) if entry.account == account => Ok(entry.zone),
            Some(_) => Err(format!(
                "zone {zone_id:?} belongs to another account than {:?}",
                self.set
                    .accounts
                    .get(account as usize)
                    .map_or("", |a| &*a.id)
            )),
            None => Err(format!("unknown zone {zone_id:?}")),
        }
    }

    /// Parses `<ns>.account.*`, `<ns>.account.<A>`, `<ns>.account.zone.*`, `<ns>.account.zone.<Z>`,
    /// `<ns>.user.<U>`.
    fn parse_resource_key<'k>(&self, key: &'k str) -> Option<ResourceKey<'k>> {
        let rest = key.strip_prefix(self.namespace)?.strip_prefix('.')?;
        // Bytes, not characters: no byte of a multi-byte UTF-8 character is ASCII.
        let valid =
            |id: &str| !id.is_empty() && !id.bytes().any(|byte| matches!(byte, b'*' | b'.' | b' '));
        if let Some(zone) = rest.strip_prefix("account.zone.") {
            return match zone {
                "*" => Some(ResourceKey::AllZones),
                id if valid(id) => Some(ResourceKey::Zone(id)),
                _ => None,
            };
        }
        if let Some(account) = rest.strip_prefix("account.") {
            return match account {
                "*" => Some(ResourceKey::AllAccounts),
                id if valid(id) => Some(ResourceKey::Account(id)),
                _ => None,
            };
        }
        if let Some(user) = rest.strip_prefix("user.") {
            return match user {
                "*" => Some(ResourceKey::AllUsers),
                id if valid(id) => Some(ResourceKey::User(id)),
                _ => None,
            };
        }
        None
    }

    // === tokens ===

    /// Compiles the tokens of one file against the entities (after [`Compiler::entities`]). Only reads the
    /// compiler, so files can be compiled on several threads; nothing of `tokens` is kept.
    pub fn tokens<S: Text>(&self, file: &'a Path, tokens: &[RawToken<S>]) -> TokenBatch<'a> {
        let mut batch = self.token_batch(file);
        for token in tokens {
            self.add_token(&mut batch, token);
        }
        batch
    }

    /// An empty batch for the tokens of `file`, to be given them one at a time ([`Compiler::add_token`]).
    pub fn token_batch(&self, file: &'a Path) -> TokenBatch<'a> {
        let tokens = self
            .spare_lists
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .pop()
            .unwrap_or_default();
        TokenBatch {
            file,
            tokens,
            out: Output::default(),
        }
    }

    /// Compiles the next token of the batch's file (after [`Compiler::entities`]); as [`Compiler::tokens`],
    /// only reads the compiler, and keeps nothing of `token`.
    pub fn add_token<S: Text>(&self, batch: &mut TokenBatch<'a>, token: &RawToken<S>) {
        let index = batch.tokens.len();
        let compiled = self.token(
            &mut batch.out,
            token,
            batch.file,
            index,
            &Item("tokens", index),
        );
        batch.tokens.push(compiled);
    }

    /// A token (item `index` of its file's `tokens`) and its policies.
    fn token<S: Text>(
        &self,
        out: &mut Output,
        token: &RawToken<S>,
        file: &'a Path,
        index: usize,
        path: At<'_>,
    ) -> CompiledToken {
        let id_ok = check_id(out, &token.id, file, &format_args!("{path}.id"));
        let secret = parse_sha256(&token.secret_sha256);
        if secret.is_none() {
            out.error(
                file,
                format!("{path}.secret_sha256"),
                "not a hex SHA-256 (64 hex digits)",
            );
        }
        let owner = match (&token.owner.user, &token.owner.account) {
            (Some(user), None) => match self.set.user_by_id.get(&**user) {
                Some(user) => Some(Owner::User(*user)),
                None => {
                    out.error(
                        file,
                        format!("{path}.owner.user"),
                        format!("unknown user {:?}", &**user),
                    );
                    None
                }
            },
            (None, Some(account)) => match self.set.account_by_id.get(account) {
                Some(account) => Some(Owner::Account(*account)),
                None => {
                    out.error(
                        file,
                        format!("{path}.owner.account"),
                        format!("unknown account {:?}", &**account),
                    );
                    None
                }
            },
            _ => {
                out.error(
                    file,
                    format!("{path}.owner"),
                    "give exactly one of `user` or `account`",
                );
                None
            }
        };
        let not_before = self.timestamp(
            out,
            token.not_before.as_deref(),
            file,
            &format_args!("{path}.not_before"),
        );
        let expires_on = self.timestamp(
            out,
            token.expires_on.as_deref(),
            file,
            &format_args!("{path}.expires_on"),
        );
        if let (Some(Some((start, _))), Some(Some((end, _)))) = (&not_before, &expires_on) {
            if start >= end {
                out.error(
                    file,
                    format!("{path}.expires_on"),
                    "expires_on must be after not_before",
                );
            }
        }
        let ip_condition = self.ip_condition(out, token, file, path);
        // Exactly as many as the token has, so the boxed slice the sink makes of it is not a copy.
        let mut policies = Vec::with_capacity(token.policies.len());
        let mut policies_ok = true;
        if let Some(owner) = owner {
            for (policy_index, policy) in token.policies.iter().enumerate() {
                let policy_path = Sub::item(path, "policies", policy_index);
                let label = || format!("{}/policies[{policy_index}]", &*token.id);
                match self.token_policy(out, policy, owner, file, &policy_path, label) {
                    Some(policy) => policies.push(policy),
                    None => policies_ok = false,
                }
            }
        }
        let status = match token.status.unwrap_or(TokenStatus::Active) {
            TokenStatus::Active => Status::Active,
            TokenStatus::Disabled => Status::Disabled,
            TokenStatus::Expired => Status::Expired,
        };
        let compiled = match (owner, not_before, expires_on, ip_condition) {
            (Some(owner), Some(not_before), Some(expires_on), Some(ip_condition))
                if id_ok && secret.is_some() && policies_ok =>
            {
                Some((
                    Arc::new(Token {
                        id: (*token.id).into(),
                        name: token.name.as_deref().unwrap_or("").into(),
                        owner,
                        status,
                        not_before,
                        expires_on,
                        ip_condition,
                    }),
                    Arc::from(policies),
                ))
            }
            _ => None,
        };
        CompiledToken {
            index,
            id: (id_ok && compiled.is_none()).then(|| (*token.id).into()),
            secret,
            compiled,
        }
    }

    /// `Some(None)` when absent, `Some(Some(..))` when valid, `None` (with an error) when invalid.
    fn timestamp(
        &self,
        out: &mut Output,
        text: Option<&str>,
        file: &Path,
        path: At<'_>,
    ) -> Option<Option<(i64, Box<str>)>> {
        let Some(text) = text else { return Some(None) };
        match OffsetDateTime::parse(text, &Rfc3339) {
            Ok(time) => Some(Some((time.unix_timestamp(), text.into()))),
            Err(_) => {
                out.error(
                    file,
                    path,
                    format!("{text:?} is not an RFC 3339 time like 2025-11-14T00:00:00Z"),
                );
                None
            }
        }
    }

    fn ip_condition<S>(
        &self,
        out: &mut Output,
        token: &RawToken<S>,
        file: &Path,
        path: At<'_>,
    ) -> Option<Option<IpCondition>> {
        let Some(condition) = token
            .condition
            .as_ref()
            .and_then(|condition| condition.request_ip.as_ref())
        else {
            return Some(None);
        };
        let mut ok = true;
        let mut parse =
            |list: &[String], key: &str, errors: &mut Vec<ConfigError>| -> Vec<ipnet::IpNet> {
                let mut nets = Vec::new();
                for (index, text) in list.iter().enumerate() {
                    match parse_cidr(text) {
                        Some(net) => nets.push(net),
                        None => {
                            errors.push(ConfigError::new(
                                file,
                                format!("{path}.condition.request.ip.{key}[{index}]"),
                                format!("{text:?} is not an IP address or CIDR range"),
                            ));
                            ok = false;
                        }
                    }
                }
                nets
            };
        let inside = condition
            .inside
            .as_ref()
            .map(|list| parse(list, "in", &mut out.errors));
        let not_in = parse(&condition.not_in, "not_in", &mut out.errors);
        ok.then_some(Some(IpCondition { inside, not_in }))
    }

    /// A token policy in Cloudflare's API-token form (SPEC §3.2).
    fn token_policy<S: Text>(
        &self,
        out: &mut Output,
        policy: &RawTokenPolicy<S>,
        owner: Owner,
        file: &Path,
        path: At<'_>,
        label: impl Fn() -> String,
    ) -> Option<Policy> {
        let keyset = self.policy_keys(out, &policy.permission_groups, file, path);
        let mut items = Vec::new();
        let mut ok = true;
        if policy.resources.is_empty() {
            out.error(
                file,
                format!("{path}.resources"),
                "a policy needs at least one resource",
            );
            ok = false;
        }
        for (key, value) in &policy.resources {
            let key: &str = key;
            let resources_path = Sub::field(path, "resources");
            let entry_path = Sub::field(&resources_path, key);
            if !self.resource_entry(out, (key, value), owner, file, &entry_path, &mut items) {
                ok = false;
            }
        }
        let (keyset, group_scopes) = keyset?;
        if !ok {
            return None;
        }
        let selector = Selector::new(items);
        self.check_group_scopes(out, &group_scopes, &selector, file, path);
        if let Owner::User(user) = owner {
            self.check_reachable(out, user, &selector, file, path);
        }
        Some(Policy {
            id: policy
                .id
                .as_deref()
                .map_or_else(|| label().into(), Into::into),
            effect: effect(policy.effect),
            keyset,
            first_keys: out
                .keysets
                .get(keyset as usize)
                .map_or(0, KeySet::first_word),
            selector,
        })
    }

    /// One `resources` entry: adds what it selects to `into`; `false` (with an error) when it is invalid.
    fn resource_entry<S: Text>(
        &self,
        out: &mut Output,
        (key, value): (&str, &RawResourceValue<S>),
        owner: Owner,
        file: &Path,
        path: At<'_>,
        into: &mut Vec<Select>,
    ) -> bool {
        let Some(parsed) = self.parse_resource_key(key) else {
            out.error(
                file,
                path,
                format!(
                    "{key:?} is not a resource key ({ns}.account.<id>, {ns}.account.zone.<id>, {ns}.user.<id> or a `*` form)",
                    ns = self.namespace
                ),
            );
            return false;
        };
        let own_account = match owner {
            Owner::Account(account) => Some(account),
            Owner::User(_) => None,
        };
        let nested = match value {
            RawResourceValue::Text(star) if **star == *"*" => None,
            RawResourceValue::Text(other) => {
                out.error(
                    file,
                    path,
                    format!(
                        "the value must be \"*\" or a map of zone keys, not {:?}",
                        &**other
                    ),
                );
                return false;
            }
            RawResourceValue::Nested(map) => Some(map),
        };
        if nested.is_some() && !matches!(parsed, ResourceKey::Account(_)) {
            out.error(
                file,
                path,
                "only an account key can hold a nested map of zones",
            );
            return false;
        }
        match parsed {
            ResourceKey::AllAccounts => {
                into.extend([Select::AllAccounts, Select::AllZones]);
                true
            }
            ResourceKey::AllZones => {
                into.extend([Select::AllZones]);
                true
            }
            ResourceKey::AllUsers => {
                out.error(file, path, "a token may name only its own user");
                false
            }
            ResourceKey::User(user_id) => match (owner, self.set.user_by_id.get(user_id)) {
                (Owner::User(own), Some(user)) if own == *user => {
                    into.extend([Select::User(own)]);
                    true
                }
                (Owner::User(_), Some(_)) => {
                    out.error(
                        file,
                        path,
                        format!("a user token may name only its own user, not {user_id:?}"),
                    );
                    false
                }
                (Owner::Account(_), _) => {
                    out.error(
                        file,
                        path,
                        "an account-owned token cannot hold user resources",
                    );
                    false
                }
                (_, None) => {
                    out.error(file, path, format!("unknown user {user_id:?}"));
                    false
                }
            },
            ResourceKey::Zone(zone_id) => {
                let Some(&ZoneEntry { zone, .. }) = self.set.zone_by_id.get(zone_id) else {
                    out.error(file, path, format!("unknown zone {zone_id:?}"));
                    return false;
                };
                let zone_account = self.set.zones.get(zone as usize).map(|z| z.account);
                if own_account.is_some() && zone_account != own_account {
                    out.error(
                        file,
                        path,
                        format!("zone {zone_id:?} is outside the token's own account"),
                    );
                    return false;
                }
                {
                    into.extend([Select::Zone(zone)]);
                    true
                }
            }
            ResourceKey::Account(account_id) => {
                let Some(&account) = self.set.account_by_id.get(account_id) else {
                    out.error(file, path, format!("unknown account {account_id:?}"));
                    return false;
                };
                if own_account.is_some_and(|own| own != account) {
                    out.error(
                        file,
                        path,
                        format!("account {account_id:?} is not the token's own account"),
                    );
                    return false;
                }
                let Some(nested) = nested else {
                    return {
                        into.extend([Select::Account(account), Select::AccountZones(account)]);
                        true
                    };
                };
                let mut ok = true;
                for (zone_key, zone_value) in nested {
                    let (zone_key, zone_value): (&str, &str) = (zone_key, zone_value);
                    let zone_path = Sub::field(path, zone_key);
                    if zone_value != "*" {
                        out.error(
                            file,
                            &zone_path,
                            format!("the value must be \"*\", not {zone_value:?}"),
                        );
                        ok = false;
                        continue;
                    }
                    match self.parse_resource_key(zone_key) {
                        Some(ResourceKey::AllZones) => into.push(Select::AccountZones(account)),
                        Some(ResourceKey::Zone(zone_id)) => match self.zone_in(zone_id, account) {
                            Ok(zone) => into.push(Select::Zone(zone)),
                            Err(message) => {
                                out.error(file, &zone_path, message);
                                ok = false;
                            }
                        },
                        _ => {
                            out.error(
                                file,
                                &zone_path,
                                format!("{zone_key:?} is not a zone key like {}.account.zone.<id> or its `*` form", self.namespace),
                            );
                            ok = false;
                        }
                    }
                }
                ok
            }
        }
    }
}

impl TokenBatch<'_> {
    /// How many tokens the batch holds (compiled or not).
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }
}

impl<'a> TokenSink<'a> {
    /// Makes room for `additional` more tokens (their count estimated; a wrong guess costs only time or
    /// memory: the tables still grow as needed).
    pub fn reserve(&mut self, additional: usize) {
        let len = self.tokens.len();
        let needed = len.saturating_add(additional);
        if needed <= self.tokens.capacity() {
            return;
        }
        // A little more than asked: an estimate that creeps up then does not copy the tables each time.
        let additional = needed.saturating_add(needed / 32) - len;
        self.tokens.reserve_exact(additional);
        self.token_gates.reserve_exact(additional);
        self.token_by_hash.reserve(additional);
        self.kept_origins.reserve_exact(additional);
        let tokens = &self.tokens;
        self.kept_ids
            .reserve(additional, |&position| id_hash(token_id(tokens, position)));
    }

    /// Adds one file's tokens (batches in file order): each is kept when it compiled and its id and secret
    /// hash are the first of their kind.
    pub fn add(&mut self, compiler: &Compiler<'a>, batch: TokenBatch<'a>) {
        let TokenBatch {
            file,
            mut tokens,
            out,
        } = batch;
        let start = self.tokens.len() as u32;
        let warnings = out.warnings.clone();
        let mut used_groups = out.used_groups.clone();
        used_groups.sort_unstable();
        used_groups.dedup();
        let keysets = self.out.absorb(out);
        for token in tokens.drain(..) {
            let id = match (&token.id, &token.compiled) {
                (Some(id), _) => Some(&**id),
                (None, Some((compiled, _))) => Some(&*compiled.id),
                (None, None) => None,
            };
            let id_ok = id.is_some_and(|id| {
                let first = self.first_with_id(id);
                self.report_duplicate(first, format_args!("token {id:?}"), "id", file, token.index)
            });
            let secret_ok = token.secret.is_some_and(|secret| {
                let first = self.first_with_secret(&secret);
                let what = format_args!("token secret hash");
                self.report_duplicate(first, what, "secret_sha256", file, token.index)
            });
            let origin = (file, token.index);
            if !(id_ok && secret_ok && token.compiled.is_some() && token.secret.is_some()) {
                // Not kept, but the first of its id or secret hash all the same.
                if let (Some(id), true) = (id, id_ok) {
                    self.other_ids.insert(id.into(), origin);
                }
                if let (Some(secret), true) = (token.secret, secret_ok) {
                    self.other_secrets.insert(secret, origin);
                }
                continue;
            }
            // Both are there (checked just above).
            let (Some((compiled, mut policies)), Some(secret)) = (token.compiled, token.secret)
            else {
                continue;
            };
            // The batch's policies are its own (one reference): renumbered in place.
            match Arc::get_mut(&mut policies) {
                Some(policies) => renumber_keysets(policies, &keysets),
                None => {
                    let mut copy = policies.to_vec();
                    renumber_keysets(&mut copy, &keysets);
                    policies = Arc::from(copy);
                }
            }
            let position = self.tokens.len() as u32;
            let tokens = &self.tokens;
            self.kept_ids
                .insert_unique(id_hash(&compiled.id), position, |&kept| {
                    id_hash(token_id(tokens, kept))
                });
            self.kept_origins.push(origin);
            let gate = TokenGate {
                owner: compiled.owner,
                status: compiled.status,
                has_ip_condition: compiled.ip_condition.is_some(),
                valid_from: compiled.not_before.as_ref().map_or(i64::MIN, |(at, _)| *at),
                valid_until: compiled.expires_on.as_ref().map_or(i64::MAX, |(at, _)| *at),
                owner_id: self.owner_id(compiler, compiled.owner),
                policies,
            };
            self.token_by_hash.insert(secret, position);
            self.tokens.push(compiled);
            self.token_gates.push(gate);
        }
        self.records.push(TokenFileRecord {
            file: file.to_path_buf(),
            tokens: start..self.tokens.len() as u32,
            used_groups: used_groups.into_boxed_slice(),
            warnings,
        });
        let mut spare = compiler
            .spare_lists
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // One list per batch in flight is all that is ever waiting for reuse.
        if spare.len() < 16 {
            spare.push(tokens);
        }
    }

    /// Adds one file's tokens as `previous` compiled them, shared with it, instead of compiling the file
    /// again: for a reload in which this file, the entities and the routes are unchanged (so the compiled
    /// tokens are what compiling the file would give), only other token files changed. `record` is the file's
    /// record in `previous`, `secrets` the secret hash of each of `previous`'s tokens by position. This
    /// compile must have been resumed from `previous` ([`Compiler::resume`]), so that `previous`'s key-set
    /// numbers are its numbers too. The cross-file checks (ids, secret hashes) run exactly as for a compiled
    /// batch, so the errors are those of a full compile, and the decisions too.
    pub fn add_reused(
        &mut self,
        compiler: &Compiler<'a>,
        file: &'a Path,
        previous: &PolicySet,
        record: &TokenFileRecord,
        secrets: &[[u8; 32]],
    ) {
        let start = self.tokens.len() as u32;
        self.out.warnings.extend(record.warnings.iter().cloned());
        self.out
            .used_groups
            .extend(record.used_groups.iter().copied());
        let range = record.tokens.start as usize..record.tokens.end as usize;
        let (Some(tokens), Some(gates), Some(secrets)) = (
            previous.tokens.get(range.clone()),
            previous.token_gates.get(range.clone()),
            secrets.get(range),
        ) else {
            self.out.error(
                file,
                "tokens",
                "internal error: the previous compile's tokens of this file are missing",
            );
            return;
        };
        for (index, ((token, gate), secret)) in tokens.iter().zip(gates).zip(secrets).enumerate() {
            let id = &*token.id;
            let id_ok = {
                let first = self.first_with_id(id);
                self.report_duplicate(first, format_args!("token {id:?}"), "id", file, index)
            };
            let secret_ok = {
                let first = self.first_with_secret(secret);
                let what = format_args!("token secret hash");
                self.report_duplicate(first, what, "secret_sha256", file, index)
            };
            let origin = (file, index);
            if !(id_ok && secret_ok) {
                if id_ok {
                    self.other_ids.insert(id.into(), origin);
                }
                if secret_ok {
                    self.other_secrets.insert(*secret, origin);
                }
                continue;
            }
            let position = self.tokens.len() as u32;
            let kept = &self.tokens;
            self.kept_ids
                .insert_unique(id_hash(id), position, |&kept_at| {
                    id_hash(token_id(kept, kept_at))
                });
            self.kept_origins.push(origin);
            self.token_by_hash.insert(*secret, position);
            let owner_id = self.owner_id(compiler, gate.owner);
            self.token_gates.push(TokenGate {
                owner_id,
                ..gate.clone()
            });
            self.tokens.push(Arc::clone(token));
        }
        self.records.push(TokenFileRecord {
            file: file.to_path_buf(),
            tokens: start..self.tokens.len() as u32,
            used_groups: record.used_groups.clone(),
            warnings: record.warnings.clone(),
        });
    }

    /// Where the first token with this id was defined, if one was.
    fn first_with_id(&self, id: &str) -> Option<TokenOrigin<'a>> {
        let tokens = &self.tokens;
        match self
            .kept_ids
            .find(id_hash(id), |&kept| token_id(tokens, kept) == id)
        {
            Some(&kept) => self.kept_origins.get(kept as usize).copied(),
            None => self.other_ids.get(id).copied(),
        }
    }

    /// Where the first token with this secret hash was defined, if one was (the hash is never shown).
    fn first_with_secret(&self, secret: &[u8; 32]) -> Option<TokenOrigin<'a>> {
        match self.token_by_hash.get(secret) {
            Some(&kept) => self.kept_origins.get(kept as usize).copied(),
            None => self.other_secrets.get(secret).copied(),
        }
    }

    /// `true` when `first` is `None`; otherwise an error at `tokens[index].field` naming the first one
    /// (`what` is formatted only then).
    fn report_duplicate(
        &mut self,
        first: Option<TokenOrigin<'a>>,
        what: fmt::Arguments<'_>,
        field: &str,
        file: &Path,
        index: usize,
    ) -> bool {
        let Some((first_file, first_index)) = first else {
            return true;
        };
        let message = format!(
            "duplicate {what} (first defined at {}: tokens[{first_index}].{field})",
            first_file.display()
        );
        self.out
            .error(file, format_args!("tokens[{index}].{field}"), message);
        false
    }

    /// The id of a token's owner, one shared copy per owner.
    fn owner_id(&mut self, compiler: &Compiler<'a>, owner: Owner) -> Arc<str> {
        let set = &compiler.set;
        self.owner_ids
            .entry(owner)
            .or_insert_with(|| {
                let id = match owner {
                    Owner::User(user) => set.users.get(user as usize).map(|user| &*user.id),
                    Owner::Account(account) => set
                        .accounts
                        .get(account as usize)
                        .map(|account| &*account.id),
                };
                // Owners come from the user and account indexes, so the record exists.
                Arc::from(id.unwrap_or(""))
            })
            .clone()
    }
}

/// The users of a config and their indexes, compiled apart from the accounts (see [`Compiler::entities`]).
struct UserTables<'a> {
    users: Vec<User>,
    by_id: FxHashMap<Box<str>, UserIdx>,
    by_email: FxHashMap<Box<str>, UserIdx>,
    /// Where each user id and email was first defined.
    first_seen: FirstSeen<'a>,
    out: Output,
}

impl<'a> UserTables<'a> {
    /// Adds the users of one file.
    fn add(&mut self, source: &PolicySource<'a>) {
        let out = &mut self.out;
        for (index, user) in source.users.iter().enumerate() {
            let path = Item("users", index);
            if !self.first_seen.new_id(
                out,
                "user",
                &user.id,
                source.file,
                Site::field("users", index, "id"),
            ) {
                continue;
            }
            if !user.email.contains('@')
                || has_any(&user.email, email_byte_forbidden, email_char_forbidden)
            {
                out.error(
                    source.file,
                    format!("{path}.email"),
                    format!("{:?} is not an email address", user.email),
                );
                continue;
            }
            if !self.first_seen.record(
                out,
                "user email",
                &user.email,
                source.file,
                Site::field("users", index, "email"),
            ) {
                continue;
            }
            let api_key_sha256 = match user.api_key_sha256.as_deref() {
                None => None,
                Some(text) => match parse_sha256(text) {
                    Some(hash) => Some(hash),
                    None => {
                        out.error(
                            source.file,
                            format!("{path}.api_key_sha256"),
                            "not a hex SHA-256 (64 hex digits)",
                        );
                        continue;
                    }
                },
            };
            let position = self.users.len() as u32;
            self.by_id.insert(user.id.as_str().into(), position);
            self.by_email.insert(user.email.as_str().into(), position);
            self.users.push(User {
                id: user.id.as_str().into(),
                email: user.email.as_str().into(),
                api_key_sha256,
                memberships: Vec::new(),
            });
        }
    }
}

/// Where each id of a config was first defined, by kind (`"user"`, `"account"`, …), for duplicate errors.
#[derive(Default)]
struct FirstSeen<'a>(FxHashMap<(&'static str, &'a str), (&'a Path, Site)>);

impl<'a> FirstSeen<'a> {
    fn with_capacity(capacity: usize) -> Self {
        let mut map = FxHashMap::default();
        map.reserve(capacity);
        Self(map)
    }

    /// Records the first definition of `(kind, id)`; a second one is an error naming the first.
    fn record(
        &mut self,
        out: &mut Output,
        kind: &'static str,
        id: &'a str,
        file: &'a Path,
        site: Site,
    ) -> bool {
        match self.0.entry((kind, id)) {
            Entry::Vacant(slot) => {
                slot.insert((file, site));
                true
            }
            Entry::Occupied(first) => {
                let (first_file, first_site) = first.get();
                let message = format!(
                    "duplicate {kind} {id:?} (first defined at {}: {first_site})",
                    first_file.display()
                );
                out.error(file, site, message);
                false
            }
        }
    }

    /// Whether `id` is a valid id (see [`check_id`], the error at `site`) defined at `site` for the first
    /// time of its kind (see [`FirstSeen::record`]).
    fn new_id(
        &mut self,
        out: &mut Output,
        kind: &'static str,
        id: &'a str,
        file: &'a Path,
        site: Site,
    ) -> bool {
        check_id(out, id, file, &site) && self.record(out, kind, id, file, site)
    }

    /// Whether item `index` of `file` is where `(kind, id)` was first defined.
    fn is_first(&self, kind: &'static str, id: &str, file: &Path, index: usize) -> bool {
        self.0
            .get(&(kind, id))
            .is_some_and(|(first_file, site)| *first_file == file && site.index == index)
    }
}

/// Whether `id` is a valid id (no white space, control characters, `/` or `*`); an error at `path` if not.
fn check_id(out: &mut Output, id: &str, file: &Path, path: At<'_>) -> bool {
    if id.is_empty() || has_any(id, id_byte_forbidden, id_char_forbidden) {
        out.error(
            file,
            path,
            format!("{id:?} is not a valid id (no spaces, `/` or `*`)"),
        );
        false
    } else {
        true
    }
}

/// White space, control characters, `*` and `/` may not be in an id.
fn id_char_forbidden(c: char) -> bool {
    c.is_whitespace() || c.is_control() || c == '*' || c == '/'
}

/// [`id_char_forbidden`] of an ASCII character, by its byte.
fn id_byte_forbidden(byte: u8) -> bool {
    byte <= b' ' || byte == 0x7f || byte == b'*' || byte == b'/'
}

/// White space and control characters may not be in an email address.
fn email_char_forbidden(c: char) -> bool {
    c.is_whitespace() || c.is_control()
}

/// [`email_char_forbidden`] of an ASCII character, by its byte.
fn email_byte_forbidden(byte: u8) -> bool {
    byte <= b' ' || byte == 0x7f
}

/// Whether `text` holds a forbidden character: by `forbidden_byte` a byte at a time when it is ASCII (nearly
/// every id; a config of ten thousand accounts holds hundreds of thousands), by `forbidden_char` otherwise.
/// The two say the same of every ASCII character (a unit test compares them on all 128).
fn has_any(
    text: &str,
    forbidden_byte: impl Fn(u8) -> bool,
    forbidden_char: impl Fn(char) -> bool,
) -> bool {
    if text.is_ascii() {
        // No early exit: the compiler turns the whole test into vector instructions.
        text.bytes()
            .fold(false, |found, byte| found | forbidden_byte(byte))
    } else {
        text.chars().any(forbidden_char)
    }
}

/// The hash of a token id in [`TokenSink`]'s table of kept ids.
fn id_hash(id: &str) -> u64 {
    use std::hash::BuildHasher as _;
    rustc_hash::FxBuildHasher.hash_one(id)
}

/// The id of kept token `position`.
fn token_id(tokens: &[Arc<Token>], position: u32) -> &str {
    tokens.get(position as usize).map_or("", |token| &token.id)
}

fn effect(raw: RawEffect) -> Effect {
    match raw {
        RawEffect::Allow => Effect::Allow,
        RawEffect::Deny => Effect::Deny,
    }
}

/// 64 hex digits (either case) to 32 bytes.
pub fn parse_sha256(text: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(text, &mut out).ok()?;
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A token id or secret hash given twice is an error naming the first definition, whether that first
    /// token was kept (found through the kept tokens' own index) or not (an invalid token).
    #[test]
    fn duplicate_token_ids_and_secrets_name_the_first_kept_or_not() {
        let token = |id: &str, owner: &str, secret: char| {
            format!(
                r#"{{"id": "{id}", "owner": {{"user": "{owner}"}}, "secret_sha256": "{}",
                    "policies": [{{"effect": "allow", "permission_groups": [{{"id": "g"}}],
                                   "resources": {{"ns.user.{owner}": "*"}}}}]}}"#,
                secret.to_string().repeat(64)
            )
        };
        let first = raw(&format!(
            r#"{{"permission_groups": [{{"id": "g", "permissions": ["*"]}}],
                "users": [{{"id": "u1", "email": "u1@example.com"}}],
                "tokens": [{}, {}]}}"#,
            token("t1", "u1", 'a'),
            token("t2", "nobody", 'b'),
        ));
        let second = raw(&format!(
            r#"{{"tokens": [{}, {}, {}, {}]}}"#,
            token("t1", "u1", 'c'),
            token("t3", "u1", 'b'),
            token("t2", "u1", 'd'),
            token("t4", "u1", 'a'),
        ));
        let (one, two) = (Path::new("one.json"), Path::new("two.json"));
        let errors = compile(&[(one, &first), (two, &second)], KeyInterner::new(), "ns")
            .err()
            .unwrap();
        let seen: Vec<(String, String, String)> = errors
            .iter()
            .map(|error| {
                (
                    error.file.display().to_string(),
                    error.path.clone(),
                    error.message.clone(),
                )
            })
            .collect();
        let expected = [
            (
                "one.json",
                "tokens[1].owner.user",
                "unknown user \"nobody\"",
            ),
            (
                "two.json",
                "tokens[0].id",
                "duplicate token \"t1\" (first defined at one.json: tokens[0].id)",
            ),
            (
                "two.json",
                "tokens[1].secret_sha256",
                "duplicate token secret hash (first defined at one.json: tokens[1].secret_sha256)",
            ),
            (
                "two.json",
                "tokens[2].id",
                "duplicate token \"t2\" (first defined at one.json: tokens[1].id)",
            ),
            (
                "two.json",
                "tokens[3].secret_sha256",
                "duplicate token secret hash (first defined at one.json: tokens[0].secret_sha256)",
            ),
        ];
        assert_eq!(
            seen,
            expected.map(|(file, path, message)| (
                file.to_string(),
                path.to_string(),
                message.to_string()
            ))
        );
    }

    #[test]
    fn forbidden_characters_are_the_same_by_bytes_and_by_characters() {
        type Pair = (fn(u8) -> bool, fn(char) -> bool);
        let pairs: [Pair; 2] = [
            (id_byte_forbidden, id_char_forbidden),
            (email_byte_forbidden, email_char_forbidden),
        ];
        for (by_byte, by_char) in pairs {
            for byte in 0..=0x7f_u8 {
                assert_eq!(by_byte(byte), by_char(char::from(byte)), "{byte:#x}");
            }
            let texts = [
                "",
                "abc-123_x",
                "a b",
                "a\tb",
                "a\u{7f}b",
                "a*",
                "/a",
                "z\u{e9}ro",
                "a\u{a0}b",
                "a\u{2028}b",
                "a\u{85}b",
                "\u{1f600}",
                "\u{3000}",
            ];
            for text in texts {
                assert_eq!(
                    has_any(text, by_byte, by_char),
                    text.chars().any(by_char),
                    "{text:?}"
                );
            }
        }
    }

    fn raw(json: &str) -> RawPolicyFile {
        serde_json::from_str(json).unwrap()
    }

    /// Users and accounts compile at the same time (on two threads); their errors still come in the order of
    /// a compile that did one after the other: every user error (in file order), then every account error.
    #[test]
    fn user_and_account_errors_keep_their_order_across_files() {
        let first = raw(
            r#"{"users": [{"id": "u1", "email": "u1@example.com"}, {"id": "u2", "email": "no-at"}],
                "accounts": [{"id": "a1", "name": "A", "zones": [{"id": "z1", "name": "z1.example"},
                                                                 {"id": "z1", "name": "again.example"}]}]}"#,
        );
        let second = raw(r#"{"users": [{"id": "u1", "email": "other@example.com"}],
                "accounts": [{"id": "a1", "name": "A again"}, {"id": "a 2", "name": "B"}]}"#);
        let (one, two) = (Path::new("one.json"), Path::new("two.json"));
        let errors = compile(&[(one, &first), (two, &second)], KeyInterner::new(), "ns")
            .err()
            .unwrap();
        let seen: Vec<(String, String)> = errors
            .iter()
            .map(|error| (error.file.display().to_string(), error.path.clone()))
            .collect();
        let expected = [
            ("one.json", "users[1].email"),
            ("two.json", "users[0].id"),
            ("one.json", "accounts[0].zones[1].id"),
            ("two.json", "accounts[0].id"),
            ("two.json", "accounts[1].id"),
        ];
        assert_eq!(
            seen,
            expected.map(|(file, path)| (file.to_string(), path.to_string()))
        );
        assert!(
            errors[1]
                .message
                .contains("duplicate user \"u1\" (first defined at one.json: users[0].id)")
        );
        assert!(errors[3].message.contains("duplicate account \"a1\""));
    }
}
