//! The axum hello service of `scripts/bench-http`: answers `hello` on every path, bare or
//! behind `AuthLayer`.
//!
//! ```text
//! hello-server --listen 127.0.0.1:9000 --mode bare
//! hello-server --listen 127.0.0.1:9003 --mode noop-layer
//! hello-server --listen 127.0.0.1:9001 --mode bearer --token TOKEN
//! hello-server --listen 127.0.0.1:9002 --mode basic-cached --htpasswd FILE
//! hello-server --listen 127.0.0.1:9004 --mode bearer --token TOKEN --compose around-router
//! ```
//!
//! `bearer` checks `Authorization: Bearer TOKEN` with `StaticTokens`; `basic-cached` checks
//! Basic credentials against an htpasswd file behind `Cached` (60 s), as `mlflow-gateway`
//! does. `noop-layer` puts a layer that does nothing (`tower_layer::Identity`) on the same
//! router with `Router::layer`: what axum's per-route layering costs with any middleware, the
//! floor under `AuthLayer`'s rows. Bare mode is also the upstream of the gateway-vs-nginx
//! comparison.
//!
//! `--compose` says how a layer goes on: `router-layer` (the default) with axum's
//! `Router::layer`, which wraps each route (and the fallback) in its own boxed service, so
//! that any layer, even the no-op one, adds a clone of a box and two futures to a request;
//! `around-router` with tower's `Layer::layer` around the whole `Router`, as a
//! `ServiceBuilder` or `tonic` stack composes it: the layer runs before routing and adds
//! only itself. With `--mode bare`, both are the plain router.

use std::{convert::Infallible, io, net::SocketAddr, process::ExitCode, time::Duration};

use axum::{
    Router, ServiceExt as _,
    body::Body,
    extract::Request,
    response::{IntoResponse, Response},
    routing::{Route, any},
};
use tokio::net::TcpListener;
use tower_layer::Layer;
use tower_mlflow_auth::{
    AuthLayer, Authorization, Scheme,
    authenticators::{Cached, Htpasswd, StaticTokens},
};
use tower_service::Service;

const USAGE: &str = "usage: hello-server --listen ADDR --mode bare|noop-layer|bearer|basic-cached \
                     [--token TOKEN] [--htpasswd FILE] [--compose router-layer|around-router]";

#[derive(Debug, Default)]
struct Args {
    listen: Option<SocketAddr>,
    mode: Option<String>,
    token: Option<String>,
    htpasswd: Option<String>,
    compose: Option<String>,
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
            "--compose" => args.compose = Some(value),
            _ => return Err(format!("unknown flag {flag}\n{USAGE}")),
        }
    }
    Ok(args)
}

async fn hello() -> &'static str {
    "hello"
}

/// How a layer goes onto the router (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Compose {
    RouterLayer,
    AroundRouter,
}

impl Compose {
    fn parse(value: Option<&str>) -> Result<Self, String> {
        match value {
            None | Some("router-layer") => Ok(Self::RouterLayer),
            Some("around-router") => Ok(Self::AroundRouter),
            Some(other) => Err(format!(
                "--compose: expected router-layer or around-router, got {other:?}"
            )),
        }
    }
}

/// Serves `router` with `layer` on, composed as `how` says, until Ctrl-C. Generic rather than
/// boxed: a boxed service would be cloned into a new box for every request.
async fn serve<L>(listener: TcpListener, router: Router, layer: L, how: Compose) -> io::Result<()>
where
    L: Layer<Route> + Layer<Router> + Clone + Send + Sync + 'static,
    <L as Layer<Route>>::Service:
        Service<Request<Body>, Error = Infallible> + Clone + Send + Sync + 'static,
    <<L as Layer<Route>>::Service as Service<Request<Body>>>::Response: IntoResponse + 'static,
    <<L as Layer<Route>>::Service as Service<Request<Body>>>::Future: Send + 'static,
    <L as Layer<Router>>::Service:
        Service<Request<Body>, Response = Response, Error = Infallible> + Clone + Send + 'static,
    <<L as Layer<Router>>::Service as Service<Request<Body>>>::Future: Send + 'static,
{
    match how {
        Compose::RouterLayer => {
            axum::serve(listener, router.layer(layer))
                .with_graceful_shutdown(stopped())
                .await
        }
        Compose::AroundRouter => {
            // `with_state` turns the handlers into routes once: a `Router` called as a service
            // before it does so on every request (`axum::serve(listener, router)` does it once a
            // connection).
            let service = layer.layer(router.with_state(()));
            axum::serve(listener, service.into_make_service())
                .with_graceful_shutdown(stopped())
                .await
        }
    }
}

async fn stopped() {
    let _ = tokio::signal::ctrl_c().await;
}

async fn run(args: Args) -> Result<(), String> {
    let router = Router::new().route("/", any(hello)).fallback(any(hello));
    let how = Compose::parse(args.compose.as_deref())?;
    let listen = args.listen.ok_or(USAGE)?;
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|e| format!("bind {listen}: {e}"))?;
    let served = match args.mode.as_deref() {
        Some("bare") => {
            axum::serve(listener, router)
                .with_graceful_shutdown(stopped())
                .await
        }
        Some("noop-layer") => serve(listener, router, tower_layer::Identity::new(), how).await,
        Some("bearer") => {
            let token = args.token.clone().ok_or("--mode bearer needs --token")?;
            let tokens = StaticTokens::bearer()
                .token(token, Authorization::new("bench", Scheme::Bearer))
                .build()
                .map_err(|e| e.to_string())?;
            serve(listener, router, AuthLayer::new(tokens), how).await
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
            serve(listener, router, AuthLayer::new(cached), how).await
        }
        _ => return Err(USAGE.to_owned()),
    };
    served.map_err(|e| e.to_string())
}

#[tokio::main]
async fn main() -> ExitCode {
    let result = match parse_args() {
        Ok(args) => run(args).await,
        Err(error) => Err(error),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("hello-server: {error}");
            ExitCode::from(2)
        }
    }
}
