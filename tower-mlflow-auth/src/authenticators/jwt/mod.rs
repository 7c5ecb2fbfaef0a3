//! [`Jwt`]: bearer JWTs verified against an issuer's published keys (JWKS), found directly or
//! through OpenID Connect discovery. See [`Jwt`] for what is checked and how keys are kept.
//!
//! ```
//! use tower_mlflow_auth::{AuthLayer, authenticators::Jwt};
//!
//! let jwt = Jwt::builder()
//!     .issuer("http://127.0.0.1:8080/realms/ml")
//!     .audience("mlflow")
//!     .build()
//!     .unwrap();
//! let layer = AuthLayer::new(jwt);
//! # let _ = layer;
//! ```

mod algorithm;
mod builder;
mod claims;
mod error;
mod fetch;
mod keys;
mod refresh;
#[cfg(test)]
mod tests;

use std::{fmt, sync::Arc, time::Duration};

use secrecy::ExposeSecret;

pub use self::{
    algorithm::JwtAlgorithm,
    builder::JwtBuilder,
    claims::ClaimPath,
    error::{JwtBuildError, JwtError, JwtErrorKind},
};
use self::{
    claims::{Checks, Verdict},
    refresh::{Fetched, KeyStore},
};
use crate::{Authenticator, Authorization, Challenge, Credentials};

/// Authenticates bearer JWTs against an issuer's published keys (JWKS), found directly or
/// through OpenID Connect discovery.
///
/// ```
/// use std::time::Duration;
/// use tower_mlflow_auth::{AuthLayer, authenticators::Jwt};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// // Keys from http://127.0.0.1:8080/realms/ml/.well-known/openid-configuration → jwks_uri.
/// let jwt = Jwt::builder()
///     .issuer("http://127.0.0.1:8080/realms/ml")
///     .audience("mlflow")
///     .subject_claim("preferred_username")
///     .admin_if_claim("groups", "mlflow-admins")
///     .copy_claim("email")
///     .leeway(Duration::from_secs(30))
///     .build()?;
/// let layer = AuthLayer::new(jwt);
/// # let _ = layer;
/// # Ok(())
/// # }
/// ```
///
/// # What is checked
///
/// - The signature, with a key from the JWKS: the token's `kid` selects the key (a token
///   without `kid` is tried against at most four keys that fit its `alg`). The token's `alg`
///   must be on the allow-list (default: RS256/384/512, PS256/384/512, ES256, ES384, EdDSA),
///   must fit the key's type and curve, and must equal the JWK's `alg` when the JWK names one.
///   `none` is not an algorithm here, HMAC is refused at build time and `oct` keys in a JWKS
///   are ignored, so a public key can never be used as an HMAC secret. RSA keys under 2048
///   bits, encryption keys (`use: enc`) and tokens with a `crit` header are refused.
/// - `exp` (required), `nbf` (when present), both with a leeway (default 60 s).
/// - `iss`: required and equal to the configured issuer, unless [`JwtBuilder::any_issuer`].
/// - `aud`: required and one of the configured audiences. There is no silent default: the
///   builder fails with [`JwtBuildError::MissingAudience`] unless an audience is set or
///   [`JwtBuilder::any_audience`] says that any (or no) `aud` is fine. With `any_audience`
///   a token that carries an `aud` is accepted too — jwt-authorizer's "audience unset"
///   mode rejected those.
///
/// A token that fails any check is rejected (`Ok(None)`, a 401 with
/// `WWW-Authenticate: Bearer realm="…", error="invalid_token"`). When no keys could be
/// fetched yet, requests fail with [`JwtError`] (a 503).
///
/// # Keys
///
/// Keys are fetched on first use (or by [`Jwt::refresh`]), then:
///
/// - refetched when a token names an unknown `kid` (key rotation), at most once per
///   [`refetch_interval`](JwtBuilder::refetch_interval) (default 30 s, counted from the
///   start of the fetch that brought the current keys, or from the end of a failed one), and
///   only one fetch at a time — concurrent requests with the new `kid` wait for that one
///   fetch;
/// - refreshed in the background once they are older than
///   [`refresh_interval`](JwtBuilder::refresh_interval) (default 10 min);
/// - kept when a refetch fails, so an identity-provider outage does not lock users out.
///
/// Requests whose key is known never wait for a fetch: the key set is read lock-free and
/// swapped in as a whole after a fetch completes. Fetches time out after
/// [`timeout`](JwtBuilder::timeout) (default 10 s), bodies are capped (default 256 KiB),
/// redirects are not followed. With discovery, the document's `issuer` must equal the
/// configured issuer (OpenID Connect Discovery §4.3).
///
/// Plain `http://` is accepted for loopback hosts only, unless
/// [`allow_insecure_http`](JwtBuilder::allow_insecure_http); `https://` needs the `jwt-tls`
/// feature (rustls with the aws-lc-rs provider and the Mozilla roots from `webpki-roots`, or
/// your own CA certificates through `JwtBuilder::root_certificates_pem`).
///
/// # Principal
///
/// The subject comes from [`subject_claim`](JwtBuilder::subject_claim) (default `sub`; it
/// must be a non-empty string). The admin flag is set when any
/// [`admin_if_claim`](JwtBuilder::admin_if_claim) rule matches (the claim equals the value,
/// or is an array containing it) or [`admin_if_scope`](JwtBuilder::admin_if_scope) finds
/// the scope in `scope` (space-separated) or `scp`. [`copy_claim`](JwtBuilder::copy_claim)
/// copies string claims (and arrays of strings, joined with `,`) into the principal's
/// attributes.
///
/// # Crypto backend
///
/// `jsonwebtoken` is built with exactly one backend, `aws_lc_rs`, so it never reaches its
/// "no crypto provider" panic. aws-lc-rs is several times faster than the pure-Rust
/// backend for RSA and ECDSA verification, and avoids the `rsa` crate (RUSTSEC-2023-0071).
///
/// Cloning is cheap; clones share the key set and its refresh state.
#[derive(Clone)]
pub struct Jwt {
    checks: Arc<Checks>,
    keys: Arc<KeyStore>,
}

