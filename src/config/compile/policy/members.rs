//! Member policies: each account's members, compiled against the entities (a file at a time, on any
//! thread), with their policies in the Bach form (SPEC §3.1).

use std::collections::hash_map::Entry;
use std::path::Path;

use super::compiler::{Compiler, PolicySource, ResourceKey, effect};
use super::ids::{At, Item, Sub};
use super::output::{Output, renumber_keysets};
use crate::config::error::ErrorKind;
use crate::config::raw::{AccountApiAccess, MemberApiAccess, RawBachPolicy};
use crate::policy::keys::KeySet;
use crate::policy::model::{AccountIdx, Member, Policy, Select, Selector, UserIdx};

/// The members of one file's accounts, compiled but not yet added to the set.
#[derive(Default)]
pub(super) struct MemberBatch {
    pub(super) members: Vec<Member>,
    pub(super) out: Output,
}

impl<'a> Compiler<'a> {
    /// The members of one file's accounts, compiled against the entities (read only, so files compile on
    /// every core). The members of an account that is not the first definition of its id (a duplicate,
    /// already an error) are skipped: they would be knock-on errors.
    pub(super) fn member_batch(&self, source: &PolicySource<'a>) -> MemberBatch {
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
                    out.field_error(
                        source.file,
                        &path,
                        "user",
                        ErrorKind::UnknownReference,
                        format!("unknown user {:?}", member.user),
                    );
                    continue;
                };
                if seen_users.contains(&user) {
                    out.field_error(
                        source.file,
                        &path,
                        "user",
                        ErrorKind::Duplicate,
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
    pub(super) fn add_members(&mut self, out: &mut Output, batch: MemberBatch) {
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
    pub(super) fn bach_policy(
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
            out.field_error(
                file,
                path,
                "resource_groups",
                ErrorKind::IncompleteDefinition,
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
                            out.field_error(
                                file,
                                &group_path,
                                "scope.key",
                                ErrorKind::ForeignResource,
                                format!("the scope account {id:?} is not the member's account {account_id:?}"),
                            );
                            ok = false;
                        }
                        Some(ResourceKey::Account(id)) => {
                            out.field_error(
                                file,
                                &group_path,
                                "scope.key",
                                ErrorKind::UnknownReference,
                                format!("unknown account {id:?}"),
                            );
                            ok = false;
                        }
                        _ => {
                            out.field_error(
                                file,
                                &group_path,
                                "scope.key",
                                ErrorKind::InvalidResourceKey,
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
                                    Err((kind, message)) => {
                                        out.error(file, object_path, kind, message);
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
                                    ErrorKind::InvalidResourceKey,
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
                            ErrorKind::IncompleteDefinition,
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
                            out.field_error(
                                file,
                                &group_path,
                                "id",
                                ErrorKind::ForeignResource,
                                format!("domain group {id:?} belongs to another account than {account_id:?}"),
                            );
                            ok = false;
                        }
                        None => {
                            out.field_error(
                                file,
                                &group_path,
                                "id",
                                ErrorKind::UnknownReference,
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
}
