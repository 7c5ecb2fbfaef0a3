//! Why a client could not be built, and why a request failed.

use std::{error::Error, fmt, time::Duration};

use crate::BoxError;

/// What [`HttpClientBuilder::build`](super::HttpClientBuilder::build) rejects. The text never
/// contains key material.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum HttpClientBuildError {
    /// A CA bundle holds no certificate or a malformed one, or no trust anchor is left.
    InvalidCa,
    /// The client certificate or key is malformed, or they do not match.
    InvalidClientCert,
}

impl fmt::Display for HttpClientBuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidCa => f.write_str("the CA bundle holds no valid PEM certificate"),
            Self::InvalidClientCert => {
                f.write_str("the client certificate or key is not valid PEM, or they do not match")
            }
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
}
