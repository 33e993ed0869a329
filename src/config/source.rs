//! A config file's text, its parse into raw serde types, and the index that places a document path on a line.
//!
//! Errors are first produced with a document path (`accounts[0].zones[1].id`); the [`LineIndex`] of the
//! file then gives them a line and column. The index is built only when a file has errors, so a large,
//! valid file costs nothing extra.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde_saphyr::granit_parser::{Event, Parser};

use super::error::ConfigError;

/// One config file, read whole.
#[derive(Debug, Clone)]
pub struct SourceFile {
    /// Where it was read from (as given, relative paths resolved by the caller).
    pub path: PathBuf,
    /// Its text.
    pub text: String,
}

impl SourceFile {
    /// Reads a file; unreadable or non-UTF-8 content is an error naming the file.
    pub fn read(path: &Path) -> Result<Self, ConfigError> {
        let bytes = std::fs::read(path)
            .map_err(|error| ConfigError::file(path, format!("cannot read file: {error}")))?;
        let text = String::from_utf8(bytes).map_err(|error| {
            ConfigError::file(
                path,
                format!(
                    "file is not valid UTF-8 (byte {})",
                    error.utf8_error().valid_up_to()
                ),
            )
        })?;
        Ok(Self {
            path: path.to_path_buf(),
            text,
        })
    }

    /// A file from text in memory (tests, the embedded demo).
    pub fn from_text(path: impl Into<PathBuf>, text: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            text: text.into(),
        }
    }

    /// Parses the file (YAML, so JSON too) into raw type `T`; a syntax or shape error names its place.
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T, ConfigError> {
        parse_text::<T>(&self.text, &self.path, 0, "")
    }

    /// After a whole-file parse error: parses each item of the top-level list `key` on its own as a `T`, so
    /// that every broken item is reported, not only the first one the parser met.
    ///
    /// An item's text is cut out of the file by the positions the YAML parser reports (and un-indented for
    /// block items); its errors are shifted back to the file's lines and prefixed with `key[index]`.
    pub fn item_errors<T: DeserializeOwned>(&self, key: &str) -> Vec<ConfigError> {
        let mut errors = Vec::new();
        for (index, (line, column, text)) in list_items(&self.text, key).into_iter().enumerate() {
            if let Err(mut error) =
                parse_text::<T>(&text, &self.path, line - 1, &format!("{key}[{index}]"))
            {
                if error.line == Some(line) {
                    error.column = error.column.map(|c| c + column);
                }
                errors.push(error);
            }
        }
        errors
    }

    /// Fills in line and column of every error of this file that has a path but no line yet.
    pub fn locate(&self, errors: &mut [ConfigError]) {
        let mut index: Option<LineIndex> = None;
        for error in errors.iter_mut() {
            if error.file != self.path || error.line.is_some() || error.path.is_empty() {
                continue;
            }
            let index = index.get_or_insert_with(|| LineIndex::build(&self.text));
            if let Some((line, column)) = index.position_of(&error.path) {
                error.line = Some(line);
                error.column = Some(column);
            }
        }
    }
}

/// Parses `text` as a `T`; errors get `line_offset` added and their path prefixed with `prefix`.
fn parse_text<T: DeserializeOwned>(
    text: &str,
    file: &Path,
    line_offset: u64,
    prefix: &str,
) -> Result<T, ConfigError> {
    serde_saphyr::from_str::<T>(text).map_err(|error| {
        let mut config_error = ConfigError::new(file, prefix, clean_message(&error.to_string()));
        if let Some(location) = error.location() {
            if location.line() > 0 {
                config_error.line = Some(location.line() + line_offset);
                config_error.column = Some(location.column());
                let inner = LineIndex::build(text).path_at(location.line(), location.column());
                config_error.path = match (prefix.is_empty(), inner.is_empty()) {
                    (_, true) => prefix.to_string(),
                    (true, false) => inner,
                    (false, false) => format!("{prefix}.{inner}"),
                };
            }
        }
        config_error
    })
}

