use std::{
    error::Error,
    fmt,
    num::NonZeroUsize,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use secrecy::{ExposeSecret, SecretString};

use super::*;
use crate::credentials::Scheme;

#[derive(Debug)]
struct BackendDown;

impl fmt::Display for BackendDown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad("backend down")
    }
}

impl Error for BackendDown {}

fn basic(username: &str, password: &str) -> Credentials {
    Credentials::Basic {
        username: username.to_owned(),
        password: SecretString::from(password),
    }
}

/// Accepts any user whose password is "right", fails for user "down", and counts calls.
#[derive(Clone, Debug, Default)]
struct Counting {
    calls: Arc<AtomicUsize>,
}

impl Counting {
    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

impl Authenticator for Counting {
    type Error = BackendDown;

    async fn authenticate(
        &self,
        credentials: Credentials,
    ) -> Result<Option<Authorization>, BackendDown> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        // Slow enough that concurrent callers overlap.
        tokio::time::sleep(Duration::from_millis(20)).await;
        match credentials {
            Credentials::Basic { username, .. } if username == "down" => Err(BackendDown),
            Credentials::Basic { username, password } if password.expose_secret() == "right" => {
                Ok(Some(Authorization::new(username, Scheme::Basic)))
            }
            Credentials::Bearer { token } if token.expose_secret() == "tok" => {
                Ok(Some(Authorization::new("robot", Scheme::Bearer)))
            }
            _ => Ok(None),
        }
    }
}

fn cached() -> (Counting, Cached<Counting>) {
    let counting = Counting::default();
    (counting.clone(), Cached::new(counting).unwrap())
}

async fn subject(cache: &Cached<Counting>, username: &str, password: &str) -> Option<String> {
    let principal = cache.authenticate(basic(username, password)).await.unwrap();
    principal.map(|p| p.subject().to_owned())
}

#[tokio::test]
async fn a_hit_does_not_call_the_inner_authenticator() {
    let (counting, cache) = cached();
    assert_eq!(
        subject(&cache, "alice", "right").await.as_deref(),
        Some("alice")
    );
    assert_eq!(
        subject(&cache, "alice", "right").await.as_deref(),
        Some("alice")
    );
    assert_eq!(counting.calls(), 1);
}

#[tokio::test]
async fn the_synchronous_shortcut_answers_only_hits() {
    let (counting, cache) = cached();
    let alice = basic("alice", "right");
    assert!(
        cache.try_accept_now(&alice.borrowed()).is_none(),
        "a miss answered now"
    );
    assert!(subject(&cache, "alice", "right").await.is_some());
    assert_eq!(
        cache.try_accept_now(&alice.borrowed()).unwrap().subject(),
        "alice"
    );
    assert!(
        cache
            .try_accept_now(&basic("alice", "wrong").borrowed())
            .is_none()
    );
    cache.invalidate("alice");
    assert!(cache.try_accept_now(&alice.borrowed()).is_none());
    assert_eq!(counting.calls(), 1);
}

#[tokio::test]
async fn entries_expire_after_the_time_to_live() {
    let counting = Counting::default();
    let cache = Cached::builder(counting.clone())
        .ttl(Duration::from_millis(50))
        .build()
        .unwrap();
    assert!(subject(&cache, "alice", "right").await.is_some());
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(subject(&cache, "alice", "right").await.is_some());
    assert_eq!(counting.calls(), 2);
}

#[tokio::test]
async fn rejections_are_not_cached() {
    let (counting, cache) = cached();
    assert_eq!(subject(&cache, "alice", "wrong").await, None);
    assert_eq!(subject(&cache, "alice", "wrong").await, None);
    assert_eq!(counting.calls(), 2);
}

#[tokio::test]
async fn backend_errors_are_not_cached_and_keep_their_message() {
    let (counting, cache) = cached();
    for _ in 0..2 {
        let error = cache
            .authenticate(basic("down", "right"))
            .await
            .unwrap_err();
        assert_eq!(error.to_string(), "backend down");
    }
    assert_eq!(counting.calls(), 2);
}

