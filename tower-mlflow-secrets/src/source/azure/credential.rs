//! Azure AD (Entra ID) credentials: client secret, workload identity, managed identity,
//! Azure CLI, a fixed token, and the `DefaultAzureCredential`-style chain.

use std::{fmt, path::PathBuf, time::Duration};

use bytes::Bytes;
use http::{Method, Request, header::CONTENT_TYPE};
use http_body_util::Full;
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use tokio::time::Instant;

use super::super::{
    SourceError,
    http::{HttpClient, status_is_transient},
};

const DEFAULT_AUTHORITY: &str = "https://login.microsoftonline.com";
const IMDS: &str = "http://169.254.169.254/metadata/identity/oauth2/token";

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
                    let form = form(&[
                        ("grant_type", "client_credentials"),
                        ("client_id", client_id),
                        ("client_secret", client_secret.expose_secret()),
                        ("scope", scope),
                    ]);
                    aad_token(http, authority, tenant_id, form).await
                }
                Self::WorkloadIdentity {
                    authority,
                    tenant_id,
                    client_id,
                    token_file,
                } => {
                    let assertion = tokio::fs::read_to_string(token_file).await.map_err(|e| {
                        SourceError::permanent(format!(
                            "azure workload identity: cannot read {}",
                            token_file.display()
                        ))
                        .with_source(e)
                    })?;
                    let assertion = SecretString::from(assertion.trim().to_owned());
                    let form = form(&[
                        ("grant_type", "client_credentials"),
                        ("client_id", client_id),
                        (
                            "client_assertion_type",
                            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                        ),
                        ("client_assertion", assertion.expose_secret()),
                        ("scope", scope),
                    ]);
                    aad_token(http, authority, tenant_id, form).await
                }
                Self::ManagedIdentity {
                    client_id,
                    app_service,
                } => {
                    let resource = scope.trim_end_matches("/.default");
                    let mut pairs = vec![("resource", resource)];
                    if let Some(id) = client_id {
                        pairs.push(("client_id", id.as_str()));
                    }
                    let query = form(&pairs);
                    let request = match app_service {
                        Some((endpoint, header)) => {
                            let mut value = http::HeaderValue::from_str(header.expose_secret())
                                .map_err(|_| {
                                    SourceError::permanent(
                                        "IDENTITY_HEADER is not a valid header value",
                                    )
                                })?;
                            value.set_sensitive(true);
                            Request::get(format!("{endpoint}?api-version=2019-08-01&{query}"))
                                .header("x-identity-header", value)
                        }
                        None => Request::get(format!("{IMDS}?api-version=2018-02-01&{query}"))
                            .header("metadata", "true"),
                    };
                    let request = request.body(Full::new(Bytes::new())).map_err(|e| {
                        SourceError::permanent("invalid managed identity URL").with_source(e)
                    })?;
                    let response = http.send(request, "azure managed identity").await?;
                    token_response(response.status, &response.body, "azure managed identity")
                }
                Self::AzureCli => {
                    let resource = scope.trim_end_matches("/.default");
                    let output = tokio::process::Command::new("az")
                        .args([
                            "account",
                            "get-access-token",
                            "--output",
                            "json",
                            "--resource",
                            resource,
                        ])
                        .output()
                        .await
                        .map_err(|e| {
                            SourceError::permanent("azure cli: cannot run `az`").with_source(e)
                        })?;
                    if !output.status.success() {
                        return Err(SourceError::permanent(
                            "azure cli: `az account get-access-token` failed (run `az login`)",
                        ));
                    }
                    let body: Value = serde_json::from_slice(&output.stdout)
                        .map_err(|_| SourceError::permanent("azure cli: output is not JSON"))?;
                    let token = body["accessToken"]
                        .as_str()
                        .ok_or_else(|| SourceError::permanent("azure cli: no accessToken"))?;
                    let left = body["expires_on"]
                        .as_u64()
                        .and_then(|at| {
                            let now = std::time::SystemTime::now()
                                .duration_since(std::time::UNIX_EPOCH)
                                .ok()?
                                .as_secs();
                            at.checked_sub(now)
                        })
                        .unwrap_or(300);
                    Ok((
                        SecretString::from(token.to_owned()),
                        Duration::from_secs(left),
                    ))
                }
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

/// `application/x-www-form-urlencoded`.
fn form(pairs: &[(&str, &str)]) -> String {
    let encode = |s: &str| {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect::<String>()
    };
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

async fn aad_token(
    http: &HttpClient,
    authority: &str,
    tenant: &str,
    body: String,
) -> Result<(SecretString, Duration), SourceError> {
    let body = SecretString::from(body);
    let request = Request::builder()
        .method(Method::POST)
        .uri(format!(
            "{}/{tenant}/oauth2/v2.0/token",
            authority.trim_end_matches('/')
        ))
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Full::new(Bytes::from(body.expose_secret().to_owned())))
        .map_err(|e| SourceError::permanent("invalid Azure authority URL").with_source(e))?;
    let response = http.send(request, "azure token request").await?;
    token_response(response.status, &response.body, "azure token request")
}

fn token_response(
    status: http::StatusCode,
    body: &[u8],
    what: &str,
) -> Result<(SecretString, Duration), SourceError> {
    let json: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    if !status.is_success() {
        // AAD's `error` code (invalid_client, ...) names the problem without secrets.
        let code = json["error"].as_str().unwrap_or("");
        let text = format!("{what}: HTTP {} {code}", status.as_u16());
        return Err(if status_is_transient(status) {
            SourceError::transient(text)
        } else {
            SourceError::permanent(text)
        });
    }
    let token = json["access_token"]
        .as_str()
        .ok_or_else(|| SourceError::permanent(format!("{what}: no access_token")))?;
    // `expires_in` is a number (AAD) or a string (managed identity).
    let expires_in = json["expires_in"]
        .as_u64()
        .or_else(|| json["expires_in"].as_str().and_then(|s| s.parse().ok()))
        .unwrap_or(300);
    Ok((
        SecretString::from(token.to_owned()),
        Duration::from_secs(expires_in),
    ))
}

/// One cached access token.
#[derive(Default)]
pub(super) struct TokenCache {
    current: Option<(String, SecretString, Instant)>,
}

impl TokenCache {
    pub(super) fn clear(&mut self) {
        self.current = None;
    }

    pub(super) async fn get(
        &mut self,
        credential: &AzureCredential,
        http: &HttpClient,
        scope: &str,
    ) -> Result<SecretString, SourceError> {
        // Refresh five minutes early (or halfway, for short tokens).
        if let Some((cached_scope, token, refresh_at)) = &self.current {
            if cached_scope == scope && Instant::now() < *refresh_at {
                return Ok(token.clone());
            }
        }
        let (token, lasts) = credential.request(http, scope).await?;
        let lead = Duration::from_secs(300).min(lasts / 2);
        self.current = Some((
            scope.to_owned(),
            token.clone(),
            Instant::now() + (lasts - lead),
        ));
        Ok(token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_encoding() {
        assert_eq!(
            form(&[("a b", "x/y=z&"), ("k", "~.-_")]),
            "a%20b=x%2Fy%3Dz%26&k=~.-_"
        );
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
