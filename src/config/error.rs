//! Config errors: every problem names its file, the path inside it and, where known, line and column, and
//! has a kind with a stable code ([`ErrorKind`]): `file:line:column: path: [E021] message`.

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
    /// What is wrong, for programs: a stable code.
    pub kind: ErrorKind,
    /// What is wrong, for humans.
    pub message: String,
}

impl ConfigError {
    /// An error at `path` inside `file`; the loader fills in line and column later.
    pub fn new(
        file: impl Into<PathBuf>,
        path: impl Into<String>,
        kind: ErrorKind,
        message: impl Into<String>,
    ) -> Self {
        Self {
            file: file.into(),
            path: path.into(),
            line: None,
            column: None,
            kind,
            message: message.into(),
        }
    }

    /// An error about a whole file (unreadable, missing, not UTF-8, changing, a job that failed on it).
    pub fn file(file: &Path, kind: ErrorKind, message: impl Into<String>) -> Self {
        Self::new(file, "", kind, message)
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
        write!(f, ": [{}] {}", self.kind.code(), self.message)
    }
}

impl std::error::Error for ConfigError {}

impl From<&crate::policy::Warning> for ConfigError {
    /// A warning of the compiled policy set, to print with the config's errors (located later, as they are).
    fn from(warning: &crate::policy::Warning) -> Self {
        Self::new(
            &warning.file,
            warning.path.as_str(),
            warning.kind.into(),
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

/// What a config error or warning is about: a stable code, printed before the message (`[E021]`) and given
/// on `/status` (`code`), so that tools and tests match on it rather than on the English text. Codes are
/// never reused: a kind that goes away leaves its code unassigned. `E…` are errors (the config does not
/// load), `W…` warnings (`permgate validate` prints them; the config loads). README § Error codes lists them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// A file or folder that cannot be read: missing, unreadable, not UTF-8.
    Unreadable,
    /// Not the shape the file must have: a YAML or JSON syntax error, an unknown field, a wrong type.
    Syntax,
    /// The files changed during every try to read them as one set.
    ChangingTooFast,
    /// A `gateway.yaml` setting that is not valid (an address, a URL, a timeout, a route entry, TLS).
    InvalidSetting,
    /// An id or an email with characters it may not hold.
    InvalidId,
    /// An id, email, member, token id or token secret defined twice.
    Duplicate,
    /// A reference to a user, account, zone, permission group or domain group that is not defined.
    UnknownReference,
    /// A permission-group name that several groups share.
    AmbiguousReference,
    /// A resource outside what it may name: a zone of another account, another account's domain group, a
    /// token naming what it does not own.
    ForeignResource,
    /// A SHA-256 digest that is not 64 hex digits.
    InvalidDigest,
    /// A time that is not RFC 3339, or a validity window that ends before it starts.
    InvalidTime,
    /// An IP condition that is not an address or a CIDR.
    InvalidCidr,
    /// A resource key not of the forms `<ns>.account.<id>`, `<ns>.account.zone.<id>`, `<ns>.user.<id>`, or a
    /// resource value other than `"*"` or a map of zones.
    InvalidResourceKey,
    /// A permission key or pattern that does not parse.
    InvalidPermission,
    /// Something a definition needs is missing, or two fields that exclude each other are both given.
    IncompleteDefinition,
    /// A route method that is not a method.
    InvalidMethod,
    /// A route path pattern that no canonical request path could match, or that matchit refuses.
    InvalidPathPattern,
    /// Two routes that cannot be told apart.
    RouteConflict,
    /// A route's scope, principals, refusal, handler, public flag or opaque parameters do not fit together.
    InvalidRoute,
    /// More routes than the table can number.
    TooManyRoutes,
    /// A resource type whose name or key form is not valid, or a route naming a type no policy file
    /// declares (or with another parent).
    InvalidResourceType,
    /// A user group naming a user who is not a member of its account.
    GroupMemberNotInAccount,
    /// A bug caught while compiling.
    Internal,
    /// Warning: a policy whose permission groups grant no key that any route requires.
    PolicyGrantsNoKey,
    /// Warning: a permission group meant for a type of resource the policy selects none of.
    GroupTypeNotSelected,
    /// Warning: a user token's policy names only accounts and zones where its user is not a member.
    TokenUserNotMember,
    /// Warning: a route requires a key that no permission group grants.
    KeyNotGranted,
    /// Warning: a catalog permission group no policy uses.
    UnusedGroup,
    /// Warning: an expired token.
    ExpiredToken,
    /// Warning: a permission group named "… Read" passes a route that writes.
    ReadGroupPassesWrite,
    /// Warning: the upstream's own credential cannot be read where `validate` runs.
    UpstreamAuthUnreadable,
}

impl ErrorKind {
    /// Every kind, in code order.
    pub const ALL: [Self; 31] = [
        Self::Unreadable,
        Self::Syntax,
        Self::ChangingTooFast,
        Self::InvalidSetting,
        Self::InvalidId,
        Self::Duplicate,
        Self::UnknownReference,
        Self::AmbiguousReference,
        Self::ForeignResource,
        Self::GroupMemberNotInAccount,
        Self::InvalidDigest,
        Self::InvalidTime,
        Self::InvalidCidr,
        Self::InvalidResourceKey,
        Self::InvalidPermission,
        Self::InvalidResourceType,
        Self::IncompleteDefinition,
        Self::InvalidMethod,
        Self::InvalidPathPattern,
        Self::RouteConflict,
        Self::InvalidRoute,
        Self::TooManyRoutes,
        Self::Internal,
        Self::PolicyGrantsNoKey,
        Self::GroupTypeNotSelected,
        Self::TokenUserNotMember,
        Self::KeyNotGranted,
        Self::UnusedGroup,
        Self::ExpiredToken,
        Self::ReadGroupPassesWrite,
        Self::UpstreamAuthUnreadable,
    ];

    /// The stable code: `E0xx` for errors, `W0xx` for warnings.
    pub fn code(self) -> &'static str {
        match self {
            Self::Unreadable => "E001",
            Self::Syntax => "E002",
            Self::ChangingTooFast => "E003",
            Self::InvalidSetting => "E010",
            Self::InvalidId => "E020",
            Self::Duplicate => "E021",
            Self::UnknownReference => "E030",
            Self::AmbiguousReference => "E031",
            Self::ForeignResource => "E032",
            Self::InvalidDigest => "E040",
            Self::InvalidTime => "E041",
            Self::InvalidCidr => "E042",
            Self::InvalidResourceKey => "E043",
            Self::InvalidPermission => "E044",
            Self::IncompleteDefinition => "E050",
            Self::InvalidMethod => "E060",
            Self::InvalidPathPattern => "E061",
            Self::RouteConflict => "E062",
            Self::InvalidRoute => "E063",
            Self::TooManyRoutes => "E064",
            Self::InvalidResourceType => "E045",
            Self::GroupMemberNotInAccount => "E033",
            Self::Internal => "E099",
            Self::PolicyGrantsNoKey => "W001",
            Self::GroupTypeNotSelected => "W002",
            Self::TokenUserNotMember => "W003",
            Self::KeyNotGranted => "W010",
            Self::UnusedGroup => "W011",
            Self::ExpiredToken => "W012",
            Self::ReadGroupPassesWrite => "W013",
            Self::UpstreamAuthUnreadable => "W014",
        }
    }

    /// Whether it is a warning (the config still loads).
    pub fn is_warning(self) -> bool {
        self.code().starts_with('W')
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl From<crate::policy::WarningKind> for ErrorKind {
    fn from(kind: crate::policy::WarningKind) -> Self {
        use crate::policy::WarningKind;
        match kind {
            WarningKind::PolicyGrantsNoKey => Self::PolicyGrantsNoKey,
            WarningKind::GroupTypeNotSelected => Self::GroupTypeNotSelected,
            WarningKind::TokenUserNotMember => Self::TokenUserNotMember,
        }
    }
}
