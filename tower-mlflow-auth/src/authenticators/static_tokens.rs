//! [`StaticTokens`]: a fixed set of bearer tokens or API keys, each mapped to a principal.

use std::{
    collections::hash_map::Entry,
    convert::Infallible,
    fmt,
    hash::{Hash, Hasher},
    sync::Arc,
};

use http::{HeaderName, request::Parts};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::{
    authenticator::{Authenticator, Challenge},
    authenticators::uniform_key::{UniformMap, first_word},
    authorization::Authorization,
    credentials::{Credentials, CredentialsError, CredentialsRef, Scheme},
};

/// A SHA-256 digest of a token. Equality is constant time ([`subtle`]).
#[derive(Clone, Copy)]
struct TokenDigest([u8; 32]);

impl TokenDigest {
    fn of(token: &[u8]) -> Self {
        Self(Sha256::digest(token).into())
    }
}

impl PartialEq for TokenDigest {
    fn eq(&self, other: &Self) -> bool {
        // The XOR of the four words, folded, then one `subtle` comparison: as constant time as
        // `<[u8]>::ct_eq`, which puts each of the 32 bytes through an optimisation barrier.
        let word = |digest: &Self, i: usize| first_word(&digest.0[i * 8..]);
        let difference = (0..4).fold(0, |acc, i| acc | (word(self, i) ^ word(other, i)));
        difference.ct_eq(&0).into()
    }
}

impl Eq for TokenDigest {}

impl Hash for TokenDigest {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // Uniformly distributed already: SipHash's random keys would add nothing. The inputs
        // are SHA-256 outputs of attacker-chosen tokens; steering one into a stored digest's
        // bucket takes brute force and gains a probe, never a step towards the stored token.
        state.write_u64(first_word(&self.0));
    }
}

type DigestMap<V> = UniformMap<TokenDigest, V>;

/// Accepts a fixed set of bearer tokens, or API keys in a named header, each mapped to a
/// principal.
///
/// Built with [`StaticTokens::bearer`] or [`StaticTokens::header`]. Cloning is one
/// reference-count increment.
///
/// Tokens are configured once, at build time, and kept only as SHA-256 digests: the
/// plaintext is dropped (and zeroized, being a [`SecretString`]) as soon as it is hashed.
/// A presented token is hashed the same way and looked up by its digest in a hash map whose
/// key comparison is constant time ([`subtle`]). Nothing in the lookup depends on the
/// *token* except through its SHA-256 digest: the hash-map probe can at most reveal that the
/// digest of a guess resembles a stored digest, and that does not bring an attacker closer
/// to any token (that would take a SHA-256 preimage). Comparing the plaintext directly, as
/// `==` on strings would, leaks how many leading characters of a guess are right.
///
/// ```
/// use http::HeaderName;
/// use tower_mlflow_auth::{AuthLayer, Authorization, Scheme, authenticators::StaticTokens};
///
/// // `Authorization: Bearer <token>`
/// let tokens = StaticTokens::bearer()
///     .token("ci-token-5d1f0c7e", Authorization::new("ci", Scheme::Bearer))
///     .token(
///         String::from("ops-token-9a2b44d1"),
///         Authorization::new("ops", Scheme::Bearer).with_admin(true),
///     )
///     .build()?;
/// let layer = AuthLayer::new(tokens);
///
/// // `X-Api-Key: <key>`
/// let keys = StaticTokens::header(HeaderName::from_static("x-api-key"))
///     .token("k-123-abc", Authorization::new("exporter", Scheme::Header))
///     .build()?;
/// # let _ = (layer, keys);
/// # Ok::<(), tower_mlflow_auth::authenticators::StaticTokensBuildError>(())
/// ```
///
/// # Challenges
///
/// Bearer mode answers a 401 with `WWW-Authenticate: Bearer …` (RFC 6750). API keys in a
/// custom header have no standard challenge, so header mode sends **no** `WWW-Authenticate`
/// header by default; set one with [`StaticTokensBuilder::challenge`], for example
/// `Challenge::custom("ApiKey")`, if your clients expect it.
///
/// # Cost
///
/// A check is one SHA-256 of the presented token and one hash-map lookup, whatever the
/// number of tokens.
#[derive(Clone)]
pub struct StaticTokens {
    inner: Arc<Inner>,
}

