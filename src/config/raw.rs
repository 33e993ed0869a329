//! The policy files as written: a serde mirror of SPEC §2.2–§2.4 and §3.1–§3.2 (unknown fields are errors).
//!
//! Each policy file may hold any of `permission_groups`, `users`, `accounts` and `tokens`; the files of one
//! config are merged. Both of Cloudflare's spellings load verbatim: the Bach form of member policies
//! (`access`, `resource_groups`, inline groups with `meta` and `permissions: [{key}]`) and the API-token form
//! (`effect`, `resources`).

use std::collections::BTreeMap;

use serde::Deserialize;

/// One policy file. A load reads it in two passes: first with its tokens skipped (`RawPolicyFile<SkippedList>`),
/// to compile what tokens refer to, then for its tokens alone ([`RawTokenList`]), compiled a file at a time.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPolicyFile<Tokens = Vec<RawToken>> {
    #[serde(default)]
    pub permission_groups: Vec<RawGroup>,
    #[serde(default)]
    pub users: Vec<RawUser>,
    #[serde(default)]
    pub accounts: Vec<RawAccount>,
    #[serde(default)]
    pub tokens: Tokens,
}

/// The tokens of a policy file, everything else in it skipped (checked by the first pass).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RawTokenList {
    #[serde(default)]
    pub tokens: Vec<RawToken>,
}

/// A list read over without building its items (the syntax is still checked); counts them.
#[derive(Debug, Clone, Copy, Default)]
pub struct SkippedList {
    pub items: usize,
}

impl<'de> Deserialize<'de> for SkippedList {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Counter;
        impl<'de> serde::de::Visitor<'de> for Counter {
            type Value = SkippedList;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a sequence")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<SkippedList, A::Error> {
                let mut items = 0;
                while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {
                    items += 1;
                }
                Ok(SkippedList { items })
            }
        }
        // Asked for exactly as `Vec` asks, so the first pass accepts what the second one will.
        deserializer.deserialize_seq(Counter)
    }
}

/// A permission group: in the catalog (has `id`), inline in a policy (has `permissions`), or a reference
/// (`{id}` or `{name}`) to a catalog group.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGroup {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub scopes: Option<OneOrMany>,
    #[serde(default)]
    pub meta: Option<RawGroupMeta>,
    #[serde(default)]
    pub permissions: Option<Vec<RawPermission>>,
}

/// Cloudflare's Bach `meta` block of a group.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGroupMeta {
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub editable: Option<Scalar>,
    #[serde(default)]
    pub label: Option<String>,
    #[serde(default)]
    pub scopes: Option<OneOrMany>,
}

/// A permission key: a plain string or Bach's `{key: …}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum RawPermission {
    Key(String),
    Object(RawPermissionObject),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPermissionObject {
    pub key: String,
}

impl RawPermission {
    /// The key text.
    pub fn key(&self) -> &str {
        match self {
            Self::Key(key) => key,
            Self::Object(object) => &object.key,
        }
    }
}

/// A string or a list of strings (Bach writes `scopes` as one string).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    /// The values as a list.
    pub fn values(&self) -> Vec<&str> {
        match self {
            Self::One(one) => vec![one.as_str()],
            Self::Many(many) => many.iter().map(String::as_str).collect(),
        }
    }
}

/// A free-form label value (`editable: 'false'` or `editable: false`).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Scalar {
    Bool(bool),
    Number(f64),
    Text(String),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUser {
    pub id: String,
    pub email: String,
    #[serde(default)]
    pub name: Option<String>,
    /// Hex SHA-256 of the legacy API key (sent as `X-Auth-Key` with `X-Auth-Email`).
    #[serde(default)]
    pub api_key_sha256: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAccount {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub api_access: Option<AccountApiAccess>,
    #[serde(default)]
    pub zones: Vec<RawZone>,
    #[serde(default)]
    pub domain_groups: Vec<RawDomainGroup>,
    #[serde(default)]
    pub members: Vec<RawMember>,
}

/// An account's API-access setting: the default for its members' user credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AccountApiAccess {
    Enabled,
    Disabled,
}

/// A member's API-access setting: `default` follows the account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MemberApiAccess {
    Default,
    Enabled,
    Disabled,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawZone {
    pub id: String,
    pub name: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDomainGroup {
    pub id: String,
    pub name: String,
    /// Zone ids of the same account.
    #[serde(default)]
    pub zones: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMember {
    pub user: String,
    #[serde(default)]
    pub api_access: Option<MemberApiAccess>,
    #[serde(default)]
    pub policies: Vec<RawBachPolicy>,
}

/// Allow or deny, spelled `access` (Bach) or `effect` (tokens).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Effect {
    Allow,
    Deny,
}

/// A member policy in Cloudflare's Bach form.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBachPolicy {
    #[serde(default)]
    pub id: Option<String>,
    pub access: Effect,
    pub permission_groups: Vec<RawGroup>,
    pub resource_groups: Vec<RawResourceGroup>,
}

/// A Bach resource group: a `scope` (account + objects), or without `scope` a domain-group reference `{id}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawResourceGroup {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub meta: Option<BTreeMap<String, Scalar>>,
    #[serde(default)]
    pub scope: Option<RawScope>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawScope {
    pub key: String,
    #[serde(default)]
    pub objects: Vec<RawObject>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawObject {
    pub key: String,
}

/// An API token.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawToken {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    pub owner: RawOwner,
    pub secret_sha256: String,
    #[serde(default)]
    pub status: Option<TokenStatus>,
    #[serde(default)]
    pub not_before: Option<String>,
    #[serde(default)]
    pub expires_on: Option<String>,
    #[serde(default)]
    pub condition: Option<RawCondition>,
    pub policies: Vec<RawTokenPolicy>,
    /// Labels Cloudflare's API returns with a token; kept so a pasted token loads.
    #[serde(default)]
    pub issued_on: Option<String>,
    #[serde(default)]
    pub modified_on: Option<String>,
    #[serde(default)]
    pub last_used_on: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOwner {
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub account: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenStatus {
    Active,
    Disabled,
    Expired,
}

/// Cloudflare's token condition: `{request.ip: {in: [...], not_in: [...]}}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCondition {
    #[serde(rename = "request.ip", default)]
    pub request_ip: Option<RawIpCondition>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawIpCondition {
    #[serde(rename = "in", default)]
    pub inside: Option<Vec<String>>,
    #[serde(default)]
    pub not_in: Vec<String>,
}

/// A token policy in Cloudflare's API-token form.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTokenPolicy {
    #[serde(default)]
    pub id: Option<String>,
    pub effect: Effect,
    pub permission_groups: Vec<RawGroup>,
    pub resources: BTreeMap<String, RawResourceValue>,
}

/// A `resources` value: `"*"`, or a nested map of zone keys to `"*"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum RawResourceValue {
    Text(String),
    Nested(BTreeMap<String, String>),
}
