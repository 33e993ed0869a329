//! Live reload: re-read every file, and when anything changed, compile the whole set off the request path
//! and swap it in, with everything else of its generation ([`Live`]), with one `ArcSwap::store`; a bad
//! config is rejected whole and the last good one keeps serving.
//!
//! ```text
//! trigger (file event, timer, SIGHUP, reload_now) → read all files → same hashes? → unchanged
//!   → compile (spawn_blocking) → upstream client (reused, or built: CA file usable?) → certificate
//!   rotated (loaded)? → upstream credential read → one store of the whole new `Live` (snapshot of
//!   generation + 1, upstream client, credential, certificate, route series) → status + metrics
//!   any error on the way → rejected: nothing swapped, the errors (file:line: path: message) logged and
//!   shown on /status and in `permgate_config_last_reload_success`
//! ```
//!
//! The periodic re-check (`reload_interval_ms`) first compares each file's stamp (size, times, inode:
//! [`stamps`]) with the last full read and reads nothing when none changed; file events, `SIGHUP` and manual
//! reloads always read.
//!
//! **One consistent set of files.** Every read of one attempt goes through a [`config::ReadLedger`]: paths are
//! resolved through their symlinks once (a ConfigMap's `..data` swap does not move the attempt's reads), the
//! "changed?" read and the compile's reads must agree file by file, and after the compile every path must
//! still resolve to the same, unchanged file. An attempt that fails that is thrown away and tried again, up to
//! [`config::load::CONSISTENT_READ_TRIES`] times; then the config is reported as changing too fast (rejected:
//! the last good one keeps serving, `in_sync` is false) and the next trigger tries again. So what is served is
//! always exactly one set of files that was on disk, never a mix.
//!
//! **"Changed" is measured against what is served.** Two hashes: the config's `content_hash` (every config,
//! policy and route file) and a hash of the TLS certificate and key files. Content equal to what is served
//! (before or after compiling) is `unchanged`: no new generation, and `in_sync` is true again (files restored
//! after a rejected edit). Content equal to the last rejected attempt is `unchanged` too, without recompiling
//! (or re-logging) it every 30 s; fixing any file changes the hash and applies it.
//!
//! Reloads are serialized (one at a time, whatever triggered them). [`watch`] holds the task that decides
//! when to reload. This module never decides a request and never logs a secret: the files it reads hold only
//! hashes of secrets, and errors name files, paths and lines.

pub mod stamps;
pub mod watch;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::config::gateway::{Settings, TlsSettings};
use crate::config::{self, ConfigError, ConfigErrors};
use crate::metrics::{Metrics, ReloadOutcome};
use crate::proxy::Gateway;
use crate::proxy::Live;
use crate::proxy::upstream::UpstreamClient;
use crate::snapshot::Snapshot;

use stamps::Stamps;
pub use watch::{ReloadTask, Triggers};

/// What started a reload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// The check right after the watcher starts (files may have changed since the first load).
    Start,
    /// A file-system event in a watched folder.
    Watch,
    /// The slow periodic re-check (`reload_interval_ms`).
    Timer,
    /// `SIGHUP`.
    Signal,
    /// A direct call of [`Reloader::reload_now`].
    Manual,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Start => "start",
            Self::Watch => "watch",
            Self::Timer => "timer",
            Self::Signal => "signal",
            Self::Manual => "manual",
        }
    }
}

/// One reload attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    pub outcome: ReloadOutcome,
    pub trigger: Trigger,
    pub at: OffsetDateTime,
    /// The generation serving after it.
    pub generation: u64,
    /// How long it took, from the trigger to the store (reading, compiling, verifying; a reload waiting
    /// for another one is not counted).
    pub duration: std::time::Duration,
    /// Whether its compile took the unchanged token files' tokens from the served snapshot (only token
    /// files changed) instead of compiling everything.
    pub reused: bool,
}

/// The file watcher's health, for `/status`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WatcherStatus {
    /// Whether file events are watched at all (the timer and `SIGHUP` work either way).
    pub enabled: bool,
    /// Running and watching every folder.
    pub healthy: bool,
    /// The folders watched.
    pub folders: Vec<PathBuf>,
    /// The last error (the watcher failed, or a folder could not be watched).
    pub last_error: Option<String>,
    /// How many times the watcher failed and was recreated.
    pub restarts: u64,
}

