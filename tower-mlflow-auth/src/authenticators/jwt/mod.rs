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

mod fetch;
mod keys;
#[cfg(test)]
mod tests;

use std::{
    error::Error,
    fmt,
    sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock},
    time::{Duration, Instant},
};

use http::{StatusCode, Uri};
use jsonwebtoken::{Validation, errors::ErrorKind as JwtErrorKindLib};
use secrecy::ExposeSecret;
use serde_json::Value;

use self::{
    fetch::{Fetcher, UrlPolicy},
    keys::{KeySet, Lookup},
};
use crate::{Authenticator, Authorization, Challenge, Credentials, Scheme};

pub use jsonwebtoken::Algorithm as JwtAlgorithm;

const DEFAULT_ALGORITHMS: [JwtAlgorithm; 9] = [
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
/// Subjects longer than this are refused rather than carried into logs and handlers.
const MAX_SUBJECT_LEN: usize = 1024;

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
///   builder fails with [`JwtConfigError::MissingAudience`] unless an audience is set or
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
///   [`refetch_interval`](JwtBuilder::refetch_interval) (default 30 s), and only one fetch at
///   a time — concurrent requests with the new `kid` wait for that one fetch;
/// - refreshed in the background once they are older than
///   [`refresh_interval`](JwtBuilder::refresh_interval) (default 10 min);
/// - kept when a refetch fails, so an identity-provider outage does not lock users out.
///
/// Requests whose key is known never wait for a fetch: the key set is swapped in after the
/// fetch completes. Fetches time out after [`http_timeout`](JwtBuilder::http_timeout)
/// (default 10 s), bodies are capped (default 256 KiB), redirects are not followed. With
/// discovery, the document's `issuer` must equal the configured issuer (OpenID Connect
/// Discovery §4.3).
///
/// Plain `http://` is accepted for loopback hosts only, unless
/// [`allow_insecure_http`](JwtBuilder::allow_insecure_http); `https://` needs the `jwt-tls`
/// feature (rustls with the aws-lc-rs provider and the Mozilla roots from `webpki-roots`, or
/// your own `rustls::ClientConfig` through `JwtBuilder::tls_config`).
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
    shared: Arc<Shared>,
}

struct Shared {
    checks: Checks,
    source: KeySource,
    fetcher: Fetcher,
    url_policy: UrlPolicy,
    timing: Timing,
    /// The current key set. Readers clone the `Arc` and let go; a fetch swaps it afterwards.
    keys: RwLock<Option<Arc<KeySet>>>,
    status: Mutex<FetchStatus>,
    /// Serialises fetches (single flight). Held across the network call, so only requests
    /// that need new keys ever wait on it.
    fetch_lock: tokio::sync::Mutex<()>,
}

#[derive(Debug)]
enum KeySource {
    Jwks(Uri),
    Discovery { issuer: Box<str>, document: Uri },
}

#[derive(Clone, Copy, Debug)]
struct Timing {
    refresh_interval: Duration,
    refetch_interval: Duration,
    retry_interval: Duration,
}

#[derive(Debug, Default)]
struct FetchStatus {
    /// Completed fetch attempts, successful or not.
    attempts: u64,
    last_attempt: Option<Instant>,
    last_success: Option<Instant>,
    /// The error of the latest attempt, if it failed.
    last_error: Option<JwtError>,
    /// The `jwks_uri` from the discovery document, forgotten when fetching it fails.
    discovered_jwks: Option<Uri>,
    background_refresh: bool,
}

/// Everything checked on a token and how its claims become a principal.
#[derive(Debug)]
struct Checks {
    algorithms: Vec<JwtAlgorithm>,
    /// One `Validation` per allowed algorithm: jsonwebtoken requires every algorithm of a
    /// `Validation` to belong to the key's family.
    validations: Vec<(JwtAlgorithm, Validation)>,
    subject: ClaimPath,
    admin_claims: Vec<(ClaimPath, Box<str>)>,
    admin_scopes: Vec<Box<str>>,
    copied: Vec<(ClaimPath, Box<str>)>,
}

