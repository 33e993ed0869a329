//! The compilers: from the raw files ([`super::raw`]) to the model the gateway runs on: the policy files
//! into a [`crate::policy::PolicySet`] ([`policy`]), the route files into a [`crate::routes::RouteTable`]
//! ([`routes`]). [`mod@super::load`] drives them over a whole config.

pub mod policy;
pub mod routes;
pub mod values;
