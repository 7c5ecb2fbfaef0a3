//! `--jwt-issuer https://…` against a real OpenID provider (panva's `oidc-provider`, driven by
//! `tests/peers/oidc-server.mjs`) served over HTTPS with a CA made in the test: accepted with
//! `--jwt-ca-file`, unreachable (503) without it; plain-http issuers refused at start.

mod support;

use std::{
    net::SocketAddr,
    path::Path,
    process::{Command, Stdio},
    time::Duration,
};

use base64::{Engine as _, engine::general_purpose::STANDARD};
use bytes::Bytes;
use http::{Request, StatusCode, header};
use http_body_util::{BodyExt as _, Empty, Full};
use hyper_util::{client::legacy::Client, rt::TokioExecutor};
use mlflow_gateway::{AssembleError, ConfigError};
use support::pki::TestCa;
use tower_mlflow_tests::{ChildGuard, TempDir, free_port, node_dir, wait_for_port, workspace_root};

const AUDIENCE: &str = "urn:mlflow";

/// oidc-provider over HTTPS on `port`, with the certificate and key files in `dir`.
fn start_provider(port: u16, dir: &Path) -> ChildGuard {
    let node = node_dir();
    let mut command = Command::new("node");
    command
        .arg(workspace_root().join("tests/peers/oidc-server.mjs"))
        .arg(&node)
        .arg(port.to_string())
        .arg("--tls")
        .arg(dir.join("idp.crt"))
        .arg(dir.join("idp.key"))
        .current_dir(&node)
        .stdout(Stdio::null());
    let guard = ChildGuard::spawn(&mut command);
    wait_for_port(
        SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_secs(60),
    );
    guard
}

/// A CA, the provider's certificate signed by it, and the provider running on a free port.
struct Idp {
    ca: TestCa,
    port: u16,
    dir: TempDir,
    _provider: ChildGuard,
}

impl Idp {
    fn start() -> Self {
        let ca = TestCa::new();
        let leaf = ca.leaf();
        let dir = TempDir::new("gateway-jwt");
        std::fs::write(dir.path().join("idp.crt"), &leaf.cert_pem).unwrap();
        std::fs::write(dir.path().join("idp.key"), &leaf.key_pem).unwrap();
        std::fs::write(dir.path().join("ca.pem"), ca.pem()).unwrap();
        let port = free_port();
        let provider = start_provider(port, dir.path());
        Self {
            ca,
            port,
            dir,
            _provider: provider,
        }
    }

    fn issuer(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    fn ca_file(&self) -> String {
        self.dir.path().join("ca.pem").to_str().unwrap().to_owned()
    }

    /// A `client_credentials` access token (aud `urn:mlflow`, sub `ci`), fetched over HTTPS
    /// trusting only the test CA.
    async fn access_token(&self) -> String {
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config((*self.ca.client_config(&[])).clone())
            .https_only()
            .enable_http1()
            .build();
        let client = Client::builder(TokioExecutor::new()).build::<_, Full<Bytes>>(connector);
        let request = Request::post(format!("{}/token", self.issuer()))
            .header(
                header::AUTHORIZATION,
                format!("Basic {}", STANDARD.encode("ci:ci-secret")),
            )
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Full::new(Bytes::from_static(
                b"grant_type=client_credentials&scope=read",
            )))
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
        // A JWT has no characters JSON escapes, so the string value can be cut out as is.
        let body = String::from_utf8(body.to_vec()).unwrap();
        let (_, rest) = body.split_once(r#""access_token":""#).expect(&body);
        rest.split('"').next().unwrap().to_owned()
    }
}

/// The gateway in front of an echo upstream, taking JWTs from `issuer`.
async fn start_gateway(issuer: &str, extra: &[&str]) -> Result<support::InProcess, AssembleError> {
    let upstream = format!("http://{}", support::echo_upstream(None).await);
    let mut args = vec![
        "--upstream",
        &upstream,
        "--jwt-issuer",
        issuer,
        "--jwt-audience",
        AUDIENCE,
    ];
    args.extend(extra);
    // `start` blocks until the gateway listens (it fetches the keys first).
    let args: Vec<String> = args.iter().map(|&a| a.to_owned()).collect();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        support::InProcess::start(&args)
    })
    .await
    .unwrap()
}

