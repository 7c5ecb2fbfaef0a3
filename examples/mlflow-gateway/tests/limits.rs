//! Timeouts and the connection cap, by behaviour against the assembled gateway on loopback;
//! WebSocket tunnels are bounded by the same limits.

mod support;

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use support::websocket::{WebSocketUpstream, echo_through, upgrade};
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{TcpListener, TcpStream},
};
use tower_mlflow_tests::{TempDir, free_port};

const HTPASSWD: &str = "alice:$apr1$abcdefgh$aDPo2xmbXHAQSzMtOEWhn/\n";
const ALICE: &str = "Basic YWxpY2U6bWxmbG93LXBhc3M="; // alice:mlflow-pass

fn start(upstream: SocketAddr, extra: &[&str]) -> (support::InProcess, TempDir) {
    let dir = TempDir::new("gateway-limits");
    let fixture = support::gateway::Fixture::with_upstream(&dir, HTPASSWD, upstream);
    let args = [&["--mlflow-default-exemptions"][..], extra].concat();
    (fixture.in_process(&args), dir)
}

fn closed_port() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], free_port()))
}

/// Reads until the peer closes (`Some(bytes read)`), or `None` if it is still open after
/// `within`.
async fn read_until_closed(stream: &mut TcpStream, within: Duration) -> Option<Vec<u8>> {
    let mut seen = Vec::new();
    let read = async {
        let mut buf = [0; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(within, read).await.ok()?;
    Some(seen)
}

#[tokio::test]
async fn half_a_request_head_is_closed_after_the_header_timeout() {
    let (gateway, _dir) = start(closed_port(), &["--header-timeout", "1"]);
    let mut stream = TcpStream::connect(gateway.addr()).await.unwrap();
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: gateway\r\nX-Slow: ")
        .await
        .unwrap();
    let started = Instant::now();
    let seen = read_until_closed(&mut stream, Duration::from_secs(10))
        .await
        .expect("the half-sent head was still open after 10 s");
    assert!(started.elapsed() >= Duration::from_millis(900));
    // hyper closes without a response; nothing else may come back.
    let text = String::from_utf8_lossy(&seen);
    assert!(
        text.is_empty() || text.starts_with("HTTP/1.1 408"),
        "{text}"
    );
}

#[tokio::test]
async fn a_silent_client_is_closed_after_the_header_timeout() {
    let (gateway, _dir) = start(closed_port(), &["--header-timeout", "1"]);
    let mut stream = TcpStream::connect(gateway.addr()).await.unwrap();
    let seen = read_until_closed(&mut stream, Duration::from_secs(10)).await;
    assert_eq!(seen.as_deref(), Some(&b""[..]), "still open after 10 s");
}

#[tokio::test]
async fn a_complete_request_is_served_within_the_header_timeout() {
    let (gateway, _dir) = start(closed_port(), &["--header-timeout", "1"]);
    let mut stream = TcpStream::connect(gateway.addr()).await.unwrap();
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: gateway\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let seen = read_until_closed(&mut stream, Duration::from_secs(10))
        .await
        .unwrap();
    // The upstream is down: the gateway's own 502 shows the request was served.
    let text = String::from_utf8_lossy(&seen);
    assert!(text.starts_with("HTTP/1.1 502"), "{text}");
}

#[tokio::test]
async fn an_upstream_that_never_answers_is_a_504() {
    let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream = silent.local_addr().unwrap();
    // Accept and hold every connection without ever answering.
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = silent.accept().await {
            held.push(stream);
        }
    });
    let (gateway, _dir) = start(upstream, &["--upstream-timeout", "1"]);
    let mut stream = TcpStream::connect(gateway.addr()).await.unwrap();
    let request = format!(
        "GET /api/2.0/mlflow/experiments/search HTTP/1.1\r\nHost: gateway\r\n\
         Authorization: {ALICE}\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let seen = read_until_closed(&mut stream, Duration::from_secs(20))
        .await
        .expect("no answer after 20 s");
    let text = String::from_utf8_lossy(&seen);
    assert!(text.starts_with("HTTP/1.1 504"), "{text}");
    assert!(text.contains("did not answer in time"), "{text}");
}

#[tokio::test]
async fn beyond_max_connections_a_connection_waits_until_one_closes() {
    let (gateway, _dir) = start(closed_port(), &["--max-connections", "2"]);
    let first = TcpStream::connect(gateway.addr()).await.unwrap();
    let _second = TcpStream::connect(gateway.addr()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;

    // The kernel completes the handshake (backlog), but the gateway does not accept it.
    let mut third = TcpStream::connect(gateway.addr()).await.unwrap();
    third
        .write_all(b"GET /health HTTP/1.1\r\nHost: gateway\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0; 64];
    let early = tokio::time::timeout(Duration::from_secs(1), third.read(&mut buf)).await;
    assert!(early.is_err(), "the third connection was served: {early:?}");

    drop(first);
    let seen = read_until_closed(&mut third, Duration::from_secs(10))
        .await
        .expect("the third connection was not served after one closed");
    let text = String::from_utf8_lossy(&seen);
    assert!(text.starts_with("HTTP/1.1 502"), "{text}");
}

/// An upstream that answers every request on a connection after `delay`, keeping it alive.
async fn slow_keep_alive_upstream(delay: Duration) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0; 4096];
                while matches!(stream.read(&mut buf).await, Ok(n) if n > 0) {
                    tokio::time::sleep(delay).await;
                    let answer = b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nslow";
                    if stream.write_all(answer).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

#[tokio::test]
async fn shutdown_lets_a_request_in_flight_finish() {
    let upstream = slow_keep_alive_upstream(Duration::from_secs(1)).await;
    let (gateway, _dir) = start(upstream, &[]);
    let mut stream = TcpStream::connect(gateway.addr()).await.unwrap();
    let request = format!(
        "GET /api/2.0/mlflow/experiments/search HTTP/1.1\r\nHost: gateway\r\n\
         Authorization: {ALICE}\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(gateway);
    let seen = read_until_closed(&mut stream, Duration::from_secs(10))
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&seen);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.ends_with("slow"), "{text}");
}

#[tokio::test]
async fn at_shutdown_an_idle_connection_closes_at_once_and_a_busy_one_after_its_answer() {
    let upstream = slow_keep_alive_upstream(Duration::from_secs(1)).await;
    let (gateway, _dir) = start(upstream, &[]);
    let request = format!(
        "GET /api/2.0/mlflow/experiments/search HTTP/1.1\r\nHost: gateway\r\n\
         Authorization: {ALICE}\r\n\r\n"
    );
    // Kept alive after one answer, then idle.
    let mut idle = TcpStream::connect(gateway.addr()).await.unwrap();
    idle.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let mut buf = [0; 4096];
    while !answer.ends_with(b"slow") {
        let n = idle.read(&mut buf).await.unwrap();
        assert!(n > 0, "closed before its answer");
        answer.extend_from_slice(&buf[..n]);
    }
    let mut busy = TcpStream::connect(gateway.addr()).await.unwrap();
    busy.write_all(request.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;

    let stopped = Instant::now();
    drop(gateway);
    // Far sooner than the 30 s drain period, which would close both anyway.
    let idle_seen = read_until_closed(&mut idle, Duration::from_secs(5))
        .await
        .expect("the idle connection was still open 5 s after the shutdown");
    assert!(
        idle_seen.is_empty(),
        "{}",
        String::from_utf8_lossy(&idle_seen)
    );
    let busy_seen = read_until_closed(&mut busy, Duration::from_secs(5))
        .await
        .expect("the busy connection was still open 5 s after the shutdown");
    let text = String::from_utf8_lossy(&busy_seen).to_ascii_lowercase();
    assert!(text.starts_with("http/1.1 200"), "{text}");
    assert!(text.contains("\r\nconnection: close\r\n"), "{text}");
    assert!(text.ends_with("slow"), "{text}");
    assert!(stopped.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn an_idle_http1_connection_is_closed_after_the_idle_timeout() {
    let (gateway, _dir) = start(closed_port(), &["--idle-timeout", "1"]);
    let mut stream = TcpStream::connect(gateway.addr()).await.unwrap();
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: gateway\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0; 4096];
    let n = stream.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 502"));
    // Kept alive (no `Connection: close`), then closed once idle.
    let rest = read_until_closed(&mut stream, Duration::from_secs(10)).await;
    assert!(
        rest.is_some(),
        "the idle connection was still open after 10 s"
    );
}

/// The idle limit counts from the last response, not from the first request: a connection
/// used more often than the limit stays open past it, and closes about a limit after its last
/// answer.
#[tokio::test]
async fn a_connection_in_use_outlives_the_idle_timeout_then_closes_after_its_last_answer() {
    let (gateway, _dir) = start(
        closed_port(),
        &["--idle-timeout", "1", "--header-timeout", "5"],
    );
    let mut stream = TcpStream::connect(gateway.addr()).await.unwrap();
    let mut buf = [0; 4096];
    let started = Instant::now();
    for _ in 0..6 {
        stream
            .write_all(b"GET /health HTTP/1.1\r\nHost: gateway\r\n\r\n")
            .await
            .unwrap();
        let n = stream.read(&mut buf).await.unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 502"), "{:?}", &buf[..n]);
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    assert!(started.elapsed() >= Duration::from_millis(2400));
    // 400 ms since the last answer: still open.
    let last_answer = Instant::now() - Duration::from_millis(400);
    let rest = read_until_closed(&mut stream, Duration::from_secs(10)).await;
    assert_eq!(rest, Some(Vec::new()), "closed, with nothing more sent");
    let idle = last_answer.elapsed();
    assert!(
        idle >= Duration::from_millis(900) && idle < Duration::from_secs(5),
        "closed {idle:?} after the last answer, with --idle-timeout 1"
    );
}

/// After an answer on a kept-alive HTTP/1 connection, the next head has `--header-timeout`
/// (here well below `--idle-timeout`): half of it is closed about a header timeout after the
/// answer, with nothing sent back.
#[tokio::test]
async fn over_http1_half_of_the_next_head_is_closed_after_the_header_timeout() {
    let (gateway, _dir) = start(
        closed_port(),
        &["--header-timeout", "1", "--idle-timeout", "30"],
    );
    let mut stream = TcpStream::connect(gateway.addr()).await.unwrap();
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: gateway\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0; 4096];
    let n = stream.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 502"), "{:?}", &buf[..n]);
    let answered = Instant::now();
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: gateway\r\nX-Slow: ")
        .await
        .unwrap();
    let rest = read_until_closed(&mut stream, Duration::from_secs(20)).await;
    assert_eq!(rest, Some(Vec::new()), "closed, with nothing more sent");
    let waited = answered.elapsed();
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(10),
        "closed {waited:?} after the answer, with --header-timeout 1 --idle-timeout 30"
    );
}

/// An HTTP/2 connection to `addr` after one answered request (502: the upstream is down):
/// its sender (dropping it would close the connection from this side) and the task driving
/// it, which ends when the connection closes.
async fn http2_after_one_request(
    addr: SocketAddr,
) -> (
    hyper::client::conn::http2::SendRequest<http_body_util::Empty<bytes::Bytes>>,
    tokio::task::JoinHandle<Result<(), hyper::Error>>,
) {
    use http_body_util::Empty;
    use hyper_util::rt::{TokioExecutor, TokioIo};

    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    let connection = tokio::spawn(connection);
    let request = http::Request::get(format!("http://{addr}/health"))
        .body(Empty::<bytes::Bytes>::new())
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.status(), http::StatusCode::BAD_GATEWAY);
    (sender, connection)
}

/// HTTP/2 has no request head pending between requests: after a request, the connection
/// stays open past `--header-timeout` and closes at `--idle-timeout`.
#[tokio::test]
async fn over_http2_the_idle_timeout_applies_after_a_request_not_the_header_timeout() {
    let (gateway, _dir) = start(
        closed_port(),
        &["--header-timeout", "1", "--idle-timeout", "4"],
    );
    let (_sender, mut connection) = http2_after_one_request(gateway.addr()).await;
    let answered = Instant::now();
    let early = tokio::time::timeout(Duration::from_secs(2), &mut connection).await;
    assert!(
        early.is_err(),
        "closed within 2 s: the header timeout applied"
    );
    tokio::time::timeout(Duration::from_secs(20), connection)
        .await
        .expect("the idle HTTP/2 connection was still open after 20 s")
        .unwrap()
        .ok();
    let waited = answered.elapsed();
    assert!(
        waited >= Duration::from_millis(3900),
        "closed after {waited:?}"
    );
}

#[tokio::test]
async fn an_idle_http2_connection_is_closed_after_the_idle_timeout() {
    let (gateway, _dir) = start(closed_port(), &["--idle-timeout", "1"]);
    let (_sender, connection) = http2_after_one_request(gateway.addr()).await;
    tokio::time::timeout(Duration::from_secs(10), connection)
        .await
        .expect("the idle HTTP/2 connection was still open after 10 s")
        .unwrap()
        .ok();
}

/// A WebSocket tunnel through a gateway started with `extra`, checked to carry bytes.
async fn tunnel(extra: &[&str]) -> (WebSocketUpstream, support::InProcess, TempDir, TcpStream) {
    let upstream = WebSocketUpstream::start().await;
    let (gateway, dir) = start(upstream.addr, extra);
    let (mut stream, head) = upgrade(gateway.addr(), Some(ALICE)).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    echo_through(&mut stream, b"hello").await;
    (upstream, gateway, dir, stream)
}

async fn assert_upstream_side_closed(upstream: &WebSocketUpstream) {
    let closed =
        support::binary::holds_within(Duration::from_secs(5), || async { upstream.closed() == 1 })
            .await;
    assert!(closed, "the tunnel's upstream side was left open");
}

#[tokio::test]
async fn a_websocket_holds_its_slot_under_max_connections() {
    let (_upstream, gateway, _dir, first) = tunnel(&["--max-connections", "1"]).await;
    let addr = gateway.addr();
    let second = tokio::spawn(async move { upgrade(addr, Some(ALICE)).await });
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        !second.is_finished(),
        "a second connection was served while the tunnel held the only slot"
    );

    drop(first);
    let (mut second, head) = tokio::time::timeout(Duration::from_secs(10), second)
        .await
        .expect("the second connection was not served after the tunnel closed")
        .unwrap();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    echo_through(&mut second, b"second").await;
}

#[tokio::test]
async fn a_websocket_with_traffic_stays_open_and_an_idle_one_is_closed() {
    let (upstream, _gateway, _dir, mut stream) = tunnel(&["--idle-timeout", "2"]).await;
    // Messages every 0.5 s for three idle timeouts: never idle for 2 s.
    for i in 0..12 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        echo_through(&mut stream, format!("message {i}").as_bytes()).await;
    }
    let rest = read_until_closed(&mut stream, Duration::from_secs(10)).await;
    assert_eq!(
        rest.as_deref(),
        Some(&b""[..]),
        "the idle tunnel was still open after 10 s"
    );
    assert_upstream_side_closed(&upstream).await;
}

#[tokio::test]
async fn a_websocket_outlives_a_shutdown_by_the_drain_period_only() {
    let (upstream, gateway, _dir, mut stream) = tunnel(&[]).await;
    let addr = gateway.addr();
    drop(gateway);
    tokio::time::sleep(Duration::from_millis(500)).await;
    echo_through(&mut stream, b"still draining").await;
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "still accepting while draining"
    );
    // The drain period is 30 s.
    let rest = read_until_closed(&mut stream, Duration::from_secs(45)).await;
    assert_eq!(
        rest.as_deref(),
        Some(&b""[..]),
        "the tunnel was still open 45 s after the shutdown signal"
    );
    assert_upstream_side_closed(&upstream).await;
}
