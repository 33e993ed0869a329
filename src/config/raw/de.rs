//! Serde plumbing shared by the raw policy types: strings borrowed from the file's text ([`Str`]), the
//! [`FromText`] trait over the string types of raw tokens, and the order-keeping [`OrderedMap`].

use std::borrow::Cow;

use serde::Deserialize;

/// A string of a token, borrowed from the file's text when the parser can hand out a slice of it (JSON
/// without escapes), owned otherwise. Parsing a million tokens this way allocates no string per id, key or
/// hash; the compiled tokens copy what they keep.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Str<'a>(pub Cow<'a, str>);

impl std::ops::Deref for Str<'_> {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl PartialEq<str> for Str<'_> {
    fn eq(&self, other: &str) -> bool {
        *self.0 == *other
    }
}

impl PartialEq<&str> for Str<'_> {
    fn eq(&self, other: &&str) -> bool {
        *self.0 == **other
    }
}

impl std::fmt::Display for Str<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Str<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct StrVisitor;
        impl<'de> serde::de::Visitor<'de> for StrVisitor {
            type Value = Str<'de>;
            // As `String`'s visitor says, so a wrong value is reported in the same words.
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: serde::de::Error>(
                self,
                text: &'de str,
            ) -> Result<Str<'de>, E> {
                Ok(Str(Cow::Borrowed(text)))
            }
            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Str<'de>, E> {
                Ok(Str(Cow::Owned(text.to_string())))
            }
            fn visit_string<E: serde::de::Error>(self, text: String) -> Result<Str<'de>, E> {
                Ok(Str(Cow::Owned(text)))
            }
            fn visit_bytes<E: serde::de::Error>(self, bytes: &[u8]) -> Result<Str<'de>, E> {
                match std::str::from_utf8(bytes) {
                    Ok(text) => Ok(Str(Cow::Owned(text.to_string()))),
                    Err(_) => Err(E::invalid_value(serde::de::Unexpected::Bytes(bytes), &self)),
                }
            }
            fn visit_byte_buf<E: serde::de::Error>(self, bytes: Vec<u8>) -> Result<Str<'de>, E> {
                match String::from_utf8(bytes) {
                    Ok(text) => Ok(Str(Cow::Owned(text))),
                    Err(error) => Err(E::invalid_value(
                        serde::de::Unexpected::Bytes(&error.into_bytes()),
                        &self,
                    )),
                }
            }
        }
        // `deserialize_string`, as `String` asks: the YAML parser treats the two requests differently.
        deserializer.deserialize_string(StrVisitor)
    }
}

/// The string types of raw tokens ([`String`], [`Str`]): built from text the parser lends or gives.
pub trait FromText<'de>: Deserialize<'de> + std::ops::Deref<Target = str> + Sized {
    fn borrowed(text: &'de str) -> Self;
    fn owned(text: String) -> Self;
}

impl<'de> FromText<'de> for String {
    fn borrowed(text: &'de str) -> Self {
        text.to_string()
    }
    fn owned(text: String) -> Self {
        text
    }
}

impl<'de: 'a, 'a> FromText<'de> for Str<'a> {
    fn borrowed(text: &'de str) -> Self {
        Str(Cow::Borrowed(text))
    }
    fn owned(text: String) -> Self {
        Str(Cow::Owned(text))
    }
}

/// A map with string keys, kept as a list in document order; a key given twice is an error. Lighter than
/// a `BTreeMap` for the one- or two-entry maps of token policies, of which a config may hold millions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OrderedMap<V, K = String>(pub Vec<(K, V)>);

impl<V, K: std::ops::Deref<Target = str>> OrderedMap<V, K> {
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
    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.0.iter().map(|(key, value)| (key, value))
    }

    pub fn keys(&self) -> impl Iterator<Item = &K> {
        self.0.iter().map(|(key, _)| key)
    }

    /// Sets `key` to `value`, replacing an earlier value of the same key.
    pub fn insert(&mut self, key: K, value: V) {
        match self.0.iter_mut().find(|(known, _)| **known == *key) {
            Some(entry) => entry.1 = value,
            None => self.0.push((key, value)),
        }
    }

    pub(super) fn from_map<'de, A>(mut map: A) -> Result<Self, A::Error>
    where
        A: serde::de::MapAccess<'de>,
        V: Deserialize<'de>,
        K: Deserialize<'de>,
    {
        let mut entries: Vec<(K, V)> = Vec::with_capacity(map.size_hint().unwrap_or(1));
        while let Some(key) = map.next_key::<K>()? {
            if entries.iter().any(|(known, _)| **known == *key) {
                let key: &str = &key;
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

impl<'a, V, K> IntoIterator for &'a OrderedMap<V, K> {
    type Item = (&'a K, &'a V);
    type IntoIter = std::iter::Map<std::slice::Iter<'a, (K, V)>, fn(&'a (K, V)) -> (&'a K, &'a V)>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter().map(|(key, value)| (key, value))
    }
}

impl<'de, V: Deserialize<'de>, K: FromText<'de>> Deserialize<'de> for OrderedMap<V, K> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MapVisitor<V, K>(std::marker::PhantomData<(V, K)>);
        impl<'de, V: Deserialize<'de>, K: FromText<'de>> serde::de::Visitor<'de> for MapVisitor<V, K> {
            type Value = OrderedMap<V, K>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a map")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<OrderedMap<V, K>, A::Error> {
                OrderedMap::from_map(map)
            }
        }
        deserializer.deserialize_map(MapVisitor(std::marker::PhantomData))
    }
}
