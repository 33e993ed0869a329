//! Indexes from an entity id (account, zone) to its compiled entry, keyed by the id's bytes held inline.
//!
//! A `HashMap<Box<str>, _>` hashes the id and then follows the key's pointer to compare it: one more cache
//! miss per lookup once the index outgrows the cache. Here ids of up to [`INLINE_ID_LEN`] bytes (Cloudflare's
//! are 32 hex digits) are stored in the table itself, so a lookup is a hash of the bytes and one compare in
//! the bucket it lands on; longer ids fall back to a map of boxed strings. Pure: no I/O.

use rustc_hash::FxHashMap;

/// The longest id stored inline.
pub const INLINE_ID_LEN: usize = 32;

/// An id of at most [`INLINE_ID_LEN`] bytes, zero-padded, with its length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct InlineId {
    bytes: [u8; INLINE_ID_LEN],
    len: u8,
}

impl InlineId {
    /// The inline form of `id`, or `None` when it is too long.
    #[inline]
    fn new(id: &str) -> Option<Self> {
        let len = u8::try_from(id.len())
            .ok()
            .filter(|len| usize::from(*len) <= INLINE_ID_LEN)?;
        let mut bytes = [0u8; INLINE_ID_LEN];
        bytes.get_mut(..id.len())?.copy_from_slice(id.as_bytes());
        Some(Self { bytes, len })
    }

    /// The id as text (`None` never happens: the bytes were copied from a `&str`).
    #[inline]
    fn as_str(&self) -> Option<&str> {
        std::str::from_utf8(self.bytes.get(..usize::from(self.len))?).ok()
    }
}

/// A map from id to `V`.
#[derive(Debug, Clone)]
pub struct IdIndex<V> {
    inline: FxHashMap<InlineId, V>,
    long: FxHashMap<Box<str>, V>,
}

impl<V> Default for IdIndex<V> {
    fn default() -> Self {
        Self {
            inline: FxHashMap::default(),
            long: FxHashMap::default(),
        }
    }
}

impl<V> IdIndex<V> {
    /// The entry of `id`.
    #[inline]
    pub fn get(&self, id: &str) -> Option<&V> {
        match InlineId::new(id) {
            Some(key) => self.inline.get(&key),
            None => self.long.get(id),
        }
    }

    /// The entry of `id`, with the id as stored in the index (borrowed from it, not from `id`).
    #[inline]
    pub fn get_with_stored_id(&self, id: &str) -> Option<(&str, &V)> {
        match InlineId::new(id) {
            Some(key) => {
                let (stored, value) = self.inline.get_key_value(&key)?;
                Some((stored.as_str()?, value))
            }
            None => self
                .long
                .get_key_value(id)
                .map(|(stored, value)| (&**stored, value)),
        }
    }

    /// Whether `id` has an entry.
    pub fn contains_key(&self, id: &str) -> bool {
        self.get(id).is_some()
    }

    /// Room for `additional` more ids (of the inline kind, which every id of up to the inline length is).
    pub fn reserve(&mut self, additional: usize) {
        self.inline.reserve(additional);
    }

    /// Sets the entry of `id`, returning the previous one.
    pub fn insert(&mut self, id: &str, value: V) -> Option<V> {
        match InlineId::new(id) {
            Some(key) => self.inline.insert(key, value),
            None => self.long.insert(id.into(), value),
        }
    }

    /// How many ids have an entry.
    pub fn len(&self) -> usize {
        self.inline.len() + self.long.len()
    }

    /// Whether no id has an entry.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_and_long_ids_are_found_and_told_apart() {
        let mut index = IdIndex::default();
        let exact = "a".repeat(INLINE_ID_LEN);
        let longer = "a".repeat(INLINE_ID_LEN + 1);
        assert_eq!(index.insert("", 0), None);
        assert_eq!(index.insert("z1", 1), None);
        assert_eq!(index.insert(&exact, 2), None);
        assert_eq!(index.insert(&longer, 3), None);
        assert_eq!(index.insert("z1", 4), Some(1), "same id replaces");
        assert_eq!(index.len(), 4);
        assert_eq!(index.get(""), Some(&0));
        assert_eq!(index.get("z1"), Some(&4));
        assert_eq!(index.get(&exact), Some(&2));
        assert_eq!(index.get(&longer), Some(&3));
        // A prefix, an id padded with the padding byte, a case change: all different ids.
        assert_eq!(index.get("z"), None);
        assert_eq!(index.get("z1\0"), None);
        assert_eq!(index.get("Z1"), None);
        assert_eq!(index.get(&"a".repeat(INLINE_ID_LEN - 1)), None);
        assert_eq!(index.get(&"a".repeat(INLINE_ID_LEN + 2)), None);
        assert!(index.contains_key("z1") && !index.contains_key("z2"));
        assert_eq!(index.get_with_stored_id("z1"), Some(("z1", &4)));
        assert_eq!(index.get_with_stored_id(&longer), Some((&*longer, &3)));
        assert_eq!(index.get_with_stored_id("z2"), None);
    }
}
