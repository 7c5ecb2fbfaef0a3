use std::{
    collections::HashMap,
    fmt,
    hash::Hash,
    sync::{Arc, Mutex, PoisonError},
};

use tokio::sync::watch;

/// At most one operation per key in flight, its outcome shared with everyone who asked
/// while it ran. See the [module docs](super).
///
/// Cloning is cheap and shares the flights.
pub struct SingleFlight<K, T> {
    flights: Arc<Mutex<Flights<K, T>>>,
}

struct Flights<K, T> {
    running: HashMap<K, (u64, watch::Receiver<Option<T>>)>,
    next_id: u64,
}

/// What [`SingleFlight::join`] made of the caller.
#[derive(Debug)]
pub enum Join<K: Hash + Eq, T> {
    /// Nothing was in flight for the key: run the operation, then [`Leader::finish`].
    Lead(Leader<K, T>),
    /// An operation is in flight: [`Follower::wait`] for its outcome.
    Follow(Follower<T>),
}

/// The caller that runs the operation. Dropping it without [`finish`](Self::finish) ends the
/// flight without an outcome; its followers then see `None` and join again.
pub struct Leader<K: Hash + Eq, T> {
    flights: Arc<Mutex<Flights<K, T>>>,
    key: Option<K>,
    id: u64,
    outcome: watch::Sender<Option<T>>,
}

/// A caller waiting for another caller's operation.
pub struct Follower<T> {
    outcome: watch::Receiver<Option<T>>,
}

impl<K: Hash + Eq, T> SingleFlight<K, T> {
    /// No flights.
    #[must_use]
    pub fn new() -> Self {
        Self {
            flights: Arc::new(Mutex::new(Flights {
                running: HashMap::new(),
                next_id: 0,
            })),
        }
    }

    /// Leads a new flight for `key`, or follows the one in flight.
    pub fn join(&self, key: K) -> Join<K, T>
    where
        K: Clone,
    {
        let mut flights = self.lock();
        if let Some((_, outcome)) = flights.running.get(&key) {
            return Join::Follow(Follower {
                outcome: outcome.clone(),
            });
        }
        let id = flights.next_id;
        flights.next_id = flights.next_id.wrapping_add(1);
        let (sender, receiver) = watch::channel(None);
        flights.running.insert(key.clone(), (id, receiver));
        Join::Lead(Leader {
            flights: Arc::clone(&self.flights),
            key: Some(key),
            id,
            outcome: sender,
        })
    }

    /// Whether an operation for `key` is in flight.
    pub fn is_running(&self, key: &K) -> bool {
        self.lock().running.contains_key(key)
    }

    /// How many operations are in flight.
    pub fn len(&self) -> usize {
        self.lock().running.len()
    }

