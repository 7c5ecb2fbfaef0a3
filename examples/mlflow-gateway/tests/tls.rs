//! The HTTPS listener with a CA made in the test: handshake, ALPN, `X-Forwarded-Proto`,
//! certificate reload seen by new connections, a broken new pair keeping the old one.

mod support;

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use bytes::Bytes;
use http::{Request, StatusCode, header};
use http_body_util::{BodyExt as _, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls_pki_types::{CertificateDer, ServerName};
use support::pki::{Leaf, TestCa};
use tokio::net::TcpStream;
use tokio_rustls::{TlsConnector, client::TlsStream};
use tower_mlflow_tests::TempDir;

const HTPASSWD: &str = "alice:$apr1$abcdefgh$aDPo2xmbXHAQSzMtOEWhn/\n";
const ALICE: &str = "Basic YWxpY2U6bWxmbG93LXBhc3M="; // alice:mlflow-pass

struct TlsGateway {
    gateway: support::InProcess,
    cert: PathBuf,
    key: PathBuf,
    _dir: TempDir,
}

fn write_leaf(cert: &Path, key: &Path, leaf: &Leaf) {
    std::fs::write(cert, &leaf.cert_pem).unwrap();
    std::fs::write(key, &leaf.key_pem).unwrap();
}

fn start(upstream: SocketAddr, leaf: &Leaf) -> TlsGateway {
    start_with(upstream, leaf, &[])
}

fn start_with(upstream: SocketAddr, leaf: &Leaf, extra: &[&str]) -> TlsGateway {
    let dir = TempDir::new("gateway-tls");
    let (cert, key, htpasswd) = (
        dir.path().join("tls.crt"),
        dir.path().join("tls.key"),
        dir.path().join("htpasswd"),
    );
    write_leaf(&cert, &key, leaf);
    std::fs::write(&htpasswd, HTPASSWD).unwrap();
    let upstream = format!("http://{upstream}");
    let mut args = vec![
        "--upstream",
        &upstream,
        "--htpasswd",
        htpasswd.to_str().unwrap(),
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ];
    args.extend(extra);
    let gateway = support::InProcess::start(&args).unwrap();
    TlsGateway {
        gateway,
        cert,
        key,
        _dir: dir,
    }
}

/// A TLS connection to the gateway: the stream, the negotiated ALPN protocol and the
/// certificate the gateway presented.
async fn connect(
    addr: SocketAddr,
    ca: &TestCa,
    alpn: &[&[u8]],
) -> (
    TlsStream<TcpStream>,
    Option<Vec<u8>>,
    CertificateDer<'static>,
) {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let stream = TlsConnector::from(ca.client_config(alpn))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    let (_, session) = stream.get_ref();
    let alpn = session.alpn_protocol().map(<[u8]>::to_vec);
    let cert = session.peer_certificates().unwrap()[0].clone().into_owned();
    (stream, alpn, cert)
}

type Sender1 = hyper::client::conn::http1::SendRequest<Empty<Bytes>>;

async fn http1(stream: TlsStream<TcpStream>) -> Sender1 {
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(connection);
    sender
}

async fn get1(sender: &mut Sender1) -> (StatusCode, String) {
    let request = Request::get("/api/2.0/mlflow/experiments/search")
        .header(header::HOST, "localhost")
        .header(header::AUTHORIZATION, ALICE)
        .body(Empty::new())
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// Connects until the gateway presents `expected` (true) or 10 s have passed (false).
async fn eventually_presents(addr: SocketAddr, ca: &TestCa, expected: &CertificateDer<'_>) -> bool {
    for _ in 0..100 {
        let (_, _, cert) = connect(addr, ca, &[b"http/1.1"]).await;
        if cert == *expected {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

#[tokio::test]
async fn https_with_alpn_h2_and_http1_and_forwarded_proto() {
    let ca = TestCa::new();
    let leaf = ca.leaf();
    let upstream = support::echo_upstream(None).await;
    let gateway = start(upstream, &leaf);
    let addr = gateway.gateway.addr();

    let (stream, alpn, cert) = connect(addr, &ca, &[b"h2", b"http/1.1"]).await;
    assert_eq!(alpn.as_deref(), Some(&b"h2"[..]));
    assert_eq!(cert, leaf.der);
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(connection);
    let request = Request::get("https://localhost/api/2.0/mlflow/experiments/search")
        .header(header::AUTHORIZATION, ALICE)
        .body(Empty::<Bytes>::new())
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let body = String::from_utf8_lossy(&body);
    assert!(body.contains("x-forwarded-proto: https\n"), "{body}");
    assert!(body.contains("x-forwarded-user: alice\n"), "{body}");

    let (stream, alpn, _) = connect(addr, &ca, &[b"http/1.1"]).await;
    assert_eq!(alpn.as_deref(), Some(&b"http/1.1"[..]));
    let (status, body) = get1(&mut http1(stream).await).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert!(body.contains("x-forwarded-proto: https\n"), "{body}");

    // No ALPN at all still gets HTTP/1.1.
    let (stream, alpn, _) = connect(addr, &ca, &[]).await;
    assert_eq!(alpn, None);
    assert_eq!(get1(&mut http1(stream).await).await.0, StatusCode::CREATED);
}

#[tokio::test]
async fn plain_http_is_refused_on_the_tls_port() {
    let ca = TestCa::new();
    let gateway = start(support::echo_upstream(None).await, &ca.leaf());
    let mut tcp = TcpStream::connect(gateway.gateway.addr()).await.unwrap();
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    tcp.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut seen = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut seen)).await;
    assert!(!String::from_utf8_lossy(&seen).contains("HTTP/1.1 2"));
}

#[tokio::test]
async fn a_stalled_handshake_is_closed_after_the_header_timeout() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let ca = TestCa::new();
    let gateway = start_with(
        support::echo_upstream(None).await,
        &ca.leaf(),
        &["--header-timeout", "1"],
    );
    let mut tcp = TcpStream::connect(gateway.gateway.addr()).await.unwrap();
    // The first bytes of a ClientHello record, then nothing.
    tcp.write_all(&[0x16, 0x03, 0x01]).await.unwrap();
    let mut seen = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut seen)).await;
    assert!(
        closed.is_ok(),
        "the stalled handshake was still open after 10 s"
    );
}

