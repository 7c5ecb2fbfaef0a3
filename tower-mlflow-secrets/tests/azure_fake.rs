//! The Azure Key Vault source against an in-process TLS fake (test CA made with rcgen).
//!
//! No Key Vault emulator can be installed here, so the fake follows the documented REST
//! API (learn.microsoft.com/rest/api/keyvault/secrets/get-secret, api-version 7.5): an
//! unauthenticated `GET /secrets/{name}[/{version}]` gets `401` with
//! `WWW-Authenticate: Bearer authorization="…", resource="…"`; a valid bearer token gets
//! `{"value","id","attributes":{"enabled","exp",…}}`; a missing secret gets
//! `404 {"error":{"code":"SecretNotFound",…}}`. It also serves the Entra ID v2 token
//! endpoint (`POST /{tenant}/oauth2/v2.0/token`, client-credentials grant).
#![cfg(feature = "azure")]

mod support;

use support::json_reply;

use std::{
    convert::Infallible,
    sync::{Arc, Mutex},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::{body::Incoming, server::conn::http1, service::service_fn};
use hyper_util::rt::TokioIo;
use secrecy::ExposeSecret;
use serde_json::json;
use tower_mlflow_secrets::source::{
    SecretSource,
    azure::{AzureCredential, AzureKeyVault},
};

const TENANT: &str = "tenant-1";
const CLIENT_ID: &str = "client-1";
const CLIENT_SECRET: &str = "client-secret-xyz";

#[derive(Default)]
struct State {
    token_requests: u32,
    kv_requests: u32,
    issued: u32,
    valid_tokens: Vec<String>,
    foreign_challenge: bool,
    exp: u64,
    /// The token endpoint's `expires_in`, 3600 unless set (hostile values for tests).
    expires_in: Option<serde_json::Value>,
}

struct Fake {
    port: u16,
    ca_pem: String,
    state: Arc<Mutex<State>>,
}

async fn handle(
    state: Arc<Mutex<State>>,
    port: u16,
    req: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let mut s = state.lock().unwrap();
    let path = parts.uri.path().to_owned();
    if path == format!("/{TENANT}/oauth2/v2.0/token") {
        s.token_requests += 1;
        let form = String::from_utf8_lossy(&body).to_string();
        let has = |pair: &str| form.split('&').any(|p| p == pair);
        if !(has("grant_type=client_credentials")
            && has(&format!("client_id={CLIENT_ID}"))
            && has(&format!("client_secret={CLIENT_SECRET}"))
            && has("scope=https%3A%2F%2Flocalhost%2F.default"))
        {
            return json_reply(401, &json!({"error": "invalid_client"}));
        }
        s.issued += 1;
        let token = format!("aad-token-{}", s.issued);
        s.valid_tokens.push(token.clone());
        return json_reply(
            200,
            &json!({"token_type": "Bearer", "expires_in": s.expires_in.clone().unwrap_or(json!(3600)), "access_token": token}),
        );
    }
    let Some(rest) = path.strip_prefix("/secrets/") else {
        return json_reply(404, &json!({}));
    };
    s.kv_requests += 1;
    assert_eq!(parts.uri.query(), Some("api-version=7.5"));
    let token = parts
        .headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if !s.valid_tokens.iter().any(|t| t == token) {
        let resource = if s.foreign_challenge {
            "https://evil.example"
        } else {
            "https://localhost"
        };
        let mut response = json_reply(
            401,
            &json!({"error": {"code": "Unauthorized", "message": "AKV10000: Request is missing a Bearer or PoP token."}}),
        );
        response.headers_mut().insert(
            "www-authenticate",
            format!(
                r#"Bearer authorization="https://localhost:{port}/{TENANT}", resource="{resource}""#
            )
            .parse()
            .unwrap(),
        );
        return response;
    }
    let (name, version) = rest.split_once('/').unwrap_or((rest, ""));
    let (value, enabled, version) = match (name, version) {
        ("mlflow", "" | "v2") => ("new-token", true, "v2"),
        ("mlflow", "v1") => ("old-token", true, "v1"),
        ("disabled", _) => ("x", false, "v1"),
        _ => {
            return json_reply(
                404,
                &json!({"error": {"code": "SecretNotFound", "message": format!("A secret with (name/id) {name} was not found in this key vault.")}}),
            );
        }
    };
    let mut attributes = json!({"enabled": enabled, "created": 1_700_000_000, "updated": 1_700_000_000, "recoveryLevel": "Recoverable+Purgeable"});
    if s.exp > 0 {
        attributes["exp"] = json!(s.exp);
    }
    json_reply(
        200,
        &json!({"value": value, "id": format!("https://localhost:{port}/secrets/{name}/{version}"), "attributes": attributes, "tags": {}}),
    )
}

async fn start() -> Fake {
    let (acceptor, ca_pem) = support::localhost_tls();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let state = Arc::new(Mutex::new(State::default()));
    let shared = state.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let state = shared.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(stream).await else {
                    return;
                };
                let service = service_fn(move |req| {
                    let state = state.clone();
                    async move { Ok::<_, Infallible>(handle(state, port, req).await) }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    Fake {
        port,
        ca_pem,
        state,
    }
}

impl Fake {
    fn source(&self, name: &str) -> tower_mlflow_secrets::source::azure::AzureKeyVaultBuilder {
        self.source_with_secret(name, CLIENT_SECRET)
    }

    fn source_with_secret(
        &self,
        name: &str,
        secret: &str,
    ) -> tower_mlflow_secrets::source::azure::AzureKeyVaultBuilder {
        AzureKeyVault::builder(format!("https://localhost:{}", self.port), name)
            .credential(AzureCredential::client_secret(
                format!("https://localhost:{}", self.port),
                TENANT,
                CLIENT_ID,
                secret,
            ))
            .ca_pem(self.ca_pem.clone())
    }

    fn with<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        f(&mut self.state.lock().unwrap())
    }
}

#[tokio::test]
async fn latest_version_after_the_401_challenge_with_a_client_secret() {
    let fake = start().await;
    let source = fake.source("mlflow").build().unwrap();
    let fetched = source.fetch().await.unwrap();
    assert_eq!(fetched.secret().expose_secret(), "new-token");
    assert_eq!(fetched.expires_in(), None);
    // Challenge, token, authorised read.
    assert_eq!(fake.with(|s| (s.kv_requests, s.token_requests)), (2, 1));
    // The scope and the token are cached.
    source.fetch().await.unwrap();
    assert_eq!(fake.with(|s| (s.kv_requests, s.token_requests)), (3, 1));
}

#[tokio::test]
async fn pinned_version() {
    let fake = start().await;
    let source = fake.source("mlflow").version("v1").build().unwrap();
    assert_eq!(
        source.fetch().await.unwrap().secret().expose_secret(),
        "old-token"
    );
}

#[tokio::test]
async fn exp_attribute_is_the_expiry() {
    let fake = start().await;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    fake.with(|s| s.exp = now + 600);
    let fetched = fake
        .source("mlflow")
        .build()
        .unwrap()
        .fetch()
        .await
        .unwrap();
    let left = fetched.expires_in().unwrap();
    assert!(
        left > Duration::from_secs(500) && left <= Duration::from_secs(600),
        "{left:?}"
    );
}

#[tokio::test]
async fn absurd_lifetimes_are_clamped_or_refused_without_a_panic() {
    let fake = start().await;
    fake.with(|s| {
        s.exp = u64::MAX;
        s.expires_in = Some(json!(u64::MAX));
    });
    let fetched = fake
        .source("mlflow")
        .build()
        .unwrap()
        .fetch()
        .await
        .unwrap();
    let left = fetched.expires_in().unwrap();
    assert!(left > Duration::from_secs(365 * 24 * 3600), "{left:?}");
    for hostile in [json!(-1), json!(1.5), json!("soon")] {
        fake.with(|s| s.expires_in = Some(hostile.clone()));
        let err = fake
            .source("mlflow")
            .build()
            .unwrap()
            .fetch()
            .await
            .unwrap_err();
        assert!(err.to_string().contains("`expires_in`"), "{hostile}: {err}");
    }
}

#[tokio::test]
async fn secret_not_found_is_permanent() {
    let fake = start().await;
    let err = fake
        .source("missing")
        .build()
        .unwrap()
        .fetch()
        .await
        .unwrap_err();
    assert!(!err.is_transient(), "{err}");
    assert!(err.to_string().contains("404 SecretNotFound"), "{err}");
}

#[tokio::test]
async fn disabled_secret_is_an_error() {
    let fake = start().await;
    let err = fake
        .source("disabled")
        .build()
        .unwrap()
        .fetch()
        .await
        .unwrap_err();
    assert!(err.to_string().contains("disabled"), "{err}");
}

#[tokio::test]
async fn rejected_token_is_refreshed_once() {
    let fake = start().await;
    let source = fake.source("mlflow").build().unwrap();
    source.fetch().await.unwrap();
    fake.with(|s| s.valid_tokens.clear());
    assert_eq!(
        source.fetch().await.unwrap().secret().expose_secret(),
        "new-token"
    );
    assert_eq!(fake.with(|s| s.token_requests), 2);
}

#[tokio::test]
async fn challenge_for_a_foreign_resource_gets_no_token() {
    let fake = start().await;
    fake.with(|s| s.foreign_challenge = true);
    let err = fake
        .source("mlflow")
        .build()
        .unwrap()
        .fetch()
        .await
        .unwrap_err();
    assert!(!err.is_transient());
    assert!(
        err.to_string().contains("not in the vault's domain"),
        "{err}"
    );
    assert_eq!(fake.with(|s| s.token_requests), 0);
}

#[tokio::test]
async fn wrong_client_secret_is_permanent_and_not_echoed() {
    let fake = start().await;
    let err = fake
        .source_with_secret("mlflow", "wrong-secret-123")
        .build()
        .unwrap()
        .fetch()
        .await
        .unwrap_err();
    assert!(!err.is_transient());
    let text = format!("{err} {err:?}");
    assert!(text.contains("invalid_client"), "{text}");
    assert!(!text.contains("wrong-secret-123"), "{text}");
}

#[tokio::test]
async fn unknown_ca_is_refused() {
    let fake = start().await;
    let source = AzureKeyVault::builder(format!("https://localhost:{}", fake.port), "mlflow")
        .credential(AzureCredential::token("t"))
        .build()
        .unwrap();
    assert!(source.fetch().await.unwrap_err().is_transient());
}
