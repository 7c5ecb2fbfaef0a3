//! The gateway most tests want: an htpasswd file in the test's directory, an upstream (by
//! default the echo upstream, 201 to everything), then the test's own flags; as the real
//! binary or in-process.

use std::{net::SocketAddr, path::PathBuf};

use tower_mlflow_tests::TempDir;

use super::{InProcess, binary::Binary};

/// The upstream URL and the htpasswd file of a gateway, before it starts.
pub struct Fixture {
    /// `--upstream`.
    pub upstream: String,
    /// `--htpasswd`: `htpasswd` in the test's directory.
    pub htpasswd: String,
}

impl Fixture {
    /// `htpasswd` written to the test's directory, and a fresh echo upstream.
    pub async fn echo(dir: &TempDir, htpasswd: &str) -> Self {
        let upstream = super::echo_upstream(None).await;
        Self::with_upstream(dir, htpasswd, upstream)
    }

    /// `htpasswd` written to the test's directory, in front of `upstream`.
    pub fn with_upstream(dir: &TempDir, htpasswd: &str, upstream: SocketAddr) -> Self {
        let file = htpasswd_file(dir);
        std::fs::write(&file, htpasswd).unwrap();
        Self {
            upstream: format!("http://{upstream}"),
            htpasswd: file.to_str().unwrap().to_owned(),
        }
    }

    /// `--upstream … --htpasswd …` and then `extra`.
    pub fn args<'a>(&'a self, extra: &[&'a str]) -> Vec<&'a str> {
        let stores = ["--upstream", &self.upstream, "--htpasswd", &self.htpasswd];
        stores.into_iter().chain(extra.iter().copied()).collect()
    }

    /// The real binary with [`args`](Self::args).
    pub fn binary(&self, extra: &[&str]) -> Binary {
        Binary::start(&self.args(extra))
    }

    /// The real binary with [`args`](Self::args) and `env` in its environment.
    pub fn binary_with_env(&self, extra: &[&str], env: &[(&str, &str)]) -> Binary {
        Binary::start_with_env(&self.args(extra), env)
    }

    /// The gateway in-process with [`args`](Self::args); panics if it does not assemble.
    pub fn in_process(&self, extra: &[&str]) -> InProcess {
        InProcess::start(&self.args(extra)).unwrap_or_else(|e| panic!("{e}"))
    }
}

/// Where [`Fixture`] writes the htpasswd file in `dir` (tests that change it later).
pub fn htpasswd_file(dir: &TempDir) -> PathBuf {
    dir.path().join("htpasswd")
}

/// The real binary with `htpasswd`'s users in front of a fresh echo upstream, and `extra`.
pub async fn gateway(dir: &TempDir, htpasswd: &str, extra: &[&str]) -> Binary {
    Fixture::echo(dir, htpasswd).await.binary(extra)
}
