//! `proxy`: a local HTTP proxy for the one tracking server in `MLFLOW_TRACKING_URI`, adding
//! the credential to every request through `SecretHeaderLayer`, so that any MLflow client
//! pointed at it needs no credential of its own.
//!
//! - **Where requests go**: every request, whatever its `Host` header or absolute-form
//!   authority, goes to the tracking URI, its path appended to the URI's base path
//!   (`https://h/mlflow` + `/api/2.0/…`). Hop-by-hop headers stay on their hop; `CONNECT`
//!   is refused. The tracking URI must pass the allowlist, as for `exec`.
//! - **The credential**: a `CachedSecret` with the configured TTL (refresh ahead of
//!   expiry, stale-if-error); on a `401` the secret is fetched again and the request
//!   replayed once (`recover_unauthorized`, at most one forced fetch per
//!   [`RECOVERY_INTERVAL`], one a second while the store still returns the refused secret).
//!   It is fetched once before the proxy listens, so a broken configuration fails at once.
//! - **Streaming and replay**: a replay needs the body twice, so request bodies of a known
//!   length up to `--max-replay-body` (1 MiB by default: every MLflow REST call, small
//!   artifacts) are read into memory first; longer or chunked bodies (large artifact
//!   uploads) stream through untouched and a `401` on them is returned as it came (the next
//!   small request picks up the rotated secret). Response bodies always stream.
//! - **Listening**: loopback only, unless `--listen` names another address and
//!   `--allow-remote` is given. The first line on stdout is `listening on http://ADDR`.
//! - **Stopping**: SIGTERM or SIGINT stops accepting, lets the requests under way finish
//!   (30 s at most) and exits 0.
//! - **Upstream TLS**: rustls with aws-lc-rs, verified against the webpki roots or the
//!   `--upstream-ca` bundle (default `MLFLOW_TRACKING_SERVER_CERT_PATH`, the MLflow
//!   client's own variable). No timeout beyond connecting: the MLflow client keeps its own.
//!
//! Failures are answered in MLflow's error shape (`{"error_code", "message"}`): 503 when no
//! credential is usable, 502 when the tracking server cannot be reached. Nothing printed
//! contains the secret.

mod forward;
mod serve;
mod upstream;

use std::{io::Write as _, net::SocketAddr, path::PathBuf, process::ExitCode, time::Duration};

use bytes::Bytes;
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use tower_layer::Layer as _;
use tower_mlflow_core::http::error_chain;
use tower_mlflow_secrets::{CachedSecret, DisallowedHost, SecretHeaderLayer, config::Config};

use self::{
    forward::{CopyRequest, Forward, copy_if_held},
    serve::{StopSignals, serve},
    upstream::Upstream,
};
use crate::cli::ProxyArgs;

/// A request body on its way to the tracking server: held in memory (replayable) or
/// streamed.
type UpstreamBody = Either<Full<Bytes>, Incoming>;
/// A response body on its way to the client: the tracking server's, or the proxy's own.
type ProxyBody = Either<Incoming, Full<Bytes>>;

/// At most one forced fetch per this interval when a fetched secret is refused as well.
const RECOVERY_INTERVAL: Duration = Duration::from_secs(10);

/// The variable the MLflow client reads for a private CA bundle.
const CERT_PATH_VAR: &str = "MLFLOW_TRACKING_SERVER_CERT_PATH";