#[tokio::test]
async fn a_new_pair_is_used_by_new_connections_and_a_broken_one_keeps_the_old() {
    let ca = TestCa::new();
    let first = ca.leaf();
    let upstream = support::echo_upstream(None).await;
    let gateway = start(upstream, &first);
    let addr = gateway.gateway.addr();

    let (stream, _, cert) = connect(addr, &ca, &[b"http/1.1"]).await;
    assert_eq!(cert, first.der);
    let mut open = http1(stream).await;
    assert_eq!(get1(&mut open).await.0, StatusCode::CREATED);

    let second = ca.leaf();
    write_leaf(&gateway.cert, &gateway.key, &second);
    assert!(
        eventually_presents(addr, &ca, &second.der).await,
        "the new certificate was not used within 10 s"
    );
    // The connection opened before the reload is still served.
    assert_eq!(get1(&mut open).await.0, StatusCode::CREATED);

    // A broken key, then a certificate without its key: the second pair stays.
    std::fs::write(&gateway.key, "-----BEGIN PRIVATE KEY-----\nbroken\n").unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let (_, _, cert) = connect(addr, &ca, &[b"http/1.1"]).await;
    assert_eq!(cert, second.der, "a broken key replaced the certificate");
    let third = ca.leaf();
    std::fs::write(&gateway.cert, &third.cert_pem).unwrap();
    std::fs::write(&gateway.key, &first.key_pem).unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let (stream, _, cert) = connect(addr, &ca, &[b"http/1.1"]).await;
    assert_eq!(
        cert, second.der,
        "a mismatched pair replaced the certificate"
    );
    assert_eq!(get1(&mut http1(stream).await).await.0, StatusCode::CREATED);

    // Fixed: the third pair is picked up.
    std::fs::write(&gateway.key, &third.key_pem).unwrap();
    assert!(eventually_presents(addr, &ca, &third.der).await);
}

#[test]
fn a_broken_pair_at_start_names_the_file() {
    let dir = TempDir::new("gateway-tls-start");
    let (cert, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    let ca = TestCa::new();
    std::fs::write(&cert, ca.leaf().cert_pem).unwrap();
    std::fs::write(&key, "garbage").unwrap();
    std::fs::write(dir.path().join("htpasswd"), HTPASSWD).unwrap();
    let error = support::InProcess::start(&[
        "--upstream",
        "http://127.0.0.1:9",
        "--htpasswd",
        dir.path().join("htpasswd").to_str().unwrap(),
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ])
    .err()
    .expect("started with a broken key");
    assert!(error.to_string().contains(key.to_str().unwrap()), "{error}");
}

/// A plain-HTTP gateway in front of an https upstream whose certificate the test CA signed.
fn start_for_https_upstream(
    upstream: SocketAddr,
    ca_file: Option<&Path>,
) -> (support::InProcess, TempDir) {
    let dir = TempDir::new("gateway-https-upstream");
    let htpasswd = dir.path().join("htpasswd");
    std::fs::write(&htpasswd, HTPASSWD).unwrap();
    let upstream = format!("https://localhost:{}", upstream.port());
    let mut args = vec![
        "--upstream",
        &upstream,
        "--htpasswd",
        htpasswd.to_str().unwrap(),
    ];
    if let Some(ca) = ca_file {
        args.extend(["--upstream-ca", ca.to_str().unwrap()]);
    }
    (support::InProcess::start(&args).unwrap(), dir)
}

async fn get_plain(addr: SocketAddr) -> (StatusCode, String) {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(connection);
    get1(&mut sender).await
}

#[tokio::test]
async fn an_https_upstream_verified_with_upstream_ca() {
    let ca = TestCa::new();
    let upstream = support::echo_upstream(Some(ca.leaf().server_config())).await;
    let dir = TempDir::new("upstream-ca");
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca.pem()).unwrap();

    let (gateway, _dir) = start_for_https_upstream(upstream, Some(&ca_file));
    let (status, body) = get_plain(gateway.addr()).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert!(body.contains("x-forwarded-user: alice\n"), "{body}");
    assert!(body.contains("x-forwarded-proto: http\n"), "{body}");
    assert!(
        body.contains(&format!("host: localhost:{}\n", upstream.port())),
        "{body}"
    );

    // The webpki roots do not know the test CA: the upstream is refused, never used unverified.
    let (gateway, _dir) = start_for_https_upstream(upstream, None);
    let (status, body) = get_plain(gateway.addr()).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
}

#[test]
fn an_upstream_ca_without_certificates_is_refused_at_start() {
    let dir = TempDir::new("upstream-ca-empty");
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, "no certificates here\n").unwrap();
    std::fs::write(dir.path().join("htpasswd"), HTPASSWD).unwrap();
    let error = support::InProcess::start(&[
        "--upstream",
        "https://localhost:9",
        "--upstream-ca",
        ca_file.to_str().unwrap(),
        "--htpasswd",
        dir.path().join("htpasswd").to_str().unwrap(),
    ])
    .err()
    .expect("started with an empty CA bundle");
    assert_eq!(
        error.to_string(),
        format!("cannot use the upstream CA bundle {}", ca_file.display())
    );
}
