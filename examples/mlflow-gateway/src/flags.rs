//! The command line: every flag, its help text and its default, turned into a [`Config`].
//! The browser sign-in flags are in `flags/sso.rs` ([`SsoFlags`]).

use std::{ffi::OsString, fmt, net::SocketAddr, path::PathBuf, time::Duration};

use clap::{ArgAction, CommandFactory as _, FromArgMatches as _, Parser};
use http::HeaderName;

pub use self::sso::SsoFlags;
use crate::{
    config::{Config, ConfigError, JwtIssuer, Limits, MlflowAuthDb, TlsFiles},
    logging::LogFormat,
    proxy::{TrustedProxy, Upstream},
};

mod sso;

/// An authenticating reverse proxy for one MLflow tracking server.
///
/// Every option can also be set as an environment variable (shown with each option) or as a
/// key of the --config file (the option's name without the dashes in front); a flag wins over
/// the environment, the environment over the file. List variables are comma-separated.
/// No option takes a secret: passwords and keys are only read from the *-file options' files.
#[derive(Debug, Parser)]
#[command(name = "mlflow-gateway", version, about, long_about = None)]
#[command(
    after_help = "`mlflow-gateway hash-token USER` reads a token on stdin and prints \
                        its --tokens-file line."
)]
// The field docs are the `--help` text, read in a terminal: URLs and <placeholders> in them
// are meant literally, not as links or HTML.
#[allow(rustdoc::bare_urls, rustdoc::invalid_html_tags)]
#[non_exhaustive]
pub struct Flags {
    /// A TOML file of options: keys are option names (`listen = "0.0.0.0:8080"`,
    /// `exempt = ["/health"]`, `cache-ttl = 60`, `forward-authorization = true`); an
    /// unknown key is an error.
    #[arg(long, value_name = "FILE", env = "MLFLOW_GATEWAY_CONFIG")]
    pub config: Option<PathBuf>,

    /// Check the configuration and every file it names, print what would run (no secrets)
    /// and exit: 0 when all is well, 2 with every problem found.
    #[arg(long)]
    pub check: bool,

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

    /// Static API tokens for scripts and CI, sent as `Authorization: Bearer <token>`: lines
    /// `user:sha256-hex-of-token` (make one with `mlflow-gateway hash-token USER`), `#`
    /// comments; reloaded when it changes, a broken new file keeps the old tokens.
    #[arg(long, value_name = "FILE")]
    pub tokens_file: Option<PathBuf>,

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

    /// PEM bundle of extra CAs trusted for the certificates of the --jwt-issuer and the
    /// --oidc-issuer (and their JWKS and token endpoints), for an identity provider behind a
    /// private CA. Added to the webpki public roots, which stay trusted.
    #[arg(long, value_name = "FILE")]
    pub jwt_ca_file: Option<PathBuf>,

    /// Browser sign-in with OpenID Connect.
    #[command(flatten)]
    pub sso: SsoFlags,

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

    /// Worker threads, 1 to 1024 (default: the number of cores, as nginx's
    /// `worker_processes auto`). Each has its own event loop, its own listening socket on
    /// the address (SO_REUSEPORT: the kernel spreads new connections) and its own upstream
    /// connection pool, so a request stays on one thread.
    #[arg(long, value_name = "N")]
    pub workers: Option<usize>,

    /// How log lines on stderr are written: `text`, or `json` (one object a line). Each
    /// request gets an access-log line at INFO on the target mlflow_gateway::access; RUST_LOG
    /// filters it like everything else.
    #[arg(long, value_enum, value_name = "FORMAT", default_value = "text")]
    pub log_format: LogFormat,

    /// Serve Prometheus metrics at GET /metrics on this address (a separate listener,
    /// plain HTTP, no authentication: bind it to a private address). Off by default.
    #[arg(long, value_name = "ADDR")]
    pub metrics_listen: Option<SocketAddr>,
}

/// The prefix of the environment variable of each option: `MLFLOW_GATEWAY_LISTEN` for
/// `--listen`.
pub const ENV_PREFIX: &str = "MLFLOW_GATEWAY_";

/// Options given on the command line only: `--check` is a mode, and `--config` names the file
/// (it has its variable, `MLFLOW_GATEWAY_CONFIG`, but cannot be a key of itself).
const COMMAND_LINE_ONLY: [&str; 2] = ["check", "config"];

/// The environment variable of the option `--long`.
///
/// ```
/// assert_eq!(mlflow_gateway::env_var("cache-ttl"), "MLFLOW_GATEWAY_CACHE_TTL");
/// ```
pub fn env_var(long: &str) -> String {
    format!("{ENV_PREFIX}{}", long.to_uppercase().replace('-', "_"))
}