struct Inner {
    source: TokenSource,
    tokens: DigestMap<Authorization>,
    challenges: Box<[Challenge]>,
}

/// Where the token is read from.
#[derive(Clone, Debug)]
enum TokenSource {
    /// `Authorization: Bearer <token>`.
    Bearer,
    /// The whole value of a named header.
    Header(HeaderName),
}

impl StaticTokens {
    /// Tokens sent as `Authorization: Bearer <token>`. 401s carry a `Bearer` challenge.
    #[must_use]
    pub fn bearer() -> StaticTokensBuilder {
        StaticTokensBuilder::new(TokenSource::Bearer, vec![Challenge::BEARER])
    }

    /// API keys sent as the whole value of the header `name`, such as `X-Api-Key`.
    ///
    /// Surrounding whitespace is trimmed and the header must appear once (see
    /// [`Credentials::from_header`]). 401s carry no `WWW-Authenticate` header unless one is
    /// set with [`StaticTokensBuilder::challenge`].
    #[must_use]
    pub fn header(name: HeaderName) -> StaticTokensBuilder {
        StaticTokensBuilder::new(TokenSource::Header(name), Vec::new())
    }

    /// How many tokens are configured.
    #[must_use]
    pub fn len(&self) -> usize {
        self.inner.tokens.len()
    }

    /// Whether no token is configured (then every request is rejected).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.inner.tokens.is_empty()
    }

    /// The principal for `token`, if it is one of the configured tokens.
    fn lookup(&self, token: &[u8]) -> Option<Authorization> {
        self.inner.tokens.get(&TokenDigest::of(token)).cloned()
    }
}

impl Authenticator for StaticTokens {
    type Error = Infallible;

    fn credentials<'a>(&self, parts: &'a Parts) -> Result<CredentialsRef<'a>, CredentialsError> {
        match &self.inner.source {
            TokenSource::Bearer => CredentialsRef::from_authorization_header(&parts.headers),
            TokenSource::Header(name) => CredentialsRef::from_header(&parts.headers, name),
        }
    }

    async fn authenticate(
        &self,
        credentials: Credentials,
    ) -> Result<Option<Authorization>, Infallible> {
        Ok(self.try_accept_now(&credentials.borrowed()))
    }

    /// Always answers: a static token is known or not.
    fn try_accept_now(&self, credentials: &CredentialsRef<'_>) -> Option<Authorization> {
        if !self.accepts(credentials) {
            // Another scheme, for another authenticator in a `first_of`.
            return None;
        }
        self.lookup(credentials.secret_bytes())
    }

    fn accepts(&self, credentials: &CredentialsRef<'_>) -> bool {
        match &self.inner.source {
            TokenSource::Bearer => credentials.scheme() == Scheme::Bearer,
            TokenSource::Header(expected) => credentials.header_name() == Some(expected),
        }
    }

    fn challenges(&self) -> &[Challenge] {
        &self.inner.challenges
    }
}

impl fmt::Debug for StaticTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Neither tokens nor their digests: a digest of a weak token can be brute-forced.
        f.debug_struct("StaticTokens")
            .field("source", &self.inner.source)
            .field("tokens", &self.inner.tokens.len())
            .field("challenges", &self.inner.challenges)
            .finish()
    }
}

/// Builds [`StaticTokens`]; made by [`StaticTokens::bearer`] or [`StaticTokens::header`].
///
/// Configuration mistakes are collected and reported by [`build`](Self::build), so that
/// tokens can be added in a chain.
pub struct StaticTokensBuilder {
    source: TokenSource,
    /// Each digest with the position of its `token` call, for error messages.
    tokens: DigestMap<(usize, Authorization)>,
    challenges: Vec<Challenge>,
    error: Option<StaticTokensBuildError>,
}

