//! [`OpenedSessions`]: the sessions this process opened lately, keyed by the exact sealed
//! cookie value, so that a browser's next requests with the same cookie skip the
//! decryption, the JSON and building the principal.
//!
//! Only values that opened are kept, so a tampered, foreign-key or expired cookie is never
//! answered from here: it differs from every kept value and goes to [`SessionData::open`].

use std::{
    borrow::Cow,
    collections::HashMap,
    fmt,
    sync::{Arc, PoisonError, RwLock},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use http::{HeaderMap, header::COOKIE};
use tower_mlflow_auth::{Authorization, session::SessionCookie};

use super::session::SessionData;

/// An opened session and its principal, built once per session rather than per request.
pub(crate) struct OpenedSession {
    pub(crate) data: SessionData,
    pub(crate) principal: Authorization,
}

impl OpenedSession {
    pub(crate) fn new(data: SessionData) -> Self {
        let principal = data.identity.principal();
        Self { data, principal }
    }
}

impl fmt::Debug for OpenedSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenedSession")
            .field("data", &self.data)
            .finish_non_exhaustive()
    }
}

/// Recently opened sessions: a few read-mostly shards, so that a hit takes one shard's read
/// lock and writes nothing. No lock is held across an `await` (nothing here is async).
///
/// Times are wall-clock ([`SystemTime`]) because the session's expiry is: an entry lives
/// until the earliest of the session's `expires_at`, its `refresh_at` and
/// [`TTL`](Self::TTL) after it was opened, and every hit checks it.
pub(crate) struct OpenedSessions {
    shards: [RwLock<HashMap<Box<str>, Entry>>; SHARDS],
    max_per_shard: usize,
}

struct Entry {
    until: SystemTime,
    session: Arc<OpenedSession>,
}

const SHARDS: usize = 16;

impl OpenedSessions {
    /// The longest an opened session is kept.
    pub(crate) const TTL: Duration = Duration::from_secs(60);
    /// The most sessions kept, over all shards.
    pub(crate) const MAX_ENTRIES: usize = 10_000;

    pub(crate) fn new() -> Self {
        Self::with_max_entries(Self::MAX_ENTRIES)
    }

    fn with_max_entries(max_entries: usize) -> Self {
        Self {
            shards: std::array::from_fn(|_| RwLock::default()),
            max_per_shard: max_entries.div_ceil(SHARDS).max(1),
        }
    }

    /// The session in `request`'s cookies at `now`: a kept one if the sealed value is one
    /// that opened before and its entry is live, else [`SessionData::open`]'s (kept if it
    /// opened and is not due for a refresh).
    pub(crate) fn open(
        &self,
        cookie: &SessionCookie,
        request: &HeaderMap,
        now: SystemTime,
    ) -> Option<Arc<OpenedSession>> {
        let key = sealed_value(cookie, request)?;
        if let Some(session) = self.get(&key, now) {
            return Some(session);
        }
        let session = Arc::new(OpenedSession::new(SessionData::open(cookie, request, now)?));
        self.insert(key.into_owned(), Arc::clone(&session), now);
        Some(session)
    }

    fn get(&self, key: &str, now: SystemTime) -> Option<Arc<OpenedSession>> {
        let shard = self
            .shard(key)
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        let entry = shard.get(key)?;
        (now < entry.until).then(|| Arc::clone(&entry.session))
    }

    /// Keeps `session` until the earliest of its expiry, its refresh and `now` + TTL; a
    /// session already due for either is not kept. A full shard drops its expired entries,
    /// then the one that expires first.
    fn insert(&self, key: String, session: Arc<OpenedSession>, now: SystemTime) {
        let data = &session.data;
        let Some(ttl_end) = now.checked_add(Self::TTL) else {
            return;
        };
        let until = [Some(data.expires_at), data.refresh_at]
            .into_iter()
            .flatten()
            .filter_map(|at| UNIX_EPOCH.checked_add(Duration::from_secs(at)))
            .fold(ttl_end, SystemTime::min);
        if until <= now {
            return;
        }
        let key = key.into_boxed_str();
        let mut shard = self
            .shard(&key)
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if shard.len() >= self.max_per_shard && !shard.contains_key(&key) {
            shard.retain(|_, entry| now < entry.until);
            if shard.len() >= self.max_per_shard {
                let first = shard
                    .iter()
                    .min_by_key(|(_, entry)| entry.until)
                    .map(|(key, _)| key.clone());
                if let Some(first) = first {
                    shard.remove(&first);
                }
            }
        }
        shard.insert(key, Entry { until, session });
    }