#[tokio::test]
async fn a_cached_user_with_another_password_is_checked_again_and_rejected() {
    let (counting, cache) = cached();
    assert!(subject(&cache, "alice", "right").await.is_some());
    assert_eq!(subject(&cache, "alice", "wrong").await, None);
    assert_eq!(counting.calls(), 2);
}

#[test]
fn keys_separate_users_passwords_schemes_and_boundaries() {
    let (_, cache) = cached();
    let key = |c: Credentials| cache.shared.keys.key_for(&c.borrowed());
    let header = |name: &'static str, value: &str| Credentials::Header {
        name: http::HeaderName::from_static(name),
        value: SecretString::from(value),
    };
    let bearer = |token: &str| Credentials::Bearer {
        token: SecretString::from(token),
    };
    let keys = [
        key(basic("alice", "p1")),
        key(basic("alice", "p2")),
        key(basic("bob", "p1")),
        // Same bytes overall, split differently.
        key(basic("a\0", "b")),
        key(basic("a", "\0b")),
        key(bearer("p1")),
        key(header("x-api-key", "p1")),
        key(header("x-other-key", "p1")),
    ];
    for (i, a) in keys.iter().enumerate() {
        for b in &keys[i + 1..] {
            assert_ne!(a, b);
        }
    }
    assert_eq!(key(basic("alice", "p1")), keys[0]);
}

#[test]
fn separate_caches_use_separate_random_keys() {
    let (_, one) = cached();
    let (_, two) = cached();
    let credentials = basic("alice", "right");
    assert_ne!(
        one.shared.keys.key_for(&credentials.borrowed()),
        two.shared.keys.key_for(&credentials.borrowed())
    );
}

#[tokio::test]
async fn invalidate_drops_only_that_users_entries() {
    let (counting, cache) = cached();
    assert!(subject(&cache, "alice", "right").await.is_some());
    assert!(subject(&cache, "bob", "right").await.is_some());
    cache.invalidate("alice");
    assert!(subject(&cache, "alice", "right").await.is_some());
    assert!(subject(&cache, "bob", "right").await.is_some());
    assert_eq!(counting.calls(), 3, "alice checked twice, bob once");
}

#[tokio::test]
async fn invalidate_matches_the_principal_subject_of_tokens() {
    let (counting, cache) = cached();
    let token = || Credentials::Bearer {
        token: SecretString::from("tok"),
    };
    assert!(cache.authenticate(token()).await.unwrap().is_some());
    cache.invalidate("robot");
    assert!(cache.authenticate(token()).await.unwrap().is_some());
    assert_eq!(counting.calls(), 2);
}

