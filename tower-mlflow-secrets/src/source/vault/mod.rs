//! [`Vault`]: a secret from HashiCorp Vault's KV engine (v1 or v2), with token or AppRole
//! authentication (feature `vault`).
//!
//! A small client on hyper 1 + rustls (explicit `ring` provider) that follows Vault's
//! documented HTTP API:
//!
//! - **Auth:** a token ([`VaultAuth::token`], `X-Vault-Token`), or AppRole
//!   ([`VaultAuth::app_role`], `POST /v1/auth/<mount>/login`, mount configurable). The
//!   token is held as a `SecretString`. It is renewed with `auth/token/renew-self` once two
//!   thirds of its lease have passed (or [`VaultBuilder::renew_before`] before expiry); when
//!   renewal fails, the token has expired or Vault rejects it (403), AppRole logs in again.
//! - **KV:** mount and version configurable; when either is missing they are read from
//!   `GET /v1/sys/internal/ui/mounts/<path>` (the Vault CLI's own preflight). KV v2 reads may
//!   pin a version. The whole `data` object is returned as JSON (so
//!   [`SecretFormat::Json`](crate::format::SecretFormat::Json) reads it), or one field of it
//!   with [`VaultBuilder::field`].
//! - **Expiry:** a non-zero `lease_duration` on the read becomes the secret's expiry.
//! - **Errors:** 403 and 404 are permanent (not retried); 429, 5xx (503 = sealed) and
//!   network errors are transient.
//! - **Transport:** `https` (custom CA as with `VAULT_CACERT`, client certificate for
//!   mutual TLS); plain `http` only to loopback unless explicitly allowed;
//!   `X-Vault-Namespace` on every request when a namespace is set.
//!
//! ```no_run
//! use std::time::Duration;
//! use tower_mlflow_secrets::{CachedSecret, source::vault::{KvVersion, Vault, VaultAuth}};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let vault = Vault::builder("https://vault.example.com:8200")
//!     .auth(VaultAuth::app_role("approle", "my-role-id", "my-secret-id"))
//!     .namespace("team-a")
//!     .mount("kv")
//!     .kv_version(KvVersion::V2)
//!     .path("mlflow/prod")
//!     .ca_pem_file("/etc/ssl/vault-ca.pem")
//!     .build()?;
//! let secret = CachedSecret::builder(vault).ttl(Duration::from_secs(300)).build();
//! # let _ = secret;
//! # Ok(())
//! # }
//! ```
//!
//! The same from the environment (names as in mlflow-secrets-auth, plus additions):
//!
//! ```text
//! MLFLOW_SECRETS_AUTH_ENABLE=vault
//! VAULT_ADDR=https://vault.example.com:8200
//! VAULT_ROLE_ID=…  VAULT_SECRET_ID=…        # or VAULT_TOKEN=…
//! MLFLOW_VAULT_SECRET_PATH=kv/mlflow/prod
//! VAULT_NAMESPACE=team-a  VAULT_CACERT=/etc/ssl/vault-ca.pem        # additions
//! MLFLOW_VAULT_KV_MOUNT=kv  MLFLOW_VAULT_KV_VERSION=2  MLFLOW_VAULT_SECRET_VERSION=3
//! ```
//!
//! Differences from mlflow-secrets-auth: the mount is not hard-coded to `secret/`, the KV
//! version is detected (not "try v2, then v1 on any error"), tokens are renewed and AppRole
//! logs in again after expiry, `VAULT_NAMESPACE` is honoured, 403/404 are not retried, and
//! plain http is refused for non-loopback addresses.

use std::{fmt, path::PathBuf, sync::Arc, time::Duration};

use bytes::Bytes;
use http::{Method, Request, StatusCode, Uri, header::CONTENT_TYPE};
use http_body_util::Full;
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use tokio::{sync::Mutex, time::Instant};

use super::{
    Fetched, SecretSource, SourceError,
    http::{HttpClient, HttpResponse, TlsSettings, scheme_is_safe, status_is_transient},
};

/// How the source authenticates to Vault.
#[derive(Clone)]
#[non_exhaustive]
pub enum VaultAuth {
    /// A fixed token (`VAULT_TOKEN`).
    Token(SecretString),
    /// AppRole login (`VAULT_ROLE_ID` / `VAULT_SECRET_ID`).
    AppRole {
        /// The auth mount, `approle` by default.
        mount: String,
        /// The role ID.
        role_id: String,
        /// The secret ID.
        secret_id: SecretString,
    },
}

