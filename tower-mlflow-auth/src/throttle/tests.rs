//! The throttle in front of a real `AuthLayer`, on tokio's paused clock.

use std::{
    convert::Infallible,
    io,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use base64::Engine as _;
use http::{Request, Response, StatusCode, header, request::Parts};
use secrecy::ExposeSecret;
use subtle::ConstantTimeEq;
use tokio::sync::oneshot;
use tower::{Service, ServiceBuilder, ServiceExt, util::BoxCloneService};

use super::{ClientKey, ThrottleBuildError, ThrottleLayer, ThrottleReleaseLayer, Throttled};
use crate::{
    AuthLayer, Authenticator, Authorization, Credentials, CredentialsRef, Scheme,
    auth::handoff::Handoff,
};

/// Accepts the password `right`; `cached` with it is answered from memory; the user `down`
/// is a backend failure. Counts the password checks it runs, each taking 100 ms, and the
/// times it is asked to accept from memory.
#[derive(Clone, Default)]
struct Passwords {
    checks: Arc<AtomicUsize>,
    asks: Arc<AtomicUsize>,
}

fn is_right(password: &secrecy::SecretString) -> bool {
    is_right_text(password.expose_secret())
}

fn is_right_text(password: &str) -> bool {
    password.as_bytes().ct_eq(b"right").into()
}

impl Passwords {
    fn checks(&self) -> usize {
        self.checks.load(Ordering::SeqCst)
    }

    fn asks(&self) -> usize {
        self.asks.load(Ordering::SeqCst)
    }
}

impl Authenticator for Passwords {
    type Error = io::Error;

    async fn authenticate(&self, credentials: Credentials) -> io::Result<Option<Authorization>> {
        self.checks.fetch_add(1, Ordering::SeqCst);
        // A hash takes time; concurrent requests overlap in it.
        tokio::time::sleep(Duration::from_millis(100)).await;
        match credentials {
            Credentials::Basic { username, .. } if username == "down" => {
                Err(io::Error::other("backend down"))
            }
            Credentials::Basic { username, password } if is_right(&password) => {
                Ok(Some(Authorization::new(username, Scheme::Basic)))
            }
            _ => Ok(None),
        }
    }

    fn try_accept_now(&self, credentials: &CredentialsRef<'_>) -> Option<Authorization> {
        self.asks.fetch_add(1, Ordering::SeqCst);
        let cached =
            credentials.username() == Some("cached") && is_right_text(credentials.expose_secret());
        cached.then(|| Authorization::new("cached", Scheme::Basic))
    }
}

/// Tests key clients by a header; a real deployment keys by the peer address.
fn by_header(parts: &Parts) -> String {
    parts
        .headers
        .get("x-client")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
        .to_owned()
}

type Svc = BoxCloneService<Request<String>, Response<String>, Infallible>;
type KeyFn = fn(&Parts) -> String;
type TestThrottle = ThrottleLayer<Passwords, KeyFn>;

/// Throttle → AuthLayer → release → a service that answers 200, after `hold` resolves when
/// one is given.
fn stack(passwords: &Passwords, per_minute: u32) -> (Svc, TestThrottle) {
    let throttle = ThrottleLayer::builder(passwords.clone(), by_header as KeyFn)
        .per_minute(per_minute)
        .build()
        .unwrap();
    let service = ServiceBuilder::new()
        .layer(throttle.clone())
        .layer(AuthLayer::new(passwords.clone()))
        .layer(ThrottleReleaseLayer::new())
        .service_fn(|mut request: Request<String>| async move {
            if let Some(hold) = request.extensions_mut().remove::<Hold>() {
                let receiver = hold.0.lock().unwrap().take().unwrap();
                let _ = receiver.await;
            }
            Ok::<_, Infallible>(Response::new(String::from("ok")))
        });
    (BoxCloneService::new(service), throttle)
}

/// Makes the inner service wait for the sender.
#[derive(Clone)]
struct Hold(Arc<std::sync::Mutex<Option<oneshot::Receiver<()>>>>);

fn request(client: &str, user: Option<&str>, password: &str) -> Request<String> {
    let mut builder = Request::get("/api/2.0/mlflow/experiments/search").header("x-client", client);
    if let Some(user) = user {
        let encoded =
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        builder = builder.header(header::AUTHORIZATION, format!("Basic {encoded}"));
    }
    builder.body(String::new()).unwrap()
}

async fn send(service: &Svc, request: Request<String>) -> Response<String> {
    service.clone().oneshot(request).await.unwrap()
}

async fn status(service: &Svc, request: Request<String>) -> StatusCode {
    send(service, request).await.status()
}

/// One request: from `client`, as `user` (no credentials: `None`) with `password`, and the
/// status it must get.
type Case<'a> = (&'a str, Option<&'a str>, &'a str, StatusCode);

