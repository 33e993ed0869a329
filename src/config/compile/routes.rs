//! Compiling route files (`routes/*.yaml`) into the [`RouteTable`]: every route is checked on its own
//! (methods, path pattern, permissions, scope, principals, opaque parameters), then added to the table,
//! where a conflict with another route is an error naming both. Every problem of every file is reported at
//! once, each with its file and path.

use std::path::Path;

use matchit::InsertError;
use rustc_hash::FxHashMap;

use crate::config::raw::routes::{
    RawMethods, RawPermissions, RawRoute, RawRouteFile, RawScope, RawScopeParent,
};
use crate::config::{ConfigError, ErrorKind, SourceFile};
use crate::policy::keys::{KeyId, KeyInterner, KeyPattern};
use crate::policy::model::ParentKind;
use crate::routes::table::ANY_METHOD;
use crate::routes::{
    AcceptedCredentials, Handler, OpaqueParam, Requirement, Route, RouteRefusal, RouteTable, Scope,
    TargetRejection, canonicalize,
};

/// Parses and compiles route files into one table; every problem of every file is reported at once.
pub fn compile(
    files: &[SourceFile],
    keys: &mut KeyInterner,
) -> Result<RouteTable, Vec<ConfigError>> {
    let mut table = RouteTable::empty();
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
            insert(
                &mut table,
                compiled,
                origin,
                files,
                &mut origins,
                &mut errors,
            );
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

/// Checks that every child scope of the routes names a resource type the policy files declare, with the
/// parent it declares (the route files are read again only when the table has a child scope).
pub fn check_resource_types(
    files: &[SourceFile],
    table: &RouteTable,
    types: &[crate::policy::model::ResourceType],
) -> Vec<ConfigError> {
    let mut errors = Vec::new();
    if !table
        .routes()
        .iter()
        .any(|route| matches!(route.scope, Scope::Child { .. }))
    {
        return errors;
    }
    for file in files {
        let Ok(raw) = file.parse::<RawRouteFile>() else {
            continue;
        };
        for (index, route) in raw.routes.iter().enumerate() {
            let Some(RawScope::Child { kind, parent, .. }) = &route.scope else {
                continue;
            };
            let parent = match parent {
                RawScopeParent::Account => ParentKind::Account,
                RawScopeParent::Zone => ParentKind::Zone,
            };
            let at = RouteAt {
                file: &file.path,
                index,
            };
            match types.iter().find(|form| *form.name == **kind) {
                None => errors.push(at.error(
                    &format!("scope.{kind}"),
                    ErrorKind::InvalidResourceType,
                    format!(
                        "no policy file declares the resource type {kind:?} (resource_types: [{{name: {kind}, key: …, parent: …}}])"
                    ),
                )),
                Some(form) if form.parent != parent => errors.push(at.error(
                    &format!("scope.{kind}"),
                    ErrorKind::InvalidResourceType,
                    format!(
                        "a {kind}'s parent is a {}, not a {}",
                        form.parent.as_str(),
                        parent.as_str()
                    ),
                )),
                Some(_) => {}
            }
        }
        file.locate(&mut errors);
    }
    errors
}

/// What matchit said when a route went into the router of one of its methods.
pub type MethodOutcome = (Box<str>, Result<(), InsertError>);

/// Checks one route as the loader checks a route of a file (as `routes[0]` of `file`) and, when it passes,
/// adds it to `table`: the OpenAPI importer's check of each route it writes, so that what it writes is what
/// the loader accepts. `Err`: the route's own errors; `Ok`: what matchit said under each of its methods
/// (see [`RouteTable::insert`]).
pub fn add_route(
    table: &mut RouteTable,
    file: &Path,
    raw: &RawRoute,
    keys: &mut KeyInterner,
) -> Result<Vec<MethodOutcome>, Vec<ConfigError>> {
    let mut errors = Vec::new();
    let at = RouteAt { file, index: 0 };
    let Some(compiled) = compile_route(raw, at, keys, &mut errors) else {
        return Err(errors);
    };
    let methods = compiled.methods.clone();
    match table.insert_with_parent(
        compiled.route,
        &compiled.methods,
        compiled.scope_param,
        compiled.parent_param,
    ) {
        Ok(outcomes) => Ok(methods.into_iter().zip(outcomes).collect()),
        Err(_) => Err(vec![at.error(
            "",
            ErrorKind::TooManyRoutes,
            "too many routes",
        )]),
    }
}

/// Adds a checked route to the table; a conflict is an error naming both routes.
fn insert(
    table: &mut RouteTable,
    compiled: Compiled,
    origin: Origin,
    files: &[SourceFile],
    origins: &mut FxHashMap<(Box<str>, Box<str>), Origin>,
    errors: &mut Vec<ConfigError>,
) {
    let Ok(outcomes) = table.insert_with_parent(
        compiled.route,
        &compiled.methods,
        compiled.scope_param,
        compiled.parent_param,
    ) else {
        errors.push(ConfigError::new(
            file_path(files, origin.file),
            format!("routes[{}]", origin.index),
            ErrorKind::TooManyRoutes,
            "too many routes",
        ));
        return;
    };
    for (method, outcome) in compiled.methods.iter().zip(outcomes) {
        match outcome {
            Ok(()) => {
                origins.insert((method.clone(), origin.pattern.clone()), origin.clone());
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
                    ErrorKind::RouteConflict,
                    format!(
                        "{method} {} conflicts with {other}: the two cannot be told apart (same method and \
                         path, or an ambiguous mix of parameters)",
                        origin.pattern
                    ),
                ));
            }
            Err(error) => {
                // Not about other routes: reported once, not once per method (the table tried no more).
                errors.push(ConfigError::new(
                    file_path(files, origin.file),
                    format!("routes[{}].path", origin.index),
                    ErrorKind::InvalidPathPattern,
                    format!("invalid path pattern {}: {error}", origin.pattern),
                ));
            }
        }
    }
}

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
    fn error(&self, field: &str, kind: ErrorKind, message: impl Into<String>) -> ConfigError {
        let path = if field.is_empty() {
            format!("routes[{}]", self.index)
        } else {
            format!("routes[{}].{field}", self.index)
        };
        ConfigError::new(self.file, path, kind, message)
    }

    /// A verify route whose scope is not one token's owner.
    fn verify_scope_error(&self) -> ConfigError {
        self.error(
            "scope",
            ErrorKind::InvalidRoute,
            "handler: verify_token answers for one token: its scope is none (any token), \
             user (user-owned tokens) or { account: <param> } (that account's tokens)",
        )
    }

    /// A scoped route that names no permission.
    fn needs_permissions_error(&self) -> ConfigError {
        self.error(
            "",
            ErrorKind::InvalidRoute,
            "this scope needs permissions (use scope: none for a route that checks none)",
        )
    }
}

