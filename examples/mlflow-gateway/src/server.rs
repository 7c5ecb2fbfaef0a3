//! The accept loops: one worker thread per core, each a `current_thread` runtime with its own
//! listener on the shared address (`SO_REUSEPORT`: the kernel spreads new connections) and its
//! own upstream pool, so that a request never changes thread, as in nginx's workers. Shared by
//! all workers: the connection cap, TLS, HTTP/1 and HTTP/2 with their timers, the client
//! address in the extensions, graceful shutdown. Upgraded connections (WebSocket tunnels) are
//! bounded the same way: see [`tunnel`](crate::tunnel).

use std::{
    cell::{Cell, RefCell},
    convert::Infallible,
    future::Future,
    io,
    net::SocketAddr,
    sync::Arc,
    task::{Context, Poll, Waker},
    time::Duration,
};

use http::{Request, Response, header};
use hyper::body::Incoming;
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::conn::auto,
};
use tokio::{
    io::{AsyncRead, AsyncWrite},
    net::{TcpListener, TcpSocket, TcpStream},
    sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch},
};
use tower::{ServiceExt as _, util::Oneshot};
use tower_service::Service;

use crate::{
    activity::{Activity, Tracked, TrackedBody},
    config::Limits,
    metrics::Metrics,
    on_wake::OnWake,
    proxy::{PeerAddr, ProxyBody},
    tls::TlsListener,
    tunnel::TunnelScope,
};

/// How long in-flight requests and open tunnels may take to finish after a shutdown signal.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// How long the connections and tunnels left after the drain period may take to close.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

/// How long an HTTP/2 keep-alive ping may go unanswered.
const PING_TIMEOUT: Duration = Duration::from_secs(20);

/// The listen backlog of each listener (tokio's and std's default).
const BACKLOG: u32 = 1024;

thread_local! {
    /// The index of the worker whose thread this is; `None` off the worker threads.
    static WORKER: Cell<Option<usize>> = const { Cell::new(None) };
}

/// The index of the worker running on this thread, `None` on any other thread (the main
/// runtime, blocking threads, a test's runtime).
pub(crate) fn worker_index() -> Option<usize> {
    WORKER.get()
}

/// The listening sockets, one a worker, bound and listening (so that clients connecting
/// before [`serve`] wait in the backlog) but registered with no runtime yet: each worker
/// registers its own with its own runtime.
#[derive(Debug)]
pub(crate) struct Listeners {
    sockets: Vec<std::net::TcpListener>,
    local_addr: SocketAddr,
}

impl Listeners {
    /// `workers` listeners on `addr`, each with `SO_REUSEPORT` when there are several;
    /// where the option is missing, the workers share one listener. For port 0, the first
    /// listener's port is the others'. Called inside a runtime.
    pub(crate) fn bind(addr: SocketAddr, workers: usize) -> io::Result<Self> {
        // `SO_REUSEPORT` would also let these sockets join the listeners of another process
        // of the same user, a second gateway started by mistake, and share its traffic
        // silently. A plain bind first fails as nginx's would ("address already in use"),
        // and for port 0 picks a port nobody holds.
        let addr = std::net::TcpListener::bind(addr)?.local_addr()?;
        let socket = tcp_socket(addr)?;
        // Every listener on the port needs the option, the first one too.
        let reuse_port = workers > 1 && set_reuse_port(&socket).is_ok();
        let first = listen(socket, addr)?;
        let local_addr = first.local_addr()?;
        let mut sockets = Vec::with_capacity(workers);
        for _ in 1..workers {
            let own = if reuse_port {
                tcp_socket(local_addr).and_then(|socket| {
                    set_reuse_port(&socket)?;
                    listen(socket, local_addr)
                })
            } else {
                Err(io::ErrorKind::Unsupported.into())
            };
            let listener = match own {
                Ok(listener) => listener,
                Err(error) => {
                    if reuse_port {
                        tracing::warn!(%error, "no listener of its own for a worker; sharing one");
                    }
                    first.try_clone()?
                }
            };
            sockets.push(listener);
        }
        sockets.insert(0, first);
        Ok(Self {
            sockets,
            local_addr,
        })
    }

