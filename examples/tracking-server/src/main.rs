//! `tracking-server`: an in-memory MLflow-compatible tracking server behind `AuthLayer`.
//!
//! ```text
//! tracking-server [--listen ADDR] --user NAME:PASSWORD [--user NAME:PASSWORD]...
//! TRACKING_SERVER_USERS=alice:pw1,bob:pw2 tracking-server --listen 127.0.0.1:5000
//! MLFLOW_TRACKING_URI=http://127.0.0.1:5000 MLFLOW_TRACKING_USERNAME=alice \
//!     MLFLOW_TRACKING_PASSWORD=pw1 python train.py
//! ```
//!
//! Users come from `--user` (repeatable) and from `TRACKING_SERVER_USERS` (comma-separated;
//! preferred, since command lines are visible to other local users). Starting without any
//! user is an error. Everything is kept in memory and lost on exit; Ctrl-C or SIGTERM stops
//! the server gracefully.

use std::{net::SocketAddr, process::ExitCode};

use tokio::net::TcpListener;
use tracking_server::{Store, app, users::StaticUsers};

const USAGE: &str = "\
usage: tracking-server [--listen ADDR] --user NAME:PASSWORD [--user NAME:PASSWORD]...

An in-memory MLflow tracking server (REST API under /api/2.0/mlflow) protected by Basic auth.
Runs record the authenticated user as their user_id.

options:
  --listen ADDR           address to listen on (default 127.0.0.1:5000)
  --user NAME:PASSWORD    a user that may log in; repeatable
  -h, --help              this text

environment:
  TRACKING_SERVER_USERS   more users, as NAME:PASSWORD,NAME:PASSWORD

One INFO line per request (method, path, status) goes to stderr.";

struct Options {
    listen: SocketAddr,
    users: StaticUsers,
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
    let options = match parse_options(std::env::args().skip(1)) {
        Ok(Some(options)) => options,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("tracking-server: {message}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match serve(options).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("tracking-server: {error}");
            ExitCode::FAILURE
        }
    }
}

/// `Ok(None)` for `--help`.
fn parse_options(args: impl Iterator<Item = String>) -> Result<Option<Options>, String> {
    let mut listen: SocketAddr = ([127, 0, 0, 1], 5000).into();
    let mut users = StaticUsers::new();
    let mut args = args.peekable();
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or_else(|| format!("{name} needs a value"));
        match arg.as_str() {
            "-h" | "--help" => return Ok(None),
            "--listen" => {
                let text = value("--listen")?;
                listen = text
                    .parse()
                    .map_err(|e| format!("--listen {text:?}: {e} (expected IP:PORT)"))?;
            }
            "--user" => {
                users = users
                    .with_user_entry(&value("--user")?)
                    .map_err(|e| format!("--user: {e}"))?;
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if let Ok(list) = std::env::var("TRACKING_SERVER_USERS") {
        for entry in list.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            users = users
                .with_user_entry(entry)
                .map_err(|e| format!("TRACKING_SERVER_USERS: {e}"))?;
        }
    }
    if users.is_empty() {
        return Err("no users: give at least one --user NAME:PASSWORD or set \
                    TRACKING_SERVER_USERS (the server never runs open)"
            .to_owned());
    }
    Ok(Some(Options { listen, users }))
}

async fn serve(options: Options) -> std::io::Result<()> {
    let listener = TcpListener::bind(options.listen).await?;
    let addr = listener.local_addr()?;
    println!(
        "tracking-server: listening on http://{addr} ({} users)",
        options.users.len()
    );
    axum::serve(listener, app(options.users, Store::new()))
        .with_graceful_shutdown(shutdown_signal())
        .await
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(signal) => signal,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
    eprintln!("tracking-server: shutting down");
}
