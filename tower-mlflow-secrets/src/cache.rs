//! [`CachedSecret`]: one secret, fetched once and shared.
//!
//! - **TTL**: 300 s by default, clamped to 1 s ..= 24 h. A source-provided expiry
//!   ([`Fetched::with_expires_in`]) is used when it is shorter.
//! - **Single flight**: however many callers miss at once, the source is fetched once; the
//!   fetch runs in its own task, so a caller that gives up does not cancel it for the others.
//! - **Refresh ahead**: from `refresh_ahead` before expiry (default 30 s, at most half the
//!   lifetime) the first caller starts a background refresh and every caller keeps getting
//!   the current secret without waiting.
//! - **Stale if error**: when a refresh fails, the expired secret is still served for up to
//!   `max_stale` (default 300 s) past its TTL, but never past an expiry the source gave.
//! - **Retries**: only [transient](crate::source::SourceError::is_transient) errors, with
//!   full-jitter exponential backoff, bounded by `max_attempts` and an overall deadline.
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
//! Design: the current value sits in an `arc_swap::ArcSwapOption`, so the hot path is one
//! atomic load and a clock read, with no lock. A `std::sync::Mutex` (never held across an
//! `.await`) guards the in-flight fetch, a `tokio::sync::watch` channel that every waiter
//! clones. `moka` was not used: it caches many keys and has no stale-if-error,
//! refresh-ahead or failure backoff, which are the point here.
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
//!     .build();
//! let current = secret.get().await.unwrap();
//! assert_eq!(current.secret().expose_secret(), "tok");
//! # }
//! ```

use std::{
    fmt,
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use arc_swap::ArcSwapOption;
use secrecy::SecretString;
use tokio::{sync::watch, time::Instant};

use crate::source::{DynSource, Fetched, SecretSource, SourceError};

const MIN_TTL: Duration = Duration::from_secs(1);
const MAX_TTL: Duration = Duration::from_secs(24 * 60 * 60);

/// A shared, self-refreshing secret. Cheap to clone (all clones share one cache).
#[derive(Clone)]
pub struct CachedSecret {
    shared: Arc<Shared>,
}

/// Settings for a [`CachedSecret`]; out-of-range values are clamped.
pub struct CachedSecretBuilder {
    source: Box<dyn DynSource>,
    config: Config,
    seed: Option<u64>,
}

#[derive(Clone, Debug)]
struct Config {
    ttl: Duration,
    refresh_ahead: Duration,
    max_stale: Duration,
    max_attempts: u32,
    retry_base: Duration,
    retry_cap: Duration,
    deadline: Duration,
    failure_backoff_base: Duration,
    failure_backoff_cap: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            ttl: Duration::from_secs(300),
            refresh_ahead: Duration::from_secs(30),
            max_stale: Duration::from_secs(300),
            max_attempts: 3,
            retry_base: Duration::from_millis(100),
            retry_cap: Duration::from_secs(2),
            deadline: Duration::from_secs(10),
            failure_backoff_base: Duration::from_secs(1),
            failure_backoff_cap: Duration::from_secs(60),
        }
    }
}

struct Shared {
    source: Box<dyn DynSource>,
    config: Config,
    current: ArcSwapOption<Entry>,
    state: Mutex<State>,
    jitter: Mutex<Jitter>,
}

#[derive(Default)]
struct State {
    inflight: Option<watch::Receiver<Option<Outcome>>>,
    generation: u64,
    failures: u32,
    retry_after: Option<Instant>,
    last_error: Option<Arc<SourceError>>,
}

type Outcome = Result<SecretSnapshot, Arc<SourceError>>;

struct Entry {
    secret: SecretString,
    generation: u64,
    refresh_at: Instant,
    expires_at: Instant,
    stale_until: Instant,
}

/// One version of the cached secret, as handed to callers. Cheap to clone; `Debug` never
/// shows the secret.
#[derive(Clone)]
pub struct SecretSnapshot {
    entry: Arc<Entry>,
}

impl SecretSnapshot {
    /// The secret.
    pub fn secret(&self) -> &SecretString {
        &self.entry.secret
    }