    /// The address bound (the port chosen for `:0`).
    pub(crate) fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// How many workers there are.
    pub(crate) fn workers(&self) -> usize {
        self.sockets.len()
    }
}

fn tcp_socket(addr: SocketAddr) -> io::Result<TcpSocket> {
    let socket = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    // As `TcpListener::bind` does: a restarted gateway can bind while old connections linger.
    #[cfg(unix)]
    socket.set_reuseaddr(true)?;
    Ok(socket)
}

#[cfg(all(
    unix,
    not(any(target_os = "solaris", target_os = "illumos", target_os = "cygwin"))
))]
fn set_reuse_port(socket: &TcpSocket) -> io::Result<()> {
    socket.set_reuseport(true)
}

#[cfg(not(all(
    unix,
    not(any(target_os = "solaris", target_os = "illumos", target_os = "cygwin"))
)))]
fn set_reuse_port(_: &TcpSocket) -> io::Result<()> {
    Err(io::ErrorKind::Unsupported.into())
}

/// Binds and listens, then leaves the runtime: the worker registers it with its own.
fn listen(socket: TcpSocket, addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    socket.bind(addr)?;
    socket.listen(BACKLOG)?.into_std()
}

/// What connections ask, and what the tower stack answers.
type Req = Request<Incoming>;
type Answer = Response<ProxyBody>;
/// What hyper sends: the answer, its body keeping the connection's request in flight.
type Sent = Response<TrackedBody<ProxyBody>>;

/// What every worker shares.
struct Shared {
    builder: auto::Builder<TokioExecutor>,
    /// The connection cap, global.
    slots: Arc<Semaphore>,
    /// `true` once the drain period is over; every connection and tunnel holds a receiver,
    /// so the sender also sees when all of them have ended.
    closing: watch::Sender<bool>,
    limits: Limits,
    tls: Option<TlsListener>,
    metrics: Arc<Metrics>,
}

/// Serves `service` on every listener until `shutdown` resolves, then stops accepting on all
/// of them, waits (up to 30 s) for open connections to finish their requests and tunnels to
/// end, and closes what is left. Returns once every worker thread has ended.
pub(crate) async fn serve<S>(
    listeners: Listeners,
    service: S,
    limits: Limits,
    tls: Option<TlsListener>,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()>,
) where
    S: Service<Req, Response = Answer, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    let shared = Arc::new(Shared {
        builder: builder(&limits),
        slots: Arc::new(Semaphore::new(limits.max_connections)),
        closing: watch::channel(false).0,
        limits,
        tls,
        metrics,
    });
    // `true`: stop accepting. Dropped (the serve future cancelled) means the same.
    let (stop, _) = watch::channel(false);
    // `true`: the drain and close periods are over, the worker runtimes may end.
    let (exit, _) = watch::channel(false);
    // Each worker holds a sender of the first until its accept loop has ended, and of the
    // second until its thread ends: `recv` answers `None` once all have.
    let (accepting, mut accepting_ended) = mpsc::channel::<()>(1);
    let (alive, mut workers_ended) = mpsc::channel::<()>(1);
    for (index, listener) in listeners.sockets.into_iter().enumerate() {
        let worker = Worker {
            index,
            listener,
            service: service.clone(),
            shared: Arc::clone(&shared),
            stop: stop.subscribe(),
            exit: exit.subscribe(),
            accepting: accepting.clone(),
        };
        let alive = alive.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("gateway-worker-{index}"))
            .spawn(move || {
                worker.run();
                drop(alive);
            });
        if let Err(error) = spawned {
            tracing::error!(%error, worker = index, "cannot start a worker thread");
        }
    }
    drop((accepting, alive));
    shutdown.await;
    stop.send_replace(true);
    // New clients are refused at once instead of waiting in a backlog through the drain.
    let _ = accepting_ended.recv().await;
    tracing::info!("shutting down: draining open connections");
    // Connections and tunnels alike hold a receiver until they end.
    let drained = shared.closing.closed();
    if tokio::time::timeout(DRAIN_TIMEOUT, drained).await.is_err() {
        tracing::warn!("connections still open after {DRAIN_TIMEOUT:?}; closing them");
    }
    shared.closing.send_replace(true);
    // So that nothing outlives `serve` when the gateway is embedded in a longer-lived program.
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, shared.closing.closed()).await;
    exit.send_replace(true);
    let _ = workers_ended.recv().await;
}

