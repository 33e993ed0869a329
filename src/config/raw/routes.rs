//! The raw serde mirror of a route file (`routes/*.yaml`), exactly as written; unknown fields are errors.
//!
//! Nothing here is validated beyond its shape: [`crate::config::compile::routes::compile`] checks the meaning and
//! reports every problem with its place. No I/O.
//!
//! The same types serialize a route as the OpenAPI importer writes it (one route per line, in YAML flow style,
//! every string double-quoted): the importer and the loader share one definition of a route.

use std::fmt;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{SerializeMap, SerializeSeq, Serializer};
use serde::{Deserialize, Serialize};
use serde_saphyr::{DoubleQuoted, FlowMap, FlowSeq};

use crate::routes::{CredentialKind, Handler};

/// A whole route file: `routes: [...]` (an empty list is fine).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRouteFile {
    pub routes: Vec<RawRoute>,
}

/// One entry of `routes`. Serialized in the order the importer writes the fields, strings double-quoted.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    /// A label for metrics and logs; defaults to the path pattern.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "quoted_option"
    )]
    pub id: Option<String>,
    /// One method, a list, or `"*"`.
    pub method: RawMethods,
    /// A matchit pattern: `{param}` for one segment, `{*rest}` for the rest of the path.
    #[serde(serialize_with = "quoted")]
    pub path: String,
    /// No credential at all.
    #[serde(default, skip_serializing_if = "is_false")]
    pub public: bool,
    /// The permission keys the route requires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permissions: Option<RawPermissions>,
    /// The resource the request targets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<RawScope>,
    /// The gateway answers this route itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handler: Option<Handler>,
    /// Path parameters that may hold an encoded slash (`%2F`): kept as received, never decoded, never a
    /// resource id (a Workers KV key name).
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        serialize_with = "quoted_list"
    )]
    pub opaque: Vec<String>,
    /// The kinds of credential that may call the route (`user_token`, `account_token`, `api_key`); absent:
    /// all of them.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "quoted_kinds"
    )]
    pub principals: Option<Vec<CredentialKind>>,
    /// The answer to a credential of a kind `principals` leaves out; absent: 403/10000 with the reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal_refusal: Option<RawRefusal>,
}

/// A route's own answer: `{ status: 400, code: 1001, message: "…" }`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRefusal {
    pub status: u16,
    pub code: u32,
    pub message: String,
}

/// `{status: 400, code: 1001, message: "…"}`.
impl Serialize for RawRefusal {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        struct Fields<'a>(&'a RawRefusal);
        impl Serialize for Fields<'_> {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                let mut map = serializer.serialize_map(Some(3))?;
                map.serialize_entry("status", &self.0.status)?;
                map.serialize_entry("code", &self.0.code)?;
                map.serialize_entry("message", &DoubleQuoted(&self.0.message))?;
                map.end()
            }
        }
        FlowMap(Fields(self)).serialize(serializer)
    }
}

/// `method: GET` or `method: [GET, HEAD]` (`"*"` is any method).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RawMethods {
    One(String),
    List(Vec<String>),
}

/// `permissions: [a, b]` (all of them), `{ all_of: [...] }` or `{ any_of: [...] }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RawPermissions {
    /// The plain list: every key is required.
    List(Vec<String>),
    AllOf(Vec<String>),
    AnyOf(Vec<String>),
}

/// `scope: user | any | none`, `scope: { zone: <param> }` / `{ account: <param> }`, or a child resource of a
/// declared type: `{ account: <param>, r2_bucket: <param> }` (the parent's parameter, and the child's name
/// parameter under the type's name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RawScope {
    User,
    Any,
    None,
    Zone(String),
    Account(String),
    Child {
        /// The resource type's name (`r2_bucket`).
        kind: String,
        /// The parameter holding the child's name.
        param: String,
        /// `account` or `zone`.
        parent: RawScopeParent,
        /// The parameter holding the parent's id.
        parent_param: String,
    },
}

/// The parent named in a child scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RawScopeParent {
    Account,
    Zone,
}

// === impl RawScope ===

impl<'de> Deserialize<'de> for RawScope {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ScopeVisitor;

