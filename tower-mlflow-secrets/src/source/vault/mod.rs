//! [`Vault`]: a secret from HashiCorp Vault's KV engine (v1 or v2), with token or AppRole
//! authentication (feature `vault`).
//!
//! A small client on the workspace's hyper 1 + rustls client (aws-lc-rs provider) that
//! follows Vault's documented HTTP API:
//!
//! - **Auth:** a token ([`VaultAuth::token`], `X-Vault-Token`), or AppRole
//!   ([`VaultAuth::app_role`], `POST /v1/auth/<mount>/login`, mount configurable). The
//!   token is held as a `SecretString`. It is renewed with `auth/token/renew-self` once two
//!   thirds of its lease have passed (or [`VaultBuilder::renew_before`] before expiry); when
//!   renewal fails, the token has expired or Vault rejects it (403), AppRole logs in again.
//!   A fixed token's lease is read once with `auth/token/lookup-self`; it is renewed the
//!   same way when Vault says it is renewable and has a TTL (a root token has none).
//! - **KV:** mount and version configurable; when either is missing they are read from
//!   `GET /v1/sys/internal/ui/mounts/<path>` (the Vault CLI's own preflight). KV v2 reads may
//!   pin a version. The whole `data` object is returned as JSON (so
//!   [`SecretFormat::Json`](crate::format::SecretFormat::Json) reads it), or one field of it
//!   with [`VaultBuilder::field`].
//! - **Expiry:** a non-zero `lease_duration` on the read becomes the secret's expiry.
//!   Leases are whole seconds, clamped to a year; a negative, fractional or non-numeric
//!   one is a permanent error naming the field, never a panic.
//! - **HA:** a standby's `307`/`308` redirect to the active node is followed (at most twice,
//!   same method, body and token) only to a URL the address itself could be: https, or
//!   plain http to loopback; anything else is an error and the token is not sent.
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
//! let secret = CachedSecret::builder(vault).ttl(Duration::from_secs(300)).build()?;
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

mod api;
mod builder;
mod error;
mod kv;
mod token;

use std::{fmt, sync::Arc, time::Duration};

use secrecy::SecretString;
use tokio::sync::Mutex;

pub use self::{builder::VaultBuilder, error::VaultBuildError};
use self::{kv::KvLocation, token::TokenState};
use super::{Fetched, SecretSource, SourceError, http::HttpClient};

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
    /// Plain http to hosts that are not loopback was explicitly allowed (for the address
    /// and for standby redirects alike).
    allow_plain_http: bool,
    renew_before: Option<Duration>,
    state: Mutex<State>,
}

struct State {
    token: Option<TokenState>,
    location: Option<KvLocation>,
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
}
