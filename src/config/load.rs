//! Loading a whole config: read `gateway.yaml` and the route files it names, then compile them and the
//! policy files into one [`Snapshot`]. The reloader also asks for the [`content_hash`] of a read config
//! before compiling it, to skip a compile when nothing changed.
//!
//! Policy files can be large (a million tokens is over a GiB of JSON), so they are never all held at once:
//! compiling reads each (and digests it for the snapshot's content hash), in two passes on every core
//! ([`parallel::in_order`]): first everything but the tokens (all that tokens refer to), then the tokens,
//! each file's compiled and dropped before the next ones are parsed.

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use sha2::{Digest, Sha256};

use super::compile::policy::{Compiler, PolicySource, TokenBatch};
use super::compile::routes;
use super::error::{ConfigError, ConfigErrors, ErrorKind};
use super::gateway::{RawGateway, Settings};
use super::ledger::{Inconsistency, ReadHook, ReadLedger};
use super::parallel;
use super::raw::{RawPolicyFile, SkippedList};
use super::source::{SourceFile, TextBuffers, route_file_paths};
use crate::policy::KeyInterner;
use crate::snapshot::Snapshot;
pub use crate::snapshot::{CompiledFrom, FileDigest};

/// Every file of one config, read but not yet compiled: the gateway and route files in memory, the policy
/// files by path (the compile reads them).
#[derive(Debug, Clone)]
pub struct ConfigSet {
    pub gateway: SourceFile,
    pub settings: Settings,
    pub policy_files: Vec<PolicyFile>,
    pub route_files: Vec<SourceFile>,
    /// For a config read from disk: every file read for it, through paths resolved once, so that
    /// [`ReadLedger::verify`] can tell whether it was one consistent set (see [`super::ledger`]).
    pub ledger: Option<Arc<ReadLedger>>,
}

/// A policy file of a config.
#[derive(Debug, Clone)]
pub enum PolicyFile {
    /// On disk: read when the config is compiled (a file at a time; the snapshot's content hash is of the
    /// text compiled), when its [`content_hash`] is asked for, and when an error in it is located. `path`
    /// is as configured (messages name it); `resolved` is where its symlinks led when the config was read,
    /// the file every read of this config opens.
    OnDisk { path: PathBuf, resolved: PathBuf },
    /// Given in memory (tests, benches, generated configs).
    InMemory(SourceFile),
}

impl PolicyFile {
    pub fn path(&self) -> &Path {
        match self {
            Self::OnDisk { path, .. } => path,
            Self::InMemory(file) => &file.path,
        }
    }

