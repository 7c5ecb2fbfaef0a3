//! Shared by the tests of the `mlflow-secrets` binary with the real MLflow Python client:
//! the binary, a moto server holding the credential, the client script, and a running
//! `mlflow-secrets proxy`.
#![allow(dead_code, reason = "each test file uses a part of it")]

use std::{
    io::{BufRead as _, BufReader, Read as _},
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    sync::{Arc, Mutex, mpsc},
    time::Duration,
};

use tower_mlflow_secrets::source::aws::{aws_config, sdk};
use tower_mlflow_tests::{ChildGuard, free_port, venv_bin, wait_for_port};

/// The `mlflow-secrets` binary that `cargo test --workspace --all-features` (scripts/test)
/// builds next to the test executables; it needs the `cli` and `aws` features.
pub(crate) fn mlflow_secrets_bin() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .unwrap()
        .join("mlflow-secrets");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build -p tower-mlflow-secrets --features cli,aws` \
         (scripts/test builds it)",
        bin.display()
    );
    bin
}

/// A `moto_server` on a free loopback port, as AWS Secrets Manager; stopped on drop.
pub(crate) struct Moto {
    _child: ChildGuard,
    url: String,
    client: sdk::Client,
}

impl Moto {
    /// moto checks no signatures unless its auth mode is on: dummy keys do.
    const KEY_ID: &str = "AKIAMOTOTEST";
    const KEY: &str = "moto-secret-key";

    pub(crate) async fn start() -> Self {
        let port = free_port();
        let child = ChildGuard::spawn(
            Command::new(venv_bin("moto_server"))
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        );
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        wait_for_port(addr, Duration::from_secs(30));
        let url = format!("http://{addr}");
        let sdk_config = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .credentials_provider(sdk::config::Credentials::new(
                Self::KEY_ID,
                Self::KEY,
                None,
                None,
                "tests",
            ))
            .endpoint_url(&url)
            .load()
            .await;
        Self {
            _child: child,
            url,
            client: sdk::Client::new(&sdk_config),
        }
    }

    /// Stores a new secret.
    pub(crate) async fn create(&self, name: &str, value: &str) {
        let created = self
            .client
            .create_secret()
            .name(name)
            .secret_string(value)
            .send()
            .await;
        created.unwrap();
    }

    /// Stores a new version of a secret, as a rotation does.
    pub(crate) async fn put(&self, name: &str, value: &str) {
        let put = self
            .client
            .put_secret_value()
            .secret_id(name)
            .secret_string(value)
            .send()
            .await;
        put.unwrap();
    }

    /// The plugin's variables for the secret `id`, read in `mode` (`basic` or `bearer`).
    pub(crate) fn env(&self, id: &str, mode: &str) -> Vec<(&'static str, String)> {
        vec![
            (
                "MLFLOW_SECRETS_AUTH_ENABLE",
                "aws-secrets-manager".to_owned(),
            ),
            ("MLFLOW_AWS_SECRET_ID", id.to_owned()),
            ("MLFLOW_AWS_AUTH_MODE", mode.to_owned()),
            ("AWS_REGION", "us-east-1".to_owned()),
            ("AWS_ACCESS_KEY_ID", Self::KEY_ID.to_owned()),
            ("AWS_SECRET_ACCESS_KEY", Self::KEY.to_owned()),
            ("AWS_ENDPOINT_URL", self.url.clone()),
        ]
    }
}

/// The MLflow Python client logs a run in `$EXPERIMENT` with a param, a metric and an
/// artifact (plus `big.bin` of `$BIG_ARTIFACT_BYTES` when set), reads it back and prints
/// it as JSON on its last line.
pub(crate) const LOG_A_RUN: &str = r#"
import json, os, tempfile
import mlflow
from mlflow.tracking import MlflowClient

mlflow.set_experiment(os.environ.get("EXPERIMENT", "exec-peer"))
with mlflow.start_run() as run:
    mlflow.log_param("alpha", "0.5")
    mlflow.log_metric("loss", 0.25, step=1)
    folder = tempfile.mkdtemp()
    path = os.path.join(folder, "notes.txt")
    with open(path, "w") as f:
        f.write("logged through mlflow-secrets")
    mlflow.log_artifact(path)
    big = int(os.environ.get("BIG_ARTIFACT_BYTES", "0"))
    if big:
        path = os.path.join(folder, "big.bin")
        with open(path, "wb") as f:
            f.write(os.urandom(big))
        mlflow.log_artifact(path)
client = MlflowClient()
data = client.get_run(run.info.run_id).data
artifacts = sorted(a.path for a in client.list_artifacts(run.info.run_id))
sizes = {a.path: a.file_size for a in client.list_artifacts(run.info.run_id)}
print(json.dumps({"params": data.params, "metrics": data.metrics, "artifacts": artifacts, "sizes": sizes}))
"#;

/// `program` with a clean environment (no credential from anywhere), `HOME` set to `home`
/// and MLflow's client failing fast instead of retrying.
pub(crate) fn client_command(program: &Path, home: &Path, tracking_uri: &str) -> Command {
    let mut command = Command::new(program);
    command
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("PYTHONIOENCODING", "utf-8")
        .env("MLFLOW_TRACKING_URI", tracking_uri)
        .env("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
        .env("MLFLOW_HTTP_REQUEST_TIMEOUT", "20");
    command
}

/// The venv's Python as a [`client_command`].
pub(crate) fn python(home: &Path, tracking_uri: &str) -> Command {
    client_command(&venv_bin("python"), home, tracking_uri)
}

/// The JSON that [`LOG_A_RUN`] printed last.
pub(crate) fn logged_run(stdout: &[u8]) -> serde_json::Value {
    let stdout = String::from_utf8_lossy(stdout);
    let last = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("no JSON line in {stdout}"));
    serde_json::from_str(last).unwrap()
}

/// A running `mlflow-secrets proxy --listen 127.0.0.1:0`; killed on drop unless stopped.
pub(crate) struct Proxy {
    child: Option<Child>,
    url: String,
    stderr: Arc<Mutex<String>>,
}

impl Proxy {
    /// Starts the proxy with a clean environment plus `env`, and waits for its first line.
    pub(crate) fn start(
        home: &Path,
        tracking_uri: &str,
        env: &[(&str, String)],
        args: &[&str],
    ) -> Self {
        let mut command = client_command(&mlflow_secrets_bin(), home, tracking_uri);
        command
            .args(["proxy", "--listen", "127.0.0.1:0"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (name, value) in env {
            command.env(name, value);
        }
        let mut child = command.spawn().unwrap();
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut err_pipe = child.stderr.take().unwrap();
        std::thread::spawn({
            let stderr = Arc::clone(&stderr);
            move || {
                let mut buf = [0u8; 4096];
                while let Ok(n @ 1..) = err_pipe.read(&mut buf) {
                    stderr
                        .lock()
                        .unwrap()
                        .push_str(&String::from_utf8_lossy(&buf[..n]));
                }
            }
        });
        let (first_line, line) = mpsc::channel();
        let out_pipe = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(out_pipe).lines();
            let _ = first_line.send(lines.next().and_then(Result::ok));
            // Anything more on stdout would be a bug; keep the pipe drained.
            for _ in lines {}
        });
        let mut proxy = Self {
            child: Some(child),
            url: String::new(),
            stderr,
        };
        let line = line.recv_timeout(Duration::from_secs(60)).ok().flatten();
        let url = line
            .as_deref()
            .and_then(|l| l.strip_prefix("listening on "))
            .unwrap_or_else(|| {
                panic!(
                    "proxy did not say where it listens ({line:?}): {}",
                    proxy.stderr()
                )
            });
        proxy.url = url.to_owned();
        proxy
    }

    /// `http://127.0.0.1:PORT`.
    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    /// What the proxy printed on stderr so far.
    pub(crate) fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Sends SIGTERM and waits for the exit (at most 60 s, then kills).
    pub(crate) fn stop(mut self) -> ExitStatus {
        let mut child = self.child.take().unwrap();
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        for _ in 0..600 {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = child.kill();
        panic!("proxy still running 60 s after SIGTERM: {}", self.stderr());
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
