//! The route table: route files compiled into matchit routers, and the lookup from (method, canonical path)
//! to the route, its required keys and the resource id its scope parameter names (SPEC §2.5).
//!
//! Compile, don't interpret: every route is checked once at load time (all errors at once, each with file
//! and path), keys are interned, and the scope parameter is stored by position so that a lookup is one or
//! two matchit walks and no allocation of ours. Pure: no I/O.

use std::fmt;
use std::ops::Range;
use std::path::Path;

use matchit::{InsertError, Router};
use rustc_hash::FxHashMap;
use serde::Deserialize;

use super::raw::{RawMethods, RawPermissions, RawRoute, RawRouteFile, RawScope};
use super::target::{
    CanonicalTarget, TargetRejection, canonicalize, check_encoded_slash_segment, has_encoded_slash,
};
use crate::config::{ConfigError, SourceFile};
use crate::policy::keys::{KeyId, KeyInterner, KeyPattern};

/// A route the gateway answers itself instead of forwarding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Handler {
    /// `GET /user/tokens/verify`: reports on the presented token.
    VerifyToken,
}

/// A kind of credential, as a route's `principals:` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CredentialKind {
    /// A user-owned API token.
    UserToken,
    /// An account-owned API token.
    AccountToken,
    /// A legacy user API key (`X-Auth-Email` + `X-Auth-Key`).
    ApiKey,
}

/// The kinds of credential a route accepts: a set of [`CredentialKind`]s, all of them by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AcceptedCredentials(u8);

/// A route's own answer to a credential of a kind it does not accept (`principal_refusal`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteRefusal {
    /// A client error: 400–499.
    pub status: u16,
    pub code: u32,
    pub message: Box<str>,
}

/// A path parameter a route declares opaque: the value may hold an encoded slash (`%2F`); it is kept and
/// forwarded exactly as received, never decoded and never a resource id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpaqueParam {
    pub name: Box<str>,
    /// Its segment of the path, counting from 0 before the first `/` (`/a/{p}`: 2): an opaque parameter is a
    /// whole segment, so this is where it is in any path the route matches.
    pub segment: usize,
}

/// The permission keys a route requires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requirement {
    /// No key (public routes and `scope: none`).
    None,
    /// Every key (a plain list or `all_of`).
    AllOf(Box<[KeyId]>),
    /// At least one key (`any_of`).
    AnyOf(Box<[KeyId]>),
}

/// The resource a route targets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// The account whose id is in path parameter `param`.
    Account { param: Box<str> },
    /// The zone whose id is in path parameter `param`.
    Zone { param: Box<str> },
    /// The caller's own user.
    User,
    /// Allowed when the keys are held on at least one resource (collections).
    Any,
    /// Any usable credential, no permission check; also the scope of public routes.
    None,
}

/// One compiled route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The route's `id`, or its path pattern: a bounded label for metrics and logs.
    pub label: Box<str>,
    /// The matchit path pattern, as written.
    pub pattern: Box<str>,
    /// The methods as written (`GET`, `GET, HEAD`, `*`), for display.
    pub methods: Box<str>,
    pub requirement: Requirement,
    pub scope: Scope,
    pub handler: Option<Handler>,
    /// No credential needed (then `requirement` is `None` and `scope` is `None`).
    pub public: bool,
    /// The kinds of credential that may call the route (`principals:`; all of them when absent).
    pub principals: AcceptedCredentials,
    /// The route's own answer to a credential of another kind; `None`: 403/10000 with the reason.
    pub principal_refusal: Option<RouteRefusal>,
    /// The parameters that may hold an encoded slash (`opaque:`), in path order.
    pub opaque: Box<[OpaqueParam]>,
}

/// The result of a lookup: the route and the id of the resource its scope names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteMatch<'t, 'p> {
    /// Borrowed from the table.
    pub route: &'t Route,
    /// The route's index in [`RouteTable::routes`].
    pub index: usize,
    /// The value of the scope parameter, for `Scope::Account` and `Scope::Zone`; borrowed from the path.
    pub resource_id: Option<&'p str>,
}