/// serde-saphyr's messages start with `error: line N column M:` and can carry a source snippet after the
/// first line; the location is reported separately, so keep only the sentence.
fn clean_message(message: &str) -> String {
    let first = message.lines().next().unwrap_or(message).trim();
    let without_error = first.strip_prefix("error:").map_or(first, str::trim_start);
    match without_error
        .strip_prefix("line ")
        .and_then(|rest| rest.split_once(": "))
    {
        Some((position, rest)) if position.contains("column") => rest.to_string(),
        _ => without_error.to_string(),
    }
}

/// The items of the top-level sequence `key`: each item's 1-based line, 0-based column and its text
/// (un-indented so it parses on its own). Empty when the document is not valid YAML.
fn list_items(text: &str, key: &str) -> Vec<(u64, u64, String)> {
    // (start byte, line, column, end byte) of each item.
    let mut items: Vec<(usize, u64, u64, usize)> = Vec::new();
    let mut depth = 0usize;
    let mut in_list = false;
    let mut expect_key = false;
    for event in Parser::new_from_str(text) {
        let Ok((event, span)) = event else {
            return Vec::new();
        };
        let start = span.start.byte_offset().unwrap_or(0);
        let end = span.end.byte_offset().unwrap_or(start);
        let line = span.start.line() as u64;
        let column = span.start.col() as u64;
        match event {
            Event::MappingStart(..) | Event::SequenceStart(..) => {
                if in_list && depth == 2 {
                    items.push((start, line, column, text.len()));
                }
                if depth == 1 {
                    expect_key = !expect_key;
                }
                depth += 1;
                if depth == 1 {
                    expect_key = true;
                }
            }
            Event::MappingEnd | Event::SequenceEnd => {
                depth = depth.saturating_sub(1);
                if in_list && depth == 2 {
                    if let Some(item) = items.last_mut() {
                        item.3 = end.max(start);
                    }
                } else if in_list && depth == 1 {
                    in_list = false;
                }
            }
            Event::Scalar(value, ..) => {
                if in_list && depth == 2 {
                    items.push((start, line, column, end));
                } else if depth == 1 {
                    if expect_key {
                        in_list = value == key;
                    }
                    expect_key = !expect_key;
                }
            }
            Event::Alias(..) => {
                if in_list && depth == 2 {
                    items.push((start, line, column, end));
                } else if depth == 1 {
                    expect_key = !expect_key;
                }
            }
            _ => {}
        }
    }
    items
        .into_iter()
        .filter_map(|(start, line, column, end)| {
            let slice = text.get(start..end)?;
            Some((line, column, unindent(slice, column as usize)))
        })
        .collect()
}

/// Removes `column` leading spaces from every line after the first (the first starts at the item).
fn unindent(slice: &str, column: usize) -> String {
    let mut out = String::with_capacity(slice.len());
    for (index, line) in slice.split_inclusive('\n').enumerate() {
        if index == 0 {
            out.push_str(line);
            continue;
        }
        let spaces = line.len() - line.trim_start_matches(' ').len();
        out.push_str(line.get(spaces.min(column)..).unwrap_or(line));
    }
    // A block item's slice runs up to the next `- `; drop a trailing dash left on the last line.
    let trimmed = out.trim_end();
    match trimmed.strip_suffix('-') {
        Some(rest) => rest.to_string(),
        None => out,
    }
}

/// Where each node of a YAML document starts, by document path.
#[derive(Debug, Default)]
pub struct LineIndex {
    /// `(line, column, path)` in document order (1-based line and column).
    entries: Vec<(u64, u64, String)>,
}

enum Frame {
    Mapping { path: String, key: Option<String> },
    Sequence { path: String, next: usize },
}

impl LineIndex {
    /// Indexes a document; on a syntax error it keeps what was indexed before it.
    pub fn build(text: &str) -> Self {
        let mut entries = Vec::new();
        let mut stack: Vec<Frame> = Vec::new();
        for item in Parser::new_from_str(text) {
            let Ok((event, span)) = item else { break };
            let line = span.start.line() as u64;
            let column = span.start.col() as u64 + 1;
            match event {
                Event::Scalar(value, ..) => {
                    if let Some(Frame::Mapping { path, key }) = stack.last_mut() {
                        if key.is_none() {
                            let child = join_key(path, &value);
                            entries.push((line, column, child));
                            *key = Some(value.into_owned());
                            continue;
                        }
                    }
                    if let Some(path) = child_path(&mut stack) {
                        entries.push((line, column, path));
                    }
                }
                Event::Alias(..) => {
                    if let Some(path) = child_path(&mut stack) {
                        entries.push((line, column, path));
                    }
                }
                Event::MappingStart(..) => {
                    let path = child_path(&mut stack).unwrap_or_default();
                    entries.push((line, column, path.clone()));
                    stack.push(Frame::Mapping { path, key: None });
                }
                Event::SequenceStart(..) => {
                    let path = child_path(&mut stack).unwrap_or_default();
                    entries.push((line, column, path.clone()));
                    stack.push(Frame::Sequence { path, next: 0 });
                }
                Event::MappingEnd | Event::SequenceEnd => {
                    stack.pop();
                }
                _ => {}
            }
        }
        Self { entries }
    }

