//! The REST handlers: MLflow's request and response JSON, mapped onto the [`Store`].
//!
//! Request bodies are read leniently, as MLflow's own server does: unknown fields are
//! ignored, 64-bit integers may be JSON numbers or strings (protobuf's JSON mapping), and
//! metric values may be `"NaN"`, `"Infinity"` or `"-Infinity"`. A body that is not JSON, or
//! a field of the wrong type, is `INVALID_PARAMETER_VALUE`.

mod experiments;
mod lenient;
mod runs;
mod search;

use axum::{
    Json, Router,
    body::Bytes,
    extract::Query,
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde::{Deserialize, de::DeserializeOwned};

use self::{
    experiments::{
        create_experiment, get_experiment, get_experiment_by_name, search_experiments_get,
        search_experiments_post, set_experiment_tag,
    },
    runs::{
        create_run, get_metric_history, get_run, log_batch, log_metric, log_param, search_runs,
        set_tag, update_run,
    },
};
use crate::{
    error::{ApiError, ErrorCode},
    store::{Store, Tag},
};

type ApiResult = Result<Response, ApiError>;

/// The MLflow routes, relative to `/api/2.0/mlflow` (and `/ajax-api/2.0/mlflow`).
pub(crate) fn mlflow_routes() -> Router<Store> {
    Router::new()
        .route("/experiments/create", post(create_experiment))
        .route("/experiments/get", get(get_experiment))
        .route("/experiments/get-by-name", get(get_experiment_by_name))
        .route(
            "/experiments/search",
            post(search_experiments_post).get(search_experiments_get),
        )
        .route("/experiments/set-experiment-tag", post(set_experiment_tag))
        .route("/runs/create", post(create_run))
        .route("/runs/get", get(get_run))
        .route("/runs/update", post(update_run))
        .route("/runs/log-batch", post(log_batch))
        .route("/runs/log-metric", post(log_metric))
        .route("/runs/log-parameter", post(log_param))
        .route("/runs/set-tag", post(set_tag))
        .route("/runs/search", post(search_runs))
        .route("/metrics/get-history", get(get_metric_history))
}

/// Parses a JSON body; an empty body is `{}` (MLflow's client sends none for some calls).
fn parse_body<T: DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    let body: &[u8] = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        body
    };
    serde_json::from_slice(body)
        .map_err(|e| ApiError::invalid(format!("Malformed request body: {e}")))
}

/// Parses a query string into `T`.
fn parse_query<T: DeserializeOwned>(query: Option<&str>) -> Result<T, ApiError> {
    let uri: http::Uri = format!("/?{}", query.unwrap_or_default())
        .parse()
        .map_err(|_| ApiError::invalid("Malformed query string."))?;
    Query::<T>::try_from_uri(&uri)
        .map(|Query(q)| q)
        .map_err(|e| ApiError::invalid(format!("Malformed query string: {}", e.body_text())))
}

fn json_response(value: &impl serde::Serialize) -> Response {
    Json(value).into_response()
}

fn required<'a>(value: Option<&'a str>, field: &str) -> Result<&'a str, ApiError> {
    value
        .filter(|v| !v.is_empty())
        .ok_or_else(|| ApiError::missing(field))
}

/// `run_id`, or the deprecated `run_uuid`.
fn run_id_of<'a>(run_id: Option<&'a str>, run_uuid: Option<&'a str>) -> Result<&'a str, ApiError> {
    required(run_id.filter(|v| !v.is_empty()).or(run_uuid), "run_id")
}

#[derive(Deserialize)]
struct KeyValueIn {
    key: Option<String>,
    #[serde(default)]
    value: Option<String>,
}

fn key_values(entries: Vec<KeyValueIn>, what: &str) -> Result<Vec<Tag>, ApiError> {
    entries
        .into_iter()
        .map(|kv| {
            let key = kv
                .key
                .ok_or_else(|| ApiError::missing(&format!("{what}.key")))?;
            Ok(Tag::new(key, kv.value.unwrap_or_default()))
        })
        .collect()
}

/// Any other path: MLflow's `ENDPOINT_NOT_FOUND`.
pub(crate) async fn endpoint_not_found(uri: http::Uri) -> ApiError {
    ApiError::new(
        ErrorCode::EndpointNotFound,
        format!("No endpoint {} on this server.", uri.path()),
    )
}
