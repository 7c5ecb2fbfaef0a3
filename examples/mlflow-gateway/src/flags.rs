//! The command line: every flag, its help text and its default, turned into a [`Config`].

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::Parser;
use http::HeaderName;

use crate::{
    config::{Config, ConfigError, JwtIssuer, Limits, MlflowAuthDb, TlsFiles},
    proxy::{TrustedProxy, Upstream},
};

/// An authenticating reverse proxy for one MLflow tracking server.
#[derive(Debug, Parser)]
#[command(name = "mlflow-gateway", version, about, long_about = None)]
#[non_exhaustive]
pub struct Flags {
    /// Address to listen on, for example 127.0.0.1:8080 or 0.0.0.0:443.
    #[arg(long, value_name = "ADDR")]
    pub listen: SocketAddr,

    /// The MLflow server to protect, for example http://127.0.0.1:5000, or an https URL for
    /// one on another host (a path such as /mlflow is prepended to every request path).
    #[arg(long, value_name = "URL")]
    pub upstream: Upstream,

    /// PEM bundle of the CAs that may sign an https --upstream's certificate (default: the
    /// webpki public roots).
    #[arg(long, value_name = "FILE")]
    pub upstream_ca: Option<PathBuf>,

    /// Serve HTTPS (h2 and http/1.1) with this PEM certificate chain; with --tls-key. Both
    /// files are re-read when either changes; a broken new pair keeps the old one.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// The PEM private key of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// A URL people open the UI at, such as https://mlflow.example.com (repeatable; default:
    /// http(s)://<listen address>, and localhost with its port on a loopback or unspecified
    /// address). A POST, PUT, PATCH or DELETE with browser credentials
    /// (a cookie, Basic) from another origin is refused with 403; the checked Origin is not
    /// passed on, so MLflow accepts UI writes without MLFLOW_SERVER_CORS_ALLOWED_ORIGINS.
    #[arg(long = "public-url", value_name = "URL")]
    pub public_urls: Vec<String>,

    /// Apache htpasswd file (bcrypt, APR1, SHA-256/512-crypt, {SHA}); reloaded when it changes.
    #[arg(long, value_name = "FILE")]
    pub htpasswd: Option<PathBuf>,

    /// MLflow's own user database (the `database_uri` of `mlflow server --app-name
    /// basic-auth`): the path of its SQLite basic_auth.db, opened read-only, or a
    /// postgresql:// (or postgres://, postgresql+psycopg2://) URL without a password, such as
    /// postgresql://mlflow@db.internal:5432/mlflow_auth. Changes are picked up within
    /// --users-refresh seconds. PostgreSQL off this machine needs TLS (sslmode=disable only
    /// to loopback or a Unix socket).
    #[arg(long = "mlflow-auth-db", value_name = "PATH|URL")]
    pub mlflow_auth_db: Option<MlflowAuthDb>,

    /// File holding the PostgreSQL password of a postgresql:// --mlflow-auth-db (its first
    /// line; read at start). A password never goes in the URL, which ps and logs show.
    #[arg(long, value_name = "FILE", requires = "mlflow_auth_db")]
    pub mlflow_auth_db_password_file: Option<PathBuf>,

    /// PEM bundle of extra CAs trusted for a postgresql:// --mlflow-auth-db's certificate
    /// (added to the webpki public roots), for a server behind a private CA.
    #[arg(long, value_name = "FILE", requires = "mlflow_auth_db")]
    pub mlflow_auth_db_ca_file: Option<PathBuf>,

    /// Accept bearer JWTs from this OIDC issuer (keys from its discovery document): an
    /// https URL, or plain http to a loopback host only.
    #[arg(long, value_name = "URL", requires = "jwt_audience")]
    pub jwt_issuer: Option<String>,

    /// The audience JWTs must carry (with --jwt-issuer).
    #[arg(long, value_name = "AUD", requires = "jwt_issuer")]
    pub jwt_audience: Option<String>,

