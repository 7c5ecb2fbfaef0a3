//! `mlflow-secrets proxy` as a process: the secret from the in-process Vault fake, an
//! in-process upstream that records what reaches it and accepts one bearer token at a time.
//! The peer tests with the real MLflow client are in the `tests/` crate
//! (`secrets_proxy_peers.rs`).
#![cfg(feature = "cli")]

use std::{
    convert::Infallible,
    io::{BufRead as _, BufReader},
    net::SocketAddr,
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::Duration,
};

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::{BodyExt as _, Full};
use hyper::{body::Incoming, server::conn::http1, service::service_fn};
use hyper_util::{
    client::legacy::Client,
    rt::{TokioExecutor, TokioIo},
};
use serde_json::json;

// `json_reply` is for the Azure fakes.
#[allow(dead_code)]
mod support;
#[path = "support/vault.rs"]
mod vault;

use self::vault::{FakeVault, ROOT};

/// What reached the upstream.
#[derive(Clone, Debug)]
struct Seen {
    method: String,
    path: String,
    host: String,
    authorization: String,
    body_len: usize,
}

/// A tracking server stand-in: 200 with the request's body length to `Bearer <accepted>`,
/// 401 to anything else; `/slow` answers after a second.
#[derive(Clone)]
struct Upstream {
    addr: SocketAddr,
    accepted: Arc<Mutex<&'static str>>,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Upstream {
    async fn start(accepted: &'static str) -> Self {
        Self::start_with(accepted, None).await
    }

