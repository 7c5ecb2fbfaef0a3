//! The Azure credential types other than client secret and fixed token — workload identity,
//! managed identity (App Service) and Azure CLI — through the real request code, against
//! in-process fakes: a TLS fake serving the Key Vault REST API and the Entra ID v2 token
//! endpoint (test CA made with rcgen), a plain-HTTP fake of the App Service identity
//! endpoint, and a fake `az` script.
//!
//! The process environment is never changed here (tests run in parallel): credentials are
//! configured through `AzureCredential::from_env`'s lookup closure, and the Azure CLI test
//! re-runs this test binary as a child process whose `PATH` starts with the fake `az`.
//!
//! Not covered: managed identity through IMDS, whose address (`169.254.169.254`) is a
//! constant in `credential.rs` that nothing can override.
#![cfg(feature = "azure")]

mod support;

use support::json_reply;

use std::{
    collections::HashMap,
    convert::Infallible,
    path::PathBuf,
    sync::{Arc, Mutex},
    time::{SystemTime, UNIX_EPOCH},
};

use bytes::Bytes;
use http::{HeaderMap, Request, Response};
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
/// The scope the vault's challenge (`resource="https://localhost"`) leads to.
const SCOPE: &str = "https://localhost/.default";
const IDENTITY_HEADER: &str = "identity-header-secret";

/// One request the fake received.
#[derive(Clone, Debug)]
struct Recorded {
    method: http::Method,
    path: String,
    query: String,
    headers: HeaderMap,
    body: String,
}

#[derive(Default)]
struct State {
    requests: Vec<Recorded>,
    /// Bearer tokens the vault accepts.
    valid_tokens: Vec<String>,
    /// The access token the token endpoints hand out.
    issue: String,
}

struct Fake {
    /// The TLS port (Key Vault and the Entra ID token endpoint).
    port: u16,
    /// The plain-HTTP port (the App Service identity endpoint).
    plain_port: u16,
    ca_pem: String,
    state: Arc<Mutex<State>>,
}

/// Decodes `application/x-www-form-urlencoded` (also used for query strings).
fn decode_form(text: &str) -> HashMap<String, String> {
    let decode = |s: &str| {
        let bytes = s.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'%' => {
                    let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap();
                    out.push(u8::from_str_radix(hex, 16).unwrap());
                    i += 3;
                }
                b'+' => {
                    out.push(b' ');
                    i += 1;
                }
                b => {
                    out.push(b);
                    i += 1;
                }
            }
        }
        String::from_utf8(out).unwrap()
    };
    text.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

async fn handle(state: Arc<Mutex<State>>, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let mut s = state.lock().unwrap();
    let path = parts.uri.path().to_owned();
    s.requests.push(Recorded {
        method: parts.method.clone(),
        path: path.clone(),
        query: parts.uri.query().unwrap_or("").to_owned(),
        headers: parts.headers.clone(),
        body: String::from_utf8_lossy(&body).into_owned(),
    });
    let issue = s.issue.clone();
    if path == format!("/{TENANT}/oauth2/v2.0/token") || path == "/msi/token" {
        s.valid_tokens.push(issue.clone());
        // Entra ID answers `expires_in` as a number; App Service as a string.
        let expires_in = if path == "/msi/token" {
            json!("3600")
        } else {
            json!(3600)
        };
        return json_reply(
            200,
            &json!({"token_type": "Bearer", "expires_in": expires_in, "access_token": issue}),
        );
    }
    if path != "/secrets/mlflow" {
        return json_reply(404, &json!({}));
    }
    let token = parts
        .headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if !s.valid_tokens.iter().any(|t| t == token) {
        let mut response = json_reply(
            401,
            &json!({"error": {"code": "Unauthorized", "message": "AKV10000: Request is missing a Bearer or PoP token."}}),
        );
        response.headers_mut().insert(
            "www-authenticate",
            format!(
                r#"Bearer authorization="https://login.example/{TENANT}", resource="https://localhost""#
            )
            .parse()
            .unwrap(),
        );
        return response;
    }
    json_reply(
        200,
        &json!({"value": "the-secret", "id": "https://localhost/secrets/mlflow/v1", "attributes": {"enabled": true}}),
    )
}

