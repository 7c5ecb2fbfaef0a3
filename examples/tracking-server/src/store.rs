//! The in-memory tracking store: experiments, runs, and what runs log.
//!
//! Every method validates its input the way MLflow's stores do (key names, value lengths,
//! immutable params, batch limits) and answers an [`ApiError`] with MLflow's error code.
//! A batch is checked completely before anything in it is applied.
//!
//! ```
//! use tracking_server::store::{NewRun, Store};
//!
//! let store = Store::new();
//! assert_eq!(store.experiment("0")?.name, "Default");
//! let id = store.create_experiment("exp", None, Vec::new())?.experiment_id;
//! let run = store.create_run(NewRun::new(&id, "alice"))?;
//! assert_eq!(run.info.user_id, "alice");
//! # Ok::<_, tracking_server::ApiError>(())
//! ```

use std::{
    collections::{BTreeMap, HashMap},
    fmt,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::{SystemTime, UNIX_EPOCH},
};

use serde::{Serialize, Serializer, ser::SerializeStruct};

use crate::error::{ApiError, ErrorCode};

/// The tag MLflow uses for a run's user. This server keeps it equal to the run's `user_id`,
/// the authenticated principal: see [`Store::create_run`] and [`Store::log_batch`].
pub const MLFLOW_USER_TAG: &str = "mlflow.user";
/// The tag MLflow uses for a run's name, kept in step with `run_name`.
pub const MLFLOW_RUN_NAME_TAG: &str = "mlflow.runName";
/// The id of the experiment that exists from the start.
pub const DEFAULT_EXPERIMENT_ID: &str = "0";

/// MLflow's limits (`mlflow/utils/validation.py`).
const MAX_KEY_LENGTH: usize = 250;
const MAX_PARAM_VALUE_LENGTH: usize = 6000;
const MAX_TAG_VALUE_LENGTH: usize = 8000;
const MAX_EXPERIMENT_NAME_LENGTH: usize = 500;
const MAX_BATCH_METRICS: usize = 1000;
const MAX_BATCH_PARAMS: usize = 100;
const MAX_BATCH_TAGS: usize = 100;
const MAX_BATCH_ENTITIES: usize = 1000;

/// An experiment, serialized as MLflow's `Experiment` message.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Experiment {
    /// Decimal id; `"0"` is the Default experiment.
    pub experiment_id: String,
    /// Unique name.
    pub name: String,
    /// Where its runs' artifacts would go (`mlflow-artifacts:/<id>` unless given).
    pub artifact_location: String,
    /// Always `"active"`: this server does not delete.
    pub lifecycle_stage: String,
    /// Milliseconds since the Unix epoch.
    pub creation_time: i64,
    /// Milliseconds since the Unix epoch.
    pub last_update_time: i64,
    /// Experiment tags, ordered by key.
    pub tags: Vec<Tag>,
}

/// A key and a value: a run tag, an experiment tag or a param.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Tag {
    /// Key.
    pub key: String,
    /// Value.
    pub value: String,
}

impl Tag {
    /// A tag (or param) `key` = `value`.
    #[must_use]
    pub fn new(key: impl Into<String>, value: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            value: value.into(),
        }
    }
}

/// A run parameter has the same shape as a tag.
pub type Param = Tag;

/// One logged metric value.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Metric {
    /// Key.
    pub key: String,
    /// Value; NaN and infinities are allowed, as in MLflow.
    pub value: f64,
    /// Milliseconds since the Unix epoch, as given by the client.
    pub timestamp: i64,
    /// Step (0 unless given).
    pub step: i64,
}

impl Metric {
    /// A metric value.
    #[must_use]
    pub fn new(key: impl Into<String>, value: f64, timestamp: i64, step: i64) -> Self {
        Self {
            key: key.into(),
            value,
            timestamp,
            step,
        }
    }
}

