//! The validated configuration of one gateway: what the flags (or an embedding program) ask
//! for, checked before anything is opened, so a mistake is reported with the input it concerns.

use std::{fmt, net::SocketAddr, path::PathBuf, time::Duration};

use http::HeaderName;
use tower_mlflow_auth::{
    ExemptionError, Exemptions, OriginCheckBuildError, OriginCheckLayer,
    authenticators::{MlflowUsers, MlflowUsersBuildError},
};

use crate::logging::LogFormat;
use crate::proxy::TrustedProxy;
use crate::proxy::Upstream;

mod error;
mod mlflow_auth_db;
mod sso;

pub use self::error::ConfigError;
pub(crate) use self::mlflow_auth_db::MlflowAuthDb;
pub use self::sso::SsoConfig;
pub(crate) use self::sso::shown_url;

/// Everything [`assemble`](crate::assemble) needs. Build it with [`Config::new`] and the
/// public fields, then [`validate`](Config::validate) (done by `assemble` as well).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Config {
    /// The address to listen on.
    pub listen: SocketAddr,
    /// The MLflow server behind the gateway.
    pub upstream: Upstream,
    /// Trust anchors for an `https` upstream, instead of the webpki roots.
    pub upstream_ca: Option<PathBuf>,
    /// Serve HTTPS with this certificate and key instead of plain HTTP.
    pub tls: Option<TlsFiles>,
    /// The URLs people open the UI at (`--public-url`); state-changing requests with browser
    /// credentials must come from their origins. Empty: `http(s)://<listen address>`.
    pub public_urls: Vec<String>,
    /// An Apache htpasswd file.
    pub htpasswd: Option<PathBuf>,
    /// Static API tokens, `user:sha256-hex` a line (`--tokens-file`).
    pub tokens_file: Option<PathBuf>,
    /// MLflow's user database: its SQLite `basic_auth.db` or a PostgreSQL URL.
    pub mlflow_auth_db: Option<MlflowAuthDb>,
    /// The file holding the PostgreSQL password of a `postgresql://` `mlflow_auth_db`.
    pub mlflow_auth_db_password_file: Option<PathBuf>,
    /// Extra CAs for a `postgresql://` `mlflow_auth_db`'s certificate (PEM bundle).
    pub mlflow_auth_db_ca_file: Option<PathBuf>,
    /// How often the MLflow user database is re-read.
    pub users_refresh: Duration,
    /// Bearer JWTs from an OIDC issuer.
    pub jwt: Option<JwtIssuer>,
    /// Browser sign-in with an OpenID Connect issuer and a session cookie (`--oidc-issuer`
    /// and its companions). `None`: no browser sign-in.
    pub sso: Option<SsoConfig>,
    /// How long a verified password stays cached; zero turns the cache off.
    pub cache_ttl: Duration,
    /// Failed logins per minute and client address (`--failed-login-limit`), the burst the
    /// same; zero turns throttling off.
    pub failed_login_limit: u32,
    /// How log lines are written (`--log-format`).
    pub log_format: LogFormat,
    /// Where `GET /metrics` is served (`--metrics-listen`); `None`: no metrics listener.
    pub metrics_listen: Option<SocketAddr>,
    /// The realm of the `WWW-Authenticate` challenge.
    pub realm: String,
    /// Exact paths that need no authentication.
    pub exempt: Vec<String>,
    /// Path prefixes (segment-wise) that need no authentication.
    pub exempt_prefix: Vec<String>,
    /// Start from [`Exemptions::mlflow_defaults`].
    pub mlflow_default_exemptions: bool,
    /// The header that carries the subject to the upstream.
    pub user_header: HeaderName,
    /// Pass the client's `Authorization` header on.
    pub forward_authorization: bool,
    /// Peers whose forwarding headers are believed (`--trusted-proxies`); default none.
    pub trusted_proxies: Vec<TrustedProxy>,
    /// The secret shared with MLflow's `mlflow_gateway_auth` (`--mlflow-assertion-secret-file`):
    /// each authenticated request carries a signed assertion of its user, and MLflow's
    /// basic-auth app judges the permissions. `None`: delegation off.
    pub mlflow_assertion_secret_file: Option<PathBuf>,
    /// JWT users whose `groups` claim holds this group are MLflow admins, the others are not
    /// (`--mlflow-admin-group`; needs the assertion secret and a JWT issuer).
    pub mlflow_admin_group: Option<String>,
    /// Limits on clients and the upstream.
    pub limits: Limits,
    /// Worker threads, each with its own listener and upstream pool (`--workers`), 1 to
    /// [`MAX_WORKERS`](Self::MAX_WORKERS); default [`default_workers`](Self::default_workers).
    pub workers: usize,
}

