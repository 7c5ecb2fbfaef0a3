//! The wire types: experiments, runs and what runs log, serialized as MLflow's messages.

use serde::{Serialize, Serializer, ser::SerializeStruct};

use crate::error::ApiError;

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

/// What [`Store::create_run`](super::Store::create_run) needs.
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

    pub(super) fn includes_active(self) -> bool {
        self != Self::DeletedOnly
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_finite_metrics_serialize_as_strings() {
        let json = serde_json::to_value(Metric::new("m", f64::NAN, 1, 0)).unwrap();
        assert_eq!(json["value"], "NaN");
        let json = serde_json::to_value(Metric::new("m", f64::NEG_INFINITY, 1, 0)).unwrap();
        assert_eq!(json["value"], "-Infinity");
    }
}
