//! Permission keys: interned ids for the keys routes require, patterns from groups, and key sets as bitsets.
//!
//! Every key a route can require is known when the config is compiled, so each gets a dense [`KeyId`] and a
//! group's patterns are expanded once into a [`KeySet`] over that universe. A decision then tests bits.

use rustc_hash::FxHashMap;

/// A permission key interned in one compiled config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(pub u32);

/// The universe of keys that routes require, each with a dense id.
#[derive(Debug, Default, Clone)]
pub struct KeyInterner {
    ids: FxHashMap<Box<str>, KeyId>,
    names: Vec<Box<str>>,
}

impl KeyInterner {
    /// An empty universe.
    pub fn new() -> Self {
        Self::default()
    }

    /// The id of `key`, adding it when new.
    pub fn intern(&mut self, key: &str) -> KeyId {
        if let Some(id) = self.ids.get(key) {
            return *id;
        }
        let id = KeyId(u32::try_from(self.names.len()).unwrap_or(u32::MAX));
        self.names.push(key.into());
        self.ids.insert(key.into(), id);
        id
    }

    /// The id of `key`, if a route requires it.
    pub fn get(&self, key: &str) -> Option<KeyId> {
        self.ids.get(key).copied()
    }

    /// The text of an interned key.
    pub fn name(&self, id: KeyId) -> &str {
        self.names
            .get(id.0 as usize)
            .map(|name| &**name)
            .unwrap_or("")
    }

    /// How many keys there are.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Whether no route requires any key.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// Every interned key with its id, in id order.
    pub fn iter(&self) -> impl Iterator<Item = (KeyId, &str)> {
        self.names
            .iter()
            .enumerate()
            .map(|(index, name)| (KeyId(index as u32), &**name))
    }

    /// The set of interned keys that `pattern` matches.
    pub fn expand(&self, pattern: &KeyPattern) -> KeySet {
        let mut set = KeySet::empty(self.len());
        match pattern {
            KeyPattern::Exact(key) => {
                if let Some(id) = self.get(key) {
                    set.insert(id);
                }
            }
            _ => {
                for (id, name) in self.iter() {
                    if pattern.matches(name) {
                        set.insert(id);
                    }
                }
            }
        }
        set
    }
}

/// A key pattern from a permission group: an exact key, a prefix ending in `*`, or `*` alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyPattern {
    /// Matches this key only.
    Exact(Box<str>),
    /// Matches every key that starts with this text (the pattern without its trailing `*`).
    Prefix(Box<str>),
    /// The bare `*`: every key.
    All,
}

impl KeyPattern {
    /// Parses a pattern; `*` anywhere but at the end, or an empty key, is an error.
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.is_empty() {
            return Err("empty permission key".to_string());
        }
        if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(format!(
                "permission key {text:?} contains whitespace or a control character"
            ));
        }
        match text.find('*') {
            None => Ok(Self::Exact(text.into())),
            Some(position) if position + 1 == text.len() => {
                if position == 0 {
                    Ok(Self::All)
                } else {
                    Ok(Self::Prefix(text[..position].into()))
                }
            }
            Some(_) => Err(format!(
                "permission key {text:?} has a wildcard that is not at the end (only a trailing `*` is allowed)"
            )),
        }
    }

    /// Whether this pattern matches `key`.
    pub fn matches(&self, key: &str) -> bool {
        match self {
            Self::Exact(exact) => **exact == *key,
            Self::Prefix(prefix) => key.starts_with(&**prefix),
            Self::All => true,
        }
    }
}

/// A set of interned keys, as a bitset over the universe.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct KeySet {
    words: Box<[u64]>,
}

impl KeySet {
    /// The empty set over a universe of `len` keys.
    pub fn empty(len: usize) -> Self {
        Self {
            words: vec![0; len.div_ceil(64)].into_boxed_slice(),
        }
    }

    /// Makes this the empty set over a universe of `len` keys, reusing its memory when it fits.
    pub fn reset(&mut self, len: usize) {
        if self.words.len() == len.div_ceil(64) {
            self.words.fill(0);
        } else {
            *self = Self::empty(len);
        }
    }

    /// Adds a key.
    pub fn insert(&mut self, id: KeyId) {
        let index = id.0 as usize;
        if let Some(word) = self.words.get_mut(index / 64) {
            *word |= 1 << (index % 64);
        }
    }

    /// Whether the set holds `id`.
    #[inline]
    pub fn contains(&self, id: KeyId) -> bool {
        let index = id.0 as usize;
        self.words
            .get(index / 64)
            .is_some_and(|word| word & (1 << (index % 64)) != 0)
    }

    /// The bits of the first 64 keys (bit `i` is `KeyId(i)`).
    pub fn first_word(&self) -> u64 {
        self.words.first().copied().unwrap_or(0)
    }

    /// Adds every key of `other`.
    pub fn union_with(&mut self, other: &KeySet) {
        for (word, other_word) in self.words.iter_mut().zip(other.words.iter()) {
            *word |= *other_word;
        }
    }

    /// Keeps only the keys `other` holds too.
    pub fn intersect_with(&mut self, other: &KeySet) {
        for (index, word) in self.words.iter_mut().enumerate() {
            *word &= other.words.get(index).copied().unwrap_or(0);
        }
    }

    /// The keys of the set, in id order.
    pub fn iter(&self) -> impl Iterator<Item = KeyId> + '_ {
        self.words.iter().enumerate().flat_map(|(index, word)| {
            let mut bits = *word;
            std::iter::from_fn(move || {
                if bits == 0 {
                    return None;
                }
                let bit = bits.trailing_zeros();
                bits &= bits - 1;
                u32::try_from(index * 64).ok().map(|base| KeyId(base + bit))
            })
        })
    }

    /// Whether the set holds no key.
    pub fn is_empty(&self) -> bool {
        self.words.iter().all(|word| *word == 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_parse_and_match() {
        let prefix = KeyPattern::parse("com.cloudflare.api.account.zone.dns-record.*").unwrap();
        assert!(prefix.matches("com.cloudflare.api.account.zone.dns-record.read"));
        assert!(!prefix.matches("com.cloudflare.api.account.zone.read"));
        assert_eq!(KeyPattern::parse("*").unwrap(), KeyPattern::All);
        assert!(
            KeyPattern::parse("#dns_records:*")
                .unwrap()
                .matches("#dns_records:edit")
        );
        assert!(KeyPattern::parse("#dns_*records:read").is_err());
        assert!(KeyPattern::parse("*.read").is_err());
        assert!(KeyPattern::parse("").is_err());
        let exact = KeyPattern::parse("#zone:read").unwrap();
        assert!(!exact.matches("#zone:read2"));
        assert!(!exact.matches("#Zone:read"), "keys are case-sensitive");
    }

    #[test]
    fn expand_sets_exactly_the_matching_bits() {
        let mut keys = KeyInterner::new();
        let read = keys.intern("#dns_records:read");
        let edit = keys.intern("#dns_records:edit");
        let zone = keys.intern("#zone:read");
        assert_eq!(keys.intern("#dns_records:read"), read);
        let set = keys.expand(&KeyPattern::parse("#dns_records:*").unwrap());
        assert!(set.contains(read) && set.contains(edit) && !set.contains(zone));
        let none = keys.expand(&KeyPattern::parse("#unknown:read").unwrap());
        assert!(none.is_empty());
    }
}
