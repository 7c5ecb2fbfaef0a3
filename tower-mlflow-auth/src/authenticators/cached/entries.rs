//! The accepted credentials: a map read under a shared lock, with expiry and eviction.

use std::{
    sync::{
        Arc, PoisonError, RwLock, RwLockWriteGuard,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use tokio::time::Instant;

use super::key::{CacheKey, KeyMap};
use crate::{authenticator::Revoked, authorization::Authorization};

/// Accepted credentials. A hit takes the read lock and writes nothing.
pub(super) struct Entries {
    map: RwLock<KeyMap<Entry>>,
    /// Bumped by every `invalidate` and `clear`, so that a verification which raced with one
    /// does not leave its (possibly stale) answer in the cache.
    invalidations: AtomicU64,
    ttl: Duration,
    max_entries: u64,
}

struct Entry {
    expires_at: Instant,
    /// The Basic username the credential was presented with, for `invalidate`.
    username: Option<Arc<str>>,
    principal: Authorization,
}

/// Read before a check starts and handed back to [`Entries::remember`]: an invalidation in
/// between makes the check's answer unfit to keep.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Generation(u64);

impl Entries {
    pub(super) fn new(ttl: Duration, max_entries: u64) -> Self {
        Self {
            map: RwLock::default(),
            invalidations: AtomicU64::new(0),
            ttl,
            max_entries,
        }
    }

    /// The principal of a live entry.
    pub(super) fn lookup(&self, key: &CacheKey) -> Option<Authorization> {
        let entries = self.map.read().unwrap_or_else(PoisonError::into_inner);
        let entry = entries.get(key)?;
        (Instant::now() < entry.expires_at).then(|| entry.principal.clone())
    }

    /// How many entries are kept, expired ones included.
    pub(super) fn len(&self) -> u64 {
        let entries = self.map.read().unwrap_or_else(PoisonError::into_inner);
        u64::try_from(entries.len()).unwrap_or(u64::MAX)
    }

    /// The current generation, to read before a check starts.
    pub(super) fn generation(&self) -> Generation {
        Generation(self.invalidations.load(Ordering::SeqCst))
    }

    /// Keeps an accepted credential, unless an invalidation happened since `checked_in`.
    /// When the map is full, the expired entries go first, then the oldest.
    pub(super) fn remember(
        &self,
        key: CacheKey,
        username: Option<Arc<str>>,
        principal: &Authorization,
        checked_in: Generation,
    ) {
        let now = Instant::now();
        let Some(expires_at) = now.checked_add(self.ttl) else {
            return;
        };
        let mut entries = self.write();
        // Read under the lock that `invalidate` takes after bumping the count.
        if self.generation() != checked_in {
            return;
        }
        let full = |entries: &KeyMap<Entry>| {
            u64::try_from(entries.len()).unwrap_or(u64::MAX) >= self.max_entries
        };
        if full(&entries) && !entries.contains_key(&key) {
            entries.retain(|_, entry| entry.expires_at > now);
            if full(&entries) {
                // Every entry has the same time to live: the soonest to expire is the oldest.
                let oldest = entries
                    .iter()
                    .min_by_key(|(_, entry)| entry.expires_at)
                    .map(|(key, _)| *key);
                if let Some(oldest) = oldest {
                    entries.remove(&oldest);
                }
            }
        }
        entries.insert(
            key,
            Entry {
                expires_at,
                username,
                principal: principal.clone(),
            },
        );
    }

    /// Drops the entries presented with the Basic username `username` and those whose
    /// principal has that subject.
    pub(super) fn invalidate(&self, username: &str) {
        // Bumped before taking the lock: a check finishing after this either sees the new
        // count (and keeps nothing) or inserted before we remove.
        self.invalidations.fetch_add(1, Ordering::SeqCst);
        self.write().retain(|_, entry| {
            entry.username.as_deref() != Some(username) && entry.principal.subject() != username
        });
    }

    /// Drops what a store no longer vouches for, like [`invalidate`](Self::invalidate) for
    /// each revoked user, in one pass.
    pub(super) fn revoke(&self, revoked: &Revoked) {
        let users = match revoked {
            Revoked::Users(users) => users,
            Revoked::All => {
                self.clear();
                return;
            }
        };
        let users: std::collections::HashSet<&str> = users.iter().map(String::as_str).collect();
        self.invalidations.fetch_add(1, Ordering::SeqCst);
        self.write().retain(|_, entry| {
            !entry
                .username
                .as_deref()
                .is_some_and(|name| users.contains(name))
                && !users.contains(entry.principal.subject())
        });
    }

    /// Drops every entry.
    pub(super) fn clear(&self) {
        self.invalidations.fetch_add(1, Ordering::SeqCst);
        self.write().clear();
    }

    fn write(&self) -> RwLockWriteGuard<'_, KeyMap<Entry>> {
        self.map.write().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use std::{sync::Arc, time::Duration};

    use super::Entries;
    use crate::{
        authenticator::Revoked,
        authenticators::cached::key::{CacheKey, KeyMac},
        authorization::Authorization,
        credentials::{Credentials, Scheme},
    };

    fn key(mac: &KeyMac, username: &str) -> CacheKey {
        mac.key_for(
            &Credentials::Basic {
                username: username.to_owned(),
                password: "pw".into(),
            }
            .borrowed(),
        )
    }

    fn keep(entries: &Entries, mac: &KeyMac, username: &str, subject: &str) -> CacheKey {
        let key = key(mac, username);
        let principal = Authorization::new(subject, Scheme::Basic);
        entries.remember(
            key,
            Some(Arc::from(username)),
            &principal,
            entries.generation(),
        );
        key
    }

    fn subject(entries: &Entries, key: &CacheKey) -> Option<String> {
        entries.lookup(key).map(|p| p.subject().to_owned())
    }

    #[test]
    fn a_full_map_drops_the_oldest_entry() {
        let mac = KeyMac::random().unwrap();
        let entries = Entries::new(Duration::from_secs(60), 2);
        let first = keep(&entries, &mac, "first", "first");
        std::thread::sleep(Duration::from_millis(2));
        let second = keep(&entries, &mac, "second", "second");
        std::thread::sleep(Duration::from_millis(2));
        let third = keep(&entries, &mac, "third", "third");
        assert_eq!(entries.len(), 2);
        assert_eq!(subject(&entries, &first), None);
        assert_eq!(subject(&entries, &second).as_deref(), Some("second"));
        assert_eq!(subject(&entries, &third).as_deref(), Some("third"));
    }

    #[test]
    fn a_full_map_drops_every_expired_entry_before_the_oldest_live_one() {
        let mac = KeyMac::random().unwrap();
        let entries = Entries::new(Duration::from_millis(50), 3);
        for user in ["a", "b", "c"] {
            keep(&entries, &mac, user, user);
        }
        std::thread::sleep(Duration::from_millis(100));
        let d = keep(&entries, &mac, "d", "d");
        assert_eq!(entries.len(), 1);
        assert_eq!(subject(&entries, &d).as_deref(), Some("d"));
    }

    #[test]
    fn replacing_a_key_in_a_full_map_evicts_nothing() {
        let mac = KeyMac::random().unwrap();
        let entries = Entries::new(Duration::from_secs(60), 2);
        let a = keep(&entries, &mac, "a", "a");
        let b = keep(&entries, &mac, "b", "b");
        keep(&entries, &mac, "a", "a");
        assert_eq!(entries.len(), 2);
        assert!(subject(&entries, &a).is_some() && subject(&entries, &b).is_some());
    }

    #[test]
    fn expired_entries_are_not_answered() {
        let mac = KeyMac::random().unwrap();
        let entries = Entries::new(Duration::from_millis(20), 10);
        let a = keep(&entries, &mac, "a", "a");
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(subject(&entries, &a), None);
        assert_eq!(entries.len(), 1, "kept until room is needed");
    }

    #[test]
    fn invalidate_matches_the_username_or_the_subject() {
        let mac = KeyMac::random().unwrap();
        let entries = Entries::new(Duration::from_secs(60), 10);
        let by_name = keep(&entries, &mac, "alice", "someone-else");
        let by_subject = keep(&entries, &mac, "token-user", "alice");
        let other = keep(&entries, &mac, "bob", "bob");
        entries.invalidate("alice");
        assert_eq!(subject(&entries, &by_name), None);
        assert_eq!(subject(&entries, &by_subject), None);
        assert!(subject(&entries, &other).is_some());
        entries.clear();
        assert_eq!(entries.len(), 0);
    }

    #[test]
    fn revoke_drops_the_named_users_or_everyone() {
        let mac = KeyMac::random().unwrap();
        let entries = Entries::new(Duration::from_secs(60), 10);
        let by_name = keep(&entries, &mac, "alice", "someone-else");
        let by_subject = keep(&entries, &mac, "token-user", "bob");
        let other = keep(&entries, &mac, "carol", "carol");
        let before = entries.generation();
        entries.revoke(&Revoked::Users(vec!["alice".into(), "bob".into()]));
        assert_ne!(
            entries.generation(),
            before,
            "a check racing with it is not kept"
        );
        assert_eq!(subject(&entries, &by_name), None);
        assert_eq!(subject(&entries, &by_subject), None);
        assert_eq!(subject(&entries, &other).as_deref(), Some("carol"));
        entries.revoke(&Revoked::All);
        assert_eq!(entries.len(), 0);
    }

    #[test]
    fn an_answer_checked_before_an_invalidation_is_not_kept() {
        let mac = KeyMac::random().unwrap();
        let entries = Entries::new(Duration::from_secs(60), 10);
        for invalidate in [
            (|e: &Entries| e.invalidate("nobody")) as fn(&Entries),
            |e: &Entries| e.clear(),
        ] {
            let before = entries.generation();
            invalidate(&entries);
            let key = key(&mac, "alice");
            let principal = Authorization::new("alice", Scheme::Basic);
            entries.remember(key, None, &principal, before);
            assert_eq!(subject(&entries, &key), None);
            entries.remember(key, None, &principal, entries.generation());
            assert!(subject(&entries, &key).is_some());
            entries.clear();
        }
    }
}
