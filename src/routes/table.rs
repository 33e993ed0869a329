//! The route table: compiled routes in matchit routers, and the lookup from (method, canonical path) to the
//! route, its required keys and the resource id its scope parameter names (SPEC §2.5).
//!
//! Compile, don't interpret: the route compiler (`config::compile::routes`) checks every route once
//! at load time and adds it with [`RouteTable::insert`]; keys are interned, and the scope parameter is
//! stored by position so that a lookup is one or two matchit walks and no allocation of ours. Pure: no I/O.

use std::fmt;
use std::ops::Range;

use matchit::{InsertError, Router};
use serde::{Deserialize, Serialize};

use super::target::{
    CanonicalTarget, TargetRejection, check_encoded_slash_segment, has_encoded_slash,
};
use crate::policy::keys::KeyId;
use crate::policy::model::ParentKind;

/// A route the gateway answers itself instead of forwarding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
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
    /// A child resource of the declared type `kind` (`r2_bucket`): its name is in path parameter `param`,
    /// its parent's id (an account's or a zone's, as `parent` says) in `parent_param`
    /// (`scope: {account: account_id, r2_bucket: bucket_name}`).
    Child {
        kind: Box<str>,
        param: Box<str>,
        parent: ParentKind,
        parent_param: Box<str>,
    },
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
    /// The value of the scope parameter, for `Scope::Account` and `Scope::Zone` (a child's name for
    /// `Scope::Child`); borrowed from the path.
    pub resource_id: Option<&'p str>,
    /// The value of the parent's parameter, for `Scope::Child`.
    pub parent_id: Option<&'p str>,
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
    /// Per route: the position of a child scope's parent parameter (read only for `Scope::Child`).
    parent_params: Vec<Option<usize>>,
    /// One router per explicitly named method; a handful, so a linear scan beats hashing.
    by_method: Vec<(Box<str>, Router<u32>)>,
    any_method: Router<u32>,
}

/// The method of a route for any method (`method: "*"`).
pub const ANY_METHOD: &str = "*";

/// The table is full: it holds as many routes as a `u32` counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooManyRoutes;

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

    /// Adds `route`, which the route compiler (`config::compile::routes`) has checked on its own, to the
    /// router of each of `methods` ([`ANY_METHOD`]: the router for any method), with the position of its
    /// scope parameter among the path's parameters.
    ///
    /// Gives what matchit said under each method tried, in order: a conflict with a route already there
    /// does not stop the next method, any other refusal does (it is about the pattern, not the method). The
    /// route is kept when it went in under at least one method.
    pub fn insert(
        &mut self,
        route: Route,
        methods: &[Box<str>],
        scope_param: Option<usize>,
    ) -> Result<Vec<Result<(), InsertError>>, TooManyRoutes> {
        self.insert_with_parent(route, methods, scope_param, None)
    }

    /// [`RouteTable::insert`] for a route whose scope is a child resource: `parent_param` is the position
    /// of its parent's parameter.
    pub fn insert_with_parent(
        &mut self,
        route: Route,
        methods: &[Box<str>],
        scope_param: Option<usize>,
        parent_param: Option<usize>,
    ) -> Result<Vec<Result<(), InsertError>>, TooManyRoutes> {
        let Ok(value) = u32::try_from(self.routes.len()) else {
            return Err(TooManyRoutes);
        };
        let mut outcomes = Vec::with_capacity(methods.len());
        let mut inserted = false;
        for method in methods {
            let outcome = self.router_mut(method).insert(&*route.pattern, value);
            inserted |= outcome.is_ok();
            let refused_pattern =
                matches!(&outcome, Err(error) if !matches!(error, InsertError::Conflict { .. }));
            outcomes.push(outcome);
            if refused_pattern {
                break;
            }
        }
        if inserted {
            self.routes.push(route);
            self.scope_params.push(scope_param);
            self.parent_params.push(parent_param);
        }
        Ok(outcomes)
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
        let (index, route, resource_id, parent_id) = self.find(method, path)?;
        Some(RouteMatch {
            route,
            index,
            resource_id: resource_id.and_then(|range| path.get(range)),
            parent_id: parent_id.and_then(|range| path.get(range)),
        })
    }

    /// The route for `method` and `path`, and where in `path` the value of its scope parameter is (a range,
    /// not a borrow, so that [`RouteTable::route_request`] can look up once and still change the path).
    #[allow(clippy::type_complexity)]
    fn find(
        &self,
        method: &str,
        path: &str,
    ) -> Option<(usize, &Route, Option<Range<usize>>, Option<Range<usize>>)> {
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
        let parent_id = match (&route.scope, self.parent_params.get(index)) {
            (Scope::Child { .. }, Some(Some(position))) => matched
                .params
                .iter()
                .nth(*position)
                .and_then(|(_, value)| range_within(path, value)),
            _ => None,
        };
        Some((index, route, resource_id, parent_id))
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
        let Some((index, route, mut resource_id, mut parent_id)) = self.find(method, &target.path)
        else {
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
                    Some((_, again, again_resource_id, again_parent_id))
                        if std::ptr::eq(again, route) =>
                    {
                        resource_id = again_resource_id;
                        parent_id = again_parent_id;
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
            parent_id: parent_id.and_then(|range| path.get(range)),
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
