//! The [`Authenticator`] trait: how a request's credentials are found and verified.
//!
//! Authentication runs in two steps:
//!
//! 1. [`Authenticator::credentials`] finds the credentials in the request head,
//!    synchronously, borrowed ([`CredentialsRef`]). The default reads the `Authorization`
//!    header (`Basic` and `Bearer`). [`Authenticator::try_accept_now`] may answer them from
//!    memory at once; otherwise they become owned [`Credentials`] for step 2.
//! 2. [`Authenticator::authenticate`] verifies them asynchronously and answers
//!    `Ok(Some(principal))` (accepted), `Ok(None)` (wrong credentials: 401) or `Err(_)` (the
//!    credential backend failed: 503, logged, never shown to the client).
//!
//! Any `Fn(Credentials) -> impl Future<Output = Result<Option<Authorization>, E>>` closure is an
//! authenticator that reads the `Authorization` header and challenges with `Basic`. A custom
//! scheme — here an API key in `X-Api-Key` — is a dozen lines:
//!
//! ```
//! use std::convert::Infallible;
//! use http::{HeaderName, request::Parts};
//! use secrecy::ExposeSecret;
//! use subtle::ConstantTimeEq;
//! use tower_mlflow_auth::{
//!     Authenticator, Authorization, Challenge, Credentials, CredentialsError, CredentialsRef, Scheme,
//! };
//!
//! #[derive(Clone)]
//! struct ApiKey;
//!
//! impl Authenticator for ApiKey {
//!     type Error = Infallible;
//!
//!     fn credentials<'a>(&self, parts: &'a Parts) -> Result<CredentialsRef<'a>, CredentialsError> {
//!         CredentialsRef::from_header(&parts.headers, &HeaderName::from_static("x-api-key"))
//!     }
//!
//!     async fn authenticate(&self, credentials: Credentials) -> Result<Option<Authorization>, Infallible> {
//!         let Credentials::Header { value, .. } = credentials else { return Ok(None) };
//!         let valid: bool = value.expose_secret().as_bytes().ct_eq(b"k-123").into();
//!         Ok(valid.then(|| Authorization::new("ci-bot", Scheme::Header)))
//!     }
//!
//!     fn challenges(&self) -> &[Challenge] {
//!         &[]
//!     }
//! }
//! ```
//!
//! Two authenticators combine with [`first_of`]: the first to accept wins.
//!
//! # Composing a chain
//!
//! - **Dispatch by scheme.** Each authenticator says which credentials it can accept at all
//!   ([`Authenticator::accepts`]): the built-in password stores take Basic only, token
//!   stores their own scheme. [`first_of`] never asks a side that cannot accept the
//!   credential, so a bearer token costs no decoy password hash.
//! - **One cache over the password stores.** Put a single
//!   [`Cached`](crate::authenticators::Cached) over the chain of stores whose answers are
//!   slow to compute and last (htpasswd, MLflow users), not one per store:
//!   `Cached::new(first_of(htpasswd, mlflow_users))`. A credential accepted by any of them
//!   is then answered on the synchronous fast path; a miss runs each store at most once (one
//!   check for all concurrent identical requests); a flood of wrong passwords queues for the
//!   cache's verification permits, which hits never wait for. A cache per store does not
//!   work: [`FirstOf::try_accept_now`] may answer only for its first side (a later side must
//!   not answer for a credential the first may still accept with another principal), so the
//!   users of the second store would pay the first's verification on every request and wait
//!   behind its flood.
//! - **Tokens outside the cache.** A JWT carries its own expiry, which a cache entry could
//!   outlive, and static tokens are answered from memory already: chain them after the
//!   cache, `first_of(first_of(Cached::new(first_of(htpasswd, users))?, tokens), jwt)`. A
//!   Basic credential then never reaches them, and a bearer token passes the cache by
//!   without taking a permit.
//! - **Revocation follows the store.** A store that reloads tells the caches above it which
//!   credentials it stopped vouching for ([`Authenticator::subscribe_revocations`],
//!   [`Revoked`]); `Cached` subscribes when it is built and drops those entries at once,
//!   whatever their time to live, and a store that subscribers listen to watches its source
//!   on its own, because cache hits never reach it.

use std::{error::Error, fmt, future::Future, sync::Arc};

use http::request::Parts;

pub use crate::authenticators::revocation::{RevocationListener, Revoked};
use crate::{
    authorization::Authorization,
    credentials::{Credentials, CredentialsError, CredentialsRef},
};

