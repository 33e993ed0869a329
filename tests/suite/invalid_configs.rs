//! Broken configs are rejected with every error named (SPEC §2): each `tests/invalid/<name>/` holds a small
//! config (`gateway.yaml` and the files it names) and an `expect.yaml` listing the errors `config::load`
//! must report: the file (its name ends with `file`), the error's code (`code`, e.g. `E030`: see README's
//! error codes), the path inside it (exactly `path`, or starting with
//! `path_prefix` where the SPEC leaves the spelling of map keys open), a message substring and, when given,
//! the line. `errors: []` marks a fixture that must load.
//!
//! Every fixture is checked and every miss is reported at the end, not only the first.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use permgate::config::{ConfigError, ConfigErrors, ErrorKind};
use serde::Deserialize;

/// The fewest broken fixtures the directory must hold.
const MIN_FIXTURES: usize = 15;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpectFile {
    errors: Vec<ExpectedError>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpectedError {
    /// The reported file's path ends with this.
    file: String,
    /// The error's stable code ([`ErrorKind::code`]), exactly.
    code: String,
    /// The document path, exactly.
    #[serde(default)]
    path: Option<String>,
    /// The document path starts with this.
    #[serde(default)]
    path_prefix: Option<String>,
    /// A substring of the message (case-insensitive).
    #[serde(default)]
    message_contains: Option<String>,
    /// At least one of these substrings is in the message (case-insensitive).
    #[serde(default)]
    message_contains_any: Vec<String>,
    /// The 1-based line.
    #[serde(default)]
    line: Option<u64>,
}

impl ExpectedError {
    fn matches(&self, error: &ConfigError) -> bool {
        let message = error.message.to_lowercase();
        error.file.to_string_lossy().ends_with(&self.file)
            && error.kind.code() == self.code
            && self.path.as_ref().is_none_or(|path| &error.path == path)
            && self
                .path_prefix
                .as_ref()
                .is_none_or(|prefix| error.path.starts_with(prefix.as_str()))
            && self
                .message_contains
                .as_ref()
                .is_none_or(|needle| message.contains(&needle.to_lowercase()))
            && (self.message_contains_any.is_empty()
                || self
                    .message_contains_any
                    .iter()
                    .any(|needle| message.contains(&needle.to_lowercase())))
            && self.line.is_none_or(|line| error.line == Some(line))
    }
}

impl std::fmt::Display for ExpectedError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "file …{}, code {}", self.file, self.code)?;
        if let Some(path) = &self.path {
            write!(f, ", path {path:?}")?;
        }
        if let Some(prefix) = &self.path_prefix {
            write!(f, ", path starting {prefix:?}")?;
        }
        if let Some(needle) = &self.message_contains {
            write!(f, ", message containing {needle:?}")?;
        }
        if !self.message_contains_any.is_empty() {
            write!(
                f,
                ", message containing one of {:?}",
                self.message_contains_any
            )?;
        }
        if let Some(line) = self.line {
            write!(f, ", line {line}")?;
        }
        Ok(())
    }
}

fn describe(errors: &ConfigErrors) -> String {
    let mut out = String::new();
    for error in &errors.0 {
        let _ = writeln!(
            out,
            "        {} | path {:?} | line {:?} | [{}] {}",
            error.file.display(),
            error.path,
            error.line,
            error.kind.code(),
            error.message
        );
    }
    out
}

fn fixtures() -> Result<Vec<PathBuf>, String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("invalid");
    let mut found = Vec::new();
    for entry in std::fs::read_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))? {
        let path = entry.map_err(|e| format!("{}: {e}", dir.display()))?.path();
        if path.join("expect.yaml").is_file() {
            found.push(path);
        }
    }
    found.sort();
    Ok(found)
}

#[test]
fn invalid_configs_report_every_error() {
    let fixtures = fixtures().unwrap();
    let mut failures = String::new();
    let mut broken = 0usize;

    for dir in &fixtures {
        let name = dir
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        let text = std::fs::read_to_string(dir.join("expect.yaml")).unwrap();
        let expect: ExpectFile = match serde_saphyr::from_str(&text) {
            Ok(expect) => expect,
            Err(error) => {
                let _ = writeln!(failures, "\n[{name}] expect.yaml does not parse: {error}");
                continue;
            }
        };
        let result = permgate::config::load(&dir.join("gateway.yaml"));
        if expect.errors.is_empty() {
            if let Err(errors) = result {
                let _ = writeln!(
                    failures,
                    "\n[{name}] must load, but:\n{}",
                    describe(&errors)
                );
            }
            continue;
        }
        broken += 1;
        let errors = match result {
            Ok(_) => {
                let _ = writeln!(failures, "\n[{name}] loaded, but must be rejected");
                continue;
            }
            Err(errors) => errors,
        };
        println!("[{name}]\n{}", describe(&errors));
        let missing: Vec<&ExpectedError> = expect
            .errors
            .iter()
            .filter(|expected| !errors.0.iter().any(|error| expected.matches(error)))
            .collect();
        if !missing.is_empty() {
            let _ = writeln!(failures, "\n[{name}] missing expected error(s):");
            for expected in missing {
                let _ = writeln!(failures, "    - {expected}");
            }
            let _ = write!(failures, "    reported:\n{}", describe(&errors));
        }
        for error in &errors.0 {
            if error.file.as_os_str().is_empty() {
                let _ = writeln!(failures, "\n[{name}] an error names no file: {error}");
            }
        }
    }

    assert!(
        failures.is_empty(),
        "invalid-config fixtures failed:\n{failures}"
    );
    assert!(
        broken >= MIN_FIXTURES,
        "only {broken} broken fixtures; expected at least {MIN_FIXTURES}"
    );
}

/// Every code is unique, of the form `E0xx` (an error) or `W0xx` (a warning), and shown in the message.
#[test]
fn error_codes_are_unique_and_shown() {
    let mut seen = std::collections::HashSet::new();
    for kind in ErrorKind::ALL {
        let code = kind.code();
        assert!(seen.insert(code), "{code} is given twice");
        assert!(
            code.len() == 4
                && (code.starts_with('E') || code.starts_with('W'))
                && code[1..].bytes().all(|b| b.is_ascii_digit()),
            "{code}"
        );
        assert_eq!(kind.is_warning(), code.starts_with('W'));
        let error = ConfigError::new("a.yaml", "x", kind, "what");
        assert_eq!(error.to_string(), format!("a.yaml: x: [{code}] what"));
    }
}
