//! One worker's kept-alive HTTP/1 connections to the upstream.
//!
//! The gateway has one upstream, so its pool needs no key: hyper-util's legacy client pool
//! hashes a `(scheme, authority)` key with SipHash twice a request (check-out and return) and
//! spawns a task a request to wait for the connection to become idle again. Here a
//! connection goes back to its worker's list when the response body has been read to its
//! end, which is when hyper's connection task is ready for the next request, so a request
//! costs a lock of an uncontended mutex and a `Vec` pop and push.
//!
//! What the legacy client did for the gateway and this pool keeps:
//! - plain http or rustls by the upstream's scheme (the `HttpsConnector`), HTTP/1.1 only;
//! - `with_upgrades` on every connection, for WebSocket tunnels;
//! - a request that a kept-alive connection hands back unsent (the upstream had just closed
//!   it) is sent again on another connection; one that fails on a fresh connection is not;
//! - idle connections are closed after [`IDLE_TIMEOUT`];
//! - origin-form request targets (`/path?query`), authority-form for `CONNECT`.

use std::{
    fmt,
    pin::Pin,
    sync::{Arc, Mutex, MutexGuard, Weak},
    task::{Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, Uri};
use hyper::{
    body::{Body, Frame, Incoming, SizeHint},
    client::conn::http1,
};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use tokio::time::Instant;
use tower_mlflow_core::BoxError;
use tower_service::Service;

/// How long a connection may sit unused before the pool closes it; hyper-util's default.
pub(crate) const IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// The kept-alive connections of one worker thread to the upstream, for requests with bodies
/// of type `B` (the client's, in the gateway).
pub(crate) struct Pool<B: Send + 'static = Incoming> {
    connector: HttpsConnector<HttpConnector>,
    /// `scheme://authority`, what the connector dials.
    target: Uri,
    idle_timeout: Duration,
    idle: Mutex<Idle<B>>,
}

struct Idle<B> {
    /// Oldest first: a connection is pushed when it becomes idle, and the newest is used first
    /// so that the others can expire.
    senders: Vec<(http1::SendRequest<B>, Instant)>,
    /// Whether a task is on its way to close the connections that expire.
    sweeping: bool,
}

impl<B: Send + 'static> fmt::Debug for Pool<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("target", &self.target)
            .field("idle", &self.lock().senders.len())
            .finish_non_exhaustive()
    }
}

/// Why an upstream request got no response head.
#[derive(Debug)]
pub(crate) enum UpstreamError {
    /// No connection could be made (refused, unreachable, timed out, TLS).
    Connect(BoxError),
    /// The HTTP/1 handshake on a new connection failed.
    Handshake(hyper::Error),
    /// The request was sent (or its connection failed while it was) and no head came back.
    Send(hyper::Error),
}

impl fmt::Display for UpstreamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Connect(error) => write!(f, "cannot connect: {error}"),
            Self::Handshake(error) => write!(f, "HTTP/1 handshake failed: {error}"),
            Self::Send(error) => write!(f, "no response: {error}"),
        }
    }
}

impl std::error::Error for UpstreamError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Connect(error) => Some(&**error),
            Self::Handshake(error) | Self::Send(error) => Some(error),
        }
    }
}

