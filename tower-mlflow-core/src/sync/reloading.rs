use std::{
    fmt,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use arc_swap::{ArcSwapOption, Guard};
use tokio::time::Instant;

use super::SingleFlight;

/// A value replaced as a whole by reloads that never overlap; readers never wait for one.
/// See the [module docs](super).
///
/// `E` is the load error; it is cloned to every caller that waited for the failed load, so
/// wrap it in an `Arc` when it is not `Clone`.
pub struct Reloading<T, E> {
    current: ArcSwapOption<Snapshot<T>>,
    flight: SingleFlight<(), Result<Arc<Snapshot<T>>, E>>,
    /// Bumped by [`invalidate`](Reloading::invalidate); a snapshot loaded under an older
    /// generation is stale whatever its age.
    generation: AtomicU64,
}

/// One loaded value and when its load started.
pub struct Snapshot<T> {
    value: T,
    loaded_at: Instant,
    generation: u64,
}

impl<T> Snapshot<T> {
    /// The loaded value.
    pub fn value(&self) -> &T {
        &self.value
    }

    /// When the load that produced it started (tokio's clock).
    pub fn loaded_at(&self) -> Instant {
        self.loaded_at
    }

    /// How long ago the load started.
    pub fn age(&self) -> Duration {
        self.loaded_at.elapsed()
    }
}

impl<T, E> Reloading<T, E> {
    /// Nothing loaded yet.
    #[must_use]
    pub fn new() -> Self {
        Self {
            current: ArcSwapOption::empty(),
            flight: SingleFlight::new(),
            generation: AtomicU64::new(0),
        }
    }

    /// Starts with `value`, loaded now.
    #[must_use]
    pub fn with_value(value: T) -> Self {
        let reloading = Self::new();
        reloading.store(value);
        reloading
    }

    /// The current snapshot, if any, without touching a reference count: for hot paths that
    /// only look.
    pub fn peek(&self) -> Guard<Option<Arc<Snapshot<T>>>> {
        self.current.load()
    }

    /// The current snapshot, if any.
    pub fn snapshot(&self) -> Option<Arc<Snapshot<T>>> {
        self.current.load_full()
    }

    /// Whether `snapshot` is younger than `max_age` and no [`invalidate`](Self::invalidate)
    /// came after its load started.
    pub fn is_fresh(&self, snapshot: &Snapshot<T>, max_age: Duration) -> bool {
        snapshot.generation == self.generation.load(Ordering::Acquire) && snapshot.age() < max_age
    }

    /// Marks the current snapshot stale: the next [`get_or_reload`](Self::get_or_reload)
    /// loads again, and so does a [`reload`](Self::reload) that would otherwise share a load
    /// started before this call. Cheap; never waits.
    pub fn invalidate(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// Replaces the value with `value`, loaded now.
    pub fn store(&self, value: T) -> Arc<Snapshot<T>> {
        let snapshot = Arc::new(Snapshot {
            value,
            loaded_at: Instant::now(),
            generation: self.generation.load(Ordering::Acquire),
        });
        self.current.store(Some(Arc::clone(&snapshot)));
        snapshot
    }

    /// Forgets the value: readers see nothing until the next load succeeds.
    pub fn clear(&self) {
        self.current.store(None);
    }

    /// Whether a load is running.
    pub fn is_reloading(&self) -> bool {
        self.flight.is_running(&())
    }
}

impl<T, E: Clone> Reloading<T, E> {
    /// Loads a new value with `load` and makes it current, or, if a load is already running,
    /// waits for that one and shares its outcome. A failed load leaves the current snapshot
    /// in place (call [`clear`](Self::clear) to drop it).
    ///
    /// Cancel-safe: if the caller running the load is dropped, a waiting caller loads.
    ///
    /// # Errors
    ///
    /// The load's error, for every caller that waited for it.
    pub async fn reload<F, Fut>(&self, load: F) -> Result<Arc<Snapshot<T>>, E>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        self.load_unless_fresh(None, load).await
    }

    /// The current snapshot when it [is fresh](Self::is_fresh) for `max_age`; otherwise a
    /// [`reload`](Self::reload).
    ///
    /// # Errors
    ///
    /// The load's error when a load was needed and failed.
    pub async fn get_or_reload<F, Fut>(
        &self,
        max_age: Duration,
        load: F,
    ) -> Result<Arc<Snapshot<T>>, E>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        if let Some(snapshot) = self.snapshot().filter(|s| self.is_fresh(s, max_age)) {
            return Ok(snapshot);
        }
        self.load_unless_fresh(Some(max_age), load).await
    }

    /// [`reload`](Self::reload); with `max_age`, the caller that would run the load first
    /// looks again: a load that finished between the caller's own look and its turn is
    /// fresh, and a second one would load the same thing again.
    async fn load_unless_fresh<F, Fut>(
        &self,
        max_age: Option<Duration>,
        mut load: F,
    ) -> Result<Arc<Snapshot<T>>, E>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let wanted = self.generation.load(Ordering::Acquire);
        loop {
            let outcome = self
                .flight
                .run((), || {
                    let fresh = max_age
                        .and_then(|max_age| self.snapshot().filter(|s| self.is_fresh(s, max_age)));
                    let generation = self.generation.load(Ordering::Acquire);
                    let loaded_at = Instant::now();
                    let loading = match fresh {
                        Some(snapshot) => Err(snapshot),
                        None => Ok(load()),
                    };
                    async move {
                        let loading = match loading {
                            Ok(loading) => loading,
                            Err(fresh) => return Ok(fresh),
                        };
                        let value = loading.await?;
                        let snapshot = Arc::new(Snapshot {
                            value,
                            loaded_at,
                            generation,
                        });
                        self.current.store(Some(Arc::clone(&snapshot)));
                        Ok(snapshot)
                    }
                })
                .await;
            match outcome {
                Ok(snapshot) if snapshot.generation < wanted => {}
                outcome => return outcome,
            }
        }
    }
}

