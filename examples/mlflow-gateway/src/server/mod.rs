//! The accept loops: one worker thread per core, each a `current_thread` runtime with its own
//! listener on the shared address (`SO_REUSEPORT`: the kernel spreads new connections) and its
//! own upstream pool, so that a request never changes thread, as in nginx's workers. Shared by
//! all workers: the connection cap, TLS, HTTP/1 and HTTP/2 with their timers, the client
//! address in the extensions, graceful shutdown. Upgraded connections (WebSocket tunnels) are
//! bounded the same way: see [`tunnel`](crate::tunnel).

use std::{
    cell::Cell, convert::Infallible, future::Future, io, net::SocketAddr, sync::Arc, time::Duration,
};

use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::{rt::TokioExecutor, server::conn::auto};
use tokio::{
    net::{TcpListener, TcpSocket},
    sync::{Semaphore, mpsc, watch},
};
use tower_service::Service;

use self::connection::{Watchers, accepted, builder};
use crate::{
    activity::TrackedBody, config::Limits, metrics::Metrics, proxy::ProxyBody, tls::TlsListener,
};

mod connection;

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
        // and for port 0 picks a port nobody holds. Bound, not listening: a client that
        // connects meanwhile must not land in a backlog this drop would reset.
        let addr = {
            let probe = tcp_socket(addr)?;
            probe.bind(addr)?;
            probe.local_addr()?
        };
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
