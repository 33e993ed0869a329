//! OpenAPI import: turns OpenAPI 3 specs into a permgate route file (`permgate routes import-openapi`).
//!
//! Pure: the caller reads the files; this module turns parsed JSON into routes plus a report of every
//! operation it skipped and why. The rules (documented in the README, "Importing an OpenAPI spec"):
//!
//! - **Keys**, first found wins: `x-permgate-permissions` (ours: a list = all of them, `{all_of: […]}`,
//!   `{any_of: […]}`, plus optional `scope`, `public: true`, `handler: verify_token`), then Cloudflare's
//!   `x-cfPermissionsRequired: {enum: […]}` combined by [`combine`], then `x-api-token-group` (group names,
//!   any one suffices) resolved to keys through a permission-group catalog ([`Catalog`]).
//! - **Writes** (any method but GET, HEAD, OPTIONS) never pass on a key that does not say it writes
//!   ([`crate::policy::actions`]): when Cloudflare's keys for a write name no write action (an action-less
//!   key such as `com.cloudflare.api.account.aig`, required for reads and writes alike, or only read keys on
//!   a PUT, PATCH or DELETE), the route requires the write keys of the `x-api-token-group` groups when the
//!   operation lists them, else the keys plus their write flavour ([`actions::write_flavour`]). A POST
//!   whose keys are all read keys is kept as the spec says (queries, analyses, scans read through a POST);
//!   `permgate validate` lists those. `x-api-token-group` alone on a write resolves to the listed groups'
//!   write keys only, and the operation is skipped when they have none.
//! - **Scope** from the path ([`infer_scope`]), whatever the id parameter is called; `x-permgate-permissions`
//!   can override it.
//! - **No keys**: an operation whose `security` allows no credential (`[]` or `[{}]`) is `public: true`;
//!   anything else without an annotation is skipped (fail closed: the gateway never guesses a permission).
//! - **Paths**: `{param}` is matchit's syntax already; a repeated parameter name gets `_2`, `_3`…; a path
//!   that is not canonical or that matchit cannot hold beside an earlier route is skipped with the reason.
//! - **Checked as the loader checks**: each route goes through the loader's own route compiler
//!   ([`crate::config::compile::routes::add_route`]) as a route file's would; one it refuses is skipped.
//! - **Opaque parameters**: a path parameter the spec says is percent-encoded (its or its schema's
//!   description mentions percent- or URL-encoding, as Workers KV key names do) or marks
//!   `x-permgate-opaque: true` becomes `opaque:` in the route: it may hold `%2F`, kept as received.
//!
//! Several specs can be given: a later spec's operation (same method, same path up to parameter names)
//! overlays the earlier one field by field, so a small supplement can add operations or annotate existing
//! ones without editing the vendor's spec.

pub mod render;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::Path;

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::config::SourceFile;
use crate::config::compile::routes;
use crate::config::raw::RawPolicyFile;
use crate::config::raw::routes::{RawMethods, RawPermissions, RawRefusal, RawRoute, RawScope};
use crate::policy::actions::{self, KeyAction, key_action};
use crate::policy::{KeyInterner, KeyPattern};
use crate::routes::{CredentialKind, Handler, RouteTable};

/// The OpenAPI operation methods, in the order routes of one path are written.
const METHODS: [&str; 8] = [
    "get", "head", "post", "put", "patch", "delete", "options", "trace",
];

/// The user-resource key prefix: keys of this form are checked on the caller's own user.
const USER_KEY_PREFIX: &str = "com.cloudflare.api.user.";

/// What the importer is told besides the specs.
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// Prepended to every path (`/client/v4`); no trailing `/`.
    pub prefix: String,
    /// Resolves `x-api-token-group` names to keys; without it such operations are skipped.
    pub catalog: Option<Catalog>,
}

/// One parsed spec, with a label for messages (its file name).
#[derive(Debug, Clone)]
pub struct Spec {
    pub label: String,
    pub document: Value,
}

/// What the path alone says about the resource a request targets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InferredScope {
    /// `/accounts/{x}…`: the account whose id is parameter `x`.
    Account(String),
    /// `/zones/{x}…`: the zone whose id is parameter `x`.
    Zone(String),
    /// `/user` and `/user/…`: the caller's own user.
    User,
    /// `GET /accounts`, `GET /zones`: a collection the API filters (`scope: any`).
    Collection,
    /// Nothing in the path names the resource; the reason says why.
    Unknown(&'static str),
}

/// Why an operation was not imported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SkipReason {
    /// No permission annotation and the operation needs a credential.
    NoAnnotation,
    /// Only the Origin CA `X-Auth-User-Service-Key` scheme, which permgate does not authenticate.
    ServiceKeyOnly,
    /// Keys, but no resource the gateway can see.
    NoScope(&'static str),
    /// `x-api-token-group` without a usable catalog entry.
    UnresolvedGroups(String),
    /// A malformed `x-permgate-permissions` or `x-cfPermissionsRequired`.
    InvalidAnnotation(String),
    /// The path cannot be a route (not canonical, bad parameter).
    InvalidPath(String),
    /// matchit cannot hold the path beside an earlier route of the same method.
    Conflict(String),
    /// The loader's route compiler refuses the route ([`crate::config::compile::routes::add_route`]).
    Rejected(String),
}

