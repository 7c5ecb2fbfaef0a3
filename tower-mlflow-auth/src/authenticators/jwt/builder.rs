//! [`JwtBuilder`]: every setting of a [`Jwt`], checked once in [`JwtBuilder::build`].

use std::time::Duration;

use jsonwebtoken::{Algorithm, Validation};

use crate::authenticators::cache_key::KeyMac;

use super::{
    ClaimPath, Jwt, JwtAlgorithm, JwtBuildError,
    cache::TokenCache,
    claims::{Checks, ClaimMapping},
    fetch::{Fetcher, UrlPolicy},
    refresh::{KeySource, KeyStore, Timing},
};

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
    claims: ClaimMapping,
    timing: Timing,
    timeout: Duration,
    max_response_size: usize,
    allow_insecure_http: bool,
    cache_ttl: Duration,
    max_cached_tokens: u64,
    #[cfg(feature = "jwt-tls")]
    root_pems: Vec<Vec<u8>>,
    /// `None`: the public roots only when no PEM is given.
    #[cfg(feature = "jwt-tls")]
    public_roots: Option<bool>,
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
            leeway: Jwt::DEFAULT_LEEWAY,
            claims: ClaimMapping {
                subject: ClaimPath::new("sub"),
                admin_claims: Vec::new(),
                admin_scopes: Vec::new(),
                copied: Vec::new(),
            },
            timing: Timing {
                refresh_interval: Jwt::DEFAULT_REFRESH_INTERVAL,
                refetch_interval: Jwt::DEFAULT_REFETCH_INTERVAL,
                retry_interval: Jwt::DEFAULT_RETRY_INTERVAL,
            },
            timeout: Jwt::DEFAULT_TIMEOUT,
            max_response_size: Jwt::DEFAULT_MAX_RESPONSE_SIZE,
            allow_insecure_http: false,
            cache_ttl: Jwt::DEFAULT_CACHE_TTL,
            max_cached_tokens: Jwt::DEFAULT_MAX_CACHED_TOKENS,
            #[cfg(feature = "jwt-tls")]
            root_pems: Vec::new(),
            #[cfg(feature = "jwt-tls")]
            public_roots: None,
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
        self.claims.subject = claim.into();
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
        self.claims.admin_claims.push((claim.into(), value.into()));
        self
    }

    /// Makes the principal an admin when the token grants `scope` (in the space-separated
    /// `scope` claim, or in `scp`).
    pub fn admin_if_scope(mut self, scope: impl Into<Box<str>>) -> Self {
        self.claims.admin_scopes.push(scope.into());
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
        self.claims.copied.push((claim.into(), attribute.into()));
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
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
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

    /// How long a verified token is answered from the cache at most (default
    /// [`Jwt::DEFAULT_CACHE_TTL`], 60 s); never past its `exp` (plus the
    /// [`leeway`](Self::leeway)) whatever this says. More than zero and at most
    /// [`Jwt::MAX_CACHE_TTL`] (one day), or [`build`](Self::build) fails.
    ///
    /// Within it, a token stays accepted even if the identity provider revokes it
    /// (introspection is not asked here either way); a key removed from the JWKS ends it at
    /// the next key refresh.
    pub fn cache_ttl(mut self, ttl: Duration) -> Self {
        self.cache_ttl = ttl;
        self
    }

    /// The most verified tokens cached at once (default
    /// [`Jwt::DEFAULT_MAX_CACHED_TOKENS`]); `0` turns the cache off, so that every request
    /// checks its token's signature.
    ///
    /// ```
    /// # use tower_mlflow_auth::authenticators::Jwt;
    /// let uncached = Jwt::builder()
    ///     .issuer("http://127.0.0.1:8080/realms/ml")
    ///     .audience("mlflow")
    ///     .max_cached_tokens(0)
    ///     .build()
    ///     .unwrap();
    /// # let _ = uncached;
    /// ```
    pub fn max_cached_tokens(mut self, max: u64) -> Self {
        self.max_cached_tokens = max;
        self
    }

    /// Trusts the CA certificates in `pem` (one or more PEM `CERTIFICATE` blocks, as in a
    /// CA bundle file) for `https://` fetches, instead of the Mozilla roots from
    /// `webpki-roots`: for an identity provider behind a private CA. Call again to add
    /// more. [`build`](Self::build) fails with [`JwtBuildError::RootCertificates`] when a
    /// PEM holds no usable certificate.
    ///
    /// ```no_run
    /// # use tower_mlflow_auth::authenticators::Jwt;
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let jwt = Jwt::builder()
    ///     .issuer("https://idp.internal/realms/ml")
    ///     .audience("mlflow")
    ///     .root_certificates_pem(std::fs::read("/etc/ssl/certs/internal-ca.pem")?)
    ///     .build()?;
    /// # let _ = jwt;
    /// # Ok(())
    /// # }
    /// ```
    #[cfg(feature = "jwt-tls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "jwt-tls")))]
    pub fn root_certificates_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.root_pems.push(pem.into());
        self
    }

    /// Whether the Mozilla roots from `webpki-roots` stay trusted beside the certificates
    /// given to [`root_certificates_pem`](Self::root_certificates_pem). Default: only when
    /// none is given. `true` adds a private CA to the public roots, for an issuer on a private
    /// host whose discovery document points to public ones (or the other way round).
    #[cfg(feature = "jwt-tls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "jwt-tls")))]
    pub fn public_roots(mut self, trust: bool) -> Self {
        self.public_roots = Some(trust);
        self
    }

    /// Checks the configuration and builds the authenticator. No request is made here;
    /// call [`Jwt::refresh`] to fetch the keys up front.
    ///
    /// # Errors
    ///
    /// [`JwtBuildError`] for a missing issuer, audience or key source, a bad or insecure
    /// URL, an empty or HMAC algorithm list, a zero timeout, a cache time to live out of
    /// range, unusable root certificates, or no randomness for the cache key.
    pub fn build(self) -> Result<Jwt, JwtBuildError> {
        let url_policy = UrlPolicy {
            allow_insecure_http: self.allow_insecure_http,
        };
        let issuer = checked_issuer(self.issuer, self.any_issuer)?;
        let audiences = checked_audiences(self.audiences, self.any_audience)?;
        let source = key_source(self.jwks_uri, issuer.as_deref(), url_policy)?;
        let algorithms = checked_algorithms(self.algorithms)?;
        if self.timeout.is_zero() {
            return Err(JwtBuildError::ZeroTimeout);
        }
        let tokens = token_cache(self.cache_ttl, self.max_cached_tokens, self.leeway)?;
        let checks = Checks {
            validations: validations(&algorithms, self.leeway, issuer.as_deref(), &audiences),
            claims: self.claims,
            issuer_checked: issuer.is_some(),
            leeway: self.leeway,
            audiences,
            #[cfg(test)]
            signature_checks: std::sync::atomic::AtomicUsize::new(0),
        };
        let fetcher = Fetcher::new(
            self.timeout,
            self.max_response_size,
            #[cfg(feature = "jwt-tls")]
            self.root_pems,
            #[cfg(feature = "jwt-tls")]
            self.public_roots,
        )?;
        let keys = KeyStore::new(source, fetcher, url_policy, self.timing, algorithms, tokens);
        Ok(Jwt::from_parts(checks, keys))
    }
}