impl<B> Pool<B>
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    /// A pool of connections made by `connector` to `target` (`scheme://authority`).
    pub(crate) fn new(connector: HttpsConnector<HttpConnector>, target: Uri) -> Self {
        Self::with_idle_timeout(connector, target, IDLE_TIMEOUT)
    }

    fn with_idle_timeout(
        connector: HttpsConnector<HttpConnector>,
        target: Uri,
        idle_timeout: Duration,
    ) -> Self {
        Self {
            connector,
            target,
            idle_timeout,
            idle: Mutex::new(Idle {
                senders: Vec::new(),
                sweeping: false,
            }),
        }
    }

    /// Sends `request` (its URI an origin-form path, or anything for `CONNECT`) on an idle
    /// connection, or a new one, and gives back the response with a body that returns the
    /// connection to the pool once read to its end.
    pub(crate) async fn send(
        self: Arc<Self>,
        mut request: Request<B>,
    ) -> Result<Response<PooledBody<B>>, UpstreamError> {
        let connect = request.method() == Method::CONNECT;
        if connect {
            // What hyper-util's client sends for CONNECT: the authority alone.
            if let Some(authority) = self.target.authority() {
                *request.uri_mut() = Uri::from(authority.clone());
            }
        }
        loop {
            let (mut sender, reused) = match self.checkout() {
                Some(sender) => (sender, true),
                // Boxed: the connector's and the handshake's states are most of a kilobyte and a
                // half, needed once a connection but otherwise carried (and moved, as the
                // future is built, wrapped in a timeout and boxed) by every request's future.
                None => (Box::pin(self.connect()).await?, false),
            };
            match sender.try_send_request(request).await {
                Ok(response) => {
                    let reusable = !connect && response.status() != StatusCode::SWITCHING_PROTOCOLS;
                    let (parts, body) = response.into_parts();
                    let mut body = PooledBody {
                        inner: body,
                        lease: reusable.then(|| Lease { sender, pool: self }),
                    };
                    if body.inner.is_end_stream() {
                        body.release();
                    }
                    return Ok(Response::from_parts(parts, body));
                }
                Err(mut error) => match error.take_message() {
                    // Never written: the kept-alive connection had just been closed.
                    Some(unsent) if reused => {
                        tracing::debug!(error = %error.error(), "upstream connection closed; sending again");
                        request = unsent;
                    }
                    _ => return Err(UpstreamError::Send(error.into_error())),
                },
            }
        }
    }

    /// The newest idle connection that is ready for a request; closed and expired ones are
    /// dropped on the way. One still finishing its last exchange stays for later.
    fn checkout(&self) -> Option<http1::SendRequest<B>> {
        let mut idle = self.lock();
        if idle.senders.is_empty() {
            return None;
        }
        let now = Instant::now();
        let mut index = idle.senders.len();
        while index > 0 {
            index -= 1;
            let (sender, since) = &idle.senders[index];
            if sender.is_closed() || now.duration_since(*since) >= self.idle_timeout {
                idle.senders.remove(index);
            } else if sender.is_ready() {
                return Some(idle.senders.remove(index).0);
            }
        }
        None
    }

    /// A new connection, its task spawned on this worker's runtime.
    async fn connect(&self) -> Result<http1::SendRequest<B>, UpstreamError> {
        let mut connector = self.connector.clone();
        std::future::poll_fn(|cx| connector.poll_ready(cx))
            .await
            .map_err(UpstreamError::Connect)?;
        let io = connector
            .call(self.target.clone())
            .await
            .map_err(UpstreamError::Connect)?;
        let (sender, connection) = http1::Builder::new()
            .handshake(io)
            .await
            .map_err(UpstreamError::Handshake)?;
        tokio::spawn(async move {
            if let Err(error) = connection.with_upgrades().await {
                tracing::debug!(%error, "upstream connection ended with an error");
            }
        });
        Ok(sender)
    }
}

impl<B: Send + 'static> Pool<B> {
    fn lock(&self) -> MutexGuard<'_, Idle<B>> {
        // A panic while the list is held leaves it consistent: every change is one call.
        self.idle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Keeps `sender` for the next request, and makes sure a task will close it if it is
    /// not used within the idle timeout.
    fn put(self: &Arc<Self>, sender: http1::SendRequest<B>) {
        if sender.is_closed() {
            return;
        }
        // The sweeper runs on this worker's runtime; off any runtime, nothing could close
        // the connection later, so it is closed now.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let mut idle = self.lock();
        idle.senders.push((sender, Instant::now()));
        if !idle.sweeping {
            idle.sweeping = true;
            runtime.spawn(sweep(Arc::downgrade(self)));
        }
    }

    /// Drops the expired and closed connections; the time the oldest left expires, or `None`
    /// (and no more sweeping) when none is left.
    fn evict(&self) -> Option<Instant> {
        let mut idle = self.lock();
        let now = Instant::now();
        let timeout = self.idle_timeout;
        idle.senders
            .retain(|(sender, since)| !sender.is_closed() && now.duration_since(*since) < timeout);
        let next = idle.senders.first().map(|(_, since)| *since + timeout);
        idle.sweeping = next.is_some();
        next
    }

    #[cfg(test)]
    fn idle_len(&self) -> usize {
        self.lock().senders.len()
    }
}

