//! Fetching the discovery document and the JWKS over HTTP(S), with a timeout and a size cap.

use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode, Uri, header};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::{TokioExecutor, TokioTimer},
};
use serde_json::Value;
use tower_mlflow_core::net::is_loopback_host;

use super::{JwtError, JwtErrorKind};

#[cfg(not(feature = "jwt-tls"))]
type Connector = HttpConnector;
#[cfg(feature = "jwt-tls")]
type Connector = hyper_rustls::HttpsConnector<HttpConnector>;

/// Which URLs the key source may be fetched from.
#[derive(Clone, Copy, Debug)]
pub(super) struct UrlPolicy {
    /// Plain `http://` to a host that is not loopback.
    pub(super) allow_insecure_http: bool,
}

impl UrlPolicy {
    /// Parses `url` and checks it: `https`, or `http` to a loopback host (or anywhere when
    /// explicitly allowed). Keys fetched over plain HTTP from another host could be swapped
    /// by anyone on the path, which would let them mint tokens.
    pub(super) fn check(self, url: &str) -> Result<Uri, JwtErrorKind> {
        let uri: Uri = url.parse().map_err(|_| JwtErrorKind::InvalidUrl)?;
        let host = uri.host().ok_or(JwtErrorKind::InvalidUrl)?;
        // Credentials in a URL would end up in error messages and logs.
        if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
            return Err(JwtErrorKind::InvalidUrl);
        }
        match uri.scheme_str() {
            Some("https") if cfg!(feature = "jwt-tls") => Ok(uri),
            Some("https") => Err(JwtErrorKind::HttpsUnsupported),
            Some("http") if self.allow_insecure_http || is_loopback_host(host) => Ok(uri),
            Some("http") => Err(JwtErrorKind::InsecureUrl),
            _ => Err(JwtErrorKind::InvalidUrl),
        }
    }
}

/// A small GET-JSON client on hyper-util's pooled client.
#[derive(Clone, Debug)]
pub(super) struct Fetcher {
    client: Client<Connector, Empty<Bytes>>,
    timeout: Duration,
    max_body: usize,
}

impl Fetcher {
    pub(super) fn new(
        timeout: Duration,
        max_body: usize,
        #[cfg(feature = "jwt-tls")] tls: rustls::ClientConfig,
    ) -> Self {
        let mut http = HttpConnector::new();
        http.set_connect_timeout(Some(timeout));
        #[cfg(feature = "jwt-tls")]
        let connector = {
            http.enforce_http(false);
            hyper_rustls::HttpsConnectorBuilder::new()
                .with_tls_config(tls)
                .https_or_http()
                .enable_http1()
                .wrap_connector(http)
        };
        #[cfg(not(feature = "jwt-tls"))]
        let connector = http;
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        Self {
            client,
            timeout,
            max_body,
        }
    }

    /// GETs `uri` and parses the body as a JSON object.
    pub(super) async fn get_json(&self, uri: &Uri) -> Result<Value, JwtError> {
        let fail = |kind| JwtError::new(uri, kind);
        let body = tokio::time::timeout(self.timeout, self.get(uri))
            .await
            .map_err(|_| fail(JwtErrorKind::Timeout))?
            .map_err(fail)?;
        let value: Value =
            serde_json::from_slice(&body).map_err(|_| fail(JwtErrorKind::InvalidJson))?;
        if !value.is_object() {
            return Err(fail(JwtErrorKind::InvalidJson));
        }
        Ok(value)
    }

    async fn get(&self, uri: &Uri) -> Result<Bytes, JwtErrorKind> {
        let request = Request::get(uri.clone())
            .header(header::ACCEPT, "application/json")
            .header(
                header::USER_AGENT,
                concat!("tower-mlflow-auth/", env!("CARGO_PKG_VERSION")),
            )
            .body(Empty::new())
            .map_err(|_| JwtErrorKind::InvalidUrl)?;
        let response = self
            .client
            .request(request)
            .await
            .map_err(|e| JwtErrorKind::Request(error_chain(&e).into()))?;
        // Redirects are not followed: an IdP's JWKS URL answers 200 directly.
        if response.status() != StatusCode::OK {
            return Err(JwtErrorKind::Status(response.status()));
        }
        let declared_len = response
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        if declared_len.is_some_and(|len| len > self.max_body as u64) {
            return Err(JwtErrorKind::TooLarge(self.max_body));
        }
        Limited::new(response.into_body(), self.max_body)
            .collect()
            .await
            .map(|collected| collected.to_bytes())
            .map_err(|e| {
                if e.downcast_ref::<http_body_util::LengthLimitError>()
                    .is_some()
                {
                    JwtErrorKind::TooLarge(self.max_body)
                } else {
                    JwtErrorKind::Request(error_chain(&*e).into())
                }
            })
    }
}

/// `error: cause: cause` — hyper-util's top-level error says little on its own.
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
