use std::{fmt, time::Duration};

use super::{CachedSecret, CachedSecretBuildError, retry::random_seed, state::Shared};
use crate::source::DynSource;

/// Settings for a [`CachedSecret`]; [`build`](Self::build) rejects out-of-range values.
pub struct CachedSecretBuilder {
    source: Box<dyn DynSource>,
    settings: Settings,
    seed: Option<u64>,
}

/// What the builder collected; checked by [`Settings::validate`].
#[derive(Clone, Debug)]
pub(super) struct Settings {
    pub(super) ttl: Duration,
    pub(super) refresh_ahead: Duration,
    pub(super) max_stale: Duration,
    pub(super) max_attempts: u32,
    pub(super) retry_base: Duration,
    pub(super) retry_cap: Duration,
    pub(super) timeout: Duration,
    pub(super) failure_backoff_base: Duration,
    pub(super) failure_backoff_cap: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            ttl: CachedSecret::DEFAULT_TTL,
            refresh_ahead: CachedSecret::DEFAULT_REFRESH_AHEAD,
            max_stale: CachedSecret::DEFAULT_MAX_STALE,
            max_attempts: CachedSecret::DEFAULT_MAX_ATTEMPTS,
            retry_base: CachedSecret::DEFAULT_RETRY_BASE,
            retry_cap: CachedSecret::DEFAULT_RETRY_CAP,
            timeout: CachedSecret::DEFAULT_TIMEOUT,
            failure_backoff_base: CachedSecret::DEFAULT_FAILURE_BACKOFF_BASE,
            failure_backoff_cap: CachedSecret::DEFAULT_FAILURE_BACKOFF_CAP,
        }
    }
}

impl Settings {
    fn validate(&self) -> Result<(), CachedSecretBuildError> {
        use CachedSecretBuildError as E;
        if self.ttl.is_zero() || self.ttl > CachedSecret::MAX_TTL {
            return Err(E::TtlOutOfRange(self.ttl));
        }
        if self.max_stale > CachedSecret::MAX_TTL {
            return Err(E::MaxStaleTooLong(self.max_stale));
        }
        if self.max_attempts == 0 || self.max_attempts > CachedSecret::MAX_ATTEMPTS_LIMIT {
            return Err(E::MaxAttemptsOutOfRange(self.max_attempts));
        }
        if self.retry_cap < self.retry_base {
            return Err(E::RetryCapBelowBase {
                base: self.retry_base,
                cap: self.retry_cap,
            });
        }
        if self.timeout < CachedSecret::MIN_TIMEOUT {
            return Err(E::TimeoutTooShort(self.timeout));
        }
        if self.failure_backoff_cap < self.failure_backoff_base {
            return Err(E::FailureBackoffCapBelowBase {
                base: self.failure_backoff_base,
                cap: self.failure_backoff_cap,
            });
        }
        Ok(())
    }
}

impl CachedSecretBuilder {
    pub(super) fn new(source: Box<dyn DynSource>) -> Self {
        Self {
            source,
            settings: Settings::default(),
            seed: None,
        }
    }

    /// How long a fetched secret is used before it is refetched (default
    /// [`CachedSecret::DEFAULT_TTL`]; more than zero and at most [`CachedSecret::MAX_TTL`]).
    /// A shorter expiry from the source wins.
    #[must_use]
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.settings.ttl = ttl;
        self
    }

    /// How long before expiry a background refresh starts (default
    /// [`CachedSecret::DEFAULT_REFRESH_AHEAD`]). At most half of each secret's lifetime is
    /// used, so a secret is always served for a while before it is refreshed.
    #[must_use]
    pub fn refresh_ahead(mut self, lead: Duration) -> Self {
        self.settings.refresh_ahead = lead;
        self
    }

    /// How long past its TTL an expired secret may still be served while the source is
    /// failing (default [`CachedSecret::DEFAULT_MAX_STALE`], at most
    /// [`CachedSecret::MAX_TTL`]; `Duration::ZERO` disables stale-if-error). Never past an
    /// expiry given by the source.
    #[must_use]
    pub fn max_stale(mut self, max_stale: Duration) -> Self {
        self.settings.max_stale = max_stale;
        self
    }

    /// Attempts per fetch for transient errors (default
    /// [`CachedSecret::DEFAULT_MAX_ATTEMPTS`]; at least 1, at most
    /// [`CachedSecret::MAX_ATTEMPTS_LIMIT`]).
    #[must_use]
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.settings.max_attempts = attempts;
        self
    }

    /// Full-jitter exponential backoff between attempts: attempt `n` (from 1) waits a
    /// random time in `0 ..= min(cap, base * 2^(n-1))` (default
    /// [`CachedSecret::DEFAULT_RETRY_BASE`], cap [`CachedSecret::DEFAULT_RETRY_CAP`]);
    /// `cap` must not be below `base`.
    #[must_use]
    pub fn retry_backoff(mut self, base: Duration, cap: Duration) -> Self {
        self.settings.retry_base = base;
        self.settings.retry_cap = cap;
        self
    }

    /// Overall timeout of one fetch, retries included: the fetch fails at this deadline
    /// (default
    /// [`CachedSecret::DEFAULT_TIMEOUT`], at least [`CachedSecret::MIN_TIMEOUT`]).
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.settings.timeout = timeout;
        self
    }

    /// Backoff after a failed fetch before the next one may start: after `n` consecutive
    /// failures, `min(cap, base * 2^(n-1))`, of which the second half is jittered (default
    /// [`CachedSecret::DEFAULT_FAILURE_BACKOFF_BASE`], cap
    /// [`CachedSecret::DEFAULT_FAILURE_BACKOFF_CAP`]); `cap` must not be below `base`.
    #[must_use]
    pub fn failure_backoff(mut self, base: Duration, cap: Duration) -> Self {
        self.settings.failure_backoff_base = base;
        self.settings.failure_backoff_cap = cap;
        self
    }

    /// Seeds the jitter PRNG, for reproducible tests (default: a random seed).
    #[must_use]
    pub fn jitter_seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Checks the settings and builds the cache. Nothing is fetched until the first
    /// [`get`](CachedSecret::get).
    ///
    /// # Errors
    ///
    /// A [`CachedSecretBuildError`] naming the first setting out of its range.
    pub fn build(self) -> Result<CachedSecret, CachedSecretBuildError> {
        self.settings.validate()?;
        Ok(self.build_unchecked())
    }

    /// Builds without checking: only for settings known to be valid (the defaults).
    pub(super) fn build_unchecked(self) -> CachedSecret {
        let seed = self.seed.unwrap_or_else(random_seed);
        CachedSecret::from_parts(Shared::new(self.source, self.settings, seed))
    }
}

impl fmt::Debug for CachedSecretBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CachedSecretBuilder")
            .field("config", &self.settings)
            .finish_non_exhaustive()
    }
}
