//! Azure AD (Entra ID) credentials: client secret, workload identity, managed identity,
//! Azure CLI, a fixed token, and the `DefaultAzureCredential`-style chain.

mod aad;
mod cache;
mod local;

use std::{fmt, path::PathBuf, time::Duration};

use secrecy::{ExposeSecret, SecretString};

pub(super) use self::cache::TokenCache;
use crate::source::{SourceError, endpoint::is_https_or_loopback, http::HttpClient};

const DEFAULT_AUTHORITY: &str = "https://login.microsoftonline.com";

/// The instance metadata service, plain http by design on a link-local address that never
/// leaves the host (learn.microsoft.com/entra/identity/managed-identities-azure-resources/
/// how-to-use-vm-token). The only plain-http endpoint off loopback that is accepted, and
/// only as itself.
pub(super) const IMDS_HOST: &str = "169.254.169.254";

/// A token request in flight (boxed: [`AzureCredential::Chain`] recurses).
type TokenFuture<'a> = std::pin::Pin<
    Box<dyn Future<Output = Result<(SecretString, Duration), SourceError>> + Send + 'a>,
>;

/// Where Azure access tokens come from.
#[derive(Clone)]
#[non_exhaustive]
pub enum AzureCredential {
    /// A service principal with a client secret (`AZURE_TENANT_ID`, `AZURE_CLIENT_ID`,
    /// `AZURE_CLIENT_SECRET`; authority from `AZURE_AUTHORITY_HOST`).
    ClientSecret {
        /// The authority host, `https://login.microsoftonline.com` by default.
        authority: String,
        /// The tenant.
        tenant_id: String,
        /// The application (client) ID.
        client_id: String,
        /// The client secret.
        client_secret: SecretString,
    },
    /// Workload identity: a federated token file (`AZURE_FEDERATED_TOKEN_FILE`), re-read
    /// on every token request, exchanged for an access token.
    WorkloadIdentity {
        /// The authority host.
        authority: String,
        /// The tenant.
        tenant_id: String,
        /// The application (client) ID.
        client_id: String,
        /// The federated token file.
        token_file: PathBuf,
    },
    /// Managed identity: App Service / Functions (`IDENTITY_ENDPOINT` + `IDENTITY_HEADER`)
    /// or the VM instance metadata service.
    ManagedIdentity {
        /// A user-assigned identity's client ID (`AZURE_CLIENT_ID`), if any.
        client_id: Option<String>,
        /// `IDENTITY_ENDPOINT` and `IDENTITY_HEADER`, if set.
        app_service: Option<(String, SecretString)>,
    },
    /// `az account get-access-token`.
    AzureCli,
    /// A fixed access token (tests, or tokens obtained elsewhere).
    Token(SecretString),
    /// Each in turn until one gives a token.
    Chain(Vec<Self>),
}

impl fmt::Debug for AzureCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ClientSecret {
                tenant_id,
                client_id,
                ..
            } => f
                .debug_struct("ClientSecret")
                .field("tenant_id", tenant_id)
                .field("client_id", client_id)
                .finish_non_exhaustive(),
            Self::WorkloadIdentity {
                tenant_id,
                client_id,
                token_file,
                ..
            } => f
                .debug_struct("WorkloadIdentity")
                .field("tenant_id", tenant_id)
                .field("client_id", client_id)
                .field("token_file", token_file)
                .finish_non_exhaustive(),
            Self::ManagedIdentity { client_id, .. } => f
                .debug_struct("ManagedIdentity")
                .field("client_id", client_id)
                .finish_non_exhaustive(),
            Self::AzureCli => f.write_str("AzureCli"),
            Self::Token(_) => f.write_str("Token([REDACTED])"),
            Self::Chain(items) => f.debug_tuple("Chain").field(items).finish(),
        }
    }
}

impl AzureCredential {
    /// A fixed access token.
    pub fn token(token: impl Into<String>) -> Self {
        Self::Token(SecretString::from(token.into()))
    }

    /// A service principal with a client secret, at `authority` (for example
    /// `https://login.microsoftonline.com`).
    pub fn client_secret(
        authority: impl Into<String>,
        tenant_id: impl Into<String>,
        client_id: impl Into<String>,
        client_secret: impl Into<String>,
    ) -> Self {
        Self::ClientSecret {
            authority: authority.into(),
            tenant_id: tenant_id.into(),
            client_id: client_id.into(),
            client_secret: SecretString::from(client_secret.into()),
        }
    }

