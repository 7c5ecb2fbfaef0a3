//! Hot reload: reading the file, telling whether it changed without reading it, putting a
//! new version in place without ever making a request wait, and telling the caches above
//! what the new version revoked.

use std::{
    fs::File,
    future::Future,
    io::{self, Read as _},
    path::{Path, PathBuf},
    pin::pin,
    sync::{
        Arc, Mutex, MutexGuard, PoisonError, Weak,
        atomic::{AtomicU64, Ordering},
    },
    task::{Context, Waker},
    time::{Duration, SystemTime},
};

use tokio::time::Instant;
use tower_mlflow_core::{
    blocking::{BlockingTaskFailed, run_blocking},
    sync::Reloading,
};

use super::{
    super::revocation::Listeners, Htpasswd, error::HtpasswdBuildError, line::HtpasswdLineError,
    table::Table,
};

/// The table in use; every replacement goes through [`Reloading::reload`], so replacements
/// never overlap and the last one always publishes the newest table that loaded.
pub(super) type Current = Reloading<Arc<Table>, BlockingTaskFailed>;

/// A file-backed table's file.
pub(super) struct WatchedFile {
    pub(super) path: PathBuf,
    /// `None`: only [`Htpasswd::refresh`] reads the file again.
    pub(super) refresh_interval: Option<Duration>,
    /// Held while the file is read, so that reads never overlap.
    seen: Mutex<Seen>,
    /// Check times are nanoseconds since `epoch`, on tokio's clock.
    epoch: Instant,
    next_check_nanos: AtomicU64,
    /// The caches to tell what a reload revoked.
    pub(super) listeners: Listeners,
    /// The table the listeners were last told about.
    notified: Mutex<Arc<Table>>,
}

/// The file as last examined, and the table of the last version that loaded (a broken
/// version changes `file` but not `table`).
struct Seen {
    file: FileState,
    table: Arc<Table>,
}

/// What identifies a version of the file without reading it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum FileState {
    Present {
        len: u64,
        modified: Option<SystemTime>,
        inode: u64,
    },
    Unreadable(io::ErrorKind),
}

impl FileState {
    pub(super) fn of(metadata: io::Result<std::fs::Metadata>) -> Self {
        match metadata {
            Ok(metadata) => Self::Present {
                len: metadata.len(),
                modified: metadata.modified().ok(),
                inode: inode(&metadata),
            },
            Err(e) => Self::Unreadable(e.kind()),
        }
    }
}

#[cfg(unix)]
fn inode(metadata: &std::fs::Metadata) -> u64 {
    std::os::unix::fs::MetadataExt::ino(metadata)
}

#[cfg(not(unix))]
fn inode(_: &std::fs::Metadata) -> u64 {
    0
}

impl WatchedFile {
    /// Reads the file now, on the calling thread.
    pub(super) fn open(
        path: PathBuf,
        refresh_interval: Option<Duration>,
    ) -> Result<(Self, Arc<Table>), HtpasswdBuildError> {
        let (file, table) = load_file(&path)?;
        let table = Arc::new(table);
        let first_check = refresh_interval.map_or(u64::MAX, nanos);
        let watched = Self {
            path,
            refresh_interval,
            seen: Mutex::new(Seen {
                file,
                table: Arc::clone(&table),
            }),
            epoch: Instant::now(),
            next_check_nanos: AtomicU64::new(first_check),
            listeners: Listeners::default(),
            notified: Mutex::new(Arc::clone(&table)),
        };
        Ok((watched, table))
    }

