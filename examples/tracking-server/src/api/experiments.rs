//! `experiments/*`: create, get, get-by-name, search, set-experiment-tag.

use std::collections::HashMap;

use axum::{
    body::Bytes,
    extract::{RawQuery, State},
    response::Response,
};
use serde::Deserialize;
use serde_json::json;

use super::{
    ApiResult, KeyValueIn, json_response, key_values,
    lenient::{lenient_i64, lenient_string},
    parse_body, parse_query, required,
    search::{MAX_EXPERIMENTS_PAGE, page_size, paged, paginate, refuse_filter},
};
use crate::{
    error::ApiError,
    store::{Experiment, Store, ViewType},
};

#[derive(Deserialize)]
struct CreateExperimentRequest {
    name: Option<String>,
    artifact_location: Option<String>,
    #[serde(default)]
    tags: Vec<KeyValueIn>,
}

pub(super) async fn create_experiment(State(store): State<Store>, body: Bytes) -> ApiResult {
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

pub(super) async fn get_experiment(
    State(store): State<Store>,
    RawQuery(query): RawQuery,
) -> ApiResult {
    let query: GetExperimentQuery = parse_query(query.as_deref())?;
    let id = required(query.experiment_id.as_deref(), "experiment_id")?;
    Ok(experiment_response(&store.experiment(id)?))
}

#[derive(Deserialize)]
struct GetExperimentByNameQuery {
    experiment_name: Option<String>,
}

pub(super) async fn get_experiment_by_name(
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

pub(super) async fn search_experiments_post(State(store): State<Store>, body: Bytes) -> ApiResult {
    search_experiments(&store, &parse_body(&body)?)
}

pub(super) async fn search_experiments_get(
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

pub(super) async fn set_experiment_tag(State(store): State<Store>, body: Bytes) -> ApiResult {
    let request: SetExperimentTagRequest = parse_body(&body)?;
    let id = required(request.experiment_id.as_deref(), "experiment_id")?;
    let key = required(request.key.as_deref(), "key")?;
    store.set_experiment_tag(id, key, request.value.as_deref().unwrap_or_default())?;
    Ok(json_response(&json!({})))
}
