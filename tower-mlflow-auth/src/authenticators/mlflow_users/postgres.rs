//! MLflow's auth database in PostgreSQL (feature `mlflow-users-postgres`): the connection
//! settings checked by the builder, and one load of the `users` table.

use std::{error::Error, fmt, str::FromStr, sync::Arc, time::Duration};

use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::{CertificateDer, pem::PemObject};
use secrecy::{ExposeSecret as _, SecretString};
use tokio_postgres::{
    Config, NoTls, SimpleQueryMessage,
    config::{Host, SslMode},
};
use tokio_postgres_rustls::MakeRustlsConnect;
use tower_mlflow_core::net::{is_loopback_host, is_loopback_ip};

use super::{
    error::MlflowUsersBuildError,
    store::{UserRecord, UserStoreError},
};

/// Why a PostgreSQL URL given to
/// [`MlflowUsersBuilder::postgres`](super::MlflowUsersBuilder::postgres) cannot be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
#[cfg_attr(docsrs, doc(cfg(feature = "mlflow-users-postgres")))]
pub enum InvalidPostgresUrl {
    /// It does not start with `postgresql://`, `postgres://` or SQLAlchemy's
    /// `postgresql+DRIVER://`.
    NotAPostgresUrl,
    /// It is not a connection URL libpq would accept (a bad port, option or escape).
    Malformed,
    /// It names no host (libpq would pick a default socket; the gateway never guesses).
    NoHost,
    /// It names no user.
    NoUser,
    /// `sslmode=disable` to a host that is not loopback: the database password and every
    /// user's hash would cross the network in plain text.
    PlainTextToRemoteHost,
}

impl fmt::Display for InvalidPostgresUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(match self {
            Self::NotAPostgresUrl => {
                "must start with postgresql://, postgres:// or postgresql+DRIVER://"
            }
            Self::Malformed => "is not a valid PostgreSQL connection URL",
            Self::NoHost => "names no host",
            Self::NoUser => "names no user",
            Self::PlainTextToRemoteHost => {
                "has sslmode=disable for a host that is not loopback or a Unix socket \
                 (passwords and hashes would cross the network in plain text)"
            }
        })
    }
}

impl Error for InvalidPostgresUrl {}

/// The connection settings of one PostgreSQL auth database, checked once when the
/// authenticator is built.
pub(super) struct PostgresStore {
    config: Config,
    /// `None` when TLS is off (`sslmode=disable`, only allowed to loopback).
    tls: Option<MakeRustlsConnect>,
    /// The URL as given, without its password: the only form ever shown.
    shown: Box<str>,
}

/// What the builder collected for a PostgreSQL store.
#[derive(Clone)]
pub(super) struct PostgresSettings {
    pub(super) url: SecretString,
    pub(super) password: Option<SecretString>,
    pub(super) ca_pems: Vec<Vec<u8>>,
}

impl fmt::Debug for PostgresSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresSettings")
            .field("url", &without_password(self.url.expose_secret()))
            .field("password", &self.password.as_ref().map(|_| "[redacted]"))
            .field("ca_pems", &self.ca_pems.len())
            .finish()
    }
}

impl PostgresStore {
    /// How long one load may take, connecting included, before it fails (a 503 then).
    const LOAD_TIMEOUT: Duration = Duration::from_secs(10);
    /// The connect timeout when the URL sets none.
    const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

