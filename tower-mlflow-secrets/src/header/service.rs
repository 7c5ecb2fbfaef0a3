use std::{
    fmt,
    sync::Arc,
    task::{Context, Poll},
};

use http::{Request, Response};
use tower_mlflow_core::BoxError;
use tower_service::Service;

use super::{
    DisallowedHost, SecretHeaderError,
    future::{Replay, ResponseFuture},
    layer::Shared,
    replay::{CloneRequest, NoReplay},
};
use crate::cache::SecretSnapshot;

/// Middleware that adds the cached secret as a header to requests for allowed origins.
/// Built by [`SecretHeaderLayer`](super::SecretHeaderLayer); `R` copies requests for the
/// replay after a `401` (see [`CloneRequest`]).
pub struct SecretHeader<S, R = NoReplay> {
    inner: S,
    shared: Arc<Shared>,
    replay: R,
}

impl<S, R> SecretHeader<S, R> {
    pub(crate) fn new(inner: S, shared: Arc<Shared>, replay: R) -> Self {
        Self {
            inner,
            shared,
            replay,
        }
    }

    tower_mlflow_core::define_inner_service_accessors!();
}

impl<S: Clone, R: Clone> Clone for SecretHeader<S, R> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            shared: Arc::clone(&self.shared),
            replay: self.replay.clone(),
        }
    }
}

impl<S: fmt::Debug, R> fmt::Debug for SecretHeader<S, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretHeader")
            .field("inner", &self.inner)
            .field("layer", &self.shared)
            .finish_non_exhaustive()
    }
}

impl<S, B, ResBody, R> Service<Request<B>> for SecretHeader<S, R>
where
    S: Service<Request<B>, Response = Response<ResBody>> + Clone,
    S::Error: Into<BoxError>,
    R: CloneRequest<B>,
{
    type Response = Response<ResBody>;
    type Error = SecretHeaderError;
    type Future = ResponseFuture<S, B>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner
            .poll_ready(cx)
            .map_err(|e| SecretHeaderError::Inner(e.into()))
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        let shared = Arc::clone(&self.shared);
        let origin = shared.origin_of(request.uri());
        let allowed = origin
            .as_ref()
            .is_some_and(|origin| shared.allowlist.allows_origin(origin));
        if !allowed {
            // Whoever set this header, it must not reach an origin the secret is not for.
            request.headers_mut().remove(shared.header_name());
            let origin = origin.map_or_else(|| "(none)".to_owned(), |o| o.to_string());
            return match shared.disallowed {
                DisallowedHost::Fail => {
                    tracing::debug!(%origin, "origin not on the allowlist; request refused");
                    ResponseFuture::failed(SecretHeaderError::NotAllowed { origin }, shared)
                }
                DisallowedHost::SendWithoutSecret => {
                    tracing::debug!(%origin, "origin not on the allowlist; sending without the secret");
                    ResponseFuture::calling(self.inner.call(request), None, shared)
                }
            };
        }
        // Copied before the header is added, so the copy holds no second secret value.
        let copy = match shared.recovery {
            Some(_) => self.replay.clone_request(&request),
            None => None,
        };
        match shared.secret.try_get() {
            Some(snapshot) => start(&mut self.inner, request, copy, snapshot, shared),
            None => {
                // The ready service goes into the future; a fresh clone stays behind.
                let clone = self.inner.clone();
                let inner = std::mem::replace(&mut self.inner, clone);
                ResponseFuture::fetching(request, copy, inner, shared)
            }
        }
    }
}

/// Adds the header for `snapshot` and calls `inner` (which must be ready). `copy` is the
/// request as it was before, kept for a replay after a `401`.
pub(crate) fn start<S, B, ResBody>(
    inner: &mut S,
    mut request: Request<B>,
    copy: Option<Request<B>>,
    snapshot: SecretSnapshot,
    shared: Arc<Shared>,
) -> ResponseFuture<S, B>
where
    S: Service<Request<B>, Response = Response<ResBody>> + Clone,
{
    let value = match shared.header_value(&snapshot) {
        Ok(value) => value,
        Err(err) => {
            tracing::warn!(error = %err, "the fetched secret cannot be used");
            return ResponseFuture::failed(SecretHeaderError::Unavailable(err.into()), shared);
        }
    };
    let replay = copy.map(|request| Replay {
        request,
        inner: inner.clone(),
        used: snapshot,
    });
    request
        .headers_mut()
        .insert(shared.header_name().clone(), value);
    tracing::trace!(header = %shared.header_name(), "secret header set");
    ResponseFuture::calling(inner.call(request), replay, shared)
}