impl Jwt {
    /// The algorithms allowed unless [`JwtBuilder::algorithms`] says otherwise: every
    /// asymmetric one.
    pub const DEFAULT_ALGORITHMS: [JwtAlgorithm; 9] = [
        JwtAlgorithm::RS256,
        JwtAlgorithm::RS384,
        JwtAlgorithm::RS512,
        JwtAlgorithm::PS256,
        JwtAlgorithm::PS384,
        JwtAlgorithm::PS512,
        JwtAlgorithm::ES256,
        JwtAlgorithm::ES384,
        JwtAlgorithm::EdDSA,
    ];
    /// The default [`JwtBuilder::leeway`].
    pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(60);
    /// The default [`JwtBuilder::refresh_interval`].
    pub const DEFAULT_REFRESH_INTERVAL: Duration = Duration::from_secs(600);
    /// The default [`JwtBuilder::refetch_interval`].
    pub const DEFAULT_REFETCH_INTERVAL: Duration = Duration::from_secs(30);
    /// The default [`JwtBuilder::retry_interval`].
    pub const DEFAULT_RETRY_INTERVAL: Duration = Duration::from_secs(5);
    /// The default [`JwtBuilder::timeout`].
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
    /// The default [`JwtBuilder::max_response_size`], in bytes.
    pub const DEFAULT_MAX_RESPONSE_SIZE: usize = 256 * 1024;
    /// Subjects longer than this many bytes are refused rather than carried into logs and
    /// handlers.
    pub const MAX_SUBJECT_LEN: usize = 1024;

    /// Starts a builder.
    pub fn builder() -> JwtBuilder {
        JwtBuilder::default()
    }