/// The certificate chain and private key of the HTTPS listener (PEM files).
#[derive(Clone, Debug)]
pub struct TlsFiles {
    /// The certificate chain, leaf first.
    pub cert: PathBuf,
    /// The private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// How often the two files' metadata are checked for a change.
    pub reload_interval: Duration,
}

impl TlsFiles {
    /// How often the files are checked by default.
    pub const DEFAULT_RELOAD_INTERVAL: Duration = Duration::from_secs(1);

    /// The pair at `cert` and `key`, checked every second.
    pub fn new(cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        Self {
            cert: cert.into(),
            key: key.into(),
            reload_interval: Self::DEFAULT_RELOAD_INTERVAL,
        }
    }
}

/// An OIDC issuer whose bearer JWTs are accepted.
#[derive(Clone, Debug)]
pub struct JwtIssuer {
    /// The issuer URL (its discovery document gives the keys).
    pub issuer: String,
    /// The audience the tokens must carry.
    pub audience: String,
    /// A PEM bundle of the CAs that may sign the issuer's certificate, instead of the
    /// webpki public roots (`--jwt-ca-file`).
    pub ca_file: Option<PathBuf>,
}

impl JwtIssuer {
    /// Tokens of `issuer` for `audience`, its certificate checked against the public roots.
    pub fn new(issuer: impl Into<String>, audience: impl Into<String>) -> Self {
        Self {
            issuer: issuer.into(),
            audience: audience.into(),
            ca_file: None,
        }
    }

    /// Checks the issuer URL: `https://`, or `http://` to a loopback host only, since anyone
    /// on the path of a plain-http fetch could substitute the keys and mint tokens.
    fn validate(&self) -> Result<(), ConfigError> {
        let https = self.issuer.starts_with("https://");
        let safe = self
            .issuer
            .parse::<http::Uri>()
            .is_ok_and(|uri| tower_mlflow_core::http::scheme_is_safe(&uri, false));
        if !safe {
            return Err(ConfigError::InsecureJwtIssuer {
                issuer: self.issuer.clone(),
            });
        }
        if self.ca_file.is_some() && !https {
            return Err(ConfigError::JwtCaWithoutHttps);
        }
        Ok(())
    }
}

/// Timeouts and the connection cap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// Time to receive a whole request head (and the TLS handshake before it).
    pub header_timeout: Duration,
    /// How long a connection without a request in flight stays open.
    pub idle_timeout: Duration,
    /// Time to the upstream's response head.
    pub upstream_timeout: Duration,
    /// Open client connections at most; accepting pauses beyond it.
    pub max_connections: usize,
}

impl Limits {
    /// Default `header_timeout`: 30 s.
    pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(30);
    /// Default `idle_timeout`: 75 s.
    pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(75);
    /// Default `upstream_timeout`: 300 s, because artifact uploads are long.
    pub const DEFAULT_UPSTREAM_TIMEOUT: Duration = Duration::from_secs(300);
    /// Default `max_connections`: 4096.
    pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            header_timeout: Self::DEFAULT_HEADER_TIMEOUT,
            idle_timeout: Self::DEFAULT_IDLE_TIMEOUT,
            upstream_timeout: Self::DEFAULT_UPSTREAM_TIMEOUT,
            max_connections: Self::DEFAULT_MAX_CONNECTIONS,
        }
    }
}

