//! Runs: create, look up, update, log to, list.

use std::collections::BTreeMap;

use super::{
    Inner, MLFLOW_RUN_NAME_TAG, MLFLOW_USER_TAG, Metric, NewRun, Param, Run, RunData, RunInfo,
    RunStatus, Store, Tag, ViewType, experiment_in, now_millis, to_tags,
    validate::{
        MAX_BATCH_TAGS, MAX_PARAM_VALUE_LENGTH, MAX_TAG_VALUE_LENGTH, validate_batch_limits,
        validate_key, validate_value,
    },
};
use crate::error::{ApiError, ErrorCode};

pub(super) struct RunRecord {
    info: RunInfo,
    params: BTreeMap<String, String>,
    tags: BTreeMap<String, String>,
    /// Full history per key, in logging order.
    metrics: BTreeMap<String, Vec<Metric>>,
}

impl RunRecord {
    pub(super) fn snapshot(&self) -> Run {
        let latest = self.metrics.values().filter_map(|history| {
            history
                .iter()
                .max_by(|a, b| {
                    (a.step, a.timestamp)
                        .cmp(&(b.step, b.timestamp))
                        .then(a.value.total_cmp(&b.value))
                })
                .cloned()
        });
        Run {
            info: self.info.clone(),
            data: RunData {
                metrics: latest.collect(),
                params: to_tags(&self.params),
                tags: to_tags(&self.tags),
            },
        }
    }
}

impl Store {
    /// Creates a run in status `RUNNING`.
    ///
    /// `user_id` comes from the caller (the authenticated principal), and the `mlflow.user`
    /// tag is set to the same value, replacing whatever the client sent: MLflow's UI shows
    /// that tag as the run's user, so it must not be the client's unverified claim.
    ///
    /// # Errors
    ///
    /// `RESOURCE_DOES_NOT_EXIST` for an unknown experiment, `INVALID_PARAMETER_VALUE` for a
    /// bad tag.
    pub fn create_run(&self, new: NewRun) -> Result<Run, ApiError> {
        let NewRun {
            experiment_id,
            user_id,
            start_time,
            run_name,
            tags,
        } = new;
        if tags.len() > MAX_BATCH_TAGS {
            return Err(ApiError::invalid(format!(
                "A run can be created with at most {MAX_BATCH_TAGS} tags."
            )));
        }
        for tag in &tags {
            validate_key("tag", &tag.key)?;
            validate_value("tag", &tag.key, &tag.value, MAX_TAG_VALUE_LENGTH)?;
        }
        let run_id = random_run_id()?;
        let mut tags: BTreeMap<String, String> =
            tags.into_iter().map(|t| (t.key, t.value)).collect();
        let run_name = run_name
            .filter(|n| !n.is_empty())
            .or_else(|| tags.get(MLFLOW_RUN_NAME_TAG).cloned())
            .unwrap_or_else(|| format!("run-{}", &run_id[..8]));
        tags.insert(MLFLOW_RUN_NAME_TAG.to_owned(), run_name.clone());
        tags.insert(MLFLOW_USER_TAG.to_owned(), user_id.clone());

        let mut inner = self.lock();
        let experiment = experiment_in(&inner, &experiment_id)?;
        let info = RunInfo {
            artifact_uri: format!("{}/{run_id}/artifacts", experiment.artifact_location),
            run_id: run_id.clone(),
            run_name,
            experiment_id: experiment.experiment_id.clone(),
            user_id,
            status: RunStatus::Running,
            start_time: start_time.unwrap_or_else(now_millis),
            end_time: None,
            lifecycle_stage: "active".to_owned(),
        };
        let record = RunRecord {
            info,
            params: BTreeMap::new(),
            tags,
            metrics: BTreeMap::new(),
        };
        let run = record.snapshot();
        inner.runs.insert(run_id, record);
        Ok(run)
    }

    /// The run with `run_id`.
    ///
    /// # Errors
    ///
    /// `RESOURCE_DOES_NOT_EXIST`.
    pub fn run(&self, run_id: &str) -> Result<Run, ApiError> {
        let inner = self.lock();
        run_in(&inner, run_id).map(RunRecord::snapshot)
    }

    /// Changes a run's status, end time or name, and returns its new info.
    ///
    /// # Errors
    ///
    /// `RESOURCE_DOES_NOT_EXIST`.
    pub fn update_run(
        &self,
        run_id: &str,
        status: Option<RunStatus>,
        end_time: Option<i64>,
        run_name: Option<&str>,
    ) -> Result<RunInfo, ApiError> {
        let mut inner = self.lock();
        let record = run_in_mut(&mut inner, run_id)?;
        if let Some(status) = status {
            record.info.status = status;
        }
        if let Some(end_time) = end_time {
            record.info.end_time = Some(end_time);
        }
        if let Some(name) = run_name.filter(|n| !n.is_empty()) {
            record.info.run_name = name.to_owned();
            record
                .tags
                .insert(MLFLOW_RUN_NAME_TAG.to_owned(), name.to_owned());
        }
        Ok(record.info.clone())
    }