/// One worker thread: its listener, its runtime, its connections.
struct Worker<S> {
    index: usize,
    listener: std::net::TcpListener,
    service: S,
    shared: Arc<Shared>,
    stop: watch::Receiver<bool>,
    exit: watch::Receiver<bool>,
    accepting: mpsc::Sender<()>,
}

impl<S> Worker<S>
where
    S: Service<Req, Response = Answer, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    /// Runs the worker's runtime until the server lets it end; what is still running then
    /// (past the close period) is dropped with the runtime.
    fn run(self) {
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(runtime) => runtime,
            Err(error) => {
                tracing::error!(%error, worker = self.index, "cannot start a worker runtime");
                return;
            }
        };
        WORKER.set(Some(self.index));
        runtime.block_on(self.serve());
    }

    async fn serve(self) {
        let Self {
            index,
            listener,
            service,
            shared,
            mut stop,
            mut exit,
            accepting,
        } = self;
        let listener = match TcpListener::from_std(listener) {
            Ok(listener) => listener,
            Err(error) => {
                tracing::error!(%error, worker = index, "cannot register a listener");
                return;
            }
        };
        loop {
            let (stream, peer) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        tracing::warn!(%error, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                _ = stop.wait_for(|stop| *stop) => break,
            };
            // The slot after the accept, not before: a connection in another worker's
            // backlog must not wait for a slot this worker holds while its own backlog is
            // empty. Beyond the cap, each worker holds one accepted connection unserved.
            let slot = tokio::select! {
                slot = Arc::clone(&shared.slots).acquire_owned() => {
                    slot.expect("the semaphore is never closed")
                }
                _ = stop.wait_for(|stop| *stop) => break,
            };
            let watchers = Watchers {
                stop: stop.clone(),
                closing: shared.closing.subscribe(),
            };
            let shared = Arc::clone(&shared);
            let service = service.clone();
            tokio::spawn(async move {
                accepted(stream, peer, slot, service, watchers, &shared).await;
            });
        }
        drop(listener);
        drop(accepting);
        let _ = exit.wait_for(|exit| *exit).await;
    }
}

/// Serves one accepted connection, over TLS after the handshake when the server has TLS.
async fn accepted<S>(
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
struct Watchers {
    stop: watch::Receiver<bool>,
    closing: watch::Receiver<bool>,
}

/// HTTP/1 without hyper's header timer, HTTP/2 with keep-alive pings.
///
/// The connection's own timer ([`Activity`]) bounds an HTTP/1 request head instead. hyper's
/// makes and drops a timer for every request head, and each one, the earliest deadline of
/// the runtime, wakes its driver through the eventfd: `strace -c` counted 14,677 `write`s
/// and 10,204 `futex` calls for 20,000 requests, 24 and 67 without. The connection's timer
/// is set once and looks again only when it fires.
fn builder(limits: &Limits) -> auto::Builder<TokioExecutor> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn port_zero_gives_every_worker_the_first_listeners_port() {
        let listeners = Listeners::bind(SocketAddr::from(([127, 0, 0, 1], 0)), 3).unwrap();
        assert_eq!(listeners.workers(), 3);
        let addr = listeners.local_addr();
        assert_ne!(addr.port(), 0);
        for socket in &listeners.sockets {
            assert_eq!(socket.local_addr().unwrap(), addr);
        }
        // Each one accepts: a connection is queued on one of them.
        let _client = std::net::TcpStream::connect(addr).unwrap();
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn one_worker_binds_an_exclusive_listener() {
        let listeners = Listeners::bind(SocketAddr::from(([127, 0, 0, 1], 0)), 1).unwrap();
        assert_eq!(listeners.workers(), 1);
        // Without SO_REUSEPORT on the first, nobody else binds the port.
        let taken = Listeners::bind(listeners.local_addr(), 2).unwrap_err();
        assert_eq!(taken.kind(), io::ErrorKind::AddrInUse);
    }

    #[test]
    fn off_the_workers_there_is_no_worker_index() {
        assert_eq!(worker_index(), None);
    }
}