/// Starts the task that records each applied reload's access changes, in order: the diff of the replaced
/// and the applied snapshot (`analysis::diff`, on a blocking thread; when only token files changed it looks at
/// those tokens alone), then one `config_change` line on the decision log, the counts in
/// `permgate_config_access_changes_total`, and the record as `/status`'s `last_change`. The replaced snapshot
/// is kept alive until its diff is done.
fn access_recorder(
    config: String,
    metrics: Arc<Metrics>,
    log: Option<crate::decision_log::DecisionLog>,
    status: Arc<Mutex<ReloadStatus>>,
) -> ChangeQueue {
    let (queue, mut pairs) =
        tokio::sync::mpsc::unbounded_channel::<(Arc<Snapshot>, Arc<Snapshot>)>();
    tokio::spawn(async move {
        while let Some((replaced, applied)) = pairs.recv().await {
            let time = std::time::SystemTime::now();
            let at = OffsetDateTime::from(time);
            let stamp = at.format(&Rfc3339).unwrap_or_default();
            let config = config.clone();
            let generation = applied.generation;
            let computed = tokio::task::spawn_blocking(move || {
                let diff = crate::analysis::diff(&replaced, &applied, at.unix_timestamp(), &config);
                let record = crate::analysis::diff::change_record(
                    &diff,
                    applied.generation,
                    &replaced.content_hash,
                    &applied.content_hash,
                    &stamp,
                );
                (diff.counts(), record)
            })
            .await;
            let Ok(((gained, lost), record)) = computed else {
                tracing::warn!(
                    generation,
                    "the access changes of this reload could not be computed"
                );
                continue;
            };
            metrics.config_access_changes(gained, lost);
            tracing::info!(
                generation,
                gained,
                lost,
                "access changes of the applied config recorded"
            );
            if let (Some(log), serde_json::Value::Object(members)) = (&log, &record) {
                // The log line's own `time` comes first; the record's other members follow it.
                let mut members = members.clone();
                members.remove("time");
                let text = serde_json::Value::Object(members).to_string();
                let inner = text
                    .strip_prefix('{')
                    .and_then(|rest| rest.strip_suffix('}'))
                    .unwrap_or_default()
                    .to_string();
                log.record(time, inner);
            }
            status
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .last_change = Some(record);
        }
    });
    queue
}

/// What `/status` shows about reloading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReloadStatus {
    /// The last attempt, of any outcome; `None` until the first.
    pub last: Option<Attempt>,
    /// The last attempt that applied a config (the first load counts).
    pub last_applied: OffsetDateTime,
    /// While the files on disk are a rejected config: its errors, one per line (file:line:column: path:
    /// message), and when it was rejected. Cleared when a config applies.
    pub error: Option<(OffsetDateTime, ConfigErrors)>,
    /// Settings that changed since the start but only take effect at a restart.
    pub restart_required: Vec<&'static str>,
    pub watcher: WatcherStatus,
    /// The access-change record of the last applied reload, once computed (`None` before any).
    pub last_change: Option<serde_json::Value>,
}

/// The last content seen: the config's hash and the certificate files' hash; and the files' stamps then.
#[derive(Debug, Clone)]
struct Seen {
    config: String,
    certificates: Option<String>,
    /// The stamps of the files that were hashed, when they can vouch for that content (see [`stamps`]).
    stamps: Option<Stamps>,
    /// Timer checks answered by `stamps` alone since the files were last read.
    checks_by_stamps: u32,
    /// Each policy file's digest and stamp as read, for the next reload to take on trust where the stamp
    /// still vouches for it (file events and timer checks; `SIGHUP`, manual reloads and every
    /// [`stamps::FULL_READ_EVERY`]th timer check read everything).
    known: config::load::KnownDigests,
}

impl Seen {
    /// Whether both hashes are the same.
    fn same_content(&self, other: &Self) -> bool {
        self.config == other.config && self.certificates == other.certificates
    }
}

/// What the reloader remembers between attempts: the last content seen, and the certificate files' hash of
/// the serving snapshot (its config hash is the snapshot's own `content_hash`).
#[derive(Debug, Clone)]
struct Memory {
    last: Seen,
    served_certificates: Option<String>,
}