impl VaultAuth {
    /// A fixed token.
    pub fn token(token: impl Into<String>) -> Self {
        Self::Token(SecretString::from(token.into()))
    }

    /// AppRole login at `mount` (usually `approle`).
    pub fn app_role(
        mount: impl Into<String>,
        role_id: impl Into<String>,
        secret_id: impl Into<String>,
    ) -> Self {
        Self::AppRole {
            mount: mount.into(),
            role_id: role_id.into(),
            secret_id: SecretString::from(secret_id.into()),
        }
    }
}

impl fmt::Debug for VaultAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Token(_) => f.write_str("Token([REDACTED])"),
            Self::AppRole { mount, .. } => f
                .debug_struct("AppRole")
                .field("mount", mount)
                .field("role_id", &"[REDACTED]")
                .field("secret_id", &"[REDACTED]")
                .finish(),
        }
    }
}

/// The KV secrets engine version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum KvVersion {
    /// KV v1: `GET /v1/<mount>/<path>`.
    V1,
    /// KV v2: `GET /v1/<mount>/data/<path>`.
    V2,
}

/// A configuration error from [`VaultBuilder::build`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum VaultBuildError {
    /// The address is not an absolute `http`/`https` URI.
    InvalidAddress,
    /// The address uses plain http to a host that is not loopback.
    PlainHttp,
    /// No authentication was configured.
    NoAuth,
    /// No secret path was configured.
    NoPath,
    /// A version was pinned on a KV v1 mount (v1 has no versions).
    VersionOnKvV1,
    /// The namespace is not a valid header value.
    InvalidNamespace,
    /// A CA or client-certificate file could not be read (the path is given).
    UnreadableFile(PathBuf),
    /// The CA bundle holds no valid certificate.
    InvalidCa,
    /// The client certificate or key is invalid.
    InvalidClientCert,
}

impl fmt::Display for VaultBuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidAddress => f.write_str("the Vault address is not an http(s) URL"),
            Self::PlainHttp => f.write_str(
                "the Vault address uses plain http to a host that is not loopback; use https",
            ),
            Self::NoAuth => f.write_str("no Vault authentication (token or AppRole) configured"),
            Self::NoPath => f.write_str("no Vault secret path configured"),
            Self::VersionOnKvV1 => f.write_str("a secret version can only be pinned on KV v2"),
            Self::InvalidNamespace => {
                f.write_str("the Vault namespace is not a valid header value")
            }
            Self::UnreadableFile(path) => write!(f, "cannot read {}", path.display()),
            Self::InvalidCa => f.write_str("the Vault CA bundle holds no valid PEM certificate"),
            Self::InvalidClientCert => {
                f.write_str("the Vault client certificate or key is invalid")
            }
        }
    }
}

impl std::error::Error for VaultBuildError {}

/// Builds a [`Vault`] source.
pub struct VaultBuilder {
    address: String,
    auth: Option<VaultAuth>,
    namespace: Option<String>,
    mount: Option<String>,
    kv_version: Option<KvVersion>,
    path: Option<String>,
    version: Option<u64>,
    field: Option<String>,
    ca_file: Option<PathBuf>,
    ca_pem: Option<Vec<u8>>,
    client_files: Option<(PathBuf, PathBuf)>,
    client_pem: Option<(Vec<u8>, Vec<u8>)>,
    allow_plain_http: bool,
    timeout: Duration,
    renew_before: Option<Duration>,
}

impl fmt::Debug for VaultBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VaultBuilder")
            .field("address", &self.address)
            .field("auth", &self.auth)
            .field("namespace", &self.namespace)
            .field("mount", &self.mount)
            .field("kv_version", &self.kv_version)
            .field("path", &self.path)
            .field("version", &self.version)
            .field("field", &self.field)
            .finish_non_exhaustive()
    }
}

impl VaultBuilder {
    /// Sets the authentication.
    #[must_use]
    pub fn auth(mut self, auth: VaultAuth) -> Self {
        self.auth = Some(auth);
        self
    }

