//! The [`Policy`] trait: may this principal make this request?
//!
//! [`AuthLayer`](crate::AuthLayer) answers "who is this?"; a policy answers "may they do
//! this?". It runs after authentication, from the [`Authorization`] principal and the
//! request head, and answers [`Decision::Allow`], [`Decision::Deny`] (403) or `Err(_)` (its
//! backend failed: 503, logged, never shown to the client). It is installed with the
//! authenticator, [`AuthLayer::with_policy`](crate::AuthLayer::with_policy):
//!
//! ```
//! use std::convert::Infallible;
//! use bytes::Bytes;
//! use http::{Method, Request, Response, StatusCode, header};
//! use http_body_util::{BodyExt, Full};
//! use tower::{ServiceBuilder, ServiceExt};
//! use tower_mlflow_auth::{
//!     AuthLayer, Authorization, Credentials, MlflowRejectionResponse, Scheme,
//!     policy::{allow_methods, any_of, require_admin},
//! };
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // Every Basic user is accepted here; only "root" is an admin.
//! let authenticator = |credentials: Credentials| async move {
//!     Ok::<_, Infallible>(match credentials {
//!         Credentials::Basic { username, .. } => {
//!             let admin = username == "root";
//!             Some(Authorization::new(username, Scheme::Basic).with_admin(admin))
//!         }
//!         _ => None,
//!     })
//! };
//! // Admins may do anything; everyone else may only read.
//! let read_only = any_of(require_admin(), allow_methods([Method::GET, Method::HEAD]));
//! let service = ServiceBuilder::new()
//!     .layer(
//!         AuthLayer::new(authenticator)
//!             .with_policy(read_only)
//!             .with_rejection_response(MlflowRejectionResponse),
//!     )
//!     .service_fn(|_: Request<Full<Bytes>>| async {
//!         Ok::<_, Infallible>(Response::new(Full::new(Bytes::from("deleted"))))
//!     });
//!
//! let delete = |user: &str| {
//!     Request::delete("/api/2.0/mlflow/registered-models/delete")
//!         .header(header::AUTHORIZATION, basic(user))
//!         .body(Full::default())
//! };
//! let response = service.clone().oneshot(delete("alice")?).await?;
//! assert_eq!(response.status(), StatusCode::FORBIDDEN);
//! assert_eq!(response.headers()[header::CONTENT_TYPE], "text/plain; charset=utf-8");
//! assert_eq!(response.into_body().collect().await?.to_bytes(), "Permission denied");
//!
//! let response = service.oneshot(delete("root")?).await?;
//! assert_eq!(response.status(), StatusCode::OK);
//! # Ok(())
//! # }
//! # fn basic(user: &str) -> String {
//! #     use base64::Engine as _;
//! #     format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:pw")))
//! # }
//! ```
//!
//! # What a denial looks like
//!
//! - **HTTP**: 403. With [`MlflowRejectionResponse`](crate::MlflowRejectionResponse) the body
//!   is MLflow's own, byte for byte: `Permission denied`, `text/plain; charset=utf-8`, so
//!   the MLflow client reports `... failed with error code 403 != 200. Response body:
//!   'Permission denied'` exactly as it does against MLflow's basic-auth app. The default
//!   hook leaves the body empty, as for every other rejection.
//! - **gRPC**: trailers-only, `grpc-status: 7` (`PERMISSION_DENIED`), `grpc-message:
//!   permission denied`.
//! - In both, [`AuthRejection::Forbidden`](crate::AuthRejection::Forbidden) is in the
//!   response extensions, and the inner service is never called.
//!
//! [Exempt](crate::Exemptions) requests skip the policy as they skip authentication: they
//! have no principal to decide about.
//!
//! # Writing a policy
//!
//! - **Combinators** cover the common rules: [`require_admin`], [`allow_methods`],
//!   [`allow_users`], and [`any_of`] / [`all_of`] to combine two policies (nest them for
//!   more). They decide synchronously, so they cost no allocation per request.
//! - **A closure** `Fn(&Authorization, &Parts) -> impl Future<Output = Result<Decision, E>>`
//!   is a policy. Annotate the argument types; the future cannot borrow them, so copy out
//!   what it needs first:
//!
//!   ```
//!   use std::convert::Infallible;
//!   use http::request::Parts;
//!   use tower_mlflow_auth::{Authorization, policy::{Decision, Policy}};
//!
//!   // Only the "vision" team may touch the vision experiments.
//!   let vision_only = |who: &Authorization, parts: &Parts| {
//!       let allowed = !parts.uri.path().contains("/vision/") || who.attribute("team") == Some("vision");
//!       std::future::ready(Ok::<_, Infallible>(Decision::allow_if(allowed)))
//!   };
//!   # fn is_policy(_: impl Policy) {}
//!   # is_policy(vision_only);
//!   ```
//!
//! - **A type** implementing [`Policy`] can `await` a backend (a permission table, a
//!   directory) with both arguments borrowed; see the [trait docs](Policy).
//! - [`BoxPolicy`] erases the type, for policies chosen at run time from configuration.
//!
//! # Why `with_policy` and not a layer of its own
//!
//! The policy is a step of [`AuthLayer`](crate::AuthLayer), not a `PolicyLayer` stacked
//! inside it, because the step only makes sense right after authentication:
//!
//! - **It cannot be mounted in the wrong place.** A separate layer outside `AuthLayer`
//!   would see no principal on any request; one that is forgotten fails open. Inside
//!   `AuthLayer` the policy always sees the principal that was just verified, handed to it
//!   directly rather than looked up in the extensions.
//! - **One set of exemptions.** A separate layer would need the same
//!   [`Exemptions`](crate::Exemptions) again to let exempt requests through; two copies
//!   drift apart.
//! - **One rejection hook, one span.** A 403 is rendered by the same
//!   [`RejectionResponse`](crate::RejectionResponse) as the 401s and 503s, and the `auth`
//!   span names the principal that was denied.
//! - **No extra cost.** A policy that decides synchronously (all the combinators) is asked
//!   on the layer's fast path; a cache hit followed by an allow still builds no future.
//!
//! # Why the request head and not the request
//!
//! A policy gets `&http::request::Parts` (method, URI, headers, extensions), not
//! `&Request<B>`: the trait then has no body type parameter, so one policy (and
//! [`BoxPolicy`]) fits every service, and a policy cannot consume or buffer a body that the
//! inner service must stream (an artifact upload). Rules that need the body, such as
//! MLflow's per-experiment permissions read from a JSON request, belong to the service that
//! parses it.

