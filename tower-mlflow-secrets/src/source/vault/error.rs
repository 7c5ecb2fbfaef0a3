//! [`VaultBuildError`]: what [`VaultBuilder::build`](super::VaultBuilder::build) rejects.

use std::{fmt, path::PathBuf};

/// A configuration error from [`VaultBuilder::build`](super::VaultBuilder::build).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum VaultBuildError {
    /// The address is not an absolute `http`/`https` URI.
    InvalidAddress,
    /// The address uses plain http to a host that is not loopback.
    PlainHttp,
    /// No authentication was configured.
    NoAuth,
    /// No secret path was configured.
    NoPath,
    /// A version was pinned on a KV v1 mount (v1 has no versions).
    VersionOnKvV1,
    /// The namespace is not a valid header value.
    InvalidNamespace,
    /// A CA or client-certificate file could not be read (the path is given).
    UnreadableFile(PathBuf),
    /// The CA bundle holds no valid certificate.
    InvalidCa,
    /// The client certificate or key is invalid.
    InvalidClientCert,
}

impl fmt::Display for VaultBuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidAddress => f.write_str("the Vault address is not an http(s) URL"),
            Self::PlainHttp => f.write_str(
                "the Vault address uses plain http to a host that is not loopback; use https",
            ),
            Self::NoAuth => f.write_str("no Vault authentication (token or AppRole) configured"),
            Self::NoPath => f.write_str("no Vault secret path configured"),
            Self::VersionOnKvV1 => f.write_str("a secret version can only be pinned on KV v2"),
            Self::InvalidNamespace => {
                f.write_str("the Vault namespace is not a valid header value")
            }
            Self::UnreadableFile(path) => write!(f, "cannot read {}", path.display()),
            Self::InvalidCa => f.write_str("the Vault CA bundle holds no valid PEM certificate"),
            Self::InvalidClientCert => {
                f.write_str("the Vault client certificate or key is invalid")
            }
        }
    }
}

impl std::error::Error for VaultBuildError {}