    /// Sets the Enterprise / HCP namespace (`X-Vault-Namespace`).
    #[must_use]
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = Some(namespace.into());
        self
    }

    /// Sets the KV mount (for example `secret` or `kv`); `path` is then relative to it.
    /// Without it, `path` is a full path and the mount is detected.
    #[must_use]
    pub fn mount(mut self, mount: impl Into<String>) -> Self {
        self.mount = Some(mount.into());
        self
    }

    /// Sets the KV version; without it the version is detected.
    #[must_use]
    pub fn kv_version(mut self, version: KvVersion) -> Self {
        self.kv_version = Some(version);
        self
    }

    /// Sets the secret path (relative to the mount if one is set).
    #[must_use]
    pub fn path(mut self, path: impl Into<String>) -> Self {
        self.path = Some(path.into());
        self
    }

    /// Pins a KV v2 version (default: the latest).
    #[must_use]
    pub fn version(mut self, version: u64) -> Self {
        self.version = Some(version);
        self
    }

    /// Returns only this field of the secret's data, as text, instead of the whole object
    /// as JSON.
    #[must_use]
    pub fn field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    /// Trusts only the certificates in this PEM file (like `VAULT_CACERT`).
    #[must_use]
    pub fn ca_pem_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.ca_file = Some(path.into());
        self
    }

    /// Trusts only the certificates in this PEM bundle.
    #[must_use]
    pub fn ca_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.ca_pem = Some(pem.into());
        self
    }

    /// Presents this client certificate chain and key, PEM files (like `VAULT_CLIENT_CERT`
    /// and `VAULT_CLIENT_KEY`).
    #[must_use]
    pub fn client_cert_files(mut self, cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        self.client_files = Some((cert.into(), key.into()));
        self
    }

    /// Presents this client certificate chain and key, PEM.
    #[must_use]
    pub fn client_cert_pem(mut self, cert: impl Into<Vec<u8>>, key: impl Into<Vec<u8>>) -> Self {
        self.client_pem = Some((cert.into(), key.into()));
        self
    }

    /// Allows plain http to hosts that are not loopback (off by default).
    #[must_use]
    pub fn allow_plain_http(mut self, allow: bool) -> Self {
        self.allow_plain_http = allow;
        self
    }

    /// Timeout for each HTTP request to Vault (default 10 s).
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Renews the token when less than this is left of its lease (default: a third of the
    /// lease).
    #[must_use]
    pub fn renew_before(mut self, lead: Duration) -> Self {
        self.renew_before = Some(lead);
        self
    }

    /// Checks the configuration and builds the source. No request is sent yet.
    pub fn build(self) -> Result<Vault, VaultBuildError> {
        let address: Uri = self
            .address
            .trim()
            .trim_end_matches('/')
            .parse()
            .map_err(|_| VaultBuildError::InvalidAddress)?;
        if address.host().is_none() || !matches!(address.scheme_str(), Some("http" | "https")) {
            return Err(VaultBuildError::InvalidAddress);
        }
        if !scheme_is_safe(&address, self.allow_plain_http) {
            return Err(VaultBuildError::PlainHttp);
        }
        let auth = self.auth.ok_or(VaultBuildError::NoAuth)?;
        let path = self
            .path
            .map(|p| p.trim_matches('/').to_owned())
            .filter(|p| !p.is_empty())
            .ok_or(VaultBuildError::NoPath)?;
        if self.version.is_some() && self.kv_version == Some(KvVersion::V1) {
            return Err(VaultBuildError::VersionOnKvV1);
        }
        if let Some(ns) = &self.namespace {
            http::HeaderValue::from_str(ns).map_err(|_| VaultBuildError::InvalidNamespace)?;
        }
        let read = |p: &PathBuf| {
            TlsSettings::read_file(p).map_err(|_| VaultBuildError::UnreadableFile(p.clone()))
        };
        let ca_pem = match (&self.ca_file, self.ca_pem) {
            (Some(file), _) => Some(read(file)?),
            (None, pem) => pem,
        };
        let client_pem = match (&self.client_files, self.client_pem) {
            (Some((cert, key)), _) => Some((read(cert)?, read(key)?)),
            (None, pem) => pem,
        };
        let tls = TlsSettings { ca_pem, client_pem };
        let http = HttpClient::new(&tls, self.timeout).map_err(|e| match e {
            super::http::TlsError::InvalidCa => VaultBuildError::InvalidCa,
            super::http::TlsError::InvalidClientCert => VaultBuildError::InvalidClientCert,
        })?;
        let mount = self
            .mount
            .map(|m| m.trim_matches('/').to_owned())
            .filter(|m| !m.is_empty());
        let location = match (&mount, self.kv_version) {
            (Some(mount), Some(version)) => Some(KvLocation {
                mount: mount.clone(),
                version,
                path: path.clone(),
            }),
            _ => None,
        };
        let token = match &auth {
            VaultAuth::Token(token) => Some(TokenState::fixed(token.clone())),
            VaultAuth::AppRole { .. } => None,
        };
        Ok(Vault {
            inner: Arc::new(Inner {
                address: address.to_string().trim_end_matches('/').to_owned(),
                auth,
                namespace: self.namespace,
                path,
                mount,
                version: self.version,
                field: self.field,
                http,
                renew_before: self.renew_before,
                state: Mutex::new(State { token, location }),
            }),
        })
    }
}