/// Finds and verifies a request's credentials.
///
/// See the [module docs](crate::authenticator) for the two steps and an example.
pub trait Authenticator: Clone + Send + Sync + 'static {
    /// A failure of the credential backend (a database, a key server). It becomes a 503 and
    /// is logged with its `Display` text, so that text must not contain a secret.
    type Error: Error + Send + Sync + 'static;

    /// Finds the credentials in the request head, borrowed: a request answered by
    /// [`try_accept_now`](Self::try_accept_now) never copies its secret. The layer turns
    /// them into owned [`Credentials`] ([`CredentialsRef::to_credentials`]) only for
    /// [`authenticate`](Self::authenticate).
    ///
    /// The default parses the `Authorization` header with
    /// [`CredentialsRef::from_authorization_header`]; an authenticator that reads another
    /// header overrides this with [`CredentialsRef::from_header`].
    ///
    /// # Errors
    ///
    /// [`CredentialsError::Missing`] when the request carries none, and
    /// [`CredentialsError::Malformed`] when it carries something unreadable; both become 401.
    fn credentials<'a>(&self, parts: &'a Parts) -> Result<CredentialsRef<'a>, CredentialsError> {
        CredentialsRef::from_authorization_header(&parts.headers)
    }

    /// Verifies credentials: `Ok(Some(_))` accepts, `Ok(None)` rejects (401), `Err(_)` is a
    /// backend failure (503).
    ///
    /// Credentials of a scheme this authenticator does not handle should give `Ok(None)`, so
    /// that [`first_of`] can hand them to the next one.
    fn authenticate(
        &self,
        credentials: Credentials,
    ) -> impl Future<Output = Result<Option<Authorization>, Self::Error>> + Send;

    /// A synchronous shortcut: the principal for `credentials` when this authenticator can
    /// accept them at once from memory (a cache hit, a static token).
    ///
    /// [`AuthLayer`](crate::AuthLayer) asks this first and, on `Some`, calls the inner
    /// service straight away: no verification future is built, boxed or polled. `None` means
    /// "not known now", never "rejected"; the layer then calls
    /// [`authenticate`](Self::authenticate). Return `Some` only for credentials that
    /// `authenticate` would accept with the same principal. The default returns `None`.
    fn try_accept_now(&self, credentials: &CredentialsRef<'_>) -> Option<Authorization> {
        let _ = credentials;
        None
    }

    /// Whether these credentials are of a kind this authenticator can ever accept (its
    /// scheme, its header), without looking at the secret. `false` promises that
    /// [`authenticate`](Self::authenticate) would answer `Ok(None)`: [`first_of`] then skips
    /// this side, and [`Cached`](crate::authenticators::Cached) rejects at once instead of
    /// taking a verification permit. The default, `true`, is always correct, only slower.
    ///
    /// A method on the trait rather than a `by_scheme(basic, bearer)` combinator: the store
    /// knows what it handles (so the chain cannot be wired wrong), it works for any number of
    /// stores and for custom schemes, and [`first_of`] stays the one way to chain.
    fn accepts(&self, credentials: &CredentialsRef<'_>) -> bool {
        let _ = credentials;
        true
    }

    /// Asks this authenticator to tell `listener` from now on which credentials it stops
    /// vouching for: when its store reloads and a user is gone or changed, or when the store
    /// cannot be read. Caches call this when they are built; see [`Revoked`].
    ///
    /// A store with subscribers also looks for changes on its own (a tokio task spawned in
    /// the current runtime, or at its next verification), since cached credentials never
    /// reach it. Combinators pass the listener to every authenticator they wrap. The default
    /// does nothing: right for an authenticator whose answers never change.
    fn subscribe_revocations(&self, listener: RevocationListener) {
        let _ = listener;
    }

    /// The challenges for the `WWW-Authenticate` header of a 401, in order of preference.
    ///
    /// The default is `Basic`. An empty slice sends no `WWW-Authenticate` header.
    fn challenges(&self) -> &[Challenge] {
        &[Challenge::BASIC]
    }
}

impl<F, Fut, E> Authenticator for F
where
    F: Fn(Credentials) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<Option<Authorization>, E>> + Send,
    E: Error + Send + Sync + 'static,
{
    type Error = E;

    fn authenticate(
        &self,
        credentials: Credentials,
    ) -> impl Future<Output = Result<Option<Authorization>, E>> + Send {
        self(credentials)
    }
}

impl<A: Authenticator> Authenticator for Arc<A> {
    type Error = A::Error;

