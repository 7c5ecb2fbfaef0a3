//! Revocation: how a store that reloads tells the caches above it what it stopped vouching
//! for ([`RevocationListener`], [`Revoked`]), and the list of listeners a store keeps.

use std::{fmt, sync::Arc};

/// What an authenticator stopped vouching for, as told to a [`RevocationListener`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Revoked {
    /// These users' credentials: removed from the store, given a new password or new rights,
    /// or added (so that a store earlier in a chain now answers for them). Matched against
    /// the Basic username a credential was presented with and against the principal's
    /// subject.
    Users(Vec<String>),
    /// Every credential this authenticator accepted: the store cannot be read, or cannot
    /// tell what changed.
    All,
}

/// Receives [`Revoked`] notices from an authenticator that reloads; given to
/// [`Authenticator::subscribe_revocations`](crate::Authenticator::subscribe_revocations).
///
/// The store calls it right after the new state is in use, so a verification that starts
/// after the notice sees the new state. It runs on the thread that reloaded: keep it short
/// and never wait in it.
///
/// ```
/// use std::sync::{Arc, Mutex};
/// use tower_mlflow_auth::{Authenticator, authenticator::{RevocationListener, Revoked}};
///
/// let seen = Arc::new(Mutex::new(Vec::new()));
/// let listener = RevocationListener::new({
///     let seen = Arc::clone(&seen);
///     move |revoked: &Revoked| seen.lock().unwrap().push(revoked.clone())
/// });
/// listener.notify(&Revoked::All);
/// assert_eq!(*seen.lock().unwrap(), [Revoked::All]);
/// ```
#[derive(Clone)]
pub struct RevocationListener(Arc<dyn Fn(&Revoked) + Send + Sync>);

impl RevocationListener {
    /// A listener that calls `on_revoked` for each notice.
    pub fn new(on_revoked: impl Fn(&Revoked) + Send + Sync + 'static) -> Self {
        Self(Arc::new(on_revoked))
    }

    /// Delivers one notice.
    pub fn notify(&self, revoked: &Revoked) {
        (self.0)(revoked);
    }
}

impl fmt::Debug for RevocationListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RevocationListener").finish_non_exhaustive()
    }
}

/// The listeners of one store, and whether its background watcher runs.
#[cfg(any(feature = "htpasswd", feature = "mlflow-users", feature = "jwt"))]
#[derive(Default)]
pub(crate) struct Listeners {
    list: std::sync::Mutex<Vec<RevocationListener>>,
    /// Set by the first `add`, so that a store nobody listens to never takes the lock.
    listened: std::sync::atomic::AtomicBool,
    /// Set once the store's watcher task is spawned.
    watching: std::sync::atomic::AtomicBool,
}

#[cfg(any(feature = "htpasswd", feature = "mlflow-users", feature = "jwt"))]
impl Listeners {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<RevocationListener>> {
        self.list
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn add(&self, listener: RevocationListener) {
        self.lock().push(listener);
        self.listened
            .store(true, std::sync::atomic::Ordering::Release);
    }

    /// Tells every listener, in the order they subscribed.
    pub(crate) fn notify(&self, revoked: &Revoked) {
        if !self.listened.load(std::sync::atomic::Ordering::Acquire) {
            return;
        }
        let listeners = self.lock().clone();
        for listener in listeners {
            listener.notify(revoked);
        }
    }

    /// Spawns `watch()` once, when someone listens and a tokio runtime is at hand: a cache
    /// answers its hits without asking the store, so the store must look for changes on its
    /// own. Without a runtime now, the next verification (which runs in one) tries again.
    pub(crate) fn watch_once<F>(&self, watch: impl FnOnce() -> F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        use std::sync::atomic::Ordering;

        if self.watching.load(Ordering::Acquire) || !self.listened.load(Ordering::Acquire) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if !self.watching.swap(true, Ordering::AcqRel) {
            drop(runtime.spawn(watch()));
        }
    }

    #[cfg(test)]
    pub(crate) fn is_watching(&self) -> bool {
        self.watching.load(std::sync::atomic::Ordering::Acquire)
    }
}

/// The names whose entry differs between two tables: removed, added or changed.
#[cfg(any(feature = "htpasswd", feature = "mlflow-users"))]
pub(crate) fn changed_users<V: PartialEq>(
    before: &std::collections::HashMap<Box<str>, V>,
    after: &std::collections::HashMap<Box<str>, V>,
) -> Option<Revoked> {
    let mut users: Vec<String> = before
        .iter()
        .filter(|(name, entry)| after.get(*name) != Some(*entry))
        .chain(after.iter().filter(|(name, _)| !before.contains_key(*name)))
        .map(|(name, _)| String::from(&**name))
        .collect();
    users.sort_unstable();
    (!users.is_empty()).then_some(Revoked::Users(users))
}

#[cfg(all(test, any(feature = "htpasswd", feature = "mlflow-users")))]
mod tests {
    use std::{
        collections::HashMap,
        sync::{Arc, Mutex},
    };

    use super::*;

    fn table(entries: &[(&str, u32)]) -> HashMap<Box<str>, u32> {
        entries.iter().map(|&(name, v)| (name.into(), v)).collect()
    }

    #[test]
    fn changed_users_are_removed_added_or_different_ones() {
        let before = table(&[("alice", 1), ("bob", 2), ("carol", 3)]);
        let after = table(&[("bob", 2), ("carol", 4), ("dave", 5)]);
        assert_eq!(
            changed_users(&before, &after),
            Some(Revoked::Users(vec![
                "alice".into(),
                "carol".into(),
                "dave".into()
            ]))
        );
        assert_eq!(changed_users(&before, &before.clone()), None);
    }

    #[test]
    fn every_listener_is_told_in_order() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let listeners = Listeners::default();
        for id in 0..2 {
            let seen = Arc::clone(&seen);
            listeners.add(RevocationListener::new(move |revoked: &Revoked| {
                seen.lock().unwrap().push((id, revoked.clone()));
            }));
        }
        listeners.notify(&Revoked::All);
        assert_eq!(
            *seen.lock().unwrap(),
            [(0, Revoked::All), (1, Revoked::All)]
        );
        assert_eq!(
            format!("{:?}", RevocationListener::new(|_: &Revoked| {})),
            "RevocationListener { .. }"
        );
    }

    #[tokio::test]
    async fn the_watcher_starts_once_and_only_with_a_listener() {
        let listeners = Listeners::default();
        let started = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let watch = || {
            let started = Arc::clone(&started);
            async move {
                started.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
        };
        listeners.watch_once(watch);
        assert!(!listeners.is_watching(), "nobody listens yet");
        listeners.add(RevocationListener::new(|_: &Revoked| {}));
        listeners.watch_once(watch);
        listeners.watch_once(watch);
        tokio::task::yield_now().await;
        assert!(listeners.is_watching());
        assert_eq!(started.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    #[test]
    fn without_a_runtime_the_watcher_waits_for_one() {
        let listeners = Listeners::default();
        listeners.add(RevocationListener::new(|_: &Revoked| {}));
        listeners.watch_once(|| async {});
        assert!(!listeners.is_watching());
    }
}
