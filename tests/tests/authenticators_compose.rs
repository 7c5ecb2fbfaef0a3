//! The built-in authenticators chained with `first_of` behind one `AuthLayer`: each accepts
//! its own credentials, and a 401 offers every scheme once.

use std::convert::Infallible;

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use tower::{ServiceBuilder, ServiceExt};
use tower_mlflow_auth::{
    AuthLayer, Authorization, BoxAuthenticator, Scheme,
    authenticators::{Cached, Htpasswd, Jwt, MlflowUsers, StaticTokens, UserRecord},
    first_of,
};

/// `alice` / `mlflow-pass` (APR1, `openssl passwd -apr1`).
const HTPASSWD: &str = "alice:$apr1$abcdefgh$aDPo2xmbXHAQSzMtOEWhn/\n";
/// werkzeug `pbkdf2:sha256:1000`, password `mlflow-pass` (reference test vector).
const WERKZEUG: &str = "pbkdf2:sha256:1000$saltsaltsaltsalt$c039c2c345ba54524fdcd18a32558e28e43c097f846c682324d0aa5a2106b4ba";
const ALICE: &str = "Basic YWxpY2U6bWxmbG93LXBhc3M="; // alice:mlflow-pass
const BOB: &str = "Basic Ym9iOm1sZmxvdy1wYXNz"; // bob:mlflow-pass

fn chain() -> BoxAuthenticator {
    let htpasswd = Htpasswd::parse(HTPASSWD).unwrap();
    let users =
        MlflowUsers::from_users([UserRecord::new("bob", WERKZEUG).with_admin(true)]).unwrap();
    let tokens = StaticTokens::bearer()
        .token(
            "ci-token-0123456789",
            Authorization::new("ci", Scheme::Bearer),
        )
        .build()
        .unwrap();
    // Never fetched here: no JWT is presented. It adds its Bearer challenge.
    let jwt = Jwt::builder()
        .issuer("http://127.0.0.1:9/")
        .audience("mlflow")
        .jwks_uri("http://127.0.0.1:9/jwks")
        .build()
        .unwrap();
    let passwords = Cached::new(first_of(htpasswd, users)).unwrap();
    BoxAuthenticator::new(first_of(first_of(passwords, tokens), jwt))
}

async fn call(authorization: Option<&str>) -> (StatusCode, Vec<String>, String) {
    let service = ServiceBuilder::new()
        .layer(AuthLayer::new(chain()))
        .service_fn(|request: Request<Full<Bytes>>| async move {
            let who = request.extensions().get::<Authorization>().unwrap();
            let body = format!("{} admin={}", who.subject(), who.is_admin());
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(body))))
        });
    let mut request = Request::get("/api/2.0/mlflow/experiments/search");
    if let Some(value) = authorization {
        request = request.header(header::AUTHORIZATION, value);
    }
    let response = service
        .oneshot(request.body(Full::default()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let challenges = response
        .headers()
        .get_all(header::WWW_AUTHENTICATE)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        challenges,
        String::from_utf8_lossy(&body).into_owned(),
    )
}

#[tokio::test]
async fn each_authenticator_accepts_its_own_credentials() {
    assert_eq!(call(Some(ALICE)).await.2, "alice admin=false");
    assert_eq!(call(Some(BOB)).await.2, "bob admin=true");
    assert_eq!(
        call(Some("Bearer ci-token-0123456789")).await.2,
        "ci admin=false"
    );
}

#[tokio::test]
async fn a_401_offers_basic_and_bearer_once_each() {
    let (status, challenges, _) = call(None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        challenges,
        [r#"Basic realm="mlflow""#, r#"Bearer realm="mlflow""#]
    );

    let (status, _, _) = call(Some("Basic YWxpY2U6d3Jvbmc=")).await; // alice:wrong
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}
