//! [`AzureKeyVault`]: a secret from Azure Key Vault (feature `azure`).
//!
//! A small REST client on hyper 1 + rustls (the official Azure SDK crates are about 140
//! crates and build `aws-lc-sys`), following the documented Key Vault REST API:
//!
//! - `GET {vault}/secrets/{name}[/{version}]?api-version=7.5`: the latest version, or a
//!   pinned one. The secret's `attributes.exp` (Unix seconds) becomes its expiry; a disabled
//!   secret is an error.
//! - **Challenge:** the first request goes out without a token, as the Azure SDK does; the
//!   `401` answer's `WWW-Authenticate: Bearer authorization="…", resource="…"` (or `scope`)
//!   names the token audience. The resource must be in the vault's own DNS domain
//!   (`vault.azure.net` for `*.vault.azure.net`), so a spoofed challenge cannot collect a
//!   token for another service. A later 401 refreshes the token once.
//! - **Errors:** `404 SecretNotFound`, 403 and other 4xx are permanent; 429, 5xx and network
//!   errors transient.
//! - **Credentials** ([`AzureCredential`]): client secret (`AZURE_TENANT_ID`,
//!   `AZURE_CLIENT_ID`, `AZURE_CLIENT_SECRET`), workload identity
//!   (`AZURE_FEDERATED_TOKEN_FILE`), managed identity (App Service `IDENTITY_ENDPOINT` /
//!   `IDENTITY_HEADER`, else IMDS), Azure CLI (`az account get-access-token`), in that order
//!   as with `DefaultAzureCredential`; tokens are cached until five minutes before they
//!   expire and held as `SecretString`.
//!
//! ```no_run
//! use tower_mlflow_secrets::{CachedSecret, source::azure::{AzureCredential, AzureKeyVault}};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let source = AzureKeyVault::builder("https://my-vault.vault.azure.net", "mlflow-token")
//!     .credential(AzureCredential::from_env(|name| std::env::var(name).ok()))
//!     .build()?;
//! let secret = CachedSecret::new(source);
//! # let _ = secret;
//! # Ok(())
//! # }
//! ```
//!
//! The same from the environment:
//!
//! ```text
//! MLFLOW_SECRETS_AUTH_ENABLE=azure-key-vault
//! AZURE_KEY_VAULT_URL=https://my-vault.vault.azure.net
//! MLFLOW_AZURE_SECRET_NAME=mlflow-token
//! MLFLOW_AZURE_SECRET_VERSION=0123abcd…      # an addition
//! AZURE_TENANT_ID=… AZURE_CLIENT_ID=… AZURE_CLIENT_SECRET=…   # or workload/managed identity, az CLI
//! ```
//!
//! Differences from mlflow-secrets-auth: a version can be pinned, `exp` is honoured, and the
//! chain is smaller than `DefaultAzureCredential` (no Visual Studio Code, PowerShell or
//! interactive browser credentials; no `AZURE_AUTHORITY_HOST`-less sovereign clouds unless
//! [`AzureCredential::client_secret`] gets the authority host).

mod credential;

use std::{
    fmt,
    sync::Arc,
    time::{Duration, UNIX_EPOCH},
};

use bytes::Bytes;
use http::{Request, StatusCode, Uri, header::AUTHORIZATION};
use http_body_util::Full;
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use tokio::sync::Mutex;

pub use self::credential::AzureCredential;
use self::credential::TokenCache;
use super::{
    Fetched, SecretSource, SourceError,
    http::{HttpClient, HttpResponse, TlsError, TlsSettings, status_is_transient},
};

const API_VERSION: &str = "7.5";

/// A configuration error from [`AzureKeyVaultBuilder::build`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum AzureBuildError {
    /// The vault URL is not an `https://` URL with a host.
    InvalidVaultUrl,
    /// The secret name is empty or has characters other than letters, digits and `-`.
    InvalidSecretName,
    /// The version has characters other than letters and digits.
    InvalidVersion,
    /// The CA bundle holds no valid certificate.
    InvalidCa,
}

impl fmt::Display for AzureBuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::InvalidVaultUrl => "the Key Vault URL must be an https:// URL",
            Self::InvalidSecretName => {
                "the Key Vault secret name must be 1-127 letters, digits or dashes"
            }
            Self::InvalidVersion => "the Key Vault secret version must be letters and digits",
            Self::InvalidCa => "the CA bundle holds no valid PEM certificate",
        })
    }
}

impl std::error::Error for AzureBuildError {}

/// Builds an [`AzureKeyVault`] source.
#[derive(Debug)]
pub struct AzureKeyVaultBuilder {
    vault_url: String,
    name: String,
    version: Option<String>,
    credential: Option<AzureCredential>,
    ca_pem: Option<Vec<u8>>,
    timeout: Duration,
}

