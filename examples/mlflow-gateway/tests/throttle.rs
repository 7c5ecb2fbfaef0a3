//! Failed-login throttling (issue 18, item 4) against the real binary with a bcrypt htpasswd
//! file: one loopback source address runs out of tries while a cached user from the same
//! address, and a user from another address, are still served. Each client socket is bound
//! to its own 127.0.0.x source address, as clients behind different hosts would be.

mod support;

use std::{
    net::{IpAddr, SocketAddr},
    time::Duration,
};

use support::binary::{Binary, basic, holds_within};
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::TcpSocket,
};
use tower_mlflow_tests::TempDir;

/// bcrypt cost 5 (`htpasswd -nbB -C 5`): `alice-pass`, `carol-pass`, `victim-pass`.
const HTPASSWD: &str = "alice:$2y$05$l7ZO.Txg6pOiRndSyUItNu57pCvvIqyzKZ8YuLx1We4Ehr70ujMn2\n\
                        carol:$2y$05$JbTvOVXolzsexo/bE8u2kOHojnQGAahV2tTK/5waFfZvFrSi4u6au\n\
                        victim:$2y$05$I3BuEpIWjDR4rDY6oZGp4e.Z5zbRVGpHTubvOA3WiXEOEKb5CjnNK\n";
const PATH: &str = "/api/2.0/mlflow/experiments/search";

/// The answer's status and its `Retry-After`, if any.
#[derive(Debug, PartialEq, Eq)]
struct Answer {
    status: u16,
    retry_after: Option<u64>,
}

/// `GET PATH` from the source address `from`, with `Authorization: authorization` and the
/// extra header lines `extra`, on a fresh connection; panics with the gateway's log if the
/// exchange fails.
async fn get_from(gateway: &Binary, from: &str, authorization: &str, extra: &str) -> Answer {
    let addr = gateway.addr();
    let head = format!(
        "GET {PATH} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: {authorization}\r\n{extra}\
         Connection: close\r\n\r\n"
    );
    let exchange = async {
        let socket = TcpSocket::new_v4()?;
        socket.bind(SocketAddr::new(from.parse::<IpAddr>().unwrap(), 0))?;
        let mut stream = socket.connect(addr).await?;
        stream.write_all(head.as_bytes()).await?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await.map(|_| raw)
    };
    let raw = exchange.await.unwrap_or_else(|error| {
        panic!(
            "GET from {from} to {addr}: {error} ({:?}); the gateway's log:\n{}",
            error.kind(),
            gateway.log()
        )
    });
    let text = String::from_utf8_lossy(&raw);
    let (head, _) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    let retry_after = lines
        .filter_map(|line| line.split_once(':'))
        .find(|(name, _)| name.eq_ignore_ascii_case("retry-after"))
        .map(|(_, value)| value.trim().parse().unwrap());
    Answer {
        status,
        retry_after,
    }
}

/// The binary in front of an echo upstream (201 to everything it receives).
async fn gateway(dir: &TempDir, extra: &[&str]) -> Binary {
    support::gateway::gateway(dir, HTPASSWD, extra).await
}

const SERVED: Answer = Answer {
    status: 201,
    retry_after: None,
};
const REJECTED: Answer = Answer {
    status: 401,
    retry_after: None,
};

