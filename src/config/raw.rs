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
    pub description: Option<Box<str>>,
    // Boxed: most groups in policies are `{id}` references, and a million tokens hold ten million of them.
    #[serde(default)]
    pub scopes: Option<Box<OneOrMany>>,
    #[serde(default)]
    pub meta: Option<Box<RawGroupMeta>>,
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
    pub name: Option<Box<str>>,
    #[serde(default)]
    pub meta: Option<Box<BTreeMap<String, Scalar>>>,
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
    pub issued_on: Option<Box<str>>,
    #[serde(default)]
    pub modified_on: Option<Box<str>>,
    #[serde(default)]
    pub last_used_on: Option<Box<str>>,
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
    pub resources: OrderedMap<RawResourceValue>,
}

/// A `resources` value: `"*"`, or a nested map of zone keys to `"*"`.
#[derive(Debug, Clone)]
pub enum RawResourceValue {
    Text(String),
    Nested(OrderedMap<String>),
}

impl<'de> Deserialize<'de> for RawResourceValue {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ValueVisitor;
        impl<'de> serde::de::Visitor<'de> for ValueVisitor {
            type Value = RawResourceValue;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("\"*\" or a map of zone keys to \"*\"")
            }
            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<RawResourceValue, E> {
                Ok(RawResourceValue::Text(text.to_string()))
            }
            fn visit_string<E: serde::de::Error>(
                self,
                text: String,
            ) -> Result<RawResourceValue, E> {
                Ok(RawResourceValue::Text(text))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<RawResourceValue, A::Error> {
                OrderedMap::from_map(map).map(RawResourceValue::Nested)
            }
        }
        // Not `#[serde(untagged)]`: that buffers every value and tries each form in turn.
        deserializer.deserialize_any(ValueVisitor)
    }
}

/// A map with string keys, kept as a list in document order; a key given twice is an error. Lighter than
/// a `BTreeMap` for the one- or two-entry maps of token policies, of which a config may hold millions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OrderedMap<V>(pub Vec<(String, V)>);

impl<V> OrderedMap<V> {
    pub fn new() -> Self {
        Self(Vec::new())
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The entries, in document order.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &V)> {
        self.0.iter().map(|(key, value)| (key, value))
    }

    pub fn keys(&self) -> impl Iterator<Item = &String> {
        self.0.iter().map(|(key, _)| key)
    }

    /// Sets `key` to `value`, replacing an earlier value of the same key.
    pub fn insert(&mut self, key: String, value: V) {
        match self.0.iter_mut().find(|(known, _)| *known == key) {
            Some(entry) => entry.1 = value,
            None => self.0.push((key, value)),
        }
    }

    fn from_map<'de, A>(mut map: A) -> Result<Self, A::Error>
    where
        A: serde::de::MapAccess<'de>,
        V: Deserialize<'de>,
    {
        let mut entries: Vec<(String, V)> = Vec::with_capacity(map.size_hint().unwrap_or(1));
        while let Some(key) = map.next_key::<String>()? {
            if entries.iter().any(|(known, _)| *known == key) {
                return Err(serde::de::Error::custom(format!(
                    "the key {key:?} is given twice"
                )));
            }
            let value = map.next_value::<V>()?;
            entries.push((key, value));
        }
        Ok(Self(entries))
    }
}

impl<'a, V> IntoIterator for &'a OrderedMap<V> {
    type Item = (&'a String, &'a V);
    type IntoIter = std::iter::Map<
        std::slice::Iter<'a, (String, V)>,
        fn(&'a (String, V)) -> (&'a String, &'a V),
    >;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter().map(|(key, value)| (key, value))
    }
}

impl<'de, V: Deserialize<'de>> Deserialize<'de> for OrderedMap<V> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MapVisitor<V>(std::marker::PhantomData<V>);
        impl<'de, V: Deserialize<'de>> serde::de::Visitor<'de> for MapVisitor<V> {
            type Value = OrderedMap<V>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a map")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<OrderedMap<V>, A::Error> {
                OrderedMap::from_map(map)
            }
        }
        deserializer.deserialize_map(MapVisitor(std::marker::PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SourceFile;

    fn token_policy(json: &str) -> Result<RawTokenPolicy, String> {
        serde_json::from_str(json).map_err(|error| error.to_string())
    }

    #[test]
    fn resources_keep_document_order_and_both_value_forms() {
        let policy = token_policy(
            r#"{"effect": "allow", "permission_groups": [{"id": "g"}], "resources": {
                "ns.account.b": {"ns.account.zone.z2": "*", "ns.account.zone.z1": "*"},
                "ns.account.a": "*"}}"#,
        )
        .unwrap();
        let keys: Vec<&str> = policy.resources.keys().map(String::as_str).collect();
        assert_eq!(keys, ["ns.account.b", "ns.account.a"]);
        let Some((_, RawResourceValue::Nested(zones))) = policy.resources.iter().next() else {
            panic!("the first value is a nested map");
        };
        let zone_keys: Vec<&str> = zones.keys().map(String::as_str).collect();
        assert_eq!(zone_keys, ["ns.account.zone.z2", "ns.account.zone.z1"]);
        assert!(matches!(
            policy.resources.iter().nth(1),
            Some((_, RawResourceValue::Text(star))) if star == "*"
        ));
    }

    #[test]
    fn a_resource_key_given_twice_is_an_error_not_a_silent_overwrite() {
        let error = token_policy(
            r#"{"effect": "allow", "permission_groups": [{"id": "g"}], "resources": {
                "ns.account.a": {"ns.account.zone.z1": "*"}, "ns.account.a": "*"}}"#,
        )
        .unwrap_err();
        assert!(error.contains("\"ns.account.a\" is given twice"), "{error}");
        let nested = token_policy(
            r#"{"effect": "allow", "permission_groups": [{"id": "g"}], "resources": {
                "ns.account.a": {"ns.account.zone.z1": "*", "ns.account.zone.z1": "*"}}}"#,
        )
        .unwrap_err();
        assert!(nested.contains("given twice"), "{nested}");
    }

    #[test]
    fn a_resource_value_of_the_wrong_shape_names_what_is_expected() {
        let error = token_policy(
            r#"{"effect": "allow", "permission_groups": [{"id": "g"}], "resources": {"ns.account.a": 7}}"#,
        )
        .unwrap_err();
        assert!(error.contains("map of zone keys"), "{error}");
    }

    #[test]
    fn yaml_resources_parse_like_json() {
        let source = SourceFile::from_text(
            "t.yaml",
            "effect: allow\npermission_groups: [{id: g}]\nresources:\n  ns.account.a:\n    ns.account.zone.*: '*'\n  ns.user.u: '*'\n",
        );
        let policy: RawTokenPolicy = source.parse().unwrap();
        assert_eq!(policy.resources.len(), 2);
        assert!(matches!(
            policy.resources.iter().next(),
            Some((key, RawResourceValue::Nested(zones))) if key == "ns.account.a" && zones.len() == 1
        ));
    }

    #[test]
    fn the_first_pass_counts_tokens_without_reading_them() {
        let file: RawPolicyFile<SkippedList> =
            serde_json::from_str(r#"{"users": [], "tokens": [{"any": "shape"}, 1, [2]]}"#).unwrap();
        assert_eq!(file.tokens.items, 3);
        let error = serde_json::from_str::<RawPolicyFile<SkippedList>>(r#"{"tokens": {"a": 1}}"#)
            .unwrap_err()
            .to_string();
        assert!(error.contains("sequence"), "{error}");
    }
}
