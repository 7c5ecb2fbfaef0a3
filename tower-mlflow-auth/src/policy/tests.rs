//! The combinators one rule at a time, then the policy step inside `AuthLayer`.

use std::{
    convert::Infallible,
    fmt,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
};

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header, request::Parts};
use http_body_util::{BodyExt, Full};
use secrecy::ExposeSecret;
use tower::{ServiceBuilder, ServiceExt};

use super::*;
use crate::{
    AuthLayer, AuthRejection, Authenticator, Credentials, CredentialsRef, Exemptions,
    MlflowRejectionResponse, credentials::Scheme,
};

#[derive(Debug)]
struct Down;

impl fmt::Display for Down {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("permission table unreachable")
    }
}

impl std::error::Error for Down {}

/// Always gives the same answer, from the shortcut too when `now`; counts its `decide`s.
#[derive(Clone)]
struct Scripted {
    answer: Result<Decision, ()>,
    now: bool,
    calls: Arc<AtomicUsize>,
}

impl Scripted {
    fn new(answer: Result<Decision, ()>, now: bool) -> Self {
        Self {
            answer,
            now,
            calls: Arc::default(),
        }
    }

    fn allow() -> Self {
        Self::new(Ok(Decision::Allow), false)
    }

    fn deny() -> Self {
        Self::new(Ok(Decision::Deny), false)
    }

    fn down() -> Self {
        Self::new(Err(()), false)
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

impl Policy for Scripted {
    type Error = Down;

    async fn decide(&self, _: &Authorization, _: &Parts) -> Result<Decision, Down> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        tokio::task::yield_now().await;
        self.answer.map_err(|()| Down)
    }

    fn try_decide_now(&self, _: &Authorization, _: &Parts) -> Option<Decision> {
        self.now.then(|| self.answer.ok()).flatten()
    }
}

fn head(method: Method, path: &str) -> Parts {
    Request::builder()
        .method(method)
        .uri(path)
        .body(())
        .unwrap()
        .into_parts()
        .0
}

fn alice() -> Authorization {
    Authorization::new("alice", Scheme::Basic)
}

/// The decision both ways: the shortcut (when it answers) and `decide`.
async fn both<P: Policy>(policy: &P, who: &Authorization, parts: &Parts) -> Decision {
    let decided = policy.decide(who, parts).await.unwrap();
    if let Some(now) = policy.try_decide_now(who, parts) {
        assert_eq!(now, decided, "the shortcut must agree with decide");
    }
    decided
}

// ---- the rules ----

#[tokio::test]
async fn require_admin_allows_admins_only() {
    let parts = head(Method::DELETE, "/api/2.0/mlflow/registered-models/delete");
    let admin = alice().with_admin(true);
    assert_eq!(
        both(&require_admin(), &alice(), &parts).await,
        Decision::Deny
    );
    assert_eq!(
        both(&require_admin(), &admin, &parts).await,
        Decision::Allow
    );
    assert_eq!(
        require_admin().try_decide_now(&admin, &parts),
        Some(Decision::Allow)
    );
}

#[tokio::test]
async fn allow_methods_allows_the_listed_methods_only() {
    let reads = allow_methods([Method::GET, Method::HEAD]);
    for (method, expected) in [
        (Method::GET, Decision::Allow),
        (Method::HEAD, Decision::Allow),
        (Method::POST, Decision::Deny),
        (Method::DELETE, Decision::Deny),
    ] {
        let parts = head(method.clone(), "/runs");
        assert_eq!(both(&reads, &alice(), &parts).await, expected, "{method}");
    }
    let nothing = allow_methods([]);
    assert_eq!(
        both(&nothing, &alice(), &head(Method::GET, "/")).await,
        Decision::Deny
    );
}

#[tokio::test]
async fn allow_users_compares_subjects_exactly() {
    let operators = allow_users(["alice", "ci-bot"]);
    let parts = head(Method::POST, "/runs");
    for (subject, expected) in [
        ("alice", Decision::Allow),
        ("ci-bot", Decision::Allow),
        ("Alice", Decision::Deny),
        ("alice ", Decision::Deny),
        ("", Decision::Deny),
    ] {
        let who = Authorization::new(subject, Scheme::Bearer);
        assert_eq!(
            both(&operators, &who, &parts).await,
            expected,
            "{subject:?}"
        );
    }
}

#[tokio::test]
async fn allow_all_allows_and_decision_helpers() {
    assert_eq!(
        both(&AllowAll, &alice(), &head(Method::DELETE, "/")).await,
        Decision::Allow
    );
    assert_eq!(Decision::allow_if(true), Decision::Allow);
    assert_eq!(Decision::allow_if(false), Decision::Deny);
    assert_eq!(Decision::Allow.inverse(), Decision::Deny);
    assert_eq!(Decision::Deny.inverse(), Decision::Allow);
}

// ---- any_of / all_of ----

#[tokio::test]
async fn any_of_asks_the_second_only_when_the_first_does_not_allow() {
    let parts = head(Method::GET, "/");
    let (first, second) = (Scripted::allow(), Scripted::deny());
    let policy = any_of(first.clone(), second.clone());
    assert_eq!(
        policy.decide(&alice(), &parts).await.unwrap(),
        Decision::Allow
    );
    assert_eq!((first.calls(), second.calls()), (1, 0));

    let (first, second) = (Scripted::deny(), Scripted::deny());
    let policy = any_of(first.clone(), second.clone());
    assert_eq!(
        policy.decide(&alice(), &parts).await.unwrap(),
        Decision::Deny
    );
    assert_eq!((first.calls(), second.calls()), (1, 1));

    let policy = any_of(Scripted::deny(), Scripted::allow());
    assert_eq!(
        policy.decide(&alice(), &parts).await.unwrap(),
        Decision::Allow
    );
}

#[tokio::test]
async fn any_of_reports_a_failure_only_when_nobody_allowed() {
    let parts = head(Method::GET, "/");
    let policy = any_of(Scripted::down(), Scripted::allow());
    assert_eq!(
        policy.decide(&alice(), &parts).await.unwrap(),
        Decision::Allow
    );

    let error = any_of(Scripted::down(), Scripted::deny())
        .decide(&alice(), &parts)
        .await
        .unwrap_err();
    assert!(matches!(error, PolicyPairError::First(Down)));
    assert_eq!(
        error.to_string(),
        "first policy: permission table unreachable"
    );
    assert!(std::error::Error::source(&error).is_some());

    let error = any_of(Scripted::deny(), Scripted::down())
        .decide(&alice(), &parts)
        .await
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "second policy: permission table unreachable"
    );
}

