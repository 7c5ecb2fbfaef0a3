//! Why a request was refused, and how the refusal is rendered: the last stop of a request
//! through [`AuthLayer`](crate::AuthLayer) (see the [`auth`](crate::auth) module docs).
//!
//! Every refusal is an [`AuthRejection`]: [`CredentialsError`]s convert into one, and so do
//! the authenticator's verdict (`Ok(None)` is 401, `Err` is 503) and the
//! [policy](crate::policy)'s (`Deny` is 403, `Err` is 503). It is rendered as:
//!
//! - **HTTP**: 401 with `WWW-Authenticate` (one header per challenge of the authenticator,
//!   `Basic realm="mlflow"` by default), 403 when the policy denied the request, or 503 when
//!   the credential or policy backend failed. The body comes from a [`RejectionResponse`]
//!   hook: [`DefaultRejectionResponse`] leaves it empty, [`MlflowRejectionResponse`] writes
//!   MLflow's own plain-text messages (`Permission denied` for a 403).
//! - **gRPC** (`content-type` starting with `application/grpc`): a trailers-only response,
//!   HTTP 200 with `grpc-status` 16 (`UNAUTHENTICATED`), 7 (`PERMISSION_DENIED`) or 14
//!   (`UNAVAILABLE`) and a `grpc-message`. The hook is not used, since a trailers-only
//!   response has no body.
//!
//! In both cases the `AuthRejection` is also put into the response extensions, for logging
//! and metrics in outer layers.

use std::fmt;

use http::{HeaderMap, HeaderValue, Response, StatusCode, header};

use crate::{
    authenticator::Challenge,
    authorization::Authorization,
    credentials::{CredentialsError, Malformed, Scheme},
    policy::Decision,
};

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
    /// The principal was authenticated, but the [policy](crate::policy) denied the request
    /// (403).
    Forbidden,
    /// The authenticator's or the policy's backend failed, so the request could not be
    /// checked (503).
    Unavailable,
}

impl AuthRejection {
    /// The HTTP status for this rejection.
    #[must_use]
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::Forbidden => StatusCode::FORBIDDEN,
            Self::Missing | Self::Malformed(_) | Self::Invalid(_) => StatusCode::UNAUTHORIZED,
        }
    }

    /// The gRPC status code: 16 (`UNAUTHENTICATED`), 7 (`PERMISSION_DENIED`) or 14
    /// (`UNAVAILABLE`).
    #[must_use]
    pub fn grpc_code(&self) -> u8 {
        match self {
            Self::Unavailable => 14,
            Self::Forbidden => 7,
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
            Self::Forbidden => MLFLOW_PERMISSION_DENIED,
            Self::Missing | Self::Malformed(_) | Self::Invalid(_) => MLFLOW_UNAUTHENTICATED,
        }
    }

    /// The `grpc-message`. The gRPC spec asks for percent-encoding, but these are printable
    /// ASCII without `%`, so they need none.
    fn grpc_message(&self) -> &'static str {
        match self {
            Self::Unavailable => "authentication backend unavailable",
            Self::Missing => "missing credentials",
            Self::Malformed(_) => "malformed credentials",
            Self::Invalid(_) => "invalid credentials",
            Self::Forbidden => "permission denied",
        }
    }
}

impl fmt::Display for AuthRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Missing => f.pad("missing credentials"),
            Self::Malformed(why) => write!(f, "malformed credentials ({why})"),
            Self::Invalid(scheme) => write!(f, "invalid {scheme} credentials"),
            Self::Forbidden => f.pad("permission denied by the policy"),
            Self::Unavailable => f.pad("authentication backend unavailable"),
        }
    }
}

/// No usable credentials: 401 at once, without asking the authenticator.
impl From<CredentialsError> for AuthRejection {
    fn from(error: CredentialsError) -> Self {
        match error {
            CredentialsError::Missing => Self::Missing,
            CredentialsError::Malformed(why) => Self::Malformed(why),
        }
    }
}

/// The authenticator's answer for credentials of `scheme`: accepted, rejected (401) or a
/// backend failure (503). The failure is logged here, since the client never sees it.
pub(crate) fn verdict<E: fmt::Display>(
    answer: Result<Option<Authorization>, E>,
    scheme: Scheme,
) -> Result<Authorization, AuthRejection> {
    match answer {
        Ok(Some(principal)) => Ok(principal),
        Ok(None) => Err(AuthRejection::Invalid(scheme)),
        Err(error) => {
            tracing::error!(%error, "authenticator failed; answering 503");
            Err(AuthRejection::Unavailable)
        }
    }
}