impl StaticTokensBuilder {
    fn new(source: TokenSource, challenges: Vec<Challenge>) -> Self {
        Self {
            source,
            tokens: DigestMap::default(),
            challenges,
            error: None,
        }
    }

    /// Accepts `token` and authenticates it as `principal`, which is handed to inner
    /// services as given.
    ///
    /// The token must be non-empty visible ASCII (no spaces), since no other value can be
    /// presented in a bearer token or a trimmed header; and it must not repeat an earlier
    /// one. Otherwise [`build`](Self::build) fails, naming the token's position.
    #[must_use]
    pub fn token(mut self, token: impl Into<SecretString>, principal: Authorization) -> Self {
        let token: SecretString = token.into();
        let position = self.tokens.len() + 1;
        if self.error.is_some() {
            return self;
        }
        let token = token.expose_secret();
        if token.is_empty() {
            self.error = Some(StaticTokensBuildError::EmptyToken { position });
            return self;
        }
        if !token.bytes().all(|b| b.is_ascii_graphic()) {
            self.error = Some(StaticTokensBuildError::InvalidCharacters { position });
            return self;
        }
        self.insert(TokenDigest::of(token.as_bytes()), position, principal)
    }

    /// Accepts the token whose SHA-256 digest is `digest` and authenticates it as
    /// `principal`: for tokens kept in a file as digests only, so that reading the file does
    /// not give them away. The comparison stays constant time. A digest that repeats an
    /// earlier one (or an earlier token's) fails [`build`](Self::build), naming its position.
    ///
    /// ```
    /// use tower_mlflow_auth::{Authorization, Scheme, authenticators::StaticTokens};
    ///
    /// // As `sha256sum` prints it, decoded from hex.
    /// let digest = [0x5a; 32];
    /// let tokens = StaticTokens::bearer()
    ///     .token_sha256(digest, Authorization::new("ci", Scheme::Bearer))
    ///     .build()?;
    /// assert_eq!(tokens.len(), 1);
    /// # Ok::<(), tower_mlflow_auth::authenticators::StaticTokensBuildError>(())
    /// ```
    #[must_use]
    pub fn token_sha256(self, digest: [u8; 32], principal: Authorization) -> Self {
        let position = self.tokens.len() + 1;
        if self.error.is_some() {
            return self;
        }
        self.insert(TokenDigest(digest), position, principal)
    }

    fn insert(mut self, digest: TokenDigest, position: usize, principal: Authorization) -> Self {
        match self.tokens.entry(digest) {
            Entry::Occupied(first) => {
                let first = first.get().0;
                self.error = Some(StaticTokensBuildError::DuplicateToken { position, first });
            }
            Entry::Vacant(slot) => {
                slot.insert((position, principal));
            }
        }
        self
    }

    /// Sends `challenge` in the `WWW-Authenticate` header of a 401, instead of the default
    /// (`Bearer` in bearer mode, none in header mode).
    #[must_use]
    pub fn challenge(mut self, challenge: Challenge) -> Self {
        self.challenges = vec![challenge];
        self
    }

    /// Sends no `WWW-Authenticate` header on a 401.
    #[must_use]
    pub fn no_challenge(mut self) -> Self {
        self.challenges.clear();
        self
    }

    /// Builds the authenticator.
    ///
    /// # Errors
    ///
    /// The first [`StaticTokensBuildError`] met by [`token`](Self::token).
    pub fn build(self) -> Result<StaticTokens, StaticTokensBuildError> {
        if let Some(error) = self.error {
            return Err(error);
        }
        Ok(StaticTokens {
            inner: Arc::new(Inner {
                source: self.source,
                tokens: self
                    .tokens
                    .into_iter()
                    .map(|(digest, (_, principal))| (digest, principal))
                    .collect(),
                challenges: self.challenges.into(),
            }),
        })
    }
}

