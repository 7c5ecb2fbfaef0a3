use std::{
    fmt,
    sync::Arc,
    task::{Context, Poll},
};

use http::{Request, Response, header::AUTHORIZATION};
use tower_service::Service;
use tracing::field;

use super::{
    future::{ResponseFuture, Verification},
    layer::{AuthLayer, Shared},
};
use crate::{
    authenticator::Authenticator,
    authorization::Authorization,
    credentials::CredentialsError,
    rejection::{AuthRejection, RejectionResponse, is_grpc},
};

/// Middleware that authenticates each request with an [`Authenticator`].
///
/// Made by [`AuthLayer`]; see the [module docs](crate::auth).
pub struct Auth<S, A, R> {
    inner: S,
    authenticator: A,
    shared: Arc<Shared<R>>,
}

impl<S, A, R> Auth<S, A, R> {
    pub(crate) fn from_parts(inner: S, authenticator: A, shared: Arc<Shared<R>>) -> Self {
        Self {
            inner,
            authenticator,
            shared,
        }
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Consumes the middleware, returning the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, A: Authenticator> Auth<S, A, crate::rejection::DefaultRejectionResponse> {
    /// A layer that wraps services in `Auth`; the same as [`AuthLayer::new`].
    pub fn layer(authenticator: A) -> AuthLayer<A> {
        AuthLayer::new(authenticator)
    }
}

impl<S, A, R, ReqBody, ResBody> Service<Request<ReqBody>> for Auth<S, A, R>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
    A: Authenticator,
    R: RejectionResponse<ResBody>,
    ResBody: Default,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S, ReqBody, R>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        let span = tracing::info_span!("auth", principal = field::Empty);
        // A principal can only come from this layer: never trust one already present.
        request.extensions_mut().remove::<Authorization>();

        if self
            .shared
            .exemptions
            .is_exempt(request.method(), request.uri().path())
        {
            tracing::trace!(parent: &span, "exempt path; not authenticating");
            return ResponseFuture::inner(self.inner.call(request), span);
        }

        let (parts, body) = request.into_parts();
        let grpc = is_grpc(&parts.headers);
        let credentials = self.authenticator.credentials(&parts);
        let mut request = Request::from_parts(parts, body);

        let credentials = match credentials {
            Ok(credentials) => credentials,
            Err(error) => {
                let rejection = match error {
                    CredentialsError::Missing => AuthRejection::Missing,
                    CredentialsError::Malformed(why) => AuthRejection::Malformed(why),
                };
                tracing::debug!(parent: &span, %rejection, "request rejected");
                return ResponseFuture::rejected(self.shared.render(rejection, grpc), span);
            }
        };

        // Inner services may log headers; make sure the credential prints as "Sensitive".
        if let Some(value) = request.headers_mut().get_mut(AUTHORIZATION) {
            value.set_sensitive(true);
        }

        // Answered from memory (a cache hit, a static token): no verification future at all.
        if let Some(principal) = self.authenticator.try_accept_now(&credentials) {
            drop(credentials);
            span.record("principal", principal.subject());
            tracing::debug!(parent: &span, "authenticated");
            request.extensions_mut().insert(principal);
            return ResponseFuture::inner(self.inner.call(request), span);
        }

        let scheme = credentials.scheme();
        let authenticator = self.authenticator.clone();
        let verification: Verification = Box::pin(async move {
            match authenticator.authenticate(credentials).await {
                Ok(Some(principal)) => Ok(principal),
                Ok(None) => Err(AuthRejection::Invalid(scheme)),
                Err(error) => {
                    tracing::error!(%error, "authenticator failed; answering 503");
                    Err(AuthRejection::Unavailable)
                }
            }
        });

        // The service driven to readiness goes into the future; this one keeps a fresh clone.
        // See https://docs.rs/tower/latest/tower/trait.Service.html#be-careful-when-cloning-inner-services
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        ResponseFuture::verifying(
            verification,
            request,
            inner,
            Arc::clone(&self.shared),
            grpc,
            span,
        )
    }
}

impl<S: Clone, A: Clone, R> Clone for Auth<S, A, R> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            authenticator: self.authenticator.clone(),
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<S: fmt::Debug, A, R> fmt::Debug for Auth<S, A, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Auth")
            .field("inner", &self.inner)
            .field("authenticator", &std::any::type_name::<A>())
            .field("shared", &self.shared)
            .finish()
    }
}