/// The policy's answer: allowed, denied (403) or a backend failure (503). The failure is
/// logged here, since the client never sees it.
pub(crate) fn ruling<E: fmt::Display>(answer: Result<Decision, E>) -> Result<(), AuthRejection> {
    match answer {
        Ok(Decision::Allow) => Ok(()),
        Ok(Decision::Deny) => Err(AuthRejection::Forbidden),
        Err(error) => {
            tracing::error!(%error, "policy failed; answering 503");
            Err(AuthRejection::Unavailable)
        }
    }
}

/// MLflow's own 403 text (`make_forbidden_response`), byte for byte.
const MLFLOW_PERMISSION_DENIED: &str = "Permission denied";

/// MLflow's own 401 text, so that the MLflow client shows users the same advice.
const MLFLOW_UNAUTHENTICATED: &str = "You are not authenticated. Please see \
    https://www.mlflow.org/docs/latest/auth/index.html#authenticating-to-mlflow on how to \
    authenticate.";

/// Builds the HTTP response for a rejection: the hook for custom bodies.
///
/// The layer adds the protocol headers afterwards: `WWW-Authenticate` on a 401 that has none,
/// and the rejection in the extensions. Two hooks come with the crate,
/// [`DefaultRejectionResponse`] (empty body) and [`MlflowRejectionResponse`] (MLflow's text);
/// closures `Fn(&AuthRejection) -> Response<B>` implement it too:
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

/// The default rejection response: the rejection's status and an empty body.
#[derive(Clone, Copy, Debug, Default)]
pub struct DefaultRejectionResponse;

impl<B: Default> RejectionResponse<B> for DefaultRejectionResponse {
    fn response(&self, rejection: &AuthRejection) -> Response<B> {
        let mut response = Response::new(B::default());
        *response.status_mut() = rejection.status();
        response
    }
}

/// Rejections as MLflow's basic-auth app words them: the rejection's status,
/// `content-type: text/plain; charset=utf-8` and [`AuthRejection::message`] as the body, so
/// that the MLflow client shows users the same advice.
///
/// For any body that converts from a `&'static str`: axum's `Body`, `Full<Bytes>`, `String`.
///
/// ```
/// use axum::{Router, routing::get};
/// use tower_mlflow_auth::{AuthLayer, MlflowRejectionResponse};
/// # let authenticator = |_c| async { Ok::<_, std::convert::Infallible>(None) };
///
/// let app: Router = Router::new()
///     .route("/api/2.0/mlflow/experiments/search", get(|| async { "{}" }))
///     .layer(AuthLayer::new(authenticator).with_rejection_response(MlflowRejectionResponse));
/// # let _ = app;
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct MlflowRejectionResponse;

impl<B: From<&'static str>> RejectionResponse<B> for MlflowRejectionResponse {
    fn response(&self, rejection: &AuthRejection) -> Response<B> {
        let mut response = Response::new(B::from(rejection.message()));
        *response.status_mut() = rejection.status();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        response
    }
}

/// The wire protocol a rejection is rendered for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Protocol {
    Http,
    /// `content-type: application/grpc`, `+proto`, `-web`, …: a trailers-only response.
    Grpc,
}

impl Protocol {
    /// The protocol of a request, from its headers.
    pub(crate) fn of(headers: &HeaderMap) -> Self {
        let grpc = headers
            .get(header::CONTENT_TYPE)
            .is_some_and(|ct| ct.as_bytes().starts_with(b"application/grpc"));
        if grpc { Self::Grpc } else { Self::Http }
    }
}

/// Turns an [`AuthRejection`] into the response: the hook's response plus the challenges, or
/// the trailers-only gRPC response. Built once per layer, shared by every request.
pub(crate) struct RejectionRenderer<R> {
    challenges: Box<[HeaderValue]>,
    /// The same, with `error="invalid_token"` on `Bearer` (RFC 6750 §3.1).
    challenges_invalid_token: Box<[HeaderValue]>,
    hook: R,
}