    fn credentials<'a>(&self, parts: &'a Parts) -> Result<CredentialsRef<'a>, CredentialsError> {
        (**self).credentials(parts)
    }

    fn authenticate(
        &self,
        credentials: Credentials,
    ) -> impl Future<Output = Result<Option<Authorization>, Self::Error>> + Send {
        (**self).authenticate(credentials)
    }

    fn try_accept_now(&self, credentials: &CredentialsRef<'_>) -> Option<Authorization> {
        (**self).try_accept_now(credentials)
    }

    fn accepts(&self, credentials: &CredentialsRef<'_>) -> bool {
        (**self).accepts(credentials)
    }

    fn subscribe_revocations(&self, listener: RevocationListener) {
        (**self).subscribe_revocations(listener);
    }

    fn challenges(&self) -> &[Challenge] {
        (**self).challenges()
    }
}

/// An authentication scheme offered in the `WWW-Authenticate` header of a 401.
///
/// [`AuthLayer`](crate::AuthLayer) adds the realm: `Basic realm="mlflow"`, and for a bearer
/// token that was presented and rejected, `Bearer realm="mlflow", error="invalid_token"`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Challenge(ChallengeScheme);

#[derive(Clone, Debug, PartialEq, Eq)]
enum ChallengeScheme {
    Basic,
    Bearer,
    Custom(Box<str>),
}

impl Challenge {
    /// `Basic` (RFC 7617), what MLflow and nginx send.
    pub const BASIC: Self = Self(ChallengeScheme::Basic);
    /// `Bearer` (RFC 6750).
    pub const BEARER: Self = Self(ChallengeScheme::Bearer);

    /// Another scheme, such as `ApiKey`.
    ///
    /// # Errors
    ///
    /// [`InvalidChallenge`] unless `scheme` is a non-empty HTTP token (RFC 9110 `tchar`s).
    pub fn custom(scheme: &str) -> Result<Self, InvalidChallenge> {
        let is_tchar = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
        if scheme.is_empty() || !scheme.bytes().all(is_tchar) {
            return Err(InvalidChallenge(()));
        }
        Ok(Self(ChallengeScheme::Custom(scheme.into())))
    }

    /// The scheme's name as sent on the wire.
    #[must_use]
    pub fn scheme(&self) -> &str {
        match &self.0 {
            ChallengeScheme::Basic => "Basic",
            ChallengeScheme::Bearer => "Bearer",
            ChallengeScheme::Custom(s) => s,
        }
    }

    pub(crate) fn is_bearer(&self) -> bool {
        self.0 == ChallengeScheme::Bearer
    }
}

/// A challenge scheme that is not an HTTP token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvalidChallenge(());

impl fmt::Display for InvalidChallenge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad("a challenge scheme must be a non-empty HTTP token")
    }
}

impl Error for InvalidChallenge {}

/// Tries `first`, then `second`: the first to accept the credentials wins.
///
/// - Extraction: the first authenticator's credentials if it finds any, else the second's;
///   malformed credentials are reported only when neither finds usable ones.
/// - Verification: `second` runs when `first` rejects (`Ok(None)`) or fails (`Err`). A
///   backend failure is reported (503) only when no authenticator accepted. A side that
///   does not [accept](Authenticator::accepts) the credentials is not asked.
/// - Fast path: the first side that accepts the credentials answers
///   [`try_accept_now`](Authenticator::try_accept_now).
/// - Challenges: both lists, `first`'s first, without duplicates.
///
/// ```
/// use tower_mlflow_auth::{Authorization, Credentials, Scheme, first_of};
///
/// let basic = |c: Credentials| async move {
///     Ok::<_, std::convert::Infallible>(match c {
///         Credentials::Basic { username, .. } if username == "alice" => {
///             Some(Authorization::new(username, Scheme::Basic))
///         }
///         _ => None,
///     })
/// };
/// let bearer = |c: Credentials| async move {
///     Ok::<_, std::convert::Infallible>(
///         matches!(c, Credentials::Bearer { .. }).then(|| Authorization::new("bot", Scheme::Bearer)),
///     )
/// };
/// let either = first_of(basic, bearer);
/// # let _ = either;
/// ```
pub fn first_of<A: Authenticator, B: Authenticator>(first: A, second: B) -> FirstOf<A, B> {
    let mut challenges: Vec<Challenge> = first.challenges().to_vec();
    for c in second.challenges() {
        if !challenges.contains(c) {
            challenges.push(c.clone());
        }
    }
    FirstOf {
        first,
        second,
        challenges: challenges.into(),
    }
}

