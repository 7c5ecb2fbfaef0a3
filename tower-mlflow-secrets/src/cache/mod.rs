//! [`CachedSecret`]: one secret, fetched once and shared.
//!
//! - **TTL**: [`CachedSecret::DEFAULT_TTL`] (300 s) unless set; `0 < ttl <=`
//!   [`CachedSecret::MAX_TTL`] (24 h), anything else is a [`CachedSecretBuildError`]. A
//!   source-provided expiry ([`Fetched::with_expires_in`](crate::source::Fetched::with_expires_in))
//!   is used when it is shorter.
//! - **Single flight**: however many callers miss at once, the source is fetched once; the
//!   fetch runs in its own task, so a caller that gives up does not cancel it for the others.
//! - **Refresh ahead**: from `refresh_ahead` before expiry (default 30 s, at most half the
//!   lifetime) the first caller starts a background refresh and every caller keeps getting
//!   the current secret without waiting.
//! - **Stale if error**: when a refresh fails, the expired secret is still served for up to
//!   `max_stale` (default 300 s) past its TTL, but never past an expiry the source gave.
//! - **Retries**: only [transient](crate::source::SourceError::is_transient) errors, with
//!   full-jitter exponential backoff, bounded by `max_attempts` and an overall `timeout`.
//! - **Backoff after failure**: after a failed fetch no new fetch starts until a backoff
//!   (exponential in consecutive failures, 1 s to 60 s by default, half of it jittered) has
//!   passed; meanwhile callers get the stale secret or, with none, fail at once.
//! - **Fail closed**: with nothing usable, [`get`](CachedSecret::get) returns
//!   [`Unavailable`]; the layer turns that into
//!   [`SecretHeaderError::Unavailable`](crate::SecretHeaderError::Unavailable).
//!
//! Time is tokio's clock (`tokio::time::Instant`), so tests can run with paused time
//! (`#[tokio::test(start_paused = true)]`); the jitter comes from a small PRNG that can be
//! seeded with [`CachedSecretBuilder::jitter_seed`]. Fetches are spawned on the current tokio
//! runtime.
//!
//! Design: the current value is a `Reloading` snapshot (from `tower-mlflow-core`, an
//! `ArcSwapOption` inside), so the hot path is one atomic load and a clock read, with no
//! lock. `Reloading` also runs one fetch at a time and shares its outcome with every
//! waiter; each waiter waits in a task of its own, so the task leading the fetch is never a
//! caller's future that can be dropped. `moka` was not used: it caches many keys and has no
//! stale-if-error, refresh-ahead or failure backoff, which are the point here.
//!
//! ```
//! use std::time::Duration;
//! use secrecy::ExposeSecret;
//! use tower_mlflow_secrets::{CachedSecret, source::Static};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let secret = CachedSecret::builder(Static::new("tok"))
//!     .ttl(Duration::from_secs(600))
//!     .build()
//!     .unwrap();
//! let current = secret.get().await.unwrap();
//! assert_eq!(current.secret().expose_secret(), "tok");
//! # }
//! ```

mod builder;
mod error;
mod retry;
mod state;
#[cfg(test)]
mod tests;

use std::{fmt, sync::Arc, time::Duration};

use secrecy::SecretString;
use tokio::time::Instant;
use tower_mlflow_core::sync::Snapshot;

pub use self::{
    builder::CachedSecretBuilder,
    error::{CachedSecretBuildError, Unavailable},
};
use self::{
    builder::Settings,
    state::{Entry, Shared, Want},
};
use crate::source::SecretSource;

/// A shared, self-refreshing secret. Cheap to clone (all clones share one cache).
#[derive(Clone)]
pub struct CachedSecret {
    shared: Arc<Shared>,
}

/// One version of the cached secret, as handed to callers. Cheap to clone; `Debug` never
/// shows the secret.
#[derive(Clone)]
pub struct SecretSnapshot {
    snapshot: Arc<Snapshot<Entry>>,
}

impl SecretSnapshot {
    /// The secret.
    pub fn secret(&self) -> &SecretString {
        &self.entry().secret
    }

    /// A number that grows by one with every successful fetch; equal numbers mean the same
    /// fetched value.
    pub fn generation(&self) -> u64 {
        self.entry().generation
    }

    /// Whether this version has passed its TTL (it is being served under stale-if-error).
    pub fn is_stale(&self) -> bool {
        Instant::now() >= self.entry().expires_at
    }

    fn entry(&self) -> &Entry {
        self.snapshot.value()
    }
}

