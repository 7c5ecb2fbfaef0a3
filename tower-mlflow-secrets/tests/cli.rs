//! The `mlflow-secrets` binary, run against a loopback server that is both a minimal fake
//! Vault (token auth, one KV v2 secret, as in Vault's documented HTTP API) and the target of
//! `doctor --dry-run` (`/ok` answers 200 to the right bearer token, 401 otherwise;
//! `/denied` answers 403, `/boom` 500, `/sign-in` 302).
#![cfg(feature = "cli")]

use std::{convert::Infallible, net::SocketAddr, process::Output};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::{body::Incoming, server::conn::http1, service::service_fn};
use hyper_util::rt::TokioIo;

const SECRET_TOKEN: &str = "cli-secret-token-7f3a9";
const VAULT_TOKEN: &str = "hvs.cli-vault-token";
const BASIC_USER: &str = "cli-user";
const BASIC_PASSWORD: &str = "cli-secret-pass:with:colons";

async fn handle(req: Request<Incoming>) -> Response<Full<Bytes>> {
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    let (status, body) = match req.uri().path() {
        "/v1/sys/internal/ui/mounts/kv/app" | "/v1/sys/internal/ui/mounts/kv/basic"
            if header("x-vault-token") == VAULT_TOKEN =>
        {
            (
                StatusCode::OK,
                r#"{"data":{"type":"kv","path":"kv/","options":{"version":"2"}}}"#.to_owned(),
            )
        }
        "/v1/kv/data/basic" if header("x-vault-token") == VAULT_TOKEN => (
            StatusCode::OK,
            format!(
                r#"{{"data":{{"data":{{"username":"{BASIC_USER}","password":"{BASIC_PASSWORD}"}},"metadata":{{"version":1}}}},"lease_duration":0}}"#
            ),
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
        "/boom" => (StatusCode::INTERNAL_SERVER_ERROR, "{}".to_owned()),
        "/sign-in" => (StatusCode::FOUND, String::new()),
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
    command(addr, args, extra_env).output().await.unwrap()
}

/// The binary with the fake Vault configured and a clean environment (plus `PATH`, for
/// `exec`'s children).
fn command(addr: SocketAddr, args: &[&str], extra_env: &[(&str, &str)]) -> tokio::process::Command {
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
    if let Some(path) = std::env::var_os("PATH") {
        command.env("PATH", path);
    }
    for (k, v) in extra_env {
        command.env(k, v);
    }
    command
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
    for needle in [
        SECRET_TOKEN,
        VAULT_TOKEN,
        BASIC_PASSWORD,
        "cli-secret",
        "hvs.cli",
    ] {
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
    assert!(
        all.contains(&format!("secret: {} bytes,", raw.len())),
        "{all}"
    );
    assert!(
        all.contains("fingerprint hmac:") && !all.contains("sha256"),
        "{all}"
    );
    assert!(all.contains("provider[0]: vault"), "{all}");
    assert_no_secret(&output);
}

/// The `hmac:` fingerprint printed by one run of `info`.
fn fingerprint(output: &Output) -> String {
    let all = text(output);
    let start = all.find("fingerprint hmac:").expect(&all) + "fingerprint ".len();
    all[start..start + "hmac:".len() + 12].to_owned()
}

#[tokio::test]
async fn the_fingerprint_is_keyed_per_run_and_urls_lose_their_userinfo() {
    let addr = start_server().await;
    let first = run(addr, &["info"], &[]).await;
    let second = run(addr, &["info"], &[]).await;
    assert_eq!(first.status.code(), Some(0), "{}", text(&first));
    // The same secret, two runs: nothing to compare across runs (or with a guess).
    assert_ne!(fingerprint(&first), fingerprint(&second));
    let with_userinfo = format!("http://vault-user:vault-pw-123@{addr}/?token=query-secret");
    let output = run(addr, &["info"], &[("VAULT_ADDR", &with_userinfo)]).await;
    let all = text(&output);
    assert!(all.contains(&format!("address: http://{addr}\n")), "{all}");
    assert!(
        !all.contains("vault-pw-123") && !all.contains("query-secret"),
        "{all}"
    );
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
async fn dry_run_fails_on_redirects_404_and_5xx() {
    let addr = start_server().await;
    for (path, status) in [("/boom", "500"), ("/missing", "404"), ("/sign-in", "302")] {
        let url = format!("http://{addr}{path}");
        let output = run(addr, &["doctor", "--dry-run", &url], &[]).await;
        let all = text(&output);
        assert_eq!(output.status.code(), Some(1), "{all}");
        assert!(
            all.contains(&format!("dry run: FAILED: the server answered {status}")),
            "{all}"
        );
        assert!(!all.contains("doctor: ok"), "{all}");
        assert_no_secret(&output);
    }
}

/// One environment variable.
#[cfg(all(feature = "aws", feature = "azure"))]
type Var = (&'static str, &'static str);

#[cfg(all(feature = "aws", feature = "azure"))]
#[tokio::test]
async fn plain_http_provider_endpoints_off_loopback_are_refused_by_name() {
    let addr = start_server().await;
    let aws: [Var; 3] = [
        ("MLFLOW_SECRETS_AUTH_ENABLE", "aws-secrets-manager"),
        ("MLFLOW_AWS_SECRET_ID", "mlflow/prod"),
        ("AWS_REGION", "eu-west-1"),
    ];
    let azure = [
        ("MLFLOW_SECRETS_AUTH_ENABLE", "azure-key-vault"),
        ("AZURE_KEY_VAULT_URL", "https://kv.vault.azure.net"),
        ("MLFLOW_AZURE_SECRET_NAME", "mlflow"),
        ("AZURE_TENANT_ID", "t"),
        ("AZURE_CLIENT_ID", "c"),
    ];
    // (provider variables, the endpoint variable, the name the error must give)
    let cases: [(&[Var], Var, &str); 4] = [
        (
            &aws,
            ("AWS_ENDPOINT_URL", "http://moto.internal:5000"),
            "AWS_ENDPOINT_URL",
        ),
        (
            &aws,
            (
                "AWS_ENDPOINT_URL_SECRETS_MANAGER",
                "http://moto.internal:5000",
            ),
            "AWS_ENDPOINT_URL_SECRETS_MANAGER",
        ),
        (
            &[&azure[..], &[("AZURE_CLIENT_SECRET", "s")]].concat(),
            ("AZURE_AUTHORITY_HOST", "http://login.internal"),
            "AZURE_AUTHORITY_HOST",
        ),
        (
            &[&azure[..], &[("IDENTITY_HEADER", "h")]].concat(),
            ("IDENTITY_ENDPOINT", "http://identity.internal/token"),
            "IDENTITY_ENDPOINT",
        ),
    ];
    for (provider, endpoint, variable) in cases {
        let env: Vec<_> = provider.iter().copied().chain([endpoint]).collect();
        let output = run(addr, &["info"], &env).await;
        let all = text(&output);
        assert_eq!(output.status.code(), Some(2), "{all}");
        assert!(
            all.contains(&format!("{variable} must be an https URL")),
            "{all}"
        );
    }
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

#[tokio::test]
async fn version_and_help_exit_0() {
    let addr = start_server().await;
    let output = run(addr, &["--version"], &[]).await;
    assert_eq!(output.status.code(), Some(0));
    assert!(
        text(&output).contains(env!("CARGO_PKG_VERSION")),
        "{}",
        text(&output)
    );
    let output = run(addr, &["--help"], &[]).await;
    assert_eq!(output.status.code(), Some(0));
    for command in ["info", "doctor", "exec"] {
        assert!(text(&output).contains(command), "{}", text(&output));
    }
}

#[tokio::test]
async fn dry_run_option_on_info_is_a_usage_error() {
    let addr = start_server().await;
    let url = format!("http://{addr}/ok");
    let output = run(addr, &["info", "--dry-run", &url], &[]).await;
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
}

/// As the plugin: `127.0.0.1` in `MLFLOW_SECRETS_ALLOWED_HOSTS` allows every port of it.
#[tokio::test]
async fn allowed_host_without_a_port_allows_any_port() {
    let addr = start_server().await;
    let url = format!("http://{addr}/ok");
    let output = run(
        addr,
        &["doctor", "--dry-run", &url],
        &[("MLFLOW_SECRETS_ALLOWED_HOSTS", "127.0.0.1")],
    )
    .await;
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    assert!(text(&output).contains("dry run: ok (HTTP 200)"));
    // Another port given explicitly is still refused.
    let output = run(
        addr,
        &["doctor", "--dry-run", &url],
        &[("MLFLOW_SECRETS_ALLOWED_HOSTS", "127.0.0.1:1")],
    )
    .await;
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert!(text(&output).contains("not allowed"));
}

/// `exec` with the tracking server at the fake's address.
async fn exec(addr: SocketAddr, child: &[&str], extra_env: &[(&str, &str)]) -> Output {
    let uri = format!("http://{addr}");
    let mut env = vec![("MLFLOW_TRACKING_URI", uri.as_str())];
    env.extend_from_slice(extra_env);
    let args: Vec<&str> = ["exec"].iter().chain(child).copied().collect();
    run(addr, &args, &env).await
}

#[tokio::test]
async fn exec_sets_the_bearer_token_and_removes_a_basic_pair() {
    let addr = start_server().await;
    let check = r#"test "$MLFLOW_TRACKING_TOKEN" = "$EXPECTED" && test -z "${MLFLOW_TRACKING_USERNAME+x}${MLFLOW_TRACKING_PASSWORD+x}""#;
    let stale = [
        ("MLFLOW_TRACKING_USERNAME", "stale"),
        ("MLFLOW_TRACKING_PASSWORD", "stale"),
    ];
    let mut env = vec![("EXPECTED", SECRET_TOKEN)];
    env.extend(stale);
    let output = exec(addr, &["--", "sh", "-c", check], &env).await;
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    assert_no_secret(&output);
    // The check itself can fail.
    env[0] = ("EXPECTED", "another-token");
    let output = exec(addr, &["--", "sh", "-c", check], &env).await;
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
}

#[tokio::test]
async fn exec_sets_username_and_password_for_basic() {
    let addr = start_server().await;
    let check = r#"test "$MLFLOW_TRACKING_USERNAME" = "$U" && test "$MLFLOW_TRACKING_PASSWORD" = "$P" && test -z "${MLFLOW_TRACKING_TOKEN+x}""#;
    let output = exec(
        addr,
        &["sh", "-c", check],
        &[
            ("MLFLOW_VAULT_SECRET_PATH", "kv/basic"),
            ("MLFLOW_VAULT_AUTH_MODE", "basic"),
            ("MLFLOW_TRACKING_TOKEN", "stale"),
            ("U", BASIC_USER),
            ("P", BASIC_PASSWORD),
        ],
    )
    .await;
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    assert_no_secret(&output);
}

#[tokio::test]
async fn exec_passes_stdout_and_exits_with_the_childs_status() {
    let addr = start_server().await;
    let output = exec(addr, &["sh", "-c", "echo from-child; exit 7"], &[]).await;
    assert_eq!(output.status.code(), Some(7), "{}", text(&output));
    // stdout belongs to the command: nothing of ours is printed there.
    assert_eq!(String::from_utf8_lossy(&output.stdout), "from-child\n");
    let output = exec(addr, &["--", "sh", "-c", "kill -KILL $$"], &[]).await;
    assert_eq!(output.status.code(), Some(128 + 9), "{}", text(&output));
    let output = exec(addr, &["no-such-command-mlflow-secrets"], &[]).await;
    assert_eq!(output.status.code(), Some(127), "{}", text(&output));
    assert!(text(&output).contains("no-such-command-mlflow-secrets"));
}

#[tokio::test]
async fn exec_refuses_a_tracking_uri_that_is_not_allowed() {
    let addr = start_server().await;
    let marker = "child-ran-7c1e";
    let child = ["sh", "-c", "echo child-ran-7c1e"];
    let output = run(
        addr,
        &[&["exec"][..], &child].concat(),
        &[(
            "MLFLOW_TRACKING_URI",
            "https://user:pw@elsewhere.example.com/",
        )],
    )
    .await;
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert!(text(&output).contains("not allowed"), "{}", text(&output));
    assert!(!text(&output).contains(marker));
    assert!(!text(&output).contains("user:pw"), "{}", text(&output));
    // Unset: a usage error, the command does not run either.
    let output = run(addr, &[&["exec"][..], &child].concat(), &[]).await;
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    assert!(text(&output).contains("MLFLOW_TRACKING_URI"));
    assert!(!text(&output).contains(marker));
}

#[tokio::test]
async fn exec_with_a_custom_header_points_to_proxy() {
    let addr = start_server().await;
    let output = exec(
        addr,
        &["sh", "-c", "echo child-ran"],
        &[("MLFLOW_AUTH_HEADER_NAME", "X-Api-Key")],
    )
    .await;
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert!(text(&output).contains("proxy"), "{}", text(&output));
    assert!(!text(&output).contains("child-ran"));
    assert_no_secret(&output);
}

/// SIGTERM and SIGINT sent to `mlflow-secrets` reach the command, whose status is then ours.
#[tokio::test]
async fn exec_forwards_sigterm_and_sigint() {
    use tokio::io::{AsyncBufReadExt, BufReader};

    let addr = start_server().await;
    for (signal, code) in [("TERM", 42), ("INT", 43)] {
        let script = "trap 'exit 42' TERM; trap 'exit 43' INT; echo ready; \
                      while :; do sleep 0.05; done";
        let uri = format!("http://{addr}");
        let mut child = command(
            addr,
            &["exec", "sh", "-c", script],
            &[("MLFLOW_TRACKING_URI", &uri)],
        )
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let ready = tokio::time::timeout(std::time::Duration::from_secs(30), lines.next_line())
            .await
            .expect("the command did not start")
            .unwrap();
        assert_eq!(ready.as_deref(), Some("ready"));
        let pid = child.id().unwrap().to_string();
        let kill = std::process::Command::new("kill")
            .args([format!("-{signal}"), pid])
            .status()
            .unwrap();
        assert!(kill.success());
        let status = tokio::time::timeout(std::time::Duration::from_secs(30), child.wait())
            .await
            .expect("the command was not stopped")
            .unwrap();
        assert_eq!(status.code(), Some(code), "SIG{signal}");
    }
}
