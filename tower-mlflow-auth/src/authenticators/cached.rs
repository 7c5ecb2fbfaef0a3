//! [`Cached`]: a verified-credential cache in front of any [`Authenticator`].

use std::{
    any::Any,
    collections::HashMap,
    error::Error,
    fmt,
    hash::{BuildHasherDefault, Hash, Hasher},
    num::NonZeroUsize,
    sync::{
        Arc, Mutex, PoisonError, RwLock,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use hmac::{Hmac, KeyInit, Mac};
use http::request::Parts;
use secrecy::ExposeSecret;
use sha2::Sha256;
use tokio::sync::{Semaphore, watch};

use crate::{
    authenticator::{Authenticator, Challenge},
    authorization::Authorization,
    credentials::{Credentials, CredentialsError},
};

/// The default time to live of a cached credential: 5 minutes.
pub const DEFAULT_TIME_TO_LIVE: Duration = Duration::from_secs(300);

/// The longest time to live accepted: one day. A verified credential should not outlive a
/// password rotation by more than that.
pub const MAX_TIME_TO_LIVE: Duration = Duration::from_secs(24 * 60 * 60);

/// The default maximum number of cached credentials.
pub const DEFAULT_MAX_ENTRIES: u64 = 10_000;
/// Wraps any [`Authenticator`] with a verified-credential cache.
///
/// Clones share the cache. Credential extraction and challenges are the inner
/// authenticator's.
///
/// A password hash is slow on purpose: bcrypt, scrypt or PBKDF2 at their usual costs take
/// 50–300 ms of CPU per check. Checking one on every request, as nginx and older MLflow
/// versions do, caps a core at a few authenticated requests per second. `Cached` remembers
/// which credentials were accepted, for a bounded time, so that a returning client costs one
/// HMAC-SHA256 and a map lookup instead of a hash. It mirrors MLflow's
/// own credential cache (MLflow ≥ 3.12, `auth_cache_ttl_seconds`):
///
/// - **Key**: HMAC-SHA256 under a random 32-byte key drawn when the cache is built, over the
///   scheme, the length-prefixed username (or header name), a `0` byte and the secret. The
///   plaintext is never stored, and the key is useless outside this process.
/// - **Value**: the accepted [`Authorization`] principal.
/// - **Failures are never cached**: wrong credentials (`Ok(None)`) and backend errors
///   (`Err`) are checked again next time.
/// - **Bounds**: a time to live from the moment of the check (default
///   [`DEFAULT_TIME_TO_LIVE`], 5 minutes) and a maximum number of entries (default
///   [`DEFAULT_MAX_ENTRIES`]). When the cache is full, a new entry first drops the expired
///   ones, then the oldest.
/// - **Hits are cheap**: one HMAC and a lookup under a shared read lock; no bookkeeping is
///   written on a hit, so concurrent hits on different cores do not contend.
/// - **Invalidation**: [`Cached::invalidate`] drops every entry of one user (call it after a
///   password change, an admin-flag change or a deletion); [`Cached::clear`] drops all.
/// - **Single flight**: concurrent requests with the same credentials, while they are not
///   cached, run the inner check once and share its answer, whether accept, reject or error.
/// - **Bounded verification**: cache misses run the inner check behind a semaphore
///   ([`CachedBuilder::with_max_concurrent_verifications`], default: the available
///   parallelism). A flood of wrong passwords therefore queues for those permits instead of
///   taking every blocking thread, and cache **hits never wait for a permit**, so users whose
///   credentials are cached are still served during the flood. The inner authenticator
///   should itself run its hash with `tokio::task::spawn_blocking` (the built-in ones do).
///
/// ```
/// use std::time::Duration;
/// use tower_mlflow_auth::{AuthLayer, Authorization, Credentials, Scheme, authenticators::Cached};
///
/// # async fn check_password_slowly(_: &str, _: &str) -> bool { true }
/// let slow = |credentials: Credentials| async move {
///     Ok::<_, std::convert::Infallible>(match credentials {
///         Credentials::Basic { username, password } => {
///             use secrecy::ExposeSecret;
///             check_password_slowly(&username, password.expose_secret())
///                 .await
///                 .then(|| Authorization::new(username, Scheme::Basic))
///         }
///         _ => None,
///     })
/// };
///
/// let cached = Cached::builder(slow)
///     .with_time_to_live(Duration::from_secs(60))
///     .with_max_entries(1_000)
///     .build()?;
/// let layer = AuthLayer::new(cached.clone());
///
/// // After changing alice's password:
/// cached.invalidate("alice");
/// # let _ = layer;
/// # Ok::<(), tower_mlflow_auth::authenticators::CacheConfigError>(())
/// ```
///
/// # What the cache does not do
///
/// - It does not limit the *rate* of wrong passwords: each one costs a full check, one
///   permit at a time. Put a rate limit or a concurrency limit in front of the layer to keep
///   the queue of waiting misses short.
/// - A cached credential stays valid until its entry expires, is evicted or is invalidated,
///   even if the password was changed elsewhere (another process, an edit of the file or
///   database). Keep the time to live short, or call [`Cached::invalidate`].
/// - The permits are shared by every miss of this cache. An inner authenticator that waits on
///   the network (a key server) holds its permit while it waits; size the permits for it, or
///   cache only the slow-hash authenticator and combine it with the others by
///   [`first_of`](crate::first_of).
pub struct Cached<A> {
    inner: A,
    shared: Arc<Shared>,
}

/// HMAC-SHA256 of a credential under the cache's private key.
///
/// Compared with `==` in the maps: the bytes are a keyed MAC of the credential, not the
/// credential, and an attacker cannot compute them, so timing reveals nothing usable.
#[derive(Clone, Copy, PartialEq, Eq)]
struct CacheKey([u8; 32]);

impl fmt::Debug for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Derived from a secret; no reason to print it.
        f.pad("CacheKey(..)")
    }
}