impl fmt::Debug for SecretSnapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretSnapshot")
            .field("secret", &"[REDACTED]")
            .field("generation", &self.generation())
            .finish()
    }
}

impl CachedSecret {
    /// The TTL unless [`CachedSecretBuilder::ttl`] sets another.
    pub const DEFAULT_TTL: Duration = Duration::from_secs(300);
    /// The longest TTL (and the longest `max_stale`) the builder accepts.
    pub const MAX_TTL: Duration = Duration::from_secs(24 * 60 * 60);
    /// How long before expiry a background refresh starts, unless set.
    pub const DEFAULT_REFRESH_AHEAD: Duration = Duration::from_secs(30);
    /// How long past its TTL an expired secret may be served while the source fails,
    /// unless set.
    pub const DEFAULT_MAX_STALE: Duration = Duration::from_secs(300);
    /// Attempts per fetch for transient errors, unless set.
    pub const DEFAULT_MAX_ATTEMPTS: u32 = 3;
    /// The most attempts per fetch the builder accepts.
    pub const MAX_ATTEMPTS_LIMIT: u32 = 10;
    /// The base of the backoff between attempts, unless set.
    pub const DEFAULT_RETRY_BASE: Duration = Duration::from_millis(100);
    /// The cap of the backoff between attempts, unless set.
    pub const DEFAULT_RETRY_CAP: Duration = Duration::from_secs(2);
    /// The overall timeout of one fetch, retries included, unless set.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
    /// The shortest timeout the builder accepts (tokio's timer resolution).
    pub const MIN_TIMEOUT: Duration = Duration::from_millis(1);
    /// The base of the backoff after failed fetches, unless set.
    pub const DEFAULT_FAILURE_BACKOFF_BASE: Duration = Duration::from_secs(1);
    /// The cap of the backoff after failed fetches, unless set.
    pub const DEFAULT_FAILURE_BACKOFF_CAP: Duration = Duration::from_secs(60);
    /// A source expiry shorter than this counts as this long (or as the TTL, when that is
    /// shorter still), so a source handing out nearly expired secrets is not fetched in a
    /// loop.
    pub const MIN_LIFETIME: Duration = Duration::from_secs(1);

    /// A cache over `source` with the default settings (which are always valid, so unlike
    /// [`CachedSecretBuilder::build`] this cannot fail).
    pub fn new(source: impl SecretSource) -> Self {
        Self::builder(source).build_unchecked()
    }

    /// A builder over `source`.
    pub fn builder(source: impl SecretSource) -> CachedSecretBuilder {
        CachedSecretBuilder::new(Box::new(source))
    }

    fn from_parts(shared: Shared) -> Self {
        Self {
            shared: Arc::new(shared),
        }
    }

    /// The current secret if it is fresh, without waiting. Starts a background refresh when
    /// the secret is within its refresh-ahead window. `None` means [`get`](Self::get) has to
    /// wait (or fail).
    pub fn try_get(&self) -> Option<SecretSnapshot> {
        let current = self.shared.reloading.peek();
        let snapshot = current.as_ref()?;
        let entry = snapshot.value();
        let now = Instant::now();
        if now >= entry.expires_at {
            return None;
        }
        if now >= entry.refresh_at {
            self.shared.refresh_in_background(now);
        }
        Some(SecretSnapshot {
            snapshot: Arc::clone(snapshot),
        })
    }

    /// The current secret: fresh from the cache, fetched (once, for all concurrent callers),
    /// or stale within the configured bound when fetching fails.
    pub async fn get(&self) -> Result<SecretSnapshot, Unavailable> {
        if let Some(snapshot) = self.try_get() {
            return Ok(snapshot);
        }
        self.shared.wait_in_task(Want::Fresh).await
    }

    /// Replaces `rejected` (a version the server refused) with a freshly fetched one.
    ///
    /// If the cache already holds a newer version, that is returned without fetching; if a
    /// fetch is under way, it is joined. Fails without fetching while the cache is backing
    /// off after a failure. The stale version is never returned.
    pub async fn refresh_after_rejection(
        &self,
        rejected: &SecretSnapshot,
    ) -> Result<SecretSnapshot, Unavailable> {
        self.shared
            .wait_in_task(Want::Replace(rejected.generation()))
            .await
    }

    fn settings(&self) -> &Settings {
        &self.shared.settings
    }
}

impl fmt::Debug for CachedSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let generation = self
            .shared
            .reloading
            .peek()
            .as_ref()
            .map(|snapshot| snapshot.value().generation);
        f.debug_struct("CachedSecret")
            .field("config", self.settings())
            .field("generation", &generation)
            .finish_non_exhaustive()
    }
}