/// Every route of a config, in one matchit router per explicit method plus one for `*`.
///
/// A lookup tries the request method's router first, then the `*` router: a route for a named method
/// takes precedence over a `*` route that matches the same path.
#[derive(Clone, Default)]
pub struct RouteTable {
    routes: Vec<Route>,
    /// Per route (same index): the position of the scope parameter among the path's parameters. matchit
    /// yields parameters in path order, so the value is found without comparing names.
    scope_params: Vec<Option<usize>>,
    /// One router per explicitly named method; a handful, so a linear scan beats hashing.
    by_method: Vec<(Box<str>, Router<u32>)>,
    any_method: Router<u32>,
}

/// Where a route was written, to name both sides of a conflict.
#[derive(Debug, Clone)]
struct Origin {
    file: usize,
    index: usize,
    pattern: Box<str>,
}

/// A path parameter of a pattern, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Param {
    name: String,
    catch_all: bool,
}

const ANY_METHOD: &str = "*";

// === impl CredentialKind ===

impl CredentialKind {
    /// Every kind, in the order the file format lists them.
    pub const ALL: [CredentialKind; 3] = [Self::UserToken, Self::AccountToken, Self::ApiKey];

    /// The name in route files: `user_token`, `account_token`, `api_key`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::UserToken => "user_token",
            Self::AccountToken => "account_token",
            Self::ApiKey => "api_key",
        }
    }

    /// The kind in words, plural, for reasons: `account-owned tokens`.
    pub fn described(self) -> &'static str {
        match self {
            Self::UserToken => "user-owned tokens",
            Self::AccountToken => "account-owned tokens",
            Self::ApiKey => "legacy API keys",
        }
    }

    fn bit(self) -> u8 {
        match self {
            Self::UserToken => 1,
            Self::AccountToken => 2,
            Self::ApiKey => 4,
        }
    }
}

// === impl AcceptedCredentials ===

impl AcceptedCredentials {
    /// Every kind: a route without `principals:`.
    pub const ALL: Self = Self(7);

    /// Exactly these kinds.
    pub fn of(kinds: impl IntoIterator<Item = CredentialKind>) -> Self {
        Self(kinds.into_iter().fold(0, |bits, kind| bits | kind.bit()))
    }

    /// Whether a credential of `kind` may call the route.
    pub fn accepts(self, kind: CredentialKind) -> bool {
        self.0 & kind.bit() != 0
    }

    /// Whether every kind is accepted (no restriction).
    pub fn is_all(self) -> bool {
        self == Self::ALL
    }
}

impl Default for AcceptedCredentials {
    fn default() -> Self {
        Self::ALL
    }
}

impl fmt::Display for AcceptedCredentials {
    /// `user_token, api_key`: the accepted kinds as route files name them.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for kind in CredentialKind::ALL {
            if self.accepts(kind) {
                if !first {
                    f.write_str(", ")?;
                }
                f.write_str(kind.as_str())?;
                first = false;
            }
        }
        Ok(())
    }
}

// === impl RouteTable ===

impl RouteTable {
    /// A table with no routes: every request is answered "no route" (400/7000).
    pub fn empty() -> Self {
        Self::default()
    }

    /// Parses and compiles route files; every problem of every file is reported at once.
    pub fn compile(
        files: &[SourceFile],
        keys: &mut KeyInterner,
    ) -> Result<RouteTable, Vec<ConfigError>> {
        let mut table = Self::empty();
        let mut errors = Vec::new();
        let mut origins: FxHashMap<(Box<str>, Box<str>), Origin> = FxHashMap::default();
        for (file_index, file) in files.iter().enumerate() {
            let raw = match file.parse::<RawRouteFile>() {
                Ok(raw) => raw,
                Err(error) => {
                    errors.push(error);
                    continue;
                }
            };
            for (index, raw_route) in raw.routes.iter().enumerate() {
                let at = RouteAt {
                    file: &file.path,
                    index,
                };
                let Some(compiled) = compile_route(raw_route, at, keys, &mut errors) else {
                    continue;
                };
                let origin = Origin {
                    file: file_index,
                    index,
                    pattern: compiled.route.pattern.clone(),
                };
                table.insert(compiled, origin, files, &mut origins, &mut errors);
            }
        }
        if errors.is_empty() {
            Ok(table)
        } else {
            for file in files {
                file.locate(&mut errors);
            }
            Err(errors)
        }
    }