impl Jwt {
    /// Starts a builder.
    pub fn builder() -> JwtBuilder {
        JwtBuilder::default()
    }

    /// Fetches the keys now (discovery first, if configured), so that a misconfiguration
    /// shows at start-up rather than on the first request. Concurrent calls share one fetch.
    ///
    /// # Errors
    ///
    /// [`JwtError`] when the discovery document or the JWKS cannot be fetched or used.
    pub async fn refresh(&self) -> Result<(), JwtError> {
        let seen = self.shared.status().attempts;
        match self.shared.fetch_keys(seen, Duration::ZERO).await {
            Fetched::Keys(_) => Ok(()),
            Fetched::Failed(e) => Err(e),
            Fetched::RateLimited => Err(self.shared.no_keys_error()),
        }
    }
}

impl fmt::Debug for Jwt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let keys = self.shared.current_keys().map_or(0, |k| k.len());
        f.debug_struct("Jwt")
            .field("source", &self.shared.source)
            .field("algorithms", &self.shared.checks.algorithms)
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
        Arc::clone(&self.shared).verify(token.expose_secret()).await
    }

    fn challenges(&self) -> &[Challenge] {
        &[Challenge::BEARER]
    }
}

enum Fetched {
    Keys(Arc<KeySet>),
    Failed(JwtError),
    RateLimited,
}