/// An operation that was not imported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    pub method: String,
    /// The path as written in the spec.
    pub path: String,
    pub operation_id: Option<String>,
    pub reason: SkipReason,
}

/// The result of an import.
#[derive(Debug, Clone, Default)]
pub struct Import {
    /// The routes, as a route file holds them.
    pub routes: Vec<RawRoute>,
    pub skipped: Vec<Skipped>,
    /// Things worth a look that did not stop an operation (an unknown group name, a key dropped by
    /// `scope: none`).
    pub notes: Vec<String>,
}

/// Group name → keys, from a permission-group file (`permission_groups:` of a policy file).
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    /// Every key and pattern of the groups of each name (names can repeat across scopes: the union).
    by_name: BTreeMap<String, Vec<String>>,
}

// === impl Catalog ===

impl Catalog {
    /// A catalog from `(name, keys)` pairs.
    pub fn from_groups<'a>(groups: impl IntoIterator<Item = (&'a str, Vec<String>)>) -> Self {
        let mut by_name: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (name, keys) in groups {
            let entry = by_name.entry(name.to_string()).or_default();
            for key in keys {
                if !entry.contains(&key) {
                    entry.push(key);
                }
            }
        }
        Self { by_name }
    }

    /// The catalog groups of a policy file; groups without a name are left out (they cannot be named).
    pub fn from_policy_file(file: &SourceFile) -> Result<Self, String> {
        let raw = file
            .parse::<RawPolicyFile>()
            .map_err(|error| error.to_string())?;
        Ok(Self::from_groups(raw.permission_groups.iter().filter_map(
            |group| {
                let name = group.name.as_deref()?;
                let keys = group
                    .permissions
                    .iter()
                    .flatten()
                    .map(|permission| permission.key().to_string())
                    .collect();
                Some((name, keys))
            },
        )))
    }

    /// The literal keys (not patterns) of the groups named `name`; `None` for an unknown name.
    pub fn literal_keys(&self, name: &str) -> Option<Vec<&str>> {
        self.by_name.get(name).map(|keys| {
            keys.iter()
                .map(String::as_str)
                .filter(|key| matches!(KeyPattern::parse(key), Ok(KeyPattern::Exact(_))))
                .collect()
        })
    }

    /// The literal keys of the groups named `name` whose action writes ([`KeyAction::Write`]); `None` for
    /// an unknown name.
    pub fn write_keys(&self, name: &str) -> Option<Vec<&str>> {
        self.literal_keys(name).map(|keys| {
            keys.into_iter()
                .filter(|key| key_action(key) == KeyAction::Write)
                .collect()
        })
    }

    /// Whether some group named `name` holds a key or pattern matching `key`.
    pub fn grants(&self, name: &str, key: &str) -> bool {
        self.by_name.get(name).is_some_and(|keys| {
            keys.iter()
                .any(|pattern| KeyPattern::parse(pattern).is_ok_and(|pattern| pattern.matches(key)))
        })
    }
}

// === impl SkipReason ===

impl SkipReason {
    /// A short, stable name of the reason, for counting.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::NoAnnotation => "no permission annotation",
            Self::ServiceKeyOnly => "Origin CA service key only",
            Self::NoScope(_) => "no resource scope in the path",
            Self::UnresolvedGroups(_) => "unresolved x-api-token-group",
            Self::InvalidAnnotation(_) => "invalid annotation",
            Self::InvalidPath(_) => "invalid path",
            Self::Conflict(_) => "matchit conflict",
            Self::Rejected(_) => "refused by the route compiler",
        }
    }
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoAnnotation => f.write_str(
                "no permission annotation (x-permgate-permissions, x-cfPermissionsRequired or \
                 x-api-token-group) and the operation needs a credential: the gateway does not guess",
            ),
            Self::ServiceKeyOnly => f.write_str(
                "only the X-Auth-User-Service-Key scheme (Origin CA key), which permgate does not authenticate",
            ),
            Self::NoScope(why) => write!(
                f,
                "{why}; give x-permgate-permissions.scope to import it"
            ),
            Self::UnresolvedGroups(why)
            | Self::InvalidAnnotation(why)
            | Self::InvalidPath(why)
            | Self::Conflict(why)
            | Self::Rejected(why) => f.write_str(why),
        }
    }
}

/// Infers the resource scope from a spec path (without the prefix), whatever the id parameter is called:
/// `/accounts/{account_id}`, `{account_identifier}`, `{accountId}`, `/zones/{zone_id}`, `{zone}`,
/// `{identifier}`… The first segment decides; the parameter right after it holds the id.
pub fn infer_scope(method: &str, path: &str) -> InferredScope {
    let mut segments = path.trim_start_matches('/').split('/');
    let first = segments.next().unwrap_or_default();
    let second = segments.next();
    match (first, second) {
        ("user", _) => InferredScope::User,
        ("accounts" | "zones", Some(segment)) => match param_name(segment) {
            Some(name) if first == "accounts" => InferredScope::Account(name.to_string()),
            Some(name) => InferredScope::Zone(name.to_string()),
            None => InferredScope::Unknown(
                "a static segment after /accounts or /zones (such as /accounts/move) acts on resources \
                 named in the body, which the gateway does not read",
            ),
        },
        ("accounts" | "zones", None) if method.eq_ignore_ascii_case("GET") => {
            InferredScope::Collection
        }
        ("accounts" | "zones", None) => InferredScope::Unknown(
            "creating an account or zone targets the account named in the body, which the gateway does not \
             read",
        ),
        _ => InferredScope::Unknown(
            "the path is outside /accounts/{id}, /zones/{id} and /user, so no resource id is in it",
        ),
    }
}

