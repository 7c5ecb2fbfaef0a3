//! The signed-in session: what the sealed cookie carries ([`SessionData`]), opening and
//! sealing it, and remembering refreshes so that one refresh token is redeemed once
//! ([`Refreshes`]).

use std::{
    collections::HashMap,
    fmt,
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use http::{HeaderMap, HeaderValue};
use secrecy::{ExposeSecret as _, SecretString, zeroize::Zeroizing};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use tokio::time::Instant;
use tower_mlflow_auth::session::{SessionCookie, SessionSealError};
use tower_mlflow_core::sync::SingleFlight;

use super::{access::Identity, provider::Tokens};

/// The payload of the session cookie (JSON, sealed): who signed in and until when, and the
/// issuer's refresh token if it gave one. Never logged: `Debug` leaves out the token and
/// the nonce.
#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct SessionData {
    /// The format version, [`SessionData::VERSION`].
    pub(crate) v: u8,
    pub(crate) identity: Identity,
    /// The nonce of the sign-in, which a refreshed ID token must carry if it has one.
    pub(crate) nonce: String,
    /// Unix seconds; the cookie's own sealed expiry is the same.
    pub(crate) expires_at: u64,
    /// Unix seconds from which a request refreshes the session (with a refresh token only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) refresh_at: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) refresh_token: Option<String>,
}

impl SessionData {
    /// The payload format this gateway writes and reads.
    pub(crate) const VERSION: u8 = 1;

    /// The session that starts at `now`, after a sign-in or a refresh, for `lifetime`. With a
    /// refresh token it is refreshed at the earliest of the ID token's expiry, the access
    /// token's (`expires_in`) and the session's.
    pub(crate) fn start(
        identity: Identity,
        nonce: String,
        tokens: &Tokens,
        refresh_token: Option<String>,
        now: SystemTime,
        lifetime: Duration,
    ) -> Self {
        let expires_at = unix(now + lifetime);
        let refresh_at = refresh_token.as_ref().map(|_| {
            let id_token_expiry = tokens.claims.as_ref().and_then(|c| c.expires_at());
            [id_token_expiry, tokens.expires_at]
                .into_iter()
                .flatten()
                .map(unix)
                .fold(expires_at, u64::min)
        });
        Self {
            v: Self::VERSION,
            identity,
            nonce,
            expires_at,
            refresh_at,
            refresh_token,
        }
    }

    /// The session in `request`'s cookies, if they hold a valid one at `now`: a tampered,
    /// truncated, other-key, expired or unreadable cookie is no session.
    pub(crate) fn open(
        cookie: &SessionCookie,
        request: &HeaderMap,
        now: SystemTime,
    ) -> Option<Self> {
        let plaintext = cookie.open(request, now)?;
        let data: Self = serde_json::from_slice(plaintext.expose_secret()).ok()?;
        (data.v == Self::VERSION && unix(now) < data.expires_at).then_some(data)
    }

    /// The `Set-Cookie` headers that store this session (and remove chunks of an older,
    /// larger one present in `request`).
    pub(crate) fn seal(
        &self,
        cookie: &SessionCookie,
        request: &HeaderMap,
        now: SystemTime,
    ) -> Result<Vec<HeaderValue>, SessionSealError> {
        // Serialising strings, numbers and lists cannot fail.
        let json = Zeroizing::new(serde_json::to_vec(self).unwrap_or_default());
        cookie.set_cookies(request, &json, self.expires(), now)
    }

    /// When the session ends.
    pub(crate) fn expires(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(self.expires_at)
    }

    /// Whether a request at `now` refreshes the session first.
    pub(crate) fn refresh_due(&self, now: SystemTime) -> bool {
        self.refresh_token.is_some() && self.refresh_at.is_some_and(|at| unix(now) >= at)
    }
}

impl fmt::Debug for SessionData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionData")
            .field("v", &self.v)
            .field("identity", &self.identity)
            .field("expires_at", &self.expires_at)
            .field("refresh_at", &self.refresh_at)
            .field("refresh_token", &self.refresh_token.as_ref().map(|_| "…"))
            .finish_non_exhaustive()
    }
}

/// Unix seconds of `time` (0 before 1970).
pub(crate) fn unix(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs())
}

/// What a refresh made of a session: the new one, or `None` when the session ends.
pub(crate) type Refreshed = Option<Arc<SessionData>>;

/// The refreshes of this process: at most one in flight per refresh token, and each outcome
/// remembered for [`REMEMBER`](Self::REMEMBER), so that the requests a page makes at once
/// with the old cookie all get the same new session and the token is redeemed once (an
/// issuer that rotates refresh tokens refuses a second use).
///
/// Keys are SHA-256 digests of the tokens, so no token is kept in a map key.
pub(crate) struct Refreshes {
    flights: SingleFlight<[u8; 32], Refreshed>,
    recent: Mutex<HashMap<[u8; 32], (Instant, Refreshed)>>,
}

