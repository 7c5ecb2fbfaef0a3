//! The verified-token cache: accepted tokens by HMAC, answered without a signature check
//! until the earlier of their `exp` and the cache's time to live.

use std::{
    fmt,
    sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use jsonwebtoken::Algorithm;
use serde_json::Value;
use tokio::time::Instant;

use super::{
    claims::Verified,
    keys::{KeyId, KeySet},
};
use crate::{
    Authorization, Credentials,
    authenticators::cache_key::{CacheKey, KeyMac, KeyMap},
};

/// Accepted tokens. A hit takes the read lock and writes nothing.
pub(super) struct TokenCache {
    mac: KeyMac,
    entries: RwLock<KeyMap<Entry>>,
    ttl: Duration,
    max_tokens: u64,
    /// The leeway of `exp` and `nbf`, in seconds, as on a full check.
    leeway: u64,
}

impl fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the HMAC key or the entries.
        f.debug_struct("TokenCache")
            .field("ttl", &self.ttl)
            .field("max_tokens", &self.max_tokens)
            .field("len", &self.len())
            .finish_non_exhaustive()
    }
}

struct Entry {
    /// The earlier of the check's time plus the time to live and `exp` plus the leeway, on
    /// tokio's clock; `exp` itself is checked again on each hit against the wall clock.
    expires_at: Instant,
    lifetime: Lifetime,
    /// The key that verified the token: when the JWKS drops it, so does the cache.
    key: Arc<KeyId>,
    alg: Algorithm,
    principal: Authorization,
}

/// A token's `exp` and `nbf`, in seconds since the Unix epoch.
#[derive(Clone, Copy, Debug)]
pub(super) struct Lifetime {
    exp: u64,
    nbf: Option<u64>,
}

impl Lifetime {
    /// `exp` and `nbf` (if any) of verified claims, or `None` when one is not a whole
    /// number of seconds, which jsonwebtoken accepts but the cache then does not keep.
    pub(super) fn of(claims: &Value) -> Option<Self> {
        let exp = claims.get("exp")?.as_u64()?;
        let nbf = match claims.get("nbf") {
            Some(nbf) => Some(nbf.as_u64()?),
            None => None,
        };
        Some(Self { exp, nbf })
    }

    /// What a full check says of `exp` and `nbf` at `now`: jsonwebtoken refuses
    /// `exp < now - leeway` and `nbf > now + leeway`.
    fn admits(self, now: u64, leeway: u64) -> bool {
        self.exp.saturating_add(leeway) >= now
            && self.nbf.is_none_or(|nbf| nbf <= now.saturating_add(leeway))
    }

    /// How long from `now` the token stays admitted, rounded down to whole seconds.
    fn remaining(self, now: u64, leeway: u64) -> Duration {
        Duration::from_secs(self.exp.saturating_add(leeway).saturating_sub(now))
    }
}

/// The wall clock in seconds since the Unix epoch, as `exp` counts. A clock set before 1970
/// reads as the end of time, so that no cached token is admitted.
fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(u64::MAX, |since| since.as_secs())
}

impl TokenCache {
    /// `max_tokens` is more than zero: a zero-sized cache is no cache at all.
    pub(super) fn new(mac: KeyMac, ttl: Duration, max_tokens: u64, leeway: Duration) -> Self {
        Self {
            mac,
            entries: RwLock::default(),
            ttl,
            max_tokens,
            leeway: leeway.as_secs(),
        }
    }

    pub(super) fn key_for(&self, credentials: &Credentials) -> CacheKey {
        self.mac.key_for(credentials)
    }

    /// The principal of a cached token that is still admitted now, whose key `keys` still
    /// holds.
    pub(super) fn lookup(&self, key: &CacheKey, keys: &KeySet) -> Option<Authorization> {
        let entries = self.read();
        let entry = entries.get(key)?;
        let admitted = Instant::now() < entry.expires_at
            && entry.lifetime.admits(unix_now(), self.leeway)
            && keys.still_verifies(&entry.key, entry.alg);
        admitted.then(|| entry.principal.clone())
    }