/// `{name}` → `name` for a whole-segment parameter.
fn param_name(segment: &str) -> Option<&str> {
    segment
        .strip_prefix('{')
        .and_then(|rest| rest.strip_suffix('}'))
        .filter(|name| !name.is_empty() && !name.contains(['{', '}']))
}

/// How several `x-cfPermissionsRequired` keys combine: on a safe method (GET, HEAD, OPTIONS) they are
/// alternatives (`#dex:read` or `#teams:report` lets one read DEX data: any of them); on a write method
/// every key is required (`#billing:read` + `#billing:edit` on a PUT; `worker.script.read` +
/// `worker.tail.create` to start a tail): all of them. The write rule is the fail-closed choice: reading
/// Cloudflare's lists as "any of" on a write would let a read-only group write. One key is all-of.
/// (Whether a write's keys say it writes at all is [`write_requirement`]'s question.)
pub fn combine(method: &str, keys: Vec<String>) -> RawPermissions {
    if actions::is_safe_method(method) && keys.len() > 1 {
        RawPermissions::AnyOf(keys)
    } else {
        RawPermissions::all_of(keys)
    }
}

/// Converts a spec path to a matchit pattern under `prefix`: a repeated parameter name gets `_2`, `_3`…
/// (a route may not name a parameter twice); the first occurrence keeps its name, so the scope parameter
/// (always the first) is unchanged.
pub fn matchit_path(prefix: &str, path: &str) -> Result<String, String> {
    if !path.starts_with('/') {
        return Err(format!("the path {path:?} does not start with /"));
    }
    let mut out = String::with_capacity(prefix.len() + path.len());
    out.push_str(prefix.trim_end_matches('/'));
    let mut seen: BTreeSet<String> = BTreeSet::new();
    let mut rest = path;
    while let Some(open) = rest.find('{') {
        let (before, from) = rest.split_at(open);
        if before.contains('}') {
            return Err(format!("the path {path:?} has an unmatched }}"));
        }
        out.push_str(before);
        let Some(close) = from.find('}') else {
            return Err(format!("the path {path:?} has an unclosed {{"));
        };
        let name = from.get(1..close).unwrap_or_default();
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(format!(
                "the path {path:?} has a parameter {{{name}}} that is not a plain name"
            ));
        }
        let mut unique = name.to_string();
        let mut counter = 2;
        while seen.contains(&unique) {
            unique = format!("{name}_{counter}");
            counter += 1;
        }
        seen.insert(unique.clone());
        out.push('{');
        out.push_str(&unique);
        out.push('}');
        rest = from.get(close + 1..).unwrap_or_default();
    }
    if rest.contains('}') {
        return Err(format!("the path {path:?} has an unmatched }}"));
    }
    out.push_str(rest);
    // Whether a canonical request path can match it is the loader's route compiler's question
    // ([`routes::add_route`], which [`import`] asks next): one check, in one place.
    Ok(out)
}

/// An operation after overlaying every spec that has it.
#[derive(Debug, Clone)]
struct Operation {
    method: &'static str,
    path: String,
    fields: Map<String, Value>,
    /// Path parameters some spec says are percent-encoded ([`percent_encoded_params`]), by name.
    opaque: BTreeSet<String>,
}

/// The override an operation's `x-permgate-permissions` gives.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Override {
    permissions: Option<RawPermissions>,
    scope: Option<RawScope>,
    public: bool,
    handler: Option<Handler>,
    principals: Option<Vec<CredentialKind>>,
    principal_refusal: Option<RawRefusal>,
}

