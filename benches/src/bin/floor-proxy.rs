//! The floor of `scripts/bench-http` section e: the smallest reverse proxy hyper and tokio
//! allow, with no middleware, so that the gap between nginx and `mlflow-gateway` splits into
//! what this stack costs and what the gateway adds.
//!
//! ```text
//! floor-proxy --listen 127.0.0.1:9000 --upstream 127.0.0.1:9001 [--workers 2]
//! ```
//!
//! `--workers` threads (default: the number of cores), each a `current_thread` runtime with
//! its own `SO_REUSEPORT` listener and its own list of idle upstream connections
//! (`hyper::client::conn::http1`), as the gateway's workers have since its own pool replaced
//! hyper-util's legacy client; HTTP/1 only. Here the list is a worker's alone, on a
//! `LocalSet`, so it needs no lock. Method, origin-form target, headers and body go to the
//! upstream unchanged and the response streams back; a connection goes back to the list when
//! its response body has been read to the end. An upstream failure is a 502 (no retry: this
//! is a benchmark's floor, not a proxy to deploy).

use std::{
    cell::RefCell,
    convert::Infallible,
    io,
    net::SocketAddr,
    num::NonZeroUsize,
    pin::Pin,
    process::ExitCode,
    rc::Rc,
    task::{Context, Poll},
    thread::{self, JoinHandle},
};

use hyper::{
    Request, Response, StatusCode,
    body::{Body, Bytes, Frame, Incoming, SizeHint},
    client::conn::http1::{self as client, SendRequest},
    server::conn::http1,
    service::service_fn,
};
use hyper_util::rt::TokioIo;
use tokio::{
    net::{TcpListener, TcpSocket, TcpStream},
    task::LocalSet,
};

const USAGE: &str = "usage: floor-proxy --listen ADDR --upstream HOST:PORT [--workers N]";

#[derive(Debug)]
struct Args {
    listen: SocketAddr,
    upstream: hyper::http::uri::Authority,
    workers: NonZeroUsize,
}

fn parse_args() -> Result<Args, String> {
    let (mut listen, mut upstream, mut workers) = (None, None, None);
    let raw: Vec<String> = std::env::args().skip(1).collect();
    for pair in raw.chunks(2) {
        let [flag, value] = pair else {
            return Err(format!("{} needs a value\n{USAGE}", pair[0]));
        };
        let bad = |e: &dyn std::fmt::Display| format!("{flag} {value}: {e}");
        match flag.as_str() {
            "--listen" => listen = Some(value.parse().map_err(|e| bad(&e))?),
            "--upstream" => upstream = Some(value.parse().map_err(|e| bad(&e))?),
            "--workers" => workers = Some(value.parse().map_err(|e| bad(&e))?),
            _ => return Err(format!("unknown flag {flag}\n{USAGE}")),
        }
    }
    let workers = match workers {
        Some(workers) => workers,
        None => thread::available_parallelism().map_err(|e| format!("--workers: {e}"))?,
    };
    Ok(Args {
        listen: listen.ok_or(USAGE)?,
        upstream: upstream.ok_or(USAGE)?,
        workers,
    })
}

/// `workers` listening sockets on `addr`, all with `SO_REUSEPORT` (the kernel spreads the
/// connections); for port 0, the first one's port.
fn listeners(addr: SocketAddr, workers: NonZeroUsize) -> io::Result<Vec<std::net::TcpListener>> {
    // tokio's `listen` registers the socket with a runtime; `into_std` takes it back out, so
    // that each worker registers its own with its own runtime.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()?;
    let _entered = runtime.enter();
    let mut bound = addr;
    (0..workers.get())
        .map(|_| {
            let socket = match bound {
                SocketAddr::V4(_) => TcpSocket::new_v4()?,
                SocketAddr::V6(_) => TcpSocket::new_v6()?,
            };
            socket.set_reuseaddr(true)?;
            socket.set_reuseport(true)?;
            socket.bind(bound)?;
            bound = socket.local_addr()?;
            socket.listen(1024)?.into_std()
        })
        .collect()
}

/// A worker's idle upstream connections, the most recently used last.
type Idle = Rc<RefCell<Vec<SendRequest<Incoming>>>>;

