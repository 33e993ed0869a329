//! The compiled access model: users, accounts, zones, members, tokens and their policies, indexed for lookups.
//!
//! Built once per config by the policy compiler (`config::compile::policy`); read-only afterwards. Entities
//! refer to each other by dense `u32` indices, and each policy's groups are pre-expanded into a [`KeySet`]
//! over the route keys, so a decision is a handful of hash lookups and bit tests, independent of how many
//! tokens or zones exist.

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;
use rustc_hash::FxHashMap;
use smallvec::SmallVec;

use super::id_index::IdIndex;
use super::keys::{KeyInterner, KeyPattern, KeySet};

/// Index of a user in [`PolicySet::users`].
pub type UserIdx = u32;
/// Index of an account in [`PolicySet::accounts`].
pub type AccountIdx = u32;
/// Index of a zone in [`PolicySet::zones`].
pub type ZoneIdx = u32;

/// Every entity and policy of one config, compiled.
#[derive(Debug, Default)]
pub struct PolicySet {
    /// `<ns>` of resource keys, e.g. `com.cloudflare.api`.
    pub namespace: Box<str>,
    /// Every key a route requires.
    pub keys: KeyInterner,
    /// The distinct key sets of all policies (policies refer to them by index).
    pub keysets: Vec<KeySet>,
    pub users: Vec<User>,
    pub accounts: Vec<Account>,
    pub zones: Vec<Zone>,
    /// Shared with the snapshot a reload compiled this one from, for the files that did not change.
    pub tokens: Vec<Arc<Token>>,
    /// What a decision reads of each token, by the same index as [`Self::tokens`].
    pub token_gates: Vec<TokenGate>,
    /// The permission-group catalog, kept for `permgate validate`.
    pub groups: Vec<GroupInfo>,
    /// Problems that do not stop the config from loading (`permgate validate` prints them).
    pub warnings: Vec<Warning>,
    pub(crate) user_by_id: FxHashMap<Box<str>, UserIdx>,
    pub(crate) user_by_email: FxHashMap<Box<str>, UserIdx>,
    pub(crate) account_by_id: IdIndex<AccountIdx>,
    /// A zone and its account in one entry: resolving a zone route reads no [`Zone`].
    pub(crate) zone_by_id: IdIndex<ZoneEntry>,
    pub(crate) token_by_hash: DigestMap<u32>,
    /// Each membership, with its policies in the entry itself (no second lookup).
    pub(crate) member_by_user_account: FxHashMap<(UserIdx, AccountIdx), Member>,
    /// What each policy file's tokens compiled to, in file order (files without tokens have none): a reload
    /// in which only token files changed reuses the others' (`config::load`).
    pub token_files: Vec<TokenFileRecord>,
    /// What the entities alone gave, before any token: how many of [`Self::warnings`] are theirs, and which
    /// catalog groups they use. A compile that reuses this set's entities starts from exactly that
    /// (`config::compile::policy::Compiler::resume`).
    pub(crate) entity_warnings: u32,
    pub(crate) entity_used_groups: Box<[usize]>,
}

/// The compiled tokens of one policy file: where they are in [`PolicySet::tokens`], and what compiling them
/// added to the config besides (the catalog groups they use, their warnings).
#[derive(Debug, Clone, Default)]
pub struct TokenFileRecord {
    pub file: std::path::PathBuf,
    /// Positions in [`PolicySet::tokens`] and [`PolicySet::token_gates`]: in a config that compiled, every
    /// token of the file, in file order.
    pub tokens: std::ops::Range<u32>,
    /// Positions in [`PolicySet::groups`] of the catalog groups their policies refer to.
    pub used_groups: Box<[usize]>,
    pub warnings: Vec<Warning>,
}

