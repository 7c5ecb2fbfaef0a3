//! [`Htpasswd`]: Basic credentials checked against an Apache htpasswd file.
//!
//! ```
//! use tower_mlflow_auth::{AuthLayer, authenticators::Htpasswd};
//!
//! // `htpasswd -nbm alice mlflow-pass`, inline here; `Htpasswd::from_file` reads a file.
//! let users = Htpasswd::parse("alice:$apr1$abcdefgh$aDPo2xmbXHAQSzMtOEWhn/\n")?;
//! let layer = AuthLayer::new(users);
//! # let _ = layer;
//! # Ok::<_, tower_mlflow_auth::authenticators::HtpasswdError>(())
//! ```

use std::{
    collections::{HashMap, hash_map::Entry},
    error::Error,
    fmt,
    fs::File,
    io::{self, Read as _},
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex, PoisonError, RwLock,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant, SystemTime},
};

use secrecy::{ExposeSecret as _, SecretString};

use crate::{
    authenticator::{Authenticator, Challenge},
    authorization::Authorization,
    credentials::{Credentials, Scheme},
};

mod hash;

pub use self::hash::{HtpasswdEntry, HtpasswdHashFormat, HtpasswdLineError, parse_htpasswd_line};
use self::hash::{StoredHash, WorkClass};

/// Largest htpasswd file read, in bytes (64 MiB): a guard against pointing at the wrong file.
pub const MAX_HTPASSWD_FILE_LEN: u64 = 64 * 1024 * 1024;

/// How often a file-backed [`Htpasswd`] looks for changes unless configured.
pub const DEFAULT_HTPASSWD_RELOAD_INTERVAL: Duration = Duration::from_secs(5);

/// Checks Basic credentials against an Apache htpasswd file.
///
/// # Formats
///
/// bcrypt (`$2y$`, `$2a$`, `$2b$`), APR1-MD5 (`$apr1$`), MD5-crypt (`$1$`), SHA-256-crypt
/// (`$5$`) and SHA-512-crypt (`$6$`) with or without `rounds=`, and `{SHA}` — everything
/// Apache's `htpasswd` and `openssl passwd` write except the weak ones. Plain-text passwords,
/// DES-crypt, `$2x$` and any other format are refused when the file is loaded, with an error
/// naming the line and never the hash; see [`parse_htpasswd_line`] for the line syntax.
/// A user listed twice is an error too ([`HtpasswdError::DuplicateUser`]), where Apache
/// silently takes the first line: a stale duplicate could keep an old password valid.
///
/// # Verification
///
/// - Only [`Credentials::Basic`] is checked; other credentials give `Ok(None)`, so that
///   [`first_of`](crate::first_of) can pass them on. The principal is
///   `Authorization::new(username, Scheme::Basic)`, and the challenge is `Basic`.
/// - Digests are compared in constant time.
/// - Every format but `{SHA}` is computed on tokio's blocking pool
///   ([`spawn_blocking`](tokio::task::spawn_blocking)), so a bcrypt check never stalls the
///   async runtime. Outside a tokio runtime it runs on the calling thread.
/// - An unknown user costs as much as a known one: the password is checked against a decoy
///   hash with the parameters most common in the file, so timing does not tell which users
///   exist.
/// - bcrypt reads only the first 72 bytes of a password, as in Apache.
///
/// This type checks the hash on every request, like Apache and nginx; wrap it in a
/// verified-credential cache to pay for bcrypt once per user and password.
///
/// # Hot reload
///
/// A file-backed table checks the file's size, modification time (and inode, on Unix) at most
/// once per [reload interval](Self::with_reload_interval), triggered by a request and done
/// on the blocking pool, so no request waits for it. A changed file is parsed in full and
/// swapped in atomically: requests in flight finish with the table they started with, and no
/// request fails during the swap. A file that no longer loads (or has disappeared) keeps the
/// previous table and logs an error with `tracing`, naming the line but never a hash.
/// Replace the file atomically (write a temporary file, then rename it) so that a half-written
/// file is never read.
///
/// `Htpasswd` is cheap to clone; clones share the table.
///
/// # Example
///
/// ```
/// use secrecy::SecretString;
/// use tower_mlflow_auth::{Authenticator, Credentials, authenticators::Htpasswd};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let users = Htpasswd::parse(
///     "# made with `htpasswd -nbm alice mlflow-pass`\n\
///      alice:$apr1$abcdefgh$aDPo2xmbXHAQSzMtOEWhn/\n",
/// )?;
/// let basic = |password: &str| Credentials::Basic {
///     username: "alice".into(),
///     password: SecretString::from(password),
/// };
///
/// let principal = users.authenticate(basic("mlflow-pass")).await?.unwrap();
/// assert_eq!(principal.subject(), "alice");
/// assert!(users.authenticate(basic("wrong")).await?.is_none());
/// # Ok(())
/// # }
/// ```
///
/// From a file, re-read within a second of a change:
///
/// ```no_run
/// use std::time::Duration;
/// use tower_mlflow_auth::{AuthLayer, authenticators::Htpasswd};
///
/// let users = Htpasswd::from_file("/etc/mlflow/htpasswd")?.with_reload_interval(Duration::from_secs(1));
/// let layer = AuthLayer::new(users);
/// # let _ = layer;
/// # Ok::<_, tower_mlflow_auth::authenticators::HtpasswdError>(())
/// ```
#[derive(Clone)]
pub struct Htpasswd {
    shared: Arc<Shared>,
}