/// Imports every operation of `specs` (later specs overlay earlier ones).
pub fn import(specs: &[Spec], options: &ImportOptions) -> Import {
    let mut result = Import::default();
    let operations = collect(specs);
    // The routes as the loader compiles them (the route compiler's own checks, then the table's routers), to
    // find what the loader would refuse, and conflicts, now rather than at load.
    let mut table = RouteTable::empty();
    let mut keys = KeyInterner::new();
    for operation in operations {
        let method = operation.method.to_ascii_uppercase();
        let operation_id = operation
            .fields
            .get("operationId")
            .and_then(Value::as_str)
            .map(str::to_string);
        let skip = |reason: SkipReason| Skipped {
            method: method.clone(),
            path: operation.path.clone(),
            operation_id: operation_id.clone(),
            reason,
        };
        let route = match import_operation(&operation, &method, options, &mut result.notes) {
            Ok(route) => route,
            Err(reason) => {
                result.skipped.push(skip(reason));
                continue;
            }
        };
        let path = match matchit_path(&options.prefix, &operation.path) {
            Ok(path) => path,
            Err(message) => {
                result.skipped.push(skip(SkipReason::InvalidPath(message)));
                continue;
            }
        };
        let mut notes = Vec::new();
        let opaque = opaque_params(&operation, &path, route.scope.as_ref(), &mut notes);
        let imported = RawRoute {
            id: operation_id.as_deref().map(label_of),
            method: RawMethods::One(method.clone()),
            opaque,
            path: path.clone(),
            permissions: route.permissions,
            scope: route.scope,
            public: route.public,
            handler: route.handler,
            principals: route.principals,
            principal_refusal: route.principal_refusal,
        };
        let outcomes =
            match routes::add_route(&mut table, Path::new("(imported)"), &imported, &mut keys) {
                Ok(outcomes) => outcomes,
                Err(errors) => {
                    let why = errors
                        .iter()
                        .map(|error| format!("{}: {}", error.path, error.message))
                        .collect::<Vec<_>>()
                        .join("; ");
                    result.skipped.push(skip(SkipReason::Rejected(why)));
                    continue;
                }
            };
        let mut refused = None;
        for (_, outcome) in outcomes {
            match outcome {
                Ok(()) => {}
                Err(matchit::InsertError::Conflict { with }) => {
                    refused = Some(SkipReason::Conflict(format!(
                        "matchit cannot hold {method} {path} beside the earlier route {method} {with}"
                    )));
                }
                Err(error) => refused = Some(SkipReason::InvalidPath(format!("{path}: {error}"))),
            }
        }
        if let Some(reason) = refused {
            result.skipped.push(skip(reason));
            continue;
        }
        result.notes.extend(notes);
        result.routes.push(imported);
    }
    result
}

/// The operation's percent-encoded path parameters that the route can declare opaque: whole segments of
/// `path` (the matchit pattern), never the scope's parameter (an opaque value is never a resource id); in
/// path order. Any other is left out with a note.
fn opaque_params(
    operation: &Operation,
    path: &str,
    scope: Option<&RawScope>,
    notes: &mut Vec<String>,
) -> Vec<String> {
    let scope_param = match scope {
        Some(RawScope::Account(param) | RawScope::Zone(param)) => Some(param.as_str()),
        _ => None,
    };
    let mut opaque = Vec::new();
    for segment in path.split('/') {
        let Some(name) = param_name(segment) else {
            continue;
        };
        if !operation.opaque.contains(name) {
            continue;
        }
        if scope_param == Some(name) {
            notes.push(format!(
                "{} {}: {name} is said to be percent-encoded but holds the resource id: not opaque",
                operation.method.to_ascii_uppercase(),
                operation.path
            ));
            continue;
        }
        opaque.push(name.to_string());
    }
    for name in &operation.opaque {
        if !opaque.contains(name) && scope_param != Some(name.as_str()) {
            notes.push(format!(
                "{} {}: {name} is said to be percent-encoded but is not a whole path segment: not opaque",
                operation.method.to_ascii_uppercase(),
                operation.path
            ));
        }
    }
    opaque
}

/// Whether a description says the value is percent-encoded in the URL ("Use percent-encoding to define key
/// names as part of a URL", "IP/CIDR range in URL-encoded format").
fn says_percent_encoded(description: Option<&Value>) -> bool {
    description.and_then(Value::as_str).is_some_and(|text| {
        let text = text.to_ascii_lowercase();
        text.contains("percent-encod") || text.contains("url-encod")
    })
}

/// `value`, or what its `$ref` (a local JSON pointer, `#/components/…`) points to, followed a few times.
fn resolve<'a>(document: &'a Value, value: &'a Value) -> &'a Value {
    let mut value = value;
    for _ in 0..8 {
        match value
            .get("$ref")
            .and_then(Value::as_str)
            .and_then(|reference| reference.strip_prefix('#'))
            .and_then(|pointer| document.pointer(pointer))
        {
            Some(target) => value = target,
            None => break,
        }
    }
    value
}

/// The path parameters of an operation (its own and its path item's) that the spec says are percent-encoded,
/// or marks `x-permgate-opaque: true`, on the parameter or its schema.
fn percent_encoded_params(
    document: &Value,
    item: &Map<String, Value>,
    fields: &Map<String, Value>,
) -> BTreeSet<String> {
    let parameters = [item.get("parameters"), fields.get("parameters")];
    parameters
        .into_iter()
        .flatten()
        .filter_map(Value::as_array)
        .flatten()
        .map(|parameter| resolve(document, parameter))
        .filter(|parameter| parameter.get("in").and_then(Value::as_str) == Some("path"))
        .filter_map(|parameter| {
            let schema = parameter
                .get("schema")
                .map(|schema| resolve(document, schema));
            let marked = |value: Option<&Value>| {
                value.and_then(|value| value.get("x-permgate-opaque")) == Some(&Value::Bool(true))
            };
            let opaque = marked(Some(parameter))
                || marked(schema)
                || says_percent_encoded(parameter.get("description"))
                || says_percent_encoded(schema.and_then(|schema| schema.get("description")));
            opaque
                .then(|| parameter.get("name").and_then(Value::as_str))
                .flatten()
                .map(str::to_string)
        })
        .collect()
}

