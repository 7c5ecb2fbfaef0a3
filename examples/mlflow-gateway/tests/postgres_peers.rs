//! `--mlflow-auth-db postgresql://…`: MLflow's basic-auth users kept in a real PostgreSQL
//! server (Debian's `postgresql` package), checked by the real `mlflow-gateway` binary.
//!
//! The peer test starts a fresh PostgreSQL cluster under `target/peers/postgres/` (as the
//! `postgres` user when the tests run as root: PostgreSQL refuses to run as root), a
//! `mlflow server --app-name basic-auth` whose `basic_auth.ini` points `database_uri` at it,
//! and a plain `mlflow server` behind the gateway. Users are created and changed through
//! MLflow's REST API only.

mod support;

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

use support::binary::{Binary, basic, holds_within, request, status};
use tower_mlflow_tests::{
    MLFLOW_ADMIN, MLFLOW_ADMIN_PASSWORD, MlflowServer, TempDir, free_port, http_status, venv_bin,
    workspace_root,
};

/// A fresh PostgreSQL cluster on a free loopback port, TCP only, SCRAM passwords, TLS with a
/// certificate of the test CA; stopped and removed on drop.
struct Postgres {
    root: PathBuf,
    bin: PathBuf,
    port: u16,
}

impl Postgres {
    /// The cluster's superuser, who also owns the MLflow database.
    const USER: &str = "mlflow";
    const PASSWORD: &str = "pg-password-for-tests-1";
    const DATABASE: &str = "mlflow_auth";

    /// The read-only role the TLS gateway logs in as; `pg_hba.conf` lets it in over TLS only.
    const TLS_ROLE: &str = "gateway_tls";
    const TLS_ROLE_PASSWORD: &str = "tls-role-password-for-tests-1";

    fn start(tls: &support::pki::Leaf) -> Self {
        let port = free_port();
        let name = format!("{}-{port}", std::process::id());
        let mut root = workspace_root().join("target/peers/postgres").join(&name);
        if running_as_root() && !postgres_user_can_enter(&root) {
            // A checkout under a private home (/root/...) is closed to the postgres user.
            root = std::env::temp_dir().join(format!("tower-mlflow-postgres-{name}"));
        }
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        std::fs::write(root.join("pwfile"), Self::PASSWORD).unwrap();
        let postgres = Self {
            bin: postgres_bin(),
            root,
            port,
        };
        if running_as_root() {
            checked(
                Command::new("chown")
                    .args(["-R", "postgres:postgres"])
                    .arg(&postgres.root),
            );
        }
        let data = postgres.data();
        checked(postgres.server_command("initdb").args([
            "--auth=scram-sha-256",
            "--encoding=UTF8",
            "--no-sync",
            &format!("--username={}", Self::USER),
            &format!("--pwfile={}", postgres.root.join("pwfile").display()),
            &format!("--pgdata={}", data.display()),
        ]));
        // Loopback TCP only: no Unix socket, whose path could be too long under target/.
        let settings = format!(
            "listen_addresses = '127.0.0.1'\nport = {port}\nunix_socket_directories = ''\n\
             fsync = off\nssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n"
        );
        let conf = data.join("postgresql.conf");
        let mut text = std::fs::read_to_string(&conf).unwrap();
        text.push_str(&settings);
        std::fs::write(&conf, text).unwrap();
        let hba = format!(
            "hostssl all {role} 127.0.0.1/32 scram-sha-256\n\
             host all {role} 127.0.0.1/32 reject\n\
             host all all 127.0.0.1/32 scram-sha-256\n",
            role = Self::TLS_ROLE
        );
        std::fs::write(data.join("pg_hba.conf"), hba).unwrap();
        std::fs::write(data.join("server.crt"), &tls.cert_pem).unwrap();
        let key = data.join("server.key");
        std::fs::write(&key, &tls.key_pem).unwrap();
        // PostgreSQL refuses a key that others may read.
        std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .unwrap();
        if running_as_root() {
            checked(
                Command::new("chown")
                    .args(["-R", "postgres:postgres"])
                    .arg(&data),
            );
        }
        checked(postgres.server_command("pg_ctl").args([
            "start",
            "--wait",
            "--timeout=120",
            &format!("--pgdata={}", data.display()),
            &format!("--log={}", postgres.root.join("server.log").display()),
        ]));
        checked(
            Command::new(postgres.bin.join("createdb"))
                .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", Self::USER])
                .arg(Self::DATABASE)
                .env("PGPASSWORD", Self::PASSWORD),
        );
        postgres
    }

