//! Forwarding headers, identity header, HTTP/2 paths and WebSocket upgrades through the
//! gateway, against upstreams on loopback that report what they received.

mod support;

use std::net::SocketAddr;

use base64::Engine as _;
use support::websocket::{WebSocketUpstream, echo_through, upgrade};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};
use tower_mlflow_tests::TempDir;

/// The password of every user below; the APR1 hash does not depend on the user name.
const HASH: &str = "$apr1$abcdefgh$aDPo2xmbXHAQSzMtOEWhn/"; // mlflow-pass

fn basic(user: &str) -> String {
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:mlflow-pass"));
    format!("Basic {encoded}")
}

struct Gateway {
    addr: SocketAddr,
    _gateway: support::InProcess,
    _dir: TempDir,
}

/// The gateway in front of `upstream` (a URL) with alice and `a\x01b` in its htpasswd.
fn gateway(upstream: &str, extra: &[&str]) -> Gateway {
    let dir = TempDir::new("forwarding");
    let htpasswd = dir.path().join("htpasswd");
    std::fs::write(&htpasswd, format!("alice:{HASH}\na\u{1}b:{HASH}\n")).unwrap();
    let mut args = vec![
        "--upstream",
        upstream,
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

async fn echo() -> String {
    format!("http://{}", support::echo_upstream(None).await)
}

/// Sends `head` (lines without the final blank line) over HTTP/1.1 and returns the answer.
async fn raw(addr: SocketAddr, head: &[&str]) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let mut request = head.join("\r\n");
    request.push_str("\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    String::from_utf8_lossy(&answer).into_owned()
}

fn spoofing_get(auth: &str) -> Vec<String> {
    [
        "GET /api/2.0/mlflow/experiments/search HTTP/1.1",
        "Host: gw.example",
        "X-Forwarded-For: 1.2.3.4",
        "X_Forwarded_For: 5.5.5.5",
        "Forwarded: for=6.6.6.6",
        "X-Real-IP: 6.6.6.6",
        "X-Forwarded-Host: evil.example",
        "X-Forwarded-Port: 1",
        "X-Forwarded-Prefix: /evil",
        "X-Forwarded-Proto: https",
        "X-Original-URL: /admin",
    ]
    .iter()
    .map(|line| (*line).to_owned())
    .chain([format!("Authorization: {auth}")])
    .collect()
}

fn lines(owned: &[String]) -> Vec<&str> {
    owned.iter().map(String::as_str).collect()
}

#[tokio::test]
async fn an_untrusted_peer_cannot_claim_an_address_or_a_host() {
    let upstream = echo().await;
    // Comma-separated, IPv4 and IPv6, neither covering 127.0.0.1.
    let gateway = gateway(&upstream, &["--trusted-proxies", "10.0.0.0/8,fd00::/8"]);
    let answer = raw(gateway.addr, &lines(&spoofing_get(&basic("alice")))).await;
    assert!(answer.starts_with("HTTP/1.1 201"), "{answer}");
    assert!(answer.contains("x-forwarded-for: 127.0.0.1\n"), "{answer}");
    assert!(
        answer.contains("x-forwarded-host: gw.example\n"),
        "{answer}"
    );
    assert!(answer.contains("x-forwarded-proto: http\n"), "{answer}");
    for gone in [
        "1.2.3.4",
        "5.5.5.5",
        "6.6.6.6",
        "evil",
        "x-forwarded-port",
        "/admin",
    ] {
        assert!(!answer.contains(gone), "{gone} in {answer}");
    }
}

#[tokio::test]
async fn a_trusted_proxy_keeps_its_chain() {
    let upstream = echo().await;
    let gateway = gateway(&upstream, &["--trusted-proxies", "127.0.0.0/8"]);
    let answer = raw(gateway.addr, &lines(&spoofing_get(&basic("alice")))).await;
    assert!(answer.starts_with("HTTP/1.1 201"), "{answer}");
    assert!(
        answer.contains("x-forwarded-for: 1.2.3.4, 127.0.0.1\n"),
        "{answer}"
    );
    assert!(answer.contains("x-forwarded-proto: https\n"), "{answer}");
    assert!(answer.contains("x-real-ip: 6.6.6.6\n"), "{answer}");
    // An underscore spelling is never a proxy's header.
    assert!(!answer.contains("5.5.5.5"), "{answer}");
}

#[tokio::test]
async fn a_bad_trusted_proxy_is_named() {
    let upstream = echo().await;
    let flags = [
        "mlflow-gateway",
        "--listen=127.0.0.1:0",
        "--upstream",
        &upstream,
        "--htpasswd=/h",
        "--trusted-proxies=10.0.0.0/8,10.0.0.0/40",
    ];
    let error = <mlflow_gateway::Flags as clap::Parser>::try_parse_from(flags).unwrap_err();
    assert!(error.to_string().contains("\"10.0.0.0/40\""), "{error}");
}

#[tokio::test]
async fn an_underscore_user_header_is_stripped_in_both_spellings() {
    let upstream = echo().await;
    let gateway = gateway(
        &upstream,
        &[
            "--user-header",
            "X_Remote_User",
            "--mlflow-default-exemptions",
        ],
    );
    let spoof = [
        "X_Remote_User: admin",
        "X-Remote-User: admin",
        "x_remote_USER: admin",
    ];
    let mut exempt = vec!["GET /health HTTP/1.1", "Host: x"];
    exempt.extend(spoof);
    let answer = raw(gateway.addr, &exempt).await;
    assert!(answer.starts_with("HTTP/1.1 201"), "{answer}");
    assert!(!answer.contains("admin"), "{answer}");

    let auth = format!("Authorization: {}", basic("alice"));
    let mut authenticated = vec!["GET /x HTTP/1.1", "Host: x", &auth];
    authenticated.extend(spoof);
    let answer = raw(gateway.addr, &authenticated).await;
    assert!(answer.contains("x_remote_user: alice\n"), "{answer}");
    assert!(!answer.contains("admin"), "{answer}");
}

#[tokio::test]
async fn a_subject_that_cannot_go_in_a_header_is_refused() {
    let upstream = echo().await;
    let gateway = gateway(&upstream, &[]);
    let auth = format!("Authorization: {}", basic("a\u{1}b"));
    let answer = raw(gateway.addr, &["GET /x HTTP/1.1", "Host: x", &auth]).await;
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    // The challenge AuthLayer sends, with its realm.
    assert!(
        answer.contains("www-authenticate: Basic realm=\"mlflow\"\r\n"),
        "{answer}"
    );
    assert!(
        !answer.contains("GET /x"),
        "the upstream answered: {answer}"
    );
}

/// One HTTP/2 request with a `:path` the `http` crate would not build, framed by hand over
/// h2c; the first byte of the response's HPACK block (`0x8c` is `:status: 400`), or the
/// type of the frame that ended the stream instead.
async fn h2_status_byte(addr: SocketAddr, method: &str, path: &str) -> Result<u8, u8> {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let frame = |kind: u8, flags: u8, stream: u32, payload: &[u8]| {
        let mut frame = (payload.len() as u32).to_be_bytes()[1..].to_vec();
        frame.extend([kind, flags]);
        frame.extend(stream.to_be_bytes());
        frame.extend(payload);
        frame
    };
    let mut block = Vec::new();
    let auth = basic("alice");
    for (name, value) in [
        (":method", method),
        (":scheme", "http"),
        (":authority", "gw.example"),
        (":path", path),
        ("authorization", auth.as_str()),
    ] {
        // A literal field without indexing, new name, no Huffman coding.
        block.push(0);
        block.push(name.len() as u8);
        block.extend(name.as_bytes());
        block.push(value.len() as u8);
        block.extend(value.as_bytes());
    }
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    out.extend(frame(4, 0, 0, &[]));
    out.extend(frame(4, 1, 0, &[]));
    out.extend(frame(1, 0x5, 1, &block));
    stream.write_all(&out).await.unwrap();
    loop {
        let mut head = [0; 9];
        stream.read_exact(&mut head).await.unwrap();
        let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
        let mut payload = vec![0; len];
        stream.read_exact(&mut payload).await.unwrap();
        let id = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
        match head[3] {
            1 if id == 1 => return Ok(payload[0]),
            3 | 7 => return Err(head[3]),
            _ => {}
        }
    }
}

#[tokio::test]
async fn an_http2_path_without_a_slash_is_refused() {
    let upstream = echo().await;
    let gateway = gateway(&format!("{upstream}/mlflow"), &[]);
    // h2 itself resets a stream whose `:path` the `http` crate cannot hold (`-admin/x` with
    // http 1.5); the gateway answers 400 to the rest (`*`). Either way nothing is forwarded.
    for (method, path) in [("GET", "-admin/x"), ("OPTIONS", "*"), ("GET", "*")] {
        let refused = h2_status_byte(gateway.addr, method, path).await;
        assert!(
            matches!(refused, Ok(0x8c) | Err(3)),
            "{method} {path}: {refused:?}"
        );
    }
    assert_eq!(h2_status_byte(gateway.addr, "OPTIONS", "*").await, Ok(0x8c));
    // The same client with a proper path reaches the upstream (201 is not in HPACK's table).
    let ok = h2_status_byte(gateway.addr, "GET", "/x").await;
    assert!(matches!(ok, Ok(byte) if byte != 0x8c), "{ok:?}");
}

#[tokio::test]
async fn an_authenticated_websocket_is_passed_through() {
    let upstream = WebSocketUpstream::start().await;
    let heads = upstream.heads.clone();
    let gateway = gateway(&format!("http://{}", upstream.addr), &[]);

    let (_, head) = upgrade(gateway.addr, None).await;
    assert!(head.starts_with("HTTP/1.1 401"), "{head}");
    assert!(heads.lock().unwrap().is_empty(), "the upstream saw it");

    let (mut stream, head) = upgrade(gateway.addr, Some(&basic("alice"))).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    let lower = head.to_lowercase();
    assert!(lower.contains("upgrade: websocket\r\n"), "{head}");
    assert!(
        lower.contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo=\r\n"),
        "{head}"
    );
    for message in [&b"ping"[..], b"\x81\x05hello"] {
        echo_through(&mut stream, message).await;
    }
    let heads = heads.lock().unwrap();
    assert_eq!(heads.len(), 1);
    let seen = &heads[0];
    assert!(seen.contains("upgrade: websocket\r\n"), "{seen}");
    assert!(
        seen.contains("sec-websocket-key: dghlihnhbxbszsbub25jzq==\r\n"),
        "{seen}"
    );
    assert!(seen.contains("x-forwarded-user: alice\r\n"), "{seen}");
    assert!(seen.contains("x-forwarded-for: 127.0.0.1\r\n"), "{seen}");
    assert!(
        !seen.contains("mallory") && !seen.contains("authorization"),
        "{seen}"
    );
}

/// An upstream that answers every request on a connection with `ok`, and reports the
/// request lines it read and the number of connections it accepted.
async fn counting_upstream() -> (
    SocketAddr,
    std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
) {
    use std::sync::{Arc, Mutex, atomic::AtomicUsize};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let lines = Arc::new(Mutex::new(Vec::new()));
    let accepted = Arc::new(AtomicUsize::new(0));
    let (seen, counter) = (Arc::clone(&lines), Arc::clone(&accepted));
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let seen = Arc::clone(&seen);
            tokio::spawn(async move {
                let mut buffer = Vec::new();
                let mut chunk = [0; 4096];
                loop {
                    let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") else {
                        match stream.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buffer.extend_from_slice(&chunk[..n]),
                        }
                        continue;
                    };
                    let head = String::from_utf8_lossy(&buffer[..end]).into_owned();
                    buffer.drain(..end + 4);
                    seen.lock()
                        .unwrap()
                        .push(head.lines().next().unwrap_or("").to_owned());
                    let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                    if stream.write_all(answer).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, lines, accepted)
}

#[tokio::test]
async fn upstream_connections_are_kept_alive_and_get_origin_form_targets() {
    let (upstream, lines, accepted) = counting_upstream().await;
    let gateway = gateway(&format!("http://{upstream}/base"), &[]);
    let auth = format!("Authorization: {}", basic("alice"));
    for round in 0..10 {
        // A new client connection each time (`raw` asks for `Connection: close`).
        let answer = raw(
            gateway.addr,
            &["GET /api/2.0/x?y=1 HTTP/1.1", "Host: gw.example", &auth],
        )
        .await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{round}: {answer}");
        assert!(answer.ends_with("\r\n\r\nok"), "{round}: {answer}");
    }
    let lines = lines.lock().unwrap().clone();
    assert_eq!(lines.len(), 10);
    for line in &lines {
        assert_eq!(line, "GET /base/api/2.0/x?y=1 HTTP/1.1");
    }
    // One pool a worker: at most one connection each for requests one after another.
    let connections = accepted.load(std::sync::atomic::Ordering::SeqCst);
    assert!((1..=2).contains(&connections), "{connections} connections");
}