    /// Logs metrics, params and tags to a run, all or nothing.
    ///
    /// Params are immutable: logging a key again with another value is refused, as MLflow
    /// does. A `mlflow.user` tag whose value differs from the run's `user_id` is refused:
    /// that tag is the server's record of the authenticated user. A `mlflow.runName` tag
    /// renames the run.
    ///
    /// # Errors
    ///
    /// `RESOURCE_DOES_NOT_EXIST` for an unknown run; `INVALID_PARAMETER_VALUE` for a bad key
    /// or value, a changed param, a batch over MLflow's limits, or a `mlflow.user` tag that
    /// differs from the run's user.
    pub fn log_batch(
        &self,
        run_id: &str,
        metrics: Vec<Metric>,
        params: Vec<Param>,
        tags: Vec<Tag>,
    ) -> Result<(), ApiError> {
        validate_batch_limits(&metrics, &params, &tags)?;
        for metric in &metrics {
            validate_key("metric", &metric.key)?;
        }
        for param in &params {
            validate_key("param", &param.key)?;
            validate_value("param", &param.key, &param.value, MAX_PARAM_VALUE_LENGTH)?;
        }
        for tag in &tags {
            validate_key("tag", &tag.key)?;
            validate_value("tag", &tag.key, &tag.value, MAX_TAG_VALUE_LENGTH)?;
        }

        let mut inner = self.lock();
        let record = run_in_mut(&mut inner, run_id)?;
        // Check everything that depends on the run's current state before changing it.
        let mut batch_params: BTreeMap<&str, &str> = BTreeMap::new();
        for param in &params {
            let logged = record
                .params
                .get(&param.key)
                .map(String::as_str)
                .or_else(|| batch_params.get(param.key.as_str()).copied());
            if let Some(logged) = logged.filter(|v| *v != param.value) {
                return Err(ApiError::invalid(format!(
                    "Changing param values is not allowed. Param with key='{}' was already \
                     logged with value='{logged}' for run ID='{run_id}'. Attempted logging new \
                     value '{}'.",
                    param.key, param.value
                )));
            }
            batch_params.insert(&param.key, &param.value);
        }
        for tag in tags.iter().filter(|t| t.key == MLFLOW_USER_TAG) {
            if tag.value != record.info.user_id {
                return Err(ApiError::invalid(format!(
                    "The '{MLFLOW_USER_TAG}' tag is set by the server to the authenticated \
                     user ('{}') and cannot be changed.",
                    record.info.user_id
                )));
            }
        }

        for metric in metrics {
            record
                .metrics
                .entry(metric.key.clone())
                .or_default()
                .push(metric);
        }
        for param in params {
            record.params.insert(param.key, param.value);
        }
        for tag in tags {
            if tag.key == MLFLOW_RUN_NAME_TAG {
                record.info.run_name.clone_from(&tag.value);
            }
            record.tags.insert(tag.key, tag.value);
        }
        Ok(())
    }

    /// Every logged value of metric `key` in a run, in logging order.
    ///
    /// # Errors
    ///
    /// `RESOURCE_DOES_NOT_EXIST` for an unknown run (an unknown key is an empty history).
    pub fn metric_history(&self, run_id: &str, key: &str) -> Result<Vec<Metric>, ApiError> {
        let inner = self.lock();
        Ok(run_in(&inner, run_id)?
            .metrics
            .get(key)
            .cloned()
            .unwrap_or_default())
    }

    /// The runs of the given experiments in `view`, newest first (by start time, then id).
    /// Unknown experiment ids contribute nothing, as in MLflow.
    #[must_use]
    pub fn runs(&self, experiment_ids: &[String], view: ViewType) -> Vec<Run> {
        if !view.includes_active() {
            return Vec::new();
        }
        let inner = self.lock();
        let mut runs: Vec<Run> = inner
            .runs
            .values()
            .filter(|r| experiment_ids.contains(&r.info.experiment_id))
            .map(RunRecord::snapshot)
            .collect();
        runs.sort_by(|a, b| {
            b.info
                .start_time
                .cmp(&a.info.start_time)
                .then_with(|| a.info.run_id.cmp(&b.info.run_id))
        });
        runs
    }
}

fn run_in<'a>(inner: &'a Inner, run_id: &str) -> Result<&'a RunRecord, ApiError> {
    inner
        .runs
        .get(run_id)
        .ok_or_else(|| ApiError::not_found(format!("Run with id={run_id} not found")))
}

fn run_in_mut<'a>(inner: &'a mut Inner, run_id: &str) -> Result<&'a mut RunRecord, ApiError> {
    inner
        .runs
        .get_mut(run_id)
        .ok_or_else(|| ApiError::not_found(format!("Run with id={run_id} not found")))
}

/// 128 random bits as 32 lowercase hex digits, like MLflow's `uuid.uuid4().hex`.
fn random_run_id() -> Result<String, ApiError> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| {
        ApiError::new(
            ErrorCode::InternalError,
            format!("cannot generate a run id: {e}"),
        )
    })?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}
