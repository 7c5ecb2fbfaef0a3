use super::validate::MAX_BATCH_PARAMS;
use super::*;
use crate::error::ErrorCode;

fn store_with_run() -> (Store, String) {
    let store = Store::new();
    let run = store.create_run(NewRun::new("0", "alice")).unwrap();
    (store, run.info.run_id)
}

#[test]
fn default_experiment_exists() {
    let store = Store::new();
    assert_eq!(store.experiment("0").unwrap().name, "Default");
    assert_eq!(
        store.experiment_by_name("Default").unwrap().experiment_id,
        "0"
    );
}

#[test]
fn experiment_ids_count_up_from_one() {
    let store = Store::new();
    let a = store.create_experiment("a", None, Vec::new()).unwrap();
    let b = store
        .create_experiment("b", Some("s3://bucket/b"), Vec::new())
        .unwrap();
    assert_eq!(
        (a.experiment_id.as_str(), b.experiment_id.as_str()),
        ("1", "2")
    );
    assert_eq!(a.artifact_location, "mlflow-artifacts:/1");
    assert_eq!(b.artifact_location, "s3://bucket/b");
}

#[test]
fn duplicate_experiment_name_already_exists() {
    let store = Store::new();
    store.create_experiment("a", None, Vec::new()).unwrap();
    let error = store.create_experiment("a", None, Vec::new()).unwrap_err();
    assert_eq!(error.code(), ErrorCode::ResourceAlreadyExists);
}

#[test]
fn run_ids_are_32_hex_digits_and_distinct() {
    let store = Store::new();
    let a = store
        .create_run(NewRun::new("0", "alice"))
        .unwrap()
        .info
        .run_id;
    let b = store
        .create_run(NewRun::new("0", "alice"))
        .unwrap()
        .info
        .run_id;
    assert_eq!(a.len(), 32);
    assert!(
        a.chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
    );
    assert_ne!(a, b);
}

#[test]
fn create_run_replaces_client_mlflow_user_tag() {
    let store = Store::new();
    let mut new = NewRun::new("0", "alice");
    new.tags = vec![Tag::new(MLFLOW_USER_TAG, "mallory")];
    let run = store.create_run(new).unwrap();
    assert_eq!(run.data.tag(MLFLOW_USER_TAG), Some("alice"));
}

#[test]
fn run_name_comes_from_tag_when_not_given() {
    let store = Store::new();
    let mut new = NewRun::new("0", "alice");
    new.tags = vec![Tag::new(MLFLOW_RUN_NAME_TAG, "from-tag")];
    assert_eq!(store.create_run(new).unwrap().info.run_name, "from-tag");
}

#[test]
fn create_run_in_unknown_experiment_does_not_exist() {
    let store = Store::new();
    let error = store.create_run(NewRun::new("42", "alice")).unwrap_err();
    assert_eq!(error.code(), ErrorCode::ResourceDoesNotExist);
}

#[test]
fn changing_a_param_is_refused_and_nothing_is_applied() {
    let (store, run_id) = store_with_run();
    store
        .log_batch(
            &run_id,
            Vec::new(),
            vec![Param::new("lr", "0.1")],
            Vec::new(),
        )
        .unwrap();
    let error = store
        .log_batch(
            &run_id,
            vec![Metric::new("loss", 1.0, 1, 0)],
            vec![Param::new("lr", "0.2")],
            Vec::new(),
        )
        .unwrap_err();
    assert_eq!(error.code(), ErrorCode::InvalidParameterValue);
    let run = store.run(&run_id).unwrap();
    assert_eq!(run.data.param("lr"), Some("0.1"));
    assert!(run.data.metrics.is_empty());
}

#[test]
fn relogging_a_param_with_the_same_value_is_fine() {
    let (store, run_id) = store_with_run();
    let params = || vec![Param::new("lr", "0.1")];
    store
        .log_batch(&run_id, Vec::new(), params(), Vec::new())
        .unwrap();
    store
        .log_batch(&run_id, Vec::new(), params(), Vec::new())
        .unwrap();
}