impl Config {
    /// Default `cache_ttl`: 60 s.
    pub const DEFAULT_CACHE_TTL: Duration = Duration::from_secs(60);
    /// Default `failed_login_limit`: 20 a minute.
    pub const DEFAULT_FAILED_LOGIN_LIMIT: u32 = 20;
    /// Default `users_refresh`: 30 s.
    pub const DEFAULT_USERS_REFRESH: Duration = Duration::from_secs(30);
    /// The most `workers`.
    pub const MAX_WORKERS: usize = 1024;

    /// Default `workers`: one a core, as nginx's `worker_processes auto` (1 when the count
    /// is unknown).
    ///
    /// ```
    /// use mlflow_gateway::Config;
    /// assert!((1..=Config::MAX_WORKERS).contains(&Config::default_workers()));
    /// ```
    pub fn default_workers() -> usize {
        std::thread::available_parallelism()
            .map_or(1, std::num::NonZero::get)
            .min(Self::MAX_WORKERS)
    }

    /// A gateway on `listen` in front of `upstream` with every default and no authenticator
    /// yet (set one, or [`sso`](Self::sso), before [`assemble`](crate::assemble)).
    pub fn new(listen: SocketAddr, upstream: Upstream) -> Self {
        Self {
            listen,
            upstream,
            upstream_ca: None,
            tls: None,
            public_urls: Vec::new(),
            htpasswd: None,
            tokens_file: None,
            mlflow_auth_db: None,
            mlflow_auth_db_password_file: None,
            mlflow_auth_db_ca_file: None,
            users_refresh: Self::DEFAULT_USERS_REFRESH,
            jwt: None,
            sso: None,
            cache_ttl: Self::DEFAULT_CACHE_TTL,
            failed_login_limit: Self::DEFAULT_FAILED_LOGIN_LIMIT,
            log_format: LogFormat::Text,
            metrics_listen: None,
            realm: "mlflow".into(),
            exempt: Vec::new(),
            exempt_prefix: Vec::new(),
            mlflow_default_exemptions: false,
            user_header: HeaderName::from_static("x-forwarded-user"),
            forward_authorization: false,
            trusted_proxies: Vec::new(),
            mlflow_assertion_secret_file: None,
            mlflow_admin_group: None,
            limits: Limits::default(),
            workers: Self::default_workers(),
        }
    }

