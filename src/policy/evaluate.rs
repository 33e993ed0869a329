//! The decision (SPEC §3.3–§4): authenticate the presented credential, then authorize the request. Pure.
//!
//! `evaluate` cannot fail: a denial is a value, and anything that cannot be decided is a denial too.

use std::net::IpAddr;

use smallvec::SmallVec;

use super::decision::{Denial, KeyList, Outcome, PolicySource};
use super::keys::KeyId;
use super::model::{
    AccountIdx, ChildRef, Effect, KindIdx, Member, NO_ZONE, Owner, ParentKind, Policy, PolicySet,
    Principal, PrincipalKind, Resource, ResourceKind, ResourceRef, Select, Status, Token,
    TokenGate, UNNAMED_CHILD, UserIdx, ZoneIdx,
};

/// The credential as presented, already hashed (secrets never go further than the hash).
#[derive(Debug, Clone, Copy)]
pub enum Presented<'a> {
    Token {
        sha256: [u8; 32],
    },
    LegacyKey {
        email: &'a str,
        key_sha256: [u8; 32],
    },
    /// A credential named by its place in the config instead of presented: access analysis and offline
    /// checks by token id (`permgate check --token-id`). Never built from a request.
    Known(Known),
}

/// A credential of the config, by index: what [`Presented::Known`] names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Known {
    /// The token at this index of [`PolicySet::tokens`] (usable or not: the decision checks).
    Token(u32),
    /// The legacy API key of this user (a user without a key is unknown, as a wrong key is).
    LegacyKey(UserIdx),
}

/// What one permission key gets from one list of policies on one resource: the rule of every decision
/// (a covering deny holding the key wins; else the first covering allow holding it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyVerdict<'s> {
    /// Allowed, by this policy (the first allow that holds the key and covers the resource).
    Allowed(&'s str),
    /// Denied by this policy (the first deny that holds the key and covers the resource).
    Denied(&'s str),
    /// No policy of the list holds the key on the resource.
    Missing,
}

/// The resource a route targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target<'a> {
    /// An account, by id (from the path).
    Account(&'a str),
    /// A zone, by id (from the path).
    Zone(&'a str),
    /// A child resource of a declared type: its parent's id and its name (both from the path). A type
    /// the config does not declare is [`KindIdx::MAX`] (denied).
    Child {
        kind: KindIdx,
        parent: &'a str,
        name: &'a str,
    },
    /// The caller's own user.
    User,
    /// A collection: allowed when allowed on at least one resource.
    Any,
    /// Any usable credential; no permission check.
    None,
    /// Token verification (`handler: verify_token`): a usable API token, owned as the route says; no
    /// permission check.
    Verify(TokenOwner<'a>),
}

/// Whose tokens a verify route answers for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenOwner<'a> {
    /// Any token (`scope: none`).
    Any,
    /// Only user-owned tokens (`scope: user`, Cloudflare's `GET /user/tokens/verify`).
    User,
    /// Only tokens owned by this account, by id from the path (`scope: {account: …}`, Cloudflare's
    /// `GET /accounts/{account_id}/tokens/verify`).
    Account(&'a str),
}

/// The keys a route requires.
#[derive(Debug, Clone, Copy)]
pub enum Required<'a> {
    None,
    AllOf(&'a [KeyId]),
    AnyOf(&'a [KeyId]),
}

/// One request as the policy engine sees it.
#[derive(Debug, Clone, Copy)]
pub struct AccessRequest<'a> {
    pub presented: Presented<'a>,
    pub client_ip: IpAddr,
    /// Unix seconds.
    pub now: i64,
    pub target: Target<'a>,
    pub required: Required<'a>,
}

/// The decision, with who asked, on what, and which policies decided.
#[derive(Debug)]
pub struct Decision<'s> {
    pub principal: Option<Principal<'s>>,
    pub resource: Option<ResourceRef<'s>>,
    pub policies: PolicyIds<'s>,
    pub outcome: Outcome<'s>,
}

/// The ids of the policies that decided; almost always one or two, kept inline.
pub type PolicyIds<'s> = SmallVec<[&'s str; 4]>;

/// An authenticated caller.
#[derive(Debug, Clone, Copy)]
enum Caller<'s> {
    UserToken(TokenRef<'s>, UserIdx),
    AccountToken(TokenRef<'s>, AccountIdx),
    LegacyKey(UserIdx),
}

/// The resource a request is authorized on, with its display form made once (denials name it).
#[derive(Debug, Clone, Copy)]
struct Subject<'s> {
    resource: Resource,
    shown: ResourceRef<'s>,
}

/// A token found by its hash: what decisions read, and the full record for reasons and the principal.
#[derive(Debug, Clone, Copy)]
struct TokenRef<'s> {
    gate: &'s TokenGate,
    record: &'s Token,
}

