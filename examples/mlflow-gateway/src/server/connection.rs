//! One accepted connection: its TLS handshake, hyper's connection on it, and what ends it
//! (its idle timer, the worker's stop, the drain's end); and the stack called in place.

use std::{
    cell::RefCell,
    convert::Infallible,
    net::SocketAddr,
    sync::Arc,
    task::{Context, Poll, Waker},
};

use http::header;
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::conn::auto,
};
use tokio::{
    io::{AsyncRead, AsyncWrite},
    net::TcpStream,
    sync::{OwnedSemaphorePermit, watch},
};
use tower::{ServiceExt as _, util::Oneshot};
use tower_service::Service;

use super::{Answer, PING_TIMEOUT, Req, Sent, Shared};
use crate::{
    activity::{Activity, Tracked},
    config::Limits,
    on_wake::OnWake,
    proxy::PeerAddr,
    tunnel::TunnelScope,
};

/// Serves one accepted connection, over TLS after the handshake when the server has TLS.
pub(super) async fn accepted<S>(
    stream: TcpStream,
    peer: SocketAddr,
    slot: OwnedSemaphorePermit,
    service: S,
    watchers: Watchers,
    shared: &Shared,
) where
    S: Service<Req, Response = Answer, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    let limits = shared.limits;
    let _ = stream.set_nodelay(true);
    // Counted open from the accept (TLS handshake included) until the task ends.
    let _open = shared.metrics.connection_opened();
    let activity = Activity::new();
    // The slot lives in the scope: held by this connection's service, and by any tunnel
    // one of its requests becomes.
    let scope = TunnelScope::new(slot, limits.idle_timeout, shared.closing.subscribe());
    let service = InPlace::new(Tracked::new(service, activity.clone()), peer, scope);
    let connection = Connection {
        service,
        builder: &shared.builder,
        watchers,
        activity,
        limits,
    };
    // The connection futures and the handshake are boxed: inline, this task would take the
    // largest of them (6.5 kB, the TLS one) for every idle connection, plain ones too;
    // boxed, 1.7 kB (heaptrack, 10,000 idle connections: 24.5 → 22.7 kB resident each).
    let Some(tls) = &shared.tls else {
        Box::pin(connection.serve(stream)).await;
        return;
    };
    let handshake = Box::pin(tokio::time::timeout(
        limits.header_timeout,
        tls.acceptor().accept(stream),
    ));
    match handshake.await {
        Ok(Ok(stream)) => Box::pin(connection.serve(stream)).await,
        Ok(Err(error)) => {
            shared.metrics.tls_handshake_failed();
            tracing::debug!(%error, %peer, "TLS handshake failed");
        }
        Err(_) => {
            shared.metrics.tls_handshake_failed();
            tracing::debug!(%peer, "TLS handshake timed out");
        }
    }
}

/// What a connection watches for shutdown: the worker's stop (finish the requests in flight,
/// accept no more), then the end of the drain period (close at once).
pub(super) struct Watchers {
    pub(super) stop: watch::Receiver<bool>,
    pub(super) closing: watch::Receiver<bool>,
}

/// HTTP/1 without hyper's header timer, HTTP/2 with keep-alive pings.
///
/// The connection's own timer ([`Activity`]) bounds an HTTP/1 request head instead. hyper's
/// makes and drops a timer for every request head, and each one, the earliest deadline of
/// the runtime, wakes its driver through the eventfd: `strace -c` counted 14,677 `write`s
/// and 10,204 `futex` calls for 20,000 requests, 24 and 67 without. The connection's timer
/// is set once and looks again only when it fires.
pub(super) fn builder(limits: &Limits) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().header_read_timeout(None);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(limits.idle_timeout)
        .keep_alive_timeout(PING_TIMEOUT);
    builder
}

/// What one connection is served with; [`serve`](Self::serve) serves it until it ends, or
/// until it sits idle too long: no request in `header_timeout` from the start (this also
/// bounds a client that never finishes the protocol preface), or none in flight for
/// `idle_timeout` after one (over HTTP/1, for the shorter of the two: the next request's
/// head is what is awaited); or until the drain period after a shutdown signal is over.
struct Connection<'a, S> {
    service: InPlace<S>,
    builder: &'a auto::Builder<TokioExecutor>,
    watchers: Watchers,
    activity: Arc<Activity>,
    limits: Limits,
}

