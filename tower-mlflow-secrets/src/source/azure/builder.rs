//! [`AzureKeyVaultBuilder`]: the vault URL, secret name and version, credential and TLS
//! settings, checked by [`build`](AzureKeyVaultBuilder::build).

use std::{fmt, sync::Arc, time::Duration};

use http::Uri;
use tokio::sync::Mutex;

use super::{AzureCredential, AzureKeyVault, Inner, State, credential::TokenCache};
use crate::source::http::{HttpClient, TlsSettings};

/// A configuration error from [`AzureKeyVaultBuilder::build`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum AzureKeyVaultBuildError {
    /// The vault URL is not an `https://` URL with a host.
    InvalidVaultUrl,
    /// The secret name is empty or has characters other than letters, digits and `-`.
    InvalidSecretName,
    /// The version has characters other than letters and digits.
    InvalidVersion,
    /// The CA bundle holds no valid certificate.
    InvalidCa,
    /// A credential endpoint (the authority host or the managed identity endpoint) is not
    /// https and not on loopback; names the variable it is read from.
    InsecureEndpoint(&'static str),
}

impl fmt::Display for AzureKeyVaultBuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidVaultUrl => f.write_str("the Key Vault URL must be an https:// URL"),
            Self::InvalidSecretName => {
                f.write_str("the Key Vault secret name must be 1-127 letters, digits or dashes")
            }
            Self::InvalidVersion => {
                f.write_str("the Key Vault secret version must be letters and digits")
            }
            Self::InvalidCa => f.write_str("the CA bundle holds no valid PEM certificate"),
            Self::InsecureEndpoint(variable) => write!(
                f,
                "{variable} must be an https URL (plain http only to a loopback host)"
            ),
        }
    }
}

impl std::error::Error for AzureKeyVaultBuildError {}

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
    pub fn build(self) -> Result<AzureKeyVault, AzureKeyVaultBuildError> {
        let url = self.vault_url.trim().trim_end_matches('/').to_owned();
        let uri: Uri = url
            .parse()
            .map_err(|_| AzureKeyVaultBuildError::InvalidVaultUrl)?;
        let host = match (uri.scheme_str(), uri.host()) {
            (Some("https"), Some(host)) if uri.path().trim_matches('/').is_empty() => {
                host.to_ascii_lowercase()
            }
            _ => return Err(AzureKeyVaultBuildError::InvalidVaultUrl),
        };
        let name = self.name.trim().to_owned();
        if name.is_empty()
            || name.len() > 127
            || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        {
            return Err(AzureKeyVaultBuildError::InvalidSecretName);
        }
        if let Some(v) = &self.version {
            if v.is_empty() || !v.chars().all(|c| c.is_ascii_alphanumeric()) {
                return Err(AzureKeyVaultBuildError::InvalidVersion);
            }
        }
        let tls = TlsSettings {
            ca_pem: self.ca_pem,
            client_pem: None,
        };
        let http =
            HttpClient::new(tls, self.timeout).map_err(|_| AzureKeyVaultBuildError::InvalidCa)?;
        let credential = self
            .credential
            .unwrap_or_else(|| AzureCredential::from_env(|n| std::env::var(n).ok()));
        credential.insecure_endpoint().map_or(Ok(()), |variable| {
            Err(AzureKeyVaultBuildError::InsecureEndpoint(variable))
        })?;
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
            Some(AzureKeyVaultBuildError::InvalidVaultUrl)
        );
        assert_eq!(
            b("https://v.vault.azure.net/x", "n"),
            Some(AzureKeyVaultBuildError::InvalidVaultUrl)
        );
        assert_eq!(
            b("https://v.vault.azure.net", "a/b"),
            Some(AzureKeyVaultBuildError::InvalidSecretName)
        );
        assert_eq!(b("https://v.vault.azure.net/", "ok-name"), None);
        let v = AzureKeyVault::builder("https://v.vault.azure.net", "n")
            .credential(AzureCredential::token("t"))
            .version("../x")
            .build()
            .err();
        assert_eq!(v, Some(AzureKeyVaultBuildError::InvalidVersion));
    }
}
