//! The policy files as written: a serde mirror of SPEC §2.2–§2.4 and §3.1–§3.2 (unknown fields are errors).
//!
//! Each policy file may hold any of `permission_groups`, `users`, `accounts` and `tokens`; the files of one
//! config are merged. Both of Cloudflare's spellings load verbatim: the Bach form of member policies
//! (`access`, `resource_groups`, inline groups with `meta` and `permissions: [{key}]`) and the API-token form
//! (`effect`, `resources`).

use std::collections::BTreeMap;

use serde::Deserialize;

pub use super::de::{FromText, OrderedMap, Str};

/// One policy file. A load reads it in two passes: first with its tokens skipped (`RawPolicyFile<SkippedList>`),
/// to compile what tokens refer to, then for its tokens alone ([`RawTokenList`]), compiled a file at a time.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPolicyFile<Tokens = Vec<RawToken>> {
    /// Resource types beyond account, zone and user (an R2 bucket, a Worker script).
    #[serde(default)]
    pub resource_types: Vec<RawResourceType>,
    #[serde(default)]
    pub permission_groups: Vec<RawGroup>,
    #[serde(default)]
    pub users: Vec<RawUser>,
    #[serde(default)]
    pub accounts: Vec<RawAccount>,
    #[serde(default)]
    pub tokens: Tokens,
}

impl<Tokens> RawPolicyFile<Tokens> {
    /// Whether the file defines anything besides tokens (permission groups, users or accounts).
    pub fn has_entities(&self) -> bool {
        !(self.resource_types.is_empty()
            && self.permission_groups.is_empty()
            && self.users.is_empty()
            && self.accounts.is_empty())
    }
}

/// The tokens of a policy file, everything else in it skipped (checked by the first pass).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(bound(deserialize = "S: FromText<'de>"))]
pub struct RawTokenList<S = String> {
    #[serde(default)]
    pub tokens: Vec<RawToken<S>>,
}

/// Reads a policy file as [`RawTokenList`] does, but hands each token to `each` as soon as it is parsed
/// instead of collecting them: a file's raw tokens never exist all at once, and each is compiled while its
/// text and parse are still in the cache. Gives whether the file held its tokens and nothing else (a map
/// with no other key).
pub struct TokenStream<F> {
    pub each: F,
}

impl<'de, F: FnMut(RawToken<Str<'de>>)> serde::de::DeserializeSeed<'de> for TokenStream<F> {
    type Value = bool;

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<bool, D::Error> {
        struct FileVisitor<F>(F);
        impl<'de, F: FnMut(RawToken<Str<'de>>)> serde::de::Visitor<'de> for FileVisitor<F> {
            type Value = bool;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("struct RawTokenList")
            }
            // A struct may also be written as the list of its fields' values, as the derived
            // `Deserialize` of `RawTokenList` allows.
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<bool, A::Error> {
                let mut each = self.0;
                seq.next_element_seed(EachToken(&mut each))?;
                Ok(false)
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<bool, A::Error> {
                let mut each = self.0;
                let mut seen = false;
                let mut only_tokens = true;
                while let Some(key) = map.next_key::<Str<'de>>()? {
                    if &*key != "tokens" {
                        only_tokens = false;
                        map.next_value::<serde::de::IgnoredAny>()?;
                    } else if seen {
                        return Err(serde::de::Error::duplicate_field("tokens"));
                    } else {
                        seen = true;
                        map.next_value_seed(EachToken(&mut each))?;
                    }
                }
                Ok(only_tokens)
            }
        }
        deserializer.deserialize_struct("RawTokenList", &["tokens"], FileVisitor(self.each))
    }
}

/// The `tokens` list of a [`TokenStream`], each item handed on.
struct EachToken<'f, F>(&'f mut F);