impl Hash for CacheKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // The key is already uniformly random (a MAC under a secret key): 8 of its bytes are
        // as good a hash as any, and nobody outside can choose them to collide.
        let mut word = [0; 8];
        word.copy_from_slice(&self.0[..8]);
        state.write_u64(u64::from_ne_bytes(word));
    }
}

/// Passes [`CacheKey`]'s own bytes through as the hash.
#[derive(Default)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Not reached by `CacheKey`, which writes one u64; kept correct for any input.
        for &byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(byte);
        }
    }

    fn write_u64(&mut self, word: u64) {
        self.0 = word;
    }
}

type KeyMap<V> = HashMap<CacheKey, V, BuildHasherDefault<KeyHasher>>;

struct Shared {
    /// Accepted credentials. A hit takes the read lock and writes nothing.
    entries: RwLock<KeyMap<Entry>>,
    /// Checks under way, so that concurrent identical misses share one.
    flights: Mutex<KeyMap<Flight>>,
    /// Keyed with the random per-cache key; cloned for each credential.
    key_mac: Hmac<Sha256>,
    /// Permits for running the inner authenticator on a miss.
    verifications: Arc<Semaphore>,
    /// Bumped by every `invalidate` and `clear`, so that a verification which raced with one
    /// does not leave its (possibly stale) answer in the cache.
    invalidations: AtomicU64,
    /// Tells flights for the same key apart, so that one never removes another.
    next_flight: AtomicU64,
    settings: Settings,
}

#[derive(Clone, Copy, Debug)]
struct Settings {
    time_to_live: Duration,
    max_entries: u64,
    max_concurrent_verifications: usize,
}

struct Entry {
    expires_at: Instant,
    /// The Basic username the credential was presented with, for `invalidate`.
    username: Option<Arc<str>>,
    principal: Authorization,
}

/// A check under way, and where its outcome will be published.
struct Flight {
    id: u64,
    outcome: watch::Receiver<Option<Outcome>>,
}

/// What a missing request does: wait for the flight already under way, or start one.
enum Role {
    Follow(u64, watch::Receiver<Option<Outcome>>),
    Lead(u64, watch::Sender<Option<Outcome>>),
}

/// The outcome of one check, shared by every request that waited on it.
#[derive(Clone)]
enum Outcome {
    Accepted(Authorization),
    Rejected,
    /// The inner authenticator's error. Type-erased because `Shared` is not generic; it is
    /// always the `A::Error` of the `Cached<A>` that owns the `Shared`.
    Failed(Arc<dyn Any + Send + Sync>),
}

impl Outcome {
    fn into_result<E: Error + Send + Sync + 'static>(
        self,
    ) -> Result<Option<Authorization>, CachedError<E>> {
        match self {
            Self::Accepted(principal) => Ok(Some(principal)),
            Self::Rejected => Ok(None),
            Self::Failed(error) => match error.downcast::<E>() {
                Ok(error) => Err(CachedError(error)),
                // Unreachable (see `Failed`); if it ever were, refusing is the safe answer.
                Err(_) => Ok(None),
            },
        }
    }
}

/// Removes its flight when dropped: after the check's outcome was published, or when the
/// request leading the flight is cancelled before its check started. Dropping the flight's
/// sender with it wakes the waiting requests, which then look again.
struct FlightGuard {
    shared: Arc<Shared>,
    key: CacheKey,
    id: u64,
}

impl Drop for FlightGuard {
    fn drop(&mut self) {
        let mut flights = self
            .shared
            .flights
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if flights
            .get(&self.key)
            .is_some_and(|flight| flight.id == self.id)
        {
            flights.remove(&self.key);
        }
    }
}

impl<A: Authenticator> Cached<A> {
    /// Wraps `inner` with the default settings.
    ///
    /// # Errors
    ///
    /// [`CacheConfigError::RandomUnavailable`] when the operating system cannot provide the
    /// random key.
    pub fn new(inner: A) -> Result<Self, CacheConfigError> {
        Self::builder(inner).build()
    }

    /// A builder for a cache around `inner`.
    #[must_use]
    pub fn builder(inner: A) -> CachedBuilder<A> {
        CachedBuilder {
            inner,
            time_to_live: DEFAULT_TIME_TO_LIVE,
            max_entries: DEFAULT_MAX_ENTRIES,
            max_concurrent_verifications: None,
        }
    }

    /// Drops every cached credential of `username`: entries presented with that Basic
    /// username, and entries whose principal has that subject (which covers tokens).
    ///
    /// Call it when the user's password, admin flag or existence changes. A check that is
    /// running while this is called still answers the requests waiting on it, but its answer
    /// is not kept.
    pub fn invalidate(&self, username: &str) {
        let shared = &self.shared;
        // Bumped before taking the lock: a check finishing after this either sees the new
        // count (and keeps nothing) or inserted before we remove.
        shared.invalidations.fetch_add(1, Ordering::SeqCst);
        shared.write_entries().retain(|_, entry| {
            entry.username.as_deref() != Some(username) && entry.principal.subject() != username
        });
    }