/// The verified-token cache, or `None` when `max_tokens` is zero.
fn token_cache(
    ttl: Duration,
    max_tokens: u64,
    leeway: Duration,
) -> Result<Option<TokenCache>, JwtBuildError> {
    if ttl.is_zero() {
        return Err(JwtBuildError::ZeroCacheTtl);
    }
    if ttl > Jwt::MAX_CACHE_TTL {
        return Err(JwtBuildError::CacheTtlTooLong);
    }
    if max_tokens == 0 {
        return Ok(None);
    }
    // The error names no foreign type, so getrandom's cause is logged rather than kept.
    let mac = KeyMac::random().map_err(|error| {
        tracing::error!(%error, "no randomness for the JWT cache key");
        JwtBuildError::RandomUnavailable
    })?;
    Ok(Some(TokenCache::new(mac, ttl, max_tokens, leeway)))
}

/// The issuer tokens must name, or `None` for any.
fn checked_issuer(issuer: Option<String>, any: bool) -> Result<Option<String>, JwtBuildError> {
    match (issuer, any) {
        (Some(_), true) => Err(JwtBuildError::ConflictingIssuer),
        (Some(issuer), false) if !issuer.is_empty() => Ok(Some(issuer)),
        (None, true) => Ok(None),
        _ => Err(JwtBuildError::MissingIssuer),
    }
}

