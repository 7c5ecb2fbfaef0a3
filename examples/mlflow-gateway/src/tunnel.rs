//! Upgraded (WebSocket) connections: after a `101 Switching Protocols`, bytes are copied both
//! ways between the client and the upstream until one side closes, or
//!
//! - nothing has crossed the tunnel in either direction for `--idle-timeout` (nginx's
//!   `proxy_read_timeout` and `proxy_send_timeout` in one: a WebSocket that pings stays
//!   open, a silent one is closed), or
//! - the gateway shuts down and its drain period is over: a tunnel may finish its work during
//!   the drain, like a request in flight, and is closed at its end.
//!
//! A tunnel keeps the slot of the connection it came from under `--max-connections`, so
//! WebSockets cannot open more sockets than the cap allows.

use std::{
    io,
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll},
    time::Duration,
};

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    sync::{OwnedSemaphorePermit, watch},
    time::Instant,
};

/// What a client connection hands over to a tunnel made from one of its requests. The server
/// puts it in every request's extensions; the proxy takes it out.
#[derive(Clone, Debug)]
pub(crate) struct TunnelScope {
    /// The connection's slot under `--max-connections`: released once the connection and
    /// every tunnel made from it have ended.
    slot: Arc<OwnedSemaphorePermit>,
    idle_timeout: Duration,
    /// Turns `true` when the drain period after a shutdown signal is over.
    closing: watch::Receiver<bool>,
}

impl TunnelScope {
    pub(crate) fn new(
        slot: OwnedSemaphorePermit,
        idle_timeout: Duration,
        closing: watch::Receiver<bool>,
    ) -> Self {
        Self {
            slot: Arc::new(slot),
            idle_timeout,
            closing,
        }
    }
}

/// Copies bytes both ways between the two sides of an upgrade until one closes, or, with a
/// `scope`, until the tunnel idles too long or the server closes it. Without a scope (a
/// [`Proxy`](crate::proxy::Proxy) served by other code) only the two sides end it.
pub(crate) async fn run(client: OnUpgrade, upstream: OnUpgrade, scope: Option<TunnelScope>) {
    let (client, upstream) = match tokio::try_join!(client, upstream) {
        Ok(both) => both,
        Err(error) => {
            tracing::debug!(%error, "upgrade failed");
            return;
        }
    };
    let last_traffic = Arc::new(LastTraffic::now());
    // Metering the client side sees both directions: what it sends and what it is sent.
    let mut client = Metered {
        io: TokioIo::new(client),
        last_traffic: last_traffic.clone(),
    };
    let mut upstream = TokioIo::new(upstream);
    let copy = tokio::io::copy_bidirectional(&mut client, &mut upstream);
    let Some(TunnelScope {
        slot: _slot,
        idle_timeout,
        mut closing,
    }) = scope
    else {
        return ended(copy.await);
    };
    tokio::pin!(copy);
    loop {
        let idle_deadline = last_traffic.get() + idle_timeout;
        tokio::select! {
            result = &mut copy => return ended(result),
            () = tokio::time::sleep_until(idle_deadline) => {
                if last_traffic.get().elapsed() >= idle_timeout {
                    tracing::debug!(?idle_timeout, "closing an idle upgraded connection");
                    return;
                }
            }
            // `Err` too: the server is gone.
            _ = closing.wait_for(|closing| *closing) => {
                tracing::debug!("closing an upgraded connection: the drain period is over");
                return;
            }
        }
    }
}

fn ended(result: io::Result<(u64, u64)>) {
    if let Err(error) = result {
        tracing::debug!(%error, "upgraded connection ended with an error");
    }
}

/// When bytes last crossed a tunnel.
#[derive(Debug)]
struct LastTraffic(Mutex<Instant>);

impl LastTraffic {
    fn now() -> Self {
        Self(Mutex::new(Instant::now()))
    }

    fn get(&self) -> Instant {
        *self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn touch(&self) {
        *self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Instant::now();
    }
}

/// An I/O object that records in `last_traffic` every read or write that moved bytes.
struct Metered<I> {
    io: I,
    last_traffic: Arc<LastTraffic>,
}

impl<I: AsyncRead + Unpin> AsyncRead for Metered<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.io).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.last_traffic.touch();
        }
        polled
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Metered<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(written)) if written > 0) {
            self.last_traffic.touch();
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn reads_and_writes_that_move_bytes_are_traffic() {
        let (near, mut far) = tokio::io::duplex(64);
        let last_traffic = Arc::new(LastTraffic::now());
        let started = last_traffic.get();
        let mut metered = Metered {
            io: near,
            last_traffic: last_traffic.clone(),
        };
        tokio::time::advance(Duration::from_secs(5)).await;
        metered.write_all(b"out").await.unwrap();
        let written = last_traffic.get();
        assert_eq!(written - started, Duration::from_secs(5));

        tokio::time::advance(Duration::from_secs(5)).await;
        metered.flush().await.unwrap();
        assert_eq!(last_traffic.get(), written, "a flush moves no bytes");
        far.write_all(b"in").await.unwrap();
        let mut buf = [0; 2];
        metered.read_exact(&mut buf).await.unwrap();
        assert_eq!(last_traffic.get() - written, Duration::from_secs(5));
    }
}