impl Shared {
    fn status(&self) -> MutexGuard<'_, FetchStatus> {
        self.status.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The fetch-attempt count and the key set, read together (a fetch updates both under
    /// the status lock).
    fn snapshot(&self) -> (u64, Option<Arc<KeySet>>) {
        let status = self.status();
        (status.attempts, self.current_keys())
    }

    fn current_keys(&self) -> Option<Arc<KeySet>> {
        self.keys
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn no_keys_error(&self) -> JwtError {
        self.status().last_error.clone().unwrap_or_else(|| {
            let url = match &self.source {
                KeySource::Jwks(uri) | KeySource::Discovery { document: uri, .. } => uri,
            };
            JwtError::new(url, JwtErrorKind::NoUsableKeys)
        })
    }

    async fn verify(self: Arc<Self>, token: &str) -> Result<Option<Authorization>, JwtError> {
        let Ok(header) = jsonwebtoken::decode_header(token) else {
            tracing::debug!("bearer token is not a JWT");
            return Ok(None);
        };
        let alg = header.alg;
        if !self.checks.algorithms.contains(&alg) {
            tracing::debug!(?alg, "JWT algorithm not allowed");
            return Ok(None);
        }
        // No critical header extension is understood here (RFC 7515 §4.1.11).
        if header.crit.is_some() {
            tracing::debug!("JWT has a crit header");
            return Ok(None);
        }
        let kid = header.kid.as_deref();

        self.schedule_refresh_if_due();
        let (mut seen, keys) = self.snapshot();
        let keys = match keys {
            Some(keys) => keys,
            // Nothing fetched yet (or every fetch failed): fetch now or fail with 503.
            None => match self.fetch_keys(seen, self.timing.retry_interval).await {
                Fetched::Keys(_) => match self.snapshot() {
                    (attempts, Some(keys)) => {
                        seen = attempts;
                        keys
                    }
                    (_, None) => return Err(self.no_keys_error()),
                },
                Fetched::Failed(e) => return Err(e),
                Fetched::RateLimited => return Err(self.no_keys_error()),
            },
        };
        match keys.lookup(kid, alg) {
            Lookup::Candidates(candidates) => {
                return Ok(self.checks.check(token, alg, &candidates));
            }
            Lookup::Incompatible => {
                tracing::debug!(?kid, ?alg, "JWT algorithm does not fit its key");
                return Ok(None);
            }
            Lookup::Unknown => {}
        }
        // An unknown key: the issuer may have rotated. Refetch, rate-limited; `seen` dates
        // from when these keys were read, so a fetch finished since then counts as ours.
        let keys = match self.fetch_keys(seen, self.timing.refetch_interval).await {
            Fetched::Keys(keys) => keys,
            Fetched::Failed(_) | Fetched::RateLimited => {
                tracing::debug!(?kid, "no key for JWT");
                return Ok(None);
            }
        };
        match keys.lookup(kid, alg) {
            Lookup::Candidates(candidates) => Ok(self.checks.check(token, alg, &candidates)),
            Lookup::Incompatible | Lookup::Unknown => {
                tracing::debug!(?kid, "no key for JWT after refetch");
                Ok(None)
            }
        }
    }

    /// Fetches a new key set unless another task completed a fetch while this one waited
    /// for the lock (then that result is used) or the last attempt is under `min_gap` old.
    async fn fetch_keys(&self, seen_attempts: u64, min_gap: Duration) -> Fetched {
        let _single_flight = self.fetch_lock.lock().await;
        {
            let status = self.status();
            if status.attempts != seen_attempts {
                return match (&status.last_error, self.current_keys()) {
                    (None, Some(keys)) => Fetched::Keys(keys),
                    (Some(e), _) => Fetched::Failed(e.clone()),
                    (None, None) => Fetched::RateLimited,
                };
            }
            if status.last_attempt.is_some_and(|t| t.elapsed() < min_gap) {
                return Fetched::RateLimited;
            }
        }
        let result = self.fetch_from_source().await;
        let mut status = self.status();
        status.attempts += 1;
        status.last_attempt = Some(Instant::now());
        match result {
            Ok(keys) => {
                let keys = Arc::new(keys);
                *self.keys.write().unwrap_or_else(PoisonError::into_inner) =
                    Some(Arc::clone(&keys));
                status.last_success = status.last_attempt;
                status.last_error = None;
                tracing::debug!(keys = keys.len(), "JWKS fetched");
                Fetched::Keys(keys)
            }
            Err(e) => {
                tracing::warn!(error = %e, "JWKS fetch failed; keeping the previous keys");
                status.last_error = Some(e.clone());
                Fetched::Failed(e)
            }
        }
    }

    async fn fetch_from_source(&self) -> Result<KeySet, JwtError> {
        let (jwks_uri, discovered) = match &self.source {
            KeySource::Jwks(uri) => (uri.clone(), false),
            KeySource::Discovery { issuer, document } => {
                let cached = self.status().discovered_jwks.clone();
                match cached {
                    Some(uri) => (uri, true),
                    None => {
                        let uri = self.discover(issuer, document).await?;
                        self.status().discovered_jwks = Some(uri.clone());
                        (uri, true)
                    }
                }
            }
        };
        let result = self.fetch_jwks(&jwks_uri).await;
        if result.is_err() && discovered {
            // The issuer may have moved its keys: look again next time.
            self.status().discovered_jwks = None;
        }
        result
    }

    async fn discover(&self, issuer: &str, document_uri: &Uri) -> Result<Uri, JwtError> {
        let document = self.fetcher.get_json(document_uri).await?;
        let fail = |kind| JwtError::new(document_uri, kind);
        let found = document
            .get("issuer")
            .and_then(Value::as_str)
            .ok_or(fail(JwtErrorKind::MissingField("issuer")))?;
        if found != issuer {
            return Err(fail(JwtErrorKind::IssuerMismatch {
                found: found.into(),
            }));
        }
        let jwks_uri = document
            .get("jwks_uri")
            .and_then(Value::as_str)
            .ok_or(fail(JwtErrorKind::MissingField("jwks_uri")))?;
        self.url_policy
            .check(jwks_uri)
            .map_err(|kind| JwtError::from_url(jwks_uri, kind))
    }

    async fn fetch_jwks(&self, uri: &Uri) -> Result<KeySet, JwtError> {
        let document = self.fetcher.get_json(uri).await?;
        let keys = KeySet::from_jwks(&document, &self.checks.algorithms)
            .ok_or_else(|| JwtError::new(uri, JwtErrorKind::MissingField("keys")))?;
        if keys.len() == 0 {
            return Err(JwtError::new(uri, JwtErrorKind::NoUsableKeys));
        }
        Ok(keys)
    }

    /// Starts a background refresh when the keys are older than `refresh_interval`.
    /// Requests go on with the current keys meanwhile.
    fn schedule_refresh_if_due(self: &Arc<Self>) {
        let seen = {
            let mut status = self.status();
            let due = !status.background_refresh
                && status
                    .last_success
                    .is_some_and(|t| t.elapsed() >= self.timing.refresh_interval)
                && status
                    .last_attempt
                    .is_none_or(|t| t.elapsed() >= self.timing.retry_interval);
            if !due {
                return;
            }
            status.background_refresh = true;
            status.attempts
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            self.status().background_refresh = false;
            return;
        };
        let shared = Arc::clone(self);
        runtime.spawn(async move {
            let retry = shared.timing.retry_interval;
            let _ = shared.fetch_keys(seen, retry).await;
            shared.status().background_refresh = false;
        });
    }
}

impl Checks {
    fn validation(&self, alg: JwtAlgorithm) -> Option<&Validation> {
        self.validations
            .iter()
            .find(|(a, _)| *a == alg)
            .map(|(_, v)| v)
    }

    /// Verifies the token with the first candidate key whose signature matches, then maps
    /// its claims to a principal.
    fn check(
        &self,
        token: &str,
        alg: JwtAlgorithm,
        candidates: &[&jsonwebtoken::DecodingKey],
    ) -> Option<Authorization> {
        let validation = self.validation(alg)?;
        for key in candidates {
            match jsonwebtoken::decode::<Value>(token, key, validation) {
                Ok(data) => return self.principal(&data.claims),
                Err(e) if *e.kind() == JwtErrorKindLib::InvalidSignature => continue,
                Err(e) => {
                    tracing::debug!(reason = %e, "JWT rejected");
                    return None;
                }
            }
        }
        tracing::debug!("JWT signature does not verify");
        None
    }

    fn principal(&self, claims: &Value) -> Option<Authorization> {
        let Some(subject) = self
            .subject
            .lookup(claims)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty() && s.len() <= MAX_SUBJECT_LEN)
        else {
            tracing::debug!(claim = %self.subject, "JWT has no usable subject claim");
            return None;
        };
        let admin_by_claim = self.admin_claims.iter().any(|(path, wanted)| {
            path.lookup(claims).is_some_and(|v| match v {
                Value::String(s) => s == wanted.as_ref(),
                Value::Array(items) => items.iter().any(|i| i.as_str() == Some(wanted)),
                _ => false,
            })
        });
        let admin_by_scope = !self.admin_scopes.is_empty() && {
            let scope = claims.get("scope").and_then(Value::as_str).unwrap_or("");
            let scp = claims.get("scp");
            self.admin_scopes.iter().any(|wanted| {
                scope.split(' ').any(|s| s == wanted.as_ref())
                    || match scp {
                        Some(Value::String(s)) => s.split(' ').any(|s| s == wanted.as_ref()),
                        Some(Value::Array(items)) => {
                            items.iter().any(|i| i.as_str() == Some(wanted))
                        }
                        _ => false,
                    }
            })
        };
        let mut principal = Authorization::new(subject, Scheme::Bearer)
            .with_admin(admin_by_claim || admin_by_scope);
        for (path, attribute) in &self.copied {
            let value = match path.lookup(claims) {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Array(items)) if items.iter().all(Value::is_string) => items
                    .iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(","),
                _ => continue,
            };
            principal = principal.with_attribute(attribute.clone(), value);
        }
        Some(principal)
    }
}

