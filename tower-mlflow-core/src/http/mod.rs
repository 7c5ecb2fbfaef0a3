//! The one outbound HTTP client of the workspace (feature `http-client`): hyper-util's pooled
//! HTTP/1.1 client, for `https` over rustls with the **aws-lc-rs** provider (feature
//! `http-client-tls`), the same provider the AWS SDK and jsonwebtoken use, so no second crypto
//! library is compiled. Without `http-client-tls` it speaks plain `http` only, and no TLS
//! crate is built.
//!
//! - [`HttpClient::builder`]: timeout, response size cap and, with `http-client-tls`, trust
//!   anchors (the webpki public roots, plus or instead of PEM bundles) and an optional client
//!   certificate.
//! - [`HttpClient::send`]: sends a request with a [`Bytes`](bytes::Bytes) body and reads the whole
//!   response, within the timeout and the size cap; failures are an [`HttpError`].
//! - [`scheme_is_safe`]: `https`, or plain `http` only to a loopback host
//!   ([`net::is_loopback_host`](crate::net::is_loopback_host)).
//! - [`status_is_transient`]: which failure statuses a retry may fix.
//! - [`error_chain`]: an error and its causes on one line, for messages to a person (an
//!   [`HttpError`] names the step that failed; the causes say why).
//!
//! The TLS provider is passed explicitly, so the process-wide default provider (or its
//! absence) never matters. No hyper or rustls type appears in this API.
//!
//! ```no_run
//! use std::time::Duration;
//! use bytes::Bytes;
//! use http::Request;
//! use tower_mlflow_core::http::{HttpClient, scheme_is_safe, status_is_transient};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! let client = HttpClient::builder().timeout(Duration::from_secs(5)).build()?;
//! let uri: http::Uri = "https://vault.example.com/v1/sys/health".parse()?;
//! assert!(scheme_is_safe(&uri, false));
//! let response = client.send(Request::get(uri).body(Bytes::new())?).await?;
//! if status_is_transient(response.status()) {
//!     // retry later
//! }
//! # Ok(())
//! # }
//! ```

mod client;
mod error;
#[cfg(feature = "http-client-tls")]
mod tls;

use http::{StatusCode, Uri};

pub use self::{
    client::{HttpClient, HttpClientBuilder},
    error::{HttpClientBuildError, HttpError},
};
use crate::net::is_loopback_host;

/// Whether `uri` is `https`, or `http` to a loopback host (or to any host when
/// `allow_plain_http`): plain http elsewhere would send credentials in clear.
#[must_use]
pub fn scheme_is_safe(uri: &Uri, allow_plain_http: bool) -> bool {
    match uri.scheme_str() {
        Some("https") => true,
        Some("http") => allow_plain_http || uri.host().is_some_and(is_loopback_host),
        _ => false,
    }
}

/// Classifies a failure status the same way for every client: 408, 429, 5xx and Vault's
/// 472/473 (performance standby, DR secondary) are worth a retry; every other status is not.
#[must_use]
pub fn status_is_transient(status: StatusCode) -> bool {
    status == StatusCode::TOO_MANY_REQUESTS
        || status == StatusCode::REQUEST_TIMEOUT
        || status.is_server_error()
        || matches!(status.as_u16(), 472 | 473)
}

/// `error: cause: cause…`: the error and each [`source`](std::error::Error::source) in turn,
/// for a log line or a message printed to a person.
#[must_use]
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_chain_lists_every_cause() {
        let io = std::io::Error::other("connection refused");
        let err = HttpError::Request(Box::new(io));
        assert_eq!(error_chain(&err), "the request failed: connection refused");
        let alone = HttpError::TooLarge { limit: 3 };
        assert_eq!(error_chain(&alone), "the response is larger than 3 bytes");
    }

    fn uri(s: &str) -> Uri {
        s.parse().unwrap()
    }

    #[test]
    fn plain_http_only_for_loopback() {
        let ok = |s: &str| scheme_is_safe(&uri(s), false);
        assert!(ok("https://vault.example.com"));
        assert!(ok("http://127.0.0.1:8200"));
        assert!(ok("http://[::1]:8200"));
        assert!(ok("http://localhost:8200"));
        assert!(ok("http://vault.localhost:8200"));
        assert!(!ok("http://vault.example.com"));
        assert!(!ok("http://127.0.0.1.nip.io"));
        assert!(!ok("ftp://vault.example.com"));
        assert!(!ok("/relative/path"));
    }

    #[test]
    fn plain_http_anywhere_when_allowed() {
        assert!(scheme_is_safe(&uri("http://vault.example.com"), true));
        assert!(!scheme_is_safe(&uri("ftp://vault.example.com"), true));
    }

    #[test]
    fn transient_statuses() {
        for code in [408, 429, 500, 502, 503, 504, 472, 473] {
            assert!(
                status_is_transient(StatusCode::from_u16(code).unwrap()),
                "{code}"
            );
        }
        for code in [200, 301, 400, 401, 403, 404, 409, 471, 474] {
            assert!(
                !status_is_transient(StatusCode::from_u16(code).unwrap()),
                "{code}"
            );
        }
    }
}
