//! An in-memory, MLflow-compatible tracking server behind [`AuthLayer`].
//!
//! It answers enough of MLflow's REST API for the MLflow Python client's `set_experiment`,
//! `start_run`, `log_param`, `log_metric`, `set_tag`, `end_run` and
//! `MlflowClient().get_run(...)`, under both `/api/2.0/mlflow/...` and
//! `/ajax-api/2.0/mlflow/...`:
//!
//! | endpoint | method |
//! |---|---|
//! | `experiments/create`, `experiments/set-experiment-tag` | POST |
//! | `experiments/get`, `experiments/get-by-name` | GET |
//! | `experiments/search` | POST (or GET with a query string) |
//! | `runs/create`, `runs/update`, `runs/log-batch`, `runs/log-metric`, `runs/log-parameter`, `runs/set-tag`, `runs/search` | POST |
//! | `runs/get`, `metrics/get-history` | GET |
//!
//! Bodies and errors follow MLflow: `{"experiment": {...}}`, `{"run": {"info": {...},
//! "data": {...}}}`, and `{"error_code": "RESOURCE_DOES_NOT_EXIST", "message": ...}` with
//! 404, `RESOURCE_ALREADY_EXISTS` / `INVALID_PARAMETER_VALUE` with 400, `ENDPOINT_NOT_FOUND`
//! with 404 for anything else (artifacts, traces, logged models, the model registry).
//! `/health` answers `OK` without credentials, as MLflow's does.
//!
//! # Who ran it
//!
//! A run's `user_id` is the subject of the authenticated
//! [`Authorization`](tower_mlflow_auth::Authorization) principal. The `user_id` field that MLflow's client sends (its `MLFLOW_TRACKING_USERNAME` or the local
//! login name) is ignored, and the `mlflow.user` tag — what MLflow's UI shows as the run's
//! user — is set by the server to the same principal: a client-sent `mlflow.user` tag is
//! replaced at `runs/create`, and setting it to anything else later is refused with
//! `INVALID_PARAMETER_VALUE`. Any authenticated user may read and write any experiment or
//! run; this example does not implement MLflow's per-experiment permissions.
//!
//! # Searches
//!
//! `experiments/search` and `runs/search` page with `max_results` and `page_token` but do
//! not evaluate `filter` (or, for runs, `order_by`): a request with one is refused with
//! `INVALID_PARAMETER_VALUE` rather than answered unfiltered. Experiments come by ascending
//! id, runs newest first.
//!
//! ```
//! use axum::body::Body;
//! use http::{Request, StatusCode, header};
//! use secrecy::SecretString;
//! use tower::ServiceExt;
//! use tracking_server::{Store, app, users::StaticUsers};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let users = StaticUsers::new().with_user("alice", &SecretString::from("s3cr3t"));
//! let store = Store::new();
//! let app = app(users, store.clone());
//!
//! let request = Request::post("/api/2.0/mlflow/runs/create")
//!     .header(header::AUTHORIZATION, "Basic YWxpY2U6czNjcjN0") // alice:s3cr3t
//!     .body(Body::from(r#"{"experiment_id": "0", "user_id": "someone-else"}"#))?;
//! let response = app.clone().oneshot(request).await?;
//! assert_eq!(response.status(), StatusCode::OK);
//! let runs = store.runs(&["0".to_owned()], Default::default());
//! assert_eq!(runs[0].info.user_id, "alice");
//!
//! let anonymous = Request::get("/api/2.0/mlflow/experiments/get?experiment_id=0").body(Body::empty())?;
//! assert_eq!(app.oneshot(anonymous).await?.status(), StatusCode::UNAUTHORIZED);
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]
// Library code reports failures to its caller instead of panicking or printing; tests
// may unwrap (clippy.toml) and print.
#![warn(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![cfg_attr(not(test), warn(clippy::print_stdout))]
#![cfg_attr(not(test), warn(clippy::print_stderr))]

mod api;
pub mod error;
pub mod store;
pub mod users;

use axum::{
    Router,
    extract::Request,
    middleware::{self, Next},
    response::Response,
    routing::get,
};
use tower_mlflow_auth::{AuthLayer, Authenticator, Exemptions, MlflowRejectionResponse};

#[doc(inline)]
pub use self::{
    error::{ApiError, ErrorCode},
    store::Store,
};

/// The tracking API over `store`, behind [`AuthLayer`] with `authenticator` and MLflow's
/// default exemptions (`/health` and friends stay open).
pub fn app<A: Authenticator>(authenticator: A, store: Store) -> Router {
    let layer = AuthLayer::new(authenticator)
        .with_exemptions(Exemptions::mlflow_defaults())
        .with_rejection_response(MlflowRejectionResponse);
    // The log line sits outside the auth layer so that refused requests are logged too.
    router(store)
        .layer(layer)
        .layer(middleware::from_fn(log_request))
}

/// The tracking API over `store` without authentication, for mounting under your own
/// [`AuthLayer`] (around the whole router, so that it sees full paths). Handlers that need
/// the principal answer 500 if no layer put one in the request.
pub fn router(store: Store) -> Router {
    let mlflow = api::mlflow_routes();
    Router::new()
        .nest("/api/2.0/mlflow", mlflow.clone())
        .nest("/ajax-api/2.0/mlflow", mlflow)
        .route("/health", get(|| async { "OK" }))
        .fallback(api::endpoint_not_found)
        .with_state(store)
}

/// One INFO line per request: method, path and status (never headers or bodies).
async fn log_request(request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let response = next.run(request).await;
    tracing::info!(%method, %path, status = response.status().as_u16(), "request");
    response
}

#[cfg(test)]
mod tests;
