use std::{path::PathBuf, sync::Arc, time::Duration};

#[cfg(feature = "mlflow-users-postgres")]
use secrecy::SecretString;

#[cfg(feature = "mlflow-users-postgres")]
use super::postgres::{PostgresSettings, PostgresStore};
use super::{
    MlflowUsers,
    error::MlflowUsersBuildError,
    limits::WerkzeugLimits,
    source::{Backend, Source, StoreSource},
    store::{SqliteUserStore, UserRecord, UserStore},
    table::UserTable,
};

/// Configures an [`MlflowUsers`]; made by [`MlflowUsers::builder`].
///
/// Give exactly one source of users: [`store`](Self::store), [`sqlite`](Self::sqlite),
/// [`postgres`](Self::postgres) (feature `mlflow-users-postgres`) or [`users`](Self::users)
/// (a later call replaces an earlier one).
#[derive(Clone, Debug)]
#[must_use]
pub struct MlflowUsersBuilder {
    refresh_interval: Duration,
    limits: WerkzeugLimits,
    source: Option<BuilderSource>,
    #[cfg(feature = "mlflow-users-postgres")]
    postgres_password: Option<SecretString>,
    #[cfg(feature = "mlflow-users-postgres")]
    postgres_ca_pems: Vec<Vec<u8>>,
}

#[derive(Clone, Debug)]
enum BuilderSource {
    Store(Arc<dyn UserStore>),
    #[cfg(feature = "mlflow-users-postgres")]
    Postgres(SecretString),
    Users(Vec<UserRecord>),
}

impl MlflowUsersBuilder {
    pub(super) fn new() -> Self {
        Self {
            refresh_interval: MlflowUsers::DEFAULT_REFRESH_INTERVAL,
            limits: WerkzeugLimits::default(),
            source: None,
            #[cfg(feature = "mlflow-users-postgres")]
            postgres_password: None,
            #[cfg(feature = "mlflow-users-postgres")]
            postgres_ca_pems: Vec::new(),
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

    /// Users from MLflow's auth database in PostgreSQL, the `database_uri` of its
    /// `basic_auth.ini`: a `postgresql://` or `postgres://` URL such as
    /// `postgresql://mlflow@db.internal:5432/mlflow_auth`, or SQLAlchemy's
    /// `postgresql+psycopg2://…` as MLflow takes it (read without the driver); checked by
    /// [`build`](Self::build).
    ///
    /// Each load opens one connection, runs `SELECT username, password_hash, is_admin FROM
    /// users` and closes it. TLS is rustls (aws-lc-rs) with the webpki public roots and any
    /// [`postgres_ca_pem`](Self::postgres_ca_pem), verifying the host name. To a host that is
    /// not loopback TLS is required (libpq's default `sslmode=prefer` becomes `require`, and
    /// `sslmode=disable` is a build error); to loopback or a Unix socket (`host=/run/postgresql`
    /// or a `%2F`-escaped path as the host) the URL's `sslmode` applies (with `prefer`, a
    /// server that offers TLS must present a certificate the roots above trust; a server
    /// without TLS is used in plain text). The password may be in
    /// the URL, or come from [`postgres_password`](Self::postgres_password); it never appears
    /// in `Debug`, errors or logs. Without a `connect_timeout` in the URL, connecting gives up
    /// after 5 s; a whole load after 10 s.
    ///
    /// ```
    /// use secrecy::SecretString;
    /// use tower_mlflow_auth::authenticators::MlflowUsers;
    ///
    /// let users = MlflowUsers::builder()
    ///     .postgres("postgresql://mlflow@db.internal/mlflow_auth")
    ///     .postgres_password(SecretString::from("from-a-secret-file"))
    ///     .build()?;
    /// assert!(!format!("{users:?}").contains("from-a-secret-file"));
    ///
    /// // A bad URL is named, without its password.
    /// let err = MlflowUsers::builder().postgres("postgresql://mlflow:hunter2@db:port/x").build();
    /// assert!(!err.unwrap_err().to_string().contains("hunter2"));
    /// # Ok::<_, tower_mlflow_auth::authenticators::MlflowUsersBuildError>(())
    /// ```
    #[cfg(feature = "mlflow-users-postgres")]
    #[cfg_attr(docsrs, doc(cfg(feature = "mlflow-users-postgres")))]
    pub fn postgres(mut self, url: impl Into<String>) -> Self {
        self.source = Some(BuilderSource::Postgres(SecretString::from(url.into())));
        self
    }

    /// The PostgreSQL password, instead of one in the [`postgres`](Self::postgres) URL (for
    /// example read from a secret file).
    #[cfg(feature = "mlflow-users-postgres")]
    #[cfg_attr(docsrs, doc(cfg(feature = "mlflow-users-postgres")))]
    pub fn postgres_password(mut self, password: SecretString) -> Self {
        self.postgres_password = Some(password);
        self
    }

    /// A PEM bundle of CAs trusted for the PostgreSQL server's certificate as well as the
    /// webpki public roots (repeatable), for a server behind a private CA.
    #[cfg(feature = "mlflow-users-postgres")]
    #[cfg_attr(docsrs, doc(cfg(feature = "mlflow-users-postgres")))]
    pub fn postgres_ca_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.postgres_ca_pems.push(pem.into());
        self
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
    /// is empty or appears twice; for PostgreSQL, `PostgresUrl` naming the URL (without its
    /// password) or `PostgresTls`.
    pub fn build(self) -> Result<MlflowUsers, MlflowUsersBuildError> {
        let store = |backend| {
            Source::Store(StoreSource::new(
                backend,
                self.refresh_interval,
                self.limits,
            ))
        };
        let source = match self.source.ok_or(MlflowUsersBuildError::NoSource)? {
            BuilderSource::Store(user_store) => store(Backend::Blocking(user_store)),
            #[cfg(feature = "mlflow-users-postgres")]
            BuilderSource::Postgres(url) => {
                store(Backend::Postgres(PostgresStore::new(&PostgresSettings {
                    url,
                    password: self.postgres_password,
                    ca_pems: self.postgres_ca_pems,
                })?))
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