impl fmt::Debug for StaticTokensBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StaticTokensBuilder")
            .field("source", &self.source)
            .field("tokens", &self.tokens.len())
            .field("challenges", &self.challenges)
            .field("error", &self.error)
            .finish()
    }
}

/// A mistake in a [`StaticTokens`] configuration. Tokens are named by their position
/// (1 for the first [`token`](StaticTokensBuilder::token) call), never by value.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum StaticTokensBuildError {
    /// A token is empty.
    EmptyToken {
        /// The token's position, from 1.
        position: usize,
    },
    /// A token contains a character other than visible ASCII (such as a space), so no
    /// request could present it.
    InvalidCharacters {
        /// The token's position, from 1.
        position: usize,
    },
    /// A token is configured twice.
    DuplicateToken {
        /// The repeated token's position, from 1.
        position: usize,
        /// The position of its first occurrence.
        first: usize,
    },
}

impl fmt::Display for StaticTokensBuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::EmptyToken { position } => write!(f, "static token #{position} is empty"),
            Self::InvalidCharacters { position } => write!(
                f,
                "static token #{position} contains characters other than visible ASCII"
            ),
            Self::DuplicateToken { position, first } => {
                write!(f, "static token #{position} repeats token #{first}")
            }
        }
    }
}

impl std::error::Error for StaticTokensBuildError {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{AuthLayer, credentials::Scheme};
    use http::{Request, Response, StatusCode, header::WWW_AUTHENTICATE};
    use tower::{ServiceExt, service_fn};
    use tower_layer::Layer;

    #[test]
    fn digests_differing_in_any_one_byte_are_unequal() {
        let digest = TokenDigest::of(b"ci-token");
        assert!(digest == TokenDigest::of(b"ci-token"));
        for at in 0..32 {
            let mut other = digest;
            other.0[at] ^= 0x01;
            assert!(digest != other, "byte {at} not compared");
        }
    }

    fn bearer(token: &str) -> Credentials {
        Credentials::Bearer {
            token: SecretString::from(token),
        }
    }

    fn api_key() -> HeaderName {
        HeaderName::from_static("x-api-key")
    }

    fn two_bearer_tokens() -> StaticTokens {
        StaticTokens::bearer()
            .token("tok-alpha", Authorization::new("alpha", Scheme::Bearer))
            .token(
                SecretString::from("tok-beta"),
                Authorization::new("beta", Scheme::Bearer).with_admin(true),
            )
            .build()
            .unwrap()
    }

