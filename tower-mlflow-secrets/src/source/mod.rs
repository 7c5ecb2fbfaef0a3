//! Where secrets come from: the [`SecretSource`] trait and the simple sources
//! [`Static`], [`Env`] and [`File`].
//!
//! A source only fetches; caching, retries and expiry live in
//! [`CachedSecret`](crate::CachedSecret). A source says whether a failure is worth retrying
//! ([`SourceError::transient`]) or not ([`SourceError::permanent`]), and may say how long the
//! secret it returns stays valid ([`Fetched::with_expires_in`]).
//!
//! ```
//! use secrecy::ExposeSecret;
//! use tower_mlflow_secrets::source::{SecretSource, Static};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let source = Static::new("s3cr3t-token");
//! let fetched = source.fetch().await.unwrap();
//! assert_eq!(fetched.secret().expose_secret(), "s3cr3t-token");
//! assert!(fetched.expires_in().is_none());
//! # }
//! ```

#[cfg(feature = "aws")]
#[cfg_attr(docsrs, doc(cfg(feature = "aws")))]
pub mod aws;
#[cfg(feature = "azure")]
#[cfg_attr(docsrs, doc(cfg(feature = "azure")))]
pub mod azure;
pub(crate) mod configured;
#[cfg(any(feature = "aws", feature = "azure"))]
mod endpoint;
mod env;
mod file;
#[cfg(any(feature = "vault", feature = "azure"))]
mod http;
#[cfg(any(feature = "vault", feature = "azure"))]
mod lifetime;
mod static_;
#[cfg(feature = "vault")]
#[cfg_attr(docsrs, doc(cfg(feature = "vault")))]
pub mod vault;

use std::{
    error::Error as StdError,
    fmt,
    future::Future,
    pin::Pin,
    time::{Duration, SystemTime},
};

use secrecy::SecretString;

#[cfg(feature = "aws")]
pub use self::aws::AwsSecretsManager;
#[cfg(feature = "azure")]
pub use self::azure::AzureKeyVault;
#[cfg(feature = "vault")]
pub use self::vault::Vault;
pub use self::{configured::ConfiguredSource, env::Env, file::File, static_::Static};
/// A boxed error, as used by tower (the workspace's one `BoxError`).
pub use tower_mlflow_core::BoxError;

/// Something that can fetch a secret: a file, an environment variable, a secret store.
///
/// Implementations must never put the secret into an error, a log event or a `Debug`
/// output. They should classify failures: [`SourceError::transient`] for failures a retry
/// may fix (network errors, timeouts, 5xx, throttling), [`SourceError::permanent`] for the
/// rest (not found, permission denied, malformed configuration); only transient failures are
/// retried by [`CachedSecret`](crate::CachedSecret).
pub trait SecretSource: Send + Sync + 'static {
    /// Fetches the current secret.
    fn fetch(&self) -> impl Future<Output = Result<Fetched, SourceError>> + Send;
}

/// Object-safe form of [`SecretSource`], used inside the cache.
pub(crate) trait DynSource: Send + Sync + 'static {
    fn fetch_boxed(
        &self,
    ) -> Pin<Box<dyn Future<Output = Result<Fetched, SourceError>> + Send + '_>>;
}

impl<S: SecretSource> DynSource for S {
    fn fetch_boxed(
        &self,
    ) -> Pin<Box<dyn Future<Output = Result<Fetched, SourceError>> + Send + '_>> {
        Box::pin(self.fetch())
    }
}

/// A fetched secret and, when the backend says so, how long it stays valid.
pub struct Fetched {
    secret: SecretString,
    expires_in: Option<Duration>,
}

impl Fetched {
    /// A secret with no expiry of its own (the cache's TTL applies).
    pub fn new(secret: SecretString) -> Self {
        Self {
            secret,
            expires_in: None,
        }
    }

    /// Sets how long the secret stays valid from now (a Vault lease duration, for example).
    /// The cache uses the shorter of this and its TTL.
    #[must_use]
    pub fn with_expires_in(mut self, valid_for: Duration) -> Self {
        self.expires_in = Some(valid_for);
        self
    }

