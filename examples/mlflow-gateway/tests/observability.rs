//! The access log (`--log-format text|json`) and the Prometheus metrics (`--metrics-listen`)
//! of the real binary (issue 18, items 2, 3 and their part of item 7): what the log carries,
//! what it never carries, and counters that move by exactly the requests sent.

mod support;

use std::{net::SocketAddr, time::Duration};

use support::binary::{Binary, basic, holds_within, request};
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::TcpStream,
};
use tower_mlflow_tests::TempDir;

/// bcrypt cost 5 (`htpasswd -nbB -C 5`): `alice-pass`.
const HTPASSWD: &str = "alice:$2y$05$l7ZO.Txg6pOiRndSyUItNu57pCvvIqyzKZ8YuLx1We4Ehr70ujMn2\n";
const PATH: &str = "/api/2.0/mlflow/experiments/search";
const QUERY: &str = "max_results=5&page_token=query-secret-77";
const COOKIE: &str = "session=cookie-secret-88";
const ACCESS_TARGET: &str = "mlflow_gateway::access";

/// The binary in front of an echo upstream (201 to everything), with `extra` flags.
async fn gateway(dir: &TempDir, extra: &[&str]) -> Binary {
    support::gateway::gateway(dir, HTPASSWD, extra).await
}

/// The log once it holds `count` access lines (they are buffered up to 100 ms), or as it is
/// after 10 s.
async fn log_with_access_lines(gateway: &Binary, count: usize) -> String {
    let is_access = |line: &&str| line.contains(ACCESS_TARGET);
    holds_within(Duration::from_secs(10), || async {
        gateway.log().lines().filter(is_access).count() >= count
    })
    .await;
    gateway.log()
}

/// `GET PATH?QUERY` with a cookie and `authorization`: the status.
async fn get_with_secrets(addr: SocketAddr, authorization: &str) -> u16 {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "GET {PATH}?{QUERY} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: {authorization}\r\n\
         Cookie: {COOKIE}\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    String::from_utf8_lossy(&answer)
        .split_whitespace()
        .nth(1)
        .and_then(|status| status.parse().ok())
        .unwrap_or_else(|| panic!("no status line"))
}

/// Asserts that no secret the requests carried is in `log`.
fn assert_no_secrets(log: &str, authorizations: &[&str]) {
    let mut secrets = vec![
        "alice-pass",
        "wrong-pass",
        "query-secret-77",
        "cookie-secret-88",
    ];
    secrets.extend(authorizations);
    // The base64 part alone, too.
    secrets.extend(authorizations.iter().filter_map(|a| a.split(' ').nth(1)));
    for secret in secrets {
        assert!(!log.contains(secret), "{secret} in the log:\n{log}");
    }
}

#[tokio::test]
async fn the_json_access_log_has_user_authenticator_and_reason_and_no_secret() {
    let dir = TempDir::new("access-json");
    let gateway = gateway(&dir, &["--log-format", "json"]).await;
    let alice = basic("alice", "alice-pass");
    let wrong = basic("alice", "wrong-pass");
    assert_eq!(get_with_secrets(gateway.addr(), &alice).await, 201);
    assert_eq!(get_with_secrets(gateway.addr(), &wrong).await, 401);

    let log = log_with_access_lines(&gateway, 2).await;
    // Every line of the log is one JSON object, not only the access lines.
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect();
    let access: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|line| line["target"] == ACCESS_TARGET)
        .collect();
    assert_eq!(access.len(), 2, "{log}");
    for line in &access {
        for field in [
            "time",
            "client",
            "method",
            "path",
            "version",
            "status",
            "duration_ms",
            "user",
            "authenticator",
            "reason",
        ] {
            assert!(line.get(field).is_some(), "no {field} in {line}");
        }
        assert_eq!(line["client"], "127.0.0.1", "{line}");
        assert_eq!(line["method"], "GET", "{line}");
        assert_eq!(line["path"], PATH, "{line}");
        assert_eq!(line["version"], "HTTP/1.1", "{line}");
        assert!(line["duration_ms"].as_f64().unwrap() >= 0.0, "{line}");
        assert_eq!(line["level"], "INFO", "{line}");
    }
    let (served, refused) = (access[0], access[1]);
    assert_eq!(served["status"], 201, "{served}");
    assert_eq!(served["user"], "alice", "{served}");
    assert_eq!(served["authenticator"], "htpasswd", "{served}");
    assert_eq!(served["reason"], "-", "{served}");
    // The echo's body has a Content-Length: the size is known.
    assert!(served["bytes"].as_u64().is_some_and(|n| n > 0), "{served}");
    assert_eq!(refused["status"], 401, "{refused}");
    assert_eq!(refused["user"], "-", "{refused}");
    assert_eq!(refused["authenticator"], "-", "{refused}");
    assert_eq!(refused["reason"], "invalid basic credentials", "{refused}");
    assert_no_secrets(&log, &[&alice, &wrong]);
}

