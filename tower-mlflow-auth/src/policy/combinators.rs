//! The built-in policies: rules that decide synchronously, and the two ways to combine
//! policies.

use std::{
    collections::BTreeSet, convert::Infallible, error::Error, fmt, future::Future, sync::Arc,
};

use http::{Method, request::Parts};

use super::{Decision, Policy, decide};
use crate::authorization::Authorization;

/// Implements [`Policy`] for a rule whose inherent `allows(&self, &Authorization, &Parts)`
/// decides at once: `decide` and the shortcut give the same answer by construction.
macro_rules! synchronous_policy {
    ($($rule:ty),+ $(,)?) => {$(
        impl Policy for $rule {
            type Error = Infallible;

            fn decide(
                &self,
                principal: &Authorization,
                parts: &Parts,
            ) -> impl Future<Output = Result<Decision, Infallible>> + Send {
                std::future::ready(Ok(Decision::allow_if(self.allows(principal, parts))))
            }

            fn try_decide_now(&self, principal: &Authorization, parts: &Parts) -> Option<Decision> {
                Some(Decision::allow_if(self.allows(principal, parts)))
            }
        }
    )+};
}

synchronous_policy!(AllowAll, RequireAdmin, AllowMethods, AllowUsers);

/// Allows every authenticated request: what [`AuthLayer`](crate::AuthLayer) does without
/// [`with_policy`](crate::AuthLayer::with_policy).
#[derive(Clone, Copy, Debug, Default)]
pub struct AllowAll;

impl AllowAll {
    fn allows(&self, _: &Authorization, _: &Parts) -> bool {
        true
    }
}

/// Allows admins only ([`Authorization::is_admin`], MLflow's `is_admin`).
///
/// ```
/// use tower_mlflow_auth::policy::{Decision, Policy, require_admin};
/// use tower_mlflow_auth::{Authorization, Scheme};
///
/// let parts = http::Request::delete("/api/2.0/mlflow/experiments/delete").body(()).unwrap().into_parts().0;
/// let alice = Authorization::new("alice", Scheme::Basic);
/// assert_eq!(require_admin().try_decide_now(&alice, &parts), Some(Decision::Deny));
/// assert_eq!(require_admin().try_decide_now(&alice.with_admin(true), &parts), Some(Decision::Allow));
/// ```
#[must_use]
pub fn require_admin() -> RequireAdmin {
    RequireAdmin(())
}

/// Allows admins only; made by [`require_admin`].
#[derive(Clone, Copy, Debug)]
pub struct RequireAdmin(());

impl RequireAdmin {
    fn allows(&self, principal: &Authorization, _: &Parts) -> bool {
        principal.is_admin()
    }
}

/// Allows requests with one of `methods`, whoever makes them.
///
/// Alone it denies every other method to everyone; combined as
/// `any_of(require_admin(), allow_methods([Method::GET, Method::HEAD]))` it makes everyone
/// but the admins read-only. MLflow's REST API also reads with `POST` (the `search`
/// endpoints) and deletes with `POST` as well as `DELETE`, so a method rule is coarse: it
/// suits a custom service better than MLflow's own routes.
///
/// ```
/// use http::Method;
/// use tower_mlflow_auth::policy::{Decision, Policy, allow_methods};
/// use tower_mlflow_auth::{Authorization, Scheme};
///
/// let reads = allow_methods([Method::GET, Method::HEAD]);
/// let alice = Authorization::new("alice", Scheme::Basic);
/// let get = http::Request::get("/runs").body(()).unwrap().into_parts().0;
/// let post = http::Request::post("/runs").body(()).unwrap().into_parts().0;
/// assert_eq!(reads.try_decide_now(&alice, &get), Some(Decision::Allow));
/// assert_eq!(reads.try_decide_now(&alice, &post), Some(Decision::Deny));
/// ```
pub fn allow_methods(methods: impl IntoIterator<Item = Method>) -> AllowMethods {
    AllowMethods(methods.into_iter().collect())
}

/// Allows requests with one of a set of methods; made by [`allow_methods`].
#[derive(Clone, Debug)]
pub struct AllowMethods(Arc<[Method]>);

impl AllowMethods {
    fn allows(&self, _: &Authorization, parts: &Parts) -> bool {
        self.0.contains(&parts.method)
    }
}

/// Allows the principals whose [subject](Authorization::subject) is one of `users`,
/// compared exactly (byte for byte, case-sensitive).
///
/// ```
/// use tower_mlflow_auth::policy::{Decision, Policy, allow_users};
/// use tower_mlflow_auth::{Authorization, Scheme};
///
/// let operators = allow_users(["alice", "ci-bot"]);
/// let parts = http::Request::get("/").body(()).unwrap().into_parts().0;
/// assert_eq!(operators.try_decide_now(&Authorization::new("ci-bot", Scheme::Bearer), &parts), Some(Decision::Allow));
/// assert_eq!(operators.try_decide_now(&Authorization::new("Alice", Scheme::Basic), &parts), Some(Decision::Deny));
/// ```
pub fn allow_users<U: Into<Box<str>>>(users: impl IntoIterator<Item = U>) -> AllowUsers {
    AllowUsers(Arc::new(users.into_iter().map(Into::into).collect()))
}

/// Allows a set of users; made by [`allow_users`].
#[derive(Clone, Debug)]
pub struct AllowUsers(Arc<BTreeSet<Box<str>>>);

impl AllowUsers {
    fn allows(&self, principal: &Authorization, _: &Parts) -> bool {
        self.0.contains(principal.subject())
    }
}

