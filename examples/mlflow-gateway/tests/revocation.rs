//! Revocation that follows the store (issue 13, item 5), against the real binary with a
//! 60 s cache: a user removed from the htpasswd file, a file deleted or unreadable, a file
//! with a syntax error, and users changed through a real MLflow server's REST API. The
//! library-level version is tests/tests/revocation.rs; here the flags, the refresh intervals
//! the binary sets and its log are what is tested.

mod support;

use std::{fs, path::Path, time::Duration};

use support::binary::{Binary, basic, holds_within, request, status};
use tower_mlflow_tests::{MLFLOW_ADMIN, MLFLOW_ADMIN_PASSWORD, MlflowServer, TempDir};

/// `alice`, `carol` and `dave`, all with password `mlflow-pass` (APR1 and `{SHA}` reference
/// vectors; the APR1 hash does not depend on the user name).
const ALICE: &str = "alice:$apr1$abcdefgh$aDPo2xmbXHAQSzMtOEWhn/\n";
const CAROL: &str = "carol:{SHA}Vm5wFmcHTQtCu7kCWsKiMBNgg94=\n";
const DAVE: &str = "dave:$apr1$abcdefgh$aDPo2xmbXHAQSzMtOEWhn/\n";
const PASSWORD: &str = "mlflow-pass";
/// The bound of issue 13 for an htpasswd change.
const HTPASSWD_BOUND: Duration = Duration::from_secs(5);
/// `--users-refresh` in the MLflow test, and the grace on top of it for a loaded machine.
const USERS_REFRESH: &str = "1";
const USERS_BOUND: Duration = Duration::from_secs(1 + 4);
const PATH: &str = "/api/2.0/mlflow/experiments/search";

/// Replaces `path` atomically (what editors and config management do).
fn replace(path: &Path, text: &str) {
    let temp = path.with_extension("tmp");
    fs::write(&temp, text).unwrap();
    fs::rename(&temp, path).unwrap();
}

/// The binary with a 60 s cache in front of an echo upstream, with `htpasswd`'s users.
async fn gateway(dir: &TempDir, htpasswd: &str) -> (Binary, std::path::PathBuf) {
    let binary = support::gateway::gateway(dir, htpasswd, &["--cache-ttl", "60"]).await;
    (binary, support::gateway::htpasswd_file(dir))
}

async fn status_of(gateway: &Binary, user: &str) -> u16 {
    status(gateway.addr(), PATH, &basic(user, PASSWORD)).await
}

/// Asserts that `user` is answered `expected` within the htpasswd bound; `after` says what
/// happened, for the failure message.
async fn answered_within_bound(gateway: &Binary, user: &str, expected: u16, after: &str) {
    let held = holds_within(HTPASSWD_BOUND, || async {
        status_of(gateway, user).await == expected
    })
    .await;
    assert!(
        held,
        "{user} not answered {expected} within {HTPASSWD_BOUND:?} after {after}:\n{}",
        gateway.log()
    );
}

#[tokio::test]
async fn a_user_removed_from_the_htpasswd_file_is_refused_within_5_s() {
    let dir = TempDir::new("revocation-removed");
    let (gateway, file) = gateway(&dir, &format!("{ALICE}{CAROL}")).await;
    for _ in 0..2 {
        // The second answer comes from the cache.
        assert_eq!(status_of(&gateway, "alice").await, 201);
        assert_eq!(status_of(&gateway, "carol").await, 201);
    }

    replace(&file, CAROL);
    answered_within_bound(&gateway, "alice", 401, "her removal").await;
    assert_eq!(status_of(&gateway, "carol").await, 201);
}

#[tokio::test]
async fn a_deleted_or_unreadable_htpasswd_file_fails_closed_until_it_is_back() {
    let dir = TempDir::new("revocation-gone");
    let (gateway, file) = gateway(&dir, ALICE).await;
    assert_eq!(status_of(&gateway, "alice").await, 201);
    assert_eq!(status_of(&gateway, "alice").await, 201);

    fs::remove_file(&file).unwrap();
    answered_within_bound(&gateway, "alice", 503, "the file was deleted").await;
    assert!(
        gateway.log().contains("htpasswd file cannot be read"),
        "{}",
        gateway.log()
    );
    replace(&file, ALICE);
    answered_within_bound(&gateway, "alice", 201, "the file came back").await;

    make_unreadable(&file);
    answered_within_bound(&gateway, "alice", 503, "the file became unreadable").await;
    make_readable(&file);
    replace(&file, ALICE);
    answered_within_bound(&gateway, "alice", 201, "the file became readable").await;
}