#[tokio::test]
async fn clear_drops_everything() {
    let (counting, cache) = cached();
    assert!(subject(&cache, "alice", "right").await.is_some());
    assert!(subject(&cache, "bob", "right").await.is_some());
    cache.clear();
    assert!(subject(&cache, "alice", "right").await.is_some());
    assert!(subject(&cache, "bob", "right").await.is_some());
    assert_eq!(counting.calls(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_identical_misses_verify_once() {
    let (counting, cache) = cached();
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let cache = cache.clone();
            tokio::spawn(async move { subject(&cache, "alice", "right").await })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap().as_deref(), Some("alice"));
    }
    assert_eq!(counting.calls(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_identical_wrong_passwords_verify_once_and_all_fail() {
    // Coalescing holds for rejections too, yet none is cached.
    let (counting, cache) = cached();
    let gate = Arc::new(tokio::sync::Barrier::new(20));
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let (cache, gate) = (cache.clone(), Arc::clone(&gate));
            tokio::spawn(async move {
                gate.wait().await;
                subject(&cache, "alice", "wrong").await
            })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap(), None);
    }
    let during = counting.calls();
    assert!((1..=20).contains(&during));
    assert_eq!(subject(&cache, "alice", "wrong").await, None);
    assert_eq!(counting.calls(), during + 1);
}

/// Blocks every check until released, and reports when one has started.
#[derive(Clone)]
struct Gated {
    started: Arc<tokio::sync::Notify>,
    release: Arc<tokio::sync::Semaphore>,
    calls: Arc<AtomicUsize>,
}

impl Gated {
    fn new() -> Self {
        Self {
            started: Arc::new(tokio::sync::Notify::new()),
            release: Arc::new(tokio::sync::Semaphore::new(0)),
            calls: Arc::default(),
        }
    }
}

impl Authenticator for Gated {
    type Error = BackendDown;

    async fn authenticate(
        &self,
        credentials: Credentials,
    ) -> Result<Option<Authorization>, BackendDown> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let Credentials::Basic { username, .. } = credentials else {
            return Ok(None);
        };
        if username != "warm" {
            self.started.notify_one();
            let _released = self.release.acquire().await;
        }
        Ok(Some(Authorization::new(username, Scheme::Basic)))
    }
}

#[tokio::test]
async fn hits_do_not_wait_for_a_busy_verification_permit() {
    let gated = Gated::new();
    let cache = Cached::builder(gated.clone())
        .max_concurrent_verifications(1)
        .build()
        .unwrap();
    assert!(
        cache
            .authenticate(basic("warm", "pw"))
            .await
            .unwrap()
            .is_some()
    );

    // Take the only permit with a check that does not finish until released.
    let slow = tokio::spawn({
        let cache = cache.clone();
        async move { cache.authenticate(basic("slow", "pw")).await }
    });
    gated.started.notified().await;
    assert_eq!(cache.shared.verifications.available_permits(), 0);

    // The hit is answered while the permit is held (the timeout only guards a hang).
    let hit = tokio::time::timeout(
        Duration::from_secs(30),
        cache.authenticate(basic("warm", "pw")),
    )
    .await
    .expect("a cache hit waited for the verification permit");
    assert_eq!(hit.unwrap().unwrap().subject(), "warm");

    gated.release.add_permits(1);
    assert!(slow.await.unwrap().unwrap().is_some());
}

#[tokio::test]
async fn a_cancelled_request_keeps_its_permit_until_the_check_ends() {
    let gated = Gated::new();
    let cache = Cached::builder(gated.clone())
        .max_concurrent_verifications(1)
        .build()
        .unwrap();
    let abandoned = tokio::spawn({
        let cache = cache.clone();
        async move { cache.authenticate(basic("slow", "pw")).await }
    });
    gated.started.notified().await;
    // The client hangs up while its (slow) check is running.
    abandoned.abort();
    assert!(abandoned.await.unwrap_err().is_cancelled());
    // The check is still running, so its permit is still taken: a second client cannot
    // start another slow check alongside it.
    assert_eq!(cache.shared.verifications.available_permits(), 0);
    let next = tokio::spawn({
        let cache = cache.clone();
        async move { cache.authenticate(basic("other", "pw")).await }
    });
    tokio::task::yield_now().await;
    assert_eq!(gated.calls.load(Ordering::SeqCst), 1);

    // Once the abandoned check ends, the permit returns and the next check runs.
    gated.release.add_permits(2);
    assert!(next.await.unwrap().unwrap().is_some());
    assert_eq!(gated.calls.load(Ordering::SeqCst), 2);
    assert_eq!(cache.shared.verifications.available_permits(), 1);
}

#[tokio::test]
async fn waiting_requests_take_over_when_the_leading_one_is_cancelled() {
    let gated = Gated::new();
    let cache = Cached::builder(gated.clone())
        .max_concurrent_verifications(1)
        .build()
        .unwrap();
    // The only permit is busy, so bob's first request waits for it, leading a flight that
    // bob's second request joins.
    let busy = tokio::spawn({
        let cache = cache.clone();
        async move { cache.authenticate(basic("busy", "pw")).await }
    });
    gated.started.notified().await;
    let spawn_bob = || {
        let cache = cache.clone();
        tokio::spawn(async move { cache.authenticate(basic("bob", "pw")).await })
    };
    let leading = spawn_bob();
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    let waiting = spawn_bob();
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert_eq!(cache.shared.flights.len(), 2);

    // The leading request is cancelled before its check started.
    leading.abort();
    assert!(leading.await.unwrap_err().is_cancelled());
    gated.release.add_permits(2);
    assert!(busy.await.unwrap().unwrap().is_some());
    let answer = tokio::time::timeout(Duration::from_secs(30), waiting)
        .await
        .expect("the waiting request was never answered");
    assert_eq!(answer.unwrap().unwrap().unwrap().subject(), "bob");
    assert_eq!(gated.calls.load(Ordering::SeqCst), 2, "bob checked once");
    assert!(cache.shared.flights.is_empty());
}

#[tokio::test]
async fn a_check_that_raced_with_invalidate_answers_but_is_not_kept() {
    let gated = Gated::new();
    let cache = Cached::new(gated.clone()).unwrap();
    let slow = tokio::spawn({
        let cache = cache.clone();
        async move { cache.authenticate(basic("slow", "old-password")).await }
    });
    gated.started.notified().await;
    // The password changes while the old one is being checked.
    cache.invalidate("slow");
    gated.release.add_permits(1);
    assert!(slow.await.unwrap().unwrap().is_some());

    gated.release.add_permits(1);
    assert!(
        cache
            .authenticate(basic("slow", "old-password"))
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(
        gated.calls.load(Ordering::SeqCst),
        2,
        "the raced answer was cached"
    );
}

#[tokio::test]
async fn the_size_bound_evicts() {
    let counting = Counting::default();
    let cache = Cached::builder(counting).max_entries(5).build().unwrap();
    for i in 0..50 {
        assert!(
            subject(&cache, &format!("user{i}"), "right")
                .await
                .is_some()
        );
    }
    assert!(cache.entry_count() <= 5, "{} entries", cache.entry_count());
}

#[tokio::test]
async fn a_full_cache_drops_its_oldest_entry() {
    let (counting, _) = cached();
    let cache = Cached::builder(counting.clone())
        .max_entries(2)
        .build()
        .unwrap();
    for user in ["first", "second", "third"] {
        assert!(subject(&cache, user, "right").await.is_some());
    }
    assert_eq!(cache.entry_count(), 2);
    assert_eq!(counting.calls(), 3);
    // "second" and "third" are still cached; "first" was dropped and is checked again.
    assert!(subject(&cache, "second", "right").await.is_some());
    assert!(subject(&cache, "third", "right").await.is_some());
    assert_eq!(counting.calls(), 3);
    assert!(subject(&cache, "first", "right").await.is_some());
    assert_eq!(counting.calls(), 4);
}

#[tokio::test]
async fn a_full_cache_drops_expired_entries_first() {
    let (counting, _) = cached();
    let cache = Cached::builder(counting.clone())
        .max_entries(3)
        .ttl(Duration::from_millis(100))
        .build()
        .unwrap();
    for user in ["a", "b", "c"] {
        assert!(subject(&cache, user, "right").await.is_some());
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(subject(&cache, "d", "right").await.is_some());
    assert_eq!(cache.entry_count(), 1, "the expired entries stayed");
}

#[test]
fn bad_settings_are_config_errors() {
    let build = |b: CachedBuilder<Counting>| b.build().map(drop).unwrap_err();
    let builder = || Cached::builder(Counting::default());
    assert!(matches!(
        build(builder().ttl(Duration::ZERO)),
        CachedBuildError::ZeroTtl
    ));
    assert!(matches!(
        build(builder().ttl(Cached::<Counting>::MAX_TTL + Duration::from_secs(1))),
        CachedBuildError::TtlTooLong
    ));
    assert!(matches!(
        build(builder().max_entries(0)),
        CachedBuildError::ZeroMaxEntries
    ));
    assert!(matches!(
        build(builder().max_concurrent_verifications(0)),
        CachedBuildError::ZeroConcurrentVerifications
    ));
    assert!(matches!(
        build(builder().max_concurrent_verifications(usize::MAX)),
        CachedBuildError::TooManyConcurrentVerifications
    ));
}

#[test]
fn defaults_follow_the_documentation() {
    let (_, cache) = cached();
    let settings = cache.shared.settings;
    assert_eq!(settings.ttl, Cached::<Counting>::DEFAULT_TTL);
    assert_eq!(
        settings.max_entries,
        Cached::<Counting>::DEFAULT_MAX_ENTRIES
    );
    let cores = std::thread::available_parallelism().map_or(1, NonZeroUsize::get);
    assert_eq!(settings.max_concurrent_verifications, cores);
    assert_eq!(cache.shared.verifications.available_permits(), cores);
}

#[tokio::test]
async fn debug_shows_settings_but_no_secret() {
    let (_, cache) = cached();
    assert!(subject(&cache, "alice", "hunter2-secret").await.is_none());
    assert!(subject(&cache, "alice", "right").await.is_some());
    let shown = format!("{cache:?}");
    assert!(shown.contains("ttl: 300s"), "{shown}");
    assert!(!shown.contains("hunter2"));
    assert!(!shown.contains("right"));
    assert!(!shown.contains("key_mac"));
}

#[tokio::test]
async fn extraction_and_challenges_are_the_inner_ones() {
    let inner = |_: Credentials| async { Ok::<_, BackendDown>(None) };
    let cache = Cached::new(inner).unwrap();
    assert_eq!(cache.challenges(), [Challenge::BASIC]);
    let (parts, ()) = http::Request::builder()
        .header("authorization", "Bearer abc")
        .body(())
        .unwrap()
        .into_parts();
    assert_eq!(
        cache.credentials(&parts).map(|found| found.scheme()),
        Ok(Scheme::Bearer)
    );
}

/// Basic only, and hands its revocation listeners to the test.
#[derive(Clone, Debug, Default)]
struct Revoking {
    inner: Counting,
    listeners: Arc<std::sync::Mutex<Vec<RevocationListener>>>,
}

impl Authenticator for Revoking {
    type Error = BackendDown;

    async fn authenticate(
        &self,
        credentials: Credentials,
    ) -> Result<Option<Authorization>, BackendDown> {
        self.inner.authenticate(credentials).await
    }

    fn accepts(&self, credentials: &CredentialsRef<'_>) -> bool {
        credentials.scheme() == Scheme::Basic
    }

    fn subscribe_revocations(&self, listener: RevocationListener) {
        self.listeners.lock().unwrap().push(listener);
    }
}

impl Revoking {
    fn revoke(&self, revoked: &crate::authenticator::Revoked) {
        for listener in self.listeners.lock().unwrap().iter() {
            listener.notify(revoked);
        }
    }
}

#[tokio::test]
async fn revocations_from_the_store_drop_entries_at_once() {
    use crate::authenticator::Revoked;

    let store = Revoking::default();
    let cache = Cached::new(store.clone()).unwrap();
    assert_eq!(
        store.listeners.lock().unwrap().len(),
        1,
        "subscribed when built"
    );
    for user in ["alice", "bob"] {
        assert!(
            cache
                .authenticate(basic(user, "right"))
                .await
                .unwrap()
                .is_some()
        );
    }
    store.revoke(&Revoked::Users(vec!["alice".into()]));
    assert!(
        cache
            .try_accept_now(&basic("alice", "right").borrowed())
            .is_none()
    );
    assert!(
        cache
            .try_accept_now(&basic("bob", "right").borrowed())
            .is_some()
    );
    store.revoke(&Revoked::All);
    assert_eq!(cache.entry_count(), 0);
    // A dropped cache is not kept alive by the store's listener.
    drop(cache);
    store.revoke(&Revoked::All);
}

#[tokio::test]
async fn credentials_the_inner_cannot_accept_are_rejected_without_a_check() {
    let store = Revoking::default();
    let cache = Cached::new(store.clone()).unwrap();
    let token = Credentials::Bearer {
        token: SecretString::from("tok"),
    };
    assert!(!cache.accepts(&token.borrowed()) && cache.accepts(&basic("a", "b").borrowed()));
    assert!(cache.authenticate(token).await.unwrap().is_none());
    assert_eq!(store.inner.calls(), 0);
    // An outer cache hears the store through the inner one.
    let _outer = Cached::new(cache).unwrap();
    assert_eq!(store.listeners.lock().unwrap().len(), 2);
}