/// Sends the cases in turn and checks their statuses.
async fn expect(service: &Svc, cases: &[Case<'_>]) {
    for (client, user, password, expected) in cases {
        let answer = status(service, request(client, *user, password)).await;
        assert_eq!(answer, *expected, "{client} {user:?} {password}");
    }
}

const OK: StatusCode = StatusCode::OK;
const NO: StatusCode = StatusCode::UNAUTHORIZED;
const THROTTLED: StatusCode = StatusCode::TOO_MANY_REQUESTS;

/// Three wrong passwords from `client`, with a limit of three a minute.
async fn exhaust(service: &Svc, client: &str) {
    let wrong = (client, Some("alice"), "wrong", NO);
    expect(service, &[wrong, wrong, wrong]).await;
}

/// With a limit of three, client `a` runs out of tokens; then the cases.
async fn after_exhausting_a(cases: &[Case<'_>]) {
    let (service, _) = stack(&Passwords::default(), 3);
    exhaust(&service, "a").await;
    expect(&service, cases).await;
}

#[tokio::test(start_paused = true)]
async fn beyond_the_limit_the_answer_is_429_without_a_check() {
    let passwords = Passwords::default();
    let (service, _) = stack(&passwords, 3);
    exhaust(&service, "a").await;
    assert_eq!(passwords.checks(), 3);
    // Even the right password is not checked now: the bucket is empty.
    for password in ["wrong", "right"] {
        let response = send(&service, request("a", Some("alice"), password)).await;
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert!(response.extensions().get::<Throttled>().is_some());
    }
    assert_eq!(
        passwords.checks(),
        3,
        "throttled requests never reach the hash"
    );
}

#[tokio::test(start_paused = true)]
async fn retry_after_says_when_the_next_token_is_back_and_it_is() {
    let passwords = Passwords::default();
    let (service, _) = stack(&passwords, 3);
    exhaust(&service, "a").await;
    let response = send(&service, request("a", Some("alice"), "wrong")).await;
    assert_eq!(response.headers()[header::RETRY_AFTER], "20");
    tokio::time::advance(Duration::from_millis(12_500)).await;
    let response = send(&service, request("a", Some("alice"), "wrong")).await;
    assert_eq!(
        response.headers()[header::RETRY_AFTER],
        "8",
        "7.5 s rounded up"
    );
    tokio::time::advance(Duration::from_millis(7_500)).await;
    // One token is back: a right password gives it back, a wrong one uses it up.
    let cases = [
        ("a", Some("alice"), "right", OK),
        ("a", Some("alice"), "wrong", NO),
        ("a", Some("alice"), "wrong", THROTTLED),
    ];
    expect(&service, &cases).await;
    // A whole minute refills the bucket.
    tokio::time::advance(Duration::from_secs(60)).await;
    exhaust(&service, "a").await;
}

#[tokio::test(start_paused = true)]
async fn a_cached_credential_passes_with_an_empty_bucket() {
    after_exhausting_a(&[
        ("a", Some("cached"), "right", OK),
        // Not cached: a right password from that client waits like the guesses.
        ("a", Some("bob"), "right", THROTTLED),
        // A cached user with a wrong password is a miss, and throttled.
        ("a", Some("cached"), "wrong", THROTTLED),
    ])
    .await;
}

#[tokio::test(start_paused = true)]
async fn other_clients_are_unaffected() {
    after_exhausting_a(&[
        ("b", Some("alice"), "wrong", NO),
        ("c", Some("alice"), "right", OK),
        ("a", Some("alice"), "right", THROTTLED),
    ])
    .await;
}

#[tokio::test(start_paused = true)]
async fn only_wrong_credentials_count() {
    let passwords = Passwords::default();
    let (service, throttle) = stack(&passwords, 2);
    for _ in 0..5 {
        // Accepted, backend down (503), no credentials, unreadable credentials.
        let cases = [
            ("a", Some("bob"), "right", OK),
            ("a", Some("down"), "x", StatusCode::SERVICE_UNAVAILABLE),
            ("a", None, "", NO),
        ];
        expect(&service, &cases).await;
        let mut malformed = request("a", None, "");
        malformed
            .headers_mut()
            .insert(header::AUTHORIZATION, "Basic !!!".parse().unwrap());
        assert_eq!(status(&service, malformed).await, NO);
    }
    assert_eq!(throttle.tracked_keys(), 0, "every token was given back");
    let wrong = ("a", Some("alice"), "wrong", NO);
    expect(&service, &[wrong, wrong]).await;
    // With an empty bucket, a request without credentials still gets its plain 401.
    let anonymous = send(&service, request("a", None, "")).await;
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    assert!(anonymous.extensions().get::<Throttled>().is_none());
}

#[tokio::test(start_paused = true)]
async fn concurrent_guesses_cannot_outrun_the_bucket() {
    let passwords = Passwords::default();
    let (service, _) = stack(&passwords, 2);
    // Start all at once: tokens are taken before the checks finish.
    let guesses: Vec<_> = (0..5)
        .map(|_| {
            let service = service.clone();
            tokio::spawn(service.oneshot(request("a", Some("alice"), "wrong")))
        })
        .collect();
    let mut answers = Vec::new();
    for guess in guesses {
        answers.push(guess.await.unwrap().unwrap().status());
    }
    let throttled = answers
        .iter()
        .filter(|s| **s == StatusCode::TOO_MANY_REQUESTS)
        .count();
    assert_eq!(throttled, 3, "{answers:?}");
    assert_eq!(passwords.checks(), 2);
}

#[tokio::test(start_paused = true)]
async fn an_accepted_request_gives_its_token_back_before_its_response() {
    let passwords = Passwords::default();
    let (service, throttle) = stack(&passwords, 1);
    let (release, hold) = oneshot::channel();
    let mut slow = request("a", Some("bob"), "right");
    slow.extensions_mut()
        .insert(Hold(Arc::new(std::sync::Mutex::new(Some(hold)))));
    let mut slow_service = service.clone();
    let slow = tokio::spawn(async move { slow_service.ready().await.unwrap().call(slow).await });
    // Long enough for the check; the response stays pending.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        throttle.tracked_keys(),
        0,
        "given back while the response is pending"
    );
    let answer = status(&service, request("a", Some("bob"), "right")).await;
    assert_eq!(answer, StatusCode::OK);
    release.send(()).unwrap();
    assert_eq!(slow.await.unwrap().unwrap().status(), StatusCode::OK);
}

#[tokio::test(start_paused = true)]
async fn wrong_bearer_tokens_count_like_wrong_passwords() {
    let passwords = Passwords::default();
    let (service, _) = stack(&passwords, 2);
    let bearer = || {
        let mut request = request("a", None, "");
        let token = "Bearer not-a-valid-token".parse().unwrap();
        request.headers_mut().insert(header::AUTHORIZATION, token);
        request
    };
    for expected in [NO, NO, THROTTLED] {
        assert_eq!(status(&service, bearer()).await, expected);
    }
    // The throttle does not care which scheme used the tokens up.
    expect(&service, &[("a", Some("alice"), "right", THROTTLED)]).await;
}

#[tokio::test(start_paused = true)]
async fn grpc_requests_get_resource_exhausted() {
    let passwords = Passwords::default();
    let (service, _) = stack(&passwords, 3);
    exhaust(&service, "a").await;
    let mut grpc = request("a", Some("alice"), "wrong");
    grpc.headers_mut()
        .insert(header::CONTENT_TYPE, "application/grpc".parse().unwrap());
    let response = send(&service, grpc).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["grpc-status"], "8");
    assert_eq!(response.headers()[header::CONTENT_TYPE], "application/grpc");
}

