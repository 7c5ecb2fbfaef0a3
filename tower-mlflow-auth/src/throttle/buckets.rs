//! The token buckets: one per client key that failed recently, in a sharded map.
//!
//! A bucket is stored as the one instant at which it will be full again (the "theoretical
//! arrival time" of GCRA): each token taken pushes it one `interval` later, time pays it back.
//! A key whose instant has passed has a full bucket and needs no entry at all, so the map
//! holds only clients that failed within the last `burst × interval`.

use std::{
    collections::HashMap,
    hash::{BuildHasher, Hash, RandomState},
    sync::{Mutex, MutexGuard, PoisonError},
    time::Duration,
};

use tokio::time::Instant;

/// The clients' buckets, shared by every clone of one layer.
pub(super) struct Buckets<K> {
    /// Per-shard maps, so that requests of different clients rarely wait for one another.
    shards: Box<[Mutex<HashMap<K, Instant>>]>,
    /// Random per layer, so that nobody can aim many keys at one shard.
    hasher: RandomState,
    per_shard: usize,
    /// The time one token takes to come back: a minute over the limit.
    interval: Duration,
    /// How far ahead of now a bucket's "full again" instant may be while it still holds a
    /// token: `(burst - 1) × interval`.
    tolerance: Duration,
}

/// The answer to a request for a token.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Taken {
    /// A token was taken and more are left.
    Token,
    /// The last token was taken: the next request is refused.
    LastToken,
    /// No token: the next one is back in this long.
    Empty(Duration),
}

impl<K: Hash + Eq + Clone> Buckets<K> {
    /// Shards of about a thousand keys, at most 64 of them.
    const KEYS_PER_SHARD: usize = 1024;
    const MAX_SHARDS: usize = 64;

    pub(super) fn new(per_minute: u32, burst: u32, max_keys: usize) -> Self {
        let shards = (max_keys / Self::KEYS_PER_SHARD).clamp(1, Self::MAX_SHARDS);
        let interval = Duration::from_secs(60) / per_minute.max(1);
        Self {
            shards: (0..shards).map(|_| Mutex::default()).collect(),
            hasher: RandomState::new(),
            per_shard: (max_keys / shards).max(1),
            interval,
            tolerance: interval * burst.saturating_sub(1),
        }
    }

    fn shard(&self, key: &K) -> MutexGuard<'_, HashMap<K, Instant>> {
        // Truncation is fine: any bits of the hash choose a shard.
        #[allow(clippy::cast_possible_truncation)]
        let index = self.hasher.hash_one(key) as usize % self.shards.len();
        // Nothing panics while a shard is locked; if it did, the map is still consistent.
        self.shards[index]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes a token from `key`'s bucket if it has one.
    pub(super) fn take(&self, key: &K, now: Instant) -> Taken {
        let mut shard = self.shard(key);
        let full_at = shard.get(key).copied().filter(|at| *at > now);
        let ahead = full_at.map_or(Duration::ZERO, |at| at - now);
        if ahead > self.tolerance {
            return Taken::Empty(ahead - self.tolerance);
        }
        if full_at.is_none() && shard.len() >= self.per_shard {
            self.make_room(&mut shard, now);
        }
        let ahead = ahead + self.interval;
        shard.insert(key.clone(), now + ahead);
        if ahead > self.tolerance {
            Taken::LastToken
        } else {
            Taken::Token
        }
    }

    /// Gives back a token taken by [`take`](Self::take): the request was not a failed login.
    pub(super) fn give_back(&self, key: &K, now: Instant) {
        let mut shard = self.shard(key);
        let Some(full_at) = shard.get_mut(key) else {
            return;
        };
        match full_at.checked_sub(self.interval) {
            Some(earlier) if earlier > now => *full_at = earlier,
            _ => {
                shard.remove(key);
            }
        }
    }

    /// Room for one more key in a full shard: first forget the keys whose bucket has filled
    /// up again (they carry no information), else the key whose bucket is nearest to full, so
    /// that an attacker cycling through many addresses mostly evicts its own barely-used keys
    /// and never the ones that failed the most.
    fn make_room(&self, shard: &mut HashMap<K, Instant>, now: Instant) {
        shard.retain(|_, full_at| *full_at > now);
        if shard.len() < self.per_shard {
            return;
        }
        let nearest = shard
            .iter()
            .min_by_key(|(_, full_at)| **full_at)
            .map(|(key, _)| key.clone());
        if let Some(key) = nearest {
            shard.remove(&key);
            tracing::debug!("throttle: key table full; forgot the client nearest to a full bucket");
        }
    }

