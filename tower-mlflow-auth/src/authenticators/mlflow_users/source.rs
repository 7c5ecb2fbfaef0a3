//! Where the table comes from: fixed in code, or loaded from a [`UserStore`] and reloaded
//! after each refresh interval.

use std::{
    fmt,
    sync::{Arc, Mutex, PoisonError, Weak},
    time::Duration,
};

use tower_mlflow_core::{
    blocking::run_blocking,
    sync::{Reloading, Snapshot},
};

#[cfg(feature = "mlflow-users-postgres")]
use super::postgres::PostgresStore;
use super::{
    super::revocation::{Listeners, Revoked},
    error::MlflowUsersError,
    limits::WerkzeugLimits,
    store::{UserRecord, UserStore},
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

/// Where a store's rows are read: a blocking [`UserStore`] on tokio's blocking pool, or an
/// async client on the runtime itself.
pub(super) enum Backend {
    Blocking(Arc<dyn UserStore>),
    #[cfg(feature = "mlflow-users-postgres")]
    Postgres(Arc<PostgresStore>),
}

impl Backend {
    async fn read(&self) -> Result<Vec<UserRecord>, MlflowUsersError> {
        match self {
            Self::Blocking(store) => {
                let store = Arc::clone(store);
                run_blocking(move || store.load().map_err(MlflowUsersError::Store))
                    .await
                    .unwrap_or(Err(MlflowUsersError::TaskFailed))
            }
            #[cfg(feature = "mlflow-users-postgres")]
            Self::Postgres(store) => store.load().await.map_err(MlflowUsersError::Store),
        }
    }
}

impl fmt::Debug for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Blocking(store) => store.fmt(f),
            #[cfg(feature = "mlflow-users-postgres")]
            Self::Postgres(store) => store.fmt(f),
        }
    }
}

pub(super) struct StoreSource {
    store: Backend,
    refresh_interval: Duration,
    limits: WerkzeugLimits,
    table: Reloading<UserTable, MlflowUsersError>,
    /// The unusable rows already warned about, so that each is logged once.
    reported: Mutex<Vec<Box<str>>>,
    /// The caches to tell what a reload revoked.
    pub(super) listeners: Listeners,
    /// The table the listeners were last told about; `None` before the first load and
    /// after a failed one.
    notified: Mutex<Option<Arc<Snapshot<UserTable>>>>,
}

/// The shortest pause between two background reloads, for a zero refresh interval.
const MIN_WATCH_PAUSE: Duration = Duration::from_millis(100);

impl Source {
    /// The table to check a login against, loading it first if it is missing or stale.
    pub(super) async fn table(&self) -> Result<TableRef, MlflowUsersError> {
        match self {
            Self::Fixed(table) => Ok(TableRef::Fixed(Arc::clone(table))),
            Self::Store(store) => {
                let fresh = store
                    .table
                    .snapshot()
                    .filter(|snapshot| store.table.is_fresh(snapshot, store.refresh_interval));
                if let Some(snapshot) = fresh {
                    return Ok(TableRef::Loaded(snapshot));
                }
                // Looks again before loading: a load that finished since the check above
                // is fresh, and concurrent first uses share one load.
                let loaded = store
                    .table
                    .get_or_reload(store.refresh_interval, || store.load())
                    .await;
                store.publish_revocations();
                loaded.map(TableRef::Loaded)
            }
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
        let loaded = store.table.reload(|| store.load()).await;
        store.publish_revocations();
        loaded.map(drop)
    }
}

/// Reloads the table once per refresh interval while anyone holds it; spawned when a cache
/// subscribes, because its hits never reach [`Source::table`] to trigger a reload.
pub(super) async fn watch(source: Weak<Source>) {
    loop {
        let pause = match source.upgrade().as_deref() {
            Some(Source::Store(store)) => store.until_stale(),
            Some(Source::Fixed(_)) | None => return,
        };
        tokio::time::sleep(pause).await;
        let Some(source) = source.upgrade() else {
            return;
        };
        if let Err(error) = source.table().await {
            tracing::error!(%error, "MLflow users not reloaded; their logins fail until the store can be read");
        }
    }
}

impl StoreSource {
    pub(super) fn new(store: Backend, refresh_interval: Duration, limits: WerkzeugLimits) -> Self {
        Self {
            store,
            refresh_interval,
            limits,
            table: Reloading::new(),
            reported: Mutex::new(Vec::new()),
            listeners: Listeners::default(),
            notified: Mutex::new(None),
        }
    }

    /// Tells the listeners what the table now in use revoked since the last one they were
    /// told about: the changed users, or everyone once a load failed (the table is then
    /// gone). Called after every reload, so after the new table is in use.
    fn publish_revocations(&self) {
        let current = self.table.snapshot();
        let mut notified = self.notified.lock().unwrap_or_else(PoisonError::into_inner);
        let revoked = match (&*notified, &current) {
            (Some(before), Some(after)) if Arc::ptr_eq(before, after) => return,
            (Some(before), Some(after)) => after.value().revoked_since(before.value()),
            (Some(_), None) => Some(Revoked::All),
            // Nothing was accepted from this store since the last notice (or ever).
            (None, _) => None,
        };
        *notified = current;
        // Under the lock, so that notices arrive in the order of the tables.
        if let Some(revoked) = revoked {
            self.listeners.notify(&revoked);
        }
    }

    /// How long the current table stays fresh (a full interval when there is none).
    fn until_stale(&self) -> Duration {
        let left = self.table.snapshot().map_or(self.refresh_interval, |s| {
            self.refresh_interval.saturating_sub(s.age())
        });
        left.max(MIN_WATCH_PAUSE)
    }

    /// Reads and parses the store (parsing runs no hash, so it is cheap). After a failure the
    /// previous table is not used any more: authentications fail until a load succeeds.
    async fn load(&self) -> Result<UserTable, MlflowUsersError> {
        let loaded = self
            .store
            .read()
            .await
            .map(|records| UserTable::parse(records, &self.limits));
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