    /// PEM bundle of extra CAs trusted for the --jwt-issuer's certificate (and its JWKS
    /// host), for an identity provider behind a private CA. Added to the webpki public roots,
    /// which stay trusted.
    #[arg(long, value_name = "FILE", requires = "jwt_issuer")]
    pub jwt_ca_file: Option<PathBuf>,

    /// Realm of the WWW-Authenticate challenge.
    #[arg(long, value_name = "NAME", default_value = "mlflow")]
    pub realm: String,

    /// A path that needs no authentication (exact match, any method); repeatable.
    #[arg(long, value_name = "PATH")]
    pub exempt: Vec<String>,

    /// A path prefix that needs no authentication (the prefix and everything below it,
    /// segment-wise); repeatable.
    #[arg(long, value_name = "PREFIX")]
    pub exempt_prefix: Vec<String>,

    /// Leave open what MLflow's own basic-auth leaves open (/health, /favicon.ico, /static,
    /// /static-files, server-info), tightened to exact paths and segment prefixes, GET/HEAD.
    #[arg(long)]
    pub mlflow_default_exemptions: bool,

    /// Header that carries the authenticated username to the upstream. Any copy sent by the
    /// client is always removed.
    #[arg(long, value_name = "NAME", default_value = "X-Forwarded-User")]
    pub user_header: HeaderName,

    /// Pass the client's Authorization header to the upstream (removed by default).
    #[arg(long)]
    pub forward_authorization: bool,

    /// Proxies in front of the gateway, as CIDRs or addresses (repeatable or comma-separated;
    /// default: none). Their X-Forwarded-For chain is kept and the peer appended, and their
    /// other forwarding headers are kept; from any other peer X-Forwarded-For is replaced by
    /// the peer address and Forwarded, X-Real-IP and X-Forwarded-* are removed.
    #[arg(long, value_name = "CIDR", value_delimiter = ',')]
    pub trusted_proxies: Vec<TrustedProxy>,

    /// Delegate permissions to MLflow's basic-auth app (default: off): every authenticated
    /// request carries a signed assertion of its user (X-MLflow-Gateway-Assertion, HMAC-SHA256
    /// with the secret in this file, at least 32 bytes), checked by the mlflow_gateway_auth
    /// package (examples/mlflow-gateway/python) that MLflow names in its basic_auth.ini;
    /// MLflow creates unknown users on first sight. The client's Authorization is never
    /// forwarded. At start-up the gateway checks that the upstream refuses unsigned requests.
    #[arg(long, value_name = "FILE", conflicts_with = "forward_authorization")]
    pub mlflow_assertion_secret_file: Option<PathBuf>,

    /// With --mlflow-assertion-secret-file and --jwt-issuer: JWT users whose `groups` claim
    /// holds G are made MLflow admins, the other JWT users non-admins (default: MLflow's
    /// is_admin is left as it is). Password users keep MLflow's is_admin.
    #[arg(long, value_name = "G", requires_all = ["mlflow_assertion_secret_file", "jwt_issuer"])]
    pub mlflow_admin_group: Option<String>,

    /// Seconds a verified password stays cached (0 disables the cache). Wrong passwords are
    /// never cached.
    #[arg(long, value_name = "SECONDS", default_value_t = 60)]
    pub cache_ttl: u64,

    /// Failed logins (wrong password or token) a client address may have per minute, with a
    /// burst of as many (0 disables). Beyond it, credentials not in the verified cache get
    /// 429 with Retry-After, without a password check; cached users from the same address
    /// keep working. Counted per address after --trusted-proxies (IPv6 per /64), in memory
    /// per process: each replica counts on its own.
    #[arg(long, value_name = "N", default_value_t = 20)]
    pub failed_login_limit: u32,

    /// Seconds between re-reads of --mlflow-auth-db.
    #[arg(long, value_name = "SECONDS", default_value_t = 30)]
    pub users_refresh: u64,

