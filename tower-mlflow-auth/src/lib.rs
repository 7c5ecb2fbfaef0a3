//! Tower middleware that authenticates requests to MLflow-compatible services.
//!
//! [`AuthLayer`] checks each request with an [`Authenticator`], puts the resulting
//! [`Authorization`] principal into the request extensions, and answers everything else:
//! 401 with `WWW-Authenticate` for missing or wrong credentials, 503 when the credential
//! backend is down, and trailers-only gRPC statuses for gRPC requests. It works the same
//! under axum's `Router::layer`, tonic's `Server::builder().layer` and a plain hyper server.
//!
//! ```
//! use std::convert::Infallible;
//! use axum::{Extension, Router, routing::get};
//! use secrecy::ExposeSecret;
//! use subtle::ConstantTimeEq;
//! use tower_mlflow_auth::{AuthLayer, Authorization, Credentials, Exemptions, Scheme};
//!
//! // Any async closure from `Credentials` to `Option<Authorization>` is an authenticator.
//! let authenticator = |credentials: Credentials| async move {
//!     Ok::<_, Infallible>(match credentials {
//!         Credentials::Basic { username, password }
//!             if username == "alice" && bool::from(password.expose_secret().as_bytes().ct_eq(b"s3cr3t")) =>
//!         {
//!             Some(Authorization::new(username, Scheme::Basic))
//!         }
//!         _ => None,
//!     })
//! };
//!
//! let app: Router = Router::new()
//!     .route("/api/2.0/mlflow/experiments/search", get(|Extension(who): Extension<Authorization>| async move {
//!         format!("hello {}", who.subject())
//!     }))
//!     .route("/health", get(|| async { "OK" }))
//!     .layer(AuthLayer::new(authenticator).with_exemptions(Exemptions::mlflow_defaults()));
//! # let _ = app;
//! ```
//!
//! With the `axum` feature, handlers can take `Authorization` (or `Option<Authorization>`)
//! directly instead of `Extension<Authorization>`.
//!
//! # Modules
//!
//! - [`authenticator`]: the [`Authenticator`] trait, closures, [`first_of`].
//! - [`credentials`]: parsing `Authorization` and custom headers, never panicking.
//! - [`exempt`]: deny-by-default path exemptions that no encoding can reach.
//! - [`auth`]: the layer, service and response future; its docs walk one request through
//!   the code.
//! - [`origin`]: [`OriginCheckLayer`], refusing cross-site state-changing requests that carry
//!   browser credentials (CSRF), with no extra dependency.
//! - [`policy`]: the [`Policy`] trait deciding, after authentication, whether the principal
//!   may make the request (403 otherwise), closures, `require_admin`, `allow_methods`,
//!   `allow_users`, `any_of` / `all_of`; installed with [`AuthLayer::with_policy`].
//! - [`rejection`]: how 401, 403, 503 and gRPC rejections are rendered, and the body hooks
//!   ([`MlflowRejectionResponse`] for MLflow's own texts).
//! - [`authenticators`]: the built-in authenticators, each behind a feature.
//! - `session` (feature `session`): sealed session cookies for browser sign-in.
//! - `throttle` (feature `throttle`): too many failed logins from one client are answered
//!   429 without a password check.
//!
//! # Features
//!
//! None is enabled by default.
//!
//! - `htpasswd`: `Htpasswd`, Apache htpasswd files, reloaded when they change.
//! - `mlflow-users`: `MlflowUsers`, the users of MLflow's basic-auth app (werkzeug hashes,
//!   its SQLite `basic_auth.db`).
//! - `mlflow-users-postgres`: the same users from MLflow's auth database in PostgreSQL
//!   (`MlflowUsersBuilder::postgres`; tokio-postgres, TLS by rustls with aws-lc-rs).
//! - `static-tokens`: `StaticTokens`, fixed bearer tokens or API keys, compared in constant
//!   time.
//! - `jwt`: `Jwt`, bearer JWTs checked against a JWKS or an OIDC issuer's discovery document.
//! - `jwt-tls`: `https://` JWKS and discovery URLs for `jwt` (rustls with aws-lc-rs).
//! - `cache`: `Cached`, a verified-credential cache around any authenticator.
//! - `axum`: `Authorization` / `Option<Authorization>` extractors (the `extract` module).
//! - `throttle`: `ThrottleLayer`, failed-login throttling per
//!   client: 429 with `Retry-After` before a password is checked, cache hits never throttled.
//! - `session`: the `session` module, encrypted and authenticated session cookies
//!   (XChaCha20-Poly1305, keys from the session secret by HKDF-SHA256, rotation, splitting)
//!   for browser sign-in without server-side state.
//! - `fuzzing` (hidden, not a stable API): the entry points the targets in `fuzz/` call,
//!   so that the parsers' internals stay private. Implies `htpasswd` and `mlflow-users`.
//!
//! # Logging
//!
//! Each request gets an `auth` span (level DEBUG) whose `principal` field is filled in once
//! the request is authenticated. Credentials never appear in any event or span at any level;
//! the request's `Authorization` header is marked sensitive before the inner service sees it.
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]
// Library code reports failures to its caller instead of panicking or printing; tests
// may unwrap (clippy.toml) and print.
#![warn(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![cfg_attr(not(test), warn(clippy::print_stdout))]
#![cfg_attr(not(test), warn(clippy::print_stderr))]

#[cfg(feature = "fuzzing")]
#[cfg_attr(docsrs, doc(cfg(feature = "fuzzing")))]
#[doc(hidden)]
#[path = "fuzzing.rs"]
pub mod __fuzz;
pub mod auth;
pub mod authenticator;
pub mod authenticators;
mod authorization;
pub mod credentials;
pub mod exempt;
#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
pub mod extract;
pub mod origin;
pub mod policy;
pub mod rejection;
#[cfg(feature = "session")]
#[cfg_attr(docsrs, doc(cfg(feature = "session")))]
pub mod session;
#[cfg(feature = "throttle")]
#[cfg_attr(docsrs, doc(cfg(feature = "throttle")))]
pub mod throttle;

#[doc(inline)]
pub use self::{
    auth::{Auth, AuthLayer, InvalidRealm},
    authenticator::{
        Authenticator, BoxAuthenticator, BoxAuthenticatorError, Challenge, FirstOf, FirstOfError,
        InvalidChallenge, RevocationListener, Revoked, first_of,
    },
    authorization::Authorization,
    credentials::{Credentials, CredentialsError, CredentialsRef, Malformed, Scheme},
    exempt::{ExemptionError, Exemptions},
    origin::{
        OriginCheck, OriginCheckBuildError, OriginCheckLayer, OriginCheckLayerBuilder,
        OriginRejection, OriginRejectionKind,
    },
    policy::{BoxPolicy, BoxPolicyError, Decision, Policy},
    rejection::{
        AuthRejection, DefaultRejectionResponse, MlflowRejectionResponse, RejectionResponse,
    },
};
