//! Loading a whole config: read `gateway.yaml` and every policy and route file it names, then compile them
//! into one [`Snapshot`]. Reading (I/O, hashing) and compiling are separate steps so the reloader can skip
//! a compile when the content hash is unchanged.
//!
//! Policy files can be large (a million tokens is over a GiB of JSON), so they are never all held at once:
//! reading hashes each one and keeps only its digest; compiling reads each again, in two passes on every
//! core ([`parallel::in_order`]): first everything but the tokens (all that tokens refer to), then the
//! tokens, each file's compiled and dropped before the next ones are parsed.

use std::borrow::Cow;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::error::{ConfigError, ConfigErrors};
use super::gateway::{RawGateway, Settings};
use super::parallel;
use super::raw::{RawPolicyFile, RawTokenList, SkippedList};
use super::source::SourceFile;
use crate::policy::KeyInterner;
use crate::policy::compile::{Compiler, PolicySource};
use crate::routes::RouteTable;
use crate::snapshot::Snapshot;

/// Every file of one config, read but not yet compiled.
#[derive(Debug, Clone)]
pub struct ConfigSet {
    pub gateway: SourceFile,
    pub settings: Settings,
    pub policy_files: Vec<PolicyFile>,
    pub route_files: Vec<SourceFile>,
    /// Hex SHA-256 over every file's path, length and content digest (XXH3-128), in load order.
    pub content_hash: String,
}

/// A policy file of a config.
#[derive(Debug, Clone)]
pub enum PolicyFile {
    /// Read from disk when the config was read; only its digest went into the content hash, and its text
    /// is read again when the config is compiled (a file at a time) or an error in it is located. A file
    /// that changes in between is compiled as it is then; its new content hash differs from the one
    /// recorded, so the reloader's next check compiles it again.
    OnDisk(PathBuf),
    /// Given in memory (tests, benches, generated configs).
    InMemory(SourceFile),
}

impl PolicyFile {
    pub fn path(&self) -> &Path {
        match self {
            Self::OnDisk(path) => path,
            Self::InMemory(file) => &file.path,
        }
    }

    /// The file's text: read now from disk, or the one in memory.
    pub fn source(&self) -> Result<Cow<'_, SourceFile>, ConfigError> {
        match self {
            Self::OnDisk(path) => SourceFile::read(path).map(Cow::Owned),
            Self::InMemory(file) => Ok(Cow::Borrowed(file)),
        }
    }
}

impl ConfigSet {
    /// The path of every file in the set, gateway first.
    pub fn paths(&self) -> impl Iterator<Item = &Path> {
        std::iter::once(self.gateway.path.as_path())
            .chain(self.policy_files.iter().map(PolicyFile::path))
            .chain(self.route_files.iter().map(|file| file.path.as_path()))
    }

    /// Gives every error that has a document path but no line yet its line and column (policy files on disk
    /// are read again for this only when one of their errors needs it).
    pub fn locate(&self, errors: &mut [ConfigError]) {
        self.gateway.locate(errors);
        for file in &self.route_files {
            file.locate(errors);
        }
        for file in &self.policy_files {
            let needs_it = errors.iter().any(|error| {
                error.file == file.path() && error.line.is_none() && !error.path.is_empty()
            });
            if let (true, Ok(source)) = (needs_it, file.source()) {
                source.locate(errors);
            }
        }
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
        let digests = policy_files
            .iter()
            .map(|file| FileDigest::of(&file.path, &file.text))
            .collect();
        let policy_files = policy_files.into_iter().map(PolicyFile::InMemory).collect();
        Ok(Self::assemble(
            gateway,
            settings,
            policy_files,
            digests,
            route_files,
        ))
    }

    /// The set of these files, with its content hash (`policy_digests` are those of `policy_files`).
    fn assemble(
        gateway: SourceFile,
        settings: Settings,
        policy_files: Vec<PolicyFile>,
        policy_digests: Vec<FileDigest>,
        route_files: Vec<SourceFile>,
    ) -> Self {
        let digests = std::iter::once(FileDigest::of(&gateway.path, &gateway.text))
            .chain(policy_digests)
            .chain(
                route_files
                    .iter()
                    .map(|file| FileDigest::of(&file.path, &file.text)),
            );
        let content_hash = content_hash(digests);
        Self {
            gateway,
            settings,
            policy_files,
            route_files,
            content_hash,
        }
    }
}

/// A file's path, length and content digest, the part of the content hash that is the file's.
///
/// The digest is XXH3-128: it only tells whether a file changed (whoever can write the config files
/// controls the gateway anyway, so collisions need not be hard to find), and every reload check digests
/// every byte of every file: over a GiB for a million tokens, which SHA-256 takes ~1 s of a core to
/// hash and XXH3 ~0.1 s.
#[derive(Debug, Clone)]
pub struct FileDigest {
    path: PathBuf,
    len: u64,
    digest: u128,
}

