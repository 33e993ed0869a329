//! Users, accounts, zones and domain groups: the entities every policy and token refers to, and the
//! resource keys (`<ns>.account.<id>`, …) that name them.

use std::path::Path;

use rustc_hash::FxHashMap;

use super::compiler::{Compiler, PolicySource, ResourceKey};
use super::ids::{
    FirstSeen, Item, Site, Sub, check_id, email_byte_forbidden, email_char_forbidden, has_any,
};
use super::output::Output;
use crate::config::compile::values::parse_sha256;
use crate::config::error::{ConfigError, ErrorKind};
use crate::config::raw::RawAccount;
use crate::policy::model::{
    Account, AccountIdx, DomainGroup, KindIdx, ParentKind, ResourceType, User, UserIdx, Zone,
    ZoneEntry,
};

impl<'a> Compiler<'a> {
    /// The permission groups, users, accounts, zones, domain groups and members of every file: all that a
    /// token may refer to.
    pub fn entities(&mut self, sources: &[PolicySource<'a>]) {
        self.reserve_entities(sources);
        let mut out = std::mem::take(&mut self.out);
        for source in sources {
            self.resource_types(&mut out, source);
        }
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
    pub(super) fn reserve_entities(&mut self, sources: &[PolicySource<'a>]) {
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

    pub(super) fn accounts(&mut self, out: &mut Output, source: &PolicySource<'a>) {
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
                    out.error(source.file, zone_path, ErrorKind::Duplicate, message);
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
                            ErrorKind::ForeignResource,
                            format!("zone {zone_id:?} is not a zone of account {:?}", account.id),
                        ),
                    }
                }
                let index = u32::try_from(self.set.domain_groups.len()).unwrap_or(u32::MAX);
                self.set.domain_groups.push(DomainGroup {
                    id: group.id.as_str().into(),
                    name: group.name.as_str().into(),
                    account: position,
                    zones: members.clone(),
                });
                self.domain_groups
                    .insert(&group.id, (position, members, index));
            }
            self.set.accounts.push(Account {
                id: account.id.as_str().into(),
                name: account.name.as_str().into(),
                zones,
                domain_groups: account.domain_groups.len(),
            });
        }
    }

    pub(super) fn zone_in(
        &self,
        zone_id: &str,
        account: AccountIdx,
    ) -> Result<u32, (ErrorKind, String)> {
        match self.set.zone_by_id.get(zone_id) {
            Some(entry) if entry.account == account => Ok(entry.zone),
            Some(_) => Err((
                ErrorKind::ForeignResource,
                format!(
                    "zone {zone_id:?} belongs to another account than {:?}",
                    self.set
                        .accounts
                        .get(account as usize)
                        .map_or("", |a| &*a.id)
                ),
            )),
            None => Err((
                ErrorKind::UnknownReference,
                format!("unknown zone {zone_id:?}"),
            )),
        }
    }

    /// The resource types of one file (`resource_types:`): a name, a key form, a parent.
    pub(super) fn resource_types(&mut self, out: &mut Output, source: &PolicySource<'a>) {
        for (index, raw) in source.resource_types.iter().enumerate() {
            let path = Item("resource_types", index);
            let name_ok = !raw.name.is_empty()
                && raw
                    .name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
                && !matches!(
                    raw.name.as_str(),
                    "account" | "zone" | "user" | "any" | "none"
                );
            if !name_ok {
                out.field_error(
                    source.file,
                    &path,
                    "name",
                    ErrorKind::InvalidResourceType,
                    format!(
                        "{:?} is not a resource type name (lower case letters, digits and _; not account, zone, user, any or none)",
                        raw.name
                    ),
                );
                continue;
            }
            if self
                .set
                .resource_types
                .iter()
                .any(|form| *form.name == *raw.name)
            {
                out.field_error(
                    source.file,
                    &path,
                    "name",
                    ErrorKind::Duplicate,
                    format!("resource type {:?} is declared twice", raw.name),
                );
                continue;
            }
            let parent = match raw.parent {
                crate::config::raw::RawParent::Account => ParentKind::Account,
                crate::config::raw::RawParent::Zone => ParentKind::Zone,
            };
            let placeholder = format!("{{{}}}", parent.as_str());
            let form = raw
                .key
                .strip_suffix("{name}")
                .and_then(|head| head.split_once(placeholder.as_str()))
                .filter(|(prefix, separator)| {
                    prefix.ends_with('.')
                        && prefix.len() > 1
                        && !separator.is_empty()
                        && !prefix.contains(['*', '{', '}', ' '])
                        && !separator.contains(['*', '{', '}', ' ', '.'])
                        && !prefix.starts_with(&format!("{}.", self.namespace))
                });
            let Some((prefix, separator)) = form else {
                out.field_error(
                    source.file,
                    &path,
                    "key",
                    ErrorKind::InvalidResourceType,
                    format!(
                        "{:?} is not a key form like com.example.thing.{placeholder}_{{name}}: a prefix ending in a dot (outside {}.), {placeholder}, a separator, then {{name}}",
                        raw.key, self.namespace
                    ),
                );
                continue;
            };
            if let Some(other) =
                self.set.resource_types.iter().find(|form| {
                    form.prefix.starts_with(prefix) || prefix.starts_with(&*form.prefix)
                })
            {
                out.field_error(
                    source.file,
                    &path,
                    "key",
                    ErrorKind::InvalidResourceType,
                    format!(
                        "its keys could not be told from those of resource type {:?}",
                        other.name
                    ),
                );
                continue;
            }
            if KindIdx::try_from(self.set.resource_types.len()).is_err() {
                out.error(
                    source.file,
                    &path,
                    ErrorKind::InvalidResourceType,
                    "too many resource types",
                );
                continue;
            }
            self.set.resource_types.push(ResourceType {
                name: raw.name.as_str().into(),
                prefix: prefix.into(),
                separator: separator.into(),
                parent,
            });
        }
    }

    /// Parses `<ns>.account.*`, `<ns>.account.<A>`, `<ns>.account.zone.*`, `<ns>.account.zone.<Z>`,
    /// `<ns>.user.<U>`, and the keys of the declared resource types (`<prefix>*`, `<prefix><PARENT><sep><NAME>`).
    pub(super) fn parse_resource_key<'k>(&self, key: &'k str) -> Option<ResourceKey<'k>> {
        for (kind, form) in self.set.resource_types.iter().enumerate() {
            let Ok(kind) = KindIdx::try_from(kind) else {
                break;
            };
            if key.strip_prefix(&*form.prefix) == Some("*") {
                return Some(ResourceKey::AllOfKind(kind));
            }
            if let Some((parent, name)) = form.parse(key) {
                return Some(ResourceKey::Child(kind, parent, name));
            }
        }
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
}

