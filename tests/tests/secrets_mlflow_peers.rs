//! `SecretHeaderLayer` against a real `mlflow server --app-name basic-auth`: a hyper-util
//! client whose Basic credential comes from a `File` source creates an experiment; a wrong
//! credential gets 401, and after the file is rotated, 401 recovery makes the next call
//! succeed without rebuilding anything.
//!
//! `mlflow-secrets exec` with the real MLflow Python client: the admin password is stored in
//! AWS Secrets Manager (`moto_server`), the client logs a run with a param, a metric and an
//! artifact, and the same client without `exec` is refused.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Duration,
};

use bytes::Bytes;
use http::{Request, StatusCode, header::CONTENT_TYPE};
use http_body_util::{BodyExt, Full};
use hyper_util::{client::legacy::Client, rt::TokioExecutor};
use tower::{ServiceBuilder, ServiceExt};
use tower_mlflow_secrets::{
    CachedSecret, HostAllowlist, SecretHeaderLayer,
    format::HeaderTemplate,
    source::{
        File,
        aws::{aws_config, sdk},
    },
};
use tower_mlflow_tests::{
    ChildGuard, MLFLOW_ADMIN, MLFLOW_ADMIN_PASSWORD, MlflowServer, free_port, venv_bin,
    wait_for_port,
};

const ADMIN: &str = MLFLOW_ADMIN;
const ADMIN_PASSWORD: &str = MLFLOW_ADMIN_PASSWORD;

/// Replaces the file in one step, as secret mounts and sidecars do.
fn write_secret(path: &Path, content: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, content).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