    /// The number of keys with an entry, including full buckets not yet dropped.
    pub(super) fn len(&self) -> usize {
        (0..self.shards.len())
            .map(|i| {
                self.shards[i]
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .len()
            })
            .sum()
    }

    /// The most keys that can have an entry.
    #[cfg(test)]
    fn capacity(&self) -> usize {
        self.per_shard * self.shards.len()
    }
}

/// `duration` in whole seconds, rounded up, at least 1: the value of `Retry-After`.
pub(super) fn whole_seconds(duration: Duration) -> u64 {
    (duration.as_secs() + u64::from(duration.subsec_nanos() > 0)).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_of_three_refuses_the_fourth_and_says_when() {
        let buckets = Buckets::new(3, 3, 10);
        let now = Instant::now();
        assert_eq!(buckets.take(&"a", now), Taken::Token);
        assert_eq!(buckets.take(&"a", now), Taken::Token);
        assert_eq!(buckets.take(&"a", now), Taken::LastToken);
        assert_eq!(
            buckets.take(&"a", now),
            Taken::Empty(Duration::from_secs(20))
        );
        let later = now + Duration::from_secs(15);
        assert_eq!(
            buckets.take(&"a", later),
            Taken::Empty(Duration::from_secs(5))
        );
        assert_eq!(
            buckets.take(&"a", now + Duration::from_secs(20)),
            Taken::LastToken
        );
    }

    #[test]
    fn a_token_given_back_is_as_if_never_taken() {
        let buckets = Buckets::new(2, 2, 10);
        let now = Instant::now();
        assert_eq!(buckets.take(&"a", now), Taken::Token);
        buckets.give_back(&"a", now);
        assert_eq!(buckets.len(), 0, "a full bucket keeps no entry");
        buckets.give_back(&"a", now);
        assert_eq!(buckets.take(&"a", now), Taken::Token);
        assert_eq!(buckets.take(&"a", now), Taken::LastToken);
        buckets.give_back(&"a", now);
        assert_eq!(buckets.take(&"a", now), Taken::LastToken);
    }

    #[test]
    fn a_full_shard_forgets_refilled_buckets_first_then_the_nearest_to_full() {
        let buckets = Buckets::new(1, 10, 3);
        assert_eq!((buckets.shards.len(), buckets.capacity()), (1, 3));
        let now = Instant::now();
        for _ in 0..5 {
            buckets.take(&"deep", now);
        }
        buckets.take(&"shallow", now);
        buckets.take(&"refilled", now - Duration::from_secs(120));
        assert_eq!(buckets.len(), 3);
        buckets.take(&"new1", now);
        let shard = buckets.shard(&"x").clone();
        assert!(
            !shard.contains_key("refilled") && shard.len() == 3,
            "{shard:?}"
        );
        buckets.take(&"new2", now + Duration::from_secs(1));
        let shard = buckets.shard(&"x").clone();
        assert!(
            shard.contains_key("deep") && shard.contains_key("new2"),
            "{shard:?}"
        );
        assert_eq!(shard.len(), 3);
    }

    #[test]
    fn shards_never_hold_more_than_max_keys() {
        let buckets = Buckets::<u32>::new(20, 20, 100_000);
        assert_eq!(buckets.shards.len(), 64);
        assert!(buckets.capacity() <= 100_000);
        let buckets = Buckets::new(20, 20, 5_000);
        assert_eq!((buckets.shards.len(), buckets.capacity()), (4, 5_000));
        let now = Instant::now();
        for i in 0..20_000u32 {
            buckets.take(&i, now);
        }
        assert!(buckets.len() <= 5_000, "{}", buckets.len());
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(whole_seconds(Duration::from_millis(1)), 1);
        assert_eq!(whole_seconds(Duration::ZERO), 1);
        assert_eq!(whole_seconds(Duration::from_secs(3)), 3);
        assert_eq!(whole_seconds(Duration::from_millis(3_001)), 4);
    }
}