fn serve<S>(stream: S, state: Arc<Mutex<State>>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        let service = service_fn(move |req| {
            let state = state.clone();
            async move { Ok::<_, Infallible>(handle(state, req).await) }
        });
        let _ = http1::Builder::new()
            .serve_connection(TokioIo::new(stream), service)
            .await;
    });
}

/// Starts the fake; the token endpoints hand out `issue`.
async fn start(issue: &str) -> Fake {
    let (acceptor, ca_pem) = support::localhost_tls();
    let state = Arc::new(Mutex::new(State {
        issue: issue.to_owned(),
        ..State::default()
    }));

    let tls_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = tls_listener.local_addr().unwrap().port();
    let shared = state.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = tls_listener.accept().await {
            let acceptor = acceptor.clone();
            let state = shared.clone();
            tokio::spawn(async move {
                if let Ok(tls) = acceptor.accept(stream).await {
                    serve(tls, state);
                }
            });
        }
    });

    let plain_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let plain_port = plain_listener.local_addr().unwrap().port();
    let shared = state.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = plain_listener.accept().await {
            serve(stream, shared.clone());
        }
    });

    Fake {
        port,
        plain_port,
        ca_pem,
        state,
    }
}

impl Fake {
    async fn fetch_with(&self, credential: AzureCredential) -> String {
        let source = AzureKeyVault::builder(format!("https://localhost:{}", self.port), "mlflow")
            .credential(credential)
            .ca_pem(self.ca_pem.clone())
            .build()
            .unwrap();
        let fetched = source.fetch().await.unwrap();
        fetched.secret().expose_secret().to_owned()
    }

    fn requests_to(&self, path: &str) -> Vec<Recorded> {
        let s = self.state.lock().unwrap();
        s.requests
            .iter()
            .filter(|r| r.path == path)
            .cloned()
            .collect()
    }

    /// The bearer token of the last Key Vault read.
    fn last_vault_bearer(&self) -> Option<String> {
        self.requests_to("/secrets/mlflow")
            .last()?
            .headers
            .get("authorization")?
            .to_str()
            .ok()
            .map(str::to_owned)
    }
}

fn lookup(vars: Vec<(&'static str, String)>) -> impl Fn(&str) -> Option<String> {
    move |name| {
        vars.iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.clone())
    }
}

