//! The accept loop: the connection cap, TLS, HTTP/1 and HTTP/2 with their timers, the client
//! address in the extensions, graceful shutdown. Upgraded connections (WebSocket tunnels) are
//! bounded the same way: see [`tunnel`](crate::tunnel).

use std::{convert::Infallible, future::Future, sync::Arc, time::Duration};

use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::{
        conn::auto,
        graceful::{GracefulShutdown, Watcher},
    },
    service::TowerToHyperService,
};
use tokio::{
    io::{AsyncRead, AsyncWrite},
    net::TcpListener,
    sync::{Semaphore, watch},
};
use tower::ServiceBuilder;
use tower_service::Service;

use crate::{
    activity::{Activity, Tracked},
    config::Limits,
    metrics::Metrics,
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

/// Serves `service` on `listener` until `shutdown` resolves, then stops accepting, waits
/// (up to 30 s) for open connections to finish their requests and tunnels to end, and closes
/// what is left.
pub(crate) async fn serve<S>(
    listener: TcpListener,
    service: S,
    limits: Limits,
    tls: Option<TlsListener>,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()>,
) where
    S: Service<Request<Incoming>, Response = Response<ProxyBody>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let graceful = GracefulShutdown::new();
    let builder = Arc::new(builder(&limits));
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    // `true` once the drain period is over; every connection and tunnel holds a receiver,
    // so the sender also sees when all of them have ended.
    let (closing, _) = watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        // Take a slot before accepting: beyond the cap, connections wait in the backlog.
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
            () = &mut shutdown => break,
        };
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
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let activity = Activity::new();
        // The slot lives in the scope: held by this connection's service, and by any tunnel
        // one of its requests becomes.
        let scope = TunnelScope::new(slot, limits.idle_timeout, closing.subscribe());
        let per_connection = ServiceBuilder::new()
            .map_request(move |mut request: Request<Incoming>| {
                request.extensions_mut().insert(PeerAddr(peer));
                request.extensions_mut().insert(scope.clone());
                request
            })
            .service(Tracked::new(service.clone(), activity.clone()));
        let watchers = Watchers {
            graceful: graceful.watcher(),
            closing: closing.subscribe(),
        };
        let (builder, tls) = (builder.clone(), tls.clone());
        let metrics = Arc::clone(&metrics);
        tokio::spawn(async move {
            // Counted open from the accept (TLS handshake included) until the task ends.
            let _open = metrics.connection_opened();
            match tls {
                None => {
                    connection(stream, per_connection, &builder, watchers, activity, limits).await;
                }
                Some(tls) => {
                    let handshake = tls.acceptor().accept(stream);
                    match tokio::time::timeout(limits.header_timeout, handshake).await {
                        Ok(Ok(stream)) => {
                            connection(
                                stream,
                                per_connection,
                                &builder,
                                watchers,
                                activity,
                                limits,
                            )
                            .await;
                        }
                        Ok(Err(error)) => {
                            metrics.tls_handshake_failed();
                            tracing::debug!(%error, %peer, "TLS handshake failed");
                        }
                        Err(_) => {
                            metrics.tls_handshake_failed();
                            tracing::debug!(%peer, "TLS handshake timed out");
                        }
                    }
                }
            }
        });
    }
    // New clients are refused at once instead of waiting in the backlog through the drain.
    drop(listener);
    tracing::info!("shutting down: draining open connections");
    let drained = async {
        graceful.shutdown().await;
        // Tunnels are not hyper connections: wait for them too.
        closing.closed().await;
    };
    if tokio::time::timeout(DRAIN_TIMEOUT, drained).await.is_err() {
        tracing::warn!("connections still open after {DRAIN_TIMEOUT:?}; closing them");
    }
    closing.send_replace(true);
    // So that nothing outlives `serve` when the gateway is embedded in a longer-lived program.
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, closing.closed()).await;
}

/// What a connection watches for shutdown: hyper's graceful signal (finish the requests in
/// flight, accept no more), then the end of the drain period (close at once).
struct Watchers {
    graceful: Watcher,
    closing: watch::Receiver<bool>,
}

/// HTTP/1 with the header timer, HTTP/2 with keep-alive pings.
fn builder(limits: &Limits) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(limits.idle_timeout)
        .keep_alive_timeout(PING_TIMEOUT);
    builder
}

/// Serves one connection until it ends, or until it sits idle too long: no request in
/// `header_timeout` from the start (this also bounds a client that never finishes the
/// protocol preface), or none in flight for `idle_timeout` after one; or until the drain
/// period after a shutdown signal is over.
async fn connection<I, S>(
    io: I,
    service: S,
    builder: &auto::Builder<TokioExecutor>,
    watchers: Watchers,
    activity: Arc<Activity>,
    limits: Limits,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: Service<Request<Incoming>, Response = Response<ProxyBody>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let served = builder
        .serve_connection_with_upgrades(TokioIo::new(io), TowerToHyperService::new(service))
        .into_owned();
    let Watchers {
        graceful,
        mut closing,
    } = watchers;
    let served = graceful.watch(served);
    tokio::pin!(served);
    loop {
        let deadline = activity.deadline(&limits);
        tokio::select! {
            ended = &mut served => {
                if let Err(error) = ended {
                    tracing::debug!(%error, "connection ended with an error");
                }
                return;
            }
            () = activity.changed() => {}
            // `Err` too: the server is gone.
            _ = closing.wait_for(|closing| *closing) => {
                tracing::debug!("closing a connection: the drain period is over");
                return;
            }
            () = tokio::time::sleep_until(deadline) => {
                if activity.expired(&limits) {
                    tracing::debug!("closing an idle connection");
                    return;
                }
            }
        }
    }
}
