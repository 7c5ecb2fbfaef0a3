//! The real `mlflow-gateway` binary, with its log kept for the test to read, and a minimal
//! HTTP/1.1 client for it.

use std::{
    net::SocketAddr,
    path::PathBuf,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use base64::Engine as _;
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::TcpStream,
};
use tower_mlflow_tests::{ChildGuard, TempDir, free_port};

/// A running `mlflow-gateway` process; dropping it kills it.
pub struct Binary {
    child: ChildGuard,
    addr: SocketAddr,
    log: PathBuf,
    _dir: TempDir,
}

impl Binary {
    /// Starts the binary with `args` on a free loopback port (`--listen` is added), its
    /// stderr in a log file (`RUST_LOG=info`), and waits until it listens; panics with the
    /// log if it exits first or is not listening after 30 s.
    pub fn start(args: &[&str]) -> Self {
        Self::start_with_env(args, &[])
    }

    /// [`start`](Self::start) with `env` set in the binary's environment (`RUST_LOG` too).
    pub fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> Self {
        let dir = TempDir::new("gateway-binary");
        let log = dir.path().join("gateway.log");
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let stderr = std::fs::File::create(&log).expect("log file");
        let child = ChildGuard::spawn(
            Command::new(env!("CARGO_BIN_EXE_mlflow-gateway"))
                .args(["--listen", &addr.to_string()])
                .args(args)
                // The caller's `env` may set another RUST_LOG.
                .env("RUST_LOG", "info")
                .envs(env.iter().copied())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(stderr),
        );
        let mut binary = Self {
            child,
            addr,
            log,
            _dir: dir,
        };
        binary.wait_listening();
        binary
    }

    fn wait_listening(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = self.child.0.try_wait() {
                panic!("mlflow-gateway exited with {status}:\n{}", self.log());
            }
            if std::net::TcpStream::connect_timeout(&self.addr, Duration::from_millis(200)).is_ok()
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "mlflow-gateway not listening after 30 s:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Its process id (to send it signals).
    pub fn pid(&self) -> u32 {
        self.child.0.id()
    }

    /// Its address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The address its `/metrics` listener logged (start it with `--metrics-listen
    /// 127.0.0.1:0`, so no other process can take the port first); panics with the log if
    /// none is logged within 10 s.
    pub fn metrics_addr(&self) -> SocketAddr {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let log = self.log();
            let logged = log
                .lines()
                .filter(|line| line.contains("serving metrics at /metrics"))
                .find_map(|line| line.split_once("listen=")?.1.split_whitespace().next())
                .and_then(|addr| addr.parse().ok());
            if let Some(addr) = logged {
                return addr;
            }
            assert!(Instant::now() < deadline, "no metrics listener in:\n{log}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// What it has logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// `Basic base64(user:password)`.
pub fn basic(user: &str, password: &str) -> String {
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Basic {encoded}")
}

/// One HTTP/1.1 request over a fresh connection (`Connection: close`), with an optional
/// `Authorization` value and JSON body: (status, body). Status 0 if no answer came.
pub async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    authorization: Option<&str>,
    json: Option<&str>,
) -> (u16, String) {
    let Ok(mut stream) = TcpStream::connect(addr).await else {
        return (0, String::new());
    };
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(authorization) = authorization {
        head.push_str(&format!("Authorization: {authorization}\r\n"));
    }
    let body = json.unwrap_or("");
    if json.is_some() {
        head.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    head.push_str("\r\n");
    head.push_str(body);
    if stream.write_all(head.as_bytes()).await.is_err() {
        return (0, String::new());
    }
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer).await;
    let answer = String::from_utf8_lossy(&answer);
    let status = answer
        .split_whitespace()
        .nth(1)
        .and_then(|status| status.parse().ok())
        .unwrap_or(0);
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// The status of `GET path` with `authorization`.
pub async fn status(addr: SocketAddr, path: &str, authorization: &str) -> u16 {
    request(addr, "GET", path, Some(authorization), None)
        .await
        .0
}

/// Polls `check` every 100 ms until it holds or `deadline` has passed; whether it held.
pub async fn holds_within<F, Fut>(deadline: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let end = Instant::now() + deadline;
    loop {
        if check().await {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