    /// Checks what can be checked without opening anything.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.htpasswd.is_none()
            && self.tokens_file.is_none()
            && self.mlflow_auth_db.is_none()
            && self.jwt.is_none()
            && self.sso.is_none()
        {
            return Err(ConfigError::NoAuthenticator);
        }
        let limits = &self.limits;
        for (flag, value) in [
            ("--header-timeout", limits.header_timeout),
            ("--idle-timeout", limits.idle_timeout),
            ("--upstream-timeout", limits.upstream_timeout),
        ] {
            if value.is_zero() {
                return Err(ConfigError::ZeroDuration { flag });
            }
        }
        if limits.max_connections == 0 {
            return Err(ConfigError::ZeroMaxConnections);
        }
        if !(1..=Self::MAX_WORKERS).contains(&self.workers) {
            return Err(ConfigError::Workers {
                workers: self.workers,
            });
        }
        if self.upstream_ca.is_some() && !self.upstream.is_https() {
            return Err(ConfigError::UpstreamCaWithoutHttps);
        }
        if let Some(jwt) = &self.jwt {
            jwt.validate()?;
        }
        if let Some(sso) = &self.sso {
            sso.validate()?;
            // One CA bundle serves both issuers; it must serve at least one https fetch.
            if sso.ca_file.is_some() && self.jwt.is_none() && !sso.issuer_is_https() {
                return Err(ConfigError::JwtCaWithoutHttps);
            }
        }
        let postgres = matches!(self.mlflow_auth_db, Some(MlflowAuthDb::Postgres(_)));
        for (flag, given) in [
            (
                "--mlflow-auth-db-password-file",
                &self.mlflow_auth_db_password_file,
            ),
            ("--mlflow-auth-db-ca-file", &self.mlflow_auth_db_ca_file),
        ] {
            if given.is_some() && !postgres {
                return Err(ConfigError::MlflowAuthDbNotPostgres { flag });
            }
        }
        if let Some(db) = &self.mlflow_auth_db {
            db.validate()?;
        }
        self.validate_delegation()?;
        self.exemptions()?;
        if !self.public_urls.is_empty() {
            self.origin_check(self.listen)?;
        }
        Ok(())
    }

    /// The origin check for the `--public-url`s, or for `http(s)://<local_addr>` (https with
    /// TLS) when none is given; on a loopback or unspecified address also `localhost`,
    /// `127.0.0.1` and `[::1]` with that port, which MLflow itself accepts. With browser
    /// sign-in, the redirect URL's origin as well: people open the UI there.
    pub fn origin_check(&self, local_addr: SocketAddr) -> Result<OriginCheckLayer, ConfigError> {
        let sso_origin = self.sso.as_ref().map(SsoConfig::redirect_origin);
        let builder = OriginCheckLayer::builder().allowed_origins(sso_origin);
        let builder = if self.public_urls.is_empty() {
            let scheme = if self.tls.is_some() { "https" } else { "http" };
            let mut origins = vec![format!("{scheme}://{local_addr}")];
            if local_addr.ip().is_loopback() || local_addr.ip().is_unspecified() {
                let port = local_addr.port();
                for host in ["localhost", "127.0.0.1", "[::1]"] {
                    origins.push(format!("{scheme}://{host}:{port}"));
                }
            }
            builder.allowed_origins(origins)
        } else {
            builder.allowed_origins(self.public_urls.iter().cloned())
        };
        builder
            .build()
            .map_err(|source| ConfigError::PublicUrl { source })
    }

    /// Delegation to MLflow's permissions: the password stays at the gateway, and an admin
    /// group needs both the assertion and a token to read groups from.
    fn validate_delegation(&self) -> Result<(), ConfigError> {
        let delegating = self.mlflow_assertion_secret_file.is_some();
        if delegating && self.forward_authorization {
            return Err(ConfigError::ForwardAuthorizationWithDelegation);
        }
        if let Some(group) = &self.mlflow_admin_group {
            if !delegating || self.jwt.is_none() {
                return Err(ConfigError::AdminGroupWithoutDelegation);
            }
            if group.is_empty() {
                return Err(ConfigError::EmptyAdminGroup);
            }
        }
        Ok(())
    }

    /// The exemptions the configuration asks for.
    pub fn exemptions(&self) -> Result<Exemptions, ConfigError> {
        let mut exemptions = if self.mlflow_default_exemptions {
            Exemptions::mlflow_defaults()
        } else {
            Exemptions::new()
        };
        for path in &self.exempt {
            exemptions = exemptions
                .exact(path)
                .map_err(|source| ConfigError::Exemption {
                    path: path.clone(),
                    source,
                })?;
        }
        for prefix in &self.exempt_prefix {
            exemptions = exemptions
                .prefix(prefix)
                .map_err(|source| ConfigError::Exemption {
                    path: prefix.clone(),
                    source,
                })?;
        }
        Ok(exemptions)
    }
}

