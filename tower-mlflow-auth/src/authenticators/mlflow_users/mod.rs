//! [`MlflowUsers`]: Basic credentials checked against MLflow's own user store, with werkzeug
//! password hashes ([`WerkzeugHash`]) read from MLflow's SQLite `basic_auth.db`
//! ([`SqliteUserStore`]), any [`UserStore`], or a table given in code.
//!
//! ```
//! use tower_mlflow_auth::{AuthLayer, authenticators::MlflowUsers};
//!
//! let layer = AuthLayer::new(MlflowUsers::sqlite("basic_auth.db"));
//! # let _ = layer;
//! ```

use std::{
    collections::{HashMap, hash_map::Entry},
    fmt,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use secrecy::{ExposeSecret, SecretString};
use subtle::ConstantTimeEq;

use crate::{
    authenticator::Authenticator,
    authorization::Authorization,
    credentials::{Credentials, Scheme},
};

mod store;
mod werkzeug;

use self::werkzeug::Method;
pub use self::{
    store::{SqliteUserStore, UserRecord, UserStore, UserStoreError},
    werkzeug::{
        WERKZEUG_DEFAULT_PBKDF2_ITERATIONS, WerkzeugHash, WerkzeugHashError, WerkzeugLimits,
    },
};

/// The password older MLflow versions shipped for `admin`; refused for admin accounts.
const LEGACY_ADMIN_PASSWORD: &str = "password1234";

/// Default time between reloads of a [`UserStore`].
const DEFAULT_REFRESH_INTERVAL: Duration = Duration::from_secs(5);

/// Checks Basic credentials against MLflow's users.
///
/// `mlflow server --app-name basic-auth` keeps its users in a `users(username,
/// password_hash, is_admin)` table, with werkzeug password hashes (see [`WerkzeugHash`]).
/// `MlflowUsers` reads that table — from MLflow's SQLite `basic_auth.db`, from any
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
///     .sqlite("/srv/mlflow/basic_auth.db");
/// let layer = AuthLayer::new(from_db);
///
/// // Or a fixed table, for tests and small deployments:
/// let fixed = MlflowUsers::from_users([UserRecord::new(
///     "alice",
///     "pbkdf2:sha256:260000$abcdefghijklmnop$e899cf972d255b26b6b68a9ef80f00520c66daea0e31011662d58edbe14cfcbf",
/// )])?;
/// # let _ = (layer, fixed);
/// # Ok::<_, tower_mlflow_auth::authenticators::MlflowUsersConfigError>(())
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
///   never the hash); other users are unaffected.
///
/// # Refresh
///
/// A store's table is loaded on first use and reloaded by the first authentication after the
/// refresh interval (default 5 s; zero reloads every time), so a password changed in MLflow
/// is in force within that interval. [`MlflowUsers::invalidate`] makes the next
/// authentication reload at once, and [`MlflowUsers::refresh`] reloads now. When a load
/// fails, authentications fail with [`MlflowUsersError::Store`] (503) — a stale table is not
/// used past its interval — and the next authentication tries again.
///
/// Cloning is cheap and clones share the table.
///
/// [`first_of`]: crate::first_of
#[derive(Clone)]
pub struct MlflowUsers {
    inner: Arc<Inner>,
}

struct Inner {
    source: Source,
}

enum Source {
    Fixed(Arc<UserTable>),
    Store(StoreSource),
}

struct StoreSource {
    store: Box<dyn UserStore>,
    refresh_interval: Duration,
    limits: WerkzeugLimits,
    /// The table in use; locked only to clone or replace the `Arc`.
    current: Mutex<Option<Loaded>>,
    /// Held while loading, so that concurrent authentications load once.
    loading: Mutex<()>,
    /// Bumped by `invalidate`; a table loaded under an older generation is stale.
    generation: AtomicU64,
}

struct Loaded {
    table: Arc<UserTable>,
    started: Instant,
    generation: u64,
}

/// The parsed user table.
struct UserTable {
    users: HashMap<Box<str>, UserEntry>,
    /// What unknown usernames are checked against.
    dummy: WerkzeugHash,
}

enum UserEntry {
    Valid { hash: WerkzeugHash, is_admin: bool },
    Invalid(InvalidUserRecord),
}

impl UserTable {
    /// Parses every record; problems are kept per user.
    fn parse(records: Vec<UserRecord>, limits: &WerkzeugLimits) -> Self {
        let mut users: HashMap<Box<str>, UserEntry> = HashMap::with_capacity(records.len());
        for record in records {
            let entry =
                match WerkzeugHash::parse_with_limits(record.password_hash.expose_secret(), limits)
                {
                    Ok(hash) => UserEntry::Valid {
                        hash,
                        is_admin: record.is_admin,
                    },
                    Err(e) => UserEntry::Invalid(InvalidUserRecord::Hash(e)),
                };
            match users.entry(record.username.into_boxed_str()) {
                // MLflow's `.one()` fails for a duplicated name; so does this.
                Entry::Occupied(mut slot) => {
                    slot.insert(UserEntry::Invalid(InvalidUserRecord::Duplicate));
                }
                Entry::Vacant(slot) => {
                    slot.insert(entry);
                }
            }
        }
        let dummy = WerkzeugHash::dummy(most_common_method(&users));
        Self { users, dummy }
    }

    fn invalid_users(&self) -> Vec<(&str, &InvalidUserRecord)> {
        let mut invalid: Vec<_> = self
            .users
            .iter()
            .filter_map(|(name, entry)| match entry {
                UserEntry::Invalid(why) => Some((name.as_ref(), why)),
                UserEntry::Valid { .. } => None,
            })
            .collect();
        invalid.sort_by_key(|(name, _)| *name);
        invalid
    }
}

/// The method most users' hashes use, or werkzeug 3.1's default for an empty table.
fn most_common_method(users: &HashMap<Box<str>, UserEntry>) -> Method {
    let mut counts: HashMap<Method, usize> = HashMap::new();
    for entry in users.values() {
        if let UserEntry::Valid { hash, .. } = entry {
            *counts.entry(hash.method()).or_default() += 1;
        }
    }
    counts
        .into_iter()
        .max_by_key(|&(method, count)| (count, method_cost_rank(method)))
        .map_or(
            Method::Scrypt {
                log_n: 15,
                r: 8,
                p: 1,
            },
            |(method, _)| method,
        )
}

/// A deterministic tie-break between equally common methods: the costlier one.
fn method_cost_rank(method: Method) -> u64 {
    match method {
        Method::Scrypt { log_n, r, p } => (1u64 << log_n)
            .saturating_mul(u64::from(r))
            .saturating_mul(u64::from(p)),
        Method::Pbkdf2 { iterations, .. } => u64::from(iterations),
    }
}

impl StoreSource {
    fn is_fresh(&self, loaded: &Loaded) -> bool {
        loaded.generation == self.generation.load(Ordering::Acquire)
            && loaded.started.elapsed() < self.refresh_interval
    }

    fn fresh_table(&self) -> Option<Arc<UserTable>> {
        let current = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        current
            .as_ref()
            .filter(|loaded| self.is_fresh(loaded))
            .map(|loaded| Arc::clone(&loaded.table))
    }

    /// The current table, loading it first if it is missing or stale. Blocks.
    fn table(&self) -> Result<Arc<UserTable>, MlflowUsersError> {
        if let Some(table) = self.fresh_table() {
            return Ok(table);
        }
        let _loading = self.loading.lock().unwrap_or_else(PoisonError::into_inner);
        // Another thread may have loaded while this one waited.
        if let Some(table) = self.fresh_table() {
            return Ok(table);
        }
        // Read the generation first: an invalidation during the load makes it stale again.
        let generation = self.generation.load(Ordering::Acquire);
        let started = Instant::now();
        let records = self.store.load().map_err(MlflowUsersError::Store)?;
        let table = Arc::new(UserTable::parse(records, &self.limits));
        let mut current = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        log_invalid_changes(current.as_ref().map(|l| &*l.table), &table);
        tracing::debug!(users = table.users.len(), "loaded MLflow users");
        *current = Some(Loaded {
            table: Arc::clone(&table),
            started,
            generation,
        });
        Ok(table)
    }
}

/// Warns about unusable rows once, when they first appear, not on every reload.
fn log_invalid_changes(previous: Option<&UserTable>, next: &UserTable) {
    let before: Vec<&str> = previous
        .map(|t| {
            t.invalid_users()
                .into_iter()
                .map(|(name, _)| name)
                .collect()
        })
        .unwrap_or_default();
    for (user, why) in next.invalid_users() {
        if before.binary_search(&user).is_err() {
            tracing::warn!(%user, "unusable MLflow user record: {why}");
        }
    }
}

impl Inner {
    fn table(&self) -> Result<Arc<UserTable>, MlflowUsersError> {
        match &self.source {
            Source::Fixed(table) => Ok(Arc::clone(table)),
            Source::Store(store) => store.table(),
        }
    }

    /// The whole check, on a blocking thread.
    fn verify(
        &self,
        username: &str,
        password: &SecretString,
    ) -> Result<Option<Authorization>, MlflowUsersError> {
        let table = self.table()?;
        let password = password.expose_secret().as_bytes();
        let (hash, is_admin) = match table.users.get(username) {
            Some(UserEntry::Valid { hash, is_admin }) => (hash, *is_admin),
            Some(UserEntry::Invalid(reason)) => {
                return Err(MlflowUsersError::InvalidRecord {
                    username: username.into(),
                    reason: reason.clone(),
                });
            }
            None => {
                // Same work as a real user, so that response times do not reveal usernames.
                let _ = table.dummy.verify(password);
                return Ok(None);
            }
        };
        if !hash.verify(password) {
            return Ok(None);
        }
        if is_admin && bool::from(password.ct_eq(LEGACY_ADMIN_PASSWORD.as_bytes())) {
            tracing::warn!(
                user = %username,
                "refused an admin login with the legacy default password of older MLflow versions \
                 (GHSA-gq3w-7jj3-x7gr); change that account's password"
            );
            return Ok(None);
        }
        Ok(Some(
            Authorization::new(username, Scheme::Basic).with_admin(is_admin),
        ))
    }
}

impl MlflowUsers {
    /// A builder for the refresh interval and hash limits.
    #[must_use]
    pub fn builder() -> MlflowUsersBuilder {
        MlflowUsersBuilder {
            refresh_interval: DEFAULT_REFRESH_INTERVAL,
            limits: WerkzeugLimits::default(),
        }
    }

    /// A fixed in-memory table, with the default [`WerkzeugLimits`].
    ///
    /// # Errors
    ///
    /// [`MlflowUsersConfigError`] naming the first user whose hash cannot be used, whose name
    /// is empty or appears twice.
    pub fn from_users(
        users: impl IntoIterator<Item = UserRecord>,
    ) -> Result<Self, MlflowUsersConfigError> {
        Self::builder().users(users)
    }

    /// MLflow's SQLite database at `path`, with the default refresh interval (5 s); see
    /// [`SqliteUserStore`]. Nothing is read until the first authentication or
    /// [`refresh`](Self::refresh).
    pub fn sqlite(path: impl Into<std::path::PathBuf>) -> Self {
        Self::builder().sqlite(path)
    }

    /// Makes the next authentication reload the table from the store, for example right
    /// after changing a password through MLflow's API. Cheap; never blocks on the store.
    /// Does nothing for a fixed table.
    pub fn invalidate(&self) {
        if let Source::Store(store) = &self.inner.source {
            store.generation.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// Reloads the table from the store now (on a blocking thread). Also useful at start-up,
    /// to fail early when the database cannot be read.
    ///
    /// # Errors
    ///
    /// [`MlflowUsersError::Store`] when the store cannot be read; the previous table is then
    /// not used any more.
    pub async fn refresh(&self) -> Result<(), MlflowUsersError> {
        self.invalidate();
        let inner = Arc::clone(&self.inner);
        run_blocking(move || inner.table().map(drop)).await
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
        let inner = Arc::clone(&self.inner);
        run_blocking(move || inner.verify(&username, &password)).await
    }
}

/// Runs `work` on tokio's blocking pool, or inline outside a tokio runtime (never panics).
async fn run_blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, MlflowUsersError> + Send + 'static,
) -> Result<T, MlflowUsersError> {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) => handle
            .spawn_blocking(work)
            .await
            .map_err(|_| MlflowUsersError::TaskFailed)?,
        Err(_) => work(),
    }
}

