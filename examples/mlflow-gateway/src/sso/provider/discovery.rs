//! Discovery (OpenID Connect Discovery §3): the issuer's endpoints, fetched on first use,
//! cached once a fetch succeeds, fetched again after a failure, one fetch at a time.

use std::sync::Arc;

use bytes::Bytes;
use http::{Request, header::ACCEPT};
use oauth2::{AuthUrl, TokenUrl, url::Url};
use serde::Deserialize;
use tower_mlflow_core::{http::status_is_transient, sync::Snapshot};

use super::{
    Provider, ProviderError,
    error::{Failure, Unreachable},
    safe_uri,
};

/// What discovery found.
pub(super) struct Endpoints {
    pub(super) authorization: AuthUrl,
    pub(super) token: TokenUrl,
    pub(super) end_session: Option<Url>,
}

/// The fields of the discovery document the gateway reads (OpenID Connect Discovery §3).
#[derive(Deserialize)]
struct DiscoveryDocument {
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
    #[serde(default)]
    end_session_endpoint: Option<String>,
}

impl Provider {
    /// The endpoints: cached after the first successful discovery; otherwise one fetch,
    /// shared with every caller that arrives while it runs.
    pub(super) async fn endpoints(&self) -> Result<Arc<Snapshot<Endpoints>>, ProviderError> {
        if let Some(snapshot) = self.inner.endpoints.snapshot() {
            return Ok(snapshot);
        }
        self.inner.endpoints.reload(|| self.discover()).await
    }

    async fn discover(&self) -> Result<Endpoints, ProviderError> {
        let url = &self.inner.discovery_url;
        let request = Request::get(url.clone())
            .header(ACCEPT, "application/json")
            .body(Bytes::new())
            .map_err(|e| ProviderError::Settings(format!("the discovery URL {url}: {e}")))?;
        let response = self
            .inner
            .http
            .send(request)
            .await
            .map_err(|e| Unreachable::new(url.to_string(), Failure::Http(e)))?;
        let status = response.status();
        if status_is_transient(status) {
            return Err(Unreachable::new(url.to_string(), Failure::Status(status)).into());
        }
        if !status.is_success() {
            return Err(ProviderError::Discovery(format!("{url} answered {status}")));
        }
        let document: DiscoveryDocument = serde_json::from_slice(response.body()).map_err(|e| {
            ProviderError::Discovery(format!("{url} is not a discovery document: {e}"))
        })?;
        if document.issuer != self.inner.issuer {
            return Err(ProviderError::Discovery(format!(
                "{url} names the issuer {:?}, not {:?}",
                document.issuer, self.inner.issuer
            )));
        }
        let authorization =
            endpoint_url("authorization_endpoint", &document.authorization_endpoint)?;
        let token = endpoint_url("token_endpoint", &document.token_endpoint)?;
        let end_session = match document.end_session_endpoint {
            Some(value) => match endpoint_url("end_session_endpoint", &value) {
                Ok(url) => Some(url),
                Err(error) => {
                    // Sign-in works without it; logout then stays local.
                    tracing::warn!(%error, "ignoring the issuer's end_session_endpoint");
                    None
                }
            },
            None => None,
        };
        Ok(Endpoints {
            authorization: AuthUrl::from_url(authorization),
            token: TokenUrl::from_url(token),
            end_session,
        })
    }
}

/// An endpoint of the discovery document, when it is `https` (or `http` to loopback).
fn endpoint_url(field: &str, value: &str) -> Result<Url, ProviderError> {
    safe_uri(value)
        .and_then(|_| Url::parse(value).ok())
        .ok_or_else(|| {
            ProviderError::Discovery(format!(
                "its {field} {value:?} is not an https URL (or http to loopback)"
            ))
        })
}
