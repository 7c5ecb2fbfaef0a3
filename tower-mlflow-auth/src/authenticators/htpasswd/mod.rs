//! [`Htpasswd`]: Basic credentials checked against an Apache htpasswd file.
//!
//! ```
//! use tower_mlflow_auth::{AuthLayer, authenticators::Htpasswd};
//!
//! // `htpasswd -nbm alice mlflow-pass`, inline here; `Htpasswd::from_file` reads a file.
//! let users = Htpasswd::parse("alice:$apr1$abcdefgh$aDPo2xmbXHAQSzMtOEWhn/\n")?;
//! let layer = AuthLayer::new(users);
//! # let _ = layer;
//! # Ok::<_, tower_mlflow_auth::authenticators::HtpasswdBuildError>(())
//! ```
//!
//! - `line`: the syntax of one line; `hash` and `md5_crypt`: the stored formats.
//! - `table`: the users of one version of the file.
//! - `watch`: reading the file, noticing changes, replacing the table.

use std::{
    fmt,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use secrecy::ExposeSecret as _;
use tower_mlflow_core::blocking::run_blocking;

use crate::{
    authenticator::{Authenticator, Challenge, RevocationListener},
    authorization::Authorization,
    credentials::{Credentials, CredentialsRef, Scheme},
};

mod builder;
mod error;
mod hash;
mod line;
mod md5_crypt;
mod table;
mod watch;

#[cfg_attr(
    not(feature = "fuzzing"),
    allow(unused_imports, reason = "for the fuzz targets")
)]
pub(crate) use self::line::{HtpasswdEntry, parse_htpasswd_line};
pub use self::{
    builder::HtpasswdBuilder,
    error::{HtpasswdBuildError, HtpasswdError},
    line::{HtpasswdHashFormat, HtpasswdLineError},
};
use self::{
    table::Table,
    watch::{Current, WatchedFile},
};

/// Checks Basic credentials against an Apache htpasswd file.
///
/// # Formats
///
/// bcrypt (`$2y$`, `$2a$`, `$2b$`), APR1-MD5 (`$apr1$`), MD5-crypt (`$1$`), SHA-256-crypt
/// (`$5$`) and SHA-512-crypt (`$6$`) with or without `rounds=`, and `{SHA}` — everything
/// Apache's `htpasswd` and `openssl passwd` write except the weak ones. Plain-text passwords,
/// DES-crypt, `$2x$` and any other format are refused when the file is loaded, with an error
/// naming the line and never the hash ([`HtpasswdBuildError::InvalidLine`]).
/// A user listed twice is an error too ([`HtpasswdBuildError::DuplicateUser`]), where Apache
/// silently takes the first line: a stale duplicate could keep an old password valid.
///
/// Lines are read the way Apache's `mod_authn_file` reads them: surrounding whitespace
/// (including a `\r` from CRLF files) is ignored, blank lines and lines starting with `#` are
/// skipped, and otherwise a line is `user:hash`, split at the first `:`; like Apache and
/// nginx, a further `:` ends the hash and the rest of the line is a comment.
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
/// once per [refresh interval](HtpasswdBuilder::refresh_interval), triggered by a request and
/// done on the blocking pool, so no request waits for it. A changed file is parsed in full
/// and swapped in atomically: requests in flight finish with the table they started with, and
/// no request fails during the swap. A file that no longer parses keeps the previous table
/// and logs an error with `tracing`, naming the line but never a hash. A file that cannot be
/// read at all (deleted, no permission) fails closed: every user is refused with
/// [`HtpasswdError::Unavailable`] (a 503) and an error is logged, until the file can be read
/// again. Replace the file atomically (write a temporary file, then rename it) so that a
/// half-written or missing file is never seen.
///
/// # Under a cache
///
/// Only Basic credentials are [accepted](Authenticator::accepts), so a chain never hashes a
/// bearer token here. A [`Cached`](crate::authenticators::Cached) above subscribes to
/// revocations: after each reload it is told which users were removed, added or given a new
/// hash ([`Revoked::Users`](crate::authenticator::Revoked::Users)), and that everything is
/// revoked when the file cannot be read. Since cache hits never reach this type, a table
/// with subscribers also checks the file every refresh interval on its own (a tokio task,
/// spawned when the first subscriber arrives inside a runtime, or else at the next check),
/// as long as any clone is alive.
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
/// let users = Htpasswd::builder("/etc/mlflow/htpasswd")
///     .refresh_interval(Duration::from_secs(1))
///     .build()?;
/// let layer = AuthLayer::new(users);
/// # let _ = layer;
/// # Ok::<_, tower_mlflow_auth::authenticators::HtpasswdBuildError>(())
/// ```
#[derive(Clone)]
pub struct Htpasswd {
    current: Arc<Current>,
    file: Option<Arc<WatchedFile>>,
}

impl Htpasswd {
    /// Largest htpasswd file read, in bytes (64 MiB): a guard against pointing at the wrong file.
    pub const MAX_FILE_LEN: u64 = 64 * 1024 * 1024;

    /// How often a file-backed table looks for changes unless
    /// [configured](HtpasswdBuilder::refresh_interval).
    pub const DEFAULT_REFRESH_INTERVAL: Duration = Duration::from_secs(5);

    /// A builder for a table read from the htpasswd file at `path`.
    pub fn builder(path: impl Into<PathBuf>) -> HtpasswdBuilder {
        HtpasswdBuilder::new(path.into())
    }