/// A [`SecretSource`] reading a KV secret from HashiCorp Vault; see the [module docs](self).
/// Cheap to clone; clones share the token and the detected mount.
#[derive(Clone)]
pub struct Vault {
    inner: Arc<Inner>,
}

struct Inner {
    address: String,
    auth: VaultAuth,
    namespace: Option<String>,
    /// The configured path: relative to the mount when one was set, else full.
    path: String,
    /// The configured mount, if any.
    mount: Option<String>,
    version: Option<u64>,
    field: Option<String>,
    http: HttpClient,
    renew_before: Option<Duration>,
    state: Mutex<State>,
}

struct State {
    token: Option<TokenState>,
    location: Option<KvLocation>,
}

#[derive(Clone, Debug)]
struct KvLocation {
    mount: String,
    version: KvVersion,
    /// Relative to the mount.
    path: String,
}

struct TokenState {
    token: SecretString,
    /// `None`: no known expiry (a fixed token that was never looked up, or a root token).
    expires_at: Option<Instant>,
    renew_at: Option<Instant>,
    renewable: bool,
}

impl TokenState {
    fn fixed(token: SecretString) -> Self {
        Self {
            token,
            expires_at: None,
            renew_at: None,
            renewable: false,
        }
    }
}

impl fmt::Debug for Vault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Vault")
            .field("address", &self.inner.address)
            .field("auth", &self.inner.auth)
            .field("namespace", &self.inner.namespace)
            .field("path", &self.inner.path)
            .field("version", &self.inner.version)
            .finish_non_exhaustive()
    }
}

impl Vault {
    /// Starts a builder for the Vault server at `address` (as in `VAULT_ADDR`).
    pub fn builder(address: impl Into<String>) -> VaultBuilder {
        VaultBuilder {
            address: address.into(),
            auth: None,
            namespace: None,
            mount: None,
            kv_version: None,
            path: None,
            version: None,
            field: None,
            ca_file: None,
            ca_pem: None,
            client_files: None,
            client_pem: None,
            allow_plain_http: false,
            timeout: Duration::from_secs(10),
            renew_before: None,
        }
    }

    async fn fetch_inner(&self) -> Result<Fetched, SourceError> {
        let inner = &*self.inner;
        // One fetch at a time per source: logins and renewals are never duplicated.
        let mut state = inner.state.lock().await;
        let mut relogged = false;
        loop {
            let token = inner.current_token(&mut state, &mut relogged).await?;
            let location = match &state.location {
                Some(location) => location.clone(),
                None => {
                    let location = match inner.detect_location(&token).await {
                        Err(e) if inner.should_relogin(&e, relogged) => {
                            state.token = None;
                            continue;
                        }
                        other => other?,
                    };
                    state.location = Some(location.clone());
                    location
                }
            };
            match inner.read(&token, &location).await {
                Err(e) if inner.should_relogin(&e, relogged) => {
                    tracing::debug!(target: "tower_mlflow_secrets", "vault rejected the token; logging in again");
                    state.token = None;
                }
                other => return other.map_err(SourceError::from),
            }
        }
    }
}

/// A failed call: the source error plus whether Vault said 403.
struct ReadError {
    error: SourceError,
    forbidden: bool,
}

impl From<ReadError> for SourceError {
    fn from(e: ReadError) -> Self {
        e.error
    }
}