impl<'de, F: FnMut(RawToken<Str<'de>>)> serde::de::DeserializeSeed<'de> for EachToken<'_, F> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        struct ListVisitor<'f, F>(&'f mut F);
        impl<'de, F: FnMut(RawToken<Str<'de>>)> serde::de::Visitor<'de> for ListVisitor<'_, F> {
            type Value = ();
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a sequence")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
                while let Some(token) = seq.next_element::<RawToken<Str<'de>>>()? {
                    (self.0)(token);
                }
                Ok(())
            }
        }
        // Asked for as `Vec` asks.
        deserializer.deserialize_seq(ListVisitor(self.0))
    }
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
///
/// `S` is the type of its `id` and `name`: `String` in the catalog and member policies, [`Str`] (borrowed
/// from the file's text where it can be) in token policies.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, bound(deserialize = "S: Deserialize<'de>"))]
pub struct RawGroup<S = String> {
    #[serde(default)]
    pub id: Option<S>,
    #[serde(default)]
    pub name: Option<S>,
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

/// A resource type: `{name: r2_bucket, key: "com.cloudflare.edge.r2.bucket.{account}_default_{name}",
/// parent: account}`. The key form is a literal prefix ending in a dot, the parent's id (`{account}` or
/// `{zone}`, as `parent` says), a literal separator, and `{name}` at the end.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawResourceType {
    pub name: String,
    pub key: String,
    pub parent: RawParent,
    #[serde(default)]
    pub description: Option<String>,
}

/// What a resource type's parent is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RawParent {
    Account,
    Zone,
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
    /// User groups: their members inherit their policies.
    #[serde(default)]
    pub user_groups: Vec<RawUserGroup>,
}

/// A user group of an account: members (user ids, each a member of the account) and Bach policies.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUserGroup {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub members: Vec<String>,
    #[serde(default)]
    pub policies: Vec<RawBachPolicy>,
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

/// An API token. `S` is the type of its strings: `String`, or [`Str`] when a load parses and compiles a
/// file's tokens one at a time and borrows them from the file's text.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, bound(deserialize = "S: FromText<'de>"))]
pub struct RawToken<S = String> {
    pub id: S,
    #[serde(default)]
    pub name: Option<S>,
    pub owner: RawOwner<S>,
    pub secret_sha256: S,
    #[serde(default)]
    pub status: Option<TokenStatus>,
    #[serde(default)]
    pub not_before: Option<S>,
    #[serde(default)]
    pub expires_on: Option<S>,
    #[serde(default)]
    pub condition: Option<RawCondition>,
    pub policies: Vec<RawTokenPolicy<S>>,
    /// Labels Cloudflare's API returns with a token; kept so a pasted token loads.
    #[serde(default)]
    pub issued_on: Option<S>,
    #[serde(default)]
    pub modified_on: Option<S>,
    #[serde(default)]
    pub last_used_on: Option<S>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, bound(deserialize = "S: Deserialize<'de>"))]