impl<T, E> Default for Reloading<T, E> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T, E> fmt::Debug for Reloading<T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let current = self.peek();
        f.debug_struct("Reloading")
            .field("loaded", &current.is_some())
            .field("age", &current.as_ref().map(|s| s.age()))
            .field("reloading", &self.is_reloading())
            .finish()
    }
}

impl<T> fmt::Debug for Snapshot<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The value may be secret; only its age is printed.
        f.debug_struct("Snapshot")
            .field("age", &self.age())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use std::{
        sync::{
            Arc,
            atomic::{AtomicU32, Ordering},
        },
        time::Duration,
    };

    use super::Reloading;

    fn counter() -> Arc<AtomicU32> {
        Arc::new(AtomicU32::new(0))
    }

    #[tokio::test(start_paused = true)]
    async fn fresh_snapshots_are_reused_and_stale_ones_reloaded() {
        let reloading = Reloading::<u32, ()>::new();
        let loads = counter();
        let load = || {
            let loads = Arc::clone(&loads);
            async move { Ok(loads.fetch_add(1, Ordering::SeqCst)) }
        };
        let max_age = Duration::from_secs(5);
        assert_eq!(
            *reloading
                .get_or_reload(max_age, load)
                .await
                .unwrap()
                .value(),
            0
        );
        assert_eq!(
            *reloading
                .get_or_reload(max_age, load)
                .await
                .unwrap()
                .value(),
            0
        );
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(
            *reloading
                .get_or_reload(max_age, load)
                .await
                .unwrap()
                .value(),
            1
        );
        reloading.invalidate();
        assert_eq!(
            *reloading
                .get_or_reload(max_age, load)
                .await
                .unwrap()
                .value(),
            2
        );
        assert_eq!(loads.load(Ordering::SeqCst), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_reloads_share_one_load_and_its_error() {
        let reloading = Arc::new(Reloading::<u32, &'static str>::new());
        let loads = counter();
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let reloading = Arc::clone(&reloading);
            let loads = Arc::clone(&loads);
            tasks.push(tokio::spawn(async move {
                reloading
                    .reload(|| {
                        let loads = Arc::clone(&loads);
                        async move {
                            loads.fetch_add(1, Ordering::SeqCst);
                            tokio::time::sleep(Duration::from_secs(1)).await;
                            Err::<u32, _>("store down")
                        }
                    })
                    .await
                    .map(|s| *s.value())
            }));
        }
        for task in tasks {
            assert_eq!(task.await.ok(), Some(Err("store down")));
        }
        assert_eq!(loads.load(Ordering::SeqCst), 1);
        assert!(reloading.snapshot().is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_reload_keeps_the_previous_value() {
        let reloading = Reloading::<u32, ()>::with_value(1);
        assert!(reloading.reload(|| async { Err(()) }).await.is_err());
        assert_eq!(reloading.snapshot().map(|s| *s.value()), Some(1));
        reloading.clear();
        assert!(reloading.snapshot().is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn a_reload_after_invalidate_does_not_share_an_older_load() {
        let reloading = Arc::new(Reloading::<u32, ()>::new());
        let loads = counter();
        let started = Arc::new(tokio::sync::Notify::new());
        let slow = tokio::spawn({
            let reloading = Arc::clone(&reloading);
            let loads = Arc::clone(&loads);
            let started = Arc::clone(&started);
            async move {
                reloading
                    .reload(|| {
                        let loads = Arc::clone(&loads);
                        let started = Arc::clone(&started);
                        async move {
                            started.notify_one();
                            tokio::time::sleep(Duration::from_secs(1)).await;
                            Ok(loads.fetch_add(1, Ordering::SeqCst))
                        }
                    })
                    .await
                    .map(|s| *s.value())
            }
        });
        started.notified().await;
        reloading.invalidate();
        let after = reloading
            .reload(|| {
                let loads = Arc::clone(&loads);
                async move { Ok(loads.fetch_add(1, Ordering::SeqCst)) }
            })
            .await
            .map(|s| *s.value());
        assert_eq!(slow.await.ok(), Some(Ok(0)));
        assert_eq!(after, Ok(1));
        assert!(reloading.is_fresh(&reloading.snapshot().unwrap(), Duration::from_secs(60)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_cancelled_loader_hands_over() {
        let reloading = Arc::new(Reloading::<u32, ()>::new());
        let first = tokio::spawn({
            let reloading = Arc::clone(&reloading);
            async move {
                reloading
                    .reload(|| async {
                        tokio::time::sleep(Duration::from_secs(60)).await;
                        Ok(1)
                    })
                    .await
                    .is_ok()
            }
        });
        tokio::task::yield_now().await;
        assert!(reloading.is_reloading());
        let second = tokio::spawn({
            let reloading = Arc::clone(&reloading);
            async move {
                reloading
                    .reload(|| async { Ok(2) })
                    .await
                    .map(|s| *s.value())
            }
        });
        tokio::task::yield_now().await;
        first.abort();
        assert_eq!(second.await.ok(), Some(Ok(2)));
    }
}
