//! What one load of a config read, file by file, so that it can prove afterwards that it read one consistent
//! set of files, not some of one version and some of another.
//!
//! A config is many files, read one after the other (and some twice: once to tell whether anything changed,
//! once or twice to compile) over as long as a second at 100k tokens. A Kubernetes ConfigMap update (its
//! `..data` symlink swapped to a new folder), a git-sync checkout or an editor saving several files can land
//! in the middle; both versions may be valid alone and their mix valid too, and the mix can grant what
//! neither grants. So every read of one load goes through a [`ReadLedger`]:
//!
//! - each path is **resolved through its symlinks once**, at its first use, and every read of it in this
//!   load opens that resolved path: a swap of `..data` after that does not move this load's reads;
//! - each file's **stamp** (inode, size, times) is taken before its first read, and the **digest** of every
//!   read of it is noted: two reads that differ make the load torn;
//! - [`ReadLedger::verify`], after the compile, resolves every path again and compares stamps (and, for a file
//!   changed too recently for its stamp to vouch for its content, re-reads and compares the digest); a route
//!   folder's listing is compared too.
//!
//! A load that verifies compiled exactly the files on disk at the end of it; one that does not is thrown
//! away and tried again (the reloader and `config::load` retry a bounded number of times).
//!
//! It does no parsing and knows nothing of what the files mean.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A file changed less than this long before a load began is not trusted by its stamp: it may have been
/// written again within the same file-system timestamp tick (as git's "racily clean" entries), so
/// [`ReadLedger::verify`] re-reads it.
pub const RACY_WINDOW: Duration = Duration::from_secs(2);

/// Called with each file's configured path after a load read it (tests time file swaps into a load with it).
pub type ReadHook = Arc<dyn Fn(&Path) + Send + Sync>;

/// One file's (or folder's) metadata, as far as a change shows in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileStamp {
    pub len: u64,
    /// Modification time, seconds and nanoseconds since the Unix epoch.
    pub modified: (i64, i64),
    /// Status-change time (any write, rename or chmod moves it; it cannot be set back by a program).
    pub changed: (i64, i64),
    pub inode: u64,
    pub device: u64,
}

impl FileStamp {
    /// The stamp of `path` (following symlinks); `None` when it cannot be taken.
    #[cfg(unix)]
    pub fn of(path: &Path) -> Option<Self> {
        use std::os::unix::fs::MetadataExt;
        let metadata = std::fs::metadata(path).ok()?;
        Some(Self {
            len: metadata.len(),
            modified: (metadata.mtime(), metadata.mtime_nsec()),
            changed: (metadata.ctime(), metadata.ctime_nsec()),
            inode: metadata.ino(),
            device: metadata.dev(),
        })
    }

    /// Without Unix metadata there is no change time to trust.
    #[cfg(not(unix))]
    pub fn of(_path: &Path) -> Option<Self> {
        None
    }

    /// Whether the file changed at or after `since` (Unix seconds), by its modification or change time.
    pub fn changed_since(&self, since: i64) -> bool {
        self.changed.0 >= since || self.modified.0 >= since
    }
}

/// Unix seconds of `time` (`None` before 1970 or beyond `i64`).
pub fn unix_seconds(time: SystemTime) -> Option<i64> {
    i64::try_from(time.duration_since(UNIX_EPOCH).ok()?.as_secs()).ok()
}

/// Why a load is not one consistent set of files.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Inconsistency {
    #[error("{0} was read twice with different contents")]
    ReadsDiffer(PathBuf),
    #[error("{0} now resolves to another file")]
    Moved(PathBuf),
    #[error("{0} changed while the config was loaded")]
    Changed(PathBuf),
    #[error("the files of folder {0} changed while the config was loaded")]
    FolderChanged(PathBuf),
}

/// What a load noted of one path.
#[derive(Debug, Clone)]
struct Entry {
    /// As the config names it (messages, and what is resolved again).
    configured: PathBuf,
    /// Where its symlinks led at its first use; every read in this load opens this.
    resolved: PathBuf,
    /// Before the first read.
    stamp: Option<FileStamp>,
    what: Noted,
}

#[derive(Debug, Clone)]
enum Noted {
    /// A file: the length and XXH3-128 digest of the first read, and whether a later read differed.
    File {
        digest: Option<(u64, u128)>,
        torn: bool,
    },
    /// A folder of route files: the files found in it.
    Folder { listing: Vec<PathBuf> },
}

/// Every file and folder one load read (see the module docs). Shared by the load's workers.
pub struct ReadLedger {
    /// When the load began (for [`RACY_WINDOW`]).
    started: SystemTime,
    entries: Mutex<Vec<Entry>>,
    hook: Option<ReadHook>,
}

impl std::fmt::Debug for ReadLedger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadLedger")
            .field("started", &self.started)
            .field("entries", &self.lock().len())
            .finish()
    }
}

impl ReadLedger {
    /// A ledger for a load beginning now.
    pub fn new() -> Arc<Self> {
        Self::with_hook(None)
    }

