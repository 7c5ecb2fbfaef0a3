//! [`ConfigError`]: what `Config::validate` and the flag conversion refuse.

use super::*;

/// A configuration [`Config::validate`] rejects.
#[derive(Debug)]
#[non_exhaustive]
pub enum ConfigError {
    /// None of `--htpasswd`, `--tokens-file`, `--mlflow-auth-db`, `--jwt-issuer`,
    /// `--oidc-issuer`: never an open proxy.
    NoAuthenticator,
    /// An option given without the one it needs (`--tls-cert` without `--tls-key`).
    Incomplete {
        /// The option given.
        given: &'static str,
        /// The option missing.
        missing: &'static str,
    },
    /// A duration flag set to zero.
    ZeroDuration {
        /// The flag.
        flag: &'static str,
    },
    /// `--max-connections 0`.
    ZeroMaxConnections,
    /// `--workers` outside 1 to [`Config::MAX_WORKERS`].
    Workers {
        /// The value given.
        workers: usize,
    },
    /// `--upstream-ca` with a plain-http upstream.
    UpstreamCaWithoutHttps,
    /// A `--jwt-issuer` that is neither `https://` nor `http://` to a loopback host.
    InsecureJwtIssuer {
        /// The issuer as given.
        issuer: String,
    },
    /// `--jwt-ca-file` with a plain-http issuer.
    JwtCaWithoutHttps,
    /// A browser sign-in setting (`--oidc-*`, `--session-lifetime`, the allow-lists,
    /// `--admin-group`) that cannot be used. Never a secret: those are only named by files.
    InvalidSsoValue {
        /// The flag.
        flag: &'static str,
        /// The value as given.
        value: String,
        /// What the flag takes.
        expected: &'static str,
    },
    /// A `postgresql://` `--mlflow-auth-db` with a password in it, which `ps` and logs would
    /// show; it belongs in `--mlflow-auth-db-password-file`.
    MlflowAuthDbPassword,
    /// `--mlflow-auth-db-password-file` or `--mlflow-auth-db-ca-file` with a SQLite
    /// `--mlflow-auth-db`.
    MlflowAuthDbNotPostgres {
        /// The flag.
        flag: &'static str,
    },
    /// A `postgresql://` `--mlflow-auth-db` that cannot be used.
    MlflowAuthDbUrl {
        /// Why, naming the URL.
        source: MlflowUsersBuildError,
    },
    /// A `--public-url` that is not an `http(s)` URL with a host.
    PublicUrl {
        /// Why, naming the URL.
        source: OriginCheckBuildError,
    },
    /// `--forward-authorization` with `--mlflow-assertion-secret-file`: with delegation the
    /// user's credentials stay at the gateway.
    ForwardAuthorizationWithDelegation,
    /// `--mlflow-admin-group` without `--mlflow-assertion-secret-file` and `--jwt-issuer`.
    AdminGroupWithoutDelegation,
    /// `--mlflow-admin-group ""`.
    EmptyAdminGroup,
    /// An `--exempt` or `--exempt-prefix` path that cannot be used.
    Exemption {
        /// The path as given.
        path: String,
        /// Why.
        source: ExemptionError,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoAuthenticator => f.write_str(
                "no authenticator configured: give --htpasswd, --tokens-file, --mlflow-auth-db, \
                 --jwt-issuer or --oidc-issuer (the gateway never runs as an open proxy)",
            ),
            Self::Incomplete { given, missing } => write!(f, "{given} needs {missing}"),
            Self::ZeroDuration { flag } => write!(f, "{flag} must be at least 1 second"),
            Self::ZeroMaxConnections => f.write_str("--max-connections must be at least 1"),
            Self::Workers { workers } => write!(
                f,
                "--workers {workers}: must be 1 to {}",
                Config::MAX_WORKERS
            ),
            Self::UpstreamCaWithoutHttps => {
                f.write_str("--upstream-ca needs an https:// --upstream")
            }
            Self::InsecureJwtIssuer { issuer } => write!(
                f,
                "--jwt-issuer {issuer:?} must be an https:// URL (plain http only to a loopback \
                 host: anyone on the path could substitute the keys)"
            ),
            Self::JwtCaWithoutHttps => {
                f.write_str("--jwt-ca-file needs an https:// --jwt-issuer or --oidc-issuer")
            }
            Self::InvalidSsoValue {
                flag,
                value,
                expected,
            } => write!(f, "{flag} {value:?} {expected}"),
            Self::MlflowAuthDbPassword => f.write_str(
                "--mlflow-auth-db must not contain a password (ps and logs show it): put it \
                 in a file given with --mlflow-auth-db-password-file",
            ),
            Self::MlflowAuthDbNotPostgres { flag } => {
                write!(f, "{flag} needs a postgresql:// --mlflow-auth-db")
            }
            Self::MlflowAuthDbUrl { .. } => f.write_str("invalid --mlflow-auth-db"),
            Self::ForwardAuthorizationWithDelegation => f.write_str(
                "--forward-authorization cannot be combined with --mlflow-assertion-secret-file \
                 (with delegation MLflow trusts the assertion; credentials stay at the gateway)",
            ),
            Self::AdminGroupWithoutDelegation => f.write_str(
                "--mlflow-admin-group needs --mlflow-assertion-secret-file and --jwt-issuer \
                 (groups come from the tokens' `groups` claim)",
            ),
            Self::EmptyAdminGroup => f.write_str("--mlflow-admin-group must not be empty"),
            Self::Exemption { path, .. } => write!(f, "invalid exemption {path:?}"),
            Self::PublicUrl { source } => match source {
                OriginCheckBuildError::InvalidOrigin { input, .. } => {
                    write!(f, "invalid --public-url {input:?}")
                }
                _ => f.write_str("invalid --public-url"),
            },
        }
    }
}

impl std::error::Error for ConfigError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Exemption { source, .. } => Some(source),
            Self::PublicUrl { source } => Some(source),
            Self::MlflowAuthDbUrl { source } => Some(source),
            _ => None,
        }
    }
}
