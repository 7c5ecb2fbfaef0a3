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

mod experiments;
mod model;
mod runs;
mod validate;

use std::{
    collections::{BTreeMap, HashMap},
    fmt,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::{SystemTime, UNIX_EPOCH},
};

pub use self::model::{
    Experiment, Metric, NewRun, Param, Run, RunData, RunInfo, RunStatus, Tag, ViewType,
};
use self::runs::RunRecord;
use crate::error::ApiError;

/// The tag MLflow uses for a run's user. This server keeps it equal to the run's `user_id`,
/// the authenticated principal: see [`Store::create_run`] and [`Store::log_batch`].
pub const MLFLOW_USER_TAG: &str = "mlflow.user";
/// The tag MLflow uses for a run's name, kept in step with `run_name`.
pub const MLFLOW_RUN_NAME_TAG: &str = "mlflow.runName";
/// The id of the experiment that exists from the start.
pub const DEFAULT_EXPERIMENT_ID: &str = "0";

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

/// Milliseconds since the Unix epoch (0 if the clock is before it).
pub(crate) fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests;
