//! The key set and when it is fetched: on first use, on an unknown `kid` (rate-limited), in
//! the background once it is old; one fetch at a time; kept when a fetch fails. A new set
//! that lacks a key of the old one drops the cached tokens that key verified and tells the
//! revocation listeners.

use std::{
    ops::Deref,
    sync::{
        Arc, Mutex, MutexGuard, OnceLock, PoisonError, Weak,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use http::Uri;
use jsonwebtoken::Algorithm;
use serde_json::Value;
use tokio::time::Instant;
use tower_mlflow_core::{
    http::error_chain,
    sync::{Reloading, Snapshot},
};

use super::{
    JwtError, JwtErrorKind,
    cache::TokenCache,
    fetch::{Fetcher, UrlPolicy},
    keys::KeySet,
};
use crate::authenticators::revocation::{Listeners, RevocationListener, Revoked};

/// The least pause of the revocation watcher between two refreshes, whatever the intervals.
const MIN_WATCH_PAUSE: Duration = Duration::from_secs(1);

/// Where the keys come from.
#[derive(Debug)]
pub(super) enum KeySource {
    Jwks(Uri),
    Discovery { issuer: Box<str>, document: Uri },
}

/// How often keys are fetched; see the builder setters of the same names.
#[derive(Clone, Copy, Debug)]
pub(super) struct Timing {
    pub(super) refresh_interval: Duration,
    pub(super) refetch_interval: Duration,
    pub(super) retry_interval: Duration,
}

/// What a caller that asked for newer keys got.
#[derive(Debug)]
pub(super) enum Fetched {
    Keys(Arc<Snapshot<KeySet>>),
    Failed(JwtError),
    /// The last attempt is too recent to try again.
    RateLimited,
}

/// What [`KeyStore::fetch`] does next.
#[derive(Debug)]
enum Step {
    /// Use these keys, which landed after the caller's.
    Newer(Arc<Snapshot<KeySet>>),
    /// Nothing: the last attempt is too recent.
    Wait,
    Fetch,
}

/// Why a load ended without keys.
#[derive(Clone, Debug)]
pub(super) enum NotLoaded {
    /// By the time the caller led a load, it no longer needed one (newer keys had landed,
    /// or another attempt had just been made); every caller that shared it decides again.
    Skipped,
    Failed(JwtError),
}

/// What the key set alone does not record.
#[derive(Debug, Default)]
struct FetchLog {
    /// When the latest failed fetch ended. Successful fetches are dated by their snapshot,
    /// which lands together with its keys.
    last_failure: Option<Instant>,
    /// The error of the latest fetch, if it failed.
    last_error: Option<JwtError>,
    /// The `jwks_uri` from the discovery document, forgotten when fetching it fails.
    discovered_jwks: Option<Uri>,
}

/// The current keys, read lock-free, and everything needed to fetch new ones.
pub(super) struct KeyStore {
    source: KeySource,
    fetcher: Fetcher,
    url_policy: UrlPolicy,
    timing: Timing,
    /// The algorithms that keys are kept for.
    algorithms: Vec<Algorithm>,
    keys: Reloading<KeySet, NotLoaded>,
    log: Mutex<FetchLog>,
    /// A background refresh is scheduled or running.
    refreshing: AtomicBool,
    /// Verified tokens, unless the cache is turned off.
    tokens: Option<TokenCache>,
    /// Caches above this authenticator, told when a key leaves the set.
    listeners: Listeners,
}

impl KeyStore {
    pub(super) fn new(
        source: KeySource,
        fetcher: Fetcher,
        url_policy: UrlPolicy,
        timing: Timing,
        algorithms: Vec<Algorithm>,
        tokens: Option<TokenCache>,
    ) -> Self {
        Self {
            source,
            fetcher,
            url_policy,
            timing,
            algorithms,
            keys: Reloading::new(),
            log: Mutex::default(),
            refreshing: AtomicBool::new(false),
            tokens,
            listeners: Listeners::default(),
        }
    }

    /// The verified-token cache, unless it is turned off.
    pub(super) fn tokens(&self) -> Option<&TokenCache> {
        self.tokens.as_ref()
    }

    pub(super) fn source(&self) -> &KeySource {
        &self.source
    }

    pub(super) fn timing(&self) -> Timing {
        self.timing
    }

    /// The current keys, without touching a reference count.
    pub(super) fn peek(&self) -> impl Deref<Target = Option<Arc<Snapshot<KeySet>>>> + '_ {
        self.keys.peek()
    }

    /// The current keys, to hold across an `.await`.
    pub(super) fn snapshot(&self) -> Option<Arc<Snapshot<KeySet>>> {
        self.keys.snapshot()
    }

    /// Why there are no keys: the latest fetch error, or "no usable keys".
    pub(super) fn no_keys_error(&self) -> JwtError {
        self.log().last_error.clone().unwrap_or_else(|| {
            let url = match &self.source {
                KeySource::Jwks(uri) | KeySource::Discovery { document: uri, .. } => uri,
            };
            JwtError::new(url, JwtErrorKind::NoUsableKeys)
        })
    }

    /// Keys newer than `seen`: the ones that landed since, or a fetch, unless the last
    /// attempt is under `min_gap` old. Concurrent callers share one fetch.
    pub(super) async fn fetch(
        &self,
        seen: Option<&Arc<Snapshot<KeySet>>>,
        min_gap: Duration,
    ) -> Fetched {
        // Set by this caller's load, if it is the one that ran: the keys it replaced.
        let replaced = &OnceLock::new();
        let load = move || async move {
            // Leading may come only after another load ended: decide again.
            match self.next_step(seen, min_gap) {
                Step::Fetch => {
                    let keys = self.load().await.map_err(NotLoaded::Failed)?;
                    // Still current: loads never overlap, and the new keys land after this.
                    let _ = replaced.set(self.snapshot());
                    Ok(keys)
                }
                Step::Newer(_) | Step::Wait => Err(NotLoaded::Skipped),
            }
        };
        loop {
            match self.next_step(seen, min_gap) {
                Step::Newer(keys) => return Fetched::Keys(keys),
                Step::Wait => return Fetched::RateLimited,
                Step::Fetch => {}
            }
            match self.keys.reload(load).await {
                Ok(keys) => {
                    if let Some(previous) = replaced.get() {
                        self.replaced(previous.as_deref(), keys.value());
                    }
                    return Fetched::Keys(keys);
                }
                Err(NotLoaded::Failed(e)) => return Fetched::Failed(e),
                Err(NotLoaded::Skipped) => {}
            }
        }
    }

    /// Once `current` is in use instead of `previous`: when it lacks a key that `previous`
    /// had, the tokens that key verified leave the cache, and the caches above hear that
    /// anything may be revoked (a [`Revoked`] cannot name tokens).
    fn replaced(&self, previous: Option<&Snapshot<KeySet>>, current: &KeySet) {
        if !previous.is_some_and(|previous| previous.value().retired_in(current)) {
            return;
        }
        tracing::info!("the JWKS dropped a key; tokens it verified are no longer accepted");
        if let Some(tokens) = &self.tokens {
            tokens.retain_verifiable(current);
        }
        self.listeners.notify(&Revoked::All);
    }

    /// Tells `listener` from now on when a key leaves the set, and refreshes the keys on
    /// time from then on: a cache above answers its hits without asking this store.
    pub(super) fn subscribe(self: &Arc<Self>, listener: RevocationListener) {
        self.listeners.add(listener);
        self.watch_if_listened();
    }

    #[cfg(test)]
    pub(super) fn is_watching(&self) -> bool {
        self.listeners.is_watching()
    }

    /// Spawns the refresh loop once someone listens (and a runtime is at hand).
    fn watch_if_listened(self: &Arc<Self>) {
        self.listeners.watch_once(|| watch(Arc::downgrade(self)));
    }

    /// How long the watcher sleeps before its next refresh: until the keys are due, but
    /// never less than the retry interval, so that failures do not spin.
    fn until_refresh(&self) -> Duration {
        let due = self.snapshot().map_or(Duration::ZERO, |keys| {
            self.timing.refresh_interval.saturating_sub(keys.age())
        });
        due.max(self.timing.retry_interval).max(MIN_WATCH_PAUSE)
    }

    /// Starts a background refresh when `current` is older than `refresh_interval`.
    /// Requests go on with the current keys meanwhile.
    pub(super) fn schedule_refresh_if_due(self: &Arc<Self>, current: &Snapshot<KeySet>) {
        // A watcher that could not start without a runtime starts from a request.
        self.watch_if_listened();
        if current.age() < self.timing.refresh_interval
            || self.refreshing.load(Ordering::Acquire)
            || self.attempted_within(Some(current), self.timing.retry_interval)
            || self.refreshing.swap(true, Ordering::AcqRel)
        {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            self.refreshing.store(false, Ordering::Release);
            return;
        };
        let store = Arc::clone(self);
        let seen = self.snapshot();
        runtime.spawn(async move {
            let _ = store
                .fetch(seen.as_ref(), store.timing.retry_interval)
                .await;
            store.refreshing.store(false, Ordering::Release);
        });
    }

    /// What a caller that has seen `seen` should do. The keys are read once, so that keys
    /// landing meanwhile are either newer or not yet there, never "just fetched, too recent".
    fn next_step(&self, seen: Option<&Arc<Snapshot<KeySet>>>, min_gap: Duration) -> Step {
        let current = self.snapshot();
        match (current, seen) {
            (Some(current), Some(seen)) if !Arc::ptr_eq(&current, seen) => Step::Newer(current),
            (Some(current), None) => Step::Newer(current),
            (current, _) if self.attempted_within(current.as_deref(), min_gap) => Step::Wait,
            _ => Step::Fetch,
        }
    }

    /// Whether the fetch of `current` started, or a fetch failed, under `gap` ago.
    fn attempted_within(&self, current: Option<&Snapshot<KeySet>>, gap: Duration) -> bool {
        current.is_some_and(|keys| keys.age() < gap)
            || self.log().last_failure.is_some_and(|t| t.elapsed() < gap)
    }

    fn log(&self) -> MutexGuard<'_, FetchLog> {
        self.log.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// One fetch from the source, recorded in the log.
    async fn load(&self) -> Result<KeySet, JwtError> {
        let result = self.fetch_from_source().await;
        let mut log = self.log();
        match &result {
            Ok(keys) => {
                log.last_error = None;
                tracing::debug!(keys = keys.len(), "JWKS fetched");
            }
            Err(e) => {
                let error = error_chain(e);
                tracing::warn!(%error, "JWKS fetch failed; keeping the previous keys");
                log.last_failure = Some(Instant::now());
                log.last_error = Some(e.clone());
            }
        }
        result
    }

    async fn fetch_from_source(&self) -> Result<KeySet, JwtError> {
        let (jwks_uri, discovered) = match &self.source {
            KeySource::Jwks(uri) => (uri.clone(), false),
            KeySource::Discovery { issuer, document } => {
                let cached = self.log().discovered_jwks.clone();
                match cached {
                    Some(uri) => (uri, true),
                    None => {
                        let uri = self.discover(issuer, document).await?;
                        self.log().discovered_jwks = Some(uri.clone());
                        (uri, true)
                    }
                }
            }
        };
        let result = self.fetch_jwks(&jwks_uri).await;
        if result.is_err() && discovered {
            // The issuer may have moved its keys: look again next time.
            self.log().discovered_jwks = None;
        }
        result
    }

    async fn discover(&self, issuer: &str, document_uri: &Uri) -> Result<Uri, JwtError> {
        let document = self.fetcher.get_json(document_uri).await?;
        let fail = |kind| JwtError::new(document_uri, kind);
        let found = document
            .get("issuer")
            .and_then(Value::as_str)
            .ok_or(fail(JwtErrorKind::MissingField("issuer")))?;
        if found != issuer {
            return Err(fail(JwtErrorKind::IssuerMismatch {
                found: found.into(),
            }));
        }
        let jwks_uri = document
            .get("jwks_uri")
            .and_then(Value::as_str)
            .ok_or(fail(JwtErrorKind::MissingField("jwks_uri")))?;
        self.url_policy
            .check(jwks_uri)
            .map_err(|kind| JwtError::from_url(jwks_uri, kind))
    }

    async fn fetch_jwks(&self, uri: &Uri) -> Result<KeySet, JwtError> {
        let document = self.fetcher.get_json(uri).await?;
        let keys = KeySet::from_jwks(&document, &self.algorithms)
            .ok_or_else(|| JwtError::new(uri, JwtErrorKind::MissingField("keys")))?;
        if keys.len() == 0 {
            return Err(JwtError::new(uri, JwtErrorKind::NoUsableKeys));
        }
        Ok(keys)
    }
}

/// Refreshes the keys on time for as long as the store lives.
async fn watch(store: Weak<KeyStore>) {
    loop {
        let Some(pause) = store.upgrade().map(|store| store.until_refresh()) else {
            return;
        };
        tokio::time::sleep(pause).await;
        let Some(store) = store.upgrade() else {
            return;
        };
        let seen = store.snapshot();
        let _ = store
            .fetch(seen.as_ref(), store.timing.retry_interval)
            .await;
    }
}