    /// The file's text: read now from disk, or the one in memory.
    pub fn source(&self) -> Result<Cow<'_, SourceFile>, ConfigError> {
        match self {
            Self::OnDisk { path, resolved } => {
                SourceFile::read_resolved(path, resolved, None).map(Cow::Owned)
            }
            Self::InMemory(file) => Ok(Cow::Borrowed(file)),
        }
    }

    /// As [`PolicyFile::source`], read into a buffer from `buffers`; give it back with [`give_back`].
    fn source_with<'s>(
        &'s self,
        buffers: &TextBuffers,
    ) -> Result<Cow<'s, SourceFile>, ConfigError> {
        match self {
            Self::OnDisk { path, resolved } => {
                SourceFile::read_resolved(path, resolved, Some(buffers)).map(Cow::Owned)
            }
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
            // Only then: reading a file is the costly part (a GiB over all files at a million tokens).
            if !needs_it {
                continue;
            }
            if let Ok(source) = file.source() {
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
        Ok(Self {
            gateway,
            settings,
            policy_files: policy_files.into_iter().map(PolicyFile::InMemory).collect(),
            route_files,
            ledger: None,
        })
    }

    /// Notes a read of a file of this set in its ledger (a config in memory has none).
    fn note(&self, digest: &FileDigest) {
        if let Some(ledger) = &self.ledger {
            ledger.note_read(&digest.path, digest.len, digest.digest);
        }
    }

    /// Whether this set, read from disk, was one consistent set of files and still is (see
    /// [`ReadLedger::verify`]); a set in memory always is.
    pub fn verify(&self) -> Result<(), Inconsistency> {
        self.ledger
            .as_ref()
            .map_or(Ok(()), |ledger| ledger.verify())
    }

    /// A digest over `gateway.yaml` and the route files: what the policy compile depends on besides the
    /// policy files (the settings, and the route keys every policy is compiled against).
    fn frame_digest(&self) -> u128 {
        let mut bytes = Vec::with_capacity(24 * (1 + self.route_files.len()));
        let files = std::iter::once((&self.gateway.path, &self.gateway.text))
            .chain(self.route_files.iter().map(|file| (&file.path, &file.text)));
        for (path, text) in files {
            let digest = FileDigest::of(path, text);
            bytes.extend_from_slice(path.as_os_str().as_encoded_bytes());
            bytes.push(0);
            bytes.extend_from_slice(&digest.len.to_le_bytes());
            bytes.extend_from_slice(&digest.digest.to_le_bytes());
        }
        xxhash_rust::xxh3::xxh3_128(&bytes)
    }

    /// The content hash of these files (see [`content_hash`]), with the policy files' digests.
    fn hash_with(&self, policy_digests: impl Iterator<Item = FileDigest>) -> String {
        let digests = std::iter::once(FileDigest::of(&self.gateway.path, &self.gateway.text))
            .chain(policy_digests)
            .chain(
                self.route_files
                    .iter()
                    .map(|file| FileDigest::of(&file.path, &file.text)),
            );
        hash_digests(digests)
    }
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

/// How many times a load is tried when the files keep changing under it (see [`super::ledger`]) before it
/// gives up: the config is then changing too fast to be read as one set.
pub const CONSISTENT_READ_TRIES: u32 = 5;

/// Reads and compiles the config at `gateway_path` (generation 1, loaded now), from one consistent set of
/// files: a load during which a file changed is tried again, up to [`CONSISTENT_READ_TRIES`] times.
pub fn load(gateway_path: &Path) -> Result<Snapshot, ConfigErrors> {
    let mut tries = 0;
    loop {
        tries += 1;
        let ledger = ReadLedger::new();
        let compiled = read_into(gateway_path, Arc::clone(&ledger))
            .and_then(|set| compile(&set, 1, unix_now()));
        match ledger.verify() {
            Ok(()) => return compiled,
            Err(inconsistency) if tries >= CONSISTENT_READ_TRIES => {
                return Err(changing_too_fast(gateway_path, tries, &inconsistency).into());
            }
            Err(_) => std::thread::sleep(retry_pause(tries)),
        }
    }
}

/// The pause before try `tries + 1` of a load that was not consistent: 20 ms, 40 ms, 80 ms, …
pub fn retry_pause(tries: u32) -> std::time::Duration {
    std::time::Duration::from_millis(20u64 << tries.min(6))
}

/// The error of a config whose files changed under every one of `tries` loads.
pub fn changing_too_fast(gateway_path: &Path, tries: u32, last: &Inconsistency) -> ConfigError {
    ConfigError::file(
        gateway_path,
        ErrorKind::ChangingTooFast,
        format!(
            "the config is changing too fast to be read as one set of files: it changed during each of \
             {tries} loads (last: {last})"
        ),
    )
}

/// Hex SHA-256 over every file's path, length and content digest (XXH3-128), in load order: what the
/// reloader compares to tell whether a config changed. It reads and digests every policy file (on every
/// core, dropping each text); a missing or unreadable one is an error naming it. A compiled snapshot's
/// `content_hash` is the same hash of the texts it was compiled from.
pub fn content_hash(set: &ConfigSet) -> Result<String, ConfigErrors> {
    content_digests(set).map(|(hash, _)| hash)
}

/// [`content_hash`], with each policy file's digest (in `policy_files` order).
pub fn content_digests(set: &ConfigSet) -> Result<(String, Vec<FileDigest>), ConfigErrors> {
    content_digests_known(set, &KnownDigests::default())
}

/// The digests of files read by an earlier load, with the stamps they had then: a file whose stamp is still
/// the same, and was not changed within the racy window of either load, is not read again (as git trusts
/// its index). Only for files of a config read from disk through a ledger, which then verifies the stamps
/// after the compile as for any file.
#[derive(Debug, Clone, Default)]
pub struct KnownDigests(rustc_hash::FxHashMap<PathBuf, (super::ledger::FileStamp, FileDigest)>);

impl KnownDigests {
    /// What `set`'s load read of its policy files that a later load may take on trust: each file's digest,
    /// with the stamp its ledger took before reading it, unless that stamp was racy.
    pub fn of(set: &ConfigSet, digests: &[FileDigest]) -> Self {
        let Some(ledger) = &set.ledger else {
            return Self::default();
        };
        let known = digests
            .iter()
            .filter_map(|digest| {
                let stamp = ledger.stamp_of(&digest.path)?;
                (!ledger.is_racy(&stamp)).then(|| (digest.path.clone(), (stamp, digest.clone())))
            })
            .collect();
        Self(known)
    }

    /// The digest of `path` if its stamp in `ledger` now is the one it had, and is not racy.
    fn vouched(&self, path: &Path, ledger: &ReadLedger) -> Option<FileDigest> {
        let (stamp, digest) = self.0.get(path)?;
        let now = ledger.stamp_of(path)?;
        (now == *stamp && !ledger.is_racy(&now)).then(|| digest.clone())
    }
}

/// [`content_digests`], taking on trust the digests `known` vouches for (see [`KnownDigests`]).
pub fn content_digests_known(
    set: &ConfigSet,
    known: &KnownDigests,
) -> Result<(String, Vec<FileDigest>), ConfigErrors> {
    let mut errors = Vec::new();
    let mut policy_digests = Vec::with_capacity(set.policy_files.len());
    let buffers = TextBuffers::new();
    parallel::in_order(
        &set.policy_files,
        |file| {
            let vouched = set
                .ledger
                .as_ref()
                .and_then(|ledger| known.vouched(file.path(), ledger));
            if let (Some(digest), Some(ledger)) = (vouched, &set.ledger) {
                ledger.note_vouched(&digest.path, digest.len, digest.digest);
                return Ok(digest);
            }
            file.source_with(&buffers).map(|source| {
                let digest = FileDigest::of(file.path(), &source.text);
                set.note(&digest);
                give_back(source, &buffers);
                digest
            })
        },
        |index, digest| match digest {
            Some(Ok(digest)) => policy_digests.push(digest),
            Some(Err(error)) => errors.push(policy_file_error(index, error)),
            None => errors.push(internal_error(
                set.policy_files.get(index).map(PolicyFile::path),
            )),
        },
    );
    if errors.is_empty() {
        Ok((
            set.hash_with(policy_digests.iter().cloned()),
            policy_digests,
        ))
    } else {
        Err(ConfigErrors(errors))
    }
}

/// A policy file that cannot be read: the error, naming the file's place in `policy_files`.
fn policy_file_error(index: usize, mut error: ConfigError) -> ConfigError {
    error.message = format!("policy_files[{index}]: {}", error.message);
    error
}

/// Reads `gateway.yaml` and the route files it names; the policy files are read by the compile (and by
/// [`content_hash`]). Missing or unreadable files are errors naming them. Every path is resolved through its
/// symlinks once, now, and read through that (see [`super::ledger`]).
pub fn read(gateway_path: &Path) -> Result<ConfigSet, ConfigErrors> {
    read_into(gateway_path, ReadLedger::new())
}

/// [`read`], calling `hook` after each file this config's load reads (tests time file swaps with it).
pub fn read_with(gateway_path: &Path, hook: Option<ReadHook>) -> Result<ConfigSet, ConfigErrors> {
    read_into(gateway_path, ReadLedger::with_hook(hook))
}

/// [`read`], noting every read in `ledger` (which the caller keeps, to verify even a read that failed: a
/// file missing in the middle of a swap is no error of the config).
pub fn read_into(gateway_path: &Path, ledger: Arc<ReadLedger>) -> Result<ConfigSet, ConfigErrors> {
    let gateway = read_noted(gateway_path, &ledger)?;
    let ConfigSet {
        gateway, settings, ..
    } = ConfigSet::from_sources(gateway, Vec::new(), Vec::new())?;
    // Every policy file is resolved now, beside the gateway file, before anything else is read.
    let policy_files: Vec<PolicyFile> = settings
        .policy_files
        .iter()
        .map(|path| PolicyFile::OnDisk {
            resolved: ledger.resolve(path),
            path: path.clone(),
        })
        .collect();
    let mut errors = Vec::new();
    let mut route_files = Vec::new();
    for (index, path) in settings.route_files.iter().enumerate() {
        match route_file_paths(path) {
            Ok(paths) => {
                if std::fs::metadata(path).is_ok_and(|meta| meta.is_dir()) {
                    ledger.note_folder(path, paths.clone());
                }
                for path in paths {
                    match read_noted(&path, &ledger) {
                        Ok(file) => route_files.push(file),
                        Err(error) => errors.push(error),
                    }
                }
            }
            Err(message) => {
                let mut error = ConfigError::new(
                    gateway_path,
                    format!("route_files[{index}]"),
                    ErrorKind::Unreadable,
                    message,
                );
                gateway.locate(std::slice::from_mut(&mut error));
                errors.push(error);
            }
        }
    }
    if !errors.is_empty() {
        return Err(ConfigErrors(errors));
    }
    Ok(ConfigSet {
        gateway,
        settings,
        policy_files,
        route_files,
        ledger: Some(ledger),
    })
}

/// Reads a file through its path resolved in `ledger`, and notes what was read.
fn read_noted(path: &Path, ledger: &ReadLedger) -> Result<SourceFile, ConfigError> {
    let resolved = ledger.resolve(path);
    let file = SourceFile::read_resolved(path, &resolved, None)?;
    let digest = FileDigest::of(path, &file.text);
    ledger.note_read(path, digest.len, digest.digest);
    Ok(file)
}

/// The error for a file whose job failed unexpectedly (a bug caught by [`parallel::in_order`]).
fn internal_error(path: Option<&Path>) -> ConfigError {
    ConfigError::file(
        path.unwrap_or(Path::new("")),
        ErrorKind::Internal,
        "internal error while reading this file".to_string(),
    )
}

/// Compiles a read config into a snapshot. The generation and time are passed in.
///
/// The first pass does not read a JSON file that starts with `{"tokens":` (as machine-written token files
/// do): such a file is taken to hold tokens only, and is read once, by the second pass, which parses and
/// checks it whole. A file that does parse there with no key but `tokens` would have passed the first pass
/// with no entities, so the outcome is the same as reading it twice; when one turns out to hold more or not
/// to parse, the compile starts again with every file read whole in the first pass, so that its errors (and
/// their order) are exactly those of that compile.
pub fn compile(set: &ConfigSet, generation: u64, loaded_at: i64) -> Result<Snapshot, ConfigErrors> {
    match compile_with(set, generation, loaded_at, true) {
        Compiled::Done(result) => result,
        Compiled::Misjudged => match compile_with(set, generation, loaded_at, false) {
            Compiled::Done(result) => result,
            // Only a compile that takes files for token files can misjudge one.
            Compiled::Misjudged => Err(ConfigErrors(vec![internal_error(None)])),
        },
    }
}

/// Compiles a read config as [`compile`] does, reusing what `previous` (the snapshot being served) compiled
/// of the policy files that did not change, when only token files changed: the entity files are read and
/// compiled again (everything a token refers to; they are small beside the tokens), the changed token files'
/// tokens are compiled, and every other file's tokens are taken from `previous` as they are, through the same
/// cross-file checks. The result is the one a full compile gives (`tests/reload_incremental.rs` compares
/// the two on random edits).
///
/// `digests` are the policy files' digests of this read ([`content_digests`]). `None` when the change is
/// not of that kind (`gateway.yaml`, a route file or a file with entities changed, the files are other ones,
/// or a changed file now holds entities): compile in full then.
pub fn compile_reusing(
    set: &ConfigSet,
    previous: &Snapshot,
    digests: &[FileDigest],
    generation: u64,
    loaded_at: i64,
) -> Option<Result<Snapshot, ConfigErrors>> {
    let from = &previous.compiled_from;
    let same_files = from.policy_files.len() == digests.len()
        && from
            .policy_files
            .iter()
            .zip(digests)
            .all(|(before, now)| before.path == now.path);
    if !same_files
        || from.entities.len() != digests.len()
        || from.frame != set.frame_digest()
        || set.settings.resource_namespace.as_str() != &*previous.policy.namespace
    {
        return None;
    }
    let unchanged: Vec<bool> = from
        .policy_files
        .iter()
        .zip(digests)
        .map(|(before, now)| before == now)
        .collect();
    let changed_entities = unchanged
        .iter()
        .zip(&from.entities)
        .any(|(&unchanged, &entities)| !unchanged && entities);
    if changed_entities || unchanged.iter().all(|&unchanged| unchanged) {
        return None;
    }
    // The secret hash of each token of `previous`, by position (the compiled set keeps them only as keys).
    let mut secrets = vec![[0u8; 32]; previous.policy.tokens.len()];
    for (secret, &position) in previous.policy.token_by_hash.iter() {
        if let Some(slot) = secrets.get_mut(position as usize) {
            *slot = *secret;
        }
    }
    let mut keys = KeyInterner::new();
    // The same route files as `previous`'s: errors are impossible, but a full compile would say what one is.
    let routes = routes::compile(&set.route_files, &mut keys).ok()?;
    let mut compiler = Compiler::resume(&previous.policy, keys);
    let mut sink = compiler.token_sink(previous.policy.tokens.len());
    let buffers = TextBuffers::new();
    let mut entities = from.entities.clone();
    for (index, file) in set.policy_files.iter().enumerate() {
        if unchanged.get(index).copied().unwrap_or(false) {
            let record = previous
                .policy
                .token_files
                .iter()
                .find(|record| record.file == file.path());
            if let Some(record) = record {
                sink.add_reused(&compiler, file.path(), &previous.policy, record, &secrets);
            }
            continue;
        }
        // A changed file: tokens only (else a full compile decides), compiled against the entities.
        let (batch, digest) = changed_token_file(file, &compiler, &buffers)?;
        set.note(&digest);
        if let Some(slot) = entities.get_mut(index) {
            *slot = false;
        }
        sink.add(&compiler, batch);
    }
    let policy = match compiler.finish(sink) {
        Ok(policy) => policy,
        Err(mut errors) => {
            set.locate(&mut errors);
            return Some(Err(ConfigErrors(errors)));
        }
    };
    Some(Ok(Snapshot {
        settings: set.settings.clone(),
        routes,
        policy,
        generation,
        content_hash: set.hash_with(digests.iter().cloned()),
        loaded_at,
        files: set.paths().map(Path::to_path_buf).collect(),
        compiled_from: CompiledFrom {
            frame: from.frame,
            policy_files: digests.to_vec(),
            entities,
        },
    }))
}

/// The tokens of a changed policy file, compiled against `compiler`'s entities, with the digest of the text
/// read; `None` when the file cannot be read, does not parse, or holds anything but tokens (a full compile
/// then decides, and says what is wrong).
fn changed_token_file<'a>(
    file: &'a PolicyFile,
    compiler: &Compiler<'a>,
    buffers: &TextBuffers,
) -> Option<(TokenBatch<'a>, FileDigest)> {
    let source = file.source_with(buffers).ok()?;
    let digest = FileDigest::of(file.path(), &source.text);
    let yaml = source.format() == super::source::Format::Yaml;
    if yaml {
        // A YAML file's stream does not tell whether it held only tokens: look first.
        let outline = source.parse::<RawPolicyFile<SkippedList>>().ok()?;
        if outline.has_entities() {
            return None;
        }
    }
    let mut batch = compiler.token_batch(file.path());
    let parsed = source.stream_tokens(|token| compiler.add_token(&mut batch, &token));
    // A JSON stream says itself whether anything but tokens was there.
    let only_tokens = matches!(parsed, Ok(only_tokens) if only_tokens || yaml);
    give_back(source, buffers);
    only_tokens.then_some((batch, digest))
}

