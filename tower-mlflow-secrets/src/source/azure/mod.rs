//! [`AzureKeyVault`]: a secret from Azure Key Vault (feature `azure`).
//!
//! A small REST client on the workspace's hyper 1 + rustls client (the official Azure SDK
//! crates are about 140 crates), following the documented Key Vault REST API:
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

mod builder;
mod credential;

use std::{fmt, sync::Arc};

use bytes::Bytes;
use http::{Request, StatusCode, Uri, header::AUTHORIZATION};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use tokio::sync::Mutex;

use self::credential::TokenCache;
pub use self::{
    builder::{AzureKeyVaultBuildError, AzureKeyVaultBuilder},
    credential::AzureCredential,
};
use super::{
    Fetched, SecretSource, SourceError,
    http::{HttpClient, HttpResponse, status_is_transient},
    lifetime,
};

const API_VERSION: &str = "7.5";

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
            .body(Bytes::new())
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
        let what = format!("azure key vault secret `{}`", self.name);
        if let Some(left) =
            lifetime::until_unix_time(body["attributes"].get("exp"), &what, "attributes.exp")?
        {
            fetched = fetched.with_expires_in(left);
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