/// Closes a pool's idle connections as they expire, until none is left (a later
/// [`Pool::put`] starts another); ends with the pool.
async fn sweep<B: Send + 'static>(weak: Weak<Pool<B>>) {
    let mut deadline = match weak.upgrade() {
        Some(pool) => Instant::now() + pool.idle_timeout,
        None => return,
    };
    loop {
        tokio::time::sleep_until(deadline).await;
        let Some(pool) = weak.upgrade() else { return };
        match pool.evict() {
            Some(next) => deadline = next,
            None => return,
        }
    }
}

/// A connection on loan to one response.
struct Lease<B: Send + 'static> {
    sender: http1::SendRequest<B>,
    pool: Arc<Pool<B>>,
}

/// An upstream response body that gives its connection back to the pool at its end. Dropped
/// before its end, the connection is closed: the rest of the body is unread.
pub(crate) struct PooledBody<B: Send + 'static = Incoming> {
    inner: Incoming,
    lease: Option<Lease<B>>,
}

impl<B: Send + 'static> PooledBody<B> {
    fn release(&mut self) {
        if let Some(Lease { sender, pool }) = self.lease.take() {
            pool.put(sender);
        }
    }
}

impl<B: Send + 'static> fmt::Debug for PooledBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PooledBody")
            .field("pooled", &self.lease.is_some())
            .finish_non_exhaustive()
    }
}