/// How one full compile ended.
#[allow(clippy::large_enum_variant)] // made once per compile and moved once: boxing would only add an allocation
enum Compiled {
    Done(Result<Snapshot, ConfigErrors>),
    /// A file taken for a token file held more than tokens, or did not parse.
    Misjudged,
}

/// The first pass's outcome for one policy file.
enum FirstPass {
    /// Parsed, its tokens skipped; with the digest of the text.
    Parsed(FileDigest, RawPolicyFile<SkippedList>),
    /// Taken for a file of tokens only, not read: its length in bytes.
    TokensOnly(u64),
}

/// A policy file that did not parse: it could not be read, or every shape error in it.
enum Unparsed {
    Unreadable(ConfigError),
    Invalid(Vec<ConfigError>),
}

/// The second pass's outcome for one policy file.
enum TokenPass<'a> {
    /// Its tokens, compiled (none when the entities did not compile and the tokens were only parsed), and
    /// the digest of the text read (the content hash's for a file the first pass did not read; for the
    /// others the ledger checks it is the first pass's).
    Batch(Option<TokenBatch<'a>>, FileDigest),
    Failed(Unparsed),
    /// Taken for a file of tokens only, it held more or did not parse.
    Misjudged,
}

/// One compile; with `guess_token_files`, JSON files that start like a token file are taken for one (see
/// [`compile`]).
fn compile_with(
    set: &ConfigSet,
    generation: u64,
    loaded_at: i64,
    guess_token_files: bool,
) -> Compiled {
    let mut errors = Vec::new();
    let mut keys = KeyInterner::new();
    let routes = match routes::compile(&set.route_files, &mut keys) {
        Ok(routes) => Some(routes),
        Err(route_errors) => {
            errors.extend(route_errors);
            None
        }
    };
    let files = &set.policy_files;
    // First pass: every file, its tokens skipped; files taken for token files are not read.
    let mut entities: Vec<RawPolicyFile<SkippedList>> = Vec::with_capacity(files.len());
    // Each file with tokens, with its length when it was taken for a token file (0 for the others).
    let mut with_tokens: Vec<(usize, u64)> = Vec::new();
    let mut token_count = 0;
    // The digest of each file's text (by the file's index), for the snapshot's content hash: the first
    // pass's, or for a file taken for a token file the second pass's.
    let mut digests: Vec<Option<FileDigest>> = Vec::with_capacity(files.len());
    let buffers = TextBuffers::new();
    parallel::in_order(
        files,
        |file| match guess_token_files.then(|| token_file_len(file)).flatten() {
            Some(len) => Ok(FirstPass::TokensOnly(len)),
            None => parse_policy_file::<RawPolicyFile<SkippedList>>(file, &buffers)
                .map(|(digest, raw)| FirstPass::Parsed(digest, raw)),
        },
        |index, parsed| match parsed {
            Some(Ok(FirstPass::Parsed(digest, raw))) => {
                set.note(&digest);
                if raw.tokens.items > 0 {
                    with_tokens.push((index, 0));
                    token_count += raw.tokens.items;
                }
                entities.push(raw);
                digests.push(Some(digest));
            }
            Some(Ok(FirstPass::TokensOnly(len))) => {
                with_tokens.push((index, len));
                entities.push(RawPolicyFile::default());
                digests.push(None);
            }
            Some(Err(Unparsed::Unreadable(error))) => {
                errors.push(policy_file_error(index, error));
                digests.push(None);
            }
            Some(Err(Unparsed::Invalid(file_errors))) => {
                errors.extend(file_errors);
                digests.push(None);
            }
            None => {
                errors.push(internal_error(files.get(index).map(|file| file.path())));
                digests.push(None);
            }
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
    // Second pass: each file's tokens parsed and compiled, one at a time, against the entities on a worker,
    // the batches added to the sink in file order.
    let (compiler, mut sink) = match prepared {
        Some((compiler, sink)) => (Some(compiler), Some(sink)),
        None => (None, None),
    };
    let compiling = compiler.as_ref();
    let misjudged = AtomicBool::new(false);
    // Bytes and tokens of the guessed files compiled so far, and the bytes still to come: the sink's tables
    // are sized from their ratio, as they are from the first pass's count for the other files.
    let (mut guessed_bytes, mut guessed_tokens) = (0u64, 0usize);
    let mut guessed_to_come: u64 = with_tokens.iter().map(|&(_, len)| len).sum();
    parallel::in_order(
        &with_tokens,
        |&(index, guessed_len)| {
            if misjudged.load(Ordering::Relaxed) {
                return Some(TokenPass::Misjudged);
            }
            let file = files.get(index)?;
            let pass = token_pass(file, compiling, guessed_len > 0, &buffers);
            if matches!(pass, TokenPass::Misjudged) {
                misjudged.store(true, Ordering::Relaxed);
            }
            Some(pass)
        },
        |position, done| {
            let (index, len) = with_tokens.get(position).copied().unwrap_or_default();
            let file = files.get(index);
            match done {
                Some(Some(TokenPass::Batch(batch, digest))) => {
                    set.note(&digest);
                    // The first pass's digest stands for a file it read (the ledger has compared the two).
                    if let Some(slot @ None) = digests.get_mut(index) {
                        *slot = Some(digest);
                    }
                    if let (Some(compiler), Some(sink), Some(batch)) =
                        (compiling, sink.as_mut(), batch)
                    {
                        if len > 0 {
                            guessed_bytes += len;
                            guessed_tokens += batch.len();
                            guessed_to_come = guessed_to_come.saturating_sub(len);
                            let more = (guessed_to_come as u128 * guessed_tokens as u128)
                                / u128::from(guessed_bytes.max(1));
                            sink.reserve(batch.len() + usize::try_from(more).unwrap_or(0));
                        }
                        sink.add(compiler, batch);
                    }
                }
                Some(Some(TokenPass::Failed(Unparsed::Unreadable(error)))) => {
                    errors.push(policy_file_error(index, error));
                }
                Some(Some(TokenPass::Failed(Unparsed::Invalid(file_errors)))) => {
                    errors.extend(file_errors);
                }
                Some(Some(TokenPass::Misjudged)) => {}
                Some(None) | None => errors.push(internal_error(file.map(PolicyFile::path))),
            }
        },
    );
    if misjudged.into_inner() {
        drop_in_background(entities);
        return Compiled::Misjudged;
    }
    let had_entities: Vec<bool> = entities.iter().map(RawPolicyFile::has_entities).collect();
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
    if let (Some(routes), Some(policy)) = (&routes, &policy) {
        errors.extend(routes::check_resource_types(
            &set.route_files,
            routes,
            &policy.resource_types,
        ));
    }
    Compiled::Done(match (routes, policy) {
        (Some(routes), Some(policy)) if errors.is_empty() => {
            let policy_files: Vec<FileDigest> = digests.into_iter().flatten().collect();
            Ok(Snapshot {
                settings: set.settings.clone(),
                routes,
                policy,
                generation,
                // Without errors every file was read: the hash of exactly the texts compiled.
                content_hash: set.hash_with(policy_files.iter().cloned()),
                loaded_at,
                files: set.paths().map(Path::to_path_buf).collect(),
                compiled_from: CompiledFrom {
                    frame: set.frame_digest(),
                    entities: had_entities,
                    policy_files,
                },
            })
        }
        _ => {
            set.locate(&mut errors);
            Err(ConfigErrors(errors))
        }
    })
}

/// The second pass over one file: its tokens parsed and, with a compiler, compiled one at a time as they are
/// parsed (the raw tokens are never all held). `guessed`: the file was taken for a token file and not read
/// by the first pass.
fn token_pass<'a>(
    file: &'a PolicyFile,
    compiler: Option<&Compiler<'a>>,
    guessed: bool,
    buffers: &TextBuffers,
) -> TokenPass<'a> {
    let source = match file.source_with(buffers) {
        Ok(source) => source,
        Err(_) if guessed => return TokenPass::Misjudged,
        Err(error) => return TokenPass::Failed(Unparsed::Unreadable(error)),
    };
    let digest = FileDigest::of(file.path(), &source.text);
    let mut batch = compiler.map(|compiler| compiler.token_batch(file.path()));
    let parsed = source.stream_tokens(|token| {
        if let (Some(compiler), Some(batch)) = (compiler, batch.as_mut()) {
            compiler.add_token(batch, &token);
        }
    });
    let pass = match parsed {
        Ok(only_tokens) if guessed && !only_tokens => TokenPass::Misjudged,
        Ok(_) => TokenPass::Batch(batch, digest),
        Err(_) if guessed => TokenPass::Misjudged,
        Err(first) => TokenPass::Failed(Unparsed::Invalid(policy_file_errors(&source, first))),
    };
    give_back(source, buffers);
    pass
}

