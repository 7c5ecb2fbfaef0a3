//! `MlflowUsers` against the `basic_auth.db` of a real `mlflow server --app-name basic-auth`
//! (MLflow 3.17.2 from the venv made by `scripts/provision`): users and passwords are made and
//! changed through MLflow's own REST API, then checked by `MlflowUsers` on that file.

use std::{
    path::Path,
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
use tower_mlflow_tests::{MLFLOW_ADMIN, MLFLOW_ADMIN_PASSWORD, MlflowServer};

const ADMIN: &str = MLFLOW_ADMIN;
const ADMIN_PASSWORD: &str = MLFLOW_ADMIN_PASSWORD;
const ALICE: &str = "alice";

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
    let mut server = MlflowServer::start(true);
    server.wait_healthy();
    wait_for_file(&server.auth_db());
    let base = server.base_url();

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
        .sqlite(server.auth_db())
        .build()
        .unwrap();
    // One that only reloads when told to.
    let manual = MlflowUsers::builder()
        .refresh_interval(Duration::from_secs(3600))
        .sqlite(server.auth_db())
        .build()
        .unwrap();
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
