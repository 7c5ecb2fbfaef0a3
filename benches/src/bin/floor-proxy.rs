//! The floor of `scripts/bench-http` section e: the smallest reverse proxy hyper and tokio
//! allow, with no middleware, so that the gap between nginx and `mlflow-gateway` splits into
//! what this stack costs and what the gateway adds.
//!
//! ```text
//! floor-proxy --listen 127.0.0.1:9000 --upstream 127.0.0.1:9001 [--workers 2]
//! ```
//!
//! `--workers` threads (default: the number of cores), each a `current_thread` runtime with
//! its own `SO_REUSEPORT` listener and its own pooled hyper-util client, as the gateway's
//! workers; HTTP/1 only. Method, path, headers and body go to the upstream unchanged and the
//! response streams back; an upstream failure is a 502.

use std::{
    convert::Infallible,
    io,
    net::SocketAddr,
    num::NonZeroUsize,
    process::ExitCode,
    thread::{self, JoinHandle},
};

use hyper::{
    Request, Response, StatusCode, Uri,
    body::{Body, Bytes, Frame, Incoming, SizeHint},
    server::conn::http1,
    service::service_fn,
};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::{TokioExecutor, TokioIo},
};
use tokio::net::{TcpListener, TcpSocket};

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

/// The upstream's response body, or the 502's (empty).
enum FloorBody {
    Upstream(Incoming),
    Empty,
}

impl Body for FloorBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            Self::Upstream(body) => std::pin::Pin::new(body).poll_frame(cx),
            Self::Empty => std::task::Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::Upstream(body) => body.is_end_stream(),
            Self::Empty => true,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Self::Upstream(body) => body.size_hint(),
            Self::Empty => SizeHint::with_exact(0),
        }
    }
}

/// One worker: its runtime, its listener, its client.
fn worker(
    listener: std::net::TcpListener,
    upstream: hyper::http::uri::Authority,
) -> io::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = TcpListener::from_std(listener)?;
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let client: Client<HttpConnector, Incoming> =
            Client::builder(TokioExecutor::new()).build(connector);
        loop {
            let (stream, _) = listener.accept().await?;
            let _ = stream.set_nodelay(true);
            let (client, upstream) = (client.clone(), upstream.clone());
            tokio::spawn(async move {
                let service = service_fn(move |mut request: Request<Incoming>| {
                    let mut uri = Uri::builder().scheme("http").authority(upstream.clone());
                    if let Some(path) = request.uri().path_and_query() {
                        uri = uri.path_and_query(path.clone());
                    }
                    let forwarded = uri.build().map(|uri| {
                        *request.uri_mut() = uri;
                        client.request(request)
                    });
                    async move {
                        let response = match forwarded {
                            Ok(forwarded) => forwarded.await.ok(),
                            Err(_) => None,
                        };
                        Ok::<_, Infallible>(match response {
                            Some(response) => response.map(FloorBody::Upstream),
                            None => {
                                let mut bad = Response::new(FloorBody::Empty);
                                *bad.status_mut() = StatusCode::BAD_GATEWAY;
                                bad
                            }
                        })
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