    /// Seconds a client has to send a whole request head (and finish the TLS handshake);
    /// a slower client is disconnected. For HTTP/1 it also bounds the wait for the next
    /// request on a kept-alive connection.
    #[arg(long, value_name = "SECS", default_value_t = 30)]
    pub header_timeout: u64,

    /// Seconds a connection without a request in flight stays open (keep-alive). HTTP/2
    /// connections are also pinged at this interval and closed if the pings go unanswered.
    /// An upgraded connection (WebSocket) is closed after this long without a byte in
    /// either direction.
    #[arg(long, value_name = "SECS", default_value_t = 75)]
    pub idle_timeout: u64,

    /// Seconds to wait for the upstream's response head (504 beyond); long because artifact
    /// uploads are. The response body then streams without a limit.
    #[arg(long, value_name = "SECS", default_value_t = 300)]
    pub upstream_timeout: u64,

    /// Client connections open at once at most, upgraded ones (WebSocket) included; beyond
    /// it, new connections wait in the kernel's backlog until one closes.
    #[arg(long, value_name = "N", default_value_t = 4096)]
    pub max_connections: usize,
}

impl Flags {
    /// The configuration the flags describe, validated.
    pub fn into_config(self) -> Result<Config, ConfigError> {
        let mut config = Config::new(self.listen, self.upstream);
        config.upstream_ca = self.upstream_ca;
        config.tls = match (self.tls_cert, self.tls_key) {
            (Some(cert), Some(key)) => Some(TlsFiles::new(cert, key)),
            _ => None,
        };
        config.public_urls = self.public_urls;
        config.htpasswd = self.htpasswd;
        config.mlflow_auth_db = self.mlflow_auth_db;
        config.mlflow_auth_db_password_file = self.mlflow_auth_db_password_file;
        config.mlflow_auth_db_ca_file = self.mlflow_auth_db_ca_file;
        config.users_refresh = Duration::from_secs(self.users_refresh);
        config.jwt = match (self.jwt_issuer, self.jwt_audience) {
            (Some(issuer), Some(audience)) => Some(JwtIssuer {
                ca_file: self.jwt_ca_file,
                ..JwtIssuer::new(issuer, audience)
            }),
            _ => None,
        };
        config.cache_ttl = Duration::from_secs(self.cache_ttl);
        config.failed_login_limit = self.failed_login_limit;
        config.realm = self.realm;
        config.exempt = self.exempt;
        config.exempt_prefix = self.exempt_prefix;
        config.mlflow_default_exemptions = self.mlflow_default_exemptions;
        config.user_header = self.user_header;
        config.forward_authorization = self.forward_authorization;
        config.trusted_proxies = self.trusted_proxies;
        config.mlflow_assertion_secret_file = self.mlflow_assertion_secret_file;
        config.mlflow_admin_group = self.mlflow_admin_group;
        config.limits = Limits {
            header_timeout: Duration::from_secs(self.header_timeout),
            idle_timeout: Duration::from_secs(self.idle_timeout),
            upstream_timeout: Duration::from_secs(self.upstream_timeout),
            max_connections: self.max_connections,
        };
        config.validate()?;
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(extra: &[&str]) -> Result<Config, ConfigError> {
        let base = [
            "mlflow-gateway",
            "--listen",
            "127.0.0.1:8080",
            "--upstream",
            "http://127.0.0.1:5000",
        ];
        Flags::try_parse_from(base.iter().chain(extra))
            .unwrap()
            .into_config()
    }

    #[test]
    fn defaults() {
        let config = parse(&["--htpasswd", "/etc/htpasswd"]).unwrap();
        assert_eq!(config.limits, Limits::default());
        assert_eq!(config.cache_ttl, Config::DEFAULT_CACHE_TTL);
        assert_eq!(
            config.failed_login_limit,
            Config::DEFAULT_FAILED_LOGIN_LIMIT
        );
        assert_eq!(config.users_refresh, Config::DEFAULT_USERS_REFRESH);
        assert_eq!(config.user_header, "x-forwarded-user");
        assert!(config.tls.is_none());
    }

    #[test]
    fn every_flag_reaches_the_config() {
        let config = parse(&[
            "--htpasswd=/h",
            "--header-timeout=1",
            "--idle-timeout=2",
            "--upstream-timeout=3",
            "--max-connections=4",
            "--tls-cert=/c",
            "--tls-key=/k",
            "--cache-ttl=0",
            "--failed-login-limit=0",
        ])
        .unwrap();
        assert_eq!(config.failed_login_limit, 0);
        let limits = config.limits;
        assert_eq!(limits.header_timeout, Duration::from_secs(1));
        assert_eq!(limits.idle_timeout, Duration::from_secs(2));
        assert_eq!(limits.upstream_timeout, Duration::from_secs(3));
        assert_eq!(limits.max_connections, 4);
        let tls = config.tls.unwrap();
        assert_eq!(
            (tls.cert.to_str(), tls.key.to_str()),
            (Some("/c"), Some("/k"))
        );
        assert!(config.cache_ttl.is_zero());
    }

    #[test]
    fn trusted_proxies_repeat_or_separate_with_commas() {
        let config = parse(&[
            "--htpasswd=/h",
            "--trusted-proxies=10.0.0.0/8,fd00::/8",
            "--trusted-proxies",
            "192.168.1.1",
        ])
        .unwrap();
        let listed: Vec<String> = config
            .trusted_proxies
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(listed, ["10.0.0.0/8", "fd00::/8", "192.168.1.1/32"]);
        assert!(
            parse(&["--htpasswd=/h"])
                .unwrap()
                .trusted_proxies
                .is_empty()
        );
    }

    #[test]
    fn tls_cert_needs_a_key() {
        let args = [
            "mlflow-gateway",
            "--listen=127.0.0.1:1",
            "--upstream=http://127.0.0.1:2",
            "--tls-cert=/c",
        ];
        assert!(Flags::try_parse_from(args).is_err());
    }

    #[test]
    fn jwt_flags_reach_the_config() {
        let config = parse(&[
            "--jwt-issuer=https://idp.internal/realms/ml",
            "--jwt-audience=mlflow",
            "--jwt-ca-file=/etc/idp-ca.pem",
        ])
        .unwrap();
        let jwt = config.jwt.unwrap();
        assert_eq!(jwt.issuer, "https://idp.internal/realms/ml");
        assert_eq!(jwt.audience, "mlflow");
        assert_eq!(jwt.ca_file.unwrap().to_str(), Some("/etc/idp-ca.pem"));
        let without_ca = parse(&["--jwt-issuer=https://idp", "--jwt-audience=a"]).unwrap();
        assert!(without_ca.jwt.unwrap().ca_file.is_none());
        assert!(matches!(
            parse(&["--jwt-issuer=http://idp.example.com", "--jwt-audience=a"]),
            Err(ConfigError::InsecureJwtIssuer { .. })
        ));
    }

    #[test]
    fn public_urls_repeat_and_are_validated() {
        assert!(parse(&["--htpasswd=/h"]).unwrap().public_urls.is_empty());
        let config = parse(&[
            "--htpasswd=/h",
            "--public-url=https://mlflow.example.com",
            "--public-url=http://10.0.0.5:8080",
        ])
        .unwrap();
        assert_eq!(
            config.public_urls,
            ["https://mlflow.example.com", "http://10.0.0.5:8080"]
        );
        assert!(matches!(
            parse(&["--htpasswd=/h", "--public-url=mlflow.example.com"]),
            Err(ConfigError::PublicUrl { .. })
        ));
    }

    #[test]
    fn jwt_ca_file_needs_an_issuer() {
        let args = [
            "mlflow-gateway",
            "--listen=127.0.0.1:1",
            "--upstream=http://127.0.0.1:2",
            "--htpasswd=/h",
            "--jwt-ca-file=/ca.pem",
        ];
        assert!(Flags::try_parse_from(args).is_err());
    }

    #[test]
    fn delegation_flags_reach_the_config() {
        let config = parse(&[
            "--jwt-issuer=https://idp",
            "--jwt-audience=a",
            "--mlflow-assertion-secret-file=/run/secrets/assertion",
            "--mlflow-admin-group=mlflow-admins",
        ])
        .unwrap();
        assert_eq!(
            config.mlflow_assertion_secret_file.unwrap().to_str(),
            Some("/run/secrets/assertion")
        );
        assert_eq!(config.mlflow_admin_group.as_deref(), Some("mlflow-admins"));
        let base = [
            "mlflow-gateway",
            "--listen=127.0.0.1:1",
            "--upstream=http://127.0.0.1:2",
        ];
        let with = |extra: &[&str]| Flags::try_parse_from(base.iter().chain(extra)).is_ok();
        assert!(!with(&["--htpasswd=/h", "--mlflow-admin-group=g"]));
        assert!(!with(&[
            "--htpasswd=/h",
            "--mlflow-assertion-secret-file=/s",
            "--forward-authorization"
        ]));
        assert!(with(&[
            "--htpasswd=/h",
            "--mlflow-assertion-secret-file=/s"
        ]));
    }

    #[test]
    fn mlflow_auth_db_is_a_path_or_a_postgres_url() {
        let sqlite = parse(&["--mlflow-auth-db=/srv/basic_auth.db"]).unwrap();
        assert_eq!(
            sqlite.mlflow_auth_db,
            Some(MlflowAuthDb::Sqlite("/srv/basic_auth.db".into()))
        );
        let url = "postgresql://mlflow@db.internal/auth";
        let postgres = parse(&[
            &format!("--mlflow-auth-db={url}"),
            "--mlflow-auth-db-password-file=/run/secrets/pg",
            "--mlflow-auth-db-ca-file=/etc/pg-ca.pem",
        ])
        .unwrap();
        assert_eq!(
            postgres.mlflow_auth_db,
            Some(MlflowAuthDb::Postgres(url.into()))
        );
        let password_file = postgres.mlflow_auth_db_password_file.unwrap();
        assert_eq!(password_file.to_str(), Some("/run/secrets/pg"));
        assert!(postgres.mlflow_auth_db_ca_file.is_some());
        let local = parse(&["--mlflow-auth-db=postgres://m@127.0.0.1/auth?sslmode=disable"]);
        assert!(matches!(
            local.unwrap().mlflow_auth_db,
            Some(MlflowAuthDb::Postgres(_))
        ));
    }

    #[test]
    fn mlflow_auth_db_refusals_never_show_a_password() {
        let err = parse(&["--mlflow-auth-db=postgresql://mlflow:hunter2@db/auth"]).unwrap_err();
        assert!(matches!(err, ConfigError::MlflowAuthDbPassword));
        assert!(!format!("{err} {err:?}").contains("hunter2"));
        let in_query = parse(&["--mlflow-auth-db=postgresql://db/auth?user=m&password=hunter2"]);
        assert!(matches!(in_query, Err(ConfigError::MlflowAuthDbPassword)));
        let shown = MlflowAuthDb::Postgres("postgres://m:hunter2@db/auth".into());
        assert!(!format!("{shown} {shown:?}").contains("hunter2"));
        assert!(matches!(
            parse(&["--mlflow-auth-db=/db", "--mlflow-auth-db-password-file=/p"]),
            Err(ConfigError::MlflowAuthDbNotPostgres {
                flag: "--mlflow-auth-db-password-file"
            })
        ));
        assert!(matches!(
            parse(&["--mlflow-auth-db=postgresql://m@db.internal/auth?sslmode=disable"]),
            Err(ConfigError::MlflowAuthDbUrl { .. })
        ));
    }

    #[test]
    fn validation_errors_come_through() {
        assert!(matches!(parse(&[]), Err(ConfigError::NoAuthenticator)));
        assert!(matches!(
            parse(&["--htpasswd=/h", "--header-timeout=0"]),
            Err(ConfigError::ZeroDuration {
                flag: "--header-timeout"
            })
        ));
    }
}
