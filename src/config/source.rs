//! A config file's text, its parse into raw serde types, and the index that places a document path on a line.
//!
//! Errors are first produced with a document path (`accounts[0].zones[1].id`); the [`LineIndex`] of the
//! file then gives them a line and column. The index is built only when a file has errors, so a large,
//! valid file costs nothing extra.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde::de::{DeserializeOwned, DeserializeSeed};
use serde_saphyr::granit_parser::{Event, Parser};

use super::error::{ConfigError, ErrorKind};
use super::raw::{RawToken, RawTokenList, Str, TokenStream};

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
        Self::read_into(path, path, Vec::new(), None)
    }

    /// Reads the file `path` as found at `resolved` (where its symlinks led when its config was read; see
    /// `config::ledger`), into a buffer from `buffers` when given (give the file back with
    /// [`TextBuffers::give_back`] when done with it). The file is named `path`.
    pub fn read_resolved(
        path: &Path,
        resolved: &Path,
        buffers: Option<&TextBuffers>,
    ) -> Result<Self, ConfigError> {
        let buffer = buffers.map(TextBuffers::take).unwrap_or_default();
        Self::read_into(path, resolved, buffer, buffers)
    }

    /// Reads the file at `resolved` into `buffer` (emptied first), naming it `path`; on an error the buffer
    /// goes back to `buffers`.
    fn read_into(
        path: &Path,
        resolved: &Path,
        mut buffer: Vec<u8>,
        buffers: Option<&TextBuffers>,
    ) -> Result<Self, ConfigError> {
        use std::io::Read as _;
        buffer.clear();
        // As `std::fs::read` does: open, size the buffer by the file's length, read to the end.
        let read = std::fs::File::open(resolved).and_then(|mut file| {
            let len = file.metadata().map_or(0, |meta| meta.len());
            buffer.reserve_exact(usize::try_from(len).unwrap_or(0));
            file.read_to_end(&mut buffer)
        });
        if let Err(error) = read {
            if let Some(buffers) = buffers {
                buffers.put(buffer);
            }
            return Err(ConfigError::file(
                path,
                ErrorKind::Unreadable,
                format!("cannot read file: {error}"),
            ));
        }
        match String::from_utf8(buffer) {
            Ok(text) => Ok(Self {
                path: path.to_path_buf(),
                text,
            }),
            Err(error) => {
                let message = format!(
                    "file is not valid UTF-8 (byte {})",
                    error.utf8_error().valid_up_to()
                );
                if let Some(buffers) = buffers {
                    buffers.put(error.into_bytes());
                }
                Err(ConfigError::file(path, ErrorKind::Unreadable, message))
            }
        }
    }

    /// A file from text in memory (tests, the embedded demo).
    pub fn from_text(path: impl Into<PathBuf>, text: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            text: text.into(),
        }
    }

    /// Parses the file into raw type `T`; a syntax or shape error names its place.
    ///
    /// A `.json` file is parsed as JSON (by serde_json, about 15× faster than a YAML parser on the same
    /// document, which matters for machine-written configs of millions of tokens); anything else as YAML.
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T, ConfigError> {
        parse_text::<T>(&self.text, self.format(), &self.path, 0, "")
    }

    /// Parses the file's tokens as [`RawTokenList`] and hands each to `each` as it is parsed, its strings
    /// borrowed from the text where they can be; errors as [`SourceFile::parse`] gives them. Gives whether
    /// the file held its tokens and nothing else (known of JSON files only: `false` for YAML).
    ///
    /// A JSON file is streamed (no list of raw tokens is built); a YAML file is parsed whole first (the YAML
    /// parser takes no seed), then handed on.
    pub fn stream_tokens<'s>(
        &'s self,
        each: impl FnMut(RawToken<Str<'s>>),
    ) -> Result<bool, ConfigError> {
        match self.format() {
            Format::Json => {
                let mut deserializer = serde_json::Deserializer::from_str(&self.text);
                // As `serde_json::from_str` does: the value, then nothing but whitespace.
                TokenStream { each }
                    .deserialize(&mut deserializer)
                    .and_then(|only_tokens| deserializer.end().map(|()| only_tokens))
                    .map_err(|error| {
                        let (message, position) = json_failure(&error);
                        located_error(message, position, &self.text, &self.path, 0, "")
                    })
            }
            Format::Yaml => {
                let list: RawTokenList<Str<'s>> =
                    parse_text(&self.text, Format::Yaml, &self.path, 0, "")?;
                list.tokens.into_iter().for_each(each);
                Ok(false)
            }
        }
    }

    /// How this file is parsed, by its extension.
    pub fn format(&self) -> Format {
        if self
            .path
            .extension()
            .is_some_and(|extension| extension.eq_ignore_ascii_case("json"))
        {
            Format::Json
        } else {
            Format::Yaml
        }
    }

    /// After a whole-file parse error: parses each item of the top-level list `key` on its own as a `T`, so
    /// that every broken item is reported, not only the first one the parser met.
    ///
    /// An item's text is cut out of the file by the positions the YAML parser reports (and un-indented for
    /// block items); its errors are shifted back to the file's lines and prefixed with `key[index]`.
    pub fn item_errors<T: DeserializeOwned>(&self, key: &str) -> Vec<ConfigError> {
        let mut errors = Vec::new();
        for (index, (line, column, text)) in list_items(&self.text, key).into_iter().enumerate() {
            let prefix = format!("{key}[{index}]");
            if let Err(mut error) =
                parse_text::<T>(&text, self.format(), &self.path, line - 1, &prefix)
            {
                if error.line == Some(line) {
                    error.column = error.column.map(|c| c + column);
                }
                errors.push(error);
            }
        }
        errors
    }

    /// Fills in line and column of every error of this file that has a path but no line yet: where the
    /// node at the path starts or, for a field that is missing (`audit_log.path`), where its nearest
    /// written parent does.
    pub fn locate(&self, errors: &mut [ConfigError]) {
        let mut index: Option<LineIndex> = None;
        for error in errors.iter_mut() {
            if error.file != self.path || error.line.is_some() || error.path.is_empty() {
                continue;
            }
            let index = index.get_or_insert_with(|| LineIndex::build(&self.text));
            let mut path = error.path.as_str();
            let found = loop {
                if let Some(found) = index.position_of(path) {
                    break Some(found);
                }
                match path.rfind(['.', '[']) {
                    Some(end) if end > 0 => path = path.get(..end).unwrap_or_default(),
                    _ => break None,
                }
            };
            if let Some((line, column)) = found {
                error.line = Some(line);
                error.column = Some(column);
            }
        }
    }
}

