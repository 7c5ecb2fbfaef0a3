use std::task::{Context, Poll};

use http::Request;
use tower_layer::Layer;
use tower_service::Service;

use super::service::PendingLogin;

/// Gives a throttled client its token back as soon as `AuthLayer` accepts its request,
/// instead of when the response comes back: install it *inside* the
/// [`AuthLayer`](crate::AuthLayer), under a [`ThrottleLayer`](super::ThrottleLayer).
///
/// Without it a token is given back when the response head arrives, so a client with many
/// slow requests in flight (artifact uploads with a bearer token, which no cache answers)
/// could run out of tokens without a single failure. It costs one extension lookup per
/// authenticated request; see the [module docs](crate::throttle).
#[derive(Clone, Copy, Debug, Default)]
pub struct ThrottleReleaseLayer;

impl ThrottleReleaseLayer {
    /// The layer.
    #[must_use]
    pub fn new() -> Self {
        Self
    }
}

impl<S> Layer<S> for ThrottleReleaseLayer {
    type Service = ThrottleRelease<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ThrottleRelease { inner }
    }
}

/// Made by [`ThrottleReleaseLayer`]: gives back the token of every request it sees.
#[derive(Clone, Debug)]
pub struct ThrottleRelease<S> {
    inner: S,
}

impl<S> ThrottleRelease<S> {
    tower_mlflow_core::define_inner_service_accessors!();
}

impl<S, B> Service<Request<B>> for ThrottleRelease<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        // Inside `AuthLayer`, every request here was accepted (or is exempt): no failure.
        if let Some(pending) = request.extensions_mut().remove::<PendingLogin>() {
            pending.settle(false);
        }
        self.inner.call(request)
    }
}
