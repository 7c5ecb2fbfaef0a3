//! What a connection is doing, for the idle timers: requests in flight (until their response
//! body has been sent or dropped) and when the last one ended.

use std::{
    convert::Infallible,
    future::Future,
    pin::Pin,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    task::{Context, Poll},
};

use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use tokio::{sync::Notify, time::Instant};
use tower_service::Service;

use crate::config::Limits;

/// One connection's requests.
#[derive(Debug)]
pub(crate) struct Activity {
    in_flight: AtomicUsize,
    seen_request: AtomicBool,
    /// Whether the first request came over HTTP/2, where no request head is ever pending
    /// between two requests (the idle timeout alone applies).
    http2: AtomicBool,
    idle_since: Mutex<Instant>,
    /// Wakes the connection's timer when the first request starts: the limit changes from
    /// `header_timeout` to `idle_timeout`, which may be shorter. Later starts and ends need
    /// no wake-up (two task switches a request): they only move the true expiry later than
    /// any deadline computed before, and the timer looks again when that deadline passes.
    changed: Notify,
}

impl Activity {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self {
            in_flight: AtomicUsize::new(0),
            seen_request: AtomicBool::new(false),
            http2: AtomicBool::new(false),
            idle_since: Mutex::new(Instant::now()),
            changed: Notify::new(),
        })
    }

    /// How long the connection may go without a request in flight: `header_timeout` until
    /// the first request; then `idle_timeout` over HTTP/2, and over HTTP/1 also no longer
    /// than `header_timeout`, since there the next request's head is what is awaited (as
    /// with hyper's header timer, which runs from the end of one answer to the next head).
    fn limit(&self, limits: &Limits) -> std::time::Duration {
        if !self.seen_request() {
            limits.header_timeout
        } else if self.http2.load(Ordering::Acquire) {
            limits.idle_timeout
        } else {
            limits.idle_timeout.min(limits.header_timeout)
        }
    }

    fn idle_since(&self) -> Instant {
        *self
            .idle_since
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// When to look again: the end of the current idle period, or a full period from now
    /// while a request is in flight.
    pub(crate) fn deadline(&self, limits: &Limits) -> Instant {
        let limit = self.limit(limits);
        if self.in_flight.load(Ordering::Acquire) > 0 {
            Instant::now() + limit
        } else {
            self.idle_since() + limit
        }
    }

    /// Whether the connection has had nothing in flight for its whole limit.
    pub(crate) fn expired(&self, limits: &Limits) -> bool {
        self.in_flight.load(Ordering::Acquire) == 0
            && self.idle_since().elapsed() >= self.limit(limits)
    }

    /// Whether a request has started on the connection.
    pub(crate) fn seen_request(&self) -> bool {
        self.seen_request.load(Ordering::Acquire)
    }

    /// Resolves once the first request has started.
    pub(crate) async fn changed(&self) {
        self.changed.notified().await;
    }

    /// A request starts; `http2` says which protocol the connection speaks.
    fn start(self: &Arc<Self>, http2: bool) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        if !self.seen_request.load(Ordering::Acquire) {
            // Before `seen_request`: whoever sees the first request sees its protocol.
            self.http2.store(http2, Ordering::Release);
            if !self.seen_request.swap(true, Ordering::AcqRel) {
                self.changed.notify_one();
            }
        }
        InFlight(self.clone())
    }
}

/// One request in flight; dropping it ends the request.
#[derive(Debug)]
pub(crate) struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        if self.0.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            *self
                .0
                .idle_since
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()) = Instant::now();
        }
    }
}

/// Counts `inner`'s requests in `activity`, each until its response body is done.
#[derive(Clone, Debug)]
pub(crate) struct Tracked<S> {
    inner: S,
    activity: Arc<Activity>,
}

impl<S> Tracked<S> {
    pub(crate) fn new(inner: S, activity: Arc<Activity>) -> Self {
        Self { inner, activity }
    }
}

impl<S, B, ResBody> Service<Request<B>> for Tracked<S>
where
    S: Service<Request<B>, Response = Response<ResBody>, Error = Infallible>,
{
    type Response = Response<TrackedBody<ResBody>>;
    type Error = Infallible;
    type Future = TrackedFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let in_flight = self
            .activity
            .start(request.version() == http::Version::HTTP_2);
        TrackedFuture {
            inner: self.inner.call(request),
            in_flight: Some(in_flight),
        }
    }
}

