//! The Vault source against an in-process fake Vault.
//!
//! No Vault server can be installed here, so `FakeVault` is a hyper server on 127.0.0.1
//! that follows Vault's *documented* HTTP API (developer.hashicorp.com/vault/api-docs):
//! `sys/internal/ui/mounts/<path>`, KV v1 `GET /v1/<mount>/<path>`, KV v2
//! `GET /v1/<mount>/data/<path>?version=N` (`data.data`, `data.metadata`), AppRole
//! `POST /v1/auth/<mount>/login`, `POST /v1/auth/token/renew-self`, `X-Vault-Token`,
//! `X-Vault-Namespace`, `{"errors":[..]}` bodies, 403 for bad tokens and policy denials,
//! 404 for missing secrets, 503 when sealed. It was written from the docs, not recorded
//! from a live Vault.
#![cfg(feature = "vault")]

use std::{
    collections::HashMap,
    convert::Infallible,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::{body::Incoming, server::conn::http1, service::service_fn};
use hyper_util::rt::TokioIo;
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use tower_mlflow_secrets::{
    CachedSecret,
    source::{
        SecretSource,
        vault::{KvVersion, Vault, VaultAuth},
    },
};

const ROOT: &str = "root-token-abc";
const ROLE_ID: &str = "role-id-123";
const SECRET_ID: &str = "secret-id-456";

/// A mount: KV version and path -> versions of the data object.
type Mount = (u8, HashMap<String, Vec<Value>>);

#[derive(Default)]
struct FakeState {
    /// Namespace -> mount -> (kv version, path -> versions of the data object).
    mounts: HashMap<String, HashMap<String, Mount>>,
    /// Token -> (expiry, renewable, ttl seconds).
    tokens: HashMap<String, (Option<Instant>, bool, u64)>,
    /// Paths (`<mount>/<path>`) the tokens may not read.
    denied: Vec<String>,
    token_ttl: u64,
    token_renewable: bool,
    v1_lease: u64,
    sealed: bool,
    deny_renew: bool,
    logins: u32,
    renewals: u32,
    reads: u32,
    preflights: u32,
    issued: u32,
}

#[derive(Clone)]
struct FakeVault {
    addr: SocketAddr,
    state: Arc<Mutex<FakeState>>,
}

#[allow(clippy::needless_pass_by_value)] // called with `json!` temporaries
fn reply(status: StatusCode, body: Value) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    response
}

fn errors(status: StatusCode, message: &str) -> Response<Full<Bytes>> {
    let list: Vec<&str> = if message.is_empty() {
        vec![]
    } else {
        vec![message]
    };
    reply(status, json!({ "errors": list }))
}