    /// Creates the TLS gateway's role, allowed to read MLflow's `users` table and nothing
    /// else (run once MLflow has created it).
    fn create_tls_role(&self) {
        let sql = format!(
            "CREATE ROLE {role} LOGIN PASSWORD '{password}'; GRANT SELECT ON users TO {role};",
            role = Self::TLS_ROLE,
            password = Self::TLS_ROLE_PASSWORD
        );
        checked(
            Command::new(self.bin.join("psql"))
                .args([
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &self.port.to_string(),
                    "-U",
                    Self::USER,
                ])
                .args(["-d", Self::DATABASE, "-v", "ON_ERROR_STOP=1", "-c", &sql])
                .env("PGPASSWORD", Self::PASSWORD),
        );
    }

    fn data(&self) -> PathBuf {
        self.root.join("data")
    }

    /// A server program, as the `postgres` user when we are root.
    fn server_command(&self, program: &str) -> Command {
        let program = self.bin.join(program);
        if running_as_root() {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(program);
            command
        } else {
            Command::new(program)
        }
    }

    /// `postgresql://mlflow[:password]@127.0.0.1:<port>/mlflow_auth`.
    fn url(&self, password: Option<&str>) -> String {
        let password = password.map(|p| format!(":{p}")).unwrap_or_default();
        format!(
            "postgresql://{}{password}@127.0.0.1:{}/{}",
            Self::USER,
            self.port,
            Self::DATABASE
        )
    }

