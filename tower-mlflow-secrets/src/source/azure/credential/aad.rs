//! Tokens from Azure AD's token endpoint: client credentials with a secret or with a
//! federated (workload identity) assertion.

use std::{path::Path, time::Duration};

use bytes::Bytes;
use http::{Method, Request, header::CONTENT_TYPE};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

use crate::source::{
    SourceError,
    http::{HttpClient, status_is_transient},
    lifetime,
};

/// How long a token lasts when the reply does not say.
pub(super) const DEFAULT_LIFETIME: Duration = Duration::from_secs(300);

/// Workload identity: the federated token file, re-read on every request, exchanged for an
/// access token.
pub(super) async fn workload_identity(
    http: &HttpClient,
    authority: &str,
    tenant_id: &str,
    client_id: &str,
    token_file: &Path,
    scope: &str,
) -> Result<(SecretString, Duration), SourceError> {
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
    token(http, authority, tenant_id, form).await
}

/// `application/x-www-form-urlencoded`.
pub(super) fn form(pairs: &[(&str, &str)]) -> String {
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

/// POSTs the form `body` to the tenant's v2.0 token endpoint.
pub(super) async fn token(
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
        .body(Bytes::from(body.expose_secret().to_owned()))
        .map_err(|e| SourceError::permanent("invalid Azure authority URL").with_source(e))?;
    let response = http.send(request, "azure token request").await?;
    token_response(response.status, &response.body, "azure token request")
}

/// Reads `access_token` and `expires_in` from a token endpoint's reply.
pub(super) fn token_response(
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
    let expires_in =
        lifetime::seconds(json.get("expires_in"), what, "expires_in")?.unwrap_or(DEFAULT_LIFETIME);
    Ok((SecretString::from(token.to_owned()), expires_in))
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
}