/// A route label: the operation id with whitespace and control characters replaced by `-`.
fn label_of(operation_id: &str) -> String {
    operation_id
        .chars()
        .map(|c| {
            if c.is_whitespace() || c.is_control() {
                '-'
            } else {
                c
            }
        })
        .collect()
}

/// What an operation becomes, before its path is checked.
#[derive(Debug, Clone, Default)]
struct RouteParts {
    permissions: Option<RawPermissions>,
    /// `None` only for public routes.
    scope: Option<RawScope>,
    public: bool,
    handler: Option<Handler>,
    principals: Option<Vec<CredentialKind>>,
    principal_refusal: Option<RawRefusal>,
}

/// Decides one operation: its keys, scope, public flag and handler, or why it is skipped.
fn import_operation(
    operation: &Operation,
    method: &str,
    options: &ImportOptions,
    notes: &mut Vec<String>,
) -> Result<RouteParts, SkipReason> {
    let fields = &operation.fields;
    let what = format!("{method} {}", operation.path);
    let overridden = match fields.get("x-permgate-permissions") {
        Some(value) => parse_override(value).map_err(|message| {
            SkipReason::InvalidAnnotation(format!("invalid x-permgate-permissions: {message}"))
        })?,
        None => Override::default(),
    };
    if overridden.public {
        return Ok(RouteParts {
            public: true,
            ..RouteParts::default()
        });
    }
    // `principals` (and the route's own answer to the others) go with the route whatever decides its keys.
    let parts = |permissions: Option<RawPermissions>, scope: RawScope| RouteParts {
        permissions,
        scope: Some(scope),
        public: false,
        handler: overridden.handler,
        principals: overridden.principals.clone(),
        principal_refusal: overridden.principal_refusal.clone(),
    };
    // Token verification checks no key, only whose token it is (the scope says whose).
    if overridden.handler == Some(Handler::VerifyToken) {
        if overridden.permissions.is_some() {
            return Err(SkipReason::InvalidAnnotation(
                "invalid x-permgate-permissions: handler: verify_token takes no keys".to_string(),
            ));
        }
        let scope = match overridden.scope.clone() {
            Some(scope) => scope,
            None => match infer_scope(method, &operation.path) {
                InferredScope::Account(param) => RawScope::Account(param),
                InferredScope::User => RawScope::User,
                _ => RawScope::None,
            },
        };
        return Ok(parts(None, scope));
    }
    let permissions = match overridden.permissions.clone() {
        Some(permissions) => Some(permissions),
        None => annotated_permissions(fields, method, &what, options, notes)?,
    };
    let scope = match overridden.scope.clone() {
        Some(scope) => scope,
        None => match infer_scope(method, &operation.path) {
            InferredScope::Account(param) => RawScope::Account(param),
            InferredScope::Zone(param) => RawScope::Zone(param),
            InferredScope::User => RawScope::User,
            InferredScope::Collection => RawScope::Any,
            // Keys on the caller's own user (Radar's `com.cloudflare.api.user.read`) need no id in the path.
            InferredScope::Unknown(_)
                if permissions.as_ref().is_some_and(|permissions| {
                    permissions
                        .keys()
                        .iter()
                        .all(|key| key.starts_with(USER_KEY_PREFIX))
                }) =>
            {
                RawScope::User
            }
            InferredScope::Unknown(why) => {
                if permissions.is_none() {
                    return Err(no_keys_reason(fields));
                }
                return Err(SkipReason::NoScope(why));
            }
        },
    };
    if scope == RawScope::None {
        if let (Some(permissions), None) = (&permissions, &overridden.permissions) {
            notes.push(format!(
                "{what}: scope: none (x-permgate-permissions) checks no key, so {} is not required",
                permissions.keys().join(", ")
            ));
        }
        return Ok(parts(None, RawScope::None));
    }
    match permissions {
        Some(permissions) => Ok(parts(Some(permissions), scope)),
        None => Err(no_keys_reason(fields)),
    }
}

