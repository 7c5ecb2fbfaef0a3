//! `mlflow-gateway`: authentication in front of an existing `mlflow server`.
//!
//! ```text
//! mlflow-gateway --listen 127.0.0.1:8080 --upstream http://127.0.0.1:5000 \
//!     --htpasswd /etc/mlflow/htpasswd --mlflow-default-exemptions
//! ```
//!
//! At least one authenticator (`--htpasswd`, `--mlflow-auth-db`, `--jwt-issuer`) is
//! required; several are tried in that order. Run with `--help` for every flag.

use std::{net::SocketAddr, path::PathBuf, process::ExitCode, time::Duration};

use clap::Parser;
use http::HeaderName;
use mlflow_gateway::{
    proxy::{Proxy, Upstream},
    server,
};
use tokio::net::TcpListener;
use tower::ServiceBuilder;
use tower_mlflow_auth::{
    AuthLayer, BoxAuthenticator, Exemptions,
    authenticators::{Cached, Htpasswd, Jwt, MlflowUsers},
    first_of,
};

/// An authenticating reverse proxy for one MLflow tracking server.
#[derive(Debug, Parser)]
#[command(name = "mlflow-gateway", version, about, long_about = None)]
struct Args {
    /// Address to listen on, for example 127.0.0.1:8080 or 0.0.0.0:80.
    #[arg(long, value_name = "ADDR")]
    listen: SocketAddr,

    /// The MLflow server to protect, for example http://127.0.0.1:5000 (http only; a path
    /// such as /mlflow is prepended to every request path).
    #[arg(long, value_name = "URL")]
    upstream: Upstream,

    /// Apache htpasswd file (bcrypt, APR1, SHA-256/512-crypt, {SHA}); reloaded when it changes.
    #[arg(long, value_name = "FILE")]
    htpasswd: Option<PathBuf>,

    /// MLflow's own user database (the SQLite basic_auth.db of `mlflow server --app-name
    /// basic-auth`), opened read-only; changes are picked up within --users-refresh seconds.
    #[arg(long = "mlflow-auth-db", value_name = "PATH")]
    mlflow_auth_db: Option<PathBuf>,

    /// Accept bearer JWTs from this OIDC issuer (keys from its discovery document).
    #[arg(long, value_name = "URL", requires = "jwt_audience")]
    jwt_issuer: Option<String>,

    /// The audience JWTs must carry (with --jwt-issuer).
    #[arg(long, value_name = "AUD", requires = "jwt_issuer")]
    jwt_audience: Option<String>,

    /// Realm of the WWW-Authenticate challenge.
    #[arg(long, value_name = "NAME", default_value = "mlflow")]
    realm: String,

    /// A path that needs no authentication (exact match, any method); repeatable.
    #[arg(long, value_name = "PATH")]
    exempt: Vec<String>,

    /// A path prefix that needs no authentication (the prefix and everything below it,
    /// segment-wise); repeatable.
    #[arg(long, value_name = "PREFIX")]
    exempt_prefix: Vec<String>,

    /// Leave open what MLflow's own basic-auth leaves open (/health, /favicon.ico, /static,
    /// /static-files, server-info), tightened to exact paths and segment prefixes, GET/HEAD.
    #[arg(long)]
    mlflow_default_exemptions: bool,

    /// Header that carries the authenticated username to the upstream. Any copy sent by the
    /// client is always removed.
    #[arg(long, value_name = "NAME", default_value = "X-Forwarded-User")]
    user_header: HeaderName,

    /// Pass the client's Authorization header to the upstream (removed by default).
    #[arg(long)]
    forward_authorization: bool,

    /// Seconds a verified password stays cached (0 disables the cache). Wrong passwords are
    /// never cached.
    #[arg(long, value_name = "SECONDS", default_value_t = 60)]
    cache_ttl: u64,

    /// Seconds between re-reads of --mlflow-auth-db.
    #[arg(long, value_name = "SECONDS", default_value_t = 30)]
    users_refresh: u64,
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("mlflow-gateway: {error}");
            ExitCode::from(2)
        }
    }
}

async fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let authenticator = authenticator(&args).await?;
    let mut exemptions = if args.mlflow_default_exemptions {
        Exemptions::mlflow_defaults()
    } else {
        Exemptions::new()
    };
    for path in &args.exempt {
        exemptions = exemptions.exact(path)?;
    }
    for prefix in &args.exempt_prefix {
        exemptions = exemptions.prefix(prefix)?;
    }
    let layer = AuthLayer::new(authenticator)
        .with_realm(&args.realm)?
        .with_exemptions(exemptions);
    let proxy = Proxy::new(
        args.upstream.clone(),
        args.user_header.clone(),
        args.forward_authorization,
    );
    let service = ServiceBuilder::new().layer(layer).service(proxy);

    let listener = TcpListener::bind(args.listen).await?;
    tracing::info!(listen = %listener.local_addr()?, upstream = %args.upstream, "mlflow-gateway ready");
    server::serve(listener, service, shutdown_signal()).await;
    Ok(())
}

/// The authenticators the flags ask for, tried in order: htpasswd, MLflow's user database,
/// JWT. Starting without any is an error, never an open proxy.
async fn authenticator(args: &Args) -> Result<BoxAuthenticator, Box<dyn std::error::Error>> {
    let cache_ttl = Duration::from_secs(args.cache_ttl);
    let cached = |a: BoxAuthenticator| -> Result<BoxAuthenticator, Box<dyn std::error::Error>> {
        if cache_ttl.is_zero() {
            Ok(a)
        } else {
            Ok(BoxAuthenticator::new(
                Cached::builder(a).ttl(cache_ttl).build()?,
            ))
        }
    };
    let mut chain: Vec<BoxAuthenticator> = Vec::new();
    if let Some(path) = &args.htpasswd {
        let htpasswd = Htpasswd::from_file(path)?;
        chain.push(cached(BoxAuthenticator::new(htpasswd))?);
    }
    if let Some(path) = &args.mlflow_auth_db {
        let users = MlflowUsers::builder()
            .refresh_interval(Duration::from_secs(args.users_refresh))
            .sqlite(path)
            .build()?;
        users.refresh().await?;
        chain.push(cached(BoxAuthenticator::new(users))?);
    }
    if let (Some(issuer), Some(audience)) = (&args.jwt_issuer, &args.jwt_audience) {
        let jwt = Jwt::builder().issuer(issuer).audience(audience).build()?;
        // Fail fast on a wrong issuer URL, but start anyway if the issuer is merely down:
        // keys are fetched again on the first token.
        if let Err(error) = jwt.refresh().await {
            tracing::warn!(%error, "cannot fetch the issuer's keys yet");
        }
        chain.push(BoxAuthenticator::new(jwt));
    }
    chain
        .into_iter()
        .reduce(|chain, next| BoxAuthenticator::new(first_of(chain, next)))
        .ok_or_else(|| {
            "no authenticator configured: give --htpasswd, --mlflow-auth-db or --jwt-issuer \
             (the gateway never runs as an open proxy)"
                .into()
        })
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