/// Spare buffers for file texts, shared by the threads reading files: a config of a million tokens is
/// hundreds of files of a few MiB, each read twice, and a fresh buffer for each is fresh memory from the
/// operating system (zeroed, faulted in page by page, given back soon after); a reused one is not.
#[derive(Debug, Default)]
pub struct TextBuffers {
    spare: std::sync::Mutex<Vec<Vec<u8>>>,
}

impl TextBuffers {
    /// At most this many spare buffers are kept (the readers of a pass hold only a few at once).
    const KEEP: usize = 16;

    pub fn new() -> Self {
        Self::default()
    }

    /// Keeps a file's text for the next read.
    pub fn give_back(&self, file: SourceFile) {
        self.put(file.text.into_bytes());
    }

    /// A spare buffer, or a new empty one.
    fn take(&self) -> Vec<u8> {
        self.lock().pop().unwrap_or_default()
    }

    fn put(&self, buffer: Vec<u8>) {
        let mut spare = self.lock();
        if spare.len() < Self::KEEP && buffer.capacity() > 0 {
            spare.push(buffer);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Vec<u8>>> {
        self.spare
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The syntax a config file is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Yaml,
    Json,
}

/// The YAML parser's resource budget for config files. serde-saphyr's default (250,000 nodes and 1M events
/// per document, 64 MiB of scalars) refuses a single policy file of a few tens of thousands of tokens. Config
/// files come from the operator, and their size costs time and memory in proportion, so the size limits are
/// lifted; the limits that stop a small file from expanding into a huge one (aliases, anchors, nesting
/// depth, merge keys, the alias/anchor ratio) keep their defaults.
fn yaml_options() -> serde_saphyr::Options {
    let mut budget = serde_saphyr::Budget::default();
    budget.max_events = usize::MAX;
    budget.max_nodes = usize::MAX;
    budget.max_total_scalar_bytes = usize::MAX;
    let mut options = serde_saphyr::Options::default();
    options.budget = Some(budget);
    options
}

/// Parses `text` as a `T`; errors get `line_offset` added and their path prefixed with `prefix`.
fn parse_text<'de, T: Deserialize<'de>>(
    text: &'de str,
    format: Format,
    file: &Path,
    line_offset: u64,
    prefix: &str,
) -> Result<T, ConfigError> {
    // (message, 1-based line and column where the parser stopped, 0 when unknown)
    let (message, line, column) = match format {
        Format::Yaml => match serde_saphyr::from_str_with_options::<T>(text, yaml_options()) {
            Ok(value) => return Ok(value),
            Err(error) => {
                let (line, column) = error
                    .location()
                    .map_or((0, 0), |location| (location.line(), location.column()));
                (clean_message(&error.to_string()), line, column)
            }
        },
        Format::Json => match serde_json::from_str::<T>(text) {
            Ok(value) => return Ok(value),
            Err(error) => {
                let (message, (line, column)) = json_failure(&error);
                (message, line, column)
            }
        },
    };
    Err(located_error(
        message,
        (line, column),
        text,
        file,
        line_offset,
        prefix,
    ))
}

/// A serde_json error's message and 1-based (line, column): one reading for whole and streamed parses, so
/// both report a broken file alike.
fn json_failure(error: &serde_json::Error) -> (String, (u64, u64)) {
    (
        json_message(error),
        (error.line() as u64, error.column() as u64),
    )
}

/// A parse error of `text` at 1-based `(line, column)` (0 when unknown), placed on its document path; the
/// line gets `line_offset` added and the path is prefixed with `prefix`.
fn located_error(
    message: String,
    (line, column): (u64, u64),
    text: &str,
    file: &Path,
    line_offset: u64,
    prefix: &str,
) -> ConfigError {
    let mut config_error = ConfigError::new(file, prefix, ErrorKind::Syntax, message);
    if line > 0 {
        config_error.line = Some(line + line_offset);
        config_error.column = Some(column);
        let inner = LineIndex::build(text).path_at(line, column);
        config_error.path = match (prefix.is_empty(), inner.is_empty()) {
            (_, true) => prefix.to_string(),
            (true, false) => inner,
            (false, false) => format!("{prefix}.{inner}"),
        };
    }
    config_error
}

/// serde_json's message without its trailing ` at line N column M` (the location is reported separately).
fn json_message(error: &serde_json::Error) -> String {
    let message = error.to_string();
    match message.rfind(" at line ") {
        Some(cut) => message.get(..cut).unwrap_or(&message).to_string(),
        None => message,
    }
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
                    if let Some(Frame::Mapping { path, key }) = stack.last_mut()
                        && key.is_none()
                    {
                        let child = join_key(path, &value);
                        entries.push((line, column, child));
                        *key = Some(value.into_owned());
                        continue;
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

/// A route entry: a file, or a folder whose `*.yaml`, `*.yml` and `*.json` files are read in name order.
/// Hidden entries (such as a Kubernetes ConfigMap's `..data`) are skipped; the files linking into them are
/// read through their links.
pub(super) fn route_file_paths(path: &Path) -> Result<Vec<PathBuf>, String> {
    let metadata =
        std::fs::metadata(path).map_err(|error| format!("{}: {error}", path.display()))?;
    if !metadata.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let entries =
        std::fs::read_dir(path).map_err(|error| format!("{}: {error}", path.display()))?;
    let mut paths = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|error| format!("{}: {error}", path.display()))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let is_config =
            name.ends_with(".yaml") || name.ends_with(".yml") || name.ends_with(".json");
        if name.starts_with('.') || !is_config {
            continue;
        }
        if std::fs::metadata(entry.path()).is_ok_and(|meta| meta.is_file()) {
            paths.push(entry.path());
        }
    }
    paths.sort();
    Ok(paths)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str =
        "accounts:\n  - id: a1\n    zones:\n      - { id: z1, name: one }\n      - id: z2\n";

    #[test]
    fn a_buffer_given_back_is_reused_and_errors_match_a_plain_read() {
        let dir = tempfile::tempdir().unwrap();
        let big = dir.path().join("big.json");
        let small = dir.path().join("small.json");
        let broken = dir.path().join("broken.json");
        std::fs::write(&big, "x".repeat(100_000)).unwrap();
        std::fs::write(&small, "{}").unwrap();
        std::fs::write(&broken, b"ab\xffcd").unwrap();
        let buffers = TextBuffers::new();
        let first = SourceFile::read_resolved(&big, &big, Some(&buffers)).unwrap();
        assert_eq!(first.text.len(), 100_000);
        buffers.give_back(first);
        let second = SourceFile::read_resolved(&small, &small, Some(&buffers)).unwrap();
        assert_eq!(second.text, "{}");
        assert!(
            second.text.capacity() >= 100_000,
            "the big file's buffer was reused"
        );
        for path in [broken, dir.path().join("missing.json")] {
            let plain = SourceFile::read(&path).unwrap_err();
            let pooled = SourceFile::read_resolved(&path, &path, Some(&buffers)).unwrap_err();
            assert_eq!(plain, pooled);
        }
        assert_eq!(
            SourceFile::read(&dir.path().join("broken.json"))
                .unwrap_err()
                .message,
            "file is not valid UTF-8 (byte 2)"
        );
    }

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
    fn a_json_file_is_parsed_as_json_and_its_errors_are_placed() {
        let source = SourceFile::from_text(
            "x.json",
            "{\n  \"accounts\": [\n    {\"id\": \"a\"},\n    {\"id\": \"b\", \"nme\": 1}\n  ]\n}\n",
        );
        assert_eq!(source.format(), Format::Json);
        let error = source.parse::<Doc>().unwrap_err();
        assert_eq!(error.line, Some(4), "{error}");
        assert_eq!(error.path, "accounts[1].nme", "{error}");
        assert!(error.message.starts_with("unknown field `nme`"), "{error}");
        assert!(!error.message.contains(" at line "), "{error}");
        let broken = SourceFile::from_text("x.json", "{\"accounts\": [{\"id\": \"a\"},]}");
        assert_eq!(broken.parse::<Doc>().unwrap_err().line, Some(1));
        let fine = SourceFile::from_text("x.JSON", "{\"accounts\": [{\"id\": \"a\"}]}");
        assert_eq!(fine.parse::<Doc>().unwrap().accounts.len(), 1);
    }

    #[test]
    fn a_yaml_file_larger_than_the_parser_default_budget_loads() {
        // 300,000 list items: more nodes than serde-saphyr's default budget of 250,000 per document.
        let mut text = String::from("accounts:\n");
        for index in 0..300_000 {
            text.push_str(&format!("  - {{id: a{index}}}\n"));
        }
        let source = SourceFile::from_text("big.yaml", text);
        assert_eq!(source.format(), Format::Yaml);
        assert_eq!(source.parse::<Doc>().unwrap().accounts.len(), 300_000);
    }

    #[test]
    fn a_yaml_alias_bomb_is_still_refused() {
        let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for level in 1..12 {
            let previous = format!("*a{}", level - 1);
            let items = [previous.as_str(); 10].join(", ");
            text.push_str(&format!("a{level}: &a{level} [{items}]\n"));
        }
        text.push_str("accounts: []\n");
        let source = SourceFile::from_text("bomb.yaml", text);
        assert!(source.parse::<serde_json::Value>().is_err());
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