impl PolicySet {
    /// Decides one request.
    pub fn evaluate(&self, request: &AccessRequest<'_>) -> Decision<'_> {
        let mut decision = Decision {
            principal: None,
            resource: None,
            policies: SmallVec::new(),
            outcome: Ok(()),
        };
        decision.outcome = self.evaluate_into(request, &mut decision);
        decision
    }

    fn evaluate_into<'s>(
        &'s self,
        request: &AccessRequest<'_>,
        decision: &mut Decision<'s>,
    ) -> Outcome<'s> {
        let caller = self.authenticate(request)?;
        decision.principal = Some(self.principal(caller)?);
        let subject = match request.target {
            Target::None => return Ok(()),
            Target::Verify(owner) => return self.verify_owner(caller, owner),
            Target::Any => {
                return self.authorize_any(caller, request.required, &mut decision.policies);
            }
            Target::User => match caller {
                Caller::UserToken(_, user) | Caller::LegacyKey(user) => {
                    self.subject(Resource::User(user))
                }
                Caller::AccountToken(token, _) => {
                    return Err(Denial::AccountTokenOnUserRoute {
                        token: &token.record.id,
                    });
                }
            },
            Target::Account(id) => match self.account_by_id.get(id) {
                Some(account) => self.subject(Resource::Account(*account)),
                None => return Err(unknown("account", id)),
            },
            Target::Zone(id) => match self.zone_by_id.get_with_stored_id(id) {
                Some((stored_id, entry)) => {
                    let resource = Resource::Zone(entry.zone, entry.account);
                    // The zone's id as stored in the index entry just read, not from its `Zone` record:
                    // one cache miss fewer.
                    let shown = ResourceRef {
                        namespace: &self.namespace,
                        kind: ResourceKind::Zone,
                        id: stored_id,
                        account: self
                            .accounts
                            .get(entry.account as usize)
                            .map(|account| &*account.id),
                        child: None,
                    };
                    Subject { resource, shown }
                }
                None => return Err(unknown("zone", id)),
            },
            Target::Child { kind, parent, name } => self.child_subject(kind, parent, name)?,
        };
        decision.resource = Some(subject.shown);
        self.authorize(caller, subject, request.required, &mut decision.policies)
    }

    /// A child resource by its type, its parent's id and its name: known when its parent is (a child
    /// needs no declaration), denied when the parent or the type is unknown.
    fn child_subject<'s>(
        &'s self,
        kind: KindIdx,
        parent: &str,
        name: &str,
    ) -> Result<Subject<'s>, Denial<'s>> {
        match self.child_resource(kind, parent, name) {
            Ok(child) => Ok(self.subject(Resource::Child(child))),
            Err("resource type") => Err(unknown("resource type", name)),
            Err(kind) => Err(unknown(kind, parent)),
        }
    }

    /// Token verification: the caller must be a token owned as `owner` says (a user token on an account's
    /// verify path, another account's token, or an account id no token of this config is owned by, are all
    /// "Invalid API Token": the answer never tells which).
    fn verify_owner<'s>(&'s self, caller: Caller<'s>, owner: TokenOwner<'_>) -> Outcome<'s> {
        let (token, owned) = match (caller, owner) {
            (Caller::LegacyKey(_), _) => return Err(Denial::NotAToken),
            (Caller::UserToken(token, _) | Caller::AccountToken(token, _), TokenOwner::Any)
            | (Caller::UserToken(token, _), TokenOwner::User) => (token, true),
            (Caller::AccountToken(token, account), TokenOwner::Account(id)) => (
                token,
                self.accounts
                    .get(account as usize)
                    .is_some_and(|record| &*record.id == id),
            ),
            (Caller::AccountToken(token, _), TokenOwner::User)
            | (Caller::UserToken(token, _), TokenOwner::Account(_)) => (token, false),
        };
        if owned {
            Ok(())
        } else {
            Err(Denial::NotVerifiableHere {
                token: &token.record.id,
                owner: match owner {
                    TokenOwner::Any => "any owner".into(),
                    TokenOwner::User => "a user".into(),
                    TokenOwner::Account(id) => format!("account {id}").into(),
                },
            })
        }
    }

    /// Finds the credential and checks it is usable: status, validity window, IP condition.
    fn authenticate(&self, request: &AccessRequest<'_>) -> Result<Caller<'_>, Denial<'_>> {
        match request.presented {
            Presented::Token { sha256 } => {
                let index = *self
                    .token_by_hash
                    .get(&sha256)
                    .ok_or(Denial::TokenUnknown)? as usize;
                self.token_caller(index, request)
            }
            Presented::Known(Known::Token(index)) => self.token_caller(index as usize, request),
            Presented::Known(Known::LegacyKey(user)) => self
                .users
                .get(user as usize)
                .and_then(|record| record.api_key_sha256)
                .map(|_| Caller::LegacyKey(user))
                .ok_or(Denial::LegacyKeyUnknown),
            Presented::LegacyKey { email, key_sha256 } => {
                let user = self
                    .user_by_email
                    .get(email)
                    .copied()
                    .ok_or(Denial::LegacyKeyUnknown)?;
                let stored = self
                    .users
                    .get(user as usize)
                    .and_then(|user| user.api_key_sha256)
                    .ok_or(Denial::LegacyKeyUnknown)?;
                if constant_time_eq(&stored, &key_sha256) {
                    Ok(Caller::LegacyKey(user))
                } else {
                    Err(Denial::LegacyKeyUnknown)
                }
            }
        }
    }

    /// The token at `index`, if it may be used for this request.
    #[inline]
    fn token_caller(
        &self,
        index: usize,
        request: &AccessRequest<'_>,
    ) -> Result<Caller<'_>, Denial<'_>> {
        let (Some(gate), Some(record)) = (self.token_gates.get(index), self.tokens.get(index))
        else {
            return Err(internal("token index out of range"));
        };
        check_usable(gate, record, request.now, request.client_ip)?;
        let token = TokenRef { gate, record };
        Ok(match gate.owner {
            Owner::User(user) => Caller::UserToken(token, user),
            Owner::Account(account) => Caller::AccountToken(token, account),
        })
    }

    fn principal<'s>(&'s self, caller: Caller<'s>) -> Result<Principal<'s>, Denial<'s>> {
        let (kind, id, token) = match caller {
            Caller::UserToken(token, _) => (
                PrincipalKind::User,
                &*token.gate.owner_id,
                Some(token.record),
            ),
            Caller::LegacyKey(user) => (PrincipalKind::User, self.user_id(user)?, None),
            Caller::AccountToken(token, _) => (
                PrincipalKind::Account,
                &*token.gate.owner_id,
                Some(token.record),
            ),
        };
        Ok(Principal { kind, id, token })
    }

    /// Authorizes `required` on one known resource (SPEC §3.3 point 4).
    fn authorize<'s>(
        &'s self,
        caller: Caller<'s>,
        subject: Subject<'s>,
        required: Required<'_>,
        decided_by: &mut PolicyIds<'s>,
    ) -> Outcome<'s> {
        let resource = subject.resource;
        let Some(account) = resource.account() else {
            // A user resource: no account, so no membership bound and no API-access toggle.
            return match caller {
                Caller::UserToken(token, _) => self.grant(
                    &token.gate.policies,
                    PolicySource::Token,
                    subject,
                    required,
                    decided_by,
                ),
                Caller::LegacyKey(_) => Ok(()),
                Caller::AccountToken(token, _) => Err(Denial::AccountTokenOnUserRoute {
                    token: &token.record.id,
                }),
            };
        };
        match caller {
            Caller::AccountToken(token, own) => {
                if own != account {
                    return Err(Denial::OutsideOwnAccount {
                        token: &token.record.id,
                        account: self.account_id(account)?,
                    });
                }
                self.grant(
                    &token.gate.policies,
                    PolicySource::Token,
                    subject,
                    required,
                    decided_by,
                )
            }
            Caller::UserToken(token, user) => {
                let member = self.usable_member(user, account)?;
                self.grant(
                    &token.gate.policies,
                    PolicySource::Token,
                    subject,
                    required,
                    decided_by,
                )?;
                self.grant_member(member, subject, required, decided_by)
            }
            Caller::LegacyKey(user) => {
                let member = self.usable_member(user, account)?;
                self.grant_member(member, subject, required, decided_by)
            }
        }
    }

    /// [`Self::grant`] on a member's policies; a deny names the user group its policy comes from.
    fn grant_member<'s>(
        &'s self,
        member: &'s Member,
        subject: Subject<'s>,
        required: Required<'_>,
        decided_by: &mut PolicyIds<'s>,
    ) -> Outcome<'s> {
        self.grant(
            &member.policies,
            PolicySource::Member,
            subject,
            required,
            decided_by,
        )
        .map_err(|denial| match denial {
            Denial::DeniedByPolicy {
                policy,
                key,
                resource,
                source,
                group: None,
            } => Denial::DeniedByPolicy {
                policy,
                key,
                resource,
                source,
                group: member
                    .policies
                    .iter()
                    .position(|candidate| std::ptr::eq(candidate.id.as_ptr(), policy.as_ptr()))
                    .and_then(|index| self.policy_group(member, index)),
            },
            other => other,
        })
    }

    /// The user's membership of `account`, if it exists and its API access is on.
    fn usable_member(&self, user: UserIdx, account: AccountIdx) -> Result<&Member, Denial<'_>> {
        let member = self
            .member_by_user_account
            .get(&(user, account))
            .ok_or_else(|| match (self.user_id(user), self.account_id(account)) {
                (Ok(user), Ok(account)) => Denial::NotMember { user, account },
                (Err(error), _) | (_, Err(error)) => error,
            })?;
        if member.api_access {
            Ok(member)
        } else {
            Err(Denial::ApiAccessDisabled {
                user: self.user_id(user)?,
                account: self.account_id(account)?,
            })
        }
    }

    /// Whether `policies` grant `required` on `resource`: explicit deny, then explicit allow, then implicit deny.
    fn grant<'s>(
        &'s self,
        policies: &'s [Policy],
        source: PolicySource,
        subject: Subject<'s>,
        required: Required<'_>,
        decided_by: &mut PolicyIds<'s>,
    ) -> Outcome<'s> {
        match required {
            Required::None => Ok(()),
            Required::AllOf(keys) => {
                for key in keys {
                    let policy = self.grant_key(policies, source, subject, *key)?;
                    push_unique(decided_by, policy);
                }
                Ok(())
            }
            Required::AnyOf(keys) => {
                let mut first_denial = None;
                for key in keys {
                    match self.grant_key(policies, source, subject, *key) {
                        Ok(policy) => {
                            push_unique(decided_by, policy);
                            return Ok(());
                        }
                        Err(denial) => {
                            first_denial.get_or_insert(denial);
                        }
                    }
                }
                Err(match first_denial {
                    Some(denial @ Denial::DeniedByPolicy { .. }) if keys.len() == 1 => denial,
                    Some(Denial::MissingPermission { .. })
                    | Some(Denial::DeniedByPolicy { .. })
                    | None => Denial::MissingAnyPermission {
                        keys: self.key_list(keys),
                        resource: subject.shown,
                        source,
                    },
                    Some(other) => other,
                })
            }
        }
    }

    /// One key on one resource: the id of the allow policy that grants it, or why not.
    fn grant_key<'s>(
        &'s self,
        policies: &'s [Policy],
        source: PolicySource,
        subject: Subject<'s>,
        key: KeyId,
    ) -> Result<&'s str, Denial<'s>> {
        match self.key_verdict(policies, subject.resource, key) {
            KeyVerdict::Allowed(policy) => Ok(policy),
            KeyVerdict::Denied(policy) => Err(Denial::DeniedByPolicy {
                policy,
                key: self.keys.name(key),
                resource: subject.shown,
                source,
                group: None,
            }),
            KeyVerdict::Missing => Err(Denial::MissingPermission {
                key: self.keys.name(key),
                resource: subject.shown,
                source,
            }),
        }
    }

    /// What `key` gets from `policies` on `resource` (see [`KeyVerdict`]): the one rule every decision and
    /// every access analysis applies to a list of policies.
    #[inline]
    pub fn key_verdict<'s>(
        &'s self,
        policies: &'s [Policy],
        resource: Resource,
        key: KeyId,
    ) -> KeyVerdict<'s> {
        let mut allowed_by = None;
        for policy in policies {
            let holds_key = if key.0 < 64 {
                policy.first_keys & (1 << key.0) != 0
            } else {
                self.keysets
                    .get(policy.keyset as usize)
                    .is_some_and(|keys| keys.contains(key))
            };
            if !holds_key || !policy.selector.covers(resource) {
                continue;
            }
            match policy.effect {
                Effect::Deny => return KeyVerdict::Denied(&policy.id),
                Effect::Allow => {
                    allowed_by.get_or_insert(&*policy.id);
                }
            }
        }
        allowed_by.map_or(KeyVerdict::Missing, KeyVerdict::Allowed)
    }

    fn authorize_any<'s>(
        &'s self,
        caller: Caller<'s>,
        required: Required<'_>,
        decided_by: &mut PolicyIds<'s>,
    ) -> Outcome<'s> {
        let accounts: Vec<AccountIdx> = match caller {
            Caller::AccountToken(_, account) => vec![account],
            Caller::UserToken(_, user) | Caller::LegacyKey(user) => self
                .users
                .get(user as usize)
                .map(|user| user.memberships.clone())
                .unwrap_or_default(),
        };
        let mut disabled: Vec<&str> = Vec::new();
        let mut other_denials = 0usize;
        for account in accounts {
            for resource in self.candidate_resources(caller, account) {
                let mut policies = PolicyIds::new();
                let subject = Subject {
                    resource,
                    shown: self.resource_ref(resource),
                };
                match self.authorize(caller, subject, required, &mut policies) {
                    Ok(()) => {
                        for policy in policies {
                            push_unique(decided_by, policy);
                        }
                        return Ok(());
                    }
                    Err(Denial::ApiAccessDisabled { .. }) => {
                        // Every resource of this account is denied the same way: one mention is enough.
                        disabled.push(self.account_id(account)?);
                        break;
                    }
                    Err(_) => other_denials += 1,
                }
            }
        }
        if other_denials == 0
            && let (Some(&account), Caller::UserToken(_, user) | Caller::LegacyKey(user)) =
                (disabled.first(), caller)
        {
            return Err(Denial::ApiAccessDisabled {
                user: self.user_id(user)?,
                account,
            });
        }
        Err(Denial::NoResourceAllowed {
            keys: match required {
                Required::None => self.key_list(&[]),
                Required::AllOf(keys) | Required::AnyOf(keys) => self.key_list(keys),
            },
            api_access_disabled_on: disabled,
        })
    }

    /// The resources of `account` worth trying for a collection route (see [`Self::authorize_any`]).
    fn candidate_resources(&self, caller: Caller<'_>, account: AccountIdx) -> Vec<Resource> {
        let mut candidates = vec![Resource::Account(account)];
        let Some(info) = self.accounts.get(account as usize) else {
            return candidates;
        };
        let mut named: Vec<ZoneIdx> = Vec::new();
        let mut named_children: Vec<ChildRef> = Vec::new();
        let mut collect = |policies: &[Policy]| {
            for policy in policies {
                named.extend(policy.selector.named_zones().filter(|zone| {
                    self.zones
                        .get(*zone as usize)
                        .is_some_and(|z| z.account == account)
                }));
                for item in policy.selector.items() {
                    if let Select::Child(index) = *item
                        && let Some(child) = self.children.child(index)
                        && child.account == account
                    {
                        named_children.push(ChildRef {
                            kind: child.kind,
                            child: index,
                            account,
                            zone: child.zone,
                        });
                    }
                }
            }
        };
        match caller {
            Caller::AccountToken(token, _) => collect(&token.gate.policies),
            Caller::UserToken(token, user) => {
                collect(&token.gate.policies);
                if let Some(member) = self.member(user, account) {
                    collect(&member.policies);
                }
            }
            Caller::LegacyKey(user) => {
                if let Some(member) = self.member(user, account) {
                    collect(&member.policies);
                }
            }
        }
        named.sort_unstable();
        named.dedup();
        candidates.extend(named.iter().map(|zone| Resource::Zone(*zone, account)));
        if let Some(unnamed) = info
            .zones
            .iter()
            .find(|zone| named.binary_search(zone).is_err())
        {
            candidates.push(Resource::Zone(*unnamed, account));
        }
        named_children.sort_unstable();
        named_children.dedup();
        candidates.extend(named_children.into_iter().map(Resource::Child));
        // A child of each type that no policy names: what covers every child of a type covers it.
        for (kind, form) in self.resource_types.iter().enumerate() {
            let Ok(kind) = KindIdx::try_from(kind) else {
                break;
            };
            let zone = match form.parent {
                ParentKind::Account => NO_ZONE,
                ParentKind::Zone => match info.zones.first() {
                    Some(zone) => *zone,
                    None => continue,
                },
            };
            candidates.push(Resource::Child(ChildRef {
                kind,
                child: UNNAMED_CHILD,
                account,
                zone,
            }));
        }
        candidates
    }

    fn subject(&self, resource: Resource) -> Subject<'_> {
        Subject {
            resource,
            shown: self.resource_ref(resource),
        }
    }

    /// The user's membership of the account, if any.
    pub fn member(&self, user: UserIdx, account: AccountIdx) -> Option<&Member> {
        self.member_by_user_account.get(&(user, account))
    }

    fn user_id(&self, user: UserIdx) -> Result<&str, Denial<'_>> {
        self.users
            .get(user as usize)
            .map(|user| &*user.id)
            .ok_or_else(|| internal("user index out of range"))
    }

    fn account_id(&self, account: AccountIdx) -> Result<&str, Denial<'_>> {
        self.accounts
            .get(account as usize)
            .map(|account| &*account.id)
            .ok_or_else(|| internal("account index out of range"))
    }

    fn key_list(&self, keys: &[KeyId]) -> KeyList<'_> {
        KeyList {
            names: &self.keys,
            ids: keys.into(),
        }
    }
}