        impl<'de> Visitor<'de> for ScopeVisitor {
            type Value = RawScope;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    "user, any, none, {zone: <param>}, {account: <param>} or {account: <param>, <type>: <param>}",
                )
            }

            fn visit_str<E: de::Error>(self, value: &str) -> Result<Self::Value, E> {
                match value {
                    "user" => Ok(RawScope::User),
                    "any" => Ok(RawScope::Any),
                    "none" => Ok(RawScope::None),
                    other => Err(E::unknown_variant(
                        other,
                        &["user", "any", "none", "zone", "account"],
                    )),
                }
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut entries: Vec<(String, String)> = Vec::new();
                while let Some((key, value)) = map.next_entry::<String, String>()? {
                    if entries.iter().any(|(seen, _)| *seen == key) {
                        return Err(de::Error::custom(format_args!("duplicate field `{key}`")));
                    }
                    entries.push((key, value));
                }
                let parent = |entries: &[(String, String)]| {
                    entries.iter().find_map(|(key, value)| match key.as_str() {
                        "account" => Some((RawScopeParent::Account, value.clone())),
                        "zone" => Some((RawScopeParent::Zone, value.clone())),
                        _ => None,
                    })
                };
                match entries.as_slice() {
                    [(key, param)] if key == "zone" => Ok(RawScope::Zone(param.clone())),
                    [(key, param)] if key == "account" => Ok(RawScope::Account(param.clone())),
                    [(key, _)] => Err(de::Error::custom(format_args!(
                        "unknown scope `{key}`: a scope map is {{zone: <param>}}, {{account: <param>}} or {{account: <param>, <type>: <param>}}"
                    ))),
                    [_, _] => {
                        let Some((parent, parent_param)) = parent(&entries) else {
                            return Err(de::Error::custom(
                                "a child resource's scope names its parent: {account: <param>, <type>: <param>} or {zone: <param>, <type>: <param>}",
                            ));
                        };
                        let parent_word = match parent {
                            RawScopeParent::Account => "account",
                            RawScopeParent::Zone => "zone",
                        };
                        let Some((kind, param)) =
                            entries.iter().find(|(key, _)| key != parent_word)
                        else {
                            return Err(de::Error::custom(
                                "a scope names `account` or `zone` once",
                            ));
                        };
                        if matches!(kind.as_str(), "account" | "zone") {
                            return Err(de::Error::custom(
                                "a scope is an account or a zone, not both",
                            ));
                        }
                        Ok(RawScope::Child {
                            kind: kind.clone(),
                            param: param.clone(),
                            parent,
                            parent_param,
                        })
                    }
                    _ => Err(de::Error::custom(
                        "a scope map is {zone: <param>}, {account: <param>} or {account: <param>, <type>: <param>}",
                    )),
                }
            }
        }

        deserializer.deserialize_any(ScopeVisitor)
    }
}

// === impl RawMethods ===

impl<'de> Deserialize<'de> for RawMethods {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MethodsVisitor;

        impl<'de> Visitor<'de> for MethodsVisitor {
            type Value = RawMethods;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a method (GET), a list of methods ([GET, HEAD]) or \"*\"")
            }

            fn visit_str<E: de::Error>(self, value: &str) -> Result<Self::Value, E> {
                Ok(RawMethods::One(value.to_string()))
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut methods = Vec::new();
                while let Some(method) = seq.next_element::<String>()? {
                    methods.push(method);
                }
                Ok(RawMethods::List(methods))
            }
        }

        deserializer.deserialize_any(MethodsVisitor)
    }
}

// === impl RawPermissions ===

impl RawPermissions {
    /// Every key required, in the shortest spelling: the plain list for one key, `all_of` for more.
    pub fn all_of(keys: Vec<String>) -> Self {
        if keys.len() == 1 {
            Self::List(keys)
        } else {
            Self::AllOf(keys)
        }
    }

    /// The keys, whichever spelling was used.
    pub fn keys(&self) -> &[String] {
        match self {
            Self::List(keys) | Self::AllOf(keys) | Self::AnyOf(keys) => keys,
        }
    }

    /// The document path of the key list below `permissions` (`""`, `.all_of` or `.any_of`).
    pub fn list_path(&self) -> &'static str {
        match self {
            Self::List(_) => "",
            Self::AllOf(_) => ".all_of",
            Self::AnyOf(_) => ".any_of",
        }
    }
}

impl<'de> Deserialize<'de> for RawPermissions {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct PermissionsVisitor;

        const FIELDS: &[&str] = &["all_of", "any_of"];

