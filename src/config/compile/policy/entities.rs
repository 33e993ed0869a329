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
use crate::policy::model::{Account, AccountIdx, User, UserIdx, Zone, ZoneEntry};

impl<'a> Compiler<'a> {
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

    /// Parses `<ns>.account.*`, `<ns>.account.<A>`, `<ns>.account.zone.*`, `<ns>.account.zone.<Z>`,
    /// `<ns>.user.<U>`.
    pub(super) fn parse_resource_key<'k>(&self, key: &'k str) -> Option<ResourceKey<'k>> {
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
