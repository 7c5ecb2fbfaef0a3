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

/// A free TCP port on 127.0.0.1 (bound, then released for the peer to take).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free loopback port")
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