impl Serialize for Metric {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut s = serializer.serialize_struct("Metric", 4)?;
        s.serialize_field("key", &self.key)?;
        // JSON has no NaN or infinity; protobuf's JSON mapping spells them as strings.
        if self.value.is_finite() {
            s.serialize_field("value", &self.value)?;
        } else if self.value.is_nan() {
            s.serialize_field("value", "NaN")?;
        } else if self.value > 0.0 {
            s.serialize_field("value", "Infinity")?;
        } else {
            s.serialize_field("value", "-Infinity")?;
        }
        s.serialize_field("timestamp", &self.timestamp)?;
        s.serialize_field("step", &self.step)?;
        s.end()
    }
}

/// A run's status (MLflow's `RunStatus`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[non_exhaustive]
pub enum RunStatus {
    /// Created and not ended.
    Running,
    /// Scheduled (never set by this server itself).
    Scheduled,
    /// Ended successfully.
    Finished,
    /// Ended with an error.
    Failed,
    /// Ended by the user.
    Killed,
}

impl RunStatus {
    /// Parses MLflow's name (`"FINISHED"`) or protobuf number (`3`).
    ///
    /// # Errors
    ///
    /// `INVALID_PARAMETER_VALUE` for anything else.
    pub fn parse(text: &str) -> Result<Self, ApiError> {
        Ok(match text {
            "RUNNING" | "1" => Self::Running,
            "SCHEDULED" | "2" => Self::Scheduled,
            "FINISHED" | "3" => Self::Finished,
            "FAILED" | "4" => Self::Failed,
            "KILLED" | "5" => Self::Killed,
            _ => return Err(ApiError::invalid(format!("Invalid run status {text:?}."))),
        })
    }
}

/// A run's metadata, serialized as MLflow's `RunInfo` (with both `run_id` and the
/// deprecated `run_uuid`).
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct RunInfo {
    /// 32 hex digits.
    pub run_id: String,
    /// Name (from the request, the `mlflow.runName` tag, or generated).
    pub run_name: String,
    /// The experiment it belongs to.
    pub experiment_id: String,
    /// The authenticated principal that created it — never the client's claim.
    pub user_id: String,
    /// Status.
    pub status: RunStatus,
    /// Milliseconds since the Unix epoch.
    pub start_time: i64,
    /// Milliseconds since the Unix epoch, once ended.
    pub end_time: Option<i64>,
    /// `<experiment artifact location>/<run id>/artifacts`.
    pub artifact_uri: String,
    /// Always `"active"`.
    pub lifecycle_stage: String,
}

impl Serialize for RunInfo {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut s = serializer.serialize_struct("RunInfo", 10)?;
        s.serialize_field("run_id", &self.run_id)?;
        s.serialize_field("run_uuid", &self.run_id)?;
        s.serialize_field("run_name", &self.run_name)?;
        s.serialize_field("experiment_id", &self.experiment_id)?;
        s.serialize_field("user_id", &self.user_id)?;
        s.serialize_field("status", &self.status)?;
        s.serialize_field("start_time", &self.start_time)?;
        if let Some(end_time) = self.end_time {
            s.serialize_field("end_time", &end_time)?;
        } else {
            s.skip_field("end_time")?;
        }
        s.serialize_field("artifact_uri", &self.artifact_uri)?;
        s.serialize_field("lifecycle_stage", &self.lifecycle_stage)?;
        s.end()
    }
}

/// What a run has logged, serialized as MLflow's `RunData`.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[non_exhaustive]
pub struct RunData {
    /// The latest value of each metric (largest step, then timestamp, then value), by key.
    pub metrics: Vec<Metric>,
    /// Params, by key.
    pub params: Vec<Param>,
    /// Tags, by key.
    pub tags: Vec<Tag>,
}

impl RunData {
    /// The value of tag `key`.
    #[must_use]
    pub fn tag(&self, key: &str) -> Option<&str> {
        find(&self.tags, key)
    }

    /// The value of param `key`.
    #[must_use]
    pub fn param(&self, key: &str) -> Option<&str> {
        find(&self.params, key)
    }

