//! `Jwt` against a real OpenID provider: panva's `oidc-provider` (npm), driven by
//! `tests/peers/oidc-server.mjs`, issuing RS256 access tokens with `client_credentials`.
//!
//! Each test starts its own provider on a free loopback port and kills it on drop.

use std::{
    net::SocketAddr,
    process::{Command, Stdio},
    time::Duration,
};

use axum::{Router, body::Body, routing::get};
use base64::{
    Engine,
    engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD},
};
use bytes::Bytes;
use http::{Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper_util::{client::legacy::Client, rt::TokioExecutor};
use serde_json::Value;
use tower::ServiceExt;
use tower_mlflow_auth::{AuthLayer, Authorization, authenticators::Jwt};
use tower_mlflow_tests::{ChildGuard, free_port, node_dir, wait_for_port, workspace_root};

const AUDIENCE: &str = "urn:mlflow";

/// Starts the provider on `port` (and a second one, same key, on `second_port`).
fn start_provider(port: u16, second_port: Option<u16>) -> ChildGuard {
    let node = node_dir();
    let mut command = Command::new("node");
    command
        .arg(workspace_root().join("tests/peers/oidc-server.mjs"))
        .arg(&node)
        .arg(port.to_string())
        .current_dir(&node)
        .stdout(Stdio::null());
    if let Some(second) = second_port {
        command.arg(second.to_string());
    }
    let guard = ChildGuard::spawn(&mut command);
    for p in std::iter::once(port).chain(second_port) {
        wait_for_port(
            SocketAddr::from(([127, 0, 0, 1], p)),
            Duration::from_secs(60),
        );
    }
    guard
}

fn issuer(port: u16) -> String {
    format!("http://127.0.0.1:{port}")
}

/// A `client_credentials` access token, for `resource` when given (it becomes the `aud`).
async fn access_token(port: u16, resource: Option<&str>) -> String {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let mut form = String::from("grant_type=client_credentials&scope=read");
    if let Some(resource) = resource {
        form.push_str("&resource=");
        form.push_str(&resource.replace(':', "%3A"));
    }
    let request = Request::post(format!("{}/token", issuer(port)))
        .header(
            header::AUTHORIZATION,
            format!("Basic {}", STANDARD.encode("ci:ci-secret")),
        )
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Full::new(Bytes::from(form)))
        .unwrap();
    let response = client.request(request).await.unwrap();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(
        status,
        StatusCode::OK,
        "token endpoint: {}",
        String::from_utf8_lossy(&body)
    );
    let json: Value = serde_json::from_slice(&body).unwrap();
    json["access_token"].as_str().unwrap().to_owned()
}

fn claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

fn app(jwt: Jwt) -> Router {
    Router::new()
        .route(
            "/api/2.0/mlflow/experiments/search",
            get(|who: Authorization| async move { who.subject().to_owned() }),
        )
        .layer(AuthLayer::new(jwt))
}

/// Sends one request with `Authorization: Bearer <token>`; returns status,
/// `WWW-Authenticate` and body.
async fn call(app: &Router, token: &str) -> (StatusCode, String, String) {
    let request = Request::get("/api/2.0/mlflow/experiments/search")
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(Body::empty())
        .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let challenge = response
        .headers()
        .get(header::WWW_AUTHENTICATE)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        challenge,
        String::from_utf8_lossy(&body).into_owned(),
    )
}

async fn assert_accepted(app: &Router, token: &str) {
    let (status, _, body) = call(app, token).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, "ci");
}