/// Two authenticators tried in order; made by [`first_of`].
#[derive(Clone, Debug)]
pub struct FirstOf<A, B> {
    first: A,
    second: B,
    challenges: Arc<[Challenge]>,
}

impl<A: Authenticator, B: Authenticator> Authenticator for FirstOf<A, B> {
    type Error = FirstOfError<A::Error, B::Error>;

    fn credentials<'a>(&self, parts: &'a Parts) -> Result<CredentialsRef<'a>, CredentialsError> {
        match self.first.credentials(parts) {
            Ok(credentials) => Ok(credentials),
            Err(first_err) => match self.second.credentials(parts) {
                Ok(credentials) => Ok(credentials),
                Err(CredentialsError::Missing) => Err(first_err),
                Err(second_err) if first_err == CredentialsError::Missing => Err(second_err),
                Err(_) => Err(first_err),
            },
        }
    }

    async fn authenticate(
        &self,
        credentials: Credentials,
    ) -> Result<Option<Authorization>, Self::Error> {
        let (first_accepts, second_accepts) = {
            let found = credentials.borrowed();
            (self.first.accepts(&found), self.second.accepts(&found))
        };
        let first = if first_accepts {
            self.first.authenticate(credentials.clone()).await
        } else {
            Ok(None)
        };
        if let Ok(Some(principal)) = first {
            return Ok(Some(principal));
        }
        let second = if second_accepts {
            self.second.authenticate(credentials).await
        } else {
            Ok(None)
        };
        match (first, second) {
            (_, Ok(Some(principal))) => Ok(Some(principal)),
            (Err(e), _) => Err(FirstOfError::First(e)),
            (_, Err(e)) => Err(FirstOfError::Second(e)),
            (Ok(_), Ok(None)) => Ok(None),
        }
    }

    fn try_accept_now(&self, credentials: &CredentialsRef<'_>) -> Option<Authorization> {
        // `second` may answer only when `first` cannot accept these credentials at all:
        // otherwise `first` might still accept them (with its own principal) once verified,
        // and it comes before `second`.
        if self.first.accepts(credentials) {
            self.first.try_accept_now(credentials)
        } else if self.second.accepts(credentials) {
            self.second.try_accept_now(credentials)
        } else {
            None
        }
    }

    fn accepts(&self, credentials: &CredentialsRef<'_>) -> bool {
        self.first.accepts(credentials) || self.second.accepts(credentials)
    }

    fn subscribe_revocations(&self, listener: RevocationListener) {
        self.first.subscribe_revocations(listener.clone());
        self.second.subscribe_revocations(listener);
    }

    fn challenges(&self) -> &[Challenge] {
        &self.challenges
    }
}

/// The backend failure of one of the authenticators in a [`FirstOf`].
#[derive(Debug)]
pub enum FirstOfError<A, B> {
    /// The first authenticator failed.
    First(A),
    /// The second authenticator failed.
    Second(B),
}

impl<A: fmt::Display, B: fmt::Display> fmt::Display for FirstOfError<A, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::First(e) => write!(f, "first authenticator: {e}"),
            Self::Second(e) => write!(f, "second authenticator: {e}"),
        }
    }
}

impl<A: Error + 'static, B: Error + 'static> Error for FirstOfError<A, B> {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            Self::First(e) => Some(e),
            Self::Second(e) => Some(e),
        }
    }
}

/// A type-erased [`Authenticator`], for choosing authenticators at run time (from a
/// configuration file or command line) and chaining them with [`first_of`].
///
/// Costs one extra allocation per verification.
///
/// ```
/// use tower_mlflow_auth::{Authorization, BoxAuthenticator, Credentials, Scheme, first_of};
///
/// let never = BoxAuthenticator::new(|_c: Credentials| async { Ok::<_, std::convert::Infallible>(None) });
/// let always = BoxAuthenticator::new(|_c: Credentials| async {
///     Ok::<_, std::convert::Infallible>(Some(Authorization::new("anyone", Scheme::Basic)))
/// });
/// let chain = [never, always]
///     .into_iter()
///     .reduce(|chain, next| BoxAuthenticator::new(first_of(chain, next)));
/// # let _ = chain;
/// ```
#[derive(Clone)]
pub struct BoxAuthenticator(Arc<dyn ErasedAuthenticator>);