    /// Drops every cached credential.
    pub fn clear(&self) {
        self.shared.invalidations.fetch_add(1, Ordering::SeqCst);
        self.shared.write_entries().clear();
    }

    /// The number of cached credentials, counting expired ones that were not dropped yet
    /// (they go when the cache is full and a new entry needs room).
    #[must_use]
    pub fn entry_count(&self) -> u64 {
        self.shared.entry_count()
    }

    /// The wrapped authenticator.
    #[must_use]
    pub fn get_ref(&self) -> &A {
        &self.inner
    }

    /// A credential that was not in the cache (or had expired): check it once for all
    /// concurrent identical requests, behind a permit.
    async fn authenticate_miss(
        &self,
        key: CacheKey,
        credentials: Credentials,
    ) -> Result<Option<Authorization>, CachedError<A::Error>> {
        let shared = &self.shared;
        loop {
            let role = {
                let mut flights = shared
                    .flights
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                if let Some(flight) = flights.get(&key) {
                    Role::Follow(flight.id, flight.outcome.clone())
                } else {
                    // A check that ended between our lookup and this lock left its entry
                    // before its flight.
                    if let Some(principal) = shared.lookup(&key) {
                        return Ok(Some(principal));
                    }
                    let id = shared.next_flight.fetch_add(1, Ordering::Relaxed);
                    let (sender, outcome) = watch::channel(None);
                    flights.insert(key, Flight { id, outcome });
                    Role::Lead(id, sender)
                }
            };
            match role {
                Role::Follow(id, mut outcome) => {
                    if let Ok(published) = outcome.wait_for(Option::is_some).await {
                        if let Some(outcome) = published.clone() {
                            return outcome.into_result();
                        }
                    }
                    // The leading request was cancelled before its check started, and its
                    // guard removed the flight. Remove it here too, should it still be there,
                    // so that looking again can never find the same dead flight.
                    drop(FlightGuard {
                        shared: Arc::clone(shared),
                        key,
                        id,
                    });
                }
                Role::Lead(id, sender) => return self.lead(key, id, sender, credentials).await,
            }
        }
    }

    /// Runs the check of a new flight and publishes its outcome.
    async fn lead(
        &self,
        key: CacheKey,
        id: u64,
        sender: watch::Sender<Option<Outcome>>,
        credentials: Credentials,
    ) -> Result<Option<Authorization>, CachedError<A::Error>> {
        let guard = FlightGuard {
            shared: Arc::clone(&self.shared),
            key,
            id,
        };
        let invalidations_before = self.shared.invalidations.load(Ordering::SeqCst);
        // A hit never gets here, so it never waits for a permit. `acquire` fails only on a
        // closed semaphore, and this one is never closed.
        let permit = Arc::clone(&self.shared.verifications)
            .acquire_owned()
            .await
            .ok();
        let username = match &credentials {
            Credentials::Basic { username, .. } => Some(Arc::from(username.as_str())),
            Credentials::Bearer { .. } | Credentials::Header { .. } => None,
        };
        // The check runs in its own task that owns the permit: if this request is cancelled
        // (the client hangs up), the slow hash still runs to its end on the blocking pool, so
        // the permit must not return before it does. Otherwise clients that connect and
        // disconnect could run any number of hashes at once.
        let inner = self.inner.clone();
        let check = tokio::spawn(async move {
            let answer = inner.authenticate(credentials).await;
            drop(permit);
            let outcome = match answer {
                Ok(Some(principal)) => {
                    guard
                        .shared
                        .remember(key, username, &principal, invalidations_before);
                    Outcome::Accepted(principal)
                }
                Ok(None) => Outcome::Rejected,
                Err(error) => Outcome::Failed(Arc::new(error)),
            };
            sender.send_replace(Some(outcome.clone()));
            drop(guard);
            outcome
        });
        match check.await {
            Ok(outcome) => outcome.into_result(),
            Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
            // Only when the runtime shuts down: nothing was verified.
            Err(_) => Ok(None),
        }
    }
}

impl Shared {
    /// The cache key: HMAC(key, scheme ‖ len(name) ‖ name ‖ 0 ‖ secret).
    ///
    /// The name is length-prefixed so that no (name, secret) pair can collide with another
    /// by moving bytes across the boundary (a Basic username may contain a NUL byte).
    fn key_for(&self, credentials: &Credentials) -> CacheKey {
        let (scheme, name, secret): (u8, &[u8], &str) = match credentials {
            Credentials::Basic { username, password } => {
                (1, username.as_bytes(), password.expose_secret())
            }
            Credentials::Bearer { token } => (2, b"", token.expose_secret()),
            Credentials::Header { name, value } => {
                (3, name.as_str().as_bytes(), value.expose_secret())
            }
        };
        let name_len = u64::try_from(name.len()).unwrap_or(u64::MAX);
        let mut mac = self.key_mac.clone();
        mac.update(&[scheme]);
        mac.update(&name_len.to_be_bytes());
        mac.update(name);
        mac.update(&[0]);
        mac.update(secret.as_bytes());
        CacheKey(mac.finalize().into_bytes().into())
    }

    /// The principal of a live entry.
    fn lookup(&self, key: &CacheKey) -> Option<Authorization> {
        let entries = self.entries.read().unwrap_or_else(PoisonError::into_inner);
        let entry = entries.get(key)?;
        (Instant::now() < entry.expires_at).then(|| entry.principal.clone())
    }

