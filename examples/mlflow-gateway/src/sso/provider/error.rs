//! [`ProviderError`]: why the issuer gave no usable answer, and [`Unreachable`], an
//! endpoint that gave none.

use std::{error::Error, fmt, sync::Arc};

use http::StatusCode;
use oauth2::{RequestTokenError, basic::BasicErrorResponse};
use tower_mlflow_auth::authenticators::IdTokenError;
use tower_mlflow_core::http::HttpError;

/// Why the issuer gave no usable answer. The text never shows a secret or a token.
#[derive(Clone, Debug)]
pub(crate) enum ProviderError {
    /// The issuer could not be reached, timed out or answered 429/5xx: try again later
    /// (the flow shows a 503 page).
    Unavailable(Arc<Unreachable>),
    /// The token endpoint refused, with this OAuth 2 error code (`invalid_grant`, …).
    Refused {
        /// The `error` of the answer (RFC 6749 §5.2).
        error: String,
    },
    /// The ID token failed a check.
    IdToken(IdTokenError),
    /// The discovery document is unusable: missing, malformed, for another issuer, or with
    /// an endpoint that is not `https`.
    Discovery(String),
    /// The token endpoint's answer to a code has no `id_token`.
    NoIdToken,
    /// The token endpoint's answer is not a token response.
    Response(String),
    /// A setting is unusable ([`Provider::new`](super::Provider::new)).
    Settings(String),
}

impl fmt::Display for ProviderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unavailable(unreachable) => {
                write!(f, "the identity provider is unavailable: {unreachable}")
            }
            Self::Refused { error } => {
                write!(
                    f,
                    "the identity provider refused the token request: {error}"
                )
            }
            Self::IdToken(_) => f.pad("the identity provider's ID token is not acceptable"),
            Self::Discovery(problem) => {
                write!(
                    f,
                    "the identity provider's discovery document is unusable: {problem}"
                )
            }
            Self::NoIdToken => f.pad("the identity provider's token response has no ID token"),
            Self::Response(problem) => {
                write!(f, "the identity provider's answer is unusable: {problem}")
            }
            Self::Settings(problem) => {
                write!(f, "the OpenID Connect settings are unusable: {problem}")
            }
        }
    }
}

impl Error for ProviderError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            // Its text is in this one's already.
            Self::Unavailable(unreachable) => unreachable.source(),
            Self::IdToken(error) => Some(error),
            _ => None,
        }
    }
}

impl From<Unreachable> for ProviderError {
    fn from(unreachable: Unreachable) -> Self {
        Self::Unavailable(Arc::new(unreachable))
    }
}

/// An endpoint of the issuer that gave no usable answer.
#[derive(Debug)]
pub(crate) struct Unreachable {
    endpoint: String,
    failure: Failure,
}

#[derive(Debug)]
pub(super) enum Failure {
    Http(HttpError),
    Status(StatusCode),
}

impl Unreachable {
    pub(super) fn new(endpoint: String, failure: Failure) -> Self {
        Self { endpoint, failure }
    }
}

impl fmt::Display for Unreachable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.failure {
            Failure::Http(_) => write!(f, "no answer from {}", self.endpoint),
            Failure::Status(status) => write!(f, "{} answered {status}", self.endpoint),
        }
    }
}

impl Error for Unreachable {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match &self.failure {
            Failure::Http(error) => Some(error),
            Failure::Status(_) => None,
        }
    }
}

/// The issuer's answer to a token request, classified.
pub(super) fn token_error(
    error: RequestTokenError<Unreachable, BasicErrorResponse>,
) -> ProviderError {
    match error {
        RequestTokenError::ServerResponse(response) => ProviderError::Refused {
            error: response.error().as_ref().to_owned(),
        },
        RequestTokenError::Request(unreachable) => unreachable.into(),
        // The path only: serde's message may quote a value, and values here are tokens.
        RequestTokenError::Parse(error, _body) => ProviderError::Response(format!(
            "the token endpoint's answer has no usable `{}`",
            error.path()
        )),
        RequestTokenError::Other(message) => ProviderError::Response(message),
    }
}
