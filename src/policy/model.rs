//! The compiled access model: users, accounts, zones, child resources of declared types (R2 buckets, Worker
//! scripts), members, user groups, tokens and their policies, indexed for lookups.
//!
//! Built once per config by the policy compiler (`config::compile::policy`); read-only afterwards. Entities
//! refer to each other by dense `u32` indices, and each policy's groups are pre-expanded into a [`KeySet`]
//! over the route keys, so a decision is a handful of hash lookups and bit tests, independent of how many
//! tokens or zones exist.
//!
//! What only explanations need (which permission group of a policy holds a key, which user group a member
//! policy comes from, which domain group brought a zone in) is kept in side tables of [`PolicySet`], never in
//! the structures a decision reads.

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
/// A member policy by its member and its position in [`Member::policies`].
pub type MemberPolicy = (UserIdx, AccountIdx, u32);
/// Index of a resource type in [`PolicySet::resource_types`].
pub type KindIdx = u16;
/// Index of a named child resource in [`PolicySet::children`].
pub type ChildIdx = u32;
/// The [`ChildIdx`] of a child resource that no policy names (it is known from its parent alone).
pub const UNNAMED_CHILD: ChildIdx = u32::MAX;
/// The parent zone of a child resource whose parent is an account.
pub const NO_ZONE: ZoneIdx = u32::MAX;

/// Every entity and policy of one config, compiled.
#[derive(Debug, Default)]
pub struct PolicySet {
    /// `<ns>` of resource keys, e.g. `com.cloudflare.api`.
    pub namespace: Box<str>,
    /// Every key a route requires.
    pub keys: KeyInterner,
    /// The distinct key sets of all policies (policies refer to them by index).
    pub keysets: Vec<KeySet>,
    /// By the same index: the permission groups whose union that key set is (policies with the same keys
    /// from other groups have a key set of their own), for explanations: never read by a decision.
    pub keyset_groups: Vec<Arc<[GrantGroup]>>,
    pub users: Vec<User>,
    pub accounts: Vec<Account>,
    pub zones: Vec<Zone>,
    /// The resource types beyond account, zone and user (`resource_types:` of the policy files).
    pub resource_types: Vec<ResourceType>,
    /// The child resources some policy names, one by one (a child no policy names is still known from
    /// its parent: see [`UNNAMED_CHILD`]).
    pub children: ChildTable,
    /// The user groups of every account.
    pub user_groups: Vec<UserGroup>,
    /// The domain groups of every account (for explanations: which one brought a zone in).
    pub domain_groups: Vec<DomainGroup>,
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
    /// How many of a member's policies are its own, for the members of a user group (the rest are its
    /// groups', in [`Self::user_groups`] order): a side table for explanations, never read by a decision.
    pub(crate) member_own_policies: FxHashMap<(UserIdx, AccountIdx), u32>,
    /// For each member policy (user, account, position in [`Member::policies`]) that names domain groups,
    /// their positions in [`Self::domain_groups`]: a side table for explanations.
    pub(crate) member_policy_domain_groups: FxHashMap<MemberPolicy, Box<[u32]>>,
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

/// What a resource type's parent is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ParentKind {
    Account,
    Zone,
}

impl ParentKind {
    /// `account` or `zone`, as config files and route scopes name it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Account => "account",
            Self::Zone => "zone",
        }
    }
}

/// A resource type beyond account, zone and user (an R2 bucket, a Worker script): its name and the form of
/// its resource keys, `<prefix><PARENT_ID><separator><NAME>` (Cloudflare's R2 bucket:
/// `com.cloudflare.edge.r2.bucket.` + account id + `_default_` + bucket name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceType {
    /// The name routes and messages use (`r2_bucket`).
    pub name: Box<str>,
    /// The key up to the parent's id, with its final dot (`com.cloudflare.edge.r2.bucket.`).
    pub prefix: Box<str>,
    /// Between the parent's id and the child's name (`_default_`).
    pub separator: Box<str>,
    pub parent: ParentKind,
}

impl ResourceType {
    /// The key of the child `name` of the parent with id `parent`.
    pub fn key(&self, parent: &str, name: &str) -> String {
        format!("{}{parent}{}{name}", self.prefix, self.separator)
    }

    /// `<prefix>*`: every resource of the type (nested under an account key: every one of that account).
    pub fn wildcard(&self) -> String {
        format!("{}*", self.prefix)
    }

