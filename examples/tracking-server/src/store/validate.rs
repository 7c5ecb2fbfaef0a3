//! MLflow's input rules (`mlflow/utils/validation.py`): key names, value lengths, batch sizes.

use super::{Metric, Param, Tag};
use crate::error::ApiError;

// MLflow's limits.
const MAX_KEY_LENGTH: usize = 250;
pub(super) const MAX_PARAM_VALUE_LENGTH: usize = 6000;
pub(super) const MAX_TAG_VALUE_LENGTH: usize = 8000;
const MAX_EXPERIMENT_NAME_LENGTH: usize = 500;
const MAX_BATCH_METRICS: usize = 1000;
pub(super) const MAX_BATCH_PARAMS: usize = 100;
pub(super) const MAX_BATCH_TAGS: usize = 100;
const MAX_BATCH_ENTITIES: usize = 1000;

/// A non-empty experiment name of at most 500 characters.
pub(super) fn validate_experiment_name(name: &str) -> Result<(), ApiError> {
    if name.is_empty() {
        return Err(ApiError::invalid("Invalid experiment name: ''."));
    }
    if name.chars().count() > MAX_EXPERIMENT_NAME_LENGTH {
        return Err(ApiError::invalid(format!(
            "Experiment name exceeds the maximum length of {MAX_EXPERIMENT_NAME_LENGTH}."
        )));
    }
    Ok(())
}

/// MLflow's rule for metric, param and tag names: letters, digits, `_ - . / : ` and space;
/// a relative path that normalises to itself (no leading `/`, no `.` or `..` segment, no
/// empty segment).
pub(super) fn validate_key(kind: &str, key: &str) -> Result<(), ApiError> {
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

pub(super) fn validate_value(
    kind: &str,
    key: &str,
    value: &str,
    max: usize,
) -> Result<(), ApiError> {
    if value.chars().count() > max {
        return Err(ApiError::invalid(format!(
            "The value of {kind} '{key}' exceeds the maximum length of {max}."
        )));
    }
    Ok(())
}

pub(super) fn validate_batch_limits(
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;

    #[test]
    fn experiment_names_must_be_non_empty_and_at_most_500_chars() {
        assert!(validate_experiment_name("e").is_ok());
        assert!(validate_experiment_name(&"é".repeat(MAX_EXPERIMENT_NAME_LENGTH)).is_ok());
        for name in [String::new(), "e".repeat(MAX_EXPERIMENT_NAME_LENGTH + 1)] {
            let error = validate_experiment_name(&name).unwrap_err();
            assert_eq!(error.code(), ErrorCode::InvalidParameterValue, "{name:?}");
        }
    }

    #[test]
    fn key_length_counts_chars_not_bytes() {
        assert!(validate_key("tag", &"ß".repeat(MAX_KEY_LENGTH)).is_ok());
        assert!(validate_key("tag", &"a".repeat(MAX_KEY_LENGTH + 1)).is_err());
    }

    #[test]
    fn batch_total_is_limited_too() {
        let metrics = vec![Metric::new("m", 1.0, 0, 0); MAX_BATCH_METRICS];
        let tags = vec![Tag::new("t", "v")];
        assert!(validate_batch_limits(&metrics, &[], &[]).is_ok());
        assert!(validate_batch_limits(&metrics, &[], &tags).is_err());
    }
}
