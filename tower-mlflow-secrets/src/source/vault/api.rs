//! One call to Vault's HTTP API: the request (token, namespace, JSON body) and the reply
//! (JSON on success, a classified error naming the status and Vault's messages otherwise).

use bytes::Bytes;
use http::{Method, Request, StatusCode, header::CONTENT_TYPE};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

use super::{Inner, VaultAuth};
use crate::source::{
    SourceError,
    http::{HttpResponse, status_is_transient},
};

/// A failed call: the source error plus whether Vault said 403.
pub(super) struct ReadError {
    pub(super) error: SourceError,
    pub(super) forbidden: bool,
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
    pub(super) fn should_relogin(&self, error: &ReadError, relogged: bool) -> bool {
        // Vault answers 403 both for a bad token and for a policy denial; only a login we
        // can redo tells them apart, and only once per fetch.
        error.forbidden && !relogged && matches!(self.auth, VaultAuth::AppRole { .. })
    }

    pub(super) fn request(
        &self,
        method: Method,
        path: &str,
        token: Option<&SecretString>,
        body: Option<Value>,
    ) -> Result<Request<Bytes>, SourceError> {
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
                Bytes::from(json.to_string())
            }
            None => Bytes::new(),
        };
        builder
            .body(body)
            .map_err(|e| SourceError::permanent("invalid Vault request URI").with_source(e))
    }

    pub(super) async fn call(
        &self,
        request: Request<Bytes>,
        what: &str,
    ) -> Result<Value, ReadError> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
