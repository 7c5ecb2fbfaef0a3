//! What `build()` rejects ([`JwtBuildError`]) and what fetching keys runs into ([`JwtError`]).

use std::{error::Error, fmt, sync::Arc};

use http::{StatusCode, Uri};
use tower_mlflow_core::BoxError;

#[cfg(doc)]
use super::JwtBuilder;
use super::{Jwt, JwtAlgorithm};

/// Why a [`JwtBuilder`] could not build.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum JwtBuildError {
    /// Neither [`JwtBuilder::issuer`] nor [`JwtBuilder::any_issuer`] was set (or the
    /// issuer is empty).
    MissingIssuer,
    /// Both [`JwtBuilder::issuer`] and [`JwtBuilder::any_issuer`] were set.
    ConflictingIssuer,
    /// Neither [`JwtBuilder::audience`] nor [`JwtBuilder::any_audience`] was set.
    MissingAudience,
    /// Both [`JwtBuilder::audience`] and [`JwtBuilder::any_audience`] were set.
    ConflictingAudience,
    /// [`JwtBuilder::any_issuer`] without [`JwtBuilder::jwks_uri`]: there is nothing to
    /// discover keys from.
    MissingKeySource,
    /// A URL (the JWKS URL, or the discovery URL made from the issuer) cannot be used.
    Url {
        /// Which setting: `"jwks_uri"` or `"issuer"`.
        setting: &'static str,
        /// What is wrong with it.
        problem: JwtErrorKind,
    },
    /// The algorithm list is empty.
    NoAlgorithms,
    /// An HMAC algorithm was allowed; keys from a JWKS are public.
    SymmetricAlgorithm(JwtAlgorithm),
    /// [`JwtBuilder::timeout`] is zero.
    ZeroTimeout,
    /// The TLS configuration could not be built.
    Tls,
    /// [`JwtBuilder::cache_ttl`] is zero. (To turn the cache off, set
    /// [`JwtBuilder::max_cached_tokens`] to zero.)
    ZeroCacheTtl,
    /// [`JwtBuilder::cache_ttl`] is longer than [`Jwt::MAX_CACHE_TTL`].
    CacheTtlTooLong,
    /// The operating system's random number generator could not provide the token cache's
    /// key.
    RandomUnavailable,
    /// PEM given to [`JwtBuilder::root_certificates_pem`] cannot be used.
    #[cfg(feature = "jwt-tls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "jwt-tls")))]
    RootCertificates {
        /// Which call's PEM, counting from 0.
        pem: usize,
        /// Which certificate in it cannot be used as a trust anchor, counting from 0; `None`
        /// when the PEM is malformed or holds no certificate.
        certificate: Option<usize>,
    },
}

impl JwtBuildError {
    pub(super) fn url(setting: &'static str, problem: JwtErrorKind) -> Self {
        Self::Url { setting, problem }
    }
}

impl fmt::Display for JwtBuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MissingIssuer => {
                f.pad("no issuer: set `issuer`, or `any_issuer` with a `jwks_uri`")
            }
            Self::ConflictingIssuer => f.pad("both `issuer` and `any_issuer` are set"),
            Self::MissingAudience => {
                f.pad("no audience: set `audience`, or `any_audience` to accept any")
            }
            Self::ConflictingAudience => f.pad("both `audience` and `any_audience` are set"),
            Self::MissingKeySource => f.pad("no key source: `any_issuer` needs a `jwks_uri`"),
            Self::Url { setting, problem } => write!(f, "unusable {setting} URL: {problem}"),
            Self::NoAlgorithms => f.pad("the algorithm list is empty"),
            Self::SymmetricAlgorithm(alg) => {
                write!(
                    f,
                    "{alg:?} is an HMAC algorithm; JWKS keys are public and cannot be HMAC secrets"
                )
            }
            Self::ZeroTimeout => f.pad("the `timeout` is zero"),
            Self::Tls => f.pad("cannot build the TLS configuration"),
            Self::ZeroCacheTtl => f.pad(
                "the token cache ttl must be greater than zero (`max_cached_tokens(0)` turns the cache off)",
            ),
            Self::CacheTtlTooLong => write!(
                f,
                "the token cache ttl must be at most {} s",
                Jwt::MAX_CACHE_TTL.as_secs()
            ),
            Self::RandomUnavailable => f.pad("no randomness for the token cache key"),
            #[cfg(feature = "jwt-tls")]
            Self::RootCertificates {
                pem,
                certificate: Some(index),
            } => write!(
                f,
                "root certificates PEM #{pem}: certificate #{index} is not a usable trust anchor"
            ),
            #[cfg(feature = "jwt-tls")]
            Self::RootCertificates {
                pem,
                certificate: None,
            } => write!(
                f,
                "root certificates PEM #{pem} is malformed or holds no certificate"
            ),
        }
    }
}