impl From<SourceError> for ReadError {
    fn from(error: SourceError) -> Self {
        Self {
            error,
            forbidden: false,
        }
    }
}

impl Inner {
    fn should_relogin(&self, error: &ReadError, relogged: bool) -> bool {
        // Vault answers 403 both for a bad token and for a policy denial; only a login we
        // can redo tells them apart, and only once per fetch.
        error.forbidden && !relogged && matches!(self.auth, VaultAuth::AppRole { .. })
    }

    fn request(
        &self,
        method: Method,
        path: &str,
        token: Option<&SecretString>,
        body: Option<Value>,
    ) -> Result<Request<Full<Bytes>>, SourceError> {
        let mut builder = Request::builder()
            .method(method)
            .uri(format!("{}/v1/{path}", self.address));
        if let Some(token) = token {
            let mut value = http::HeaderValue::from_str(token.expose_secret()).map_err(|_| {
                SourceError::permanent("the Vault token is not a valid header value")
            })?;
            value.set_sensitive(true);
            builder = builder.header("x-vault-token", value);
        }
        if let Some(ns) = &self.namespace {
            builder = builder.header("x-vault-namespace", ns.as_str());
        }
        let body = match body {
            Some(json) => {
                builder = builder.header(CONTENT_TYPE, "application/json");
                Full::new(Bytes::from(json.to_string()))
            }
            None => Full::new(Bytes::new()),
        };
        builder
            .body(body)
            .map_err(|e| SourceError::permanent("invalid Vault request URI").with_source(e))
    }

    async fn call(&self, request: Request<Full<Bytes>>, what: &str) -> Result<Value, ReadError> {
        let HttpResponse { status, body, .. } = self.http.send(request, what).await?;
        if status.is_success() {
            return serde_json::from_slice(&body).map_err(|e| {
                SourceError::permanent(format!("{what}: response is not JSON"))
                    .with_source(e)
                    .into()
            });
        }
        Err(ReadError {
            error: status_error(what, status, &body),
            forbidden: status == StatusCode::FORBIDDEN,
        })
    }

    /// The token to use, logging in or renewing first when needed.
    async fn current_token(
        &self,
        state: &mut State,
        relogged: &mut bool,
    ) -> Result<SecretString, SourceError> {
        let now = Instant::now();
        if let Some(current) = &state.token {
            let expired = current.expires_at.is_some_and(|at| now >= at);
            let due = current.renew_at.is_some_and(|at| now >= at);
            if !expired && !due {
                return Ok(current.token.clone());
            }
            if !expired && current.renewable {
                match self.renew(&current.token).await {
                    Ok(renewed) => {
                        let token = renewed.token.clone();
                        state.token = Some(renewed);
                        return Ok(token);
                    }
                    Err(e) => {
                        tracing::debug!(target: "tower_mlflow_secrets", error = %e.error, "vault token renewal failed");
                    }
                }
            }
            if let VaultAuth::Token(_) = self.auth {
                if expired {
                    return Err(SourceError::permanent(
                        "the Vault token has expired and cannot be renewed",
                    ));
                }
                // Renewal failed but the token still works for now: use it.
                return Ok(current.token.clone());
            }
            state.token = None;
        }
        match &self.auth {
            VaultAuth::Token(token) => {
                state.token = Some(TokenState::fixed(token.clone()));
                Ok(token.clone())
            }
            VaultAuth::AppRole {
                mount,
                role_id,
                secret_id,
            } => {
                *relogged = true;
                let body = serde_json::json!({
                    "role_id": role_id,
                    "secret_id": secret_id.expose_secret(),
                });
                let request = self.request(
                    Method::POST,
                    &format!("auth/{}/login", mount.trim_matches('/')),
                    None,
                    Some(body),
                )?;
                let response = self.call(request, "vault approle login").await?;
                let fresh = self.token_from_auth(&response, None)?;
                tracing::debug!(target: "tower_mlflow_secrets", "vault approle login succeeded");
                let token = fresh.token.clone();
                state.token = Some(fresh);
                Ok(token)
            }
        }
    }

