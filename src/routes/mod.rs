//! Routes: canonical request targets and the matchit route tables (pure: no I/O).

pub mod table;
pub mod target;

pub use table::{
    AcceptedCredentials, CredentialKind, Handler, OpaqueParam, Requirement, Route, RouteMatch,
    RouteRefusal, RouteTable, Scope, TooManyRoutes,
};
pub use target::{
    CanonicalTarget, TargetRejection, canonicalize, canonicalize_request, reject_override_headers,
};