    pub(super) fn new(settings: &PostgresSettings) -> Result<Arc<Self>, MlflowUsersBuildError> {
        let url = settings.url.expose_secret();
        let shown: Box<str> = without_password(url).into();
        let invalid = |reason| MlflowUsersBuildError::PostgresUrl {
            url: shown.clone(),
            reason,
        };
        let url = libpq_url(url).ok_or_else(|| invalid(InvalidPostgresUrl::NotAPostgresUrl))?;
        let mut config =
            Config::from_str(&url).map_err(|_| invalid(InvalidPostgresUrl::Malformed))?;
        if config.get_hosts().is_empty() {
            return Err(invalid(InvalidPostgresUrl::NoHost));
        }
        if config.get_user().is_none_or(str::is_empty) {
            return Err(invalid(InvalidPostgresUrl::NoUser));
        }
        if let Some(password) = &settings.password {
            config.password(password.expose_secret());
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Self::CONNECT_TIMEOUT);
        }
        if config.get_application_name().is_none() {
            config.application_name("tower-mlflow-auth");
        }
        let tls = match (config.get_ssl_mode(), is_local(&config)) {
            (SslMode::Disable, true) => None,
            (SslMode::Disable, false) => {
                return Err(invalid(InvalidPostgresUrl::PlainTextToRemoteHost));
            }
            (mode, local) => {
                // libpq's default `prefer` falls back to plain text when the server offers no
                // TLS; off this machine, that fallback is what an attacker would ask for.
                if !local && mode == SslMode::Prefer {
                    config.ssl_mode(SslMode::Require);
                }
                let config = trust_anchors(&settings.ca_pems)
                    .and_then(client_config)
                    .ok_or(MlflowUsersBuildError::PostgresTls)?;
                Some(MakeRustlsConnect::new(config))
            }
        };
        Ok(Arc::new(Self { config, tls, shown }))
    }

    /// Reads every row of MLflow's `users` table over a fresh connection.
    pub(super) async fn load(&self) -> Result<Vec<UserRecord>, UserStoreError> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(self.error(LoadError::NoRuntime));
        }
        match tokio::time::timeout(Self::LOAD_TIMEOUT, self.read()).await {
            Ok(Ok(records)) => Ok(records),
            Ok(Err(source)) => Err(self.error(LoadError::Postgres(source))),
            Err(_) => Err(self.error(LoadError::TimedOut)),
        }
    }

    fn error(&self, cause: LoadError) -> UserStoreError {
        UserStoreError::new(PostgresError {
            url: self.shown.clone(),
            cause,
        })
    }

    async fn read(&self) -> Result<Vec<UserRecord>, tokio_postgres::Error> {
        // One connection per load, as the SQLite store opens the file afresh: nothing is held
        // between loads, and a restarted or failed-over server is simply found again.
        let client = match &self.tls {
            Some(tls) => {
                let (client, connection) = self.config.connect(tls.clone()).await?;
                tokio::spawn(connection);
                client
            }
            None => {
                let (client, connection) = self.config.connect(NoTls).await?;
                tokio::spawn(connection);
                client
            }
        };
        // The simple protocol returns every column as text, whatever type a schema gave
        // `is_admin`, and needs no prepared statement.
        let messages = client
            .simple_query("SELECT username, password_hash, is_admin FROM users")
            .await?;
        let mut records = Vec::new();
        for message in messages {
            let SimpleQueryMessage::Row(row) = message else {
                continue;
            };
            // As in MLflow, a row without a username can never log in.
            let Some(username) = row.get(0) else {
                continue;
            };
            // A NULL hash becomes "", which fails to parse: an error for that user alone.
            let password_hash = row.get(1).unwrap_or_default();
            let is_admin = match row.get(2) {
                Some("t" | "true" | "1") => true,
                Some("f" | "false" | "0") | None => false,
                Some(_) => {
                    tracing::warn!(user = %username, "MLflow user's is_admin is not a boolean; treated as not admin");
                    false
                }
            };
            records.push(UserRecord::new(username, password_hash).with_admin(is_admin));
        }
        Ok(records)
    }
}

impl fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresStore")
            .field("url", &self.shown)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

/// `url` as libpq reads it: `postgresql://…` or `postgres://…` as given, and SQLAlchemy's
/// `postgresql+DRIVER://…` (what MLflow's `database_uri` often holds) without the driver.
/// `None` for anything else.
fn libpq_url(url: &str) -> Option<std::borrow::Cow<'_, str>> {
    if url.starts_with("postgresql://") || url.starts_with("postgres://") {
        return Some(url.into());
    }
    let (scheme, rest) = url.split_once("://")?;
    let driver = scheme.strip_prefix("postgresql+")?;
    let plain = !driver.is_empty()
        && driver
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_');
    plain.then(|| format!("postgresql://{rest}").into())
}

/// Whether every host the configuration may connect to is this machine.
fn is_local(config: &Config) -> bool {
    let hosts_local = config.get_hosts().iter().all(|host| match host {
        Host::Tcp(name) => is_loopback_host(name),
        Host::Unix(_) => true,
    });
    // `hostaddr` is dialled instead of the host name when given.
    hosts_local && config.get_hostaddrs().iter().all(|ip| is_loopback_ip(*ip))
}

