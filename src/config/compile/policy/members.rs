//! Member policies: each account's members, compiled against the entities (a file at a time, on any
//! thread), with their policies in the Bach form (SPEC §3.1).

use std::collections::hash_map::Entry;
use std::path::Path;

use super::compiler::{Compiler, PolicySource, ResourceKey, effect};
use super::ids::{At, Item, Sub, check_id};
use super::output::{Output, renumber_keysets};
use crate::config::error::ErrorKind;
use crate::config::raw::{AccountApiAccess, MemberApiAccess, RawBachPolicy};
use crate::policy::keys::KeySet;
use crate::policy::model::{
    AccountIdx, Member, MemberPolicy, Policy, Select, Selector, UserGroup, UserIdx,
};

/// The members of one file's accounts, compiled but not yet added to the set.
#[derive(Default)]
pub(super) struct MemberBatch {
    pub(super) members: Vec<Member>,
    /// The user groups of the file's accounts, in file order.
    pub(super) user_groups: Vec<UserGroup>,
    /// For members of user groups: how many of their policies are their own.
    pub(super) own_policies: Vec<((UserIdx, AccountIdx), u32)>,
    /// The domain groups each member policy names (by position in the member's policies).
    pub(super) policy_domain_groups: Vec<(MemberPolicy, Box<[u32]>)>,
    pub(super) out: Output,
}

