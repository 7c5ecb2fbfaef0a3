//! `mlflow-secrets proxy` with the real MLflow Python client, which has no credential of
//! its own:
//!
//! - against `mlflow server --app-name basic-auth` with the admin password in AWS Secrets
//!   Manager (`moto_server`): a run with a param, a metric and two artifacts (one small
//!   enough to be replayed, one streamed past `--max-replay-body`); then the password is
//!   changed in MLflow and, a few seconds later (rotations are not atomic), in moto, while
//!   one long-running client keeps logging a metric every 200 ms: it is refused in between
//!   and succeeds again within 2 s of moto holding the new password, without a restart;
//!   SIGTERM stops the proxy with status 0;
//! - against the same MLflow server with the password in the in-process Vault fake of the
//!   secrets crate (`tower-mlflow-secrets/tests/support/vault.rs`, included by path): a run,
//!   then a rotation in MLflow and Vault, after which the next client succeeds at once
//!   through the 401 → fetch → replay path;
//! - against a bearer-protected tracking server (the `tracking-server` example with
//!   `StaticTokens`), the token in moto.

mod mlflow_secrets_cli;
#[path = "../../tower-mlflow-secrets/tests/support/vault.rs"]
mod vault_fake;

use std::{
    io::{BufRead as _, BufReader},
    path::Path,
    process::{Child, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use base64::Engine as _;
use bytes::Bytes;
use http::{Request, StatusCode, header};
use http_body_util::{BodyExt as _, Full};
use hyper_util::{client::legacy::Client, rt::TokioExecutor};
use tower_mlflow_auth::{Authorization, Scheme, authenticators::StaticTokens};
use tower_mlflow_tests::{MLFLOW_ADMIN, MLFLOW_ADMIN_PASSWORD, MlflowServer, TempDir};

use crate::{
    mlflow_secrets_cli::{LOG_A_RUN, Moto, Proxy, logged_run, python},
    vault_fake::{FakeVault, ROOT},
};

const NEW_PASSWORD: &str = "rotated-password-for-tests-2";

fn admin_secret(password: &str) -> String {
    format!(r#"{{"username":"{MLFLOW_ADMIN}","password":"{password}"}}"#)
}

/// Logs a metric every 200 ms until `$STOP_FILE` exists, printing one JSON line per
/// attempt: when it started (Unix seconds) and whether it succeeded.
const KEEP_LOGGING: &str = r#"
import json, os, time
import mlflow
from mlflow.tracking import MlflowClient

client = MlflowClient()
experiment = mlflow.set_experiment("proxy-rotation")
run = client.create_run(experiment.experiment_id)
step = 0
while not os.path.exists(os.environ["STOP_FILE"]):
    started = time.time()
    try:
        client.log_metric(run.info.run_id, "tick", step, step=step)
        print(json.dumps({"t": started, "ok": True, "run": run.info.run_id}), flush=True)
    except Exception as e:
        print(json.dumps({"t": started, "ok": False, "error": str(e)[:300]}), flush=True)
    step += 1
    time.sleep(0.2)
"#;

/// One attempt of [`KEEP_LOGGING`].
#[derive(Debug)]
struct Attempt {
    started: f64,
    ok: bool,
    line: String,
}

/// The long-running client and the attempts it printed so far.
struct Logger {
    child: Child,
    attempts: Arc<Mutex<Vec<Attempt>>>,
}

impl Logger {
    fn start(home: &Path, proxy: &Proxy, stop_file: &Path) -> Self {
        let mut child = python(home, proxy.url())
            .args(["-c", KEEP_LOGGING])
            .env("STOP_FILE", stop_file)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let attempts = Arc::new(Mutex::new(Vec::new()));
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn({
            let attempts = Arc::clone(&attempts);
            move || {
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    let Ok(json) = serde_json::from_str::<serde_json::Value>(&line) else {
                        continue;
                    };
                    attempts.lock().unwrap().push(Attempt {
                        started: json["t"].as_f64().unwrap(),
                        ok: json["ok"] == true,
                        line,
                    });
                }
            }
        });
        Self { child, attempts }
    }

    /// Waits (at most 120 s, a guard against a hung client) until `done` holds.
    async fn wait_until(&self, what: &str, done: impl Fn(&[Attempt]) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(120);
        while !done(&self.attempts.lock().unwrap()) {
            assert!(
                Instant::now() < deadline,
                "{what}: {:#?}",
                self.attempts.lock().unwrap()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Logger {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// Changes the admin's password in MLflow (authenticated with the old one).
async fn change_mlflow_password(server: &MlflowServer, old: &str, new: &str) {
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{MLFLOW_ADMIN}:{old}"));
    let body = serde_json::json!({
        "username": MLFLOW_ADMIN,
        "password": new,
        "current_password": old,
    });
    let request = Request::patch(format!(
        "{}/api/2.0/mlflow/users/update-password",
        server.base_url()
    ))
    .header(header::AUTHORIZATION, format!("Basic {basic}"))
    .header(header::CONTENT_TYPE, "application/json")
    .body(Full::new(Bytes::from(body.to_string())))
    .unwrap();
    let client = Client::builder(TokioExecutor::new()).build_http();
    let (head, body) = client.request(request).await.unwrap().into_parts();
    let text = body.collect().await.unwrap().to_bytes();
    assert_eq!(
        head.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&text)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs mlflow and moto_server; run scripts/test"]
async fn proxy_logs_a_run_and_follows_a_password_rotation() {
    let moto = Moto::start().await;
    moto.create("mlflow/admin", &admin_secret(MLFLOW_ADMIN_PASSWORD))
        .await;
    let mut server = MlflowServer::start(true);
    server.wait_healthy();
    let home = server.dir().to_owned();
    // 4 KiB and less is replayable; the 64 KiB artifact streams through.
    let proxy = Proxy::start(
        &home,
        &server.base_url(),
        &moto.env("mlflow/admin", "basic"),
        &["--max-replay-body", "4096"],
    );

    let env = [
        ("EXPERIMENT", "proxy-peer"),
        ("BIG_ARTIFACT_BYTES", "65536"),
    ];
    let run = run_client(&home, &proxy, LOG_A_RUN, &env).await;
    assert_eq!(run["params"]["alpha"], "0.5", "{run}");
    assert_eq!(run["metrics"]["loss"], 0.25, "{run}");
    assert_eq!(
        run["artifacts"],
        serde_json::json!(["big.bin", "notes.txt"]),
        "{run}"
    );
    assert_eq!(run["sizes"]["big.bin"], 65536, "{run}");

    // One client process for the whole rotation.
    let stop_file = home.join("stop-logging");
    let logger = Logger::start(&home, &proxy, &stop_file);
    logger
        .wait_until("the client never logged", |a| {
            a.iter().filter(|a| a.ok).count() >= 3
        })
        .await;

    change_mlflow_password(&server, MLFLOW_ADMIN_PASSWORD, NEW_PASSWORD).await;
    let changed = now();
    logger
        .wait_until("not refused after the change in MLflow", |a| {
            a.iter().filter(|a| a.started > changed && !a.ok).count() >= 3
        })
        .await;
    // The store lags behind the server, as a rotation script that updates MLflow first.
    tokio::time::sleep(Duration::from_secs(3)).await;
    moto.put("mlflow/admin", &admin_secret(NEW_PASSWORD)).await;
    let stored = now();
    logger
        .wait_until("not 10 attempts after the store update", |a| {
            a.iter().filter(|a| a.started > stored + 2.0).count() >= 10
        })
        .await;
    std::fs::write(&stop_file, "").unwrap();
    let mut logger = logger;
    let status = logger.child.wait().unwrap();
    assert!(status.success(), "the long-running client failed");

    let attempts = logger.attempts.lock().unwrap();
    let runs: std::collections::BTreeSet<String> = attempts
        .iter()
        .filter(|a| a.ok)
        .filter_map(|a| serde_json::from_str::<serde_json::Value>(&a.line).ok())
        .map(|json| json["run"].to_string())
        .collect();
    assert_eq!(runs.len(), 1, "one run, one client: {attempts:#?}");
    // The contract: within 2 s of the store holding the new password, requests succeed.
    let late_failures: Vec<&Attempt> = attempts
        .iter()
        .filter(|a| a.started > stored + 2.0 && !a.ok)
        .collect();
    assert!(
        late_failures.is_empty(),
        "refused more than 2 s after the store update: {late_failures:#?}\n{}",
        proxy.stderr()
    );
    drop(attempts);

    let stderr = proxy.stderr();
    assert!(
        !stderr.contains(MLFLOW_ADMIN_PASSWORD) && !stderr.contains(NEW_PASSWORD),
        "the proxy printed a password"
    );
    let status = proxy.stop();
    assert!(status.success(), "proxy exit after SIGTERM: {status}");
}

/// Runs `script` with `env` through `proxy`, off the runtime (the Vault fake is served on
/// it), and returns the JSON it printed last.
async fn run_client(
    home: &Path,
    proxy: &Proxy,
    script: &str,
    env: &[(&str, &str)],
) -> serde_json::Value {
    let mut command = python(home, proxy.url());
    command.args(["-c", script]).envs(env.iter().copied());
    let output = tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&output.stderr),
        proxy.stderr()
    );
    logged_run(&output.stdout)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs mlflow; run scripts/test"]
async fn proxy_takes_the_password_from_the_vault_fake_and_follows_its_rotation() {
    let vault = FakeVault::start().await;
    vault.put(
        "",
        "secret",
        2,
        "mlflow",
        serde_json::from_str(&admin_secret(MLFLOW_ADMIN_PASSWORD)).unwrap(),
    );
    let mut server = MlflowServer::start(true);
    tokio::task::block_in_place(|| server.wait_healthy());
    let home = server.dir().to_owned();
    let env = [
        ("MLFLOW_SECRETS_AUTH_ENABLE", "vault".to_owned()),
        ("VAULT_ADDR", vault.url()),
        ("VAULT_TOKEN", ROOT.to_owned()),
        ("MLFLOW_VAULT_SECRET_PATH", "secret/mlflow".to_owned()),
        ("MLFLOW_VAULT_AUTH_MODE", "basic".to_owned()),
    ];
    // Blocking, while the runtime's other worker serves the fake.
    let proxy = tokio::task::block_in_place(|| Proxy::start(&home, &server.base_url(), &env, &[]));
    let run = run_client(&home, &proxy, LOG_A_RUN, &[("EXPERIMENT", "proxy-vault")]).await;
    assert_eq!(run["params"]["alpha"], "0.5", "{run}");
    assert_eq!(run["artifacts"], serde_json::json!(["notes.txt"]), "{run}");
    let reads = vault.with(|s| s.reads);
    assert!(reads >= 1, "the proxy never read the secret from Vault");

    // Rotated in both places; the proxy still holds the old password.
    change_mlflow_password(&server, MLFLOW_ADMIN_PASSWORD, NEW_PASSWORD).await;
    vault.put(
        "",
        "secret",
        2,
        "mlflow",
        serde_json::from_str(&admin_secret(NEW_PASSWORD)).unwrap(),
    );
    let env = [("EXPERIMENT", "proxy-vault-rotated")];
    let run = run_client(&home, &proxy, LOG_A_RUN, &env).await;
    assert_eq!(run["metrics"]["loss"], 0.25, "{run}");
    assert!(vault.with(|s| s.reads) > reads, "no fetch after the 401");
    let stderr = proxy.stderr();
    assert!(
        !stderr.contains(MLFLOW_ADMIN_PASSWORD)
            && !stderr.contains(NEW_PASSWORD)
            && !stderr.contains(ROOT),
        "the proxy printed a secret"
    );
    assert!(proxy.stop().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs mlflow (the Python client) and moto_server; run scripts/test"]
async fn proxy_sends_a_bearer_token_to_a_bearer_protected_server() {
    const TOKEN: &str = "ci-token-5d1f0c7e-for-proxy-tests";
    let moto = Moto::start().await;
    moto.create("mlflow/token", &format!(r#"{{"token":"{TOKEN}"}}"#))
        .await;
    let tokens = StaticTokens::bearer()
        .token(TOKEN, Authorization::new("ci-bot", Scheme::Bearer))
        .build()
        .unwrap();
    let store = tracking_server::Store::new();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = tracking_server::app(tokens, store.clone());
    let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let home = TempDir::new("proxy-bearer");
    let proxy = Proxy::start(
        home.path(),
        &format!("http://{addr}"),
        &moto.env("mlflow/token", "bearer"),
        &[],
    );
    let script = r#"
import json, mlflow
from mlflow.tracking import MlflowClient
with mlflow.start_run() as run:
    mlflow.log_param("alpha", "0.5")
    mlflow.log_metric("loss", 0.25)
info = MlflowClient().get_run(run.info.run_id)
print(json.dumps({"user": info.info.user_id, "params": info.data.params}))
"#;
    let run = run_client(home.path(), &proxy, script, &[]).await;
    // The tracking server names the run's user after the token's principal.
    assert_eq!(run["user"], "ci-bot", "{run}");
    assert_eq!(run["params"]["alpha"], "0.5", "{run}");
    assert!(
        !proxy.stderr().contains(TOKEN),
        "the proxy printed the token"
    );
    assert!(proxy.stop().success());
    server.abort();
}