#[tokio::test(start_paused = true)]
async fn the_table_stays_within_max_keys() {
    let passwords = Passwords::default();
    let throttle = ThrottleLayer::builder(passwords.clone(), by_header as KeyFn)
        .per_minute(1)
        .max_keys(8)
        .build()
        .unwrap();
    let service = ServiceBuilder::new()
        .layer(throttle.clone())
        .layer(AuthLayer::new(passwords))
        .service_fn(|_: Request<String>| async {
            Ok::<_, Infallible>(Response::new(String::new()))
        });
    let service = BoxCloneService::new(service);
    for i in 0..100 {
        let client = format!("spoofed-{i}");
        let answer = status(&service, request(&client, Some("alice"), "wrong")).await;
        assert_eq!(answer, StatusCode::UNAUTHORIZED);
        assert!(throttle.tracked_keys() <= 8, "{}", throttle.tracked_keys());
    }
    assert_eq!(throttle.tracked_keys(), 8);
}

#[test]
fn zero_settings_are_build_errors() {
    let builder = || ThrottleLayer::builder(Passwords::default(), by_header as KeyFn);
    let error = builder().per_minute(0).build().unwrap_err();
    assert_eq!(error, ThrottleBuildError::ZeroPerMinute);
    assert!(error.to_string().contains("leave the layer out"), "{error}");
    assert_eq!(
        builder().burst(0).build().unwrap_err(),
        ThrottleBuildError::ZeroBurst
    );
    assert_eq!(
        builder().max_keys(0).build().unwrap_err(),
        ThrottleBuildError::ZeroMaxKeys
    );
    let layer = builder().per_minute(5).burst(2).build().unwrap();
    let debug = format!("{layer:?}");
    assert!(debug.contains("per_minute: 5, burst: 2"), "{debug}");
    assert_eq!(ThrottleLayer::DEFAULT_PER_MINUTE, 20);
}