    /// The parent id and the name in a key of this type; `None` when the key is not one.
    pub fn parse<'k>(&self, key: &'k str) -> Option<(&'k str, &'k str)> {
        let rest = key.strip_prefix(&*self.prefix)?;
        let (parent, name) = rest.split_once(&*self.separator)?;
        let valid = |id: &str| !id.is_empty() && !id.bytes().any(|b| matches!(b, b'*' | b' '));
        (valid(parent) && valid(name) && !parent.contains('.')).then_some((parent, name))
    }
}

/// A child resource some policy names: its type, name and parent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Child {
    pub kind: KindIdx,
    pub name: Box<str>,
    pub account: AccountIdx,
    /// The parent zone; [`NO_ZONE`] when the parent is the account.
    pub zone: ZoneIdx,
}

impl Child {
    /// The index of its parent: the zone for a zone's child, else the account.
    fn parent_index(&self) -> u32 {
        if self.zone == NO_ZONE {
            self.account
        } else {
            self.zone
        }
    }
}

/// The named child resources, indexed by (type, parent, name) without a second copy of the names.
#[derive(Debug, Clone, Default)]
pub struct ChildTable {
    children: Vec<Child>,
    index: hashbrown::HashTable<ChildIdx>,
}

fn child_hash(kind: KindIdx, parent: u32, name: &str) -> u64 {
    use std::hash::{BuildHasher, Hash, Hasher};
    let mut hasher = rustc_hash::FxBuildHasher.build_hasher();
    kind.hash(&mut hasher);
    parent.hash(&mut hasher);
    name.hash(&mut hasher);
    hasher.finish()
}

impl ChildTable {
    /// The index of the child of type `kind`, parent (account or zone) index `parent`, named `name`.
    #[inline]
    pub fn get(&self, kind: KindIdx, parent: u32, name: &str) -> Option<ChildIdx> {
        let children = &self.children;
        self.index
            .find(child_hash(kind, parent, name), |&index| {
                children.get(index as usize).is_some_and(|child| {
                    child.kind == kind && child.parent_index() == parent && &*child.name == name
                })
            })
            .copied()
    }

    /// The index of `child`, added when it is new.
    pub fn intern(&mut self, child: Child) -> ChildIdx {
        let parent = child.parent_index();
        if let Some(index) = self.get(child.kind, parent, &child.name) {
            return index;
        }
        let index = u32::try_from(self.children.len()).unwrap_or(UNNAMED_CHILD);
        let hash = child_hash(child.kind, parent, &child.name);
        self.children.push(child);
        let children = &self.children;
        self.index.insert_unique(hash, index, |&kept| {
            children.get(kept as usize).map_or(0, |child| {
                child_hash(child.kind, child.parent_index(), &child.name)
            })
        });
        index
    }

    /// The child at `index`.
    pub fn child(&self, index: ChildIdx) -> Option<&Child> {
        self.children.get(index as usize)
    }

    /// Every named child, by index.
    pub fn all(&self) -> &[Child] {
        &self.children
    }

    pub fn len(&self) -> usize {
        self.children.len()
    }

    pub fn is_empty(&self) -> bool {
        self.children.is_empty()
    }
}

/// A domain group of an account: a named set of its zones.
#[derive(Debug, Clone)]
pub struct DomainGroup {
    pub id: Box<str>,
    pub name: Box<str>,
    pub account: AccountIdx,
    pub zones: Vec<ZoneIdx>,
}