/// The upstream's response body, which hands its connection back to the worker's list at
/// its end; or the 502's (empty).
enum FloorBody {
    Upstream {
        body: Incoming,
        connection: Option<(SendRequest<Incoming>, Idle)>,
    },
    Empty,
}

impl Body for FloorBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            Self::Upstream { body, connection } => {
                let frame = Pin::new(&mut *body).poll_frame(cx);
                let ended = match &frame {
                    Poll::Ready(None) => true,
                    Poll::Ready(Some(Ok(_))) => body.is_end_stream(),
                    // A failed body leaves its connection unusable: dropped below, never reused.
                    Poll::Ready(Some(Err(_))) => {
                        connection.take();
                        false
                    }
                    Poll::Pending => false,
                };
                if ended && let Some((sender, idle)) = connection.take() {
                    idle.borrow_mut().push(sender);
                }
                frame
            }
            Self::Empty => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::Upstream { body, .. } => body.is_end_stream(),
            Self::Empty => true,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Self::Upstream { body, .. } => body.size_hint(),
            Self::Empty => SizeHint::with_exact(0),
        }
    }
}

/// A new HTTP/1 connection to `upstream`, its driver spawned on the worker's `LocalSet`.
async fn connect(upstream: &str) -> Option<SendRequest<Incoming>> {
    let stream = TcpStream::connect(upstream).await.ok()?;
    stream.set_nodelay(true).ok()?;
    let (sender, connection) = client::handshake(TokioIo::new(stream)).await.ok()?;
    tokio::task::spawn_local(async move {
        let _ = connection.await;
    });
    Some(sender)
}

/// Sends `request` on an idle connection (dropping those the upstream closed) or a new one.
async fn forward(
    idle: Idle,
    upstream: Rc<str>,
    request: Request<Incoming>,
) -> Option<Response<FloorBody>> {
    let mut sender = loop {
        let reused = idle.borrow_mut().pop();
        match reused {
            Some(mut sender) => {
                if sender.ready().await.is_ok() {
                    break sender;
                }
            }
            None => break connect(&upstream).await?,
        }
    };
    let response = sender.send_request(request).await.ok()?;
    let (head, body) = response.into_parts();
    let connection = if body.is_end_stream() {
        idle.borrow_mut().push(sender);
        None
    } else {
        Some((sender, idle))
    };
    Some(Response::from_parts(
        head,
        FloorBody::Upstream { body, connection },
    ))
}

/// One worker: its runtime, its listener, its idle connections.
fn worker(
    listener: std::net::TcpListener,
    upstream: hyper::http::uri::Authority,
) -> io::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    LocalSet::new().block_on(&runtime, async move {
        let listener = TcpListener::from_std(listener)?;
        let idle: Idle = Rc::default();
        let upstream: Rc<str> = Rc::from(upstream.as_str());
        loop {
            let (stream, _) = listener.accept().await?;
            let _ = stream.set_nodelay(true);
            let (idle, upstream) = (Rc::clone(&idle), Rc::clone(&upstream));
            tokio::task::spawn_local(async move {
                let service = service_fn(move |request: Request<Incoming>| {
                    let forwarded = forward(Rc::clone(&idle), Rc::clone(&upstream), request);
                    async move {
                        Ok::<_, Infallible>(forwarded.await.unwrap_or_else(|| {
                            let mut bad = Response::new(FloorBody::Empty);
                            *bad.status_mut() = StatusCode::BAD_GATEWAY;
                            bad
                        }))
                    }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    })
}

fn main() -> ExitCode {
    let started = parse_args().and_then(|args| {
        let sockets = listeners(args.listen, args.workers)
            .map_err(|e| format!("listen on {}: {e}", args.listen))?;
        Ok(sockets
            .into_iter()
            .map(|socket| {
                let upstream = args.upstream.clone();
                thread::spawn(move || worker(socket, upstream))
            })
            .collect::<Vec<JoinHandle<io::Result<()>>>>())
    });
    let workers = match started {
        Ok(workers) => workers,
        Err(error) => {
            eprintln!("floor-proxy: {error}");
            return ExitCode::from(2);
        }
    };
    // Workers run until the process is stopped; one that ends has failed.
    for worker in workers {
        if let Ok(Err(error)) = worker.join() {
            eprintln!("floor-proxy: worker: {error}");
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}
