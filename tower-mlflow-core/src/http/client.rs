//! [`HttpClient`] and its builder.

use std::{fmt, time::Duration};

use bytes::Bytes;
use http::{Request, Response, header::CONTENT_LENGTH};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::{TokioExecutor, TokioTimer},
};
#[cfg(feature = "http-client-tls")]
use zeroize::Zeroizing;

#[cfg(feature = "http-client-tls")]
use super::tls::TlsSettings;
use super::{HttpClientBuildError, HttpError};

#[cfg(feature = "http-client-tls")]
type Connector = hyper_rustls::HttpsConnector<HttpConnector>;
#[cfg(not(feature = "http-client-tls"))]
type Connector = HttpConnector;

/// A pooled HTTP/1.1 client for `https` (feature `http-client-tls`) and `http`, which callers
/// should allow only where [`scheme_is_safe`](super::scheme_is_safe) says so. Without
/// `http-client-tls`, an `https` request fails with [`HttpError::Request`].
/// Cheap to clone: clones share the pool.
#[derive(Clone)]
pub struct HttpClient {
    client: Client<Connector, Full<Bytes>>,
    timeout: Duration,
    max_body_len: usize,
}

impl fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpClient")
            .field("timeout", &self.timeout)
            .field("max_body_len", &self.max_body_len)
            .finish_non_exhaustive()
    }
}

impl HttpClient {
    /// Time allowed for connecting, sending and reading a whole response, by default.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
    /// Largest response body read, by default (1 MiB: secrets, tokens and key sets are small).
    pub const DEFAULT_MAX_BODY_LEN: usize = 1 << 20;
    /// How long an idle pooled connection is kept.
    const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

    /// A builder with the defaults: public webpki roots, no client certificate,
    /// [`DEFAULT_TIMEOUT`](Self::DEFAULT_TIMEOUT), [`DEFAULT_MAX_BODY_LEN`](Self::DEFAULT_MAX_BODY_LEN).
    pub fn builder() -> HttpClientBuilder {
        HttpClientBuilder {
            #[cfg(feature = "http-client-tls")]
            tls: TlsSettings::default(),
            timeout: Self::DEFAULT_TIMEOUT,
            max_body_len: Self::DEFAULT_MAX_BODY_LEN,
        }
    }

    /// The time allowed for one exchange.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Sends `request` and reads the whole response body.
    ///
    /// Redirects are not followed. Any status is a response, not an error: classify failure
    /// statuses with [`status_is_transient`](super::status_is_transient).
    ///
    /// # Errors
    ///
    /// [`HttpError`] when no complete response arrived within the timeout, the connection or
    /// TLS handshake failed, or the body is longer than the limit.
    pub async fn send(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        tokio::time::timeout(self.timeout, self.exchange(request))
            .await
            .map_err(|_| HttpError::Timeout {
                timeout: self.timeout,
            })?
    }

    async fn exchange(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let response = self
            .client
            .request(request.map(Full::new))
            .await
            .map_err(|e| HttpError::Request(e.into()))?;
        let too_large = HttpError::TooLarge {
            limit: self.max_body_len,
        };
        let declared_len = response
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        if declared_len.is_some_and(|len| len > self.max_body_len as u64) {
            return Err(too_large);
        }
        let (parts, body) = response.into_parts();
        let body = Limited::new(body, self.max_body_len)
            .collect()
            .await
            .map_err(|e| {
                if e.is::<LengthLimitError>() {
                    too_large
                } else {
                    HttpError::Body(e)
                }
            })?
            .to_bytes();
        Ok(Response::from_parts(parts, body))
    }
}

/// Configures an [`HttpClient`]; from [`HttpClient::builder`].
#[must_use]
pub struct HttpClientBuilder {
    #[cfg(feature = "http-client-tls")]
    tls: TlsSettings,
    timeout: Duration,
    max_body_len: usize,
}

impl fmt::Debug for HttpClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut f = f.debug_struct("HttpClientBuilder");
        #[cfg(feature = "http-client-tls")]
        f.field("tls", &self.tls);
        f.field("timeout", &self.timeout)
            .field("max_body_len", &self.max_body_len)
            .finish()
    }
}

impl HttpClientBuilder {
    /// Time allowed for connecting, sending the request and reading the whole response.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Largest response body read; a longer one is [`HttpError::TooLarge`].
    pub fn max_body_len(mut self, max_body_len: usize) -> Self {
        self.max_body_len = max_body_len;
        self
    }

    /// Whether the webpki (Mozilla) public roots are trusted (the default). Turn them off to
    /// trust only the [`ca_pem`](Self::ca_pem) bundles, as `VAULT_CACERT` does.
    #[cfg(feature = "http-client-tls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "http-client-tls")))]
    pub fn public_roots(mut self, enabled: bool) -> Self {
        self.tls.public_roots = enabled;
        self
    }

    /// Trusts the certificates of a PEM bundle as well. May be called more than once; each
    /// bundle must hold at least one certificate, and errors count the bundles from 0 in
    /// call order.
    #[cfg(feature = "http-client-tls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "http-client-tls")))]
    pub fn ca_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.tls.ca_pems.push(pem.into());
        self
    }

    /// Presents this PEM certificate chain and private key (PKCS#8, PKCS#1 or SEC1) for
    /// mutual TLS. The key is wiped from memory when the builder is dropped.
    #[cfg(feature = "http-client-tls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "http-client-tls")))]
    pub fn client_auth_pem(
        mut self,
        cert_chain_pem: impl Into<Vec<u8>>,
        key_pem: impl Into<Vec<u8>>,
    ) -> Self {
        self.tls.client_pem = Some((cert_chain_pem.into(), Zeroizing::new(key_pem.into())));
        self
    }

    /// Builds the client. Needs no runtime; sending does (tokio).
    ///
    /// # Errors
    ///
    /// [`HttpClientBuildError`] when a PEM bundle, the client certificate or its key cannot
    /// be used (so never without `http-client-tls`).
    pub fn build(self) -> Result<HttpClient, HttpClientBuildError> {
        let mut http = HttpConnector::new();
        http.set_connect_timeout(Some(self.timeout));
        #[cfg(feature = "http-client-tls")]
        let connector = self.tls.connector(http)?;
        #[cfg(not(feature = "http-client-tls"))]
        let connector = http;
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(HttpClient::POOL_IDLE_TIMEOUT)
            .build(connector);
        Ok(HttpClient {
            client,
            timeout: self.timeout,
            max_body_len: self.max_body_len,
        })
    }
}

#[cfg(test)]
mod tests;