/// A user group of an account: its members inherit its policies (their access is the union of their own
/// member policies and their groups', a deny of either beating an allow of either).
#[derive(Debug, Clone)]
pub struct UserGroup {
    pub id: Box<str>,
    pub name: Box<str>,
    pub account: AccountIdx,
    pub members: Vec<UserIdx>,
    /// The ids of its policies (compiled into each member's [`Member::policies`]).
    pub policy_ids: Vec<Box<str>>,
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
    /// The member's own policies, then those of each of its user groups (see [`PolicySet::policy_group`]).
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
    /// Every zone and every child resource of every account (`<ns>.account.*`).
    AllBelow,
    /// Every zone and every child resource of one account (`<ns>.account.<id>: "*"`, Bach `objects: [*]`).
    AccountBelow(AccountIdx),
    /// Every resource of one type, in any account (`<prefix>*` at the top of a token policy).
    AllOfKind(KindIdx),
    /// Every resource of one type in one account (`<prefix>*` nested under the account, or a Bach object).
    AccountOfKind(AccountIdx, KindIdx),
    /// One named child resource.
    Child(ChildIdx),
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
        // The usual selector holds one or two items: a scan of them tests each item once; a long one (a
        // domain group's zones) is searched.
        if self.items.len() <= 2 {
            return self.items.iter().any(|item| item.covers(resource));
        }
        match resource {
            Resource::Account(account) => {
                self.has(Select::AllAccounts) || self.has(Select::Account(account))
            }
            Resource::Zone(zone, account) => {
                self.has(Select::AllZones)
                    || self.has(Select::AccountZones(account))
                    || self.has(Select::Zone(zone))
                    || self.has(Select::AllBelow)
                    || self.has(Select::AccountBelow(account))
            }
            Resource::User(user) => self.has(Select::User(user)),
            Resource::Child(child) => {
                self.has(Select::AllBelow)
                    || self.has(Select::AccountBelow(child.account))
                    || self.has(Select::AllOfKind(child.kind))
                    || self.has(Select::AccountOfKind(child.account, child.kind))
                    || (child.child != UNNAMED_CHILD && self.has(Select::Child(child.child)))
                    || (child.zone != NO_ZONE
                        && (self.has(Select::AllZones)
                            || self.has(Select::AccountZones(child.account))
                            || self.has(Select::Zone(child.zone))))
            }
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

impl Select {
    /// Whether this one item covers `resource` (a child is covered by what covers its whole account, its
    /// type, itself, and, for a zone's child, what covers its zone).
    #[inline]
    pub fn covers(self, resource: Resource) -> bool {
        match (self, resource) {
            (Self::AllAccounts, Resource::Account(_)) => true,
            (Self::Account(a), Resource::Account(b)) => a == b,
            (Self::AllZones | Self::AllBelow, Resource::Zone(..)) => true,
            (Self::AccountZones(a) | Self::AccountBelow(a), Resource::Zone(_, b)) => a == b,
            (Self::Zone(a), Resource::Zone(b, _)) => a == b,
            (Self::User(a), Resource::User(b)) => a == b,
            (Self::AllBelow, Resource::Child(_)) => true,
            (Self::AccountBelow(a), Resource::Child(child)) => a == child.account,
            (Self::AllOfKind(kind), Resource::Child(child)) => kind == child.kind,
            (Self::AccountOfKind(a, kind), Resource::Child(child)) => {
                a == child.account && kind == child.kind
            }
            (Self::Child(a), Resource::Child(child)) => a == child.child && a != UNNAMED_CHILD,
            (Self::AllZones, Resource::Child(child)) => child.zone != NO_ZONE,
            (Self::AccountZones(a), Resource::Child(child)) => {
                child.zone != NO_ZONE && a == child.account
            }
            (Self::Zone(a), Resource::Child(child)) => child.zone != NO_ZONE && a == child.zone,
            _ => false,
        }
    }
}

/// A child resource as the decision sees it: its type, its index when a policy names it, its account and,
/// for a zone's child, its zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChildRef {
    pub kind: KindIdx,
    /// [`UNNAMED_CHILD`] when no policy names it.
    pub child: ChildIdx,
    pub account: AccountIdx,
    /// [`NO_ZONE`] when its parent is the account.
    pub zone: ZoneIdx,
}

/// A resource as the decision sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    Account(AccountIdx),
    /// A zone and the account it belongs to.
    Zone(ZoneIdx, AccountIdx),
    User(UserIdx),
    /// A child resource (an R2 bucket, a Worker script).
    Child(ChildRef),
}

impl Resource {
    /// The account the resource belongs to (none for users).
    pub fn account(self) -> Option<AccountIdx> {
        match self {
            Self::Account(account) | Self::Zone(_, account) => Some(account),
            Self::Child(child) => Some(child.account),
            Self::User(_) => None,
        }
    }
}

/// A permission group as a policy holds it: a catalog group (by id) or an inline one, with its patterns,
/// so an explanation can say which group of a policy grants a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantGroup {
    /// The catalog position, or for an inline group a hash of its name and patterns with the top bit set:
    /// what tells two policies' groups apart when their keys are the same.
    pub identity: u64,
    /// The catalog id; empty for an inline group.
    pub id: Box<str>,
    pub name: Box<str>,
    pub patterns: Box<[KeyPattern]>,
}

