//! One immutable snapshot of everything a request needs: settings, routes, policy set, and where it came from.
//!
//! The proxy holds the serving snapshot, with everything else of its generation, in one `ArcSwap`
//! (`proxy::live::Live`) and loads it once per request, so a request never sees half of one config and half
//! of another.

use std::path::PathBuf;

use crate::config::gateway::Settings;
use crate::policy::PolicySet;
use crate::routes::RouteTable;

/// A compiled, validated config.
#[derive(Debug)]
pub struct Snapshot {
    pub settings: Settings,
    pub routes: RouteTable,
    pub policy: PolicySet,
    /// Counts the snapshots this process has applied; 1 for the first.
    pub generation: u64,
    /// Hex SHA-256 over every file that went into it (paths and contents, in load order).
    pub content_hash: String,
    /// When it was loaded (Unix seconds).
    pub loaded_at: i64,
    /// Every file that went into it (for the watcher and `/status`).
    pub files: Vec<PathBuf>,
    /// What each file was, for a reload that compiles only what changed.
    pub compiled_from: crate::config::load::CompiledFrom,
}