    /// Sets the wall-clock time at which the secret expires (an Azure `exp`, for example).
    /// It is turned into a duration from now right away; a time in the past means "already
    /// expired" (the secret is used once and refetched on the next request).
    #[must_use]
    pub fn with_expires_at(self, at: SystemTime) -> Self {
        let valid_for = at
            .duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO);
        self.with_expires_in(valid_for)
    }

    /// The secret.
    pub fn secret(&self) -> &SecretString {
        &self.secret
    }

    /// How long the secret stays valid, counted from when it was fetched, if the source said.
    pub fn expires_in(&self) -> Option<Duration> {
        self.expires_in
    }

    /// Splits into the secret and the expiry.
    pub fn into_parts(self) -> (SecretString, Option<Duration>) {
        (self.secret, self.expires_in)
    }
}

impl fmt::Debug for Fetched {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fetched")
            .field("secret", &"[REDACTED]")
            .field("expires_in", &self.expires_in)
            .finish()
    }
}

/// Whether a failed fetch is worth retrying.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SourceErrorKind {
    /// A retry may succeed: network error, timeout, 5xx, throttling, a file being replaced.
    Transient,
    /// A retry will not help: not found, permission denied, malformed configuration.
    Permanent,
}

/// Why a source could not produce a secret. Its text never contains the secret.
pub struct SourceError {
    kind: SourceErrorKind,
    message: String,
    source: Option<BoxError>,
}

impl SourceError {
    /// A failure that a retry may fix. `message` must not contain the secret.
    pub fn transient(message: impl Into<String>) -> Self {
        Self {
            kind: SourceErrorKind::Transient,
            message: message.into(),
            source: None,
        }
    }

    /// A failure that a retry will not fix. `message` must not contain the secret.
    pub fn permanent(message: impl Into<String>) -> Self {
        Self {
            kind: SourceErrorKind::Permanent,
            message: message.into(),
            source: None,
        }
    }

    /// Attaches the underlying error (returned by [`Error::source`](StdError::source)).
    #[must_use]
    pub fn with_source(mut self, source: impl Into<BoxError>) -> Self {
        self.source = Some(source.into());
        self
    }

    /// Whether the failure is transient or permanent.
    pub fn kind(&self) -> SourceErrorKind {
        self.kind
    }

    /// Whether a retry may fix this failure.
    pub fn is_transient(&self) -> bool {
        self.kind == SourceErrorKind::Transient
    }
}

impl fmt::Debug for SourceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SourceError")
            .field("kind", &self.kind)
            .field("message", &self.message)
            .field("source", &self.source)
            .finish()
    }
}

impl fmt::Display for SourceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            SourceErrorKind::Transient => "transient",
            SourceErrorKind::Permanent => "permanent",
        };
        write!(f, "secret source failed ({kind}): {}", self.message)
    }
}

impl StdError for SourceError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn StdError + 'static))
    }
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;

    #[test]
    fn fetched_debug_hides_the_secret() {
        let fetched = Fetched::new(SecretString::from("hunter2-secret"));
        let text = format!("{fetched:?}");
        assert!(!text.contains("hunter2"), "{text}");
        assert_eq!(fetched.secret().expose_secret(), "hunter2-secret");
    }

    #[test]
    fn expiry_in_the_past_is_zero() {
        let fetched = Fetched::new(SecretString::from("x")).with_expires_at(SystemTime::UNIX_EPOCH);
        assert_eq!(fetched.expires_in(), Some(Duration::ZERO));
    }

    #[test]
    fn expiry_in_the_future_is_kept() {
        let fetched = Fetched::new(SecretString::from("x"))
            .with_expires_at(SystemTime::now() + Duration::from_secs(3600));
        let left = fetched.expires_in().unwrap_or_default();
        assert!(left > Duration::from_secs(3500) && left <= Duration::from_secs(3600));
    }

    #[test]
    fn error_kind_and_source() {
        let err =
            SourceError::transient("connection refused").with_source(std::io::Error::other("boom"));
        assert!(err.is_transient());
        assert_eq!(
            err.to_string(),
            "secret source failed (transient): connection refused"
        );
        assert!(StdError::source(&err).is_some());
        assert!(!SourceError::permanent("nope").is_transient());
    }
}