    /// Keeps an accepted token until the earlier of its `exp` (plus the leeway) and the
    /// time to live, and hands its principal back. See [`make_room`](Self::make_room) for a
    /// full cache.
    pub(super) fn remember(&self, key: CacheKey, verified: Verified) -> Authorization {
        let Verified {
            principal,
            key: verified_by,
            alg,
            lifetime,
        } = verified;
        let Some(lifetime) = lifetime else {
            return principal;
        };
        let left = lifetime.remaining(unix_now(), self.leeway).min(self.ttl);
        let now = Instant::now();
        let Some(expires_at) = now.checked_add(left).filter(|_| !left.is_zero()) else {
            return principal;
        };
        let mut entries = self.write();
        if self.is_full(&entries) && !entries.contains_key(&key) {
            self.make_room(&mut entries, now);
        }
        entries.insert(
            key,
            Entry {
                expires_at,
                lifetime,
                key: verified_by,
                alg,
                principal: principal.clone(),
            },
        );
        principal
    }

    /// Drops the tokens whose key `keys` no longer holds (or no longer allows for their
    /// algorithm). Run once a new key set is in use.
    pub(super) fn retain_verifiable(&self, keys: &KeySet) {
        self.write()
            .retain(|_, entry| keys.still_verifies(&entry.key, entry.alg));
    }

    /// How many tokens are kept, expired ones included.
    pub(super) fn len(&self) -> u64 {
        u64::try_from(self.read().len()).unwrap_or(u64::MAX)
    }

    /// Frees an eighth of the bound at once, so that a cache kept full by more live tokens
    /// than it holds sweeps once per many inserts rather than on each: the expired tokens
    /// go first, then arbitrary ones. The map's order is that of the keys, HMACs under a
    /// secret, so no client can choose whose token goes.
    fn make_room(&self, entries: &mut KeyMap<Entry>, now: Instant) {
        entries.retain(|_, entry| entry.expires_at > now);
        let keep = self.max_tokens - self.max_tokens.div_ceil(8);
        let mut excess = u64::try_from(entries.len())
            .unwrap_or(u64::MAX)
            .saturating_sub(keep);
        entries.retain(|_, _| {
            let evict = excess > 0;
            excess = excess.saturating_sub(1);
            !evict
        });
    }

    fn is_full(&self, entries: &KeyMap<Entry>) -> bool {
        u64::try_from(entries.len()).unwrap_or(u64::MAX) >= self.max_tokens
    }

    fn read(&self) -> RwLockReadGuard<'_, KeyMap<Entry>> {
        self.entries.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, KeyMap<Entry>> {
        self.entries.write().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::Lifetime;

    #[test]
    fn lifetime_admits_what_jsonwebtoken_admits() {
        let lifetime = Lifetime::of(&json!({"exp": 100, "nbf": 50})).unwrap();
        assert!(lifetime.admits(100, 0), "exp is inclusive");
        assert!(!lifetime.admits(101, 0));
        assert!(lifetime.admits(110, 10));
        assert!(!lifetime.admits(111, 10));
        assert!(!lifetime.admits(49, 0), "nbf not reached");
        assert!(lifetime.admits(45, 5));
        assert!(
            !lifetime.admits(u64::MAX, 60),
            "a broken clock admits nothing"
        );
        assert_eq!(lifetime.remaining(90, 5).as_secs(), 15);
        assert_eq!(lifetime.remaining(200, 5).as_secs(), 0);
    }

    #[test]
    fn fractional_or_odd_times_are_not_kept() {
        assert!(Lifetime::of(&json!({"exp": 1.5})).is_none());
        assert!(Lifetime::of(&json!({"exp": 100, "nbf": "soon"})).is_none());
        assert!(Lifetime::of(&json!({"nbf": 1})).is_none());
        assert!(Lifetime::of(&json!({"exp": 100})).is_some());
    }
}
