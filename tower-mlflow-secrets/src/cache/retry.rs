//! Retries within one fetch and the backoff between failed fetches.

use std::{
    sync::{Mutex, PoisonError},
    time::Duration,
};

use tokio::time::Instant;

use super::builder::Settings;
use crate::source::{DynSource, Fetched, SourceError};

/// Fetches from `source`, retrying transient errors with full-jitter backoff until
/// `max_attempts` or the overall timeout.
pub(super) async fn fetch_with_retries(
    source: &dyn DynSource,
    settings: &Settings,
    jitter: &SharedJitter,
) -> Result<Fetched, SourceError> {
    let deadline = Instant::now() + settings.timeout;
    let mut attempt: u32 = 0;
    loop {
        attempt += 1;
        let error = match tokio::time::timeout_at(deadline, source.fetch_boxed()).await {
            Ok(Ok(fetched)) => return Ok(fetched),
            Ok(Err(err)) => err,
            Err(_) => {
                return Err(SourceError::transient(format!(
                    "secret fetch deadline of {:?} exceeded after {attempt} attempt(s)",
                    settings.timeout
                )));
            }
        };
        if !error.is_transient() || attempt >= settings.max_attempts {
            return Err(error);
        }
        let ceiling = exponential(settings.retry_base, settings.retry_cap, attempt);
        let delay = jitter.full(ceiling);
        if Instant::now() + delay >= deadline {
            return Err(error);
        }
        tracing::debug!(
            error = %error,
            attempt,
            delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
            "transient secret fetch error; retrying"
        );
        tokio::time::sleep(delay).await;
    }
}

/// How long no fetch may start after `failures` consecutive failed fetches: the ceiling
/// is exponential, its second half jittered so that many clients do not retry in step.
pub(super) fn failure_backoff(
    settings: &Settings,
    jitter: &SharedJitter,
    failures: u32,
) -> Duration {
    let ceiling = exponential(
        settings.failure_backoff_base,
        settings.failure_backoff_cap,
        failures,
    );
    let half = ceiling / 2;
    half + jitter.full(ceiling - half)
}

/// `min(cap, base * 2^(n-1))` for `n >= 1`, without overflow.
pub(super) fn exponential(base: Duration, cap: Duration, n: u32) -> Duration {
    let factor = 1u32
        .checked_shl(n.saturating_sub(1).min(31))
        .unwrap_or(u32::MAX);
    base.checked_mul(factor).map_or(cap, |d| d.min(cap))
}

/// One [`Jitter`] for the retries and the failure backoff of a cache, so that a seed
/// reproduces the whole sequence.
#[derive(Debug)]
pub(super) struct SharedJitter(Mutex<Jitter>);

impl SharedJitter {
    pub(super) fn new(seed: u64) -> Self {
        Self(Mutex::new(Jitter::new(seed)))
    }

    fn full(&self, max: Duration) -> Duration {
        // The PRNG state is valid whatever panicked while it was held.
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .full(max)
    }
}

/// SplitMix64: tiny, seedable and good enough for jitter (not for cryptography).
#[derive(Debug, Clone)]
pub(super) struct Jitter {
    state: u64,
}

impl Jitter {
    pub(super) fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A uniformly random duration in `0 ..= max`, in whole milliseconds (tokio's timer
    /// resolution, so the sleep is exactly the drawn value).
    pub(super) fn full(&mut self, max: Duration) -> Duration {
        let max_millis = u64::try_from(max.as_millis()).unwrap_or(u64::MAX);
        match max_millis.checked_add(1) {
            Some(span) => Duration::from_millis(self.next_u64() % span),
            None => Duration::from_millis(self.next_u64()),
        }
    }
}

pub(super) fn random_seed() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    // RandomState is seeded from the OS once per process and varied per instance.
    RandomState::new().hash_one(std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exponential_is_capped_and_does_not_overflow() {
        let base = Duration::from_millis(100);
        let cap = Duration::from_secs(2);
        assert_eq!(exponential(base, cap, 1), base);
        assert_eq!(exponential(base, cap, 2), base * 2);
        assert_eq!(exponential(base, cap, 6), cap);
        assert_eq!(exponential(base, cap, u32::MAX), cap);
    }

    #[test]
    fn jitter_is_bounded_and_reproducible() {
        let mut a = Jitter::new(1);
        let mut b = Jitter::new(1);
        for _ in 0..1000 {
            let x = a.full(Duration::from_millis(10));
            assert!(x <= Duration::from_millis(10));
            assert_eq!(x, b.full(Duration::from_millis(10)));
        }
        assert_eq!(a.full(Duration::ZERO), Duration::ZERO);
    }

    #[test]
    fn failure_backoff_is_between_half_and_all_of_the_ceiling() {
        let settings = Settings {
            failure_backoff_base: Duration::from_secs(10),
            failure_backoff_cap: Duration::from_secs(60),
            ..Settings::default()
        };
        let jitter = SharedJitter::new(3);
        for (failures, ceiling) in [(1, 10), (2, 20), (3, 40), (4, 60), (30, 60)] {
            let ceiling = Duration::from_secs(ceiling);
            for _ in 0..100 {
                let backoff = failure_backoff(&settings, &jitter, failures);
                assert!(backoff >= ceiling / 2 && backoff <= ceiling, "{backoff:?}");
            }
        }
    }
}