    fn from_parts(checks: Checks, keys: KeyStore) -> Self {
        Self {
            checks: Arc::new(checks),
            keys: Arc::new(keys),
        }
    }

    /// Fetches the keys now (discovery first, if configured), so that a misconfiguration
    /// shows at start-up rather than on the first request. Concurrent calls share one fetch.
    ///
    /// # Errors
    ///
    /// [`JwtError`] when the discovery document or the JWKS cannot be fetched or used.
    pub async fn refresh(&self) -> Result<(), JwtError> {
        let seen = self.keys.snapshot();
        match self.keys.fetch(seen.as_ref(), Duration::ZERO).await {
            Fetched::Keys(_) => Ok(()),
            Fetched::Failed(e) => Err(e),
            Fetched::RateLimited => Err(self.keys.no_keys_error()),
        }
    }

    async fn verify(&self, token: &str) -> Result<Option<Authorization>, JwtError> {
        let Ok(header) = jsonwebtoken::decode_header(token) else {
            tracing::debug!("bearer token is not a JWT");
            return Ok(None);
        };
        let alg = header.alg;
        if !self.checks.allows(alg) {
            tracing::debug!(?alg, "JWT algorithm not allowed");
            return Ok(None);
        }
        // No critical header extension is understood here (RFC 7515 §4.1.11).
        if header.crit.is_some() {
            tracing::debug!("JWT has a crit header");
            return Ok(None);
        }
        let kid = header.kid.as_deref();

        // The common case: the key is in the current set, read without a lock or a clone.
        let seen = {
            let current = self.keys.peek();
            match current.as_ref() {
                Some(snapshot) => {
                    self.keys.schedule_refresh_if_due(snapshot);
                    match self.checks.judge(snapshot.value(), token, alg, kid) {
                        Verdict::Done(who) => return Ok(who),
                        Verdict::UnknownKey => Some(Arc::clone(snapshot)),
                    }
                }
                None => None,
            }
        };
        let seen = match seen {
            Some(seen) => seen,
            // Nothing fetched yet (or every fetch failed): fetch now or fail with 503.
            None => match self
                .keys
                .fetch(None, self.keys.timing().retry_interval)
                .await
            {
                Fetched::Keys(keys) => match self.checks.judge(keys.value(), token, alg, kid) {
                    Verdict::Done(who) => return Ok(who),
                    Verdict::UnknownKey => keys,
                },
                Fetched::Failed(e) => return Err(e),
                Fetched::RateLimited => return Err(self.keys.no_keys_error()),
            },
        };
        // An unknown key: the issuer may have rotated. Refetch, rate-limited; keys that
        // landed since `seen` was read count as the refetch.
        let refetch_interval = self.keys.timing().refetch_interval;
        match self.keys.fetch(Some(&seen), refetch_interval).await {
            Fetched::Keys(keys) => match self.checks.judge(keys.value(), token, alg, kid) {
                Verdict::Done(who) => Ok(who),
                Verdict::UnknownKey => {
                    tracing::debug!(?kid, "no key for JWT after refetch");
                    Ok(None)
                }
            },
            Fetched::Failed(_) | Fetched::RateLimited => {
                tracing::debug!(?kid, "no key for JWT");
                Ok(None)
            }
        }
    }
}

impl fmt::Debug for Jwt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let keys = self.keys.peek().as_ref().map_or(0, |k| k.value().len());
        f.debug_struct("Jwt")
            .field("source", self.keys.source())
            .field("algorithms", &self.checks.algorithms().collect::<Vec<_>>())
            .field("keys", &keys)
            .finish_non_exhaustive()
    }
}

impl Authenticator for Jwt {
    type Error = JwtError;

    async fn authenticate(
        &self,
        credentials: Credentials,
    ) -> Result<Option<Authorization>, JwtError> {
        let Credentials::Bearer { token } = credentials else {
            return Ok(None);
        };
        self.verify(token.expose_secret()).await
    }

    fn challenges(&self) -> &[Challenge] {
        &[Challenge::BEARER]
    }
}