impl<R> RejectionRenderer<R> {
    /// `realm` must be printable ASCII without `"` or `\`, as `AuthLayer::with_realm` checks.
    pub(crate) fn new(realm: &str, challenges: &[Challenge], hook: R) -> Self {
        let values = |invalid_token: bool| -> Box<[HeaderValue]> {
            challenges
                .iter()
                .filter_map(|challenge| {
                    let scheme = challenge.scheme();
                    let value = if invalid_token && challenge.is_bearer() {
                        format!("{scheme} realm=\"{realm}\", error=\"invalid_token\"")
                    } else {
                        format!("{scheme} realm=\"{realm}\"")
                    };
                    // Cannot fail: the scheme is a token and the realm was validated.
                    HeaderValue::try_from(value).ok()
                })
                .collect()
        };
        Self {
            challenges: values(false),
            challenges_invalid_token: values(true),
            hook,
        }
    }

    /// The full response for `rejection`, with the rejection in its extensions.
    pub(crate) fn render<B: Default>(
        &self,
        rejection: AuthRejection,
        protocol: Protocol,
    ) -> Response<B>
    where
        R: RejectionResponse<B>,
    {
        let mut response = match protocol {
            Protocol::Grpc => grpc_response(rejection),
            Protocol::Http => self.http_response(rejection),
        };
        response.extensions_mut().insert(rejection);
        response
    }

    fn http_response<B>(&self, rejection: AuthRejection) -> Response<B>
    where
        R: RejectionResponse<B>,
    {
        let mut response = self.hook.response(&rejection);
        if response.status() == StatusCode::UNAUTHORIZED
            && !response.headers().contains_key(header::WWW_AUTHENTICATE)
        {
            let challenges = if rejection == AuthRejection::Invalid(Scheme::Bearer) {
                &self.challenges_invalid_token
            } else {
                &self.challenges
            };
            for value in challenges.iter() {
                response
                    .headers_mut()
                    .append(header::WWW_AUTHENTICATE, value.clone());
            }
        }
        response
    }
}

impl<R> fmt::Debug for RejectionRenderer<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RejectionRenderer")
            .field("challenges", &self.challenges)
            .field("hook", &std::any::type_name::<R>())
            .finish_non_exhaustive()
    }
}

