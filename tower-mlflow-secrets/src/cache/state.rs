//! What the cache holds and how a caller without a usable secret gets one.

use std::sync::{
    Arc, Mutex, MutexGuard, PoisonError,
    atomic::{AtomicBool, Ordering},
};

use secrecy::SecretString;
use tokio::time::Instant;
use tower_mlflow_core::sync::Reloading;

use super::{
    CachedSecret, SecretSnapshot, Unavailable,
    builder::Settings,
    retry::{SharedJitter, failure_backoff, fetch_with_retries},
};
use crate::source::{DynSource, Fetched, SourceError};

/// One fetched secret and the times that govern it, fixed when the fetch completed.
pub(super) struct Entry {
    pub(super) secret: SecretString,
    pub(super) generation: u64,
    pub(super) refresh_at: Instant,
    pub(super) expires_at: Instant,
    pub(super) stale_until: Instant,
}

/// What a waiting caller needs.
#[derive(Clone, Copy, Debug)]
pub(super) enum Want {
    /// An unexpired secret ([`CachedSecret::get`]); a stale one if fetching fails.
    Fresh,
    /// A secret of another generation than the rejected one, expired or not, never stale
    /// under stale-if-error ([`CachedSecret::refresh_after_rejection`]).
    Replace(u64),
    /// A secret not yet due for refresh ahead of expiry (the background refresh).
    Refreshed,
}

/// Why a flight produced no new entry; shared with every caller that waited for it.
#[derive(Clone, Debug)]
pub(super) enum FlightError {
    /// The fetch failed or was not allowed to start (backoff).
    Failed(Unavailable),
    /// The caller that led the flight found the current entry good enough and did not
    /// fetch; waiters check it against what they need.
    NotNeeded,
}

/// Consecutive failed fetches, and until when no new fetch may start.
#[derive(Default)]
struct Failures {
    count: u32,
    retry_after: Option<Instant>,
    last_error: Option<Arc<SourceError>>,
}

impl Failures {
    fn backing_off(&self, now: Instant) -> bool {
        self.retry_after.is_some_and(|t| now < t)
    }
}

pub(super) struct Shared {
    source: Box<dyn DynSource>,
    pub(super) settings: Settings,
    /// The current entry, read lock-free; its reloads run one at a time.
    pub(super) reloading: Reloading<Entry, FlightError>,
    failures: Mutex<Failures>,
    /// Set while a background refresh task exists, so that the callers in the
    /// refresh-ahead window start one, not one each.
    refreshing: AtomicBool,
    jitter: SharedJitter,
}

impl Shared {
    pub(super) fn new(source: Box<dyn DynSource>, settings: Settings, seed: u64) -> Self {
        Self {
            source,
            settings,
            reloading: Reloading::new(),
            failures: Mutex::new(Failures::default()),
            refreshing: AtomicBool::new(false),
            jitter: SharedJitter::new(seed),
        }
    }

