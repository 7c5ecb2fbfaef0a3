//! [`SecretHeaderLayer`]: adds the cached secret as a header to requests bound for allowed
//! origins.
//!
//! On every call the layer:
//!
//! 1. Works out the request's own origin from its URI (scheme, host, port); a request with
//!    a relative URI uses the builder's [`default_origin`](SecretHeaderLayerBuilder::default_origin)
//!    (for clients such as tonic's `Channel` that fill the origin in later), or has none.
//! 2. If the origin is not on the [`HostAllowlist`](crate::HostAllowlist), removes the
//!    header (whoever set it) and sends the request on **without** the secret, or fails it
//!    with [`SecretHeaderError::NotAllowed`] ([`DisallowedHost::Fail`]).
//! 3. Otherwise gets the secret from the [`CachedSecret`](crate::CachedSecret) (no wait when
//!    it is fresh), renders it with the [`HeaderTemplate`](crate::format::HeaderTemplate),
//!    marks the value sensitive and *replaces* any existing value. With no usable secret the
//!    request is not sent: [`SecretHeaderError::Unavailable`].
//! 4. Optionally, on a `401 Unauthorized`, gets a fresh secret and replays the request once
//!    ([`recover_unauthorized`](SecretHeaderLayerBuilder::recover_unauthorized)), copied
//!    before the header was added by a [`CloneRequest`] hook. A fetch that returns the
//!    refused secret unchanged (a rotation the store has not caught up with) gives the
//!    `401` back and lets the next `401` fetch again about a second later.
//!
//! Place it **inside** tower-http's `FollowRedirectLayer` (the redirect layer outermost):
//! then every hop is a new call and is checked again, so a redirect to another origin never
//! carries the secret, whatever the header is called.
//!
//! ```
//! use std::convert::Infallible;
//! use http::{Request, Response, header::AUTHORIZATION};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//! use tower_mlflow_secrets::{
//!     CachedSecret, HostAllowlist, SecretHeaderLayer, format::HeaderTemplate, source::Static,
//! };
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let layer = SecretHeaderLayer::builder(CachedSecret::new(Static::new("admin:password1234")))
//!     .template(HeaderTemplate::basic())
//!     .allowlist(HostAllowlist::builder().host("mlflow.example.com").build().unwrap())
//!     .build()
//!     .unwrap();
//!
//! let client = ServiceBuilder::new().layer(layer).service(service_fn(
//!     |req: Request<String>| async move {
//!         let auth = req.headers().get(AUTHORIZATION).is_some();
//!         Ok::<_, Infallible>(Response::new(auth))
//!     },
//! ));
//!
//! let to = |uri: &str| Request::builder().uri(uri).body(String::new()).unwrap();
//! let sent = client.clone().oneshot(to("https://mlflow.example.com/api/2.0/mlflow/experiments/search")).await.unwrap();
//! assert!(*sent.body());
//! let elsewhere = client.oneshot(to("https://elsewhere.example.net/")).await.unwrap();
//! assert!(!*elsewhere.body()); // not on the allowlist: sent without the secret
//! # }
//! ```

mod future;
mod layer;
mod recovery;
mod replay;
mod service;

use std::fmt;

use tower_mlflow_core::BoxError;

pub use self::{
    future::ResponseFuture,
    layer::{
        DisallowedHost, SecretHeaderLayer, SecretHeaderLayerBuildError, SecretHeaderLayerBuilder,
    },
    replay::{CloneBody, CloneRequest, NoReplay},
    service::SecretHeader,
};

/// Why [`SecretHeader`] did not return a response. Its text never contains the secret.
#[derive(Debug)]
#[non_exhaustive]
pub enum SecretHeaderError {
    /// No usable secret (the source failed, is backing off, or returned a secret in the
    /// wrong format). The request was not sent.
    Unavailable(BoxError),
    /// The request's origin is not on the allowlist and the policy is
    /// [`DisallowedHost::Fail`]. The request was not sent.
    NotAllowed {
        /// The request's normalised origin (`scheme://host:port`), or `"(none)"` for a
        /// relative URI without a default origin.
        origin: String,
    },
    /// The inner service failed.
    Inner(BoxError),
}

impl SecretHeaderError {
    /// Whether this is [`Unavailable`](Self::Unavailable).
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }

    /// Whether this is [`NotAllowed`](Self::NotAllowed).
    pub fn is_not_allowed(&self) -> bool {
        matches!(self, Self::NotAllowed { .. })
    }

    /// The inner service's error, if this is [`Inner`](Self::Inner).
    pub fn into_inner(self) -> Option<BoxError> {
        match self {
            Self::Inner(err) => Some(err),
            _ => None,
        }
    }
}

impl fmt::Display for SecretHeaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unavailable(cause) => write!(f, "secret unavailable, request not sent: {cause}"),
            Self::NotAllowed { origin } => {
                write!(
                    f,
                    "origin {origin} is not on the secret's host allowlist; request not sent"
                )
            }
            Self::Inner(_) => f.write_str("the inner service failed"),
        }
    }
}

impl std::error::Error for SecretHeaderError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Unavailable(err) | Self::Inner(err) => Some(&**err),
            Self::NotAllowed { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests;
