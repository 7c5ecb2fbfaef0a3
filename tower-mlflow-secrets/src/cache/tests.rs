use std::{
    future::Future,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use secrecy::{ExposeSecret, SecretString};
use tokio::{sync::Semaphore, time::Instant};

use super::{retry::Jitter, *};
use crate::source::{Fetched, SourceError};

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
        .build()
        .unwrap();
    assert_eq!(value(&cache.get().await.unwrap()), "one");
    tokio::time::advance(Duration::from_secs(99)).await;
    assert_eq!(value(&cache.get().await.unwrap()), "one");
    assert_eq!(source.calls(), 1);
    tokio::time::advance(Duration::from_secs(1)).await;
    assert_eq!(value(&cache.get().await.unwrap()), "two");
    assert_eq!(source.calls(), 2);
}

#[test]
fn ttl_out_of_range_is_a_build_error() {
    let build = |ttl| {
        CachedSecret::builder(Scripted::new(vec![ok("one")]))
            .ttl(ttl)
            .build()
            .map(|_| ())
    };
    assert_eq!(
        build(Duration::ZERO),
        Err(CachedSecretBuildError::TtlOutOfRange(Duration::ZERO))
    );
    let too_long = CachedSecret::MAX_TTL + Duration::from_secs(1);
    assert_eq!(
        build(too_long),
        Err(CachedSecretBuildError::TtlOutOfRange(too_long))
    );
    assert_eq!(build(CachedSecret::MAX_TTL), Ok(()));
    assert_eq!(build(Duration::from_millis(1)), Ok(()));
    let err = build(Duration::ZERO).unwrap_err().to_string();
    assert!(
        err.contains("ttl of 0ns") && err.contains("86400 s"),
        "{err}"
    );
}

#[test]
fn other_out_of_range_settings_are_build_errors() {
    use CachedSecretBuildError as E;
    let builder = || CachedSecret::builder(Scripted::new(vec![ok("one")]));
    let secs = Duration::from_secs;
    let cases = [
        (
            builder().max_stale(CachedSecret::MAX_TTL + secs(1)).build(),
            E::MaxStaleTooLong(CachedSecret::MAX_TTL + secs(1)),
        ),
        (
            builder().max_attempts(0).build(),
            E::MaxAttemptsOutOfRange(0),
        ),
        (
            builder().max_attempts(11).build(),
            E::MaxAttemptsOutOfRange(11),
        ),
        (
            builder().retry_backoff(secs(2), secs(1)).build(),
            E::RetryCapBelowBase {
                base: secs(2),
                cap: secs(1),
            },
        ),
        (
            builder().timeout(Duration::from_micros(999)).build(),
            E::TimeoutTooShort(Duration::from_micros(999)),
        ),
        (
            builder().failure_backoff(secs(2), secs(1)).build(),
            E::FailureBackoffCapBelowBase {
                base: secs(2),
                cap: secs(1),
            },
        ),
    ];
    for (result, expected) in cases {
        let err = result.map(|_| ()).unwrap_err();
        assert_eq!(err, expected);
        assert!(!err.to_string().is_empty());
    }
    // The edges of each range are accepted.
    assert!(
        builder()
            .max_stale(CachedSecret::MAX_TTL)
            .max_attempts(CachedSecret::MAX_ATTEMPTS_LIMIT)
            .retry_backoff(secs(1), secs(1))
            .timeout(CachedSecret::MIN_TIMEOUT)
            .failure_backoff(Duration::ZERO, Duration::ZERO)
            .build()
            .is_ok()
    );
}