#[tokio::test]
async fn the_text_access_log_has_the_fields() {
    let dir = TempDir::new("access-text");
    let gateway = gateway(&dir, &[]).await;
    let alice = basic("alice", "alice-pass");
    assert_eq!(get_with_secrets(gateway.addr(), &alice).await, 201);
    // No credentials: 401, and its reason.
    assert_eq!(
        request(gateway.addr(), "GET", PATH, None, None).await.0,
        401
    );

    let log = log_with_access_lines(&gateway, 2).await;
    let access: Vec<&str> = log
        .lines()
        .filter(|line| line.contains(&format!(" {ACCESS_TARGET}: ")))
        .collect();
    assert_eq!(access.len(), 2, "{log}");
    for field in [
        "time=\"",
        "client=127.0.0.1 ",
        "method=\"GET\"",
        &format!("path=\"{PATH}\""),
        "version=\"HTTP/1.1\"",
        "status=201",
        "duration_ms=",
        "user=\"alice\"",
        "authenticator=\"htpasswd\"",
        "reason=\"-\"",
    ] {
        assert!(access[0].contains(field), "no {field} in {}", access[0]);
    }
    for field in ["status=401", "user=\"-\"", "reason=\"missing credentials\""] {
        assert!(access[1].contains(field), "no {field} in {}", access[1]);
    }
    assert!(access.iter().all(|line| line.contains(" INFO ")), "{log}");
    assert_no_secrets(&log, &[&alice]);
}

#[tokio::test]
async fn the_proxys_own_answers_are_logged_with_the_user() {
    // Nothing listens upstream: the proxy answers 502 itself, and its answer still names the
    // user who was let in.
    let dir = TempDir::new("access-proxy-error");
    let closed = SocketAddr::from(([127, 0, 0, 1], tower_mlflow_tests::free_port()));
    let fixture = support::gateway::Fixture::with_upstream(&dir, HTPASSWD, closed);
    let gateway = fixture.binary(&[]);
    let alice = basic("alice", "alice-pass");
    assert_eq!(get_with_secrets(gateway.addr(), &alice).await, 502);
    let log = log_with_access_lines(&gateway, 1).await;
    let line = log
        .lines()
        .find(|line| line.contains(&format!(" {ACCESS_TARGET}: ")))
        .unwrap_or_else(|| panic!("no access line in:\n{log}"));
    for field in ["status=502", "user=\"alice\"", "authenticator=\"htpasswd\""] {
        assert!(line.contains(field), "no {field} in {line}");
    }
}