    fn write_entries(&self) -> std::sync::RwLockWriteGuard<'_, KeyMap<Entry>> {
        self.entries.write().unwrap_or_else(PoisonError::into_inner)
    }

    fn entry_count(&self) -> u64 {
        let entries = self.entries.read().unwrap_or_else(PoisonError::into_inner);
        u64::try_from(entries.len()).unwrap_or(u64::MAX)
    }

    /// Keeps an accepted credential, unless an invalidation happened since its check began.
    fn remember(
        &self,
        key: CacheKey,
        username: Option<Arc<str>>,
        principal: &Authorization,
        invalidations_before: u64,
    ) {
        let now = Instant::now();
        let Some(expires_at) = now.checked_add(self.settings.time_to_live) else {
            return;
        };
        let mut entries = self.write_entries();
        // Read under the lock that `invalidate` takes after bumping the count.
        if self.invalidations.load(Ordering::SeqCst) != invalidations_before {
            return;
        }
        let full = |entries: &KeyMap<Entry>| {
            u64::try_from(entries.len()).unwrap_or(u64::MAX) >= self.settings.max_entries
        };
        if full(&entries) && !entries.contains_key(&key) {
            entries.retain(|_, entry| entry.expires_at > now);
            if full(&entries) {
                // Every entry has the same time to live: the soonest to expire is the oldest.
                let oldest = entries
                    .iter()
                    .min_by_key(|(_, entry)| entry.expires_at)
                    .map(|(key, _)| *key);
                if let Some(oldest) = oldest {
                    entries.remove(&oldest);
                }
            }
        }
        entries.insert(
            key,
            Entry {
                expires_at,
                username,
                principal: principal.clone(),
            },
        );
    }
}

impl<A: Authenticator> Authenticator for Cached<A> {
    type Error = CachedError<A::Error>;

    fn credentials(&self, parts: &Parts) -> Result<Credentials, CredentialsError> {
        self.inner.credentials(parts)
    }

    async fn authenticate(
        &self,
        credentials: Credentials,
    ) -> Result<Option<Authorization>, Self::Error> {
        let key = self.shared.key_for(&credentials);
        if let Some(principal) = self.shared.lookup(&key) {
            return Ok(Some(principal));
        }
        // The miss path is boxed so that the hit path's future stays small and cheap to move.
        Box::pin(self.authenticate_miss(key, credentials)).await
    }

    /// A cache hit, answered without a future. The inner authenticator is not asked: its
    /// own shortcut would bypass the cache's single flight and permits for nothing.
    fn try_accept_now(&self, credentials: &Credentials) -> Option<Authorization> {
        self.shared.lookup(&self.shared.key_for(credentials))
    }

    fn challenges(&self) -> &[Challenge] {
        self.inner.challenges()
    }
}

impl<A: Clone> Clone for Cached<A> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<A: fmt::Debug> fmt::Debug for Cached<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the HMAC key, never the keys or values of entries.
        let settings = &self.shared.settings;
        f.debug_struct("Cached")
            .field("inner", &self.inner)
            .field("time_to_live", &settings.time_to_live)
            .field("max_entries", &settings.max_entries)
            .field(
                "max_concurrent_verifications",
                &settings.max_concurrent_verifications,
            )
            .field("entry_count", &self.shared.entry_count())
            .finish_non_exhaustive()
    }
}

/// Builds a [`Cached`] authenticator; made by [`Cached::builder`].
pub struct CachedBuilder<A> {
    inner: A,
    time_to_live: Duration,
    max_entries: u64,
    max_concurrent_verifications: Option<usize>,
}

impl<A: Authenticator> CachedBuilder<A> {
    /// How long an accepted credential stays cached, from the moment it was checked.
    /// Default [`DEFAULT_TIME_TO_LIVE`] (5 minutes); at most [`MAX_TIME_TO_LIVE`].
    ///
    /// There is no "zero means disabled": to disable caching, do not wrap the authenticator.
    #[must_use]
    pub fn with_time_to_live(mut self, time_to_live: Duration) -> Self {
        self.time_to_live = time_to_live;
        self
    }

    /// The most credentials kept at once. Default [`DEFAULT_MAX_ENTRIES`].
    #[must_use]
    pub fn with_max_entries(mut self, max_entries: u64) -> Self {
        self.max_entries = max_entries;
        self
    }

    /// How many cache misses may run the inner authenticator at once; the others wait in
    /// line (first come, first served). Default: [`std::thread::available_parallelism`]
    /// (1 if it is unknown), which keeps a flood of wrong passwords from using more than
    /// every core.
    #[must_use]
    pub fn with_max_concurrent_verifications(mut self, permits: usize) -> Self {
        self.max_concurrent_verifications = Some(permits);
        self
    }