/// Allows a request that `first` or `second` allows.
///
/// - `second` is asked only when `first` does not allow.
/// - A backend failure is reported (503) only when neither allowed: an allow from the other
///   side is enough.
/// - The shortcut answers when `first` allows now, when both deny now, or when `second`
///   allows now.
///
/// ```
/// use http::Method;
/// use tower_mlflow_auth::policy::{Decision, Policy, allow_methods, any_of, require_admin};
/// use tower_mlflow_auth::{Authorization, Scheme};
///
/// let admin_or_read = any_of(require_admin(), allow_methods([Method::GET]));
/// let alice = Authorization::new("alice", Scheme::Basic);
/// let delete = http::Request::delete("/runs").body(()).unwrap().into_parts().0;
/// assert_eq!(admin_or_read.try_decide_now(&alice, &delete), Some(Decision::Deny));
/// assert_eq!(admin_or_read.try_decide_now(&alice.with_admin(true), &delete), Some(Decision::Allow));
/// ```
pub fn any_of<A: Policy, B: Policy>(first: A, second: B) -> AnyOf<A, B> {
    AnyOf { first, second }
}

/// Two policies of which one must allow; made by [`any_of`].
#[derive(Clone, Debug)]
pub struct AnyOf<A, B> {
    first: A,
    second: B,
}

/// Allows a request that both `first` and `second` allow.
///
/// - `second` is asked only when `first` does not deny.
/// - A deny from either side is a 403 even when the other side failed: the request could
///   not be allowed anyway.
/// - The shortcut answers when `first` denies now, when both allow now, or when `second`
///   denies now.
///
/// ```
/// use http::Method;
/// use tower_mlflow_auth::policy::{Decision, Policy, all_of, allow_methods, allow_users};
/// use tower_mlflow_auth::{Authorization, Scheme};
///
/// let alice_reads = all_of(allow_users(["alice"]), allow_methods([Method::GET]));
/// let get = http::Request::get("/runs").body(()).unwrap().into_parts().0;
/// assert_eq!(alice_reads.try_decide_now(&Authorization::new("alice", Scheme::Basic), &get), Some(Decision::Allow));
/// assert_eq!(alice_reads.try_decide_now(&Authorization::new("bob", Scheme::Basic), &get), Some(Decision::Deny));
/// ```
pub fn all_of<A: Policy, B: Policy>(first: A, second: B) -> AllOf<A, B> {
    AllOf { first, second }
}

/// Two policies that must both allow; made by [`all_of`].
#[derive(Clone, Debug)]
pub struct AllOf<A, B> {
    first: A,
    second: B,
}

/// Implements [`Policy`] for a pair of policies where `$decisive` from either side wins.
macro_rules! pair_policy {
    ($($pair:ident => $decisive:expr),+ $(,)?) => {$(
        impl<A: Policy, B: Policy> Policy for $pair<A, B> {
            type Error = PolicyPairError<A::Error, B::Error>;

            fn decide(
                &self,
                principal: &Authorization,
                parts: &Parts,
            ) -> impl Future<Output = Result<Decision, Self::Error>> + Send {
                pair(&self.first, &self.second, principal, parts, $decisive)
            }

            fn try_decide_now(&self, principal: &Authorization, parts: &Parts) -> Option<Decision> {
                pair_now(&self.first, &self.second, principal, parts, $decisive)
            }
        }
    )+};
}

pair_policy!(AnyOf => Decision::Allow, AllOf => Decision::Deny);

/// [`AnyOf`] and [`AllOf`] are one rule: `decisive` from either side wins (`Allow` for
/// any-of, `Deny` for all-of); otherwise a failure of either is the answer, and without
/// one, the other decision.
async fn pair<A: Policy, B: Policy>(
    first: &A,
    second: &B,
    principal: &Authorization,
    parts: &Parts,
    decisive: Decision,
) -> Result<Decision, PolicyPairError<A::Error, B::Error>> {
    let first = decide(first, principal, parts).await;
    if matches!(first, Ok(d) if d == decisive) {
        return Ok(decisive);
    }
    match (first, decide(second, principal, parts).await) {
        (_, Ok(d)) if d == decisive => Ok(decisive),
        (Err(e), _) => Err(PolicyPairError::First(e)),
        (_, Err(e)) => Err(PolicyPairError::Second(e)),
        (Ok(_), Ok(_)) => Ok(decisive.inverse()),
    }
}

/// The shortcut of [`pair`]: an answer only when it does not depend on a side that cannot
/// decide now.
fn pair_now<A: Policy, B: Policy>(
    first: &A,
    second: &B,
    principal: &Authorization,
    parts: &Parts,
    decisive: Decision,
) -> Option<Decision> {
    match first.try_decide_now(principal, parts) {
        Some(d) if d == decisive => Some(decisive),
        Some(_) => second.try_decide_now(principal, parts),
        None => second
            .try_decide_now(principal, parts)
            .filter(|d| *d == decisive),
    }
}

/// The backend failure of one of the policies in an [`AnyOf`] or [`AllOf`].
#[derive(Debug)]
pub enum PolicyPairError<A, B> {
    /// The first policy failed.
    First(A),
    /// The second policy failed.
    Second(B),
}

impl<A: fmt::Display, B: fmt::Display> fmt::Display for PolicyPairError<A, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::First(e) => write!(f, "first policy: {e}"),
            Self::Second(e) => write!(f, "second policy: {e}"),
        }
    }
}

impl<A: Error + 'static, B: Error + 'static> Error for PolicyPairError<A, B> {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            Self::First(e) => Some(e),
            Self::Second(e) => Some(e),
        }
    }
}