    /// The latest value of metric `key`.
    #[must_use]
    pub fn metric(&self, key: &str) -> Option<f64> {
        self.metrics.iter().find(|m| m.key == key).map(|m| m.value)
    }
}

fn find<'a>(entries: &'a [Tag], key: &str) -> Option<&'a str> {
    entries
        .iter()
        .find(|t| t.key == key)
        .map(|t| t.value.as_str())
}

/// A run: its metadata and its data, serialized as MLflow's `Run`.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Run {
    /// Metadata.
    pub info: RunInfo,
    /// Metrics, params and tags.
    pub data: RunData,
}

/// What [`Store::create_run`] needs.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct NewRun {
    /// Experiment to create the run in.
    pub experiment_id: String,
    /// The authenticated principal; becomes `user_id` and the `mlflow.user` tag.
    pub user_id: String,
    /// Milliseconds since the Unix epoch; now if `None`.
    pub start_time: Option<i64>,
    /// Name; otherwise the `mlflow.runName` tag; otherwise generated.
    pub run_name: Option<String>,
    /// Initial tags.
    pub tags: Vec<Tag>,
}

impl NewRun {
    /// A run in `experiment_id` for `user_id`, starting now, no name, no tags.
    #[must_use]
    pub fn new(experiment_id: impl Into<String>, user_id: impl Into<String>) -> Self {
        Self {
            experiment_id: experiment_id.into(),
            user_id: user_id.into(),
            start_time: None,
            run_name: None,
            tags: Vec::new(),
        }
    }
}

/// Which experiments or runs a search returns, by lifecycle stage.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ViewType {
    /// Active ones (the default).
    #[default]
    ActiveOnly,
    /// Deleted ones: always none here.
    DeletedOnly,
    /// All.
    All,
}

impl ViewType {
    /// Parses MLflow's name (`"ACTIVE_ONLY"`) or protobuf number (`1`).
    ///
    /// # Errors
    ///
    /// `INVALID_PARAMETER_VALUE` for anything else.
    pub fn parse(text: &str) -> Result<Self, ApiError> {
        Ok(match text {
            "ACTIVE_ONLY" | "1" => Self::ActiveOnly,
            "DELETED_ONLY" | "2" => Self::DeletedOnly,
            "ALL" | "3" => Self::All,
            _ => return Err(ApiError::invalid(format!("Invalid view type {text:?}."))),
        })
    }

    fn includes_active(self) -> bool {
        self != Self::DeletedOnly
    }
}

/// The in-memory store. Cloning it gives another handle to the same data.
#[derive(Clone, Default)]
pub struct Store {
    inner: Arc<Mutex<Inner>>,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = self.lock();
        f.debug_struct("Store")
            .field("experiments", &inner.experiments.len())
            .field("runs", &inner.runs.len())
            .finish()
    }
}

struct Inner {
    /// By numeric id, so that listing is in id order.
    experiments: BTreeMap<u64, Experiment>,
    experiment_names: HashMap<String, u64>,
    next_experiment_id: u64,
    runs: HashMap<String, RunRecord>,
}

impl Default for Inner {
    fn default() -> Self {
        let now = now_millis();
        let default = Experiment {
            experiment_id: DEFAULT_EXPERIMENT_ID.to_owned(),
            name: "Default".to_owned(),
            artifact_location: format!("mlflow-artifacts:/{DEFAULT_EXPERIMENT_ID}"),
            lifecycle_stage: "active".to_owned(),
            creation_time: now,
            last_update_time: now,
            tags: Vec::new(),
        };
        Self {
            experiments: BTreeMap::from([(0, default)]),
            experiment_names: HashMap::from([("Default".to_owned(), 0)]),
            next_experiment_id: 1,
            runs: HashMap::new(),
        }
    }
}

struct RunRecord {
    info: RunInfo,
    params: BTreeMap<String, String>,
    tags: BTreeMap<String, String>,
    /// Full history per key, in logging order.
    metrics: BTreeMap<String, Vec<Metric>>,
}