    /// Builds the cache, drawing its random key.
    ///
    /// # Errors
    ///
    /// A [`CacheConfigError`] for a zero or too long time to live, zero entries, zero or
    /// too many permits, or an unavailable random number generator.
    pub fn build(self) -> Result<Cached<A>, CacheConfigError> {
        if self.time_to_live.is_zero() {
            return Err(CacheConfigError::ZeroTimeToLive);
        }
        if self.time_to_live > MAX_TIME_TO_LIVE {
            return Err(CacheConfigError::TimeToLiveTooLong);
        }
        if self.max_entries == 0 {
            return Err(CacheConfigError::ZeroMaxEntries);
        }
        let permits = match self.max_concurrent_verifications {
            Some(0) => return Err(CacheConfigError::ZeroConcurrentVerifications),
            Some(permits) if permits > Semaphore::MAX_PERMITS => {
                return Err(CacheConfigError::TooManyConcurrentVerifications);
            }
            Some(permits) => permits,
            None => std::thread::available_parallelism().map_or(1, NonZeroUsize::get),
        };

        // 32 random bytes, zero-padded to SHA-256's 64-byte block: exactly what HMAC does with
        // a 32-byte key (RFC 2104), through the constructor that cannot fail.
        let mut secret_key = zeroize::Zeroizing::new([0_u8; 64]);
        getrandom::fill(&mut secret_key[..32]).map_err(CacheConfigError::RandomUnavailable)?;
        let key_mac = <Hmac<Sha256> as KeyInit>::new(&(*secret_key).into());

        Ok(Cached {
            inner: self.inner,
            shared: Arc::new(Shared {
                entries: RwLock::default(),
                flights: Mutex::default(),
                key_mac,
                verifications: Arc::new(Semaphore::new(permits)),
                invalidations: AtomicU64::new(0),
                next_flight: AtomicU64::new(0),
                settings: Settings {
                    time_to_live: self.time_to_live,
                    max_entries: self.max_entries,
                    max_concurrent_verifications: permits,
                },
            }),
        })
    }
}

impl<A: fmt::Debug> fmt::Debug for CachedBuilder<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CachedBuilder")
            .field("inner", &self.inner)
            .field("time_to_live", &self.time_to_live)
            .field("max_entries", &self.max_entries)
            .field(
                "max_concurrent_verifications",
                &self.max_concurrent_verifications,
            )
            .finish()
    }
}

/// A mistake in a [`Cached`] configuration, or no randomness for its key.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CacheConfigError {
    /// The time to live is zero. (To disable caching, do not wrap the authenticator.)
    ZeroTimeToLive,
    /// The time to live is longer than [`MAX_TIME_TO_LIVE`].
    TimeToLiveTooLong,
    /// The maximum number of entries is zero.
    ZeroMaxEntries,
    /// The number of concurrent verifications is zero, so no miss could ever be checked.
    ZeroConcurrentVerifications,
    /// The number of concurrent verifications is above what a semaphore can count.
    TooManyConcurrentVerifications,
    /// The operating system's random number generator failed.
    RandomUnavailable(getrandom::Error),
}

impl fmt::Display for CacheConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ZeroTimeToLive => {
                f.pad("credential cache time to live must be greater than zero")
            }
            Self::TimeToLiveTooLong => write!(
                f,
                "credential cache time to live must be at most {} s",
                MAX_TIME_TO_LIVE.as_secs()
            ),
            Self::ZeroMaxEntries => f.pad("credential cache must hold at least one entry"),
            Self::ZeroConcurrentVerifications => {
                f.pad("credential cache must allow at least one concurrent verification")
            }
            Self::TooManyConcurrentVerifications => write!(
                f,
                "credential cache allows at most {} concurrent verifications",
                Semaphore::MAX_PERMITS
            ),
            Self::RandomUnavailable(_) => f.pad("no randomness for the credential cache key"),
        }
    }
}

impl Error for CacheConfigError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            Self::RandomUnavailable(e) => Some(e),
            _ => None,
        }
    }
}

/// A backend failure of the inner authenticator, shared by every request that waited on the
/// same check (hence the `Arc`). Displays as the inner error.
pub struct CachedError<E>(Arc<E>);

impl<E> CachedError<E> {
    /// The inner authenticator's error.
    #[must_use]
    pub fn get_ref(&self) -> &E {
        &self.0
    }
}

impl<E> Clone for CachedError<E> {
    fn clone(&self) -> Self {
        Self(Arc::clone(&self.0))
    }
}

impl<E: fmt::Debug> fmt::Debug for CachedError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("CachedError").field(&self.0).finish()
    }
}

impl<E: fmt::Display> fmt::Display for CachedError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl<E: Error> Error for CachedError<E> {
    // Transparent: `Display` is the inner error's, so its source is the inner one's.
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        self.0.source()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::credentials::Scheme;
    use secrecy::SecretString;
    use std::sync::atomic::AtomicUsize;

    #[derive(Debug)]
    struct BackendDown;

