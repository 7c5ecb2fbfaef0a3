//! The real MLflow server and Python client through `mlflow-gateway`.
//!
//! One plain `mlflow server` (no auth) is started per test binary run and protected by the
//! gateway twice: with an htpasswd file made by Apache `htpasswd -B`, and with the
//! `basic_auth.db` of a real `mlflow server --app-name basic-auth` whose users were created
//! through MLflow's REST API.

use std::{
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpStream},
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    time::{Duration, Instant},
};

use tower_mlflow_tests::{ChildGuard, free_port, venv_bin, wait_for_port};

const ADMIN_PASSWORD: &str = "admin-password-1234567";

struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "gw-peer-{tag}-{}-{}",
            std::process::id(),
            free_port()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// A minimal HTTP/1.1 exchange over a fresh connection: (status, body).
fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    basic: Option<&str>,
    json: Option<&str>,
) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(credentials) = basic {
        use base64::Engine as _;
        let encoded = base64::engine::general_purpose::STANDARD.encode(credentials);
        request.push_str(&format!("Authorization: Basic {encoded}\r\n"));
    }
    let body = json.unwrap_or("");
    if json.is_some() {
        request.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// Waits until `GET /health` answers 200.
fn wait_healthy(addr: SocketAddr, child: &mut ChildGuard) {
    wait_for_port(addr, Duration::from_secs(120));
    let start = Instant::now();
    loop {
        if let Ok(Some(status)) = child.0.try_wait() {
            panic!("server at {addr} exited early: {status}");
        }
        if http(addr, "GET", "/health", None, None).0 == 200 {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "{addr} never became healthy"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn mlflow_server(dir: &Path, port: u16, basic_auth: bool) -> ChildGuard {
    let mut command = Command::new(venv_bin("mlflow"));
    command
        .current_dir(dir)
        .arg("server")
        .args([
            "--host",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--workers",
            "1",
        ])
        .args([
            "--backend-store-uri",
            &format!("sqlite:///{}/mlflow.db", dir.display()),
        ])
        .args([
            "--artifacts-destination",
            &dir.join("artifacts").display().to_string(),
        ])
        .env("MLFLOW_AUTH_ADMIN_PASSWORD", ADMIN_PASSWORD)
        .env("MLFLOW_FLASK_SERVER_SECRET_KEY", "test-only-secret-key")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if basic_auth {
        command.args(["--app-name", "basic-auth"]);
    }
    let mut child = ChildGuard::spawn(&mut command);
    wait_healthy(loopback(port), &mut child);
    child
}

fn gateway(upstream: u16, authenticator: &[&str]) -> (ChildGuard, SocketAddr) {
    let addr = loopback(free_port());
    let child = ChildGuard::spawn(
        Command::new(env!("CARGO_BIN_EXE_mlflow-gateway"))
            .args(["--listen", &addr.to_string()])
            .args(["--upstream", &format!("http://127.0.0.1:{upstream}")])
            .arg("--mlflow-default-exemptions")
            .args(authenticator)
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    wait_for_port(addr, Duration::from_secs(20));
    (child, addr)
}

/// Runs the MLflow Python client: creates an experiment, logs a param, a metric and an
/// artifact, reads the run back and prints a summary line.
fn mlflow_client(
    gateway: SocketAddr,
    credentials: Option<(&str, &str)>,
    experiment: &str,
) -> Output {
    const SCRIPT: &str = r#"
import json, os, sys, tempfile
import mlflow
from mlflow import MlflowClient
mlflow.set_tracking_uri(os.environ["TRACKING_URI"])
experiment_id = mlflow.create_experiment(sys.argv[1])
with mlflow.start_run(experiment_id=experiment_id) as run:
    mlflow.log_param("lr", "0.1")
    mlflow.log_metric("loss", 0.5)
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "notes.txt")
        with open(path, "w") as f:
            f.write("artifact through the gateway")
        mlflow.log_artifact(path)
client = MlflowClient()
got = client.get_run(run.info.run_id)
artifacts = [a.path for a in client.list_artifacts(run.info.run_id)]
local = client.download_artifacts(run.info.run_id, "notes.txt", tempfile.mkdtemp())
print("RESULT " + json.dumps({
    "params": got.data.params,
    "metrics": got.data.metrics,
    "artifacts": artifacts,
    "artifact_text": open(local).read(),
}))
"#;
    let mut command = Command::new(venv_bin("python"));
    command
        .args(["-c", SCRIPT, experiment])
        .env("TRACKING_URI", format!("http://{gateway}"))
        .env("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
        .env("MLFLOW_HTTP_REQUEST_TIMEOUT", "60")
        .env_remove("MLFLOW_TRACKING_USERNAME")
        .env_remove("MLFLOW_TRACKING_PASSWORD");
    if let Some((user, password)) = credentials {
        command
            .env("MLFLOW_TRACKING_USERNAME", user)
            .env("MLFLOW_TRACKING_PASSWORD", password);
    }
    command.output().unwrap()
}

fn assert_logged_through(output: &Output) {
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "client failed:\n{stdout}\n{stderr}"
    );
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .unwrap_or_else(|| panic!("{stdout}"));
    assert!(line.contains(r#""params": {"lr": "0.1"}"#), "{line}");
    assert!(line.contains(r#""metrics": {"loss": 0.5}"#), "{line}");
    assert!(line.contains(r#""artifacts": ["notes.txt"]"#), "{line}");
    assert!(line.contains("artifact through the gateway"), "{line}");
}

fn assert_refused(output: &Output) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success(),
        "the client succeeded without valid credentials"
    );
    assert!(stderr.contains("401"), "{stderr}");
}

#[test]
#[ignore = "needs mlflow and apache2-utils; run scripts/test"]
fn mlflow_client_through_the_gateway() {
    let upstream_dir = TempDir::new("upstream");
    let upstream_port = free_port();
    let _upstream = mlflow_server(&upstream_dir.0, upstream_port, false);

    // 1. htpasswd made by Apache htpasswd -B.
    let htpasswd = upstream_dir.0.join("htpasswd");
    let made = Command::new("htpasswd")
        .args([
            "-cbB",
            "-C",
            "5",
            htpasswd.to_str().unwrap(),
            "bob",
            "bob-password-123",
        ])
        .output()
        .unwrap();
    assert!(made.status.success(), "{made:?}");
    let (_gateway, addr) = gateway(upstream_port, &["--htpasswd", htpasswd.to_str().unwrap()]);
    assert_logged_through(&mlflow_client(
        addr,
        Some(("bob", "bob-password-123")),
        "via-htpasswd",
    ));
    assert_refused(&mlflow_client(addr, None, "anonymous"));
    assert_refused(&mlflow_client(
        addr,
        Some(("bob", "wrong-password")),
        "wrong",
    ));
    assert_eq!(http(addr, "GET", "/health", None, None).0, 200);

    // 2. MLflow's own user database, users created through its REST API.
    let auth_dir = TempDir::new("basic-auth");
    let auth_port = free_port();
    let auth_server = mlflow_server(&auth_dir.0, auth_port, true);
    let (status, body) = http(
        loopback(auth_port),
        "POST",
        "/api/2.0/mlflow/users/create",
        Some(&format!("admin:{ADMIN_PASSWORD}")),
        Some(r#"{"username": "carol", "password": "carol-password-123"}"#),
    );
    assert_eq!(status, 200, "{body}");
    drop(auth_server);
    let db = auth_dir.0.join("basic_auth.db");
    assert!(db.exists(), "MLflow did not create {}", db.display());
    let (_gateway, addr) = gateway(upstream_port, &["--mlflow-auth-db", db.to_str().unwrap()]);
    assert_logged_through(&mlflow_client(
        addr,
        Some(("carol", "carol-password-123")),
        "via-mlflow-db",
    ));
    assert_logged_through(&mlflow_client(
        addr,
        Some(("admin", ADMIN_PASSWORD)),
        "via-mlflow-db-admin",
    ));
    assert_refused(&mlflow_client(
        addr,
        Some(("carol", "not-her-password")),
        "wrong-db",
    ));
    assert_refused(&mlflow_client(addr, None, "anonymous-db"));
}
