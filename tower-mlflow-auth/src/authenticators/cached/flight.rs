//! The miss path: one check per credential at a time, behind a permit, its answer shared.

use std::{any::Any, error::Error, sync::Arc};

use tower_mlflow_core::sync::{Join, Leader};

use super::{Cached, CachedError, key::CacheKey};
use crate::{authenticator::Authenticator, authorization::Authorization, credentials::Credentials};

/// The outcome of one check, shared by every request that waited on it.
#[derive(Clone)]
pub(super) enum Outcome {
    Accepted(Authorization),
    Rejected,
    /// The inner authenticator's error. Type-erased because `Shared` is not generic; it is
    /// always the `A::Error` of the `Cached<A>` that owns the `Shared`.
    Failed(Arc<dyn Any + Send + Sync>),
}

impl Outcome {
    fn into_result<E: Error + Send + Sync + 'static>(
        self,
    ) -> Result<Option<Authorization>, CachedError<E>> {
        match self {
            Self::Accepted(principal) => Ok(Some(principal)),
            Self::Rejected => Ok(None),
            Self::Failed(error) => match error.downcast::<E>() {
                Ok(error) => Err(CachedError(error)),
                // Unreachable (see `Failed`); if it ever were, refusing is the safe answer.
                Err(_) => Ok(None),
            },
        }
    }
}

impl<A: Authenticator> Cached<A> {
    /// A credential that was not in the cache (or had expired): check it once for all
    /// concurrent identical requests, behind a permit.
    pub(super) async fn authenticate_miss(
        &self,
        key: CacheKey,
        credentials: Credentials,
    ) -> Result<Option<Authorization>, CachedError<A::Error>> {
        loop {
            match self.shared.flights.join(key) {
                Join::Follow(follower) => {
                    if let Some(outcome) = follower.wait().await {
                        return outcome.into_result();
                    }
                    // The leading request was cancelled before its check started: look
                    // again, and one of the waiting requests leads.
                }
                Join::Lead(leader) => {
                    // A check that ended between our lookup and `join` left its entry
                    // before its flight.
                    if let Some(principal) = self.shared.entries.lookup(&key) {
                        leader.finish(Outcome::Accepted(principal.clone()));
                        return Ok(Some(principal));
                    }
                    return self.lead(leader, key, credentials).await;
                }
            }
        }
    }

    /// Runs the check of a new flight and publishes its outcome.
    async fn lead(
        &self,
        leader: Leader<CacheKey, Outcome>,
        key: CacheKey,
        credentials: Credentials,
    ) -> Result<Option<Authorization>, CachedError<A::Error>> {
        let shared = Arc::clone(&self.shared);
        let checked_in = shared.entries.generation();
        // A hit never gets here, so it never waits for a permit. `acquire` fails only on a
        // closed semaphore, and this one is never closed. If this request is cancelled while
        // it waits, `leader` is dropped and a waiting request takes over.
        let permit = Arc::clone(&shared.verifications).acquire_owned().await.ok();
        let username = match &credentials {
            Credentials::Basic { username, .. } => Some(Arc::from(username.as_str())),
            Credentials::Bearer { .. } | Credentials::Header { .. } => None,
        };
        // The check runs in its own task that owns the permit and the flight: if this request
        // is cancelled (the client hangs up), the slow hash still runs to its end on the
        // blocking pool, so the permit must not return before it does. Otherwise clients that
        // connect and disconnect could run any number of hashes at once.
        let inner = self.inner.clone();
        let check = tokio::spawn(async move {
            let answer = inner.authenticate(credentials).await;
            drop(permit);
            let outcome = match answer {
                Ok(Some(principal)) => {
                    shared
                        .entries
                        .remember(key, username, &principal, checked_in);
                    Outcome::Accepted(principal)
                }
                Ok(None) => Outcome::Rejected,
                Err(error) => Outcome::Failed(Arc::new(error)),
            };
            // After `remember`: a request that misses the flight finds the entry.
            leader.finish(outcome.clone());
            outcome
        });
        match check.await {
            Ok(outcome) => outcome.into_result(),
            Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
            // Only when the runtime shuts down: nothing was verified.
            Err(_) => Ok(None),
        }
    }
}
