//! The answer to a throttled request: 429 with `Retry-After`, or gRPC `RESOURCE_EXHAUSTED`.

use std::{fmt, time::Duration};

use http::{HeaderValue, Response, StatusCode, header};

use crate::rejection::Protocol;

/// A request refused by [`Throttle`](super::Throttle) because its client failed to log in
/// too often: put into the extensions of the 429 (or gRPC) response, like
/// [`AuthRejection`](crate::AuthRejection) for `AuthLayer`, for access logs and metrics.
///
/// ```
/// use tower_mlflow_auth::throttle::Throttled;
///
/// fn throttled_for(response: &http::Response<String>) -> Option<u64> {
///     response.extensions().get::<Throttled>().map(|t| t.retry_after().as_secs())
/// }
/// # let _ = throttled_for;
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Throttled {
    retry_after: Duration,
}

impl Throttled {
    /// `retry_after` in whole seconds, as `Retry-After` carries it.
    pub(super) fn new(retry_after_secs: u64) -> Self {
        Self {
            retry_after: Duration::from_secs(retry_after_secs),
        }
    }

    /// How long until the client's next token is back, in whole seconds (rounded up): the
    /// value of `Retry-After`.
    #[must_use]
    pub fn retry_after(&self) -> Duration {
        self.retry_after
    }

    /// Always `429 Too Many Requests`.
    #[must_use]
    pub fn status(&self) -> StatusCode {
        StatusCode::TOO_MANY_REQUESTS
    }

    /// The gRPC status code: 8 (`RESOURCE_EXHAUSTED`).
    #[must_use]
    pub fn grpc_code(&self) -> u8 {
        8
    }

    /// The response: for HTTP a 429 with an empty body and `Retry-After`, for gRPC a
    /// trailers-only response with `grpc-status: 8`; `self` in the extensions either way.
    pub(super) fn into_response<B: Default>(self, protocol: Protocol) -> Response<B> {
        let mut response = Response::new(B::default());
        let seconds = HeaderValue::from(self.retry_after.as_secs());
        if protocol == Protocol::Http {
            *response.status_mut() = self.status();
        }
        let headers = response.headers_mut();
        if protocol == Protocol::Grpc {
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/grpc"),
            );
            headers.insert(
                "grpc-status",
                HeaderValue::from(u16::from(self.grpc_code())),
            );
            // Printable ASCII without `%`: no percent-encoding needed.
            headers.insert(
                "grpc-message",
                HeaderValue::from_static("too many failed logins; retry later"),
            );
        }
        // For gRPC not part of the protocol, but harmless and useful to proxies.
        headers.insert(header::RETRY_AFTER, seconds);
        response.extensions_mut().insert(self);
        response
    }
}

impl fmt::Display for Throttled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "too many failed logins; retry in {} s",
            self.retry_after.as_secs()
        )
    }
}

impl std::error::Error for Throttled {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_is_a_429_with_retry_after() {
        let response: Response<String> = Throttled::new(7).into_response(Protocol::Http);
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()[header::RETRY_AFTER], "7");
        assert!(response.body().is_empty());
        let throttled = response.extensions().get::<Throttled>().unwrap();
        assert_eq!(throttled.retry_after(), Duration::from_secs(7));
        assert_eq!(
            throttled.to_string(),
            "too many failed logins; retry in 7 s"
        );
    }

    #[test]
    fn grpc_is_trailers_only_resource_exhausted() {
        let response: Response<String> = Throttled::new(3).into_response(Protocol::Grpc);
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["grpc-status"], "8");
        assert_eq!(response.headers()[header::CONTENT_TYPE], "application/grpc");
        assert!(response.body().is_empty());
        assert!(response.extensions().get::<Throttled>().is_some());
    }
}
