//! Where the table comes from: fixed in code, or loaded from a [`UserStore`] and reloaded
//! after each refresh interval.

use std::{
    fmt,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use tower_mlflow_core::{
    blocking::run_blocking,
    sync::{Reloading, Snapshot},
};

use super::{
    error::MlflowUsersError,
    limits::WerkzeugLimits,
    store::UserStore,
    table::{UserTable, warn_about_new_invalid_users},
};

pub(super) enum Source {
    Fixed(Arc<UserTable>),
    Store(StoreSource),
}

/// A table for one authentication: the fixed one, or the snapshot of the last load.
pub(super) enum TableRef {
    Fixed(Arc<UserTable>),
    Loaded(Arc<Snapshot<UserTable>>),
}

impl TableRef {
    pub(super) fn get(&self) -> &UserTable {
        match self {
            Self::Fixed(table) => table,
            Self::Loaded(snapshot) => snapshot.value(),
        }
    }
}

pub(super) struct StoreSource {
    store: Arc<dyn UserStore>,
    refresh_interval: Duration,
    limits: WerkzeugLimits,
    table: Reloading<UserTable, MlflowUsersError>,
    /// The unusable rows already warned about, so that each is logged once.
    reported: Mutex<Vec<Box<str>>>,
}

impl Source {
    /// The table to check a login against, loading it first if it is missing or stale.
    pub(super) async fn table(&self) -> Result<TableRef, MlflowUsersError> {
        match self {
            Self::Fixed(table) => Ok(TableRef::Fixed(Arc::clone(table))),
            Self::Store(store) => store
                .table
                .get_or_reload(store.refresh_interval, || store.load())
                .await
                .map(TableRef::Loaded),
        }
    }

    pub(super) fn invalidate(&self) {
        if let Self::Store(store) = self {
            store.table.invalidate();
        }
    }

    /// Loads the table now, sharing no load that started before this call.
    pub(super) async fn refresh(&self) -> Result<(), MlflowUsersError> {
        let Self::Store(store) = self else {
            return Ok(());
        };
        store.table.invalidate();
        store.table.reload(|| store.load()).await.map(drop)
    }
}

impl StoreSource {
    pub(super) fn new(
        store: Arc<dyn UserStore>,
        refresh_interval: Duration,
        limits: WerkzeugLimits,
    ) -> Self {
        Self {
            store,
            refresh_interval,
            limits,
            table: Reloading::new(),
            reported: Mutex::new(Vec::new()),
        }
    }

    /// Reads and parses the store on the blocking pool. After a failure the previous table
    /// is not used any more: authentications fail until a load succeeds.
    async fn load(&self) -> Result<UserTable, MlflowUsersError> {
        let (store, limits) = (Arc::clone(&self.store), self.limits);
        let loaded = run_blocking(move || {
            let records = store.load().map_err(MlflowUsersError::Store)?;
            Ok(UserTable::parse(records, &limits))
        })
        .await
        .unwrap_or(Err(MlflowUsersError::TaskFailed));
        match &loaded {
            Ok(table) => {
                let mut reported = self.reported.lock().unwrap_or_else(PoisonError::into_inner);
                warn_about_new_invalid_users(&mut reported, table);
                tracing::debug!(users = table.users.len(), "loaded MLflow users");
            }
            Err(_) => self.table.clear(),
        }
        loaded
    }

    pub(super) fn debug_fields(&self, debug: &mut fmt::DebugStruct<'_, '_>) {
        debug
            .field("store", &self.store)
            .field("refresh_interval", &self.refresh_interval)
            .field("limits", &self.limits);
    }
}
