//! The subcommands of the `permgate` binary; `main.rs` only parses arguments and dispatches here.

pub mod check;
pub mod demo;
pub mod routes;
pub mod serve;
pub mod token;
pub mod validate;
