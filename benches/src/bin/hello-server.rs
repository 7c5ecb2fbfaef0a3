//! The axum hello service of `scripts/bench-http`: answers `hello` on every path, bare or
//! behind `AuthLayer`.
//!
//! ```text
//! hello-server --listen 127.0.0.1:9000 --mode bare
//! hello-server --listen 127.0.0.1:9003 --mode noop-layer
//! hello-server --listen 127.0.0.1:9001 --mode bearer --token TOKEN
//! hello-server --listen 127.0.0.1:9002 --mode basic-cached --htpasswd FILE
//! ```
//!
//! `bearer` checks `Authorization: Bearer TOKEN` with `StaticTokens`; `basic-cached` checks
//! Basic credentials against an htpasswd file behind `Cached` (60 s), as `mlflow-gateway`
//! does. `noop-layer` puts a layer that does nothing (`tower_layer::Identity`) on the same
//! router with `Router::layer`: what axum's per-route layering costs with any middleware, the
//! floor under `AuthLayer`'s rows. Bare mode is also the upstream of the gateway-vs-nginx
//! comparison.

use std::{net::SocketAddr, process::ExitCode, time::Duration};

use axum::{Router, routing::any};
use tower_mlflow_auth::{
    AuthLayer, Authorization, Scheme,
    authenticators::{Cached, Htpasswd, StaticTokens},
};

const USAGE: &str = "usage: hello-server --listen ADDR --mode bare|noop-layer|bearer|basic-cached \
                     [--token TOKEN] [--htpasswd FILE]";

#[derive(Debug, Default)]
struct Args {
    listen: Option<SocketAddr>,
    mode: Option<String>,
    token: Option<String>,
    htpasswd: Option<String>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args::default();
    let mut raw = std::env::args().skip(1);
    while let Some(flag) = raw.next() {
        let value = raw
            .next()
            .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))?;
        match flag.as_str() {
            "--listen" => args.listen = Some(value.parse().map_err(|e| format!("--listen: {e}"))?),
            "--mode" => args.mode = Some(value),
            "--token" => args.token = Some(value),
            "--htpasswd" => args.htpasswd = Some(value),
            _ => return Err(format!("unknown flag {flag}\n{USAGE}")),
        }
    }
    Ok(args)
}

async fn hello() -> &'static str {
    "hello"
}

fn app(args: &Args) -> Result<Router, String> {
    let router = Router::new().route("/", any(hello)).fallback(any(hello));
    match args.mode.as_deref() {
        Some("bare") => Ok(router),
        Some("noop-layer") => Ok(router.layer(tower_layer::Identity::new())),
        Some("bearer") => {
            let token = args.token.clone().ok_or("--mode bearer needs --token")?;
            let tokens = StaticTokens::bearer()
                .token(token, Authorization::new("bench", Scheme::Bearer))
                .build()
                .map_err(|e| e.to_string())?;
            Ok(router.layer(AuthLayer::new(tokens)))
        }
        Some("basic-cached") => {
            let path = args
                .htpasswd
                .as_deref()
                .ok_or("--mode basic-cached needs --htpasswd")?;
            let htpasswd = Htpasswd::from_file(path).map_err(|e| e.to_string())?;
            let cached = Cached::builder(htpasswd)
                .ttl(Duration::from_secs(60))
                .build()
                .map_err(|e| e.to_string())?;
            Ok(router.layer(AuthLayer::new(cached)))
        }
        _ => Err(USAGE.to_owned()),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let result = async {
        let args = parse_args()?;
        let app = app(&args)?;
        let listen = args.listen.ok_or(USAGE)?;
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|e| format!("bind {listen}: {e}"))?;
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await
            .map_err(|e| e.to_string())
    }
    .await;
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("hello-server: {error}");
            ExitCode::from(2)
        }
    }
}
