//! The in-process fake Vault, shared by `vault_fake.rs` and, through `#[path]`, by the
//! peer tests of `mlflow-secrets proxy` in the `tests/` crate (test support only, not part
//! of the crate).
//!
//! A hyper server on 127.0.0.1 that follows Vault's *documented* HTTP API
//! (developer.hashicorp.com/vault/api-docs); see `vault_fake.rs` for what it covers. It was
//! written from the docs, not recorded from a live Vault; it is a fake, not a Vault.
#![allow(dead_code, reason = "each test crate uses a part of it")]

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
use serde_json::{Value, json};

pub(crate) const ROOT: &str = "root-token-abc";
pub(crate) const ROLE_ID: &str = "role-id-123";
pub(crate) const SECRET_ID: &str = "secret-id-456";

/// A mount: KV version and path -> versions of the data object.
pub(crate) type Mount = (u8, HashMap<String, Vec<Value>>);

#[derive(Default)]
pub(crate) struct FakeState {
    /// Namespace -> mount -> (kv version, path -> versions of the data object).
    pub(crate) mounts: HashMap<String, HashMap<String, Mount>>,
    /// Token -> (expiry, renewable, ttl seconds).
    pub(crate) tokens: HashMap<String, (Option<Instant>, bool, u64)>,
    /// Paths (`<mount>/<path>`) the tokens may not read.
    pub(crate) denied: Vec<String>,
    pub(crate) token_ttl: u64,
    pub(crate) token_renewable: bool,
    pub(crate) v1_lease: u64,
    pub(crate) sealed: bool,
    pub(crate) deny_renew: bool,
    /// Sent as `lease_duration` in login, renewal and KV v1 replies instead of the real
    /// one (hostile values for tests); the token then does not expire.
    pub(crate) lease_reply: Option<Value>,
    /// A standby: every request is answered 307 to this base URL plus the request's path.
    pub(crate) redirect_to: Option<String>,
    pub(crate) redirects: u32,
    pub(crate) lookups: u32,
    pub(crate) logins: u32,
    pub(crate) renewals: u32,
    pub(crate) reads: u32,
    pub(crate) preflights: u32,
    pub(crate) issued: u32,
}

#[derive(Clone)]
pub(crate) struct FakeVault {
    pub(crate) addr: SocketAddr,
    pub(crate) state: Arc<Mutex<FakeState>>,
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
    pub(crate) async fn start() -> Self {
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

    pub(crate) fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub(crate) fn with<R>(&self, f: impl FnOnce(&mut FakeState) -> R) -> R {
        f(&mut self.state.lock().unwrap())
    }

    pub(crate) fn put(&self, namespace: &str, mount: &str, version: u8, path: &str, data: Value) {
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
        if let Some(base) = s.redirect_to.clone() {
            s.redirects += 1;
            let target = format!(
                "{base}{}",
                parts.uri.path_and_query().map_or("", |p| p.as_str())
            );
            let mut response = reply(StatusCode::TEMPORARY_REDIRECT, json!({}));
            response
                .headers_mut()
                .insert(http::header::LOCATION, target.parse().unwrap());
            return response;
        }
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
            let expiry = s
                .lease_reply
                .is_none()
                .then(|| Instant::now() + Duration::from_secs(ttl));
            s.tokens.insert(token.clone(), (expiry, renewable, ttl));
            let lease = s.lease_reply.clone().unwrap_or(json!(ttl));
            return reply(
                StatusCode::OK,
                json!({"auth": {"client_token": token, "lease_duration": lease, "renewable": renewable, "policies": ["default", "mlflow"]}}),
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
        if parts.method == http::Method::GET && path == "auth/token/lookup-self" {
            s.lookups += 1;
            let (expiry, renewable, _) = s.tokens[&token];
            let ttl = expiry.map_or(0, |at| {
                at.saturating_duration_since(Instant::now()).as_secs()
            });
            return reply(
                StatusCode::OK,
                json!({"data": {"ttl": ttl, "renewable": renewable, "policies": ["default"], "expire_time": null}}),
            );
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
            let lease = s.lease_reply.clone().unwrap_or(json!(ttl));
            return reply(
                StatusCode::OK,
                json!({"auth": {"client_token": token, "lease_duration": lease, "renewable": true}}),
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
        let lease = s.lease_reply.clone().unwrap_or(json!(s.v1_lease));
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
