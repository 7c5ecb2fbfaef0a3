//! [`RecordPrincipalLayer`]: hands the accepted principal to the access log.

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
};

use http::{Request, Response};
use pin_project_lite::pin_project;
use tower::Layer;
use tower_mlflow_auth::Authorization;
use tower_service::Service;

/// Copies the accepted principal from the request into the response extensions, for
/// [`AccessLog`](super::AccessLog); see the [module docs](super). Sits inside the `AuthLayer`.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct RecordPrincipalLayer;

impl<S> Layer<S> for RecordPrincipalLayer {
    type Service = RecordPrincipal<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RecordPrincipal { inner }
    }
}

/// The service of [`RecordPrincipalLayer`].
#[derive(Clone, Debug)]
pub(crate) struct RecordPrincipal<S> {
    inner: S,
}

impl<S, B, ResBody> Service<Request<B>> for RecordPrincipal<S>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = RecordPrincipalFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        // An Arc clone: the principal itself is not copied.
        let principal = request.extensions().get::<Authorization>().cloned();
        RecordPrincipalFuture {
            inner: self.inner.call(request),
            principal,
        }
    }
}

pin_project! {
    /// The future of [`RecordPrincipal`].
    pub(crate) struct RecordPrincipalFuture<F> {
        #[pin]
        inner: F,
        principal: Option<Authorization>,
    }
}

impl<F, ResBody, E> Future for RecordPrincipalFuture<F>
where
    F: Future<Output = Result<Response<ResBody>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut answer = std::task::ready!(this.inner.poll(cx));
        if let (Ok(response), Some(principal)) = (&mut answer, this.principal.take()) {
            response.extensions_mut().insert(principal);
        }
        Poll::Ready(answer)
    }
}
