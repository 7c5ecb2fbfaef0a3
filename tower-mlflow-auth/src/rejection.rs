//! Why a request was refused, and how the refusal is rendered.
//!
//! Every refusal is an [`AuthRejection`]. [`AuthLayer`](crate::AuthLayer) renders it:
//!
//! - **HTTP**: 401 with `WWW-Authenticate` (one header per challenge of the authenticator,
//!   `Basic realm="mlflow"` by default) or 503 when the credential backend failed. The body
//!   comes from a [`RejectionResponse`] hook; the default leaves it empty, except that with the
//!   `axum` feature an `axum::body::Body` gets a short plain-text message like MLflow's.
//! - **gRPC** (`content-type` starting with `application/grpc`): a trailers-only response,
//!   HTTP 200 with `grpc-status` 16 (`UNAUTHENTICATED`) or 14 (`UNAVAILABLE`) and a
//!   percent-encoded `grpc-message`. The hook is not used, since a trailers-only response
//!   has no body.
//!
//! In both cases the `AuthRejection` is also put into the response extensions, for logging
//! and metrics in outer layers.

use std::fmt;

use http::{HeaderValue, Response, StatusCode, header};

use crate::credentials::{Malformed, Scheme};

/// Why [`AuthLayer`](crate::AuthLayer) refused a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum AuthRejection {
    /// No credentials were presented (401).
    Missing,
    /// The credentials could not be read (401).
    Malformed(Malformed),
    /// Well-formed credentials of this scheme were not accepted (401).
    Invalid(Scheme),
    /// The authenticator's backend failed, so the credentials could not be checked (503).
    Unavailable,
}

impl AuthRejection {
    /// The HTTP status for this rejection.
    #[must_use]
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::Missing | Self::Malformed(_) | Self::Invalid(_) => StatusCode::UNAUTHORIZED,
        }
    }

    /// The gRPC status code: 16 (`UNAUTHENTICATED`) or 14 (`UNAVAILABLE`).
    #[must_use]
    pub fn grpc_code(&self) -> u8 {
        match self {
            Self::Unavailable => 14,
            Self::Missing | Self::Malformed(_) | Self::Invalid(_) => 16,
        }
    }

    /// A short message for the client. It never says more than the status does, so it gives
    /// an attacker nothing (for example, whether a username exists).
    #[must_use]
    pub fn message(&self) -> &'static str {
        match self {
            Self::Unavailable => {
                "The authentication service is temporarily unavailable. Please try again later."
            }
            Self::Missing | Self::Malformed(_) | Self::Invalid(_) => MLFLOW_UNAUTHENTICATED,
        }
    }
}

impl fmt::Display for AuthRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Missing => f.pad("missing credentials"),
            Self::Malformed(why) => write!(f, "malformed credentials ({why})"),
            Self::Invalid(scheme) => write!(f, "invalid {scheme} credentials"),
            Self::Unavailable => f.pad("authentication backend unavailable"),
        }
    }
}

/// MLflow's own 401 text, so that the MLflow client shows users the same advice.
const MLFLOW_UNAUTHENTICATED: &str = "You are not authenticated. Please see \
    https://www.mlflow.org/docs/latest/auth/index.html#authenticating-to-mlflow on how to \
    authenticate.";

/// Builds the HTTP response for a rejection: the hook for custom bodies.
///
/// The layer adds the protocol headers afterwards: `WWW-Authenticate` on a 401 that has none,
/// and the rejection in the extensions. Closures `Fn(&AuthRejection) -> Response<B>` implement
/// it:
///
/// ```
/// use http::Response;
/// use http_body_util::Full;
/// use bytes::Bytes;
/// use tower_mlflow_auth::{AuthLayer, AuthRejection};
/// # let authenticator = |_c| async { Ok::<_, std::convert::Infallible>(None) };
///
/// let layer = AuthLayer::new(authenticator).with_rejection_response(|r: &AuthRejection| {
///     let mut response = Response::new(Full::new(Bytes::from(format!("{{\"error\":\"{r}\"}}"))));
///     *response.status_mut() = r.status();
///     response
/// });
/// # let _ = layer;
/// ```
pub trait RejectionResponse<B> {
    /// The response for `rejection`. Its status should be [`AuthRejection::status`].
    fn response(&self, rejection: &AuthRejection) -> Response<B>;
}