/// A route that passed every check of its own, ready to insert.
struct Compiled {
    route: Route,
    methods: Vec<Box<str>>,
    scope_param: Option<usize>,
    /// A child scope's parent parameter.
    parent_param: Option<usize>,
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
            errors.push(at.error("path", ErrorKind::InvalidPathPattern, message));
            None
        }
    };
    let requirement = compile_requirement(raw.permissions.as_ref(), at, keys, errors);
    let label = match &raw.id {
        Some(id) if id.is_empty() || id.chars().any(|c| c.is_whitespace() || c.is_control()) => {
            errors.push(at.error(
                "id",
                ErrorKind::InvalidId,
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
            ErrorKind::InvalidRoute,
            "handler: verify_token checks no permission (only whose token it is), so it takes no permissions",
        ));
    }

    let mut scope_param = None;
    let mut parent_param = None;
    let scope = if raw.public {
        if raw.scope.is_some() {
            errors.push(at.error(
                "scope",
                ErrorKind::InvalidRoute,
                "a public route takes no scope: it has no credential to scope",
            ));
        }
        if has_keys {
            errors.push(at.error(
                "permissions",
                ErrorKind::InvalidRoute,
                "a public route takes no permissions",
            ));
        }
        if raw.handler.is_some() {
            errors.push(at.error(
                "handler",
                ErrorKind::InvalidRoute,
                "a handler route needs a credential, so it cannot be public",
            ));
        }
        Scope::None
    } else {
        match &raw.scope {
            None => {
                errors.push(at.error(
                    "",
                    ErrorKind::InvalidRoute,
                    "a route needs a scope ({ zone: <param> }, { account: <param> }, user, any or none), or \
                     public: true",
                ));
                Scope::None
            }
            Some(RawScope::None) => {
                if has_keys {
                    errors.push(at.error(
                        "permissions",
                        ErrorKind::InvalidRoute,
                        "scope: none checks no permission, so it takes no permissions (use user, any, zone \
                         or account to require keys)",
                    ));
                }
                Scope::None
            }
            Some(scope @ (RawScope::User | RawScope::Any)) => {
                if verify {
                    if *scope == RawScope::Any {
                        errors.push(at.verify_scope_error());
                    }
                } else if !has_keys {
                    errors.push(at.needs_permissions_error());
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
                        errors.push(at.verify_scope_error());
                    }
                } else if !has_keys {
                    errors.push(at.needs_permissions_error());
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
                                ErrorKind::InvalidRoute,
                                format!(
                                    "the scope parameter {param} is a catch-all ({{*{param}}}); a resource id \
                                     is one segment"
                                ),
                            ));
                        }
                        Some(position) => scope_param = Some(position),
                        None => errors.push(at.error(
                            field,
                            ErrorKind::InvalidRoute,
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
            Some(RawScope::Child {
                kind,
                param,
                parent,
                parent_param: parent_name,
            }) => {
                if verify {
                    errors.push(at.verify_scope_error());
                } else if !has_keys {
                    errors.push(at.needs_permissions_error());
                }
                let parent = match parent {
                    RawScopeParent::Account => ParentKind::Account,
                    RawScopeParent::Zone => ParentKind::Zone,
                };
                if param == parent_name {
                    errors.push(at.error(
                        &format!("scope.{kind}"),
                        ErrorKind::InvalidRoute,
                        "the child's name and its parent's id are two parameters",
                    ));
                }
                if let Some(params) = &params {
                    for (field, name, slot) in [
                        (format!("scope.{kind}"), param, &mut scope_param),
                        (
                            format!("scope.{}", parent.as_str()),
                            parent_name,
                            &mut parent_param,
                        ),
                    ] {
                        match params.iter().position(|p| p.name == *name) {
                            Some(position) if params.get(position).is_some_and(|p| p.catch_all) => {
                                errors.push(at.error(
                                    &field,
                                    ErrorKind::InvalidRoute,
                                    format!(
                                        "the scope parameter {name} is a catch-all ({{*{name}}}); a resource \
                                         id is one segment"
                                    ),
                                ));
                            }
                            Some(position) => *slot = Some(position),
                            None => errors.push(at.error(
                                &field,
                                ErrorKind::InvalidRoute,
                                format!("{name:?} is not a parameter of the path {}", raw.path),
                            )),
                        }
                    }
                }
                Scope::Child {
                    kind: kind.as_str().into(),
                    param: param.as_str().into(),
                    parent,
                    parent_param: parent_name.as_str().into(),
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
        parent_param,
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
            Scope::Child { .. } => None,
            Scope::User | Scope::Any | Scope::None => None,
        };
        let child_params = match scope {
            Scope::Child {
                param,
                parent_param,
                ..
            } => [Some(&**param), Some(&**parent_param)],
            _ => [None, None],
        };
        if raw
            .opaque
            .get(..index)
            .is_some_and(|seen| seen.contains(name))
        {
            errors.push(at.error(
                &field,
                ErrorKind::Duplicate,
                format!("{name} is listed twice"),
            ));
        } else if scope_param == Some(name.as_str()) || child_params.contains(&Some(name.as_str()))
        {
            errors.push(at.error(
                &field,
                ErrorKind::InvalidRoute,
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
                ErrorKind::InvalidRoute,
                format!("{name} is a catch-all; an opaque parameter is one whole segment"),
            ));
        } else if raw.path.contains(&whole) {
            errors.push(at.error(
                &field,
                ErrorKind::InvalidRoute,
                format!(
                    "{name} shares its segment with other text; an opaque parameter is a whole segment \
                     ({{{name}}} between two /)"
                ),
            ));
        } else {
            errors.push(at.error(
                &field,
                ErrorKind::InvalidRoute,
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
                ErrorKind::InvalidRoute,
                "a public route checks no credential, so it takes no principals",
            ));
            AcceptedCredentials::ALL
        }
        Some(kinds) if kinds.is_empty() => {
            errors.push(at.error(
                "principals",
                ErrorKind::InvalidRoute,
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
                        ErrorKind::Duplicate,
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
                ErrorKind::InvalidRoute,
                "principal_refusal answers the credentials principals leaves out; give principals too",
            ));
        }
        if !(400..=499).contains(&refusal.status) {
            errors.push(at.error(
                "principal_refusal.status",
                ErrorKind::InvalidRoute,
                format!(
                    "{} is not a client error; a refusal's status is 400-499",
                    refusal.status
                ),
            ));
        }
        if refusal.message.is_empty() || refusal.message.chars().any(char::is_control) {
            errors.push(at.error(
                "principal_refusal.message",
                ErrorKind::InvalidRoute,
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
                errors.push(at.error(
                    "method",
                    ErrorKind::InvalidMethod,
                    "the method list is empty",
                ));
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
            errors.push(at.error(field, ErrorKind::InvalidMethod, message));
        } else if methods.iter().any(|seen| **seen == ***method) {
            errors.push(at.error(
                field,
                ErrorKind::Duplicate,
                format!("method {method} is listed twice"),
            ));
        } else {
            methods.push(method.as_str().into());
        }
    }
    if listed.len() > 1 && methods.iter().any(|method| &**method == ANY_METHOD) {
        errors.push(at.error(
            "method",
            ErrorKind::InvalidMethod,
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
            ErrorKind::InvalidPermission,
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
                ErrorKind::InvalidPermission,
                format!("a route requires literal keys; {key:?} is a pattern (patterns belong in permission groups)"),
            )),
            Err(message) => errors.push(at.error(&field, ErrorKind::InvalidPermission, message)),
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