    /// Adds a checked route to the routers of its methods; a conflict is an error naming both routes.
    fn insert(
        &mut self,
        compiled: Compiled,
        origin: Origin,
        files: &[SourceFile],
        origins: &mut FxHashMap<(Box<str>, Box<str>), Origin>,
        errors: &mut Vec<ConfigError>,
    ) {
        let Ok(value) = u32::try_from(self.routes.len()) else {
            errors.push(ConfigError::new(
                file_path(files, origin.file),
                format!("routes[{}]", origin.index),
                "too many routes",
            ));
            return;
        };
        let mut inserted = false;
        for method in &compiled.methods {
            let router = self.router_mut(method);
            match router.insert(&*compiled.route.pattern, value) {
                Ok(()) => {
                    inserted = true;
                    origins.insert(
                        (method.clone(), compiled.route.pattern.clone()),
                        origin.clone(),
                    );
                }
                Err(InsertError::Conflict { with }) => {
                    let other = origins.get(&(method.clone(), Box::from(with.as_str())));
                    let other = match other {
                        Some(other) => format!(
                            "routes[{}] ({}) in {}",
                            other.index,
                            other.pattern,
                            file_path(files, other.file).display()
                        ),
                        None => format!("the route {with}"),
                    };
                    errors.push(ConfigError::new(
                        file_path(files, origin.file),
                        format!("routes[{}].path", origin.index),
                        format!(
                            "{method} {} conflicts with {other}: the two cannot be told apart (same method and \
                             path, or an ambiguous mix of parameters)",
                            compiled.route.pattern
                        ),
                    ));
                }
                Err(error) => {
                    // Not about other routes: report it once, not once per method.
                    errors.push(ConfigError::new(
                        file_path(files, origin.file),
                        format!("routes[{}].path", origin.index),
                        format!("invalid path pattern {}: {error}", compiled.route.pattern),
                    ));
                    break;
                }
            }
        }
        if inserted {
            self.routes.push(compiled.route);
            self.scope_params.push(compiled.scope_param);
        }
    }

    fn router_mut(&mut self, method: &str) -> &mut Router<u32> {
        if method == ANY_METHOD {
            return &mut self.any_method;
        }
        let position = match self
            .by_method
            .iter()
            .position(|(name, _)| &**name == method)
        {
            Some(position) => position,
            None => {
                self.by_method.push((method.into(), Router::new()));
                self.by_method.len() - 1
            }
        };
        match self.by_method.get_mut(position) {
            Some((_, router)) => router,
            // The position was just found or pushed; fall back to the `*` router rather than panic.
            None => &mut self.any_method,
        }
    }

    /// The route for `method` and a canonical `path`, with the resource id its scope names.
    ///
    /// `None` when no route matches, including a path that exists only for other methods.
    #[inline]
    pub fn lookup<'t, 'p>(&'t self, method: &str, path: &'p str) -> Option<RouteMatch<'t, 'p>> {
        let (index, route, resource_id) = self.find(method, path)?;
        Some(RouteMatch {
            route,
            index,
            resource_id: resource_id.and_then(|range| path.get(range)),
        })
    }

    /// The route for `method` and `path`, and where in `path` the value of its scope parameter is (a range,
    /// not a borrow, so that [`RouteTable::route_request`] can look up once and still change the path).
    fn find(&self, method: &str, path: &str) -> Option<(usize, &Route, Option<Range<usize>>)> {
        let matched = self
            .by_method
            .iter()
            .find(|(name, _)| **name == *method)
            .and_then(|(_, router)| router.at(path).ok())
            .or_else(|| self.any_method.at(path).ok())?;
        let index = *matched.value as usize;
        let route = self.routes.get(index)?;
        let resource_id = match self.scope_params.get(index) {
            Some(Some(position)) => matched
                .params
                .iter()
                .nth(*position)
                .and_then(|(_, value)| range_within(path, value)),
            _ => None,
        };
        Some((index, route, resource_id))
    }

