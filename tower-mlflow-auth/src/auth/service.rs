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
    handoff::Link,
    layer::AuthLayer,
};
use crate::{
    authenticator::Authenticator,
    authorization::Authorization,
    exempt::Exemptions,
    policy::{self, AllowAll, Decision, Policy},
    rejection::{
        AuthRejection, DefaultRejectionResponse, Protocol, RejectionRenderer, RejectionResponse,
        ruling, verdict,
    },
};

/// Middleware that authenticates each request with an [`Authenticator`] and lets the
/// [`Policy`] decide about it.
///
/// Made by [`AuthLayer`]; see the [module docs](crate::auth).
pub struct Auth<S, A, R, P = AllowAll> {
    inner: S,
    core: Arc<Core<A, P, R>>,
}

/// What every clone of an [`Auth`] service shares, behind one reference count: a router such
/// as axum's clones the service for each request.
struct Core<A, P, R> {
    authenticator: A,
    policy: P,
    shared: Arc<Shared<R>>,
    /// Whose handoffs to trust: those of a throttle built for this service's layer.
    #[cfg_attr(not(feature = "throttle"), allow(dead_code))]
    link: Link,
}

/// What every clone of an [`Auth`] service shares: the exemptions, and how to reject.
pub(super) struct Shared<R> {
    exemptions: Exemptions,
    renderer: RejectionRenderer<R>,
}

impl<S, A, R, P> Auth<S, A, R, P> {
    pub(super) fn from_parts(
        inner: S,
        authenticator: A,
        policy: P,
        exemptions: Exemptions,
        renderer: RejectionRenderer<R>,
        link: Link,
    ) -> Self {
        Self {
            inner,
            core: Arc::new(Core {
                authenticator,
                policy,
                shared: Arc::new(Shared {
                    exemptions,
                    renderer,
                }),
                link,
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

impl<S, A, R, P, ReqBody, ResBody> Service<Request<ReqBody>> for Auth<S, A, R, P>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
    A: Authenticator,
    R: RejectionResponse<ResBody>,
    P: Policy,
    ResBody: Default,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S, ReqBody, R>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        // DEBUG, like tower-http's TraceLayer: a span a request costs every INFO log a
        // subscriber's allocation and formatting, and an access log names the principal anyway.
        let span = tracing::debug_span!("auth", principal = field::Empty);
        // A principal can only come from this layer: never trust one already present.
        request.extensions_mut().remove::<Authorization>();
        let core = &*self.core;
        // Taken out of every request, so that it never reaches the inner service; trusted only
        // from this layer's own throttle (see `handoff`).
        #[cfg(feature = "throttle")]
        let handed_over = request
            .extensions_mut()
            .remove::<super::handoff::Handoff>()
            .filter(|handoff| handoff.link == core.link)
            .map(|handoff| handoff.principal);
        #[cfg(not(feature = "throttle"))]
        let handed_over: Option<Authorization> = None;

        if core
            .shared
            .exemptions
            .is_exempt(request.method(), request.uri().path())
        {
            tracing::trace!(parent: &span, "exempt path; not authenticating");
            return ResponseFuture::inner(self.inner.call(request), span);
        }

        let (mut parts, body) = request.into_parts();
        // Inner services may log headers; make sure the credential prints as "Sensitive".
        if let Some(value) = parts.headers.get_mut(AUTHORIZATION) {
            value.set_sensitive(true);
        }
        let principal = match handed_over {
            // The throttle in front asked the same authenticator about these credentials.
            Some(principal) => principal,
            None => {
                let credentials = match core.authenticator.credentials(&parts) {
                    Ok(credentials) => credentials,
                    Err(error) => {
                        let protocol = Protocol::of(&parts.headers);
                        let response = core.shared.reject(error.into(), protocol, &span);
                        return ResponseFuture::rejected(response, span);
                    }
                };
                match core.authenticator.try_accept_now(&credentials) {
                    // Answered from memory (a cache hit, a static token).
                    Some(principal) => principal,
                    None => {
                        // The slow path: only now is the secret copied, for the future to own.
                        let scheme = credentials.scheme();
                        let owned = credentials.to_credentials();
                        drop(credentials);
                        let credentials = owned;
                        let authenticator = core.authenticator.clone();
                        let policy = core.policy.clone();
                        let protocol = Protocol::of(&parts.headers);
                        let recorder = span.clone();
                        let verification = Box::pin(async move {
                            let answer = authenticator.authenticate(credentials).await;
                            let principal = verdict(answer, scheme)?;
                            recorder.record("principal", principal.subject());
                            ruling(policy::decide(&policy, &principal, &parts).await)?;
                            Ok((principal, parts))
                        });
                        return self.verifying(verification, body, protocol, span);
                    }
                }
            }
        };

        // Accepted at once: when the policy decides at once too, no future at all. Only a
        // rejection needs the protocol: the synchronous accept never looks it up.
        span.record("principal", principal.subject());
        match core.policy.try_decide_now(&principal, &parts) {
            Some(Decision::Allow) => {
                let request = Request::from_parts(parts, body);
                let future = accept(&mut self.inner, request, principal, &span);
                ResponseFuture::inner(future, span)
            }
            Some(Decision::Deny) => {
                let protocol = Protocol::of(&parts.headers);
                let response = core
                    .shared
                    .reject(AuthRejection::Forbidden, protocol, &span);
                ResponseFuture::rejected(response, span)
            }
            None => {
                let protocol = Protocol::of(&parts.headers);
                let policy = core.policy.clone();
                let verification = Box::pin(async move {
                    ruling(policy.decide(&principal, &parts).await)?;
                    Ok((principal, parts))
                });
                self.verifying(verification, body, protocol, span)
            }
        }
    }
}

impl<S, A, R, P> Auth<S, A, R, P> {
    /// The future of a request whose verification (a check, a policy, or both) runs first.
    fn verifying<ReqBody>(
        &mut self,
        verification: Verification,
        body: ReqBody,
        protocol: Protocol,
        span: Span,
    ) -> ResponseFuture<S, ReqBody, R>
    where
        S: Service<Request<ReqBody>> + Clone,
    {
        // The service driven to readiness goes into the future; this one keeps a fresh clone.
        // See https://docs.rs/tower/latest/tower/trait.Service.html#be-careful-when-cloning-inner-services
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        ResponseFuture::verifying(
            verification,
            body,
            inner,
            Arc::clone(&self.core.shared),
            protocol,
            span,
        )
    }
}

/// Lets an authenticated, allowed request in: the principal goes into the request
/// extensions, then the inner service is called. The one accept path, for both the
/// synchronous shortcut and a finished verification; each records the principal on the span
/// once, as soon as it is known (a verification before its policy decides).
pub(super) fn accept<S, B>(
    inner: &mut S,
    mut request: Request<B>,
    principal: Authorization,
    span: &Span,
) -> S::Future
where
    S: Service<Request<B>>,
{
    tracing::debug!(parent: span, "authenticated and allowed");
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

impl<S: Clone, A, R, P> Clone for Auth<S, A, R, P> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            core: Arc::clone(&self.core),
        }
    }
}

impl<S: fmt::Debug, A, R, P> fmt::Debug for Auth<S, A, R, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Auth")
            .field("inner", &self.inner)
            .field("authenticator", &std::any::type_name::<A>())
            .field("policy", &std::any::type_name::<P>())
            .field("shared", &self.core.shared)
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