    fn stop(&self) {
        let _ = self
            .server_command("pg_ctl")
            .args(["stop", "--mode=immediate", "--wait"])
            .arg(format!("--pgdata={}", self.data().display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// The `bin` folder of the newest PostgreSQL under /usr/lib/postgresql.
fn postgres_bin() -> PathBuf {
    let newest = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .max()
        .expect("no PostgreSQL under /usr/lib/postgresql: run scripts/provision");
    PathBuf::from(format!("/usr/lib/postgresql/{newest}/bin"))
}

/// Whether the `postgres` user may pass through every folder above `dir`.
fn postgres_user_can_enter(dir: &Path) -> bool {
    let parent = dir.ancestors().find(|d| d.exists()).unwrap();
    Command::new("runuser")
        .args(["-u", "postgres", "--", "test", "-x"])
        .arg(parent)
        .status()
        .is_ok_and(|status| status.success())
}

fn running_as_root() -> bool {
    let id = Command::new("id").arg("-u").output().unwrap();
    String::from_utf8_lossy(&id.stdout).trim() == "0"
}

/// Runs `command`, panicking with its output unless it succeeds.
fn checked(command: &mut Command) -> Output {
    let output = command.output().unwrap();
    assert!(
        output.status.success(),
        "{command:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// `mlflow server --app-name basic-auth` with the `basic_auth.ini` given, in its own process
/// group (uvicorn is its child); the group is killed on drop.
struct BasicAuthMlflow {
    child: Child,
    port: u16,
    dir: TempDir,
}

impl BasicAuthMlflow {
    fn start(database_uri: &str) -> Self {
        use std::os::unix::process::CommandExt as _;
        let dir = TempDir::new("mlflow-postgres-auth");
        let ini = dir.path().join("basic_auth.ini");
        std::fs::write(
            &ini,
            format!(
                "[mlflow]\ndefault_permission = READ\ndatabase_uri = {database_uri}\n\
                 admin_username = {MLFLOW_ADMIN}\n\
                 authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
            ),
        )
        .unwrap();
        let port = free_port();
        let log = std::fs::File::create(dir.path().join("mlflow.log")).unwrap();
        let tracking = format!("sqlite:///{}", dir.path().join("mlflow.db").display());
        let child = Command::new(venv_bin("mlflow"))
            .args(["server", "--app-name", "basic-auth", "--workers", "1"])
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--backend-store-uri", &tracking])
            .env("MLFLOW_AUTH_CONFIG_PATH", &ini)
            .env("MLFLOW_AUTH_ADMIN_USERNAME", MLFLOW_ADMIN)
            .env("MLFLOW_AUTH_ADMIN_PASSWORD", MLFLOW_ADMIN_PASSWORD)
            .env(
                "MLFLOW_FLASK_SERVER_SECRET_KEY",
                "tower-mlflow-postgres-test",
            )
            .env("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
            .env_remove("MLFLOW_TRACKING_URI")
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .process_group(0)
            .spawn()
            .expect("cannot start mlflow");
        Self { child, port, dir }
    }

    fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    fn wait_healthy(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(180);
        while http_status(self.addr(), "/health") != Some(200) {
            let log = || std::fs::read_to_string(self.dir.path().join("mlflow.log"));
            if let Ok(Some(exit)) = self.child.try_wait() {
                panic!("mlflow exited with {exit}:\n{}", log().unwrap_or_default());
            }
            assert!(
                Instant::now() < deadline,
                "mlflow on PostgreSQL not healthy after 180 s:\n{}",
                log().unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

impl Drop for BasicAuthMlflow {
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.child.wait();
    }
}

/// An MLflow REST call as the admin, straight to the basic-auth server.
async fn as_admin(mlflow: SocketAddr, method: &str, path: &str, json: &str) {
    let admin = basic(MLFLOW_ADMIN, MLFLOW_ADMIN_PASSWORD);
    let (status, body) = request(mlflow, method, path, Some(&admin), Some(json)).await;
    assert_eq!(status, 200, "{method} {path}: {body}");
}

/// Creates `username` through MLflow's REST API.
async fn create_user(mlflow: SocketAddr, username: &str, password: &str) {
    let json = format!(r#"{{"username": "{username}", "password": "{password}"}}"#);
    as_admin(mlflow, "POST", "/api/2.0/mlflow/users/create", &json).await;
}

/// The gateway's flags for `upstream` with the users of PostgreSQL at `url`, then `extra`.
fn flags<'a>(
    upstream: &'a str,
    url: &'a str,
    password_file: &'a Path,
    extra: &[&'a str],
) -> Vec<&'a str> {
    let password_file = password_file.to_str().unwrap();
    let mut flags = vec!["--upstream", upstream, "--mlflow-auth-db", url];
    flags.extend(["--mlflow-auth-db-password-file", password_file]);
    flags.extend(extra);
    flags
}

const SEARCH: &str = "/api/2.0/mlflow/experiments/search?max_results=1";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs mlflow, psycopg2 and postgresql; run scripts/test"]
async fn users_created_in_mlflow_on_postgres_log_in_through_the_gateway() {
    let ca = support::pki::TestCa::new();
    let postgres = Postgres::start(&ca.leaf());
    // SQLAlchemy's form, with the driver the venv has (psycopg2-binary).
    let database_uri = postgres.url(Some(Postgres::PASSWORD)).replacen(
        "postgresql://",
        "postgresql+psycopg2://",
        1,
    );
    let mut auth = BasicAuthMlflow::start(&database_uri);
    let mut upstream = MlflowServer::start(false);
    auth.wait_healthy();
    upstream.wait_healthy();
    create_user(auth.addr(), "carol", "carol-password-123").await;

    postgres.create_tls_role();
    let dir = auth.dir.path();
    let (password_file, tls_password_file, ca_file) = (
        dir.join("pg-password"),
        dir.join("pg-tls-password"),
        dir.join("pg-ca.pem"),
    );
    std::fs::write(&password_file, format!("{}\n", Postgres::PASSWORD)).unwrap();
    std::fs::write(&tls_password_file, Postgres::TLS_ROLE_PASSWORD).unwrap();
    std::fs::write(&ca_file, ca.pem()).unwrap();
    let carol_old = basic("carol", "carol-password-123");
    let carol_new = basic("carol", "carol-password-456");

    // On loopback plain text may be chosen (sslmode=disable).
    let upstream_url = upstream.base_url();
    let plain_url = format!("{}?sslmode=disable", postgres.url(None));
    let plain = Binary::start(&flags(&upstream_url, &plain_url, &password_file, &[]));
    assert_eq!(status(plain.addr(), SEARCH, &carol_old).await, 200);
    drop(plain);

    // The read-only role gets in over TLS only, and only with the test CA trusted.
    let tls_url = format!(
        "postgresql://{}@localhost:{}/{}?sslmode=require",
        Postgres::TLS_ROLE,
        postgres.port,
        Postgres::DATABASE
    );
    let untrusted =
        support::InProcess::start(&flags(&upstream_url, &tls_url, &tls_password_file, &[]))
            .err()
            .expect("trusted the test CA without --mlflow-auth-db-ca-file");
    let chain = tower_mlflow_core::http::error_chain(&untrusted);
    assert!(chain.contains("certificate"), "{chain}");
    let extra = [
        "--mlflow-auth-db-ca-file",
        ca_file.to_str().unwrap(),
        "--users-refresh",
        "1",
    ];
    let gateway = Binary::start(&flags(&upstream_url, &tls_url, &tls_password_file, &extra));
    let addr = gateway.addr();
    assert_eq!(status(addr, SEARCH, &carol_old).await, 200);
    assert_eq!(status(addr, SEARCH, &basic("carol", "wrong")).await, 401);
    let admin = basic(MLFLOW_ADMIN, MLFLOW_ADMIN_PASSWORD);
    assert_eq!(status(addr, SEARCH, &admin).await, 200);

    // A password changed through MLflow's API is in force after the next reload: the new one
    // works and the cached old one is revoked.
    as_admin(
        auth.addr(),
        "PATCH",
        "/api/2.0/mlflow/users/update-password",
        r#"{"username": "carol", "password": "carol-password-456"}"#,
    )
    .await;
    let changed = holds_within(Duration::from_secs(30), || async {
        status(addr, SEARCH, &carol_new).await == 200
            && status(addr, SEARCH, &carol_old).await == 401
    })
    .await;
    assert!(changed, "password change not picked up:\n{}", gateway.log());

    // A user created later logs in too.
    create_user(auth.addr(), "dave", "dave-password-123").await;
    let dave = basic("dave", "dave-password-123");
    let created = holds_within(Duration::from_secs(30), || async {
        status(addr, SEARCH, &dave).await == 200
    })
    .await;
    assert!(created, "new user not picked up:\n{}", gateway.log());

    // The database down: 503, never the last table (and never a 401).
    postgres.stop();
    let unavailable = holds_within(Duration::from_secs(30), || async {
        status(addr, SEARCH, &carol_new).await == 503
    })
    .await;
    assert!(
        unavailable,
        "no 503 with PostgreSQL down:\n{}",
        gateway.log()
    );
    let log = gateway.log();
    assert!(log.contains(&tls_url), "the store errors name it:\n{log}");
    assert!(!log.contains(Postgres::TLS_ROLE_PASSWORD), "{log}");
}

#[tokio::test]
async fn an_unreachable_database_fails_the_start_without_showing_the_password() {
    let port = free_port();
    let url = format!("postgresql://mlflow@127.0.0.1:{port}/mlflow_auth");
    let dir = TempDir::new("pg-unreachable");
    let password_file = dir.path().join("pg-password");
    std::fs::write(&password_file, "never-shown-password\n").unwrap();
    let error = support::InProcess::start(&flags("http://127.0.0.1:1", &url, &password_file, &[]))
        .err()
        .expect("started without its database");
    let chain = tower_mlflow_core::http::error_chain(&error);
    assert!(
        chain.starts_with(&format!("cannot use the MLflow user database {url}")),
        "{chain}"
    );
    assert!(!chain.contains("never-shown-password"), "{chain}");
}

#[tokio::test]
async fn a_missing_password_file_is_named() {
    let url = "postgresql://mlflow@127.0.0.1:1/mlflow_auth";
    let missing = Path::new("/nonexistent/pg-password");
    let error = support::InProcess::start(&flags("http://127.0.0.1:1", url, missing, &[]))
        .err()
        .expect("started without its password file");
    assert_eq!(
        error.to_string(),
        "cannot read the --mlflow-auth-db-password-file /nonexistent/pg-password"
    );
}

#[test]
fn help_gives_both_forms_and_the_password_file() {
    let help = Command::new(env!("CARGO_BIN_EXE_mlflow-gateway"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    for needle in [
        "--mlflow-auth-db <PATH|URL>",
        "basic_auth.db",
        "postgresql://",
        "--mlflow-auth-db-password-file",
        "--mlflow-auth-db-ca-file",
    ] {
        assert!(
            help.contains(needle),
            "{needle} missing from --help:\n{help}"
        );
    }
}