impl<B> Body for PooledBody<B>
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        let frame = std::task::ready!(Pin::new(&mut this.inner).poll_frame(cx));
        match &frame {
            None => this.release(),
            Some(Ok(_)) if this.inner.is_end_stream() => this.release(),
            // An error ends the exchange: the connection is not reused.
            Some(Err(_)) => this.lease = None,
            Some(Ok(_)) => {}
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<B: Send + 'static> Drop for PooledBody<B> {
    fn drop(&mut self) {
        // hyper stops polling a body that says it has ended, so its end may only show here.
        if self.inner.is_end_stream() {
            self.release();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::{
        convert::Infallible,
        sync::atomic::{AtomicUsize, Ordering},
    };

    use http_body_util::{BodyExt, Empty, Full};
    use hyper::{server::conn::http1 as server, service::service_fn};
    use hyper_util::rt::TokioIo;
    use tokio::{
        io::{AsyncReadExt, AsyncWriteExt},
        net::TcpListener,
    };

    use super::*;
    use crate::upstream::{UpstreamRoots, connector};

    type Body = Empty<Bytes>;

    /// An upstream that answers `GET /N` with N bytes (chunked for `/chunked`) and counts the
    /// connections it accepted.
    async fn upstream() -> (Uri, Arc<AtomicUsize>) {
        let (listener, target) = listener().await;
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&accepted);
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                counter.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let service =
                        service_fn(|request: Request<Incoming>| async move {
                            let path = request.uri().path().trim_start_matches('/');
                            let body =
                                match path.parse::<usize>() {
                                    Ok(len) => Full::new(Bytes::from(vec![b'x'; len])).boxed(),
                                    // No length: hyper sends it chunked.
                                    Err(_) => http_body_util::StreamBody::new(
                                        futures_util::stream::iter([Ok::<_, Infallible>(
                                            Frame::data(Bytes::from_static(b"chunk")),
                                        )]),
                                    )
                                    .boxed(),
                                };
                            Ok::<_, Infallible>(Response::new(body))
                        });
                    let _ = server::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        (target, accepted)
    }

    /// A listener on a free loopback port, and its `http://` URL.
    async fn listener() -> (TcpListener, Uri) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let target = format!("http://{}/", listener.local_addr().unwrap())
            .parse()
            .unwrap();
        (listener, target)
    }

    /// Reads a request head (one read is enough for these) and answers `ok`.
    async fn answer_ok(stream: &mut tokio::net::TcpStream) {
        let mut head = [0; 1024];
        let _ = stream.read(&mut head).await;
        let _ = stream
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
            .await;
    }

    fn pool(target: Uri, idle_timeout: Duration) -> Arc<Pool<Body>> {
        Arc::new(Pool::with_idle_timeout(
            connector(&UpstreamRoots::webpki()),
            target,
            idle_timeout,
        ))
    }

    fn get(path: &str, target: &Uri) -> Request<Body> {
        Request::get(path)
            .header(http::header::HOST, target.authority().unwrap().as_str())
            .body(Empty::new())
            .unwrap()
    }

    async fn read(response: Response<PooledBody<Body>>) -> Bytes {
        response.into_body().collect().await.unwrap().to_bytes()
    }

    #[tokio::test]
    async fn a_connection_read_to_its_end_is_used_again() {
        let (target, accepted) = upstream().await;
        let pool = pool(target.clone(), IDLE_TIMEOUT);
        for path in ["/3", "/0", "/chunked", "/70000", "/1"] {
            let response = Arc::clone(&pool).send(get(path, &target)).await.unwrap();
            assert_eq!(response.status(), StatusCode::OK, "{path}");
            let body = read(response).await;
            assert!(!body.is_empty() || path == "/0", "{path}");
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
        assert_eq!(pool.idle_len(), 1);
    }

    #[tokio::test]
    async fn a_body_dropped_before_its_end_takes_its_connection_with_it() {
        let (target, accepted) = upstream().await;
        let pool = pool(target.clone(), IDLE_TIMEOUT);
        let response = Arc::clone(&pool)
            .send(get("/1000000", &target))
            .await
            .unwrap();
        drop(response);
        assert_eq!(pool.idle_len(), 0);
        let response = Arc::clone(&pool).send(get("/5", &target)).await.unwrap();
        assert_eq!(read(response).await.len(), 5);
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn requests_at_once_get_connections_of_their_own() {
        let (target, accepted) = upstream().await;
        let pool = pool(target.clone(), IDLE_TIMEOUT);
        let first = Arc::clone(&pool).send(get("/10", &target)).await.unwrap();
        // The first body is unread: its connection is busy.
        let second = Arc::clone(&pool).send(get("/10", &target)).await.unwrap();
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
        assert_eq!(read(second).await.len(), 10);
        assert_eq!(read(first).await.len(), 10);
        assert_eq!(pool.idle_len(), 2);
    }

    #[tokio::test]
    async fn idle_connections_are_closed_after_the_idle_timeout() {
        let (listener, target) = listener().await;
        let pool = pool(target.clone(), Duration::from_millis(300));
        let request = tokio::spawn(Arc::clone(&pool).send(get("/", &target)));
        let (mut stream, _) = listener.accept().await.unwrap();
        answer_ok(&mut stream).await;
        let mut head = [0; 1];
        assert_eq!(read(request.await.unwrap().unwrap()).await, "ok");
        assert_eq!(pool.idle_len(), 1);
        // The sweeper drops the connection: the upstream reads its end.
        let eof = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut head))
            .await
            .expect("the idle connection is closed within the timeout");
        assert_eq!(eof.unwrap(), 0);
        assert_eq!(pool.idle_len(), 0);
    }

    #[tokio::test]
    async fn an_upstream_that_closes_kept_alive_connections_costs_no_request() {
        // Answers one request a connection and closes it without saying so, as an upstream
        // whose keep-alive timeout has just run out does.
        let (listener, target) = listener().await;
        tokio::spawn(async move {
            loop {
                let (mut stream, _) = listener.accept().await.unwrap();
                answer_ok(&mut stream).await;
            }
        });
        let pool = pool(target.clone(), IDLE_TIMEOUT);
        for round in 0..50 {
            let response = Arc::clone(&pool).send(get("/", &target)).await;
            let response = response.unwrap_or_else(|e| panic!("request {round}: {e}"));
            assert_eq!(read(response).await, "ok", "request {round}");
        }
    }

    #[tokio::test]
    async fn an_unreachable_upstream_is_a_connect_error() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let target: Uri = format!("http://{}/", listener.local_addr().unwrap())
            .parse()
            .unwrap();
        drop(listener);
        let pool = pool(target.clone(), IDLE_TIMEOUT);
        let error = Arc::clone(&pool).send(get("/", &target)).await.unwrap_err();
        assert!(matches!(error, UpstreamError::Connect(_)), "{error:?}");
        assert!(error.to_string().starts_with("cannot connect: "), "{error}");
    }
}