    /// Whether the caller should look at the file now: once the interval has passed, and
    /// then for one caller only until it passes again.
    pub(super) fn check_due(&self) -> bool {
        let Some(interval) = self.refresh_interval else {
            return false;
        };
        let now = nanos(self.epoch.elapsed());
        let due = self.next_check_nanos.load(Ordering::Relaxed);
        now >= due
            && self
                .next_check_nanos
                .compare_exchange(
                    due,
                    now.saturating_add(nanos(interval)),
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_ok()
    }

    /// Reloads the file if it looks different from last time and logs the outcome. Returns
    /// the newest table that loaded, which is the previous one when the file is unchanged
    /// or broken. Blocks.
    pub(super) fn check(&self) -> Arc<Table> {
        let mut seen = self.lock();
        let state = FileState::of(std::fs::metadata(&self.path));
        // An unreadable file is tried on every check: a permission given back changes
        // neither its size nor its modification time.
        let unreadable = seen.table.unreadable.is_some();
        if state == seen.file && !unreadable {
            return Arc::clone(&seen.table);
        }
        // Remembered even if this version is broken, so that it is not read (or logged) again.
        seen.file = state;
        let path = self.path.display();
        match load_file(&self.path) {
            Ok((state, table)) => {
                let users = table.users.len();
                *seen = Seen {
                    file: state,
                    table: Arc::new(table),
                };
                tracing::info!(path = %path, users, "htpasswd file reloaded");
            }
            // Logged once, when it becomes unreadable; the table stays the same until then.
            Err(HtpasswdBuildError::Io { .. }) if unreadable => {}
            Err(error @ HtpasswdBuildError::Io { .. }) => {
                tracing::error!(path = %path, %error, "htpasswd file cannot be read; refusing its users until it can");
                seen.table = Arc::new(Table::unreadable(error));
            }
            Err(error) => {
                tracing::error!(path = %path, %error, "htpasswd file not reloaded; keeping the previous users");
            }
        }
        Arc::clone(&seen.table)
    }

    /// Reads the file whether or not it changed. Blocks.
    pub(super) fn read_now(&self) -> Result<(), HtpasswdBuildError> {
        let mut seen = self.lock();
        seen.file = FileState::of(std::fs::metadata(&self.path));
        let (state, table) = match load_file(&self.path) {
            Ok(loaded) => loaded,
            Err(HtpasswdBuildError::Io { path, source }) => {
                // The table keeps a copy of the error (`io::Error` is not `Clone`).
                seen.table = Arc::new(Table::unreadable(HtpasswdBuildError::Io {
                    path: path.clone(),
                    source: io::Error::from(source.kind()),
                }));
                return Err(HtpasswdBuildError::Io { path, source });
            }
            Err(error) => return Err(error),
        };
        *seen = Seen {
            file: state,
            table: Arc::new(table),
        };
        Ok(())
    }

    /// Tells the listeners what the table now in use revoked since the last one they were
    /// told about. Called after every replacement, so after the new table is in use.
    pub(super) fn publish_revocations(&self, current: &Current) {
        let Some(published) = current.snapshot() else {
            return;
        };
        let mut notified = self.notified.lock().unwrap_or_else(PoisonError::into_inner);
        if Arc::ptr_eq(&notified, published.value()) {
            return;
        }
        let revoked = published.value().revoked_since(&notified);
        *notified = Arc::clone(published.value());
        // Under the lock, so that notices arrive in the order of the tables.
        if let Some(revoked) = revoked {
            self.listeners.notify(&revoked);
        }
    }

    /// How long until the next check is due (at least `floor`).
    fn until_next_check(&self, floor: Duration) -> Duration {
        let due = self.next_check_nanos.load(Ordering::Relaxed);
        let now = nanos(self.epoch.elapsed());
        Duration::from_nanos(due.saturating_sub(now)).max(floor)
    }

    /// The newest table that loaded. Blocks while the file is being read.
    pub(super) fn latest(&self) -> Arc<Table> {
        Arc::clone(&self.lock().table)
    }

    #[cfg(test)]
    pub(super) fn seen_state(&self) -> FileState {
        self.lock().file
    }

    fn lock(&self) -> MutexGuard<'_, Seen> {
        self.seen.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Replaces `current` with the table `read` returns, `read` running on the blocking pool,
/// then tells the listeners what that revoked.
pub(super) async fn reload(
    current: &Current,
    file: &Arc<WatchedFile>,
    read: fn(&WatchedFile) -> Arc<Table>,
) -> Result<(), BlockingTaskFailed> {
    let outcome = current
        .reload(|| {
            let file = Arc::clone(file);
            run_blocking(move || read(&file))
        })
        .await
        .map(drop);
    file.publish_revocations(current);
    outcome
}

/// The shortest pause between two background checks, for a zero refresh interval.
const MIN_WATCH_PAUSE: Duration = Duration::from_millis(100);

/// Checks the file once per interval while anyone holds the table; spawned when a cache
/// subscribes, because its hits never reach [`Htpasswd::authenticate`] to trigger a check.
pub(super) async fn watch(current: Weak<Current>, file: Weak<WatchedFile>) {
    loop {
        let Some(pause) = file.upgrade().map(|f| f.until_next_check(MIN_WATCH_PAUSE)) else {
            return;
        };
        tokio::time::sleep(pause).await;
        let (Some(current), Some(file)) = (current.upgrade(), file.upgrade()) else {
            return;
        };
        if file.check_due() && !current.is_reloading() {
            // A check that did not complete changes nothing; the next one tries again.
            let _ = reload(&current, &file, WatchedFile::check).await;
        }
    }
}

/// Starts a [`WatchedFile::check`] in the background; the caller carries on with the
/// current table.
pub(super) fn check_in_background(current: &Arc<Current>, file: &Arc<WatchedFile>) {
    let (current, file) = (Arc::clone(current), Arc::clone(file));
    let check = async move {
        // A check that did not complete changes nothing; the next interval tries again.
        let _ = reload(&current, &file, WatchedFile::check).await;
    };
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => drop(runtime.spawn(check)),
        Err(_) => run_inline(check),
    }
}

/// Outside a tokio runtime there is nothing to spawn on, so the check runs here: with
/// `run_blocking` inline it finishes within one poll, unless another thread's check is in
/// flight, which then publishes the newest table anyway.
fn run_inline(check: impl Future<Output = ()>) {
    let mut check = pin!(check);
    let _ = check.as_mut().poll(&mut Context::from_waker(Waker::noop()));
}

fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

/// Reads and parses the file; the state comes from the open handle, so it describes exactly
/// the version read even if the path is replaced meanwhile.
pub(super) fn load_file(path: &Path) -> Result<(FileState, Table), HtpasswdBuildError> {
    let io_error = |source| HtpasswdBuildError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = File::open(path).map_err(io_error)?;
    let state = FileState::of(file.metadata());
    let mut bytes = Vec::new();
    file.take(Htpasswd::MAX_FILE_LEN + 1)
        .read_to_end(&mut bytes)
        .map_err(io_error)?;
    if bytes.len() as u64 > Htpasswd::MAX_FILE_LEN {
        return Err(HtpasswdBuildError::TooLarge {
            path: path.to_path_buf(),
        });
    }
    let text = String::from_utf8(bytes).map_err(|e| {
        let valid = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        HtpasswdBuildError::InvalidLine {
            path: Some(path.to_path_buf()),
            line: valid.iter().filter(|&&b| b == b'\n').count() + 1,
            error: HtpasswdLineError::NotUtf8,
        }
    })?;
    Ok((state, Table::parse(&text, Some(path))?))
}