/// The configuration in the `--config` file's format (what `--check` prints): every setting,
/// defaults included. It holds no secret: secrets are only ever named by their files, and a
/// PostgreSQL URL with a password is not shown.
impl fmt::Display for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = toml_text;
        let path = |key, value: &Option<PathBuf>| value.as_ref().map(|p| text(key, &p.display()));
        let mut lines = vec![
            text("listen", &self.listen),
            text("upstream", &self.upstream),
        ];
        lines.extend(path("upstream-ca", &self.upstream_ca));
        if let Some(tls) = &self.tls {
            lines.push(text("tls-cert", &tls.cert.display()));
            lines.push(text("tls-key", &tls.key.display()));
        }
        lines.push(format!("public-url = {}", toml_list(&self.public_urls)));
        lines.extend(path("htpasswd", &self.htpasswd));
        lines.extend(path("tokens-file", &self.tokens_file));
        if let Some(db) = &self.mlflow_auth_db {
            lines.push(text("mlflow-auth-db", db));
        }
        let password_file = &self.mlflow_auth_db_password_file;
        lines.extend(path("mlflow-auth-db-password-file", password_file));
        lines.extend(path("mlflow-auth-db-ca-file", &self.mlflow_auth_db_ca_file));
        if let Some(jwt) = &self.jwt {
            lines.push(text("jwt-issuer", &jwt.issuer));
            lines.push(text("jwt-audience", &jwt.audience));
            lines.extend(path("jwt-ca-file", &jwt.ca_file));
        }
        if let Some(sso) = &self.sso {
            if self.jwt.is_none() {
                lines.extend(path("jwt-ca-file", &sso.ca_file));
            }
            lines.push(sso.to_string());
        }
        lines.push(text("realm", &self.realm));
        lines.push(format!("exempt = {}", toml_list(&self.exempt)));
        lines.push(format!(
            "exempt-prefix = {}",
            toml_list(&self.exempt_prefix)
        ));
        let defaults = self.mlflow_default_exemptions;
        lines.push(format!("mlflow-default-exemptions = {defaults}"));
        lines.push(text("user-header", &self.user_header));
        let forward = self.forward_authorization;
        lines.push(format!("forward-authorization = {forward}"));
        lines.push(format!(
            "trusted-proxies = {}",
            toml_list(&self.trusted_proxies)
        ));
        let secret_file = &self.mlflow_assertion_secret_file;
        lines.extend(path("mlflow-assertion-secret-file", secret_file));
        if let Some(group) = &self.mlflow_admin_group {
            lines.push(text("mlflow-admin-group", group));
        }
        let limits = &self.limits;
        for (key, value) in [
            ("cache-ttl", self.cache_ttl.as_secs()),
            ("failed-login-limit", self.failed_login_limit.into()),
            ("users-refresh", self.users_refresh.as_secs()),
            ("header-timeout", limits.header_timeout.as_secs()),
            ("idle-timeout", limits.idle_timeout.as_secs()),
            ("upstream-timeout", limits.upstream_timeout.as_secs()),
        ] {
            lines.push(format!("{key} = {value}"));
        }
        lines.push(format!("max-connections = {}", limits.max_connections));
        lines.push(format!("workers = {}", self.workers));
        if let Some(format) = clap::ValueEnum::to_possible_value(&self.log_format) {
            lines.push(text("log-format", &format.get_name()));
        }
        if let Some(addr) = self.metrics_listen {
            lines.push(text("metrics-listen", &addr));
        }
        f.write_str(&lines.join("\n"))
    }
}

/// `["a", "b"]`: a TOML array of strings.
fn toml_list<T: fmt::Display>(items: &[T]) -> String {
    let quoted: Vec<String> = items
        .iter()
        .map(|i| format!("{:?}", i.to_string()))
        .collect();
    format!("[{}]", quoted.join(", "))
}

