//! Building blocks shared by [`tower-mlflow-auth`] and [`tower-mlflow-secrets`].
//!
//! This crate exists so that the two crates share one implementation of each piece instead
//! of two that drift apart (as `axum-core` does for axum). It is versioned with them, but its
//! API is **not** meant for direct use: depend on the two crates instead.
//!
//! - [`BoxError`]: the one boxed error type, the same as `tower::BoxError`.
//! - [`net::is_loopback_host`]: the one answer to "is this host on this machine?".
//! - [`blocking::run_blocking`] (feature `blocking`): tokio's blocking pool, or inline
//!   outside a runtime.
//! - [`http::HttpClient`] (feature `http-client`; `https` with `http-client-tls`, rustls on
//!   aws-lc-rs): the one outbound HTTP client, the plain-http-to-loopback rule and the retry
//!   classification of statuses.
//! - [`sync::SingleFlight`] and [`sync::Reloading`] (feature `sync`): one load at a time, its
//!   outcome shared with every caller that waits for it, a snapshot readers load lock-free.
//! - `define_inner_service_accessors!`: the `get_ref` / `get_mut` / `into_inner` of every
//!   middleware.
//!
//! [`tower-mlflow-auth`]: https://docs.rs/tower-mlflow-auth
//! [`tower-mlflow-secrets`]: https://docs.rs/tower-mlflow-secrets
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "blocking")]
#[cfg_attr(docsrs, doc(cfg(feature = "blocking")))]
pub mod blocking;
#[cfg(feature = "http-client")]
#[cfg_attr(docsrs, doc(cfg(feature = "http-client")))]
pub mod http;
mod macros;
pub mod net;
#[cfg(feature = "sync")]
#[cfg_attr(docsrs, doc(cfg(feature = "sync")))]
pub mod sync;

/// A boxed error that can cross threads: the same type as `tower::BoxError`.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
