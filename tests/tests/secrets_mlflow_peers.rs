//! `SecretHeaderLayer` against a real `mlflow server --app-name basic-auth`: a hyper-util
//! client whose Basic credential comes from a `File` source creates an experiment; a wrong
//! credential gets 401, and after the file is rotated, 401 recovery makes the next call
//! succeed without rebuilding anything.
//!
//! `mlflow-secrets exec` with the real MLflow Python client: the admin password is stored in
//! AWS Secrets Manager (`moto_server`), the client logs a run with a param, a metric and an
//! artifact, and the same client without `exec` is refused.

mod mlflow_secrets_cli;

use std::{path::Path, time::Duration};

use bytes::Bytes;
use http::{Request, StatusCode, header::CONTENT_TYPE};
use http_body_util::{BodyExt, Full};
use hyper_util::{client::legacy::Client, rt::TokioExecutor};
use tower::{ServiceBuilder, ServiceExt};
use tower_mlflow_secrets::{
    CachedSecret, HostAllowlist, SecretHeaderLayer, format::HeaderTemplate, source::File,
};
use tower_mlflow_tests::{MLFLOW_ADMIN, MLFLOW_ADMIN_PASSWORD, MlflowServer, venv_bin};

use crate::mlflow_secrets_cli::{
    LOG_A_RUN, Moto, client_command, logged_run, mlflow_secrets_bin, python,
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

    // Wrong credential: 401 (the refresh read the same file back, so nothing was replayed).
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs mlflow and moto_server; run scripts/test"]
async fn exec_gives_the_mlflow_client_a_password_from_secrets_manager() {
    let bin = mlflow_secrets_bin();
    let moto = Moto::start().await;
    moto.create(
        "mlflow/admin",
        &format!(r#"{{"username":"{ADMIN}","password":"{ADMIN_PASSWORD}"}}"#),
    )
    .await;

    let mut server = MlflowServer::start(true);
    server.wait_healthy();
    let run_python = |through_exec: bool| {
        let mut command = if through_exec {
            let mut command = client_command(&bin, server.dir(), &server.base_url());
            command
                .args(["exec", "--"])
                .arg(venv_bin("python"))
                .envs(moto.env("mlflow/admin", "basic"));
            command
        } else {
            python(server.dir(), &server.base_url())
        };
        command
            .args(["-c", LOG_A_RUN])
            // As the plugin: a host without a port allows the server's random port.
            .env("MLFLOW_SECRETS_ALLOWED_HOSTS", "127.0.0.1")
            .output()
            .unwrap()
    };

    let output = run_python(true);
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
    let run = logged_run(&output.stdout);
    assert_eq!(run["params"]["alpha"], "0.5", "{run}");
    assert_eq!(run["metrics"]["loss"], 0.25, "{run}");
    assert_eq!(run["artifacts"], serde_json::json!(["notes.txt"]), "{run}");

    // The same client without `exec` has no credential and is refused.
    let output = run_python(false);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("401") || stderr.contains("not authenticated"),
        "{stderr}"
    );
}
