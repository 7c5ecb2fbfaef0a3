//! What can go wrong: a row that cannot be used, a configuration
//! [`MlflowUsersBuilder::build`](super::MlflowUsersBuilder::build) refuses, and failures at
//! run time.

use std::fmt;

#[cfg(feature = "mlflow-users-postgres")]
use super::postgres::InvalidPostgresUrl;
use super::{store::UserStoreError, werkzeug::WerkzeugHashError};

/// Why one user's record cannot be used. Never contains the hash.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum InvalidUserRecord {
    /// The password hash cannot be used (unsupported, malformed or over the limits).
    Hash(WerkzeugHashError),
    /// The username appears more than once.
    Duplicate,
}

impl fmt::Display for InvalidUserRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Hash(e) => write!(f, "password hash: {e}"),
            Self::Duplicate => f.pad("username appears more than once"),
        }
    }
}

impl std::error::Error for InvalidUserRecord {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Hash(e) => Some(e),
            Self::Duplicate => None,
        }
    }
}

/// What [`MlflowUsersBuilder::build`] (and [`MlflowUsers::from_users`]) refuses.
///
/// [`MlflowUsersBuilder::build`]: super::MlflowUsersBuilder::build
/// [`MlflowUsers::from_users`]: super::MlflowUsers::from_users
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum MlflowUsersBuildError {
    /// A user's record cannot be used.
    InvalidRecord {
        /// The user.
        username: Box<str>,
        /// What is wrong with the record.
        reason: InvalidUserRecord,
    },
    /// A record has an empty username (MLflow refuses them; no Basic credential has one).
    EmptyUsername,
    /// Neither a store nor a table of users was given.
    NoSource,
    /// The PostgreSQL URL cannot be used.
    #[cfg(feature = "mlflow-users-postgres")]
    #[cfg_attr(docsrs, doc(cfg(feature = "mlflow-users-postgres")))]
    PostgresUrl {
        /// The URL as given, with its password replaced by `***`.
        url: Box<str>,
        /// What is wrong with it.
        reason: InvalidPostgresUrl,
    },
    /// The TLS settings for PostgreSQL cannot be used: a CA bundle given with
    /// [`postgres_ca_pem`](super::MlflowUsersBuilder::postgres_ca_pem) holds no usable PEM
    /// certificate.
    #[cfg(feature = "mlflow-users-postgres")]
    #[cfg_attr(docsrs, doc(cfg(feature = "mlflow-users-postgres")))]
    PostgresTls,
}

impl fmt::Display for MlflowUsersBuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidRecord { username, reason } => {
                write!(f, "MLflow user {username:?}: {reason}")
            }
            Self::EmptyUsername => f.pad("an MLflow user has an empty username"),
            Self::NoSource => {
                f.pad("MLflow users: no user store, database or in-memory table was given")
            }
            #[cfg(feature = "mlflow-users-postgres")]
            Self::PostgresUrl { url, reason } => {
                write!(f, "MLflow users: the PostgreSQL URL {url:?} {reason}")
            }
            #[cfg(feature = "mlflow-users-postgres")]
            Self::PostgresTls => {
                f.pad("MLflow users: unusable PostgreSQL TLS settings (a CA bundle without a usable PEM certificate)")
            }
        }
    }
}

impl std::error::Error for MlflowUsersBuildError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::InvalidRecord { reason, .. } => Some(reason),
            #[cfg(feature = "mlflow-users-postgres")]
            Self::PostgresUrl { reason, .. } => Some(reason),
            #[cfg(feature = "mlflow-users-postgres")]
            Self::PostgresTls => None,
            Self::EmptyUsername | Self::NoSource => None,
        }
    }
}

/// Why [`MlflowUsers`](super::MlflowUsers) could not decide on credentials (a 503 from the
/// layer).
///
/// Cloning is cheap: every authentication that waited for a failed load gets a clone.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum MlflowUsersError {
    /// The user store could not be read.
    Store(UserStoreError),
    /// The user's record cannot be used; other users are unaffected.
    InvalidRecord {
        /// The user who tried to log in.
        username: Box<str>,
        /// What is wrong with the record.
        reason: InvalidUserRecord,
    },
    /// A blocking task (a password check, or a load of the store) panicked or was cancelled
    /// by a runtime shutdown.
    TaskFailed,
}

impl fmt::Display for MlflowUsersError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Store(e) => write!(f, "MLflow user store: {e}"),
            Self::InvalidRecord { username, reason } => {
                write!(f, "MLflow user {username:?}: {reason}")
            }
            Self::TaskFailed => f.pad("MLflow password verification task failed"),
        }
    }
}

impl std::error::Error for MlflowUsersError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Store(e) => Some(e),
            Self::InvalidRecord { reason, .. } => Some(reason),
            Self::TaskFailed => None,
        }
    }
}
