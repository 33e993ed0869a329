//! The config files as written: serde mirrors of the policy files ([`policy`]) and the route files
//! ([`routes`]), checked for shape only (unknown fields are errors); [`mod@super::compile`] checks the meaning.

pub mod de;
pub mod policy;
pub mod routes;

pub use policy::*;