impl Error for JwtBuildError {}

/// The keys could not be fetched: the authenticator answers 503 while it has none.
///
/// Its text names the URL and the failure; it never contains a token. A transport failure
/// ([`JwtErrorKind::Request`]) keeps its cause in [`source`](Error::source). Two errors are
/// equal when they name the same URL and kind; the cause is not compared.
#[derive(Clone, Debug)]
pub struct JwtError {
    url: Box<str>,
    kind: JwtErrorKind,
    /// Shared, since every request waiting for one fetch gets a clone of its error.
    source: Option<Arc<dyn Error + Send + Sync>>,
}

impl JwtError {
    pub(super) fn new(uri: &Uri, kind: JwtErrorKind) -> Self {
        Self::from_url(&uri.to_string(), kind)
    }

    pub(super) fn from_url(url: &str, kind: JwtErrorKind) -> Self {
        Self {
            url: url.into(),
            kind,
            source: None,
        }
    }

    pub(super) fn with_source(mut self, source: BoxError) -> Self {
        self.source = Some(source.into());
        self
    }

    /// The URL that failed (discovery document or JWKS).
    #[must_use]
    pub fn url(&self) -> &str {
        &self.url
    }

    /// What went wrong.
    #[must_use]
    pub fn kind(&self) -> &JwtErrorKind {
        &self.kind
    }
}

impl fmt::Display for JwtError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "fetching JWT keys from {}: {}", self.url, self.kind)
    }
}

impl Error for JwtError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        self.source.as_deref().map(|e| e as &(dyn Error + 'static))
    }
}

impl PartialEq for JwtError {
    fn eq(&self, other: &Self) -> bool {
        self.url == other.url && self.kind == other.kind
    }
}

impl Eq for JwtError {}

/// What went wrong fetching keys, or with a key-source URL.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum JwtErrorKind {
    /// Not an absolute `http://` or `https://` URL.
    InvalidUrl,
    /// `http://` to a host that is not loopback, without
    /// [`JwtBuilder::allow_insecure_http`].
    InsecureUrl,
    /// `https://` without the `jwt-tls` feature.
    HttpsUnsupported,
    /// Connecting or reading failed; [`JwtError`]'s [`source`](Error::source) says why.
    Request,
    /// No complete answer within [`JwtBuilder::timeout`].
    Timeout,
    /// The answer was not 200 OK.
    Status(StatusCode),
    /// The body exceeded this many bytes.
    TooLarge(usize),
    /// The body is not a JSON object.
    InvalidJson,
    /// The document lacks this field (or it has the wrong type).
    MissingField(&'static str),
    /// The discovery document names another issuer.
    IssuerMismatch {
        /// The `issuer` the document names.
        found: Box<str>,
    },
    /// The JWKS holds no key that may verify an allowed algorithm.
    NoUsableKeys,
}

impl fmt::Display for JwtErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidUrl => f.pad("not an absolute http(s) URL"),
            Self::InsecureUrl => {
                f.pad("plain http to a non-loopback host (see `allow_insecure_http`)")
            }
            Self::HttpsUnsupported => f.pad("https needs the `jwt-tls` feature"),
            Self::Request => f.pad("request failed"),
            Self::Timeout => f.pad("timed out"),
            Self::Status(status) => write!(f, "status {status}"),
            Self::TooLarge(limit) => write!(f, "response over {limit} bytes"),
            Self::InvalidJson => f.pad("response is not a JSON object"),
            Self::MissingField(field) => write!(f, "no `{field}` in the document"),
            Self::IssuerMismatch { found } => write!(f, "discovery names issuer {found:?}"),
            Self::NoUsableKeys => f.pad("no usable signature key"),
        }
    }
}