/// Sends SIGHUP and waits for its INFO line: every access line logged before it is then in
/// the log (other lines are written after the buffered access lines).
async fn flush_with_sighup(gateway: &Binary) -> String {
    let sent = std::process::Command::new("kill")
        .args(["-HUP", &gateway.pid().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let reloaded = holds_within(Duration::from_secs(10), || async {
        gateway.log().contains("SIGHUP: files reloaded")
    })
    .await;
    assert!(reloaded, "no SIGHUP line:\n{}", gateway.log());
    gateway.log()
}

#[tokio::test]
async fn rust_log_turns_the_access_log_off_and_on_by_its_target() {
    let dir = TempDir::new("access-rust-log");
    let fixture = support::gateway::Fixture::echo(&dir, HTPASSWD).await;
    let default = fixture.binary(&[]);
    let silenced = fixture.binary_with_env(&[], &[("RUST_LOG", "info,mlflow_gateway::access=off")]);
    let only_access =
        fixture.binary_with_env(&[], &[("RUST_LOG", "warn,mlflow_gateway::access=info")]);
    let alice = basic("alice", "alice-pass");
    for gateway in [&default, &silenced, &only_access] {
        assert_eq!(get_with_secrets(gateway.addr(), &alice).await, 201);
        assert_eq!(
            request(gateway.addr(), "GET", PATH, None, None).await.0,
            401
        );
    }
    let is_access = |line: &&str| line.contains(&format!(" {ACCESS_TARGET}: "));

    // RUST_LOG=info (Binary's default): the access lines and the others.
    let log = log_with_access_lines(&default, 2).await;
    assert_eq!(log.lines().filter(is_access).count(), 2, "{log}");
    assert!(log.contains("mlflow-gateway ready"), "{log}");

    // `mlflow_gateway::access=off`: every other INFO line, no access line.
    let log = flush_with_sighup(&silenced).await;
    assert!(log.contains("mlflow-gateway ready"), "{log}");
    assert_eq!(log.lines().filter(is_access).count(), 0, "{log}");

    // `warn,mlflow_gateway::access=info`: the access lines alone.
    let log = log_with_access_lines(&only_access, 2).await;
    assert!(
        !log.is_empty() && log.lines().all(|line| is_access(&line)),
        "{log}"
    );
    assert_eq!(log.lines().count(), 2, "{log}");
}

/// One scrape of `GET /metrics`, parsed.
async fn scrape(addr: SocketAddr) -> prometheus_parse::Scrape {
    let (status, body) = request(addr, "GET", "/metrics", None, None).await;
    assert_eq!(status, 200, "{body}");
    // Every sample line is `name{labels} value`; the parser skips what it cannot read, so
    // count that nothing was skipped.
    let samples = body
        .lines()
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .count();
    let parsed = prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_owned()))).unwrap();
    let histogram_lines: usize = parsed
        .samples
        .iter()
        .map(|sample| match &sample.value {
            prometheus_parse::Value::Histogram(buckets) => buckets.len(),
            _ => 1,
        })
        .sum();
    assert_eq!(histogram_lines, samples, "unparsed lines in\n{body}");
    parsed
}

/// The value of the sample `metric{labels}` (a histogram: its `+Inf` bucket); 0 if absent.
fn value(scrape: &prometheus_parse::Scrape, metric: &str, labels: &[(&str, &str)]) -> f64 {
    scrape
        .samples
        .iter()
        .find(|sample| {
            sample.metric == metric
                && labels
                    .iter()
                    .all(|(name, value)| sample.labels.get(name) == Some(value))
        })
        .map_or(0.0, |sample| match &sample.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => *v,
            prometheus_parse::Value::Histogram(buckets) => {
                buckets.iter().map(|b| b.count).fold(0.0, f64::max)
            }
            prometheus_parse::Value::Summary(_) => panic!("{metric} is a summary"),
        })
}

