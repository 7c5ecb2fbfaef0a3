//! [`AuthLayer`]: authenticate every request, and let a policy decide about it, before it
//! reaches the inner service.
//!
//! # One request, file by file
//!
//! The code reads in the order a request meets it:
//!
//! 1. **`layer.rs`**, configuration only. [`AuthLayer::new`] takes the authenticator;
//!    `with_realm`, `with_exemptions`, `with_policy` and `with_rejection_response` set the
//!    rest. When the
//!    layer wraps a service it formats the `WWW-Authenticate` values once and builds an
//!    [`Auth`] that shares them, with the exemptions, across its clones.
//! 2. **`service.rs`**, the decision. `Auth::call` drops any principal the request already
//!    carries, then:
//!    - lets an [exempt](crate::Exemptions) request through untouched (it carries no
//!      principal);
//!    - marks the `Authorization` header sensitive, so inner services never log it;
//!    - reads the credentials, borrowed, with
//!      [`Authenticator::credentials`](crate::Authenticator::credentials); none or malformed
//!      is a 401 at once, without calling the authenticator;
//!    - asks [`Authenticator::try_accept_now`](crate::Authenticator::try_accept_now) (a cache
//!      hit, a static token) and on `Some` asks the [policy](crate::policy)'s
//!      [`try_decide_now`](crate::Policy::try_decide_now): an allow accepts at once (the
//!      principal goes into the request extensions and on the `auth` span, and the inner
//!      service is called), a deny is a 403 at once;
//!    - otherwise copies the credentials into owned ones and boxes what is left to wait for,
//!      with the request head the policy decides on:
//!      [`Authenticator::authenticate`](crate::Authenticator::authenticate) then the
//!      policy, or the policy alone; and moves the service that was driven to readiness
//!      into the response future (the clone-and-swap idiom).
//! 3. **`future.rs`**, the waiting. [`ResponseFuture`] polls the verification; on success it
//!    puts the request back together and takes the same accept path as the shortcut, then
//!    polls the inner service's future.
//! 4. **`authenticator.rs`**, the trait both steps call: how credentials are found and
//!    verified, closures as authenticators, [`first_of`](crate::first_of).
//! 5. **`policy/`**, the permission: [`Policy`](crate::Policy), closures, the combinators.
//! 6. **`rejection.rs`**, the refusal. The authenticator's answer becomes an accepted
//!    principal, a 401 (`Ok(None)`) or a 503 (`Err`, logged), the policy's an allow, a 403
//!    (`Deny`) or a 503; a refusal is rendered as 401 with the challenges, 403 or 503 (the
//!    body from a [`RejectionResponse`](crate::RejectionResponse) hook), or as a
//!    trailers-only response for gRPC. See [`rejection`](crate::rejection).
//!
//! `poll_ready` forwards to the inner service, so layers such as `ConcurrencyLimit` and
//! `Buffer` work inside `AuthLayer`. Because a rejected request still waits for inner
//! readiness, put concurrency limits and load shedding *inside* `AuthLayer`, so that
//! requests without valid credentials never hold their permits.
//!
//! ```
//! use std::convert::Infallible;
//! use http::{Request, Response, StatusCode, header};
//! use http_body_util::Full;
//! use bytes::Bytes;
//! use secrecy::ExposeSecret;
//! use subtle::ConstantTimeEq;
//! use tower::{ServiceBuilder, ServiceExt};
//! use tower_mlflow_auth::{AuthLayer, Authorization, Credentials, Exemptions, Scheme};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let authenticator = |credentials: Credentials| async move {
//!     Ok::<_, Infallible>(match credentials {
//!         Credentials::Bearer { token }
//!             if bool::from(token.expose_secret().as_bytes().ct_eq(b"t0ken")) =>
//!         {
//!             Some(Authorization::new("ci", Scheme::Bearer))
//!         }
//!         _ => None,
//!     })
//! };
//! let service = ServiceBuilder::new()
//!     .layer(AuthLayer::new(authenticator).with_exemptions(Exemptions::mlflow_defaults()))
//!     .service_fn(|request: Request<Full<Bytes>>| async move {
//!         let who = request.extensions().get::<Authorization>().map(|a| a.subject().to_owned());
//!         Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(who.unwrap_or_default()))))
//!     });
//!
//! let anonymous = Request::get("/api/2.0/mlflow/experiments/search").body(Full::default())?;
//! let response = service.clone().oneshot(anonymous).await?;
//! assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
//! assert_eq!(response.headers()[header::WWW_AUTHENTICATE], r#"Basic realm="mlflow""#);
//!
//! let authenticated = Request::get("/api/2.0/mlflow/experiments/search")
//!     .header(header::AUTHORIZATION, "Bearer t0ken")
//!     .body(Full::default())?;
//! assert_eq!(service.clone().oneshot(authenticated).await?.status(), StatusCode::OK);
//!
//! let health = Request::get("/health").body(Full::default())?;
//! assert_eq!(service.oneshot(health).await?.status(), StatusCode::OK);
//! # Ok(())
//! # }
//! ```

mod future;
pub(crate) mod handoff;
mod layer;
mod service;

pub use self::{
    future::ResponseFuture,
    layer::{AuthLayer, InvalidRealm},
    service::Auth,
};
