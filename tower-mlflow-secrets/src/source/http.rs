//! The Vault and Azure sources' view of the workspace's HTTP client
//! ([`tower_mlflow_core::http`]): their TLS settings, and transport failures as
//! [`SourceError`]s (all transient: a retry may reach the store).

use std::{fmt, time::Duration};

use bytes::Bytes;
use http::{Request, StatusCode};
#[cfg(feature = "vault")]
pub(crate) use tower_mlflow_core::http::scheme_is_safe;
use tower_mlflow_core::http::{HttpClient as CoreClient, HttpError};
pub(crate) use tower_mlflow_core::http::{HttpClientBuildError, status_is_transient};

use super::SourceError;

/// TLS settings: trust anchors and a client certificate.
#[derive(Clone, Default)]
pub(crate) struct TlsSettings {
    /// PEM bundle that replaces the public roots (as `VAULT_CACERT` does for the Vault CLI).
    pub(crate) ca_pem: Option<Vec<u8>>,
    /// PEM certificate chain and private key for mutual TLS.
    pub(crate) client_pem: Option<(Vec<u8>, Vec<u8>)>,
}

impl fmt::Debug for TlsSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsSettings")
            .field("custom_ca", &self.ca_pem.is_some())
            .field("client_cert", &self.client_pem.is_some())
            .finish()
    }
}

/// A pooled HTTP/1.1 client speaking https (and http, which callers only allow for loopback).
#[derive(Clone, Debug)]
pub(crate) struct HttpClient(CoreClient);

/// A response read to the end.
pub(crate) struct HttpResponse {
    pub(crate) status: StatusCode,
    #[cfg_attr(not(feature = "azure"), allow(dead_code))]
    pub(crate) headers: http::HeaderMap,
    pub(crate) body: Bytes,
}

impl HttpClient {
    pub(crate) fn new(tls: TlsSettings, timeout: Duration) -> Result<Self, HttpClientBuildError> {
        let mut builder = CoreClient::builder().timeout(timeout);
        if let Some(pem) = tls.ca_pem {
            builder = builder.public_roots(false).ca_pem(pem);
        }
        if let Some((cert, key)) = tls.client_pem {
            builder = builder.client_auth_pem(cert, key);
        }
        builder.build().map(Self)
    }

    /// Sends `request` and reads the whole body. Network errors and timeouts are transient;
    /// `what` names the call in error messages (never a secret).
    pub(crate) async fn send(
        &self,
        request: Request<Bytes>,
        what: &str,
    ) -> Result<HttpResponse, SourceError> {
        let response = self
            .0
            .send(request)
            .await
            .map_err(|e| transport_error(e, what))?;
        let (parts, body) = response.into_parts();
        Ok(HttpResponse {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }
}

fn transport_error(err: HttpError, what: &str) -> SourceError {
    match err {
        HttpError::Timeout { .. } => SourceError::transient(format!("{what}: timed out")),
        HttpError::Request(source) => {
            SourceError::transient(format!("{what}: request failed")).with_source(source)
        }
        other => SourceError::transient(format!("{what}: reading the response failed"))
            .with_source(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_ca_is_rejected() {
        let tls = TlsSettings {
            ca_pem: Some(b"not a pem".to_vec()),
            client_pem: None,
        };
        let err = HttpClient::new(tls, Duration::from_secs(1)).err();
        assert_eq!(
            err,
            Some(HttpClientBuildError::InvalidCa {
                bundle: 0,
                certificate: None
            })
        );
    }

    #[test]
    fn transport_errors_are_transient_and_name_the_call() {
        let err = transport_error(
            HttpError::Timeout {
                timeout: Duration::from_secs(1),
            },
            "vault read",
        );
        assert!(err.is_transient());
        assert_eq!(
            err.to_string(),
            "secret source failed (transient): vault read: timed out"
        );
        let err = transport_error(
            HttpError::Request(std::io::Error::other("refused").into()),
            "x",
        );
        assert!(err.is_transient() && err.to_string().ends_with("x: request failed"));
        assert!(std::error::Error::source(&err).is_some());
        let err = transport_error(HttpError::TooLarge { limit: 1 }, "x");
        assert!(
            err.to_string().ends_with("x: reading the response failed"),
            "{err}"
        );
    }
}
