//! One verified-credential cache over a chain of password stores (issue 13, item 4):
//! `Cached::new(first_of(htpasswd, mlflow_users))`, tokens after it. Asserted by outcome:
//! how many times each store verifies per request, and that a flood of wrong passwords
//! against one store never holds up the cached users of another.

use std::{
    convert::Infallible,
    fmt,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

mod counting;

use base64::Engine as _;
use http::{Request, Response, StatusCode, header::AUTHORIZATION};
use secrecy::ExposeSecret as _;
use tokio::sync::Semaphore;
use tower::{ServiceBuilder, ServiceExt, service_fn, util::BoxCloneSyncService};
use tower_mlflow_auth::{
    AuthLayer, Authenticator, Authorization, Credentials, CredentialsRef, Scheme,
    authenticators::{Cached, Htpasswd, MlflowUsers, StaticTokens, UserRecord},
    first_of,
};

use crate::counting::Counted;

/// werkzeug `pbkdf2:sha256:1000`, password `mlflow-pass` (reference test vector).
const WERKZEUG: &str = "pbkdf2:sha256:1000$saltsaltsaltsalt$c039c2c345ba54524fdcd18a32558e28e43c097f846c682324d0aa5a2106b4ba";
/// Only a guard against a hung test; nothing is asserted about durations.
const HANG_GUARD: Duration = Duration::from_secs(60);

type Service = BoxCloneSyncService<Request<String>, Response<String>, Infallible>;

/// The layer over a service that answers with the principal's subject.
fn serve<A: Authenticator>(authenticator: A) -> Service {
    BoxCloneSyncService::new(
        ServiceBuilder::new()
            .layer(AuthLayer::new(authenticator))
            .service(service_fn(|request: Request<String>| async move {
                let who = request.extensions().get::<Authorization>();
                let body = who.map(|a| a.subject().to_owned()).unwrap_or_default();
                Ok::<_, Infallible>(Response::new(body))
            })),
    )
}

fn request(authorization: &str) -> Request<String> {
    Request::get("/api/2.0/mlflow/experiments/search")
        .header(AUTHORIZATION, authorization)
        .body(String::new())
        .unwrap()
}

fn basic(username: &str, password: &str) -> String {
    let encoded =
        base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"));
    format!("Basic {encoded}")
}

async fn status(service: &Service, authorization: &str) -> (StatusCode, String) {
    let response = service
        .clone()
        .oneshot(request(authorization))
        .await
        .unwrap();
    (response.status(), response.into_body())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_store_verifies_at_most_once_per_miss_and_never_on_a_hit() {
    let hash = bcrypt::hash("alice-pass", 4).unwrap();
    let htpasswd = Counted::new(Htpasswd::parse(&format!("alice:{hash}\n")).unwrap());
    let users = Counted::new(MlflowUsers::from_users([UserRecord::new("bob", WERKZEUG)]).unwrap());
    let tokens = Counted::new(
        StaticTokens::bearer()
            .token(
                "ci-token-0123456789",
                Authorization::new("ci", Scheme::Bearer),
            )
            .build()
            .unwrap(),
    );
    let passwords = Cached::new(first_of(htpasswd.clone(), users.clone())).unwrap();
    let service = serve(first_of(passwords, tokens.clone()));
    let counts = || (htpasswd.calls(), users.calls(), tokens.calls());

    // A database user: htpasswd says no (its decoy hash), then the database says yes.
    assert_eq!(
        status(&service, &basic("bob", "mlflow-pass")).await.1,
        "bob"
    );
    assert_eq!(counts(), (1, 1, 0));
    // Cached: no store is asked again, htpasswd included.
    for _ in 0..5 {
        assert_eq!(
            status(&service, &basic("bob", "mlflow-pass")).await.1,
            "bob"
        );
    }
    assert_eq!(counts(), (1, 1, 0));

    // An htpasswd user stops at htpasswd.
    assert_eq!(
        status(&service, &basic("alice", "alice-pass")).await.1,
        "alice"
    );
    assert_eq!(
        status(&service, &basic("alice", "alice-pass")).await.1,
        "alice"
    );
    assert_eq!(counts(), (2, 1, 0));

    // A bearer token never reaches the password stores, nor a verification permit.
    assert_eq!(status(&service, "Bearer ci-token-0123456789").await.1, "ci");
    assert_eq!(
        status(&service, "Bearer wrong-token").await.0,
        StatusCode::UNAUTHORIZED
    );
    // The good token was answered on the fast path; the wrong one reached the tokens only.
    assert_eq!(counts(), (2, 1, 1));

    // A wrong password: each store once.
    assert_eq!(
        status(&service, &basic("bob", "wrong")).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(counts(), (3, 2, 1));

    // Concurrent identical misses share one check: still each store once.
    let concurrent: Vec<_> = (0..8)
        .map(|_| {
            let service = service.clone();
            tokio::spawn(async move { status(&service, &basic("bob", "also-wrong")).await.0 })
        })
        .collect();
    for task in concurrent {
        assert_eq!(task.await.unwrap(), StatusCode::UNAUTHORIZED);
    }
    assert!(
        (4..=11).contains(&htpasswd.calls()),
        "{} htpasswd checks",
        htpasswd.calls()
    );
    assert_eq!(
        htpasswd.calls() - 3,
        users.calls() - 2,
        "the same checks reach both"
    );
}

#[derive(Debug)]
struct Never;

impl fmt::Display for Never {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("never")
    }
}

impl std::error::Error for Never {}

/// A slow Basic store: checks of `mallory` wait for the test to open `gate`; everyone else
/// is refused at once. Counts checks per user.
#[derive(Clone)]
struct Gated {
    gate: Arc<Semaphore>,
    waiting: Arc<AtomicUsize>,
    checks_of_bob: Arc<AtomicUsize>,
}

impl Gated {
    fn new() -> Self {
        Self {
            gate: Arc::new(Semaphore::new(0)),
            waiting: Arc::default(),
            checks_of_bob: Arc::default(),
        }
    }
}

impl Authenticator for Gated {
    type Error = Never;

    async fn authenticate(&self, credentials: Credentials) -> Result<Option<Authorization>, Never> {
        let Credentials::Basic { username, .. } = credentials else {
            return Ok(None);
        };
        if username == "bob" {
            self.checks_of_bob.fetch_add(1, Ordering::SeqCst);
        }
        if username == "mallory" {
            self.waiting.fetch_add(1, Ordering::SeqCst);
            let _permit = self.gate.acquire().await;
        }
        Ok(None)
    }

    fn accepts(&self, credentials: &CredentialsRef<'_>) -> bool {
        credentials.scheme() == Scheme::Basic
    }
}

/// The other store: bob with password `right`.
fn database() -> impl Authenticator {
    |credentials: Credentials| async move {
        Ok::<_, Never>(match credentials {
            Credentials::Basic { username, password }
                if username == "bob" && password.expose_secret() == "right" =>
            {
                Some(Authorization::new(username, Scheme::Basic))
            }
            _ => None,
        })
    }
}

/// Starts the flood and returns once its first check holds the only permit.
async fn flood(service: &Service, gated: &Gated) -> Vec<tokio::task::JoinHandle<StatusCode>> {
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let service = service.clone();
            tokio::spawn(async move {
                status(&service, &basic("mallory", &format!("w{i}")))
                    .await
                    .0
            })
        })
        .collect();
    tokio::time::timeout(HANG_GUARD, async {
        while gated.waiting.load(Ordering::SeqCst) == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the flood never reached the store");
    tasks
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_against_one_store_does_not_block_cached_users_of_another() {
    let gated = Gated::new();
    let chain = Cached::builder(first_of(gated.clone(), database()))
        .max_concurrent_verifications(1)
        .build()
        .unwrap();
    let service = serve(chain);
    assert_eq!(status(&service, &basic("bob", "right")).await.1, "bob");

    let flood = flood(&service, &gated).await;
    // The only permit is held by a check that cannot end until the gate opens, and bob is
    // still answered: from the cache, on the fast path, without the slow store.
    let (code, body) = tokio::time::timeout(HANG_GUARD, status(&service, &basic("bob", "right")))
        .await
        .expect("the cached user waited for the flood");
    assert_eq!((code, body.as_str()), (StatusCode::OK, "bob"));
    assert!(
        flood.iter().all(|task| !task.is_finished()),
        "the flood is pending"
    );
    assert_eq!(
        gated.waiting.load(Ordering::SeqCst),
        1,
        "one check at a time"
    );
    assert_eq!(
        gated.checks_of_bob.load(Ordering::SeqCst),
        1,
        "only the first login"
    );

    gated.gate.add_permits(Semaphore::MAX_PERMITS / 2);
    for task in flood {
        assert_eq!(task.await.unwrap(), StatusCode::UNAUTHORIZED);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cache_per_store_makes_the_second_stores_users_wait_for_the_first() {
    // The composition the rule in `authenticator.rs` warns against, shown to fail: bob's
    // own cache is warm, yet his request waits for the slow store's flooded permit.
    let gated = Gated::new();
    let per_store = |a| Cached::builder(a).max_concurrent_verifications(1).build();
    let chain = first_of(
        per_store(gated.clone()).unwrap(),
        Cached::new(database()).unwrap(),
    );
    let service = serve(chain);
    assert_eq!(status(&service, &basic("bob", "right")).await.1, "bob");

    let flood = flood(&service, &gated).await;
    let bob = tokio::spawn({
        let service = service.clone();
        async move { status(&service, &basic("bob", "right")).await }
    });
    // It cannot finish while the gate is closed, however long it is given.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !bob.is_finished(),
        "bob was answered without the flooded store"
    );

    gated.gate.add_permits(Semaphore::MAX_PERMITS / 2);
    assert_eq!(bob.await.unwrap().1, "bob");
    for task in flood {
        assert_eq!(task.await.unwrap(), StatusCode::UNAUTHORIZED);
    }
}