    /// A number that grows by one with every successful fetch; equal numbers mean the same
    /// fetched value.
    pub fn generation(&self) -> u64 {
        self.entry.generation
    }

    /// Whether this version has passed its TTL (it is being served under stale-if-error).
    pub fn is_stale(&self) -> bool {
        Instant::now() >= self.entry.expires_at
    }
}

impl fmt::Debug for SecretSnapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretSnapshot")
            .field("secret", &"[REDACTED]")
            .field("generation", &self.entry.generation)
            .finish()
    }
}

/// No usable secret: the source failed (or is in backoff after failing) and nothing fresh
/// or stale-but-allowed is cached.
#[derive(Clone, Debug)]
pub struct Unavailable {
    cause: Option<Arc<SourceError>>,
    backing_off: bool,
}

impl Unavailable {
    fn new(cause: Option<Arc<SourceError>>, backing_off: bool) -> Self {
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

impl CachedSecret {
    /// A cache over `source` with the default settings.
    pub fn new(source: impl SecretSource) -> Self {
        Self::builder(source).build()
    }

    /// A builder over `source`.
    pub fn builder(source: impl SecretSource) -> CachedSecretBuilder {
        CachedSecretBuilder {
            source: Box::new(source),
            config: Config::default(),
            seed: None,
        }
    }

    /// The current secret if it is fresh, without waiting. Starts a background refresh when
    /// the secret is within its refresh-ahead window. `None` means [`get`](Self::get) has to
    /// wait (or fail).
    pub fn try_get(&self) -> Option<SecretSnapshot> {
        let guard = self.shared.current.load();
        let entry = guard.as_ref()?;
        let now = Instant::now();
        if now >= entry.expires_at {
            return None;
        }
        if now >= entry.refresh_at {
            self.shared.refresh_in_background(now);
        }
        Some(SecretSnapshot {
            entry: Arc::clone(entry),
        })
    }

    /// The current secret: fresh from the cache, fetched (once, for all concurrent callers),
    /// or stale within the configured bound when fetching fails.
    pub async fn get(&self) -> Result<SecretSnapshot, Unavailable> {
        if let Some(snapshot) = self.try_get() {
            return Ok(snapshot);
        }
        self.shared.wait_for_fetch(None).await
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
            .wait_for_fetch(Some(rejected.generation()))
            .await
    }
}

impl fmt::Debug for CachedSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let generation = self
            .shared
            .current
            .load()
            .as_ref()
            .map(|entry| entry.generation);
        f.debug_struct("CachedSecret")
            .field("config", &self.shared.config)
            .field("generation", &generation)
            .finish_non_exhaustive()
    }
}

impl CachedSecretBuilder {
    /// How long a fetched secret is used before it is refetched (default 300 s, clamped to
    /// 1 s ..= 24 h). A shorter expiry from the source wins.
    #[must_use]
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.config.ttl = ttl.clamp(MIN_TTL, MAX_TTL);
        self
    }

    /// How long before expiry a background refresh starts (default 30 s; at most half of
    /// the secret's lifetime is used).
    #[must_use]
    pub fn refresh_ahead(mut self, lead: Duration) -> Self {
        self.config.refresh_ahead = lead;
        self
    }

    /// How long past its TTL an expired secret may still be served while the source is
    /// failing (default 300 s; `Duration::ZERO` disables stale-if-error). Never past an
    /// expiry given by the source.
    #[must_use]
    pub fn max_stale(mut self, max_stale: Duration) -> Self {
        self.config.max_stale = max_stale.min(MAX_TTL);
        self
    }

    /// Attempts per fetch for transient errors (default 3, at least 1, at most 10).
    #[must_use]
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.config.max_attempts = attempts.clamp(1, 10);
        self
    }

    /// Full-jitter exponential backoff between attempts: attempt `n` (from 1) waits a
    /// random time in `0 ..= min(cap, base * 2^(n-1))` (default 100 ms, cap 2 s).
    #[must_use]
    pub fn retry_backoff(mut self, base: Duration, cap: Duration) -> Self {
        self.config.retry_base = base;
        self.config.retry_cap = cap.max(base);
        self
    }

    /// Overall deadline of one fetch, retries included (default 10 s, at least 1 ms).
    #[must_use]
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.config.deadline = deadline.max(Duration::from_millis(1));
        self
    }

    /// Backoff after a failed fetch before the next one may start: after `n` consecutive
    /// failures, `min(cap, base * 2^(n-1))`, of which the second half is jittered
    /// (default 1 s, cap 60 s).
    #[must_use]
    pub fn failure_backoff(mut self, base: Duration, cap: Duration) -> Self {
        self.config.failure_backoff_base = base;
        self.config.failure_backoff_cap = cap.max(base);
        self
    }

    /// Seeds the jitter PRNG, for reproducible tests (default: a random seed).
    #[must_use]
    pub fn jitter_seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Builds the cache. Nothing is fetched until the first [`get`](CachedSecret::get).
    pub fn build(self) -> CachedSecret {
        let seed = self.seed.unwrap_or_else(random_seed);
        CachedSecret {
            shared: Arc::new(Shared {
                source: self.source,
                config: self.config,
                current: ArcSwapOption::empty(),
                state: Mutex::new(State::default()),
                jitter: Mutex::new(Jitter::new(seed)),
            }),
        }
    }
}

