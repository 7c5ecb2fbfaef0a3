//! `mlflow-secrets`: inspect, check and use the configuration read by
//! `tower_mlflow_secrets::config::Config::from_env` (the variables of mlflow-secrets-auth).
//!
//! ```text
//! mlflow-secrets info   [--verbose]
//! mlflow-secrets doctor [--dry-run URL] [--verbose]
//! mlflow-secrets exec   [--] CMD [ARGS…]
//! mlflow-secrets proxy  [--listen 127.0.0.1:5001] [--allow-remote] [--max-replay-body BYTES]
//!                       [--upstream-ca FILE]
//! mlflow-secrets --version
//! ```
//!
//! `info` prints the resolved configuration and, for the secret, only its length and a
//! fingerprint keyed with a random per-run key (`hmac:` + 12 hex digits: comparable within
//! one run, useless for an offline guess). `doctor` validates the configuration, fetches the
//! secret, builds the header, checks the allowlist and https, and with `--dry-run URL` sends
//! one GET request with the header and fails on anything but a 2xx answer (401, 403, a
//! redirect, 5xx) and on network errors. `exec` fetches the secret and runs `CMD` with MLflow's own credential
//! variables set (see `exec.rs`). `proxy` serves a local HTTP proxy for
//! `MLFLOW_TRACKING_URI` that adds the credential to every request (see `proxy/mod.rs`).
//! Nothing ever prints the secret or the header value,
//! `--verbose` included.
//!
//! Exit codes: 0 success; 1 a check failed (fetch, header, host not allowed, dry run);
//! 2 usage or configuration error; `exec` exits with the command's status; `proxy` exits 0
//! once it has drained after SIGTERM or SIGINT.

mod cli;
mod exec;
mod proxy;
mod report;

use std::process::ExitCode;

use clap::Parser;
use tower_mlflow_core::http::error_chain;
use tower_mlflow_secrets::{
    config::{Config, EnvConfigError},
    source::{Fetched, SecretSource},
};

use crate::cli::{Cli, Command};

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    // Usage errors exit 2, `--help` and `--version` exit 0 (clap's own codes).
    let cli = Cli::parse();
    match run(cli).await {
        Ok(code) | Err(code) => code,
    }
}

async fn run(cli: Cli) -> Result<ExitCode, ExitCode> {
    let config = Config::from_env().map_err(|e| config_error(&e))?;
    match &cli.command {
        Command::Exec { command } => {
            // Checked before the fetch: the command sends the credential there.
            exec::check_tracking_uri("exec", &config)?;
            let secret = fetch(&config).await?;
            return Ok(exec::run(&config, secret, command).await);
        }
        Command::Proxy(args) => return proxy::run(&config, args).await,
        Command::Info | Command::Doctor { .. } => {}
    }
    report::print_config(&config, cli.verbose);
    let secret = fetch(&config).await?;
    report::print_secret(&secret);
    Ok(match cli.command {
        Command::Doctor { dry_run } => report::doctor(&config, &secret, dry_run).await,
        _ => ExitCode::SUCCESS,
    })
}

/// Builds the source and fetches the secret once.
#[allow(clippy::print_stderr)]
async fn fetch(config: &Config) -> Result<Fetched, ExitCode> {
    let source = config.source().await.map_err(|e| config_error(&e))?;
    source.fetch().await.map_err(|e| {
        eprintln!("fetch: FAILED: {e}");
        ExitCode::from(1)
    })
}

#[allow(clippy::print_stderr)]
fn config_error(e: &EnvConfigError) -> ExitCode {
    eprintln!("configuration error: {}", error_chain(&e));
    ExitCode::from(2)
}