#[tokio::test(start_paused = true)]
async fn sub_second_ttl_is_used_as_given() {
    let source = Scripted::new(vec![ok("one"), ok("two")]);
    let cache = CachedSecret::builder(source.clone())
        .ttl(Duration::from_millis(200))
        .refresh_ahead(Duration::ZERO)
        .build()
        .unwrap();
    assert_eq!(value(&cache.get().await.unwrap()), "one");
    tokio::time::advance(Duration::from_millis(199)).await;
    assert_eq!(value(&cache.get().await.unwrap()), "one");
    tokio::time::advance(Duration::from_millis(1)).await;
    assert_eq!(value(&cache.get().await.unwrap()), "two");
    assert_eq!(source.calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn refresh_ahead_does_not_make_callers_wait() {
    let source = Scripted::gated(vec![ok("one"), ok("two")]);
    let cache = CachedSecret::builder(source.clone())
        .ttl(Duration::from_secs(100))
        .refresh_ahead(Duration::from_secs(30))
        .build()
        .unwrap();
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
        .build()
        .unwrap();
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
        .build()
        .unwrap();
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
        .build()
        .unwrap();
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
        .build()
        .unwrap();
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
        .build()
        .unwrap();
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
        .build()
        .unwrap();
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
        .build()
        .unwrap();
    assert!(cache.get().await.is_err());
    assert_eq!(source.calls(), 3);
}

#[tokio::test(start_paused = true)]
async fn overall_deadline_bounds_a_hanging_source() {
    // The gate is never opened: the source hangs.
    let source = Scripted::gated(vec![ok("never")]);
    let cache = CachedSecret::builder(source.clone())
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
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
        .build()
        .unwrap();
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
        .build()
        .unwrap();
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

#[tokio::test(start_paused = true)]
async fn many_callers_in_the_refresh_window_start_one_refresh() {
    let source = Scripted::gated(vec![ok("one"), ok("two")]);
    let cache = CachedSecret::builder(source.clone())
        .ttl(Duration::from_secs(100))
        .refresh_ahead(Duration::from_secs(30))
        .build()
        .unwrap();
    source.release(1);
    assert_eq!(value(&cache.get().await.unwrap()), "one");
    tokio::time::advance(Duration::from_secs(75)).await;
    for _ in 0..50 {
        assert_eq!(value(&cache.try_get().unwrap()), "one");
    }
    for _ in 0..10 {
        tokio::task::yield_now().await;
        assert_eq!(value(&cache.try_get().unwrap()), "one");
    }
    assert_eq!(source.calls(), 2);
    source.release(1);
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert_eq!(value(&cache.try_get().unwrap()), "two");
    assert_eq!(source.calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn refresh_ahead_runs_again_for_the_next_secret() {
    let source = Scripted::new(vec![ok("one"), ok("two"), ok("three")]);
    let cache = CachedSecret::builder(source.clone())
        .ttl(Duration::from_secs(100))
        .refresh_ahead(Duration::from_secs(30))
        .build()
        .unwrap();
    assert_eq!(value(&cache.get().await.unwrap()), "one");
    for (advance, next) in [(75, "two"), (71, "three")] {
        tokio::time::advance(Duration::from_secs(advance)).await;
        cache.try_get().unwrap();
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        assert_eq!(value(&cache.try_get().unwrap()), next);
    }
    assert_eq!(source.calls(), 3);
}

#[tokio::test(start_paused = true)]
async fn a_leader_does_not_fetch_what_is_already_there() {
    use super::state::{FlightError, Want};
    let source = Scripted::new(vec![ok("one"), ok("two")]);
    let cache = CachedSecret::new(source.clone());
    let one = cache.get().await.unwrap();
    let shared = &cache.shared;
    // A flight led for a need the current entry meets ends without fetching...
    for want in [
        Want::Fresh,
        Want::Refreshed,
        Want::Replace(one.generation() + 1),
    ] {
        let outcome = shared.reloading.reload(|| shared.fetch(want)).await;
        assert!(matches!(outcome, Err(FlightError::NotNeeded)), "{want:?}");
    }
    assert_eq!(source.calls(), 1);
    // ...and a waiter that needs more looks again and fetches.
    let two = Arc::clone(shared)
        .wait(Want::Replace(one.generation()))
        .await
        .unwrap();
    assert_eq!(value(&two), "two");
    assert_eq!(two.generation(), one.generation() + 1);
    assert_eq!(source.calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_leader_checks_the_backoff_again() {
    use super::state::{FlightError, Want};
    let source = Scripted::new(vec![TRANSIENT]);
    let cache = CachedSecret::builder(source.clone())
        .max_attempts(1)
        .build()
        .unwrap();
    assert!(!cache.get().await.unwrap_err().is_backing_off());
    let shared = &cache.shared;
    let outcome = shared.reloading.reload(|| shared.fetch(Want::Fresh)).await;
    match outcome {
        Err(FlightError::Failed(err)) => assert!(err.is_backing_off(), "{err}"),
        _ => panic!("expected a refusal while backing off"),
    }
    assert_eq!(source.calls(), 1);
}

/// Panics on its first call, hangs on the second when `hang_once` is set, then answers.
struct Unruly {
    calls: AtomicUsize,
    hang_on: Option<usize>,
    panic_on: Option<usize>,
}

impl SecretSource for Unruly {
    async fn fetch(&self) -> Result<Fetched, SourceError> {
        let call = self.calls.fetch_add(1, Ordering::SeqCst);
        if self.panic_on == Some(call) {
            panic!("the source blew up");
        }
        if self.hang_on == Some(call) {
            std::future::pending::<()>().await;
        }
        Ok(Fetched::new(SecretString::from("tok")))
    }
}

#[tokio::test(start_paused = true)]
async fn a_panicking_fetch_leaves_nothing_in_flight() {
    let cache = CachedSecret::new(Unruly {
        calls: AtomicUsize::new(0),
        hang_on: None,
        panic_on: Some(0),
    });
    let err = cache.get().await.expect_err("the fetch panicked");
    assert!(err.to_string().contains("cancelled"), "{err}");
    assert!(!cache.shared.reloading.is_reloading());
    assert_eq!(value(&cache.get().await.unwrap()), "tok");
}

#[tokio::test(start_paused = true)]
async fn a_panicking_background_refresh_lets_the_next_one_start() {
    let cache = CachedSecret::builder(Unruly {
        calls: AtomicUsize::new(0),
        hang_on: None,
        panic_on: Some(1),
    })
    .ttl(Duration::from_secs(100))
    .refresh_ahead(Duration::from_secs(30))
    .build()
    .unwrap();
    let first = cache.get().await.unwrap();
    tokio::time::advance(Duration::from_secs(75)).await;
    // Each `try_get` in the window starts a refresh unless one is running: the first one
    // panics, and a later one must still start and succeed.
    let mut generation = first.generation();
    for _ in 0..100 {
        generation = cache.try_get().unwrap().generation();
        if generation != first.generation() {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert_eq!(generation, first.generation() + 1);
}

#[test]
fn a_fetch_cut_off_by_runtime_shutdown_is_not_waited_for_by_the_next_runtime() {
    let cache = CachedSecret::new(Unruly {
        calls: AtomicUsize::new(0),
        hang_on: Some(0),
        panic_on: None,
    });
    let runtime = || {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap()
    };
    let first = runtime();
    first.block_on(async {
        let hanging = tokio::spawn({
            let cache = cache.clone();
            async move { cache.get().await }
        });
        while !cache.shared.reloading.is_reloading() {
            tokio::task::yield_now().await;
        }
        drop(hanging);
    });
    drop(first);
    assert!(!cache.shared.reloading.is_reloading());
    let second = runtime();
    let snapshot = second.block_on(cache.get()).unwrap();
    assert_eq!(value(&snapshot), "tok");
}