    impl fmt::Display for BackendDown {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.pad("backend down")
        }
    }

    impl Error for BackendDown {}

    fn basic(username: &str, password: &str) -> Credentials {
        Credentials::Basic {
            username: username.to_owned(),
            password: SecretString::from(password),
        }
    }

    /// Accepts any user whose password is "right", fails for user "down", and counts calls.
    #[derive(Clone, Debug, Default)]
    struct Counting {
        calls: Arc<AtomicUsize>,
    }

    impl Counting {
        fn calls(&self) -> usize {
            self.calls.load(Ordering::SeqCst)
        }
    }

    impl Authenticator for Counting {
        type Error = BackendDown;

        async fn authenticate(
            &self,
            credentials: Credentials,
        ) -> Result<Option<Authorization>, BackendDown> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            // Slow enough that concurrent callers overlap.
            tokio::time::sleep(Duration::from_millis(20)).await;
            match credentials {
                Credentials::Basic { username, .. } if username == "down" => Err(BackendDown),
                Credentials::Basic { username, password }
                    if password.expose_secret() == "right" =>
                {
                    Ok(Some(Authorization::new(username, Scheme::Basic)))
                }
                Credentials::Bearer { token } if token.expose_secret() == "tok" => {
                    Ok(Some(Authorization::new("robot", Scheme::Bearer)))
                }
                _ => Ok(None),
            }
        }
    }

    fn cached() -> (Counting, Cached<Counting>) {
        let counting = Counting::default();
        (counting.clone(), Cached::new(counting).unwrap())
    }

    async fn subject(cache: &Cached<Counting>, username: &str, password: &str) -> Option<String> {
        let principal = cache.authenticate(basic(username, password)).await.unwrap();
        principal.map(|p| p.subject().to_owned())
    }

    #[tokio::test]
    async fn a_hit_does_not_call_the_inner_authenticator() {
        let (counting, cache) = cached();
        assert_eq!(
            subject(&cache, "alice", "right").await.as_deref(),
            Some("alice")
        );
        assert_eq!(
            subject(&cache, "alice", "right").await.as_deref(),
            Some("alice")
        );
        assert_eq!(counting.calls(), 1);
    }

    #[tokio::test]
    async fn the_synchronous_shortcut_answers_only_hits() {
        let (counting, cache) = cached();
        let alice = basic("alice", "right");
        assert!(
            cache.try_accept_now(&alice).is_none(),
            "a miss answered now"
        );
        assert!(subject(&cache, "alice", "right").await.is_some());
        assert_eq!(cache.try_accept_now(&alice).unwrap().subject(), "alice");
        assert!(cache.try_accept_now(&basic("alice", "wrong")).is_none());
        cache.invalidate("alice");
        assert!(cache.try_accept_now(&alice).is_none());
        assert_eq!(counting.calls(), 1);
    }

    #[tokio::test]
    async fn entries_expire_after_the_time_to_live() {
        let counting = Counting::default();
        let cache = Cached::builder(counting.clone())
            .with_time_to_live(Duration::from_millis(50))
            .build()
            .unwrap();
        assert!(subject(&cache, "alice", "right").await.is_some());
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(subject(&cache, "alice", "right").await.is_some());
        assert_eq!(counting.calls(), 2);
    }

    #[tokio::test]
    async fn rejections_are_not_cached() {
        let (counting, cache) = cached();
        assert_eq!(subject(&cache, "alice", "wrong").await, None);
        assert_eq!(subject(&cache, "alice", "wrong").await, None);
        assert_eq!(counting.calls(), 2);
    }

    #[tokio::test]
    async fn backend_errors_are_not_cached_and_keep_their_message() {
        let (counting, cache) = cached();
        for _ in 0..2 {
            let error = cache
                .authenticate(basic("down", "right"))
                .await
                .unwrap_err();
            assert_eq!(error.to_string(), "backend down");
        }
        assert_eq!(counting.calls(), 2);
    }

    #[tokio::test]
    async fn a_cached_user_with_another_password_is_checked_again_and_rejected() {
        let (counting, cache) = cached();
        assert!(subject(&cache, "alice", "right").await.is_some());
        assert_eq!(subject(&cache, "alice", "wrong").await, None);
        assert_eq!(counting.calls(), 2);
    }

    #[test]
    fn keys_separate_users_passwords_schemes_and_boundaries() {
        let (_, cache) = cached();
        let key = |c: Credentials| cache.shared.key_for(&c);
        let header = |name: &'static str, value: &str| Credentials::Header {
            name: http::HeaderName::from_static(name),
            value: SecretString::from(value),
        };
        let bearer = |token: &str| Credentials::Bearer {
            token: SecretString::from(token),
        };
        let keys = [
            key(basic("alice", "p1")),
            key(basic("alice", "p2")),
            key(basic("bob", "p1")),
            // Same bytes overall, split differently.
            key(basic("a\0", "b")),
            key(basic("a", "\0b")),
            key(bearer("p1")),
            key(header("x-api-key", "p1")),
            key(header("x-other-key", "p1")),
        ];
        for (i, a) in keys.iter().enumerate() {
            for b in &keys[i + 1..] {
                assert_ne!(a, b);
            }
        }
        assert_eq!(key(basic("alice", "p1")), keys[0]);
    }

    #[test]
    fn separate_caches_use_separate_random_keys() {
        let (_, one) = cached();
        let (_, two) = cached();
        let credentials = basic("alice", "right");
        assert_ne!(
            one.shared.key_for(&credentials),
            two.shared.key_for(&credentials)
        );
    }

    #[tokio::test]
    async fn invalidate_drops_only_that_users_entries() {
        let (counting, cache) = cached();
        assert!(subject(&cache, "alice", "right").await.is_some());
        assert!(subject(&cache, "bob", "right").await.is_some());
        cache.invalidate("alice");
        assert!(subject(&cache, "alice", "right").await.is_some());
        assert!(subject(&cache, "bob", "right").await.is_some());
        assert_eq!(counting.calls(), 3, "alice checked twice, bob once");
    }

    #[tokio::test]
    async fn invalidate_matches_the_principal_subject_of_tokens() {
        let (counting, cache) = cached();
        let token = || Credentials::Bearer {
            token: SecretString::from("tok"),
        };
        assert!(cache.authenticate(token()).await.unwrap().is_some());
        cache.invalidate("robot");
        assert!(cache.authenticate(token()).await.unwrap().is_some());
        assert_eq!(counting.calls(), 2);
    }

    #[tokio::test]
    async fn clear_drops_everything() {
        let (counting, cache) = cached();
        assert!(subject(&cache, "alice", "right").await.is_some());
        assert!(subject(&cache, "bob", "right").await.is_some());
        cache.clear();
        assert!(subject(&cache, "alice", "right").await.is_some());
        assert!(subject(&cache, "bob", "right").await.is_some());
        assert_eq!(counting.calls(), 4);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_identical_misses_verify_once() {
        let (counting, cache) = cached();
        let tasks: Vec<_> = (0..100)
            .map(|_| {
                let cache = cache.clone();
                tokio::spawn(async move { subject(&cache, "alice", "right").await })
            })
            .collect();
        for task in tasks {
            assert_eq!(task.await.unwrap().as_deref(), Some("alice"));
        }
        assert_eq!(counting.calls(), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_identical_wrong_passwords_verify_once_and_all_fail() {
        // Coalescing holds for rejections too, yet none is cached.
        let (counting, cache) = cached();
        let gate = Arc::new(tokio::sync::Barrier::new(20));
        let tasks: Vec<_> = (0..20)
            .map(|_| {
                let (cache, gate) = (cache.clone(), Arc::clone(&gate));
                tokio::spawn(async move {
                    gate.wait().await;
                    subject(&cache, "alice", "wrong").await
                })
            })
            .collect();
        for task in tasks {
            assert_eq!(task.await.unwrap(), None);
        }
        let during = counting.calls();
        assert!((1..=20).contains(&during));
        assert_eq!(subject(&cache, "alice", "wrong").await, None);
        assert_eq!(counting.calls(), during + 1);
    }

    /// Blocks every check until released, and reports when one has started.
    #[derive(Clone)]
    struct Gated {
        started: Arc<tokio::sync::Notify>,
        release: Arc<tokio::sync::Semaphore>,
        calls: Arc<AtomicUsize>,
    }

    impl Gated {
        fn new() -> Self {
            Self {
                started: Arc::new(tokio::sync::Notify::new()),
                release: Arc::new(tokio::sync::Semaphore::new(0)),
                calls: Arc::default(),
            }
        }
    }

    impl Authenticator for Gated {
        type Error = BackendDown;

        async fn authenticate(
            &self,
            credentials: Credentials,
        ) -> Result<Option<Authorization>, BackendDown> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            let Credentials::Basic { username, .. } = credentials else {
                return Ok(None);
            };
            if username != "warm" {
                self.started.notify_one();
                let _released = self.release.acquire().await;
            }
            Ok(Some(Authorization::new(username, Scheme::Basic)))
        }
    }

    #[tokio::test]
    async fn hits_do_not_wait_for_a_busy_verification_permit() {
        let gated = Gated::new();
        let cache = Cached::builder(gated.clone())
            .with_max_concurrent_verifications(1)
            .build()
            .unwrap();
        assert!(
            cache
                .authenticate(basic("warm", "pw"))
                .await
                .unwrap()
                .is_some()
        );

        // Take the only permit with a check that does not finish until released.
        let slow = tokio::spawn({
            let cache = cache.clone();
            async move { cache.authenticate(basic("slow", "pw")).await }
        });
        gated.started.notified().await;
        assert_eq!(cache.shared.verifications.available_permits(), 0);

        // The hit is answered while the permit is held (the timeout only guards a hang).
        let hit = tokio::time::timeout(
            Duration::from_secs(30),
            cache.authenticate(basic("warm", "pw")),
        )
        .await
        .expect("a cache hit waited for the verification permit");
        assert_eq!(hit.unwrap().unwrap().subject(), "warm");

        gated.release.add_permits(1);
        assert!(slow.await.unwrap().unwrap().is_some());
    }

    #[tokio::test]
    async fn a_cancelled_request_keeps_its_permit_until_the_check_ends() {
        let gated = Gated::new();
        let cache = Cached::builder(gated.clone())
            .with_max_concurrent_verifications(1)
            .build()
            .unwrap();
        let abandoned = tokio::spawn({
            let cache = cache.clone();
            async move { cache.authenticate(basic("slow", "pw")).await }
        });
        gated.started.notified().await;
        // The client hangs up while its (slow) check is running.
        abandoned.abort();
        assert!(abandoned.await.unwrap_err().is_cancelled());
        // The check is still running, so its permit is still taken: a second client cannot
        // start another slow check alongside it.
        assert_eq!(cache.shared.verifications.available_permits(), 0);
        let next = tokio::spawn({
            let cache = cache.clone();
            async move { cache.authenticate(basic("other", "pw")).await }
        });
        tokio::task::yield_now().await;
        assert_eq!(gated.calls.load(Ordering::SeqCst), 1);

        // Once the abandoned check ends, the permit returns and the next check runs.
        gated.release.add_permits(2);
        assert!(next.await.unwrap().unwrap().is_some());
        assert_eq!(gated.calls.load(Ordering::SeqCst), 2);
        assert_eq!(cache.shared.verifications.available_permits(), 1);
    }

    #[tokio::test]
    async fn waiting_requests_take_over_when_the_leading_one_is_cancelled() {
        let gated = Gated::new();
        let cache = Cached::builder(gated.clone())
            .with_max_concurrent_verifications(1)
            .build()
            .unwrap();
        // The only permit is busy, so bob's first request waits for it, leading a flight that
        // bob's second request joins.
        let busy = tokio::spawn({
            let cache = cache.clone();
            async move { cache.authenticate(basic("busy", "pw")).await }
        });
        gated.started.notified().await;
        let spawn_bob = || {
            let cache = cache.clone();
            tokio::spawn(async move { cache.authenticate(basic("bob", "pw")).await })
        };
        let leading = spawn_bob();
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        let waiting = spawn_bob();
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        assert_eq!(cache.shared.flights.lock().unwrap().len(), 2);

        // The leading request is cancelled before its check started.
        leading.abort();
        assert!(leading.await.unwrap_err().is_cancelled());
        gated.release.add_permits(2);
        assert!(busy.await.unwrap().unwrap().is_some());
        let answer = tokio::time::timeout(Duration::from_secs(30), waiting)
            .await
            .expect("the waiting request was never answered");
        assert_eq!(answer.unwrap().unwrap().unwrap().subject(), "bob");
        assert_eq!(gated.calls.load(Ordering::SeqCst), 2, "bob checked once");
        assert!(cache.shared.flights.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_check_that_raced_with_invalidate_answers_but_is_not_kept() {
        let gated = Gated::new();
        let cache = Cached::new(gated.clone()).unwrap();
        let slow = tokio::spawn({
            let cache = cache.clone();
            async move { cache.authenticate(basic("slow", "old-password")).await }
        });
        gated.started.notified().await;
        // The password changes while the old one is being checked.
        cache.invalidate("slow");
        gated.release.add_permits(1);
        assert!(slow.await.unwrap().unwrap().is_some());

        gated.release.add_permits(1);
        assert!(
            cache
                .authenticate(basic("slow", "old-password"))
                .await
                .unwrap()
                .is_some()
        );
        assert_eq!(
            gated.calls.load(Ordering::SeqCst),
            2,
            "the raced answer was cached"
        );
    }

    #[tokio::test]
    async fn the_size_bound_evicts() {
        let counting = Counting::default();
        let cache = Cached::builder(counting)
            .with_max_entries(5)
            .build()
            .unwrap();
        for i in 0..50 {
            assert!(
                subject(&cache, &format!("user{i}"), "right")
                    .await
                    .is_some()
            );
        }
        assert!(cache.entry_count() <= 5, "{} entries", cache.entry_count());
    }

    #[tokio::test]
    async fn a_full_cache_drops_its_oldest_entry() {
        let (counting, _) = cached();
        let cache = Cached::builder(counting.clone())
            .with_max_entries(2)
            .build()
            .unwrap();
        for user in ["first", "second", "third"] {
            assert!(subject(&cache, user, "right").await.is_some());
        }
        assert_eq!(cache.entry_count(), 2);
        assert_eq!(counting.calls(), 3);
        // "second" and "third" are still cached; "first" was dropped and is checked again.
        assert!(subject(&cache, "second", "right").await.is_some());
        assert!(subject(&cache, "third", "right").await.is_some());
        assert_eq!(counting.calls(), 3);
        assert!(subject(&cache, "first", "right").await.is_some());
        assert_eq!(counting.calls(), 4);
    }

    #[tokio::test]
    async fn a_full_cache_drops_expired_entries_first() {
        let (counting, _) = cached();
        let cache = Cached::builder(counting.clone())
            .with_max_entries(3)
            .with_time_to_live(Duration::from_millis(100))
            .build()
            .unwrap();
        for user in ["a", "b", "c"] {
            assert!(subject(&cache, user, "right").await.is_some());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(subject(&cache, "d", "right").await.is_some());
        assert_eq!(cache.entry_count(), 1, "the expired entries stayed");
    }

    #[test]
    fn bad_settings_are_config_errors() {
        let build = |b: CachedBuilder<Counting>| b.build().map(drop).unwrap_err();
        let builder = || Cached::builder(Counting::default());
        assert_eq!(
            build(builder().with_time_to_live(Duration::ZERO)),
            CacheConfigError::ZeroTimeToLive
        );
        assert_eq!(
            build(builder().with_time_to_live(MAX_TIME_TO_LIVE + Duration::from_secs(1))),
            CacheConfigError::TimeToLiveTooLong
        );
        assert_eq!(
            build(builder().with_max_entries(0)),
            CacheConfigError::ZeroMaxEntries
        );
        assert_eq!(
            build(builder().with_max_concurrent_verifications(0)),
            CacheConfigError::ZeroConcurrentVerifications
        );
        assert_eq!(
            build(builder().with_max_concurrent_verifications(usize::MAX)),
            CacheConfigError::TooManyConcurrentVerifications
        );
    }

    #[test]
    fn defaults_follow_the_documentation() {
        let (_, cache) = cached();
        let settings = cache.shared.settings;
        assert_eq!(settings.time_to_live, DEFAULT_TIME_TO_LIVE);
        assert_eq!(settings.max_entries, DEFAULT_MAX_ENTRIES);
        let cores = std::thread::available_parallelism().map_or(1, NonZeroUsize::get);
        assert_eq!(settings.max_concurrent_verifications, cores);
        assert_eq!(cache.shared.verifications.available_permits(), cores);
    }

    #[tokio::test]
    async fn debug_shows_settings_but_no_secret() {
        let (_, cache) = cached();
        assert!(subject(&cache, "alice", "hunter2-secret").await.is_none());
        assert!(subject(&cache, "alice", "right").await.is_some());
        let shown = format!("{cache:?}");
        assert!(shown.contains("time_to_live: 300s"), "{shown}");
        assert!(!shown.contains("hunter2"));
        assert!(!shown.contains("right"));
        assert!(!shown.contains("key_mac"));
    }

    #[tokio::test]
    async fn extraction_and_challenges_are_the_inner_ones() {
        let inner = |_: Credentials| async { Ok::<_, BackendDown>(None) };
        let cache = Cached::new(inner).unwrap();
        assert_eq!(cache.challenges(), [Challenge::BASIC]);
        let (parts, ()) = http::Request::builder()
            .header("authorization", "Bearer abc")
            .body(())
            .unwrap()
            .into_parts();
        assert!(matches!(
            cache.credentials(&parts),
            Ok(Credentials::Bearer { .. })
        ));
    }
}