        impl<'de> Visitor<'de> for PermissionsVisitor {
            type Value = RawPermissions;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of permission keys, { all_of: [...] } or { any_of: [...] }")
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut keys = Vec::new();
                while let Some(key) = seq.next_element::<String>()? {
                    keys.push(key);
                }
                Ok(RawPermissions::List(keys))
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut found: Option<RawPermissions> = None;
                while let Some(field) = map.next_key::<String>()? {
                    let keys = match field.as_str() {
                        "all_of" | "any_of" => map.next_value::<Vec<String>>()?,
                        other => return Err(de::Error::unknown_field(other, FIELDS)),
                    };
                    if found.is_some() {
                        return Err(de::Error::custom(
                            "permissions take all_of or any_of, not both (nest no further: one list per route)",
                        ));
                    }
                    found = Some(if field == "all_of" {
                        RawPermissions::AllOf(keys)
                    } else {
                        RawPermissions::AnyOf(keys)
                    });
                }
                found.ok_or_else(|| de::Error::custom("permissions map needs all_of or any_of"))
            }
        }

        deserializer.deserialize_any(PermissionsVisitor)
    }
}

/// `["a"]`, `{all_of: ["a", "b"]}` or `{any_of: ["a", "b"]}`.
impl Serialize for RawPermissions {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let keys = QuotedList(self.keys());
        match self {
            Self::List(_) => keys.serialize(serializer),
            Self::AllOf(_) => FlowMap(OneEntry("all_of", keys)).serialize(serializer),
            Self::AnyOf(_) => FlowMap(OneEntry("any_of", keys)).serialize(serializer),
        }
    }
}

// === impl RawMethods ===

/// `GET`, or `[GET, HEAD]`.
impl Serialize for RawMethods {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::One(method) => serializer.serialize_str(method),
            Self::List(methods) => FlowSeq(methods).serialize(serializer),
        }
    }
}

// === impl RawScope ===

/// `user`, `any`, `none`, `{zone: "zone_id"}` or `{account: "account_id"}`.
impl Serialize for RawScope {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::User => serializer.serialize_str("user"),
            Self::Any => serializer.serialize_str("any"),
            Self::None => serializer.serialize_str("none"),
            Self::Zone(param) => {
                FlowMap(OneEntry("zone", DoubleQuoted(param))).serialize(serializer)
            }
            Self::Account(param) => {
                FlowMap(OneEntry("account", DoubleQuoted(param))).serialize(serializer)
            }
            Self::Child {
                kind,
                param,
                parent,
                parent_param,
            } => FlowMap(ChildEntries {
                parent: match parent {
                    RawScopeParent::Account => "account",
                    RawScopeParent::Zone => "zone",
                },
                parent_param,
                kind,
                param,
            })
            .serialize(serializer),
        }
    }
}

/// `{account: "…", r2_bucket: "…"}`: a child scope, its parent first.
struct ChildEntries<'a> {
    parent: &'static str,
    parent_param: &'a str,
    kind: &'a str,
    param: &'a str,
}

impl Serialize for ChildEntries<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(2))?;
        map.serialize_entry(self.parent, &DoubleQuoted(self.parent_param))?;
        map.serialize_entry(self.kind, &DoubleQuoted(self.param))?;
        map.end()
    }
}

/// A map of one entry.
struct OneEntry<V>(&'static str, V);

impl<V: Serialize> Serialize for OneEntry<V> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(1))?;
        map.serialize_entry(self.0, &self.1)?;
        map.end()
    }
}

/// A flow list of double-quoted strings: `["a", "b"]`.
struct QuotedList<'a, T>(&'a [T]);

impl<T: AsRef<str>> Serialize for QuotedList<'_, T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        FlowSeq(QuotedItems(self.0)).serialize(serializer)
    }
}

struct QuotedItems<'a, T>(&'a [T]);

impl<T: AsRef<str>> Serialize for QuotedItems<'_, T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(self.0.len()))?;
        for item in self.0 {
            seq.serialize_element(&DoubleQuoted(item.as_ref()))?;
        }
        seq.end()
    }
}

fn quoted<S: Serializer>(text: &str, serializer: S) -> Result<S::Ok, S::Error> {
    DoubleQuoted(text).serialize(serializer)
}

fn quoted_option<S: Serializer>(text: &Option<String>, serializer: S) -> Result<S::Ok, S::Error> {
    match text {
        Some(text) => quoted(text, serializer),
        None => serializer.serialize_none(),
    }
}

fn quoted_list<S: Serializer>(items: &[String], serializer: S) -> Result<S::Ok, S::Error> {
    QuotedList(items).serialize(serializer)
}

fn quoted_kinds<S: Serializer>(
    kinds: &Option<Vec<CredentialKind>>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match kinds {
        Some(kinds) => {
            let names: Vec<&str> = kinds.iter().map(|kind| kind.as_str()).collect();
            QuotedList(&names).serialize(serializer)
        }
        None => serializer.serialize_none(),
    }
}

fn is_false(value: &bool) -> bool {
    !*value
}
