use std::{
    fmt,
    sync::Arc,
    task::{Context, Poll},
};

use http::{Request, Response, header::AUTHORIZATION};
use tower_service::Service;
use tracing::{Span, field};

use super::{
    future::{ResponseFuture, Verification},
    layer::AuthLayer,
};
use crate::{
    authenticator::Authenticator,
    authorization::Authorization,
    exempt::Exemptions,
    rejection::{
        AuthRejection, DefaultRejectionResponse, Protocol, RejectionRenderer, RejectionResponse,
        verdict,
    },
};

/// Middleware that authenticates each request with an [`Authenticator`].
///
/// Made by [`AuthLayer`]; see the [module docs](crate::auth).
pub struct Auth<S, A, R> {
    inner: S,
    authenticator: A,
    shared: Arc<Shared<R>>,
}

/// What every clone of an [`Auth`] service shares: the exemptions, and how to reject.
pub(super) struct Shared<R> {
    exemptions: Exemptions,
    renderer: RejectionRenderer<R>,
}

impl<S, A, R> Auth<S, A, R> {
    pub(super) fn from_parts(
        inner: S,
        authenticator: A,
        exemptions: Exemptions,
        renderer: RejectionRenderer<R>,
    ) -> Self {
        Self {
            inner,
            authenticator,
            shared: Arc::new(Shared {
                exemptions,
                renderer,
            }),
        }
    }

    tower_mlflow_core::define_inner_service_accessors!();
}

impl<S, A: Authenticator> Auth<S, A, DefaultRejectionResponse> {
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
        let protocol = Protocol::of(&parts.headers);
        let credentials = self.authenticator.credentials(&parts);
        let mut request = Request::from_parts(parts, body);

        let credentials = match credentials {
            Ok(credentials) => credentials,
            Err(error) => {
                let response = self.shared.reject(error.into(), protocol, &span);
                return ResponseFuture::rejected(response, span);
            }
        };

        // Inner services may log headers; make sure the credential prints as "Sensitive".
        if let Some(value) = request.headers_mut().get_mut(AUTHORIZATION) {
            value.set_sensitive(true);
        }

        // Answered from memory (a cache hit, a static token): no verification future at all.
        if let Some(principal) = self.authenticator.try_accept_now(&credentials) {
            drop(credentials);
            let future = accept(&mut self.inner, request, principal, &span);
            return ResponseFuture::inner(future, span);
        }

        let scheme = credentials.scheme();
        let authenticator = self.authenticator.clone();
        let verification: Verification =
            Box::pin(async move { verdict(authenticator.authenticate(credentials).await, scheme) });

        // The service driven to readiness goes into the future; this one keeps a fresh clone.
        // See https://docs.rs/tower/latest/tower/trait.Service.html#be-careful-when-cloning-inner-services
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        ResponseFuture::verifying(
            verification,
            request,
            inner,
            Arc::clone(&self.shared),
            protocol,
            span,
        )
    }
}

/// Lets an authenticated request in: the principal goes on the span and into the request
/// extensions, then the inner service is called. The one accept path, for both the
/// synchronous shortcut and a finished verification.
pub(super) fn accept<S, B>(
    inner: &mut S,
    mut request: Request<B>,
    principal: Authorization,
    span: &Span,
) -> S::Future
where
    S: Service<Request<B>>,
{
    span.record("principal", principal.subject());
    tracing::debug!(parent: span, "authenticated");
    request.extensions_mut().insert(principal);
    inner.call(request)
}

impl<R> Shared<R> {
    /// Logs a refusal and renders its response.
    pub(super) fn reject<B: Default>(
        &self,
        rejection: AuthRejection,
        protocol: Protocol,
        span: &Span,
    ) -> Response<B>
    where
        R: RejectionResponse<B>,
    {
        tracing::debug!(parent: span, %rejection, "request rejected");
        self.renderer.render(rejection, protocol)
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

impl<R> fmt::Debug for Shared<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared")
            .field("exemptions", &self.exemptions)
            .field("renderer", &self.renderer)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use super::*;
    use crate::credentials::Scheme;

    #[tokio::test]
    async fn accept_hands_the_principal_to_the_inner_service() {
        let mut inner = tower::service_fn(|request: Request<()>| async move {
            Ok::<_, Infallible>(request.extensions().get::<Authorization>().cloned())
        });
        let alice = Authorization::new("alice", Scheme::Basic);
        let seen = accept(&mut inner, Request::new(()), alice.clone(), &Span::none())
            .await
            .unwrap();
        assert_eq!(seen, Some(alice));
    }
}