impl AzureKeyVaultBuilder {
    /// Pins a version (default: the latest).
    #[must_use]
    pub fn version(mut self, version: impl Into<String>) -> Self {
        self.version = Some(version.into());
        self
    }

    /// Sets the credential (default: [`AzureCredential::from_env`] on the process
    /// environment).
    #[must_use]
    pub fn credential(mut self, credential: AzureCredential) -> Self {
        self.credential = Some(credential);
        self
    }

    /// Trusts only the certificates in this PEM bundle (for private endpoints behind a
    /// corporate CA, and tests).
    #[must_use]
    pub fn ca_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.ca_pem = Some(pem.into());
        self
    }

    /// Timeout for each HTTP request (default 10 s).
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Checks the configuration and builds the source. No request is sent yet.
    pub fn build(self) -> Result<AzureKeyVault, AzureBuildError> {
        let url = self.vault_url.trim().trim_end_matches('/').to_owned();
        let uri: Uri = url.parse().map_err(|_| AzureBuildError::InvalidVaultUrl)?;
        let host = match (uri.scheme_str(), uri.host()) {
            (Some("https"), Some(host)) if uri.path().trim_matches('/').is_empty() => {
                host.to_ascii_lowercase()
            }
            _ => return Err(AzureBuildError::InvalidVaultUrl),
        };
        let name = self.name.trim().to_owned();
        if name.is_empty()
            || name.len() > 127
            || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        {
            return Err(AzureBuildError::InvalidSecretName);
        }
        if let Some(v) = &self.version {
            if v.is_empty() || !v.chars().all(|c| c.is_ascii_alphanumeric()) {
                return Err(AzureBuildError::InvalidVersion);
            }
        }
        let tls = TlsSettings {
            ca_pem: self.ca_pem,
            client_pem: None,
        };
        let http = HttpClient::new(&tls, self.timeout).map_err(|e| match e {
            TlsError::InvalidCa | TlsError::InvalidClientCert => AzureBuildError::InvalidCa,
        })?;
        let credential = self
            .credential
            .unwrap_or_else(|| AzureCredential::from_env(|n| std::env::var(n).ok()));
        Ok(AzureKeyVault {
            inner: Arc::new(Inner {
                url,
                host,
                name,
                version: self.version,
                credential,
                http,
                state: Mutex::new(State {
                    scope: None,
                    tokens: TokenCache::default(),
                }),
            }),
        })
    }
}

/// A [`SecretSource`] reading one secret from Azure Key Vault; see the
/// [module docs](self). Cheap to clone.
#[derive(Clone)]
pub struct AzureKeyVault {
    inner: Arc<Inner>,
}

struct Inner {
    url: String,
    host: String,
    name: String,
    version: Option<String>,
    credential: AzureCredential,
    http: HttpClient,
    state: Mutex<State>,
}

struct State {
    /// The token scope learnt from the 401 challenge.
    scope: Option<String>,
    tokens: TokenCache,
}

impl fmt::Debug for AzureKeyVault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AzureKeyVault")
            .field("url", &self.inner.url)
            .field("name", &self.inner.name)
            .field("version", &self.inner.version)
            .field("credential", &self.inner.credential)
            .finish_non_exhaustive()
    }
}

impl AzureKeyVault {
    /// Starts a builder for secret `name` in the vault at `vault_url` (as in
    /// `AZURE_KEY_VAULT_URL` and `MLFLOW_AZURE_SECRET_NAME`).
    pub fn builder(vault_url: impl Into<String>, name: impl Into<String>) -> AzureKeyVaultBuilder {
        AzureKeyVaultBuilder {
            vault_url: vault_url.into(),
            name: name.into(),
            version: None,
            credential: None,
            ca_pem: None,
            timeout: Duration::from_secs(10),
        }
    }

    async fn fetch_inner(&self) -> Result<Fetched, SourceError> {
        let inner = &*self.inner;
        let mut state = inner.state.lock().await;
        let mut refreshed = false;
        loop {
            let token = match &state.scope {
                None => None,
                Some(scope) => {
                    let scope = scope.clone();
                    Some(
                        state
                            .tokens
                            .get(&inner.credential, &inner.http, &scope)
                            .await?,
                    )
                }
            };
            let response = inner.get(token.as_ref()).await?;
            if response.status == StatusCode::UNAUTHORIZED {
                let scope = inner.challenge_scope(&response)?;
                if token.is_some() && (refreshed || state.scope.as_deref() == Some(&scope)) {
                    if refreshed {
                        return Err(SourceError::permanent(
                            "azure key vault rejected a fresh token (401)",
                        ));
                    }
                    refreshed = true;
                    state.tokens.clear();
                }
                state.scope = Some(scope);
                continue;
            }
            return inner.read(&response);
        }
    }
}