#[tokio::test]
async fn all_of_asks_the_second_only_when_the_first_does_not_deny() {
    let parts = head(Method::GET, "/");
    let (first, second) = (Scripted::deny(), Scripted::allow());
    let policy = all_of(first.clone(), second.clone());
    assert_eq!(
        policy.decide(&alice(), &parts).await.unwrap(),
        Decision::Deny
    );
    assert_eq!((first.calls(), second.calls()), (1, 0));

    let (first, second) = (Scripted::allow(), Scripted::allow());
    let policy = all_of(first.clone(), second.clone());
    assert_eq!(
        policy.decide(&alice(), &parts).await.unwrap(),
        Decision::Allow
    );
    assert_eq!((first.calls(), second.calls()), (1, 1));

    let policy = all_of(Scripted::allow(), Scripted::deny());
    assert_eq!(
        policy.decide(&alice(), &parts).await.unwrap(),
        Decision::Deny
    );
}

#[tokio::test]
async fn all_of_denies_despite_a_failure_and_fails_otherwise() {
    let parts = head(Method::GET, "/");
    let policy = all_of(Scripted::down(), Scripted::deny());
    assert_eq!(
        policy.decide(&alice(), &parts).await.unwrap(),
        Decision::Deny
    );

    let error = all_of(Scripted::down(), Scripted::allow())
        .decide(&alice(), &parts)
        .await
        .unwrap_err();
    assert!(matches!(error, PolicyPairError::First(Down)));
    let error = all_of(Scripted::allow(), Scripted::down())
        .decide(&alice(), &parts)
        .await
        .unwrap_err();
    assert!(matches!(error, PolicyPairError::Second(Down)));
}

