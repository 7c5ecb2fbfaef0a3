use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll, ready},
};

use http::Response;
use pin_project_lite::pin_project;

use super::service::PendingLogin;
use crate::rejection::AuthRejection;

pin_project! {
    /// Response future of [`Throttle`](super::Throttle).
    pub struct ResponseFuture<F, B> {
        #[pin]
        kind: Kind<F, B>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F, B> {
        /// The inner service's future, with the token taken for it if any (none for a cache
        /// hit or a request without credentials) until the response says whether the login
        /// failed.
        Inner { #[pin] future: F, pending: Option<PendingLogin> },
        Throttled { response: Option<Response<B>> },
    }
}

impl<F, B> ResponseFuture<F, B> {
    pub(super) fn inner(future: F, pending: Option<PendingLogin>) -> Self {
        Self {
            kind: Kind::Inner { future, pending },
        }
    }

    pub(super) fn throttled(response: Response<B>) -> Self {
        Self {
            kind: Kind::Throttled {
                response: Some(response),
            },
        }
    }
}

impl<F, B, E> Future for ResponseFuture<F, B>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Inner { future, pending } => {
                let result = ready!(future.poll(cx));
                if let Some(pending) = pending.take() {
                    pending.settle(is_failed_login(&result));
                }
                Poll::Ready(result)
            }
            #[allow(clippy::expect_used)]
            KindProj::Throttled { response } => Poll::Ready(Ok(response
                .take()
                .expect("Throttle ResponseFuture polled after completion"))),
        }
    }
}

/// Only wrong credentials count: a backend failure (503) is not the client's, and a request
/// accepted and then refused by a policy (403) is no failed login.
fn is_failed_login<B, E>(result: &Result<Response<B>, E>) -> bool {
    result.as_ref().is_ok_and(|response| {
        matches!(
            response.extensions().get::<AuthRejection>(),
            Some(AuthRejection::Invalid(_))
        )
    })
}

impl<F, B> std::fmt::Debug for ResponseFuture<F, B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