    /// The chain `DefaultAzureCredential` would pick from these variables: client secret,
    /// else workload identity, else managed identity then Azure CLI.
    pub fn from_env(lookup: impl Fn(&str) -> Option<String>) -> Self {
        let get = |name: &str| {
            lookup(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let authority = get("AZURE_AUTHORITY_HOST").unwrap_or_else(|| DEFAULT_AUTHORITY.to_owned());
        let tenant = get("AZURE_TENANT_ID");
        let client = get("AZURE_CLIENT_ID");
        if let (Some(tenant_id), Some(client_id), Some(secret)) =
            (tenant.clone(), client.clone(), get("AZURE_CLIENT_SECRET"))
        {
            return Self::client_secret(authority, tenant_id, client_id, secret);
        }
        if let (Some(tenant_id), Some(client_id), Some(file)) =
            (tenant, client.clone(), get("AZURE_FEDERATED_TOKEN_FILE"))
        {
            return Self::WorkloadIdentity {
                authority,
                tenant_id,
                client_id,
                token_file: PathBuf::from(file),
            };
        }
        let app_service = match (get("IDENTITY_ENDPOINT"), get("IDENTITY_HEADER")) {
            (Some(endpoint), Some(header)) => Some((endpoint, SecretString::from(header))),
            _ => None,
        };
        Self::Chain(vec![
            Self::ManagedIdentity {
                client_id: client,
                app_service,
            },
            Self::AzureCli,
        ])
    }

    /// The variable of the first endpoint that is neither https nor on loopback (nor, for
    /// `IDENTITY_ENDPOINT`, the instance metadata service), if any.
    pub(super) fn insecure_endpoint(&self) -> Option<&'static str> {
        match self {
            Self::ClientSecret { authority, .. } | Self::WorkloadIdentity { authority, .. } => {
                (!is_https_or_loopback(authority)).then_some("AZURE_AUTHORITY_HOST")
            }
            Self::ManagedIdentity {
                app_service: Some((endpoint, _)),
                ..
            } => (!is_https_or_loopback(endpoint) && !is_imds(endpoint))
                .then_some("IDENTITY_ENDPOINT"),
            Self::Chain(items) => items.iter().find_map(Self::insecure_endpoint),
            Self::ManagedIdentity { .. } | Self::AzureCli | Self::Token(_) => None,
        }
    }

    /// Gets a token for `scope` (`https://vault.azure.net/.default`) and how long it lasts.
    fn request<'a>(&'a self, http: &'a HttpClient, scope: &'a str) -> TokenFuture<'a> {
        Box::pin(async move {
            match self {
                Self::Token(token) => Ok((token.clone(), Duration::from_secs(3600))),
                Self::ClientSecret {
                    authority,
                    tenant_id,
                    client_id,
                    client_secret,
                } => {
                    let form = aad::form(&[
                        ("grant_type", "client_credentials"),
                        ("client_id", client_id),
                        ("client_secret", client_secret.expose_secret()),
                        ("scope", scope),
                    ]);
                    aad::token(http, authority, tenant_id, form).await
                }
                Self::WorkloadIdentity {
                    authority,
                    tenant_id,
                    client_id,
                    token_file,
                } => {
                    aad::workload_identity(http, authority, tenant_id, client_id, token_file, scope)
                        .await
                }
                Self::ManagedIdentity {
                    client_id,
                    app_service,
                } => {
                    local::managed_identity(http, client_id.as_deref(), app_service.as_ref(), scope)
                        .await
                }
                Self::AzureCli => local::azure_cli(scope).await,
                Self::Chain(items) => {
                    let mut last = SourceError::permanent("azure: no credential configured");
                    for item in items {
                        match item.request(http, scope).await {
                            Ok(token) => return Ok(token),
                            Err(e) => {
                                tracing::debug!(target: "tower_mlflow_secrets", error = %e, "azure credential unavailable; trying the next");
                                last = e;
                            }
                        }
                    }
                    Err(last)
                }
            }
        })
    }
}

/// Whether `url` is plain http to the instance metadata service on its default port.
fn is_imds(url: &str) -> bool {
    url.trim().parse::<http::Uri>().is_ok_and(|uri| {
        uri.scheme_str() == Some("http")
            && uri.host() == Some(IMDS_HOST)
            && uri.port_u16().is_none_or(|p| p == 80)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credential_endpoints_must_be_https_off_loopback() {
        let secret = |authority: &str| AzureCredential::client_secret(authority, "t", "c", "s");
        assert_eq!(
            secret("https://login.microsoftonline.us").insecure_endpoint(),
            None
        );
        assert_eq!(secret("http://127.0.0.1:8080").insecure_endpoint(), None);
        assert_eq!(
            secret("http://login.example.com").insecure_endpoint(),
            Some("AZURE_AUTHORITY_HOST")
        );
        let identity = |endpoint: &str| {
            AzureCredential::Chain(vec![
                AzureCredential::AzureCli,
                AzureCredential::ManagedIdentity {
                    client_id: None,
                    app_service: Some((endpoint.to_owned(), SecretString::from("h"))),
                },
            ])
        };
        for ok in [
            "http://localhost:41741/msi/token/",
            "https://identity.example.net/token",
            "http://169.254.169.254/metadata/identity/oauth2/token",
        ] {
            assert_eq!(identity(ok).insecure_endpoint(), None, "{ok}");
        }
        for bad in [
            "http://identity.example.net/token",
            "http://169.254.169.254:8080/metadata/identity/oauth2/token",
            "http://169.254.169.253/metadata/identity/oauth2/token",
        ] {
            assert_eq!(
                identity(bad).insecure_endpoint(),
                Some("IDENTITY_ENDPOINT"),
                "{bad}"
            );
        }
    }

    #[test]
    fn env_chain_order() {
        let env = |vars: &'static [(&'static str, &'static str)]| {
            AzureCredential::from_env(move |n| {
                vars.iter()
                    .find(|(k, _)| *k == n)
                    .map(|(_, v)| (*v).to_owned())
            })
        };
        let c = env(&[
            ("AZURE_TENANT_ID", "t"),
            ("AZURE_CLIENT_ID", "c"),
            ("AZURE_CLIENT_SECRET", "s3cr3t"),
        ]);
        assert!(matches!(c, AzureCredential::ClientSecret { .. }));
        assert!(!format!("{c:?}").contains("s3cr3t"));
        let c = env(&[
            ("AZURE_TENANT_ID", "t"),
            ("AZURE_CLIENT_ID", "c"),
            ("AZURE_FEDERATED_TOKEN_FILE", "/f"),
        ]);
        assert!(matches!(c, AzureCredential::WorkloadIdentity { .. }));
        let c = env(&[]);
        assert!(matches!(&c, AzureCredential::Chain(items) if items.len() == 2));
    }
}