    #[tokio::test]
    async fn each_token_maps_to_its_principal() {
        let tokens = two_bearer_tokens();
        let alpha = tokens
            .authenticate(bearer("tok-alpha"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(alpha.subject(), "alpha");
        assert!(!alpha.is_admin());
        let beta = tokens
            .authenticate(bearer("tok-beta"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(beta.subject(), "beta");
        assert!(beta.is_admin());
    }

    #[tokio::test]
    async fn unknown_prefix_and_extended_tokens_are_rejected() {
        let tokens = two_bearer_tokens();
        for wrong in ["tok-gamma", "tok-alph", "tok-alphaa", "TOK-ALPHA", "x"] {
            assert_eq!(
                tokens.authenticate(bearer(wrong)).await.unwrap(),
                None,
                "{wrong}"
            );
        }
    }

    #[test]
    fn the_synchronous_shortcut_answers_like_authenticate() {
        let tokens = two_bearer_tokens();
        assert_eq!(
            tokens
                .try_accept_now(&bearer("tok-beta").borrowed())
                .unwrap()
                .subject(),
            "beta"
        );
        for wrong in ["tok-gamma", "tok-alph", "tok-alphaa"] {
            assert_eq!(
                tokens.try_accept_now(&bearer(wrong).borrowed()),
                None,
                "{wrong}"
            );
        }
        let basic = Credentials::Basic {
            username: "alpha".into(),
            password: SecretString::from("tok-alpha"),
        };
        assert_eq!(tokens.try_accept_now(&basic.borrowed()), None);
    }

    #[tokio::test]
    async fn other_schemes_are_left_to_other_authenticators() {
        let tokens = two_bearer_tokens();
        let basic = Credentials::Basic {
            username: "alpha".into(),
            password: SecretString::from("tok-alpha"),
        };
        assert_eq!(tokens.authenticate(basic).await.unwrap(), None);
        let header = Credentials::Header {
            name: api_key(),
            value: SecretString::from("tok-alpha"),
        };
        assert_eq!(tokens.authenticate(header).await.unwrap(), None);
    }

    #[test]
    fn accepts_names_only_its_own_scheme_or_header() {
        let basic = Credentials::Basic {
            username: "alpha".into(),
            password: SecretString::from("tok-alpha"),
        };
        let header = |name: &'static str| Credentials::Header {
            name: HeaderName::from_static(name),
            value: SecretString::from("tok-alpha"),
        };
        let tokens = two_bearer_tokens();
        assert!(tokens.accepts(&bearer("anything").borrowed()));
        assert!(
            !tokens.accepts(&basic.borrowed()) && !tokens.accepts(&header("x-api-key").borrowed())
        );
        let keys = StaticTokens::header(api_key())
            .token("k-1", Authorization::new("svc", Scheme::Header))
            .build()
            .unwrap();
        assert!(keys.accepts(&header("x-api-key").borrowed()));
        assert!(!keys.accepts(&header("x-other-key").borrowed()));
        assert!(!keys.accepts(&bearer("k-1").borrowed()) && !keys.accepts(&basic.borrowed()));
    }

    #[tokio::test]
    async fn header_mode_accepts_only_its_own_header() {
        let keys = StaticTokens::header(api_key())
            .token("k-1", Authorization::new("svc", Scheme::Header))
            .build()
            .unwrap();
        let own = Credentials::Header {
            name: api_key(),
            value: SecretString::from("k-1"),
        };
        assert_eq!(
            keys.authenticate(own).await.unwrap().unwrap().subject(),
            "svc"
        );
        let other = Credentials::Header {
            name: HeaderName::from_static("x-other-key"),
            value: SecretString::from("k-1"),
        };
        assert_eq!(keys.authenticate(other).await.unwrap(), None);
        assert_eq!(keys.authenticate(bearer("k-1")).await.unwrap(), None);
    }

    #[test]
    fn header_mode_extracts_from_the_named_header() {
        let keys = StaticTokens::header(api_key()).build().unwrap();
        let (parts, ()) = Request::builder()
            .header("x-api-key", " k-1 ")
            .header("authorization", "Bearer other")
            .body(())
            .unwrap()
            .into_parts();
        let found = keys.credentials(&parts).unwrap();
        assert_eq!(found.scheme(), Scheme::Header);
        assert_eq!(found.header_name(), Some(&api_key()));
        assert_eq!(found.expose_secret(), "k-1");
    }

    #[test]
    fn bad_tokens_are_config_errors_naming_the_position() {
        let principal = || Authorization::new("p", Scheme::Bearer);
        let err = StaticTokens::bearer()
            .token("ok", principal())
            .token("", principal())
            .build()
            .unwrap_err();
        assert_eq!(err, StaticTokensBuildError::EmptyToken { position: 2 });
        let err = StaticTokens::bearer()
            .token("has space", principal())
            .build()
            .unwrap_err();
        assert_eq!(
            err,
            StaticTokensBuildError::InvalidCharacters { position: 1 }
        );
        let err = StaticTokens::bearer()
            .token("a", principal())
            .token("b", principal())
            .token("a", principal())
            .build()
            .unwrap_err();
        assert_eq!(
            err,
            StaticTokensBuildError::DuplicateToken {
                position: 3,
                first: 1
            }
        );
        assert_eq!(err.to_string(), "static token #3 repeats token #1");
    }

    #[test]
    fn a_digest_stands_for_its_token() {
        let digest: [u8; 32] = Sha256::digest(b"tok-alpha").into();
        let tokens = StaticTokens::bearer()
            .token_sha256(digest, Authorization::new("alpha", Scheme::Bearer))
            .build()
            .unwrap();
        let who = tokens
            .try_accept_now(&bearer("tok-alpha").borrowed())
            .unwrap();
        assert_eq!(who.subject(), "alpha");
        assert!(
            tokens
                .try_accept_now(&bearer("tok-alphb").borrowed())
                .is_none()
        );
        let twice = StaticTokens::bearer()
            .token("tok-alpha", Authorization::new("a", Scheme::Bearer))
            .token_sha256(digest, Authorization::new("b", Scheme::Bearer))
            .build();
        assert!(matches!(
            twice,
            Err(StaticTokensBuildError::DuplicateToken {
                position: 2,
                first: 1
            })
        ));
    }

    #[test]
    fn debug_shows_neither_tokens_nor_digests() {
        let tokens = two_bearer_tokens();
        let shown = format!("{tokens:?}");
        assert!(shown.contains("tokens: 2"), "{shown}");
        assert!(!shown.contains("tok-alpha"));
        let digest = Sha256::digest(b"tok-alpha");
        let digest_bytes = format!("{:?}", &digest[..4]);
        assert!(
            !shown.contains(digest_bytes.trim_matches(['[', ']'])),
            "{shown}"
        );
    }

    #[test]
    fn challenges_default_per_mode_and_can_be_set() {
        assert_eq!(two_bearer_tokens().challenges(), [Challenge::BEARER]);
        let keys = StaticTokens::header(api_key()).build().unwrap();
        assert!(keys.challenges().is_empty());
        let api_key_challenge = Challenge::custom("ApiKey").unwrap();
        let keys = StaticTokens::header(api_key())
            .challenge(api_key_challenge.clone())
            .build()
            .unwrap();
        assert_eq!(keys.challenges(), [api_key_challenge]);
    }

    #[test]
    fn no_challenge_drops_the_default_bearer_challenge() {
        let tokens = StaticTokens::bearer().no_challenge().build().unwrap();
        assert!(tokens.challenges().is_empty());
    }

    async fn status_through_layer(
        tokens: StaticTokens,
        request: Request<String>,
    ) -> Response<String> {
        let service =
            AuthLayer::new(tokens).layer(service_fn(|request: Request<String>| async move {
                let who = request
                    .extensions()
                    .get::<Authorization>()
                    .map(|a| a.subject().to_owned());
                Ok::<_, Infallible>(Response::new(who.unwrap_or_default()))
            }));
        service.oneshot(request).await.unwrap()
    }

    #[tokio::test]
    async fn behind_the_layer_good_token_passes_and_bad_token_gets_a_bearer_challenge() {
        let ok = Request::builder()
            .header("authorization", "Bearer tok-beta")
            .body(String::new())
            .unwrap();
        let response = status_through_layer(two_bearer_tokens(), ok).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.body(), "beta");

        let bad = Request::builder()
            .header("authorization", "Bearer tok-nope")
            .body(String::new())
            .unwrap();
        let response = status_through_layer(two_bearer_tokens(), bad).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        let challenge = response
            .headers()
            .get(WWW_AUTHENTICATE)
            .unwrap()
            .to_str()
            .unwrap();
        assert!(challenge.starts_with("Bearer "), "{challenge}");
    }

    #[tokio::test]
    async fn behind_the_layer_header_mode_401_has_no_challenge_by_default() {
        let keys = || {
            StaticTokens::header(api_key())
                .token("k-1", Authorization::new("svc", Scheme::Header))
                .build()
                .unwrap()
        };
        let ok = Request::builder()
            .header("x-api-key", "k-1")
            .body(String::new())
            .unwrap();
        let response = status_through_layer(keys(), ok).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.body(), "svc");

        let bad = Request::builder()
            .header("x-api-key", "k-2")
            .body(String::new())
            .unwrap();
        let response = status_through_layer(keys(), bad).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert!(response.headers().get(WWW_AUTHENTICATE).is_none());
    }
}
