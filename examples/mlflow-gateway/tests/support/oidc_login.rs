//! The OpenID provider with a login form (`tests/peers/oidc-login-server.mjs`, panva's
//! `oidc-provider` with its dev interactions) that browser sign-in tests sign in against, and
//! the gateway flags that point at it.

use std::{
    io::{BufRead as _, BufReader},
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::mpsc,
    time::Duration,
};

use tower_mlflow_tests::{ChildGuard, TempDir, free_port, node_dir, workspace_root};

/// The provider's one client.
pub const CLIENT_ID: &str = "gateway";
/// Its secret (client_secret_basic).
pub const CLIENT_SECRET: &str = "gateway-secret";
/// Verified `alice@example.com`, groups `mlflow-users` and `mlflow-admins`.
pub const ALICE: &str = "alice";
/// Verified `bob@example.org`, group `other`.
pub const BOB: &str = "bob";
/// `carol@example.com`, not verified, group `mlflow-users`.
pub const CAROL: &str = "carol";

/// `http://<addr>/_gateway/callback`: the redirect URL of a gateway listening on `addr`.
pub fn callback_url(addr: SocketAddr) -> String {
    format!("http://{addr}/_gateway/callback")
}

/// What the provider is started with: the redirect URIs its client may use (at least one),
/// the ID token lifetime and the post-logout redirect URIs.
#[derive(Clone, Debug)]
pub struct OidcLoginOptions {
    redirect_uris: Vec<String>,
    id_token_ttl: Option<u64>,
    post_logout_redirect_uris: Vec<String>,
}

impl OidcLoginOptions {
    /// Options allowing `redirect_uri` (see [`callback_url`]).
    pub fn new(redirect_uri: impl Into<String>) -> Self {
        Self {
            redirect_uris: vec![redirect_uri.into()],
            id_token_ttl: None,
            post_logout_redirect_uris: Vec::new(),
        }
    }

    /// Also allows `redirect_uri`.
    pub fn redirect_uri(mut self, redirect_uri: impl Into<String>) -> Self {
        self.redirect_uris.push(redirect_uri.into());
        self
    }

    /// ID tokens valid for `secs` seconds (the peer's default: 300).
    pub fn id_token_ttl(mut self, secs: u64) -> Self {
        self.id_token_ttl = Some(secs);
        self
    }

    /// Allows `uri` as a `post_logout_redirect_uri` at the end-session endpoint.
    pub fn post_logout_redirect_uri(mut self, uri: impl Into<String>) -> Self {
        self.post_logout_redirect_uris.push(uri.into());
        self
    }
}

/// A running provider on a free loopback port, issuer `http://127.0.0.1:<port>`; dropping it
/// kills it. Its state (grants, codes, refresh tokens, the signing key) is in memory only.
#[derive(Debug)]
pub struct OidcLogin {
    options: OidcLoginOptions,
    port: u16,
    dir: TempDir,
    child: Option<ChildGuard>,
}

impl OidcLogin {
    /// How long the provider may take to print `ready`.
    pub const START_TIMEOUT: Duration = Duration::from_secs(60);

    /// Starts the provider (needs `$TOWER_MLFLOW_NODE_DIR`, see `scripts/provision`) and
    /// waits until it is ready; panics with its log if it is not within
    /// [`START_TIMEOUT`](Self::START_TIMEOUT). Also writes the client secret and a session
    /// secret for the gateway (see [`gateway_args`](Self::gateway_args)).
    pub fn start(options: OidcLoginOptions) -> Self {
        let dir = TempDir::new("oidc-login");
        std::fs::write(dir.path().join("client-secret"), CLIENT_SECRET).unwrap();
        std::fs::write(
            dir.path().join("session-secret"),
            "a-session-secret-of-more-than-32-bytes-for-tests\n",
        )
        .unwrap();
        let mut login = Self {
            options,
            port: free_port(),
            dir,
            child: None,
        };
        login.spawn();
        login
    }

    fn spawn(&mut self) {
        let node = node_dir();
        let log = std::fs::File::create(self.log_path()).expect("log file");
        let mut command = Command::new("node");
        command
            .arg(workspace_root().join("tests/peers/oidc-login-server.mjs"))
            .arg(&node)
            .arg(self.port.to_string());
        for uri in &self.options.redirect_uris {
            command.args(["--redirect-uri", uri]);
        }
        for uri in &self.options.post_logout_redirect_uris {
            command.args(["--post-logout-redirect-uri", uri]);
        }
        if let Some(ttl) = self.options.id_token_ttl {
            command.args(["--id-token-ttl", &ttl.to_string()]);
        }
        command
            .current_dir(&node)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log);
        let mut child = ChildGuard::spawn(&mut command);
        let stdout = child.0.stdout.take().expect("piped stdout");
        // The reader keeps draining stdout after `ready`, so the peer never blocks on it.
        let (ready_tx, ready_rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if line.trim() == "ready" {
                    let _ = ready_tx.send(());
                }
            }
        });
        if ready_rx.recv_timeout(Self::START_TIMEOUT).is_err() {
            let status = child.0.try_wait();
            panic!(
                "oidc-login-server not ready after {:?} ({status:?}):\n{}",
                Self::START_TIMEOUT,
                self.log()
            );
        }
        self.child = Some(child);
    }

    /// Stops the provider and starts it again on the same port with the same options: every
    /// grant, code and refresh token is forgotten and the signing key is new.
    pub fn restart(&mut self) {
        drop(self.child.take());
        self.spawn();
    }

    /// `http://127.0.0.1:<port>`.
    pub fn issuer(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Its port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A file holding [`CLIENT_SECRET`], for `--oidc-client-secret-file`.
    pub fn client_secret_file(&self) -> PathBuf {
        self.dir.path().join("client-secret")
    }

    /// A session secret file for `--session-secret-file`.
    pub fn session_secret_file(&self) -> PathBuf {
        self.dir.path().join("session-secret")
    }

    /// The flags of a gateway that signs users in here, with `redirect_url` (one of the
    /// options' redirect URIs) and `session_secret_file`.
    pub fn gateway_args(&self, redirect_url: &str, session_secret_file: &Path) -> Vec<String> {
        [
            "--oidc-issuer",
            &self.issuer(),
            "--oidc-client-id",
            CLIENT_ID,
            "--oidc-client-secret-file",
            path_str(&self.client_secret_file()),
            "--oidc-redirect-url",
            redirect_url,
            "--session-secret-file",
            path_str(session_secret_file),
        ]
        .map(str::to_owned)
        .into()
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("oidc-login.log")
    }

    /// What it printed on stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("temp paths are UTF-8")
}