    /// Looks up a request's target (from [`super::target::canonicalize_request`]), holding it to the
    /// matched route's opaque parameters, so that the string routed is the one authorized and forwarded:
    ///
    /// - a segment holding an encoded slash must be an opaque parameter of the matched route; anywhere else,
    ///   or when no route matches, the request is refused as every `%2F` used to be ([`TargetRejection::EncodedSlash`]);
    /// - an opaque parameter is put back exactly as received (`received` is the raw request-target), never
    ///   decoded, and the path is looked up again: it must match the same route, or the request is refused.
    ///
    /// `target.path` is then the path to forward. `Ok(None)`: no route.
    pub fn route_request<'t, 'p>(
        &'t self,
        method: &str,
        target: &'p mut CanonicalTarget,
        received: &str,
    ) -> Result<Option<RouteMatch<'t, 'p>>, TargetRejection> {
        let Some((index, route, mut resource_id)) = self.find(method, &target.path) else {
            return if target.encoded_slash {
                Err(TargetRejection::EncodedSlash)
            } else {
                Ok(None)
            };
        };
        if target.encoded_slash {
            let admitted = target.path.split('/').enumerate().all(|(index, segment)| {
                !has_encoded_slash(segment) || route.opaque.iter().any(|p| p.segment == index)
            });
            if !admitted {
                return Err(TargetRejection::EncodedSlash);
            }
        }
        if !route.opaque.is_empty() {
            let as_received = path_with_opaque_segments_as_received(route, &target.path, received)?;
            if as_received != target.path {
                target.path = as_received;
                match self.find(method, &target.path) {
                    Some((_, again, again_resource_id)) if std::ptr::eq(again, route) => {
                        resource_id = again_resource_id;
                    }
                    _ => return Err(TargetRejection::OpaqueChangedRoute),
                }
            }
        }
        let path: &'p str = &target.path;
        Ok(Some(RouteMatch {
            route,
            index,
            resource_id: resource_id.and_then(|range| path.get(range)),
        }))
    }

    /// How many routes (a route with several methods counts once).
    pub fn len(&self) -> usize {
        self.routes.len()
    }

    /// Whether there are no routes.
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    /// Every route, in file order.
    pub fn routes(&self) -> &[Route] {
        &self.routes
    }
}

impl fmt::Debug for RouteTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RouteTable")
            .field("routes", &self.routes)
            .finish_non_exhaustive()
    }
}

/// Where `part`, a slice of `whole` (matchit's parameter values are slices of the path it was given), lies
/// in it; checked, so that anything else is `None` (no resource id: the decision then fails closed).
fn range_within(whole: &str, part: &str) -> Option<Range<usize>> {
    let start = (part.as_ptr() as usize).checked_sub(whole.as_ptr() as usize)?;
    let end = start.checked_add(part.len())?;
    let range = start..end;
    (whole.get(range.clone()) == Some(part)).then_some(range)
}

/// `canonical` with each of `route`'s opaque segments replaced by the same segment of `received` (the raw
/// request-target), each checked as a segment kept as received must be.
fn path_with_opaque_segments_as_received(
    route: &Route,
    canonical: &str,
    received: &str,
) -> Result<String, TargetRejection> {
    let received_path = received.split('?').next().unwrap_or(received);
    let raw: Vec<&str> = received_path.split('/').collect();
    let mut out = String::with_capacity(canonical.len());
    for (index, segment) in canonical.split('/').enumerate() {
        if index > 0 {
            out.push('/');
        }
        if route.opaque.iter().any(|param| param.segment == index) {
            // Canonicalisation never adds or removes a `/`, so the raw path has the same segments.
            let Some(raw_segment) = raw.get(index) else {
                return Err(TargetRejection::OpaqueChangedRoute);
            };
            check_encoded_slash_segment(raw_segment)?;
            out.push_str(raw_segment);
        } else {
            out.push_str(segment);
        }
    }
    Ok(out)
}

fn file_path(files: &[SourceFile], index: usize) -> &Path {
    files
        .get(index)
        .map(|file| file.path.as_path())
        .unwrap_or(Path::new(""))
}

