//! The accept loop: HTTP/1.1 connections served until SIGTERM or SIGINT, then the requests
//! under way are drained.

use std::{io, time::Duration};

use hyper::server::conn::http1;
use hyper_util::{
    rt::{TokioIo, TokioTimer},
    server::graceful::GracefulShutdown,
};
use tokio::net::TcpListener;

use super::forward::Forward;

/// How long the requests under way may take to finish after a stop signal.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// SIGTERM and SIGINT, listened for before the proxy says it is listening, so that a
/// signal sent right after that line stops it cleanly instead of killing it.
pub(crate) struct StopSignals {
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
}

impl StopSignals {
    pub(crate) fn listen() -> io::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(Self {
                terminate: signal(SignalKind::terminate())?,
                interrupt: signal(SignalKind::interrupt())?,
            })
        }
        #[cfg(not(unix))]
        Ok(Self {})
    }

    async fn recv(&mut self) {
        #[cfg(unix)]
        tokio::select! {
            _ = self.terminate.recv() => {}
            _ = self.interrupt.recv() => {}
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Serves `listener` with `forward` until a stop signal, then lets the requests under way
/// finish (at most [`DRAIN_TIMEOUT`]).
#[allow(clippy::print_stderr)]
pub(crate) async fn serve(listener: TcpListener, forward: Forward, mut stop: StopSignals) {
    let graceful = GracefulShutdown::new();
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => stream,
                Err(e) => {
                    // Out of file descriptors and the like: wait instead of spinning.
                    eprintln!("proxy: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = stop.recv() => break,
        };
        let _ = stream.set_nodelay(true);
        let forward = forward.clone();
        let service = hyper::service::service_fn(move |request| forward.clone().handle(request));
        let connection = http1::Builder::new()
            .timer(TokioTimer::new())
            .serve_connection(TokioIo::new(stream), service);
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            // A client that goes away mid-request is its own business.
            let _ = connection.await;
        });
    }
    drop(listener);
    eprintln!("proxy: stopping; finishing the requests under way");
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
        .await
        .is_err()
    {
        eprintln!("proxy: requests still under way after {DRAIN_TIMEOUT:?}; stopping anyway");
    }
}
