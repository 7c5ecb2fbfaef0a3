//! `MlflowUsers` against the `basic_auth.db` of a real `mlflow server --app-name basic-auth`
//! (MLflow 3.17.2 from the venv made by `scripts/provision`): users and passwords are made and
//! changed through MLflow's own REST API, then checked by `MlflowUsers` on that file.

use std::{
    os::unix::process::CommandExt as _,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use base64::Engine as _;
use bytes::Bytes;
use http::{Method, Request, StatusCode, header};
use http_body_util::{BodyExt as _, Full};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};
use secrecy::SecretString;
use tower_mlflow_auth::{
    Authenticator as _, Authorization, Credentials, authenticators::MlflowUsers,
};
use tower_mlflow_tests::{free_port, venv_bin};

const ADMIN: &str = "admin";
const ADMIN_PASSWORD: &str = "admin-password-for-tests-1";
const ALICE: &str = "alice";

/// `mlflow server` in its own process group: it starts uvicorn as a child, so killing only
/// the `mlflow` process would leave the server running. Dropping stops the whole group.
struct MlflowServer {
    child: Child,
    dir: PathBuf,
    base: String,
}

impl MlflowServer {
    fn start() -> Self {
        let dir =
            std::env::temp_dir().join(format!("tower-mlflow-users-peer-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let port = free_port();
        let log = std::fs::File::create(dir.join("mlflow.log")).unwrap();
        let child = Command::new(venv_bin("mlflow"))
            .args([
                "server",
                "--app-name",
                "basic-auth",
                "--host",
                "127.0.0.1",
                "--workers",
                "1",
            ])
            .args(["--port", &port.to_string()])
            .arg("--backend-store-uri")
            .arg(format!("sqlite:///{}", dir.join("mlflow.db").display()))
            // The default `database_uri` is `sqlite:///basic_auth.db`, relative to the CWD.
            .current_dir(&dir)
            .env_remove("MLFLOW_AUTH_CONFIG_PATH")
            .env_remove("MLFLOW_TRACKING_URI")
            .env("MLFLOW_AUTH_ADMIN_USERNAME", ADMIN)
            .env("MLFLOW_AUTH_ADMIN_PASSWORD", ADMIN_PASSWORD)
            .env(
                "MLFLOW_FLASK_SERVER_SECRET_KEY",
                "tower-mlflow-test-secret-key",
            )
            // No background job runner: fewer processes on a small machine.
            .env("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start mlflow: {e}"));
        Self {
            child,
            dir,
            base: format!("http://127.0.0.1:{port}"),
        }
    }

    fn db(&self) -> PathBuf {
        self.dir.join("basic_auth.db")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("mlflow.log")).unwrap_or_default()
    }