/// Keeps the text of a file read from disk for the next read.
fn give_back(source: Cow<'_, SourceFile>, buffers: &TextBuffers) {
    if let Cow::Owned(file) = source {
        buffers.give_back(file);
    }
}

/// The length of a JSON policy file whose text starts with `{"tokens":` (white space allowed), read from its
/// first bytes only; `None` for any other file.
fn token_file_len(file: &PolicyFile) -> Option<u64> {
    let is_json = file
        .path()
        .extension()
        .is_some_and(|extension| extension.eq_ignore_ascii_case("json"));
    if !is_json {
        return None;
    }
    let mut head = [0u8; 64];
    let (head, len) = match file {
        PolicyFile::InMemory(source) => {
            let text = source.text.as_bytes();
            (text.get(..64).unwrap_or(text), text.len() as u64)
        }
        PolicyFile::OnDisk { resolved, .. } => {
            use std::io::Read as _;
            let mut opened = std::fs::File::open(resolved).ok()?;
            let len = opened.metadata().ok()?.len();
            let mut filled = 0;
            while filled < head.len() {
                match opened.read(head.get_mut(filled..)?) {
                    Ok(0) => break,
                    Ok(read) => filled += read,
                    Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(_) => return None,
                }
            }
            (head.get(..filled)?, len)
        }
    };
    starts_like_token_file(head).then_some(len)
}

