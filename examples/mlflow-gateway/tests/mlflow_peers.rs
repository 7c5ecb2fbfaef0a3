//! The real MLflow server and Python client through `mlflow-gateway`.
//!
//! One plain `mlflow server` (no auth) is started per test binary run and protected by the
//! gateway twice: with an htpasswd file made by Apache `htpasswd -B`, and with the
//! `basic_auth.db` of a real `mlflow server --app-name basic-auth` whose users were created
//! through MLflow's REST API. The gateway is assembled in-process by the library.

mod support;

use std::{
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpStream},
    process::{Command, Output},
    time::Duration,
};

use tower_mlflow_tests::{MLFLOW_ADMIN, MLFLOW_ADMIN_PASSWORD, MlflowServer, venv_bin};

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

fn gateway(upstream: u16, authenticator: &[&str]) -> (support::InProcess, SocketAddr) {
    let upstream = format!("http://127.0.0.1:{upstream}");
    let mut args = vec!["--upstream", &upstream, "--mlflow-default-exemptions"];
    args.extend(authenticator);
    let gateway = support::InProcess::start(&args).unwrap();
    let addr = gateway.addr();
    (gateway, addr)
}

/// Runs the MLflow Python client: creates an experiment, logs a param, a metric and an
/// artifact, reads the run back and prints a summary line.
fn mlflow_client(
    gateway: SocketAddr,
    credentials: Option<(&str, &str)>,
    experiment: &str,
) -> Output {
    mlflow_client_at(&format!("http://{gateway}"), credentials, experiment, &[])
}