#[tokio::test]
async fn a_guessing_address_gets_429_while_cached_and_other_users_are_served() {
    let dir = TempDir::new("throttle");
    let gateway = gateway(&dir, &["--failed-login-limit", "3", "--cache-ttl", "300"]).await;
    let alice = basic("alice", "alice-pass");
    // alice logs in first, so her credential is in the verified cache.
    assert_eq!(get_from(&gateway, "127.0.0.2", &alice, "").await, SERVED);

    // Three wrong passwords from 127.0.0.2 are checked and refused...
    for n in 0..3 {
        let guess = basic("victim", &format!("guess-{n}"));
        assert_eq!(get_from(&gateway, "127.0.0.2", &guess, "").await, REJECTED);
    }
    // ...the fourth, and even the right one, are not checked: 429 with Retry-After. A token
    // comes back every 20 s (3 a minute).
    for password in ["guess-3", "victim-pass"] {
        let answer = get_from(&gateway, "127.0.0.2", &basic("victim", password), "").await;
        assert_eq!(answer.status, 429, "{password}");
        let retry_after = answer.retry_after.expect("Retry-After");
        assert!((1..=20).contains(&retry_after), "{retry_after}");
    }

    // Meanwhile the cached user on the same address is served...
    assert_eq!(get_from(&gateway, "127.0.0.2", &alice, "").await, SERVED);
    // ...and another address is not affected: wrong, then right.
    let carol_wrong = basic("carol", "nope");
    assert_eq!(
        get_from(&gateway, "127.0.0.3", &carol_wrong, "").await,
        REJECTED
    );
    let carol = basic("carol", "carol-pass");
    assert_eq!(get_from(&gateway, "127.0.0.3", &carol, "").await, SERVED);

    // The access lines (the reason) are buffered up to 100 ms.
    let reasoned = holds_within(Duration::from_secs(10), || async {
        gateway.log().contains("failed-login limit reached")
    })
    .await;
    let log = gateway.log();
    assert!(reasoned, "{log}");
    let throttled: Vec<&str> = log
        .lines()
        .filter(|line| line.contains("request throttled"))
        .collect();
    assert_eq!(throttled.len(), 2, "{log}");
    assert!(
        throttled.iter().all(|line| line.contains("key=127.0.0.2")),
        "{log}"
    );
    for secret in ["guess-", "victim-pass", "alice-pass", "carol-pass"] {
        assert!(!log.contains(secret), "{secret} in the log:\n{log}");
    }
}

#[tokio::test]
async fn behind_a_trusted_proxy_the_forwarded_client_is_counted() {
    let dir = TempDir::new("throttle-proxy");
    let args = [
        "--failed-login-limit",
        "2",
        "--trusted-proxies",
        "127.0.0.4",
    ];
    let gateway = gateway(&dir, &args).await;
    let wrong = basic("victim", "wrong");
    let via_proxy = |client: &str| format!("X-Forwarded-For: {client}\r\n");
    for _ in 0..2 {
        let answer = get_from(&gateway, "127.0.0.4", &wrong, &via_proxy("192.0.2.1")).await;
        assert_eq!(answer, REJECTED);
    }
    let answer = get_from(&gateway, "127.0.0.4", &wrong, &via_proxy("192.0.2.1")).await;
    assert_eq!(answer.status, 429);
    // The proxy's other clients have their own buckets.
    let answer = get_from(&gateway, "127.0.0.4", &wrong, &via_proxy("192.0.2.2")).await;
    assert_eq!(answer, REJECTED);
    // An untrusted peer cannot pick a bucket by claiming an address.
    for _ in 0..2 {
        let answer = get_from(&gateway, "127.0.0.5", &wrong, &via_proxy("192.0.2.3")).await;
        assert_eq!(answer, REJECTED);
    }
    let answer = get_from(&gateway, "127.0.0.5", &wrong, &via_proxy("192.0.2.4")).await;
    assert_eq!(answer.status, 429, "keyed by the peer, 127.0.0.5");
    assert!(gateway.log().contains("key=192.0.2.1"));
}

#[tokio::test]
async fn a_limit_of_zero_turns_throttling_off() {
    let dir = TempDir::new("throttle-off");
    let gateway = gateway(&dir, &["--failed-login-limit", "0"]).await;
    for n in 0..25 {
        let guess = basic("victim", &format!("guess-{n}"));
        assert_eq!(get_from(&gateway, "127.0.0.2", &guess, "").await, REJECTED);
    }
    assert!(!gateway.log().contains("request throttled"));
}
