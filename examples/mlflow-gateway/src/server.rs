//! The accept loop: the connection cap, TLS, HTTP/1 and HTTP/2 with their timers, the client
//! address in the extensions, graceful shutdown.

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
    sync::Semaphore,
};
use tower::ServiceBuilder;
use tower_service::Service;

use crate::{
    activity::{Activity, Tracked},
    config::Limits,
    proxy::{PeerAddr, ProxyBody},
    tls::TlsListener,
};

/// How long in-flight requests may take to finish after a shutdown signal.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// How long an HTTP/2 keep-alive ping may go unanswered.
const PING_TIMEOUT: Duration = Duration::from_secs(20);

/// Serves `service` on `listener` until `shutdown` resolves, then stops accepting and waits
/// (up to 30 s) for open connections to finish their requests.
pub(crate) async fn serve<S>(
    listener: TcpListener,
    service: S,
    limits: Limits,
    tls: Option<TlsListener>,
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
        let per_connection = ServiceBuilder::new()
            .map_request(move |mut request: Request<Incoming>| {
                request.extensions_mut().insert(PeerAddr(peer));
                request
            })
            .service(Tracked::new(service.clone(), activity.clone()));
        let (builder, watcher, tls) = (builder.clone(), graceful.watcher(), tls.clone());
        tokio::spawn(async move {
            let _slot = slot;
            match tls {
                None => {
                    connection(stream, per_connection, &builder, watcher, activity, limits).await;
                }
                Some(tls) => {
                    let handshake = tls.acceptor().accept(stream);
                    match tokio::time::timeout(limits.header_timeout, handshake).await {
                        Ok(Ok(stream)) => {
                            connection(stream, per_connection, &builder, watcher, activity, limits)
                                .await;
                        }
                        Ok(Err(error)) => tracing::debug!(%error, %peer, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                }
            }
        });
    }
    tracing::info!("shutting down: draining open connections");
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after {DRAIN_TIMEOUT:?}; exiting anyway");
    }
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
/// protocol preface), or none in flight for `idle_timeout` after one.
async fn connection<I, S>(
    io: I,
    service: S,
    builder: &auto::Builder<TokioExecutor>,
    watcher: Watcher,
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
    let served = watcher.watch(served);
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
            () = tokio::time::sleep_until(deadline) => {
                if activity.expired(&limits) {
                    tracing::debug!("closing an idle connection");
                    return;
                }
            }
        }
    }
}
