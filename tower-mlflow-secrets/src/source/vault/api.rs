//! One call to Vault's HTTP API: the request (token, namespace, JSON body) and the reply
//! (JSON on success, a classified error naming the status and Vault's messages otherwise).
//!
//! A standby node answers `307 Temporary Redirect` to the active node
//! (developer.hashicorp.com/vault/docs/concepts/ha, "Request forwarding" off or a
//! non-performance standby). The redirect is followed at most [`MAX_REDIRECTS`] times, with
//! the same method, headers (the token included) and body, and only to a URL that the
//! address itself would be allowed to be: `https`, or plain `http` to loopback (or anywhere
//! when plain http was explicitly allowed), no userinfo. The token is never sent elsewhere.

use bytes::Bytes;
use http::{
    Method, Request, StatusCode, Uri,
    header::{CONTENT_TYPE, LOCATION},
};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

use super::{Inner, VaultAuth};
use crate::source::{
    SourceError,
    http::{HttpResponse, scheme_is_safe, status_is_transient},
};

/// How many standby redirects one call follows (a standby points at the active node, which
/// answers itself; more hops mean a failover in progress or a loop).
pub(super) const MAX_REDIRECTS: usize = 2;

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
        mut request: Request<Bytes>,
        what: &str,
    ) -> Result<Value, ReadError> {
        let mut redirects = 0;
        let HttpResponse { status, body, .. } = loop {
            let again = copy(&request);
            let response = self.http.send(request, what).await?;
            if !matches!(
                response.status,
                StatusCode::TEMPORARY_REDIRECT | StatusCode::PERMANENT_REDIRECT
            ) {
                break response;
            }
            if redirects == MAX_REDIRECTS {
                return Err(SourceError::transient(format!(
                    "{what}: more than {MAX_REDIRECTS} redirects (a failover in progress?)"
                ))
                .into());
            }
            redirects += 1;
            let target = self.redirect_target(again.uri(), &response.headers, what)?;
            tracing::debug!(target: "tower_mlflow_secrets", to = %origin(&target), "vault standby redirect");
            request = again;
            *request.uri_mut() = target;
        };
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

impl Inner {
    /// Where a 307/308 points, if the token may go there.
    fn redirect_target(
        &self,
        from: &Uri,
        headers: &http::HeaderMap,
        what: &str,
    ) -> Result<Uri, SourceError> {
        let location = headers
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| {
                SourceError::permanent(format!("{what}: a redirect without a Location"))
            })?;
        let target: Uri = location.parse().map_err(|_| {
            SourceError::permanent(format!("{what}: the redirect's Location is not a URL"))
        })?;
        // A path-only Location stays on the node that sent it.
        let target = match (target.scheme(), from.scheme(), from.authority()) {
            (None, Some(scheme), Some(authority)) if location.starts_with('/') => Uri::builder()
                .scheme(scheme.clone())
                .authority(authority.clone())
                .path_and_query(location)
                .build()
                .map_err(|_| {
                    SourceError::permanent(format!("{what}: the redirect's Location is not a URL"))
                })?,
            _ => target,
        };
        let has_userinfo = target.authority().is_some_and(|a| a.as_str().contains('@'));
        if target.host().is_none()
            || !matches!(target.scheme_str(), Some("http" | "https"))
            || has_userinfo
            || !scheme_is_safe(&target, self.allow_plain_http)
        {
            return Err(SourceError::permanent(format!(
                "{what}: Vault redirected to {}, which is not allowed (https required unless \
                 loopback); the token was not sent there",
                origin(&target)
            )));
        }
        Ok(target)
    }
}

/// A request's copy for a replay (the body is reference-counted).
fn copy(request: &Request<Bytes>) -> Request<Bytes> {
    let mut again = Request::new(request.body().clone());
    *again.method_mut() = request.method().clone();
    *again.uri_mut() = request.uri().clone();
    *again.headers_mut() = request.headers().clone();
    again
}

/// `scheme://host[:port]` of `uri`, without userinfo, path or query: safe to print.
fn origin(uri: &Uri) -> String {
    let host = uri.host().unwrap_or("?");
    match (uri.scheme_str(), uri.port_u16()) {
        (scheme, Some(port)) => format!("{}://{host}:{port}", scheme.unwrap_or("?")),
        (scheme, None) => format!("{}://{host}", scheme.unwrap_or("?")),
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