impl Flags {
    /// Parses the command line, the environment and the `--config` file (flag > environment >
    /// file > default). Problems with the file's keys come back beside the flags so that
    /// `--check` can list them with the rest; a serving gateway refuses to start with any.
    pub fn load<I, T>(args: I) -> Result<(Self, Vec<ConfigFileError>), LoadError>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString>,
    {
        let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
        let mut command = Self::command_with_env();
        let mut problems = Vec::new();
        let file = config_path(&args).or_else(|| std::env::var_os(env_var("config")));
        if let Some(path) = file.filter(|path| !path.is_empty()).map(PathBuf::from) {
            let table = read_config_file(&path)?;
            (command, problems) = install_file_defaults(command, &path, table);
        }
        let matches = command
            .try_get_matches_from(args)
            .map_err(LoadError::Usage)?;
        let flags = Self::from_arg_matches(&matches).map_err(LoadError::Usage)?;
        Ok((flags, problems))
    }

    /// The command with an environment variable for every option but `--check`.
    pub fn command_with_env() -> clap::Command {
        Self::command().mut_args(|arg| {
            let Some(long) = arg
                .get_long()
                .filter(|long| !COMMAND_LINE_ONLY.contains(long))
                .map(str::to_owned)
            else {
                return arg;
            };
            let list = matches!(arg.get_action(), ArgAction::Append);
            let arg = arg.env(env_var(&long));
            // One variable holds a whole list.
            if list { arg.value_delimiter(',') } else { arg }
        })
    }

    /// The configuration the flags describe, validated.
    pub fn into_config(self) -> Result<Config, ConfigError> {
        let config = self.into_unvalidated_config()?;
        config.validate()?;
        Ok(config)
    }

    /// The configuration the flags describe, not yet [validated](Config::validate), so that
    /// `--check` can go on to the files after a rule is broken.
    pub fn into_unvalidated_config(self) -> Result<Config, ConfigError> {
        let sso = self.sso.into_config(self.jwt_ca_file.clone())?;
        let mut config = Config::new(self.listen, self.upstream);
        config.sso = sso;
        config.upstream_ca = self.upstream_ca;
        // clap's `requires` does not see values from the file (they are defaults).
        let half = |given, missing| ConfigError::Incomplete { given, missing };
        config.tls = match (self.tls_cert, self.tls_key) {
            (Some(cert), Some(key)) => Some(TlsFiles::new(cert, key)),
            (Some(_), None) => return Err(half("--tls-cert", "--tls-key")),
            (None, Some(_)) => return Err(half("--tls-key", "--tls-cert")),
            (None, None) => None,
        };
        config.public_urls = self.public_urls;
        config.htpasswd = self.htpasswd;
        config.tokens_file = self.tokens_file;
        config.mlflow_auth_db = self.mlflow_auth_db;
        config.mlflow_auth_db_password_file = self.mlflow_auth_db_password_file;
        config.mlflow_auth_db_ca_file = self.mlflow_auth_db_ca_file;
        config.users_refresh = Duration::from_secs(self.users_refresh);
        config.jwt = match (self.jwt_issuer, self.jwt_audience) {
            (Some(issuer), Some(audience)) => Some(JwtIssuer {
                ca_file: self.jwt_ca_file,
                ..JwtIssuer::new(issuer, audience)
            }),
            (Some(_), None) => return Err(half("--jwt-issuer", "--jwt-audience")),
            (None, Some(_)) => return Err(half("--jwt-audience", "--jwt-issuer")),
            (None, None) if self.jwt_ca_file.is_some() && config.sso.is_none() => {
                return Err(half("--jwt-ca-file", "--jwt-issuer or --oidc-issuer"));
            }
            (None, None) => None,
        };
        config.cache_ttl = Duration::from_secs(self.cache_ttl);
        config.failed_login_limit = self.failed_login_limit;
        config.log_format = self.log_format;
        config.metrics_listen = self.metrics_listen;
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
        if let Some(workers) = self.workers {
            config.workers = workers;
        }
        Ok(config)
    }
}

/// `--config FILE` or `--config=FILE` before a `--`.
fn config_path(args: &[OsString]) -> Option<OsString> {
    let mut args = args.iter().skip(1).take_while(|arg| *arg != "--");
    while let Some(arg) = args.next() {
        if arg == "--config" {
            return args.next().cloned();
        }
        if let Some(path) = arg.to_str().and_then(|a| a.strip_prefix("--config=")) {
            return Some(path.into());
        }
    }
    None
}

fn read_config_file(path: &std::path::Path) -> Result<toml::Table, LoadError> {
    let text = std::fs::read_to_string(path).map_err(|source| LoadError::Read {
        path: path.to_owned(),
        source,
    })?;
    text.parse().map_err(|source| LoadError::Parse {
        path: path.to_owned(),
        source,
    })
}

