//! [`MlflowUsers`]: Basic credentials checked against MLflow's own user store, with werkzeug
//! password hashes read from MLflow's SQLite `basic_auth.db` ([`SqliteUserStore`]), its
//! PostgreSQL database (feature `mlflow-users-postgres`,
//! `MlflowUsersBuilder::postgres`), any [`UserStore`], or a table given in code.
//!
//! ```
//! use tower_mlflow_auth::{AuthLayer, authenticators::MlflowUsers};
//!
//! let layer = AuthLayer::new(MlflowUsers::sqlite("basic_auth.db"));
//! # let _ = layer;
//! ```
//!
//! - `werkzeug` and `limits`: the stored hash format and the most work it may ask for.
//! - `table`: the parsed users and the check of one login.
//! - `source` and `store`: where the users come from, and when they are reloaded.
//! - `postgres` (feature `mlflow-users-postgres`): MLflow's auth database in PostgreSQL,
//!   read with tokio-postgres on the runtime itself (no blocking thread), over rustls.

use std::{fmt, path::PathBuf, sync::Arc, time::Duration};

use tower_mlflow_core::blocking::run_blocking;

use crate::{
    authenticator::{Authenticator, RevocationListener},
    authorization::Authorization,
    credentials::{Credentials, CredentialsRef, Scheme},
};

mod builder;
mod error;
mod limits;
#[cfg(feature = "mlflow-users-postgres")]
mod postgres;
mod source;
mod store;
mod table;
mod werkzeug;

#[cfg(feature = "mlflow-users-postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "mlflow-users-postgres")))]
pub use self::postgres::InvalidPostgresUrl;
use self::source::{Backend, Source, StoreSource};
#[cfg_attr(
    not(feature = "fuzzing"),
    allow(unused_imports, reason = "for the fuzz targets")
)]
pub(crate) use self::werkzeug::WerkzeugHash;
pub use self::{
    builder::MlflowUsersBuilder,
    error::{InvalidUserRecord, MlflowUsersBuildError, MlflowUsersError},
    limits::WerkzeugLimits,
    store::{SqliteUserStore, UserRecord, UserStore, UserStoreError},
    werkzeug::WerkzeugHashError,
};

