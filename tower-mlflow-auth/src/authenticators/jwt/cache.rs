//! The verified-token cache: accepted tokens by a keyed PRF of the whole token (AES-256-GCM-SIV,
//! see `cache_key`), answered without a signature check until the earlier of their `exp`
//! and the cache's time to live.

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
    Authorization,
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
        // Never the key or the entries.
        f.debug_struct("TokenCache")
            .field("ttl", &self.ttl)
            .field("max_tokens", &self.max_tokens)
            .field("len", &self.len())
            .finish_non_exhaustive()
    }
}

struct Entry {
    /// The earlier of the check's time plus the time to live and the moment the token's
    /// `exp` plus the leeway is reached, both on tokio's clock: a hit reads one clock.
    expires_at: Instant,
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

    /// How long from `now` (since the Unix epoch) a full check keeps admitting the token, or
    /// `None` when it does not admit it now. jsonwebtoken refuses `exp < now - leeway` and
    /// `nbf > now + leeway` in whole seconds; the time returned ends at `exp + leeway`
    /// exactly, up to a second before a full check would refuse.
    fn admitted_for(self, now: Duration, leeway: u64) -> Option<Duration> {
        let now_secs = now.as_secs();
        let nbf_passed = self
            .nbf
            .is_none_or(|nbf| nbf <= now_secs.saturating_add(leeway));
        let until = Duration::from_secs(self.exp.saturating_add(leeway));
        until
            .checked_sub(now)
            .filter(|left| nbf_passed && !left.is_zero())
    }
}

/// The wall clock since the Unix epoch, as `exp` counts. A clock set before 1970 reads as the
/// end of time, so that no token is cached.
fn unix_now() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::MAX)
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

    /// The cache key of a bearer token: a keyed PRF of all of it. `None` (not cached) only
    /// for a token the PRF refuses, far longer than any header.
    pub(super) fn key_for(&self, token: &str) -> Option<CacheKey> {
        self.mac.key_for_token(token)
    }

    /// The principal of a cached token that is still admitted at `now` (tokio's clock, read
    /// once by the caller), whose key `keys` still holds.
    ///
    /// `exp` is not compared with the wall clock again: it was turned into a deadline on
    /// tokio's clock when the token was cached, so a hit reads no clock of its own. The
    /// monotonic clock never runs back, so a token admitted then (`nbf` passed) stays
    /// admitted until that deadline. What this gives up: a wall clock stepped forward after a
    /// token was cached does not end the entry sooner; its deadline still holds, and the time
    /// to live (`cache_ttl`, default 60 s) bounds the difference.
    pub(super) fn lookup(
        &self,
        key: &CacheKey,
        keys: &KeySet,
        now: Instant,
    ) -> Option<Authorization> {
        let entries = self.read();
        let entry = entries.get(key)?;
        let admitted = now < entry.expires_at && keys.still_verifies(&entry.key, entry.alg);
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
        let Some(left) = lifetime.admitted_for(unix_now(), self.leeway) else {
            return principal;
        };
        let now = Instant::now();
        let Some(expires_at) = now.checked_add(left.min(self.ttl)) else {
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
    /// go first, then arbitrary ones. The map's order is that of the keys, keyed PRF tags
    /// under a secret, so no client can choose whose token goes.
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
    use std::time::Duration;

    use serde_json::json;

    use super::Lifetime;

    #[test]
    fn lifetime_admits_no_longer_than_jsonwebtoken_admits() {
        let secs = Duration::from_secs;
        let millis = Duration::from_millis;
        let lifetime = Lifetime::of(&json!({"exp": 100, "nbf": 50})).unwrap();
        let admitted_for = |now, leeway| lifetime.admitted_for(now, leeway);
        assert_eq!(admitted_for(secs(90), 0), Some(secs(10)));
        assert_eq!(
            admitted_for(millis(99_250), 0),
            Some(millis(750)),
            "sub-second"
        );
        // A full check still admits at 100.5 s (whole seconds, `exp` inclusive): the cache
        // stops earlier, never later.
        assert_eq!(admitted_for(millis(100_500), 0), None);
        assert_eq!(admitted_for(secs(100), 0), None);
        assert_eq!(admitted_for(secs(105), 10), Some(secs(5)));
        assert_eq!(admitted_for(secs(110), 10), None);
        assert_eq!(admitted_for(secs(49), 0), None, "nbf not reached");
        assert_eq!(
            admitted_for(secs(45), 5),
            Some(secs(60)),
            "nbf within the leeway"
        );
        assert_eq!(
            admitted_for(Duration::MAX, 60),
            None,
            "a broken clock admits nothing"
        );
    }

    #[test]
    fn fractional_or_odd_times_are_not_kept() {
        assert!(Lifetime::of(&json!({"exp": 1.5})).is_none());
        assert!(Lifetime::of(&json!({"exp": 100, "nbf": "soon"})).is_none());
        assert!(Lifetime::of(&json!({"nbf": 1})).is_none());
        assert!(Lifetime::of(&json!({"exp": 100})).is_some());
    }
}