impl GrantGroup {
    /// Whether the group grants `key`.
    pub fn grants(&self, key: &str) -> bool {
        self.patterns.iter().any(|pattern| pattern.matches(key))
    }

    /// The name, or the id when it has none.
    pub fn label(&self) -> &str {
        if self.name.is_empty() {
            &self.id
        } else {
            &self.name
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
    /// The set's resource-key namespace (a thin pointer: with the group a deny names, a denial stays the
    /// size it was before child resources).
    #[allow(clippy::borrowed_box)] // 8 bytes where `&str` takes 16; see the size test
    pub namespace: &'s Box<str>,
    pub kind: ResourceKind,
    /// The id (a child's name; empty for a child no policy names).
    pub id: &'s str,
    /// The id of the account it belongs to (none for users).
    pub account: Option<&'s str>,
    /// A child's type and its parent's id.
    pub child: Option<(&'s ResourceType, &'s str)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResourceKind {
    Account,
    Zone,
    User,
    /// A resource of a declared type (see [`ResourceRef::child`]).
    Child,
}

impl fmt::Display for ResourceRef<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some((form, parent)) = self.child {
            let name = if self.id.is_empty() {
                "(a name no policy names)"
            } else {
                self.id
            };
            return write!(f, "{}{parent}{}{name}", form.prefix, form.separator);
        }
        let kind = match self.kind {
            ResourceKind::Account => "account",
            ResourceKind::Zone => "account.zone",
            ResourceKind::User => "user",
            ResourceKind::Child => "child",
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
                child: None,
            },
            Resource::Zone(zone, account) => ResourceRef {
                namespace: &self.namespace,
                kind: ResourceKind::Zone,
                id: self.zones.get(zone as usize).map_or("", |z| &*z.id),
                account: account_id(account),
                child: None,
            },
            Resource::User(user) => ResourceRef {
                namespace: &self.namespace,
                kind: ResourceKind::User,
                id: self.users.get(user as usize).map_or("", |u| &*u.id),
                account: None,
                child: None,
            },
            Resource::Child(child) => {
                let parent = if child.zone == NO_ZONE {
                    account_id(child.account).unwrap_or("")
                } else {
                    self.zones.get(child.zone as usize).map_or("", |z| &*z.id)
                };
                ResourceRef {
                    namespace: &self.namespace,
                    kind: ResourceKind::Child,
                    id: self.children.child(child.child).map_or("", |c| &*c.name),
                    account: account_id(child.account),
                    child: self
                        .resource_types
                        .get(usize::from(child.kind))
                        .map(|form| (form, parent)),
                }
            }
        }
    }