/// Checks Basic credentials against MLflow's users.
///
/// `mlflow server --app-name basic-auth` keeps its users in a `users(username,
/// password_hash, is_admin)` table, with werkzeug password hashes (see
/// [below](#password-hashes)). `MlflowUsers` reads that table — from MLflow's SQLite
/// `basic_auth.db`, from its PostgreSQL database (feature `mlflow-users-postgres`:
/// `MlflowUsersBuilder::postgres`, the same schema, the same refresh), from any
/// [`UserStore`], or from a table given in code — and accepts the same passwords MLflow does.
/// MLflow's `is_admin` becomes [`Authorization::is_admin`].
///
/// ```
/// use std::time::Duration;
/// use tower_mlflow_auth::{AuthLayer, authenticators::{MlflowUsers, UserRecord}};
///
/// // MLflow's database, re-read at most every 10 seconds:
/// let from_db = MlflowUsers::builder()
///     .refresh_interval(Duration::from_secs(10))
///     .sqlite("/srv/mlflow/basic_auth.db")
///     .build()?;
/// let layer = AuthLayer::new(from_db);
///
/// // Or a fixed table, for tests and small deployments:
/// let fixed = MlflowUsers::from_users([UserRecord::new(
///     "alice",
///     "pbkdf2:sha256:260000$abcdefghijklmnop$e899cf972d255b26b6b68a9ef80f00520c66daea0e31011662d58edbe14cfcbf",
/// )])?;
/// # let _ = (layer, fixed);
/// # Ok::<_, tower_mlflow_auth::authenticators::MlflowUsersBuildError>(())
/// ```
///
/// # Behaviour
///
/// - Only Basic credentials are checked; others give `Ok(None)`, so [`first_of`] can pass them
///   on. The username must match exactly (SQLite's default, case-sensitive).
/// - Hashes run on tokio's blocking pool (`spawn_blocking`), not on the async runtime. An
///   unknown username costs about as much as a known one: it is checked against a dummy hash
///   with the table's most common method.
/// - As MLflow ≥ 3.16.1 does, the legacy default password `password1234` is refused for admin
///   accounts even when the hash matches (GHSA-gq3w-7jj3-x7gr), and a warning is logged.
/// - A row MLflow could not use either — a hash this crate cannot parse, a hash asking for
///   more work than [`WerkzeugLimits`] allow, or a username that appears twice — makes that
///   user's logins fail with [`MlflowUsersError::InvalidRecord`] (a 503 that names the user,
///   never the hash); other users are unaffected. Such a row is logged once, when it first
///   appears.
///
/// # Password hashes
///
/// werkzeug's `method$salt$hexdigest`, where `method` is one of
///
/// - `scrypt:N:r:p` (a bare `scrypt` means `scrypt:32768:8:1`), with a 64-byte digest;
/// - `pbkdf2:HASH:ITERATIONS`, `pbkdf2:HASH` or a bare `pbkdf2` (as werkzeug 3.1: SHA-256 and
///   [`WERKZEUG_DEFAULT_PBKDF2_ITERATIONS`](Self::WERKZEUG_DEFAULT_PBKDF2_ITERATIONS) when
///   left out); `HASH` is `sha224`, `sha256`, `sha384` or `sha512`, and the digest is as long
///   as its output.
///
/// The salt is used as its UTF-8 bytes, never decoded; the digest is lowercase hex (werkzeug
/// compares hex text, so an uppercase digest could never match there and is refused here).
/// Parameters are plain decimal digits. Other werkzeug methods (plain text, old `sha1$…`
/// salted hashes, other hashlib names for PBKDF2) are not supported. Costs are bounded by
/// [`WerkzeugLimits`]. Errors ([`WerkzeugHashError`]) never contain the salt or the digest.
///
/// # Refresh
///
/// A store's table is loaded on first use and reloaded by the first authentication after the
/// refresh interval (default [`DEFAULT_REFRESH_INTERVAL`](Self::DEFAULT_REFRESH_INTERVAL);
/// zero reloads every time), so a password changed in MLflow is in force within that
/// interval. Concurrent authentications share one load. [`MlflowUsers::invalidate`] makes
/// the next authentication reload at once, and [`MlflowUsers::refresh`] reloads now. When a
/// load fails, authentications fail with [`MlflowUsersError::Store`] (503) — the previous
/// table is not used any more — and the next authentication tries again.
///
/// # PostgreSQL
///
/// With the feature `mlflow-users-postgres`, `MlflowUsersBuilder::postgres(url)` reads the
/// `users` table MLflow creates in PostgreSQL when its `database_uri` points there. A load
/// runs on the async runtime (tokio-postgres, one connection per load, at most 10 s), so the
/// refresh, the revocations below and the 503 while the server is down are the same as with
/// SQLite. Off this machine TLS is required; the password never shows in `Debug`, errors or
/// logs.
///
/// # Under a cache
///
/// Only Basic credentials are [accepted](Authenticator::accepts). A
/// [`Cached`](crate::authenticators::Cached) above subscribes to revocations: after each
/// reload it is told which users were added, deleted, or given a new password or admin flag
/// ([`Revoked::Users`](crate::authenticator::Revoked::Users)), and after a failed load that
/// everything is revoked. Since cache hits never reach this type, a store with subscribers
/// is also reloaded every refresh interval on its own (a tokio task, spawned when the first
/// subscriber arrives inside a runtime, or else at the next authentication), as long as any
/// clone is alive. [`invalidate`](Self::invalidate) then takes effect at the next of those
/// reloads; [`refresh`](Self::refresh) revokes at once.
///
/// Cloning is cheap and clones share the table.
///
/// [`first_of`]: crate::first_of
#[derive(Clone)]
pub struct MlflowUsers {
    source: Arc<Source>,
}