/// Where a route is, to build error paths like `routes[3].scope`.
#[derive(Clone, Copy)]
struct RouteAt<'a> {
    file: &'a Path,
    index: usize,
}

impl RouteAt<'_> {
    fn error(&self, field: &str, message: impl Into<String>) -> ConfigError {
        let path = if field.is_empty() {
            format!("routes[{}]", self.index)
        } else {
            format!("routes[{}].{field}", self.index)
        };
        ConfigError::new(self.file, path, message)
    }
}

/// A route that passed every check of its own, ready to insert.
struct Compiled {
    route: Route,
    methods: Vec<Box<str>>,
    scope_param: Option<usize>,
}

/// Checks one route on its own; pushes its errors and returns `None` when it has any.
fn compile_route(
    raw: &RawRoute,
    at: RouteAt<'_>,
    keys: &mut KeyInterner,
    errors: &mut Vec<ConfigError>,
) -> Option<Compiled> {
    let before = errors.len();
    let methods = compile_methods(&raw.method, at, errors);
    let params = match parse_pattern(&raw.path) {
        Ok(params) => Some(params),
        Err(message) => {
            errors.push(at.error("path", message));
            None
        }
    };
    let requirement = compile_requirement(raw.permissions.as_ref(), at, keys, errors);
    let label = match &raw.id {
        Some(id) if id.is_empty() || id.chars().any(|c| c.is_whitespace() || c.is_control()) => {
            errors.push(at.error(
                "id",
                "a route id must be non-empty, without spaces or control characters",
            ));
            raw.path.as_str()
        }
        Some(id) => id.as_str(),
        None => raw.path.as_str(),
    };
    let has_keys = raw.permissions.is_some();
    let verify = raw.handler == Some(Handler::VerifyToken);
    if verify && has_keys {
        errors.push(at.error(
            "permissions",
            "handler: verify_token checks no permission (only whose token it is), so it takes no permissions",
        ));
    }

    let mut scope_param = None;
    let scope = if raw.public {
        if raw.scope.is_some() {
            errors.push(at.error(
                "scope",
                "a public route takes no scope: it has no credential to scope",
            ));
        }
        if has_keys {
            errors.push(at.error("permissions", "a public route takes no permissions"));
        }
        if raw.handler.is_some() {
            errors.push(at.error(
                "handler",
                "a handler route needs a credential, so it cannot be public",
            ));
        }
        Scope::None
    } else {
        match &raw.scope {
            None => {
                errors.push(at.error(
                    "",
                    "a route needs a scope ({ zone: <param> }, { account: <param> }, user, any or none), or \
                     public: true",
                ));
                Scope::None
            }
            Some(RawScope::None) => {
                if has_keys {
                    errors.push(at.error(
                        "permissions",
                        "scope: none checks no permission, so it takes no permissions (use user, any, zone \
                         or account to require keys)",
                    ));
                }
                Scope::None
            }
            Some(scope @ (RawScope::User | RawScope::Any)) => {
                if verify {
                    if *scope == RawScope::Any {
                        errors.push(at.error(
                            "scope",
                            "handler: verify_token answers for one token: its scope is none (any token), \
                             user (user-owned tokens) or { account: <param> } (that account's tokens)",
                        ));
                    }
                } else if !has_keys {
                    errors.push(at.error(
                        "",
                        "this scope needs permissions (use scope: none for a route that checks none)",
                    ));
                }
                if *scope == RawScope::User {
                    Scope::User
                } else {
                    Scope::Any
                }
            }
            Some(scope @ (RawScope::Zone(param) | RawScope::Account(param))) => {
                if verify {
                    if matches!(scope, RawScope::Zone(_)) {
                        errors.push(at.error(
                            "scope",
                            "handler: verify_token answers for one token: its scope is none (any token), \
                             user (user-owned tokens) or { account: <param> } (that account's tokens)",
                        ));
                    }
                } else if !has_keys {
                    errors.push(at.error(
                        "",
                        "this scope needs permissions (use scope: none for a route that checks none)",
                    ));
                }
                let field = if matches!(scope, RawScope::Zone(_)) {
                    "scope.zone"
                } else {
                    "scope.account"
                };
                if let Some(params) = &params {
                    match params.iter().position(|p| p.name == *param) {
                        Some(position) if params.get(position).is_some_and(|p| p.catch_all) => {
                            errors.push(at.error(
                                field,
                                format!(
                                    "the scope parameter {param} is a catch-all ({{*{param}}}); a resource id \
                                     is one segment"
                                ),
                            ));
                        }
                        Some(position) => scope_param = Some(position),
                        None => errors.push(at.error(
                            field,
                            format!("{param:?} is not a parameter of the path {}", raw.path),
                        )),
                    }
                }
                let param: Box<str> = param.as_str().into();
                if matches!(scope, RawScope::Zone(_)) {
                    Scope::Zone { param }
                } else {
                    Scope::Account { param }
                }
            }
        }
    };

    let (principals, principal_refusal) = compile_principals(raw, at, errors);
    let opaque = compile_opaque(raw, &scope, at, errors);

    if errors.len() > before {
        return None;
    }
    let methods = methods?;
    Some(Compiled {
        route: Route {
            label: label.into(),
            pattern: raw.path.as_str().into(),
            methods: methods.join(", ").into(),
            requirement: requirement?,
            scope,
            handler: raw.handler,
            public: raw.public,
            principals,
            principal_refusal,
            opaque,
        },
        methods,
        scope_param,
    })
}