mod boxed;
mod combinators;
#[cfg(test)]
mod tests;

use std::{error::Error, future::Future, sync::Arc};

use http::request::Parts;

pub use self::{
    boxed::{BoxPolicy, BoxPolicyError},
    combinators::{
        AllOf, AllowAll, AllowMethods, AllowUsers, AnyOf, PolicyPairError, RequireAdmin, all_of,
        allow_methods, allow_users, any_of, require_admin,
    },
};
use crate::authorization::Authorization;

/// What a [`Policy`] decided about a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Decision {
    /// The request goes on to the inner service.
    Allow,
    /// The request is refused with 403 (gRPC 7).
    Deny,
}

impl Decision {
    /// [`Allow`](Self::Allow) when `allowed`, else [`Deny`](Self::Deny).
    ///
    /// ```
    /// use tower_mlflow_auth::policy::Decision;
    ///
    /// assert_eq!(Decision::allow_if(true), Decision::Allow);
    /// assert_eq!(Decision::allow_if(false), Decision::Deny);
    /// ```
    #[must_use]
    pub fn allow_if(allowed: bool) -> Self {
        if allowed { Self::Allow } else { Self::Deny }
    }

    /// The other decision.
    pub(crate) fn inverse(self) -> Self {
        match self {
            Self::Allow => Self::Deny,
            Self::Deny => Self::Allow,
        }
    }
}

/// Decides whether an authenticated principal may make a request.
///
/// See the [module docs](crate::policy) for how a policy is installed and what a denial
/// looks like. A policy that consults a backend implements `decide` with `async fn`, both
/// arguments borrowed:
///
/// ```
/// use std::{collections::HashMap, convert::Infallible, sync::Arc};
/// use http::{Method, request::Parts};
/// use tower_mlflow_auth::{Authorization, policy::{Decision, Policy}};
///
/// /// Users allowed to write, as a directory service would answer.
/// #[derive(Clone)]
/// struct Writers(Arc<HashMap<String, bool>>);
///
/// impl Policy for Writers {
///     type Error = Infallible;
///
///     async fn decide(&self, who: &Authorization, parts: &Parts) -> Result<Decision, Infallible> {
///         if parts.method == Method::GET {
///             return Ok(Decision::Allow);
///         }
///         // A real directory would be awaited here.
///         Ok(Decision::allow_if(self.0.get(who.subject()).copied().unwrap_or(false)))
///     }
/// }
/// # let _ = Writers(Arc::default());
/// ```
pub trait Policy: Clone + Send + Sync + 'static {
    /// A failure of the policy's backend. It becomes a 503 and is logged with its `Display`
    /// text, so that text must not contain a secret.
    type Error: Error + Send + Sync + 'static;

    /// Decides about the request whose head is `parts`, made by `principal`:
    /// `Ok(Decision::Allow)` lets it through, `Ok(Decision::Deny)` is a 403, `Err(_)` a 503.
    ///
    /// `parts` is the request as the inner service will see it, except that the principal
    /// is not yet in its extensions.
    fn decide(
        &self,
        principal: &Authorization,
        parts: &Parts,
    ) -> impl Future<Output = Result<Decision, Self::Error>> + Send;

    /// A synchronous shortcut: the decision, when this policy can make it at once without
    /// waiting for anything.
    ///
    /// [`AuthLayer`](crate::AuthLayer) asks this first and, on `Some`, needs no future for
    /// the policy. `None` means "ask [`decide`](Self::decide)"; `Some` must be what `decide`
    /// would answer. The default returns `None`; the built-in combinators always answer
    /// when their parts do.
    fn try_decide_now(&self, principal: &Authorization, parts: &Parts) -> Option<Decision> {
        let _ = (principal, parts);
        None
    }
}

impl<F, Fut, E> Policy for F
where
    F: Fn(&Authorization, &Parts) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<Decision, E>> + Send,
    E: Error + Send + Sync + 'static,
{
    type Error = E;

    fn decide(
        &self,
        principal: &Authorization,
        parts: &Parts,
    ) -> impl Future<Output = Result<Decision, E>> + Send {
        self(principal, parts)
    }
}

impl<P: Policy> Policy for Arc<P> {
    type Error = P::Error;

    fn decide(
        &self,
        principal: &Authorization,
        parts: &Parts,
    ) -> impl Future<Output = Result<Decision, Self::Error>> + Send {
        (**self).decide(principal, parts)
    }

    fn try_decide_now(&self, principal: &Authorization, parts: &Parts) -> Option<Decision> {
        (**self).try_decide_now(principal, parts)
    }
}

/// The policy's decision, from the shortcut when it has one.
pub(crate) async fn decide<P: Policy>(
    policy: &P,
    principal: &Authorization,
    parts: &Parts,
) -> Result<Decision, P::Error> {
    match policy.try_decide_now(principal, parts) {
        Some(decision) => Ok(decision),
        None => policy.decide(principal, parts).await,
    }
}
