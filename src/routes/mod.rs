//! Routes: canonical request targets and the matchit route tables (pure: no I/O).

pub mod raw;
pub mod table;
pub mod target;

pub use table::{Handler, Requirement, Route, RouteMatch, RouteTable, Scope};
pub use target::{CanonicalTarget, TargetRejection, canonicalize, reject_override_headers};
