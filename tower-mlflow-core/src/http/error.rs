//! Why a client could not be built, and why a request failed.

use std::{error::Error, fmt, time::Duration};

use crate::BoxError;

/// What [`HttpClientBuilder::build`](super::HttpClientBuilder::build) rejects (only with
/// feature `http-client-tls`: without TLS there is nothing to reject). The text never
/// contains key material.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum HttpClientBuildError {
    /// A CA bundle is malformed or holds no certificate, or one of its certificates is not a
    /// usable trust anchor.
    InvalidCa {
        /// Which bundle, counting the `ca_pem` calls from 0.
        bundle: usize,
        /// Which certificate in it, counting from 0; `None` when the bundle is malformed or
        /// holds no certificate.
        certificate: Option<usize>,
    },
    /// Nothing would be trusted: the public roots are off and no CA bundle was given.
    NoTrustAnchors,
    /// The client certificate or key is malformed, or they do not match.
    InvalidClientCert,
    /// The TLS configuration could not be built from the crypto provider.
    Tls,
}

impl fmt::Display for HttpClientBuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidCa {
                bundle,
                certificate: Some(index),
            } => write!(
                f,
                "CA bundle #{bundle}: certificate #{index} is not a usable trust anchor"
            ),
            Self::InvalidCa {
                bundle,
                certificate: None,
            } => write!(
                f,
                "CA bundle #{bundle} is malformed or holds no certificate"
            ),
            Self::NoTrustAnchors => {
                f.write_str("no trust anchor: the public roots are off and no CA bundle is given")
            }
            Self::InvalidClientCert => {
                f.write_str("the client certificate or key is not valid PEM, or they do not match")
            }
            Self::Tls => f.write_str("cannot build the TLS configuration"),
        }
    }
}

impl Error for HttpClientBuildError {}

/// Why [`HttpClient::send`](super::HttpClient::send) got no complete response.
#[derive(Debug)]
#[non_exhaustive]
pub enum HttpError {
    /// Connecting, the TLS handshake, or sending the request failed.
    Request(BoxError),
    /// Reading the response body failed.
    Body(BoxError),
    /// The response body is longer than the client's limit.
    TooLarge {
        /// The limit, in bytes.
        limit: usize,
    },
    /// No complete response within the client's timeout.
    Timeout {
        /// The timeout that passed.
        timeout: Duration,
    },
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Request(_) => f.write_str("the request failed"),
            Self::Body(_) => f.write_str("reading the response failed"),
            Self::TooLarge { limit } => write!(f, "the response is larger than {limit} bytes"),
            Self::Timeout { timeout } => write!(f, "no response within {timeout:?}"),
        }
    }
}

impl Error for HttpError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            Self::Request(source) | Self::Body(source) => Some(&**source),
            Self::TooLarge { .. } | Self::Timeout { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_and_source() {
        let err = HttpError::Request(std::io::Error::other("refused").into());
        assert_eq!(err.to_string(), "the request failed");
        assert_eq!(
            err.source().map(ToString::to_string).as_deref(),
            Some("refused")
        );
        let err = HttpError::TooLarge { limit: 10 };
        assert_eq!(err.to_string(), "the response is larger than 10 bytes");
        assert!(err.source().is_none());
        let err = HttpError::Timeout {
            timeout: Duration::from_secs(2),
        };
        assert_eq!(err.to_string(), "no response within 2s");
    }

    #[test]
    fn build_errors_name_the_bundle_and_certificate() {
        let err = HttpClientBuildError::InvalidCa {
            bundle: 1,
            certificate: Some(2),
        };
        assert_eq!(
            err.to_string(),
            "CA bundle #1: certificate #2 is not a usable trust anchor"
        );
        let err = HttpClientBuildError::InvalidCa {
            bundle: 0,
            certificate: None,
        };
        assert_eq!(
            err.to_string(),
            "CA bundle #0 is malformed or holds no certificate"
        );
        assert!(
            HttpClientBuildError::NoTrustAnchors
                .to_string()
                .contains("no trust anchor")
        );
    }
}
