//! Loading a whole config: read `gateway.yaml` and every policy and route file it names, then compile them
//! into one [`Snapshot`]. Reading (I/O) and compiling (pure) are separate steps so the reloader can skip a
//! compile when the content hash is unchanged.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::error::{ConfigError, ConfigErrors};
use super::gateway::{RawGateway, Settings};
use super::raw::RawPolicyFile;
use super::source::{SourceFile, parse_each};
use crate::policy::KeyInterner;
use crate::policy::compile::{PolicySource, compile as compile_policies};
use crate::routes::RouteTable;
use crate::snapshot::Snapshot;

/// Every file of one config, read but not yet compiled.
#[derive(Debug, Clone)]
pub struct ConfigSet {
    pub gateway: SourceFile,
    pub settings: Settings,
    pub policy_files: Vec<SourceFile>,
    pub route_files: Vec<SourceFile>,
    /// Hex SHA-256 over every file's path and content, in load order.
    pub content_hash: String,
}

impl ConfigSet {
    /// Every file in the set, gateway first.
    pub fn files(&self) -> impl Iterator<Item = &SourceFile> {
        std::iter::once(&self.gateway)
            .chain(self.policy_files.iter())
            .chain(self.route_files.iter())
    }
}

impl ConfigSet {
    /// A config from files already in memory (tests, benches, generated configs); `gateway.path` locates
    /// the others only for messages.
    pub fn from_sources(
        gateway: SourceFile,
        policy_files: Vec<SourceFile>,
        route_files: Vec<SourceFile>,
    ) -> Result<Self, ConfigErrors> {
        let settings = gateway
            .parse::<RawGateway>()
            .map_err(|error| vec![error])
            .and_then(|raw| Settings::compile(raw, &gateway.path))
            .map_err(|mut errors| {
                gateway.locate(&mut errors);
                ConfigErrors(errors)
            })?;
        Ok(Self::assemble(gateway, settings, policy_files, route_files))
    }

    /// The set of these files, with its content hash.
    fn assemble(
        gateway: SourceFile,
        settings: Settings,
        policy_files: Vec<SourceFile>,
        route_files: Vec<SourceFile>,
    ) -> Self {
        let mut set = Self {
            gateway,
            settings,
            policy_files,
            route_files,
            content_hash: String::new(),
        };
        set.content_hash = content_hash(set.files());
        set
    }
}

/// Reads and compiles the config at `gateway_path` (generation 1, loaded now).
pub fn load(gateway_path: &Path) -> Result<Snapshot, ConfigErrors> {
    let set = read(gateway_path)?;
    compile(&set, 1, unix_now())
}

/// Reads `gateway.yaml` and every file it names. Missing or unreadable files are errors naming them.
pub fn read(gateway_path: &Path) -> Result<ConfigSet, ConfigErrors> {
    let gateway = SourceFile::read(gateway_path)?;
    let ConfigSet {
        gateway, settings, ..
    } = ConfigSet::from_sources(gateway, Vec::new(), Vec::new())?;
    let mut errors = Vec::new();
    let mut policy_files = Vec::new();
    for (index, path) in settings.policy_files.iter().enumerate() {
        match SourceFile::read(path) {
            Ok(file) => policy_files.push(file),
            Err(mut error) => {
                error.message = format!("policy_files[{index}]: {}", error.message);
                errors.push(error);
            }
        }
    }
    let mut route_files = Vec::new();
    for (index, path) in settings.route_files.iter().enumerate() {
        match route_file_paths(path) {
            Ok(paths) => {
                for path in paths {
                    match SourceFile::read(&path) {
                        Ok(file) => route_files.push(file),
                        Err(error) => errors.push(error),
                    }
                }
            }
            Err(message) => {
                let mut error =
                    ConfigError::new(gateway_path, format!("route_files[{index}]"), message);
                gateway.locate(std::slice::from_mut(&mut error));
                errors.push(error);
            }
        }
    }
    if !errors.is_empty() {
        return Err(ConfigErrors(errors));
    }
    Ok(ConfigSet::assemble(
        gateway,
        settings,
        policy_files,
        route_files,
    ))
}