struct Shared {
    /// Readers clone the `Arc` and let go of the lock at once; a reload swaps it.
    table: RwLock<Arc<Table>>,
    file: Option<WatchedFile>,
}

struct WatchedFile {
    path: PathBuf,
    /// What the file looked like when last examined; held while a reload runs, so that
    /// reloads never overlap.
    last_seen: Mutex<FileState>,
    /// Times are nanoseconds since `epoch`.
    epoch: Instant,
    /// `u64::MAX` turns polling off.
    interval_nanos: AtomicU64,
    next_check_nanos: AtomicU64,
    check_pending: AtomicBool,
}

/// What identifies a version of the file without reading it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FileState {
    Present {
        len: u64,
        modified: Option<SystemTime>,
        inode: u64,
    },
    Unreadable(io::ErrorKind),
}

impl FileState {
    fn of(metadata: io::Result<std::fs::Metadata>) -> Self {
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

/// The users of one version of the file.
struct Table {
    users: HashMap<Box<str>, Arc<StoredHash>>,
    /// Checked for unknown users; `None` for an empty table.
    decoy: Option<Arc<StoredHash>>,
}

impl Table {
    fn parse(text: &str, path: Option<&Path>) -> Result<Self, HtpasswdError> {
        let mut users: HashMap<Box<str>, (usize, Arc<StoredHash>)> = HashMap::new();
        for (index, line) in text.lines().enumerate() {
            let line_number = index + 1;
            let entry = parse_htpasswd_line(line).map_err(|error| HtpasswdError::InvalidLine {
                path: path.map(Path::to_path_buf),
                line: line_number,
                error,
            })?;
            let Some(HtpasswdEntry { username, hash }) = entry else {
                continue;
            };
            match users.entry(username) {
                Entry::Occupied(first) => {
                    return Err(HtpasswdError::DuplicateUser {
                        path: path.map(Path::to_path_buf),
                        line: line_number,
                        first_line: first.get().0,
                    });
                }
                Entry::Vacant(slot) => {
                    slot.insert((line_number, hash));
                }
            }
        }
        // The decoy imitates the most common parameters (ties: the costlier), so that in a
        // uniform file unknown users take exactly as long as known ones.
        let mut classes: HashMap<WorkClass, usize> = HashMap::new();
        for (_, hash) in users.values() {
            *classes.entry(hash.work_class()).or_default() += 1;
        }
        let decoy = classes
            .into_iter()
            .max_by_key(|&(class, count)| (count, class))
            .map(|(class, _)| Arc::new(StoredHash::decoy(class)));
        Ok(Self {
            users: users
                .into_iter()
                .map(|(user, (_, hash))| (user, hash))
                .collect(),
            decoy,
        })
    }
}

impl Htpasswd {
    /// A fixed table parsed from htpasswd text; it is never reloaded.
    ///
    /// # Errors
    ///
    /// [`HtpasswdError::InvalidLine`] for the first line that does not parse and
    /// [`HtpasswdError::DuplicateUser`] for a user listed twice.
    pub fn parse(text: &str) -> Result<Self, HtpasswdError> {
        Ok(Self {
            shared: Arc::new(Shared {
                table: RwLock::new(Arc::new(Table::parse(text, None)?)),
                file: None,
            }),
        })
    }

    /// Reads an htpasswd file now, and re-reads it when it changes (checked at most every
    /// [`DEFAULT_HTPASSWD_RELOAD_INTERVAL`] unless [configured](Self::with_reload_interval)).
    ///
    /// The file is read on the calling thread; call this at startup.
    ///
    /// # Errors
    ///
    /// [`HtpasswdError::Io`] when the file cannot be read, [`HtpasswdError::TooLarge`] over
    /// [`MAX_HTPASSWD_FILE_LEN`], and the errors of [`Htpasswd::parse`].
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, HtpasswdError> {
        let path = path.as_ref().to_path_buf();
        let (state, table) = load_file(&path)?;
        let interval = nanos(DEFAULT_HTPASSWD_RELOAD_INTERVAL);
        Ok(Self {
            shared: Arc::new(Shared {
                table: RwLock::new(Arc::new(table)),
                file: Some(WatchedFile {
                    path,
                    last_seen: Mutex::new(state),
                    epoch: Instant::now(),
                    interval_nanos: AtomicU64::new(interval),
                    next_check_nanos: AtomicU64::new(interval),
                    check_pending: AtomicBool::new(false),
                }),
            }),
        })
    }

    /// Sets how often the file is checked for changes (default
    /// [`DEFAULT_HTPASSWD_RELOAD_INTERVAL`]). `Duration::ZERO` checks on every request
    /// (one `stat` on the blocking pool per request, while no check is pending).
    ///
    /// Applies to all clones; no effect on a table made by [`Htpasswd::parse`].
    #[must_use]
    pub fn with_reload_interval(self, interval: Duration) -> Self {
        if let Some(file) = &self.shared.file {
            let interval = nanos(interval).min(u64::MAX - 1);
            file.interval_nanos.store(interval, Ordering::Relaxed);
            file.next_check_nanos
                .store(file.now().saturating_add(interval), Ordering::Relaxed);
        }
        self
    }

    /// Never re-reads the file on its own; [`reload`](Self::reload) still does.
    #[must_use]
    pub fn without_reload(self) -> Self {
        if let Some(file) = &self.shared.file {
            file.interval_nanos.store(u64::MAX, Ordering::Relaxed);
        }
        self
    }

    /// Re-reads the file now, whether or not it changed, and swaps the table in if it loads.
    ///
    /// Useful from a `SIGHUP` handler, or to learn at once whether an edit is valid. The
    /// file is read on the calling thread. A table made by [`Htpasswd::parse`] is left as is.
    ///
    /// # Errors
    ///
    /// The errors of [`Htpasswd::from_file`]; the previous table stays in use.
    pub fn reload(&self) -> Result<(), HtpasswdError> {
        let Some(file) = &self.shared.file else {
            return Ok(());
        };
        let mut last_seen = file
            .last_seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // Remember this version even if it is broken, so that polling does not log it again.
        *last_seen = FileState::of(std::fs::metadata(&file.path));
        let (state, table) = load_file(&file.path)?;
        *last_seen = state;
        self.swap(table);
        Ok(())
    }

    /// The path of the file, for a file-backed table.
    #[must_use]
    pub fn path(&self) -> Option<&Path> {
        self.shared.file.as_ref().map(|file| file.path.as_path())
    }

    /// The number of users in the current table.
    #[must_use]
    pub fn len(&self) -> usize {
        self.table().users.len()
    }

    /// Whether the current table has no users.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.table().users.is_empty()
    }

    /// Whether `username` is in the current table.
    #[must_use]
    pub fn contains_user(&self, username: &str) -> bool {
        self.table().users.contains_key(username)
    }

    fn table(&self) -> Arc<Table> {
        Arc::clone(
            &self
                .shared
                .table
                .read()
                .unwrap_or_else(PoisonError::into_inner),
        )
    }

    fn swap(&self, table: Table) {
        let table = Arc::new(table);
        *self
            .shared
            .table
            .write()
            .unwrap_or_else(PoisonError::into_inner) = table;
    }

    /// Schedules a look at the file when the interval has passed and none is pending.
    fn poll_file(&self) {
        let Some(file) = &self.shared.file else {
            return;
        };
        let interval = file.interval_nanos.load(Ordering::Relaxed);
        let now = file.now();
        let due = file.next_check_nanos.load(Ordering::Relaxed);
        if interval == u64::MAX || now < due {
            return;
        }
        // One request per interval wins; the others go on with the current table.
        if file
            .next_check_nanos
            .compare_exchange(
                due,
                now.saturating_add(interval),
                Ordering::Relaxed,
                Ordering::Relaxed,
            )
            .is_err()
            || file.check_pending.swap(true, Ordering::Acquire)
        {
            return;
        }
        let this = self.clone();
        let check = move || {
            this.check_file();
            if let Some(file) = &this.shared.file {
                file.check_pending.store(false, Ordering::Release);
            }
        };
        match tokio::runtime::Handle::try_current() {
            // Not awaited: the request carries on with the current table.
            Ok(runtime) => drop(runtime.spawn_blocking(check)),
            Err(_) => check(),
        }
    }

    /// Reloads the file if it looks different from last time; logs the outcome.
    fn check_file(&self) {
        let Some(file) = &self.shared.file else {
            return;
        };
        let mut last_seen = file
            .last_seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let state = FileState::of(std::fs::metadata(&file.path));
        if state == *last_seen {
            return;
        }
        *last_seen = state;
        let path = file.path.display();
        match load_file(&file.path) {
            Ok((state, table)) => {
                *last_seen = state;
                let users = table.users.len();
                self.swap(table);
                tracing::info!(path = %path, users, "htpasswd file reloaded");
            }
            Err(error) => {
                tracing::error!(path = %path, %error, "htpasswd file not reloaded; keeping the previous users");
            }
        }
    }
}

impl WatchedFile {
    fn now(&self) -> u64 {
        nanos(self.epoch.elapsed())
    }
}

fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

/// Reads and parses the file; the state comes from the open handle, so it describes exactly
/// the version read even if the path is replaced meanwhile.
fn load_file(path: &Path) -> Result<(FileState, Table), HtpasswdError> {
    let io_error = |source| HtpasswdError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = File::open(path).map_err(io_error)?;
    let state = FileState::of(file.metadata());
    let mut bytes = Vec::new();
    file.take(MAX_HTPASSWD_FILE_LEN + 1)
        .read_to_end(&mut bytes)
        .map_err(io_error)?;
    if bytes.len() as u64 > MAX_HTPASSWD_FILE_LEN {
        return Err(HtpasswdError::TooLarge {
            path: path.to_path_buf(),
        });
    }
    let text = String::from_utf8(bytes).map_err(|e| {
        let valid = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        HtpasswdError::InvalidLine {
            path: Some(path.to_path_buf()),
            line: valid.iter().filter(|&&b| b == b'\n').count() + 1,
            error: HtpasswdLineError::NotUtf8,
        }
    })?;
    Ok((state, Table::parse(&text, Some(path))?))
}

/// Checks the password, on the blocking pool when the hash is slow.
async fn verify(hash: Arc<StoredHash>, password: SecretString) -> Result<bool, HtpasswdError> {
    let check = move || hash.verify(password.expose_secret().as_bytes());
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => runtime
            .spawn_blocking(check)
            .await
            .map_err(|_| HtpasswdError::VerificationInterrupted),
        Err(_) => Ok(check()),
    }
}

