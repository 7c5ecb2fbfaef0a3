//! [`Config`] → a bound listener and the tower stack in front of the proxy. Tests and
//! embedding programs call [`assemble`]; the binary only adds flags, logging and signals.

use std::{
    convert::Infallible, fmt, future::Future, net::SocketAddr, path::PathBuf, sync::Arc,
    time::Duration,
};

use http::{Request, Response};
use hyper::body::Incoming;
use tokio::net::TcpListener;
use tower::{ServiceBuilder, util::BoxCloneService};
use tower_mlflow_auth::{
    AuthLayer, Authenticator as _, BoxAuthenticator, InvalidRealm, OriginCheckLayer,
    authenticators::{Htpasswd, MlflowUsers},
    throttle::{ThrottleBuildError, ThrottleLayer, ThrottleReleaseLayer},
};
use tower_mlflow_core::{
    BoxError,
    http::{HttpClient, error_chain},
};

pub(crate) use crate::stores::authenticator;
use crate::stores::observed_authenticator;
use crate::{
    access_log::{AccessLogLayer, RecordPrincipalLayer},
    assertion::{self, Asserter, AssertionSecretError},
    config::{Config, ConfigError},
    forwarded::ClientIpKey,
    metrics::{self, Metrics, Observed},
    proxy::{Proxy, ProxyBody, UpstreamRoots},
    server,
    tls::{TlsFilesError, TlsListener},
    tokens::TokensFile,
};

/// A gateway ready to serve: the listener is bound, the user stores are open.
#[derive(Debug)]
pub struct Gateway {
    listener: TcpListener,
    local_addr: SocketAddr,
    service: BoxCloneService<Request<Incoming>, Response<ProxyBody>, Infallible>,
    config: Config,
    pub(crate) tls: Option<TlsListener>,
    /// With delegation: the client for the start-up check that MLflow refuses unsigned requests.
    upstream_check: Option<HttpClient>,
    metrics: Arc<Metrics>,
    /// `--metrics-listen`, bound.
    metrics_listener: Option<(TcpListener, SocketAddr)>,
    reloader: Reloader,
}

/// Re-reads every file the gateway serves from at once (SIGHUP): the htpasswd file, the
/// tokens file, the TLS pair and MLflow's user database. Each keeps its old contents on an
/// error, as when its own poll finds a broken file.
#[derive(Clone, Debug, Default)]
pub struct Reloader {
    pub(crate) htpasswd: Option<Htpasswd>,
    pub(crate) tokens: Option<TokensFile>,
    tls: Option<TlsListener>,
    pub(crate) mlflow_users: Option<MlflowUsers>,
}

impl Reloader {
    /// Reloads everything; returns what was reloaded and the errors (one line for the log).
    pub async fn reload_all(&self) -> (Vec<&'static str>, Vec<String>) {
        let mut reloaded = Vec::new();
        let mut errors = Vec::new();
        let mut outcome = |what, result: Result<(), String>| match result {
            Ok(()) => reloaded.push(what),
            Err(error) => errors.push(format!("{what}: {error}")),
        };
        if let Some(htpasswd) = &self.htpasswd {
            let result = htpasswd.refresh().await.map_err(|e| error_chain(&e));
            outcome("htpasswd", result);
        }
        if let Some(tokens) = &self.tokens {
            let result = tokens.reload().map(drop).map_err(|e| error_chain(&e));
            outcome("tokens", result);
        }
        if let Some(tls) = &self.tls {
            outcome("tls", tls.reload().await.map_err(|e| error_chain(&e)));
        }
        if let Some(users) = &self.mlflow_users {
            let result = users.refresh().await.map(drop).map_err(|e| error_chain(&e));
            outcome("mlflow-auth-db", result);
        }
        (reloaded, errors)
    }
}

impl Gateway {
    /// The address the listener is bound to (the port chosen for `:0`).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// What re-reads the gateway's files on demand (the binary calls it on SIGHUP).
    pub fn reloader(&self) -> Reloader {
        self.reloader.clone()
    }