    /// The child resource of type `kind` named `name` under the parent with id `parent` (an account's or a
    /// zone's, as the type says): known whenever its parent is. `Err` names what is unknown.
    #[inline]
    pub fn child_resource(
        &self,
        kind: KindIdx,
        parent: &str,
        name: &str,
    ) -> Result<ChildRef, &'static str> {
        let form = self
            .resource_types
            .get(usize::from(kind))
            .ok_or("resource type")?;
        let (account, zone, parent_index) = match form.parent {
            ParentKind::Account => {
                let account = *self.account_by_id.get(parent).ok_or("account")?;
                (account, NO_ZONE, account)
            }
            ParentKind::Zone => {
                let entry = self.zone_by_id.get(parent).ok_or("zone")?;
                (entry.account, entry.zone, entry.zone)
            }
        };
        let child = self
            .children
            .get(kind, parent_index, name)
            .unwrap_or(UNNAMED_CHILD);
        Ok(ChildRef {
            kind,
            child,
            account,
            zone,
        })
    }

    /// A child's parent id and a name for it in a request path: its own name, or for a child no policy
    /// names a name that none names (`unnamed`, `unnamed-1`, …).
    pub fn child_path_ids(&self, child: ChildRef) -> (&str, String) {
        let parent_index = if child.zone == NO_ZONE {
            child.account
        } else {
            child.zone
        };
        let parent = if child.zone == NO_ZONE {
            self.accounts
                .get(child.account as usize)
                .map_or("", |a| &*a.id)
        } else {
            self.zones.get(child.zone as usize).map_or("", |z| &*z.id)
        };
        if let Some(named) = self.children.child(child.child) {
            return (parent, named.name.to_string());
        }
        let mut name = String::from("unnamed");
        let mut attempt = 0u32;
        while self.children.get(child.kind, parent_index, &name).is_some() {
            attempt += 1;
            name = format!("unnamed-{attempt}");
        }
        (parent, name)
    }

    /// The children worth looking at in one account: those policies name, and one that none names of each
    /// type (for a zone's type, one per zone of the account).
    pub fn account_children(&self, account: AccountIdx) -> Vec<ChildRef> {
        let mut out = Vec::new();
        for (index, child) in self.children.all().iter().enumerate() {
            if child.account == account
                && let Ok(index) = ChildIdx::try_from(index)
            {
                out.push(ChildRef {
                    kind: child.kind,
                    child: index,
                    account,
                    zone: child.zone,
                });
            }
        }
        for (kind, form) in self.resource_types.iter().enumerate() {
            let Ok(kind) = KindIdx::try_from(kind) else {
                break;
            };
            match form.parent {
                ParentKind::Account => out.push(ChildRef {
                    kind,
                    child: UNNAMED_CHILD,
                    account,
                    zone: NO_ZONE,
                }),
                ParentKind::Zone => {
                    let zones = self.accounts.get(account as usize).map(|a| &a.zones[..]);
                    for zone in zones.unwrap_or(&[]) {
                        out.push(ChildRef {
                            kind,
                            child: UNNAMED_CHILD,
                            account,
                            zone: *zone,
                        });
                    }
                }
            }
        }
        out
    }

    /// The domain groups of a member policy (position `index` in the member's policies) that hold `zone`.
    pub fn policy_domain_groups(
        &self,
        member: &Member,
        index: usize,
        zone: ZoneIdx,
    ) -> Vec<&DomainGroup> {
        let Ok(index) = u32::try_from(index) else {
            return Vec::new();
        };
        self.member_policy_domain_groups
            .get(&(member.user, member.account, index))
            .map(|groups| {
                groups
                    .iter()
                    .filter_map(|group| self.domain_groups.get(*group as usize))
                    .filter(|group| group.zones.contains(&zone))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The resource type named `name` (routes name their type; a few types at most, so a scan).
    #[inline]
    pub fn resource_type(&self, name: &str) -> Option<KindIdx> {
        self.resource_types
            .iter()
            .position(|form| &*form.name == name)
            .and_then(|index| KindIdx::try_from(index).ok())
    }

    /// The permission groups of `policy` that grant `key` (the names of its groups, in the policy's order).
    pub fn granting_groups(&self, policy: &Policy, key: &str) -> Vec<&str> {
        self.keyset_groups
            .get(policy.keyset as usize)
            .map(|groups| {
                groups
                    .iter()
                    .filter(|group| group.grants(key))
                    .map(GrantGroup::label)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The user group a member policy comes from: `None` for the member's own policies. `index` is the
    /// policy's position in [`Member::policies`].
    pub fn policy_group(&self, member: &Member, index: usize) -> Option<&UserGroup> {
        let own = self
            .member_own_policies
            .get(&(member.user, member.account))
            .copied();
        let own = own.map_or(member.policies.len(), |own| own as usize);
        if index < own {
            return None;
        }
        let mut start = own;
        for group in self
            .user_groups
            .iter()
            .filter(|group| group.account == member.account && group.members.contains(&member.user))
        {
            let end = start + group.policy_ids.len();
            if index < end {
                return Some(group);
            }
            start = end;
        }
        None
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

#[cfg(test)]
mod size_tests {
    use super::*;

    /// What a decision reads per policy and per member stays as it was before child resources and user
    /// groups (their provenance lives in side tables): a policy is one 64-byte line's worth, a selector
    /// item 8 bytes (two inline), a member 32 bytes.
    #[test]
    fn the_structures_a_decision_reads_did_not_grow() {
        assert_eq!(std::mem::size_of::<Select>(), 8);
        assert_eq!(std::mem::size_of::<Selector>(), 24);
        assert_eq!(std::mem::size_of::<Policy>(), 56);
        assert_eq!(std::mem::size_of::<Member>(), 32);
        assert_eq!(std::mem::size_of::<TokenGate>(), 64);
        assert_eq!(std::mem::size_of::<Resource>(), 20);
    }

    /// What a decision carries back (moved a few times per request): the named deny group costs no byte,
    /// paid for by the thin namespace pointer.
    #[test]
    fn a_denial_did_not_grow_with_its_group() {
        assert_eq!(std::mem::size_of::<ResourceRef>(), 72);
        assert_eq!(std::mem::size_of::<crate::policy::Denial>(), 120);
    }
}