/// The audiences tokens must name one of, or none for any.
fn checked_audiences(audiences: Vec<String>, any: bool) -> Result<Vec<String>, JwtBuildError> {
    match (audiences.is_empty(), any) {
        (false, true) => Err(JwtBuildError::ConflictingAudience),
        (true, false) => Err(JwtBuildError::MissingAudience),
        _ => Ok(audiences),
    }
}

/// The JWKS URL as given, or the discovery document under the issuer.
fn key_source(
    jwks_uri: Option<String>,
    issuer: Option<&str>,
    url_policy: UrlPolicy,
) -> Result<KeySource, JwtBuildError> {
    match (jwks_uri, issuer) {
        (Some(url), _) => url_policy
            .check(&url)
            .map(KeySource::Jwks)
            .map_err(|problem| JwtBuildError::url("jwks_uri", problem)),
        (None, Some(issuer)) => {
            let document = format!(
                "{}/.well-known/openid-configuration",
                issuer.trim_end_matches('/')
            );
            let document = url_policy
                .check(&document)
                .map_err(|problem| JwtBuildError::url("issuer", problem))?;
            Ok(KeySource::Discovery {
                issuer: issuer.into(),
                document,
            })
        }
        (None, None) => Err(JwtBuildError::MissingKeySource),
    }
}

/// The allowed algorithms: not empty, and no HMAC, since JWKS keys are public.
fn checked_algorithms(
    algorithms: Option<Vec<JwtAlgorithm>>,
) -> Result<Vec<Algorithm>, JwtBuildError> {
    let algorithms = algorithms.unwrap_or_else(|| Jwt::DEFAULT_ALGORITHMS.to_vec());
    if algorithms.is_empty() {
        return Err(JwtBuildError::NoAlgorithms);
    }
    if let Some(&hmac) = algorithms.iter().find(|a| a.is_symmetric()) {
        return Err(JwtBuildError::SymmetricAlgorithm(hmac));
    }
    Ok(algorithms
        .into_iter()
        .map(JwtAlgorithm::to_jsonwebtoken)
        .collect())
}

/// One `Validation` per algorithm: `exp` always, `nbf` when present, `iss` and `aud` when
/// configured, with `leeway` for the times.
fn validations(
    algorithms: &[Algorithm],
    leeway: Duration,
    issuer: Option<&str>,
    audiences: &[String],
) -> Vec<(Algorithm, Validation)> {
    algorithms
        .iter()
        .map(|&alg| {
            let mut v = Validation::new(alg);
            v.leeway = leeway.as_secs();
            v.validate_exp = true;
            v.validate_nbf = true;
            let mut required = vec!["exp"];
            if let Some(issuer) = issuer {
                v.set_issuer(&[issuer]);
                required.push("iss");
            }
            if audiences.is_empty() {
                v.validate_aud = false;
            } else {
                v.set_audience(audiences);
                required.push("aud");
            }
            v.set_required_spec_claims(&required);
            (alg, v)
        })
        .collect()
}