/// GET through the gateway with `Authorization: Bearer <token>`: status and body.
async fn call(gateway: &support::InProcess, token: &str) -> (StatusCode, String) {
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let request = Request::get(format!(
        "http://{}/api/2.0/mlflow/experiments/search",
        gateway.addr()
    ))
    .header(header::AUTHORIZATION, format!("Bearer {token}"))
    .body(Empty::new())
    .unwrap();
    let response = client.request(request).await.unwrap();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// `token` with its signature's first character changed.
fn tampered(token: &str) -> String {
    let (head, signature) = token.rsplit_once('.').unwrap();
    let first = if signature.starts_with('A') { 'B' } else { 'A' };
    format!("{head}.{first}{}", &signature[1..])
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs oidc-provider; run scripts/test"]
async fn an_https_issuer_behind_a_private_ca_is_trusted_with_jwt_ca_file() {
    let idp = Idp::start();
    let gateway = start_gateway(&idp.issuer(), &["--jwt-ca-file", &idp.ca_file()])
        .await
        .unwrap();
    let token = idp.access_token().await;

    let (status, body) = call(&gateway, &token).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert!(body.contains("\nx-forwarded-user: ci\n"), "{body}");
    assert!(!body.contains("authorization:"), "{body}");

    let (status, body) = call(&gateway, &tampered(&token)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let (status, body) = call(&gateway, "not-a-jwt").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs oidc-provider; run scripts/test"]
async fn without_jwt_ca_file_the_keys_cannot_be_fetched_and_tokens_get_503() {
    let idp = Idp::start();
    // The public roots do not know the test CA: the gateway starts anyway (the issuer may
    // merely be down), and a token it cannot check is the backend's failure, not the
    // client's.
    let gateway = start_gateway(&idp.issuer(), &[]).await.unwrap();
    let token = idp.access_token().await;
    let (status, body) = call(&gateway, &token).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(!body.contains("x-forwarded-user"), "{body}");

    // The same for an issuer that is down: nothing listens on the port.
    let down = format!("https://127.0.0.1:{}", free_port());
    let gateway = start_gateway(&down, &["--jwt-ca-file", &idp.ca_file()])
        .await
        .unwrap();
    let (status, body) = call(&gateway, &token).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_plain_http_issuer_off_loopback_is_refused_at_start() {
    let Err(error) = start_gateway("http://idp.example.com/realms/ml", &[]).await else {
        panic!("a plain-http issuer on another host was accepted");
    };
    assert!(
        matches!(
            error,
            AssembleError::Config(ConfigError::InsecureJwtIssuer { .. })
        ),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(message.contains("--jwt-issuer"), "{message}");
    assert!(
        message.contains("http://idp.example.com/realms/ml"),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn jwt_ca_file_with_a_plain_http_issuer_is_refused_at_start() {
    let Err(error) = start_gateway(
        "http://127.0.0.1:9",
        &["--jwt-ca-file", "/nonexistent/ca.pem"],
    )
    .await
    else {
        panic!("--jwt-ca-file with a plain-http issuer was accepted");
    };
    assert!(error.to_string().contains("--jwt-ca-file"), "{error}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreadable_jwt_ca_file_is_refused_at_start_naming_it() {
    let Err(error) = start_gateway(
        "https://127.0.0.1:9",
        &["--jwt-ca-file", "/nonexistent/jwt-ca.pem"],
    )
    .await
    else {
        panic!("a missing --jwt-ca-file was accepted");
    };
    assert!(matches!(error, AssembleError::JwtCa { .. }), "{error:?}");
    let message = error.to_string();
    assert!(message.contains("/nonexistent/jwt-ca.pem"), "{message}");
}
