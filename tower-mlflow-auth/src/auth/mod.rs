//! [`AuthLayer`]: authenticate every request before it reaches the inner service.
//!
//! For each request the middleware
//!
//! 1. lets [exempt](crate::Exemptions) requests through untouched (they carry no principal);
//! 2. extracts credentials with [`Authenticator::credentials`](crate::Authenticator::credentials)
//!    — none or malformed gives 401 at once, without calling the authenticator;
//! 3. verifies them with [`Authenticator::authenticate`](crate::Authenticator::authenticate);
//! 4. on success inserts the [`Authorization`](crate::Authorization) principal into the request
//!    extensions, records its subject on the `auth` tracing span, and calls the inner service;
//!    otherwise answers 401 (rejected) or 503 (backend failure, logged) — as a trailers-only
//!    response for gRPC. See [`rejection`](crate::rejection).
//!
//! `poll_ready` forwards to the inner service, and `call` moves the service that was driven to
//! readiness into the response future (the clone-and-swap idiom), so layers such as
//! `ConcurrencyLimit` and `Buffer` work inside it. Because a rejected request still waits for
//! inner readiness, put concurrency limits and load shedding *inside* `AuthLayer`, so that
//! requests without valid credentials never hold their permits.
//!
//! ```
//! use std::convert::Infallible;
//! use http::{Request, Response, StatusCode, header};
//! use http_body_util::Full;
//! use bytes::Bytes;
//! use secrecy::ExposeSecret;
//! use tower::{ServiceBuilder, ServiceExt};
//! use tower_mlflow_auth::{AuthLayer, Authorization, Credentials, Exemptions, Scheme};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let authenticator = |credentials: Credentials| async move {
//!     Ok::<_, Infallible>(match credentials {
//!         Credentials::Bearer { token } if token.expose_secret() == "t0ken" => {
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
mod layer;
mod service;

pub use self::{future::ResponseFuture, layer::AuthLayer, layer::ConfigError, service::Auth};
