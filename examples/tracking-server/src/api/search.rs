//! Paging and the refusal of filters, shared by `experiments/search` and `runs/search`.

use serde_json::{Value, json};

use crate::error::ApiError;

/// Largest page a search returns; MLflow's own limits.
pub(super) const MAX_EXPERIMENTS_PAGE: usize = 50_000;
pub(super) const MAX_RUNS_PAGE: usize = 50_000;
pub(super) const DEFAULT_RUNS_PAGE: usize = 1000;

pub(super) fn refuse_filter(filter: Option<&str>) -> Result<(), ApiError> {
    match filter.map(str::trim) {
        None | Some("") => Ok(()),
        Some(_) => Err(ApiError::invalid(
            "Search filters are not supported by this server; search without a filter.",
        )),
    }
}

pub(super) fn page_size(
    max_results: Option<i64>,
    default: usize,
    max: usize,
) -> Result<usize, ApiError> {
    match max_results {
        None => Ok(default),
        Some(n) => match usize::try_from(n) {
            Ok(n @ 1..) if n <= max => Ok(n),
            _ => Err(ApiError::invalid(format!(
                "Invalid value {n} for parameter 'max_results' supplied. It must be between 1 \
                 and {max}."
            ))),
        },
    }
}

/// One page of `items`. The page token is the decimal offset of the next page.
pub(super) fn paginate<T>(
    items: Vec<T>,
    page_token: Option<&str>,
    page_size: usize,
) -> Result<(Vec<T>, Option<String>), ApiError> {
    let offset = match page_token.filter(|t| !t.is_empty()) {
        None => 0,
        Some(token) => token
            .parse::<usize>()
            .map_err(|_| ApiError::invalid(format!("Invalid page token {token:?}.")))?,
    };
    let total = items.len();
    let page: Vec<T> = items.into_iter().skip(offset).take(page_size).collect();
    let end = offset.saturating_add(page.len());
    let next = (end < total).then(|| end.to_string());
    Ok((page, next))
}

pub(super) fn paged<T: serde::Serialize>(field: &str, page: &[T], next: Option<String>) -> Value {
    let mut body = serde_json::Map::new();
    body.insert(field.to_owned(), json!(page));
    if let Some(next) = next {
        body.insert("next_page_token".to_owned(), Value::String(next));
    }
    Value::Object(body)
}