/// Reloads the config of one gateway.
pub struct Reloader {
    config_path: PathBuf,
    gateway: Arc<Gateway>,
    metrics: Arc<Metrics>,
    /// The settings the listeners were started with: restart-only changes are measured against these.
    started: Settings,
    /// Serializes reloads, and holds what the last one saw.
    memory: tokio::sync::Mutex<Memory>,
    status: Arc<Mutex<ReloadStatus>>,
    /// Called after each file a reload reads (tests time file swaps into a reload with it).
    read_hook: Mutex<Option<config::ReadHook>>,
    /// The queue of the task that computes each applied reload's access changes, off the reload's path
    /// (started by the first applied reload).
    access_changes: std::sync::OnceLock<ChangeQueue>,
    /// Where the access-change records go.
    change_records: ChangeRecords,
}

/// Where each applied reload's access-change record (`config_change`) is written.
#[derive(Debug, Clone, Default)]
pub enum ChangeRecords {
    /// On the decision log, beside the requests (the default).
    #[default]
    DecisionLog,
    /// On its own sink (`audit_log`).
    AuditLog(crate::decision_log::DecisionLog),
    /// Nowhere (`audit_log: {sink: off}`); `/status` and the metric still have it.
    Off,
}

/// Pairs of (replaced, applied) snapshots whose access changes are still to be recorded.
type ChangeQueue = tokio::sync::mpsc::UnboundedSender<(Arc<Snapshot>, Arc<Snapshot>)>;

impl std::fmt::Debug for Reloader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reloader")
            .field("config_path", &self.config_path)
            .field("status", &self.status)
            .finish()
    }
}

/// What the blocking part of a reload found.
enum Prepared {
    /// Nothing changed; `seen` is what to remember (fresh stamps, or one more check by stamps). `in_sync`:
    /// the files on disk were found to be exactly what is served (a rejected edit undone).
    Unchanged { seen: Seen, in_sync: bool },
    Rejected {
        errors: ConfigErrors,
        /// The content that was rejected (`None` when the files could not even be read: try again).
        seen: Option<Seen>,
    },
    Ready {
        snapshot: Box<Snapshot>,
        seen: Seen,
        /// The compile reused the unchanged token files' tokens.
        reused: bool,
        /// The upstream clients for the new settings (the serving ones when those did not change).
        upstream: Arc<UpstreamClient>,
        /// The inbound certificate, when it was rotated (else the serving one stays).
        certificate: Option<Arc<rustls::sign::CertifiedKey>>,
    },
}

// === impl Reloader ===

impl Reloader {
    /// A reloader for the gateway serving the config at `config_path` (and rotating its inbound certificate
    /// when TLS is on). Records the serving snapshot as applied (metrics start from it).
    pub fn new(
        config_path: impl Into<PathBuf>,
        gateway: Arc<Gateway>,
        metrics: Arc<Metrics>,
        change_records: ChangeRecords,
    ) -> Arc<Self> {
        let current = gateway.snapshot();
        // Read once at start; an unreadable file here only means the first check sees a change.
        let certificate_hash = current
            .settings
            .tls
            .as_ref()
            .and_then(|tls| hash_certificates(tls).ok());
        metrics.config_applied(&current, current.loaded_at);
        metrics.restart_required(false);
        let loaded_at = OffsetDateTime::from_unix_timestamp(current.loaded_at)
            .unwrap_or(OffsetDateTime::UNIX_EPOCH);
        Arc::new(Self {
            config_path: config_path.into(),
            started: current.settings.clone(),
            memory: tokio::sync::Mutex::new(Memory {
                last: Seen {
                    config: current.content_hash.clone(),
                    certificates: certificate_hash.clone(),
                    // Not known yet: the first check reads the files.
                    stamps: None,
                    checks_by_stamps: 0,
                    known: config::load::KnownDigests::default(),
                },
                served_certificates: certificate_hash,
            }),
            read_hook: Mutex::new(None),
            status: Arc::new(Mutex::new(ReloadStatus {
                last: None,
                last_applied: loaded_at,
                error: None,
                restart_required: Vec::new(),
                watcher: WatcherStatus::default(),
                last_change: None,
            })),
            access_changes: std::sync::OnceLock::new(),
            change_records,
            gateway,
            metrics,
        })
    }

    /// The `gateway.yaml` being watched.
    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// The gateway it reloads.
    pub fn gateway(&self) -> &Arc<Gateway> {
        &self.gateway
    }

    /// The reload state, for `/status`.
    pub fn status(&self) -> ReloadStatus {
        self.lock_status().clone()
    }

