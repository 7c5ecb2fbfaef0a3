//! [`Cached`]: a verified-credential cache in front of any [`Authenticator`].
//!
//! A hit is answered here from `entries` (keyed by `key`); a miss goes through `flight`,
//! which checks each credential once for all concurrent requests; `builder` checks the
//! settings, and `error` holds what `build` and a failed check return.

mod builder;
mod entries;
mod error;
mod flight;
mod key;
#[cfg(test)]
mod tests;

use std::{fmt, sync::Arc, time::Duration};

use http::request::Parts;
use tokio::sync::Semaphore;
use tower_mlflow_core::sync::SingleFlight;

pub use self::{
    builder::CachedBuilder,
    error::{CachedBuildError, CachedError},
};
use self::{
    entries::Entries,
    flight::Outcome,
    key::{CacheKey, KeyMac},
};
use crate::{
    authenticator::{Authenticator, Challenge, RevocationListener},
    authorization::Authorization,
    credentials::{Credentials, CredentialsError, CredentialsRef},
};

/// Wraps any [`Authenticator`] with a verified-credential cache.
///
/// Clones share the cache. Credential extraction and challenges are the inner
/// authenticator's.
///
/// A password hash is slow on purpose: bcrypt, scrypt or PBKDF2 at their usual costs take
/// 50–300 ms of CPU per check. Checking one on every request, as nginx and older MLflow
/// versions do, caps a core at a few authenticated requests per second. `Cached` remembers
/// which credentials were accepted, for a bounded time, so that a returning client costs one
/// keyed hash (~30 ns) and a map lookup instead of a password hash. It mirrors MLflow's
/// own credential cache (MLflow ≥ 3.12, `auth_cache_ttl_seconds`):
///
/// - **Key**: SipHash-2-4 with its 128-bit output (a keyed PRF designed for short inputs)
///   under a random 128-bit key drawn when the cache is built, over the scheme, the
///   length-prefixed username (or header name) and the secret. The plaintext is never
///   stored, no key is ever shown outside, and the random key is useless outside this
///   process: finding another credential with a cached key takes ~2^128 requests.
/// - **Value**: the accepted [`Authorization`] principal.
/// - **Failures are never cached**: wrong credentials (`Ok(None)`) and backend errors
///   (`Err`) are checked again next time.
/// - **Bounds**: a time to live from the moment of the check (default
///   [`Cached::DEFAULT_TTL`], 5 minutes, on tokio's clock) and a maximum number of entries
///   (default [`Cached::DEFAULT_MAX_ENTRIES`]). When the cache is full, a new entry first
///   drops the expired ones, then the oldest.
/// - **Hits are cheap**: one keyed hash and a lookup under a shared read lock; no bookkeeping is
///   written on a hit, so concurrent hits on different cores do not contend.
/// - **Invalidation**: [`Cached::invalidate`] drops every entry of one user (call it after a
///   password change, an admin-flag change or a deletion); [`Cached::clear`] drops all.
/// - **Revocation**: when it is built, the cache
///   [subscribes](Authenticator::subscribe_revocations) to the inner authenticator, and
///   drops at once the entries of the users a store reports as [`Revoked`] (all entries
///   when the store cannot be read or cannot tell), whatever their time to live. A
///   verification that was running meanwhile still answers, but its answer is not kept.
///   [`Htpasswd`](crate::authenticators::Htpasswd) and
///   [`MlflowUsers`](crate::authenticators::MlflowUsers) report on every reload.
/// - **One cache for a chain**: wrap the whole chain of password stores,
///   `Cached::new(first_of(htpasswd, users))`, rather than each store (see
///   [composing a chain](crate::authenticator#composing-a-chain)). Credentials that the
///   inner authenticator does not [accept](Authenticator::accepts) (a bearer token over
///   Basic stores) are rejected at once, without a key, a permit or a check.
///
/// [`Revoked`]: crate::authenticator::Revoked
/// - **Single flight**: concurrent requests with the same credentials, while they are not
///   cached, run the inner check once and share its answer, whether accept, reject or error.
/// - **Bounded verification**: cache misses run the inner check behind a semaphore
///   ([`CachedBuilder::max_concurrent_verifications`], default: the available
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
///     .ttl(Duration::from_secs(60))
///     .max_entries(1_000)
///     .build()?;
/// let layer = AuthLayer::new(cached.clone());
///
/// // After changing alice's password:
/// cached.invalidate("alice");
/// # let _ = layer;
/// # Ok::<(), tower_mlflow_auth::authenticators::CachedBuildError>(())
/// ```
///
/// # What the cache does not do
///
/// - It does not limit the *rate* of wrong passwords: each one costs a full check, one
///   permit at a time. Put a rate limit or a concurrency limit in front of the layer to keep
///   the queue of waiting misses short.
/// - A cached credential stays valid until its entry expires, is evicted, is invalidated or
///   is revoked by its store. An inner authenticator that does not report revocations (a
///   closure, a custom store) is not asked again before then, even if the password was
///   changed elsewhere: keep the time to live short, or call [`Cached::invalidate`].
/// - The permits are shared by every miss of this cache. An inner authenticator that waits on
///   the network (a key server) holds its permit while it waits; size the permits for it, or
///   cache only the slow-hash authenticator and combine it with the others by
///   [`first_of`](crate::first_of).
pub struct Cached<A> {
    inner: A,
    shared: Arc<Shared>,
}