impl fmt::Debug for CachedSecretBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CachedSecretBuilder")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Shared {
    fn lock_state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave `State` inconsistent in a way that
        // matters (every field is overwritten on the next fetch), so poisoning is ignored.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn refresh_in_background(self: &Arc<Self>, now: Instant) {
        // Contended means someone else is deciding right now; no need to queue up.
        let Ok(mut state) = self.state.try_lock() else {
            return;
        };
        let backing_off = state.retry_after.is_some_and(|t| now < t);
        if state.inflight.is_none() && !backing_off {
            tracing::debug!("refreshing secret ahead of expiry");
            if let Err(err) = self.start_fetch(&mut state) {
                tracing::warn!(error = %err, "cannot start background secret refresh");
            }
        }
    }

    /// Waits for a fresh value. With `rejected`, a value of that generation does not count
    /// as fresh and stale values are not served.
    async fn wait_for_fetch(
        self: &Arc<Self>,
        rejected: Option<u64>,
    ) -> Result<SecretSnapshot, Unavailable> {
        let mut receiver = {
            let mut state = self.lock_state();
            let now = Instant::now();
            let current = self.current.load_full();
            if let Some(entry) = &current {
                let usable = match rejected {
                    Some(generation) => entry.generation != generation,
                    None => now < entry.expires_at,
                };
                if usable {
                    return Ok(SecretSnapshot {
                        entry: Arc::clone(entry),
                    });
                }
            }
            match &state.inflight {
                Some(receiver) => receiver.clone(),
                None if state.retry_after.is_some_and(|t| now < t) => {
                    let cause = state.last_error.clone();
                    drop(state);
                    return self.stale_or_unavailable(rejected, cause, true);
                }
                None => match self.start_fetch(&mut state) {
                    Ok(receiver) => receiver,
                    Err(err) => {
                        drop(state);
                        return self.stale_or_unavailable(rejected, Some(Arc::new(err)), false);
                    }
                },
            }
        };
        let outcome = match receiver.wait_for(Option::is_some).await {
            Ok(outcome) => outcome.clone(),
            Err(_) => None,
        };
        match outcome {
            Some(Ok(snapshot)) => Ok(snapshot),
            Some(Err(err)) => self.stale_or_unavailable(rejected, Some(err), false),
            None => self.stale_or_unavailable(
                rejected,
                Some(Arc::new(SourceError::transient(
                    "the secret fetch was cancelled",
                ))),
                false,
            ),
        }
    }

    fn stale_or_unavailable(
        &self,
        rejected: Option<u64>,
        cause: Option<Arc<SourceError>>,
        backing_off: bool,
    ) -> Result<SecretSnapshot, Unavailable> {
        if rejected.is_none() {
            if let Some(entry) = self.current.load_full() {
                if Instant::now() < entry.stale_until {
                    tracing::warn!(
                        generation = entry.generation,
                        "secret source failing; serving the expired secret (stale-if-error)"
                    );
                    return Ok(SecretSnapshot { entry });
                }
            }
        }
        Err(Unavailable::new(cause, backing_off))
    }

    /// Spawns the fetch task and records it as in flight. Caller holds the state lock.
    fn start_fetch(
        self: &Arc<Self>,
        state: &mut State,
    ) -> Result<watch::Receiver<Option<Outcome>>, SourceError> {
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| SourceError::permanent("no tokio runtime to fetch the secret on"))?;
        let (sender, receiver) = watch::channel(None);
        state.inflight = Some(receiver.clone());
        let shared = Arc::clone(self);
        runtime.spawn(async move {
            let result = shared.fetch_with_retries().await;
            shared.finish(result, &sender);
        });
        Ok(receiver)
    }

    fn finish(
        &self,
        result: Result<Fetched, SourceError>,
        sender: &watch::Sender<Option<Outcome>>,
    ) {
        let mut state = self.lock_state();
        state.inflight = None;
        let now = Instant::now();
        let outcome = match result {
            Ok(fetched) => {
                state.generation += 1;
                state.failures = 0;
                state.retry_after = None;
                state.last_error = None;
                let entry = Arc::new(self.entry(fetched, state.generation, now));
                tracing::debug!(generation = entry.generation, "secret fetched");
                self.current.store(Some(Arc::clone(&entry)));
                Ok(SecretSnapshot { entry })
            }
            Err(err) => {
                state.failures = state.failures.saturating_add(1);
                let backoff = self.failure_backoff(state.failures);
                state.retry_after = Some(now + backoff);
                tracing::warn!(
                    error = %err,
                    failures = state.failures,
                    backoff_ms = u64::try_from(backoff.as_millis()).unwrap_or(u64::MAX),
                    "secret fetch failed"
                );
                let err = Arc::new(err);
                state.last_error = Some(Arc::clone(&err));
                Err(err)
            }
        };
        // Nobody listening is fine (a background refresh).
        let _ = sender.send(Some(outcome));
    }

    fn entry(&self, fetched: Fetched, generation: u64, now: Instant) -> Entry {
        let (secret, expires_in) = fetched.into_parts();
        let ttl = self.config.ttl;
        let lifetime = expires_in.map_or(ttl, |e| e.min(ttl)).max(MIN_TTL);
        let lead = self.config.refresh_ahead.min(lifetime / 2);
        let stale_for = lifetime + self.config.max_stale;
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

    async fn fetch_with_retries(&self) -> Result<Fetched, SourceError> {
        let deadline = Instant::now() + self.config.deadline;
        let mut attempt: u32 = 0;
        loop {
            attempt += 1;
            let error = match tokio::time::timeout_at(deadline, self.source.fetch_boxed()).await {
                Ok(Ok(fetched)) => return Ok(fetched),
                Ok(Err(err)) => err,
                Err(_) => {
                    return Err(SourceError::transient(format!(
                        "secret fetch deadline of {:?} exceeded after {attempt} attempt(s)",
                        self.config.deadline
                    )));
                }
            };
            if !error.is_transient() || attempt >= self.config.max_attempts {
                return Err(error);
            }
            let delay = self.retry_delay(attempt);
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

    fn retry_delay(&self, attempt: u32) -> Duration {
        let ceiling = exponential(self.config.retry_base, self.config.retry_cap, attempt);
        self.jitter().full(ceiling)
    }

    fn failure_backoff(&self, failures: u32) -> Duration {
        let ceiling = exponential(
            self.config.failure_backoff_base,
            self.config.failure_backoff_cap,
            failures,
        );
        let half = ceiling / 2;
        half + self.jitter().full(ceiling - half)
    }

    fn jitter(&self) -> MutexGuard<'_, Jitter> {
        self.jitter
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// `min(cap, base * 2^(n-1))` for `n >= 1`, without overflow.
fn exponential(base: Duration, cap: Duration, n: u32) -> Duration {
    let factor = 1u32
        .checked_shl(n.saturating_sub(1).min(31))
        .unwrap_or(u32::MAX);
    base.checked_mul(factor).map_or(cap, |d| d.min(cap))
}

/// SplitMix64: tiny, seedable and good enough for jitter (not for cryptography).
#[derive(Debug, Clone)]
pub(crate) struct Jitter {
    state: u64,
}

impl Jitter {
    pub(crate) fn new(seed: u64) -> Self {
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
    pub(crate) fn full(&mut self, max: Duration) -> Duration {
        let max_millis = u64::try_from(max.as_millis()).unwrap_or(u64::MAX);
        match max_millis.checked_add(1) {
            Some(span) => Duration::from_millis(self.next_u64() % span),
            None => Duration::from_millis(self.next_u64()),
        }
    }
}

fn random_seed() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    // RandomState is seeded from the OS once per process and varied per instance.
    RandomState::new().hash_one(std::process::id())
}

#[cfg(test)]
mod tests {
    use std::{
        future::Future,
        sync::atomic::{AtomicUsize, Ordering},
    };

    use secrecy::ExposeSecret;
    use tokio::sync::Semaphore;

    use super::*;

    /// A source scripted per call: each call takes the next result (the last one repeats),
    /// optionally waits for a permit, and records when it was called.
    #[derive(Clone)]
    struct Scripted {
        inner: Arc<ScriptedInner>,
    }

    /// One scripted result: a secret and its expiry, or `Err(transient)`.
    type Step = Result<(String, Option<Duration>), bool>;

    struct ScriptedInner {
        results: Mutex<Vec<Step>>,
        calls: AtomicUsize,
        times: Mutex<Vec<Instant>>,
        gate: Option<Semaphore>,
    }

    impl Scripted {
        fn new(results: Vec<Result<(&str, Option<Duration>), bool>>) -> Self {
            Self::build(results, None)
        }

        fn gated(results: Vec<Result<(&str, Option<Duration>), bool>>) -> Self {
            Self::build(results, Some(Semaphore::new(0)))
        }

        fn build(
            results: Vec<Result<(&str, Option<Duration>), bool>>,
            gate: Option<Semaphore>,
        ) -> Self {
            let results = results
                .into_iter()
                .map(|r| r.map(|(s, e)| (s.to_owned(), e)))
                .rev()
                .collect();
            Self {
                inner: Arc::new(ScriptedInner {
                    results: Mutex::new(results),
                    calls: AtomicUsize::new(0),
                    times: Mutex::new(Vec::new()),
                    gate,
                }),
            }
        }

        fn calls(&self) -> usize {
            self.inner.calls.load(Ordering::SeqCst)
        }

        fn release(&self, n: usize) {
            if let Some(gate) = &self.inner.gate {
                gate.add_permits(n);
            }
        }

        fn times(&self) -> Vec<Instant> {
            self.inner.times.lock().unwrap().clone()
        }
    }

    fn ok(s: &str) -> Result<(&str, Option<Duration>), bool> {
        Ok((s, None))
    }

    /// `Err(true)` = transient, `Err(false)` = permanent.
    const TRANSIENT: Result<(&str, Option<Duration>), bool> = Err(true);
    const PERMANENT: Result<(&str, Option<Duration>), bool> = Err(false);

    impl SecretSource for Scripted {
        async fn fetch(&self) -> Result<Fetched, SourceError> {
            self.inner.calls.fetch_add(1, Ordering::SeqCst);
            self.inner.times.lock().unwrap().push(Instant::now());
            if let Some(gate) = &self.inner.gate {
                gate.acquire().await.unwrap().forget();
            }
            let result = {
                let mut results = self.inner.results.lock().unwrap();
                if results.len() > 1 {
                    results.pop().unwrap()
                } else {
                    results[0].clone()
                }
            };
            match result {
                Ok((secret, expires_in)) => {
                    let fetched = Fetched::new(SecretString::from(secret));
                    Ok(match expires_in {
                        Some(e) => fetched.with_expires_in(e),
                        None => fetched,
                    })
                }
                Err(true) => Err(SourceError::transient("store unreachable")),
                Err(false) => Err(SourceError::permanent("access denied")),
            }
        }
    }

    fn value(snapshot: &SecretSnapshot) -> String {
        snapshot.secret().expose_secret().to_owned()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn thousand_concurrent_misses_fetch_once() {
        let source = Scripted::gated(vec![ok("tok")]);
        let cache = CachedSecret::new(source.clone());
        let started = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..1000)
            .map(|_| {
                let cache = cache.clone();
                let started = Arc::clone(&started);
                tokio::spawn(async move {
                    started.fetch_add(1, Ordering::SeqCst);
                    cache.get().await
                })
            })
            .collect();
        // Let every task reach the cache (and miss) before the single fetch completes.
        while started.load(Ordering::SeqCst) < 1000 || source.calls() == 0 {
            tokio::task::yield_now().await;
        }
        for _ in 0..50 {
            tokio::task::yield_now().await;
        }
        source.release(1);
        for task in tasks {
            assert_eq!(value(&task.await.unwrap().unwrap()), "tok");
        }
        assert_eq!(source.calls(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn cached_until_ttl_then_refetched() {
        let source = Scripted::new(vec![ok("one"), ok("two")]);
        let cache = CachedSecret::builder(source.clone())
            .ttl(Duration::from_secs(100))
            .refresh_ahead(Duration::ZERO)
            .build();
        assert_eq!(value(&cache.get().await.unwrap()), "one");
        tokio::time::advance(Duration::from_secs(99)).await;
        assert_eq!(value(&cache.get().await.unwrap()), "one");
        assert_eq!(source.calls(), 1);
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(value(&cache.get().await.unwrap()), "two");
        assert_eq!(source.calls(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn ttl_is_clamped() {
        let source = Scripted::new(vec![ok("one"), ok("two")]);
        let cache = CachedSecret::builder(source.clone())
            .ttl(Duration::ZERO)
            .refresh_ahead(Duration::ZERO)
            .build();
        assert_eq!(value(&cache.get().await.unwrap()), "one");
        // A zero TTL would refetch at once; clamped to 1 s it does not.
        assert_eq!(value(&cache.get().await.unwrap()), "one");
        assert_eq!(source.calls(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn refresh_ahead_does_not_make_callers_wait() {
        let source = Scripted::gated(vec![ok("one"), ok("two")]);
        let cache = CachedSecret::builder(source.clone())
            .ttl(Duration::from_secs(100))
            .refresh_ahead(Duration::from_secs(30))
            .build();
        source.release(1);
        assert_eq!(value(&cache.get().await.unwrap()), "one");
        tokio::time::advance(Duration::from_secs(75)).await;
        // In the window: the old secret comes back at once, a refresh starts behind it.
        assert_eq!(value(&cache.try_get().unwrap()), "one");
        tokio::task::yield_now().await;
        assert_eq!(source.calls(), 2);
        // The refresh is blocked on the gate, yet callers are served immediately.
        assert_eq!(value(&cache.try_get().unwrap()), "one");
        assert_eq!(value(&cache.get().await.unwrap()), "one");
        source.release(1);
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        assert_eq!(value(&cache.try_get().unwrap()), "two");
        assert_eq!(source.calls(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn shorter_source_expiry_wins() {
        let source = Scripted::new(vec![Ok(("one", Some(Duration::from_secs(10)))), ok("two")]);
        let cache = CachedSecret::builder(source.clone())
            .ttl(Duration::from_secs(300))
            .refresh_ahead(Duration::ZERO)
            .build();
        assert_eq!(value(&cache.get().await.unwrap()), "one");
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(value(&cache.get().await.unwrap()), "two");
    }

    #[tokio::test(start_paused = true)]
    async fn longer_source_expiry_does_not_extend_ttl() {
        let source = Scripted::new(vec![
            Ok(("one", Some(Duration::from_secs(3600)))),
            ok("two"),
        ]);
        let cache = CachedSecret::builder(source.clone())
            .ttl(Duration::from_secs(60))
            .refresh_ahead(Duration::ZERO)
            .build();
        assert_eq!(value(&cache.get().await.unwrap()), "one");
        tokio::time::advance(Duration::from_secs(60)).await;
        assert_eq!(value(&cache.get().await.unwrap()), "two");
    }

    #[tokio::test(start_paused = true)]
    async fn stale_if_error_up_to_the_bound() {
        let source = Scripted::new(vec![ok("one"), TRANSIENT]);
        let cache = CachedSecret::builder(source.clone())
            .ttl(Duration::from_secs(100))
            .refresh_ahead(Duration::ZERO)
            .max_stale(Duration::from_secs(50))
            .max_attempts(1)
            .build();
        assert_eq!(value(&cache.get().await.unwrap()), "one");
        tokio::time::advance(Duration::from_secs(120)).await;
        let stale = cache.get().await.unwrap();
        assert_eq!(value(&stale), "one");
        assert!(stale.is_stale());
        tokio::time::advance(Duration::from_secs(30)).await; // 150 s: bound reached
        assert!(cache.get().await.is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn stale_if_error_never_past_source_expiry() {
        let source = Scripted::new(vec![Ok(("one", Some(Duration::from_secs(100)))), TRANSIENT]);
        let cache = CachedSecret::builder(source.clone())
            .ttl(Duration::from_secs(300))
            .refresh_ahead(Duration::ZERO)
            .max_stale(Duration::from_secs(300))
            .max_attempts(1)
            .build();
        assert_eq!(value(&cache.get().await.unwrap()), "one");
        tokio::time::advance(Duration::from_secs(100)).await;
        assert!(cache.get().await.is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn fails_closed_with_nothing_cached() {
        let source = Scripted::new(vec![PERMANENT]);
        let cache = CachedSecret::new(source.clone());
        let err = cache.get().await.unwrap_err();
        assert!(err.to_string().contains("access denied"), "{err}");
        assert!(std::error::Error::source(&err).is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn permanent_errors_are_not_retried() {
        let source = Scripted::new(vec![PERMANENT]);
        let cache = CachedSecret::builder(source.clone())
            .max_attempts(5)
            .build();
        assert!(cache.get().await.is_err());
        assert_eq!(source.calls(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn transient_errors_retry_with_seeded_full_jitter() {
        let source = Scripted::new(vec![TRANSIENT, TRANSIENT, ok("tok")]);
        let base = Duration::from_millis(100);
        let cap = Duration::from_secs(2);
        let cache = CachedSecret::builder(source.clone())
            .max_attempts(3)
            .retry_backoff(base, cap)
            .jitter_seed(42)
            .build();
        assert_eq!(value(&cache.get().await.unwrap()), "tok");
        let times = source.times();
        assert_eq!(times.len(), 3);
        let mut expected = Jitter::new(42);
        let first = expected.full(base);
        let second = expected.full(base * 2);
        assert_eq!(times[1] - times[0], first);
        assert_eq!(times[2] - times[1], second);
        assert!(first <= base && second <= base * 2);
    }

    #[tokio::test(start_paused = true)]
    async fn gives_up_after_max_attempts() {
        let source = Scripted::new(vec![TRANSIENT]);
        let cache = CachedSecret::builder(source.clone())
            .max_attempts(3)
            .build();
        assert!(cache.get().await.is_err());
        assert_eq!(source.calls(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn overall_deadline_bounds_a_hanging_source() {
        // The gate is never opened: the source hangs.
        let source = Scripted::gated(vec![ok("never")]);
        let cache = CachedSecret::builder(source.clone())
            .deadline(Duration::from_secs(5))
            .build();
        let start = Instant::now();
        let err = cache.get().await.unwrap_err();
        assert_eq!(Instant::now() - start, Duration::from_secs(5));
        assert!(err.to_string().contains("deadline"), "{err}");
    }

    #[tokio::test(start_paused = true)]
    async fn backoff_after_failure_does_not_hammer_the_store() {
        let source = Scripted::new(vec![TRANSIENT, TRANSIENT, ok("tok")]);
        let cache = CachedSecret::builder(source.clone())
            .max_attempts(1)
            .failure_backoff(Duration::from_secs(10), Duration::from_secs(60))
            .jitter_seed(7)
            .build();
        assert!(cache.get().await.is_err());
        assert_eq!(source.calls(), 1);
        // During the backoff (at least half of 10 s) callers fail at once, without a fetch.
        for _ in 0..100 {
            let err = cache.get().await.unwrap_err();
            assert!(err.is_backing_off());
        }
        tokio::time::advance(Duration::from_secs(4)).await;
        assert!(cache.get().await.unwrap_err().is_backing_off());
        assert_eq!(source.calls(), 1);
        // After the full ceiling a fetch happens again (fails; the next backoff doubles).
        tokio::time::advance(Duration::from_secs(6)).await;
        assert!(!cache.get().await.unwrap_err().is_backing_off());
        assert_eq!(source.calls(), 2);
        tokio::time::advance(Duration::from_secs(9)).await;
        assert!(cache.get().await.unwrap_err().is_backing_off());
        tokio::time::advance(Duration::from_secs(11)).await;
        assert_eq!(value(&cache.get().await.unwrap()), "tok");
        assert_eq!(source.calls(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn failed_refresh_ahead_backs_off_and_keeps_serving() {
        let source = Scripted::new(vec![ok("one"), TRANSIENT]);
        let cache = CachedSecret::builder(source.clone())
            .ttl(Duration::from_secs(100))
            .refresh_ahead(Duration::from_secs(30))
            .max_attempts(1)
            .failure_backoff(Duration::from_secs(20), Duration::from_secs(20))
            .build();
        assert_eq!(value(&cache.get().await.unwrap()), "one");
        tokio::time::advance(Duration::from_secs(71)).await;
        for _ in 0..20 {
            assert_eq!(value(&cache.get().await.unwrap()), "one");
            tokio::task::yield_now().await;
        }
        assert_eq!(source.calls(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn refresh_after_rejection_fetches_once_and_skips_newer() {
        let source = Scripted::new(vec![ok("old"), ok("new")]);
        let cache = CachedSecret::new(source.clone());
        let old = cache.get().await.unwrap();
        let (a, b) = tokio::join!(
            cache.refresh_after_rejection(&old),
            cache.refresh_after_rejection(&old)
        );
        assert_eq!(value(&a.unwrap()), "new");
        assert_eq!(value(&b.unwrap()), "new");
        assert_eq!(source.calls(), 2);
        // Rejecting an older generation when a newer one exists returns it without fetching.
        assert_eq!(
            value(&cache.refresh_after_rejection(&old).await.unwrap()),
            "new"
        );
        assert_eq!(source.calls(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_cancelled_caller_does_not_cancel_the_fetch() {
        let source = Scripted::gated(vec![ok("tok")]);
        let cache = CachedSecret::new(source.clone());
        let first = tokio::spawn({
            let cache = cache.clone();
            async move { cache.get().await }
        });
        while source.calls() == 0 {
            tokio::task::yield_now().await;
        }
        first.abort();
        let waiter = tokio::spawn({
            let cache = cache.clone();
            async move { cache.get().await }
        });
        tokio::task::yield_now().await;
        source.release(1);
        assert_eq!(value(&waiter.await.unwrap().unwrap()), "tok");
        assert_eq!(source.calls(), 1);
    }

    #[test]
    fn no_runtime_is_an_error_not_a_panic() {
        let cache = CachedSecret::new(Scripted::new(vec![ok("tok")]));
        let mut get = std::pin::pin!(cache.get());
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        match get.as_mut().poll(&mut cx) {
            std::task::Poll::Ready(Err(err)) => {
                assert!(err.to_string().contains("no tokio runtime"), "{err}");
            }
            other => panic!("expected an error, got {other:?}"),
        }
    }

    #[test]
    fn debug_hides_the_secret() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        rt.block_on(async {
            let cache = CachedSecret::new(Scripted::new(vec![ok("hunter2-secret")]));
            let snapshot = cache.get().await.unwrap();
            let text = format!("{cache:?} {snapshot:?}");
            assert!(!text.contains("hunter2"), "{text}");
        });
    }

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
}