    /// Calls `hook` with each file's path after a reload reads it (for tests that time file swaps into a
    /// reload; it runs on the reload's blocking threads and must not block for long).
    pub fn set_read_hook(&self, hook: Option<config::ReadHook>) {
        *self
            .read_hook
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = hook;
    }

    /// Re-reads every file now and applies the config when it changed and is valid. Waits for a reload
    /// already running. The heavy work runs on the blocking pool, never on a request's thread.
    pub async fn reload_now(&self, trigger: Trigger) -> ReloadOutcome {
        let mut memory = self.memory.lock().await;
        let started = std::time::Instant::now();
        let current = self.gateway.live();
        let hook = self
            .read_hook
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        let prepared = {
            let config_path = self.config_path.clone();
            let remembered = memory.clone();
            let current = Arc::clone(&current);
            tokio::task::spawn_blocking(move || {
                prepare(&config_path, &remembered, &current, trigger, hook)
            })
            .await
            .unwrap_or_else(|error| Prepared::Rejected {
                errors: ConfigError::file(
                    &self.config_path,
                    config::ErrorKind::Internal,
                    format!("internal error while reloading: {error}"),
                )
                .into(),
                seen: None,
            })
        };
        let now = OffsetDateTime::now_utc();
        let seen = &mut memory.last;
        match prepared {
            Prepared::Unchanged {
                seen: unchanged,
                in_sync,
            } => {
                *seen = unchanged;
                tracing::debug!(trigger = trigger.as_str(), in_sync, "config unchanged");
                if in_sync {
                    self.lock_status().error = None;
                    self.metrics.config_in_sync();
                }
                self.finish(
                    trigger,
                    ReloadOutcome::Unchanged,
                    now,
                    current.snapshot.generation,
                    (started.elapsed(), false),
                );
                ReloadOutcome::Unchanged
            }
            Prepared::Rejected {
                errors,
                seen: rejected,
            } => {
                if let Some(rejected) = rejected {
                    *seen = rejected;
                }
                tracing::error!(
                    trigger = trigger.as_str(),
                    generation = current.snapshot.generation,
                    errors = errors.0.len(),
                    "config rejected; the last good config keeps serving:\n{errors}"
                );
                self.lock_status().error = Some((now, errors));
                self.finish(
                    trigger,
                    ReloadOutcome::Rejected,
                    now,
                    current.snapshot.generation,
                    (started.elapsed(), false),
                );
                ReloadOutcome::Rejected
            }
            Prepared::Ready {
                snapshot,
                seen: applied,
                reused,
                upstream,
                certificate,
            } => {
                memory.served_certificates = applied.certificates.clone();
                memory.last = applied;
                let restart = self.started.restart_only_changes(&snapshot.settings);
                let snapshot: Arc<Snapshot> = Arc::from(snapshot);
                // Built whole: the new snapshot with the upstream clients for its settings, its credential,
                // its certificate and its route series.
                let (live, credential_error) =
                    current.next(Arc::clone(&snapshot), upstream, certificate, &self.metrics);
                if let Some(error) = credential_error {
                    tracing::warn!(%error, "the upstream client could not be rebuilt; the previous one stays");
                }
                // The one store: from here every new request (and TLS handshake) uses the new generation.
                self.gateway.apply(live);
                // The access-change record is computed after the swap, by another task: the new
                // generation serves meanwhile.
                self.record_access_changes(Arc::clone(&current.snapshot), Arc::clone(&snapshot));
                self.metrics.config_applied(&snapshot, snapshot.loaded_at);
                self.metrics.restart_required(!restart.is_empty());
                let duration = started.elapsed();
                tracing::info!(
                    trigger = trigger.as_str(),
                    generation = snapshot.generation,
                    content_hash = %snapshot.content_hash,
                    routes = snapshot.routes.len(),
                    tokens = snapshot.policy.tokens.len(),
                    duration_ms = duration.as_millis() as u64,
                    reused_unchanged_token_files = reused,
                    "config applied"
                );
                if !restart.is_empty() {
                    tracing::warn!(
                        settings = ?restart,
                        "changed settings take effect only at a restart; everything else is applied"
                    );
                }
                {
                    let mut status = self.lock_status();
                    status.error = None;
                    status.last_applied = now;
                    status.restart_required = restart;
                }
                self.finish(
                    trigger,
                    ReloadOutcome::Applied,
                    now,
                    snapshot.generation,
                    (duration, reused),
                );
                ReloadOutcome::Applied
            }
        }
    }