/// A problem in the policy files that does not stop the config from loading, kept with the model so that a
/// compile reusing part of it gives it again (`permgate validate` prints them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// The policy file it is in.
    pub file: std::path::PathBuf,
    /// The path inside the document, e.g. `tokens[3].policies[0].resources`.
    pub path: String,
    pub kind: WarningKind,
    /// What is wrong, for humans.
    pub message: String,
}

/// What a [`Warning`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WarningKind {
    /// A policy whose permission groups grant no key that any route requires: it can never match.
    PolicyGrantsNoKey,
    /// A permission group meant for a type of resource the policy selects none of (SPEC §1).
    GroupTypeNotSelected,
    /// A user token's policy names only accounts and zones where its user is not a member.
    TokenUserNotMember,
}

#[derive(Debug, Clone)]
pub struct User {
    pub id: Box<str>,
    pub email: Box<str>,
    pub api_key_sha256: Option<[u8; 32]>,
    /// The accounts the user is a member of, in config order.
    pub memberships: Vec<AccountIdx>,
}

#[derive(Debug, Clone)]
pub struct Account {
    pub id: Box<str>,
    pub name: Box<str>,
    pub zones: Vec<ZoneIdx>,
    pub domain_groups: usize,
}

#[derive(Debug, Clone)]
pub struct Zone {
    pub id: Box<str>,
    pub name: Box<str>,
    pub account: AccountIdx,
}

/// A zone's entry in the zone index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ZoneEntry {
    pub zone: ZoneIdx,
    pub account: AccountIdx,
}

/// A user's membership of an account.
#[derive(Debug, Clone)]
pub struct Member {
    pub user: UserIdx,
    pub account: AccountIdx,
    /// The effective API-access toggle for this user's credentials on this account.
    pub api_access: bool,
    pub policies: Box<[Policy]>,
}

/// Who owns a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Owner {
    User(UserIdx),
    Account(AccountIdx),
}

/// A token's configured status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Active,
    Disabled,
    Expired,
}

#[derive(Debug, Clone)]
pub struct Token {
    pub id: Box<str>,
    pub name: Box<str>,
    pub owner: Owner,
    pub status: Status,
    /// Unix seconds, with the text as configured (for reasons and token verify).
    pub not_before: Option<(i64, Box<str>)>,
    pub expires_on: Option<(i64, Box<str>)>,
    pub ip_condition: Option<IpCondition>,
}

/// The fields of a token that every decision reads, in one cache line of their own: the [`Token`] record
/// next to it holds what only reasons, logs and `permgate validate` need (names, times as text, the IP
/// ranges), so authenticating a token touches one line, not the three its full record spans.
#[derive(Debug, Clone)]
#[repr(align(64))]
pub struct TokenGate {
    pub owner: Owner,
    pub status: Status,
    /// Whether [`Token::ip_condition`] is set.
    pub has_ip_condition: bool,
    /// `not_before` in Unix seconds; `i64::MIN` when there is none.
    pub valid_from: i64,
    /// `expires_on` in Unix seconds; `i64::MAX` when there is none (so a decision at `i64::MAX` checks
    /// [`Token::expires_on`] to tell the two apart).
    pub valid_until: i64,
    /// The id of the owning user or account, shared with every other token of that owner: the principal
    /// of a decision without reading the owner's record.
    pub owner_id: Arc<str>,
    /// Shared with the snapshot a reload compiled this one from, when the token's file did not change (a
    /// pointer to the slice, as a box would be: reading it costs the same).
    pub policies: Arc<[Policy]>,
}

/// `condition.request.ip`: inside some `in` range (when given), inside no `not_in` range.
#[derive(Debug, Clone, Default)]
pub struct IpCondition {
    pub inside: Option<Vec<IpNet>>,
    pub not_in: Vec<IpNet>,
}

impl IpCondition {
    /// Whether `ip` satisfies the condition. IPv4-mapped IPv6 addresses are checked as IPv4.
    pub fn allows(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        let inside = self
            .inside
            .as_ref()
            .is_none_or(|ranges| ranges.iter().any(|range| range.contains(&ip)));
        inside && !self.not_in.iter().any(|range| range.contains(&ip))
    }
}