/// `key = "value"`: a TOML string line.
fn toml_text(key: &str, value: &dyn fmt::Display) -> String {
    format!("{key} = {:?}", value.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        let mut config = Config::new(
            "127.0.0.1:0".parse().unwrap(),
            "http://127.0.0.1:5000".parse().unwrap(),
        );
        config.htpasswd = Some("/etc/htpasswd".into());
        config
    }

    #[test]
    fn a_minimal_configuration_is_valid() {
        config().validate().unwrap();
    }

    #[test]
    fn public_urls_default_to_the_listen_address_and_are_checked() {
        let addr = "127.0.0.1:8080".parse().unwrap();
        let mut config = config();
        let layer = config.origin_check(addr).unwrap();
        let local = "[http://127.0.0.1:8080, http://localhost:8080, http://[::1]:8080]";
        assert!(format!("{layer:?}").contains(local), "{layer:?}");
        config.tls = Some(TlsFiles::new("/c.pem", "/k.pem"));
        let public = "192.0.2.7:443".parse().unwrap();
        let layer = config.origin_check(public).unwrap();
        assert!(
            format!("{layer:?}").contains("[https://192.0.2.7]"),
            "{layer:?}"
        );

        config.public_urls = vec!["https://mlflow.example.com/".into()];
        let layer = config.origin_check(addr).unwrap();
        assert!(
            format!("{layer:?}").contains("[https://mlflow.example.com]"),
            "{layer:?}"
        );

        config.public_urls.push("mlflow.example.com".into());
        let error = config.validate().unwrap_err();
        assert!(matches!(error, ConfigError::PublicUrl { .. }));
        assert_eq!(
            error.to_string(),
            r#"invalid --public-url "mlflow.example.com""#
        );
        assert!(std::error::Error::source(&error).is_some());
    }

    #[test]
    fn an_authenticator_is_required() {
        let mut config = config();
        config.htpasswd = None;
        let error = config.validate().unwrap_err();
        assert!(matches!(error, ConfigError::NoAuthenticator));
        assert!(error.to_string().contains("never runs as an open proxy"));
    }

    #[test]
    fn zero_limits_name_their_flag() {
        let mut zero = config();
        zero.limits.upstream_timeout = Duration::ZERO;
        assert_eq!(
            zero.validate().unwrap_err().to_string(),
            "--upstream-timeout must be at least 1 second"
        );
        let mut zero = config();
        zero.limits.max_connections = 0;
        assert!(matches!(
            zero.validate().unwrap_err(),
            ConfigError::ZeroMaxConnections
        ));
    }

    #[test]
    fn upstream_ca_needs_https() {
        let mut config = config();
        config.upstream_ca = Some("/etc/ca.pem".into());
        assert!(matches!(
            config.validate().unwrap_err(),
            ConfigError::UpstreamCaWithoutHttps
        ));
        config.upstream = "https://mlflow.example.com".parse().unwrap();
        config.validate().unwrap();
    }

    fn with_issuer(issuer: &str) -> Result<(), ConfigError> {
        let mut config = config();
        config.jwt = Some(JwtIssuer::new(issuer, "mlflow"));
        config.validate()
    }

    #[test]
    fn jwt_issuers_are_https_or_loopback_http() {
        with_issuer("https://idp.example.com/realms/ml").unwrap();
        with_issuer("http://127.0.0.1:8080").unwrap();
        with_issuer("http://localhost:8080/realms/ml").unwrap();
        for insecure in [
            "http://idp.example.com",
            "http://10.0.0.1:8080",
            "ftp://idp",
            "",
        ] {
            let error = with_issuer(insecure).unwrap_err();
            assert!(
                matches!(&error, ConfigError::InsecureJwtIssuer { issuer } if issuer == insecure),
                "{insecure}: {error:?}"
            );
            assert!(error.to_string().starts_with("--jwt-issuer "), "{error}");
        }
    }

    #[test]
    fn jwt_ca_file_needs_an_https_issuer() {
        let mut config = config();
        let mut issuer = JwtIssuer::new("http://127.0.0.1:8080", "mlflow");
        issuer.ca_file = Some("/etc/ca.pem".into());
        config.jwt = Some(issuer.clone());
        let error = config.validate().unwrap_err();
        assert!(matches!(error, ConfigError::JwtCaWithoutHttps));
        assert!(error.to_string().contains("--jwt-ca-file"));
        issuer.issuer = "https://idp.internal".into();
        config.jwt = Some(issuer);
        config.validate().unwrap();
    }

    #[test]
    fn delegation_keeps_credentials_and_needs_groups_from_tokens() {
        let mut config = config();
        config.mlflow_admin_group = Some("mlflow-admins".into());
        assert!(matches!(
            config.validate().unwrap_err(),
            ConfigError::AdminGroupWithoutDelegation
        ));
        config.mlflow_assertion_secret_file = Some("/etc/assertion".into());
        let error = config.validate().unwrap_err();
        assert!(error.to_string().contains("--jwt-issuer"), "{error}");
        config.jwt = Some(JwtIssuer::new("https://idp.example.com", "mlflow"));
        config.validate().unwrap();
        config.mlflow_admin_group = Some(String::new());
        assert!(matches!(
            config.validate().unwrap_err(),
            ConfigError::EmptyAdminGroup
        ));
        config.mlflow_admin_group = None;
        config.forward_authorization = true;
        assert!(matches!(
            config.validate().unwrap_err(),
            ConfigError::ForwardAuthorizationWithDelegation
        ));
    }

    #[test]
    fn a_bad_exemption_names_the_path() {
        let mut config = config();
        config.exempt.push("no-slash".into());
        let error = config.validate().unwrap_err();
        assert_eq!(error.to_string(), "invalid exemption \"no-slash\"");
        assert!(std::error::Error::source(&error).is_some());
    }
    fn sso() -> SsoConfig {
        SsoConfig::new(
            "https://login.example.com",
            "mlflow",
            "/run/secrets/oidc-client",
            "https://MLflow.example.com:443/_gateway/callback"
                .parse()
                .unwrap(),
            "/run/secrets/session.key",
        )
    }

    #[test]
    fn browser_sign_in_alone_is_an_authenticator() {
        let mut config = config();
        config.htpasswd = None;
        config.sso = Some(sso());
        config.validate().unwrap();
        let error = ConfigError::NoAuthenticator.to_string();
        assert!(error.contains("--oidc-issuer"), "{error}");
    }

    #[test]
    fn the_redirect_origin_is_an_allowed_origin() {
        let addr = "127.0.0.1:8080".parse().unwrap();
        let mut config = config();
        config.sso = Some(sso());
        let layer = config.origin_check(addr).unwrap();
        let shown = format!("{layer:?}");
        assert!(shown.contains("https://mlflow.example.com"), "{shown}");
        assert!(shown.contains("http://localhost:8080"), "{shown}");
        config.public_urls = vec!["https://ui.example.com".into()];
        let shown = format!("{:?}", config.origin_check(addr).unwrap());
        assert!(shown.contains("https://mlflow.example.com"), "{shown}");
        assert!(shown.contains("https://ui.example.com"), "{shown}");
        config.sso = None;
        let shown = format!("{:?}", config.origin_check(addr).unwrap());
        assert!(!shown.contains("https://mlflow.example.com"), "{shown}");
    }

    #[test]
    fn sso_settings_are_checked_by_validate() {
        let mut config = config();
        let mut bad = sso();
        bad.session_lifetime = Duration::from_secs(30 * 24 * 3600 + 1);
        config.sso = Some(bad);
        let error = config.validate().unwrap_err();
        assert_eq!(
            error.to_string(),
            "--session-lifetime \"2592001\" must be between 60 and 2592000 seconds (30 days)"
        );
        let mut bad = sso();
        bad.redirect_url = "https://mlflow.example.com/".parse().unwrap();
        config.sso = Some(bad);
        let error = config.validate().unwrap_err();
        assert!(
            matches!(
                &error,
                ConfigError::InvalidSsoValue {
                    flag: "--oidc-redirect-url",
                    ..
                }
            ),
            "{error}"
        );
        let mut bad = sso();
        bad.allowed_emails = vec!["a@b@c".into()];
        config.sso = Some(bad);
        let error = config.validate().unwrap_err().to_string();
        assert_eq!(error, r#"--allowed-email "a@b@c" must have exactly one @"#);
    }

    #[test]
    fn sso_settings_are_printed_for_check() {
        let mut config = config();
        let mut sso = sso();
        sso.allowed_email_domains = vec!["example.com".into()];
        config.sso = Some(sso);
        let printed = config.to_string();
        assert!(
            printed.contains(
                "oidc-redirect-url = \"https://MLflow.example.com:443/_gateway/callback\""
            ),
            "{printed}"
        );
        assert!(
            printed.contains("allowed-email-domain = [\"example.com\"]"),
            "{printed}"
        );
        assert!(!printed.contains("admin-group"), "{printed}");
    }
}
