use std::{
    convert::Infallible,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, Request, Response, StatusCode, header::AUTHORIZATION};
use http_body_util::{Full, combinators::BoxBody};
use secrecy::SecretString;
use tower::{Service, ServiceBuilder, ServiceExt, service_fn};

use super::*;
use crate::{
    CachedSecret, HostAllowlist,
    format::{HeaderMode, HeaderTemplate, SecretFormat},
    source::{Fetched, SecretSource, SourceError, Static},
};

/// A source that returns the secrets in order (the last one repeats) and counts fetches.
#[derive(Clone)]
struct Rotating {
    secrets: Arc<Mutex<Vec<&'static str>>>,
    fetches: Arc<AtomicUsize>,
}

impl Rotating {
    fn new(secrets: &[&'static str]) -> Self {
        Self {
            secrets: Arc::new(Mutex::new(secrets.iter().rev().copied().collect())),
            fetches: Arc::new(AtomicUsize::new(0)),
        }
    }

    fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }
}

impl SecretSource for Rotating {
    async fn fetch(&self) -> Result<Fetched, SourceError> {
        self.fetches.fetch_add(1, Ordering::SeqCst);
        let mut secrets = self.secrets.lock().unwrap();
        let secret = if secrets.len() > 1 {
            secrets.pop().unwrap()
        } else {
            secrets[0]
        };
        Ok(Fetched::new(SecretString::from(secret)))
    }
}

struct Failing;

impl SecretSource for Failing {
    async fn fetch(&self) -> Result<Fetched, SourceError> {
        Err(SourceError::permanent("vault said no"))
    }
}

type Seen = Arc<Mutex<Vec<HeaderMap>>>;

/// An inner service that records request headers and answers 401 unless `Authorization`
/// equals `accept` (or, with `accept = None`, always 200).
fn recorder<B: Send + 'static>(
    accept: Option<&'static str>,
) -> (
    impl Service<Request<B>, Response = Response<String>, Error = Infallible, Future: Send>
    + Clone
    + Send
    + std::fmt::Debug,
    Seen,
) {
    let seen: Seen = Arc::default();
    let service = service_fn({
        let seen = Arc::clone(&seen);
        move |req: Request<B>| {
            seen.lock().unwrap().push(req.headers().clone());
            let ok = match accept {
                None => true,
                Some(want) => req.headers().get(AUTHORIZATION).is_some_and(|v| v == want),
            };
            let status = if ok {
                StatusCode::OK
            } else {
                StatusCode::UNAUTHORIZED
            };
            async move {
                Ok::<_, Infallible>(
                    Response::builder()
                        .status(status)
                        .body(String::new())
                        .unwrap(),
                )
            }
        }
    });
    (service, seen)
}

fn allow(patterns: &[&str]) -> HostAllowlist {
    patterns
        .iter()
        .fold(HostAllowlist::builder(), |b, p| b.host(*p))
        .build()
        .unwrap()
}

fn get(uri: &str) -> Request<String> {
    Request::get(uri).body(String::new()).unwrap()
}

fn builder(secret: impl SecretSource) -> SecretHeaderLayerBuilder {
    SecretHeaderLayer::builder(CachedSecret::new(secret)).allowlist(allow(&["localhost:*"]))
}

/// A layer with 401 recovery (one forced fetch per 30 s) over `inner`.
fn recovering<S>(secret: impl SecretSource, inner: S) -> SecretHeader<S, CloneBody> {
    let layer = builder(secret)
        .recover_unauthorized(Duration::from_secs(30))
        .build()
        .unwrap();
    ServiceBuilder::new().layer(layer).service(inner)
}

#[tokio::test]
async fn sets_a_sensitive_header_replacing_any_existing_value() {
    let (inner, seen) = recorder(None);
    let service = ServiceBuilder::new()
        .layer(builder(Static::new("tok")).build().unwrap())
        .service(inner);
    let mut request = get("http://localhost:5000/api");
    request
        .headers_mut()
        .append(AUTHORIZATION, "Bearer caller".parse().unwrap());
    request
        .headers_mut()
        .append(AUTHORIZATION, "Bearer caller2".parse().unwrap());
    service.oneshot(request).await.unwrap();
    let headers = &seen.lock().unwrap()[0];
    let values: Vec<_> = headers.get_all(AUTHORIZATION).iter().collect();
    assert_eq!(values, ["Bearer tok"]);
    assert!(values[0].is_sensitive());
}

#[tokio::test]
async fn disallowed_origin_goes_out_without_the_header() {
    let (inner, seen) = recorder(None);
    let service = ServiceBuilder::new()
        .layer(
            builder(Static::new("tok"))
                .template(HeaderTemplate::raw(HeaderName::from_static("x-api-key")))
                .build()
                .unwrap(),
        )
        .service(inner);
    let mut request = get("http://elsewhere.test/api");
    request
        .headers_mut()
        .insert("x-api-key", "set-by-caller".parse().unwrap());
    let response = service.oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(!seen.lock().unwrap()[0].contains_key("x-api-key"));
}

