//! What [`CachedBuilder::build`](super::CachedBuilder::build) rejects, and the inner
//! authenticator's error as `Cached` hands it out.

use std::{error::Error, fmt, sync::Arc};

use tokio::sync::Semaphore;
use tower_mlflow_core::BoxError;

use super::Cached;

/// A setting of a [`Cached`] that [`build`](super::CachedBuilder::build) rejects, or no
/// randomness for its key.
#[derive(Debug)]
#[non_exhaustive]
pub enum CachedBuildError {
    /// The time to live is zero. (To disable caching, do not wrap the authenticator.)
    ZeroTtl,
    /// The time to live is longer than [`Cached::MAX_TTL`].
    TtlTooLong,
    /// The maximum number of entries is zero.
    ZeroMaxEntries,
    /// The number of concurrent verifications is zero, so no miss could ever be checked.
    ZeroConcurrentVerifications,
    /// The number of concurrent verifications is above what a semaphore can count.
    TooManyConcurrentVerifications,
    /// The operating system's random number generator failed; its error is the
    /// [`source`](Error::source).
    RandomUnavailable(BoxError),
}

impl fmt::Display for CachedBuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ZeroTtl => f.pad("credential cache ttl must be greater than zero"),
            Self::TtlTooLong => write!(
                f,
                "credential cache ttl must be at most {} s",
                Cached::<()>::MAX_TTL.as_secs()
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

impl Error for CachedBuildError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            Self::RandomUnavailable(e) => Some(&**e),
            _ => None,
        }
    }
}

/// A backend failure of the inner authenticator, shared by every request that waited on the
/// same check (hence the `Arc`). Displays as the inner error.
pub struct CachedError<E>(pub(super) Arc<E>);

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
    use std::{error::Error, fmt};

    use super::{CachedBuildError, CachedError};

    #[derive(Debug)]
    struct Os;

    impl fmt::Display for Os {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.pad("os error 38")
        }
    }

    impl Error for Os {}

    #[test]
    fn the_random_error_is_the_source_not_the_message() {
        let error = CachedBuildError::RandomUnavailable(Box::new(Os));
        assert_eq!(
            error.to_string(),
            "no randomness for the credential cache key"
        );
        assert_eq!(
            error.source().map(ToString::to_string).as_deref(),
            Some("os error 38")
        );
    }

    #[test]
    fn the_ttl_limit_is_named_in_seconds() {
        assert_eq!(
            CachedBuildError::TtlTooLong.to_string(),
            "credential cache ttl must be at most 86400 s"
        );
        assert!(CachedBuildError::ZeroTtl.source().is_none());
    }

    #[test]
    fn a_shared_error_displays_and_chains_as_the_inner_one() {
        #[derive(Debug)]
        struct Wrapper(Os);
        impl fmt::Display for Wrapper {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.pad("backend down")
            }
        }
        impl Error for Wrapper {
            fn source(&self) -> Option<&(dyn Error + 'static)> {
                Some(&self.0)
            }
        }
        let error = CachedError(std::sync::Arc::new(Wrapper(Os)));
        let clone = error.clone();
        assert!(
            std::sync::Arc::ptr_eq(&error.0, &clone.0),
            "clones share the error"
        );
        assert_eq!(clone.to_string(), "backend down");
        assert_eq!(
            clone.source().map(ToString::to_string).as_deref(),
            Some("os error 38")
        );
        assert_eq!(clone.get_ref().0.to_string(), "os error 38");
    }
}