impl<'a> Compiler<'a> {
    /// The members of one file's accounts, compiled against the entities (read only, so files compile on
    /// every core). The members of an account that is not the first definition of its id (a duplicate,
    /// already an error) are skipped: they would be knock-on errors.
    pub(super) fn member_batch(&self, source: &PolicySource<'a>) -> MemberBatch {
        let mut batch = MemberBatch::default();
        for (index, account) in source.accounts.iter().enumerate() {
            let out = &mut batch.out;
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
            let first_member = batch.members.len();
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
                    if let Some((policy, domain_groups)) = self.bach_policy(
                        out,
                        policy,
                        account_position,
                        source.file,
                        &policy_path,
                        label,
                    ) {
                        if !domain_groups.is_empty() {
                            let position = u32::try_from(policies.len()).unwrap_or(u32::MAX);
                            batch.policy_domain_groups.push((
                                (user, account_position, position),
                                domain_groups.into_boxed_slice(),
                            ));
                        }
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
            self.user_groups(&mut batch, source, index, account_position, first_member);
        }
        batch
    }

    /// The user groups of one account (item `index` of the file's `accounts`): each member of a group gets
    /// the group's policies after its own, so a decision reads one list (a deny of either beats an allow
    /// of either), and the explanation finds the group a policy came from in the side tables.
    fn user_groups(
        &self,
        batch: &mut MemberBatch,
        source: &PolicySource<'a>,
        index: usize,
        account: AccountIdx,
        first_member: usize,
    ) {
        let Some(raw_account) = source.accounts.get(index) else {
            return;
        };
        let mut seen_ids: Vec<&str> = Vec::new();
        for (group_index, group) in raw_account.user_groups.iter().enumerate() {
            let account_path = Item("accounts", index);
            let path = Sub::item(&account_path, "user_groups", group_index);
            let out = &mut batch.out;
            if check_id(out, &group.id, source.file, &format_args!("{path}.id")) {
                if seen_ids.contains(&group.id.as_str()) {
                    out.field_error(
                        source.file,
                        &path,
                        "id",
                        ErrorKind::Duplicate,
                        format!(
                            "user group {:?} is already defined in account {:?}",
                            group.id, raw_account.id
                        ),
                    );
                    continue;
                }
                seen_ids.push(&group.id);
            } else {
                continue;
            }
            let mut members: Vec<UserIdx> = Vec::with_capacity(group.members.len());
            let mut ok = true;
            for (member_index, member) in group.members.iter().enumerate() {
                let member_path = Sub::item(&path, "members", member_index);
                let Some(&user) = self.set.user_by_id.get(member.as_str()) else {
                    out.error(
                        source.file,
                        &member_path,
                        ErrorKind::UnknownReference,
                        format!("unknown user {member:?}"),
                    );
                    ok = false;
                    continue;
                };
                let is_member = batch
                    .members
                    .get(first_member..)
                    .is_some_and(|list| list.iter().any(|m| m.user == user));
                if !is_member {
                    out.error(
                        source.file,
                        &member_path,
                        ErrorKind::GroupMemberNotInAccount,
                        format!(
                            "user {member:?} is not a member of account {:?}: a user group holds only the account's members",
                            raw_account.id
                        ),
                    );
                    ok = false;
                    continue;
                }
                if !members.contains(&user) {
                    members.push(user);
                }
            }
            let mut policies = Vec::with_capacity(group.policies.len());
            let mut domain_groups = Vec::with_capacity(group.policies.len());
            for (policy_index, policy) in group.policies.iter().enumerate() {
                let policy_path = Sub::item(&path, "policies", policy_index);
                let label = || {
                    format!(
                        "group {}@{}/policies[{policy_index}]",
                        group.id, raw_account.id
                    )
                };
                match self.bach_policy(out, policy, account, source.file, &policy_path, label) {
                    Some((policy, groups)) => {
                        policies.push(policy);
                        domain_groups.push(groups);
                    }
                    None => ok = false,
                }
            }
            if !ok {
                continue;
            }
            for member in batch
                .members
                .get_mut(first_member..)
                .into_iter()
                .flatten()
                .filter(|member| members.contains(&member.user))
            {
                let own = batch
                    .own_policies
                    .iter()
                    .any(|((user, acc), _)| *user == member.user && *acc == account);
                if !own {
                    let count = u32::try_from(member.policies.len()).unwrap_or(u32::MAX);
                    batch.own_policies.push(((member.user, account), count));
                }
                let start = member.policies.len();
                for (offset, groups) in domain_groups.iter().enumerate() {
                    if !groups.is_empty() {
                        let position = u32::try_from(start + offset).unwrap_or(u32::MAX);
                        batch.policy_domain_groups.push((
                            (member.user, account, position),
                            groups.clone().into_boxed_slice(),
                        ));
                    }
                }
                let mut all = std::mem::take(&mut member.policies).into_vec();
                all.extend(policies.iter().cloned());
                member.policies = all.into_boxed_slice();
            }
            batch.user_groups.push(UserGroup {
                id: group.id.as_str().into(),
                name: group.name.as_deref().unwrap_or("").into(),
                account,
                members,
                policy_ids: policies.iter().map(|policy| policy.id.clone()).collect(),
            });
        }
    }

    /// Adds a file's compiled members, in file order (their policies' key sets renumbered into `out`'s).
    pub(super) fn add_members(&mut self, out: &mut Output, batch: MemberBatch) {
        let keysets = out.absorb(batch.out);
        self.set.user_groups.extend(batch.user_groups);
        self.set.member_own_policies.extend(batch.own_policies);
        self.set
            .member_policy_domain_groups
            .extend(batch.policy_domain_groups);
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
    ) -> Option<(Policy, Vec<u32>)> {
        // Members are compiled after every account is known.
        let account_id = self
            .set
            .accounts
            .get(account as usize)
            .map_or("", |info| &*info.id);
        let keyset = self.policy_keys(out, &policy.permission_groups, file, path);
        let mut items = vec![];
        let mut domain_groups_named = Vec::new();
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
                            items.push(Select::AccountBelow(account));
                            continue;
                        }
                        match self.parse_resource_key(&object.key) {
                            Some(ResourceKey::AllOfKind(kind)) => {
                                items.push(Select::AccountOfKind(account, kind))
                            }
                            Some(ResourceKey::Child(kind, parent, name)) => {
                                match self.child_item(kind, parent, name, Some(account)) {
                                    Ok(item) => items.push(item),
                                    Err((kind, message)) => {
                                        out.error(file, object_path, kind, message);
                                        ok = false;
                                    }
                                }
                            }
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
                                        "{:?} is not `*`, a zone key like {}.account.zone.<id>, or a declared resource type's key or `*` form",
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
                        Some((owner, zones, position)) if *owner == account => {
                            items.push(Select::Account(account));
                            items.extend(zones.iter().map(|zone| Select::Zone(*zone)));
                            domain_groups_named.push(*position);
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
        Some((
            Policy {
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
            },
            domain_groups_named,
        ))
    }
}