/// Makes each key of the file the default of its option, so that clap applies the precedence
/// and parses the values as it does for flags.
fn install_file_defaults(
    mut command: clap::Command,
    path: &std::path::Path,
    table: toml::Table,
) -> (clap::Command, Vec<ConfigFileError>) {
    let mut problems = Vec::new();
    for (key, value) in table {
        let problem = |kind| ConfigFileError {
            path: path.to_owned(),
            key: key.clone(),
            kind,
        };
        let arg = command.get_arguments().find(|arg| {
            arg.get_long() == Some(key.as_str()) && !COMMAND_LINE_ONLY.contains(&key.as_str())
        });
        let Some(arg) = arg else {
            problems.push(problem(ConfigFileErrorKind::UnknownKey));
            continue;
        };
        let parsed = file_values(arg, &value)
            .map_err(|expected| problem(ConfigFileErrorKind::WrongType { expected }));
        // Parsed here as well as by clap later, so that a bad value names the file and key.
        let checked = parsed.and_then(|values| match parse_alone(arg, &values) {
            Ok(()) => Ok(values),
            Err(reason) => Err(problem(ConfigFileErrorKind::InvalidValue { reason })),
        });
        match checked {
            Ok(values) => {
                let id = arg.get_id().clone();
                // clap does not count a default as given, so a required option set by the
                // file is no longer required.
                command = command.mut_arg(id, |arg| arg.default_values(values).required(false));
            }
            Err(problem) => problems.push(problem),
        }
    }
    (command, problems)
}

/// Parses `values` with `arg`'s value parser, in a command of its own (the real one would
/// also judge the other options); what clap says, without `error: ` and usage, if it fails.
fn parse_alone(arg: &clap::Arg, values: &[String]) -> Result<(), String> {
    if matches!(arg.get_action(), ArgAction::SetTrue) {
        return Ok(());
    }
    let long = arg.get_long().unwrap_or("value").to_owned();
    let value_name = arg
        .get_value_names()
        .and_then(|names| names.first())
        .map_or("VALUE", |name| name.as_str())
        .to_owned();
    let alone = clap::Arg::new("value")
        .long(long.clone())
        .value_name(value_name)
        .value_parser(arg.get_value_parser().clone())
        .action(ArgAction::Append);
    let argv = values.iter().map(|value| format!("--{long}={value}"));
    let parsed = clap::Command::new("mlflow-gateway")
        .arg(alone)
        .try_get_matches_from(std::iter::once("mlflow-gateway".to_owned()).chain(argv));
    parsed.map(drop).map_err(|error| {
        let text = error.to_string();
        let first = text.lines().next().unwrap_or_default();
        first.strip_prefix("error: ").unwrap_or(first).to_owned()
    })
}

/// The option's values as clap would read them from a command line, or the type expected.
fn file_values(arg: &clap::Arg, value: &toml::Value) -> Result<Vec<String>, &'static str> {
    use std::any::TypeId;
    use toml::Value;
    let integer = [
        TypeId::of::<u64>(),
        TypeId::of::<u32>(),
        TypeId::of::<usize>(),
    ]
    .into_iter()
    .any(|id| arg.get_value_parser().type_id() == id);
    let scalar = |value: &Value| match value {
        Value::Integer(n) if integer => Ok(n.to_string()),
        Value::String(s) if !integer => Ok(s.clone()),
        _ if integer => Err("an integer"),
        _ => Err("a string"),
    };
    match arg.get_action() {
        ArgAction::SetTrue => match value {
            Value::Boolean(b) => Ok(vec![b.to_string()]),
            _ => Err("a boolean (true or false)"),
        },
        ArgAction::Append => match value {
            Value::Array(items) => items
                .iter()
                .map(scalar)
                .collect::<Result<_, _>>()
                .map_err(|_| "an array of strings"),
            _ => Err("an array of strings"),
        },
        _ => scalar(value).map(|one| vec![one]),
    }
}

/// The command line, the environment or the `--config` file cannot be used.
#[derive(Debug)]
#[non_exhaustive]
pub enum LoadError {
    /// A usage error, or `--help`/`--version`: [`clap::Error::exit`] prints it.
    Usage(clap::Error),
    /// The `--config` file cannot be read.
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The `--config` file is not TOML.
    Parse {
        /// The file.
        path: PathBuf,
        /// Where and why.
        source: toml::de::Error,
    },
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Usage(error) => error.fmt(f),
            Self::Read { path, .. } => write!(f, "cannot read --config {}", path.display()),
            Self::Parse { path, .. } => write!(f, "--config {} is not valid TOML", path.display()),
        }
    }
}

impl std::error::Error for LoadError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Usage(_) => None,
            Self::Read { source, .. } => Some(source),
            Self::Parse { source, .. } => Some(source),
        }
    }
}