impl Authenticator for Htpasswd {
    type Error = HtpasswdError;

    async fn authenticate(
        &self,
        credentials: Credentials,
    ) -> Result<Option<Authorization>, HtpasswdError> {
        let Credentials::Basic { username, password } = credentials else {
            return Ok(None);
        };
        self.poll_file();
        let table = self.table();
        let (hash, known) = match table.users.get(username.as_str()) {
            Some(hash) => (Arc::clone(hash), true),
            None => match &table.decoy {
                Some(decoy) => (Arc::clone(decoy), false),
                None => return Ok(None),
            },
        };
        drop(table);
        let matched = if hash.is_slow() {
            verify(hash, password).await?
        } else {
            hash.verify(password.expose_secret().as_bytes())
        };
        Ok((matched && known).then(|| Authorization::new(username, Scheme::Basic)))
    }

    fn challenges(&self) -> &[Challenge] {
        &[Challenge::BASIC]
    }
}

impl fmt::Debug for Htpasswd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut debug = f.debug_struct("Htpasswd");
        debug.field("users", &self.len());
        if let Some(file) = &self.shared.file {
            let interval = file.interval_nanos.load(Ordering::Relaxed);
            debug.field("path", &file.path).field(
                "reload_interval",
                &(interval != u64::MAX).then(|| Duration::from_nanos(interval)),
            );
        }
        debug.finish()
    }
}