/// A route entry: a file, or a folder whose `*.yaml`, `*.yml` and `*.json` files are read in name order.
/// Hidden entries (such as a Kubernetes ConfigMap's `..data`) are skipped; the files linking into them are
/// read through their links.
fn route_file_paths(path: &Path) -> Result<Vec<PathBuf>, String> {
    let metadata =
        std::fs::metadata(path).map_err(|error| format!("{}: {error}", path.display()))?;
    if !metadata.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let entries =
        std::fs::read_dir(path).map_err(|error| format!("{}: {error}", path.display()))?;
    let mut paths = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|error| format!("{}: {error}", path.display()))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let is_config =
            name.ends_with(".yaml") || name.ends_with(".yml") || name.ends_with(".json");
        if name.starts_with('.') || !is_config {
            continue;
        }
        if std::fs::metadata(entry.path()).is_ok_and(|meta| meta.is_file()) {
            paths.push(entry.path());
        }
    }
    paths.sort();
    Ok(paths)
}

/// Compiles a read config into a snapshot. Pure: the generation and time are passed in.
pub fn compile(set: &ConfigSet, generation: u64, loaded_at: i64) -> Result<Snapshot, ConfigErrors> {
    let mut errors = Vec::new();
    let mut keys = KeyInterner::new();
    let routes = match RouteTable::compile(&set.route_files, &mut keys) {
        Ok(routes) => Some(routes),
        Err(route_errors) => {
            errors.extend(route_errors);
            None
        }
    };
    let mut raw_policies = Vec::new();
    let parsed = parse_each::<RawPolicyFile>(&set.policy_files);
    for (file, result) in set.policy_files.iter().zip(parsed) {
        match result {
            Ok(raw) => raw_policies.push((file, raw)),
            Err(error) => errors.extend(policy_file_errors(file, error)),
        }
    }
    let sources: Vec<PolicySource<'_>> = raw_policies
        .iter()
        .map(|(file, raw)| PolicySource {
            file: &file.path,
            raw,
        })
        .collect();
    // When a policy file does not parse, its entities are missing, and every reference to them elsewhere
    // would be a misleading knock-on error: report the parse errors alone.
    let all_parsed = raw_policies.len() == set.policy_files.len();
    let policy = if all_parsed {
        match compile_policies(&sources, keys, &set.settings.resource_namespace) {
            Ok(policy) => Some(policy),
            Err(policy_errors) => {
                errors.extend(policy_errors);
                None
            }
        }
    } else {
        None
    };
    drop(sources);
    drop_in_background(raw_policies.into_iter().map(|(_, raw)| raw).collect());
    match (routes, policy) {
        (Some(routes), Some(policy)) if errors.is_empty() => Ok(Snapshot {
            settings: set.settings.clone(),
            routes,
            policy,
            generation,
            content_hash: set.content_hash.clone(),
            loaded_at,
            files: set.files().map(|file| file.path.clone()).collect(),
        }),
        _ => {
            for file in set.files() {
                file.locate(&mut errors);
            }
            Err(ConfigErrors(errors))
        }
    }
}

/// Frees the raw policy files on another thread: a config of a million tokens is tens of millions of small
/// strings, and the compiled snapshot needs none of them, so the caller need not wait for their release.
fn drop_in_background(raw: Vec<RawPolicyFile>) {
    if raw.is_empty() {
        return;
    }
    // When no thread can be started, the closure (and the memory) is released here instead: slower, no
    // different otherwise.
    let _ = std::thread::Builder::new()
        .name("permgate-free".to_string())
        .spawn(move || drop(raw));
}

/// Every shape error of a policy file that did not parse: the first one the parser met, plus those of every
/// other broken list item (each item parsed on its own).
fn policy_file_errors(file: &SourceFile, first: ConfigError) -> Vec<ConfigError> {
    use super::raw::{RawAccount, RawGroup, RawToken, RawUser};
    let mut errors = vec![first];
    let more = [
        file.item_errors::<RawGroup>("permission_groups"),
        file.item_errors::<RawUser>("users"),
        file.item_errors::<RawAccount>("accounts"),
        file.item_errors::<RawToken>("tokens"),
    ];
    for error in more.into_iter().flatten() {
        if !errors
            .iter()
            .any(|known| known.line == error.line && known.message == error.message)
        {
            errors.push(error);
        }
    }
    errors
}

/// Hex SHA-256 over each file's path, length and content.
pub fn content_hash<'a>(files: impl Iterator<Item = &'a SourceFile>) -> String {
    let mut hasher = Sha256::new();
    for file in files {
        hasher.update(file.path.to_string_lossy().as_bytes());
        hasher.update([0]);
        hasher.update((file.text.len() as u64).to_le_bytes());
        hasher.update(file.text.as_bytes());
    }
    hex::encode(hasher.finalize())
}

/// Now, in Unix seconds (the shell's clock; pure code gets it passed in).
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs() as i64)
}
