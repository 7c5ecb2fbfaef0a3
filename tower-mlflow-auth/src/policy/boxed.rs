//! [`BoxPolicy`]: a policy whose type is chosen at run time.

use std::{error::Error, fmt, future::Future, pin::Pin, sync::Arc};

use http::request::Parts;

use super::{Decision, Policy};
use crate::authorization::Authorization;

/// A type-erased [`Policy`], for choosing policies at run time (from a configuration file or
/// command line) and combining them with [`any_of`](super::any_of) and
/// [`all_of`](super::all_of).
///
/// The shortcut still reaches the erased policy, so a boxed synchronous rule costs no
/// allocation per request; a policy that has to wait costs one more.
///
/// ```
/// use http::Method;
/// use tower_mlflow_auth::policy::{BoxPolicy, allow_methods, any_of, require_admin};
///
/// let read_only_for_users = true; // from the configuration
/// let policy = if read_only_for_users {
///     BoxPolicy::new(any_of(require_admin(), allow_methods([Method::GET, Method::HEAD])))
/// } else {
///     BoxPolicy::new(tower_mlflow_auth::policy::AllowAll)
/// };
/// # let _ = policy;
/// ```
#[derive(Clone)]
pub struct BoxPolicy(Arc<dyn ErasedPolicy>);

type BoxedDecision<'a> =
    Pin<Box<dyn Future<Output = Result<Decision, BoxPolicyError>> + Send + 'a>>;

trait ErasedPolicy: Send + Sync + 'static {
    fn decide<'a>(&'a self, principal: &'a Authorization, parts: &'a Parts) -> BoxedDecision<'a>;
    fn try_decide_now(&self, principal: &Authorization, parts: &Parts) -> Option<Decision>;
    fn type_name(&self) -> &'static str;
}

impl<P: Policy> ErasedPolicy for P {
    fn decide<'a>(&'a self, principal: &'a Authorization, parts: &'a Parts) -> BoxedDecision<'a> {
        Box::pin(async move {
            Policy::decide(self, principal, parts)
                .await
                .map_err(|e| BoxPolicyError(Box::new(e)))
        })
    }

    fn try_decide_now(&self, principal: &Authorization, parts: &Parts) -> Option<Decision> {
        Policy::try_decide_now(self, principal, parts)
    }

    fn type_name(&self) -> &'static str {
        std::any::type_name::<P>()
    }
}

impl BoxPolicy {
    /// Erases the type of `policy`.
    pub fn new<P: Policy>(policy: P) -> Self {
        Self(Arc::new(policy))
    }
}

impl Policy for BoxPolicy {
    type Error = BoxPolicyError;

    // An `async fn` so that the future may borrow all three arguments, each for its own
    // lifetime; the boxed future itself lives for the shortest of them.
    async fn decide(
        &self,
        principal: &Authorization,
        parts: &Parts,
    ) -> Result<Decision, Self::Error> {
        self.0.decide(principal, parts).await
    }

    fn try_decide_now(&self, principal: &Authorization, parts: &Parts) -> Option<Decision> {
        self.0.try_decide_now(principal, parts)
    }
}

impl fmt::Debug for BoxPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("BoxPolicy")
            .field(&self.0.type_name())
            .finish()
    }
}

/// The backend failure of a [`BoxPolicy`]: the erased policy's error.
#[derive(Debug)]
pub struct BoxPolicyError(Box<dyn Error + Send + Sync>);

impl fmt::Display for BoxPolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl Error for BoxPolicyError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        self.0.source()
    }
}
