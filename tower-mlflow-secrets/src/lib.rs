//! Tower middleware that adds a credential from a secret store to outbound requests —
//! MLflow REST calls, gRPC channels, any tower HTTP client — without leaking it.
//!
//! - [`source`]: where the secret comes from ([`SecretSource`](source::SecretSource):
//!   [`Static`](source::Static), [`Env`](source::Env), [`File`](source::File), your own).
//! - [`CachedSecret`]: one fetch for any number of concurrent callers, refresh ahead of
//!   expiry, stale-if-error, retries of transient errors only, backoff after failures, and
//!   fail-closed when nothing usable is left.
//! - [`format`](mod@format): the secret's format (token, `user:pass`, JSON) and the header mode (Bearer,
//!   Basic, raw, custom scheme), checked against each other when the layer is built.
//! - [`HostAllowlist`]: the origins (scheme, host, port) the secret may go to, checked on
//!   every request against the request's own URI — so, inside tower-http's
//!   `FollowRedirectLayer`, on every redirect hop.
//! - [`SecretHeaderLayer`]: the layer itself; the header value is always marked sensitive.
//!
//! ```
//! use std::{convert::Infallible, time::Duration};
//! use http::{Request, Response, header::AUTHORIZATION};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//! use tower_mlflow_secrets::{
//!     CachedSecret, HostAllowlist, SecretHeaderLayer, format::HeaderTemplate, source::Env,
//! };
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! // A token from an environment variable, cached for 10 minutes.
//! let secret = CachedSecret::builder(Env::new("MLFLOW_TRACKING_TOKEN"))
//!     .ttl(Duration::from_secs(600))
//!     .build()?;
//! let layer = SecretHeaderLayer::builder(secret)
//!     .template(HeaderTemplate::bearer())
//!     .allowlist(HostAllowlist::builder().host("mlflow.example.com").build()?)
//!     .build()?;
//!
//! // Any tower HTTP client goes here: hyper-util's `Client`, tonic's `Channel`, ...
//! let client = ServiceBuilder::new().layer(layer).service(service_fn(|req: Request<String>| async move {
//!     Ok::<_, Infallible>(Response::new(req.headers().contains_key(AUTHORIZATION)))
//! }));
//! let request = Request::get("https://mlflow.example.com/health").body(String::new())?;
//! match client.oneshot(request).await {
//!     Ok(response) => assert!(*response.body()),
//!     // The variable is not set here: the request fails closed instead of going out bare.
//!     Err(err) => assert!(err.is_unavailable()),
//! }
//! # Ok(())
//! # }
//! ```
//!
//! # Logging
//!
//! Events use `tracing` (target `tower_mlflow_secrets`): fetches and refreshes at DEBUG,
//! failures and stale serving at WARN, per-request decisions at DEBUG/TRACE. No event, span,
//! error or `Debug` output contains the secret or the header value.
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]
// Library code reports failures to its caller instead of panicking or printing; tests
// may unwrap (clippy.toml) and print.
#![warn(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![cfg_attr(not(test), warn(clippy::print_stdout))]
#![cfg_attr(not(test), warn(clippy::print_stderr))]

pub mod allowlist;
pub mod cache;
pub mod config;
pub mod format;
pub mod header;
pub mod source;

#[doc(inline)]
pub use self::{
    allowlist::HostAllowlist,
    cache::CachedSecret,
    header::{DisallowedHost, SecretHeader, SecretHeaderError, SecretHeaderLayer},
};