#[tokio::test]
async fn metrics_parse_and_move_with_the_requests() {
    let dir = TempDir::new("metrics");
    let gateway = gateway(
        &dir,
        &["--metrics-listen", "127.0.0.1:0", "--cache-ttl", "300"],
    )
    .await;
    let metrics_addr = gateway.metrics_addr();
    let before = scrape(metrics_addr).await;
    assert_eq!(
        value(
            &before,
            "mlflow_gateway_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        1.0
    );

    let (accepted, wrong, missing) = (3, 2, 1);
    let alice = basic("alice", "alice-pass");
    for _ in 0..accepted {
        assert_eq!(get_with_secrets(gateway.addr(), &alice).await, 201);
    }
    for n in 0..wrong {
        let guess = basic("alice", &format!("wrong-pass-{n}"));
        assert_eq!(get_with_secrets(gateway.addr(), &guess).await, 401);
    }
    for _ in 0..missing {
        assert_eq!(
            request(gateway.addr(), "GET", PATH, None, None).await.0,
            401
        );
    }
    // A POST, to see the method label.
    let (status, _) = request(
        gateway.addr(),
        "POST",
        PATH,
        Some(alice.as_str()),
        Some("{}"),
    )
    .await;
    assert_eq!(status, 201);

    let after = scrape(metrics_addr).await;
    let moved = |metric: &str, labels: &[(&str, &str)]| {
        value(&after, metric, labels) - value(&before, metric, labels)
    };
    let requests = "mlflow_gateway_requests_total";
    assert_eq!(
        moved(requests, &[("method", "get"), ("status", "2xx")]),
        3.0
    );
    assert_eq!(
        moved(requests, &[("method", "get"), ("status", "4xx")]),
        3.0
    );
    assert_eq!(
        moved(requests, &[("method", "post"), ("status", "2xx")]),
        1.0
    );
    let auth = "mlflow_gateway_auth_total";
    let outcome = |authenticator, outcome| [("authenticator", authenticator), ("outcome", outcome)];
    assert_eq!(moved(auth, &outcome("htpasswd", "accepted")), 4.0);
    assert_eq!(moved(auth, &outcome("-", "rejected")), 3.0);
    assert_eq!(moved(auth, &outcome("-", "throttled")), 0.0);
    assert_eq!(moved(auth, &outcome("-", "unavailable")), 0.0);
    // alice's first request and the two wrong passwords were checked; her three others hit
    // the cache.
    assert_eq!(
        moved("mlflow_gateway_credential_cache_misses_total", &[]),
        3.0
    );
    assert_eq!(
        moved("mlflow_gateway_credential_cache_hits_total", &[]),
        3.0
    );
    let checks = "mlflow_gateway_password_check_duration_seconds_count";
    assert_eq!(moved(checks, &[]), 3.0);
    let heads = "mlflow_gateway_upstream_response_head_duration_seconds_count";
    assert_eq!(moved(heads, &[]), 4.0);
    assert_eq!(
        moved("mlflow_gateway_tls_handshake_failures_total", &[]),
        0.0
    );
    // Every connection was closed: the gauge comes back to 0.
    let closed = holds_within(Duration::from_secs(10), || async {
        value(
            &scrape(metrics_addr).await,
            "mlflow_gateway_open_connections",
            &[],
        ) == 0.0
    })
    .await;
    assert!(closed, "connections still counted open");
    assert_eq!(
        request(metrics_addr, "GET", "/other", None, None).await.0,
        404
    );
}

#[tokio::test]
async fn no_metrics_listener_by_default() {
    let dir = TempDir::new("metrics-off");
    let gateway = gateway(&dir, &[]).await;
    let log = gateway.log();
    assert!(!log.contains("serving metrics"), "{log}");
    // The gateway's own listener does not serve them either: /metrics is an upstream path
    // behind authentication.
    assert_eq!(
        request(gateway.addr(), "GET", "/metrics", None, None)
            .await
            .0,
        401
    );
}

#[tokio::test]
async fn failed_tls_handshakes_are_counted() {
    let dir = TempDir::new("metrics-tls");
    let leaf = support::pki::TestCa::new().leaf();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, &leaf.cert_pem).unwrap();
    std::fs::write(&key, &leaf.key_pem).unwrap();
    let gateway = gateway(
        &dir,
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
            "--metrics-listen",
            "127.0.0.1:0",
        ],
    )
    .await;
    let metrics_addr = gateway.metrics_addr();
    // Plain HTTP to the TLS listener: no handshake.
    assert_eq!(request(gateway.addr(), "GET", PATH, None, None).await.0, 0);
    // Binary::start's readiness probe (connect, then close) is the other failed handshake.
    let failures = "mlflow_gateway_tls_handshake_failures_total";
    let counted = holds_within(Duration::from_secs(10), || async {
        value(&scrape(metrics_addr).await, failures, &[]) == 2.0
    })
    .await;
    assert!(
        counted,
        "{}",
        value(&scrape(metrics_addr).await, failures, &[])
    );
}
