//! `--workers`: thread-per-core serving, by behaviour of the real binary on loopback. Every
//! request is answered whichever worker's listener the kernel gives its connection to, a
//! SIGTERM drains the requests in flight on all of them, and bad counts are refused naming
//! the flag.

mod support;

use std::{
    net::SocketAddr,
    process::{Command, Output, Stdio},
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use support::binary::{Binary, holds_within, request};
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::TcpListener,
};
use tower_mlflow_tests::TempDir;

const HTPASSWD: &str = "alice:$apr1$abcdefgh$aDPo2xmbXHAQSzMtOEWhn/\n";
const ALICE: &str = "Basic YWxpY2U6bWxmbG93LXBhc3M="; // alice:mlflow-pass
const BIN: &str = env!("CARGO_BIN_EXE_mlflow-gateway");
/// Connections opened at once: with two listeners, all of them on one has odds of 2^-31.
const CLIENTS: usize = 32;

/// An upstream that answers `200 slow` two seconds after each request head, and counts the
/// requests it has received.
async fn slow_upstream() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let received = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&received);
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let counter = Arc::clone(&counter);
            tokio::spawn(async move {
                let mut buf = [0; 4096];
                while let Ok(n) = stream.read(&mut buf).await {
                    if n == 0 {
                        return;
                    }
                    counter.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_secs(2)).await;
                    let answer = b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nslow";
                    if stream.write_all(answer).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, received)
}

fn start(dir: &TempDir, upstream: SocketAddr, extra: &[&str]) -> Binary {
    support::gateway::Fixture::with_upstream(dir, HTPASSWD, upstream).binary(extra)
}

/// The listening sockets on `port` in `/proc/net/tcp` (state `0A`), one a line.
#[cfg(target_os = "linux")]
fn listening_sockets(port: u16) -> usize {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    let local = format!(":{port:04X}");
    table
        .lines()
        .skip(1)
        .filter(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            fields.get(1).is_some_and(|addr| addr.ends_with(&local)) && fields.get(3) == Some(&"0A")
        })
        .count()
}

/// The names of the threads of process `pid` that are gateway workers.
#[cfg(target_os = "linux")]
fn worker_threads(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .filter(|name| name.starts_with("gateway-worker"))
        .count()
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn two_workers_listen_twice_on_the_port_each_on_its_thread() {
    let dir = TempDir::new("gateway-workers");
    let (upstream, _) = slow_upstream().await;
    let gateway = start(&dir, upstream, &["--workers", "2"]);
    assert_eq!(listening_sockets(gateway.addr().port()), 2);
    assert_eq!(worker_threads(gateway.pid()), 2);
    let one = start(&dir, upstream, &["--workers", "1"]);
    assert_eq!(listening_sockets(one.addr().port()), 1);
    assert_eq!(worker_threads(one.pid()), 1);
}

/// `SO_REUSEPORT` would let a second gateway of the same user join the first one's port and
/// take part of its traffic; it must fail as a plain bind does.
#[tokio::test]
async fn a_second_gateway_on_a_port_in_use_is_refused() {
    let dir = TempDir::new("gateway-workers");
    let (upstream, _) = slow_upstream().await;
    let first = start(&dir, upstream, &["--workers", "2"]);
    let port = first.addr().to_string();
    let mut args = base_args(&dir);
    args[1] = port.clone();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut second = Command::new(BIN)
        .args([&args[..], &["--workers", "2"]].concat())
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let exited = holds_within(Duration::from_secs(20), || {
        let done = second.try_wait().unwrap().is_some();
        async move { done }
    })
    .await;
    if !exited {
        let _ = second.kill();
        panic!("a second gateway started on {port}, a port in use");
    }
    let second = second.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains(&port), "{stderr}");
    assert!(stderr.to_lowercase().contains("in use"), "{stderr}");
    #[cfg(target_os = "linux")]
    assert_eq!(listening_sockets(first.addr().port()), 2);
}

/// Whether process `pid` has exited (a zombie until its parent reaps it, or gone).
fn exited(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised name.
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z')),
        Err(_) => true,
    }
}

