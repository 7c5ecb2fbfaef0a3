//! The REST handlers: MLflow's request and response JSON, mapped onto the [`Store`].
//!
//! Request bodies are read leniently, as MLflow's own server does: unknown fields are
//! ignored, 64-bit integers may be JSON numbers or strings (protobuf's JSON mapping), and
//! metric values may be `"NaN"`, `"Infinity"` or `"-Infinity"`. A body that is not JSON, or
//! a field of the wrong type, is `INVALID_PARAMETER_VALUE`.

use std::collections::HashMap;

use axum::{
    Json, Router,
    body::Bytes,
    extract::{Query, RawQuery, State},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde::{Deserialize, Deserializer, de::DeserializeOwned};
use serde_json::{Value, json};
use tower_mlflow_auth::Authorization;

use crate::{
    error::{ApiError, ErrorCode},
    store::{Experiment, Metric, NewRun, Run, RunStatus, Store, Tag, ViewType},
};

/// Largest page a search returns; MLflow's own limits.
const MAX_EXPERIMENTS_PAGE: usize = 50_000;
const MAX_RUNS_PAGE: usize = 50_000;
const DEFAULT_RUNS_PAGE: usize = 1000;

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

// ----- experiments -----------------------------------------------------------------------

#[derive(Deserialize)]
struct CreateExperimentRequest {
    name: Option<String>,
    artifact_location: Option<String>,
    #[serde(default)]
    tags: Vec<KeyValueIn>,
}

async fn create_experiment(State(store): State<Store>, body: Bytes) -> ApiResult {
    let request: CreateExperimentRequest = parse_body(&body)?;
    let name = required(request.name.as_deref(), "name")?;
    let tags = key_values(request.tags, "tags")?;
    let experiment = store.create_experiment(name, request.artifact_location.as_deref(), tags)?;
    Ok(json_response(
        &json!({ "experiment_id": experiment.experiment_id }),
    ))
}

#[derive(Deserialize)]
struct GetExperimentQuery {
    experiment_id: Option<String>,
}

async fn get_experiment(State(store): State<Store>, RawQuery(query): RawQuery) -> ApiResult {
    let query: GetExperimentQuery = parse_query(query.as_deref())?;
    let id = required(query.experiment_id.as_deref(), "experiment_id")?;
    Ok(experiment_response(&store.experiment(id)?))
}

#[derive(Deserialize)]
struct GetExperimentByNameQuery {
    experiment_name: Option<String>,
}

async fn get_experiment_by_name(
    State(store): State<Store>,
    RawQuery(query): RawQuery,
) -> ApiResult {
    let query: GetExperimentByNameQuery = parse_query(query.as_deref())?;
    let name = required(query.experiment_name.as_deref(), "experiment_name")?;
    Ok(experiment_response(&store.experiment_by_name(name)?))
}

fn experiment_response(experiment: &Experiment) -> Response {
    json_response(&json!({ "experiment": experiment }))
}

#[derive(Deserialize, Default)]
struct SearchExperimentsRequest {
    #[serde(default, deserialize_with = "lenient_i64")]
    max_results: Option<i64>,
    filter: Option<String>,
    page_token: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    view_type: Option<String>,
}

async fn search_experiments_post(State(store): State<Store>, body: Bytes) -> ApiResult {
    search_experiments(&store, &parse_body(&body)?)
}

async fn search_experiments_get(
    State(store): State<Store>,
    RawQuery(query): RawQuery,
) -> ApiResult {
    // Query strings carry every value as text; the lenient parsers accept that.
    let fields: HashMap<String, String> = parse_query(query.as_deref())?;
    let value = serde_json::to_value(fields)
        .map_err(|e| ApiError::invalid(format!("Malformed query string: {e}")))?;
    let request = SearchExperimentsRequest::deserialize(value)
        .map_err(|e| ApiError::invalid(format!("Malformed query string: {e}")))?;
    search_experiments(&store, &request)
}

/// Searching experiments: every experiment in the view, by ascending id, paged. A filter
/// is refused rather than ignored, so that a client never takes an unfiltered list for a
/// filtered one.
fn search_experiments(store: &Store, request: &SearchExperimentsRequest) -> ApiResult {
    refuse_filter(request.filter.as_deref())?;
    let view = request
        .view_type
        .as_deref()
        .map_or(Ok(ViewType::default()), ViewType::parse)?;
    let page_size = page_size(request.max_results, 1000, MAX_EXPERIMENTS_PAGE)?;
    let (page, next) = paginate(
        store.experiments(view),
        request.page_token.as_deref(),
        page_size,
    )?;
    Ok(json_response(&paged("experiments", &page, next)))
}

#[derive(Deserialize)]
struct SetExperimentTagRequest {
    experiment_id: Option<String>,
    key: Option<String>,
    value: Option<String>,
}

async fn set_experiment_tag(State(store): State<Store>, body: Bytes) -> ApiResult {
    let request: SetExperimentTagRequest = parse_body(&body)?;
    let id = required(request.experiment_id.as_deref(), "experiment_id")?;
    let key = required(request.key.as_deref(), "key")?;
    store.set_experiment_tag(id, key, request.value.as_deref().unwrap_or_default())?;
    Ok(json_response(&json!({})))
}

// ----- runs ------------------------------------------------------------------------------

#[derive(Deserialize)]
struct CreateRunRequest {
    experiment_id: Option<String>,
    // `user_id` is deliberately not read: the run's user is the authenticated principal.
    #[serde(default, deserialize_with = "lenient_i64")]
    start_time: Option<i64>,
    run_name: Option<String>,
    #[serde(default)]
    tags: Vec<KeyValueIn>,
}

async fn create_run(State(store): State<Store>, who: Authorization, body: Bytes) -> ApiResult {
    let request: CreateRunRequest = parse_body(&body)?;
    let experiment_id = required(request.experiment_id.as_deref(), "experiment_id")?;
    let mut new = NewRun::new(experiment_id, who.subject());
    new.start_time = request.start_time;
    new.run_name = request.run_name;
    new.tags = key_values(request.tags, "tags")?;
    let run = store.create_run(new)?;
    Ok(run_response(&run))
}

fn run_response(run: &Run) -> Response {
    json_response(&json!({ "run": run }))
}

#[derive(Deserialize)]
struct RunIdQuery {
    run_id: Option<String>,
    run_uuid: Option<String>,
}

async fn get_run(State(store): State<Store>, RawQuery(query): RawQuery) -> ApiResult {
    let query: RunIdQuery = parse_query(query.as_deref())?;
    let run_id = run_id_of(query.run_id.as_deref(), query.run_uuid.as_deref())?;
    Ok(run_response(&store.run(run_id)?))
}

#[derive(Deserialize)]
struct UpdateRunRequest {
    run_id: Option<String>,
    run_uuid: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    status: Option<String>,
    #[serde(default, deserialize_with = "lenient_i64")]
    end_time: Option<i64>,
    run_name: Option<String>,
}

async fn update_run(State(store): State<Store>, body: Bytes) -> ApiResult {
    let request: UpdateRunRequest = parse_body(&body)?;
    let run_id = run_id_of(request.run_id.as_deref(), request.run_uuid.as_deref())?;
    let status = request
        .status
        .as_deref()
        .map(RunStatus::parse)
        .transpose()?;
    let info = store.update_run(
        run_id,
        status,
        request.end_time,
        request.run_name.as_deref(),
    )?;
    Ok(json_response(&json!({ "run_info": info })))
}

#[derive(Deserialize)]
struct MetricIn {
    key: Option<String>,
    #[serde(default, deserialize_with = "lenient_f64")]
    value: Option<f64>,
    #[serde(default, deserialize_with = "lenient_i64")]
    timestamp: Option<i64>,
    #[serde(default, deserialize_with = "lenient_i64")]
    step: Option<i64>,
}

impl MetricIn {
    fn into_metric(self, prefix: &str) -> Result<Metric, ApiError> {
        let key = self
            .key
            .ok_or_else(|| ApiError::missing(&format!("{prefix}key")))?;
        let value = self
            .value
            .ok_or_else(|| ApiError::missing(&format!("{prefix}value")))?;
        let timestamp = self
            .timestamp
            .ok_or_else(|| ApiError::missing(&format!("{prefix}timestamp")))?;
        Ok(Metric::new(key, value, timestamp, self.step.unwrap_or(0)))
    }
}

#[derive(Deserialize)]
struct LogBatchRequest {
    run_id: Option<String>,
    #[serde(default)]
    metrics: Vec<MetricIn>,
    #[serde(default)]
    params: Vec<KeyValueIn>,
    #[serde(default)]
    tags: Vec<KeyValueIn>,
}

async fn log_batch(State(store): State<Store>, body: Bytes) -> ApiResult {
    let request: LogBatchRequest = parse_body(&body)?;
    let run_id = required(request.run_id.as_deref(), "run_id")?;
    let metrics = request
        .metrics
        .into_iter()
        .map(|m| m.into_metric("metrics."))
        .collect::<Result<Vec<_>, _>>()?;
    let params = key_values(request.params, "params")?;
    let tags = key_values(request.tags, "tags")?;
    store.log_batch(run_id, metrics, params, tags)?;
    Ok(json_response(&json!({})))
}

#[derive(Deserialize)]
struct LogMetricRequest {
    run_id: Option<String>,
    run_uuid: Option<String>,
    #[serde(flatten)]
    metric: MetricIn,
}

async fn log_metric(State(store): State<Store>, body: Bytes) -> ApiResult {
    let request: LogMetricRequest = parse_body(&body)?;
    let run_id = run_id_of(request.run_id.as_deref(), request.run_uuid.as_deref())?;
    let metric = request.metric.into_metric("")?;
    store.log_batch(run_id, vec![metric], Vec::new(), Vec::new())?;
    Ok(json_response(&json!({})))
}

#[derive(Deserialize)]
struct KeyValueRequest {
    run_id: Option<String>,
    run_uuid: Option<String>,
    key: Option<String>,
    value: Option<String>,
}

impl KeyValueRequest {
    fn split(&self) -> Result<(&str, Tag), ApiError> {
        let run_id = run_id_of(self.run_id.as_deref(), self.run_uuid.as_deref())?;
        let key = required(self.key.as_deref(), "key")?;
        Ok((
            run_id,
            Tag::new(key, self.value.as_deref().unwrap_or_default()),
        ))
    }
}

async fn log_param(State(store): State<Store>, body: Bytes) -> ApiResult {
    let request: KeyValueRequest = parse_body(&body)?;
    let (run_id, param) = request.split()?;
    store.log_batch(run_id, Vec::new(), vec![param], Vec::new())?;
    Ok(json_response(&json!({})))
}

async fn set_tag(State(store): State<Store>, body: Bytes) -> ApiResult {
    let request: KeyValueRequest = parse_body(&body)?;
    let (run_id, tag) = request.split()?;
    store.log_batch(run_id, Vec::new(), Vec::new(), vec![tag])?;
    Ok(json_response(&json!({})))
}

#[derive(Deserialize)]
struct SearchRunsRequest {
    #[serde(default)]
    experiment_ids: Vec<String>,
    filter: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    run_view_type: Option<String>,
    #[serde(default, deserialize_with = "lenient_i64")]
    max_results: Option<i64>,
    #[serde(default)]
    order_by: Vec<String>,
    page_token: Option<String>,
}

/// A minimal run search: the runs of `experiment_ids`, newest first, paged. `filter` and
/// `order_by` are refused rather than ignored.
async fn search_runs(State(store): State<Store>, body: Bytes) -> ApiResult {
    let request: SearchRunsRequest = parse_body(&body)?;
    refuse_filter(request.filter.as_deref())?;
    if !request.order_by.is_empty() {
        return Err(ApiError::invalid(
            "order_by is not supported by this server; runs are returned newest first.",
        ));
    }
    let view = request
        .run_view_type
        .as_deref()
        .map_or(Ok(ViewType::default()), ViewType::parse)?;
    let page_size = page_size(request.max_results, DEFAULT_RUNS_PAGE, MAX_RUNS_PAGE)?;
    let runs = store.runs(&request.experiment_ids, view);
    let (page, next) = paginate(runs, request.page_token.as_deref(), page_size)?;
    Ok(json_response(&paged("runs", &page, next)))
}

#[derive(Deserialize)]
struct MetricHistoryQuery {
    run_id: Option<String>,
    run_uuid: Option<String>,
    metric_key: Option<String>,
}

/// The whole history in one page.
async fn get_metric_history(State(store): State<Store>, RawQuery(query): RawQuery) -> ApiResult {
    let query: MetricHistoryQuery = parse_query(query.as_deref())?;
    let run_id = run_id_of(query.run_id.as_deref(), query.run_uuid.as_deref())?;
    let key = required(query.metric_key.as_deref(), "metric_key")?;
    let metrics = store.metric_history(run_id, key)?;
    Ok(json_response(&json!({ "metrics": metrics })))
}

// ----- search helpers --------------------------------------------------------------------

fn refuse_filter(filter: Option<&str>) -> Result<(), ApiError> {
    match filter.map(str::trim) {
        None | Some("") => Ok(()),
        Some(_) => Err(ApiError::invalid(
            "Search filters are not supported by this server; search without a filter.",
        )),
    }
}

fn page_size(max_results: Option<i64>, default: usize, max: usize) -> Result<usize, ApiError> {
    match max_results {
        None => Ok(default),
        Some(n) => match usize::try_from(n) {
            Ok(n @ 1..) if n <= max => Ok(n),
            _ => Err(ApiError::invalid(format!(
                "Invalid value {n} for parameter 'max_results' supplied. It must be between 1 \
                 and {max}."
            ))),
        },
    }
}

/// One page of `items`. The page token is the decimal offset of the next page.
fn paginate<T>(
    items: Vec<T>,
    page_token: Option<&str>,
    page_size: usize,
) -> Result<(Vec<T>, Option<String>), ApiError> {
    let offset = match page_token.filter(|t| !t.is_empty()) {
        None => 0,
        Some(token) => token
            .parse::<usize>()
            .map_err(|_| ApiError::invalid(format!("Invalid page token {token:?}.")))?,
    };
    let total = items.len();
    let page: Vec<T> = items.into_iter().skip(offset).take(page_size).collect();
    let end = offset.saturating_add(page.len());
    let next = (end < total).then(|| end.to_string());
    Ok((page, next))
}

fn paged<T: serde::Serialize>(field: &str, page: &[T], next: Option<String>) -> Value {
    let mut body = serde_json::Map::new();
    body.insert(field.to_owned(), json!(page));
    if let Some(next) = next {
        body.insert("next_page_token".to_owned(), Value::String(next));
    }
    Value::Object(body)
}

// ----- lenient field parsers -------------------------------------------------------------

/// A 64-bit integer as a JSON number or a decimal string (protobuf's JSON mapping).
fn lenient_i64<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<i64>, D::Error> {
    use serde::de::Error;
    match Option::<Value>::deserialize(deserializer)? {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_i64()
            .map(Some)
            .ok_or_else(|| D::Error::custom(format!("{n} is not a 64-bit integer"))),
        Some(Value::String(s)) => s
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| D::Error::custom(format!("{s:?} is not a 64-bit integer"))),
        Some(other) => Err(D::Error::custom(format!("{other} is not a 64-bit integer"))),
    }
}