    async fn renew(&self, token: &SecretString) -> Result<TokenState, ReadError> {
        let request = self.request(
            Method::POST,
            "auth/token/renew-self",
            Some(token),
            Some(serde_json::json!({})),
        )?;
        let response = self.call(request, "vault token renewal").await?;
        tracing::debug!(target: "tower_mlflow_secrets", "vault token renewed");
        Ok(self.token_from_auth(&response, Some(token))?)
    }

    /// Reads the `auth` block of a login or renewal response.
    fn token_from_auth(
        &self,
        response: &Value,
        current: Option<&SecretString>,
    ) -> Result<TokenState, SourceError> {
        let auth = response
            .get("auth")
            .ok_or_else(|| SourceError::permanent("vault response has no auth block"))?;
        let token = match auth.get("client_token").and_then(Value::as_str) {
            Some(t) if !t.is_empty() => SecretString::from(t.to_owned()),
            _ => match current {
                Some(t) => t.clone(),
                None => return Err(SourceError::permanent("vault login returned no token")),
            },
        };
        let lease = auth
            .get("lease_duration")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        let renewable = auth
            .get("renewable")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let now = Instant::now();
        let (expires_at, renew_at) = if lease == 0 {
            (None, None)
        } else {
            let lease = Duration::from_secs(lease);
            let lead = self.renew_before.unwrap_or(lease / 3).min(lease);
            (Some(now + lease), Some(now + (lease - lead)))
        };
        Ok(TokenState {
            token,
            expires_at,
            renew_at,
            renewable,
        })
    }

    async fn detect_location(&self, token: &SecretString) -> Result<KvLocation, ReadError> {
        let full_path = match &self.mount {
            Some(mount) => format!("{mount}/{}", self.path),
            None => self.path.clone(),
        };
        let request = self.request(
            Method::GET,
            &format!("sys/internal/ui/mounts/{full_path}"),
            Some(token),
            None,
        )?;
        let response = self.call(request, "vault mount detection").await?;
        let data = response.get("data").unwrap_or(&Value::Null);
        let mount = data
            .get("path")
            .and_then(Value::as_str)
            .map(|m| m.trim_matches('/').to_owned())
            .filter(|m| !m.is_empty())
            .ok_or_else(|| {
                SourceError::permanent("vault mount detection: no mount found for the path")
            })?;
        let engine = data.get("type").and_then(Value::as_str).unwrap_or("");
        if engine != "kv" && engine != "generic" {
            return Err(SourceError::permanent(format!(
                "vault mount `{mount}` is a `{engine}` engine, not kv"
            ))
            .into());
        }
        let version = match data
            .get("options")
            .and_then(|o| o.get("version"))
            .and_then(Value::as_str)
        {
            Some("2") => KvVersion::V2,
            _ => KvVersion::V1,
        };
        if version == KvVersion::V1 && self.version.is_some() {
            return Err(SourceError::permanent(
                "a secret version is pinned but the mount is KV v1",
            )
            .into());
        }
        // The configured path is full (`<mount>/<rest>`) unless it is already relative.
        let rest = full_path
            .strip_prefix(&mount)
            .and_then(|r| r.strip_prefix('/'))
            .unwrap_or(&full_path);
        let rest = match version {
            // Accept the API form `<mount>/data/<path>` for v2, as the Python plugin does.
            KvVersion::V2 => rest.strip_prefix("data/").unwrap_or(rest),
            KvVersion::V1 => rest,
        };
        tracing::debug!(target: "tower_mlflow_secrets", %mount, ?version, "vault kv mount detected");
        Ok(KvLocation {
            mount,
            version,
            path: rest.to_owned(),
        })
    }