    /// Waits for `GET /health` to answer 200 (MLflow takes 15-60 s to start).
    async fn wait_healthy(&mut self, client: &HttpClient) {
        let deadline = Instant::now() + Duration::from_secs(180);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!(
                    "mlflow exited with {status} before it was ready:\n{}",
                    self.log()
                );
            }
            if let Ok((StatusCode::OK, _)) = send(
                client,
                Method::GET,
                &format!("{}/health", self.base),
                None,
                None,
            )
            .await
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
        // SIGTERM lets mlflow forward the signal to uvicorn; then SIGKILL whatever is left.
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

type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// One request with optional Basic credentials and JSON body; returns status and body text.
async fn send(
    client: &HttpClient,
    method: Method,
    url: &str,
    credentials: Option<(&str, &str)>,
    json: Option<String>,
) -> Result<(StatusCode, String), hyper_util::client::legacy::Error> {
    let mut request = Request::builder().method(method).uri(url);
    if let Some((user, password)) = credentials {
        let encoded =
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        request = request.header(header::AUTHORIZATION, format!("Basic {encoded}"));
    }
    if json.is_some() {
        request = request.header(header::CONTENT_TYPE, "application/json");
    }
    let request = request
        .body(Full::new(Bytes::from(json.unwrap_or_default())))
        .unwrap();
    let response = client.request(request).await?;
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// A request that must succeed with 200.
async fn call_ok(
    client: &HttpClient,
    method: Method,
    url: String,
    credentials: (&str, &str),
    json: serde_json::Value,
) -> String {
    let (status, body) = send(
        client,
        method,
        &url,
        Some(credentials),
        Some(json.to_string()),
    )
    .await
    .unwrap();
    assert_eq!(status, StatusCode::OK, "{url}: {body}");
    body
}

/// Whether MLflow itself accepts the credentials (`GET /api/2.0/mlflow/users/current`).
async fn mlflow_accepts(client: &HttpClient, base: &str, user: &str, password: &str) -> bool {
    let url = format!("{base}/api/2.0/mlflow/users/current");
    let (status, body) = send(client, Method::GET, &url, Some((user, password)), None)
        .await
        .unwrap();
    assert!(
        matches!(status, StatusCode::OK | StatusCode::UNAUTHORIZED),
        "{status}: {body}"
    );
    status == StatusCode::OK
}

async fn check(users: &MlflowUsers, user: &str, password: &str) -> Option<Authorization> {
    let credentials = Credentials::Basic {
        username: user.to_owned(),
        password: SecretString::from(password),
    };
    users.authenticate(credentials).await.unwrap()
}

async fn accepts(users: &MlflowUsers, user: &str, password: &str) -> bool {
    check(users, user, password).await.is_some()
}

fn wait_for_file(path: &Path) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !path.exists() {
        assert!(
            Instant::now() < deadline,
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs mlflow; run scripts/test"]
async fn mlflow_users_follow_a_real_mlflow_server() {
    let client: HttpClient = Client::builder(TokioExecutor::new()).build_http();
    let mut server = MlflowServer::start();
    server.wait_healthy(&client).await;
    wait_for_file(&server.db());
    let base = server.base.clone();

    // A user made through MLflow's REST API, as admin.
    let body = call_ok(
        &client,
        Method::POST,
        format!("{base}/api/2.0/mlflow/users/create"),
        (ADMIN, ADMIN_PASSWORD),
        serde_json::json!({"username": ALICE, "password": "alice-password-1"}),
    )
    .await;
    assert!(
        body.contains(r#""username":"alice""#) || body.contains(r#""username": "alice""#),
        "{body}"
    );

    let interval = Duration::from_secs(1);
    let users = MlflowUsers::builder()
        .refresh_interval(interval)
        .sqlite(server.db());
    // One that only reloads when told to.
    let manual = MlflowUsers::builder()
        .refresh_interval(Duration::from_secs(3600))
        .sqlite(server.db());
    manual.refresh().await.unwrap();

    let who = check(&users, ALICE, "alice-password-1")
        .await
        .expect("alice's password");
    assert_eq!(who.subject(), ALICE);
    assert!(!who.is_admin());
    assert!(!accepts(&users, ALICE, "alice-password-2").await);
    let admin = check(&users, ADMIN, ADMIN_PASSWORD)
        .await
        .expect("the admin's password");
    assert!(admin.is_admin());

    // Alice changes her own password (3.17.2 self-service needs `current_password`).
    call_ok(
        &client,
        Method::PATCH,
        format!("{base}/api/2.0/mlflow/users/update-password"),
        (ALICE, "alice-password-1"),
        serde_json::json!({
            "username": ALICE,
            "password": "alice-password-2",
            "current_password": "alice-password-1",
        }),
    )
    .await;
    assert!(mlflow_accepts(&client, &base, ALICE, "alice-password-2").await);
    assert!(!mlflow_accepts(&client, &base, ALICE, "alice-password-1").await);

    // Once the refresh interval has passed, the change is in force.
    tokio::time::sleep(interval + Duration::from_millis(200)).await;
    assert!(accepts(&users, ALICE, "alice-password-2").await);
    assert!(!accepts(&users, ALICE, "alice-password-1").await);

    // The manual instance still has its table from before the change...
    assert!(accepts(&manual, ALICE, "alice-password-1").await);
    // ...until it is invalidated; then the change is in force at once.
    manual.invalidate();
    assert!(accepts(&manual, ALICE, "alice-password-2").await);
    assert!(!accepts(&manual, ALICE, "alice-password-1").await);

    // An admin resets the password (no `current_password` needed); `refresh` applies it now.
    call_ok(
        &client,
        Method::PATCH,
        format!("{base}/api/2.0/mlflow/users/update-password"),
        (ADMIN, ADMIN_PASSWORD),
        serde_json::json!({"username": ALICE, "password": "alice-password-3"}),
    )
    .await;
    manual.refresh().await.unwrap();
    assert!(accepts(&manual, ALICE, "alice-password-3").await);
    assert!(!accepts(&manual, ALICE, "alice-password-2").await);

    // Promotion through MLflow's API shows up as the admin flag.
    call_ok(
        &client,
        Method::PATCH,
        format!("{base}/api/2.0/mlflow/users/update-admin"),
        (ADMIN, ADMIN_PASSWORD),
        serde_json::json!({"username": ALICE, "is_admin": true}),
    )
    .await;
    manual.invalidate();
    assert!(
        check(&manual, ALICE, "alice-password-3")
            .await
            .unwrap()
            .is_admin()
    );

    // The file was only read: MLflow still works with it.
    assert!(mlflow_accepts(&client, &base, ALICE, "alice-password-3").await);
    drop(server);
}