pub struct RawOwner<S = String> {
    #[serde(default)]
    pub user: Option<S>,
    #[serde(default)]
    pub account: Option<S>,
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
#[serde(deny_unknown_fields, bound(deserialize = "S: FromText<'de>"))]
pub struct RawTokenPolicy<S = String> {
    #[serde(default)]
    pub id: Option<S>,
    pub effect: Effect,
    pub permission_groups: Vec<RawGroup<S>>,
    pub resources: OrderedMap<RawResourceValue<S>, S>,
}

/// A `resources` value: `"*"`, or a nested map of zone keys to `"*"`.
#[derive(Debug, Clone)]
pub enum RawResourceValue<S = String> {
    Text(S),
    Nested(OrderedMap<S, S>),
}

impl<'de, S: FromText<'de>> Deserialize<'de> for RawResourceValue<S> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ValueVisitor<S>(std::marker::PhantomData<S>);
        impl<'de, S: FromText<'de>> serde::de::Visitor<'de> for ValueVisitor<S> {
            type Value = RawResourceValue<S>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("\"*\" or a map of zone keys to \"*\"")
            }
            fn visit_borrowed_str<E: serde::de::Error>(
                self,
                text: &'de str,
            ) -> Result<RawResourceValue<S>, E> {
                Ok(RawResourceValue::Text(S::borrowed(text)))
            }
            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<RawResourceValue<S>, E> {
                Ok(RawResourceValue::Text(S::owned(text.to_string())))
            }
            fn visit_string<E: serde::de::Error>(
                self,
                text: String,
            ) -> Result<RawResourceValue<S>, E> {
                Ok(RawResourceValue::Text(S::owned(text)))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<RawResourceValue<S>, A::Error> {
                OrderedMap::from_map(map).map(RawResourceValue::Nested)
            }
        }
        // Not `#[serde(untagged)]`: that buffers every value and tries each form in turn.
        deserializer.deserialize_any(ValueVisitor(std::marker::PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

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

    /// The ids a [`TokenStream`] handed on (with whether each was borrowed), and what it gave.
    fn streamed(json: &str) -> (Vec<(String, bool)>, Result<bool, String>) {
        use serde::de::DeserializeSeed;
        let mut ids = Vec::new();
        let mut deserializer = serde_json::Deserializer::from_str(json);
        let result = TokenStream {
            each: |token: RawToken<Str<'_>>| {
                ids.push((token.id.to_string(), matches!(token.id.0, Cow::Borrowed(_))));
            },
        }
        .deserialize(&mut deserializer)
        .map_err(|error| error.to_string());
        (ids, result)
    }

    #[test]
    fn a_token_stream_hands_on_each_token_in_order_borrowing_its_strings() {
        let token = |id: &str| {
            format!(
                r#"{{"id": "{id}", "owner": {{"user": "u"}}, "secret_sha256": "00", "policies": []}}"#
            )
        };
        let (ids, result) = streamed(&format!(
            r#"{{"tokens": [{}, {}]}}"#,
            token("t1"),
            token("t\\u0032")
        ));
        assert_eq!(result, Ok(true));
        // An escaped string cannot be a slice of the text: it is owned.
        assert_eq!(ids, [("t1".to_string(), true), ("t2".to_string(), false)]);
        let (ids, result) = streamed(&format!(r#"{{"users": [1], "tokens": [{}]}}"#, token("t1")));
        assert_eq!(
            (ids.len(), result),
            (1, Ok(false)),
            "other keys are skipped, and said"
        );
        let (_, result) = streamed(r#"{"tokens": [], "tokens": []}"#);
        assert!(result.unwrap_err().contains("duplicate field `tokens`"));
        let (ids, result) = streamed(&format!(r#"{{"tokens": [{}, {{"id": 7}}]}}"#, token("t1")));
        assert_eq!(ids.len(), 1);
        assert!(result.unwrap_err().contains("expected a string"));
        let (ids, result) = streamed("{}");
        assert_eq!((ids.len(), result), (0, Ok(true)));
    }

    #[test]
    fn borrowed_and_owned_token_strings_parse_alike() {
        let json = r#"{"id": "t", "owner": {"account": "a"}, "secret_sha256": "00", "policies": [
            {"effect": "deny", "permission_groups": [{"id": "g"}, {"name": "n"}],
             "resources": {"ns.account.a": {"ns.account.zone.z": "*"}, "ns.account.b": "*"}}]}"#;
        let owned: RawToken = serde_json::from_str(json).unwrap();
        let borrowed: RawToken<Str<'_>> = serde_json::from_str(json).unwrap();
        assert_eq!(owned.policies.len(), borrowed.policies.len());
        assert!(matches!(borrowed.id.0, Cow::Borrowed("t")));
        let policy = &borrowed.policies[0];
        assert_eq!(&*policy.permission_groups[1].name.clone().unwrap(), "n");
        let keys: Vec<&str> = policy.resources.keys().map(|key| &**key).collect();
        assert_eq!(keys, ["ns.account.a", "ns.account.b"]);
        assert!(matches!(
            policy.resources.iter().next(),
            Some((_, RawResourceValue::Nested(zones))) if zones.keys().all(|key| *key == "ns.account.zone.z")
        ));
        let wrong: Result<RawToken<Str<'_>>, _> = serde_json::from_str(r#"{"id": 1}"#);
        let wrong_owned: Result<RawToken, _> = serde_json::from_str(r#"{"id": 1}"#);
        assert_eq!(
            wrong.unwrap_err().to_string(),
            wrong_owned.unwrap_err().to_string()
        );
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