/// `opaque: [param, …]`: each a whole-segment parameter of the path (not a catch-all), not the scope's
/// parameter (an opaque value is never a resource id), named once.
fn compile_opaque(
    raw: &RawRoute,
    scope: &Scope,
    at: RouteAt<'_>,
    errors: &mut Vec<ConfigError>,
) -> Box<[OpaqueParam]> {
    let mut opaque = Vec::with_capacity(raw.opaque.len());
    for (index, name) in raw.opaque.iter().enumerate() {
        let field = format!("opaque[{index}]");
        let whole = format!("{{{name}}}");
        let segment = raw.path.split('/').position(|segment| segment == whole);
        let scope_param = match scope {
            Scope::Account { param } | Scope::Zone { param } => Some(&**param),
            Scope::User | Scope::Any | Scope::None => None,
        };
        if raw
            .opaque
            .get(..index)
            .is_some_and(|seen| seen.contains(name))
        {
            errors.push(at.error(&field, format!("{name} is listed twice")));
        } else if scope_param == Some(name.as_str()) {
            errors.push(at.error(
                &field,
                format!(
                    "{name} holds the resource id of the route's scope; an opaque parameter is never a \
                     resource id"
                ),
            ));
        } else if let Some(segment) = segment {
            opaque.push(OpaqueParam {
                name: name.as_str().into(),
                segment,
            });
        } else if raw.path.contains(&format!("{{*{name}}}")) {
            errors.push(at.error(
                &field,
                format!("{name} is a catch-all; an opaque parameter is one whole segment"),
            ));
        } else if raw.path.contains(&whole) {
            errors.push(at.error(
                &field,
                format!(
                    "{name} shares its segment with other text; an opaque parameter is a whole segment \
                     ({{{name}}} between two /)"
                ),
            ));
        } else {
            errors.push(at.error(
                &field,
                format!("{name:?} is not a parameter of the path {}", raw.path),
            ));
        }
    }
    opaque.into_boxed_slice()
}