#[tokio::test]
#[ignore = "needs mlflow; run scripts/test"]
async fn file_secret_creates_an_experiment_and_recovers_after_rotation() {
    let mut server = MlflowServer::start(true);
    server.wait_healthy();

    let secret_file = server.dir().join("mlflow-credential");
    write_secret(&secret_file, "admin:wrong-password-123\n");

    // Forced refreshes at most once a second (the replay after the first 401 uses one).
    let throttle = Duration::from_secs(1);
    let layer = SecretHeaderLayer::builder(CachedSecret::new(File::new(&secret_file)))
        .template(HeaderTemplate::basic())
        .allowlist(
            HostAllowlist::builder()
                .host(format!("127.0.0.1:{}", server.port()))
                .build()
                .unwrap(),
        )
        .recover_unauthorized(throttle)
        .build()
        .unwrap();
    let client = ServiceBuilder::new()
        .layer(layer)
        .service(Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>());
    let create = |name: &str| {
        Request::post(format!(
            "http://127.0.0.1:{}/api/2.0/mlflow/experiments/create",
            server.port()
        ))
        .header(CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(format!(r#"{{"name":"{name}"}}"#))))
        .unwrap()
    };

    // Wrong credential: 401 (after one refresh-and-replay that read the same file).
    let response = client
        .clone()
        .oneshot(create("secrets-peer-denied"))
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        StatusCode::UNAUTHORIZED,
        "{}",
        server.log()
    );

    // Rotate the file; the cache still holds the wrong value, so the next call gets a 401,
    // refreshes once, and the replay succeeds.
    write_secret(&secret_file, &format!("{ADMIN}:{ADMIN_PASSWORD}\n"));
    tokio::time::sleep(throttle + Duration::from_millis(100)).await;
    let response = client
        .clone()
        .oneshot(create("secrets-peer-ok"))
        .await
        .unwrap();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    assert!(
        String::from_utf8_lossy(&body).contains("experiment_id"),
        "{}",
        String::from_utf8_lossy(&body)
    );

    // From now on the cached (right) credential is used directly.
    let response = client.oneshot(create("secrets-peer-ok-2")).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

/// The `mlflow-secrets` binary that `cargo test --workspace --all-features` (scripts/test)
/// builds next to the test executables; it needs the `cli` and `aws` features.
fn mlflow_secrets_bin() -> PathBuf {
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

/// The MLflow Python client logs a run with a param, a metric and an artifact, reads it
/// back and prints it as JSON on its last line.
const LOG_A_RUN: &str = r#"
import json, os, tempfile
import mlflow
from mlflow.tracking import MlflowClient

mlflow.set_experiment("exec-peer")
with mlflow.start_run() as run:
    mlflow.log_param("alpha", "0.5")
    mlflow.log_metric("loss", 0.25, step=1)
    path = os.path.join(tempfile.mkdtemp(), "notes.txt")
    with open(path, "w") as f:
        f.write("logged through mlflow-secrets exec")
    mlflow.log_artifact(path)
client = MlflowClient()
data = client.get_run(run.info.run_id).data
artifacts = [a.path for a in client.list_artifacts(run.info.run_id)]
print(json.dumps({"params": data.params, "metrics": data.metrics, "artifacts": artifacts}))
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs mlflow and moto_server; run scripts/test"]
async fn exec_gives_the_mlflow_client_a_password_from_secrets_manager() {
    let bin = mlflow_secrets_bin();
    let moto_port = free_port();
    let _moto = ChildGuard::spawn(
        Command::new(venv_bin("moto_server"))
            .args(["-H", "127.0.0.1", "-p", &moto_port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    let moto: SocketAddr = ([127, 0, 0, 1], moto_port).into();
    wait_for_port(moto, Duration::from_secs(30));
    let moto_url = format!("http://{moto}");
    // moto checks no signatures unless its auth mode is on: dummy keys do.
    let (key_id, key) = ("AKIAMOTOTEST", "moto-secret-key");
    let sdk_config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(sdk::config::Credentials::new(
            key_id, key, None, None, "tests",
        ))
        .endpoint_url(&moto_url)
        .load()
        .await;
    sdk::Client::new(&sdk_config)
        .create_secret()
        .name("mlflow/admin")
        .secret_string(format!(
            r#"{{"username":"{ADMIN}","password":"{ADMIN_PASSWORD}"}}"#
        ))
        .send()
        .await
        .unwrap();

    let mut server = MlflowServer::start(true);
    server.wait_healthy();
    let python = |through_exec: bool| {
        let mut command = if through_exec {
            let mut command = Command::new(&bin);
            command.args(["exec", "--"]).arg(venv_bin("python"));
            command
        } else {
            Command::new(venv_bin("python"))
        };
        command
            .args(["-c", LOG_A_RUN])
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", server.dir())
            .env("MLFLOW_TRACKING_URI", server.base_url())
            // As the plugin: a host without a port allows the server's random port.
            .env("MLFLOW_SECRETS_ALLOWED_HOSTS", "127.0.0.1")
            .env("MLFLOW_SECRETS_AUTH_ENABLE", "aws-secrets-manager")
            .env("MLFLOW_AWS_SECRET_ID", "mlflow/admin")
            .env("MLFLOW_AWS_AUTH_MODE", "basic")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ACCESS_KEY_ID", key_id)
            .env("AWS_SECRET_ACCESS_KEY", key)
            .env("AWS_ENDPOINT_URL", &moto_url)
            .output()
            .unwrap()
    };

    let output = python(true);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{stdout}{stderr}\n{}",
        server.log()
    );
    assert!(
        !stdout.contains(ADMIN_PASSWORD) && !stderr.contains(ADMIN_PASSWORD),
        "the password was printed"
    );
    let last = stdout.lines().rev().find(|l| l.starts_with('{')).unwrap();
    let run: serde_json::Value = serde_json::from_str(last).unwrap();
    assert_eq!(run["params"]["alpha"], "0.5", "{run}");
    assert_eq!(run["metrics"]["loss"], 0.25, "{run}");
    assert_eq!(run["artifacts"], serde_json::json!(["notes.txt"]), "{run}");

    // The same client without `exec` has no credential and is refused.
    let output = python(false);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("401") || stderr.contains("not authenticated"),
        "{stderr}"
    );
}
