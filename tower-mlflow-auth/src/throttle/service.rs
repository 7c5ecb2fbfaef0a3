use std::{
    fmt,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    task::{Context, Poll},
};

use http::{Request, Response};
use tokio::time::Instant;
use tower_service::Service;

use super::{
    buckets::{Taken, whole_seconds},
    future::ResponseFuture,
    key::ClientKey,
    layer::Shared,
    response::Throttled,
};
use crate::{
    auth::handoff::{Handoff, Link},
    authenticator::Authenticator,
    rejection::Protocol,
};

/// Middleware that refuses requests from clients that failed to log in too often.
///
/// Made by [`ThrottleLayer`](super::ThrottleLayer); see the [module docs](crate::throttle).
pub struct Throttle<S, A, K: ClientKey> {
    inner: S,
    authenticator: A,
    client_key: K,
    shared: Arc<Shared<K::Key>>,
    link: Option<Link>,
}

impl<S, A, K: ClientKey> Throttle<S, A, K> {
    pub(super) fn new(
        inner: S,
        authenticator: A,
        client_key: K,
        shared: Arc<Shared<K::Key>>,
        link: Option<Link>,
    ) -> Self {
        Self {
            inner,
            authenticator,
            client_key,
            shared,
            link,
        }
    }

    tower_mlflow_core::define_inner_service_accessors!();
}

impl<S, A, K, ReqBody, ResBody> Service<Request<ReqBody>> for Throttle<S, A, K>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    A: Authenticator,
    K: ClientKey,
    ResBody: Default,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let (parts, body) = request.into_parts();
        // Not counted: no credentials or unreadable ones (`AuthLayer` answers 401 without a
        // check, so there is nothing to protect), and cache hits, whatever the bucket holds,
        // so that a user behind the same address as a guesser keeps working. Neither looks
        // at the buckets.
        let accepted = match self.authenticator.credentials(&parts) {
            Ok(credentials) => self.authenticator.try_accept_now(&credentials),
            Err(_) => {
                return ResponseFuture::inner(
                    self.inner.call(Request::from_parts(parts, body)),
                    None,
                );
            }
        };
        if let Some(principal) = accepted {
            let mut request = Request::from_parts(parts, body);
            // The `AuthLayer` this throttle was built for need not ask again.
            if let Some(link) = self.link {
                request.extensions_mut().insert(Handoff { link, principal });
            }
            return ResponseFuture::inner(self.inner.call(request), None);
        }

        let key = self.client_key.client_key(&parts);
        // The token is taken before the check, not after it fails: otherwise a client could
        // start any number of checks at once while its bucket still held one token.
        let last = match self.shared.buckets.take(&key, Instant::now()) {
            Taken::Token => false,
            Taken::LastToken => true,
            Taken::Empty(wait) => {
                let throttled = Throttled::new(whole_seconds(wait));
                tracing::info!(
                    key = ?key,
                    retry_after_secs = throttled.retry_after().as_secs(),
                    method = %parts.method,
                    path = parts.uri.path(),
                    "too many failed logins: request throttled without checking its credentials"
                );
                return ResponseFuture::throttled(
                    throttled.into_response(Protocol::of(&parts.headers)),
                );
            }
        };
        let pending = PendingLogin(Arc::new(Reservation {
            shared: Arc::clone(&self.shared),
            key,
            last,
            open: AtomicBool::new(true),
        }));
        let mut request = Request::from_parts(parts, body);
        request.extensions_mut().insert(pending.clone());
        ResponseFuture::inner(self.inner.call(request), Some(pending))
    }
}

/// The token a request took, until its outcome is known; in the request extensions, so
/// that [`ThrottleRelease`](super::ThrottleRelease) can give it back as soon as the request
/// is accepted. Type-erased so that futures do not name the key type.
#[derive(Clone)]
pub(super) struct PendingLogin(Arc<dyn Settle>);

impl PendingLogin {
    /// The login failed (`true`): the token stays taken. Otherwise it is given back. Only the
    /// first call counts.
    pub(super) fn settle(&self, failed: bool) {
        self.0.settle(failed);
    }
}

pub(super) trait Settle: Send + Sync + 'static {
    fn settle(&self, failed: bool);
}

struct Reservation<Key> {
    shared: Arc<Shared<Key>>,
    key: Key,
    /// This request took the bucket's last token.
    last: bool,
    open: AtomicBool,
}

impl<Key> Settle for Reservation<Key>
where
    Key: std::hash::Hash + Eq + Clone + fmt::Debug + Send + Sync + 'static,
{
    fn settle(&self, failed: bool) {
        if !self.open.swap(false, Ordering::AcqRel) {
            return;
        }
        if !failed {
            self.shared.buckets.give_back(&self.key, Instant::now());
        } else if self.last {
            tracing::warn!(
                key = ?self.key,
                "failed-login limit reached: further credentials from this client are refused \
                 with 429 until its tokens come back (cached ones still pass)"
            );
        }
    }
}

impl fmt::Debug for PendingLogin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PendingLogin").finish_non_exhaustive()
    }
}

impl<S: Clone, A: Clone, K: ClientKey> Clone for Throttle<S, A, K> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            authenticator: self.authenticator.clone(),
            client_key: self.client_key.clone(),
            shared: Arc::clone(&self.shared),
            link: self.link,
        }
    }
}

impl<S: fmt::Debug, A, K: ClientKey> fmt::Debug for Throttle<S, A, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Throttle")
            .field("inner", &self.inner)
            .field("authenticator", &std::any::type_name::<A>())
            .field("client_key", &std::any::type_name::<K>())
            .field("shared", &self.shared)
            .finish()
    }
}