    /// The address `GET /metrics` is served on (`--metrics-listen`), if any.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_listener.as_ref().map(|(_, addr)| *addr)
    }

    /// Serves until `shutdown` resolves, then drains open connections (up to 30 s).
    pub async fn serve(self, shutdown: impl Future<Output = ()>) {
        let follower = self.tls.clone().map(|tls| tokio::spawn(tls.follow_files()));
        let metrics_server = self.metrics_listener.map(|(listener, addr)| {
            tracing::info!(listen = %addr, "serving metrics at /metrics");
            tokio::spawn(metrics::serve(listener, Arc::clone(&self.metrics)))
        });
        if let Some(client) = self.upstream_check {
            tokio::spawn(assertion::check_upstream_refuses_unsigned(
                client,
                self.config.upstream.clone(),
            ));
        }
        tracing::info!(
            listen = %self.local_addr,
            upstream = %self.config.upstream,
            tls = self.tls.is_some(),
            "mlflow-gateway ready"
        );
        server::serve(
            self.listener,
            self.service,
            self.config.limits,
            self.tls,
            self.metrics,
            shutdown,
        )
        .await;
        if let Some(follower) = follower {
            follower.abort();
        }
        if let Some(metrics_server) = metrics_server {
            metrics_server.abort();
        }
    }
}

/// Validates `config`, opens the user stores, loads the certificate and binds the listener.
pub async fn assemble(config: &Config) -> Result<Gateway, AssembleError> {
    config.validate().map_err(AssembleError::Config)?;
    let tls = config
        .tls
        .as_ref()
        .map(TlsListener::new)
        .transpose()
        .map_err(AssembleError::Tls)?;
    let mut proxy = Proxy::new(
        config.upstream.clone(),
        config.user_header.clone(),
        config.forward_authorization,
    )
    .with_timeout(config.limits.upstream_timeout)
    .with_tls_listener(tls.is_some())
    .with_trusted_proxies(config.trusted_proxies.clone());
    if let Some(roots) = upstream_roots(config)? {
        proxy = proxy.with_upstream_roots(roots);
    }
    let upstream_check = match &config.mlflow_assertion_secret_file {
        Some(path) => {
            let asserter = Asserter::from_file(path).map_err(AssembleError::AssertionSecret)?;
            proxy = proxy.with_assertion(asserter, config.mlflow_admin_group.is_some());
            Some(upstream_check_client(config)?)
        }
        None => None,
    };
    let metrics = Arc::new(Metrics::new(&metrics::AUTHENTICATORS));
    proxy = proxy.with_metrics(Arc::clone(&metrics));
    let (authenticator, mut reloader) = observed_authenticator(config, &metrics).await?;
    reloader.tls.clone_from(&tls);
    let throttle = throttle(config, &authenticator)?;
    // The proxy's own 401 (a subject that cannot go in the user header) challenges like the
    // layer's.
    proxy = proxy.with_challenges(&config.realm, authenticator.challenges());
    // Only the AuthLayer's copy counts cache hits: the throttle asks the cache too.
    let observed = Observed::cache_hits(authenticator, Arc::clone(&metrics));
    let layer = AuthLayer::new(BoxAuthenticator::new(observed))
        .with_realm(&config.realm)
        .map_err(AssembleError::Realm)?
        .with_exemptions(config.exemptions().map_err(AssembleError::Config)?);
    let listener =
        TcpListener::bind(config.listen)
            .await
            .map_err(|source| AssembleError::Bind {
                addr: config.listen,
                source,
            })?;
    let local_addr = listener
        .local_addr()
        .map_err(|source| AssembleError::Bind {
            addr: config.listen,
            source,
        })?;
    let origin_check = config
        .origin_check(local_addr)
        .map_err(AssembleError::Config)?;
    let metrics_listener = match config.metrics_listen {
        Some(addr) => Some(
            metrics::bind(addr)
                .await
                .map_err(|source| AssembleError::Bind { addr, source })?,
        ),
        None => None,
    };
    let access_log = AccessLogLayer::new(&config.trusted_proxies, Arc::clone(&metrics));
    let service = BoxCloneService::new(edge(access_log, origin_check, throttle, layer, proxy));
    Ok(Gateway {
        listener,
        local_addr,
        service,
        config: config.clone(),
        tls,
        upstream_check,
        reloader,
        metrics,
        metrics_listener,
    })
}