#[tokio::test]
async fn disallowed_origin_fails_under_the_fail_policy() {
    let (inner, seen) = recorder(None);
    let service = ServiceBuilder::new()
        .layer(
            builder(Static::new("tok"))
                .on_disallowed_host(DisallowedHost::Fail)
                .build()
                .unwrap(),
        )
        .service(inner);
    let err = service
        .oneshot(get("https://evil.test:8443/"))
        .await
        .unwrap_err();
    assert!(err.is_not_allowed());
    assert_eq!(
        err.to_string(),
        "origin https://evil.test:8443 is not on the secret's host allowlist; request not sent"
    );
    assert!(seen.lock().unwrap().is_empty());
}

#[tokio::test]
async fn unavailable_secret_fails_closed() {
    let (inner, seen) = recorder(None);
    let service = ServiceBuilder::new()
        .layer(builder(Failing).build().unwrap())
        .service(inner);
    let err = service
        .oneshot(get("http://localhost:1/"))
        .await
        .unwrap_err();
    assert!(err.is_unavailable());
    assert!(err.to_string().contains("vault said no"), "{err}");
    assert!(
        seen.lock().unwrap().is_empty(),
        "the request must not be sent"
    );
}

#[tokio::test]
async fn malformed_secret_fails_closed_without_echo() {
    let (inner, seen) = recorder(None);
    let service = ServiceBuilder::new()
        .layer(
            builder(Static::new("hunter2-no-colon"))
                .template(HeaderTemplate::basic())
                .build()
                .unwrap(),
        )
        .service(inner);
    let err = service
        .oneshot(get("http://localhost:1/"))
        .await
        .unwrap_err();
    assert!(err.is_unavailable());
    assert!(!format!("{err} {err:?}").contains("hunter2"));
    assert!(seen.lock().unwrap().is_empty());
}

#[tokio::test]
async fn relative_uris_use_the_default_origin() {
    let (inner, seen) = recorder(None);
    let with_origin = ServiceBuilder::new()
        .layer(
            builder(Static::new("tok"))
                .default_origin("http://localhost:50051".parse().unwrap())
                .build()
                .unwrap(),
        )
        .service(inner.clone());
    with_origin
        .oneshot(get("/grpc.health.v1.Health/Check"))
        .await
        .unwrap();
    let without = ServiceBuilder::new()
        .layer(builder(Static::new("tok")).build().unwrap())
        .service(inner);
    without
        .oneshot(get("/grpc.health.v1.Health/Check"))
        .await
        .unwrap();
    let seen = seen.lock().unwrap();
    assert!(seen[0].contains_key(AUTHORIZATION));
    assert!(!seen[1].contains_key(AUTHORIZATION));
}

#[test]
fn build_errors() {
    let secret = || CachedSecret::new(Static::new("tok"));
    let err = SecretHeaderLayer::builder(secret()).build().unwrap_err();
    assert_eq!(err, SecretHeaderLayerBuildError::NoAllowedHosts);
    let err = SecretHeaderLayer::builder(secret())
        .allowlist(allow(&["localhost:*"]))
        .header(AUTHORIZATION, HeaderMode::Basic, SecretFormat::Token)
        .build()
        .unwrap_err();
    assert!(matches!(err, SecretHeaderLayerBuildError::Template(_)));
    let err = SecretHeaderLayer::builder(secret())
        .allowlist(allow(&["localhost:*"]))
        .default_origin("https://other.test".parse().unwrap())
        .build()
        .unwrap_err();
    assert_eq!(err, SecretHeaderLayerBuildError::DefaultOriginNotAllowed);
    let err = SecretHeaderLayer::builder(secret())
        .allowlist(allow(&["localhost:*"]))
        .default_origin("http://localhost:1/some/path".parse().unwrap())
        .build()
        .unwrap_err();
    assert_eq!(err, SecretHeaderLayerBuildError::InvalidDefaultOrigin);
}

#[tokio::test]
async fn unauthorized_refreshes_once_and_replays_without_a_marker() {
    let source = Rotating::new(&["old", "new"]);
    let (inner, seen) = recorder(Some("Bearer new"));
    let service = recovering(source.clone(), inner);
    let request = Request::post("http://localhost:1/api")
        .header("x-trace", "1")
        .body(Full::new(Bytes::from_static(b"{\"name\":\"e\"}")))
        .unwrap();
    let response = service.oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(source.fetches(), 2);
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0]["authorization"], "Bearer old");
    assert_eq!(seen[1]["authorization"], "Bearer new");
    // The replay carries exactly the original headers: no marker.
    let names: Vec<_> = seen[1].keys().map(|k| k.as_str().to_owned()).collect();
    assert_eq!(names, ["x-trace", "authorization"]);
}

#[tokio::test]
async fn unauthorized_twice_gives_the_401_back() {
    let source = Rotating::new(&["old", "still-wrong"]);
    let (inner, seen) = recorder(Some("Bearer right"));
    let service = recovering(source.clone(), inner);
    let response = service.oneshot(get("http://localhost:1/")).await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(seen.lock().unwrap().len(), 2, "one replay, no more");
}

