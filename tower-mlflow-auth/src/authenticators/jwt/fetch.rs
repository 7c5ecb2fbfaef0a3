//! Fetching the discovery document and the JWKS with the workspace's HTTP client
//! ([`tower_mlflow_core::http`]): a timeout, a size cap, `https` with the `jwt-tls` feature.

use std::time::Duration;

use http::{Request, StatusCode, Uri, header};
use serde_json::Value;
#[cfg(feature = "jwt-tls")]
use tower_mlflow_core::http::HttpClientBuilder;
use tower_mlflow_core::http::{HttpClient, HttpClientBuildError, HttpError, scheme_is_safe};

use super::{JwtBuildError, JwtError, JwtErrorKind};

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
        if uri.host().is_none() {
            return Err(JwtErrorKind::InvalidUrl);
        }
        // Credentials in a URL would end up in error messages and logs.
        if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
            return Err(JwtErrorKind::InvalidUrl);
        }
        match uri.scheme_str() {
            Some("https") if cfg!(feature = "jwt-tls") => Ok(uri),
            Some("https") => Err(JwtErrorKind::HttpsUnsupported),
            Some("http") if scheme_is_safe(&uri, self.allow_insecure_http) => Ok(uri),
            Some("http") => Err(JwtErrorKind::InsecureUrl),
            _ => Err(JwtErrorKind::InvalidUrl),
        }
    }
}

/// GETs JSON documents. Cheap to clone: clones share the connection pool.
#[derive(Clone, Debug)]
pub(super) struct Fetcher {
    client: HttpClient,
}

impl Fetcher {
    /// A fetcher whose requests end after `timeout` and whose bodies stop at `max_body`
    /// bytes. With `jwt-tls`, `root_pems` replace the webpki roots unless there are none or
    /// `public_roots` says to keep them.
    pub(super) fn new(
        timeout: Duration,
        max_body: usize,
        #[cfg(feature = "jwt-tls")] root_pems: Vec<Vec<u8>>,
        #[cfg(feature = "jwt-tls")] public_roots: Option<bool>,
    ) -> Result<Self, JwtBuildError> {
        let builder = HttpClient::builder()
            .timeout(timeout)
            .max_body_len(max_body);
        #[cfg(feature = "jwt-tls")]
        let builder = {
            let public_roots = public_roots.unwrap_or(root_pems.is_empty());
            root_pems.into_iter().fold(
                builder.public_roots(public_roots),
                HttpClientBuilder::ca_pem,
            )
        };
        let client = builder.build().map_err(|e| build_error(&e))?;
        Ok(Self { client })
    }

    /// GETs `uri` and parses the body as a JSON object.
    pub(super) async fn get_json(&self, uri: &Uri) -> Result<Value, JwtError> {
        let fail = |kind| JwtError::new(uri, kind);
        let request = Request::get(uri.clone())
            .header(header::ACCEPT, "application/json")
            .header(
                header::USER_AGENT,
                concat!("tower-mlflow-auth/", env!("CARGO_PKG_VERSION")),
            )
            .body(Default::default())
            .map_err(|_| fail(JwtErrorKind::InvalidUrl))?;
        let response = self
            .client
            .send(request)
            .await
            .map_err(|e| transport_error(uri, e))?;
        // Redirects are not followed: an IdP's JWKS URL answers 200 directly.
        if response.status() != StatusCode::OK {
            return Err(fail(JwtErrorKind::Status(response.status())));
        }
        let value: Value =
            serde_json::from_slice(response.body()).map_err(|_| fail(JwtErrorKind::InvalidJson))?;
        if !value.is_object() {
            return Err(fail(JwtErrorKind::InvalidJson));
        }
        Ok(value)
    }
}

/// The builder's view of a client that cannot be built: only root certificates can be wrong.
fn build_error(error: &HttpClientBuildError) -> JwtBuildError {
    match *error {
        #[cfg(feature = "jwt-tls")]
        HttpClientBuildError::InvalidCa {
            bundle,
            certificate,
        } => JwtBuildError::RootCertificates {
            pem: bundle,
            certificate,
        },
        _ => JwtBuildError::Tls,
    }
}

/// No complete answer: the kind says what failed, the cause stays in `source()`.
fn transport_error(uri: &Uri, error: HttpError) -> JwtError {
    match error {
        HttpError::Timeout { .. } => JwtError::new(uri, JwtErrorKind::Timeout),
        HttpError::TooLarge { limit } => JwtError::new(uri, JwtErrorKind::TooLarge(limit)),
        HttpError::Request(cause) | HttpError::Body(cause) => {
            JwtError::new(uri, JwtErrorKind::Request).with_source(cause)
        }
        other => JwtError::new(uri, JwtErrorKind::Request).with_source(other.into()),
    }
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use super::*;

    fn uri() -> Uri {
        "http://127.0.0.1:9/jwks".parse().unwrap()
    }

    #[test]
    fn transport_failures_keep_their_cause() {
        let refused = std::io::Error::other("connection refused");
        let err = transport_error(&uri(), HttpError::Request(refused.into()));
        assert_eq!(err.kind(), &JwtErrorKind::Request);
        assert_eq!(
            err.source().map(ToString::to_string).as_deref(),
            Some("connection refused")
        );
        assert!(!err.to_string().contains("refused"), "{err}");
        // The cause is detail, not identity.
        assert_eq!(err, JwtError::new(&uri(), JwtErrorKind::Request));
        let err = transport_error(&uri(), HttpError::Body("reset".into()));
        assert_eq!(err.kind(), &JwtErrorKind::Request);
        assert!(err.source().is_some());
    }

    #[test]
    fn limits_are_kinds_without_a_cause() {
        let err = transport_error(&uri(), HttpError::TooLarge { limit: 64 });
        assert_eq!(err.kind(), &JwtErrorKind::TooLarge(64));
        assert!(err.source().is_none());
        let timeout = Duration::from_secs(1);
        let err = transport_error(&uri(), HttpError::Timeout { timeout });
        assert_eq!(err.kind(), &JwtErrorKind::Timeout);
        assert_eq!(err.url(), "http://127.0.0.1:9/jwks");
    }

    #[test]
    fn client_build_errors_map_to_the_builder_error() {
        assert_eq!(build_error(&HttpClientBuildError::Tls), JwtBuildError::Tls);
        #[cfg(feature = "jwt-tls")]
        assert_eq!(
            build_error(&HttpClientBuildError::InvalidCa {
                bundle: 2,
                certificate: Some(1)
            }),
            JwtBuildError::RootCertificates {
                pem: 2,
                certificate: Some(1)
            }
        );
    }
}