/// The `--upstream-ca` bundle, read and parsed.
pub(crate) fn upstream_roots(config: &Config) -> Result<Option<UpstreamRoots>, AssembleError> {
    let Some(path) = &config.upstream_ca else {
        return Ok(None);
    };
    let upstream_ca = |source: BoxError| AssembleError::UpstreamCa {
        path: path.clone(),
        source,
    };
    let pem = std::fs::read(path).map_err(|e| upstream_ca(e.into()))?;
    let roots = UpstreamRoots::from_pem(&pem).map_err(|e| upstream_ca(e.into()))?;
    Ok(Some(roots))
}

/// A client that trusts what the proxy trusts: `--upstream-ca` instead of the public roots.
fn upstream_check_client(config: &Config) -> Result<HttpClient, AssembleError> {
    let mut builder = HttpClient::builder().timeout(Duration::from_secs(10));
    if let Some(path) = &config.upstream_ca {
        let upstream_ca = |source: BoxError| AssembleError::UpstreamCa {
            path: path.clone(),
            source,
        };
        let pem = std::fs::read(path).map_err(|e| upstream_ca(e.into()))?;
        builder = builder.ca_pem(pem).public_roots(false);
        return builder.build().map_err(|e| upstream_ca(e.into()));
    }
    builder
        .build()
        .map_err(|e| AssembleError::UpstreamCheck(e.into()))
}

/// The tower stack: the access log around everything, so it sees every answer; the origin
/// check first, so that a cross-site request costs no password hash, then the failed-login
/// throttle (a guesser's request costs none either), then authentication, then the proxy.
fn edge(
    access_log: AccessLogLayer,
    origin_check: OriginCheckLayer,
    throttle: Option<ThrottleLayer<BoxAuthenticator, ClientIpKey>>,
    auth: AuthLayer<BoxAuthenticator>,
    proxy: Proxy,
) -> impl tower::Service<
    Request<Incoming>,
    Response = Response<ProxyBody>,
    Error = Infallible,
    Future = impl Send,
> + Clone
+ Send
+ 'static {
    ServiceBuilder::new()
        .layer(access_log)
        .map_response(|response: Response<EdgeBody>| response.map(|body| body.0))
        .layer(origin_check)
        .map_response(|response: Response<ProxyBody>| response.map(EdgeBody))
        .option_layer(throttle)
        .layer(auth)
        // Inside AuthLayer: an accepted request's token comes back before the upstream answers.
        .layer(ThrottleReleaseLayer::new())
        // Inside AuthLayer: the accepted principal, for the access log.
        .layer(RecordPrincipalLayer)
        .service(proxy)
}

/// [`ProxyBody`] with the `From<&'static str>` that the origin check renders its 403 with.
struct EdgeBody(ProxyBody);

impl From<&'static str> for EdgeBody {
    fn from(text: &'static str) -> Self {
        use http_body_util::BodyExt;
        Self(
            http_body_util::Full::from(text)
                .map_err(|never| match never {})
                .boxed(),
        )
    }
}

/// The failed-login throttle (`--failed-login-limit`, 0: none), keyed by the client address
/// after `--trusted-proxies`. It shares `authenticator` with the AuthLayer, so a credential in
/// the verified cache always passes.
fn throttle(
    config: &Config,
    authenticator: &BoxAuthenticator,
) -> Result<Option<ThrottleLayer<BoxAuthenticator, ClientIpKey>>, AssembleError> {
    if config.failed_login_limit == 0 {
        return Ok(None);
    }
    let key = ClientIpKey::new(&config.trusted_proxies);
    ThrottleLayer::builder(authenticator.clone(), key)
        .per_minute(config.failed_login_limit)
        .build()
        .map(Some)
        .map_err(AssembleError::Throttle)
}

