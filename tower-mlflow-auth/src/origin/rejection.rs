//! Why a request was refused, as a value in the 403 response's extensions.

use std::fmt;

use http::{HeaderValue, Response, StatusCode, header};

/// A request refused by [`OriginCheck`](super::OriginCheck): put into the extensions of the
/// 403 response, like [`AuthRejection`](crate::AuthRejection) for `AuthLayer`.
///
/// ```
/// use tower_mlflow_auth::{OriginRejection, OriginRejectionKind};
///
/// fn why(response: &http::Response<String>) -> Option<OriginRejectionKind> {
///     response.extensions().get::<OriginRejection>().map(OriginRejection::kind)
/// }
/// # let _ = why;
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OriginRejection {
    kind: OriginRejectionKind,
}

/// What was wrong with a refused request; see [`OriginRejection::kind`].
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OriginRejectionKind {
    /// `Origin` names a site that is not one of the allowed origins.
    ForeignOrigin,
    /// `Origin: null`: a sandboxed frame, a `file:` page, a cross-site redirect.
    NullOrigin,
    /// `Origin` is not an origin, or there are several.
    MalformedOrigin,
    /// Without `Origin`, `Referer` names a site that is not one of the allowed origins.
    ForeignReferer,
    /// Without `Origin`, `Referer` is not an absolute `http(s)` URL, or there are several.
    MalformedReferer,
    /// Without `Origin` and `Referer`, `Sec-Fetch-Site` says `cross-site` or `same-site`.
    CrossSite,
}

impl OriginRejection {
    pub(super) fn new(kind: OriginRejectionKind) -> Self {
        Self { kind }
    }

    /// What was wrong.
    pub fn kind(&self) -> OriginRejectionKind {
        self.kind
    }

    /// Always `403 Forbidden`.
    pub fn status(&self) -> StatusCode {
        StatusCode::FORBIDDEN
    }

    /// The text of the response body.
    pub fn message(&self) -> &'static str {
        "Cross-origin request refused: this request changes state, carries browser credentials \
         and comes from a site that is not this server's public URL.\n"
    }

    /// The 403 response: `text/plain`, [`message`](Self::message) as the body, `self` in the
    /// extensions.
    pub(super) fn into_response<B: From<&'static str>>(self) -> Response<B> {
        let mut response = Response::new(B::from(self.message()));
        *response.status_mut() = self.status();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        response.extensions_mut().insert(self);
        response
    }
}

impl fmt::Display for OriginRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.kind {
            OriginRejectionKind::ForeignOrigin => "the Origin header names a foreign site",
            OriginRejectionKind::NullOrigin => "the Origin header is `null`",
            OriginRejectionKind::MalformedOrigin => "the Origin header is malformed",
            OriginRejectionKind::ForeignReferer => "the Referer header names a foreign site",
            OriginRejectionKind::MalformedReferer => "the Referer header is malformed",
            OriginRejectionKind::CrossSite => "Sec-Fetch-Site says the request is cross-site",
        })
    }
}

impl std::error::Error for OriginRejection {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_response_is_a_403_with_text_and_the_reason() {
        let response: Response<String> =
            OriginRejection::new(OriginRejectionKind::NullOrigin).into_response();
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            "text/plain; charset=utf-8"
        );
        assert!(response.body().starts_with("Cross-origin request refused"));
        let rejection = response.extensions().get::<OriginRejection>().unwrap();
        assert_eq!(rejection.kind(), OriginRejectionKind::NullOrigin);
        assert_eq!(rejection.to_string(), "the Origin header is `null`");
    }
}
