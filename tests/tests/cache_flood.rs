//! The flood property of `Cached` (issue 4): while many tasks send wrong passwords for a
//! bcrypt user, a user whose credential is cached is still served.
//!
//! A real bcrypt hash is checked with `spawn_blocking` inside a closure authenticator, wrapped
//! in `Cached` with a small number of verification permits, behind `AuthLayer` on a
//! `service_fn`. Everything is asserted by outcome: every cached request succeeds and finishes
//! while every flood task is still running, the flood never runs more hashes at once than
//! there are permits, and the cached user is never hashed again.

use std::{
    collections::HashMap,
    convert::Infallible,
    fmt,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use base64::Engine as _;
use http::{Request, Response, StatusCode, header::AUTHORIZATION};
use secrecy::ExposeSecret;
use tower::{ServiceBuilder, ServiceExt, service_fn};
use tower_mlflow_auth::{AuthLayer, Authorization, Credentials, Scheme, authenticators::Cached};

/// bcrypt cost for the test users: real hashing, yet quick enough for a test.
const BCRYPT_COST: u32 = 8;
/// Hashes allowed at once; fewer than the flood tasks, so the flood must queue.
const PERMITS: usize = 2;
const FLOOD_TASKS: usize = 64;
/// Wrong passwords per flood task. With every task queueing for PERMITS hashes, a task needs
/// about `FLOOD_TASKS / PERMITS * ATTEMPTS_PER_TASK` (256) hash times to finish, far longer
/// than cached requests take, unless cached requests had to queue behind the flood too.
const ATTEMPTS_PER_TASK: u64 = 8;
const GOOD_REQUESTS: usize = 200;
/// Only a guard against a hung test; nothing is asserted about durations.
const HANG_GUARD: Duration = Duration::from_secs(120);

#[derive(Debug)]
struct VerifyFailed;

impl fmt::Display for VerifyFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("bcrypt verification failed to run")
    }
}

impl std::error::Error for VerifyFailed {}

/// What the authenticator saw.
#[derive(Debug, Default)]
struct Stats {
    /// bcrypt checks running right now, and the most ever running at once.
    hashing: AtomicUsize,
    max_hashing: AtomicUsize,
    /// bcrypt checks finished, per user.
    good_checks: AtomicUsize,
    bad_checks: AtomicUsize,
}

/// Counts of the flood's responses.
#[derive(Debug, Default)]
struct FloodOutcome {
    rejected: AtomicUsize,
    other: AtomicUsize,
}