/// Keys from `x-cfPermissionsRequired` (first) or `x-api-token-group`; `None` when neither is there.
fn annotated_permissions(
    fields: &Map<String, Value>,
    method: &str,
    what: &str,
    options: &ImportOptions,
    notes: &mut Vec<String>,
) -> Result<Option<RawPermissions>, SkipReason> {
    let groups = match fields.get("x-api-token-group") {
        Some(value) => Some(string_list(value).ok_or_else(|| {
            SkipReason::InvalidAnnotation(
                "x-api-token-group is not a list of group names".to_string(),
            )
        })?),
        None => None,
    };
    if let Some(value) = fields.get("x-cfPermissionsRequired") {
        let keys = value
            .get("enum")
            .and_then(string_list)
            .filter(|keys| !keys.is_empty())
            .ok_or_else(|| {
                SkipReason::InvalidAnnotation(
                    "x-cfPermissionsRequired is not {enum: [keys…]}".to_string(),
                )
            })?;
        check_keys(&keys)?;
        let keys = dedup(keys);
        let permissions = if actions::is_safe_method(method) {
            combine(method, keys)
        } else {
            write_requirement(what, method, keys, groups.as_deref(), options, notes)
        };
        if let (Some(groups), Some(catalog)) = (&groups, &options.catalog) {
            cross_check(what, &permissions, groups, catalog, notes);
        }
        return Ok(Some(permissions));
    }
    let Some(groups) = groups else {
        return Ok(None);
    };
    let Some(catalog) = &options.catalog else {
        return Err(SkipReason::UnresolvedGroups(
            "x-api-token-group names permission groups; give --catalog to resolve them to keys"
                .to_string(),
        ));
    };
    let write = !actions::is_safe_method(method);
    match group_keys(what, &groups, catalog, write, notes) {
        Some(permissions) => Ok(Some(permissions)),
        None if write => Err(SkipReason::UnresolvedGroups(format!(
            "x-api-token-group [{}] names no group with a write key in the catalog, and a write is never \
             imported on keys that do not say they write",
            groups.join(", ")
        ))),
        None => Err(SkipReason::UnresolvedGroups(format!(
            "x-api-token-group [{}] resolves to no literal key in the catalog",
            groups.join(", ")
        ))),
    }
}

/// The keys of the groups an `x-api-token-group` lists: any one group suffices, so any of their keys does.
/// For a write (`write_only`), only each group's write keys: a key the group shares with a read group (DNS
/// Write's `#dns_records:read`) would let the read group pass. `None` when no key is left.
fn group_keys(
    what: &str,
    groups: &[String],
    catalog: &Catalog,
    write_only: bool,
    notes: &mut Vec<String>,
) -> Option<RawPermissions> {
    let mut keys: Vec<String> = Vec::new();
    let mut unknown: Vec<&str> = Vec::new();
    let mut no_write_key: Vec<&str> = Vec::new();
    for name in groups {
        let found = if write_only {
            catalog.write_keys(name)
        } else {
            catalog.literal_keys(name)
        };
        match found {
            Some(group_keys) if group_keys.is_empty() && write_only => no_write_key.push(name),
            Some(group_keys) => keys.extend(group_keys.into_iter().map(str::to_string)),
            None => unknown.push(name),
        }
    }
    if !unknown.is_empty() {
        notes.push(format!(
            "{what}: x-api-token-group names groups the catalog does not have: {} (left out: fewer \
             groups can only deny more)",
            unknown.join(", ")
        ));
    }
    if !no_write_key.is_empty() {
        notes.push(format!(
            "{what}: x-api-token-group lists {}, which hold no write key in the catalog (left out: a write \
             never passes on keys that do not say they write)",
            no_write_key.join(", ")
        ));
    }
    let keys = dedup(keys);
    match keys.len() {
        0 => None,
        1 => Some(RawPermissions::all_of(keys)),
        _ => Some(RawPermissions::AnyOf(keys)),
    }
}

/// The requirement of a write operation (any method but GET, HEAD, OPTIONS) from its
/// `x-cfPermissionsRequired` keys, never weaker than the spec and never passable by keys that do not say
/// they write:
///
/// - some key writes (`#dns_records:edit`, `….token.create`): all of the keys, as [`combine`] says;
/// - a POST whose keys all read (`#ssl:read` on `POST …/ssl/analyze`, `vectorize.index.read` on a vector
///   query): all of the keys: the spec says reading suffices, and queries, analyses and scans read through
///   a POST (`permgate validate` lists these routes, and the read groups that pass them);
/// - otherwise the keys do not say the operation writes: an action-less key Cloudflare requires for reads
///   and writes alike (`com.cloudflare.api.account.aig` on creating an AI Gateway), or only read keys on a
///   PUT, PATCH or DELETE, which change state whatever their annotation says. Then the route requires the
///   write keys of the groups `x-api-token-group` lists (newer spec versions list only "AI Gateway Write"
///   there), or, without them, the keys and the write flavour of each ([`actions::write_flavour`]:
///   `….aig` + `….aig.edit`, `#zone_settings:read` + `#zone_settings:edit`).
pub fn write_requirement(
    what: &str,
    method: &str,
    keys: Vec<String>,
    groups: Option<&[String]>,
    options: &ImportOptions,
    notes: &mut Vec<String>,
) -> RawPermissions {
    let actions: Vec<KeyAction> = keys.iter().map(|key| key_action(key)).collect();
    if actions.contains(&KeyAction::Write) {
        return combine(method, keys);
    }
    if method.eq_ignore_ascii_case("POST")
        && actions.iter().all(|action| *action == KeyAction::Read)
    {
        notes.push(format!(
            "{what}: x-cfPermissionsRequired names only read keys ({}): kept, a POST that reads; read \
             groups pass it (permgate validate lists it)",
            keys.join(", ")
        ));
        return combine(method, keys);
    }
    if let (Some(groups), Some(catalog)) = (groups, &options.catalog)
        && let Some(permissions) = group_keys(what, groups, catalog, true, notes)
    {
        notes.push(format!(
                "{what}: x-cfPermissionsRequired ({}) names no write action; required instead the write \
                 keys of the x-api-token-group groups: {}",
                keys.join(", "),
                permissions.keys().join(", ")
            ));
        return permissions;
    }
    let mut required = keys.clone();
    for key in &keys {
        if key_action(key) != KeyAction::Write {
            required.push(actions::write_flavour(key));
        }
    }
    let required = dedup(required);
    notes.push(format!(
        "{what}: x-cfPermissionsRequired ({}) names no write action; required the write flavour too: {}",
        keys.join(", "),
        required.get(keys.len()..).unwrap_or_default().join(", ")
    ));
    RawPermissions::all_of(required)
}

