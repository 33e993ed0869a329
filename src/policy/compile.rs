//! Turns the raw policy files into a [`PolicySet`]: resolves every reference, checks every rule of SPEC §2–§3,
//! and reports every error at once with its file and document path.

use std::collections::hash_map::Entry;
use std::fmt;
use std::path::Path;
use std::sync::Arc;

use rustc_hash::FxHashMap;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::keys::{KeyInterner, KeyPattern, KeySet};
use super::model::{
    Account, AccountIdx, Effect, GroupInfo, IpCondition, Member, Owner, Policy, PolicySet, Select,
    Selector, Status, Token, TokenGate, User, Zone, ZoneEntry,
};
use crate::config::error::ConfigError;
use crate::config::gateway::parse_cidr;
use crate::config::raw::{
    AccountApiAccess, Effect as RawEffect, MemberApiAccess, RawAccount, RawBachPolicy, RawGroup,
    RawPolicyFile, RawResourceValue, RawToken, RawTokenPolicy, RawUser, TokenStatus,
};

/// Each group of a policy, by its index in the policy's `permission_groups`, with the resource types it is
/// meant for.
type GroupScopes = Vec<(usize, Arc<[Box<str>]>)>;

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

/// A compile in progress: [`Compiler::entities`] once with every file, then [`Compiler::tokens`] with each
/// file's tokens (which may be dropped right after), then [`Compiler::finish`].
pub struct Compiler<'a> {
    namespace: &'a str,
    keys: KeyInterner,
    set: PolicySet,
    errors: Vec<ConfigError>,
    /// Catalog groups: index into `set.groups`, with their expanded key sets.
    group_keys: Vec<KeySet>,
    group_by_id: FxHashMap<&'a str, usize>,
    group_by_name: FxHashMap<&'a str, Vec<usize>>,
    keyset_index: FxHashMap<KeySet, u32>,
    /// A key set reused by each policy's union (see `policy_keys`).
    scratch_keys: KeySet,
    /// Domain groups: id → (account, zones).
    domain_groups: FxHashMap<&'a str, (AccountIdx, Vec<u32>)>,
    /// Where each id was first defined, for duplicate errors.
    first_seen: FxHashMap<(&'static str, &'a str), String>,
    /// Token ids and secret hashes, owned: the raw tokens are gone by the time a later file is compiled.
    token_ids: FxHashMap<Box<str>, TokenOrigin<'a>>,
    token_secrets: FxHashMap<[u8; 32], TokenOrigin<'a>>,
    /// The shared id of each token owner (see [`TokenGate::owner_id`]).
    owner_ids: FxHashMap<Owner, Arc<str>>,
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
    for (file, raw) in files {
        compiler.tokens(file, &raw.tokens);
    }
    compiler.finish()
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
            errors: Vec::new(),
            group_keys: Vec::new(),
            group_by_id: FxHashMap::default(),
            group_by_name: FxHashMap::default(),
            keyset_index: FxHashMap::default(),
            scratch_keys: KeySet::default(),
            domain_groups: FxHashMap::default(),
            first_seen: FxHashMap::default(),
            token_ids: FxHashMap::default(),
            token_secrets: FxHashMap::default(),
            owner_ids: FxHashMap::default(),
        }
    }

    /// The permission groups, users, accounts, zones, domain groups and members of every file: all that a
    /// token may refer to.
    pub fn entities(&mut self, sources: &[PolicySource<'a>]) {
        for source in sources {
            self.catalog(source);
        }
        for source in sources {
            self.users(source);
        }
        for source in sources {
            self.accounts(source);
        }
        for source in sources {
            self.members(source);
        }
    }

    /// The compiled set, or every error met.
    pub fn finish(self) -> Result<PolicySet, Vec<ConfigError>> {
        let Compiler {
            mut set,
            errors,
            keys,
            ..
        } = self;
        if !errors.is_empty() {
            return Err(errors);
        }
        set.keys = keys;
        Ok(set)
    }

    /// Whether an error has been met so far.
    pub fn has_errors(&self) -> bool {
        !self.errors.is_empty()
    }
    fn error(&mut self, file: &Path, path: impl fmt::Display, message: impl Into<String>) {
        self.errors
            .push(ConfigError::new(file, path.to_string(), message));
    }

    /// Records the first definition of `(kind, id)`; a second one is an error naming the first.
    fn unique(&mut self, kind: &'static str, id: &'a str, file: &Path, path: At<'_>) -> bool {
        let here = format!("{}: {path}", file.display());
        match self.first_seen.entry((kind, id)) {
            Entry::Vacant(slot) => {
                slot.insert(here);
                true
            }
            Entry::Occupied(first) => {
                let message = format!("duplicate {kind} {id:?} (first defined at {})", first.get());
                self.error(file, path, message);
                false
            }
        }
    }

    fn check_id(&mut self, id: &str, file: &Path, path: At<'_>) -> bool {
        if id.is_empty()
            || id
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || c == '*' || c == '/')
        {
            self.error(
                file,
                path,
                format!("{id:?} is not a valid id (no spaces, `/` or `*`)"),
            );
            false
        } else {
            true
        }
    }

    // === permission groups ===

    fn catalog(&mut self, source: &PolicySource<'a>) {
        for (index, group) in source.permission_groups.iter().enumerate() {
            let path = Item("permission_groups", index);
            let Some(id) = group.id.as_deref() else {
                self.error(
                    source.file,
                    &path,
                    "a catalog permission group needs an `id`",
                );
                continue;
            };
            if !self.check_id(id, source.file, &format_args!("{path}.id"))
                || !self.unique(
                    "permission group",
                    id,
                    source.file,
                    &format_args!("{path}.id"),
                )
            {
                continue;
            }
            if group.permissions.is_none() {
                self.error(
                    source.file,
                    format!("{path}.permissions"),
                    "a catalog permission group needs `permissions`",
                );
                continue;
            }
            let scopes = self.group_scopes(group, source.file, &path);
            // A group with a bad key is still registered (its error is reported), so references to it do
            // not each report a misleading "unknown permission group".
            let (patterns, keys, _) = self.group_patterns(group, source.file, &path);
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
            if let Some(name) = group.name.as_deref() {
                self.group_by_name.entry(name).or_default().push(position);
            }
        }
    }

    fn group_scopes(&mut self, group: &RawGroup, file: &Path, path: At<'_>) -> Arc<[Box<str>]> {
        let meta_scopes = group.meta.as_ref().and_then(|meta| meta.scopes.as_ref());
        match (group.scopes.as_deref(), meta_scopes) {
            (Some(_), Some(_)) => {
                self.error(
                    file,
                    format!("{path}.scopes"),
                    "give `scopes` at the top level or in `meta`, not both",
                );
                Arc::default()
            }
            (Some(scopes), None) | (None, Some(scopes)) => {
                scopes.values().into_iter().map(Into::into).collect()
            }
            (None, None) => Arc::default(),
        }
    }

    /// Parses a group's permission patterns and expands them over the route keys.
    fn group_patterns(
        &mut self,
        group: &RawGroup,
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
                    self.error(
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
    fn resolve_group(
        &mut self,
        group: &RawGroup,
        file: &Path,
        path: At<'_>,
        into: &mut KeySet,
    ) -> Option<Arc<[Box<str>]>> {
        if group.permissions.is_some() {
            let scopes = self.group_scopes(group, file, path);
            let (_, keys, ok) = self.group_patterns(group, file, path);
            into.union_with(&keys);
            return ok.then_some(scopes);
        }
        let position = match (group.id.as_deref(), group.name.as_deref()) {
            (Some(id), _) => match self.group_by_id.get(id) {
                Some(position) => *position,
                None => {
                    self.error(
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
                    self.error(
                        file,
                        format!("{path}.name"),
                        format!("unknown permission group name {name:?}"),
                    );
                    return None;
                }
                Some(_) => {
                    self.error(
                        file,
                        format!("{path}.name"),
                        format!("several permission groups are named {name:?}: reference it by id"),
                    );
                    return None;
                }
            },
            (None, None) => {
                self.error(
                    file,
                    path,
                    "a permission group entry needs an `id`, a `name` or `permissions`",
                );
                return None;
            }
        };
        let scopes = match self.set.groups.get_mut(position) {
            Some(info) => {
                info.used = true;
                info.scopes.clone()
            }
            None => Arc::default(),
        };
        let keys = self.group_keys.get(position)?;
        into.union_with(keys);
        Some(scopes)
    }

    /// The union of a policy's groups, stored once per distinct set, with each group's scopes.
    fn policy_keys(
        &mut self,
        groups: &[RawGroup],
        file: &Path,
        path: At<'_>,
    ) -> Option<(u32, GroupScopes)> {
        let mut group_scopes = Vec::new();
        // The union is built in a reused set, and copied only when it is one not seen before.
        let mut keys = std::mem::take(&mut self.scratch_keys);
        keys.reset(self.keys.len());
        let mut ok = true;
        if groups.is_empty() {
            self.error(
                file,
                format!("{path}.permission_groups"),
                "a policy needs at least one permission group",
            );
            return None;
        }
        for (index, group) in groups.iter().enumerate() {
            let group_path = Sub::item(path, "permission_groups", index);
            match self.resolve_group(group, file, &group_path, &mut keys) {
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
        let index = match self.keyset_index.get(&keys).copied() {
            Some(index) => {
                self.scratch_keys = keys;
                index
            }
            None => {
                let index = u32::try_from(self.set.keysets.len()).unwrap_or(u32::MAX);
                self.keyset_index.insert(keys.clone(), index);
                self.set.keysets.push(keys);
                index
            }
        };
        if empty {
            self.warn(
                file,
                path,
                "its permission groups grant no key that any route requires, so it can never match",
            );
        }
        Some((index, group_scopes))
    }

    /// Warns when a group sits in a policy whose selector holds no resource of the group's type (SPEC §1).
    fn check_group_scopes(
        &mut self,
        group_scopes: &GroupScopes,
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
            self.warn(file, path, message);
        }
    }

    fn warn(&mut self, file: &Path, path: impl fmt::Display, message: impl Into<String>) {
        self.set
            .warnings
            .push(ConfigError::new(file, path.to_string(), message));
    }

    // === users, accounts, zones, domain groups ===

    fn users(&mut self, source: &PolicySource<'a>) {
        for (index, user) in source.users.iter().enumerate() {
            let path = Item("users", index);
            if !self.check_id(&user.id, source.file, &format_args!("{path}.id"))
                || !self.unique("user", &user.id, source.file, &format_args!("{path}.id"))
            {
                continue;
            }
            if !user.email.contains('@')
                || user
                    .email
                    .chars()
                    .any(|c| c.is_whitespace() || c.is_control())
            {
                self.error(
                    source.file,
                    format!("{path}.email"),
                    format!("{:?} is not an email address", user.email),
                );
                continue;
            }
            if !self.unique(
                "user email",
                &user.email,
                source.file,
                &format_args!("{path}.email"),
            ) {
                continue;
            }
            let api_key_sha256 = match user.api_key_sha256.as_deref() {
                None => None,
                Some(text) => match parse_sha256(text) {
                    Some(hash) => Some(hash),
                    None => {
                        self.error(
                            source.file,
                            format!("{path}.api_key_sha256"),
                            "not a hex SHA-256 (64 hex digits)",
                        );
                        continue;
                    }
                },
            };
            let position = self.set.users.len() as u32;
            self.set
                .user_by_id
                .insert(user.id.as_str().into(), position);
            self.set
                .user_by_email
                .insert(user.email.as_str().into(), position);
            self.set.users.push(User {
                id: user.id.as_str().into(),
                email: user.email.as_str().into(),
                api_key_sha256,
                memberships: Vec::new(),
            });
        }
    }

    fn accounts(&mut self, source: &PolicySource<'a>) {
        for (index, account) in source.accounts.iter().enumerate() {
            let path = Item("accounts", index);
            if !self.check_id(&account.id, source.file, &format_args!("{path}.id"))
                || !self.unique(
                    "account",
                    &account.id,
                    source.file,
                    &format_args!("{path}.id"),
                )
            {
                continue;
            }
            let position = self.set.accounts.len() as AccountIdx;
            self.set.account_by_id.insert(account.id.as_str(), position);
            let mut zones = Vec::new();
            for (zone_index, zone) in account.zones.iter().enumerate() {
                let zone_item = Sub::item(&path, "zones", zone_index);
                let zone_path = Sub::field(&zone_item, "id");
                if !self.check_id(&zone.id, source.file, &zone_path) {
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
                    self.error(source.file, zone_path, message);
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
                if !self.check_id(&group.id, source.file, &format_args!("{group_path}.id"))
                    || !self.unique(
                        "domain group",
                        &group.id,
                        source.file,
                        &format_args!("{group_path}.id"),
                    )
                {
                    continue;
                }
                let mut members = Vec::new();
                for (zone_index, zone_id) in group.zones.iter().enumerate() {
                    match self.set.zone_by_id.get(zone_id.as_str()) {
                        Some(entry) if zones.contains(&entry.zone) => members.push(entry.zone),
                        _ => self.error(
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

    fn members(&mut self, source: &PolicySource<'a>) {
        for (index, account) in source.accounts.iter().enumerate() {
            let Some(&account_position) = self.set.account_by_id.get(account.id.as_str()) else {
                continue;
            };
            let account_on = account.api_access != Some(AccountApiAccess::Disabled);
            for (member_index, member) in account.members.iter().enumerate() {
                let account_path = Item("accounts", index);
                let path = Sub::item(&account_path, "members", member_index);
                let Some(&user) = self.set.user_by_id.get(member.user.as_str()) else {
                    self.error(
                        source.file,
                        format!("{path}.user"),
                        format!("unknown user {:?}", member.user),
                    );
                    continue;
                };
                if self
                    .set
                    .member_by_user_account
                    .contains_key(&(user, account_position))
                {
                    self.error(
                        source.file,
                        format!("{path}.user"),
                        format!(
                            "user {:?} is already a member of account {:?}",
                            member.user, account.id
                        ),
                    );
                    continue;
                }
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
                        policy,
                        account_position,
                        &account.id,
                        source.file,
                        &policy_path,
                        label,
                    ) {
                        policies.push(policy);
                    }
                }
                self.set.member_by_user_account.insert(
                    (user, account_position),
                    Member {
                        user,
                        account: account_position,
                        api_access,
                        policies: policies.into_boxed_slice(),
                    },
                );
                if let Some(info) = self.set.users.get_mut(user as usize) {
                    info.memberships.push(account_position);
                }
            }
        }
    }

    /// A member policy in the Bach form (SPEC §3.1).
    fn bach_policy(
        &mut self,
        policy: &RawBachPolicy,
        account: AccountIdx,
        account_id: &str,
        file: &Path,
        path: At<'_>,
        label: impl Fn() -> String,
    ) -> Option<Policy> {
        let keyset = self.policy_keys(&policy.permission_groups, file, path);
        let mut items = vec![];
        let mut ok = true;
        if policy.resource_groups.is_empty() {
            self.error(
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
                            self.error(
                                file,
                                format!("{group_path}.scope.key"),
                                format!("the scope account {id:?} is not the member's account {account_id:?}"),
                            );
                            ok = false;
                        }
                        Some(ResourceKey::Account(id)) => {
                            self.error(
                                file,
                                format!("{group_path}.scope.key"),
                                format!("unknown account {id:?}"),
                            );
                            ok = false;
                        }
                        _ => {
                            self.error(
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
                        let object_path = format!("{group_path}.scope.objects[{object_index}].key");
                        if object.key == "*" {
                            items.push(Select::AccountZones(account));
                            continue;
                        }
                        match self.parse_resource_key(&object.key) {
                            Some(ResourceKey::Zone(zone_id)) => {
                                match self.zone_in(zone_id, account) {
                                    Ok(zone) => items.push(Select::Zone(zone)),
                                    Err(message) => {
                                        self.error(file, object_path, message);
                                        ok = false;
                                    }
                                }
                            }
                            Some(ResourceKey::AllZones) => {
                                items.push(Select::AccountZones(account))
                            }
                            _ => {
                                self.error(
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
                        self.error(
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
                            self.error(
                                file,
                                format!("{group_path}.id"),
                                format!("domain group {id:?} belongs to another account than {account_id:?}"),
                            );
                            ok = false;
                        }
                        None => {
                            self.error(
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
        self.check_group_scopes(&group_scopes, &selector, file, path);
        Some(Policy {
            id: policy
                .id
                .as_deref()
                .map_or_else(|| label().into(), Into::into),
            effect: effect(policy.access),
            keyset,
            first_keys: self
                .set
                .keysets
                .get(keyset as usize)
                .map_or(0, KeySet::first_word),
            selector,
        })
    }

    /// Warns when a user token's policy names only accounts and zones where its user is not a member.
    fn check_reachable(&mut self, user: u32, selector: &Selector, file: &Path, path: At<'_>) {
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
            self.warn(
                file,
                format!("{path}.resources"),
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
        let valid = |id: &str| !id.is_empty() && !id.contains(['*', '.', ' ']);
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

    /// Makes room for `more` tokens (their count is known before they are parsed), so the token tables are
    /// sized once instead of growing by doubling.
    pub fn reserve_tokens(&mut self, more: usize) {
        self.set.tokens.reserve(more);
        self.set.token_gates.reserve(more);
        self.set.token_by_hash.reserve(more);
        self.token_ids.reserve(more);
        self.token_secrets.reserve(more);
    }

    /// The tokens of one file (after [`Compiler::entities`]); nothing of `tokens` is kept.
    pub fn tokens(&mut self, file: &'a Path, tokens: &[RawToken]) {
        for (index, token) in tokens.iter().enumerate() {
            let path = Item("tokens", index);
            if let Some((compiled, policies)) = self.token(token, file, index, &path) {
                let position = self.set.tokens.len() as u32;
                let hash = parse_sha256(&token.secret_sha256).unwrap_or_default();
                let gate = TokenGate {
                    owner: compiled.owner,
                    status: compiled.status,
                    has_ip_condition: compiled.ip_condition.is_some(),
                    valid_from: compiled.not_before.as_ref().map_or(i64::MIN, |(at, _)| *at),
                    valid_until: compiled.expires_on.as_ref().map_or(i64::MAX, |(at, _)| *at),
                    owner_id: self.owner_id(compiled.owner),
                    policies: policies.into_boxed_slice(),
                };
                self.set.token_by_hash.insert(hash, position);
                self.set.tokens.push(compiled);
                self.set.token_gates.push(gate);
            }
        }
    }

    /// Records token `index` of `file` as the first with this id; a second one is an error naming the first.
    fn unique_token_id(&mut self, id: &str, file: &'a Path, index: usize) -> bool {
        match self.token_ids.entry(id.into()) {
            Entry::Vacant(slot) => {
                slot.insert((file, index));
                true
            }
            Entry::Occupied(first) => {
                let (first_file, first_index) = *first.get();
                let message = format!(
                    "duplicate token {id:?} (first defined at {}: tokens[{first_index}].id)",
                    first_file.display()
                );
                self.error(file, format_args!("tokens[{index}].id"), message);
                false
            }
        }
    }

    /// Records token `index` of `file` as the first with this secret hash (the hash is not shown).
    fn unique_token_secret(&mut self, hash: [u8; 32], file: &'a Path, index: usize) -> bool {
        match self.token_secrets.entry(hash) {
            Entry::Vacant(slot) => {
                slot.insert((file, index));
                true
            }
            Entry::Occupied(first) => {
                let (first_file, first_index) = *first.get();
                let message = format!(
                    "duplicate token secret hash (first defined at {}: tokens[{first_index}].secret_sha256)",
                    first_file.display()
                );
                self.error(file, format_args!("tokens[{index}].secret_sha256"), message);
                false
            }
        }
    }

    /// The id of a token's owner, one shared copy per owner.
    fn owner_id(&mut self, owner: Owner) -> Arc<str> {
        let set = &self.set;
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

    /// A token (item `index` of its file's `tokens`) and its policies.
    fn token(
        &mut self,
        token: &RawToken,
        file: &'a Path,
        index: usize,
        path: At<'_>,
    ) -> Option<(Token, Vec<Policy>)> {
        let id_ok = self.check_id(&token.id, file, &format_args!("{path}.id"))
            && self.unique_token_id(&token.id, file, index);
        let hash_ok = match parse_sha256(&token.secret_sha256) {
            Some(hash) => self.unique_token_secret(hash, file, index),
            None => {
                self.error(
                    file,
                    format!("{path}.secret_sha256"),
                    "not a hex SHA-256 (64 hex digits)",
                );
                false
            }
        };
        let owner = match (&token.owner.user, &token.owner.account) {
            (Some(user), None) => match self.set.user_by_id.get(user.as_str()) {
                Some(user) => Some(Owner::User(*user)),
                None => {
                    self.error(
                        file,
                        format!("{path}.owner.user"),
                        format!("unknown user {user:?}"),
                    );
                    None
                }
            },
            (None, Some(account)) => match self.set.account_by_id.get(account.as_str()) {
                Some(account) => Some(Owner::Account(*account)),
                None => {
                    self.error(
                        file,
                        format!("{path}.owner.account"),
                        format!("unknown account {account:?}"),
                    );
                    None
                }
            },
            _ => {
                self.error(
                    file,
                    format!("{path}.owner"),
                    "give exactly one of `user` or `account`",
                );
                None
            }
        };
        let not_before = self.timestamp(
            token.not_before.as_deref(),
            file,
            &format_args!("{path}.not_before"),
        );
        let expires_on = self.timestamp(
            token.expires_on.as_deref(),
            file,
            &format_args!("{path}.expires_on"),
        );
        if let (Some(Some((start, _))), Some(Some((end, _)))) = (&not_before, &expires_on) {
            if start >= end {
                self.error(
                    file,
                    format!("{path}.expires_on"),
                    "expires_on must be after not_before",
                );
            }
        }
        let ip_condition = self.ip_condition(token, file, path);
        let mut policies = Vec::new();
        let mut policies_ok = true;
        if let Some(owner) = owner {
            for (policy_index, policy) in token.policies.iter().enumerate() {
                let policy_path = Sub::item(path, "policies", policy_index);
                let label = || format!("{}/policies[{policy_index}]", token.id);
                match self.token_policy(policy, owner, file, &policy_path, label) {
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
        if !(id_ok && hash_ok && policies_ok) {
            return None;
        }
        Some((
            Token {
                id: token.id.as_str().into(),
                name: token.name.as_deref().unwrap_or("").into(),
                owner: owner?,
                status,
                not_before: not_before?,
                expires_on: expires_on?,
                ip_condition: ip_condition?,
            },
            policies,
        ))
    }

    /// `Some(None)` when absent, `Some(Some(..))` when valid, `None` (with an error) when invalid.
    fn timestamp(
        &mut self,
        text: Option<&str>,
        file: &Path,
        path: At<'_>,
    ) -> Option<Option<(i64, Box<str>)>> {
        let Some(text) = text else { return Some(None) };
        match OffsetDateTime::parse(text, &Rfc3339) {
            Ok(time) => Some(Some((time.unix_timestamp(), text.into()))),
            Err(_) => {
                self.error(
                    file,
                    path,
                    format!("{text:?} is not an RFC 3339 time like 2025-11-14T00:00:00Z"),
                );
                None
            }
        }
    }

    fn ip_condition(
        &mut self,
        token: &RawToken,
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
            .map(|list| parse(list, "in", &mut self.errors));
        let not_in = parse(&condition.not_in, "not_in", &mut self.errors);
        ok.then_some(Some(IpCondition { inside, not_in }))
    }

    /// A token policy in Cloudflare's API-token form (SPEC §3.2).
    fn token_policy(
        &mut self,
        policy: &RawTokenPolicy,
        owner: Owner,
        file: &Path,
        path: At<'_>,
        label: impl Fn() -> String,
    ) -> Option<Policy> {
        let keyset = self.policy_keys(&policy.permission_groups, file, path);
        let mut items = Vec::new();
        let mut ok = true;
        if policy.resources.is_empty() {
            self.error(
                file,
                format!("{path}.resources"),
                "a policy needs at least one resource",
            );
            ok = false;
        }
        for (key, value) in &policy.resources {
            let resources_path = Sub::field(path, "resources");
            let entry_path = Sub::field(&resources_path, key);
            if !self.resource_entry(key, value, owner, file, &entry_path, &mut items) {
                ok = false;
            }
        }
        let (keyset, group_scopes) = keyset?;
        if !ok {
            return None;
        }
        let selector = Selector::new(items);
        self.check_group_scopes(&group_scopes, &selector, file, path);
        if let Owner::User(user) = owner {
            self.check_reachable(user, &selector, file, path);
        }
        Some(Policy {
            id: policy
                .id
                .as_deref()
                .map_or_else(|| label().into(), Into::into),
            effect: effect(policy.effect),
            keyset,
            first_keys: self
                .set
                .keysets
                .get(keyset as usize)
                .map_or(0, KeySet::first_word),
            selector,
        })
    }

    /// One `resources` entry: adds what it selects to `into`; `false` (with an error) when it is invalid.
    fn resource_entry(
        &mut self,
        key: &str,
        value: &RawResourceValue,
        owner: Owner,
        file: &Path,
        path: At<'_>,
        into: &mut Vec<Select>,
    ) -> bool {
        let Some(parsed) = self.parse_resource_key(key) else {
            self.error(
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
            RawResourceValue::Text(star) if star == "*" => None,
            RawResourceValue::Text(other) => {
                self.error(
                    file,
                    path,
                    format!("the value must be \"*\" or a map of zone keys, not {other:?}"),
                );
                return false;
            }
            RawResourceValue::Nested(map) => Some(map),
        };
        if nested.is_some() && !matches!(parsed, ResourceKey::Account(_)) {
            self.error(
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
                self.error(file, path, "a token may name only its own user");
                false
            }
            ResourceKey::User(user_id) => match (owner, self.set.user_by_id.get(user_id)) {
                (Owner::User(own), Some(user)) if own == *user => {
                    into.extend([Select::User(own)]);
                    true
                }
                (Owner::User(_), Some(_)) => {
                    self.error(
                        file,
                        path,
                        format!("a user token may name only its own user, not {user_id:?}"),
                    );
                    false
                }
                (Owner::Account(_), _) => {
                    self.error(
                        file,
                        path,
                        "an account-owned token cannot hold user resources",
                    );
                    false
                }
                (_, None) => {
                    self.error(file, path, format!("unknown user {user_id:?}"));
                    false
                }
            },
            ResourceKey::Zone(zone_id) => {
                let Some(&ZoneEntry { zone, .. }) = self.set.zone_by_id.get(zone_id) else {
                    self.error(file, path, format!("unknown zone {zone_id:?}"));
                    return false;
                };
                let zone_account = self.set.zones.get(zone as usize).map(|z| z.account);
                if own_account.is_some() && zone_account != own_account {
                    self.error(
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
                    self.error(file, path, format!("unknown account {account_id:?}"));
                    return false;
                };
                if own_account.is_some_and(|own| own != account) {
                    self.error(
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
                    let zone_path = Sub::field(path, zone_key);
                    if zone_value != "*" {
                        self.error(
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
                                self.error(file, &zone_path, message);
                                ok = false;
                            }
                        },
                        _ => {
                            self.error(
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
