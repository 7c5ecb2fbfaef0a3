//! `exec`: runs a command with MLflow's own credential variables set from the secret.
//!
//! MLflow clients send `MLFLOW_TRACKING_TOKEN` as `Authorization: Bearer …` and
//! `MLFLOW_TRACKING_USERNAME` / `MLFLOW_TRACKING_PASSWORD` as Basic (the pair wins when both
//! are set), so `exec` sets one kind and removes the other from the command's environment. A
//! custom header name or scheme has no MLflow variable: that needs the `proxy`.
//!
//! `MLFLOW_TRACKING_URI` must be set and allowed by the allowlist before anything is fetched,
//! since the command will send the credential there. The secret is fetched once: it lives in
//! the command's environment and is not refreshed.
//!
//! SIGINT and SIGTERM are forwarded to the command. The exit status is the command's own,
//! 128 + N when it was killed by signal N, 127 when it cannot be found and 126 when it
//! cannot be run.

use std::{ffi::OsString, io, process::ExitCode};

use base64::Engine as _;
use http::{Uri, header::AUTHORIZATION};
use tower_mlflow_secrets::{config::Config, format::HeaderMode, source::Fetched};
use zeroize::Zeroizing;

const TOKEN: &str = "MLFLOW_TRACKING_TOKEN";
const USERNAME: &str = "MLFLOW_TRACKING_USERNAME";
const PASSWORD: &str = "MLFLOW_TRACKING_PASSWORD";

/// The credential in the form MLflow's variables want, wiped on drop.
enum Credential {
    Token(Zeroizing<String>),
    Basic {
        username: Zeroizing<String>,
        password: Zeroizing<String>,
    },
}

/// `MLFLOW_TRACKING_URI`, if it is allowed by the allowlist; otherwise an exit code (2 when
/// unset or not a URL, 1 when not allowed) after a message that starts with `command`.
#[allow(clippy::print_stderr)]
pub(crate) fn check_tracking_uri(command: &str, config: &Config) -> Result<Uri, ExitCode> {
    let Some(raw) = std::env::var_os("MLFLOW_TRACKING_URI") else {
        eprintln!("{command}: MLFLOW_TRACKING_URI is not set (the credential is only sent there)");
        return Err(ExitCode::from(2));
    };
    // The value may carry user info, so it is not echoed.
    let Some(uri) = raw.to_str().and_then(|s| s.parse::<Uri>().ok()) else {
        eprintln!("{command}: MLFLOW_TRACKING_URI is not a valid URL");
        return Err(ExitCode::from(2));
    };
    if !config.allowlist().allows(&uri) {
        eprintln!(
            "allowlist: FAILED: MLFLOW_TRACKING_URI {} is not allowed (https required unless loopback); allowed: {}",
            crate::report::origin(&uri),
            config.allowed_hosts()
        );
        return Err(ExitCode::from(1));
    }
    Ok(uri)
}

/// Runs `command` with the credential set and returns its exit status.
#[allow(clippy::print_stderr)]
pub(crate) async fn run(config: &Config, secret: Fetched, command: &[OsString]) -> ExitCode {
    let credential = match credential(config, &secret) {
        Ok(credential) => credential,
        Err(message) => {
            eprintln!("exec: {message}");
            return ExitCode::from(1);
        }
    };
    drop(secret);
    let Some((program, args)) = command.split_first() else {
        eprintln!("exec: no command given");
        return ExitCode::from(2);
    };
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args);
    match &credential {
        Credential::Token(token) => {
            cmd.env(TOKEN, token.as_str());
            cmd.env_remove(USERNAME).env_remove(PASSWORD);
        }
        Credential::Basic { username, password } => {
            cmd.env(USERNAME, username.as_str())
                .env(PASSWORD, password.as_str());
            cmd.env_remove(TOKEN);
        }
    }
    // Listening before the spawn: a signal that comes early is forwarded, not fatal to us.
    let signals = match Signals::listen() {
        Ok(signals) => signals,
        Err(e) => {
            eprintln!("exec: cannot listen for signals: {e}");
            return ExitCode::from(1);
        }
    };
    let spawned = cmd.spawn();
    // The command's copy of the environment and ours go now; the child has its own.
    drop(cmd);
    drop(credential);
    let child = match spawned {
        Ok(child) => child,
        Err(e) => {
            eprintln!("exec: cannot run `{}`: {e}", program.to_string_lossy());
            return ExitCode::from(if e.kind() == io::ErrorKind::NotFound {
                127
            } else {
                126
            });
        }
    };
    match signals.wait_forwarding(child).await {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("exec: waiting for `{}`: {e}", program.to_string_lossy());
            ExitCode::from(1)
        }
    }
}