    async fn read(
        &self,
        token: &SecretString,
        location: &KvLocation,
    ) -> Result<Fetched, ReadError> {
        let api_path = match location.version {
            KvVersion::V1 => format!("{}/{}", location.mount, location.path),
            KvVersion::V2 => match self.version {
                Some(v) => format!("{}/data/{}?version={v}", location.mount, location.path),
                None => format!("{}/data/{}", location.mount, location.path),
            },
        };
        let request = self.request(Method::GET, &api_path, Some(token), None)?;
        let response = self.call(request, "vault kv read").await?;
        let data = match location.version {
            KvVersion::V1 => response.get("data"),
            KvVersion::V2 => response.get("data").and_then(|d| d.get("data")),
        };
        let data = match data {
            Some(Value::Object(map)) => map,
            _ => {
                return Err(SourceError::permanent(
                    "vault kv read: no data at the path (deleted or destroyed version?)",
                )
                .into());
            }
        };
        let text = match &self.field {
            Some(field) => match data.get(field) {
                Some(Value::String(s)) => s.clone(),
                Some(_) => {
                    return Err(SourceError::permanent(format!(
                        "vault kv read: field `{field}` is not a string"
                    ))
                    .into());
                }
                None => {
                    return Err(SourceError::permanent(format!(
                        "vault kv read: no field `{field}` in the secret"
                    ))
                    .into());
                }
            },
            None => Value::Object(data.clone()).to_string(),
        };
        let mut fetched = Fetched::new(SecretString::from(text));
        if let Some(lease) = response
            .get("lease_duration")
            .and_then(Value::as_u64)
            .filter(|l| *l > 0)
        {
            fetched = fetched.with_expires_in(Duration::from_secs(lease));
        }
        Ok(fetched)
    }
}

/// An error for a non-success status: the status and Vault's `errors` list (which holds
/// messages such as "permission denied", never secret data).
fn status_error(what: &str, status: StatusCode, body: &[u8]) -> SourceError {
    let detail = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v.get("errors").cloned())
        .and_then(|e| match e {
            Value::Array(items) => Some(
                items
                    .iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join("; "),
            ),
            _ => None,
        })
        .filter(|d| !d.is_empty())
        .map(|d| {
            let mut d: String = d.chars().take(200).collect();
            d.insert_str(0, ": ");
            d
        })
        .unwrap_or_default();
    let hint = match status.as_u16() {
        403 => " (permission denied or invalid token)",
        404 => " (not found)",
        503 => " (sealed or unavailable)",
        429 | 473 | 472 => " (standby or rate limited)",
        _ => "",
    };
    let message = format!("{what}: HTTP {}{hint}{detail}", status.as_u16());
    if status_is_transient(status) {
        SourceError::transient(message)
    } else {
        SourceError::permanent(message)
    }
}

impl SecretSource for Vault {
    fn fetch(&self) -> impl Future<Output = Result<Fetched, SourceError>> + Send {
        let this = self.clone();
        async move { this.fetch_inner().await }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builder_rejects_plain_http_to_remote_hosts() {
        let err = Vault::builder("http://vault.example.com:8200")
            .auth(VaultAuth::token("t"))
            .path("secret/x")
            .build()
            .err();
        assert_eq!(err, Some(VaultBuildError::PlainHttp));
    }

    #[test]
    fn builder_needs_auth_and_path() {
        let no_auth = Vault::builder("https://v").path("x").build().err();
        assert_eq!(no_auth, Some(VaultBuildError::NoAuth));
        let no_path = Vault::builder("https://v")
            .auth(VaultAuth::token("t"))
            .build()
            .err();
        assert_eq!(no_path, Some(VaultBuildError::NoPath));
    }

    #[test]
    fn version_pin_on_v1_is_rejected() {
        let err = Vault::builder("https://v")
            .auth(VaultAuth::token("t"))
            .path("x")
            .mount("kv")
            .kv_version(KvVersion::V1)
            .version(2)
            .build()
            .err();
        assert_eq!(err, Some(VaultBuildError::VersionOnKvV1));
    }

    #[test]
    fn debug_hides_credentials() {
        let auth = VaultAuth::app_role("approle", "role-123", "secret-456");
        let text = format!("{auth:?}");
        assert!(
            !text.contains("role-123") && !text.contains("secret-456"),
            "{text}"
        );
        let text = format!("{:?}", VaultAuth::token("hvs.tok"));
        assert!(!text.contains("hvs.tok"), "{text}");
    }

    #[test]
    fn status_errors_are_classified() {
        let sealed = status_error(
            "read",
            StatusCode::SERVICE_UNAVAILABLE,
            b"{\"errors\":[\"Vault is sealed\"]}",
        );
        assert!(sealed.is_transient());
        assert!(sealed.to_string().contains("Vault is sealed"), "{sealed}");
        let denied = status_error(
            "read",
            StatusCode::FORBIDDEN,
            b"{\"errors\":[\"permission denied\"]}",
        );
        assert!(!denied.is_transient());
        assert!(!status_error("read", StatusCode::NOT_FOUND, b"{\"errors\":[]}").is_transient());
    }
}
