//! Harness for the integration tests: free loopback ports, child processes that are killed
//! on drop, and the location of the peers that `scripts/provision` installs.
//!
//! Tests that need a peer are `#[ignore = "needs <peer>; run scripts/test"]`; `scripts/test`
//! provisions the peers, exports their locations and runs them with `--include-ignored`.

use std::{
    net::{SocketAddr, TcpListener},
    path::PathBuf,
    process::{Child, Command},
    time::{Duration, Instant},
};

/// A free TCP port on 127.0.0.1 (bound, then released for the peer to take), never one this
/// process was given before: the kernel may hand a released port out again, and two peers
/// told the same port fail in ways that look like the code under test failing.
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("no free loopback port");
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}

/// The Python venv made by `scripts/provision` (`$TOWER_MLFLOW_VENV`), holding `mlflow`,
/// `python` and `moto_server`.
pub fn venv() -> PathBuf {
    let dir = std::env::var_os("TOWER_MLFLOW_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target/peers/venv"));
    assert!(
        dir.join("bin/python").exists(),
        "no Python venv at {} — run scripts/provision (or scripts/test)",
        dir.display()
    );
    dir
}

/// A program from the venv, such as `mlflow` or `moto_server`.
pub fn venv_bin(name: &str) -> PathBuf {
    venv().join("bin").join(name)
}

/// The npm folder made by `scripts/provision` (`$TOWER_MLFLOW_NODE_DIR`), with
/// `node_modules/oidc-provider`.
pub fn node_dir() -> PathBuf {
    let dir = std::env::var_os("TOWER_MLFLOW_NODE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target/peers/node"));
    assert!(
        dir.join("node_modules/oidc-provider").exists(),
        "no oidc-provider in {} — run scripts/provision (or scripts/test)",
        dir.display()
    );
    dir
}

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// A child process killed (and reaped) when dropped, so that a failing test leaves no
/// server behind.
#[derive(Debug)]
pub struct ChildGuard(pub Child);

impl ChildGuard {
    /// Spawns `command`.
    pub fn spawn(command: &mut Command) -> Self {
        Self(
            command
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {command:?}: {e}")),
        )
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits until something accepts TCP connections on `addr`, or panics after `timeout`.
pub fn wait_for_port(addr: SocketAddr, timeout: Duration) {
    let start = Instant::now();
    while std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        assert!(
            start.elapsed() < timeout,
            "nothing listening on {addr} after {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A temporary directory, removed with everything in it when dropped.
#[derive(Debug)]
pub struct TempDir(PathBuf);

impl TempDir {
    /// A new, empty directory under the system temp dir, named after `tag` and unique.
    pub fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "tower-mlflow-{tag}-{}-{}",
            std::process::id(),
            free_port()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("cannot create a temp dir");
        Self(dir)
    }

    /// The directory.
    pub fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The admin user of every [`MlflowServer`] started with `basic_auth`.
pub const MLFLOW_ADMIN: &str = "admin";
/// Its password (MLflow ≥ 3.16.1 wants at least 12 characters).
pub const MLFLOW_ADMIN_PASSWORD: &str = "admin-password-for-tests-1";

/// A real `mlflow server` from the venv, on 127.0.0.1, in a temp working directory, in its
/// own process group: MLflow starts uvicorn as a child, so killing only the `mlflow`
/// process would leave the server running. Dropping stops the whole group.
#[derive(Debug)]
pub struct MlflowServer {
    child: Child,
    port: u16,
    dir: TempDir,
}

impl MlflowServer {
    /// Starts `mlflow server --workers 1` (with `--app-name basic-auth` when `basic_auth`),
    /// with a SQLite tracking store and artifacts served from the temp dir. Call
    /// [`wait_healthy`](Self::wait_healthy) before using it.
    pub fn start(basic_auth: bool) -> Self {
        use std::os::unix::process::CommandExt as _;
        let dir = TempDir::new(if basic_auth { "mlflow-auth" } else { "mlflow" });
        let port = free_port();
        let log = std::fs::File::create(dir.path().join("mlflow.log")).expect("log file");
        let mut command = Command::new(venv_bin("mlflow"));
        command
            .arg("server")
            .args([
                "--host",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--workers",
                "1",
            ])
            .arg("--backend-store-uri")
            .arg(format!(
                "sqlite:///{}",
                dir.path().join("mlflow.db").display()
            ))
            .arg("--artifacts-destination")
            .arg(dir.path().join("artifacts"))
            // With basic-auth, `basic_auth.db` lands in the working directory.
            .current_dir(dir.path())
            .env_remove("MLFLOW_AUTH_CONFIG_PATH")
            .env_remove("MLFLOW_TRACKING_URI")
            .env("MLFLOW_AUTH_ADMIN_USERNAME", MLFLOW_ADMIN)
            .env("MLFLOW_AUTH_ADMIN_PASSWORD", MLFLOW_ADMIN_PASSWORD)
            .env(
                "MLFLOW_FLASK_SERVER_SECRET_KEY",
                "tower-mlflow-test-secret-key",
            )
            // No background job runner: fewer processes on a small machine.
            .env("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .process_group(0);
        if basic_auth {
            command.args(["--app-name", "basic-auth"]);
        }
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start mlflow: {e}"));
        Self { child, port, dir }
    }

    /// Its port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:<port>`.
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Its working directory.
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// The `basic_auth.db` a basic-auth server creates.
    pub fn auth_db(&self) -> PathBuf {
        self.dir.path().join("basic_auth.db")
    }

    /// What the server printed so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("mlflow.log")).unwrap_or_default()
    }

    /// Blocks until `GET /health` answers 200 (MLflow takes 15-60 s to start); panics with
    /// the server's log if it exits or is not healthy after 180 s.
    pub fn wait_healthy(&mut self) {
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let deadline = Instant::now() + Duration::from_secs(180);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "mlflow exited with {status} before it was ready:\n{}",
                    self.log()
                );
            }
            if http_status(addr, "/health") == Some(200) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "mlflow not healthy after 180 s:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    fn signal_group(&self, signal: &str) {
        let _ = Command::new("kill")
            .args([signal, "--", &format!("-{}", self.child.id())])
            .stderr(std::process::Stdio::null())
            .status();
    }
}

impl Drop for MlflowServer {
    fn drop(&mut self) {
        // SIGTERM lets mlflow stop uvicorn; then SIGKILL whatever is left of the group.
        self.signal_group("-TERM");
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline && matches!(self.child.try_wait(), Ok(None)) {
            std::thread::sleep(Duration::from_millis(100));
        }
        self.signal_group("-KILL");
        let _ = self.child.wait();
    }
}

/// The status of a plain `GET path` on `addr`, or `None` when nothing answers.
pub fn http_status(addr: SocketAddr, path: &str) -> Option<u16> {
    use std::io::{Read as _, Write as _};
    let mut stream = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).ok()?;
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}
