//! `mlflow-gateway`: authentication in front of an existing `mlflow server`.
//!
//! ```text
//! mlflow-gateway --listen 127.0.0.1:8080 --upstream http://127.0.0.1:5000 \
//!     --htpasswd /etc/mlflow/htpasswd --mlflow-default-exemptions
//! ```
//!
//! At least one authenticator (`--htpasswd`, `--mlflow-auth-db`, `--jwt-issuer`) is
//! required; several are tried in that order. Run with `--help` for every flag.

use std::process::ExitCode;

use clap::Parser;
use mlflow_gateway::{Flags, assemble};
use tower_mlflow_core::http::error_chain;

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let started = match Flags::parse().into_config() {
        Ok(config) => assemble(&config).await.map_err(|e| error_chain(&e)),
        Err(error) => Err(error_chain(&error)),
    };
    match started {
        Ok(gateway) => {
            gateway.serve(shutdown_signal()).await;
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("mlflow-gateway: {error}");
            ExitCode::from(2)
        }
    }
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