/// The webpki public roots plus the given PEM bundles; `None` for a bundle without a
/// certificate, which would otherwise fail every connection later.
fn trust_anchors(ca_pems: &[Vec<u8>]) -> Option<RootCertStore> {
    let mut roots = RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    for pem in ca_pems {
        let certificates: Vec<_> = CertificateDer::pem_slice_iter(pem)
            .collect::<Result<_, _>>()
            .ok()?;
        let (added, _) = roots.add_parsable_certificates(certificates);
        if added == 0 {
            return None;
        }
    }
    Some(roots)
}

fn client_config(roots: RootCertStore) -> Option<ClientConfig> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .ok()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Some(config)
}

/// `url` with the password of its user info and any `password=` parameter replaced by
/// `***`. Everything between the first `:` after the scheme and the last `@` counts as the
/// password, so an unescaped `@` or `/` in it cannot make a part of it show.
pub(super) fn without_password(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let prefix = if scheme.is_empty() {
        String::new()
    } else {
        format!("{scheme}://")
    };
    let (user, rest) = match rest.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => (format!("{user}:***@"), host),
            None => (format!("{userinfo}@"), host),
        },
        None => (String::new(), rest),
    };
    let rest = match rest.split_once('?') {
        Some((path, query)) => {
            let params: Vec<&str> = query
                .split('&')
                .map(|param| {
                    if param.starts_with("password=") {
                        "password=***"
                    } else {
                        param
                    }
                })
                .collect();
            format!("{path}?{}", params.join("&"))
        }
        None => rest.to_owned(),
    };
    format!("{prefix}{user}{rest}")
}

/// A failed load of the PostgreSQL auth database, naming it without its password.
#[derive(Debug)]
struct PostgresError {
    url: Box<str>,
    cause: LoadError,
}

#[derive(Debug)]
enum LoadError {
    Postgres(tokio_postgres::Error),
    TimedOut,
    NoRuntime,
}

impl fmt::Display for PostgresError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot read MLflow users from {}: ", self.url)?;
        match &self.cause {
            // tokio-postgres's text names the server's error, never the password.
            LoadError::Postgres(error) => fmt::Display::fmt(error, f),
            LoadError::TimedOut => write!(f, "no answer within {:?}", PostgresStore::LOAD_TIMEOUT),
            LoadError::NoRuntime => f.write_str("PostgreSQL needs a tokio runtime"),
        }
    }
}

impl Error for PostgresError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match &self.cause {
            LoadError::Postgres(error) => Some(error),
            LoadError::TimedOut | LoadError::NoRuntime => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(url: &str) -> PostgresSettings {
        PostgresSettings {
            url: SecretString::from(url),
            password: None,
            ca_pems: Vec::new(),
        }
    }

    fn refused(url: &str) -> InvalidPostgresUrl {
        match PostgresStore::new(&settings(url)) {
            Err(MlflowUsersBuildError::PostgresUrl { reason, .. }) => reason,
            other => panic!("{url}: unexpected {other:?}"),
        }
    }

    #[test]
    fn the_password_never_shows() {
        for (url, shown) in [
            (
                "postgresql://mlflow:s3cret@db.internal:5432/auth",
                "postgresql://mlflow:***@db.internal:5432/auth",
            ),
            (
                "postgres://mlflow:p@ss/w:rd@db/auth?sslmode=require",
                "postgres://mlflow:***@db/auth?sslmode=require",
            ),
            (
                "postgresql://db/auth?user=mlflow&password=s3cret&sslmode=require",
                "postgresql://db/auth?user=mlflow&password=***&sslmode=require",
            ),
            ("postgresql://mlflow@db/auth", "postgresql://mlflow@db/auth"),
        ] {
            assert_eq!(without_password(url), shown);
        }
    }