/// What the clones of one `Cached` share. Not generic over the authenticator, so that
/// `Cached<A>` can be named without bounds on `A` (hence the type-erased `Outcome::Failed`).
struct Shared {
    entries: Entries,
    /// Checks under way, so that concurrent identical misses share one.
    flights: SingleFlight<CacheKey, Outcome>,
    /// Keyed with the random per-cache key; turns each credential into its cache key.
    keys: KeyMac,
    /// Permits for running the inner authenticator on a miss.
    verifications: Arc<Semaphore>,
    settings: Settings,
}

#[derive(Clone, Copy, Debug)]
struct Settings {
    ttl: Duration,
    max_entries: u64,
    max_concurrent_verifications: usize,
}

impl<A> Cached<A> {
    /// The default time to live of a cached credential: 5 minutes.
    pub const DEFAULT_TTL: Duration = Duration::from_secs(300);

    /// The longest time to live accepted: one day. A verified credential should not outlive
    /// a password rotation by more than that.
    pub const MAX_TTL: Duration = Duration::from_secs(24 * 60 * 60);

    /// The default maximum number of cached credentials.
    pub const DEFAULT_MAX_ENTRIES: u64 = 10_000;
}

impl<A: Authenticator> Cached<A> {
    /// Wraps `inner` with the default settings; the same as `Cached::builder(inner).build()`.
    ///
    /// # Errors
    ///
    /// [`CachedBuildError::RandomUnavailable`] when the operating system cannot provide the
    /// random key.
    pub fn new(inner: A) -> Result<Self, CachedBuildError> {
        Self::builder(inner).build()
    }

    /// A builder for a cache around `inner`.
    #[must_use]
    pub fn builder(inner: A) -> CachedBuilder<A> {
        CachedBuilder::new(inner)
    }

    /// Drops every cached credential of `username`: entries presented with that Basic
    /// username, and entries whose principal has that subject (which covers tokens).
    ///
    /// Call it when the user's password, admin flag or existence changes. A check that is
    /// running while this is called still answers the requests waiting on it, but its answer
    /// is not kept.
    pub fn invalidate(&self, username: &str) {
        self.shared.entries.invalidate(username);
    }

    /// Drops every cached credential.
    pub fn clear(&self) {
        self.shared.entries.clear();
    }

    /// The number of cached credentials, counting expired ones that were not dropped yet
    /// (they go when the cache is full and a new entry needs room).
    #[must_use]
    pub fn entry_count(&self) -> u64 {
        self.shared.entries.len()
    }

    /// The wrapped authenticator.
    #[must_use]
    pub fn get_ref(&self) -> &A {
        &self.inner
    }
}

impl<A: Authenticator> Authenticator for Cached<A> {
    type Error = CachedError<A::Error>;

    fn credentials<'a>(&self, parts: &'a Parts) -> Result<CredentialsRef<'a>, CredentialsError> {
        self.inner.credentials(parts)
    }

    async fn authenticate(
        &self,
        credentials: Credentials,
    ) -> Result<Option<Authorization>, Self::Error> {
        let key = {
            let found = credentials.borrowed();
            if !self.inner.accepts(&found) {
                return Ok(None);
            }
            self.shared.keys.key_for(&found)
        };
        if let Some(principal) = self.shared.entries.lookup(&key) {
            return Ok(Some(principal));
        }
        // The miss path is boxed so that the hit path's future stays small and cheap to move.
        Box::pin(self.authenticate_miss(key, credentials)).await
    }

    /// A cache hit, answered without a future. The inner authenticator is not asked: its
    /// own shortcut would bypass the cache's single flight and permits for nothing.
    fn try_accept_now(&self, credentials: &CredentialsRef<'_>) -> Option<Authorization> {
        if !self.inner.accepts(credentials) {
            return None;
        }
        self.shared
            .entries
            .lookup(&self.shared.keys.key_for(credentials))
    }

    fn accepts(&self, credentials: &CredentialsRef<'_>) -> bool {
        self.inner.accepts(credentials)
    }

    /// Passes `listener` to the inner authenticator: a cache over this one hears the stores
    /// directly.
    fn subscribe_revocations(&self, listener: RevocationListener) {
        self.inner.subscribe_revocations(listener);
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
        // Never the hashing key, never the keys or values of entries.
        let settings = &self.shared.settings;
        f.debug_struct("Cached")
            .field("inner", &self.inner)
            .field("ttl", &settings.ttl)
            .field("max_entries", &settings.max_entries)
            .field(
                "max_concurrent_verifications",
                &settings.max_concurrent_verifications,
            )
            .field("entry_count", &self.shared.entries.len())
            .finish_non_exhaustive()
    }
}