    /// A ledger whose `hook` is called after each file read.
    pub fn with_hook(hook: Option<ReadHook>) -> Arc<Self> {
        Arc::new(Self {
            started: SystemTime::now(),
            entries: Mutex::new(Vec::new()),
            hook,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Entry>> {
        // Every critical section is one lookup, push or field update: a recovered guard holds no half-made
        // entry. (Even a lost note only makes `verify` stricter or re-reads a file.)
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The path every read of `configured` in this load opens: resolved through its symlinks at its first
    /// use (and stamped then). A path that cannot be resolved is used as it is (reading it will say why).
    pub fn resolve(&self, configured: &Path) -> PathBuf {
        let mut entries = self.lock();
        if let Some(entry) = entries.iter().find(|entry| entry.configured == configured) {
            return entry.resolved.clone();
        }
        let resolved =
            std::fs::canonicalize(configured).unwrap_or_else(|_| configured.to_path_buf());
        entries.push(Entry {
            configured: configured.to_path_buf(),
            stamp: FileStamp::of(&resolved),
            resolved: resolved.clone(),
            what: Noted::File {
                digest: None,
                torn: false,
            },
        });
        resolved
    }

    /// The stamp `configured` had when this load first resolved it, if it could be taken.
    pub fn stamp_of(&self, configured: &Path) -> Option<FileStamp> {
        self.lock()
            .iter()
            .find(|entry| entry.configured == configured)
            .and_then(|entry| entry.stamp)
    }

    /// Whether `stamp` was changed too close to this load's start to vouch for the file's content (see
    /// [`RACY_WINDOW`]).
    pub fn is_racy(&self, stamp: &FileStamp) -> bool {
        let since = self
            .started
            .checked_sub(RACY_WINDOW)
            .and_then(unix_seconds)
            .unwrap_or(i64::MAX);
        stamp.changed_since(since)
    }

    /// Notes a folder of route files and the files found in it (already resolved through `resolve`).
    pub fn note_folder(&self, configured: &Path, listing: Vec<PathBuf>) {
        let resolved = self.resolve(configured);
        let mut entries = self.lock();
        if let Some(entry) = entries
            .iter_mut()
            .find(|entry| entry.configured == configured)
        {
            entry.resolved = resolved;
            entry.what = Noted::Folder { listing };
        }
    }

    /// Notes that `configured` was read and what its text was (`len` bytes, XXH3-128 `digest`); a read that
    /// differs from an earlier one of the same load makes it torn. Then calls the hook.
    pub fn note_read(&self, configured: &Path, len: u64, digest: u128) {
        self.note(configured, len, digest);
        if let Some(hook) = &self.hook {
            hook(configured);
        }
    }

    /// Notes what `configured` holds without reading it: a digest an earlier load read, which the file's
    /// unchanged stamp vouches for (the hook is not called: nothing was read).
    pub fn note_vouched(&self, configured: &Path, len: u64, digest: u128) {
        self.note(configured, len, digest);
    }

    fn note(&self, configured: &Path, len: u64, digest: u128) {
        {
            let mut entries = self.lock();
            match entries
                .iter_mut()
                .find(|entry| entry.configured == configured)
            {
                Some(Entry {
                    what: Noted::File { digest: seen, torn },
                    ..
                }) => match seen {
                    Some(first) if *first != (len, digest) => *torn = true,
                    Some(_) => {}
                    None => *seen = Some((len, digest)),
                },
                // Read without being resolved first (not through this ledger's paths): it cannot be verified,
                // so the load cannot count as consistent.
                _ => entries.push(Entry {
                    configured: configured.to_path_buf(),
                    resolved: configured.to_path_buf(),
                    stamp: None,
                    what: Noted::File {
                        digest: Some((len, digest)),
                        torn: true,
                    },
                }),
            }
        }
    }

    /// Whether everything this load read is, now, exactly what it read: every path resolves where it did,
    /// every file has the stamp it had before its first read (and, when it had changed within
    /// [`RACY_WINDOW`] of the load's start, the digest it was read with), every folder lists the same files,
    /// and no file was read twice with different contents.
    pub fn verify(&self) -> Result<(), Inconsistency> {
        let entries = self.lock().clone();
        let racy_since = self
            .started
            .checked_sub(RACY_WINDOW)
            .and_then(unix_seconds)
            .unwrap_or(i64::MAX);
        for entry in &entries {
            let path = || entry.configured.clone();
            if let Noted::File { torn: true, .. } = entry.what {
                return Err(Inconsistency::ReadsDiffer(path()));
            }
            let now_resolved = std::fs::canonicalize(&entry.configured)
                .unwrap_or_else(|_| entry.configured.clone());
            if now_resolved != entry.resolved {
                return Err(Inconsistency::Moved(path()));
            }
            let stamp = FileStamp::of(&entry.resolved);
            if stamp != entry.stamp {
                return Err(Inconsistency::Changed(path()));
            }
            match &entry.what {
                Noted::Folder { listing } => {
                    let now = super::source::route_file_paths(&entry.configured).ok();
                    if now.as_ref() != Some(listing) {
                        return Err(Inconsistency::FolderChanged(path()));
                    }
                }
                Noted::File {
                    digest: Some((len, digest)),
                    ..
                } if stamp.is_none_or(|stamp| stamp.changed_since(racy_since)) => {
                    let now = std::fs::read(&entry.resolved).ok();
                    let same = now.is_some_and(|bytes| {
                        bytes.len() as u64 == *len && xxhash_rust::xxh3::xxh3_128(&bytes) == *digest
                    });
                    if !same {
                        return Err(Inconsistency::Changed(path()));
                    }
                }
                Noted::File { .. } => {}
            }
        }
        Ok(())
    }
}

#[cfg(all(test, unix))]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

    use super::*;

    fn digest(text: &str) -> (u64, u128) {
        (
            text.len() as u64,
            xxhash_rust::xxh3::xxh3_128(text.as_bytes()),
        )
    }

    fn read(ledger: &ReadLedger, path: &Path) -> String {
        let resolved = ledger.resolve(path);
        let text = std::fs::read_to_string(resolved).unwrap();
        let (len, digest) = digest(&text);
        ledger.note_read(path, len, digest);
        text
    }

    /// A ConfigMap-like volume: `name` → `..data/name`, `..data` → `..v1`.
    fn volume(dir: &Path, version: &str, files: &[(&str, &str)]) {
        let folder = dir.join(format!("..{version}"));
        std::fs::create_dir(&folder).unwrap();
        for (name, text) in files {
            std::fs::write(folder.join(name), text).unwrap();
            let link = dir.join(name);
            if !link.exists() {
                std::os::unix::fs::symlink(Path::new("..data").join(name), link).unwrap();
            }
        }
        let staging = dir.join("..data_tmp");
        std::os::unix::fs::symlink(format!("..{version}"), &staging).unwrap();
        std::fs::rename(&staging, dir.join("..data")).unwrap();
    }

    #[test]
    fn reads_after_a_swap_still_open_the_version_first_resolved_and_verify_sees_the_swap() {
        let dir = tempfile::tempdir().unwrap();
        volume(dir.path(), "v1", &[("a.yaml", "a: 1"), ("b.yaml", "b: 1")]);
        let ledger = ReadLedger::new();
        let (a, b) = (dir.path().join("a.yaml"), dir.path().join("b.yaml"));
        ledger.resolve(&a);
        ledger.resolve(&b);
        assert_eq!(read(&ledger, &a), "a: 1");
        volume(dir.path(), "v2", &[("a.yaml", "a: 2"), ("b.yaml", "b: 2")]);
        // Resolved before the swap: this load keeps reading version 1, never a mix.
        assert_eq!(read(&ledger, &b), "b: 1");
        assert_eq!(
            ledger.verify(),
            Err(Inconsistency::Moved(a.clone())),
            "the set on disk is no longer the one read"
        );
        // A new load reads version 2 whole, and verifies.
        let ledger = ReadLedger::new();
        assert_eq!(
            (read(&ledger, &a), read(&ledger, &b)),
            ("a: 2".into(), "b: 2".into())
        );
        assert_eq!(ledger.verify(), Ok(()));
    }

    #[test]
    fn a_file_rewritten_in_place_or_read_twice_differently_is_caught() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("tokens.yaml");
        std::fs::write(&file, "tokens: []").unwrap();
        let ledger = ReadLedger::new();
        read(&ledger, &file);
        assert_eq!(ledger.verify(), Ok(()));
        // Same length, same second: only the digest (the file is racy: just written) can tell.
        std::fs::write(&file, "tokens: {}").unwrap();
        assert_eq!(ledger.verify(), Err(Inconsistency::Changed(file.clone())));
        read(&ledger, &file);
        assert_eq!(
            ledger.verify(),
            Err(Inconsistency::ReadsDiffer(file.clone()))
        );
    }

    #[test]
    fn a_folder_that_gains_a_file_is_caught() {
        let dir = tempfile::tempdir().unwrap();
        let routes = dir.path().join("routes");
        std::fs::create_dir(&routes).unwrap();
        std::fs::write(routes.join("a.yaml"), "routes: []").unwrap();
        let ledger = ReadLedger::new();
        let listing = super::super::source::route_file_paths(&routes).unwrap();
        ledger.note_folder(&routes, listing);
        assert_eq!(ledger.verify(), Ok(()));
        std::fs::write(routes.join("b.yaml"), "routes: []").unwrap();
        assert!(matches!(
            ledger.verify(),
            Err(Inconsistency::FolderChanged(_) | Inconsistency::Changed(_))
        ));
    }

    #[test]
    fn the_hook_sees_every_read() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a.yaml");
        std::fs::write(&file, "a: 1").unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = Arc::clone(&seen);
        let ledger = ReadLedger::with_hook(Some(Arc::new(move |path: &Path| {
            record.lock().unwrap().push(path.to_path_buf());
        })));
        read(&ledger, &file);
        read(&ledger, &file);
        assert_eq!(*seen.lock().unwrap(), vec![file.clone(), file]);
    }
}