#[tokio::test]
async fn with_two_workers_every_request_is_answered_and_sigterm_drains_all() {
    let dir = TempDir::new("gateway-workers");
    let (upstream, received) = slow_upstream().await;
    // 32 first logins at once would look like guessing to the throttle.
    let flags = ["--workers", "2", "--failed-login-limit", "0"];
    let gateway = start(&dir, upstream, &flags);
    let addr = gateway.addr();
    let path = "/api/2.0/mlflow/experiments/search";

    // Many connections at once, spread by the kernel over both listeners.
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| tokio::spawn(async move { request(addr, "GET", path, Some(ALICE), None).await }))
        .collect();
    for client in clients {
        assert_eq!(client.await.unwrap(), (200, "slow".to_owned()));
    }

    // Again, and a SIGTERM while every one of them waits for the upstream.
    let before = received.load(Ordering::SeqCst);
    let in_flight: Vec<_> = (0..CLIENTS)
        .map(|_| tokio::spawn(async move { request(addr, "GET", path, Some(ALICE), None).await }))
        .collect();
    let all_upstream = holds_within(Duration::from_secs(20), || {
        let received = Arc::clone(&received);
        async move { received.load(Ordering::SeqCst) == before + CLIENTS }
    })
    .await;
    assert!(all_upstream, "not every request reached the upstream");
    let sent = Command::new("kill")
        .args(["-TERM", &gateway.pid().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    for client in in_flight {
        assert_eq!(client.await.unwrap(), (200, "slow".to_owned()));
    }
    if cfg!(target_os = "linux") {
        let pid = gateway.pid();
        let ended = holds_within(Duration::from_secs(30), || async move { exited(pid) }).await;
        assert!(ended, "still running after the drain:\n{}", gateway.log());
    }
    // New connections are refused once it has stopped accepting.
    assert_eq!(request(addr, "GET", path, Some(ALICE), None).await.0, 0);
}

/// Runs the binary to completion with `args` and `env`.
fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(BIN)
        .args(args)
        .envs(env.iter().copied())
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn base_args(dir: &TempDir) -> Vec<String> {
    let htpasswd = dir.path().join("htpasswd");
    std::fs::write(&htpasswd, HTPASSWD).unwrap();
    [
        "--listen",
        "127.0.0.1:0",
        "--upstream",
        "http://127.0.0.1:5000",
        "--htpasswd",
        htpasswd.to_str().unwrap(),
    ]
    .map(str::to_owned)
    .to_vec()
}

#[test]
fn a_bad_worker_count_is_refused_naming_the_flag_and_the_value() {
    let dir = TempDir::new("gateway-workers");
    let base = base_args(&dir);
    let base: Vec<&str> = base.iter().map(String::as_str).collect();
    for (value, env) in [("0", false), ("1025", false), ("abc", false), ("0", true)] {
        let output = if env {
            run(&base, &[("MLFLOW_GATEWAY_WORKERS", value)])
        } else {
            run(&[&base[..], &["--workers", value]].concat(), &[])
        };
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{value}: {stderr}");
        assert!(stderr.contains("--workers"), "{value}: {stderr}");
        assert!(stderr.contains(value), "{value}: {stderr}");
    }
    // And from the file, naming the key.
    let file = dir.path().join("gateway.toml");
    std::fs::write(&file, "workers = 0\n").unwrap();
    let output = run(
        &[&base[..], &["--config", file.to_str().unwrap()]].concat(),
        &[],
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--workers 0"), "{stderr}");
}

#[test]
fn check_prints_the_worker_count() {
    let dir = TempDir::new("gateway-workers");
    let base = base_args(&dir);
    let base: Vec<&str> = base.iter().map(String::as_str).collect();
    let output = run(&[&base[..], &["--check", "--workers", "3"]].concat(), &[]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(stdout.lines().any(|line| line == "workers = 3"), "{stdout}");
    // The default: one a core.
    let output = run(&[&base[..], &["--check"]].concat(), &[]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let expected = format!("workers = {}", cores.min(1024));
    assert!(stdout.lines().any(|line| line == expected), "{stdout}");
}

#[test]
fn help_documents_workers_and_its_default() {
    let output = run(&["--help"], &[]);
    let help = String::from_utf8_lossy(&output.stdout);
    let flag = help
        .split("--workers <N>")
        .nth(1)
        .unwrap_or_else(|| panic!("no --workers in --help:\n{help}"));
    let text = flag.split("--log-format").next().unwrap();
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(text.contains("default: the number of cores"), "{text}");
    assert!(text.contains("MLFLOW_GATEWAY_WORKERS"), "{text}");
}