    /// Queues the diff between the replaced and the applied snapshot (see [`access_recorder`]).
    fn record_access_changes(&self, replaced: Arc<Snapshot>, applied: Arc<Snapshot>) {
        let queue = self.access_changes.get_or_init(|| {
            access_recorder(
                self.config_path.display().to_string(),
                Arc::clone(&self.metrics),
                match &self.change_records {
                    ChangeRecords::DecisionLog => self.gateway.decision_log().cloned(),
                    ChangeRecords::AuditLog(log) => Some(log.clone()),
                    ChangeRecords::Off => None,
                },
                Arc::clone(&self.status),
            )
        });
        if queue.send((replaced, applied)).is_err() {
            tracing::warn!(
                "the access-change recorder has stopped; this reload's changes are not recorded"
            );
        }
    }

    fn finish(
        &self,
        trigger: Trigger,
        outcome: ReloadOutcome,
        at: OffsetDateTime,
        generation: u64,
        (duration, reused): (std::time::Duration, bool),
    ) {
        self.metrics.config_reload(outcome, at.unix_timestamp());
        self.lock_status().last = Some(Attempt {
            outcome,
            trigger,
            at,
            generation,
            duration,
            reused,
        });
    }

    /// Updates the watcher's part of the status.
    pub(crate) fn set_watcher(&self, update: impl FnOnce(&mut WatcherStatus)) {
        update(&mut self.lock_status().watcher);
    }