/// Takes away the read permission; as root, which reads anyway, puts a directory in its
/// place.
fn make_unreadable(file: &Path) {
    use std::os::unix::fs::PermissionsExt as _;
    fs::set_permissions(file, fs::Permissions::from_mode(0o000)).unwrap();
    if fs::read(file).is_ok() {
        fs::remove_file(file).unwrap();
        fs::create_dir(file).unwrap();
    }
}

fn make_readable(file: &Path) {
    use std::os::unix::fs::PermissionsExt as _;
    if file.is_dir() {
        fs::remove_dir(file).unwrap();
    } else {
        fs::set_permissions(file, fs::Permissions::from_mode(0o644)).unwrap();
    }
}

#[tokio::test]
async fn a_syntax_error_keeps_the_last_good_table_and_names_the_line() {
    let dir = TempDir::new("revocation-syntax");
    let (gateway, file) = gateway(&dir, &format!("{ALICE}{CAROL}{DAVE}")).await;
    assert_eq!(status_of(&gateway, "carol").await, 201);

    // Line 2 has no hash; if this table were taken, carol and dave would be gone.
    replace(&file, &format!("{ALICE}carol-without-a-hash\n"));
    let logged = holds_within(HTPASSWD_BOUND, || async {
        gateway.log().contains("keeping the previous users")
    })
    .await;
    let log = gateway.log();
    assert!(logged, "no reload error logged:\n{log}");
    let line = log
        .lines()
        .find(|line| line.contains("keeping the previous users"))
        .unwrap();
    assert!(line.contains("line 2"), "{line}");

    assert_eq!(status_of(&gateway, "carol").await, 201, "cached, kept");
    assert_eq!(status_of(&gateway, "dave").await, 201, "never cached, kept");
    assert_eq!(status_of(&gateway, "alice").await, 201);
}

/// Sends `json` to MLflow's user API as the admin; panics unless it answers 200.
async fn mlflow_users_api(mlflow: &MlflowServer, method: &str, action: &str, json: &str) {
    let addr = ([127, 0, 0, 1], mlflow.port()).into();
    let admin = basic(MLFLOW_ADMIN, MLFLOW_ADMIN_PASSWORD);
    let path = format!("/api/2.0/mlflow/users/{action}");
    let (code, body) = request(addr, method, &path, Some(&admin), Some(json)).await;
    assert_eq!(code, 200, "{method} {path}: {body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs mlflow; run scripts/test"]
async fn users_changed_through_mlflow_are_refused_within_the_users_refresh() {
    let mlflow = tokio::task::spawn_blocking(|| {
        let mut mlflow = MlflowServer::start(true);
        mlflow.wait_healthy();
        mlflow
    })
    .await
    .unwrap();
    for user in ["carol", "dave"] {
        let json = format!(r#"{{"username": "{user}", "password": "{user}-password-123"}}"#);
        mlflow_users_api(&mlflow, "POST", "create", &json).await;
    }
    let upstream = format!("http://{}", support::echo_upstream(None).await);
    let db = mlflow.auth_db();
    let gateway = Binary::start(&[
        "--upstream",
        &upstream,
        "--mlflow-auth-db",
        db.to_str().unwrap(),
        "--users-refresh",
        USERS_REFRESH,
        "--cache-ttl",
        "60",
    ]);
    let addr = gateway.addr();
    let carol_old = basic("carol", "carol-password-123");
    let carol_new = basic("carol", "carol-password-456");
    let dave = basic("dave", "dave-password-123");
    for _ in 0..2 {
        assert_eq!(status(addr, PATH, &carol_old).await, 201);
        assert_eq!(status(addr, PATH, &dave).await, 201);
    }

    mlflow_users_api(
        &mlflow,
        "PATCH",
        "update-password",
        r#"{"username": "carol", "password": "carol-password-456"}"#,
    )
    .await;
    mlflow_users_api(&mlflow, "DELETE", "delete", r#"{"username": "dave"}"#).await;
    let refused = holds_within(USERS_BOUND, || async {
        status(addr, PATH, &carol_old).await == 401 && status(addr, PATH, &dave).await == 401
    })
    .await;
    assert!(
        refused,
        "carol's old password: {}, deleted dave: {} after the bound:\n{}",
        status(addr, PATH, &carol_old).await,
        status(addr, PATH, &dave).await,
        gateway.log()
    );
    assert_eq!(status(addr, PATH, &carol_new).await, 201);
    // Stopped on a blocking thread: MLflow takes a while to shut down.
    tokio::task::spawn_blocking(move || drop(mlflow))
        .await
        .unwrap();
}