/// `principals:` and `principal_refusal:`: which kinds of credential may call the route, and the route's
/// own answer to the others.
fn compile_principals(
    raw: &RawRoute,
    at: RouteAt<'_>,
    errors: &mut Vec<ConfigError>,
) -> (AcceptedCredentials, Option<RouteRefusal>) {
    let principals = match &raw.principals {
        None => AcceptedCredentials::ALL,
        Some(_) if raw.public => {
            errors.push(at.error(
                "principals",
                "a public route checks no credential, so it takes no principals",
            ));
            AcceptedCredentials::ALL
        }
        Some(kinds) if kinds.is_empty() => {
            errors.push(at.error(
                "principals",
                "an empty principals list admits no credential at all; remove the route instead (a request \
                 no route matches is refused)",
            ));
            AcceptedCredentials::ALL
        }
        Some(kinds) => {
            for (index, kind) in kinds.iter().enumerate() {
                if kinds.get(..index).is_some_and(|seen| seen.contains(kind)) {
                    errors.push(at.error(
                        &format!("principals[{index}]"),
                        format!("{} is listed twice", kind.as_str()),
                    ));
                }
            }
            AcceptedCredentials::of(kinds.iter().copied())
        }
    };
    let refusal = raw.principal_refusal.as_ref().and_then(|refusal| {
        let before = errors.len();
        if raw.principals.is_none() {
            errors.push(at.error(
                "principal_refusal",
                "principal_refusal answers the credentials principals leaves out; give principals too",
            ));
        }
        if !(400..=499).contains(&refusal.status) {
            errors.push(at.error(
                "principal_refusal.status",
                format!(
                    "{} is not a client error; a refusal's status is 400-499",
                    refusal.status
                ),
            ));
        }
        if refusal.message.is_empty() || refusal.message.chars().any(char::is_control) {
            errors.push(at.error(
                "principal_refusal.message",
                "the message must be non-empty, without control characters",
            ));
        }
        (errors.len() == before).then(|| RouteRefusal {
            status: refusal.status,
            code: refusal.code,
            message: refusal.message.as_str().into(),
        })
    });
    (principals, refusal)
}

/// Methods are case-sensitive tokens (RFC 9110 §9.1), so a lowercase one is an error, not a guess.
fn compile_methods(
    raw: &RawMethods,
    at: RouteAt<'_>,
    errors: &mut Vec<ConfigError>,
) -> Option<Vec<Box<str>>> {
    let before = errors.len();
    let listed: Vec<(String, &String)> = match raw {
        RawMethods::One(method) => vec![("method".to_string(), method)],
        RawMethods::List(methods) => {
            if methods.is_empty() {
                errors.push(at.error("method", "the method list is empty"));
            }
            methods
                .iter()
                .enumerate()
                .map(|(index, method)| (format!("method[{index}]"), method))
                .collect()
        }
    };
    let mut methods: Vec<Box<str>> = Vec::with_capacity(listed.len());
    for (field, method) in &listed {
        if let Err(message) = check_method(method) {
            errors.push(at.error(field, message));
        } else if methods.iter().any(|seen| **seen == ***method) {
            errors.push(at.error(field, format!("method {method} is listed twice")));
        } else {
            methods.push(method.as_str().into());
        }
    }
    if listed.len() > 1 && methods.iter().any(|method| &**method == ANY_METHOD) {
        errors.push(at.error(
            "method",
            "\"*\" means every method; write it alone, not in a list",
        ));
    }
    (errors.len() == before).then_some(methods)
}

fn check_method(method: &str) -> Result<(), String> {
    if method == ANY_METHOD {
        return Ok(());
    }
    if method.is_empty() {
        return Err("empty method".to_string());
    }
    if method.bytes().any(|b| b.is_ascii_lowercase()) {
        return Err(format!(
            "method {method:?} has lowercase letters; HTTP methods are case-sensitive, write {:?}",
            method.to_ascii_uppercase()
        ));
    }
    let token = method.bytes().all(|b| {
        b.is_ascii_uppercase()
            || b.is_ascii_digit()
            || matches!(
                b,
                b'!' | b'#'
                    | b'$'
                    | b'%'
                    | b'&'
                    | b'\''
                    | b'+'
                    | b'-'
                    | b'.'
                    | b'^'
                    | b'_'
                    | b'`'
                    | b'|'
                    | b'~'
            )
    });
    if token {
        Ok(())
    } else {
        Err(format!(
            "method {method:?} is not an HTTP method token (or \"*\" for any method)"
        ))
    }
}

