use std::{fmt, sync::Arc};

use http::{HeaderValue, Response, header};
use tower_layer::Layer;

use super::service::Auth;
use crate::{
    authenticator::Authenticator,
    credentials::Scheme,
    exempt::Exemptions,
    rejection::{AuthRejection, DefaultRejectionResponse, RejectionResponse, grpc_response},
};

/// The realm sent in `WWW-Authenticate` unless configured: MLflow's own.
const DEFAULT_REALM: &str = "mlflow";

/// Applies [`Auth`] to a service: every request is authenticated by `A`.
///
/// See the [module docs](crate::auth) for the request flow and an example.
pub struct AuthLayer<A, R = DefaultRejectionResponse> {
    authenticator: A,
    realm: Box<str>,
    exemptions: Exemptions,
    rejection: R,
}

impl<A: Authenticator> AuthLayer<A> {
    /// A layer that authenticates every request with `authenticator`: realm `mlflow`, no
    /// exemptions, default rejection bodies.
    #[must_use]
    pub fn new(authenticator: A) -> Self {
        Self {
            authenticator,
            realm: DEFAULT_REALM.into(),
            exemptions: Exemptions::new(),
            rejection: DefaultRejectionResponse,
        }
    }
}

impl<A: Authenticator, R> AuthLayer<A, R> {
    /// Sets the realm of the `WWW-Authenticate` challenges (default `mlflow`).
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidRealm`] unless the realm is printable ASCII without `"` or `\`.
    pub fn with_realm(mut self, realm: &str) -> Result<Self, ConfigError> {
        let printable = |b: u8| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\';
        if !realm.bytes().all(printable) {
            return Err(ConfigError::InvalidRealm);
        }
        self.realm = realm.into();
        Ok(self)
    }

    /// Sets the paths that skip authentication (none by default).
    #[must_use]
    pub fn with_exemptions(mut self, exemptions: Exemptions) -> Self {
        self.exemptions = exemptions;
        self
    }

    /// Replaces the hook that builds rejection responses, for custom bodies.
    ///
    /// See [`RejectionResponse`].
    pub fn with_rejection_response<R2>(self, rejection: R2) -> AuthLayer<A, R2> {
        AuthLayer {
            authenticator: self.authenticator,
            realm: self.realm,
            exemptions: self.exemptions,
            rejection,
        }
    }

    fn challenge_values(&self, invalid_token: bool) -> Box<[HeaderValue]> {
        let realm = &self.realm;
        self.authenticator
            .challenges()
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
    }
}

impl<S, A, R> Layer<S> for AuthLayer<A, R>
where
    A: Authenticator,
    R: Clone,
{
    type Service = Auth<S, A, R>;

    fn layer(&self, inner: S) -> Self::Service {
        let shared = Shared {
            exemptions: self.exemptions.clone(),
            challenges: self.challenge_values(false),
            challenges_invalid_token: self.challenge_values(true),
            rejection: self.rejection.clone(),
        };
        Auth::from_parts(inner, self.authenticator.clone(), Arc::new(shared))
    }
}

impl<A: Clone, R: Clone> Clone for AuthLayer<A, R> {
    fn clone(&self) -> Self {
        Self {
            authenticator: self.authenticator.clone(),
            realm: self.realm.clone(),
            exemptions: self.exemptions.clone(),
            rejection: self.rejection.clone(),
        }
    }
}

impl<A, R> fmt::Debug for AuthLayer<A, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthLayer")
            .field("authenticator", &std::any::type_name::<A>())
            .field("realm", &self.realm)
            .field("exemptions", &self.exemptions)
            .field("rejection", &std::any::type_name::<R>())
            .finish()
    }
}

/// Configuration shared by every clone of an [`Auth`] service.
pub(crate) struct Shared<R> {
    pub(crate) exemptions: Exemptions,
    challenges: Box<[HeaderValue]>,
    challenges_invalid_token: Box<[HeaderValue]>,
    rejection: R,
}

impl<R> Shared<R> {
    /// The full response for a rejection: the hook's response plus the protocol headers, or
    /// the trailers-only response for gRPC.
    pub(crate) fn render<B: Default>(&self, rejection: AuthRejection, grpc: bool) -> Response<B>
    where
        R: RejectionResponse<B>,
    {
        if grpc {
            return grpc_response(rejection);
        }
        let mut response = self.rejection.response(&rejection);
        if response.status() == http::StatusCode::UNAUTHORIZED
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
        response.extensions_mut().insert(rejection);
        response
    }
}

impl<R> fmt::Debug for Shared<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared")
            .field("exemptions", &self.exemptions)
            .field("challenges", &self.challenges)
            .finish_non_exhaustive()
    }
}

/// An invalid [`AuthLayer`] setting.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// The realm is not printable ASCII, or contains `"` or `\`.
    InvalidRealm,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidRealm => f.pad("the realm must be printable ASCII without '\"' or '\\'"),
        }
    }
}

impl std::error::Error for ConfigError {}
