//! When to reload: file events in the config's folders (debounced), a slow timer, and `SIGHUP`.
//!
//! The watcher watches **folders**, never files: editors replace a file by writing a temporary one and
//! renaming it over the old (the old inode, and a watch on it, is gone), tools delete and recreate, and a
//! Kubernetes ConfigMap or Secret volume swaps a `..data` symlink to a new timestamped folder, so the files
//! (`gateway.yaml -> ..data/gateway.yaml`) change without any event on their own paths. Every event in a
//! watched folder on a config, policy, route or certificate file name, on a `..`-prefixed entry (the
//! ConfigMap machinery) or on a folder itself counts; others (the decision-log file, an editor's swap
//! files, our own reads) are ignored. After the first event the task waits for a quiet period
//! ([`QUIET`], at most [`MAX_SETTLE`]) and then reloads once; an unchanged content hash makes that cheap.
//!
//! The folders are re-derived from the serving snapshot after every reload and on every timer tick (a
//! config may name new files; a folder that was missing may exist now). If the watcher itself fails (an
//! error from the OS, such as a full inotify queue or a removed watch), it is dropped and recreated after a
//! backoff of 1 s doubling to 60 s; the failure shows on `/status` (`watcher`) and in
//! `permgate_config_watcher_up` / `permgate_config_watcher_errors_total`, and a reload follows the
//! recreation because events may have been missed. The timer keeps working meanwhile.

use std::collections::{BTreeSet, HashSet};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::event::{AccessKind, AccessMode};
use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::{Reloader, Trigger};

/// How long the folders must be quiet after an event before reloading.
pub const QUIET: Duration = Duration::from_millis(200);
/// The longest a reload waits for quiet: a folder that never stops changing still reloads.
pub const MAX_SETTLE: Duration = Duration::from_secs(2);
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// Which triggers the reload task listens to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Triggers {
    /// File events in the config's folders.
    pub watch: bool,
    /// The periodic re-check every `reload_interval_ms`.
    pub timer: bool,
    /// `SIGHUP` (installs a process-wide handler: only for the real server).
    pub sighup: bool,
}

/// The running reload task.
#[derive(Debug)]
pub struct ReloadTask {
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl ReloadTask {
    /// Stops the task (a reload in progress finishes first).
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
    }
}

/// What the notify callback (on its own thread) tells the task.
#[derive(Debug)]
enum Notice {
    Changed(Vec<PathBuf>),
    /// The OS dropped events (queue overflow): everything may have changed.
    Rescan,
    Failed(String),
}

// === impl Reloader (task) ===

impl Reloader {
    /// Starts the task that reloads on the chosen triggers. It first checks once (trigger `start`), since
    /// files may have changed between the first load and the watch being set up; with no trigger at all
    /// (only [`Reloader::reload_now`] calls, as in tests) it does nothing by itself.
    pub fn spawn(self: &Arc<Self>, triggers: Triggers) -> ReloadTask {
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(run(Arc::clone(self), triggers, stopped));
        ReloadTask {
            stop: Some(stop),
            task,
        }
    }
}

async fn run(reloader: Arc<Reloader>, triggers: Triggers, mut stopped: oneshot::Receiver<()>) {
    let (sender, mut notices) = mpsc::unbounded_channel();
    let mut folders = Folders::new(sender, triggers.watch);
    folders.sync(&reloader);
    let mut hangup = hangup_signal(triggers.sighup);
    if triggers.watch || triggers.timer || triggers.sighup {
        reload(&reloader, &mut folders, Trigger::Start).await;
    }
    let mut next_check = Instant::now() + interval(&reloader);
    loop {
        tokio::select! {
            _ = &mut stopped => break,
            notice = notices.recv() => {
                let Some(notice) = notice else { break };
                let relevant = match notice {
                    Notice::Changed(paths) => folders.relevant(&paths),
                    Notice::Rescan => true,
                    Notice::Failed(message) => {
                        folders.failed(&reloader, message);
                        false
                    }
                };
                if relevant {
                    settle(&mut notices, &mut folders, &reloader).await;
                    reload(&reloader, &mut folders, Trigger::Watch).await;
                }
            }
            () = next_hangup(&mut hangup) => {
                tracing::info!("SIGHUP: reloading the config");
                reload(&reloader, &mut folders, Trigger::Signal).await;
            }
            () = tokio::time::sleep_until(next_check), if triggers.timer => {
                reload(&reloader, &mut folders, Trigger::Timer).await;
                next_check = Instant::now() + interval(&reloader);
            }
            () = sleep_until_some(folders.retry_at) => {
                folders.retry_at = None;
                folders.sync(&reloader);
                // Events may have been lost while there was no watcher.
                reload(&reloader, &mut folders, Trigger::Watch).await;
            }
        }
    }
}

/// Reloads, then re-derives the watched folders from what is serving.
async fn reload(reloader: &Reloader, folders: &mut Folders, trigger: Trigger) {
    reloader.reload_now(trigger).await;
    folders.sync(reloader);
}

fn interval(reloader: &Reloader) -> Duration {
    reloader.gateway().snapshot().settings.reload_interval
}

