use std::{fmt, sync::Arc, time::Duration};

use super::CachedSecret;
use crate::source::SourceError;

/// No usable secret: the source failed (or is in backoff after failing) and nothing fresh
/// or stale-but-allowed is cached.
#[derive(Clone, Debug)]
pub struct Unavailable {
    cause: Option<Arc<SourceError>>,
    backing_off: bool,
}

impl Unavailable {
    pub(super) fn new(cause: Option<Arc<SourceError>>, backing_off: bool) -> Self {
        Self { cause, backing_off }
    }

    /// Whether the cache refused to fetch because it is backing off after a failure.
    pub fn is_backing_off(&self) -> bool {
        self.backing_off
    }
}

impl fmt::Display for Unavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("no usable secret")?;
        if self.backing_off {
            f.write_str(" (backing off after a failed fetch)")?;
        }
        match &self.cause {
            Some(cause) => write!(f, ": {cause}"),
            None => Ok(()),
        }
    }
}

impl std::error::Error for Unavailable {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.cause
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

/// A setting that [`CachedSecretBuilder::build`](super::CachedSecretBuilder::build) rejects.
/// The message names the setting and the value given (durations and counts, never a
/// secret).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CachedSecretBuildError {
    /// The TTL is zero or longer than [`CachedSecret::MAX_TTL`].
    TtlOutOfRange(Duration),
    /// `max_stale` is longer than [`CachedSecret::MAX_TTL`].
    MaxStaleTooLong(Duration),
    /// `max_attempts` is zero or above [`CachedSecret::MAX_ATTEMPTS_LIMIT`].
    MaxAttemptsOutOfRange(u32),
    /// The cap of `retry_backoff` is below its base.
    RetryCapBelowBase {
        /// The base given.
        base: Duration,
        /// The cap given.
        cap: Duration,
    },
    /// The timeout is shorter than [`CachedSecret::MIN_TIMEOUT`].
    TimeoutTooShort(Duration),
    /// The cap of `failure_backoff` is below its base.
    FailureBackoffCapBelowBase {
        /// The base given.
        base: Duration,
        /// The cap given.
        cap: Duration,
    },
}

impl fmt::Display for CachedSecretBuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let max_ttl = CachedSecret::MAX_TTL.as_secs();
        match self {
            Self::TtlOutOfRange(ttl) => write!(
                f,
                "secret cache ttl of {ttl:?} is out of range: it must be more than zero and at most {max_ttl} s"
            ),
            Self::MaxStaleTooLong(max_stale) => write!(
                f,
                "secret cache max_stale of {max_stale:?} is too long: it must be at most {max_ttl} s"
            ),
            Self::MaxAttemptsOutOfRange(attempts) => write!(
                f,
                "secret cache max_attempts of {attempts} is out of range: it must be 1 to {}",
                CachedSecret::MAX_ATTEMPTS_LIMIT
            ),
            Self::RetryCapBelowBase { base, cap } => write!(
                f,
                "secret cache retry_backoff cap of {cap:?} is below its base of {base:?}"
            ),
            Self::TimeoutTooShort(timeout) => write!(
                f,
                "secret cache timeout of {timeout:?} is too short: it must be at least {:?}",
                CachedSecret::MIN_TIMEOUT
            ),
            Self::FailureBackoffCapBelowBase { base, cap } => write!(
                f,
                "secret cache failure_backoff cap of {cap:?} is below its base of {base:?}"
            ),
        }
    }
}

impl std::error::Error for CachedSecretBuildError {}
