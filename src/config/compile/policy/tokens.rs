//! Tokens: each token of a file and its policies in Cloudflare's API-token form (SPEC §3.2), compiled
//! against the entities into a [`TokenBatch`] (only reads the compiler, so files compile on every core).

use std::path::Path;
use std::sync::Arc;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::compiler::{CompiledToken, Compiler, ResourceKey, Text, TokenBatch, effect};
use super::ids::{At, Item, Sub, check_id};
use super::output::Output;
use crate::config::compile::values::{parse_cidr, parse_sha256};
use crate::config::error::{ConfigError, ErrorKind};
use crate::config::raw::{RawResourceValue, RawToken, RawTokenPolicy, TokenStatus};
use crate::policy::keys::KeySet;
use crate::policy::model::{
    AccountIdx, IpCondition, Owner, Policy, Select, Selector, Status, Token, WarningKind, ZoneEntry,
};

impl<'a> Compiler<'a> {
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
    pub(super) fn token<S: Text>(
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
            out.field_error(
                file,
                path,
                "secret_sha256",
                ErrorKind::InvalidDigest,
                "not a hex SHA-256 (64 hex digits)",
            );
        }
        let owner = match (&token.owner.user, &token.owner.account) {
            (Some(user), None) => match self.set.user_by_id.get(&**user) {
                Some(user) => Some(Owner::User(*user)),
                None => {
                    out.field_error(
                        file,
                        path,
                        "owner.user",
                        ErrorKind::UnknownReference,
                        format!("unknown user {:?}", &**user),
                    );
                    None
                }
            },
            (None, Some(account)) => match self.set.account_by_id.get(account) {
                Some(account) => Some(Owner::Account(*account)),
                None => {
                    out.field_error(
                        file,
                        path,
                        "owner.account",
                        ErrorKind::UnknownReference,
                        format!("unknown account {:?}", &**account),
                    );
                    None
                }
            },
            _ => {
                out.field_error(
                    file,
                    path,
                    "owner",
                    ErrorKind::IncompleteDefinition,
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
        if let (Some(Some((start, _))), Some(Some((end, _)))) = (&not_before, &expires_on)
            && start >= end
        {
            out.field_error(
                file,
                path,
                "expires_on",
                ErrorKind::InvalidTime,
                "expires_on must be after not_before",
            );
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
    pub(super) fn timestamp(
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
                    ErrorKind::InvalidTime,
                    format!("{text:?} is not an RFC 3339 time like 2025-11-14T00:00:00Z"),
                );
                None
            }
        }
    }

    pub(super) fn ip_condition<S>(
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
                                ErrorKind::InvalidCidr,
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
    pub(super) fn token_policy<S: Text>(
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
            out.field_error(
                file,
                path,
                "resources",
                ErrorKind::IncompleteDefinition,
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
    pub(super) fn resource_entry<S: Text>(
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
                ErrorKind::InvalidResourceKey,
                format!(
                    "{key:?} is not a resource key ({ns}.account.<id>, {ns}.account.zone.<id>, {ns}.user.<id>, a declared resource type's key or a `*` form)",
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
                    ErrorKind::InvalidResourceKey,
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
                ErrorKind::InvalidResourceKey,
                "only an account key can hold a nested map of zones",
            );
            return false;
        }
        match parsed {
            ResourceKey::AllAccounts => {
                into.extend([Select::AllAccounts, Select::AllBelow]);
                true
            }
            ResourceKey::AllOfKind(kind) => {
                into.push(Select::AllOfKind(kind));
                true
            }
            ResourceKey::Child(kind, parent, name) => {
                match self.child_item(kind, parent, name, own_account) {
                    Ok(item) => {
                        into.push(item);
                        true
                    }
                    Err((kind, message)) => {
                        let message = if kind == ErrorKind::ForeignResource {
                            format!("{message}: outside the token's own account")
                        } else {
                            message
                        };
                        out.error(file, path, kind, message);
                        false
                    }
                }
            }
            ResourceKey::AllZones => {
                into.extend([Select::AllZones]);
                true
            }
            ResourceKey::AllUsers => {
                out.error(
                    file,
                    path,
                    ErrorKind::ForeignResource,
                    "a token may name only its own user",
                );
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
                        ErrorKind::ForeignResource,
                        format!("a user token may name only its own user, not {user_id:?}"),
                    );
                    false
                }
                (Owner::Account(_), _) => {
                    out.error(
                        file,
                        path,
                        ErrorKind::ForeignResource,
                        "an account-owned token cannot hold user resources",
                    );
                    false
                }
                (_, None) => {
                    out.error(
                        file,
                        path,
                        ErrorKind::UnknownReference,
                        format!("unknown user {user_id:?}"),
                    );
                    false
                }
            },
            ResourceKey::Zone(zone_id) => {
                let Some(&ZoneEntry { zone, .. }) = self.set.zone_by_id.get(zone_id) else {
                    out.error(
                        file,
                        path,
                        ErrorKind::UnknownReference,
                        format!("unknown zone {zone_id:?}"),
                    );
                    return false;
                };
                let zone_account = self.set.zones.get(zone as usize).map(|z| z.account);
                if own_account.is_some() && zone_account != own_account {
                    out.error(
                        file,
                        path,
                        ErrorKind::ForeignResource,
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
                    out.error(
                        file,
                        path,
                        ErrorKind::UnknownReference,
                        format!("unknown account {account_id:?}"),
                    );
                    return false;
                };
                if own_account.is_some_and(|own| own != account) {
                    out.error(
                        file,
                        path,
                        ErrorKind::ForeignResource,
                        format!("account {account_id:?} is not the token's own account"),
                    );
                    return false;
                }
                let Some(nested) = nested else {
                    return {
                        into.extend([Select::Account(account), Select::AccountBelow(account)]);
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
                            ErrorKind::InvalidResourceKey,
                            format!("the value must be \"*\", not {zone_value:?}"),
                        );
                        ok = false;
                        continue;
                    }
                    match self.parse_resource_key(zone_key) {
                        Some(ResourceKey::AllZones) => into.push(Select::AccountZones(account)),
                        Some(ResourceKey::AllOfKind(kind)) => {
                            into.push(Select::AccountOfKind(account, kind))
                        }
                        Some(ResourceKey::Child(kind, parent, name)) => {
                            match self.child_item(kind, parent, name, Some(account)) {
                                Ok(item) => into.push(item),
                                Err((kind, message)) => {
                                    out.error(file, &zone_path, kind, message);
                                    ok = false;
                                }
                            }
                        }
                        Some(ResourceKey::Zone(zone_id)) => match self.zone_in(zone_id, account) {
                            Ok(zone) => into.push(Select::Zone(zone)),
                            Err((kind, message)) => {
                                out.error(file, &zone_path, kind, message);
                                ok = false;
                            }
                        },
                        _ => {
                            out.error(
                                file,
                                &zone_path,
                                ErrorKind::InvalidResourceKey,
                                format!("{zone_key:?} is not a zone key like {}.account.zone.<id>, a declared resource type's key, or their `*` forms", self.namespace),
                            );
                            ok = false;
                        }
                    }
                }
                ok
            }
        }
    }

    /// Warns when a user token's policy names only accounts and zones where its user is not a member.
    pub(super) fn check_reachable(
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
            Select::AllAccounts
            | Select::AllZones
            | Select::User(_)
            | Select::AllBelow
            | Select::AllOfKind(_) => true,
            Select::Account(account)
            | Select::AccountZones(account)
            | Select::AccountBelow(account)
            | Select::AccountOfKind(account, _) => memberships.contains(account),
            Select::Child(child) => self
                .children
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .child(*child)
                .is_some_and(|child| memberships.contains(&child.account)),
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