#[test]
fn the_shortcut_answers_only_when_a_side_that_waits_cannot_change_it() {
    let waits = Scripted::allow(); // no shortcut
    let (allow, deny) = (
        Scripted::new(Ok(Decision::Allow), true),
        Scripted::new(Ok(Decision::Deny), true),
    );
    let now = |policy: &dyn Fn(&Authorization, &Parts) -> Option<Decision>| {
        policy(&alice(), &head(Method::GET, "/"))
    };
    let any = |a: &Scripted, b: &Scripted| {
        now(&|who, parts| any_of(a.clone(), b.clone()).try_decide_now(who, parts))
    };
    let all = |a: &Scripted, b: &Scripted| {
        now(&|who, parts| all_of(a.clone(), b.clone()).try_decide_now(who, parts))
    };

    assert_eq!(any(&allow, &waits), Some(Decision::Allow));
    assert_eq!(any(&waits, &allow), Some(Decision::Allow));
    assert_eq!(any(&deny, &waits), None);
    assert_eq!(any(&waits, &deny), None);
    assert_eq!(any(&deny, &deny), Some(Decision::Deny));

    assert_eq!(all(&deny, &waits), Some(Decision::Deny));
    assert_eq!(all(&waits, &deny), Some(Decision::Deny));
    assert_eq!(all(&allow, &waits), None);
    assert_eq!(all(&waits, &allow), None);
    assert_eq!(all(&allow, &allow), Some(Decision::Allow));
    assert_eq!(waits.calls(), 0, "the shortcut never waits");
}

// ---- closures, Arc, BoxPolicy ----

#[tokio::test]
async fn a_closure_is_a_policy_without_a_shortcut() {
    let vision_only = |who: &Authorization, parts: &Parts| {
        let allowed =
            !parts.uri.path().contains("/vision/") || who.attribute("team") == Some("vision");
        std::future::ready(Ok::<_, Infallible>(Decision::allow_if(allowed)))
    };
    let parts = head(Method::GET, "/experiments/vision/1");
    let member = alice().with_attribute("team", "vision");
    assert_eq!(vision_only.try_decide_now(&member, &parts), None);
    assert_eq!(
        vision_only.decide(&member, &parts).await.unwrap(),
        Decision::Allow
    );
    assert_eq!(
        vision_only.decide(&alice(), &parts).await.unwrap(),
        Decision::Deny
    );
    let combined = any_of(require_admin(), vision_only);
    assert_eq!(
        combined.decide(&alice(), &parts).await.unwrap(),
        Decision::Deny
    );
}

#[tokio::test]
async fn arc_and_box_forward_both_paths_and_keep_the_error_text() {
    let parts = head(Method::GET, "/");
    let rule = Arc::new(require_admin());
    assert_eq!(rule.try_decide_now(&alice(), &parts), Some(Decision::Deny));
    assert_eq!(rule.decide(&alice(), &parts).await.unwrap(), Decision::Deny);

    let boxed = BoxPolicy::new(any_of(require_admin(), allow_users(["alice"])));
    assert_eq!(
        boxed.try_decide_now(&alice(), &parts),
        Some(Decision::Allow)
    );
    assert!(format!("{boxed:?}").contains("AnyOf"), "{boxed:?}");

    let down = BoxPolicy::new(Scripted::down());
    assert_eq!(down.try_decide_now(&alice(), &parts), None);
    let error = down.decide(&alice(), &parts).await.unwrap_err();
    assert_eq!(error.to_string(), "permission table unreachable");
    let nested = BoxPolicy::new(all_of(down, BoxPolicy::new(AllowAll)));
    assert!(nested.decide(&alice(), &parts).await.is_err());
}

#[test]
fn combinations_and_boxes_are_policies() {
    fn check<P: Policy>(_: &P) {}
    check(&BoxPolicy::new(AllowAll));
    check(&all_of(
        require_admin(),
        any_of(allow_methods([]), allow_users(["a"])),
    ));
}

// ---- inside AuthLayer ----

type Body = Full<Bytes>;

/// `Basic root:…` is an admin, `Basic <user>:…` anyone else, `Bearer t0ken` the bot; with
/// `fast`, principals come from the synchronous shortcut (as from a cache hit).
#[derive(Clone)]
struct Anyone {
    fast: bool,
}

impl Anyone {
    fn principal(credentials: &Credentials) -> Option<Authorization> {
        match credentials {
            Credentials::Basic { username, .. } => Some(
                Authorization::new(username.as_str(), Scheme::Basic).with_admin(username == "root"),
            ),
            Credentials::Bearer { token } if token.expose_secret() == "t0ken" => {
                Some(Authorization::new("bot", Scheme::Bearer))
            }
            _ => None,
        }
    }
}

impl Authenticator for Anyone {
    type Error = Infallible;