#[test]
fn mlflow_user_tag_cannot_be_changed() {
    let (store, run_id) = store_with_run();
    let error = store
        .log_batch(
            &run_id,
            Vec::new(),
            Vec::new(),
            vec![Tag::new(MLFLOW_USER_TAG, "bob")],
        )
        .unwrap_err();
    assert_eq!(error.code(), ErrorCode::InvalidParameterValue);
    store
        .log_batch(
            &run_id,
            Vec::new(),
            Vec::new(),
            vec![Tag::new(MLFLOW_USER_TAG, "alice")],
        )
        .unwrap();
}

#[test]
fn latest_metric_is_largest_step_then_timestamp() {
    let (store, run_id) = store_with_run();
    let metrics = vec![
        Metric::new("loss", 3.0, 10, 2),
        Metric::new("loss", 1.0, 30, 1),
        Metric::new("loss", 2.0, 20, 2),
    ];
    store
        .log_batch(&run_id, metrics, Vec::new(), Vec::new())
        .unwrap();
    assert_eq!(store.run(&run_id).unwrap().data.metric("loss"), Some(2.0));
    assert_eq!(store.metric_history(&run_id, "loss").unwrap().len(), 3);
}

#[test]
fn bad_keys_are_invalid() {
    for key in [
        "",
        "/abs",
        "a/../b",
        "a//b",
        "trailing/",
        "semi;colon",
        "..",
        "./a",
    ] {
        let (store, run_id) = store_with_run();
        let error = store
            .log_batch(&run_id, Vec::new(), Vec::new(), vec![Tag::new(key, "v")])
            .unwrap_err();
        assert_eq!(error.code(), ErrorCode::InvalidParameterValue, "{key:?}");
    }
}

#[test]
fn good_keys_are_accepted() {
    let (store, run_id) = store_with_run();
    let tags = ["a", "a.b", "a/b", "x y:z-w_1", "größe"]
        .map(|k| Tag::new(k, "v"))
        .to_vec();
    store
        .log_batch(&run_id, Vec::new(), Vec::new(), tags)
        .unwrap();
}

#[test]
fn oversized_batch_is_invalid() {
    let (store, run_id) = store_with_run();
    let params = (0..=MAX_BATCH_PARAMS)
        .map(|i| Param::new(format!("p{i}"), "v"))
        .collect();
    let error = store
        .log_batch(&run_id, Vec::new(), params, Vec::new())
        .unwrap_err();
    assert_eq!(error.code(), ErrorCode::InvalidParameterValue);
}

#[test]
fn update_run_sets_status_end_time_and_name() {
    let (store, run_id) = store_with_run();
    let info = store
        .update_run(
            &run_id,
            Some(RunStatus::Finished),
            Some(99),
            Some("renamed"),
        )
        .unwrap();
    assert_eq!(info.status, RunStatus::Finished);
    assert_eq!(info.end_time, Some(99));
    let run = store.run(&run_id).unwrap();
    assert_eq!(run.data.tag(MLFLOW_RUN_NAME_TAG), Some("renamed"));
}

#[test]
fn runs_are_listed_newest_first_for_the_given_experiments() {
    let store = Store::new();
    let other = store.create_experiment("other", None, Vec::new()).unwrap();
    let mut early = NewRun::new("0", "alice");
    early.start_time = Some(1);
    let mut late = NewRun::new("0", "alice");
    late.start_time = Some(2);
    let early = store.create_run(early).unwrap().info.run_id;
    let late = store.create_run(late).unwrap().info.run_id;
    store
        .create_run(NewRun::new(&other.experiment_id, "bob"))
        .unwrap();
    let ids: Vec<String> = store
        .runs(&["0".to_owned()], ViewType::ActiveOnly)
        .into_iter()
        .map(|r| r.info.run_id)
        .collect();
    assert_eq!(ids, [late, early]);
    assert!(
        store
            .runs(&["0".to_owned()], ViewType::DeletedOnly)
            .is_empty()
    );
}