async fn assert_invalid_token(app: &Router, token: &str) {
    let (status, challenge, _) = call(app, token).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(challenge.starts_with("Bearer "), "{challenge}");
    assert!(
        challenge.contains(r#"error="invalid_token""#),
        "{challenge}"
    );
}

fn discovery_jwt(port: u16) -> Jwt {
    Jwt::builder()
        .issuer(issuer(port))
        .audience(AUDIENCE)
        .build()
        .unwrap()
}

#[tokio::test]
#[ignore = "needs oidc-provider (npm); run scripts/test"]
async fn valid_token_passes_through_discovery() {
    let port = free_port();
    let _provider = start_provider(port, None);
    let jwt = discovery_jwt(port);
    jwt.refresh().await.unwrap();
    let token = access_token(port, None).await;
    let claims = claims(&token);
    assert_eq!(claims["aud"], AUDIENCE);
    assert_eq!(claims["iss"], issuer(port).as_str());
    assert_accepted(&app(jwt), &token).await;
}

#[tokio::test]
#[ignore = "needs oidc-provider (npm); run scripts/test"]
async fn expired_token_is_rejected() {
    let port = free_port();
    let _provider = start_provider(port, None);
    // `urn:mlflow:short` tokens live one second.
    let token = access_token(port, Some("urn:mlflow:short")).await;
    let exp = claims(&token)["exp"].as_u64().unwrap();
    while std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        <= exp + 1
    {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let strict = Jwt::builder()
        .issuer(issuer(port))
        .audience(AUDIENCE)
        .leeway(Duration::ZERO)
        .build()
        .unwrap();
    assert_invalid_token(&app(strict), &token).await;
    // The same token within a generous leeway: expiry was the only fault.
    let lenient = Jwt::builder()
        .issuer(issuer(port))
        .audience(AUDIENCE)
        .leeway(Duration::from_secs(3600))
        .build()
        .unwrap();
    assert_accepted(&app(lenient), &token).await;
}

#[tokio::test]
#[ignore = "needs oidc-provider (npm); run scripts/test"]
async fn wrong_audience_token_is_rejected() {
    let port = free_port();
    let _provider = start_provider(port, None);
    let app = app(discovery_jwt(port));
    let other = access_token(port, Some("urn:other-service")).await;
    assert_eq!(claims(&other)["aud"], "urn:other-service");
    assert_invalid_token(&app, &other).await;
    assert_accepted(&app, &access_token(port, None).await).await;
}

#[tokio::test]
#[ignore = "needs oidc-provider (npm); run scripts/test"]
async fn wrong_issuer_token_is_rejected() {
    let (port, other_port) = (free_port(), free_port());
    // Two issuers signing with the same key: the other issuer's token has a valid signature.
    let _provider = start_provider(port, Some(other_port));
    let app = app(discovery_jwt(port));
    let foreign = access_token(other_port, None).await;
    assert_eq!(claims(&foreign)["iss"], issuer(other_port).as_str());
    assert_invalid_token(&app, &foreign).await;
    assert_accepted(&app, &access_token(port, None).await).await;
}

#[tokio::test]
#[ignore = "needs oidc-provider (npm); run scripts/test"]
async fn tampered_token_is_rejected() {
    let port = free_port();
    let _provider = start_provider(port, None);
    let app = app(discovery_jwt(port));
    let token = access_token(port, None).await;
    let parts: Vec<&str> = token.split('.').collect();

    let mut forged_claims = claims(&token);
    forged_claims["sub"] = "admin".into();
    let forged_payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&forged_claims).unwrap());
    assert_invalid_token(&app, &format!("{}.{forged_payload}.{}", parts[0], parts[2])).await;

    let mut signature = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
    signature[10] ^= 0x01;
    let flipped = URL_SAFE_NO_PAD.encode(signature);
    assert_invalid_token(&app, &format!("{}.{}.{flipped}", parts[0], parts[1])).await;

    assert_accepted(&app, &token).await;
}

#[tokio::test]
#[ignore = "needs oidc-provider (npm); run scripts/test"]
async fn key_rotation_is_picked_up_without_restart() {
    let port = free_port();
    let provider = start_provider(port, None);
    let jwt = Jwt::builder()
        .issuer(issuer(port))
        .audience(AUDIENCE)
        .refetch_interval(Duration::from_secs(1))
        .build()
        .unwrap();
    let app = app(jwt);
    let old_token = access_token(port, None).await;
    assert_accepted(&app, &old_token).await;

    // Restart the provider on the same port: it signs with a new key and publishes only that.
    drop(provider);
    let _provider = start_provider(port, None);
    let new_token = access_token(port, None).await;
    let kid = |t: &str| -> Value {
        serde_json::from_slice(
            &URL_SAFE_NO_PAD
                .decode(t.split('.').next().unwrap())
                .unwrap(),
        )
        .unwrap()
    };
    assert_ne!(kid(&old_token)["kid"], kid(&new_token)["kid"]);
    tokio::time::sleep(Duration::from_millis(1100)).await; // past the refetch interval

    // The unknown kid makes the same authenticator refetch the JWKS.
    assert_accepted(&app, &new_token).await;
    // The retired key went with the old key set.
    assert_invalid_token(&app, &old_token).await;
}