/// A kind of user store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreKind {
    /// `--htpasswd`.
    Htpasswd,
    /// `--mlflow-auth-db`.
    MlflowUsers,
    /// `--jwt-issuer`.
    Jwt,
    /// `--tokens-file`.
    Tokens,
}

/// Why a gateway could not be assembled.
#[derive(Debug)]
#[non_exhaustive]
pub enum AssembleError {
    /// The configuration is invalid.
    Config(ConfigError),
    /// A user store could not be opened.
    Store {
        /// Which kind.
        what: StoreKind,
        /// Its file or URL.
        name: String,
        /// Why.
        source: BoxError,
    },
    /// The verified-credential cache rejected its settings (`--cache-ttl`).
    Cache(BoxError),
    /// `--realm` cannot go in a challenge.
    Realm(InvalidRealm),
    /// The listener's certificate or key cannot be used.
    Tls(TlsFilesError),
    /// `--upstream-ca` cannot be used.
    UpstreamCa {
        /// The bundle.
        path: PathBuf,
        /// Why.
        source: BoxError,
    },
    /// `--mlflow-auth-db-password-file` or `--mlflow-auth-db-ca-file` cannot be read.
    MlflowAuthDbFile {
        /// The flag.
        flag: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// `--jwt-ca-file` cannot be read.
    JwtCa {
        /// The bundle.
        path: PathBuf,
        /// Why.
        source: BoxError,
    },
    /// `--mlflow-assertion-secret-file` cannot be used.
    AssertionSecret(AssertionSecretError),
    /// The client of the start-up check (does the upstream refuse unsigned requests?)
    /// cannot be built.
    UpstreamCheck(BoxError),
    /// `--failed-login-limit` cannot be used.
    Throttle(ThrottleBuildError),
    /// The listen address cannot be bound.
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

impl fmt::Display for AssembleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Config(error) => error.fmt(f),
            Self::Store { what, name, .. } => {
                let what = match what {
                    StoreKind::Htpasswd => "the htpasswd file",
                    StoreKind::MlflowUsers => "the MLflow user database",
                    StoreKind::Jwt => "the JWT issuer",
                    StoreKind::Tokens => "the tokens file",
                };
                write!(f, "cannot use {what} {name}")
            }
            Self::Cache(_) => f.write_str("invalid --cache-ttl"),
            Self::Realm(error) => error.fmt(f),
            Self::Tls(error) => error.fmt(f),
            Self::UpstreamCa { path, .. } => {
                write!(f, "cannot use the upstream CA bundle {}", path.display())
            }
            Self::JwtCa { path, .. } => {
                write!(f, "cannot read the --jwt-ca-file {}", path.display())
            }
            Self::MlflowAuthDbFile { flag, path, .. } => {
                write!(f, "cannot read the {flag} {}", path.display())
            }
            Self::AssertionSecret(error) => error.fmt(f),
            Self::UpstreamCheck(_) => f.write_str("cannot build the upstream check's client"),
            Self::Throttle(_) => f.write_str("invalid --failed-login-limit"),
            Self::Bind { addr, .. } => write!(f, "cannot listen on {addr}"),
        }
    }
}

impl std::error::Error for AssembleError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Config(error) => error.source(),
            Self::Store { source, .. }
            | Self::Cache(source)
            | Self::UpstreamCa { source, .. }
            | Self::JwtCa { source, .. }
            | Self::UpstreamCheck(source) => Some(&**source),
            Self::Realm(error) => error.source(),
            Self::Tls(error) => error.source(),
            Self::AssertionSecret(error) => error.source(),
            Self::Throttle(error) => Some(error),
            Self::Bind { source, .. } => Some(source),
            Self::MlflowAuthDbFile { source, .. } => Some(source),
        }
    }
}
