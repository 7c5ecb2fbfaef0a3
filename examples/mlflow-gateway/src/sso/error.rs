//! [`SsoError`]: why browser sign-in cannot be set up.

use std::{fmt, path::PathBuf};

use tower_mlflow_auth::session::{SessionCookieBuildError, SessionKeysError};
use tower_mlflow_core::BoxError;

/// Why browser sign-in cannot be set up ([`AssembleError::Sso`](crate::AssembleError::Sso)).
/// Its text names the file or the flag, never a secret.
#[derive(Debug)]
#[non_exhaustive]
pub enum SsoError {
    /// A file cannot be read.
    Read {
        /// The flag that names it.
        flag: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A secret file is not UTF-8 text.
    NotUtf8 {
        /// The flag that names it.
        flag: &'static str,
        /// The file.
        path: PathBuf,
    },
    /// `--oidc-client-secret-file` holds nothing but whitespace.
    EmptyClientSecret {
        /// The file.
        path: PathBuf,
    },
    /// `--session-secret-file` holds no usable key.
    SessionSecret {
        /// The file.
        path: PathBuf,
        /// Why (a line number at most, never a key).
        source: SessionKeysError,
    },
    /// The session cookie cannot be built (its host is not loopback on plain http).
    Cookie(SessionCookieBuildError),
    /// The issuer's settings are refused.
    Provider(BoxError),
}

impl fmt::Display for SsoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Read { flag, path, .. } => write!(f, "cannot read the {flag} {}", path.display()),
            Self::NotUtf8 { flag, path } => {
                write!(f, "the {flag} {} is not UTF-8 text", path.display())
            }
            Self::EmptyClientSecret { path } => write!(
                f,
                "the --oidc-client-secret-file {} is empty",
                path.display()
            ),
            Self::SessionSecret { path, .. } => write!(
                f,
                "the --session-secret-file {} holds no usable key",
                path.display()
            ),
            Self::Cookie(_) => f.write_str("cannot set up the session cookie"),
            Self::Provider(_) => f.write_str("cannot use the --oidc-issuer settings"),
        }
    }
}

impl std::error::Error for SsoError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Read { source, .. } => Some(source),
            Self::SessionSecret { source, .. } => Some(source),
            Self::Cookie(source) => Some(source),
            Self::Provider(source) => Some(&**source),
            Self::NotUtf8 { .. } | Self::EmptyClientSecret { .. } => None,
        }
    }
}