/// Allow or deny.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    Allow,
    Deny,
}

/// One compiled policy: its effect, the route keys its groups hold, and the resources it covers.
#[derive(Debug, Clone)]
pub struct Policy {
    /// The configured id, or a generated label (`<owner>#<index>`) when none was given.
    pub id: Box<str>,
    pub effect: Effect,
    /// Index into [`PolicySet::keysets`]: identical key sets are stored once.
    pub keyset: u32,
    /// The first 64 keys of that key set (bit `i` is [`KeyId`]`(i)`), inline: most configs have fewer route
    /// keys than that, and testing a policy then follows no pointer.
    ///
    /// [`KeyId`]: super::keys::KeyId
    pub first_keys: u64,
    pub selector: Selector,
}

/// One thing a policy's selector covers.
///
/// Ordered (variant, then index) so a selector's items can be kept sorted and binary-searched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Select {
    /// Every account's account-level resource (`<ns>.account.*`).
    AllAccounts,
    /// Every zone of every account (`<ns>.account.*` or `<ns>.account.zone.*`).
    AllZones,
    /// One account's account-level resource.
    Account(AccountIdx),
    /// Every zone of one account.
    AccountZones(AccountIdx),
    /// One zone.
    Zone(ZoneIdx),
    /// One user's user resource.
    User(UserIdx),
}

/// The resources a policy covers: a sorted, deduplicated list of [`Select`] items.
///
/// Up to two items (one zone; an account and its zones; the usual token and member policy) are stored
/// inline in the policy: a decision tests every policy of a token, and a pointer per policy to follow
/// would be a cache miss per policy once the policy set is larger than the cache.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Selector {
    items: SmallVec<[Select; 2]>,
}

impl Selector {
    /// A selector of these items (sorted and deduplicated here).
    pub fn new(mut items: Vec<Select>) -> Self {
        items.sort_unstable();
        items.dedup();
        let mut items = SmallVec::from_vec(items);
        items.shrink_to_fit();
        Self { items }
    }

    #[inline]
    fn has(&self, item: Select) -> bool {
        self.items.binary_search(&item).is_ok()
    }

    /// Whether the selector covers `resource`.
    #[inline]
    pub fn covers(&self, resource: Resource) -> bool {
        match resource {
            Resource::Account(account) => {
                self.has(Select::AllAccounts) || self.has(Select::Account(account))
            }
            Resource::Zone(zone, account) => {
                self.has(Select::AllZones)
                    || self.has(Select::AccountZones(account))
                    || self.has(Select::Zone(zone))
            }
            Resource::User(user) => self.has(Select::User(user)),
        }
    }

    /// The zones it names one by one.
    pub fn named_zones(&self) -> impl Iterator<Item = ZoneIdx> + '_ {
        self.items.iter().filter_map(|item| match item {
            Select::Zone(zone) => Some(*zone),
            _ => None,
        })
    }

    /// Every item.
    pub fn items(&self) -> &[Select] {
        &self.items
    }

    /// Whether it covers nothing at all.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

/// A resource as the decision sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    Account(AccountIdx),
    /// A zone and the account it belongs to.
    Zone(ZoneIdx, AccountIdx),
    User(UserIdx),
}

impl Resource {
    /// The account the resource belongs to (none for users).
    pub fn account(self) -> Option<AccountIdx> {
        match self {
            Self::Account(account) | Self::Zone(_, account) => Some(account),
            Self::User(_) => None,
        }
    }
}

/// A catalog permission group, kept for warnings.
#[derive(Debug, Clone)]
pub struct GroupInfo {
    pub id: Box<str>,
    pub name: Box<str>,
    pub scopes: Box<[Box<str>]>,
    pub patterns: Vec<KeyPattern>,
    /// Whether any policy references it.
    pub used: bool,
}