fn compile_requirement(
    raw: Option<&RawPermissions>,
    at: RouteAt<'_>,
    keys: &mut KeyInterner,
    errors: &mut Vec<ConfigError>,
) -> Option<Requirement> {
    let Some(raw) = raw else {
        return Some(Requirement::None);
    };
    let list_field = format!("permissions{}", raw.list_path());
    if raw.keys().is_empty() {
        errors.push(at.error(
            &list_field,
            "the permission list is empty; omit permissions (with scope: none or public: true) for a route that \
             requires none",
        ));
        return None;
    }
    let before = errors.len();
    let mut ids: Vec<KeyId> = Vec::with_capacity(raw.keys().len());
    for (index, key) in raw.keys().iter().enumerate() {
        let field = format!("{list_field}[{index}]");
        match KeyPattern::parse(key) {
            Ok(KeyPattern::Exact(_)) => {
                let id = keys.intern(key);
                if !ids.contains(&id) {
                    ids.push(id);
                }
            }
            Ok(_) => errors.push(at.error(
                &field,
                format!("a route requires literal keys; {key:?} is a pattern (patterns belong in permission groups)"),
            )),
            Err(message) => errors.push(at.error(&field, message)),
        }
    }
    if errors.len() > before {
        return None;
    }
    let ids = ids.into_boxed_slice();
    Some(match raw {
        RawPermissions::AnyOf(_) => Requirement::AnyOf(ids),
        RawPermissions::List(_) | RawPermissions::AllOf(_) => Requirement::AllOf(ids),
    })
}

/// Checks a path pattern and lists its parameters in order.
///
/// The pattern must be one that a canonical path can match: with every parameter replaced by a plain
/// segment it must be accepted by [`canonicalize`] unchanged (no `//`, no dot segments, no `;`, no `%2F`,
/// upper-case hex, no encoded unreserved characters, no literal braces).
fn parse_pattern(pattern: &str) -> Result<Vec<Param>, String> {
    if !pattern.starts_with('/') {
        return Err(format!("the path {pattern:?} must start with /"));
    }
    let mut params: Vec<Param> = Vec::new();
    let mut sample = String::with_capacity(pattern.len());
    let mut rest = pattern;
    while let Some(position) = rest.find(['{', '}']) {
        let (before, from) = rest.split_at(position);
        sample.push_str(before);
        if from.starts_with("{{") || from.starts_with('}') {
            return Err(format!(
                "the path {pattern:?} has a literal brace; a canonical path holds braces percent-encoded, write \
                 %7B or %7D"
            ));
        }
        let Some(end) = from.find('}') else {
            return Err(format!(
                "the path {pattern:?} has a {{ without a closing }}"
            ));
        };
        let inner = from.get(1..end).unwrap_or_default();
        let (name, catch_all) = match inner.strip_prefix('*') {
            Some(name) => (name, true),
            None => (inner, false),
        };
        if name.is_empty() || name.contains(['{', '/', '*', '?', ' ']) {
            return Err(format!(
                "the path {pattern:?} has an invalid parameter {{{inner}}}"
            ));
        }
        if params.iter().any(|p| p.name == name) {
            return Err(format!(
                "the path {pattern:?} names the parameter {name} twice"
            ));
        }
        params.push(Param {
            name: name.to_string(),
            catch_all,
        });
        sample.push('p');
        rest = from.get(end + 1..).unwrap_or_default();
        if catch_all && !rest.is_empty() {
            return Err(format!(
                "the catch-all {{*{name}}} must end the path {pattern:?}"
            ));
        }
    }
    sample.push_str(rest);
    match canonicalize("GET", &sample) {
        Ok(canonical) if canonical.query.is_none() && canonical.path == sample => Ok(params),
        Ok(canonical) if canonical.query.is_some() => Err(format!(
            "the path {pattern:?} holds a ?; a route matches the path only, never the query"
        )),
        Ok(_) => Err(format!(
            "the path {pattern:?} is not canonical, so no request could match it: requests are matched with \
             %XX of letters, digits and -._~ decoded, other %XX in upper case, and \" < > [ ] ^ ` | encoded"
        )),
        Err(TargetRejection::TooLong) => Err(format!("the path {pattern:?} is too long")),
        Err(rejection) => Err(format!(
            "the path {pattern:?} can never match a request: {rejection}"
        )),
    }
}

#[cfg(test)]
mod tests;
