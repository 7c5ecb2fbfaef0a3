//! `mlflow-gateway`: authentication in front of an existing `mlflow server`.
//!
//! ```text
//! mlflow-gateway --listen 127.0.0.1:8080 --upstream http://127.0.0.1:5000 \
//!     --htpasswd /etc/mlflow/htpasswd --mlflow-default-exemptions
//! ```
//!
//! At least one authenticator is required: `--htpasswd`, `--mlflow-auth-db`, `--tokens-file`,
//! `--jwt-issuer` (tried in that order for an `Authorization` header) or `--oidc-issuer`
//! (browser sign-in with a session cookie). Run with `--help` for every flag, its
//! environment variable and its default; `--config FILE` reads them from TOML.
//! `--check` validates and exits; `hash-token USER` prints a `--tokens-file` line. SIGHUP
//! re-reads every file; SIGTERM drains.

use std::process::ExitCode;

use mlflow_gateway::{Flags, Gateway, LoadError, assemble, check, tokens};
use tower_mlflow_core::http::error_chain;

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<_> = std::env::args_os().collect();
    if args.get(1).is_some_and(|arg| arg == "hash-token") {
        return hash_token(&args[2..]);
    }
    let (flags, file_problems) = match Flags::load(args) {
        Ok(loaded) => loaded,
        Err(LoadError::Usage(error)) => error.exit(),
        Err(error) => return fail(&[error_chain(&error)]),
    };
    // After the flags: --log-format shapes every line. Kept to the end of main: dropping it
    // writes the buffered access lines.
    let _log = mlflow_gateway::logging::init(flags.log_format);
    let file_problems: Vec<String> = file_problems.iter().map(ToString::to_string).collect();
    if flags.check {
        return check_only(flags, file_problems).await;
    }
    if !file_problems.is_empty() {
        return fail(&file_problems);
    }
    let started = match flags.into_config() {
        Ok(config) => assemble(&config).await.map_err(|e| error_chain(&e)),
        Err(error) => Err(error_chain(&error)),
    };
    match started {
        Ok(gateway) => {
            reload_on_sighup(&gateway);
            gateway.serve(shutdown_signal()).await;
            ExitCode::SUCCESS
        }
        Err(error) => fail(&[error]),
    }
}

fn fail(problems: &[String]) -> ExitCode {
    for problem in problems {
        eprintln!("mlflow-gateway: {problem}");
    }
    ExitCode::from(2)
}

/// `--check`: prints the resolved configuration on stdout, every problem on stderr.
async fn check_only(flags: Flags, mut problems: Vec<String>) -> ExitCode {
    match flags.into_unvalidated_config() {
        Ok(config) => {
            println!("{config}");
            problems.extend(check(&config).await);
        }
        Err(error) => problems.push(error_chain(&error)),
    }
    if problems.is_empty() {
        eprintln!("mlflow-gateway: configuration OK");
        ExitCode::SUCCESS
    } else {
        fail(&problems)
    }
}

/// `hash-token USER`: the token on stdin, the line on stdout.
fn hash_token(args: &[std::ffi::OsString]) -> ExitCode {
    let [user] = args else {
        return fail(&["usage: mlflow-gateway hash-token USER < token".into()]);
    };
    match tokens::hash_token(&user.to_string_lossy()) {
        Ok(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(error) => fail(&[error]),
    }
}

/// On SIGHUP, re-reads every file at once and logs one line.
fn reload_on_sighup(gateway: &Gateway) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let reloader = gateway.reloader();
        let Ok(mut hangups) = signal(SignalKind::hangup()) else {
            tracing::warn!("cannot listen for SIGHUP; files are still polled");
            return;
        };
        tokio::spawn(async move {
            while hangups.recv().await.is_some() {
                let (reloaded, errors) = reloader.reload_all().await;
                let reloaded = reloaded.join(", ");
                if errors.is_empty() {
                    tracing::info!(%reloaded, "SIGHUP: files reloaded");
                } else {
                    let errors = errors.join("; ");
                    tracing::error!(%reloaded, %errors, "SIGHUP: some files not reloaded");
                }
            }
        });
    }
    #[cfg(not(unix))]
    let _ = gateway;
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutdown signal received");
}