    fn lock_status(&self) -> MutexGuard<'_, ReloadStatus> {
        // A panic while holding this lock cannot leave the status half-written in a harmful way.
        self.status
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The blocking part: (for the timer) compare stamps; then attempts (each read, compare, compile, verify)
/// until one read a consistent set of files, or [`config::load::CONSISTENT_READ_TRIES`] did not.
fn prepare(
    config_path: &Path,
    memory: &Memory,
    current: &Live,
    trigger: Trigger,
    hook: Option<config::ReadHook>,
) -> Prepared {
    let last = &memory.last;
    if trigger == Trigger::Timer
        && last.checks_by_stamps < stamps::FULL_READ_EVERY
        && last.stamps.as_ref().is_some_and(Stamps::still_current)
    {
        return Prepared::Unchanged {
            seen: Seen {
                checks_by_stamps: last.checks_by_stamps + 1,
                ..last.clone()
            },
            in_sync: false,
        };
    }
    // File events and stamp-checked timer checks trust unchanged stamps; the rest read every file.
    let trust_stamps = matches!(trigger, Trigger::Watch)
        || (trigger == Trigger::Timer && last.checks_by_stamps < stamps::FULL_READ_EVERY);
    let empty = config::load::KnownDigests::default();
    let known = if trust_stamps { &last.known } else { &empty };
    let mut tries = 0;
    loop {
        tries += 1;
        match attempt(config_path, memory, known, current, hook.clone()) {
            Ok(prepared) => return prepared,
            Err(inconsistency) if tries >= config::load::CONSISTENT_READ_TRIES => {
                tracing::warn!(tries, %inconsistency, "the config kept changing while it was read");
                return Prepared::Rejected {
                    errors: config::load::changing_too_fast(config_path, tries, &inconsistency)
                        .into(),
                    // Nothing to remember: the next trigger reads again.
                    seen: None,
                };
            }
            Err(inconsistency) => {
                tracing::debug!(tries, %inconsistency, "the config changed while it was read: reading again");
                std::thread::sleep(config::load::retry_pause(tries));
            }
        }
    }
}

/// One attempt: read (every file through a ledger), compare with what is served and what was last seen,
/// compile, verify that the files read are still exactly what is on disk, build the upstream clients when
/// their settings changed (checking the CA file), load a rotated certificate. `Err` when the files changed
/// under it (try again).
fn attempt(
    config_path: &Path,
    memory: &Memory,
    known: &config::load::KnownDigests,
    live: &Live,
    hook: Option<config::ReadHook>,
) -> Result<Prepared, config::Inconsistency> {
    let current = &*live.snapshot;
    let last = &memory.last;
    let read_started = SystemTime::now();
    let ledger = config::ReadLedger::with_hook(hook);
    let read = config::read_into(config_path, Arc::clone(&ledger)).and_then(|set| {
        config::load::content_digests_known(&set, known).map(|(hash, digests)| (set, hash, digests))
    });
    let (set, content_hash, digests) = match read {
        Ok(read) => read,
        Err(errors) => {
            // A file missing or unreadable because a swap is under way is no error of the config.
            ledger.verify()?;
            return Ok(Prepared::Rejected { errors, seen: None });
        }
    };
    let located = |path: &str, message: String| {
        let mut error = ConfigError::new(
            &set.gateway.path,
            path,
            config::ErrorKind::InvalidSetting,
            message,
        );
        set.gateway.locate(std::slice::from_mut(&mut error));
        ConfigErrors::from(error)
    };
    let certificate_hash = match &set.settings.tls {
        Some(tls) => match hash_certificates(tls) {
            Ok(hash) => Some(hash),
            Err(message) => {
                return Ok(Prepared::Rejected {
                    errors: located("tls", message),
                    seen: None,
                });
            }
        },
        None => None,
    };
    // Every file and folder the config consists of: a new file in a route folder changes the folder.
    let tls_files = set
        .settings
        .tls
        .iter()
        .flat_map(|tls| [tls.cert_file.as_path(), tls.key_file.as_path()]);
    let stamped = set
        .paths()
        .chain(set.settings.route_files.iter().map(PathBuf::as_path))
        .chain(tls_files);
    let seen = Seen {
        config: content_hash,
        certificates: certificate_hash,
        stamps: Stamps::after_read(stamped, read_started),
        checks_by_stamps: 0,
        known: config::load::KnownDigests::of(&set, &digests),
    };
    // What was read is one set of files, and still what is on disk: only then can it be compared.
    set.verify()?;
    let served = |config: &str| {
        config == current.content_hash && seen.certificates == memory.served_certificates
    };
    // Exactly what is served (a rejected edit undone, or a touch): nothing to apply.
    if served(&seen.config) {
        return Ok(Prepared::Unchanged {
            seen,
            in_sync: true,
        });
    }
    if seen.same_content(last) {
        return Ok(Prepared::Unchanged {
            seen,
            in_sync: false,
        });
    }
    // Only token files changed: their tokens are compiled, the rest reused from what is served.
    let (generation, now) = (
        current.generation.saturating_add(1),
        config::load::unix_now(),
    );
    let reusing = config::load::compile_reusing(&set, current, &digests, generation, now);
    let reused = reusing.is_some();
    let compiled = reusing.unwrap_or_else(|| config::compile(&set, generation, now));
    // Whatever the compile made of them, the files must still be the ones read.
    set.verify()?;
    let snapshot = match compiled {
        Ok(snapshot) => snapshot,
        Err(errors) => {
            return Ok(Prepared::Rejected {
                errors,
                seen: Some(seen),
            });
        }
    };
    if served(&snapshot.content_hash) {
        return Ok(Prepared::Unchanged {
            seen,
            in_sync: true,
        });
    }
    // The serving clients when they were built for these settings; else new ones, which reads the CA file.
    let upstream = match live.upstream_for(&snapshot) {
        Ok(upstream) => upstream,
        Err(error) => {
            let path = match error {
                crate::proxy::ProxyError::Tls(_) => "upstream.ca_file",
                _ => "upstream.url",
            };
            return Ok(Prepared::Rejected {
                errors: located(path, error.to_string()),
                seen: Some(seen),
            });
        }
    };
    // Only when the listener speaks TLS (it was started with a certificate) and the files or settings changed.
    let mut certificate = None;
    if let (Some(_), Some(tls)) = (&live.certificate, &snapshot.settings.tls)
        && (seen.certificates != memory.served_certificates
            || current.settings.tls.as_ref() != Some(tls))
    {
        match crate::tls::load_certified_key(&tls.cert_file, &tls.key_file) {
            Ok(key) => certificate = Some(Arc::new(key)),
            Err(error) => {
                return Ok(Prepared::Rejected {
                    errors: located("tls", error.to_string()),
                    seen: Some(seen),
                });
            }
        }
    }
    Ok(Prepared::Ready {
        snapshot: Box::new(snapshot),
        seen,
        reused,
        upstream,
        certificate,
    })
}

/// Hex SHA-256 over the certificate and key files' contents (never shown: it covers the private key).
fn hash_certificates(tls: &TlsSettings) -> Result<String, String> {
    let mut hasher = Sha256::new();
    for file in [&tls.cert_file, &tls.key_file] {
        let bytes = std::fs::read(file)
            .map_err(|error| format!("{}: cannot read: {error}", file.display()))?;
        hasher.update((bytes.len() as u64).to_le_bytes());
        hasher.update(&bytes);
    }
    Ok(hex::encode(hasher.finalize()))
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::time::Duration;

    fn shipped() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("config/gateway.yaml")
    }

