//! [`CachedBuilder`]: the settings of a [`Cached`], checked once by [`CachedBuilder::build`].

use std::{fmt, num::NonZeroUsize, sync::Arc, time::Duration};

use tokio::sync::Semaphore;
use tower_mlflow_core::sync::SingleFlight;

use super::{Cached, CachedBuildError, Settings, Shared, entries::Entries, key::KeyMac};
use crate::authenticator::{Authenticator, RevocationListener};

/// Builds a [`Cached`] authenticator; made by [`Cached::builder`].
pub struct CachedBuilder<A> {
    inner: A,
    ttl: Duration,
    max_entries: u64,
    max_concurrent_verifications: Option<usize>,
}

impl<A: Authenticator> CachedBuilder<A> {
    pub(super) fn new(inner: A) -> Self {
        Self {
            inner,
            ttl: Cached::<A>::DEFAULT_TTL,
            max_entries: Cached::<A>::DEFAULT_MAX_ENTRIES,
            max_concurrent_verifications: None,
        }
    }

    /// How long an accepted credential stays cached, from the moment it was checked.
    /// Default [`Cached::DEFAULT_TTL`] (5 minutes); more than zero and at most
    /// [`Cached::MAX_TTL`] (one day), or [`build`](Self::build) fails.
    ///
    /// There is no "zero means disabled": to disable caching, do not wrap the authenticator.
    #[must_use]
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// The most credentials kept at once. Default [`Cached::DEFAULT_MAX_ENTRIES`].
    #[must_use]
    pub fn max_entries(mut self, max_entries: u64) -> Self {
        self.max_entries = max_entries;
        self
    }

    /// How many cache misses may run the inner authenticator at once; the others wait in
    /// line (first come, first served). Default: [`std::thread::available_parallelism`]
    /// (1 if it is unknown), which keeps a flood of wrong passwords from using more than
    /// every core.
    #[must_use]
    pub fn max_concurrent_verifications(mut self, permits: usize) -> Self {
        self.max_concurrent_verifications = Some(permits);
        self
    }

    /// Builds the cache, drawing its random key.
    ///
    /// # Errors
    ///
    /// A [`CachedBuildError`] for a zero or too long time to live, zero entries, zero or
    /// too many permits, or an unavailable random number generator.
    pub fn build(self) -> Result<Cached<A>, CachedBuildError> {
        if self.ttl.is_zero() {
            return Err(CachedBuildError::ZeroTtl);
        }
        if self.ttl > Cached::<A>::MAX_TTL {
            return Err(CachedBuildError::TtlTooLong);
        }
        if self.max_entries == 0 {
            return Err(CachedBuildError::ZeroMaxEntries);
        }
        let permits = match self.max_concurrent_verifications {
            Some(0) => return Err(CachedBuildError::ZeroConcurrentVerifications),
            Some(permits) if permits > Semaphore::MAX_PERMITS => {
                return Err(CachedBuildError::TooManyConcurrentVerifications);
            }
            Some(permits) => permits,
            None => std::thread::available_parallelism().map_or(1, NonZeroUsize::get),
        };
        let keys =
            KeyMac::random().map_err(|e| CachedBuildError::RandomUnavailable(Box::new(e)))?;
        let cached = Cached {
            inner: self.inner,
            shared: Arc::new(Shared {
                entries: Entries::new(self.ttl, self.max_entries),
                flights: SingleFlight::new(),
                keys,
                verifications: Arc::new(Semaphore::new(permits)),
                settings: Settings {
                    ttl: self.ttl,
                    max_entries: self.max_entries,
                    max_concurrent_verifications: permits,
                },
            }),
        };
        // Weak: the stores outlive no cache through their listener lists.
        let shared = Arc::downgrade(&cached.shared);
        cached
            .inner
            .subscribe_revocations(RevocationListener::new(move |revoked| {
                if let Some(shared) = shared.upgrade() {
                    shared.entries.revoke(revoked);
                }
            }));
        Ok(cached)
    }
}

impl<A: fmt::Debug> fmt::Debug for CachedBuilder<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CachedBuilder")
            .field("inner", &self.inner)
            .field("ttl", &self.ttl)
            .field("max_entries", &self.max_entries)
            .field(
                "max_concurrent_verifications",
                &self.max_concurrent_verifications,
            )
            .finish()
    }
}
