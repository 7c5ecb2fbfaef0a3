use std::{
    fmt,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, ready},
};

use http::{Request, Response, request::Parts};
use pin_project_lite::pin_project;
use tower_service::Service;
use tracing::Span;

use super::service::{Shared, accept};
use crate::{
    authorization::Authorization,
    rejection::{AuthRejection, Protocol, RejectionResponse},
};

/// The authenticator's and the policy's [verdicts](crate::rejection), already logged: the
/// accepted principal with the request head the policy saw, or the rejection. Boxed because
/// `Authenticator::authenticate` and `Policy::decide` return unnameable futures; it owns the
/// head because a policy borrows it while it decides.
pub(super) type Verification =
    Pin<Box<dyn Future<Output = Result<(Authorization, Parts), AuthRejection>> + Send>>;

pin_project! {
    /// Response future of [`Auth`](super::Auth).
    pub struct ResponseFuture<S, ReqBody, R>
    where
        S: Service<Request<ReqBody>>,
    {
        #[pin]
        state: State<S, ReqBody, R>,
        span: Span,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, ReqBody, R>
    where
        S: Service<Request<ReqBody>>,
    {
        Verifying {
            verification: Verification,
            body: Option<ReqBody>,
            inner: Option<S>,
            shared: Arc<Shared<R>>,
            protocol: Protocol,
        },
        Inner {
            #[pin]
            future: S::Future,
        },
        Rejected {
            response: Option<S::Response>,
        },
    }
}

impl<S, ReqBody, R> ResponseFuture<S, ReqBody, R>
where
    S: Service<Request<ReqBody>>,
{
    pub(super) fn inner(future: S::Future, span: Span) -> Self {
        Self {
            state: State::Inner { future },
            span,
        }
    }

    pub(super) fn rejected(response: S::Response, span: Span) -> Self {
        Self {
            state: State::Rejected {
                response: Some(response),
            },
            span,
        }
    }

    pub(super) fn verifying(
        verification: Verification,
        body: ReqBody,
        inner: S,
        shared: Arc<Shared<R>>,
        protocol: Protocol,
        span: Span,
    ) -> Self {
        Self {
            state: State::Verifying {
                verification,
                body: Some(body),
                inner: Some(inner),
                shared,
                protocol,
            },
            span,
        }
    }
}

impl<S, ReqBody, R, ResBody> Future for ResponseFuture<S, ReqBody, R>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    R: RejectionResponse<ResBody>,
    ResBody: Default,
{
    type Output = Result<Response<ResBody>, S::Error>;

    // A future polled after completion may panic (`Future::poll` contract), as in tower-http.
    #[allow(clippy::expect_used)]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let _entered = this.span.enter();
        loop {
            match this.state.as_mut().project() {
                StateProj::Verifying {
                    verification,
                    body,
                    inner,
                    shared,
                    protocol,
                } => match ready!(verification.as_mut().poll(cx)) {
                    Ok((principal, parts)) => {
                        let body = body.take().expect("future polled after completion");
                        let request = Request::from_parts(parts, body);
                        let mut inner = inner.take().expect("future polled after completion");
                        let future = accept(&mut inner, request, principal, this.span);
                        this.state.set(State::Inner { future });
                    }
                    Err(rejection) => {
                        let response = shared.reject(rejection, *protocol, this.span);
                        this.state.set(State::Rejected {
                            response: Some(response),
                        });
                    }
                },
                StateProj::Inner { future } => return future.poll(cx),
                StateProj::Rejected { response } => {
                    return Poll::Ready(Ok(response
                        .take()
                        .expect("future polled after completion")));
                }
            }
        }
    }
}

impl<S, ReqBody, R> fmt::Debug for ResponseFuture<S, ReqBody, R>
where
    S: Service<Request<ReqBody>>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