impl<S> Connection<'_, S>
where
    S: Service<Req, Response = Sent, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    async fn serve<I>(self, io: I)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let Self {
            service,
            builder,
            watchers,
            activity,
            limits,
        } = self;
        let served = builder
            .serve_connection_with_upgrades(TokioIo::new(io), service)
            .into_owned();
        tokio::pin!(served);
        let Watchers {
            mut stop,
            mut closing,
        } = watchers;
        // One timer for the whole connection, not one per wake-up. The timer is lazy: requests
        // only ever move the true expiry later, so it fires at or before it, and is then set
        // again to what is left, or closes the connection.
        let timer = tokio::time::sleep_until(activity.deadline(&limits));
        tokio::pin!(timer);
        let mut stopping = false;
        loop {
            // What can still happen besides the connection's own progress: after the first
            // request, `changed` never fires again. A connection wakes a few times a request,
            // and polling these each time would register their wakers again (a lock for a
            // `watch` wait); in `OnWake`, they are polled only when one of them woke the task.
            let first_request_pending = !activity.seen_request();
            let events = OnWake::new(async {
                tokio::select! {
                    biased;
                    // `Err` too: the server is gone.
                    _ = stop.wait_for(|stop| *stop), if !stopping => Event::Stop,
                    _ = closing.wait_for(|closing| *closing) => Event::DrainOver,
                    () = activity.changed(), if first_request_pending => Event::FirstRequest,
                    () = &mut timer => Event::Timer,
                }
            });
            // The connection goes first.
            let event = tokio::select! {
                biased;
                ended = &mut served => {
                    if let Err(error) = ended {
                        tracing::debug!(%error, "connection ended with an error");
                    }
                    return;
                }
                event = events => event,
            };
            match event {
                // Finish the requests in flight, then close; HTTP/2 sends GOAWAY.
                Event::Stop => {
                    stopping = true;
                    served.as_mut().graceful_shutdown();
                }
                Event::DrainOver => {
                    tracing::debug!("closing a connection: the drain period is over");
                    return;
                }
                // The limit is now `idle_timeout`, which may be shorter than `header_timeout`.
                Event::FirstRequest => timer.as_mut().reset(activity.deadline(&limits)),
                Event::Timer => {
                    if activity.expired(&limits) {
                        tracing::debug!("closing an idle connection");
                        return;
                    }
                    timer.as_mut().reset(activity.deadline(&limits));
                }
            }
        }
    }
}

/// What besides its own progress ends or changes a connection.
enum Event {
    /// The server stopped accepting: shut down gracefully.
    Stop,
    /// The drain period is over: close at once.
    DrainOver,
    /// The first request came: from now on the idle limit applies.
    FirstRequest,
    /// The idle timer fired (perhaps early: it is lazy).
    Timer,
}

/// The tower stack as hyper's service, called in place. hyper's `call` takes `&self`, and
/// hyper-util's `TowerToHyperService` answers that with a clone of the whole stack for every
/// request (a box, a dozen reference counts up and down). hyper calls it from the
/// connection's task, one call at a time, so a `RefCell` does. The stack is always ready (no
/// layer of it holds requests back); should it ever not be, that request gets a clone driven
/// to readiness, as before.
///
/// It also puts what the connection knows into each request's extensions (the peer's
/// address, and for a WebSocket handshake the tunnel scope) itself, rather than through a
/// `map_request` layer that would move each request once more.
struct InPlace<S> {
    service: RefCell<S>,
    peer: PeerAddr,
    scope: TunnelScope,
}

impl<S> InPlace<S> {
    fn new(service: S, peer: SocketAddr, scope: TunnelScope) -> Self {
        Self {
            service: RefCell::new(service),
            peer: PeerAddr(peer),
            scope,
        }
    }
}

impl<S> hyper::service::Service<Req> for InPlace<S>
where
    S: Service<Req, Response = Sent, Error = Infallible> + Clone,
{
    type Response = Sent;
    type Error = Infallible;
    type Future = InPlaceFuture<S>;

    fn call(&self, mut request: Req) -> Self::Future {
        request.extensions_mut().insert(self.peer);
        // Only a WebSocket upgrade can become a tunnel, and only a tunnel needs the scope (the
        // proxy checks the whole handshake); an `Upgrade` header is the cheap test that spares
        // every other request a clone and an extension.
        if request.headers().contains_key(header::UPGRADE) {
            request.extensions_mut().insert(self.scope.clone());
        }
        let mut service = self.service.borrow_mut();
        match service.poll_ready(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(Ok(())) => InPlaceFuture::Ready {
                future: service.call(request),
            },
            Poll::Ready(Err(never)) => match never {},
            Poll::Pending => InPlaceFuture::Waiting {
                future: service.clone().oneshot(request),
            },
        }
    }
}

pin_project_lite::pin_project! {
    /// [`InPlace`]'s answer: the stack's own future, or the clone's.
    #[project = InPlaceProjection]
    enum InPlaceFuture<S: Service<Req>> {
        Ready { #[pin] future: S::Future },
        Waiting { #[pin] future: Oneshot<S, Req> },
    }
}

impl<S: Service<Req>> Future for InPlaceFuture<S> {
    type Output = Result<S::Response, S::Error>;

    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            InPlaceProjection::Ready { future } => future.poll(cx),
            InPlaceProjection::Waiting { future } => future.poll(cx),
        }
    }
}