/// Whether a token may be used now, from this IP: the gate decides, the record names the reason.
fn check_usable<'s>(
    gate: &TokenGate,
    token: &'s Token,
    now: i64,
    client_ip: IpAddr,
) -> Result<(), Denial<'s>> {
    check_status_and_time(gate, token, now)?;
    // Fail closed: a gate that says there is a condition but no condition to check is a denial.
    if gate.has_ip_condition
        && !token
            .ip_condition
            .as_ref()
            .is_some_and(|condition| condition.allows(client_ip))
    {
        return Err(Denial::IpOutsideCondition {
            token: &token.id,
            ip: client_ip,
        });
    }
    Ok(())
}

/// The token's status and validity window at `now` (everything of [`check_usable`] but the IP).
#[inline]
fn check_status_and_time<'s>(
    gate: &TokenGate,
    token: &'s Token,
    now: i64,
) -> Result<(), Denial<'s>> {
    match gate.status {
        Status::Active => {}
        Status::Disabled => {
            return Err(Denial::TokenDisabled { token: &token.id });
        }
        Status::Expired => {
            return Err(Denial::TokenExpired {
                token: &token.id,
                at: None,
            });
        }
    }
    // `valid_from` is `i64::MIN` without a `not_before`, and no `now` is before it.
    if now < gate.valid_from {
        return Err(Denial::TokenNotYetValid {
            token: &token.id,
            at: token.not_before.as_ref().map_or("", |(_, text)| text),
        });
    }
    // `valid_until` is `i64::MAX` without an `expires_on`: only the record tells whether it expires then.
    if now >= gate.valid_until
        && let Some((_, text)) = &token.expires_on
    {
        return Err(Denial::TokenExpired {
            token: &token.id,
            at: Some(text),
        });
    }
    Ok(())
}

impl PolicySet {
    /// Why the token at `index` cannot be used at `now` whatever the client IP (disabled, expired, not
    /// yet valid), by the decision's own check; `Ok` when it can (its IP condition aside).
    pub fn token_usable_at(&self, index: u32, now: i64) -> Result<(), Denial<'_>> {
        match (
            self.token_gates.get(index as usize),
            self.tokens.get(index as usize),
        ) {
            (Some(gate), Some(token)) => check_status_and_time(gate, token, now),
            _ => Err(internal("token index out of range")),
        }
    }
}

fn unknown(kind: &'static str, id: &str) -> Denial<'static> {
    Denial::UnknownResource {
        kind,
        id: id.into(),
    }
}

fn internal(what: &'static str) -> Denial<'static> {
    Denial::Internal { what }
}

fn push_unique<'s>(list: &mut PolicyIds<'s>, id: &'s str) {
    if !list.contains(&id) {
        list.push(id);
    }
}

/// Compares two hashes without an early exit, so timing says nothing about how much matched.
fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}