    fn failures(&self) -> MutexGuard<'_, Failures> {
        // Every field is overwritten by the next fetch, so a panic while the lock was held
        // cannot leave anything inconsistent that matters.
        self.failures.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Starts a background refresh unless one is running or the cache is backing off.
    pub(super) fn refresh_in_background(self: &Arc<Self>, now: Instant) {
        if self.refreshing.load(Ordering::Acquire) {
            return;
        }
        // Contended means someone else is deciding right now; no need to queue up.
        let Ok(failures) = self.failures.try_lock() else {
            return;
        };
        let backing_off = failures.backing_off(now);
        drop(failures);
        if backing_off || self.refreshing.swap(true, Ordering::AcqRel) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            self.refreshing.store(false, Ordering::Release);
            tracing::warn!("cannot start background secret refresh: no tokio runtime");
            return;
        };
        tracing::debug!("refreshing secret ahead of expiry");
        // Moved into the task, so the flag clears however the task ends, even unpolled.
        let refreshing = Refreshing(Arc::clone(self));
        runtime.spawn(async move {
            // A failure is logged and recorded by the fetch; callers keep the current entry.
            let _ = Arc::clone(&refreshing.0).wait(Want::Refreshed).await;
            drop(refreshing);
        });
    }

    /// Waits, in a task of its own, for an entry that satisfies `want`. The task leads or
    /// joins the fetch, so a caller that gives up never cancels a fetch others wait for.
    pub(super) async fn wait_in_task(
        self: &Arc<Self>,
        want: Want,
    ) -> Result<SecretSnapshot, Unavailable> {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            let err = SourceError::permanent("no tokio runtime to fetch the secret on");
            return self.stale_or_unavailable(want, Unavailable::new(Some(Arc::new(err)), false));
        };
        match runtime.spawn(Arc::clone(self).wait(want)).await {
            Ok(result) => result,
            Err(_) => {
                let err = SourceError::transient("the secret fetch was cancelled");
                self.stale_or_unavailable(want, Unavailable::new(Some(Arc::new(err)), false))
            }
        }
    }

    pub(super) async fn wait(self: Arc<Self>, want: Want) -> Result<SecretSnapshot, Unavailable> {
        loop {
            if let Some(snapshot) = self.usable(want) {
                return Ok(snapshot);
            }
            if let Some(err) = self.backoff_error() {
                return self.stale_or_unavailable(want, err);
            }
            match self.reloading.reload(|| self.fetch(want)).await {
                // Any new entry is fresh and of a new generation: it satisfies every want.
                Ok(snapshot) => return Ok(SecretSnapshot { snapshot }),
                Err(FlightError::Failed(err)) => return self.stale_or_unavailable(want, err),
                // The leader wanted less than this caller: look again (and fetch if needed).
                Err(FlightError::NotNeeded) => {}
            }
        }
    }

    /// The current entry if it satisfies `want`.
    fn usable(&self, want: Want) -> Option<SecretSnapshot> {
        let snapshot = self.reloading.snapshot()?;
        let entry = snapshot.value();
        let usable = match want {
            Want::Fresh => Instant::now() < entry.expires_at,
            Want::Replace(rejected) => entry.generation != rejected,
            Want::Refreshed => Instant::now() < entry.refresh_at,
        };
        usable.then_some(SecretSnapshot { snapshot })
    }

    fn backoff_error(&self) -> Option<Unavailable> {
        let failures = self.failures();
        failures
            .backing_off(Instant::now())
            .then(|| Unavailable::new(failures.last_error.clone(), true))
    }

    /// The fetch of the caller that leads a flight. The checks before fetching repeat the
    /// caller's own: a flight may have ended between those and this caller's joining.
    pub(super) async fn fetch(&self, want: Want) -> Result<Entry, FlightError> {
        if self.usable(want).is_some() {
            return Err(FlightError::NotNeeded);
        }
        if let Some(err) = self.backoff_error() {
            return Err(FlightError::Failed(err));
        }
        let result = fetch_with_retries(&*self.source, &self.settings, &self.jitter).await;
        let now = Instant::now();
        let mut failures = self.failures();
        match result {
            Ok(fetched) => {
                *failures = Failures::default();
                // Only the flight's leader stores entries, so the generations cannot race.
                let generation = self
                    .reloading
                    .peek()
                    .as_ref()
                    .map_or(0, |current| current.value().generation)
                    + 1;
                tracing::debug!(generation, "secret fetched");
                Ok(self.entry(fetched, generation, now))
            }
            Err(err) => {
                failures.count = failures.count.saturating_add(1);
                let backoff = failure_backoff(&self.settings, &self.jitter, failures.count);
                failures.retry_after = Some(now + backoff);
                tracing::warn!(
                    error = %err,
                    failures = failures.count,
                    backoff_ms = u64::try_from(backoff.as_millis()).unwrap_or(u64::MAX),
                    "secret fetch failed"
                );
                let err = Arc::new(err);
                failures.last_error = Some(Arc::clone(&err));
                Err(FlightError::Failed(Unavailable::new(Some(err), false)))
            }
        }
    }

    fn entry(&self, fetched: Fetched, generation: u64, now: Instant) -> Entry {
        let (secret, expires_in) = fetched.into_parts();
        let ttl = self.settings.ttl;
        let lifetime = expires_in
            .map_or(ttl, |e| e.min(ttl))
            .max(CachedSecret::MIN_LIFETIME.min(ttl));
        let lead = self.settings.refresh_ahead.min(lifetime / 2);
        let stale_for = lifetime + self.settings.max_stale;
        // A real expiry from the source also bounds stale-if-error.
        let stale_for = expires_in.map_or(stale_for, |e| stale_for.min(e.max(lifetime)));
        Entry {
            secret,
            generation,
            refresh_at: now + (lifetime - lead),
            expires_at: now + lifetime,
            stale_until: now + stale_for,
        }
    }

    /// After a failed or refused fetch: the expired entry while stale-if-error allows it
    /// (only for [`Want::Fresh`]), otherwise `err`.
    fn stale_or_unavailable(
        &self,
        want: Want,
        err: Unavailable,
    ) -> Result<SecretSnapshot, Unavailable> {
        if let Want::Fresh = want {
            if let Some(snapshot) = self.reloading.snapshot() {
                if Instant::now() < snapshot.value().stale_until {
                    tracing::warn!(
                        generation = snapshot.value().generation,
                        "secret source failing; serving the expired secret (stale-if-error)"
                    );
                    return Ok(SecretSnapshot { snapshot });
                }
            }
        }
        Err(err)
    }
}

/// Clears [`Shared::refreshing`] when the background refresh task is dropped.
struct Refreshing(Arc<Shared>);

impl Drop for Refreshing {
    fn drop(&mut self) {
        self.0.refreshing.store(false, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use std::{sync::atomic::Ordering, time::Duration};

    use crate::{CachedSecret, source::Static};

    #[test]
    fn a_refresh_task_dropped_unpolled_clears_the_flag() {
        let cache = CachedSecret::builder(Static::new("tok"))
            .ttl(Duration::from_secs(100))
            .refresh_ahead(Duration::from_secs(30))
            .build()
            .unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        runtime.block_on(async {
            cache.get().await.unwrap();
            tokio::time::advance(Duration::from_secs(75)).await;
            // Spawns the refresh, which cannot run before `block_on` returns.
            cache.try_get().unwrap();
            assert!(cache.shared.refreshing.load(Ordering::Acquire));
        });
        drop(runtime);
        assert!(!cache.shared.refreshing.load(Ordering::Acquire));
    }
}