/// The users of a config and their indexes, compiled apart from the accounts (see [`Compiler::entities`]).
pub(super) struct UserTables<'a> {
    pub(super) users: Vec<User>,
    pub(super) by_id: FxHashMap<Box<str>, UserIdx>,
    pub(super) by_email: FxHashMap<Box<str>, UserIdx>,
    /// Where each user id and email was first defined.
    pub(super) first_seen: FirstSeen<'a>,
    pub(super) out: Output,
}

impl<'a> UserTables<'a> {
    /// Adds the users of one file.
    pub(super) fn add(&mut self, source: &PolicySource<'a>) {
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
                out.field_error(
                    source.file,
                    &path,
                    "email",
                    ErrorKind::InvalidId,
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
                        out.field_error(
                            source.file,
                            &path,
                            "api_key_sha256",
                            ErrorKind::InvalidDigest,
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

impl Compiler<'_> {
    /// A child resource named by its key, as a selector item: its parent must exist and, when `within` is
    /// given, belong to that account. The child itself needs no declaration.
    pub(super) fn child_item(
        &self,
        kind: KindIdx,
        parent: &str,
        name: &str,
        within: Option<AccountIdx>,
    ) -> Result<crate::policy::model::Select, (ErrorKind, String)> {
        use crate::policy::model::{Child, NO_ZONE, Select};
        let form = self
            .set
            .resource_types
            .get(usize::from(kind))
            .ok_or((ErrorKind::Internal, "unknown resource type".to_string()))?;
        let (account, zone) = match form.parent {
            ParentKind::Account => match self.set.account_by_id.get(parent) {
                Some(&account) => (account, NO_ZONE),
                None => {
                    return Err((
                        ErrorKind::UnknownReference,
                        format!(
                            "unknown account {parent:?} (the parent of this {})",
                            form.name
                        ),
                    ));
                }
            },
            ParentKind::Zone => match self.set.zone_by_id.get(parent) {
                Some(entry) => (entry.account, entry.zone),
                None => {
                    return Err((
                        ErrorKind::UnknownReference,
                        format!("unknown zone {parent:?} (the parent of this {})", form.name),
                    ));
                }
            },
        };
        if let Some(within) = within
            && within != account
        {
            let within_id = self
                .set
                .accounts
                .get(within as usize)
                .map_or("", |a| &*a.id);
            return Err((
                ErrorKind::ForeignResource,
                format!(
                    "this {} belongs to another account than {within_id:?}",
                    form.name
                ),
            ));
        }
        let index = self
            .children
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .intern(Child {
                kind,
                name: name.into(),
                account,
                zone,
            });
        Ok(Select::Child(index))
    }
}