impl Refreshes {
    /// How long an outcome is remembered.
    pub(crate) const REMEMBER: Duration = Duration::from_secs(30);
    /// The most outcomes remembered; beyond, the oldest are forgotten.
    pub(crate) const MAX_REMEMBERED: usize = 10_000;

    pub(crate) fn new() -> Self {
        Self {
            flights: SingleFlight::new(),
            recent: Mutex::new(HashMap::new()),
        }
    }

    /// The outcome of refreshing with `refresh_token`: a remembered one, the one in flight,
    /// or `refresh()`'s.
    pub(crate) async fn run<F, Fut>(
        &self,
        refresh_token: &SecretString,
        mut refresh: F,
    ) -> Refreshed
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Refreshed>,
    {
        let key: [u8; 32] = Sha256::digest(refresh_token.expose_secret().as_bytes()).into();
        if let Some(outcome) = self.remembered(&key) {
            return outcome;
        }
        self.flights
            .run(key, || {
                let outcome = self.remembered(&key);
                let fresh = outcome.is_none().then(&mut refresh);
                async move {
                    if let Some(outcome) = outcome {
                        return outcome;
                    }
                    let outcome = match fresh {
                        Some(fresh) => fresh.await,
                        None => None,
                    };
                    self.remember(key, outcome.clone());
                    outcome
                }
            })
            .await
    }

    fn remembered(&self, key: &[u8; 32]) -> Option<Refreshed> {
        let recent = self.recent.lock().unwrap_or_else(PoisonError::into_inner);
        let (at, outcome) = recent.get(key)?;
        (at.elapsed() < Self::REMEMBER).then(|| outcome.clone())
    }

    fn remember(&self, key: [u8; 32], outcome: Refreshed) {
        let mut recent = self.recent.lock().unwrap_or_else(PoisonError::into_inner);
        if recent.len() >= Self::MAX_REMEMBERED {
            recent.retain(|_, (at, _)| at.elapsed() < Self::REMEMBER);
            if recent.len() >= Self::MAX_REMEMBERED {
                // Still full of fresh outcomes: a flood of refreshes; forget the oldest.
                if let Some(oldest) = recent
                    .iter()
                    .min_by_key(|(_, (at, _))| *at)
                    .map(|(k, _)| *k)
                {
                    recent.remove(&oldest);
                }
            }
        }
        recent.insert(key, (Instant::now(), outcome));
    }
}