#[tokio::test(start_paused = true)]
async fn forced_refreshes_are_throttled() {
    let source = Rotating::new(&["wrong"]);
    let (inner, seen) = recorder(Some("Bearer right"));
    let service = recovering(source.clone(), inner);
    for _ in 0..5 {
        let response = service
            .clone()
            .oneshot(get("http://localhost:1/"))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }
    // First fetch plus one forced refresh; the other four 401s did not fetch or replay,
    // and the refresh brought the same secret back, so nothing was replayed at all.
    assert_eq!(source.fetches(), 2);
    assert_eq!(seen.lock().unwrap().len(), 5);
    tokio::time::advance(Duration::from_secs(30)).await;
    service
        .clone()
        .oneshot(get("http://localhost:1/"))
        .await
        .unwrap();
    assert_eq!(source.fetches(), 3);
}

/// A store whose value the test replaces, as a rotation does.
#[derive(Clone)]
struct Store(Arc<Mutex<&'static str>>, Arc<AtomicUsize>);

impl SecretSource for Store {
    async fn fetch(&self) -> Result<Fetched, SourceError> {
        self.1.fetch_add(1, Ordering::SeqCst);
        Ok(Fetched::new(SecretString::from(*self.0.lock().unwrap())))
    }
}

#[tokio::test(start_paused = true)]
async fn a_store_that_lags_behind_the_server_is_caught_up_within_two_seconds() {
    let store = Store(Arc::new(Mutex::new("old")), Arc::default());
    // The server has rotated already: only the new secret is accepted.
    let (inner, _seen) = recorder(Some("Bearer new"));
    let service = recovering(store.clone(), inner);
    let status = || async {
        let response = service.clone().oneshot(get("http://localhost:1/")).await;
        response.unwrap().status()
    };
    // The forced fetch returns the refused secret: the 401 is given back, not replayed.
    assert_eq!(status().await, StatusCode::UNAUTHORIZED);
    assert_eq!(store.1.load(Ordering::SeqCst), 2);
    tokio::time::advance(Duration::from_millis(300)).await;
    *store.0.lock().unwrap() = "new";
    let step = Duration::from_millis(200);
    let mut waited = Duration::ZERO;
    // A client calling every 200 ms, as the peer test's does.
    while status().await != StatusCode::OK {
        tokio::time::advance(step).await;
        waited += step;
        assert!(
            waited <= Duration::from_secs(2),
            "still refused {waited:?} after the store had the new secret"
        );
    }
    assert_eq!(store.1.load(Ordering::SeqCst), 3, "one more forced fetch");
    assert_eq!(status().await, StatusCode::OK);
}

#[tokio::test]
async fn a_newer_cached_secret_is_replayed_without_fetching() {
    let source = Rotating::new(&["old", "new"]);
    let secret = CachedSecret::new(source.clone());
    let old = secret.get().await.unwrap();
    let (inner, seen) = recorder(Some("Bearer new"));
    let layer = SecretHeaderLayer::builder(secret.clone())
        .allowlist(allow(&["localhost:*"]))
        .recover_unauthorized(Duration::from_secs(3600))
        .build()
        .unwrap();
    // Rotate behind the layer's back after it has sent "old" on a first request.
    let service = ServiceBuilder::new().layer(layer).service(service_fn({
        let secret = secret.clone();
        let inner = inner.clone();
        move |req: Request<String>| {
            let secret = secret.clone();
            let old = old.clone();
            let inner = inner.clone();
            async move {
                if req.headers()[AUTHORIZATION] == "Bearer old" {
                    secret.refresh_after_rejection(&old).await.unwrap();
                }
                inner.oneshot(req).await
            }
        }
    }));
    let response = service.oneshot(get("http://localhost:1/")).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(source.fetches(), 2, "no fetch beyond the rotation itself");
    assert_eq!(seen.lock().unwrap().len(), 2);
}

#[tokio::test]
async fn streaming_bodies_are_not_replayed() {
    let source = Rotating::new(&["old", "new"]);
    let (inner, seen) = recorder(Some("Bearer new"));
    let service = ServiceBuilder::new()
        .layer(
            // A `BoxBody` is not `Clone`: the hook has to be chosen, and this one never copies.
            builder(source.clone())
                .recover_unauthorized_with(Duration::from_secs(30), NoReplay)
                .build()
                .unwrap(),
        )
        .service(inner);
    let body = BoxBody::new(Full::new(Bytes::from_static(b"x")));
    let request = Request::post("http://localhost:1/").body(body).unwrap();
    let response = service.oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(source.fetches(), 1);
    assert_eq!(seen.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn inner_errors_are_wrapped() {
    let service = ServiceBuilder::new()
        .layer(builder(Static::new("tok")).build().unwrap())
        .service(service_fn(|_req: Request<String>| async {
            Err::<Response<String>, _>(std::io::Error::other("connection reset"))
        }));
    let err = service
        .oneshot(get("http://localhost:1/"))
        .await
        .unwrap_err();
    let inner = err.into_inner().unwrap();
    assert_eq!(inner.to_string(), "connection reset");
}
