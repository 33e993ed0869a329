//! Config errors: every problem names its file, the path inside it and, where known, line and column.

use std::fmt;
use std::path::{Path, PathBuf};

/// One problem in the configuration, located as precisely as the loader can.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file the problem is in.
    pub file: PathBuf,
    /// The path inside the document, e.g. `accounts[2].members[0].user` (empty for the whole file).
    pub path: String,
    /// 1-based line, when the parser or the line index could place it.
    pub line: Option<u64>,
    /// 1-based column, when known.
    pub column: Option<u64>,
    /// What is wrong, for humans.
    pub message: String,
}

impl ConfigError {
    /// An error at `path` inside `file`; the loader fills in line and column later.
    pub fn new(
        file: impl Into<PathBuf>,
        path: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            file: file.into(),
            path: path.into(),
            line: None,
            column: None,
            message: message.into(),
        }
    }

    /// An error about a whole file (unreadable, missing, not UTF-8).
    pub fn file(file: &Path, message: impl Into<String>) -> Self {
        Self::new(file, "", message)
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(column) = self.column {
                write!(f, ":{column}")?;
            }
        }
        if !self.path.is_empty() {
            write!(f, ": {}", self.path)?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ConfigError {}

impl From<&crate::policy::Warning> for ConfigError {
    /// A warning of the compiled policy set, to print with the config's errors (located later, as they are).
    fn from(warning: &crate::policy::Warning) -> Self {
        Self::new(
            &warning.file,
            warning.path.as_str(),
            warning.message.as_str(),
        )
    }
}

/// Every error of one load, reported together.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, error) in self.0.iter().enumerate() {
            if index > 0 {
                writeln!(f)?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl From<ConfigError> for ConfigErrors {
    fn from(error: ConfigError) -> Self {
        Self(vec![error])
    }
}
