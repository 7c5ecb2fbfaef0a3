//! The axum integration: extractors, and MLflow's text body from `MlflowRejectionResponse`.
#![cfg(feature = "axum")]

use std::convert::Infallible;

use axum::{Router, body::Body, routing::get};
use http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use secrecy::ExposeSecret;
use tower::ServiceExt;
use tower_mlflow_auth::{
    AuthLayer, Authorization, Credentials, Exemptions, MlflowRejectionResponse, Scheme,
};

async fn authenticate(credentials: Credentials) -> Result<Option<Authorization>, Infallible> {
    Ok(match credentials {
        Credentials::Bearer { token } if token.expose_secret() == "t0ken" => {
            Some(Authorization::new("ci", Scheme::Bearer))
        }
        _ => None,
    })
}

fn app() -> Router {
    let protected = Router::new()
        .route(
            "/whoami",
            get(|who: Authorization| async move { who.subject().to_owned() }),
        )
        .route(
            "/health",
            get(|who: Option<Authorization>| async move { format!("ok:{}", who.is_some()) }),
        )
        .layer(
            AuthLayer::new(authenticate)
                .with_exemptions(Exemptions::new().exact("/health").unwrap())
                .with_rejection_response(MlflowRejectionResponse),
        );
    // A route that forgot the layer.
    let unprotected = Router::new().route(
        "/oops",
        get(|who: Authorization| async move { who.subject().to_owned() }),
    );
    protected.merge(unprotected)
}

async fn send(path: &str, token: Option<&str>) -> (StatusCode, Option<String>, String) {
    send_to(app(), path, token).await
}

/// `GET path` (with `token` as a bearer credential) through `app`: status, content type, body.
async fn send_to<S>(app: S, path: &str, token: Option<&str>) -> (StatusCode, Option<String>, String)
where
    S: tower::Service<Request<Body>, Response = http::Response<Body>, Error = Infallible>,
{
    let mut request = Request::get(path);
    if let Some(token) = token {
        request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let response = app
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let content_type = response
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap().to_owned());
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        content_type,
        String::from_utf8(body.to_vec()).unwrap(),
    )
}

#[tokio::test]
async fn extractor_sees_the_principal() {
    assert_eq!(send("/whoami", Some("t0ken")).await.2, "ci");
}

#[tokio::test]
async fn optional_extractor_is_none_on_exempt_routes() {
    let (status, _, body) = send("/health", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, "ok:false");
}

#[tokio::test]
async fn mlflow_hook_401_body_is_mlflow_text() {
    let (status, content_type, body) = send("/whoami", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(content_type.as_deref(), Some("text/plain; charset=utf-8"));
    assert!(body.starts_with("You are not authenticated."), "{body}");
}

#[tokio::test]
async fn missing_layer_is_a_500_not_a_401() {
    let (status, _, body) = send("/oops", None).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(body.contains("is AuthLayer installed?"), "{body}");
}

/// The composition the README offers for the fewest instructions: the layer around the whole
/// router (tower's `Layer::layer`) rather than `Router::layer`. The check then runs before
/// routing: a path no route knows is refused as unauthenticated (401), not 404, and a
/// handler's extractor still sees the principal, with state given first.
#[tokio::test]
async fn around_the_whole_router_the_check_runs_before_routing() {
    use axum::extract::State;
    use tower::Layer;

    let router = Router::new()
        .route(
            "/whoami",
            get(
                |State(greeting): State<&'static str>, who: Authorization| async move {
                    format!("{greeting} {}", who.subject())
                },
            ),
        )
        .with_state("hello");
    let app = AuthLayer::new(authenticate).layer(router);
    let call = |path, token| {
        let app = app.clone();
        async move {
            let (status, _, body) = send_to(app, path, token).await;
            (status, body)
        }
    };
    assert_eq!(
        call("/whoami", Some("t0ken")).await,
        (StatusCode::OK, "hello ci".to_owned())
    );
    assert_eq!(call("/whoami", None).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(
        call("/no-such-route", None).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        call("/no-such-route", Some("t0ken")).await.0,
        StatusCode::NOT_FOUND
    );
}
