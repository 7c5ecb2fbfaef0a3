//! [`OriginCheckLayer`]: refuse cross-site state-changing requests that carry browser
//! credentials (CSRF), at the edge and before authentication costs anything.
//!
//! A browser attaches cookies and the Basic (Digest, Negotiate, NTLM) credentials of an earlier
//! login dialog to any request a page makes, including a page of another site. For a
//! state-changing request — any method but GET, HEAD, OPTIONS and TRACE — that carries such
//! credentials (a `Cookie` header, or `Authorization` with one of those schemes), the
//! layer requires the request to come from one of the allowed origins:
//!
//! - `Origin`, when present, decides alone: an allowed origin passes, anything else is a 403
//!   (`null`, a foreign site, a malformed or repeated header). Origins are compared after
//!   normalisation: scheme and host case-insensitively, a trailing dot ignored, the default
//!   port made explicit (`https://a.test` = `HTTPS://A.test.:443`).
//! - Without `Origin`, `Referer` is checked the same way (its path ignored).
//! - Without either, `Sec-Fetch-Site: cross-site` or `same-site` is a 403; a request with no
//!   such header (the MLflow client, curl, scripts) passes.
//!
//! Requests that carry only `Authorization: Bearer` (or a custom header) are not checked: a
//! foreign page cannot make the browser add them. A refused request gets `403 Forbidden`
//! with a `text/plain` body and an [`OriginRejection`] in the response extensions; the inner
//! service is not called.
//!
//! An `Origin` that is allowed is removed before the request goes on, whether or not the
//! request carries credentials: it has been checked, and MLflow 3 refuses a state-changing
//! API call whose `Origin` is not `localhost` unless `MLFLOW_SERVER_CORS_ALLOWED_ORIGINS`
//! names it (`mlflow/server/security_utils.py`, `should_block_cors_request`). Without
//! `Origin` MLflow lets it through; rewriting it to the upstream's address would work only for
//! an upstream on loopback. `Referer` is kept: MLflow does not check it.
//!
//! Put the layer outside [`AuthLayer`](crate::AuthLayer), so that a forged request never
//! reaches a password hash.
//!
//! ```
//! use std::convert::Infallible;
//! use http::{Request, Response, StatusCode, header};
//! use tower::{ServiceBuilder, ServiceExt};
//! use tower_mlflow_auth::{OriginCheckLayer, OriginRejection, OriginRejectionKind};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let layer = OriginCheckLayer::builder()
//!     .allowed_origin("https://mlflow.example.com")
//!     .build()?;
//! let service = ServiceBuilder::new()
//!     .layer(layer)
//!     .service_fn(|request: Request<String>| async move {
//!         // The verified `Origin` does not reach the upstream.
//!         assert!(request.headers().get(header::ORIGIN).is_none());
//!         Ok::<_, Infallible>(Response::new(String::from("created")))
//!     });
//!
//! let post = |origin: &str| {
//!     Request::post("/ajax-api/2.0/mlflow/experiments/create")
//!         .header(header::ORIGIN, origin)
//!         .header(header::AUTHORIZATION, "Basic YWxpY2U6czNjcjN0")
//!         .body(String::new())
//! };
//! let response = service.clone().oneshot(post("https://mlflow.example.com")?).await?;
//! assert_eq!(response.status(), StatusCode::OK);
//!
//! let response = service.clone().oneshot(post("https://evil.example")?).await?;
//! assert_eq!(response.status(), StatusCode::FORBIDDEN);
//! let rejection = response.extensions().get::<OriginRejection>().unwrap();
//! assert_eq!(rejection.kind(), OriginRejectionKind::ForeignOrigin);
//!
//! // The MLflow client and curl send no `Origin`.
//! let client = Request::post("/api/2.0/mlflow/experiments/create")
//!     .header(header::AUTHORIZATION, "Basic YWxpY2U6czNjcjN0")
//!     .body(String::new())?;
//! assert_eq!(service.oneshot(client).await?.status(), StatusCode::OK);
//! # Ok(())
//! # }
//! ```
//!
//! # Deployment caveat
//!
//! The response body type must convert from `&'static str` (axum's `Body`, `Full<Bytes>`,
//! `String`). TLS client certificates are ambient too but invisible to this layer; behind
//! client-certificate authentication, check every state-changing request another way.

mod future;
mod layer;
mod parse;
mod rejection;
mod service;
#[cfg(test)]
mod tests;

pub use self::{
    future::ResponseFuture,
    layer::{OriginCheckBuildError, OriginCheckLayer, OriginCheckLayerBuilder},
    rejection::{OriginRejection, OriginRejectionKind},
    service::OriginCheck,
};