impl Inner {
    async fn get(&self, token: Option<&SecretString>) -> Result<HttpResponse, SourceError> {
        let uri = match &self.version {
            Some(v) => format!(
                "{}/secrets/{}/{v}?api-version={API_VERSION}",
                self.url, self.name
            ),
            None => format!(
                "{}/secrets/{}?api-version={API_VERSION}",
                self.url, self.name
            ),
        };
        let mut request = Request::get(uri);
        if let Some(token) = token {
            let mut value =
                http::HeaderValue::from_str(&format!("Bearer {}", token.expose_secret())).map_err(
                    |_| SourceError::permanent("the Azure token is not a valid header value"),
                )?;
            value.set_sensitive(true);
            request = request.header(AUTHORIZATION, value);
        }
        let request = request
            .body(Full::new(Bytes::new()))
            .map_err(|e| SourceError::permanent("invalid Key Vault URL").with_source(e))?;
        self.http.send(request, "azure key vault read").await
    }

    /// The token scope from a 401 challenge, checked against the vault's domain.
    fn challenge_scope(&self, response: &HttpResponse) -> Result<String, SourceError> {
        let header = response
            .headers
            .get(http::header::WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| SourceError::permanent("azure key vault: 401 without a challenge"))?;
        let param = |key: &str| -> Option<String> {
            let rest = header.strip_prefix("Bearer")?;
            rest.split(',').find_map(|part| {
                let (k, v) = part.trim().split_once('=')?;
                (k.trim().eq_ignore_ascii_case(key)).then(|| v.trim().trim_matches('"').to_owned())
            })
        };
        let scope = match (param("scope"), param("resource")) {
            (Some(scope), _) => scope,
            (None, Some(resource)) => format!("{}/.default", resource.trim_end_matches('/')),
            (None, None) => {
                return Err(SourceError::permanent(
                    "azure key vault: the challenge names no resource",
                ));
            }
        };
        let resource_host = scope
            .parse::<Uri>()
            .ok()
            .and_then(|u| u.host().map(str::to_ascii_lowercase))
            .unwrap_or_default();
        // `vault.azure.net` for `my-vault.vault.azure.net`: the resource's domain must be a
        // suffix of the vault host at a label boundary.
        let in_domain = !resource_host.is_empty()
            && (self.host == resource_host || self.host.ends_with(&format!(".{resource_host}")));
        if !in_domain {
            return Err(SourceError::permanent(format!(
                "azure key vault: the challenge resource `{resource_host}` is not in the vault's domain"
            )));
        }
        Ok(scope)
    }

    fn read(&self, response: &HttpResponse) -> Result<Fetched, SourceError> {
        let status = response.status;
        let body: Value = serde_json::from_slice(&response.body).unwrap_or(Value::Null);
        if !status.is_success() {
            let code = body["error"]["code"].as_str().unwrap_or("");
            let message: String = body["error"]["message"]
                .as_str()
                .unwrap_or("")
                .chars()
                .take(200)
                .collect();
            let text = format!(
                "azure key vault secret `{}`: HTTP {} {code}: {message}",
                self.name,
                status.as_u16()
            );
            return Err(if status_is_transient(status) {
                SourceError::transient(text)
            } else {
                SourceError::permanent(text)
            });
        }
        if body["attributes"]["enabled"] == Value::Bool(false) {
            return Err(SourceError::permanent(format!(
                "azure key vault secret `{}` is disabled",
                self.name
            )));
        }
        let value = body["value"].as_str().ok_or_else(|| {
            SourceError::permanent(format!(
                "azure key vault secret `{}`: response has no value",
                self.name
            ))
        })?;
        let mut fetched = Fetched::new(SecretString::from(value.to_owned()));
        if let Some(exp) = body["attributes"]["exp"].as_u64() {
            fetched = fetched.with_expires_at(UNIX_EPOCH + Duration::from_secs(exp));
        }
        Ok(fetched)
    }
}

impl SecretSource for AzureKeyVault {
    fn fetch(&self) -> impl Future<Output = Result<Fetched, SourceError>> + Send {
        let this = self.clone();
        async move { this.fetch_inner().await }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builder_checks_url_name_and_version() {
        let b = |url: &str, name: &str| {
            AzureKeyVault::builder(url, name)
                .credential(AzureCredential::token("t"))
                .build()
                .err()
        };
        assert_eq!(
            b("http://v.vault.azure.net", "n"),
            Some(AzureBuildError::InvalidVaultUrl)
        );
        assert_eq!(
            b("https://v.vault.azure.net/x", "n"),
            Some(AzureBuildError::InvalidVaultUrl)
        );
        assert_eq!(
            b("https://v.vault.azure.net", "a/b"),
            Some(AzureBuildError::InvalidSecretName)
        );
        assert_eq!(b("https://v.vault.azure.net/", "ok-name"), None);
        let v = AzureKeyVault::builder("https://v.vault.azure.net", "n")
            .credential(AzureCredential::token("t"))
            .version("../x")
            .build()
            .err();
        assert_eq!(v, Some(AzureBuildError::InvalidVersion));
    }
}