    fn shard(&self, key: &str) -> &RwLock<HashMap<Box<str>, Entry>> {
        // The value ends in the AEAD tag: uniform bytes an attacker cannot choose for a kept
        // entry, so its last bytes spread keys without hashing the whole value again.
        let mix = key.bytes().rev().take(8).fold(0_usize, |h, b| {
            h.wrapping_mul(31).wrapping_add(usize::from(b))
        });
        &self.shards[mix % SHARDS]
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|shard| shard.read().map_or(0, |shard| shard.len()))
            .sum()
    }
}

impl fmt::Debug for OpenedSessions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenedSessions")
            .field("max_per_shard", &self.max_per_shard)
            .finish_non_exhaustive()
    }
}

/// The session cookie's pairs in `request`, byte for byte and in order (`;`-joined when it
/// is chunked): equal values give [`SessionCookie::open`] the same input, since it reads
/// nothing else. Borrowed in the usual case of one pair. `None` without a session cookie.
fn sealed_value<'a>(cookie: &SessionCookie, request: &'a HeaderMap) -> Option<Cow<'a, str>> {
    let mut value: Option<Cow<'a, str>> = None;
    let own_pairs = request
        .get_all(COOKIE)
        .iter()
        .flat_map(|header| header.as_bytes().split(|&b| b == b';'))
        .filter_map(|pair| std::str::from_utf8(pair).ok())
        .filter(|pair| {
            pair.split_once('=')
                .is_some_and(|(name, _)| cookie.is_own(name.trim_matches([' ', '\t'])))
        });
    for pair in own_pairs {
        value = Some(match value {
            None => Cow::Borrowed(pair),
            Some(before) => Cow::Owned(format!("{before};{pair}")),
        });
    }
    value
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;
    use crate::sso::{
        access::Identity,
        provider::Tokens,
        session::tests::{SECRET, cookie},
    };

    fn session(user: &str, now: SystemTime, lifetime: Duration) -> SessionData {
        let identity = Identity {
            subject: format!("sub-{user}"),
            user: user.into(),
            email: None,
            groups: vec!["mlflow-users".into()],
            admin: false,
        };
        let tokens = Tokens {
            claims: None,
            refresh_token: None,
            expires_at: None,
        };
        SessionData::start(identity, "n".into(), &tokens, None, now, lifetime)
    }

    /// A request with a session for `user` that lasts `seconds`, sealed with `cookie`.
    fn request(cookie: &SessionCookie, user: &str, now: SystemTime, seconds: u64) -> HeaderMap {
        let data = session(user, now, Duration::from_secs(seconds));
        request_with(cookie, &data, now)
    }

    /// A request carrying `data` sealed with `cookie`, after an unrelated cookie.
    fn request_with(cookie: &SessionCookie, data: &SessionData, now: SystemTime) -> HeaderMap {
        let set_cookies = data.seal(cookie, &HeaderMap::new(), now).unwrap();
        let pairs: Vec<&str> = set_cookies
            .iter()
            .map(|h| h.to_str().unwrap().split(';').next().unwrap())
            .collect();
        let mut request = HeaderMap::new();
        let value = format!("theme=dark; {}", pairs.join("; "));
        request.insert(COOKIE, HeaderValue::from_str(&value).unwrap());
        request
    }

    fn user(opened: Option<Arc<OpenedSession>>) -> Option<String> {
        opened.map(|s| s.principal.subject().to_owned())
    }

    #[test]
    fn a_second_request_with_the_same_value_is_a_hit() {
        let (now, cookie) = (SystemTime::now(), cookie(SECRET));
        let sessions = OpenedSessions::new();
        let request = request(&cookie, "alice", now, 3600);
        let first = sessions.open(&cookie, &request, now).unwrap();
        assert_eq!(sessions.len(), 1);
        let second = sessions.open(&cookie, &request, now).unwrap();
        assert!(Arc::ptr_eq(&first, &second), "opened twice");
        assert_eq!(second.principal.subject(), "alice");
        // Another cookie in front changes nothing.
        let mut other = request.clone();
        let value = request[COOKIE].to_str().unwrap().replace("dark", "light");
        other.insert(COOKIE, HeaderValue::from_str(&value).unwrap());
        assert!(Arc::ptr_eq(
            &first,
            &sessions.open(&cookie, &other, now).unwrap()
        ));
    }

    #[test]
    fn a_different_tampered_or_foreign_value_misses() {
        let (now, cookie) = (SystemTime::now(), cookie(SECRET));
        let sessions = OpenedSessions::new();
        let alice = request(&cookie, "alice", now, 3600);
        let bob = request(&cookie, "bob", now, 3600);
        assert_eq!(
            user(sessions.open(&cookie, &alice, now)).as_deref(),
            Some("alice")
        );
        assert_eq!(
            user(sessions.open(&cookie, &bob, now)).as_deref(),
            Some("bob")
        );
        assert_eq!(sessions.len(), 2);

        let value = alice[COOKIE].to_str().unwrap();
        let mut tampered = value.as_bytes().to_vec();
        let last = tampered.len() - 1;
        tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
        let mut request = HeaderMap::new();
        request.insert(COOKIE, HeaderValue::from_bytes(&tampered).unwrap());
        assert!(sessions.open(&cookie, &request, now).is_none());
        // A value appended to the kept one is another value, and no session.
        let doubled = format!("{value}; {}", value.rsplit("; ").next().unwrap());
        request.insert(COOKIE, HeaderValue::from_str(&doubled).unwrap());
        assert!(sessions.open(&cookie, &request, now).is_none());
        // Sealed with another key: never kept, never opened.
        let other = self::cookie("another-session-secret-of-32-bytes!!");
        let foreign = self::request(&other, "mallory", now, 3600);
        assert!(sessions.open(&cookie, &foreign, now).is_none());
        assert_eq!(sessions.len(), 2);
    }

    #[test]
    fn entries_expire_with_the_session_and_after_the_ttl() {
        let (now, cookie) = (SystemTime::now(), cookie(SECRET));
        let sessions = OpenedSessions::new();
        let short = request(&cookie, "alice", now, 10);
        let first = sessions.open(&cookie, &short, now).unwrap();
        // The session ends within the TTL: no session then, kept or not.
        let ended = now + Duration::from_secs(11);
        assert!(sessions.open(&cookie, &short, ended).is_none());

        let long = request(&cookie, "bob", now, 3600);
        let kept = sessions.open(&cookie, &long, now).unwrap();
        let within = now + Duration::from_secs(59);
        assert!(Arc::ptr_eq(
            &kept,
            &sessions.open(&cookie, &long, within).unwrap()
        ));
        // After the TTL it is opened again (a new entry), still valid.
        let after = now + OpenedSessions::TTL + Duration::from_secs(1);
        let reopened = sessions.open(&cookie, &long, after).unwrap();
        assert!(!Arc::ptr_eq(&kept, &reopened));
        assert_eq!(reopened.principal.subject(), "bob");
        drop(first);
    }

    #[test]
    fn a_session_due_for_a_refresh_is_not_kept_past_it() {
        let now = UNIX_EPOCH + Duration::from_secs(2_000_000_000);
        let cookie = cookie(SECRET);
        let sessions = OpenedSessions::new();
        let mut data = session("alice", now, Duration::from_secs(3600));
        data.refresh_token = Some("rt".into());
        data.refresh_at = Some(2_000_000_030);
        let request = request_with(&cookie, &data, now);
        let kept = sessions.open(&cookie, &request, now).unwrap();
        assert!(!kept.data.refresh_due(now));
        let due = now + Duration::from_secs(30);
        let opened = sessions.open(&cookie, &request, due).unwrap();
        assert!(!Arc::ptr_eq(&kept, &opened), "answered from the cache");
        assert!(opened.data.refresh_due(due));
        // Due now: not kept, so the refresh is not skipped on the next request either.
        assert!(
            sessions
                .get(&sealed_value(&cookie, &request).unwrap(), due)
                .is_none()
        );
    }

    #[test]
    fn the_cache_is_bounded() {
        let (now, cookie) = (SystemTime::now(), cookie(SECRET));
        let sessions = OpenedSessions::with_max_entries(SHARDS * 2);
        for i in 0..SHARDS * 6 {
            let request = request(&cookie, &format!("user{i}"), now, 3600);
            assert!(sessions.open(&cookie, &request, now).is_some());
        }
        assert!(sessions.len() <= SHARDS * 2, "{} kept", sessions.len());
        assert!(sessions.len() > 0);
    }

    #[test]
    fn a_chunked_session_is_kept_whole() {
        let (now, cookie) = (SystemTime::now(), cookie(SECRET));
        let sessions = OpenedSessions::new();
        let mut data = session("alice", now, Duration::from_secs(3600));
        data.identity.groups = (0..300).map(|i| format!("team-{i:03}-mlflow")).collect();
        let request = request_with(&cookie, &data, now);
        let first = sessions.open(&cookie, &request, now).unwrap();
        assert!(Arc::ptr_eq(
            &first,
            &sessions.open(&cookie, &request, now).unwrap()
        ));
        // Without its last chunk: another value, and no session.
        let value = request[COOKIE].to_str().unwrap();
        let (partial, _) = value.rsplit_once("; ").unwrap();
        let mut request = HeaderMap::new();
        request.insert(COOKIE, HeaderValue::from_str(partial).unwrap());
        assert!(sessions.open(&cookie, &request, now).is_none());
    }
}