type BoxedVerification<'a> = std::pin::Pin<
    Box<dyn Future<Output = Result<Option<Authorization>, BoxAuthenticatorError>> + Send + 'a>,
>;

trait ErasedAuthenticator: Send + Sync + 'static {
    fn credentials<'a>(&self, parts: &'a Parts) -> Result<CredentialsRef<'a>, CredentialsError>;
    fn authenticate(&self, credentials: Credentials) -> BoxedVerification<'_>;
    fn try_accept_now(&self, credentials: &CredentialsRef<'_>) -> Option<Authorization>;
    fn accepts(&self, credentials: &CredentialsRef<'_>) -> bool;
    fn subscribe_revocations(&self, listener: RevocationListener);
    fn challenges(&self) -> &[Challenge];
}

impl<A: Authenticator> ErasedAuthenticator for A {
    fn credentials<'a>(&self, parts: &'a Parts) -> Result<CredentialsRef<'a>, CredentialsError> {
        Authenticator::credentials(self, parts)
    }

    fn authenticate(&self, credentials: Credentials) -> BoxedVerification<'_> {
        Box::pin(async move {
            Authenticator::authenticate(self, credentials)
                .await
                .map_err(|e| BoxAuthenticatorError(Box::new(e)))
        })
    }

    fn try_accept_now(&self, credentials: &CredentialsRef<'_>) -> Option<Authorization> {
        Authenticator::try_accept_now(self, credentials)
    }

    fn accepts(&self, credentials: &CredentialsRef<'_>) -> bool {
        Authenticator::accepts(self, credentials)
    }

    fn subscribe_revocations(&self, listener: RevocationListener) {
        Authenticator::subscribe_revocations(self, listener);
    }

    fn challenges(&self) -> &[Challenge] {
        Authenticator::challenges(self)
    }
}

impl BoxAuthenticator {
    /// Erases the type of `authenticator`.
    pub fn new<A: Authenticator>(authenticator: A) -> Self {
        Self(Arc::new(authenticator))
    }
}

impl Authenticator for BoxAuthenticator {
    type Error = BoxAuthenticatorError;

    fn credentials<'a>(&self, parts: &'a Parts) -> Result<CredentialsRef<'a>, CredentialsError> {
        self.0.credentials(parts)
    }

    fn authenticate(
        &self,
        credentials: Credentials,
    ) -> impl Future<Output = Result<Option<Authorization>, Self::Error>> + Send {
        self.0.authenticate(credentials)
    }

    fn try_accept_now(&self, credentials: &CredentialsRef<'_>) -> Option<Authorization> {
        self.0.try_accept_now(credentials)
    }

    fn accepts(&self, credentials: &CredentialsRef<'_>) -> bool {
        self.0.accepts(credentials)
    }

    fn subscribe_revocations(&self, listener: RevocationListener) {
        self.0.subscribe_revocations(listener);
    }

    fn challenges(&self) -> &[Challenge] {
        self.0.challenges()
    }
}

impl fmt::Debug for BoxAuthenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BoxAuthenticator")
            .field("challenges", &self.0.challenges())
            .finish_non_exhaustive()
    }
}

/// The backend failure of a [`BoxAuthenticator`]: the erased authenticator's error.
#[derive(Debug)]
pub struct BoxAuthenticatorError(Box<dyn Error + Send + Sync>);

impl fmt::Display for BoxAuthenticatorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl Error for BoxAuthenticatorError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        self.0.source()
    }
}

#[cfg(test)]
mod tests {
    use std::{
        convert::Infallible,
        sync::{
            Arc, Mutex,
            atomic::{AtomicUsize, Ordering},
        },
    };

    use secrecy::SecretString;

    use super::{
        Authenticator, Authorization, BoxAuthenticator, Credentials, CredentialsRef,
        RevocationListener, Revoked, first_of,
    };
    use crate::credentials::Scheme;

    /// Accepts every credential of one scheme as `subject`, counts its verifications and
    /// keeps its listeners.
    #[derive(Clone)]
    struct OneScheme {
        scheme: Scheme,
        subject: &'static str,
        fast: bool,
        calls: Arc<AtomicUsize>,
        listeners: Arc<Mutex<Vec<RevocationListener>>>,
    }

    impl OneScheme {
        fn new(scheme: Scheme, subject: &'static str, fast: bool) -> Self {
            Self {
                scheme,
                subject,
                fast,
                calls: Arc::default(),
                listeners: Arc::default(),
            }
        }

        fn calls(&self) -> usize {
            self.calls.load(Ordering::SeqCst)
        }
    }

