//! The small HTTPS client shared by the Vault and Azure sources: hyper 1 + hyper-util's
//! legacy pooled client + rustls with an explicit `ring` provider (so the process-wide
//! default provider, or its absence, never matters).

use std::{fmt, path::Path, sync::Arc, time::Duration};

use bytes::Bytes;
use http::{Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};
use rustls::RootCertStore;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};

use super::SourceError;

/// Largest response body read from a secret store (a secret plus metadata is small).
const MAX_BODY: usize = 1 << 20;

/// TLS settings: extra trust anchors and a client certificate.
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

/// Why the TLS settings could not be used. The text never contains key material.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum TlsError {
    /// The CA bundle has no certificate or a malformed one.
    InvalidCa,
    /// The client certificate or key is malformed, or they do not match.
    InvalidClientCert,
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidCa => f.write_str("the CA bundle holds no valid PEM certificate"),
            Self::InvalidClientCert => {
                f.write_str("the client certificate or key is not valid PEM, or they do not match")
            }
        }
    }
}

impl TlsSettings {
    /// Reads a PEM file; errors name the path only.
    #[cfg_attr(not(feature = "vault"), allow(dead_code))]
    pub(crate) fn read_file(path: &Path) -> Result<Vec<u8>, std::io::Error> {
        std::fs::read(path)
    }

    fn client_config(&self) -> Result<rustls::ClientConfig, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = RootCertStore::empty();
        match &self.ca_pem {
            Some(pem) => {
                let mut added = 0;
                for cert in CertificateDer::pem_slice_iter(pem) {
                    let cert = cert.map_err(|_| TlsError::InvalidCa)?;
                    roots.add(cert).map_err(|_| TlsError::InvalidCa)?;
                    added += 1;
                }
                if added == 0 {
                    return Err(TlsError::InvalidCa);
                }
            }
            None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        }
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|_| TlsError::InvalidCa)?
            .with_root_certificates(roots);
        match &self.client_pem {
            None => Ok(builder.with_no_client_auth()),
            Some((cert_pem, key_pem)) => {
                let chain = CertificateDer::pem_slice_iter(cert_pem)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|_| TlsError::InvalidClientCert)?;
                let key = PrivateKeyDer::from_pem_slice(key_pem)
                    .map_err(|_| TlsError::InvalidClientCert)?;
                if chain.is_empty() {
                    return Err(TlsError::InvalidClientCert);
                }
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|_| TlsError::InvalidClientCert)
            }
        }
    }
}

/// A pooled HTTP/1.1 client speaking https (and http, which callers only allow for loopback).
#[derive(Clone)]
pub(crate) struct HttpClient {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    timeout: Duration,
}

impl fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpClient")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// A response read to the end.
pub(crate) struct HttpResponse {
    pub(crate) status: StatusCode,
    #[cfg_attr(not(feature = "azure"), allow(dead_code))]
    pub(crate) headers: http::HeaderMap,
    pub(crate) body: Bytes,
}

impl HttpClient {
    pub(crate) fn new(tls: &TlsSettings, timeout: Duration) -> Result<Self, TlsError> {
        let config = tls.client_config()?;
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(timeout));
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(config)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        Ok(Self { client, timeout })
    }

    /// Sends `request` and reads the whole body. Network errors and timeouts are transient;
    /// `what` names the call in error messages (never a secret).
    pub(crate) async fn send(
        &self,
        request: Request<Full<Bytes>>,
        what: &str,
    ) -> Result<HttpResponse, SourceError> {
        let exchange = async {
            let response: Response<hyper::body::Incoming> =
                self.client.request(request).await.map_err(|e| {
                    SourceError::transient(format!("{what}: request failed")).with_source(e)
                })?;
            let (parts, body) = response.into_parts();
            let body = http_body_util::Limited::new(body, MAX_BODY)
                .collect()
                .await
                .map_err(|e| {
                    SourceError::transient(format!("{what}: reading the response failed"))
                        .with_source(e)
                })?
                .to_bytes();
            Ok(HttpResponse {
                status: parts.status,
                headers: parts.headers,
                body,
            })
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| SourceError::transient(format!("{what}: timed out")))?
    }
}

/// Whether `uri` is `https`, or `http` to a loopback host (plain http elsewhere would send
/// tokens in clear).
#[cfg_attr(not(feature = "vault"), allow(dead_code))]
pub(crate) fn scheme_is_safe(uri: &Uri, allow_plain_http: bool) -> bool {
    match uri.scheme_str() {
        Some("https") => true,
        Some("http") => allow_plain_http || uri.host().is_some_and(is_loopback_host),
        _ => false,
    }
}

#[cfg_attr(not(feature = "vault"), allow(dead_code))]
fn is_loopback_host(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Classifies an HTTP status the same way for every provider: 429, 5xx (and Vault's 472/473
/// standby codes) are transient, every other failure is permanent.
pub(crate) fn status_is_transient(status: StatusCode) -> bool {
    status == StatusCode::TOO_MANY_REQUESTS
        || status == StatusCode::REQUEST_TIMEOUT
        || status.is_server_error()
        || matches!(status.as_u16(), 472 | 473)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_only_for_loopback() {
        let ok = |s: &str| scheme_is_safe(&s.parse().unwrap_or_default(), false);
        assert!(ok("https://vault.example.com"));
        assert!(ok("http://127.0.0.1:8200"));
        assert!(ok("http://[::1]:8200"));
        assert!(ok("http://localhost:8200"));
        assert!(!ok("http://vault.example.com"));
        assert!(!ok("ftp://vault.example.com"));
    }

    #[test]
    fn transient_statuses() {
        for code in [429, 500, 502, 503, 472, 473] {
            assert!(
                status_is_transient(StatusCode::from_u16(code).unwrap_or_default()),
                "{code}"
            );
        }
        for code in [400, 401, 403, 404] {
            assert!(
                !status_is_transient(StatusCode::from_u16(code).unwrap_or_default()),
                "{code}"
            );
        }
    }

    #[test]
    fn bad_ca_is_rejected() {
        let tls = TlsSettings {
            ca_pem: Some(b"not a pem".to_vec()),
            client_pem: None,
        };
        assert_eq!(tls.client_config().err(), Some(TlsError::InvalidCa));
    }
}
