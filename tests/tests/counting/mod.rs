//! Shared by the integration tests that count how often a store verifies.

use std::sync::{
    Arc,
    atomic::{AtomicUsize, Ordering},
};

use tower_mlflow_auth::{
    Authenticator, Authorization, Credentials, CredentialsRef, authenticator::RevocationListener,
};

/// Counts the verifications (`authenticate`) of the authenticator it wraps; everything else
/// is passed on.
#[derive(Clone, Debug)]
pub(crate) struct Counted<A> {
    /// The counted authenticator, for what the test does to it directly.
    pub(crate) inner: A,
    calls: Arc<AtomicUsize>,
}

impl<A> Counted<A> {
    pub(crate) fn new(inner: A) -> Self {
        Self {
            inner,
            calls: Arc::default(),
        }
    }

    pub(crate) fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

impl<A: Authenticator> Authenticator for Counted<A> {
    type Error = A::Error;

    async fn authenticate(
        &self,
        credentials: Credentials,
    ) -> Result<Option<Authorization>, A::Error> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.inner.authenticate(credentials).await
    }

    fn try_accept_now(&self, credentials: &CredentialsRef<'_>) -> Option<Authorization> {
        self.inner.try_accept_now(credentials)
    }

    fn accepts(&self, credentials: &CredentialsRef<'_>) -> bool {
        self.inner.accepts(credentials)
    }

    fn subscribe_revocations(&self, listener: RevocationListener) {
        self.inner.subscribe_revocations(listener);
    }
}