/// A double as a JSON number, a decimal string, or `"NaN"` / `"Infinity"` / `"-Infinity"`.
fn lenient_f64<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<f64>, D::Error> {
    use serde::de::Error;
    match Option::<Value>::deserialize(deserializer)? {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_f64()
            .map(Some)
            .ok_or_else(|| D::Error::custom(format!("{n} is not a number"))),
        Some(Value::String(s)) => match s.as_str() {
            "NaN" => Ok(Some(f64::NAN)),
            "Infinity" => Ok(Some(f64::INFINITY)),
            "-Infinity" => Ok(Some(f64::NEG_INFINITY)),
            other => other
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite())
                .map(Some)
                .ok_or_else(|| D::Error::custom(format!("{s:?} is not a number"))),
        },
        Some(other) => Err(D::Error::custom(format!("{other} is not a number"))),
    }
}

/// An enum given by name (`"FINISHED"`) or by protobuf number (`3`), as text.
fn lenient_string<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    use serde::de::Error;
    match Option::<Value>::deserialize(deserializer)? {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(other) => Err(D::Error::custom(format!("{other} is not a name or number"))),
    }
}

/// Any other path: MLflow's `ENDPOINT_NOT_FOUND`.
pub(crate) async fn endpoint_not_found(uri: http::Uri) -> ApiError {
    ApiError::new(
        ErrorCode::EndpointNotFound,
        format!("No endpoint {} on this server.", uri.path()),
    )
}