    #[test]
    fn a_bad_url_is_named_without_its_password() {
        let err = PostgresStore::new(&settings("postgresql://mlflow:s3cret@db:notaport/auth"))
            .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("postgresql://mlflow:***@db:notaport/auth"),
            "{text}"
        );
        assert!(!text.contains("s3cret"), "{text}");
        assert!(!format!("{err:?}").contains("s3cret"));
        for not_postgres in ["mysql://u@db/auth", "postgresql+://u@db/a", "db/auth"] {
            assert_eq!(refused(not_postgres), InvalidPostgresUrl::NotAPostgresUrl);
        }
        assert_eq!(
            refused("postgresql://u@db:x/auth"),
            InvalidPostgresUrl::Malformed
        );
        assert_eq!(
            refused("postgresql:///auth?user=u"),
            InvalidPostgresUrl::NoHost
        );
        assert_eq!(refused("postgresql://db/auth"), InvalidPostgresUrl::NoUser);
    }

    #[test]
    fn mlflows_sqlalchemy_form_is_read_without_the_driver() {
        let store = PostgresStore::new(&settings(
            "postgresql+psycopg2://mlflow:s3cret@127.0.0.1:5433/auth",
        ))
        .unwrap();
        assert_eq!(store.config.get_ports(), [5433]);
        assert_eq!(store.config.get_user(), Some("mlflow"));
        assert_eq!(store.config.get_password(), Some(&b"s3cret"[..]));
        assert_eq!(
            &*store.shown,
            "postgresql+psycopg2://mlflow:***@127.0.0.1:5433/auth"
        );
    }

    #[test]
    fn plain_text_only_to_this_machine() {
        assert_eq!(
            refused("postgresql://u@db.internal/auth?sslmode=disable"),
            InvalidPostgresUrl::PlainTextToRemoteHost
        );
        assert_eq!(
            refused("postgresql://u@localhost/auth?sslmode=disable&hostaddr=10.1.2.3"),
            InvalidPostgresUrl::PlainTextToRemoteHost
        );
        for local in [
            "postgresql://u@127.0.0.1:5433/auth?sslmode=disable",
            "postgresql://u@localhost/auth?sslmode=disable",
            "postgresql://u@%2Frun%2Fpostgresql/auth?sslmode=disable",
        ] {
            assert!(
                PostgresStore::new(&settings(local)).unwrap().tls.is_none(),
                "{local}"
            );
        }
    }

    #[test]
    fn a_remote_host_requires_tls() {
        let store = PostgresStore::new(&settings("postgresql://u@db.internal/auth")).unwrap();
        assert_eq!(store.config.get_ssl_mode(), SslMode::Require);
        let local = PostgresStore::new(&settings("postgresql://u@127.0.0.1/auth")).unwrap();
        assert_eq!(local.config.get_ssl_mode(), SslMode::Prefer);
    }

    #[test]
    fn a_given_password_replaces_the_urls_and_stays_hidden() {
        let mut with_password = settings("postgresql://u:old@127.0.0.1/auth");
        with_password.password = Some(SecretString::from("from-a-file"));
        let shown = format!("{with_password:?}");
        assert!(
            !shown.contains("old") && !shown.contains("from-a-file"),
            "{shown}"
        );
        let store = PostgresStore::new(&with_password).unwrap();
        assert_eq!(store.config.get_password(), Some(&b"from-a-file"[..]));
        assert!(!format!("{store:?}").contains("from-a-file"));
    }

    #[test]
    fn a_ca_bundle_without_a_certificate_is_refused() {
        let mut bad_ca = settings("postgresql://u@db.internal/auth");
        bad_ca.ca_pems.push(b"not a pem".to_vec());
        assert_eq!(
            PostgresStore::new(&bad_ca).unwrap_err(),
            MlflowUsersBuildError::PostgresTls
        );
    }

    #[test]
    fn outside_a_runtime_a_load_fails_instead_of_panicking() {
        use std::task::{Context, Poll, Waker};
        let store = PostgresStore::new(&settings("postgresql://u@127.0.0.1/auth")).unwrap();
        let mut load = std::pin::pin!(store.load());
        let mut cx = Context::from_waker(Waker::noop());
        match load.as_mut().poll(&mut cx) {
            Poll::Ready(Err(error)) => {
                assert!(
                    error.to_string().ends_with("needs a tokio runtime"),
                    "{error}"
                );
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[tokio::test]
    async fn an_unreachable_server_is_a_store_error_naming_it() {
        // A port nothing listens on: bound, then closed.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let store = PostgresStore::new(&settings(&format!(
            "postgresql://u:s3cret@127.0.0.1:{port}/auth?sslmode=disable"
        )))
        .unwrap();
        let text = store.load().await.unwrap_err().to_string();
        assert!(
            text.starts_with(&format!(
                "cannot read MLflow users from postgresql://u:***@127.0.0.1:{port}/auth"
            )),
            "{text}"
        );
        assert!(!text.contains("s3cret"), "{text}");
    }
}