    async fn authenticate(
        &self,
        credentials: Credentials,
    ) -> Result<Option<Authorization>, Infallible> {
        Ok(Self::principal(&credentials))
    }

    fn try_accept_now(&self, credentials: &CredentialsRef<'_>) -> Option<Authorization> {
        self.fast
            .then(|| Self::principal(&credentials.to_credentials()))
            .flatten()
    }
}

fn basic(user: &str) -> String {
    use base64::Engine as _;
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:pw"));
    format!("Basic {encoded}")
}

fn request(method: Method, path: &str, user: Option<&str>) -> Request<Body> {
    let mut builder = Request::builder().method(method).uri(path);
    if let Some(user) = user {
        builder = builder.header(header::AUTHORIZATION, basic(user));
    }
    builder.body(Body::default()).unwrap()
}

fn grpc(request: Request<Body>) -> Request<Body> {
    let mut request = request;
    request.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    request
}

/// Sends `request` through `layer` to an inner service that counts its calls and echoes the
/// principal.
async fn send<A, R, P>(layer: AuthLayer<A, R, P>, request: Request<Body>) -> (Response<Body>, usize)
where
    A: Authenticator,
    R: crate::RejectionResponse<Body> + Clone,
    P: Policy,
{
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&calls);
    let response = ServiceBuilder::new()
        .layer(layer)
        .service_fn(move |request: Request<Body>| {
            counted.fetch_add(1, Ordering::SeqCst);
            let who = request
                .extensions()
                .get::<Authorization>()
                .map(|a| a.subject().to_owned());
            async move { Ok::<_, Infallible>(Response::new(Body::from(who.unwrap_or_default()))) }
        })
        .oneshot(request)
        .await
        .unwrap();
    (response, calls.load(Ordering::SeqCst))
}

async fn text(response: Response<Body>) -> String {
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(bytes.to_vec()).unwrap()
}

fn admins_delete(fast: bool) -> AuthLayer<Anyone, MlflowRejectionResponse, impl Policy> {
    AuthLayer::new(Anyone { fast })
        .with_rejection_response(MlflowRejectionResponse)
        .with_policy(any_of(
            require_admin(),
            allow_methods([Method::GET, Method::POST]),
        ))
}

#[tokio::test]
async fn a_denial_is_mlflows_exact_403_and_the_inner_service_is_not_called() {
    for fast in [false, true] {
        let delete = request(
            Method::DELETE,
            "/api/2.0/mlflow/registered-models/delete",
            Some("alice"),
        );
        let (response, calls) = send(admins_delete(fast), delete).await;
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "fast: {fast}");
        assert_eq!(calls, 0, "the inner service must not be called");
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            "text/plain; charset=utf-8"
        );
        assert!(!response.headers().contains_key(header::WWW_AUTHENTICATE));
        assert_eq!(
            response.extensions().get::<AuthRejection>(),
            Some(&AuthRejection::Forbidden)
        );
        assert_eq!(text(response).await, "Permission denied");
    }
}

#[tokio::test]
async fn an_allowed_request_reaches_the_inner_service_with_its_principal() {
    for fast in [false, true] {
        let delete = request(
            Method::DELETE,
            "/api/2.0/mlflow/registered-models/delete",
            Some("root"),
        );
        let (response, calls) = send(admins_delete(fast), delete).await;
        assert_eq!(
            (response.status(), calls),
            (StatusCode::OK, 1),
            "fast: {fast}"
        );
        assert_eq!(text(response).await, "root");

        let read = request(
            Method::GET,
            "/api/2.0/mlflow/experiments/get",
            Some("alice"),
        );
        let (response, _) = send(admins_delete(fast), read).await;
        assert_eq!(text(response).await, "alice");
    }
}

#[tokio::test]
async fn the_default_hook_gives_an_empty_403() {
    let layer = AuthLayer::new(Anyone { fast: false }).with_policy(require_admin());
    let (response, calls) = send(layer, request(Method::GET, "/", Some("alice"))).await;
    assert_eq!((response.status(), calls), (StatusCode::FORBIDDEN, 0));
    assert_eq!(text(response).await, "");
}