/// Where a claim sits in a token's payload: a top-level name, or a path into nested
/// objects such as Keycloak's `realm_access.roles`.
///
/// A `&str` is always one top-level name (claim names may contain dots, as in
/// `https://example.com/roles`); use [`ClaimPath::nested`] for a path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClaimPath(Box<[Box<str>]>);

impl ClaimPath {
    /// A top-level claim.
    #[must_use]
    pub fn new(name: impl Into<Box<str>>) -> Self {
        Self(Box::new([name.into()]))
    }

    /// A claim inside nested objects: `ClaimPath::nested(["realm_access", "roles"])`.
    #[must_use]
    pub fn nested<I, S>(segments: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<Box<str>>,
    {
        Self(segments.into_iter().map(Into::into).collect())
    }

    fn lookup<'a>(&self, claims: &'a Value) -> Option<&'a Value> {
        if self.0.is_empty() {
            return None;
        }
        self.0
            .iter()
            .try_fold(claims, |value, segment| value.get(segment.as_ref()))
    }
}

impl From<&str> for ClaimPath {
    fn from(name: &str) -> Self {
        Self::new(name)
    }
}

impl From<String> for ClaimPath {
    fn from(name: String) -> Self {
        Self::new(name)
    }
}

impl fmt::Display for ClaimPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, segment) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(".")?;
            }
            f.write_str(segment)?;
        }
        Ok(())
    }
}