/// The kind of principal a credential authenticates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrincipalKind {
    /// A user, by a user-owned token or a legacy API key.
    User,
    /// An account, by an account-owned token.
    Account,
}

/// Who is calling: the owner and, for tokens, the token.
#[derive(Debug, Clone, Copy)]
pub struct Principal<'s> {
    pub kind: PrincipalKind,
    /// The user or account id.
    pub id: &'s str,
    /// The token used, if the credential was a token (never its secret).
    pub token: Option<&'s Token>,
}

impl PrincipalKind {
    /// `user` or `account`: the prefix of `X-Permgate-Principal` and of the principal's display.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::User => "user",
            Self::Account => "account",
        }
    }
}

impl<'s> Principal<'s> {
    /// The token id, for token credentials.
    pub fn token_id(&self) -> Option<&'s str> {
        self.token.map(|token| &*token.id)
    }
}

impl fmt::Display for Principal<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.kind.as_str(), self.id)
    }
}

/// The resource a request targeted, for logs and headers; displays as its resource key.
#[derive(Debug, Clone, Copy)]
pub struct ResourceRef<'s> {
    pub namespace: &'s str,
    pub kind: ResourceKind,
    pub id: &'s str,
    /// The id of the account it belongs to (none for users).
    pub account: Option<&'s str>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResourceKind {
    Account,
    Zone,
    User,
}

impl fmt::Display for ResourceRef<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            ResourceKind::Account => "account",
            ResourceKind::Zone => "account.zone",
            ResourceKind::User => "user",
        };
        write!(f, "{}.{kind}.{}", self.namespace, self.id)
    }
}

impl PolicySet {
    /// The display form of a resource.
    pub fn resource_ref(&self, resource: Resource) -> ResourceRef<'_> {
        let account_id = |account: AccountIdx| self.accounts.get(account as usize).map(|a| &*a.id);
        match resource {
            Resource::Account(account) => ResourceRef {
                namespace: &self.namespace,
                kind: ResourceKind::Account,
                id: account_id(account).unwrap_or(""),
                account: account_id(account),
            },
            Resource::Zone(zone, account) => ResourceRef {
                namespace: &self.namespace,
                kind: ResourceKind::Zone,
                id: self.zones.get(zone as usize).map_or("", |z| &*z.id),
                account: account_id(account),
            },
            Resource::User(user) => ResourceRef {
                namespace: &self.namespace,
                kind: ResourceKind::User,
                id: self.users.get(user as usize).map_or("", |u| &*u.id),
                account: None,
            },
        }
    }

    /// How many policies there are, member and token policies together.
    pub fn policy_count(&self) -> usize {
        self.member_by_user_account
            .values()
            .map(|m| m.policies.len())
            .sum::<usize>()
            + self
                .token_gates
                .iter()
                .map(|t| t.policies.len())
                .sum::<usize>()
    }
}

/// Hashes a SHA-256 digest by its first eight bytes: the digest is already uniformly random, so running
/// it through another hash function would only cost time. (Equal prefixes are still told apart by the map's
/// full-key comparison.)
#[derive(Debug, Default, Clone, Copy)]
pub struct DigestPrefixHasher(u64);

impl std::hash::Hasher for DigestPrefixHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // A `[u8; 32]` key arrives as one 32-byte write (after its length, which `write_usize` ignores).
        let mut prefix = [0u8; 8];
        for (slot, byte) in prefix.iter_mut().zip(bytes) {
            *slot = *byte;
        }
        self.0 ^= u64::from_le_bytes(prefix);
    }

    fn write_usize(&mut self, _length: usize) {}
}

/// The token index's map type.
pub type DigestMap<V> =
    std::collections::HashMap<[u8; 32], V, std::hash::BuildHasherDefault<DigestPrefixHasher>>;
