//! [`Jwt`]: bearer JWTs verified against an issuer's published keys (JWKS), found directly or
//! through OpenID Connect discovery, and remembered once verified. See [`Jwt`] for what is
//! checked, how keys are kept and how verified tokens are cached.
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
mod cache;
mod claims;
mod error;
mod fetch;
mod id_token;
mod keys;
mod refresh;
#[cfg(test)]
mod tests;

use std::{fmt, sync::Arc, time::Duration};

use secrecy::ExposeSecret;
use tokio::time::Instant;

pub use self::{
    algorithm::JwtAlgorithm,
    builder::JwtBuilder,
    claims::ClaimPath,
    error::{JwtBuildError, JwtError, JwtErrorKind},
    id_token::{IdTokenClaims, IdTokenError},
};
use self::{
    cache::TokenCache,
    claims::{Checks, Decoded, Verdict, Verified},
    refresh::{Fetched, KeyStore},
};
use crate::{
    Authenticator, Authorization, Challenge, Credentials, CredentialsRef, Scheme,
    authenticator::RevocationListener, authenticators::cache_key::CacheKey,
};

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
/// # Verified tokens are cached
///
/// Checking an RS256 signature costs about 30 µs of CPU, and a client sends the same token
/// for as long as it lives. An accepted token is therefore remembered, and later requests
/// with it are answered from memory, on [`AuthLayer`](crate::AuthLayer)'s synchronous path
/// ([`Authenticator::try_accept_now`]), for well under a microsecond, most of it the keyed
/// PRF of the token:
///
/// - **Key**: a keyed PRF of the whole token under a random 32-byte key drawn when the
///   authenticator is built: the 128-bit tag of AES-256-GCM-SIV (RFC 8452) over an empty
///   message with the token as associated data, under one fixed nonce (GCM-SIV is built to
///   stay secure when nonces repeat; sealing is then deterministic). With AES-NI and CLMUL it
///   costs a fraction of a cycle per byte: under half of HMAC-SHA256's cost for a 531-byte
///   RS256 token, even with SHA-NI. The token itself is never stored.
/// - **Value**: the principal, the token's `exp` and `nbf`, and the key that verified it.
/// - **Expiry**: the earlier of `exp` (plus the leeway) and
///   [`cache_ttl`](JwtBuilder::cache_ttl) after the check (default
///   [`Jwt::DEFAULT_CACHE_TTL`], 60 s). `exp` (plus the leeway) is checked against the wall
///   clock when the token is cached and becomes a deadline on tokio's monotonic clock, which
///   each hit compares with its one clock read: an expired token is refused even when
///   cached, up to a second before a full check would refuse it. A wall clock stepped
///   forward after that does not end the entry sooner; the time to live bounds the
///   difference.
/// - **Failures are never cached**: a bad signature, a wrong `iss` or `aud`, an expired
///   token or a missing subject is checked in full every time, and so is a token whose `exp`
///   or `nbf` is not a whole number of seconds.
/// - **Bound**: at most [`max_cached_tokens`](JwtBuilder::max_cached_tokens) tokens (default
///   [`Jwt::DEFAULT_MAX_CACHED_TOKENS`]). A new token in a full cache drops the expired
///   ones and, if that frees less than an eighth of the bound, arbitrary live ones (in the
///   order of their keys, which no client can choose) until it does; the dropped tokens are
///   simply checked again. `max_cached_tokens(0)` turns the cache off.
/// - **Key rotation**: a token stays cached only while the key that verified it (same `kid`,
///   same key material by RFC 7638 thumbprint, same algorithm allowed) is in the current
///   key set. When a refetched JWKS drops a key, its tokens are refused at once and leave
///   the cache. Hits also start the background refresh when the keys are due, so a dropped
///   key is noticed within [`refresh_interval`](JwtBuilder::refresh_interval) even if every
///   request is a hit.
/// - **Revocation**: a cache that wraps this authenticator
///   [subscribes](Authenticator::subscribe_revocations); when a refetched JWKS drops a key,
///   it is told [`Revoked::All`](crate::authenticator::Revoked), since a token names no
///   user before it is verified. With a subscriber, the keys are also refreshed on time by a
///   task of their own. Such a cache is not needed and knows nothing of `exp`: put `Jwt`
///   beside a `Cached`, not inside it (`first_of(Cached::new(htpasswd)?, jwt)`).
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
/// # ID tokens
///
/// [`Jwt::verify_id_token`] checks an OpenID Connect ID token for browser sign-in: the same
/// checks, with the client id as audience, plus `nonce`, `azp`, `iat` and `sub`, returning
/// [`IdTokenClaims`]. ID tokens bypass the token cache.
///
/// # Crypto backend
///
/// `jsonwebtoken` is built with exactly one backend, `aws_lc_rs`, so it never reaches its
/// "no crypto provider" panic. aws-lc-rs is several times faster than the pure-Rust
/// backend for RSA and ECDSA verification, and avoids the `rsa` crate (RUSTSEC-2023-0071).
///
/// Cloning is cheap; clones share the key set, its refresh state and the token cache.
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
    /// The default [`JwtBuilder::cache_ttl`]: a minute.
    pub const DEFAULT_CACHE_TTL: Duration = Duration::from_secs(60);
    /// The longest [`JwtBuilder::cache_ttl`] accepted: one day.
    pub const MAX_CACHE_TTL: Duration = Duration::from_secs(24 * 60 * 60);
    /// The default [`JwtBuilder::max_cached_tokens`].
    pub const DEFAULT_MAX_CACHED_TOKENS: u64 = 10_000;

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

    /// A cached token's principal, when it is still admitted under the current keys.
    fn cached(&self, tokens: &TokenCache, key: &CacheKey) -> Option<Authorization> {
        let current = self.keys.peek();
        let snapshot = current.as_ref()?;
        // The one clock read of a hit, for the entry's deadline and the keys' age alike.
        let now = Instant::now();
        // Hits must not keep the keys from being refreshed: a dropped key ends its tokens.
        // Asked only when the keys are due, which `schedule_refresh_if_due` would find out
        // with a second clock read. Its other duty, starting a revocation watcher that could
        // not start without a runtime, is done by the full check that cached the token, or
        // else by this call once the keys are due, which is as soon as the watcher would
        // have fetched.
        if now.saturating_duration_since(snapshot.loaded_at())
            >= self.keys.timing().refresh_interval
        {
            self.keys.schedule_refresh_if_due(snapshot);
        }
        tokens.lookup(key, snapshot.value(), now)
    }

    async fn verify(&self, token: &str) -> Result<Option<Verified>, JwtError> {
        match self
            .verify_with(token, &|decoded| self.checks.bearer(&decoded))
            .await?
        {
            Ok(verified) => Ok(Some(verified)),
            Err(reason) => {
                tracing::debug!(%reason, "JWT rejected");
                Ok(None)
            }
        }
    }

    /// Checks the token's header, finds its key (refetching the keys when it names an
    /// unknown one) and `accept`s its claims once signature, `exp`, `nbf`, `iss` and `aud`
    /// passed. `Err` only when no keys could be fetched at all.
    async fn verify_with<T>(
        &self,
        token: &str,
        accept: &(impl Fn(Decoded<'_>) -> Result<T, IdTokenError> + Sync),
    ) -> Result<Result<T, IdTokenError>, JwtError> {
        let Ok(header) = jsonwebtoken::decode_header(token) else {
            return Ok(Err(IdTokenError::Malformed));
        };
        let alg = header.alg;
        // No critical header extension is understood here (RFC 7515 §4.1.11).
        if !self.checks.allows(alg) || header.crit.is_some() {
            return Ok(Err(IdTokenError::Algorithm));
        }
        let kid = header.kid.as_deref();

        // The common case: the key is in the current set, read without a lock or a clone.
        let seen = {
            let current = self.keys.peek();
            match current.as_ref() {
                Some(snapshot) => {
                    self.keys.schedule_refresh_if_due(snapshot);
                    match self.checks.judge(snapshot.value(), token, alg, kid, accept) {
                        Verdict::Done(outcome) => return Ok(outcome),
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
                Fetched::Keys(keys) => {
                    match self.checks.judge(keys.value(), token, alg, kid, accept) {
                        Verdict::Done(outcome) => return Ok(outcome),
                        Verdict::UnknownKey => keys,
                    }
                }
                Fetched::Failed(e) => return Err(e),
                Fetched::RateLimited => return Err(self.keys.no_keys_error()),
            },
        };
        // An unknown key: the issuer may have rotated. Refetch, rate-limited; keys that
        // landed since `seen` was read count as the refetch.
        let refetch_interval = self.keys.timing().refetch_interval;
        match self.keys.fetch(Some(&seen), refetch_interval).await {
            Fetched::Keys(keys) => match self.checks.judge(keys.value(), token, alg, kid, accept) {
                Verdict::Done(outcome) => Ok(outcome),
                Verdict::UnknownKey => Ok(Err(IdTokenError::UnknownKey)),
            },
            Fetched::Failed(_) | Fetched::RateLimited => Ok(Err(IdTokenError::UnknownKey)),
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
            .field("cached_tokens", &self.keys.tokens().map(TokenCache::len))
            .finish_non_exhaustive()
    }
}

impl Authenticator for Jwt {
    type Error = JwtError;

    async fn authenticate(
        &self,
        credentials: Credentials,
    ) -> Result<Option<Authorization>, JwtError> {
        let Credentials::Bearer { token } = &credentials else {
            return Ok(None);
        };
        // No cache, or a token it cannot key: verified every time.
        let cache = self
            .keys
            .tokens()
            .and_then(|tokens| Some((tokens, tokens.key_for(token.expose_secret())?)));
        let Some((tokens, key)) = cache else {
            let verified = self.verify(token.expose_secret()).await?;
            return Ok(verified.map(|verified| verified.principal));
        };
        if let Some(principal) = self.cached(tokens, &key) {
            return Ok(Some(principal));
        }
        let verified = self.verify(token.expose_secret()).await?;
        Ok(verified.map(|verified| tokens.remember(key, verified)))
    }

    /// A cached token, answered without a future or a signature check.
    fn try_accept_now(&self, credentials: &CredentialsRef<'_>) -> Option<Authorization> {
        if credentials.scheme() != Scheme::Bearer {
            return None;
        }
        let tokens = self.keys.tokens()?;
        self.cached(tokens, &tokens.key_for(credentials.expose_secret())?)
    }

    /// Bearer tokens only, so that [`first_of`](crate::first_of) goes past this
    /// authenticator for Basic credentials, on the fast path too, whichever comes first.
    fn accepts(&self, credentials: &CredentialsRef<'_>) -> bool {
        credentials.scheme() == Scheme::Bearer
    }

    /// Tells `listener` when a refetched JWKS drops a key; see
    /// [Verified tokens are cached](Jwt#verified-tokens-are-cached).
    fn subscribe_revocations(&self, listener: RevocationListener) {
        self.keys.subscribe(listener);
    }

    fn challenges(&self) -> &[Challenge] {
        &[Challenge::BEARER]
    }
}