impl RunRecord {
    fn snapshot(&self) -> Run {
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

fn to_tags(map: &BTreeMap<String, String>) -> Vec<Tag> {
    map.iter().map(|(k, v)| Tag::new(k, v)).collect()
}

impl Store {
    /// A store holding only the Default experiment (id `"0"`).
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // No method panics while holding the lock, but a poisoned map is still consistent:
        // every change is validated before it is applied.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Creates an experiment and returns it.
    ///
    /// # Errors
    ///
    /// `RESOURCE_ALREADY_EXISTS` for a taken name; `INVALID_PARAMETER_VALUE` for an empty or
    /// over-long name or a bad tag.
    pub fn create_experiment(
        &self,
        name: &str,
        artifact_location: Option<&str>,
        tags: Vec<Tag>,
    ) -> Result<Experiment, ApiError> {
        if name.is_empty() {
            return Err(ApiError::invalid("Invalid experiment name: ''."));
        }
        if name.chars().count() > MAX_EXPERIMENT_NAME_LENGTH {
            return Err(ApiError::invalid(format!(
                "Experiment name exceeds the maximum length of {MAX_EXPERIMENT_NAME_LENGTH}."
            )));
        }
        for tag in &tags {
            validate_key("tag", &tag.key)?;
            validate_value("tag", &tag.key, &tag.value, MAX_TAG_VALUE_LENGTH)?;
        }
        let mut inner = self.lock();
        if inner.experiment_names.contains_key(name) {
            return Err(ApiError::new(
                ErrorCode::ResourceAlreadyExists,
                format!("Experiment '{name}' already exists."),
            ));
        }
        let id = inner.next_experiment_id;
        inner.next_experiment_id += 1;
        let now = now_millis();
        let tags: BTreeMap<String, String> = tags.into_iter().map(|t| (t.key, t.value)).collect();
        let experiment = Experiment {
            experiment_id: id.to_string(),
            name: name.to_owned(),
            artifact_location: artifact_location
                .filter(|l| !l.is_empty())
                .map_or_else(|| format!("mlflow-artifacts:/{id}"), str::to_owned),
            lifecycle_stage: "active".to_owned(),
            creation_time: now,
            last_update_time: now,
            tags: to_tags(&tags),
        };
        inner.experiment_names.insert(name.to_owned(), id);
        inner.experiments.insert(id, experiment.clone());
        Ok(experiment)
    }

    /// The experiment with `experiment_id`.
    ///
    /// # Errors
    ///
    /// `RESOURCE_DOES_NOT_EXIST`.
    pub fn experiment(&self, experiment_id: &str) -> Result<Experiment, ApiError> {
        let inner = self.lock();
        experiment_in(&inner, experiment_id).cloned()
    }

    /// The experiment named `name`.
    ///
    /// # Errors
    ///
    /// `RESOURCE_DOES_NOT_EXIST`, with MLflow's message.
    pub fn experiment_by_name(&self, name: &str) -> Result<Experiment, ApiError> {
        let inner = self.lock();
        inner
            .experiment_names
            .get(name)
            .and_then(|id| inner.experiments.get(id))
            .cloned()
            .ok_or_else(|| {
                ApiError::not_found(format!("Could not find experiment with name '{name}'"))
            })
    }

    /// All experiments in `view`, by ascending id.
    #[must_use]
    pub fn experiments(&self, view: ViewType) -> Vec<Experiment> {
        if !view.includes_active() {
            return Vec::new();
        }
        self.lock().experiments.values().cloned().collect()
    }

    /// Sets (or replaces) an experiment tag.
    ///
    /// # Errors
    ///
    /// `RESOURCE_DOES_NOT_EXIST`, or `INVALID_PARAMETER_VALUE` for a bad key or value.
    pub fn set_experiment_tag(
        &self,
        experiment_id: &str,
        key: &str,
        value: &str,
    ) -> Result<(), ApiError> {
        validate_key("tag", key)?;
        validate_value("tag", key, value, MAX_TAG_VALUE_LENGTH)?;
        let mut inner = self.lock();
        let experiment = experiment_id
            .parse::<u64>()
            .ok()
            .and_then(|id| inner.experiments.get_mut(&id))
            .ok_or_else(|| experiment_not_found(experiment_id))?;
        experiment.tags.retain(|t| t.key != key);
        experiment.tags.push(Tag::new(key, value));
        experiment.tags.sort_by(|a, b| a.key.cmp(&b.key));
        experiment.last_update_time = now_millis();
        Ok(())
    }

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

fn experiment_in<'a>(inner: &'a Inner, experiment_id: &str) -> Result<&'a Experiment, ApiError> {
    experiment_id
        .parse::<u64>()
        .ok()
        .and_then(|id| inner.experiments.get(&id))
        .ok_or_else(|| experiment_not_found(experiment_id))
}

fn experiment_not_found(experiment_id: &str) -> ApiError {
    ApiError::not_found(format!("No Experiment with id={experiment_id} exists"))
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

/// MLflow's rule for metric, param and tag names: letters, digits, `_ - . / : ` and space;
/// a relative path that normalises to itself (no leading `/`, no `.` or `..` segment, no
/// empty segment).
fn validate_key(kind: &str, key: &str) -> Result<(), ApiError> {
    let invalid = || {
        ApiError::invalid(format!(
            "Invalid {kind} name: '{key}'. Names may only contain alphanumerics, \
             underscores (_), dashes (-), periods (.), spaces ( ), colons (:) and slashes (/), \
             and must be a relative path that does not contain '..' or empty segments."
        ))
    };
    if key.is_empty() {
        return Err(ApiError::missing("key"));
    }
    if key.chars().count() > MAX_KEY_LENGTH {
        return Err(ApiError::invalid(format!(
            "{kind} name '{}...' exceeds the maximum length of {MAX_KEY_LENGTH}.",
            key.chars().take(20).collect::<String>()
        )));
    }
    let allowed = |c: char| c.is_alphanumeric() || "_-./: ".contains(c);
    if !key.chars().all(allowed)
        || key
            .split('/')
            .any(|segment| segment.is_empty() || segment == "." || segment == "..")
    {
        return Err(invalid());
    }
    Ok(())
}

fn validate_value(kind: &str, key: &str, value: &str, max: usize) -> Result<(), ApiError> {
    if value.chars().count() > max {
        return Err(ApiError::invalid(format!(
            "The value of {kind} '{key}' exceeds the maximum length of {max}."
        )));
    }
    Ok(())
}

fn validate_batch_limits(
    metrics: &[Metric],
    params: &[Param],
    tags: &[Tag],
) -> Result<(), ApiError> {
    let too_many = |what: &str, limit: usize| {
        ApiError::invalid(format!(
            "A batch logging request can contain at most {limit} {what}."
        ))
    };
    if metrics.len() > MAX_BATCH_METRICS {
        return Err(too_many("metrics", MAX_BATCH_METRICS));
    }
    if params.len() > MAX_BATCH_PARAMS {
        return Err(too_many("params", MAX_BATCH_PARAMS));
    }
    if tags.len() > MAX_BATCH_TAGS {
        return Err(too_many("tags", MAX_BATCH_TAGS));
    }
    if metrics.len() + params.len() + tags.len() > MAX_BATCH_ENTITIES {
        return Err(too_many(
            "metrics, params and tags in total",
            MAX_BATCH_ENTITIES,
        ));
    }
    Ok(())
}

/// Milliseconds since the Unix epoch (0 if the clock is before it).
pub(crate) fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
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

#[cfg(test)]
mod tests {
    use super::*;

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
    fn non_finite_metrics_serialize_as_strings() {
        let json = serde_json::to_value(Metric::new("m", f64::NAN, 1, 0)).unwrap();
        assert_eq!(json["value"], "NaN");
        let json = serde_json::to_value(Metric::new("m", f64::NEG_INFINITY, 1, 0)).unwrap();
        assert_eq!(json["value"], "-Infinity");
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
}
