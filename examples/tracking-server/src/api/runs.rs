//! `runs/*` and `metrics/get-history`: create, get, update, log, search.

use axum::{
    body::Bytes,
    extract::{RawQuery, State},
    response::Response,
};
use serde::Deserialize;
use serde_json::json;
use tower_mlflow_auth::Authorization;

use super::{
    ApiResult, KeyValueIn, json_response, key_values,
    lenient::{lenient_f64, lenient_i64, lenient_string},
    parse_body, parse_query, required, run_id_of,
    search::{DEFAULT_RUNS_PAGE, MAX_RUNS_PAGE, page_size, paged, paginate, refuse_filter},
};
use crate::{
    error::ApiError,
    store::{Metric, NewRun, Run, RunStatus, Store, Tag, ViewType},
};

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

pub(super) async fn create_run(
    State(store): State<Store>,
    who: Authorization,
    body: Bytes,
) -> ApiResult {
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

pub(super) async fn get_run(State(store): State<Store>, RawQuery(query): RawQuery) -> ApiResult {
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

pub(super) async fn update_run(State(store): State<Store>, body: Bytes) -> ApiResult {
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

pub(super) async fn log_batch(State(store): State<Store>, body: Bytes) -> ApiResult {
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

pub(super) async fn log_metric(State(store): State<Store>, body: Bytes) -> ApiResult {
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

pub(super) async fn log_param(State(store): State<Store>, body: Bytes) -> ApiResult {
    let request: KeyValueRequest = parse_body(&body)?;
    let (run_id, param) = request.split()?;
    store.log_batch(run_id, Vec::new(), vec![param], Vec::new())?;
    Ok(json_response(&json!({})))
}

pub(super) async fn set_tag(State(store): State<Store>, body: Bytes) -> ApiResult {
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
pub(super) async fn search_runs(State(store): State<Store>, body: Bytes) -> ApiResult {
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
pub(super) async fn get_metric_history(
    State(store): State<Store>,
    RawQuery(query): RawQuery,
) -> ApiResult {
    let query: MetricHistoryQuery = parse_query(query.as_deref())?;
    let run_id = run_id_of(query.run_id.as_deref(), query.run_uuid.as_deref())?;
    let key = required(query.metric_key.as_deref(), "metric_key")?;
    let metrics = store.metric_history(run_id, key)?;
    Ok(json_response(&json!({ "metrics": metrics })))
}
