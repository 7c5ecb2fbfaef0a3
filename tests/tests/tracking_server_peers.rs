//! The real MLflow Python client against `examples/tracking-server`, served in process on
//! 127.0.0.1: a run logged with `MLFLOW_TRACKING_USERNAME` / `MLFLOW_TRACKING_PASSWORD`
//! comes back with what was logged and with the authenticated user as its `user_id`;
//! without credentials (or with a wrong password) the client fails with a 401.

use std::{path::PathBuf, process::Output, time::Duration};

use secrecy::SecretString;
use serde_json::Value;
use tokio::{net::TcpListener, process::Command, task::JoinHandle};
use tower_mlflow_tests::venv_bin;
use tracking_server::{Store, app, users::StaticUsers};

const USER: &str = "alice";
const PASSWORD: &str = "alice-Pa55:word";

/// Logs one ordinary run, and one whose client-side `mlflow.user` tag (and therefore the
/// client's `user_id` field) claims to be someone else, then reads both back.
const LOG_RUN_SCRIPT: &str = r#"
import json
import mlflow
from mlflow import MlflowClient

mlflow.set_experiment("exp")
with mlflow.start_run() as run:
    mlflow.log_param("lr", "0.1")
    mlflow.log_metric("loss", 0.5)
    mlflow.set_tag("team", "vision")
with mlflow.start_run(tags={"mlflow.user": "mallory"}) as spoofed:
    pass

def describe(run_id):
    r = MlflowClient().get_run(run_id)
    return {
        "run_id": r.info.run_id,
        "params": r.data.params,
        "metrics": r.data.metrics,
        "tags": r.data.tags,
        "user_id": r.info.user_id,
        "status": r.info.status,
        "experiment_id": r.info.experiment_id,
    }

print("RESULT " + json.dumps({"run": describe(run.info.run_id), "spoofed": describe(spoofed.info.run_id)}))
"#;

const SET_EXPERIMENT_SCRIPT: &str = r#"
import mlflow
mlflow.set_experiment("exp")
"#;

struct Server {
    uri: String,
    store: Store,
    task: JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn start_server() -> Server {
    let users = StaticUsers::new().with_user(USER, &SecretString::from(PASSWORD));
    let store = Store::new();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = app(users, store.clone());
    let task = tokio::spawn(async move {
        axum::serve(listener, router).await.unwrap();
    });
    Server {
        uri: format!("http://{addr}"),
        store,
        task,
    }
}

/// A fresh, empty `HOME`, so that no `~/.mlflow/credentials` can supply a password.
fn empty_home(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "tracking-server-peers-{}-{name}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs `script` with the venv's Python, a clean environment and, if given, credentials.
async fn run_python(
    server: &Server,
    script: &str,
    credentials: Option<(&str, &str)>,
    home: &str,
) -> Output {
    let mut command = Command::new(venv_bin("python"));
    command
        .arg("-c")
        .arg(script)
        .env_clear()
        .env("HOME", empty_home(home))
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("PYTHONIOENCODING", "utf-8")
        .env("MLFLOW_TRACKING_URI", &server.uri)
        // Fail fast instead of retrying a 401 with backoff.
        .env("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
        .env("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")
        .kill_on_drop(true);
    if let Some((user, password)) = credentials {
        command
            .env("MLFLOW_TRACKING_USERNAME", user)
            .env("MLFLOW_TRACKING_PASSWORD", password);
    }
    // A guard against a hung client, not a performance assertion.
    tokio::time::timeout(Duration::from_secs(180), command.output())
        .await
        .expect("the MLflow client did not finish within 180 s")
        .expect("cannot run the venv's python")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs mlflow; run scripts/test"]
async fn mlflow_client_logs_a_run_as_the_authenticated_user() {
    let server = start_server().await;
    let output = run_python(&server, LOG_RUN_SCRIPT, Some((USER, PASSWORD)), "log").await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "client failed: {}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        output.status
    );
    let result: Value = stdout
        .lines()
        .find_map(|line| line.strip_prefix("RESULT "))
        .map(|json| serde_json::from_str(json).unwrap())
        .unwrap_or_else(|| panic!("no RESULT line in:\n{stdout}\nstderr:\n{stderr}"));

    let run = &result["run"];
    assert_eq!(run["params"], serde_json::json!({"lr": "0.1"}));
    assert_eq!(run["metrics"], serde_json::json!({"loss": 0.5}));
    assert_eq!(run["tags"]["team"], "vision");
    assert_eq!(run["tags"]["mlflow.user"], USER);
    assert_eq!(run["user_id"], USER);
    assert_eq!(run["status"], "FINISHED");

    // The experiment was created by `set_experiment`, and the run is in it.
    let experiment = server.store.experiment_by_name("exp").unwrap();
    assert_eq!(run["experiment_id"], experiment.experiment_id.as_str());

    // The server's own record, not just what the client read back.
    let stored = server.store.run(run["run_id"].as_str().unwrap()).unwrap();
    assert_eq!(stored.info.user_id, USER);
    assert!(stored.info.end_time.is_some());

    // The client claimed `mallory` (tag and `user_id` field); the server recorded `alice`.
    let spoofed = &result["spoofed"];
    assert_eq!(spoofed["user_id"], USER);
    assert_eq!(spoofed["tags"]["mlflow.user"], USER);
    let stored = server
        .store
        .run(spoofed["run_id"].as_str().unwrap())
        .unwrap();
    assert_eq!(stored.info.user_id, USER);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs mlflow; run scripts/test"]
async fn mlflow_client_without_credentials_fails_with_401() {
    let server = start_server().await;
    let output = run_python(&server, SET_EXPERIMENT_SCRIPT, None, "anonymous").await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "anonymous client succeeded");
    assert!(stderr.contains("401"), "no 401 in stderr:\n{stderr}");
    assert!(server.store.experiment_by_name("exp").is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs mlflow; run scripts/test"]
async fn mlflow_client_with_wrong_password_fails_with_401() {
    let server = start_server().await;
    let output = run_python(
        &server,
        SET_EXPERIMENT_SCRIPT,
        Some((USER, "not-the-password")),
        "wrong",
    )
    .await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success(),
        "client with a wrong password succeeded"
    );
    assert!(stderr.contains("401"), "no 401 in stderr:\n{stderr}");
    assert!(server.store.experiment_by_name("exp").is_err());
}
