//! `SecretHeaderLayer` against a real `mlflow server --app-name basic-auth`: a hyper-util
//! client whose Basic credential comes from a `File` source creates an experiment; a wrong
//! credential gets 401, and after the file is rotated, 401 recovery makes the next call
//! succeed without rebuilding anything.

use std::{
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use bytes::Bytes;
use http::{Request, StatusCode, header::CONTENT_TYPE};
use http_body_util::{BodyExt, Full};
use hyper_util::{client::legacy::Client, rt::TokioExecutor};
use tower::{ServiceBuilder, ServiceExt};
use tower_mlflow_secrets::{
    CachedSecret, HostAllowlist, SecretHeaderLayer, format::HeaderTemplate, source::File,
};
use tower_mlflow_tests::{free_port, venv_bin};

const ADMIN: &str = "admin";
const ADMIN_PASSWORD: &str = "secrets-peer-Adm1n-pw";

/// `mlflow server` in its own process group (it starts uvicorn as a child); dropping stops
/// the whole group.
struct MlflowServer {
    child: Child,
    dir: PathBuf,
    port: u16,
}

impl MlflowServer {
    fn start() -> Self {
        let dir =
            std::env::temp_dir().join(format!("tower-mlflow-secrets-peer-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let port = free_port();
        let log = std::fs::File::create(dir.join("mlflow.log")).unwrap();
        let child = Command::new(venv_bin("mlflow"))
            .args(["server", "--app-name", "basic-auth", "--host", "127.0.0.1"])
            .args(["--port", &port.to_string(), "--workers", "1"])
            .arg("--backend-store-uri")
            .arg(format!("sqlite:///{}", dir.join("mlflow.db").display()))
            // basic_auth.db lands in the working directory.
            .current_dir(&dir)
            .env_remove("MLFLOW_AUTH_CONFIG_PATH")
            .env_remove("MLFLOW_TRACKING_URI")
            .env("MLFLOW_AUTH_ADMIN_USERNAME", ADMIN)
            .env("MLFLOW_AUTH_ADMIN_PASSWORD", ADMIN_PASSWORD)
            .env(
                "MLFLOW_FLASK_SERVER_SECRET_KEY",
                "tower-mlflow-secrets-test-key",
            )
            .env("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start mlflow: {e}"));
        Self { child, dir, port }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("mlflow.log")).unwrap_or_default()
    }

    /// Waits for `GET /health` to answer 200 (MLflow takes 20-60 s to start).
    async fn wait_healthy(&mut self) {
        let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
        let deadline = Instant::now() + Duration::from_secs(180);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!(
                    "mlflow exited with {status} before it was ready:\n{}",
                    self.log()
                );
            }
            let uri = format!("http://127.0.0.1:{}/health", self.port);
            if let Ok(response) = client.get(uri.parse().unwrap()).await
                && response.status() == StatusCode::OK
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "mlflow not healthy after 180 s:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    fn signal_group(&self, signal: &str) {
        let _ = Command::new("kill")
            .args([signal, "--", &format!("-{}", self.child.id())])
            .stderr(Stdio::null())
            .status();
    }
}

impl Drop for MlflowServer {
    fn drop(&mut self) {
        self.signal_group("-TERM");
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline && matches!(self.child.try_wait(), Ok(None)) {
            std::thread::sleep(Duration::from_millis(100));
        }
        self.signal_group("-KILL");
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Replaces the file in one step, as secret mounts and sidecars do.
fn write_secret(path: &Path, content: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, content).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

#[tokio::test]
#[ignore = "needs mlflow; run scripts/test"]
async fn file_secret_creates_an_experiment_and_recovers_after_rotation() {
    let mut server = MlflowServer::start();
    server.wait_healthy().await;

    let secret_file = server.dir.join("mlflow-credential");
    write_secret(&secret_file, "admin:wrong-password-123\n");

    // Forced refreshes at most once a second (the replay after the first 401 uses one).
    let throttle = Duration::from_secs(1);
    let layer = SecretHeaderLayer::builder(CachedSecret::new(File::new(&secret_file)))
        .template(HeaderTemplate::basic())
        .allowlist(
            HostAllowlist::builder()
                .host(format!("127.0.0.1:{}", server.port))
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
            server.port
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