    impl Authenticator for OneScheme {
        type Error = Infallible;

        async fn authenticate(
            &self,
            credentials: Credentials,
        ) -> Result<Option<Authorization>, Infallible> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            Ok((credentials.scheme() == self.scheme)
                .then(|| Authorization::new(self.subject, self.scheme)))
        }

        fn try_accept_now(&self, credentials: &CredentialsRef<'_>) -> Option<Authorization> {
            (self.fast && credentials.scheme() == self.scheme)
                .then(|| Authorization::new(self.subject, self.scheme))
        }

        fn accepts(&self, credentials: &CredentialsRef<'_>) -> bool {
            credentials.scheme() == self.scheme
        }

        fn subscribe_revocations(&self, listener: RevocationListener) {
            self.listeners.lock().unwrap().push(listener);
        }
    }

    fn basic() -> Credentials {
        Credentials::Basic {
            username: "alice".into(),
            password: SecretString::from("pw"),
        }
    }

    fn bearer() -> Credentials {
        Credentials::Bearer {
            token: SecretString::from("tok"),
        }
    }

    #[tokio::test]
    async fn first_of_asks_only_the_sides_that_accept_the_scheme() {
        let (passwords, tokens) = (
            OneScheme::new(Scheme::Basic, "alice", false),
            OneScheme::new(Scheme::Bearer, "bot", false),
        );
        let chain = first_of(passwords.clone(), tokens.clone());
        let who = chain.authenticate(bearer()).await.unwrap().unwrap();
        assert_eq!(
            (who.subject(), passwords.calls(), tokens.calls()),
            ("bot", 0, 1)
        );
        let who = chain.authenticate(basic()).await.unwrap().unwrap();
        assert_eq!(
            (who.subject(), passwords.calls(), tokens.calls()),
            ("alice", 1, 1)
        );
        let header = Credentials::Header {
            name: http::HeaderName::from_static("x-api-key"),
            value: SecretString::from("k"),
        };
        assert!(
            !chain.accepts(&header.borrowed())
                && chain.accepts(&basic().borrowed())
                && chain.accepts(&bearer().borrowed())
        );
        assert_eq!(chain.authenticate(header).await.unwrap(), None);
        assert_eq!((passwords.calls(), tokens.calls()), (1, 1), "nobody asked");
    }

    #[test]
    fn the_fast_path_goes_to_the_first_side_that_accepts_the_scheme() {
        let slow_basic = OneScheme::new(Scheme::Basic, "alice", false);
        let fast_bearer = OneScheme::new(Scheme::Bearer, "bot", true);
        let chain = first_of(slow_basic, fast_bearer);
        assert_eq!(
            chain
                .try_accept_now(&bearer().borrowed())
                .unwrap()
                .subject(),
            "bot"
        );
        assert_eq!(chain.try_accept_now(&basic().borrowed()), None);
        // `first` accepts Basic but cannot answer now: `second` must not answer for it.
        let both_basic = first_of(
            OneScheme::new(Scheme::Basic, "first", false),
            OneScheme::new(Scheme::Basic, "second", true),
        );
        assert_eq!(both_basic.try_accept_now(&basic().borrowed()), None);
        let boxed = BoxAuthenticator::new(Arc::new(chain));
        assert_eq!(
            boxed
                .try_accept_now(&bearer().borrowed())
                .unwrap()
                .subject(),
            "bot"
        );
        assert!(
            !boxed.accepts(
                &Credentials::Header {
                    name: http::HeaderName::from_static("x-api-key"),
                    value: SecretString::from("k"),
                }
                .borrowed()
            )
        );
    }

    #[test]
    fn combinators_pass_revocation_listeners_to_every_side() {
        let (a, b) = (
            OneScheme::new(Scheme::Basic, "a", false),
            OneScheme::new(Scheme::Bearer, "b", false),
        );
        let chain = BoxAuthenticator::new(Arc::new(first_of(a.clone(), b.clone())));
        chain.subscribe_revocations(RevocationListener::new(|_: &Revoked| {}));
        assert_eq!(a.listeners.lock().unwrap().len(), 1);
        assert_eq!(b.listeners.lock().unwrap().len(), 1);
        // Closures accept everything and have nothing to revoke.
        let closure = |_: Credentials| async { Ok::<_, Infallible>(None) };
        assert!(closure.accepts(&bearer().borrowed()));
        closure.subscribe_revocations(RevocationListener::new(|_: &Revoked| {}));
    }
}
