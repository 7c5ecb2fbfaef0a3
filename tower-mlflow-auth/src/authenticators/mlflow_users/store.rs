//! Where MLflow users come from: the [`UserStore`] trait and the SQLite store.

use std::{error::Error, fmt, path::PathBuf, sync::Arc, time::Duration};

use rusqlite::{Connection, OpenFlags, types::ValueRef};
use secrecy::SecretString;

/// A source of MLflow users, such as MLflow's auth database.
///
/// [`MlflowUsers`](super::MlflowUsers) calls [`load`](Self::load) on a blocking thread to
/// read the whole user table, at most once per refresh interval, and keeps the parsed table
/// in memory in between. So a store is one query, and verification never waits on the
/// database. MLflow's `users` table is small (one row per account), so a full read is cheap.
///
/// Implement it for another database (MySQL, say) with that database's blocking client,
/// running `SELECT username, password_hash, is_admin FROM users`. PostgreSQL has a built-in
/// async reader: `MlflowUsersBuilder::postgres` (feature `mlflow-users-postgres`).
///
/// ```
/// use tower_mlflow_auth::authenticators::{MlflowUsers, UserRecord, UserStore, UserStoreError};
///
/// #[derive(Debug)]
/// struct FromEnv;
///
/// impl UserStore for FromEnv {
///     fn load(&self) -> Result<Vec<UserRecord>, UserStoreError> {
///         let hash = std::env::var("ADMIN_HASH").map_err(UserStoreError::new)?;
///         Ok(vec![UserRecord::new("admin", hash).with_admin(true)])
///     }
/// }
///
/// let users = MlflowUsers::builder().store(FromEnv).build()?;
/// # let _ = users;
/// # Ok::<_, tower_mlflow_auth::authenticators::MlflowUsersBuildError>(())
/// ```
pub trait UserStore: fmt::Debug + Send + Sync + 'static {
    /// Reads every user. Called from a blocking thread; may block.
    ///
    /// # Errors
    ///
    /// [`UserStoreError`] when the store cannot be read (missing, locked, corrupt, down).
    /// Authentication then fails with a backend error (503), never with a 401.
    fn load(&self) -> Result<Vec<UserRecord>, UserStoreError>;
}

/// One row of MLflow's `users` table: a username, its werkzeug password hash and the admin
/// flag.
///
/// `Debug` never shows the hash.
#[derive(Clone, Debug)]
pub struct UserRecord {
    pub(super) username: String,
    pub(super) password_hash: SecretString,
    pub(super) is_admin: bool,
}

impl UserRecord {
    /// A non-admin user with a werkzeug hash such as `scrypt:32768:8:1$salt$hex`.
    #[must_use]
    pub fn new(username: impl Into<String>, password_hash: impl Into<String>) -> Self {
        Self {
            username: username.into(),
            password_hash: SecretString::from(password_hash.into()),
            is_admin: false,
        }
    }

    /// Sets MLflow's `is_admin` flag.
    #[must_use]
    pub fn with_admin(mut self, is_admin: bool) -> Self {
        self.is_admin = is_admin;
        self
    }

    /// The username.
    #[must_use]
    pub fn username(&self) -> &str {
        &self.username
    }

    /// MLflow's `is_admin` flag.
    #[must_use]
    pub fn is_admin(&self) -> bool {
        self.is_admin
    }
}

/// A [`UserStore`] that could not be read. Its text must not contain a secret.
///
/// Cloning is cheap: every authentication that waited for the failed load gets a clone.
#[derive(Clone, Debug)]
pub struct UserStoreError(Arc<dyn Error + Send + Sync>);

impl UserStoreError {
    /// Wraps the store's own error.
    pub fn new(error: impl Into<Box<dyn Error + Send + Sync>>) -> Self {
        Self(Arc::from(error.into()))
    }
}

impl fmt::Display for UserStoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl Error for UserStoreError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        self.0.source()
    }
}

/// MLflow's SQLite auth database, the `basic_auth.db` that
/// `mlflow server --app-name basic-auth` creates in its working directory (or wherever the
/// `database_uri` of its `basic_auth.ini` points).
///
/// The file is opened read-only, afresh for each load, so a replaced file is picked up and no
/// handle is held in between; a missing file is an error, never created. While MLflow writes,
/// a load waits up to the busy timeout (default 5 s) for the lock.
///
/// Rows whose username is not text are skipped (MLflow cannot match them either); an
/// `is_admin` that is neither an integer nor NULL counts as not admin and is logged.
#[derive(Clone, Debug)]
pub struct SqliteUserStore {
    path: PathBuf,
    busy_timeout: Duration,
}

impl SqliteUserStore {
    /// The database at `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            busy_timeout: Duration::from_secs(5),
        }
    }

    /// How long a load waits for MLflow's write lock before failing.
    #[must_use]
    pub fn busy_timeout(mut self, timeout: Duration) -> Self {
        self.busy_timeout = timeout;
        self
    }

    fn read(&self) -> rusqlite::Result<Vec<UserRecord>> {
        // No SQLITE_OPEN_CREATE: a missing file is an error. No URI parsing of the path.
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let connection = Connection::open_with_flags(&self.path, flags)?;
        connection.busy_timeout(self.busy_timeout)?;
        let mut statement =
            connection.prepare("SELECT username, password_hash, is_admin FROM users")?;
        let mut rows = statement.query([])?;
        let mut records = Vec::new();
        while let Some(row) = rows.next()? {
            let ValueRef::Text(username) = row.get_ref(0)? else {
                continue;
            };
            let username = String::from_utf8_lossy(username).into_owned();
            // A NULL or non-text hash becomes "", which fails to parse: an error for that user.
            let password_hash = match row.get_ref(1)? {
                ValueRef::Text(hash) => String::from_utf8_lossy(hash).into_owned(),
                _ => String::new(),
            };
            let is_admin = match row.get_ref(2)? {
                ValueRef::Integer(flag) => flag != 0,
                ValueRef::Null => false,
                _ => {
                    tracing::warn!(user = %username, "MLflow user's is_admin is not an integer; treated as not admin");
                    false
                }
            };
            records.push(UserRecord::new(username, password_hash).with_admin(is_admin));
        }
        Ok(records)
    }
}

impl UserStore for SqliteUserStore {
    fn load(&self) -> Result<Vec<UserRecord>, UserStoreError> {
        self.read().map_err(|source| {
            UserStoreError::new(SqliteError {
                path: self.path.clone(),
                source,
            })
        })
    }
}

/// A failed read of the SQLite auth database, naming the file.
#[derive(Debug)]
struct SqliteError {
    path: PathBuf,
    source: rusqlite::Error,
}

impl fmt::Display for SqliteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cannot read MLflow users from {}: {}",
            self.path.display(),
            self.source
        )
    }
}

impl Error for SqliteError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(&self.source)
    }
}