fn basic(username: &str, password: &str) -> Request<String> {
    let encoded =
        base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"));
    Request::builder()
        .uri("/api/2.0/mlflow/experiments/search")
        .header(AUTHORIZATION, format!("Basic {encoded}"))
        .body(String::new())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cached_user_is_served_while_wrong_passwords_flood_a_bcrypt_user() {
    // Owned keys: a `&'static str` key trips rustc's higher-ranked `Send` check (#64552).
    let hashes: Arc<HashMap<String, String>> = Arc::new(HashMap::from([
        (
            "good".to_owned(),
            bcrypt::hash("good-password", BCRYPT_COST).unwrap(),
        ),
        (
            "bad".to_owned(),
            bcrypt::hash("bad-password", BCRYPT_COST).unwrap(),
        ),
    ]));
    let stats = Arc::new(Stats::default());

    let authenticator = {
        let stats = Arc::clone(&stats);
        move |credentials: Credentials| {
            let (hashes, stats) = (Arc::clone(&hashes), Arc::clone(&stats));
            async move {
                let Credentials::Basic { username, password } = credentials else {
                    return Ok(None);
                };
                let Some(hash) = hashes.get(&username).cloned() else {
                    return Ok(None);
                };
                let now = stats.hashing.fetch_add(1, Ordering::SeqCst) + 1;
                stats.max_hashing.fetch_max(now, Ordering::SeqCst);
                let verified = tokio::task::spawn_blocking(move || {
                    bcrypt::verify(password.expose_secret(), &hash)
                })
                .await;
                stats.hashing.fetch_sub(1, Ordering::SeqCst);
                let checks = if username == "good" {
                    &stats.good_checks
                } else {
                    &stats.bad_checks
                };
                checks.fetch_add(1, Ordering::SeqCst);
                match verified {
                    Ok(Ok(true)) => Ok(Some(Authorization::new(username, Scheme::Basic))),
                    Ok(Ok(false)) => Ok(None),
                    Ok(Err(_)) | Err(_) => Err(VerifyFailed),
                }
            }
        }
    };
    let cached = Cached::builder(authenticator)
        .max_concurrent_verifications(PERMITS)
        .build()
        .unwrap();
    let service = ServiceBuilder::new()
        .layer(AuthLayer::new(cached))
        .service(service_fn(|request: Request<String>| async move {
            let who = request
                .extensions()
                .get::<Authorization>()
                .map(|a| a.subject().to_owned());
            Ok::<_, Infallible>(Response::new(who.unwrap_or_default()))
        }));

    // Warm the cache for "good": the one and only bcrypt check for that user.
    let response = service
        .clone()
        .oneshot(basic("good", "good-password"))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(stats.good_checks.load(Ordering::SeqCst), 1);

    // The flood: every task sends new wrong passwords for "bad", one after another.
    let outcome = Arc::new(FloodOutcome::default());
    let flood: Vec<_> = (0..FLOOD_TASKS)
        .map(|task| {
            let (service, outcome) = (service.clone(), Arc::clone(&outcome));
            tokio::spawn(async move {
                for attempt in 0..ATTEMPTS_PER_TASK {
                    let password = format!("wrong-{task}-{attempt}");
                    let response = service
                        .clone()
                        .oneshot(basic("bad", &password))
                        .await
                        .unwrap();
                    let counter = if response.status() == StatusCode::UNAUTHORIZED {
                        &outcome.rejected
                    } else {
                        &outcome.other
                    };
                    counter.fetch_add(1, Ordering::SeqCst);
                }
            })
        })
        .collect();

    // Wait until the flood is in full swing: several wrong passwords already hashed and
    // rejected, with every task still queueing more.
    tokio::time::timeout(HANG_GUARD, async {
        while outcome.rejected.load(Ordering::SeqCst) < 2 * PERMITS {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the flood never got going");

    // The cached user, during the flood.
    let served = tokio::time::timeout(HANG_GUARD, async {
        let mut served = 0;
        for _ in 0..GOOD_REQUESTS {
            let response = service
                .clone()
                .oneshot(basic("good", "good-password"))
                .await
                .unwrap();
            assert_eq!(response.status(), StatusCode::OK);
            assert_eq!(response.body(), "good");
            served += 1;
        }
        served
    })
    .await
    .expect("the cached user was starved by the flood");

    // Every good request finished while every flood task was still running.
    let still_flooding = flood.iter().filter(|task| !task.is_finished()).count();
    for task in &flood {
        task.abort();
    }
    assert_eq!(served, GOOD_REQUESTS);
    assert_eq!(
        still_flooding, FLOOD_TASKS,
        "the flood ended (or a task panicked) before the cached user was served"
    );
    assert!(outcome.rejected.load(Ordering::SeqCst) >= 2 * PERMITS);
    assert_eq!(
        outcome.other.load(Ordering::SeqCst),
        0,
        "a wrong password got a non-401"
    );
    assert!(stats.bad_checks.load(Ordering::SeqCst) >= 2 * PERMITS);

    // The cached user was never hashed again, and the flood never hashed more than
    // PERMITS passwords at once.
    assert_eq!(stats.good_checks.load(Ordering::SeqCst), 1);
    let max_hashing = stats.max_hashing.load(Ordering::SeqCst);
    assert!(
        (1..=PERMITS).contains(&max_hashing),
        "{max_hashing} hashes ran at once with {PERMITS} permits"
    );
    for task in flood {
        let _cancelled = task.await;
    }
}