    /// Whether no operation is in flight.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Flights<K, T>> {
        // The map stays consistent whatever panicked while it was held.
        self.flights.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl<K: Hash + Eq + Clone, T: Clone> SingleFlight<K, T> {
    /// Runs `operation` unless one is in flight for `key`, and returns its outcome either way.
    ///
    /// Cancel-safe: if the caller running the operation is dropped, a waiting caller runs it.
    pub async fn run<F, Fut>(&self, key: K, mut operation: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = T>,
    {
        loop {
            match self.join(key.clone()) {
                Join::Lead(leader) => {
                    let outcome = operation().await;
                    leader.finish(outcome.clone());
                    return outcome;
                }
                Join::Follow(follower) => {
                    if let Some(outcome) = follower.wait().await {
                        return outcome;
                    }
                }
            }
        }
    }
}

impl<K: Hash + Eq, T> Default for SingleFlight<K, T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K, T> Clone for SingleFlight<K, T> {
    fn clone(&self) -> Self {
        Self {
            flights: Arc::clone(&self.flights),
        }
    }
}

impl<K: Hash + Eq, T> Leader<K, T> {
    /// Ends the flight and hands `outcome` to every follower.
    pub fn finish(mut self, outcome: T) {
        // Sent before the flight is removed, so a caller that joins in between gets it too.
        self.outcome.send_replace(Some(outcome));
        self.remove();
    }

    fn remove(&mut self) {
        let Some(key) = self.key.take() else {
            return;
        };
        let mut flights = self.flights.lock().unwrap_or_else(PoisonError::into_inner);
        // Only this flight's entry: a later flight for the same key may be running already.
        if flights
            .running
            .get(&key)
            .is_some_and(|(id, _)| *id == self.id)
        {
            flights.running.remove(&key);
        }
    }
}

impl<K: Hash + Eq, T> Drop for Leader<K, T> {
    fn drop(&mut self) {
        self.remove();
    }
}

impl<T: Clone> Follower<T> {
    /// The flight's outcome, or `None` when its leader went away without one.
    pub async fn wait(mut self) -> Option<T> {
        loop {
            if let Some(outcome) = self.outcome.borrow_and_update().as_ref() {
                return Some(outcome.clone());
            }
            if self.outcome.changed().await.is_err() {
                // The sender is gone; it may still have sent just before.
                return self.outcome.borrow().clone();
            }
        }
    }
}

impl<K, T> fmt::Debug for SingleFlight<K, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let flights = self.flights.lock().unwrap_or_else(PoisonError::into_inner);
        f.debug_struct("SingleFlight")
            .field("running", &flights.running.len())
            .finish()
    }
}

impl<K: Hash + Eq, T> fmt::Debug for Leader<K, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Leader")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl<T> fmt::Debug for Follower<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Follower").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use std::{
        sync::{
            Arc,
            atomic::{AtomicU32, Ordering},
        },
        time::Duration,
    };

    use super::{Join, SingleFlight};

    #[tokio::test]
    async fn concurrent_callers_share_one_run() {
        let flights = SingleFlight::<&str, u32>::new();
        let runs = Arc::new(AtomicU32::new(0));
        let mut tasks = Vec::new();
        for _ in 0..16 {
            let flights = flights.clone();
            let runs = Arc::clone(&runs);
            tasks.push(tokio::spawn(async move {
                flights
                    .run("k", || {
                        let runs = Arc::clone(&runs);
                        async move {
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            runs.fetch_add(1, Ordering::SeqCst) + 100
                        }
                    })
                    .await
            }));
        }
        for task in tasks {
            assert_eq!(task.await.ok(), Some(100));
        }
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        assert!(flights.is_empty());
    }

    #[tokio::test]
    async fn different_keys_run_separately() {
        let flights = SingleFlight::<u8, u8>::new();
        let Join::Lead(a) = flights.join(1) else {
            panic!("nothing was in flight")
        };
        let Join::Lead(b) = flights.join(2) else {
            panic!("key 2 has its own flight")
        };
        assert_eq!(flights.len(), 2);
        a.finish(1);
        b.finish(2);
        assert!(flights.is_empty());
    }

    #[tokio::test]
    async fn a_dropped_leader_hands_over_to_a_follower() {
        let flights = SingleFlight::<(), u32>::new();
        let Join::Lead(leader) = flights.join(()) else {
            panic!("nothing was in flight")
        };
        let follower = tokio::spawn({
            let flights = flights.clone();
            async move { flights.run((), || async { 7 }).await }
        });
        tokio::task::yield_now().await;
        drop(leader);
        assert_eq!(follower.await.ok(), Some(7));
        assert!(flights.is_empty());
    }

    #[tokio::test]
    async fn a_stale_leader_does_not_remove_a_newer_flight() {
        let flights = SingleFlight::<(), u32>::new();
        let Join::Lead(first) = flights.join(()) else {
            panic!("nothing was in flight")
        };
        let Join::Follow(follower) = flights.join(()) else {
            panic!("the first flight is running")
        };
        first.finish(1);
        assert_eq!(follower.wait().await, Some(1));
        let Join::Lead(second) = flights.join(()) else {
            panic!("the first flight ended")
        };
        assert!(flights.is_running(&()));
        drop(second);
        assert!(!flights.is_running(&()));
    }
}