/// Notes every listed group that would not pass the route: the spec says it suffices, so the catalog's
/// mapping is missing a key.
fn cross_check(
    what: &str,
    permissions: &RawPermissions,
    groups: &[String],
    catalog: &Catalog,
    notes: &mut Vec<String>,
) {
    for name in groups {
        let passes = match permissions {
            RawPermissions::List(keys) | RawPermissions::AllOf(keys) => {
                keys.iter().all(|key| catalog.grants(name, key))
            }
            RawPermissions::AnyOf(keys) => keys.iter().any(|key| catalog.grants(name, key)),
        };
        if !passes {
            notes.push(format!(
                "{what}: x-api-token-group lists {name:?}, but in the catalog it does not grant {}",
                permissions.keys().join(" + ")
            ));
        }
    }
}

/// Why an operation without keys is skipped (or that it is public, which the caller handles first).
fn no_keys_reason(fields: &Map<String, Value>) -> SkipReason {
    match fields.get("security").and_then(Value::as_array) {
        Some(schemes)
            if !schemes.is_empty()
                && schemes.iter().all(|scheme| {
                    scheme.as_object().is_some_and(|scheme| {
                        scheme.len() == 1 && scheme.contains_key("user_service_key")
                    })
                }) =>
        {
            SkipReason::ServiceKeyOnly
        }
        _ => SkipReason::NoAnnotation,
    }
}

/// Whether the operation's `security` lets a caller in without any credential (`[]`, or `{}` among the
/// alternatives).
fn allows_anonymous(fields: &Map<String, Value>) -> bool {
    fields
        .get("security")
        .and_then(Value::as_array)
        .is_some_and(|schemes| {
            schemes.is_empty()
                || schemes
                    .iter()
                    .any(|scheme| scheme.as_object().is_some_and(Map::is_empty))
        })
}

fn check_keys(keys: &[String]) -> Result<(), SkipReason> {
    for key in keys {
        match KeyPattern::parse(key) {
            Ok(KeyPattern::Exact(_)) => {}
            Ok(_) => {
                return Err(SkipReason::InvalidAnnotation(format!(
                    "{key:?} is a pattern; a route requires literal keys"
                )));
            }
            Err(message) => return Err(SkipReason::InvalidAnnotation(message)),
        }
    }
    Ok(())
}

fn dedup(keys: Vec<String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(keys.len());
    for key in keys {
        if !out.contains(&key) {
            out.push(key);
        }
    }
    out
}

fn string_list(value: &Value) -> Option<Vec<String>> {
    value
        .as_array()?
        .iter()
        .map(|item| item.as_str().map(str::to_string))
        .collect()
}

/// Parses `x-permgate-permissions` with serde: a list of keys (all of them), or an
/// object with at most one of `all_of` / `any_of`, and optional `scope`, `public`, `handler`, `principals`
/// and `principal_refusal`, in the route file's own types.
fn parse_override(value: &Value) -> Result<Override, String> {
    // A list is the keys (all of them); anything else must be the object form (serde names what is wrong).
    if value.is_array() {
        let keys = Vec::<String>::deserialize(value)
            .map_err(|error| format!("expected a list of keys: {error}"))?;
        return override_keys(RawPermissions::all_of(keys)).map(|permissions| Override {
            permissions: Some(permissions),
            ..Override::default()
        });
    }
    let fields = AnnotationFields::deserialize(value)
        .map_err(|error| format!("expected a list of keys or an object: {error}"))?;
    let permissions = match (fields.all_of, fields.any_of) {
        (Some(_), Some(_)) => return Err("give all_of or any_of, not both".to_string()),
        (Some(keys), None) => Some(override_keys(RawPermissions::all_of(keys))?),
        (None, Some(keys)) => Some(override_keys(RawPermissions::AnyOf(keys))?),
        (None, None) => None,
    };
    let principals = fields.principals.map(principals).transpose()?;
    let result = Override {
        permissions,
        scope: fields.scope,
        public: fields.public,
        handler: fields.handler,
        principals,
        principal_refusal: fields.principal_refusal.map(refusal).transpose()?,
    };
    if result.public
        && (result.permissions.is_some()
            || result.scope.is_some()
            || result.handler.is_some()
            || result.principals.is_some())
    {
        return Err("public: true takes no keys, scope, handler or principals".to_string());
    }
    if result.principal_refusal.is_some() && result.principals.is_none() {
        return Err(
            "principal_refusal answers the credentials principals leaves out; give principals too"
                .to_string(),
        );
    }
    if result.scope == Some(RawScope::None) && result.permissions.is_some() {
        return Err("scope: none checks no key, so it takes no all_of/any_of".to_string());
    }
    Ok(result)
}

