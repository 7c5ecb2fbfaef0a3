use std::{path::PathBuf, sync::Arc, time::Duration};

use super::{
    MlflowUsers,
    error::MlflowUsersBuildError,
    limits::WerkzeugLimits,
    source::{Source, StoreSource},
    store::{SqliteUserStore, UserRecord, UserStore},
    table::UserTable,
};

/// Configures an [`MlflowUsers`]; made by [`MlflowUsers::builder`].
///
/// Give exactly one source of users: [`store`](Self::store), [`sqlite`](Self::sqlite) or
/// [`users`](Self::users) (a later call replaces an earlier one).
#[derive(Clone, Debug)]
#[must_use]
pub struct MlflowUsersBuilder {
    refresh_interval: Duration,
    limits: WerkzeugLimits,
    source: Option<BuilderSource>,
}

#[derive(Clone, Debug)]
enum BuilderSource {
    Store(Arc<dyn UserStore>),
    Users(Vec<UserRecord>),
}

impl MlflowUsersBuilder {
    pub(super) fn new() -> Self {
        Self {
            refresh_interval: MlflowUsers::DEFAULT_REFRESH_INTERVAL,
            limits: WerkzeugLimits::default(),
            source: None,
        }
    }

    /// How long a table loaded from a store is used before the next authentication reloads
    /// it (default [`MlflowUsers::DEFAULT_REFRESH_INTERVAL`]). Zero reloads on every
    /// authentication. Does not apply to [`users`](Self::users).
    pub fn refresh_interval(mut self, interval: Duration) -> Self {
        self.refresh_interval = interval;
        self
    }

    /// The most work a stored hash may ask for (default [`WerkzeugLimits::default`]).
    pub fn limits(mut self, limits: WerkzeugLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Users from `store`, loaded on first use and after each refresh interval.
    pub fn store(mut self, store: impl UserStore) -> Self {
        self.source = Some(BuilderSource::Store(Arc::new(store)));
        self
    }

    /// Users from MLflow's SQLite database at `path`; see [`SqliteUserStore`].
    pub fn sqlite(self, path: impl Into<PathBuf>) -> Self {
        self.store(SqliteUserStore::new(path))
    }

    /// A fixed in-memory table, checked by [`build`](Self::build).
    pub fn users(mut self, users: impl IntoIterator<Item = UserRecord>) -> Self {
        self.source = Some(BuilderSource::Users(users.into_iter().collect()));
        self
    }

    /// The authenticator. A store is not read until the first authentication or
    /// [`MlflowUsers::refresh`].
    ///
    /// # Errors
    ///
    /// [`MlflowUsersBuildError::NoSource`] without a source; for an in-memory table,
    /// [`MlflowUsersBuildError`] naming the first user whose hash cannot be used, whose name
    /// is empty or appears twice.
    pub fn build(self) -> Result<MlflowUsers, MlflowUsersBuildError> {
        let source = match self.source.ok_or(MlflowUsersBuildError::NoSource)? {
            BuilderSource::Store(store) => {
                Source::Store(StoreSource::new(store, self.refresh_interval, self.limits))
            }
            BuilderSource::Users(records) => {
                Source::Fixed(Arc::new(fixed_table(records, &self.limits)?))
            }
        };
        Ok(MlflowUsers::from_source(source))
    }
}

fn fixed_table(
    records: Vec<UserRecord>,
    limits: &WerkzeugLimits,
) -> Result<UserTable, MlflowUsersBuildError> {
    if records.iter().any(|r| r.username.is_empty()) {
        return Err(MlflowUsersBuildError::EmptyUsername);
    }
    let table = UserTable::parse(records, limits);
    if let Some((username, reason)) = table.invalid_users().into_iter().next() {
        return Err(MlflowUsersBuildError::InvalidRecord {
            username: username.into(),
            reason: reason.clone(),
        });
    }
    Ok(table)
}
