//! Experiments: create, look up, list, tag.

use std::collections::BTreeMap;

use super::{
    Experiment, Store, Tag, ViewType, experiment_in, experiment_not_found, now_millis, to_tags,
    validate::{MAX_TAG_VALUE_LENGTH, validate_experiment_name, validate_key, validate_value},
};
use crate::error::{ApiError, ErrorCode};

impl Store {
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
        validate_experiment_name(name)?;
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
}
