//! Turns the raw policy files into a [`crate::policy::PolicySet`]: resolves every reference, checks every rule of SPEC §2–§3,
//! and reports every error at once with its file and document path.
//!
//! Split along its seams: the compile in progress (`compiler.rs`), its output (`output.rs`), permission
//! groups (`groups.rs`), users, accounts and zones (`entities.rs`), member policies (`members.rs`), tokens
//! (`tokens.rs`), the cross-file token sink (`sink.rs`), and ids and document paths (`ids.rs`). Each file
//! imports only its siblings, never this one.

mod compiler;
mod entities;
mod groups;
mod ids;
mod members;
mod output;
mod sink;
mod tokens;

pub use compiler::{Compiler, PolicySource, Text, TokenBatch, compile};
pub use output::Output;
pub use sink::TokenSink;

#[cfg(test)]
mod tests;
