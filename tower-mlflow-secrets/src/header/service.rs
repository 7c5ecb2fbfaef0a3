use std::{
    any::Any,
    fmt,
    sync::Arc,
    task::{Context, Poll},
};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{Empty, Full};
use tower_service::Service;

use super::{
    DisallowedHost, SecretHeaderError,
    future::{Replay, ResponseFuture},
    layer::Shared,
};
use crate::{cache::SecretSnapshot, source::BoxError};

/// Middleware that adds the cached secret as a header to requests for allowed origins.
/// Built by [`SecretHeaderLayer`](super::SecretHeaderLayer).
pub struct SecretHeader<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S> SecretHeader<S> {
    pub(crate) fn new(inner: S, shared: Arc<Shared>) -> Self {
        Self { inner, shared }
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: Clone> Clone for SecretHeader<S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<S: fmt::Debug> fmt::Debug for SecretHeader<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretHeader")
            .field("inner", &self.inner)
            .field("layer", &self.shared)
            .finish()
    }
}

impl<S, B, ResBody> Service<Request<B>> for SecretHeader<S>
where
    S: Service<Request<B>, Response = Response<ResBody>> + Clone,
    S::Error: Into<BoxError>,
    B: 'static,
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
        match shared.secret.try_get() {
            Some(snapshot) => start(&mut self.inner, request, snapshot, shared),
            None => {
                // The ready service goes into the future; a fresh clone stays behind.
                let clone = self.inner.clone();
                let inner = std::mem::replace(&mut self.inner, clone);
                ResponseFuture::fetching(request, inner, shared)
            }
        }
    }
}

/// Adds the header for `snapshot` and calls `inner` (which must be ready).
pub(crate) fn start<S, B, ResBody>(
    inner: &mut S,
    mut request: Request<B>,
    snapshot: SecretSnapshot,
    shared: Arc<Shared>,
) -> ResponseFuture<S, B>
where
    S: Service<Request<B>, Response = Response<ResBody>> + Clone,
    B: 'static,
{
    let value = match shared.header_value(&snapshot) {
        Ok(value) => value,
        Err(err) => {
            tracing::warn!(error = %err, "the fetched secret cannot be used");
            return ResponseFuture::failed(SecretHeaderError::Unavailable(err.into()), shared);
        }
    };
    // Copied before the header is added, so the copy holds no second secret value.
    let replay = match &shared.recovery {
        Some(_) => clone_request(&request).map(|request| Replay {
            request,
            inner: inner.clone(),
            used: snapshot,
        }),
        None => None,
    };
    request
        .headers_mut()
        .insert(shared.header_name().clone(), value);
    tracing::trace!(header = %shared.header_name(), "secret header set");
    ResponseFuture::calling(inner.call(request), replay, shared)
}

/// A copy of `request` if its body type is one we know how to copy.
fn clone_request<B: 'static>(request: &Request<B>) -> Option<Request<B>> {
    let body = clone_body(request.body())?;
    let mut copy = Request::new(body);
    *copy.method_mut() = request.method().clone();
    *copy.uri_mut() = request.uri().clone();
    *copy.version_mut() = request.version();
    *copy.headers_mut() = request.headers().clone();
    *copy.extensions_mut() = request.extensions().clone();
    Some(copy)
}

/// Copies bodies of the known replayable types. Checked at run time so that the layer
/// itself works with any body type (tonic's, axum's, streaming ones), which simply are not
/// replayed.
fn clone_body<B: 'static>(body: &B) -> Option<B> {
    fn try_as<T: Clone + 'static, B: 'static>(body: &B) -> Option<B> {
        let copy: T = (body as &dyn Any).downcast_ref::<T>()?.clone();
        (Box::new(copy) as Box<dyn Any>)
            .downcast::<B>()
            .ok()
            .map(|b| *b)
    }
    try_as::<Full<Bytes>, B>(body)
        .or_else(|| try_as::<Empty<Bytes>, B>(body))
        .or_else(|| try_as::<String, B>(body))
        .or_else(|| try_as::<Vec<u8>, B>(body))
        .or_else(|| try_as::<Bytes, B>(body))
        .or_else(|| try_as::<(), B>(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_bodies_are_cloned() {
        assert_eq!(clone_body(&String::from("x")).as_deref(), Some("x"));
        assert_eq!(clone_body(&vec![1u8]), Some(vec![1u8]));
        assert!(clone_body(&Full::new(Bytes::from_static(b"x"))).is_some());
        assert!(clone_body(&Empty::<Bytes>::new()).is_some());
    }

    #[test]
    fn unknown_bodies_are_not() {
        #[derive(Clone)]
        struct Custom;
        assert!(clone_body(&Custom).is_none());
        assert!(
            clone_body(&http_body_util::combinators::BoxBody::new(
                Empty::<Bytes>::new()
            ))
            .is_none()
        );
    }

    #[test]
    fn request_copy_keeps_the_head() {
        let mut request = Request::post("http://localhost:1/x")
            .header("x-a", "1")
            .body(String::from("body"))
            .unwrap();
        request.extensions_mut().insert(7u8);
        let copy = clone_request(&request).unwrap();
        assert_eq!(copy.method(), "POST");
        assert_eq!(copy.uri(), "http://localhost:1/x");
        assert_eq!(copy.headers()["x-a"], "1");
        assert_eq!(copy.extensions().get::<u8>(), Some(&7));
        assert_eq!(copy.body(), "body");
    }
}