impl FileDigest {
    fn of(path: &Path, text: &str) -> Self {
        Self {
            path: path.to_path_buf(),
            len: text.len() as u64,
            digest: xxhash_rust::xxh3::xxh3_128(text.as_bytes()),
        }
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
    // Read and hashed on every core; the texts are dropped, the compile reads them again.
    let mut policy_digests = Vec::new();
    parallel::in_order(
        &settings.policy_files,
        |path| SourceFile::read(path).map(|file| FileDigest::of(path, &file.text)),
        |index, digest| match digest {
            Some(Ok(digest)) => policy_digests.push(digest),
            Some(Err(mut error)) => {
                error.message = format!("policy_files[{index}]: {}", error.message);
                errors.push(error);
            }
            None => errors.push(internal_error(
                settings.policy_files.get(index).map(PathBuf::as_path),
            )),
        },
    );
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
    let policy_files = settings
        .policy_files
        .iter()
        .cloned()
        .map(PolicyFile::OnDisk)
        .collect();
    Ok(ConfigSet::assemble(
        gateway,
        settings,
        policy_files,
        policy_digests,
        route_files,
    ))
}

/// The error for a file whose job failed unexpectedly (a bug caught by [`parallel::in_order`]).
fn internal_error(path: Option<&Path>) -> ConfigError {
    ConfigError::file(
        path.unwrap_or(Path::new("")),
        "internal error while reading this file".to_string(),
    )
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

/// Compiles a read config into a snapshot. The generation and time are passed in.
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
    let files = &set.policy_files;
    // First pass: every file, its tokens skipped.
    let mut entities: Vec<RawPolicyFile<SkippedList>> = Vec::with_capacity(files.len());
    let mut with_tokens = Vec::new();
    let mut token_count = 0;
    parallel::in_order(
        files,
        parse_policy_file::<RawPolicyFile<SkippedList>>,
        |index, parsed| match parsed {
            Some(Ok(raw)) => {
                if raw.tokens.items > 0 {
                    with_tokens.push(index);
                    token_count += raw.tokens.items;
                }
                entities.push(raw);
            }
            Some(Err(file_errors)) => errors.extend(file_errors),
            None => errors.push(internal_error(files.get(index).map(|file| file.path()))),
        },
    );
    // When a policy file does not parse, its entities are missing, and every reference to them elsewhere
    // would be a misleading knock-on error: then the tokens are only parsed, for their own shape errors.
    let prepared = (entities.len() == files.len()).then(|| {
        let sources: Vec<PolicySource<'_>> = files
            .iter()
            .zip(&entities)
            .map(|(file, raw)| PolicySource::new(file.path(), raw))
            .collect();
        let mut compiler = Compiler::new(keys, &set.settings.resource_namespace);
        compiler.entities(&sources);
        let sink = compiler.token_sink(token_count);
        (compiler, sink)
    });
    // Second pass: each file's tokens parsed and compiled against the entities on a worker (which also
    // frees them), the batches added to the sink in file order.
    let (compiler, mut sink) = match prepared {
        Some((compiler, sink)) => (Some(compiler), Some(sink)),
        None => (None, None),
    };
    let compiling = compiler.as_ref();
    parallel::in_order(
        &with_tokens,
        |&index| {
            let file = files.get(index)?;
            Some(
                parse_policy_file::<RawTokenList>(file)
                    .map(|raw| compiling.map(|compiler| compiler.tokens(file.path(), &raw.tokens))),
            )
        },
        |position, done| {
            let file = with_tokens
                .get(position)
                .and_then(|&index| files.get(index));
            match done {
                Some(Some(Ok(Some(batch)))) => {
                    if let (Some(compiler), Some(sink)) = (compiling, sink.as_mut()) {
                        sink.add(compiler, batch);
                    }
                }
                Some(Some(Ok(None))) => {}
                Some(Some(Err(file_errors))) => errors.extend(file_errors),
                Some(None) | None => errors.push(internal_error(file.map(PolicyFile::path))),
            }
        },
    );
    let finished = compiler
        .zip(sink)
        .map(|(compiler, sink)| compiler.finish(sink));
    let policy = match finished {
        Some(Ok(policy)) => Some(policy),
        Some(Err(policy_errors)) => {
            errors.extend(policy_errors);
            None
        }
        None => None,
    };
    drop_in_background(entities);
    match (routes, policy) {
        (Some(routes), Some(policy)) if errors.is_empty() => Ok(Snapshot {
            settings: set.settings.clone(),
            routes,
            policy,
            generation,
            content_hash: set.content_hash.clone(),
            loaded_at,
            files: set.paths().map(Path::to_path_buf).collect(),
        }),
        _ => {
            set.locate(&mut errors);
            Err(ConfigErrors(errors))
        }
    }
}

/// Reads and parses one policy file as `T`; a file that does not parse gives every shape error in it.
fn parse_policy_file<T: serde::de::DeserializeOwned>(
    file: &PolicyFile,
) -> Result<T, Vec<ConfigError>> {
    let source = file.source().map_err(|error| vec![error])?;
    source
        .parse::<T>()
        .map_err(|first| policy_file_errors(&source, first))
}

/// Frees parsed policy files on another thread: a config of a million tokens is tens of millions of small
/// strings, and the compiled snapshot needs none of them, so the caller need not wait for their release.
fn drop_in_background<T: Send + 'static>(raw: T) {
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

/// Hex SHA-256 over each file's path, length and content digest.
fn content_hash(files: impl Iterator<Item = FileDigest>) -> String {
    let mut hasher = Sha256::new();
    for file in files {
        hasher.update(file.path.to_string_lossy().as_bytes());
        hasher.update([0]);
        hasher.update(file.len.to_le_bytes());
        hasher.update(file.digest.to_le_bytes());
    }
    hex::encode(hasher.finalize())
}

/// Now, in Unix seconds (the shell's clock; pure code gets it passed in).
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs() as i64)
}
