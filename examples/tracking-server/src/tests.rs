//! In-process tests of the HTTP API through `AuthLayer`, with `oneshot`: one behaviour each.

use axum::{Router, body::Body};
use base64::Engine as _;
use http::{Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use secrecy::SecretString;
use serde_json::{Value, json};
use tower::ServiceExt;

use crate::{Store, app, users::StaticUsers};

const ALICE: (&str, &str) = ("alice", "alice-pw");
const BOB: (&str, &str) = ("bob", "bob-pw");

fn test_app() -> (Router, Store) {
    let users = StaticUsers::new()
        .with_user(ALICE.0, &SecretString::from(ALICE.1))
        .with_user(BOB.0, &SecretString::from(BOB.1));
    let store = Store::new();
    (app(users, store.clone()), store)
}

fn basic((user, password): (&str, &str)) -> String {
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Basic {encoded}")
}

/// Sends a request as `who` (or anonymously) and returns the status and the JSON body
/// (`Value::Null` if the body is not JSON).
async fn send(
    app: &Router,
    method: Method,
    uri: &str,
    body: Option<Value>,
    who: Option<(&str, &str)>,
) -> (StatusCode, Value) {
    let mut request = Request::builder().method(method).uri(uri);
    if let Some(who) = who {
        request = request.header(header::AUTHORIZATION, basic(who));
    }
    let body = body.map_or_else(Body::empty, |b| Body::from(b.to_string()));
    let response = app
        .clone()
        .oneshot(request.body(body).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

async fn post(app: &Router, path: &str, body: Value) -> (StatusCode, Value) {
    send(
        app,
        Method::POST,
        &format!("/api/2.0/mlflow/{path}"),
        Some(body),
        Some(ALICE),
    )
    .await
}

async fn get(app: &Router, path_and_query: &str) -> (StatusCode, Value) {
    send(
        app,
        Method::GET,
        &format!("/api/2.0/mlflow/{path_and_query}"),
        None,
        Some(ALICE),
    )
    .await
}

async fn create_run(app: &Router) -> String {
    let (status, body) = post(app, "runs/create", json!({"experiment_id": "0"})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["run"]["info"]["run_id"].as_str().unwrap().to_owned()
}

fn assert_error((actual_status, body): (StatusCode, Value), status: StatusCode, code: &str) {
    assert_eq!(actual_status, status, "{body}");
    assert_eq!(body["error_code"], code, "{body}");
    assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()));
}

// ----- authentication --------------------------------------------------------------------

#[tokio::test]
async fn no_credentials_is_401_with_challenge() {
    let (app, _) = test_app();
    let request = Request::get("/api/2.0/mlflow/experiments/get?experiment_id=0")
        .body(Body::empty())
        .unwrap();
    let response = app.oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(response.headers().contains_key(header::WWW_AUTHENTICATE));
}

#[tokio::test]
async fn wrong_password_is_401_and_creates_nothing() {
    let (app, store) = test_app();
    let (status, _) = send(
        &app,
        Method::POST,
        "/api/2.0/mlflow/runs/create",
        Some(json!({"experiment_id": "0"})),
        Some((ALICE.0, "wrong")),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(store.runs(&["0".to_owned()], Default::default()).is_empty());
}

#[tokio::test]
async fn health_needs_no_credentials() {
    let (app, _) = test_app();
    let response = app
        .oneshot(Request::get("/health").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

// ----- experiments -----------------------------------------------------------------------

#[tokio::test]
async fn default_experiment_exists_at_startup() {
    let (app, _) = test_app();
    let (status, body) = get(&app, "experiments/get?experiment_id=0").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["experiment"]["name"], "Default");
    assert_eq!(body["experiment"]["lifecycle_stage"], "active");
}

#[tokio::test]
async fn create_experiment_returns_its_id() {
    let (app, _) = test_app();
    let (status, body) = post(&app, "experiments/create", json!({"name": "exp"})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!({"experiment_id": "1"}));
}

#[tokio::test]
async fn create_experiment_twice_is_already_exists() {
    let (app, _) = test_app();
    post(&app, "experiments/create", json!({"name": "exp"})).await;
    let second = post(&app, "experiments/create", json!({"name": "exp"})).await;
    assert_error(second, StatusCode::BAD_REQUEST, "RESOURCE_ALREADY_EXISTS");
}

#[tokio::test]
async fn create_experiment_without_name_is_invalid() {
    let (app, _) = test_app();
    let response = post(&app, "experiments/create", json!({})).await;
    assert_error(response, StatusCode::BAD_REQUEST, "INVALID_PARAMETER_VALUE");
}

#[tokio::test]
async fn malformed_json_is_invalid() {
    let (app, _) = test_app();
    let response = send(
        &app,
        Method::POST,
        "/api/2.0/mlflow/experiments/create",
        None,
        Some(ALICE),
    )
    .await;
    // An empty body is `{}`: the missing name is reported.
    assert_error(response, StatusCode::BAD_REQUEST, "INVALID_PARAMETER_VALUE");
    let request = Request::post("/api/2.0/mlflow/experiments/create")
        .header(header::AUTHORIZATION, basic(ALICE))
        .body(Body::from("{not json"))
        .unwrap();
    let response = app.oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn get_experiment_keeps_tags_and_artifact_location() {
    let (app, _) = test_app();
    let body = json!({"name": "exp", "artifact_location": "s3://b/x", "tags": [{"key": "k", "value": "v"}]});
    post(&app, "experiments/create", body).await;
    let (_, body) = get(&app, "experiments/get?experiment_id=1").await;
    assert_eq!(body["experiment"]["artifact_location"], "s3://b/x");
    assert_eq!(
        body["experiment"]["tags"],
        json!([{"key": "k", "value": "v"}])
    );
}

#[tokio::test]
async fn get_unknown_experiment_is_404() {
    let (app, _) = test_app();
    let response = get(&app, "experiments/get?experiment_id=42").await;
    assert_error(response, StatusCode::NOT_FOUND, "RESOURCE_DOES_NOT_EXIST");
}

#[tokio::test]
async fn get_experiment_by_name_finds_it() {
    let (app, _) = test_app();
    post(&app, "experiments/create", json!({"name": "my exp"})).await;
    let (status, body) = get(&app, "experiments/get-by-name?experiment_name=my%20exp").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["experiment"]["experiment_id"], "1");
}

#[tokio::test]
async fn get_experiment_by_unknown_name_is_404() {
    let (app, _) = test_app();
    let response = get(&app, "experiments/get-by-name?experiment_name=nope").await;
    assert_error(response, StatusCode::NOT_FOUND, "RESOURCE_DOES_NOT_EXIST");
}

#[tokio::test]
async fn search_experiments_pages_through_all() {
    let (app, _) = test_app();
    post(&app, "experiments/create", json!({"name": "a"})).await;
    post(&app, "experiments/create", json!({"name": "b"})).await;
    let (_, first) = post(&app, "experiments/search", json!({"max_results": 2})).await;
    let names: Vec<&str> = first["experiments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Default", "a"]);
    let token = first["next_page_token"].as_str().unwrap();
    let (_, second) = post(
        &app,
        "experiments/search",
        json!({"max_results": 2, "page_token": token}),
    )
    .await;
    assert_eq!(second["experiments"][0]["name"], "b");
    assert!(second.get("next_page_token").is_none());
}

#[tokio::test]
async fn search_experiments_by_get_reads_the_query() {
    let (app, _) = test_app();
    let (status, body) = get(
        &app,
        "experiments/search?max_results=1&view_type=ACTIVE_ONLY",
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["experiments"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn search_experiments_with_filter_is_refused() {
    let (app, _) = test_app();
    let response = post(&app, "experiments/search", json!({"filter": "name = 'a'"})).await;
    assert_error(response, StatusCode::BAD_REQUEST, "INVALID_PARAMETER_VALUE");
}

#[tokio::test]
async fn set_experiment_tag_shows_in_the_experiment() {
    let (app, _) = test_app();
    let body = json!({"experiment_id": "0", "key": "owner", "value": "ml-team"});
    assert_eq!(
        post(&app, "experiments/set-experiment-tag", body).await.0,
        StatusCode::OK
    );
    let (_, body) = get(&app, "experiments/get?experiment_id=0").await;
    assert_eq!(
        body["experiment"]["tags"],
        json!([{"key": "owner", "value": "ml-team"}])
    );
    let unknown = json!({"experiment_id": "9", "key": "owner", "value": "x"});
    let response = post(&app, "experiments/set-experiment-tag", unknown).await;
    assert_error(response, StatusCode::NOT_FOUND, "RESOURCE_DOES_NOT_EXIST");
}

// ----- runs ------------------------------------------------------------------------------

#[tokio::test]
async fn run_user_id_is_the_authenticated_principal() {
    let (app, store) = test_app();
    let body = json!({
        "experiment_id": "0",
        "user_id": "mallory",
        "tags": [{"key": "mlflow.user", "value": "mallory"}],
    });
    let (status, body) = send(
        &app,
        Method::POST,
        "/api/2.0/mlflow/runs/create",
        Some(body),
        Some(BOB),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["run"]["info"]["user_id"], "bob");
    let run_id = body["run"]["info"]["run_id"].as_str().unwrap();
    let stored = store.run(run_id).unwrap();
    assert_eq!(stored.info.user_id, "bob");
    assert_eq!(stored.data.tag("mlflow.user"), Some("bob"));
}

#[tokio::test]
async fn create_run_answers_mlflow_shape() {
    let (app, _) = test_app();
    let body = json!({"experiment_id": "0", "start_time": 1234, "run_name": "r1"});
    let (_, body) = post(&app, "runs/create", body).await;
    let info = &body["run"]["info"];
    assert_eq!(info["run_id"], info["run_uuid"]);
    assert_eq!(info["run_name"], "r1");
    assert_eq!(info["status"], "RUNNING");
    assert_eq!(info["start_time"], 1234);
    assert_eq!(info["lifecycle_stage"], "active");
    assert!(info.get("end_time").is_none());
    assert!(body["run"]["data"]["params"].as_array().unwrap().is_empty());
}

#[tokio::test]
async fn create_run_accepts_int64_as_string() {
    let (app, _) = test_app();
    let (status, body) = post(
        &app,
        "runs/create",
        json!({"experiment_id": "0", "start_time": "99"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["run"]["info"]["start_time"], 99);
}

#[tokio::test]
async fn create_run_in_unknown_experiment_is_404() {
    let (app, _) = test_app();
    let response = post(&app, "runs/create", json!({"experiment_id": "7"})).await;
    assert_error(response, StatusCode::NOT_FOUND, "RESOURCE_DOES_NOT_EXIST");
}

#[tokio::test]
async fn get_run_by_run_uuid_works_too() {
    let (app, _) = test_app();
    let run_id = create_run(&app).await;
    let (status, body) = get(&app, &format!("runs/get?run_uuid={run_id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["run"]["info"]["run_id"], run_id);
}

#[tokio::test]
async fn get_unknown_run_is_404() {
    let (app, _) = test_app();
    let response = get(&app, "runs/get?run_id=0123456789abcdef0123456789abcdef").await;
    assert_error(response, StatusCode::NOT_FOUND, "RESOURCE_DOES_NOT_EXIST");
}

#[tokio::test]
async fn get_run_without_id_is_invalid() {
    let (app, _) = test_app();
    let response = get(&app, "runs/get").await;
    assert_error(response, StatusCode::BAD_REQUEST, "INVALID_PARAMETER_VALUE");
}

#[tokio::test]
async fn update_run_finishes_it() {
    let (app, _) = test_app();
    let run_id = create_run(&app).await;
    let body = json!({"run_id": run_id, "status": "FINISHED", "end_time": 5000});
    let (status, body) = post(&app, "runs/update", body).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["run_info"]["status"], "FINISHED");
    assert_eq!(body["run_info"]["end_time"], 5000);
}

#[tokio::test]
async fn update_run_with_unknown_status_is_invalid() {
    let (app, _) = test_app();
    let run_id = create_run(&app).await;
    let response = post(
        &app,
        "runs/update",
        json!({"run_id": run_id, "status": "DONE"}),
    )
    .await;
    assert_error(response, StatusCode::BAD_REQUEST, "INVALID_PARAMETER_VALUE");
}

#[tokio::test]
async fn log_metric_shows_in_run_data() {
    let (app, _) = test_app();
    let run_id = create_run(&app).await;
    let body = json!({"run_id": run_id, "key": "loss", "value": 0.5, "timestamp": 10, "step": 3});
    assert_eq!(post(&app, "runs/log-metric", body).await.0, StatusCode::OK);
    let (_, body) = get(&app, &format!("runs/get?run_id={run_id}")).await;
    assert_eq!(
        body["run"]["data"]["metrics"],
        json!([{"key": "loss", "value": 0.5, "timestamp": 10, "step": 3}])
    );
}

#[tokio::test]
async fn log_metric_accepts_nan() {
    let (app, _) = test_app();
    let run_id = create_run(&app).await;
    let body = json!({"run_id": run_id, "key": "loss", "value": "NaN", "timestamp": 10});
    assert_eq!(post(&app, "runs/log-metric", body).await.0, StatusCode::OK);
    let (_, body) = get(
        &app,
        &format!("metrics/get-history?run_id={run_id}&metric_key=loss"),
    )
    .await;
    assert_eq!(body["metrics"][0]["value"], "NaN");
}

#[tokio::test]
async fn log_metric_without_timestamp_is_invalid() {
    let (app, _) = test_app();
    let run_id = create_run(&app).await;
    let response = post(
        &app,
        "runs/log-metric",
        json!({"run_id": run_id, "key": "loss", "value": 1}),
    )
    .await;
    assert_error(response, StatusCode::BAD_REQUEST, "INVALID_PARAMETER_VALUE");
}

#[tokio::test]
async fn log_parameter_shows_in_run_data() {
    let (app, _) = test_app();
    let run_id = create_run(&app).await;
    let body = json!({"run_id": run_id, "key": "lr", "value": "0.1"});
    assert_eq!(
        post(&app, "runs/log-parameter", body).await.0,
        StatusCode::OK
    );
    let (_, body) = get(&app, &format!("runs/get?run_id={run_id}")).await;
    assert_eq!(
        body["run"]["data"]["params"],
        json!([{"key": "lr", "value": "0.1"}])
    );
}

#[tokio::test]
async fn changing_a_parameter_is_invalid() {
    let (app, _) = test_app();
    let run_id = create_run(&app).await;
    post(
        &app,
        "runs/log-parameter",
        json!({"run_id": run_id, "key": "lr", "value": "0.1"}),
    )
    .await;
    let response = post(
        &app,
        "runs/log-parameter",
        json!({"run_id": run_id, "key": "lr", "value": "0.2"}),
    )
    .await;
    assert_error(response, StatusCode::BAD_REQUEST, "INVALID_PARAMETER_VALUE");
}

#[tokio::test]
async fn log_parameter_to_unknown_run_is_404() {
    let (app, _) = test_app();
    let body = json!({"run_id": "ffffffffffffffffffffffffffffffff", "key": "lr", "value": "0.1"});
    let response = post(&app, "runs/log-parameter", body).await;
    assert_error(response, StatusCode::NOT_FOUND, "RESOURCE_DOES_NOT_EXIST");
}

#[tokio::test]
async fn set_tag_shows_in_run_data() {
    let (app, store) = test_app();
    let run_id = create_run(&app).await;
    let body = json!({"run_id": run_id, "key": "team", "value": "vision"});
    assert_eq!(post(&app, "runs/set-tag", body).await.0, StatusCode::OK);
    assert_eq!(store.run(&run_id).unwrap().data.tag("team"), Some("vision"));
}

#[tokio::test]
async fn set_tag_cannot_change_mlflow_user() {
    let (app, store) = test_app();
    let run_id = create_run(&app).await;
    let body = json!({"run_id": run_id, "key": "mlflow.user", "value": "mallory"});
    let response = post(&app, "runs/set-tag", body).await;
    assert_error(response, StatusCode::BAD_REQUEST, "INVALID_PARAMETER_VALUE");
    assert_eq!(
        store.run(&run_id).unwrap().data.tag("mlflow.user"),
        Some("alice")
    );
}

#[tokio::test]
async fn set_tag_with_bad_key_is_invalid() {
    let (app, _) = test_app();
    let run_id = create_run(&app).await;
    let response = post(
        &app,
        "runs/set-tag",
        json!({"run_id": run_id, "key": "../x", "value": "v"}),
    )
    .await;
    assert_error(response, StatusCode::BAD_REQUEST, "INVALID_PARAMETER_VALUE");
}

#[tokio::test]
async fn log_batch_logs_everything() {
    let (app, store) = test_app();
    let run_id = create_run(&app).await;
    let body = json!({
        "run_id": run_id,
        "metrics": [{"key": "acc", "value": 0.9, "timestamp": 1, "step": 0}],
        "params": [{"key": "epochs", "value": "3"}],
        "tags": [{"key": "team", "value": "vision"}],
    });
    assert_eq!(post(&app, "runs/log-batch", body).await.0, StatusCode::OK);
    let run = store.run(&run_id).unwrap();
    assert_eq!(run.data.metric("acc"), Some(0.9));
    assert_eq!(run.data.param("epochs"), Some("3"));
    assert_eq!(run.data.tag("team"), Some("vision"));
}

#[tokio::test]
async fn log_batch_with_one_bad_entry_logs_nothing() {
    let (app, store) = test_app();
    let run_id = create_run(&app).await;
    let body = json!({
        "run_id": run_id,
        "params": [{"key": "ok", "value": "1"}],
        "tags": [{"key": "/bad", "value": "v"}],
    });
    let response = post(&app, "runs/log-batch", body).await;
    assert_error(response, StatusCode::BAD_REQUEST, "INVALID_PARAMETER_VALUE");
    assert!(store.run(&run_id).unwrap().data.params.is_empty());
}

#[tokio::test]
async fn search_runs_returns_the_experiments_runs() {
    let (app, _) = test_app();
    let run_id = create_run(&app).await;
    post(&app, "experiments/create", json!({"name": "other"})).await;
    post(&app, "runs/create", json!({"experiment_id": "1"})).await;
    let (status, body) = post(&app, "runs/search", json!({"experiment_ids": ["0"]})).await;
    assert_eq!(status, StatusCode::OK);
    let runs = body["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0]["info"]["run_id"], run_id);
}

#[tokio::test]
async fn search_runs_with_filter_is_refused() {
    let (app, _) = test_app();
    let body = json!({"experiment_ids": ["0"], "filter": "params.lr = '0.1'"});
    let response = post(&app, "runs/search", body).await;
    assert_error(response, StatusCode::BAD_REQUEST, "INVALID_PARAMETER_VALUE");
}

// ----- routing ---------------------------------------------------------------------------

#[tokio::test]
async fn ajax_api_prefix_serves_the_same_routes() {
    let (app, _) = test_app();
    let (status, body) = send(
        &app,
        Method::GET,
        "/ajax-api/2.0/mlflow/experiments/get?experiment_id=0",
        None,
        Some(ALICE),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["experiment"]["name"], "Default");
}

#[tokio::test]
async fn unknown_endpoint_is_endpoint_not_found() {
    let (app, _) = test_app();
    let response = get(&app, "logged-models/abc").await;
    assert_error(response, StatusCode::NOT_FOUND, "ENDPOINT_NOT_FOUND");
}

#[tokio::test]
async fn router_without_auth_layer_refuses_to_create_runs() {
    let app = crate::router(Store::new());
    let request = Request::post("/api/2.0/mlflow/runs/create")
        .body(Body::from(r#"{"experiment_id": "0"}"#))
        .unwrap();
    let response = app.oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
}
