//! [`MlflowAuthDb`]: `--mlflow-auth-db`, a SQLite path or a PostgreSQL URL.

use super::*;

/// MLflow's user database (`--mlflow-auth-db`): a SQLite file or a PostgreSQL URL.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum MlflowAuthDb {
    /// The path of MLflow's SQLite `basic_auth.db`.
    Sqlite(PathBuf),
    /// A `postgresql://` or `postgres://` URL (or MLflow's `postgresql+DRIVER://`); its
    /// password comes from a file, never the URL.
    Postgres(String),
}

impl MlflowAuthDb {
    /// Whether a PostgreSQL URL carries a password, in its user info or a `password=`
    /// parameter (the last `@` ends the user info, as for the library's redaction).
    fn has_password(&self) -> bool {
        let Self::Postgres(url) = self else {
            return false;
        };
        let after_scheme = url.split_once("://").map_or(url.as_str(), |(_, rest)| rest);
        let userinfo = after_scheme.rsplit_once('@').map_or("", |(info, _)| info);
        userinfo.contains(':')
            || url
                .split(['?', '&'])
                .skip(1)
                .any(|param| param.starts_with("password="))
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let Self::Postgres(url) = self else {
            return Ok(());
        };
        if self.has_password() {
            return Err(ConfigError::MlflowAuthDbPassword);
        }
        // Opens nothing: checks the URL and the TLS rule.
        MlflowUsers::builder()
            .postgres(url)
            .build()
            .map(drop)
            .map_err(|source| ConfigError::MlflowAuthDbUrl { source })
    }
}

impl std::str::FromStr for MlflowAuthDb {
    type Err = std::convert::Infallible;

    /// A `postgresql://`, `postgres://` or `postgresql+DRIVER://` URL, else a path.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let postgres = ["postgresql://", "postgres://", "postgresql+"]
            .iter()
            .any(|scheme| s.starts_with(scheme));
        Ok(if postgres {
            Self::Postgres(s.to_owned())
        } else {
            Self::Sqlite(s.into())
        })
    }
}

impl fmt::Display for MlflowAuthDb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Sqlite(path) => path.display().fmt(f),
            Self::Postgres(_) if self.has_password() => {
                f.write_str("a PostgreSQL URL with a password (not shown)")
            }
            Self::Postgres(url) => f.write_str(url),
        }
    }
}

impl fmt::Debug for MlflowAuthDb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let variant = match self {
            Self::Sqlite(_) => "Sqlite",
            Self::Postgres(_) => "Postgres",
        };
        f.debug_tuple(variant)
            .field(&format_args!("{self}"))
            .finish()
    }
}