/// Builds a [`Jwt`]; made by [`Jwt::builder`].
#[derive(Debug)]
#[must_use]
pub struct JwtBuilder {
    issuer: Option<String>,
    any_issuer: bool,
    audiences: Vec<String>,
    any_audience: bool,
    jwks_uri: Option<String>,
    algorithms: Option<Vec<JwtAlgorithm>>,
    leeway: Duration,
    subject: ClaimPath,
    admin_claims: Vec<(ClaimPath, Box<str>)>,
    admin_scopes: Vec<Box<str>>,
    copied: Vec<(ClaimPath, Box<str>)>,
    timing: Timing,
    http_timeout: Duration,
    max_response_size: usize,
    allow_insecure_http: bool,
    #[cfg(feature = "jwt-tls")]
    tls: Option<rustls::ClientConfig>,
}

impl Default for JwtBuilder {
    fn default() -> Self {
        Self {
            issuer: None,
            any_issuer: false,
            audiences: Vec::new(),
            any_audience: false,
            jwks_uri: None,
            algorithms: None,
            leeway: Duration::from_secs(60),
            subject: ClaimPath::new("sub"),
            admin_claims: Vec::new(),
            admin_scopes: Vec::new(),
            copied: Vec::new(),
            timing: Timing {
                refresh_interval: Duration::from_secs(600),
                refetch_interval: Duration::from_secs(30),
                retry_interval: Duration::from_secs(5),
            },
            http_timeout: Duration::from_secs(10),
            max_response_size: 256 * 1024,
            allow_insecure_http: false,
            #[cfg(feature = "jwt-tls")]
            tls: None,
        }
    }
}

impl JwtBuilder {
    /// The issuer: tokens must carry exactly this `iss`. Without
    /// [`jwks_uri`](Self::jwks_uri), keys are found through
    /// `{issuer}/.well-known/openid-configuration`, whose `issuer` must match too.
    pub fn issuer(mut self, issuer: impl Into<String>) -> Self {
        self.issuer = Some(issuer.into());
        self
    }

    /// Accepts any `iss` (or none). Only for a JWKS that a single issuer uses; requires
    /// [`jwks_uri`](Self::jwks_uri).
    pub fn any_issuer(mut self) -> Self {
        self.any_issuer = true;
        self
    }