impl FakeVault {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut state = FakeState {
            token_ttl: 3600,
            token_renewable: true,
            ..FakeState::default()
        };
        state.tokens.insert(ROOT.to_owned(), (None, false, 0));
        let fake = Self {
            addr,
            state: Arc::new(Mutex::new(state)),
        };
        let server = fake.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let server = server.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| {
                        let server = server.clone();
                        async move { Ok::<_, Infallible>(server.handle(req).await) }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        fake
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn with<R>(&self, f: impl FnOnce(&mut FakeState) -> R) -> R {
        f(&mut self.state.lock().unwrap())
    }

    fn put(&self, namespace: &str, mount: &str, version: u8, path: &str, data: Value) {
        self.with(|s| {
            let mount = s
                .mounts
                .entry(namespace.to_owned())
                .or_default()
                .entry(mount.to_owned())
                .or_insert_with(|| (version, HashMap::new()));
            mount.1.entry(path.to_owned()).or_default().push(data);
        });
    }

    async fn handle(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let (parts, body) = req.into_parts();
        let body = body
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let header = |name: &str| {
            parts
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let namespace = header("x-vault-namespace").unwrap_or_default();
        let token = header("x-vault-token");
        let path = parts.uri.path().trim_start_matches("/v1/").to_owned();
        let query = parts.uri.query().unwrap_or("").to_owned();
        let mut s = self.state.lock().unwrap();
        if s.sealed {
            return errors(StatusCode::SERVICE_UNAVAILABLE, "Vault is sealed");
        }
        // AppRole login needs no token.
        if parts.method == http::Method::POST && path == "auth/approle/login" {
            let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            if body["role_id"] != ROLE_ID || body["secret_id"] != SECRET_ID {
                return errors(StatusCode::BAD_REQUEST, "invalid role or secret ID");
            }
            s.logins += 1;
            s.issued += 1;
            let token = format!("hvs.issued-{}", s.issued);
            let ttl = s.token_ttl;
            let renewable = s.token_renewable;
            s.tokens.insert(
                token.clone(),
                (
                    Some(Instant::now() + Duration::from_secs(ttl)),
                    renewable,
                    ttl,
                ),
            );
            return reply(
                StatusCode::OK,
                json!({"auth": {"client_token": token, "lease_duration": ttl, "renewable": renewable, "policies": ["default", "mlflow"]}}),
            );
        }
        let token = token.unwrap_or_default();
        let valid = match s.tokens.get(&token) {
            Some((Some(expiry), _, _)) => Instant::now() < *expiry,
            Some((None, _, _)) => true,
            None => false,
        };
        if !valid {
            return errors(StatusCode::FORBIDDEN, "permission denied");
        }
        if parts.method == http::Method::POST && path == "auth/token/renew-self" {
            let (_, renewable, ttl) = s.tokens[&token];
            if s.deny_renew || !renewable {
                return errors(StatusCode::BAD_REQUEST, "lease is not renewable");
            }
            s.renewals += 1;
            s.tokens.insert(
                token.clone(),
                (
                    Some(Instant::now() + Duration::from_secs(ttl)),
                    renewable,
                    ttl,
                ),
            );
            return reply(
                StatusCode::OK,
                json!({"auth": {"client_token": token, "lease_duration": ttl, "renewable": true}}),
            );
        }
        let Some(mounts) = s.mounts.get(&namespace) else {
            return errors(StatusCode::NOT_FOUND, "");
        };
        if let Some(full) = path.strip_prefix("sys/internal/ui/mounts/") {
            let found = mounts
                .iter()
                .find(|(m, _)| full == m.as_str() || full.starts_with(&format!("{m}/")))
                .map(|(m, (v, _))| (m.clone(), *v));
            s.preflights += 1;
            return match found {
                Some((mount, version)) => reply(
                    StatusCode::OK,
                    json!({"data": {"type": "kv", "path": format!("{mount}/"), "options": {"version": version.to_string()}}}),
                ),
                None => errors(StatusCode::BAD_REQUEST, "no handler for route"),
            };
        }
        if parts.method != http::Method::GET {
            return errors(StatusCode::METHOD_NOT_ALLOWED, "");
        }
        let Some((mount, rest)) = path.split_once('/') else {
            return errors(StatusCode::NOT_FOUND, "");
        };
        let Some((version, secrets)) = mounts.get(mount) else {
            return errors(StatusCode::NOT_FOUND, "no handler for route");
        };
        let version = *version;
        let secret_path = if version == 2 {
            match rest.strip_prefix("data/") {
                Some(p) => p,
                None => return errors(StatusCode::NOT_FOUND, ""),
            }
        } else {
            rest
        };
        let denied = s.denied.contains(&format!("{mount}/{secret_path}"));
        let versions = secrets.get(secret_path).cloned();
        let lease = s.v1_lease;
        s.reads += 1;
        if denied {
            return errors(StatusCode::FORBIDDEN, "permission denied");
        }
        let Some(versions) = versions else {
            return errors(StatusCode::NOT_FOUND, "");
        };
        if version == 1 {
            let data = versions.last().cloned().unwrap_or(Value::Null);
            return reply(
                StatusCode::OK,
                json!({"data": data, "lease_duration": lease, "renewable": false}),
            );
        }
        let wanted = query
            .strip_prefix("version=")
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(versions.len());
        match versions.get(wanted.wrapping_sub(1)) {
            Some(data) => reply(
                StatusCode::OK,
                json!({"data": {"data": data, "metadata": {"version": wanted, "deletion_time": "", "destroyed": false}}, "lease_duration": 0}),
            ),
            None => errors(StatusCode::NOT_FOUND, ""),
        }
    }
}

fn token_vault(fake: &FakeVault) -> tower_mlflow_secrets::source::vault::VaultBuilder {
    Vault::builder(fake.url()).auth(VaultAuth::token(ROOT))
}

fn approle_vault(fake: &FakeVault) -> tower_mlflow_secrets::source::vault::VaultBuilder {
    Vault::builder(fake.url()).auth(VaultAuth::app_role("approle", ROLE_ID, SECRET_ID))
}

async fn fetch_text(source: &Vault) -> String {
    let fetched = source.fetch().await.unwrap();
    fetched.secret().expose_secret().to_owned()
}

#[tokio::test]
async fn kv_v2_on_a_custom_mount_is_detected() {
    let fake = FakeVault::start().await;
    fake.put("", "kv", 2, "mlflow/prod", json!({"token": "v2-token"}));
    let source = token_vault(&fake).path("kv/mlflow/prod").build().unwrap();
    let text = fetch_text(&source).await;
    assert_eq!(
        serde_json::from_str::<Value>(&text).unwrap(),
        json!({"token": "v2-token"})
    );
    assert_eq!(fake.with(|s| s.preflights), 1);
    // The detected mount is remembered.
    fetch_text(&source).await;
    assert_eq!(fake.with(|s| s.preflights), 1);
}

#[tokio::test]
async fn kv_v2_api_form_path_is_accepted() {
    let fake = FakeVault::start().await;
    fake.put("", "kv", 2, "mlflow/prod", json!({"token": "v2-token"}));
    let source = token_vault(&fake)
        .path("kv/data/mlflow/prod")
        .field("token")
        .build()
        .unwrap();
    assert_eq!(fetch_text(&source).await, "v2-token");
}

#[tokio::test]
async fn kv_v1_on_a_custom_mount_uses_the_lease_as_expiry() {
    let fake = FakeVault::start().await;
    fake.put(
        "",
        "legacy",
        1,
        "apps/mlflow",
        json!({"username": "u", "password": "p"}),
    );
    fake.with(|s| s.v1_lease = 600);
    let source = token_vault(&fake)
        .path("legacy/apps/mlflow")
        .build()
        .unwrap();
    let fetched = source.fetch().await.unwrap();
    assert_eq!(fetched.expires_in(), Some(Duration::from_secs(600)));
    let data: Value = serde_json::from_str(fetched.secret().expose_secret()).unwrap();
    assert_eq!(data, json!({"username": "u", "password": "p"}));
}

#[tokio::test]
async fn configured_mount_and_version_skip_detection() {
    let fake = FakeVault::start().await;
    fake.put("", "kv", 2, "app", json!({"token": "t"}));
    let source = token_vault(&fake)
        .mount("kv")
        .kv_version(KvVersion::V2)
        .path("app")
        .field("token")
        .build()
        .unwrap();
    assert_eq!(fetch_text(&source).await, "t");
    assert_eq!(fake.with(|s| s.preflights), 0);
}

#[tokio::test]
async fn mount_without_version_detects_the_version() {
    let fake = FakeVault::start().await;
    fake.put("", "kv1", 1, "app", json!({"token": "from-v1"}));
    let source = token_vault(&fake)
        .mount("kv1")
        .path("app")
        .field("token")
        .build()
        .unwrap();
    assert_eq!(fetch_text(&source).await, "from-v1");
    assert_eq!(fake.with(|s| s.preflights), 1);
}

#[tokio::test]
async fn kv_v2_version_can_be_pinned() {
    let fake = FakeVault::start().await;
    fake.put("", "kv", 2, "app", json!({"token": "old"}));
    fake.put("", "kv", 2, "app", json!({"token": "new"}));
    let latest = token_vault(&fake)
        .path("kv/app")
        .field("token")
        .build()
        .unwrap();
    assert_eq!(fetch_text(&latest).await, "new");
    let pinned = token_vault(&fake)
        .path("kv/app")
        .field("token")
        .version(1)
        .build()
        .unwrap();
    assert_eq!(fetch_text(&pinned).await, "old");
}

#[tokio::test]
async fn approle_logs_in_once_and_reuses_the_token() {
    let fake = FakeVault::start().await;
    fake.put("", "secret", 2, "mlflow", json!({"token": "t"}));
    let source = approle_vault(&fake).path("secret/mlflow").build().unwrap();
    fetch_text(&source).await;
    fetch_text(&source).await;
    assert_eq!(fake.with(|s| (s.logins, s.reads)), (1, 2));
}

#[tokio::test]
async fn approle_token_is_renewed_before_it_expires() {
    let fake = FakeVault::start().await;
    fake.put("", "secret", 2, "mlflow", json!({"token": "t"}));
    fake.with(|s| s.token_ttl = 600);
    // Renew when less than the whole lease is left: due right after login.
    let source = approle_vault(&fake)
        .path("secret/mlflow")
        .renew_before(Duration::from_secs(600))
        .build()
        .unwrap();
    fetch_text(&source).await;
    fetch_text(&source).await;
    assert_eq!(fake.with(|s| (s.logins, s.renewals)), (1, 1));
}

#[tokio::test]
async fn approle_logs_in_again_when_renewal_fails() {
    let fake = FakeVault::start().await;
    fake.put("", "secret", 2, "mlflow", json!({"token": "t"}));
    fake.with(|s| {
        s.token_ttl = 600;
        s.deny_renew = true;
    });
    let source = approle_vault(&fake)
        .path("secret/mlflow")
        .renew_before(Duration::from_secs(600))
        .build()
        .unwrap();
    fetch_text(&source).await;
    assert_eq!(fetch_text(&source).await, "{\"token\":\"t\"}");
    assert_eq!(fake.with(|s| (s.logins, s.renewals)), (2, 0));
}

#[tokio::test]
async fn approle_survives_token_expiry() {
    let fake = FakeVault::start().await;
    fake.put("", "secret", 2, "mlflow", json!({"token": "t"}));
    // A short, non-renewable token, as a role with token_ttl=1s and token_max_ttl=1s gives.
    fake.with(|s| {
        s.token_ttl = 1;
        s.token_renewable = false;
    });
    let source = approle_vault(&fake)
        .path("secret/mlflow")
        .field("token")
        .build()
        .unwrap();
    let secret = CachedSecret::builder(source)
        .ttl(Duration::from_secs(1))
        .max_attempts(1)
        .build()
        .unwrap();
    assert_eq!(secret.get().await.unwrap().secret().expose_secret(), "t");
    // Let the token (and the cached value) expire for real; the fake refuses it from now on.
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let first_token_expired = fake.with(|s| {
        s.tokens
            .get("hvs.issued-1")
            .and_then(|t| t.0)
            .is_some_and(|exp| Instant::now() >= exp)
    });
    assert!(first_token_expired);
    fake.put("", "secret", 2, "mlflow", json!({"token": "t2"}));
    let mut value = String::new();
    // The cache refreshes in the background; poll until the new value arrives.
    for _ in 0..50 {
        value = secret
            .get()
            .await
            .unwrap()
            .secret()
            .expose_secret()
            .to_owned();
        if value == "t2" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(value, "t2");
    assert!(fake.with(|s| s.logins) >= 2);
}

#[tokio::test]
async fn approle_logs_in_again_when_vault_revokes_the_token() {
    let fake = FakeVault::start().await;
    fake.put("", "secret", 2, "mlflow", json!({"token": "t"}));
    let source = approle_vault(&fake).path("secret/mlflow").build().unwrap();
    fetch_text(&source).await;
    // Vault forgets the token (revoked, or expired early by max_ttl) while the client
    // still believes it valid: the read gets 403, the source logs in again, once.
    fake.with(|s| s.tokens.retain(|t, _| t == ROOT));
    fetch_text(&source).await;
    assert_eq!(fake.with(|s| s.logins), 2);
}

#[tokio::test]
async fn sealed_vault_is_a_transient_error() {
    let fake = FakeVault::start().await;
    fake.put("", "kv", 2, "app", json!({"token": "t"}));
    fake.with(|s| s.sealed = true);
    let source = token_vault(&fake).path("kv/app").build().unwrap();
    let err = source.fetch().await.unwrap_err();
    assert!(err.is_transient(), "{err}");
    assert!(err.to_string().contains("503"), "{err}");
}

#[tokio::test]
async fn permission_denied_is_permanent_and_not_retried() {
    let fake = FakeVault::start().await;
    fake.put("", "kv", 2, "app", json!({"token": "t"}));
    fake.with(|s| s.denied.push("kv/app".to_owned()));
    let source = token_vault(&fake)
        .mount("kv")
        .kv_version(KvVersion::V2)
        .path("app")
        .build()
        .unwrap();
    let err = source.fetch().await.unwrap_err();
    assert!(!err.is_transient(), "{err}");
    assert!(err.to_string().contains("permission denied"), "{err}");
    let secret = CachedSecret::builder(source)
        .max_attempts(5)
        .build()
        .unwrap();
    assert!(secret.get().await.is_err());
    assert_eq!(
        fake.with(|s| s.reads),
        2,
        "one read by hand, one by the cache"
    );
}

#[tokio::test]
async fn approle_policy_denial_relogs_in_once_then_fails() {
    let fake = FakeVault::start().await;
    fake.put("", "kv", 2, "app", json!({"token": "t"}));
    fake.with(|s| s.denied.push("kv/app".to_owned()));
    let source = approle_vault(&fake)
        .mount("kv")
        .kv_version(KvVersion::V2)
        .path("app")
        .build()
        .unwrap();
    // A fresh login that is denied is not retried with another login.
    assert!(!source.fetch().await.unwrap_err().is_transient());
    assert_eq!(fake.with(|s| s.logins), 1);
    // A cached token that is denied gets exactly one new login, then the error stands.
    assert!(!source.fetch().await.unwrap_err().is_transient());
    assert_eq!(fake.with(|s| s.logins), 2);
}

#[tokio::test]
async fn missing_secret_is_permanent() {
    let fake = FakeVault::start().await;
    fake.put("", "kv", 2, "app", json!({"token": "t"}));
    let source = token_vault(&fake).path("kv/other").build().unwrap();
    let err = source.fetch().await.unwrap_err();
    assert!(!err.is_transient(), "{err}");
    assert!(err.to_string().contains("404"), "{err}");
}

#[tokio::test]
async fn namespace_header_selects_the_namespace() {
    let fake = FakeVault::start().await;
    fake.put("team-a", "kv", 2, "app", json!({"token": "team-a-token"}));
    let without = token_vault(&fake).path("kv/app").build().unwrap();
    assert!(without.fetch().await.is_err());
    let with = token_vault(&fake)
        .namespace("team-a")
        .path("kv/app")
        .field("token")
        .build()
        .unwrap();
    assert_eq!(fetch_text(&with).await, "team-a-token");
}

#[tokio::test]
async fn errors_and_debug_never_contain_tokens() {
    let fake = FakeVault::start().await;
    fake.with(|s| s.sealed = true);
    let source = approle_vault(&fake).path("kv/app").build().unwrap();
    let err = source.fetch().await.unwrap_err();
    let text = format!("{err} {err:?} {source:?}");
    for needle in [ROLE_ID, SECRET_ID, ROOT] {
        assert!(!text.contains(needle), "{text}");
    }
}

#[tokio::test]
async fn env_configuration_reads_through_approle() {
    use tower_mlflow_secrets::config::Config;
    let fake = FakeVault::start().await;
    fake.put("team-a", "kv", 2, "mlflow", json!({"token": "from-env"}));
    let url = fake.url();
    let env = [
        ("MLFLOW_SECRETS_AUTH_ENABLE", url.as_str()),
        ("VAULT_ADDR", url.as_str()),
        ("VAULT_ROLE_ID", ROLE_ID),
        ("VAULT_SECRET_ID", SECRET_ID),
        ("VAULT_NAMESPACE", "team-a"),
        ("MLFLOW_VAULT_SECRET_PATH", "kv/mlflow"),
        ("MLFLOW_SECRETS_ALLOWED_HOSTS", "mlflow.example.com"),
    ];
    let lookup = |name: &str| {
        if name == "MLFLOW_SECRETS_AUTH_ENABLE" {
            return Some("vault".to_owned());
        }
        env.iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| (*v).to_owned())
    };
    let config = Config::from_lookup(lookup).unwrap();
    let source = config.source().await.unwrap();
    let fetched = source.fetch().await.unwrap();
    assert_eq!(fetched.secret().expose_secret(), r#"{"token":"from-env"}"#);
    assert!(config.layer().await.is_ok());
    assert_eq!(fake.with(|s| s.logins), 1);
}