#[tokio::test]
async fn a_grpc_denial_is_permission_denied_trailers_only() {
    for fast in [false, true] {
        let call = grpc(request(
            Method::POST,
            "/grpc.health.v1.Health/Check",
            Some("alice"),
        ));
        let layer = AuthLayer::new(Anyone { fast }).with_policy(require_admin());
        let (response, calls) = send(layer, call).await;
        assert_eq!((response.status(), calls), (StatusCode::OK, 0));
        assert_eq!(response.headers()["grpc-status"], "7");
        assert_eq!(response.headers()["grpc-message"], "permission denied");
        assert_eq!(response.headers()[header::CONTENT_TYPE], "application/grpc");
        assert_eq!(text(response).await, "");
    }
}

#[tokio::test]
async fn exempt_requests_skip_the_policy() {
    let policy = Scripted::new(Ok(Decision::Deny), true);
    let layer = AuthLayer::new(Anyone { fast: true })
        .with_exemptions(Exemptions::mlflow_defaults())
        .with_policy(policy.clone());
    let (response, calls) = send(layer.clone(), request(Method::GET, "/health", None)).await;
    assert_eq!((response.status(), calls), (StatusCode::OK, 1));
    // A spelling that is not exempt is authenticated, then denied.
    let (response, _) = send(layer, request(Method::GET, "/health/", Some("alice"))).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_eq!(policy.calls(), 0, "the shortcut answered; decide never ran");
}

#[tokio::test]
async fn unauthenticated_requests_never_reach_the_policy() {
    let policy = Scripted::allow();
    let layer = AuthLayer::new(Anyone { fast: false }).with_policy(policy.clone());
    let mut bad = request(Method::GET, "/", None);
    bad.headers_mut().insert(
        header::AUTHORIZATION,
        HeaderValue::from_static("Bearer wrong"),
    );
    let (response, _) = send(layer.clone(), bad).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let (response, _) = send(layer, request(Method::GET, "/", None)).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(policy.calls(), 0);
}

#[tokio::test]
async fn a_failing_policy_is_a_503_on_both_paths() {
    for fast in [false, true] {
        let policy = Scripted::down();
        let layer = AuthLayer::new(Anyone { fast }).with_policy(policy.clone());
        let (response, calls) = send(layer.clone(), request(Method::GET, "/", Some("alice"))).await;
        assert_eq!(
            (response.status(), calls),
            (StatusCode::SERVICE_UNAVAILABLE, 0)
        );
        assert_eq!(
            response.extensions().get::<AuthRejection>(),
            Some(&AuthRejection::Unavailable)
        );
        let call = grpc(request(Method::POST, "/svc/Method", Some("alice")));
        let (response, _) = send(layer, call).await;
        assert_eq!(response.headers()["grpc-status"], "14");
        assert_eq!(policy.calls(), 2, "fast: {fast}");
    }
}

#[tokio::test]
async fn a_policy_that_waits_decides_after_a_fast_authentication() {
    // Sees the request head and the principal, which is not yet in the extensions.
    let seen = |who: &Authorization, parts: &Parts| {
        let ok = who.subject() == "bot"
            && parts.method == Method::PUT
            && parts.extensions.get::<Authorization>().is_none();
        async move {
            tokio::task::yield_now().await;
            Ok::<_, Infallible>(Decision::allow_if(ok))
        }
    };
    let layer = AuthLayer::new(Anyone { fast: true }).with_policy(seen);
    let mut put = request(Method::PUT, "/x", None);
    put.headers_mut().insert(
        header::AUTHORIZATION,
        HeaderValue::from_static("Bearer t0ken"),
    );
    let (response, calls) = send(layer.clone(), put).await;
    assert_eq!((response.status(), calls), (StatusCode::OK, 1));
    let mut get = request(Method::GET, "/x", None);
    get.headers_mut().insert(
        header::AUTHORIZATION,
        HeaderValue::from_static("Bearer t0ken"),
    );
    let (response, calls) = send(layer, get).await;
    assert_eq!((response.status(), calls), (StatusCode::FORBIDDEN, 0));
}

#[tokio::test]
async fn with_policy_replaces_the_previous_policy() {
    let layer = AuthLayer::new(Anyone { fast: true })
        .with_policy(require_admin())
        .with_policy(AllowAll);
    let (response, _) = send(layer, request(Method::DELETE, "/", Some("alice"))).await;
    assert_eq!(response.status(), StatusCode::OK);
    let layer = AuthLayer::new(Anyone { fast: true }).with_policy(BoxPolicy::new(require_admin()));
    assert!(format!("{layer:?}").contains("BoxPolicy"));
}