    /// An accepted audience; call again to accept several. Tokens must carry an `aud` that
    /// names one of them.
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audiences.push(audience.into());
        self
    }

    /// Accepts tokens whatever their `aud` says, and tokens without one. Then any token of
    /// the issuer, including one minted for another service, is accepted here.
    pub fn any_audience(mut self) -> Self {
        self.any_audience = true;
        self
    }

    /// Fetches keys from this JWKS URL instead of discovering it from the issuer.
    pub fn jwks_uri(mut self, url: impl Into<String>) -> Self {
        self.jwks_uri = Some(url.into());
        self
    }

    /// The allowed signature algorithms (default: every asymmetric one). HMAC algorithms
    /// are refused: keys come from a public JWKS.
    pub fn algorithms(mut self, algorithms: impl IntoIterator<Item = JwtAlgorithm>) -> Self {
        self.algorithms = Some(algorithms.into_iter().collect());
        self
    }

    /// Clock-skew allowance for `exp` and `nbf` (default 60 s).
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
        self
    }

    /// The claim that names the principal (default `sub`), such as `preferred_username`,
    /// `email` or `client_id`. A token without it as a non-empty string is rejected.
    pub fn subject_claim(mut self, claim: impl Into<ClaimPath>) -> Self {
        self.subject = claim.into();
        self
    }

    /// Makes the principal an admin when `claim` equals `value` or is an array containing it
    /// (`groups` containing `mlflow-admins`, `role` equal to `admin`). Rules add up: any
    /// match is enough.
    pub fn admin_if_claim(
        mut self,
        claim: impl Into<ClaimPath>,
        value: impl Into<Box<str>>,
    ) -> Self {
        self.admin_claims.push((claim.into(), value.into()));
        self
    }

    /// Makes the principal an admin when the token grants `scope` (in the space-separated
    /// `scope` claim, or in `scp`).
    pub fn admin_if_scope(mut self, scope: impl Into<Box<str>>) -> Self {
        self.admin_scopes.push(scope.into());
        self
    }

    /// Copies a top-level string claim into the principal's attribute of the same name.
    pub fn copy_claim(self, claim: &str) -> Self {
        self.copy_claim_as(claim, claim)
    }

    /// Copies a string claim (or an array of strings, joined with `,`) into the attribute
    /// `attribute`. Claims of other types are skipped.
    pub fn copy_claim_as(
        mut self,
        claim: impl Into<ClaimPath>,
        attribute: impl Into<Box<str>>,
    ) -> Self {
        self.copied.push((claim.into(), attribute.into()));
        self
    }

    /// How old the keys may grow before a background refresh (default 10 min).
    pub fn refresh_interval(mut self, interval: Duration) -> Self {
        self.timing.refresh_interval = interval;
        self
    }

    /// The least time between two fetches caused by an unknown `kid` (default 30 s), so that
    /// tokens with made-up `kid`s cannot hammer the identity provider.
    pub fn refetch_interval(mut self, interval: Duration) -> Self {
        self.timing.refetch_interval = interval;
        self
    }

    /// The least time between fetch attempts after a failure (default 5 s).
    pub fn retry_interval(mut self, interval: Duration) -> Self {
        self.timing.retry_interval = interval;
        self
    }

    /// The deadline for one HTTP request, connection included (default 10 s).
    pub fn http_timeout(mut self, timeout: Duration) -> Self {
        self.http_timeout = timeout;
        self
    }

    /// The largest discovery document or JWKS accepted, in bytes (default 256 KiB).
    pub fn max_response_size(mut self, bytes: usize) -> Self {
        self.max_response_size = bytes;
        self
    }

    /// Allows `http://` URLs to hosts other than loopback. Anyone on the network path could
    /// then substitute keys and mint tokens: use only inside a trusted network.
    pub fn allow_insecure_http(mut self) -> Self {
        self.allow_insecure_http = true;
        self
    }

    /// The TLS configuration for `https://` fetches, for a private CA or client
    /// certificates. The default trusts the Mozilla roots (`webpki-roots`).
    #[cfg(feature = "jwt-tls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "jwt-tls")))]
    pub fn tls_config(mut self, config: rustls::ClientConfig) -> Self {
        self.tls = Some(config);
        self
    }

    /// Checks the configuration and builds the authenticator. No request is made here;
    /// call [`Jwt::refresh`] to fetch the keys up front.
    ///
    /// # Errors
    ///
    /// [`JwtConfigError`] for a missing issuer, audience or key source, a bad or insecure
    /// URL, an empty or HMAC algorithm list, or a zero timeout.
    pub fn build(self) -> Result<Jwt, JwtConfigError> {
        let url_policy = UrlPolicy {
            allow_insecure_http: self.allow_insecure_http,
        };
        let issuer = match (self.issuer, self.any_issuer) {
            (Some(_), true) => return Err(JwtConfigError::ConflictingIssuer),
            (Some(issuer), false) if !issuer.is_empty() => Some(issuer),
            (None, true) => None,
            _ => return Err(JwtConfigError::MissingIssuer),
        };
        let audiences = match (self.audiences.is_empty(), self.any_audience) {
            (false, true) => return Err(JwtConfigError::ConflictingAudience),
            (true, false) => return Err(JwtConfigError::MissingAudience),
            _ => self.audiences,
        };
        let source = match (self.jwks_uri, &issuer) {
            (Some(url), _) => KeySource::Jwks(
                url_policy
                    .check(&url)
                    .map_err(|problem| JwtConfigError::url("jwks_uri", problem))?,
            ),
            (None, Some(issuer)) => {
                let document = format!(
                    "{}/.well-known/openid-configuration",
                    issuer.trim_end_matches('/')
                );
                KeySource::Discovery {
                    issuer: issuer.as_str().into(),
                    document: url_policy
                        .check(&document)
                        .map_err(|problem| JwtConfigError::url("issuer", problem))?,
                }
            }
            (None, None) => return Err(JwtConfigError::MissingKeySource),
        };
        let algorithms = self
            .algorithms
            .unwrap_or_else(|| DEFAULT_ALGORITHMS.to_vec());
        if algorithms.is_empty() {
            return Err(JwtConfigError::NoAlgorithms);
        }
        if let Some(hmac) = algorithms.iter().find(|a| {
            matches!(
                a,
                JwtAlgorithm::HS256 | JwtAlgorithm::HS384 | JwtAlgorithm::HS512
            )
        }) {
            return Err(JwtConfigError::SymmetricAlgorithm(*hmac));
        }
        if self.http_timeout.is_zero() {
            return Err(JwtConfigError::ZeroTimeout);
        }
        let validations = algorithms
            .iter()
            .map(|&alg| {
                let mut v = Validation::new(alg);
                v.leeway = self.leeway.as_secs();
                v.validate_exp = true;
                v.validate_nbf = true;
                let mut required = vec!["exp"];
                if let Some(issuer) = &issuer {
                    v.set_issuer(&[issuer]);
                    required.push("iss");
                }
                if audiences.is_empty() {
                    v.validate_aud = false;
                } else {
                    v.set_audience(&audiences);
                    required.push("aud");
                }
                v.set_required_spec_claims(&required);
                (alg, v)
            })
            .collect();
        let fetcher = Fetcher::new(
            self.http_timeout,
            self.max_response_size,
            #[cfg(feature = "jwt-tls")]
            self.tls,
        )?;
        Ok(Jwt {
            shared: Arc::new(Shared {
                checks: Checks {
                    algorithms,
                    validations,
                    subject: self.subject,
                    admin_claims: self.admin_claims,
                    admin_scopes: self.admin_scopes,
                    copied: self.copied,
                },
                source,
                fetcher,
                url_policy,
                timing: self.timing,
                keys: RwLock::new(None),
                status: Mutex::new(FetchStatus::default()),
                fetch_lock: tokio::sync::Mutex::new(()),
            }),
        })
    }
}