    /// The line and column where the node at `path` (or its key) starts.
    pub fn position_of(&self, path: &str) -> Option<(u64, u64)> {
        self.entries
            .iter()
            .find(|(_, _, entry)| entry == path)
            .map(|(line, column, _)| (*line, *column))
    }

    /// The path of the last node that starts at or before the given position.
    pub fn path_at(&self, line: u64, column: u64) -> String {
        self.entries
            .iter()
            .take_while(|(entry_line, entry_column, _)| {
                (*entry_line, *entry_column) <= (line, column)
            })
            .last()
            .map(|(_, _, path)| path.clone())
            .unwrap_or_default()
    }
}

/// The path of the next value node under the top frame, advancing that frame.
fn child_path(stack: &mut [Frame]) -> Option<String> {
    match stack.last_mut()? {
        Frame::Mapping { path, key } => {
            // A value: its path is the key's; the next scalar is a key again.
            let key = key.take()?;
            Some(join_key(path, &key))
        }
        Frame::Sequence { path, next } => {
            let child = format!("{path}[{next}]");
            *next += 1;
            Some(child)
        }
    }
}

fn join_key(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str =
        "accounts:\n  - id: a1\n    zones:\n      - { id: z1, name: one }\n      - id: z2\n";

    #[test]
    fn paths_are_placed_on_their_lines() {
        let index = LineIndex::build(DOC);
        assert_eq!(index.position_of("accounts"), Some((1, 1)));
        assert_eq!(index.position_of("accounts[0].id"), Some((2, 5)));
        assert_eq!(index.position_of("accounts[0].zones[1].id"), Some((5, 9)));
        assert_eq!(
            index.position_of("accounts[0].zones[0].name"),
            Some((4, 19))
        );
        assert_eq!(index.position_of("accounts[1]"), None);
    }

    #[test]
    fn a_position_maps_back_to_the_nearest_path() {
        let index = LineIndex::build(DOC);
        assert_eq!(index.path_at(5, 13), "accounts[0].zones[1].id");
    }

    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Doc {
        accounts: Vec<Account>,
    }
    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Account {
        id: String,
    }

    #[test]
    fn every_broken_item_is_reported_not_only_the_first() {
        let text =
            "# accounts\naccounts:\n  - id: a\n    nme: b\n  - { id: c }\n  - id: d\n    naem: e\n";
        let source = SourceFile::from_text("x.yaml", text);
        let errors = source.item_errors::<Account>("accounts");
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert_eq!(errors[0].path, "accounts[0].nme");
        assert_eq!(errors[0].line, Some(4));
        assert_eq!(errors[1].path, "accounts[2].naem");
        assert_eq!(errors[1].line, Some(7));
        assert!(
            errors[1].message.starts_with("unknown field `naem`"),
            "{}",
            errors[1].message
        );
        let json = SourceFile::from_text(
            "x.json",
            "{\"accounts\": [{\"id\": \"a\"}, {\"id\": \"b\", \"x\": 1}]}",
        );
        let errors = json.item_errors::<Account>("accounts");
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].path, "accounts[1].x");
    }

    #[test]
    fn an_unknown_field_names_file_path_and_line() {
        let source = SourceFile::from_text("x.yaml", "accounts:\n  - id: a\n    nme: b\n");
        let error = source.parse::<Doc>().unwrap_err();
        assert_eq!(error.line, Some(3), "{error}");
        assert!(error.path.starts_with("accounts[0]"), "{error}");
        assert!(error.message.contains("nme"), "{error}");
    }
}
