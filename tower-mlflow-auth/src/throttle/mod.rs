//! [`ThrottleLayer`]: failed-login throttling. A client that presented wrong credentials too
//! often is answered `429 Too Many Requests` with `Retry-After`, before its credentials reach
//! a password hash, while users whose credentials are already verified keep working.
//!
//! # How it counts
//!
//! Each client — whatever a [`ClientKey`] makes of the request head, typically the peer's
//! [`IpKey`] — has a token bucket: `burst` tokens (by default as many as `per_minute`),
//! refilled at `per_minute` tokens a minute. For each request the layer:
//!
//! 1. lets through, untouched and uncounted, a request without credentials or with
//!    unreadable ones: [`AuthLayer`](crate::AuthLayer) answers those 401 without any check,
//!    so there is nothing to protect (exempt paths without credentials stay reachable);
//! 2. lets through a request whose credentials the authenticator accepts from memory
//!    ([`Authenticator::try_accept_now`](crate::Authenticator::try_accept_now): a
//!    [`Cached`](crate::authenticators::Cached) hit, a static token), **whatever the bucket
//!    holds**, without looking at the buckets: a user behind the same NAT as a password
//!    guesser is not locked out;
//! 3. otherwise takes a token: with none left it answers 429 (gRPC: `RESOURCE_EXHAUSTED`)
//!    at once, and the authenticator never sees the request. The token is taken *before* the
//!    check so that a client cannot start more checks at once than its bucket holds.
//! 4. gives the token back unless the login failed, that is unless the response carries
//!    [`AuthRejection::Invalid`](crate::AuthRejection::Invalid) (wrong password, unknown
//!    user, bad token, a scheme nobody accepts). A backend failure (503) is not the client's
//!    fault; a request accepted and then refused by a policy (403) is no failed login. With
//!    [`ThrottleReleaseLayer`] inside `AuthLayer` the token comes back as soon as the request
//!    is accepted, not only when its (maybe slow) response does. A request cancelled
//!    before its outcome keeps its token taken.
//!
//! The throttled response carries a [`Throttled`] in its extensions and is logged at INFO
//! with the client key (never the credential); the failure that takes a client's last token
//! is logged at WARN.
//!
//! ```
//! use std::{convert::Infallible, net::SocketAddr};
//! use http::{Request, Response, StatusCode, header, request::Parts};
//! use secrecy::ExposeSecret;
//! use subtle::ConstantTimeEq;
//! use tower::{ServiceBuilder, ServiceExt};
//! use tower_mlflow_auth::{AuthLayer, Authorization, Credentials, Scheme};
//! use tower_mlflow_auth::throttle::{IpKey, ThrottleLayer, ThrottleReleaseLayer};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let authenticator = |credentials: Credentials| async move {
//!     Ok::<_, Infallible>(match credentials {
//!         Credentials::Basic { username, password }
//!             if bool::from(password.expose_secret().as_bytes().ct_eq(b"s3cr3t")) =>
//!         {
//!             Some(Authorization::new(username, Scheme::Basic))
//!         }
//!         _ => None,
//!     })
//! };
//! // The peer address, as the server put it into the extensions (axum: `ConnectInfo`).
//! let by_peer = |parts: &Parts| parts.extensions.get::<SocketAddr>().map(|peer| IpKey::from(*peer));
//! let auth = AuthLayer::new(authenticator);
//! let throttle = ThrottleLayer::builder_for(&auth, by_peer).per_minute(2).build()?;
//! let service = ServiceBuilder::new()
//!     .layer(throttle)
//!     .layer(auth)
//!     .layer(ThrottleReleaseLayer::new())
//!     .service_fn(|_: Request<String>| async { Ok::<_, Infallible>(Response::new(String::new())) });
//!
//! let from = |peer: &str, authorization: &str| {
//!     let mut request = Request::get("/api/2.0/mlflow/experiments/search")
//!         .header(header::AUTHORIZATION, authorization)
//!         .body(String::new())
//!         .unwrap();
//!     request.extensions_mut().insert(peer.parse::<SocketAddr>().unwrap());
//!     request
//! };
//! let wrong = "Basic YWxpY2U6d3Jvbmc="; // alice:wrong
//! for port in [5000, 5001] {
//!     let response = service.clone().oneshot(from(&format!("192.0.2.1:{port}"), wrong)).await?;
//!     assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
//! }
//! // The third wrong guess within the minute is refused without a check.
//! let response = service.clone().oneshot(from("192.0.2.1:5002", wrong)).await?;
//! assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
//! assert_eq!(response.headers()[header::RETRY_AFTER], "30");
//! // Another client is not affected.
//! let right = "Basic YWxpY2U6czNjcjN0"; // alice:s3cr3t
//! let response = service.oneshot(from("192.0.2.2:5000", right)).await?;
//! assert_eq!(response.status(), StatusCode::OK);
//! # Ok(())
//! # }
//! ```
//!
//! Build the throttle for the `AuthLayer` it protects with
//! [`ThrottleLayer::builder_for`]: it then asks that layer's authenticator (so it sees the
//! same cache), and hands each principal accepted from memory to the layer, which does not
//! extract and look up the same credentials a second time. ([`ThrottleLayer::builder`] takes
//! any authenticator and hands nothing over.) Layer order, outside in: `ThrottleLayer`,
//! `AuthLayer`, `ThrottleReleaseLayer`, the service, with nothing between the first two that
//! changes a request's credentials. The response body must implement `Default` (empty 429
//! body), as for `AuthLayer`.
//!
//! # Memory, concurrency and keys
//!
//! - A bucket is one instant (when it will be full again) in a map sharded by a per-layer
//!   random hash; a request locks one shard for a few map operations, and a cache hit locks
//!   nothing. Only clients that failed recently have an entry: a full bucket is dropped.
//! - At most [`max_keys`](ThrottleLayerBuilder::max_keys) clients are tracked (default
//!   [`ThrottleLayer::DEFAULT_MAX_KEYS`]). When a shard is full, refilled buckets are dropped
//!   first, then the one nearest to full: an attacker cycling through many addresses mostly
//!   evicts its own barely-used entries, never the clients that failed the most, and never
//!   makes the table grow.
//! - Key by what the client cannot choose. Behind a reverse proxy, that is the address the
//!   *trusted* proxy reports, not a header any client can send. [`IpKey`] counts IPv6
//!   clients per /64, since one host can use any address of its /64.
//! - The counts are per layer, in memory: each process (each replica behind a load
//!   balancer) counts on its own, so N replicas allow up to N times the limit, and a restart
//!   forgets the counts.
//!
//! # Caveats
//!
//! A user whose credentials are not (or no longer) cached shares the bucket of its address:
//! behind the NAT of a guesser it is refused until a token is back. Requests that carry
//! credentials to an exempt path take a token like any other (and give it back).

mod buckets;
mod future;
mod key;
mod layer;
mod release;
mod response;
mod service;
#[cfg(test)]
mod tests;

pub use self::{
    future::ResponseFuture,
    key::{ClientKey, IpKey},
    layer::{ThrottleBuildError, ThrottleLayer, ThrottleLayerBuilder},
    release::{ThrottleRelease, ThrottleReleaseLayer},
    response::Throttled,
    service::Throttle,
};