/// A fresh, empty directory under the system temp dir.
fn scratch_dir(tag: &str) -> PathBuf {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let dir = std::env::temp_dir().join(format!(
        "tower-mlflow-azure-{tag}-{}-{nanos}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test]
async fn workload_identity_exchanges_the_federated_token_at_the_authority_host() {
    let fake = start("wi-access-token").await;
    let dir = scratch_dir("wi");
    let token_file = dir.join("azure-identity-token");
    // A trailing newline, as projected service-account tokens may have.
    std::fs::write(&token_file, "federated.jwt.assertion\n").unwrap();
    let credential = AzureCredential::from_env(lookup(vec![
        (
            "AZURE_AUTHORITY_HOST",
            format!("https://localhost:{}", fake.port),
        ),
        ("AZURE_TENANT_ID", TENANT.to_owned()),
        ("AZURE_CLIENT_ID", CLIENT_ID.to_owned()),
        (
            "AZURE_FEDERATED_TOKEN_FILE",
            token_file.display().to_string(),
        ),
    ]));
    assert!(matches!(
        credential,
        AzureCredential::WorkloadIdentity { .. }
    ));

    let secret = fake.fetch_with(credential).await;
    std::fs::remove_dir_all(&dir).unwrap();

    assert_eq!(secret, "the-secret");
    let token_requests = fake.requests_to(&format!("/{TENANT}/oauth2/v2.0/token"));
    assert_eq!(token_requests.len(), 1);
    let request = &token_requests[0];
    assert_eq!(request.method, http::Method::POST);
    assert_eq!(
        request.headers.get("content-type").unwrap(),
        "application/x-www-form-urlencoded"
    );
    let form = decode_form(&request.body);
    assert_eq!(form["grant_type"], "client_credentials");
    assert_eq!(form["client_id"], CLIENT_ID);
    assert_eq!(
        form["client_assertion_type"],
        "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
    );
    assert_eq!(form["client_assertion"], "federated.jwt.assertion");
    assert_eq!(form["scope"], SCOPE);
    assert!(!form.contains_key("client_secret"));
    assert_eq!(
        fake.last_vault_bearer().as_deref(),
        Some("Bearer wi-access-token")
    );
}

#[tokio::test]
async fn workload_identity_rereads_the_token_file_on_refresh() {
    let fake = start("wi-token-1").await;
    let dir = scratch_dir("wi-reread");
    let token_file = dir.join("token");
    std::fs::write(&token_file, "assertion-one").unwrap();
    let credential = AzureCredential::from_env(lookup(vec![
        (
            "AZURE_AUTHORITY_HOST",
            format!("https://localhost:{}", fake.port),
        ),
        ("AZURE_TENANT_ID", TENANT.to_owned()),
        ("AZURE_CLIENT_ID", CLIENT_ID.to_owned()),
        (
            "AZURE_FEDERATED_TOKEN_FILE",
            token_file.display().to_string(),
        ),
    ]));
    let source = AzureKeyVault::builder(format!("https://localhost:{}", fake.port), "mlflow")
        .credential(credential)
        .ca_pem(fake.ca_pem.clone())
        .build()
        .unwrap();
    source.fetch().await.unwrap();

    // The kubelet rotates the projected token; the vault stops accepting the old access
    // token, so the source asks for a new one with the new assertion.
    std::fs::write(&token_file, "assertion-two").unwrap();
    {
        let mut s = fake.state.lock().unwrap();
        s.valid_tokens.clear();
        s.issue = "wi-token-2".to_owned();
    }
    let fetched = source.fetch().await.unwrap();
    std::fs::remove_dir_all(&dir).unwrap();

    assert_eq!(fetched.secret().expose_secret(), "the-secret");
    let assertions: Vec<String> = fake
        .requests_to(&format!("/{TENANT}/oauth2/v2.0/token"))
        .iter()
        .map(|r| decode_form(&r.body)["client_assertion"].clone())
        .collect();
    assert_eq!(assertions, ["assertion-one", "assertion-two"]);
    assert_eq!(
        fake.last_vault_bearer().as_deref(),
        Some("Bearer wi-token-2")
    );
}

#[tokio::test]
async fn managed_identity_app_service_endpoint() {
    let fake = start("mi-access-token").await;
    let credential = AzureCredential::from_env(lookup(vec![
        (
            "IDENTITY_ENDPOINT",
            format!("http://127.0.0.1:{}/msi/token", fake.plain_port),
        ),
        ("IDENTITY_HEADER", IDENTITY_HEADER.to_owned()),
    ]));

    let secret = fake.fetch_with(credential).await;

    assert_eq!(secret, "the-secret");
    let requests = fake.requests_to("/msi/token");
    assert_eq!(requests.len(), 1);
    let request = &requests[0];
    assert_eq!(request.method, http::Method::GET);
    assert_eq!(
        request.headers.get("x-identity-header").unwrap(),
        IDENTITY_HEADER
    );
    assert!(request.headers.get("metadata").is_none());
    let query = decode_form(&request.query);
    assert_eq!(query["api-version"], "2019-08-01");
    assert_eq!(query["resource"], "https://localhost");
    assert!(!query.contains_key("client_id"));
    assert_eq!(
        fake.last_vault_bearer().as_deref(),
        Some("Bearer mi-access-token")
    );
}

#[tokio::test]
async fn managed_identity_user_assigned_client_id() {
    let fake = start("mi-user-token").await;
    let credential = AzureCredential::from_env(lookup(vec![
        (
            "IDENTITY_ENDPOINT",
            format!("http://127.0.0.1:{}/msi/token", fake.plain_port),
        ),
        ("IDENTITY_HEADER", IDENTITY_HEADER.to_owned()),
        ("AZURE_CLIENT_ID", "user-assigned-id".to_owned()),
    ]));

    assert_eq!(fake.fetch_with(credential).await, "the-secret");
    let request = fake.requests_to("/msi/token").pop().unwrap();
    assert_eq!(decode_form(&request.query)["client_id"], "user-assigned-id");
}

/// Set (to the fake `az` directory) only in the child process of
/// [`azure_cli_token_is_used`].
#[cfg(unix)]
const FAKE_AZ_DIR: &str = "TOWER_MLFLOW_TEST_FAKE_AZ_DIR";

/// What `az account get-access-token --output json` prints (plus the `expires_on` Unix
/// timestamp newer CLIs add), recording its arguments next to itself.
#[cfg(unix)]
const FAKE_AZ: &str = r#"#!/bin/sh
printf '%s\n' "$@" > "$(dirname "$0")/args"
cat <<'EOF'
{
  "accessToken": "cli-access-token",
  "expiresOn": "2100-01-01 00:00:00.000000",
  "expires_on": 4102444800,
  "subscription": "00000000-0000-0000-0000-000000000000",
  "tenant": "tenant-1",
  "tokenType": "Bearer"
}
EOF
"#;

/// The Azure CLI credential runs `az` from `PATH`. Changing `PATH` here would race with the
/// other tests, so this test runs itself again in a child process whose `PATH` starts with
/// a directory holding a fake `az`; the child does the real work. (Unix: the fake is a
/// shell script.)
#[cfg(unix)]
#[tokio::test]
async fn azure_cli_token_is_used() {
    if let Some(dir) = std::env::var_os(FAKE_AZ_DIR) {
        return azure_cli_child(std::path::Path::new(&dir)).await;
    }
    let dir = scratch_dir("az");
    let path = std::env::join_paths(std::iter::once(dir.clone()).chain(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    )))
    .unwrap();
    let output = tokio::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "azure_cli_token_is_used",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(FAKE_AZ_DIR, &dir)
        .env("PATH", path)
        .output()
        .await
        .unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "child failed:\n{stdout}\n{stderr}");
    // The filter matched (and ran) exactly this test in the child.
    assert!(stdout.contains("1 passed"), "{stdout}\n{stderr}");
}

#[cfg(unix)]
async fn azure_cli_child(dir: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt as _;

    // Written here, in the single-test child, so no other thread can be forking while the
    // file is open for writing (which would make exec fail with ETXTBSY).
    let az = dir.join("az");
    std::fs::write(&az, FAKE_AZ).unwrap();
    std::fs::set_permissions(&az, std::fs::Permissions::from_mode(0o755)).unwrap();

    let fake = start("unused").await;
    fake.state
        .lock()
        .unwrap()
        .valid_tokens
        .push("cli-access-token".to_owned());
    let secret = fake.fetch_with(AzureCredential::AzureCli).await;

    assert_eq!(secret, "the-secret");
    assert_eq!(
        fake.last_vault_bearer().as_deref(),
        Some("Bearer cli-access-token")
    );
    let args = std::fs::read_to_string(dir.join("args")).unwrap();
    assert_eq!(
        args.lines().collect::<Vec<_>>(),
        [
            "account",
            "get-access-token",
            "--output",
            "json",
            "--resource",
            "https://localhost"
        ]
    );
    // No token endpoint was involved.
    assert!(
        fake.requests_to(&format!("/{TENANT}/oauth2/v2.0/token"))
            .is_empty()
    );
}
