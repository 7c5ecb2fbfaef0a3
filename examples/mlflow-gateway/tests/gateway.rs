//! `mlflow-gateway` against an in-process upstream on loopback: the gateway assembled by the
//! library from the binary's flags, and the binary itself where the process matters (exit
//! code, `--help`, SIGTERM, memory).

mod support;

use std::{
    convert::Infallible,
    io::Write as _,
    net::SocketAddr,
    process::{Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::{
    client::legacy::Client,
    rt::{TokioExecutor, TokioIo},
    server::conn::auto,
};
use tokio::net::TcpListener;
use tower_mlflow_tests::{ChildGuard, TempDir, free_port, wait_for_port};

/// `alice` / `mlflow-pass`, made by `openssl passwd -apr1` (reference test vector).
const HTPASSWD: &str = "alice:$apr1$abcdefgh$aDPo2xmbXHAQSzMtOEWhn/\n";
const ALICE: &str = "Basic YWxpY2U6bWxmbG93LXBhc3M="; // alice:mlflow-pass

#[derive(Default)]
struct Upstream {
    requests: AtomicUsize,
    body_bytes: AtomicU64,
}

/// An upstream that answers 201 with `x-upstream: yes` and a body listing the request line
/// and headers, after reading (and discarding) the request body.
async fn start_upstream() -> (SocketAddr, Arc<Upstream>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let state = Arc::new(Upstream::default());
    let shared = state.clone();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let state = shared.clone();
            let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                let state = state.clone();
                async move {
                    state.requests.fetch_add(1, Ordering::SeqCst);
                    let mut listing = format!("{} {}\n", request.method(), request.uri());
                    for (name, value) in request.headers() {
                        listing.push_str(&format!("{name}: {}\n", value.to_str().unwrap_or("?")));
                    }
                    let mut body = request.into_body();
                    while let Some(frame) = body.frame().await {
                        if let Ok(data) = frame.unwrap().into_data() {
                            state
                                .body_bytes
                                .fetch_add(data.len() as u64, Ordering::SeqCst);
                        }
                    }
                    let mut response = Response::new(Full::new(Bytes::from(listing)));
                    *response.status_mut() = StatusCode::CREATED;
                    response
                        .headers_mut()
                        .insert("x-upstream", "yes".parse().unwrap());
                    Ok::<_, Infallible>(response)
                }
            });
            tokio::spawn(async move {
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, state)
}

fn write_htpasswd() -> (TempDir, std::path::PathBuf) {
    let dir = TempDir::new("gateway");
    let htpasswd = dir.path().join("htpasswd");
    std::fs::File::create(&htpasswd)
        .unwrap()
        .write_all(HTPASSWD.as_bytes())
        .unwrap();
    (dir, htpasswd)
}

struct Gateway {
    _gateway: support::InProcess,
    addr: SocketAddr,
    _dir: TempDir,
}

/// The gateway, assembled in-process, with alice's htpasswd.
fn start_gateway(upstream: SocketAddr, extra: &[&str]) -> Gateway {
    let (dir, htpasswd) = write_htpasswd();
    let upstream = format!("http://{upstream}");
    let mut args = vec![
        "--upstream",
        &upstream,
        "--htpasswd",
        htpasswd.to_str().unwrap(),
    ];
    args.extend(extra);
    let gateway = support::InProcess::start(&args).unwrap();
    Gateway {
        addr: gateway.addr(),
        _gateway: gateway,
        _dir: dir,
    }
}

struct Binary {
    child: ChildGuard,
    addr: SocketAddr,
    _dir: TempDir,
}

/// The `mlflow-gateway` binary with alice's htpasswd.
fn start_binary(upstream: SocketAddr, extra: &[&str]) -> Binary {
    let (dir, htpasswd) = write_htpasswd();
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let child = ChildGuard::spawn(
        Command::new(env!("CARGO_BIN_EXE_mlflow-gateway"))
            .args(["--listen", &addr.to_string()])
            .args(["--upstream", &format!("http://{upstream}")])
            .args(["--htpasswd", htpasswd.to_str().unwrap()])
            .args(extra)
            .stdout(Stdio::null()),
    );
    wait_for_port(addr, Duration::from_secs(20));
    Binary {
        child,
        addr,
        _dir: dir,
    }
}

async fn send(
    addr: SocketAddr,
    request: http::request::Builder,
) -> (StatusCode, http::HeaderMap, String) {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let path = request.uri_ref().unwrap().clone();
    let request = request
        .uri(format!("http://{addr}{path}"))
        .body(Full::default())
        .unwrap();
    let response = client.request(request).await.unwrap();
    let (parts, body) = response.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    (
        parts.status,
        parts.headers,
        String::from_utf8_lossy(&body).into_owned(),
    )
}

#[tokio::test]
async fn refuses_to_start_without_an_authenticator() {
    let output = Command::new(env!("CARGO_BIN_EXE_mlflow-gateway"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--upstream",
            "http://127.0.0.1:9",
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("no authenticator configured"), "{stderr}");
}

#[test]
fn assemble_refuses_without_an_authenticator() {
    let error = support::InProcess::start(&["--upstream", "http://127.0.0.1:9"])
        .err()
        .expect("started without an authenticator");
    assert!(matches!(
        error,
        mlflow_gateway::AssembleError::Config(mlflow_gateway::ConfigError::NoAuthenticator)
    ));
}

#[test]
fn assemble_names_an_unreadable_htpasswd_file() {
    let error = support::InProcess::start(&[
        "--upstream",
        "http://127.0.0.1:9",
        "--htpasswd",
        "/nonexistent/htpasswd",
    ])
    .err()
    .expect("started without its htpasswd file");
    assert_eq!(
        error.to_string(),
        "cannot use the htpasswd file /nonexistent/htpasswd"
    );
    assert!(std::error::Error::source(&error).is_some());
}

#[tokio::test]
async fn help_documents_every_contract_flag() {
    let output = Command::new(env!("CARGO_BIN_EXE_mlflow-gateway"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&output.stdout);
    for flag in [
        "--listen",
        "--upstream",
        "--htpasswd",
        "--mlflow-auth-db",
        "--jwt-issuer",
        "--jwt-audience",
        "--realm",
        "--exempt ",
        "--exempt-prefix",
        "--mlflow-default-exemptions",
        "--user-header",
        "--forward-authorization",
        "--cache-ttl",
        "--users-refresh",
        "--header-timeout",
        "--idle-timeout",
        "--upstream-timeout",
        "--max-connections",
        "--tls-cert",
        "--tls-key",
        "--upstream-ca",
        "--jwt-ca-file",
        "--trusted-proxies",
        "--public-url",
    ] {
        assert!(help.contains(flag), "{flag} missing from --help:\n{help}");
    }
}

#[tokio::test]
async fn forwards_authenticated_requests_with_identity_headers() {
    let (upstream, state) = start_upstream().await;
    let gateway = start_gateway(upstream, &[]);
    let (status, headers, body) = send(
        gateway.addr,
        Request::get("/api/2.0/mlflow/experiments/get?experiment_id=0")
            .header(header::AUTHORIZATION, ALICE)
            .header("x-forwarded-user", "mallory")
            .header("x_forwarded_user", "mallory")
            .header("x-forwarded-proto", "https"),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(headers["x-upstream"], "yes");
    assert!(
        body.starts_with("GET /api/2.0/mlflow/experiments/get?experiment_id=0\n"),
        "{body}"
    );
    assert!(body.contains("x-forwarded-user: alice\n"), "{body}");
    assert!(!body.contains("mallory"), "{body}");
    assert!(!body.contains("authorization:"), "{body}");
    assert!(body.contains("x-forwarded-for: 127.0.0.1\n"), "{body}");
    assert!(body.contains("x-forwarded-proto: http\n"), "{body}");
    assert!(
        body.contains(&format!("x-forwarded-host: {}\n", gateway.addr)),
        "{body}"
    );
    assert!(body.contains(&format!("host: {upstream}\n")), "{body}");
    assert_eq!(state.requests.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn authorization_is_forwarded_only_when_asked() {
    let (upstream, _) = start_upstream().await;
    let gateway = start_gateway(
        upstream,
        &["--forward-authorization", "--user-header", "X-Mlflow-User"],
    );
    let (_, _, body) = send(
        gateway.addr,
        Request::get("/api/2.0/mlflow/experiments/search").header(header::AUTHORIZATION, ALICE),
    )
    .await;
    assert!(
        body.contains(&format!("authorization: {ALICE}\n")),
        "{body}"
    );
    assert!(body.contains("x-mlflow-user: alice\n"), "{body}");
}

#[tokio::test]
async fn unauthenticated_requests_never_reach_the_upstream() {
    let (upstream, state) = start_upstream().await;
    let gateway = start_gateway(upstream, &["--mlflow-default-exemptions"]);
    for (path, auth) in [
        ("/api/2.0/mlflow/experiments/search", None),
        (
            "/api/2.0/mlflow/experiments/search",
            Some("Basic YWxpY2U6d3Jvbmc="),
        ),
        ("/healthz", None),
        ("/%68ealth", None),
    ] {
        let mut request = Request::get(path);
        if let Some(auth) = auth {
            request = request.header(header::AUTHORIZATION, auth);
        }
        let (status, headers, _) = send(gateway.addr, request).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}");
        assert_eq!(headers[header::WWW_AUTHENTICATE], r#"Basic realm="mlflow""#);
    }
    assert_eq!(state.requests.load(Ordering::SeqCst), 0);

    let (status, _, body) = send(gateway.addr, Request::get("/health")).await;
    assert_eq!(status, StatusCode::CREATED);
    assert!(!body.contains("x-forwarded-user"), "{body}");
    assert_eq!(state.requests.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn upstream_down_is_502_for_authenticated_callers_only() {
    let closed: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let gateway = start_gateway(closed, &[]);
    let (status, _, _) = send(gateway.addr, Request::get("/api/2.0/mlflow/runs/get")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _, body) = send(
        gateway.addr,
        Request::get("/api/2.0/mlflow/runs/get").header(header::AUTHORIZATION, ALICE),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert!(body.contains("unavailable"), "{body}");
}

#[tokio::test]
async fn sigterm_stops_the_gateway_cleanly() {
    let (upstream, _) = start_upstream().await;
    let mut gateway = start_binary(upstream, &[]);
    let pid = gateway.child.0.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let mut waited = Duration::ZERO;
    let status = loop {
        if let Some(status) = gateway.child.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            waited < Duration::from_secs(30),
            "still running after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
        waited += Duration::from_millis(100);
    };
    assert!(status.success(), "{status:?}");
}

/// Peak resident memory of a process, from `/proc/<pid>/status` (`VmHWM`), in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_200_mb_upload_streams_through_in_flat_memory() {
    const CHUNK: usize = 1 << 20;
    const CHUNKS: usize = 200;
    let (upstream, state) = start_upstream().await;
    let gateway = start_binary(upstream, &[]);
    let before = peak_rss_kib(gateway.child.0.id());

    let chunks = futures_chunks(CHUNK, CHUNKS);
    let body = StreamBody::new(chunks);
    let client: Client<_, StreamBody<_>> = Client::builder(TokioExecutor::new()).build_http();
    let request = Request::put(format!(
        "http://{}/api/2.0/mlflow-artifacts/artifacts/0/big.bin",
        gateway.addr
    ))
    .header(header::AUTHORIZATION, ALICE)
    .body(body)
    .unwrap();
    let response = client.request(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let _ = response.into_body().collect().await.unwrap();

    let total = (CHUNK * CHUNKS) as u64;
    assert_eq!(state.body_bytes.load(Ordering::SeqCst), total);
    let peak = peak_rss_kib(gateway.child.0.id());
    eprintln!(
        "gateway peak RSS: {before} KiB before, {peak} KiB after streaming {} MiB",
        total >> 20
    );
    // Buffering the upload would need at least 200 MiB; streaming needs a few MiB.
    assert!(
        peak < 64 * 1024,
        "peak RSS {peak} KiB: the upload was buffered"
    );
}

/// `count` chunks of `size` bytes, produced lazily so the client does not hold them either.
fn futures_chunks(
    size: usize,
    count: usize,
) -> impl futures_util::Stream<Item = Result<Frame<Bytes>, Infallible>> + Send + Sync + 'static {
    futures_util::stream::iter((0..count).map(move |i| {
        Ok(Frame::data(Bytes::from(vec![
            u8::try_from(i % 251).unwrap();
            size
        ])))
    }))
}
