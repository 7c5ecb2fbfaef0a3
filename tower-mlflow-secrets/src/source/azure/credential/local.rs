//! Tokens from the machine the process runs on: the managed identity endpoint (App Service
//! or the VM instance metadata service) and the Azure CLI.

use std::time::Duration;

use bytes::Bytes;
use http::Request;
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

use super::aad::{DEFAULT_LIFETIME, form, token_response};
use crate::source::{SourceError, http::HttpClient, lifetime};

/// Plain http by design; see [`IMDS_HOST`](super::IMDS_HOST).
const IMDS: &str = "http://169.254.169.254/metadata/identity/oauth2/token";

/// Managed identity: App Service / Functions when `app_service` (`IDENTITY_ENDPOINT`,
/// `IDENTITY_HEADER`) is set, else IMDS.
pub(super) async fn managed_identity(
    http: &HttpClient,
    client_id: Option<&str>,
    app_service: Option<&(String, SecretString)>,
    scope: &str,
) -> Result<(SecretString, Duration), SourceError> {
    let resource = scope.trim_end_matches("/.default");
    let mut pairs = vec![("resource", resource)];
    if let Some(id) = client_id {
        pairs.push(("client_id", id));
    }
    let query = form(&pairs);
    let request = match app_service {
        Some((endpoint, header)) => {
            let mut value = http::HeaderValue::from_str(header.expose_secret()).map_err(|_| {
                SourceError::permanent("IDENTITY_HEADER is not a valid header value")
            })?;
            value.set_sensitive(true);
            Request::get(format!("{endpoint}?api-version=2019-08-01&{query}"))
                .header("x-identity-header", value)
        }
        None => Request::get(format!("{IMDS}?api-version=2018-02-01&{query}"))
            .header("metadata", "true"),
    };
    let request = request
        .body(Bytes::new())
        .map_err(|e| SourceError::permanent("invalid managed identity URL").with_source(e))?;
    let response = http.send(request, "azure managed identity").await?;
    token_response(response.status, &response.body, "azure managed identity")
}

/// `az account get-access-token --resource <scope without /.default>`.
pub(super) async fn azure_cli(scope: &str) -> Result<(SecretString, Duration), SourceError> {
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
        .map_err(|e| SourceError::permanent("azure cli: cannot run `az`").with_source(e))?;
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
    let left = lifetime::until_unix_time(body.get("expires_on"), "azure cli", "expires_on")?
        .unwrap_or(DEFAULT_LIFETIME);
    Ok((SecretString::from(token.to_owned()), left))
}