impl fmt::Debug for MlflowUsers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut debug = f.debug_struct("MlflowUsers");
        match &self.inner.source {
            Source::Fixed(table) => debug.field("users", &table.users.len()),
            Source::Store(store) => debug
                .field("store", &store.store)
                .field("refresh_interval", &store.refresh_interval)
                .field("limits", &store.limits),
        };
        debug.finish()
    }
}

/// Configures an [`MlflowUsers`]; made by [`MlflowUsers::builder`].
#[derive(Clone, Debug)]
pub struct MlflowUsersBuilder {
    refresh_interval: Duration,
    limits: WerkzeugLimits,
}

impl MlflowUsersBuilder {
    /// How long a table loaded from a store is used before the next authentication reloads
    /// it (default 5 s). Zero reloads on every authentication.
    #[must_use]
    pub fn refresh_interval(mut self, interval: Duration) -> Self {
        self.refresh_interval = interval;
        self
    }

    /// The most work a stored hash may ask for (default [`WerkzeugLimits::default`]).
    #[must_use]
    pub fn limits(mut self, limits: WerkzeugLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Users from `store`, loaded on first use and after each refresh interval.
    pub fn store(self, store: impl UserStore) -> MlflowUsers {
        MlflowUsers {
            inner: Arc::new(Inner {
                source: Source::Store(StoreSource {
                    store: Box::new(store),
                    refresh_interval: self.refresh_interval,
                    limits: self.limits,
                    current: Mutex::new(None),
                    loading: Mutex::new(()),
                    generation: AtomicU64::new(0),
                }),
            }),
        }
    }

    /// Users from MLflow's SQLite database at `path`; see [`SqliteUserStore`].
    pub fn sqlite(self, path: impl Into<std::path::PathBuf>) -> MlflowUsers {
        self.store(SqliteUserStore::new(path))
    }

    /// A fixed in-memory table. The refresh interval does not apply.
    ///
    /// # Errors
    ///
    /// [`MlflowUsersConfigError`] naming the first user whose hash cannot be used, whose name
    /// is empty or appears twice.
    pub fn users(
        self,
        users: impl IntoIterator<Item = UserRecord>,
    ) -> Result<MlflowUsers, MlflowUsersConfigError> {
        let records: Vec<UserRecord> = users.into_iter().collect();
        if records.iter().any(|r| r.username.is_empty()) {
            return Err(MlflowUsersConfigError::EmptyUsername);
        }
        let table = UserTable::parse(records, &self.limits);
        if let Some((username, reason)) = table.invalid_users().into_iter().next() {
            return Err(MlflowUsersConfigError::InvalidRecord {
                username: username.into(),
                reason: reason.clone(),
            });
        }
        Ok(MlflowUsers {
            inner: Arc::new(Inner {
                source: Source::Fixed(Arc::new(table)),
            }),
        })
    }
}

/// Why one user's record cannot be used. Never contains the hash.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum InvalidUserRecord {
    /// The password hash cannot be used (unsupported, malformed or over the limits).
    Hash(WerkzeugHashError),
    /// The username appears more than once.
    Duplicate,
}