/// Whether `head` (a file's first bytes) is `{`, then the key `"tokens"` and its `:`, with JSON white space
/// between them.
fn starts_like_token_file(head: &[u8]) -> bool {
    let skip_space = |bytes: &[u8]| -> usize {
        bytes
            .iter()
            .take_while(|byte| matches!(byte, b' ' | b'\t' | b'\n' | b'\r'))
            .count()
    };
    let mut rest = head;
    for expected in [&b"{"[..], b"\"tokens\"", b":"] {
        rest = rest.get(skip_space(rest)..).unwrap_or_default();
        match rest.strip_prefix(expected) {
            Some(after) => rest = after,
            None => return false,
        }
    }
    true
}

/// Reads, digests and parses one policy file as `T`; a file that does not parse gives every shape error
/// in it.
fn parse_policy_file<T: serde::de::DeserializeOwned>(
    file: &PolicyFile,
    buffers: &TextBuffers,
) -> Result<(FileDigest, T), Unparsed> {
    let source = file.source_with(buffers).map_err(Unparsed::Unreadable)?;
    let parsed = source
        .parse::<T>()
        .map(|parsed| (FileDigest::of(file.path(), &source.text), parsed))
        .map_err(|first| Unparsed::Invalid(policy_file_errors(&source, first)));
    give_back(source, buffers);
    parsed
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
fn hash_digests(files: impl Iterator<Item = FileDigest>) -> String {
    let mut hasher = Sha256::new();
    for file in files {
        hasher.update(file.path.to_string_lossy().as_bytes());
        hasher.update([0]);
        hasher.update(file.len.to_le_bytes());
        hasher.update(file.digest.to_le_bytes());
    }
    hex::encode(hasher.finalize())
}

/// Now, in Unix seconds (the shell's clock; pure code gets it passed in): 0 if the clock is before 1970 and
/// `i64::MAX` past its range, which only makes time-bound tokens fail closed. The one clock of the loader,
/// the CLI and the proxy.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| {
            i64::try_from(elapsed.as_secs()).unwrap_or(i64::MAX)
        })
}