/// Waits until no notice has come for [`QUIET`] (at most [`MAX_SETTLE`] in all).
async fn settle(
    notices: &mut mpsc::UnboundedReceiver<Notice>,
    folders: &mut Folders,
    reloader: &Reloader,
) {
    let deadline = Instant::now() + MAX_SETTLE;
    loop {
        let quiet_until = (Instant::now() + QUIET).min(deadline);
        match tokio::time::timeout_at(quiet_until, notices.recv()).await {
            Ok(Some(Notice::Failed(message))) => folders.failed(reloader, message),
            Ok(Some(_)) if Instant::now() < deadline => {}
            Ok(Some(_)) | Ok(None) | Err(_) => return,
        }
    }
}

async fn sleep_until_some(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(unix)]
type Hangup = Option<tokio::signal::unix::Signal>;
#[cfg(not(unix))]
type Hangup = Option<()>;

#[cfg(unix)]
fn hangup_signal(enabled: bool) -> Hangup {
    use tokio::signal::unix::{SignalKind, signal};
    if !enabled {
        return None;
    }
    match signal(SignalKind::hangup()) {
        Ok(signal) => Some(signal),
        Err(error) => {
            tracing::warn!(%error, "cannot install the SIGHUP handler; reload by editing the files");
            None
        }
    }
}

#[cfg(not(unix))]
fn hangup_signal(_enabled: bool) -> Hangup {
    None
}

async fn next_hangup(hangup: &mut Hangup) {
    #[cfg(unix)]
    if let Some(signal) = hangup
        && signal.recv().await.is_some()
    {
        return;
    }
    #[cfg(not(unix))]
    let _ = hangup;
    std::future::pending().await
}

/// The notify watcher and the folders it watches.
struct Folders {
    enabled: bool,
    sender: mpsc::UnboundedSender<Notice>,
    watcher: Option<RecommendedWatcher>,
    watched: BTreeSet<PathBuf>,
    /// File names whose events count (the config's files, certificates, CA file).
    names: HashSet<OsString>,
    /// Route folders: any `*.yaml`, `*.yml`, `*.json` appearing there counts.
    route_dirs: HashSet<PathBuf>,
    /// The decision and audit logs' file names, when they are files: their writes never count.
    ignored: Vec<OsString>,
    /// When to recreate a failed watcher.
    retry_at: Option<Instant>,
    backoff: Duration,
}

impl Folders {
    fn new(sender: mpsc::UnboundedSender<Notice>, enabled: bool) -> Self {
        Self {
            enabled,
            sender,
            watcher: None,
            watched: BTreeSet::new(),
            names: HashSet::new(),
            route_dirs: HashSet::new(),
            ignored: Vec::new(),
            retry_at: None,
            backoff: FIRST_BACKOFF,
        }
    }

    /// Creates the watcher when needed, and watches exactly the folders of the serving config.
    fn sync(&mut self, reloader: &Reloader) {
        if !self.enabled {
            reloader.set_watcher(|status| status.enabled = false);
            return;
        }
        let wanted = self.derive(reloader);
        if self.watcher.is_none() {
            if self.retry_at.is_some() {
                return;
            }
            match self.create() {
                Ok(watcher) => {
                    self.watcher = Some(watcher);
                    self.watched.clear();
                }
                Err(error) => {
                    self.failed(reloader, format!("cannot create the file watcher: {error}"));
                    return;
                }
            }
        }
        let Some(watcher) = self.watcher.as_mut() else {
            return;
        };
        let mut problems = Vec::new();
        for gone in self.watched.difference(&wanted) {
            // Already gone with its folder, most likely: nothing to undo.
            let _ = watcher.unwatch(gone);
        }
        self.watched.clear();
        // Watching again a folder already watched is cheap and repairs a watch the OS dropped (the folder
        // was removed and created again).
        for folder in &wanted {
            match watcher.watch(folder, RecursiveMode::NonRecursive) {
                Ok(()) => {
                    self.watched.insert(folder.clone());
                }
                Err(error) => problems.push(format!("cannot watch {}: {error}", folder.display())),
            }
        }
        let folders: Vec<PathBuf> = self.watched.iter().cloned().collect();
        reloader.metrics.watcher_up(problems.is_empty());
        reloader.set_watcher(|status| {
            status.enabled = true;
            status.healthy = problems.is_empty();
            status.folders = folders;
            if !problems.is_empty() {
                status.last_error = Some(problems.join("; "));
            }
        });
        if !problems.is_empty() {
            tracing::warn!(problems = %problems.join("; "), "some config folders are not watched; the timer still re-checks them");
        } else {
            self.backoff = FIRST_BACKOFF;
        }
    }

    fn create(&self) -> notify::Result<RecommendedWatcher> {
        let sender = self.sender.clone();
        notify::recommended_watcher(move |result: notify::Result<notify::Event>| {
            let notice = match result {
                // Our own reads (open, read, close without writing) are not changes.
                Ok(event) if ignorable(&event.kind) => return,
                Ok(event) if event.need_rescan() => Notice::Rescan,
                Ok(event) => Notice::Changed(event.paths),
                Err(error) => Notice::Failed(error.to_string()),
            };
            // The task is gone only when the gateway is stopping.
            let _ = sender.send(notice);
        })
    }

