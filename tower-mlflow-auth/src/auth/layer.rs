use std::fmt;

use tower_layer::Layer;

use super::{handoff::Link, service::Auth};
use crate::{
    authenticator::Authenticator,
    exempt::Exemptions,
    policy::{AllowAll, Policy},
    rejection::{DefaultRejectionResponse, RejectionRenderer},
};

/// Applies [`Auth`] to a service: every request is authenticated by `A`, then allowed or
/// denied by the policy `P` (by default [`AllowAll`]).
///
/// See the [module docs](crate::auth) for the request flow and an example.
pub struct AuthLayer<A, R = DefaultRejectionResponse, P = AllowAll> {
    authenticator: A,
    realm: Box<str>,
    exemptions: Exemptions,
    rejection: R,
    policy: P,
    link: Link,
}

/// The realm sent in `WWW-Authenticate` unless configured: MLflow's own.
const DEFAULT_REALM: &str = "mlflow";

impl<A: Authenticator> AuthLayer<A> {
    /// A layer that authenticates every request with `authenticator`: realm `mlflow`, no
    /// exemptions, empty rejection bodies, every authenticated request allowed.
    #[must_use]
    pub fn new(authenticator: A) -> Self {
        Self {
            authenticator,
            realm: DEFAULT_REALM.into(),
            exemptions: Exemptions::new(),
            rejection: DefaultRejectionResponse,
            policy: AllowAll,
            link: Link::new(),
        }
    }
}

impl<A: Authenticator, R, P> AuthLayer<A, R, P> {
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
    pub fn with_rejection_response<R2>(self, rejection: R2) -> AuthLayer<A, R2, P> {
        AuthLayer {
            authenticator: self.authenticator,
            realm: self.realm,
            exemptions: self.exemptions,
            rejection,
            policy: self.policy,
            link: self.link,
        }
    }

    /// Sets the [`Policy`] that decides, after authentication, whether the principal may make
    /// the request: a denial is a 403 (gRPC 7), a policy failure a 503, and the inner service
    /// is not called. Exempt requests skip it. Replaces the previous policy; combine policies
    /// with [`all_of`](crate::policy::all_of) / [`any_of`](crate::policy::any_of).
    ///
    /// See the [`policy`](crate::policy) module for the combinators and an example.
    pub fn with_policy<P2: Policy>(self, policy: P2) -> AuthLayer<A, R, P2> {
        AuthLayer {
            authenticator: self.authenticator,
            realm: self.realm,
            exemptions: self.exemptions,
            rejection: self.rejection,
            policy,
            link: self.link,
        }
    }
}

impl<S, A, R, P> Layer<S> for AuthLayer<A, R, P>
where
    A: Authenticator,
    R: Clone,
    P: Policy,
{
    type Service = Auth<S, A, R, P>;

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
            self.policy.clone(),
            self.exemptions.clone(),
            renderer,
            self.link,
        )
    }
}

impl<A, R, P> AuthLayer<A, R, P> {
    /// The authenticator, for a throttle built for this layer.
    #[cfg(feature = "throttle")]
    pub(crate) fn authenticator(&self) -> &A {
        &self.authenticator
    }

    /// What ties a throttle built for this layer to it.
    #[cfg(feature = "throttle")]
    pub(crate) fn link(&self) -> Link {
        self.link
    }
}

impl<A: Clone, R: Clone, P: Clone> Clone for AuthLayer<A, R, P> {
    fn clone(&self) -> Self {
        Self {
            authenticator: self.authenticator.clone(),
            realm: self.realm.clone(),
            exemptions: self.exemptions.clone(),
            rejection: self.rejection.clone(),
            policy: self.policy.clone(),
            link: self.link,
        }
    }
}

impl<A, R, P> fmt::Debug for AuthLayer<A, R, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthLayer")
            .field("authenticator", &std::any::type_name::<A>())
            .field("realm", &self.realm)
            .field("exemptions", &self.exemptions)
            .field("rejection", &std::any::type_name::<R>())
            .field("policy", &std::any::type_name::<P>())
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
