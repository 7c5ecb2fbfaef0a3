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
    AuthLayer, AuthRejection, Authenticator, Authorization, BoxAuthenticator, Challenge,
    Credentials, CredentialsRef, InvalidRealm, OriginCheckLayer, RejectionResponse,
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
    access_log::AccessLogLayer,
    assertion::{self, Asserter, AssertionSecretError},
    config::{Config, ConfigError},
    forwarded::ClientIpKey,
    metrics::{self, Metrics, Observed},
    proxy::{Proxy, ProxyBody, UpstreamRoots},
    server::{self, Listeners},
    sso::{self, Sso, SsoError, SsoLayer, SsoOriginLayer},
    tls::{TlsFilesError, TlsListener},
    tokens::TokensFile,
};

/// A gateway ready to serve: the listeners are bound, the user stores are open.
#[derive(Debug)]
pub struct Gateway {
    /// One a worker thread (`--workers`).
    listeners: Listeners,
    // Boxed: inline, the stack's future would make every connection's state (idle ones too)
    // larger by its size, ~3.7 kB (RSS, 5,000 idle connections), for ~250 instructions a
    // request.
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
        self.listeners.local_addr()
    }

    /// What re-reads the gateway's files on demand (the binary calls it on SIGHUP).
    pub fn reloader(&self) -> Reloader {
        self.reloader.clone()
    }

    /// The address `GET /metrics` is served on (`--metrics-listen`), if any.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_listener.as_ref().map(|(_, addr)| *addr)
    }

    /// Serves on `--workers` threads of their own until `shutdown` resolves, then drains open
    /// connections (up to 30 s); returns once every worker has ended. The files' reloaders
    /// and the metrics listener run on the caller's runtime.
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
            listen = %self.listeners.local_addr(),
            upstream = %self.config.upstream,
            tls = self.tls.is_some(),
            workers = self.listeners.workers(),
            "mlflow-gateway ready"
        );
        server::serve(
            self.listeners,
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
    .with_workers(config.workers)
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
    let exemptions = config.exemptions().map_err(AssembleError::Config)?;
    let sso = config
        .sso
        .as_ref()
        .map(|sso| Sso::new(sso, exemptions.clone()).map(Arc::new))
        .transpose()
        .map_err(AssembleError::Sso)?;
    let (authenticator, mut reloader) = match observed_authenticator(config, &metrics).await {
        // Browser sign-in alone: API requests find no store, and no challenge that would
        // make a browser show a password dialog.
        Err(AssembleError::Config(ConfigError::NoAuthenticator)) if sso.is_some() => {
            (BoxAuthenticator::new(NoApiLogin), Reloader::default())
        }
        other => other?,
    };
    reloader.tls.clone_from(&tls);
    // The proxy's own 401 (a subject that cannot go in the user header) challenges like the
    // layer's.
    proxy = proxy.with_challenges(&config.realm, authenticator.challenges());
    // A cache hit is counted where it is found: by the throttle, which hands the principal to
    // the layer, or by the layer when there is no throttle or the throttle found nothing.
    let observed = Observed::cache_hits(authenticator, Arc::clone(&metrics));
    let layer = AuthLayer::new(observed)
        .with_realm(&config.realm)
        .map_err(AssembleError::Realm)?
        .with_exemptions(exemptions)
        .with_rejection_response(Rejection {
            json: sso.is_some(),
        });
    let throttle = throttle(config, &layer)?;
    let listeners =
        Listeners::bind(config.listen, config.workers).map_err(|source| AssembleError::Bind {
            addr: config.listen,
            source,
        })?;
    let local_addr = listeners.local_addr();
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
    let sso = sso.map(|sso| {
        (
            SsoOriginLayer::new(Arc::clone(&sso)),
            SsoLayer::new(sso, proxy.clone()),
        )
    });
    let service = BoxCloneService::new(edge(access_log, origin_check, sso, throttle, layer, proxy));
    Ok(Gateway {
        listeners,
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
/// check first, so that a cross-site request costs no password hash; with browser sign-in,
/// the `Sso` service, which answers `/_gateway/*` and sends a request with a session
/// straight to the proxy (`direct`, in the `SsoLayer`); then the failed-login throttle (a
/// guesser's request costs no hash either), then authentication, then the proxy.
///
/// The `SsoOrigin` layer in front of the origin check notes whether a write came from the
/// gateway's origin before the check takes a verified `Origin` out.
///
/// ```text
/// AccessLog → [SsoOrigin] → OriginCheck → [Sso] ─┬─ [Throttle] → Auth → ThrottleRelease → Proxy
///                                                └─ direct:                                 Proxy
/// ```
fn edge(
    access_log: AccessLogLayer,
    origin_check: OriginCheckLayer,
    sso: Option<(SsoOriginLayer, SsoLayer<Proxy>)>,
    throttle: Option<ThrottleLayer<Observed<BoxAuthenticator>, ClientIpKey>>,
    auth: AuthLayer<Observed<BoxAuthenticator>, Rejection>,
    proxy: Proxy,
) -> impl tower::Service<
    Request<Incoming>,
    Response = Response<ProxyBody>,
    Error = Infallible,
    Future = impl Send,
> + Clone
+ Send
+ 'static {
    let (sso_origin, sso) = sso.unzip();
    ServiceBuilder::new()
        .layer(access_log)
        .option_layer(sso_origin)
        .layer(origin_check)
        .option_layer(sso)
        .option_layer(throttle)
        .layer(auth)
        // Inside AuthLayer: an accepted request's token comes back before the upstream answers.
        .layer(ThrottleReleaseLayer::new())
        // The proxy's answer carries the request's extensions, the accepted principal among
        // them, for the access log.
        .service(proxy)
}

/// The `AuthLayer`'s rejection bodies: empty as before, or JSON with browser sign-in, for
/// the UI's scripts (`{"error": "unauthenticated", "message": …}`).
#[derive(Clone, Copy, Debug)]
struct Rejection {
    json: bool,
}

impl RejectionResponse<ProxyBody> for Rejection {
    fn response(&self, rejection: &AuthRejection) -> Response<ProxyBody> {
        if self.json {
            return sso::rejection_response(rejection);
        }
        let mut response = Response::new(ProxyBody::default());
        *response.status_mut() = rejection.status();
        response
    }
}

/// The authenticator when browser sign-in is the only way in: it accepts no credentials and
/// has no challenge, so a 401 carries no `WWW-Authenticate` (no password dialog).
#[derive(Clone, Copy, Debug)]
struct NoApiLogin;

impl Authenticator for NoApiLogin {
    type Error = std::convert::Infallible;

    async fn authenticate(&self, _: Credentials) -> Result<Option<Authorization>, Self::Error> {
        Ok(None)
    }

    fn accepts(&self, _: &CredentialsRef<'_>) -> bool {
        false
    }

    fn challenges(&self) -> &[Challenge] {
        &[]
    }
}

/// The failed-login throttle (`--failed-login-limit`, 0: none), keyed by the client address
/// after `--trusted-proxies`. Built for `auth`, it asks the same authenticator, so a
/// credential in the verified cache always passes, and hands the principal over so that the
/// layer does not look the credential up again.
fn throttle(
    config: &Config,
    auth: &AuthLayer<Observed<BoxAuthenticator>, Rejection>,
) -> Result<Option<ThrottleLayer<Observed<BoxAuthenticator>, ClientIpKey>>, AssembleError> {
    if config.failed_login_limit == 0 {
        return Ok(None);
    }
    let key = ClientIpKey::new(&config.trusted_proxies);
    ThrottleLayer::builder_for(auth, key)
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
    /// Browser sign-in cannot be set up (`--oidc-*`, `--session-secret-file`).
    Sso(SsoError),
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
            Self::Sso(error) => error.fmt(f),
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
            Self::Sso(error) => error.source(),
            Self::Bind { source, .. } => Some(source),
            Self::MlflowAuthDbFile { source, .. } => Some(source),
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use tower_mlflow_tests::TempDir;

    use super::*;
    use crate::config::SsoConfig;

    /// A gateway with browser sign-in (issuer and upstream down: neither is needed for a
    /// 401), plus `store` when given, serving in the background.
    async fn serve_with_sso(dir: &TempDir, store: impl FnOnce(&mut Config)) -> SocketAddr {
        let client_secret = dir.path().join("client-secret");
        let session_secret = dir.path().join("session-secret");
        std::fs::write(&client_secret, "gateway-secret\n").unwrap();
        std::fs::write(&session_secret, "a-session-secret-of-at-least-32-bytes\n").unwrap();
        let mut config = Config::new(
            "127.0.0.1:0".parse().unwrap(),
            "http://127.0.0.1:9".parse().unwrap(),
        );
        config.sso = Some(SsoConfig::new(
            "http://127.0.0.1:9",
            "gateway",
            client_secret,
            "http://127.0.0.1:8080/_gateway/callback".parse().unwrap(),
            session_secret,
        ));
        store(&mut config);
        let gateway = assemble(&config).await.unwrap();
        let addr = gateway.local_addr();
        tokio::spawn(gateway.serve(std::future::pending()));
        addr
    }

    /// The raw HTTP/1.1 response to `GET path` with `headers`.
    async fn get(addr: SocketAddr, path: &str, headers: &str) -> String {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n{headers}Connection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await.unwrap();
        String::from_utf8(response).unwrap()
    }

    #[tokio::test]
    async fn with_sso_alone_a_401_is_json_without_a_challenge() {
        let dir = TempDir::new("sso-alone");
        let addr = serve_with_sso(&dir, |_| {}).await;
        for headers in [
            "",
            "Authorization: Basic YWxpY2U6cHc=\r\n",
            "Authorization: Bearer x\r\n",
        ] {
            let response = get(addr, "/api/2.0/mlflow/experiments/search", headers).await;
            assert!(response.starts_with("HTTP/1.1 401"), "{response}");
            let lower = response.to_ascii_lowercase();
            assert!(!lower.contains("www-authenticate"), "{response}");
            assert!(
                lower.contains("content-type: application/json"),
                "{response}"
            );
            assert!(
                response.contains(r#""error":"unauthenticated""#),
                "{response}"
            );
        }
    }

    #[tokio::test]
    async fn with_sso_and_htpasswd_basic_is_still_offered() {
        let dir = TempDir::new("sso-htpasswd");
        let htpasswd = dir.path().join("htpasswd");
        std::fs::write(&htpasswd, "").unwrap();
        let addr = serve_with_sso(&dir, |config| config.htpasswd = Some(htpasswd)).await;
        let response = get(addr, "/api/2.0/mlflow/experiments/search", "").await;
        assert!(response.starts_with("HTTP/1.1 401"), "{response}");
        assert!(
            response.contains(r#"www-authenticate: Basic realm="mlflow""#),
            "{response}"
        );
        assert!(
            response.contains(r#""error":"unauthenticated""#),
            "{response}"
        );
    }

    #[test]
    fn sso_errors_name_the_file_and_keep_the_cause() {
        let dir = TempDir::new("sso-error");
        let mut sso = SsoConfig::new(
            "http://127.0.0.1:9",
            "gateway",
            dir.path().join("missing"),
            "http://127.0.0.1:8080/_gateway/callback".parse().unwrap(),
            dir.path().join("session"),
        );
        let error = AssembleError::Sso(sso::load_secrets(&sso).unwrap_err());
        assert!(
            error
                .to_string()
                .starts_with("cannot read the --oidc-client-secret-file "),
            "{error}"
        );
        assert!(std::error::Error::source(&error).is_some());
        sso.client_secret_file = dir.path().join("client");
        std::fs::write(&sso.client_secret_file, " \n").unwrap();
        let error = sso::load_secrets(&sso).unwrap_err();
        assert!(error.to_string().ends_with("is empty"), "{error}");
        std::fs::write(&sso.client_secret_file, "s3cret").unwrap();
        std::fs::write(&sso.session_secret_file, "too-short-s3cret").unwrap();
        let error = sso::load_secrets(&sso).unwrap_err();
        let chain = error_chain(&error);
        assert!(chain.contains("--session-secret-file"), "{chain}");
        assert!(chain.contains("line 1"), "{chain}");
        assert!(!chain.contains("s3cret"), "{chain}");
    }
}
