//! `mlflow-secrets`: inspect, check and use the configuration read by
//! `tower_mlflow_secrets::config::Config::from_env` (the variables of mlflow-secrets-auth).
//!
//! ```text
//! mlflow-secrets info   [--verbose]
//! mlflow-secrets doctor [--dry-run URL] [--verbose]
//! mlflow-secrets exec   [--] CMD [ARGS…]
//! mlflow-secrets --version
//! ```
//!
//! `info` prints the resolved configuration and, for the secret, only a fingerprint
//! (`sha256:` + 12 hex digits of its SHA-256) and its length. `doctor` validates the
//! configuration, fetches the secret, builds the header, checks the allowlist and https,
//! and with `--dry-run URL` sends one GET request with the header and fails on 401, 403 or a
//! network error. `exec` fetches the secret and runs `CMD` with MLflow's own credential
//! variables set (see `exec.rs`). Nothing ever prints the secret or the header value,
//! `--verbose` included.
//!
//! Exit codes: 0 success; 1 a check failed (fetch, header, host not allowed, dry run);
//! 2 usage or configuration error; `exec` exits with the command's status.

mod cli;
mod exec;
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
    if let Command::Exec { command } = &cli.command {
        // Checked before the fetch: the command sends the credential there.
        exec::check_tracking_uri(&config)?;
        let secret = fetch(&config).await?;
        return Ok(exec::run(&config, secret, command).await);
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