/// A key of the `--config` file that cannot be used.
#[derive(Debug)]
#[non_exhaustive]
pub struct ConfigFileError {
    /// The file.
    pub path: PathBuf,
    /// The key.
    pub key: String,
    /// What is wrong with it.
    pub kind: ConfigFileErrorKind,
}

/// What is wrong with a key of the `--config` file.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigFileErrorKind {
    /// No option has this name.
    UnknownKey,
    /// The value is not of the option's type.
    WrongType {
        /// The type the option takes.
        expected: &'static str,
    },
    /// The value is of the right type but not one the option takes.
    InvalidValue {
        /// Why, as for the flag.
        reason: String,
    },
}

impl fmt::Display for ConfigFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (path, key) = (self.path.display(), &self.key);
        match &self.kind {
            ConfigFileErrorKind::UnknownKey => write!(f, "{path}: unknown key {key:?}"),
            ConfigFileErrorKind::WrongType { expected } => {
                write!(f, "{path}: key {key:?} must be {expected}")
            }
            ConfigFileErrorKind::InvalidValue { reason } => {
                write!(f, "{path}: key {key:?}: {reason}")
            }
        }
    }
}

impl std::error::Error for ConfigFileError {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SsoConfig;

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
    fn workers_default_to_the_cores_and_are_validated() {
        let config = parse(&["--htpasswd=/h"]).unwrap();
        assert_eq!(config.workers, Config::default_workers());
        assert_eq!(parse(&["--htpasswd=/h", "--workers=3"]).unwrap().workers, 3);
        for bad in ["--workers=0", "--workers=1025"] {
            let error = parse(&["--htpasswd=/h", bad]).unwrap_err();
            assert!(matches!(error, ConfigError::Workers { .. }), "{error}");
            let named = bad.replace('=', " ");
            assert!(error.to_string().starts_with(&named), "{error}");
        }
        let error = Flags::try_parse_from([
            "mlflow-gateway",
            "--listen=127.0.0.1:1",
            "--upstream=http://h",
            "--workers=abc",
        ])
        .unwrap_err()
        .to_string();
        assert!(error.contains("'abc'"), "{error}");
        assert!(error.contains("--workers"), "{error}");
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
        let error = parse(&["--htpasswd=/h", "--jwt-ca-file=/ca.pem"]).unwrap_err();
        assert_eq!(
            error.to_string(),
            "--jwt-ca-file needs --jwt-issuer or --oidc-issuer"
        );
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

    /// The flags from `file` (a TOML text, after a listen address and an upstream) under
    /// `args`, and the problems with its keys.
    fn with_file(file: &str, args: &[&str]) -> (Option<Flags>, Vec<ConfigFileError>) {
        let file =
            format!("listen = \"127.0.0.1:9\"\nupstream = \"http://127.0.0.1:5000\"\n{file}");
        let table: toml::Table = file.parse().unwrap();
        let path = std::path::Path::new("/etc/gateway.toml");
        let (command, problems) = install_file_defaults(Flags::command(), path, table);
        let argv = std::iter::once("mlflow-gateway").chain(args.iter().copied());
        let matches = command.try_get_matches_from(argv).ok();
        let flags = matches.map(|m| Flags::from_arg_matches(&m).unwrap());
        (flags, problems)
    }

    #[test]
    fn file_keys_are_flag_names_with_toml_types() {
        let file = r#"
            htpasswd = "/h"
            exempt = ["/health", "/version"]
            mlflow-default-exemptions = true
            cache-ttl = 5
            realm = "file"
        "#;
        let (flags, problems) = with_file(file, &["--realm", "flag"]);
        assert!(problems.is_empty(), "{problems:?}");
        let config = flags.unwrap().into_config().unwrap();
        assert_eq!(config.listen.port(), 9);
        assert_eq!(config.exempt, ["/health", "/version"]);
        assert!(config.mlflow_default_exemptions);
        assert_eq!(config.cache_ttl, Duration::from_secs(5));
        assert_eq!(config.realm, "flag");
        // A flag replaces a list from the file rather than adding to it.
        let (flags, _) = with_file(file, &["--exempt", "/other"]);
        assert_eq!(flags.unwrap().exempt, ["/other"]);
    }

    #[test]
    fn unknown_keys_and_wrong_types_name_the_key_and_the_file() {
        let file = r#"
            lsiten = "127.0.0.1:8"
            cache-ttl = "60"
            exempt = "/health"
            forward-authorization = "yes"
            realm = 7
            check = true
            user-header = "not a header"
        "#;
        let (_, problems) = with_file(file, &[]);
        let shown: Vec<String> = problems.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                r#"/etc/gateway.toml: key "cache-ttl" must be an integer"#,
                r#"/etc/gateway.toml: unknown key "check""#,
                r#"/etc/gateway.toml: key "exempt" must be an array of strings"#,
                r#"/etc/gateway.toml: key "forward-authorization" must be a boolean (true or false)"#,
                r#"/etc/gateway.toml: unknown key "lsiten""#,
                r#"/etc/gateway.toml: key "realm" must be a string"#,
                "/etc/gateway.toml: key \"user-header\": invalid value 'not a header' for \
                 '--user-header <NAME>': invalid HTTP header name",
            ]
        );
    }

    #[test]
    fn pairs_from_the_file_are_checked_like_flags() {
        let file = r#"
            htpasswd = "/h"
            tls-cert = "/c"
        "#;
        let (flags, problems) = with_file(file, &[]);
        assert!(problems.is_empty());
        let error = flags.unwrap().into_config().unwrap_err();
        assert_eq!(error.to_string(), "--tls-cert needs --tls-key");
    }

    #[test]
    fn the_config_path_comes_before_a_double_dash() {
        let args = |list: &[&str]| list.iter().map(OsString::from).collect::<Vec<_>>();
        let found = |list: &[&str]| config_path(&args(list));
        assert_eq!(found(&["g", "--config", "/a"]), Some("/a".into()));
        assert_eq!(found(&["g", "--config=/b"]), Some("/b".into()));
        assert_eq!(found(&["g", "--", "--config", "/a"]), None);
        assert_eq!(found(&["g"]), None);
    }

    #[test]
    fn no_option_takes_a_secret_value() {
        // Secrets are named by their files, which ps, the environment and the config file
        // may show; so every option about one takes a FILE.
        for arg in Flags::command().get_arguments() {
            let long = arg.get_long().unwrap();
            if ["password", "secret", "token", "key"]
                .iter()
                .any(|word| long.contains(word))
            {
                let names: Vec<&str> = arg
                    .get_value_names()
                    .unwrap_or_default()
                    .iter()
                    .map(|name| name.as_str())
                    .collect();
                assert_eq!(names, ["FILE"], "--{long}");
            }
        }
    }

    #[test]
    fn every_option_but_check_has_its_variable() {
        let command = Flags::command_with_env();
        for arg in command.get_arguments() {
            let long = arg.get_long().unwrap();
            let env = arg.get_env().map(|env| env.to_string_lossy().into_owned());
            let expected = (long != "check").then(|| env_var(long));
            assert_eq!(env, expected, "--{long}");
        }
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
    /// The five options browser sign-in needs.
    const SSO: [&str; 5] = [
        "--oidc-issuer=https://login.example.com/realms/ml",
        "--oidc-client-id=mlflow",
        "--oidc-client-secret-file=/run/secrets/oidc-client",
        "--oidc-redirect-url=https://mlflow.example.com/_gateway/callback",
        "--session-secret-file=/run/secrets/session.key",
    ];

    /// The configuration of [`SSO`] with `extra`, whose options replace those of `SSO`.
    fn with_sso(extra: &[&str]) -> Result<Config, ConfigError> {
        let name = |arg: &str| arg.split('=').next().unwrap_or_default().to_owned();
        let replaced: Vec<String> = extra.iter().map(|arg| name(arg)).collect();
        let kept = SSO.into_iter().filter(|arg| !replaced.contains(&name(arg)));
        parse(&kept.chain(extra.iter().copied()).collect::<Vec<_>>())
    }

    /// The configuration of the five options every sign-in needs, as [`with_sso`] gives them.
    fn sso_of_the_five() -> SsoConfig {
        SsoConfig::new(
            "https://login.example.com/realms/ml",
            "mlflow",
            "/run/secrets/oidc-client",
            "https://mlflow.example.com/_gateway/callback"
                .parse()
                .unwrap(),
            "/run/secrets/session.key",
        )
    }

    #[test]
    fn sso_alone_is_a_configuration_with_every_default() {
        let config = with_sso(&[]).unwrap();
        assert!(config.htpasswd.is_none() && config.jwt.is_none());
        let expected = sso_of_the_five();
        assert_eq!(config.sso, Some(expected));
        let sso = config.sso.unwrap();
        assert_eq!(sso.session_lifetime, Duration::from_secs(28800));
        assert_eq!(
            (sso.user_claim.as_str(), sso.groups_claim.as_str()),
            ("email", "groups")
        );
        assert!(!sso.end_session && sso.admin_group.is_none() && sso.ca_file.is_none());
        assert!(parse(&["--htpasswd=/h"]).unwrap().sso.is_none());
    }

    #[test]
    fn jwt_ca_file_serves_the_oidc_issuer_too() {
        let config = with_sso(&["--jwt-ca-file=/etc/idp-ca.pem"]).unwrap();
        let ca_file = config.sso.unwrap().ca_file.unwrap();
        assert_eq!(ca_file.to_str(), Some("/etc/idp-ca.pem"));
        let loopback = [
            "--oidc-issuer=http://127.0.0.1:9000",
            "--oidc-client-id=c",
            "--oidc-client-secret-file=/s",
            "--oidc-redirect-url=http://127.0.0.1:8080/_gateway/callback",
            "--session-secret-file=/k",
        ];
        parse(&loopback).unwrap();
        let with_ca = parse(&[&loopback[..], &["--jwt-ca-file=/ca.pem"]].concat());
        assert!(matches!(with_ca, Err(ConfigError::JwtCaWithoutHttps)));
    }

    #[test]
    fn the_five_sso_options_come_together() {
        for (index, flag) in SSO.iter().enumerate() {
            let name = flag.split_once('=').unwrap().0;
            // One alone needs the first of the others.
            let error = parse(&[flag]).unwrap_err();
            let first_other = SSO[usize::from(index == 0)].split_once('=').unwrap().0;
            assert_eq!(error.to_string(), format!("{name} needs {first_other}"));
            // All but one names the one missing.
            let mut others = SSO.to_vec();
            others.remove(index);
            let error = parse(&others).unwrap_err();
            assert!(
                matches!(&error, ConfigError::Incomplete { missing, .. } if *missing == name),
                "{name}: {error}"
            );
        }
    }

    #[test]
    fn allow_lists_and_admins_need_the_oidc_issuer() {
        for extra in [
            "--allowed-email-domain=example.com",
            "--allowed-email=alice@example.com",
            "--allowed-group=mlflow-users",
            "--admin-group=mlflow-admins",
            "--oidc-end-session",
        ] {
            let error = parse(&["--htpasswd=/h", extra]).unwrap_err();
            let flag = extra.split('=').next().unwrap();
            assert_eq!(error.to_string(), format!("{flag} needs --oidc-issuer"));
        }
    }

    #[test]
    fn every_sso_option_reaches_the_config() {
        let sso = with_sso(&[
            "--oidc-scopes=openid email groups offline_access",
            "--oidc-user-claim=preferred_username",
            "--oidc-groups-claim=roles",
            "--session-lifetime=3600",
            "--allowed-email-domain=Example.COM",
            "--allowed-email-domain=example.org",
            "--allowed-email=Ops@Partner.io",
            "--allowed-group=mlflow-users",
            "--admin-group=ML-Admins",
            "--oidc-end-session",
        ])
        .unwrap()
        .sso
        .unwrap();
        assert_eq!(sso.scopes, ["openid", "email", "groups", "offline_access"]);
        assert_eq!(sso.user_claim, "preferred_username");
        assert_eq!(sso.groups_claim, "roles");
        assert_eq!(sso.session_lifetime, Duration::from_secs(3600));
        // Emails and domains compare case-insensitively; groups exactly.
        assert_eq!(sso.allowed_email_domains, ["example.com", "example.org"]);
        assert_eq!(sso.allowed_emails, ["ops@partner.io"]);
        assert_eq!(sso.allowed_groups, ["mlflow-users"]);
        assert_eq!(sso.admin_group.as_deref(), Some("ML-Admins"));
        assert!(sso.end_session);
    }

    #[test]
    fn lists_of_sso_options_take_commas() {
        let argv = [
            &[
                "mlflow-gateway",
                "--listen=127.0.0.1:1",
                "--upstream=http://127.0.0.1:2",
            ][..],
            &SSO,
            &[
                "--allowed-email-domain=a.example,b.example",
                "--allowed-email=x@a.example,y@b.example",
                "--allowed-group=g1,g2",
                "--allowed-group=g3",
            ],
        ]
        .concat();
        let matches = Flags::command_with_env()
            .try_get_matches_from(argv)
            .unwrap();
        let flags = Flags::from_arg_matches(&matches).unwrap();
        let sso = flags.into_config().unwrap().sso.unwrap();
        assert_eq!(sso.allowed_email_domains, ["a.example", "b.example"]);
        assert_eq!(sso.allowed_emails, ["x@a.example", "y@b.example"]);
        assert_eq!(sso.allowed_groups, ["g1", "g2", "g3"]);
    }

    /// The SSO option `flag` set to `value` is refused, naming the flag and the value.
    #[track_caller]
    fn refused(flag: &str, value: &str) -> String {
        let arg = format!("{flag}={value}");
        let error = with_sso(&[&arg]).unwrap_err();
        let ConfigError::InvalidSsoValue {
            flag: named,
            value: shown,
            ..
        } = &error
        else {
            panic!("{arg}: {error:?}");
        };
        assert_eq!((*named, shown.as_str()), (flag, value), "{error}");
        let message = error.to_string();
        assert!(
            message.starts_with(&format!("{flag} {value:?} ")),
            "{message}"
        );
        message
    }

    #[test]
    fn sso_values_are_validated_naming_the_flag_and_the_value() {
        let redirect = "--oidc-redirect-url";
        for (value, reason) in [
            ("/_gateway/callback", "absolute"),
            ("mlflow.example.com", "absolute"),
            ("ftp://mlflow.example.com/_gateway/callback", "http(s)"),
            ("https://mlflow.example.com/callback", "/_gateway/callback"),
            (
                "https://mlflow.example.com/_gateway/callback/",
                "/_gateway/callback",
            ),
            (
                "https://mlflow.example.com/mlflow/_gateway/callback",
                "/_gateway/callback",
            ),
            (
                "https://mlflow.example.com/_gateway/callback?next=/",
                "query",
            ),
            (
                "https://mlflow.example.com/_gateway/callback#top",
                "fragment",
            ),
            ("http://mlflow.example.com/_gateway/callback", "loopback"),
            ("http://10.0.0.5:8080/_gateway/callback", "loopback"),
            ("not a url", "not a URL"),
        ] {
            let message = refused(redirect, value);
            assert!(message.contains(reason), "{value}: {message}");
        }
        for value in [
            "http://idp.example.com",
            "http://10.0.0.1:8080",
            "idp.example.com",
            "",
        ] {
            refused("--oidc-issuer", value);
        }
        refused("--oidc-scopes", "email profile");
        refused("--oidc-scopes", "");
        refused("--session-lifetime", "59");
        refused("--session-lifetime", "2592001");
        for value in [
            "alice",
            "a@b@example.com",
            "@example.com",
            "alice@",
            "al ice@x",
        ] {
            let message = refused("--allowed-email", value);
            assert!(message.contains("exactly one @"), "{message}");
        }
        refused("--allowed-email-domain", "@example.com");
        refused("--allowed-email-domain", "");
        for flag in [
            "--allowed-group",
            "--admin-group",
            "--oidc-client-id",
            "--oidc-user-claim",
            "--oidc-groups-claim",
        ] {
            refused(flag, "");
        }
    }

    #[test]
    fn sso_edges_that_are_accepted() {
        for extra in [
            "--oidc-redirect-url=http://127.0.0.1:8080/_gateway/callback",
            "--oidc-redirect-url=http://localhost/_gateway/callback",
            "--oidc-redirect-url=https://mlflow.example.com:8443/_gateway/callback",
            "--oidc-issuer=http://[::1]:9000/realms/ml",
            "--session-lifetime=60",
            "--session-lifetime=2592000",
            "--oidc-scopes=openid",
        ] {
            with_sso(&[extra]).unwrap_or_else(|error| panic!("{extra}: {error}"));
        }
    }

    #[test]
    fn a_password_in_an_sso_url_is_never_shown() {
        for arg in [
            "--oidc-redirect-url=https://u:hunter2@mlflow.example.com/_gateway/callback",
            "--oidc-redirect-url=https://u:hunter2@mlflow.example.com/_gateway/callback#x",
            "--oidc-redirect-url=https://u:hunter2 @mlflow.example.com/_gateway/callback",
            "--oidc-issuer=https://u:hunter2@login.example.com",
        ] {
            let error = with_sso(&[arg]).unwrap_err();
            let shown = format!("{error} {error:?}");
            assert!(!shown.contains("hunter2"), "{shown}");
            assert!(
                matches!(error, ConfigError::InvalidSsoValue { .. }),
                "{shown}"
            );
        }
    }

    /// Every SSO option as (name, value); lists comma-separated.
    const SSO_SETTINGS: [(&str, &str); 14] = [
        ("oidc-issuer", "https://login.example.com/realms/ml"),
        ("oidc-client-id", "mlflow"),
        ("oidc-client-secret-file", "/run/secrets/oidc-client"),
        (
            "oidc-redirect-url",
            "https://mlflow.example.com/_gateway/callback",
        ),
        ("session-secret-file", "/run/secrets/session.key"),
        ("oidc-scopes", "openid email groups"),
        ("oidc-user-claim", "preferred_username"),
        ("oidc-groups-claim", "roles"),
        ("session-lifetime", "3600"),
        ("allowed-email-domain", "Example.com,example.org"),
        ("allowed-email", "ops@partner.io"),
        ("allowed-group", "mlflow-users,ml-admins"),
        ("admin-group", "ml-admins"),
        ("oidc-end-session", "true"),
    ];

    /// Set in the child process that reads [`SSO_SETTINGS`] from the environment.
    const FROM_ENV_CHILD: &str = "SSO_SETTINGS_FROM_ENV";

    fn sso_from_env_only() -> Option<SsoConfig> {
        let matches = Flags::command_with_env()
            .try_get_matches_from(["mlflow-gateway"])
            .unwrap();
        let flags = Flags::from_arg_matches(&matches).unwrap();
        flags.into_config().unwrap().sso
    }

    #[test]
    fn sso_from_flags_the_environment_and_a_file_is_the_same() {
        if std::env::var_os(FROM_ENV_CHILD).is_some() {
            // The child: reports what the environment gave, for the parent to compare.
            println!("{FROM_ENV_CHILD}={:?}", sso_from_env_only());
            return;
        }
        let mut expected = sso_of_the_five();
        expected.scopes = vec!["openid".into(), "email".into(), "groups".into()];
        expected.user_claim = "preferred_username".into();
        expected.groups_claim = "roles".into();
        expected.session_lifetime = Duration::from_secs(3600);
        expected.allowed_email_domains = vec!["example.com".into(), "example.org".into()];
        expected.allowed_emails = vec!["ops@partner.io".into()];
        expected.allowed_groups = vec!["mlflow-users".into(), "ml-admins".into()];
        expected.admin_group = Some("ml-admins".into());
        expected.end_session = true;

        let flags: Vec<String> = SSO_SETTINGS
            .iter()
            .map(|(name, value)| match *value {
                "true" => format!("--{name}"),
                _ => format!("--{name}={value}"),
            })
            .collect();
        let argv = [
            "mlflow-gateway",
            "--listen=127.0.0.1:9",
            "--upstream=http://127.0.0.1:5",
        ]
        .into_iter()
        .map(str::to_owned)
        .chain(flags);
        let matches = Flags::command_with_env()
            .try_get_matches_from(argv)
            .unwrap();
        let from_flags = Flags::from_arg_matches(&matches).unwrap().into_config();
        assert_eq!(from_flags.unwrap().sso.as_ref(), Some(&expected));

        let file = r#"
            oidc-issuer = "https://login.example.com/realms/ml"
            oidc-client-id = "mlflow"
            oidc-client-secret-file = "/run/secrets/oidc-client"
            oidc-redirect-url = "https://mlflow.example.com/_gateway/callback"
            session-secret-file = "/run/secrets/session.key"
            oidc-scopes = "openid email groups"
            oidc-user-claim = "preferred_username"
            oidc-groups-claim = "roles"
            session-lifetime = 3600
            allowed-email-domain = ["Example.com", "example.org"]
            allowed-email = ["ops@partner.io"]
            allowed-group = ["mlflow-users", "ml-admins"]
            admin-group = "ml-admins"
            oidc-end-session = true
        "#;
        let (from_file, problems) = with_file(file, &[]);
        assert!(problems.is_empty(), "{problems:?}");
        let from_file = from_file.unwrap().into_config().unwrap().sso;
        assert_eq!(from_file.as_ref(), Some(&expected));

        // std::env::set_var is unsafe (other threads read the environment), so the
        // environment is given to a child run of this very test.
        let output = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "flags::tests::sso_from_flags_the_environment_and_a_file_is_the_same",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(FROM_ENV_CHILD, "1")
            .env(env_var("listen"), "127.0.0.1:9")
            .env(env_var("upstream"), "http://127.0.0.1:5")
            .envs(SSO_SETTINGS.map(|(name, value)| (env_var(name), value)))
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "{stdout}");
        let line = stdout
            .lines()
            .find_map(|line| line.split_once(&format!("{FROM_ENV_CHILD}=")))
            .map(|(_, shown)| shown);
        let expected = format!("{:?}", Some(&expected));
        assert_eq!(line, Some(expected.as_str()), "{stdout}");
    }
    #[test]
    fn what_check_prints_of_sso_reads_back_as_the_same_config() {
        let config = with_sso(&[
            "--allowed-email=ops@partner.io",
            "--allowed-group=a,b",
            "--admin-group=a",
            "--oidc-end-session",
            "--jwt-ca-file=/etc/ca.pem",
        ])
        .unwrap();
        let printed = config.to_string();
        for line in [
            r#"oidc-issuer = "https://login.example.com/realms/ml""#,
            r#"oidc-client-secret-file = "/run/secrets/oidc-client""#,
            r#"oidc-scopes = "openid email profile""#,
            "session-lifetime = 28800",
            r#"allowed-email = ["ops@partner.io"]"#,
            "oidc-end-session = true",
            r#"jwt-ca-file = "/etc/ca.pem""#,
        ] {
            assert!(
                printed.lines().any(|l| l == line),
                "{line} not in\n{printed}"
            );
        }
        let table: toml::Table = printed.parse().unwrap();
        let path = std::path::Path::new("/etc/gateway.toml");
        let (command, problems) = install_file_defaults(Flags::command(), path, table);
        assert!(problems.is_empty(), "{problems:?}");
        let matches = command.try_get_matches_from(["mlflow-gateway"]).unwrap();
        let read_back = Flags::from_arg_matches(&matches).unwrap().into_config();
        assert_eq!(read_back.unwrap().sso, config.sso);
    }
}
