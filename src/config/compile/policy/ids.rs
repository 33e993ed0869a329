//! Ids and document paths: the lazily formatted paths errors name (`tokens[3].policies[1]`), where each
//! id was first defined (for duplicate errors), and the checks every id and email gets.

use std::collections::hash_map::Entry;
use std::fmt;
use std::path::Path;

use rustc_hash::FxHashMap;

use super::output::Output;
use crate::config::error::ErrorKind;

/// A document path (`tokens[3].policies[1]`), formatted only when an error or a warning shows it: compiling
/// a million tokens walks tens of millions of paths, and almost none of them is ever shown.
pub(super) type At<'p> = &'p dyn fmt::Display;

/// `{list}[{index}]`: an item of a file's top-level list.
pub(super) struct Item(pub(super) &'static str, pub(super) usize);

impl fmt::Display for Item {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}[{}]", self.0, self.1)
    }
}

/// `{parent}.{name}` or `{parent}.{name}[{index}]`.
pub(super) struct Sub<'p> {
    pub(super) parent: At<'p>,
    pub(super) name: &'p str,
    pub(super) index: Option<usize>,
}

impl<'p> Sub<'p> {
    pub(super) fn field(parent: At<'p>, name: &'p str) -> Self {
        Self {
            parent,
            name,
            index: None,
        }
    }

    pub(super) fn item(parent: At<'p>, name: &'p str, index: usize) -> Self {
        Self {
            parent,
            name,
            index: Some(index),
        }
    }
}

impl fmt::Display for Sub<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.parent, self.name)?;
        match self.index {
            Some(index) => write!(f, "[{index}]"),
            None => Ok(()),
        }
    }
}

/// Where an id is defined: `{list}[{index}].{field}` or `{list}[{index}].{sub}[{sub_index}].{field}`. Kept
/// for every id (for a later duplicate's error) and formatted only when that error is shown.
#[derive(Debug, Clone, Copy)]
pub(super) struct Site {
    pub(super) list: &'static str,
    pub(super) index: usize,
    pub(super) sub: Option<(&'static str, usize)>,
    pub(super) field: &'static str,
}

impl Site {
    pub(super) fn field(list: &'static str, index: usize, field: &'static str) -> Self {
        Self {
            list,
            index,
            sub: None,
            field,
        }
    }
}

impl fmt::Display for Site {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}[{}]", self.list, self.index)?;
        if let Some((sub, index)) = self.sub {
            write!(f, ".{sub}[{index}]")?;
        }
        write!(f, ".{}", self.field)
    }
}

/// Where each id of a config was first defined, by kind (`"user"`, `"account"`, …), for duplicate errors.
#[derive(Default)]
pub(super) struct FirstSeen<'a>(pub(super) FxHashMap<(&'static str, &'a str), (&'a Path, Site)>);

impl<'a> FirstSeen<'a> {
    pub(super) fn with_capacity(capacity: usize) -> Self {
        let mut map = FxHashMap::default();
        map.reserve(capacity);
        Self(map)
    }

    /// Records the first definition of `(kind, id)`; a second one is an error naming the first.
    pub(super) fn record(
        &mut self,
        out: &mut Output,
        kind: &'static str,
        id: &'a str,
        file: &'a Path,
        site: Site,
    ) -> bool {
        match self.0.entry((kind, id)) {
            Entry::Vacant(slot) => {
                slot.insert((file, site));
                true
            }
            Entry::Occupied(first) => {
                let (first_file, first_site) = first.get();
                let message = format!(
                    "duplicate {kind} {id:?} (first defined at {}: {first_site})",
                    first_file.display()
                );
                out.error(file, site, ErrorKind::Duplicate, message);
                false
            }
        }
    }

    /// Whether `id` is a valid id (see [`check_id`], the error at `site`) defined at `site` for the first
    /// time of its kind (see [`FirstSeen::record`]).
    pub(super) fn new_id(
        &mut self,
        out: &mut Output,
        kind: &'static str,
        id: &'a str,
        file: &'a Path,
        site: Site,
    ) -> bool {
        check_id(out, id, file, &site) && self.record(out, kind, id, file, site)
    }

    /// Whether item `index` of `file` is where `(kind, id)` was first defined.
    pub(super) fn is_first(&self, kind: &'static str, id: &str, file: &Path, index: usize) -> bool {
        self.0
            .get(&(kind, id))
            .is_some_and(|(first_file, site)| *first_file == file && site.index == index)
    }
}

/// Whether `id` is a valid id (no white space, control characters, `/` or `*`); an error at `path` if not.
pub(super) fn check_id(out: &mut Output, id: &str, file: &Path, path: At<'_>) -> bool {
    if id.is_empty() || has_any(id, id_byte_forbidden, id_char_forbidden) {
        out.error(
            file,
            path,
            ErrorKind::InvalidId,
            format!("{id:?} is not a valid id (no spaces, `/` or `*`)"),
        );
        false
    } else {
        true
    }
}

/// White space, control characters, `*` and `/` may not be in an id.
pub(super) fn id_char_forbidden(c: char) -> bool {
    c.is_whitespace() || c.is_control() || c == '*' || c == '/'
}

/// [`id_char_forbidden`] of an ASCII character, by its byte.
pub(super) fn id_byte_forbidden(byte: u8) -> bool {
    byte <= b' ' || byte == 0x7f || byte == b'*' || byte == b'/'
}

/// White space and control characters may not be in an email address.
pub(super) fn email_char_forbidden(c: char) -> bool {
    c.is_whitespace() || c.is_control()
}

/// [`email_char_forbidden`] of an ASCII character, by its byte.
pub(super) fn email_byte_forbidden(byte: u8) -> bool {
    byte <= b' ' || byte == 0x7f
}

/// Whether `text` holds a forbidden character: by `forbidden_byte` a byte at a time when it is ASCII (nearly
/// every id; a config of ten thousand accounts holds hundreds of thousands), by `forbidden_char` otherwise.
/// The two say the same of every ASCII character (a unit test compares them on all 128).
pub(super) fn has_any(
    text: &str,
    forbidden_byte: impl Fn(u8) -> bool,
    forbidden_char: impl Fn(char) -> bool,
) -> bool {
    if text.is_ascii() {
        // No early exit: the compiler turns the whole test into vector instructions.
        text.bytes()
            .fold(false, |found, byte| found | forbidden_byte(byte))
    } else {
        text.chars().any(forbidden_char)
    }
}