/// Runs the proxy until a stop signal: exit 0, 1 when the secret cannot be fetched or the
/// address not bound, 2 for a bad option or configuration.
#[allow(clippy::print_stderr, clippy::print_stdout)]
pub(crate) async fn run(config: &Config, args: &ProxyArgs) -> Result<ExitCode, ExitCode> {
    check_listen(args.listen, args.allow_remote)?;
    let tracking_uri = crate::exec::check_tracking_uri("proxy", config)?;
    let upstream = Upstream::from_tracking_uri(&tracking_uri).map_err(|reason| {
        eprintln!("proxy: MLFLOW_TRACKING_URI cannot be proxied: {reason}");
        ExitCode::from(2)
    })?;
    let client = Upstream::client(upstream_ca(args)?.as_deref()).map_err(|e| {
        eprintln!("proxy: the CA bundle for the tracking server: {e}");
        ExitCode::from(2)
    })?;
    let layer = layer(config).await?;
    if let Err(e) = layer.secret().get().await {
        eprintln!("fetch: FAILED: {}", error_chain(&e));
        return Err(ExitCode::from(1));
    }
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| {
            eprintln!("proxy: cannot listen on {}: {e}", args.listen);
            ExitCode::from(1)
        })?;
    let stop = StopSignals::listen().map_err(|e| {
        eprintln!("proxy: cannot listen for signals: {e}");
        ExitCode::from(1)
    })?;
    let local = listener.local_addr().map_err(|e| {
        eprintln!("proxy: {e}");
        ExitCode::from(1)
    })?;
    let mut stdout = std::io::stdout().lock();
    // The line a script waits for; nothing else goes to stdout.
    if writeln!(stdout, "listening on http://{local}")
        .and_then(|()| stdout.flush())
        .is_err()
    {
        return Err(ExitCode::from(1));
    }
    drop(stdout);
    eprintln!(
        "proxy: forwarding to {upstream} with the credential from {}",
        provider_names(config)
    );
    let forward = Forward::new(upstream, layer.layer(client), args.max_replay_body);
    serve(listener, forward, stop).await;
    Ok(ExitCode::SUCCESS)
}

/// Refuses (exit 2) an address off loopback unless `--allow-remote` says so.
#[allow(clippy::print_stderr)]
fn check_listen(listen: SocketAddr, allow_remote: bool) -> Result<(), ExitCode> {
    if listen.ip().is_loopback() || allow_remote {
        return Ok(());
    }
    eprintln!(
        "proxy: --listen {listen} is not a loopback address: whoever reaches it gets the \
         credential's access to the tracking server; add --allow-remote if that is meant"
    );
    Err(ExitCode::from(2))
}

/// The CA bundle: `--upstream-ca`, else `MLFLOW_TRACKING_SERVER_CERT_PATH`, else none.
#[allow(clippy::print_stderr)]
fn upstream_ca(args: &ProxyArgs) -> Result<Option<Vec<u8>>, ExitCode> {
    let path = args
        .upstream_ca
        .clone()
        .or_else(|| std::env::var_os(CERT_PATH_VAR).map(PathBuf::from))
        .filter(|path| !path.as_os_str().is_empty());
    let Some(path) = path else {
        return Ok(None);
    };
    std::fs::read(&path).map(Some).map_err(|e| {
        eprintln!("proxy: cannot read the CA bundle {}: {e}", path.display());
        ExitCode::from(2)
    })
}

/// The configured layer with 401 recovery; only the tracking server is ever called, so a
/// request elsewhere (none can be made) would fail rather than go out bare.
#[allow(clippy::print_stderr)]
async fn layer(config: &Config) -> Result<SecretHeaderLayer<CopyRequest>, ExitCode> {
    let config_error = |e: &dyn std::error::Error| {
        eprintln!("configuration error: {}", error_chain(e));
        ExitCode::from(2)
    };
    let source = config.source().await.map_err(|e| config_error(&e))?;
    let secret = CachedSecret::builder(source)
        .ttl(config.ttl())
        .build()
        .map_err(|e| config_error(&e))?;
    SecretHeaderLayer::builder(secret)
        .template(config.template().clone())
        .allowlist(config.allowlist().clone())
        .on_disallowed_host(DisallowedHost::Fail)
        .recover_unauthorized_with(RECOVERY_INTERVAL, copy_if_held as CopyRequest)
        .build()
        .map_err(|e| config_error(&e))
}

fn provider_names(config: &Config) -> String {
    let names: Vec<&str> = config.providers().iter().map(|p| p.slug()).collect();
    names.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_without_allow_remote() {
        let addr = |s: &str| s.parse::<SocketAddr>().unwrap();
        assert!(check_listen(addr("127.0.0.1:0"), false).is_ok());
        assert!(check_listen(addr("[::1]:5001"), false).is_ok());
        assert!(check_listen(addr("0.0.0.0:5001"), false).is_err());
        assert!(check_listen(addr("192.168.1.5:5001"), false).is_err());
        assert!(check_listen(addr("0.0.0.0:5001"), true).is_ok());
    }
}