/// Reads the credential back from the header the layer would send, so `exec` hands the
/// command exactly what `doctor` checked.
fn credential(config: &Config, secret: &Fetched) -> Result<Credential, String> {
    let template = config.template();
    let mode = template.mode();
    if template.name() != AUTHORIZATION || !matches!(mode, HeaderMode::Bearer | HeaderMode::Basic) {
        return Err(format!(
            "the credential goes in `{}` ({mode:?}), which MLflow's variables cannot express; \
             run `mlflow-secrets proxy` and point MLFLOW_TRACKING_URI at it instead",
            template.name()
        ));
    }
    let value = template
        .render(secret.secret())
        .map_err(|e| format!("header: {e}"))?;
    // `render` built the value from a `str`.
    let text = std::str::from_utf8(value.as_bytes()).map_err(|_| "header: not UTF-8")?;
    if let Some(token) = text.strip_prefix("Bearer ") {
        return Ok(Credential::Token(Zeroizing::new(token.to_owned())));
    }
    let encoded = text
        .strip_prefix("Basic ")
        .ok_or("header: unexpected scheme")?;
    let plain = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .map(Zeroizing::new)
        .map_err(|_| "header: invalid Basic value")?;
    let plain = std::str::from_utf8(&plain).map_err(|_| "header: invalid Basic value")?;
    // `render` refuses usernames with a colon, so the first one separates the two.
    let (username, password) = plain.split_once(':').ok_or("header: invalid Basic value")?;
    Ok(Credential::Basic {
        username: Zeroizing::new(username.to_owned()),
        password: Zeroizing::new(password.to_owned()),
    })
}

/// SIGINT and SIGTERM, caught so that they can be passed on to the command.
#[cfg(unix)]
struct Signals {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
}

#[cfg(unix)]
impl Signals {
    fn listen() -> io::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
        })
    }

    /// Waits for `child`, passing SIGINT and SIGTERM on to it; the exit code as a shell
    /// reports it.
    async fn wait_forwarding(mut self, mut child: tokio::process::Child) -> io::Result<u8> {
        use std::os::unix::process::ExitStatusExt as _;

        use rustix::process::{Pid, Signal, kill_process};

        let pid = child
            .id()
            .and_then(|id| i32::try_from(id).ok())
            .and_then(Pid::from_raw);
        let forward = |sig: Signal| {
            // The child may have exited already; its status is collected below.
            if let Some(pid) = pid {
                let _ = kill_process(pid, sig);
            }
        };
        let status = loop {
            tokio::select! {
                status = child.wait() => break status?,
                Some(()) = self.interrupt.recv() => forward(Signal::INT),
                Some(()) = self.terminate.recv() => forward(Signal::TERM),
            }
        };
        Ok(exit_code(status.code(), status.signal()))
    }
}

#[cfg(not(unix))]
struct Signals;

#[cfg(not(unix))]
impl Signals {
    fn listen() -> io::Result<Self> {
        Ok(Self)
    }

    async fn wait_forwarding(self, mut child: tokio::process::Child) -> io::Result<u8> {
        Ok(exit_code(child.wait().await?.code(), None))
    }
}

/// The status a shell reports: the exit code, or 128 + N for a child killed by signal N.
fn exit_code(code: Option<i32>, signal: Option<i32>) -> u8 {
    match (code, signal) {
        (Some(code), _) => u8::try_from(code & 0xff).unwrap_or(1),
        (None, Some(signal)) => u8::try_from(128 + (signal & 0x7f)).unwrap_or(1),
        (None, None) => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::exit_code;

    #[test]
    fn exit_codes_are_what_a_shell_reports() {
        assert_eq!(exit_code(Some(0), None), 0);
        assert_eq!(exit_code(Some(3), None), 3);
        assert_eq!(exit_code(Some(255), None), 255);
        assert_eq!(exit_code(None, Some(15)), 143);
        assert_eq!(exit_code(None, Some(2)), 130);
        assert_eq!(exit_code(None, None), 1);
    }
}
