//! The gateway in-process, built by the library's `assemble` from the same flags the binary
//! takes, on its own runtime thread (so both sync and async tests can use it).

#![allow(dead_code, unreachable_pub)]

pub mod binary;
pub mod browser_client;
pub mod gateway;
pub mod oidc_login;
pub mod pki;
pub mod webdriver;
pub mod websocket;

use std::{net::SocketAddr, sync::mpsc, thread};

use clap::Parser as _;
use mlflow_gateway::{AssembleError, Flags, assemble};
use tokio::sync::oneshot;

/// A running gateway; dropping it shuts it down.
pub struct InProcess {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
}

impl InProcess {
    /// Parses `args` (without the program name) like the binary, assembles and serves.
    /// `--listen` defaults to `127.0.0.1:0`.
    pub fn start(args: &[&str]) -> Result<Self, AssembleError> {
        let mut argv = vec!["mlflow-gateway"];
        if !args.contains(&"--listen") {
            argv.extend(["--listen", "127.0.0.1:0"]);
        }
        argv.extend(args);
        let config = Flags::try_parse_from(&argv)
            .unwrap_or_else(|e| panic!("{e}"))
            .into_config()
            .map_err(AssembleError::Config)?;
        let (ready_tx, ready_rx) = mpsc::channel();
        let (stop, stopped) = oneshot::channel::<()>();
        thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                match assemble(&config).await {
                    Ok(gateway) => {
                        let _ = ready_tx.send(Ok(gateway.local_addr()));
                        gateway
                            .serve(async {
                                let _ = stopped.await;
                            })
                            .await;
                    }
                    Err(error) => {
                        let _ = ready_tx.send(Err(error));
                    }
                }
            });
        });
        let addr = ready_rx.recv().expect("the gateway thread died")?;
        Ok(Self {
            addr,
            stop: Some(stop),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// An upstream that answers 201 with a body listing the request line and headers; over TLS
/// with `tls`.
pub async fn echo_upstream(tls: Option<std::sync::Arc<rustls::ServerConfig>>) -> SocketAddr {
    use http_body_util::{BodyExt as _, Full};
    use hyper_util::rt::{TokioExecutor, TokioIo};

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    |request: http::Request<hyper::body::Incoming>| async move {
                        let mut listing = format!("{} {}\n", request.method(), request.uri());
                        for (name, value) in request.headers() {
                            let value = value.to_str().unwrap_or("?");
                            listing.push_str(&format!("{name}: {value}\n"));
                        }
                        let _ = request.into_body().collect().await;
                        let mut response =
                            http::Response::new(Full::new(bytes::Bytes::from(listing)));
                        *response.status_mut() = http::StatusCode::CREATED;
                        Ok::<_, std::convert::Infallible>(response)
                    },
                );
                let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                match acceptor {
                    Some(acceptor) => {
                        if let Ok(stream) = acceptor.accept(stream).await {
                            let _ = builder
                                .serve_connection(TokioIo::new(stream), service)
                                .await;
                        }
                    }
                    None => {
                        let _ = builder
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    }
                }
            });
        }
    });
    addr
}

/// Writes `path` with one bcrypt (cost 5) line for `user`, made by Apache `htpasswd -B`.
pub fn htpasswd_bcrypt(path: &std::path::Path, user: &str, password: &str) {
    let made = std::process::Command::new("htpasswd")
        .args(["-cbB", "-C", "5"])
        .arg(path)
        .args([user, password])
        .output()
        .unwrap();
    assert!(made.status.success(), "{made:?}");
}
