use std::fmt;

use tower_layer::Layer;

use super::service::Auth;
use crate::{
    authenticator::Authenticator,
    exempt::Exemptions,
    rejection::{DefaultRejectionResponse, RejectionRenderer},
};

/// Applies [`Auth`] to a service: every request is authenticated by `A`.
///
/// See the [module docs](crate::auth) for the request flow and an example.
pub struct AuthLayer<A, R = DefaultRejectionResponse> {
    authenticator: A,
    realm: Box<str>,
    exemptions: Exemptions,
    rejection: R,
}

/// The realm sent in `WWW-Authenticate` unless configured: MLflow's own.
const DEFAULT_REALM: &str = "mlflow";

impl<A: Authenticator> AuthLayer<A> {
    /// A layer that authenticates every request with `authenticator`: realm `mlflow`, no
    /// exemptions, empty rejection bodies.
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
    /// [`InvalidRealm`] unless the realm is printable ASCII without `"` or `\`.
    pub fn with_realm(mut self, realm: &str) -> Result<Self, InvalidRealm> {
        let printable = |b: u8| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\';
        if !realm.bytes().all(printable) {
            return Err(InvalidRealm(realm.into()));
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

    /// Replaces the hook that builds rejection responses, for custom bodies: for example
    /// [`MlflowRejectionResponse`](crate::MlflowRejectionResponse) for MLflow's own texts.
    ///
    /// See [`RejectionResponse`](crate::RejectionResponse).
    pub fn with_rejection_response<R2>(self, rejection: R2) -> AuthLayer<A, R2> {
        AuthLayer {
            authenticator: self.authenticator,
            realm: self.realm,
            exemptions: self.exemptions,
            rejection,
        }
    }
}

impl<S, A, R> Layer<S> for AuthLayer<A, R>
where
    A: Authenticator,
    R: Clone,
{
    type Service = Auth<S, A, R>;

    fn layer(&self, inner: S) -> Self::Service {
        // Challenge headers are formatted once here, not per rejected request.
        let renderer = RejectionRenderer::new(
            &self.realm,
            self.authenticator.challenges(),
            self.rejection.clone(),
        );
        Auth::from_parts(
            inner,
            self.authenticator.clone(),
            self.exemptions.clone(),
            renderer,
        )
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

/// A realm that [`AuthLayer::with_realm`] refuses: not printable ASCII, or containing `"` or
/// `\`, so it cannot be quoted in `WWW-Authenticate`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvalidRealm(Box<str>);

impl fmt::Display for InvalidRealm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "realm {:?} is not printable ASCII without '\"' or '\\'",
            self.0
        )
    }
}

impl std::error::Error for InvalidRealm {}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use super::*;
    use crate::{authorization::Authorization, credentials::Credentials};

    fn layer() -> AuthLayer<impl Authenticator> {
        AuthLayer::new(|_: Credentials| async { Ok::<Option<Authorization>, Infallible>(None) })
    }

    #[test]
    fn invalid_realm_names_the_realm() {
        let error = layer().with_realm("a\"b").unwrap_err();
        assert_eq!(
            error.to_string(),
            r#"realm "a\"b" is not printable ASCII without '"' or '\'"#
        );
        assert!(layer().with_realm("tracking server").is_ok());
    }
}
