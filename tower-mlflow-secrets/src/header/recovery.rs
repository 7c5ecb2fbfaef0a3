//! How often a `401` may force the secret to be fetched again.
//!
//! Rotations are rarely atomic: the server may refuse the old secret a moment before the
//! store holds the new one, so the forced fetch returns the secret that was just refused.
//! Waiting the full `min_interval` before the next forced fetch would then keep every
//! request failing long after the store caught up. So after a forced fetch that returned
//! an unchanged secret, the next one may start after
//! [`UNCHANGED_SECRET_RETRY`](super::SecretHeaderLayer::UNCHANGED_SECRET_RETRY) instead,
//! for [`UNCHANGED_SECRET_WINDOW`](super::SecretHeaderLayer::UNCHANGED_SECRET_WINDOW)
//! after the first such fetch; past that window a secret that is simply wrong is fetched
//! again only once per `min_interval`, so the store is not polled for ever.

use std::{
    sync::{Mutex, MutexGuard, PoisonError},
    time::Duration,
};

use secrecy::ExposeSecret as _;
use subtle::ConstantTimeEq as _;
use tokio::time::Instant;

use crate::cache::SecretSnapshot;

/// The throttle of forced fetches after a `401`.
pub(crate) struct Recovery {
    pub(crate) min_interval: Duration,
    unchanged_retry: Duration,
    unchanged_window: Duration,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    last_forced: Option<Instant>,
    /// When the first of the forced fetches in a row that returned an unchanged secret
    /// ended; `None` after one that brought a new secret.
    unchanged_since: Option<Instant>,
}

impl Recovery {
    pub(crate) fn new(
        min_interval: Duration,
        unchanged_retry: Duration,
        unchanged_window: Duration,
    ) -> Self {
        Self {
            min_interval,
            // Never slower than the caller's own throttle.
            unchanged_retry: unchanged_retry.min(min_interval),
            unchanged_window,
            state: Mutex::new(State::default()),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Two instants, each valid on its own: nothing a panic could leave inconsistent.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Claims the right to force a fetch now; false if the last one is too recent.
    pub(crate) fn try_claim(&self) -> bool {
        let now = Instant::now();
        let mut state = self.state();
        let interval = match state.unchanged_since {
            Some(since) if now.duration_since(since) < self.unchanged_window => {
                self.unchanged_retry
            }
            _ => self.min_interval,
        };
        match state.last_forced {
            Some(at) if now.duration_since(at) < interval => false,
            _ => {
                state.last_forced = Some(now);
                true
            }
        }
    }

    /// Records what a forced fetch brought: `unchanged` when it is the refused secret.
    pub(crate) fn record(&self, unchanged: bool) {
        let mut state = self.state();
        state.unchanged_since = match (unchanged, state.unchanged_since) {
            (false, _) => None,
            (true, Some(since)) => Some(since),
            (true, None) => Some(Instant::now()),
        };
    }
}

/// Whether two snapshots hold the same secret, compared in constant time (a refetch bumps
/// the generation even when the value is unchanged).
pub(crate) fn same_secret(a: &SecretSnapshot, b: &SecretSnapshot) -> bool {
    let (a, b) = (a.secret().expose_secret(), b.secret().expose_secret());
    bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    fn recovery() -> Recovery {
        Recovery::new(30 * SECOND, SECOND, 120 * SECOND)
    }

    #[tokio::test(start_paused = true)]
    async fn a_new_secret_keeps_the_full_interval() {
        let recovery = recovery();
        assert!(recovery.try_claim());
        recovery.record(false);
        tokio::time::advance(29 * SECOND).await;
        assert!(!recovery.try_claim());
        tokio::time::advance(SECOND).await;
        assert!(recovery.try_claim());
    }

    #[tokio::test(start_paused = true)]
    async fn an_unchanged_secret_may_be_fetched_again_a_second_later() {
        let recovery = recovery();
        assert!(recovery.try_claim());
        recovery.record(true);
        tokio::time::advance(SECOND / 2).await;
        assert!(!recovery.try_claim());
        tokio::time::advance(SECOND / 2).await;
        assert!(recovery.try_claim());
    }

    #[tokio::test(start_paused = true)]
    async fn past_the_window_an_unchanged_secret_waits_the_full_interval() {
        let recovery = recovery();
        assert!(recovery.try_claim());
        recovery.record(true);
        tokio::time::advance(120 * SECOND).await;
        assert!(recovery.try_claim());
        recovery.record(true);
        tokio::time::advance(SECOND).await;
        assert!(!recovery.try_claim(), "the window is over");
        tokio::time::advance(29 * SECOND).await;
        assert!(recovery.try_claim());
        // A new secret ends the streak; the next unchanged one opens a new window.
        recovery.record(false);
        tokio::time::advance(30 * SECOND).await;
        assert!(recovery.try_claim());
        recovery.record(true);
        tokio::time::advance(SECOND).await;
        assert!(recovery.try_claim());
    }

    #[test]
    fn the_retry_is_never_slower_than_the_callers_interval() {
        let recovery = Recovery::new(SECOND / 4, SECOND, 120 * SECOND);
        assert_eq!(recovery.unchanged_retry, SECOND / 4);
    }
}
