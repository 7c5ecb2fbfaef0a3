//! axum extractors for the [`Authorization`] principal (feature `axum`).
//!
//! - `Authorization` on a route behind [`AuthLayer`](crate::AuthLayer) always succeeds. If it
//!   is missing, the layer is not installed around that route — a configuration error, so
//!   the answer is 500 with the text "is AuthLayer installed?", never a silent 401.
//! - `Option<Authorization>` is `None` on exempt routes.
//!
//! ```
//! use axum::{Router, routing::get};
//! use tower_mlflow_auth::{AuthLayer, Authorization, Exemptions};
//! # let authenticator = |_c| async { Ok::<_, std::convert::Infallible>(None) };
//!
//! async fn whoami(who: Authorization) -> String {
//!     who.subject().to_owned()
//! }
//!
//! async fn health(who: Option<Authorization>) -> &'static str {
//!     if who.is_some() { "ok (authenticated)" } else { "ok" }
//! }
//!
//! let app: Router = Router::new()
//!     .route("/whoami", get(whoami))
//!     .route("/health", get(health))
//!     .layer(AuthLayer::new(authenticator).with_exemptions(Exemptions::new().exact("/health")?));
//! # Ok::<_, tower_mlflow_auth::ExemptionError>(())
//! ```

use std::{convert::Infallible, fmt};

use axum_core::{
    extract::{FromRequestParts, OptionalFromRequestParts},
    response::{IntoResponse, Response},
};
use http::{StatusCode, request::Parts};

use crate::authorization::Authorization;

impl<S: Send + Sync> FromRequestParts<S> for Authorization {
    type Rejection = MissingAuthorization;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Self>()
            .cloned()
            .ok_or(MissingAuthorization(()))
    }
}

impl<S: Send + Sync> OptionalFromRequestParts<S> for Authorization {
    type Rejection = Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        Ok(parts.extensions.get::<Self>().cloned())
    }
}

/// The [`Authorization`] extractor found no principal: the route is not behind
/// [`AuthLayer`](crate::AuthLayer), or is exempt. Answers 500.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MissingAuthorization(());

impl fmt::Display for MissingAuthorization {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad("no authenticated principal in the request extensions: is AuthLayer installed?")
    }
}

impl std::error::Error for MissingAuthorization {}

impl IntoResponse for MissingAuthorization {
    fn into_response(self) -> Response {
        (StatusCode::INTERNAL_SERVER_ERROR, self.to_string()).into_response()
    }
}