/// Why a [`JwtBuilder`] could not build.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum JwtConfigError {
    /// Neither [`JwtBuilder::issuer`] nor [`JwtBuilder::any_issuer`] was set (or the issuer
    /// is empty).
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
    /// The HTTP timeout is zero.
    ZeroTimeout,
    /// The default TLS configuration could not be built.
    Tls,
}

impl JwtConfigError {
    fn url(setting: &'static str, problem: JwtErrorKind) -> Self {
        Self::Url { setting, problem }
    }
}

impl fmt::Display for JwtConfigError {
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
            Self::ZeroTimeout => f.pad("the HTTP timeout is zero"),
            Self::Tls => f.pad("cannot build the default TLS configuration"),
        }
    }
}

impl Error for JwtConfigError {}

/// The keys could not be fetched: the authenticator answers 503 while it has none.
///
/// Its text names the URL and the failure; it never contains a token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JwtError {
    url: Box<str>,
    kind: JwtErrorKind,
}

impl JwtError {
    fn new(uri: &Uri, kind: JwtErrorKind) -> Self {
        Self::from_url(&uri.to_string(), kind)
    }

    fn from_url(url: &str, kind: JwtErrorKind) -> Self {
        Self {
            url: url.into(),
            kind,
        }
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

impl Error for JwtError {}

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
    /// Connecting or reading failed.
    Request(Box<str>),
    /// No complete answer within the HTTP timeout.
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
            Self::Request(e) => write!(f, "request failed: {e}"),
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
