//! File stamps: what each config file looks like on disk without reading it (size, modification and change
//! times, inode, device), so the periodic re-check can skip reading and hashing files nothing has touched.
//!
//! A full read digests every byte of every policy file: ~50 ms of CPU at 100k tokens, ~0.5 s at 1M, every
//! `reload_interval_ms`. The timer's check compares stamps first and reads only when one differs. Two guards
//! keep it from missing a change:
//! - **Racy stamps are not trusted** (as git's "racily clean" index entries): a file whose change time falls
//!   within [`RACY_WINDOW`] of the read that hashed it may have been written again in the same timestamp tick
//!   (file-system clocks tick every few ms), so no stamps are kept and the next check reads again.
//! - **Every [`FULL_READ_EVERY`]th timer check reads anyway**, for file systems whose attributes are cached
//!   (NFS) and may lag behind their content.
//!
//! File events, `SIGHUP` and manual reloads always read every file.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// At most this many timer checks in a row are answered by the stamps alone.
pub const FULL_READ_EVERY: u32 = 10;

/// A file changed less than this long before the read began is not trusted by its stamp.
pub const RACY_WINDOW: Duration = Duration::from_secs(2);

/// One file's (or folder's) metadata, as far as a change shows in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    len: u64,
    /// Modification time, seconds and nanoseconds since the Unix epoch.
    modified: (i64, i64),
    /// Status-change time (any write, rename or chmod moves it; it cannot be set back by a program).
    changed: (i64, i64),
    inode: u64,
    device: u64,
}

/// The stamps of every file and folder a config consists of, in a fixed order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stamps {
    files: Vec<(PathBuf, Stamp)>,
}

// === impl Stamps ===

impl Stamps {
    /// The stamps of `paths`, taken after they were read by a read that began at `read_started`. `None` when
    /// one cannot be taken, or when one was changed too close to the read (within [`RACY_WINDOW`]) to vouch
    /// for the content that was hashed.
    pub fn after_read<'p>(
        paths: impl IntoIterator<Item = &'p Path>,
        read_started: SystemTime,
    ) -> Option<Self> {
        let trusted_before = unix_seconds(read_started.checked_sub(RACY_WINDOW)?)?;
        let mut files = Vec::new();
        for path in paths {
            let stamp = stamp(path)?;
            if stamp.changed.0 >= trusted_before || stamp.modified.0 >= trusted_before {
                return None;
            }
            files.push((path.to_path_buf(), stamp));
        }
        Some(Self { files })
    }

    /// Whether every file and folder still has the stamp it had (a missing one has not).
    pub fn still_current(&self) -> bool {
        self.files
            .iter()
            .all(|(path, recorded)| stamp(path).is_some_and(|now| now == *recorded))
    }
}

fn unix_seconds(time: SystemTime) -> Option<i64> {
    i64::try_from(time.duration_since(UNIX_EPOCH).ok()?.as_secs()).ok()
}

#[cfg(unix)]
fn stamp(path: &Path) -> Option<Stamp> {
    use std::os::unix::fs::MetadataExt;
    let metadata = std::fs::metadata(path).ok()?;
    Some(Stamp {
        len: metadata.len(),
        modified: (metadata.mtime(), metadata.mtime_nsec()),
        changed: (metadata.ctime(), metadata.ctime_nsec()),
        inode: metadata.ino(),
        device: metadata.dev(),
    })
}

/// Without Unix metadata there is no change time to trust: every check reads the files.
#[cfg(not(unix))]
fn stamp(_path: &Path) -> Option<Stamp> {
    None
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    /// As if the read began well after the files were written (they are older than the racy window).
    fn later() -> SystemTime {
        SystemTime::now() + RACY_WINDOW + Duration::from_secs(1)
    }

    #[test]
    fn untouched_files_keep_their_stamps_and_any_change_shows() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.json"), dir.path().join("b.json"));
        std::fs::write(&a, "{}").unwrap();
        std::fs::write(&b, "{}").unwrap();
        let paths = [a.as_path(), b.as_path(), dir.path()];
        let stamps = Stamps::after_read(paths, later()).unwrap();
        assert!(stamps.still_current());

        std::fs::write(&b, "{ }").unwrap();
        assert!(!stamps.still_current(), "rewritten");

        let stamps = Stamps::after_read(paths, later()).unwrap();
        let replacement = dir.path().join("new.json");
        std::fs::write(&replacement, "{ }").unwrap();
        std::fs::rename(&replacement, &b).unwrap();
        assert!(!stamps.still_current(), "replaced by a rename");

        let stamps = Stamps::after_read(paths, later()).unwrap();
        std::fs::remove_file(&a).unwrap();
        assert!(!stamps.still_current(), "removed");
    }

    #[test]
    fn a_new_file_in_a_folder_changes_the_folder() {
        let dir = tempfile::tempdir().unwrap();
        let stamps = Stamps::after_read([dir.path()], later()).unwrap();
        // Past the file system's timestamp tick (a few ms), which the racy window covers in real use.
        std::thread::sleep(Duration::from_millis(20));
        std::fs::write(dir.path().join("more.yaml"), "routes: []").unwrap();
        assert!(!stamps.still_current());
    }

    #[test]
    fn a_file_changed_just_before_the_read_or_missing_gives_no_stamps() {
        let dir = tempfile::tempdir().unwrap();
        let fresh = dir.path().join("fresh.json");
        std::fs::write(&fresh, "{}").unwrap();
        assert_eq!(
            Stamps::after_read([fresh.as_path()], SystemTime::now()),
            None
        );
        let missing = dir.path().join("missing.json");
        assert_eq!(Stamps::after_read([missing.as_path()], later()), None);
    }
}