impl fmt::Display for InvalidUserRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Hash(e) => write!(f, "password hash: {e}"),
            Self::Duplicate => f.pad("username appears more than once"),
        }
    }
}

impl std::error::Error for InvalidUserRecord {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Hash(e) => Some(e),
            Self::Duplicate => None,
        }
    }
}

/// An in-memory user table that cannot be used; returned by [`MlflowUsers::from_users`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum MlflowUsersConfigError {
    /// A user's record cannot be used.
    InvalidRecord {
        /// The user.
        username: Box<str>,
        /// What is wrong with the record.
        reason: InvalidUserRecord,
    },
    /// A record has an empty username (MLflow refuses them; no Basic credential has one).
    EmptyUsername,
}

impl fmt::Display for MlflowUsersConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidRecord { username, reason } => {
                write!(f, "MLflow user {username:?}: {reason}")
            }
            Self::EmptyUsername => f.pad("an MLflow user has an empty username"),
        }
    }
}

impl std::error::Error for MlflowUsersConfigError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::InvalidRecord { reason, .. } => Some(reason),
            Self::EmptyUsername => None,
        }
    }
}

/// Why [`MlflowUsers`] could not decide on credentials (a 503 from the layer).
#[derive(Debug)]
#[non_exhaustive]
pub enum MlflowUsersError {
    /// The user store could not be read.
    Store(UserStoreError),
    /// The user's record cannot be used; other users are unaffected.
    InvalidRecord {
        /// The user who tried to log in.
        username: Box<str>,
        /// What is wrong with the record.
        reason: InvalidUserRecord,
    },
    /// The blocking verification task panicked or was cancelled by a runtime shutdown.
    TaskFailed,
}

impl fmt::Display for MlflowUsersError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Store(e) => write!(f, "MLflow user store: {e}"),
            Self::InvalidRecord { username, reason } => {
                write!(f, "MLflow user {username:?}: {reason}")
            }
            Self::TaskFailed => f.pad("MLflow password verification task failed"),
        }
    }
}

impl std::error::Error for MlflowUsersError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Store(e) => Some(e),
            Self::InvalidRecord { reason, .. } => Some(reason),
            Self::TaskFailed => None,
        }
    }
}

#[cfg(test)]
mod tests;