pin_project_lite::pin_project! {
    /// The future of [`Tracked`]: the inner response, its body wrapped to keep the request
    /// in flight (a named future and a named body, not boxed ones: no allocation per
    /// request).
    pub(crate) struct TrackedFuture<F> {
        #[pin]
        inner: F,
        in_flight: Option<InFlight>,
    }
}

impl<F, B> Future for TrackedFuture<F>
where
    F: Future<Output = Result<Response<B>, Infallible>>,
{
    type Output = Result<Response<TrackedBody<B>>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let response = std::task::ready!(this.inner.poll(cx))?;
        // Taken once: a future is not polled again after it is ready.
        let in_flight = this.in_flight.take();
        Poll::Ready(Ok(response.map(|inner| TrackedBody {
            inner,
            _in_flight: in_flight,
        })))
    }
}

pin_project_lite::pin_project! {
    /// A response body that keeps its request in flight until it is dropped.
    pub(crate) struct TrackedBody<B> {
        #[pin]
        inner: B,
        _in_flight: Option<InFlight>,
    }
}

impl<B: Body> Body for TrackedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        self.project().inner.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::Bytes;
    use http_body_util::Full;

    use super::*;

    fn limits() -> Limits {
        Limits {
            header_timeout: Duration::from_secs(1),
            idle_timeout: Duration::from_secs(10),
            ..Limits::default()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn header_timeout_until_the_first_request_then_idle_timeout() {
        let activity = Activity::new();
        let limits = limits();
        assert!(!activity.expired(&limits));
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(activity.expired(&limits));

        let request = activity.start(true);
        tokio::time::advance(Duration::from_secs(60)).await;
        assert!(!activity.expired(&limits), "a request is in flight");
        drop(request);
        tokio::time::advance(Duration::from_secs(9)).await;
        assert!(!activity.expired(&limits));
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(activity.expired(&limits));
    }

    #[tokio::test(start_paused = true)]
    async fn over_http1_the_next_head_is_awaited_no_longer_than_the_header_timeout() {
        let activity = Activity::new();
        let limits = limits();
        let request = activity.start(false);
        tokio::time::advance(Duration::from_secs(60)).await;
        assert!(!activity.expired(&limits), "a request is in flight");
        drop(request);
        tokio::time::advance(Duration::from_millis(900)).await;
        assert!(!activity.expired(&limits));
        tokio::time::advance(Duration::from_millis(100)).await;
        assert!(
            activity.expired(&limits),
            "1 s header timeout, not 10 s idle"
        );

        // The shorter of the two: an idle timeout below the header timeout wins.
        let short_idle = Limits {
            header_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(2),
            ..Limits::default()
        };
        let activity = Activity::new();
        drop(activity.start(false));
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(activity.expired(&short_idle));
    }

    #[tokio::test(start_paused = true)]
    async fn only_the_first_request_wakes_the_timer_and_no_deadline_is_late() {
        let activity = Activity::new();
        let limits = Limits {
            header_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(1),
            ..Limits::default()
        };
        let before_any = activity.deadline(&limits);
        let first = activity.start(false);
        tokio::time::timeout(Duration::from_secs(5), activity.changed())
            .await
            .expect("the first request did not wake the timer");
        // Recomputed after the wake-up: the shorter idle timeout applies.
        let in_flight = activity.deadline(&limits);
        assert!(in_flight < before_any);

        tokio::time::advance(Duration::from_millis(500)).await;
        drop(first);
        let second = activity.start(false);
        let woken = tokio::time::timeout(Duration::from_secs(5), activity.changed()).await;
        assert!(woken.is_err(), "a later request woke the timer");
        drop(second);
        // A deadline computed earlier comes before the true expiry; the timer then looks
        // again and finds the connection not yet expired.
        assert!(in_flight <= Instant::now() + limits.idle_timeout);
        assert!(!activity.expired(&limits));
        tokio::time::advance(limits.idle_timeout).await;
        assert!(activity.expired(&limits));
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_lasts_until_its_body_is_dropped() {
        let activity = Activity::new();
        let service = tower::service_fn(|_: Request<()>| async {
            Ok::<_, Infallible>(Response::new(Full::<Bytes>::from("body")))
        });
        let mut tracked = Tracked::new(service, activity.clone());
        let response = tracked.call(Request::new(())).await.unwrap();
        tokio::time::advance(Duration::from_secs(60)).await;
        assert!(!activity.expired(&limits()));
        drop(response);
        tokio::time::advance(Duration::from_secs(10)).await;
        assert!(activity.expired(&limits()));
    }
}