impl<B, F> RejectionResponse<B> for F
where
    F: Fn(&AuthRejection) -> Response<B>,
{
    fn response(&self, rejection: &AuthRejection) -> Response<B> {
        self(rejection)
    }
}

/// The default rejection response: the rejection's status and an empty body — or, with the
/// `axum` feature and an `axum::body::Body`, MLflow's short plain-text message.
#[derive(Clone, Copy, Debug, Default)]
pub struct DefaultRejectionResponse;

impl<B: Default + 'static> RejectionResponse<B> for DefaultRejectionResponse {
    fn response(&self, rejection: &AuthRejection) -> Response<B> {
        #[cfg(feature = "axum")]
        if let Some(body) = axum_text_body::<B>(rejection.message()) {
            let mut response = Response::new(body);
            *response.status_mut() = rejection.status();
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            );
            return response;
        }
        let mut response = Response::new(B::default());
        *response.status_mut() = rejection.status();
        response
    }
}

/// `Some(text body)` when `B` is `axum::body::Body`. `B` is generic here, and Rust has no
/// specialisation, so the body type is recognised at run time; the check compiles to a
/// constant.
#[cfg(feature = "axum")]
fn axum_text_body<B: 'static>(text: &'static str) -> Option<B> {
    let body: Box<dyn std::any::Any> = Box::new(axum_core::body::Body::from(text));
    body.downcast::<B>().ok().map(|b| *b)
}

/// The trailers-only gRPC response for a rejection.
pub(crate) fn grpc_response<B: Default>(rejection: AuthRejection) -> Response<B> {
    let mut response = Response::new(B::default());
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    headers.insert(
        "grpc-status",
        HeaderValue::from(u16::from(rejection.grpc_code())),
    );
    let message = match rejection {
        AuthRejection::Unavailable => "authentication backend unavailable",
        AuthRejection::Missing => "missing credentials",
        AuthRejection::Malformed(_) => "malformed credentials",
        AuthRejection::Invalid(_) => "invalid credentials",
    };
    if let Ok(value) = HeaderValue::try_from(grpc_percent_encode(message)) {
        headers.insert("grpc-message", value);
    }
    response.extensions_mut().insert(rejection);
    response
}

/// Percent-encodes a `grpc-message` as the gRPC HTTP/2 spec asks: every byte outside
/// printable ASCII, and `%` itself.
fn grpc_percent_encode(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    for b in message.bytes() {
        if (0x20..=0x7e).contains(&b) && b != b'%' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Whether a request is gRPC (`content-type: application/grpc`, `+proto`, `-web`, …).
pub(crate) fn is_grpc(headers: &http::HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|ct| ct.as_bytes().starts_with(b"application/grpc"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_and_codes() {
        assert_eq!(AuthRejection::Missing.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            AuthRejection::Invalid(Scheme::Basic).status(),
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            AuthRejection::Unavailable.status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(AuthRejection::Missing.grpc_code(), 16);
        assert_eq!(AuthRejection::Unavailable.grpc_code(), 14);
    }

    #[test]
    fn grpc_message_is_percent_encoded() {
        assert_eq!(grpc_percent_encode("a b%c\u{e9}"), "a b%25c%C3%A9");
    }

    #[test]
    fn grpc_response_is_trailers_only() {
        let r: Response<String> = grpc_response(AuthRejection::Unavailable);
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()["grpc-status"], "14");
        assert_eq!(r.headers()[header::CONTENT_TYPE], "application/grpc");
        assert!(r.body().is_empty());
        assert_eq!(
            r.extensions().get::<AuthRejection>(),
            Some(&AuthRejection::Unavailable)
        );
    }

    #[test]
    fn grpc_detection() {
        let mut h = http::HeaderMap::new();
        assert!(!is_grpc(&h));
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/grpc+proto"),
        );
        assert!(is_grpc(&h));
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        assert!(!is_grpc(&h));
    }

    #[test]
    fn default_body_is_empty_for_other_bodies() {
        let r: Response<String> = DefaultRejectionResponse.response(&AuthRejection::Missing);
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert!(r.body().is_empty());
    }

    #[cfg(feature = "axum")]
    #[test]
    fn default_body_is_mlflow_text_for_axum() {
        let r: Response<axum_core::body::Body> =
            DefaultRejectionResponse.response(&AuthRejection::Missing);
        assert_eq!(
            r.headers()[header::CONTENT_TYPE],
            "text/plain; charset=utf-8"
        );
    }
}