impl MlflowUsers {
    /// How long a table loaded from a store is used unless
    /// [configured](MlflowUsersBuilder::refresh_interval).
    pub const DEFAULT_REFRESH_INTERVAL: Duration = Duration::from_secs(5);

    /// werkzeug 3.1's `DEFAULT_PBKDF2_ITERATIONS`, taken when a `pbkdf2` hash names no count.
    pub const WERKZEUG_DEFAULT_PBKDF2_ITERATIONS: u32 = werkzeug::DEFAULT_PBKDF2_ITERATIONS;

    /// A builder for the source of users, the refresh interval and hash limits.
    pub fn builder() -> MlflowUsersBuilder {
        MlflowUsersBuilder::new()
    }

    /// A fixed in-memory table, with the default [`WerkzeugLimits`]: the same as
    /// `MlflowUsers::builder().users(users).build()`.
    ///
    /// # Errors
    ///
    /// [`MlflowUsersBuildError`] naming the first user whose hash cannot be used, whose name
    /// is empty or appears twice.
    pub fn from_users(
        users: impl IntoIterator<Item = UserRecord>,
    ) -> Result<Self, MlflowUsersBuildError> {
        Self::builder().users(users).build()
    }

    /// MLflow's SQLite database at `path`, with the default refresh interval and limits (the
    /// same as `MlflowUsers::builder().sqlite(path).build()`, which cannot fail); see
    /// [`SqliteUserStore`]. Nothing is read until the first authentication or
    /// [`refresh`](Self::refresh).
    pub fn sqlite(path: impl Into<PathBuf>) -> Self {
        Self::from_source(Source::Store(StoreSource::new(
            Backend::Blocking(Arc::new(SqliteUserStore::new(path))),
            Self::DEFAULT_REFRESH_INTERVAL,
            WerkzeugLimits::default(),
        )))
    }

    fn from_source(source: Source) -> Self {
        Self {
            source: Arc::new(source),
        }
    }

    /// Makes the next authentication reload the table from the store, for example right
    /// after changing a password through MLflow's API. Cheap; never blocks on the store.
    /// Does nothing for a fixed table.
    pub fn invalidate(&self) {
        self.source.invalidate();
    }

    /// Reloads the table from the store now (on a blocking thread). Also useful at start-up,
    /// to fail early when the database cannot be read.
    ///
    /// # Errors
    ///
    /// [`MlflowUsersError::Store`] when the store cannot be read; the previous table is then
    /// not used any more.
    pub async fn refresh(&self) -> Result<(), MlflowUsersError> {
        self.source.refresh().await
    }

    /// Starts the background reloads once somebody listens for revocations.
    fn watch_store(&self) {
        if let Source::Store(store) = &*self.source {
            let source = Arc::downgrade(&self.source);
            store.listeners.watch_once(|| source::watch(source));
        }
    }
}

impl Authenticator for MlflowUsers {
    type Error = MlflowUsersError;

    async fn authenticate(
        &self,
        credentials: Credentials,
    ) -> Result<Option<Authorization>, Self::Error> {
        let Credentials::Basic { username, password } = credentials else {
            return Ok(None);
        };
        self.watch_store();
        let table = self.source.table().await?;
        run_blocking(move || table.get().verify(&username, &password))
            .await
            .unwrap_or(Err(MlflowUsersError::TaskFailed))
    }

    fn accepts(&self, credentials: &CredentialsRef<'_>) -> bool {
        credentials.scheme() == Scheme::Basic
    }

    /// Tells `listener` what each reload of the store revokes; a fixed table never changes.
    fn subscribe_revocations(&self, listener: RevocationListener) {
        if let Source::Store(store) = &*self.source {
            store.listeners.add(listener);
            self.watch_store();
        }
    }
}

impl fmt::Debug for MlflowUsers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut debug = f.debug_struct("MlflowUsers");
        match &*self.source {
            Source::Fixed(table) => {
                debug.field("users", &table.users.len());
            }
            Source::Store(store) => store.debug_fields(&mut debug),
        }
        debug.finish()
    }
}

#[cfg(test)]
mod tests;