/// An htpasswd file that cannot be loaded, or a check that could not run.
///
/// No variant ever shows a hash or a password.
#[derive(Debug)]
#[non_exhaustive]
pub enum HtpasswdError {
    /// The file could not be opened or read.
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// The file is larger than [`MAX_HTPASSWD_FILE_LEN`].
    TooLarge {
        /// The file.
        path: PathBuf,
    },
    /// A line was refused.
    InvalidLine {
        /// The file, unless the text was given directly.
        path: Option<PathBuf>,
        /// The line number, from 1.
        line: usize,
        /// What is wrong with it.
        error: HtpasswdLineError,
    },
    /// A user is listed twice.
    DuplicateUser {
        /// The file, unless the text was given directly.
        path: Option<PathBuf>,
        /// The line number of the second entry, from 1.
        line: usize,
        /// The line number of the first entry.
        first_line: usize,
    },
    /// A password check on the blocking pool did not complete (the runtime is shutting
    /// down, or the check panicked). The request is answered with 503.
    VerificationInterrupted,
}

impl fmt::Display for HtpasswdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let at = |path: &Option<PathBuf>| match path {
            Some(path) => format!("{}: ", path.display()),
            None => String::new(),
        };
        match self {
            Self::Io { path, source } => {
                write!(f, "cannot read htpasswd file {}: {source}", path.display())
            }
            Self::TooLarge { path } => write!(
                f,
                "htpasswd file {} is larger than {MAX_HTPASSWD_FILE_LEN} bytes",
                path.display()
            ),
            Self::InvalidLine { path, line, error } => {
                write!(f, "{}line {line}: {error}", at(path))
            }
            Self::DuplicateUser {
                path,
                line,
                first_line,
            } => write!(
                f,
                "{}line {line}: user already defined on line {first_line}",
                at(path)
            ),
            Self::VerificationInterrupted => f.write_str("the password check did not complete"),
        }
    }
}

