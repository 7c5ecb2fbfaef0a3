//! Behaviour of `AuthLayer`, one test per rule.

use std::{
    convert::Infallible,
    fmt,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
};

use base64::Engine as _;
use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use secrecy::ExposeSecret;
use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
use tower_mlflow_auth::{
    AuthLayer, AuthRejection, Authenticator, Authorization, Challenge, Credentials,
    CredentialsError, CredentialsRef, Exemptions, Malformed, Scheme, first_of,
};

type Body = Full<Bytes>;

/// Accepts alice:wonderland (Basic) and the bearer token `t0ken`; counts its calls.
#[derive(Clone, Default)]
struct Users {
    calls: Arc<AtomicUsize>,
}

impl Authenticator for Users {
    type Error = Infallible;

    async fn authenticate(
        &self,
        credentials: Credentials,
    ) -> Result<Option<Authorization>, Infallible> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        Ok(match credentials {
            Credentials::Basic { username, password }
                if username == "alice" && password.expose_secret() == "wonderland" =>
            {
                Some(Authorization::new(username, Scheme::Basic).with_admin(true))
            }
            Credentials::Bearer { token } if token.expose_secret() == "t0ken" => {
                Some(Authorization::new("bot", Scheme::Bearer))
            }
            _ => None,
        })
    }

    fn challenges(&self) -> &[Challenge] {
        &[Challenge::BASIC, Challenge::BEARER]
    }
}

#[derive(Debug)]
struct BackendDown;

impl fmt::Display for BackendDown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("database at db.internal:5432 refused the connection")
    }
}

impl std::error::Error for BackendDown {}

/// Echoes the principal's subject (or `anonymous`) in the body and an `x-admin` header.
async fn whoami(request: Request<Body>) -> Result<Response<Body>, Infallible> {
    let who = request.extensions().get::<Authorization>().cloned();
    let sensitive = request
        .headers()
        .get(header::AUTHORIZATION)
        .is_some_and(HeaderValue::is_sensitive);
    let mut response = Response::new(Full::from(
        who.as_ref()
            .map_or("anonymous".to_owned(), |a| a.subject().to_owned()),
    ));
    if let Some(who) = who {
        response
            .headers_mut()
            .insert("x-admin", HeaderValue::from(u16::from(who.is_admin())));
    }
    if sensitive {
        response
            .headers_mut()
            .insert("x-authorization-sensitive", HeaderValue::from_static("1"));
    }
    Ok(response)
}

fn basic(user: &str, password: &str) -> String {
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Basic {encoded}")
}

fn get(path: &str) -> http::request::Builder {
    Request::get(path)
}

async fn call<A: Authenticator>(layer: AuthLayer<A>, request: Request<Body>) -> Response<Body> {
    ServiceBuilder::new()
        .layer(layer)
        .service_fn(whoami)
        .oneshot(request)
        .await
        .unwrap()
}

async fn body_text(response: Response<Body>) -> String {
    use http_body_util::BodyExt;
    String::from_utf8(
        response
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec(),
    )
    .unwrap()
}

#[tokio::test]
async fn authenticated_request_reaches_inner_with_principal() {
    let request = get("/api/2.0/mlflow/experiments/search")
        .header(header::AUTHORIZATION, basic("alice", "wonderland"))
        .body(Body::default())
        .unwrap();
    let response = call(AuthLayer::new(Users::default()), request).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["x-admin"], "1");
    assert_eq!(response.headers()["x-authorization-sensitive"], "1");
    assert_eq!(body_text(response).await, "alice");
}