#[cfg(test)]
mod reuse_tests;

#[cfg(test)]
mod tests {
    use super::*;

    const ROUTES: &str = include_str!("../../routes/demo.yaml");
    const BASE: &str = r#"{"permission_groups": [{"id": "g", "permissions": ["*"]}],
        "users": [{"id": "u1", "email": "u1@example.com"}],
        "accounts": [{"id": "a1", "name": "A", "zones": [{"id": "z1", "name": "z.example"}],
                      "members": [{"user": "u1", "policies": []}]}]}"#;

    fn token(id: &str, user: &str) -> String {
        let secret = hex::encode(Sha256::digest(id.as_bytes()));
        format!(
            r#"{{"id": "{id}", "owner": {{"user": "{user}"}}, "secret_sha256": "{secret}",
                "policies": [{{"effect": "allow", "permission_groups": [{{"id": "g"}}],
                               "resources": {{"com.cloudflare.api.account.a1": "*"}}}}]}}"#
        )
    }

    /// A config of `BASE` and these policy files (`tokens-<n>.json`).
    fn config(files: &[String]) -> ConfigSet {
        let gateway = SourceFile::from_text(
            "gateway.yaml",
            format!(
                "listen: 127.0.0.1:0\nadmin_listen: 127.0.0.1:1\nupstream: {{ url: 'http://127.0.0.1:9' }}\npolicy_files: [base.json{}]\nroute_files: [routes.yaml]\n",
                (0..files.len())
                    .map(|n| format!(", tokens-{n}.json"))
                    .collect::<String>()
            ),
        );
        let policy_files =
            std::iter::once(SourceFile::from_text("base.json", BASE))
                .chain(files.iter().enumerate().map(|(n, text)| {
                    SourceFile::from_text(format!("tokens-{n}.json"), text.as_str())
                }))
                .collect();
        ConfigSet::from_sources(
            gateway,
            policy_files,
            vec![SourceFile::from_text("routes.yaml", ROUTES)],
        )
        .unwrap()
    }

    /// What a compile gave, comparable: the tokens and warnings, or the errors in order.
    fn outcome(
        result: &Result<Snapshot, ConfigErrors>,
    ) -> Result<(usize, Vec<crate::policy::Warning>), ConfigErrors> {
        result
            .as_ref()
            .map(|snapshot| {
                (
                    snapshot.policy.tokens.len(),
                    snapshot.policy.warnings.clone(),
                )
            })
            .map_err(Clone::clone)
    }

    #[test]
    fn a_token_file_is_recognised_by_its_first_bytes() {
        assert!(starts_like_token_file(br#"{"tokens": ["#));
        assert!(starts_like_token_file(b" \r\n\t{ \n \"tokens\"\n :[]}"));
        assert!(!starts_like_token_file(br#"{"users": [], "tokens": []}"#));
        assert!(!starts_like_token_file(br#"{"tokens_": []}"#));
        assert!(!starts_like_token_file(br#"{"tok"#));
        assert!(!starts_like_token_file(
            "\u{feff}{\"tokens\": []}".as_bytes()
        ));
        let yaml = PolicyFile::InMemory(SourceFile::from_text("t.yaml", r#"{"tokens": []}"#));
        assert_eq!(token_file_len(&yaml), None);
        let json = PolicyFile::InMemory(SourceFile::from_text("t.json", r#"{"tokens": []}"#));
        assert_eq!(token_file_len(&json), Some(14));
    }

    #[test]
    fn guessed_token_files_give_what_reading_every_file_whole_gives() {
        let t1 = token("t1", "u1");
        let t2 = token("t2", "u1");
        let cases: Vec<(&str, Vec<String>, bool)> = vec![
            (
                "valid",
                vec![
                    format!(r#"{{"tokens": [{t1}]}}"#),
                    format!(r#"{{"tokens": [{t2}]}}"#),
                ],
                false,
            ),
            ("empty", vec![r#"{"tokens": []}"#.to_string()], false),
            (
                "a duplicate across files",
                vec![
                    format!(r#"{{"tokens": [{t1}]}}"#),
                    format!(r#"{{"tokens": [{t1}]}}"#),
                ],
                false,
            ),
            (
                "an unknown user",
                vec![format!(r#"{{"tokens": [{}]}}"#, token("t3", "nobody"))],
                false,
            ),
            (
                "a user defined after the tokens",
                vec![format!(
                    r#"{{"tokens": [{}], "users": [{{"id": "u2", "email": "u2@example.com"}}]}}"#,
                    token("t4", "u2")
                )],
                true,
            ),
            (
                "an unknown key",
                vec![format!(r#"{{"tokens": [{t1}], "nope": 1}}"#)],
                true,
            ),
            (
                "a syntax error",
                vec![format!("{{\"tokens\": [{t1},\n]}}")],
                true,
            ),
            (
                "trailing text",
                vec![format!(r#"{{"tokens": [{t1}]}} x"#)],
                true,
            ),
            (
                "a wrong shape",
                vec![r#"{"tokens": [{"id": 7}]}"#.to_string()],
                true,
            ),
            (
                "a broken file besides",
                vec![
                    format!(r#"{{"tokens": [{t1}]}}"#),
                    r#"{"users": [{"id": 1}]}"#.to_string(),
                ],
                false,
            ),
        ];
        for (name, files, misjudged) in cases {
            let set = config(&files);
            let Compiled::Done(whole) = compile_with(&set, 1, 0, false) else {
                panic!("{name}: a compile that guesses nothing cannot misjudge");
            };
            match compile_with(&set, 1, 0, true) {
                Compiled::Done(guessed) => {
                    assert!(!misjudged, "{name}: the guess should have been found wrong");
                    assert_eq!(outcome(&guessed), outcome(&whole), "{name}");
                }
                Compiled::Misjudged => assert!(misjudged, "{name}: misjudged"),
            }
            assert_eq!(outcome(&compile(&set, 1, 0)), outcome(&whole), "{name}");
        }
        let set = config(&[format!(r#"{{"tokens": [{t1}, {t2}]}}"#)]);
        assert_eq!(
            outcome(&compile(&set, 1, 0)).map(|(tokens, _)| tokens),
            Ok(2)
        );
    }
}