impl Error for HtpasswdError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            Self::Io { source, .. } => Some(source),
            Self::InvalidLine { error, .. } => Some(error),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::{
        io::Write as _,
        sync::atomic::AtomicUsize,
        time::{Duration, Instant},
    };

    use super::*;

    const ALICE_APR1: &str = "alice:$apr1$abcdefgh$aDPo2xmbXHAQSzMtOEWhn/";
    const BOB_SHA1: &str = "bob:{SHA}Vm5wFmcHTQtCu7kCWsKiMBNgg94=";
    const CAROL_BCRYPT: &str = "carol:$2y$05$O3cpwl/0eErvy3EaKaKpQelXeavfRGTTY0GryPu5TSpbSNg0yO.bi";
    const PASSWORD: &str = "mlflow-pass";

    fn basic(username: &str, password: &str) -> Credentials {
        Credentials::Basic {
            username: username.into(),
            password: SecretString::from(password),
        }
    }

    async fn accepts(users: &Htpasswd, username: &str, password: &str) -> bool {
        match users.authenticate(basic(username, password)).await.unwrap() {
            Some(principal) => {
                assert_eq!(principal.subject(), username);
                assert_eq!(principal.scheme(), Scheme::Basic);
                true
            }
            None => false,
        }
    }

    /// A temporary directory removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new() -> Self {
            static COUNTER: AtomicUsize = AtomicUsize::new(0);
            let dir = std::env::temp_dir().join(format!(
                "tower-mlflow-htpasswd-{}-{}",
                std::process::id(),
                COUNTER.fetch_add(1, Ordering::Relaxed)
            ));
            std::fs::create_dir_all(&dir).unwrap();
            Self(dir)
        }

        fn file(&self) -> PathBuf {
            self.0.join("htpasswd")
        }

        /// Replaces the file atomically, as the docs recommend.
        fn write(&self, text: &str) -> PathBuf {
            let temp = self.0.join(".htpasswd.tmp");
            let mut file = File::create(&temp).unwrap();
            file.write_all(text.as_bytes()).unwrap();
            file.sync_all().unwrap();
            std::fs::rename(&temp, self.file()).unwrap();
            self.file()
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[tokio::test]
    async fn accepts_each_format_and_rejects_wrong_passwords() {
        let users =
            Htpasswd::parse(&format!("{ALICE_APR1}\n{BOB_SHA1}\n{CAROL_BCRYPT}\n")).unwrap();
        for user in ["alice", "bob", "carol"] {
            assert!(accepts(&users, user, PASSWORD).await, "{user}");
            assert!(!accepts(&users, user, "mlflow-pas").await, "{user}");
        }
    }

    #[tokio::test]
    async fn unknown_user_is_rejected() {
        let users = Htpasswd::parse(ALICE_APR1).unwrap();
        assert!(!accepts(&users, "mallory", PASSWORD).await);
        // Another user's password does not help either.
        assert!(!accepts(&users, "alicE", PASSWORD).await);
    }

    #[tokio::test]
    async fn empty_table_rejects_everyone() {
        let users = Htpasswd::parse("# nobody yet\n").unwrap();
        assert!(users.is_empty());
        assert!(!accepts(&users, "alice", PASSWORD).await);
    }

    #[tokio::test]
    async fn other_schemes_are_passed_on() {
        let users = Htpasswd::parse(ALICE_APR1).unwrap();
        let bearer = Credentials::Bearer {
            token: SecretString::from("alice"),
        };
        assert!(users.authenticate(bearer).await.unwrap().is_none());
        assert_eq!(users.challenges(), &[Challenge::BASIC]);
    }

    #[test]
    fn verification_works_outside_a_tokio_runtime() {
        let users = Htpasswd::parse(CAROL_BCRYPT).unwrap();
        let outcome = std::thread::spawn(move || {
            // A minimal executor: the future never waits on anything but the (inline) check.
            let future = std::pin::pin!(users.authenticate(basic("carol", PASSWORD)));
            let waker = std::task::Waker::noop();
            match future.poll(&mut std::task::Context::from_waker(waker)) {
                std::task::Poll::Ready(result) => result.unwrap().is_some(),
                std::task::Poll::Pending => false,
            }
        })
        .join()
        .unwrap();
        assert!(outcome);
    }

    #[test]
    fn unknown_users_are_checked_against_a_decoy_of_the_common_format() {
        let users = Htpasswd::parse(&format!(
            "{ALICE_APR1}\n{CAROL_BCRYPT}\ndave:$2y$05$O3cpwl/0eErvy3EaKaKpQelXeavfRGTTY0GryPu5TSpbSNg0yO.bi\n"
        ))
        .unwrap();
        let decoy = users.table().decoy.clone().unwrap();
        assert_eq!(decoy.work_class(), WorkClass::Bcrypt(5));
    }

    #[test]
    fn bad_lines_are_reported_with_their_number() {
        let cases = [
            ("bob:hunter2", HtpasswdLineError::PlainText),
            ("bob:UkEFylJv.NouA", HtpasswdLineError::DesCrypt),
            (
                "bob:$2x$05$O3cpwl/0eErvy3EaKaKpQelXeavfRGTTY0GryPu5TSpbSNg0yO.bi",
                HtpasswdLineError::UnsupportedFormat,
            ),
            (
                "bob:$apr1$garbage",
                HtpasswdLineError::Malformed(HtpasswdHashFormat::Apr1),
            ),
            ("bob hunter2", HtpasswdLineError::MissingColon),
        ];
        for (bad, expected) in cases {
            let text = format!("# users\n{ALICE_APR1}\n\n{bad}\n{BOB_SHA1}\n");
            let error = Htpasswd::parse(&text).unwrap_err();
            assert!(
                matches!(error, HtpasswdError::InvalidLine { line: 4, error, path: None } if error == expected),
                "{bad}: {error:?}"
            );
            let message = error.to_string();
            assert!(message.starts_with("line 4: "), "{message}");
            assert!(
                !message.contains("hunter2")
                    && !message.contains("garbage")
                    && !message.contains("UkEF")
            );
        }
    }

    #[test]
    fn duplicate_users_are_refused() {
        let error =
            Htpasswd::parse(&format!("{ALICE_APR1}\n{BOB_SHA1}\n{ALICE_APR1}\n")).unwrap_err();
        assert!(
            matches!(
                error,
                HtpasswdError::DuplicateUser {
                    line: 3,
                    first_line: 1,
                    ..
                }
            ),
            "{error:?}"
        );
        assert_eq!(error.to_string(), "line 3: user already defined on line 1");
    }

    #[test]
    fn file_errors_name_the_file_and_line() {
        let dir = TempDir::new();
        let path = dir.write(&format!("{ALICE_APR1}\nbob:hunter2\n"));
        let error = Htpasswd::from_file(&path).unwrap_err();
        assert_eq!(
            error.to_string(),
            format!(
                "{}: line 2: {}",
                path.display(),
                HtpasswdLineError::PlainText
            )
        );
    }

    #[test]
    fn non_utf8_lines_are_reported_with_their_number() {
        let dir = TempDir::new();
        std::fs::write(dir.file(), b"alice:{SHA}x\n# \xff\n").unwrap();
        let error = Htpasswd::from_file(dir.file()).unwrap_err();
        assert!(
            matches!(
                error,
                HtpasswdError::InvalidLine {
                    line: 2,
                    error: HtpasswdLineError::NotUtf8,
                    ..
                }
            ),
            "{error:?}"
        );
    }

    #[test]
    fn missing_file_is_an_io_error() {
        let dir = TempDir::new();
        let error = Htpasswd::from_file(dir.0.join("absent")).unwrap_err();
        assert!(matches!(error, HtpasswdError::Io { .. }), "{error:?}");
    }

    #[test]
    fn debug_shows_no_hash() {
        let dir = TempDir::new();
        let users = Htpasswd::from_file(dir.write(&format!("{ALICE_APR1}\n{BOB_SHA1}\n"))).unwrap();
        let debug = format!("{users:?}");
        assert!(debug.contains("users: 2"), "{debug}");
        for secret in ["aDPo2xmb", "abcdefgh", "Vm5wFmc"] {
            assert!(!debug.contains(secret), "{debug}");
        }
    }

    #[tokio::test]
    async fn reload_swaps_the_table() {
        let dir = TempDir::new();
        let users = Htpasswd::from_file(dir.write(ALICE_APR1))
            .unwrap()
            .without_reload();
        assert!(!accepts(&users, "bob", PASSWORD).await);

        dir.write(&format!("{ALICE_APR1}\n{BOB_SHA1}\n"));
        users.reload().unwrap();
        assert!(accepts(&users, "bob", PASSWORD).await);
        assert_eq!(users.len(), 2);
    }

    #[tokio::test]
    async fn broken_file_keeps_the_previous_table() {
        let dir = TempDir::new();
        let users = Htpasswd::from_file(dir.write(ALICE_APR1))
            .unwrap()
            .without_reload();

        dir.write(&format!("{ALICE_APR1}\nbob:hunter2\n"));
        let error = users.reload().unwrap_err();
        assert!(
            matches!(error, HtpasswdError::InvalidLine { line: 2, .. }),
            "{error:?}"
        );
        assert!(accepts(&users, "alice", PASSWORD).await);

        std::fs::remove_file(dir.file()).unwrap();
        assert!(matches!(
            users.reload().unwrap_err(),
            HtpasswdError::Io { .. }
        ));
        assert!(accepts(&users, "alice", PASSWORD).await);
    }

    /// Polls until `check` holds; gives up (and fails) after a generous deadline.
    async fn eventually(mut check: impl AsyncFnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !check().await {
            assert!(Instant::now() < deadline, "condition never held");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test]
    async fn changed_file_is_picked_up_by_polling() {
        let dir = TempDir::new();
        let users = Htpasswd::from_file(dir.write(ALICE_APR1))
            .unwrap()
            .with_reload_interval(Duration::ZERO);

        dir.write(&format!("{ALICE_APR1}\n{BOB_SHA1}\n"));
        eventually(async || accepts(&users, "bob", PASSWORD).await).await;

        // A broken version is skipped: the last good table stays, for old and new users.
        let path = dir.write("alice:hunter2\n");
        let broken = FileState::of(std::fs::metadata(&path));
        let seen = |users: &Htpasswd| {
            let file = users.shared.file.as_ref().unwrap();
            *file.last_seen.lock().unwrap() == broken
        };
        eventually(async || {
            assert!(accepts(&users, "alice", PASSWORD).await);
            assert!(accepts(&users, "bob", PASSWORD).await);
            seen(&users)
        })
        .await;
        assert!(accepts(&users, "alice", PASSWORD).await);
        assert!(accepts(&users, "bob", PASSWORD).await);

        // A fixed file is picked up again.
        dir.write(BOB_SHA1);
        eventually(async || !accepts(&users, "alice", PASSWORD).await).await;
        assert!(accepts(&users, "bob", PASSWORD).await);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn requests_during_reloads_all_succeed() {
        let dir = TempDir::new();
        let first = format!("{ALICE_APR1}\n{BOB_SHA1}\n");
        let second =
            format!("{BOB_SHA1}\n{ALICE_APR1}\ndave:$apr1$abcdefgh$aDPo2xmbXHAQSzMtOEWhn/\n");
        let users = Htpasswd::from_file(dir.write(&first))
            .unwrap()
            .with_reload_interval(Duration::ZERO);

        let clients: Vec<_> = (0..4)
            .map(|_| {
                let users = users.clone();
                tokio::spawn(async move {
                    for _ in 0..100 {
                        assert!(accepts(&users, "alice", PASSWORD).await);
                        assert!(accepts(&users, "bob", PASSWORD).await);
                    }
                })
            })
            .collect();
        let reloader = {
            let users = users.clone();
            tokio::task::spawn_blocking(move || {
                for round in 0..100 {
                    dir.write(if round % 2 == 0 { &second } else { &first });
                    users.reload().unwrap();
                }
            })
        };
        for client in clients {
            client.await.unwrap();
        }
        reloader.await.unwrap();
    }

    #[test]
    fn reload_errors_are_logged_without_the_hash() {
        use std::sync::Mutex;

        #[derive(Clone, Default)]
        struct Captured(Arc<Mutex<Vec<u8>>>);
        impl io::Write for Captured {
            fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }

        let dir = TempDir::new();
        let users = Htpasswd::from_file(dir.write(ALICE_APR1)).unwrap();
        dir.write("alice:$apr1$abcdefgh$aDPo2xmbXHAQSzMtOEWhn\nbob:hunter2\n");

        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        tracing::subscriber::with_default(subscriber, || users.check_file());

        let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        assert!(
            log.contains("line 1") && log.contains("not reloaded"),
            "{log}"
        );
        assert!(
            !log.contains("aDPo2xmb") && !log.contains("abcdefgh"),
            "{log}"
        );
    }
}
