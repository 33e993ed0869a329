//! One immutable snapshot of everything a request needs: settings, routes, policy set, and where it came from.
//!
//! The proxy holds the serving snapshot, with everything else of its generation, in one `ArcSwap`
//! (`proxy::live::Live`) and loads it once per request, so a request never sees half of one config and half
//! of another.

use std::path::PathBuf;

use crate::policy::PolicySet;
use crate::routes::RouteTable;
use crate::settings::Settings;

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
    pub compiled_from: CompiledFrom,
}

/// A file's path, length and content digest, the part of the content hash that is the file's.
///
/// The digest is XXH3-128: it only tells whether a file changed (whoever can write the config files
/// controls the gateway anyway, so collisions need not be hard to find), and every reload check digests
/// every byte of every file: over a GiB for a million tokens, which SHA-256 takes ~1 s of a core to
/// hash and XXH3 ~0.1 s.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileDigest {
    pub(crate) path: PathBuf,
    pub(crate) len: u64,
    pub(crate) digest: u128,
}

/// What a snapshot was compiled from, file by file: what a later reload needs to compile only what changed
/// (see `config::load::compile_reusing`).
#[derive(Debug, Clone, Default)]
pub struct CompiledFrom {
    /// A digest over `gateway.yaml` and every route file (the settings and the route keys).
    pub frame: u128,
    /// Each policy file's digest, in `policy_files` order.
    pub policy_files: Vec<FileDigest>,
    /// Whether each policy file defined entities (permission groups, users or accounts), not only tokens.
    pub entities: Vec<bool>,
}