    /// What a gateway serving the config at `path` would serve.
    #[allow(clippy::unwrap_used)] // test code (the module's `cfg(all(test, unix))` is not seen as a test)
    fn serving(path: &Path) -> Live {
        let snapshot = Arc::new(config::load(path).unwrap());
        Live::first(snapshot, None, &Metrics::new().unwrap()).unwrap()
    }

    fn memory(snapshot: &Snapshot, stamps: Option<Stamps>) -> Memory {
        Memory {
            last: seen(snapshot, stamps),
            served_certificates: None,
        }
    }

    fn seen(snapshot: &Snapshot, stamps: Option<Stamps>) -> Seen {
        Seen {
            config: snapshot.content_hash.clone(),
            certificates: None,
            stamps,
            checks_by_stamps: 0,
            known: config::load::KnownDigests::default(),
        }
    }

    #[test]
    fn the_timer_reads_nothing_while_the_stamps_hold_and_reads_when_they_do_not() {
        let live = serving(&shipped());
        let current = &*live.snapshot;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("tokens.json");
        std::fs::write(&file, "{}").unwrap();
        // As if the last read began after the racy window: the stamps vouch for the file.
        let read_later = SystemTime::now() + stamps::RACY_WINDOW + Duration::from_secs(1);
        let last = seen(current, Stamps::after_read([file.as_path()], read_later));
        assert!(last.stamps.is_some());
        // A config that cannot be read: every check that reads is a rejection.
        let unreadable = dir.path().join("missing/gateway.yaml");
        let check = |last: &Seen, trigger| {
            let memory = Memory {
                last: last.clone(),
                served_certificates: None,
            };
            prepare(&unreadable, &memory, &live, trigger, None)
        };

        let Prepared::Unchanged { seen: after, .. } = check(&last, Trigger::Timer) else {
            panic!("the timer read the files although no stamp changed");
        };
        assert_eq!(after.checks_by_stamps, 1);
        for trigger in [
            Trigger::Watch,
            Trigger::Signal,
            Trigger::Manual,
            Trigger::Start,
        ] {
            assert!(matches!(check(&last, trigger), Prepared::Rejected { .. }));
        }
        let due = Seen {
            checks_by_stamps: stamps::FULL_READ_EVERY,
            ..last.clone()
        };
        assert!(matches!(
            check(&due, Trigger::Timer),
            Prepared::Rejected { .. }
        ));
        std::fs::write(&file, "{ }").unwrap();
        assert!(matches!(
            check(&last, Trigger::Timer),
            Prepared::Rejected { .. }
        ));
    }

    #[test]
    fn a_full_read_keeps_stamps_only_for_files_not_changed_just_before_it() {
        let path = shipped();
        let live = serving(&path);
        let current = &*live.snapshot;
        // The repository's files are older than the racy window.
        let Prepared::Unchanged { seen: after, .. } =
            prepare(&path, &memory(current, None), &live, Trigger::Timer, None)
        else {
            panic!("the shipped config changed while it was read");
        };
        assert!(after.stamps.is_some_and(|stamps| stamps.still_current()));

        // A copy written just now: read and applied, but its stamps are not trusted yet.
        let dir = tempfile::tempdir().unwrap();
        let repository = Path::new(env!("CARGO_MANIFEST_DIR"));
        for folder in ["config", "routes"] {
            std::fs::create_dir(dir.path().join(folder)).unwrap();
            for entry in std::fs::read_dir(repository.join(folder)).unwrap() {
                let entry = entry.unwrap();
                if entry.file_type().unwrap().is_file() {
                    let copy = dir.path().join(folder).join(entry.file_name());
                    std::fs::copy(entry.path(), copy).unwrap();
                }
            }
        }
        let copied = dir.path().join("config/gateway.yaml");
        let prepared = prepare(&copied, &memory(current, None), &live, Trigger::Timer, None);
        let (Prepared::Ready { seen: after, .. }
        | Prepared::Rejected {
            seen: Some(after), ..
        }) = prepared
        else {
            panic!("the copy was neither applied nor compiled");
        };
        assert!(after.stamps.is_none());
    }
}