    /// The watcher failed: drop it and recreate it after the backoff.
    fn failed(&mut self, reloader: &Reloader, message: String) {
        tracing::error!(error = %message, retry_in = ?self.backoff, "config file watcher failed; recreating it");
        self.watcher = None;
        self.watched.clear();
        self.retry_at = Some(Instant::now() + self.backoff);
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
        reloader.metrics.watcher_error();
        reloader.set_watcher(|status| {
            status.healthy = false;
            status.folders.clear();
            status.last_error = Some(message);
            status.restarts += 1;
        });
    }

    /// The folders, file names and route folders of the serving config (absolute, not resolving links:
    /// the ConfigMap's symlinks must stay as named).
    fn derive(&mut self, reloader: &Reloader) -> BTreeSet<PathBuf> {
        let snapshot = reloader.gateway().snapshot();
        let settings = &snapshot.settings;
        let mut files: Vec<PathBuf> = vec![reloader.config_path().to_path_buf()];
        files.extend(snapshot.files.iter().cloned());
        if let Some(tls) = &settings.tls {
            files.push(tls.cert_file.clone());
            files.push(tls.key_file.clone());
        }
        if let Some(ca_file) = &settings.upstream.ca_file {
            files.push(ca_file.clone());
        }
        let mut folders = BTreeSet::new();
        self.names.clear();
        for file in &files {
            let file = absolute(file);
            if let Some(name) = file.file_name() {
                self.names.insert(name.to_os_string());
            }
            if let Some(parent) = file.parent() {
                folders.insert(parent.to_path_buf());
            }
        }
        self.route_dirs.clear();
        for entry in &settings.route_files {
            let entry = absolute(entry);
            if entry.is_dir() {
                folders.insert(entry.clone());
                self.route_dirs.insert(entry);
            } else if let Some(parent) = entry.parent() {
                folders.insert(parent.to_path_buf());
            }
        }
        self.ignored = [Some(&settings.decision_log), settings.audit_log.as_ref()]
            .into_iter()
            .flatten()
            .filter_map(|log| log.path.as_ref()?.file_name())
            .map(|name| name.to_os_string())
            .collect();
        folders
    }

    /// Whether an event on `paths` may have changed the config.
    fn relevant(&self, paths: &[PathBuf]) -> bool {
        paths.is_empty() || paths.iter().any(|path| self.relevant_path(path))
    }

    fn relevant_path(&self, path: &Path) -> bool {
        if self.watched.contains(path) {
            // The folder itself was removed or moved.
            return true;
        }
        let Some(name) = path.file_name() else {
            return true;
        };
        if self.ignored.iter().any(|ignored| ignored == name) {
            return false;
        }
        if self.names.contains(name) || name.to_string_lossy().starts_with("..") {
            return true;
        }
        let config_like = path
            .extension()
            .is_some_and(|ext| ext == "yaml" || ext == "yml" || ext == "json");
        config_like
            && path
                .parent()
                .is_some_and(|parent| self.route_dirs.contains(parent))
    }
}

/// Reads that are not changes: opening, reading, closing a file without writing it.
fn ignorable(kind: &EventKind) -> bool {
    matches!(kind, EventKind::Access(access) if !matches!(access, AccessKind::Close(AccessMode::Write)))
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn folders() -> Folders {
        let (sender, _receiver) = mpsc::unbounded_channel();
        let mut folders = Folders::new(sender, true);
        folders.names.insert("tokens.yaml".into());
        folders.route_dirs.insert("/etc/permgate/routes".into());
        folders.watched.insert("/etc/permgate".into());
        folders.ignored = vec!["decisions.json".into()];
        folders
    }

    #[test]
    fn only_config_events_count() {
        let folders = folders();
        for (path, relevant) in [
            ("/etc/permgate/tokens.yaml", true),
            ("/etc/permgate/..data", true),
            ("/etc/permgate/..2024_01_01_00_00_00.000", true),
            ("/etc/permgate/routes/new.yaml", true),
            ("/etc/permgate/routes/notes.txt", false),
            ("/etc/permgate/.tokens.yaml.swp", false),
            ("/etc/permgate/decisions.json", false),
            ("/etc/permgate/other.yaml", false),
            ("/etc/permgate", true),
        ] {
            assert_eq!(folders.relevant(&[PathBuf::from(path)]), relevant, "{path}");
        }
        assert!(folders.relevant(&[]));
    }

    #[test]
    fn reads_are_not_changes() {
        use notify::event::{CreateKind, ModifyKind};
        assert!(ignorable(&EventKind::Access(AccessKind::Open(
            AccessMode::Any
        ))));
        assert!(ignorable(&EventKind::Access(AccessKind::Close(
            AccessMode::Read
        ))));
        assert!(!ignorable(&EventKind::Access(AccessKind::Close(
            AccessMode::Write
        ))));
        assert!(!ignorable(&EventKind::Create(CreateKind::File)));
        assert!(!ignorable(&EventKind::Modify(ModifyKind::Any)));
    }
}