/// The trailers-only gRPC response for a rejection: HTTP 200, the status in the headers.
fn grpc_response<B: Default>(rejection: AuthRejection) -> Response<B> {
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
    headers.insert(
        "grpc-message",
        HeaderValue::from_static(rejection.grpc_message()),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn renderer() -> RejectionRenderer<DefaultRejectionResponse> {
        RejectionRenderer::new(
            "mlflow",
            &[Challenge::BASIC, Challenge::BEARER],
            DefaultRejectionResponse,
        )
    }

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
        assert_eq!(AuthRejection::Forbidden.status(), StatusCode::FORBIDDEN);
        assert_eq!(AuthRejection::Forbidden.grpc_code(), 7);
    }

    #[test]
    fn ruling_maps_allow_deny_and_failure() {
        assert_eq!(ruling::<fmt::Error>(Ok(Decision::Allow)), Ok(()));
        assert_eq!(
            ruling::<fmt::Error>(Ok(Decision::Deny)),
            Err(AuthRejection::Forbidden)
        );
        assert_eq!(ruling(Err(fmt::Error)), Err(AuthRejection::Unavailable));
    }

    #[test]
    fn credentials_errors_become_401s() {
        assert_eq!(
            AuthRejection::from(CredentialsError::Missing),
            AuthRejection::Missing
        );
        let malformed = AuthRejection::from(CredentialsError::Malformed(Malformed::Repeated));
        assert_eq!(malformed, AuthRejection::Malformed(Malformed::Repeated));
        assert_eq!(malformed.status(), StatusCode::UNAUTHORIZED);
    }

    #[test]
    fn verdict_maps_accept_reject_and_failure() {
        let alice = Authorization::new("alice", Scheme::Basic);
        assert_eq!(
            verdict::<fmt::Error>(Ok(Some(alice.clone())), Scheme::Basic),
            Ok(alice)
        );
        assert_eq!(
            verdict::<fmt::Error>(Ok(None), Scheme::Bearer),
            Err(AuthRejection::Invalid(Scheme::Bearer))
        );
        assert_eq!(
            verdict(Err(fmt::Error), Scheme::Basic),
            Err(AuthRejection::Unavailable)
        );
    }

    #[test]
    fn grpc_messages_need_no_percent_encoding() {
        let all = [
            AuthRejection::Missing,
            AuthRejection::Malformed(Malformed::Empty),
            AuthRejection::Invalid(Scheme::Basic),
            AuthRejection::Forbidden,
            AuthRejection::Unavailable,
        ];
        for rejection in all {
            let message = rejection.grpc_message();
            assert!(
                message
                    .bytes()
                    .all(|b| (0x20..=0x7e).contains(&b) && b != b'%'),
                "{message}"
            );
            let r: Response<String> = renderer().render(rejection, Protocol::Grpc);
            assert_eq!(r.headers()["grpc-message"], message);
        }
    }

    #[test]
    fn grpc_response_is_trailers_only() {
        let r: Response<String> = renderer().render(AuthRejection::Unavailable, Protocol::Grpc);
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
        assert_eq!(Protocol::of(&h), Protocol::Http);
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/grpc+proto"),
        );
        assert_eq!(Protocol::of(&h), Protocol::Grpc);
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        assert_eq!(Protocol::of(&h), Protocol::Http);
    }

    #[test]
    fn http_401_gets_the_challenges_and_the_rejection() {
        let r: Response<String> = renderer().render(AuthRejection::Missing, Protocol::Http);
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        let challenges: Vec<_> = r
            .headers()
            .get_all(header::WWW_AUTHENTICATE)
            .iter()
            .collect();
        assert_eq!(
            challenges,
            [r#"Basic realm="mlflow""#, r#"Bearer realm="mlflow""#]
        );
        assert_eq!(
            r.extensions().get::<AuthRejection>(),
            Some(&AuthRejection::Missing)
        );

        let r: Response<String> =
            renderer().render(AuthRejection::Invalid(Scheme::Bearer), Protocol::Http);
        let challenges: Vec<_> = r
            .headers()
            .get_all(header::WWW_AUTHENTICATE)
            .iter()
            .collect();
        assert_eq!(
            challenges,
            [
                r#"Basic realm="mlflow""#,
                r#"Bearer realm="mlflow", error="invalid_token""#
            ]
        );

        let r: Response<String> = renderer().render(AuthRejection::Unavailable, Protocol::Http);
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(!r.headers().contains_key(header::WWW_AUTHENTICATE));

        let r: Response<String> = renderer().render(AuthRejection::Forbidden, Protocol::Http);
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        assert!(!r.headers().contains_key(header::WWW_AUTHENTICATE));
        assert_eq!(
            r.extensions().get::<AuthRejection>(),
            Some(&AuthRejection::Forbidden)
        );
    }

    #[test]
    fn grpc_403_is_permission_denied() {
        let r: Response<String> = renderer().render(AuthRejection::Forbidden, Protocol::Grpc);
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()["grpc-status"], "7");
        assert_eq!(r.headers()["grpc-message"], "permission denied");
        assert!(r.body().is_empty());
    }

    #[test]
    fn default_body_is_empty_for_other_bodies() {
        let r: Response<String> = DefaultRejectionResponse.response(&AuthRejection::Missing);
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert!(r.body().is_empty());
    }

    #[test]
    fn mlflow_hook_writes_mlflow_text() {
        let r: Response<axum::body::Body> =
            MlflowRejectionResponse.response(&AuthRejection::Missing);
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            r.headers()[header::CONTENT_TYPE],
            "text/plain; charset=utf-8"
        );

        let r: Response<String> = MlflowRejectionResponse.response(&AuthRejection::Unavailable);
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(r.body(), AuthRejection::Unavailable.message());
        assert!(r.body().starts_with("The authentication service"));
        let r: Response<String> =
            MlflowRejectionResponse.response(&AuthRejection::Invalid(Scheme::Basic));
        assert!(r.body().starts_with("You are not authenticated."));
    }

    #[test]
    fn mlflow_hook_writes_mlflows_exact_403() {
        let r: Response<String> = MlflowRejectionResponse.response(&AuthRejection::Forbidden);
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        assert_eq!(r.body(), "Permission denied");
        assert_eq!(
            r.headers()[header::CONTENT_TYPE],
            "text/plain; charset=utf-8"
        );
        assert_eq!(r.headers().len(), 1, "no header but the content type");
    }
}