#[tokio::test(start_paused = true)]
async fn leaving_the_layer_out_turns_throttling_off() {
    // What `--failed-login-limit 0` does in the gateway: `option_layer(None)`.
    let passwords = Passwords::default();
    let none: Option<TestThrottle> = None;
    let service = ServiceBuilder::new()
        .option_layer(none)
        .layer(AuthLayer::new(passwords.clone()))
        .service_fn(|_: Request<String>| async {
            Ok::<_, Infallible>(Response::new(String::new()))
        });
    let service = BoxCloneService::new(service);
    for _ in 0..50 {
        let answer = status(&service, request("a", Some("alice"), "wrong")).await;
        assert_eq!(answer, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(passwords.checks(), 50);
}

#[test]
fn closures_are_client_keys() {
    let (parts, ()) = Request::get("/")
        .header("x-client", "k")
        .body(())
        .unwrap()
        .into_parts();
    assert_eq!((by_header as KeyFn).client_key(&parts), "k");
}

/// Answers with the principal's subject (`-` for none), and fails the test if a handoff
/// reached it.
async fn subject_of(request: Request<String>) -> Result<Response<String>, Infallible> {
    assert!(
        request.extensions().get::<Handoff>().is_none(),
        "a handoff reached the inner service"
    );
    let subject = request
        .extensions()
        .get::<Authorization>()
        .map_or("-", Authorization::subject)
        .to_owned();
    Ok(Response::new(subject))
}

/// `throttle` → `auth` → release → [`subject_of`].
fn handing_over(throttle: TestThrottle, auth: AuthLayer<Passwords>) -> Svc {
    BoxCloneService::new(
        ServiceBuilder::new()
            .layer(throttle)
            .layer(auth)
            .layer(ThrottleReleaseLayer::new())
            .service_fn(subject_of),
    )
}

#[tokio::test(start_paused = true)]
async fn a_throttle_built_for_its_layer_spares_it_the_second_lookup() {
    let passwords = Passwords::default();
    let auth = AuthLayer::new(passwords.clone());
    let throttle = ThrottleLayer::builder_for(&auth, by_header as KeyFn)
        .build()
        .unwrap();
    assert!(format!("{throttle:?}").contains("hands_over: true"));
    // Layered by a clone of the layer, as a router would: the link goes with it.
    let service = handing_over(throttle, auth.clone());
    for round in 1..=3 {
        let response = send(&service, request("a", Some("cached"), "right")).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.body(), "cached");
        assert_eq!(
            passwords.asks(),
            round,
            "asked once a request, by the throttle"
        );
    }
    // A miss is still checked, and counted as a failure when wrong.
    let response = send(&service, request("a", Some("alice"), "right")).await;
    assert_eq!(response.body(), "alice");
    assert_eq!(
        status(&service, request("a", Some("alice"), "wrong")).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(passwords.checks(), 2);

    // Built with `builder`, the throttle hands nothing over: both layers ask.
    let passwords = Passwords::default();
    let unlinked = ThrottleLayer::builder(passwords.clone(), by_header as KeyFn)
        .build()
        .unwrap();
    assert!(format!("{unlinked:?}").contains("hands_over: false"));
    let service = handing_over(unlinked, AuthLayer::new(passwords.clone()));
    let response = send(&service, request("a", Some("cached"), "right")).await;
    assert_eq!(response.body(), "cached");
    assert_eq!(passwords.asks(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_handoff_counts_only_for_the_layer_it_was_built_for() {
    // The throttle's authenticator accepts `cached` from memory; the layer behind it is
    // another one, whose authenticator is a fresh `Passwords` too but not the throttle's:
    // it must ask its own authenticator and not take the throttle's word.
    let theirs = Passwords::default();
    let throttle = ThrottleLayer::builder_for(&AuthLayer::new(theirs.clone()), by_header as KeyFn)
        .build()
        .unwrap();
    let ours = Passwords::default();
    let service = handing_over(throttle, AuthLayer::new(ours.clone()));
    let response = send(&service, request("a", Some("cached"), "right")).await;
    assert_eq!(response.body(), "cached");
    assert_eq!((theirs.asks(), ours.asks()), (1, 1));

    // A handoff already in the request (from whatever put it there) is dropped unread: the
    // layer checks the credentials, and the inner service never sees it.
    let ours = Passwords::default();
    let service = BoxCloneService::new(
        ServiceBuilder::new()
            .layer(AuthLayer::new(ours.clone()))
            .service_fn(subject_of),
    );
    let mut forged = request("a", Some("alice"), "wrong");
    forged.extensions_mut().insert(Handoff {
        link: crate::auth::handoff::Link::new(),
        principal: Authorization::new("admin", Scheme::Basic).with_admin(true),
    });
    assert_eq!(status(&service, forged).await, StatusCode::UNAUTHORIZED);
    assert_eq!(ours.checks(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_handoff_to_an_exempt_path_is_dropped() {
    let passwords = Passwords::default();
    let auth = AuthLayer::new(passwords.clone())
        .with_exemptions(crate::exempt::Exemptions::new().prefix("/health").unwrap());
    let throttle = ThrottleLayer::builder_for(&auth, by_header as KeyFn)
        .build()
        .unwrap();
    let service = handing_over(throttle, auth);
    let mut exempt = request("a", Some("cached"), "right");
    *exempt.uri_mut() = "/health".parse().unwrap();
    let response = send(&service, exempt).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.body(), "-", "an exempt request has no principal");
}