#[tokio::test]
async fn missing_credentials_get_401_with_challenges_and_skip_the_authenticator() {
    let users = Users::default();
    let request = get("/").body(Body::default()).unwrap();
    let response = call(AuthLayer::new(users.clone()), request).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let challenges: Vec<_> = response
        .headers()
        .get_all(header::WWW_AUTHENTICATE)
        .iter()
        .collect();
    assert_eq!(
        challenges,
        [r#"Basic realm="mlflow""#, r#"Bearer realm="mlflow""#]
    );
    assert_eq!(
        response.extensions().get::<AuthRejection>(),
        Some(&AuthRejection::Missing)
    );
    assert_eq!(users.calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn wrong_password_gets_401() {
    let request = get("/")
        .header(header::AUTHORIZATION, basic("alice", "wrong"))
        .body(Body::default())
        .unwrap();
    let response = call(AuthLayer::new(Users::default()), request).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        response.extensions().get::<AuthRejection>(),
        Some(&AuthRejection::Invalid(Scheme::Basic))
    );
    assert_eq!(
        response.headers()[header::WWW_AUTHENTICATE],
        r#"Basic realm="mlflow""#
    );
}

#[tokio::test]
async fn rejected_bearer_token_gets_invalid_token_challenge() {
    let request = get("/")
        .header(header::AUTHORIZATION, "Bearer nope")
        .body(Body::default())
        .unwrap();
    let response = call(AuthLayer::new(Users::default()), request).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let challenges: Vec<_> = response
        .headers()
        .get_all(header::WWW_AUTHENTICATE)
        .iter()
        .collect();
    assert_eq!(
        challenges,
        [
            r#"Basic realm="mlflow""#,
            r#"Bearer realm="mlflow", error="invalid_token""#
        ]
    );
}

#[tokio::test]
async fn realm_is_configurable_and_validated() {
    let layer = AuthLayer::new(Users::default())
        .with_realm("tracking server")
        .unwrap();
    let response = call(layer, get("/").body(Body::default()).unwrap()).await;
    assert_eq!(
        response.headers()[header::WWW_AUTHENTICATE],
        r#"Basic realm="tracking server""#
    );
    assert!(AuthLayer::new(Users::default()).with_realm("a\"b").is_err());
    assert!(AuthLayer::new(Users::default()).with_realm("a\nb").is_err());
}

#[tokio::test]
async fn hostile_headers_get_401_without_calling_the_authenticator() {
    let users = Users::default();
    let oversized = format!("Bearer {}", "x".repeat(9 * 1024));
    let cases: Vec<Vec<&[u8]>> = vec![
        vec![
            b"Basic YWxpY2U6d29uZGVybGFuZA==",
            b"Basic YWxpY2U6d29uZGVybGFuZA==",
        ],
        vec![b"Basic ***"],
        vec![b"Basic YWxpY2U="],         // "alice", no colon
        vec![b"Basic OndvbmRlcmxhbmQ="], // ":wonderland", empty username
        vec![b"Basic /w=="],             // non-UTF-8
        vec![b"Basic \xff\xfe"],         // non-ASCII header bytes
        vec![oversized.as_bytes()],
        vec![b"Negotiate abc"],
    ];
    for values in cases {
        let mut request = get("/").body(Body::default()).unwrap();
        for v in &values {
            request
                .headers_mut()
                .append(header::AUTHORIZATION, HeaderValue::from_bytes(v).unwrap());
        }
        let response = call(AuthLayer::new(users.clone()), request).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{values:?}");
        assert!(
            matches!(
                response.extensions().get::<AuthRejection>(),
                Some(AuthRejection::Malformed(_))
            ),
            "{values:?}"
        );
    }
    assert_eq!(users.calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn scheme_is_case_insensitive() {
    for scheme in ["basic", "BASIC", "bAsIc"] {
        let value = basic("alice", "wonderland").replacen("Basic", scheme, 1);
        let request = get("/")
            .header(header::AUTHORIZATION, value)
            .body(Body::default())
            .unwrap();
        assert_eq!(
            call(AuthLayer::new(Users::default()), request)
                .await
                .status(),
            StatusCode::OK
        );
    }
}

#[tokio::test]
async fn backend_failure_is_503_without_the_error_text() {
    let failing = |_c: Credentials| async { Err::<Option<Authorization>, _>(BackendDown) };
    let request = get("/")
        .header(header::AUTHORIZATION, basic("alice", "wonderland"))
        .body(Body::default())
        .unwrap();
    let response = call(AuthLayer::new(failing), request).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(!response.headers().contains_key(header::WWW_AUTHENTICATE));
    assert_eq!(
        response.extensions().get::<AuthRejection>(),
        Some(&AuthRejection::Unavailable)
    );
    let body = body_text(response).await;
    assert!(!body.contains("db.internal"));
}

#[tokio::test]
async fn grpc_requests_get_trailers_only_statuses() {
    let grpc = |auth: Option<String>| {
        let mut b = Request::post("/mlflow.Tracking/GetRun")
            .header(header::CONTENT_TYPE, "application/grpc");
        if let Some(auth) = auth {
            b = b.header(header::AUTHORIZATION, auth);
        }
        b.body(Body::default()).unwrap()
    };
    let response = call(AuthLayer::new(Users::default()), grpc(None)).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["grpc-status"], "16");
    assert_eq!(response.headers()["grpc-message"], "missing credentials");
    assert_eq!(response.headers()[header::CONTENT_TYPE], "application/grpc");
    assert!(!response.headers().contains_key(header::WWW_AUTHENTICATE));

    let failing = |_c: Credentials| async { Err::<Option<Authorization>, _>(BackendDown) };
    let response = call(AuthLayer::new(failing), grpc(Some(basic("a", "b")))).await;
    assert_eq!(response.headers()["grpc-status"], "14");

    let response = call(
        AuthLayer::new(Users::default()),
        grpc(Some("Bearer t0ken".into())),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(!response.headers().contains_key("grpc-status"));
    assert_eq!(body_text(response).await, "bot");
}

#[tokio::test]
async fn exempt_paths_skip_authentication_and_carry_no_principal() {
    let users = Users::default();
    let layer = AuthLayer::new(users.clone()).with_exemptions(Exemptions::mlflow_defaults());
    let service = ServiceBuilder::new().layer(layer).service_fn(whoami);

    // Even a principal smuggled in by an outer layer is removed.
    let mut request = get("/health").body(Body::default()).unwrap();
    request
        .extensions_mut()
        .insert(Authorization::new("mallory", Scheme::Basic));
    let response = service.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(body_text(response).await, "anonymous");

    for spelling in [
        "/health/",
        "//health",
        "/%68ealth",
        "/healthz",
        "/x/../health",
        "/HEALTH",
    ] {
        let response = service
            .clone()
            .oneshot(get(spelling).body(Body::default()).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{spelling}");
    }
    let post = Request::post("/health").body(Body::default()).unwrap();
    assert_eq!(
        service.oneshot(post).await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(users.calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn first_of_tries_both_and_offers_both_challenges() {
    let basic_only = |c: Credentials| async move {
        Ok::<_, Infallible>(match c {
            Credentials::Basic { username, .. } if username == "carol" => {
                Some(Authorization::new(username, Scheme::Basic))
            }
            _ => None,
        })
    };
    #[derive(Clone)]
    struct Tokens;
    impl Authenticator for Tokens {
        type Error = BackendDown;
        async fn authenticate(&self, c: Credentials) -> Result<Option<Authorization>, BackendDown> {
            match c {
                Credentials::Bearer { token } if token.expose_secret() == "down" => {
                    Err(BackendDown)
                }
                Credentials::Bearer { .. } => Ok(Some(Authorization::new("svc", Scheme::Bearer))),
                _ => Ok(None),
            }
        }
        fn challenges(&self) -> &[Challenge] {
            &[Challenge::BEARER]
        }
    }
    let layer = || AuthLayer::new(first_of(basic_only, Tokens));
    let req = |auth: &str| {
        get("/")
            .header(header::AUTHORIZATION, auth)
            .body(Body::default())
            .unwrap()
    };

    let response = call(layer(), req(&basic("carol", "x"))).await;
    assert_eq!(body_text(response).await, "carol");
    let response = call(layer(), req("Bearer anything")).await;
    assert_eq!(body_text(response).await, "svc");
    let response = call(layer(), req(&basic("dave", "x"))).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let challenges: Vec<_> = response
        .headers()
        .get_all(header::WWW_AUTHENTICATE)
        .iter()
        .collect();
    assert_eq!(
        challenges,
        [r#"Basic realm="mlflow""#, r#"Bearer realm="mlflow""#]
    );
    assert_eq!(
        call(layer(), req("Bearer down")).await.status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
}

#[tokio::test]
async fn custom_rejection_body_keeps_protocol_headers() {
    let layer = AuthLayer::new(Users::default()).with_rejection_response(|r: &AuthRejection| {
        let mut response = Response::new(Full::from(format!("{{\"error\":\"{r}\"}}")));
        *response.status_mut() = r.status();
        response
    });
    let response = ServiceBuilder::new()
        .layer(layer)
        .service_fn(whoami)
        .oneshot(get("/").body(Body::default()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        response.headers()[header::WWW_AUTHENTICATE],
        r#"Basic realm="mlflow""#
    );
    assert_eq!(
        body_text(response).await,
        r#"{"error":"missing credentials"}"#
    );
}

/// An API key in `X-Api-Key`: the custom scheme the crate docs promise in a dozen lines.
#[derive(Clone)]
struct ApiKey;

impl Authenticator for ApiKey {
    type Error = Infallible;

    fn credentials<'a>(
        &self,
        parts: &'a http::request::Parts,
    ) -> Result<CredentialsRef<'a>, CredentialsError> {
        CredentialsRef::from_header(&parts.headers, &http::HeaderName::from_static("x-api-key"))
    }

    async fn authenticate(
        &self,
        credentials: Credentials,
    ) -> Result<Option<Authorization>, Infallible> {
        use subtle::ConstantTimeEq;
        let Credentials::Header { value, .. } = credentials else {
            return Ok(None);
        };
        let ok: bool = value.expose_secret().as_bytes().ct_eq(b"k-123").into();
        Ok(ok.then(|| Authorization::new("ci-bot", Scheme::Header)))
    }

    fn challenges(&self) -> &[Challenge] {
        &[]
    }
}

#[tokio::test]
async fn custom_api_key_scheme() {
    let req = |key: Option<&str>| {
        let mut b = get("/");
        if let Some(key) = key {
            b = b.header("x-api-key", key);
        }
        b.body(Body::default()).unwrap()
    };
    let response = call(AuthLayer::new(ApiKey), req(Some("k-123"))).await;
    assert_eq!(body_text(response).await, "ci-bot");
    let response = call(AuthLayer::new(ApiKey), req(Some("k-999"))).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(!response.headers().contains_key(header::WWW_AUTHENTICATE));
    let response = call(AuthLayer::new(ApiKey), req(None)).await;
    assert_eq!(
        response.extensions().get::<AuthRejection>(),
        Some(&AuthRejection::Missing)
    );
}

#[tokio::test]
async fn poll_ready_forwards_and_call_uses_the_ready_service() {
    let (mut service, mut handle) = tower_test::mock::spawn_layer::<Request<Body>, Response<Body>, _>(
        AuthLayer::new(Users::default()),
    );

    handle.allow(0);
    assert!(service.poll_ready().is_pending());

    handle.allow(1);
    assert!(service.poll_ready().is_ready());
    let request = get("/runs")
        .header(header::AUTHORIZATION, "Bearer t0ken")
        .body(Body::default())
        .unwrap();
    let response = tokio::spawn(service.call(request));

    // The inner service receives the request with the principal attached.
    let (request, send) = handle.next_request().await.unwrap();
    assert_eq!(
        request
            .extensions()
            .get::<Authorization>()
            .unwrap()
            .subject(),
        "bot"
    );
    send.send_response(Response::new(Body::default()));
    assert_eq!(response.await.unwrap().unwrap().status(), StatusCode::OK);
}

#[tokio::test]
async fn rejected_requests_never_reach_the_inner_service() {
    let (mut service, mut handle) = tower_test::mock::spawn_layer::<Request<Body>, Response<Body>, _>(
        AuthLayer::new(Users::default()),
    );
    handle.allow(1);
    assert!(service.poll_ready().is_ready());
    let response = service
        .call(get("/").body(Body::default()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    // Nothing was forwarded: the mock has no pending request.
    assert!(
        tokio::time::timeout(std::time::Duration::from_millis(50), handle.next_request())
            .await
            .is_err()
    );
}

#[tokio::test]
async fn principal_is_cheap_to_share_across_clones() {
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = {
        let calls = calls.clone();
        service_fn(move |r: Request<Body>| {
            calls.fetch_add(1, Ordering::SeqCst);
            whoami(r)
        })
    };
    let mut service = ServiceBuilder::new()
        .layer(AuthLayer::new(Users::default()))
        .service(counted);
    for _ in 0..3 {
        let request = get("/")
            .method(Method::GET)
            .header(header::AUTHORIZATION, "Bearer t0ken")
            .body(Body::default())
            .unwrap();
        let response = service.ready().await.unwrap().call(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    assert_eq!(
        std::mem::size_of::<Authorization>(),
        std::mem::size_of::<usize>(),
        "Authorization is one pointer"
    );
}

#[test]
fn malformed_is_reported_by_kind() {
    assert_eq!(
        AuthRejection::Malformed(Malformed::Repeated).to_string(),
        "malformed credentials (header repeated)"
    );
}

/// Answers bearer `fast` from memory and bearer `slow` only through `authenticate`; counts
/// both kinds of call.
#[derive(Clone, Default)]
struct Remembering {
    verified: Arc<AtomicUsize>,
    remembered: Arc<AtomicUsize>,
}

impl Authenticator for Remembering {
    type Error = Infallible;

    async fn authenticate(
        &self,
        credentials: Credentials,
    ) -> Result<Option<Authorization>, Infallible> {
        self.verified.fetch_add(1, Ordering::SeqCst);
        Ok(match credentials {
            Credentials::Bearer { token } if token.expose_secret() == "slow" => {
                Some(Authorization::new("verified", Scheme::Bearer))
            }
            _ => None,
        })
    }

    fn try_accept_now(&self, credentials: &CredentialsRef<'_>) -> Option<Authorization> {
        self.remembered.fetch_add(1, Ordering::SeqCst);
        (credentials.scheme() == Scheme::Bearer && credentials.expose_secret() == "fast")
            .then(|| Authorization::new("remembered", Scheme::Bearer))
    }
}

#[tokio::test]
async fn credentials_accepted_from_memory_skip_the_verification() {
    let authenticator = Remembering::default();
    let bearer = |token: &str| {
        get("/api/2.0/mlflow/runs/get")
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .body(Body::default())
            .unwrap()
    };

    let fast = call(AuthLayer::new(authenticator.clone()), bearer("fast")).await;
    assert_eq!(fast.status(), StatusCode::OK);
    assert_eq!(fast.headers()["x-authorization-sensitive"], "1");
    assert_eq!(body_text(fast).await, "remembered");
    assert_eq!(authenticator.remembered.load(Ordering::SeqCst), 1);
    assert_eq!(authenticator.verified.load(Ordering::SeqCst), 0);

    // "Not known now" is not a rejection: the verification runs and decides.
    let slow = call(AuthLayer::new(authenticator.clone()), bearer("slow")).await;
    assert_eq!(body_text(slow).await, "verified");
    let wrong = call(AuthLayer::new(authenticator.clone()), bearer("wrong")).await;
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(authenticator.remembered.load(Ordering::SeqCst), 3);
    assert_eq!(authenticator.verified.load(Ordering::SeqCst), 2);

    // A principal smuggled in by the caller is still removed on the fast path.
    let mut smuggled = bearer("fast");
    smuggled
        .extensions_mut()
        .insert(Authorization::new("mallory", Scheme::Bearer));
    let response = call(AuthLayer::new(authenticator.clone()), smuggled).await;
    assert_eq!(body_text(response).await, "remembered");
}

#[tokio::test]
async fn first_of_answers_from_memory_only_through_its_first() {
    let first = Remembering::default();
    let second = Remembering::default();
    let either = first_of(first.clone(), second.clone());
    let fast = Credentials::Bearer {
        token: "fast".into(),
    };
    assert_eq!(
        either.try_accept_now(&fast.borrowed()).unwrap().subject(),
        "remembered"
    );
    // The first cannot answer "slow" now, and it might accept it once verified: the second
    // must not answer in its place.
    let slow = Credentials::Bearer {
        token: "slow".into(),
    };
    assert!(either.try_accept_now(&slow.borrowed()).is_none());
    assert_eq!(second.remembered.load(Ordering::SeqCst), 0);

    let boxed = tower_mlflow_auth::BoxAuthenticator::new(first_of(first, second));
    assert_eq!(
        boxed.try_accept_now(&fast.borrowed()).unwrap().subject(),
        "remembered"
    );
    let shared = Arc::new(Remembering::default());
    assert_eq!(
        shared.try_accept_now(&fast.borrowed()).unwrap().subject(),
        "remembered"
    );
}