/// [`mlflow_client`] against `tracking_uri`, with `env` added.
fn mlflow_client_at(
    tracking_uri: &str,
    credentials: Option<(&str, &str)>,
    experiment: &str,
    env: &[(&str, &str)],
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
        .env("TRACKING_URI", tracking_uri)
        .env("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
        .env("MLFLOW_HTTP_REQUEST_TIMEOUT", "60")
        .env_remove("MLFLOW_TRACKING_USERNAME")
        .env_remove("MLFLOW_TRACKING_PASSWORD");
    if let Some((user, password)) = credentials {
        command
            .env("MLFLOW_TRACKING_USERNAME", user)
            .env("MLFLOW_TRACKING_PASSWORD", password);
    }
    command.envs(env.iter().copied());
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
    let mut upstream = MlflowServer::start(false);
    upstream.wait_healthy();
    let upstream_port = upstream.port();

    // 1. htpasswd made by Apache htpasswd -B.
    let htpasswd = upstream.dir().join("htpasswd");
    support::htpasswd_bcrypt(&htpasswd, "bob", "bob-password-123");
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
    let mut auth_server = MlflowServer::start(true);
    auth_server.wait_healthy();
    let (status, body) = http(
        loopback(auth_server.port()),
        "POST",
        "/api/2.0/mlflow/users/create",
        Some(&format!("{MLFLOW_ADMIN}:{MLFLOW_ADMIN_PASSWORD}")),
        Some(r#"{"username": "carol", "password": "carol-password-123"}"#),
    );
    assert_eq!(status, 200, "{body}");
    let db = auth_server.auth_db();
    assert!(db.exists(), "MLflow did not create {}", db.display());
    let (_gateway, addr) = gateway(upstream_port, &["--mlflow-auth-db", db.to_str().unwrap()]);
    assert_logged_through(&mlflow_client(
        addr,
        Some(("carol", "carol-password-123")),
        "via-mlflow-db",
    ));
    assert_logged_through(&mlflow_client(
        addr,
        Some((MLFLOW_ADMIN, MLFLOW_ADMIN_PASSWORD)),
        "via-mlflow-db-admin",
    ));
    assert_refused(&mlflow_client(
        addr,
        Some(("carol", "not-her-password")),
        "wrong-db",
    ));
    assert_refused(&mlflow_client(addr, None, "anonymous-db"));
}

#[test]
#[ignore = "needs mlflow; run scripts/test"]
fn mlflow_client_through_the_tls_gateway() {
    let mut upstream = MlflowServer::start(false);
    upstream.wait_healthy();
    let dir = upstream.dir();
    let ca = support::pki::TestCa::new();
    let leaf = ca.leaf();
    let (ca_file, cert, key, htpasswd) = (
        dir.join("ca.pem"),
        dir.join("tls.crt"),
        dir.join("tls.key"),
        dir.join("htpasswd-tls"),
    );
    std::fs::write(&ca_file, ca.pem()).unwrap();
    std::fs::write(&cert, &leaf.cert_pem).unwrap();
    std::fs::write(&key, &leaf.key_pem).unwrap();
    // alice / mlflow-pass, APR1 (reference test vector).
    std::fs::write(&htpasswd, "alice:$apr1$abcdefgh$aDPo2xmbXHAQSzMtOEWhn/\n").unwrap();
    let (_gateway, addr) = gateway(
        upstream.port(),
        &[
            "--htpasswd",
            htpasswd.to_str().unwrap(),
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
    );
    let uri = format!("https://localhost:{}", addr.port());
    let trust = [(
        "MLFLOW_TRACKING_SERVER_CERT_PATH",
        ca_file.to_str().unwrap(),
    )];
    assert_logged_through(&mlflow_client_at(
        &uri,
        Some(("alice", "mlflow-pass")),
        "via-tls",
        &trust,
    ));
    assert_refused(&mlflow_client_at(&uri, None, "anonymous-tls", &trust));
    // Without the test CA the client refuses the gateway's certificate.
    let untrusted = mlflow_client_at(&uri, Some(("alice", "mlflow-pass")), "untrusted", &[]);
    let stderr = String::from_utf8_lossy(&untrusted.stderr);
    assert!(!untrusted.status.success(), "trusted an unknown CA");
    assert!(
        stderr.contains("CERTIFICATE_VERIFY_FAILED") || stderr.contains("SSL"),
        "{stderr}"
    );
}

/// A JSON POST with Basic credentials and, optionally, a browser's `Origin`: (status, body).
fn post_from(addr: SocketAddr, path: &str, origin: Option<&str>, json: &str) -> (u16, String) {
    use base64::Engine as _;
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let basic = base64::engine::general_purpose::STANDARD.encode("alice:mlflow-pass");
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         Authorization: Basic {basic}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n",
        json.len()
    );
    if let Some(origin) = origin {
        request.push_str(&format!("Origin: {origin}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(json);
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

#[test]
#[ignore = "needs mlflow; run scripts/test"]
fn ui_writes_from_the_public_url_reach_mlflow_and_foreign_ones_do_not() {
    let mut upstream = MlflowServer::start(false);
    upstream.wait_healthy();
    let upstream_addr = loopback(upstream.port());
    let htpasswd = upstream.dir().join("htpasswd-origin");
    // alice / mlflow-pass, APR1 (reference test vector).
    std::fs::write(&htpasswd, "alice:$apr1$abcdefgh$aDPo2xmbXHAQSzMtOEWhn/\n").unwrap();
    let (_gateway, addr) = gateway(
        upstream.port(),
        &[
            "--htpasswd",
            htpasswd.to_str().unwrap(),
            "--public-url",
            "https://mlflow.example.com",
        ],
    );
    let create = "/ajax-api/2.0/mlflow/experiments/create";
    let public = Some("https://mlflow.example.com");
    let exists = |name: &str| {
        let path = format!("/api/2.0/mlflow/experiments/get-by-name?experiment_name={name}");
        http(upstream_addr, "GET", &path, None, None).0 == 200
    };

    // MLflow alone refuses the public origin: the gateway must not pass it on.
    let (status, body) = post_from(upstream_addr, create, public, r#"{"name":"direct"}"#);
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("Cross-origin request blocked"), "{body}");
    assert!(!exists("direct"));

    let (status, body) = post_from(addr, create, public, r#"{"name":"from-ui"}"#);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("experiment_id"), "{body}");
    assert!(exists("from-ui"));

    // Spelled differently, the same origin.
    let (status, body) = post_from(
        addr,
        create,
        Some("HTTPS://MLflow.example.com:443"),
        r#"{"name":"from-ui-2"}"#,
    );
    assert_eq!(status, 200, "{body}");

    for (origin, name) in [
        ("https://evil.example", "from-evil"),
        ("null", "from-null"),
        ("http://mlflow.example.com", "from-http"),
    ] {
        let (status, body) = post_from(
            addr,
            create,
            Some(origin),
            &format!(r#"{{"name":"{name}"}}"#),
        );
        assert_eq!(status, 403, "{origin}: {body}");
        assert!(body.contains("Cross-origin request refused"), "{body}");
        assert!(!exists(name), "{origin} reached MLflow");
    }

    // The MLflow client and curl send no Origin: unaffected.
    let (status, body) = post_from(
        addr,
        "/api/2.0/mlflow/experiments/create",
        None,
        r#"{"name":"from-client"}"#,
    );
    assert_eq!(status, 200, "{body}");
    assert!(exists("from-client"));

    // Without --public-url: the listen address, and localhost on a loopback listener.
    let (_local, local) = gateway(upstream.port(), &["--htpasswd", htpasswd.to_str().unwrap()]);
    let here = format!("http://localhost:{}", local.port());
    let (status, body) = post_from(local, create, Some(&here), r#"{"name":"from-localhost"}"#);
    assert_eq!(status, 200, "{body}");
    let (status, body) = post_from(local, create, public, r#"{"name":"not-public"}"#);
    assert_eq!(status, 403, "{body}");
    assert!(!exists("not-public"));
}