impl fmt::Debug for Refreshes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let remembered = self.recent.lock().map_or(0, |recent| recent.len());
        f.debug_struct("Refreshes")
            .field("in_flight", &self.flights.len())
            .field("remembered", &remembered)
            .finish()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use http::header::COOKIE;
    use tower_mlflow_auth::session::SessionKeys;

    use super::*;

    pub(crate) fn identity() -> Identity {
        Identity {
            subject: "sub-alice".into(),
            user: "alice@example.com".into(),
            email: Some("alice@example.com".into()),
            groups: vec!["mlflow-users".into()],
            admin: false,
        }
    }

    fn tokens() -> Tokens {
        Tokens {
            claims: None,
            refresh_token: None,
            expires_at: None,
        }
    }

    pub(crate) fn cookie(secret: &str) -> SessionCookie {
        let keys = SessionKeys::from_secret(&SecretString::from(secret)).unwrap();
        SessionCookie::builder("mlflow_gateway_session", keys)
            .insecure_loopback_http("127.0.0.1")
            .build()
            .unwrap()
    }

    /// A request carrying the pairs of `set_cookies`.
    fn request_with(set_cookies: &[HeaderValue]) -> HeaderMap {
        let pairs: Vec<&str> = set_cookies
            .iter()
            .map(|h| h.to_str().unwrap().split(';').next().unwrap())
            .collect();
        let mut request = HeaderMap::new();
        request.insert(COOKIE, pairs.join("; ").parse().unwrap());
        request
    }

    pub(crate) const SECRET: &str = "a-session-secret-of-at-least-32-bytes";

    #[test]
    fn a_sealed_session_opens_and_a_foreign_one_does_not() {
        let now = SystemTime::now();
        let cookie = cookie(SECRET);
        let lifetime = Duration::from_secs(3600);
        let data = SessionData::start(identity(), "n".into(), &tokens(), None, now, lifetime);
        assert_eq!(data.refresh_at, None);
        let request = request_with(&data.seal(&cookie, &HeaderMap::new(), now).unwrap());
        let opened = SessionData::open(&cookie, &request, now).unwrap();
        assert_eq!(opened.identity.user, "alice@example.com");
        assert_eq!(opened.expires_at, unix(now) + 3600);

        // Another key, a tampered value, an expired session: no session.
        let other = self::cookie("another-session-secret-of-32-bytes!!");
        assert!(SessionData::open(&other, &request, now).is_none());
        let value = request[COOKIE].to_str().unwrap();
        let (name, sealed) = value.split_once('=').unwrap();
        let mut bytes = sealed.as_bytes().to_vec();
        let last = bytes.len() - 1;
        bytes[last] = if bytes[last] == b'A' { b'B' } else { b'A' };
        let mut tampered = HeaderMap::new();
        let tampered_value = format!("{name}={}", String::from_utf8(bytes).unwrap());
        tampered.insert(COOKIE, tampered_value.parse().unwrap());
        assert!(SessionData::open(&cookie, &tampered, now).is_none());
        let later = now + lifetime + Duration::from_secs(1);
        assert!(SessionData::open(&cookie, &request, later).is_none());
    }

    #[test]
    fn a_user_in_hundreds_of_groups_gets_a_chunked_session_that_opens_whole() {
        let now = SystemTime::now();
        let cookie = cookie(SECRET);
        let mut identity = identity();
        // An Entra ID or Keycloak user in 300 groups: far more than one 4 KB cookie holds.
        identity.groups = (0..300).map(|i| format!("team-{i:03}-mlflow")).collect();
        let data = SessionData::start(
            identity,
            "n".into(),
            &tokens(),
            None,
            now,
            Duration::from_secs(3600),
        );
        let set_cookies = data.seal(&cookie, &HeaderMap::new(), now).unwrap();
        assert!(set_cookies.len() > 1, "{} cookie(s)", set_cookies.len());
        for (index, set_cookie) in set_cookies.iter().enumerate() {
            let set_cookie = set_cookie.to_str().unwrap();
            assert!(set_cookie.starts_with(&format!("mlflow_gateway_session.{index}=")));
            assert!(set_cookie.len() <= SessionCookie::MAX_SET_COOKIE_LEN);
        }
        let opened = SessionData::open(&cookie, &request_with(&set_cookies), now).unwrap();
        assert_eq!(opened.identity.groups.len(), 300);
        assert_eq!(opened.identity.groups[299], "team-299-mlflow");
        // A chunk missing: no session, never a partial one.
        let opened = SessionData::open(&cookie, &request_with(&set_cookies[1..]), now);
        assert!(opened.is_none());
    }

    #[test]
    fn with_a_refresh_token_the_session_refreshes_at_the_earliest_expiry() {
        let now = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let mut tokens = tokens();
        tokens.expires_at = Some(now + Duration::from_secs(300));
        let lifetime = Duration::from_secs(3600);
        let data = SessionData::start(
            identity(),
            "n".into(),
            &tokens,
            Some("rt".into()),
            now,
            lifetime,
        );
        assert_eq!(data.refresh_at, Some(1_000_300));
        assert!(!data.refresh_due(now + Duration::from_secs(299)));
        assert!(data.refresh_due(now + Duration::from_secs(300)));
        assert!(!format!("{data:?}").contains("rt\""), "{data:?}");
        let without = SessionData::start(identity(), "n".into(), &tokens, None, now, lifetime);
        assert!(!without.refresh_due(now + Duration::from_secs(3000)));
    }

    #[tokio::test]
    async fn one_refresh_per_token_and_its_outcome_is_remembered() {
        let refreshes = Arc::new(Refreshes::new());
        let calls = Arc::new(AtomicUsize::new(0));
        let now = SystemTime::now();
        let new = Arc::new(SessionData::start(
            identity(),
            "n".into(),
            &tokens(),
            None,
            now,
            Duration::from_secs(60),
        ));
        let token = SecretString::from("refresh-token-1");
        let (gate_tx, gate_rx) = tokio::sync::watch::channel(false);
        let mut tasks = Vec::new();
        for _ in 0..4 {
            let (refreshes, calls, new, token) = (
                Arc::clone(&refreshes),
                Arc::clone(&calls),
                Arc::clone(&new),
                token.clone(),
            );
            let gate = gate_rx.clone();
            tasks.push(tokio::spawn(async move {
                refreshes
                    .run(&token, || {
                        calls.fetch_add(1, Ordering::SeqCst);
                        let new = Arc::clone(&new);
                        let mut gate = gate.clone();
                        async move {
                            let _ = gate.wait_for(|open| *open).await;
                            Some(new)
                        }
                    })
                    .await
                    .map(|s| s.expires_at)
            }));
        }
        tokio::task::yield_now().await;
        gate_tx.send_replace(true);
        for task in tasks {
            assert_eq!(task.await.unwrap(), Some(new.expires_at));
        }
        // Later requests with the old cookie get the same outcome without a new refresh.
        let again = refreshes.run(&token, || async { None }).await;
        assert_eq!(again.map(|s| s.expires_at), Some(new.expires_at));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        // Another token is refreshed on its own.
        let other = refreshes
            .run(&SecretString::from("t2"), || async { None })
            .await;
        assert!(other.is_none());
    }
}