    /// A fixed table parsed from htpasswd text; it is never reloaded.
    ///
    /// # Errors
    ///
    /// [`HtpasswdBuildError::InvalidLine`] for the first line that does not parse and
    /// [`HtpasswdBuildError::DuplicateUser`] for a user listed twice.
    pub fn parse(text: &str) -> Result<Self, HtpasswdBuildError> {
        Ok(Self::from_table(Arc::new(Table::parse(text, None)?), None))
    }

    /// Reads an htpasswd file now, and re-reads it when it changes, checked at most every
    /// [`DEFAULT_REFRESH_INTERVAL`](Self::DEFAULT_REFRESH_INTERVAL): the same as
    /// `Htpasswd::builder(path).build()`.
    ///
    /// # Errors
    ///
    /// As [`HtpasswdBuilder::build`].
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, HtpasswdBuildError> {
        Self::builder(path.as_ref()).build()
    }

    fn from_table(table: Arc<Table>, file: Option<Arc<WatchedFile>>) -> Self {
        Self {
            current: Arc::new(Current::with_value(table)),
            file,
        }
    }

    /// Re-reads the file now, on the blocking pool, whether or not it changed, and swaps the
    /// table in if it loads.
    ///
    /// Useful from a `SIGHUP` handler, or to learn at once whether an edit is valid. A table
    /// made by [`Htpasswd::parse`] is left as is.
    ///
    /// # Errors
    ///
    /// [`HtpasswdError::Reload`] with the errors of [`HtpasswdBuilder::build`]; the previous
    /// table stays in use, except for a file that cannot be read, whose users are refused
    /// from now on. [`HtpasswdError::Interrupted`] when the runtime shuts down.
    pub async fn refresh(&self) -> Result<(), HtpasswdError> {
        let Some(file) = &self.file else {
            return Ok(());
        };
        let read = Arc::clone(file);
        let outcome = run_blocking(move || read.read_now())
            .await
            .map_err(|_| HtpasswdError::Interrupted)?;
        // Published through a reload that shares no check started before this read, so a
        // check running meanwhile cannot put an older table back. An unchanged table
        // (after a parse error) is published again, which changes nothing.
        self.current.invalidate();
        watch::reload(&self.current, file, WatchedFile::latest)
            .await
            .map_err(|_| HtpasswdError::Interrupted)?;
        outcome.map_err(HtpasswdError::Reload)
    }

    /// The path of the file, for a file-backed table.
    #[must_use]
    pub fn path(&self) -> Option<&Path> {
        self.file.as_ref().map(|file| file.path.as_path())
    }

    /// The number of users in the current table.
    #[must_use]
    pub fn len(&self) -> usize {
        self.with_table(|table| table.users.len()).unwrap_or(0)
    }

    /// Whether the current table has no users.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether `username` is in the current table.
    #[must_use]
    pub fn contains_user(&self, username: &str) -> bool {
        self.hash_format(username).is_some()
    }

    /// The format of `username`'s hash in the current table, for example to list the users
    /// that still have a fast (weaker) hash.
    #[must_use]
    pub fn hash_format(&self, username: &str) -> Option<HtpasswdHashFormat> {
        self.with_table(|table| table.users.get(username).map(|hash| hash.format()))
            .flatten()
    }

    /// Looks at the current table without taking a reference count.
    fn with_table<R>(&self, read: impl FnOnce(&Table) -> R) -> Option<R> {
        self.current
            .peek()
            .as_ref()
            .map(|snapshot| read(snapshot.value()))
    }

    /// Starts a look at the file when the interval has passed and no reload is running.
    fn poll_file(&self) {
        let Some(file) = &self.file else {
            return;
        };
        self.watch_file(file);
        if file.check_due() && !self.current.is_reloading() {
            watch::check_in_background(&self.current, file);
        }
    }

    /// Starts the background checks once somebody listens for revocations.
    fn watch_file(&self, file: &Arc<WatchedFile>) {
        if file.refresh_interval.is_some() {
            let (current, weak_file) = (Arc::downgrade(&self.current), Arc::downgrade(file));
            file.listeners
                .watch_once(|| watch::watch(current, weak_file));
        }
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
        let lookup = self.with_table(|table| match &table.unreadable {
            Some(error) => Err(HtpasswdError::Unavailable(Arc::clone(error))),
            None => Ok(table.hash_for(&username)),
        });
        let Some((hash, known)) = lookup.transpose()?.flatten() else {
            return Ok(None);
        };
        let matched = if hash.is_slow() {
            run_blocking(move || hash.verify(password.expose_secret().as_bytes()))
                .await
                .map_err(|_| HtpasswdError::Interrupted)?
        } else {
            hash.verify(password.expose_secret().as_bytes())
        };
        Ok((matched && known).then(|| Authorization::new(username, Scheme::Basic)))
    }

    fn accepts(&self, credentials: &CredentialsRef<'_>) -> bool {
        credentials.scheme() == Scheme::Basic
    }

    /// Tells `listener` what each reload of the file revokes; a fixed table never changes.
    fn subscribe_revocations(&self, listener: RevocationListener) {
        if let Some(file) = &self.file {
            file.listeners.add(listener);
            self.watch_file(file);
        }
    }

    fn challenges(&self) -> &[Challenge] {
        &[Challenge::BASIC]
    }
}

impl fmt::Debug for Htpasswd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut debug = f.debug_struct("Htpasswd");
        debug.field("users", &self.len());
        if let Some(file) = &self.file {
            debug
                .field("path", &file.path)
                .field("refresh_interval", &file.refresh_interval);
        }
        debug.finish()
    }
}

#[cfg(test)]
mod tests;