    /// With `tls`, it speaks https only.
    async fn start_with(accepted: &'static str, tls: Option<tokio_rustls::TlsAcceptor>) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let upstream = Self {
            addr: listener.local_addr().unwrap(),
            accepted: Arc::new(Mutex::new(accepted)),
            seen: Arc::default(),
        };
        let server = upstream.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let server = server.clone();
                let tls = tls.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| {
                        let server = server.clone();
                        async move { Ok::<_, Infallible>(server.handle(req).await) }
                    });
                    let http = http1::Builder::new();
                    let _ = match tls {
                        Some(tls) => match tls.accept(stream).await {
                            Ok(stream) => {
                                http.serve_connection(TokioIo::new(stream), service).await
                            }
                            Err(_) => return,
                        },
                        None => http.serve_connection(TokioIo::new(stream), service).await,
                    };
                });
            }
        });
        upstream
    }

    async fn handle(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let (parts, body) = req.into_parts();
        let text = |name: header::HeaderName| {
            parts
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned()
        };
        let body = body.collect().await.unwrap().to_bytes();
        let seen = Seen {
            method: parts.method.to_string(),
            path: parts.uri.to_string(),
            host: text(header::HOST),
            authorization: text(header::AUTHORIZATION),
            body_len: body.len(),
        };
        self.seen.lock().unwrap().push(seen.clone());
        if seen.path.ends_with("/slow") {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        let accepted = format!("Bearer {}", self.accepted.lock().unwrap());
        let status = if seen.authorization == accepted {
            StatusCode::OK
        } else {
            StatusCode::UNAUTHORIZED
        };
        let mut response = Response::new(Full::from(body.len().to_string()));
        *response.status_mut() = status;
        response
    }

    fn accept(&self, token: &'static str) {
        *self.accepted.lock().unwrap() = token;
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

fn proxy_command(vault: &FakeVault, tracking_uri: &str, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_mlflow-secrets"));
    command
        .arg("proxy")
        .args(args)
        .env_clear()
        .env("MLFLOW_TRACKING_URI", tracking_uri)
        .env("MLFLOW_SECRETS_AUTH_ENABLE", "vault")
        .env("VAULT_ADDR", vault.url())
        .env("VAULT_TOKEN", ROOT)
        .env("MLFLOW_VAULT_SECRET_PATH", "secret/mlflow")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

/// The running proxy and the URL from its first line.
struct Proxy {
    child: Child,
    url: String,
}

impl Proxy {
    /// Blocking: call it inside `block_in_place`, the Vault fake runs on the runtime.
    fn start(vault: &FakeVault, tracking_uri: &str) -> Self {
        Self::start_with(vault, tracking_uri, &[])
    }

    fn start_with(vault: &FakeVault, tracking_uri: &str, more: &[&str]) -> Self {
        let mut args = vec!["--listen", "127.0.0.1:0", "--max-replay-body", "1024"];
        args.extend(more);
        let mut child = proxy_command(vault, tracking_uri, &args).spawn().unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        let url = line
            .trim_end()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("first line: {line:?}"))
            .to_owned();
        Self { child, url }
    }

    fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn send(proxy: &Proxy, method: &str, path: &str, body: Vec<u8>) -> (StatusCode, String) {
    let request = Request::builder()
        .method(method)
        .uri(format!("{}{path}", proxy.url))
        // What the client believes it talks to does not decide where the request goes.
        .header(header::HOST, "mlflow.client-side.example")
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    let response = Client::builder(TokioExecutor::new())
        .build_http()
        .request(request)
        .await
        .unwrap();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

fn token(value: &str) -> serde_json::Value {
    json!({ "token": value })
}

/// The Vault fake holding `tok-1`, an upstream accepting it at `base_path`, and a proxy to it.
async fn started(base_path: &str) -> (FakeVault, Upstream, Proxy) {
    let vault = FakeVault::start().await;
    vault.put("", "secret", 2, "mlflow", token("tok-1"));
    let upstream = Upstream::start("tok-1").await;
    let tracking_uri = format!("http://{}{base_path}", upstream.addr);
    let proxy = tokio::task::block_in_place(|| Proxy::start(&vault, &tracking_uri));
    (vault, upstream, proxy)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwards_under_the_base_path_with_the_credential_and_recovers_after_rotation() {
    let (vault, upstream, proxy) = started("/base/").await;

    let get = "/api/2.0/mlflow/experiments/get?experiment_id=0";
    assert_eq!(send(&proxy, "GET", get, vec![]).await.0, StatusCode::OK);
    let first = &upstream.seen()[0];
    assert_eq!(first.path, format!("/base{get}"));
    assert_eq!(first.host, upstream.addr.to_string());
    assert_eq!(first.authorization, "Bearer tok-1");

    // Rotated in both places: the small body is replayed with the new token.
    upstream.accept("tok-2");
    vault.put("", "secret", 2, "mlflow", token("tok-2"));
    let (status, body) = send(
        &proxy,
        "POST",
        "/api/2.0/mlflow/runs/log-metric",
        vec![b'x'; 100],
    )
    .await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "100"));
    let seen = upstream.seen();
    assert_eq!(seen.len(), 3);
    assert_eq!(
        (
            seen[1].authorization.as_str(),
            seen[2].authorization.as_str()
        ),
        ("Bearer tok-1", "Bearer tok-2")
    );
    assert!(
        seen[1..]
            .iter()
            .all(|s| s.method == "POST" && s.body_len == 100)
    );

    // A body over --max-replay-body streams through once, and its 401 comes back as it was.
    let put = "/api/2.0/mlflow-artifacts/artifacts/big";
    assert_eq!(send(&proxy, "PUT", put, vec![7; 65536]).await.1, "65536");
    upstream.accept("tok-3");
    let (status, _) = send(&proxy, "PUT", put, vec![7; 65536]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let seen = upstream.seen();
    assert_eq!(seen.len(), 5, "not replayed");
    assert!(seen[3..].iter().all(|s| s.body_len == 65536));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_the_request_under_way_finish_and_exits_0() {
    let (_vault, upstream, mut proxy) = started("").await;
    let slow = {
        let url = proxy.url.clone();
        tokio::spawn(async move {
            let request = Request::get(format!("{url}/slow"))
                .body(Full::new(Bytes::new()))
                .unwrap();
            Client::builder(TokioExecutor::new())
                .build_http()
                .request(request)
                .await
                .map(|response| response.status())
        })
    };
    // Terminated once the slow request has reached the upstream.
    while upstream.seen().is_empty() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    proxy.terminate();
    assert_eq!(slow.await.unwrap().unwrap(), StatusCode::OK);
    let status = tokio::task::block_in_place(|| proxy.child.wait().unwrap());
    assert!(status.success(), "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_remote_listen_addresses_and_disallowed_hosts() {
    let vault = FakeVault::start().await;
    vault.put("", "secret", 2, "mlflow", token("tok-1"));
    let run = |tracking_uri: &str, args: &[&str]| {
        let output = proxy_command(&vault, tracking_uri, args).output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert!(output.stdout.is_empty(), "{stderr}");
        (output.status.code(), stderr)
    };
    tokio::task::block_in_place(|| {
        let (code, stderr) = run("http://127.0.0.1:5000", &["--listen", "0.0.0.0:0"]);
        assert_eq!(code, Some(2));
        assert!(stderr.contains("--allow-remote"), "{stderr}");
        let output = proxy_command(&vault, "https://mlflow.example.com", &[])
            .env("MLFLOW_SECRETS_ALLOWED_HOSTS", "other.example.com")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{stderr}");
        assert!(
            stderr.contains("not allowed") && output.stdout.is_empty(),
            "{stderr}"
        );
        let (code, stderr) = run(
            "https://u:p@mlflow.example.com",
            &["--listen", "127.0.0.1:0"],
        );
        assert_eq!(code, Some(2));
        assert!(
            stderr.contains("user info") && !stderr.contains("u:p"),
            "{stderr}"
        );
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_tracking_server_is_verified_against_the_given_ca() {
    let vault = FakeVault::start().await;
    vault.put("", "secret", 2, "mlflow", token("tok-1"));
    let (acceptor, ca_pem) = support::localhost_tls();
    let upstream = Upstream::start_with("tok-1", Some(acceptor)).await;
    let tracking_uri = format!("https://localhost:{}", upstream.addr.port());
    let dir = std::env::temp_dir().join(format!("proxy-cli-ca-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca_file = dir.join("ca.pem");
    std::fs::write(&ca_file, ca_pem).unwrap();

    let ca = ca_file.to_str().unwrap();
    let trusted = tokio::task::block_in_place(|| {
        Proxy::start_with(&vault, &tracking_uri, &["--upstream-ca", ca])
    });
    let (status, _) = send(&trusted, "GET", "/health", vec![]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(upstream.seen()[0].authorization, "Bearer tok-1");

    // The public roots do not know the test CA: no request reaches the server.
    let untrusted = tokio::task::block_in_place(|| Proxy::start(&vault, &tracking_uri));
    let (status, body) = send(&untrusted, "GET", "/health", vec![]).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    let error: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(error["error_code"], "TEMPORARILY_UNAVAILABLE");
    assert_eq!(upstream.seen().len(), 1);
    let _ = std::fs::remove_dir_all(&dir);
}