/// The object form of `x-permgate-permissions`: the route file's own fields, read into the route file's
/// own types ([`crate::config::raw::routes`]); unknown fields are errors.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AnnotationFields {
    #[serde(default)]
    all_of: Option<Vec<String>>,
    #[serde(default)]
    any_of: Option<Vec<String>>,
    #[serde(default)]
    scope: Option<RawScope>,
    #[serde(default)]
    public: bool,
    #[serde(default)]
    handler: Option<Handler>,
    #[serde(default)]
    principals: Option<Vec<CredentialKind>>,
    #[serde(default)]
    principal_refusal: Option<RawRefusal>,
}

/// `principals: [user_token, account_token, api_key]`: a non-empty list of distinct kinds.
fn principals(kinds: Vec<CredentialKind>) -> Result<Vec<CredentialKind>, String> {
    if kinds.is_empty() {
        return Err("principals is empty: it would admit no credential at all".to_string());
    }
    for (index, kind) in kinds.iter().enumerate() {
        if kinds.get(..index).is_some_and(|seen| seen.contains(kind)) {
            return Err(format!("principals lists {} twice", kind.as_str()));
        }
    }
    Ok(kinds)
}

/// `principal_refusal: {status: 4xx, code: N, message: "…"}`, as a route file would give it.
fn refusal(raw: RawRefusal) -> Result<RawRefusal, String> {
    if !(400..=499).contains(&raw.status) {
        return Err("principal_refusal.status must be a client error, 400-499".to_string());
    }
    if raw.message.is_empty() || raw.message.chars().any(char::is_control) {
        return Err(
            "principal_refusal.message must be a non-empty text without control characters"
                .to_string(),
        );
    }
    Ok(raw)
}

fn override_keys(permissions: RawPermissions) -> Result<RawPermissions, String> {
    if permissions.keys().is_empty() {
        return Err(
            "an empty key list; use scope: none or public: true for a route that requires none"
                .to_string(),
        );
    }
    check_keys(permissions.keys()).map_err(|reason| reason.to_string())?;
    Ok(match permissions {
        RawPermissions::List(keys) | RawPermissions::AllOf(keys) => {
            RawPermissions::all_of(dedup(keys))
        }
        RawPermissions::AnyOf(keys) => RawPermissions::AnyOf(dedup(keys)),
    })
}

/// Every operation of every spec, in (path, method) order; a later spec's operation with the same method
/// and path (up to parameter names) overlays the earlier one field by field. An operation without its
/// own `security` inherits its spec's top-level one. Public operations get `x-permgate-permissions:
/// {public: true}` here, so the overlay of a later spec can still annotate them.
fn collect(specs: &[Spec]) -> Vec<Operation> {
    let mut operations: BTreeMap<(String, usize), Operation> = BTreeMap::new();
    for spec in specs {
        let default_security = spec.document.get("security").cloned();
        let Some(paths) = spec.document.get("paths").and_then(Value::as_object) else {
            continue;
        };
        for (path, item) in paths {
            let Some(item) = item.as_object() else {
                continue;
            };
            for (order, method) in METHODS.iter().enumerate() {
                let Some(fields) = item.get(*method).and_then(Value::as_object) else {
                    continue;
                };
                let key = (shape_of(path), order);
                let opaque = percent_encoded_params(&spec.document, item, fields);
                match operations.get_mut(&key) {
                    Some(existing) => {
                        existing.path = path.clone();
                        for (field, value) in fields {
                            existing.fields.insert(field.clone(), value.clone());
                        }
                        existing.opaque.extend(opaque);
                    }
                    None => {
                        let mut fields = fields.clone();
                        if let (false, Some(security)) =
                            (fields.contains_key("security"), &default_security)
                        {
                            fields.insert("security".to_string(), security.clone());
                        }
                        operations.insert(
                            key,
                            Operation {
                                method,
                                path: path.clone(),
                                fields,
                                opaque,
                            },
                        );
                    }
                }
            }
        }
    }
    operations
        .into_values()
        .map(|mut operation| {
            if !operation.fields.contains_key("x-permgate-permissions")
                && !operation.fields.contains_key("x-cfPermissionsRequired")
                && !operation.fields.contains_key("x-api-token-group")
                && allows_anonymous(&operation.fields)
            {
                let mut public = Map::new();
                public.insert("public".to_string(), Value::Bool(true));
                operation
                    .fields
                    .insert("x-permgate-permissions".to_string(), Value::Object(public));
            }
            operation
        })
        .collect()
}

/// The path with every parameter name erased: two spellings of one path have the same shape.
fn shape_of(path: &str) -> String {
    let mut shape = String::with_capacity(path.len());
    let mut inside = false;
    for c in path.chars() {
        match (c, inside) {
            ('{', _) => {
                inside = true;
                shape.push('{');
            }
            ('}', true) => {
                inside = false;
                shape.push('}');
            }
            (_, true) => {}
            (c, false) => shape.push(c),
        }
    }
    shape
}

#[cfg(test)]
mod tests;
