//! The `mlflow-secrets` binary, run against a loopback server that is both a minimal fake
//! Vault (token auth, one KV v2 secret, as in Vault's documented HTTP API) and the target of
//! `doctor --dry-run` (`/ok` answers 200 to the right bearer token, 401 otherwise;
//! `/denied` answers 403).
#![cfg(feature = "cli")]

use std::{convert::Infallible, net::SocketAddr, process::Output};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::{body::Incoming, server::conn::http1, service::service_fn};
use hyper_util::rt::TokioIo;

const SECRET_TOKEN: &str = "cli-secret-token-7f3a9";
const VAULT_TOKEN: &str = "hvs.cli-vault-token";

async fn handle(req: Request<Incoming>) -> Response<Full<Bytes>> {
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    let (status, body) = match req.uri().path() {
        "/v1/sys/internal/ui/mounts/kv/app" if header("x-vault-token") == VAULT_TOKEN => (
            StatusCode::OK,
            r#"{"data":{"type":"kv","path":"kv/","options":{"version":"2"}}}"#.to_owned(),
        ),
        "/v1/kv/data/app" if header("x-vault-token") == VAULT_TOKEN => (
            StatusCode::OK,
            format!(
                r#"{{"data":{{"data":{{"token":"{SECRET_TOKEN}"}},"metadata":{{"version":1}}}},"lease_duration":0}}"#
            ),
        ),
        p if p.starts_with("/v1/") => (
            StatusCode::FORBIDDEN,
            r#"{"errors":["permission denied"]}"#.to_owned(),
        ),
        "/ok" if header("authorization") == format!("Bearer {SECRET_TOKEN}") => {
            (StatusCode::OK, "{}".to_owned())
        }
        "/ok" => (StatusCode::UNAUTHORIZED, "{}".to_owned()),
        "/denied" => (StatusCode::FORBIDDEN, "{}".to_owned()),
        _ => (StatusCode::NOT_FOUND, String::new()),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
}

async fn start_server() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let service =
                    service_fn(|req| async move { Ok::<_, Infallible>(handle(req).await) });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

async fn run(addr: SocketAddr, args: &[&str], extra_env: &[(&str, &str)]) -> Output {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_mlflow-secrets"));
    command
        .args(args)
        .env_clear()
        .env("MLFLOW_SECRETS_AUTH_ENABLE", "vault")
        .env("VAULT_ADDR", format!("http://{addr}"))
        .env("VAULT_TOKEN", VAULT_TOKEN)
        .env("MLFLOW_VAULT_SECRET_PATH", "kv/app")
        .env(
            "MLFLOW_SECRETS_ALLOWED_HOSTS",
            format!("127.0.0.1:{}", addr.port()),
        );
    for (k, v) in extra_env {
        command.env(k, v);
    }
    command.output().await.unwrap()
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn assert_no_secret(output: &Output) {
    let all = text(output);
    for needle in [SECRET_TOKEN, VAULT_TOKEN, "cli-secret", "hvs.cli"] {
        assert!(!all.contains(needle), "output leaks {needle}: {all}");
    }
}

#[tokio::test]
async fn info_prints_a_fingerprint_and_never_the_secret() {
    let addr = start_server().await;
    let output = run(addr, &["info", "--verbose"], &[]).await;
    let all = text(&output);
    assert_eq!(output.status.code(), Some(0), "{all}");
    // The secret as fetched is the JSON object `{"token":"…"}`.
    let raw = format!(r#"{{"token":"{SECRET_TOKEN}"}}"#);
    assert!(all.contains(&format!("({} bytes)", raw.len())), "{all}");
    assert!(all.contains("secret: sha256:"), "{all}");
    assert!(all.contains("provider[0]: vault"), "{all}");
    assert_no_secret(&output);
}

#[tokio::test]
async fn doctor_without_dry_run_checks_fetch_and_header() {
    let addr = start_server().await;
    let output = run(addr, &["doctor", "-v"], &[]).await;
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    assert!(text(&output).contains("doctor: ok"));
    assert_no_secret(&output);
}

#[tokio::test]
async fn dry_run_passes_on_200() {
    let addr = start_server().await;
    let url = format!("http://{addr}/ok");
    let output = run(addr, &["doctor", "--verbose", "--dry-run", &url], &[]).await;
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    assert!(text(&output).contains("dry run: ok (HTTP 200)"));
    assert_no_secret(&output);
}

#[tokio::test]
async fn dry_run_fails_on_401() {
    let addr = start_server().await;
    let url = format!("http://{addr}/ok");
    // Basic with a JSON `token` secret cannot render: use raw header instead so the
    // server sees a wrong credential and answers 401.
    let output = run(
        addr,
        &["doctor", "--dry-run", &url],
        &[("MLFLOW_AUTH_HEADER_NAME", "X-Api-Key")],
    )
    .await;
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert!(text(&output).contains("401"), "{}", text(&output));
    assert_no_secret(&output);
}

#[tokio::test]
async fn dry_run_fails_on_403() {
    let addr = start_server().await;
    let url = format!("http://{addr}/denied");
    let output = run(addr, &["doctor", "--dry-run", &url], &[]).await;
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert!(text(&output).contains("403"));
    assert_no_secret(&output);
}

#[tokio::test]
async fn dry_run_fails_on_network_error() {
    let addr = start_server().await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let url = format!("http://127.0.0.1:{port}/ok");
    let output = run(
        addr,
        &["doctor", "--dry-run", &url],
        &[("MLFLOW_SECRETS_ALLOWED_HOSTS", &format!("127.0.0.1:{port}"))],
    )
    .await;
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert!(text(&output).contains("dry run: FAILED"));
}

#[tokio::test]
async fn dry_run_to_a_host_not_allowed_fails() {
    let addr = start_server().await;
    let output = run(
        addr,
        &["doctor", "--dry-run", "https://elsewhere.example.com/"],
        &[],
    )
    .await;
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert!(text(&output).contains("not allowed"));
}

#[tokio::test]
async fn configuration_error_exits_2_and_names_the_variable() {
    let addr = start_server().await;
    let output = run(addr, &["info"], &[("MLFLOW_VAULT_TTL_SEC", "soon")]).await;
    assert_eq!(output.status.code(), Some(2));
    assert!(text(&output).contains("MLFLOW_VAULT_TTL_SEC"));
}

#[tokio::test]
async fn fetch_failure_exits_1() {
    let addr = start_server().await;
    let output = run(addr, &["info"], &[("VAULT_TOKEN", "hvs.wrong")]).await;
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert!(text(&output).contains("permission denied"));
}

#[tokio::test]
async fn usage_error_exits_2() {
    let addr = start_server().await;
    let output = run(addr, &["frobnicate"], &[]).await;
    assert_eq!(output.status.code(), Some(2));
}
